//! Schema migrations as a deploy's `migrate` step, on the local provider with a real
//! PostgreSQL and the orders API (its `orders-api migrate` keeps the version table
//! `schema_migrations`): a release adds a column before its canary, exactly once even
//! when the CLI is killed in the middle of it; a failing migration stops the deploy
//! before traffic moves; a migration without `down` waits for approval in
//! production, and one with `down` is undone when the rollout fails.

mod common;

use std::time::Duration;

use common::*;

/// Writes `orders.yaml`: the orders API with its database, `extra` appended.
fn spec(s: &Sandbox, port: u16, note: &str, health: &str, extra: &str) -> String {
    let api = skiff_testkit::workspace_bin("orders-api");
    let yaml = format!(
        "service: orders-api\nartifact: {{path: {}}}\n\
         run: {{command: [orders-api, --port, \"${{PORT}}\"], env: {{NOTE: {note}, MIGRATE_PAUSE_MS: \"1500\"}}}}\nport: {port}\n\
         health: {{path: {health}, interval: 1s, timeout: 500ms, healthy_threshold: 1, unhealthy_threshold: 2}}\n\
         instances: {{min: 1, max: 2, desired: 1}}\n\
         secrets: {{DATABASE_URL: secret://orders-db/url}}\n\
         rollout: {{canary: {{steps: [50, 100], bake: 0s}}, drain_timeout: 1s, step_timeout: 15s}}\n\
         database:\n  name: orders-db\n  engine: postgres\n  version: \"16\"\n{extra}",
        api.display()
    );
    let path = s.path().join("orders.yaml");
    std::fs::write(&path, yaml).unwrap();
    path.display().to_string()
}

/// `psql` on the consumers' database, one value.
fn psql(s: &Sandbox, sql: &str) -> String {
    psql_on(s, "orders-db", sql)
}

fn has_note_column(s: &Sandbox) -> bool {
    psql(s, "select count(*) from information_schema.columns where table_name = 'orders' and column_name = 'note'")
        == "1"
}

/// The migration records in the bucket.
fn records(s: &Sandbox) -> Vec<String> {
    let dir = s.path().join(".skiff/state/v1/migrations/orders-api");
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| std::fs::read_to_string(e.path()).ok())
        .collect()
}

const UP: &str =
    "  migrations: {command: [orders-api, migrate, --to, \"2\"], down: [orders-api, migrate, --to, \"1\"]}\n";

