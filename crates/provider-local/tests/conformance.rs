//! The provider conformance suite passes on the local provider: real runner
//! processes, real HTTP through the load balancer, a real PostgreSQL.

mod common;

use std::time::Duration;

use skiff_pluginapi::conformance::{Fixture, run};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn local_provider_conforms() {
    let env = common::Env::start().await;
    let release = env.release("conform", &[]).await;
    let fixture = Fixture {
        group: env.group("conform", &release, 2),
        listener_port: skiff_testkit::free_port(),
        probe_traffic: true,
        database: Some(common::database("conform-db", "app")),
        settle: Duration::from_secs(30),
    };
    run(common::provider(&env), &fixture).await;
    env.stop().await;
}
