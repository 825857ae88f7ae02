//! Releases (DESIGN §5): build the artifact, upload it to `blobs/sha256/`, write a
//! CycloneDX SBOM and a SLSA v1 provenance statement as blobs, record the compiled
//! IR, and write an immutable manifest naming all of them by digest, signed with an
//! ECDSA P-256 key in cosign's formats (via the `sigstore` crate, which builds
//! offline here). Verification checks the signature, then every digest.
#![warn(missing_docs)]

pub mod keys;
mod manifest;
mod provenance;
mod sbom;

use std::path::Path;

use skiff_clock::Utc;
use skiff_ir::ServiceIr;
use skiff_objstore::StoreError;
use skiff_sdk::Code;
use skiff_state::{Ledger, StateError, codec, keys as layout};

pub use keys::{GeneratedKeys, Signer, Verifier, generate};
pub use manifest::{ArtifactRef, Promotion, ReleaseManifest, hex_of};
pub use provenance::BuildFacts;

/// Why a release could not be made or trusted.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReleaseError {
    /// The build command failed.
    #[error("build failed ({status}): `{command}`\n{output}")]
    Build {
        /// The command.
        command: String,
        /// Its exit status.
        status: String,
        /// The end of its output.
        output: String,
    },
    /// The artifact cannot be read or fetched.
    #[error("artifact {what}: {message}")]
    Artifact {
        /// Path or URL.
        what: String,
        /// What failed and what to do.
        message: String,
    },
    /// A key cannot be generated, read or used.
    #[error("signing key: {0}")]
    Key(String),
    /// The manifest is unsigned or its signature does not verify.
    #[error("release {service}/{release}: {why}")]
    SignatureInvalid {
        /// Service.
        service: String,
        /// Release.
        release: String,
        /// Why.
        why: String,
    },
    /// Content does not match its recorded digest.
    #[error("{what} does not match its digest: expected {expected}, found {actual}")]
    DigestMismatch {
        /// What was checked.
        what: String,
        /// The recorded digest.
        expected: String,
        /// What the content hashes to.
        actual: String,
    },
    /// No such release.
    #[error("no release {service}/{release}")]
    NotFound {
        /// Service.
        service: String,
        /// Release.
        release: String,
    },
    /// The ledger failed.
    #[error(transparent)]
    State(#[from] StateError),
}

impl ReleaseError {
    /// The failure code to answer with.
    pub fn code(&self) -> Code {
        match self {
            ReleaseError::Build { .. } | ReleaseError::Artifact { .. } => Code::IoError,
            ReleaseError::Key(_) => Code::SignatureInvalid,
            ReleaseError::SignatureInvalid { .. } => Code::SignatureInvalid,
            ReleaseError::DigestMismatch { .. } => Code::DigestMismatch,
            ReleaseError::NotFound { .. } => Code::NotFound,
            ReleaseError::State(StateError::DigestMismatch { .. }) => Code::DigestMismatch,
            ReleaseError::State(e) => e.code(),
        }
    }
}

/// What to release.
#[derive(Debug, Clone)]
pub struct ReleaseInput<'a> {
    /// The spec file (its directory is where the build runs and the artifact path starts).
    pub spec_path: &'a Path,
    /// The spec path as the user wrote it, for provenance.
    pub spec_shown: &'a str,
    /// The compiled spec.
    pub ir: &'a ServiceIr,
    /// Who releases.
    pub actor: &'a str,
    /// Run `artifact.build` first.
    pub build: bool,
}

/// A release that was made.
#[derive(Debug, Clone)]
pub struct Created {
    /// Its manifest.
    pub manifest: ReleaseManifest,
    /// The manifest's signature (base64 DER).
    pub signature: String,
    /// Whether a build command ran.
    pub built: bool,
}

/// Runs the spec's build command in `dir`.
async fn run_build(command: &str, dir: &Path) -> Result<(), ReleaseError> {
    let out =
        tokio::process::Command::new("sh").arg("-c").arg(command).current_dir(dir).output().await.map_err(|e| {
            ReleaseError::Build { command: command.to_owned(), status: "not started".to_owned(), output: e.to_string() }
        })?;
    if out.status.success() {
        return Ok(());
    }
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let tail: Vec<&str> = text.lines().rev().take(20).collect();
    Err(ReleaseError::Build {
        command: command.to_owned(),
        status: out.status.to_string(),
        output: tail.into_iter().rev().collect::<Vec<_>>().join("\n"),
    })
}

