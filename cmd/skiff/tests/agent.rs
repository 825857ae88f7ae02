//! An agent that reads only JSON envelopes (`tests/agent/agent.py`: ask `skiff doctor`,
//! run the first recommended action whose safety it allows, repeat) recovers three
//! incidents of a real service on the local provider, each to healthy, with the
//! incident repair saga's events in the ledger:
//! (a) its instances killed and its weights zeroed;
//! (b) a secret changed so that its instances crash-loop when they restart;
//! (c) a rollout whose engine died mid-way (SIGKILL), its operation stuck.

mod common;

use std::time::Duration;

use common::*;
use skiff_pluginapi::{Provider, Weight};

const CONFIG: &str = "secret://web-cfg/config";

fn spec(s: &Sandbox, port: u16, message: &str) -> String {
    let hello = skiff_testkit::workspace_bin("hello");
    let yaml = format!(
        "service: web\nartifact: {{path: {}}}\nrun: {{command: [hello], env: {{HELLO_MESSAGE: {message}}}}}\nport: {port}\n\
         health: {{path: /healthz, interval: 1s, timeout: 500ms, healthy_threshold: 1, unhealthy_threshold: 2}}\n\
         instances: {{min: 1, max: 4, desired: 2}}\nsecrets: {{HELLO_CONFIG: {CONFIG}}}\n\
         rollout:\n  canary: {{steps: [100], bake: 0s}}\n  drain_timeout: 1s\n  step_timeout: 1m\n",
        hello.display()
    );
    std::fs::write(s.path().join("skiff.yaml"), yaml).unwrap();
    "skiff.yaml".to_owned()
}

/// SIGKILL to every runner of this sandbox's services.
fn kill_runners(s: &Sandbox) {
    let state = format!("SKIFF_STATE=file://{}", s.path().join(".skiff/state").display());
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else { continue };
        let Ok(env) = std::fs::read(format!("/proc/{pid}/environ")) else { continue };
        let vars: Vec<&[u8]> = env.split(|b| *b == 0).collect();
        let runner = std::fs::read_link(format!("/proc/{pid}/exe"))
            .is_ok_and(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("skiff-runner")));
        if runner && vars.contains(&state.as_bytes()) {
            let _ = std::process::Command::new("kill").args(["-9", &pid.to_string()]).status();
        }
    }
}

