//! `skiff plan`: what a spec compiles to (decisions with reasons, resources) and what
//! would change. Read-only and deterministic.

use std::fmt::Write as _;
use std::path::Path;

use skiff_compiler::{Compiled, PlanDiff, Resource, ResourcePlan, ResourceSpec};
use skiff_ir::ServiceIr;
use skiff_sdk::{Answer, Envelope, RiskLevel, Safety};

use crate::context::Context;
use crate::error::{Result, plural};

/// `skiff plan -f FILE`.
pub(crate) async fn run(ctx: &Context, file: &Path) -> Result<Answer> {
    let (shown, spec) = crate::spec::load(ctx, file).await?;
    let Compiled { ir, plan } = skiff_compiler::compile(&spec);
    let (_, ledger) = ctx.ledger()?;
    let recorded = ledger.recorded(&ir.service).await.map_err(|e| crate::error::state(&e))?;
    let current_release = recorded.as_ref().and_then(|(s, _)| s.current_release.clone());
    let recorded_ir = recorded.and_then(|(_, ir)| ir);
    let before = match &recorded_ir {
        Some(old) => skiff_compiler::plan(old),
        None => ResourcePlan { resources: Vec::new(), ..plan.clone() },
    };
    let diff = skiff_compiler::diff_plans(&before, &plan);
    let (risk, reasons) = risk(recorded_ir.as_ref().map(|_| &before), &diff);
    let against = recorded_ir
        .as_ref()
        .map(|old| serde_json::json!({ "spec_digest": old.digest(), "current_release": current_release }));
    let context = match &recorded_ir {
        Some(old) if diff.is_empty() && old.digest() == ir.digest() => {
            format!("matches the recorded spec {}", &old.digest()[..12])
        }
        Some(old) if diff.is_empty() => format!(
            "the same resources as the recorded spec {}; what the next release runs differs (a deploy rolls it out)",
            &old.digest()[..12]
        ),
        Some(old) => format!("compared with the recorded spec {}", &old.digest()[..12]),
        None => "nothing recorded for this service yet: every resource is new".to_owned(),
    };
    let cost = skiff_cost::estimate(&ir);
    let cost_before = recorded_ir.as_ref().map(skiff_cost::estimate);
    let cost_change = cost.monthly_usd - cost_before.as_ref().map_or(0.0, |b| b.monthly_usd);
    let cost_fact = format!(
        "cost ≈ {}/month on aws ({} against {}); `skiff cost explain` shows each resource",
        crate::cost::usd(cost.monthly_usd),
        crate::cost::delta(cost_change),
        if cost_before.is_some() { "the recorded spec" } else { "nothing yet" }
    );
    let ownership: Option<skiff_state::docs::OwnershipDoc> =
        ledger.read(&skiff_state::keys::service_ownership(&ir.service)).await.map_err(|e| crate::error::state(&e))?;
    let owned = ownership.as_ref().map(skiff_state::docs::OwnershipDoc::terraform_owned).unwrap_or_default();
    let mut env = Envelope::ok(format!(
        "plan for {} `{}`: {} resources, {}",
        ir.workload,
        ir.service,
        plan.resources.len(),
        counts(&diff)
    ))
    .facts(facts(&ir))
    .facts(migration_notes(&ir, current_release.as_deref()))
    .fact(context)
    .fact(cost_fact)
    .data(serde_json::json!({
        "file": shown,
        "service": ir.service,
        "ir_digest": ir.digest(),
        "decision": ir.decision,
        "resources": plan.resources,
        "cost": {
            "monthly_usd": cost.monthly_usd,
            "at_max_usd": cost.at_max_usd,
            "before_monthly_usd": cost_before.as_ref().map(|b| b.monthly_usd),
            "delta_usd": (cost_change * 100.0).round() / 100.0,
        },
        "diff": {
            "against": against,
            "add": diff.add,
            "change": diff.change,
            "remove": diff.remove,
            "changes": diff.changes,
        },
    }))
    .risk(risk, reasons)
    .action("validate", format!("skiff validate -f {shown}"), false, Safety::ReadOnly, 0.4);
    if let Some(o) = &ownership {
        env = env.fact(format!(
            "Terraform owns {} (adopted from {}): a deploy reads them and never changes them; the rest is Skiff's",
            owned.join(", "),
            o.source
        ));
        if let Some(d) = env.data.as_object_mut() {
            let owners: serde_json::Map<String, serde_json::Value> = plan
                .resources
                .iter()
                .map(|r| {
                    let who = if owned.contains(&r.id) { "terraform-owned" } else { "skiff-owned" };
                    (r.id.clone(), serde_json::json!(who))
                })
                .collect();
            d.insert("ownership".to_owned(), serde_json::Value::Object(owners));
        }
    }
    Ok(Answer::from(env).body(body(&ir, &plan, &diff, &owned)))
}

