//! The requests about the spec format and this build: `validate`, `schema`, `version`.

use std::path::Path;

use skiff_sdk::{Answer, Envelope, Safety};

use crate::context::Context;
use crate::error::{Result, plural};

/// `skiff validate -f FILE`: parse and check a spec, report every problem.
pub(crate) async fn validate(ctx: &Context, file: &Path) -> Result<Answer> {
    let (shown, spec) = crate::spec::load(ctx, file).await?;
    let ir = skiff_ir::compile(&spec);
    let mut facts = vec![format!(
        "{} `{}` in {}: {} over {}, {}",
        ir.workload,
        ir.service,
        ir.environment,
        plural(ir.capacity.desired, "instance"),
        plural(ir.capacity.zones.len(), "zone"),
        ir.capacity.instance_type
    )];
    if ir.network.is_some() {
        let steps: Vec<String> = ir.rollout.steps.iter().map(|s| format!("{s}%")).collect();
        facts.push(format!("rollout: {} {}, bake {}", ir.rollout.strategy, steps.join(" → "), ir.rollout.bake));
    }
    Ok(Envelope::ok(format!("{shown} is valid"))
        .facts(facts)
        .data(serde_json::json!({
            "file": shown,
            "service": ir.service,
            "kind": ir.workload,
            "ir_digest": ir.digest(),
        }))
        .action("plan", format!("skiff plan -f {shown}"), false, Safety::ReadOnly, 0.8)
        .into())
}

/// `skiff schema`: the JSON Schema of skiff.yaml. Human mode prints the bare schema so
/// it can be redirected to a file; JSON mode wraps it in the envelope's `data`.
pub(crate) fn schema() -> Answer {
    let schema = skiff_spec::json_schema();
    let text = serde_json::to_string_pretty(&schema).unwrap_or_default();
    Answer::from(Envelope::ok("JSON Schema of skiff.yaml (draft 2020-12)").data(schema)).body(text).raw()
}

/// `skiff version`.
pub(crate) fn version() -> Answer {
    let version = env!("CARGO_PKG_VERSION");
    Envelope::ok(format!("skiff {version}"))
        .data(serde_json::json!({
            "version": version,
            "ir_schema_version": skiff_ir::SCHEMA_VERSION,
            "plan_schema_version": skiff_compiler::SCHEMA_VERSION,
            "target": format!("{}-{}", std::env::consts::ARCH, std::env::consts::OS),
        }))
        .into()
}
