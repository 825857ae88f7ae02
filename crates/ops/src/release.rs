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
        ReleaseRequest::Promote { service, release, to, file } => promote(ctx, &service, &release, &to, &file).await,
    }
}

/// `skiff release promote SERVICE RELEASE --to ENV`: the release as it ran here (this
/// context's bucket) rolled out in environment ENV (the context of that name, its own
/// bucket and provider) — the same artifact, SBOM and provenance by digest, re-signed
/// with ENV's spec (the `environments.ENV` overlay) and deployed through ENV's policy
/// and canary. Refused, before anything changes there, for a release that is missing,
/// unsigned or tampered with here, or never finished a rollout here.
async fn promote(ctx: &Context, service: &str, release: &str, to: &str, file: &Path) -> Result<Answer> {
    let (from, source) = ctx.ledger()?;
    let manifest = crate::lookup::release(&source, service, release).await?;
    // A release that does not verify here is refused before anything else is said of it.
    let verifier = crate::keys::verifier(ctx, None)?;
    skiff_release::verify(&source, &verifier, service, release).await.map_err(|e| crate::error::release(&e))?;
    let from_ir = source.get_spec(&manifest.spec_digest).await.map_err(|e| crate::error::state(&e))?;
    let from_env = from_ir.environment.clone();
    let (shown, spec) = crate::spec::load(ctx, file).await?;
    if spec.service.as_str() != service {
        return Err(Envelope::failure(Code::Usage, format!("{shown} describes {}, not {service}", spec.service))
            .fact("promotion compiles the service's spec for the target environment")
            .action(
                "file",
                format!("skiff release promote {service} {release} --to {to} -f PATH/skiff.yaml"),
                true,
                Safety::Reversible,
                0.5,
            )
            .into());
    }
    let ir = skiff_ir::compile(&crate::spec::for_environment(spec, Some(to))?);
    if to == from_env {
        return Err(Envelope::failure(Code::Usage, format!("{service} {release} already runs in {to}"))
            .fact(format!("this context's bucket ({}) is environment {from_env}", from.state.value))
            .action("deploy", format!("skiff rollback {service} --to {release}"), true, Safety::Reversible, 0.4)
            .into());
    }
    let state = crate::lookup::service(&source, service).await?;
    let ran = [&state.current_release, &state.stable_release, &state.previous_stable]
        .iter()
        .any(|r| r.as_deref() == Some(release));
    if !ran {
        return Err(Envelope::failure(
            Code::PolicyDenied,
            format!("{service} {release} never finished a rollout in {from_env}: promotion refused"),
        )
        .fact(format!(
            "a release is promoted once it ran healthy where it was built; {from_env} runs {}",
            state.stable_release.as_deref().unwrap_or("no stable release")
        ))
        .action("deploy", format!("skiff deploy -f {shown} --yes"), true, Safety::Reversible, 0.5)
        .action("list", format!("skiff release list {service}"), false, Safety::ReadOnly, 0.4)
        .into());
    }
    let target = Context {
        flags: skiff_sdk::config::Flags { context: Some(to.to_owned()), ..Default::default() },
        ..ctx.clone()
    };
    let (there, _) = target.ledger()?;
    if there.state.value == from.state.value {
        return Err(Envelope::failure(Code::Usage, format!("environment {to} resolves to this context's bucket"))
            .fact(format!("both are {}", from.state.value))
            .fact(format!(
                "each environment keeps its own bucket: give context {to} its own --state, and unset $SKIFF_STATE"
            ))
            .action("contexts", "skiff config get-contexts", false, Safety::ReadOnly, 0.6)
            .into());
    }
    let (_, target_ledger) = target.ledger()?;
    let running = target_ledger
        .read::<skiff_state::docs::ServiceState>(&skiff_state::keys::service_state(service))
        .await
        .map_err(|e| crate::error::state(&e))?;
    if running.as_ref().is_some_and(|s| s.current_release.as_deref() == Some(release) && s.active_operation.is_none()) {
        let promotions: Option<skiff_state::docs::PromotionsDoc> =
            source.read(&skiff_state::keys::service_promotions(service)).await.map_err(|e| crate::error::state(&e))?;
        let recorded = promotions
            .and_then(|d| d.promotions.into_iter().rev().find(|p| p.release == release && p.environment == to));
        let op = match recorded {
            Some(p) => p.operation,
            None => {
                // Rolled out by a resumed operation after this command was killed.
                let record = skiff_state::docs::PromotionRecord {
                    release: release.to_owned(),
                    environment: to.to_owned(),
                    bucket: there.state.value.clone(),
                    operation: None,
                    at_ms: source.clock().now_ms(),
                    by: ctx.actor(),
                };
                record_promotion(ctx, &source, service, record).await?;
                None
            }
        };
        let mut env = Envelope::ok(format!("{service} {release} already runs in {to}: nothing to promote"))
            .fact(format!("{to} ({}) has it as its current release", there.state.value))
            .action("status", format!("skiff --context {to} status {service}"), false, Safety::ReadOnly, 0.6);
        env.operation_id = op;
        return Ok(env.into());
    }
    let local = |c: &Context| -> Result<Option<std::path::PathBuf>> {
        let (_, r) = c.resolve()?;
        (r.provider.value == skiff_sdk::config::ProviderKind::Local)
            .then(|| crate::factory::local_dir(c).map(|d| d.root().to_path_buf()))
            .transpose()
    };
    if let (Some(a), Some(b)) = (local(ctx)?, local(&target)?)
        && a == b
    {
        return Err(Envelope::failure(Code::Usage, format!("{from_env} and {to} would share one local supervisor"))
            .fact(format!("the local provider keeps its instances beside the bucket: both use {}", a.display()))
            .fact("give each environment its own directory, e.g. --state file://.skiff/<env>/state")
            .action("contexts", "skiff config get-contexts", false, Safety::ReadOnly, 0.6)
            .into());
    }
    ctx.confirm(
        &format!("promote {service} {release} from {from_env} to {to}"),
        &format!("skiff release promote {service} {release} --to {to}"),
    )?;
    ctx.progress(&format!(
        "promoting {service} {release}: {from_env} ({}) → {to} ({})",
        from.state.value, there.state.value
    ));
    let origin = crate::deploy::ReleaseFrom::Promote(crate::deploy::Promoting {
        source: &source,
        environment: from_env.clone(),
        release: release.to_owned(),
    });
    let mut answer = crate::deploy::roll_out(&target, file, &shown, &ir, origin, None).await?;
    if answer.envelope.operation_id.is_some() {
        let record = skiff_state::docs::PromotionRecord {
            release: release.to_owned(),
            environment: to.to_owned(),
            bucket: there.state.value.clone(),
            operation: answer.envelope.operation_id.clone(),
            at_ms: source.clock().now_ms(),
            by: ctx.actor(),
        };
        record_promotion(ctx, &source, service, record).await?;
    }
    answer
        .envelope
        .facts
        .insert(0, format!("promoted from {from_env} ({}): artifact {}", from.state.value, manifest.artifact.digest));
    Ok(answer)
}

