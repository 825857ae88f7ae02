//! `deploy.front`: the global traffic front of a service in several regions, pointed at
//! every region's load balancer. A new front sends all traffic to the region that
//! writes; an existing one keeps its weights (a failover moved them on purpose), and
//! both are read back. A compensated deploy keeps the front: it only points at load
//! balancers that stay.

use async_trait::async_trait;
use skiff_pluginapi::{FrontSpec, RegionEndpoint, RegionWeight};
use skiff_sagaapi::{Risk, Safety, Step, StepCode, StepContext, StepError, StepPlan, StepRequest, StepResult};

use super::FrontPlan;
use super::common::{params, provider, provider_error};

pub(super) struct EnsureFront;

fn shown(weights: &[RegionWeight]) -> String {
    weights.iter().map(|w| format!("{} {}%", w.region, w.weight)).collect::<Vec<_>>().join(", ")
}

#[async_trait]
impl Step for EnsureFront {
    fn kind(&self) -> &str {
        "deploy.front"
    }

    async fn plan(&self, _: &StepContext, req: &StepRequest) -> Result<StepPlan, StepError> {
        let p: FrontPlan = params(req)?;
        let regions: Vec<&str> = p.regions.iter().map(|(r, _)| r.as_str()).collect();
        Ok(StepPlan {
            description: format!(
                "point the global traffic front of {} at {} (a new front sends 100% to {}; an existing one keeps its weights)",
                p.service,
                regions.join(", "),
                p.initial_region
            ),
            safety: Safety::Reversible,
            risk: Risk::Low,
            expected_duration_ms: 1_000,
            affected_resources: vec![format!("traffic-front/{}", p.service)],
        })
    }

    async fn run(&self, ctx: &StepContext, req: &StepRequest) -> Result<StepResult, StepError> {
        let p: FrontPlan = params(req)?;
        let traffic = provider(req)?.traffic();
        let mut endpoints = Vec::new();
        for (region, lb) in &p.regions {
            let Some(info) = traffic.describe_load_balancer(lb).await.map_err(provider_error)? else {
                return Err(StepError::terminal(
                    StepCode::NotFound,
                    format!("the load balancer of {} in {region} ({lb}) does not exist", p.service),
                ));
            };
            endpoints.push(RegionEndpoint { region: region.clone(), address: info.address });
        }
        let spec = FrontSpec {
            service: p.service.clone(),
            regions: endpoints,
            health: p.health.clone(),
            initial: vec![RegionWeight { region: p.initial_region.clone(), weight: 100 }],
        };
        let mut front = traffic.ensure_front(&spec).await.map_err(provider_error)?;
        if front.weights.iter().all(|w| w.weight == 0) {
            return Err(StepError::retryable(
                StepCode::ProviderError,
                format!("the traffic front of {} reads back no weight", p.service),
            ));
        }
        // Done when the front serves: every region it weights passes its health check.
        let h = &p.health;
        let patience = h.interval_ms * u64::from(h.healthy_threshold + h.unhealthy_threshold + 2) + 2_000;
        let since = ctx.now_ms();
        let mut cancel = req.cancel.clone();
        loop {
            let waiting: Vec<&str> = front
                .weights
                .iter()
                .filter(|w| w.weight > 0 && !front.healthy.contains(&w.region))
                .map(|w| w.region.as_str())
                .collect();
            if waiting.is_empty() {
                break;
            }
            if ctx.now_ms().saturating_sub(since) > patience {
                return Err(StepError::retryable(
                    StepCode::ProviderError,
                    format!("the traffic front of {} finds no healthy endpoint in {}", p.service, waiting.join(", ")),
                )
                .fact(format!("each region's load balancer answers GET {} through the front", h.path)));
            }
            cancel.sleep(super::POLL).await?;
            front = traffic.describe_front(&p.service).await.map_err(provider_error)?.unwrap_or(front);
        }
        Ok(StepResult::new(format!("traffic front at {}: {}", front.address, shown(&front.weights)), &front))
    }

    async fn resume(&self, ctx: &StepContext, req: &StepRequest) -> Result<StepResult, StepError> {
        self.run(ctx, req).await
    }

    async fn compensate(&self, _: &StepContext, req: &StepRequest, _: &StepResult) -> Result<StepResult, StepError> {
        let p: FrontPlan = params(req)?;
        Ok(StepResult::new(format!("kept the traffic front of {}", p.service), serde_json::json!({})))
    }
}
