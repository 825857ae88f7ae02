//! The conformance suite every backend runs against itself (file, memory, S3 on
//! moto): the same calls, the same answers. Call [`run`] with an empty store.

use crate::{Store, StoreError};

/// Runs every check against `store`, which must be empty under `prefix`.
///
/// # Panics
/// On the first behaviour that differs from the contract, with a message naming it.
pub async fn run(store: &dyn Store, prefix: &str) {
    let k = |s: &str| format!("{prefix}{s}");
    // get of a missing key
    assert_eq!(store.get(&k("a/missing.json")).await.unwrap(), None, "missing key reads as None");

    // create-only
    let v1 = store.put_create(&k("a/doc.json"), b"one".to_vec()).await.unwrap();
    let got = store.get(&k("a/doc.json")).await.unwrap().expect("created object is readable");
    assert_eq!((got.bytes.as_slice(), &got.version), (&b"one"[..], &v1), "read returns content and its version");
    let again = store.put_create(&k("a/doc.json"), b"two".to_vec()).await.unwrap_err();
    assert!(matches!(again, StoreError::AlreadyExists { .. }), "second create fails with AlreadyExists: {again:?}");
    assert_eq!(store.get(&k("a/doc.json")).await.unwrap().unwrap().bytes, b"one", "failed create changes nothing");

    // put-if-match
    let v2 = store.put_if_match(&k("a/doc.json"), b"two".to_vec(), &v1).await.unwrap();
    assert_ne!(v1, v2, "a new content has a new version");
    let stale = store.put_if_match(&k("a/doc.json"), b"three".to_vec(), &v1).await.unwrap_err();
    assert!(matches!(stale, StoreError::PreconditionFailed { .. }), "stale version fails: {stale:?}");
    assert_eq!(store.get(&k("a/doc.json")).await.unwrap().unwrap().bytes, b"two");
    let missing = store.put_if_match(&k("a/none.json"), b"x".to_vec(), &v1).await.unwrap_err();
    assert!(matches!(missing, StoreError::PreconditionFailed { .. }), "if-match on a missing key fails: {missing:?}");
    assert_eq!(store.get(&k("a/none.json")).await.unwrap(), None);

    // delete-if-match
    let wrong = store.delete_if_match(&k("a/doc.json"), &v1).await.unwrap_err();
    assert!(matches!(wrong, StoreError::PreconditionFailed { .. }), "delete with a stale version fails: {wrong:?}");
    assert!(store.get(&k("a/doc.json")).await.unwrap().is_some(), "failed delete keeps the object");
    store.delete_if_match(&k("a/doc.json"), &v2).await.unwrap();
    assert_eq!(store.get(&k("a/doc.json")).await.unwrap(), None, "deleted object is gone");
    store.put_create(&k("a/doc.json"), b"again".to_vec()).await.expect("a deleted key can be created again");

    // listing: sorted, by prefix, nested
    for key in ["b/2.json", "b/10.json", "b/1.json", "b/sub/x.json", "bb/y.json"] {
        store.put_create(&k(key), key.as_bytes().to_vec()).await.unwrap();
    }
    let listed: Vec<String> = store.list(&k("b/")).await.unwrap().into_iter().map(|l| l.key).collect();
    assert_eq!(
        listed,
        vec![k("b/1.json"), k("b/10.json"), k("b/2.json"), k("b/sub/x.json")],
        "list is sorted and scoped"
    );
    let sizes = store.list(&k("b/1")).await.unwrap();
    assert_eq!(sizes.len(), 2, "partial prefixes match: {sizes:?}");
    assert_eq!(sizes[0].size, "b/1.json".len() as u64, "list reports sizes");
    assert!(store.list(&k("nothing/")).await.unwrap().is_empty(), "empty prefix lists nothing");

    // invalid keys are refused
    for bad in ["../escape", "a//b", "/abs"] {
        let e = store.put_create(bad, b"x".to_vec()).await.unwrap_err();
        assert!(matches!(e, StoreError::InvalidKey { .. }), "{bad:?} is refused: {e:?}");
    }
}
