//! `skiff deploy` and `skiff rollback`: resolve everything a rollout needs (release,
//! stable group, thresholds), claim the service, and run the saga in the foreground.

use std::path::Path;
use std::sync::Arc;

use skiff_ir::ServiceIr;
use skiff_pluginapi::{HealthState, Provider, RunnerConfig};
use skiff_saga::{Engine, RunReport, SagaGraph, StepStatus, Submission};
use skiff_sdk::config::{Origin, ProviderKind};
use skiff_sdk::{Code, Envelope, Safety};
use skiff_state::Ledger;
use skiff_state::docs::{OpStatus, ServiceState};
use skiff_steps::deploy::{Rollout, Stable, group_name};

use crate::{Ctx, Outcome};

/// The resolved provider as the capability traits, for steps.
pub(crate) fn provider(ctx: &Ctx, ledger: &Ledger) -> Result<Arc<dyn Provider>, Box<Outcome>> {
    let (_, resolved) = ctx.resolve()?;
    match resolved.provider.value {
        ProviderKind::Local => {
            let dir = super::local::local_dir(ctx)?;
            Ok(Arc::new(skiff_provider_local::LocalProvider::new(dir, ledger.clone())))
        }
        ProviderKind::Aws => Ok(Arc::new(aws_provider(ctx)?)),
        other => Err(Box::new(
            Envelope::failure(Code::ProviderError, format!("the {other:?} provider is not part of this build"))
                .fact("this build runs rollouts on the local and aws providers")
                .action("local", "skiff deploy --provider local --yes", true, Safety::Reversible, 0.5)
                .into(),
        )),
    }
}

/// The AWS provider for the resolved state bucket and region. Credentials come from
/// the usual chain (environment, profile, IMDS); `AWS_ENDPOINT_URL` is honoured.
pub(crate) fn aws_provider(ctx: &Ctx) -> Result<skiff_provider_aws::AwsProvider, Box<Outcome>> {
    let (_, resolved) = ctx.resolve()?;
    let region = resolved.region.map(|r| r.value);
    let failed = |e: skiff_pluginapi::ProviderError| {
        Box::new(Outcome::from(
            Envelope::failure(Code::ProviderError, "cannot use the AWS provider").fact(e.message).action(
                "config",
                "skiff config show",
                false,
                Safety::ReadOnly,
                0.6,
            ),
        ))
    };
    let settings =
        skiff_provider_aws::AwsSettings::from_vars(&resolved.state.value, region, |k| (ctx.env)(k)).map_err(failed)?;
    // Loading the configuration is async; it runs on its own thread so this works
    // both inside and outside a runtime. No request is made until the first call.
    let loaded = std::thread::scope(|s| {
        s.spawn(|| {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| {
                skiff_pluginapi::ProviderError::new(format!("cannot start the async runtime: {e}"), false)
            })?;
            rt.block_on(skiff_provider_aws::AwsProvider::connect(settings))
        })
        .join()
    });
    match loaded {
        Ok(r) => r.map_err(failed),
        Err(_) => Err(failed(skiff_pluginapi::ProviderError::new("loading the AWS configuration panicked", false))),
    }
}

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

/// LEASE_HELD when a live operation other than `except` works on the service.
async fn check_free(
    engine: &Engine,
    service: &str,
    state: &ServiceState,
    except: Option<&str>,
) -> Result<(), Box<Outcome>> {
    let Some(other) = state.active_operation.clone().filter(|o| Some(o.as_str()) != except) else { return Ok(()) };
    let Ok((_, d)) = engine.load(&other).await else { return Ok(()) };
    if d.status.is_terminal() {
        return Ok(());
    }
    Err(Box::new(
        Envelope::failure(Code::LeaseHeld, format!("operation {other} is already working on {service}"))
            .fact(format!("{other} is {}; one operation changes a service at a time", d.status.as_str()))
            .operation(other.clone())
            .action("show", format!("skiff saga show {other}"), false, Safety::ReadOnly, 0.8)
            .action("resume", format!("skiff saga resume {other} --yes"), true, Safety::Reversible, 0.5)
            .action("cancel", format!("skiff saga cancel {other} --yes"), true, Safety::Reversible, 0.4)
            .into(),
    ))
}

