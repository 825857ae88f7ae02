//! What the control-plane tests share: skiffd and skiff-worker as real processes
//! (killed when dropped), tokens, the local provider stopped at the end, the ledger.

#![allow(dead_code, unreachable_pub, reason = "shared by several test binaries")]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A child process killed when dropped.
pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A running skiffd and its port.
pub struct Daemon {
    pub _proc: Proc,
    pub port: u16,
}

pub fn skiffd(dir: &Path, extra: &[&str]) -> Daemon {
    skiffd_with(dir, extra, &[], Stdio::null())
}

/// skiffd with more environment and its stderr where the test wants it.
pub fn skiffd_with(dir: &Path, extra: &[&str], env: &[(&str, &str)], stderr: Stdio) -> Daemon {
    let refresh: &[&str] = if extra.contains(&"--refresh-ms") { &[] } else { &["--refresh-ms", "300"] };
    let mut child = Command::new(env!("CARGO_BIN_EXE_skiffd"))
        .args(["serve", "--listen", "127.0.0.1:0"])
        .args(refresh)
        .arg("--bucket")
        .arg(format!("file://{}", dir.join("state").display()))
        .arg("--tokens")
        .arg(dir.join("tokens.json"))
        .arg("--keys")
        .arg(dir.join("keys"))
        .args(extra)
        .env("SKIFF_BIN", skiff_testkit::workspace_bin("skiff"))
        .env("SKIFF_RUNNER_BIN", skiff_testkit::workspace_bin("skiff-runner"))
        .env("SKIFF_LEASE_TTL_MS", "1500")
        .envs(env.iter().copied())
        .current_dir(dir)
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let port = line.split("127.0.0.1:").nth(1).and_then(|r| r.split_whitespace().next()).unwrap().parse().unwrap();
    Daemon { _proc: Proc(child), port }
}

pub fn worker(dir: &Path, name: &str, reconcile_ms: u64) -> (Proc, PathBuf) {
    worker_with(dir, name, reconcile_ms, &[])
}

pub fn worker_with(dir: &Path, name: &str, reconcile_ms: u64, extra: &[&str]) -> (Proc, PathBuf) {
    worker_env(dir, name, reconcile_ms, extra, &[])
}

/// A worker with more environment.
pub fn worker_env(dir: &Path, name: &str, reconcile_ms: u64, extra: &[&str], env: &[(&str, &str)]) -> (Proc, PathBuf) {
    let log = dir.join(format!("{name}.log"));
    let child = Command::new(skiff_testkit::workspace_bin("skiff-worker"))
        .arg("--bucket")
        .arg(format!("file://{}", dir.join("state").display()))
        .arg("--keys")
        .arg(dir.join("keys"))
        .args(["--name", name, "--poll-ms", "100", "--reconcile-ms", &reconcile_ms.to_string()])
        .args(extra)
        .env("SKIFF_BIN", skiff_testkit::workspace_bin("skiff"))
        .env("SKIFF_RUNNER_BIN", skiff_testkit::workspace_bin("skiff-runner"))
        .env("SKIFF_LEASE_TTL_MS", "1500")
        .envs(env.iter().copied())
        .current_dir(dir)
        .stdout(std::fs::File::create(&log).unwrap())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    (Proc(child), log)
}

pub fn token(dir: &Path, name: &str, role: &str) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_skiffd"))
        .args(["token", "create", "--name", name, "--role", role, "--tokens"])
        .arg(dir.join("tokens.json"))
        .output()
        .unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// Stops the local supervisor and its instances when dropped.
pub struct Down(pub PathBuf);

impl Drop for Down {
    fn drop(&mut self) {
        let _ = Command::new(skiff_testkit::workspace_bin("skiff"))
            .args(["local", "down", "--stop-instances", "--yes", "--bucket"])
            .arg(format!("file://{}", self.0.join("state").display()))
            .current_dir(&self.0)
            .output();
    }
}

pub fn ledger(dir: &Path) -> skiff_state::Ledger {
    skiff_state::Ledger::open(&format!("file://{}", dir.join("state").display()), &Default::default()).unwrap()
}

pub fn block<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(f)
}

/// One HTTP/1.1 request; (status, JSON body or the text as a string).
pub fn http(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&serde_json::Value>,
) -> (u16, serde_json::Value) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    if !body.is_empty() {
        req.push_str("Content-Type: application/json\r\n");
    }
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(&body);
    s.write_all(req.as_bytes()).unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    let status = raw.split_whitespace().nth(1).unwrap().parse().unwrap();
    let (head, text) = raw.split_once("\r\n\r\n").unwrap();
    let text =
        if head.to_ascii_lowercase().contains("transfer-encoding: chunked") { dechunk(text) } else { text.to_owned() };
    (status, serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text)))
}

pub fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 {
            break;
        }
        out.push_str(&rest[..n]);
        s = &rest[n + 2..];
    }
    out
}

/// `skiff --server` as `token` in `dir/app`: exit code and the JSON envelope.
pub fn remote(dir: &Path, d: &Daemon, token: &str, args: &[&str]) -> (i32, serde_json::Value) {
    let out = Command::new(skiff_testkit::workspace_bin("skiff"))
        .args(["--server", &format!("http://127.0.0.1:{}", d.port), "--format", "json"])
        .args(args)
        .current_dir(dir.join("app"))
        .env("SKIFF_TOKEN", token)
        .env("SKIFF_CONFIG", dir.join("none.yaml"))
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap_or(serde_json::Value::Null),
    )
}
