//! Real cross-process contention: 8 OS processes × 200 CAS increments on one
//! document, on `file://` and on S3 served by moto on 127.0.0.1, must end at exactly
//! 1,600; 4 processes appending to one event log must leave it gap-free with no
//! duplicates. Children are this test binary re-run with `SKIFF_CHILD` set.

use std::process::Command;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use skiff_clock::{IdGen, Rng, SystemClock};
use skiff_objstore::{OpenOptions, RetryPolicy, S3Settings};
use skiff_state::{Cas, CasDocument, Document, Ledger, StateError, Update};

const PROCESSES: usize = 8;
const INCREMENTS: u64 = 200;

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Counter {
    cas: Cas,
    value: u64,
}

impl Document for Counter {
    const KIND: &'static str = "test.counter";
    const SCHEMA_VERSION: u32 = 1;
}

impl CasDocument for Counter {
    fn cas(&self) -> &Cas {
        &self.cas
    }
    fn cas_mut(&mut self) -> &mut Cas {
        &mut self.cas
    }
}

fn open(url: &str) -> Ledger {
    let opts =
        OpenOptions { retry: RetryPolicy { max_attempts: 10, ..RetryPolicy::default() }, ..OpenOptions::default() };
    let seed = u64::from(std::process::id());
    Ledger::new(
        skiff_objstore::open(url, &opts).unwrap(),
        IdGen::new(Arc::new(SystemClock), Rng::seeded(seed)),
        Rng::seeded(seed),
    )
    .with_cas_attempts(1_000)
}

/// The child's work, selected by `SKIFF_CHILD`; a no-op when run as a normal test.
#[tokio::test]
async fn child() {
    let Ok(mode) = std::env::var("SKIFF_CHILD") else { return };
    let url = std::env::var("SKIFF_CHILD_URL").unwrap();
    let ledger = open(&url);
    match mode.as_str() {
        "cas" => {
            let mut done = 0;
            while done < INCREMENTS {
                let r = ledger
                    .update::<Counter, _>("v1/test/counter.json", |cur| {
                        let mut c = cur.cloned().unwrap_or_default();
                        c.value += 1;
                        Ok(Update::Write(c))
                    })
                    .await;
                match r {
                    Ok(_) => done += 1,
                    Err(StateError::Conflict { .. }) => {}
                    Err(e) => panic!("increment failed: {e}"),
                }
            }
        }
        "append" => {
            let me = std::process::id();
            for i in 0..50 {
                ledger.append_event("op-shared", &format!("p{me}-{i}"), "tick", serde_json::json!({})).await.unwrap();
            }
        }
        other => panic!("unknown child mode {other}"),
    }
}

fn spawn_children(mode: &str, n: usize, url: &str, env: &[(&'static str, String)]) {
    let exe = std::env::current_exe().unwrap();
    let children: Vec<_> = (0..n)
        .map(|_| {
            Command::new(&exe)
                .args(["child", "--exact", "--nocapture", "--test-threads=1"])
                .env("SKIFF_CHILD", mode)
                .env("SKIFF_CHILD_URL", url)
                .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
                .stdout(std::process::Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    for mut c in children {
        assert!(c.wait().unwrap().success(), "a child process failed");
    }
}

async fn check_counter(ledger: &Ledger) {
    let c: Counter = ledger.read("v1/test/counter.json").await.unwrap().unwrap();
    assert_eq!(c.value, PROCESSES as u64 * INCREMENTS, "no lost updates");
    assert_eq!(c.cas.generation, PROCESSES as u64 * INCREMENTS, "one generation per increment");
}

#[tokio::test]
async fn eight_processes_increment_on_file() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("file://{}", dir.path().display());
    spawn_children("cas", PROCESSES, &url, &[]);
    check_counter(&open(&url)).await;
}

#[tokio::test]
async fn eight_processes_increment_on_s3_moto() {
    let moto = skiff_testkit::Moto::start();
    moto.create_bucket("cas-test");
    let url = "s3://cas-test/ledger";
    spawn_children("cas", PROCESSES, url, &moto.env());
    let settings = S3Settings {
        endpoint: Some(moto.endpoint()),
        region: Some("us-east-1".into()),
        access_key_id: Some("testing".into()),
        secret_access_key: Some("testing".into()),
    };
    let opts = OpenOptions { s3: settings, ..OpenOptions::default() };
    let ledger = Ledger::new(skiff_objstore::open(url, &opts).unwrap(), IdGen::system(), Rng::seeded(1));
    check_counter(&ledger).await;
}

#[tokio::test]
async fn four_processes_append_gap_free_on_file() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("file://{}", dir.path().display());
    spawn_children("append", 4, &url, &[]);
    let ledger = open(&url);
    let events = ledger.events_after("op-shared", 0).await.unwrap();
    assert_eq!(events.len(), 200);
    assert!(events.iter().enumerate().all(|(i, e)| e.seq == i as u64 + 1), "gap-free");
    let ids: std::collections::BTreeSet<_> = events.iter().map(|e| &e.event_id).collect();
    assert_eq!(ids.len(), 200, "no duplicates");
}
