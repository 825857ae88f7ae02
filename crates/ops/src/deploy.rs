//! `deploy`, `rollback` and `repair`: everything a rollout needs is resolved first
//! (release, stable group, thresholds, policy verdicts), then the operation goes
//! through the [pipeline](crate::pipeline).

use std::path::Path;

use skiff_ir::ServiceIr;
use skiff_pluginapi::{HealthState, Provider, RunnerConfig};
use skiff_saga::ServiceScope;
use skiff_sdk::config::{Origin, ProviderKind};
use skiff_sdk::{Answer, Code, Envelope, Safety};
use skiff_state::Ledger;
use skiff_state::docs::ServiceState;
use skiff_steps::deploy::{Rollout, Stable, group_name};

use crate::context::Context;
use crate::error::{Error, Result};
use crate::pipeline::{Launch, launch};
use crate::request::ShadowRequest;

/// How instances reach the bucket and check signatures.
fn runner_config(bucket: &str, public_key_pem: &str) -> RunnerConfig {
    RunnerConfig { bucket: bucket.to_owned(), public_key_pem: public_key_pem.to_owned(), heartbeat_ms: 2_000 }
}

/// A release's group as the provider has it: `None` when the group is gone;
/// `serving` when it has healthy targets (else there is nothing to canary against,
/// and the rollout only cleans it up).
async fn serving(provider: &dyn Provider, ledger: &Ledger, service: &str, release: &str) -> Option<Stable> {
    let group = group_name(service, release);
    let info = provider.compute().describe_group(&group).await.ok().flatten()?;
    let health = provider.traffic().target_health(&group).await.ok();
    let healthy = health.as_ref().is_some_and(|h| h.iter().any(|t| t.state == HealthState::Healthy));
    let serving = !info.running().is_empty() && (healthy || info.instances.iter().all(|i| i.port.is_none()));
    let manifest = ledger
        .read::<skiff_release::ReleaseManifest>(&skiff_state::keys::release(service, release))
        .await
        .ok()
        .flatten();
    Some(Stable {
        release: release.to_owned(),
        group: group.clone(),
        target_group: health.map(|_| group),
        spec_digest: manifest.map(|m| m.spec_digest),
        serving,
    })
}

/// LEASE_HELD when a live operation already works on the service (checked before a
/// release is built that nobody could roll out; the engine checks again on submit).
pub(crate) async fn check_free(ctx: &Context, ledger: &Ledger, service: &str) -> Result<()> {
    let engine = crate::factory::engine_with(ctx, ledger, skiff_sagaapi::Extensions::default());
    match engine.scope_holder(service, None).await {
        Ok(Some((op, status))) => Err(crate::error::saga(&skiff_saga::SagaError::ScopeHeld {
            scope: service.to_owned(),
            op,
            status: status.as_str().to_owned(),
        })),
        Ok(None) => Ok(()),
        Err(e) => Err(crate::error::saga(&e)),
    }
}

/// The local supervisor, started when the local provider needs it; a note when this
/// call started it.
pub(crate) async fn local_ready(ctx: &Context, notes: Option<&mut Vec<String>>) -> Result<()> {
    let (_, resolved) = ctx.resolve()?;
    if resolved.provider.value != ProviderKind::Local {
        return Ok(());
    }
    let dir = crate::factory::local_dir(ctx)?;
    if let (_, true) = crate::local::ensure_up(ctx, &dir).await?
        && let Some(n) = notes
    {
        n.push("started the local supervisor".to_owned());
    }
    Ok(())
}

