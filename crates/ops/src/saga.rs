//! `skiff saga ...`: plan, run and steer operations. Here (direct mode) the engine
//! runs in this process until the operation finishes, pauses or waits for approval;
//! detached (skiffd), steering is recorded and a worker acts on it.

use std::fmt::Write as _;

use skiff_saga::{RunReport, SagaError};
use skiff_sdk::{Answer, Code, Envelope, Safety};
use skiff_state::docs::{OpStatus, OperationIntent};
use skiff_state::keys;

use crate::context::Context;
use crate::error::{Result, plural};
use crate::pipeline::{Launch, launch};
use crate::report::{plan_data, plan_table, risk, safety};
use crate::request::{SagaRequest, SagaStart};

pub(crate) async fn run(ctx: &Context, r: SagaRequest) -> Result<Answer> {
    match r {
        SagaRequest::List { service, status } => list(ctx, service, status).await,
        SagaRequest::Show { op } => show(ctx, &op).await,
        SagaRequest::Outcome { op } => {
            let (_, ledger) = ctx.ledger()?;
            crate::lookup::operation(&ledger, &op).await?;
            crate::report::outcome(ctx, &ledger, &op).await
        }
        SagaRequest::Kinds => Ok(kinds()),
        // A restore is planned from the ledger; the database is looked up first.
        SagaRequest::Start(SagaStart { kind, params, dry_run, .. }) if kind == "database-restore" => {
            let get = |k: &str| params.iter().find(|(p, _)| p == k).map(|(_, v)| v.clone());
            let to = get("to").unwrap_or_else(|| "latest".to_owned());
            let read = get("shadow_read");
            crate::restore::database(ctx, &get("database").unwrap_or_default(), &to, read.as_deref(), dry_run).await
        }
        // A rotation is planned from the ledger; the secret's database is looked up first.
        SagaRequest::Start(SagaStart { kind, params, dry_run, .. }) if kind == "secret-rotation" => {
            let get = |k: &str| params.iter().find(|(p, _)| p == k).map(|(_, v)| v.clone());
            let after = get("disable_after_ms").and_then(|v| v.parse().ok());
            crate::rotate::secret(ctx, &get("secret").unwrap_or_default(), after, dry_run).await
        }
        SagaRequest::Start(SagaStart { kind, params, dry_run, .. }) if kind == "key-rotation" => {
            let get = |k: &str| params.iter().find(|(p, _)| p == k).map(|(_, v)| v.clone());
            let days = get("deletion_days").and_then(|v| v.parse().ok()).unwrap_or(30);
            crate::rotate::key(ctx, &get("alias").unwrap_or_else(|| "skiff".to_owned()), days, dry_run).await
        }
        SagaRequest::Start(SagaStart { kind, service, params, dry_run, .. }) if kind == "region-failover" => {
            let get = |k: &str| params.iter().find(|(p, _)| p == k).map(|(_, v)| v.clone());
            let mode = match get("mode").as_deref() {
                Some("failover") => crate::failover::FailoverMode::Failover,
                _ => crate::failover::FailoverMode::Switchover,
            };
            let r = crate::failover::FailoverRequest {
                service: get("service").or(service).unwrap_or_default(),
                to: get("to").unwrap_or_default(),
                mode,
                max_lag_bytes: get("max_lag_bytes")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(crate::failover::DEFAULT_MAX_LAG_BYTES),
                accept_data_loss: get("accept_data_loss").is_some_and(|v| v == "true"),
                dry_run,
            };
            crate::failover::stack(ctx, &r).await
        }
        SagaRequest::Start(SagaStart { kind, params, dry_run, .. }) if kind == "database-retire" => {
            let get = |k: &str| params.iter().find(|(p, _)| p == k).map(|(_, v)| v.clone());
            let instance = get("instance");
            crate::database::retire(ctx, &get("database").unwrap_or_default(), instance.as_deref(), dry_run).await
        }
        // A backup names a database, looked up before anything starts.
        SagaRequest::Start(SagaStart { kind, params, dry_run, .. })
            if kind == "database-backup" && params.iter().any(|(k, _)| k == "database") =>
        {
            let database = params.iter().find(|(k, _)| k == "database").map(|(_, v)| v.clone()).unwrap_or_default();
            crate::database::backup(ctx, &database, dry_run).await
        }
        SagaRequest::Start(SagaStart { kind, service, params, dry_run, .. }) if kind == "incident-repair" => {
            let named = params.iter().find(|(k, _)| k == "service").map(|(_, v)| v.clone());
            crate::incident::repair(ctx, &named.or(service).unwrap_or_default(), dry_run).await
        }
        SagaRequest::Start(SagaStart { kind, service, params, dry_run, .. }) if kind == "traffic-cutover" => {
            let named = params.iter().find(|(k, _)| k == "service").map(|(_, v)| v.clone());
            crate::cutover::start(ctx, &service.or(named).unwrap_or_default(), &params, dry_run).await
        }
        SagaRequest::Start(SagaStart { kind, service: Some(service), to, .. }) if kind == "rollback" => {
            crate::deploy::rollback(ctx, &service, to.as_deref().unwrap_or("previous-stable")).await
        }
        SagaRequest::Start(s) => start(ctx, s).await,
        SagaRequest::Approve { op, step } => steer(ctx, &op, Steer::Approve(step)).await,
        SagaRequest::Reject { op, reason } => steer(ctx, &op, Steer::Reject(reason)).await,
        SagaRequest::Pause { op } => steer(ctx, &op, Steer::Pause).await,
        SagaRequest::Resume { op } => steer(ctx, &op, Steer::Resume).await,
        SagaRequest::Cancel { op } => steer(ctx, &op, Steer::Cancel).await,
    }
}

