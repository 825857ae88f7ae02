//! Ledger errors: coarse, prescriptive kinds, each mapped to one failure code.

use skiff_objstore::StoreError;
use skiff_sdk::Code;

/// Why a ledger operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StateError {
    /// Other writers kept changing the document; bounded retries ran out.
    #[error("gave up after {attempts} attempts: other writers keep changing the document; run it again key=`{key}`")]
    Conflict {
        /// The contested key.
        key: String,
        /// Attempts made.
        attempts: u32,
    },
    /// Someone else holds the lease.
    #[error("lease `{scope}` is held by `{holder}` (token {token}) until {expires_at}")]
    LeaseHeld {
        /// The lease scope.
        scope: String,
        /// Who holds it.
        holder: String,
        /// Its fencing token.
        token: u64,
        /// When it expires (RFC 3339).
        expires_at: String,
    },
    /// A stale lease holder tried to write.
    #[error("fenced: lease token {token} is older than {current}; this holder lost the lease key=`{key}`")]
    Fenced {
        /// The document or lease key.
        key: String,
        /// The writer's token.
        token: u64,
        /// The newer token in force.
        current: u64,
    },
    /// A document or blob that should exist does not.
    #[error("{what} not found key=`{key}`")]
    NotFound {
        /// What was looked for.
        what: &'static str,
        /// Its key.
        key: String,
    },
    /// An immutable object exists with different content.
    #[error("an object with different content already exists key=`{key}`")]
    AlreadyExists {
        /// The key.
        key: String,
    },
    /// A stored document does not parse or has the wrong kind.
    #[error("corrupt document: {why} key=`{key}`")]
    Corrupt {
        /// The key.
        key: String,
        /// What is wrong.
        why: String,
    },
    /// Content does not match its digest.
    #[error("digest mismatch: expected sha256 {expected}, found {actual} key=`{key}`")]
    DigestMismatch {
        /// The key.
        key: String,
        /// The recorded digest.
        expected: String,
        /// The digest of what is stored.
        actual: String,
    },
    /// The bucket cannot be reached, read or written.
    #[error("state bucket unavailable: {message}")]
    Unavailable {
        /// What failed and what to check.
        message: String,
    },
    /// A name cannot be used in a key.
    #[error("invalid {what} `{value}`: {why}")]
    InvalidName {
        /// Which name.
        what: &'static str,
        /// The value.
        value: String,
        /// How to fix it.
        why: String,
    },
}

impl StateError {
    /// The failure code this error answers with.
    pub fn code(&self) -> Code {
        match self {
            StateError::Conflict { .. } => Code::Conflict,
            StateError::LeaseHeld { .. } | StateError::Fenced { .. } => Code::LeaseHeld,
            StateError::NotFound { .. } => Code::NotFound,
            StateError::AlreadyExists { .. } => Code::AlreadyExists,
            StateError::Corrupt { .. } => Code::StateCorrupt,
            StateError::DigestMismatch { .. } => Code::DigestMismatch,
            StateError::Unavailable { .. } => Code::StateUnavailable,
            StateError::InvalidName { .. } => Code::Usage,
        }
    }
}

impl From<StoreError> for StateError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::AlreadyExists { key, .. } => StateError::AlreadyExists { key },
            StoreError::PreconditionFailed { key, .. } => StateError::Conflict { key, attempts: 1 },
            StoreError::InvalidKey { key, why } => StateError::InvalidName { what: "key", value: key, why },
            other => StateError::Unavailable { message: other.to_string() },
        }
    }
}
