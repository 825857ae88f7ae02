//! `orders-api migrate [--to N]`: the API's schema migrations, embedded in the binary
//! (so they ship inside the signed release). Each runs in one transaction with its row
//! in the version table `schema_migrations`, so a migration killed halfway leaves
//! nothing behind and one that finished is never applied again. `--to` below the
//! current version runs the downs in reverse. `MIGRATE_PAUSE_MS` holds each
//! migration's transaction open that long (to show a crash mid-migration).

use tokio_postgres::NoTls;

/// Version, what it does, its up and its down.
const MIGRATIONS: &[(i64, &str, &str, &str)] = &[
    (
        1,
        "the orders table",
        "create table if not exists orders (id bigserial primary key, item text not null, created_at timestamptz not null default now())",
        "drop table orders",
    ),
    (2, "a note on every order", "alter table orders add column note text", "alter table orders drop column note"),
];

fn target(args: &[String]) -> Result<i64, String> {
    let latest = MIGRATIONS.last().map_or(0, |m| m.0);
    match args.iter().position(|a| a == "--to") {
        None => Ok(latest),
        Some(i) => {
            let v = args.get(i + 1).ok_or("--to needs a version")?;
            let v: i64 = v.parse().map_err(|_| format!("--to {v}: not a version"))?;
            if v != 0 && !MIGRATIONS.iter().any(|m| m.0 == v) {
                return Err(format!("there is no migration {v}; the latest is {latest}"));
            }
            Ok(v)
        }
    }
}

/// Migrates the database at `url` to `--to` (default: the latest); the exit code.
pub(crate) async fn run(url: &str, args: &[String]) -> i32 {
    match migrate(url, args).await {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("orders-api migrate: {e}");
            1
        }
    }
}

async fn migrate(url: &str, args: &[String]) -> Result<(), String> {
    let to = target(args)?;
    let pause: f64 = std::env::var("MIGRATE_PAUSE_MS").ok().and_then(|v| v.parse().ok()).unwrap_or(0.0) / 1000.0;
    let (mut client, connection) = tokio_postgres::connect(url, NoTls).await.map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    client
        .batch_execute(
            "create table if not exists schema_migrations (version bigint primary key, applied_at timestamptz not null default now())",
        )
        .await
        .map_err(|e| e.to_string())?;
    let row = client
        .query_one("select coalesce(max(version), 0) from schema_migrations", &[])
        .await
        .map_err(|e| e.to_string())?;
    let mut at: i64 = row.get(0);
    println!("orders-api migrate: at version {at}, to {to}");
    while at != to {
        let (version, what, sql, record) = if at < to {
            let m = MIGRATIONS.iter().find(|m| m.0 > at).ok_or("no migration after the current version")?;
            (m.0, m.1, m.2, format!("insert into schema_migrations (version) values ({})", m.0))
        } else {
            let m = MIGRATIONS.iter().find(|m| m.0 == at).ok_or(format!("no migration {at} to undo"))?;
            (m.0 - 1, m.1, m.3, format!("delete from schema_migrations where version = {}", m.0))
        };
        let tx = client.transaction().await.map_err(|e| e.to_string())?;
        tx.batch_execute(sql).await.map_err(|e| format!("migration {what}: {e}"))?;
        tx.batch_execute(&record).await.map_err(|e| e.to_string())?;
        if pause > 0.0 {
            tx.batch_execute(&format!("select pg_sleep({pause})")).await.map_err(|e| e.to_string())?;
        }
        tx.commit().await.map_err(|e| e.to_string())?;
        println!(
            "orders-api migrate: {} {what} (now at version {version})",
            if version > at { "applied" } else { "undid" }
        );
        at = version;
    }
    Ok(())
}
