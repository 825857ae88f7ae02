//! Queue-driven autoscaling on the local provider, end to end: the example worker
//! (`thumbnailer`, real processes) takes jobs from a real PostgreSQL table with
//! `FOR UPDATE SKIP LOCKED`; the autoscaler in the local supervisor's process reads
//! the backlog and resizes the group. A burst of 2,000 jobs scales it out to at most
//! `max`, the drained queue brings it back to `min` after the cooldown, and every job
//! ran exactly once (each execution is a row; a job leaves the queue in the same
//! transaction).

mod common;

use std::time::Duration;

use common::*;

const MAX: u64 = 4;
const COOLDOWN_S: u64 = 4;
const POLL_MS: u64 = 500;

/// Writes `worker.yaml`: the example worker with its queue database, each job taking
/// `work_ms`.
fn spec(s: &Sandbox, work_ms: u64) -> String {
    let bin = skiff_testkit::workspace_bin("thumbnailer");
    let yaml = format!(
        "service: thumbnailer\nkind: worker\nartifact: {{path: {}}}\n\
         run: {{command: [thumbnailer], env: {{CONCURRENCY: \"2\", WORK_MS: \"{work_ms}\"}}}}\n\
         scale:\n  min: 1\n  max: {MAX}\n  queue: {{kind: postgres, table: jobs, age_column: enqueued_at, \
         target_per_instance: 250, cooldown: {COOLDOWN_S}s}}\n\
         secrets: {{DATABASE_URL: secret://jobs-db/url}}\n\
         database: {{name: jobs-db, engine: postgres, version: \"16\"}}\n\
         rollout: {{strategy: all_at_once, drain_timeout: 10s, step_timeout: 60s}}\n",
        bin.display()
    );
    let path = s.path().join("worker.yaml");
    std::fs::write(&path, yaml).unwrap();
    path.display().to_string()
}

/// `psql` on the queue's database, one value.
fn psql(s: &Sandbox, sql: &str) -> String {
    psql_on(s, "jobs-db", sql)
}

fn lag(s: &Sandbox, env: &[(&str, &str)]) -> serde_json::Value {
    json(&s.run_env(&["metrics", "thumbnailer", "queue-lag", "--format", "json"], env))
}

/// The environment of the sandbox's commands (the supervisor they start inherits it).
fn env_with(poll_ms: u64) -> Vec<(&'static str, String)> {
    vec![
        ("SKIFF_RUNNER_BIN", skiff_testkit::workspace_bin("skiff-runner").display().to_string()),
        ("SKIFF_AUTOSCALE_POLL_MS", poll_ms.to_string()),
    ]
}

/// Deploys the worker and waits until it made its tables (queue-lag answers).
fn deploy(s: &Sandbox, env: &[(&str, &str)], work_ms: u64) {
    let file = spec(s, work_ms);
    let deployed = s.run_env(&["deploy", "-f", &file, "--yes", "--format", "json"], env);
    assert_eq!(deployed.code, 0, "{}", deployed.stdout);
    assert!(
        skiff_testkit::wait_until(Duration::from_secs(60), || lag(s, env)["code"] == "OK"),
        "queue-lag answers once the worker made its tables: {}",
        lag(s, env)
    );
}

