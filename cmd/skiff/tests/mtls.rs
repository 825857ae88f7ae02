//! The mTLS plugin end to end on the local provider: the example's two services
//! (`examples/mtls`: ledger-web calls ledger-api) deployed with `network.mtls`, the
//! call going over mutual TLS through both runners; a caller without a certificate
//! refused at ledger-api's mesh port; certificates renewed several times while
//! requests keep coming, none failing; the CA never in a program's environment; and
//! the plugin's doctor check naming a member whose runner stopped renewing.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use skiff_state::docs::{MemberHealth, RunnerDetail};

/// Installs the mTLS plugin as its README says (the manifest, the built executable, pinned).
fn install(s: &Sandbox, env: &[(&str, &str)]) {
    let bin = skiff_testkit::workspace_bin("skiff-plugin-mtls");
    let manifest = repo().join("plugins/mtls/plugin.yaml");
    let r = s.run_env(
        &["plugin", "install", manifest.to_str().unwrap(), "--executable", bin.to_str().unwrap(), "--pin"],
        env,
    );
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
}

/// The example's spec `file` with its port, the built hello, and short-lived certificates.
fn example(s: &Sandbox, file: &str, port: u16) -> String {
    let text = std::fs::read_to_string(repo().join("examples/mtls").join(file)).unwrap();
    let hello = skiff_testkit::workspace_bin("hello").display().to_string();
    let text = regex::Regex::new(r"(?m)^port: \d+$").unwrap().replace(&text, format!("port: {port}"));
    let text = text
        .replace("  build: cargo build --release --quiet -p skiff-example-hello --target-dir target\n", "")
        .replace("path: target/release/hello", &format!("path: {hello}"))
        .replace("certificate_ttl: 1h", "certificate_ttl: 6s");
    let path = s.path().join(file);
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

fn members(dir: &Path, service: &str) -> Vec<skiff_state::docs::Member<RunnerDetail>> {
    block(ledger(dir).members::<RunnerDetail>(service))
        .unwrap()
        .into_iter()
        .filter(|m| m.health == MemberHealth::Healthy && m.detail.mesh.is_some())
        .collect()
}

/// `openssl s_client` to `addr` without a certificate, sending one GET: what came back.
fn call_without_certificate(addr: &str) -> String {
    let mut child = Command::new("openssl")
        .args(["s_client", "-connect", addr, "-servername", "ledger-api.production.skiff.mesh", "-quiet"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write as _;
        let mut stdin = child.stdin.take().unwrap();
        let _ = stdin.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        skiff_clock::SystemClock::block_for(Duration::from_millis(500));
    }
    let out = child.wait_with_output().unwrap();
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

#[test]
fn two_services_talk_over_mutual_tls_and_renewals_during_traffic_fail_no_request() {
    let s = Sandbox::new();
    let runner = skiff_testkit::workspace_bin("skiff-runner").display().to_string();
    let vars = vec![("SKIFF_RUNNER_BIN", runner), ("SKIFF_LEASE_TTL_MS", "1500".to_owned())];
    let _stop = StopAll(&s, vars.clone());
    let env: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (api_port, web_port) = (skiff_testkit::free_port(), skiff_testkit::free_port());
    let api = example(&s, "skiff.yaml", api_port);
    let web = example(&s, "web.yaml", web_port);

    // Without the plugin, the mesh is refused before anything is built, naming the fix.
    let refused = s.run_env(&["validate", "-f", &api, "--format", "json"], &env);
    assert_eq!(refused.code, 3, "SPEC_INVALID: {}", refused.stdout);
    assert!(refused.stdout.contains("network.mtls") && refused.stdout.contains("skiff plugin install"));

    install(&s, &env);
    let dry = s.run_env(&["deploy", "-f", &api, "--dry-run", "--format", "json"], &env);
    assert_eq!(dry.code, 0, "{}", dry.stdout);
    assert!(dry.stdout.contains("hook-mtls-ca") && dry.stdout.contains("mesh CA"), "{}", dry.stdout);
    for spec in [&api, &web] {
        let r = s.run_env(&["deploy", "-f", spec, "--yes", "--format", "json"], &env);
        assert_eq!(r.code, 0, "{}", r.stdout);
    }

    // ledger-web's `/` calls ledger-api through both runners over mutual TLS.
    let reached = skiff_testkit::wait_until(Duration::from_secs(60), || {
        http_get(web_port, "/").is_some_and(|(c, b)| c == 200 && b.contains("ledger-api said: ledger balance 42"))
    });
    assert!(reached, "web reached the ledger through the mesh");
    let api_members = members(s.path(), "ledger-api");
    assert_eq!(api_members.len(), 2);
    let mesh = api_members[0].detail.mesh.clone().unwrap();
    assert_eq!(mesh.identity, "spiffe://skiff/production/ledger-api");

    // A caller without a certificate gets no answer from the mesh port.
    let answer = call_without_certificate(&mesh.address);
    assert!(!answer.contains("ledger balance"), "{answer}");
    assert!(answer.to_lowercase().contains("certificate required") || answer.contains("alert"), "{answer}");

    // The CA and the mesh's own variables never reach a program.
    for m in api_members.iter().chain(&members(s.path(), "ledger-web")) {
        let environ = std::fs::read(format!("/proc/{}/environ", m.detail.pid.unwrap())).unwrap();
        let environ = String::from_utf8_lossy(&environ);
        assert!(!environ.contains("SKIFF_MESH") && !environ.contains("PRIVATE KEY"), "{}", m.instance);
    }

    // Six-second certificates renew every four: calls for fourteen seconds cross
    // several renewals on every instance of both services, and none fails.
    let serials: Vec<String> = api_members.iter().map(|m| m.detail.mesh.clone().unwrap().serial).collect();
    let (mut ok, mut failed) = (0, Vec::new());
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(14) {
        match http_get(web_port, "/") {
            Some((200, b)) if b.contains("ledger balance 42") => ok += 1,
            other => failed.push(format!("{other:?}")),
        }
        skiff_clock::SystemClock::block_for(Duration::from_millis(50));
    }
    assert!(failed.is_empty(), "{} of {} calls failed: {:?}", failed.len(), ok + failed.len(), &failed[..1]);
    assert!(ok > 50, "{ok} calls");
    for m in members(s.path(), "ledger-api").iter().chain(&members(s.path(), "ledger-web")) {
        let mesh = m.detail.mesh.clone().unwrap();
        assert!(mesh.issued >= 3, "{} renewed {} times", m.instance, mesh.issued - 1);
        assert!(!serials.contains(&mesh.serial) || m.service == "ledger-web");
    }

    // Healthy, the plugin's check finds nothing; a runner that stops renewing is named.
    let doctor = s.run_env(&["doctor", "--format", "json"], &env);
    assert!(!doctor.stdout.contains("mesh certificate"), "{}", doctor.stdout);
    let frozen = members(s.path(), "ledger-api").remove(0);
    let pid = nix::unistd::Pid::from_raw(i32::try_from(frozen.detail.runner_pid).unwrap());
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGSTOP).unwrap();
    skiff_clock::SystemClock::block_for(Duration::from_millis(6_500));
    let doctor = s.run_env(&["doctor", "--format", "json"], &env);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGCONT).unwrap();
    assert!(
        doctor.stdout.contains(&format!("instance {}: its mesh certificate", frozen.instance)),
        "{}",
        doctor.stdout
    );
    assert!(doctor.stdout.contains("plugin check mtls.expiry"), "{}", doctor.stdout);
}
