//! The control plane's telemetry: skiffd's JSON request log, one trace from skiffd's
//! request to the worker that runs the operation (an OTLP receiver inside the test),
//! and Prometheus metrics of what the worker ran.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::*;
use serde_json::Value;
use skiff_testkit::otlp::Collector;

/// OTLP to `otel`, and nothing leaves before SIGTERM (a 60 s batch delay): what
/// arrives was flushed by the shutdown.
fn otel(otel: &str) -> [(&'static str, &str); 2] {
    [("OTEL_EXPORTER_OTLP_ENDPOINT", otel), ("OTEL_BSP_SCHEDULE_DELAY", "60000")]
}

fn serve(dir: &Path, endpoint: &str) -> Daemon {
    let stderr = std::fs::File::create(dir.join("skiffd.err")).unwrap();
    skiffd_with(dir, &["--log-format", "json"], &otel(endpoint), stderr.into())
}

fn work(dir: &Path, endpoint: &str) -> (Proc, std::path::PathBuf) {
    worker_env(dir, "w1", 0, &["--metrics-listen", "127.0.0.1:0"], &otel(endpoint))
}

fn get(port: u16, path: &str) -> String {
    match http(port, "GET", path, &[], None).1 {
        Value::String(s) => s,
        other => other.to_string(),
    }
}

#[test]
fn a_served_deploy_is_one_trace_from_skiffd_to_the_worker_with_a_request_log_and_metrics() {
    let collector = Collector::start();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let _down = Down(dir.to_path_buf());
    let ann = token(dir, "ann", "approver");
    let d = serve(dir, &collector.endpoint());
    let (w, log) = work(dir, &collector.endpoint());

    let work_dir = dir.join("app");
    std::fs::create_dir_all(work_dir.join("bin")).unwrap();
    std::fs::copy(skiff_testkit::workspace_bin("hello"), work_dir.join("bin/hello")).unwrap();
    let port = skiff_testkit::free_port();
    std::fs::write(
        work_dir.join("skiff.yaml"),
        format!(
            "service: web\nartifact: {{path: bin/hello}}\nrun: {{command: [hello]}}\nport: {port}\n\
             health: {{path: /healthz, interval: 1s, timeout: 500ms, healthy_threshold: 1, unhealthy_threshold: 2}}\n\
             instances: {{min: 1, max: 2, desired: 1}}\n\
             rollout:\n  canary: {{steps: [100], bake: 0s}}\n  drain_timeout: 1s\n  step_timeout: 1m\n"
        ),
    )
    .unwrap();
    let (code, deployed) = remote(dir, &d, &ann, &["deploy", "--no-build", "--yes"]);
    assert_eq!(code, 0, "{deployed}");
    let op = deployed["operation_id"].as_str().unwrap().to_owned();

    // Metrics: the worker's steps and skiffd's own exposition.
    let first: Value = serde_json::from_str(
        std::fs::read_to_string(&log).unwrap().lines().find(|l| l.contains("\"metrics\"")).unwrap(),
    )
    .unwrap();
    let worker_port: u16 = first["addr"].as_str().unwrap().rsplit(':').next().unwrap().parse().unwrap();
    let text = get(worker_port, "/metrics");
    assert!(
        text.lines()
            .any(|l| l.starts_with("skiff_step_duration_seconds_count{kind=\"deploy.shift\",outcome=\"succeeded\"}")),
        "{text}"
    );
    let text = get(d.port, "/metrics");
    assert!(text.contains("# TYPE skiff_step_duration_seconds histogram"), "{text}");
    assert!(text.contains("skiffd_requests_total"), "{text}");

    // SIGTERM both (a multi-thread and a current-thread runtime): each flushes its spans
    // on the way out, within the 2 s bound.
    let early = collector.spans().into_iter().filter(|s| s.service == "skiffd" || s.service == "skiff-worker").count();
    assert_eq!(early, 0, "nothing exported before the shutdown");
    let stopped = std::time::Instant::now();
    for pid in [d._proc.0.id(), w.0.id()] {
        let _ = Command::new("kill").args(["-TERM", &pid.to_string()]).status();
    }
    let (mut d, mut w) = (d, w);
    assert!(d._proc.0.wait().unwrap().success());
    let _ = w.0.wait().unwrap();
    assert!(stopped.elapsed() < Duration::from_secs(8), "drain + flush took {:?}", stopped.elapsed());

    // One trace: skiffd's request and what it recorded, then the worker's drive.
    let intent: skiff_state::docs::OperationIntent =
        block(ledger(dir).read(&skiff_state::keys::op_intent(&op))).unwrap().unwrap();
    let trace = intent.trace.expect("recorded by skiffd").traceparent.split('-').nth(1).unwrap().to_owned();
    let drive = |c: &Collector| {
        c.spans()
            .into_iter()
            .any(|s| s.service == "skiff-worker" && s.name == "operation deploy" && s.trace_id == trace)
    };
    assert!(skiff_testkit::wait_until(Duration::from_secs(3), || drive(&collector)), "{:#?}", collector.spans());
    let spans = collector.spans();
    let served = spans.iter().find(|s| s.service == "skiffd" && s.trace_id == trace).expect("skiffd's spans");
    assert!(spans.iter().any(|s| s.service == "skiffd" && s.name.starts_with("POST ") && s.trace_id == trace));
    assert!(
        spans
            .iter()
            .filter(|s| s.service == "skiff-worker" && s.name.starts_with("step "))
            .all(|s| s.trace_id == trace),
        "the worker's steps continue the trace skiffd started ({served:?})"
    );

    // The request log: one JSON line per request with route, status, actor and trace.
    let err = std::fs::read_to_string(dir.join("skiffd.err")).unwrap();
    let requests: Vec<Value> = err
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["message"] == "request")
        .collect();
    let deploy = requests
        .iter()
        .find(|r| r["route"].as_str().is_some_and(|p| p.ends_with("/Deploy")))
        .unwrap_or_else(|| panic!("{err}"));
    assert_eq!(deploy["status"], 200, "{deploy}");
    assert_eq!(deploy["trace_id"], trace.as_str(), "{deploy}");
    assert!(deploy["latency_ms"].as_f64().is_some(), "{deploy}");
    let actor = deploy["spans"].as_array().unwrap().iter().find_map(|s| s["actor"].as_str());
    assert_eq!(actor, Some("ann"), "{deploy}");
}