/// What `--shadow` needs of the spec and the provider, checked before anything is built.
fn check_shadow(ir: &ServiceIr, provider: &str, shadow: Option<ShadowRequest>) -> Result<()> {
    let Some(shadow) = shadow else { return Ok(()) };
    let refuse = |summary: String, fact: &str| -> Error {
        Envelope::failure(Code::Usage, summary)
            .fact(fact.to_owned())
            .action("help", "skiff deploy --help", false, Safety::ReadOnly, 0.5)
            .into()
    };
    if ir.network.is_none() {
        return Err(refuse(
            format!("{} serves no port: --shadow needs a service that takes traffic", ir.service),
            "a shadow release runs beside the stable one without user traffic; a worker has none to withhold",
        ));
    }
    if ir
        .database
        .as_ref()
        .and_then(|d| d.migrations.as_ref())
        .is_some_and(|m| m.phase == skiff_spec::MigrationPhase::AfterPromote)
    {
        return Err(refuse(
            "a migration that runs after promotion cannot run for a shadow release".to_owned(),
            "set `database.migrations.phase: before_canary`, or deploy without --shadow",
        ));
    }
    if let Some(p) = shadow.mirror_percent {
        if !(1..=100).contains(&p) {
            return Err(refuse(format!("--mirror {p}: give a percent from 1 to 100"), "e.g. --mirror 10"));
        }
        if provider != "local" {
            return Err(refuse(
                format!("the {provider} load balancer cannot mirror requests"),
                "deploy with --shadow alone, then judge the shadow against live traffic with `skiff saga start traffic-cutover`",
            ));
        }
    }
    Ok(())
}

/// The graph of a deploy, or of a shadow deploy (which replaces the previous shadow).
fn graph_for(
    rollout: &Rollout,
    shadow: Option<ShadowRequest>,
    before: Option<&ServiceState>,
) -> Result<skiff_saga::SagaGraph> {
    let graph = match shadow {
        None => skiff_steps::deploy::deploy_graph(rollout),
        Some(s) => {
            let previous = before.and_then(|b| b.shadow_release.clone()).map(|r| {
                let g = group_name(&rollout.service, &r);
                (r, g)
            });
            let plan = skiff_steps::deploy::ShadowPlan { mirror_percent: s.mirror_percent, previous };
            skiff_steps::deploy::shadow_graph(rollout, &plan)
        }
    };
    graph.map_err(|e| crate::error::saga(&e))
}

/// Where a deploy's release comes from.
pub(crate) enum ReleaseFrom<'a> {
    /// Made here from the spec's artifact (`skiff deploy`), built first when asked.
    Build(bool),
    /// Promoted from another environment's bucket (`skiff release promote`).
    Promote(Promoting<'a>),
}

/// A release promoted from another environment.
pub(crate) struct Promoting<'a> {
    /// The source environment's bucket.
    pub(crate) source: &'a Ledger,
    /// The source environment's name.
    pub(crate) environment: String,
    /// The release.
    pub(crate) release: String,
}

/// `skiff deploy`: build, sign and verify a release, check every policy, and roll it
/// out (or, with `--shadow`, run it beside the stable release without user traffic).
pub(crate) async fn deploy(ctx: &Context, file: &Path, build: bool, shadow: Option<ShadowRequest>) -> Result<Answer> {
    let (shown, spec) = crate::spec::load(ctx, file).await?;
    let ir = skiff_ir::compile(&spec);
    ctx.confirm(&format!("deploy {}", ir.service), &format!("skiff deploy -f {shown}"))?;
    roll_out(ctx, file, &shown, &ir, ReleaseFrom::Build(build), shadow).await
}

