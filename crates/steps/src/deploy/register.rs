//! `deploy.register`: registers the new instances in their target group and waits
//! until every one is healthy.

use std::time::Duration;

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::json;
use skiff_pluginapi::{HealthState, LoadBalancerSpec, TargetGroupSpec};
use skiff_sagaapi::{Risk, Safety, Step, StepCode, StepContext, StepError, StepPlan, StepRequest, StepResult};

use super::Provisioned;
use super::common::{POLL, health_fact, healthy_count, params, provider, provider_error};

#[derive(Deserialize)]
struct RegisterParams {
    service: String,
    target_group: TargetGroupSpec,
    listener_port: u16,
    /// Logical ids Terraform owns: a Terraform-owned load balancer is read, not ensured.
    #[serde(default)]
    owned: Vec<String>,
    /// The step whose instances these are (a region's own `provision-<region>`).
    #[serde(default = "provision_step")]
    provisioned_by: String,
}

fn provision_step() -> String {
    "provision".to_owned()
}

async fn register_and_wait(ctx: &StepContext, req: &StepRequest) -> Result<StepResult, StepError> {
    let p: RegisterParams = params(req)?;
    let provisioned: Provisioned = req.input(&p.provisioned_by)?;
    let traffic = provider(req)?.traffic();
    if p.owned.iter().any(|o| o == &format!("lb-rule/{}", p.service)) {
        if traffic.describe_load_balancer(&p.service).await.map_err(provider_error)?.is_none() {
            return Err(StepError::terminal(
                StepCode::NotFound,
                format!("the load balancer of {} is Terraform-owned and does not exist", p.service),
            )
            .fact("apply the Terraform module first (`terraform apply`), then deploy again"));
        }
    } else {
        traffic
            .ensure_load_balancer(&LoadBalancerSpec { service: p.service.clone(), listener_port: p.listener_port })
            .await
            .map_err(provider_error)?;
    }
    traffic.ensure_target_group(&p.target_group).await.map_err(provider_error)?;
    traffic.register(&p.target_group.name, &provisioned.targets).await.map_err(provider_error)?;
    let want = provisioned.targets.len();
    // Targets failing for this long (after their first verdict) will not recover.
    let h = &p.target_group.health;
    let patience = Duration::from_millis(h.interval_ms * u64::from(h.unhealthy_threshold + 2) + 2_000);
    let mut cancel = req.cancel.clone();
    let mut failing_since: Option<u64> = None;
    let mut last = usize::MAX;
    loop {
        let health = traffic.target_health(&p.target_group.name).await.map_err(provider_error)?;
        let healthy = healthy_count(&health);
        if healthy != last {
            ctx.progress(&format!("{healthy}/{want} targets healthy"), json!({"healthy": healthy, "targets": want}))
                .await;
            last = healthy;
        }
        if healthy >= want {
            return Ok(StepResult::new(
                format!("{healthy}/{want} targets healthy in {}", p.target_group.name),
                json!({"target_group": p.target_group.name, "healthy": healthy}),
            ));
        }
        if health.iter().any(|t| t.state == HealthState::Unhealthy) {
            let since = *failing_since.get_or_insert_with(|| ctx.now_ms());
            if ctx.now_ms().saturating_sub(since) > u64::try_from(patience.as_millis()).unwrap_or(u64::MAX) {
                let mut e = StepError::terminal(StepCode::CanaryFailed, "new release failed readiness")
                    .fact(format!("{healthy}/{want} new targets healthy after {}s", patience.as_secs()));
                if let Some(f) = health_fact(&health) {
                    e = e.fact(f);
                }
                return Err(e);
            }
        } else {
            failing_since = None;
        }
        cancel.sleep(POLL).await?;
    }
}

pub(super) struct Register;

#[async_trait]
impl Step for Register {
    fn kind(&self) -> &str {
        "deploy.register"
    }

    async fn plan(&self, _: &StepContext, req: &StepRequest) -> Result<StepPlan, StepError> {
        let p: RegisterParams = params(req)?;
        Ok(StepPlan {
            description: format!(
                "register the new instances in target group {} (health {}) and wait until every one is healthy",
                p.target_group.name, p.target_group.health.path
            ),
            safety: Safety::Reversible,
            risk: Risk::Low,
            expected_duration_ms: 3_000,
            affected_resources: vec![
                format!("target-group/{}", p.target_group.name),
                format!("load-balancer/{}", p.service),
            ],
        })
    }

    async fn run(&self, ctx: &StepContext, req: &StepRequest) -> Result<StepResult, StepError> {
        let result = register_and_wait(ctx, req).await;
        if let Err(e) = &result
            && !e.is_retryable()
        {
            // A failed step is not compensated: remove the target group it made.
            let p: RegisterParams = params(req)?;
            let _ = provider(req)?.traffic().delete_target_group(&p.target_group.name).await;
        }
        result
    }

    async fn resume(&self, ctx: &StepContext, req: &StepRequest) -> Result<StepResult, StepError> {
        self.run(ctx, req).await
    }

    async fn compensate(&self, _: &StepContext, req: &StepRequest, _: &StepResult) -> Result<StepResult, StepError> {
        let p: RegisterParams = params(req)?;
        provider(req)?.traffic().delete_target_group(&p.target_group.name).await.map_err(provider_error)?;
        Ok(StepResult::new(format!("removed target group {}", p.target_group.name), json!({})))
    }
}
