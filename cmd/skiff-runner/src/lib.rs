//! The instance agent. On a VM (from a launch template) or as a local process, it
//! fetches the release manifest and artifact from the bucket, verifies the signature
//! and every digest before starting anything (refusing with SIGNATURE_INVALID or
//! DIGEST_MISMATCH, recorded in its member document), runs the program with its
//! environment and resolved secrets, restarts it with backoff (flagging a crash loop),
//! probes its health, heartbeats its member document, writes its logs to rotating
//! files, and drains on SIGTERM.

mod logs;
mod member;
mod prepare;
mod supervise;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

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

/// The runner's settings: flags, or the environment a launch template sets.
#[derive(Debug, Clone, Parser)]
#[command(name = "skiff-runner", version, about = "Skiff's instance agent: verify, run, supervise, heartbeat, drain.")]
pub struct Config {
    /// State bucket URL.
    #[arg(long, env = "SKIFF_STATE")]
    pub bucket: String,
    /// The service.
    #[arg(long, env = "SKIFF_SERVICE")]
    pub service: String,
    /// The release to run.
    #[arg(long, env = "SKIFF_RELEASE")]
    pub release: String,
    /// This instance's id.
    #[arg(long, env = "SKIFF_INSTANCE")]
    pub instance: String,
    /// Port the program listens on (given to it as PORT and `${PORT}`).
    #[arg(long, env = "PORT", default_value_t = 0)]
    pub port: u16,
    /// Host the program binds (given to it as HOST).
    #[arg(long, env = "SKIFF_HOST", default_value = "127.0.0.1")]
    pub host: String,
    /// The trusted public key (PEM file).
    #[arg(long, env = "SKIFF_PUBLIC_KEY")]
    pub public_key: Option<PathBuf>,
    /// The trusted public key itself (PEM text), instead of a file.
    #[arg(long, env = "SKIFF_PUBLIC_KEY_PEM", hide_env_values = true)]
    pub public_key_pem: Option<String>,
    /// Working directory: the artifact goes here.
    #[arg(long, env = "SKIFF_RUNNER_DIR")]
    pub dir: PathBuf,
    /// Where logs go (default: DIR/logs).
    #[arg(long, env = "SKIFF_LOG_DIR")]
    pub log_dir: Option<PathBuf>,
    /// Where secrets resolve from: `local:DIR` (the local provider's store) or `dir:DIR`
    /// (JSON files fetched at boot, as the AWS launch template writes them).
    #[arg(long, env = "SKIFF_SECRETS")]
    pub secrets: Option<String>,
    /// Heartbeat period, milliseconds.
    #[arg(long, env = "SKIFF_HEARTBEAT_MS", default_value_t = 2_000)]
    pub heartbeat_ms: u64,
    /// Restarts within a minute that make a crash loop.
    #[arg(long, env = "SKIFF_CRASH_LOOP_RESTARTS", default_value_t = 5)]
    pub crash_loop_restarts: usize,
}

/// Parses the configuration and runs until stopped.
pub fn main() -> ExitCode {
    main_from(std::env::args_os())
}

/// [`main`] with explicit arguments (the first is the program name): `skiff __runner`
/// runs the runner from the `skiff` binary when no `skiff-runner` is installed.
pub fn main_from(args: impl IntoIterator<Item = std::ffi::OsString>) -> ExitCode {
    let config = match Config::try_parse_from(args) {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(exit::SETUP);
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            logs::stderr(&format!("cannot start the runtime: {e}"));
            return ExitCode::from(exit::SETUP);
        }
    };
    ExitCode::from(runtime.block_on(run(config)))
}

/// Runs one instance to the end; the process exit code.
pub async fn run(config: Config) -> u8 {
    let log_dir = config.log_dir.clone().unwrap_or_else(|| config.dir.join("logs"));
    let log = match logs::Log::open(&log_dir) {
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
    let prepared = match prepare::prepare(&config, &member, &log).await {
        Ok(p) => p,
        Err(code) => return code,
    };
    supervise::supervise(&config, prepared, &member, &log).await
}
