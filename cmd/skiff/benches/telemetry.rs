//! What tracing costs when the collector is gone: canary deploys of a 3-instance hello
//! service (5 → 25 → 50 → 100, zero bake) by the release `skiff` binary on the local
//! provider, alternating rounds without OpenTelemetry and with
//! `OTEL_EXPORTER_OTLP_ENDPOINT` pointing at a port nothing listens on. Step overhead =
//! the steps' time − waiting for instances (provision, register), from the events.
//! Target: the steps' time with the dead collector at most 5% above the time without
//! (medians). Also: how much later a command exits with the collector gone (closed
//! port) and when it accepts connections and never answers (bound: the 2 s flush).
//! Writes JSON to `$SKIFF_BENCH_OUT` (or stdout); run through `cargo xtask bench telemetry`.
#![expect(clippy::print_stdout, reason = "a benchmark reports on stdout")]

use std::time::Instant;

use serde_json::json;

const ROUNDS: usize = 6;

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let skiff = env!("CARGO_BIN_EXE_skiff");
    let runner = skiff_testkit::workspace_release_bin("skiff-runner");
    let hello = skiff_testkit::workspace_release_bin("hello");
    let port = skiff_testkit::free_port();
    let dead = format!("http://127.0.0.1:{}", skiff_testkit::free_port());
    // Accepts connections (the kernel's backlog) and never reads or answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let silent = format!("http://{}", silent.local_addr().unwrap());
    let spec = |message: &str| {
        let yaml = format!(
            "service: bench\nartifact: {{path: {}}}\nrun: {{command: [hello], env: {{HELLO_MESSAGE: {message}}}}}\nport: {port}\n\
             health: {{path: /healthz, interval: 1s, timeout: 500ms, healthy_threshold: 1, unhealthy_threshold: 2}}\n\
             instances: {{min: 3, max: 3, desired: 3}}\n\
             rollout:\n  canary: {{steps: [5, 25, 50, 100], bake: 0s}}\n  drain_timeout: 0s\n",
            hello.display()
        );
        std::fs::write(dir.path().join("skiff.yaml"), yaml).unwrap();
    };
    let run = |args: &[&str], otel: Option<&str>| {
        let mut cmd = std::process::Command::new(skiff);
        cmd.current_dir(dir.path())
            .env("SKIFF_RUNNER_BIN", &runner)
            .env("SKIFF_CONFIG", dir.path().join("config.yaml"))
            .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
            .args(args);
        if let Some(endpoint) = otel {
            cmd.env("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint);
        }
        let start = Instant::now();
        let out = cmd.output().unwrap();
        let ms = start.elapsed().as_secs_f64() * 1000.0;
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        assert_eq!(v["ok"], true, "skiff {args:?}: {}", String::from_utf8_lossy(&out.stdout));
        (v, ms)
    };
    spec("v0");
    run(&["deploy", "--yes", "--format", "json"], None);
    let (mut off, mut on) = (Vec::new(), Vec::new());
    for i in 1..=ROUNDS * 2 {
        spec(&format!("v{i}"));
        let otel = (i % 2 == 0).then_some(dead.as_str());
        let (v, total_ms) = run(&["deploy", "--yes", "--format", "json"], otel);
        let op = v["operation_id"].as_str().unwrap().to_owned();
        let (events, _) = run(&["saga", "events", &op, "--format", "json"], None);
        let (steps_ms, waits_ms) = steps(&events["data"]["events"]);
        let round = json!({"collector": if otel.is_some() { "down" } else { "none" }, "total_ms": total_ms,
                           "steps_ms": steps_ms, "waits_ms": waits_ms, "overhead_ms": steps_ms - waits_ms});
        if otel.is_some() { on.push(round) } else { off.push(round) }
    }
    let mut exits = Vec::new();
    for otel in [None, Some(silent.as_str())] {
        let mut times: Vec<f64> = (0..3).map(|_| run(&["status", "bench", "--format", "json"], otel).1).collect();
        times.sort_by(f64::total_cmp);
        exits.push(times[1]);
    }
    run(&["local", "down", "--stop-instances", "--yes", "--format", "json"], None);
    let median = |rounds: &[serde_json::Value], key: &str| {
        let mut v: Vec<f64> = rounds.iter().map(|r| r[key].as_f64().unwrap()).collect();
        v.sort_by(f64::total_cmp);
        (v[v.len() / 2 - 1] + v[v.len() / 2]) / 2.0
    };
    let ratio = median(&on, "steps_ms") / median(&off, "steps_ms");
    let closed_exit_delay_ms = median(&on, "total_ms") - median(&off, "total_ms");
    let silent_exit_delay_ms = exits[1] - exits[0];
    let result = json!({
        "suite": "telemetry",
        "description": format!("{ROUNDS} canary deploys (5/25/50/100, zero bake, 3 instances) without OpenTelemetry and {ROUNDS} with OTEL_EXPORTER_OTLP_ENDPOINT at a closed port, alternating: the steps' time (from the events), Skiff's own part of it (steps − waiting for instances, at the events' 1 ms resolution) and the whole command; and `skiff status` against a collector that accepts and never answers"),
        "rounds": off.iter().chain(&on).collect::<Vec<_>>(),
        "steps_ms_median_without": median(&off, "steps_ms"),
        "steps_ms_median_collector_down": median(&on, "steps_ms"),
        "step_time_ratio": ratio,
        "overhead_ms_median_without": median(&off, "overhead_ms"),
        "overhead_ms_median_collector_down": median(&on, "overhead_ms"),
        "closed_collector_exit_delay_ms": closed_exit_delay_ms,
        "status_exit_ms_without": exits[0],
        "status_exit_ms_silent_collector": exits[1],
        "silent_collector_exit_delay_ms": silent_exit_delay_ms,
        "target": {"metric": "step_time_ratio", "at_most": 1.05, "met": ratio <= 1.05,
                   "and": {"metric": "silent_collector_exit_delay_ms", "at_most": 2250.0, "met": silent_exit_delay_ms <= 2250.0}},
    });
    let text = serde_json::to_string_pretty(&result).unwrap();
    match std::env::var_os("SKIFF_BENCH_OUT") {
        Some(path) => std::fs::write(path, text + "\n").unwrap(),
        None => println!("{text}"),
    }
}

/// The steps' total time and the part spent waiting for the provider (provision,
/// register), from `step_started` to `step_succeeded` of each.
fn steps(events: &serde_json::Value) -> (f64, f64) {
    let mut started = std::collections::BTreeMap::new();
    let (mut total, mut waits) = (0u64, 0u64);
    for e in events.as_array().into_iter().flatten() {
        let step = e["data"]["step"].as_str().unwrap_or_default().to_owned();
        let at = e["at_ms"].as_u64().unwrap_or(0);
        match e["type"].as_str().unwrap_or_default() {
            "step_started" => {
                started.insert(step, at);
            }
            "step_succeeded" => {
                if let Some(t0) = started.remove(&step) {
                    let took = at.saturating_sub(t0);
                    total += took;
                    if step == "provision" || step == "register" {
                        waits += took;
                    }
                }
            }
            _ => {}
        }
    }
    (total as f64, waits as f64)
}
