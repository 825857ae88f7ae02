//! What the control-plane tests share: skiffd and skiff-worker as real processes
//! (killed when dropped), tokens, the local provider stopped at the end, the ledger.

#![allow(dead_code, unreachable_pub, reason = "shared by several test binaries")]

use std::io::BufRead;
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

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
    let mut child = Command::new(env!("CARGO_BIN_EXE_skiffd"))
        .args(["serve", "--listen", "127.0.0.1:0", "--refresh-ms", "300"])
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
        .current_dir(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
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
