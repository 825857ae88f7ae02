//! Engine behaviour in one process on real ledgers: happy path, retries, deadlines,
//! compensation order, the irreversible line, approval, reject, pause, cancel, parallel
//! branches, idempotent submission, and two engines on one operation.

mod common;

use std::sync::Arc;

use serde_json::json;
use skiff_clock::{IdGen, Rng, SystemClock};
use skiff_objstore::MemoryStore;
use skiff_saga::{Engine, Registry, SagaBuilder, SagaError, SagaGraph, StepStatus, Submission};
use skiff_sagaapi::Extensions;
use skiff_state::docs::OpStatus;
use skiff_state::{Ledger, StateError};

use common::{Counted, Effects};

fn ledger() -> Ledger {
    Ledger::new(Arc::new(MemoryStore::new()), IdGen::new(Arc::new(SystemClock), Rng::seeded(1)), Rng::seeded(1))
}

fn engine(ledger: &Ledger, fx: &Effects) -> Engine {
    let mut ext = Extensions::default();
    ext.insert(fx.clone());
    Engine::new(ledger.clone(), Registry::new().with(Counted)).with_extensions(ext).with_lease_ttl_ms(2_000)
}

fn submission(graph: SagaGraph) -> Submission {
    Submission {
        graph,
        service: Some("api".into()),
        actor: "tester".into(),
        reason: "test".into(),
        idempotency_key: None,
        params: json!({}),
        scope: None,
    }
}

async fn start(e: &Engine, graph: SagaGraph) -> String {
    e.submit(submission(graph)).await.unwrap().op_id
}

fn applied(fx: &Effects, op: &str) -> Vec<String> {
    fx.lines().into_iter().filter_map(|l| l.strip_prefix(&format!("apply {op}:")).map(str::to_owned)).collect()
}

fn undone(fx: &Effects, op: &str) -> Vec<String> {
    fx.lines().into_iter().filter_map(|l| l.strip_prefix(&format!("undo {op}:")).map(str::to_owned)).collect()
}

#[tokio::test]
async fn runs_every_step_once_and_records_events() {
    let (l, fx) = (ledger(), Effects::memory());
    let e = engine(&l, &fx);
    let g = SagaBuilder::new("demo").step("a", "counted", json!({})).step("b", "counted", json!({})).build().unwrap();
    let op = start(&e, g).await;
    let report = e.run(&op).await.unwrap();
    assert_eq!(report.status, OpStatus::Succeeded);
    assert_eq!(applied(&fx, &op), vec!["a", "b"]);
    let types: Vec<String> = l.events_after(&op, 0).await.unwrap().into_iter().map(|e| e.event_type).collect();
    assert_eq!(
        types,
        vec![
            "operation_planned",
            "operation_started",
            "step_started",
            "step_succeeded",
            "step_started",
            "step_succeeded",
            "operation_succeeded"
        ]
    );
    assert!(l.verify().await.unwrap().is_clean());
    // Running a finished operation changes nothing.
    assert_eq!(e.run(&op).await.unwrap().status, OpStatus::Succeeded);
    assert_eq!(applied(&fx, &op).len(), 2);
}

#[tokio::test]
async fn retries_retryable_errors_within_the_policy() {
    let (l, fx) = (ledger(), Effects::memory());
    let e = engine(&l, &fx);
    let g = SagaBuilder::new("demo")
        .step("a", "counted", json!({"fail": "retryable", "fail_times": 2}))
        .retry(3, 1)
        .build()
        .unwrap();
    let op = start(&e, g).await;
    let r = e.run(&op).await.unwrap();
    assert_eq!(r.status, OpStatus::Succeeded);
    assert_eq!(r.detail.step("a").attempts, 3);
    assert_eq!(applied(&fx, &op), vec!["a"]);

    let g = SagaBuilder::new("demo2")
        .step("a", "counted", json!({}))
        .step("b", "counted", json!({"fail": "retryable"}))
        .retry(2, 1)
        .build()
        .unwrap();
    let op = start(&e, g).await;
    let r = e.run(&op).await.unwrap();
    assert_eq!(r.status, OpStatus::Compensated, "retries exhausted: terminal, compensated");
    assert_eq!(undone(&fx, &op), vec!["a"]);
}

#[tokio::test]
async fn compensates_in_reverse_order_after_a_failure() {
    let (l, fx) = (ledger(), Effects::memory());
    let e = engine(&l, &fx);
    let g = SagaBuilder::new("demo")
        .step("a", "counted", json!({}))
        .step("b", "counted", json!({}))
        .step("ro", "counted", json!({"safety": "read_only"}))
        .step("c", "counted", json!({"fail": "terminal"}))
        .build()
        .unwrap();
    let op = start(&e, g).await;
    let r = e.run(&op).await.unwrap();
    assert_eq!(r.status, OpStatus::Compensated);
    assert_eq!(applied(&fx, &op), vec!["a", "b", "ro"]);
    assert_eq!(undone(&fx, &op), vec!["b", "a"], "reverse order; read-only skipped; the failed step had no effect");
    let f = r.failure().unwrap();
    assert_eq!((f.step.as_deref(), f.code.as_str()), (Some("c"), "PROVIDER_ERROR"));
    assert_eq!(r.steps_in(StepStatus::Compensated), vec!["a", "b"]);
}

