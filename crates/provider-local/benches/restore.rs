//! A point-in-time restore of a 1 GB local PostgreSQL database to a restore point,
//! through the provider, as a ratio to the same thing done by hand in the same run:
//! copy the base backup, ask for recovery from the archive to the point, start the
//! cluster and wait for promotion (target ≤ 1.3×). Rounds alternate so neither side
//! gets the warmer cache. `SKIFF_BENCH_RESTORE_MB` sets the size (default 1024).
//! Writes JSON to `$SKIFF_BENCH_OUT` (or stdout); run through `cargo xtask bench`.
#![expect(clippy::print_stdout, reason = "a benchmark reports on stdout")]
#![allow(dead_code, reason = "the shared test environment has more than the benchmark uses")]

#[path = "../tests/common/mod.rs"]
mod common;

use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::json;
use skiff_pluginapi::{Database, DatabaseSpec, RestoreTarget};

const ROUNDS: usize = 2;
const TARGET_RATIO: f64 = 1.3;

fn spec(id: &str) -> DatabaseSpec {
    common::database(id, "bench")
}

/// The directory of initdb/pg_ctl.
fn pg_bin() -> PathBuf {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|d| d.flatten().map(|e| e.path().join("bin")).filter(|b| b.join("pg_ctl").exists()).collect())
        .unwrap_or_default();
    dirs.sort();
    dirs.pop().unwrap_or_else(|| PathBuf::from("/usr/bin"))
}

/// A command as the PostgreSQL user when this is root (PostgreSQL refuses root).
fn as_pg(program: &Path) -> Command {
    let mut c = Command::new(program);
    if nix::unistd::geteuid().is_root() {
        let user = nix::unistd::User::from_name("postgres").unwrap().expect("a postgres user");
        c.uid(user.uid.as_raw()).gid(user.gid.as_raw()).current_dir("/");
    }
    c.env("LC_ALL", "C");
    c
}

