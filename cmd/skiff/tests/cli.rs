//! End-to-end tests of the `skiff` binary: the JSON and human output of every command
//! are snapshot-tested (temporary paths and the version redacted), and exit codes
//! follow the failure taxonomy.

use std::path::PathBuf;

mod common;

use common::*;

#[test]
fn help_teaches_with_examples() {
    let s = Sandbox::new();
    let top = s.run(&["--help"]);
    assert_eq!(top.code, 0);
    insta::assert_snapshot!("help", top.stdout);
    for cmd in [
        "init", "validate", "plan", "deploy", "rollback", "status", "logs", "metrics", "doctor", "schema", "config",
        "keys", "release", "local", "secrets", "saga",
    ] {
        let r = s.run(&[cmd, "--help"]);
        assert_eq!(r.code, 0, "{cmd}");
        assert!(r.stdout.contains("Examples:"), "`skiff {cmd} --help` must show examples");
    }
    insta::assert_snapshot!("help-plan", s.run(&["plan", "--help"]).stdout);
}

#[test]
fn version() {
    let s = Sandbox::new();
    insta::assert_snapshot!("version-human", human(&s.run(&["version"])));
    insta::assert_snapshot!("version-json", s.run(&["version", "--format", "json"]).stdout);
}

#[test]
fn init_recipes_write_valid_commented_specs() {
    let s = Sandbox::new();
    let r = s.run(&["init", "service", "payments-api"]);
    insta::assert_snapshot!("init-service-human", human(&r));
    insta::assert_snapshot!("init-service-file", std::fs::read_to_string(s.path().join("skiff.yaml")).unwrap());
    let r = s.run(&["init", "worker", "thumbnailer", "--dir", "worker", "--format", "json"]);
    insta::assert_snapshot!("init-worker-json", r.stdout);
    let r = s.run(&["init", "stack", "api-db", "orders-api", "--dir", "stack", "--port", "9000", "--format", "json"]);
    assert_eq!(r.code, 0, "{}", r.stdout);
    insta::assert_snapshot!("init-stack-file", std::fs::read_to_string(s.path().join("stack/skiff.yaml")).unwrap());
    let r = s.run(&["init", "stack", "postgres-ha", "orders", "--dir", "ha", "--format", "json"]);
    assert_eq!(r.code, 0, "{}", r.stdout);
    insta::assert_snapshot!("init-postgres-ha-file", std::fs::read_to_string(s.path().join("ha/skiff.yaml")).unwrap());
    for file in ["skiff.yaml", "worker/skiff.yaml", "stack/skiff.yaml", "ha/skiff.yaml"] {
        let v = s.run(&["validate", "-f", file]);
        assert_eq!(v.code, 0, "{file}: {}", human(&v));
    }
    let again = s.run(&["init", "service", "payments-api", "--format", "json"]);
    assert_eq!(again.code, 5);
    insta::assert_snapshot!("init-exists-json", again.stdout);
    let bad = s.run(&["init", "service", "Payments_API"]);
    assert_eq!(bad.code, 2);
    insta::assert_snapshot!("init-bad-name-human", human(&bad));
}

#[test]
fn validate_accepts_examples() {
    let s = Sandbox::new();
    // mtls needs its plugin: tests/mtls.rs validates it with and without.
    for name in ["hello", "api-db", "worker", "multiregion-db"] {
        let file = s.copy_example(name);
        let r = s.run(&["validate", "-f", file.file_name().unwrap().to_str().unwrap(), "--format", "json"]);
        assert_eq!(r.code, 0, "{name}: {}", r.stdout);
        assert_eq!(json(&r)["code"], "OK");
    }
    s.copy_example("api-db");
    insta::assert_snapshot!("validate-ok-human", human(&s.run(&["validate", "-f", "api-db.yaml"])));
    insta::assert_snapshot!("validate-ok-json", s.run(&["validate", "-f", "api-db.yaml", "--format", "json"]).stdout);
}

