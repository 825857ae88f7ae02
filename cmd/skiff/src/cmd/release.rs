//! `skiff release create|list|show|verify`.

use std::fmt::Write as _;
use std::path::Path;

use skiff_release::{ReleaseError, ReleaseInput, Signer, Verifier};
use skiff_sdk::{Code, Envelope, Safety};

use crate::cli::ReleaseAction;
use crate::{Ctx, Outcome};

pub(super) fn run(ctx: &Ctx, action: ReleaseAction) -> Outcome {
    match action {
        ReleaseAction::Create { file, no_build } => create(ctx, &file, !no_build),
        ReleaseAction::List { service } => list(ctx, service),
        ReleaseAction::Show { service, release } => show(ctx, &service, release),
        ReleaseAction::Verify { service, release, public_key } => verify(ctx, &service, release, public_key.as_deref()),
    }
}

pub(crate) fn release_error(e: &ReleaseError) -> Outcome {
    if let ReleaseError::State(s) = e {
        return super::state_error(s);
    }
    let env = Envelope::failure(e.code(), e.to_string());
    let env = match e {
        ReleaseError::Key(_) => env.action("keys", "skiff keys generate", true, Safety::Reversible, 0.5),
        ReleaseError::SignatureInvalid { .. } | ReleaseError::DigestMismatch { .. } => env
            .fact("treat the release as untrusted: do not deploy it")
            .action("recreate", "skiff release create --yes", true, Safety::Reversible, 0.5),
        _ => env,
    };
    env.into()
}

/// Opens the private key, or answers how to get one.
pub(crate) fn signer(ctx: &Ctx) -> Result<Signer, Box<Outcome>> {
    let path = super::keys::private_key_path(ctx);
    let pem = std::fs::read(&path).map_err(|_| {
        Box::new(
            Envelope::failure(Code::SignatureInvalid, format!("no signing key at {}", path.display()))
                .fact("releases must be signed; generate a key pair first")
                .action("keys", "skiff keys generate", true, Safety::Reversible, 0.9)
                .into(),
        )
    })?;
    Signer::from_encrypted_pem(&pem, &super::keys::password(ctx)).map_err(|e| Box::new(release_error(&e)))
}

fn verifier(ctx: &Ctx, path: Option<&Path>) -> Result<Verifier, Box<Outcome>> {
    let path = path.map_or_else(|| super::keys::public_key_path(ctx), |p| ctx.cwd.join(p));
    let pem = std::fs::read(&path).map_err(|e| {
        Box::new(
            Envelope::failure(Code::SignatureInvalid, format!("cannot read the trusted public key {}", path.display()))
                .fact(e.to_string())
                .into(),
        )
    })?;
    Verifier::from_pem(&pem).map_err(|e| Box::new(release_error(&e)))
}

fn create(ctx: &Ctx, file: &Path, build: bool) -> Outcome {
    let (shown, spec) = match super::load_spec(ctx, file) {
        Ok(v) => v,
        Err(o) => return *o,
    };
    let signer = match signer(ctx) {
        Ok(s) => s,
        Err(o) => return *o,
    };
    if let Err(o) = ctx.confirm(&format!("release `{}`", spec.service), &format!("skiff release create -f {shown}")) {
        return *o;
    }
    let ir = skiff_ir::compile(&spec);
    let spec_path = ctx.cwd.join(file);
    let actor = ctx.actor();
    if build && ir.artifact.build.is_some() {
        ctx.progress(&format!("building: {}", ir.artifact.build.as_deref().unwrap_or_default()));
    }
    super::block_on(ctx, |ledger, _| async move {
        let input = ReleaseInput { spec_path: &spec_path, spec_shown: &shown, ir: &ir, actor: &actor, build };
        let created = match skiff_release::create(&ledger, &signer, &input).await {
            Ok(c) => c,
            Err(e) => return release_error(&e),
        };
        let m = &created.manifest;
        let _ = ledger
            .audit(
                &actor,
                "release.create",
                &format!("{}/{}", m.service, m.release),
                Code::Ok,
                serde_json::json!({"artifact": m.artifact.digest}),
            )
            .await;
        Envelope::ok(format!("released {} {}", m.service, m.release))
            .fact(format!("artifact {} ({} bytes) {}", m.artifact.name, m.artifact.size, m.artifact.digest))
            .fact(format!("SBOM {}", m.sbom))
            .fact(format!("provenance {}", m.provenance))
            .fact(if created.built { "built with the spec's build command" } else { "artifact used as it was" })
            .fact("signed (ECDSA P-256, cosign format)")
            .data(serde_json::json!({"manifest": m, "signature": created.signature}))
            .action("verify", format!("skiff release verify {} {}", m.service, m.release), false, Safety::ReadOnly, 0.5)
            .into()
    })
}

