//! Deterministic simulation: a first deploy, a canary deploy over it and a rollback,
//! each run by the same engine, step catalog and approval policy `skiff` uses, on a
//! ledger over a fault-injecting store (errors, latency, lost responses) — with the
//! engine killed at a seeded hook point and resumed by another. Time is a manual clock
//! the simulation moves, so bakes, retention, leases and backoffs cost nothing.
//!
//! Every seed asserts the ledger's invariants: each step succeeded exactly once and
//! nothing was compensated, each provider effect happened once, the service ends on
//! the expected release with no claim left, and `state verify` is clean (gap-free
//! logs, sound documents and references). A failing seed prints its number; rerun it
//! alone with `SKIFF_SIM_SEEDS=17 cargo test -p skiff-ops --test simulation`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use skiff_clock::{Clock, IdGen, ManualClock, Rng};
use skiff_objstore::{FaultPlan, Faulty, MemoryStore, RetryPolicy, Retrying, Store};
use skiff_ops::Context;
use skiff_pluginapi::{Provider, RunnerConfig};
use skiff_saga::{Engine, SagaGraph, ServiceScope, Submission};
use skiff_sagaapi::Extensions;
use skiff_state::Ledger;
use skiff_state::docs::{OpStatus, ServiceState};
use skiff_steps::deploy::{Rollout, Stable, group_name};
use skiff_testkit::memory::MemoryProvider;

