//! The `database-restore` saga: restore a managed database to a restore point, a time
//! or the latest archived change — never in place. It snapshots the current database,
//! restores into a NEW instance, proves the copy (the rows of the restore point's
//! manifest, and the source's network, parameter and encryption settings), then waits
//! for approval before the one irreversible step: the secret cutover that points the
//! consumers' reference at the copy (the previous value is kept). The consumers are
//! restarted one instance at a time, verified healthy, and the old instance is
//! retained with an expiry recorded in the ledger. Compensation before the cutover
//! deletes only the instance the saga created.

use std::collections::BTreeMap;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::json;
use skiff_pluginapi::{BackupInfo, DatabaseSpec, GroupSpec, RestoreTarget};
use skiff_saga::{Registry, SagaBuilder, SagaError, SagaGraph};
use skiff_sagaapi::{Risk, Safety, Step, StepCode, StepContext, StepError, StepPlan, StepRequest, StepResult};
use skiff_state::Ledger;
use skiff_state::docs::RestoreRecord;

use crate::deploy::{provider, provider_error};
use crate::ledger_error;
use crate::step_plan;

/// `database-restore` in the catalog: planned from the ledger by `skiff restore database`.
pub(crate) const KIND: crate::SagaKind = crate::SagaKind {
    name: "database-restore",
    description: "restore a database into a new instance, prove it, and cut its consumers over after approval (`skiff restore database DB --to latest|TIME|POINT`)",
    params: &[],
    build: |_| Err(crate::deploy::needs_command("database-restore", "skiff restore database DB --to latest --yes")),
};

/// Everything a restore needs, decided before it runs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RestorePlan {
    /// The database (its name in the spec).
    pub database: String,
    /// The service whose instances use it.
    pub service: String,
    /// The instance it runs on now.
    pub source: String,
    /// The new instance.
    pub instance: DatabaseSpec,
    /// The backup restored from.
    pub backup: BackupInfo,
    /// Where the restore stops.
    pub target: RestoreTarget,
    /// The target as the user gave it.
    pub target_shown: String,
    /// The reference the consumers read (`secret://DB/url`).
    pub consumer_ref: String,
    /// The consumers' instance group and its size, if one serves.
    pub group: Option<(String, u32)>,
    /// How long the old instance is kept after the cutover.
    pub retention_ms: u64,
    /// The shadow check: a copy of the service against the restored instance.
    #[serde(default)]
    pub shadow: Option<Shadow>,
}

/// A shadow instance of the service's current release whose database secret resolves
/// to the restored copy, probed before the approval gate and removed after.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Shadow {
    /// Its instance group: one instance, serving no traffic.
    pub group: GroupSpec,
    /// Answers 2xx when healthy.
    pub health_path: String,
    /// A read that must answer 2xx from the copy's data.
    pub read_path: String,
}

/// The restore graph.
pub fn restore_graph(p: &RestorePlan) -> Result<SagaGraph, SagaError> {
    let plan = serde_json::to_value(p).unwrap_or_default();
    let long = 2 * 60 * 60 * 1000;
    SagaBuilder::new("database-restore")
        .step("snapshot", "restore.snapshot", plan.clone())
        .timeout_ms(long)
        .step("restore", "restore.create", plan.clone())
        .timeout_ms(long)
        .step("smoke", "restore.smoke", plan.clone())
        .step("shadow", "restore.shadow", plan.clone())
        .timeout_ms(10 * 60 * 1000)
        .step("cutover", "restore.cutover", plan.clone())
        .step("restart", "restore.restart", plan.clone())
        .timeout_ms(30 * 60 * 1000)
        .step("verify", "restore.verify", plan.clone())
        .step("retain", "restore.retain", plan)
        .build()
}

/// Registers the restore step kinds.
pub(crate) fn register(r: Registry) -> Registry {
    r.with(Snapshot).with(Create).with(Smoke).with(ShadowCheck).with(Cutover).with(Restart).with(Verify).with(Retain)
}

fn plan_of(req: &StepRequest) -> Result<RestorePlan, StepError> {
    req.params_as()
}

struct Snapshot;

#[async_trait]
impl Step for Snapshot {
    fn kind(&self) -> &str {
        "restore.snapshot"
    }

    async fn plan(&self, _: &StepContext, req: &StepRequest) -> Result<StepPlan, StepError> {
        let p = plan_of(req)?;
        Ok(step_plan(
            format!("snapshot {} as it is now, before anything changes", p.source),
            Safety::Reversible,
            Risk::Low,
            30_000,
            vec![format!("database/{}", p.source)],
        ))
    }

