use proptest::prelude::*;

use super::*;

fn plan() -> PlanInput {
    PlanInput {
        action: "deploy".into(),
        service: "web".into(),
        environment: "production".into(),
        provider: "aws".into(),
        actor: Actor { name: "ada".into(), roles: vec!["operator".into(), "approver".into()] },
        release: Some(ReleaseFacts {
            id: "2026.11.23.1".into(),
            signature_verified: true,
            artifact_digest: Some(format!("sha256:{}", "a".repeat(64))),
        }),
        instances: Instances { desired: 3, max: 6, instance_type: "t3.small".into(), spot: false },
        ingress: vec![Ingress { port: 8080, from: "load-balancer".into() }],
        steps: vec![
            StepFacts {
                id: "provision".into(),
                kind: "deploy.provision".into(),
                safety: "reversible".into(),
                approval: false,
                routine: false,
            },
            StepFacts {
                id: "retire".into(),
                kind: "deploy.retire".into(),
                safety: "irreversible".into(),
                approval: false,
                routine: true,
            },
        ],
        database_deletions: Vec::new(),
        resources: serde_json::json!([]),
        cost: Some(CostFacts { monthly_usd: 120.0, at_max_usd: 240.0, unpriced: Vec::new() }),
    }
}

fn denied(report: &Report) -> Vec<&str> {
    report.denials().map(|r| r.rule.as_str()).collect()
}

#[test]
fn a_sound_plan_passes_every_builtin_rule() {
    let r = Policy::builtin().check(&plan()).unwrap();
    assert!(r.allowed, "{r:#?}");
    assert_eq!(r.results.len(), 7);
}

#[test]
fn each_builtin_rule_denies_what_it_guards_with_a_fix() {
    let p = Policy::builtin();
    type Change = Box<dyn Fn(&mut PlanInput)>;
    let cases: Vec<(&str, Change)> = vec![
        ("no-ssh-ingress", Box::new(|i| i.ingress.push(Ingress { port: 22, from: "0.0.0.0/0".into() }))),
        ("artifact-signed-and-pinned", Box::new(|i| i.release.as_mut().unwrap().signature_verified = false)),
        (
            "artifact-signed-and-pinned",
            Box::new(|i| i.release.as_mut().unwrap().artifact_digest = Some("latest".into())),
        ),
        ("instance-ceiling", Box::new(|i| i.instances.max = 51)),
        (
            "cost-ceiling",
            Box::new(|i| {
                i.cost = Some(CostFacts { monthly_usd: 3_000.0, at_max_usd: 6_000.0, unpriced: Vec::new() });
            }),
        ),
        (
            "database-deletion-needs-snapshot",
            Box::new(|i| {
                i.database_deletions.push(DatabaseDeletion { id: "db".into(), snapshot_age_ms: None });
            }),
        ),
        (
            "database-deletion-needs-snapshot",
            Box::new(|i| {
                i.database_deletions.push(DatabaseDeletion { id: "db".into(), snapshot_age_ms: Some(25 * 3_600_000) });
            }),
        ),
        ("irreversible-needs-approval", Box::new(|i| i.steps[1].routine = false)),
        ("production-needs-approver", Box::new(|i| i.actor.roles = vec!["operator".into()])),
    ];
    for (rule, change) in cases {
        let mut input = plan();
        change(&mut input);
        let r = p.check(&input).unwrap();
        assert_eq!(denied(&r), [rule], "{r:#?}");
        let d = r.denials().next().unwrap();
        assert!(d.fix.as_deref().is_some_and(|f| !f.is_empty()), "{rule} says what to do");
    }
}

#[test]
fn the_local_provider_has_its_own_ceiling_and_no_cost() {
    let mut input = plan();
    input.provider = "local".into();
    input.instances.max = builtin::LOCAL_MAX_INSTANCES + 1;
    let r = Policy::builtin().check(&input).unwrap();
    assert_eq!(denied(&r), ["instance-ceiling"]);
    let cost = r.results.iter().find(|x| x.rule == "cost-ceiling").unwrap();
    assert_eq!(cost.verdict, Verdict::Skip);
}

#[test]
fn a_fresh_snapshot_allows_a_deletion_and_checks_skip_the_actor() {
    let mut input = plan();
    input.database_deletions.push(DatabaseDeletion { id: "db".into(), snapshot_age_ms: Some(3_600_000) });
    assert!(Policy::builtin().check(&input).unwrap().allowed);
    input.action = "check".into();
    input.actor.roles.clear();
    input.release = None;
    assert!(Policy::builtin().check(&input).unwrap().allowed);
}

fn dir_with(files: &[(&str, &str)]) -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    for (name, text) in files {
        std::fs::write(d.path().join(name), text).unwrap();
    }
    d
}

