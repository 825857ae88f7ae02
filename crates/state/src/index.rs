//! The in-memory index: services, releases, operations and members, rebuilt from the
//! bucket by one listing plus the documents it needs. It is a cache: drop it at any
//! time and rebuild.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::docs::{Member, MemberHealth, OpStatus, OperationIntent, OperationState, ServiceState};
use crate::keys::{self, KeyKind};
use crate::{Ledger, Result};

/// A service as the index sees it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ServiceEntry {
    /// Release taking traffic.
    pub current_release: Option<String>,
    /// Last healthy release.
    pub stable_release: Option<String>,
    /// Release being rolled out.
    pub candidate_release: Option<String>,
    /// Desired IR digest.
    pub spec_digest: Option<String>,
    /// Operation working on it.
    pub active_operation: Option<String>,
    /// Document generation.
    pub generation: u64,
}

/// An operation as the index sees it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct OperationEntry {
    /// Saga kind.
    pub saga: Option<String>,
    /// Service.
    pub service: Option<String>,
    /// Status, when the state document exists.
    pub status: Option<OpStatus>,
    /// Events in its log.
    pub events: u64,
    /// Highest event sequence number.
    pub last_seq: u64,
    /// Last state change.
    pub updated_at_ms: Option<u64>,
}

/// A member as the index sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct MemberEntry {
    /// Release it runs.
    pub release: String,
    /// Health.
    pub health: MemberHealth,
    /// Last heartbeat.
    pub updated_at_ms: u64,
}

/// Everything the index knows.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Index {
    /// Services by name.
    pub services: BTreeMap<String, ServiceEntry>,
    /// Release ids by service, ascending.
    pub releases: BTreeMap<String, Vec<String>>,
    /// Operations by id.
    pub operations: BTreeMap<String, OperationEntry>,
    /// Members by service, then instance.
    pub members: BTreeMap<String, BTreeMap<String, MemberEntry>>,
    /// Objects listed.
    pub objects: u64,
    /// Events counted.
    pub events: u64,
}

impl Ledger {
    /// Rebuilds the index from the bucket.
    pub async fn rebuild_index(&self) -> Result<Index> {
        let mut index = Index::default();
        for listed in self.store.list(keys::ROOT).await? {
            index.objects += 1;
            match keys::classify(&listed.key) {
                KeyKind::ServiceState { service } => {
                    if let Some(s) = self.read::<ServiceState>(&listed.key).await? {
                        index.services.insert(
                            service,
                            ServiceEntry {
                                current_release: s.current_release,
                                stable_release: s.stable_release,
                                candidate_release: s.candidate_release,
                                spec_digest: s.spec_digest,
                                active_operation: s.active_operation,
                                generation: s.cas.generation,
                            },
                        );
                    }
                }
                KeyKind::Release { service, release } => index.releases.entry(service).or_default().push(release),
                KeyKind::OpIntent { op } => {
                    if let Some(i) = self.read::<OperationIntent>(&listed.key).await? {
                        let e = index.operations.entry(op).or_default();
                        e.saga = Some(i.saga);
                        e.service = i.service;
                    }
                }
                KeyKind::OpState { op } => {
                    if let Some(s) = self.read::<OperationState>(&listed.key).await? {
                        let e = index.operations.entry(op).or_default();
                        e.saga = Some(s.saga);
                        e.service = s.service;
                        e.status = Some(s.status);
                        e.updated_at_ms = Some(s.updated_at_ms);
                    }
                }
                KeyKind::OpEvent { op, seq } => {
                    index.events += 1;
                    let e = index.operations.entry(op).or_default();
                    e.events += 1;
                    e.last_seq = e.last_seq.max(seq);
                }
                KeyKind::Member { service, instance } => {
                    if let Some(m) = self.read::<Member>(&listed.key).await? {
                        index.members.entry(service).or_default().insert(
                            instance,
                            MemberEntry { release: m.release, health: m.health, updated_at_ms: m.updated_at_ms },
                        );
                    }
                }
                _ => {}
            }
        }
        for releases in index.releases.values_mut() {
            releases.sort();
        }
        Ok(index)
    }
}
