//! The `database-retire` saga: deleting an instance a restore retained, as its own
//! approved, irreversible operation. It checks again that nothing serves from the
//! instance (the ledger's newest restore moved the database off it), takes a final
//! snapshot that outlives it, waits for approval, deletes it, and records the deletion
//! in the ledger (`databases/<db>/retired/<instance>.json`), after which status,
//! doctor and restores no longer count it.

use serde::{Deserialize, Serialize};
use serde_json::json;
use skiff_saga::{Registry, SagaBuilder, SagaError, SagaGraph};
use skiff_sagaapi::{Risk, Safety, Step, StepCode, StepContext, StepError, StepPlan, StepRequest, StepResult};
use skiff_state::Ledger;
use skiff_state::docs::RetireRecord;

use crate::deploy::{provider, provider_error};
use crate::{ledger_error, step_plan};

/// `database-retire` in the catalog: planned from the ledger by `skiff database retire`.
pub(crate) const KIND: crate::SagaKind = crate::SagaKind {
    name: "database-retire",
    description: "delete an instance a restore retained: check nothing serves from it, a final snapshot, then the deletion after approval (`skiff database retire DB`)",
    params: &[],
    build: |_| Err(crate::deploy::needs_command("database-retire", "skiff database retire DB --yes")),
};

/// Everything a retirement needs, decided before it runs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetirePlan {
    /// The database (its name in the spec).
    pub database: String,
    /// The retained instance to delete.
    pub instance: String,
    /// The restore that retained it.
    pub restore_op: String,
    /// Until when the restore meant to keep it, ms since the epoch.
    pub retained_until_ms: u64,
}

/// The retirement graph.
pub fn retire_graph(p: &RetirePlan) -> Result<SagaGraph, SagaError> {
    let plan = serde_json::to_value(p).unwrap_or_default();
    SagaBuilder::new("database-retire")
        .step("check", "retire.check", plan.clone())
        .step("snapshot", "retire.snapshot", plan.clone())
        .timeout_ms(60 * 60 * 1000)
        .step("delete", "retire.delete", plan.clone())
        .require_approval()
        .timeout_ms(60 * 60 * 1000)
        .step("record", "retire.record", plan)
        .build()
}

/// Registers the retirement step kinds.
pub(crate) fn register(r: Registry) -> Registry {
    r.with(Check).with(FinalSnapshot).with(Delete).with(Record)
}

/// The instances of `database` already retired.
pub async fn retired(
    ledger: &Ledger,
    database: &str,
) -> Result<std::collections::BTreeSet<String>, skiff_state::StateError> {
    let listed = ledger.store().list(&skiff_state::keys::database_retirements(database)).await?;
    let mut out = std::collections::BTreeSet::new();
    for l in &listed {
        if let Some(r) = ledger.read::<RetireRecord>(&l.key).await? {
            out.insert(r.instance);
        }
    }
    Ok(out)
}

fn plan_of(req: &StepRequest) -> Result<RetirePlan, StepError> {
    req.params_as()
}

fn snapshot_id(p: &RetirePlan, op: &str) -> String {
    let tail: String = op.chars().rev().take(8).collect::<Vec<_>>().into_iter().rev().collect();
    format!("{}-final-{tail}", p.instance)
}

struct Check;

#[async_trait::async_trait]
impl Step for Check {
    fn kind(&self) -> &str {
        "retire.check"
    }

    async fn plan(&self, _: &StepContext, req: &StepRequest) -> Result<StepPlan, StepError> {
        let p = plan_of(req)?;
        Ok(step_plan(
            format!("check that {} no longer runs on {} and that the instance exists", p.database, p.instance),
            Safety::ReadOnly,
            Risk::None,
            500,
            vec![format!("database/{}", p.instance)],
        ))
    }

    async fn run(&self, _: &StepContext, req: &StepRequest) -> Result<StepResult, StepError> {
        let p = plan_of(req)?;
        let ledger = req.extensions.require::<Ledger>()?;
        let current = crate::database::current_instance(ledger, &p.database).await.map_err(ledger_error)?;
        if current == p.instance {
            return Err(StepError::terminal(
                StepCode::OperationFailed,
                format!("{} runs on {} again; it is not retained any more", p.database, p.instance),
            ));
        }
        let found = provider(req)?.database().describe(&p.instance).await.map_err(provider_error)?;
        let what = found.map_or_else(|| "already gone".to_owned(), |d| format!("{} ({})", d.id, d.status));
        Ok(StepResult::new(
            format!("{} runs on {current}; {} is {what}", p.database, p.instance),
            json!({"current": current}),
        ))
    }

    async fn resume(&self, ctx: &StepContext, req: &StepRequest) -> Result<StepResult, StepError> {
        self.run(ctx, req).await
    }

    async fn compensate(&self, _: &StepContext, _: &StepRequest, _: &StepResult) -> Result<StepResult, StepError> {
        Ok(StepResult::new("nothing to undo", json!({})))
    }
}

