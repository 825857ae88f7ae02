//! thumbnailer: a small real queue worker over PostgreSQL, the program of Skiff's
//! worker example and its queue autoscaling.
//!
//! It reads `DATABASE_URL` (resolved by Skiff from `secret://DB/url` on the instance),
//! creates its tables when they are missing, and runs `CONCURRENCY` lanes (default 4),
//! each taking one job at a time:
//!
//! ```sql
//! BEGIN;
//! SELECT id, payload FROM jobs ORDER BY id FOR UPDATE SKIP LOCKED LIMIT 1;
//! -- the work (WORK_MS milliseconds, default 20)
//! INSERT INTO executions (job_id, instance, payload) VALUES (…);
//! DELETE FROM jobs WHERE id = …;
//! COMMIT;
//! ```
//!
//! A job leaves the queue in the same transaction that records its execution, so a
//! worker killed in the middle of a job leaves it queued for another (never lost), and
//! a finished job is never taken again (never run twice). On SIGTERM (a scale-in, a
//! deploy's drain) every lane finishes the job it holds, commits, and the program exits
//! 0. Enqueue with `INSERT INTO jobs (payload) VALUES ('…')`.
#![expect(clippy::print_stdout, clippy::print_stderr, reason = "a worker logs to stdout and stderr")]
#![expect(
    clippy::disallowed_methods,
    reason = "an example application, not Skiff: it really waits for work and does its work"
)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use tokio_postgres::{Client, NoTls};

const SCHEMA: &str = "
    SELECT pg_advisory_xact_lock(7311);
    CREATE TABLE IF NOT EXISTS jobs (
        id bigserial PRIMARY KEY,
        payload text NOT NULL,
        enqueued_at timestamptz NOT NULL DEFAULT now()
    );
    CREATE TABLE IF NOT EXISTS executions (
        job_id bigint NOT NULL,
        instance text NOT NULL,
        payload text NOT NULL,
        finished_at timestamptz NOT NULL DEFAULT now()
    );";

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

fn number(name: &str, default: u64) -> u64 {
    env(name).and_then(|v| v.parse().ok()).unwrap_or(default)
}

async fn connect(url: &str) -> Result<Client, tokio_postgres::Error> {
    let (client, connection) = tokio_postgres::connect(url, NoTls).await?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            eprintln!("thumbnailer: connection closed: {e}");
        }
    });
    Ok(client)
}

/// Takes, does and records one job; `false` when the queue had none.
async fn one_job(client: &mut Client, instance: &str, work: Duration) -> Result<bool, tokio_postgres::Error> {
    let tx = client.transaction().await?;
    let Some(row) =
        tx.query_opt("SELECT id, payload FROM jobs ORDER BY id FOR UPDATE SKIP LOCKED LIMIT 1", &[]).await?
    else {
        tx.rollback().await?;
        return Ok(false);
    };
    let id: i64 = row.get(0);
    let payload: String = row.get(1);
    tokio::time::sleep(work).await;
    tx.execute("INSERT INTO executions (job_id, instance, payload) VALUES ($1, $2, $3)", &[&id, &instance, &payload])
        .await?;
    tx.execute("DELETE FROM jobs WHERE id = $1", &[&id]).await?;
    tx.commit().await?;
    Ok(true)
}

/// One lane: jobs until SIGTERM, then the one it holds finished.
async fn lane(url: String, instance: String, work: Duration, stop: Arc<AtomicBool>, done: Arc<AtomicU64>) {
    let mut client: Option<Client> = None;
    while !stop.load(Ordering::SeqCst) {
        let c = match client.as_mut() {
            Some(c) => c,
            None => match connect(&url).await {
                Ok(c) => client.insert(c),
                Err(e) => {
                    eprintln!("thumbnailer: cannot connect: {e}");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    continue;
                }
            },
        };
        match one_job(c, &instance, work).await {
            Ok(true) => {
                done.fetch_add(1, Ordering::SeqCst);
            }
            Ok(false) => tokio::time::sleep(Duration::from_millis(100)).await,
            Err(e) => {
                eprintln!("thumbnailer: job failed (it stays queued): {e}");
                client = None;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let Some(url) = env("DATABASE_URL") else {
        eprintln!("thumbnailer: DATABASE_URL is not set (Skiff sets it from the spec's secret reference)");
        std::process::exit(2);
    };
    let instance = env("SKIFF_INSTANCE").unwrap_or_else(|| "local".to_owned());
    let work = Duration::from_millis(number("WORK_MS", 20));
    let lanes = number("CONCURRENCY", 4).clamp(1, 64);
    loop {
        match connect(&url).await {
            Ok(c) => match c.batch_execute(&format!("BEGIN; {SCHEMA} COMMIT;")).await {
                Ok(()) => break,
                Err(e) => eprintln!("thumbnailer: cannot create the queue's tables: {e}"),
            },
            Err(e) => eprintln!("thumbnailer: cannot connect: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let Ok(mut term) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) else {
        eprintln!("thumbnailer: cannot install a SIGTERM handler");
        std::process::exit(1);
    };
    println!("thumbnailer {instance}: {lanes} lanes on the queue `jobs`");
    let tasks: Vec<_> = (0..lanes)
        .map(|_| tokio::spawn(lane(url.clone(), instance.clone(), work, stop.clone(), done.clone())))
        .collect();
    term.recv().await;
    println!("thumbnailer {instance}: SIGTERM, finishing the jobs in hand");
    stop.store(true, Ordering::SeqCst);
    for t in tasks {
        let _ = t.await;
    }
    println!("thumbnailer {instance}: stopped after {} jobs", done.load(Ordering::SeqCst));
}
