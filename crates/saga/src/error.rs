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
    /// A step's planning failed.
    #[error("planning step `{step}` failed: {message}")]
    PlanFailed {
        /// The step.
        step: String,
        /// Taxonomy code.
        code: String,
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
            SagaError::PlanFailed { code, .. } => code.parse().unwrap_or(Code::OperationFailed),
        }
    }
}