fn kinds() -> Answer {
    let kinds = skiff_steps::catalog();
    let mut body = String::new();
    for k in &kinds {
        let _ = writeln!(body, "{}: {}", k.name, k.description);
        for (p, d) in k.params {
            let _ = writeln!(body, "    --param {p}=...  {d}");
        }
    }
    let data: Vec<serde_json::Value> = kinds
        .iter()
        .map(|k| serde_json::json!({"name": k.name, "description": k.description,
            "params": k.params.iter().map(|(p, d)| serde_json::json!({"name": p, "description": d})).collect::<Vec<_>>()}))
        .collect();
    Answer::from(Envelope::ok(plural(kinds.len(), "saga kind")).data(data)).body(body)
}

fn param_args(params: &skiff_steps::Params) -> String {
    params.iter().map(|(k, v)| format!(" --param {k}={v}")).collect()
}

async fn start(ctx: &Context, s: SagaStart) -> Result<Answer> {
    let kind = s.kind.as_str();
    let params: skiff_steps::Params = s.params.into_iter().collect();
    let saga = skiff_steps::saga(kind)
        .and_then(|k| skiff_steps::check_params(&k, &params).map(|()| k))
        .map_err(|e| crate::error::saga(&e))?;
    let graph = (saga.build)(&params).map_err(|e| crate::error::saga(&e))?;
    if s.dry_run {
        let start = format!("skiff saga start {kind}{} --yes", param_args(&params));
        return planned(ctx, &graph, s.service.as_deref(), kind, start).await;
    }
    ctx.confirm(&format!("start saga {kind}"), &format!("skiff saga start {kind}{}", param_args(&params)))?;
    let actor = ctx.actor();
    let (_, ledger) = ctx.ledger()?;
    ledger.init(&actor).await.map_err(|e| crate::error::state(&e))?;
    let engine = crate::factory::engine(ctx, &ledger).await;
    let l = Launch {
        graph,
        service: s.service,
        scope: None,
        key: s.idempotency_key,
        reason: s.reason,
        params: serde_json::to_value(&params).unwrap_or_default(),
        audit: ("saga.start".to_owned(), serde_json::json!({"saga": kind})),
        audit_existing: true,
        release: String::new(),
    };
    Ok(launch(ctx, &engine, &ledger, l).await?.answer())
}

