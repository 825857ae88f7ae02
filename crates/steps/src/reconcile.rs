//! Reconciliation: the ledger's desired state of a service (its current release, that
//! release's IR) against what the provider actually runs — the release's group and its
//! running instances, the load balancer's weights, groups of other releases left
//! running, the instance role's permissions, the secrets it reads (the versions Skiff
//! wrote), and the provider's security posture (extra policies, opened network rules,
//! a swapped launch, listener rules, the state bucket) — as `IN_SYNC` or `DRIFTED`
//! with field-level differences, each with a severity and its repair (a reversible
//! `fix` the `repair` saga runs, or a command), recorded in `services/<svc>/reconcile.json`.

use serde_json::json;
use skiff_pluginapi::{Fix, HealthState, Permission, PostureScope, Provider, RegionWeight, RoleSpec, Severity, Weight};
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
    Difference {
        path: path.to_owned(),
        desired,
        actual,
        repair: repair.to_owned(),
        severity: Severity::Medium,
        fix: None,
        terraform_owned: None,
    }
}

/// The logical id a difference's path is on, of those Terraform owns.
fn owned_for(path: &str, service: &str, owned: &[String]) -> Option<String> {
    let candidates: Vec<String> = match path.split('.').next().unwrap_or_default() {
        "identity" => vec![format!("role/{service}"), format!("policy/{service}")],
        "network" => vec![format!("lb-rule/{service}"), format!("launch-config/{service}")],
        "traffic" if path == "traffic.listener_rules" => vec![format!("lb-rule/{service}")],
        "secrets" => owned.iter().filter(|o| o.starts_with("secret-ref/")).cloned().collect(),
        _ => Vec::new(),
    };
    candidates.into_iter().find(|c| owned.contains(c))
}

/// Drift on what Terraform owns is Terraform's: no Skiff repair, `terraform plan` instead.
fn terraform_owned(differences: &mut [Difference], service: &str, owned: &[String]) {
    for d in differences {
        if let Some(id) = owned_for(&d.path, service, owned) {
            d.repair = format!("{id} is Terraform-owned: `terraform plan` shows the change; fix it in Terraform");
            d.fix = None;
            d.terraform_owned = Some(id);
        }
    }
}

/// The `fix` of a difference the repair saga applies itself (not through the provider's
/// posture): the role back to exactly Skiff's permissions.
pub const ENSURE_ROLE: &str = "ensure_role";

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
            let mut out = compare(provider, service, release, &ir).await?;
            out.extend(regions(provider, release, &ir, &state).await?);
            out.extend(secrets(ledger, provider, &ir).await?);
            out.extend(posture(ledger, provider, service, release, &ir).await?);
            let ownership: Option<skiff_state::docs::OwnershipDoc> =
                ledger.read(&skiff_state::keys::service_ownership(service)).await?;
            if let Some(o) = ownership {
                terraform_owned(&mut out, service, &o.terraform_owned());
            }
            out
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
    skiff_observability::metrics::count(
        skiff_observability::metrics::Counter::ReconcileVerdicts,
        &[("service", service), ("status", written.status.as_str())],
    );
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
            // A queue-scaled group's size is the autoscaler's to set, within the bounds.
            let desired = match &ir.capacity.queue {
                Some(_) => g.desired.clamp(ir.capacity.min, ir.capacity.max) as usize,
                None => ir.capacity.desired as usize,
            };
            if g.desired as usize != desired {
                out.push(diff("instances.desired", json!(desired), json!(g.desired), &redeploy));
            }
            if running != desired {
                out.push(diff("instances.running", json!(desired), json!(running), &redeploy));
            }
        }
    }
    let ours = crate::deploy::release_groups(ir, release);
    let others: Vec<String> = provider
        .compute()
        .list_groups(service)
        .await?
        .into_iter()
        .map(|g| g.name)
        .filter(|n| !ours.contains(n))
        .collect();
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
    let want: Vec<Permission> = skiff_compiler::permissions(ir)
        .into_iter()
        .map(|p| Permission { action: p.action, resource: p.resource })
        .collect();
    let spec = |permissions: &[Permission]| RoleSpec {
        name: role.clone(),
        service: service.to_owned(),
        permissions: permissions.to_vec(),
    };
    let restore = |actual: Option<&[Permission]>| Fix {
        description: format!("put role {role}'s permissions back to exactly Skiff's"),
        apply: json!({"kind": ENSURE_ROLE, "role": spec(&want)}),
        undo: actual.map_or(serde_json::Value::Null, |a| json!({"kind": ENSURE_ROLE, "role": spec(a)})),
    };
    match provider.identity().describe_role(&role).await {
        Ok(Some(r)) if r.permissions != want => {
            let mut d = diff("identity.permissions", json!(want), json!(r.permissions), &redeploy);
            d.severity = if r.permissions.iter().any(|p| p.action.contains('*') || p.resource == "*") {
                Severity::Critical
            } else {
                Severity::High
            };
            d.fix = Some(restore(Some(&r.permissions)));
            out.push(d);
        }
        Ok(None) => {
            let mut d = diff("identity.role", json!(role), json!(null), &redeploy);
            d.severity = Severity::High;
            out.push(d);
        }
        // A role Skiff cannot read back (edited by hand) is drift too; its policy is
        // rewritten by a fix whose undo cannot put the unreadable one back.
        Err(e) => {
            let mut d = diff("identity.permissions", json!(want), json!(e.message), &redeploy);
            d.severity = Severity::High;
            out.push(d);
        }
        Ok(Some(_)) => {}
    }
    for d in &mut out {
        if d.path == "traffic.weights" || d.path == "instances.group" {
            d.severity = d.severity.max(Severity::High);
        }
    }
    Ok(out)
}

