//! `skiff repair incident SERVICE` (the `incident-repair` saga): evidence first (the
//! same bundle as `skiff debug collect`, stored), then hypotheses ranked by confidence,
//! each with the facts behind it — an operation whose engine died, a secret changed
//! before instances began to fail, drifted capacity or traffic, security drift with a
//! reversible fix, a crash loop or exhausted error budget after a release, failing
//! instances, a dead database — then a plan of the reversible remediations for the
//! likely ones, checked by policy, run, and verified. Irreversible remediations (a
//! restore, a login disabled) are only recommended.

use serde_json::json;
use skiff_ir::ServiceIr;
use skiff_pluginapi::Provider;
use skiff_saga::{SagaBuilder, ServiceScope};
use skiff_sdk::{Answer, Code, Envelope, Safety};
use skiff_state::Ledger;
use skiff_state::docs::{Difference, MemberHealth, OpStatus, OperationState, RunnerDetail, ServiceState};
use skiff_steps::deploy::group_name;
use skiff_steps::incident::Hypothesis;

use crate::context::Context;
use crate::error::Result;
use crate::pipeline::{Launch, launch};

/// Hypotheses below this confidence are shown, not acted on.
const ACT_AT: f64 = 0.5;
/// A canary's error rate over this (with enough requests) is an exhausted budget.
const ERROR_BUDGET: f64 = 0.05;
/// Requests needed before an error rate means anything.
const MIN_REQUESTS: u64 = 20;
/// How long the verify step waits for the service to be healthy.
const VERIFY_MS: u64 = 120_000;

/// What the plan will do: its steps after the evidence, and the rollback, if any.
struct Plan {
    hypotheses: Vec<Hypothesis>,
    builder: SagaBuilder,
    /// The group verify waits on, and whether the plan rolls back to it.
    group: Option<String>,
    recommended: Vec<(String, String, Safety)>,
}

fn hypothesis(id: &str, summary: String, confidence: f64, facts: Vec<String>, remediation: &str) -> Hypothesis {
    Hypothesis { id: id.to_owned(), summary, confidence, facts, remediation: remediation.to_owned() }
}

/// An operation of the service whose engine died: running or compensating, its lease
/// run out. `Err` when a live operation works on the service.
async fn stuck(ctx: &Context, ledger: &Ledger, state: &ServiceState) -> Result<Option<(String, String)>> {
    let Some(op) = &state.active_operation else { return Ok(None) };
    let Some(st) =
        ledger.read::<OperationState>(&skiff_state::keys::op_state(op)).await.map_err(|e| crate::error::state(&e))?
    else {
        return Ok(None);
    };
    if st.status.is_terminal() {
        return Ok(None);
    }
    let engine = crate::factory::engine_with(ctx, ledger, skiff_sagaapi::Extensions::default());
    let holder = engine.lease_holder(op).await.map_err(|e| crate::error::saga(&e))?;
    let running = matches!(st.status, OpStatus::Running | OpStatus::Compensating);
    match holder {
        None if running => Ok(Some((op.clone(), st.saga.clone()))),
        _ => Err(Envelope::failure(
            Code::LeaseHeld,
            format!(
                "{} {op} is working on {}: no incident repair while it {}",
                st.saga,
                state.service,
                st.status.as_str()
            ),
        )
        .fact(match holder {
            Some((h, _)) => format!("{h} holds its lease"),
            None => format!("it is {}", st.status.as_str()),
        })
        .action("show", format!("skiff saga show {op}"), false, Safety::ReadOnly, 0.8)
        .into()),
    }
}