/// Reads (or downloads) the artifact; `(file name, bytes)`.
async fn artifact(ir: &ServiceIr, dir: &Path) -> Result<(String, Vec<u8>), ReleaseError> {
    if let Some(path) = &ir.artifact.path {
        let full = dir.join(path);
        let bytes = tokio::fs::read(&full).await.map_err(|e| ReleaseError::Artifact {
            what: full.display().to_string(),
            message: format!("{e}; run the build (`artifact.build`) or fix `artifact.path`"),
        })?;
        let name = full.file_name().map_or_else(|| ir.service.clone(), |n| n.to_string_lossy().into_owned());
        return Ok((name, bytes));
    }
    let url = ir.artifact.url.clone().unwrap_or_default();
    Err(ReleaseError::Artifact {
        what: url,
        message: "downloading artifacts by URL is not supported yet; build locally and use `artifact.path`".to_owned(),
    })
}

/// The next free release id of `service` for `date` (`YYYY.MM.DD`), from a listing.
async fn next_release_number(ledger: &Ledger, service: &str, date: &str) -> Result<u64, ReleaseError> {
    let prefix = format!("{}{date}.", layout::releases(service));
    let listed = ledger.store().list(&layout::releases(service)).await.map_err(StateError::from)?;
    Ok(listed
        .iter()
        .filter_map(|l| l.key.strip_prefix(&prefix)?.strip_suffix(".json")?.parse::<u64>().ok())
        .max()
        .unwrap_or(0)
        + 1)
}

/// Builds (if asked), uploads and signs a release.
pub async fn create(ledger: &Ledger, signer: &Signer, input: &ReleaseInput<'_>) -> Result<Created, ReleaseError> {
    let ir = input.ir;
    let dir = input.spec_path.parent().unwrap_or(Path::new("."));
    let started = Utc::from_ms(ledger.clock().now_ms()).rfc3339();
    let mut built = false;
    if let (true, Some(cmd)) = (input.build, ir.artifact.build.as_deref()) {
        run_build(cmd, dir).await?;
        built = true;
    }
    let (name, bytes) = artifact(ir, dir).await?;
    let size = bytes.len() as u64;
    let digest = ledger.put_blob(bytes).await?;
    if let Some(pinned) = &ir.artifact.sha256
        && pinned != &digest
    {
        return Err(ReleaseError::DigestMismatch {
            what: format!("artifact {name}"),
            expected: pinned.clone(),
            actual: digest,
        });
    }
    let spec_digest = ledger.put_spec(ir).await?;
    let finished = Utc::from_ms(ledger.clock().now_ms()).rfc3339();
    let tool = env!("CARGO_PKG_VERSION").to_owned();
    let sbom = sbom::cyclonedx(dir, &name, &digest, &finished, &tool);
    let sbom_digest = ledger.put_blob(serde_json::to_vec_pretty(&sbom).expect("json")).await?;
    let invocation = ledger.ids().id("build");
    let facts = BuildFacts {
        artifact_name: &name,
        digest_hex: &digest,
        service: &ir.service,
        spec_path: input.spec_shown,
        build: ir.artifact.build.as_deref().filter(|_| built),
        spec_digest: &spec_digest,
        started: &started,
        finished: &finished,
        tool_version: &tool,
        invocation: &invocation,
    };
    let provenance = provenance::slsa(dir, &facts);
    let provenance_digest = ledger.put_blob(serde_json::to_vec_pretty(&provenance).expect("json")).await?;
    let date = Utc::from_ms(ledger.clock().now_ms()).date().replace('-', ".");
    let mut number = next_release_number(ledger, &ir.service, &date).await?;
    loop {
        let manifest = ReleaseManifest {
            service: ir.service.clone(),
            release: format!("{date}.{number}"),
            artifact: ArtifactRef { name: name.clone(), digest: format!("sha256:{digest}"), size },
            spec_digest: spec_digest.clone(),
            config: ir.run.env.clone(),
            secrets: ir.secrets.iter().map(|(k, v)| (k.clone(), v.to_string())).collect(),
            sbom: format!("sha256:{sbom_digest}"),
            provenance: format!("sha256:{provenance_digest}"),
            created_at: finished.clone(),
            created_by: input.actor.to_owned(),
            builder: format!("skiff {tool}"),
            promoted_from: None,
        };
        let bytes = codec::encode(&manifest);
        match ledger.store().put_create(&layout::release(&ir.service, &manifest.release), bytes.clone()).await {
            Ok(_) => {
                let signature = signer.sign(&bytes)?;
                ledger
                    .store()
                    .put_create(
                        &layout::release_signature(&ir.service, &manifest.release),
                        signature.clone().into_bytes(),
                    )
                    .await
                    .map_err(StateError::from)?;
                return Ok(Created { manifest, signature, built });
            }
            Err(StoreError::AlreadyExists { .. }) => number += 1,
            Err(e) => return Err(StateError::from(e).into()),
        }
    }
}