    async fn run(&self, _: &StepContext, req: &StepRequest) -> Result<StepResult, StepError> {
        let p = plan_of(req)?;
        let b = provider(req)?.database().backup(&p.source, &format!("{}-before", req.op_id)).await;
        let b = b.map_err(provider_error)?;
        Ok(StepResult::new(format!("snapshot {} of {} taken", b.id, p.source), b))
    }

    async fn resume(&self, ctx: &StepContext, req: &StepRequest) -> Result<StepResult, StepError> {
        self.run(ctx, req).await
    }

    async fn compensate(&self, _: &StepContext, _: &StepRequest, _: &StepResult) -> Result<StepResult, StepError> {
        Ok(StepResult::new("kept the snapshot: it changes nothing that serves", json!({})))
    }
}

struct Create;

#[async_trait]
impl Step for Create {
    fn kind(&self) -> &str {
        "restore.create"
    }

    async fn plan(&self, _: &StepContext, req: &StepRequest) -> Result<StepPlan, StepError> {
        let p = plan_of(req)?;
        Ok(step_plan(
            format!(
                "restore backup {} into a NEW instance {} up to {} (the source is only read)",
                p.backup.id, p.instance.id, p.target_shown
            ),
            Safety::Reversible,
            Risk::Low,
            60_000,
            vec![format!("database/{}", p.instance.id)],
        ))
    }

    async fn run(&self, ctx: &StepContext, req: &StepRequest) -> Result<StepResult, StepError> {
        let p = plan_of(req)?;
        ctx.progress(&format!("restoring into {}", p.instance.id), json!({"instance": p.instance.id})).await;
        let db = provider(req)?.database();
        let info = db.restore_to(&p.backup, &p.target, &p.instance).await.map_err(provider_error)?;
        Ok(StepResult::new(
            format!("{} restored to {} on {}:{}", p.instance.id, p.target_shown, info.host, info.port),
            json!({"instance": p.instance.id, "host": info.host, "port": info.port}),
        ))
    }

    async fn resume(&self, ctx: &StepContext, req: &StepRequest) -> Result<StepResult, StepError> {
        self.run(ctx, req).await
    }

    async fn compensate(&self, _: &StepContext, req: &StepRequest, _: &StepResult) -> Result<StepResult, StepError> {
        // Only what this saga created: the copy. The source was never written.
        let p = plan_of(req)?;
        provider(req)?.database().delete(&p.instance.id).await.map_err(provider_error)?;
        Ok(StepResult::new(format!("deleted the restored copy {}", p.instance.id), json!({})))
    }
}

struct Smoke;

#[async_trait]
impl Step for Smoke {
    fn kind(&self) -> &str {
        "restore.smoke"
    }

    async fn plan(&self, _: &StepContext, req: &StepRequest) -> Result<StepPlan, StepError> {
        let p = plan_of(req)?;
        Ok(step_plan(
            format!(
                "prove {}: the restore point's rows and checksums, and the source's network, parameter and encryption settings",
                p.instance.id
            ),
            Safety::ReadOnly,
            Risk::None,
            5_000,
            vec![format!("database/{}", p.instance.id)],
        ))
    }

    async fn run(&self, _: &StepContext, req: &StepRequest) -> Result<StepResult, StepError> {
        let p = plan_of(req)?;
        let db = provider(req)?.database();
        let (source, copy) = (db.settings(&p.source).await, db.settings(&p.instance.id).await);
        let (source, copy) = (source.map_err(provider_error)?, copy.map_err(provider_error)?);
        let differ = differences(&source, &copy);
        if !differ.is_empty() {
            let mut e = StepError::terminal(
                StepCode::OperationFailed,
                format!("{} does not have {}'s settings", p.instance.id, p.source),
            );
            for d in differ {
                e = e.fact(d);
            }
            return Err(e.fact("nothing serves from the copy; it is deleted by compensation"));
        }
        let tables = db.manifest(&p.instance.id).await.map_err(provider_error)?;
        let at_point = matches!(&p.target, RestoreTarget::Point(n) if *n == p.backup.restore_point);
        if at_point && !p.backup.tables.is_empty() && tables != p.backup.tables {
            let mut e = StepError::terminal(
                StepCode::OperationFailed,
                format!("{} does not hold the rows of restore point {}", p.instance.id, p.backup.restore_point),
            );
            for t in &p.backup.tables {
                let got = tables.iter().find(|x| x.table == t.table);
                if got != Some(t) {
                    e = e.fact(format!(
                        "{}: {} rows at the point, {} in the copy",
                        t.table,
                        t.rows,
                        got.map_or_else(|| "missing".to_owned(), |g| g.rows.to_string())
                    ));
                }
            }
            return Err(e);
        }
        let rows: u64 = tables.iter().map(|t| t.rows).sum();
        let proof = if at_point { "every table matches the restore point's manifest" } else { "tables read" };
        Ok(StepResult::new(
            format!("{}: {} settings equal the source's; {proof} ({rows} rows)", p.instance.id, source.len()),
            json!({"settings": source.len(), "tables": tables, "matches_manifest": at_point}),
        ))
    }

