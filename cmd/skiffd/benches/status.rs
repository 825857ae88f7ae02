//! skiffd status benchmark: 1,000 services in a bucket; a load generator (8 keep-alive
//! connections, 5 s) asks `GET /v1/services/{svc}/status` of a release-built skiffd
//! answering from its index (`--index memory`) and of one answering straight from the
//! bucket (`--index bucket`), in the same run, for p50/p99 and requests/s — on a
//! file:// bucket and on S3 (moto on 127.0.0.1). Then the index build over 100,000
//! events, and two replicas on the file:// bucket sharing the same connections (half
//! each, as a round robin in front of them would). The floor: the same documents at the
//! same paths served by nginx as static files, driven by the same client. Last, p50/p99
//! while the index rebuilds every 2 s under a writer. Targets: on S3 the index answers
//! ≥ 10× the requests/s of the bucket, and ≥ 0.8× the static-file floor.
//! Writes JSON to `$SKIFF_BENCH_OUT` (or stdout); run through `cargo xtask bench`.
#![expect(clippy::print_stdout, clippy::print_stderr, reason = "a benchmark reports on stdout and its rows on stderr")]

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use skiff_state::docs::{Event, OperationIntent, ReconcileDoc, ServiceState, SyncStatus};
use skiff_state::{Ledger, Update, codec, keys};
use skiff_testkit::bench::Nginx;

const SERVICES: usize = 1_000;
const CONNECTIONS: usize = 8;
const SECONDS: u64 = 5;
const EVENTS: u64 = 100_000;
const OPS: u64 = 100;
/// The index rebuild interval while measuring steady reads (none within the run), and
/// while measuring reads with the index refreshing (skiffd's default).
const NO_REFRESH: u64 = 600_000;
const REFRESH: u64 = 2_000;
/// How often the writer changes a document during the refreshing measurement.
const WRITE_EVERY: Duration = Duration::from_millis(20);
/// The floor skiffd's index answers should reach: this share of nginx's static files.
const FLOOR_SHARE: f64 = 0.8;

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
        response(&mut reader);
        lat.push(started.elapsed().as_secs_f64());
    }
    lat
}

/// Reads one HTTP/1.1 answer (Content-Length framed) and returns its body.
///
/// # Panics
/// When it is not a 200.
fn response(reader: &mut impl BufRead) -> Vec<u8> {
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
    body
}

/// Every service's status as skiffd (on `port`) answers it, written where nginx serves
/// the same path from `root`.
fn copy_statuses(port: u16, token: &str, root: &Path) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    for i in 0..SERVICES {
        let path = format!("v1/services/{}/status", name(i));
        write!(stream, "GET /{path} HTTP/1.1\r\nHost: bench\r\nauthorization: Bearer {token}\r\n\r\n").unwrap();
        let body = response(&mut reader);
        let file = root.join(path);
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(file, body).unwrap();
    }
}

/// The floor: the same documents, paths and client, served as static files by nginx.
fn floor(url: &str, dir: &Path, token: &str) -> Option<serde_json::Value> {
    let (mut child, port) = start(url, "memory", dir, &[], NO_REFRESH);
    let root = dir.join("static");
    copy_statuses(port, token, &root);
    let _ = child.kill();
    let _ = child.wait();
    let Some(nginx) = Nginx::static_files(&root) else {
        eprintln!("nginx is not installed or did not start: no static-file floor (apt-get install nginx-light)");
        return None;
    };
    Some(drive(&[nginx.port], token))
}

