//! The service IR: a spec with every default applied and every intent resolved into
//! concrete choices, each recorded with its reason. Canonical JSON gives it a stable
//! sha256 content digest, which names it in the state bucket (`specs/<sha256>.json`).
#![warn(missing_docs)]

pub mod canonical;
mod lower;
mod model;

pub use lower::{DEFAULT_ENVIRONMENT, DEFAULT_POSTGRES, DEFAULT_REGION, compile, zone_name};
pub use model::*;

impl ServiceIr {
    /// The canonical JSON bytes of this IR.
    pub fn canonical_json(&self) -> Vec<u8> {
        canonical::to_vec(self)
    }

    /// The sha256 content digest of [`Self::canonical_json`].
    pub fn digest(&self) -> String {
        canonical::sha256_hex(&self.canonical_json())
    }
}
