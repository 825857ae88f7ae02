//! Helpers the deploy steps share (and `repair` uses): the provider and ledger of a
//! request, its parameters, provider errors, target health, and applying weights
//! with a read-back.

use std::sync::Arc;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde_json::json;
use skiff_pluginapi::{HealthState, Provider, ProviderError, TargetHealth, Weight};
use skiff_sagaapi::{StepCode, StepContext, StepError, StepRequest};
use skiff_state::Ledger;

/// How often waiting steps look again.
pub(crate) const POLL: Duration = Duration::from_millis(250);

pub(crate) fn provider(req: &StepRequest) -> Result<&Arc<dyn Provider>, StepError> {
    req.extensions.require::<Arc<dyn Provider>>()
}

pub(super) fn ledger(req: &StepRequest) -> Result<&Ledger, StepError> {
    req.extensions.require::<Ledger>()
}

pub(super) fn params<T: DeserializeOwned>(req: &StepRequest) -> Result<T, StepError> {
    req.params_as()
}

pub(crate) fn provider_error(e: ProviderError) -> StepError {
    let code = StepCode::from_name(&e.code, StepCode::ProviderError);
    if e.retryable { StepError::retryable(code, e.message) } else { StepError::terminal(code, e.message) }
}

pub(super) fn percent(rate: f64) -> String {
    format!("{:.1}%", rate * 100.0)
}

/// "new targets return 500 on /healthz" from a health reason such as "/healthz answered 500".
pub(super) fn health_fact(health: &[TargetHealth]) -> Option<String> {
    let reasons: Vec<&str> =
        health.iter().filter(|h| h.state == HealthState::Unhealthy).filter_map(|h| h.reason.as_deref()).collect();
    // An answered status says more than a transport error on one target, so it wins.
    if let Some((path, code)) = reasons.iter().find_map(|r| r.split_once(" answered ")) {
        return Some(format!("new targets return {code} on {path}"));
    }
    reasons.first().map(|r| format!("new targets fail their health check: {r}"))
}

pub(super) fn healthy_count(health: &[TargetHealth]) -> usize {
    health.iter().filter(|h| h.state == HealthState::Healthy).count()
}

pub(super) fn same_weights(a: &[Weight], b: &[Weight]) -> bool {
    let norm = |w: &[Weight]| {
        let mut v: Vec<(String, u32)> =
            w.iter().filter(|w| w.weight > 0).map(|w| (w.target_group.clone(), w.weight)).collect();
        v.sort();
        v
    };
    norm(a) == norm(b)
}

/// Sets weights, then reads weights and health back until both are in effect.
pub(crate) async fn apply_weights(
    ctx: &StepContext,
    req: &StepRequest,
    service: &str,
    weights: &[Weight],
    must_be_healthy: &[String],
) -> Result<(), StepError> {
    let traffic = provider(req)?.traffic();
    traffic.set_weights(service, weights).await.map_err(provider_error)?;
    let mut cancel = req.cancel.clone();
    loop {
        let read = traffic.weights(service).await.map_err(provider_error)?;
        let mut healthy = true;
        for tg in must_be_healthy {
            let h = traffic.target_health(tg).await.map_err(provider_error)?;
            if h.is_empty() || healthy_count(&h) < h.len() {
                healthy = false;
                if h.iter().any(|t| t.state == HealthState::Unhealthy) {
                    let mut e = StepError::terminal(StepCode::CanaryFailed, "new release failed readiness").fact(
                        format!("{}/{} targets of {tg} healthy after the weight change", healthy_count(&h), h.len()),
                    );
                    if let Some(f) = health_fact(&h) {
                        e = e.fact(f);
                    }
                    return Err(e);
                }
            }
        }
        if same_weights(&read, weights) && healthy {
            ctx.progress(
                &format!(
                    "weights in effect: {}",
                    read.iter().map(|w| format!("{} {}%", w.target_group, w.weight)).collect::<Vec<_>>().join(", ")
                ),
                json!({"weights": read}),
            )
            .await;
            return Ok(());
        }
        cancel.sleep(POLL).await?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unhealthy(reason: &str) -> TargetHealth {
        TargetHealth { id: reason.into(), state: HealthState::Unhealthy, reason: Some(reason.into()) }
    }

    #[test]
    fn an_answered_status_outranks_a_transport_error_in_the_health_fact() {
        let h = [unhealthy("connection closed before a response"), unhealthy("/healthz answered 500")];
        assert_eq!(health_fact(&h).as_deref(), Some("new targets return 500 on /healthz"));
        let h = [unhealthy("/healthz timed out")];
        assert_eq!(health_fact(&h).as_deref(), Some("new targets fail their health check: /healthz timed out"));
        assert_eq!(health_fact(&[]), None);
    }

    #[test]
    fn weights_compare_without_zero_entries_or_order() {
        let w = |t: &str, n| Weight { target_group: t.into(), weight: n };
        assert!(same_weights(&[w("a", 100), w("b", 0)], &[w("a", 100)]));
        assert!(same_weights(&[w("b", 5), w("a", 95)], &[w("a", 95), w("b", 5)]));
        assert!(!same_weights(&[w("a", 100)], &[w("a", 95), w("b", 5)]));
    }
}
