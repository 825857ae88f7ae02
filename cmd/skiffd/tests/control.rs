//! skiffd and skiff-worker as real processes over a file:// bucket: tokens and roles,
//! intents (idempotent, surviving SIGKILL), the status API, policies, two workers
//! sharing operations, and a deploy through the server repaired after drift.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

mod common;
use common::{Daemon, Down, block, http, ledger, remote, skiffd, token, worker, worker_with};

fn bearer(t: &str) -> String {
    format!("Bearer {t}")
}

fn intent(port: u16, tok: &str, key: &str, body: &Value) -> (u16, Value) {
    let b = bearer(tok);
    http(port, "POST", "/v1/intents", &[("authorization", &b), ("Idempotency-Key", key)], Some(body))
}

fn event_types(dir: &Path, op: &str) -> Vec<String> {
    block(ledger(dir).events_from(op, 0)).unwrap().into_iter().map(|e| e.event_type).collect()
}

#[test]
fn tokens_roles_intents_status_and_policies() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let viewer = token(dir, "victor", "viewer");
    let operator = token(dir, "olga", "operator");
    let approver = token(dir, "ann", "approver");
    std::fs::create_dir_all(dir.join("policies")).unwrap();
    std::fs::write(
        dir.join("policies/cost.rego"),
        "package skiff.cost\n\ndeny contains msg if {\n  input.service == \"lavish\"\n  msg := \"lavish may not run here\"\n}\n",
    )
    .unwrap();
    let d = skiffd(dir, &["--policies", dir.join("policies").to_str().unwrap()]);
    let knobs =
        json!({"service_name": "orders-api", "environment": "production", "availability": "high", "cost": "low"});

    assert_eq!(http(d.port, "POST", "/v1/intents", &[("Idempotency-Key", "a")], Some(&knobs)).0, 401);
    assert_eq!(http(d.port, "GET", "/v1/services/orders-api/status", &[], None).0, 401);
    let (code, body) = intent(d.port, &viewer, "a", &knobs);
    assert_eq!(code, 403, "{body}");
    assert_eq!(body["code"], "PERMISSION_DENIED");

    // The built-in rule: production needs the approver role.
    let (code, body) = intent(d.port, &operator, "a", &knobs);
    assert_eq!(code, 422, "{body}");
    assert_eq!(body["code"], "POLICY_DENIED");
    assert!(body["facts"][0].as_str().unwrap().contains("production-needs-approver"), "{body}");
    insta::assert_json_snapshot!("intent-denied-by-policy", body);
    // A Rego policy denial.
    let lavish = json!({"service_name": "lavish", "environment": "staging"});
    let (code, body) = intent(d.port, &operator, "l", &lavish);
    assert_eq!(code, 422, "{body}");
    assert!(body["facts"][0].as_str().unwrap().contains("lavish may not run here"), "{body}");

    let (code, first) = intent(d.port, &approver, "a", &knobs);
    assert_eq!(code, 200, "{first}");
    assert_eq!(first["decision"]["availability_plan"]["instances"], 3);
    assert_eq!(first["decision"]["cost_plan"]["level"], "low");
    assert!(!first["execution_plan"]["actions"].as_array().unwrap().is_empty());
    assert_eq!(first["policy"]["allowed"], true);
    insta::assert_json_snapshot!("intent-accepted", first);
    let op = first["op_id"].as_str().unwrap().to_owned();
    let (code, again) = intent(d.port, &approver, "a", &knobs);
    assert_eq!((code, again["op_id"].as_str(), again["created"].as_bool()), (200, Some(op.as_str()), Some(false)));
    assert_eq!(event_types(dir, &op), ["operation_planned"], "the retry recorded nothing");
    let other = json!({"service_name": "orders-api", "environment": "production", "availability": "low"});
    let (code, clash) = intent(d.port, &approver, "a", &other);
    assert_eq!((code, clash["code"].as_str()), (409, Some("ALREADY_EXISTS")), "same key, another intent: {clash}");

    let b = bearer(&viewer);
    let mut status = Value::Null;
    assert!(skiff_testkit::wait_until(Duration::from_secs(10), || {
        status = http(d.port, "GET", "/v1/services/orders-api/status", &[("authorization", &b)], None).1;
        status["latest_intent"] == op.as_str()
    }));
    assert_eq!(status["service_name"], "orders-api");
    assert_eq!(status["decision"]["availability_plan"]["level"], "high");
    assert!(status["execution_plan"]["actions"].as_array().is_some());
    assert_eq!(status["reconciliation_status"], "UNKNOWN");
    insta::assert_json_snapshot!("service-status", status);
    assert!(status.get("release").is_some() && status.get("health").is_some());
    assert_eq!(http(d.port, "GET", "/v1/services/nope/status", &[("authorization", &b)], None).0, 404);
    let (code, shown) = http(d.port, "GET", &format!("/v1/operations/{op}"), &[("authorization", &b)], None);
    assert_eq!(code, 200, "{shown}");
    assert_eq!(shown["intent"]["actor"], "ann");

    assert_eq!(http(d.port, "GET", "/healthz", &[], None).0, 200);
    let (_, metrics) = http(d.port, "GET", "/metrics", &[], None);
    assert!(metrics.as_str().unwrap().contains("skiffd_requests_total{route=\"/v1/intents\",status=\"200\"}"));
    let (_, openapi) = http(d.port, "GET", "/v1/openapi.json", &[], None);
    assert!(openapi["paths"]["/v1/services/{svc}/status"]["get"].is_object());

    // Every mutating call is audited, refusals included.
    let audit = block(ledger(dir).audit_since(None)).unwrap();
    let actions: Vec<_> = audit.iter().map(|a| a.action.as_str()).collect();
    assert!(actions.contains(&"api.intent.refused") && actions.contains(&"api.intent"), "{actions:?}");
}

