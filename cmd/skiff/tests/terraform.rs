//! The Terraform executor end to end with the real `terraform` binary: a module of
//! `terraform_data` resources whose `local-exec` provisioners leave marker files (the
//! infrastructure), applied through `skiff terraform apply` — a transient fault
//! retried, a permanent one rolled back to the previous markers with `terraform plan`
//! on the old variables exiting 0, a guardrail denying the plan before anything is
//! applied, production waiting for approval, drift found by `terraform plan`, and the
//! CLI killed at every step boundary and mid-apply, then resumed with no orphaned
//! marker and no lock left behind.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;

struct Tf<'a> {
    s: &'a Sandbox,
    markers: PathBuf,
    env: Vec<(&'static str, String)>,
}

impl<'a> Tf<'a> {
    fn new(s: &'a Sandbox) -> Tf<'a> {
        let module = s.path().join("infra");
        std::fs::create_dir_all(&module).unwrap();
        std::fs::copy(repo().join("cmd/skiff/tests/terraform/markers/main.tf"), module.join("main.tf")).unwrap();
        let markers = s.path().join("markers");
        std::fs::create_dir_all(&markers).unwrap();
        Tf { s, markers, env: vec![("SKIFF_LEASE_TTL_MS", "1500".to_owned())] }
    }

    fn args(&self, names: &[&str], extra: &[&str]) -> Vec<String> {
        let list = serde_json::to_string(names).unwrap();
        let mut a: Vec<String> = ["terraform", "apply", "--module", "infra"].iter().map(|s| (*s).to_owned()).collect();
        if !extra.contains(&"--environment") {
            a.extend(["--environment".to_owned(), "test".to_owned()]);
        }
        a.extend(["--var".to_owned(), format!("names={list}")]);
        a.extend(["--var".to_owned(), format!("markers={}", self.markers.display())]);
        a.extend(extra.iter().map(|s| (*s).to_owned()));
        a.extend(["--yes".to_owned(), "--format".to_owned(), "json".to_owned()]);
        a
    }

    fn run(&self, args: &[String]) -> serde_json::Value {
        let env: Vec<(&str, &str)> = self.env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        json(&self.s.run_env(&args, &env))
    }

    fn cli(&self, args: &[&str]) -> serde_json::Value {
        let env: Vec<(&str, &str)> = self.env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        json(&self.s.run_env(&[args, &["--format", "json"]].concat(), &env))
    }

    fn apply(&self, names: &[&str], extra: &[&str]) -> serde_json::Value {
        self.run(&self.args(names, extra))
    }

    fn markers(&self) -> BTreeSet<String> {
        std::fs::read_dir(&self.markers)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| !n.starts_with('.'))
            .collect()
    }

    /// `terraform plan -detailed-exitcode` on the workspace's last applied state and
    /// configuration, through `skiff terraform drift`.
    fn drift(&self) -> serde_json::Value {
        self.cli(&["terraform", "drift", "--workspace", "infra"])
    }

    fn spawn(&self, args: &[String], point: Option<(&str, &Path)>) -> std::process::Child {
        let mut cmd = std::process::Command::new(assert_cmd::cargo::cargo_bin("skiff"));
        cmd.current_dir(self.s.path())
            .env("SKIFF_CONFIG", self.s.path().join("config.yaml"))
            .env("HOME", self.s.path())
            .envs(self.env.iter().map(|(k, v)| (*k, v.as_str())))
            .args(args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        if let Some((at, marker)) = point {
            cmd.env("SKIFF_FREEZE_AT", at).env("SKIFF_FREEZE_MARKER", marker);
        }
        cmd.spawn().unwrap()
    }

    fn unfinished(&self) -> String {
        let listed = self.cli(&["saga", "list"]);
        listed["data"]
            .as_array()
            .unwrap()
            .iter()
            .find(|o| o["saga"] == "terraform-apply" && o["status"] != "succeeded" && o["status"] != "compensated")
            .and_then(|o| o["op_id"].as_str())
            .unwrap_or_else(|| panic!("no unfinished terraform-apply: {listed}"))
            .to_owned()
    }
}

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|s| (*s).to_owned()).collect()
}

#[test]
fn transient_faults_retry_and_permanent_ones_roll_back_to_the_previous_markers() {
    let s = Sandbox::new();
    let tf = Tf::new(&s);
    let first = tf.apply(&["a", "b", "c"], &[]);
    assert_eq!(first["code"], "OK", "{first:#}");
    assert_eq!(tf.markers(), set(&["a", "b", "c"]));
    let op = first["operation_id"].as_str().unwrap();
    let record: serde_json::Value = serde_json::from_slice(
        &std::fs::read(s.path().join(format!(".skiff/state/v1/terraform/infra/executions/{op}.json"))).unwrap(),
    )
    .unwrap();
    assert_eq!(record["outcome"], "applied");
    assert_eq!(record["created"].as_array().unwrap().len(), 4, "three markers and the sentinel: {record:#}");

    // A transient fault at d: retried, and the apply completes.
    let second = tf.apply(&["a", "b", "c", "d", "e"], &["--var", "fail=d", "--var", "fault=transient"]);
    assert_eq!(second["code"], "OK", "{second:#}");
    assert_eq!(tf.markers(), set(&["a", "b", "c", "d", "e"]));
    assert!(tf.markers.join(".retried-d").exists(), "d failed once");

    // A permanent fault at f: everything the failed apply made is rolled back.
    let third = tf.apply(&["a", "b", "c", "d", "e", "f", "g"], &["--var", "fail=f", "--var", "fault=permanent"]);
    assert_ne!(third["code"], "OK", "{third:#}");
    let facts = third["facts"].to_string();
    assert!(facts.contains("disk quota exceeded") && facts.contains("terraform_data.marker[\\\"f\\\"]"), "{facts}");
    assert!(facts.contains("rolled back to the last known-good configuration: the state is as before"), "{facts}");
    assert_eq!(tf.markers(), set(&["a", "b", "c", "d", "e"]), "the markers of the previous configuration");
    let drift = tf.drift();
    assert_eq!(drift["code"], "OK", "a fresh plan on the previous variables changes nothing: {drift:#}");

    // Something changed outside Terraform: drift, in `skiff terraform drift` and in reconcile.
    std::fs::write(tf.markers.join(".sentinel"), "edited by hand").unwrap();
    let drift = tf.drift();
    assert_eq!(drift["code"], "DRIFTED", "{drift:#}");
    assert_eq!(drift["data"]["differences"][0]["path"], "terraform.terraform_data.sentinel");
    let reconciled = tf.cli(&["reconcile", "infra"]);
    assert_eq!(reconciled["code"], "DRIFTED", "{reconciled:#}");
    assert_eq!(tf.cli(&["state", "verify"])["code"], "OK");
}

