//! End-to-end tests of `skiff keys`, `skiff release`, `skiff secrets` and `skiff local`
//! with real processes: signed releases verify and tampering is caught; the local
//! supervisor outlives the CLI, and a new CLI process finds everything it runs.

mod common;

use std::collections::BTreeMap;
use std::io::Write;
use std::time::Duration;

use common::*;
use skiff_pluginapi::{
    Compute, GroupSpec, HealthCheck, HealthState, LaunchConfig, LoadBalancerSpec, RunnerConfig, Target,
    TargetGroupSpec, Traffic, Weight,
};
use skiff_provider_local::{LocalDir, LocalProvider};

/// Redactions for release output: digests, sizes and dated release ids.
fn stable(text: &str) -> String {
    let rules = [
        (r"sha256:[0-9a-f]{64}", "sha256:[DIGEST]"),
        (r"sha256:[0-9a-f]{12}\b", "sha256:[SHORT]"),
        (r"\b[0-9a-f]{64}\b", "[HEX]"),
        (r"\(\d+ bytes\)", "([N] bytes)"),
        (r"\b\d{4}\.\d{2}\.\d{2}\.(\d+)\b", "[DATE].$1"),
    ];
    rules
        .iter()
        .fold(text.to_owned(), |t, (re, with)| regex::Regex::new(re).unwrap().replace_all(&t, *with).into_owned())
}

fn hello_spec(s: &Sandbox, service: &str) -> std::path::PathBuf {
    let hello = skiff_testkit::workspace_bin("hello");
    let path = s.path().join(format!("{service}.yaml"));
    let yaml = format!(
        "service: {service}\nartifact: {{path: {}}}\nrun: {{command: [hello], env: {{HELLO_MESSAGE: hi from the local provider}}}}\nport: 8080\nhealth: {{path: /healthz, interval: 1s, timeout: 500ms, healthy_threshold: 1}}\n",
        hello.display()
    );
    std::fs::write(&path, yaml).unwrap();
    path
}

#[test]
fn keys_and_signed_releases_verify_and_tampering_is_caught() {
    let s = Sandbox::new();
    assert_eq!(s.run(&["state", "init", "--yes"]).code, 0);

    // Releasing without a key says how to get one.
    let spec = hello_spec(&s, "hello");
    let spec = spec.to_str().unwrap();
    let r = s.run(&["release", "create", "-f", spec, "--yes"]);
    insta::assert_snapshot!("release-create-no-key", human(&r));

    insta::assert_snapshot!("keys-generate", human(&s.run(&["keys", "generate"])));
    let again = s.run(&["keys", "generate", "--format", "json"]);
    assert_eq!(again.code, 5, "ALREADY_EXISTS");
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(s.path().join(".skiff/keys/cosign.key")).unwrap().permissions(),
    );
    assert_eq!(mode & 0o777, 0o600, "the private key is private");

    // Mutating without a terminal needs --yes.
    assert_eq!(s.run(&["release", "create", "-f", spec]).code, 10);
    let created = s.run(&["release", "create", "-f", spec, "--yes"]);
    assert_eq!(created.code, 0, "{}", created.stderr);
    insta::assert_snapshot!("release-create", stable(&human(&created)));
    let second = json(&s.run(&["release", "create", "-f", spec, "--yes", "--format", "json"]));
    let release = second["data"]["manifest"]["release"].as_str().unwrap().to_owned();
    assert!(release.ends_with(".2"), "release ids count up within a day: {release}");

    insta::assert_snapshot!("release-list", stable(&human(&s.run(&["release", "list"]))));
    let shown = json(&s.run(&["release", "show", "hello", "--format", "json"]));
    assert_eq!(shown["data"]["manifest"]["release"], release.as_str(), "show defaults to the newest");
    assert_eq!(shown["data"]["signed"], true);
    insta::assert_snapshot!("release-verify", stable(&human(&s.run(&["release", "verify", "hello", &release]))));

    // A key the release was not signed with: SIGNATURE_INVALID.
    let other = s
        .run_env(&["keys", "generate"], &[("SKIFF_KEY", "other/cosign.key"), ("SKIFF_PUBLIC_KEY", "other/cosign.pub")]);
    assert_eq!(other.code, 0);
    let wrong =
        s.run(&["release", "verify", "hello", &release, "--public-key", "other/cosign.pub", "--format", "json"]);
    assert_eq!(wrong.code, 16, "{}", wrong.stdout);
    assert_eq!(json(&wrong)["code"], "SIGNATURE_INVALID");

    // A changed artifact blob: DIGEST_MISMATCH, and state verify finds it too.
    let digest =
        shown["data"]["manifest"]["artifact"]["digest"].as_str().unwrap().trim_start_matches("sha256:").to_owned();
    let blob = walk(&s.path().join(".skiff/state")).into_iter().find(|p| p.ends_with(&digest)).expect("artifact blob");
    std::fs::write(&blob, b"#!/bin/sh\necho pwned\n").unwrap();
    let tampered = s.run(&["release", "verify", "hello", &release]);
    assert_eq!(tampered.code, 17);
    insta::assert_snapshot!("release-verify-tampered", stable(&human(&tampered)));

    let missing = s.run(&["release", "show", "nope", "--format", "json"]);
    assert_eq!(missing.code, 4);
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() { out.extend(walk(&p)) } else { out.push(p) }
    }
    out
}

