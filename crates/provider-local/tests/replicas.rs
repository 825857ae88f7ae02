//! Streaming replication on a real PostgreSQL: a replica follows its primary, reports
//! how far behind it is, a frozen primary refuses writes and loses none it acknowledged,
//! the promoted replica takes writes, and the fenced old primary, started again,
//! refuses them.

mod common;

use skiff_clock::Clock as _;
use skiff_pluginapi::{Database, ReplicaRole, lsn_lag};

use skiff_testkit::postgres::psql_url as psql;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_follows_is_promoted_and_the_fenced_primary_refuses_writes() {
    let env = common::Env::start().await;
    let p = &env.provider;
    p.create(&common::database("ledger-db", "ledger")).await.unwrap();
    let url = |id: &str| p.secret_store().get(&format!("secret://{id}/url")).unwrap().unwrap();
    let primary = url("ledger-db");
    psql(&primary, "create table acks (seq int primary key)").unwrap();
    psql(&primary, "insert into acks select generate_series(1, 100)").unwrap();

    let spec = common::database("ledger-db-us-west-2", "ledger");
    p.create_replica("ledger-db", &spec, "us-west-2").await.unwrap();
    assert_eq!(p.create_replica("ledger-db", &spec, "us-west-2").await.unwrap().id, spec.id, "idempotent by id");
    let replica = url(&spec.id);
    assert_ne!(replica, primary, "its own port, the source's login");
    let r = p.replication(&spec.id).await.unwrap();
    assert_eq!((r.role, r.region.as_str(), r.read_only), (ReplicaRole::Replica, "us-west-2", true), "{r:?}");
    assert_eq!(r.source.as_deref(), Some("ledger-db"));
    assert!(psql(&replica, "insert into acks values (0)").unwrap_err().contains("read-only"));

    // Replay paused: the primary moves on, the replica's replayed position does not.
    psql(&replica, "select pg_wal_replay_pause()").unwrap();
    psql(&primary, "insert into acks select generate_series(101, 5000)").unwrap();
    let lag = |a: &skiff_pluginapi::Replication, b: &skiff_pluginapi::Replication| {
        lsn_lag(a.lsn.as_deref().unwrap(), b.lsn.as_deref().unwrap()).unwrap()
    };
    let (pr, rr) = (p.replication("ledger-db").await.unwrap(), p.replication(&spec.id).await.unwrap());
    assert_eq!(pr.role, ReplicaRole::Primary);
    assert!(lag(&pr, &rr) > 0, "behind while paused: {pr:?} {rr:?}");
    psql(&replica, "select pg_wal_replay_resume()").unwrap();

    // Frozen: writes refused, and the replica reaches the frozen position.
    let frozen = p.freeze("ledger-db").await.unwrap();
    assert!(psql(&primary, "insert into acks values (5001)").unwrap_err().contains("read-only"));
    assert!(p.replication("ledger-db").await.unwrap().read_only);
    let mut waited = 0;
    loop {
        let at = p.replication(&spec.id).await.unwrap();
        if lsn_lag(&frozen, at.lsn.as_deref().unwrap_or("0/0")) == Some(0) {
            break;
        }
        assert!(waited < 300, "the replica replays up to {frozen}: {at:?}");
        waited += 1;
        skiff_clock::SystemClock.sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(psql(&replica, "select count(*) from acks").unwrap(), "5000", "every acknowledged row");

    p.promote(&spec.id).await.unwrap();
    p.promote(&spec.id).await.unwrap();
    assert_eq!(p.replication(&spec.id).await.unwrap().role, ReplicaRole::Primary);
    psql(&replica, "insert into acks values (5001)").unwrap();

    p.fence("ledger-db").await.unwrap();
    p.fence("ledger-db").await.unwrap();
    assert_eq!(p.replication("ledger-db").await.unwrap().role, ReplicaRole::Fenced);
    p.create(&common::database("ledger-db", "ledger")).await.unwrap();
    let refused = psql(&primary, "insert into acks values (5002)").unwrap_err();
    assert!(refused.contains("read-only"), "the old primary, started again, refuses writes: {refused}");
    let old = p.replication("ledger-db").await.unwrap();
    assert_eq!((old.role, old.reachable, old.read_only), (ReplicaRole::Fenced, true, true));
    for id in ["ledger-db", &spec.id] {
        p.delete(id).await.unwrap();
    }
    env.stop().await;
}