#[test]
fn a_burst_of_jobs_scales_out_within_max_and_back_to_min_losing_and_repeating_none() {
    let s = Sandbox::new();
    let owned = env_with(POLL_MS);
    let env: Vec<(&str, &str)> = owned.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let _stop = StopAll(&s, owned.clone());
    // The worker made its tables; the queue is empty and one instance runs.
    deploy(&s, &env, 15);
    // Read until the autoscaler has made its first pass over the empty queue.
    assert!(skiff_testkit::wait_until(Duration::from_secs(30), || !lag(&s, &env)["data"]["last_decision"].is_null()));
    let idle = lag(&s, &env);
    assert_eq!(idle["data"]["backlog"], 0, "{idle}");
    assert_eq!(idle["data"]["desired"], 1, "{idle}");
    insta::assert_snapshot!(
        "queue-lag-idle-human",
        s.redact(&human(&s.run_env(&["metrics", "thumbnailer", "queue-lag"], &env)))
    );

    psql(&s, "INSERT INTO jobs (payload) SELECT 'job-' || g FROM generate_series(1, 2000) g");
    let mut peak = 0;
    let scaled_out = skiff_testkit::wait_until(Duration::from_secs(60), || {
        let d = lag(&s, &env)["data"]["desired"].as_u64().unwrap_or(0);
        peak = peak.max(d);
        d > 1
    });
    assert!(scaled_out, "the burst scales the worker out: {}", lag(&s, &env));

    // Drained: every job ran once, none is left.
    let drained = skiff_testkit::wait_until(Duration::from_secs(180), || {
        let v = lag(&s, &env);
        peak = peak.max(v["data"]["desired"].as_u64().unwrap_or(0));
        v["data"]["backlog"] == 0 && psql(&s, "SELECT count(*) FROM executions") == "2000"
    });
    assert!(drained, "the queue drains: {}", lag(&s, &env));
    assert!((2..=MAX).contains(&peak), "scaled out to at most max {MAX}: peak {peak}");
    assert_eq!(psql(&s, "SELECT count(*) FROM jobs"), "0", "no job left behind");
    assert_eq!(psql(&s, "SELECT count(DISTINCT job_id) FROM executions"), "2000", "every job ran");
    assert_eq!(
        psql(&s, "SELECT count(*) FROM (SELECT job_id FROM executions GROUP BY job_id HAVING count(*) > 1) t"),
        "0",
        "no job ran twice"
    );
    let instances: u64 =
        psql(&s, "SELECT count(DISTINCT instance) FROM executions").parse().expect("a count of instances");
    assert!(instances >= 2, "more than one instance took jobs: {instances}");

    // Back to min: the cooldown after the last scale-out, then one poll (plus the
    // instances' drain), read from the autoscaler's own record.
    let back = skiff_testkit::wait_until(Duration::from_secs(COOLDOWN_S + 60), || {
        let v = lag(&s, &env);
        v["data"]["desired"] == 1 && v["data"]["running"] == 1
    });
    assert!(back, "back to min after the queue drained: {}", lag(&s, &env));
    let last = lag(&s, &env)["data"]["last_decision"].clone();
    assert_eq!(last["last_change"][1], "in", "{last}");
    // Scaled in with SIGTERM: each stopped worker finished the jobs in hand and exited.
    let logs = s.run_env(&["logs", "thumbnailer", "--grep", "SIGTERM|stopped after"], &env).stdout;
    assert!(logs.contains("SIGTERM, finishing the jobs in hand"), "{logs}");
    assert!(logs.contains("stopped after"), "{logs}");

    // Status shows the autoscaler's last decision.
    let status = s.run_env(&["status", "thumbnailer"], &env);
    assert!(status.stdout.contains("autoscaled to 1 for 0 jobs waiting"), "{}", status.stdout);

    // The record verifies and reconcile sees an autoscaled group as in sync.
    assert_eq!(s.run(&["state", "verify"]).code, 0);
    let reconciled = json(&s.run_env(&["reconcile", "thumbnailer", "--format", "json"], &env));
    assert_eq!(reconciled["code"], "OK", "{reconciled}");
}