const SPEC: &str = "\
service: web
artifact: {path: bin/web}
run: {command: [web, --port, \"${PORT}\"]}
port: 8080
health: {path: /healthz, interval: 1s, timeout: 500ms, healthy_threshold: 1, unhealthy_threshold: 2}
instances: {min: 1, max: 4, desired: 2}
rollout:
  strategy: canary
  canary:
    steps: [5, 25, 50, 100]
    bake: 30s
    analysis: {max_error_rate: 1%, max_p95_latency: 250ms, min_requests: 20}
  retention: 10m
";

/// Lease time to live in the simulation (the default).
const TTL_MS: u64 = 30_000;

struct World {
    clock: ManualClock,
    faulty: Arc<Faulty>,
    ledger: Ledger,
    provider: MemoryProvider,
    rng: Rng,
    /// Engine runs that crashed, and store faults injected, so far.
    crashes: u64,
    faults: u64,
}

impl World {
    fn new(seed: u64, clock: ManualClock) -> World {
        let shared: Arc<dyn Clock> = Arc::new(clock.clone());
        let faulty = Arc::new(
            Faulty::new(Arc::new(MemoryStore::new()), FaultPlan::random(seed, 0.03, 0.03, 0.1))
                .with_clock(shared.clone()),
        );
        let policy = RetryPolicy { max_attempts: 10, ..RetryPolicy::default() };
        let store: Arc<dyn Store> =
            Arc::new(Retrying::new(faulty.clone(), policy, Rng::seeded(seed ^ 1)).with_clock(shared.clone()));
        let ledger = Ledger::new(store, IdGen::new(shared.clone(), Rng::seeded(seed ^ 2)), Rng::seeded(seed ^ 3));
        World {
            provider: MemoryProvider::new(shared),
            clock,
            faulty,
            ledger,
            rng: Rng::seeded(seed ^ 4),
            crashes: 0,
            faults: 0,
        }
    }

    /// An engine as `skiff` builds one, crashing (panicking) at hook call `crash_at`.
    fn engine(&self, crash_at: Option<u32>) -> Engine {
        let ctx = Context::service(std::env::temp_dir(), BTreeMap::new(), false);
        let mut ext = Extensions::default();
        ext.insert(self.ledger.clone());
        ext.insert(Arc::new(self.provider.clone()) as Arc<dyn Provider>);
        let calls = Arc::new(AtomicU32::new(0));
        skiff_ops::factory::engine_with(&ctx, &self.ledger, ext).with_lease_wait_ms(0).with_hook(Arc::new(
            move |_point: &str| {
                if crash_at == Some(calls.fetch_add(1, Ordering::SeqCst)) {
                    panic!("simulated crash");
                }
            },
        ))
    }

    fn rollout(&self, ir: &skiff_ir::ServiceIr, release: &str, stable: Option<&str>) -> Rollout {
        let runner = RunnerConfig { bucket: "memory://sim".into(), public_key_pem: String::new(), heartbeat_ms: 2_000 };
        let group = skiff_steps::deploy::group_spec(ir, release, runner);
        let stable = stable.map(|r| Stable {
            release: r.to_owned(),
            group: group_name(&ir.service, r),
            target_group: Some(group_name(&ir.service, r)),
            spec_digest: Some(ir.digest()),
            serving: true,
        });
        skiff_steps::deploy::rollout_for(ir, release, &ir.digest(), group, stable)
    }

    /// Submits `graph`, then runs it to its end through crashes at seeded points and
    /// store failures, a new engine taking over each time the last one's lease lapses.
    async fn run(&mut self, seed: u64, graph: SagaGraph, r: &Rollout, candidate: bool) -> String {
        let submission = Submission {
            graph,
            service: Some(r.service.clone()),
            actor: "sim".into(),
            reason: format!("simulated {}", r.release),
            idempotency_key: Some(format!("sim:{}", r.release)),
            params: serde_json::json!({"release": r.release}),
            scope: Some(ServiceScope {
                service: r.service.clone(),
                candidate_release: candidate.then(|| r.release.clone()),
            }),
        };
        let op = loop {
            match self.engine(None).submit(submission.clone()).await {
                Ok(s) => break s.op_id,
                Err(e) => assert!(is_transient(&e), "seed {seed}: submit failed: {e}"),
            }
        };
        for attempt in 0..40 {
            // Three runs in four crash somewhere in their first 40 hook points (every
            // step boundary, and between an effect and its recorded result).
            let crash = (self.rng.below(4) != 0).then(|| u32::try_from(self.rng.below(40)).unwrap_or(0));
            let engine = self.engine(crash);
            let o = op.clone();
            match tokio::spawn(async move { engine.run(&o).await }).await {
                Ok(Ok(report)) if report.status.is_terminal() => return op,
                Ok(Ok(report)) => panic!("seed {seed}: {op} stopped {:?} (attempt {attempt})", report.status),
                Ok(Err(e)) => assert!(is_transient(&e), "seed {seed}: {op} failed: {e}"),
                Err(panic) => {
                    assert!(panic.is_panic(), "seed {seed}: the engine task was cancelled");
                    self.crashes += 1;
                }
            }
            // The dead engine's lease lapses before anyone else may take over.
            self.clock.advance(TTL_MS + 1);
        }
        panic!("seed {seed}: {op} did not finish in 40 runs");
    }

    /// Every invariant a finished stage must hold.
    async fn check(&mut self, seed: u64, op: &str, service: &str, release: &str) {
        self.faults = self.faulty.injected();
        self.faulty.set_plan(FaultPlan::none());
        let (plan, detail) = self.engine(None).load(op).await.unwrap();
        assert_eq!(
            detail.status,
            OpStatus::Succeeded,
            "seed {seed}: {op} ended {:?}: {:?}",
            detail.status,
            detail.failure
        );
        let events = self.ledger.events_from(op, 1).await.unwrap();
        for (i, e) in events.iter().enumerate() {
            assert_eq!(e.seq, i as u64 + 1, "seed {seed}: {op}'s log has a gap before {}", e.seq);
        }
        for s in &plan.steps {
            let succeeded =
                events.iter().filter(|e| e.event_type == "step_succeeded" && e.data["step"] == s.id.as_str()).count();
            assert_eq!(succeeded, 1, "seed {seed}: step {} of {op} succeeded {succeeded} times", s.id);
        }
        assert!(
            !events.iter().any(|e| e.event_type.starts_with("compensation") || e.event_type == "step_compensated"),
            "seed {seed}: {op} compensated"
        );
        let state: ServiceState =
            self.ledger.read(&skiff_state::keys::service_state(service)).await.unwrap().expect("service state");
        assert_eq!(state.stable_release.as_deref(), Some(release), "seed {seed}: stable after {op}");
        assert_eq!(state.active_operation, None, "seed {seed}: {op} left its claim on {service}");
        assert_eq!(state.candidate_release, None, "seed {seed}: candidate after {op}");
        let group = group_name(service, release);
        assert_eq!(self.provider.group_names(), std::slice::from_ref(&group), "seed {seed}: groups after {op}");
        let weights = self.provider.live_weights(service);
        assert!(
            weights.len() == 1 && weights[0].target_group == group && weights[0].weight == 100,
            "seed {seed}: weights after {op}: {weights:?}"
        );
        let report = self.ledger.verify().await.unwrap();
        assert!(report.is_clean(), "seed {seed}: state verify after {op}: {:?}", report.findings);
    }
}

fn is_transient(e: &skiff_saga::SagaError) -> bool {
    matches!(
        e,
        skiff_saga::SagaError::State(
            skiff_state::StateError::Unavailable { .. }
                | skiff_state::StateError::Conflict { .. }
                | skiff_state::StateError::LeaseHeld { .. }
                | skiff_state::StateError::Fenced { .. }
        )
    )
}

/// Each effect once: a group or target group is created at most once between its
/// deletions, and deleted at most once between its creations.
fn effects_once(seed: u64, journal: &[String]) {
    let mut live: BTreeMap<String, bool> = BTreeMap::new();
    for line in journal {
        let mut words = line.split(' ');
        let (what, name) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
        let (key, alive) = match what {
            "create-group" => (format!("group {name}"), true),
            "delete-group" => (format!("group {name}"), false),
            "create-target-group" => (format!("target group {name}"), true),
            "delete-target-group" => (format!("target group {name}"), false),
            _ => continue,
        };
        let was = live.insert(key.clone(), alive).unwrap_or(false);
        assert_ne!(was, alive, "seed {seed}: `{line}` twice in a row for {key}: {journal:?}");
    }
}

/// One seed's run; how many engine runs crashed and how many store faults hit it.
async fn scenario(seed: u64, clock: ManualClock) -> (u64, u64) {
    let mut w = World::new(seed, clock);
    let spec = skiff_spec::parse("skiff.yaml", SPEC.as_bytes()).unwrap();
    let ir = skiff_ir::compile(&spec);
    while w.ledger.put_spec(&ir).await.is_err() {}
    let (r1, r2) = ("2026.12.03.1", "2026.12.03.2");

    // A first deploy: nothing to canary against, all traffic at once.
    let first = w.rollout(&ir, r1, None);
    let op = w.run(seed, skiff_steps::deploy::deploy_graph(&first).unwrap(), &first, true).await;
    w.check(seed, &op, "web", r1).await;

    // A canary over it: 5 → 25 → 50 → 100 with a 30 s bake and analysis each, then retire.
    w.faulty.set_plan(FaultPlan::random(seed.wrapping_mul(31), 0.03, 0.03, 0.1));
    let canary = w.rollout(&ir, r2, Some(r1));
    let graph = skiff_steps::deploy::deploy_graph(&canary).unwrap();
    assert!(graph.steps.iter().any(|s| s.kind == "deploy.analyse"), "the second deploy is a canary");
    let op = w.run(seed, graph, &canary, true).await;
    w.check(seed, &op, "web", r2).await;

    // A rollback to the first release: its group comes back, the second is retired.
    w.faulty.set_plan(FaultPlan::random(seed.wrapping_mul(97), 0.03, 0.03, 0.1));
    let mut back = w.rollout(&ir, r1, Some(r2));
    back.steps = vec![100];
    let op = w.run(seed, skiff_steps::deploy::rollback_graph(&back).unwrap(), &back, false).await;
    w.check(seed, &op, "web", r1).await;
    effects_once(seed, &w.provider.journal());
    (w.crashes, w.faults)
}

/// Simulated crashes are panics by design; keep them off the output, report the rest.
fn quiet_simulated_crashes() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if info.payload().downcast_ref::<&str>().is_none_or(|m| *m != "simulated crash") {
            default(info);
        }
    }));
}