#[test]
fn validate_rejects_every_bad_fixture_with_spec_invalid_and_its_position() {
    let s = Sandbox::new();
    let dir = repo().join("tests/fixtures/bad");
    let mut fixtures: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    fixtures.sort();
    for path in fixtures {
        let name = path.file_name().unwrap().to_str().unwrap().to_owned();
        std::fs::copy(&path, s.path().join(&name)).unwrap();
        let r = s.run(&["validate", "-f", &name, "--format", "json"]);
        assert_eq!(r.code, 3, "{name}: exit code of SPEC_INVALID");
        let v = json(&r);
        assert_eq!(v["code"], "SPEC_INVALID", "{name}");
        let expected = std::fs::read_to_string(path.with_extension("expected")).unwrap();
        let first = expected.lines().next().unwrap();
        let d = &v["data"]["diagnostics"][0];
        let got = format!(
            "{}:{}:{}: {}: {}",
            d["file"].as_str().unwrap(),
            d["line"],
            d["column"],
            d["path"].as_str().unwrap(),
            d["message"].as_str().unwrap()
        );
        assert_eq!(got, first, "{name}");
        assert!(!d["fix"].as_str().unwrap().is_empty(), "{name}: every diagnostic has a fix");
    }
    std::fs::copy(dir.join("canary-not-ascending.yaml"), s.path().join("bad.yaml")).unwrap();
    insta::assert_snapshot!("validate-bad-human", human(&s.run(&["validate", "-f", "bad.yaml"])));
    insta::assert_snapshot!("validate-bad-json", s.run(&["validate", "-f", "bad.yaml", "--format", "json"]).stdout);
}

#[test]
fn validate_missing_file_is_not_found() {
    let s = Sandbox::new();
    let r = s.run(&["validate"]);
    assert_eq!(r.code, 4);
    insta::assert_snapshot!("validate-missing-human", human(&r));
    insta::assert_snapshot!("validate-missing-json", s.run(&["validate", "--format", "json"]).stdout);
}

#[test]
fn plan_shows_decisions_and_resources_deterministically() {
    let s = Sandbox::new();
    s.copy_example("api-db");
    s.copy_example("worker");
    let a = s.run(&["plan", "-f", "api-db.yaml", "--format", "json"]);
    let b = s.run(&["plan", "-f", "api-db.yaml", "--format", "json"]);
    assert_eq!(a.code, 0);
    assert_eq!(a.stdout, b.stdout, "plan JSON must be byte-identical across runs");
    let v = json(&a);
    assert_eq!(v["data"]["decision"]["availability_plan"]["instances"], 3);
    assert!(v["data"]["decision"]["availability_plan"]["reasons"].as_array().unwrap().len() >= 2);
    insta::assert_snapshot!("plan-api-db-json", a.stdout);
    insta::assert_snapshot!("plan-api-db-human", human(&s.run(&["plan", "-f", "api-db.yaml"])));
    insta::assert_snapshot!("plan-worker-human", human(&s.run(&["plan", "-f", "worker.yaml"])));
}

#[test]
fn schema_matches_the_committed_file() {
    let s = Sandbox::new();
    let r = s.run(&["schema"]);
    assert_eq!(r.code, 0);
    let committed = std::fs::read_to_string(repo().join("skiff.schema.json")).unwrap();
    assert_eq!(r.stdout, committed, "skiff.schema.json is stale: run `cargo xtask codegen`");
    let j = s.run(&["schema", "--format", "json"]);
    let v = json(&j);
    assert_eq!(v["data"]["title"], "Skiff service spec");
    assert_eq!(v["summary"], "JSON Schema of skiff.yaml (draft 2020-12)");
}