fn setup() -> (Vec<(&'static str, String)>, u16) {
    let runner = skiff_testkit::workspace_bin("skiff-runner").display().to_string();
    let env = vec![("SKIFF_RUNNER_BIN", runner), ("SKIFF_LEASE_TTL_MS", "1500".to_owned())];
    (env, skiff_testkit::free_port())
}

fn steps(v: &serde_json::Value) -> Vec<String> {
    v["data"]["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| format!("{}:{}", s["id"].as_str().unwrap(), s["safety"].as_str().unwrap_or("?")))
        .collect()
}

#[test]
fn a_release_adds_a_column_before_its_canary_exactly_once_even_when_killed_mid_migration() {
    let s = Sandbox::new();
    let (env_owned, port) = setup();
    let _stop = StopAll(&s, env_owned.clone());
    let env: Vec<(&str, &str)> = env_owned.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let run = |args: &[&str]| json(&s.run_env(args, &env));
    let first = spec(&s, port, "one", "/healthz", "");
    assert_eq!(run(&["deploy", "-f", &first, "--yes", "--format", "json"])["code"], "OK");

    // Planned: the migration before any traffic, reversible (it has a down), with the
    // expand/contract warning.
    let second = spec(&s, port, "two", "/healthz", UP);
    let planned = run(&["deploy", "-f", &second, "--dry-run", "--format", "json"]);
    let ids = steps(&planned);
    let at = |id: &str| ids.iter().position(|s| s.starts_with(id)).unwrap_or_else(|| panic!("{id} in {ids:?}"));
    assert!(at("database") < at("migrate") && at("migrate") < at("provision"), "{ids:?}");
    assert!(ids.contains(&"migrate:reversible".to_owned()), "{ids:?}");
    assert!(planned.to_string().contains("expand only"), "{planned}");

    // Killed while the migration runs (its transaction held open): the task dies with
    // the operation, and the resumed deploy runs it once.
    let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("skiff"))
        .current_dir(s.path())
        .env("SKIFF_CONFIG", s.path().join("config.yaml"))
        .envs(env.iter().copied())
        .args(["deploy", "-f", &second, "--yes", "--format", "json"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // The first of its two migrations committed, the second's transaction open.
    let running = skiff_testkit::wait_until(Duration::from_secs(60), || {
        psql(&s, "select count(*) from schema_migrations") == "1"
    });
    let _ = child.kill();
    let _ = child.wait();
    assert!(running, "the migration started");
    let op = json(&s.run_env(&["saga", "list", "--format", "json"], &env))["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["saga"] == "deploy" && o["status"] != "succeeded")
        .and_then(|o| o["op_id"].as_str())
        .unwrap()
        .to_owned();
    let resumed = run(&["saga", "resume", &op, "--yes", "--format", "json"]);
    assert_eq!(resumed["code"], "OK", "{resumed}");
    assert!(has_note_column(&s), "the column is there");
    assert_eq!(psql(&s, "select count(*) from schema_migrations where version = 2"), "1", "applied once");
    let recs = records(&s);
    assert_eq!(recs.len(), 1, "one record for the release");
    assert!(recs[0].contains("succeeded"), "{}", recs[0]);
    assert_eq!(run(&["state", "verify", "--format", "json"])["code"], "OK");

    // A failing migration stops the next deploy before any traffic moves.
    let broken = spec(
        &s,
        port,
        "three",
        "/healthz",
        "  migrations: {command: [orders-api, migrate, --to, \"99\"], down: [orders-api, migrate, --to, \"2\"]}\n",
    );
    let failed = run(&["deploy", "-f", &broken, "--yes", "--format", "json"]);
    assert_eq!(failed["code"], "OPERATION_FAILED", "{failed}");
    assert!(failed.to_string().contains("there is no migration 99"), "its output is in the facts: {failed}");
    let shown = run(&["saga", "show", failed["operation_id"].as_str().unwrap(), "--format", "json"]);
    assert!(
        !shown.to_string().contains("\"id\":\"shift-50\",\"kind\":\"deploy.shift\",\"status\":\"succeeded\""),
        "{shown}"
    );
    assert_eq!(run(&["status", "orders-api", "--format", "json"])["data"]["release"], resumed["data"]["release"]);
    let doctor = run(&["doctor", "orders-api", "--format", "json"]);
    assert!(doctor.to_string().contains("the migration of"), "doctor reports the failed migration: {doctor}");
}

#[test]
fn without_down_a_migration_waits_for_approval_and_with_down_a_failed_rollout_undoes_it() {
    let s = Sandbox::new();
    let (env_owned, port) = setup();
    let _stop = StopAll(&s, env_owned.clone());
    let env: Vec<(&str, &str)> = env_owned.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let run = |args: &[&str]| json(&s.run_env(args, &env));
    let first = spec(&s, port, "one", "/healthz", "");
    assert_eq!(run(&["deploy", "-f", &first, "--yes", "--format", "json"])["code"], "OK");

    // Irreversible: planned as such, and gated (policy asks approval for irreversible steps).
    let one_way = spec(&s, port, "two", "/healthz", "  migrations: {command: [orders-api, migrate, --to, \"2\"]}\n");
    let planned = run(&["deploy", "-f", &one_way, "--dry-run", "--format", "json"]);
    assert!(steps(&planned).contains(&"migrate:irreversible".to_owned()), "{planned}");
    assert!(planned.to_string().contains("no `down`"), "{planned}");
    let gated = run(&["deploy", "-f", &one_way, "--yes", "--format", "json"]);
    assert_eq!(gated["code"], "APPROVAL_REQUIRED", "{gated}");
    assert!(!has_note_column(&s), "nothing ran before the approval");
    let op = gated["operation_id"].as_str().unwrap().to_owned();
    let approved = run(&["saga", "approve", &op, "--yes", "--format", "json"]);
    assert_eq!(approved["code"], "OK", "{approved}");
    assert!(has_note_column(&s));

    // With a down: the new release never gets healthy, the rollout compensates, and
    // the down puts the schema back.
    psql(&s, "alter table orders drop column note; delete from schema_migrations where version = 2");
    let sick = spec(&s, port, "three", "/nope", UP);
    let failed = run(&["deploy", "-f", &sick, "--yes", "--format", "json"]);
    assert_ne!(failed["code"], "OK", "{failed}");
    assert_eq!(failed["data"]["status"], "compensated", "{failed}");
    assert!(!has_note_column(&s), "the down ran: {failed}");
    assert_eq!(psql(&s, "select count(*) from schema_migrations where version = 2"), "0");
    assert!(records(&s).iter().any(|r| r.contains("undone")), "{:?}", records(&s));

    // Without a down, approved, then the rollout fails after it: traffic goes back,
    // and the answer says plainly that the schema stays, and what to do.
    let one_way_sick = spec(&s, port, "four", "/nope", "  migrations: {command: [orders-api, migrate, --to, \"2\"]}\n");
    let gated = run(&["deploy", "-f", &one_way_sick, "--yes", "--format", "json"]);
    assert_eq!(gated["code"], "APPROVAL_REQUIRED", "{gated}");
    let stays = run(&["saga", "approve", gated["operation_id"].as_str().unwrap(), "--yes", "--format", "json"]);
    assert_ne!(stays["code"], "OK", "{stays}");
    assert!(stays.to_string().contains("the schema change stays"), "{stays}");
    assert!(stays.to_string().contains("fix-forward"), "{stays}");
    assert!(has_note_column(&s), "an irreversible migration is not undone");
    assert_eq!(run(&["state", "verify", "--format", "json"])["code"], "OK");
}