fn list(ctx: &Ctx, service: Option<String>) -> Outcome {
    super::block_on(ctx, |ledger, _| async move {
        let services: Vec<String> = match &service {
            Some(s) => vec![s.clone()],
            None => match ledger.rebuild_index().await {
                Ok(i) => i.releases.keys().cloned().collect(),
                Err(e) => return super::state_error(&e),
            },
        };
        let mut all = Vec::new();
        for s in &services {
            match skiff_release::list(&ledger, s).await {
                Ok(l) => all.extend(l),
                Err(e) => return release_error(&e),
            }
        }
        let mut body = String::new();
        for l in &all {
            let m = &l.manifest;
            let _ = writeln!(
                body,
                "{:<16} {:<14} {}  {}{}",
                m.service,
                m.release,
                m.created_at,
                &m.artifact.digest[..19],
                if l.signed { "" } else { "  UNSIGNED" }
            );
        }
        let data: Vec<serde_json::Value> =
            all.iter().map(|l| serde_json::json!({"manifest": l.manifest, "signed": l.signed})).collect();
        Outcome::from(Envelope::ok(super::plural(all.len() as u64, "release")).data(data)).body(body)
    })
}

/// The named release, or the service's newest.
async fn chosen(ledger: &skiff_state::Ledger, service: &str, release: Option<String>) -> Result<String, Outcome> {
    if let Some(r) = release {
        return Ok(r);
    }
    match skiff_release::list(ledger, service).await {
        Ok(l) => l.last().map(|l| l.manifest.release.clone()).ok_or_else(|| {
            Envelope::failure(Code::NotFound, format!("{service} has no releases"))
                .action("create", "skiff release create --yes", true, Safety::Reversible, 0.6)
                .into()
        }),
        Err(e) => Err(release_error(&e)),
    }
}

fn show(ctx: &Ctx, service: &str, release: Option<String>) -> Outcome {
    let service = service.to_owned();
    super::block_on(ctx, |ledger, _| async move {
        let release = match chosen(&ledger, &service, release).await {
            Ok(r) => r,
            Err(o) => return o,
        };
        let key = skiff_state::keys::release(&service, &release);
        let manifest = match ledger.read::<skiff_release::ReleaseManifest>(&key).await {
            Ok(Some(m)) => m,
            Ok(None) => return release_error(&ReleaseError::NotFound { service, release }),
            Err(e) => return super::state_error(&e),
        };
        let signed =
            matches!(ledger.store().get(&skiff_state::keys::release_signature(&service, &release)).await, Ok(Some(_)));
        let mut body = serde_json::to_string_pretty(&manifest).unwrap_or_default();
        body.push('\n');
        Outcome::from(
            Envelope::ok(format!("release {service} {release}"))
                .fact(format!("artifact {} {}", manifest.artifact.name, manifest.artifact.digest))
                .fact(if signed { "signed" } else { "UNSIGNED: runners refuse it" })
                .data(serde_json::json!({"manifest": manifest, "signed": signed}))
                .action("verify", format!("skiff release verify {service} {release}"), false, Safety::ReadOnly, 0.6),
        )
        .body(body)
    })
}

fn verify(ctx: &Ctx, service: &str, release: Option<String>, public_key: Option<&Path>) -> Outcome {
    let verifier = match verifier(ctx, public_key) {
        Ok(v) => v,
        Err(o) => return *o,
    };
    let service = service.to_owned();
    super::block_on(ctx, |ledger, _| async move {
        let release = match chosen(&ledger, &service, release).await {
            Ok(r) => r,
            Err(o) => return o,
        };
        match skiff_release::verify(&ledger, &verifier, &service, &release).await {
            Ok(v) => Envelope::ok(format!("release {service} {release} verifies"))
                .fact("signature matches the trusted public key")
                .fact(format!("artifact {} matches {}", v.manifest.artifact.name, v.manifest.artifact.digest))
                .fact("SBOM, provenance and spec match their digests")
                .data(serde_json::json!({"manifest": v.manifest}))
                .into(),
            Err(e) => release_error(&e),
        }
    })
}
