//! `skiff local up|down|status|serve`: the local provider's supervisor, which outlives
//! the CLI, and how commands find or start it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use skiff_clock::{Clock as _, SystemClock};
use skiff_provider_local::api::Status;
use skiff_provider_local::{LocalDir, LocalProvider, SupervisorConfig};
use skiff_sdk::{Answer, Code, Envelope, Safety};

use crate::context::Context;
use crate::error::{Error, Result, plural};
use crate::request::LocalRequest;

/// The hidden first argument that makes `skiff` act as `skiff-runner`.
pub const RUNNER_ARG: &str = "__runner";

/// How long `up` waits for a new supervisor to answer, and `down` for it to exit.
const START_TIMEOUT: Duration = Duration::from_secs(15);
/// How often those waits look again.
const POLL: Duration = Duration::from_millis(50);

pub(crate) async fn run(ctx: &Context, r: LocalRequest) -> Result<Answer> {
    let dir = crate::factory::local_dir(ctx)?;
    match r {
        LocalRequest::Up => up(ctx, &dir).await,
        LocalRequest::Down { stop_instances } => down(ctx, &dir, stop_instances).await,
        LocalRequest::Status => status(&dir).await,
        LocalRequest::Serve { port } => serve(ctx, dir, port).await,
    }
}

/// The runner to launch instances with: `$SKIFF_RUNNER_BIN`, else `skiff-runner`
/// beside this executable, else on `PATH`, else this `skiff` itself (`skiff __runner`).
fn runner_command(ctx: &Context) -> Result<(PathBuf, Vec<String>)> {
    if let Some(p) = ctx.setting(&skiff_settings::RUNNER_BIN) {
        return Ok((ctx.cwd.join(p), Vec::new()));
    }
    let exe = skiff_exe(ctx)
        .map_err(|e| Error::from(Envelope::failure(Code::IoError, "cannot find the skiff executable").fact(e)))?;
    let sibling = exe.parent().map(|d| d.join("skiff-runner"));
    if let Some(s) = sibling.filter(|s| s.is_file()) {
        return Ok((s, Vec::new()));
    }
    let path = ctx.env.get("PATH").unwrap_or_default();
    if let Some(found) = std::env::split_paths(&path).map(|d| d.join("skiff-runner")).find(|c| c.is_file()) {
        return Ok((found, Vec::new()));
    }
    Ok((exe, vec![RUNNER_ARG.to_owned()]))
}

/// The `skiff` executable: `$SKIFF_BIN`, else this one when it is `skiff`, else the
/// `skiff` beside it (skiffd and skiff-worker start supervisors and runners with it).
fn skiff_exe(ctx: &Context) -> Result<PathBuf, String> {
    if let Some(p) = ctx.setting(&skiff_settings::BIN) {
        return Ok(ctx.cwd.join(p));
    }
    let exe = std::env::current_exe().map_err(|e| format!("cannot find the skiff executable: {e}"))?;
    let is_skiff = exe.file_stem().is_some_and(|n| n == "skiff");
    match exe.parent().map(|d| d.join("skiff")).filter(|s| !is_skiff && s.is_file()) {
        Some(sibling) => Ok(sibling),
        None => Ok(exe),
    }
}

async fn current_status(dir: &LocalDir) -> Result<Option<Status>> {
    let ledger = skiff_state::Ledger::open("memory://", &skiff_objstore::OpenOptions::default())
        .map_err(|e| crate::error::state(&e))?;
    Ok(LocalProvider::new(dir.clone(), ledger).status().await)
}

/// Whether a supervisor answers for `dir`.
pub(crate) async fn running(dir: &LocalDir) -> Result<bool> {
    current_status(dir).await.map(|s| s.is_some())
}

async fn up(ctx: &Context, dir: &LocalDir) -> Result<Answer> {
    let (s, started) = ensure_up(ctx, dir).await?;
    let summary = if started {
        format!("started the local supervisor (pid {})", s.pid)
    } else {
        format!("the local supervisor is already running (pid {})", s.pid)
    };
    Ok(status_envelope(dir, &s, summary).into())
}

/// The running supervisor's status, starting one first if none answers; `true` when
/// this call started it.
pub(crate) async fn ensure_up(ctx: &Context, dir: &LocalDir) -> Result<(Status, bool)> {
    if let Some(s) = current_status(dir).await? {
        return Ok((s, false));
    }
    let mut child = spawn_supervisor(ctx, dir)
        .map_err(|e| Error::from(Envelope::failure(Code::IoError, "cannot start the local supervisor").fact(e)))?;
    ctx.progress("starting the local supervisor");
    let clock = SystemClock;
    let deadline = clock.now_ms() + START_TIMEOUT.as_millis() as u64;
    loop {
        if let Some(s) = current_status(dir).await? {
            return Ok((s, true));
        }
        let exited = child.try_wait().ok().flatten();
        if exited.is_some() || clock.now_ms() > deadline {
            let log = tail(&dir.supervisor_log(), 8);
            let env = Envelope::failure(Code::ProviderError, "the local supervisor did not start")
                .fact(match exited {
                    Some(code) => format!("it exited with {code}"),
                    None => format!("it did not answer within {}s", START_TIMEOUT.as_secs()),
                })
                .facts(log.into_iter().map(|l| format!("log: {l}")))
                .fact(format!("full log: {}", dir.supervisor_log().display()));
            return Err(env.into());
        }
        clock.sleep(POLL).await;
    }
}

