//! How an operation's state becomes an answer. [`outcome`] reads everything it needs
//! from the ledger (plan, progress, intent), so the CLI after running an operation, a
//! worker after running it, and a client after following it on skiffd all answer
//! exactly the same.

use std::fmt::Write as _;

use skiff_pluginapi::HealthState;
use skiff_saga::{RunReport, SagaPlan, StepStatus};
use skiff_sagaapi::StepCode;
use skiff_sdk::{Answer, Code, Envelope, RiskLevel, Safety};
use skiff_state::Ledger;
use skiff_state::docs::{OpStatus, OperationIntent, ReconcileDoc};

use crate::context::Context;
use crate::error::{Result, plural};

/// An operation's own answer: its saga kind's report (deploy and rollback name the
/// release, the canary and the stable group; repair reconciles again), else the
/// generic one. The intent's `notes` (facts from before the run) are added on success.
pub async fn outcome(ctx: &Context, ledger: &Ledger, op: &str) -> Result<Answer> {
    let engine = crate::factory::engine(ctx, ledger).await;
    let (plan, detail) = engine.load(op).await.map_err(|e| crate::error::saga(&e))?;
    let intent = ledger.read::<OperationIntent>(&skiff_state::keys::op_intent(op)).await.ok().flatten();
    let key = intent.as_ref().map(|i| i.idempotency_key.clone());
    let notes: Vec<String> = intent
        .as_ref()
        .and_then(|i| i.params.get("notes"))
        .and_then(|n| serde_json::from_value(n.clone()).ok())
        .unwrap_or_default();
    let report = RunReport { op_id: op.to_owned(), status: detail.status, detail, plan };
    let mut answer = match report.plan.saga.as_str() {
        "deploy" | "rollback" => {
            let facts = RolloutFacts::from_plan(&report.plan);
            let stable_healthy = stable_healthy(ctx, ledger, &report, &facts).await;
            rollout(&report, &facts, key.as_deref(), stable_healthy)
        }
        "repair" => repair(ctx, ledger, &report, intent.as_ref()).await?,
        "incident-repair" => incident(&report, key.as_deref(), intent.as_ref()),
        "shadow-deploy" => shadow(&report, key.as_deref()),
        "traffic-cutover" => cutover(&report, key.as_deref()),
        _ => operation(&report, key.as_deref()),
    };
    if answer.envelope.ok {
        answer.envelope.facts.extend(notes);
    }
    Ok(answer)
}

/// A step's parameters by kind.
fn params_of(r: &RunReport, kind: &str) -> serde_json::Value {
    r.plan.steps.iter().find(|s| s.kind == kind).map(|s| s.params.clone()).unwrap_or_default()
}

/// Sets `data.release` of an answer.
fn with_release(a: &mut Answer, release: &str) {
    if let Some(d) = a.envelope.data.as_object_mut() {
        d.insert("release".to_owned(), serde_json::json!(release));
    }
}

/// A shadow deploy's answer: the release, the mirror's comparison, and the cutover next.
fn shadow(r: &RunReport, key: Option<&str>) -> Answer {
    let mut a = operation(r, key);
    let p = params_of(r, "deploy.shadow");
    let (service, release) = (p["service"].as_str().unwrap_or_default(), p["release"].as_str().unwrap_or_default());
    with_release(&mut a, release);
    if r.status == OpStatus::Succeeded {
        let env = &mut a.envelope;
        env.summary =
            format!("release {release} of {service} runs as a shadow: healthy, no user traffic ({})", r.op_id);
        if let Some(m) = r.detail.step("mirror").summary.clone() {
            env.facts.insert(0, format!("mirror: {m}"));
        }
        *env = env.clone().action(
            "cutover",
            format!("skiff saga start traffic-cutover --service {service} --from http://OLD-HOST:PORT --dry-run"),
            false,
            Safety::ReadOnly,
            0.6,
        );
    }
    a
}

