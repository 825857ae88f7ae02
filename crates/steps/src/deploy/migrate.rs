//! `deploy.migrate`: the release's schema migration (`database.migrations`), run once
//! per release and database on a task instance of the new release (its artifact
//! verified, the database secret resolved), recorded at `migrations/<svc>/<release>.json`
//! with its output, duration and exit code.
//!
//! Exactly once: a record that says it succeeded is the answer. A record left
//! `running` by a crash is settled from the database: the provider kills a task whose
//! operation died, and when the database has a version table of a tool Skiff knows
//! ([`skiff_pluginapi::MIGRATION_TABLES`]; its digests before the run are recorded
//! too), that tool applies each migration in one transaction with its row, so running
//! it again applies only what is left. With no version table Skiff knows it cannot
//! tell what ran, and pauses instead of running it a second time.
//! A failed migration fails the deploy before any traffic moves. Compensation runs
//! `down`; without one the step is irreversible and the schema stays.

use async_trait::async_trait;
use serde_json::json;
use skiff_pluginapi::{TaskOutcome, TaskSpec};
use skiff_sagaapi::{Risk, Safety, Step, StepCode, StepContext, StepError, StepPlan, StepRequest, StepResult};
use skiff_state::Update;
use skiff_state::docs::{MigrationRecord, MigrationState};

use super::MigrationPlan;
use super::common::{ledger, params, provider, provider_error};
use crate::ledger_error;

pub(super) struct Migrate;

/// The last lines of `output`, as facts.
fn tail(output: &str, lines: usize) -> Vec<String> {
    let all: Vec<&str> = output.lines().filter(|l| !l.trim().is_empty()).collect();
    all[all.len().saturating_sub(lines)..].iter().map(|l| format!("output: {l}")).collect()
}

/// A short id for the task instance: the operation's tail and the task.
fn task_id(op: &str, task: &str) -> String {
    let tail: String = op.chars().rev().take(8).collect::<Vec<_>>().into_iter().rev().collect();
    format!("{tail}-{task}")
}

async fn write(req: &StepRequest, key: &str, rec: &MigrationRecord) -> Result<(), StepError> {
    let l = ledger(req)?;
    l.update::<MigrationRecord, _>(key, |_| Ok(Update::Write(rec.clone()))).await.map(drop).map_err(ledger_error)
}

async fn run_task(req: &StepRequest, p: &MigrationPlan, task: &str) -> Result<TaskOutcome, StepError> {
    let spec = TaskSpec {
        id: task_id(&req.op_id, task),
        group: p.group.clone(),
        task: task.to_owned(),
        timeout_ms: p.timeout_ms,
    };
    provider(req)?.compute().run_task(&spec).await.map_err(provider_error)
}

#[async_trait]
impl Step for Migrate {
    fn kind(&self) -> &str {
        "deploy.migrate"
    }

    async fn plan(&self, _: &StepContext, req: &StepRequest) -> Result<StepPlan, StepError> {
        let p: MigrationPlan = params(req)?;
        let when = match p.phase {
            skiff_spec::MigrationPhase::BeforeCanary => "before any traffic moves",
            skiff_spec::MigrationPhase::AfterPromote => "after promotion, before the old release is retired",
        };
        let (safety, undo) = match &p.down {
            Some(d) => (Safety::Reversible, format!("compensation runs `{}`", d.join(" "))),
            None => (Safety::Irreversible, "no `down`: the schema change stays if the rollout fails".to_owned()),
        };
        Ok(StepPlan {
            description: format!(
                "migrate {} with `{}` from release {} {when}, once ({undo})",
                p.database,
                p.command.join(" "),
                p.release
            ),
            safety,
            risk: if p.down.is_some() { Risk::Medium } else { Risk::High },
            expected_duration_ms: p.timeout_ms.min(60_000),
            affected_resources: vec![format!("database/{}", p.database)],
        })
    }

