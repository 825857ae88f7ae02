//! The ledger in the state bucket (DESIGN §3): one module owns the key layout
//! ([`keys`]); typed documents carry `kind` + `schema_version` ([`codec`], [`docs`]);
//! [`Ledger`] offers compare-and-swap updates, gap-free event logs, fenced leases,
//! immutable audit entries, verified content-addressed blobs, an index rebuilt from
//! the bucket, and `verify`.
//!
//! The CAS scheme is `If-Match` on one key per document (not generation keys): one
//! GET per read, native on S3, and built by `skiff-objstore` for `file://`.
#![warn(missing_docs)]

mod audit;
mod blob;
mod cas;
pub mod codec;
pub mod docs;
mod error;
mod events;
mod index;
pub mod keys;
mod lease;
mod verify;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use skiff_clock::{Clock, IdGen, Rng};
use skiff_objstore::{OpenOptions, Store};

pub use cas::Update;
pub use codec::{Cas, CasDocument, Document};
pub use error::StateError;
pub use index::{Index, MemberEntry, OperationEntry, ServiceEntry};
pub use lease::{Fenced, LeaseGuard};
pub use verify::{Finding, VerifyReport};

/// The result of a ledger operation.
pub type Result<T, E = StateError> = std::result::Result<T, E>;

/// The ledger over one bucket.
#[derive(Debug, Clone)]
pub struct Ledger {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    ids: IdGen,
    rng: Arc<Mutex<Rng>>,
    next_seq: Arc<Mutex<HashMap<String, u64>>>,
    /// Events this process appended under caller-chosen ids, newest last, per operation.
    appended: Arc<Mutex<HashMap<String, std::collections::VecDeque<docs::Event>>>>,
    cas_attempts: u32,
}

impl Ledger {
    /// A ledger over `store`, taking time and ids from `ids` (and its clock).
    pub fn new(store: Arc<dyn Store>, ids: IdGen, rng: Rng) -> Self {
        Ledger {
            store,
            clock: ids.clock().clone(),
            ids,
            rng: Arc::new(Mutex::new(rng)),
            next_seq: Arc::default(),
            appended: Arc::default(),
            cas_attempts: 64,
        }
    }

    /// Opens the bucket at `url` with the system clock and OS randomness.
    pub fn open(url: &str, options: &OpenOptions) -> Result<Self> {
        let store = skiff_objstore::open(url, options).map_err(StateError::from)?;
        Ok(Self::new(store, IdGen::system(), Rng::from_entropy()))
    }

    /// The object store underneath.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// The bucket's URL.
    pub fn url(&self) -> String {
        self.store.url()
    }

    /// The clock the ledger stamps documents with.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// The id generator.
    pub fn ids(&self) -> &IdGen {
        &self.ids
    }

    /// Limits compare-and-swap retries (default 64).
    #[must_use]
    pub fn with_cas_attempts(mut self, attempts: u32) -> Self {
        self.cas_attempts = attempts.max(1);
        self
    }

    fn now(&self) -> u64 {
        self.clock.now_ms()
    }

    async fn pause(&self, attempt: u32) {
        let cap = 1u64 << attempt.min(6);
        let ms = self.rng.lock().unwrap_or_else(std::sync::PoisonError::into_inner).below(cap + 1);
        self.clock.sleep(std::time::Duration::from_millis(ms)).await;
    }

    /// The service's pointer document and the IR it records as desired, if any.
    pub async fn recorded(&self, service: &str) -> Result<Option<(docs::ServiceState, Option<skiff_ir::ServiceIr>)>> {
        keys::check_name("service", service)?;
        let Some(state) = self.read::<docs::ServiceState>(&keys::service_state(service)).await? else {
            return Ok(None);
        };
        let ir = match &state.spec_digest {
            Some(d) => Some(self.get_spec(d).await?),
            None => None,
        };
        Ok(Some((state, ir)))
    }

    /// Records that Skiff wrote `version` of `reference` (`secret://NAME/KEY`), so
    /// reconcile can tell a change made behind its back. References of another form
    /// are not recorded.
    pub async fn record_secret_write(&self, reference: &str, version: &str, by: &str) -> Result<()> {
        let Some(name) = reference.strip_prefix("secret://").and_then(|r| r.split('/').next()) else {
            return Ok(());
        };
        if keys::check_name("secret", name).is_err() {
            return Ok(());
        }
        let write = docs::SecretWrite { version: version.to_owned(), by: by.to_owned(), at_ms: self.now() };
        self.update::<docs::SecretRecord, _>(&keys::secret_record(name), |old| {
            let mut rec =
                old.cloned().unwrap_or_else(|| docs::SecretRecord { name: name.to_owned(), ..Default::default() });
            rec.writes.insert(reference.to_owned(), write.clone());
            Ok(Update::Write(rec))
        })
        .await
        .map(drop)
    }

    /// Whether the bucket has been initialized.
    pub async fn is_initialized(&self) -> Result<bool> {
        Ok(self.store.get(&keys::bucket()).await?.is_some())
    }

    /// Initializes the bucket (idempotent). Returns `false` if it already was.
    pub async fn init(&self, actor: &str) -> Result<bool> {
        let doc = docs::BucketDoc {
            layout: "v1".to_owned(),
            created_at: skiff_clock::Utc::from_ms(self.now()).rfc3339(),
            created_by: actor.to_owned(),
        };
        match self.store.put_create(&keys::bucket(), codec::encode(&doc)).await {
            Ok(_) => Ok(true),
            Err(skiff_objstore::StoreError::AlreadyExists { .. }) => {
                let existing = self
                    .store
                    .get(&keys::bucket())
                    .await?
                    .ok_or_else(|| StateError::NotFound { what: "bucket marker", key: keys::bucket() })?;
                codec::decode::<docs::BucketDoc>(&keys::bucket(), &existing.bytes)?;
                Ok(false)
            }
            Err(e) => Err(e.into()),
        }
    }
}
