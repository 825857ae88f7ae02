//! The api-db stack end to end on the local provider with a real PostgreSQL: a deploy
//! creates the database before any instance starts, keeps its credentials only in the
//! secret store, and rolls the real orders API out with `DATABASE_URL` resolved on
//! each instance; rows written through the load balancer survive the next deploy, and
//! a backup records a restore point with the rows at it.

mod common;

use std::io::{Read as _, Write as _};
use std::time::Duration;

use common::*;

/// Writes `orders.yaml`: the orders API with its database, `note` in its env so two
/// deploys make two releases.
fn spec(s: &Sandbox, port: u16, note: &str) -> String {
    let api = skiff_testkit::workspace_bin("orders-api");
    let yaml = format!(
        "service: orders-api\nartifact: {{path: {}}}\n\
         run: {{command: [orders-api, --port, \"${{PORT}}\"], env: {{NOTE: {note}}}}}\nport: {port}\n\
         health: {{path: /healthz, interval: 1s, timeout: 500ms, healthy_threshold: 1, unhealthy_threshold: 2}}\n\
         instances: {{min: 1, max: 2, desired: 2}}\n\
         secrets: {{DATABASE_URL: secret://orders-db/url}}\n\
         database: {{name: orders-db, engine: postgres, version: \"16\", backups: {{retention: 7d}}}}\n\
         rollout: {{canary: {{steps: [50, 100], bake: 0s}}, drain_timeout: 1s, step_timeout: 1m}}\n",
        api.display()
    );
    let path = s.path().join("orders.yaml");
    std::fs::write(&path, yaml).unwrap();
    path.display().to_string()
}

/// One request through a fresh connection: status and body.
fn request(port: u16, method: &str, path: &str, body: &str) -> Option<(u16, serde_json::Value)> {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
    .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let status = response.split_whitespace().nth(1)?.parse().ok()?;
    let body = response.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or_default();
    Some((status, serde_json::from_str(body).unwrap_or_default()))
}

/// Whether a file called `name` is anywhere under `dir`.
fn has_file(dir: &std::path::Path, name: &str) -> bool {
    std::fs::read_dir(dir).into_iter().flatten().flatten().any(|e| {
        let p = e.path();
        if p.is_dir() { has_file(&p, name) } else { p.file_name().is_some_and(|n| n == name) }
    })
}

fn step<'a>(v: &'a serde_json::Value, id: &str) -> &'a serde_json::Value {
    v["data"]["steps"].as_array().and_then(|s| s.iter().find(|s| s["id"] == id)).unwrap_or(&serde_json::Value::Null)
}