#[test]
fn config_contexts_and_resolution_order() {
    let s = Sandbox::new();
    insta::assert_snapshot!("config-get-contexts-empty-human", human(&s.run(&["config", "get-contexts"])));
    insta::assert_snapshot!("config-show-default-json", s.run(&["config", "show", "--format", "json"]).stdout);
    let r = s.run(&[
        "config",
        "set-context",
        "prod",
        "--state",
        "s3://acme-skiff/prod",
        "--provider",
        "aws",
        "--region",
        "us-east-1",
    ]);
    insta::assert_snapshot!("config-set-context-human", human(&r));
    let r = s.run(&["config", "set-context", "dev", "--state", "file://dev-state", "--use", "--format", "json"]);
    assert_eq!(r.code, 0);
    insta::assert_snapshot!("config-get-contexts-human", human(&s.run(&["config", "get-contexts"])));
    insta::assert_snapshot!("config-get-contexts-json", s.run(&["config", "get-contexts", "--format", "json"]).stdout);
    insta::assert_snapshot!("config-use-context-human", human(&s.run(&["config", "use-context", "prod"])));
    insta::assert_snapshot!("config-show-context-human", human(&s.run(&["config", "show"])));
    // Environment beats the context; a flag beats the environment.
    let env = s.run_env(
        &["config", "show", "--format", "json"],
        &[("SKIFF_STATE", "memory://env"), ("SKIFF_PROVIDER", "local")],
    );
    let v = json(&env);
    assert_eq!(
        (v["data"]["state"]["value"].as_str(), v["data"]["state"]["origin"].as_str()),
        (Some("memory://env"), Some("env"))
    );
    assert_eq!(v["data"]["provider"]["origin"], "env");
    let flag = s.run_env(
        &["config", "show", "--bucket", "memory://flag", "--format", "json"],
        &[("SKIFF_STATE", "memory://env")],
    );
    assert_eq!(json(&flag)["data"]["state"]["origin"], "flag");
    let ctx = s.run_env(&["config", "show", "--format", "json"], &[("SKIFF_CONTEXT", "dev")]);
    assert!(json(&ctx)["data"]["state"]["value"].as_str().unwrap().ends_with("/dev-state"));
    let missing = s.run(&["config", "use-context", "staging", "--format", "json"]);
    assert_eq!(missing.code, 4);
    insta::assert_snapshot!("config-use-context-missing-json", missing.stdout);
}

#[test]
fn invalid_contexts_file_is_config_invalid_with_position() {
    let s = Sandbox::new();
    std::fs::write(s.path().join("config.yaml"), "current-context: a\ncontexts:\n  - name: a\n    stat: file://x\n")
        .unwrap();
    let r = s.run(&["config", "show"]);
    assert_eq!(r.code, 23);
    insta::assert_snapshot!("config-invalid-human", human(&r));
}

#[test]
fn usage_errors_answer_in_json_when_asked() {
    let s = Sandbox::new();
    let r = s.run(&["plan", "--bogus", "--format", "json"]);
    assert_eq!(r.code, 2);
    let v = json(&r);
    assert_eq!(v["code"], "USAGE");
    insta::assert_snapshot!("usage-json", r.stdout);
    assert_eq!(s.run(&["plan", "--bogus"]).code, 2);
}

#[test]
fn state_init_is_confirmed_idempotent_and_audited() {
    let s = Sandbox::new();
    let r = s.run(&["state", "init", "--format", "json"]);
    assert_eq!(r.code, 10, "non-interactive without --yes needs confirmation");
    insta::assert_snapshot!("state-init-unconfirmed-json", r.stdout);
    assert!(!s.path().join(".skiff").exists(), "nothing was written");
    insta::assert_snapshot!("state-init-human", human(&s.run(&["state", "init", "--yes"])));
    let again = s.run(&["state", "init", "--yes", "--format", "json"]);
    assert_eq!(json(&again)["data"]["created"], false);
    insta::assert_snapshot!("state-verify-clean-human", human(&s.run(&["state", "verify"])));
    insta::assert_snapshot!("audit-human", human(&s.run(&["audit"])));
    insta::assert_snapshot!("audit-json", s.run(&["audit", "--since", "1h", "--format", "json"]).stdout);
    assert_eq!(s.run(&["audit", "--since", "last tuesday"]).code, 2);
}

