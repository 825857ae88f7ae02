//! Step kinds and the catalog of saga kinds: what `skiff saga start KIND` can run.
//! Each saga kind turns its parameters into a step graph; [`registry`] provides the
//! step implementations the graphs name.
#![warn(missing_docs)]

pub mod consumers;
pub mod cutover;
pub mod database;
pub mod deploy;
pub mod failover;
pub mod incident;
pub mod intent;
pub mod reconcile;
pub mod rekey;
pub mod repair;
pub mod restore;
pub mod retire;
pub mod rotate;
mod selftest;
pub mod terraform;

use std::collections::BTreeMap;

use skiff_saga::{Registry, SagaError, SagaGraph};

/// Parameters given to a saga kind (`--param KEY=VALUE`).
pub type Params = BTreeMap<String, String>;

/// A saga kind in the catalog.
#[derive(Clone, Copy, Debug)]
pub struct SagaKind {
    /// Its name, as in `skiff saga start NAME`.
    pub name: &'static str,
    /// One line for `skiff saga start --help` and listings.
    pub description: &'static str,
    /// The parameters it takes, with their meaning.
    pub params: &'static [(&'static str, &'static str)],
    /// Builds the step graph.
    pub build: fn(&Params) -> Result<SagaGraph, SagaError>,
}

/// Every saga kind Skiff can run.
pub fn catalog() -> Vec<SagaKind> {
    vec![
        deploy::DEPLOY_KIND,
        deploy::ROLLBACK_KIND,
        database::BACKUP_KIND,
        restore::KIND,
        retire::KIND,
        rotate::KIND,
        rekey::KIND,
        repair::KIND,
        cutover::KIND,
        failover::KIND,
        terraform::KIND,
        incident::KIND,
        intent::KIND,
        selftest::KIND,
    ]
}

/// The saga kind called `name`.
pub fn saga(name: &str) -> Result<SagaKind, SagaError> {
    catalog().into_iter().find(|k| k.name == name).ok_or_else(|| SagaError::UnknownSaga {
        kind: name.to_owned(),
        known: catalog().iter().map(|k| k.name).collect::<Vec<_>>().join(", "),
    })
}

/// Every step kind, ready for an engine.
pub fn registry() -> Registry {
    let r = selftest::register(Registry::new());
    let r = intent::register(repair::register(deploy::register(database::register(r))));
    failover::register(terraform::register(cutover::register(incident::register(retire::register(rekey::register(
        rotate::register(restore::register(r)),
    ))))))
}

/// What a step will do, as its `plan` answers it.
pub(crate) fn step_plan(
    description: String,
    safety: skiff_sagaapi::Safety,
    risk: skiff_sagaapi::Risk,
    expected_duration_ms: u64,
    affected_resources: Vec<String>,
) -> skiff_sagaapi::StepPlan {
    skiff_sagaapi::StepPlan { description, safety, risk, expected_duration_ms, affected_resources }
}

/// Ledger trouble that may pass (unreachable bucket, contention) is retryable; the rest is final.
pub(crate) fn ledger_error(e: skiff_state::StateError) -> skiff_sagaapi::StepError {
    use skiff_state::StateError;
    let code = skiff_saga::step_code(e.code());
    match e {
        StateError::Unavailable { .. } | StateError::Conflict { .. } => {
            skiff_sagaapi::StepError::retryable(code, e.to_string())
        }
        other => skiff_sagaapi::StepError::terminal(code, other.to_string()),
    }
}

/// Records the version of `reference` Skiff just wrote (read back from the provider),
/// so reconcile can tell a later change made behind Skiff's back.
pub(crate) async fn record_secret(
    req: &skiff_sagaapi::StepRequest,
    reference: &str,
) -> Result<(), skiff_sagaapi::StepError> {
    let provider = deploy::provider(req)?;
    let Some(version) = provider.secrets().version(reference).await.map_err(deploy::provider_error)? else {
        return Ok(());
    };
    let ledger = req.extensions.require::<skiff_state::Ledger>()?;
    ledger.record_secret_write(reference, &version, &req.op_id).await.map_err(ledger_error)
}

/// Rejects parameters a saga kind does not take.
pub fn check_params(kind: &SagaKind, params: &Params) -> Result<(), SagaError> {
    for name in params.keys() {
        if !kind.params.iter().any(|(p, _)| p == name) {
            return Err(SagaError::InvalidGraph {
                saga: kind.name.to_owned(),
                why: format!(
                    "unknown parameter `{name}`; it takes: {}",
                    kind.params.iter().map(|(p, _)| *p).collect::<Vec<_>>().join(", ")
                ),
            });
        }
    }
    Ok(())
}
