//! Engine errors, each with its failure code.

use skiff_sdk::Code;
use skiff_state::StateError;

/// Why the engine could not do what was asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SagaError {
    /// The ledger failed.
    #[error(transparent)]
    State(#[from] StateError),
    /// The saga graph is malformed.
    #[error("saga `{saga}` is invalid: {why}")]
    InvalidGraph {
        /// The saga kind.
        saga: String,
        /// What is wrong.
        why: String,
    },
    /// No step of this kind is registered.
    #[error("no step kind `{kind}` is registered (step `{step}`)")]
    UnknownStepKind {
        /// The step id.
        step: String,
        /// The kind.
        kind: String,
    },
    /// No saga of this kind exists.
    #[error("no saga kind `{kind}`; known kinds: {known}")]
    UnknownSaga {
        /// The kind asked for.
        kind: String,
        /// Kinds that exist.
        known: String,
    },
    /// No such operation.
    #[error("no operation `{op}`")]
    NotFound {
        /// The operation id.
        op: String,
    },
    /// The action does not apply in the operation's status.
    #[error("cannot {action} operation `{op}`: it is {status}")]
    InvalidTransition {
        /// The operation.
        op: String,
        /// What was asked.
        action: &'static str,
        /// Its status.
        status: String,
    },
    /// The idempotency key was used before for a different request.
    #[error("idempotency key `{key}` was already used for a different request (operation `{op}`)")]
    IdempotencyConflict {
        /// The key.
        key: String,
        /// The existing operation.
        op: String,
    },
    /// Another live operation holds the scope (the service) this one needs.
    #[error("operation {op} is already working on {scope}")]
    ScopeHeld {
        /// The scope: the service.
        scope: String,
        /// The operation holding it.
        op: String,
        /// That operation's status.
        status: String,
    },
    /// A step's planning failed.
    #[error("planning step `{step}` failed: {message}")]
    PlanFailed {
        /// The step.
        step: String,
        /// Taxonomy code.
        code: skiff_sagaapi::StepCode,
        /// Message.
        message: String,
    },
}

impl SagaError {
    /// The failure code to answer with.
    pub fn code(&self) -> Code {
        match self {
            SagaError::State(e) => e.code(),
            SagaError::InvalidGraph { .. } | SagaError::UnknownStepKind { .. } => Code::Internal,
            SagaError::UnknownSaga { .. } | SagaError::NotFound { .. } => Code::NotFound,
            SagaError::InvalidTransition { .. } => Code::Conflict,
            SagaError::IdempotencyConflict { .. } => Code::AlreadyExists,
            SagaError::ScopeHeld { .. } => Code::LeaseHeld,
            SagaError::PlanFailed { code, .. } => taxonomy(*code),
        }
    }
}

/// The taxonomy code a step's failure code stands for: the exit code a front end
/// answers with when an operation ends on it.
pub fn taxonomy(code: skiff_sagaapi::StepCode) -> Code {
    use skiff_sagaapi::StepCode as S;
    match code {
        S::CanaryFailed => Code::CanaryFailed,
        S::AnalysisInconclusive => Code::AnalysisInconclusive,
        S::DeadlineExceeded => Code::DeadlineExceeded,
        S::Cancelled => Code::Cancelled,
        S::ApprovalRequired => Code::ApprovalRequired,
        S::NotFound => Code::NotFound,
        S::ProviderError => Code::ProviderError,
        S::SignatureInvalid => Code::SignatureInvalid,
        S::DigestMismatch => Code::DigestMismatch,
        S::StateUnavailable => Code::StateUnavailable,
        S::StateCorrupt => Code::StateCorrupt,
        S::Conflict => Code::Conflict,
        S::LeaseHeld => Code::LeaseHeld,
        S::SpecInvalid => Code::SpecInvalid,
        S::Internal => Code::Internal,
        S::PolicyDenied => Code::PolicyDenied,
        S::PluginFailed => Code::PluginFailed,
        _ => Code::OperationFailed,
    }
}

/// The step code for a taxonomy code (a ledger error inside a step, say).
pub fn step_code(code: Code) -> skiff_sagaapi::StepCode {
    use skiff_sagaapi::StepCode as S;
    match code {
        Code::CanaryFailed => S::CanaryFailed,
        Code::PolicyDenied => S::PolicyDenied,
        Code::AnalysisInconclusive => S::AnalysisInconclusive,
        Code::DeadlineExceeded => S::DeadlineExceeded,
        Code::Cancelled => S::Cancelled,
        Code::ApprovalRequired => S::ApprovalRequired,
        Code::NotFound => S::NotFound,
        Code::ProviderError => S::ProviderError,
        Code::SignatureInvalid => S::SignatureInvalid,
        Code::DigestMismatch => S::DigestMismatch,
        Code::StateUnavailable => S::StateUnavailable,
        Code::StateCorrupt => S::StateCorrupt,
        Code::Conflict => S::Conflict,
        Code::LeaseHeld => S::LeaseHeld,
        Code::SpecInvalid => S::SpecInvalid,
        Code::Internal => S::Internal,
        Code::PluginFailed => S::PluginFailed,
        _ => S::OperationFailed,
    }
}
