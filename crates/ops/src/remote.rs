//! The same requests answered by skiffd (`skiff --server URL`, the TUI): each one goes
//! over gRPC with the SDK client, operations are followed on the events stream with the
//! progress lines direct mode prints, and their answer is the operation's own outcome
//! as the server reads it from the ledger. Requests that need this machine's files or
//! terminal (release create, secrets set/delete, state init) answer USAGE.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use skiff_clock::{Clock as _, SystemClock};
use skiff_sdk::grpc::{Client, ClientTls, proto};
use skiff_sdk::{Answer, Code, Envelope, Safety};

use crate::context::Context;
use crate::error::{Error, Result};
use crate::request::{DatabaseRequest, LogsRequest, ReleaseRequest, Request, SagaRequest, SecretsRequest};

/// How long a follow waits for the first event before hinting that no worker runs.
const CLAIM_HINT_AFTER: Duration = Duration::from_secs(10);

/// Answers `request` through the skiffd at `server` (`$SKIFF_TOKEN` authenticates).
pub async fn run(ctx: &Context, server: &str, request: Request) -> Answer {
    let client = match tls_files(ctx, server).and_then(|tls| {
        Client::with_tls(server, ctx.setting(&skiff_settings::TOKEN).as_deref(), tls.as_ref())
            .map_err(|e| Error::from(*e))
    }) {
        Ok(c) => c,
        Err(e) => return e.into_answer(),
    };
    crate::error::answer(dispatch(ctx, &client, request).await)
}

/// For `https://` servers: `$SKIFF_TLS_CA`, and for mutual TLS `$SKIFF_TLS_CERT` and
/// `$SKIFF_TLS_KEY` (PEM files).
fn tls_files(ctx: &Context, server: &str) -> Result<Option<ClientTls>> {
    if !server.starts_with("https://") {
        return Ok(None);
    }
    let read = |s: &skiff_settings::Setting| -> Result<Option<Vec<u8>>> {
        match ctx.setting(s) {
            Some(p) => std::fs::read(ctx.cwd.join(&p)).map(Some).map_err(|e| {
                Error::from(
                    Envelope::failure(Code::IoError, format!("cannot read ${} ({p})", s.name)).fact(e.to_string()),
                )
            }),
            None => Ok(None),
        }
    };
    let identity = match (read(&skiff_settings::TLS_CERT)?, read(&skiff_settings::TLS_KEY)?) {
        (Some(c), Some(k)) => Some((c, k)),
        (None, None) => None,
        _ => {
            return Err(Envelope::failure(Code::Usage, "mutual TLS needs both $SKIFF_TLS_CERT and $SKIFF_TLS_KEY")
                .fact("set both to PEM files, or neither")
                .into());
        }
    };
    Ok(Some(ClientTls { ca_pem: read(&skiff_settings::TLS_CA)?, identity_pem: identity }))
}

fn spec_file(ctx: &Context, file: &Path) -> Result<(proto::SpecFile, skiff_spec::Spec)> {
    let (shown, bytes) = crate::spec::read(ctx, file)?;
    let spec = skiff_spec::parse(&shown, &bytes).map_err(|e| crate::error::spec(&shown, &e))?;
    let yaml = String::from_utf8(bytes).map_err(|e| {
        Error::from(Envelope::failure(Code::IoError, format!("cannot read {shown}")).fact(e.to_string()))
    })?;
    Ok((proto::SpecFile { name: shown, yaml }, spec))
}

fn not_served(what: &str) -> Error {
    Envelope::failure(Code::Usage, format!("`skiff {what}` does not run through skiffd"))
        .fact("it reads files or a terminal on this machine, or prepares the bucket itself")
        .action(
            "direct",
            format!("skiff {what} (without --server, with the bucket's credentials)"),
            true,
            Safety::Reversible,
            0.4,
        )
        .into()
}

