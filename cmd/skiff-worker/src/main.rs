//! skiff-worker: claims pending operations through their leases and runs them, and
//! reconciles every service on an interval, repairing drift through the `repair`
//! saga when policy allows (otherwise the drift stays a finding for `skiff doctor`).
//! Run as many as you like beside skiffd: leases make each operation run once.

use std::io::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use skiff_clock::{Clock as _, SystemClock};
use skiff_ops::{Context, Request};
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

Each line on stdout is one JSON record: an operation run, a reconcile verdict, a repair,
a queue-scaled group resized (`autoscaled`), a database failed over automatically
(`failed_over`) or not (`failover_refused`)."
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
    /// How often to read the backlog of every `scale.queue` service and resize its
    /// group, in milliseconds (0: never).
    #[arg(long, env = "SKIFF_AUTOSCALE_POLL_MS", default_value_t = 5_000)]
    autoscale_ms: u64,
    /// One pass (operations, then a reconcile), then exit.
    #[arg(long)]
    once: bool,
    /// Serve Prometheus metrics of what this worker runs (step durations by kind and
    /// outcome, CAS conflicts, store retries, lease takeovers, canary and reconcile
    /// verdicts) at http://ADDR/metrics, e.g. 127.0.0.1:9464 (port 0 picks one; the
    /// address is recorded on stdout).
    #[arg(long, value_name = "ADDR")]
    metrics_listen: Option<String>,
    /// Log lines on stderr: `text` or `json`. SKIFF_LOG filters them (`info`,
    /// `warn,skiff_saga=debug`); OTEL_EXPORTER_OTLP_ENDPOINT exports traces over OTLP/HTTP.
    #[arg(long, env = "SKIFF_LOG_FORMAT", default_value = "text")]
    log_format: skiff_observability::LogFormat,
}

fn record(value: serde_json::Value) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{value}");
    let _ = out.flush();
}

fn context(args: &Args, dir: &std::path::Path) -> std::io::Result<Context> {
    use skiff_settings as s;
    let mut env = skiff_ops::worker::inherited_env();
    let bucket = match args.bucket.strip_prefix("file://") {
        Some(p) if !std::path::Path::new(p).is_absolute() => {
            format!("file://{}", std::env::current_dir()?.join(p).display())
        }
        _ => args.bucket.clone(),
    };
    env.insert(s::STATE.name.into(), bucket);
    env.insert(s::PROVIDER.name.into(), args.provider.clone());
    env.insert(s::ACTOR.name.into(), args.name.clone());
    env.insert(s::ROLES.name.into(), args.roles.clone());
    env.insert(s::CONFIG.name.into(), dir.join("no-client-contexts.yaml").display().to_string());
    if let Some(k) = &args.keys {
        let k = std::path::absolute(k)?;
        env.insert(s::KEY.name.into(), k.join("cosign.key").display().to_string());
        env.insert(s::PUBLIC_KEY.name.into(), k.join("cosign.pub").display().to_string());
    }
    if let Some(p) = &args.policies {
        std::os::unix::fs::symlink(std::path::absolute(p)?, dir.join("policies"))?;
    }
    Ok(Context::service(dir.to_path_buf(), env, false))
}

/// Runs every operation waiting for a worker; leases keep two workers off one.
async fn run_operations(ctx: &Context) {
    let ops = match skiff_ops::worker::runnable_operations(ctx).await {
        Ok(ops) => ops,
        Err(e) => {
            record(serde_json::json!({"event": "error", "code": e.code(), "summary": e.envelope().summary}));
            return;
        }
    };
    for op in ops {
        let Some(out) = skiff_ops::worker::run_operation(ctx, &op).await.map(|a| a.envelope) else { continue };
        record(serde_json::json!({"event": "ran", "op": op, "code": out.code, "summary": out.summary}));
    }
}

/// Resizes each queue-scaled service's group from its backlog. Records every change
/// of size, and an error only when it differs from the service's last one (a queue
/// that cannot be read is said once, not every pass).
async fn autoscale(ctx: &Context, errors: &mut std::collections::BTreeMap<String, String>) {
    for (service, outcome) in skiff_ops::autoscale::tick_all(ctx).await {
        match outcome {
            Ok(doc) => {
                errors.remove(&service);
                if doc.last_change.as_ref().is_some_and(|(at, _)| *at == doc.observed_ms) {
                    record(serde_json::json!({
                        "event": "autoscaled", "service": service, "group": doc.group, "desired": doc.desired,
                        "backlog": doc.backlog, "reason": doc.reason,
                    }));
                }
            }
            Err(e) => {
                let summary = e.envelope().summary.clone();
                if errors.get(&service) != Some(&summary) {
                    record(serde_json::json!({
                        "event": "error", "service": service, "code": e.code(), "summary": summary,
                        "facts": e.envelope().facts,
                    }));
                    errors.insert(service, summary);
                }
            }
        }
    }
}