async fn create(ctx: &Context, file: &Path, build: bool) -> Result<Answer> {
    let (shown, spec) = crate::spec::load(ctx, file).await?;
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
    let mut roles = std::collections::BTreeMap::new();
    let mut promoted = std::collections::BTreeMap::new();
    for svc in &services {
        if let Some(state) = ledger
            .read::<skiff_state::docs::ServiceState>(&skiff_state::keys::service_state(svc))
            .await
            .map_err(|e| crate::error::state(&e))?
        {
            roles.insert(svc.clone(), state);
        }
        if let Some(doc) = ledger
            .read::<skiff_state::docs::PromotionsDoc>(&skiff_state::keys::service_promotions(svc))
            .await
            .map_err(|e| crate::error::state(&e))?
        {
            promoted.insert(svc.clone(), doc.promotions);
        }
    }
    let mut body = String::new();
    let mut data = Vec::new();
    for l in &all {
        let m = &l.manifest;
        let here = roles.get(&m.service).map(|s| runs_as(s, &m.release)).unwrap_or_default();
        let to: Vec<&skiff_state::docs::PromotionRecord> =
            promoted.get(&m.service).map(|p| p.iter().filter(|p| p.release == m.release).collect()).unwrap_or_default();
        let mut whence = Vec::new();
        if let Some(p) = &m.promoted_from {
            whence.push(format!("from {}", p.environment));
        }
        let mut targets: Vec<&str> = to.iter().map(|p| p.environment.as_str()).collect();
        targets.dedup();
        if !targets.is_empty() {
            whence.push(format!("to {}", targets.join(", ")));
        }
        let _ = writeln!(
            body,
            "{:<16} {:<14} {}  {}{}{}{}",
            m.service,
            m.release,
            m.created_at,
            &m.artifact.digest[..19],
            if l.signed { "" } else { "  UNSIGNED" },
            if here.is_empty() { String::new() } else { format!("  {}", here.join(", ")) },
            if whence.is_empty() { String::new() } else { format!("  promoted {}", whence.join("; ")) },
        );
        data.push(serde_json::json!({
            "manifest": m,
            "signed": l.signed,
            "runs_here": here,
            "promoted_from": m.promoted_from,
            "promoted_to": to,
        }));
    }
    Ok(Answer::from(Envelope::ok(plural(all.len(), "release")).data(data)).body(body))
}

/// Records in the source bucket that a release went to another environment (and
/// audits it there).
async fn record_promotion(
    ctx: &Context,
    source: &Ledger,
    service: &str,
    record: skiff_state::docs::PromotionRecord,
) -> Result<()> {
    source
        .update::<skiff_state::docs::PromotionsDoc, _>(&skiff_state::keys::service_promotions(service), |doc| {
            let mut doc = doc.cloned().unwrap_or_else(|| skiff_state::docs::PromotionsDoc {
                service: service.to_owned(),
                ..Default::default()
            });
            let known = doc.promotions.iter().any(|p| {
                p.release == record.release && p.environment == record.environment && p.operation == record.operation
            });
            if !known {
                doc.promotions.push(record.clone());
            }
            Ok(skiff_state::Update::Write(doc))
        })
        .await
        .map_err(|e| crate::error::state(&e))?;
    let target = format!("{service}/{}", record.release);
    let detail = serde_json::json!({"to": record.environment, "bucket": record.bucket, "operation": record.operation});
    let _ = source.audit(&ctx.actor(), "release.promote", &target, Code::Ok, detail).await;
    Ok(())
}

/// What `release` is to the service in this environment: `current`, `stable`,
/// `candidate`, `previous-stable`, `shadow`.
fn runs_as(state: &skiff_state::docs::ServiceState, release: &str) -> Vec<&'static str> {
    [
        ("current", &state.current_release),
        ("stable", &state.stable_release),
        ("candidate", &state.candidate_release),
        ("previous-stable", &state.previous_stable),
        ("shadow", &state.shadow_release),
    ]
    .into_iter()
    .filter(|(_, r)| r.as_deref() == Some(release))
    .map(|(name, _)| name)
    .collect()
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