async fn dispatch(ctx: &Context, c: &Client, request: Request) -> Result<Answer> {
    Ok(match request {
        Request::Plan { file } => c.plan(proto::PlanRequest { spec: Some(spec_file(ctx, &file)?.0) }).await,
        Request::PolicyCheck { file } => {
            c.policy_check(proto::PolicyCheckRequest { spec: Some(spec_file(ctx, &file)?.0) }).await
        }
        // A plan from the spec alone: nothing to ask the server, and nothing changes.
        Request::Deploy(r) if r.dry_run => return crate::deploy::dry_run(ctx, &r.file, false, r.shadow).await,
        Request::Deploy(r) => {
            let mut req = deploy_request(ctx, &r.file, r.build)?;
            if let Some(s) = r.shadow {
                req.shadow = true;
                req.mirror_percent = s.mirror_percent.unwrap_or(0);
            }
            follow(ctx, c, c.deploy(req).await, ctx.detach).await
        }
        Request::Watch { file } => return watch(ctx, c, &file).await,
        Request::Rollback(r) => {
            let confirmed = confirmed(ctx, &format!("roll {} back to {}", r.service, r.to))?;
            let submitted = c.rollback(proto::RollbackRequest { service: r.service, to: r.to, confirmed }).await;
            follow(ctx, c, submitted, false).await
        }
        Request::Status { service } => c.status(proto::ServiceRequest { service }).await,
        Request::Reconcile { service } => {
            c.reconcile(proto::ReconcileRequest { service, repair: false, confirmed: true }).await
        }
        Request::Repair { service } => {
            let confirmed = confirmed(ctx, &format!("repair drift of {service}"))?;
            let answered =
                c.reconcile(proto::ReconcileRequest { service: Some(service), repair: true, confirmed }).await;
            follow(ctx, c, answered, false).await
        }
        Request::Logs(r) if r.follow => return follow_logs(ctx, c, r).await,
        Request::Logs(r) => {
            let json = r.json;
            let answer = c
                .logs(proto::LogsRequest {
                    service: r.service,
                    instance: r.instance,
                    since: r.since,
                    grep: r.grep,
                    trace: r.trace,
                })
                .await;
            if json && answer.envelope.ok {
                let lines = answer.envelope.data["lines"].as_array().cloned().unwrap_or_default();
                return Ok(crate::observe::json_lines(answer, &lines));
            }
            answer
        }
        Request::Metrics { queue_lag: true, .. } => return Err(not_served("metrics SERVICE queue-lag")),
        Request::Metrics { service, .. } => c.metrics(proto::ServiceRequest { service: Some(service) }).await,
        Request::DebugCollect { service, out } => return debug_collect(ctx, c, service, out).await,
        Request::Incident { service, dry_run } => {
            return start_saga(ctx, c, "incident-repair", &service, &[("service", service.clone())], dry_run).await;
        }
        Request::Doctor { service } => c.doctor(proto::ServiceRequest { service }).await,
        Request::Audit { since } => c.audit(proto::AuditRequest { since }).await,
        Request::Events { op, follow, after } => return events(ctx, c, &op, follow, after).await,
        Request::StateVerify => c.verify_state(proto::Empty {}).await,
        Request::StateInit => return Err(not_served("state init")),
        Request::IamPolicy { account } => c.iam_policy(proto::IamPolicyRequest { account }).await,
        Request::Secrets(SecretsRequest::List { name }) => c.list_secrets(proto::SecretsListRequest { name }).await,
        Request::Secrets(_) => return Err(not_served("secrets set/delete")),
        Request::Database(DatabaseRequest::ListBackups { database }) => {
            c.list_backups(proto::DatabaseRequest { database }).await
        }
        // Backups and restores are sagas: the server looks the database up first.
        Request::Database(DatabaseRequest::Backup { database, dry_run }) => {
            return database_saga(ctx, c, "database-backup", database, dry_run).await;
        }
        Request::Database(DatabaseRequest::Restore { database, to, shadow_read, dry_run }) => {
            let mut params = vec![("database", database.clone()), ("to", to)];
            params.extend(shadow_read.map(|r| ("shadow_read", r)));
            return start_saga(ctx, c, "database-restore", &database, &params, dry_run).await;
        }
        Request::Database(DatabaseRequest::Retire { database, instance, dry_run }) => {
            let mut params = vec![("database", database.clone())];
            params.extend(instance.map(|i| ("instance", i)));
            return start_saga(ctx, c, "database-retire", &database, &params, dry_run).await;
        }
        Request::Database(DatabaseRequest::RotateSecret { secret, disable_after_ms, dry_run }) => {
            let mut params = vec![("secret", secret.clone())];
            params.extend(disable_after_ms.map(|ms| ("disable_after_ms", ms.to_string())));
            return start_saga(ctx, c, "secret-rotation", &secret, &params, dry_run).await;
        }
        Request::Failover(f) => {
            let mut params = vec![
                ("service", f.service.clone()),
                ("to", f.to.clone()),
                ("mode", f.mode.as_str().to_owned()),
                ("max_lag_bytes", f.max_lag_bytes.to_string()),
            ];
            if f.accept_data_loss {
                params.push(("accept_data_loss", "true".to_owned()));
            }
            return start_saga(ctx, c, "region-failover", &f.service, &params, f.dry_run).await;
        }
        Request::Database(DatabaseRequest::RotateKey { alias, deletion_days, dry_run }) => {
            let params = [("alias", alias.clone()), ("deletion_days", deletion_days.to_string())];
            return start_saga(ctx, c, "key-rotation", &alias, &params, dry_run).await;
        }
        Request::Release(ReleaseRequest::List { service }) => {
            c.list_releases(proto::ReleaseListRequest { service }).await
        }
        Request::Release(ReleaseRequest::Show { service, release }) => {
            c.show_release(proto::ReleaseRequest { service, release }).await
        }
        Request::Release(ReleaseRequest::Verify { service, release, public_key: None }) => {
            c.verify_release(proto::ReleaseRequest { service, release }).await
        }
        Request::Release(_) => return Err(not_served("release create (or verify with a local --public-key)")),
        Request::Saga(r) => return saga(ctx, c, r).await,
        other => return Ok(crate::run(ctx, other).await),
    })
}

