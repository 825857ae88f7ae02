//! `deploy.promote`: records the new stable release in the service's state;
//! compensation restores the previous one.

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::json;
use skiff_sagaapi::{Risk, Safety, Step, StepContext, StepError, StepPlan, StepRequest, StepResult};
use skiff_state::docs::ServiceState;

use super::common::{ledger, params};

#[derive(Deserialize)]
struct PromoteParams {
    service: String,
    release: String,
    spec_digest: String,
    /// What was stable before, restored by compensation.
    previous: Option<String>,
    previous_spec: Option<String>,
    /// The release was the shadow release (a traffic cutover): compensation makes it
    /// the shadow again.
    #[serde(default)]
    shadow: bool,
}

pub(super) struct Promote;

async fn set_stable(
    req: &StepRequest,
    service: &str,
    release: Option<&String>,
    spec: Option<&String>,
    shadow: Option<&String>,
    now: u64,
) -> Result<(), StepError> {
    let key = skiff_state::keys::service_state(service);
    ledger(req)?
        .update::<ServiceState, _>(&key, |cur| {
            let mut s = cur.cloned().unwrap_or_else(|| ServiceState::new(service));
            if s.stable_release.as_ref() != release {
                s.previous_stable = s.stable_release.clone();
            }
            s.current_release = release.cloned();
            s.stable_release = release.cloned();
            s.candidate_release = None;
            if s.shadow_release.is_some() && s.shadow_release.as_ref() == release {
                s.shadow_release = None;
            }
            if shadow.is_some() {
                s.shadow_release = shadow.cloned();
            }
            if let Some(d) = spec {
                s.spec_digest = Some(d.clone());
            }
            s.updated_at_ms = now;
            Ok(skiff_state::Update::Write(s))
        })
        .await
        .map_err(crate::ledger_error)?;
    Ok(())
}

#[async_trait]
impl Step for Promote {
    fn kind(&self) -> &str {
        "deploy.promote"
    }

    async fn plan(&self, _: &StepContext, req: &StepRequest) -> Result<StepPlan, StepError> {
        let p: PromoteParams = params(req)?;
        Ok(StepPlan {
            description: format!("record {} as the stable release of {}", p.release, p.service),
            safety: Safety::Reversible,
            risk: Risk::None,
            expected_duration_ms: 50,
            affected_resources: vec![format!("services/{}/state.json", p.service)],
        })
    }

    async fn run(&self, ctx: &StepContext, req: &StepRequest) -> Result<StepResult, StepError> {
        let p: PromoteParams = params(req)?;
        set_stable(req, &p.service, Some(&p.release), Some(&p.spec_digest), None, ctx.now_ms()).await?;
        Ok(StepResult::new(format!("{} is the stable release", p.release), json!({"stable": p.release})))
    }

    async fn resume(&self, ctx: &StepContext, req: &StepRequest) -> Result<StepResult, StepError> {
        self.run(ctx, req).await
    }

    async fn compensate(&self, ctx: &StepContext, req: &StepRequest, _: &StepResult) -> Result<StepResult, StepError> {
        let p: PromoteParams = params(req)?;
        let shadow = p.shadow.then_some(&p.release);
        set_stable(req, &p.service, p.previous.as_ref(), p.previous_spec.as_ref(), shadow, ctx.now_ms()).await?;
        Ok(StepResult::new(format!("stable release back to {}", p.previous.as_deref().unwrap_or("none")), json!({})))
    }
}
