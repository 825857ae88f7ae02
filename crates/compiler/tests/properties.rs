//! Properties of the compiler over generated specs: deterministic output, and an IR
//! whose own source spec compiles back to it with an empty diff.

use proptest::prelude::*;
use skiff_spec::Spec;

/// Valid specs as YAML/JSON text, covering intents, kinds, databases and rollouts.
fn spec_text() -> impl Strategy<Value = String> {
    (
        "[a-z][a-z0-9]{0,10}",
        prop::bool::ANY,
        prop::option::of(prop::sample::select(vec!["high", "standard", "low"])),
        prop::option::of(prop::sample::select(vec!["low", "balanced", "performance"])),
        prop::option::of(1u32..8),
        1024u16..65535,
        prop::option::of(prop::sample::select(vec!["small", "medium", "large"])),
        prop::collection::btree_set(1u32..100, 0..4),
        prop::option::of(prop::sample::select(vec!["500ms", "30s", "2m"])),
        prop::collection::vec("[A-Z]{1,4}", 0..3),
    )
        .prop_map(|(name, worker, availability, cost, desired, port, db, steps, bake, secrets)| {
            let mut s = format!("service: {name}\nartifact: {{path: bin/{name}}}\nrun: {{command: [{name}]}}\n");
            if worker {
                s.push_str("kind: worker\n");
            } else {
                s.push_str(&format!("port: {port}\n"));
                let mut steps: Vec<u32> = steps.into_iter().collect();
                steps.push(100);
                s.push_str(&format!("rollout: {{canary: {{steps: {steps:?}"));
                if let Some(b) = bake {
                    s.push_str(&format!(", bake: {b}"));
                }
                s.push_str("}}\n");
            }
            let need = match availability {
                Some("high") => 3,
                Some("low") => 1,
                _ => 2,
            };
            match (availability, cost) {
                (None, None) => {}
                (a, c) => {
                    let a = a.map(|a| format!("availability: {a}, ")).unwrap_or_default();
                    let c = c.map(|c| format!("cost: {c}")).unwrap_or_default();
                    s.push_str(&format!("intent: {{{a}{c}}}\n"));
                }
            }
            if let Some(d) = desired {
                s.push_str(&format!("instances: {{desired: {}}}\n", d.max(need)));
            }
            if let Some(size) = db {
                s.push_str(&format!("database: {{name: {name}-db, engine: postgres, size: {size}}}\n"));
            }
            if !secrets.is_empty() {
                s.push_str("secrets:\n");
                for (i, k) in secrets.iter().enumerate() {
                    s.push_str(&format!("  {k}_{i}: secret://{name}-s/{k}\n"));
                }
            }
            s
        })
}

fn parse(text: &str) -> Spec {
    skiff_spec::parse("gen.yaml", text.as_bytes())
        .unwrap_or_else(|e| panic!("generated spec must be valid:\n{text}\n{e}"))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn same_input_gives_byte_identical_output(text in spec_text()) {
        let a = skiff_compiler::compile(&parse(&text));
        let b = skiff_compiler::compile(&parse(&text));
        prop_assert_eq!(a.ir.canonical_json(), b.ir.canonical_json());
        prop_assert_eq!(a.plan.canonical_json(), b.plan.canonical_json());
        prop_assert_eq!(a.ir.digest(), b.ir.digest());
    }

    #[test]
    fn compiling_an_irs_own_spec_gives_an_empty_diff(text in spec_text()) {
        let first = skiff_compiler::compile(&parse(&text));
        // The IR's own spec, written out (JSON is YAML) and read back through the strict parser.
        let own = serde_json::to_string(&first.ir.source).unwrap();
        let second = skiff_compiler::compile(&parse(&own));
        prop_assert!(skiff_compiler::diff_irs(&first.ir, &second.ir).is_empty());
        prop_assert!(skiff_compiler::diff_plans(&first.plan, &second.plan).is_empty());
        prop_assert_eq!(first.ir, second.ir);
    }

    #[test]
    fn resolved_capacity_is_consistent(text in spec_text()) {
        let ir = skiff_compiler::compile(&parse(&text)).ir;
        let c = &ir.capacity;
        prop_assert!(c.min <= c.desired && c.desired <= c.max, "{:?}", c);
        prop_assert!(c.desired >= ir.decision.availability_plan.level.min_instances());
        prop_assert!(!c.zones.is_empty() && c.zones.len() as u32 <= c.desired.max(1));
    }
}