/// What a release's migration means for the releases around it (expand/contract).
pub(crate) fn migration_notes(ir: &skiff_ir::ServiceIr, previous: Option<&str>) -> Vec<String> {
    let Some(m) = ir.database.as_ref().and_then(|d| d.migrations.as_ref()) else { return Vec::new() };
    let mut out = Vec::new();
    match (m.phase, previous) {
        (skiff_spec::MigrationPhase::BeforeCanary, Some(p)) => out.push(format!(
            "warning: the migration runs before the canary, so release {p} keeps serving against the new schema until it is retired — expand only (add, never drop or rename); contract in a later release with `phase: after_promote`"
        )),
        (skiff_spec::MigrationPhase::BeforeCanary, None) => {
            out.push("the migration runs before the first instances take traffic".to_owned());
        }
        (skiff_spec::MigrationPhase::AfterPromote, _) => out.push(
            "the migration runs after promotion: until it finishes the new release serves against the old schema"
                .to_owned(),
        ),
    }
    if m.down.is_none() {
        out.push(
            "the migration has no `down`, so it is irreversible: the deploy waits for approval before running it, and a failed rollout leaves the schema changed"
                .to_owned(),
        );
    }
    out
}

pub(crate) fn facts(ir: &ServiceIr) -> Vec<String> {
    let a = &ir.decision.availability_plan;
    let c = &ir.decision.cost_plan;
    vec![
        format!(
            "availability {} ({}): {} over {}{}",
            a.level,
            source(a.source),
            plural(a.instances, "instance"),
            plural(a.zones, "zone"),
            if a.multi_az_database { ", multi-AZ database" } else { "" }
        ),
        format!(
            "cost {} ({}): {}{}",
            c.level,
            source(c.source),
            c.instance_type,
            if c.spot { " on spot" } else { " on-demand" }
        ),
    ]
}

fn source(s: skiff_ir::Source) -> &'static str {
    match s {
        skiff_ir::Source::Explicit => "explicit",
        skiff_ir::Source::Intent => "intent",
        skiff_ir::Source::Default => "default",
    }
}

fn counts(d: &PlanDiff) -> String {
    format!("{} to add, {} to change, {} to remove", d.add, d.change, d.remove)
}

/// Risk of applying `diff`: removing or changing a database is high, changing how
/// instances run is medium, additions alone are low, nothing is none.
pub(crate) fn risk(_before: Option<&ResourcePlan>, diff: &PlanDiff) -> (RiskLevel, Vec<String>) {
    if diff.is_empty() {
        return (RiskLevel::None, vec!["no changes".to_owned()]);
    }
    let touches = |prefixes: &[&str]| {
        diff.changes.iter().any(|c| {
            c.op != skiff_compiler::Op::Add
                && c.resource.as_deref().is_some_and(|r| prefixes.iter().any(|p| r.starts_with(p)))
        })
    };
    let mut reasons = Vec::new();
    let mut level = RiskLevel::Low;
    if touches(&["database/"]) {
        level = RiskLevel::High;
        reasons.push("changes or removes a database".to_owned());
    }
    if touches(&["instance-group/", "launch-config/", "lb-rule/"]) {
        level = level.max(RiskLevel::Medium);
        reasons.push("changes how instances run or receive traffic".to_owned());
    }
    if level == RiskLevel::Low {
        reasons.push(if diff.change + diff.remove == 0 {
            "only additions".to_owned()
        } else {
            "routine changes".to_owned()
        });
    }
    (level, reasons)
}