    async fn resume(&self, ctx: &StepContext, req: &StepRequest) -> Result<StepResult, StepError> {
        self.run(ctx, req).await
    }

    async fn compensate(&self, _: &StepContext, _: &StepRequest, _: &StepResult) -> Result<StepResult, StepError> {
        Ok(StepResult::new("nothing to undo", json!({})))
    }
}

struct ShadowCheck;

#[async_trait]
impl Step for ShadowCheck {
    fn kind(&self) -> &str {
        "restore.shadow"
    }

    async fn plan(&self, _: &StepContext, req: &StepRequest) -> Result<StepPlan, StepError> {
        let p = plan_of(req)?;
        Ok(match &p.shadow {
            Some(s) => step_plan(
                format!(
                    "start one shadow instance of {} on {} (no traffic) and see it answer {} and {}; then remove it",
                    p.service, p.instance.id, s.health_path, s.read_path
                ),
                Safety::Reversible,
                Risk::Low,
                15_000,
                vec![format!("group/{}", s.group.name)],
            ),
            None => step_plan(
                format!(
                    "no shadow check: no release of {} runs, or its instances are not reachable from here",
                    p.service
                ),
                Safety::ReadOnly,
                Risk::None,
                0,
                Vec::new(),
            ),
        })
    }

    async fn run(&self, ctx: &StepContext, req: &StepRequest) -> Result<StepResult, StepError> {
        let p = plan_of(req)?;
        let Some(s) = &p.shadow else {
            return Ok(StepResult::new("no shadow check", json!({"shadow": null})));
        };
        let prov = provider(req)?;
        let group = GroupSpec {
            operation: Some(req.op_id.clone()),
            trace: skiff_observability::current().map(|c| c.traceparent),
            ..s.group.clone()
        };
        prov.compute().create_group(&group).await.map_err(provider_error)?;
        let outcome = probe(ctx, req, s).await;
        // The shadow serves nobody: it goes whatever it answered.
        prov.compute().delete_group(&s.group.name).await.map_err(provider_error)?;
        let (health, read, body) = outcome?;
        let text = body.as_str().map_or_else(|| body.to_string(), str::to_owned);
        let excerpt: String = text.chars().take(160).collect();
        Ok(StepResult::new(
            format!(
                "a shadow instance of {} on {} answered {} {health} and {} {read}: {excerpt}",
                p.service, p.instance.id, s.health_path, s.read_path
            ),
            json!({"health": health, "read": read, "read_body": body}),
        ))
    }

    async fn resume(&self, ctx: &StepContext, req: &StepRequest) -> Result<StepResult, StepError> {
        self.run(ctx, req).await
    }

    async fn compensate(&self, _: &StepContext, req: &StepRequest, _: &StepResult) -> Result<StepResult, StepError> {
        let p = plan_of(req)?;
        if let Some(s) = &p.shadow {
            provider(req)?.compute().delete_group(&s.group.name).await.map_err(provider_error)?;
        }
        Ok(StepResult::new("no shadow instance is left", json!({})))
    }
}

