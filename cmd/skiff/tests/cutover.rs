//! The Kubernetes bridge end to end on the local provider: a real "old" HTTP process
//! stands for the Kubernetes service; its manifest is imported, the imported service
//! deployed as a shadow (mirrored, no user traffic), and the `traffic-cutover` saga
//! moves real requests 0 → 5 → 25 → 50 → 100 with the observed split within ±3 points
//! of each weight over 2,000 requests; a failing Skiff side aborts with every weight
//! back on the old backend; a cutover killed at every step boundary resumes to
//! exactly one retirement.

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::*;

/// The "old" service: a hello process outside Skiff, killed when dropped.
struct Old(std::process::Child, u16);

impl Old {
    fn start(s: &Sandbox) -> Old {
        let port = skiff_testkit::free_port();
        let log = std::fs::File::create(s.path().join(format!("old-{port}.log"))).unwrap();
        let child = std::process::Command::new(skiff_testkit::workspace_bin("hello"))
            .env("PORT", port.to_string())
            .env("SKIFF_RELEASE", "k8s")
            .stdout(log)
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        assert!(skiff_testkit::wait_until(Duration::from_secs(10), || skiff_testkit::port_open(port)));
        Old(child, port)
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.1)
    }
}

impl Drop for Old {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A `kubectl` on PATH that records its arguments, refusing until told to work (no
/// cluster runs here: what matters is the command Skiff runs, and when).
struct Kubectl<'a>(&'a Sandbox);

impl<'a> Kubectl<'a> {
    fn new(s: &'a Sandbox) -> Kubectl<'a> {
        let dir = s.path().join("fake-bin");
        std::fs::create_dir_all(&dir).unwrap();
        let script = format!(
            "#!/bin/sh\necho \"$@\" >> {0}/kubectl.calls\nif [ -f {0}/kubectl.fail ]; then echo 'The connection to the server localhost:8080 was refused' >&2; exit 1; fi\n",
            s.path().display()
        );
        std::fs::write(dir.join("kubectl"), script).unwrap();
        let mut perms = std::fs::metadata(dir.join("kubectl")).unwrap().permissions();
        std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
        std::fs::set_permissions(dir.join("kubectl"), perms).unwrap();
        std::fs::write(s.path().join("kubectl.fail"), "").unwrap();
        Kubectl(s)
    }

    fn path(&self) -> String {
        format!("{}:{}", self.0.path().join("fake-bin").display(), std::env::var("PATH").unwrap_or_default())
    }

    fn works(&self) {
        std::fs::remove_file(self.0.path().join("kubectl.fail")).unwrap();
    }

    fn calls(&self) -> Vec<String> {
        let text = std::fs::read_to_string(self.0.path().join("kubectl.calls")).unwrap_or_default();
        text.lines().map(|l| self.0.redact(l)).collect()
    }
}

/// A keep-alive HTTP/1.1 client counting answers per target group and status.
struct Load {
    port: u16,
    conn: Option<BufReader<TcpStream>>,
}

impl Load {
    fn new(port: u16) -> Load {
        Load { port, conn: None }
    }

    /// One GET /: the status and the target group that answered.
    fn get(&mut self) -> (u16, String) {
        for _ in 0..3 {
            if self.conn.is_none() {
                let Ok(c) = TcpStream::connect(("127.0.0.1", self.port)) else { continue };
                c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                c.set_nodelay(true).unwrap();
                self.conn = Some(BufReader::new(c));
            }
            if let Some(answer) = self.conn.as_mut().and_then(exchange) {
                return answer;
            }
            self.conn = None;
        }
        (0, String::new())
    }

