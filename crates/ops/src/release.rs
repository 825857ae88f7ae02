//! `skiff release create|list|show|verify`.

use std::fmt::Write as _;
use std::path::Path;

use skiff_release::ReleaseInput;
use skiff_sdk::{Answer, Code, Envelope, Safety};
use skiff_state::Ledger;

use crate::context::Context;
use crate::error::{Result, plural};
use crate::request::ReleaseRequest;

pub(crate) async fn run(ctx: &Context, r: ReleaseRequest) -> Result<Answer> {
    match r {
        ReleaseRequest::Create { file, build } => create(ctx, &file, build).await,
        ReleaseRequest::List { service } => list(ctx, service).await,
        ReleaseRequest::Show { service, release } => show(ctx, &service, release).await,
        ReleaseRequest::Verify { service, release, public_key } => {
            verify(ctx, &service, release, public_key.as_deref()).await
        }
    }
}

async fn create(ctx: &Context, file: &Path, build: bool) -> Result<Answer> {
    let (shown, spec) = crate::spec::load(ctx, file)?;
    let signer = crate::keys::signer(ctx)?;
    ctx.confirm(&format!("release `{}`", spec.service), &format!("skiff release create -f {shown}"))?;
    let ir = skiff_ir::compile(&spec);
    let spec_path = ctx.cwd.join(file);
    let actor = ctx.actor();
    if build && ir.artifact.build.is_some() {
        ctx.progress(&format!("building: {}", ir.artifact.build.as_deref().unwrap_or_default()));
    }
    let (_, ledger) = ctx.ledger()?;
    let input = ReleaseInput { spec_path: &spec_path, spec_shown: &shown, ir: &ir, actor: &actor, build };
    let created = skiff_release::create(&ledger, &signer, &input).await.map_err(|e| crate::error::release(&e))?;
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
    Ok(Envelope::ok(format!("released {} {}", m.service, m.release))
        .fact(format!("artifact {} ({} bytes) {}", m.artifact.name, m.artifact.size, m.artifact.digest))
        .fact(format!("SBOM {}", m.sbom))
        .fact(format!("provenance {}", m.provenance))
        .fact(if created.built { "built with the spec's build command" } else { "artifact used as it was" })
        .fact("signed (ECDSA P-256, cosign format)")
        .data(serde_json::json!({"manifest": m, "signature": created.signature}))
        .action("verify", format!("skiff release verify {} {}", m.service, m.release), false, Safety::ReadOnly, 0.5)
        .into())
}

async fn list(ctx: &Context, service: Option<String>) -> Result<Answer> {
    let (_, ledger) = ctx.ledger()?;
    let services: Vec<String> = match &service {
        Some(s) => vec![s.clone()],
        None => ledger.rebuild_index().await.map_err(|e| crate::error::state(&e))?.releases.keys().cloned().collect(),
    };
    let mut all = Vec::new();
    for s in &services {
        all.extend(skiff_release::list(&ledger, s).await.map_err(|e| crate::error::release(&e))?);
    }
    if let Some(s) = &service
        && all.is_empty()
        && !crate::lookup::service_known(&ledger, s).await?
    {
        return Err(crate::lookup::no_service(&ledger, s));
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
    Ok(Answer::from(Envelope::ok(plural(all.len(), "release")).data(data)).body(body))
}

/// The named release (which must exist), or the service's newest.
async fn chosen(ledger: &Ledger, service: &str, release: Option<String>) -> Result<String> {
    if let Some(r) = release {
        crate::lookup::release(ledger, service, &r).await?;
        return Ok(r);
    }
    let listed = skiff_release::list(ledger, service).await.map_err(|e| crate::error::release(&e))?;
    if listed.is_empty() && !crate::lookup::service_known(ledger, service).await? {
        return Err(crate::lookup::no_service(ledger, service));
    }
    listed.last().map(|l| l.manifest.release.clone()).ok_or_else(|| {
        Envelope::failure(Code::NotFound, format!("{service} has no releases"))
            .action("create", "skiff release create --yes", true, Safety::Reversible, 0.6)
            .into()
    })
}

async fn show(ctx: &Context, service: &str, release: Option<String>) -> Result<Answer> {
    let (_, ledger) = ctx.ledger()?;
    let release = chosen(&ledger, service, release).await?;
    let manifest = crate::lookup::release(&ledger, service, &release).await?;
    let signed =
        matches!(ledger.store().get(&skiff_state::keys::release_signature(service, &release)).await, Ok(Some(_)));
    let mut body = serde_json::to_string_pretty(&manifest).unwrap_or_default();
    body.push('\n');
    Ok(Answer::from(
        Envelope::ok(format!("release {service} {release}"))
            .fact(format!("artifact {} {}", manifest.artifact.name, manifest.artifact.digest))
            .fact(if signed { "signed" } else { "UNSIGNED: runners refuse it" })
            .data(serde_json::json!({"manifest": manifest, "signed": signed}))
            .action("verify", format!("skiff release verify {service} {release}"), false, Safety::ReadOnly, 0.6),
    )
    .body(body))
}

async fn verify(ctx: &Context, service: &str, release: Option<String>, public_key: Option<&Path>) -> Result<Answer> {
    let (_, ledger) = ctx.ledger()?;
    let release = chosen(&ledger, service, release).await?;
    let verifier = crate::keys::verifier(ctx, public_key)?;
    let v =
        skiff_release::verify(&ledger, &verifier, service, &release).await.map_err(|e| crate::error::release(&e))?;
    Ok(Envelope::ok(format!("release {service} {release} verifies"))
        .fact("signature matches the trusted public key")
        .fact(format!("artifact {} matches {}", v.manifest.artifact.name, v.manifest.artifact.digest))
        .fact("SBOM, provenance and spec match their digests")
        .data(serde_json::json!({"manifest": v.manifest}))
        .into())
}
