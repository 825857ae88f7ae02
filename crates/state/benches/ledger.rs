//! Ledger benchmark on `file://` and `memory://`: raw create-only put throughput, CAS
//! updates with 1 and with 8 contending writers, event appends, and index rebuild over
//! 100,000 events. Ratios are against the raw put throughput of the same backend,
//! measured in the same run. Target: single-writer CAS ≥ 0.5 × raw put.
//! Writes JSON to `$SKIFF_BENCH_OUT` (or stdout); run through `cargo xtask bench`.
#![expect(clippy::print_stdout, reason = "a benchmark reports on stdout")]

use std::sync::Arc;
use std::time::Instant;

use serde_json::json;
use skiff_clock::{IdGen, Rng, SystemClock};
use skiff_objstore::{FileStore, MemoryStore, Store};
use skiff_state::docs::{Event, OperationIntent, ServiceState};
use skiff_state::{Ledger, StateError, Update, codec, keys};

const EVENTS_FOR_INDEX: u64 = 100_000;
const OPS_FOR_INDEX: u64 = 100;

fn ledger(store: Arc<dyn Store>, seed: u64) -> Ledger {
    Ledger::new(store, IdGen::new(Arc::new(SystemClock), Rng::seeded(seed)), Rng::seeded(seed))
        .with_cas_attempts(10_000)
}

fn doc(i: u64) -> ServiceState {
    ServiceState {
        service: "bench".into(),
        spec_digest: Some("ab".repeat(32)),
        current_release: Some(format!("2026.11.22.{i}")),
        stable_release: Some("2026.11.21.1".into()),
        ..Default::default()
    }
}

async fn raw_puts(store: &Arc<dyn Store>, n: u64) -> f64 {
    let bytes = codec::encode(&doc(0));
    let start = Instant::now();
    for i in 0..n {
        store.put_create(&format!("v1/bench/raw/{i}.json"), bytes.clone()).await.unwrap();
    }
    n as f64 / start.elapsed().as_secs_f64()
}

/// Raw put including encoding the document, to show how much of a CAS is codec.
async fn encoded_puts(store: &Arc<dyn Store>, n: u64) -> f64 {
    let d = doc(0);
    let start = Instant::now();
    for i in 0..n {
        store.put_create(&format!("v1/bench/encoded/{i}.json"), codec::encode(&d)).await.unwrap();
    }
    n as f64 / start.elapsed().as_secs_f64()
}

async fn cas(store: &Arc<dyn Store>, writers: u64, per_writer: u64, key: &str) -> f64 {
    let start = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..writers {
        let l = ledger(store.clone(), 1000 + w);
        let key = key.to_owned();
        tasks.push(tokio::spawn(async move {
            let mut done = 0;
            while done < per_writer {
                match l
                    .update::<ServiceState, _>(&key, |cur| Ok(Update::Write(doc(cur.map_or(0, |c| c.cas.generation)))))
                    .await
                {
                    Ok(_) => done += 1,
                    Err(StateError::Conflict { .. }) => {}
                    Err(e) => panic!("{e}"),
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    (writers * per_writer) as f64 / start.elapsed().as_secs_f64()
}

async fn appends(store: &Arc<dyn Store>, n: u64) -> f64 {
    let l = ledger(store.clone(), 7);
    let start = Instant::now();
    for _ in 0..n {
        l.append("op-bench-append", "tick", json!({"step": "provision"})).await.unwrap();
    }
    n as f64 / start.elapsed().as_secs_f64()
}

/// Lays down 100 operations with 1,000 events each, bytes exactly as the ledger
/// writes them (setup is not measured), then times an index rebuild.
async fn index_rebuild(store: &Arc<dyn Store>, file_root: Option<&std::path::Path>) -> (f64, u64) {
    let per_op = EVENTS_FOR_INDEX / OPS_FOR_INDEX;
    for o in 0..OPS_FOR_INDEX {
        let op = format!("op-index-{o:03}");
        let intent = OperationIntent {
            op_id: op.clone(),
            saga: "deploy".into(),
            service: Some(format!("svc-{}", o % 10)),
            actor: "bench".into(),
            reason: String::new(),
            idempotency_key: op.clone(),
            params: json!({}),
            created_at_ms: 0,
            trace: None,
        };
        store.put_create(&keys::op_intent(&op), codec::encode(&intent)).await.unwrap();
        for seq in 1..=per_op {
            let e = Event {
                op_id: op.clone(),
                seq,
                event_id: format!("ev-{o}-{seq}"),
                at_ms: seq,
                event_type: "tick".into(),
                data: json!({}),
            };
            let key = keys::op_event(&op, seq);
            match file_root {
                // Plain writes for setup speed; the measured rebuild reads them through the store.
                Some(root) => {
                    let path = root.join(&key);
                    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
                    std::fs::write(path, codec::encode(&e)).unwrap();
                }
                None => {
                    store.put_create(&key, codec::encode(&e)).await.unwrap();
                }
            }
        }
    }
    let l = ledger(store.clone(), 9);
    let start = Instant::now();
    let index = l.rebuild_index().await.unwrap();
    let secs = start.elapsed().as_secs_f64();
    assert!(index.events >= EVENTS_FOR_INDEX);
    (secs, index.events)
}

async fn suite(name: &str, store: Arc<dyn Store>, file_root: Option<&std::path::Path>, n: u64) -> serde_json::Value {
    let raw = raw_puts(&store, n).await;
    let encoded = encoded_puts(&store, n).await;
    let cas1 = cas(&store, 1, n, "v1/services/bench-1/state.json").await;
    let cas8 = cas(&store, 8, n / 8, "v1/services/bench-8/state.json").await;
    let append = appends(&store, n).await;
    let (rebuild_s, events) = index_rebuild(&store, file_root).await;
    let ratio = cas1 / raw;
    json!({
        "backend": name,
        "operations_per_measure": n,
        "raw_put_ops_per_s": raw,
        "encode_and_put_ops_per_s": encoded,
        "cas_1_writer_ops_per_s": cas1,
        "cas_8_writers_ops_per_s": cas8,
        "event_appends_per_s": append,
        "index_rebuild_s": rebuild_s,
        "index_rebuild_events": events,
        "ratio_cas_1_writer_to_raw": ratio,
        "ratio_cas_8_writers_to_raw": cas8 / raw,
        "ratio_appends_to_raw": append / raw,
        "target": {"metric": "ratio_cas_1_writer_to_raw", "at_least": 0.5, "met": ratio >= 0.5},
    })
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let dir = std::env::temp_dir().join(format!("skiff-bench-ledger-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let results = rt.block_on(async {
        let file = suite("file", Arc::new(FileStore::new(&dir).unwrap()), Some(&dir), 1_000).await;
        let memory = suite("memory", Arc::new(MemoryStore::new()), None, 20_000).await;
        vec![file, memory]
    });
    let _ = std::fs::remove_dir_all(&dir);
    let met = results.iter().all(|r| r["target"]["met"] == true);
    let out = json!({
        "suite": "ledger",
        "description": "raw put vs CAS (1 and 8 writers), event appends, index rebuild over 100,000 events; file:// and memory://",
        "backends": results,
        "target": {"metric": "ratio_cas_1_writer_to_raw", "at_least": 0.5, "met": met},
    });
    let text = serde_json::to_string_pretty(&out).unwrap();
    match std::env::var_os("SKIFF_BENCH_OUT") {
        Some(path) => std::fs::write(path, text + "\n").unwrap(),
        None => println!("{text}"),
    }
}
