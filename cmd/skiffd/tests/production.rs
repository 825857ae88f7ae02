//! skiffd as a platform team runs it: several replicas on one bucket, tokens in the
//! bucket (issued, revoked, expired, rotated while serving), read-your-writes after a
//! served deploy, hostile requests shed with envelopes, and a graceful stop.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

mod common;
use common::{Daemon, Down, http, remote, skiffd, worker};

/// `skiffd token ACTION … --bucket` on the test's bucket.
fn token_cli(dir: &std::path::Path, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_skiffd"))
        .arg("token")
        .args(args)
        .arg("--bucket")
        .arg(format!("file://{}", dir.join("state").display()))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

fn status_code(d: &Daemon, token: &str) -> u16 {
    http(d.port, "GET", "/v1/services", &[("authorization", &format!("Bearer {token}"))], None).0
}

fn until(deadline: Duration, mut f: impl FnMut() -> bool) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < deadline {
        if f() {
            return Some(start.elapsed());
        }
        skiff_clock::SystemClock::block_for(Duration::from_millis(50));
    }
    None
}

#[test]
fn tokens_in_the_bucket_apply_on_every_replica_without_a_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (a, b) = (skiffd(dir, &[]), skiffd(dir, &[]));
    // Issued while both run: accepted by both on first use.
    let ci = token_cli(dir, &["create", "--name", "ci", "--role", "viewer"]);
    assert_eq!(status_code(&a, &ci), 200);
    assert_eq!(status_code(&b, &ci), 200);
    // Revoked (in the bucket): both refuse it within the documented second.
    assert!(token_cli(dir, &["revoke", "ci"]).starts_with("revoked ci"));
    for d in [&a, &b] {
        let took = until(Duration::from_secs(5), || status_code(d, &ci) == 401).expect("refused");
        assert!(took < Duration::from_millis(2_500), "refused after {took:?}");
    }
    let (code, body) = http(a.port, "GET", "/v1/services", &[("authorization", &format!("Bearer {ci}"))], None);
    assert_eq!((code, body["code"].as_str()), (401, Some("UNAUTHENTICATED")));
    assert!(body["facts"].to_string().contains("revoked"), "{body}");
    // Rotated: a new secret, the old one refused.
    let rotated = token_cli(dir, &["rotate", "ci"]);
    assert!(until(Duration::from_secs(5), || status_code(&b, &rotated) == 200).is_some());
    // Expiring: accepted, then refused once its time is up.
    let short = token_cli(dir, &["create", "--name", "short", "--role", "viewer", "--ttl", "2s"]);
    assert_eq!(status_code(&a, &short), 200);
    assert!(
        until(Duration::from_secs(6), || status_code(&a, &short) == 401 && status_code(&b, &short) == 401).is_some()
    );
    let listed = token_cli(dir, &["list"]);
    assert!(listed.contains("ci") && listed.contains("short") && listed.contains("viewer"), "{listed}");
    // The tokens never reach the bucket, only their digests.
    let stored = std::fs::read_to_string(dir.join("state/v1/tokens/ci.json")).unwrap();
    assert!(!stored.contains(&rotated) && stored.contains("sha256"), "{stored}");
}

/// Right after `skiff --server deploy` reports success, the same skiffd's status shows
/// the new release healthy; another replica does with the consistency token.
#[test]
fn a_served_deploy_is_read_back_at_once_on_every_replica() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let _down = Down(dir.to_path_buf());
    let approver = token_cli(dir, &["create", "--name", "ann", "--role", "approver"]);
    // A long refresh period: only read-your-writes can make the reads fresh.
    let a = skiffd(dir, &["--refresh-ms", "600000"]);
    let b = skiffd(dir, &["--refresh-ms", "600000"]);
    let (_w, _) = worker(dir, "w1", 0);
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
    let auth = format!("Bearer {approver}");
    // Before: B's index knows nothing of web.
    let (code, _) = http(b.port, "GET", "/v1/services/web/status", &[("authorization", &auth)], None);
    assert_eq!(code, 404);
    let (code, deployed) = remote(dir, &a, &approver, &["deploy", "--no-build", "--yes"]);
    assert_eq!(code, 0, "{deployed}");
    let release = deployed["data"]["release"].as_str().unwrap().to_owned();
    // No sleep: the same replica read its client's write.
    let (code, status) = http(a.port, "GET", "/v1/services/web/status", &[("authorization", &auth)], None);
    assert_eq!(code, 200, "{status}");
    assert_eq!(status["release"]["current"], release.as_str(), "{status}");
    // Health comes from the runners' heartbeats, which may trail the load balancer's
    // view the deploy waited on by a probe interval: read it until it settles.
    let healthy = || {
        let (_, status) = http(a.port, "GET", "/v1/services/web/status", &[("authorization", &auth)], None);
        status["health"]["state"] == "healthy"
    };
    assert!(skiff_testkit::wait_until(Duration::from_secs(10), healthy), "the service reports healthy");
    // The operation's answer carries a consistency token; B honours it.
    let op = deployed["operation_id"].as_str().unwrap();
    let token = consistency(a.port, &format!("/v1/operations/{op}"), &auth);
    let (code, status) = http(
        b.port,
        "GET",
        "/v1/services/web/status",
        &[("authorization", &auth), ("x-skiff-consistency", &token)],
        None,
    );
    assert_eq!(code, 200, "{status}");
    assert_eq!(status["release"]["current"], release.as_str(), "{status}");
}