/// Starts `skiff local serve` in its own process group, detached from this terminal.
fn spawn_supervisor(ctx: &Context, dir: &LocalDir) -> Result<std::process::Child, String> {
    use std::os::unix::process::CommandExt;
    let log_path = dir.supervisor_log();
    if let Some(parent) = log_path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
    }
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .map_err(|e| format!("{}: {e}", log_path.display()))?;
    let log2 = log.try_clone().map_err(|e| e.to_string())?;
    let exe = skiff_exe(ctx)?;
    let (_, resolved) = ctx.resolve().map_err(|e| e.envelope().summary.clone())?;
    let state = crate::factory::absolute_state(ctx, &resolved.state.value);
    std::process::Command::new(exe)
        .args(["local", "serve", "--bucket", &state])
        .current_dir(&ctx.cwd)
        .stdin(std::process::Stdio::null())
        .stdout(log)
        .stderr(log2)
        .process_group(0)
        .spawn()
        .map_err(|e| format!("cannot run the supervisor: {e}"))
}

fn tail(path: &Path, n: usize) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].iter().map(|l| (*l).to_owned()).collect()
}

async fn down(ctx: &Context, dir: &LocalDir, stop_instances: bool) -> Result<Answer> {
    if stop_instances {
        ctx.confirm("stop every local instance and database", "skiff local down --stop-instances")?;
    }
    let (_, ledger) = ctx.ledger()?;
    let provider = LocalProvider::new(dir.clone(), ledger);
    let running = provider.status().await;
    let mut env = match &running {
        Some(s) => {
            provider.shutdown(stop_instances).await.map_err(|e| {
                Error::from(
                    Envelope::failure(Code::ProviderError, "the supervisor did not accept shutdown")
                        .fact(e.to_string()),
                )
            })?;
            let clock = SystemClock;
            let deadline = clock.now_ms() + START_TIMEOUT.as_millis() as u64;
            while provider.status().await.is_some() && clock.now_ms() < deadline {
                clock.sleep(POLL).await;
            }
            if provider.status().await.is_some() {
                return Err(Envelope::failure(
                    Code::ProviderError,
                    format!("the supervisor (pid {}) is still running", s.pid),
                )
                .fact(format!("it did not exit within {}s", START_TIMEOUT.as_secs()))
                .fact(format!("its log: {}", dir.supervisor_log().display()))
                .into());
            }
            let _ = std::fs::remove_file(dir.endpoint());
            Envelope::ok(format!("stopped the local supervisor (pid {})", s.pid))
        }
        None => Envelope::ok("the local supervisor is not running"),
    };
    if stop_instances {
        provider.stop_databases().await;
        env = env.fact("instances and local databases are stopped; their data is kept");
    } else if running.as_ref().is_some_and(|s| s.groups.iter().any(|g| !g.running().is_empty())) {
        env = env
            .fact("instances keep running and serving without it; load balancers stop with it")
            .action("up", "skiff local up", true, Safety::Reversible, 0.6)
            .action("stop-all", "skiff local down --stop-instances --yes", true, Safety::Reversible, 0.3);
    }
    Ok(env.data(serde_json::json!({"was_running": running.is_some(), "stop_instances": stop_instances})).into())
}

async fn status(dir: &LocalDir) -> Result<Answer> {
    match current_status(dir).await? {
        Some(s) => {
            let summary = format!("the local supervisor is running (pid {}, port {})", s.pid, s.port);
            let body = status_body(&s);
            Ok(Answer::from(status_envelope(dir, &s, summary)).body(body))
        }
        None => Err(Envelope::failure(Code::NotFound, "the local supervisor is not running")
            .fact(format!("no supervisor answers for {}", dir.endpoint().display()))
            .action("up", "skiff local up", true, Safety::Reversible, 0.9)
            .into()),
    }
}