#[tokio::test]
async fn a_missed_deadline_aborts_and_compensates_the_uncertain_step() {
    let (l, fx) = (ledger(), Effects::memory());
    let e = engine(&l, &fx);
    let g = SagaBuilder::new("demo")
        .step("a", "counted", json!({}))
        .step("slow", "counted", json!({"fail": "timeout"}))
        .timeout_ms(150)
        .build()
        .unwrap();
    let op = start(&e, g).await;
    let r = e.run(&op).await.unwrap();
    assert_eq!(r.status, OpStatus::Compensated);
    assert_eq!(r.failure().unwrap().code, skiff_sagaapi::StepCode::DeadlineExceeded);
    assert!(r.detail.step("slow").uncertain);
    assert_eq!(undone(&fx, &op), vec!["a"]);
}

#[tokio::test]
async fn irreversible_steps_wait_for_approval_and_are_never_compensated() {
    let (l, fx) = (ledger(), Effects::memory());
    let e = engine(&l, &fx);
    let g = SagaBuilder::new("demo")
        .step("a", "counted", json!({}))
        .step("migrate", "counted", json!({"safety": "irreversible"}))
        .step("b", "counted", json!({}))
        .step("c", "counted", json!({"fail": "terminal"}))
        .build()
        .unwrap();
    let sub = e.submit(submission(g)).await.unwrap();
    assert!(sub.plan.step("migrate").unwrap().needs_approval, "policy: irreversible needs approval");
    let op = sub.op_id;
    let r = e.run(&op).await.unwrap();
    assert_eq!(r.status, OpStatus::AwaitingApproval);
    assert_eq!(r.detail.awaiting.as_deref(), Some("migrate"));
    assert_eq!(applied(&fx, &op), vec!["a"], "nothing past the gate ran");
    assert_eq!(e.run(&op).await.unwrap().status, OpStatus::AwaitingApproval, "running again still waits");
    e.approve(&op, "ann", None).await.unwrap();
    let r = e.run(&op).await.unwrap();
    assert_eq!(r.status, OpStatus::Failed, "compensation stops at the irreversible line");
    assert_eq!(r.detail.blocked_at.as_deref(), Some("migrate"));
    assert_eq!(applied(&fx, &op), vec!["a", "migrate", "b"]);
    assert_eq!(undone(&fx, &op), vec!["b"], "b undone; migrate and everything before it untouched");
}

#[tokio::test]
async fn reject_compensates_what_ran_before_the_gate() {
    let (l, fx) = (ledger(), Effects::memory());
    let e = engine(&l, &fx);
    let g = SagaBuilder::new("demo")
        .step("a", "counted", json!({}))
        .step("gate", "counted", json!({}))
        .require_approval()
        .build()
        .unwrap();
    let op = start(&e, g).await;
    assert_eq!(e.run(&op).await.unwrap().status, OpStatus::AwaitingApproval);
    e.reject(&op, "ann", "not today").await.unwrap();
    let r = e.run(&op).await.unwrap();
    assert_eq!(r.status, OpStatus::Compensated);
    assert_eq!(undone(&fx, &op), vec!["a"]);
    assert!(r.failure().unwrap().message.contains("rejected by ann"));
    // Control actions that do not apply are refused.
    assert!(matches!(e.reject(&op, "ann", "again").await, Err(SagaError::InvalidTransition { .. })));
    assert!(matches!(e.cancel(&op, "ann").await, Err(SagaError::InvalidTransition { .. })));
}

#[tokio::test]
async fn pause_stops_at_a_boundary_and_resume_continues() {
    let (l, fx) = (ledger(), Effects::memory());
    let e = engine(&l, &fx);
    let g = SagaBuilder::new("demo").step("a", "counted", json!({})).step("b", "counted", json!({})).build().unwrap();
    let op = start(&e, g).await;
    e.pause(&op, "ops").await.unwrap();
    let r = e.run(&op).await.unwrap();
    assert_eq!(r.status, OpStatus::Paused);
    assert!(applied(&fx, &op).is_empty());
    assert!(matches!(e.approve(&op, "x", None).await, Err(SagaError::InvalidTransition { .. })));
    e.request_resume(&op, "ops").await.unwrap();
    assert_eq!(e.run(&op).await.unwrap().status, OpStatus::Succeeded);
    assert_eq!(applied(&fx, &op), vec!["a", "b"]);
}

