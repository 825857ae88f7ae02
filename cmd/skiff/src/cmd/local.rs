//! `skiff local up|down|status` (the local provider's supervisor, which outlives the
//! CLI) and `skiff secrets set|list|delete` (the local encrypted secret store).

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use skiff_provider_local::api::Status;
use skiff_provider_local::{LocalDir, LocalProvider, SupervisorConfig};
use skiff_sdk::{Code, Envelope, Safety};
use skiff_secrets::{LocalSecrets, SecretError};

use crate::cli::{LocalAction, SecretsAction};
use crate::{Ctx, Outcome};

/// How long `up` waits for a new supervisor to answer, and `down` for it to exit.
const START_TIMEOUT: Duration = Duration::from_secs(15);

pub(crate) fn run(ctx: &Ctx, action: LocalAction) -> Outcome {
    let dir = match local_dir(ctx) {
        Ok(d) => d,
        Err(o) => return *o,
    };
    match action {
        LocalAction::Up => up(ctx, &dir),
        LocalAction::Down { stop_instances } => down(ctx, &dir, stop_instances),
        LocalAction::Status => status(ctx, &dir),
        LocalAction::Serve { port } => serve(ctx, dir, port),
    }
}

/// The local directory beside the resolved `file://` bucket (absolute).
pub(crate) fn local_dir(ctx: &Ctx) -> Result<LocalDir, Box<Outcome>> {
    let (_, resolved) = ctx.resolve()?;
    let state = &resolved.state.value;
    let absolute = match state.strip_prefix("file://") {
        Some(p) if !Path::new(p).is_absolute() => format!("file://{}", ctx.cwd.join(p).display()),
        _ => state.clone(),
    };
    Ok(LocalDir::for_state(&absolute, &ctx.cwd))
}

/// A provider over the resolved bucket and local directory.
pub(crate) fn provider(ctx: &Ctx) -> Result<LocalProvider, Box<Outcome>> {
    let dir = local_dir(ctx)?;
    let (_, ledger) = ctx.ledger()?;
    Ok(LocalProvider::new(dir, ledger))
}

/// The runner to launch instances with: `$SKIFF_RUNNER_BIN`, else `skiff-runner`
/// beside this executable, else on `PATH`, else this `skiff` itself (`skiff __runner`).
fn runner_command(ctx: &Ctx) -> Result<(PathBuf, Vec<String>), Box<Outcome>> {
    if let Some(p) = (ctx.env)("SKIFF_RUNNER_BIN").filter(|p| !p.is_empty()) {
        return Ok((ctx.cwd.join(p), Vec::new()));
    }
    let exe = skiff_exe(ctx).map_err(|e| {
        Box::new(Outcome::from(Envelope::failure(Code::IoError, "cannot find the skiff executable").fact(e)))
    })?;
    let sibling = exe.parent().map(|d| d.join("skiff-runner"));
    if let Some(s) = sibling.filter(|s| s.is_file()) {
        return Ok((s, Vec::new()));
    }
    let path = (ctx.env)("PATH").unwrap_or_default();
    if let Some(found) = std::env::split_paths(&path).map(|d| d.join("skiff-runner")).find(|c| c.is_file()) {
        return Ok((found, Vec::new()));
    }
    Ok((exe, vec![crate::RUNNER_ARG.to_owned()]))
}

/// The `skiff` executable: `$SKIFF_BIN`, else this one when it is `skiff`, else the
/// `skiff` beside it (skiffd and skiff-worker start supervisors and runners with it).
fn skiff_exe(ctx: &Ctx) -> Result<PathBuf, String> {
    if let Some(p) = (ctx.env)("SKIFF_BIN").filter(|p| !p.is_empty()) {
        return Ok(ctx.cwd.join(p));
    }
    let exe = std::env::current_exe().map_err(|e| format!("cannot find the skiff executable: {e}"))?;
    let is_skiff = exe.file_stem().is_some_and(|n| n == "skiff");
    match exe.parent().map(|d| d.join("skiff")).filter(|s| !is_skiff && s.is_file()) {
        Some(sibling) => Ok(sibling),
        None => Ok(exe),
    }
}

fn runtime(ctx: &Ctx) -> Result<tokio::runtime::Runtime, Box<Outcome>> {
    ctx.runtime()
}

fn current_status(ctx: &Ctx, dir: &LocalDir) -> Result<Option<Status>, Box<Outcome>> {
    let rt = runtime(ctx)?;
    let ledger = skiff_state::Ledger::open("memory://", &skiff_objstore::OpenOptions::default())
        .map_err(|e| Box::new(super::state_error(&e)))?;
    let provider = LocalProvider::new(dir.clone(), ledger);
    Ok(rt.block_on(provider.status()))
}