/// Everything after the confirmation: policy, release (made or promoted), signature
/// check, rollout plan, and the operation.
pub(crate) async fn roll_out(
    ctx: &Context,
    file: &Path,
    shown: &str,
    ir: &ServiceIr,
    from: ReleaseFrom<'_>,
    shadow: Option<ShadowRequest>,
) -> Result<Answer> {
    let (_, resolved) = ctx.resolve()?;
    crate::plugin::check_hooks(ctx, ir, shown)?;
    let embedded = resolved.state.origin == Origin::Default && matches!(from, ReleaseFrom::Build(_));
    // Invalid policy files, and rules the plan breaks whatever the release, stop the
    // deploy before anything is built, signed or started.
    let rules = crate::policy::load(&ctx.cwd.join(file))?;
    let provider_name = resolved.provider.value.as_str();
    let prospective = crate::policy::prospective_graph(ir)?;
    crate::policy::enforce(&rules, &crate::policy::input(ctx, ir, "deploy", provider_name, None, Some(&prospective)))?;
    // Fail before building a release nobody could roll out, or starting anything.
    let (_, ledger) = ctx.ledger()?;
    let before = ledger
        .read::<ServiceState>(&skiff_state::keys::service_state(&ir.service))
        .await
        .map_err(|e| crate::error::state(&e))?;
    if before.is_some() {
        check_free(ctx, &ledger, &ir.service).await?;
    }
    refuse_migrations_on(ir, provider_name)?;
    check_shadow(ir, provider_name, shadow)?;
    let mut notes = Vec::new();
    let signer = crate::keys::signer_or_generate(ctx, embedded, &mut notes)?;
    let public_pem = crate::keys::public_key(ctx)?;
    let verifier = skiff_release::Verifier::from_pem(public_pem.as_bytes()).map_err(|e| crate::error::release(&e))?;
    local_ready(ctx, Some(&mut notes)).await?;
    let provider = crate::factory::provider(ctx, &ledger).await?;
    let engine = crate::factory::engine(ctx, &ledger).await;
    let actor = ctx.actor();
    ledger.init(&actor).await.map_err(|e| crate::error::state(&e))?;
    let created = match from {
        ReleaseFrom::Build(build) => {
            if build && ir.artifact.build.is_some() {
                ctx.progress(&format!("building: {}", ir.artifact.build.as_deref().unwrap_or_default()));
            }
            let spec_path = ctx.cwd.join(file);
            let input =
                skiff_release::ReleaseInput { spec_path: &spec_path, spec_shown: shown, ir, actor: &actor, build };
            skiff_release::create(&ledger, &signer, &input).await
        }
        ReleaseFrom::Promote(p) => {
            let from_bucket = p.source.url();
            let input = skiff_release::PromoteInput {
                service: &ir.service,
                release: &p.release,
                ir,
                from_environment: &p.environment,
                from_bucket: &from_bucket,
                actor: &actor,
            };
            skiff_release::promote(p.source, &ledger, &verifier, &signer, &input).await
        }
    };
    let m = created.map_err(|e| crate::error::release(&e))?.manifest;
    ctx.progress(&format!("release {} {} signed", m.service, m.release));
    skiff_release::verify(&ledger, &verifier, &m.service, &m.release).await.map_err(|e| crate::error::release(&e))?;
    if let Some(p) = &m.promoted_from {
        notes.push(format!(
            "release {} promoted from {} ({}): artifact {} as it ran there, not rebuilt",
            m.release, p.environment, p.bucket, m.artifact.digest
        ));
    }
    let release_facts = crate::policy::verified_release(&m);
    let stable_release = before.as_ref().and_then(|s| s.stable_release.clone());
    let stable = match &stable_release {
        Some(r) => serving(provider.as_ref(), &ledger, &ir.service, r).await,
        None => None,
    };
    if let Some(r) = &stable_release
        && !stable.as_ref().is_some_and(|s| s.serving)
    {
        notes.push(format!("stable release {r} is not running: the new release takes all traffic at once"));
    }
    let group = skiff_steps::deploy::group_spec(ir, &m.release, runner_config(&resolved.state.value, &public_pem));
    let mut rollout = skiff_steps::deploy::rollout_for(ir, &m.release, &m.spec_digest, group, stable);
    // After a restore the database runs on the restored instance: ensure that one. After
    // a failover the replicas follow the instance that writes now, and a new traffic
    // front starts on its region.
    let writer_region = skiff_steps::failover::writer_region(ir, before.as_ref());
    let mut writer = None;
    if let Some(db) = rollout.database.as_mut() {
        db.id = skiff_steps::database::current_instance(&ledger, &db.id).await.map_err(|e| crate::error::state(&e))?;
        writer = Some(db.id.clone());
    }
    rollout.follow_writer(ir, writer.as_deref().unwrap_or_default(), &writer_region);
    notes.extend(crate::plan::migration_notes(ir, stable_release.as_deref()));
    crate::adopt::apply(&mut rollout, crate::adopt::owned(&ledger, &ir.service).await?, &mut notes);
    let graph = graph_for(&rollout, shadow, before.as_ref())?;
    let input = crate::policy::input(ctx, ir, "deploy", provider_name, Some(release_facts), Some(&graph));
    notes.extend(crate::policy::enforce(&rules, &input)?.1);
    let saga = if shadow.is_some() { "shadow-deploy" } else { "deploy" };
    let key = format!("{saga}:{}:{}", ir.service, m.release);
    let l = rollout_launch(saga, graph, &rollout, key, notes);
    Ok(launch(ctx, &engine, &ledger, l).await?.answer())
}

