//! The runner with real processes: it refuses tampered, unsigned and wrongly signed
//! releases (recording why in its member document), restarts a killed program, and
//! reports a crash loop as unhealthy.

mod common;

use std::time::Duration;

use skiff_state::docs::{Member, MemberHealth, RunnerDetail};
use skiff_state::keys;

use common::{Env, eventually};

fn runner(env: &Env, release: &str, instance: &str, public_pem: &str) -> std::process::Command {
    let mut cmd = std::process::Command::new(env.runner_bin());
    cmd.env("SKIFF_STATE", &env.bucket)
        .env("SKIFF_SERVICE", "web")
        .env("SKIFF_RELEASE", release)
        .env("SKIFF_INSTANCE", instance)
        .env("PORT", skiff_testkit::free_port().to_string())
        .env("SKIFF_PUBLIC_KEY_PEM", public_pem)
        .env("SKIFF_RUNNER_DIR", env.path().join("runs").join(instance))
        .env("SKIFF_HEARTBEAT_MS", "200")
        .env("SKIFF_CRASH_LOOP_RESTARTS", "3")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    cmd
}

async fn member(env: &Env, instance: &str) -> Option<Member<RunnerDetail>> {
    env.ledger.read(&keys::member("web", instance)).await.ok().flatten()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refuses_tampered_unsigned_and_wrongly_signed_releases() {
    let env = Env::start().await;
    let other_key = skiff_release::generate(b"").unwrap().public_pem;

    let r1 = env.release("web", &[]).await;
    let status = runner(&env, &r1, "i-wrong-key", &other_key).status().unwrap();
    assert_eq!(status.code(), Some(16), "SIGNATURE_INVALID exit code");
    let m = member(&env, "i-wrong-key").await.unwrap();
    assert_eq!((m.health, m.detail.code.as_deref()), (MemberHealth::Refused, Some("SIGNATURE_INVALID")));
    assert!(!env.path().join("runs/i-wrong-key/hello").exists(), "nothing was written or started");

    let r2 = env.release("web", &[]).await;
    let sig = keys::release_signature("web", &r2);
    let v = env.ledger.store().get(&sig).await.unwrap().unwrap().version;
    env.ledger.store().delete_if_match(&sig, &v).await.unwrap();
    assert_eq!(runner(&env, &r2, "i-unsigned", &env.public_pem).status().unwrap().code(), Some(16));
    let m = member(&env, "i-unsigned").await.unwrap();
    assert!(m.detail.reason.unwrap().contains("not signed"));

    let r3 = env.release("web", &[("TAMPER", "yes")]).await;
    let manifest: skiff_release::ReleaseManifest = env.ledger.read(&keys::release("web", &r3)).await.unwrap().unwrap();
    let blob = keys::blob(skiff_release::hex_of(&manifest.artifact.digest));
    let b = env.ledger.store().get(&blob).await.unwrap().unwrap();
    let mut evil = b.bytes.clone();
    evil[100] ^= 0xff;
    env.ledger.store().put_if_match(&blob, evil, &b.version).await.unwrap();
    assert_eq!(
        runner(&env, &r3, "i-tampered", &env.public_pem).status().unwrap().code(),
        Some(17),
        "DIGEST_MISMATCH exit code"
    );
    let m = member(&env, "i-tampered").await.unwrap();
    assert_eq!((m.health, m.detail.code.as_deref()), (MemberHealth::Refused, Some("DIGEST_MISMATCH")));
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarts_a_killed_program_and_flags_a_crash_loop() {
    let env = Env::start().await;
    let ok = env.release("web", &[]).await;
    let mut child = runner(&env, &ok, "i-steady", &env.public_pem).spawn().unwrap();
    let first = eventually("a healthy member", 30, || async {
        let m = member(&env, "i-steady").await?;
        (m.health == MemberHealth::Healthy).then_some(m.detail.pid?)
    })
    .await;
    let _ = std::process::Command::new("kill").args(["-KILL", &first.to_string()]).status();
    let restarted = eventually("a restarted program", 30, || async {
        let m = member(&env, "i-steady").await?;
        (m.detail.restarts == 1 && m.detail.pid.is_some_and(|p| p != first) && m.health == MemberHealth::Healthy)
            .then_some(m)
    })
    .await;
    assert!(!restarted.detail.crash_loop);
    assert!(restarted.detail.rss_kb.is_some(), "heartbeats carry RSS");
    let _ = std::process::Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    assert_eq!(child.wait().unwrap().code(), Some(0), "SIGTERM drains and exits cleanly");
    assert_eq!(member(&env, "i-steady").await.unwrap().health, MemberHealth::Stopped);

    let crashing = env.release("web", &[("HELLO_CRASH_AFTER_MS", "50")]).await;
    let mut child = runner(&env, &crashing, "i-crashy", &env.public_pem).spawn().unwrap();
    let m = eventually("a crash loop", 60, || async {
        let m = member(&env, "i-crashy").await?;
        m.detail.crash_loop.then_some(m)
    })
    .await;
    assert_eq!(m.health, MemberHealth::Unhealthy);
    assert!(m.detail.reason.unwrap().contains("crash loop"));
    let _ = child.kill();
    let _ = child.wait();
    skiff_clock::Clock::sleep(&skiff_clock::SystemClock, Duration::from_millis(100)).await;
    env.stop().await;
}