/// `skiff debug collect` through the server: it collects and stores the bundle; `--out`
/// writes the bundle it answers with here.
async fn debug_collect(ctx: &Context, c: &Client, service: String, out: Option<std::path::PathBuf>) -> Result<Answer> {
    let mut answer = c.debug_collect(proto::ServiceRequest { service: Some(service) }).await;
    if let Some(path) = out
        && answer.envelope.ok
    {
        let bundle = answer.envelope.data.get("bundle").cloned().unwrap_or_default();
        crate::evidence::write(ctx, &path, &bundle)?;
        answer.envelope.facts.push(format!("written to {}", path.display()));
    }
    Ok(answer)
}

/// `skiff database backup` / `skiff restore database` through the server's StartSaga.
async fn database_saga(ctx: &Context, c: &Client, kind: &str, database: String, dry_run: bool) -> Result<Answer> {
    let params = [("database", database.clone())];
    start_saga(ctx, c, kind, &database, &params, dry_run).await
}

/// A saga the server plans from its parameters (a backup, a restore, a rotation).
async fn start_saga(
    ctx: &Context,
    c: &Client,
    kind: &str,
    subject: &str,
    params: &[(&str, String)],
    dry_run: bool,
) -> Result<Answer> {
    let confirmed = dry_run || confirmed(ctx, &format!("{kind} of {subject}"))?;
    let params = params.iter().map(|(k, v)| proto::Param { key: (*k).to_owned(), value: v.clone() }).collect();
    let req = proto::SagaStartRequest {
        kind: kind.to_owned(),
        service: None,
        params,
        dry_run,
        idempotency_key: None,
        reason: format!("{kind} {subject}"),
        to: None,
        confirmed,
    };
    let submitted = c.start_saga(req).await;
    Ok(follow(ctx, c, submitted, dry_run).await)
}

/// Whether the caller confirmed a mutating request here: `--yes`, or yes at a prompt.
/// Without a terminal the server is told it was not: it checks what was named and
/// answers CONFIRMATION_REQUIRED, as direct mode does.
fn confirmed(ctx: &Context, question: &str) -> Result<bool> {
    if ctx.yes {
        return Ok(true);
    }
    match ctx.ui.ask(&format!("{question} [y/N] ")) {
        Some(true) => Ok(true),
        Some(false) => Err(Envelope::failure(Code::Cancelled, "not confirmed; nothing was changed").into()),
        None => Ok(false),
    }
}