/// The consistency token a GET answers with.
fn consistency(port: u16, path: &str, auth: &str) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nauthorization: {auth}\r\n\r\n").unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    raw.lines()
        .find_map(|l| l.to_ascii_lowercase().strip_prefix("x-skiff-consistency:").map(|v| v.trim().to_owned()))
        .unwrap_or_else(|| panic!("no consistency token in {raw}"))
}

/// Raw bytes to skiffd; the status line and body (or how the connection ended).
fn raw(port: u16, bytes: &[u8]) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let _ = s.write_all(bytes);
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

fn rss_kb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:").and_then(|v| v.split_whitespace().next()?.parse().ok()))
        .unwrap_or(0)
}

#[test]
fn hostile_requests_are_shed_with_envelopes_and_others_keep_being_served() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let flood = token_cli(dir, &["create", "--name", "flood", "--role", "operator"]);
    let calm = token_cli(dir, &["create", "--name", "calm", "--role", "viewer"]);
    let d = skiffd(dir, &["--rate-limit", "50", "--header-timeout-ms", "1000"]);
    let pid = d._proc.0.id();
    let fa = format!("Bearer {flood}");
    let post = |body: &[u8], ctype: &str| {
        let mut req = format!(
            "POST /v1/intents HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nauthorization: {fa}\r\nidempotency-key: k1\r\ncontent-type: {ctype}\r\ncontent-length: {}\r\n\r\n",
            body.len()
        )
        .into_bytes();
        req.extend_from_slice(body);
        raw(d.port, &req)
    };
    let envelope = |text: &str| -> Value {
        serde_json::from_str(text.split_once("\r\n\r\n").map_or("", |(_, b)| b)).unwrap_or(Value::Null)
    };
    // Invalid JSON and a wrong content type: USAGE envelopes.
    let bad = post(b"{not json", "application/json");
    assert!(bad.starts_with("HTTP/1.1 400"), "{bad}");
    assert_eq!(envelope(&bad)["code"], "USAGE");
    let text = post(b"hello", "text/plain");
    assert!(text.starts_with("HTTP/1.1 415"), "{text}");
    assert_eq!(envelope(&text)["code"], "USAGE");
    // A huge body: refused without reading it all.
    let huge = post(&vec![b'x'; 3 * 1024 * 1024], "application/json");
    assert!(huge.starts_with("HTTP/1.1 413"), "{}", &huge[..huge.len().min(200)]);
    assert_eq!(envelope(&huge)["code"], "USAGE");
    // Oversized headers: an envelope too.
    let big = format!(
        "GET /v1/services HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nx-filler: {}\r\n\r\n",
        "a".repeat(20 * 1024)
    );
    let answered = raw(d.port, big.as_bytes());
    assert!(answered.starts_with("HTTP/1.1 431"), "{}", &answered[..answered.len().min(200)]);
    assert_eq!(envelope(&answered)["code"], "USAGE");
    // Slow headers: the connection is dropped after the header timeout.
    let mut slow = TcpStream::connect(("127.0.0.1", d.port)).unwrap();
    slow.write_all(b"GET /v1/services HTTP/1.1\r\nHost: loc").unwrap();
    slow.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let started = Instant::now();
    let mut buf = Vec::new();
    let _ = slow.read_to_end(&mut buf);
    assert!(started.elapsed() < Duration::from_secs(5), "dropped after the header timeout");
    // Unknown routes: NOT_FOUND envelopes.
    let (code, missing) = http(d.port, "GET", "/v1/nowhere", &[], None);
    assert_eq!((code, missing["code"].as_str()), (404, Some("NOT_FOUND")));
    // A flood from one token: 429 with Retry-After; another token is served meanwhile.
    let before = rss_kb(pid);
    let port = d.port;
    let flooders: Vec<_> = (0..4)
        .map(|_| {
            let fa = fa.clone();
            std::thread::spawn(move || {
                let (mut ok, mut limited, mut other) = (0, 0, 0);
                let end = Instant::now() + Duration::from_secs(3);
                while Instant::now() < end {
                    let out = raw(
                        port,
                        format!(
                            "GET /v1/services HTTP/1.1\r\nHost: l\r\nConnection: close\r\nauthorization: {fa}\r\n\r\n"
                        )
                        .as_bytes(),
                    );
                    if out.starts_with("HTTP/1.1 200") {
                        ok += 1;
                    } else if out.starts_with("HTTP/1.1 429") && out.to_ascii_lowercase().contains("retry-after:") {
                        limited += 1;
                    } else {
                        other += 1;
                    }
                }
                (ok, limited, other)
            })
        })
        .collect();
    let mut calm_ok = 0;
    let end = Instant::now() + Duration::from_secs(3);
    while Instant::now() < end {
        if status_code(&d, &calm) == 200 {
            calm_ok += 1;
        }
        skiff_clock::SystemClock::block_for(Duration::from_millis(100));
    }
    let (mut ok, mut limited, mut other) = (0, 0, 0);
    for f in flooders {
        let (o, l, x) = f.join().unwrap();
        (ok, limited, other) = (ok + o, limited + l, other + x);
    }
    assert!(limited > 0 && other == 0, "flood: {ok} served, {limited} shed with 429, {other} other");
    assert!(ok <= 50 * 4 + 100, "the flood got about its rate: {ok}");
    assert!(calm_ok >= 25, "the calm token was served meanwhile: {calm_ok}");
    let after = rss_kb(pid);
    assert!(after < before + 100 * 1024, "memory bounded: {before} kB → {after} kB");
    // The 429 body is an envelope.
    let (code, shed) = loop {
        let r = http(d.port, "GET", "/v1/services", &[("authorization", &fa)], None);
        if r.0 == 429 {
            break r;
        }
    };
    assert_eq!((code, shed["code"].as_str()), (429, Some("RATE_LIMITED")), "{shed}");
    // Still serving.
    assert_eq!(status_code(&d, &calm), 200);
    let (code, ready) = http(d.port, "GET", "/readyz", &[], None);
    assert_eq!((code, ready["ok"].as_bool()), (200, Some(true)), "{ready}");
    let _ = json!({});
}