#[test]
fn rego_policies_deny_with_rule_reason_and_fix() {
    let d = dir_with(&[
        (
            "spot.rego",
            r#"package skiff.spot
deny contains {"rule": "spot-in-production", "reason": "production runs on-demand capacity", "fix": "set intent.cost to balanced"} if {
    input.environment == "production"
    input.instances.spot
}
"#,
        ),
        (
            "team.rego",
            r#"package skiff.team
deny contains msg if {
    not startswith(input.service, "web")
    msg := sprintf("service %s is not owned by the web team", [input.service])
}
"#,
        ),
    ]);
    let p = Policy::load(d.path()).unwrap();
    assert_eq!(p.files().len(), 2);
    let ok = p.check(&plan()).unwrap();
    assert!(ok.allowed, "{ok:#?}");
    assert_eq!(ok.results.iter().filter(|r| r.source.ends_with(".rego")).count(), 2, "each file reports");

    let mut input = plan();
    input.instances.spot = true;
    input.service = "billing".into();
    let r = p.check(&input).unwrap();
    assert_eq!(denied(&r), ["spot-in-production", "skiff.team"]);
    let spot = r.denials().next().unwrap();
    assert_eq!(spot.fix.as_deref(), Some("set intent.cost to balanced"));
    assert!(spot.source.ends_with("spot.rego"));
    let team = r.denials().nth(1).unwrap();
    assert_eq!(team.reason, "service billing is not owned by the web team");
}

#[test]
fn a_policy_that_does_not_parse_names_its_file_and_line() {
    let d = dir_with(&[("bad.rego", "package skiff.bad\n\ndeny contains msg if {\n  input.x ==\n}\n")]);
    let e = Policy::load(d.path()).unwrap_err();
    let text = e.to_string();
    assert!(text.contains("bad.rego"), "{text}");
    assert!(text.contains(":4") || text.contains("line 4") || text.contains(":5"), "{text}");
}

#[test]
fn the_cost_ceiling_judges_the_estimate_at_its_maximum_and_skips_what_has_no_price() {
    let verdict = |cost: Option<CostFacts>| {
        let r = Policy::builtin().check(&PlanInput { cost, ..plan() }).unwrap();
        r.results.into_iter().find(|x| x.rule == "cost-ceiling").unwrap()
    };
    let at = |at_max_usd| Some(CostFacts { monthly_usd: 1.0, at_max_usd, unpriced: Vec::new() });
    assert_eq!(verdict(at(5_000.0)).verdict, Verdict::Pass, "the ceiling itself is allowed");
    let over = verdict(at(5_000.01));
    assert_eq!(over.verdict, Verdict::Deny);
    assert!(over.reason.contains("$5000.01/month") && over.reason.contains("$5000.00"), "{}", over.reason);
    assert_eq!(verdict(None).verdict, Verdict::Skip);
    let unpriced = verdict(Some(CostFacts { unpriced: vec!["instance-group/web".into()], ..at(9e9).unwrap() }));
    assert_eq!(unpriced.verdict, Verdict::Skip);
    assert!(unpriced.reason.contains("instance-group/web"), "{}", unpriced.reason);
}

#[test]
fn a_policy_without_deny_is_refused_at_load() {
    let d = dir_with(&[("nodeny.rego", "package skiff.nodeny\n\nallow := true\n")]);
    let e = Policy::load(d.path()).unwrap_err();
    assert!(e.to_string().contains("nodeny.rego"), "{e}");
}

#[test]
fn limits_json_overrides_ceilings_and_bad_limits_are_named() {
    let d = dir_with(&[(
        "limits.json",
        r#"{"default": {"max_instances": 2, "max_monthly_usd": 10}, "environments": {"production": {"max_instances": 4, "max_monthly_usd": 300}}}"#,
    )]);
    let p = Policy::load(d.path()).unwrap();
    let r = p.check(&plan()).unwrap();
    assert_eq!(denied(&r), ["instance-ceiling"], "6 > 4");
    let d = dir_with(&[("limits.json", r#"{"default": {"max_instances": "many"}}"#)]);
    let e = Policy::load(d.path()).unwrap_err().to_string();
    assert!(e.contains("limits.json") && e.contains("line 1"), "{e}");
}

#[test]
fn no_policy_directory_means_builtin_rules_only() {
    let p = Policy::load(Path::new("/nonexistent/policies")).unwrap();
    assert!(p.files().is_empty());
}

proptest! {
    /// Allowed exactly when no rule denies, and the verdicts never depend on the order
    /// of the plan's steps.
    #[test]
    fn allowed_means_no_denial(
        max in 0u32..80,
        ssh in any::<bool>(),
        verified in any::<bool>(),
        approver in any::<bool>(),
        reversed in any::<bool>(),
    ) {
        let mut input = plan();
        input.instances.max = max;
        if ssh { input.ingress.push(Ingress { port: 22, from: "10.0.0.0/8".into() }); }
        input.release.as_mut().unwrap().signature_verified = verified;
        if !approver { input.actor.roles.retain(|r| r != "approver"); }
        let r = Policy::builtin().check(&input).unwrap();
        prop_assert_eq!(r.allowed, r.denials().next().is_none());
        prop_assert_eq!(r.allowed, max <= 50 && !ssh && verified && approver);
        if reversed { input.steps.reverse(); }
        let again = Policy::builtin().check(&input).unwrap();
        prop_assert_eq!(again.allowed, r.allowed);
    }
}
