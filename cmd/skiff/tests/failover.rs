//! A two-region service on the local provider with a real PostgreSQL streaming
//! replica: a deploy makes the replica in the second region; a switchover under a
//! writer that logs every acknowledged write loses none of them, and the old primary,
//! started again, refuses writes; reconcile is IN_SYNC at once. A failover whose
//! replica lags above the threshold is refused until the loss is accepted. A
//! switchover killed at every step boundary resumes to one promotion. Each region runs
//! the release behind its own load balancer; the global front moves traffic with the
//! writer, read back.

mod common;

use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;

/// `accounts.yaml`: the orders API with its database in two regions.
fn spec(s: &Sandbox, port: u16) -> String {
    let api = skiff_testkit::workspace_bin("orders-api");
    let yaml = format!(
        "service: accounts\nartifact: {{path: {}}}\n\
         run: {{command: [orders-api, --port, \"${{PORT}}\"]}}\nport: {port}\n\
         health: {{path: /healthz, interval: 1s, timeout: 500ms, healthy_threshold: 1, unhealthy_threshold: 2}}\n\
         instances: {{min: 1, max: 1, desired: 1}}\n\
         regions: [us-east-1, us-west-2]\n\
         secrets: {{DATABASE_URL: secret://accounts-db/url}}\n\
         database: {{name: accounts-db, engine: postgres, version: \"16\"}}\n\
         rollout: {{canary: {{steps: [100], bake: 0s}}, drain_timeout: 1s, step_timeout: 1m}}\n",
        api.display()
    );
    let path = s.path().join("accounts.yaml");
    std::fs::write(&path, yaml).unwrap();
    path.display().to_string()
}

/// The value behind a secret reference in the local store now.
fn secret(s: &Sandbox, reference: &str) -> String {
    skiff_secrets::LocalSecrets::new(s.path().join(".skiff/local/secrets")).get(reference).unwrap().unwrap()
}

use skiff_testkit::postgres::psql_url as psql;

/// A writer committing sequence numbers through the consumers' secret (read again on
/// every write, as an application reconnecting would), logging each acknowledgement.
struct Writer {
    stop: Arc<AtomicBool>,
    acked: Arc<Mutex<Vec<u64>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Writer {
    fn start(s: &Sandbox) -> Writer {
        let store = s.path().join(".skiff/local/secrets");
        let (stop, acked) = (Arc::new(AtomicBool::new(false)), Arc::new(Mutex::new(Vec::new())));
        let (stop2, acked2) = (stop.clone(), acked.clone());
        let thread = std::thread::spawn(move || {
            let secrets = skiff_secrets::LocalSecrets::new(store);
            let mut seq = 0;
            while !stop2.load(Ordering::SeqCst) {
                seq += 1;
                let Some(url) = secrets.get("secret://accounts-db/url").ok().flatten() else { continue };
                if psql(&url, &format!("insert into acks values ({seq})")).is_ok() {
                    acked2.lock().unwrap().push(seq);
                }
            }
        });
        Writer { stop, acked, thread: Some(thread) }
    }

    fn finish(mut self) -> Vec<u64> {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
        self.acked.lock().unwrap().clone()
    }
}

struct World<'a> {
    s: &'a Sandbox,
    env: Vec<(&'static str, String)>,
}

impl World<'_> {
    fn run(&self, args: &[&str]) -> serde_json::Value {
        let env: Vec<(&str, &str)> = self.env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        json(&self.s.run_env(args, &env))
    }
}

/// Deploys the two-region spec; everything started is stopped when the guard drops.
fn world(s: &Sandbox) -> (World<'_>, StopAll<'_>) {
    let runner = skiff_testkit::workspace_bin("skiff-runner").display().to_string();
    let env = vec![("SKIFF_RUNNER_BIN", runner), ("SKIFF_LEASE_TTL_MS", "1500".to_owned())];
    let stop = StopAll(s, env.clone());
    let w = World { s, env };
    let port = skiff_testkit::free_port();
    let file = spec(s, port);
    let deployed = w.run(&["deploy", "-f", &file, "--yes", "--format", "json"]);
    assert_eq!(deployed["code"], "OK", "{deployed}");
    (w, stop)
}

