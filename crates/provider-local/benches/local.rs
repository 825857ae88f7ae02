//! The local provider's footprint and overhead: the same requests sent straight to the
//! instance, through nginx (a reverse proxy with keep-alive upstreams, what a user would
//! put there instead; skipped when `nginx` is not installed) and through Skiff's load
//! balancer, from one load generator (wrk when installed, else a reqwest client) in
//! alternating rounds (p50/p99 latency and requests/s, and their ratios), and a runner's idle RSS (target < 15 MB). Writes JSON to
//! `$SKIFF_BENCH_OUT` (or stdout); run through `cargo xtask bench`.
#![expect(clippy::print_stdout, clippy::print_stderr, reason = "a benchmark reports on stdout and its rows on stderr")]
#![allow(dead_code, reason = "the shared test environment has more than the benchmark uses")]

#[path = "../tests/common/mod.rs"]
mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;
use skiff_pluginapi::{Compute, HealthState, LoadBalancerSpec, Target, TargetGroupSpec, Traffic, Weight};

use common::{Env, eventually, health};
use skiff_testkit::bench::{Nginx, Wrk, WrkRun};

/// Requests per measured round (without wrk), seconds per round (with wrk), concurrent
/// connections, and rounds per path (alternated).
const REQUESTS: usize = 5_000;
const WRK_SECONDS: u32 = 3;
const CLIENTS: usize = 8;
const ROUNDS: usize = 5;
/// How long an instance sits idle before its runner's RSS is read.
const IDLE: Duration = Duration::from_secs(5);

/// Set in the supervisor process this benchmark starts (its local directory).
const SUPERVISOR: &str = "SKIFF_BENCH_SUPERVISOR_DIR";