/// While `run` loads skiffd, a writer changes a service's reconcile document every
/// [`WRITE_EVERY`] behind its back (the index picks them up on its timer).
fn while_writing<T>(ledger: &Ledger, rt: &tokio::runtime::Runtime, run: impl FnOnce() -> T) -> (T, u64) {
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (ledger, stop, handle) = (ledger.clone(), stop.clone(), rt.handle().clone());
        std::thread::spawn(move || {
            let mut writes = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let svc = name((writes as usize * 37) % SERVICES);
                handle.block_on(async {
                    ledger
                        .update::<ReconcileDoc, _>(&keys::service_reconcile(&svc), |old| {
                            let mut doc = old.cloned().unwrap_or_default();
                            doc.status =
                                if doc.status == SyncStatus::InSync { SyncStatus::Drifted } else { SyncStatus::InSync };
                            Ok(Update::Write(doc))
                        })
                        .await
                        .unwrap();
                });
                writes += 1;
                skiff_clock::SystemClock::block_for(WRITE_EVERY);
            }
            writes
        })
    };
    let out = run();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    (out, writer.join().unwrap())
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
fn start(
    url: &str,
    index: &str,
    dir: &Path,
    env: &[(&'static str, String)],
    refresh_ms: u64,
) -> (std::process::Child, u16) {
    let mut child = Command::new(skiff_testkit::workspace_release_bin("skiffd"))
        .args(["serve", "--listen", "127.0.0.1:0", "--bucket", url, "--index", index])
        .args(["--refresh-ms", &refresh_ms.to_string()])
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
    let (mut child, port) = start(url, index, dir, env, NO_REFRESH);
    let out = drive(&[port], token);
    let _ = child.kill();
    let _ = child.wait();
    out
}

/// Two replicas on one bucket, each answering from its own index, the connections split.
fn replicas(url: &str, dir: &Path, token: &str) -> serde_json::Value {
    let (mut a, pa) = start(url, "memory", dir, &[], NO_REFRESH);
    let (mut b, pb) = start(url, "memory", dir, &[], NO_REFRESH);
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
    let nginx_static = floor(&file_url, dir.path(), &token);

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

    let (mut child, port) = start(&file_url, "memory", dir.path(), &[], REFRESH);
    let (refreshing, writes) = while_writing(&ledger, &rt, || drive(&[port], &token));
    let _ = child.kill();
    let _ = child.wait();

    let ratio = on_s3["ratio_requests_per_s_index_to_bucket"].as_f64().unwrap();
    let vs_floor = nginx_static
        .as_ref()
        .map(|n| file["index"]["requests_per_s"].as_f64().unwrap() / n["requests_per_s"].as_f64().unwrap());
    for (row, v) in [
        ("skiffd index", Some(&file["index"])),
        ("nginx static", nginx_static.as_ref()),
        ("refreshing", Some(&refreshing)),
    ] {
        if let Some(v) = v {
            eprintln!(
                "{row:<13} {:>9.0} req/s  p50 {:.3} ms  p99 {:.3} ms",
                v["requests_per_s"].as_f64().unwrap(),
                v["p50_ms"].as_f64().unwrap(),
                v["p99_ms"].as_f64().unwrap()
            );
        }
    }
    let out = json!({
        "suite": "control",
        "description": "skiffd GET /v1/services/{svc}/status with 1,000 services, 8 keep-alive connections for 5 s (one client thread each): answered from the index vs straight from the bucket, on file:// and on S3 (moto); the same documents at the same paths served as static files by nginx, the same client (the floor); index build over 100,000 events (file://); two replicas on file:// sharing the 8 connections; then the index rebuilt every 2 s (1,000 services, 100,000 events) while a writer changes a reconcile document every 20 ms",
        "services": SERVICES,
        "connections": CONNECTIONS,
        "backends": [file, on_s3],
        "two_replicas_file_index": two,
        "index_build_s_with_100k_events": build_s,
        "index_events": snapshot.events,
        "nginx_static_file": nginx_static,
        "nginx_version": Nginx::version(),
        "ratio_requests_per_s_index_to_nginx_static": vs_floor,
        "index_refreshing": {
            "refresh_ms": REFRESH,
            "writes_during_run": writes,
            "events_in_bucket": snapshot.events,
            "file": refreshing,
        },
        "target": [
            {"metric": "s3 ratio_requests_per_s_index_to_bucket", "at_least": 10.0, "met": ratio >= 10.0},
            {
                "metric": "ratio_requests_per_s_index_to_nginx_static", "at_least": FLOOR_SHARE,
                "met": vs_floor.map(|r| r >= FLOOR_SHARE),
            },
        ],
    });
    let text = serde_json::to_string_pretty(&out).unwrap();
    match std::env::var_os("SKIFF_BENCH_OUT") {
        Some(path) => std::fs::write(path, text + "\n").unwrap(),
        None => println!("{text}"),
    }
}
