//! The `incident-repair` saga, planned by `skiff repair incident SERVICE` from the
//! service's evidence: `evidence` records the bundle and the hypotheses (each with a
//! confidence and the facts behind it), then the remediations the plan chose — only
//! reversible ones: a secret put back to its previous value, failing instances
//! replaced, drift repaired (`repair.*` steps), a rollback to the stable release
//! (`deploy.*` steps), a stuck operation resumed — and `verify`, which waits until the
//! symptom is gone. Irreversible remediations are only ever recommended.

use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::json;
use skiff_pluginapi::HealthState;
use skiff_saga::Registry;
use skiff_sagaapi::{Risk, Safety, Step, StepCode, StepContext, StepError, StepPlan, StepRequest, StepResult};
use skiff_state::docs::{MemberHealth, RunnerDetail};

use crate::deploy::{POLL, provider, provider_error};
use crate::{ledger_error, step_plan};

/// `incident-repair` in the catalog: planned from evidence, so started by its command.
pub(crate) const KIND: crate::SagaKind = crate::SagaKind {
    name: "incident-repair",
    description: "collect evidence, rank hypotheses, run reversible remediations, verify (`skiff repair incident SERVICE`)",
    params: &[("service", "the service")],
    build: |_| Err(crate::deploy::needs_command("incident-repair", "skiff repair incident SERVICE --yes")),
};

/// One explanation of the symptoms.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Hypothesis {
    /// A short id, e.g. `secret-change`.
    pub id: String,
    /// What it says happened.
    pub summary: String,
    /// How likely, 0 to 1.
    pub confidence: f64,
    /// The evidence behind it.
    pub facts: Vec<String>,
    /// What the plan does about it (or recommends, when it is not reversible).
    pub remediation: String,
}

/// Runs another operation to its end: an incident's "resume the stuck operation".
/// The application layer provides it (it owns engines).
#[async_trait]
pub trait Resumer: Send + Sync {
    /// Resumes `op` under its lease and runs it; its final status.
    async fn resume(&self, op: &str) -> Result<String, String>;
}

#[derive(Deserialize)]
struct EvidenceParams {
    service: String,
    digest: String,
    hypotheses: Vec<Hypothesis>,
}

#[derive(Deserialize)]
struct RestartParams {
    service: String,
    group: String,
    size: u32,
    instances: Vec<String>,
}

#[derive(Deserialize)]
struct SecretParams {
    reference: String,
}

#[derive(Deserialize)]
struct ResumeParams {
    op: String,
}

#[derive(Deserialize)]
struct VerifyParams {
    service: String,
    group: Option<String>,
    size: u32,
    serves: bool,
}

/// Registers the incident step kinds.
pub(crate) fn register(r: Registry) -> Registry {
    r.with(Evidence).with(Restart).with(SecretRevert).with(Resume).with(Verify)
}

struct Evidence;

#[async_trait]
impl Step for Evidence {
    fn kind(&self) -> &str {
        "incident.evidence"
    }

    async fn plan(&self, _: &StepContext, req: &StepRequest) -> Result<StepPlan, StepError> {
        let p: EvidenceParams = req.params_as()?;
        let best = p.hypotheses.first().map_or_else(|| "no hypothesis".to_owned(), |h| h.summary.clone());
        Ok(step_plan(
            format!(
                "record the evidence of {} (blob {}) and {} hypotheses; most likely: {best}",
                p.service,
                &p.digest[..p.digest.len().min(12)],
                p.hypotheses.len()
            ),
            Safety::ReadOnly,
            Risk::Low,
            500,
            vec![format!("service/{}", p.service)],
        ))
    }

    async fn run(&self, _: &StepContext, req: &StepRequest) -> Result<StepResult, StepError> {
        let p: EvidenceParams = req.params_as()?;
        let ledger = req.extensions.require::<skiff_state::Ledger>()?;
        ledger.get_blob(&p.digest).await.map_err(ledger_error)?;
        Ok(StepResult::new(
            format!("evidence {} kept; {} hypotheses", skiff_state::keys::blob(&p.digest), p.hypotheses.len()),
            json!({"digest": p.digest, "hypotheses": p.hypotheses}),
        ))
    }

