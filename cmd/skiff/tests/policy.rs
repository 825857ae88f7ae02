//! Guardrails from the CLI: `skiff policy check` with built-in rules and Rego files,
//! and deploys refused before anything changes.

mod common;

use common::*;

fn write_spec(s: &Sandbox, extra: &str) -> String {
    let hello = skiff_testkit::workspace_bin("hello");
    let yaml = format!(
        "service: web\nartifact: {{path: {}}}\nrun: {{command: [hello]}}\nport: {}\n\
         health: {{path: /healthz, interval: 1s, timeout: 500ms, healthy_threshold: 1, unhealthy_threshold: 2}}\n{extra}",
        hello.display(),
        skiff_testkit::free_port()
    );
    std::fs::write(s.path().join("skiff.yaml"), yaml).unwrap();
    "skiff.yaml".to_owned()
}

fn write_policy(s: &Sandbox, name: &str, text: &str) {
    std::fs::create_dir_all(s.path().join("policies")).unwrap();
    std::fs::write(s.path().join("policies").join(name), text).unwrap();
}

const TEAM: &str = r#"package skiff.team

deny contains {"rule": "three-or-more", "reason": sprintf("%s keeps %d instances", [input.service, input.instances.desired]), "fix": "set instances.desired to 3 or more"} if {
    input.instances.desired < 3
}
"#;

#[test]
fn policy_check_reports_every_rule_and_rego_denials() {
    let s = Sandbox::new();
    write_spec(&s, "instances: {min: 1, max: 4, desired: 2}\n");
    let ok = s.run(&["policy", "check"]);
    assert_eq!(ok.code, 0, "{}", ok.stdout);
    insta::assert_snapshot!("policy-check", human(&ok));

    write_policy(&s, "team.rego", TEAM);
    let denied = s.run(&["policy", "check", "--format", "json"]);
    assert_eq!(denied.code, 8, "POLICY_DENIED: {}", denied.stdout);
    let v = json(&denied);
    assert_eq!(v["code"], "POLICY_DENIED");
    insta::assert_snapshot!("policy-check-denied", serde_json::to_string_pretty(&v["facts"]).unwrap());
    assert_eq!(v["data"]["results"].as_array().unwrap().len(), 8, "7 built-in rules and one denial");

    write_spec(&s, "instances: {min: 3, max: 4, desired: 3}\n");
    assert_eq!(s.run(&["policy", "check"]).code, 0, "the policy is satisfied");
}

#[test]
fn an_invalid_policy_file_is_named_and_nothing_runs() {
    let s = Sandbox::new();
    let spec = write_spec(&s, "");
    write_policy(&s, "broken.rego", "package skiff.broken\n\ndeny contains msg if {\n  input.x ==\n}\n");
    let r = s.run(&["policy", "check", "--format", "json"]);
    assert_eq!(r.code, 3, "{}", r.stdout);
    assert!(json(&r)["facts"][0].as_str().unwrap().starts_with("policies/broken.rego"), "{}", r.stdout);
    let d = s.run(&["deploy", "-f", &spec, "--yes", "--format", "json"]);
    assert_eq!(d.code, 3, "{}", d.stdout);
    assert!(!s.path().join(".skiff/state").exists(), "nothing was written");
}

#[test]
fn deploys_are_refused_before_anything_changes() {
    let s = Sandbox::new();
    let env = [("SKIFF_RUNNER_BIN", skiff_testkit::workspace_bin("skiff-runner").display().to_string())];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();

    // Above the local provider's ceiling.
    let spec = write_spec(&s, "instances: {min: 1, max: 20, desired: 2}\n");
    let r = s.run_env(&["deploy", "-f", &spec, "--yes", "--format", "json"], &env);
    assert_eq!(r.code, 8, "{}", r.stdout);
    insta::assert_snapshot!("deploy-policy-denied", serde_json::to_string_pretty(&json(&r)["facts"]).unwrap());

    // Production without the approver role.
    let spec = write_spec(&s, "instances: {min: 1, max: 2, desired: 1}\n");
    let r = s.run_env(
        &["deploy", "-f", &spec, "--yes", "--format", "json"],
        &[env.clone(), vec![("SKIFF_ROLES", "operator")]].concat(),
    );
    assert_eq!(r.code, 8, "{}", r.stdout);
    assert_eq!(json(&r)["summary"], "policy production-needs-approver denied the plan");

    // Nothing ran: no operation, no service state, no instances.
    let ops = json(&s.run(&["saga", "list", "--format", "json"]));
    assert_eq!(ops["data"]["operations"].as_array().map_or(0, Vec::len), 0, "{ops}");
    let status = s.run(&["status", "web", "--format", "json"]);
    assert_eq!(json(&status)["code"], "NOT_FOUND", "{}", status.stdout);
}

/// The built-in rules a spec can break, each denied on the plan compiled from a real
/// spec (production-needs-approver: the deploy test above). (no-ssh-ingress, artifact-signed-and-pinned, database-deletion-needs-snapshot
/// and irreversible-needs-approval guard what no spec or saga of this build produces —
/// the compiler never opens port 22, releases are always signed and verified first, no
/// saga deletes a database or runs an ungated irreversible step — so their denials are
/// proven on plans in skiff-policy's own tests.)
#[test]
fn real_plans_break_the_instance_and_cost_ceilings() {
    let s = Sandbox::new();
    let rule_of = |args: &[&str]| {
        let r = s.run(args);
        assert_eq!(r.code, 8, "POLICY_DENIED: {}", r.stdout);
        let v = json(&r);
        v["data"]["results"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|x| x["verdict"] == "deny")
            .map(|x| x["rule"].as_str().unwrap().to_owned())
            .collect::<Vec<_>>()
    };
    write_spec(&s, "instances: {min: 1, max: 20, desired: 2}\n");
    assert_eq!(rule_of(&["policy", "check", "--format", "json"]), ["instance-ceiling"]);
    write_spec(&s, "instances: {min: 1, max: 4, desired: 2}\n");
    write_policy(
        &s,
        "limits.json",
        r#"{"default": {"max_instances": 16, "max_monthly_usd": 5}, "environments": {"production": {"max_instances": 16, "max_monthly_usd": 5}}}"#,
    );
    let aws = ["policy", "check", "--provider", "aws", "--format", "json"];
    assert_eq!(rule_of(&aws), ["cost-ceiling"]);
}