#[test]
fn a_switchover_under_writes_loses_no_acknowledged_write_and_fences_the_old_primary() {
    let s = Sandbox::new();
    let (w, _stop) = world(&s);
    let primary_url = secret(&s, "secret://accounts-db/url");
    psql(&primary_url, "create table acks (seq bigint primary key)").unwrap();
    assert!(s.path().join(".skiff/local/databases/accounts-db-us-west-2.json").exists(), "the deploy made the replica");

    // Status shows every region: the writer and the replica with its lag.
    let status = w.run(&["status", "accounts", "--format", "json"]);
    let regions = status["data"]["database"]["regions"].as_array().cloned().unwrap_or_default();
    assert_eq!(regions.len(), 2, "{status}");
    assert_eq!((regions[0]["region"].clone(), regions[0]["role"].clone()), ("us-east-1".into(), "primary".into()));
    assert_eq!((regions[1]["region"].clone(), regions[1]["role"].clone()), ("us-west-2".into(), "replica".into()));
    assert!(regions[1]["lag_bytes"].is_u64(), "{status}");
    // Each region runs the release behind its own load balancer; the front sends all
    // traffic to the region that writes.
    assert_eq!(front_weights(&status), [("us-east-1".to_owned(), 100), ("us-west-2".to_owned(), 0)], "{status}");
    let front = front_port(&status);
    let (east, west) = served_by_region(&s, &status, front);
    // The front's health probes pass through both regions too: a few requests more each.
    assert!(east >= 20 && west <= 3, "before: the requests through the front served in us-east-1 ({east}, {west})");

    // Planned first: every step's safety, the promotion irreversible, one gate.
    let dry = w.run(&["failover", "stack", "accounts", "--to", "us-west-2", "--dry-run", "--format", "json"]);
    assert_eq!(dry["code"], "OK", "{dry}");
    let steps = dry["data"]["steps"].as_array().unwrap();
    let safety = |id: &str| steps.iter().find(|x| x["id"] == id).map(|x| x["safety"].clone()).unwrap();
    assert_eq!(safety("promote"), "irreversible");
    assert_eq!(safety("freeze"), "reversible");
    assert_eq!(dry["data"]["failover"]["to_region"], "us-west-2");
    assert!(dry["data"]["failover"]["lag_bytes"].is_u64(), "{dry}");
    assert!(dry["facts"].to_string().contains("expected write unavailability"), "{dry}");
    assert!(dry["data"]["failover"]["write_unavailability_ms"].as_u64().is_some_and(|ms| ms < 60_000), "{dry}");
    assert_eq!(dry["data"]["failover"]["traffic_shift_percent"], serde_json::json!([10, 50, 100]), "{dry}");
    assert_eq!(safety("shift-50"), "reversible");

    let writer = Writer::start(&s);
    assert!(skiff_testkit::wait_until(Duration::from_secs(10), || writer.acked.lock().unwrap().len() > 20));
    let gated = w.run(&["failover", "stack", "accounts", "--to", "us-west-2", "--yes", "--format", "json"]);
    assert_eq!(gated["code"], "APPROVAL_REQUIRED", "{gated}");
    let op = gated["operation_id"].as_str().unwrap().to_owned();
    let done = w.run(&["saga", "approve", &op, "--yes", "--format", "json"]);
    assert_eq!(done["code"], "OK", "{done}");
    // Writes resume on the new primary before the writer stops.
    let before = writer.acked.lock().unwrap().len();
    assert!(skiff_testkit::wait_until(Duration::from_secs(20), || writer.acked.lock().unwrap().len() > before + 20));
    let acked = writer.finish();

    let new_url = secret(&s, "secret://accounts-db/url");
    assert_ne!(new_url, primary_url, "the consumers' secret points at the new primary");
    let stored: std::collections::BTreeSet<u64> =
        psql(&new_url, "select seq from acks").unwrap().lines().map(|l| l.parse().unwrap()).collect();
    let missing: Vec<u64> = acked.iter().filter(|a| !stored.contains(a)).copied().collect();
    assert!(missing.is_empty(), "0 acknowledged writes missing, got {} of {}: {missing:?}", missing.len(), acked.len());

    // The old primary is fenced: started again (a deploy ensures the instance), it refuses writes.
    let record: serde_json::Value =
        serde_json::from_slice(&std::fs::read(s.path().join(".skiff/local/databases/accounts-db.json")).unwrap())
            .unwrap();
    assert_eq!(record["fenced"], true, "{record}");
    let status = w.run(&["status", "accounts", "--format", "json"]);
    assert_eq!(status["code"], "OK", "{status}");
    let reconciled = w.run(&["reconcile", "accounts", "--format", "json"]);
    assert_eq!(reconciled["data"]["services"][0]["status"], "IN_SYNC", "reconcile after the failover: {reconciled}");
    let state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(s.path().join(".skiff/state/v1/services/accounts/state.json")).unwrap())
            .unwrap();
    assert_eq!(state["writer_region"], "us-west-2");
    // Traffic is 100% on the new region, read back from the front and seen in its stats.
    assert_eq!(state["region_weights"], serde_json::json!({"us-east-1": 0, "us-west-2": 100}), "{state}");
    assert_eq!(front_weights(&status), [("us-east-1".to_owned(), 0), ("us-west-2".to_owned(), 100)], "{status}");
    let (east, west) = served_by_region(&s, &status, front);
    assert!(west >= 20 && east <= 3, "after: the requests through the front served in us-west-2 ({east}, {west})");
    let shifted = w.run(&["saga", "show", &op, "--format", "json"]).to_string();
    for step in ["shift-10", "shift-50", "shift-100"] {
        assert!(shifted.contains(step), "the saga shifted traffic in steps ({step}): {shifted}");
    }
    let again = w.run(&["failover", "stack", "accounts", "--to", "us-west-2", "--dry-run", "--format", "json"]);
    assert_eq!(again["code"], "USAGE", "writes are in us-west-2 already: {again}");
    restart_and_refuse(&record, &primary_url);
}