    async fn run(&self, ctx: &StepContext, req: &StepRequest) -> Result<StepResult, StepError> {
        let p: MigrationPlan = params(req)?;
        let key = skiff_state::keys::migration(&p.service, &p.release);
        let l = ledger(req)?;
        let db = provider(req)?.database();
        let instance = crate::database::current_instance(l, &p.database).await.map_err(ledger_error)?;
        let marks = db.migration_marks(&instance).await.map_err(provider_error)?;
        match l.read::<MigrationRecord>(&key).await.map_err(ledger_error)? {
            Some(r) if r.state == MigrationState::Succeeded => {
                return Ok(StepResult::new(
                    format!("the migration of {} already ran (operation {}, exit 0)", p.release, r.op_id),
                    json!({"exit_code": 0, "ran_in": r.op_id}),
                ));
            }
            Some(r) if r.state == MigrationState::Running => {
                if marks.is_empty() && r.marks_before.is_empty() {
                    return Err(StepError::hold(
                        StepCode::OperationFailed,
                        format!("the migration of {} was interrupted, and Skiff cannot tell whether it ran", p.release),
                    )
                    .fact(format!(
                        "{} has none of the version tables Skiff knows ({})",
                        p.database,
                        skiff_pluginapi::MIGRATION_TABLES.join(", ")
                    ))
                    .fact("check the schema; to undo the rollout, `skiff saga cancel` it; resuming runs the migration again"));
                }
                let tables: Vec<&String> = marks.keys().chain(r.marks_before.keys()).collect();
                ctx.progress(
                    &format!(
                        "the interrupted migration runs again: its tool's version table ({}) decides what is left",
                        tables.iter().map(|t| t.as_str()).collect::<Vec<_>>().join(", ")
                    ),
                    json!({}),
                )
                .await;
            }
            _ => {}
        }
        let started_at_ms = l.clock().now_ms();
        let mut rec = MigrationRecord {
            cas: Default::default(),
            service: p.service.clone(),
            release: p.release.clone(),
            database: p.database.clone(),
            op_id: req.op_id.clone(),
            state: MigrationState::Running,
            exit_code: None,
            output: String::new(),
            duration_ms: 0,
            started_at_ms,
            marks_before: marks,
            irreversible: p.down.is_none(),
        };
        write(req, &key, &rec).await?;
        ctx.progress(&format!("migrating {} with `{}`", p.database, p.command.join(" ")), json!({})).await;
        let out = run_task(req, &p, "migrate").await?;
        rec.state = if out.exit_code == 0 { MigrationState::Succeeded } else { MigrationState::Failed };
        rec.exit_code = Some(out.exit_code);
        rec.output.clone_from(&out.output);
        rec.duration_ms = out.duration_ms;
        write(req, &key, &rec).await?;
        if out.exit_code != 0 {
            let why = if out.exit_code == 124 {
                "ran past its timeout".to_owned()
            } else {
                format!("exited with {}", out.exit_code)
            };
            let mut e = StepError::terminal(
                StepCode::OperationFailed,
                format!("the migration of {} {why}; no traffic moved", p.release),
            );
            for f in tail(&out.output, 8) {
                e = e.fact(f);
            }
            return Err(e.fact(format!("its record: {key}")));
        }
        Ok(StepResult::new(
            format!("migrated {} in {:.1} s (exit 0)", p.database, out.duration_ms as f64 / 1000.0),
            json!({"exit_code": 0, "duration_ms": out.duration_ms, "output": tail(&out.output, 5)}),
        ))
    }

    async fn resume(&self, ctx: &StepContext, req: &StepRequest) -> Result<StepResult, StepError> {
        self.run(ctx, req).await
    }

