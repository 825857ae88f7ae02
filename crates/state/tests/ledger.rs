//! Ledger behaviour on real backends (memory and file): CAS, immutable creates,
//! event logs, leases with fencing, audit, blobs, index and verify. Stored forms are
//! snapshot-tested so a format change is a visible diff.

use std::sync::Arc;

use serde_json::json;
use skiff_clock::{IdGen, ManualClock, Rng};
use skiff_objstore::{FileStore, MemoryStore, Store};
use skiff_state::docs::*;
use skiff_state::{Cas, Ledger, StateError, Update, codec, keys};

fn ledger_on(store: Arc<dyn Store>, clock: Arc<ManualClock>, seed: u64) -> Ledger {
    Ledger::new(store, IdGen::new(clock, Rng::seeded(seed)), Rng::seeded(seed))
}

fn memory() -> (Ledger, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::new(1_795_388_532_000));
    (ledger_on(Arc::new(MemoryStore::new()), clock.clone(), 1), clock)
}

fn op_state(op: &str, status: OpStatus) -> OperationState {
    OperationState {
        cas: Cas::default(),
        op_id: op.to_owned(),
        saga: "deploy".to_owned(),
        service: Some("api".to_owned()),
        status,
        fence: 0,
        updated_at_ms: 0,
        detail: json!({}),
    }
}

#[tokio::test]
async fn cas_update_stamps_generation_and_write_ids() {
    let (l, _) = memory();
    let key = keys::service_state("api");
    for i in 1..=10u64 {
        let s = l
            .update::<ServiceState, _>(&key, |cur| {
                let mut s =
                    cur.cloned().unwrap_or_else(|| ServiceState { service: "api".into(), ..Default::default() });
                s.current_release = Some(format!("r{i}"));
                Ok(Update::Write(s))
            })
            .await
            .unwrap();
        assert_eq!(s.cas.generation, i);
        assert_eq!(s.cas.recent_writes.len(), (i as usize).min(8));
    }
    let keep = l.update::<ServiceState, _>(&key, |_| Ok(Update::Keep)).await.unwrap();
    assert_eq!(keep.cas.generation, 10, "keep writes nothing");
    let missing = l.update::<ServiceState, _>(&keys::service_state("none"), |_| Ok(Update::Keep)).await;
    assert!(matches!(missing, Err(StateError::NotFound { .. })));
}

#[tokio::test]
async fn immutable_create_is_idempotent_for_identical_content_only() {
    let (l, _) = memory();
    let intent = OperationIntent {
        op_id: "op-1".into(),
        saga: "deploy".into(),
        service: Some("api".into()),
        actor: "ada".into(),
        reason: "ship".into(),
        idempotency_key: "k1".into(),
        params: json!({"release": "r1"}),
        created_at_ms: 1,
        trace: None,
    };
    assert!(l.create(&keys::op_intent("op-1"), &intent).await.unwrap());
    assert!(!l.create(&keys::op_intent("op-1"), &intent).await.unwrap(), "same content: no-op");
    let other = OperationIntent { reason: "other".into(), ..intent };
    assert!(matches!(l.create(&keys::op_intent("op-1"), &other).await, Err(StateError::AlreadyExists { .. })));
}

