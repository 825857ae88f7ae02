//! Content-addressed blobs (`blobs/sha256/<digest>`) and compiled specs
//! (`specs/<digest>.json`): written create-only, verified against their digest on
//! every read.

use skiff_ir::ServiceIr;
use skiff_ir::canonical::sha256_hex;

use crate::keys;
use crate::{Ledger, Result, StateError};

impl Ledger {
    /// Stores a blob and returns its digest; storing the same bytes again is a no-op.
    pub async fn put_blob(&self, bytes: Vec<u8>) -> Result<String> {
        let digest = sha256_hex(&bytes);
        match self.create_bytes(&keys::blob(&digest), bytes).await {
            Ok(_) => Ok(digest),
            // Someone stored different bytes under this digest: corruption to report.
            Err(StateError::AlreadyExists { key }) => {
                let actual = self.store.get(&key).await?.map(|o| sha256_hex(&o.bytes)).unwrap_or_default();
                Err(StateError::DigestMismatch { key, expected: digest, actual })
            }
            Err(e) => Err(e),
        }
    }

    /// Reads a blob, verifying its digest.
    pub async fn get_blob(&self, digest: &str) -> Result<Vec<u8>> {
        let key = keys::blob(digest);
        let obj = self.store.get(&key).await?.ok_or_else(|| StateError::NotFound { what: "blob", key: key.clone() })?;
        let actual = sha256_hex(&obj.bytes);
        if actual != digest {
            return Err(StateError::DigestMismatch { key, expected: digest.to_owned(), actual });
        }
        Ok(obj.bytes)
    }

    /// Stores a compiled IR under its digest and returns the digest.
    pub async fn put_spec(&self, ir: &ServiceIr) -> Result<String> {
        let bytes = ir.canonical_json();
        let digest = sha256_hex(&bytes);
        self.create_bytes(&keys::spec(&digest), bytes).await?;
        Ok(digest)
    }

    /// Reads a compiled IR, verifying its digest.
    pub async fn get_spec(&self, digest: &str) -> Result<ServiceIr> {
        let key = keys::spec(digest);
        let obj = self.store.get(&key).await?.ok_or_else(|| StateError::NotFound { what: "spec", key: key.clone() })?;
        let actual = sha256_hex(&obj.bytes);
        if actual != digest {
            return Err(StateError::DigestMismatch { key, expected: digest.to_owned(), actual });
        }
        serde_json::from_slice(&obj.bytes).map_err(|e| StateError::Corrupt { key, why: format!("not an IR: {e}") })
    }
}