    async fn compensate(&self, ctx: &StepContext, req: &StepRequest, _: &StepResult) -> Result<StepResult, StepError> {
        let p: MigrationPlan = params(req)?;
        let Some(down) = &p.down else {
            return Err(StepError::terminal(
                StepCode::OperationFailed,
                "the migration has no `down`: the schema stays",
            ));
        };
        let key = skiff_state::keys::migration(&p.service, &p.release);
        let l = ledger(req)?;
        if let Some(r) = l.read::<MigrationRecord>(&key).await.map_err(ledger_error)?
            && r.state == MigrationState::Undone
        {
            return Ok(StepResult::new(format!("the migration of {} is undone already", p.release), json!({})));
        }
        ctx.progress(&format!("undoing the migration with `{}`", down.join(" ")), json!({})).await;
        let out = run_task(req, &p, "migrate-down").await?;
        if out.exit_code != 0 {
            let mut e = StepError::retryable(
                StepCode::OperationFailed,
                format!("the migration's down exited with {}; the schema may be half undone", out.exit_code),
            );
            for f in tail(&out.output, 8) {
                e = e.fact(f);
            }
            return Err(e);
        }
        let mut rec = l
            .read::<MigrationRecord>(&key)
            .await
            .map_err(ledger_error)?
            .ok_or_else(|| StepError::terminal(StepCode::Internal, format!("no migration record at {key}")))?;
        rec.state = MigrationState::Undone;
        rec.output = out.output;
        write(req, &key, &rec).await?;
        Ok(StepResult::new(format!("undid the migration of {} (`{}`)", p.release, down.join(" ")), json!({})))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use serde_json::json;
    use skiff_pluginapi::{GroupSpec, Provider};
    use skiff_sagaapi::{Cancellation, ErrorClass, Extensions, Step, StepContext, StepRequest};
    use skiff_state::docs::{MigrationRecord, MigrationState};
    use skiff_state::{Ledger, Update};
    use skiff_testkit::memory::MemoryProvider;

    struct Quiet;

    #[derive(Debug)]
    struct Now;

    impl skiff_sagaapi::Timer for Now {
        fn now_ms(&self) -> u64 {
            0
        }
        fn sleep(&self, _: std::time::Duration) -> skiff_clock::Sleep {
            Box::pin(async {})
        }
    }

    #[async_trait::async_trait]
    impl skiff_sagaapi::Progress for Quiet {
        async fn report(&self, _: &str, _: serde_json::Value) {}
    }

    fn plan() -> super::MigrationPlan {
        let group: GroupSpec = serde_json::from_value(json!({
            "name": "api-r2", "service": "api", "release": "r2", "desired": 1, "zones": ["mem-a"],
            "launch": {"instance_type": "t", "spot": false, "command": ["x"], "env": {}, "secrets": {}, "port": 8080,
                "health": null, "drain_timeout_ms": 0, "role": null, "log_group": null,
                "runner": {"bucket": "memory://", "public_key_pem": "", "heartbeat_ms": 1000}}
        }))
        .unwrap();
        super::MigrationPlan {
            service: "api".into(),
            release: "r2".into(),
            database: "api-db".into(),
            command: vec!["api".into(), "migrate".into()],
            down: None,
            phase: skiff_spec::MigrationPhase::BeforeCanary,
            timeout_ms: 60_000,
            group,
            previous: Some("r1".into()),
        }
    }

    async fn record(ledger: &Ledger, state: MigrationState) {
        let rec = MigrationRecord {
            cas: Default::default(),
            service: "api".into(),
            release: "r2".into(),
            database: "api-db".into(),
            op_id: "op-0".into(),
            state,
            exit_code: None,
            output: String::new(),
            duration_ms: 0,
            started_at_ms: 0,
            marks_before: Default::default(),
            irreversible: true,
        };
        let key = skiff_state::keys::migration("api", "r2");
        ledger.update::<MigrationRecord, _>(&key, |_| Ok(Update::Write(rec.clone()))).await.unwrap();
    }

    /// A migration is run by nobody twice: a succeeded record answers at once, and one
    /// a crash left `running` on a database without a known version table pauses.
    #[tokio::test]
    async fn a_migration_runs_once_and_an_unknowable_interruption_pauses() {
        let clock: Arc<dyn skiff_clock::Clock> = Arc::new(skiff_clock::SystemClock);
        let memory = MemoryProvider::new(clock);
        let ledger = Ledger::open("memory://", &skiff_objstore::OpenOptions::default()).unwrap();
        let mut ext = Extensions::default();
        ext.insert::<Arc<dyn Provider>>(Arc::new(memory.clone()));
        ext.insert(ledger.clone());
        let timer = Arc::new(Now);
        let req = StepRequest {
            op_id: "op-1".into(),
            step_id: "migrate".into(),
            attempt: 1,
            idempotency_key: "op-1/migrate".into(),
            params: serde_json::to_value(plan()).unwrap(),
            inputs: Default::default(),
            extensions: Arc::new(ext),
            cancel: Cancellation::never(timer.clone()),
        };
        let ctx = StepContext::new(Arc::new(Quiet), timer);
        let runs = || memory.journal().iter().filter(|j| j.starts_with("run-task migrate r2")).count();

        record(&ledger, MigrationState::Running).await;
        let held = super::Migrate.resume(&ctx, &req).await.unwrap_err();
        assert_eq!(held.class, ErrorClass::Hold, "{held:?}");
        assert!(held.message.contains("cannot tell whether it ran"), "{}", held.message);
        assert_eq!(runs(), 0, "not run a second time blindly");

        // A failed one is run again by the next deploy of the release.
        record(&ledger, MigrationState::Failed).await;
        let ran = super::Migrate.run(&ctx, &req).await.unwrap();
        assert!(ran.summary.contains("migrated api-db"), "{}", ran.summary);
        let again = super::Migrate.resume(&ctx, &req).await.unwrap();
        assert!(again.summary.contains("already ran"), "{}", again.summary);
        assert_eq!(runs(), 1);
        let rec: MigrationRecord = ledger.read(&skiff_state::keys::migration("api", "r2")).await.unwrap().unwrap();
        assert_eq!((rec.state, rec.exit_code, rec.op_id.as_str()), (MigrationState::Succeeded, Some(0), "op-1"));
    }

    #[test]
    fn facts_carry_the_end_of_the_output() {
        let out = (1..=20).map(|i| format!("line {i}")).collect::<Vec<_>>().join("\n");
        let t = super::tail(&out, 3);
        assert_eq!(t, ["output: line 18", "output: line 19", "output: line 20"]);
        assert_eq!(super::task_id("op-1234567890abcdef", "migrate"), "90abcdef-migrate");
    }
}