/// A dry run's answer: every step of `graph` as the engine plans it, with its safety,
/// risk and approval gate, and `start` as the command that runs it.
pub(crate) async fn planned(
    ctx: &Context,
    graph: &skiff_saga::SagaGraph,
    service: Option<&str>,
    label: &str,
    start: String,
) -> Result<Answer> {
    let (_, ledger) = ctx.ledger()?;
    let engine = crate::factory::engine(ctx, &ledger).await;
    let plan = engine.plan(graph, service, "op-dry-run").await.map_err(|e| crate::error::saga(&e))?;
    let gates = plan.steps.iter().filter(|s| s.needs_approval && s.approved_by.is_none()).count();
    let env = Envelope::ok(format!("plan for {label}: {} steps, nothing changed (dry run)", plan.steps.len()))
        .fact(format!("least reversible step: {}", plan.safety().as_str()))
        .fact(if gates == 1 {
            "1 step waits for approval".to_owned()
        } else {
            format!("{gates} steps wait for approval")
        })
        .data(plan_data(&plan))
        .risk(
            risk(plan.risk()),
            plan.steps
                .iter()
                .filter(|s| s.risk >= plan.risk())
                .map(|s| format!("{}: {}", s.id, s.description))
                .collect(),
        )
        .action("start", start, true, safety(plan.safety()), 0.6);
    Ok(Answer::from(env).body(plan_table(&plan, None)))
}

enum Steer {
    Approve(Option<String>),
    Reject(String),
    Pause,
    Resume,
    Cancel,
}

async fn steer(ctx: &Context, op: &str, action: Steer) -> Result<Answer> {
    let verb = match &action {
        Steer::Approve(_) => "approve",
        Steer::Reject(_) => "reject",
        Steer::Pause => "pause",
        Steer::Resume => "resume",
        Steer::Cancel => "cancel",
    };
    let (_, ledger) = ctx.ledger()?;
    crate::lookup::operation(&ledger, op).await?;
    ctx.confirm(&format!("{verb} operation {op}"), &format!("skiff saga {verb} {op}"))?;
    let actor = ctx.actor();
    let e = crate::factory::engine(ctx, &ledger).await;
    let (_, detail) = e.load(op).await.map_err(|err| crate::error::saga(&err))?;
    let recorded = match &action {
        Steer::Approve(step) => e.approve(op, &actor, step.clone()).await.map(drop),
        Steer::Reject(reason) => e.reject(op, &actor, reason).await.map(drop),
        Steer::Pause => e.pause(op, &actor).await.map(drop),
        // A paused operation gets a resume request; one whose engine died needs none.
        Steer::Resume if detail.status == OpStatus::Paused || detail.pause_requested => {
            e.request_resume(op, &actor).await.map(drop)
        }
        Steer::Resume if detail.status.is_terminal() => Err(SagaError::InvalidTransition {
            op: op.to_owned(),
            action: "resume",
            status: detail.status.as_str().to_owned(),
        }),
        Steer::Resume => Ok(()),
        Steer::Cancel => e.cancel(op, &actor).await.map(drop),
    };
    recorded.map_err(|err| crate::error::saga(&err))?;
    let _ = ledger.audit(&actor, &format!("saga.{verb}"), op, Code::Ok, serde_json::json!({})).await;
    let follow = || {
        Envelope::ok(format!("{verb} recorded for operation {op}")).operation(op.to_owned()).action(
            "follow",
            format!("skiff saga events {op} --follow"),
            false,
            Safety::ReadOnly,
            0.6,
        )
    };
    match e.lease_holder(op).await.map_err(|err| crate::error::saga(&err))? {
        Some((holder, _)) if !matches!(action, Steer::Resume) => {
            return Ok(follow()
                .fact(format!("engine {holder} is running it and acts at its next step boundary"))
                .into());
        }
        _ => {}
    }
    if ctx.detach {
        return Ok(follow().fact("a skiff-worker continues it at its next poll").into());
    }
    if matches!(action, Steer::Pause) {
        // Nobody is running it: record the pause and let the next run honour it.
        return Ok(Envelope::ok(format!("operation {op} will pause at its next step boundary"))
            .fact("no engine is running it now")
            .operation(op.to_owned())
            .action("resume", format!("skiff saga resume {op} --yes"), true, Safety::Reversible, 0.5)
            .into());
    }
    e.run(op).await.map_err(|err| crate::error::saga(&err))?;
    crate::report::outcome(ctx, &ledger, op).await
}

