//! Data-driven spec tests: every example parses; every bad fixture fails with exactly
//! the error recorded beside it (`NAME.expected`). Run with `SKIFF_BLESS=1` to rewrite
//! the expectations after an intended change, then review the diff.

use std::path::{Path, PathBuf};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn files(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == ext))
        .collect();
    out.sort();
    out
}

#[test]
fn every_example_validates() {
    let mut seen = 0;
    for dir in std::fs::read_dir(repo().join("examples")).unwrap() {
        let dir = dir.unwrap().path();
        if !dir.join("skiff.yaml").exists() {
            continue;
        }
        seen += 1;
        for file in std::fs::read_dir(&dir).unwrap() {
            let path = file.unwrap().path();
            if path.extension().is_some_and(|e| e == "yaml") {
                let bytes = std::fs::read(&path).unwrap();
                if let Err(e) = skiff_spec::parse(&path.display().to_string(), &bytes) {
                    panic!("{} must validate:\n{e}", path.display());
                }
            }
        }
    }
    assert!(seen >= 5, "expected the five examples, saw {seen}");
}

#[test]
fn every_bad_fixture_fails_with_its_recorded_error() {
    let dir = repo().join("tests/fixtures/bad");
    let bless = std::env::var_os("SKIFF_BLESS").is_some();
    let fixtures = files(&dir, "yaml");
    assert!(fixtures.len() >= 15, "need at least 15 bad fixtures, have {}", fixtures.len());
    let mut failures = Vec::new();
    for path in fixtures {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let bytes = std::fs::read(&path).unwrap();
        let actual = match skiff_spec::parse(&name, &bytes) {
            Ok(_) => "ACCEPTED (must be rejected)\n".to_owned(),
            Err(e) => format!("{e}\n"),
        };
        let expected_path = path.with_extension("expected");
        if bless {
            std::fs::write(&expected_path, &actual).unwrap();
            continue;
        }
        let expected = std::fs::read_to_string(&expected_path).unwrap_or_default();
        if actual != expected {
            failures.push(format!("--- {name}\nexpected:\n{expected}actual:\n{actual}"));
        }
    }
    assert!(failures.is_empty(), "{}\n(run with SKIFF_BLESS=1 to accept)", failures.join("\n"));
}

#[test]
fn an_environment_overlay_replaces_only_what_it_names() {
    let text = "service: web\nartifact: {path: web}\nrun: {command: [web]}\nport: 8080\n\
        instances: {min: 2, desired: 3, max: 6}\nintent: {availability: standard, cost: balanced}\n\
        secrets: {DATABASE_URL: secret://web-db/url, API_KEY: secret://web/api-key}\n\
        environments:\n  staging:\n    instances: {desired: 2}\n    intent: {cost: low}\n    \
        secrets: {DATABASE_URL: secret://web-db-staging/url}\n  production: {}\n";
    let spec = skiff_spec::parse("skiff.yaml", text.as_bytes()).unwrap();
    let staging = spec.for_environment(&"staging".parse().unwrap());
    assert_eq!(staging.environment.as_ref().map(|e| e.as_str()), Some("staging"));
    assert!(staging.environments.is_empty(), "no overlay is left to apply twice");
    let i = staging.instances.as_ref().unwrap();
    assert_eq!((i.min, i.desired, i.max), (Some(2), Some(2), Some(6)));
    let intent = staging.intent.as_ref().unwrap();
    assert_eq!(
        (intent.availability, intent.cost),
        (Some(skiff_spec::Availability::Standard), Some(skiff_spec::Cost::Low))
    );
    let url =
        |s: &skiff_spec::Spec, k: &str| s.secrets.iter().find(|(n, _)| n.as_str() == k).map(|(_, v)| v.to_string());
    assert_eq!(url(&staging, "DATABASE_URL").as_deref(), Some("secret://web-db-staging/url"));
    assert_eq!(url(&staging, "API_KEY").as_deref(), Some("secret://web/api-key"));
    let production = spec.for_environment(&"production".parse().unwrap());
    assert_eq!(production.instances, spec.instances);
    assert_eq!(url(&production, "DATABASE_URL").as_deref(), Some("secret://web-db/url"));
}