    async fn resume(&self, ctx: &StepContext, req: &StepRequest) -> Result<StepResult, StepError> {
        self.run(ctx, req).await
    }

    async fn compensate(&self, _: &StepContext, _: &StepRequest, _: &StepResult) -> Result<StepResult, StepError> {
        Ok(StepResult::new("nothing to undo: it only recorded", json!({})))
    }
}

/// Whether instance `id`'s runner reports it failing: unhealthy, or not healthy after
/// its program exited at least once (a crash loop in the making).
async fn reports_failing(req: &StepRequest, service: &str, id: &str) -> Result<bool, StepError> {
    let ledger = req.extensions.require::<skiff_state::Ledger>()?;
    let member = ledger
        .read::<skiff_state::docs::Member<RunnerDetail>>(&skiff_state::keys::member(service, id))
        .await
        .map_err(ledger_error)?;
    Ok(member.is_some_and(|m| {
        matches!(m.health, MemberHealth::Unhealthy | MemberHealth::Starting)
            && (m.detail.crash_loop || m.detail.restarts > 0 || m.health == MemberHealth::Unhealthy)
    }))
}

/// `incident.restart`: the failing instances replaced at once (they serve nothing), then
/// the group waited for until it is healthy at its size.
struct Restart;

#[async_trait]
impl Step for Restart {
    fn kind(&self) -> &str {
        "incident.restart"
    }

    async fn plan(&self, _: &StepContext, req: &StepRequest) -> Result<StepPlan, StepError> {
        let p: RestartParams = req.params_as()?;
        Ok(step_plan(
            format!(
                "replace the {} failing instance(s) of {} ({}) and wait until {} are healthy",
                p.instances.len(),
                p.group,
                p.instances.join(", "),
                p.size
            ),
            Safety::Reversible,
            Risk::Low,
            30_000,
            vec![format!("instance-group/{}", p.group)],
        ))
    }

    async fn run(&self, ctx: &StepContext, req: &StepRequest) -> Result<StepResult, StepError> {
        let p: RestartParams = req.params_as()?;
        let compute = provider(req)?.compute();
        let running: Vec<String> = compute
            .describe_group(&p.group)
            .await
            .map_err(provider_error)?
            .map(|g| g.running().iter().map(|i| i.id.clone()).collect())
            .unwrap_or_default();
        // The instances found failing when the repair was planned, and any that fail
        // now: one the supervisor launched since (after a crash of the planning process,
        // say) started with what was wrong then and would never become healthy.
        let mut failing = p.instances.clone();
        for id in &running {
            if !failing.contains(id) && reports_failing(req, &p.service, id).await? {
                failing.push(id.clone());
            }
        }
        let gone: Vec<String> = failing.iter().filter(|i| running.contains(i)).cloned().collect();
        for id in &gone {
            ctx.progress(&format!("replacing {id} of {}", p.service), json!({"instance": id})).await;
            compute.terminate_instance(&p.group, id).await.map_err(provider_error)?;
        }
        crate::consumers::wait_replaced(req, &p.group, p.size, &failing).await?;
        Ok(StepResult::new(
            format!("replaced {} instance(s) of {}; {} healthy", gone.len(), p.group, p.size),
            json!({"replaced": gone}),
        ))
    }

    async fn resume(&self, ctx: &StepContext, req: &StepRequest) -> Result<StepResult, StepError> {
        self.run(ctx, req).await
    }

    async fn compensate(&self, _: &StepContext, _: &StepRequest, _: &StepResult) -> Result<StepResult, StepError> {
        Ok(StepResult::new("replaced instances stay replaced: they run the same release", json!({})))
    }
}

/// `incident.secret_revert`: the reference takes its previous value again (the one
/// Skiff kept when it last changed it); the bad one becomes the previous. Running it
/// again swaps back, which is its compensation.
struct SecretRevert;

async fn swap(req: &StepRequest, reference: &str) -> Result<(), StepError> {
    let previous = format!("{reference}-previous");
    let secrets = provider(req)?.secrets();
    if !secrets.exists(&previous).await.map_err(provider_error)? {
        return Err(StepError::terminal(
            StepCode::NotFound,
            format!("{reference} has no previous value to go back to ({previous} does not exist)"),
        ));
    }
    secrets.cut_over(reference, &previous).await.map_err(provider_error)?;
    crate::record_secret(req, reference).await
}