#[test]
fn sigkill_while_posting_intents_loses_nothing_acknowledged_and_retries_create_nothing_twice() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    let approver = token(&dir, "ann", "approver");
    let d = skiffd(&dir, &[]);
    let port = d.port;
    let tok = approver.clone();
    let poster = std::thread::spawn(move || {
        let mut acked = Vec::new();
        for i in 0..40 {
            let body =
                json!({"service_name": format!("svc-{i}"), "environment": "staging", "availability": "standard"});
            let r = std::panic::catch_unwind(|| intent(port, &tok, &format!("key-{i}"), &body));
            match r {
                Ok((200, b)) => acked.push((i, b["op_id"].as_str().unwrap().to_owned())),
                _ => break,
            }
        }
        acked
    });
    skiff_clock::SystemClock::block_for(Duration::from_millis(1500));
    drop(d); // SIGKILL
    let acked = poster.join().unwrap();
    assert!(!acked.is_empty(), "some intents were acknowledged before the kill");

    let d = skiffd(&dir, &[]);
    let l = ledger(&dir);
    for (i, op) in &acked {
        let intent_doc: Option<skiff_state::docs::OperationIntent> =
            block(l.read(&skiff_state::keys::op_intent(op))).unwrap();
        assert!(intent_doc.is_some(), "acknowledged intent {op} is in the ledger");
        let body = json!({"service_name": format!("svc-{i}"), "environment": "staging", "availability": "standard"});
        let (code, again) = intent(d.port, &approver, &format!("key-{i}"), &body);
        assert_eq!(code, 200, "{again}");
        assert_eq!(again["op_id"], op.as_str());
        assert_eq!(again["created"], false);
    }
    // Retry the one that may have been cut short, then count: one operation per key.
    let next = acked.len();
    let body = json!({"service_name": format!("svc-{next}"), "environment": "staging", "availability": "standard"});
    assert_eq!(intent(d.port, &approver, &format!("key-{next}"), &body).0, 200);
    let index = block(l.rebuild_index()).unwrap();
    let intents = index.operations.values().filter(|o| o.saga.as_deref() == Some("intent")).count();
    assert_eq!(intents, next + 1);
    for op in index.operations.keys() {
        assert_eq!(event_types(&dir, op), ["operation_planned"], "{op}");
    }
}

