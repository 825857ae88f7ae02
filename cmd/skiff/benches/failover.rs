//! A local switchover of a two-region service (real PostgreSQL streaming replica,
//! a global front between the regions' load balancers) by the real `skiff` binary,
//! under a writer committing one row at a time through the consumers' secret:
//! - write unavailability = the longest gap between two acknowledged writes while the
//!   saga runs (target < 10 s on 2 cores), beside the plan's estimate;
//! - time to 100% traffic = the saga's events from the freeze starting to the last
//!   traffic shift read back.
//!
//! Writes JSON to `$SKIFF_BENCH_OUT` (or stdout); run through `cargo xtask bench failover`.
#![expect(clippy::print_stdout, reason = "a benchmark reports on stdout")]

use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde_json::json;

const ROUNDS: usize = 3;
const TARGET_MS: f64 = 10_000.0;

fn psql(url: &str, sql: &str) -> bool {
    skiff_testkit::postgres::psql_url(url, sql).is_ok()
}

fn main() {
    let mut rounds = Vec::new();
    for _ in 0..ROUNDS {
        rounds.push(round());
    }
    let mut windows: Vec<f64> = rounds.iter().map(|r| r["write_unavailability_ms"].as_f64().unwrap()).collect();
    windows.sort_by(f64::total_cmp);
    let median = windows[windows.len() / 2];
    let mut traffic: Vec<f64> = rounds.iter().map(|r| r["time_to_full_traffic_ms"].as_f64().unwrap()).collect();
    traffic.sort_by(f64::total_cmp);
    let result = json!({
        "suite": "failover",
        "description": format!("{ROUNDS} local switchovers us-east-1 → us-west-2 of a two-region service (PostgreSQL streaming replica, one instance per region, global front) by the skiff binary, under a writer committing one row per psql call through the consumers' secret"),
        "rounds": rounds,
        "write_unavailability_ms_median": median,
        "time_to_full_traffic_ms_median": traffic[traffic.len() / 2],
        "target": {"metric": "write_unavailability_ms_median", "below": TARGET_MS, "met": median < TARGET_MS},
    });
    let text = serde_json::to_string_pretty(&result).unwrap();
    match std::env::var_os("SKIFF_BENCH_OUT") {
        Some(path) => std::fs::write(path, text + "\n").unwrap(),
        None => println!("{text}"),
    }
}

