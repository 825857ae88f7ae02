//! A shadow release (`skiff deploy --shadow`): it runs and is health-checked beside
//! the stable release but takes no user traffic. `deploy.mirror` optionally copies a
//! share of the live requests to it for a bake and reports how its answers compare
//! with the primary's; `deploy.shadow` records it as the service's shadow release,
//! which a traffic cutover (or the next shadow) takes from there.

use std::time::Duration;

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::json;
use skiff_pluginapi::{Mirror, MirrorReport};
use skiff_sagaapi::{Risk, Safety, Step, StepContext, StepError, StepPlan, StepRequest, StepResult};
use skiff_state::docs::ServiceState;

use super::common::{POLL, ledger, params, percent, provider, provider_error};

#[derive(Deserialize)]
struct MirrorParams {
    service: String,
    target_group: String,
    percent: u32,
    bake_ms: u64,
}

/// One line comparing the shadow's answers with the primary's.
pub fn compare(r: &MirrorReport) -> String {
    if r.mirrored == 0 {
        return format!(
            "no request was mirrored ({} skipped): nothing reached the load balancer, or no shadow target was healthy",
            r.skipped
        );
    }
    let p95 =
        |s: &skiff_pluginapi::TrafficStats| s.percentile_ms(0.95).map_or_else(|| "-".to_owned(), |v| format!("{v} ms"));
    format!(
        "{} requests mirrored ({} skipped): status differs on {} ({}); errors primary {} vs shadow {}; p95 primary {} vs shadow {}",
        r.mirrored,
        r.skipped,
        r.status_mismatches,
        percent(r.status_mismatches as f64 / r.mirrored as f64),
        percent(r.primary.error_rate()),
        percent(r.mirror.error_rate()),
        p95(&r.primary),
        p95(&r.mirror)
    )
}

pub(super) struct MirrorStep;

#[async_trait]
impl Step for MirrorStep {
    fn kind(&self) -> &str {
        "deploy.mirror"
    }

    async fn plan(&self, _: &StepContext, req: &StepRequest) -> Result<StepPlan, StepError> {
        let p: MirrorParams = params(req)?;
        Ok(StepPlan {
            description: format!(
                "copy {}% of the GET/HEAD requests to {} for {}s (answers discarded) and compare status and latency with the primary",
                p.percent,
                p.target_group,
                p.bake_ms / 1000
            ),
            safety: Safety::Reversible,
            risk: Risk::Low,
            expected_duration_ms: p.bake_ms,
            affected_resources: vec![
                format!("load-balancer/{}", p.service),
                format!("target-group/{}", p.target_group),
            ],
        })
    }

    async fn run(&self, ctx: &StepContext, req: &StepRequest) -> Result<StepResult, StepError> {
        let p: MirrorParams = params(req)?;
        let traffic = provider(req)?.traffic();
        let mirror = Mirror { target_group: p.target_group.clone(), percent: p.percent };
        traffic.set_mirror(&p.service, Some(&mirror)).await.map_err(provider_error)?;
        let start = ctx.now_ms();
        let mut cancel = req.cancel.clone();
        let mut last = 0;
        let outcome = async {
            loop {
                let elapsed = ctx.now_ms().saturating_sub(start);
                if elapsed >= last + 1_000 || elapsed >= p.bake_ms {
                    last = elapsed;
                    let r = traffic.mirror_report(&p.service).await.map_err(provider_error)?;
                    ctx.progress(&compare(&r), json!({"mirror": r})).await;
                }
                if elapsed >= p.bake_ms {
                    return traffic.mirror_report(&p.service).await.map_err(provider_error);
                }
                cancel.sleep(POLL.min(Duration::from_millis(p.bake_ms - elapsed))).await?;
            }
        }
        .await;
        // Mirroring stops with the step, whatever its outcome.
        let stopped = traffic.set_mirror(&p.service, None).await.map_err(provider_error);
        let report = outcome?;
        stopped?;
        Ok(StepResult::new(compare(&report), report))
    }

    async fn resume(&self, ctx: &StepContext, req: &StepRequest) -> Result<StepResult, StepError> {
        self.run(ctx, req).await
    }

    async fn compensate(&self, _: &StepContext, req: &StepRequest, _: &StepResult) -> Result<StepResult, StepError> {
        let p: MirrorParams = params(req)?;
        provider(req)?.traffic().set_mirror(&p.service, None).await.map_err(provider_error)?;
        Ok(StepResult::new("mirroring is off", json!({})))
    }
}

#[derive(Deserialize)]
struct RecordParams {
    service: String,
    release: String,
    /// The shadow release before, restored by compensation.
    previous: Option<String>,
}

async fn set_shadow(req: &StepRequest, service: &str, release: Option<&String>, now: u64) -> Result<(), StepError> {
    ledger(req)?
        .update::<ServiceState, _>(&skiff_state::keys::service_state(service), |cur| {
            let mut s = cur.cloned().unwrap_or_else(|| ServiceState::new(service));
            s.shadow_release = release.cloned();
            s.updated_at_ms = now;
            Ok(skiff_state::Update::Write(s))
        })
        .await
        .map_err(crate::ledger_error)?;
    Ok(())
}

pub(super) struct Record;

#[async_trait]
impl Step for Record {
    fn kind(&self) -> &str {
        "deploy.shadow"
    }

    async fn plan(&self, _: &StepContext, req: &StepRequest) -> Result<StepPlan, StepError> {
        let p: RecordParams = params(req)?;
        Ok(StepPlan {
            description: format!(
                "record {} as the shadow release of {} (no user traffic; `skiff saga start traffic-cutover` moves it)",
                p.release, p.service
            ),
            safety: Safety::Reversible,
            risk: Risk::None,
            expected_duration_ms: 50,
            affected_resources: vec![format!("services/{}/state.json", p.service)],
        })
    }

    async fn run(&self, ctx: &StepContext, req: &StepRequest) -> Result<StepResult, StepError> {
        let p: RecordParams = params(req)?;
        set_shadow(req, &p.service, Some(&p.release), ctx.now_ms()).await?;
        Ok(StepResult::new(
            format!("{} runs as the shadow release of {}, without user traffic", p.release, p.service),
            json!({"shadow": p.release}),
        ))
    }

    async fn resume(&self, ctx: &StepContext, req: &StepRequest) -> Result<StepResult, StepError> {
        self.run(ctx, req).await
    }

    async fn compensate(&self, ctx: &StepContext, req: &StepRequest, _: &StepResult) -> Result<StepResult, StepError> {
        let p: RecordParams = params(req)?;
        set_shadow(req, &p.service, p.previous.as_ref(), ctx.now_ms()).await?;
        Ok(StepResult::new(format!("shadow release back to {}", p.previous.as_deref().unwrap_or("none")), json!({})))
    }
}