/// A traffic cutover's answer: where the traffic is, in words.
fn cutover(r: &RunReport, key: Option<&str>) -> Answer {
    let mut a = operation(r, key);
    let p = params_of(r, "cutover.attach");
    let (service, release) = (p["service"].as_str().unwrap_or_default(), p["release"].as_str().unwrap_or_default());
    let from = p["old"]["url"].as_str().unwrap_or_default();
    with_release(&mut a, release);
    let env = &mut a.envelope;
    match r.status {
        OpStatus::Succeeded => {
            env.summary = format!(
                "{service} takes all its traffic on {release}; the old backend {from} is retired ({})",
                r.op_id
            );
        }
        OpStatus::Compensated | OpStatus::Cancelled => {
            env.summary = format!(
                "cutover of {service} stopped: every weight is back on the old backend {from} ({})",
                env.summary
            );
        }
        _ => {}
    }
    a
}

/// An incident repair's answer: the operation's, named for the service, with what it
/// recommends beyond what it ran.
fn incident(r: &RunReport, key: Option<&str>, intent: Option<&OperationIntent>) -> Answer {
    let mut a = operation(r, key);
    let service = r.plan.service.clone().unwrap_or_default();
    let env = &mut a.envelope;
    if r.status == OpStatus::Succeeded {
        env.summary = format!("incident of {service} repaired: the symptom is gone ({})", r.op_id);
    } else if !env.ok {
        env.summary = format!("incident repair of {service} did not finish: {}", env.summary);
        *env = env.clone().action("doctor", format!("skiff doctor {service}"), false, Safety::ReadOnly, 0.7).action(
            "evidence",
            format!("skiff debug collect {service}"),
            true,
            Safety::ReadOnly,
            0.5,
        );
    }
    let recommended: Vec<serde_json::Value> =
        intent.and_then(|i| i.params.get("recommended")).and_then(|v| v.as_array().cloned()).unwrap_or_default();
    for (i, rec) in recommended.iter().enumerate() {
        let (Some(cmd), Some(why)) = (rec["command"].as_str(), rec["why"].as_str()) else { continue };
        *env = env.clone().fact(format!("recommended, not run: `{cmd}` ({why})")).action(
            &format!("recommended-{}", i + 1),
            cmd,
            !cmd.starts_with("skiff doctor") && !cmd.contains("--dry-run"),
            if cmd.starts_with("skiff doctor") || cmd.contains("--dry-run") {
                Safety::ReadOnly
            } else {
                Safety::Reversible
            },
            0.5,
        );
    }
    a
}

/// The answer for an operation submitted for a worker to run.
pub fn submitted(saga: &str, service: &str, release: &str, op: &str, steps: usize) -> Answer {
    let what: Vec<&str> = [service, release].into_iter().filter(|s| !s.is_empty()).collect();
    let of = if what.is_empty() { String::new() } else { format!(" of {}", what.join(" ")) };
    Envelope::ok(format!("{saga}{of} submitted as {op}"))
        .fact(format!("{}; a skiff-worker claims it through its lease and runs it", plural(steps, "step")))
        .operation(op.to_owned())
        .data(
            serde_json::json!({"op_id": op, "saga": saga, "service": service, "release": release, "status": "planned"}),
        )
        .action("follow", format!("skiff saga events {op} --follow"), false, Safety::ReadOnly, 0.8)
        .action("show", format!("skiff saga show {op}"), false, Safety::ReadOnly, 0.5)
        .into()
}