/// What a promotion copies and re-signs.
#[derive(Debug, Clone)]
pub struct PromoteInput<'a> {
    /// The service.
    pub service: &'a str,
    /// The release id (kept in the target environment).
    pub release: &'a str,
    /// The spec compiled for the target environment.
    pub ir: &'a ServiceIr,
    /// The source environment's name.
    pub from_environment: &'a str,
    /// The source environment's bucket.
    pub from_bucket: &'a str,
    /// Who promotes.
    pub actor: &'a str,
}

/// Promotes a release from `source` into `target`: verifies it there (signature, then
/// every digest), copies the artifact, SBOM and provenance blobs byte for byte (same
/// digests), records the target environment's IR, and writes a manifest under the same
/// release id naming the same blobs, the target's spec and secrets, and where it came
/// from — signed. Nothing is rebuilt. Promoting again returns the manifest already
/// there when it names the same artifact; one naming another artifact is refused.
///
/// # Errors
/// The source release missing, unsigned or tampered with; a different release under
/// the same id in the target; a bucket failing.
pub async fn promote(
    source: &Ledger,
    target: &Ledger,
    verifier: &Verifier,
    signer: &Signer,
    input: &PromoteInput<'_>,
) -> Result<Created, ReleaseError> {
    let verified = verify(source, verifier, input.service, input.release).await?;
    let from = verified.manifest;
    let key = layout::release(input.service, input.release);
    if let Some(there) = target.read::<ReleaseManifest>(&key).await? {
        if there.artifact.digest != from.artifact.digest {
            return Err(ReleaseError::DigestMismatch {
                what: format!("release {}/{} already in the target environment", input.service, input.release),
                expected: from.artifact.digest,
                actual: there.artifact.digest,
            });
        }
        let signature = target.store().get(&layout::release_signature(input.service, input.release)).await;
        if let Ok(Some(sig)) = signature {
            let signature = String::from_utf8_lossy(&sig.bytes).into_owned();
            return Ok(Created { manifest: there, signature, built: false });
        }
    }
    let source_bytes = source.store().get(&key).await.map_err(StateError::from)?.map(|o| o.bytes).unwrap_or_default();
    for (what, reference) in [("SBOM", &from.sbom), ("provenance", &from.provenance)] {
        let bytes = blob(source, what, reference).await?;
        target.put_blob(bytes).await?;
    }
    target.put_blob(verified.artifact).await?;
    let spec_digest = target.put_spec(input.ir).await?;
    let now = Utc::from_ms(target.clock().now_ms()).rfc3339();
    let manifest = ReleaseManifest {
        spec_digest,
        config: input.ir.run.env.clone(),
        secrets: input.ir.secrets.iter().map(|(k, v)| (k.clone(), v.to_string())).collect(),
        promoted_from: Some(Promotion {
            environment: input.from_environment.to_owned(),
            bucket: input.from_bucket.to_owned(),
            manifest: format!("sha256:{}", skiff_ir::canonical::sha256_hex(&source_bytes)),
            spec_digest: from.spec_digest.clone(),
            promoted_at: now,
            promoted_by: input.actor.to_owned(),
        }),
        ..from
    };
    let bytes = codec::encode(&manifest);
    match target.store().put_create(&key, bytes.clone()).await {
        Ok(_) | Err(StoreError::AlreadyExists { .. }) => {}
        Err(e) => return Err(StateError::from(e).into()),
    }
    // A crash between the two writes leaves a manifest without a signature: the
    // manifest there is the one to sign (its bytes are what runners verify).
    let stored = target.store().get(&key).await.map_err(StateError::from)?.map(|o| o.bytes).unwrap_or(bytes);
    let manifest: ReleaseManifest = codec::decode(&key, &stored)?;
    let signature = signer.sign(&stored)?;
    match target
        .store()
        .put_create(&layout::release_signature(input.service, input.release), signature.clone().into_bytes())
        .await
    {
        Ok(_) | Err(StoreError::AlreadyExists { .. }) => {}
        Err(e) => return Err(StateError::from(e).into()),
    }
    Ok(Created { manifest, signature, built: false })
}

