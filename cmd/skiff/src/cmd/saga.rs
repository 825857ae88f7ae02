//! `skiff saga ...`: plan, run and steer operations. Direct mode: the engine runs in
//! this process, in the foreground, until the operation finishes, pauses or waits for
//! approval; progress goes to stderr.

use std::fmt::Write as _;
use std::sync::Arc;

use skiff_saga::{Engine, RunReport, SagaError, SagaEvent, SagaPlan, StepStatus, Submission};
use skiff_sagaapi::Extensions;
use skiff_sdk::{Code, Envelope, RiskLevel, Safety};
use skiff_state::Ledger;
use skiff_state::docs::{OpStatus, OperationIntent};
use skiff_state::keys;

use crate::cli::SagaAction;
use crate::{Ctx, Format, Outcome};

/// How long a foreground run waits for a dead engine's lease to lapse.
const LEASE_WAIT_MS: u64 = 35_000;

pub(super) fn run(ctx: &Ctx, action: SagaAction) -> Outcome {
    match action {
        SagaAction::List { service, status } => list(ctx, service, status),
        SagaAction::Show { op } => show(ctx, &op),
        SagaAction::Kinds => kinds(),
        SagaAction::Start { kind, service: Some(service), to, .. } if kind == "rollback" => {
            super::deploy::rollback(ctx, &service, to.as_deref().unwrap_or("previous-stable"))
        }
        SagaAction::Start { kind, service, params, dry_run, idempotency_key, reason, to: _ } => {
            start(ctx, &kind, service, params.into_iter().collect(), dry_run, idempotency_key, reason)
        }
        SagaAction::Approve { op, step } => steer(ctx, &op, Steer::Approve(step)),
        SagaAction::Reject { op, reason } => steer(ctx, &op, Steer::Reject(reason)),
        SagaAction::Pause { op } => steer(ctx, &op, Steer::Pause),
        SagaAction::Resume { op } => steer(ctx, &op, Steer::Resume),
        SagaAction::Cancel { op } => steer(ctx, &op, Steer::Cancel),
        SagaAction::Events { op, follow } => super::events::run(ctx, &op, follow, 0),
    }
}

fn safety(s: skiff_sagaapi::Safety) -> Safety {
    match s {
        skiff_sagaapi::Safety::ReadOnly => Safety::ReadOnly,
        skiff_sagaapi::Safety::Irreversible => Safety::Irreversible,
        _ => Safety::Reversible,
    }
}

fn risk(r: skiff_sagaapi::Risk) -> RiskLevel {
    match r {
        skiff_sagaapi::Risk::None => RiskLevel::None,
        skiff_sagaapi::Risk::Low => RiskLevel::Low,
        skiff_sagaapi::Risk::Medium => RiskLevel::Medium,
        _ => RiskLevel::High,
    }
}

pub(crate) fn saga_error(e: &SagaError) -> Outcome {
    if let SagaError::State(s) = e {
        return super::state_error(s);
    }
    let env = Envelope::failure(e.code(), e.to_string());
    let env = match e {
        SagaError::UnknownSaga { .. } => env.action("kinds", "skiff saga kinds", false, Safety::ReadOnly, 0.8),
        SagaError::NotFound { .. } => env.action("list", "skiff saga list", false, Safety::ReadOnly, 0.7),
        SagaError::InvalidTransition { op, .. } => {
            env.action("show", format!("skiff saga show {op}"), false, Safety::ReadOnly, 0.7)
        }
        _ => env,
    };
    env.into()
}

/// The operation lease's time to live: `$SKIFF_LEASE_TTL_MS`, default 30 s. A dead
/// engine's operation can be resumed once this much time has passed.
fn lease_ttl_ms(ctx: &Ctx) -> u64 {
    (ctx.env)("SKIFF_LEASE_TTL_MS").and_then(|v| v.parse().ok()).unwrap_or(30_000)
}

