//! Bounded retries with full jitter for transient failures. A conditional write that
//! failed transiently and then hit a conflict is reported with `maybe_applied`, since
//! the first attempt may have landed with its response lost.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use skiff_clock::{Clock, Rng, SystemClock};

use crate::{Listed, Object, Result, Store, StoreError, Version};

/// How many times and how patiently to retry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, including the first.
    pub max_attempts: u32,
    /// Backoff cap of the first retry; doubles each retry.
    pub base: Duration,
    /// Largest backoff.
    pub max: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy { max_attempts: 6, base: Duration::from_millis(20), max: Duration::from_secs(1) }
    }
}

/// A store that retries transient failures of the store it wraps.
#[derive(Debug)]
pub struct Retrying {
    inner: Arc<dyn Store>,
    policy: RetryPolicy,
    rng: Mutex<Rng>,
    clock: Arc<dyn Clock>,
}

impl Retrying {
    /// Wraps `inner`; `rng` draws the jitter.
    pub fn new(inner: Arc<dyn Store>, policy: RetryPolicy, rng: Rng) -> Self {
        Retrying { inner, policy, rng: Mutex::new(rng), clock: Arc::new(SystemClock) }
    }

    /// Waits out backoffs on `clock` (default: the system clock).
    #[must_use]
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    fn backoff(&self, attempt: u32) -> Duration {
        let cap = self.policy.base.saturating_mul(1u32 << attempt.min(16)).min(self.policy.max);
        let cap_ms = u64::try_from(cap.as_millis()).unwrap_or(u64::MAX).max(1);
        let ms = self.rng.lock().unwrap_or_else(std::sync::PoisonError::into_inner).below(cap_ms + 1);
        Duration::from_millis(ms)
    }

    async fn run<T, F, Fut>(&self, write: bool, mut op: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let mut uncertain = false;
        let mut attempt = 1;
        loop {
            match op().await {
                Err(e) if e.is_transient() && attempt < self.policy.max_attempts => {
                    uncertain |= write;
                    skiff_observability::metrics::count(skiff_observability::metrics::Counter::StoreRetries, &[]);
                    self.clock.sleep(self.backoff(attempt)).await;
                    attempt += 1;
                }
                Err(StoreError::AlreadyExists { key, .. }) => {
                    return Err(StoreError::AlreadyExists { key, maybe_applied: uncertain });
                }
                Err(StoreError::PreconditionFailed { key, .. }) => {
                    return Err(StoreError::PreconditionFailed { key, maybe_applied: uncertain });
                }
                other => return other,
            }
        }
    }
}

#[async_trait]
impl Store for Retrying {
    async fn get(&self, key: &str) -> Result<Option<Object>> {
        self.run(false, || self.inner.get(key)).await
    }

    async fn put_create(&self, key: &str, bytes: Vec<u8>) -> Result<Version> {
        self.run(true, || self.inner.put_create(key, bytes.clone())).await
    }

    async fn put_if_match(&self, key: &str, bytes: Vec<u8>, expected: &Version) -> Result<Version> {
        self.run(true, || self.inner.put_if_match(key, bytes.clone(), expected)).await
    }

    async fn delete_if_match(&self, key: &str, expected: &Version) -> Result<()> {
        self.run(true, || self.inner.delete_if_match(key, expected)).await
    }

    async fn list(&self, prefix: &str) -> Result<Vec<Listed>> {
        self.run(false, || self.inner.list(prefix)).await
    }

    fn url(&self) -> String {
        self.inner.url()
    }
}
