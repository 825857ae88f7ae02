//! Crash safety with real processes: a child runs a saga on a `file://` ledger and is
//! killed with SIGKILL at one point — every step boundary, and between "effect
//! applied" and "result recorded" — then a fresh engine resumes. Every effect (and
//! every compensation) must have happened exactly once.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use skiff_objstore::OpenOptions;
use skiff_saga::{Engine, Registry, SagaBuilder, SagaGraph, Submission};
use skiff_sagaapi::Extensions;
use skiff_state::Ledger;
use skiff_state::docs::OpStatus;

use common::{Counted, EffectHook, Effects};

const TTL_MS: u64 = 800;

fn graph(failing: bool) -> SagaGraph {
    let c = if failing { json!({"fail": "terminal"}) } else { json!({}) };
    SagaBuilder::new("crash")
        .step("a", "counted", json!({}))
        .step("b", "counted", json!({}))
        .step("c", "counted", c)
        .build()
        .unwrap()
}

fn engine(dir: &Path, hook: Option<EffectHook>) -> Engine {
    let url = format!("file://{}", dir.join("state").display());
    let ledger = Ledger::open(&url, &OpenOptions::default()).unwrap();
    let mut ext = Extensions::default();
    ext.insert(Effects::Dir(dir.to_path_buf()));
    let engine = Engine::new(ledger, Registry::new().with(Counted)).with_lease_ttl_ms(TTL_MS);
    match hook {
        Some(h) => {
            ext.insert(h.clone());
            engine.with_extensions(ext).with_hook(h)
        }
        None => engine.with_extensions(ext),
    }
}

fn submission(failing: bool) -> Submission {
    Submission {
        graph: graph(failing),
        service: None,
        actor: "crash-test".into(),
        reason: String::new(),
        idempotency_key: Some("crash-test".into()),
        params: json!({}),
        scope: None,
    }
}

/// The child: runs the saga and freezes at `SKIFF_CRASH_AT` until it is killed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn child() {
    let (Ok(point), Ok(dir)) = (std::env::var("SKIFF_CRASH_AT"), std::env::var("SKIFF_CRASH_DIR")) else { return };
    let failing = std::env::var("SKIFF_CRASH_FAILING").is_ok();
    let dir = std::path::PathBuf::from(dir);
    let marker = dir.join("crashed");
    let hook: EffectHook = Arc::new(move |p: &str| {
        if p == point {
            std::fs::write(&marker, p).unwrap();
            loop {
                skiff_clock::SystemClock::block_for(Duration::from_secs(1));
            }
        }
    });
    let e = engine(&dir, Some(hook));
    let op = e.submit(submission(failing)).await.unwrap().op_id;
    e.run(&op).await.unwrap();
    std::fs::write(dir.join("finished"), "").unwrap();
}

fn crash_and_resume(point: &str, failing: bool) {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["child", "--exact", "--test-threads=1"])
        .env("SKIFF_CRASH_AT", point)
        .env("SKIFF_CRASH_DIR", dir.path())
        .envs(failing.then_some(("SKIFF_CRASH_FAILING", "1")))
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let reached = skiff_testkit::wait_until(Duration::from_secs(30), || dir.path().join("crashed").exists());
    let _ = Command::new("kill").args(["-KILL", &child.id().to_string()]).status();
    let _ = child.wait();
    assert!(reached, "the child never reached {point}");
    assert!(!dir.path().join("finished").exists());

    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let e = engine(dir.path(), None).with_lease_wait_ms(10 * TTL_MS);
    let op = Engine::op_id_for("crash", "crash-test");
    let report = rt.block_on(e.run(&op)).unwrap_or_else(|err| panic!("resume after a crash at {point} failed: {err}"));
    let fx = Effects::Dir(dir.path().to_path_buf());
    let count = |what: &str, s: &str| fx.count(&format!("{what} {op}:{s}"));
    if failing {
        assert_eq!(report.status, OpStatus::Compensated, "crash at {point}");
        for s in ["a", "b"] {
            assert_eq!((count("apply", s), count("undo", s)), (1, 1), "step {s} after a crash at {point}");
        }
        assert_eq!(count("apply", "c"), 0);
    } else {
        assert_eq!(report.status, OpStatus::Succeeded, "crash at {point}");
        for s in ["a", "b", "c"] {
            assert_eq!(count("apply", s), 1, "step {s} applied exactly once after a crash at {point}");
        }
    }
    let verify = rt.block_on(e.ledger().verify()).unwrap();
    assert!(verify.is_clean(), "crash at {point}: {:?}", verify.findings);
}

#[test]
fn sigkill_at_every_step_boundary_then_resume_applies_each_effect_once() {
    for step in ["a", "b", "c"] {
        for point in ["before:step_started", "after:step_started", "after:effect", "after:result", "after:cursor"] {
            crash_and_resume(&format!("{point}:{step}"), false);
        }
    }
}

#[test]
fn sigkill_during_compensation_then_resume_undoes_each_step_once() {
    for point in ["after:step_started:c", "after:undo:b", "after:compensated:b", "after:undo:a", "after:compensated:a"]
    {
        crash_and_resume(point, true);
    }
}
