//! `skiff --server URL …`: the commands about a bucket's services and operations go
//! to skiffd over gRPC (pkg/sdk's client); the server runs them and workers run the
//! operations. Commands about this machine (init, validate, schema, config, keys,
//! local) stay here; the rest answer USAGE rather than silently using a local bucket.

use std::path::Path;

use skiff_sdk::grpc::{Client, TOKEN_VAR, proto};
use skiff_sdk::{Code, Envelope, Safety};

use crate::cli::{Command, PolicyAction, SagaAction};
use crate::{Ctx, Outcome};

/// Whether `command` is one skiffd serves (the rest run locally as ever).
pub(crate) fn served(command: &Command) -> bool {
    !matches!(
        command,
        Command::Init { .. }
            | Command::Validate { .. }
            | Command::Schema
            | Command::Version
            | Command::Config { .. }
            | Command::Keys { .. }
            | Command::Local { .. }
    )
}

/// The command line without the program name and global flags (the server has its own
/// bucket, provider and output): what `Run` sends.
pub(crate) fn command_args(argv: &[std::ffi::OsString]) -> Vec<String> {
    const VALUED: &[&str] = &["--format", "--bucket", "--provider", "--context", "--region", "--server"];
    const SWITCHES: &[&str] = &["--yes", "-y", "--quiet", "-q"];
    let mut out = Vec::new();
    let mut it = argv.iter().skip(1).map(|a| a.to_string_lossy().into_owned());
    while let Some(a) = it.next() {
        if VALUED.contains(&a.as_str()) {
            it.next();
        } else if !SWITCHES.contains(&a.as_str()) && !VALUED.iter().any(|v| a.starts_with(&format!("{v}="))) {
            out.push(a);
        }
    }
    out
}

pub(crate) fn run(ctx: &Ctx, server: &str, command: Command, args: Vec<String>) -> Outcome {
    let token = (ctx.env)(TOKEN_VAR);
    let runtime = match ctx.runtime() {
        Ok(r) => r,
        Err(o) => return *o,
    };
    runtime.block_on(async {
        // The channel spawns its connection task: make it inside the runtime.
        let tls = match tls_files(ctx, server) {
            Ok(t) => t,
            Err(env) => return (*env).into(),
        };
        match Client::with_tls(server, token.as_deref(), tls.as_ref()) {
            Ok(client) => dispatch(ctx, &client, command, args).await,
            Err(env) => (*env).into(),
        }
    })
}

/// For `https://` servers: `$SKIFF_TLS_CA`, and for mutual TLS `$SKIFF_TLS_CERT` and
/// `$SKIFF_TLS_KEY` (PEM files).
fn tls_files(ctx: &Ctx, server: &str) -> Result<Option<skiff_sdk::grpc::ClientTls>, Box<Envelope>> {
    if !server.starts_with("https://") {
        return Ok(None);
    }
    let read = |var: &str| -> Result<Option<Vec<u8>>, Box<Envelope>> {
        match (ctx.env)(var).filter(|p| !p.is_empty()) {
            Some(p) => std::fs::read(ctx.cwd.join(&p)).map(Some).map_err(|e| {
                Box::new(Envelope::failure(Code::IoError, format!("cannot read ${var} ({p})")).fact(e.to_string()))
            }),
            None => Ok(None),
        }
    };
    let identity = match (read("SKIFF_TLS_CERT")?, read("SKIFF_TLS_KEY")?) {
        (Some(c), Some(k)) => Some((c, k)),
        (None, None) => None,
        _ => {
            return Err(Box::new(
                Envelope::failure(Code::Usage, "mutual TLS needs both $SKIFF_TLS_CERT and $SKIFF_TLS_KEY")
                    .fact("set both to PEM files, or neither"),
            ));
        }
    };
    Ok(Some(skiff_sdk::grpc::ClientTls { ca_pem: read("SKIFF_TLS_CA")?, identity_pem: identity }))
}

fn spec_file(ctx: &Ctx, file: &Path) -> Result<(proto::SpecFile, skiff_spec::Spec), Box<Outcome>> {
    let (shown, spec) = crate::cmd::load_spec(ctx, file)?;
    let yaml = std::fs::read_to_string(ctx.cwd.join(file)).map_err(|e| {
        Box::new(Outcome::from(Envelope::failure(Code::IoError, format!("cannot read {shown}")).fact(e.to_string())))
    })?;
    Ok((proto::SpecFile { name: shown, yaml }, spec))
}