#[test]
fn two_workers_run_each_operation_once() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let approver = token(dir, "ann", "approver");
    let d = skiffd(dir, &[]);
    let mut ops = Vec::new();
    for i in 0..12 {
        let (code, b) = intent(
            d.port,
            &approver,
            &format!("k{i}"),
            &json!({"service_name": format!("s{i}"), "environment": "staging"}),
        );
        assert_eq!(code, 200, "{b}");
        ops.push(b["op_id"].as_str().unwrap().to_owned());
    }
    let (_w1, log1) = worker(dir, "w1", 0);
    let (_w2, log2) = worker(dir, "w2", 0);
    let l = ledger(dir);
    assert!(skiff_testkit::wait_until(Duration::from_secs(60), || {
        let index = block(l.rebuild_index()).unwrap();
        ops.iter().all(|op| index.operations[op].status == Some(skiff_state::docs::OpStatus::Succeeded))
    }));
    for op in &ops {
        let types = event_types(dir, op);
        let started = types.iter().filter(|t| *t == "operation_started" || *t == "operation_resumed").count();
        assert_eq!(started, 1, "{op} ran once: {types:?}");
    }
    let ran = |p: &Path| std::fs::read_to_string(p).unwrap().lines().filter(|l| l.contains("\"ran\"")).count();
    // A worker records a run once it has answered for it, a moment after the status.
    skiff_testkit::wait_until(Duration::from_secs(10), || ran(&log1) + ran(&log2) >= ops.len());
    assert_eq!(ran(&log1) + ran(&log2), ops.len());

    // Pause and resume through the server: a worker stops at the boundary, and one
    // picks the operation up again once resume is asked for.
    use skiff_sdk::grpc::{Client, proto};
    let status_of = |op: &str| {
        block(l.rebuild_index()).unwrap().operations.get(op).and_then(|o| o.status).map(|s| s.as_str().to_owned())
    };
    let client = || Client::new(&format!("http://127.0.0.1:{}", d.port), Some(&approver)).unwrap();
    let start = proto::SagaStartRequest {
        kind: "selftest".into(),
        params: [("wait_ms", "4000"), ("seal", "false")]
            .map(|(k, v)| proto::Param { key: k.into(), value: v.into() })
            .to_vec(),
        confirmed: true,
        ..Default::default()
    };
    let started = block(async { client().start_saga(start).await }).envelope;
    assert!(started.ok, "{started:?}");
    let op = started.operation_id.clone().unwrap();
    assert!(skiff_testkit::wait_until(Duration::from_secs(20), || status_of(&op).as_deref() == Some("running")));
    let paused = block(async {
        client().pause(proto::OperationRequest { op_id: op.clone(), outcome: false, confirmed: true }).await
    })
    .envelope;
    assert!(paused.ok, "{paused:?}");
    assert!(
        skiff_testkit::wait_until(Duration::from_secs(30), || status_of(&op).as_deref() == Some("paused")),
        "{:?}",
        status_of(&op)
    );
    let resumed = block(async {
        client().resume(proto::OperationRequest { op_id: op.clone(), outcome: false, confirmed: true }).await
    })
    .envelope;
    assert!(resumed.ok, "{resumed:?}");
    assert!(
        skiff_testkit::wait_until(Duration::from_secs(30), || status_of(&op).as_deref() == Some("succeeded")),
        "{:?}",
        status_of(&op)
    );
}

/// `web` (two hello instances) deployed with `skiff --server` through skiffd and a
/// worker `w1` reconciling every `reconcile_ms`; returns the release's group.
fn deploy_web(dir: &Path, d: &Daemon, approver: &str, viewer: &str) -> String {
    let work = dir.join("app");
    std::fs::create_dir_all(work.join("bin")).unwrap();
    std::fs::copy(skiff_testkit::workspace_bin("hello"), work.join("bin/hello")).unwrap();
    let port = skiff_testkit::free_port();
    std::fs::write(
        work.join("skiff.yaml"),
        format!(
            "service: web\nartifact: {{path: bin/hello}}\nrun: {{command: [hello]}}\nport: {port}\n\
             health: {{path: /healthz, interval: 1s, timeout: 500ms, healthy_threshold: 1, unhealthy_threshold: 2}}\n\
             instances: {{min: 1, max: 4, desired: 2}}\n\
             rollout:\n  canary: {{steps: [100], bake: 0s}}\n  drain_timeout: 1s\n  step_timeout: 1m\n"
        ),
    )
    .unwrap();
    let skiff = |tok: &str, args: &[&str]| remote(dir, d, tok, args);
    let (code, denied) = skiff(viewer, &["deploy", "--no-build", "--yes"]);
    assert_eq!((code, denied["code"].as_str()), (22, Some("PERMISSION_DENIED")), "{denied}");
    let audit = block(ledger(dir).audit_since(None)).unwrap();
    assert!(
        audit.iter().any(|a| a.actor == "victor" && a.action == "api.Deploy.refused"),
        "{:?}",
        audit.iter().map(|a| (&a.actor, &a.action)).collect::<Vec<_>>()
    );
    let (code, deployed) = skiff(approver, &["deploy", "--no-build", "--yes"]);
    assert_eq!(code, 0, "{deployed}");
    let (code, status) = skiff(viewer, &["status", "web"]);
    assert_eq!(code, 0, "{status}");
    let state = block(ledger(dir).read::<skiff_state::docs::ServiceState>(&skiff_state::keys::service_state("web")))
        .unwrap()
        .unwrap();
    skiff_steps::deploy::group_name("web", state.current_release.as_deref().unwrap())
}

