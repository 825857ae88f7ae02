//! A fault-injecting store for tests: transient errors before an operation, added
//! latency, and the nastiest case, "write applied but response lost".

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use skiff_clock::{Clock, Rng, SystemClock};

use crate::{Listed, Object, Result, Store, StoreError, Version};

/// What happens to one operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Nothing: the operation runs normally.
    None,
    /// The operation fails transiently without running.
    Error,
    /// The operation runs after a delay.
    Latency(Duration),
    /// The operation runs, then fails transiently as if its response were lost.
    LostResponse,
}

/// Which faults to inject: a script consumed first, then seeded random draws.
#[derive(Debug, Clone)]
pub struct FaultPlan {
    script: VecDeque<Fault>,
    random: Option<(Rng, f64, f64, f64)>,
}

impl FaultPlan {
    /// No faults.
    pub fn none() -> Self {
        FaultPlan { script: VecDeque::new(), random: None }
    }

    /// Exactly these faults for the next operations, then none.
    pub fn scripted(faults: impl IntoIterator<Item = Fault>) -> Self {
        FaultPlan { script: faults.into_iter().collect(), random: None }
    }

    /// Random faults from `seed`: each operation fails with probability `error`, loses
    /// its response with probability `lost`, or is delayed up to 2 ms with `latency`.
    pub fn random(seed: u64, error: f64, lost: f64, latency: f64) -> Self {
        FaultPlan { script: VecDeque::new(), random: Some((Rng::seeded(seed), error, lost, latency)) }
    }

    fn next(&mut self) -> Fault {
        if let Some(f) = self.script.pop_front() {
            return f;
        }
        let Some((rng, error, lost, latency)) = &mut self.random else { return Fault::None };
        if rng.chance(*error) {
            Fault::Error
        } else if rng.chance(*lost) {
            Fault::LostResponse
        } else if rng.chance(*latency) {
            Fault::Latency(Duration::from_micros(rng.below(2000)))
        } else {
            Fault::None
        }
    }
}

/// A store that injects faults into the store it wraps.
#[derive(Debug)]
pub struct Faulty {
    inner: Arc<dyn Store>,
    plan: Mutex<FaultPlan>,
    injected: AtomicU64,
    clock: Arc<dyn Clock>,
}

impl Faulty {
    /// Wraps `inner` with `plan`.
    pub fn new(inner: Arc<dyn Store>, plan: FaultPlan) -> Self {
        Faulty { inner, plan: Mutex::new(plan), injected: AtomicU64::new(0), clock: Arc::new(SystemClock) }
    }

    /// Waits out injected latency on `clock` (default: the system clock).
    #[must_use]
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Replaces the plan (e.g. with [`FaultPlan::none`] to verify afterwards).
    pub fn set_plan(&self, plan: FaultPlan) {
        *self.plan.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = plan;
    }

    /// How many faults have been injected so far.
    pub fn injected(&self) -> u64 {
        self.injected.load(Ordering::Relaxed)
    }

    fn draw(&self) -> Fault {
        let f = self.plan.lock().unwrap_or_else(std::sync::PoisonError::into_inner).next();
        if f != Fault::None {
            self.injected.fetch_add(1, Ordering::Relaxed);
        }
        f
    }

    async fn apply<T>(&self, key: &str, op: impl std::future::Future<Output = Result<T>>) -> Result<T> {
        let transient =
            |what: &str| StoreError::Transient { key: key.to_owned(), message: format!("injected fault: {what}") };
        match self.draw() {
            Fault::None => op.await,
            Fault::Error => Err(transient("error before the operation")),
            Fault::Latency(d) => {
                self.clock.sleep(d).await;
                op.await
            }
            Fault::LostResponse => {
                let _ = op.await;
                Err(transient("operation applied, response lost"))
            }
        }
    }
}

#[async_trait]
impl Store for Faulty {
    async fn get(&self, key: &str) -> Result<Option<Object>> {
        self.apply(key, self.inner.get(key)).await
    }

    async fn put_create(&self, key: &str, bytes: Vec<u8>) -> Result<Version> {
        self.apply(key, self.inner.put_create(key, bytes)).await
    }

    async fn put_if_match(&self, key: &str, bytes: Vec<u8>, expected: &Version) -> Result<Version> {
        self.apply(key, self.inner.put_if_match(key, bytes, expected)).await
    }

    async fn delete_if_match(&self, key: &str, expected: &Version) -> Result<()> {
        self.apply(key, self.inner.delete_if_match(key, expected)).await
    }

    async fn list(&self, prefix: &str) -> Result<Vec<Listed>> {
        self.apply(prefix, self.inner.list(prefix)).await
    }

    fn url(&self) -> String {
        self.inner.url()
    }
}