fn ok(c: &mut Command) -> String {
    let out = c.output().expect("run a PostgreSQL tool");
    assert!(out.status.success(), "{c:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn psql(url: &str, sql: &str) -> String {
    ok(Command::new("psql").args([url, "-X", "-At", "-v", "ON_ERROR_STOP=1", "-c", sql]))
}

/// The hand-made restore: what an operator would run, timed from the copy to promotion.
fn by_hand(base_copy: &Path, wal: &Path, point: &str, dir: &Path) -> Duration {
    let bin = pg_bin();
    let data = dir.join("data");
    let sock = dir.join("sock");
    ok(as_pg(Path::new("mkdir")).arg("-p").arg(&sock));
    let started = Instant::now();
    ok(as_pg(Path::new("cp")).arg("-a").arg(base_copy).arg(&data));
    let port = skiff_testkit::free_port();
    let conf = format!(
        "\narchive_mode = off\nrestore_command = 'cp {}/%f %p'\nrecovery_target_name = '{point}'\nrecovery_target_action = 'promote'\n",
        wal.display()
    );
    let mut text = std::fs::read_to_string(data.join("postgresql.conf")).unwrap();
    text.push_str(&conf);
    std::fs::write(data.join("postgresql.conf"), text).unwrap();
    std::fs::write(data.join("recovery.signal"), "").unwrap();
    if nix::unistd::geteuid().is_root() {
        let user = nix::unistd::User::from_name("postgres").unwrap().expect("a postgres user");
        std::os::unix::fs::chown(data.join("recovery.signal"), Some(user.uid.as_raw()), Some(user.gid.as_raw()))
            .unwrap();
    }
    let opts = format!("-p {port} -c listen_addresses=127.0.0.1 -k {}", sock.display());
    ok(as_pg(&bin.join("pg_ctl"))
        .args(["-D", &data.display().to_string(), "-l", &dir.join("log").display().to_string(), "-w", "-t", "300"])
        .args(["-o", &opts, "start"]));
    let query = [
        "-h",
        &sock.display().to_string(),
        "-p",
        &port.to_string(),
        "-U",
        "skiff",
        "-d",
        "postgres",
        "-X",
        "-At",
        "-c",
        "select pg_is_in_recovery()",
    ]
    .map(str::to_owned);
    loop {
        let out = as_pg(&bin.join("psql")).args(&query).output().unwrap();
        if String::from_utf8_lossy(&out.stdout).trim() == "f" {
            break;
        }
        skiff_clock::SystemClock::block_for(Duration::from_millis(50));
    }
    let took = started.elapsed();
    ok(as_pg(&bin.join("pg_ctl")).args(["-D", &data.display().to_string(), "-m", "fast", "-w", "stop"]));
    ok(as_pg(Path::new("rm")).arg("-rf").arg(dir));
    took
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let mb: u64 = std::env::var("SKIFF_BENCH_RESTORE_MB").ok().and_then(|v| v.parse().ok()).unwrap_or(1024);
    let env = common::Env::start().await;
    let p = &env.provider;
    p.create(&spec("bench-db")).await.unwrap();
    let url = p.secret_store().get("secret://bench-db/url").unwrap().unwrap();
    // Rows of ~1 KiB that PostgreSQL neither compresses nor moves out of line.
    let rows = mb * 1024;
    psql(&url, "create table payload (id bigint primary key, body text)");
    for chunk in (0..rows).step_by(100_000) {
        let end = (chunk + 100_000).min(rows);
        psql(
            &url,
            &format!(
                "insert into payload select g, string_agg(md5((g * 31 + k)::text), '') from generate_series({}, {end}) g, generate_series(1, 31) k group by g",
                chunk + 1
            ),
        );
    }
    let size = psql(&url, "select pg_database_size(current_database())");
    let backup = p.backup("bench-db", "bench-point").await.unwrap();
    // Writes after the point: the replay must stop at it.
    psql(&url, "insert into payload values (0, 'after the point')");
    let base_copy = PathBuf::from(backup.provider_ref.strip_prefix("local-basebackup:").unwrap());
    let wal = base_copy.parent().and_then(Path::parent).unwrap().join("wal");
    let scratch = base_copy.parent().and_then(Path::parent).and_then(Path::parent).unwrap().to_path_buf();
    let (mut skiff, mut hand) = (Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        let mut manual =
            || hand.push(by_hand(&base_copy, &wal, "bench-point", &scratch.join(format!("by-hand-{round}"))));
        if round % 2 == 0 {
            manual();
        }
        let id = format!("bench-r{round}");
        let started = Instant::now();
        p.restore_to(&backup, &RestoreTarget::Point("bench-point".into()), &spec(&id)).await.unwrap();
        skiff.push(started.elapsed());
        p.delete(&id).await.unwrap();
        if round % 2 == 1 {
            manual();
        }
    }
    p.delete("bench-db").await.unwrap();
    let ms = |d: &[Duration]| d.iter().map(|d| d.as_millis() as u64).collect::<Vec<_>>();
    let best = |d: &[Duration]| d.iter().min().copied().unwrap_or_default().as_secs_f64();
    let ratio = best(&skiff) / best(&hand);
    let out = json!({
        "suite": "restore",
        "target": {"metric": "restore_vs_by_hand", "below": TARGET_RATIO, "met": ratio <= TARGET_RATIO},
        "restore_vs_by_hand": (ratio * 100.0).round() / 100.0,
        "database_bytes": size.parse::<u64>().unwrap_or(0),
        "base_backup_bytes": backup.size_bytes,
        "skiff_ms": ms(&skiff),
        "by_hand_ms": ms(&hand),
        "what": "restore of a base backup + archived WAL to a named restore point into a new cluster, until promoted",
    });
    let text = serde_json::to_string_pretty(&out).unwrap();
    match std::env::var("SKIFF_BENCH_OUT") {
        Ok(path) => std::fs::write(path, text + "\n").unwrap(),
        Err(_) => println!("{text}"),
    }
    env.stop().await;
}