/// Every region after the primary runs the release behind its own load balancer, and
/// the global front's weights are the ones the last failover recorded (all to the
/// region that writes before any).
async fn regions(
    provider: &dyn Provider,
    release: &str,
    ir: &skiff_ir::ServiceIr,
    state: &ServiceState,
) -> Result<Vec<Difference>, ReconcileError> {
    let mut out = Vec::new();
    let secondary = skiff_compiler::secondary_regions(ir);
    if secondary.is_empty() {
        return Ok(out);
    }
    let service = &ir.service;
    let reapply = format!("skiff rollback {service} --to {release} --yes");
    let group = group_name(service, release);
    for region in secondary {
        let regional = skiff_compiler::regional_name(&group, region);
        match provider.compute().describe_group(&regional).await? {
            None => out.push(diff(&format!("regions.{region}.group"), json!(regional), json!(null), &reapply)),
            Some(g) if g.running().len() != ir.capacity.desired as usize => out.push(diff(
                &format!("regions.{region}.running"),
                json!(ir.capacity.desired),
                json!(g.running().len()),
                "skiff deploy -f skiff.yaml --yes",
            )),
            Some(_) => {}
        }
        let lb = crate::deploy::regional_lb(ir, region);
        let want = vec![Weight { target_group: regional.clone(), weight: 100 }];
        let have: Vec<Weight> = match provider.traffic().weights(&lb).await {
            Ok(w) => w.into_iter().filter(|w| w.weight > 0).collect(),
            Err(e) if e.code == "NOT_FOUND" => Vec::new(),
            Err(e) => return Err(e.into()),
        };
        if have != want {
            out.push(diff(&format!("regions.{region}.weights"), json!(want), json!(have), &reapply));
        }
    }
    let writer = crate::failover::writer_region(ir, Some(state));
    let mut want: Vec<RegionWeight> = if state.region_weights.is_empty() {
        vec![RegionWeight { region: writer, weight: 100 }]
    } else {
        state.region_weights.iter().map(|(r, w)| RegionWeight { region: r.clone(), weight: *w }).collect()
    };
    want.retain(|w| w.weight > 0);
    want.sort();
    let mut have: Vec<RegionWeight> = match provider.traffic().describe_front(service).await? {
        Some(f) => f.weights.into_iter().filter(|w| w.weight > 0).collect(),
        None => Vec::new(),
    };
    have.sort();
    if have != want {
        let mut d = diff(
            "traffic.front",
            json!(want),
            json!(have),
            &format!(
                "put the front's weights back to the ones recorded ({service}'s last failover, else all to {})",
                want.first().map_or("", |w| w.region.as_str())
            ),
        );
        d.severity = d.severity.max(Severity::High);
        out.push(d);
    }
    Ok(out)
}