/// An engine for this invocation: the ledger, the resolved provider (when it can be
/// reached from here) and the approval policy.
pub(crate) fn engine(ctx: &Ctx, ledger: &Ledger) -> Engine {
    let mut ext = Extensions::default();
    ext.insert(ledger.clone());
    if let Ok(p) = super::deploy::provider(ctx, ledger) {
        ext.insert(p);
    }
    let ttl = lease_ttl_ms(ctx);
    let engine = Engine::new(ledger.clone(), skiff_steps::registry())
        .with_extensions(ext)
        .with_policy(Arc::new(skiff_steps::deploy::RoutinePolicy))
        .with_lease_ttl_ms(ttl)
        .with_lease_wait_ms(LEASE_WAIT_MS.max(ttl + 5_000));
    match ctx.format {
        Format::Human if !ctx.quiet => engine.with_observer(Arc::new(|stored, event| {
            if let Some(line) = describe(event) {
                crate::output::progress(&format!("  {:>4}  {line}", stored.seq));
            }
        })),
        _ => engine,
    }
}

/// A progress line for an event.
fn describe(e: &SagaEvent) -> Option<String> {
    use SagaEvent::*;
    Some(match e {
        OperationStarted { holder, .. } => format!("started by {holder}"),
        OperationResumed { holder, .. } => format!("resumed by {holder}"),
        StepStarted { step, attempt, resume, .. } => {
            format!("{step}: started (attempt {attempt}{})", if *resume { ", resuming" } else { "" })
        }
        StepProgress { step, message, .. } => format!("{step}: {message}"),
        StepSucceeded { step, summary, .. } => format!("{step}: ✓ {summary}"),
        StepFailed { step, code, message, retrying, .. } => {
            format!("{step}: ✗ {code}: {message}{}", if *retrying { " (retrying)" } else { "" })
        }
        StepHeld { step, code, message, .. } => format!("{step}: ⏸ {code}: {message}; pausing"),
        ApprovalRequested { step, .. } => format!("{step}: waits for approval"),
        Paused { .. } => "paused".to_owned(),
        CompensationStarted { reason, .. } => format!("compensating: {reason}"),
        StepCompensated { step, summary, .. } => format!("{step}: ↶ {summary}"),
        CompensationBlocked { step, .. } => format!("{step}: irreversible, compensation stops here"),
        CompensationFailed { step, message, .. } => format!("{step}: compensation failed: {message}"),
        OperationSucceeded { .. } => "succeeded".to_owned(),
        OperationFailed { message, .. } => format!("failed: {message}"),
        OperationCompensated { .. } => "compensated".to_owned(),
        OperationCancelled { .. } => "cancelled".to_owned(),
        _ => return None,
    })
}

fn plan_table(plan: &SagaPlan, statuses: Option<&skiff_saga::SagaDetail>) -> String {
    let mut out = String::new();
    let w = plan.steps.iter().map(|s| s.id.len()).max().unwrap_or(4).max(4);
    for s in &plan.steps {
        let status = statuses.map(|d| {
            let r = d.step(&s.id);
            format!(
                "{:<13} ",
                serde_json::to_value(r.status).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default()
            )
        });
        let _ = writeln!(
            out,
            "  {:w$}  {}{:<12} {:<6}{} {}",
            s.id,
            status.unwrap_or_default(),
            s.safety.as_str(),
            format!("{:?}", s.risk).to_lowercase(),
            if s.needs_approval { " gate" } else { "     " },
            s.description
        );
    }
    out
}

fn plan_data(plan: &SagaPlan) -> serde_json::Value {
    serde_json::json!({
        "saga": plan.saga,
        "service": plan.service,
        "steps": plan.steps,
        "risk": plan.risk(),
        "safety": plan.safety(),
    })
}

fn kinds() -> Outcome {
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
        .map(|k| serde_json::json!({"name": k.name, "description": k.description, "params": k.params.iter().map(|(p, d)| serde_json::json!({"name": p, "description": d})).collect::<Vec<_>>()}))
        .collect();
    Outcome::from(Envelope::ok(super::plural(kinds.len() as u64, "saga kind")).data(data)).body(body)
}

