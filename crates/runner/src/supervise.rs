//! Running the program: restart with exponential backoff, a crash loop flagged when it
//! exits too often, an HTTP health probe with thresholds, a heartbeat carrying RSS
//! and CPU, and a graceful drain on SIGTERM (SIGTERM to the program, SIGKILL after
//! its drain time).

use std::collections::VecDeque;
use std::process::Stdio;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use skiff_state::docs::MemberHealth;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};
use tokio::signal::unix::{SignalKind, signal};

use crate::logs::Log;
use crate::member::Member;
use crate::prepare::Prepared;
use crate::{Config, exit};
use skiff_clock::{Clock as _, SystemClock};

/// A run shorter than this counts towards the crash loop and grows the backoff.
const STABLE_AFTER: Duration = Duration::from_secs(30);
/// The window in which restarts are counted for a crash loop.
const CRASH_WINDOW: Duration = Duration::from_secs(60);

fn spawn(p: &Prepared, log: &Log) -> std::io::Result<Child> {
    let (program, args) = p.command.split_first().ok_or_else(|| std::io::Error::other("the command is empty"))?;
    let mut child = Command::new(program)
        .args(args)
        .envs(p.env.iter().map(|(k, v)| (k, v)))
        .current_dir(&p.dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    for stream in [
        child.stdout.take().map(|s| Box::new(s) as Box<dyn tokio::io::AsyncRead + Unpin + Send>),
        child.stderr.take().map(|s| Box::new(s) as _),
    ]
    .into_iter()
    .flatten()
    {
        let log = log.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stream).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                log.line(&line);
            }
        });
    }
    Ok(child)
}

/// One HTTP/1.1 GET to the program; whether it answered 2xx in time.
async fn probe(port: u16, path: &str, timeout: Duration) -> bool {
    let attempt = async {
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.ok()?;
        s.write_all(format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").as_bytes())
            .await
            .ok()?;
        let mut head = [0u8; 32];
        let n = s.read(&mut head).await.ok()?;
        let text = String::from_utf8_lossy(&head[..n]).into_owned();
        text.split_whitespace().nth(1)?.parse::<u16>().ok()
    };
    matches!(skiff_clock::timeout(&SystemClock, timeout, attempt).await, Ok(Some(code)) if (200..300).contains(&code))
}

/// Resident memory (KiB) and total CPU ticks of a process, from /proc.
fn usage(pid: u32) -> Option<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss = status.lines().find_map(|l| l.strip_prefix("VmRSS:"))?.split_whitespace().next()?.parse().ok()?;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after_name = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some((rss, ticks))
}

/// Health from consecutive probe results.
struct Tracker {
    healthy: bool,
    ok: u32,
    bad: u32,
}

impl Tracker {
    /// Records a probe; `Some(new state)` when it changes.
    fn record(&mut self, passed: bool, healthy_after: u32, unhealthy_after: u32) -> Option<bool> {
        if passed {
            self.ok += 1;
            self.bad = 0;
            if !self.healthy && self.ok >= healthy_after {
                self.healthy = true;
                return Some(true);
            }
        } else {
            self.bad += 1;
            self.ok = 0;
            if self.healthy && self.bad >= unhealthy_after {
                self.healthy = false;
                return Some(false);
            }
        }
        None
    }
}

/// The program's figures as metrics (OTLP when the runner exports): resident memory,
/// CPU, health and restarts, labelled with the service, release and instance.
fn gauges(config: &Config, rss_kb: u64, cpu: Option<f64>, healthy: bool, restarts: u32) {
    use skiff_observability::metrics::gauge;
    let labels = [
        ("service", config.service.as_str()),
        ("release", config.release.as_str()),
        ("instance", config.instance.as_str()),
    ];
    gauge("skiff_runner_rss_bytes", "Resident memory of the program.", (rss_kb * 1024) as f64, &labels);
    if let Some(c) = cpu {
        gauge("skiff_runner_cpu_percent", "CPU of the program, percent of one core.", c, &labels);
    }
    gauge(
        "skiff_runner_healthy",
        "1 while the program passes its health check.",
        f64::from(u8::from(healthy)),
        &labels,
    );
    gauge("skiff_runner_restarts", "Times the program was restarted.", f64::from(restarts), &labels);
}

