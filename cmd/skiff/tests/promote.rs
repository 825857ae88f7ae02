//! Release promotion between two environments on the local provider, each with its own
//! bucket (a context per environment) and real runner processes: a release built once
//! runs in staging, is promoted to production with the same artifact, SBOM and
//! provenance (the production runner verifies them before it starts anything), and
//! serves there with production's overlay; unsigned, tampered and never-deployed
//! releases are refused and production is left untouched.

mod common;

use common::*;

struct World<'a> {
    s: &'a Sandbox,
    env: Vec<(&'static str, String)>,
    staging_port: u16,
    production_port: u16,
    _stop: (StopAll<'a>, StopAll<'a>),
}

fn state(s: &Sandbox, env: &str) -> String {
    format!("file://{}", s.path().join(".skiff").join(env).join("state").display())
}

impl<'a> World<'a> {
    fn new(s: &'a Sandbox) -> Self {
        let runner = skiff_testkit::workspace_bin("skiff-runner").display().to_string();
        let env = vec![("SKIFF_RUNNER_BIN", runner), ("SKIFF_LEASE_TTL_MS", "1500".to_owned())];
        let stop = |name: &str| {
            let mut e = env.clone();
            e.push(("SKIFF_STATE", state(s, name)));
            StopAll(s, e)
        };
        let w = World {
            s,
            env: env.clone(),
            staging_port: skiff_testkit::free_port(),
            production_port: skiff_testkit::free_port(),
            _stop: (stop("staging"), stop("production")),
        };
        for name in ["staging", "production"] {
            let r = w.run(&["config", "set-context", name, "--state", &state(s, name)]);
            assert_eq!(r.code, 0, "{}", r.stderr);
        }
        assert_eq!(w.run(&["config", "use-context", "staging"]).code, 0);
        assert_eq!(w.run(&["keys", "generate"]).code, 0);
        let hello = skiff_testkit::workspace_bin("hello");
        let yaml = format!(
            "service: web\nenvironment: staging\nartifact: {{path: {}}}\nrun: {{command: [hello], env: {{HELLO_MESSAGE: hi}}}}\n\
             port: {}\nhealth: {{path: /healthz, interval: 1s, timeout: 500ms, healthy_threshold: 1}}\n\
             instances: {{min: 1, max: 2, desired: 1}}\nintent: {{availability: low}}\n\
             rollout: {{canary: {{steps: [100]}}, drain_timeout: 1s}}\n\
             environments:\n  staging: {{}}\n  production:\n    port: {}\n    instances: {{desired: 2}}\n",
            hello.display(),
            w.staging_port,
            w.production_port
        );
        std::fs::write(s.path().join("skiff.yaml"), yaml).unwrap();
        w
    }

    fn run(&self, args: &[&str]) -> Run {
        let env: Vec<(&str, &str)> = self.env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        self.s.run_env(args, &env)
    }

    fn json(&self, args: &[&str]) -> serde_json::Value {
        let mut all = args.to_vec();
        all.extend(["--format", "json"]);
        json(&self.run(&all))
    }

