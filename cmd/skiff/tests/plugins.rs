//! Plugins end to end: the example changelog plugin's step kind inside real deploys
//! on the local provider (SIGKILL of the CLI at each of the step's boundaries, then
//! `saga resume`: one changelog line per deploy), its doctor check in `skiff doctor`,
//! and the faulty plugin hanging, crashing and tampered with — each failing its step
//! (or being refused) with a clear code while the service keeps serving.

mod common;

use std::path::{Path, PathBuf};

use common::*;

fn install(s: &Sandbox, name: &str, bin: &Path, args: &[&str], steps: &str, checks: &str, deadline: &str) -> PathBuf {
    let dir = s.path().join(".skiff/plugins").join(name);
    std::fs::create_dir_all(&dir).unwrap();
    let manifest = format!(
        "plugin: {name}\nversion: 0.1.0\nprotocol: 1\ndescription: test install\nexecutable: {}\nargs: {}\nsha256: {}\n\
         steps: {steps}\nchecks: {checks}\naddons: {}\nrecipes: {}\ndeadline: {deadline}\n",
        bin.display(),
        serde_json::to_string(args).unwrap(),
        skiff_plugins::sha256_file(bin).unwrap(),
        if name == "changelog" { "[changelog.env]" } else { "[]" },
        if name == "changelog" { "[changelog.service]" } else { "[]" }
    );
    std::fs::write(dir.join("plugin.yaml"), manifest).unwrap();
    dir
}

struct Web<'a> {
    s: &'a Sandbox,
    port: u16,
    env: Vec<(&'static str, String)>,
    _stop: StopAll<'a>,
}

impl<'a> Web<'a> {
    fn new(s: &'a Sandbox) -> Self {
        let runner = skiff_testkit::workspace_bin("skiff-runner").display().to_string();
        let env = vec![("SKIFF_RUNNER_BIN", runner), ("SKIFF_LEASE_TTL_MS", "1500".to_owned())];
        Web { s, port: skiff_testkit::free_port(), env: env.clone(), _stop: StopAll(s, env) }
    }

    fn env(&self) -> Vec<(&str, &str)> {
        self.env.iter().map(|(k, v)| (*k, v.as_str())).collect()
    }

    fn run(&self, args: &[&str]) -> Run {
        self.s.run_env(args, &self.env())
    }

    /// `web.yaml`: hello saying `message`, one step to 100% without a bake, with `hooks` (YAML flow list).
    fn spec(&self, message: &str, hooks: &str) -> String {
        let hello = skiff_testkit::workspace_bin("hello");
        let yaml = format!(
            "service: web\nartifact: {{path: {}}}\nrun: {{command: [hello], env: {{HELLO_MESSAGE: {message}}}}}\nport: {}\n\
             health: {{path: /healthz, interval: 1s, timeout: 500ms, healthy_threshold: 1, unhealthy_threshold: 2}}\n\
             instances: {{min: 1, max: 2, desired: 1}}\n\
             rollout: {{canary: {{steps: [100], bake: 0s}}, drain_timeout: 1s, step_timeout: 1m, hooks: {hooks}}}\n",
            hello.display(),
            self.port
        );
        let path = self.s.path().join("web.yaml");
        std::fs::write(&path, yaml).unwrap();
        path.display().to_string()
    }

    fn deploy(&self, message: &str, hooks: &str) -> Run {
        let spec = self.spec(message, hooks);
        self.run(&["deploy", "-f", &spec, "--yes", "--format", "json"])
    }

    fn serving(&self) -> Option<String> {
        http_get(self.port, "/").and_then(|(status, body)| (status == 200).then_some(body))
    }
}

/// How many processes run with `marker` among their arguments (the plugins of one sandbox).
fn plugins_running(marker: &Path) -> usize {
    let marker = marker.display().to_string();
    let Ok(entries) = std::fs::read_dir("/proc") else { return 0 };
    entries
        .flatten()
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .filter(|c| String::from_utf8_lossy(c).contains(&marker))
        .count()
}

const CHANGELOG: &str = "[{step: changelog.append, at: after_promote, with: {message: shipped}}]";

