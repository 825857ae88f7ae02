//! `cargo xtask bench`: run each benchmark in release mode and gather its JSON into
//! `bench/results.json`, one entry per suite, dated and with the machine it ran on;
//! `--plot` draws the recorded results as SVG charts in `bench/` ([`crate::plot`]).

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

pub(crate) fn run(args: &[String]) -> Result<()> {
    let plot = args.iter().any(|a| a == "--plot");
    let only: Vec<String> = args.iter().filter(|a| *a != "--plot").cloned().collect();
    let results_path = root().join("bench").join("results.json");
    if !(plot && only.is_empty()) {
        measure(&only, &results_path)?;
    }
    if plot {
        let text = std::fs::read_to_string(&results_path).with_context(|| {
            format!("no results to plot at {}: run `cargo xtask bench` first", results_path.display())
        })?;
        let serde_json::Value::Object(results) = serde_json::from_str(&text)? else {
            bail!("{} is not a JSON object of suites", results_path.display());
        };
        for file in crate::plot::run(&results, results_path.parent().expect("has a parent"))? {
            eprintln!("chart: {file}");
        }
        let readme_path = root().join("README.md");
        let readme = std::fs::read_to_string(&readme_path)?;
        let with_table = crate::plot::readme_with_table(&readme, &serde_json::Value::Object(results));
        if with_table != readme {
            std::fs::write(&readme_path, with_table)?;
            eprintln!("README.md: the load balancer table is now the recorded run's");
        }
    }
    Ok(())
}

/// Runs the `only` suites (every suite when empty) and records them in `results_path`.
fn measure(only: &[String], results_path: &std::path::Path) -> Result<()> {
    let out_dir = root().join("target").join("bench");
    std::fs::create_dir_all(&out_dir)?;
    let mut results = serde_json::Map::new();
    if let Ok(old) = std::fs::read_to_string(results_path)
        && let Ok(serde_json::Value::Object(m)) = serde_json::from_str(&old)
    {
        results = m;
    }
    let selected: Vec<_> = SUITES.iter().filter(|(s, _, _)| only.is_empty() || only.iter().any(|o| o == s)).collect();
    if selected.is_empty() {
        bail!("no suite matches {only:?}; suites: {}", SUITES.iter().map(|s| s.0).collect::<Vec<_>>().join(", "));
    }
    for (suite, package, target) in selected {
        if matches!(*suite, "local" | "control") {
            ensure_packages();
        }
        let out = out_dir.join(format!("{suite}.json"));
        cargo_with(&["bench", "--locked", "-p", package, "--bench", target], &[("SKIFF_BENCH_OUT", out.as_os_str())])?;
        let text =
            std::fs::read_to_string(&out).with_context(|| format!("{suite} wrote no results to {}", out.display()))?;
        let mut value: serde_json::Value =
            serde_json::from_str(&text).with_context(|| format!("{suite} results are not JSON"))?;
        value["measured"] = serde_json::json!({"date": today(), "machine": machine()});
        eprintln!("{suite}: {}", serde_json::to_string(&value["target"]).unwrap_or_default());
        results.insert((*suite).to_owned(), value);
    }
    std::fs::create_dir_all(results_path.parent().expect("has a parent"))?;
    std::fs::write(results_path, serde_json::to_string_pretty(&serde_json::Value::Object(results))? + "\n")?;
    eprintln!("results: {}", results_path.display());
    Ok(())
}

/// The `local` and `control` suites compare Skiff with nginx, driven by wrk: install the
/// distribution's packages when missing (the suites skip nginx, or fall back to their
/// own client instead of wrk, and say so, when they cannot be had).
fn ensure_packages() {
    let mut missing = Vec::new();
    if !skiff_testkit::bench::Nginx::installed() {
        missing.push("nginx-light");
    }
    if skiff_testkit::bench::Wrk::find().is_none() {
        missing.push("wrk");
    }
    if missing.is_empty() {
        return;
    }
    eprintln!("trying `apt-get install -y {}` for the comparison", missing.join(" "));
    let installed = std::process::Command::new("apt-get")
        .args(["install", "-y", "-qq"])
        .args(&missing)
        .status()
        .is_ok_and(|s| s.success());
    if !installed {
        eprintln!("{} could not be installed: the suites say which rows they skipped", missing.join(" and "));
    }
}

/// Today's date (UTC), from the project's clock.
fn today() -> String {
    use skiff_clock::Clock as _;
    skiff_clock::Utc::from_ms(skiff_clock::SystemClock.now_ms()).date()
}

/// "2 cores (AMD EPYC), 24 GiB, Linux 6.18" — from /proc, so a chart says where it ran.
fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name").and_then(|r| r.split_once(':')).map(|(_, m)| m.trim().to_owned()))
        .unwrap_or_else(|| "unknown CPU".to_owned());
    let cores = std::thread::available_parallelism().map_or(0, std::num::NonZero::get);
    let mem_gib = std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0 / 1024.0);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let kernel: String = kernel.trim().split('.').take(2).collect::<Vec<_>>().join(".");
    format!("{cores} cores ({model}), {mem_gib:.0} GiB, Linux {kernel}")
}
