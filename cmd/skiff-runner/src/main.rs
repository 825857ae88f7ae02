//! `skiff-runner`: flags (or the environment a launch template sets) → the runner
//! library's [`skiff_runner::Config`] → run until stopped.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use skiff_runner::defaults;

/// The runner's settings: flags, or the environment a launch template sets.
#[derive(Debug, Parser)]
#[command(name = "skiff-runner", version, about = "Skiff's instance agent: verify, run, supervise, heartbeat, drain.")]
struct Args {
    /// State bucket URL.
    #[arg(long, env = "SKIFF_STATE")]
    bucket: String,
    /// The service.
    #[arg(long, env = "SKIFF_SERVICE")]
    service: String,
    /// The release to run.
    #[arg(long, env = "SKIFF_RELEASE")]
    release: String,
    /// This instance's id.
    #[arg(long, env = "SKIFF_INSTANCE")]
    instance: String,
    /// Port the program listens on (given to it as PORT and `${PORT}`).
    #[arg(long, env = "PORT", default_value_t = 0)]
    port: u16,
    /// Host the program binds (given to it as HOST).
    #[arg(long, env = "SKIFF_HOST", default_value = defaults::HOST)]
    host: String,
    /// The trusted public key (PEM file).
    #[arg(long, env = "SKIFF_PUBLIC_KEY")]
    public_key: Option<PathBuf>,
    /// The trusted public key itself (PEM text), instead of a file.
    #[arg(long, env = "SKIFF_PUBLIC_KEY_PEM", hide_env_values = true)]
    public_key_pem: Option<String>,
    /// Working directory: the artifact goes here.
    #[arg(long, env = "SKIFF_RUNNER_DIR")]
    dir: PathBuf,
    /// Where logs go (default: DIR/logs).
    #[arg(long, env = "SKIFF_LOG_DIR")]
    log_dir: Option<PathBuf>,
    /// Where secrets resolve from: `local:DIR` (the local provider's store) or `dir:DIR`
    /// (JSON files fetched at boot, as the AWS launch template writes them).
    #[arg(long, env = "SKIFF_SECRETS")]
    secrets: Option<String>,
    /// Resolve some references from others: `secret://A/k=secret://B/k,...`.
    #[arg(long, env = "SKIFF_SECRET_MAP", default_value = "")]
    secret_map: String,
    /// Heartbeat period, milliseconds.
    #[arg(long, env = "SKIFF_HEARTBEAT_MS", default_value_t = defaults::HEARTBEAT_MS)]
    heartbeat_ms: u64,
    /// Restarts within a minute that make a crash loop.
    #[arg(long, env = "SKIFF_CRASH_LOOP_RESTARTS", default_value_t = defaults::CRASH_LOOP_RESTARTS)]
    crash_loop_restarts: usize,
    /// Run a task of the release once instead (`migrate`, `migrate-down`) and exit with its code.
    #[arg(long, env = "SKIFF_TASK")]
    task: Option<skiff_runner::Task>,
}

use std::io::Write as _;

fn main() -> ExitCode {
    let a = Args::parse();
    let telemetry = skiff_observability::init(&skiff_runner::telemetry());
    let code = run(a);
    telemetry.shutdown();
    code
}

fn run(a: Args) -> ExitCode {
    let secret_map = match skiff_runner::secret_map(&a.secret_map) {
        Ok(m) => m,
        Err(why) => {
            let _ = writeln!(std::io::stderr(), "skiff-runner: {why}");
            return ExitCode::from(skiff_runner::exit::SETUP);
        }
    };
    let config = skiff_runner::Config {
        bucket: a.bucket,
        service: a.service,
        release: a.release,
        instance: a.instance,
        port: a.port,
        host: a.host,
        public_key: a.public_key,
        public_key_pem: a.public_key_pem,
        dir: a.dir,
        log_dir: a.log_dir,
        secrets: a.secrets,
        secret_map,
        heartbeat_ms: a.heartbeat_ms,
        crash_loop_restarts: a.crash_loop_restarts,
        task: a.task,
    };
    ExitCode::from(skiff_runner::run_blocking(config))
}
