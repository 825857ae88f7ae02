//! Reading, creating and compare-and-swap updating of typed documents.

use skiff_objstore::{StoreError, Version};

use crate::codec::{self, CasDocument, Document, RECENT_WRITES};
use crate::{Ledger, Result, StateError};

/// What an update function decides.
#[derive(Debug)]
pub enum Update<T> {
    /// Write this new document.
    Write(T),
    /// Leave the document as it is.
    Keep,
}

fn conflict(e: &StoreError) -> bool {
    matches!(e, StoreError::PreconditionFailed { .. } | StoreError::AlreadyExists { .. })
}

impl Ledger {
    /// Reads a document; `None` when absent.
    pub async fn read<T: Document>(&self, key: &str) -> Result<Option<T>> {
        Ok(self.read_versioned(key).await?.map(|(doc, _)| doc))
    }

    /// Every readable member document of `service` (runner heartbeats), by instance id;
    /// documents that fail to parse are skipped (`state verify` reports them).
    pub async fn members<D>(&self, service: &str) -> Result<Vec<crate::docs::Member<D>>>
    where
        crate::docs::Member<D>: Document,
    {
        let mut out = Vec::new();
        for l in self.store.list(&crate::keys::members(service)).await? {
            if let Ok(Some(m)) = self.read::<crate::docs::Member<D>>(&l.key).await {
                out.push(m);
            }
        }
        Ok(out)
    }

    /// Reads a document and its version.
    pub async fn read_versioned<T: Document>(&self, key: &str) -> Result<Option<(T, Version)>> {
        match self.store.get(key).await? {
            Some(obj) => Ok(Some((codec::decode(key, &obj.bytes)?, obj.version))),
            None => Ok(None),
        }
    }

    /// Creates an immutable document. Creating it again with identical content is a
    /// no-op (returns `false`); different content is [`StateError::AlreadyExists`].
    pub async fn create<T: Document>(&self, key: &str, doc: &T) -> Result<bool> {
        self.create_bytes(key, codec::encode(doc)).await
    }

    pub(crate) async fn create_bytes(&self, key: &str, bytes: Vec<u8>) -> Result<bool> {
        match self.store.put_create(key, bytes.clone()).await {
            Ok(_) => Ok(true),
            Err(StoreError::AlreadyExists { .. }) => {
                let existing = self.store.get(key).await?;
                if existing.is_some_and(|o| o.bytes == bytes) {
                    Ok(false)
                } else {
                    Err(StateError::AlreadyExists { key: key.to_owned() })
                }
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Read-modify-write with compare-and-swap. `f` sees the current document (or
    /// `None`) and decides; on a lost race it runs again on the fresh document, up to
    /// the ledger's attempt limit, then [`StateError::Conflict`]. Generation and write
    /// ids are stamped here. A write whose response was lost is recognized by its
    /// write id and not repeated.
    pub async fn update<T, F>(&self, key: &str, f: F) -> Result<T>
    where
        T: CasDocument,
        F: FnMut(Option<&T>) -> Result<Update<T>>,
    {
        self.update_versioned(key, f).await.map(|(doc, _)| doc)
    }

    /// [`Ledger::update`], also returning the version now stored.
    pub async fn update_versioned<T, F>(&self, key: &str, mut f: F) -> Result<(T, Version)>
    where
        T: CasDocument,
        F: FnMut(Option<&T>) -> Result<Update<T>>,
    {
        for attempt in 0..self.cas_attempts {
            let current = self.read_versioned::<T>(key).await?;
            let next = match f(current.as_ref().map(|(doc, _)| doc))? {
                Update::Keep => {
                    return current.ok_or_else(|| StateError::NotFound { what: "document", key: key.to_owned() });
                }
                Update::Write(doc) => doc,
            };
            match &current {
                Some((prev, version)) => {
                    if let Some(written) = self.replace_if_match(key, prev, version, next).await? {
                        return Ok(written);
                    }
                }
                None => {
                    if let Some(written) = self.create_cas(key, next).await? {
                        return Ok(written);
                    }
                }
            }
            skiff_observability::metrics::count(skiff_observability::metrics::Counter::CasConflicts, &[]);
            self.pause(attempt).await;
        }
        Err(StateError::Conflict { key: key.to_owned(), attempts: self.cas_attempts })
    }

    /// Writes `next` over `prev` (read at `version`) in one conditional put, stamping
    /// generation and write id. `None` when someone else wrote first.
    pub async fn replace_if_match<T: CasDocument>(
        &self,
        key: &str,
        prev: &T,
        version: &Version,
        mut next: T,
    ) -> Result<Option<(T, Version)>> {
        let write_id = self.stamp(&mut next, Some(prev));
        match self.store.put_if_match(key, codec::encode(&next), version).await {
            Ok(v) => Ok(Some((next, v))),
            Err(e) if conflict(&e) => self.landed(key, &write_id, e.maybe_applied()).await,
            Err(e) => Err(e.into()),
        }
    }

    async fn create_cas<T: CasDocument>(&self, key: &str, mut next: T) -> Result<Option<(T, Version)>> {
        let write_id = self.stamp(&mut next, None);
        match self.store.put_create(key, codec::encode(&next)).await {
            Ok(v) => Ok(Some((next, v))),
            Err(e) if conflict(&e) => self.landed(key, &write_id, e.maybe_applied()).await,
            Err(e) => Err(e.into()),
        }
    }

    /// After a conflict that may hide our own write, finds out whether it landed.
    async fn landed<T: CasDocument>(&self, key: &str, write_id: &str, maybe: bool) -> Result<Option<(T, Version)>> {
        if maybe
            && let Some((now, v)) = self.read_versioned::<T>(key).await?
            && now.cas().recent_writes.iter().any(|w| w == write_id)
        {
            return Ok(Some((now, v)));
        }
        Ok(None)
    }

    /// Sets generation and recent write ids from `prev`; returns this write's id.
    fn stamp<T: CasDocument>(&self, next: &mut T, prev: Option<&T>) -> String {
        let write_id = self.ids.id("w");
        let (generation, mut recent) =
            prev.map_or((0, Vec::new()), |p| (p.cas().generation, p.cas().recent_writes.clone()));
        recent.push(write_id.clone());
        if recent.len() > RECENT_WRITES {
            recent.drain(..recent.len() - RECENT_WRITES);
        }
        next.cas_mut().generation = generation + 1;
        next.cas_mut().recent_writes = recent;
        write_id
    }
}