#[test]
fn sigterm_finishes_in_flight_requests_then_stops() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let viewer = token_cli(dir, &["create", "--name", "v", "--role", "viewer"]);
    let d = skiffd(dir, &["--drain-ms", "5000"]);
    let pid = d._proc.0.id();
    let (code, ready) = http(d.port, "GET", "/readyz", &[], None);
    assert_eq!(code, 200, "{ready}");
    // A request in flight (headers sent, body pending) when SIGTERM arrives.
    let mut s = TcpStream::connect(("127.0.0.1", d.port)).unwrap();
    write!(s, "GET /v1/services HTTP/1.1\r\nHost: l\r\nConnection: close\r\nauthorization: Bearer {viewer}\r\n\r\n")
        .unwrap();
    let _ = Command::new("kill").args(["-TERM", &pid.to_string()]).status();
    let mut out = String::new();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let _ = s.read_to_string(&mut out);
    assert!(out.starts_with("HTTP/1.1 200"), "the in-flight request was answered: {out}");
    let stopped = until(Duration::from_secs(8), || {
        !std::path::Path::new(&format!("/proc/{pid}")).exists()
            || std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| s.contains(") Z"))
    });
    assert!(stopped.is_some(), "skiffd exited after draining");
    assert!(TcpStream::connect(("127.0.0.1", d.port)).is_err(), "no longer accepting");
}