/// Marks the service as worked on by `op` in one conditional write, so two deploys
/// racing for it cannot both win; another live operation answers LEASE_HELD.
async fn claim(
    ledger: &Ledger,
    engine: &Engine,
    service: &str,
    op: &str,
    candidate: Option<&str>,
) -> Result<(), Box<Outcome>> {
    let key = skiff_state::keys::service_state(service);
    let fail = |e: skiff_state::StateError| Box::new(super::state_error(&e));
    ledger
        .update::<ServiceState, _>(&key, |cur| {
            Ok(match cur {
                Some(_) => skiff_state::Update::Keep,
                None => skiff_state::Update::Write(ServiceState::new(service)),
            })
        })
        .await
        .map_err(fail)?;
    for _ in 0..50 {
        let Some((cur, version)) = ledger.read_versioned::<ServiceState>(&key).await.map_err(fail)? else { continue };
        check_free(engine, service, &cur, Some(op)).await?;
        let mut next = cur.clone();
        next.active_operation = Some(op.to_owned());
        if let Some(c) = candidate {
            next.candidate_release = Some(c.to_owned());
        }
        if ledger.replace_if_match(&key, &cur, &version, next).await.map_err(fail)?.is_some() {
            return Ok(());
        }
    }
    Err(fail(skiff_state::StateError::Conflict { key, attempts: 50 }))
}

/// Lets go of the service once the operation has ended.
pub(crate) async fn release_claim(ledger: &Ledger, service: &str, op: &str) {
    let key = skiff_state::keys::service_state(service);
    let _ = ledger
        .update::<ServiceState, _>(&key, |cur| match cur {
            Some(s) if s.active_operation.as_deref() == Some(op) => {
                let mut s = s.clone();
                s.active_operation = None;
                Ok(skiff_state::Update::Write(s))
            }
            _ => Ok(skiff_state::Update::Keep),
        })
        .await;
}

/// The signer, creating a key pair on first use of the embedded default.
fn signer_or_generate(
    ctx: &Ctx,
    embedded: bool,
    notes: &mut Vec<String>,
) -> Result<skiff_release::Signer, Box<Outcome>> {
    let private = super::keys::private_key_path(ctx);
    if embedded && !private.exists() {
        super::keys::write_pair(ctx, &private, &super::keys::public_key_path(ctx)).map_err(|e| {
            Box::new(Outcome::from(Envelope::failure(Code::IoError, "cannot write a signing key").fact(e)))
        })?;
        notes.push(format!("generated a signing key pair in {}", private.parent().unwrap_or(Path::new(".")).display()));
    }
    super::release::signer(ctx)
}

fn public_key(ctx: &Ctx) -> Result<String, Box<Outcome>> {
    let path = super::keys::public_key_path(ctx);
    std::fs::read_to_string(&path).map_err(|e| {
        Box::new(
            Envelope::failure(Code::SignatureInvalid, format!("cannot read the public key {}", path.display()))
                .fact(e.to_string())
                .action("keys", "skiff keys generate", true, Safety::Reversible, 0.6)
                .into(),
        )
    })
}

pub(crate) fn deploy(ctx: &Ctx, file: &Path, build: bool) -> Outcome {
    let (shown, spec) = match super::load_spec(ctx, file) {
        Ok(v) => v,
        Err(o) => return *o,
    };
    prepare_and_run(ctx, file, &shown, &spec, build).unwrap_or_else(|o| *o)
}

