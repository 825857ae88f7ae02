//! OpenTelemetry end to end: a collector inside the test (OTLP/HTTP, decoded with the
//! `opentelemetry-proto` types), `skiff deploy` of hello on the local provider with
//! `OTEL_EXPORTER_OTLP_ENDPOINT` pointing at it. One trace per operation, one span per
//! step attempt, the trace continued by `saga resume` in another process after a
//! SIGKILL, and nothing held up when the collector is gone.

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::*;
use skiff_testkit::otlp::{Collector, Span};

struct Web<'a> {
    s: &'a Sandbox,
    port: u16,
    env: Vec<(&'static str, String)>,
    _stop: StopAll<'a>,
}

impl<'a> Web<'a> {
    fn new(s: &'a Sandbox) -> Self {
        let runner = skiff_testkit::workspace_bin("skiff-runner").display().to_string();
        let env = vec![("SKIFF_RUNNER_BIN", runner), ("SKIFF_LEASE_TTL_MS", "1500".to_owned())];
        Web { s, port: skiff_testkit::free_port(), env: env.clone(), _stop: StopAll(s, env) }
    }

    fn spec(&self, message: &str, bake: &str) -> String {
        let hello = skiff_testkit::workspace_bin("hello");
        let yaml = format!(
            "service: web\nartifact: {{path: {}}}\nrun: {{command: [hello], env: {{HELLO_MESSAGE: {message}}}}}\nport: {}\n\
             health: {{path: /healthz, interval: 1s, timeout: 500ms, healthy_threshold: 1, unhealthy_threshold: 2}}\n\
             instances: {{min: 1, max: 2, desired: 1}}\n\
             rollout:\n  canary: {{steps: [50, 100], bake: {bake}, analysis: {{max_error_rate: 1%, max_p95_latency: 250ms, min_requests: 1}}}}\n  drain_timeout: 1s\n  step_timeout: 1m\n",
            hello.display(),
            self.port
        );
        let path = self.s.path().join("web.yaml");
        std::fs::write(&path, yaml).unwrap();
        path.display().to_string()
    }

