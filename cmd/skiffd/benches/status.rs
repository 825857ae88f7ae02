//! skiffd status benchmark: 1,000 services in a bucket; a load generator (8 keep-alive
//! connections, 5 s) asks `GET /v1/services/{svc}/status` of a release-built skiffd
//! answering from its index (`--index memory`) and of one answering straight from the
//! bucket (`--index bucket`), in the same run, for p50/p99 and requests/s — on a
//! file:// bucket and on S3 (moto on 127.0.0.1). Then the index build over 100,000
//! events, and two replicas on the file:// bucket sharing the same connections (half
//! each, as a round robin in front of them would). Target (ours; the issue sets none):
//! on S3 the index answers ≥ 10× the requests/s of the bucket.
//! Writes JSON to `$SKIFF_BENCH_OUT` (or stdout); run through `cargo xtask bench`.
#![expect(clippy::print_stdout, reason = "a benchmark reports on stdout")]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use skiff_state::docs::{Event, OperationIntent, ReconcileDoc, ServiceState, SyncStatus};
use skiff_state::{Ledger, Update, codec, keys};

const SERVICES: usize = 1_000;
const CONNECTIONS: usize = 8;
const SECONDS: u64 = 5;
const EVENTS: u64 = 100_000;
const OPS: u64 = 100;

fn name(i: usize) -> String {
    format!("svc-{i:04}")
}

async fn seed(ledger: &Ledger) {
    for i in 0..SERVICES {
        let yaml = format!(
            "service: {}\nartifact: {{path: bin/app}}\nrun: {{command: [app]}}\nport: 8080\nintent: {{availability: standard, cost: low}}\n",
            name(i)
        );
        let spec = skiff_spec::parse("bench.yaml", yaml.as_bytes()).unwrap();
        let ir = skiff_ir::compile(&spec);
        let digest = ledger.put_spec(&ir).await.unwrap();
        let svc = name(i);
        ledger
            .update::<ServiceState, _>(&keys::service_state(&svc), |_| {
                Ok(Update::Write(ServiceState {
                    service: svc.clone(),
                    spec_digest: Some(digest.clone()),
                    current_release: Some("2026.12.01.1".into()),
                    stable_release: Some("2026.12.01.1".into()),
                    ..Default::default()
                }))
            })
            .await
            .unwrap();
        ledger
            .update::<ReconcileDoc, _>(&keys::service_reconcile(&svc), |_| {
                Ok(Update::Write(ReconcileDoc {
                    service: svc.clone(),
                    release: Some("2026.12.01.1".into()),
                    status: SyncStatus::InSync,
                    ..Default::default()
                }))
            })
            .await
            .unwrap();
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn summary(mut lat: Vec<f64>, secs: f64) -> serde_json::Value {
    lat.sort_by(f64::total_cmp);
    json!({
        "requests": lat.len(),
        "requests_per_s": lat.len() as f64 / secs,
        "p50_ms": percentile(&lat, 0.5) * 1000.0,
        "p99_ms": percentile(&lat, 0.99) * 1000.0,
    })
}

/// One keep-alive connection asking for statuses until the deadline.
fn client(port: u16, token: &str, worker: usize, until: Instant) -> Vec<f64> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.set_nodelay(true).unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut lat = Vec::new();
    let mut i = worker;
    while Instant::now() < until {
        i = (i * 7919 + 13) % SERVICES;
        let started = Instant::now();
        write!(
            stream,
            "GET /v1/services/{}/status HTTP/1.1\r\nHost: bench\r\nauthorization: Bearer {token}\r\n\r\n",
            name(i)
        )
        .unwrap();
        let mut len = 0usize;
        let mut ok = false;
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            if line.starts_with("HTTP/1.1 200") {
                ok = true;
            }
            if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                len = v.trim().parse().unwrap();
            }
            if line == "\r\n" {
                break;
            }
        }
        let mut body = vec![0; len];
        reader.read_exact(&mut body).unwrap();
        assert!(ok, "status answered {}", String::from_utf8_lossy(&body));
        lat.push(started.elapsed().as_secs_f64());
    }
    lat
}

fn write_events(root: &Path) {
    for o in 0..OPS {
        let op = format!("op-bench-{o:03}");
        let intent = OperationIntent {
            op_id: op.clone(),
            saga: "deploy".into(),
            service: Some(name(o as usize)),
            actor: "bench".into(),
            reason: String::new(),
            idempotency_key: op.clone(),
            params: json!({}),
            created_at_ms: 0,
            trace: None,
        };
        let write = |key: &str, bytes: Vec<u8>| {
            let path = root.join(key);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, bytes).unwrap();
        };
        write(&keys::op_intent(&op), codec::encode(&intent));
        for seq in 1..=EVENTS / OPS {
            let e = Event {
                op_id: op.clone(),
                seq,
                event_id: format!("ev-{o}-{seq}"),
                at_ms: seq,
                event_type: "tick".into(),
                data: json!({}),
            };
            write(&keys::op_event(&op, seq), codec::encode(&e));
        }
    }
}