fn prepare_and_run(
    ctx: &Ctx,
    file: &Path,
    shown: &str,
    spec: &skiff_spec::Spec,
    build: bool,
) -> Result<Outcome, Box<Outcome>> {
    let ir = skiff_ir::compile(spec);
    let (_, resolved) = ctx.resolve()?;
    let embedded = resolved.state.origin == Origin::Default;
    ctx.confirm(&format!("deploy {}", ir.service), &format!("skiff deploy -f {shown}"))?;
    // Invalid policy files, and rules the plan breaks whatever the release, stop the
    // deploy before anything is built, signed or started.
    let rules = super::policy::load(&ctx.cwd.join(file))?;
    let provider_name = resolved.provider.value.as_str();
    let prospective = super::policy::prospective_graph(&ir)?;
    super::policy::enforce(&rules, &super::policy::input(ctx, &ir, "deploy", provider_name, None, Some(&prospective)))?;
    let mut notes = Vec::new();
    let signer = signer_or_generate(ctx, embedded, &mut notes)?;
    let public_pem = public_key(ctx)?;
    let verifier = skiff_release::Verifier::from_pem(public_pem.as_bytes())
        .map_err(|e| Box::new(super::release::release_error(&e)))?;
    if resolved.provider.value == ProviderKind::Local {
        let dir = super::local::local_dir(ctx)?;
        if let (_, true) = super::local::ensure_up(ctx, &dir)? {
            notes.push("started the local supervisor".to_owned());
        }
    }
    let runtime = ctx.runtime()?;
    let (_, ledger) = ctx.ledger()?;
    let provider = provider(ctx, &ledger)?;
    let engine = super::saga::engine(ctx, &ledger);
    let actor = ctx.actor();
    let spec_path = ctx.cwd.join(file);
    let bucket = resolved.state.value.clone();
    runtime.block_on(async move {
        ledger.init(&actor).await.map_err(|e| Box::new(super::state_error(&e)))?;
        let state_key = skiff_state::keys::service_state(&ir.service);
        let before = ledger.read::<ServiceState>(&state_key).await.map_err(|e| Box::new(super::state_error(&e)))?;
        if let Some(st) = &before {
            // Fail before building a release nobody can roll out.
            check_free(&engine, &ir.service, st, None).await?;
        }
        if build && ir.artifact.build.is_some() {
            ctx.progress(&format!("building: {}", ir.artifact.build.as_deref().unwrap_or_default()));
        }
        let input =
            skiff_release::ReleaseInput { spec_path: &spec_path, spec_shown: shown, ir: &ir, actor: &actor, build };
        let created = skiff_release::create(&ledger, &signer, &input)
            .await
            .map_err(|e| Box::new(super::release::release_error(&e)))?;
        let m = created.manifest;
        ctx.progress(&format!("release {} {} signed", m.service, m.release));
        skiff_release::verify(&ledger, &verifier, &m.service, &m.release)
            .await
            .map_err(|e| Box::new(super::release::release_error(&e)))?;
        let release_facts = super::policy::verified_release(&m);
        let stable = match before.as_ref().and_then(|s| s.stable_release.clone()) {
            Some(r) => serving(provider.as_ref(), &ledger, &ir.service, &r).await,
            None => None,
        };
        if let Some(r) = before.as_ref().and_then(|s| s.stable_release.clone())
            && !stable.as_ref().is_some_and(|s| s.serving)
        {
            notes.push(format!("stable release {r} is not running: the new release takes all traffic at once"));
        }
        let group = skiff_steps::deploy::group_spec(&ir, &m.release, runner_config(&bucket, &public_pem));
        let rollout = skiff_steps::deploy::rollout_for(&ir, &m.release, &m.spec_digest, group, stable);
        let graph = skiff_steps::deploy::deploy_graph(&rollout).map_err(|e| Box::new(super::saga::saga_error(&e)))?;
        let input = super::policy::input(ctx, &ir, "deploy", provider_name, Some(release_facts), Some(&graph));
        notes.extend(super::policy::enforce(&rules, &input)?.1);
        let key = format!("deploy:{}:{}", ir.service, m.release);
        let outcome = run_rollout(ctx, &engine, &ledger, graph, &rollout, &key, &actor, "deploy").await?;
        Ok(add_notes(outcome, &notes))
    })
}

fn add_notes(mut o: Outcome, notes: &[String]) -> Outcome {
    if o.envelope.ok {
        o.envelope.facts.extend(notes.iter().cloned());
    }
    o
}