    /// `n` requests: counts per (status, target group).
    fn send(&mut self, n: usize) -> BTreeMap<(u16, String), usize> {
        let mut seen = BTreeMap::new();
        for _ in 0..n {
            *seen.entry(self.get()).or_insert(0) += 1;
        }
        seen
    }
}

fn exchange(c: &mut BufReader<TcpStream>) -> Option<(u16, String)> {
    c.get_mut().write_all(b"GET / HTTP/1.1\r\nHost: cutover\r\n\r\n").ok()?;
    let mut line = String::new();
    c.read_line(&mut line).ok()?;
    let status: u16 = line.split_whitespace().nth(1)?.parse().ok()?;
    let (mut length, mut group) = (0usize, String::new());
    loop {
        let mut h = String::new();
        c.read_line(&mut h).ok()?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        let (k, v) = h.split_once(':')?;
        match k.to_ascii_lowercase().as_str() {
            "content-length" => length = v.trim().parse().ok()?,
            "x-skiff-target-group" => group = v.trim().to_owned(),
            _ => {}
        }
    }
    let mut body = vec![0; length];
    c.read_exact(&mut body).ok()?;
    Some((status, group))
}

struct World<'a> {
    s: &'a Sandbox,
    env: Vec<(&'static str, String)>,
    port: u16,
    _stop: StopAll<'a>,
}

impl<'a> World<'a> {
    fn new(s: &'a Sandbox) -> World<'a> {
        let runner = skiff_testkit::workspace_bin("skiff-runner").display().to_string();
        let env = vec![("SKIFF_RUNNER_BIN", runner), ("SKIFF_LEASE_TTL_MS", "1500".to_owned())];
        std::fs::create_dir_all(s.path().join("bin")).unwrap();
        std::fs::copy(skiff_testkit::workspace_bin("hello"), s.path().join("bin/hello")).unwrap();
        World { s, env: env.clone(), port: skiff_testkit::free_port(), _stop: StopAll(s, env) }
    }

    fn run(&self, args: &[&str]) -> serde_json::Value {
        self.run_with(args, &[])
    }

    fn run_with(&self, args: &[&str], extra: &[(&str, &str)]) -> serde_json::Value {
        let mut env: Vec<(&str, &str)> = self.env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        env.extend_from_slice(extra);
        let r = self.s.run_env(&[args, &["--format", "json"]].concat(), &env);
        json(&r)
    }

    /// The Kubernetes manifest of the old service, imported into `skiff.yaml`, with
    /// the rollout timing of this test and `env` for the Skiff side.
    fn import(&self, env: &str, bake: &str) {
        let manifest = format!(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: web, namespace: shop}}\nspec:\n  replicas: 2\n  \
             selector: {{matchLabels: {{app: web}}}}\n  template:\n    metadata: {{labels: {{app: web}}}}\n    spec:\n      \
             containers:\n      - name: hello\n        image: ghcr.io/acme/hello:1.0\n        command: [hello]\n        \
             env: [{{name: HELLO_MESSAGE, value: migrated}}]\n        ports: [{{containerPort: {}}}]\n        \
             readinessProbe: {{httpGet: {{path: /healthz, port: {}}}, periodSeconds: 1}}\n",
            self.port, self.port
        );
        std::fs::write(self.s.path().join("k8s.yaml"), manifest).unwrap();
        let imported = self.run(&["import", "kube", "k8s.yaml", "--out", "skiff.yaml", "--force"]);
        assert_eq!(imported["code"], "OK", "{imported:#}");
        let spec = std::fs::read_to_string(self.s.path().join("skiff.yaml")).unwrap();
        let spec = spec.replace("HELLO_MESSAGE: migrated", &format!("HELLO_MESSAGE: migrated\n    {env}"));
        let timing = format!(
            "rollout:\n  canary: {{steps: [5, 50, 100], bake: {bake}, analysis: {{max_error_rate: 1%, max_p95_latency: 250ms, min_requests: 20}}}}\n  drain_timeout: 1s\n  step_timeout: 1m\n"
        );
        std::fs::write(self.s.path().join("skiff.yaml"), spec + &timing).unwrap();
    }

    fn show(&self, op: &str) -> serde_json::Value {
        self.run(&["saga", "show", op])
    }

    fn step_status(&self, op: &str, step: &str) -> String {
        let shown = self.show(op);
        shown["data"]["steps"]
            .as_array()
            .and_then(|s| s.iter().find(|s| s["id"] == step))
            .and_then(|s| s["status"].as_str())
            .unwrap_or_default()
            .to_owned()
    }

    /// The unfinished cutover's id, once the spawned command created it.
    fn cutover_op(&self) -> String {
        let mut found = None;
        skiff_testkit::wait_until(Duration::from_secs(30), || {
            let listed = self.run(&["saga", "list", "--service", "web"]);
            found = listed["data"].as_array().and_then(|ops| {
                ops.iter()
                    .find(|o| o["saga"] == "traffic-cutover" && o["status"] != "succeeded")
                    .and_then(|o| o["op_id"].as_str().map(str::to_owned))
            });
            found.is_some()
        });
        found.expect("a cutover operation")
    }