#[async_trait]
impl Step for SecretRevert {
    fn kind(&self) -> &str {
        "incident.secret_revert"
    }

    async fn plan(&self, _: &StepContext, req: &StepRequest) -> Result<StepPlan, StepError> {
        let p: SecretParams = req.params_as()?;
        Ok(step_plan(
            format!(
                "put {} back to its previous value (kept at {}-previous); the current one becomes the previous",
                p.reference, p.reference
            ),
            Safety::Reversible,
            Risk::Medium,
            1_000,
            vec![p.reference.clone()],
        ))
    }

    async fn run(&self, _: &StepContext, req: &StepRequest) -> Result<StepResult, StepError> {
        let p: SecretParams = req.params_as()?;
        let before = provider(req)?.secrets().version(&p.reference).await.map_err(provider_error)?;
        swap(req, &p.reference).await?;
        let after = provider(req)?.secrets().version(&p.reference).await.map_err(provider_error)?;
        Ok(StepResult::new(
            format!(
                "{} is back at {} (was {})",
                p.reference,
                after.as_deref().unwrap_or("?"),
                before.as_deref().unwrap_or("?")
            ),
            json!({"reference": p.reference, "version": after, "was": before}),
        ))
    }

    async fn resume(&self, ctx: &StepContext, req: &StepRequest) -> Result<StepResult, StepError> {
        // Swapping twice would undo it: only swap when the value is still the bad one.
        let p: SecretParams = req.params_as()?;
        let ledger = req.extensions.require::<skiff_state::Ledger>()?;
        let name = p.reference.trim_start_matches("secret://").split('/').next().unwrap_or_default();
        let rec: Option<skiff_state::docs::SecretRecord> =
            ledger.read(&skiff_state::keys::secret_record(name)).await.map_err(ledger_error)?;
        let recorded_by_us = rec.and_then(|r| r.writes.get(&p.reference).cloned()).is_some_and(|w| w.by == req.op_id);
        if recorded_by_us {
            return Ok(StepResult::new(format!("{} was put back already", p.reference), json!({})));
        }
        self.run(ctx, req).await
    }

    async fn compensate(&self, _: &StepContext, req: &StepRequest, _: &StepResult) -> Result<StepResult, StepError> {
        let p: SecretParams = req.params_as()?;
        swap(req, &p.reference).await?;
        Ok(StepResult::new(format!("{} has the value it had before the incident repair", p.reference), json!({})))
    }
}

/// `incident.resume`: an operation whose engine died, resumed and run to its end.
struct Resume;

#[async_trait]
impl Step for Resume {
    fn kind(&self) -> &str {
        "incident.resume"
    }

    async fn plan(&self, _: &StepContext, req: &StepRequest) -> Result<StepPlan, StepError> {
        let p: ResumeParams = req.params_as()?;
        Ok(step_plan(
            format!("resume operation {} (its engine stopped) and run it to its end", p.op),
            Safety::Reversible,
            Risk::Medium,
            60_000,
            vec![format!("operation/{}", p.op)],
        ))
    }

    async fn run(&self, _: &StepContext, req: &StepRequest) -> Result<StepResult, StepError> {
        let p: ResumeParams = req.params_as()?;
        let resumer = req.extensions.require::<Arc<dyn Resumer>>()?;
        let status = resumer.resume(&p.op).await.map_err(|e| {
            StepError::retryable(StepCode::OperationFailed, format!("operation {} could not be resumed: {e}", p.op))
        })?;
        Ok(StepResult::new(format!("operation {} resumed: {status}", p.op), json!({"op": p.op, "status": status})))
    }

    async fn resume(&self, ctx: &StepContext, req: &StepRequest) -> Result<StepResult, StepError> {
        self.run(ctx, req).await
    }

    async fn compensate(&self, _: &StepContext, req: &StepRequest, _: &StepResult) -> Result<StepResult, StepError> {
        let p: ResumeParams = req.params_as()?;
        Ok(StepResult::new(format!("operation {} keeps its own outcome (it compensates itself)", p.op), json!({})))
    }
}

/// `incident.verify`: the symptom is gone — the group runs its size, every instance of
/// it is healthy (no crash loop, health checks pass), and traffic reaches it.
struct Verify;