#[allow(clippy::too_many_arguments, reason = "one call site per saga kind; a struct would only rename them")]
async fn run_rollout(
    ctx: &Ctx,
    engine: &Engine,
    ledger: &Ledger,
    graph: SagaGraph,
    rollout: &Rollout,
    key: &str,
    actor: &str,
    saga: &str,
) -> Result<Outcome, Box<Outcome>> {
    let op = Engine::op_id_for(saga, key);
    let candidate = (saga == "deploy").then_some(rollout.release.as_str());
    claim(ledger, engine, &rollout.service, &op, candidate).await?;
    let params = serde_json::json!({"release": rollout.release, "stable": rollout.stable.as_ref().map(|s| &s.release)});
    let submitted = engine
        .submit(Submission {
            graph,
            service: Some(rollout.service.clone()),
            actor: actor.to_owned(),
            reason: format!("{saga} {} {}", rollout.service, rollout.release),
            idempotency_key: Some(key.to_owned()),
            params,
        })
        .await
        .map_err(|e| Box::new(super::saga::saga_error(&e)))?;
    let _ = ledger
        .audit(actor, &format!("{saga}.start"), &op, Code::Ok, serde_json::json!({"release": rollout.release}))
        .await;
    if ctx.detach {
        return Ok(submitted_outcome(saga, &rollout.service, &rollout.release, &op, submitted.plan.steps.len()));
    }
    ctx.progress(&format!("operation {op}: {} steps", submitted.plan.steps.len()));
    let report = engine.run(&op).await.map_err(|e| Box::new(super::saga::saga_error(&e)))?;
    if report.status.is_terminal() {
        release_claim(ledger, &rollout.service, &op).await;
    }
    let stable_healthy = match rollout.stable.as_ref().and_then(|s| s.target_group.as_ref()) {
        Some(tg) if report.status == OpStatus::Compensated => {
            let provider = super::deploy::provider(ctx, ledger).ok();
            let health = match provider {
                Some(p) => p.traffic().target_health(tg).await.unwrap_or_default(),
                None => Vec::new(),
            };
            Some(!health.is_empty() && health.iter().all(|t| t.state == HealthState::Healthy))
        }
        _ => None,
    };
    Ok(rollout_outcome(saga, &report, rollout, &submitted.idempotency_key, stable_healthy))
}

/// The answer for an operation submitted for a worker to run.
pub(crate) fn submitted_outcome(saga: &str, service: &str, release: &str, op: &str, steps: usize) -> Outcome {
    let what: Vec<&str> = [service, release].into_iter().filter(|s| !s.is_empty()).collect();
    let of = if what.is_empty() { String::new() } else { format!(" of {}", what.join(" ")) };
    Envelope::ok(format!("{saga}{of} submitted as {op}"))
        .fact(format!(
            "{}; a skiff-worker claims it through its lease and runs it",
            super::plural(steps as u64, "step")
        ))
        .operation(op.to_owned())
        .data(
            serde_json::json!({"op_id": op, "saga": saga, "service": service, "release": release, "status": "planned"}),
        )
        .action("follow", format!("skiff saga events {op} --follow"), false, Safety::ReadOnly, 0.8)
        .action("show", format!("skiff saga show {op}"), false, Safety::ReadOnly, 0.5)
        .into()
}

/// The highest weight the canary reached.
fn reached(report: &RunReport) -> Option<u32> {
    report
        .plan
        .steps
        .iter()
        .filter(|s| s.kind == "deploy.shift")
        .filter(|s| {
            let r = report.detail.step(&s.id);
            r.attempts > 0 && r.status != StepStatus::Pending
        })
        .filter_map(|s| s.id.strip_prefix("shift-").and_then(|w| w.parse().ok()))
        .max()
}