fn start(
    ctx: &Ctx,
    kind: &str,
    service: Option<String>,
    params: skiff_steps::Params,
    dry_run: bool,
    idempotency_key: Option<String>,
    reason: String,
) -> Outcome {
    let saga = match skiff_steps::saga(kind).and_then(|k| skiff_steps::check_params(&k, &params).map(|()| k)) {
        Ok(k) => k,
        Err(e) => return saga_error(&e),
    };
    let graph = match (saga.build)(&params) {
        Ok(g) => g,
        Err(e) => return saga_error(&e),
    };
    let params_json = serde_json::to_value(&params).unwrap_or_default();
    if dry_run {
        return super::block_on(ctx, |ledger, _| async move {
            let plan = match engine(ctx, &ledger).plan(&graph, service.as_deref(), "op-dry-run").await {
                Ok(p) => p,
                Err(e) => return saga_error(&e),
            };
            let gates = plan.steps.iter().filter(|s| s.needs_approval).count();
            let env = Envelope::ok(format!("plan for {kind}: {} steps, nothing changed (dry run)", plan.steps.len()))
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
                .action(
                    "start",
                    format!("skiff saga start {kind}{} --yes", param_args(&params)),
                    true,
                    safety(plan.safety()),
                    0.6,
                );
            Outcome::from(env).body(plan_table(&plan, None))
        });
    }
    if let Err(o) =
        ctx.confirm(&format!("start saga {kind}"), &format!("skiff saga start {kind}{}", param_args(&params)))
    {
        return *o;
    }
    let actor = ctx.actor();
    super::block_on(ctx, |ledger, _| async move {
        if let Err(err) = ledger.init(&actor).await {
            return super::state_error(&err);
        }
        let e = engine(ctx, &ledger);
        let submitted = match e
            .submit(Submission { graph, service, actor: actor.clone(), reason, idempotency_key, params: params_json })
            .await
        {
            Ok(s) => s,
            Err(err) => return saga_error(&err),
        };
        let op = submitted.op_id.clone();
        let _ = ledger.audit(&actor, "saga.start", &op, Code::Ok, serde_json::json!({"saga": kind})).await;
        if !submitted.created {
            ctx.progress(&format!("operation {op} already exists for this idempotency key; continuing it"));
        }
        ctx.progress(&format!("operation {op}: {} steps", submitted.plan.steps.len()));
        if ctx.detach {
            let service = submitted.plan.service.clone().unwrap_or_default();
            return super::deploy::submitted_outcome(kind, &service, "", &op, submitted.plan.steps.len());
        }
        let report = match e.run(&op).await {
            Ok(r) => r,
            Err(err) => return saga_error(&err),
        };
        report_outcome(&report, Some(&submitted.idempotency_key))
    })
}

fn param_args(params: &skiff_steps::Params) -> String {
    params.iter().map(|(k, v)| format!(" --param {k}={v}")).collect()
}

