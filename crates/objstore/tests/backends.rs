//! Every backend passes the same conformance suite: file and memory here, S3 on moto's
//! server started on 127.0.0.1. Plus the retry and fault wrappers' contracts.

use std::sync::Arc;
use std::time::Duration;

use skiff_objstore::{
    Fault, FaultPlan, Faulty, FileStore, MemoryStore, OpenOptions, RetryPolicy, Retrying, S3Settings, Store,
    StoreError, conformance,
};

fn fast_retries() -> RetryPolicy {
    RetryPolicy { max_attempts: 4, base: Duration::from_millis(1), max: Duration::from_millis(5) }
}

#[tokio::test]
async fn file_backend_conforms() {
    let dir = tempfile::tempdir().unwrap();
    conformance::run(&FileStore::new(dir.path()).unwrap(), "").await;
    conformance::run(&FileStore::new(dir.path()).unwrap(), "nested/prefix/").await;
}

#[tokio::test]
async fn memory_backend_conforms() {
    conformance::run(&MemoryStore::new(), "").await;
}

#[tokio::test]
async fn s3_backend_on_moto_conforms() {
    let moto = skiff_testkit::Moto::start();
    moto.create_bucket("conformance");
    let settings = S3Settings {
        endpoint: Some(moto.endpoint()),
        region: Some("us-east-1".into()),
        access_key_id: Some("testing".into()),
        secret_access_key: Some("testing".into()),
    };
    let opts = OpenOptions { s3: settings.clone(), ..OpenOptions::default() };
    let store = skiff_objstore::open("s3://conformance/skiff", &opts).unwrap();
    conformance::run(store.as_ref(), "").await;
    let bare = skiff_objstore::open("s3://conformance", &opts).unwrap();
    conformance::run(bare.as_ref(), "other/").await;
    // A missing bucket is a permanent error, not something to retry forever.
    let missing = skiff_objstore::open("s3://no-such-bucket/x", &opts).unwrap();
    let e = missing.put_create("k.json", b"x".to_vec()).await.unwrap_err();
    assert!(matches!(e, StoreError::Unavailable { .. }), "{e:?}");
}

#[tokio::test]
async fn open_parses_urls() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("file://{}", dir.path().display());
    let s = skiff_objstore::open(&url, &OpenOptions::default()).unwrap();
    assert_eq!(s.url(), url);
    let a = skiff_objstore::open("memory://shared", &OpenOptions::default()).unwrap();
    let b = skiff_objstore::open("memory://shared", &OpenOptions::default()).unwrap();
    a.put_create("k.json", b"v".to_vec()).await.unwrap();
    assert!(b.get("k.json").await.unwrap().is_some(), "same-name memory stores share data");
    for bad in ["ftp://x", "file://", "s3://", "bucket"] {
        assert!(matches!(skiff_objstore::open(bad, &OpenOptions::default()), Err(StoreError::BadUrl { .. })), "{bad}");
    }
}

#[tokio::test]
async fn retries_hide_transient_errors_and_flag_ambiguous_writes() {
    let inner: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let faulty = Arc::new(Faulty::new(inner.clone(), FaultPlan::scripted([Fault::Error, Fault::Error])));
    let store = Retrying::new(faulty.clone(), fast_retries(), skiff_clock::Rng::seeded(1));
    store.put_create("a.json", b"1".to_vec()).await.expect("two transient errors are retried away");
    assert_eq!(faulty.injected(), 2);

    // The write lands but its response is lost: the retry sees AlreadyExists, flagged maybe_applied.
    faulty.set_plan(FaultPlan::scripted([Fault::LostResponse]));
    let e = store.put_create("b.json", b"2".to_vec()).await.unwrap_err();
    assert!(matches!(e, StoreError::AlreadyExists { maybe_applied: true, .. }), "{e:?}");
    assert_eq!(inner.get("b.json").await.unwrap().unwrap().bytes, b"2");

    // Same for a conditional update.
    let v = inner.get("a.json").await.unwrap().unwrap().version;
    faulty.set_plan(FaultPlan::scripted([Fault::LostResponse]));
    let e = store.put_if_match("a.json", b"3".to_vec(), &v).await.unwrap_err();
    assert!(e.maybe_applied(), "{e:?}");
    assert_eq!(inner.get("a.json").await.unwrap().unwrap().bytes, b"3");

    // A plain conflict with no earlier failure is not ambiguous.
    let e = store.put_if_match("a.json", b"4".to_vec(), &v).await.unwrap_err();
    assert!(matches!(e, StoreError::PreconditionFailed { maybe_applied: false, .. }), "{e:?}");

    // Persistent failure surfaces after the bounded attempts.
    faulty.set_plan(FaultPlan::scripted([Fault::Error; 10]));
    assert!(store.get("a.json").await.unwrap_err().is_transient());
}

#[tokio::test]
async fn file_cas_holds_across_tasks() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(FileStore::new(dir.path()).unwrap());
    store.put_create("n.json", b"0".to_vec()).await.unwrap();
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            for _ in 0..25 {
                loop {
                    let cur = store.get("n.json").await.unwrap().unwrap();
                    let n: u64 = String::from_utf8(cur.bytes).unwrap().parse().unwrap();
                    match store.put_if_match("n.json", (n + 1).to_string().into_bytes(), &cur.version).await {
                        Ok(_) => break,
                        Err(StoreError::PreconditionFailed { .. }) => continue,
                        Err(e) => panic!("{e}"),
                    }
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(store.get("n.json").await.unwrap().unwrap().bytes, b"200");
}