fn local_provider(dir: &Path) -> skiff_provider_local::LocalProvider {
    skiff_provider_local::LocalProvider::new(skiff_provider_local::LocalDir::new(dir.join("local")), ledger(dir))
}

/// Behind the ledger's back: one instance fewer, the weights pointed nowhere.
fn make_drift(provider: &skiff_provider_local::LocalProvider, group: &str) {
    use skiff_pluginapi::Provider as _;
    block(async {
        provider.compute().set_desired(group, 1).await.unwrap();
        provider
            .traffic()
            .set_weights("web", &[skiff_pluginapi::Weight { target_group: group.to_owned(), weight: 0 }])
            .await
            .unwrap();
    });
}

/// Behind the ledger's back: one instance killed (SIGKILL to its runner), the weights
/// pointed nowhere.
fn kill_instance_and_zero_weights(provider: &skiff_provider_local::LocalProvider, group: &str) {
    use skiff_pluginapi::Provider as _;
    block(async {
        let g = provider.compute().describe_group(group).await.unwrap().unwrap();
        let pid: i32 = g.running()[0].provider_id.strip_prefix("pid:").unwrap().parse().unwrap();
        assert!(Command::new("kill").args(["-9", &pid.to_string()]).status().unwrap().success());
        provider
            .traffic()
            .set_weights("web", &[skiff_pluginapi::Weight { target_group: group.to_owned(), weight: 0 }])
            .await
            .unwrap();
    });
}

/// Waits until the worker ran a repair saga and its latest verdict is in sync (a killed
/// instance is also replaced by the provider itself, so the last drift may clear without
/// a second repair), then for the status API and the provider to agree: two instances
/// running, both targets healthy.
fn assert_repaired(dir: &Path, d: &Daemon, viewer: &str, log: &Path, group: &str) {
    use skiff_pluginapi::Provider as _;
    let records = || std::fs::read_to_string(log).unwrap();
    let provider = local_provider(dir);
    assert!(
        skiff_testkit::wait_until(Duration::from_secs(60), || {
            let lines: Vec<Value> = records().lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
            let repair_ran = lines.iter().any(|l| l["event"] != "ran" && l["op"].is_string());
            let settled = lines.last().is_some_and(|l| l["event"] == "in_sync" || l["event"] == "repaired");
            repair_ran && settled
        }),
        "{}\nhealth: {:?}\ngroup: {:?}",
        records(),
        block(provider.traffic().target_health(group)),
        block(provider.compute().describe_group(group))
    );
    let b = bearer(viewer);
    assert!(skiff_testkit::wait_until(Duration::from_secs(10), || {
        http(d.port, "GET", "/v1/services/web/status", &[("authorization", &b)], None).1["reconciliation_status"]
            == "IN_SYNC"
    }));
    // A replacement may still be starting when the verdict is in: the provider brings the
    // group back to two running instances on its own.
    assert!(
        skiff_testkit::wait_until(Duration::from_secs(30), || {
            block(provider.compute().describe_group(group)).unwrap().unwrap().running().len() == 2
        }),
        "{:?}",
        block(provider.compute().describe_group(group))
    );
    assert!(
        skiff_testkit::wait_until(Duration::from_secs(15), || {
            let h = block(provider.traffic().target_health(group)).unwrap();
            h.len() == 2 && h.iter().all(|t| t.state == skiff_pluginapi::HealthState::Healthy)
        }),
        "{:?}",
        block(provider.traffic().target_health(group))
    );
}

