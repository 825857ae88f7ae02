//! `skiff tui` in tmux against a real skiffd and worker: a saga held at its approval
//! gate is approved with keys (`2`, `a`, its id, Enter) and the screen shows it
//! succeed; in `--readonly`, pressing every key of the keymap makes no mutating call
//! (skiffd's audit log gains nothing from the cockpit's token).

mod common;

use std::io::BufRead;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;

/// A process killed when dropped.
struct Proc(std::process::Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A tmux session on its own socket, killed when dropped.
struct Tmux {
    socket: String,
    session: String,
}

impl Tmux {
    fn start(socket: &str, command: &str) -> Tmux {
        let t = Tmux { socket: socket.to_owned(), session: "cockpit".to_owned() };
        let ok = Command::new("tmux")
            .args(["-L", socket, "new-session", "-d", "-s", &t.session, "-x", "150", "-y", "45", command])
            .status()
            .unwrap();
        assert!(ok.success(), "tmux started");
        t
    }

    fn keys(&self, keys: &[&str]) {
        for k in keys {
            let _ = Command::new("tmux").args(["-L", &self.socket, "send-keys", "-t", &self.session, k]).status();
            skiff_clock::SystemClock::block_for(Duration::from_millis(150));
        }
    }

    fn literal(&self, text: &str) {
        let _ = Command::new("tmux").args(["-L", &self.socket, "send-keys", "-t", &self.session, "-l", text]).status();
    }

    fn screen(&self) -> String {
        let out = Command::new("tmux")
            .args(["-L", &self.socket, "capture-pane", "-p", "-t", &self.session])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn wait_for(&self, text: &str) -> String {
        let mut last = String::new();
        let seen = skiff_testkit::wait_until(Duration::from_secs(60), || {
            last = self.screen();
            last.contains(text)
        });
        assert!(seen, "`{text}` never appeared; the screen:\n{last}");
        last
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux").args(["-L", &self.socket, "kill-server"]).status();
    }
}

/// The bucket skiffd serves (`dir/state`).
fn bucket(dir: &std::path::Path) -> skiff_state::Ledger {
    skiff_state::Ledger::open(&format!("file://{}", dir.join("state").display()), &Default::default()).unwrap()
}

fn skiffd_token(dir: &std::path::Path, name: &str, role: &str) -> String {
    let out = Command::new(skiff_testkit::workspace_bin("skiffd"))
        .args(["token", "create", "--name", name, "--role", role, "--bucket"])
        .arg(format!("file://{}", dir.join("state").display()))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

#[test]
fn the_cockpit_approves_a_gated_saga_and_readonly_makes_no_mutating_call() {
    let s = Sandbox::new();
    let dir = s.path();
    let ann = skiffd_token(dir, "ann", "approver");
    let watcher = skiffd_token(dir, "watcher", "approver");
    let mut d = Command::new(skiff_testkit::workspace_bin("skiffd"))
        .args(["serve", "--listen", "127.0.0.1:0", "--refresh-ms", "300", "--bucket"])
        .arg(format!("file://{}", dir.join("state").display()))
        .arg("--keys")
        .arg(dir.join("keys"))
        .current_dir(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(d.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let port: u16 = line.split("127.0.0.1:").nth(1).and_then(|r| r.split_whitespace().next()).unwrap().parse().unwrap();
    let _daemon = Proc(d);
    let _worker = Proc(
        Command::new(skiff_testkit::workspace_bin("skiff-worker"))
            .arg("--bucket")
            .arg(format!("file://{}", dir.join("state").display()))
            .arg("--keys")
            .arg(dir.join("keys"))
            .args(["--name", "w1", "--poll-ms", "100", "--reconcile-ms", "0"])
            .current_dir(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let server = format!("http://127.0.0.1:{port}");
    // A saga held at its approval gate, run there by the worker.
    let started = Command::new(assert_cmd::cargo::cargo_bin("skiff"))
        .args(["--server", &server, "--format", "json", "saga", "start", "selftest", "--yes"])
        .current_dir(dir)
        .env("SKIFF_TOKEN", &ann)
        .env("SKIFF_CONFIG", dir.join("none.yaml"))
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&started.stdout).unwrap();
    assert_eq!(v["code"], "APPROVAL_REQUIRED", "{v}");
    let op = v["operation_id"].as_str().unwrap().to_owned();

    let skiff = assert_cmd::cargo::cargo_bin("skiff").display().to_string();
    let run = |token: &str, extra: &str| {
        format!(
            "env SKIFF_TOKEN={token} SKIFF_CONFIG={} NO_COLOR=1 {skiff} --server {server} tui {extra}",
            dir.join("none.yaml").display()
        )
    };
    let socket = format!("skiff-tui-{}", std::process::id());
    {
        let t = Tmux::start(&socket, &run(&ann, ""));
        t.wait_for("Services");
        t.keys(&["2"]);
        t.wait_for(&op);
        t.wait_for("awaiting_approval");
        t.keys(&["a"]);
        t.wait_for("type the operation id");
        t.literal(&op);
        t.keys(&["Enter"]);
        t.wait_for(&format!("skiff saga approve {op} --yes"));
        t.wait_for("any key closes");
        t.keys(&["Escape"]);
        // The worker continues it; the operations list shows it succeed.
        t.wait_for(&format!("succeeded         selftest - {op}"));
        let screen = t.wait_for("Saga: selftest - — succeeded");
        assert!(!screen.contains("awaiting_approval"), "{screen}");
        t.keys(&["q"]);
        let audit = block(bucket(dir).audit_since(None)).unwrap();
        let seen: Vec<_> = audit.iter().map(|a| (a.actor.clone(), a.action.clone())).collect();
        assert!(
            audit.iter().any(|a| a.actor == "ann" && a.action == "api.approve"),
            "the approval went through skiffd: {seen:?}\n{screen}"
        );
    }

    // Read-only: every key of the keymap, nothing mutating reaches skiffd.
    {
        let t = Tmux::start(&socket, &run(&watcher, "--readonly"));
        t.wait_for("read-only");
        let keys = [
            "1", "2", "3", "4", "5", "6", "Tab", "BTab", "Left", "Right", "Up", "Down", "j", "k", "Enter", "r", "f",
            "/", "x", "Escape", "a", "Escape", "x", "Escape", "p", "Escape", "u", "Escape", "c", "Escape", "b",
            "Escape", "d", "Escape", "R", "Escape", "F", "Escape", "I", "Escape", "?", "Escape", "y", "Enter",
        ];
        for pane in ["1", "2", "6"] {
            t.keys(&[pane]);
            t.keys(&keys);
        }
        t.wait_for("read-only");
        t.keys(&["q"]);
    }
    let audit = block(bucket(dir).audit_since(None)).unwrap();
    let by_watcher: Vec<_> = audit.iter().filter(|a| a.actor == "watcher").map(|a| a.action.clone()).collect();
    assert!(by_watcher.is_empty(), "read-only made mutating calls: {by_watcher:?}");
}