/// A release skiffd on `url` answering from `index`, and its port.
fn start(url: &str, index: &str, dir: &Path, env: &[(&'static str, String)]) -> (std::process::Child, u16) {
    let mut child = Command::new(skiff_testkit::workspace_release_bin("skiffd"))
        .args(["serve", "--listen", "127.0.0.1:0", "--refresh-ms", "600000", "--bucket", url, "--index", index])
        // One token drives the whole load: no per-token limit here.
        .args(["--rate-limit", "0"])
        .arg("--tokens")
        .arg(dir.join("tokens.json"))
        .arg("--keys")
        .arg(dir.join("keys"))
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let port: u16 = line.split("127.0.0.1:").nth(1).and_then(|r| r.split_whitespace().next()).unwrap().parse().unwrap();
    (child, port)
}

/// [`CONNECTIONS`] clients spread over `ports` for [`SECONDS`].
fn drive(ports: &[u16], token: &str) -> serde_json::Value {
    let until = Instant::now() + Duration::from_secs(SECONDS);
    let token = Arc::new(token.to_owned());
    let handles: Vec<_> = (0..CONNECTIONS)
        .map(|w| {
            let token = token.clone();
            let port = ports[w % ports.len()];
            std::thread::spawn(move || client(port, &token, w, until))
        })
        .collect();
    let mut served = Vec::new();
    for h in handles {
        served.extend(h.join().unwrap());
    }
    summary(served, SECONDS as f64)
}

/// Starts a release skiffd on `url` with `index`, loads it, stops it.
fn load(url: &str, index: &str, dir: &Path, token: &str, env: &[(&'static str, String)]) -> serde_json::Value {
    let (mut child, port) = start(url, index, dir, env);
    let out = drive(&[port], token);
    let _ = child.kill();
    let _ = child.wait();
    out
}

/// Two replicas on one bucket, each answering from its own index, the connections split.
fn replicas(url: &str, dir: &Path, token: &str) -> serde_json::Value {
    let (mut a, pa) = start(url, "memory", dir, &[]);
    let (mut b, pb) = start(url, "memory", dir, &[]);
    let out = drive(&[pa, pb], token);
    for c in [&mut a, &mut b] {
        let _ = c.kill();
        let _ = c.wait();
    }
    out
}

/// Both ways of answering on one bucket, and their ratio.
fn compare(backend: &str, url: &str, dir: &Path, token: &str, env: &[(&'static str, String)]) -> serde_json::Value {
    let indexed = load(url, "memory", dir, token, env);
    let bucket = load(url, "bucket", dir, token, env);
    let ratio = indexed["requests_per_s"].as_f64().unwrap() / bucket["requests_per_s"].as_f64().unwrap();
    json!({"backend": backend, "index": indexed, "bucket": bucket, "ratio_requests_per_s_index_to_bucket": ratio})
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let token =
        skiffd::auth::Tokens::create(&dir.path().join("tokens.json"), "bench", skiffd::auth::Role::Viewer).unwrap();

    let state = dir.path().join("state");
    let file_url = format!("file://{}", state.display());
    let ledger = Ledger::open(&file_url, &Default::default()).unwrap();
    rt.block_on(async {
        ledger.init("bench").await.unwrap();
        seed(&ledger).await;
    });
    let file = compare("file", &file_url, dir.path(), &token, &[]);
    let two = replicas(&file_url, dir.path(), &token);

    let moto = skiff_testkit::Moto::start();
    moto.create_bucket("bench");
    let s3 = skiff_objstore::S3Settings {
        endpoint: Some(moto.endpoint()),
        region: Some("us-east-1".into()),
        access_key_id: Some("testing".into()),
        secret_access_key: Some("testing".into()),
    };
    let s3_url = "s3://bench/skiff";
    let s3_ledger = Ledger::open(s3_url, &skiff_objstore::OpenOptions { s3, ..Default::default() }).unwrap();
    rt.block_on(async {
        s3_ledger.init("bench").await.unwrap();
        seed(&s3_ledger).await;
    });
    let on_s3 = compare("s3 (moto)", s3_url, dir.path(), &token, &moto.env());
    drop(moto);

    write_events(&state);
    let started = Instant::now();
    let snapshot = rt.block_on(skiffd::index::build(&ledger)).unwrap();
    let build_s = started.elapsed().as_secs_f64();
    assert!(snapshot.events >= EVENTS);

    let ratio = on_s3["ratio_requests_per_s_index_to_bucket"].as_f64().unwrap();
    let out = json!({
        "suite": "control",
        "description": "skiffd GET /v1/services/{svc}/status with 1,000 services, 8 keep-alive connections for 5 s: answered from the index vs straight from the bucket, on file:// and on S3 (moto); index build over 100,000 events (file://); two replicas on file:// sharing the 8 connections",
        "services": SERVICES,
        "connections": CONNECTIONS,
        "backends": [file, on_s3],
        "two_replicas_file_index": two,
        "index_build_s_with_100k_events": build_s,
        "index_events": snapshot.events,
        "target": {"metric": "s3 ratio_requests_per_s_index_to_bucket", "at_least": 10.0, "met": ratio >= 10.0},
    });
    let text = serde_json::to_string_pretty(&out).unwrap();
    match std::env::var_os("SKIFF_BENCH_OUT") {
        Some(path) => std::fs::write(path, text + "\n").unwrap(),
        None => println!("{text}"),
    }
}
