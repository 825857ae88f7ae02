//! `skiff database backup|list-backups|retire`: backups of a service's managed
//! database, taken by the `database-backup` saga and recorded in the ledger
//! (`databases/<db>/backups/<id>.json`) with their restore point and table manifest;
//! and the `database-retire` saga that deletes an instance a restore retained.

use std::fmt::Write as _;

use skiff_sdk::{Answer, Code, Envelope, Safety};
use skiff_state::docs::BackupRecord;

use crate::context::Context;
use crate::error::{Result, plural};
use crate::pipeline::{Launch, launch};
use crate::request::DatabaseRequest;

/// Answers a `skiff database` request.
pub(crate) async fn run(ctx: &Context, r: DatabaseRequest) -> Result<Answer> {
    match r {
        DatabaseRequest::Backup { database, dry_run } => backup(ctx, &database, dry_run).await,
        DatabaseRequest::ListBackups { database } => list_backups(ctx, &database).await,
        DatabaseRequest::Restore { database, to, shadow_read, dry_run } => {
            crate::restore::database(ctx, &database, &to, shadow_read.as_deref(), dry_run).await
        }
        DatabaseRequest::RotateSecret { secret, disable_after_ms, dry_run } => {
            crate::rotate::secret(ctx, &secret, disable_after_ms, dry_run).await
        }
        DatabaseRequest::RotateKey { alias, deletion_days, dry_run } => {
            crate::rotate::key(ctx, &alias, deletion_days, dry_run).await
        }
        DatabaseRequest::Retire { database, instance, dry_run } => {
            retire(ctx, &database, instance.as_deref(), dry_run).await
        }
    }
}

/// `skiff database retire DB [--instance ID]`: the `database-retire` saga for an
/// instance a restore retained. What it would refuse — the instance serving now, one
/// already retired, one no restore kept — is refused before anything is recorded.
pub(crate) async fn retire(ctx: &Context, database: &str, instance: Option<&str>, dry_run: bool) -> Result<Answer> {
    let (_, ledger) = ctx.ledger()?;
    let service = crate::lookup::database(&ledger, database).await?;
    let state = |e: skiff_state::StateError| crate::error::state(&e);
    let restores = skiff_steps::database::restores(&ledger, database).await.map_err(state)?;
    let retired = skiff_steps::retire::retired(&ledger, database).await.map_err(state)?;
    let current = skiff_steps::database::current_instance(&ledger, database).await.map_err(state)?;
    let kept: Vec<&skiff_state::docs::RestoreRecord> =
        restores.iter().filter(|r| r.from_instance != current && !retired.contains(&r.from_instance)).collect();
    let names = || kept.iter().map(|r| r.from_instance.as_str()).collect::<Vec<_>>().join(", ");
    let refuse = |code: Code, summary: String, fact: String| -> crate::error::Error {
        Envelope::failure(code, summary)
            .fact(fact)
            .action("status", format!("skiff status {service}"), false, Safety::ReadOnly, 0.6)
            .into()
    };
    let record = match instance {
        Some(i) if i == current => {
            return Err(refuse(
                Code::Usage,
                format!("{database} runs on {i}; only a retained instance can be retired"),
                "a restore moves a database to a new instance and retains the old one".to_owned(),
            ));
        }
        Some(i) if retired.contains(i) => {
            return Err(refuse(
                Code::NotFound,
                format!("{i} is already retired"),
                format!("its record is at databases/{database}/retired/{i}.json"),
            ));
        }
        Some(i) => kept.iter().find(|r| r.from_instance == i).copied().ok_or_else(|| {
            refuse(
                Code::NotFound,
                format!("{database} retains no instance {i}"),
                if kept.is_empty() { "no restore retains one".to_owned() } else { format!("retained: {}", names()) },
            )
        })?,
        None => match kept.as_slice() {
            [one] => *one,
            [] => {
                return Err(refuse(
                    Code::NotFound,
                    format!("{database} retains no instance"),
                    "a restore retains the instance it moved the database off".to_owned(),
                ));
            }
            _ => {
                return Err(refuse(
                    Code::Usage,
                    format!("{database} retains several instances; name one with --instance"),
                    format!("retained: {}", names()),
                ));
            }
        },
    };
    let plan = skiff_steps::retire::RetirePlan {
        database: database.to_owned(),
        instance: record.from_instance.clone(),
        restore_op: record.op_id.clone(),
        retained_until_ms: record.retained_until_ms,
    };
    let graph = skiff_steps::retire::retire_graph(&plan).map_err(|e| crate::error::saga(&e))?;
    let command = format!("skiff database retire {database} --instance {}", plan.instance);
    if dry_run {
        let what = format!("retirement of {}", plan.instance);
        return crate::saga::planned(ctx, &graph, Some(&service), &what, command + " --yes").await;
    }
    ctx.confirm(&format!("retire {} (deleted only after approval)", plan.instance), &command)?;
    let engine = crate::factory::engine(ctx, &ledger).await;
    let l = Launch {
        graph,
        service: Some(service.clone()),
        scope: Some(skiff_saga::ServiceScope::service(service)),
        key: None,
        reason: format!("retire {} of {database}", plan.instance),
        params: serde_json::json!({"database": database, "instance": plan.instance}),
        audit: ("database.retire".to_owned(), serde_json::json!({"database": database, "instance": plan.instance})),
        audit_existing: false,
        release: String::new(),
    };
    Ok(launch(ctx, &engine, &ledger, l).await?.answer())
}