/// A release whose signature and digests check out.
#[derive(Debug, Clone)]
pub struct Verified {
    /// The manifest.
    pub manifest: ReleaseManifest,
    /// The artifact's bytes.
    pub artifact: Vec<u8>,
}

/// Verifies a release: signature over the stored manifest bytes, then the artifact,
/// SBOM, provenance and spec against their digests.
pub async fn verify(
    ledger: &Ledger,
    verifier: &Verifier,
    service: &str,
    release: &str,
) -> Result<Verified, ReleaseError> {
    let key = layout::release(service, release);
    let stored = ledger.store().get(&key).await.map_err(StateError::from)?;
    let Some(stored) = stored else {
        return Err(ReleaseError::NotFound { service: service.to_owned(), release: release.to_owned() });
    };
    let sig = ledger.store().get(&layout::release_signature(service, release)).await.map_err(StateError::from)?;
    let invalid = |why: &str| ReleaseError::SignatureInvalid {
        service: service.to_owned(),
        release: release.to_owned(),
        why: why.to_owned(),
    };
    let Some(sig) = sig else { return Err(invalid("the manifest is not signed")) };
    if !verifier.verify(&stored.bytes, &sig.bytes) {
        return Err(invalid("the signature does not match the manifest and the trusted public key"));
    }
    let manifest: ReleaseManifest = codec::decode(&key, &stored.bytes)?;
    if manifest.service != service || manifest.release != release {
        return Err(invalid("the signed manifest names another release"));
    }
    let artifact = blob(ledger, "artifact", &manifest.artifact.digest).await?;
    blob(ledger, "SBOM", &manifest.sbom).await?;
    blob(ledger, "provenance", &manifest.provenance).await?;
    ledger.get_spec(&manifest.spec_digest).await?;
    Ok(Verified { manifest, artifact })
}

async fn blob(ledger: &Ledger, what: &str, reference: &str) -> Result<Vec<u8>, ReleaseError> {
    ledger.get_blob(hex_of(reference)).await.map_err(|e| match e {
        StateError::DigestMismatch { expected, actual, .. } => {
            ReleaseError::DigestMismatch { what: what.to_owned(), expected, actual }
        }
        other => ReleaseError::State(other),
    })
}

/// One release in a listing.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Listed {
    /// The manifest.
    pub manifest: ReleaseManifest,
    /// Whether a signature object exists (not whether it verifies).
    pub signed: bool,
}

/// A service's releases, oldest first.
pub async fn list(ledger: &Ledger, service: &str) -> Result<Vec<Listed>, ReleaseError> {
    let listed = ledger.store().list(&layout::releases(service)).await.map_err(StateError::from)?;
    let keys: std::collections::BTreeSet<String> = listed.iter().map(|l| l.key.clone()).collect();
    let mut out = Vec::new();
    for key in listed.iter().map(|l| &l.key).filter(|k| k.ends_with(".json")) {
        if let Some(m) = ledger.read::<ReleaseManifest>(key).await? {
            let signed = keys.contains(&format!("{key}.sig"));
            out.push(Listed { manifest: m, signed });
        }
    }
    out.sort_by_key(|a| release_order(&a.manifest.release));
    Ok(out)
}

/// Sort key of `YYYY.MM.DD.N` (numeric N).
fn release_order(id: &str) -> (String, u64) {
    match id.rsplit_once('.') {
        Some((date, n)) => (date.to_owned(), n.parse().unwrap_or(0)),
        None => (id.to_owned(), 0),
    }
}