fn rollout_outcome(saga: &str, report: &RunReport, r: &Rollout, key: &str, stable_healthy: Option<bool>) -> Outcome {
    let op = &report.op_id;
    let d = &report.detail;
    let data = |status: &str| {
        serde_json::json!({
            "op_id": op, "service": r.service, "release": r.release, "status": status,
            "stable": r.stable.as_ref().map(|s| &s.release),
            "url": r.traffic.as_ref().map(|t| format!("http://127.0.0.1:{}/", t.listener_port)),
            "steps": report.plan.steps.iter().map(|s| {
                let rec = d.step(&s.id);
                serde_json::json!({"id": s.id, "status": rec.status, "summary": rec.summary, "error": rec.error})
            }).collect::<Vec<_>>(),
        })
    };
    let verb = if saga == "rollback" { "rolled back" } else { "deployed" };
    match report.status {
        OpStatus::Succeeded => {
            let mut env = Envelope::ok(format!("{verb} {} {}", r.service, r.release)).operation(op.clone());
            if let Some(t) = &r.traffic {
                env = env.fact(format!("serving at http://127.0.0.1:{}/", t.listener_port));
            }
            env = env.fact(format!("{} instances of {} healthy", r.group.desired, r.release));
            for s in &report.plan.steps {
                if s.kind == "deploy.analyse"
                    && let Some(sum) = &d.step(&s.id).summary
                {
                    env = env.fact(sum.clone());
                }
            }
            if let Some(s) = &r.stable {
                env = env.fact(format!(
                    "previous release {} retired; `skiff rollback {}` brings it back",
                    s.release, r.service
                ));
            }
            env.data(data("succeeded"))
                .action("status", format!("skiff status {}", r.service), false, Safety::ReadOnly, 0.7)
                .action("logs", format!("skiff logs {}", r.service), false, Safety::ReadOnly, 0.4)
                .into()
        }
        OpStatus::Compensated if d.failure.as_ref().is_some_and(|f| f.code == "CANARY_FAILED") => {
            let f = d.failure.as_ref().expect("checked above");
            let shifted = reached(report);
            let at = shifted.map_or_else(|| "before any traffic shifted".to_owned(), |w| format!("at {w}%"));
            let mut facts = vec![format!("rollout stopped {at}")];
            facts.extend(f.facts.iter().filter(|x| !x.starts_with("rollout stopped")).cloned());
            match &r.stable {
                Some(s) => {
                    let verb = if shifted.is_some() { "is back" } else { "stayed" };
                    facts.push(format!("traffic {verb} on {}", s.release));
                    facts.push(match stable_healthy {
                        Some(false) => "previous stable release is NOT fully healthy: check `skiff status`".to_owned(),
                        _ => "previous stable release is healthy".to_owned(),
                    });
                }
                None => facts.push("there was no stable release; the new group was removed".to_owned()),
            }
            let mut env = Envelope::failure(Code::CanaryFailed, f.message.clone())
                .facts(facts)
                .data(data("compensated"))
                .action(
                    "rollback",
                    format!(
                        "skiff saga start rollback --service {} --to previous-stable --yes --format json",
                        r.service
                    ),
                    true,
                    Safety::Reversible,
                    0.91,
                )
                .operation(op.clone());
            env.idempotency_key = Some(key.to_owned());
            env.into()
        }
        OpStatus::Paused if d.held.is_some() => {
            let h = d.held.as_ref().expect("checked above");
            let at = reached(report).map_or_else(String::new, |w| format!(" at {w}%"));
            let code = h.code.parse::<Code>().unwrap_or(Code::AnalysisInconclusive);
            Envelope::failure(code, format!("canary analysis was inconclusive; the rollout paused{at}"))
                .fact(h.message.clone())
                .facts(h.facts.clone())
                .data(data("paused"))
                .operation(op.clone())
                .action("resume", format!("skiff saga resume {op} --yes"), true, Safety::Reversible, 0.7)
                .action("cancel", format!("skiff saga cancel {op} --yes"), true, Safety::Reversible, 0.4)
                .into()
        }
        _ => super::saga::report_outcome(report, Some(key)),
    }
}

/// `skiff deploy --watch`: follows the service's running operation to its end.
pub(crate) fn watch(ctx: &Ctx, file: &Path) -> Outcome {
    let (_, spec) = match super::load_spec(ctx, file) {
        Ok(v) => v,
        Err(o) => return *o,
    };
    let service = spec.service.to_string();
    let active = super::with_ledger(ctx, |ledger, _| async move {
        ledger.read::<ServiceState>(&skiff_state::keys::service_state(&service)).await.map(|s| (service, s))
    });
    match active {
        Err(o) => *o,
        Ok(Err(e)) => super::state_error(&e),
        Ok(Ok((_, Some(ServiceState { active_operation: Some(op), .. })))) => super::events::run(ctx, &op, true, 0),
        Ok(Ok((service, _))) => Envelope::failure(Code::NotFound, format!("no operation is running for {service}"))
            .action("deploy", format!("skiff deploy -f {} --yes", file.display()), true, Safety::Reversible, 0.6)
            .action("status", format!("skiff status {service}"), false, Safety::ReadOnly, 0.5)
            .into(),
    }
}

pub(crate) fn rollback(ctx: &Ctx, service: &str, to: &str) -> Outcome {
    rollback_inner(ctx, service, to).unwrap_or_else(|o| *o)
}