/// The hypotheses the evidence supports and the remediation steps they call for.
#[expect(clippy::too_many_lines, reason = "one rule per hypothesis, read top to bottom")]
async fn diagnose(
    ctx: &Context,
    ledger: &Ledger,
    provider: &dyn Provider,
    state: &ServiceState,
    ir: &ServiceIr,
    differences: &[Difference],
) -> Result<Plan> {
    let service = &state.service;
    let release = state.current_release.clone().unwrap_or_default();
    let group = group_name(service, &release);
    let size = ir.capacity.desired;
    let mut hs = Vec::new();
    let mut b = SagaBuilder::new("incident-repair");
    let mut recommended = Vec::new();
    let mut verify_group = Some(group.clone());

    // Drift a repair step fixes: capacity, traffic, security.
    let has = |p: &str| differences.iter().any(|d| d.path == p);
    if has("instances.desired") || has("instances.running") {
        let facts = differences
            .iter()
            .filter(|d| d.path.starts_with("instances."))
            .map(|d| format!("{}: desired {}, actual {}", d.path, d.desired, d.actual))
            .collect();
        hs.push(hypothesis(
            "capacity",
            format!("{group} runs fewer instances than it should"),
            0.9,
            facts,
            "scale the group back and wait until they run",
        ));
    }
    if has("traffic.weights") {
        let facts = differences
            .iter()
            .filter(|d| d.path == "traffic.weights")
            .map(|d| format!("weights: desired {}, actual {}", d.desired, d.actual))
            .collect();
        hs.push(hypothesis(
            "traffic",
            format!("the load balancer does not send {service}'s traffic to {group}"),
            0.9,
            facts,
            "put the weights back on the release, read back",
        ));
    }
    let fixable: Vec<&Difference> = differences.iter().filter(|d| d.fix.is_some()).collect();
    if !fixable.is_empty() {
        let facts = fixable.iter().map(|d| format!("{} [{}]", d.path, d.severity.as_str())).collect();
        hs.push(hypothesis(
            "drift",
            format!("{} setting(s) of {service} were changed outside Skiff", fixable.len()),
            0.7,
            facts,
            "revert each with its reversible fix",
        ));
    }
    let (drift_graph, _) = skiff_steps::repair::repair_graph(service, &group, size, differences);

    // Failing instances of the current release, and what they report.
    let running: Vec<String> = provider
        .compute()
        .describe_group(&group)
        .await
        .ok()
        .flatten()
        .map(|g| g.running().iter().map(|i| i.id.clone()).collect())
        .unwrap_or_default();
    let members = ledger.members::<RunnerDetail>(service).await.unwrap_or_default();
    let failing: Vec<&skiff_state::docs::Member<RunnerDetail>> = members
        .iter()
        .filter(|m| running.contains(&m.instance) && (m.detail.crash_loop || m.health == MemberHealth::Unhealthy))
        .collect();
    let failing_ids: Vec<String> = failing.iter().map(|m| m.instance.clone()).collect();
    let mut restart = !failing.is_empty();

    // A secret changed before they began to fail, with its previous value kept.
    let mut secret_cause = None;
    if !failing.is_empty() {
        for reference in ir.secrets.values().map(ToString::to_string) {
            let Some(current) = provider.secrets().version(&reference).await.ok().flatten() else { continue };
            let on_it = failing.iter().filter(|m| m.detail.secrets.get(&reference) == Some(&current)).count();
            let healthy_elsewhere = members.iter().any(|m| {
                m.health == MemberHealth::Healthy && m.detail.secrets.get(&reference).is_some_and(|v| *v != current)
            });
            let name = reference.trim_start_matches("secret://").split('/').next().unwrap_or_default().to_owned();
            let written = ledger
                .read::<skiff_state::docs::SecretRecord>(&skiff_state::keys::secret_record(&name))
                .await
                .ok()
                .flatten()
                .and_then(|r| r.writes.get(&reference).cloned());
            let changed_recently = written.as_ref().is_some_and(|w| failing.iter().any(|m| m.updated_at_ms >= w.at_ms));
            if on_it == 0 || !(healthy_elsewhere || changed_recently) {
                continue;
            }
            let previous = provider.secrets().exists(&format!("{reference}-previous")).await.unwrap_or(false);
            let mut facts =
                vec![format!("{on_it} failing instance(s) read {reference} at {current}, its current version")];
            if healthy_elsewhere {
                facts.push("instances that read an older version are healthy".to_owned());
            }
            if let Some(w) = &written {
                facts.push(format!(
                    "{reference} was last written by {} at {}",
                    w.by,
                    skiff_clock::Utc::from_ms(w.at_ms).rfc3339()
                ));
            }
            if previous {
                facts.push(format!("its previous value is kept at {reference}-previous"));
                hs.push(hypothesis(
                    "secret-change",
                    format!("instances fail since {reference} changed"),
                    0.85,
                    facts,
                    "put the secret back to its previous value, then replace the failing instances",
                ));
                secret_cause = Some(reference.clone());
            } else {
                facts.push("no previous value is kept: a person must set the right one".to_owned());
                hs.push(hypothesis(
                    "secret-change",
                    format!("instances fail since {reference} changed"),
                    0.6,
                    facts,
                    "set the intended value, then repair again",
                ));
                recommended.push((
                    format!("skiff secrets set {reference}"),
                    "set the intended value (from stdin)".to_owned(),
                    Safety::Reversible,
                ));
                restart = false;
            }
            break;
        }
    }

    // A crash loop or an exhausted error budget right after a release: roll back.
    let stats = provider.traffic().stats(&group).await.unwrap_or_default();
    let errors = stats.requests >= MIN_REQUESTS && stats.error_rate() > ERROR_BUDGET;
    let previous = state.previous_stable.clone().filter(|p| *p != release);
    let mut rollback = None;
    if secret_cause.is_none() && (!failing.is_empty() || errors) {
        let mut facts = Vec::new();
        if !failing.is_empty() {
            facts.push(format!(
                "{} of {} instance(s) of {release} fail: {}",
                failing.len(),
                running.len(),
                failing_ids.join(", ")
            ));
        }
        if errors {
            facts.push(format!(
                "{:.1}% of {} requests to {group} failed (budget {:.0}%)",
                stats.error_rate() * 100.0,
                stats.requests,
                ERROR_BUDGET * 100.0
            ));
        }
        match &previous {
            Some(p) => {
                facts.push(format!("{p} was stable before {release}"));
                hs.push(hypothesis(
                    "release",
                    format!("{release} fails where {p} did not"),
                    0.7,
                    facts,
                    "roll back to the previous stable release",
                ));
                rollback = Some(p.clone());
            }
            None => {
                facts.push(format!("no earlier stable release to roll back to; {release} is the only one"));
                hs.push(hypothesis(
                    "crash",
                    format!("instances of {release} fail"),
                    0.5,
                    facts,
                    "replace the failing instances",
                ));
            }
        }
    }

    // A dead dependency: the managed database.
    if let Some(db) = &ir.database {
        let id = skiff_steps::database::current_instance(ledger, &db.name).await.unwrap_or_else(|_| db.name.clone());
        let alive = provider.database().describe(&id).await.ok().flatten().is_some_and(|d| d.status == "available");
        if !alive {
            hs.push(hypothesis(
                "dependency",
                format!("database {} ({id}) is not available", db.name),
                0.6,
                vec![format!("the provider does not report {id} available")],
                "recommended only: restoring is gated by an approval",
            ));
            recommended.push((
                format!("skiff doctor {service}"),
                "see what the database reports".to_owned(),
                Safety::ReadOnly,
            ));
            recommended.push((
                format!("skiff restore database {} --to latest --dry-run", db.name),
                "plan a restore into a new instance (irreversible cutover, approved)".to_owned(),
                Safety::ReadOnly,
            ));
        }
    }
    hs.sort_by(|a, b| b.confidence.total_cmp(&a.confidence));

    // The remediations, in the order that makes sense: secret first, then drift, then
    // replacing what fails, then a rollback.
    if let Some(r) = &secret_cause {
        b = b.step("secret-revert", "incident.secret_revert", json!({"reference": r}));
    }
    if let Some(g) = drift_graph {
        b = b.then(g);
    }
    if let Some(target) = rollback {
        let (g, rollout) = crate::deploy::rollback_plan(ctx, ledger, state, &target).await?;
        verify_group = Some(rollout.group.name.clone());
        b = b.then(g);
    } else if restart {
        b = b.step(
            "restart",
            "incident.restart",
            json!({"service": service, "group": group, "size": size, "instances": failing_ids}),
        );
    }
    Ok(Plan { hypotheses: hs, builder: b, group: verify_group, recommended })
}