/// Where an operation stands, for any saga kind.
pub fn operation(r: &RunReport, key: Option<&str>) -> Answer {
    let op = &r.op_id;
    let d = &r.detail;
    let failure = d.failure.as_ref();
    let failed_code = failure.map(|f| skiff_saga::taxonomy(f.code));
    let (code, summary) = match r.status {
        OpStatus::Succeeded => (Code::Ok, format!("operation {op} succeeded")),
        OpStatus::AwaitingApproval => (
            Code::ApprovalRequired,
            format!("operation {op} waits for approval of step `{}`", d.awaiting.clone().unwrap_or_default()),
        ),
        OpStatus::Paused => match &d.held {
            Some(h) => (
                Code::Ok,
                format!(
                    "operation {op} paused{}: {}",
                    h.step.as_ref().map(|s| format!(" before step `{s}`")).unwrap_or_default(),
                    h.message
                ),
            ),
            None => (Code::Ok, format!("operation {op} is paused")),
        },
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
    env.idempotency_key = key.map(str::to_owned);
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
    if let Some(h) = d.held.as_ref().filter(|_| r.status == OpStatus::Paused) {
        env = env.fact(format!("held: {}: {}", h.code, h.message)).facts(h.facts.clone());
    }
    if let Some(at) = &d.blocked_at {
        env = env.fact(format!("compensation stopped at irreversible step `{at}`"));
        if r.plan.steps.iter().any(|s| s.id == *at && s.kind == "deploy.migrate") {
            env = env.fact(
                "the schema change stays: the migration has no `down`, and traffic is back on the previous release, which now runs against the new schema; fix forward with a release that works with it",
            )
            .action(
                "fix-forward",
                "skiff deploy -f skiff.yaml --yes",
                true,
                Safety::Reversible,
                0.6,
            );
        }
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
            serde_json::json!({"id": s.id, "kind": s.kind, "status": rec.status, "attempts": rec.attempts,
                "summary": rec.summary, "error": rec.error, "safety": s.safety})
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
        "held": d.held,
        "blocked_at": d.blocked_at,
    }));
    Answer::from(env).body(plan_table(&r.plan, Some(d)))
}

/// The plan as a table: id, (status), safety, risk, gate, description.
pub fn plan_table(plan: &SagaPlan, statuses: Option<&skiff_saga::SagaDetail>) -> String {
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

/// The plan as data.
pub fn plan_data(plan: &SagaPlan) -> serde_json::Value {
    serde_json::json!({
        "saga": plan.saga,
        "service": plan.service,
        "steps": plan.steps,
        "risk": plan.risk(),
        "safety": plan.safety(),
    })
}

/// The envelope's safety for a step's.
pub fn safety(s: skiff_sagaapi::Safety) -> Safety {
    match s {
        skiff_sagaapi::Safety::ReadOnly => Safety::ReadOnly,
        skiff_sagaapi::Safety::Irreversible => Safety::Irreversible,
        _ => Safety::Reversible,
    }
}

/// The envelope's risk level for a step's.
pub fn risk(r: skiff_sagaapi::Risk) -> RiskLevel {
    match r {
        skiff_sagaapi::Risk::None => RiskLevel::None,
        skiff_sagaapi::Risk::Low => RiskLevel::Low,
        skiff_sagaapi::Risk::Medium => RiskLevel::Medium,
        _ => RiskLevel::High,
    }
}

/// What a deploy or rollback answer names, read back from its plan's step parameters.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RolloutFacts {
    /// The service.
    pub service: String,
    /// The release rolled out.
    pub release: String,
    /// Instances the release runs.
    pub desired: u64,
    /// The load balancer's port, for services that serve.
    pub listener_port: Option<u64>,
    /// The release that was stable before, and its target group.
    pub stable: Option<(String, Option<String>)>,
}

impl RolloutFacts {
    /// The facts of a deploy or rollback plan.
    pub fn from_plan(plan: &SagaPlan) -> Self {
        let params = |kind: &str| plan.steps.iter().find(|s| s.kind == kind).map(|s| s.params.clone());
        let provision = params("deploy.provision").unwrap_or_default();
        let promote = params("deploy.promote").unwrap_or_default();
        let text = |v: &serde_json::Value| v.as_str().map(str::to_owned);
        let stable_tg = plan
            .steps
            .iter()
            .filter(|s| s.kind == "deploy.shift")
            .find_map(|s| text(&s.params["stable"]))
            .or_else(|| params("deploy.retire").and_then(|p| text(&p["target_group"])));
        RolloutFacts {
            service: text(&promote["service"]).unwrap_or_default(),
            release: text(&promote["release"]).unwrap_or_default(),
            desired: provision["group"]["desired"].as_u64().unwrap_or(0),
            listener_port: params("deploy.register").and_then(|p| p["listener_port"].as_u64()),
            stable: text(&promote["previous"]).map(|r| (r, stable_tg)),
        }
    }
}