#[test]
fn a_plugin_step_runs_in_deploys_survives_sigkill_and_its_check_is_in_doctor() {
    let s = Sandbox::new();
    let web = Web::new(&s);
    let bin = skiff_testkit::workspace_bin("skiff-plugin-changelog");
    let log = s.path().join("CHANGELOG.md");
    let args = ["--file", log.to_str().unwrap()];
    install(&s, "changelog", &bin, &args, "[changelog.append]", "[changelog.writable]", "10s");

    // What is installed, checked by starting it once, and explained.
    let list = web.run(&["plugin", "list", "--format", "json"]);
    assert_eq!(list.code, 0, "{}", list.stdout);
    let v = json(&list);
    assert_eq!(v["data"]["plugins"][0]["plugin"], "changelog");
    assert_eq!(v["data"]["plugins"][0]["digest"], "ok");
    let valid = web.run(&["plugin", "validate", "changelog", "--format", "json"]);
    assert_eq!(valid.code, 0, "{}", valid.stdout);
    assert_eq!(json(&valid)["data"]["steps"][0], "changelog.append");
    let explain = web.run(&["plugin", "explain", "changelog.append"]);
    assert_eq!(explain.code, 0, "{}", explain.stderr);
    assert!(explain.stdout.contains("hooks:"), "{}", explain.stdout);
    let built = bin.parent().unwrap().display().to_string();
    let canonical = std::fs::canonicalize(bin.parent().unwrap()).unwrap().display().to_string();
    let redact = |t: &str| {
        let t = t.replace(&canonical, "[BIN]").replace(&built, "[BIN]");
        regex::Regex::new("[0-9a-f]{64}").unwrap().replace_all(&t, "[SHA256]").into_owned()
    };
    insta::assert_snapshot!("plugin_list", redact(&web.run(&["plugin", "list"]).stdout));
    insta::assert_snapshot!("plugin_explain", redact(&explain.stdout));
    insta::assert_snapshot!("plugin_validate", redact(&web.run(&["plugin", "validate", "changelog"]).stdout));

    // The plugin's recipe writes a spec with its hook and addon in place.
    let init = web.run(&["init", "plugin", "changelog.service", "shop", "--dir", "shop", "--format", "json"]);
    assert_eq!(init.code, 0, "{}", init.stdout);
    let written = std::fs::read_to_string(s.path().join("shop/skiff.yaml")).unwrap();
    assert!(written.contains("step: changelog.append") && written.contains("addon: changelog.env"), "{written}");
    let validated = web.run(&["validate", "-f", "shop/skiff.yaml"]);
    assert_eq!(validated.code, 0, "{}{}", validated.stdout, validated.stderr);
    let unknown = web.run(&["init", "plugin", "changelog.nosuch", "x", "--format", "json"]);
    assert_eq!(unknown.code, 4, "NOT_FOUND: {}", unknown.stdout);

    // The dry run shows the plugin's own plan for its step.
    let spec = web.spec("v1", CHANGELOG);
    let dry = web.run(&["deploy", "-f", &spec, "--dry-run", "--format", "json"]);
    assert_eq!(dry.code, 0, "{}", dry.stdout);
    assert!(dry.stdout.contains("append \\\"web"), "the plugin planned its step: {}", dry.stdout);

    let first = web.deploy("v1", CHANGELOG);
    assert_eq!(first.code, 0, "{}", first.stdout);
    assert!(web.serving().is_some_and(|b| b.contains("v1")));
    let lines = || std::fs::read_to_string(&log).unwrap_or_default().lines().map(str::to_owned).collect::<Vec<_>>();
    assert_eq!(lines().len(), 1, "{:?}", lines());
    assert!(lines()[0].contains("web ") && lines()[0].contains(" shipped ("), "{:?}", lines());

    // SIGKILL the CLI at each boundary of the plugin's step, then resume: the line is
    // written exactly once per deploy.
    let points = ["before:step_started", "after:step_started", "after:result"];
    for (n, point) in points.iter().enumerate() {
        let message = format!("v{}", n + 2);
        let spec = web.spec(&message, CHANGELOG);
        s.kill_at(&web.env(), &["deploy", "-f", &spec, "--yes"], &format!("{point}:hook-changelog-append"));
        let status = json(&web.run(&["status", "web", "--format", "json"]));
        let op = status["data"]["active_operation"]["op_id"].as_str().expect("the killed deploy is active").to_owned();
        // The killed CLI's plugin process went with it (its stdin closed).
        let gone = skiff_testkit::wait_until(std::time::Duration::from_secs(10), || plugins_running(&log) == 0);
        assert!(gone, "a plugin process outlived the CLI killed at {point}");
        let resumed = web.run(&["saga", "resume", &op, "--yes", "--format", "json"]);
        assert_eq!(json(&resumed)["data"]["status"], "succeeded", "after a kill at {point}: {}", resumed.stdout);
        let mine: Vec<String> = lines().into_iter().filter(|l| l.contains(&format!("({op})"))).collect();
        assert_eq!(mine.len(), 1, "one line for {op} after a kill at {point}: {:?}", lines());
        assert!(web.serving().is_some_and(|b| b.contains(&message)));
    }
    assert_eq!(lines().len(), 4, "{:?}", lines());
    assert_eq!(web.run(&["state", "verify"]).code, 0);

    // The runtime addon: it tells hello where the changelog is, as its message.
    let spec = web.spec("unused", "[]");
    let text = std::fs::read_to_string(&spec).unwrap().replace(", env: {HELLO_MESSAGE: unused}", "");
    let with_addon = |with: &str| format!("{text}addons: [{{addon: changelog.env, with: {with}}}]\n");
    std::fs::write(&spec, with_addon("{colour: red}")).unwrap();
    let refused = web.run(&["deploy", "-f", &spec, "--yes", "--format", "json"]);
    assert_eq!(refused.code, 3, "SPEC_INVALID: {}", refused.stdout);
    assert!(refused.stdout.contains("addons[0].addon: changelog.env refuses the spec"), "{}", refused.stdout);
    let own = std::fs::read_to_string(web.spec("unused", "[]")).unwrap();
    std::fs::write(&spec, format!("{own}addons: [{{addon: changelog.env, with: {{variable: HELLO_MESSAGE}}}}]\n"))
        .unwrap();
    let clash = web.run(&["validate", "-f", &spec, "--format", "json"]);
    assert_eq!(clash.code, 3, "an addon never replaces the spec's own variable: {}", clash.stdout);
    assert!(clash.stdout.contains("which the spec sets already"), "{}", clash.stdout);
    std::fs::write(&spec, with_addon("{variable: HELLO_MESSAGE}")).unwrap();
    assert_eq!(web.run(&["validate", "-f", &spec]).code, 0);
    let added = web.run(&["deploy", "-f", &spec, "--yes", "--format", "json"]);
    assert_eq!(added.code, 0, "{}", added.stdout);
    assert!(web.serving().is_some_and(|b| b.contains("CHANGELOG.md")), "{:?}", web.serving());

    // The plugin's doctor check: silent while the changelog can be written, a finding
    // with the plugin's code and fix once it cannot.
    let doctor = web.run(&["doctor", "--format", "json"]);
    assert_eq!(doctor.code, 0, "{}", doctor.stdout);
    let args = ["--file", "/nonexistent-skiff-dir/CHANGELOG.md"];
    install(&s, "changelog", &bin, &args, "[changelog.append]", "[changelog.writable]", "10s");
    let doctor = web.run(&["doctor", "--format", "json"]);
    let v = json(&doctor);
    assert_eq!(v["code"], "IO_ERROR", "{}", doctor.stdout);
    assert_eq!(v["data"]["findings"][0]["subject"], "plugin check changelog.writable");
    assert!(doctor.stdout.contains("cannot be written"), "{}", doctor.stdout);

    // Installing the example's own manifest: its placeholders need --pin (a build of
    // your own), an installed name needs --force, and the result is started once.
    let example = repo().join("examples/plugin/plugin.yaml").display().to_string();
    let exe = bin.display().to_string();
    let unpinned = web.run(&["plugin", "install", &example, "--executable", &exe, "--format", "json"]);
    assert_eq!(unpinned.code, 3, "SPEC_INVALID: {}", unpinned.stdout);
    let taken = web.run(&["plugin", "install", &example, "--executable", &exe, "--pin", "--format", "json"]);
    assert_eq!(taken.code, 5, "ALREADY_EXISTS: {}", taken.stdout);
    let installed =
        web.run(&["plugin", "install", &example, "--executable", &exe, "--pin", "--force", "--format", "json"]);
    assert_eq!(installed.code, 0, "{}", installed.stdout);
    assert_eq!(json(&installed)["data"]["pinned"], true);
    let human = web.run(&["plugin", "install", &example, "--executable", &exe, "--pin", "--force"]);
    insta::assert_snapshot!("plugin_install", redact(&human.stdout));
    let valid = web.run(&["plugin", "validate", "changelog", "--format", "json"]);
    assert_eq!(valid.code, 0, "{}", valid.stdout);
    assert_eq!(web.run(&["doctor", "--format", "json"]).code, 0, "the example's own changelog file can be written");
}