pub(crate) async fn supervise(config: &Config, p: Prepared, member: &Member, log: &Log) -> u8 {
    let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
        log.runner("cannot install signal handlers");
        return exit::SETUP;
    };
    let interval =
        p.health.as_ref().map_or(Duration::from_secs(1), |h| Duration::from_millis(h.interval.as_millis().max(100)));
    let clock: std::sync::Arc<dyn skiff_clock::Clock> = std::sync::Arc::new(SystemClock);
    let mut probe_tick = skiff_clock::Ticker::new(clock.clone(), interval);
    let mut heartbeat = skiff_clock::Ticker::new(clock, Duration::from_millis(config.heartbeat_ms.max(100)));
    let mut exits: VecDeque<Instant> = VecDeque::new();
    let mut restarts: u32 = 0;
    let mut quick_failures: u32 = 0;
    loop {
        let start = crate::phase("start", config);
        let spawned = start.in_scope(|| spawn(&p, log));
        start.record("outcome", if spawned.is_ok() { "started" } else { "failed" });
        drop(start);
        let child = match spawned {
            Ok(c) => c,
            Err(e) => {
                log.runner(&format!("cannot start `{}`: {e}", p.command.join(" ")));
                let _ = member
                    .set(MemberHealth::Unhealthy, |d| {
                        d.phase = "backing-off".to_owned();
                        d.reason = Some(format!("cannot start the program: {e}"));
                    })
                    .await;
                if sleep_or_stop(Duration::from_secs(5), &mut term, &mut int).await {
                    return stop(member, log).await;
                }
                continue;
            }
        };
        let mut child = child;
        let pid = child.id().unwrap_or(0);
        let started = Instant::now();
        log.runner(&format!("started `{}` as pid {pid} on port {}", p.command.join(" "), config.port));
        let crash_loop = exits.len() >= config.crash_loop_restarts;
        let mut tracker = Tracker { healthy: false, ok: 0, bad: 0 };
        // Open until the first verdict of the health check: how long the program took to
        // become healthy, in the trace of the operation that started it.
        let mut health_span = Some(crate::phase("health", config));
        // Without an HTTP health check a running process is healthy.
        let initial = if crash_loop {
            MemberHealth::Unhealthy
        } else if p.health.is_none() {
            tracker.healthy = true;
            MemberHealth::Healthy
        } else {
            MemberHealth::Starting
        };
        let _ = member
            .set(initial, |d| {
                d.phase = "running".to_owned();
                d.pid = Some(pid);
                d.restarts = restarts;
                d.crash_loop = crash_loop;
                d.code = None;
                d.reason = crash_loop.then(|| format!("crash loop: {} exits in the last minute", exits.len()));
            })
            .await;
        let mut cpu_before: Option<(u64, Instant)> = None;
        let status = loop {
            tokio::select! {
                status = child.wait() => break status,
                _ = term.recv() => return drain(child, &p, member, log).await,
                _ = int.recv() => return drain(child, &p, member, log).await,
                () = probe_tick.tick() => {
                    if let Some(h) = &p.health {
                        let passed = probe(config.port, &h.path, Duration::from_millis(h.timeout.as_millis().max(50))).await;
                        if let Some(now_healthy) = tracker.record(passed, h.healthy_threshold, h.unhealthy_threshold) {
                            let crash_loop = exits.len() >= config.crash_loop_restarts;
                            let health = if now_healthy && !crash_loop { MemberHealth::Healthy } else { MemberHealth::Unhealthy };
                            log.runner(&format!("health: {}", if now_healthy { "passing" } else { "failing" }));
                            if let Some(span) = health_span.take() {
                                span.record("outcome", if now_healthy { "passing" } else { "failing" });
                            }
                            let _ = member.set(health, |d| d.reason = (!now_healthy).then(|| format!("{} failing", h.path))).await;
                        }
                    }
                }
                () = heartbeat.tick() => {
                    if started.elapsed() >= STABLE_AFTER && !exits.is_empty() {
                        exits.clear();
                        quick_failures = 0;
                        if member.health().await == MemberHealth::Unhealthy && tracker.healthy {
                            let _ = member.set(MemberHealth::Healthy, |d| { d.crash_loop = false; d.reason = None; }).await;
                        }
                    }
                    if let Some((rss, ticks)) = usage(pid) {
                        let now = Instant::now();
                        let cpu = cpu_before.map(|(t0, i0)| (ticks.saturating_sub(t0) as f64) / now.duration_since(i0).as_secs_f64().max(0.001));
                        cpu_before = Some((ticks, now));
                        member.note(|d| { d.rss_kb = Some(rss); d.cpu_percent = cpu.map(|c| (c * 10.0).round() / 10.0); }).await;
                        gauges(config, rss, cpu, tracker.healthy, restarts);
                    }
                    let _ = member.write().await;
                }
            }
        };
        let exit_text = status.map_or_else(|e| format!("wait failed: {e}"), |s| s.to_string());
        restarts += 1;
        let now = Instant::now();
        exits.push_back(now);
        while exits.front().is_some_and(|t| now.duration_since(*t) > CRASH_WINDOW) {
            exits.pop_front();
        }
        quick_failures = if started.elapsed() < STABLE_AFTER { quick_failures + 1 } else { 1 };
        let crash_loop = exits.len() >= config.crash_loop_restarts;
        let backoff = Duration::from_millis(200u64.saturating_mul(1 << quick_failures.min(6)).min(10_000));
        log.runner(&format!(
            "program exited ({exit_text}); restart {restarts} in {}ms{}",
            backoff.as_millis(),
            if crash_loop { " — crash loop" } else { "" }
        ));
        let _ = member
            .set(if crash_loop { MemberHealth::Unhealthy } else { MemberHealth::Starting }, |d| {
                d.phase = "backing-off".to_owned();
                d.pid = None;
                d.restarts = restarts;
                d.crash_loop = crash_loop;
                d.last_exit = Some(exit_text.clone());
                d.reason = crash_loop.then(|| format!("crash loop: {} exits in the last minute", exits.len()));
            })
            .await;
        if sleep_or_stop(backoff, &mut term, &mut int).await {
            return stop(member, log).await;
        }
    }
}