/// `skiff secrets set REF` with `value` on stdin.
fn set_secret(s: &Sandbox, value: &str) {
    use std::io::Write as _;
    let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("skiff"))
        .current_dir(s.path())
        .env("SKIFF_CONFIG", s.path().join("config.yaml"))
        .args(["secrets", "set", CONFIG, "--yes", "--format", "json"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(value.as_bytes()).unwrap();
    assert_eq!(child.wait().unwrap().code(), Some(0));
}

/// Runs the agent until doctor finds nothing; its transcript.
fn agent(s: &Sandbox, env: &[(&str, &str)]) -> Vec<serde_json::Value> {
    let out = std::process::Command::new("python3")
        .arg(repo().join("cmd/skiff/tests/agent/agent.py"))
        .args([assert_cmd::cargo::cargo_bin("skiff").display().to_string(), "web".to_owned(), "8".to_owned()])
        .current_dir(s.path())
        .env("SKIFF_CONFIG", s.path().join("config.yaml"))
        .envs(env.iter().copied())
        .output()
        .unwrap();
    let transcript: Vec<serde_json::Value> =
        String::from_utf8_lossy(&out.stdout).lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
    assert!(
        out.status.success(),
        "the agent did not recover web:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    transcript
}

/// The incident repairs that succeeded, by operation id.
fn incident_repairs(s: &Sandbox, env: &[(&str, &str)]) -> Vec<String> {
    json(&s.run_env(&["saga", "list", "--service", "web", "--format", "json"], env))["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|o| o["saga"] == "incident-repair" && o["status"] == "succeeded")
        .map(|o| o["op_id"].as_str().unwrap().to_owned())
        .collect()
}

/// The last lines each instance of `web` and the supervisor logged, for a failure's message.
fn log_tails(s: &Sandbox) -> String {
    let local = s.path().join(".skiff/local");
    let mut files = vec![skiff_provider_local::LocalDir::new(&local).supervisor_log()];
    let instances = skiff_provider_local::LocalDir::new(&local).instances_of("web");
    for group in std::fs::read_dir(instances).into_iter().flatten().flatten() {
        for i in std::fs::read_dir(group.path()).into_iter().flatten().flatten() {
            files.push(i.path().join("runner.out"));
        }
    }
    let mut out = String::new();
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        out.push_str(&format!("\n--- {}\n{}", f.display(), lines[lines.len().saturating_sub(8)..].join("\n")));
    }
    out
}

fn serves(port: u16, message: &str) -> bool {
    skiff_testkit::wait_until(Duration::from_secs(20), || {
        http_get(port, "/").is_some_and(|(code, body)| code == 200 && body.starts_with(message))
    })
}

fn ran(transcript: &[serde_json::Value], command: &str) -> bool {
    transcript.iter().any(|t| t["ran"].as_str().is_some_and(|r| r.starts_with(command)) && t["code"] == "OK")
}

#[test]
fn an_agent_reading_only_json_recovers_three_incidents_through_the_incident_saga() {
    let s = Sandbox::new();
    let owned = [
        ("SKIFF_RUNNER_BIN", skiff_testkit::workspace_bin("skiff-runner").display().to_string()),
        ("SKIFF_LEASE_TTL_MS", "1500".to_owned()),
    ];
    let env: Vec<(&str, &str)> = owned.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let _stop = StopAll(&s, vec![]);
    let port = skiff_testkit::free_port();
    set_secret(&s, r#"{"greeting": "hi"}"#);
    let file = spec(&s, port, "one");
    let d = s.run_env(&["deploy", "-f", &file, "--yes", "--format", "json"], &env);
    assert_eq!(d.code, 0, "{}", d.stdout);
    let release = json(&d)["data"]["release"].as_str().unwrap().to_owned();
    let group = skiff_steps::deploy::group_name("web", &release);
    assert!(serves(port, "one"));

    // (a) Instances killed, weights zeroed.
    kill_runners(&s);
    let provider = skiff_provider_local::LocalProvider::new(
        skiff_provider_local::LocalDir::new(s.path().join(".skiff/local")),
        ledger(s.path()),
    );
    block(provider.traffic().set_weights("web", &[Weight { target_group: group.clone(), weight: 0 }])).unwrap();
    let t = agent(&s, &env);
    assert!(ran(&t, "skiff repair incident web"), "{t:#?}");
    assert!(serves(port, "one"), "web serves again");
    assert_eq!(incident_repairs(&s, &env).len(), 1);

    // (b) The config secret changed to something the service cannot read; its
    // instances crash-loop once they restart.
    set_secret(&s, "not json");
    kill_runners(&s);
    let unwell = skiff_testkit::wait_until(Duration::from_secs(30), || {
        json(&s.run_env(&["doctor", "web", "--format", "json"], &env))["facts"]
            .as_array()
            .is_some_and(|f| f.iter().any(|x| x.as_str().is_some_and(|x| x.contains("crash looping"))))
    });
    assert!(unwell, "the instances crash-loop");
    let t = agent(&s, &env);
    assert!(ran(&t, "skiff repair incident web"), "{t:#?}");
    assert!(serves(port, "one"));
    let repairs = incident_repairs(&s, &env);
    assert_eq!(repairs.len(), 2);
    // Newest first: this incident's repair put the secret back and replaced the instances.
    let shown = json(&s.run(&["saga", "show", &repairs[0], "--format", "json"]));
    let steps: Vec<&str> =
        shown["data"]["steps"].as_array().unwrap().iter().map(|x| x["id"].as_str().unwrap()).collect();
    assert!(steps.contains(&"secret-revert") && steps.contains(&"restart"), "{steps:?}");

    // (c) A rollout killed mid-way: its operation is stuck until its lease runs out.
    let file = spec(&s, port, "two");
    let marker = s.path().join("frozen");
    let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("skiff"))
        .current_dir(s.path())
        .env("SKIFF_CONFIG", s.path().join("config.yaml"))
        .env("SKIFF_FREEZE_AT", "after:result:register")
        .env("SKIFF_FREEZE_MARKER", &marker)
        .envs(env.iter().copied())
        .args(["deploy", "-f", &file, "--yes", "--format", "json"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let reached = skiff_testkit::wait_until(Duration::from_secs(60), || marker.exists());
    let _ = child.kill();
    let _ = child.wait();
    assert!(reached, "the rollout reached its register step");
    let stuck = skiff_testkit::wait_until(Duration::from_secs(20), || {
        json(&s.run_env(&["doctor", "web", "--format", "json"], &env))["code"] == "LEASE_HELD"
    });
    assert!(stuck, "doctor sees the stuck operation");
    let t = agent(&s, &env);
    assert!(ran(&t, "skiff repair incident web"), "{t:#?}");
    assert!(serves(port, "two"), "the resumed rollout finished: two serves");
    assert_eq!(incident_repairs(&s, &env).len(), 3);
    assert_eq!(s.run(&["state", "verify"]).code, 0);
}

/// SIGKILL of `skiff repair incident` at the step boundaries around its effects, then
/// `skiff saga resume`: the secret is put back exactly once (a second swap would
/// break it again), the service ends healthy, the ledger verifies.
#[test]
fn the_incident_saga_killed_at_its_step_boundaries_resumes_to_one_repair() {
    let s = Sandbox::new();
    let owned = [
        ("SKIFF_RUNNER_BIN", skiff_testkit::workspace_bin("skiff-runner").display().to_string()),
        ("SKIFF_LEASE_TTL_MS", "1500".to_owned()),
    ];
    let env: Vec<(&str, &str)> = owned.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let _stop = StopAll(&s, vec![]);
    let port = skiff_testkit::free_port();
    set_secret(&s, r#"{"greeting": "hi"}"#);
    let file = spec(&s, port, "one");
    assert_eq!(s.run_env(&["deploy", "-f", &file, "--yes", "--format", "json"], &env).code, 0);
    let points = [
        "after:step_started:evidence",
        "after:step_started:secret-revert",
        "after:result:secret-revert",
        "after:step_started:restart",
        "after:result:restart",
        "after:result:verify",
    ];
    let provider = skiff_provider_local::LocalProvider::new(
        skiff_provider_local::LocalDir::new(s.path().join(".skiff/local")),
        ledger(s.path()),
    );
    for (n, point) in points.iter().enumerate() {
        set_secret(&s, "not json");
        // Replaced through the supervisor (deliberate stops do not slow replacements).
        block(async {
            let g = provider.compute().list_groups("web").await.unwrap();
            for g in g {
                for i in g.running() {
                    provider.compute().terminate_instance(&g.name, &i.id).await.unwrap();
                }
            }
        });
        let unwell = skiff_testkit::wait_until(Duration::from_secs(30), || {
            json(&s.run_env(&["doctor", "web", "--format", "json"], &env))["facts"]
                .as_array()
                .is_some_and(|f| f.iter().any(|x| x.as_str().is_some_and(|x| x.contains("crash looping"))))
        });
        assert!(unwell, "round {n}: the instances crash-loop");
        let marker = s.path().join(format!("frozen-{n}"));
        let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("skiff"))
            .current_dir(s.path())
            .env("SKIFF_CONFIG", s.path().join("config.yaml"))
            .env("SKIFF_FREEZE_AT", point)
            .env("SKIFF_FREEZE_MARKER", &marker)
            .envs(env.iter().copied())
            .args(["repair", "incident", "web", "--yes", "--format", "json"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let reached = skiff_testkit::wait_until(Duration::from_secs(60), || marker.exists());
        let _ = child.kill();
        let _ = child.wait();
        assert!(reached, "never reached {point}");
        let op = json(&s.run_env(&["saga", "list", "--service", "web", "--format", "json"], &env))["data"]
            .as_array()
            .unwrap()
            .iter()
            .find(|o| o["saga"] == "incident-repair" && o["status"] != "succeeded")
            .and_then(|o| o["op_id"].as_str())
            .map(str::to_owned);
        if let Some(op) = op {
            let resumed = json(&s.run_env(&["saga", "resume", &op, "--yes", "--format", "json"], &env));
            assert_eq!(resumed["code"], "OK", "round {n} at {point}: {resumed}{}", log_tails(&s));
        }
        assert!(serves(port, "one"), "round {n} at {point}: web serves");
        let secrets = skiff_secrets::LocalSecrets::new(
            skiff_provider_local::LocalDir::new(s.path().join(".skiff/local")).secrets(),
        );
        assert_eq!(
            secrets.get(CONFIG).unwrap().as_deref(),
            Some(r#"{"greeting": "hi"}"#),
            "round {n} at {point}: put back exactly once"
        );
        // The next round breaks it from the good value again.
        set_secret(&s, r#"{"greeting": "hi"}"#);
    }
    assert_eq!(incident_repairs(&s, &env).len(), points.len());
    assert_eq!(s.run(&["state", "verify"]).code, 0);
}
