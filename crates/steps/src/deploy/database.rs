//! `deploy.database`: makes sure the service's managed database exists and is
//! available before any instance of the release starts, so the `secret://DB/url` the
//! spec references resolves on the instance. Creation is idempotent by the database's
//! id (its name). A database holds data, so a compensated deploy keeps it: deleting
//! one is never a side effect of a failed rollout.

use async_trait::async_trait;
use serde_json::json;
use skiff_pluginapi::DatabaseSpec;
use skiff_sagaapi::{Risk, Safety, Step, StepContext, StepError, StepPlan, StepRequest, StepResult};

use super::common::{params, provider, provider_error};

pub(super) struct EnsureDatabase;

/// "postgres 16 on db.t4g.small, 20 GiB, encrypted, private, backups kept 7 days".
pub(super) fn describe(d: &DatabaseSpec) -> String {
    format!(
        "{} {} on {}, {} GiB{}, encrypted, private, backups kept {} days",
        d.engine,
        d.version,
        d.instance_class,
        d.storage_gib,
        if d.multi_az { ", standby in a second zone" } else { "" },
        d.backup_retention_days
    )
}

#[async_trait]
impl Step for EnsureDatabase {
    fn kind(&self) -> &str {
        "deploy.database"
    }

    async fn plan(&self, _: &StepContext, req: &StepRequest) -> Result<StepPlan, StepError> {
        let d: DatabaseSpec = params(req)?;
        Ok(StepPlan {
            description: format!("ensure database {} ({})", d.id, describe(&d)),
            safety: Safety::Reversible,
            risk: Risk::Low,
            expected_duration_ms: 10_000,
            affected_resources: vec![format!("database/{}", d.id)],
        })
    }

    async fn run(&self, ctx: &StepContext, req: &StepRequest) -> Result<StepResult, StepError> {
        let d: DatabaseSpec = params(req)?;
        let db = provider(req)?.database();
        let existed = db.describe(&d.id).await.map_err(provider_error)?.is_some();
        if !existed {
            ctx.progress(&format!("creating database {}", d.id), json!({"database": d.id})).await;
        }
        let info = db.create(&d).await.map_err(provider_error)?;
        let conn = db.connection(&d.id).await.map_err(provider_error)?;
        if !existed {
            crate::record_secret(req, &conn.url_ref).await?;
        }
        let verb = if existed { "available" } else { "created" };
        Ok(StepResult::new(
            format!("database {} {verb} on {}:{}; credentials behind {}", d.id, info.host, info.port, conn.url_ref),
            json!({"database": d.id, "created": !existed, "host": info.host, "port": info.port, "url_ref": conn.url_ref}),
        ))
    }

    async fn resume(&self, ctx: &StepContext, req: &StepRequest) -> Result<StepResult, StepError> {
        self.run(ctx, req).await
    }

    async fn compensate(&self, _: &StepContext, req: &StepRequest, _: &StepResult) -> Result<StepResult, StepError> {
        let d: DatabaseSpec = params(req)?;
        Ok(StepResult::new(
            format!("kept database {}: a failed rollout never deletes data", d.id),
            json!({"database": d.id, "kept": true}),
        ))
    }
}

/// `deploy.replica`: ensures a streaming replica of the database in another region.
pub(super) struct EnsureReplica;

#[async_trait]
impl Step for EnsureReplica {
    fn kind(&self) -> &str {
        "deploy.replica"
    }

    async fn plan(&self, _: &StepContext, req: &StepRequest) -> Result<StepPlan, StepError> {
        let r: super::ReplicaPlan = params(req)?;
        Ok(StepPlan {
            description: format!(
                "ensure {} in {}: a streaming replica of {} on {}, read-only until a failover promotes it",
                r.spec.id, r.region, r.source, r.spec.instance_class
            ),
            safety: Safety::Reversible,
            risk: Risk::Low,
            expected_duration_ms: 10_000,
            affected_resources: vec![format!("database/{}", r.spec.id)],
        })
    }

    async fn run(&self, ctx: &StepContext, req: &StepRequest) -> Result<StepResult, StepError> {
        let r: super::ReplicaPlan = params(req)?;
        let db = provider(req)?.database();
        let existed = db.describe(&r.spec.id).await.map_err(provider_error)?.is_some();
        if !existed {
            ctx.progress(&format!("copying {} to {} in {}", r.source, r.spec.id, r.region), json!({})).await;
        }
        let info = db.create_replica(&r.source, &r.spec, &r.region).await.map_err(provider_error)?;
        let conn = db.connection(&r.spec.id).await.map_err(provider_error)?;
        if !existed {
            crate::record_secret(req, &conn.url_ref).await?;
        }
        let verb = if existed { "available" } else { "created" };
        Ok(StepResult::new(
            format!("replica {} of {} {verb} in {} on {}:{}", r.spec.id, r.source, r.region, info.host, info.port),
            json!({"replica": r.spec.id, "region": r.region, "created": !existed, "url_ref": conn.url_ref}),
        ))
    }

    async fn resume(&self, ctx: &StepContext, req: &StepRequest) -> Result<StepResult, StepError> {
        self.run(ctx, req).await
    }

    async fn compensate(&self, _: &StepContext, req: &StepRequest, _: &StepResult) -> Result<StepResult, StepError> {
        let r: super::ReplicaPlan = params(req)?;
        Ok(StepResult::new(format!("kept replica {}: a failed rollout never deletes data", r.spec.id), json!({})))
    }
}