/// Two skiffd replicas and two workers on one bucket behind a round robin (the local
/// provider's load balancer): intents posted through it land on both replicas, each
/// runs once, and both replicas answer the same status.
#[test]
fn two_replicas_and_two_workers_behind_a_round_robin_agree() {
    use skiff_pluginapi::{HealthCheck, LoadBalancerSpec, Provider as _, Target, TargetGroupSpec, Weight};
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let _down = Down(dir.to_path_buf());
    let ann = token_cli(dir, &["create", "--name", "ann", "--role", "approver"]);
    let (a, b) = (skiffd(dir, &[]), skiffd(dir, &[]));
    let (_w1, _) = worker(dir, "w1", 0);
    let (_w2, _) = worker(dir, "w2", 0);
    let up = Command::new(skiff_testkit::workspace_bin("skiff"))
        .args(["local", "up", "--bucket", &format!("file://{}", dir.join("state").display())])
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(up.status.success(), "{}", String::from_utf8_lossy(&up.stdout));
    let provider = skiff_provider_local::LocalProvider::new(
        skiff_provider_local::LocalDir::new(dir.join("local")),
        common::ledger(dir),
    );
    let front = skiff_testkit::free_port();
    common::block(async {
        let t = provider.traffic();
        t.ensure_load_balancer(&LoadBalancerSpec { service: "skiffd".into(), listener_port: front }).await.unwrap();
        let health = HealthCheck {
            path: "/readyz".into(),
            interval_ms: 500,
            timeout_ms: 500,
            healthy_threshold: 1,
            unhealthy_threshold: 2,
        };
        let tg = TargetGroupSpec {
            name: "skiffd-replicas".into(),
            service: "skiffd".into(),
            port: a.port,
            health,
            deregistration_delay_ms: 0,
            target_type: skiff_pluginapi::TargetType::Instance,
        };
        t.ensure_target_group(&tg).await.unwrap();
        let targets = [
            Target { id: "replica-a".into(), address: "127.0.0.1".into(), port: a.port },
            Target { id: "replica-b".into(), address: "127.0.0.1".into(), port: b.port },
        ];
        t.register("skiffd-replicas", &targets).await.unwrap();
        t.set_weights("skiffd", &[Weight { target_group: "skiffd-replicas".into(), weight: 100 }]).await.unwrap();
    });
    let auth = format!("Bearer {ann}");
    let ready = until(Duration::from_secs(20), || http(front, "GET", "/readyz", &[], None).0 == 200);
    assert!(ready.is_some(), "the round robin reaches a ready replica");
    let mut tokens = Vec::new();
    for i in 0..10 {
        let body = json!({"service_name": format!("svc-{i}"), "environment": "staging", "availability": "standard"});
        let key = format!("k{i}");
        let (code, answer) =
            http(front, "POST", "/v1/intents", &[("authorization", &auth), ("idempotency-key", &key)], Some(&body));
        assert_eq!(code, 200, "{answer}");
        tokens.push(answer["op_id"].as_str().unwrap().to_owned());
    }
    // Both replicas took intents.
    for d in [&a, &b] {
        let (_, metrics) = http(d.port, "GET", "/metrics", &[], None);
        assert!(
            metrics.as_str().unwrap().contains("skiffd_requests_total{route=\"/v1/intents\",status=\"200\"}"),
            "replica on {} served intents",
            d.port
        );
    }
    // Every intent runs once (two workers share them), and both replicas agree.
    let done = until(Duration::from_secs(60), || {
        tokens.iter().all(|op| {
            http(a.port, "GET", &format!("/v1/operations/{op}"), &[("authorization", &auth)], None).1["data"]["status"]
                == "succeeded"
                || http(a.port, "GET", &format!("/v1/operations/{op}"), &[("authorization", &auth)], None).1["status"]
                    == "succeeded"
        })
    });
    assert!(done.is_some(), "every intent ran");
    for i in 0..10 {
        let path = format!("/v1/services/svc-{i}/status");
        let read = || {
            let (ca, sa) = http(a.port, "GET", &path, &[("authorization", &auth)], None);
            let (cb, sb) = http(b.port, "GET", &path, &[("authorization", &auth)], None);
            (ca, sa, cb, sb)
        };
        // A replica that did not take the intent learns of it at its next refresh
        // (every 2 s, and soon after a write it makes itself).
        let _ = until(Duration::from_secs(10), || {
            let (ca, sa, cb, sb) = read();
            (ca, cb) == (200, 200) && sa["latest_intent"] == sb["latest_intent"]
        });
        let (ca, sa, cb, sb) = read();
        assert_eq!((ca, cb), (200, 200), "{sa} {sb}");
        assert_eq!(sa["latest_intent"], sb["latest_intent"], "svc-{i}");
        assert_eq!(sa["decision"], sb["decision"], "svc-{i}");
    }
    let ledger = common::ledger(dir);
    for op in &tokens {
        let starts = common::block(ledger.events_from(op, 0))
            .unwrap()
            .into_iter()
            .filter(|e| e.event_type == "operation_started")
            .count();
        assert!(starts <= 1, "{op} ran once");
    }
}