/// Migrations run on a task instance; only the local provider launches those so far.
fn refuse_migrations_on(ir: &skiff_ir::ServiceIr, provider: &str) -> Result<()> {
    if provider == "local" || ir.database.as_ref().and_then(|d| d.migrations.as_ref()).is_none() {
        return Ok(());
    }
    Err(Envelope::failure(Code::Usage, format!("`database.migrations` cannot run on the {provider} provider yet"))
        .fact("a migration runs on a one-shot task instance of the new release; the local provider launches those, the AWS provider does not yet")
        .fact("run the migration yourself before `skiff deploy`, or remove `database.migrations`")
        .action("validate", "skiff validate -f skiff.yaml", false, Safety::ReadOnly, 0.5)
        .into())
}

/// `skiff deploy --dry-run`: the rollout's steps as the engine plans them, after the
/// policy check, with nothing built, signed, started or recorded. With `bucket`, the
/// service's recorded stable release decides canary or first rollout; without (through
/// skiffd) the plan is the spec's own, and says so.
pub(crate) async fn dry_run(ctx: &Context, file: &Path, bucket: bool, shadow: Option<ShadowRequest>) -> Result<Answer> {
    let (shown, spec) = crate::spec::load(ctx, file).await?;
    let ir = skiff_ir::compile(&spec);
    let (_, resolved) = ctx.resolve()?;
    check_shadow(&ir, resolved.provider.value.as_str(), shadow)?;
    crate::plugin::check_hooks(ctx, &ir, &shown)?;
    let mut before = None;
    let rules = crate::policy::load(&ctx.cwd.join(file))?;
    let mut facts = Vec::new();
    let stable = if bucket {
        let (_, ledger) = ctx.ledger()?;
        let state = ledger
            .read::<ServiceState>(&skiff_state::keys::service_state(&ir.service))
            .await
            .map_err(|e| crate::error::state(&e))?;
        before.clone_from(&state);
        state.and_then(|s| s.stable_release).map(|release| Stable {
            group: group_name(&ir.service, &release),
            target_group: ir.network.as_ref().map(|_| group_name(&ir.service, &release)),
            release,
            spec_digest: None,
            serving: true,
        })
    } else {
        facts.push("planned from the spec alone: with a serving stable release the shift is a canary".to_owned());
        None
    };
    match &stable {
        _ if shadow.is_some() => facts.push(format!("a shadow release of {}: it takes no user traffic", ir.service)),
        Some(s) => facts.push(format!("a canary from stable release {} (if it still serves)", s.release)),
        None if bucket => facts.push(format!("{} has no stable release: this rollout takes all traffic", ir.service)),
        None => {}
    }
    facts.extend(crate::plan::migration_notes(&ir, stable.as_ref().map(|s| s.release.as_str())));
    let group = skiff_steps::deploy::group_spec(&ir, "next", runner_config(&resolved.state.value, ""));
    let rollout = skiff_steps::deploy::rollout_for(&ir, "next", "", group, stable);
    let graph = graph_for(&rollout, shadow, before.as_ref())?;
    let input = crate::policy::input(ctx, &ir, "deploy", resolved.provider.value.as_str(), None, Some(&graph));
    facts.extend(crate::policy::enforce(&rules, &input)?.1);
    // Planning reads only the steps' parameters: an empty in-memory bucket stands in.
    let ledger = Ledger::open("memory://deploy-dry-run", &skiff_objstore::OpenOptions::default())
        .map_err(|e| crate::error::state(&e))?;
    let engine = crate::factory::engine_with(ctx, &ledger, skiff_sagaapi::Extensions::default());
    let plan = engine.plan(&graph, Some(&ir.service), "op-dry-run").await.map_err(|e| crate::error::saga(&e))?;
    let what = if shadow.is_some() { "shadow deploy" } else { "deploy" };
    let flags = match shadow {
        Some(ShadowRequest { mirror_percent: Some(p) }) => format!(" --shadow --mirror {p}"),
        Some(_) => " --shadow".to_owned(),
        None => String::new(),
    };
    let env = Envelope::ok(format!(
        "plan for {what} of {}: {} steps, nothing changed (dry run)",
        ir.service,
        plan.steps.len()
    ))
    .facts(facts)
    .fact(format!("least reversible step: {}", plan.safety().as_str()))
    .data(crate::report::plan_data(&plan))
    .risk(
        crate::report::risk(plan.risk()),
        plan.steps.iter().filter(|s| s.risk >= plan.risk()).map(|s| format!("{}: {}", s.id, s.description)).collect(),
    )
    .action("deploy", format!("skiff deploy -f {shown}{flags} --yes"), true, Safety::Reversible, 0.7);
    Ok(Answer::from(env).body(crate::report::plan_table(&plan, None)))
}

