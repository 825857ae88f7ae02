//! `skiff reconcile` on the local provider with real runner processes: in sync after a
//! deploy, DRIFTED with field-level differences when the provider is changed behind the
//! ledger's back, in sync again after the repair it names.

mod common;

use std::time::Duration;

use common::*;
use skiff_pluginapi::{Provider, Weight};

fn spec(s: &Sandbox, port: u16) -> String {
    let hello = skiff_testkit::workspace_bin("hello");
    let yaml = format!(
        "service: web\nartifact: {{path: {}}}\nrun: {{command: [hello]}}\nport: {port}\n\
         health: {{path: /healthz, interval: 1s, timeout: 500ms, healthy_threshold: 1, unhealthy_threshold: 2}}\n\
         instances: {{min: 1, max: 4, desired: 2}}\n\
         rollout:\n  canary: {{steps: [100], bake: 0s}}\n  drain_timeout: 1s\n  step_timeout: 1m\n",
        hello.display()
    );
    std::fs::write(s.path().join("skiff.yaml"), yaml).unwrap();
    "skiff.yaml".to_owned()
}

#[test]
fn reconcile_finds_drift_behind_the_ledgers_back_and_the_named_repair_fixes_it() {
    let s = Sandbox::new();
    let env = [
        ("SKIFF_RUNNER_BIN", skiff_testkit::workspace_bin("skiff-runner").display().to_string()),
        ("SKIFF_LEASE_TTL_MS", "1500".to_owned()),
    ];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let _stop = StopAll(&s, vec![]);
    let file = spec(&s, skiff_testkit::free_port());
    let d = s.run_env(&["deploy", "-f", &file, "--yes", "--format", "json"], &env);
    assert_eq!(d.code, 0, "{}", d.stdout);
    let release = json(&d)["data"]["release"].as_str().unwrap().to_owned();

    let ok = s.run_env(&["reconcile", "web", "--format", "json"], &env);
    assert_eq!(ok.code, 0, "{}", ok.stdout);
    assert_eq!(json(&ok)["summary"], "web IN_SYNC");
    let status = json(&s.run_env(&["status", "web", "--format", "json"], &env));
    assert!(status["facts"].as_array().unwrap().iter().any(|f| f == "last reconcile: IN_SYNC"), "{status}");

    // Behind the ledger's back: one instance fewer, and the weights pointed nowhere.
    let ledger = ledger(s.path());
    let provider = skiff_provider_local::LocalProvider::new(
        skiff_provider_local::LocalDir::new(s.path().join(".skiff/local")),
        ledger.clone(),
    );
    let group = skiff_steps::deploy::group_name("web", &release);
    block(async {
        provider.compute().set_desired(&group, 1).await.unwrap();
        provider.traffic().set_weights("web", &[Weight { target_group: group.clone(), weight: 0 }]).await.unwrap();
    });
    assert!(skiff_testkit::wait_until(Duration::from_secs(20), || {
        block(async { provider.compute().describe_group(&group).await.unwrap().unwrap().running().len() == 1 })
    }));
    let drifted = s.run_env(&["reconcile", "--format", "json"], &env);
    assert_eq!(drifted.code, 24, "DRIFTED: {}", drifted.stdout);
    let v = json(&drifted);
    let paths: Vec<&str> = v["data"]["services"][0]["differences"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["path"].as_str().unwrap())
        .collect();
    assert_eq!(paths, ["instances.desired", "instances.running", "traffic.weights"], "{}", drifted.stdout);
    let commands: Vec<&str> =
        v["recommended_actions"].as_array().unwrap().iter().map(|a| a["command"].as_str().unwrap()).collect();
    assert!(commands.contains(&format!("skiff rollback web --to {release} --yes").as_str()), "{commands:?}");
    assert!(commands.contains(&"skiff deploy -f skiff.yaml --yes"), "{commands:?}");
    let shown = human(&s.run_env(&["reconcile", "web"], &env));
    let shown = regex::Regex::new(r"\d{4}[.-]\d{2}[.-]\d{2}[.-]\d+").unwrap().replace_all(&shown, "[RELEASE]");
    insta::assert_snapshot!("reconcile-drifted", shown);
    let recorded: skiff_state::docs::ReconcileDoc =
        block(ledger.read(&skiff_state::keys::service_reconcile("web"))).unwrap().unwrap();
    assert_eq!(recorded.status, skiff_state::docs::SyncStatus::Drifted);

    // The repair saga scales the group back and re-applies the weights, read back.
    let unconfirmed = s.run_env(&["reconcile", "web", "--repair", "--format", "json"], &env);
    assert_eq!(unconfirmed.code, 10, "CONFIRMATION_REQUIRED: {}", unconfirmed.stdout);
    let repaired = s.run_env(&["reconcile", "web", "--repair", "--yes", "--format", "json"], &env);
    assert_eq!(repaired.code, 0, "{}", repaired.stdout);
    let r = json(&repaired);
    assert_eq!(r["summary"], "repaired web: IN_SYNC");
    let facts: Vec<&str> = r["facts"].as_array().unwrap().iter().map(|f| f.as_str().unwrap()).collect();
    assert!(facts.iter().any(|f| f.starts_with("repaired instances.running")), "{facts:?}");
    assert!(facts.iter().any(|f| f.starts_with("repaired traffic.weights")), "{facts:?}");
    block(async {
        assert_eq!(provider.compute().describe_group(&group).await.unwrap().unwrap().running().len(), 2);
        let w = provider.traffic().weights("web").await.unwrap();
        assert_eq!(w, [Weight { target_group: group.clone(), weight: 100 }]);
    });
    let op = r["operation_id"].as_str().unwrap();
    let shown = json(&s.run(&["saga", "show", op, "--format", "json"]));
    assert_eq!(shown["data"]["saga"], "repair", "{shown}");
    // In sync: nothing to repair.
    let again = s.run_env(&["reconcile", "web", "--repair", "--yes", "--format", "json"], &env);
    assert_eq!(again.code, 0, "{}", again.stdout);
    assert_eq!(json(&again)["summary"], "web IN_SYNC; nothing to repair");
    // A new deploy (the other named repair) also leaves it in sync.
    let redeployed = s.run_env(&["deploy", "-f", &file, "--yes", "--format", "json"], &env);
    assert_eq!(redeployed.code, 0, "{}", redeployed.stdout);
    assert_eq!(s.run_env(&["reconcile", "web"], &env).code, 0);
    assert_eq!(s.run(&["state", "verify"]).code, 0);
}
