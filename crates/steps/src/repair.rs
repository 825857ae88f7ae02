//! The `repair` saga: brings drift found by [`crate::reconcile`] back in line where a
//! step can do it safely — the release's group scaled back to its desired size, the
//! listener's weights back on the release (with the same read-back as a rollout), and
//! every difference that carries a reversible `fix` (the role's permissions, an extra
//! policy, an opened network rule, a swapped launch, a rogue listener rule or target,
//! the bucket's settings), each its own step whose compensation is the fix's undo.
//! Drift no step repairs (a missing group, a stray group, a changed secret) stays a
//! finding whose repair is a command.

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::json;
use skiff_saga::{Registry, SagaBuilder, SagaGraph};
use skiff_sagaapi::{Risk, Safety, Step, StepCode, StepContext, StepError, StepPlan, StepRequest, StepResult};
use skiff_state::docs::Difference;

use crate::deploy::{POLL, apply_weights, provider, provider_error};

/// `repair` in the catalog: planned from a reconcile, so started by `skiff reconcile --repair`.
pub(crate) const KIND: crate::SagaKind = crate::SagaKind {
    name: "repair",
    description: "bring a drifted service back to its desired state (`skiff reconcile SERVICE --repair`)",
    params: &[],
    build: |_| Err(crate::deploy::needs_command("repair", "skiff reconcile SERVICE --repair --yes")),
};

/// The repair graph for `differences` of `service`'s release group `group`, and the
/// differences no step repairs. `None` when no step applies.
pub fn repair_graph(
    service: &str,
    group: &str,
    desired: u32,
    differences: &[Difference],
) -> (Option<SagaGraph>, Vec<Difference>) {
    let has = |p: &str| differences.iter().any(|d| d.path == p);
    let scale = has("instances.desired") || has("instances.running");
    let weights = has("traffic.weights");
    let stepped = |d: &Difference| {
        matches!(d.path.as_str(), "instances.desired" | "instances.running" | "traffic.weights") || d.fix.is_some()
    };
    let rest: Vec<Difference> = differences.iter().filter(|d| !stepped(d)).cloned().collect();
    let mut b = SagaBuilder::new("repair");
    let mut any = false;
    // Security first: an opened door is closed before capacity comes back.
    let mut fixes: Vec<&Difference> = differences.iter().filter(|d| d.fix.is_some()).collect();
    fixes.sort_by_key(|d| std::cmp::Reverse(d.severity));
    for (i, d) in fixes.into_iter().enumerate() {
        let Some(fix) = &d.fix else { continue };
        b = b.step(
            &format!("fix-{}", i + 1),
            "repair.fix",
            json!({"path": d.path, "severity": d.severity, "fix": fix, "resource": d.desired}),
        );
        if fix.undo.is_null() {
            b = b.require_approval();
        }
        any = true;
    }
    if scale {
        b = b.step("scale", "repair.scale", json!({"group": group, "desired": desired}));
        any = true;
    }
    if weights {
        b = b.step("weights", "repair.weights", json!({"service": service, "target_group": group}));
        any = true;
    }
    if !any {
        return (None, rest);
    }
    (b.build().ok(), rest)
}

/// Registers the repair step kinds.
pub(crate) fn register(r: Registry) -> Registry {
    r.with(Scale).with(Weights).with(FixStep)
}

#[derive(Deserialize)]
struct FixParams {
    path: String,
    severity: skiff_pluginapi::Severity,
    fix: skiff_pluginapi::Fix,
}

/// Runs one side of a fix: the role back to given permissions, or the provider's own.
async fn apply_fix(req: &StepRequest, action: &serde_json::Value) -> Result<(), StepError> {
    let p = provider(req)?;
    if action.get("kind").and_then(serde_json::Value::as_str) == Some(crate::reconcile::ENSURE_ROLE) {
        let role: skiff_pluginapi::RoleSpec = serde_json::from_value(action["role"].clone())
            .map_err(|e| StepError::terminal(StepCode::Internal, format!("a role fix without a role: {e}")))?;
        p.identity().ensure_role(&role).await.map_err(provider_error)?;
        return Ok(());
    }
    let posture = p.posture().ok_or_else(|| {
        StepError::terminal(StepCode::ProviderError, format!("the {} provider cannot apply posture fixes", p.name()))
    })?;
    posture.fix(action).await.map_err(provider_error)
}

/// `repair.fix`: one difference's reversible fix.
struct FixStep;

#[async_trait]
impl Step for FixStep {
    fn kind(&self) -> &str {
        "repair.fix"
    }

    async fn plan(&self, _: &StepContext, req: &StepRequest) -> Result<StepPlan, StepError> {
        let p: FixParams = req.params_as()?;
        let reversible = !p.fix.undo.is_null();
        Ok(StepPlan {
            description: format!("{} ({} drift at {})", p.fix.description, p.severity.as_str(), p.path),
            safety: if reversible { Safety::Reversible } else { Safety::Irreversible },
            risk: if p.severity >= skiff_pluginapi::Severity::High { Risk::Medium } else { Risk::Low },
            expected_duration_ms: 2_000,
            affected_resources: vec![p.path.clone()],
        })
    }

