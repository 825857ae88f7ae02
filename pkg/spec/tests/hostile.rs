//! Hostile input never panics or hangs: arbitrary bytes, YAML-shaped noise, and
//! mutations of real examples all end in `Ok` or a positioned error.

use proptest::prelude::*;

const EXAMPLE: &str = include_str!("../../../examples/api-db/skiff.yaml");

fn check(bytes: &[u8]) -> Result<(), TestCaseError> {
    if let Err(e) = skiff_spec::parse("fuzz.yaml", bytes) {
        for d in e.diagnostics() {
            prop_assert!(d.pos.line >= 1 && d.pos.column >= 1, "position must be 1-based: {d}");
            prop_assert!(!d.message.is_empty() && !d.hint.is_empty(), "message and fix required: {d}");
        }
    }
    Ok(())
}

fn yamlish() -> impl Strategy<Value = String> {
    let token = prop_oneof![
        Just("\n".to_owned()),
        Just("  ".to_owned()),
        Just(": ".to_owned()),
        Just("- ".to_owned()),
        Just("[".to_owned()),
        Just("]".to_owned()),
        Just("{".to_owned()),
        Just("}".to_owned()),
        Just(", ".to_owned()),
        Just("&a ".to_owned()),
        Just("*a".to_owned()),
        Just("!!str ".to_owned()),
        Just("!custom ".to_owned()),
        Just("'".to_owned()),
        Just("\"".to_owned()),
        Just("|\n".to_owned()),
        Just("? ".to_owned()),
        Just("---\n".to_owned()),
        Just("<<: ".to_owned()),
        Just("# c\n".to_owned()),
        prop::sample::select(vec![
            "service", "port", "run", "command", "steps", "8080", "1e9", "-0", "0x1F", "~", "true", "5s", "1%"
        ])
        .prop_map(str::to_owned),
        "[a-z]{1,6}",
    ];
    prop::collection::vec(token, 0..80).prop_map(|t| t.concat())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..1024)) {
        check(&bytes)?;
    }

    #[test]
    fn yaml_shaped_noise(text in yamlish()) {
        check(text.as_bytes())?;
    }

    #[test]
    fn mutated_examples(edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..3), 1..8)) {
        let mut bytes = EXAMPLE.as_bytes().to_vec();
        for (at, byte, op) in edits {
            let i = at.index(bytes.len().max(1));
            match op {
                0 if i < bytes.len() => bytes[i] = byte,
                1 => bytes.insert(i.min(bytes.len()), byte),
                _ if i < bytes.len() => { bytes.remove(i); }
                _ => {}
            }
        }
        check(&bytes)?;
    }
}

#[test]
fn huge_inputs_are_refused_quickly() {
    let big = "a: b\n".repeat(300_000);
    let e = skiff_spec::parse("big.yaml", big.as_bytes()).unwrap_err();
    assert!(e.first().message.contains("bytes, more than"), "{e}");
    let wide = format!("service: api\nrun: {{command: [{}]}}\n", vec!["x"; 150_000].join(","));
    assert!(skiff_spec::parse("wide.yaml", wide.as_bytes()).is_err());
}