/// What still ails the service, if anything.
async fn symptoms(req: &StepRequest, p: &VerifyParams) -> Result<Vec<String>, StepError> {
    let prov = provider(req)?;
    let ledger = req.extensions.require::<skiff_state::Ledger>()?;
    let mut out = Vec::new();
    // No group named: the service's current release when verifying (a resumed rollout
    // may have promoted another one).
    let current = match &p.group {
        Some(g) => Some(g.clone()),
        None => ledger
            .read::<skiff_state::docs::ServiceState>(&skiff_state::keys::service_state(&p.service))
            .await
            .map_err(ledger_error)?
            .and_then(|s| s.current_release)
            .map(|r| crate::deploy::group_name(&p.service, &r)),
    };
    let Some(group) = &current else { return Ok(out) };
    let running: Vec<String> = prov
        .compute()
        .describe_group(group)
        .await
        .map_err(provider_error)?
        .map(|g| g.running().iter().map(|i| i.id.clone()).collect())
        .unwrap_or_default();
    if running.len() < p.size as usize {
        out.push(format!("{group} runs {} of {} instances", running.len(), p.size));
    }
    let members = ledger.members::<RunnerDetail>(&p.service).await.map_err(ledger_error)?;
    for m in members.iter().filter(|m| running.contains(&m.instance)) {
        if m.detail.crash_loop || m.health != MemberHealth::Healthy {
            let what =
                if m.detail.crash_loop { "crash looping".to_owned() } else { format!("{:?}", m.health).to_lowercase() };
            out.push(format!("{} is {what}", m.instance));
        }
    }
    if p.serves {
        let health = prov.traffic().target_health(group).await.unwrap_or_default();
        let healthy = health.iter().filter(|t| t.state == HealthState::Healthy && running.contains(&t.id)).count();
        if healthy < p.size as usize {
            out.push(format!("{healthy} of {} targets of {group} are healthy", p.size));
        }
        let weights = prov.traffic().weights(&p.service).await.map_err(provider_error)?;
        if !weights.iter().any(|w| w.target_group == *group && w.weight == 100) {
            out.push(format!("the load balancer does not send all traffic to {group}"));
        }
    }
    Ok(out)
}

#[async_trait]
impl Step for Verify {
    fn kind(&self) -> &str {
        "incident.verify"
    }

    async fn plan(&self, _: &StepContext, req: &StepRequest) -> Result<StepPlan, StepError> {
        let p: VerifyParams = req.params_as()?;
        Ok(step_plan(
            format!(
                "wait until {} is healthy: {} instance(s) of {} running and healthy{}",
                p.service,
                p.size,
                p.group.as_deref().unwrap_or("its group"),
                if p.serves { ", all traffic on it" } else { "" }
            ),
            Safety::ReadOnly,
            Risk::Low,
            30_000,
            vec![format!("service/{}", p.service)],
        ))
    }

    async fn run(&self, ctx: &StepContext, req: &StepRequest) -> Result<StepResult, StepError> {
        let p: VerifyParams = req.params_as()?;
        let mut cancel = req.cancel.clone();
        let mut last = Vec::new();
        loop {
            let now = symptoms(req, &p).await?;
            if now.is_empty() {
                return Ok(StepResult::new(format!("{} is healthy: the symptom is gone", p.service), json!({})));
            }
            if now != last {
                ctx.progress(&format!("waiting: {}", now.join("; ")), json!({"symptoms": now})).await;
                last = now;
            }
            // The step's deadline ends the wait; its error names what is left.
            if let Err(e) = cancel.sleep(POLL).await {
                let mut err = StepError::terminal(StepCode::DeadlineExceeded, format!("{} is still unwell", p.service));
                for s in &last {
                    err = err.fact(s.clone());
                }
                return Err(err.fact(format!("the wait ended: {}", e.message)));
            }
        }
    }

    async fn resume(&self, ctx: &StepContext, req: &StepRequest) -> Result<StepResult, StepError> {
        self.run(ctx, req).await
    }

    async fn compensate(&self, _: &StepContext, _: &StepRequest, _: &StepResult) -> Result<StepResult, StepError> {
        Ok(StepResult::new("nothing to undo: it only waited", json!({})))
    }
}
