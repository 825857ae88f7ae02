//! `deploy` and `rollback`: rolling a release out through a provider, health-gated.
//!
//! A deploy provisions an instance group for the new release, registers it in a
//! target group and waits until every target is healthy, then shifts traffic in the
//! spec's canary steps. After each weight change it reads the weights and target
//! health back and advances only when they are in effect; each bake ends in an
//! analysis of the canary's error rate and p95 latency against the spec's thresholds
//! and the stable group's baseline. Too few requests is inconclusive and pauses the
//! operation; a failed analysis compensates back to stable. Promotion records the
//! new stable release; the old group is drained and retired only after that. A
//! rollback is the same graph towards an older release, with one 100% shift.

mod analyse;
mod common;
mod database;
mod front;
mod graph;
mod migrate;
mod promote;
mod provision;
mod register;
mod retire;
mod rollout;
mod shadow;
mod shift;

use skiff_saga::{Registry, SagaError};
use skiff_sagaapi::Safety;

pub use analyse::{Verdict, judge};
pub(crate) use common::{POLL, apply_weights, provider, provider_error};
pub use graph::{ShadowPlan, deploy_graph, rollback_graph, shadow_graph};
pub use provision::Provisioned;
pub use rollout::{
    FrontPlan, MigrationPlan, ReplicaPlan, Rollout, Stable, Thresholds, TrafficPlan, database_spec, group_name,
    group_spec, regional_lb, release_groups, replica_plans, rollout_for, thresholds,
};
pub use shadow::compare as mirror_comparison;

/// `deploy` in the catalog: planned from a spec and a release, so started by `skiff deploy`.
pub(crate) const DEPLOY_KIND: crate::SagaKind = crate::SagaKind {
    name: "deploy",
    description: "canary rollout of a new release (start it with `skiff deploy -f skiff.yaml`)",
    params: &[],
    build: |_| Err(needs_command("deploy", "skiff deploy -f skiff.yaml --yes")),
};

/// `rollback` in the catalog: planned from the ledger, so started by `skiff rollback`.
pub(crate) const ROLLBACK_KIND: crate::SagaKind = crate::SagaKind {
    name: "rollback",
    description: "move a service back to an earlier release (`skiff rollback SERVICE [--to previous-stable|RELEASE]`)",
    params: &[],
    build: |_| Err(needs_command("rollback", "skiff saga start rollback --service SERVICE --to previous-stable --yes")),
};

pub(crate) fn needs_command(saga: &str, command: &str) -> SagaError {
    SagaError::InvalidGraph {
        saga: saga.to_owned(),
        why: format!("its plan comes from the spec and the ledger; start it with `{command}`"),
    }
}

/// Which steps wait for approval: irreversible ones, except retiring the previous
/// group at the end of a deploy or rollback — routine, and `skiff rollback` re-creates
/// it. Any other irreversible step (and any step of other sagas) still needs approval.
#[derive(Clone, Copy, Debug, Default)]
pub struct RoutinePolicy;

impl skiff_saga::ApprovalPolicy for RoutinePolicy {
    fn needs_approval(&self, saga: &str, step: &skiff_saga::PlannedStep) -> bool {
        let routine = routine_retire(saga) && step.kind == "deploy.retire";
        step.safety == Safety::Irreversible && !routine
    }
}

/// Sagas whose `deploy.retire` is routine: it stops a group that no longer serves
/// (the previous release, or a replaced shadow).
fn routine_retire(saga: &str) -> bool {
    matches!(saga, "deploy" | "rollback" | "incident-repair" | "shadow-deploy")
}

/// The safety a deploy step declares in its plan, known before planning (for policy
/// checks), and whether [`RoutinePolicy`] exempts it from approval. A migration is
/// irreversible when it has no `down`.
pub fn declared_safety(saga: &str, kind: &str, params: &serde_json::Value) -> (Safety, bool) {
    match kind {
        "deploy.retire" => (Safety::Irreversible, routine_retire(saga)),
        "deploy.analyse" => (Safety::ReadOnly, false),
        "cutover.retire_old" => (Safety::Irreversible, false),
        "deploy.migrate" if params.get("down").is_none_or(serde_json::Value::is_null) => (Safety::Irreversible, false),
        "repair.fix" if params.pointer("/fix/undo").is_none_or(serde_json::Value::is_null) => {
            (Safety::Irreversible, false)
        }
        _ => (Safety::Reversible, false),
    }
}

/// The deploy step kinds.
pub(crate) fn register(r: Registry) -> Registry {
    r.with(database::EnsureDatabase)
        .with(database::EnsureReplica)
        .with(provision::Provision)
        .with(register::Register)
        .with(shift::Shift)
        .with(front::EnsureFront)
        .with(analyse::Analyse)
        .with(promote::Promote)
        .with(retire::Retire)
        .with(migrate::Migrate)
        .with(shadow::MirrorStep)
        .with(shadow::Record)
}
