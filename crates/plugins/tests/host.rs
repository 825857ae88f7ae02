//! The plugin host against real plugin processes: the example changelog plugin and
//! the faulty one (`examples/plugin`), started from manifests with their digests.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use skiff_clock::{Clock, SystemClock};
use skiff_plugins::{Catalog, Installed, PluginStep, sha256_file};
use skiff_sagaapi::{Cancellation, Extensions, Progress, Step, StepCode, StepContext, StepRequest, Timer};

fn install(root: &Path, name: &str, bin: &Path, args: &[&str], steps: &str, checks: &str, deadline: &str) -> PathBuf {
    let addons = if name == "changelog" { "[changelog.env]" } else { "[]" };
    let dir = root.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    let manifest = format!(
        "plugin: {name}\nversion: 0.1.0\nprotocol: 1\nexecutable: {}\nargs: {}\nsha256: {}\nsteps: {steps}\nchecks: {checks}\naddons: {addons}\ndeadline: {deadline}\n",
        bin.display(),
        serde_json::to_string(args).unwrap(),
        sha256_file(bin).unwrap()
    );
    std::fs::write(dir.join("plugin.yaml"), manifest).unwrap();
    dir.join("plugin.yaml")
}

#[derive(Debug)]
struct Time;

impl Timer for Time {
    fn now_ms(&self) -> u64 {
        SystemClock.now_ms()
    }
    fn sleep(&self, d: Duration) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + 'static>> {
        SystemClock.sleep(d)
    }
}

struct Quiet;

#[async_trait::async_trait]
impl Progress for Quiet {
    async fn report(&self, _: &str, _: serde_json::Value) {}
}

fn ctx() -> StepContext {
    StepContext::new(Arc::new(Quiet), Arc::new(Time))
}

fn request(key: &str, params: serde_json::Value) -> StepRequest {
    StepRequest {
        op_id: "op-test".to_owned(),
        step_id: "hook".to_owned(),
        attempt: 1,
        idempotency_key: key.to_owned(),
        params,
        inputs: Default::default(),
        extensions: Arc::new(Extensions::default()),
        cancel: Cancellation::never(Arc::new(Time)),
    }
}

fn clock() -> Arc<dyn Clock> {
    Arc::new(SystemClock)
}

fn step(catalog: &Catalog, kind: &str) -> Arc<dyn Step> {
    catalog.steps(&clock()).into_iter().find(|s| s.kind() == kind).expect("the kind is registered")
}

#[tokio::test(flavor = "multi_thread")]
async fn the_changelog_plugin_runs_its_step_exactly_once_and_its_check() {
    let bin = skiff_testkit::workspace_bin("skiff-plugin-changelog");
    let tmp = tempfile::tempdir().unwrap();
    let log = tmp.path().join("CHANGELOG.md");
    let args = ["--file", log.to_str().unwrap()];
    install(&tmp.path().join("plugins"), "changelog", &bin, &args, "[changelog.append]", "[changelog.writable]", "10s");
    let catalog = Catalog::discover(&tmp.path().join("plugins"));
    assert!(catalog.broken.is_empty(), "{:?}", catalog.broken);
    let append = step(&catalog, "changelog.append");
    let params = json!({"service": "hello", "release": "r-1", "with": {"message": "shipped"}});
    let plan = append.plan(&ctx(), &request("k1", params.clone())).await.unwrap();
    assert!(plan.description.contains("hello r-1 shipped"), "{plan:?}");
    let first = append.run(&ctx(), &request("k1", params.clone())).await.unwrap();
    let again = append.resume(&ctx(), &request("k1", params.clone())).await.unwrap();
    assert!(again.summary.starts_with("already in the changelog"), "{again:?}");
    let text = std::fs::read_to_string(&log).unwrap();
    assert_eq!(text.matches("[k1]").count(), 1, "{text}");
    append.compensate(&ctx(), &request("k1", params.clone()), &first).await.unwrap();
    append.compensate(&ctx(), &request("k1", params.clone()), &first).await.unwrap();
    let text = std::fs::read_to_string(&log).unwrap();
    assert_eq!(text.lines().filter(|l| l.contains("reverted")).count(), 1, "{text}");
    // Bad parameters are the step's own SPEC_INVALID, answered by the plugin.
    let e = append.run(&ctx(), &request("k2", json!({"nope": 1}))).await.unwrap_err();
    assert_eq!(e.code, StepCode::SpecInvalid, "{e}");

    // The step conformance suite, through the host, as the engine would call it.
    let problems = skiff_plugin::conformance::step(append.as_ref(), params.clone()).await;
    assert!(problems.is_empty(), "{problems:#?}");

    // The runtime addon: what it adds, and its problems with a spec.
    let host = skiff_plugins::Host::new(catalog.get("changelog").unwrap().clone(), clock());
    let with = [("variable".to_owned(), "CHANGES".to_owned())].into_iter().collect();
    let added = host.addon("changelog.env", &json!({"service": "hello"}), &with).await.unwrap();
    assert_eq!(added.env.get("CHANGES").map(String::as_str), log.to_str());
    assert!(added.problems.is_empty());
    let with = [("colour".to_owned(), "red".to_owned())].into_iter().collect();
    let refused = host.addon("changelog.env", &json!({}), &with).await.unwrap();
    assert_eq!(refused.problems, ["changelog.env takes `variable` only, not `colour`"]);
    host.stop().await;

    // The doctor check: nothing wrong, then a changelog that cannot be written.
    let host = skiff_plugins::Host::new(catalog.get("changelog").unwrap().clone(), clock());
    let ok = host.check("changelog.writable", json!({})).await.unwrap();
    assert_eq!(skiff_plugin::wire::decode::<Vec<skiff_sagaapi::Finding>>(ok).unwrap().unwrap(), vec![]);
    let bad = tmp.path().join("bad");
    let args = ["--file", "/nonexistent-dir/CHANGELOG.md"];
    install(&bad, "changelog", &bin, &args, "[changelog.append]", "[changelog.writable]", "10s");
    let broken = Catalog::discover(&bad);
    let host = skiff_plugins::Host::new(broken.get("changelog").unwrap().clone(), clock());
    let found = host.check("changelog.writable", json!({})).await.unwrap();
    let found = skiff_plugin::wire::decode::<Vec<skiff_sagaapi::Finding>>(found).unwrap().unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].code, "IO_ERROR");
    host.stop().await;
}

