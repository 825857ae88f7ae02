//! A real PostgreSQL: create, write rows, snapshot into the bucket, restore into a new
//! instance, and read the same rows back.

mod common;

use std::process::Command;

use skiff_pluginapi::{Database, DatabaseSpec};

fn psql(url: &str, sql: &str) -> String {
    let out = Command::new("psql").args([url, "-At", "-c", sql]).output().expect("run psql");
    assert!(out.status.success(), "psql: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn spec(id: &str) -> DatabaseSpec {
    common::database(id, "orders")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_and_restore_keep_the_rows() {
    let env = common::Env::start().await;
    let p = &env.provider;
    p.create(&spec("orders-db")).await.unwrap();
    let url = p.secret_store().get(&p.connection("orders-db").await.unwrap().url_ref).unwrap().unwrap();
    psql(
        &url,
        "create table orders (id int primary key, item text); insert into orders select g, 'item-' || g from generate_series(1, 500) g;",
    );
    let before = psql(&url, "select count(*), md5(string_agg(item, ',' order by id)) from orders");
    let snap = p.snapshot("orders-db", "orders-snap-1").await.unwrap();
    assert!(snap.provider_ref.starts_with("sha256:"), "the dump is a blob in the bucket");
    assert_eq!(p.snapshot("orders-db", "orders-snap-1").await.unwrap(), snap, "snapshot is idempotent by id");
    let restored = p.restore(&snap, &spec("orders-db-restored")).await.unwrap();
    assert_ne!(restored.port, p.describe("orders-db").await.unwrap().unwrap().port, "a new instance");
    let url2 = p.secret_store().get(&p.connection("orders-db-restored").await.unwrap().url_ref).unwrap().unwrap();
    assert_eq!(
        psql(&url2, "select count(*), md5(string_agg(item, ',' order by id)) from orders"),
        before,
        "same rows after restore"
    );
    assert!(env.ledger.verify().await.unwrap().is_clean());
    for id in ["orders-db", "orders-db-restored"] {
        p.delete(id).await.unwrap();
        assert!(p.describe(id).await.unwrap().is_none());
    }
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_is_a_base_copy_and_a_restore_point_with_the_tables_at_it() {
    let env = common::Env::start().await;
    let p = &env.provider;
    p.create(&spec("ledger-db")).await.unwrap();
    let url = p.secret_store().get(&p.connection("ledger-db").await.unwrap().url_ref).unwrap().unwrap();
    psql(
        &url,
        "create table orders (id int primary key, item text); insert into orders select g, 'item-' || g from generate_series(1, 300) g;",
    );
    psql(&url, "create table empty (id int)");
    let b = p.backup("ledger-db", "op-backup-1").await.unwrap();
    assert_eq!(b.restore_point, "op-backup-1");
    assert!(b.lsn.as_deref().is_some_and(|l| l.contains('/')), "an LSN: {:?}", b.lsn);
    let orders = b.tables.iter().find(|t| t.table == "public.orders").expect("orders in the manifest");
    assert_eq!(orders.rows, 300);
    let expected = psql(&url, "select md5(string_agg(x::text, ',' order by x::text)) from public.orders x");
    assert_eq!(orders.checksum, expected);
    assert!(b.tables.iter().any(|t| t.table == "public.empty" && t.rows == 0 && t.checksum.is_empty()));
    assert!(b.size_bytes.unwrap() > 1_000_000, "a physical copy");
    let base = b.provider_ref.strip_prefix("local-basebackup:").unwrap();
    assert!(std::path::Path::new(base).join("PG_VERSION").exists(), "{base}");
    // WAL archiving is on and the segment holding the point is archived.
    assert_eq!(psql(&url, "show archive_mode"), "on");
    assert_eq!(psql(&url, "select archived_count > 0 from pg_stat_archiver"), "t");
    // Same id, same backup; later writes do not change it.
    psql(&url, "insert into orders values (301, 'later')");
    assert_eq!(p.backup("ledger-db", "op-backup-1").await.unwrap(), b);
    p.delete("ledger-db").await.unwrap();
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn point_in_time_restores_go_into_new_clusters_and_stop_where_asked() {
    use skiff_pluginapi::RestoreTarget;
    let env = common::Env::start().await;
    let p = &env.provider;
    p.create(&spec("pitr-db")).await.unwrap();
    let url = p.secret_store().get(&p.connection("pitr-db").await.unwrap().url_ref).unwrap().unwrap();
    let count = |url: &str| psql(url, "select count(*) from orders");
    psql(
        &url,
        "create table orders (id int primary key, item text); insert into orders select g, 'a' || g from generate_series(1, 100) g;",
    );
    let first = p.backup("pitr-db", "op-first").await.unwrap();
    psql(&url, "insert into orders select g, 'b' || g from generate_series(101, 150) g");
    skiff_clock::SystemClock::block_for(std::time::Duration::from_millis(300));
    let between: u64 = psql(&url, "select (extract(epoch from clock_timestamp()) * 1000)::bigint").parse().unwrap();
    skiff_clock::SystemClock::block_for(std::time::Duration::from_millis(300));
    psql(&url, "insert into orders select g, 'c' || g from generate_series(151, 200) g");
    // A later backup archives the WAL past `between`.
    p.backup("pitr-db", "op-second").await.unwrap();

    // To the first restore point: exactly its rows, nothing later.
    let at_point =
        p.restore_to(&first, &RestoreTarget::Point("op-first".into()), &spec("pitr-db-point")).await.unwrap();
    assert_ne!(at_point.port, p.describe("pitr-db").await.unwrap().unwrap().port, "a new cluster");
    assert_eq!(p.manifest("pitr-db-point").await.unwrap(), first.tables, "the rows at the point, nothing later");
    // To a time: everything committed before it.
    p.restore_to(&first, &RestoreTarget::Time(between), &spec("pitr-db-time")).await.unwrap();
    let url_time = p.secret_store().get(&p.connection("pitr-db-time").await.unwrap().url_ref).unwrap().unwrap();
    assert_eq!(count(&url_time), "150");
    // The copies accept writes, share the source's settings, and the source is untouched.
    psql(&url_time, "insert into orders values (999, 'restored')");
    assert_eq!(p.settings("pitr-db").await.unwrap(), p.settings("pitr-db-time").await.unwrap());
    assert_eq!(count(&url), "200");
    // Idempotent by id.
    let again = p.restore_to(&first, &RestoreTarget::Point("op-first".into()), &spec("pitr-db-point")).await.unwrap();
    assert_eq!(again.port, at_point.port);
    // A point the log never saw fails and leaves no instance.
    let missing = p.restore_to(&first, &RestoreTarget::Point("no-such-point".into()), &spec("pitr-db-bad")).await;
    assert!(missing.is_err(), "{missing:?}");
    assert!(p.describe("pitr-db-bad").await.unwrap().is_none());
    assert!(p.secret_store().get("secret://pitr-db-bad/url").unwrap().is_none(), "no credentials left");
    for id in ["pitr-db", "pitr-db-point", "pitr-db-time", "pitr-db-bad"] {
        p.delete(id).await.unwrap();
    }
    env.stop().await;
}

fn login_fails(url: &str) -> bool {
    let out = Command::new("psql").args([url, "-At", "-c", "select 1"]).output().expect("run psql");
    !out.status.success() && String::from_utf8_lossy(&out.stderr).contains("password authentication failed")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_rotate_between_two_users_and_the_old_login_is_disabled_last() {
    let env = common::Env::start().await;
    let p = &env.provider;
    p.create(&spec("pay-db")).await.unwrap();
    let reference = "secret://pay-db/url";
    let store = p.secret_store();
    let first = store.get(reference).unwrap().unwrap();
    psql(&first, "create table orders (id int primary key); insert into orders values (1), (2)");
    let mut urls = vec![first.clone()];
    for (round, user) in [(1, "skiff_a"), (2, "skiff_b"), (3, "skiff_a")] {
        let staged = p.rotation_create("pay-db", reference).await.unwrap();
        let pending = staged.pending.clone();
        assert_eq!(pending.user, user, "round {round}");
        assert_eq!(staged.current.version, skiff_secrets::version(&store.get(reference).unwrap().unwrap()));
        assert_eq!(p.rotation_create("pay-db", reference).await.unwrap(), staged, "a pending value is kept");
        assert_eq!(p.rotation_set("pay-db", reference).await.unwrap(), pending);
        assert_eq!(p.rotation_set("pay-db", reference).await.unwrap(), pending, "set is idempotent");
        assert_eq!(p.rotation_test("pay-db", reference).await.unwrap(), pending);
        let current = store.get(reference).unwrap().unwrap();
        let next = store.get(&format!("{reference}-pending")).unwrap().unwrap();
        assert_eq!(psql(&current, "select count(*) from orders"), (1 + round).to_string(), "the current login works");
        psql(&next, &format!("insert into orders values ({})", 10 + round));
        let done = p.rotation_finish("pay-db", reference).await.unwrap();
        assert_eq!(done, pending);
        assert_eq!(p.rotation_finish("pay-db", reference).await.unwrap(), pending, "finish is idempotent");
        assert_eq!(store.get(reference).unwrap().unwrap(), next);
        assert_eq!(store.get(&format!("{reference}-previous")).unwrap().unwrap(), current);
        assert!(store.get(&format!("{reference}-pending")).unwrap().is_none(), "nothing left pending");
        assert_eq!(
            skiff_pluginapi::Secrets::version(p, reference).await.unwrap(),
            Some(skiff_secrets::version(&next)),
            "the version is the value's"
        );
        let old_user = current.split("://").nth(1).unwrap().split(':').next().unwrap().to_owned();
        p.disable_login("pay-db", &old_user).await.unwrap();
        p.disable_login("pay-db", &old_user).await.unwrap();
        assert!(login_fails(&current), "the old login is disabled (round {round})");
        assert_eq!(psql(&next, "select count(*) from orders"), (2 + round).to_string(), "the new login works");
        urls.push(next);
    }
    // Skiff's own work does not depend on the consumers' login.
    let b = p.backup("pay-db", "after-rotations").await.unwrap();
    assert_eq!(b.tables.iter().find(|t| t.table == "public.orders").unwrap().rows, 5);
    p.delete("pay-db").await.unwrap();
    env.stop().await;
}