async fn list(ctx: &Context, service: Option<String>, status: Option<String>) -> Result<Answer> {
    let (_, ledger) = ctx.ledger()?;
    let index = ledger.rebuild_index().await.map_err(|e| crate::error::state(&e))?;
    if let Some(s) = &service
        && !index.operations.values().any(|o| o.service.as_ref() == Some(s))
        && !crate::lookup::service_known(&ledger, s).await?
    {
        return Err(crate::lookup::no_service(&ledger, s));
    }
    let mut ops: Vec<(&String, &skiff_state::OperationEntry)> = index
        .operations
        .iter()
        .filter(|(_, o)| service.as_ref().is_none_or(|s| o.service.as_ref() == Some(s)))
        .filter(|(_, o)| status.as_ref().is_none_or(|s| o.status.map(OpStatus::as_str) == Some(s.as_str())))
        .collect();
    ops.sort_by(|a, b| b.1.updated_at_ms.cmp(&a.1.updated_at_ms).then(a.0.cmp(b.0)));
    let mut body = String::new();
    for (id, o) in &ops {
        let _ = writeln!(
            body,
            "{id}  {:<10} {:<18} {:<16} {} events",
            o.saga.as_deref().unwrap_or("?"),
            o.status.map_or("unknown", OpStatus::as_str),
            o.service.as_deref().unwrap_or("-"),
            o.events
        );
    }
    let data: Vec<serde_json::Value> = ops
        .iter()
        .map(|(id, o)| {
            serde_json::json!({"op_id": id, "saga": o.saga, "service": o.service, "status": o.status, "events": o.events})
        })
        .collect();
    Ok(Answer::from(Envelope::ok(plural(ops.len(), "operation")).data(data)).body(body))
}

async fn show(ctx: &Context, op: &str) -> Result<Answer> {
    let (_, ledger) = ctx.ledger()?;
    crate::lookup::operation(&ledger, op).await?;
    let e = crate::factory::engine(ctx, &ledger).await;
    let (plan, detail) = e.load(op).await.map_err(|err| crate::error::saga(&err))?;
    let intent = ledger.read::<OperationIntent>(&keys::op_intent(op)).await.ok().flatten();
    let events = ledger.events_after(op, detail.applied_seq.saturating_sub(10)).await.unwrap_or_default();
    let holder = e.lease_holder(op).await.ok().flatten();
    let report = RunReport { op_id: op.to_owned(), status: detail.status, detail, plan };
    let mut answer = crate::report::operation(&report, intent.as_ref().map(|i| i.idempotency_key.as_str()));
    if let Some(i) = &intent {
        let why = if i.reason.is_empty() { String::new() } else { format!(": {}", i.reason) };
        answer.envelope.facts.insert(0, format!("{} by {}{why}", i.saga, i.actor));
    }
    if let Some((h, _)) = &holder {
        answer.envelope.facts.push(format!("running now in engine {h}"));
    }
    let mut body = answer.body.take().unwrap_or_default();
    body.push_str("\nRecent events:\n");
    for ev in &events {
        let _ = writeln!(body, "  {:>4}  {}  {}", ev.seq, skiff_clock::Utc::from_ms(ev.at_ms).rfc3339(), ev.event_type);
    }
    if let serde_json::Value::Object(m) = &mut answer.envelope.data {
        m.insert("intent".to_owned(), serde_json::to_value(&intent).unwrap_or_default());
        m.insert("plan".to_owned(), plan_data(&report.plan));
        m.insert("running_in".to_owned(), serde_json::to_value(holder.map(|h| h.0)).unwrap_or_default());
    }
    // Showing is read-only: its answer is OK whatever the operation's status.
    let env = &mut answer.envelope;
    if !env.ok {
        env.facts.insert(0, format!("operation status code: {}", env.code));
    }
    env.ok = true;
    env.code = Code::Ok;
    answer.body = Some(body);
    Ok(answer)
}
