//! `deploy.analyse`: bakes at a weight, then judges the canary's error rate and p95
//! latency against the thresholds and the stable group's baseline.

use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::json;
use skiff_pluginapi::{HealthState, TrafficStats};
use skiff_sagaapi::{Risk, Safety, Step, StepCode, StepContext, StepError, StepPlan, StepRequest, StepResult};

use super::Thresholds;
use super::common::{health_fact, healthy_count, params, percent, provider, provider_error};

#[derive(Deserialize)]
struct AnalyseParams {
    canary: String,
    stable: Option<String>,
    weight: u32,
    bake_ms: u64,
    thresholds: Thresholds,
}

/// What a bake observed.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Verdict {
    /// Canary requests during the bake.
    pub requests: u64,
    /// Their error rate.
    pub error_rate: f64,
    /// Their p95 latency.
    pub p95_ms: Option<u64>,
    /// The stable group's requests, error rate and p95 over the same window.
    pub baseline: Option<(u64, f64, Option<u64>)>,
}

/// Judges a bake: `Ok` passes, `Err` explains the failure (or inconclusiveness).
pub fn judge(t: &Thresholds, canary: &TrafficStats, stable: Option<&TrafficStats>) -> Result<Verdict, StepError> {
    let verdict = Verdict {
        requests: canary.requests,
        error_rate: canary.error_rate(),
        p95_ms: canary.percentile_ms(0.95),
        baseline: stable.map(|s| (s.requests, s.error_rate(), s.percentile_ms(0.95))),
    };
    let floor = t.min_requests.max(1);
    // Errors beyond what the threshold allows over the larger of the minimum sample and
    // the requests seen: with fewer requests than the minimum, more traffic could not
    // bring the rate back under the threshold, so the verdict need not wait.
    let over_budget = canary.errors as f64 > t.max_error_rate * floor.max(canary.requests) as f64;
    if canary.requests < floor && !over_budget {
        return Err(StepError::hold(
            StepCode::AnalysisInconclusive,
            format!("{} canary requests during the bake; a verdict needs {floor}", canary.requests),
        )
        .fact("send traffic to the service, then resume the operation"));
    }
    let mut reasons = Vec::new();
    if over_budget {
        reasons.push(format!(
            "canary error rate {} over {} request{} exceeds {}",
            percent(verdict.error_rate),
            canary.requests,
            if canary.requests == 1 { "" } else { "s" },
            percent(t.max_error_rate)
        ));
    }
    if let Some(p95) = verdict.p95_ms
        && p95 > t.max_p95_ms
        && canary.requests >= floor
    {
        reasons.push(format!("canary p95 latency {p95} ms exceeds {} ms", t.max_p95_ms));
    }
    if let Some(s) = stable.filter(|s| s.requests >= t.min_requests.max(1)) {
        // The error threshold is absolute (a worse stable group does not excuse a
        // canary); latency is also judged against the stable group's, since the
        // same requests should not become much slower.
        if let (Some(cp), Some(sp)) = (verdict.p95_ms, s.percentile_ms(0.95))
            && cp > sp.saturating_mul(2).max(sp + 50)
        {
            reasons.push(format!("canary p95 {cp} ms is over twice the stable group's {sp} ms"));
        }
    }
    if reasons.is_empty() {
        return Ok(verdict);
    }
    let mut e = StepError::terminal(StepCode::CanaryFailed, "new release failed canary analysis");
    for r in reasons {
        e = e.fact(r);
    }
    Err(e)
}

/// Counts a verdict (`skiff_canary_verdicts_total{verdict}`) and passes it on.
fn counted(v: Result<Verdict, StepError>) -> Result<Verdict, StepError> {
    let verdict = match &v {
        Ok(_) => "pass",
        Err(e) if e.code == StepCode::AnalysisInconclusive => "inconclusive",
        Err(_) => "fail",
    };
    skiff_observability::metrics::count(skiff_observability::metrics::Counter::CanaryVerdicts, &[("verdict", verdict)]);
    v
}

/// How often a bake looks at the error count: the requests a failing release answers
/// before it is stopped are those of one interval (plus the compensation).
const ERROR_POLL: Duration = Duration::from_millis(100);

pub(super) struct Analyse;

#[async_trait]
impl Step for Analyse {
    fn kind(&self) -> &str {
        "deploy.analyse"
    }

    async fn plan(&self, _: &StepContext, req: &StepRequest) -> Result<StepPlan, StepError> {
        let p: AnalyseParams = params(req)?;
        Ok(StepPlan {
            description: format!(
                "bake {}s at {}%, then judge the canary: error rate ≤ {}, p95 ≤ {} ms, at least {} requests",
                p.bake_ms / 1000,
                p.weight,
                percent(p.thresholds.max_error_rate),
                p.thresholds.max_p95_ms,
                p.thresholds.min_requests
            ),
            safety: Safety::ReadOnly,
            risk: Risk::None,
            expected_duration_ms: p.bake_ms,
            affected_resources: vec![format!("target-group/{}", p.canary)],
        })
    }