#[test]
fn deploy_through_the_server_then_drift_is_repaired_by_the_worker() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let _down = Down(dir.to_path_buf());
    let (approver, viewer) = (token(dir, "ann", "approver"), token(dir, "victor", "viewer"));
    let d = skiffd(dir, &[]);
    // w1 runs operations only; w2, started once the drift below has settled, reconciles.
    let (_w1, _) = worker(dir, "w1", 0);
    let group = deploy_web(dir, &d, &approver, &viewer);
    // The commands with calls of their own since `Run` is gone, role-checked.
    for args in [&["release", "list", "web"][..], &["metrics", "web"], &["logs", "web"], &["saga", "kinds"]] {
        let (code, out) = remote(dir, &d, &viewer, args);
        assert_eq!(code, 0, "{args:?}: {out}");
    }
    let start = ["saga", "start", "selftest", "--param", "seal=false", "--yes"];
    let (code, refused) = remote(dir, &d, &viewer, &start);
    assert_eq!((code, refused["code"].as_str()), (22, Some("PERMISSION_DENIED")), "{refused}");
    let (code, ran) = remote(dir, &d, &approver, &start);
    assert_eq!(code, 0, "submitted, run by the worker, followed to its end: {ran}");
    assert!(ran["summary"].as_str().unwrap().ends_with("succeeded"), "{ran}");
    // The managed-dependency journeys through the server: planned, refused, gated.
    let (code, missing) = remote(dir, &d, &approver, &["rotate", "secret", "nosuch", "--yes"]);
    assert_eq!((code, missing["code"].as_str()), (4, Some("NOT_FOUND")), "{missing}");
    let (code, missing) = remote(dir, &d, &approver, &["database", "retire", "nosuch", "--yes"]);
    assert_eq!((code, missing["code"].as_str()), (4, Some("NOT_FOUND")), "{missing}");
    let (code, planned) = remote(dir, &d, &viewer, &["rotate", "key", "--dry-run"]);
    assert_eq!(code, 0, "{planned}");
    assert_eq!(planned["data"]["steps"].as_array().map(Vec::len), Some(5), "{planned}");
    let (code, gated) = remote(dir, &d, &approver, &["rotate", "key", "--delete-after", "7d", "--yes"]);
    assert_eq!(
        (code, gated["code"].as_str()),
        (9, Some("APPROVAL_REQUIRED")),
        "run by the worker to its gate: {gated}"
    );
    let op = gated["operation_id"].as_str().unwrap().to_owned();
    let (code, approved) = remote(dir, &d, &approver, &["saga", "approve", &op, "--yes"]);
    assert_eq!(code, 0, "{approved}");
    // The worker runs the approved step: the old key is scheduled, the new one named.
    let store = skiff_secrets::LocalSecrets::new(dir.join("local/secrets"));
    let scheduled = || store.key_versions().unwrap().first().is_some_and(|v| v.deletion_at_ms.is_some());
    assert!(skiff_testkit::wait_until(Duration::from_secs(30), scheduled), "{:?}", store.key_versions());
    let versions = store.key_versions().unwrap();
    assert_eq!(versions.len(), 2, "{versions:?}");
    assert_eq!(versions[1].aliases, ["skiff"], "{versions:?}");
    let (code, idle) = remote(dir, &d, &viewer, &["deploy", "--watch"]);
    assert_eq!((code, idle["code"].as_str()), (4, Some("NOT_FOUND")), "nothing running to watch: {idle}");
    // `logs --follow` through the server: lines keep arriving until interrupted.
    let mut follow = Command::new(skiff_testkit::workspace_bin("skiff"))
        .args(["--server", &format!("http://127.0.0.1:{}", d.port), "--format", "json", "logs", "web", "--follow"])
        .current_dir(dir.join("app"))
        .env("SKIFF_TOKEN", &viewer)
        .env("SKIFF_CONFIG", dir.join("none.yaml"))
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    skiff_clock::SystemClock::block_for(Duration::from_secs(3));
    assert!(follow.try_wait().unwrap().is_none(), "still following after several polls, not ended by an error");
    let _ = follow.kill();
    let out = follow.wait_with_output().unwrap();
    let lines: Vec<Value> =
        String::from_utf8_lossy(&out.stdout).lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
    assert!(!lines.is_empty() && lines.iter().all(|l| l["instance"].is_string()), "{lines:?}");
    let unique: std::collections::BTreeSet<String> = lines.iter().map(Value::to_string).collect();
    assert_eq!(unique.len(), lines.len(), "no line twice");
    let provider = local_provider(dir);
    make_drift(&provider, &group);
    use skiff_pluginapi::Provider as _;
    assert!(skiff_testkit::wait_until(Duration::from_secs(20), || {
        block(async { provider.compute().describe_group(&group).await.unwrap().unwrap().running().len() == 1 })
    }));
    let (_w2, log) = worker(dir, "w2", 1_000);
    assert_repaired(dir, &d, &viewer, &log, &group);
    // The drift had settled before this worker looked: one repair brings it all back.
    let first: Value = serde_json::from_str(std::fs::read_to_string(&log).unwrap().lines().nth(1).unwrap()).unwrap();
    assert_eq!((first["event"].as_str(), first["summary"].as_str()), (Some("repaired"), Some("repaired web: IN_SYNC")));
}

