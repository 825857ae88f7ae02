//! `failover.traffic`: one step of moving a service's global traffic from the old
//! writer's region to the new one (10% → 50% → 100%). Each sets the front's weights,
//! reads them back until the front answers with exactly them, and records them in the
//! service state, so a resumed or reconciled failover knows where traffic was sent.

use std::collections::BTreeMap;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::json;
use skiff_pluginapi::RegionWeight;
use skiff_sagaapi::{Risk, Safety, Step, StepCode, StepContext, StepError, StepPlan, StepRequest, StepResult};
use skiff_state::Ledger;
use skiff_state::docs::ServiceState;

use crate::deploy::{provider, provider_error};
use crate::{ledger_error, step_plan};

/// One shift's parameters.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShiftParams {
    /// The service.
    pub service: String,
    /// The region traffic leaves.
    pub from: String,
    /// The region traffic goes to.
    pub to: String,
    /// Percent to `to` after this step.
    pub weight: u32,
}

#[derive(Serialize, Deserialize)]
struct Shifted {
    previous: Vec<RegionWeight>,
    weights: Vec<RegionWeight>,
}

fn weights(p: &ShiftParams, to: u32) -> Vec<RegionWeight> {
    let mut w = vec![
        RegionWeight { region: p.to.clone(), weight: to.min(100) },
        RegionWeight { region: p.from.clone(), weight: 100 - to.min(100) },
    ];
    w.sort();
    w
}

fn shown(w: &[RegionWeight]) -> String {
    w.iter().map(|w| format!("{} {}%", w.region, w.weight)).collect::<Vec<_>>().join(", ")
}

fn positive(w: &[RegionWeight]) -> Vec<RegionWeight> {
    let mut w: Vec<RegionWeight> = w.iter().filter(|w| w.weight > 0).cloned().collect();
    w.sort();
    w
}

/// Sets `want`, reads it back until the front answers with it, and records it.
async fn apply(req: &StepRequest, service: &str, want: &[RegionWeight]) -> Result<(), StepError> {
    let traffic = provider(req)?.traffic();
    traffic.set_region_weights(service, want).await.map_err(provider_error)?;
    let mut cancel = req.cancel.clone();
    let mut tries = 0;
    loop {
        let front = traffic.describe_front(service).await.map_err(provider_error)?;
        let (have, healthy) = front.map(|f| (positive(&f.weights), f.healthy)).unwrap_or_default();
        // Read back, and every region given a share passes its health check (the front
        // sends nothing to one that does not).
        if have == positive(want) && have.iter().all(|w| healthy.contains(&w.region)) {
            break;
        }
        tries += 1;
        if tries > 40 {
            return Err(StepError::retryable(
                StepCode::ProviderError,
                format!(
                    "the traffic front of {service} reads back {} (healthy: {}) instead of {}",
                    shown(&have),
                    healthy.join(", "),
                    shown(want)
                ),
            ));
        }
        cancel.sleep(crate::deploy::POLL).await?;
    }
    let ledger = req.extensions.require::<Ledger>()?;
    let now = ledger.clock().now_ms();
    let recorded: BTreeMap<String, u32> = want.iter().map(|w| (w.region.clone(), w.weight)).collect();
    ledger
        .update::<ServiceState, _>(&skiff_state::keys::service_state(service), |cur| {
            let mut s = cur.cloned().unwrap_or_else(|| ServiceState::new(service));
            if s.region_weights == recorded {
                return Ok(skiff_state::Update::Keep);
            }
            s.region_weights = recorded.clone();
            s.updated_at_ms = now;
            Ok(skiff_state::Update::Write(s))
        })
        .await
        .map_err(ledger_error)?;
    Ok(())
}

pub(super) struct Traffic;

#[async_trait]
impl Step for Traffic {
    fn kind(&self) -> &str {
        "failover.traffic"
    }

    async fn plan(&self, _: &StepContext, req: &StepRequest) -> Result<StepPlan, StepError> {
        let p: ShiftParams = req.params_as()?;
        Ok(step_plan(
            format!(
                "send {}% of {}'s traffic to {} and {}% to {}; read the front back and record it",
                p.weight,
                p.service,
                p.to,
                100 - p.weight.min(100),
                p.from
            ),
            Safety::Reversible,
            if p.weight >= 50 { Risk::Medium } else { Risk::Low },
            1_000,
            vec![format!("traffic-front/{}", p.service)],
        ))
    }

    async fn run(&self, _: &StepContext, req: &StepRequest) -> Result<StepResult, StepError> {
        let p: ShiftParams = req.params_as()?;
        let front = provider(req)?.traffic().describe_front(&p.service).await.map_err(provider_error)?;
        let Some(front) = front else {
            return Err(StepError::terminal(
                StepCode::NotFound,
                format!("{} has no traffic front; deploy it again to make one", p.service),
            ));
        };
        let want = weights(&p, p.weight);
        // Resumed after the weights were set: the previous ones are the step before's.
        let previous = if positive(&front.weights) == positive(&want) {
            weights(&p, [0, 10, 50].into_iter().rfind(|w| *w < p.weight).unwrap_or(0))
        } else {
            front.weights
        };
        apply(req, &p.service, &want).await?;
        Ok(StepResult::new(
            format!("{}% of {}'s traffic on {}, read back", p.weight, p.service, p.to),
            json!(Shifted { previous, weights: want }),
        ))
    }

    async fn resume(&self, ctx: &StepContext, req: &StepRequest) -> Result<StepResult, StepError> {
        self.run(ctx, req).await
    }

    async fn compensate(
        &self,
        _: &StepContext,
        req: &StepRequest,
        result: &StepResult,
    ) -> Result<StepResult, StepError> {
        let p: ShiftParams = req.params_as()?;
        let shifted: Shifted = result.outputs_as()?;
        apply(req, &p.service, &shifted.previous).await?;
        Ok(StepResult::new(format!("traffic back to {}", shown(&shifted.previous)), json!({})))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shift_splits_between_the_two_regions_and_compares_without_zeros() {
        let p = ShiftParams { service: "web".into(), from: "us-east-1".into(), to: "us-west-2".into(), weight: 10 };
        assert_eq!(shown(&weights(&p, 10)), "us-east-1 90%, us-west-2 10%");
        assert_eq!(positive(&weights(&p, 100)), vec![RegionWeight { region: "us-west-2".into(), weight: 100 }]);
    }
}