pub(crate) async fn backup(ctx: &Context, database: &str, dry_run: bool) -> Result<Answer> {
    let (_, ledger) = ctx.ledger()?;
    let service = crate::lookup::database(&ledger, database).await?;
    let instance =
        skiff_steps::database::current_instance(&ledger, database).await.map_err(|e| crate::error::state(&e))?;
    let graph = skiff_steps::database::backup_graph(database, &instance).map_err(|e| crate::error::saga(&e))?;
    let command = format!("skiff database backup {database}");
    if dry_run {
        return crate::saga::planned(ctx, &graph, Some(&service), &format!("backup of {database}"), command + " --yes")
            .await;
    }
    ctx.confirm(&format!("back up {database}"), &command)?;
    let actor = ctx.actor();
    ledger.init(&actor).await.map_err(|e| crate::error::state(&e))?;
    let engine = crate::factory::engine(ctx, &ledger).await;
    let l = Launch {
        graph,
        service: Some(service),
        scope: None,
        key: None,
        reason: format!("backup {database}"),
        params: serde_json::json!({"database": database}),
        audit: ("database.backup".to_owned(), serde_json::json!({"database": database})),
        audit_existing: false,
        release: String::new(),
    };
    Ok(launch(ctx, &engine, &ledger, l).await?.answer())
}

/// The backups recorded for `database`, oldest first.
pub(crate) async fn records(ledger: &skiff_state::Ledger, database: &str) -> Result<Vec<BackupRecord>> {
    let prefix = skiff_state::keys::database_backups(database);
    let listed = ledger.store().list(&prefix).await.map_err(|e| crate::error::state(&e.into()))?;
    let mut backups = Vec::new();
    for l in &listed {
        if let Some(b) = ledger.read::<BackupRecord>(&l.key).await.map_err(|e| crate::error::state(&e))? {
            backups.push(b);
        }
    }
    backups.sort_by(|a, b| a.at_ms.cmp(&b.at_ms).then_with(|| a.id.cmp(&b.id)));
    Ok(backups)
}

async fn list_backups(ctx: &Context, database: &str) -> Result<Answer> {
    let (_, ledger) = ctx.ledger()?;
    crate::lookup::database(&ledger, database).await?;
    let retired = skiff_steps::retire::retired(&ledger, database).await.map_err(|e| crate::error::state(&e))?;
    let (gone, mut backups): (Vec<BackupRecord>, Vec<BackupRecord>) =
        records(&ledger, database).await?.into_iter().partition(|b| retired.contains(&b.instance));
    backups.reverse();
    let mut body = String::new();
    for b in &backups {
        let rows: u64 = b.tables.iter().map(|t| t.rows).sum();
        let _ = writeln!(
            body,
            "  {:<24} {}  {} tables, {rows} rows  {}",
            b.restore_point,
            skiff_clock::Utc::from_ms(b.at_ms).rfc3339(),
            b.tables.len(),
            b.size_bytes.map_or_else(|| "size unknown".to_owned(), |s| format!("{} MiB", s.div_ceil(1 << 20)))
        );
    }
    let mut env = Envelope::ok(format!("{} of {database}", plural(backups.len(), "backup")))
        .data(serde_json::json!({"database": database, "backups": backups}));
    env = match backups.first() {
        Some(b) => env.fact(format!(
            "newest restore point: {} at {}",
            b.restore_point,
            skiff_clock::Utc::from_ms(b.at_ms).rfc3339()
        )),
        None => env.fact("a restore needs a backup to go back to"),
    };
    if !gone.is_empty() {
        env = env.fact(format!("{} went with retired instances", plural(gone.len(), "older backup")));
    }
    let env = env.action("backup", format!("skiff database backup {database} --yes"), true, Safety::Reversible, 0.6);
    Ok(Answer::from(env).body(body))
}
