//! The release manifest (DESIGN §5): what runs, pinned by digest, and everything that
//! vouches for it. Stored immutable at `releases/<svc>/<id>.json`, signed in `.sig`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use skiff_state::Document;

/// The artifact of a release.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArtifactRef {
    /// File name the runner gives the program.
    pub name: String,
    /// `sha256:<hex>`: the blob in the bucket.
    pub digest: String,
    /// Size in bytes.
    pub size: u64,
}

/// A release manifest.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReleaseManifest {
    /// The service.
    pub service: String,
    /// Release id, `YYYY.MM.DD.N`.
    pub release: String,
    /// The program.
    pub artifact: ArtifactRef,
    /// Digest of the compiled IR (`specs/<digest>.json`).
    pub spec_digest: String,
    /// Plain environment.
    pub config: BTreeMap<String, String>,
    /// Environment filled from secrets on the instance: variable → reference.
    pub secrets: BTreeMap<String, String>,
    /// `sha256:<hex>` of the CycloneDX SBOM blob.
    pub sbom: String,
    /// `sha256:<hex>` of the SLSA provenance statement blob.
    pub provenance: String,
    /// When it was made (RFC 3339).
    pub created_at: String,
    /// Who made it.
    pub created_by: String,
    /// What made it, e.g. `skiff 0.1.0`.
    pub builder: String,
    /// Where this release was promoted from; `None` for a release built here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub promoted_from: Option<Promotion>,
}

/// A release's origin in another environment: the same artifact, SBOM and provenance
/// (by digest), verified there before it was promoted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Promotion {
    /// The environment it ran in.
    pub environment: String,
    /// That environment's state bucket.
    pub bucket: String,
    /// `sha256:<hex>` of the source manifest's bytes, whose signature verified.
    pub manifest: String,
    /// The source manifest's spec digest (its IR there).
    pub spec_digest: String,
    /// When it was promoted (RFC 3339).
    pub promoted_at: String,
    /// Who promoted it.
    pub promoted_by: String,
}

impl Document for ReleaseManifest {
    const KIND: &'static str = "skiff.release";
    const SCHEMA_VERSION: u32 = 1;
}

/// The hex part of a `sha256:<hex>` reference.
pub fn hex_of(reference: &str) -> &str {
    reference.strip_prefix("sha256:").unwrap_or(reference)
}