/// After a compensated rollout: whether the stable group's targets are all healthy.
async fn stable_healthy(ctx: &Context, ledger: &Ledger, r: &RunReport, facts: &RolloutFacts) -> Option<bool> {
    let tg = facts.stable.as_ref().and_then(|(_, tg)| tg.as_ref())?;
    if r.status != OpStatus::Compensated {
        return None;
    }
    let health = match crate::factory::provider(ctx, ledger).await {
        Ok(p) => p.traffic().target_health(tg).await.unwrap_or_default(),
        Err(_) => Vec::new(),
    };
    Some(!health.is_empty() && health.iter().all(|t| t.state == HealthState::Healthy))
}

/// The highest weight the canary reached.
fn reached(report: &RunReport) -> Option<u32> {
    report
        .plan
        .steps
        .iter()
        .filter(|s| s.kind == "deploy.shift")
        .filter(|s| {
            let r = report.detail.step(&s.id);
            r.attempts > 0 && r.status != StepStatus::Pending
        })
        .filter_map(|s| s.id.strip_prefix("shift-").and_then(|w| w.parse().ok()))
        .max()
}

/// A deploy's or rollback's answer.
fn rollout(report: &RunReport, r: &RolloutFacts, key: Option<&str>, stable_healthy: Option<bool>) -> Answer {
    let op = &report.op_id;
    let d = &report.detail;
    let data = |status: &str| {
        serde_json::json!({
            "op_id": op, "service": r.service, "release": r.release, "status": status,
            "stable": r.stable.as_ref().map(|s| &s.0),
            "url": r.listener_port.map(|p| format!("http://127.0.0.1:{p}/")),
            "steps": report.plan.steps.iter().map(|s| {
                let rec = d.step(&s.id);
                serde_json::json!({"id": s.id, "status": rec.status, "summary": rec.summary, "error": rec.error})
            }).collect::<Vec<_>>(),
        })
    };
    let verb = if report.plan.saga == "rollback" { "rolled back" } else { "deployed" };
    match report.status {
        OpStatus::Succeeded => {
            let mut env = Envelope::ok(format!("{verb} {} {}", r.service, r.release)).operation(op.clone());
            if let Some(p) = r.listener_port {
                env = env.fact(format!("serving at http://127.0.0.1:{p}/"));
            }
            env = env.fact(format!("{} instances of {} healthy", r.desired, r.release));
            for s in &report.plan.steps {
                if s.kind == "deploy.analyse"
                    && let Some(sum) = &d.step(&s.id).summary
                {
                    env = env.fact(sum.clone());
                }
            }
            if let Some((stable, _)) = &r.stable {
                env = env
                    .fact(format!("previous release {stable} retired; `skiff rollback {}` brings it back", r.service));
            }
            env.data(data("succeeded"))
                .action("status", format!("skiff status {}", r.service), false, Safety::ReadOnly, 0.7)
                .action("logs", format!("skiff logs {}", r.service), false, Safety::ReadOnly, 0.4)
                .into()
        }
        OpStatus::Compensated if d.failure.as_ref().is_some_and(|f| f.code == StepCode::CanaryFailed) => {
            let f = d.failure.as_ref().expect("checked above");
            let shifted = reached(report);
            let at = shifted.map_or_else(|| "before any traffic shifted".to_owned(), |w| format!("at {w}%"));
            let mut facts = vec![format!("rollout stopped {at}")];
            facts.extend(f.facts.iter().filter(|x| !x.starts_with("rollout stopped")).cloned());
            if report
                .plan
                .steps
                .iter()
                .any(|s| s.kind == "deploy.migrate" && d.step(&s.id).status == StepStatus::Compensated)
            {
                facts.push("the schema is back: the migration's `down` ran".to_owned());
            }
            match &r.stable {
                Some((stable, _)) => {
                    let verb = if shifted.is_some() { "is back" } else { "stayed" };
                    facts.push(format!("traffic {verb} on {stable}"));
                    facts.push(match stable_healthy {
                        Some(false) => "previous stable release is NOT fully healthy: check `skiff status`".to_owned(),
                        _ => "previous stable release is healthy".to_owned(),
                    });
                }
                None => facts.push("there was no stable release; the new group was removed".to_owned()),
            }
            let svc = &r.service;
            let mut env = Envelope::failure(Code::CanaryFailed, f.message.clone())
                .facts(facts)
                .data(data("compensated"))
                .operation(op.clone());
            // Traffic is already back: nothing to roll back. Look at why, fix, deploy again
            // — unless what serves now is unwell too.
            if r.stable.is_some() && stable_healthy == Some(false) {
                env = env
                    .action("incident", format!("skiff repair incident {svc} --yes"), true, Safety::Reversible, 0.8)
                    .action("doctor", format!("skiff doctor {svc}"), false, Safety::ReadOnly, 0.6);
            }
            env = env
                .action("events", format!("skiff saga events {op}"), false, Safety::ReadOnly, 0.8)
                .action("logs", format!("skiff logs {svc} --since 10m"), false, Safety::ReadOnly, 0.7)
                .action("deploy", "skiff deploy -f skiff.yaml --yes", true, Safety::Reversible, 0.3);
            env.idempotency_key = key.map(str::to_owned);
            env.into()
        }
        OpStatus::Paused if d.held.is_some() => {
            let h = d.held.as_ref().expect("checked above");
            let at = reached(report).map_or_else(String::new, |w| format!(" at {w}%"));
            let code = match h.code {
                StepCode::Unknown => Code::AnalysisInconclusive,
                c => skiff_saga::taxonomy(c),
            };
            Envelope::failure(code, format!("canary analysis was inconclusive; the rollout paused{at}"))
                .fact(h.message.clone())
                .facts(h.facts.clone())
                .data(data("paused"))
                .operation(op.clone())
                .action("resume", format!("skiff saga resume {op} --yes"), true, Safety::Reversible, 0.7)
                .action("cancel", format!("skiff saga cancel {op} --yes"), true, Safety::Reversible, 0.4)
                .into()
        }
        _ => operation(report, key),
    }
}