/// How long one shadow request may take.
const PROBE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Waits for the shadow instance and asks it for its health and the read: their
/// statuses, and the read's body (as JSON when it is, its first KiB of text otherwise).
async fn probe(ctx: &StepContext, req: &StepRequest, s: &Shadow) -> Result<(u16, u16, serde_json::Value), StepError> {
    let prov = provider(req)?;
    let http = reqwest::Client::new();
    let mut cancel = req.cancel.clone();
    let deadline = ctx.now_ms() + 120_000;
    let mut last = String::from("no instance started");
    loop {
        let g = prov.compute().describe_group(&s.group.name).await.map_err(provider_error)?;
        let target = g.and_then(|g| g.running().iter().find_map(|i| i.port.map(|port| (i.address.clone(), port))));
        if let Some((address, port)) = target {
            // Each request bounded, so a shadow that accepts and never answers is not waited on.
            let get = |path: &str| {
                let sent = http.get(format!("http://{address}:{port}{path}")).send();
                async move {
                    match skiff_clock::timeout(&skiff_clock::SystemClock, PROBE_TIMEOUT, sent).await {
                        Ok(r) => r.map_err(|e| e.to_string()),
                        Err(_) => Err(format!("no answer within {} s", PROBE_TIMEOUT.as_secs())),
                    }
                }
            };
            match get(&s.health_path).await {
                Ok(h) if h.status().is_success() => {
                    let read = get(&s.read_path).await.map_err(|e| {
                        StepError::terminal(
                            StepCode::OperationFailed,
                            format!("the shadow's {} failed: {e}", s.read_path),
                        )
                    })?;
                    if !read.status().is_success() {
                        return Err(StepError::terminal(
                            StepCode::OperationFailed,
                            format!("the shadow answered {} {} on the restored database", s.read_path, read.status()),
                        )
                        .fact("nothing serves from the copy; compensation deletes it"));
                    }
                    let status = read.status().as_u16();
                    let text = skiff_clock::timeout(&skiff_clock::SystemClock, PROBE_TIMEOUT, read.text()).await;
                    let text = text.ok().and_then(Result::ok).unwrap_or_default();
                    let body = serde_json::from_str(&text)
                        .unwrap_or_else(|_| serde_json::Value::String(text.chars().take(1024).collect()));
                    return Ok((h.status().as_u16(), status, body));
                }
                Ok(h) => last = format!("{} answered {}", s.health_path, h.status()),
                Err(e) => last = format!("{}: {e}", s.health_path),
            }
        }
        if ctx.now_ms() > deadline {
            return Err(StepError::terminal(
                StepCode::OperationFailed,
                "a shadow instance against the restored database never became healthy",
            )
            .fact(last)
            .fact("nothing serves from the copy; compensation deletes it"));
        }
        cancel.sleep(crate::deploy::POLL * 2).await?;
    }
}

/// "ssl: off on the source, on in the copy" for every setting that differs.
fn differences(source: &BTreeMap<String, String>, copy: &BTreeMap<String, String>) -> Vec<String> {
    let mut out = Vec::new();
    for (k, v) in source {
        match copy.get(k) {
            Some(c) if c == v => {}
            Some(c) => out.push(format!("{k}: {v} on the source, {c} in the copy")),
            None => out.push(format!("{k}: {v} on the source, missing in the copy")),
        }
    }
    out
}

struct Cutover;

#[async_trait]
impl Step for Cutover {
    fn kind(&self) -> &str {
        "restore.cutover"
    }

    async fn plan(&self, _: &StepContext, req: &StepRequest) -> Result<StepPlan, StepError> {
        let p = plan_of(req)?;
        Ok(step_plan(
            format!(
                "point {} at {} (a new secret version; the previous one is kept as {}-previous) — writes after this go to the copy",
                p.consumer_ref, p.instance.id, p.consumer_ref
            ),
            Safety::Irreversible,
            Risk::High,
            1_000,
            vec![p.consumer_ref.clone()],
        ))
    }

    async fn run(&self, _: &StepContext, req: &StepRequest) -> Result<StepResult, StepError> {
        let p = plan_of(req)?;
        let source = provider(req)?.database().connection(&p.instance.id).await.map_err(provider_error)?.url_ref;
        provider(req)?.secrets().cut_over(&p.consumer_ref, &source).await.map_err(provider_error)?;
        crate::record_secret(req, &p.consumer_ref).await?;
        Ok(StepResult::new(
            format!(
                "{} now resolves to {}; the previous value is {}-previous",
                p.consumer_ref, p.instance.id, p.consumer_ref
            ),
            json!({"reference": p.consumer_ref, "instance": p.instance.id}),
        ))
    }

    async fn resume(&self, ctx: &StepContext, req: &StepRequest) -> Result<StepResult, StepError> {
        self.run(ctx, req).await
    }

    async fn compensate(&self, _: &StepContext, _: &StepRequest, _: &StepResult) -> Result<StepResult, StepError> {
        Err(StepError::terminal(StepCode::OperationFailed, "a secret cutover is not undone by compensation"))
    }
}

struct Restart;

#[async_trait]
impl Step for Restart {
    fn kind(&self) -> &str {
        "restore.restart"
    }

    async fn plan(&self, _: &StepContext, req: &StepRequest) -> Result<StepPlan, StepError> {
        let p = plan_of(req)?;
        let what = p.group.as_ref().map_or_else(
            || format!("no instances of {} run: nothing to restart", p.service),
            |(g, n)| format!("restart the {n} instances of {g} one at a time so they read the new secret"),
        );
        Ok(step_plan(what, Safety::Reversible, Risk::Medium, 30_000, vec![format!("service/{}", p.service)]))
    }

