//! Step kinds by name, and the approval policy.

use std::collections::BTreeMap;
use std::sync::Arc;

use skiff_sagaapi::{Safety, Step};

use crate::doc::PlannedStep;

/// The step kinds an engine can run.
#[derive(Clone, Default)]
pub struct Registry {
    steps: BTreeMap<String, Arc<dyn Step>>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.steps.keys()).finish()
    }
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers a step under its kind, replacing an earlier one.
    #[must_use]
    pub fn with(mut self, step: impl Step + 'static) -> Self {
        self.steps.insert(step.kind().to_owned(), Arc::new(step));
        self
    }

    /// Registers a shared step.
    pub fn insert(&mut self, step: Arc<dyn Step>) {
        self.steps.insert(step.kind().to_owned(), step);
    }

    /// The step of kind `kind`.
    pub fn get(&self, kind: &str) -> Option<&Arc<dyn Step>> {
        self.steps.get(kind)
    }

    /// Registered kinds.
    pub fn kinds(&self) -> impl Iterator<Item = &str> {
        self.steps.keys().map(String::as_str)
    }
}

/// Decides which planned steps wait for an approver.
pub trait ApprovalPolicy: Send + Sync + std::fmt::Debug {
    /// Whether `step` of saga `saga` needs approval.
    fn needs_approval(&self, saga: &str, step: &PlannedStep) -> bool;
}

/// The default: irreversible steps, and steps marked so, wait for approval.
#[derive(Clone, Copy, Debug, Default)]
pub struct IrreversibleNeedsApproval;

impl ApprovalPolicy for IrreversibleNeedsApproval {
    fn needs_approval(&self, _saga: &str, step: &PlannedStep) -> bool {
        step.safety == Safety::Irreversible
    }
}

/// Policy that allows irreversible steps without approval (only explicitly marked
/// steps wait). For environments whose policy says so.
#[derive(Clone, Copy, Debug, Default)]
pub struct AllowIrreversible;

impl ApprovalPolicy for AllowIrreversible {
    fn needs_approval(&self, _saga: &str, _step: &PlannedStep) -> bool {
        false
    }
}