#[test]
fn secrets_are_stored_encrypted_and_never_printed() {
    let s = Sandbox::new();
    let set = |reference: &str, value: &str, yes: bool| {
        let bin = assert_cmd::cargo::cargo_bin("skiff");
        let mut args = vec!["secrets", "set", reference];
        if yes {
            args.push("--yes");
        }
        let mut child = std::process::Command::new(bin)
            .current_dir(s.path())
            .env("SKIFF_CONFIG", s.path().join("config.yaml"))
            .args(&args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(value.as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        let text =
            s.redact(&format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)));
        format!("exit {}\n{text}", out.status.code().unwrap())
    };
    insta::assert_snapshot!("secrets-set", set("secret://orders-db/url", "postgres://u:hunter2@db/orders\n", false));
    insta::assert_snapshot!("secrets-set-replace-unconfirmed", set("secret://orders-db/url", "other", false));
    assert!(set("secret://orders-db/password", "hunter2", false).starts_with("exit 0"));
    assert!(set("secret://billing/token", "t0k", false).starts_with("exit 0"));
    insta::assert_snapshot!("secrets-set-bad-reference", set("orders-db/url", "x", false));
    insta::assert_snapshot!("secrets-set-empty", set("secret://x/y", "", false));

    insta::assert_snapshot!("secrets-list", human(&s.run(&["secrets", "list", "orders-db"])));
    let all = json(&s.run(&["secrets", "list", "--format", "json"]));
    assert_eq!(all["data"]["references"].as_array().unwrap().len(), 3);

    // Values are encrypted at rest: not in any file of the store.
    for f in walk(&s.path().join(".skiff/local/secrets")) {
        let bytes = std::fs::read(&f).unwrap();
        let text = String::from_utf8_lossy(&bytes);
        assert!(!text.contains("hunter2"), "{} holds a plaintext value", f.display());
    }
    let store = skiff_secrets::LocalSecrets::new(s.path().join(".skiff/local/secrets"));
    assert_eq!(store.get("secret://orders-db/url").unwrap().as_deref(), Some("postgres://u:hunter2@db/orders"));

    assert_eq!(s.run(&["secrets", "delete", "secret://billing/token"]).code, 10, "delete needs --yes");
    insta::assert_snapshot!("secrets-delete", human(&s.run(&["secrets", "delete", "secret://billing/token", "--yes"])));
    assert_eq!(s.run(&["secrets", "delete", "secret://billing/token", "--yes"]).code, 0, "idempotent");
}

fn group_spec(s: &Sandbox, release: &str) -> GroupSpec {
    let public_key_pem = std::fs::read_to_string(s.path().join(".skiff/keys/cosign.pub")).unwrap();
    GroupSpec {
        name: "web-g1".into(),
        service: "web".into(),
        release: release.to_owned(),
        desired: 2,
        zones: vec!["local-a".into(), "local-b".into()],
        launch: LaunchConfig {
            instance_type: "t4g.micro".into(),
            spot: false,
            command: vec!["hello".into()],
            env: BTreeMap::new(),
            secrets: BTreeMap::new(),
            port: Some(8080),
            health: Some(health()),
            drain_timeout_ms: 500,
            role: None,
            log_group: None,
            runner: RunnerConfig {
                bucket: format!("file://{}", s.path().join(".skiff/state").display()),
                public_key_pem,
                heartbeat_ms: 500,
            },
        },
        operation: None,
        trace: None,
    }
}

fn health() -> HealthCheck {
    HealthCheck {
        path: "/healthz".into(),
        interval_ms: 200,
        timeout_ms: 500,
        healthy_threshold: 1,
        unhealthy_threshold: 2,
    }
}

/// What a new CLI process reports: `skiff local status --format json`.
fn status(s: &Sandbox, env: &[(&str, &str)]) -> serde_json::Value {
    let r = s.run_env(&["local", "status", "--format", "json"], env);
    serde_json::from_str(&r.stdout).unwrap()
}

fn running_pids(status: &serde_json::Value) -> Vec<(String, u32)> {
    let mut out = Vec::new();
    for g in status["data"]["groups"].as_array().into_iter().flatten() {
        for i in g["instances"].as_array().into_iter().flatten() {
            if i["state"] == "running" {
                let pid = i["provider_id"]
                    .as_str()
                    .and_then(|p| p.strip_prefix("pid:"))
                    .and_then(|p| p.parse().ok())
                    .unwrap_or(0);
                out.push((i["id"].as_str().unwrap().to_owned(), pid));
            }
        }
    }
    out.sort();
    out
}