/// A repair's answer: it reconciles again and names what was repaired and what drifts
/// still. The drift it started from rides in the intent (`drift`).
async fn repair(
    ctx: &Context,
    ledger: &Ledger,
    report: &RunReport,
    intent: Option<&OperationIntent>,
) -> Result<Answer> {
    let op = &report.op_id;
    let service = report.plan.service.clone().unwrap_or_default();
    if report.status != OpStatus::Succeeded {
        return Ok(Envelope::failure(
            Code::OperationFailed,
            format!("repair of {service} ended {}", report.status.as_str()),
        )
        .operation(op.clone())
        .action("show", format!("skiff saga show {op}"), false, Safety::ReadOnly, 0.8)
        .into());
    }
    let before: Vec<skiff_state::docs::Difference> = intent
        .and_then(|i| i.params.get("drift"))
        .and_then(|d| serde_json::from_value(d.clone()).ok())
        .unwrap_or_default();
    let provider = crate::factory::provider(ctx, ledger).await?;
    let after: Option<ReconcileDoc> =
        skiff_steps::reconcile::reconcile(ledger, provider.as_ref(), &service, &ctx.actor())
            .await
            .map_err(crate::observe::reconcile_error)?;
    // Nothing reconciled (another operation took the service): the drift stands as it was.
    let remaining = after.as_ref().map_or_else(|| before.clone(), |a| a.differences.clone());
    let mut env = if remaining.is_empty() {
        Envelope::ok(format!("repaired {service}: IN_SYNC"))
    } else {
        Envelope::failure(Code::Drifted, format!("repaired what a step can; {service} is still DRIFTED"))
    };
    for d in &before {
        if !remaining.iter().any(|a| a.path == d.path) {
            env = env.fact(format!("repaired {}: now {}", d.path, d.desired));
        }
    }
    for d in &remaining {
        env = env.fact(format!("{}: desired {}, actual {} — repair: {}", d.path, d.desired, d.actual, d.repair));
    }
    env = crate::observe::drift_actions(env, &service, &remaining);
    let policy: Vec<String> = intent
        .and_then(|i| i.params.get("policy"))
        .and_then(|d| serde_json::from_value(d.clone()).ok())
        .unwrap_or_default();
    Ok(env.facts(policy).operation(op.clone()).data(&after).into())
}