/// The launch of a deploy or rollback graph.
fn rollout_launch(saga: &str, graph: skiff_saga::SagaGraph, r: &Rollout, key: String, notes: Vec<String>) -> Launch {
    let candidate = (saga == "deploy").then(|| r.release.clone());
    Launch {
        graph,
        service: Some(r.service.clone()),
        scope: Some(ServiceScope { service: r.service.clone(), candidate_release: candidate }),
        key: Some(key),
        reason: format!("{saga} {} {}", r.service, r.release),
        params: serde_json::json!({
            "release": r.release,
            "stable": r.stable.as_ref().map(|s| &s.release),
            "notes": notes,
        }),
        audit: (format!("{saga}.start"), serde_json::json!({"release": r.release})),
        audit_existing: true,
        release: r.release.clone(),
    }
}

/// `skiff deploy --watch`: follows the service's running operation to its end.
pub(crate) async fn watch(ctx: &Context, file: &Path) -> Result<Answer> {
    let (_, spec) = crate::spec::load(ctx, file).await?;
    let service = spec.service.to_string();
    let (_, ledger) = ctx.ledger()?;
    let state = ledger
        .read::<ServiceState>(&skiff_state::keys::service_state(&service))
        .await
        .map_err(|e| crate::error::state(&e))?;
    match state {
        Some(ServiceState { active_operation: Some(op), .. }) => crate::events::run(ctx, &op, true, 0).await,
        _ => Err(Envelope::failure(Code::NotFound, format!("no operation is running for {service}"))
            .action("deploy", format!("skiff deploy -f {} --yes", file.display()), true, Safety::Reversible, 0.6)
            .action("status", format!("skiff status {service}"), false, Safety::ReadOnly, 0.5)
            .into()),
    }
}