async fn dispatch(ctx: &Ctx, c: &Client, command: Command, args: Vec<String>) -> Outcome {
    let env = match command {
        Command::Plan { file } => match spec_file(ctx, &file) {
            Ok((spec, _)) => c.plan(proto::PlanRequest { spec: Some(spec) }).await,
            Err(o) => return *o,
        },
        Command::Policy { action: PolicyAction::Check { file } } => match spec_file(ctx, &file) {
            Ok((spec, _)) => c.policy_check(proto::PolicyCheckRequest { spec: Some(spec) }).await,
            Err(o) => return *o,
        },
        Command::Deploy { file, no_build, detach, watch: false } => match deploy_request(ctx, &file, !no_build) {
            Ok(req) => follow_unless(ctx, c, c.deploy(req).await, detach).await,
            Err(o) => return *o,
        },
        Command::Rollback { service, to } => {
            let submitted = c.rollback(proto::RollbackRequest { service, to }).await;
            follow_unless(ctx, c, submitted, false).await
        }
        Command::Status { service } => c.status(proto::ServiceRequest { service }).await,
        Command::Reconcile { service, repair } => {
            let answered = c.reconcile(proto::ReconcileRequest { service, repair }).await;
            follow_unless(ctx, c, answered, !repair).await
        }
        Command::Doctor { service } => c.doctor(proto::ServiceRequest { service }).await,
        Command::Audit { since } => c.audit(proto::AuditRequest { since }).await,
        Command::Events { op, follow, after } => return events(ctx, c, &op, follow, after).await,
        Command::Saga { action } => match action {
            SagaAction::List { service, status } => c.list_sagas(proto::SagaListRequest { service, status }).await,
            SagaAction::Show { op } => c.get_operation(proto::OperationRequest { op_id: op }).await,
            SagaAction::Approve { op, step } => c.approve(proto::SagaDecisionRequest { op_id: op, detail: step }).await,
            SagaAction::Reject { op, reason } => {
                c.reject(proto::SagaDecisionRequest { op_id: op, detail: Some(reason) }).await
            }
            SagaAction::Pause { op } => c.pause(proto::OperationRequest { op_id: op }).await,
            SagaAction::Resume { op } => c.resume(proto::OperationRequest { op_id: op }).await,
            SagaAction::Cancel { op } => c.cancel(proto::OperationRequest { op_id: op }).await,
            SagaAction::Events { op, follow } => return events(ctx, c, &op, follow, 0).await,
            _ => follow_unless(ctx, c, c.run(proto::CommandRequest { args }).await, false).await,
        },
        Command::Deploy { file, watch: true, .. } => return watch(ctx, c, &file).await,
        Command::Logs { follow: true, .. } => return follow_logs(ctx, c, args).await,
        _ => c.run(proto::CommandRequest { args }).await,
    };
    env.into()
}

/// `deploy --watch`: the service's running operation, followed to its end.
async fn watch(ctx: &Ctx, c: &Client, file: &Path) -> Outcome {
    let service = match crate::cmd::load_spec(ctx, file) {
        Ok((_, spec)) => spec.service.to_string(),
        Err(o) => return *o,
    };
    let status = c.status(proto::ServiceRequest { service: Some(service.clone()) }).await;
    if !status.ok {
        return status.into();
    }
    let data = &status.data;
    let op = [&data["active_operation"]["op_id"], &data["services"][0]["active_operation"]["op_id"]]
        .into_iter()
        .find_map(|v| v.as_str().map(str::to_owned));
    match op {
        Some(op) => {
            let running = Envelope::ok(format!("following {op}")).operation(op);
            follow_unless(ctx, c, running, false).await.into()
        }
        None => Envelope::failure(Code::NotFound, format!("no operation is running for {service}"))
            .action("status", format!("skiff status {service}"), false, Safety::ReadOnly, 0.5)
            .into(),
    }
}

/// `logs --follow`: asks for the lines since the last one seen, every second, until
/// interrupted (the server answers whole requests; this is the follow).
async fn follow_logs(ctx: &Ctx, c: &Client, args: Vec<String>) -> Outcome {
    let mut base: Vec<String> = Vec::new();
    let mut it = args.into_iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--follow" => {}
            "--since" => {
                it.next();
            }
            s if s.starts_with("--since=") => {}
            _ => base.push(a),
        }
    }
    let mut since: Option<u64> = None;
    let mut seen_at_last: std::collections::BTreeSet<String> = Default::default();
    loop {
        let mut req = base.clone();
        if let Some(ms) = since {
            req.extend(["--since".to_owned(), skiff_clock::Utc::from_ms(ms).rfc3339()]);
        }
        let env = c.run(proto::CommandRequest { args: req }).await;
        if !env.ok {
            return env.into();
        }
        for l in env.data["lines"].as_array().into_iter().flatten() {
            let at = l["at_ms"].as_u64().unwrap_or(0);
            let key = l.to_string();
            if since.is_some_and(|s| at < s) || (since == Some(at) && seen_at_last.contains(&key)) {
                continue;
            }
            if since != Some(at) {
                seen_at_last.clear();
                since = Some(at);
            }
            seen_at_last.insert(key);
            let human = format!("{} {}", l["instance"].as_str().unwrap_or("?"), l["line"].as_str().unwrap_or(""));
            ctx.emit(l, &human);
        }
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    }
}