fn body(ir: &ServiceIr, plan: &ResourcePlan, diff: &PlanDiff, owned: &[String]) -> String {
    let mut out = String::from("Decision\n");
    let a = &ir.decision.availability_plan;
    let c = &ir.decision.cost_plan;
    let _ = writeln!(
        out,
        "  availability {} ({}): {} over {}",
        a.level,
        source(a.source),
        plural(a.instances, "instance"),
        plural(a.zones, "zone")
    );
    for r in &a.reasons {
        let _ = writeln!(out, "    · {r}");
    }
    let _ = writeln!(
        out,
        "  cost {} ({}): {}{}",
        c.level,
        source(c.source),
        c.instance_type,
        if c.spot { ", spot" } else { ", on-demand" }
    );
    for r in &c.reasons {
        let _ = writeln!(out, "    · {r}");
    }
    let _ = writeln!(out, "\nResources ({})", plan.resources.len());
    let width = plan.resources.iter().map(|r| r.id.len()).max().unwrap_or(0);
    for r in &plan.resources {
        let who = if owned.contains(&r.id) { "  [terraform-owned]" } else { "" };
        let _ = writeln!(out, "  {:width$}  {}{who}", r.id, describe(r));
    }
    if let Some(m) = ir.database.as_ref().and_then(|d| d.migrations.as_ref()) {
        let _ = writeln!(
            out,
            "\nMigration ({}, {})\n  `{}` from the new release's artifact, once, timeout {}",
            match m.phase {
                skiff_spec::MigrationPhase::BeforeCanary => "before the canary",
                skiff_spec::MigrationPhase::AfterPromote => "after promotion",
            },
            if m.down.is_some() { "reversible" } else { "irreversible" },
            m.command.join(" "),
            m.timeout
        );
        if let Some(d) = &m.down {
            let _ = writeln!(out, "  undone by `{}` when the rollout fails", d.join(" "));
        }
    }
    let _ = writeln!(out, "\nChanges: {}", counts(diff));
    for change in diff.changes.iter().filter(|c| c.op != skiff_compiler::Op::Add || !c.path.is_empty()) {
        let _ = writeln!(out, "  {change}");
    }
    out
}

/// One line saying what a resource is.
fn describe(r: &Resource) -> String {
    match &r.spec {
        ResourceSpec::InstanceGroup { name_template, min, max, desired, zones, spot, .. } => format!(
            "{} (min {min}, max {max}) over {}{}; one group per release: {name_template}",
            plural(*desired, "instance"),
            zones.join(", "),
            if *spot { ", spot" } else { "" }
        ),
        ResourceSpec::LaunchConfig { instance_type, command, port, secret_env, .. } => format!(
            "{instance_type} runs `{}`{}{}; no ssh",
            command.join(" "),
            port.map(|p| format!(" on port {p}")).unwrap_or_default(),
            if secret_env.is_empty() {
                String::new()
            } else {
                format!(", {}", plural(secret_env.len() as u64, "secret reference"))
            }
        ),
        ResourceSpec::TargetGroup { port, health_path, interval, .. } => {
            format!("port {port}, health GET {health_path} every {interval}")
        }
        ResourceSpec::LoadBalancerRule { listener_port, canary_steps, .. } => format!(
            "listener :{listener_port} → release weights {}",
            canary_steps.iter().map(|s| format!("{s}%")).collect::<Vec<_>>().join(" → ")
        ),
        ResourceSpec::Role { name, .. } => format!("role {name}"),
        ResourceSpec::Policy { statements, .. } => format!(
            "least privilege: {}",
            statements.iter().map(|s| format!("{} {}", s.action, s.resource)).collect::<Vec<_>>().join(", ")
        ),
        ResourceSpec::LogGroup { name, retention } => format!("{name}, kept {retention}"),
        ResourceSpec::SecretReference { env, reference, replica_regions } if !replica_regions.is_empty() => {
            format!("{env} ← {reference} (resolved on the instance; replicated to {})", replica_regions.join(", "))
        }
        ResourceSpec::SecretReference { env, reference, .. } => {
            format!("{env} ← {reference} (resolved on the instance)")
        }
        ResourceSpec::Database { engine, version, instance_class, storage_gib, multi_az, backup_retention, .. } => {
            format!(
                "{engine} {version} on {instance_class}, {storage_gib} GiB, {}, backups kept {backup_retention}",
                if *multi_az { "multi-AZ" } else { "single zone" }
            )
        }
        ResourceSpec::DatabaseReplica { source, region, instance_class, storage_gib, .. } => format!(
            "streaming replica of {source} in {region} on {instance_class}, {storage_gib} GiB; \
             `skiff failover stack` promotes it (irreversible)"
        ),
        ResourceSpec::TrafficFront { regions, initial_region, health_path } => format!(
            "global traffic across {}: 100% to {initial_region} (a region without a healthy GET {health_path} gets none);              `skiff failover stack` shifts it 10% → 50% → 100%",
            regions.join(", ")
        ),
        _ => r.spec.type_name().to_owned(),
    }
}
