//! `deploy.retire`: after the retention time, drains and deletes the previous
//! release's target group and instance group. Irreversible.

use std::time::Duration;

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::json;
use skiff_sagaapi::{Risk, Safety, Step, StepCode, StepContext, StepError, StepPlan, StepRequest, StepResult};

use super::common::{params, provider, provider_error};

#[derive(Deserialize)]
struct RetireParams {
    service: String,
    group: String,
    target_group: Option<String>,
    drain_ms: u64,
    retention_ms: u64,
    /// The load balancer the group served behind, when not the service's own (another
    /// region's).
    #[serde(default)]
    load_balancer: Option<String>,
}

pub(super) struct Retire;

#[async_trait]
impl Step for Retire {
    fn kind(&self) -> &str {
        "deploy.retire"
    }

    async fn plan(&self, _: &StepContext, req: &StepRequest) -> Result<StepPlan, StepError> {
        let p: RetireParams = params(req)?;
        let mut affected = vec![format!("instance-group/{}", p.group)];
        affected.extend(p.target_group.iter().map(|t| format!("target-group/{t}")));
        Ok(StepPlan {
            description: format!(
                "after {}s of retention, drain ({}s) and stop the previous group {}; `skiff rollback {}` re-creates it",
                p.retention_ms / 1000,
                p.drain_ms / 1000,
                p.group,
                p.service
            ),
            safety: Safety::Irreversible,
            risk: Risk::Low,
            expected_duration_ms: p.retention_ms + p.drain_ms,
            affected_resources: affected,
        })
    }

    async fn run(&self, ctx: &StepContext, req: &StepRequest) -> Result<StepResult, StepError> {
        let p: RetireParams = params(req)?;
        let prov = provider(req)?;
        let mut cancel = req.cancel.clone();
        if p.retention_ms > 0 {
            ctx.progress(&format!("keeping {} for {}s", p.group, p.retention_ms / 1000), json!({})).await;
            cancel.sleep(Duration::from_millis(p.retention_ms)).await?;
        }
        if let Some(tg) = &p.target_group {
            let lb = p.load_balancer.as_deref().unwrap_or(&p.service);
            let weights = prov.traffic().weights(lb).await.map_err(provider_error)?;
            if weights.iter().any(|w| &w.target_group == tg && w.weight > 0) {
                return Err(StepError::terminal(
                    StepCode::OperationFailed,
                    format!("{tg} still takes traffic; it is not retired while it serves"),
                ));
            }
            // A group from before the service ran in this region never had a target group.
            let targets: Vec<String> = match prov.traffic().target_health(tg).await {
                Err(e) if e.code == "NOT_FOUND" => Vec::new(),
                health => health.map_err(provider_error)?.into_iter().map(|t| t.id).collect(),
            };
            if !targets.is_empty() {
                prov.traffic().deregister(tg, &targets).await.map_err(provider_error)?;
                ctx.progress(&format!("draining {} targets of {tg}", targets.len()), json!({})).await;
                cancel.sleep(Duration::from_millis(p.drain_ms)).await?;
            }
            prov.traffic().delete_target_group(tg).await.map_err(provider_error)?;
        }
        prov.compute().delete_group(&p.group).await.map_err(provider_error)?;
        Ok(StepResult::new(format!("retired {}", p.group), json!({"group": p.group})))
    }

    async fn resume(&self, ctx: &StepContext, req: &StepRequest) -> Result<StepResult, StepError> {
        self.run(ctx, req).await
    }

    async fn compensate(&self, _: &StepContext, _: &StepRequest, _: &StepResult) -> Result<StepResult, StepError> {
        Err(StepError::terminal(StepCode::Internal, "retiring is irreversible and never compensated"))
    }
}