/// Builds the artifact here (unless told not to) and sends it with the spec: the
/// server releases and signs it, and a worker rolls it out.
fn deploy_request(ctx: &Ctx, file: &Path, build: bool) -> Result<proto::DeployRequest, Box<Outcome>> {
    let (spec, parsed) = spec_file(ctx, file)?;
    let ir = skiff_ir::compile(&parsed);
    ctx.confirm(&format!("deploy {} through the server", ir.service), &format!("skiff deploy -f {}", spec.name))?;
    let dir = ctx.cwd.join(file).parent().map(Path::to_path_buf).unwrap_or_else(|| ctx.cwd.clone());
    if let (true, Some(cmd)) = (build, ir.artifact.build.as_deref()) {
        ctx.progress(&format!("building: {cmd}"));
        let status = std::process::Command::new("sh").arg("-c").arg(cmd).current_dir(&dir).status();
        if !status.is_ok_and(|s| s.success()) {
            return Err(Box::new(
                Envelope::failure(Code::IoError, format!("the build failed: `{cmd}`"))
                    .fact(format!("ran in {}", dir.display()))
                    .into(),
            ));
        }
    }
    let artifact = match ir.artifact.path.as_deref() {
        Some(p) => {
            let content = std::fs::read(dir.join(p)).map_err(|e| {
                Box::new(Outcome::from(
                    Envelope::failure(Code::IoError, format!("cannot read the artifact {p}"))
                        .fact(e.to_string())
                        .fact("build it first (drop --no-build) or fix `artifact.path`"),
                ))
            })?;
            ctx.progress(&format!("sending {} ({} bytes) to the server", p, content.len()));
            Some(proto::Artifact { path: p.to_owned(), content })
        }
        None => None,
    };
    Ok(proto::DeployRequest { spec: Some(spec), artifact })
}

/// Follows a submitted operation to its end (printing progress), then answers with
/// its outcome; `detach` (or no operation) answers at once.
async fn follow_unless(ctx: &Ctx, c: &Client, submitted: Envelope, detach: bool) -> Envelope {
    let Some(op) = submitted.operation_id.clone().filter(|_| submitted.ok && !detach) else { return submitted };
    ctx.progress(&format!("operation {op} submitted; following it (Ctrl-C stops following, not the operation)"));
    match c.events(proto::EventsRequest { op_id: op.clone(), after: 0, follow: true }).await {
        Ok(mut stream) => {
            let (mut started, mut hinted) = (false, false);
            loop {
                let next = tokio::time::timeout(std::time::Duration::from_secs(10), stream.message()).await;
                let e = match next {
                    Ok(Ok(Some(e))) => e,
                    Ok(_) => break,
                    Err(_) => {
                        if !started && !hinted {
                            ctx.progress(
                                "  no worker has claimed it yet: is skiff-worker running against this bucket?",
                            );
                            hinted = true;
                        }
                        continue;
                    }
                };
                started |= matches!(e.event_type.as_str(), "operation_started" | "operation_resumed");
                ctx.progress(&format!("  {:>4}  {}", e.seq, e.event_type));
                if matches!(e.event_type.as_str(), "approval_requested" | "paused") {
                    break;
                }
            }
        }
        Err(env) => return *env,
    }
    let mut shown = c.get_operation(proto::OperationRequest { op_id: op }).await;
    // `saga show` answers OK whatever the status; the operation's own code is the answer here.
    if let Some(code) =
        shown.facts.first().and_then(|f| f.strip_prefix("operation status code: ")).and_then(|c| c.parse().ok())
    {
        shown.code = code;
        shown.ok = code == Code::Ok;
        shown.facts.remove(0);
    }
    shown
}

async fn events(ctx: &Ctx, c: &Client, op: &str, follow: bool, after: u64) -> Outcome {
    let mut stream = match c.events(proto::EventsRequest { op_id: op.to_owned(), after, follow }).await {
        Ok(s) => s,
        Err(env) => return (*env).into(),
    };
    let mut n = 0u64;
    let mut all = Vec::new();
    loop {
        match stream.message().await {
            Ok(Some(e)) => {
                n += 1;
                let json: serde_json::Value = serde_json::from_str(&e.json).unwrap_or_default();
                if follow {
                    ctx.emit(&json, &format!("{:>4}  {}", e.seq, e.event_type));
                } else {
                    all.push(json);
                }
            }
            Ok(None) => break,
            Err(s) => return skiff_sdk::grpc::status_envelope(c.server(), &s).into(),
        }
    }
    let mut env =
        Envelope::ok(format!("{} of operation {op}", crate::cmd::plural(n, "event"))).operation(op.to_owned());
    if !follow {
        env = env.data(serde_json::json!({"events": all}));
    }
    env.into()
}