/// Secrets the service reads whose value is not the one Skiff last wrote.
async fn secrets(
    ledger: &Ledger,
    provider: &dyn Provider,
    ir: &skiff_ir::ServiceIr,
) -> Result<Vec<Difference>, ReconcileError> {
    let mut out = Vec::new();
    let mut refs: Vec<String> = ir.secrets.values().map(|r| r.to_string()).collect();
    refs.sort_unstable();
    refs.dedup();
    for reference in refs {
        let Some(name) = reference.strip_prefix("secret://").and_then(|r| r.split('/').next()) else { continue };
        if skiff_state::keys::check_name("secret", name).is_err() {
            continue;
        }
        let key = skiff_state::keys::secret_record(name);
        let Some(record) = ledger.read::<skiff_state::docs::SecretRecord>(&key).await? else { continue };
        let Some(written) = record.writes.get(&reference) else { continue };
        let actual = provider.secrets().version(&reference).await?;
        if actual.as_deref() == Some(written.version.as_str()) {
            continue;
        }
        let repair = if ir.database.as_ref().is_some_and(|d| reference == format!("secret://{}/url", d.name)) {
            format!(
                "if the change was not yours, `skiff rotate secret {name} --yes` issues a fresh login; if it was, record it with `skiff secrets set {reference}`"
            )
        } else {
            format!(
                "if the change was not yours, set the intended value with `skiff secrets set {reference}` and restart the consumers (`skiff repair incident {}`)",
                ir.service
            )
        };
        let mut d = diff(&format!("secrets.{reference}"), json!(written.version), json!(actual), &repair);
        d.severity = Severity::High;
        out.push(d);
    }
    Ok(out)
}

/// The provider's security posture of the service's resources, as differences.
async fn posture(
    ledger: &Ledger,
    provider: &dyn Provider,
    service: &str,
    release: &str,
    ir: &skiff_ir::ServiceIr,
) -> Result<Vec<Difference>, ReconcileError> {
    let Some(p) = provider.posture() else { return Ok(Vec::new()) };
    let group = group_name(service, release);
    let launch: Option<skiff_state::docs::GroupLaunch> =
        ledger.read(&skiff_state::keys::group_launch(service, &group)).await?;
    let mut target_groups: Vec<String> = ledger
        .store()
        .list(&skiff_state::keys::releases(service))
        .await
        .map_err(skiff_state::StateError::from)?
        .into_iter()
        .filter_map(|l| l.key.rsplit('/').next()?.strip_suffix(".json").map(|r| group_name(service, r)))
        .collect();
    target_groups.push(group.clone());
    // Every release's target group in every other region is Skiff's too.
    let regional: Vec<String> = skiff_compiler::secondary_regions(ir)
        .iter()
        .flat_map(|r| target_groups.iter().map(move |g| skiff_compiler::regional_name(g, r)))
        .collect();
    target_groups.extend(regional);
    target_groups.sort_unstable();
    target_groups.dedup();
    let scope = PostureScope {
        service: service.to_owned(),
        group: launch.map(|l| l.group),
        role: Some(skiff_compiler::role_name(ir)),
        target_groups,
        listener_port: ir.network.as_ref().map(|n| n.port),
        state: ledger.url(),
    };
    Ok(p.drift(&scope)
        .await?
        .into_iter()
        .map(|d| Difference {
            repair: d
                .repair
                .or_else(|| d.fix.as_ref().map(|f| format!("{} (`skiff reconcile {service} --repair`)", f.description)))
                .unwrap_or_else(|| format!("skiff doctor {service}")),
            path: d.path,
            desired: d.desired,
            actual: d.actual,
            severity: d.severity,
            fix: d.fix,
            terraform_owned: None,
        })
        .collect())
}