/// `skiff rollback SERVICE [--to previous-stable|RELEASE]`.
pub(crate) async fn rollback(ctx: &Context, service: &str, to: &str) -> Result<Answer> {
    ctx.resolve()?;
    let (_, ledger) = ctx.ledger()?;
    // What the user named first: the service and the release to go back to.
    let state = crate::lookup::service(&ledger, service).await?;
    let target = if to == "previous-stable" {
        let last_failed = state.candidate_release.is_some();
        let t = if last_failed { state.stable_release.clone() } else { state.previous_stable.clone() };
        t.ok_or_else(|| {
            Error::from(
                Envelope::failure(Code::NotFound, format!("{service} has no previous stable release"))
                    .fact(format!(
                        "{service} runs {}; nothing finished a rollout before it",
                        state.current_release.as_deref().unwrap_or("nothing")
                    ))
                    .action("releases", format!("skiff release list {service}"), false, Safety::ReadOnly, 0.7),
            )
        })?
    } else {
        to.to_owned()
    };
    crate::lookup::release(&ledger, service, &target).await?;
    check_free(ctx, &ledger, service).await?;
    ctx.confirm(&format!("roll {service} back to {to}"), &format!("skiff rollback {service} --to {to}"))?;
    let (graph, rollout) = rollback_plan(ctx, &ledger, &state, &target).await?;
    let engine = crate::factory::engine(ctx, &ledger).await;
    let key = format!("rollback:{service}:{target}:{}", ledger.clock().now_ms());
    let l = rollout_launch("rollback", graph, &rollout, key, Vec::new());
    Ok(launch(ctx, &engine, &ledger, l).await?.answer())
}

/// The rollback of `state`'s service to `target`: the release verified, its rollout
/// from whatever serves now, its graph checked against every policy. Also how an
/// incident repair rolls back.
pub(crate) async fn rollback_plan(
    ctx: &Context,
    ledger: &Ledger,
    state: &ServiceState,
    target: &str,
) -> Result<(skiff_saga::SagaGraph, Rollout)> {
    let (_, resolved) = ctx.resolve()?;
    let service = state.service.as_str();
    let manifest = crate::lookup::release(ledger, service, target).await?;
    let public_pem = crate::keys::public_key(ctx)?;
    local_ready(ctx, None).await?;
    // No spec file here: the rules are the built-in ones plus ./policies.
    let rules = crate::policy::load(&ctx.cwd.join("skiff.yaml"))?;
    let verifier = skiff_release::Verifier::from_pem(public_pem.as_bytes()).map_err(|e| crate::error::release(&e))?;
    let provider_name = resolved.provider.value.as_str();
    let provider = crate::factory::provider(ctx, ledger).await?;
    let ir: ServiceIr = ledger.get_spec(&manifest.spec_digest).await.map_err(|e| crate::error::state(&e))?;
    // Move away from whatever serves now: a failed candidate's group first, else the current release.
    let mut from = None;
    for r in [state.candidate_release.clone(), state.current_release.clone()].into_iter().flatten() {
        if r != target
            && let Some(s) = serving(provider.as_ref(), ledger, service, &r).await
            && s.serving
        {
            from = Some(s);
            break;
        }
    }
    let group = skiff_steps::deploy::group_spec(&ir, target, runner_config(&resolved.state.value, &public_pem));
    let mut rollout = skiff_steps::deploy::rollout_for(&ir, target, &manifest.spec_digest, group, from);
    rollout.steps = vec![100];
    crate::adopt::apply(&mut rollout, crate::adopt::owned(ledger, service).await?, &mut Vec::new());
    let graph = skiff_steps::deploy::rollback_graph(&rollout).map_err(|e| crate::error::saga(&e))?;
    // The release rolled back to must still verify: a tampered one is refused here.
    skiff_release::verify(ledger, &verifier, service, target).await.map_err(|e| crate::error::release(&e))?;
    let release_facts = crate::policy::verified_release(&manifest);
    let input = crate::policy::input(ctx, &ir, "rollback", provider_name, Some(release_facts), Some(&graph));
    crate::policy::enforce(&rules, &input)?;
    Ok((graph, rollout))
}

