//! The consumers of a secret: the instances of the services that read it. Journeys that
//! change a secret restart them one at a time so each resolves it anew, and read their
//! heartbeats (the secret versions each runner reports) as evidence of what they use.

use serde::{Deserialize, Serialize};
use serde_json::json;
use skiff_pluginapi::{HealthState, Target};
use skiff_sagaapi::{StepContext, StepError, StepRequest};
use skiff_state::Ledger;
use skiff_state::docs::{Member, MemberHealth, RunnerDetail};

use crate::deploy::{POLL, provider, provider_error};
use crate::ledger_error;

/// A service that reads the secret, and the instance group serving it (with its size).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Consumer {
    /// The service.
    pub service: String,
    /// Its serving group and size, if a release serves.
    pub group: Option<(String, u32)>,
    /// The secret references it reads.
    #[serde(default)]
    pub references: Vec<String>,
}

/// `1 instance`, `2 instances`.
pub(crate) fn instances(n: usize) -> String {
    if n == 1 { "1 instance".to_owned() } else { format!("{n} instances") }
}

/// Restarts every instance of each `(group, size)` in turn ([`rolling_restart`]); the
/// number restarted.
pub(crate) async fn restart_groups(
    ctx: &StepContext,
    req: &StepRequest,
    groups: &[(String, u32)],
) -> Result<usize, StepError> {
    let mut restarted = 0;
    for (group, size) in groups {
        restarted += rolling_restart(ctx, req, group, *size, None).await?;
    }
    Ok(restarted)
}

/// The healthy targets of all `groups`, or a retryable error naming the first group
/// with fewer healthy targets than its size (`on`: what they should be healthy on).
pub(crate) async fn healthy_groups(req: &StepRequest, groups: &[(String, u32)], on: &str) -> Result<usize, StepError> {
    let mut total = 0;
    for (group, size) in groups {
        let health = provider(req)?.traffic().target_health(group).await.map_err(provider_error)?;
        let healthy = health.iter().filter(|t| t.state == HealthState::Healthy).count();
        if healthy < *size as usize {
            return Err(StepError::retryable(
                skiff_sagaapi::StepCode::OperationFailed,
                format!("{healthy} of {size} instances of {group} are healthy on {on}"),
            ));
        }
        total += healthy;
    }
    Ok(total)
}

/// Restarts the running instances of `group` (or only those named in `only`) one at a
/// time: each is terminated, its replacement joins the target group and is healthy
/// before the next goes. The number restarted.
pub(crate) async fn rolling_restart(
    ctx: &StepContext,
    req: &StepRequest,
    group: &str,
    size: u32,
    only: Option<&[String]>,
) -> Result<usize, StepError> {
    let prov = provider(req)?;
    let Some(g) = prov.compute().describe_group(group).await.map_err(provider_error)? else {
        return Ok(0);
    };
    let old: Vec<String> =
        g.running().iter().map(|i| i.id.clone()).filter(|id| only.is_none_or(|o| o.contains(id))).collect();
    for (n, id) in old.iter().enumerate() {
        ctx.progress(&format!("restarting {id} ({}/{})", n + 1, old.len()), json!({"instance": id})).await;
        prov.compute().terminate_instance(group, id).await.map_err(provider_error)?;
        wait_replaced(req, group, size, std::slice::from_ref(id)).await?;
    }
    Ok(old.len())
}

/// Waits until none of `gone` runs and `size` running instances of `group` are healthy
/// in its target group (registering replacements that are not in it yet, and
/// deregistering the gone ones that still are).
pub(crate) async fn wait_replaced(req: &StepRequest, group: &str, size: u32, gone: &[String]) -> Result<(), StepError> {
    let prov = provider(req)?;
    let mut cancel = req.cancel.clone();
    loop {
        let g = prov.compute().describe_group(group).await.map_err(provider_error)?;
        // A worker's instances have no port and no target group: their runners'
        // heartbeats say which are healthy.
        if let Some(g) = g.as_ref().filter(|g| g.running().iter().all(|i| i.port.is_none())) {
            let running: Vec<String> =
                g.running().iter().map(|i| i.id.clone()).filter(|id| !gone.contains(id)).collect();
            let mut healthy = 0;
            for id in &running {
                if member_health(req, &g.service, id).await? == Some(MemberHealth::Healthy) {
                    healthy += 1;
                }
            }
            if !g.running().iter().any(|i| gone.contains(&i.id)) && healthy >= size as usize {
                return Ok(());
            }
            cancel.sleep(POLL).await?;
            continue;
        }
        let running: Vec<Target> = g
            .map(|g| {
                g.running()
                    .iter()
                    .filter_map(|i| i.port.map(|port| Target { id: i.id.clone(), address: i.address.clone(), port }))
                    .collect()
            })
            .unwrap_or_default();
        let mut health = prov.traffic().target_health(group).await.unwrap_or_default();
        // A replacement joins the target group (an auto scaling group is not
        // attached to it on AWS; locally this is already so) and the old one leaves.
        let fresh: Vec<Target> = running.iter().filter(|t| !health.iter().any(|h| h.id == t.id)).cloned().collect();
        if !health.is_empty() && !fresh.is_empty() {
            prov.traffic().register(group, &fresh).await.map_err(provider_error)?;
            health = prov.traffic().target_health(group).await.unwrap_or_default();
        }
        let leaving: Vec<String> = gone
            .iter()
            .filter(|id| health.iter().any(|h| h.id == **id && h.state != HealthState::Draining))
            .cloned()
            .collect();
        if !leaving.is_empty() {
            prov.traffic().deregister(group, &leaving).await.map_err(provider_error)?;
        }
        let running: Vec<String> = running.into_iter().map(|t| t.id).collect();
        let healthy = health
            .iter()
            .filter(|t| t.state == HealthState::Healthy && running.contains(&t.id) && !gone.contains(&t.id))
            .count();
        if !gone.iter().any(|id| running.contains(id)) && healthy >= size as usize {
            return Ok(());
        }
        cancel.sleep(POLL).await?;
    }
}

/// What instance `id`'s runner last reported of its health, if it reported.
async fn member_health(req: &StepRequest, service: &str, id: &str) -> Result<Option<MemberHealth>, StepError> {
    let ledger = req.extensions.require::<Ledger>()?;
    let member =
        ledger.read::<Member<RunnerDetail>>(&skiff_state::keys::member(service, id)).await.map_err(ledger_error)?;
    Ok(member.map(|m| m.health))
}

/// The running instances of `group` whose runner does not report `version` of
/// `reference`, with what each reports instead (`none` when it reports nothing).
pub(crate) async fn stale(
    req: &StepRequest,
    service: &str,
    group: &str,
    reference: &str,
    version: &str,
) -> Result<Vec<(String, String)>, StepError> {
    let prov = provider(req)?;
    let ledger = req.extensions.require::<Ledger>()?;
    let Some(g) = prov.compute().describe_group(group).await.map_err(provider_error)? else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for i in g.running() {
        let key = skiff_state::keys::member(service, &i.id);
        let member = ledger.read::<Member<RunnerDetail>>(&key).await.map_err(ledger_error)?;
        let reported = member
            .filter(|m| m.health != MemberHealth::Stopped)
            .and_then(|m| m.detail.secrets.get(reference).cloned())
            .unwrap_or_else(|| "none".to_owned());
        if reported != version {
            out.push((i.id.clone(), reported));
        }
    }
    Ok(out)
}