fn main() {
    // The balancer runs as `skiff local up` runs it: a process of its own with two
    // worker threads, not sharing the load generator's.
    if let Some(dir) = std::env::var_os(SUPERVISOR) {
        let config = skiff_provider_local::SupervisorConfig {
            dir: skiff_provider_local::LocalDir::new(dir),
            runner: skiff_testkit::workspace_release_bin("skiff-runner"),
            runner_args: Vec::new(),
            port: 0,
            instances_exit_with: std::env::var("SKIFF_BENCH_PARENT").ok().and_then(|p| p.parse().ok()),
        };
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let _ = rt.block_on(skiff_provider_local::serve(config));
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(bench());
}

async fn bench() {
    let env = Env::start_apart(
        skiff_testkit::workspace_release_bin("skiff-runner"),
        skiff_testkit::workspace_release_bin("hello"),
        |config| {
            std::process::Command::new(std::env::current_exe().unwrap())
                .env(SUPERVISOR, config.dir.root())
                .env("SKIFF_BENCH_PARENT", std::process::id().to_string())
                .stdout(std::process::Stdio::null())
                .spawn()
                .unwrap()
        },
    )
    .await;
    let release = env.release("bench", &[]).await;
    let group = env.group("bench", &release, 1);
    env.provider.create_group(&group).await.unwrap();
    let instance = eventually("a running instance", 30, || async {
        let g = env.provider.describe_group(&group.name).await.ok()??;
        g.running().first().map(|i| (*i).clone())
    })
    .await;
    let port = instance.port.unwrap();
    let tg = TargetGroupSpec {
        name: "bench-tg".into(),
        service: "bench".into(),
        port: 8080,
        health: health(),
        deregistration_delay_ms: 100,
        target_type: skiff_pluginapi::TargetType::Instance,
    };
    env.provider.ensure_target_group(&tg).await.unwrap();
    env.provider
        .register("bench-tg", &[Target { id: instance.id.clone(), address: instance.address.clone(), port }])
        .await
        .unwrap();
    let lb_port = skiff_testkit::free_port();
    env.provider
        .ensure_load_balancer(&LoadBalancerSpec { service: "bench".into(), listener_port: lb_port })
        .await
        .unwrap();
    env.provider.set_weights("bench", &[Weight { target_group: "bench-tg".into(), weight: 100 }]).await.unwrap();
    eventually("a healthy target", 30, || async {
        let h = env.provider.target_health("bench-tg").await.ok()?;
        h.iter().all(|t| t.state == HealthState::Healthy).then_some(())
    })
    .await;

    skiff_clock::Clock::sleep(&skiff_clock::SystemClock, IDLE).await;
    let runner_pid: u32 = instance.provider_id.trim_start_matches("pid:").parse().unwrap();
    let runner_kb = rss_kb(runner_pid);
    let service_kb = children(runner_pid).into_iter().map(rss_kb).sum::<u64>();

    let direct_url = format!("http://127.0.0.1:{port}/");
    let lb_url = format!("http://127.0.0.1:{lb_port}/");
    let nginx = Nginx::proxy(port);
    let nginx_url = nginx.as_ref().map(|n| format!("http://127.0.0.1:{}/", n.port));
    let wrk = Wrk::find();
    let generator = match &wrk {
        Some(w) => format!(
            "{} (-t2 -c{CLIENTS}, {WRK_SECONDS} s per round, a process of its own)",
            w.version().unwrap_or_else(|| "wrk".into())
        ),
        None => format!(
            "one reqwest client in this process ({CLIENTS} keep-alive connections, {REQUESTS} requests per round; wrk is not installed)"
        ),
    };
    let round = |url: String| {
        let wrk = wrk.clone();
        async move {
            match wrk {
                Some(w) => Measured::from_wrk(
                    &tokio::task::spawn_blocking(move || w.run(&url, 2, CLIENTS as u32, WRK_SECONDS, &[]))
                        .await
                        .unwrap(),
                ),
                None => load(&url, REQUESTS).await,
            }
        }
    };
    load(&direct_url, 500).await;
    load(&lb_url, 500).await;
    if let Some(u) = &nginx_url {
        load(u, 500).await;
    }
    let (mut direct, mut via_lb, mut via_nginx) = (Measured::default(), Measured::default(), Measured::default());
    for _ in 0..ROUNDS {
        direct.add(round(direct_url.clone()).await);
        if let Some(u) = &nginx_url {
            via_nginx.add(round(u.clone()).await);
        }
        via_lb.add(round(lb_url.clone()).await);
    }
    drop(nginx);
    let (d, l) = (direct.summary(), via_lb.summary());
    let n = nginx_url.is_some().then(|| via_nginx.summary());
    let ratio = |a: &serde_json::Value, b: &serde_json::Value, k: &str| a[k].as_f64().unwrap() / b[k].as_f64().unwrap();
    let vs_nginx = n.as_ref().map(|n| {
        json!({
            "requests_per_s": ratio(&l, n, "requests_per_s"),
            "p50": ratio(&l, n, "p50_us"),
            "p99": ratio(&l, n, "p99_us"),
        })
    });
    for (name, row) in [("direct", Some(&d)), ("nginx", n.as_ref()), ("skiff", Some(&l))] {
        match row {
            Some(r) => eprintln!(
                "{name:<7} {:>9.0} req/s  p50 {:>6} us  p99 {:>6} us",
                r["requests_per_s"].as_f64().unwrap(),
                r["p50_us"],
                r["p99_us"]
            ),
            None => {
                eprintln!("{name:<7} skipped: nginx is not installed or did not start (apt-get install nginx-light)")
            }
        }
    }
    let rss_mb = runner_kb as f64 / 1024.0;
    let rps_ratio = l["requests_per_s"].as_f64().unwrap() / d["requests_per_s"].as_f64().unwrap();
    let result = json!({
        "suite": "local",
        "description": format!(
            "{ROUNDS} alternating rounds of GET / with {CLIENTS} keep-alive connections from {generator}, straight to a hello instance, through nginx (keep-alive upstream, worker_processes auto) and through the local load balancer (the supervisor in its own process, two worker threads, as `skiff local up` runs it); per path: requests/s over all rounds, p50/p99 the median of the rounds'; runner RSS after {}s idle",
            IDLE.as_secs()
        ),
        "direct": d,
        "via_nginx": n,
        "via_load_balancer": l,
        "skiff_vs_nginx": vs_nginx,
        "nginx_version": Nginx::version(),
        "load_generator": generator,
        "ratios": {
            "p50": l["p50_us"].as_f64().unwrap() / d["p50_us"].as_f64().unwrap(),
            "p99": l["p99_us"].as_f64().unwrap() / d["p99_us"].as_f64().unwrap(),
            "requests_per_s": rps_ratio,
        },
        "added_latency_us": {
            "p50": l["p50_us"].as_f64().unwrap() - d["p50_us"].as_f64().unwrap(),
            "p99": l["p99_us"].as_f64().unwrap() - d["p99_us"].as_f64().unwrap(),
        },
        "runner_idle_rss_mb": rss_mb,
        "service_idle_rss_mb": service_kb as f64 / 1024.0,
        "target": [
            {"metric": "runner_idle_rss_mb", "below": 15.0, "met": rss_mb < 15.0},
            {"metric": "ratios.requests_per_s", "at_least": 0.5, "met": rps_ratio >= 0.5},
            {
                "metric": "skiff_vs_nginx.requests_per_s", "at_least": 1.0,
                "met": vs_nginx.as_ref().map(|v| v["requests_per_s"].as_f64().unwrap() >= 1.0),
            },
            {
                "metric": "skiff_vs_nginx.p99", "at_most": 1.0,
                "met": vs_nginx.as_ref().map(|v| v["p99"].as_f64().unwrap() <= 1.0),
            },
        ],
    });
    env.stop().await;
    let text = serde_json::to_string_pretty(&result).unwrap();
    match std::env::var_os("SKIFF_BENCH_OUT") {
        Some(path) => std::fs::write(path, text + "\n").unwrap(),
        None => println!("{text}"),
    }
}

#[derive(Default)]
struct Measured {
    latencies_us: Vec<u64>,
    /// wrk's per-round figures (it reports percentiles, not samples).
    rounds: Vec<WrkRun>,
    secs: f64,
    errors: usize,
    /// The first few errors, to say what failed.
    samples: Vec<String>,
}

impl Measured {
    fn from_wrk(run: &WrkRun) -> Measured {
        let errors = usize::try_from(run.errors).unwrap_or(usize::MAX);
        let samples = if errors > 0 { vec![format!("wrk counted {errors} errors")] } else { Vec::new() };
        Measured { rounds: vec![run.clone()], errors, samples, ..Measured::default() }
    }

    fn add(&mut self, other: Measured) {
        self.latencies_us.extend(other.latencies_us);
        self.rounds.extend(other.rounds);
        self.secs += other.secs;
        self.errors += other.errors;
        let room = 5usize.saturating_sub(self.samples.len());
        self.samples.extend(other.samples.into_iter().take(room));
    }

    fn summary(&mut self) -> serde_json::Value {
        if !self.rounds.is_empty() {
            let median = |f: fn(&WrkRun) -> f64| {
                let mut v: Vec<f64> = self.rounds.iter().map(f).collect();
                v.sort_by(f64::total_cmp);
                v[v.len() / 2]
            };
            let requests: u64 = self.rounds.iter().map(|r| r.requests).sum();
            let secs = self.rounds.len() as f64 * f64::from(WRK_SECONDS);
            return json!({
                "requests": requests,
                "errors": self.errors,
                "error_samples": self.samples,
                "p50_us": median(|r| r.p50_us),
                "p99_us": median(|r| r.p99_us),
                "requests_per_s": requests as f64 / secs,
            });
        }
        self.latencies_us.sort_unstable();
        let at = |q: f64| self.latencies_us[((self.latencies_us.len() - 1) as f64 * q) as usize];
        json!({
            "requests": self.latencies_us.len(),
            "errors": self.errors,
            "error_samples": self.samples,
            "p50_us": at(0.5),
            "p99_us": at(0.99),
            "requests_per_s": self.latencies_us.len() as f64 / self.secs,
        })
    }
}

/// `n` requests from [`CLIENTS`] concurrent keep-alive clients.
async fn load(url: &str, n: usize) -> Measured {
    let client = reqwest::Client::builder().no_proxy().pool_max_idle_per_host(CLIENTS).build().unwrap();
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let tasks: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let (client, next, url) = (client.clone(), next.clone(), url.to_owned());
            tokio::spawn(async move {
                let mut m = Measured::default();
                while next.fetch_add(1, Ordering::Relaxed) < n {
                    let t = Instant::now();
                    let failure = match client.get(&url).send().await {
                        Ok(r) if r.status().is_success() => r.bytes().await.err().map(|e| e.to_string()),
                        Ok(r) => Some(format!("{}: {}", r.status(), r.text().await.unwrap_or_default().trim())),
                        Err(e) => Some(format!("{e:?}")),
                    };
                    m.latencies_us.push(t.elapsed().as_micros() as u64);
                    if let Some(f) = failure {
                        m.errors += 1;
                        if m.samples.len() < 5 {
                            m.samples.push(f);
                        }
                    }
                }
                m
            })
        })
        .collect();
    let mut all = Measured::default();
    for t in tasks {
        all.add(t.await.unwrap());
    }
    all.secs = start.elapsed().as_secs_f64();
    all
}

fn rss_kb(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn children(pid: u32) -> Vec<u32> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}
