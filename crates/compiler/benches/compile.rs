//! Benchmark: parse + validate + compile (IR and plan) of 1,000 generated specs,
//! reported as time per service. Writes JSON to `$SKIFF_BENCH_OUT` (or stdout).
//! Target: p50 below 1 ms per service. Run through `cargo xtask bench`.
#![expect(clippy::print_stdout, reason = "a benchmark reports on stdout")]

use std::time::Instant;

const SERVICES: usize = 1_000;
const ROUNDS: usize = 5;

/// A varied, valid spec for service number `i`.
fn spec(i: usize) -> String {
    let availability = ["high", "standard", "low"][i % 3];
    let cost = ["low", "balanced", "performance"][(i / 3) % 3];
    let mut s = format!(
        "service: svc-{i}\nartifact: {{path: target/release/svc-{i}}}\nrun:\n  command: [svc-{i}, --port, \"${{PORT}}\"]\n  env: {{RUST_LOG: info, N: \"{i}\"}}\n"
    );
    if i.is_multiple_of(7) {
        s.push_str("kind: worker\nrollout: {strategy: all_at_once}\n");
    } else {
        s.push_str(&format!(
            "port: {}\nhealth: {{path: /healthz, interval: 5s}}\nrollout:\n  canary: {{steps: [5, 25, 50, 100], bake: 2m, analysis: {{max_error_rate: 1%, max_p95_latency: 300ms}}}}\n",
            8000 + i % 1000
        ));
    }
    s.push_str(&format!("intent: {{availability: {availability}, cost: {cost}}}\n"));
    if i.is_multiple_of(4) {
        s.push_str(&format!("database: {{name: svc-{i}-db, engine: postgres, version: \"16\"}}\nsecrets:\n  DATABASE_URL: secret://svc-{i}-db/url\n"));
    }
    if i.is_multiple_of(5) {
        s.push_str(&format!(
            "iam:\n  allow:\n    - {{action: \"s3:GetObject\", resource: \"arn:aws:s3:::svc-{i}/*\"}}\n"
        ));
    }
    s
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

fn main() {
    let specs: Vec<String> = (0..SERVICES).map(spec).collect();
    let mut per_service_us = Vec::with_capacity(SERVICES * ROUNDS);
    let mut bytes = 0usize;
    let total = Instant::now();
    for _ in 0..ROUNDS {
        for text in &specs {
            let start = Instant::now();
            let spec = skiff_spec::parse("bench.yaml", text.as_bytes()).expect("generated specs are valid");
            let out = skiff_compiler::compile(&spec);
            bytes += out.plan.canonical_json().len() + out.ir.canonical_json().len();
            per_service_us.push(start.elapsed().as_secs_f64() * 1e6);
        }
    }
    let total_s = total.elapsed().as_secs_f64();
    per_service_us.sort_by(f64::total_cmp);
    let p50 = percentile(&per_service_us, 0.50);
    let result = serde_json::json!({
        "suite": "compile",
        "description": "parse + validate + compile (IR, plan, canonical JSON) of 1,000 generated specs, 5 rounds",
        "services": SERVICES,
        "rounds": ROUNDS,
        "per_service_us": {
            "p50": p50,
            "p90": percentile(&per_service_us, 0.90),
            "p99": percentile(&per_service_us, 0.99),
            "max": per_service_us.last().copied().unwrap_or(0.0),
        },
        "services_per_second": (SERVICES * ROUNDS) as f64 / total_s,
        "output_bytes": bytes / ROUNDS,
        "target": {"metric": "per_service_us.p50", "below": 1000.0, "met": p50 < 1000.0},
    });
    let text = serde_json::to_string_pretty(&result).expect("json");
    match std::env::var_os("SKIFF_BENCH_OUT") {
        Some(path) => std::fs::write(path, text + "\n").expect("write bench output"),
        None => println!("{text}"),
    }
}
