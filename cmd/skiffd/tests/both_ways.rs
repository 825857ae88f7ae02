//! The same commands, direct and through skiffd, answer the same. Two identical
//! sandboxes run one script — a first deploy, a canary deploy, reads, a reconcile and
//! a rollback of a real hello service on the local provider — one with `skiff` on the
//! bucket, one with `skiff --server` against skiffd and a worker. Every answer (human
//! and JSON) and every progress line of the operations must match once what differs by
//! nature (temporary paths, ports, ids, times) is redacted.

mod common;

use std::path::Path;
use std::process::Command;

use common::{Down, Proc, skiffd, token, worker};

/// How a sandbox runs `skiff`.
enum Mode {
    Direct,
    Server { port: u16, token: String, _daemon: common::Daemon, _worker: Proc },
}

/// One command's output, redacted.
#[derive(Debug, PartialEq, Eq)]
struct Said {
    code: i32,
    stdout: String,
    /// The operation's step outcomes as progress shows them (`provision: ✓ …`), in
    /// order; progress in between depends on timing, not on the mode.
    events: Vec<String>,
    /// The operation the answer names, unredacted (not compared: ids differ).
    op: Option<OpId>,
}

/// An operation id, equal to any other (it is redacted in what is compared).
#[derive(Debug, Clone)]
struct OpId(String);

impl PartialEq for OpId {
    fn eq(&self, _: &OpId) -> bool {
        true
    }
}

impl Eq for OpId {}

/// Dropped in field order: the local provider stops first, then skiffd and the
/// worker, then the directory goes.
struct Sandbox {
    _down: Down,
    mode: Mode,
    dir: tempfile::TempDir,
}

const SPEC: &str = "service: web\nartifact: {path: bin/hello}\nrun: {command: [hello]}\nport: PORT\n\
health: {path: /healthz, interval: 1s, timeout: 500ms, healthy_threshold: 1, unhealthy_threshold: 2}\n\
instances: {min: 1, max: 4, desired: 1}\n\
rollout:\n  canary: {steps: [50, 100], bake: 0s}\n  drain_timeout: 1s\n  step_timeout: 1m\n  retention: 0s\n";