fn status_envelope(dir: &LocalDir, s: &Status, summary: String) -> Envelope {
    let instances: usize = s.groups.iter().map(|g| g.running().len()).sum();
    Envelope::ok(summary)
        .fact(format!(
            "{} and {} running in {}",
            plural(s.groups.len(), "instance group"),
            plural(instances, "instance"),
            dir.root().display()
        ))
        .fact(plural(s.load_balancers.len(), "load balancer"))
        .data(serde_json::json!({
            "dir": dir.root().display().to_string(),
            "supervisor": {"pid": s.pid, "port": s.port, "version": s.version, "runner": s.runner, "started_at_ms": s.started_at_ms},
            "groups": s.groups,
            "load_balancers": s.load_balancers,
            "target_groups": s.target_groups,
        }))
        .action("status", "skiff local status", false, Safety::ReadOnly, 0.5)
}

fn status_body(s: &Status) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    for lb in &s.load_balancers {
        let weights: Vec<String> = lb.weights.iter().map(|w| format!("{} {}%", w.target_group, w.weight)).collect();
        let _ = writeln!(out, "load balancer {} at {}: {}", lb.service, lb.address, weights.join(", "));
    }
    for g in &s.groups {
        let _ = writeln!(out, "group {} (release {}): {}/{} running", g.name, g.release, g.running().len(), g.desired);
        for i in &g.instances {
            let port = i.port.map_or_else(String::new, |p| format!(":{p}"));
            let _ = writeln!(out, "  {} {:?} {}{port}", i.id, i.state, i.address);
        }
    }
    for tg in &s.target_groups {
        let health: Vec<String> = tg.targets.iter().map(|t| format!("{} {:?}", t.id, t.state).to_lowercase()).collect();
        let _ = writeln!(
            out,
            "target group {}: {}",
            tg.name,
            if health.is_empty() { "no targets".to_owned() } else { health.join(", ") }
        );
    }
    out
}

/// Runs the supervisor in this process until it is stopped (the runtime must be
/// multi-threaded: the load balancer and health checks run beside the control API).
async fn serve(ctx: &Context, dir: LocalDir, port: u16) -> Result<Answer> {
    let (runner, runner_args) = runner_command(ctx)?;
    let config = SupervisorConfig { dir, runner, runner_args, port, instances_exit_with: None };
    // Beside the instances: the queue autoscaler of every `scale.queue` service.
    let autoscaler = crate::autoscale::run(ctx, autoscale_log());
    // And the automatic-failover watch of every `database.failover.automatic` service.
    // Boxed: its saga's future is large, and every request's future would carry it.
    let watch = Box::pin(crate::ha::run(ctx, ha_log()));
    let served = tokio::select! {
        served = skiff_provider_local::serve(config) => served,
        () = autoscaler => Ok(()),
        () = watch => Ok(()),
    };
    match served {
        Ok(()) => Ok(Envelope::ok("the local supervisor stopped").into()),
        Err(e) => Err(Envelope::failure(Code::IoError, "the local supervisor failed").fact(e.to_string()).into()),
    }
}

/// Writes what the failover watch did or refused to the supervisor's log (stderr),
/// each refusal or error once.
fn ha_log() -> impl FnMut(&str, &Result<crate::ha::Verdict>) {
    use std::io::Write as _;
    let mut said: std::collections::BTreeMap<String, String> = std::collections::BTreeMap::new();
    move |service, outcome| {
        let line = match outcome {
            Ok(crate::ha::Verdict::FailedOver { op, summary }) => {
                format!("failover {service}: {summary} (op {})", op.as_deref().unwrap_or("-"))
            }
            Ok(crate::ha::Verdict::Refused { reason }) => format!("failover {service}: {reason}"),
            Ok(crate::ha::Verdict::Healthy { .. } | crate::ha::Verdict::Down { .. }) => {
                said.remove(service);
                return;
            }
            Err(e) => format!("failover {service}: {}: {}", e.code(), e.envelope().summary),
        };
        if said.get(service) != Some(&line) {
            let _ = writeln!(std::io::stderr(), "{line}");
            said.insert(service.to_owned(), line);
        }
    }
}

/// Writes the autoscaler's changes and new errors to the supervisor's log (stderr); a
/// steady reading or an error repeated pass after pass is not written again.
fn autoscale_log() -> impl FnMut(&str, &Result<skiff_state::docs::AutoscaleDoc>) {
    use std::io::Write as _;
    let mut last_error: std::collections::BTreeMap<String, String> = std::collections::BTreeMap::new();
    move |service, outcome| match outcome {
        Ok(doc) => {
            last_error.remove(service);
            if doc.last_change.as_ref().is_some_and(|(at, _)| *at == doc.observed_ms) {
                let _ = writeln!(
                    std::io::stderr(),
                    "autoscale {service}: group {} set to {} ({})",
                    doc.group,
                    doc.desired,
                    doc.reason
                );
            }
        }
        Err(e) => {
            let text = format!("{}: {}", e.code(), e.envelope().summary);
            if last_error.get(service) != Some(&text) {
                let _ = writeln!(std::io::stderr(), "autoscale {service}: {text}");
                last_error.insert(service.to_owned(), text);
            }
        }
    }
}