#[test]
fn a_deploy_creates_the_database_and_the_api_reads_and_writes_rows() {
    let s = Sandbox::new();
    let runner = skiff_testkit::workspace_bin("skiff-runner").display().to_string();
    let env_owned = vec![("SKIFF_RUNNER_BIN", runner)];
    let _stop = StopAll(&s, env_owned.clone());
    let env: Vec<(&str, &str)> = env_owned.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let port = skiff_testkit::free_port();
    let file = spec(&s, port, "one");

    // Planned first: the database step comes before any instance, with its safety.
    let dry = s.run_env(&["deploy", "-f", &file, "--dry-run", "--format", "json"], &env);
    let v = json(&dry);
    assert_eq!(dry.code, 0, "{}", dry.stdout);
    let planned = v["data"]["plan"]["steps"].as_array().or_else(|| v["data"]["steps"].as_array()).cloned();
    let planned = planned.unwrap_or_default();
    assert_eq!(planned.first().map(|s| s["id"].clone()), Some("database".into()), "{}", dry.stdout);
    assert_eq!(planned[0]["safety"], "reversible");
    assert!(planned[0]["description"].as_str().unwrap().contains("encrypted, private, backups kept 7 days"));
    assert!(!has_file(s.path(), "orders-db.json"), "a dry run creates no database");
    let shown = s.run_env(&["deploy", "-f", &file, "--dry-run"], &env);
    insta::assert_snapshot!("deploy-dry-run-human", human(&shown));

    let r = s.run_env(&["deploy", "-f", &file, "--yes", "--format", "json"], &env);
    let v = json(&r);
    assert_eq!(r.code, 0, "{}", r.stdout);
    assert_eq!(step(&v, "database")["status"], "succeeded", "{}", r.stdout);
    let said = step(&v, "database")["summary"].to_string();
    assert!(said.contains("database orders-db created"), "{said}");

    // The credentials are a secret, never in the ledger.
    let listed = s.run_env(&["secrets", "list", "orders-db", "--format", "json"], &env);
    assert!(listed.stdout.contains("secret://orders-db/url"), "{}", listed.stdout);
    let state = s.path().join(".skiff/state");
    let grep = std::process::Command::new("grep").args(["-r", "-l", "postgres://skiff:"]).arg(&state).output().unwrap();
    assert!(grep.stdout.is_empty(), "a password reached the bucket: {}", String::from_utf8_lossy(&grep.stdout));

    // Rows through the load balancer, each request on a fresh connection to any instance.
    for i in 0..20 {
        let (status, body) = request(port, "POST", "/orders", &format!("{{\"item\": \"item-{i}\"}}")).unwrap();
        assert_eq!(status, 201, "{body}");
    }
    let (status, before) = request(port, "GET", "/orders", "").unwrap();
    assert_eq!((status, before["count"].as_i64()), (200, Some(20)), "{before}");

    // Doctor knows a database nothing has backed up.
    let doctor = s.run_env(&["doctor", "orders-api", "--format", "json"], &env);
    assert!(doctor.stdout.contains("orders-db has no backup to restore from"), "{}", doctor.stdout);

    // A backup: planned, then taken; its record holds the restore point and the rows at it.
    let planned = s.run_env(&["database", "backup", "orders-db", "--dry-run", "--format", "json"], &env);
    assert_eq!(planned.code, 0, "{}", planned.stdout);
    let ids: Vec<String> = json(&planned)["data"]["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| format!("{}:{}", s["id"].as_str().unwrap(), s["safety"].as_str().unwrap()))
        .collect();
    assert_eq!(ids, ["backup:reversible", "record:reversible"]);
    let unconfirmed = s.run_env(&["database", "backup", "orders-db", "--format", "json"], &env);
    assert_eq!(json(&unconfirmed)["code"], "CONFIRMATION_REQUIRED");
    let taken = s.run_env(&["database", "backup", "orders-db", "--yes", "--format", "json"], &env);
    assert_eq!(taken.code, 0, "{}", taken.stdout);
    let op = json(&taken)["operation_id"].as_str().unwrap().to_owned();
    let listed = s.run_env(&["database", "list-backups", "orders-db", "--format", "json"], &env);
    let backups = json(&listed)["data"]["backups"].clone();
    assert_eq!(backups.as_array().map(Vec::len), Some(1), "{}", listed.stdout);
    assert_eq!(backups[0]["restore_point"], op.as_str());
    let orders = backups[0]["tables"].as_array().unwrap().iter().find(|t| t["table"] == "public.orders").unwrap();
    assert_eq!(orders["rows"], 20, "{orders}");
    let shown = s.run_env(&["database", "list-backups", "orders-db"], &env);
    assert!(shown.stdout.contains(&op) && shown.stdout.contains("20 rows"), "{}", shown.stdout);
    let status = json(&s.run_env(&["status", "orders-api", "--format", "json"], &env));
    assert_eq!(status["data"]["database"]["backups"], 1, "{status}");
    assert!(
        status["facts"].to_string().contains("database orders-db (postgres 16) on orders-db: 1 backup"),
        "{status}"
    );
    let doctor = s.run_env(&["doctor", "orders-api", "--format", "json"], &env);
    assert!(!doctor.stdout.contains("no backup"), "{}", doctor.stdout);
    let unknown = s.run_env(&["database", "backup", "nosuch-db", "--yes", "--format", "json"], &env);
    assert_eq!((json(&unknown)["code"].as_str(), unknown.code), (Some("NOT_FOUND"), 4), "{}", unknown.stdout);
    assert!(unknown.stdout.contains("orders-db"), "names the databases that exist: {}", unknown.stdout);

    // The next deploy finds the database and keeps its rows.
    let file = spec(&s, port, "two");
    let r = s.run_env(&["deploy", "-f", &file, "--yes", "--format", "json"], &env);
    let v = json(&r);
    assert_eq!(r.code, 0, "{}", r.stdout);
    assert!(step(&v, "database")["summary"].to_string().contains("database orders-db available"), "{}", r.stdout);
    let (_, after) = request(port, "GET", "/orders", "").unwrap();
    assert_eq!(after["checksum"], before["checksum"], "{after}");
    assert_ne!(after["release"], before["release"], "the new release answers");
    assert!(s.run_env(&["state", "verify", "--format", "json"], &env).code == 0);
}

#[test]
fn a_backup_killed_at_every_step_boundary_resumes_to_exactly_one_backup() {
    let s = Sandbox::new();
    let runner = skiff_testkit::workspace_bin("skiff-runner").display().to_string();
    let env_owned = vec![("SKIFF_RUNNER_BIN", runner), ("SKIFF_LEASE_TTL_MS", "1500".to_owned())];
    let _stop = StopAll(&s, env_owned.clone());
    let env: Vec<(&str, &str)> = env_owned.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let file = spec(&s, skiff_testkit::free_port(), "one");
    let r = s.run_env(&["deploy", "-f", &file, "--yes", "--format", "json"], &env);
    assert_eq!(r.code, 0, "{}", r.stdout);
    let points = [
        "before:step_started:backup",
        "after:step_started:backup",
        "after:result:backup",
        "before:step_started:record",
        "after:result:record",
    ];
    for (n, point) in points.iter().enumerate() {
        let marker = s.path().join(format!("frozen-{n}"));
        let mut cmd = std::process::Command::new(assert_cmd::cargo::cargo_bin("skiff"));
        cmd.current_dir(s.path())
            .env("SKIFF_CONFIG", s.path().join("config.yaml"))
            .env("SKIFF_FREEZE_AT", point)
            .env("SKIFF_FREEZE_MARKER", &marker)
            .envs(env.iter().copied())
            .args(["database", "backup", "orders-db", "--yes", "--format", "json"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        let mut child = cmd.spawn().unwrap();
        let reached = skiff_testkit::wait_until(Duration::from_secs(60), || marker.exists());
        let _ = child.kill();
        let _ = child.wait();
        assert!(reached, "the CLI never reached {point}");
        let op = unfinished(&s, &env, "database-backup");
        let resumed = s.run_env(&["saga", "resume", &op, "--yes", "--format", "json"], &env);
        assert_eq!(resumed.code, 0, "resume after a kill at {point}: {}", resumed.stdout);
        let backups = s.run_env(&["database", "list-backups", "orders-db", "--format", "json"], &env);
        let backups = json(&backups)["data"]["backups"].clone();
        assert_eq!(backups.as_array().map(Vec::len), Some(n + 1), "one backup per operation, after {point}");
        assert!(backups.as_array().unwrap().iter().any(|b| b["id"] == op.as_str()), "{point}: {backups}");
    }
    let verify = s.run_env(&["state", "verify", "--format", "json"], &env);
    assert_eq!(verify.code, 0, "{}", verify.stdout);
}

#[test]
fn a_restore_to_a_point_serves_its_rows_after_approval_and_keeps_the_old_database() {
    let s = Sandbox::new();
    let runner = skiff_testkit::workspace_bin("skiff-runner").display().to_string();
    let env_owned = vec![("SKIFF_RUNNER_BIN", runner)];
    let _stop = StopAll(&s, env_owned.clone());
    let env: Vec<(&str, &str)> = env_owned.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let run = |args: &[&str]| {
        let r = s.run_env(args, &env);
        (json(&r), r)
    };
    let port = skiff_testkit::free_port();
    let file = spec(&s, port, "one");
    assert_eq!(run(&["deploy", "-f", &file, "--yes", "--format", "json"]).1.code, 0);
    for i in 0..20 {
        assert_eq!(request(port, "POST", "/orders", &format!("{{\"item\": \"kept-{i}\"}}")).unwrap().0, 201);
    }
    let (_, at_point) = request(port, "GET", "/orders", "").unwrap();
    let (taken, _) = run(&["database", "backup", "orders-db", "--yes", "--format", "json"]);
    let point = taken["operation_id"].as_str().unwrap().to_owned();
    for i in 0..10 {
        assert_eq!(request(port, "POST", "/orders", &format!("{{\"item\": \"later-{i}\"}}")).unwrap().0, 201);
    }

    // Bad input changes nothing.
    let ops_before = run(&["saga", "list", "--format", "json"]).0["data"].as_array().unwrap().len();
    let (v, r) = run(&["restore", "database", "orders-db", "--to", "no-such-point", "--yes", "--format", "json"]);
    assert_eq!((v["code"].as_str(), r.code), (Some("NOT_FOUND"), 4), "{}", r.stdout);
    assert!(r.stdout.contains(&point), "names the restore points that exist: {}", r.stdout);
    let (v, r) =
        run(&["restore", "database", "orders-db", "--to", "2001-01-01T00:00:00Z", "--yes", "--format", "json"]);
    assert_eq!(v["code"], "USAGE", "{}", r.stdout);
    assert!(v["summary"].as_str().unwrap().contains("outside"), "{}", r.stdout);
    let (v, _) = run(&["restore", "database", "nosuch-db", "--yes", "--format", "json"]);
    assert_eq!(v["code"], "NOT_FOUND");
    assert_eq!(run(&["saga", "list", "--format", "json"]).0["data"].as_array().unwrap().len(), ops_before);

    // Planned: the cutover is the one irreversible step, behind an approval gate.
    let (planned, r) = run(&["restore", "database", "orders-db", "--to", &point, "--dry-run", "--format", "json"]);
    assert_eq!(r.code, 0, "{}", r.stdout);
    let steps: Vec<String> = planned["data"]["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| format!("{}:{}:{}", s["id"].as_str().unwrap(), s["safety"].as_str().unwrap(), s["needs_approval"]))
        .collect();
    assert_eq!(
        steps,
        [
            "snapshot:reversible:false",
            "restore:reversible:false",
            "smoke:read_only:false",
            "shadow:reversible:false",
            "cutover:irreversible:true",
            "restart:reversible:false",
            "verify:read_only:false",
            "retain:reversible:false"
        ]
    );

    // Run to the gate: the copy exists and is proven, production is unchanged.
    let restore = ["restore", "database", "orders-db", "--to", &point, "--shadow-read", "/orders", "--yes"];
    let (v, r) = run(&[&restore[..], &["--format", "json"]].concat());
    assert_eq!(v["code"], "APPROVAL_REQUIRED", "{}", r.stdout);
    let op = v["operation_id"].as_str().unwrap().to_owned();
    // A shadow instance read the copy before the gate, and is gone.
    let shadow = step(&v, "shadow");
    assert!(shadow["summary"].as_str().unwrap().contains("answered /healthz 200 and /orders 200"), "{shadow}");
    assert!(
        shadow["summary"].as_str().unwrap().contains("\"count\":20"),
        "the shadow read the rows at the point: {shadow}"
    );
    let groups = std::fs::read_to_string(s.path().join(".skiff/local/supervisor/state.json")).unwrap_or_default();
    assert!(!groups.contains("orders-api-shadow"), "the shadow group is removed");
    let (_, now) = request(port, "GET", "/orders", "").unwrap();
    assert_eq!(now["count"], 30, "no production change before the approval");
    let (shown, _) = run(&["saga", "show", &op, "--format", "json"]);
    assert!(shown.to_string().contains("every table matches the restore point"), "{shown}");

    let (v, r) = run(&["saga", "approve", &op, "--yes", "--format", "json"]);
    assert_eq!(v["code"], "OK", "{}", r.stdout);
    let (_, after) = request(port, "GET", "/orders", "").unwrap();
    assert_eq!(
        (after["count"].clone(), after["checksum"].clone()),
        (at_point["count"].clone(), at_point["checksum"].clone())
    );
    let status = run(&["status", "orders-api", "--format", "json"]).0;
    assert_ne!(status["data"]["database"]["instance"], "orders-db", "{status}");
    assert_eq!(status["data"]["database"]["retained"][0]["instance"], "orders-db", "{status}");
    // The API writes to the restored database now.
    assert_eq!(request(port, "POST", "/orders", "{\"item\": \"after\"}").unwrap().0, 201);

    // The old database is untouched and retained; the previous secret value is kept.
    let state = format!("file://{}", s.path().join(".skiff/state").display());
    let secrets =
        skiff_secrets::LocalSecrets::new(skiff_provider_local::LocalDir::for_state(&state, s.path()).secrets());
    let old = secrets.get("secret://orders-db/url-previous").unwrap().expect("the previous value is kept");
    let out =
        std::process::Command::new("psql").args([old.as_str(), "-At", "-c", "select count(*) from orders"]).output();
    assert_eq!(String::from_utf8_lossy(&out.unwrap().stdout).trim(), "30");
    let (verify, r) = run(&["state", "verify", "--format", "json"]);
    assert_eq!(verify["code"], "OK", "{}", r.stdout);
    // Later backups are of the restored instance.
    let (v, r) = run(&["database", "backup", "orders-db", "--yes", "--format", "json"]);
    assert_eq!(v["code"], "OK", "{}", r.stdout);
    let (listed, _) = run(&["database", "list-backups", "orders-db", "--format", "json"]);
    assert_eq!(listed["data"]["backups"][0]["tables"][0]["rows"], 21, "{listed}");

    // To a time: every row committed before it, none after, from the restored instance's log.
    assert_eq!(request(port, "POST", "/orders", "{\"item\": \"before-the-time\"}").unwrap().0, 201);
    skiff_clock::SystemClock::block_for(Duration::from_millis(300));
    let time = skiff_clock::Utc::from_ms(skiff_clock::Clock::now_ms(&skiff_clock::SystemClock)).rfc3339();
    skiff_clock::SystemClock::block_for(Duration::from_millis(300));
    assert_eq!(request(port, "POST", "/orders", "{\"item\": \"after-the-time\"}").unwrap().0, 201);
    let (v, r) = run(&["restore", "database", "orders-db", "--to", &time, "--yes", "--format", "json"]);
    assert_eq!(v["code"], "APPROVAL_REQUIRED", "{}", r.stdout);
    let op = v["operation_id"].as_str().unwrap().to_owned();
    assert_eq!(run(&["saga", "approve", &op, "--yes", "--format", "json"]).0["code"], "OK");
    let (_, at_time) = request(port, "GET", "/orders", "").unwrap();
    assert_eq!(at_time["count"], 22, "20 kept, 1 after the first restore, 1 before the time: {at_time}");

    // A deploy after a restore keeps the restored instance, and its rows.
    let file = spec(&s, port, "two");
    let (v, r) = run(&["deploy", "-f", &file, "--yes", "--format", "json"]);
    assert_eq!(v["code"], "OK", "{}", r.stdout);
    let db = v["data"]["steps"].as_array().unwrap().iter().find(|s| s["id"] == "database").unwrap().clone();
    assert!(db["summary"].as_str().unwrap().contains("database orders-db-r"), "{db}");
    assert_eq!(request(port, "GET", "/orders", "").unwrap().1["count"], 22);

    // Retiring a retained instance: refused for what it would get wrong, planned, gated.
    let current = status_instance(&run(&["status", "orders-api", "--format", "json"]).0);
    let (v, r) = run(&["database", "retire", "orders-db", "--yes", "--format", "json"]);
    assert_eq!(v["code"], "USAGE", "two are retained, so one must be named: {}", r.stdout);
    let (v, _) = run(&["database", "retire", "orders-db", "--instance", &current, "--yes", "--format", "json"]);
    assert_eq!(v["code"], "USAGE", "the serving instance is refused");
    let (v, _) = run(&["database", "retire", "orders-db", "--instance", "nosuch", "--yes", "--format", "json"]);
    assert_eq!(v["code"], "NOT_FOUND");
    let (v, _) = run(&["database", "retire", "nosuch-db", "--yes", "--format", "json"]);
    assert_eq!(v["code"], "NOT_FOUND");
    let retire = ["database", "retire", "orders-db", "--instance", "orders-db"];
    let (planned, _) = run(&[&retire[..], &["--dry-run", "--format", "json"]].concat());
    let steps: Vec<String> = planned["data"]["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| format!("{}:{}:{}", s["id"].as_str().unwrap(), s["safety"].as_str().unwrap(), s["needs_approval"]))
        .collect();
    assert_eq!(
        steps,
        ["check:read_only:false", "snapshot:reversible:false", "delete:irreversible:true", "record:reversible:false"]
    );
    let (v, r) = run(&[&retire[..], &["--yes", "--format", "json"]].concat());
    assert_eq!(v["code"], "APPROVAL_REQUIRED", "{}", r.stdout);
    let op = v["operation_id"].as_str().unwrap().to_owned();
    let count = |url: &str| {
        let out = std::process::Command::new("psql").args([url, "-At", "-c", "select count(*) from orders"]).output();
        String::from_utf8_lossy(&out.unwrap().stdout).trim().to_owned()
    };
    assert_eq!(count(&old), "30", "nothing is deleted before the approval");
    let (v, r) = run(&["saga", "approve", &op, "--yes", "--format", "json"]);
    assert_eq!(v["code"], "OK", "{}", r.stdout);
    assert_eq!(count(&old), "", "the retired instance is gone");
    let status = run(&["status", "orders-api", "--format", "json"]).0;
    let retained: Vec<&str> = status["data"]["database"]["retained"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["instance"].as_str())
        .collect();
    assert!(!retained.contains(&"orders-db") && retained.len() == 1, "{status}");
    assert!(secrets.get("secret://orders-db/url").unwrap().is_some(), "the consumers' reference stays");
    assert_eq!(request(port, "GET", "/orders", "").unwrap().1["count"], 22, "the API still serves");
    let (v, r) = run(&["restore", "database", "orders-db", "--to", &point, "--yes", "--format", "json"]);
    assert_eq!(v["code"], "NOT_FOUND", "its restore point went with it: {}", r.stdout);
    let (v, _) = run(&[&retire[..], &["--yes", "--format", "json"]].concat());
    assert_eq!(v["code"], "NOT_FOUND", "retired once");
    assert_eq!(run(&["state", "verify", "--format", "json"]).0["code"], "OK");
}

fn status_instance(status: &serde_json::Value) -> String {
    status["data"]["database"]["instance"].as_str().unwrap().to_owned()
}

/// The operation of `saga` that has not succeeded (the one a kill left behind).
fn unfinished(s: &Sandbox, env: &[(&str, &str)], saga: &str) -> String {
    let listed = json(&s.run_env(&["saga", "list", "--format", "json"], env));
    listed["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["saga"] == saga && o["status"] != "succeeded")
        .and_then(|o| o["op_id"].as_str())
        .unwrap_or_else(|| panic!("no unfinished {saga}: {listed}"))
        .to_owned()
}

#[test]
fn a_restore_killed_at_every_step_boundary_resumes_to_exactly_one_copy_and_one_cutover() {
    let s = Sandbox::new();
    let runner = skiff_testkit::workspace_bin("skiff-runner").display().to_string();
    let env_owned = vec![("SKIFF_RUNNER_BIN", runner), ("SKIFF_LEASE_TTL_MS", "1500".to_owned())];
    let _stop = StopAll(&s, env_owned.clone());
    let env: Vec<(&str, &str)> = env_owned.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let run = |args: &[&str]| json(&s.run_env(args, &env));
    let port = skiff_testkit::free_port();
    let file = spec(&s, port, "one");
    assert_eq!(run(&["deploy", "-f", &file, "--yes", "--format", "json"])["code"], "OK");
    assert_eq!(request(port, "POST", "/orders", "{\"item\": \"kept\"}").unwrap().0, 201);
    let point = run(&["database", "backup", "orders-db", "--yes", "--format", "json"])["operation_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let restore = ["restore", "database", "orders-db", "--to", &point, "--yes", "--format", "json"];
    let before_gate = [
        "before:step_started:snapshot",
        "after:result:snapshot",
        "after:result:restore",
        "after:result:smoke",
        "after:result:shadow",
    ];
    let after_gate = ["after:result:cutover", "after:result:restart", "after:result:verify", "after:result:retain"];
    for (n, p) in before_gate.iter().chain(after_gate.iter()).enumerate() {
        assert_eq!(request(port, "POST", "/orders", "{\"item\": \"later\"}").unwrap().0, 201);
        let (_, live) = request(port, "GET", "/orders", "").unwrap();
        let op = if before_gate.contains(p) {
            s.kill_at(&env, &restore, p);
            let op = unfinished(&s, &env, "database-restore");
            let resumed = run(&["saga", "resume", &op, "--yes", "--format", "json"]);
            assert_eq!(resumed["code"], "APPROVAL_REQUIRED", "resume after a kill at {p}: {resumed}");
            let (_, now) = request(port, "GET", "/orders", "").unwrap();
            assert_eq!(now["count"], live["count"], "no production change before the approval ({p})");
            op
        } else {
            let gated = run(&restore);
            assert_eq!(gated["code"], "APPROVAL_REQUIRED", "{gated}");
            let op = gated["operation_id"].as_str().unwrap().to_owned();
            s.kill_at(&env, &["saga", "approve", &op, "--yes", "--format", "json"], p);
            op
        };
        if before_gate.contains(p) {
            assert_eq!(run(&["saga", "approve", &op, "--yes", "--format", "json"])["code"], "OK", "after {p}");
        } else {
            let resumed = run(&["saga", "resume", &op, "--yes", "--format", "json"]);
            assert_eq!(resumed["code"], "OK", "resume after a kill at {p}: {resumed}");
        }
        let (_, served) = request(port, "GET", "/orders", "").unwrap();
        assert_eq!(served["count"], 1, "served from the copy at the restore point after {p}");
        // One restore record (one cutover) and one new instance per operation.
        let restores =
            std::fs::read_dir(s.path().join(".skiff/state/v1/databases/orders-db/restores")).unwrap().count();
        assert_eq!(restores, n + 1, "one cutover per restore, after {p}");
        let local = s.path().join(".skiff/local/databases");
        let instances = std::fs::read_dir(&local)
            .unwrap()
            .flatten()
            .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
            .count();
        assert_eq!(instances, n + 2, "the source and one copy per restore, after {p}");
    }
    assert_eq!(run(&["state", "verify", "--format", "json"])["code"], "OK");

    // Retiring retained instances, killed at every step boundary of `database-retire`.
    let local = s.path().join(".skiff/local/databases");
    let before_gate = ["before:step_started:check", "after:result:check", "after:result:snapshot"];
    let after_gate = ["after:result:delete", "after:result:record"];
    for (k, p) in before_gate.iter().chain(after_gate.iter()).enumerate() {
        let status = run(&["status", "orders-api", "--format", "json"]);
        let instance = status["data"]["database"]["retained"][0]["instance"].as_str().unwrap().to_owned();
        let args = ["database", "retire", "orders-db", "--instance", &instance, "--yes", "--format", "json"];
        let op = if before_gate.contains(p) {
            s.kill_at(&env, &args, p);
            let op = unfinished(&s, &env, "database-retire");
            let resumed = run(&["saga", "resume", &op, "--yes", "--format", "json"]);
            assert_eq!(resumed["code"], "APPROVAL_REQUIRED", "resume after a kill at {p}: {resumed}");
            assert!(local.join(format!("{instance}.json")).exists(), "nothing deleted before the approval ({p})");
            assert_eq!(run(&["saga", "approve", &op, "--yes", "--format", "json"])["code"], "OK", "after {p}");
            op
        } else {
            let gated = run(&args);
            assert_eq!(gated["code"], "APPROVAL_REQUIRED", "{gated}");
            let op = gated["operation_id"].as_str().unwrap().to_owned();
            s.kill_at(&env, &["saga", "approve", &op, "--yes", "--format", "json"], p);
            let resumed = run(&["saga", "resume", &op, "--yes", "--format", "json"]);
            assert_eq!(resumed["code"], "OK", "resume after a kill at {p}: {resumed}");
            op
        };
        assert!(!local.join(format!("{instance}.json")).exists(), "{instance} deleted by {op} ({p})");
        let records = std::fs::read_dir(s.path().join(".skiff/state/v1/databases/orders-db/retired")).unwrap().count();
        assert_eq!(records, k + 1, "one record per retirement, after {p}");
        assert_eq!(request(port, "GET", "/orders", "").unwrap().1["count"], 1, "still served after {p}");
    }
    assert_eq!(run(&["state", "verify", "--format", "json"])["code"], "OK");
}

/// The consumers' connection URL as the local secret store resolves it now.
fn current_url(s: &Sandbox, reference: &str) -> Option<String> {
    skiff_secrets::LocalSecrets::new(s.path().join(".skiff/local/secrets")).get(reference).ok().flatten()
}

fn user_of(url: &str) -> String {
    url.trim_start_matches("postgres://").split(':').next().unwrap_or_default().to_owned()
}

/// Whether a fresh connection with `url` is refused for its password.
fn auth_fails(url: &str) -> bool {
    let out = std::process::Command::new("psql").args([url, "-X", "-At", "-c", "select 1"]).output().unwrap();
    !out.status.success() && String::from_utf8_lossy(&out.stderr).contains("password authentication failed")
}

/// A client opening a fresh connection 20 times a second with whatever the secret
/// resolves to at that moment: (attempts, authentication failures) once stopped.
struct Load {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<(u32, Vec<String>)>>,
}

impl Load {
    fn start(s: &Sandbox) -> Load {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let store = skiff_secrets::LocalSecrets::new(s.path().join(".skiff/local/secrets"));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let (mut attempts, mut failures) = (0, Vec::new());
            while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                let started = std::time::Instant::now();
                if let Ok(Some(url)) = store.get("secret://orders-db/url") {
                    attempts += 1;
                    if auth_fails(&url) {
                        failures.push(user_of(&url));
                    }
                }
                skiff_clock::SystemClock::block_for(Duration::from_millis(50).saturating_sub(started.elapsed()));
            }
            (attempts, failures)
        });
        Load { stop, thread: Some(thread) }
    }

    fn finish(mut self) -> (u32, Vec<String>) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.thread.take().unwrap().join().unwrap()
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

#[test]
fn a_rotation_under_load_refuses_no_connection_and_disables_the_old_login_last() {
    let s = Sandbox::new();
    let runner = skiff_testkit::workspace_bin("skiff-runner").display().to_string();
    let env_owned = vec![("SKIFF_RUNNER_BIN", runner)];
    let _stop = StopAll(&s, env_owned.clone());
    let env: Vec<(&str, &str)> = env_owned.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let run = |args: &[&str]| s.run_env(args, &env);
    let port = skiff_testkit::free_port();
    let file = spec(&s, port, "one");
    assert_eq!(json(&run(&["deploy", "-f", &file, "--yes", "--format", "json"]))["code"], "OK");
    assert_eq!(request(port, "POST", "/orders", "{\"item\": \"before\"}").unwrap().0, 201);
    let reference = "secret://orders-db/url";
    let first = current_url(&s, reference).unwrap();

    // Bad input changes nothing: a secret no database uses, a service's name.
    for name in ["nosuch", "orders-api"] {
        let r = run(&["rotate", "secret", name, "--yes", "--format", "json"]);
        let v = json(&r);
        assert_eq!((r.code, v["code"].as_str()), (4, Some("NOT_FOUND")), "{}", r.stdout);
        assert!(v["summary"].as_str().unwrap().contains(&format!("no database uses secret {name}")), "{v}");
        assert!(v["facts"].to_string().contains("databases: orders-db"), "{v}");
    }
    let bad = run(&["rotate", "secret", "orders-db", "--disable-after", "soon", "--yes"]);
    assert_eq!(bad.code, 2, "{}", bad.stderr);
    assert!(bad.stderr.contains("a duration such as"), "{}", bad.stderr);

    // Planned: the four Secrets Manager steps, the restart, the disable last.
    let dry = run(&["rotate", "secret", "orders-db", "--dry-run", "--format", "json"]);
    assert_eq!(dry.code, 0, "{}", dry.stdout);
    let steps: Vec<String> = json(&dry)["data"]["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| format!("{}:{}", s["id"].as_str().unwrap(), s["safety"].as_str().unwrap()))
        .collect();
    assert_eq!(
        steps,
        [
            "create:reversible",
            "set:reversible",
            "test:read_only",
            "finish:reversible",
            "restart:reversible",
            "disable:reversible"
        ]
    );
    let shown = human(&run(&["rotate", "secret", "orders-db", "--dry-run"]));
    let shown = regex::Regex::new(r"\d{4}-\d{2}-\d{2}-\d+").unwrap().replace_all(&shown, "DATE-N");
    insta::assert_snapshot!("rotate-dry-run-human", shown);
    assert_eq!(current_url(&s, reference).as_deref(), Some(first.as_str()), "a dry run changes nothing");
    assert!(current_url(&s, &format!("{reference}-pending")).is_none());

    let load = Load::start(&s);
    let r = run(&["rotate", "secret", "orders-db", "--disable-after", "2s", "--yes", "--format", "json"]);
    let (attempts, failures) = load.finish();
    let v = json(&r);
    assert_eq!(r.code, 0, "{}", r.stdout);
    assert!(failures.is_empty(), "{} of {attempts} fresh connections were refused: {failures:?}", failures.len());
    // 20 a second through a saga that waits 2 s before it disables the old login.
    assert!(attempts >= 30, "the load ran through the saga: {attempts} connections");
    assert!(step(&v, "restart")["summary"].as_str().unwrap().contains("restarted 2 instances"), "{v}");

    let now = current_url(&s, reference).unwrap();
    assert_eq!((user_of(&first), user_of(&now)), ("skiff".to_owned(), "skiff_a".to_owned()));
    assert_eq!(current_url(&s, &format!("{reference}-previous")).as_deref(), Some(first.as_str()));
    assert!(current_url(&s, &format!("{reference}-pending")).is_none(), "no version is left pending");
    assert!(auth_fails(&first), "the old login is disabled");
    assert!(!auth_fails(&now));
    // The API serves on the new login: its instances were restarted onto it.
    assert_eq!(request(port, "POST", "/orders", "{\"item\": \"after\"}").unwrap().0, 201);
    let (_, orders) = request(port, "GET", "/orders", "").unwrap();
    assert_eq!(orders["count"], 2, "{orders}");
    // The ledger records versions, never the value.
    let state = s.path().join(".skiff/state");
    let password = now.split(':').nth(2).unwrap().split('@').next().unwrap().to_owned();
    let grep = std::process::Command::new("grep").args(["-r", "-l", &password]).arg(&state).output().unwrap();
    assert!(grep.stdout.is_empty(), "the new password reached the bucket");
    let version = skiff_secrets::version(&now);
    assert!(step(&v, "disable")["summary"].as_str().unwrap().contains(&version), "{v}");
    let doctor = run(&["doctor", "orders-api", "--format", "json"]);
    assert!(!doctor.stdout.contains("version of secret://orders-db/url"), "{}", doctor.stdout);

    // A value changed behind the instances' backs: doctor names the version nobody picked up.
    let store = skiff_secrets::LocalSecrets::new(s.path().join(".skiff/local/secrets"));
    let changed = format!("{now}?application_name=orders");
    store.put(reference, &changed).unwrap();
    let doctor = json(&run(&["doctor", "orders-api", "--format", "json"]));
    let text = doctor.to_string();
    assert!(
        text.contains("no instance of orders-api has picked up the current version of secret://orders-db/url"),
        "{text}"
    );
    assert!(text.contains(&skiff_secrets::version(&changed)) && text.contains(&version), "{text}");
    assert!(text.contains("skiff rotate secret orders-db --yes"), "{text}");
    store.put(reference, &now).unwrap();
    assert_eq!(json(&run(&["state", "verify", "--format", "json"]))["code"], "OK");
}

#[test]
fn a_rotation_killed_at_every_step_boundary_resumes_to_exactly_one_new_version() {
    let s = Sandbox::new();
    let runner = skiff_testkit::workspace_bin("skiff-runner").display().to_string();
    let env_owned = vec![("SKIFF_RUNNER_BIN", runner), ("SKIFF_LEASE_TTL_MS", "1500".to_owned())];
    let _stop = StopAll(&s, env_owned.clone());
    let env: Vec<(&str, &str)> = env_owned.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let run = |args: &[&str]| json(&s.run_env(args, &env));
    let port = skiff_testkit::free_port();
    let file = spec(&s, port, "one");
    assert_eq!(run(&["deploy", "-f", &file, "--yes", "--format", "json"])["code"], "OK");
    let reference = "secret://orders-db/url";
    let rotate = ["rotate", "secret", "orders-db", "--disable-after", "1s", "--yes", "--format", "json"];
    let points = [
        "before:step_started:create",
        "after:result:create",
        "after:result:set",
        "after:result:test",
        "after:result:finish",
        "after:result:restart",
        "before:step_started:disable",
    ];
    for (n, p) in points.iter().enumerate() {
        let before = current_url(&s, reference).unwrap();
        s.kill_at(&env, &rotate, p);
        let op = unfinished(&s, &env, "secret-rotation");
        let resumed = run(&["saga", "resume", &op, "--yes", "--format", "json"]);
        assert_eq!(resumed["code"], "OK", "resume after a kill at {p}: {resumed}");
        // Exactly one new version: the other user, the previous value kept, nothing pending.
        let now = current_url(&s, reference).unwrap();
        let expected = if n % 2 == 0 { "skiff_a" } else { "skiff_b" };
        assert_eq!(user_of(&now), expected, "after {p}");
        assert_eq!(current_url(&s, &format!("{reference}-previous")).as_deref(), Some(before.as_str()), "{p}");
        assert!(current_url(&s, &format!("{reference}-pending")).is_none(), "nothing pending after {p}");
        assert!(auth_fails(&before) && !auth_fails(&now), "old login disabled, new one works, after {p}");
        assert_eq!(request(port, "GET", "/orders", "").unwrap().0, 200, "the API serves after {p}");
    }
    assert_eq!(run(&["state", "verify", "--format", "json"])["code"], "OK");
}

/// The local store's key versions.
fn key_versions(s: &Sandbox) -> Vec<skiff_secrets::keys::KeyVersion> {
    skiff_secrets::LocalSecrets::new(s.path().join(".skiff/local/secrets")).key_versions().unwrap()
}

#[test]
fn a_key_rotation_reencrypts_every_secret_canaries_a_consumer_and_deletes_the_old_key_only_after_approval() {
    let s = Sandbox::new();
    let runner = skiff_testkit::workspace_bin("skiff-runner").display().to_string();
    let env_owned = vec![("SKIFF_RUNNER_BIN", runner)];
    let _stop = StopAll(&s, env_owned.clone());
    let env: Vec<(&str, &str)> = env_owned.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let run = |args: &[&str]| s.run_env(args, &env);
    let port = skiff_testkit::free_port();
    let file = spec(&s, port, "one");
    assert_eq!(json(&run(&["deploy", "-f", &file, "--yes", "--format", "json"]))["code"], "OK");
    let url = current_url(&s, "secret://orders-db/url").unwrap();

    // What KMS would refuse is refused before anything is recorded.
    let r = run(&["rotate", "key", "nosuch", "--yes", "--format", "json"]);
    assert_eq!((r.code, json(&r)["code"].as_str()), (4, Some("NOT_FOUND")), "{}", r.stdout);
    let r = run(&["rotate", "key", "--delete-after", "3d", "--yes", "--format", "json"]);
    assert_eq!((r.code, json(&r)["code"].as_str()), (2, Some("USAGE")), "{}", r.stdout);
    assert!(json(&r)["facts"].to_string().contains("7 to 30 days"), "{}", r.stdout);
    let dry = run(&["rotate", "key", "--dry-run", "--format", "json"]);
    let steps: Vec<String> = json(&dry)["data"]["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| format!("{}:{}:{}", s["id"].as_str().unwrap(), s["safety"].as_str().unwrap(), s["needs_approval"]))
        .collect();
    assert_eq!(
        steps,
        [
            "create:reversible:false",
            "reencrypt:reversible:false",
            "canary:reversible:false",
            "alias:reversible:false",
            "schedule-deletion:irreversible:true"
        ],
        "{}",
        dry.stdout
    );
    assert_eq!(key_versions(&s).len(), 1, "planning makes no key");

    let r = run(&["rotate", "key", "--yes", "--format", "json"]);
    let v = json(&r);
    assert_eq!(v["code"], "APPROVAL_REQUIRED", "{}", r.stdout);
    let versions = key_versions(&s);
    assert_eq!(versions.len(), 2);
    assert!(versions[0].sealed.is_empty() && versions[0].deletion_at_ms.is_none(), "kept, not yet deleted");
    assert_eq!(versions[1].aliases, ["skiff"]);
    assert!(versions[1].sealed.contains(&"secret://orders-db/url".to_owned()), "{:?}", versions[1]);
    assert_eq!(current_url(&s, "secret://orders-db/url").as_deref(), Some(url.as_str()), "values do not change");
    assert!(step(&v, "canary")["summary"].as_str().unwrap().contains("a restarted instance of orders-api"), "{v}");
    assert_eq!(request(port, "GET", "/orders", "").unwrap().0, 200);
    let op = v["operation_id"].as_str().unwrap().to_owned();
    let approved = json(&run(&["saga", "approve", &op, "--yes", "--format", "json"]));
    assert_eq!(approved["code"], "OK", "{approved}");
    let due = key_versions(&s)[0].deletion_at_ms.expect("scheduled");
    let in_days = (due - skiff_clock::Clock::now_ms(&skiff_clock::SystemClock)) / 86_400_000;
    assert!((29..=30).contains(&in_days), "30 days out: {in_days}");
    assert!(s.path().join(".skiff/local/secrets/master.key").exists(), "the old key stays until it is due");
    // A new value is sealed with the new key, and a freshly started instance resolves it.
    assert_eq!(request(port, "POST", "/orders", "{\"item\": \"x\"}").unwrap().0, 201);
    assert_eq!(json(&run(&["state", "verify", "--format", "json"]))["code"], "OK");
}

#[test]
fn a_key_rotation_killed_at_every_step_boundary_resumes_to_exactly_one_new_key() {
    let s = Sandbox::new();
    let runner = skiff_testkit::workspace_bin("skiff-runner").display().to_string();
    let env_owned = vec![("SKIFF_RUNNER_BIN", runner), ("SKIFF_LEASE_TTL_MS", "1500".to_owned())];
    let _stop = StopAll(&s, env_owned.clone());
    let env: Vec<(&str, &str)> = env_owned.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let run = |args: &[&str]| json(&s.run_env(args, &env));
    let port = skiff_testkit::free_port();
    let file = spec(&s, port, "one");
    assert_eq!(run(&["deploy", "-f", &file, "--yes", "--format", "json"])["code"], "OK");
    let rotate = ["rotate", "key", "--delete-after", "7d", "--yes", "--format", "json"];
    let before_gate = [
        "before:step_started:create",
        "after:result:create",
        "after:result:reencrypt",
        "after:result:canary",
        "after:result:alias",
    ];
    for (n, p) in before_gate.iter().chain(["after:result:schedule-deletion"].iter()).enumerate() {
        let op = if before_gate.contains(p) {
            s.kill_at(&env, &rotate, p);
            let op = unfinished(&s, &env, "key-rotation");
            let resumed = run(&["saga", "resume", &op, "--yes", "--format", "json"]);
            assert_eq!(resumed["code"], "APPROVAL_REQUIRED", "resume after a kill at {p}: {resumed}");
            let old = &key_versions(&s)[n];
            assert!(old.deletion_at_ms.is_none(), "no deletion before the approval ({p})");
            assert_eq!(run(&["saga", "approve", &op, "--yes", "--format", "json"])["code"], "OK", "after {p}");
            op
        } else {
            let gated = run(&rotate);
            assert_eq!(gated["code"], "APPROVAL_REQUIRED", "{gated}");
            let op = gated["operation_id"].as_str().unwrap().to_owned();
            s.kill_at(&env, &["saga", "approve", &op, "--yes", "--format", "json"], p);
            let resumed = run(&["saga", "resume", &op, "--yes", "--format", "json"]);
            assert_eq!(resumed["code"], "OK", "resume after a kill at {p}: {resumed}");
            op
        };
        // Exactly one new key per rotation, every secret on it, the old one scheduled.
        let versions = key_versions(&s);
        assert_eq!(versions.len(), n + 2, "one new key per rotation, after {p} ({op})");
        let newest = versions.last().unwrap();
        assert_eq!(newest.aliases, ["skiff"], "{p}");
        assert!(
            versions[..n + 1].iter().all(|v| v.sealed.is_empty() && v.deletion_at_ms.is_some()),
            "{p}: {versions:?}"
        );
        assert_eq!(request(port, "GET", "/orders", "").unwrap().0, 200, "the API serves after {p}");
    }
    assert_eq!(run(&["state", "verify", "--format", "json"])["code"], "OK");
}
