//! `skiff validate`: parse and check a spec, report every problem.

use std::path::Path;

use skiff_sdk::{Envelope, Safety};

use crate::{Ctx, Outcome};

pub(super) fn run(ctx: &Ctx, file: &Path) -> Outcome {
    let (shown, spec) = match super::load_spec(ctx, file) {
        Ok(v) => v,
        Err(outcome) => return *outcome,
    };
    let ir = skiff_ir::compile(&spec);
    let mut facts = vec![format!(
        "{} `{}` in {}: {} over {}, {}",
        ir.workload,
        ir.service,
        ir.environment,
        super::plural(ir.capacity.desired, "instance"),
        super::plural(ir.capacity.zones.len() as u64, "zone"),
        ir.capacity.instance_type
    )];
    if ir.network.is_some() {
        let steps: Vec<String> = ir.rollout.steps.iter().map(|s| format!("{s}%")).collect();
        facts.push(format!("rollout: {} {}, bake {}", ir.rollout.strategy, steps.join(" → "), ir.rollout.bake));
    }
    let env = Envelope::ok(format!("{shown} is valid"))
        .facts(facts)
        .data(serde_json::json!({
            "file": shown,
            "service": ir.service,
            "kind": ir.workload,
            "ir_digest": ir.digest(),
        }))
        .action("plan", format!("skiff plan -f {shown}"), false, Safety::ReadOnly, 0.8);
    env.into()
}