/// `skiff repair incident SERVICE [--dry-run]`.
pub(crate) async fn repair(ctx: &Context, service: &str, dry_run: bool) -> Result<Answer> {
    let (_, ledger) = ctx.ledger()?;
    let state = crate::lookup::service(&ledger, service).await?;
    let stuck = stuck(ctx, &ledger, &state).await?;
    if !dry_run {
        ctx.confirm(&format!("repair the incident of {service}"), &format!("skiff repair incident {service}"))?;
    }
    let provider = crate::factory::provider(ctx, &ledger).await?;
    let bundle = crate::evidence::gather(ctx, &ledger, provider.as_ref(), &state).await;
    let differences: Vec<Difference> =
        serde_json::from_value(bundle["reconcile"]["differences"].clone()).unwrap_or_default();
    let ir: ServiceIr = match &state.spec_digest {
        Some(d) => ledger.get_spec(d).await.map_err(|e| crate::error::state(&e))?,
        None => return Err(Envelope::failure(Code::NotFound, format!("{service} has no recorded spec")).into()),
    };
    let mut plan = match &stuck {
        Some((op, saga)) => Plan {
            hypotheses: vec![hypothesis(
                "stuck-operation",
                format!("{saga} {op} stopped when its engine died"),
                0.95,
                vec![format!("{op} is running, and no engine holds its lease")],
                "resume it and run it to its end",
            )],
            builder: SagaBuilder::new("incident-repair").step("resume", "incident.resume", json!({"op": op})),
            // Whatever release serves once it finished.
            group: None,
            recommended: Vec::new(),
        },
        None => diagnose(ctx, &ledger, provider.as_ref(), &state, &ir, &differences).await?,
    };
    let acting: Vec<&Hypothesis> = plan.hypotheses.iter().filter(|h| h.confidence >= ACT_AT).collect();
    let mut facts: Vec<String> = plan
        .hypotheses
        .iter()
        .map(|h| format!("hypothesis {} ({:.0}%): {} → {}", h.id, h.confidence * 100.0, h.summary, h.remediation))
        .collect();
    if acting.is_empty() && plan.recommended.is_empty() {
        return Ok(Envelope::ok(format!("no incident found: {service} looks healthy"))
            .fact("no symptom the incident repair knows: instances healthy, no drift, no stuck operation")
            .action("doctor", format!("skiff doctor {service}"), false, Safety::ReadOnly, 0.5)
            .action("evidence", format!("skiff debug collect {service}"), true, Safety::ReadOnly, 0.4)
            .into());
    }
    // A dry run changes nothing: the evidence is digested, not stored.
    let digest = if dry_run {
        let bytes = serde_json::to_vec_pretty(&bundle).unwrap_or_default();
        facts.push("evidence collected, not stored (dry run)".to_owned());
        hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&bytes))
    } else {
        let c = crate::evidence::store(ctx, &ledger, service, bundle).await?;
        facts.push(format!("evidence kept as {}", skiff_state::keys::blob(&c.digest)));
        c.digest
    };
    let verify = json!({
        "service": service,
        "group": plan.group,
        "size": ir.capacity.desired,
        "serves": ir.network.is_some(),
    });
    let evidence = json!({"service": service, "digest": digest, "hypotheses": plan.hypotheses});
    let graph = SagaBuilder::new("incident-repair")
        .step("evidence", "incident.evidence", evidence)
        .then(
            std::mem::replace(&mut plan.builder, SagaBuilder::new("incident-repair"))
                .build()
                .map_err(|e| crate::error::saga(&e))?,
        )
        .step("verify", "incident.verify", verify)
        .timeout_ms(VERIFY_MS)
        .build()
        .map_err(|e| crate::error::saga(&e))?;
    if dry_run {
        let mut a = crate::saga::planned(
            ctx,
            &graph,
            Some(service),
            &format!("incident repair of {service}"),
            format!("skiff repair incident {service} --yes"),
        )
        .await?;
        a.envelope.facts.extend(facts);
        for (cmd, _, safety) in &plan.recommended {
            a.envelope =
                a.envelope.clone().action("recommended", cmd.clone(), *safety != Safety::ReadOnly, *safety, 0.5);
        }
        return Ok(a);
    }
    let (_, resolved) = ctx.resolve()?;
    let rules = crate::policy::load(&ctx.cwd.join("skiff.yaml"))?;
    let input = crate::policy::input(ctx, &ir, "repair", resolved.provider.value.as_str(), None, Some(&graph));
    let (_, policy_facts) = crate::policy::enforce(&rules, &input)?;
    let engine = crate::factory::engine(ctx, &ledger).await;
    let l = Launch {
        graph,
        service: Some(service.to_owned()),
        // A stuck operation holds the service: the repair resumes it instead of claiming it.
        scope: stuck.is_none().then(|| ServiceScope::service(service)),
        key: Some(format!("incident:{service}:{}", ledger.clock().now_ms())),
        reason: format!("incident repair of {service}"),
        params: json!({
            "hypotheses": plan.hypotheses,
            "evidence": digest,
            "recommended": plan.recommended.iter().map(|(c, why, _)| json!({"command": c, "why": why})).collect::<Vec<_>>(),
            "notes": facts,
            "policy": policy_facts,
        }),
        audit: ("incident.start".to_owned(), json!({"evidence": digest})),
        audit_existing: true,
        release: state.current_release.clone().unwrap_or_default(),
    };
    Ok(launch(ctx, &engine, &ledger, l).await?.answer())
}
