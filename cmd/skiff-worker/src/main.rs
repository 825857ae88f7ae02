//! skiff-worker: claims pending operations through their leases and runs them, and
//! reconciles every service on an interval, repairing drift through the `repair`
//! saga when policy allows (otherwise the drift stays a finding for `skiff doctor`).
//! Run as many as you like beside skiffd: leases make each operation run once.

use std::io::Write as _;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::Parser;
use skiff_cli::api::Invocation;
use skiff_cli::cli::Command;
use skiff_sdk::Code;

#[derive(Debug, Parser)]
#[command(
    name = "skiff-worker",
    version,
    about = "Runs the operations skiffd records, and keeps services in sync.",
    after_help = "\
Examples:
  skiff-worker --bucket file:///var/lib/skiff/state --keys /etc/skiff/keys
  skiff-worker --bucket s3://acme-skiff/prod --provider aws --reconcile-ms 60000
  skiff-worker --bucket file://.skiff/state --once          one pass, then exit

Each line on stdout is one JSON record: an operation run, a reconcile verdict, a repair."
)]
struct Args {
    /// State bucket URL (the same as skiffd's).
    #[arg(long, env = "SKIFF_STATE")]
    bucket: String,
    /// Provider operations run on.
    #[arg(long, env = "SKIFF_PROVIDER", default_value = "local")]
    provider: String,
    /// The signing key pair's directory (the public key checks releases).
    #[arg(long, env = "SKIFFD_KEYS")]
    keys: Option<PathBuf>,
    /// Policies repairs are checked against.
    #[arg(long, env = "SKIFFD_POLICIES")]
    policies: Option<PathBuf>,
    /// Roles the worker acts with in policy checks; without `approver`, production
    /// repairs stay findings for a person.
    #[arg(long, default_value = "viewer,operator,approver")]
    roles: String,
    /// Name in leases, events and the audit log.
    #[arg(long, default_value = "skiff-worker")]
    name: String,
    /// How often to look for operations to run, in milliseconds.
    #[arg(long, default_value_t = 500)]
    poll_ms: u64,
    /// How often to reconcile every service, in milliseconds (0: never).
    #[arg(long, default_value_t = 10_000)]
    reconcile_ms: u64,
    /// One pass (operations, then a reconcile), then exit.
    #[arg(long)]
    once: bool,
}

fn record(value: serde_json::Value) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{value}");
    let _ = out.flush();
}

fn invocation(args: &Args, dir: &std::path::Path) -> std::io::Result<Invocation> {
    let mut env = skiff_cli::api::inherited_env();
    let bucket = match args.bucket.strip_prefix("file://") {
        Some(p) if !std::path::Path::new(p).is_absolute() => {
            format!("file://{}", std::env::current_dir()?.join(p).display())
        }
        _ => args.bucket.clone(),
    };
    env.insert("SKIFF_STATE".into(), bucket);
    env.insert("SKIFF_PROVIDER".into(), args.provider.clone());
    env.insert("SKIFF_ACTOR".into(), args.name.clone());
    env.insert("SKIFF_ROLES".into(), args.roles.clone());
    env.insert("SKIFF_CONFIG".into(), dir.join("no-client-contexts.yaml").display().to_string());
    if let Some(k) = &args.keys {
        let k = std::path::absolute(k)?;
        env.insert("SKIFF_KEY".into(), k.join("cosign.key").display().to_string());
        env.insert("SKIFF_PUBLIC_KEY".into(), k.join("cosign.pub").display().to_string());
    }
    if let Some(p) = &args.policies {
        std::os::unix::fs::symlink(std::path::absolute(p)?, dir.join("policies"))?;
    }
    Ok(Invocation { cwd: dir.to_path_buf(), env, detach: false })
}

/// Runs every operation waiting for a worker; leases keep two workers off one.
fn run_operations(inv: &Invocation) {
    let ops = match inv.runnable_operations() {
        Ok(ops) => ops,
        Err(o) => {
            record(serde_json::json!({"event": "error", "code": o.envelope.code, "summary": o.envelope.summary}));
            return;
        }
    };
    for op in ops {
        let Some(out) = inv.run_operation(&op).map(|o| o.envelope) else { continue };
        record(serde_json::json!({"event": "ran", "op": op, "code": out.code, "summary": out.summary}));
    }
}

/// Reconciles each service and repairs what policy allows.
fn reconcile(inv: &Invocation) {
    let services = match inv.services() {
        Ok(s) => s,
        Err(o) => {
            record(serde_json::json!({"event": "error", "code": o.envelope.code, "summary": o.envelope.summary}));
            return;
        }
    };
    for service in services {
        let out = inv.execute(Command::Reconcile { service: Some(service.clone()), repair: true }).envelope;
        let event = match out.code {
            Code::Ok if out.operation_id.is_some() => "repaired",
            Code::Ok => "in_sync",
            Code::PolicyDenied => "repair_denied",
            Code::LeaseHeld => "busy",
            Code::Drifted => "drifted",
            _ => "error",
        };
        record(serde_json::json!({
            "event": event, "service": service, "code": out.code, "summary": out.summary,
            "op": out.operation_id, "facts": out.facts,
        }));
    }
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let dir = match tempfile::Builder::new().prefix("skiff-worker-").tempdir() {
        Ok(d) => d,
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "skiff-worker: cannot make a working directory: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let inv = match invocation(&args, dir.path()) {
        Ok(i) => i,
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "skiff-worker: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    for sig in [15, 2] {
        let _ = signal_hook_flag(sig, stop.clone());
    }
    record(serde_json::json!({"event": "started", "name": args.name, "bucket": inv.env["SKIFF_STATE"]}));
    let mut last_reconcile: Option<Instant> = None;
    while !stop.load(std::sync::atomic::Ordering::SeqCst) {
        run_operations(&inv);
        let due = args.reconcile_ms > 0
            && last_reconcile.is_none_or(|t| t.elapsed() >= Duration::from_millis(args.reconcile_ms));
        if due || args.once {
            reconcile(&inv);
            last_reconcile = Some(Instant::now());
        }
        if args.once {
            break;
        }
        std::thread::sleep(Duration::from_millis(args.poll_ms));
    }
    std::process::ExitCode::SUCCESS
}

/// Sets `flag` when signal `sig` arrives, so the loop ends between operations.
fn signal_hook_flag(sig: i32, flag: std::sync::Arc<std::sync::atomic::AtomicBool>) -> std::io::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    std::thread::spawn(move || {
        rt.block_on(async move {
            let kind = tokio::signal::unix::SignalKind::from_raw(sig);
            if let Ok(mut s) = tokio::signal::unix::signal(kind) {
                s.recv().await;
                flag.store(true, std::sync::atomic::Ordering::SeqCst);
            }
        });
    });
    Ok(())
}
