//! Property test: random sagas (safety and behaviour per step) under random crash
//! schedules always end in a terminal status consistent with the effects: nothing
//! applied or undone twice; success means everything applied once; compensation
//! undoes exactly what was applied, newest first, never crossing an irreversible step.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use proptest::prelude::*;
use serde_json::json;
use skiff_clock::{IdGen, ManualClock, Rng};
use skiff_objstore::MemoryStore;
use skiff_saga::{AllowIrreversible, Engine, Registry, SagaBuilder, Submission};
use skiff_sagaapi::Extensions;
use skiff_state::Ledger;
use skiff_state::docs::OpStatus;

use common::{Counted, Effects};

#[derive(Clone, Debug)]
struct StepSpec {
    safety: &'static str,
    behaviour: &'static str,
}

fn step_spec() -> impl Strategy<Value = StepSpec> {
    (
        prop::sample::select(vec!["reversible", "reversible", "reversible", "read_only", "irreversible"]),
        prop::sample::select(vec![
            "ok",
            "ok",
            "ok",
            "ok",
            "terminal",
            "retry-once",
            "retry-forever",
            "timeout",
            "hold-once",
        ]),
    )
        .prop_map(|(safety, behaviour)| StepSpec { safety, behaviour })
}

const TTL: u64 = 10_000;

fn params(s: &StepSpec) -> serde_json::Value {
    let mut p = json!({"safety": s.safety});
    match s.behaviour {
        "terminal" => p["fail"] = json!("terminal"),
        "retry-once" => {
            p["fail"] = json!("retryable");
            p["fail_times"] = json!(1);
        }
        "retry-forever" => p["fail"] = json!("retryable"),
        "timeout" => p["fail"] = json!("timeout"),
        "hold-once" => {
            p["fail"] = json!("hold");
            p["fail_times"] = json!(1);
        }
        _ => {}
    }
    p
}