    /// Copies staging's bucket to `name` (a context of that name) and returns its path.
    fn copy_of_staging(&self, name: &str) -> std::path::PathBuf {
        let from = self.s.path().join(".skiff/staging/state");
        let to = self.s.path().join(".skiff").join(name).join("state");
        copy_dir(&from, &to);
        assert_eq!(self.run(&["config", "set-context", name, "--state", &state(self.s, name)]).code, 0);
        to
    }
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

#[test]
fn a_release_built_once_runs_in_staging_then_production_and_bad_ones_are_refused() {
    let s = Sandbox::new();
    let w = World::new(&s);

    let deployed = w.json(&["deploy", "-f", "skiff.yaml", "--yes"]);
    assert_eq!(deployed["code"], "OK", "{deployed:#}");
    let listed = w.json(&["release", "list", "web"]);
    let r1 = listed["data"][0]["manifest"]["release"].as_str().unwrap().to_owned();
    assert_eq!(listed["data"][0]["runs_here"], serde_json::json!(["current", "stable"]));
    let staging_manifest = listed["data"][0]["manifest"].clone();
    assert_eq!(get_release(w.staging_port).map(|r| r.0), Some(200));

    // A release that never finished a rollout here is not promoted.
    let r2 = w.json(&["release", "create", "-f", "skiff.yaml", "--yes"])["data"]["manifest"]["release"]
        .as_str()
        .unwrap()
        .to_owned();
    let never = w.json(&["release", "promote", "web", &r2, "--to", "production", "--yes"]);
    assert_eq!(never["code"], "POLICY_DENIED", "{never:#}");
    assert!(never["summary"].as_str().unwrap().contains("never finished a rollout in staging"), "{never:#}");

    // Unsigned: the signature removed in a copy of staging.
    let unsigned = w.copy_of_staging("unsigned");
    std::fs::remove_file(unsigned.join(format!("v1/releases/web/{r1}.json.sig"))).unwrap();
    let r = w.json(&["--context", "unsigned", "release", "promote", "web", &r1, "--to", "production", "--yes"]);
    assert_eq!(r["code"], "SIGNATURE_INVALID", "{r:#}");

    // Tampered: the artifact's bytes changed in another copy.
    let tampered = w.copy_of_staging("tampered");
    let digest = staging_manifest["artifact"]["digest"].as_str().unwrap().strip_prefix("sha256:").unwrap();
    let blob = tampered.join(format!("v1/blobs/sha256/{digest}"));
    let mut bytes = std::fs::read(&blob).unwrap();
    bytes.extend_from_slice(b"\nnot what was signed");
    std::fs::write(&blob, bytes).unwrap();
    let r = w.json(&["--context", "tampered", "release", "promote", "web", &r1, "--to", "production", "--yes"]);
    assert_eq!(r["code"], "DIGEST_MISMATCH", "{r:#}");
    assert!(!s.path().join(".skiff/production/state/v1/releases").exists(), "refusals leave production untouched");

    // The real promotion: same artifact, SBOM and provenance; production's overlay.
    let promoted = w.json(&["release", "promote", "web", &r1, "--to", "production", "--yes"]);
    assert_eq!(promoted["code"], "OK", "{promoted:#}");
    let facts = promoted["facts"].as_array().unwrap();
    assert!(facts[0].as_str().unwrap().starts_with("promoted from staging"), "{facts:?}");

    let there = w.json(&["--context", "production", "release", "list", "web"]);
    let m = &there["data"][0]["manifest"];
    assert_eq!(m["release"], r1.as_str(), "the release keeps its id");
    for field in ["artifact", "sbom", "provenance"] {
        assert_eq!(m[field], staging_manifest[field], "{field} is the one built in staging");
    }
    assert_eq!(m["promoted_from"]["environment"], "staging");
    assert_eq!(there["data"][0]["runs_here"], serde_json::json!(["current", "stable"]));
    let verified = w.json(&["--context", "production", "release", "verify", "web", &r1]);
    assert_eq!(verified["code"], "OK", "{verified:#}");

    // Production runs it with its own overlay: two instances behind its own port.
    let status = w.json(&["--context", "production", "status", "web"]);
    assert_eq!(status["code"], "OK", "{status:#}");
    let spec: serde_json::Value = {
        let digest = m["spec_digest"].as_str().unwrap();
        let text = std::fs::read(s.path().join(format!(".skiff/production/state/v1/specs/{digest}.json"))).unwrap();
        serde_json::from_slice(&text).unwrap()
    };
    assert_eq!(spec["environment"], "production");
    assert_eq!(spec["capacity"]["desired"], 2);
    assert_eq!(get_release(w.production_port), Some((200, Some(r1.clone()))));
    assert_eq!(get_release(w.staging_port).map(|r| r.0), Some(200), "staging keeps serving");

    // Staging shows where its release went.
    let here = w.json(&["release", "list", "web"]);
    let promoted_to = &here["data"][0]["promoted_to"];
    assert_eq!(promoted_to[0]["environment"], "production", "{here:#}");

    // Promoting again changes nothing and names the operation that did it.
    let again = w.json(&["release", "promote", "web", &r1, "--to", "production", "--yes"]);
    assert_eq!(again["code"], "OK", "{again:#}");
    assert!(again["summary"].as_str().unwrap().contains("already runs in production"), "{again:#}");
    assert_eq!(again["operation_id"], promoted["operation_id"], "{again:#}");
}

#[test]
fn a_promotion_killed_mid_rollout_resumes_and_is_recorded_once() {
    let s = Sandbox::new();
    let w = World::new(&s);
    assert_eq!(w.json(&["deploy", "-f", "skiff.yaml", "--yes"])["code"], "OK");
    let r1 = w.json(&["release", "list", "web"])["data"][0]["manifest"]["release"].as_str().unwrap().to_owned();
    let env: Vec<(&str, &str)> = w.env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    s.kill_at(&env, &["release", "promote", "web", &r1, "--to", "production", "--yes"], "after:result:provision");

    // Production holds the signed release and the half-done operation; staging has no record yet.
    let verified = w.json(&["--context", "production", "release", "verify", "web", &r1]);
    assert_eq!(verified["code"], "OK", "{verified:#}");
    let ops = w.json(&["--context", "production", "saga", "list", "--service", "web"]);
    let op = ops["data"][0]["op_id"].as_str().unwrap().to_owned();
    let again = w.json(&["release", "promote", "web", &r1, "--to", "production", "--yes"]);
    assert_eq!(again["code"], "LEASE_HELD", "the killed rollout holds production's service: {again:#}");
    let resumed = w.json(&["--context", "production", "saga", "resume", &op, "--yes"]);
    assert_eq!(resumed["code"], "OK", "{resumed:#}");
    assert_eq!(get_release(w.production_port), Some((200, Some(r1.clone()))));

    let done = w.json(&["release", "promote", "web", &r1, "--to", "production", "--yes"]);
    assert_eq!(done["code"], "OK", "{done:#}");
    assert!(done["summary"].as_str().unwrap().contains("already runs in production"), "{done:#}");
    let twice = w.json(&["release", "promote", "web", &r1, "--to", "production", "--yes"]);
    assert_eq!(twice["code"], "OK");
    let listed = w.json(&["release", "list", "web"]);
    let to = listed["data"][0]["promoted_to"].as_array().unwrap();
    assert_eq!(to.len(), 1, "recorded once: {to:?}");
    assert_eq!(to[0]["environment"], "production");
}
