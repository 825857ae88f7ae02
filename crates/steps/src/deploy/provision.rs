//! `deploy.provision`: starts the release's instance group (after its role and log
//! group) and waits until its instances run.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::json;
use skiff_pluginapi::{GroupSpec, RoleSpec, Target};
use skiff_sagaapi::{Risk, Safety, Step, StepCode, StepContext, StepError, StepPlan, StepRequest, StepResult};
use skiff_state::docs::{Member, MemberHealth, RunnerDetail};

use super::common::{POLL, ledger, params, provider, provider_error};

#[derive(Deserialize)]
struct ProvisionParams {
    group: GroupSpec,
    service: String,
    #[serde(default)]
    role: Option<RoleSpec>,
    #[serde(default)]
    log_group: Option<(String, u32)>,
    /// Logical ids Terraform owns (`skiff adopt terraform`): read, never changed.
    #[serde(default)]
    owned: Vec<String>,
}

impl ProvisionParams {
    fn owns(&self, kind: &str) -> bool {
        self.owned.iter().any(|o| o == &format!("{kind}/{}", self.service))
    }
}

/// What provisioning produced: the group and its running instances as targets.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Provisioned {
    /// The group.
    pub group: String,
    /// Its instances.
    pub targets: Vec<Target>,
}

pub(super) struct Provision;

impl Provision {
    /// Refusals recorded by runners of this group (bad signature or digest).
    async fn refusal(req: &StepRequest, service: &str, ids: &[String]) -> Option<StepError> {
        let ledger = ledger(req).ok()?;
        for id in ids {
            let key = skiff_state::keys::member(service, id);
            if let Ok(Some(m)) = ledger.read::<Member<RunnerDetail>>(&key).await
                && m.health == MemberHealth::Refused
            {
                // The runner names its refusal with a taxonomy code.
                let code = m
                    .detail
                    .code
                    .as_deref()
                    .map_or(StepCode::SignatureInvalid, |c| StepCode::from_name(c, StepCode::OperationFailed));
                let why = m.detail.reason.clone().unwrap_or_default();
                return Some(
                    StepError::terminal(code, format!("instance {id} refused the release: {why}"))
                        .fact("runners verify the signature and the artifact digest before starting anything"),
                );
            }
        }
        None
    }
}

#[async_trait]
impl Step for Provision {
    fn kind(&self) -> &str {
        "deploy.provision"
    }

    async fn plan(&self, _: &StepContext, req: &StepRequest) -> Result<StepPlan, StepError> {
        let p: ProvisionParams = params(req)?;
        Ok(StepPlan {
            description: format!(
                "start instance group {} ({} × {} in {}) for release {}{}",
                p.group.name,
                p.group.desired,
                p.group.launch.instance_type,
                p.group.zones.join(", "),
                p.group.release,
                if p.owned.is_empty() {
                    String::new()
                } else {
                    format!("; Terraform-owned, read only: {}", p.owned.join(", "))
                }
            ),
            safety: Safety::Reversible,
            risk: Risk::Low,
            expected_duration_ms: 5_000,
            affected_resources: vec![format!("instance-group/{}", p.group.name)],
        })
    }

    async fn run(&self, ctx: &StepContext, req: &StepRequest) -> Result<StepResult, StepError> {
        let p: ProvisionParams = params(req)?;
        let result = self.start(ctx, req, &p).await;
        if let Err(e) = &result
            && !e.is_retryable()
        {
            // A failed step is not compensated: remove what it started.
            let _ = provider(req)?.compute().delete_group(&p.group.name).await;
        }
        result
    }

    async fn resume(&self, ctx: &StepContext, req: &StepRequest) -> Result<StepResult, StepError> {
        self.run(ctx, req).await
    }

    async fn compensate(&self, _: &StepContext, req: &StepRequest, _: &StepResult) -> Result<StepResult, StepError> {
        let p: ProvisionParams = params(req)?;
        provider(req)?.compute().delete_group(&p.group.name).await.map_err(provider_error)?;
        Ok(StepResult::new(format!("stopped instance group {}", p.group.name), json!({})))
    }
}

impl Provision {
    async fn start(&self, ctx: &StepContext, req: &StepRequest, p: &ProvisionParams) -> Result<StepResult, StepError> {
        let prov = provider(req)?;
        if let Some(role) = &p.role {
            if p.owns("role") {
                // Terraform's: it must be there; Skiff does not touch it.
                // A policy Skiff did not write is Terraform's business: only existence counts.
                let found = match prov.identity().describe_role(&role.name).await {
                    Ok(r) => r.is_some(),
                    Err(e) if e.retryable => return Err(provider_error(e)),
                    Err(_) => true,
                };
                if !found {
                    return Err(StepError::terminal(
                        StepCode::NotFound,
                        format!("role {} is Terraform-owned and does not exist", role.name),
                    )
                    .fact("apply the Terraform module first (`terraform apply`), then deploy again"));
                }
            } else {
                prov.identity().ensure_role(role).await.map_err(provider_error)?;
            }
        }
        if let Some((name, days)) = p.log_group.as_ref().filter(|_| !p.owns("log-group")) {
            prov.logs().ensure_log_group(name, *days).await.map_err(provider_error)?;
        }
        let group = GroupSpec {
            operation: Some(req.op_id.clone()),
            trace: skiff_observability::current().map(|c| c.traceparent),
            ..p.group.clone()
        };
        prov.compute().create_group(&group).await.map_err(provider_error)?;
        // What the group was launched with, for reconcile's launch drift.
        let l = ledger(req)?;
        let launch = skiff_state::docs::GroupLaunch {
            cas: Default::default(),
            group: group.clone(),
            op_id: req.op_id.clone(),
            at_ms: l.clock().now_ms(),
        };
        l.update::<skiff_state::docs::GroupLaunch, _>(
            &skiff_state::keys::group_launch(&p.service, &p.group.name),
            |old| {
                Ok(match old {
                    Some(o) if o.group.launch == launch.group.launch => skiff_state::Update::Keep,
                    _ => skiff_state::Update::Write(launch.clone()),
                })
            },
        )
        .await
        .map_err(crate::ledger_error)?;
        let mut cancel = req.cancel.clone();
        let mut last = usize::MAX;
        loop {
            let g = prov.compute().describe_group(&p.group.name).await.map_err(provider_error)?.ok_or_else(|| {
                StepError::terminal(
                    StepCode::NotFound,
                    format!("instance group {} vanished while starting", p.group.name),
                )
            })?;
            let running: Vec<Target> = g
                .running()
                .iter()
                .filter_map(|i| i.port.map(|port| Target { id: i.id.clone(), address: i.address.clone(), port }))
                .collect();
            let count = if p.group.launch.port.is_some() { running.len() } else { g.running().len() };
            if count != last {
                ctx.progress(
                    &format!("{count}/{} instances running", p.group.desired),
                    json!({"running": count, "desired": p.group.desired}),
                )
                .await;
                last = count;
            }
            let ids: Vec<String> = g.instances.iter().map(|i| i.id.clone()).collect();
            if let Some(e) = Provision::refusal(req, &p.service, &ids).await {
                return Err(e);
            }
            if count >= p.group.desired as usize {
                let out = Provisioned { group: p.group.name.clone(), targets: running };
                return Ok(StepResult::new(format!("{count} instances of {} running", p.group.release), out));
            }
            cancel.sleep(POLL).await?;
        }
    }
}