    fn spawn(&self, args: &[&str]) -> std::process::Child {
        std::process::Command::new(assert_cmd::cargo::cargo_bin("skiff"))
            .current_dir(self.s.path())
            .env("SKIFF_CONFIG", self.s.path().join("config.yaml"))
            .env("HOME", self.s.path())
            .envs(self.env.iter().map(|(k, v)| (*k, v.as_str())))
            .args(args)
            .args(["--format", "json"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap()
    }
}

fn share(seen: &BTreeMap<(u16, String), usize>, group: &str) -> f64 {
    let total: usize = seen.values().sum();
    let on: usize = seen.iter().filter(|((_, g), _)| g == group).map(|(_, n)| n).sum();
    100.0 * on as f64 / total as f64
}

fn failed(seen: &BTreeMap<(u16, String), usize>) -> usize {
    seen.iter().filter(|((status, _), _)| *status != 200).map(|(_, n)| n).sum()
}

#[test]
fn an_imported_service_takes_the_traffic_step_by_step_within_three_points() {
    let s = Sandbox::new();
    let w = World::new(&s);
    let old = Old::start(&s);
    w.import("", "10s");
    // The shadow: healthy, recorded, and no user traffic (nothing routes to it yet).
    let shadow = w.run(&["deploy", "--shadow", "--yes"]);
    assert_eq!(shadow["code"], "OK", "{shadow:#}");
    let status = w.run(&["status", "web"]);
    let release = status["data"]["shadow_release"].as_str().unwrap_or_else(|| panic!("{status:#}")).to_owned();
    let skiff_group = format!("web-{}", release.replace('.', "-"));
    let mut load = Load::new(w.port);
    assert_eq!(load.get().0, 503, "a shadow takes no user traffic");

    let from = old.url();
    let start = [
        "saga",
        "start",
        "traffic-cutover",
        "--service",
        "web",
        "--from",
        &from,
        "--param",
        "namespace=shop",
        "--kubeconfig",
        "kube.yaml",
    ];
    let mut cutover = w.spawn(&[&start[..], &["--yes"]].concat());
    let op = w.cutover_op();
    let measure = |load: &mut Load, weight: u32| {
        let step = format!("analyse-{weight}");
        assert!(
            skiff_testkit::wait_until(Duration::from_secs(60), || w.step_status(&op, &step) == "running"),
            "{step} never ran: {:#}",
            w.show(&op)
        );
        let seen = load.send(2000);
        assert_eq!(w.step_status(&op, &step), "running", "2,000 requests inside the bake at {weight}%");
        let observed = share(&seen, &skiff_group);
        assert!((observed - f64::from(weight)).abs() <= 3.0, "{observed:.1}% on Skiff at {weight}%: {seen:?}");
        assert_eq!(failed(&seen), 0, "no failed request at {weight}%: {seen:?}");
    };
    for weight in [5u32, 25, 50] {
        measure(&mut load, weight);
    }
    assert_eq!(cutover.wait().unwrap().code(), Some(9), "the cutover stops at the gate before 100%");
    assert_eq!(w.step_status(&op, "shift-100"), "pending");
    let mut approver = w.spawn(&["saga", "approve", &op, "--yes"]);
    measure(&mut load, 100);
    assert_eq!(approver.wait().unwrap().code(), Some(9), "the old backend is retired only after approval");
    // The scale-down runs with the kubeconfig: a kubectl that fails pauses the
    // operation with its error; once it works, resuming runs it again, once.
    let kubectl = Kubectl::new(&s);
    let path = kubectl.path();
    let paused = w.run_with(&["saga", "approve", &op, "--yes"], &[("PATH", &path)]);
    assert_eq!(w.show(&op)["data"]["status"], "paused", "{paused:#}");
    assert!(paused.to_string().contains("connection to the server"), "{paused:#}");
    kubectl.works();
    let done = w.run_with(&["saga", "resume", &op, "--yes"], &[("PATH", &path)]);
    assert_eq!(done["code"], "OK", "{done:#}");
    let retire = done["data"]["steps"].as_array().unwrap().iter().find(|s| s["id"] == "retire-old").unwrap().clone();
    let wanted = "kubectl --kubeconfig [TMP]/kube.yaml -n shop scale deployment/web --replicas=0";
    assert!(s.redact(retire["summary"].as_str().unwrap()).contains(&format!("ran `{wanted}`")), "{retire:#}");
    assert_eq!(kubectl.calls(), ["--kubeconfig [TMP]/kube.yaml -n shop scale deployment/web --replicas=0"; 2]);

    // The evidence, the promotion, and the old backend out of the load balancer.
    let record: serde_json::Value = serde_json::from_slice(
        &std::fs::read(s.path().join(format!(".skiff/state/v1/cutovers/web/{op}.json"))).unwrap(),
    )
    .unwrap();
    assert_eq!(record["steps"], serde_json::json!([5, 25, 50, 100]));
    assert_eq!(record["verdicts"].as_object().unwrap().len(), 4, "{record:#}");
    let status = w.run(&["status", "web"]);
    assert_eq!(status["data"]["stable_release"], release.as_str(), "{status:#}");
    assert!(status["data"]["shadow_release"].is_null());
    let after = load.send(200);
    assert_eq!(after.get(&(200, skiff_group.clone())), Some(&200), "{after:?}");

    // The next release as a mirrored shadow: it answers 500, users never see it, and
    // the comparison says so.
    w.import("HELLO_ERROR_RATE: \"1\"", "3s");
    let (seen, mirrored) = under_load(w.port, || w.run(&["deploy", "--shadow", "--mirror", "50", "--yes"]));
    assert_eq!(mirrored["code"], "OK", "{mirrored:#}");
    let step = mirrored["data"]["steps"].as_array().unwrap().iter().find(|s| s["id"] == "mirror").unwrap().clone();
    let summary = step["summary"].as_str().unwrap();
    assert!(summary.contains("errors primary 0.0% vs shadow 100.0%"), "{summary}");
    let copies: u64 = summary.split(" requests mirrored").next().unwrap().parse().unwrap();
    assert!(copies >= 10, "{summary}");
    assert_eq!(failed(&seen), 0, "users see none of the shadow's answers: {seen:?}");
    assert!(seen.keys().all(|(_, g)| g == &skiff_group), "all traffic stays on stable: {seen:?}");
    assert_eq!(w.run(&["state", "verify"])["code"], "OK");
}

/// Runs `f` while a client sends requests; what the client saw, and what `f` answered.
/// Answers before the first success (a load balancer with nothing to send to yet)
/// are not counted.
fn under_load<T>(port: u16, f: impl FnOnce() -> T) -> (BTreeMap<(u16, String), usize>, T) {
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = stop.clone();
    let client = std::thread::spawn(move || {
        let mut load = Load::new(port);
        let mut seen = BTreeMap::new();
        while !flag.load(std::sync::atomic::Ordering::SeqCst) {
            let answer = load.get();
            if answer.0 == 200 || !seen.is_empty() {
                *seen.entry(answer).or_insert(0) += 1;
            }
        }
        seen
    });
    let answer = f();
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    (client.join().unwrap(), answer)
}

#[test]
fn a_failing_skiff_side_aborts_the_cutover_with_all_traffic_on_the_old_backend() {
    let s = Sandbox::new();
    let w = World::new(&s);
    let old = Old::start(&s);
    w.import("HELLO_ERROR_RATE: \"0.1\"", "10s");
    let shadow = w.run(&["deploy", "--shadow", "--yes"]);
    assert_eq!(shadow["code"], "OK", "{shadow:#}");
    let from = old.url();
    let start =
        ["saga", "start", "traffic-cutover", "--service", "web", "--from", &from, "--steps", "5,50,100", "--yes"];
    let (seen, aborted) = under_load(w.port, || w.run(&start));
    assert_eq!(aborted["code"], "CANARY_FAILED", "{aborted:#}");
    assert!(aborted["facts"].to_string().contains("stopped at 5%"), "{aborted:#}");
    // Every weight back on the old backend; the Skiff side took at most its 5% share.
    let mut load = Load::new(w.port);
    let after = load.send(200);
    assert_eq!(after.get(&(200, "web-external".to_owned())), Some(&200), "{after:?}");
    // What failed is the Skiff side's own answers while it had its 5% (the load balancer
    // dropped nothing while weights moved), within the 1% error budget of the traffic.
    let total: usize = seen.values().sum();
    let failures = failed(&seen);
    assert!(seen.keys().all(|(status, g)| *status == 200 || (*status == 500 && g != "web-external")), "{seen:?}");
    assert!(total > 0 && failures * 100 <= total, "{failures} failed of {total}, over the 1% budget: {seen:?}");
    let status = w.run(&["status", "web"]);
    assert!(status["data"]["stable_release"].is_null(), "nothing promoted: {status:#}");
    assert!(!status["data"]["shadow_release"].is_null(), "the shadow stays for another try: {status:#}");
}

/// `skiff ARGS` frozen at engine hook `point`, then SIGKILLed there.
fn kill_at(w: &World<'_>, args: &[&str], point: &str) {
    let env: Vec<(&str, &str)> = w.env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    w.s.kill_at(&env, args, point);
}

#[test]
fn a_cutover_killed_at_every_step_boundary_resumes_to_one_retirement() {
    let s = Sandbox::new();
    let w = World::new(&s);
    let old = Old::start(&s);
    // No bake: the shifts, gates and retirement are what a kill can interrupt.
    w.import("", "0s");
    assert_eq!(w.run(&["deploy", "--shadow", "--yes"])["code"], "OK");
    let from = old.url();
    let start = ["saga", "start", "traffic-cutover", "--service", "web", "--from", &from, "--steps", "5,100", "--yes"];
    let before_gate = ["before:step_started:attach", "after:result:attach", "after:result:shift-5"];
    let after_gate = ["after:result:shift-100", "after:result:promote"];
    let last_gate = ["after:result:retire-old"];
    let mut load = Load::new(w.port);
    for (n, p) in before_gate.iter().chain(&after_gate).chain(&last_gate).enumerate() {
        let op = if before_gate.contains(p) {
            kill_at(&w, &start, p);
            let op = w.cutover_op();
            if *p == "after:result:attach" {
                // 0%: killed right after the attach, the old backend answers everything.
                let seen = load.send(200);
                assert_eq!(seen.get(&(200, "web-external".to_owned())), Some(&200), "{seen:?}");
            }
            assert_eq!(w.run(&["saga", "resume", &op, "--yes"])["code"], "APPROVAL_REQUIRED", "after a kill at {p}");
            assert_eq!(w.run(&["saga", "approve", &op, "--yes"])["code"], "APPROVAL_REQUIRED", "{p}");
            op
        } else {
            assert_eq!(w.run(&start)["code"], "APPROVAL_REQUIRED");
            let op = w.cutover_op();
            if after_gate.contains(p) {
                kill_at(&w, &["saga", "approve", &op, "--yes"], p);
                assert_eq!(w.run(&["saga", "resume", &op, "--yes"])["code"], "APPROVAL_REQUIRED", "{p}");
            } else {
                assert_eq!(w.run(&["saga", "approve", &op, "--yes"])["code"], "APPROVAL_REQUIRED", "{p}");
            }
            op
        };
        let seen = load.send(20);
        assert!(
            seen.keys().all(|(status, g)| *status == 200 && g.starts_with("web-2")),
            "all on Skiff before the retirement ({p}): {seen:?}"
        );
        if last_gate.contains(p) {
            kill_at(&w, &["saga", "approve", &op, "--yes"], p);
            assert_eq!(w.run(&["saga", "resume", &op, "--yes"])["code"], "OK", "resume after a kill at {p}");
        } else {
            assert_eq!(w.run(&["saga", "approve", &op, "--yes"])["code"], "OK", "{p}");
        }
        let records = std::fs::read_dir(s.path().join(".skiff/state/v1/cutovers/web")).unwrap().count();
        assert_eq!(records, n + 1, "one retirement record per cutover, after {p}");
        let seen = load.send(20);
        assert!(seen.keys().all(|(status, g)| *status == 200 && g.starts_with("web-2")), "{p}: {seen:?}");
    }
    assert_eq!(w.run(&["state", "verify"])["code"], "OK");
}
