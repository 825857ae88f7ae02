//! `cargo xtask bench`: run each benchmark in release mode and gather its JSON into
//! `bench/results.json`, one entry per suite.

use anyhow::{Context, Result, bail};

use crate::{cargo_with, root};

/// (suite, package, bench target)
const SUITES: &[(&str, &str, &str)] = &[
    ("compile", "skiff-compiler", "compile"),
    ("ledger", "skiff-state", "ledger"),
    ("saga", "skiff-saga", "engine"),
    ("local", "skiff-provider-local", "local"),
    ("restore", "skiff-provider-local", "restore"),
    ("deploy", "skiff-cli", "deploy"),
    ("failover", "skiff-cli", "failover"),
    ("telemetry", "skiff-cli", "telemetry"),
    ("cli", "skiff-cli", "cold"),
    ("control", "skiffd", "status"),
    ("tui", "skiff-tui", "cockpit"),
    ("import", "skiff-kube", "import"),
];

pub(crate) fn run(only: &[String]) -> Result<()> {
    let out_dir = root().join("target").join("bench");
    std::fs::create_dir_all(&out_dir)?;
    let mut results = serde_json::Map::new();
    let results_path = root().join("bench").join("results.json");
    if let Ok(old) = std::fs::read_to_string(&results_path)
        && let Ok(serde_json::Value::Object(m)) = serde_json::from_str(&old)
    {
        results = m;
    }
    let selected: Vec<_> = SUITES.iter().filter(|(s, _, _)| only.is_empty() || only.iter().any(|o| o == s)).collect();
    if selected.is_empty() {
        bail!("no suite matches {only:?}; suites: {}", SUITES.iter().map(|s| s.0).collect::<Vec<_>>().join(", "));
    }
    for (suite, package, target) in selected {
        if *suite == "local" {
            ensure_nginx();
        }
        let out = out_dir.join(format!("{suite}.json"));
        cargo_with(&["bench", "--locked", "-p", package, "--bench", target], &[("SKIFF_BENCH_OUT", out.as_os_str())])?;
        let text =
            std::fs::read_to_string(&out).with_context(|| format!("{suite} wrote no results to {}", out.display()))?;
        let value: serde_json::Value =
            serde_json::from_str(&text).with_context(|| format!("{suite} results are not JSON"))?;
        eprintln!("{suite}: {}", serde_json::to_string(&value["target"]).unwrap_or_default());
        results.insert((*suite).to_owned(), value);
    }
    std::fs::create_dir_all(results_path.parent().expect("has a parent"))?;
    std::fs::write(&results_path, serde_json::to_string_pretty(&serde_json::Value::Object(results))? + "\n")?;
    eprintln!("results: {}", results_path.display());
    Ok(())
}

/// The `local` suite compares Skiff's load balancer with nginx: install the
/// distribution's package when it is missing (the suite skips nginx, and says so, when
/// it cannot be had).
fn ensure_nginx() {
    let present = |p: &str| std::path::Path::new(p).exists();
    if ["/usr/sbin/nginx", "/usr/local/sbin/nginx", "/usr/bin/nginx"].into_iter().any(present) {
        return;
    }
    eprintln!("nginx is not installed: trying `apt-get install -y nginx-light` for the local suite's comparison");
    let installed = std::process::Command::new("apt-get")
        .args(["install", "-y", "-qq", "nginx-light"])
        .status()
        .is_ok_and(|s| s.success());
    if !installed {
        eprintln!("nginx could not be installed: the local suite measures direct and Skiff only");
    }
}