/// skiff-worker runs the same passes beside skiffd: with the supervisor's own autoscaler
/// idle (a pass an hour), one `skiff-worker --once` resizes the group from the backlog.
#[test]
fn skiff_worker_resizes_a_queue_scaled_group_from_its_backlog() {
    let s = Sandbox::new();
    let owned = env_with(3_600_000);
    let env: Vec<(&str, &str)> = owned.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let _stop = StopAll(&s, owned.clone());
    // Slow jobs: the backlog stays long while skiff-worker reads it.
    deploy(&s, &env, 500);
    psql(&s, "INSERT INTO jobs (payload) SELECT 'job-' || g FROM generate_series(1, 2000) g");
    let out = std::process::Command::new(skiff_testkit::workspace_bin("skiff-worker"))
        .current_dir(s.path())
        .envs(env.iter().copied())
        .args(["--bucket", &format!("file://{}", s.path().join(".skiff/state").display()), "--once"])
        .args(["--reconcile-ms", "0"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let resized: Vec<serde_json::Value> = stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["event"] == "autoscaled")
        .collect();
    assert_eq!(resized.len(), 1, "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(resized[0]["service"], "thumbnailer", "{stdout}");
    assert!(resized[0]["desired"].as_u64().is_some_and(|d| (2..=MAX).contains(&d)), "{stdout}");
    assert!(
        skiff_testkit::wait_until(Duration::from_secs(30), || lag(&s, &env)["data"]["desired"].as_u64() > Some(1)),
        "the group was resized: {}",
        lag(&s, &env)
    );
}

/// A worker has no port and no target group: a journey that restarts the consumers of
/// a secret (here a rotation of the queue database's login) waits on the runners'
/// heartbeats instead, and the worker takes jobs with the new login afterwards.
#[test]
fn rotating_the_queue_database_login_restarts_the_worker_and_it_keeps_working() {
    let s = Sandbox::new();
    let owned = env_with(POLL_MS);
    let env: Vec<(&str, &str)> = owned.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let _stop = StopAll(&s, owned.clone());
    deploy(&s, &env, 15);
    let rotated =
        json(&s.run_env(&["rotate", "secret", "jobs-db", "--disable-after", "1s", "--yes", "--format", "json"], &env));
    assert_eq!(rotated["code"], "OK", "{rotated}");
    let restart = rotated["data"]["steps"].as_array().unwrap().iter().find(|s| s["id"] == "restart").cloned();
    assert!(
        restart.as_ref().is_some_and(|r| r["summary"].as_str().unwrap_or("").contains("restarted 1 instance;")),
        "{rotated}"
    );
    psql(&s, "INSERT INTO jobs (payload) SELECT 'after-' || g FROM generate_series(1, 50) g");
    assert!(
        skiff_testkit::wait_until(Duration::from_secs(60), || {
            psql(&s, "SELECT count(*) FROM executions WHERE payload LIKE 'after-%'") == "50"
        }),
        "the restarted worker takes jobs with the new login: {}",
        lag(&s, &env)
    );
}

/// The pids of the running thumbnailer programs, from their runners' heartbeats.
fn worker_pids(s: &Sandbox) -> Vec<i32> {
    let dir = s.path().join(".skiff/state/v1/members/thumbnailer");
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| std::fs::read(e.path()).ok())
        .filter_map(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .filter_map(|m| m["detail"]["pid"].as_i64().and_then(|p| i32::try_from(p).ok()))
        .filter(|p| alive(u32::try_from(*p).unwrap_or(0)))
        .collect()
}

/// Crashes in the middle of a burst lose nothing: a worker program killed with
/// SIGKILL mid-job (its transaction rolls back, the job is taken again) and the
/// supervisor — autoscaler included — killed with SIGKILL and started again.
#[test]
fn killed_workers_and_a_killed_supervisor_lose_no_job_and_run_none_twice() {
    let s = Sandbox::new();
    let owned = env_with(POLL_MS);
    let env: Vec<(&str, &str)> = owned.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let _stop = StopAll(&s, owned.clone());
    deploy(&s, &env, 40);
    psql(&s, "INSERT INTO jobs (payload) SELECT 'job-' || g FROM generate_series(1, 2000) g");
    assert!(
        skiff_testkit::wait_until(Duration::from_secs(60), || worker_pids(&s).len() >= 2),
        "scaled out: {}",
        lag(&s, &env)
    );
    for pid in worker_pids(&s) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
    }
    let endpoint: serde_json::Value = serde_json::from_slice(
        &std::fs::read(skiff_provider_local::LocalDir::new(s.path().join(".skiff/local")).endpoint()).unwrap(),
    )
    .unwrap();
    let supervisor = i32::try_from(endpoint["pid"].as_i64().unwrap()).unwrap();
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(supervisor), nix::sys::signal::Signal::SIGKILL).unwrap();
    assert_eq!(s.run_env(&["local", "up"], &env).code, 0);

    let drained =
        skiff_testkit::wait_until(Duration::from_secs(180), || psql(&s, "SELECT count(*) FROM executions") == "2000");
    assert!(drained, "the queue drains after the crashes: {}", lag(&s, &env));
    assert_eq!(psql(&s, "SELECT count(*) FROM jobs"), "0", "no job left behind");
    assert_eq!(psql(&s, "SELECT count(DISTINCT job_id) FROM executions"), "2000", "every job ran");
    let restarts: u64 = std::fs::read_dir(s.path().join(".skiff/state/v1/members/thumbnailer"))
        .unwrap()
        .flatten()
        .filter_map(|e| serde_json::from_slice::<serde_json::Value>(&std::fs::read(e.path()).ok()?).ok())
        .filter_map(|m| m["detail"]["restarts"].as_u64())
        .sum();
    assert!(restarts >= 2, "the killed programs were restarted by their runners: {restarts}");
    assert!(
        skiff_testkit::wait_until(Duration::from_secs(COOLDOWN_S + 60), || {
            let v = lag(&s, &env);
            v["data"]["desired"] == 1 && v["data"]["running"] == 1
        }),
        "the restarted autoscaler brings it back to min: {}",
        lag(&s, &env)
    );
}
