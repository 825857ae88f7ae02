//! The `database-backup` saga: a base copy of a managed database plus a named restore
//! point recorded after it, with a manifest of every table (rows and a checksum) at the
//! point, then the backup's record in the ledger (`databases/<db>/backups/<id>.json`),
//! which restores and `skiff database list-backups` read. The backup id is the
//! operation's, so a resumed saga finishes the same backup instead of taking another.

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::json;
use skiff_pluginapi::BackupInfo;
use skiff_saga::{Registry, SagaBuilder, SagaError, SagaGraph};
use skiff_sagaapi::{Risk, Safety, Step, StepCode, StepContext, StepError, StepPlan, StepRequest, StepResult};
use skiff_state::Ledger;
use skiff_state::docs::{BackupRecord, TableRecord};

use crate::deploy::{provider, provider_error};
use crate::{Params, ledger_error};

/// `database-backup` in the catalog.
pub(crate) const BACKUP_KIND: crate::SagaKind = crate::SagaKind {
    name: "database-backup",
    description: "a base backup and a named restore point of a managed database, recorded in the ledger (`skiff database backup DB`)",
    params: &[("database", "the database (its `database.name` in the spec)")],
    build: backup_params,
};

fn backup_params(params: &Params) -> Result<SagaGraph, SagaError> {
    let database = params.get("database").ok_or_else(|| SagaError::InvalidGraph {
        saga: "database-backup".into(),
        why: "it needs --param database=NAME".into(),
    })?;
    backup_graph(database, database)
}

/// The backup graph of `database`, running on `instance`.
pub fn backup_graph(database: &str, instance: &str) -> Result<SagaGraph, SagaError> {
    SagaBuilder::new("database-backup")
        .step("backup", "database.backup", json!({"database": database, "instance": instance}))
        .timeout_ms(60 * 60 * 1000)
        .step("record", "database.record-backup", json!({"database": database}))
        .build()
}

/// Registers the database step kinds.
pub(crate) fn register(r: Registry) -> Registry {
    r.with(Backup).with(RecordBackup)
}

/// The instance `database` runs on now: the newest restore's, else its own name.
pub async fn current_instance(ledger: &Ledger, database: &str) -> Result<String, skiff_state::StateError> {
    Ok(restores(ledger, database).await?.last().map_or_else(|| database.to_owned(), |r| r.to_instance.clone()))
}

/// The restores of `database`, oldest first.
pub async fn restores(
    ledger: &Ledger,
    database: &str,
) -> Result<Vec<skiff_state::docs::RestoreRecord>, skiff_state::StateError> {
    let listed = ledger.store().list(&skiff_state::keys::database_restores(database)).await?;
    let mut out = Vec::new();
    for l in &listed {
        if let Some(r) = ledger.read::<skiff_state::docs::RestoreRecord>(&l.key).await? {
            out.push(r);
        }
    }
    out.sort_by_key(|r| r.at_ms);
    Ok(out)
}

#[derive(Deserialize)]
struct DatabaseParams {
    database: String,
    /// The instance it runs on (its name until a restore moves it).
    #[serde(default)]
    instance: Option<String>,
}

impl DatabaseParams {
    fn instance(&self) -> &str {
        self.instance.as_deref().unwrap_or(&self.database)
    }
}

fn params(req: &StepRequest) -> Result<DatabaseParams, StepError> {
    req.params_as()
}

struct Backup;

#[async_trait]
impl Step for Backup {
    fn kind(&self) -> &str {
        "database.backup"
    }

    async fn plan(&self, _: &StepContext, req: &StepRequest) -> Result<StepPlan, StepError> {
        let p = params(req)?;
        Ok(StepPlan {
            description: format!(
                "base backup of {} and a restore point named {} with a manifest of every table",
                p.database, req.op_id
            ),
            // It reads the database and writes only new files and WAL: nothing that serves changes.
            safety: Safety::Reversible,
            risk: Risk::Low,
            expected_duration_ms: 30_000,
            affected_resources: vec![format!("database/{}", p.database), format!("backup/{}", req.op_id)],
        })
    }

    async fn run(&self, ctx: &StepContext, req: &StepRequest) -> Result<StepResult, StepError> {
        let p = params(req)?;
        let db = provider(req)?.database();
        if db.describe(p.instance()).await.map_err(provider_error)?.is_none() {
            return Err(StepError::terminal(StepCode::NotFound, format!("database {} does not exist", p.instance()))
                .fact("a deploy of the spec naming it creates it"));
        }
        ctx.progress(&format!("backing up {}", p.database), json!({"database": p.database})).await;
        let b = db.backup(p.instance(), &req.op_id).await.map_err(provider_error)?;
        let rows: u64 = b.tables.iter().map(|t| t.rows).sum();
        Ok(StepResult::new(
            format!(
                "backup {} of {}: restore point {}, {} tables, {rows} rows",
                b.id,
                b.database,
                b.restore_point,
                b.tables.len()
            ),
            b,
        ))
    }

    async fn resume(&self, ctx: &StepContext, req: &StepRequest) -> Result<StepResult, StepError> {
        self.run(ctx, req).await
    }

    async fn compensate(&self, _: &StepContext, req: &StepRequest, _: &StepResult) -> Result<StepResult, StepError> {
        let p = params(req)?;
        Ok(StepResult::new(format!("kept the backup of {}: it changes nothing that serves", p.database), json!({})))
    }
}

struct RecordBackup;

#[async_trait]
impl Step for RecordBackup {
    fn kind(&self) -> &str {
        "database.record-backup"
    }

    async fn plan(&self, _: &StepContext, req: &StepRequest) -> Result<StepPlan, StepError> {
        let p = params(req)?;
        Ok(StepPlan {
            description: format!("record the backup in databases/{}/backups/{}.json", p.database, req.op_id),
            safety: Safety::Reversible,
            risk: Risk::None,
            expected_duration_ms: 200,
            affected_resources: vec![format!("backup/{}", req.op_id)],
        })
    }

    async fn run(&self, _: &StepContext, req: &StepRequest) -> Result<StepResult, StepError> {
        let p = params(req)?;
        let b: BackupInfo = req
            .inputs
            .get("backup")
            .cloned()
            .and_then(|v| serde_json::from_value(v).ok())
            .ok_or_else(|| StepError::terminal(StepCode::OperationFailed, "the backup step left no result"))?;
        let ledger = req.extensions.require::<Ledger>()?;
        let record = BackupRecord {
            id: b.id.clone(),
            database: p.database.clone(),
            instance: b.database.clone(),
            op_id: req.op_id.clone(),
            restore_point: b.restore_point.clone(),
            at_ms: b.at_ms,
            lsn: b.lsn.clone(),
            size_bytes: b.size_bytes,
            provider_ref: b.provider_ref.clone(),
            tables: b
                .tables
                .iter()
                .map(|t| TableRecord { table: t.table.clone(), rows: t.rows, checksum: t.checksum.clone() })
                .collect(),
        };
        let key = skiff_state::keys::database_backup(&p.database, &b.id);
        ledger.create(&key, &record).await.map_err(ledger_error)?;
        Ok(StepResult::new(format!("backup {} recorded", b.id), json!({"key": key})))
    }

    async fn resume(&self, ctx: &StepContext, req: &StepRequest) -> Result<StepResult, StepError> {
        self.run(ctx, req).await
    }

    async fn compensate(&self, _: &StepContext, _: &StepRequest, _: &StepResult) -> Result<StepResult, StepError> {
        // The record describes a backup that exists: it stays true.
        Ok(StepResult::new("kept the backup's record", json!({})))
    }
}