#[tokio::test]
async fn concurrent_appenders_make_a_gap_free_log_without_duplicates() {
    let clock = Arc::new(ManualClock::new(0));
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let mut tasks = Vec::new();
    for w in 0..6u64 {
        let l = ledger_on(store.clone(), clock.clone(), 100 + w);
        tasks.push(tokio::spawn(async move {
            for i in 0..40 {
                l.append_event("op-x", &format!("w{w}-{i}"), "tick", json!({"w": w, "i": i})).await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let l = ledger_on(store, clock, 9);
    let events = l.events_after("op-x", 0).await.unwrap();
    assert_eq!(events.len(), 240);
    assert!(events.iter().enumerate().all(|(i, e)| e.seq == i as u64 + 1), "gap-free");
    let ids: std::collections::BTreeSet<_> = events.iter().map(|e| e.event_id.clone()).collect();
    assert_eq!(ids.len(), 240, "no duplicates");
    // Appending an id that is already in the log returns it instead of a duplicate.
    let fresh = ledger_on(l.store().clone(), Arc::new(ManualClock::new(0)), 77);
    let again = fresh.append_event("op-x", &events[239].event_id, "tick", json!({})).await.unwrap();
    assert_eq!(again.seq, 240);
    assert_eq!(fresh.events_after("op-x", 238).await.unwrap().len(), 2);
}

#[tokio::test]
async fn a_step_re_run_in_the_same_process_finds_its_event_far_back() {
    let (l, _) = memory();
    let first = l.append_event("op-y", "op-y:record-start", "note", json!({})).await.unwrap();
    // The engine goes on appending (its position is cached, so no tail check runs)...
    for i in 0..20 {
        l.append("op-y", "progress", json!({"i": i})).await.unwrap();
    }
    // ...then the same step runs again (a lost lease, a retry): no duplicate.
    let again = l.append_event("op-y", "op-y:record-start", "note", json!({})).await.unwrap();
    assert_eq!(again.seq, first.seq);
    let notes = l.events_after("op-y", 0).await.unwrap().into_iter().filter(|e| e.event_type == "note").count();
    assert_eq!(notes, 1);
}

#[tokio::test]
async fn leases_exclude_fence_and_expire() {
    let clock = Arc::new(ManualClock::new(10_000));
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let a = ledger_on(store.clone(), clock.clone(), 1);
    let b = ledger_on(store.clone(), clock.clone(), 2);
    let scope = "operations/op-1";
    let ga = a.acquire_lease(scope, "engine-a", 5_000).await.unwrap();
    assert_eq!(ga.token, 1);
    let held = b.acquire_lease(scope, "engine-b", 5_000).await.unwrap_err();
    assert!(matches!(&held, StateError::LeaseHeld { holder, .. } if holder == "engine-a"), "{held:?}");
    assert_eq!(held.code(), skiff_sdk::Code::LeaseHeld);

    // A writes the operation under its lease.
    let key = keys::op_state("op-1");
    a.fenced_update(&key, &ga, |_| Ok(Update::Write(op_state("op-1", OpStatus::Running)))).await.unwrap();

    // A stalls past expiry; B takes over with a higher token and claims the document.
    clock.advance(6_000);
    let gb = b.acquire_lease(scope, "engine-b", 5_000).await.unwrap();
    assert_eq!(gb.token, 2);
    b.fenced_update::<OperationState, _>(&key, &gb, |cur| Ok(Update::Write(cur.cloned().unwrap()))).await.unwrap();

    // A wakes up: every write it tries is refused.
    let stale = a
        .fenced_update::<OperationState, _>(&key, &ga, |cur| Ok(Update::Write(cur.cloned().unwrap())))
        .await
        .unwrap_err();
    assert!(matches!(stale, StateError::Fenced { token: 1, current: 2, .. }), "{stale:?}");
    assert!(matches!(a.renew_lease(&ga, 5_000).await, Err(StateError::Fenced { .. })));
    a.release_lease(&ga).await.unwrap();
    assert_eq!(b.lease(scope).await.unwrap().unwrap().holder, "engine-b", "a stale release changes nothing");

    // Even if the document was not yet claimed, a lease check stops the stale holder.
    let other = keys::op_state("op-2");
    let stale2 = a.fenced_update(&other, &ga, |_| Ok(Update::Write(op_state("op-2", OpStatus::Running)))).await;
    assert!(matches!(stale2, Err(StateError::Fenced { .. })));

    // Renewal keeps the token; release lets the next holder in at once.
    let gb2 = b.renew_lease(&gb, 5_000).await.unwrap();
    assert_eq!((gb2.token, gb2.expires_at_ms), (2, clock.now_ms_for_test() + 5_000));
    b.release_lease(&gb2).await.unwrap();
    assert_eq!(a.acquire_lease(scope, "engine-a", 5_000).await.unwrap().token, 3);
}

trait NowForTest {
    fn now_ms_for_test(&self) -> u64;
}
impl NowForTest for ManualClock {
    fn now_ms_for_test(&self) -> u64 {
        use skiff_clock::Clock;
        self.now_ms()
    }
}

#[tokio::test]
async fn audit_blobs_and_specs() {
    let (l, clock) = memory();
    l.audit("ada", "state.init", "bucket", skiff_sdk::Code::Ok, json!({})).await.unwrap();
    clock.advance(86_400_000);
    let t = clock.now_ms_for_test();
    l.audit("bob", "deploy.start", "api", skiff_sdk::Code::Ok, json!({"op": "op-1"})).await.unwrap();
    assert_eq!(l.audit_since(None).await.unwrap().len(), 2);
    let recent = l.audit_since(Some(t)).await.unwrap();
    assert_eq!(recent.len(), 1);
    assert_eq!(recent[0].actor, "bob");

    let d = l.put_blob(b"artifact bytes".to_vec()).await.unwrap();
    assert_eq!(l.put_blob(b"artifact bytes".to_vec()).await.unwrap(), d, "storing again is a no-op");
    assert_eq!(l.get_blob(&d).await.unwrap(), b"artifact bytes");
    // Tamper with the stored blob: the read refuses it.
    let key = keys::blob(&d);
    let v = l.store().get(&key).await.unwrap().unwrap().version;
    l.store().put_if_match(&key, b"evil".to_vec(), &v).await.unwrap();
    assert!(matches!(l.get_blob(&d).await, Err(StateError::DigestMismatch { .. })));

    let spec =
        skiff_spec::parse("s.yaml", b"service: api\nartifact: {path: api}\nrun: {command: [api]}\nport: 80\n").unwrap();
    let ir = skiff_ir::compile(&spec);
    let digest = l.put_spec(&ir).await.unwrap();
    assert_eq!(digest, ir.digest());
    assert_eq!(l.get_spec(&digest).await.unwrap(), ir);
}

#[tokio::test]
async fn index_rebuilds_from_the_bucket() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(5));
    let l = ledger_on(Arc::new(FileStore::new(dir.path()).unwrap()), clock, 3);
    l.update::<ServiceState, _>(&keys::service_state("api"), |_| {
        Ok(Update::Write(ServiceState {
            service: "api".into(),
            current_release: Some("r2".into()),
            ..Default::default()
        }))
    })
    .await
    .unwrap();
    l.create(
        &keys::op_intent("op-1"),
        &OperationIntent {
            op_id: "op-1".into(),
            saga: "deploy".into(),
            service: Some("api".into()),
            actor: "ada".into(),
            reason: String::new(),
            idempotency_key: "k".into(),
            params: json!(null),
            created_at_ms: 1,
            trace: None,
        },
    )
    .await
    .unwrap();
    for _ in 0..3 {
        l.append("op-1", "tick", json!({})).await.unwrap();
    }
    l.update::<Member, _>(&keys::member("api", "i-1"), |_| {
        Ok(Update::Write(Member {
            cas: Cas::default(),
            service: "api".into(),
            instance: "i-1".into(),
            release: "r2".into(),
            health: MemberHealth::Healthy,
            updated_at_ms: 4,
            detail: json!({"pid": 42}),
        }))
    })
    .await
    .unwrap();
    let index = l.rebuild_index().await.unwrap();
    assert_eq!(index.services["api"].current_release.as_deref(), Some("r2"));
    assert_eq!(index.operations["op-1"].events, 3);
    assert_eq!(index.operations["op-1"].saga.as_deref(), Some("deploy"));
    assert_eq!(index.members["api"]["i-1"].health, MemberHealth::Healthy);
    assert!(l.verify().await.unwrap().is_clean());
}

#[tokio::test]
async fn verify_finds_every_kind_of_damage() {
    let (l, _) = memory();
    let s = l.store().clone();
    l.init("test").await.unwrap();
    l.append("op-ok", "tick", json!({})).await.unwrap();
    l.create(
        &keys::op_intent("op-ok"),
        &OperationIntent {
            op_id: "op-ok".into(),
            saga: "deploy".into(),
            service: None,
            actor: "a".into(),
            reason: String::new(),
            idempotency_key: "k".into(),
            params: json!({"artifact": format!("sha256:{}", "a".repeat(64))}),
            created_at_ms: 0,
            trace: None,
        },
    )
    .await
    .unwrap();
    // A gap: event 2 missing, event 3 present.
    let e3 = Event {
        op_id: "op-ok".into(),
        seq: 3,
        event_id: "x".into(),
        at_ms: 0,
        event_type: "t".into(),
        data: json!({}),
    };
    s.put_create(&keys::op_event("op-ok", 3), codec::encode(&e3)).await.unwrap();
    // Wrong kind under a lease key, garbage under a service key, a stray object.
    s.put_create(&keys::lease("svc"), codec::encode(&e3)).await.unwrap();
    s.put_create(&keys::service_state("api"), b"{not json".to_vec()).await.unwrap();
    s.put_create("v1/stray.txt", b"?".to_vec()).await.unwrap();
    // A blob whose content does not match its name; events without an intent.
    s.put_create(&keys::blob(&"b".repeat(64)), b"nope".to_vec()).await.unwrap();
    l.append("op-orphan", "tick", json!({})).await.unwrap();
    let report = l.verify().await.unwrap();
    let summary: Vec<String> = report.findings.iter().map(|f| format!("{} {} {}", f.code, f.key, f.message)).collect();
    insta::assert_snapshot!(summary.join("\n"));
}

#[test]
fn stored_forms() {
    let state = ServiceState {
        cas: Cas { generation: 3, recent_writes: vec!["w-1".into()] },
        service: "api".into(),
        spec_digest: Some("ab".repeat(32)),
        current_release: Some("2026.11.22.1".into()),
        stable_release: Some("2026.11.21.4".into()),
        candidate_release: None,
        previous_stable: None,
        active_operation: None,
        shadow_release: None,
        writer_region: None,
        region_weights: Default::default(),
        updated_at_ms: 1_795_388_532_000,
    };
    insta::assert_snapshot!("service_state", String::from_utf8(codec::encode(&state)).unwrap());
    let lease = Lease {
        cas: Cas { generation: 1, recent_writes: vec!["w-2".into()] },
        scope: "services/api".into(),
        holder: "engine-a".into(),
        token: 7,
        acquired_at_ms: 1,
        expires_at_ms: 30_001,
        released: false,
    };
    insta::assert_snapshot!("lease", String::from_utf8(codec::encode(&lease)).unwrap());
    let event = Event {
        op_id: "op-1".into(),
        seq: 1,
        event_id: "ev-1".into(),
        at_ms: 2,
        event_type: "step_started".into(),
        data: json!({"step": "provision"}),
    };
    insta::assert_snapshot!("event", String::from_utf8(codec::encode(&event)).unwrap());
    let audit = AuditEntry {
        id: "au-1".into(),
        at_ms: 3,
        actor: "ada".into(),
        action: "state.init".into(),
        target: "bucket".into(),
        outcome: "OK".into(),
        details: json!({}),
    };
    insta::assert_snapshot!("audit", String::from_utf8(codec::encode(&audit)).unwrap());
    // Round trip, and a document from a newer schema is refused with advice.
    assert_eq!(codec::decode::<ServiceState>("k", &codec::encode(&state)).unwrap(), state);
    let newer =
        String::from_utf8(codec::encode(&state)).unwrap().replace("\"schema_version\": 1", "\"schema_version\": 9");
    let e = codec::decode::<ServiceState>("k", newer.as_bytes()).unwrap_err();
    assert!(e.to_string().contains("upgrade skiff"), "{e}");
}
