//! The provider conformance suite: the same calls and the same expectations for every
//! provider. A provider crate calls [`run`] from its own tests with a [`Fixture`] that
//! describes something it can really launch.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::{
    DatabaseSpec, GroupInfo, GroupSpec, HealthState, InstanceState, LoadBalancerSpec, Permission, Provider, RoleSpec,
    Target, TargetGroupSpec, Weight,
};

/// What the suite may launch and exercise on a provider.
#[derive(Clone, Debug)]
pub struct Fixture {
    /// A group the provider can launch (its release must exist and verify); desired ≥ 1.
    pub group: GroupSpec,
    /// Port of the load balancer listener to create.
    pub listener_port: u16,
    /// Send real HTTP through the load balancer and check health and stats (false
    /// where the provider's load balancer does not carry traffic, e.g. an emulator).
    pub probe_traffic: bool,
    /// A database to create, snapshot, restore and delete; `None` skips that part.
    pub database: Option<DatabaseSpec>,
    /// How long to wait for the provider to converge.
    pub settle: Duration,
}

async fn wait_for<F, Fut, T>(what: &str, timeout: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "conformance: timed out waiting for {what}");
        #[expect(
            clippy::disallowed_methods,
            reason = "the suite polls real providers in real time; pkg crates cannot take skiff-clock"
        )]
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// One HTTP/1.1 GET; the status code.
pub async fn http_get(address: &str, path: &str) -> std::io::Result<u16> {
    let mut s = tokio::net::TcpStream::connect(address).await?;
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n").as_bytes()).await?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await?;
    let text = String::from_utf8_lossy(&buf);
    text.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("bad response: {text:.60}")))
}

async fn running(p: &dyn Provider, group: &str, n: usize, settle: Duration) -> GroupInfo {
    wait_for(&format!("{n} running instances in {group}"), settle, || async {
        let g = p.compute().describe_group(group).await.expect("describe_group")?;
        (g.running().len() == n && g.instances.iter().filter(|i| i.state != InstanceState::Terminated).count() == n)
            .then_some(g)
    })
    .await
}

/// Runs the whole suite. Leaves nothing behind it created.
///
/// # Panics
/// On the first behaviour that differs from the contract, naming it.
pub async fn run(p: &dyn Provider, f: &Fixture) {
    compute_and_traffic(p, f).await;
    secrets(p).await;
    identity(p, &f.group.service).await;
    logs(p, &f.group.service).await;
    if let Some(db) = &f.database {
        database(p, db, f.settle).await;
    }
}

async fn compute_and_traffic(p: &dyn Provider, f: &Fixture) {
    let spec = &f.group;
    let name = spec.name.as_str();
    let a = p.compute().create_group(spec).await.expect("create_group");
    let b = p.compute().create_group(spec).await.expect("create_group again");
    assert_eq!(a.provider_id, b.provider_id, "create_group is idempotent: one group");
    assert!(p.compute().list_groups(&spec.service).await.expect("list_groups").iter().any(|g| g.name == name));
    let g = running(p, name, spec.desired as usize, f.settle).await;
    assert!(g.instances.iter().all(|i| !i.provider_id.is_empty()), "instances have provider ids");

    // Traffic: load balancer, target group, registration, weights read back.
    let lb = LoadBalancerSpec { service: spec.service.clone(), listener_port: f.listener_port };
    let lb_a = p.traffic().ensure_load_balancer(&lb).await.expect("ensure_load_balancer");
    let lb_b = p.traffic().ensure_load_balancer(&lb).await.expect("ensure_load_balancer again");
    assert_eq!(lb_a.provider_id, lb_b.provider_id, "ensure_load_balancer is idempotent");
    let port = spec.launch.port.unwrap_or(80);
    let health = spec.launch.health.clone().expect("the fixture's group serves HTTP");
    let tg = TargetGroupSpec {
        name: format!("{name}-tg"),
        service: spec.service.clone(),
        port,
        health,
        deregistration_delay_ms: 200,
        target_type: crate::TargetType::Instance,
    };
    p.traffic().ensure_target_group(&tg).await.expect("ensure_target_group");
    p.traffic().ensure_target_group(&tg).await.expect("ensure_target_group again");
    let targets: Vec<Target> = g
        .running()
        .iter()
        .map(|i| Target { id: i.id.clone(), address: i.address.clone(), port: i.port.unwrap_or(port) })
        .collect();
    p.traffic().register(&tg.name, &targets).await.expect("register");
    p.traffic().register(&tg.name, &targets).await.expect("register again");
    let weights = vec![Weight { target_group: tg.name.clone(), weight: 100 }];
    p.traffic().set_weights(&spec.service, &weights).await.expect("set_weights");
    assert_eq!(p.traffic().weights(&spec.service).await.expect("weights"), weights, "weights read back as set");
    let health = p.traffic().target_health(&tg.name).await.expect("target_health");
    assert_eq!(health.len(), targets.len(), "every registered target has a health entry");

    if f.probe_traffic {
        wait_for("healthy targets", f.settle, || async {
            let h = p.traffic().target_health(&tg.name).await.ok()?;
            h.iter().all(|t| t.state == HealthState::Healthy).then_some(())
        })
        .await;
        let before = p.traffic().stats(&tg.name).await.expect("stats");
        let address =
            p.traffic().describe_load_balancer(&spec.service).await.expect("describe").expect("the lb exists").address;
        for _ in 0..20 {
            assert_eq!(http_get(&address, "/").await.expect("request through the load balancer"), 200);
        }
        let after = p.traffic().stats(&tg.name).await.expect("stats");
        assert_eq!(after.since(&before).requests, 20, "stats count every request");
        assert!(after.since(&before).percentile_ms(0.95).is_some(), "stats carry latency");
    }

    let gone = targets[0].id.clone();
    p.traffic().deregister(&tg.name, std::slice::from_ref(&gone)).await.expect("deregister");
    wait_for("the deregistered target to leave", f.settle, || async {
        let h = p.traffic().target_health(&tg.name).await.ok()?;
        h.iter().all(|t| t.id != gone || t.state == HealthState::Draining).then_some(())
    })
    .await;

    // Scaling and replacement.
    if spec.desired > 1 {
        p.compute().set_desired(name, 1).await.expect("set_desired");
        running(p, name, 1, f.settle).await;
    }
    let one = running(p, name, 1, f.settle).await;
    let old = one.running()[0].id.clone();
    p.compute().terminate_instance(name, &old).await.expect("terminate_instance");
    wait_for("a replacement instance", f.settle, || async {
        let g = p.compute().describe_group(name).await.ok()??;
        let r = g.running();
        (r.len() == 1 && r[0].id != old).then_some(())
    })
    .await;

    p.traffic().delete_target_group(&tg.name).await.expect("delete_target_group");
    p.traffic().delete_target_group(&tg.name).await.expect("delete_target_group again");
    p.compute().delete_group(name).await.expect("delete_group");
    p.compute().delete_group(name).await.expect("delete_group again");
    wait_for("the group to go", f.settle, || async {
        p.compute().describe_group(name).await.ok()?.is_none().then_some(())
    })
    .await;
}