    async fn run(&self, ctx: &StepContext, req: &StepRequest) -> Result<StepResult, StepError> {
        let p = plan_of(req)?;
        let Some((group, size)) = &p.group else {
            return Ok(StepResult::new(format!("no instances of {} to restart", p.service), json!({"restarted": 0})));
        };
        let restarted = crate::consumers::restart_groups(ctx, req, &[(group.clone(), *size)]).await?;
        Ok(StepResult::new(
            format!(
                "restarted {} of {group}; each read {} anew",
                crate::consumers::instances(restarted),
                p.consumer_ref
            ),
            json!({"restarted": restarted}),
        ))
    }

    async fn resume(&self, ctx: &StepContext, req: &StepRequest) -> Result<StepResult, StepError> {
        self.run(ctx, req).await
    }

    async fn compensate(&self, _: &StepContext, _: &StepRequest, _: &StepResult) -> Result<StepResult, StepError> {
        Ok(StepResult::new("restarted instances stay restarted", json!({})))
    }
}

struct Verify;

#[async_trait]
impl Step for Verify {
    fn kind(&self) -> &str {
        "restore.verify"
    }

    async fn plan(&self, _: &StepContext, req: &StepRequest) -> Result<StepPlan, StepError> {
        let p = plan_of(req)?;
        Ok(step_plan(
            format!("check every instance of {} is healthy on the restored database", p.service),
            Safety::ReadOnly,
            Risk::None,
            2_000,
            vec![format!("service/{}", p.service)],
        ))
    }

    async fn run(&self, _: &StepContext, req: &StepRequest) -> Result<StepResult, StepError> {
        let p = plan_of(req)?;
        let prov = provider(req)?;
        if prov.database().describe(&p.instance.id).await.map_err(provider_error)?.is_none() {
            return Err(StepError::terminal(StepCode::NotFound, format!("{} is gone", p.instance.id)));
        }
        let Some((group, size)) = &p.group else {
            return Ok(StepResult::new(format!("{} is available; no instances use it yet", p.instance.id), json!({})));
        };
        let healthy = crate::consumers::healthy_groups(req, &[(group.clone(), *size)], "the restored database").await?;
        Ok(StepResult::new(format!("{healthy}/{size} instances of {group} healthy on {}", p.instance.id), json!({})))
    }

    async fn resume(&self, ctx: &StepContext, req: &StepRequest) -> Result<StepResult, StepError> {
        self.run(ctx, req).await
    }

    async fn compensate(&self, _: &StepContext, _: &StepRequest, _: &StepResult) -> Result<StepResult, StepError> {
        Ok(StepResult::new("nothing to undo", json!({})))
    }
}

struct Retain;

#[async_trait]
impl Step for Retain {
    fn kind(&self) -> &str {
        "restore.retain"
    }

    async fn plan(&self, _: &StepContext, req: &StepRequest) -> Result<StepPlan, StepError> {
        let p = plan_of(req)?;
        Ok(step_plan(
            format!(
                "record {} as {}'s instance and keep {} for {} days (deleting it is a separate, approved step)",
                p.instance.id,
                p.database,
                p.source,
                p.retention_ms / 86_400_000
            ),
            Safety::Reversible,
            Risk::None,
            200,
            vec![format!("database/{}", p.database)],
        ))
    }

    async fn run(&self, _: &StepContext, req: &StepRequest) -> Result<StepResult, StepError> {
        let p = plan_of(req)?;
        let ledger = req.extensions.require::<Ledger>()?;
        let at_ms = ledger.clock().now_ms();
        let record = RestoreRecord {
            op_id: req.op_id.clone(),
            database: p.database.clone(),
            from_instance: p.source.clone(),
            to_instance: p.instance.id.clone(),
            backup: p.backup.id.clone(),
            target: p.target_shown.clone(),
            at_ms,
            retained_until_ms: at_ms + p.retention_ms,
        };
        let key = skiff_state::keys::database_restore(&p.database, &req.op_id);
        ledger.create(&key, &record).await.map_err(ledger_error)?;
        let until = skiff_clock::Utc::from_ms(at_ms + p.retention_ms).rfc3339();
        Ok(StepResult::new(
            format!("{} now runs on {}; {} is retained until {until}", p.database, p.instance.id, p.source),
            json!({"key": key, "retained_until_ms": record.retained_until_ms}),
        ))
    }

    async fn resume(&self, ctx: &StepContext, req: &StepRequest) -> Result<StepResult, StepError> {
        self.run(ctx, req).await
    }

    async fn compensate(&self, _: &StepContext, _: &StepRequest, _: &StepResult) -> Result<StepResult, StepError> {
        Ok(StepResult::new("the record stays true", json!({})))
    }
}
