//! Reconciliation: the ledger's desired state of a service (its current release, that
//! release's IR) against what the provider actually runs — the release's group and its
//! running instances, the load balancer's weights, groups of other releases left
//! running, the instance role's permissions — as `IN_SYNC` or `DRIFTED` with
//! field-level differences, recorded in `services/<svc>/reconcile.json`.

use serde_json::json;
use skiff_pluginapi::{HealthState, Provider, Weight};
use skiff_state::docs::{Difference, ReconcileDoc, ServiceState, SyncStatus};
use skiff_state::{Ledger, Update};

use crate::deploy::group_name;

/// Why a service could not be reconciled.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReconcileError {
    /// The ledger could not be read or written.
    #[error(transparent)]
    State(#[from] skiff_state::StateError),
    /// The provider could not be asked.
    #[error("the provider could not be asked: {0}")]
    Provider(#[from] skiff_pluginapi::ProviderError),
    /// Nothing was ever deployed.
    #[error("{0} has never been deployed")]
    NeverDeployed(String),
}

fn diff(path: &str, desired: serde_json::Value, actual: serde_json::Value, repair: &str) -> Difference {
    Difference { path: path.to_owned(), desired, actual, repair: repair.to_owned() }
}

/// Compares desired and actual state of `service` and records the verdict (unless an
/// operation is working on the service: then nothing is compared or written, and
/// `None` says so — a rollout in flight is not drift).
pub async fn reconcile(
    ledger: &Ledger,
    provider: &dyn Provider,
    service: &str,
    checked_by: &str,
) -> Result<Option<ReconcileDoc>, ReconcileError> {
    let state: ServiceState = ledger
        .read(&skiff_state::keys::service_state(service))
        .await?
        .ok_or_else(|| ReconcileError::NeverDeployed(service.to_owned()))?;
    if state.active_operation.is_some() {
        return Ok(None);
    }
    let differences = match (&state.current_release, &state.spec_digest) {
        (Some(release), Some(digest)) => {
            let ir = ledger.get_spec(digest).await?;
            compare(provider, service, release, &ir).await?
        }
        _ => Vec::new(),
    };
    let doc = ReconcileDoc {
        cas: Default::default(),
        service: service.to_owned(),
        release: state.current_release.clone(),
        status: if differences.is_empty() { SyncStatus::InSync } else { SyncStatus::Drifted },
        differences,
        checked_at_ms: ledger.clock().now_ms(),
        checked_by: checked_by.to_owned(),
    };
    let key = skiff_state::keys::service_reconcile(service);
    let written = ledger.update::<ReconcileDoc, _>(&key, |_| Ok(Update::Write(doc.clone()))).await?;
    Ok(Some(written))
}

async fn compare(
    provider: &dyn Provider,
    service: &str,
    release: &str,
    ir: &skiff_ir::ServiceIr,
) -> Result<Vec<Difference>, ReconcileError> {
    let mut out = Vec::new();
    let group = group_name(service, release);
    // Rolling back to the release re-creates a missing group and re-applies weights;
    // a new deploy replaces a group whose size or role drifted.
    let reapply = format!("skiff rollback {service} --to {release} --yes");
    let redeploy = "skiff deploy -f skiff.yaml --yes".to_owned();
    match provider.compute().describe_group(&group).await? {
        None => out.push(diff("instances.group", json!(group), json!(null), &reapply)),
        Some(g) => {
            let running = g.running().len();
            let desired = ir.capacity.desired as usize;
            if g.desired as usize != desired {
                out.push(diff("instances.desired", json!(desired), json!(g.desired), &redeploy));
            }
            if running != desired {
                out.push(diff("instances.running", json!(desired), json!(running), &redeploy));
            }
        }
    }
    let others: Vec<String> =
        provider.compute().list_groups(service).await?.into_iter().map(|g| g.name).filter(|n| *n != group).collect();
    if !others.is_empty() {
        out.push(diff(
            "instances.other_groups",
            json!([]),
            json!(others),
            "retire them: they belong to no release the ledger serves",
        ));
    }
    if ir.network.is_some() {
        let want = vec![Weight { target_group: group.clone(), weight: 100 }];
        let have: Vec<Weight> =
            provider.traffic().weights(service).await?.into_iter().filter(|w| w.weight > 0).collect();
        if have != want {
            out.push(diff("traffic.weights", json!(want), json!(have), &reapply));
        }
        if let Ok(health) = provider.traffic().target_health(&group).await {
            // Draining targets are leaving on purpose (a scale-down, a retirement), and
            // initial ones (a replacement just registered) are not judged yet.
            let health: Vec<_> = health
                .into_iter()
                .filter(|t| !matches!(t.state, HealthState::Draining | HealthState::Initial))
                .collect();
            let healthy = health.iter().filter(|t| t.state == HealthState::Healthy).count();
            if healthy < health.len() {
                out.push(diff(
                    "traffic.healthy_targets",
                    json!(health.len()),
                    json!(healthy),
                    &format!("skiff doctor {service}"),
                ));
            }
        }
    }
    let role = skiff_compiler::role_name(ir);
    let want: Vec<skiff_pluginapi::Permission> = skiff_compiler::permissions(ir)
        .into_iter()
        .map(|p| skiff_pluginapi::Permission { action: p.action, resource: p.resource })
        .collect();
    match provider.identity().describe_role(&role).await {
        Ok(Some(r)) if r.permissions != want => {
            out.push(diff("identity.permissions", json!(want), json!(r.permissions), &redeploy));
        }
        Ok(None) => out.push(diff("identity.role", json!(role), json!(null), &redeploy)),
        // A role Skiff cannot read back (edited by hand) is drift too.
        Err(e) => out.push(diff("identity.permissions", json!(want), json!(e.message), &redeploy)),
        Ok(Some(_)) => {}
    }
    Ok(out)
}
