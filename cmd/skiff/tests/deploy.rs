//! The five commands end to end on the local provider, with real runner processes and
//! real HTTP through the load balancer: canaries that pass without a failed request,
//! a bad release rolled back by itself, inconclusive analysis pausing, a killed CLI
//! resumed, concurrent deploys refused, rollback re-creating a retired group.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;

struct Service<'a> {
    s: &'a Sandbox,
    name: &'static str,
    port: u16,
    env: Vec<(&'static str, String)>,
    _stop: StopAll<'a>,
}

impl<'a> Service<'a> {
    fn new(s: &'a Sandbox) -> Self {
        let runner = skiff_testkit::workspace_bin("skiff-runner").display().to_string();
        let env = vec![("SKIFF_RUNNER_BIN", runner), ("SKIFF_LEASE_TTL_MS", "1500".to_owned())];
        Service { s, name: "web", port: skiff_testkit::free_port(), env: env.clone(), _stop: StopAll(s, env) }
    }

    /// Another service in the same sandbox.
    fn another(&self, name: &'static str) -> Service<'a> {
        Service {
            s: self.s,
            name,
            port: skiff_testkit::free_port(),
            env: self.env.clone(),
            _stop: StopAll(self.s, vec![]),
        }
    }

    fn env(&self) -> Vec<(&str, &str)> {
        self.env.iter().map(|(k, v)| (*k, v.as_str())).collect()
    }

    /// Writes `web.yaml` for a hello release with `env` and the given bake and sample floor.
    fn spec(&self, env: &str, bake: &str, min_requests: u32) -> String {
        let hello = skiff_testkit::workspace_bin("hello");
        let yaml = format!(
            "service: {}\nartifact: {{path: {}}}\nrun: {{command: [hello], env: {{{env}}}}}\nport: {}\n\
             health: {{path: /healthz, interval: 1s, timeout: 500ms, healthy_threshold: 1, unhealthy_threshold: 2}}\n\
             instances: {{min: 1, max: 4, desired: 2}}\n\
             rollout:\n  canary: {{steps: [5, 50, 100], bake: {bake}, analysis: {{max_error_rate: 1%, max_p95_latency: 250ms, min_requests: {min_requests}}}}}\n  drain_timeout: 1s\n  step_timeout: 1m\n",
            self.name,
            hello.display(),
            self.port
        );
        let path = self.s.path().join(format!("{}.yaml", self.name));
        std::fs::write(&path, yaml).unwrap();
        path.display().to_string()
    }

    fn run(&self, args: &[&str]) -> Run {
        self.s.run_env(args, &self.env())
    }

    fn deploy(&self, env: &str, bake: &str, min_requests: u32) -> Run {
        let spec = self.spec(env, bake, min_requests);
        self.run(&["deploy", "-f", &spec, "--yes", "--format", "json"])
    }

    fn spawn_deploy(&self, env: &str, bake: &str) -> std::process::Child {
        let spec = self.spec(env, bake, 1);
        let mut cmd = std::process::Command::new(assert_cmd::cargo::cargo_bin("skiff"));
        cmd.current_dir(self.s.path())
            .env("SKIFF_CONFIG", self.s.path().join("config.yaml"))
            .args(["deploy", "-f", &spec, "--yes", "--format", "json"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null());
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        cmd.spawn().unwrap()
    }
}

/// What a client saw: status and the release that answered.
type Seen = Arc<Mutex<Vec<(u16, Option<String>)>>>;

/// A client sending requests through the load balancer until stopped.
struct Client {
    stop: Arc<AtomicBool>,
    seen: Seen,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Client {
    fn start(port: u16) -> Client {
        let stop = Arc::new(AtomicBool::new(false));
        let seen: Seen = Arc::new(Mutex::new(Vec::new()));
        let (st, se) = (stop.clone(), seen.clone());
        let thread = std::thread::spawn(move || {
            while !st.load(Ordering::SeqCst) {
                let r = get_release(port).unwrap_or((0, None));
                se.lock().unwrap().push(r);
                skiff_clock::SystemClock::block_for(Duration::from_millis(4));
            }
        });
        Client { stop, seen, thread: Some(thread) }
    }

    fn finish(mut self) -> Vec<(u16, Option<String>)> {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
        self.seen.lock().unwrap().clone()
    }
}

fn stable(text: &str) -> String {
    let rules = [
        (r"\b\d{4}\.\d{2}\.\d{2}\.(\d+)\b", "[DATE].$1"),
        (r"\b\d{4}-\d{2}-\d{2}-(\d+)\b", "[DATE]-$1"),
        (r"op-[0-9a-f]{20}", "op-[ID]"),
        (r"127\.0\.0\.1:\d+", "127.0.0.1:[PORT]"),
        (r"\d+ requests?\b", "[N] requests"),
        (r"p95 \d+ ms", "p95 [N] ms"),
        (r"\d+/(\d+) new targets healthy after \d+s", "[N]/$1 new targets healthy after [N]s"),
        (r#""cpu [^"]*""#, r#""cpu [MEASURED]""#),
        (r"\d+ log lines", "[N] log lines"),
        (r"\d+ restarts", "[N] restarts"),
    ];
    rules
        .iter()
        .fold(text.to_owned(), |t, (re, with)| regex::Regex::new(re).unwrap().replace_all(&t, *with).into_owned())
}

/// The envelope without `data` (steps and timings vary), redacted.
fn shape(r: &Run) -> String {
    let mut v = json(r);
    v.as_object_mut().unwrap().remove("data");
    stable(&serde_json::to_string_pretty(&v).unwrap())
}

fn serving_release(port: u16) -> Option<String> {
    get_release(port).and_then(|(c, r)| (c == 200).then_some(r).flatten())
}

#[test]
fn canaries_pass_without_failed_requests_and_a_bad_release_rolls_back_by_itself() {
    let s = Sandbox::new();
    let svc = Service::new(&s);

    // First deploy: state, key and supervisor appear on first use; all traffic at once.
    let first = svc.deploy("HELLO_MESSAGE: v1", "1s", 5);
    assert_eq!(first.code, 0, "{}", first.stdout);
    insta::assert_snapshot!("deploy-first", shape(&first));
    let v1 = json(&first)["data"]["release"].as_str().unwrap().to_owned();
    assert_eq!(serving_release(svc.port).as_deref(), Some(v1.as_str()));

    // A good release while a client sends traffic: no failed request during the shift.
    let client = Client::start(svc.port);
    let second = svc.deploy("HELLO_MESSAGE: v2", "2s", 5);
    let seen = client.finish();
    assert_eq!(second.code, 0, "{}", second.stdout);
    let v2 = json(&second)["data"]["release"].as_str().unwrap().to_owned();
    let failed: Vec<_> = seen.iter().filter(|(c, _)| *c != 200).collect();
    assert!(failed.is_empty(), "{} of {} requests failed during a good canary: {failed:?}", failed.len(), seen.len());
    assert!(seen.iter().any(|(_, r)| r.as_deref() == Some(v2.as_str())), "the new release took traffic");
    assert_eq!(serving_release(svc.port).as_deref(), Some(v2.as_str()));
    let steps = json(&second)["data"]["steps"].clone();
    let ids: Vec<&str> = steps.as_array().unwrap().iter().map(|s| s["id"].as_str().unwrap()).collect();
    assert_eq!(
        ids,
        [
            "provision",
            "register",
            "shift-5",
            "analyse-5",
            "shift-50",
            "analyse-50",
            "shift-100",
            "analyse-100",
            "promote",
            "retire"
        ]
    );

    // A release answering 500: CANARY_FAILED at 5%, back on v2, v3 never above its weight.
    let client = Client::start(svc.port);
    let bad = svc.deploy("HELLO_MESSAGE: v3, HELLO_ERROR_RATE: \"1\"", "2s", 5);
    let seen = client.finish();
    assert_eq!(bad.code, 11, "CANARY_FAILED: {}", bad.stdout);
    insta::assert_snapshot!("deploy-canary-failed", shape(&bad));
    let v3 = json(&bad)["data"]["release"].as_str().unwrap().to_owned();
    let to_v3 = seen.iter().filter(|(_, r)| r.as_deref() == Some(v3.as_str())).count();
    let share = to_v3 as f64 / seen.len().max(1) as f64;
    assert!(
        share <= 0.08,
        "the failing canary got {to_v3} of {} requests ({share:.3}), more than its 5% step",
        seen.len()
    );
    assert_eq!(serving_release(svc.port).as_deref(), Some(v2.as_str()));

    // status, metrics, logs and doctor see it all.
    let status = svc.run(&["status", "web", "--format", "json"]);
    insta::assert_snapshot!("status", shape(&status));
    let st = json(&status);
    assert_eq!(st["data"]["release"], v2.as_str());
    assert_eq!((st["data"]["instances_healthy"].as_u64(), st["data"]["instances_total"].as_u64()), (Some(2), Some(2)));
    assert_eq!(st["data"]["candidate_release"], v3.as_str());
    let all = svc.run(&["status"]);
    assert!(all.stdout.contains("web") && all.stdout.contains(&v2), "{}", all.stdout);
    let metrics = svc.run(&["metrics", "web", "--format", "json"]);
    insta::assert_snapshot!("metrics", shape(&metrics));
    let metrics = json(&metrics);
    assert!(metrics["data"]["target_groups"][0]["requests"].as_u64().unwrap() > 0);
    let logs = svc.run(&["logs", "web", "--format", "json"]);
    insta::assert_snapshot!("logs", shape(&logs));
    let logs = json(&logs);
    assert!(
        logs["data"]["lines"].as_array().unwrap().iter().any(|l| l["line"].as_str().unwrap().contains("GET / 200")),
        "service output is captured"
    );
    let doctor = svc.run(&["doctor", "web", "--format", "json"]);
    assert_eq!(doctor.code, 11, "{}", doctor.stdout);
    insta::assert_snapshot!("doctor-canary-failed", shape(&doctor));
    assert!(json(&doctor)["facts"][0].as_str().unwrap().contains(&format!("release {v3} failed its canary")));

    // rollback --to previous-stable after a failed rollout: the stable release, cleaned up.
    let back = svc.run(&["rollback", "web", "--yes", "--format", "json"]);
    assert_eq!(back.code, 0, "{}", back.stdout);
    insta::assert_snapshot!("rollback", shape(&back));
    assert_eq!(json(&back)["data"]["release"], v2.as_str());
    assert_eq!(svc.run(&["doctor", "web"]).code, 0, "nothing left to find");
    // Again: now previous-stable is v1, whose group was retired; it is re-created.
    let back = svc.run(&[
        "saga",
        "start",
        "rollback",
        "--service",
        "web",
        "--to",
        "previous-stable",
        "--yes",
        "--format",
        "json",
    ]);
    assert_eq!(back.code, 0, "{}", back.stdout);
    assert_eq!(json(&back)["data"]["release"], v1.as_str());
    assert_eq!(serving_release(svc.port).as_deref(), Some(v1.as_str()));
    assert_eq!(svc.run(&["state", "verify"]).code, 0);
}

#[test]
fn readiness_failures_inconclusive_analysis_and_concurrent_deploys() {
    let s = Sandbox::new();
    let svc = Service::new(&s);
    assert_eq!(svc.deploy("HELLO_MESSAGE: v1", "1s", 1).code, 0);

    // New targets fail /healthz: the rollout stops before any traffic shifts.
    let unhealthy = svc.deploy("HELLO_UNHEALTHY: \"1\"", "1s", 1);
    assert_eq!(unhealthy.code, 11, "{}", unhealthy.stdout);
    insta::assert_snapshot!("deploy-not-ready", shape(&unhealthy));

    // No traffic at all: too few samples is inconclusive and pauses at 5%.
    let quiet = svc.deploy("HELLO_MESSAGE: v4", "1s", 50);
    assert_eq!(quiet.code, 12, "ANALYSIS_INCONCLUSIVE: {}", quiet.stdout);
    let q = json(&quiet);
    assert_eq!(q["summary"], "canary analysis was inconclusive; the rollout paused at 5%");
    let op = q["operation_id"].as_str().unwrap().to_owned();

    // While it is paused, another deploy is refused with what to do.
    let second = svc.deploy("HELLO_MESSAGE: v5", "1s", 1);
    assert_eq!(second.code, 7, "LEASE_HELD: {}", second.stdout);
    let v = json(&second);
    assert_eq!(v["code"], "LEASE_HELD");
    assert!(
        v["recommended_actions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["command"] == format!("skiff saga cancel {op} --yes"))
    );
    let doctor = json(&svc.run(&["doctor", "web", "--format", "json"]));
    assert_eq!(doctor["code"], "ANALYSIS_INCONCLUSIVE");

    // Cancel undoes the shift: all traffic back on v1.
    let cancel = svc.run(&["saga", "cancel", &op, "--yes", "--format", "json"]);
    assert_eq!(cancel.code, 15, "CANCELLED: {}", cancel.stdout);
    assert_eq!(json(&cancel)["data"]["status"], "cancelled", "{}", cancel.stdout);
    let weights = json(&svc.run(&["status", "web", "--format", "json"]))["data"]["weights"].clone();
    assert_eq!(weights.as_array().unwrap().iter().filter(|w| w["weight"].as_u64() > Some(0)).count(), 1, "{weights}");
    assert!(serving_release(svc.port).is_some());
}

#[test]
fn a_killed_cli_mid_deploy_is_resumed_to_the_end() {
    let s = Sandbox::new();
    let svc = Service::new(&s);
    assert_eq!(svc.deploy("HELLO_MESSAGE: v1", "1s", 1).code, 0);
    let client = Client::start(svc.port);
    let mut child = svc.spawn_deploy("HELLO_MESSAGE: v2", "3s");
    // Wait until the canary bakes at 50%, then kill the CLI outright.
    let l = ledger(s.path());
    let baking = || {
        block(async {
            let Ok(idx) = l.rebuild_index().await else { return None };
            for (op, _) in idx.operations.iter().filter(|(_, e)| e.saga.as_deref() == Some("deploy")) {
                let events = l.events_after(op, 0).await.ok()?;
                if events.iter().any(|e| e.event_type == "step_started" && e.data["step"] == "analyse-50") {
                    return Some(op.clone());
                }
            }
            None
        })
    };
    let mut op = None;
    assert!(skiff_testkit::wait_until(Duration::from_secs(60), || {
        op = baking();
        op.is_some()
    }));
    let op = op.unwrap();
    // A second deploy while this one runs is refused, naming the running operation.
    let second = svc.deploy("HELLO_MESSAGE: v9", "1s", 1);
    assert_eq!(second.code, 7, "LEASE_HELD: {}", second.stdout);
    assert_eq!(json(&second)["operation_id"], op.as_str());
    let _ = std::process::Command::new("kill").args(["-KILL", &child.id().to_string()]).status();
    let _ = child.wait();

    let status = json(&svc.run(&["status", "web", "--format", "json"]));
    assert_eq!(status["data"]["active_operation"]["op_id"], op.as_str(), "status shows the interrupted operation");
    let resumed = svc.run(&["saga", "resume", &op, "--yes", "--format", "json"]);
    assert_eq!(json(&resumed)["data"]["status"], "succeeded", "{}", resumed.stdout);
    let seen = client.finish();
    assert!(seen.iter().all(|(c, _)| *c == 200), "no failed request while the CLI died and resumed");
    assert_eq!(svc.run(&["state", "verify"]).code, 0);
    assert_eq!(svc.run(&["doctor", "web"]).code, 0);

    // Pause mid-rollout from another terminal; resume it while `deploy --watch` follows.
    let first_op = op.clone();
    let client = Client::start(svc.port);
    let child = svc.spawn_deploy("HELLO_MESSAGE: v3", "2s");
    let l = ledger(s.path());
    let running = || {
        block(async {
            let st =
                l.read::<skiff_state::docs::ServiceState>(&skiff_state::keys::service_state("web")).await.ok()??;
            let op = st.active_operation.filter(|o| *o != first_op)?;
            let events = l.events_after(&op, 0).await.ok()?;
            events.iter().any(|e| e.event_type == "step_started" && e.data["step"] == "analyse-5").then_some(op)
        })
    };
    let mut op = None;
    assert!(skiff_testkit::wait_until(Duration::from_secs(60), || {
        op = running();
        op.is_some()
    }));
    let op = op.unwrap();
    let paused = svc.run(&["saga", "pause", &op, "--yes", "--format", "json"]);
    assert_eq!(paused.code, 0, "{}", paused.stdout);
    let out = child.wait_with_output().unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["data"]["status"], "paused", "the deploy stops at the next step boundary: {v}");
    let bin = assert_cmd::cargo::cargo_bin("skiff");
    let mut resume = std::process::Command::new(bin);
    resume
        .current_dir(s.path())
        .env("SKIFF_CONFIG", s.path().join("config.yaml"))
        .args(["saga", "resume", &op, "--yes", "--format", "json"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    for (k, v) in svc.env() {
        resume.env(k, v);
    }
    let mut resume = resume.spawn().unwrap();
    let spec = s.path().join("web.yaml").display().to_string();
    let watched = svc.run(&["deploy", "-f", &spec, "--watch", "--format", "json"]);
    assert!(resume.wait().unwrap().success());
    assert_eq!(watched.code, 0, "{}", watched.stdout);
    assert!(watched.stdout.contains("\"step_started\""), "--watch streams the events: {}", watched.stdout);
    let seen = client.finish();
    assert!(seen.iter().all(|(c, _)| *c == 200), "no failed request across pause and resume");
    assert!(serving_release(svc.port).is_some_and(|r| r.ends_with(".3")), "v3 took over");
}

fn doctor(svc: &Service<'_>, args: &[&str]) -> serde_json::Value {
    let mut all = vec!["doctor"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--format", "json"]);
    json(&svc.run(&all))
}

fn has_finding(v: &serde_json::Value, code: &str, text: &str) -> bool {
    v["data"]["findings"]
        .as_array()
        .is_some_and(|f| f.iter().any(|f| f["code"] == code && f["summary"].as_str().unwrap_or("").contains(text)))
}

#[test]
fn doctor_finds_each_problem_as_it_really_happens() {
    let s = Sandbox::new();
    let svc = Service::new(&s);

    // Bucket not initialized, then not writable (a file where the probe goes).
    let v = doctor(&svc, &[]);
    assert_eq!(v["code"], "STATE_UNAVAILABLE", "{v}");
    assert_eq!(svc.run(&["state", "init", "--yes"]).code, 0);
    std::fs::write(s.path().join(".skiff/state/v1/probes"), b"in the way").unwrap();
    let v = doctor(&svc, &[]);
    assert!(has_finding(&v, "STATE_UNAVAILABLE", "cannot be used"), "{v}");
    std::fs::remove_file(s.path().join(".skiff/state/v1/probes")).unwrap();

    // No signing key, and no local supervisor.
    let v = doctor(&svc, &[]);
    assert!(has_finding(&v, "SIGNATURE_INVALID", "no signing key"), "{v}");
    assert!(has_finding(&v, "PROVIDER_ERROR", "cannot be reached"), "{v}");
    assert_eq!(svc.run(&["keys", "generate"]).code, 0);

    // A dead engine's expired lease: the operation is stuck until resumed.
    let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("skiff"))
        .current_dir(s.path())
        .env("SKIFF_CONFIG", s.path().join("config.yaml"))
        .env("SKIFF_LEASE_TTL_MS", "500")
        .args(["saga", "start", "selftest", "--param", "wait_ms=60000", "--param", "seal=false", "--yes"])
        .args(["--idempotency-key", "stuck"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let op = skiff_saga::Engine::op_id_for("selftest", "stuck");
    let l = ledger(s.path());
    assert!(skiff_testkit::wait_until(Duration::from_secs(30), || {
        block(l.events_after(&op, 0)).is_ok_and(|e| e.iter().any(|e| e.event_type == "step_progress"))
    }));
    // While its engine lives but nothing happens for longer than allowed: no progress.
    let quiet = || {
        let r = svc.s.run_env(&["doctor", "--format", "json"], &[("SKIFF_DOCTOR_STUCK_AFTER_MS", "50")]);
        has_finding(&json(&r), "DEADLINE_EXCEEDED", "has made no progress")
    };
    assert!(skiff_testkit::wait_until(Duration::from_secs(20), quiet), "a live but silent operation is reported");
    let _ = std::process::Command::new("kill").args(["-KILL", &child.id().to_string()]).status();
    let _ = child.wait();
    skiff_clock::SystemClock::block_for(Duration::from_millis(700));
    let v = doctor(&svc, &[]);
    assert!(has_finding(&v, "LEASE_HELD", "is stuck"), "{v}");
    assert!(
        v["recommended_actions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["command"] == format!("skiff saga resume {op} --yes")),
        "{v}"
    );
    assert_eq!(svc.run(&["saga", "cancel", &op, "--yes"]).code, 15);

    // A healthy service: nothing to find.
    assert_eq!(svc.deploy("HELLO_MESSAGE: v1", "1s", 1).code, 0);
    let v = doctor(&svc, &["web"]);
    assert_eq!(v["code"], "OK", "{v}");

    // Weights changed by hand: the provider differs from the ledger.
    let provider = skiff_provider_local::LocalProvider::new(
        skiff_provider_local::LocalDir::new(s.path().join(".skiff/local")),
        ledger(s.path()),
    );
    use skiff_pluginapi::{Compute, Traffic};
    let weights = block(provider.weights("web")).unwrap();
    block(provider.set_weights("web", &[])).unwrap();
    let v = doctor(&svc, &["web"]);
    assert!(has_finding(&v, "DRIFTED", "does not send all traffic"), "{v}");
    block(provider.set_weights("web", &weights)).unwrap();

    // A tampered artifact: a replacement instance refuses to start it.
    let release =
        json(&svc.run(&["status", "web", "--format", "json"]))["data"]["release"].as_str().unwrap().to_owned();
    let manifest = json(&svc.run(&["release", "show", "web", &release, "--format", "json"]));
    let digest =
        manifest["data"]["manifest"]["artifact"]["digest"].as_str().unwrap().trim_start_matches("sha256:").to_owned();
    let blob = s.path().join(format!(".skiff/state/v1/blobs/sha256/{digest}"));
    let original = std::fs::read(&blob).unwrap();
    std::fs::write(&blob, b"#!/bin/sh\necho tampered\n").unwrap();
    let group = format!("web-{}", release.replace('.', "-"));
    let first = block(provider.describe_group(&group)).unwrap().unwrap().instances[0].id.clone();
    block(provider.terminate_instance(&group, &first)).unwrap();
    assert!(
        skiff_testkit::wait_until(Duration::from_secs(60), || has_finding(
            &doctor(&svc, &["web"]),
            "DIGEST_MISMATCH",
            "refused"
        )),
        "{}",
        doctor(&svc, &["web"])
    );

    std::fs::write(&blob, original).unwrap();

    // A program that keeps crashing: a crash loop, and the member turns unhealthy.
    let crashy = svc.another("crashy");
    assert_eq!(crashy.deploy("HELLO_CRASH_AFTER_MS: \"1500\"", "1s", 1).code, 0);
    assert!(
        skiff_testkit::wait_until(Duration::from_secs(90), || has_finding(
            &doctor(&crashy, &["crashy"]),
            "UNHEALTHY",
            "crash looping"
        )),
        "{}",
        doctor(&crashy, &["crashy"])
    );
}
