//! Snapshot of every compiler stage (IR and resource plan) for every example, so a
//! change in lowering or planning is a visible, reviewed diff.

use std::path::Path;

fn compile_example(name: &str) -> skiff_compiler::Compiled {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples").join(name).join("skiff.yaml");
    let bytes = std::fs::read(&path).unwrap();
    let spec = skiff_spec::parse("skiff.yaml", &bytes).unwrap_or_else(|e| panic!("{e}"));
    skiff_compiler::compile(&spec)
}

#[test]
fn example_stages() {
    for name in ["hello", "api-db", "worker", "mtls", "multiregion-db"] {
        let out = compile_example(name);
        insta::assert_snapshot!(format!("{name}.ir"), skiff_ir::canonical::to_pretty(&out.ir));
        insta::assert_snapshot!(format!("{name}.plan"), skiff_ir::canonical::to_pretty(&out.plan));
    }
}

#[test]
fn intent_drives_the_decision() {
    let api = compile_example("api-db");
    let a = &api.ir.decision.availability_plan;
    assert_eq!((a.instances, a.zones, a.multi_az_database), (3, 3, true));
    assert_eq!(api.ir.capacity.instance_type, "t4g.micro");
    let worker = compile_example("worker");
    assert!(worker.ir.capacity.spot, "cost low worker runs on spot");
    assert_eq!(worker.ir.decision.availability_plan.zones, 1);
    assert!(worker.plan.get("lb-rule/thumbnailer").is_none(), "a worker has no load balancer rule");
}

#[test]
fn policy_never_grants_wildcard_actions() {
    for name in ["hello", "api-db", "worker", "mtls", "multiregion-db"] {
        let out = compile_example(name);
        for r in &out.plan.resources {
            if let skiff_compiler::ResourceSpec::Policy { statements, .. } = &r.spec {
                assert!(statements.iter().all(|s| !s.action.contains('*')), "{name}: {statements:?}");
            }
        }
    }
}

#[test]
fn plan_diff_names_changed_fields() {
    let before = compile_example("api-db");
    let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/api-db/skiff.yaml"))
        .unwrap();
    let text =
        text.replace("intent: {availability: high, cost: low}", "intent: {availability: high, cost: performance}");
    let after = skiff_compiler::compile(&skiff_spec::parse("skiff.yaml", text.as_bytes()).unwrap());
    let diff = skiff_compiler::diff_plans(&before.plan, &after.plan);
    let lines: Vec<String> = diff.changes.iter().map(ToString::to_string).collect();
    insta::assert_snapshot!("api-db.cost-performance.diff", lines.join("\n"));
    assert_eq!((diff.add, diff.change, diff.remove), (0, 2, 0));
}