/// The automatic-failover watch: records each promotion, and each refusal once.
async fn failover_watch(
    ctx: &Context,
    watch: &mut skiff_ops::ha::Watch,
    said: &mut std::collections::BTreeMap<String, String>,
) {
    for (service, outcome) in skiff_ops::ha::tick_all(ctx, watch).await {
        match outcome {
            Ok(skiff_ops::ha::Verdict::FailedOver { op, summary }) => {
                said.remove(&service);
                record(serde_json::json!({"event": "failed_over", "service": service, "op": op, "summary": summary}));
            }
            Ok(skiff_ops::ha::Verdict::Refused { reason }) => {
                if said.get(&service) != Some(&reason) {
                    record(serde_json::json!({"event": "failover_refused", "service": service, "summary": reason}));
                    said.insert(service, reason);
                }
            }
            Ok(_) => {
                said.remove(&service);
            }
            Err(e) => record(serde_json::json!({
                "event": "error", "service": service, "code": e.code(), "summary": e.envelope().summary,
            })),
        }
    }
}

/// Reconciles each service and repairs what policy allows.
async fn reconcile(ctx: &Context) {
    let services = match skiff_ops::worker::services(ctx).await {
        Ok(s) => s,
        Err(e) => {
            record(serde_json::json!({"event": "error", "code": e.code(), "summary": e.envelope().summary}));
            return;
        }
    };
    for service in services {
        let out = skiff_ops::run(ctx, Request::Repair { service: service.clone() }).await.envelope;
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
    let telemetry = skiff_observability::init(&skiff_observability::Setup {
        service: "skiff-worker",
        default_filter: "warn,skiff=info",
        format: args.log_format,
    });
    let code = work(&args);
    telemetry.shutdown();
    code
}

fn work(args: &Args) -> std::process::ExitCode {
    let fail = |what: String| {
        let _ = writeln!(std::io::stderr(), "skiff-worker: {what}");
        std::process::ExitCode::FAILURE
    };
    let dir = match tempfile::Builder::new().prefix("skiff-worker-").tempdir() {
        Ok(d) => d,
        Err(e) => return fail(format!("cannot make a working directory: {e}")),
    };
    let ctx = match context(args, dir.path()) {
        Ok(c) => c,
        Err(e) => return fail(e.to_string()),
    };
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => return fail(format!("cannot start the async runtime: {e}")),
    };
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    for sig in [15, 2] {
        let _ = signal_hook_flag(sig, stop.clone());
    }
    let bucket = ctx.setting(&skiff_settings::STATE).unwrap_or_default();
    record(serde_json::json!({"event": "started", "name": args.name, "bucket": bucket}));
    let ok = runtime.block_on(async {
        if let Some(addr) = &args.metrics_listen {
            match tokio::net::TcpListener::bind(addr).await {
                Ok(listener) => {
                    let addr = listener.local_addr().map(|a| a.to_string()).unwrap_or_default();
                    record(serde_json::json!({"event": "metrics", "addr": addr}));
                    let app = axum::Router::new()
                        .route("/metrics", axum::routing::get(|| async { skiff_observability::metrics::prometheus() }));
                    tokio::spawn(async move { axum::serve(listener, app).await });
                }
                Err(e) => {
                    record(serde_json::json!({"event": "error", "summary": format!("--metrics-listen {addr}: {e}")}));
                    return false;
                }
            }
        }
        let clock = SystemClock;
        let mut last_reconcile: Option<u64> = None;
        let mut last_autoscale: Option<u64> = None;
        let mut autoscale_errors = std::collections::BTreeMap::new();
        let mut watch = (skiff_ops::ha::Watch::default(), std::collections::BTreeMap::new());
        while !stop.load(std::sync::atomic::Ordering::SeqCst) {
            run_operations(&ctx).await;
            failover_watch(&ctx, &mut watch.0, &mut watch.1).await;
            let due = args.autoscale_ms > 0
                && last_autoscale.is_none_or(|t| clock.now_ms().saturating_sub(t) >= args.autoscale_ms);
            if due || args.once {
                autoscale(&ctx, &mut autoscale_errors).await;
                last_autoscale = Some(clock.now_ms());
            }
            let due = args.reconcile_ms > 0
                && last_reconcile.is_none_or(|t| clock.now_ms().saturating_sub(t) >= args.reconcile_ms);
            if due || args.once {
                reconcile(&ctx).await;
                last_reconcile = Some(clock.now_ms());
            }
            if args.once {
                break;
            }
            clock.sleep(Duration::from_millis(args.poll_ms)).await;
        }
        true
    });
    if ok { std::process::ExitCode::SUCCESS } else { std::process::ExitCode::FAILURE }
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