    async fn run(&self, _: &StepContext, req: &StepRequest) -> Result<StepResult, StepError> {
        let p: FixParams = req.params_as()?;
        apply_fix(req, &p.fix.apply).await?;
        Ok(StepResult::new(format!("{}: done", p.fix.description), json!({"path": p.path})))
    }

    async fn resume(&self, ctx: &StepContext, req: &StepRequest) -> Result<StepResult, StepError> {
        // Every fix is idempotent: applying it again is what finishing it means.
        self.run(ctx, req).await
    }

    async fn compensate(&self, _: &StepContext, req: &StepRequest, _: &StepResult) -> Result<StepResult, StepError> {
        let p: FixParams = req.params_as()?;
        if p.fix.undo.is_null() {
            return Err(StepError::terminal(StepCode::OperationFailed, format!("{} cannot be undone", p.path)));
        }
        apply_fix(req, &p.fix.undo).await?;
        Ok(StepResult::new(format!("put {} back as it was", p.path), json!({"path": p.path})))
    }
}

#[derive(Deserialize)]
struct ScaleParams {
    group: String,
    desired: u32,
}

struct Scale;

#[async_trait]
impl Step for Scale {
    fn kind(&self) -> &str {
        "repair.scale"
    }

    async fn plan(&self, _: &StepContext, req: &StepRequest) -> Result<StepPlan, StepError> {
        let p: ScaleParams = req.params_as()?;
        Ok(StepPlan {
            description: format!("scale {} back to {} instances and wait until they run", p.group, p.desired),
            safety: Safety::Reversible,
            risk: Risk::Low,
            expected_duration_ms: 5_000,
            affected_resources: vec![format!("instance-group/{}", p.group)],
        })
    }

    async fn run(&self, ctx: &StepContext, req: &StepRequest) -> Result<StepResult, StepError> {
        let p: ScaleParams = req.params_as()?;
        let compute = provider(req)?.compute();
        compute.set_desired(&p.group, p.desired).await.map_err(provider_error)?;
        let mut cancel = req.cancel.clone();
        loop {
            let g = compute.describe_group(&p.group).await.map_err(provider_error)?.ok_or_else(|| {
                StepError::terminal(
                    StepCode::NotFound,
                    format!("instance group {} is gone; roll back to re-create it", p.group),
                )
            })?;
            let running = g.running().len();
            if running == p.desired as usize {
                return Ok(StepResult::new(
                    format!("{running} instances of {} running", p.group),
                    json!({"running": running}),
                ));
            }
            ctx.progress(&format!("{running}/{} instances running", p.desired), json!({"running": running})).await;
            cancel.sleep(POLL).await?;
        }
    }

    async fn resume(&self, ctx: &StepContext, req: &StepRequest) -> Result<StepResult, StepError> {
        self.run(ctx, req).await
    }

    async fn compensate(&self, _: &StepContext, _: &StepRequest, _: &StepResult) -> Result<StepResult, StepError> {
        // The desired size is what the ledger wants; going back to the drifted size
        // would re-create the drift.
        Ok(StepResult::new("left at the desired size", json!({})))
    }
}

#[derive(Deserialize)]
struct WeightsParams {
    service: String,
    target_group: String,
}

struct Weights;

#[async_trait]
impl Step for Weights {
    fn kind(&self) -> &str {
        "repair.weights"
    }

    async fn plan(&self, _: &StepContext, req: &StepRequest) -> Result<StepPlan, StepError> {
        let p: WeightsParams = req.params_as()?;
        Ok(StepPlan {
            description: format!("send all of {}'s traffic to {} again, read back", p.service, p.target_group),
            safety: Safety::Reversible,
            risk: Risk::Medium,
            expected_duration_ms: 2_000,
            affected_resources: vec![format!("lb-rule/{}", p.service)],
        })
    }

    async fn run(&self, ctx: &StepContext, req: &StepRequest) -> Result<StepResult, StepError> {
        let p: WeightsParams = req.params_as()?;
        let w = vec![skiff_pluginapi::Weight { target_group: p.target_group.clone(), weight: 100 }];
        apply_weights(ctx, req, &p.service, &w, std::slice::from_ref(&p.target_group)).await?;
        Ok(StepResult::new(format!("all traffic on {}", p.target_group), json!({})))
    }

    async fn resume(&self, ctx: &StepContext, req: &StepRequest) -> Result<StepResult, StepError> {
        self.run(ctx, req).await
    }

    async fn compensate(&self, _: &StepContext, _: &StepRequest, _: &StepResult) -> Result<StepResult, StepError> {
        Ok(StepResult::new("weights left on the desired release", json!({})))
    }
}
