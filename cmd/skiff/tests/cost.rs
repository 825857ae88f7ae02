//! `skiff cost explain` for every example (JSON snapshots), the human screen, `--env`
//! choosing the ceiling, and the plan's cost delta against the recorded spec.

mod common;

use common::{Sandbox, human, json};

/// Every example a spec can be read without plugins (mtls needs its own).
const EXAMPLES: [&str; 4] = ["hello", "api-db", "worker", "multiregion-db"];

#[test]
fn every_example_explains_its_cost_deterministically() {
    let s = Sandbox::new();
    for name in EXAMPLES {
        s.copy_example(name);
        let file = format!("{name}.yaml");
        let a = s.run(&["cost", "explain", "-f", &file, "--format", "json"]);
        assert_eq!(a.code, 0, "{name}: {}", a.stdout);
        assert_eq!(a.stdout, s.run(&["cost", "explain", "-f", &file, "--format", "json"]).stdout, "{name}");
        let v = json(&a);
        let lines = v["data"]["lines"].as_array().unwrap();
        let sum: f64 = lines.iter().map(|l| l["monthly_usd"].as_f64().unwrap()).sum();
        assert!((sum - v["data"]["monthly_usd"].as_f64().unwrap()).abs() < 0.005, "{name}: lines add up");
        insta::assert_snapshot!(format!("cost-{name}-json"), a.stdout);
    }
    insta::assert_snapshot!("cost-api-db-human", human(&s.run(&["cost", "explain", "-f", "api-db.yaml"])));
}

#[test]
fn the_environment_chooses_the_ceiling_and_an_exceeded_one_says_so() {
    let s = Sandbox::new();
    s.copy_example("multiregion-db");
    std::fs::create_dir_all(s.path().join("policies")).unwrap();
    std::fs::write(
        s.path().join("policies/limits.json"),
        r#"{"default": {"max_instances": 50, "max_monthly_usd": 100}, "environments": {"production": {"max_instances": 50, "max_monthly_usd": 10000}}}"#,
    )
    .unwrap();
    let prod = json(&s.run(&["cost", "explain", "-f", "multiregion-db.yaml", "--format", "json"]));
    assert_eq!(prod["data"]["ceiling"]["within"], true);
    assert_eq!(prod["data"]["ceiling"]["from"], "policies/limits.json");
    let staging =
        json(&s.run(&["cost", "explain", "-f", "multiregion-db.yaml", "--env", "staging", "--format", "json"]));
    assert_eq!(staging["data"]["environment"], "staging");
    assert_eq!(staging["data"]["ceiling"]["max_monthly_usd"], 100.0);
    assert_eq!(staging["data"]["ceiling"]["within"], false);
    let facts = staging["facts"].as_array().unwrap();
    assert!(facts.iter().any(|f| f.as_str().unwrap().contains("exceeded")), "{facts:?}");
    assert_eq!(staging["data"]["at_max_usd"], prod["data"]["at_max_usd"], "same resources, another ceiling");
}

#[test]
fn plan_shows_the_cost_of_a_change_against_the_recorded_spec() {
    let s = Sandbox::new();
    s.copy_example("api-db");
    let first = json(&s.run(&["plan", "-f", "api-db.yaml", "--format", "json"]));
    let explained = json(&s.run(&["cost", "explain", "-f", "api-db.yaml", "--format", "json"]));
    assert_eq!(first["data"]["cost"]["monthly_usd"], explained["data"]["monthly_usd"]);
    assert_eq!(first["data"]["cost"]["delta_usd"], explained["data"]["monthly_usd"], "everything is new");
    assert!(first["data"]["cost"]["before_monthly_usd"].is_null());

    // Record the spec as deployed, then turn the cost knob up.
    common::record_spec(s.path(), "api-db", "2026.11.22.1");
    let text = std::fs::read_to_string(s.path().join("api-db.yaml")).unwrap();
    std::fs::write(s.path().join("api-db.yaml"), text.replace("cost: low", "cost: performance")).unwrap();
    let changed = json(&s.run(&["plan", "-f", "api-db.yaml", "--format", "json"]));
    let cost = &changed["data"]["cost"];
    assert_eq!(cost["before_monthly_usd"], explained["data"]["monthly_usd"]);
    let alt = explained["data"]["alternatives"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["intent"] == "intent.cost: performance")
        .unwrap();
    assert_eq!(cost["delta_usd"], alt["delta_usd"], "the plan's delta is the explanation's alternative");
    let facts = changed["facts"].as_array().unwrap();
    assert!(
        facts.iter().any(|f| f.as_str().unwrap().starts_with("cost ≈") && f.as_str().unwrap().contains("+$")),
        "{facts:?}"
    );
}

#[test]
fn env_applies_that_environments_overlay_and_an_unknown_one_is_refused() {
    let s = Sandbox::new();
    s.copy_example("hello");
    let text = std::fs::read_to_string(s.path().join("hello.yaml")).unwrap();
    let with = format!(
        "{text}environments:\n  staging: {{instances: {{desired: 1}}, intent: {{availability: low}}}}\n  production: {{}}\n"
    );
    std::fs::write(s.path().join("hello.yaml"), with).unwrap();
    let cost = |env: &str| json(&s.run(&["cost", "explain", "-f", "hello.yaml", "--env", env, "--format", "json"]));
    let (staging, production) = (cost("staging"), cost("production"));
    assert_eq!(staging["data"]["environment"], "staging");
    assert!(
        staging["data"]["monthly_usd"].as_f64().unwrap() < production["data"]["monthly_usd"].as_f64().unwrap(),
        "staging's overlay asks for fewer instances"
    );
    let typo = s.run(&["cost", "explain", "-f", "hello.yaml", "--env", "prodution", "--format", "json"]);
    assert_eq!(typo.code, 2, "{}", typo.stdout);
    assert!(json(&typo)["facts"][0].as_str().unwrap().contains("production, staging"), "{}", typo.stdout);
}
