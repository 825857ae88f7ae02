//! Stored form of documents: the type's fields plus top-level `kind` and
//! `schema_version`, keys sorted, indented. One codec for every document, so the
//! header is checked in one place and no type uses `flatten`.

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::error::StateError;

/// A document stored in the bucket.
pub trait Document: Serialize + DeserializeOwned {
    /// The `kind` written into every stored copy.
    const KIND: &'static str;
    /// The schema version this build writes and reads.
    const SCHEMA_VERSION: u32;
}

/// The generation and recent write ids every compare-and-swap document carries.
/// `recent_writes` lets a writer whose response was lost tell whether its write
/// landed, even after others have written on top of it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cas {
    /// Bumped by every write.
    pub generation: u64,
    /// Ids of the last few writes, newest last.
    pub recent_writes: Vec<String>,
}

/// How many write ids a CAS document remembers.
pub const RECENT_WRITES: usize = 8;

/// A document updated with compare-and-swap.
pub trait CasDocument: Document {
    /// Its CAS metadata.
    fn cas(&self) -> &Cas;
    /// Its CAS metadata, for the ledger to stamp.
    fn cas_mut(&mut self) -> &mut Cas;
}

/// Serializes a document with its header.
pub fn encode<T: Document>(doc: &T) -> Vec<u8> {
    let mut value = serde_json::to_value(doc).expect("documents serialize to JSON");
    let obj = value.as_object_mut().expect("documents are JSON objects");
    assert!(
        !obj.contains_key("kind") && !obj.contains_key("schema_version"),
        "{} must not define header fields",
        T::KIND
    );
    obj.insert("kind".to_owned(), Value::from(T::KIND));
    obj.insert("schema_version".to_owned(), Value::from(T::SCHEMA_VERSION));
    let mut bytes = serde_json::to_vec_pretty(&value).expect("a JSON value serializes");
    bytes.push(b'\n');
    bytes
}

/// Reads a stored document's `kind` and `schema_version`.
pub fn header(key: &str, bytes: &[u8]) -> Result<(String, u32, Value), StateError> {
    let corrupt = |why: String| StateError::Corrupt { key: key.to_owned(), why };
    let value: Value = serde_json::from_slice(bytes).map_err(|e| corrupt(format!("not JSON: {e}")))?;
    let obj = value.as_object().ok_or_else(|| corrupt("not a JSON object".to_owned()))?;
    let kind = obj.get("kind").and_then(Value::as_str).ok_or_else(|| corrupt("no `kind`".to_owned()))?.to_owned();
    let version = obj
        .get("schema_version")
        .and_then(Value::as_u64)
        .and_then(|v| u32::try_from(v).ok())
        .ok_or_else(|| corrupt("no `schema_version`".to_owned()))?;
    Ok((kind, version, value))
}

/// Parses a stored document, checking its header.
pub fn decode<T: Document>(key: &str, bytes: &[u8]) -> Result<T, StateError> {
    let corrupt = |why: String| StateError::Corrupt { key: key.to_owned(), why };
    let (kind, version, mut value) = header(key, bytes)?;
    if kind != T::KIND {
        return Err(corrupt(format!("holds `{kind}`, expected `{}`", T::KIND)));
    }
    if version > T::SCHEMA_VERSION {
        return Err(corrupt(format!(
            "written by a newer skiff (schema {version}, this build reads up to {}); upgrade skiff",
            T::SCHEMA_VERSION
        )));
    }
    let obj = value.as_object_mut().expect("header checked it is an object");
    obj.remove("kind");
    obj.remove("schema_version");
    serde_json::from_value(value).map_err(|e| corrupt(format!("does not match `{}`: {e}", T::KIND)))
}
