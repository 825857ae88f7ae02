//! Object keys: `/`-separated relative paths whose segments are `[A-Za-z0-9._-]`,
//! never `.` or `..`. The same rule on every backend keeps keys portable.

use crate::{Result, StoreError};

/// Checks that `key` is a valid object key.
pub fn validate_key(key: &str) -> Result<()> {
    let bad = |why: &str| Err(StoreError::InvalidKey { key: key.to_owned(), why: why.to_owned() });
    if key.is_empty() || key.len() > 900 {
        return bad("keys are 1 to 900 bytes long");
    }
    for segment in key.split('/') {
        if segment.is_empty() || segment == "." || segment == ".." {
            return bad("segments must be non-empty and not `.` or `..`");
        }
        if segment.starts_with(".skiff") {
            return bad("segments starting with `.skiff` are reserved");
        }
        if !segment.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b)) {
            return bad("use only letters, digits, `.`, `_` and `-` between `/`");
        }
    }
    Ok(())
}

/// Checks a listing prefix: empty, or a valid key optionally ending in `/`.
pub(crate) fn validate_prefix(prefix: &str) -> Result<()> {
    let trimmed = prefix.strip_suffix('/').unwrap_or(prefix);
    if trimmed.is_empty() { Ok(()) } else { validate_key(trimmed) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys() {
        assert!(validate_key("v1/operations/op-1/events/00000001.json").is_ok());
        for bad in ["", "/a", "a/", "a//b", "a/../b", "a b", "a/.skiff-locks/x", "é"] {
            assert!(validate_key(bad).is_err(), "{bad:?}");
        }
        assert!(validate_prefix("").is_ok() && validate_prefix("v1/").is_ok());
    }
}