/// `SKIFF_SIM_SEEDS`: one seed (`17`) or a range (`0..100`, the default).
fn seeds() -> std::ops::Range<u64> {
    let given = skiff_settings::SIM_SEEDS.from_process();
    match given.as_deref().map(|s| s.split_once("..").map_or((s, None), |(a, b)| (a, Some(b)))) {
        Some((a, Some(b))) => a.parse().unwrap_or(0)..b.parse().unwrap_or(100),
        Some((a, None)) => a.parse().map_or(0..100, |n: u64| n..n + 1),
        None => 0..100,
    }
}

#[test]
fn deploys_canaries_and_rollbacks_survive_crashes_and_faults_on_every_seed() {
    quiet_simulated_crashes();
    let (mut crashes, mut faults) = (0, 0);
    let seeds = seeds();
    for seed in seeds.clone() {
        // Each seed on its own runtime whose only time is this clock.
        let clock = ManualClock::new(1_795_000_000_000);
        let result = std::panic::catch_unwind(|| skiff_clock::simulate(&clock, scenario(seed, clock.clone())));
        let Ok((c, f)) = result else { panic!("seed {seed} failed (rerun: SKIFF_SIM_SEEDS={seed})") };
        crashes += c;
        faults += f;
    }
    // The schedule is not vacuous: engines died and the store misbehaved.
    let n = seeds.end - seeds.start;
    eprintln!("{n} seeds: {crashes} engine crashes resumed, {faults} store faults survived");
    assert!(n < 20 || (crashes >= n && faults >= n), "{n} seeds saw {crashes} crashes and {faults} faults");
}
