//! `deploy.shift`: moves a share of traffic to the canary and reads the weights and
//! its health back; compensation puts the previous weights back.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::json;
use skiff_pluginapi::Weight;
use skiff_sagaapi::{Risk, Safety, Step, StepContext, StepError, StepPlan, StepRequest, StepResult};

use super::common::{apply_weights, params, provider, provider_error, same_weights};

#[derive(Deserialize)]
struct ShiftParams {
    service: String,
    canary: String,
    stable: Option<String>,
    weight: u32,
}

#[derive(Serialize, Deserialize)]
struct Shifted {
    previous: Vec<Weight>,
    weights: Vec<Weight>,
}

fn weights_for(p: &ShiftParams) -> Vec<Weight> {
    let mut w = vec![Weight { target_group: p.canary.clone(), weight: p.weight }];
    if let Some(s) = &p.stable
        && s != &p.canary
    {
        w.push(Weight { target_group: s.clone(), weight: 100 - p.weight.min(100) });
    }
    w
}

pub(super) struct Shift;

#[async_trait]
impl Step for Shift {
    fn kind(&self) -> &str {
        "deploy.shift"
    }

    async fn plan(&self, _: &StepContext, req: &StepRequest) -> Result<StepPlan, StepError> {
        let p: ShiftParams = params(req)?;
        Ok(StepPlan {
            description: match &p.stable {
                Some(s) => format!(
                    "send {}% of traffic to {} and {}% to {s}; read both back",
                    p.weight,
                    p.canary,
                    100 - p.weight
                ),
                None => format!("send {}% of traffic to {}; read it back", p.weight, p.canary),
            },
            safety: Safety::Reversible,
            risk: if p.weight >= 50 { Risk::Medium } else { Risk::Low },
            expected_duration_ms: 500,
            affected_resources: vec![format!("load-balancer/{}", p.service)],
        })
    }

    async fn run(&self, ctx: &StepContext, req: &StepRequest) -> Result<StepResult, StepError> {
        let p: ShiftParams = params(req)?;
        let previous = provider(req)?.traffic().weights(&p.service).await.map_err(provider_error)?;
        let weights = weights_for(&p);
        if let Err(e) = apply_weights(ctx, req, &p.service, &weights, std::slice::from_ref(&p.canary)).await {
            if !e.is_retryable() {
                // A failed step is not compensated: put the weights back as they were.
                let _ = provider(req)?.traffic().set_weights(&p.service, &previous).await;
            }
            return Err(e);
        }
        Ok(StepResult::new(format!("{}% of traffic on {}", p.weight, p.canary), Shifted { previous, weights }))
    }

    async fn resume(&self, ctx: &StepContext, req: &StepRequest) -> Result<StepResult, StepError> {
        // The first attempt may have set the weights already: the previous ones are
        // those of the step before (or all on stable).
        let p: ShiftParams = params(req)?;
        let current = provider(req)?.traffic().weights(&p.service).await.map_err(provider_error)?;
        let weights = weights_for(&p);
        let previous = if same_weights(&current, &weights) {
            match &p.stable {
                Some(s) => vec![Weight { target_group: s.clone(), weight: 100 }],
                None => Vec::new(),
            }
        } else {
            current
        };
        apply_weights(ctx, req, &p.service, &weights, std::slice::from_ref(&p.canary)).await?;
        Ok(StepResult::new(format!("{}% of traffic on {}", p.weight, p.canary), Shifted { previous, weights }))
    }

    async fn compensate(
        &self,
        ctx: &StepContext,
        req: &StepRequest,
        result: &StepResult,
    ) -> Result<StepResult, StepError> {
        let p: ShiftParams = params(req)?;
        let shifted: Shifted = result.outputs_as()?;
        let back: Vec<String> = p.stable.iter().cloned().collect();
        let traffic = provider(req)?.traffic();
        if shifted.previous.is_empty() {
            traffic.set_weights(&p.service, &[]).await.map_err(provider_error)?;
        } else {
            apply_weights(ctx, req, &p.service, &shifted.previous, &back).await?;
        }
        let shown = shifted.previous.iter().map(|w| format!("{} {}%", w.target_group, w.weight)).collect::<Vec<_>>();
        Ok(StepResult::new(
            format!("weights back to {}", if shown.is_empty() { "none".to_owned() } else { shown.join(", ") }),
            json!({}),
        ))
    }
}
