//! A cold CLI: `skiff status --format json` of the release binary, a new process each
//! time, against a `file://` bucket holding 100 services (state, spec, a release each).
//! Median and p90 wall time over alternating warm runs. Target: median < 10 ms.
//! Writes JSON to `$SKIFF_BENCH_OUT` (or stdout); run through `cargo xtask bench cli`.
#![expect(clippy::print_stdout, reason = "a benchmark reports on stdout")]

use std::time::Instant;

use serde_json::json;

const SERVICES: usize = 100;
const RUNS: usize = 40;

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let skiff = env!("CARGO_BIN_EXE_skiff");
    let url = format!("file://{}", dir.path().join(".skiff/state").display());
    let ledger = skiff_state::Ledger::open(&url, &skiff_objstore::OpenOptions::default()).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        ledger.init("bench").await.unwrap();
        for i in 0..SERVICES {
            let name = format!("svc-{i:03}");
            let yaml = format!("service: {name}\nartifact: {{path: bin}}\nrun: {{command: [bin]}}\nport: 8080\n");
            let ir = skiff_ir::compile(&skiff_spec::parse("skiff.yaml", yaml.as_bytes()).unwrap());
            let digest = ledger.put_spec(&ir).await.unwrap();
            ledger
                .update::<skiff_state::docs::ServiceState, _>(&skiff_state::keys::service_state(&name), |_| {
                    Ok(skiff_state::Update::Write(skiff_state::docs::ServiceState {
                        service: name.clone(),
                        spec_digest: Some(digest.clone()),
                        current_release: Some("2026.12.07.1".into()),
                        stable_release: Some("2026.12.07.1".into()),
                        ..Default::default()
                    }))
                })
                .await
                .unwrap();
        }
    });
    let run = || {
        let start = Instant::now();
        let out = std::process::Command::new(skiff)
            .current_dir(dir.path())
            .env("SKIFF_CONFIG", dir.path().join("config.yaml"))
            .args(["status", "--format", "json"])
            .output()
            .unwrap();
        let ms = start.elapsed().as_secs_f64() * 1000.0;
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        assert_eq!(v["data"]["services"].as_array().map(Vec::len), Some(SERVICES), "{v}");
        ms
    };
    for _ in 0..3 {
        run();
    }
    let mut ms: Vec<f64> = (0..RUNS).map(|_| run()).collect();
    ms.sort_by(f64::total_cmp);
    let at = |q: f64| ms[((ms.len() - 1) as f64 * q) as usize];
    let median = at(0.5);
    let result = json!({
        "suite": "cli",
        "description": format!("`skiff status --format json` (release binary, a new process per run) against a file:// bucket with {SERVICES} services; {RUNS} runs after 3 warm-up runs"),
        "services": SERVICES,
        "median_ms": median,
        "p90_ms": at(0.9),
        "min_ms": ms[0],
        "target": [{"metric": "median_ms", "below": 10.0, "met": median < 10.0}],
    });
    let text = serde_json::to_string_pretty(&result).unwrap();
    match std::env::var_os("SKIFF_BENCH_OUT") {
        Some(path) => std::fs::write(path, text + "\n").unwrap(),
        None => println!("{text}"),
    }
}
