//! Engine overhead per no-op step (events before and after, the lease check, and the
//! cursor checkpointed behind the steps) on `memory://` and `file://`. Target: < 1.5 ms
//! per step on file:// (the floor is the two fsynced event writes; the same run
//! measures one such write on the same disk as `raw_put_ms`).
//! Writes JSON to `$SKIFF_BENCH_OUT` (or stdout); run through `cargo xtask bench`.
#![expect(clippy::print_stdout, reason = "a benchmark reports on stdout")]

use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use serde_json::json;
use skiff_clock::{IdGen, Rng, SystemClock};
use skiff_objstore::{FileStore, MemoryStore, Store};
use skiff_saga::{Engine, Registry, SagaBuilder, Submission};
use skiff_sagaapi::{Risk, Safety, Step, StepContext, StepError, StepPlan, StepRequest, StepResult};
use skiff_state::Ledger;
use skiff_state::docs::OpStatus;

/// Realistic sagas have tens of steps: ten 20-step sagas carry the target; one
/// 200-step saga shows how cost grows with the size of the state document.
const SHAPES: [(usize, usize); 2] = [(20, 10), (200, 1)];

struct NoOp;

#[async_trait]
impl Step for NoOp {
    fn kind(&self) -> &str {
        "noop"
    }
    async fn plan(&self, _: &StepContext, _: &StepRequest) -> Result<StepPlan, StepError> {
        Ok(StepPlan {
            description: "nothing".into(),
            safety: Safety::ReadOnly,
            risk: Risk::None,
            expected_duration_ms: 0,
            affected_resources: vec![],
        })
    }
    async fn run(&self, _: &StepContext, _: &StepRequest) -> Result<StepResult, StepError> {
        Ok(StepResult::default())
    }
    async fn resume(&self, _: &StepContext, _: &StepRequest) -> Result<StepResult, StepError> {
        Ok(StepResult::default())
    }
    async fn compensate(&self, _: &StepContext, _: &StepRequest, _: &StepResult) -> Result<StepResult, StepError> {
        Ok(StepResult::default())
    }
}

async fn measure(name: &str, store: Arc<dyn Store>) -> serde_json::Value {
    let ledger = Ledger::new(store, IdGen::new(Arc::new(SystemClock), Rng::seeded(5)), Rng::seeded(5));
    let engine = Engine::new(ledger, Registry::new().with(NoOp));
    let mut shapes = Vec::new();
    for (steps, sagas) in SHAPES {
        let mut secs = 0.0;
        for _ in 0..sagas {
            let mut b = SagaBuilder::new("bench");
            for i in 0..steps {
                b = b.step(&format!("s{i}"), "noop", json!({}));
            }
            let graph = b.build().unwrap();
            let sub = Submission {
                graph,
                service: None,
                actor: "bench".into(),
                reason: String::new(),
                idempotency_key: None,
                params: json!({}),
                scope: None,
            };
            let op = engine.submit(sub).await.unwrap().op_id;
            let start = Instant::now();
            let report = engine.run(&op).await.unwrap();
            secs += start.elapsed().as_secs_f64();
            assert_eq!(report.status, OpStatus::Succeeded);
        }
        let total = (steps * sagas) as f64;
        shapes.push(
            json!({"steps_per_saga": steps, "sagas": sagas, "total_s": secs, "per_step_ms": secs * 1000.0 / total}),
        );
    }
    json!({"backend": name, "per_step_ms": shapes[0]["per_step_ms"], "shapes": shapes})
}

/// The floor on this disk, measured in the same run: one create-only put (a fsynced
/// event) on the same kind of store, in ms.
async fn raw_put_ms(store: &FileStore) -> f64 {
    const PUTS: usize = 200;
    let start = Instant::now();
    for i in 0..PUTS {
        store.put_create(&format!("v1/floor/events/{i:08}.json"), vec![b'x'; 300]).await.unwrap();
    }
    start.elapsed().as_secs_f64() * 1000.0 / PUTS as f64
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let dir = std::env::temp_dir().join(format!("skiff-bench-engine-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let (memory, mut file) = rt.block_on(async {
        let store = FileStore::new(&dir).unwrap();
        let floor = raw_put_ms(&store).await;
        let mut file = measure("file", Arc::new(store)).await;
        file["raw_put_ms"] = json!(floor);
        file["per_step_in_raw_puts"] = json!(file["per_step_ms"].as_f64().unwrap_or(0.0) / floor);
        (measure("memory", Arc::new(MemoryStore::new())).await, file)
    });
    let _ = std::fs::remove_dir_all(&dir);
    let per_step_file = file["per_step_ms"].as_f64().unwrap_or(f64::MAX);
    file["note"] =
        json!("a step's floor is its two fsynced events: per_step_in_raw_puts near 2 is engine overhead near zero");
    let out = json!({
        "suite": "saga",
        "description": "engine overhead per no-op step (step_started + result events, lease check, cursor checkpoints and status writes): ten 20-step sagas, and one 200-step saga",
        "backends": [memory, file],
        "target": {"metric": "file.per_step_ms", "below": 1.5, "met": per_step_file < 1.5},
    });
    let text = serde_json::to_string_pretty(&out).unwrap();
    match std::env::var_os("SKIFF_BENCH_OUT") {
        Some(path) => std::fs::write(path, text + "\n").unwrap(),
        None => println!("{text}"),
    }
}