struct FinalSnapshot;

#[async_trait::async_trait]
impl Step for FinalSnapshot {
    fn kind(&self) -> &str {
        "retire.snapshot"
    }

    async fn plan(&self, _: &StepContext, req: &StepRequest) -> Result<StepPlan, StepError> {
        let p = plan_of(req)?;
        Ok(step_plan(
            format!("take a final snapshot of {} that outlives it", p.instance),
            Safety::Reversible,
            Risk::Low,
            30_000,
            vec![format!("database/{}", p.instance)],
        ))
    }

    async fn run(&self, _: &StepContext, req: &StepRequest) -> Result<StepResult, StepError> {
        let p = plan_of(req)?;
        let db = provider(req)?.database();
        let id = snapshot_id(&p, &req.op_id);
        if db.describe(&p.instance).await.map_err(provider_error)?.is_none() {
            return Ok(StepResult::new(format!("{} is gone; no snapshot to take", p.instance), json!({"id": null})));
        }
        let s = db.snapshot(&p.instance, &id).await.map_err(provider_error)?;
        Ok(StepResult::new(format!("final snapshot {} of {} taken", s.id, p.instance), s))
    }

    async fn resume(&self, ctx: &StepContext, req: &StepRequest) -> Result<StepResult, StepError> {
        self.run(ctx, req).await
    }

    async fn compensate(&self, _: &StepContext, _: &StepRequest, _: &StepResult) -> Result<StepResult, StepError> {
        Ok(StepResult::new("kept the snapshot: it changes nothing that serves", json!({})))
    }
}

struct Delete;

#[async_trait::async_trait]
impl Step for Delete {
    fn kind(&self) -> &str {
        "retire.delete"
    }

    async fn plan(&self, _: &StepContext, req: &StepRequest) -> Result<StepPlan, StepError> {
        let p = plan_of(req)?;
        let until = skiff_clock::Utc::from_ms(p.retained_until_ms).rfc3339();
        Ok(step_plan(
            format!(
                "delete {} (retained by {} until {until}) — its data and log are gone; only the final snapshot remains",
                p.instance, p.restore_op
            ),
            Safety::Irreversible,
            Risk::High,
            30_000,
            vec![format!("database/{}", p.instance)],
        ))
    }

    async fn run(&self, _: &StepContext, req: &StepRequest) -> Result<StepResult, StepError> {
        let p = plan_of(req)?;
        provider(req)?.database().delete(&p.instance).await.map_err(provider_error)?;
        Ok(StepResult::new(format!("deleted {}", p.instance), json!({"instance": p.instance})))
    }

    async fn resume(&self, ctx: &StepContext, req: &StepRequest) -> Result<StepResult, StepError> {
        self.run(ctx, req).await
    }

    async fn compensate(&self, _: &StepContext, _: &StepRequest, _: &StepResult) -> Result<StepResult, StepError> {
        Err(StepError::terminal(
            StepCode::OperationFailed,
            "a deleted instance cannot come back; restore its final snapshot",
        ))
    }
}

struct Record;

#[async_trait::async_trait]
impl Step for Record {
    fn kind(&self) -> &str {
        "retire.record"
    }

    async fn plan(&self, _: &StepContext, req: &StepRequest) -> Result<StepPlan, StepError> {
        let p = plan_of(req)?;
        Ok(step_plan(
            format!("record {} as retired in the ledger", p.instance),
            Safety::Reversible,
            Risk::None,
            200,
            vec![format!("database/{}", p.database)],
        ))
    }

    async fn run(&self, _: &StepContext, req: &StepRequest) -> Result<StepResult, StepError> {
        let p = plan_of(req)?;
        let ledger = req.extensions.require::<Ledger>()?;
        let snapshot: serde_json::Value = req.input("snapshot")?;
        let key = skiff_state::keys::database_retired(&p.database, &p.instance);
        let record = match ledger.read::<RetireRecord>(&key).await.map_err(ledger_error)? {
            Some(r) => r,
            None => {
                let r = RetireRecord {
                    op_id: req.op_id.clone(),
                    database: p.database.clone(),
                    instance: p.instance.clone(),
                    restore_op: p.restore_op.clone(),
                    final_snapshot: snapshot["provider_ref"].as_str().unwrap_or_default().to_owned(),
                    at_ms: ledger.clock().now_ms(),
                };
                ledger.create(&key, &r).await.map_err(ledger_error)?;
                r
            }
        };
        Ok(StepResult::new(
            format!("{} is recorded as retired (final snapshot {})", p.instance, record.final_snapshot),
            json!({"key": key}),
        ))
    }

    async fn resume(&self, ctx: &StepContext, req: &StepRequest) -> Result<StepResult, StepError> {
        self.run(ctx, req).await
    }

    async fn compensate(&self, _: &StepContext, _: &StepRequest, _: &StepResult) -> Result<StepResult, StepError> {
        Ok(StepResult::new("the record stays true", json!({})))
    }
}