async fn scenario(
    clock: ManualClock,
    steps: Vec<StepSpec>,
    crashes: Vec<u32>,
    cancel_after: Option<u32>,
) -> Result<(), TestCaseError> {
    let clock = Arc::new(clock);
    let ledger = Ledger::new(Arc::new(MemoryStore::new()), IdGen::new(clock.clone(), Rng::seeded(3)), Rng::seeded(3));
    let fx = Effects::memory();
    let mut ext = Extensions::default();
    ext.insert(fx.clone());
    let ext = ext;
    let make = |crash_at: Option<u32>| {
        let calls = Arc::new(AtomicU32::new(0));
        Engine::new(ledger.clone(), Registry::new().with(Counted))
            .with_extensions(ext.clone())
            .with_policy(Arc::new(AllowIrreversible))
            .with_lease_ttl_ms(TTL)
            .with_hook(Arc::new(move |_point: &str| {
                if crash_at == Some(calls.fetch_add(1, Ordering::SeqCst)) {
                    panic!("simulated crash");
                }
            }))
    };
    let mut b = SagaBuilder::new("prop");
    for (i, s) in steps.iter().enumerate() {
        b = b.step(&format!("s{i}"), "counted", params(s)).retry(2, 0).timeout_ms(40);
    }
    let graph = b.build().unwrap();
    let first = make(None);
    let op = first
        .submit(Submission {
            graph,
            service: None,
            actor: "p".into(),
            reason: String::new(),
            idempotency_key: None,
            params: json!({}),
            scope: None,
        })
        .await
        .unwrap()
        .op_id;
    let mut runs = crashes.iter().map(|c| Some(*c)).collect::<Vec<_>>();
    runs.push(None);
    let mut status = OpStatus::Planned;
    for (i, crash) in runs.into_iter().enumerate() {
        if cancel_after == Some(i as u32) {
            let _ = first.cancel(&op, "p").await;
        }
        let engine = make(crash);
        let op2 = op.clone();
        match tokio::spawn(async move { engine.run(&op2).await }).await {
            Ok(r) => {
                status = r.map_err(|e| TestCaseError::fail(format!("run failed: {e}")))?.status;
                if status != OpStatus::Paused {
                    break;
                }
            }
            Err(_) => clock.advance(TTL + 1),
        }
    }
    // A step that could not decide paused the operation: nothing was undone, and
    // resuming (as often as it pauses) carries it on.
    let mut holds = 0;
    while status == OpStatus::Paused && holds < 10 {
        let detail = first.load(&op).await.map_err(|e| TestCaseError::fail(e.to_string()))?.1;
        prop_assert!(detail.held.is_some(), "paused without a step holding it");
        prop_assert!(fx.lines().iter().all(|l| l.starts_with("apply")), "a hold compensates nothing");
        first.request_resume(&op, "p").await.map_err(|e| TestCaseError::fail(e.to_string()))?;
        status = make(None).run(&op).await.map_err(|e| TestCaseError::fail(format!("run failed: {e}")))?.status;
        holds += 1;
    }
    prop_assert!(status.is_terminal(), "ended {status:?}");
    let count = |what: &str, i: usize| fx.count(&format!("{what} {op}:s{i}"));
    for i in 0..steps.len() {
        prop_assert!(count("apply", i) <= 1 && count("undo", i) <= 1, "step s{} applied or undone twice", i);
    }
    let applied: Vec<usize> = (0..steps.len()).filter(|i| count("apply", *i) == 1).collect();
    match status {
        OpStatus::Succeeded => {
            prop_assert_eq!(applied.len(), steps.len());
            prop_assert!(fx.lines().iter().all(|l| l.starts_with("apply")));
        }
        OpStatus::Compensated | OpStatus::Cancelled => {
            for &i in &applied {
                let expect = usize::from(steps[i].safety == "reversible");
                prop_assert_eq!(count("undo", i), expect, "s{} ({}) after {:?}", i, steps[i].safety, status);
                prop_assert!(steps[i].safety != "irreversible", "an irreversible step ran, so compensation must block");
            }
            let undos: Vec<String> = fx.lines().into_iter().filter(|l| l.starts_with("undo")).collect();
            let mut expected: Vec<String> = applied
                .iter()
                .filter(|i| steps[**i].safety == "reversible")
                .map(|i| format!("undo {op}:s{i}"))
                .collect();
            expected.reverse();
            prop_assert_eq!(undos, expected, "compensation runs newest first");
        }
        OpStatus::Failed => {
            // The engine must name the irreversible step compensation stopped at: one
            // that ran, or one that missed its deadline (its effect is unknown).
            let detail = first.load(&op).await.map_err(|e| TestCaseError::fail(e.to_string()))?.1;
            let at = detail.blocked_at.clone();
            prop_assert!(at.is_some(), "failed without an irreversible line to stop at");
            let line: usize = at.unwrap().trim_start_matches('s').parse().unwrap();
            prop_assert_eq!(steps[line].safety, "irreversible");
            prop_assert!(
                count("apply", line) == 1 || steps[line].behaviour == "timeout",
                "s{} blocked but never ran",
                line
            );
            for &i in &applied {
                let expect = usize::from(i > line && steps[i].safety == "reversible");
                prop_assert_eq!(count("undo", i), expect, "s{} relative to the irreversible line s{}", i, line);
            }
        }
        other => prop_assert!(false, "unexpected status {other:?}"),
    }
    Ok(())
}

/// Simulated crashes are panics by design; keep them off the output, report the rest.
fn quiet_simulated_crashes() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let simulated = info.payload().downcast_ref::<&str>().is_some_and(|m| *m == "simulated crash");
            if !simulated {
                default(info);
            }
        }));
    });
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn every_schedule_ends_consistently(
        steps in prop::collection::vec(step_spec(), 1..6),
        crashes in prop::collection::vec(0u32..30, 0..3),
        cancel_after in prop::option::of(0u32..3),
    ) {
        quiet_simulated_crashes();
        // Time is a manual clock the simulation moves: deadlines and backoffs cost nothing.
        let clock = ManualClock::new(1_000_000);
        skiff_clock::simulate(&clock, scenario(clock.clone(), steps, crashes, cancel_after))?;
    }
}
