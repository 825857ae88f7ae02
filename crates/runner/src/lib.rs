//! The instance agent. On a VM (from a launch template) or as a local process, it
//! fetches the release manifest and artifact from the bucket, verifies the signature
//! and every digest before starting anything (refusing with SIGNATURE_INVALID or
//! DIGEST_MISMATCH, recorded in its member document), runs the program with its
//! environment and resolved secrets, restarts it with backoff (flagging a crash loop),
//! probes its health, heartbeats its member document, writes its logs to rotating
//! files, and drains on SIGTERM. With `SKIFF_TASK` it runs one task of the release
//! instead (its schema migration) and exits with the task's code.

mod logs;
mod member;
mod mesh;
mod prepare;
mod supervise;
mod task;

use std::path::PathBuf;

/// Exit codes of the runner itself.
pub mod exit {
    /// Stopped on request.
    pub const OK: u8 = 0;
    /// Bad arguments or an unusable bucket.
    pub const SETUP: u8 = 2;
    /// The release's signature does not verify.
    pub const SIGNATURE_INVALID: u8 = 16;
    /// The artifact (or another blob) does not match its digest.
    pub const DIGEST_MISMATCH: u8 = 17;
    /// A secret the release needs is missing.
    pub const SECRET_MISSING: u8 = 4;
}

/// The runner's settings: what a launch template (or the local supervisor) sets in
/// its environment, or `skiff-runner`'s flags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// State bucket URL.
    pub bucket: String,
    /// The service.
    pub service: String,
    /// The release to run.
    pub release: String,
    /// This instance's id.
    pub instance: String,
    /// Port the program listens on (given to it as PORT and `${PORT}`).
    pub port: u16,
    /// Host the program binds (given to it as HOST).
    pub host: String,
    /// The trusted public key (PEM file).
    pub public_key: Option<PathBuf>,
    /// The trusted public key itself (PEM text), instead of a file.
    pub public_key_pem: Option<String>,
    /// Working directory: the artifact goes here.
    pub dir: PathBuf,
    /// Where logs go (default: DIR/logs).
    pub log_dir: Option<PathBuf>,
    /// Where secrets resolve from: `local:DIR` (the local provider's store) or `dir:DIR`
    /// (JSON files fetched at boot, as the AWS launch template writes them).
    pub secrets: Option<String>,
    /// References resolved from other references (`SKIFF_SECRET_MAP`).
    pub secret_map: Vec<(String, String)>,
    /// Heartbeat period, milliseconds.
    pub heartbeat_ms: u64,
    /// Restarts within a minute that make a crash loop.
    pub crash_loop_restarts: usize,
    /// Run a task of the release once instead of supervising its program.
    pub task: Option<Task>,
}

/// A one-shot task of a release (`SKIFF_TASK`): its migration, or the migration's down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Task {
    /// `database.migrations.command`.
    Migrate,
    /// `database.migrations.down`.
    MigrateDown,
}

impl std::str::FromStr for Task {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "migrate" => Ok(Task::Migrate),
            "migrate-down" => Ok(Task::MigrateDown),
            other => Err(format!("SKIFF_TASK `{other}` is not `migrate` or `migrate-down`")),
        }
    }
}

/// Defaults of the settings that have one.
pub mod defaults {
    /// Host the program binds.
    pub const HOST: &str = "127.0.0.1";
    /// Heartbeat period, ms.
    pub const HEARTBEAT_MS: u64 = 2_000;
    /// Restarts within a minute that make a crash loop.
    pub const CRASH_LOOP_RESTARTS: usize = 5;
}

impl Config {
    /// The settings from environment variables (`SKIFF_STATE`, `SKIFF_SERVICE`, ...,
    /// `PORT`), looked up with `env`; the first required one missing or unparsable is
    /// the error.
    pub fn from_env(env: impl Fn(&str) -> Option<String>) -> Result<Config, String> {
        use skiff_settings as s;
        let env = &env;
        let need = |set: &s::Setting| set.get(env).ok_or_else(|| format!("{} is not set", set.name));
        let number = |name: &str, v: Option<String>| -> Result<Option<u64>, String> {
            v.map(|v| v.trim().parse::<u64>().map_err(|_| format!("{name} `{v}` is not a number"))).transpose()
        };
        let port = number("PORT", env("PORT").filter(|v| !v.is_empty()))?.unwrap_or(0);
        Ok(Config {
            bucket: need(&s::STATE)?,
            service: need(&s::SERVICE)?,
            release: need(&s::RELEASE)?,
            instance: need(&s::INSTANCE)?,
            port: u16::try_from(port).map_err(|_| format!("PORT {port} is not a port"))?,
            host: s::HOST.get(env).unwrap_or_else(|| defaults::HOST.to_owned()),
            public_key: s::PUBLIC_KEY.get(env).map(PathBuf::from),
            public_key_pem: s::PUBLIC_KEY_PEM.get(env),
            dir: PathBuf::from(need(&s::RUNNER_DIR)?),
            log_dir: s::LOG_DIR.get(env).map(PathBuf::from),
            secrets: s::SECRETS.get(env),
            secret_map: secret_map(s::SECRET_MAP.get(env).as_deref().unwrap_or_default())?,
            heartbeat_ms: number(s::HEARTBEAT_MS.name, s::HEARTBEAT_MS.get(env))?.unwrap_or(defaults::HEARTBEAT_MS),
            crash_loop_restarts: number(s::CRASH_LOOP_RESTARTS.name, s::CRASH_LOOP_RESTARTS.get(env))?
                .map_or(defaults::CRASH_LOOP_RESTARTS, |n| usize::try_from(n).unwrap_or(usize::MAX)),
            task: s::TASK.get(env).map(|t| t.parse()).transpose()?,
        })
    }
}

