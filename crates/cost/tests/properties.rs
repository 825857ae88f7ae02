//! The cost-ceiling rule and `skiff cost explain` agree: for generated specs, the
//! rule passes at exactly the explained maximum and denies a cent below it, and its
//! reason quotes the same figure.

use proptest::prelude::*;
use skiff_policy::{Ceiling, Limits, PlanInput, Policy, Verdict};

fn spec_text() -> impl Strategy<Value = String> {
    (
        prop::bool::ANY,
        prop::option::of(prop::sample::select(vec!["high", "standard", "low"])),
        prop::option::of(prop::sample::select(vec!["low", "balanced", "performance"])),
        prop::option::of(3u32..12),
        prop::option::of(prop::sample::select(vec!["t3.small", "m6i.large", "r7g.xlarge"])),
        prop::option::of(prop::sample::select(vec!["small", "medium", "large"])),
        prop::sample::select(vec!["[us-east-1]", "[us-east-1, us-west-2]", "[eu-west-1, eu-central-1, us-east-1]"]),
        prop::option::of(prop::sample::select(vec!["7d", "30d", "365d"])),
    )
        .prop_map(|(worker, availability, cost, desired, class, db, regions, logs)| {
            let mut s = "service: gen\nartifact: {path: gen}\nrun: {command: [gen]}\n".to_owned();
            s.push_str(if worker { "kind: worker\n" } else { "port: 8080\n" });
            s.push_str(&format!("regions: {regions}\n"));
            let a = availability.map(|a| format!("availability: {a}, ")).unwrap_or_default();
            let c = cost.map(|c| format!("cost: {c}")).unwrap_or_default();
            s.push_str(&format!("intent: {{{a}{c}}}\n"));
            if let Some(d) = desired {
                s.push_str(&format!("instances: {{desired: {d}}}\n"));
            }
            if let Some(class) = class {
                s.push_str(&format!("resources: {{instance_type: {class}}}\n"));
            }
            if let Some(size) = db {
                s.push_str(&format!("database: {{name: gen-db, engine: postgres, size: {size}}}\n"));
            }
            if let Some(r) = logs {
                s.push_str(&format!("logs: {{retention: {r}}}\n"));
            }
            s
        })
}

fn cost_verdict(input: &PlanInput, ceiling: f64) -> (Verdict, String) {
    let limits = Limits {
        environments: Default::default(),
        default: Ceiling { max_instances: 1_000, max_monthly_usd: ceiling },
    };
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("limits.json"), serde_json::to_vec(&limits).unwrap()).unwrap();
    let r = Policy::load(dir.path()).unwrap().check(input).unwrap();
    let rule = r.results.into_iter().find(|x| x.rule == "cost-ceiling").unwrap();
    (rule.verdict, rule.reason)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn the_ceiling_rule_and_the_explanation_give_the_same_total(text in spec_text()) {
        let spec = skiff_spec::parse("gen.yaml", text.as_bytes())
            .unwrap_or_else(|e| panic!("generated spec must be valid:\n{text}\n{e}"));
        let ir = skiff_ir::compile(&spec);
        let explained = skiff_cost::estimate(&ir);
        prop_assert!(explained.unpriced.is_empty(), "{:?}", explained.unpriced);
        let input = PlanInput {
            provider: "aws".into(),
            environment: ir.environment.clone(),
            cost: Some(explained.policy_facts()),
            ..PlanInput::default()
        };
        let (at, reason) = cost_verdict(&input, explained.at_max_usd);
        prop_assert_eq!(at, Verdict::Pass, "{}", reason);
        prop_assert!(reason.contains(&format!("${:.2}/month", explained.at_max_usd)), "{}", reason);
        let (below, _) = cost_verdict(&input, explained.at_max_usd - 0.01);
        prop_assert_eq!(below, Verdict::Deny);
    }
}