/// Sleeps; `true` if a stop signal arrived instead.
async fn sleep_or_stop(
    d: Duration,
    term: &mut tokio::signal::unix::Signal,
    int: &mut tokio::signal::unix::Signal,
) -> bool {
    tokio::select! {
        () = SystemClock.sleep(d) => false,
        _ = term.recv() => true,
        _ = int.recv() => true,
    }
}

/// Graceful stop: SIGTERM to the program, SIGKILL after its drain time.
async fn drain(mut child: Child, p: &Prepared, member: &Member, log: &Log) -> u8 {
    log.runner(&format!("draining: SIGTERM to the program, up to {}ms", p.drain_ms));
    let _ = member.set(MemberHealth::Draining, |d| d.phase = "draining".to_owned()).await;
    if let Some(pid) = child.id().and_then(|p| i32::try_from(p).ok()) {
        let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
    }
    let grace = Duration::from_millis(p.drain_ms.max(100));
    if skiff_clock::timeout(&SystemClock, grace, child.wait()).await.is_err() {
        log.runner("the program did not stop in time: SIGKILL");
        let _ = child.kill().await;
    }
    stop(member, log).await
}

async fn stop(member: &Member, log: &Log) -> u8 {
    log.runner("stopped");
    let _ = member
        .set(MemberHealth::Stopped, |d| {
            d.phase = "stopped".to_owned();
            d.pid = None;
        })
        .await;
    exit::OK
}
