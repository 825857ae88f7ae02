//! Golden imports of real-world-shaped manifests: each case's specs (which must parse
//! as skiff.yaml), refusals, and a loss report that accounts for every leaf path of
//! every input object exactly once.

use std::path::PathBuf;

use skiff_kube::{Class, import, read, report};

fn case(name: &str) -> String {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name);
    let docs = read(std::slice::from_ref(&dir)).unwrap();
    let imported = import(&docs);
    // 100%: one entry per leaf path of every input object.
    let leaves: usize = docs.iter().map(|d| report::leaves(&d.value).len()).sum();
    assert_eq!(imported.report.len(), leaves, "{name}: every path accounted for once");
    let root = dir.display().to_string();
    let mut out = String::new();
    for s in &imported.specs {
        let parsed = skiff_spec::parse(&format!("{}.yaml", s.service), s.yaml.as_bytes());
        assert!(parsed.is_ok(), "{name}: {} does not parse: {:?}\n{}", s.service, parsed.err(), s.yaml);
        out.push_str(&format!(
            "=== spec {} (from {})\n{}",
            s.service,
            s.from.replace(&root, "."),
            s.yaml.replace(&root, ".")
        ));
        for c in &s.secret_commands {
            out.push_str(&format!("  $ {c}\n"));
        }
    }
    for r in &imported.refused {
        out.push_str(&format!("=== refused {} at {}: {}\n", r.object, r.at.replace(&root, "."), r.why));
    }
    out.push_str("=== report\n");
    for e in &imported.report {
        let class = match e.class {
            Class::Mapped => "mapped     ",
            Class::Warned => "warned     ",
            Class::Unsupported => "unsupported",
        };
        out.push_str(&format!("{class} {} {}: {}\n", e.object, e.path, e.note));
    }
    out
}

#[test]
fn a_web_app_with_sidecar_probes_hpa_ingress_and_secrets() {
    insta::assert_snapshot!("web-app", case("web-app"));
}

#[test]
fn probes_of_every_kind_a_list_and_json() {
    insta::assert_snapshot!("probes", case("probes"));
}

#[test]
fn what_cannot_migrate_is_refused_with_why() {
    let out = case("refused");
    for (object, why) in [
        ("StatefulSet/db", "stateful"),
        ("DaemonSet/node-agent", "node"),
        ("Deployment/root-tool", "privileged"),
        ("Deployment/log-shipper", "host path"),
        ("Certificate/shop-tls", "custom resource"),
        ("Deployment/legacy", "extensions/v1beta1"),
        ("Widget/odd", "not one the importer reads"),
        ("Deployment/broken", "not a valid apps/v1 Deployment"),
    ] {
        assert!(
            out.lines().any(|l| l.starts_with(&format!("=== refused {object}")) && l.contains(why)),
            "{object}: {why}\n{out}"
        );
    }
    insta::assert_snapshot!("refused", out);
}

#[test]
fn helm_output_with_comments_and_empty_documents() {
    insta::assert_snapshot!("helm", case("helm"));
}

#[test]
fn hostile_inputs_get_errors_not_panics() {
    for (name, bytes) in [
        ("huge.yaml", vec![b'a'; 17 * 1024 * 1024]),
        ("binary.yaml", vec![0xff, 0xfe, 0x00]),
        ("tags.yaml", b"kind: !!binary aGVsbG8=\n".to_vec()),
        ("unbalanced.yaml", b"kind: [Deployment\n".to_vec()),
        ("deep.yaml", ("[".repeat(100) + &"]".repeat(100)).into_bytes()),
    ] {
        let err = skiff_kube::read::parse(name, &bytes).unwrap_err().to_string();
        assert!(err.starts_with(name), "{err}");
    }
    // Objects of the wrong shape are refused, not panicked on.
    let docs = skiff_kube::read::parse("odd.yaml", b"kind: Deployment\napiVersion: apps/v1\nspec: 5\n---\n- 1\n- 2\n")
        .unwrap();
    let imported = import(&docs);
    assert_eq!(imported.refused.len(), 2, "{:?}", imported.refused);
}
