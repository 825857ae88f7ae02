//! The load balancer with real runner processes and real HTTP: weight splits hold,
//! unhealthy targets get no traffic, and a target closing its connections loses no
//! request.

mod common;

use std::collections::BTreeMap;

use skiff_pluginapi::{HealthState, LoadBalancerSpec, Target, TargetGroupSpec, Weight};

use common::{Env, eventually, health};

async fn targets_of(env: &Env, group: &str, n: usize) -> Vec<Target> {
    eventually(&format!("{n} running instances of {group}"), 30, || async {
        let g = env.provider.describe_group_info(group).await?;
        let running = g.running();
        (running.len() == n).then(|| {
            running
                .iter()
                .map(|i| Target { id: i.id.clone(), address: i.address.clone(), port: i.port.unwrap() })
                .collect()
        })
    })
    .await
}

trait Describe {
    async fn describe_group_info(&self, g: &str) -> Option<skiff_pluginapi::GroupInfo>;
}

impl Describe for skiff_provider_local::LocalProvider {
    async fn describe_group_info(&self, g: &str) -> Option<skiff_pluginapi::GroupInfo> {
        use skiff_pluginapi::Compute;
        self.describe_group(g).await.ok().flatten()
    }
}

async fn target_group(env: &Env, name: &str, targets: &[Target]) {
    use skiff_pluginapi::Traffic;
    let spec = TargetGroupSpec {
        name: name.to_owned(),
        service: "web".into(),
        port: 8080,
        health: health(),
        deregistration_delay_ms: 100,
        target_type: skiff_pluginapi::TargetType::Instance,
    };
    env.provider.ensure_target_group(&spec).await.unwrap();
    env.provider.register(name, targets).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_five_ninety_five_split_holds_over_two_thousand_requests() {
    use skiff_pluginapi::{Compute, Traffic};
    let env = Env::start().await;
    let (a, b) = (env.release("web", &[]).await, env.release("web", &[]).await);
    for r in [&a, &b] {
        env.provider.create_group(&env.group("web", r, 1)).await.unwrap();
    }
    let ta = targets_of(&env, &env.group("web", &a, 1).name, 1).await;
    let tb = targets_of(&env, &env.group("web", &b, 1).name, 1).await;
    target_group(&env, "tg-canary", &ta).await;
    target_group(&env, "tg-stable", &tb).await;
    let port = skiff_testkit::free_port();
    env.provider.ensure_load_balancer(&LoadBalancerSpec { service: "web".into(), listener_port: port }).await.unwrap();
    let weights = vec![
        Weight { target_group: "tg-canary".into(), weight: 5 },
        Weight { target_group: "tg-stable".into(), weight: 95 },
    ];
    env.provider.set_weights("web", &weights).await.unwrap();
    assert_eq!(env.provider.weights("web").await.unwrap(), weights, "weights read back as set");
    for tg in ["tg-canary", "tg-stable"] {
        eventually("healthy targets", 30, || async {
            let h = env.provider.target_health(tg).await.ok()?;
            h.iter().all(|t| t.state == HealthState::Healthy).then_some(())
        })
        .await;
    }
    let client = reqwest::Client::new();
    let mut served: BTreeMap<String, u32> = BTreeMap::new();
    for _ in 0..2000 {
        let r = client.get(format!("http://127.0.0.1:{port}/")).send().await.unwrap();
        assert_eq!(r.status(), 200);
        let tg = r.headers()["x-skiff-target-group"].to_str().unwrap().to_owned();
        *served.entry(tg).or_default() += 1;
    }
    let canary = f64::from(served["tg-canary"]) / 2000.0 * 100.0;
    assert!((canary - 5.0).abs() <= 2.0, "canary share {canary:.2}% must be 5% ± 2 points ({served:?})");
    let stats = env.provider.stats("tg-canary").await.unwrap();
    assert_eq!(stats.requests, u64::from(served["tg-canary"]), "stats count what was served");
    assert_eq!(stats.errors, 0);
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_unhealthy_target_gets_no_traffic() {
    use skiff_pluginapi::{Compute, Traffic};
    let env = Env::start().await;
    let good = env.release("web", &[]).await;
    let bad = env.release("web", &[("HELLO_UNHEALTHY", "1")]).await;
    env.provider.create_group(&env.group("web", &good, 1)).await.unwrap();
    env.provider.create_group(&env.group("web", &bad, 1)).await.unwrap();
    let mut targets = targets_of(&env, &env.group("web", &good, 1).name, 1).await;
    let bad_target = targets_of(&env, &env.group("web", &bad, 1).name, 1).await;
    targets.extend(bad_target.clone());
    target_group(&env, "tg-mixed", &targets).await;
    let port = skiff_testkit::free_port();
    env.provider.ensure_load_balancer(&LoadBalancerSpec { service: "web".into(), listener_port: port }).await.unwrap();
    env.provider.set_weights("web", &[Weight { target_group: "tg-mixed".into(), weight: 100 }]).await.unwrap();
    let health = eventually("one healthy and one unhealthy target", 30, || async {
        let h = env.provider.target_health("tg-mixed").await.ok()?;
        let states: Vec<HealthState> = h.iter().map(|t| t.state).collect();
        (states.contains(&HealthState::Healthy) && states.contains(&HealthState::Unhealthy)).then_some(h)
    })
    .await;
    let unhealthy = health.iter().find(|t| t.state == HealthState::Unhealthy).unwrap();
    assert_eq!(unhealthy.id, bad_target[0].id);
    assert!(unhealthy.reason.as_deref().unwrap_or("").contains("500"), "the reason says why: {:?}", unhealthy.reason);
    let client = reqwest::Client::new();
    for _ in 0..200 {
        let body = client.get(format!("http://127.0.0.1:{port}/")).send().await.unwrap().text().await.unwrap();
        assert!(!body.contains(&bad_target[0].id), "a request reached the unhealthy target: {body}");
    }
    // With no healthy target anywhere, the load balancer says so.
    env.provider.deregister("tg-mixed", &[targets[0].id.clone()]).await.unwrap();
    let r = client.get(format!("http://127.0.0.1:{port}/")).send().await.unwrap();
    assert_eq!(r.status(), 503);
    env.stop().await;
}

/// A backend that answers every request and then closes the connection without saying
/// so (as a server whose idle timeout has passed does); counts connections.
fn closing_backend() -> (u16, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::io::{BufRead, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let connections = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = connections.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            counted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let mut reader = std::io::BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 0) && line != "\r\n" {
                line.clear();
            }
            let _ = (&stream).write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
        }
    });
    (port, connections)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_target_that_closes_its_connections_still_answers_every_request() {
    use skiff_pluginapi::Traffic;
    let env = Env::start().await;
    let (backend, connections) = closing_backend();
    target_group(&env, "tg-closing", &[Target { id: "closing".into(), address: "127.0.0.1".into(), port: backend }])
        .await;
    let port = skiff_testkit::free_port();
    env.provider.ensure_load_balancer(&LoadBalancerSpec { service: "web".into(), listener_port: port }).await.unwrap();
    env.provider.set_weights("web", &[Weight { target_group: "tg-closing".into(), weight: 100 }]).await.unwrap();
    eventually("a healthy target", 30, || async {
        let h = env.provider.target_health("tg-closing").await.ok()?;
        h.iter().all(|t| t.state == HealthState::Healthy).then_some(())
    })
    .await;
    // One keep-alive client connection; the balancer's connection to the backend is
    // closed after every answer, so each request needs a new one.
    let client = reqwest::Client::builder().pool_max_idle_per_host(1).build().unwrap();
    let before = connections.load(std::sync::atomic::Ordering::Relaxed);
    for i in 0..100 {
        let r = client.get(format!("http://127.0.0.1:{port}/")).send().await.unwrap();
        assert_eq!(r.status(), 200, "request {i}: {:?}", r.text().await);
        assert_eq!(r.text().await.unwrap(), "ok");
    }
    let used = connections.load(std::sync::atomic::Ordering::Relaxed) - before;
    assert!(used >= 100, "every request went on a new backend connection ({used})");
    assert_eq!(env.provider.stats("tg-closing").await.unwrap().errors, 0);
    env.stop().await;
}
