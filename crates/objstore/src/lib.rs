//! Object storage with compare-and-swap, the substrate of Skiff's ledger: `file://PATH`
//! (our own cross-process CAS: per-key lock, atomic rename, fsync), `s3://BUCKET/PREFIX`
//! (S3 conditional writes via `object_store`), and `memory://NAME` (tests).
//!
//! Every backend offers the same five operations with the same guarantees: get with a
//! version, create-only put, put-if-match, delete-if-match, and sorted listing by
//! prefix. [`open`] wraps the backend in bounded, jittered retries that report when a
//! conditional write *may* have applied before it failed ([`StoreError::maybe_applied`]).
#![warn(missing_docs)]

pub mod conformance;
mod fault;
mod file;
mod key;
mod memory;
mod retry;
mod s3;

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;

pub use fault::{Fault, FaultPlan, Faulty};
pub use file::FileStore;
pub use key::validate_key;
pub use memory::MemoryStore;
pub use retry::{RetryPolicy, Retrying};
pub use s3::{S3Settings, S3Store};

/// An opaque version of a stored object (an ETag). Two reads of an unchanged object
/// give the same version.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Version(pub String);

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An object's bytes and version.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Object {
    /// The content.
    pub bytes: Vec<u8>,
    /// The version the content was read at.
    pub version: Version,
}

/// One listed key.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Listed {
    /// The key.
    pub key: String,
    /// Its size in bytes.
    pub size: u64,
}

/// Why an operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// A create-only put found the key taken.
    #[error("object already exists: key=`{key}`")]
    AlreadyExists {
        /// The key.
        key: String,
        /// An earlier attempt of this call failed in a way that may have written it.
        maybe_applied: bool,
    },
    /// A conditional put or delete found a different version (or no object).
    #[error("object changed since it was read: key=`{key}`")]
    PreconditionFailed {
        /// The key.
        key: String,
        /// An earlier attempt of this call failed in a way that may have applied it.
        maybe_applied: bool,
    },
    /// A temporary failure; retrying may succeed.
    #[error("transient storage error: {message} key=`{key}`")]
    Transient {
        /// The key.
        key: String,
        /// What happened.
        message: String,
    },
    /// The bucket cannot be used: missing, unreachable, forbidden or misconfigured.
    #[error("storage unavailable: {message} url=`{url}`")]
    Unavailable {
        /// The bucket URL.
        url: String,
        /// What happened and what to check.
        message: String,
    },
    /// The key is not a valid object key.
    #[error("invalid object key: {why} key=`{key}`")]
    InvalidKey {
        /// The key.
        key: String,
        /// What is wrong with it.
        why: String,
    },
    /// The URL names no supported backend.
    #[error("unsupported bucket URL: {why} url=`{url}`")]
    BadUrl {
        /// The URL.
        url: String,
        /// What to write instead.
        why: String,
    },
}

impl StoreError {
    /// Whether retrying the same call may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, StoreError::Transient { .. })
    }

    /// Whether a failed conditional write may nevertheless have been applied by an
    /// earlier attempt whose response was lost. Callers resolve it by reading back.
    pub fn maybe_applied(&self) -> bool {
        matches!(
            self,
            StoreError::AlreadyExists { maybe_applied: true, .. }
                | StoreError::PreconditionFailed { maybe_applied: true, .. }
        )
    }
}

/// The result of a store operation.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Object storage with compare-and-swap. Keys are `/`-separated relative paths of
/// `[A-Za-z0-9._-]` segments.
#[async_trait]
pub trait Store: Send + Sync + fmt::Debug {
    /// Reads an object and its version; `None` when absent.
    async fn get(&self, key: &str) -> Result<Option<Object>>;
    /// Writes an object only if the key is free (`If-None-Match: *`).
    async fn put_create(&self, key: &str, bytes: Vec<u8>) -> Result<Version>;
    /// Replaces an object only if its version is still `expected` (`If-Match`).
    async fn put_if_match(&self, key: &str, bytes: Vec<u8>, expected: &Version) -> Result<Version>;
    /// Deletes an object only if its version is still `expected`.
    async fn delete_if_match(&self, key: &str, expected: &Version) -> Result<()>;
    /// Every key starting with `prefix`, sorted.
    async fn list(&self, prefix: &str) -> Result<Vec<Listed>>;
    /// The URL this store was opened from.
    fn url(&self) -> String;
}

/// Options for [`open`].
#[derive(Clone, Debug)]
pub struct OpenOptions {
    /// Retry policy for transient failures.
    pub retry: RetryPolicy,
    /// Seed for retry jitter; `None` seeds from the OS.
    pub seed: Option<u64>,
    /// How to reach S3, for `s3://` URLs.
    pub s3: S3Settings,
}

impl Default for OpenOptions {
    /// Default retries, OS-seeded jitter, S3 settings from the environment.
    fn default() -> Self {
        OpenOptions { retry: RetryPolicy::default(), seed: None, s3: S3Settings::from_env() }
    }
}

/// Opens a bucket by URL: `file://PATH`, `s3://BUCKET[/PREFIX]` or `memory://NAME`,
/// wrapped in retries. `memory://` stores of the same name share data within a process.
///
/// For `s3://`, credentials and region come from the standard `AWS_*` environment
/// variables; `AWS_ENDPOINT_URL` selects an S3-compatible endpoint (e.g. moto).
pub fn open(url: &str, options: &OpenOptions) -> Result<Arc<dyn Store>> {
    let rng = options.seed.map_or_else(skiff_clock::Rng::from_entropy, skiff_clock::Rng::seeded);
    let inner = open_raw(url, &options.s3)?;
    Ok(Arc::new(Retrying::new(inner, options.retry.clone(), rng)))
}

/// Opens a bucket without the retry wrapper.
pub fn open_raw(url: &str, s3: &S3Settings) -> Result<Arc<dyn Store>> {
    let bad = |why: &str| StoreError::BadUrl { url: url.to_owned(), why: why.to_owned() };
    if let Some(path) = url.strip_prefix("file://") {
        if path.is_empty() {
            return Err(bad("name a directory: file:///abs/path or file://relative/path"));
        }
        return Ok(Arc::new(FileStore::new(path)?));
    }
    if let Some(rest) = url.strip_prefix("s3://") {
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(bad("name a bucket: s3://BUCKET/PREFIX"));
        }
        return Ok(Arc::new(S3Store::new(bucket, prefix.trim_matches('/'), s3)?));
    }
    if let Some(name) = url.strip_prefix("memory://") {
        return Ok(Arc::new(MemoryStore::named(name)));
    }
    Err(bad("use file://PATH, s3://BUCKET/PREFIX or memory://NAME"))
}
