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

/// Security drift on the local provider, made by editing its state by hand: the
/// group's launch settings and the load balancer's target groups in the supervisor's
/// state file (while it is down; the instances run on), the role's permissions, the
/// state directory's mode and a secret's value. Each is DRIFTED with its path and
/// severity; the repair saga fixes the reversible ones; the secret needs a person.
#[test]
fn security_drift_on_the_local_provider_is_found_and_repaired() {
    let s = Sandbox::new();
    let env = [
        ("SKIFF_RUNNER_BIN", skiff_testkit::workspace_bin("skiff-runner").display().to_string()),
        ("SKIFF_LEASE_TTL_MS", "1500".to_owned()),
    ];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let _stop = StopAll(&s, vec![]);
    let secret = |args: &[&str], value: &str| {
        use std::io::Write as _;
        let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("skiff"))
            .current_dir(s.path())
            .env("SKIFF_CONFIG", s.path().join("config.yaml"))
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(value.as_bytes()).unwrap();
        child.wait().unwrap().code()
    };
    assert_eq!(s.run(&["state", "init", "--yes"]).code, 0);
    assert_eq!(secret(&["secrets", "set", "secret://web-cfg/token", "--yes"], "t0ken"), Some(0));
    let file = spec(&s, skiff_testkit::free_port());
    let text = std::fs::read_to_string(s.path().join(&file)).unwrap() + "secrets: {TOKEN: secret://web-cfg/token}\n";
    std::fs::write(s.path().join(&file), text).unwrap();
    let d = s.run_env(&["deploy", "-f", &file, "--yes", "--format", "json"], &env);
    assert_eq!(d.code, 0, "{}", d.stdout);
    let release = json(&d)["data"]["release"].as_str().unwrap().to_owned();
    let group = skiff_steps::deploy::group_name("web", &release);
    let clean = s.run_env(&["reconcile", "web", "--format", "json"], &env);
    assert_eq!(clean.code, 0, "in sync after a deploy: {}", clean.stdout);

    // By hand: the supervisor's state edited while it is down.
    let down = json(&s.run(&["local", "down", "--format", "json"]));
    let pid: u32 =
        down["summary"].as_str().unwrap().rsplit("pid ").next().unwrap().trim_end_matches(')').parse().unwrap();
    assert!(skiff_testkit::wait_until(Duration::from_secs(10), || !alive(pid)), "the supervisor exited");
    let local = s.path().join(".skiff/local");
    let state_file = skiff_provider_local::LocalDir::new(&local).supervisor_state();
    let mut st: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&state_file).unwrap()).unwrap();
    st["groups"][&group]["spec"]["launch"]["env"]["SKIFF_HOST"] = "0.0.0.0".into();
    let tg = st["target_groups"][&group].clone();
    st["target_groups"][&group][1]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({"id": "i-rogue", "address": "127.0.0.1", "port": 9}));
    let mut shadow = tg.clone();
    shadow[0]["name"] = "web-shadow".into();
    st["target_groups"]["web-shadow"] = shadow;
    std::fs::write(&state_file, serde_json::to_vec_pretty(&st).unwrap()).unwrap();
    let role = local.join("identity/skiff-production-web.json");
    let mut r: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&role).unwrap()).unwrap();
    r["permissions"].as_array_mut().unwrap().push(serde_json::json!({"action": "*", "resource": "*"}));
    std::fs::write(&role, serde_json::to_vec(&r).unwrap()).unwrap();
    let state_dir = s.path().join(".skiff/state");
    std::fs::set_permissions(&state_dir, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    skiff_secrets::LocalSecrets::new(skiff_provider_local::LocalDir::new(&local).secrets())
        .put("secret://web-cfg/token", "changed-behind-skiffs-back")
        .unwrap();
    assert_eq!(s.run(&["local", "up"]).code, 0);

    let drifted = json(&s.run_env(&["reconcile", "web", "--format", "json"], &env));
    assert_eq!(drifted["code"], "DRIFTED", "{drifted}");
    let found: Vec<(String, String)> = drifted["data"]["services"][0]["differences"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| (d["path"].as_str().unwrap().to_owned(), d["severity"].as_str().unwrap().to_owned()))
        .collect();
    for (path, severity) in [
        ("identity.permissions", "critical"),
        ("launch", "high"),
        ("traffic.targets", "critical"),
        ("traffic.target_groups", "high"),
        ("state.permissions", "critical"),
        ("secrets.secret://web-cfg/token", "high"),
    ] {
        assert!(found.contains(&(path.to_owned(), severity.to_owned())), "{path} [{severity}] in {found:?}");
    }

    // What the ledger recorded (the CLI's output names the sandbox as `[TMP]`).
    let recorded: skiff_state::docs::ReconcileDoc =
        block(ledger(s.path()).read(&skiff_state::keys::service_reconcile("web"))).unwrap().unwrap();
    let repaired = json(&s.run_env(&["reconcile", "web", "--repair", "--yes", "--format", "json"], &env));
    assert!(repaired["summary"].as_str().unwrap().starts_with("repaired what a step can"), "{repaired}");
    let after = json(&s.run_env(&["reconcile", "web", "--format", "json"], &env));
    let left: Vec<&str> = after["data"]["services"][0]["differences"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["path"].as_str().unwrap())
        .collect();
    assert_eq!(left, ["secrets.secret://web-cfg/token"], "{after}");
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&state_dir).unwrap().permissions());
    assert_eq!(mode & 0o022, 0, "{mode:o}");
    let op = repaired["operation_id"].as_str().unwrap();
    let shown = json(&s.run(&["saga", "show", op, "--format", "json"]));
    let fixes = shown["data"]["steps"].as_array().unwrap().iter().filter(|x| x["kind"] == "repair.fix").count();
    assert_eq!(fixes, 5, "{shown}");

    // Every fix is reversible: its undo (what compensation runs) brings the drift back.
    let provider =
        skiff_provider_local::LocalProvider::new(skiff_provider_local::LocalDir::new(&local), ledger(s.path()));
    block(async {
        for d in &recorded.differences {
            let Some(fix) = &d.fix else { continue };
            if fix.undo["kind"] == "ensure_role" {
                let role: skiff_pluginapi::RoleSpec = serde_json::from_value(fix.undo["role"].clone()).unwrap();
                provider.identity().ensure_role(&role).await.unwrap();
            } else {
                provider.posture().unwrap().fix(&fix.undo).await.unwrap_or_else(|e| panic!("undo {}: {e}", d.path));
            }
        }
    });
    let again = json(&s.run_env(&["reconcile", "web", "--format", "json"], &env));
    let back: Vec<&str> = again["data"]["services"][0]["differences"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["path"].as_str().unwrap())
        .collect();
    for path in ["identity.permissions", "launch", "traffic.targets", "traffic.target_groups", "state.permissions"] {
        assert!(back.contains(&path), "{path} is back after its undo: {back:?}");
    }
    let repaired = json(&s.run_env(&["reconcile", "web", "--repair", "--yes", "--format", "json"], &env));
    assert!(repaired["summary"].as_str().unwrap().starts_with("repaired what a step can"), "{repaired}");
    assert_eq!(secret(&["secrets", "set", "secret://web-cfg/token", "--yes"], "changed-behind-skiffs-back"), Some(0));
    assert_eq!(s.run_env(&["reconcile", "web"], &env).code, 0);
    assert_eq!(s.run(&["state", "verify"]).code, 0);
}