#[tokio::test]
async fn cancel_interrupts_a_long_step_and_compensates() {
    let (l, fx) = (ledger(), Effects::memory());
    let e = engine(&l, &fx).with_lease_ttl_ms(150);
    let g = SagaBuilder::new("demo")
        .step("a", "counted", json!({}))
        .step("bake", "counted", json!({"sleep_ms": 60_000}))
        .build()
        .unwrap();
    let op = start(&e, g).await;
    let runner = tokio::spawn({
        let e = e.clone();
        let op = op.clone();
        async move { e.run(&op).await }
    });
    let l2 = l.clone();
    let op2 = op.clone();
    assert!(
        skiff_testkit_wait(|| {
            let l2 = l2.clone();
            let op2 = op2.clone();
            async move {
                l2.events_after(&op2, 0)
                    .await
                    .unwrap()
                    .iter()
                    .any(|e| e.event_type == "step_started" && e.data["step"] == "bake")
            }
        })
        .await
    );
    e.cancel(&op, "ops").await.unwrap();
    let r = runner.await.unwrap().unwrap();
    assert_eq!(r.status, OpStatus::Cancelled);
    assert_eq!(undone(&fx, &op), vec!["a"]);
}

async fn skiff_testkit_wait<F, Fut>(mut f: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..500 {
        if f().await {
            return true;
        }
        skiff_clock::Clock::sleep(&skiff_clock::SystemClock, std::time::Duration::from_millis(10)).await;
    }
    false
}

#[tokio::test]
async fn independent_branches_run_concurrently() {
    let (l, fx) = (ledger(), Effects::memory());
    let e = engine(&l, &fx);
    let g = SagaBuilder::new("demo")
        .step("a", "counted", json!({}))
        .branches([("x", "counted", json!({"sleep_ms": 200})), ("y", "counted", json!({"sleep_ms": 200}))])
        .step("z", "counted", json!({}))
        .build()
        .unwrap();
    let op = start(&e, g).await;
    assert_eq!(e.run(&op).await.unwrap().status, OpStatus::Succeeded);
    // Both branches started before either finished.
    let events = l.events_after(&op, 0).await.unwrap();
    let pos = |t: &str, s: &str| events.iter().position(|e| e.event_type == t && e.data["step"] == s).unwrap();
    assert!(pos("step_started", "y") < pos("step_succeeded", "x"));
    assert!(pos("step_started", "x") < pos("step_succeeded", "y"));
    assert!(pos("step_started", "z") > pos("step_succeeded", "x").max(pos("step_succeeded", "y")));
}

#[tokio::test]
async fn submission_is_idempotent_by_key() {
    let (l, fx) = (ledger(), Effects::memory());
    let e = engine(&l, &fx);
    let g = SagaBuilder::new("demo").step("a", "counted", json!({})).build().unwrap();
    let s = Submission { idempotency_key: Some("k-1".into()), ..submission(g.clone()) };
    let first = e.submit(s.clone()).await.unwrap();
    let again = e.submit(s.clone()).await.unwrap();
    assert!(first.created && !again.created);
    assert_eq!(first.op_id, again.op_id);
    let different = Submission { params: json!({"other": true}), ..s };
    assert!(matches!(e.submit(different).await, Err(SagaError::IdempotencyConflict { .. })));
    let unknown = SagaBuilder::new("demo").step("a", "nope", json!({})).build().unwrap();
    assert!(matches!(e.submit(submission(unknown)).await, Err(SagaError::UnknownStepKind { .. })));
}

#[test]
fn two_engines_on_one_operation_only_one_runs_and_the_stale_one_is_fenced() {
    let (l, fx) = (ledger(), Effects::memory());
    let rt = || tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let a = engine(&l, &fx).with_lease_ttl_ms(300).with_hook(Arc::new(|point: &str| {
        // Engine A stalls completely (its runtime thread blocks, so it cannot renew)
        // right after starting step `b`.
        if point == "after:step_started:b" {
            skiff_clock::SystemClock::block_for(std::time::Duration::from_millis(1_500));
        }
    }));
    let g = SagaBuilder::new("demo")
        .step("a", "counted", json!({}))
        .step("b", "counted", json!({}))
        .step("c", "counted", json!({}))
        .build()
        .unwrap();
    let op = rt().block_on(a.submit(submission(g))).unwrap().op_id;
    let a_thread = {
        let (a, op) = (a.clone(), op.clone());
        std::thread::spawn(move || rt().block_on(a.run(&op)))
    };
    let b = engine(&l, &fx).with_lease_ttl_ms(300);
    let runtime = rt();
    // While A holds a live lease, B cannot run.
    skiff_clock::SystemClock::block_for(std::time::Duration::from_millis(100));
    let early = runtime.block_on(b.run(&op));
    assert!(
        matches!(early, Err(SagaError::State(StateError::LeaseHeld { .. }))),
        "a second engine must not run while the first holds the lease: {early:?}"
    );
    // A stalls past its lease; B takes over, resumes the in-flight step and finishes.
    let b = b.with_lease_wait_ms(5_000);
    let report = runtime.block_on(b.run(&op)).unwrap();
    assert_eq!(report.status, OpStatus::Succeeded);
    // A wakes up and is fenced: it cannot write.
    let stale = a_thread.join().unwrap();
    assert!(
        matches!(stale, Err(SagaError::State(StateError::Fenced { .. }))),
        "stale engine must be fenced: {stale:?}"
    );
    assert_eq!(applied(&fx, &op), vec!["a", "b", "c"], "each effect exactly once");
    let state = runtime.block_on(b.load(&op)).unwrap().1;
    assert_eq!(state.status, OpStatus::Succeeded);
}