/// The front's weight per region, from `skiff status`.
fn front_weights(status: &serde_json::Value) -> Vec<(String, u64)> {
    let regions = status["data"]["front"]["regions"].as_array().cloned().unwrap_or_default();
    regions
        .iter()
        .map(|r| (r["region"].as_str().unwrap_or("?").to_owned(), r["weight"].as_u64().unwrap_or(0)))
        .collect()
}

fn front_port(status: &serde_json::Value) -> u16 {
    let address = status["data"]["front"]["address"].as_str().unwrap_or_else(|| panic!("no front: {status}"));
    address.rsplit_once(':').unwrap().1.parse().unwrap()
}

/// Sends 20 requests through the front and answers how many each region's group served.
fn served_by_region(s: &Sandbox, status: &serde_json::Value, front: u16) -> (u64, u64) {
    use skiff_pluginapi::Traffic as _;
    let provider = skiff_provider_local::LocalProvider::new(
        skiff_provider_local::LocalDir::new(s.path().join(".skiff/local")),
        ledger(s.path()),
    );
    let groups: Vec<String> = status["data"]["front"]["regions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["group"].as_str().unwrap().to_owned())
        .collect();
    let count = |g: &str| block(provider.stats(g)).unwrap().requests;
    let before: Vec<u64> = groups.iter().map(|g| count(g)).collect();
    for _ in 0..20 {
        let (code, _) = http_get(front, "/healthz").expect("the front answers");
        assert_eq!(code, 200);
    }
    let after: Vec<u64> = groups.iter().map(|g| count(g)).collect();
    (after[0] - before[0], after[1] - before[1])
}

/// Starts the fenced old primary's cluster again and checks it refuses a write.
fn restart_and_refuse(record: &serde_json::Value, url: &str) {
    let data = std::path::Path::new(record["base"].as_str().unwrap()).join("data");
    let sock = std::path::Path::new(record["base"].as_str().unwrap()).join("sock");
    let opts = format!("-p {} -c listen_addresses=127.0.0.1 -k {}", record["port"], sock.display());
    let log = std::path::Path::new(record["base"].as_str().unwrap()).join("postgres.log");
    let bin = pg_bin();
    let started = as_postgres(Command::new(bin.join("pg_ctl")).args([
        "-D",
        &data.display().to_string(),
        "-l",
        &log.display().to_string(),
        "-w",
        "-o",
        &opts,
        "start",
    ]))
    .status()
    .unwrap();
    assert!(started.success(), "the old primary starts again");
    let refused = psql(url, "insert into acks values (-1)").unwrap_err();
    assert!(refused.contains("read-only"), "the old primary refuses writes: {refused}");
    let _ = as_postgres(Command::new(bin.join("pg_ctl")).args([
        "-D",
        &data.display().to_string(),
        "-m",
        "immediate",
        "stop",
    ]))
    .status();
}

fn pg_bin() -> std::path::PathBuf {
    let mut dirs: Vec<_> = std::fs::read_dir("/usr/lib/postgresql")
        .unwrap()
        .flatten()
        .map(|e| e.path().join("bin"))
        .filter(|d| d.join("pg_ctl").exists())
        .collect();
    dirs.sort();
    dirs.pop().unwrap()
}

/// PostgreSQL refuses to run as root: as the `postgres` user then.
fn as_postgres(cmd: &mut Command) -> &mut Command {
    use std::os::unix::process::CommandExt as _;
    if nix::unistd::geteuid().is_root() {
        let user = nix::unistd::User::from_name("postgres").unwrap().unwrap();
        cmd.uid(user.uid.as_raw()).gid(user.gid.as_raw()).current_dir("/");
    }
    cmd
}

#[test]
fn a_failover_above_the_lag_threshold_is_refused_until_the_loss_is_accepted() {
    let s = Sandbox::new();
    let (w, _stop) = world(&s);
    let primary = secret(&s, "secret://accounts-db/url");
    let replica = secret(&s, "secret://accounts-db-us-west-2/url");
    psql(&primary, "create table acks (seq bigint primary key)").unwrap();
    // Lag injected: replay paused on the replica while the primary writes on.
    psql(&replica, "select pg_wal_replay_pause()").unwrap();
    psql(&primary, "insert into acks select generate_series(1, 20000)").unwrap();
    let stop = |f: &str| {
        let record: serde_json::Value =
            serde_json::from_slice(&std::fs::read(s.path().join(format!(".skiff/local/databases/{f}.json"))).unwrap())
                .unwrap();
        let data = std::path::Path::new(record["base"].as_str().unwrap()).join("data");
        as_postgres(Command::new(pg_bin().join("pg_ctl")).args([
            "-D",
            &data.display().to_string(),
            "-m",
            "immediate",
            "-w",
            "stop",
        ]))
        .status()
        .unwrap()
    };
    // The primary's region is gone.
    assert!(stop("accounts-db").success());

    let args = ["failover", "stack", "accounts", "--to", "us-west-2", "--mode", "failover", "--max-lag", "64KiB"];
    let refused = w.run(&[&args[..], &["--yes", "--format", "json"]].concat());
    assert_eq!(refused["code"], "POLICY_DENIED", "{refused}");
    assert!(refused["facts"].to_string().contains("lag_bytes"), "{refused}");
    assert!(refused["recommended_actions"][0]["command"].as_str().unwrap().contains("--accept-data-loss"), "{refused}");
    let switchover = w.run(&["failover", "stack", "accounts", "--to", "us-west-2", "--yes", "--format", "json"]);
    assert_eq!(switchover["code"], "USAGE", "a switchover needs the primary: {switchover}");

    let gated = w.run(&[&args[..], &["--accept-data-loss", "--yes", "--format", "json"]].concat());
    assert_eq!(gated["code"], "APPROVAL_REQUIRED", "{gated}");
    let op = gated["operation_id"].as_str().unwrap().to_owned();
    let shown = w.run(&["saga", "show", &op, "--format", "json"]);
    assert!(shown.to_string().contains("ACCEPTS DATA LOSS"), "the approval names the loss: {shown}");
    let done = w.run(&["saga", "approve", &op, "--yes", "--format", "json"]);
    assert_eq!(done["code"], "OK", "{done}");
    let shown = w.run(&["saga", "show", &op, "--format", "json"]).to_string();
    assert!(shown.contains("data loss accepted"), "the facts report the lag accepted: {shown}");
    let now = secret(&s, "secret://accounts-db/url");
    psql(&now, "insert into acks values (-2)").expect("the promoted replica takes writes");
}

/// `skiff ARGS` frozen at engine hook `point`, then SIGKILLed there.
fn kill_at(w: &World<'_>, args: &[&str], point: &str) {
    let env: Vec<(&str, &str)> = w.env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    w.s.kill_at(&env, args, point);
}

#[test]
fn a_switchover_killed_at_every_step_boundary_resumes_to_one_promotion() {
    let before_gate = ["before:step_started:capacity", "after:result:capacity", "after:result:lag"];
    let after_gate = [
        "after:result:gate",
        "after:result:freeze",
        "after:result:catch-up",
        "after:result:promote",
        "after:result:repoint",
        "after:result:restart",
        "after:result:shift-10",
        "after:result:shift-100",
        "after:result:verify",
    ];
    for p in before_gate.iter().chain(after_gate.iter()) {
        let s = Sandbox::new();
        let (w, _stop) = world(&s);
        let primary = secret(&s, "secret://accounts-db/url");
        psql(&primary, "create table acks (seq bigint primary key); insert into acks values (1)").unwrap();
        let args = ["failover", "stack", "accounts", "--to", "us-west-2", "--yes", "--format", "json"];
        let op = if before_gate.contains(p) {
            kill_at(&w, &args, p);
            let listed = w.run(&["saga", "list", "--format", "json"]);
            let op = listed["data"]
                .as_array()
                .unwrap()
                .iter()
                .find(|o| o["saga"] == "region-failover")
                .and_then(|o| o["op_id"].as_str())
                .unwrap_or_else(|| panic!("no failover after a kill at {p}: {listed}"))
                .to_owned();
            let resumed = w.run(&["saga", "resume", &op, "--yes", "--format", "json"]);
            assert_eq!(resumed["code"], "APPROVAL_REQUIRED", "resume after a kill at {p}: {resumed}");
            psql(&primary, "insert into acks values (2)").expect("nothing frozen before the approval");
            let done = w.run(&["saga", "approve", &op, "--yes", "--format", "json"]);
            assert_eq!(done["code"], "OK", "after {p}: {done}");
            op
        } else {
            let gated = w.run(&args);
            assert_eq!(gated["code"], "APPROVAL_REQUIRED", "{gated}");
            let op = gated["operation_id"].as_str().unwrap().to_owned();
            kill_at(&w, &["saga", "approve", &op, "--yes", "--format", "json"], p);
            let resumed = w.run(&["saga", "resume", &op, "--yes", "--format", "json"]);
            assert_eq!(resumed["code"], "OK", "resume after a kill at {p}: {resumed}");
            op
        };
        // One promotion record, the writer region moved, the secret on the new primary.
        let records =
            std::fs::read_dir(s.path().join(".skiff/state/v1/databases/accounts-db/restores")).unwrap().count();
        assert_eq!(records, 1, "one promotion after {p} ({op})");
        let state: serde_json::Value = serde_json::from_slice(
            &std::fs::read(s.path().join(".skiff/state/v1/services/accounts/state.json")).unwrap(),
        )
        .unwrap();
        assert_eq!(state["writer_region"], "us-west-2", "after {p}");
        // Traffic weights as the saga last recorded them, read back from the front.
        assert_eq!(state["region_weights"], serde_json::json!({"us-east-1": 0, "us-west-2": 100}), "after {p}");
        let status = w.run(&["status", "accounts", "--format", "json"]);
        assert_eq!(front_weights(&status), [("us-east-1".to_owned(), 0), ("us-west-2".to_owned(), 100)], "after {p}");
        let now = secret(&s, "secret://accounts-db/url");
        assert_eq!(now, secret(&s, "secret://accounts-db-us-west-2/url"), "after {p}");
        // One writer-secret change: the version before it is the old primary's.
        assert_eq!(secret(&s, "secret://accounts-db/url-previous"), primary, "one cutover after {p}");
        let rows = psql(&now, "select count(*) from acks").unwrap();
        assert!(rows == "1" || rows == "2", "every acknowledged row on the new primary after {p}: {rows}");
        psql(&now, "insert into acks values (3)").expect("the new primary takes writes");
        let reconciled = w.run(&["reconcile", "accounts", "--format", "json"]);
        assert_eq!(reconciled["data"]["services"][0]["status"], "IN_SYNC", "after {p}: {reconciled}");
        assert_eq!(w.run(&["state", "verify", "--format", "json"])["code"], "OK", "after {p}");
    }
}

/// The spec with `database.failover: {automatic: true, after: 2s}`.
fn automatic_spec(s: &Sandbox, port: u16) -> String {
    let file = spec(s, port);
    let text = std::fs::read_to_string(&file).unwrap();
    let db = "database: {name: accounts-db, engine: postgres, version: \"16\"}";
    assert!(text.contains(db));
    let auto = "database: {name: accounts-db, engine: postgres, version: \"16\", \
                failover: {automatic: true, after: 2s, max_lag_bytes: 1048576}}";
    std::fs::write(&file, text.replace(db, auto)).unwrap();
    file
}

/// A writer trying every sequence number on both servers, logging which accepted it when.
struct BothWriter {
    stop: Arc<AtomicBool>,
    acked: Arc<Mutex<Vec<(usize, u64, std::time::Instant)>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl BothWriter {
    fn start(urls: [String; 2]) -> BothWriter {
        let (stop, acked) = (Arc::new(AtomicBool::new(false)), Arc::new(Mutex::new(Vec::new())));
        let (stop2, acked2) = (stop.clone(), acked.clone());
        let thread = std::thread::spawn(move || {
            let mut seq = 0;
            while !stop2.load(Ordering::SeqCst) {
                seq += 1;
                for (i, url) in urls.iter().enumerate() {
                    if psql(url, &format!("insert into acks values ({seq})")).is_ok() {
                        acked2.lock().unwrap().push((i, seq, std::time::Instant::now()));
                    }
                }
            }
        });
        BothWriter { stop, acked, thread: Some(thread) }
    }

    fn on(&self, server: usize) -> usize {
        self.acked.lock().unwrap().iter().filter(|(i, _, _)| *i == server).count()
    }

    fn finish(mut self) -> Vec<(usize, u64, std::time::Instant)> {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
        self.acked.lock().unwrap().clone()
    }
}

#[test]
fn a_killed_primary_is_replaced_automatically_and_two_servers_never_accept_writes_at_once() {
    let s = Sandbox::new();
    let runner = skiff_testkit::workspace_bin("skiff-runner").display().to_string();
    let env = vec![
        ("SKIFF_RUNNER_BIN", runner),
        ("SKIFF_LEASE_TTL_MS", "1500".to_owned()),
        ("SKIFF_HA_POLL_MS", "500".to_owned()),
    ];
    let _stop = StopAll(&s, env.clone());
    let w = World { s: &s, env };
    let file = automatic_spec(&s, skiff_testkit::free_port());
    let deployed = w.run(&["deploy", "-f", &file, "--yes", "--format", "json"]);
    assert_eq!(deployed["code"], "OK", "{deployed}");
    let primary_url = secret(&s, "secret://accounts-db/url");
    psql(&primary_url, "create table acks (seq bigint primary key)").unwrap();
    let read = |name: &str| -> serde_json::Value {
        let path = s.path().join(format!(".skiff/local/databases/{name}.json"));
        serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
    };
    let (primary, replica) = (read("accounts-db"), read("accounts-db-us-west-2"));
    let replica_url = primary_url.replace(&format!(":{}/", primary["port"]), &format!(":{}/", replica["port"]));
    assert_ne!(replica_url, primary_url);

    // A writer tries every row on both servers throughout.
    let writer = BothWriter::start([primary_url.clone(), replica_url]);
    assert!(skiff_testkit::wait_until(Duration::from_secs(10), || writer.on(0) > 20));
    assert_eq!(writer.on(1), 0, "the replica refuses writes while it follows");

    // The primary's server is killed; nobody runs a command.
    let data = std::path::Path::new(primary["base"].as_str().unwrap()).join("data");
    let pid: i32 =
        std::fs::read_to_string(data.join("postmaster.pid")).unwrap().lines().next().unwrap().parse().unwrap();
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL).unwrap();
    let state_file = s.path().join(".skiff/state/v1/services/accounts/state.json");
    let writer_region = || -> String {
        let state: serde_json::Value = serde_json::from_slice(&std::fs::read(&state_file).unwrap()).unwrap();
        state["writer_region"].as_str().unwrap_or("us-east-1").to_owned()
    };
    assert!(
        skiff_testkit::wait_until(Duration::from_secs(90), || writer_region() == "us-west-2"),
        "the watch promoted the replica (writer region {})",
        writer_region()
    );
    assert!(
        skiff_testkit::wait_until(Duration::from_secs(30), || writer.on(1) > 20),
        "writes go on on the new primary"
    );
    let acked = writer.finish();

    // No row was accepted by both, and every write the old primary took came before
    // the first the new one took: never two primaries at once.
    let on = |server: usize| acked.iter().filter(move |(i, _, _)| *i == server);
    let old: std::collections::BTreeSet<u64> = on(0).map(|(_, seq, _)| *seq).collect();
    assert!(on(1).all(|(_, seq, _)| !old.contains(seq)), "a row accepted by both servers");
    let last_old = on(0).map(|(_, _, t)| *t).max().unwrap();
    let first_new = on(1).map(|(_, _, t)| *t).min().unwrap();
    assert!(last_old < first_new, "the two servers accepted writes at the same time");
    // The saga goes on to its last step, fencing the old primary.
    assert!(
        skiff_testkit::wait_until(Duration::from_secs(60), || read("accounts-db")["fenced"] == true),
        "the old primary was fenced"
    );
    let ops = w.run(&["saga", "list", "--format", "json"]).to_string();
    assert!(ops.contains("region-failover"), "{ops}");
    // Started again, the old primary is a fenced standby: it refuses writes.
    restart_and_refuse(&primary, &primary_url);
}