async fn saga(ctx: &Context, c: &Client, r: SagaRequest) -> Result<Answer> {
    let show = |op_id: String, outcome: bool| proto::OperationRequest { op_id, outcome, confirmed: false };
    let steer = |verb: &str, op_id: String| -> Result<proto::OperationRequest> {
        let confirmed = confirmed(ctx, &format!("{verb} operation {op_id}"))?;
        Ok(proto::OperationRequest { op_id, outcome: false, confirmed })
    };
    let decide = |verb: &str, op_id: String, detail: Option<String>| -> Result<proto::SagaDecisionRequest> {
        let confirmed = confirmed(ctx, &format!("{verb} operation {op_id}"))?;
        Ok(proto::SagaDecisionRequest { op_id, detail, confirmed })
    };
    Ok(match r {
        SagaRequest::List { service, status } => c.list_sagas(proto::SagaListRequest { service, status }).await,
        SagaRequest::Show { op } => c.get_operation(show(op, false)).await,
        SagaRequest::Outcome { op } => c.get_operation(show(op, true)).await,
        SagaRequest::Kinds => c.saga_kinds(proto::Empty {}).await,
        SagaRequest::Start(s) => {
            let dry_run = s.dry_run;
            let confirmed = dry_run || confirmed(ctx, &format!("start saga {}", s.kind))?;
            let req = proto::SagaStartRequest {
                kind: s.kind,
                service: s.service,
                params: s.params.into_iter().map(|(key, value)| proto::Param { key, value }).collect(),
                dry_run,
                idempotency_key: s.idempotency_key,
                reason: s.reason,
                to: s.to,
                confirmed,
            };
            let submitted = c.start_saga(req).await;
            follow(ctx, c, submitted, dry_run).await
        }
        SagaRequest::Approve { op, step } => c.approve(decide("approve", op, step)?).await,
        SagaRequest::Reject { op, reason } => c.reject(decide("reject", op, Some(reason))?).await,
        SagaRequest::Pause { op } => c.pause(steer("pause", op)?).await,
        SagaRequest::Resume { op } => c.resume(steer("resume", op)?).await,
        SagaRequest::Cancel { op } => c.cancel(steer("cancel", op)?).await,
    })
}

/// `deploy --watch`: the service's running operation, followed to its end.
async fn watch(ctx: &Context, c: &Client, file: &Path) -> Result<Answer> {
    let (_, spec) = crate::spec::load(ctx, file).await?;
    let service = spec.service.to_string();
    let status = c.status(proto::ServiceRequest { service: Some(service.clone()) }).await;
    if !status.envelope.ok {
        return Ok(status);
    }
    let data = &status.envelope.data;
    let op = [&data["active_operation"]["op_id"], &data["services"][0]["active_operation"]["op_id"]]
        .into_iter()
        .find_map(|v| v.as_str().map(str::to_owned));
    match op {
        Some(op) => Ok(follow(ctx, c, Envelope::ok(format!("following {op}")).operation(op).into(), false).await),
        None => Err(Envelope::failure(Code::NotFound, format!("no operation is running for {service}"))
            .action("status", format!("skiff status {service}"), false, Safety::ReadOnly, 0.5)
            .into()),
    }
}

/// `logs --follow`: asks for the lines since the last one seen, every second, until
/// interrupted (the server answers whole requests; this is the follow).
async fn follow_logs(ctx: &Context, c: &Client, r: LogsRequest) -> Result<Answer> {
    let mut since: Option<u64> = None;
    let mut seen_at_last: BTreeSet<String> = BTreeSet::new();
    loop {
        let req = proto::LogsRequest {
            service: r.service.clone(),
            instance: r.instance.clone(),
            since: since.map(|ms| skiff_clock::Utc::from_ms(ms).rfc3339()).or_else(|| r.since.clone()),
            grep: r.grep.clone(),
            trace: r.trace.clone(),
        };
        let answer = c.logs(req).await;
        if !answer.envelope.ok {
            return Ok(answer);
        }
        for l in answer.envelope.data["lines"].as_array().into_iter().flatten() {
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
            let human = format!(
                "{} {} {}",
                skiff_clock::Utc::from_ms(at).rfc3339(),
                l["instance"].as_str().unwrap_or("?"),
                l["line"].as_str().unwrap_or("")
            );
            ctx.emit(l, &if r.json { l.to_string() } else { human });
        }
        SystemClock.sleep(Duration::from_secs(1)).await;
    }
}