/// The answer for where an operation stands.
pub(crate) fn report_outcome(r: &RunReport, key: Option<&str>) -> Outcome {
    let op = &r.op_id;
    let d = &r.detail;
    let failure = d.failure.as_ref();
    let failed_code = failure.and_then(|f| f.code.parse::<Code>().ok()).filter(|c| *c != Code::Ok);
    let (code, summary) = match r.status {
        OpStatus::Succeeded => (Code::Ok, format!("operation {op} succeeded")),
        OpStatus::AwaitingApproval => (
            Code::ApprovalRequired,
            format!("operation {op} waits for approval of step `{}`", d.awaiting.clone().unwrap_or_default()),
        ),
        OpStatus::Paused => (Code::Ok, format!("operation {op} is paused")),
        OpStatus::Compensated => (
            failed_code.unwrap_or(Code::OperationFailed),
            format!(
                "operation {op} failed{} and was compensated",
                failure.and_then(|f| f.step.clone()).map(|s| format!(" at step `{s}`")).unwrap_or_default()
            ),
        ),
        OpStatus::Cancelled => {
            (Code::Cancelled, format!("operation {op} was cancelled; completed reversible steps were undone"))
        }
        OpStatus::Failed => {
            (failed_code.unwrap_or(Code::OperationFailed), format!("operation {op} failed and needs attention"))
        }
        other => (Code::Ok, format!("operation {op} is {}", other.as_str())),
    };
    let mut env = Envelope::failure(code, summary).operation(op.clone());
    env.ok = code == Code::Ok;
    if let Some(k) = key {
        env.idempotency_key = Some(k.to_owned());
    }
    let done: Vec<String> = r.steps_in(StepStatus::Succeeded);
    env = env.fact(format!("status: {}", r.status.as_str()));
    if !done.is_empty() {
        env = env.fact(format!("completed: {}", done.join(", ")));
    }
    let undone = r.steps_in(StepStatus::Compensated);
    if !undone.is_empty() {
        env = env.fact(format!("undone: {}", undone.join(", ")));
    }
    if let Some(f) = failure {
        env = env.fact(format!("{}: {}", f.code, f.message)).facts(f.facts.clone());
    }
    if let Some(at) = &d.blocked_at {
        env = env.fact(format!("compensation stopped at irreversible step `{at}`"));
    }
    env = match r.status {
        OpStatus::AwaitingApproval => env
            .action("approve", format!("skiff saga approve {op} --yes"), true, Safety::Irreversible, 0.6)
            .action("reject", format!("skiff saga reject {op} --yes"), true, Safety::Reversible, 0.4),
        OpStatus::Paused => {
            env.action("resume", format!("skiff saga resume {op} --yes"), true, Safety::Reversible, 0.7)
        }
        OpStatus::Failed => env.action("show", format!("skiff saga show {op}"), false, Safety::ReadOnly, 0.8),
        _ => env.action("events", format!("skiff saga events {op}"), false, Safety::ReadOnly, 0.3),
    };
    let steps: Vec<serde_json::Value> = r
        .plan
        .steps
        .iter()
        .map(|s| {
            let rec = d.step(&s.id);
            serde_json::json!({"id": s.id, "kind": s.kind, "status": rec.status, "attempts": rec.attempts, "summary": rec.summary, "error": rec.error, "safety": s.safety})
        })
        .collect();
    env = env.data(serde_json::json!({
        "op_id": op,
        "saga": r.plan.saga,
        "service": r.plan.service,
        "status": r.status,
        "steps": steps,
        "awaiting": d.awaiting,
        "failure": failure,
        "blocked_at": d.blocked_at,
    }));
    Outcome::from(env).body(plan_table(&r.plan, Some(d)))
}

enum Steer {
    Approve(Option<String>),
    Reject(String),
    Pause,
    Resume,
    Cancel,
}

fn steer(ctx: &Ctx, op: &str, action: Steer) -> Outcome {
    let verb = match &action {
        Steer::Approve(_) => "approve",
        Steer::Reject(_) => "reject",
        Steer::Pause => "pause",
        Steer::Resume => "resume",
        Steer::Cancel => "cancel",
    };
    if let Err(o) = ctx.confirm(&format!("{verb} operation {op}"), &format!("skiff saga {verb} {op}")) {
        return *o;
    }
    let actor = ctx.actor();
    let op = op.to_owned();
    super::block_on(ctx, |ledger, _| async move {
        let e = engine(ctx, &ledger);
        let (_, detail) = match e.load(&op).await {
            Ok(v) => v,
            Err(err) => return saga_error(&err),
        };
        let recorded = match &action {
            Steer::Approve(step) => e.approve(&op, &actor, step.clone()).await.map(drop),
            Steer::Reject(reason) => e.reject(&op, &actor, reason).await.map(drop),
            Steer::Pause => e.pause(&op, &actor).await.map(drop),
            // A paused operation gets a resume request; one whose engine died needs none.
            Steer::Resume if detail.status == OpStatus::Paused || detail.pause_requested => {
                e.request_resume(&op, &actor).await.map(drop)
            }
            Steer::Resume if detail.status.is_terminal() => Err(SagaError::InvalidTransition {
                op: op.clone(),
                action: "resume",
                status: detail.status.as_str().to_owned(),
            }),
            Steer::Resume => Ok(()),
            Steer::Cancel => e.cancel(&op, &actor).await.map(drop),
        };
        if let Err(err) = recorded {
            return saga_error(&err);
        }
        let _ = ledger.audit(&actor, &format!("saga.{verb}"), &op, Code::Ok, serde_json::json!({})).await;
        match e.lease_holder(&op).await {
            Ok(Some((holder, _))) if !matches!(action, Steer::Resume) => {
                return Envelope::ok(format!("{verb} recorded for operation {op}"))
                    .fact(format!("engine {holder} is running it and acts at its next step boundary"))
                    .operation(op.clone())
                    .action("follow", format!("skiff saga events {op} --follow"), false, Safety::ReadOnly, 0.6)
                    .into();
            }
            Ok(_) => {}
            Err(err) => return saga_error(&err),
        }
        if ctx.detach {
            return Envelope::ok(format!("{verb} recorded for operation {op}"))
                .fact("a skiff-worker continues it at its next poll")
                .operation(op.clone())
                .action("follow", format!("skiff saga events {op} --follow"), false, Safety::ReadOnly, 0.6)
                .into();
        }
        if matches!(action, Steer::Pause) {
            // Nobody is running it: record the pause and let the next run honour it.
            return Envelope::ok(format!("operation {op} will pause at its next step boundary"))
                .fact("no engine is running it now")
                .operation(op.clone())
                .action("resume", format!("skiff saga resume {op} --yes"), true, Safety::Reversible, 0.5)
                .into();
        }
        match e.run(&op).await {
            Ok(report) => {
                if report.status.is_terminal()
                    && let Some(service) = &report.plan.service
                {
                    super::deploy::release_claim(&ledger, service, &op).await;
                }
                report_outcome(&report, None)
            }
            Err(err) => saga_error(&err),
        }
    })
}