#[test]
fn state_verify_reports_corruption() {
    let s = Sandbox::new();
    assert_eq!(s.run(&["state", "init", "--yes"]).code, 0);
    let bad = s.path().join(".skiff/state/v1/services/api");
    std::fs::create_dir_all(&bad).unwrap();
    std::fs::write(bad.join("state.json"), "{\"kind\": \"skiff.lease\", \"schema_version\": 1}").unwrap();
    let r = s.run(&["state", "verify"]);
    assert_eq!(r.code, 19, "STATE_CORRUPT");
    insta::assert_snapshot!("state-verify-corrupt-human", human(&r));
    insta::assert_snapshot!("state-verify-corrupt-json", s.run(&["state", "verify", "--format", "json"]).stdout);
}

#[test]
fn unusable_bucket_is_state_unavailable() {
    let s = Sandbox::new();
    let r = s.run(&["state", "init", "--yes", "--bucket", "file:///proc/skiff-cannot-write-here", "--format", "json"]);
    assert_eq!(r.code, 18, "{}", r.stdout);
    assert_eq!(json(&r)["code"], "STATE_UNAVAILABLE");
}

#[test]
fn events_print_an_operations_log_and_follow_to_the_end() {
    let s = Sandbox::new();
    let l = ledger(s.path());
    block(async {
        l.init("t").await.unwrap();
        let intent = skiff_state::docs::OperationIntent {
            op_id: "op-demo".into(),
            saga: "deploy".into(),
            service: Some("hello".into()),
            actor: "tester".into(),
            reason: "demo".into(),
            idempotency_key: "k".into(),
            params: serde_json::json!({}),
            created_at_ms: 0,
            trace: None,
        };
        l.create(&skiff_state::keys::op_intent("op-demo"), &intent).await.unwrap();
        for (t, d) in [
            ("step_started", serde_json::json!({"step": "provision"})),
            ("step_succeeded", serde_json::json!({"step": "provision"})),
        ] {
            l.append("op-demo", t, d).await.unwrap();
        }
    });
    insta::assert_snapshot!("events-human", human(&s.run(&["events", "--op", "op-demo"])));
    insta::assert_snapshot!("events-json", s.run(&["events", "--op", "op-demo", "--format", "json"]).stdout);
    // Finish the operation while a follower runs: it prints the new event and exits.
    let dir = s.path().to_path_buf();
    let finisher = std::thread::spawn(move || {
        skiff_clock::SystemClock::block_for(std::time::Duration::from_millis(700));
        let l = ledger(&dir);
        block(async {
            l.append("op-demo", "operation_succeeded", serde_json::json!({})).await.unwrap();
            l.update::<skiff_state::docs::OperationState, _>(&skiff_state::keys::op_state("op-demo"), |_| {
                Ok(skiff_state::Update::Write(skiff_state::docs::OperationState {
                    cas: Default::default(),
                    op_id: "op-demo".into(),
                    saga: "deploy".into(),
                    service: Some("hello".into()),
                    status: skiff_state::docs::OpStatus::Succeeded,
                    fence: 0,
                    updated_at_ms: 0,
                    detail: serde_json::json!({}),
                }))
            })
            .await
            .unwrap();
        });
    });
    let followed = s.run(&["events", "--op", "op-demo", "--follow", "--format", "json"]);
    finisher.join().unwrap();
    let lines: Vec<&str> = followed.stdout.lines().filter(|l| l.starts_with("{\"")).collect();
    assert_eq!(lines.len(), 3, "one JSON line per event: {}", followed.stdout);
    assert!(followed.stdout.contains("\"status\": \"succeeded\""), "ends with the envelope: {}", followed.stdout);
    let missing = s.run(&["events", "--op", "op-none"]);
    assert_eq!(missing.code, 4);
}