    async fn run(&self, ctx: &StepContext, req: &StepRequest) -> Result<StepResult, StepError> {
        let p: AnalyseParams = params(req)?;
        let traffic = provider(req)?.traffic();
        let stats = |tg: String| async move { traffic.stats(&tg).await.map_err(provider_error) };
        let canary_start = stats(p.canary.clone()).await?;
        let stable_start = match &p.stable {
            Some(s) => Some(stats(s.clone()).await?),
            None => None,
        };
        let start = ctx.now_ms();
        let mut cancel = req.cancel.clone();
        let mut last_report = 0;
        loop {
            let elapsed = ctx.now_ms().saturating_sub(start);
            let health = traffic.target_health(&p.canary).await.map_err(provider_error)?;
            if health.iter().any(|t| t.state == HealthState::Unhealthy) {
                let mut e = StepError::terminal(StepCode::CanaryFailed, "new release failed readiness").fact(format!(
                    "{}/{} canary targets healthy during the bake",
                    healthy_count(&health),
                    health.len()
                ));
                if let Some(f) = health_fact(&health) {
                    e = e.fact(f);
                }
                return Err(e);
            }
            let seen = stats(p.canary.clone()).await?.since(&canary_start);
            let floor = p.thresholds.min_requests.max(1);
            if seen.errors as f64 > p.thresholds.max_error_rate * floor.max(seen.requests) as f64 {
                // Over the error budget already: stop now rather than at the end of the bake.
                return Err(counted(judge(&p.thresholds, &seen, None))
                    .err()
                    .unwrap_or_else(|| {
                        StepError::terminal(StepCode::CanaryFailed, "new release failed canary analysis")
                    })
                    .fact(format!("rollout stopped at {}%", p.weight)));
            }
            if elapsed >= last_report + 1_000 || elapsed >= p.bake_ms {
                last_report = elapsed;
                let p95 = seen.percentile_ms(0.95);
                ctx.progress(
                    &format!(
                        "{}% · {}/{} healthy · {} requests · errors {} · p95 {}",
                        p.weight,
                        healthy_count(&health),
                        health.len(),
                        seen.requests,
                        percent(seen.error_rate()),
                        p95.map_or_else(|| "-".to_owned(), |v| format!("{v} ms"))
                    ),
                    json!({"weight": p.weight, "healthy": healthy_count(&health), "targets": health.len(),
                           "requests": seen.requests, "error_rate": seen.error_rate(), "p95_ms": p95}),
                )
                .await;
            }
            if elapsed >= p.bake_ms {
                break;
            }
            cancel.sleep(ERROR_POLL.min(Duration::from_millis(p.bake_ms - elapsed))).await?;
        }
        let canary = stats(p.canary.clone()).await?.since(&canary_start);
        let stable = match (&p.stable, &stable_start) {
            (Some(s), Some(start)) => Some(stats(s.clone()).await?.since(start)),
            _ => None,
        };
        let v = counted(judge(&p.thresholds, &canary, stable.as_ref()))
            .map_err(|e| e.fact(format!("rollout stopped at {}%", p.weight)))?;
        Ok(StepResult::new(
            format!(
                "canary passed at {}%: {} requests, errors {}, p95 {}",
                p.weight,
                v.requests,
                percent(v.error_rate),
                v.p95_ms.map_or_else(|| "-".to_owned(), |x| format!("{x} ms"))
            ),
            v,
        ))
    }

    async fn resume(&self, ctx: &StepContext, req: &StepRequest) -> Result<StepResult, StepError> {
        self.run(ctx, req).await
    }

    async fn compensate(&self, _: &StepContext, _: &StepRequest, _: &StepResult) -> Result<StepResult, StepError> {
        Ok(StepResult::new("nothing to undo", json!({})))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use skiff_pluginapi::LATENCY_BUCKETS_MS;
    use skiff_sagaapi::ErrorClass;

    fn stats(requests: u64, errors: u64, latency_ms: u64) -> TrafficStats {
        let mut buckets = vec![0; LATENCY_BUCKETS_MS.len()];
        let i = LATENCY_BUCKETS_MS.iter().position(|b| latency_ms <= *b).unwrap();
        buckets[i] = requests;
        TrafficStats { requests, errors, latency_buckets: buckets }
    }

    const T: Thresholds = Thresholds { max_error_rate: 0.01, max_p95_ms: 250, min_requests: 20 };

    #[test]
    fn a_healthy_canary_passes() {
        let v = judge(&T, &stats(100, 0, 10), Some(&stats(1900, 1, 10))).unwrap();
        assert_eq!((v.requests, v.p95_ms), (100, Some(10)));
    }

    #[test]
    fn too_few_requests_hold_unless_the_error_budget_is_spent() {
        let e = judge(&T, &stats(8, 0, 10), None).unwrap_err();
        assert_eq!((e.class, e.code), (ErrorClass::Hold, StepCode::AnalysisInconclusive));
        let e = judge(&T, &stats(8, 1, 10), None).unwrap_err();
        assert_eq!((e.class, e.code), (ErrorClass::Terminal, StepCode::CanaryFailed));
    }

    #[test]
    fn thresholds_and_the_baseline_fail_a_canary() {
        let e = judge(&T, &stats(100, 5, 10), None).unwrap_err();
        assert!(e.facts[0].contains("error rate 5.0%"), "{e:?}");
        let e = judge(&T, &stats(100, 0, 300), None).unwrap_err();
        assert!(e.facts[0].contains("p95 latency 300 ms exceeds 250 ms"), "{e:?}");
        // Within the absolute limit, but far slower than stable.
        let e = judge(&T, &stats(100, 0, 200), Some(&stats(1000, 0, 20))).unwrap_err();
        assert!(e.facts.iter().any(|f| f.contains("over twice the stable group's")), "{e:?}");
    }
}