fn rollback_inner(ctx: &Ctx, service: &str, to: &str) -> Result<Outcome, Box<Outcome>> {
    ctx.confirm(&format!("roll {service} back to {to}"), &format!("skiff rollback {service} --to {to}"))?;
    let (_, resolved) = ctx.resolve()?;
    let public_pem = public_key(ctx)?;
    if resolved.provider.value == ProviderKind::Local {
        super::local::ensure_up(ctx, &super::local::local_dir(ctx)?)?;
    }
    // No spec file here: the rules are the built-in ones plus ./policies.
    let rules = super::policy::load(&ctx.cwd.join("skiff.yaml"))?;
    let verifier = skiff_release::Verifier::from_pem(public_pem.as_bytes())
        .map_err(|e| Box::new(super::release::release_error(&e)))?;
    let provider_name = resolved.provider.value.as_str();
    let runtime = ctx.runtime()?;
    let (_, ledger) = ctx.ledger()?;
    let provider = provider(ctx, &ledger)?;
    let engine = super::saga::engine(ctx, &ledger);
    let actor = ctx.actor();
    let bucket = resolved.state.value.clone();
    runtime.block_on(async move {
        let not_found = |why: String| {
            Box::new(Outcome::from(Envelope::failure(Code::NotFound, why).action(
                "releases",
                format!("skiff release list {service}"),
                false,
                Safety::ReadOnly,
                0.7,
            )))
        };
        let state = ledger
            .read::<ServiceState>(&skiff_state::keys::service_state(service))
            .await
            .map_err(|e| Box::new(super::state_error(&e)))?
            .ok_or_else(|| not_found(format!("{service} has never been deployed")))?;
        let target = if to == "previous-stable" {
            let last_failed = state.candidate_release.is_some();
            let t = if last_failed { state.stable_release.clone() } else { state.previous_stable.clone() };
            t.ok_or_else(|| not_found(format!("{service} has no previous stable release")))?
        } else {
            to.to_owned()
        };
        let manifest = ledger
            .read::<skiff_release::ReleaseManifest>(&skiff_state::keys::release(service, &target))
            .await
            .map_err(|e| Box::new(super::state_error(&e)))?
            .ok_or_else(|| not_found(format!("{service} has no release {target}")))?;
        let ir: ServiceIr =
            ledger.get_spec(&manifest.spec_digest).await.map_err(|e| Box::new(super::state_error(&e)))?;
        // Move away from whatever serves now: a failed candidate's group first, else the current release.
        let mut from = None;
        for r in [state.candidate_release.clone(), state.current_release.clone()].into_iter().flatten() {
            if r != target
                && let Some(s) = serving(provider.as_ref(), &ledger, service, &r).await
                && s.serving
            {
                from = Some(s);
                break;
            }
        }
        let group = skiff_steps::deploy::group_spec(&ir, &target, runner_config(&bucket, &public_pem));
        let mut rollout = skiff_steps::deploy::rollout_for(&ir, &target, &manifest.spec_digest, group, from);
        rollout.steps = vec![100];
        let graph = skiff_steps::deploy::rollback_graph(&rollout).map_err(|e| Box::new(super::saga::saga_error(&e)))?;
        // The release rolled back to must still verify: a tampered one is refused here.
        skiff_release::verify(&ledger, &verifier, service, &target)
            .await
            .map_err(|e| Box::new(super::release::release_error(&e)))?;
        let release_facts = super::policy::verified_release(&manifest);
        let input = super::policy::input(ctx, &ir, "rollback", provider_name, Some(release_facts), Some(&graph));
        super::policy::enforce(&rules, &input)?;
        let key = format!("rollback:{service}:{target}:{}", ledger.clock().now_ms());
        run_rollout(ctx, &engine, &ledger, graph, &rollout, &key, &actor, "rollback").await
    })
}

/// `skiff reconcile SERVICE --repair`: reconcile, then run the `repair` saga for the
/// drift a step can fix (after the policy check), then reconcile again.
pub(crate) fn repair(ctx: &Ctx, service: &str) -> Outcome {
    repair_inner(ctx, service).unwrap_or_else(|o| *o)
}