fn list(ctx: &Ctx, service: Option<String>, status: Option<String>) -> Outcome {
    super::block_on(ctx, |ledger, _| async move {
        let index = match ledger.rebuild_index().await {
            Ok(i) => i,
            Err(e) => return super::state_error(&e),
        };
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
            .map(|(id, o)| serde_json::json!({"op_id": id, "saga": o.saga, "service": o.service, "status": o.status, "events": o.events}))
            .collect();
        Outcome::from(
            Envelope::ok(format!("{} operation{}", ops.len(), if ops.len() == 1 { "" } else { "s" })).data(data),
        )
        .body(body)
    })
}

fn show(ctx: &Ctx, op: &str) -> Outcome {
    let op = op.to_owned();
    super::block_on(ctx, |ledger, _| async move {
        let e = engine(ctx, &ledger);
        let (plan, detail) = match e.load(&op).await {
            Ok(v) => v,
            Err(err) => return saga_error(&err),
        };
        let intent = ledger.read::<OperationIntent>(&keys::op_intent(&op)).await.ok().flatten();
        let events = ledger.events_after(&op, detail.applied_seq.saturating_sub(10)).await.unwrap_or_default();
        let holder = e.lease_holder(&op).await.ok().flatten();
        let report = RunReport { op_id: op.clone(), status: detail.status, detail, plan };
        let mut outcome = report_outcome(&report, intent.as_ref().map(|i| i.idempotency_key.as_str()));
        if let Some(i) = &intent {
            outcome.envelope.facts.insert(
                0,
                format!(
                    "{} by {}{}",
                    i.saga,
                    i.actor,
                    if i.reason.is_empty() { String::new() } else { format!(": {}", i.reason) }
                ),
            );
        }
        if let Some((h, _)) = &holder {
            outcome.envelope.facts.push(format!("running now in engine {h}"));
        }
        let mut body = outcome.body.take().unwrap_or_default();
        body.push_str("\nRecent events:\n");
        for ev in &events {
            let _ =
                writeln!(body, "  {:>4}  {}  {}", ev.seq, skiff_clock::Utc::from_ms(ev.at_ms).rfc3339(), ev.event_type);
        }
        if let serde_json::Value::Object(m) = &mut outcome.envelope.data {
            m.insert("intent".to_owned(), serde_json::to_value(&intent).unwrap_or_default());
            m.insert("plan".to_owned(), plan_data(&report.plan));
            m.insert("running_in".to_owned(), serde_json::to_value(holder.map(|h| h.0)).unwrap_or_default());
        }
        // Showing is read-only: its answer is OK whatever the operation's status.
        let env = &mut outcome.envelope;
        if !env.ok {
            env.facts.insert(0, format!("operation status code: {}", env.code));
        }
        env.ok = true;
        env.code = Code::Ok;
        outcome.body = Some(body);
        outcome
    })
}