#[test]
fn plan_diffs_against_the_recorded_spec() {
    let s = Sandbox::new();
    s.copy_example("hello");
    common::record_spec(s.path(), "hello", "2026.11.22.1");
    let same = s.run(&["plan", "-f", "hello.yaml", "--format", "json"]);
    let v = json(&same);
    assert_eq!(v["data"]["diff"]["changes"].as_array().unwrap().len(), 0, "unchanged spec: empty diff");
    assert_eq!(v["risk"]["level"], "none");
    let text = std::fs::read_to_string(s.path().join("hello.yaml"))
        .unwrap()
        .replace("desired: 2", "desired: 3")
        .replace("steps: [5, 25, 50, 100]", "steps: [10, 50, 100]");
    std::fs::write(s.path().join("hello.yaml"), text).unwrap();
    insta::assert_snapshot!("plan-recorded-diff-human", human(&s.run(&["plan", "-f", "hello.yaml"])));
    let v = json(&s.run(&["plan", "-f", "hello.yaml", "--format", "json"]));
    assert_eq!(v["data"]["diff"]["change"], 2);
    assert_eq!(v["risk"]["level"], "medium");
}

/// Expand/contract guidance: with a release running, `skiff plan` says what it meets
/// when the migration runs before the canary, and what an irreversible one means.
#[test]
fn plan_warns_what_the_running_release_meets_during_a_migration() {
    let s = Sandbox::new();
    s.copy_example("api-db");
    common::record_spec(s.path(), "api-db", "2026.11.22.1");
    let facts = |v: serde_json::Value| {
        v["facts"].as_array().unwrap().iter().map(|f| f.as_str().unwrap().to_owned()).collect::<Vec<_>>().join("\n")
    };
    let before = facts(json(&s.run(&["plan", "-f", "api-db.yaml", "--format", "json"])));
    let text = std::fs::read_to_string(s.path().join("api-db.yaml")).unwrap();
    let one_way = text
        .replace("    down: [orders-api, migrate, --to, \"1\"]    # what undoes this release's migration\n", "")
        .replace("phase: before_canary", "phase: after_promote");
    assert_ne!(one_way, text);
    std::fs::write(s.path().join("api-db.yaml"), one_way).unwrap();
    let after = facts(json(&s.run(&["plan", "-f", "api-db.yaml", "--format", "json"])));
    insta::assert_snapshot!(
        "plan-migration-facts",
        format!("before_canary with down:\n{before}\n\nafter_promote without down:\n{after}")
    );
}

fn op_of(r: &Run) -> String {
    json(r)["operation_id"].as_str().unwrap().to_owned()
}

#[test]
fn saga_dry_run_shows_the_plan_and_changes_nothing() {
    let s = Sandbox::new();
    insta::assert_snapshot!("saga-kinds-human", human(&s.run(&["saga", "kinds"])));
    insta::assert_snapshot!("saga-dry-run-human", human(&s.run(&["saga", "start", "selftest", "--dry-run"])));
    let r = s.run(&["saga", "start", "selftest", "--dry-run", "--format", "json"]);
    insta::assert_snapshot!("saga-dry-run-json", r.stdout);
    assert!(!s.path().join(".skiff").exists(), "a dry run writes nothing");
    let r = s.run(&["saga", "start", "selftest", "--format", "json"]);
    assert_eq!(r.code, 10, "mutating without --yes needs confirmation");
    let r = s.run(&["saga", "start", "nope", "--format", "json"]);
    assert_eq!(r.code, 4);
    assert_eq!(json(&r)["recommended_actions"][0]["command"], "skiff saga kinds");
    let r = s.run(&["saga", "start", "selftest", "--param", "colour=blue", "--dry-run"]);
    assert_ne!(r.code, 0, "unknown parameters are refused");
}