#[test]
fn a_guardrail_denies_the_plan_before_anything_is_applied() {
    let s = Sandbox::new();
    let tf = Tf::new(&s);
    assert_eq!(tf.apply(&["a"], &[])["code"], "OK");
    std::fs::create_dir_all(s.path().join("policies")).unwrap();
    std::fs::write(
        s.path().join("policies/no_forbidden.rego"),
        "package no_forbidden\n\ndeny contains msg if {\n  some r in input.resources\n  r.change.after.input == \"forbidden\"\n  msg := sprintf(\"%s would hold a forbidden value\", [r.address])\n}\n",
    )
    .unwrap();
    let denied = tf.apply(&["a", "forbidden"], &[]);
    assert_eq!(denied["code"], "POLICY_DENIED", "{denied:#}");
    let facts = denied["facts"].to_string();
    assert!(facts.contains("no_forbidden") && facts.contains("terraform_data.marker[\\\"forbidden\\\"]"), "{facts}");
    assert_eq!(tf.markers(), set(&["a"]), "nothing was applied");

    // Production waits for approval, then applies exactly the reviewed plan.
    let gated = tf.run(&tf.args(&["a", "b"], &["--environment", "production"]));
    assert_eq!(gated["code"], "APPROVAL_REQUIRED", "{gated:#}");
    assert_eq!(tf.markers(), set(&["a"]));
    let op = gated["operation_id"].as_str().unwrap();
    assert_eq!(tf.cli(&["saga", "approve", op, "--yes"])["code"], "OK");
    assert_eq!(tf.markers(), set(&["a", "b"]));
}

#[test]
fn a_killed_executor_resumes_at_every_step_boundary_and_mid_apply() {
    let s = Sandbox::new();
    let tf = Tf::new(&s);
    let points = ["before:step_started:plan", "after:result:plan", "after:result:check", "after:result:apply"];
    let mut names: Vec<String> = Vec::new();
    for (n, point) in points.iter().enumerate() {
        names.push(format!("m{n}"));
        let list: Vec<&str> = names.iter().map(String::as_str).collect();
        let frozen = s.path().join(format!("frozen-{n}"));
        let mut child = tf.spawn(&tf.args(&list, &[]), Some((point, &frozen)));
        let reached = skiff_testkit::wait_until(Duration::from_secs(60), || frozen.exists());
        let _ = child.kill();
        let _ = child.wait();
        assert!(reached, "never reached {point}");
        let op = tf.unfinished();
        let resumed = tf.cli(&["saga", "resume", &op, "--yes"]);
        assert_eq!(resumed["code"], "OK", "resume after a kill at {point}: {resumed:#}");
        assert_eq!(tf.markers(), list.iter().copied().map(str::to_owned).collect(), "after {point}");
    }

    // Killed mid-apply, one resource at a time: the Terraform left running is stopped,
    // the stale plan planned again, and only the wanted markers exist.
    let mut slow = tf.args(&["p", "q", "r", "s", "t"], &["--var", "delay=1"]);
    slow.retain(|a| a != "--format" && a != "json");
    let mut child = {
        let mut cmd = std::process::Command::new(assert_cmd::cargo::cargo_bin("skiff"));
        cmd.current_dir(s.path())
            .env("SKIFF_CONFIG", s.path().join("config.yaml"))
            .env("HOME", s.path())
            .env("TF_CLI_ARGS_apply", "-parallelism=1")
            .envs(tf.env.iter().map(|(k, v)| (*k, v.as_str())))
            .args(&slow)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        cmd.spawn().unwrap()
    };
    let started = skiff_testkit::wait_until(Duration::from_secs(60), || {
        ["p", "q", "r", "s", "t"].iter().filter(|m| tf.markers.join(m).exists()).count() >= 2
    });
    let _ = child.kill();
    let _ = child.wait();
    assert!(started, "the apply never got going");
    let op = tf.unfinished();
    let resumed = tf.cli(&["saga", "resume", &op, "--yes"]);
    assert_eq!(resumed["code"], "OK", "{resumed:#}");
    let want = ["p", "q", "r", "s", "t"];
    // Stragglers of the killed Terraform finish their sleep within a second or two.
    skiff_clock::SystemClock::block_for(Duration::from_secs(2));
    assert_eq!(tf.markers(), set(&want), "no orphaned marker");
    let workdir = s.path().join(".skiff/terraform/infra").join(&op);
    assert!(!workdir.join(".terraform.tfstate.lock.info").exists(), "no Terraform lock left");
    assert!(!workdir.join(".terraform.pid").exists(), "no Terraform left running");
    assert_eq!(tf.drift()["code"], "OK");
    assert_eq!(tf.cli(&["state", "verify"])["code"], "OK");
}