impl Sandbox {
    fn new(server: bool, port: u16) -> Sandbox {
        let dir = tempfile::tempdir().unwrap();
        let app = dir.path().join("app");
        std::fs::create_dir_all(app.join("bin")).unwrap();
        std::fs::copy(skiff_testkit::workspace_bin("hello"), app.join("bin/hello")).unwrap();
        std::fs::write(app.join("skiff.yaml"), SPEC.replace("PORT", &port.to_string())).unwrap();
        let down = Down(dir.path().to_path_buf());
        let mode = if server {
            // The token is named like the direct actor, so audit and intents agree.
            let token = token(dir.path(), "tester", "approver");
            let daemon = skiffd(dir.path(), &[]);
            let (w, _) = worker(dir.path(), "w1", 0);
            Mode::Server { port: daemon.port, token, _daemon: daemon, _worker: w }
        } else {
            Mode::Direct
        };
        let sandbox = Sandbox { _down: down, mode, dir };
        if let Mode::Direct = sandbox.mode {
            let keys = sandbox.skiff(&["keys", "generate"]);
            assert_eq!(keys.code, 0, "{keys:?}");
        }
        sandbox
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn skiff(&self, args: &[&str]) -> Said {
        let dir = self.path();
        let mut cmd = Command::new(skiff_testkit::workspace_bin("skiff"));
        for (k, _) in std::env::vars() {
            if k.starts_with("SKIFF_") {
                cmd.env_remove(k);
            }
        }
        cmd.current_dir(dir.join("app"))
            .env("SKIFF_CONFIG", dir.join("no-contexts.yaml"))
            .env("SKIFF_ACTOR", "tester")
            .env("SKIFF_STATE", format!("file://{}", dir.join("state").display()))
            .env("SKIFF_KEY", dir.join("keys/cosign.key"))
            .env("SKIFF_PUBLIC_KEY", dir.join("keys/cosign.pub"))
            .env("SKIFF_RUNNER_BIN", skiff_testkit::workspace_bin("skiff-runner"))
            .env("SKIFF_BIN", skiff_testkit::workspace_bin("skiff"))
            .env("SKIFF_LEASE_TTL_MS", "1500");
        if let Mode::Server { port, token, .. } = &self.mode {
            cmd.args(["--server", &format!("http://127.0.0.1:{port}")]).env("SKIFF_TOKEN", token);
        }
        let out = cmd.args(args).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        let events = stderr
            .lines()
            .filter_map(|l| l.trim_start().split_once("  ").filter(|(n, _)| n.parse::<u64>().is_ok()))
            .map(|(_, line)| redact(dir, line))
            .filter(|l| l.contains(": ✓ ") || l.contains(": ✗ ") || l.contains(": ↶ "))
            .collect();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let answer: serde_json::Value = serde_json::from_str(&stdout).unwrap_or_default();
        Said {
            code: out.status.code().unwrap_or(-1),
            stdout: redact(dir, &stdout),
            events,
            op: answer["operation_id"].as_str().map(|o| OpId(o.to_owned())),
        }
    }
}

/// What differs between two runs by nature: paths, ports, ids, times, signatures.
fn redact(dir: &Path, text: &str) -> String {
    let mut s = text.replace(&dir.display().to_string(), "[dir]");
    if let Ok(canon) = std::fs::canonicalize(dir) {
        s = s.replace(&canon.display().to_string(), "[dir]");
    }
    for (pattern, with) in [
        (r"op-[0-9a-f]{20}", "[op]"),
        (r"engine-[0-9a-z]{10}-[0-9a-z]{8}", "[engine]"),
        (r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z", "[time]"),
        (r#""[a-z_]*_ms": ?\d+"#, r#""[ms]": 0"#),
        (r#""(created_at|signature|public_key_pem)": ?"[^"]*""#, r#""$1": "[redacted]""#),
        (r"127\.0\.0\.1:\d+", "127.0.0.1:[port]"),
        // Each operation's trace is its own.
        (r#""traceparent": ?"[^"]*""#, r#""traceparent": "[trace]""#),
        (r"\bi-[0-9a-z-]+", "[instance]"),
        (r"\bpid \d+\b", "pid [n]"),
        (r"\d+(\.\d+)? ?ms\b", "[ms]"),
        // Resource use the runners report with their heartbeats.
        // (measured with heartbeats: a fresh instance may not have reported yet)
        (r"cpu [0-9.]+% per instance, [0-9.]+ MB memory", "[usage measured]"),
        (r"cpu and memory not measured yet \(instances report them with their heartbeats\)", "[usage measured]"),
        (r"cpu (-|[0-9.]+%) *", "cpu [usage] "),
        (r#""(cpu_percent|rss_kb|rss_mb)": ?([0-9.]+|null)"#, r#""$1": 0"#),
        // How many progress events a step reports depends on how often it looked.
        (r"\b\d+ events\b", "[n] events"),
        (r#""events": ?\d+"#, r#""events": 0"#),
    ] {
        s = regex::Regex::new(pattern).unwrap().replace_all(&s, with).into_owned();
    }
    s
}

/// The script, run in one sandbox; each step's output.
fn script(s: &Sandbox) -> Vec<(&'static str, Said)> {
    let mut out: Vec<(&'static str, Said)> = Vec::new();
    // Runs one step (`ok`: it must succeed); the operation it answered about.
    let mut run = |name: &'static str, ok: bool, args: &[&str]| {
        let said = s.skiff(args);
        assert!(!ok || said.code == 0, "{name}: {said:#?}");
        let op = said.op.clone().map(|o| o.0).unwrap_or_default();
        out.push((name, said));
        op
    };
    run("plan", true, &["plan", "--format", "json"]);
    run("first deploy", true, &["deploy", "--no-build", "--yes"]);
    run("status", true, &["status", "web"]);
    run("status all", true, &["status"]);
    let canary = run("canary deploy", true, &["deploy", "--no-build", "--yes", "--format", "json"]);
    run("status json", true, &["status", "web", "--format", "json"]);
    run("saga show", true, &["saga", "show", &canary, "--format", "json"]);
    run("saga list", true, &["saga", "list", "--service", "web"]);
    run("release list", true, &["release", "list", "web"]);
    run("metrics", true, &["metrics", "web", "--format", "json"]);
    run("reconcile", true, &["reconcile", "web"]);
    run("policy check", true, &["policy", "check"]);
    run("saga kinds", true, &["saga", "kinds"]);
    run("rollback", true, &["rollback", "web", "--yes"]);
    run("status after rollback", true, &["status", "web"]);
    run("unknown service", false, &["status", "nosuch", "--format", "json"]);
    out
}

#[test]
fn every_command_answers_the_same_direct_and_through_the_server() {
    let port = skiff_testkit::free_port();
    let direct = {
        let s = Sandbox::new(false, port);
        script(&s)
    };
    let served = {
        let s = Sandbox::new(true, port);
        script(&s)
    };
    let mut differences = Vec::new();
    for ((name, d), (_, r)) in direct.iter().zip(&served) {
        if d != r {
            differences.push(format!("== {name}\n-- direct:\n{d:#?}\n-- through skiffd:\n{r:#?}"));
        }
    }
    assert!(differences.is_empty(), "{}", differences.join("\n"));
    // The deploys' progress is the engine's own, step by step, in both.
    let first = &direct[1].1;
    assert!(first.events.iter().any(|l| l.contains("provision: ✓")), "{first:#?}");
}