#[test]
fn saga_runs_to_its_approval_gate_then_approve_finishes_it() {
    let s = Sandbox::new();
    let r = s.run(&["saga", "start", "selftest", "--idempotency-key", "k1", "--yes", "--format", "json"]);
    assert_eq!(r.code, 9, "APPROVAL_REQUIRED: {}", r.stdout);
    insta::assert_snapshot!("saga-awaiting-json", r.stdout);
    let op = op_of(&r);
    let again = s.run(&["saga", "start", "selftest", "--idempotency-key", "k1", "--yes", "--format", "json"]);
    assert_eq!(op_of(&again), op, "the same idempotency key continues the same operation");
    let shown = human(&s.run(&["saga", "show", &op]));
    let (head, events) = shown.split_once("Recent events:").unwrap();
    assert!(events.contains("approval_requested"), "recent events are listed: {events}");
    insta::assert_snapshot!("saga-show-awaiting-human", head);
    let approved = s.run(&["saga", "approve", &op, "--yes", "--quiet"]);
    assert_eq!(approved.code, 0);
    insta::assert_snapshot!("saga-approved-human", human(&approved));
    insta::assert_snapshot!("saga-list-human", human(&s.run(&["saga", "list"])));
    let ev = s.run(&["saga", "events", &op, "--format", "json"]);
    let types: Vec<String> = json(&ev)["data"]["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(types.first().map(String::as_str), Some("operation_planned"));
    assert_eq!(types.last().map(String::as_str), Some("operation_succeeded"));
    assert!(types.iter().any(|t| t == "approved"));
    let again = s.run(&["saga", "approve", &op, "--yes", "--format", "json"]);
    assert_eq!(again.code, 6, "approving a finished operation is a conflict: {}", again.stdout);
    assert_eq!(s.run(&["state", "verify"]).code, 0);
    let audit = s.run(&["audit", "--format", "json"]);
    let actions: Vec<String> = json(&audit)["data"]["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap().to_owned())
        .collect();
    assert!(actions.contains(&"saga.start".to_owned()) && actions.contains(&"saga.approve".to_owned()), "{actions:?}");
}

#[test]
fn saga_failure_is_compensated_and_reject_compensates() {
    let s = Sandbox::new();
    let r = s.run(&[
        "saga",
        "start",
        "selftest",
        "--param",
        "fail_at=record-end",
        "--param",
        "seal=false",
        "--idempotency-key",
        "f",
        "--yes",
        "--quiet",
    ]);
    assert_eq!(r.code, 14, "OPERATION_FAILED");
    insta::assert_snapshot!("saga-compensated-human", human(&r));
    let noisy =
        s.run(&["saga", "start", "selftest", "--param", "fail_at=record-end", "--param", "seal=false", "--yes"]);
    assert!(
        noisy.stderr.contains("record-start: ✓") && noisy.stderr.contains("compensating: step `record-end` failed"),
        "progress shows live on stderr: {}",
        noisy.stderr
    );
    let r = s.run(&["saga", "start", "selftest", "--idempotency-key", "r", "--yes", "--format", "json"]);
    let op = op_of(&r);
    let rejected = s.run(&["saga", "reject", &op, "--reason", "not now", "--yes", "--format", "json"]);
    let v = json(&rejected);
    assert_eq!(v["data"]["status"], "compensated");
    assert!(v["facts"].as_array().unwrap().iter().any(|f| f.as_str().unwrap().contains("rejected by tester: not now")));
}

#[test]
fn saga_pause_cancel_and_resume_after_the_cli_is_killed() {
    let s = Sandbox::new();
    let bin = assert_cmd::cargo::cargo_bin("skiff");
    let spawn = |key: &str, wait_ms: &str| {
        std::process::Command::new(&bin)
            .current_dir(s.path())
            .env("SKIFF_CONFIG", s.path().join("config.yaml"))
            .env("SKIFF_LEASE_TTL_MS", "600")
            .args([
                "saga",
                "start",
                "selftest",
                "--param",
                &format!("wait_ms={wait_ms}"),
                "--param",
                "seal=false",
                "--idempotency-key",
                key,
                "--yes",
                "--format",
                "json",
            ])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap()
    };
    let waiting = |op: &str| {
        let l = ledger(s.path());
        let op = op.to_owned();
        move || {
            block(async {
                l.events_after(&op, 0).await.map(|e| e.iter().any(|e| e.event_type == "step_progress")).unwrap_or(false)
            })
        }
    };
    let op_for = |key: &str| skiff_saga::Engine::op_id_for("selftest", key);

    // Cancel while the long wait runs: the running engine undoes the completed notes.
    let child = spawn("cancel-me", "60000");
    let op = op_for("cancel-me");
    assert!(skiff_testkit::wait_until(std::time::Duration::from_secs(30), waiting(&op)));
    let c = s.run_env(&["saga", "cancel", &op, "--yes", "--format", "json"], &[("SKIFF_LEASE_TTL_MS", "600")]);
    assert_eq!(json(&c)["summary"], format!("cancel recorded for operation {op}"));
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(15), "CANCELLED");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["data"]["status"], "cancelled");

    // SIGKILL the CLI mid-step; `skiff saga resume` waits out its lease and finishes.
    let mut child = spawn("kill-me", "2000");
    let op = op_for("kill-me");
    assert!(skiff_testkit::wait_until(std::time::Duration::from_secs(30), waiting(&op)));
    let _ = std::process::Command::new("kill").args(["-KILL", &child.id().to_string()]).status();
    let _ = child.wait();
    let resumed = s.run_env(&["saga", "resume", &op, "--yes", "--format", "json"], &[("SKIFF_LEASE_TTL_MS", "600")]);
    let v = json(&resumed);
    assert_eq!(v["data"]["status"], "succeeded", "{}", resumed.stdout);
    let events = json(&s.run(&["saga", "events", &op, "--format", "json"]))["data"]["events"].clone();
    let notes = events
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == "selftest_note" && e["data"]["step"] == "record-start")
        .count();
    assert_eq!(notes, 1, "the note written before the kill is not written again");
    assert!(events.as_array().unwrap().iter().any(|e| e["type"] == "operation_resumed"));
    let verified = s.run(&["state", "verify", "--format", "json"]);
    assert_eq!(verified.code, 0, "{}", verified.stdout);

    // Pause with no engine running: recorded, and honoured by the next run; resume continues.
    let r = s.run(&["saga", "start", "selftest", "--idempotency-key", "p", "--yes", "--format", "json"]);
    let op = op_of(&r);
    let paused = s.run(&["saga", "pause", &op, "--yes", "--format", "json"]);
    assert_eq!(json(&paused)["summary"], format!("operation {op} will pause at its next step boundary"));
    let approved = s.run(&["saga", "approve", &op, "--yes", "--format", "json"]);
    assert_eq!(json(&approved)["data"]["status"], "paused", "the run stops at the boundary: {}", approved.stdout);
    assert_eq!(json(&approved)["recommended_actions"][0]["id"], "resume");
    let resumed = s.run(&["saga", "resume", &op, "--yes", "--format", "json"]);
    assert_eq!(json(&resumed)["data"]["status"], "succeeded", "{}", resumed.stdout);
}

#[test]
fn the_committed_man_pages_are_current() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/man");
    let pages = skiff_cli::man::pages();
    for (name, text) in &pages {
        let have = std::fs::read(dir.join(name)).unwrap_or_default();
        assert!(have == *text, "docs/man/{name} is stale: run `cargo xtask codegen`");
    }
    let committed =
        std::fs::read_dir(&dir).unwrap().flatten().filter(|e| e.path().extension().is_some_and(|x| x == "1"));
    assert_eq!(
        committed.count(),
        pages.len(),
        "docs/man has pages of commands that are gone: run `cargo xtask codegen`"
    );
    let root = String::from_utf8_lossy(&pages[0].1).into_owned();
    assert!(root.contains("skiff\\-deploy(1)") || root.contains("skiff-deploy"), "the root page lists the commands");
}
