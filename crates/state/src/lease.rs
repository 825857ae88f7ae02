//! Leases with expiry and monotonic fencing tokens. The token grows by one each time
//! the lease changes hands; documents written under a lease record the token
//! ([`Fenced`]) and refuse writers with an older one, so a holder that lost its lease
//! (paused, partitioned, expired) cannot overwrite its successor's work.
//!
//! Expiry compares wall clocks of different machines: keep clock skew well below the
//! lease's time to live.

use serde::{Deserialize, Serialize};
use skiff_clock::Utc;

use crate::cas::Update;
use crate::codec::CasDocument;
use crate::docs::Lease;
use crate::keys;
use crate::{Ledger, Result, StateError};

/// Proof of holding a lease.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseGuard {
    /// The scope.
    pub scope: String,
    /// The holder.
    pub holder: String,
    /// The fencing token.
    pub token: u64,
    /// When it lapses unless renewed.
    pub expires_at_ms: u64,
}

/// A document written only under a lease.
pub trait Fenced: CasDocument {
    /// The highest token that wrote it.
    fn fence(&self) -> u64;
    /// Records the writer's token.
    fn set_fence(&mut self, token: u64);
}

impl<D: Serialize + serde::de::DeserializeOwned> Fenced for crate::docs::OperationState<D> {
    fn fence(&self) -> u64 {
        self.fence
    }
    fn set_fence(&mut self, token: u64) {
        self.fence = token;
    }
}

fn held(l: &Lease) -> StateError {
    StateError::LeaseHeld {
        scope: l.scope.clone(),
        holder: l.holder.clone(),
        token: l.token,
        expires_at: Utc::from_ms(l.expires_at_ms).rfc3339(),
    }
}

impl Ledger {
    /// Takes the lease on `scope` for `ttl_ms`, or renews it if `holder` already has
    /// it. Fails with [`StateError::LeaseHeld`] while another holder's lease is live.
    pub async fn acquire_lease(&self, scope: &str, holder: &str, ttl_ms: u64) -> Result<LeaseGuard> {
        keys::check_name("lease scope", scope)?;
        let now = self.now();
        let mut took_over = false;
        let lease = self
            .update::<Lease, _>(&keys::lease(scope), |current| {
                took_over = current.is_some_and(|l| !l.released && l.expires_at_ms <= now && l.holder != holder);
                let fresh = |token: u64| Lease {
                    cas: Default::default(),
                    scope: scope.to_owned(),
                    holder: holder.to_owned(),
                    token,
                    acquired_at_ms: now,
                    expires_at_ms: now + ttl_ms,
                    released: false,
                };
                match current {
                    None => Ok(Update::Write(fresh(1))),
                    Some(l) if l.released || l.expires_at_ms <= now => Ok(Update::Write(fresh(l.token + 1))),
                    Some(l) if l.holder == holder => {
                        Ok(Update::Write(Lease { expires_at_ms: now + ttl_ms, ..l.clone() }))
                    }
                    Some(l) => Err(held(l)),
                }
            })
            .await?;
        if took_over {
            skiff_observability::metrics::count(skiff_observability::metrics::Counter::LeaseTakeovers, &[]);
        }
        Ok(LeaseGuard {
            scope: lease.scope,
            holder: lease.holder,
            token: lease.token,
            expires_at_ms: lease.expires_at_ms,
        })
    }

    /// Extends a held lease. Fails with [`StateError::Fenced`] if it changed hands.
    pub async fn renew_lease(&self, guard: &LeaseGuard, ttl_ms: u64) -> Result<LeaseGuard> {
        let now = self.now();
        let key = keys::lease(&guard.scope);
        let lease = self
            .update::<Lease, _>(&key, |current| match current {
                Some(l) if l.token == guard.token && l.holder == guard.holder && !l.released => {
                    Ok(Update::Write(Lease { expires_at_ms: now + ttl_ms, ..l.clone() }))
                }
                Some(l) => Err(StateError::Fenced { key: key.clone(), token: guard.token, current: l.token }),
                None => Err(StateError::NotFound { what: "lease", key: key.clone() }),
            })
            .await?;
        Ok(LeaseGuard { expires_at_ms: lease.expires_at_ms, ..guard.clone() })
    }

    /// Gives a lease up; a no-op if it already changed hands.
    pub async fn release_lease(&self, guard: &LeaseGuard) -> Result<()> {
        let now = self.now();
        let key = keys::lease(&guard.scope);
        let result = self
            .update::<Lease, _>(&key, |current| match current {
                Some(l) if l.token == guard.token && l.holder == guard.holder && !l.released => {
                    Ok(Update::Write(Lease { released: true, expires_at_ms: now, ..l.clone() }))
                }
                _ => Ok(Update::Keep),
            })
            .await;
        match result {
            Ok(_) | Err(StateError::NotFound { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// The lease on `scope`, if any.
    pub async fn lease(&self, scope: &str) -> Result<Option<Lease>> {
        keys::check_name("lease scope", scope)?;
        self.read(&keys::lease(scope)).await
    }

    /// Checks that `guard` still holds its lease.
    pub async fn check_lease(&self, guard: &LeaseGuard) -> Result<()> {
        let key = keys::lease(&guard.scope);
        match self.read::<Lease>(&key).await? {
            Some(l) if l.token == guard.token && l.holder == guard.holder && !l.released => Ok(()),
            Some(l) => Err(StateError::Fenced { key, token: guard.token, current: l.token }),
            None => Err(StateError::NotFound { what: "lease", key }),
        }
    }

    /// A compare-and-swap update allowed only to the current lease holder: the lease
    /// must still carry `guard`'s token, and the document must not have been written
    /// under a newer one. The document records the token.
    pub async fn fenced_update<T, F>(&self, key: &str, guard: &LeaseGuard, f: F) -> Result<T>
    where
        T: Fenced,
        F: FnMut(Option<&T>) -> Result<Update<T>>,
    {
        self.fenced_update_versioned(key, guard, f).await.map(|(doc, _)| doc)
    }

    /// [`Ledger::fenced_update`], also returning the version written.
    pub async fn fenced_update_versioned<T, F>(
        &self,
        key: &str,
        guard: &LeaseGuard,
        mut f: F,
    ) -> Result<(T, skiff_objstore::Version)>
    where
        T: Fenced,
        F: FnMut(Option<&T>) -> Result<Update<T>>,
    {
        self.check_lease(guard).await?;
        self.update_versioned::<T, _>(key, |current| {
            if let Some(doc) = current
                && doc.fence() > guard.token
            {
                return Err(StateError::Fenced { key: key.to_owned(), token: guard.token, current: doc.fence() });
            }
            Ok(match f(current)? {
                Update::Write(mut doc) => {
                    doc.set_fence(guard.token);
                    Update::Write(doc)
                }
                Update::Keep => Update::Keep,
            })
        })
        .await
    }
}