#[test]
fn an_instance_killed_and_weights_changed_by_hand_are_repaired_mid_transition_and_stay_in_sync() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let _down = Down(dir.to_path_buf());
    let (approver, viewer) = (token(dir, "ann", "approver"), token(dir, "victor", "viewer"));
    let d = skiffd(dir, &[]);
    // One worker runs the deploy and reconciles every 300 ms, so the repair starts while
    // the instance is still being stopped: replacements must join the target group.
    let (_w, log) = worker(dir, "w1", 300);
    let group = deploy_web(dir, &d, &approver, &viewer);
    kill_instance_and_zero_weights(&local_provider(dir), &group);
    assert_repaired(dir, &d, &viewer, &log, &group);
    skiff_clock::SystemClock::block_for(Duration::from_secs(3));
    let last = std::fs::read_to_string(&log).unwrap().lines().last().unwrap().to_owned();
    assert!(last.contains("\"in_sync\""), "still in sync after the repair: {last}");
}

#[test]
fn a_repair_policy_does_not_allow_stays_drifted_for_a_person() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let _down = Down(dir.to_path_buf());
    let (approver, viewer) = (token(dir, "ann", "approver"), token(dir, "victor", "viewer"));
    let d = skiffd(dir, &[]);
    let (_w1, _) = worker(dir, "w1", 0);
    let group = deploy_web(dir, &d, &approver, &viewer);
    make_drift(&local_provider(dir), &group);
    // Without the approver role the worker may not change production: no repair runs.
    let (_w2, log) = worker_with(dir, "w2", 500, &["--roles", "viewer,operator"]);
    let records = || std::fs::read_to_string(&log).unwrap();
    assert!(
        skiff_testkit::wait_until(Duration::from_secs(30), || records().contains("\"repair_denied\"")),
        "{}",
        records()
    );
    assert!(!records().contains("\"repaired\""));
    let b = bearer(&viewer);
    let mut status = Value::Null;
    assert!(
        skiff_testkit::wait_until(Duration::from_secs(10), || {
            status = http(d.port, "GET", "/v1/services/web/status", &[("authorization", &b)], None).1;
            status["reconciliation_status"] == "DRIFTED"
        }),
        "{status}"
    );
    assert!(!status["differences"].as_array().unwrap().is_empty());
    // `skiff doctor` names the drift for a person to act on.
    let out = Command::new(skiff_testkit::workspace_bin("skiff"))
        .args(["doctor", "web", "--format", "json", "--bucket"])
        .arg(format!("file://{}", dir.join("state").display()))
        .current_dir(dir)
        .env("SKIFF_CONFIG", dir.join("none.yaml"))
        .output()
        .unwrap();
    let doctor: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(doctor.to_string().contains("DRIFTED"), "{doctor}");
}