/// `skiff reconcile SERVICE --repair`: reconcile, then run the `repair` saga for the
/// drift a step can fix (after the policy check), then reconcile again.
pub(crate) async fn repair(ctx: &Context, service: &str) -> Result<Answer> {
    let (_, resolved) = ctx.resolve()?;
    let (_, ledger) = ctx.ledger()?;
    crate::lookup::service(&ledger, service).await?;
    check_free(ctx, &ledger, service).await?;
    ctx.confirm(&format!("repair drift of {service}"), &format!("skiff reconcile {service} --repair"))?;
    let rules = crate::policy::load(&ctx.cwd.join("skiff.yaml"))?;
    let provider_name = resolved.provider.value.as_str();
    let provider = crate::factory::provider(ctx, &ledger).await?;
    let engine = crate::factory::engine(ctx, &ledger).await;
    let actor = ctx.actor();
    let Some(before) = skiff_steps::reconcile::reconcile(&ledger, provider.as_ref(), service, &actor)
        .await
        .map_err(crate::observe::reconcile_error)?
    else {
        return Err(Envelope::failure(
            Code::LeaseHeld,
            format!("an operation is working on {service}; nothing was repaired"),
        )
        .action("list", format!("skiff saga list --service {service}"), false, Safety::ReadOnly, 0.7)
        .into());
    };
    if before.differences.is_empty() {
        return Ok(Envelope::ok(format!("{service} IN_SYNC; nothing to repair")).data(&before).into());
    }
    let state = ledger
        .read::<ServiceState>(&skiff_state::keys::service_state(service))
        .await
        .map_err(|e| crate::error::state(&e))?
        .unwrap_or_else(|| ServiceState::new(service));
    let (Some(release), Some(digest)) = (state.current_release.clone(), state.spec_digest.clone()) else {
        return Err(Envelope::failure(Code::NotFound, format!("{service} has no current release")).into());
    };
    let ir: ServiceIr = ledger.get_spec(&digest).await.map_err(|e| crate::error::state(&e))?;
    let group = group_name(service, &release);
    // A queue-scaled group is repaired to the size its autoscaler set (what reconcile
    // compared against), not to where a deploy starts it.
    let size = match &ir.capacity.queue {
        Some(_) => before
            .differences
            .iter()
            .find(|d| matches!(d.path.as_str(), "instances.desired" | "instances.running"))
            .and_then(|d| d.desired.as_u64())
            .and_then(|v| u32::try_from(v).ok())
            .unwrap_or(ir.capacity.desired),
        None => ir.capacity.desired,
    };
    let (graph, rest) = skiff_steps::repair::repair_graph(service, &group, size, &before.differences);
    let Some(graph) = graph else {
        let mut env = Envelope::failure(Code::Drifted, format!("{service} DRIFTED; no repair step applies"));
        for d in &rest {
            env = env.fact(format!("{}: desired {}, actual {} — repair: {}", d.path, d.desired, d.actual, d.repair));
        }
        return Err(env.data(&before).into());
    };
    let input = crate::policy::input(ctx, &ir, "repair", provider_name, None, Some(&graph));
    let (_, policy_facts) = crate::policy::enforce(&rules, &input)?;
    let l = Launch {
        graph,
        service: Some(service.to_owned()),
        scope: Some(ServiceScope::service(service)),
        key: Some(format!("repair:{service}:{}", before.checked_at_ms)),
        reason: format!("repair drift of {service}"),
        params: serde_json::json!({"release": release, "drift": before.differences, "policy": policy_facts}),
        audit: ("repair.start".to_owned(), serde_json::json!({"release": release})),
        audit_existing: true,
        release: release.clone(),
    };
    Ok(launch(ctx, &engine, &ledger, l).await?.answer())
}