/// `secret://A/k=secret://B/k,...` as pairs (`SKIFF_SECRET_MAP`).
pub fn secret_map(text: &str) -> Result<Vec<(String, String)>, String> {
    text.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| {
            p.split_once('=')
                .filter(|(a, b)| a.starts_with("secret://") && b.starts_with("secret://"))
                .map(|(a, b)| (a.to_owned(), b.to_owned()))
                .ok_or_else(|| format!("SKIFF_SECRET_MAP entry `{p}` is not secret://A/k=secret://B/k"))
        })
        .collect()
}

/// Runs one instance to the end on a fresh runtime; the process exit code.
pub fn run_blocking(config: Config) -> u8 {
    match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime.block_on(run(config)),
        Err(e) => {
            logs::stderr(&format!("cannot start the runtime: {e}"));
            exit::SETUP
        }
    }
}

/// What the runner logs with: its own lines at `info` (SKIFF_LOG), text unless
/// SKIFF_LOG_FORMAT says `json`; its spans continue the `TRACEPARENT` it was started with.
pub fn telemetry() -> skiff_observability::Setup {
    let format = skiff_settings::LOG_FORMAT.from_process().and_then(|v| v.parse().ok()).unwrap_or_default();
    skiff_observability::Setup { service: "skiff-runner", default_filter: "warn,skiff=info", format }
}

/// The runner from this process's environment (`skiff __runner`, started by the
/// local supervisor when no `skiff-runner` binary is installed).
pub fn run_from_env() -> u8 {
    match Config::from_env(|k| std::env::var(k).ok()) {
        Ok(config) => run_blocking(config),
        Err(why) => {
            logs::stderr(&format!("{why}; the runner is configured by its environment (see docs/configuration.md)"));
            exit::SETUP
        }
    }
}

/// A span for one phase of the runner (`verify`, `start`, `health`): a child of the
/// `TRACEPARENT` it was started with (the operation that created its group), so the
/// runner's work shows in that operation's trace.
pub(crate) fn phase(name: &'static str, config: &Config) -> tracing::Span {
    let span = tracing::info_span!(
        "runner",
        otel.name = %format!("runner {name}"),
        phase = name,
        service = %config.service,
        release = %config.release,
        instance = %config.instance,
        outcome = tracing::field::Empty,
    );
    if let Some(carrier) = skiff_observability::Carrier::from_env() {
        skiff_observability::continue_trace(&span, &carrier);
    }
    span
}

/// Runs one instance to the end; the process exit code.
pub async fn run(config: Config) -> u8 {
    use tracing::Instrument as _;
    let log_dir = config.log_dir.clone().unwrap_or_else(|| config.dir.join("logs"));
    let trace = skiff_observability::Carrier::from_env().and_then(|c| c.trace_id().map(str::to_owned));
    let log = match logs::Log::open(&log_dir, trace) {
        Ok(l) => l,
        Err(e) => {
            logs::stderr(&format!("cannot open the log directory {}: {e}", log_dir.display()));
            return exit::SETUP;
        }
    };
    let member = match member::Member::open(&config).await {
        Ok(m) => m,
        Err(e) => {
            log.runner(&format!("cannot use the state bucket {}: {e}", config.bucket));
            return exit::SETUP;
        }
    };
    let verify = phase("verify", &config);
    let prepared = prepare::prepare(&config, &member, &log).instrument(verify.clone()).await;
    verify.record("outcome", if prepared.is_ok() { "verified" } else { "refused" });
    drop(verify);
    let mut prepared = match prepared {
        Ok(p) => p,
        Err(code) => return code,
    };
    if let Some(t) = config.task {
        return task::run(t, prepared, &member, &log).await;
    }
    // Kept for as long as the program is supervised: dropping it closes the mesh.
    let _mesh = match prepared.mesh.take() {
        Some(settings) => match mesh::start(&config, settings, &mut prepared.env, &member, &log).await {
            Ok(running) => Some(running),
            Err(reason) => {
                log.runner(&format!("mesh: cannot start: {reason}"));
                let _ = member
                    .set(skiff_state::docs::MemberHealth::Refused, |d| {
                        d.phase = "refused".to_owned();
                        d.code = Some("CONFIG_INVALID".to_owned());
                        d.reason = Some(format!("the mesh: {reason}"));
                    })
                    .await;
                return exit::SETUP;
            }
        },
        None => None,
    };
    supervise::supervise(&config, prepared, &member, &log).await
}