/// A throwaway PostgreSQL on 127.0.0.1 (as the `postgres` user when run as root).
struct Postgres {
    data: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
}

impl Postgres {
    fn as_pg(&self, tool: &str) -> Command {
        let root = std::fs::read_to_string("/proc/self/status")
            .unwrap()
            .lines()
            .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"));
        let mut c = if root {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(self.bin.join(tool));
            c
        } else {
            Command::new(self.bin.join(tool))
        };
        c.stdout(Stdio::null()).stderr(Stdio::null());
        c
    }

    fn start() -> Self {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .unwrap()
            .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
            .find(|b| b.join("initdb").exists())
            .unwrap();
        let data = tempfile::tempdir().unwrap();
        let _ = Command::new("chown").args(["-R", "postgres:postgres"]).arg(data.path()).status();
        let pg = Postgres { port: skiff_testkit::free_port(), bin, data };
        let db = pg.data.path().join("db");
        assert!(pg.as_pg("initdb").args(["--auth=trust", "-U", "postgres", "-D"]).arg(&db).status().unwrap().success());
        let opts = format!("-p {} -k {} -c listen_addresses=127.0.0.1", pg.port, pg.data.path().display());
        assert!(
            pg.as_pg("pg_ctl").args(["-w", "-D"]).arg(&db).args(["-o", &opts, "start"]).status().unwrap().success()
        );
        pg
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let _ =
            self.as_pg("pg_ctl").args(["-m", "immediate", "-D"]).arg(self.data.path().join("db")).arg("stop").status();
    }
}

#[test]
fn the_postgres_index_answers_status_and_rebuilds_from_the_bucket() {
    let pg = Postgres::start();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let approver = token(dir, "ann", "approver");
    let d = skiffd(dir, &["--index", &pg.url()]);
    let body = json!({"service_name": "orders-api", "environment": "staging", "availability": "high"});
    assert_eq!(intent(d.port, &approver, "k", &body).0, 200);
    let b = bearer(&approver);
    assert!(skiff_testkit::wait_until(Duration::from_secs(10), || {
        let (code, v) = http(d.port, "GET", "/v1/services/orders-api/status", &[("authorization", &b)], None);
        code == 200 && v["decision"]["availability_plan"]["level"] == "high"
    }));
    drop(d);
    // Emptied by hand, rebuilt from the bucket.
    let psql = |sql: &str| {
        let out = pg
            .as_pg("psql")
            .stdout(Stdio::piped())
            .args(["-h", "127.0.0.1", "-p", &pg.port.to_string(), "-U", "postgres", "-tAc", sql])
            .output()
            .unwrap();
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    };
    psql("DELETE FROM skiff_service_views");
    assert_eq!(psql("SELECT count(*) FROM skiff_service_views"), "0");
    let out = Command::new(env!("CARGO_BIN_EXE_skiffd"))
        .args(["index", "rebuild", "--index", &pg.url(), "--bucket"])
        .arg(format!("file://{}", dir.join("state").display()))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(psql("SELECT count(*) FROM skiff_service_views"), "1");
    assert_eq!(psql("SELECT view->>'service_name' FROM skiff_service_views"), "orders-api");
}

/// A CA, a server certificate for 127.0.0.1 and a client certificate, by `openssl`.
fn certificates(dir: &Path) {
    skiff_testkit::certificates(dir, "IP:127.0.0.1");
}