fn repair_inner(ctx: &Ctx, service: &str) -> Result<Outcome, Box<Outcome>> {
    ctx.confirm(&format!("repair drift of {service}"), &format!("skiff reconcile {service} --repair"))?;
    let (_, resolved) = ctx.resolve()?;
    let rules = super::policy::load(&ctx.cwd.join("skiff.yaml"))?;
    let provider_name = resolved.provider.value.as_str();
    let runtime = ctx.runtime()?;
    let (_, ledger) = ctx.ledger()?;
    let provider = provider(ctx, &ledger)?;
    let engine = super::saga::engine(ctx, &ledger);
    let actor = ctx.actor();
    runtime.block_on(async move {
        let failed = |e: skiff_steps::reconcile::ReconcileError| match e {
            skiff_steps::reconcile::ReconcileError::State(e) => Box::new(super::state_error(&e)),
            other => Box::new(Outcome::from(Envelope::failure(Code::ProviderError, other.to_string()))),
        };
        let Some(before) =
            skiff_steps::reconcile::reconcile(&ledger, provider.as_ref(), service, &actor).await.map_err(failed)?
        else {
            return Err(Box::new(
                Envelope::failure(
                    Code::LeaseHeld,
                    format!("an operation is working on {service}; nothing was repaired"),
                )
                .action("list", format!("skiff saga list --service {service}"), false, Safety::ReadOnly, 0.7)
                .into(),
            ));
        };
        if before.differences.is_empty() {
            return Ok(Envelope::ok(format!("{service} IN_SYNC; nothing to repair")).data(&before).into());
        }
        let state = ledger
            .read::<ServiceState>(&skiff_state::keys::service_state(service))
            .await
            .map_err(|e| Box::new(super::state_error(&e)))?
            .unwrap_or_else(|| ServiceState::new(service));
        let (Some(release), Some(digest)) = (state.current_release.clone(), state.spec_digest.clone()) else {
            return Err(Box::new(
                Envelope::failure(Code::NotFound, format!("{service} has no current release")).into(),
            ));
        };
        let ir: ServiceIr = ledger.get_spec(&digest).await.map_err(|e| Box::new(super::state_error(&e)))?;
        let group = group_name(service, &release);
        let (graph, rest) =
            skiff_steps::repair::repair_graph(service, &group, ir.capacity.desired, &before.differences);
        let Some(graph) = graph else {
            let mut env = Envelope::failure(Code::Drifted, format!("{service} DRIFTED; no repair step applies"));
            for d in &rest {
                env =
                    env.fact(format!("{}: desired {}, actual {} — repair: {}", d.path, d.desired, d.actual, d.repair));
            }
            return Err(Box::new(env.data(&before).into()));
        };
        let input = super::policy::input(ctx, &ir, "repair", provider_name, None, Some(&graph));
        let (_, policy_facts) = super::policy::enforce(&rules, &input)?;
        let key = format!("repair:{service}:{}", before.checked_at_ms);
        let op = Engine::op_id_for("repair", &key);
        claim(&ledger, &engine, service, &op, None).await?;
        let submitted = engine
            .submit(Submission {
                graph,
                service: Some(service.to_owned()),
                actor: actor.clone(),
                reason: format!("repair drift of {service}"),
                idempotency_key: Some(key),
                params: serde_json::json!({"release": release}),
            })
            .await
            .map_err(|e| Box::new(super::saga::saga_error(&e)))?;
        let _ = ledger.audit(&actor, "repair.start", &op, Code::Ok, serde_json::json!({"release": release})).await;
        if ctx.detach {
            return Ok(submitted_outcome("repair", service, &release, &op, submitted.plan.steps.len()));
        }
        ctx.progress(&format!("operation {op}: {} steps", submitted.plan.steps.len()));
        let report = engine.run(&op).await.map_err(|e| Box::new(super::saga::saga_error(&e)))?;
        if report.status.is_terminal() {
            release_claim(&ledger, service, &op).await;
        }
        if report.status != OpStatus::Succeeded {
            return Err(Box::new(
                Envelope::failure(
                    Code::OperationFailed,
                    format!("repair of {service} ended {}", report.status.as_str()),
                )
                .operation(op.clone())
                .action("show", format!("skiff saga show {op}"), false, Safety::ReadOnly, 0.8)
                .into(),
            ));
        }
        let after = skiff_steps::reconcile::reconcile(&ledger, provider.as_ref(), service, &actor)
            .await
            .map_err(failed)?
            .unwrap_or(before.clone());
        let mut env = if after.differences.is_empty() {
            Envelope::ok(format!("repaired {service}: IN_SYNC"))
        } else {
            Envelope::failure(Code::Drifted, format!("repaired what a step can; {service} is still DRIFTED"))
        };
        for d in &before.differences {
            if !after.differences.iter().any(|a| a.path == d.path) {
                env = env.fact(format!("repaired {}: now {}", d.path, d.desired));
            }
        }
        for d in &after.differences {
            env = env.fact(format!("{}: desired {}, actual {} — repair: {}", d.path, d.desired, d.actual, d.repair));
        }
        Ok(env.facts(policy_facts).operation(op).data(&after).into())
    })
}