#[test]
fn the_local_supervisor_outlives_the_cli_and_a_new_cli_finds_everything() {
    let s = Sandbox::new();
    let runner = skiff_testkit::workspace_bin("skiff-runner").display().to_string();
    let guard = StopAll(&s, vec![("SKIFF_RUNNER_BIN", runner.clone())]);
    let env = [("SKIFF_RUNNER_BIN", runner.as_str())];
    assert_eq!(s.run(&["state", "init", "--yes"]).code, 0);
    assert_eq!(s.run(&["keys", "generate"]).code, 0);
    let spec = hello_spec(&s, "web");
    let created = json(&s.run(&["release", "create", "-f", spec.to_str().unwrap(), "--yes", "--format", "json"]));
    let release = created["data"]["manifest"]["release"].as_str().unwrap().to_owned();

    insta::assert_snapshot!("local-status-not-running", human(&s.run_env(&["local", "status"], &env)));
    let up = s.run_env(&["local", "up", "--format", "json"], &env);
    assert_eq!(up.code, 0, "{}{}", up.stdout, up.stderr);
    assert_eq!(json(&up)["data"]["groups"], serde_json::json!([]));
    let again = s.run_env(&["local", "up", "--format", "json"], &env);
    assert!(json(&again)["summary"].as_str().unwrap().contains("already running"), "up is idempotent");

    // Provision through the provider API (what `skiff deploy` does), from this process.
    let provider = LocalProvider::new(LocalDir::new(s.path().join(".skiff/local")), ledger(s.path()));
    let lb_port = skiff_testkit::free_port();
    block(async {
        provider.create_group(&group_spec(&s, &release)).await.unwrap();
        let tg = TargetGroupSpec {
            name: "web-tg1".into(),
            service: "web".into(),
            port: 8080,
            health: health(),
            deregistration_delay_ms: 100,
            target_type: skiff_pluginapi::TargetType::Instance,
        };
        provider.ensure_target_group(&tg).await.unwrap();
        provider
            .ensure_load_balancer(&LoadBalancerSpec { service: "web".into(), listener_port: lb_port })
            .await
            .unwrap();
        provider.set_weights("web", &[Weight { target_group: "web-tg1".into(), weight: 100 }]).await.unwrap();
    });
    assert!(
        skiff_testkit::wait_until(Duration::from_secs(60), || running_pids(&status(&s, &env)).len() == 2),
        "two instances run: {}",
        status(&s, &env)
    );
    let instances = running_pids(&status(&s, &env));
    block(async {
        let g = provider.describe_group("web-g1").await.unwrap().unwrap();
        let targets: Vec<Target> = g
            .running()
            .iter()
            .map(|i| Target { id: i.id.clone(), address: i.address.clone(), port: i.port.unwrap() })
            .collect();
        provider.register("web-tg1", &targets).await.unwrap();
    });
    let healthy = || {
        block(provider.target_health("web-tg1"))
            .is_ok_and(|h| h.len() == 2 && h.iter().all(|t| t.state == HealthState::Healthy))
    };
    assert!(skiff_testkit::wait_until(Duration::from_secs(30), healthy), "targets turn healthy");
    let (code, body) = http_get(lb_port, "/").expect("the load balancer answers");
    assert_eq!(code, 200);
    assert!(body.starts_with(&format!("hi from the local provider (release {release}")), "{body}");

    // A new CLI process sees groups, instances, the load balancer and targets' health.
    let seen = status(&s, &env);
    assert_eq!(seen["data"]["groups"][0]["name"], "web-g1");
    assert_eq!(seen["data"]["load_balancers"][0]["address"], format!("127.0.0.1:{lb_port}"));
    assert_eq!(seen["data"]["target_groups"][0]["targets"].as_array().unwrap().len(), 2);
    let human_status = s.run_env(&["local", "status"], &env);
    assert!(human_status.stdout.contains("group web-g1 (release"), "{}", human_status.stdout);

    // Down without --stop-instances: the supervisor goes, instances keep running.
    let down = s.run_env(&["local", "down", "--format", "json"], &env);
    assert_eq!(down.code, 0, "{}", down.stdout);
    assert_eq!(s.run_env(&["local", "status"], &env).code, 4);
    let runner_pids: Vec<u32> = instances.iter().map(|(_, pid)| *pid).filter(|p| *p > 0).collect();
    assert_eq!(runner_pids.len(), 2, "status reports each instance's runner pid: {instances:?}");
    assert!(runner_pids.iter().all(|p| alive(*p)), "instances outlive the supervisor");

    // Up again: the same instances are adopted, the load balancer serves again.
    assert_eq!(s.run_env(&["local", "up"], &env).code, 0);
    assert!(
        skiff_testkit::wait_until(Duration::from_secs(30), || running_pids(&status(&s, &env)) == instances),
        "the same instances are adopted: {} vs {instances:?}",
        status(&s, &env)
    );
    assert!(
        skiff_testkit::wait_until(Duration::from_secs(30), || http_get(lb_port, "/").is_some_and(|(c, _)| c == 200))
    );

    // Down with --stop-instances stops everything.
    let stop = s.run_env(&["local", "down", "--stop-instances", "--yes"], &env);
    assert_eq!(stop.code, 0, "{}", stop.stderr);
    assert!(
        skiff_testkit::wait_until(Duration::from_secs(15), || runner_pids.iter().all(|p| !alive(*p))),
        "instances stop"
    );
    drop(guard);
}