#[test]
fn hanging_crashing_and_tampered_plugins_fail_their_step_not_the_engine() {
    let s = Sandbox::new();
    let web = Web::new(&s);
    assert_eq!(web.deploy("v1", "[]").code, 0);
    let faulty = skiff_testkit::workspace_bin("skiff-plugin-faulty");
    let hook = "[{step: faulty.step, at: before_traffic}]";

    // A hook no installed plugin serves: the spec is refused before anything runs.
    let refused = web.deploy("v2", hook);
    assert_eq!(refused.code, 3, "SPEC_INVALID: {}", refused.stdout);
    assert!(refused.stdout.contains("rollout.hooks[0].step"), "{}", refused.stdout);

    for (fault, code, name, says) in [
        ("hang", 13, "DEADLINE_EXCEEDED", "did not answer `run` of step kind faulty.step within 1000ms"),
        ("crash", 28, "PLUGIN_FAILED", "exited during `run`"),
        ("garbage", 28, "PLUGIN_FAILED", "garbage"),
    ] {
        install(&s, "faulty", &faulty, &["--fault", fault], "[faulty.step]", "[]", "1s");
        let started = std::time::Instant::now();
        let r = web.deploy("v2", hook);
        assert_eq!((r.code, json(&r)["code"].as_str().unwrap_or_default()), (code, name), "{fault}: {}", r.stdout);
        assert!(r.stdout.contains(says), "{fault}: {}", r.stdout);
        assert!(started.elapsed() < std::time::Duration::from_secs(90), "{fault} took {:?}", started.elapsed());
        // The engine compensated and v1 still serves.
        assert!(web.serving().is_some_and(|b| b.contains("v1")), "{fault}: v1 keeps serving");
    }

    // A tampered executable is refused: never started, the deploy stopped.
    let copy = s.path().join("skiff-plugin-faulty");
    std::fs::copy(&faulty, &copy).unwrap();
    install(&s, "faulty", &copy, &["--fault", "crash"], "[faulty.step]", "[]", "1s");
    let mut bytes = std::fs::read(&copy).unwrap();
    bytes.extend_from_slice(b"tampered");
    std::fs::write(&copy, bytes).unwrap();
    let listed = json(&web.run(&["plugin", "list", "--format", "json"]));
    assert_eq!(listed["data"]["plugins"][0]["digest"], "DIGEST_MISMATCH");
    let validate = web.run(&["plugin", "validate", "faulty", "--format", "json"]);
    assert_eq!(validate.code, 17, "{}", validate.stdout);
    let r = web.deploy("v2", hook);
    assert_eq!(r.code, 17, "DIGEST_MISMATCH: {}", r.stdout);
    assert!(r.stdout.contains("refused"), "{}", r.stdout);
    assert!(web.serving().is_some_and(|b| b.contains("v1")));
    assert_eq!(web.run(&["state", "verify"]).code, 0);
}
