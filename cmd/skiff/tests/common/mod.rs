//! What the CLI's end-to-end tests share: a sandbox directory to run `skiff` in, with
//! temporary paths, times and ids redacted from its output.

#![allow(dead_code, unreachable_pub, reason = "shared by several test binaries")]

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use assert_cmd::Command;

pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

pub struct Sandbox {
    dir: tempfile::TempDir,
}

impl Sandbox {
    pub fn new() -> Self {
        Sandbox { dir: tempfile::tempdir().unwrap() }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn run(&self, args: &[&str]) -> Run {
        self.run_env(args, &[])
    }

    /// `skiff ARGS` frozen at engine hook `point` (`SKIFF_FREEZE_AT`), then SIGKILLed
    /// there; fails when the hook is never reached.
    pub fn kill_at(&self, env: &[(&str, &str)], args: &[&str], point: &str) {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let marker = self.path().join(format!("frozen-{n}"));
        let mut cmd = std::process::Command::new(assert_cmd::cargo::cargo_bin("skiff"));
        for (k, _) in std::env::vars() {
            if k.starts_with("SKIFF_") {
                cmd.env_remove(k);
            }
        }
        let mut child = cmd
            .current_dir(self.path())
            .env("HOME", self.path())
            .env("SKIFF_CONFIG", self.path().join("config.yaml"))
            .env("SKIFF_ACTOR", "tester")
            .env("SKIFF_FREEZE_AT", point)
            .env("SKIFF_FREEZE_MARKER", &marker)
            .envs(env.iter().copied())
            .args(args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let reached = skiff_testkit::wait_until(Duration::from_secs(60), || marker.exists());
        let _ = child.kill();
        let _ = child.wait();
        assert!(reached, "`skiff {}` never reached {point}", args.join(" "));
    }

    pub fn run_env(&self, args: &[&str], env: &[(&str, &str)]) -> Run {
        let mut cmd = Command::cargo_bin("skiff").unwrap();
        cmd.current_dir(self.path()).args(args);
        for (k, _) in std::env::vars() {
            if k.starts_with("SKIFF_") {
                cmd.env_remove(k);
            }
        }
        cmd.env("HOME", self.path())
            .env("SKIFF_CONFIG", self.path().join("config.yaml"))
            .env("SKIFF_ACTOR", "tester")
            .env_remove("XDG_CONFIG_HOME");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let out = cmd.output().unwrap();
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: self.redact(&String::from_utf8_lossy(&out.stdout)),
            stderr: self.redact(&String::from_utf8_lossy(&out.stderr)),
        }
    }

    pub fn redact(&self, text: &str) -> String {
        let tmp = self.path().display().to_string();
        let canon = std::fs::canonicalize(self.path()).map(|p| p.display().to_string()).unwrap_or_default();
        let text = text
            .replace(&canon, "[TMP]")
            .replace(&tmp, "[TMP]")
            .replace(env!("CARGO_PKG_VERSION"), "[VERSION]")
            .replace(&format!("{}-{}", std::env::consts::ARCH, std::env::consts::OS), "[TARGET]");
        let rules = [
            (r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z", "[TIME]"),
            (r#""(at_ms|since_ms|created_at_ms|updated_at_ms)": \d+"#, r#""$1": "[MS]""#),
            (r"\b(au|ev|w|engine|key)-[0-9a-z]{10}-[0-9a-z]{8}\b", "[$1-ID]"),
            // Parallel branches interleave: event numbers inside step summaries vary.
            (r"at event \d+", "at event [N]"),
        ];
        rules.iter().fold(text, |t, (re, with)| regex::Regex::new(re).unwrap().replace_all(&t, *with).into_owned())
    }

    pub fn copy_example(&self, name: &str) -> PathBuf {
        let src = repo().join("examples").join(name).join("skiff.yaml");
        let dst = self.path().join(format!("{name}.yaml"));
        std::fs::copy(src, &dst).unwrap();
        dst
    }
}

pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The human output of a run: stdout for successes, stderr for failures.
pub fn human(r: &Run) -> String {
    format!("exit {}\n{}{}", r.code, r.stdout, r.stderr)
}

pub fn json(r: &Run) -> serde_json::Value {
    assert!(r.stderr.is_empty(), "JSON mode prints nothing on stderr: {}", r.stderr);
    serde_json::from_str(&r.stdout).unwrap_or_else(|e| panic!("stdout is one JSON envelope ({e}):\n{}", r.stdout))
}

pub fn ledger(dir: &Path) -> skiff_state::Ledger {
    let url = format!("file://{}", dir.join(".skiff/state").display());
    skiff_state::Ledger::open(&url, &skiff_objstore::OpenOptions::default()).unwrap()
}

pub fn block<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(f)
}

/// Stops the sandbox's supervisor and everything it runs, even when the test fails.
/// `psql` on database `db` of the sandbox's local provider (its URL from the local
/// secret store), one statement; its trimmed output (empty when it fails).
pub fn psql_on(s: &Sandbox, db: &str, sql: &str) -> String {
    let state = format!("file://{}", s.path().join(".skiff/state").display());
    let secrets =
        skiff_secrets::LocalSecrets::new(skiff_provider_local::LocalDir::for_state(&state, s.path()).secrets());
    let url = secrets.get(&format!("secret://{db}/url")).unwrap().expect("the database URL");
    let out = std::process::Command::new("psql").args([url.as_str(), "-XAt", "-c", sql]).output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

pub struct StopAll<'a>(pub &'a Sandbox, pub Vec<(&'static str, String)>);

impl Drop for StopAll<'_> {
    fn drop(&mut self) {
        let env: Vec<(&str, &str)> = self.1.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let _ = self.0.run_env(&["local", "down", "--stop-instances", "--yes"], &env);
        // Cluster data kept outside the sandbox (PostgreSQL's home, when run as root).
        let state = format!("file://{}", self.0.path().join(".skiff/state").display());
        let data = skiff_provider_local::LocalDir::for_state(&state, self.0.path()).database_data();
        if !data.starts_with(self.0.path()) {
            let _ = std::fs::remove_dir_all(data);
        }
    }
}

pub fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .is_ok_and(|s| s.rsplit_once(')').is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z')))
}

pub fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(stream, "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let status = response.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, response.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default()))
}

/// One GET through a fresh connection: status and the `x-skiff-release` header.
pub fn get_release(port: u16) -> Option<(u16, Option<String>)> {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(stream, "GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let status = response.split_whitespace().nth(1)?.parse().ok()?;
    let release = response
        .lines()
        .take_while(|l| !l.is_empty())
        .find_map(|l| l.to_ascii_lowercase().strip_prefix("x-skiff-release:").map(|v| v.trim().to_owned()));
    Some((status, release))
}

/// Records `example`'s spec (in the sandbox as `<example>.yaml`) as its service's
/// deployed spec, with `release` running: what a deploy leaves for `skiff plan`.
pub fn record_spec(dir: &Path, example: &str, release: &str) -> skiff_ir::ServiceIr {
    let file = format!("{example}.yaml");
    let spec = skiff_spec::parse(&file, &std::fs::read(dir.join(&file)).unwrap()).unwrap();
    let ir = skiff_ir::compile(&spec);
    let l = ledger(dir);
    block(async {
        let digest = l.put_spec(&ir).await.unwrap();
        l.update::<skiff_state::docs::ServiceState, _>(&skiff_state::keys::service_state(&ir.service), |_| {
            Ok(skiff_state::Update::Write(skiff_state::docs::ServiceState {
                service: ir.service.clone(),
                spec_digest: Some(digest.clone()),
                current_release: Some(release.to_owned()),
                ..Default::default()
            }))
        })
        .await
        .unwrap();
    });
    ir
}
