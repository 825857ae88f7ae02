//! Property test: random workloads under random fault schedules (transient errors,
//! latency, and writes applied with their response lost) end with a ledger that
//! `verify` finds clean and that matches a model of what was done.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use proptest::prelude::*;
use skiff_clock::{IdGen, ManualClock, Rng};
use skiff_objstore::{FaultPlan, Faulty, FileStore, MemoryStore, RetryPolicy, Retrying, Store};
use skiff_state::docs::{OperationIntent, ServiceState};
use skiff_state::{Ledger, StateError, Update, keys};

#[derive(Clone, Debug)]
enum Op {
    Increment(u8),
    Append(u8),
    Audit,
    Blob(u8),
    Acquire(u8),
    Release(u8),
    Advance,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0u8..3).prop_map(Op::Increment),
        4 => (0u8..2).prop_map(Op::Append),
        1 => Just(Op::Audit),
        1 => (0u8..4).prop_map(Op::Blob),
        2 => (0u8..2).prop_map(Op::Acquire),
        1 => (0u8..2).prop_map(Op::Release),
        1 => Just(Op::Advance),
    ]
}

#[derive(Default)]
struct Model {
    counters: BTreeMap<u8, u64>,
    events: BTreeMap<u8, Vec<String>>,
    audits: u64,
    blobs: BTreeSet<String>,
    /// (holder, expires_at) of the live lease
    lease: Option<(u8, u64)>,
}

const TTL: u64 = 1_000;

async fn run(store: Arc<dyn Store>, seed: u64, ops: Vec<Op>) -> Result<(), TestCaseError> {
    let faulty = Arc::new(Faulty::new(store, FaultPlan::random(seed, 0.15, 0.10, 0.05)));
    let policy = RetryPolicy { max_attempts: 40, base: Duration::ZERO, max: Duration::from_millis(1) };
    let retrying: Arc<dyn Store> = Arc::new(Retrying::new(faulty.clone(), policy, Rng::seeded(seed)));
    let clock = Arc::new(ManualClock::new(1_000_000));
    let ledger = Ledger::new(retrying, IdGen::new(clock.clone(), Rng::seeded(seed)), Rng::seeded(seed));
    let mut model = Model::default();
    let mut guards: BTreeMap<u8, skiff_state::LeaseGuard> = BTreeMap::new();
    for (n, op) in ops.into_iter().enumerate() {
        let now = {
            use skiff_clock::Clock;
            clock.now_ms()
        };
        match op {
            Op::Increment(i) => {
                // Each write bumps the service document's generation by exactly one.
                ledger
                    .update::<ServiceState, _>(&keys::service_state(&format!("svc{i}")), |cur| {
                        let s = cur
                            .cloned()
                            .unwrap_or_else(|| ServiceState { service: format!("svc{i}"), ..Default::default() });
                        Ok(Update::Write(s))
                    })
                    .await
                    .map_err(|e| TestCaseError::fail(format!("increment: {e}")))?;
                *model.counters.entry(i).or_default() += 1;
            }
            Op::Append(j) => {
                let intent = OperationIntent {
                    op_id: format!("op-{j}"),
                    saga: "test".into(),
                    service: None,
                    actor: "prop".into(),
                    reason: String::new(),
                    idempotency_key: format!("k{j}"),
                    params: serde_json::Value::Null,
                    created_at_ms: 0,
                    trace: None,
                };
                ledger
                    .create(&keys::op_intent(&format!("op-{j}")), &intent)
                    .await
                    .map_err(|e| TestCaseError::fail(format!("intent: {e}")))?;
                let id = format!("e{n}");
                ledger
                    .append_event(&format!("op-{j}"), &id, "tick", serde_json::json!({"n": n}))
                    .await
                    .map_err(|e| TestCaseError::fail(format!("append: {e}")))?;
                model.events.entry(j).or_default().push(id);
            }
            Op::Audit => {
                ledger
                    .audit("prop", "test", "x", skiff_sdk::Code::Ok, serde_json::json!({}))
                    .await
                    .map_err(|e| TestCaseError::fail(format!("audit: {e}")))?;
                model.audits += 1;
            }
            Op::Blob(b) => {
                let d = ledger.put_blob(vec![b; 10]).await.map_err(|e| TestCaseError::fail(format!("blob: {e}")))?;
                model.blobs.insert(d);
            }
            Op::Acquire(h) => {
                let live = model.lease.filter(|(_, exp)| *exp > now);
                match ledger.acquire_lease("scope", &format!("h{h}"), TTL).await {
                    Ok(g) => {
                        prop_assert!(live.is_none_or(|(holder, _)| holder == h), "acquired while h{:?} holds it", live);
                        model.lease = Some((h, now + TTL));
                        guards.insert(h, g);
                    }
                    Err(StateError::LeaseHeld { .. }) => {
                        prop_assert!(live.is_some_and(|(holder, _)| holder != h), "refused though free: {:?}", live);
                    }
                    Err(e) => return Err(TestCaseError::fail(format!("acquire: {e}"))),
                }
            }
            Op::Release(h) => {
                if let Some(g) = guards.remove(&h) {
                    ledger.release_lease(&g).await.map_err(|e| TestCaseError::fail(format!("release: {e}")))?;
                    if model.lease.is_some_and(|(holder, exp)| holder == h && exp > now) {
                        model.lease = None;
                    }
                }
            }
            Op::Advance => clock.advance(TTL / 2 + 1),
        }
    }
    faulty.set_plan(FaultPlan::none());
    let report = ledger.verify().await.map_err(|e| TestCaseError::fail(e.to_string()))?;
    prop_assert!(report.is_clean(), "verify findings: {:?}", report.findings);
    for (i, want) in &model.counters {
        let s: ServiceState = ledger.read(&keys::service_state(&format!("svc{i}"))).await.unwrap().unwrap();
        prop_assert_eq!(s.cas.generation, *want, "counter {} (faults injected: {})", i, faulty.injected());
    }
    for (j, ids) in &model.events {
        let stored: Vec<String> =
            ledger.events_after(&format!("op-{j}"), 0).await.unwrap().into_iter().map(|e| e.event_id).collect();
        prop_assert_eq!(&stored, ids, "event log {}", j);
    }
    prop_assert_eq!(ledger.audit_since(None).await.unwrap().len() as u64, model.audits);
    for d in &model.blobs {
        prop_assert!(ledger.get_blob(d).await.is_ok());
    }
    Ok(())
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn memory_ledger_survives_fault_schedules(seed in any::<u64>(), ops in prop::collection::vec(op(), 1..60)) {
        runtime().block_on(run(Arc::new(MemoryStore::new()), seed, ops))?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn file_ledger_survives_fault_schedules(seed in any::<u64>(), ops in prop::collection::vec(op(), 1..40)) {
        let dir = tempfile::tempdir().unwrap();
        runtime().block_on(run(Arc::new(FileStore::new(dir.path()).unwrap()), seed, ops))?;
    }
}