async fn faulty(fault: &str, deadline: &str) -> (tempfile::TempDir, Arc<dyn Step>) {
    let bin = skiff_testkit::workspace_bin("skiff-plugin-faulty");
    let tmp = tempfile::tempdir().unwrap();
    install(&tmp.path().join("plugins"), "faulty", &bin, &["--fault", fault], "[faulty.step]", "[]", deadline);
    let catalog = Catalog::discover(&tmp.path().join("plugins"));
    let s = step(&catalog, "faulty.step");
    (tmp, s)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hanging_plugin_fails_its_step_at_the_deadline_and_is_stopped() {
    let (_tmp, s) = faulty("hang", "1s").await;
    s.plan(&ctx(), &request("k", json!({}))).await.expect("it plans normally");
    let started = Instant::now();
    let e = s.run(&ctx(), &request("k", json!({}))).await.unwrap_err();
    assert_eq!(e.code, StepCode::DeadlineExceeded, "{e}");
    assert!(e.message.contains("did not answer `run` of step kind faulty.step within 1000ms"), "{e}");
    assert!(started.elapsed() < Duration::from_secs(10), "it took {:?}", started.elapsed());
    // It was stopped and starts again for the next call.
    s.plan(&ctx(), &request("k", json!({}))).await.expect("a new process answers");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_crashing_plugin_fails_its_step_with_plugin_failed() {
    let (_tmp, s) = faulty("crash", "10s").await;
    let e = s.run(&ctx(), &request("k", json!({}))).await.unwrap_err();
    assert_eq!(e.code, StepCode::PluginFailed, "{e}");
    assert!(e.message.contains("exited during `run`"), "{e}");
    s.plan(&ctx(), &request("k", json!({}))).await.expect("a new process answers");
}

#[tokio::test(flavor = "multi_thread")]
async fn garbage_answers_and_handshakes_fail_with_plugin_failed() {
    let (_tmp, s) = faulty("garbage", "10s").await;
    let e = s.run(&ctx(), &request("k", json!({}))).await.unwrap_err();
    assert_eq!(e.code, StepCode::PluginFailed, "{e}");
    assert!(e.message.contains("garbage"), "{e}");
    let (_tmp, s) = faulty("handshake", "2s").await;
    let e = s.plan(&ctx(), &request("k", json!({}))).await.unwrap_err();
    assert_eq!(e.code, StepCode::PluginFailed, "{e}");
    assert!(e.message.contains("failed its handshake"), "{e}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tampered_executable_is_refused_before_it_starts() {
    let bin = skiff_testkit::workspace_bin("skiff-plugin-changelog");
    let tmp = tempfile::tempdir().unwrap();
    let copy = tmp.path().join("skiff-plugin-changelog");
    std::fs::copy(&bin, &copy).unwrap();
    let marker = tmp.path().join("started");
    let manifest = install(
        &tmp.path().join("plugins"),
        "changelog",
        &copy,
        &["--file", marker.to_str().unwrap()],
        "[changelog.append]",
        "[]",
        "5s",
    );
    // Append a byte: the program still runs, its digest no longer matches.
    let mut bytes = std::fs::read(&copy).unwrap();
    bytes.push(0);
    std::fs::write(&copy, bytes).unwrap();
    let installed = Installed::load(&manifest).unwrap();
    let e = installed.verify().unwrap_err();
    assert_eq!(e.code, StepCode::DigestMismatch, "{e}");
    let s = PluginStep::new("changelog.append".to_owned(), Arc::new(skiff_plugins::Host::new(installed, clock())));
    let e = s.run(&ctx(), &request("k", json!({"service": "hello"}))).await.unwrap_err();
    assert_eq!(e.code, StepCode::DigestMismatch, "{e}");
    assert!(!marker.exists(), "the tampered plugin never ran");
}

#[test]
fn a_plugin_started_by_hand_explains_itself() {
    let bin = skiff_testkit::workspace_bin("skiff-plugin-changelog");
    let out = std::process::Command::new(bin).env_remove("SKIFF_PLUGIN_COOKIE").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("is a Skiff plugin"));
}
