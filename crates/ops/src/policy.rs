//! Guardrails: `skiff policy check`, and the check every deploy and rollback runs
//! before anything mutates. Rules are skiff-policy's built-ins plus `policies/*.rego`
//! and `policies/limits.json` beside the spec.

use std::fmt::Write as _;
use std::path::Path;

use skiff_ir::ServiceIr;
use skiff_policy::{Actor, Ingress, Instances, PlanInput, Policy, ReleaseFacts, Report, StepFacts, Verdict};
use skiff_saga::SagaGraph;
use skiff_sdk::{Answer, Code, Envelope, Safety};

use crate::context::Context;
use crate::error::{Error, Result};

/// The policies beside `spec_path` (its directory's `policies/`).
pub(crate) fn load(spec_path: &Path) -> Result<Policy> {
    let dir = spec_path.parent().unwrap_or(Path::new(".")).join(skiff_policy::POLICY_DIR);
    Policy::load(&dir).map_err(|e| {
        Error::from(
            Envelope::failure(Code::SpecInvalid, "a policy file is invalid; nothing was checked or changed")
                .fact(e.to_string())
                .action("check", "skiff policy check", false, Safety::ReadOnly, 0.6),
        )
    })
}

/// What policies know of a release whose signature and digests just verified.
pub(crate) fn verified_release(m: &skiff_release::ReleaseManifest) -> ReleaseFacts {
    ReleaseFacts { id: m.release.clone(), signature_verified: true, artifact_digest: Some(m.artifact.digest.clone()) }
}

/// The plan as policies see it.
pub(crate) fn input(
    ctx: &Context,
    ir: &ServiceIr,
    action: &str,
    provider: &str,
    release: Option<ReleaseFacts>,
    graph: Option<&SagaGraph>,
) -> PlanInput {
    let plan = skiff_compiler::plan(ir);
    let ingress = plan
        .resources
        .iter()
        .filter_map(|r| match &r.spec {
            skiff_compiler::ResourceSpec::LaunchConfig { ingress, ssh, .. } => {
                let mut v: Vec<Ingress> =
                    ingress.iter().map(|i| Ingress { port: i.port, from: i.from.clone() }).collect();
                if *ssh {
                    v.push(Ingress { port: 22, from: "ssh".to_owned() });
                }
                Some(v)
            }
            _ => None,
        })
        .flatten()
        .collect();
    let steps = graph
        .map(|g| {
            g.steps
                .iter()
                .map(|s| {
                    let (safety, routine) = skiff_steps::deploy::declared_safety(&g.saga, &s.kind, &s.params);
                    StepFacts {
                        id: s.id.clone(),
                        kind: s.kind.clone(),
                        safety: serde_json::to_value(safety)
                            .ok()
                            .and_then(|v| v.as_str().map(str::to_owned))
                            .unwrap_or_default(),
                        approval: s.approval,
                        routine,
                    }
                })
                .collect()
        })
        .unwrap_or_default();
    PlanInput {
        action: action.to_owned(),
        service: ir.service.clone(),
        environment: ir.environment.clone(),
        provider: provider.to_owned(),
        actor: Actor { name: ctx.actor(), roles: ctx.roles() },
        release,
        instances: Instances {
            desired: ir.capacity.desired,
            max: ir.capacity.max,
            instance_type: ir.capacity.instance_type.clone(),
            spot: ir.capacity.spot,
        },
        ingress,
        steps,
        database_deletions: Vec::new(),
        resources: serde_json::to_value(&plan.resources).unwrap_or_default(),
        cost: Some(skiff_cost::estimate(ir).policy_facts()),
    }
}

/// Runs the rules; a denial is POLICY_DENIED naming each rule, reason and fix.
pub(crate) fn enforce(policy: &Policy, input: &PlanInput) -> Result<(Report, Vec<String>)> {
    let report = policy.check(input).map_err(|e| {
        Error::from(
            Envelope::failure(Code::PolicyDenied, "a policy failed while evaluating; nothing was changed")
                .fact(e.to_string())
                .fact("a policy that cannot decide denies"),
        )
    })?;
    if !report.allowed {
        let denials: Vec<_> = report.denials().collect();
        let first = denials[0];
        let mut env = Envelope::failure(Code::PolicyDenied, format!("policy {} denied the plan", first.rule));
        for d in &denials {
            env = env.fact(format!("rule {} ({}): {}", d.rule, d.source, d.reason));
            if let Some(fix) = &d.fix {
                env = env.fact(format!("fix: {fix}"));
            }
        }
        env = env.data(&report).action("check", "skiff policy check", false, Safety::ReadOnly, 0.6);
        return Err(env.into());
    }
    let count = |v: Verdict| report.results.iter().filter(|r| r.verdict == v).count();
    let facts = vec![format!(
        "policy: {} rules passed, {} did not apply, none denied",
        count(Verdict::Pass),
        count(Verdict::Skip)
    )];
    Ok((report, facts))
}

/// The deploy graph of a release not built yet, for checks before anything changes.
pub(crate) fn prospective_graph(ir: &ServiceIr) -> Result<SagaGraph> {
    let runner =
        skiff_pluginapi::RunnerConfig { bucket: String::new(), public_key_pem: String::new(), heartbeat_ms: 0 };
    let group = skiff_steps::deploy::group_spec(ir, "next", runner);
    let rollout = skiff_steps::deploy::rollout_for(ir, "next", "", group, None);
    skiff_steps::deploy::deploy_graph(&rollout).map_err(|e| crate::error::saga(&e))
}

/// `skiff policy check [-f FILE]`: every rule against the plan a deploy would run.
pub(crate) async fn check(ctx: &Context, file: &Path) -> Result<Answer> {
    let (shown, spec) = crate::spec::load(ctx, file).await?;
    let ir = skiff_ir::compile(&spec);
    let (_, resolved) = ctx.resolve()?;
    let policy = load(&ctx.cwd.join(file))?;
    let graph = prospective_graph(&ir)?;
    let input = input(ctx, &ir, "check", resolved.provider.value.as_str(), None, Some(&graph));
    let (report, _) = enforce(&policy, &input)?;
    let mut body = String::new();
    for r in &report.results {
        let mark = match r.verdict {
            Verdict::Pass => "✓",
            Verdict::Deny => "✗",
            Verdict::Skip => "-",
        };
        let _ = writeln!(body, "{mark} {:<34} {}", r.rule, r.reason);
    }
    let files = policy.files();
    let env = Envelope::ok(format!("{} passes every policy ({} rules)", shown, report.results.len()))
        .fact(format!("built-in rules plus {} policy file{}", files.len(), if files.len() == 1 { "" } else { "s" }))
        .data(&report)
        .action("deploy", format!("skiff deploy -f {shown} --yes"), true, Safety::Reversible, 0.6);
    Ok(Answer::from(env).body(body))
}
