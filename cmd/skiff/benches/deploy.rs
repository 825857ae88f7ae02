//! Skiff's own overhead in a canary deploy: a 3-instance hello service, canary steps
//! 5 → 25 → 50 → 100 with zero bake, deployed by the real `skiff` binary on the local
//! provider. Overhead = wall time − time waiting for instances to start and turn
//! healthy (the provision and register steps) − drain waits. Target: < 3 s.
//! Writes JSON to `$SKIFF_BENCH_OUT` (or stdout); run through `cargo xtask bench`.
#![expect(clippy::print_stdout, reason = "a benchmark reports on stdout")]

use std::time::Instant;

use serde_json::json;

const ROUNDS: usize = 3;
const DRAIN_MS: u64 = 0;

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let skiff = env!("CARGO_BIN_EXE_skiff");
    let runner = skiff_testkit::workspace_release_bin("skiff-runner");
    let hello = skiff_testkit::workspace_release_bin("hello");
    let port = skiff_testkit::free_port();
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
    let run = |args: &[&str]| {
        let out = std::process::Command::new(skiff)
            .current_dir(dir.path())
            .env("SKIFF_RUNNER_BIN", &runner)
            .env("SKIFF_CONFIG", dir.path().join("config.yaml"))
            .args(args)
            .output()
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        assert_eq!(v["ok"], true, "skiff {args:?}: {}", String::from_utf8_lossy(&out.stdout));
        v
    };
    spec("v0");
    run(&["deploy", "--yes", "--format", "json"]);
    let mut rounds = Vec::new();
    for i in 1..=ROUNDS {
        spec(&format!("v{i}"));
        let start = Instant::now();
        let v = run(&["deploy", "--yes", "--format", "json"]);
        let total_ms = start.elapsed().as_secs_f64() * 1000.0;
        let op = v["operation_id"].as_str().unwrap().to_owned();
        let events = run(&["saga", "events", &op, "--format", "json"]);
        let waits_ms = waits(&events["data"]["events"]) + DRAIN_MS as f64;
        rounds.push(json!({"total_ms": total_ms, "waits_ms": waits_ms, "overhead_ms": total_ms - waits_ms}));
    }
    run(&["local", "down", "--stop-instances", "--yes", "--format", "json"]);
    let mut overheads: Vec<f64> = rounds.iter().map(|r| r["overhead_ms"].as_f64().unwrap()).collect();
    overheads.sort_by(f64::total_cmp);
    let median = overheads[overheads.len() / 2];
    let result = json!({
        "suite": "deploy",
        "description": format!("{ROUNDS} canary deploys (5/25/50/100, zero bake) of a 3-instance service by the skiff binary on the local provider; overhead = wall time − waiting for instances to start and pass health checks"),
        "rounds": rounds,
        "overhead_ms_median": median,
        "target": {"metric": "overhead_ms_median", "below": 3000.0, "met": median < 3000.0},
    });
    let text = serde_json::to_string_pretty(&result).unwrap();
    match std::env::var_os("SKIFF_BENCH_OUT") {
        Some(path) => std::fs::write(path, text + "\n").unwrap(),
        None => println!("{text}"),
    }
}

/// Time spent in the steps that wait for the provider: provision and register.
fn waits(events: &serde_json::Value) -> f64 {
    let mut started = std::collections::BTreeMap::new();
    let mut total = 0u64;
    for e in events.as_array().into_iter().flatten() {
        let step = e["data"]["step"].as_str().unwrap_or_default().to_owned();
        if step != "provision" && step != "register" {
            continue;
        }
        let at = e["at_ms"].as_u64().unwrap_or(0);
        match e["type"].as_str() {
            Some("step_started") => {
                started.insert(step, at);
            }
            Some("step_succeeded") => total += at.saturating_sub(started.get(&step).copied().unwrap_or(at)),
            _ => {}
        }
    }
    total as f64
}
