//! Canonical JSON: keys sorted, no insignificant whitespace, so equal values give
//! equal bytes and a stable sha256 content digest.

use serde::Serialize;
use sha2::{Digest as _, Sha256};

/// Serializes `value` canonically: object keys sorted, compact.
///
/// ```
/// #[derive(serde::Serialize)]
/// struct T { b: u8, a: u8 }
/// assert_eq!(skiff_ir::canonical::to_vec(&T { b: 1, a: 2 }), br#"{"a":2,"b":1}"#);
/// ```
pub fn to_vec<T: Serialize + ?Sized>(value: &T) -> Vec<u8> {
    // `serde_json::Value` keeps object keys in a BTreeMap (the `preserve_order`
    // feature is off in this workspace), so going through it sorts every level.
    let value = serde_json::to_value(value).expect("IR types serialize to JSON without failure");
    serde_json::to_vec(&value).expect("a JSON value always serializes")
}

/// Like [`to_vec`], indented for people; same key order.
pub fn to_pretty<T: Serialize + ?Sized>(value: &T) -> String {
    let value = serde_json::to_value(value).expect("IR types serialize to JSON without failure");
    serde_json::to_string_pretty(&value).expect("a JSON value always serializes")
}

/// The lowercase hex sha256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The sha256 of the canonical JSON of `value`.
pub fn digest<T: Serialize + ?Sized>(value: &T) -> String {
    sha256_hex(&to_vec(value))
}

#[cfg(test)]
mod tests {
    #[test]
    fn nested_keys_are_sorted() {
        let v = serde_json::json!({"z": {"b": 1, "a": [ {"y": 1, "x": 2} ]}, "a": null});
        assert_eq!(String::from_utf8(super::to_vec(&v)).unwrap(), r#"{"a":null,"z":{"a":[{"x":2,"y":1}],"b":1}}"#);
    }
}