/// Builds the artifact here (unless told not to) and sends it with the spec: the
/// server releases and signs it, and a worker rolls it out.
fn deploy_request(ctx: &Context, file: &Path, build: bool) -> Result<proto::DeployRequest> {
    let (spec, parsed) = spec_file(ctx, file)?;
    let ir = skiff_ir::compile(&parsed);
    ctx.confirm(&format!("deploy {} through the server", ir.service), &format!("skiff deploy -f {}", spec.name))?;
    let dir = ctx.cwd.join(file).parent().map(Path::to_path_buf).unwrap_or_else(|| ctx.cwd.clone());
    if let (true, Some(cmd)) = (build, ir.artifact.build.as_deref()) {
        ctx.progress(&format!("building: {cmd}"));
        let status = std::process::Command::new("sh").arg("-c").arg(cmd).current_dir(&dir).status();
        if !status.is_ok_and(|s| s.success()) {
            return Err(Envelope::failure(Code::IoError, format!("the build failed: `{cmd}`"))
                .fact(format!("ran in {}", dir.display()))
                .into());
        }
    }
    let artifact = match ir.artifact.path.as_deref() {
        Some(p) => {
            let content = std::fs::read(dir.join(p)).map_err(|e| {
                Error::from(
                    Envelope::failure(Code::IoError, format!("cannot read the artifact {p}"))
                        .fact(e.to_string())
                        .fact("build it first (drop --no-build) or fix `artifact.path`"),
                )
            })?;
            // One message carries it: refuse here, clearly, what the server would refuse.
            let room = skiff_sdk::grpc::MAX_MESSAGE_BYTES - 1024 * 1024;
            if content.len() > room {
                return Err(Envelope::failure(
                    Code::Usage,
                    format!("the artifact {p} is {} bytes; skiffd takes at most {room} in one deploy", content.len()),
                )
                .fact("nothing was sent")
                .action(
                    "direct",
                    "skiff release create -f skiff.yaml --yes (without --server, where the bucket is)",
                    true,
                    Safety::Reversible,
                    0.5,
                )
                .into());
            }
            ctx.progress(&format!("sending {} ({} bytes) to the server", p, content.len()));
            Some(proto::Artifact { path: p.to_owned(), content })
        }
        None => None,
    };
    Ok(proto::DeployRequest { spec: Some(spec), artifact, ..Default::default() })
}

/// Follows a submitted operation to its end (or its next gate), printing the progress
/// lines direct mode prints, then answers with its outcome; `detach` (or no operation)
/// answers at once.
async fn follow(ctx: &Context, c: &Client, submitted: Answer, detach: bool) -> Answer {
    let Some(op) = submitted.envelope.operation_id.clone().filter(|_| submitted.envelope.ok && !detach) else {
        return submitted;
    };
    ctx.progress(&format!("operation {op} submitted; following it (Ctrl-C stops following, not the operation)"));
    let mut stream = match c.events(proto::EventsRequest { op_id: op.clone(), after: 0, follow: true }).await {
        Ok(s) => s,
        Err(env) => return (*env).into(),
    };
    let (mut started, mut hinted) = (false, false);
    loop {
        let e = match skiff_clock::timeout(&SystemClock, CLAIM_HINT_AFTER, stream.message()).await {
            Ok(Ok(Some(e))) => e,
            Ok(_) => break,
            Err(_) => {
                if !started && !hinted {
                    ctx.progress("  no worker has claimed it yet: is skiff-worker running against this bucket?");
                    hinted = true;
                }
                continue;
            }
        };
        started |= matches!(e.event_type.as_str(), "operation_started" | "operation_resumed");
        let stored: serde_json::Value = serde_json::from_str(&e.json).unwrap_or_default();
        if let Some(line) = crate::describe::stored(&e.event_type, &stored["data"]) {
            ctx.progress(&format!("  {:>4}  {line}", e.seq));
        }
        if matches!(e.event_type.as_str(), "approval_requested" | "paused") {
            break;
        }
    }
    c.get_operation(proto::OperationRequest { op_id: op, outcome: true, confirmed: false }).await
}

/// An operation's events from the stream, answered as direct mode answers them.
async fn events(ctx: &Context, c: &Client, op: &str, follow: bool, after: u64) -> Result<Answer> {
    let mut stream = c
        .events(proto::EventsRequest { op_id: op.to_owned(), after, follow })
        .await
        .map_err(|env| Error::from(*env))?;
    let mut all: Vec<skiff_state::docs::Event> = Vec::new();
    loop {
        match stream.message().await {
            Ok(Some(e)) => {
                let Ok(event) = serde_json::from_str::<skiff_state::docs::Event>(&e.json) else { continue };
                if follow {
                    ctx.emit(&serde_json::to_value(&event).unwrap_or_default(), &crate::events::line(&event));
                }
                all.push(event);
            }
            Ok(None) => break,
            Err(s) => return Err(skiff_sdk::grpc::status_envelope(c.server(), &s).into()),
        }
    }
    let shown =
        c.get_operation(proto::OperationRequest { op_id: op.to_owned(), outcome: false, confirmed: false }).await;
    if !shown.envelope.ok && all.is_empty() {
        return Ok(shown);
    }
    let status = serde_json::from_value(shown.envelope.data["status"].clone()).ok();
    Ok(crate::events::answer(op, status, &all, follow))
}