async fn secrets(p: &dyn Provider) {
    let r = "secret://conformance-db/url";
    p.secrets().delete(r).await.expect("delete before");
    assert!(!p.secrets().exists(r).await.expect("exists"), "absent reference");
    p.secrets().put(r, "postgres://u:p@h/db").await.expect("put");
    assert!(p.secrets().exists(r).await.expect("exists"), "stored reference resolves");
    assert!(p.secrets().list("conformance-db").await.expect("list").contains(&r.to_owned()));
    p.secrets().delete(r).await.expect("delete");
    p.secrets().delete(r).await.expect("delete again");
    assert!(!p.secrets().exists(r).await.expect("exists"), "deleted reference");
}

async fn identity(p: &dyn Provider, service: &str) {
    let role = RoleSpec {
        name: format!("skiff-conformance-{service}"),
        service: service.to_owned(),
        permissions: vec![Permission { action: "logs:write".into(), resource: format!("/skiff/{service}") }],
    };
    let a = p.identity().ensure_role(&role).await.expect("ensure_role");
    let b = p.identity().ensure_role(&role).await.expect("ensure_role again");
    assert_eq!(a.provider_id, b.provider_id, "ensure_role is idempotent");
    let described = p.identity().describe_role(&role.name).await.expect("describe_role").expect("the role exists");
    assert_eq!(described.permissions, role.permissions, "the role has exactly its permissions");
    p.identity().delete_role(&role.name).await.expect("delete_role");
    p.identity().delete_role(&role.name).await.expect("delete_role again");
    assert!(p.identity().describe_role(&role.name).await.expect("describe_role").is_none());
}

async fn logs(p: &dyn Provider, service: &str) {
    p.logs().ensure_log_group(&format!("/skiff/{service}"), 7).await.expect("ensure_log_group");
    p.logs().ensure_log_group(&format!("/skiff/{service}"), 7).await.expect("ensure_log_group again");
    let q = crate::LogQuery { service: service.to_owned(), instance: None, since_ms: None, limit: Some(10) };
    let lines = p.logs().read(&q).await.expect("read logs");
    assert!(lines.len() <= 10, "limit is honoured");
}

async fn database(p: &dyn Provider, spec: &DatabaseSpec, settle: Duration) {
    let a = p.database().create(spec).await.expect("create database");
    let b = p.database().create(spec).await.expect("create database again");
    assert_eq!(a.provider_id, b.provider_id, "create is idempotent");
    assert_eq!(a.status, "available");
    let conn = p.database().connection(&spec.id).await.expect("connection");
    assert!(conn.url_ref.starts_with("secret://"), "the password stays behind a secret reference");
    let snap = p.database().snapshot(&spec.id, &format!("{}-snap", spec.id)).await.expect("snapshot");
    let restored_spec = DatabaseSpec { id: format!("{}-restored", spec.id), ..spec.clone() };
    let restored = p.database().restore(&snap, &restored_spec).await.expect("restore");
    assert_eq!(restored.status, "available");
    assert_ne!(restored.provider_id, a.provider_id, "restore makes a new instance");
    for id in [&spec.id, &restored_spec.id] {
        p.database().delete(id).await.expect("delete database");
        p.database().delete(id).await.expect("delete database again");
    }
    wait_for("databases to go", settle, || async {
        let gone = p.database().describe(&spec.id).await.ok()?.is_none()
            && p.database().describe(&restored_spec.id).await.ok()?.is_none();
        gone.then_some(())
    })
    .await;
}