    fn command(&self, args: &[&str], extra: &[(&'static str, String)]) -> std::process::Command {
        let mut cmd = std::process::Command::new(assert_cmd::cargo::cargo_bin("skiff"));
        cmd.current_dir(self.s.path())
            .env("SKIFF_CONFIG", self.s.path().join("config.yaml"))
            .env("SKIFF_ACTOR", "tester")
            .args(args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null());
        for (k, v) in self.env.iter().chain(extra) {
            cmd.env(k, v);
        }
        cmd
    }
}

/// Requests through the load balancer until dropped, so canaries have evidence.
struct Traffic(Arc<AtomicBool>);

impl Traffic {
    fn start(port: u16) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let st = stop.clone();
        std::thread::spawn(move || {
            while !st.load(Ordering::SeqCst) {
                let _ = get_release(port);
                skiff_clock::SystemClock::block_for(Duration::from_millis(5));
            }
        });
        Traffic(stop)
    }
}

impl Drop for Traffic {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

fn otel(c: &Collector) -> Vec<(&'static str, String)> {
    vec![("OTEL_EXPORTER_OTLP_ENDPOINT", c.endpoint()), ("OTEL_BSP_SCHEDULE_DELAY", "200".to_owned())]
}

/// `(step, attempt)` of every `step_started` event of `op`.
fn attempts(s: &Sandbox, op: &str) -> BTreeSet<(String, String)> {
    let l = ledger(s.path());
    let events = block(l.events_after(op, 0)).unwrap();
    events
        .iter()
        .filter(|e| e.event_type == "step_started")
        .map(|e| (e.data["step"].as_str().unwrap().to_owned(), e.data["attempt"].to_string()))
        .collect()
}

fn step_spans(spans: &[Span]) -> Vec<&Span> {
    spans.iter().filter(|s| s.name.starts_with("step ") && s.attr("compensation") == Some("false")).collect()
}

fn intent_trace(s: &Sandbox, op: &str) -> String {
    let l = ledger(s.path());
    let intent: skiff_state::docs::OperationIntent =
        block(l.read(&skiff_state::keys::op_intent(op))).unwrap().expect("the intent");
    let trace = intent.trace.expect("the intent records its trace");
    trace.traceparent.split('-').nth(1).unwrap().to_owned()
}

#[test]
fn a_deploy_is_one_trace_with_a_span_per_step_attempt() {
    let collector = Collector::start();
    let s = Sandbox::new();
    let web = Web::new(&s);
    let spec = web.spec("v1", "1s");
    let out = web.command(&["deploy", "-f", &spec, "--yes", "--format", "json"], &otel(&collector)).output().unwrap();
    let ended = Instant::now();
    let answer: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(answer["code"], "OK", "{answer}");
    let op = answer["operation_id"].as_str().unwrap().to_owned();
    let wanted = attempts(&s, &op);

    // Everything was flushed before the process exited; allow the bound anyway.
    assert!(skiff_testkit::wait_until(Duration::from_secs(2), || step_spans(&collector.spans()).len() >= wanted.len()));
    assert!(ended.elapsed() < Duration::from_secs(3));
    let spans: Vec<Span> = collector.spans().into_iter().filter(|s| s.service == "skiff").collect();
    let traces: BTreeSet<&str> = spans.iter().map(|s| s.trace_id.as_str()).collect();
    assert_eq!(traces.len(), 1, "one trace: {spans:#?}");
    assert_eq!(traces.first().copied(), Some(intent_trace(&s, &op).as_str()), "the intent names the trace");

    let request = spans.iter().find(|s| s.name == "skiff deploy").expect("the request's span");
    assert_eq!(request.parent, "", "the request is the root");
    assert_eq!(request.attr("code"), Some("OK"));
    let operation = spans.iter().find(|s| s.name == "operation deploy").expect("the operation's span");
    assert_eq!(operation.attr("op"), Some(op.as_str()));
    assert_eq!(operation.attr("status"), Some("succeeded"));
    assert_eq!(operation.attr("service"), Some("web"));

    let steps = step_spans(&spans);
    let seen: BTreeSet<(String, String)> =
        steps.iter().map(|s| (s.attr("step").unwrap().to_owned(), s.attr("attempt").unwrap().to_owned())).collect();
    assert_eq!(seen, wanted, "one span per step attempt");
    assert_eq!(steps.len(), wanted.len(), "and no attempt twice");
    let plan = ledger(s.path());
    let plan: skiff_saga::doc::SagaPlan = block(plan.read(&skiff_state::keys::op_plan(&op))).unwrap().unwrap();
    for span in &steps {
        let step = plan.steps.iter().find(|p| Some(p.id.as_str()) == span.attr("step")).unwrap();
        assert_eq!(span.name, format!("step {}", step.kind));
        assert_eq!(span.attr("kind"), Some(step.kind.as_str()));
        assert_eq!(span.attr("safety"), Some(step.safety.as_str()));
        assert_eq!(span.attr("risk"), Some(step.risk.as_str()));
        assert_eq!(span.attr("outcome"), Some("succeeded"), "{span:?}");
        assert_eq!(span.parent, operation.span_id, "steps are children of the operation");
    }
    let provision = steps.iter().find(|s| s.attr("step") == Some("provision")).unwrap();
    let calls: Vec<&Span> = spans.iter().filter(|s| s.parent == provision.span_id).collect();
    assert!(
        calls.iter().any(|c| c.name.starts_with("local PUT /v1/groups/") && c.attr("provider") == Some("local")),
        "the provider's calls are children of the step: {calls:#?}"
    );

    // The runners the deploy started continue its trace: verify, start, health.
    let trace = intent_trace(&s, &op);
    let runner = |name: &str| {
        collector.spans().into_iter().filter(|s| s.service == "skiff-runner" && s.name == name).collect::<Vec<_>>()
    };
    assert!(skiff_testkit::wait_until(Duration::from_secs(10), || !runner("runner health").is_empty()));
    for name in ["runner verify", "runner start", "runner health"] {
        let spans = runner(name);
        assert!(!spans.is_empty(), "{name}");
        assert!(spans.iter().all(|s| s.trace_id == trace), "{name} in the deploy's trace: {spans:#?}");
    }
    assert_eq!(runner("runner verify")[0].attr("outcome"), Some("verified"));
    assert_eq!(runner("runner health")[0].attr("outcome"), Some("passing"));
    // And their notes in the service's log name it: `skiff logs --trace OP` keeps the
    // instances that operation started, `--grep` the lines that match, `--json` prints
    // one object per line.
    let logs = |args: &[&str]| {
        let out = web.command(&[&["logs", "web"], args].concat(), &[]).output().unwrap();
        (out.status.code(), String::from_utf8_lossy(&out.stdout).into_owned())
    };
    let (code, all) = logs(&["--format", "json"]);
    assert_eq!(code, Some(0));
    assert!(all.contains(&format!("trace_id={trace}")), "{all}");
    let (code, by_op) = logs(&["--trace", &op, "--json"]);
    assert_eq!(code, Some(0), "{by_op}");
    let lines: Vec<serde_json::Value> = by_op.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert!(lines.iter().any(|l| l["line"].as_str().unwrap().contains("hello")), "the program's own lines: {by_op}");
    let (_, by_trace) = logs(&["--trace", &trace, "--json"]);
    assert_eq!(by_trace, by_op, "a trace id or its operation id select the same lines");
    let (_, grepped) = logs(&["--trace", &op, "--json", "--grep", "health: (passing|failing)"]);
    let grepped: Vec<serde_json::Value> = grepped.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert!(!grepped.is_empty() && grepped.len() < lines.len());
    assert!(grepped.iter().all(|l| l["line"].as_str().unwrap().contains("health: passing")));
    let (_, other) = logs(&["--trace", "0123456789abcdef0123456789abcdef", "--json"]);
    assert_eq!(other.trim(), "", "no instance of another trace");
    let (code, bad) = logs(&["--grep", "(", "--format", "json"]);
    assert_eq!(code, Some(2), "USAGE: {bad}");
    assert!(bad.contains("is not a regular expression"), "{bad}");
    let (code, unknown) = logs(&["--trace", "deploy-nope", "--format", "json"]);
    assert_eq!(code, Some(4), "NOT_FOUND: {unknown}");
}

#[test]
fn a_resumed_operation_continues_its_trace_and_a_dead_collector_holds_nothing_up() {
    let collector = Collector::start();
    let s = Sandbox::new();
    let web = Web::new(&s);
    let spec = web.spec("v1", "1s");
    assert_eq!(web.command(&["deploy", "-f", &spec, "--yes"], &[]).output().unwrap().status.code(), Some(0));
    let _traffic = Traffic::start(web.port);

    // SIGKILL the deploy of v2 while it bakes, then resume it from another process.
    let spec = web.spec("v2", "3s");
    let mut child =
        web.command(&["deploy", "-f", &spec, "--yes", "--format", "json"], &otel(&collector)).spawn().unwrap();
    let l = ledger(s.path());
    let mut op = None;
    assert!(skiff_testkit::wait_until(Duration::from_secs(60), || {
        op = block(async {
            let st =
                l.read::<skiff_state::docs::ServiceState>(&skiff_state::keys::service_state("web")).await.ok()??;
            let op = st.active_operation?;
            let events = l.events_after(&op, 0).await.ok()?;
            events.iter().any(|e| e.event_type == "step_started" && e.data["step"] == "analyse-50").then_some(op)
        });
        op.is_some()
    }));
    let op = op.unwrap();
    // The killed process exported what it finished (every 200 ms) before it died.
    assert!(skiff_testkit::wait_until(Duration::from_secs(5), || !step_spans(&collector.spans()).is_empty()));
    let _ = std::process::Command::new("kill").args(["-KILL", &child.id().to_string()]).status();
    let _ = child.wait();
    let before = collector.spans().len();
    let out = web.command(&["saga", "resume", &op, "--yes", "--format", "json"], &otel(&collector)).output().unwrap();
    let answer: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(answer["data"]["status"], "succeeded", "{answer}");

    let trace = intent_trace(&s, &op);
    let spans = collector.spans();
    assert!(spans.len() > before, "the resuming process sent spans");
    let operations: Vec<&Span> = spans.iter().filter(|s| s.name == "operation deploy").collect();
    assert!(operations.iter().any(|s| s.attr("status") == Some("succeeded")), "the resumed drive: {operations:#?}");
    let stray: Vec<&Span> = spans.iter().filter(|s| s.service == "skiff" && s.trace_id != trace).collect();
    assert!(stray.is_empty(), "every span of both processes is in the operation's trace {trace}: {stray:#?}");
    let resumed: Vec<&Span> = step_spans(&spans).into_iter().filter(|s| s.attr("resume") == Some("true")).collect();
    assert!(!resumed.is_empty(), "the interrupted step ran again as a resume, in the same trace");

    // With the collector gone, a command is not held up beyond the flush bound.
    drop(collector);
    let dead = format!("http://127.0.0.1:{}", skiff_testkit::free_port());
    let started = Instant::now();
    let out =
        web.command(&["status", "web", "--format", "json"], &[("OTEL_EXPORTER_OTLP_ENDPOINT", dead)]).output().unwrap();
    assert!(out.status.success());
    assert!(started.elapsed() < Duration::from_secs(5), "status took {:?}", started.elapsed());

    // OTLP over gRPC is not spoken: said on stderr, nothing sent, the answer unchanged.
    let mut grpc = web.command(
        &["status", "web", "--format", "json"],
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4317".to_owned()),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc".to_owned()),
        ],
    );
    let out = grpc.stderr(std::process::Stdio::piped()).output().unwrap();
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("http/protobuf") && err.contains("4318"), "{err}");
}