#[test]
fn mutual_tls_admits_only_clients_with_a_certificate_from_the_ca() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    certificates(dir);
    let viewer = token(dir, "victor", "viewer");
    let p = |f: &str| dir.join(f).display().to_string();
    let d = skiffd(dir, &["--tls-cert", &p("server.pem"), "--tls-key", &p("server.key"), "--client-ca", &p("ca.pem")]);
    let server = format!("https://127.0.0.1:{}", d.port);
    let skiff = |identity: bool| {
        let mut c = Command::new(skiff_testkit::workspace_bin("skiff"));
        c.args(["--server", &server, "--format", "json", "saga", "list"])
            .current_dir(dir)
            .env("SKIFF_TOKEN", &viewer)
            .env("SKIFF_CONFIG", dir.join("none.yaml"))
            .env("SKIFF_TLS_CA", p("ca.pem"));
        if identity {
            c.env("SKIFF_TLS_CERT", p("client.pem")).env("SKIFF_TLS_KEY", p("client.key"));
        }
        let out = c.output().unwrap();
        (out.status.code().unwrap_or(-1), serde_json::from_slice::<Value>(&out.stdout).unwrap_or(Value::Null))
    };
    let (code, ok) = skiff(true);
    assert_eq!(code, 0, "{ok}");
    let (code, refused) = skiff(false);
    assert_ne!(code, 0, "no client certificate, no answer: {refused}");
    assert_eq!(refused["ok"], false);
    // HTTP/JSON over the same mutual TLS (curl is on the machines this runs on).
    let curl = Command::new("curl")
        .args(["-s", "--cacert", &p("ca.pem"), "--cert", &p("client.pem"), "--key", &p("client.key"), "-H"])
        .arg(format!("authorization: Bearer {viewer}"))
        .arg(format!("{server}/v1/services"))
        .output();
    if let Ok(out) = curl {
        let body: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        assert_eq!(body["code"], "OK", "{}", String::from_utf8_lossy(&out.stdout));
    }
    // Plain HTTP on the TLS port gets nothing either.
    let mut s = TcpStream::connect(("127.0.0.1", d.port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let _ = s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
    let mut buf = String::new();
    let _ = s.read_to_string(&mut buf);
    assert!(!buf.contains("\"ok\":true"), "{buf}");
}

#[test]
fn the_sdk_client_speaks_grpc_with_envelopes() {
    use skiff_sdk::grpc::{Client, proto};
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let approver = token(dir, "ann", "approver");
    let d = skiffd(dir, &[]);
    let url = format!("http://127.0.0.1:{}", d.port);
    block(async {
        let client = Client::new(&url, Some(&approver)).unwrap();
        let body = json!({"service_name": "orders-api", "environment": "staging", "cost": "performance"});
        let env = client
            .submit_intent(proto::IntentRequest { json: body.to_string(), idempotency_key: "sdk-1".into() })
            .await
            .envelope;
        assert!(env.ok, "{env:?}");
        assert_eq!(env.data["decision"]["cost_plan"]["level"], "performance");
        let op = env.operation_id.clone().unwrap();
        let mut events =
            client.events(proto::EventsRequest { op_id: op.clone(), after: 0, follow: false }).await.unwrap();
        let first = events.message().await.unwrap().unwrap();
        assert_eq!((first.seq, first.event_type.as_str()), (1, "operation_planned"));
        assert!(events.message().await.unwrap().is_none());
        let listed = client
            .list_sagas(proto::SagaListRequest { service: Some("orders-api".into()), status: None })
            .await
            .envelope;
        assert!(listed.ok && listed.data.to_string().contains(&op), "{listed:?}");
        // A whole spec instead of knobs, and a spec that is not valid: SPEC_INVALID, nothing recorded.
        let spec = "service: billing\nartifact: {path: bin/billing}\nrun: {command: [billing]}\nport: 9000\nenvironment: staging\n";
        let whole = json!({"spec": spec, "availability": "high"});
        let env = client
            .submit_intent(proto::IntentRequest { json: whole.to_string(), idempotency_key: "sdk-2".into() })
            .await
            .envelope;
        assert!(env.ok, "{env:?}");
        assert_eq!(env.data["service_name"], "billing");
        assert_eq!(env.data["decision"]["availability_plan"]["instances"], 3);
        let broken = json!({"spec": "service: Not A Name\n"});
        let env = client
            .submit_intent(proto::IntentRequest { json: broken.to_string(), idempotency_key: "sdk-3".into() })
            .await
            .envelope;
        assert_eq!(env.code, skiff_sdk::Code::SpecInvalid, "{env:?}");
        let anonymous = Client::new(&url, None).unwrap();
        let refused = anonymous.status(proto::ServiceRequest { service: None }).await.envelope;
        assert_eq!(refused.code, skiff_sdk::Code::Unauthenticated);
        let closed = format!("http://127.0.0.1:{}", skiff_testkit::free_port());
        let nowhere = Client::new(&closed, Some("x")).unwrap().status(proto::ServiceRequest::default()).await.envelope;
        assert_eq!(nowhere.code, skiff_sdk::Code::StateUnavailable);
    });
}