fn round() -> serde_json::Value {
    let dir = tempfile::tempdir().unwrap();
    let skiff = env!("CARGO_BIN_EXE_skiff");
    let runner = skiff_testkit::workspace_release_bin("skiff-runner");
    let api = skiff_testkit::workspace_release_bin("orders-api");
    let port = skiff_testkit::free_port();
    let yaml = format!(
        "service: accounts\nartifact: {{path: {}}}\n\
         run: {{command: [orders-api, --port, \"${{PORT}}\"]}}\nport: {port}\n\
         health: {{path: /healthz, interval: 1s, timeout: 500ms, healthy_threshold: 1, unhealthy_threshold: 2}}\n\
         instances: {{min: 1, max: 1, desired: 1}}\n\
         regions: [us-east-1, us-west-2]\n\
         secrets: {{DATABASE_URL: secret://accounts-db/url}}\n\
         database: {{name: accounts-db, engine: postgres, version: \"16\"}}\n\
         rollout: {{canary: {{steps: [100], bake: 0s}}, drain_timeout: 1s, step_timeout: 1m}}\n",
        api.display()
    );
    std::fs::write(dir.path().join("skiff.yaml"), yaml).unwrap();
    let run = |args: &[&str]| {
        let out = Command::new(skiff)
            .current_dir(dir.path())
            .env("HOME", dir.path())
            .env("SKIFF_RUNNER_BIN", &runner)
            .env("SKIFF_CONFIG", dir.path().join("config.yaml"))
            .args(args)
            .output()
            .unwrap();
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap_or_default()
    };
    let _down = Down(&run, dir.path());
    let deployed = run(&["deploy", "--yes", "--format", "json"]);
    assert_eq!(deployed["ok"], true, "{deployed}");
    let secrets = skiff_secrets::LocalSecrets::new(dir.path().join(".skiff/local/secrets"));
    let url = secrets.get("secret://accounts-db/url").unwrap().unwrap();
    assert!(psql(&url, "create table acks (seq bigint primary key)"));

    let (stop, acks) = (Arc::new(AtomicBool::new(false)), Arc::new(Mutex::new(Vec::<Instant>::new())));
    let writer = {
        let (stop, acks) = (stop.clone(), acks.clone());
        let store = dir.path().join(".skiff/local/secrets");
        std::thread::spawn(move || {
            let secrets = skiff_secrets::LocalSecrets::new(store);
            let mut seq = 0u64;
            while !stop.load(Ordering::SeqCst) {
                seq += 1;
                let Some(url) = secrets.get("secret://accounts-db/url").ok().flatten() else { continue };
                if psql(&url, &format!("insert into acks values ({seq})")) {
                    acks.lock().unwrap().push(Instant::now());
                }
            }
        })
    };
    let gated = run(&["failover", "stack", "accounts", "--to", "us-west-2", "--yes", "--format", "json"]);
    assert_eq!(gated["code"], "APPROVAL_REQUIRED", "{gated}");
    let estimate = gated["data"]["failover"]["write_unavailability_ms"].as_f64().unwrap_or_default();
    let op = gated["operation_id"].as_str().unwrap().to_owned();
    let started = Instant::now();
    let done = run(&["saga", "approve", &op, "--yes", "--format", "json"]);
    let finished = Instant::now();
    assert_eq!(done["code"], "OK", "{done}");
    // A few writes on the new primary close the last gap.
    let settle = acks.lock().unwrap().len() + 5;
    while acks.lock().unwrap().len() < settle {
        skiff_clock::SystemClock::block_for(std::time::Duration::from_millis(10));
    }
    stop.store(true, Ordering::SeqCst);
    writer.join().unwrap();
    let acks = acks.lock().unwrap().clone();
    let during: Vec<&Instant> = acks.iter().filter(|a| **a >= started).collect();
    let before = acks.iter().rev().find(|a| **a < started).copied().unwrap_or(started);
    let window = std::iter::once(&before)
        .chain(during.iter().copied())
        .collect::<Vec<_>>()
        .windows(2)
        .map(|w| w[1].duration_since(*w[0]).as_secs_f64() * 1000.0)
        .fold(0.0, f64::max);
    let events = run(&["saga", "events", &op, "--format", "json"]);
    let at = |step: &str, kind: &str| {
        events["data"]["events"].as_array().into_iter().flatten().find_map(|e| {
            (e["data"]["step"] == step && e["type"] == kind).then(|| e["at_ms"].as_f64().unwrap_or_default())
        })
    };
    let traffic_ms = at("shift-100", "step_succeeded").unwrap() - at("freeze", "step_started").unwrap();
    let frozen_ms = at("repoint", "step_succeeded").unwrap() - at("freeze", "step_started").unwrap();
    json!({
        "write_unavailability_ms": window,
        "estimate_ms": estimate,
        "freeze_to_repointed_ms": frozen_ms,
        "time_to_full_traffic_ms": traffic_ms,
        "saga_ms": finished.duration_since(started).as_secs_f64() * 1000.0,
        "writes": acks.len(),
    })
}

/// Stops everything the round started, also when it fails, and removes the clusters'
/// data kept outside the directory (PostgreSQL's home, when run as root).
struct Down<'a, F: Fn(&[&str]) -> serde_json::Value>(&'a F, &'a std::path::Path);

impl<F: Fn(&[&str]) -> serde_json::Value> Drop for Down<'_, F> {
    fn drop(&mut self) {
        (self.0)(&["local", "down", "--stop-instances", "--yes", "--format", "json"]);
        let state = format!("file://{}", self.1.join(".skiff/state").display());
        let data = skiff_provider_local::LocalDir::for_state(&state, self.1).database_data();
        if !data.starts_with(self.1) {
            let _ = std::fs::remove_dir_all(data);
        }
    }
}