/// Whether a supervisor answers for `dir`.
pub(crate) fn running(ctx: &Ctx, dir: &LocalDir) -> Result<bool, Box<Outcome>> {
    current_status(ctx, dir).map(|s| s.is_some())
}

fn up(ctx: &Ctx, dir: &LocalDir) -> Outcome {
    match ensure_up(ctx, dir) {
        Ok((s, true)) => status_envelope(dir, &s, format!("started the local supervisor (pid {})", s.pid)).into(),
        Ok((s, false)) => {
            status_envelope(dir, &s, format!("the local supervisor is already running (pid {})", s.pid)).into()
        }
        Err(o) => *o,
    }
}

/// The running supervisor's status, starting one first if none answers; `true` when
/// this call started it.
pub(crate) fn ensure_up(ctx: &Ctx, dir: &LocalDir) -> Result<(Status, bool), Box<Outcome>> {
    if let Some(s) = current_status(ctx, dir)? {
        return Ok((s, false));
    }
    let mut child = spawn_supervisor(ctx, dir).map_err(|e| {
        Box::new(Outcome::from(Envelope::failure(Code::IoError, "cannot start the local supervisor").fact(e)))
    })?;
    ctx.progress("starting the local supervisor");
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if let Some(s) = current_status(ctx, dir)? {
            return Ok((s, true));
        }
        let exited = child.try_wait().ok().flatten();
        if exited.is_some() || Instant::now() > deadline {
            let log = tail(&dir.supervisor_log(), 8);
            let env = Envelope::failure(Code::ProviderError, "the local supervisor did not start")
                .fact(match exited {
                    Some(code) => format!("it exited with {code}"),
                    None => format!("it did not answer within {}s", START_TIMEOUT.as_secs()),
                })
                .facts(log.into_iter().map(|l| format!("log: {l}")))
                .fact(format!("full log: {}", dir.supervisor_log().display()));
            return Err(Box::new(env.into()));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Starts `skiff local serve` in its own process group, detached from this terminal.
fn spawn_supervisor(ctx: &Ctx, dir: &LocalDir) -> Result<std::process::Child, String> {
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
    let (_, resolved) = ctx.resolve().map_err(|o| o.envelope.summary.clone())?;
    let state = match resolved.state.value.strip_prefix("file://") {
        Some(p) if !Path::new(p).is_absolute() => format!("file://{}", ctx.cwd.join(p).display()),
        _ => resolved.state.value.clone(),
    };
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

fn down(ctx: &Ctx, dir: &LocalDir, stop_instances: bool) -> Outcome {
    if stop_instances
        && let Err(o) = ctx.confirm("stop every local instance and database", "skiff local down --stop-instances")
    {
        return *o;
    }
    let provider = match provider(ctx) {
        Ok(p) => p,
        Err(o) => return *o,
    };
    let rt = match runtime(ctx) {
        Ok(r) => r,
        Err(o) => return *o,
    };
    let running = rt.block_on(provider.status());
    let mut env = match &running {
        Some(s) => {
            if let Err(e) = rt.block_on(provider.shutdown(stop_instances)) {
                return Envelope::failure(Code::ProviderError, "the supervisor did not accept shutdown")
                    .fact(e.to_string())
                    .into();
            }
            let deadline = Instant::now() + START_TIMEOUT;
            while rt.block_on(provider.status()).is_some() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            if rt.block_on(provider.status()).is_some() {
                return Envelope::failure(
                    Code::ProviderError,
                    format!("the supervisor (pid {}) is still running", s.pid),
                )
                .fact(format!("it did not exit within {}s", START_TIMEOUT.as_secs()))
                .fact(format!("its log: {}", dir.supervisor_log().display()))
                .into();
            }
            let _ = std::fs::remove_file(dir.endpoint());
            Envelope::ok(format!("stopped the local supervisor (pid {})", s.pid))
        }
        None => Envelope::ok("the local supervisor is not running"),
    };
    if stop_instances {
        rt.block_on(provider.stop_databases());
        env = env.fact("instances and local databases are stopped; their data is kept");
    } else if running.as_ref().is_some_and(|s| s.groups.iter().any(|g| !g.running().is_empty())) {
        env = env
            .fact("instances keep running and serving without it; load balancers stop with it")
            .action("up", "skiff local up", true, Safety::Reversible, 0.6)
            .action("stop-all", "skiff local down --stop-instances --yes", true, Safety::Reversible, 0.3);
    }
    env.data(serde_json::json!({"was_running": running.is_some(), "stop_instances": stop_instances})).into()
}

fn status(ctx: &Ctx, dir: &LocalDir) -> Outcome {
    match current_status(ctx, dir) {
        Err(o) => *o,
        Ok(Some(s)) => {
            let summary = format!("the local supervisor is running (pid {}, port {})", s.pid, s.port);
            let body = status_body(&s);
            Outcome::from(status_envelope(dir, &s, summary)).body(body)
        }
        Ok(None) => Envelope::failure(Code::NotFound, "the local supervisor is not running")
            .fact(format!("no supervisor answers for {}", dir.endpoint().display()))
            .action("up", "skiff local up", true, Safety::Reversible, 0.9)
            .into(),
    }
}

fn status_envelope(dir: &LocalDir, s: &Status, summary: String) -> Envelope {
    let instances: usize = s.groups.iter().map(|g| g.running().len()).sum();
    Envelope::ok(summary)
        .fact(format!(
            "{} and {} running in {}",
            super::plural(u64::try_from(s.groups.len()).unwrap_or(u64::MAX), "instance group"),
            super::plural(u64::try_from(instances).unwrap_or(u64::MAX), "instance"),
            dir.root().display()
        ))
        .fact(super::plural(u64::try_from(s.load_balancers.len()).unwrap_or(u64::MAX), "load balancer").to_string())
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

fn serve(ctx: &Ctx, dir: LocalDir, port: u16) -> Outcome {
    let (runner, runner_args) = match runner_command(ctx) {
        Ok(r) => r,
        Err(o) => return *o,
    };
    let rt = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            return Envelope::failure(Code::Internal, "cannot start the async runtime").fact(e.to_string()).into();
        }
    };
    let config = SupervisorConfig { dir, runner, runner_args, port, instances_exit_with: None };
    match rt.block_on(skiff_provider_local::serve(config)) {
        Ok(()) => Envelope::ok("the local supervisor stopped").into(),
        Err(e) => Envelope::failure(Code::IoError, "the local supervisor failed").fact(e.to_string()).into(),
    }
}

/// Where `skiff secrets` keeps values: the local encrypted store, or Secrets Manager
/// on the AWS provider.
enum Store {
    Local(LocalSecrets),
    Aws(Box<skiff_provider_aws::AwsProvider>, tokio::runtime::Runtime),
}

impl Store {
    fn open(ctx: &Ctx) -> Result<Store, Box<Outcome>> {
        let (_, resolved) = ctx.resolve()?;
        if resolved.provider.value == skiff_sdk::config::ProviderKind::Aws {
            return Ok(Store::Aws(Box::new(super::deploy::aws_provider(ctx)?), ctx.runtime()?));
        }
        Ok(Store::Local(LocalSecrets::new(local_dir(ctx)?.secrets())))
    }

    fn aws<T>(
        rt: &tokio::runtime::Runtime,
        f: impl std::future::Future<Output = skiff_pluginapi::Result<T>>,
    ) -> Result<T, Box<Outcome>> {
        rt.block_on(f).map_err(|e| {
            let code = if e.code == "NOT_FOUND" { Code::NotFound } else { Code::ProviderError };
            Box::new(Outcome::from(Envelope::failure(code, "Secrets Manager refused").fact(e.message)))
        })
    }

    fn exists(&self, reference: &str) -> Result<bool, Box<Outcome>> {
        check_reference(reference)?;
        match self {
            Store::Local(s) => s.exists(reference).map_err(|e| secret_error(&e)),
            Store::Aws(p, rt) => Self::aws(rt, skiff_pluginapi::Secrets::exists(p.as_ref(), reference)),
        }
    }

    fn put(&self, reference: &str, value: &str) -> Result<(), Box<Outcome>> {
        match self {
            Store::Local(s) => s.put(reference, value).map_err(|e| secret_error(&e)),
            Store::Aws(p, rt) => Self::aws(rt, skiff_pluginapi::Secrets::put(p.as_ref(), reference, value)),
        }
    }

    fn list(&self, name: Option<&str>) -> Result<Vec<String>, Box<Outcome>> {
        match (self, name) {
            (Store::Local(s), Some(n)) => s.list(n).map_err(|e| secret_error(&e)),
            (Store::Local(s), None) => s.all().map_err(|e| secret_error(&e)),
            (Store::Aws(p, rt), Some(n)) => Self::aws(rt, skiff_pluginapi::Secrets::list(p.as_ref(), n)),
            (Store::Aws(p, rt), None) => Self::aws(rt, p.all_secret_refs()),
        }
    }

    fn delete(&self, reference: &str) -> Result<(), Box<Outcome>> {
        match self {
            Store::Local(s) => s.delete(reference).map_err(|e| secret_error(&e)),
            Store::Aws(p, rt) => Self::aws(rt, skiff_pluginapi::Secrets::delete(p.as_ref(), reference)),
        }
    }

    fn where_kept(&self) -> String {
        match self {
            Store::Local(s) => format!("encrypted in {}", s.dir().display()),
            Store::Aws(..) => {
                "kept in AWS Secrets Manager (skiff/NAME, encrypted with alias/skiff when it exists)".to_owned()
            }
        }
    }
}

/// The same reference check everywhere, before any store is asked.
fn check_reference(reference: &str) -> Result<(), Box<Outcome>> {
    reference
        .parse::<skiff_spec::values::SecretRef>()
        .map(|_| ())
        .map_err(|_| secret_error(&SecretError::BadReference(reference.to_owned())))
}

pub(crate) fn secrets(ctx: &Ctx, action: SecretsAction) -> Outcome {
    let store = match Store::open(ctx) {
        Ok(s) => s,
        Err(o) => return *o,
    };
    let result = match action {
        SecretsAction::Set { reference } => secret_set(ctx, &store, &reference),
        SecretsAction::List { name } => secret_list(&store, name.as_deref()),
        SecretsAction::Delete { reference } => secret_delete(ctx, &store, &reference),
    };
    result.unwrap_or_else(|o| *o)
}

fn secret_error(e: &SecretError) -> Box<Outcome> {
    let env = match e {
        SecretError::BadReference(_) => Envelope::failure(Code::Usage, e.to_string()),
        SecretError::Missing(_) => Envelope::failure(Code::NotFound, e.to_string()),
        SecretError::Tampered(_) => {
            Envelope::failure(Code::DigestMismatch, e.to_string()).fact("set the value again with `skiff secrets set`")
        }
        _ => Envelope::failure(Code::IoError, e.to_string()),
    };
    Box::new(env.into())
}

fn secret_set(ctx: &Ctx, store: &Store, reference: &str) -> Result<Outcome, Box<Outcome>> {
    let existed = store.exists(reference)?;
    if existed {
        ctx.confirm(
            &format!("replace the value of {reference}"),
            &format!("printf '%s' VALUE | skiff secrets set {reference}"),
        )?;
    }
    let mut value = String::new();
    std::io::stdin().read_to_string(&mut value).map_err(|e| {
        Box::new(Outcome::from(
            Envelope::failure(Code::IoError, "cannot read the value from stdin").fact(e.to_string()),
        ))
    })?;
    let value = value.strip_suffix('\n').unwrap_or(&value);
    if value.is_empty() {
        return Err(Box::new(
            Envelope::failure(Code::Usage, "no value on stdin; nothing was stored")
                .action(
                    "set",
                    format!("printf '%s' \"$VALUE\" | skiff secrets set {reference}"),
                    true,
                    Safety::Reversible,
                    0.8,
                )
                .into(),
        ));
    }
    store.put(reference, value)?;
    Ok(Envelope::ok(format!("{} {reference}", if existed { "replaced" } else { "stored" }))
        .fact(format!("{}; the value is never written to the state bucket", store.where_kept()))
        .data(serde_json::json!({"reference": reference, "replaced": existed}))
        .into())
}

fn secret_list(store: &Store, name: Option<&str>) -> Result<Outcome, Box<Outcome>> {
    let refs = store.list(name)?;
    let summary = match name {
        Some(n) => format!("{} under {n}", super::plural(u64::try_from(refs.len()).unwrap_or(u64::MAX), "reference")),
        None => format!("{} stored", super::plural(u64::try_from(refs.len()).unwrap_or(u64::MAX), "reference")),
    };
    Ok(Outcome::from(Envelope::ok(summary).data(serde_json::json!({ "references": refs }))).body(refs.join("\n")))
}

fn secret_delete(ctx: &Ctx, store: &Store, reference: &str) -> Result<Outcome, Box<Outcome>> {
    let existed = store.exists(reference)?;
    if !existed {
        return Ok(Envelope::ok(format!("{reference} has no value; nothing to delete")).into());
    }
    ctx.confirm(&format!("delete the value of {reference}"), &format!("skiff secrets delete {reference}"))?;
    store.delete(reference)?;
    Ok(Envelope::ok(format!("deleted {reference}"))
        .fact("instances that already resolved it keep their copy until they restart")
        .into())
}
