//! Gap-free, append-only event logs: event `n` is a create-only object, written only
//! after `n-1` exists. A lost race moves to the next number; an ambiguous write is
//! resolved by reading the slot back and comparing event ids, so an event is never
//! duplicated or skipped.

use serde_json::Value;
use skiff_objstore::StoreError;

use crate::docs::Event;
use crate::keys::{self, KeyKind};
use crate::{Ledger, Result, StateError, codec};

/// How many of the newest events an append checks for its own id when it cannot
/// trust its cached position (first append in this process, or after an error).
const TAIL_CHECK: u64 = 8;
/// Caller-id events remembered per operation, and operations remembered, per process.
const REMEMBERED_PER_OP: usize = 256;
const REMEMBERED_OPS: usize = 1024;

impl Ledger {
    /// The sequence numbers present in an operation's log, ascending.
    pub async fn event_seqs(&self, op: &str) -> Result<Vec<u64>> {
        keys::check_name("operation id", op)?;
        let listed = self.store.list(&keys::op_events(op)).await?;
        Ok(listed
            .into_iter()
            .filter_map(|l| match keys::classify(&l.key) {
                KeyKind::OpEvent { seq, .. } => Some(seq),
                _ => None,
            })
            .collect())
    }

    async fn event_at(&self, op: &str, seq: u64) -> Result<Option<Event>> {
        self.read(&keys::op_event(op, seq)).await
    }

    /// Appends an event with a caller-chosen id; appending the same id again returns
    /// the event already in the log instead of a duplicate.
    pub async fn append_event(&self, op: &str, event_id: &str, event_type: &str, data: Value) -> Result<Event> {
        let e = self.append_with_id(op, event_id, event_type, data).await?;
        self.remember(&e);
        Ok(e)
    }

    /// What this process already appended under `event_id`. A step re-run in the same
    /// process (after a lost lease, a retry) finds its event here even when the cached
    /// position skips the tail check and the event lies further back than it reaches.
    fn remembered(&self, op: &str, event_id: &str) -> Option<Event> {
        let map = self.appended.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        map.get(op)?.iter().rev().find(|e| e.event_id == event_id).cloned()
    }

    fn remember(&self, e: &Event) {
        let mut map = self.appended.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if map.len() >= REMEMBERED_OPS && !map.contains_key(&e.op_id) {
            map.clear();
        }
        let recent = map.entry(e.op_id.clone()).or_default();
        if !recent.iter().any(|r| r.event_id == e.event_id) {
            recent.push_back(e.clone());
            if recent.len() > REMEMBERED_PER_OP {
                recent.pop_front();
            }
        }
    }

    async fn append_with_id(&self, op: &str, event_id: &str, event_type: &str, data: Value) -> Result<Event> {
        keys::check_name("operation id", op)?;
        if let Some(e) = self.remembered(op, event_id) {
            return Ok(e);
        }
        let cached = self.next_seq.lock().unwrap_or_else(std::sync::PoisonError::into_inner).get(op).copied();
        let mut seq = match cached {
            Some(seq) => seq,
            None => {
                let last = self.event_seqs(op).await?.last().copied().unwrap_or(0);
                for s in (last.saturating_sub(TAIL_CHECK - 1).max(1)..=last).rev() {
                    if let Some(e) = self.event_at(op, s).await?
                        && e.event_id == event_id
                    {
                        return Ok(e);
                    }
                }
                last + 1
            }
        };
        let result = self.append_from(op, event_id, event_type, data, &mut seq).await;
        let mut cache = self.next_seq.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        match &result {
            Ok(e) => {
                cache.insert(op.to_owned(), e.seq + 1);
            }
            Err(_) => {
                cache.remove(op);
            }
        }
        result
    }

    async fn append_from(
        &self,
        op: &str,
        event_id: &str,
        event_type: &str,
        data: Value,
        seq: &mut u64,
    ) -> Result<Event> {
        let at_ms = self.now();
        loop {
            let event = Event {
                op_id: op.to_owned(),
                seq: *seq,
                event_id: event_id.to_owned(),
                at_ms,
                event_type: event_type.to_owned(),
                data: data.clone(),
            };
            let key = keys::op_event(op, *seq);
            match self.store.put_create(&key, codec::encode(&event)).await {
                Ok(_) => return Ok(event),
                Err(StoreError::AlreadyExists { .. }) => match self.event_at(op, *seq).await? {
                    Some(existing) if existing.event_id == event_id => return Ok(existing),
                    Some(_) => *seq += 1,
                    None => {
                        return Err(StateError::Corrupt { key, why: "slot reported taken but is empty".to_owned() });
                    }
                },
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Appends an event with a fresh id.
    pub async fn append(&self, op: &str, event_type: &str, data: Value) -> Result<Event> {
        let id = self.ids.id("ev");
        self.append_with_id(op, &id, event_type, data).await
    }

    /// Events of an operation from `first` on, found by reading `first`, `first + 1`, ...
    /// until one is missing. Logs are gap-free, so this sees every event without a
    /// listing: O(new events), not O(log).
    pub async fn events_from(&self, op: &str, first: u64) -> Result<Vec<Event>> {
        keys::check_name("operation id", op)?;
        let mut out = Vec::new();
        let mut seq = first.max(1);
        while let Some(e) = self.event_at(op, seq).await? {
            out.push(e);
            seq += 1;
        }
        Ok(out)
    }

    /// Events of an operation with `seq > after`, in order.
    pub async fn events_after(&self, op: &str, after: u64) -> Result<Vec<Event>> {
        let mut out = Vec::new();
        for seq in self.event_seqs(op).await?.into_iter().filter(|s| *s > after) {
            let event = self
                .event_at(op, seq)
                .await?
                .ok_or_else(|| StateError::NotFound { what: "event", key: keys::op_event(op, seq) })?;
            out.push(event);
        }
        Ok(out)
    }
}
