//! The `region-failover` saga: move the region that writes a service's database to the
//! region of one of its streaming replicas (`skiff failover stack SERVICE --to REGION`).
//!
//! A *switchover* (the primary is up) loses nothing: the replica's lag is checked, one
//! approval covers everything after it, writes are frozen on the primary (its client
//! sessions ended), the replica replays up to the frozen position, and only then is it
//! promoted. A *failover* (the primary's region is gone) promotes what the replica has;
//! a lag above the threshold is refused unless the operator accepted the loss
//! (`--accept-data-loss`, its own approval with the lag in the facts). The promotion
//! is irreversible — the old primary's history and the new one's part there — and is
//! recorded in the same write that moves the service's writer region, so reconcile
//! never sees them disagree. Then the consumers' secret points at the new primary,
//! consumers restart onto it, and the old primary is fenced (started again, it refuses
//! writes). Failback is a new switchover once a replica follows again, not a
//! compensation.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::json;
use skiff_pluginapi::{ReplicaRole, Replication, lsn_lag};
use skiff_saga::{Registry, SagaBuilder, SagaError, SagaGraph};
use skiff_sagaapi::{Risk, Safety, Step, StepCode, StepContext, StepError, StepPlan, StepRequest, StepResult};
use skiff_state::Ledger;
use skiff_state::docs::{RestoreRecord, ServiceState};

use crate::deploy::{provider, provider_error};
use crate::{ledger_error, step_plan};

mod traffic;

pub use traffic::ShiftParams;

/// `region-failover` in the catalog: planned from the ledger by `skiff failover stack`.
pub(crate) const KIND: crate::SagaKind = crate::SagaKind {
    name: "region-failover",
    description: "move the region that writes a service's database to a replica's region: lag checked, writes frozen, the replica promoted (irreversible), consumers repointed, the old primary fenced (`skiff failover stack SERVICE --to REGION`)",
    params: &[],
    build: |_| Err(crate::deploy::needs_command("region-failover", "skiff failover stack SERVICE --to REGION --yes")),
};

/// How the primary is left.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Planned: the primary is up; writes are frozen and the replica catches up first.
    Switchover,
    /// The primary's region is gone: the replica is promoted with what it has.
    Failover,
}

/// Everything a failover needs, decided before it runs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FailoverPlan {
    /// The service.
    pub service: String,
    /// The database (its name in the spec).
    pub database: String,
    /// Switchover or failover.
    pub mode: Mode,
    /// The region that writes now.
    pub from_region: String,
    /// The region that writes afterwards.
    pub to_region: String,
    /// The instance that writes now.
    pub primary: String,
    /// The replica promoted.
    pub replica: String,
    /// The most replica lag, in bytes of log, a promotion takes without accepting loss.
    pub max_lag_bytes: u64,
    /// The lag measured when the operation was planned.
    pub planned_lag_bytes: Option<u64>,
    /// The operator accepted losing the writes the replica has not replayed.
    pub accept_data_loss: bool,
    /// The reference consumers read (`secret://DB/url`).
    pub consumer_ref: String,
    /// The consumers' instance group and its size, if one serves.
    pub group: Option<(String, u32)>,
    /// How long the old primary is kept (fenced) after the promotion.
    pub retention_ms: u64,
    /// The expected write-unavailability window, milliseconds (freeze to repointed).
    pub write_window_ms: u64,
    /// The consumers' groups in the other regions and their sizes: restarted too.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub regional_groups: Vec<(String, u32)>,
    /// The global traffic front's steps towards the new region, percent (empty: the
    /// service has no front).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub shift: Vec<u32>,
}

/// What the steps of the frozen window are expected to take at most, ms; the plan's
/// expected write unavailability is their sum ([`expected_write_window_ms`]), and
/// `cargo xtask bench failover` measures the real one.
const FREEZE_MS: u64 = 2_000;
const CATCH_UP_MS: u64 = 2_000;
const PROMOTE_MS: u64 = 5_000;
const REPOINT_MS: u64 = 1_000;
/// Replay speed assumed for the lag still to replay (20 MiB/s, a small instance's).
const REPLAY_BYTES_PER_MS: u64 = 20 * 1_048_576 / 1_000;

/// The expected write-unavailability window of a switchover whose replica lags by
/// `lag_bytes`: freeze, catch-up (with the lag replayed), promotion and repointing.
pub fn expected_write_window_ms(lag_bytes: Option<u64>) -> u64 {
    FREEZE_MS + CATCH_UP_MS + lag_bytes.unwrap_or(0) / REPLAY_BYTES_PER_MS + PROMOTE_MS + REPOINT_MS
}

impl FailoverPlan {
    /// Every consumer group with its size, the primary region's first.
    fn groups(&self) -> Vec<(String, u32)> {
        self.group.iter().chain(&self.regional_groups).cloned().collect()
    }
}

/// The failover graph: one approval covers freeze, promotion and repointing, so no
/// person is waited for while writes are frozen.
pub fn failover_graph(p: &FailoverPlan) -> Result<SagaGraph, SagaError> {
    let plan = serde_json::to_value(p).unwrap_or_default();
    let mut b = SagaBuilder::new("region-failover")
        .step("capacity", "failover.capacity", plan.clone())
        .step("lag", "failover.lag", plan.clone())
        .step("gate", "failover.gate", plan.clone())
        .require_approval();
    if p.mode == Mode::Switchover {
        b = b
            .step("freeze", "failover.freeze", plan.clone())
            .step("catch-up", "failover.catch-up", plan.clone())
            .timeout_ms(5 * 60 * 1000);
    }
    let mut b = b
        .step("promote", "failover.promote", plan.clone())
        .approved_by("gate")
        .timeout_ms(5 * 60 * 1000)
        .step("repoint", "failover.repoint", plan.clone())
        .approved_by("gate")
        .step("restart", "failover.restart", plan.clone())
        .timeout_ms(30 * 60 * 1000);
    for w in &p.shift {
        let shift = ShiftParams {
            service: p.service.clone(),
            from: p.from_region.clone(),
            to: p.to_region.clone(),
            weight: *w,
        };
        b = b.step(&format!("shift-{w}"), "failover.traffic", serde_json::to_value(shift).unwrap_or_default());
    }
    b.step("verify", "failover.verify", plan.clone()).step("fence", "failover.fence", plan).build()
}

/// Registers the failover step kinds.
pub(crate) fn register(r: Registry) -> Registry {
    r.with(Capacity)
        .with(Lag)
        .with(Gate)
        .with(Freeze)
        .with(CatchUp)
        .with(Promote)
        .with(Repoint)
        .with(Restart)
        .with(traffic::Traffic)
        .with(Verify)
        .with(Fence)
}

/// The region whose database instance writes: the state's, once a failover moved it,
/// or the spec's first.
pub fn writer_region(ir: &skiff_ir::ServiceIr, state: Option<&ServiceState>) -> String {
    state.and_then(|s| s.writer_region.clone()).unwrap_or_else(|| ir.regions.first().cloned().unwrap_or_default())
}

/// The replica's lag behind the primary in bytes, and how it was measured: from the
/// primary's write position when the primary answers, else from what the replica
/// received (all that can be known with the primary gone).
pub fn measure(primary: &Replication, replica: &Replication) -> (Option<u64>, &'static str) {
    let replayed = replica.lsn.as_deref();
    match (primary.reachable, primary.lsn.as_deref(), replayed) {
        (true, Some(at), Some(r)) => (lsn_lag(at, r), "primary's write position minus the replica's replayed position"),
        (_, _, Some(r)) => (
            replica.received_lsn.as_deref().and_then(|got| lsn_lag(got, r)),
            "the primary does not answer: the replica's received minus replayed position (a lower bound)",
        ),
        _ => (None, "the replica reports no position"),
    }
}

fn plan_of(req: &StepRequest) -> Result<FailoverPlan, StepError> {
    req.params_as()
}

fn mib(bytes: u64) -> String {
    format!("{:.2} MiB", bytes as f64 / 1_048_576.0)
}

fn lag_step(req: &StepRequest) -> Option<u64> {
    req.inputs.get("lag").and_then(|v| v["lag_bytes"].as_u64())
}

struct Capacity;

#[async_trait]
impl Step for Capacity {
    fn kind(&self) -> &str {
        "failover.capacity"
    }

    async fn plan(&self, _: &StepContext, req: &StepRequest) -> Result<StepPlan, StepError> {
        let p = plan_of(req)?;
        Ok(step_plan(
            format!(
                "check {} in {} is a running replica of {} that can take the writes",
                p.replica, p.to_region, p.primary
            ),
            Safety::ReadOnly,
            Risk::None,
            1_000,
            vec![format!("database/{}", p.replica)],
        ))
    }

    async fn run(&self, _: &StepContext, req: &StepRequest) -> Result<StepResult, StepError> {
        let p = plan_of(req)?;
        let r = provider(req)?.database().replication(&p.replica).await.map_err(provider_error)?;
        if !r.reachable || r.role != ReplicaRole::Replica {
            return Err(StepError::terminal(
                StepCode::OperationFailed,
                format!(
                    "{} in {} is not a running replica ({:?}, reachable: {})",
                    p.replica, p.to_region, r.role, r.reachable
                ),
            )
            .fact("nothing was changed; `skiff deploy` ensures the replicas of a multi-region service"));
        }
        Ok(StepResult::new(format!("{} is a running replica in {}", p.replica, p.to_region), json!({"replica": r})))
    }

    async fn resume(&self, ctx: &StepContext, req: &StepRequest) -> Result<StepResult, StepError> {
        self.run(ctx, req).await
    }

    async fn compensate(&self, _: &StepContext, _: &StepRequest, _: &StepResult) -> Result<StepResult, StepError> {
        Ok(StepResult::new("nothing to undo", json!({})))
    }
}

struct Lag;

#[async_trait]
impl Step for Lag {
    fn kind(&self) -> &str {
        "failover.lag"
    }

    async fn plan(&self, _: &StepContext, req: &StepRequest) -> Result<StepPlan, StepError> {
        let p = plan_of(req)?;
        Ok(step_plan(
            format!(
                "measure {}'s replay lag behind {} (threshold {}{})",
                p.replica,
                p.primary,
                mib(p.max_lag_bytes),
                p.planned_lag_bytes.map(|l| format!("; {} when planned", mib(l))).unwrap_or_default()
            ),
            Safety::ReadOnly,
            Risk::None,
            1_000,
            vec![format!("database/{}", p.replica)],
        ))
    }

    async fn run(&self, _: &StepContext, req: &StepRequest) -> Result<StepResult, StepError> {
        let p = plan_of(req)?;
        let db = provider(req)?.database();
        let primary = db.replication(&p.primary).await.map_err(provider_error)?;
        let replica = db.replication(&p.replica).await.map_err(provider_error)?;
        if p.mode == Mode::Switchover && !primary.reachable {
            return Err(StepError::terminal(
                StepCode::OperationFailed,
                format!("{} does not answer: a switchover needs the primary up", p.primary),
            )
            .fact(format!(
                "to promote {} with what it has: skiff failover stack {} --to {} --mode failover",
                p.replica, p.service, p.to_region
            )));
        }
        let (lag, how) = measure(&primary, &replica);
        let accepted = p.mode == Mode::Failover && p.accept_data_loss;
        let Some(lag) = lag else {
            // A provider that reports no log position (RDS): only accepted loss promotes.
            if accepted {
                return Ok(StepResult::new(
                    format!("{}'s lag behind {} is unknown ({how}); the loss is accepted", p.replica, p.primary),
                    json!({"lag_bytes": null, "measured": how, "primary": primary, "replica": replica}),
                ));
            }
            return Err(StepError::terminal(
                StepCode::OperationFailed,
                format!("{} reports no log position: its lag cannot be measured", p.replica),
            )
            .fact("promoting it may lose writes: a failover with --accept-data-loss accepts that"));
        };
        if lag > p.max_lag_bytes && !accepted {
            let e = StepError::terminal(
                StepCode::OperationFailed,
                format!(
                    "{} is {} behind {}, above the threshold {}",
                    p.replica,
                    mib(lag),
                    p.primary,
                    mib(p.max_lag_bytes)
                ),
            )
            .fact(format!("lag_bytes: {lag} ({how})"));
            return Err(if p.mode == Mode::Switchover {
                e.fact("wait for the replica to catch up, then run the switchover again")
            } else {
                e.fact("promoting it loses those writes: run again with --accept-data-loss to accept that")
            });
        }
        Ok(StepResult::new(
            format!("{} is {} behind {} ({how})", p.replica, mib(lag), p.primary),
            json!({"lag_bytes": lag, "measured": how, "primary": primary, "replica": replica}),
        ))
    }

    async fn resume(&self, ctx: &StepContext, req: &StepRequest) -> Result<StepResult, StepError> {
        self.run(ctx, req).await
    }

    async fn compensate(&self, _: &StepContext, _: &StepRequest, _: &StepResult) -> Result<StepResult, StepError> {
        Ok(StepResult::new("nothing to undo", json!({})))
    }
}

struct Gate;

#[async_trait]
impl Step for Gate {
    fn kind(&self) -> &str {
        "failover.gate"
    }

    async fn plan(&self, _: &StepContext, req: &StepRequest) -> Result<StepPlan, StepError> {
        let p = plan_of(req)?;
        let lost = match (p.mode, p.accept_data_loss) {
            (Mode::Failover, true) => format!(
                "; ACCEPTS DATA LOSS: up to the writes {} has not replayed ({} when planned)",
                p.replica,
                p.planned_lag_bytes.map_or_else(|| "unknown".to_owned(), mib)
            ),
            (Mode::Failover, false) => "; writes the replica has not received are lost".to_owned(),
            (Mode::Switchover, _) => String::new(),
        };
        let frozen = if p.mode == Mode::Switchover {
            format!("freeze writes on {} (about {} s without writes), ", p.primary, p.write_window_ms.div_ceil(1000))
        } else {
            String::new()
        };
        Ok(step_plan(
            format!(
                "approve moving {}'s writes from {} to {}: {frozen}promote {} (IRREVERSIBLE), point {} at it, fence {}{lost}",
                p.database, p.from_region, p.to_region, p.replica, p.consumer_ref, p.primary
            ),
            Safety::ReadOnly,
            if p.accept_data_loss { Risk::High } else { Risk::Medium },
            0,
            vec![format!("database/{}", p.primary), format!("database/{}", p.replica)],
        ))
    }

    async fn run(&self, _: &StepContext, req: &StepRequest) -> Result<StepResult, StepError> {
        let p = plan_of(req)?;
        let lag = lag_step(req);
        let summary = match (p.mode, p.accept_data_loss) {
            (Mode::Failover, true) => format!(
                "approved, data loss accepted: {} was {} behind",
                p.replica,
                lag.map_or_else(|| "an unknown amount".to_owned(), mib)
            ),
            _ => format!("approved: {} becomes the primary in {}", p.replica, p.to_region),
        };
        Ok(StepResult::new(summary, json!({"lag_bytes": lag, "accepted_data_loss": p.accept_data_loss})))
    }

    async fn resume(&self, ctx: &StepContext, req: &StepRequest) -> Result<StepResult, StepError> {
        self.run(ctx, req).await
    }

    async fn compensate(&self, _: &StepContext, _: &StepRequest, _: &StepResult) -> Result<StepResult, StepError> {
        Ok(StepResult::new("nothing to undo", json!({})))
    }
}

struct Freeze;

#[async_trait]
impl Step for Freeze {
    fn kind(&self) -> &str {
        "failover.freeze"
    }

    async fn plan(&self, _: &StepContext, req: &StepRequest) -> Result<StepPlan, StepError> {
        let p = plan_of(req)?;
        Ok(step_plan(
            format!("freeze writes on {}: read-only for new transactions, every client session ended", p.primary),
            Safety::Reversible,
            Risk::High,
            FREEZE_MS,
            vec![format!("database/{}", p.primary)],
        ))
    }

    async fn run(&self, _: &StepContext, req: &StepRequest) -> Result<StepResult, StepError> {
        let p = plan_of(req)?;
        let lsn = provider(req)?.database().freeze(&p.primary).await.map_err(provider_error)?;
        Ok(StepResult::new(format!("{} is frozen at {lsn}", p.primary), json!({"lsn": lsn})))
    }

    async fn resume(&self, ctx: &StepContext, req: &StepRequest) -> Result<StepResult, StepError> {
        self.run(ctx, req).await
    }

    async fn compensate(&self, _: &StepContext, req: &StepRequest, _: &StepResult) -> Result<StepResult, StepError> {
        let p = plan_of(req)?;
        provider(req)?.database().thaw(&p.primary).await.map_err(provider_error)?;
        Ok(StepResult::new(format!("{} takes writes again", p.primary), json!({})))
    }
}

struct CatchUp;

#[async_trait]
impl Step for CatchUp {
    fn kind(&self) -> &str {
        "failover.catch-up"
    }

    async fn plan(&self, _: &StepContext, req: &StepRequest) -> Result<StepPlan, StepError> {
        let p = plan_of(req)?;
        Ok(step_plan(
            format!("wait until {} has replayed {}'s last write", p.replica, p.primary),
            Safety::ReadOnly,
            Risk::Low,
            CATCH_UP_MS,
            vec![format!("database/{}", p.replica)],
        ))
    }

    async fn run(&self, ctx: &StepContext, req: &StepRequest) -> Result<StepResult, StepError> {
        let p = plan_of(req)?;
        let frozen: String = req.input::<serde_json::Value>("freeze")?["lsn"].as_str().unwrap_or_default().to_owned();
        let db = provider(req)?.database();
        let mut cancel = req.cancel.clone();
        loop {
            let r = db.replication(&p.replica).await.map_err(provider_error)?;
            let behind = r.lsn.as_deref().and_then(|at| lsn_lag(&frozen, at));
            if behind == Some(0) {
                return Ok(StepResult::new(
                    format!("{} replayed up to {frozen}: nothing acknowledged is missing", p.replica),
                    json!({"lsn": r.lsn, "frozen_lsn": frozen}),
                ));
            }
            ctx.progress(
                &format!("{} is {} behind", p.replica, behind.map_or_else(|| "an unknown amount".to_owned(), mib)),
                json!({"behind_bytes": behind}),
            )
            .await;
            cancel.sleep(std::time::Duration::from_millis(100)).await?;
        }
    }

    async fn resume(&self, ctx: &StepContext, req: &StepRequest) -> Result<StepResult, StepError> {
        self.run(ctx, req).await
    }

    async fn compensate(&self, _: &StepContext, _: &StepRequest, _: &StepResult) -> Result<StepResult, StepError> {
        Ok(StepResult::new("nothing to undo", json!({})))
    }
}

struct Promote;

#[async_trait]
impl Step for Promote {
    fn kind(&self) -> &str {
        "failover.promote"
    }

    async fn plan(&self, _: &StepContext, req: &StepRequest) -> Result<StepPlan, StepError> {
        let p = plan_of(req)?;
        Ok(step_plan(
            format!(
                "promote {} to the primary in {} and record {} as the writer region — IRREVERSIBLE: after new writes its history and {}'s part",
                p.replica, p.to_region, p.to_region, p.primary
            ),
            Safety::Irreversible,
            Risk::High,
            PROMOTE_MS,
            vec![format!("database/{}", p.replica), format!("service/{}", p.service)],
        ))
    }

    async fn run(&self, _: &StepContext, req: &StepRequest) -> Result<StepResult, StepError> {
        let p = plan_of(req)?;
        provider(req)?.database().promote(&p.replica).await.map_err(provider_error)?;
        // The writer region moves in the one write that records the promotion.
        let ledger = req.extensions.require::<Ledger>()?;
        let key = skiff_state::keys::service_state(&p.service);
        let now = ledger.clock().now_ms();
        ledger
            .update::<ServiceState, _>(&key, |cur| {
                let mut s = cur.cloned().unwrap_or_else(|| ServiceState::new(&p.service));
                if s.writer_region.as_deref() == Some(p.to_region.as_str()) {
                    return Ok(skiff_state::Update::Keep);
                }
                s.writer_region = Some(p.to_region.clone());
                // Traffic stays where it was until the shifts move it.
                if !p.shift.is_empty() && s.region_weights.is_empty() {
                    s.region_weights = [(p.from_region.clone(), 100)].into();
                }
                s.updated_at_ms = now;
                Ok(skiff_state::Update::Write(s))
            })
            .await
            .map_err(ledger_error)?;
        Ok(StepResult::new(
            format!("{} is the primary; {} writes in {}", p.replica, p.database, p.to_region),
            json!({"primary": p.replica, "writer_region": p.to_region}),
        ))
    }

    async fn resume(&self, ctx: &StepContext, req: &StepRequest) -> Result<StepResult, StepError> {
        self.run(ctx, req).await
    }

    async fn compensate(&self, _: &StepContext, _: &StepRequest, _: &StepResult) -> Result<StepResult, StepError> {
        Err(StepError::terminal(
            StepCode::OperationFailed,
            "a promotion is not undone by compensation: failback is a new switchover once a replica follows again",
        ))
    }
}

struct Repoint;

#[async_trait]
impl Step for Repoint {
    fn kind(&self) -> &str {
        "failover.repoint"
    }

    async fn plan(&self, _: &StepContext, req: &StepRequest) -> Result<StepPlan, StepError> {
        let p = plan_of(req)?;
        Ok(step_plan(
            format!(
                "point {} at {} (a new secret version; the previous one is kept as {}-previous) and record {} as {}'s instance",
                p.consumer_ref, p.replica, p.consumer_ref, p.replica, p.database
            ),
            Safety::Irreversible,
            Risk::High,
            REPOINT_MS,
            vec![p.consumer_ref.clone(), format!("database/{}", p.database)],
        ))
    }

    async fn run(&self, _: &StepContext, req: &StepRequest) -> Result<StepResult, StepError> {
        let p = plan_of(req)?;
        let prov = provider(req)?;
        let source = prov.database().connection(&p.replica).await.map_err(provider_error)?.url_ref;
        prov.secrets().cut_over(&p.consumer_ref, &source).await.map_err(provider_error)?;
        crate::record_secret(req, &p.consumer_ref).await?;
        let ledger = req.extensions.require::<Ledger>()?;
        let at_ms = ledger.clock().now_ms();
        let record = RestoreRecord {
            op_id: req.op_id.clone(),
            database: p.database.clone(),
            from_instance: p.primary.clone(),
            to_instance: p.replica.clone(),
            backup: String::new(),
            target: format!("{:?} to {}", p.mode, p.to_region).to_lowercase(),
            at_ms,
            retained_until_ms: at_ms + p.retention_ms,
        };
        let key = skiff_state::keys::database_restore(&p.database, &req.op_id);
        if ledger.read::<RestoreRecord>(&key).await.map_err(ledger_error)?.is_none() {
            ledger.create(&key, &record).await.map_err(ledger_error)?;
        }
        Ok(StepResult::new(
            format!("{} now resolves to {}; {} runs there", p.consumer_ref, p.replica, p.database),
            json!({"reference": p.consumer_ref, "instance": p.replica, "key": key}),
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
        "failover.restart"
    }

    async fn plan(&self, _: &StepContext, req: &StepRequest) -> Result<StepPlan, StepError> {
        let p = plan_of(req)?;
        let groups = p.groups();
        let what = if groups.is_empty() {
            format!("no instances of {} run: nothing to restart", p.service)
        } else {
            let shown: Vec<String> = groups.iter().map(|(g, n)| format!("{n} of {g}")).collect();
            format!("restart the instances ({}) one at a time so they write to {}", shown.join(", "), p.replica)
        };
        Ok(step_plan(what, Safety::Reversible, Risk::Medium, 30_000, vec![format!("service/{}", p.service)]))
    }

    async fn run(&self, ctx: &StepContext, req: &StepRequest) -> Result<StepResult, StepError> {
        let p = plan_of(req)?;
        let restarted = crate::consumers::restart_groups(ctx, req, &p.groups()).await?;
        Ok(StepResult::new(
            format!(
                "restarted {} of {}; each writes to {}",
                crate::consumers::instances(restarted),
                p.service,
                p.replica
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
        "failover.verify"
    }

    async fn plan(&self, _: &StepContext, req: &StepRequest) -> Result<StepPlan, StepError> {
        let p = plan_of(req)?;
        Ok(step_plan(
            format!("check {} takes writes and every instance of {} is healthy", p.replica, p.service),
            Safety::ReadOnly,
            Risk::None,
            2_000,
            vec![format!("service/{}", p.service)],
        ))
    }

    async fn run(&self, _: &StepContext, req: &StepRequest) -> Result<StepResult, StepError> {
        let p = plan_of(req)?;
        let prov = provider(req)?;
        let r = prov.database().replication(&p.replica).await.map_err(provider_error)?;
        if r.role != ReplicaRole::Primary || r.read_only {
            return Err(StepError::retryable(
                StepCode::OperationFailed,
                format!("{} is not yet a writable primary ({:?})", p.replica, r.role),
            ));
        }
        let healthy_total = crate::consumers::healthy_groups(req, &p.groups(), &p.replica).await?;
        Ok(StepResult::new(
            format!("{} takes writes; {healthy_total} instances of {} healthy", p.replica, p.service),
            json!({"healthy": healthy_total}),
        ))
    }

    async fn resume(&self, ctx: &StepContext, req: &StepRequest) -> Result<StepResult, StepError> {
        self.run(ctx, req).await
    }

    async fn compensate(&self, _: &StepContext, _: &StepRequest, _: &StepResult) -> Result<StepResult, StepError> {
        Ok(StepResult::new("nothing to undo", json!({})))
    }
}

struct Fence;

#[async_trait]
impl Step for Fence {
    fn kind(&self) -> &str {
        "failover.fence"
    }

    async fn plan(&self, _: &StepContext, req: &StepRequest) -> Result<StepPlan, StepError> {
        let p = plan_of(req)?;
        Ok(step_plan(
            format!(
                "fence {} so it refuses writes if it comes back; it is kept {} days (`skiff database retire` deletes it)",
                p.primary,
                p.retention_ms / 86_400_000
            ),
            Safety::Reversible,
            Risk::Low,
            5_000,
            vec![format!("database/{}", p.primary)],
        ))
    }

    async fn run(&self, _: &StepContext, req: &StepRequest) -> Result<StepResult, StepError> {
        let p = plan_of(req)?;
        provider(req)?.database().fence(&p.primary).await.map_err(provider_error)?;
        Ok(StepResult::new(format!("{} is fenced: started again it refuses writes", p.primary), json!({})))
    }

    async fn resume(&self, ctx: &StepContext, req: &StepRequest) -> Result<StepResult, StepError> {
        self.run(ctx, req).await
    }

    async fn compensate(&self, _: &StepContext, _: &StepRequest, _: &StepResult) -> Result<StepResult, StepError> {
        Ok(StepResult::new("a fenced old primary stays fenced", json!({})))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(mode: Mode) -> FailoverPlan {
        FailoverPlan {
            service: "api".into(),
            database: "api-db".into(),
            mode,
            from_region: "us-east-1".into(),
            to_region: "us-west-2".into(),
            primary: "api-db".into(),
            replica: "api-db-us-west-2".into(),
            max_lag_bytes: 1 << 20,
            planned_lag_bytes: Some(0),
            accept_data_loss: false,
            consumer_ref: "secret://api-db/url".into(),
            group: None,
            retention_ms: 0,
            write_window_ms: 3_000,
            regional_groups: Vec::new(),
            shift: Vec::new(),
        }
    }

    #[test]
    fn one_gate_covers_freeze_promotion_and_repointing() {
        let g = failover_graph(&plan(Mode::Switchover)).unwrap();
        let ids: Vec<&str> = g.steps.iter().map(|s| s.id.as_str()).collect();
        assert_eq!(
            ids,
            ["capacity", "lag", "gate", "freeze", "catch-up", "promote", "repoint", "restart", "verify", "fence"]
        );
        assert!(g.steps[2].approval);
        for s in &g.steps {
            assert_eq!(s.approved_by.is_some(), ["promote", "repoint"].contains(&s.id.as_str()), "{}", s.id);
        }
        let g = failover_graph(&plan(Mode::Failover)).unwrap();
        assert!(!g.steps.iter().any(|s| s.id == "freeze" || s.id == "catch-up"), "nothing to freeze");
    }

    #[test]
    fn a_service_with_a_front_shifts_traffic_in_steps_before_verifying() {
        let p = FailoverPlan { shift: vec![10, 50, 100], ..plan(Mode::Switchover) };
        let g = failover_graph(&p).unwrap();
        let ids: Vec<&str> = g.steps.iter().map(|s| s.id.as_str()).collect();
        assert_eq!(ids[7..], ["restart", "shift-10", "shift-50", "shift-100", "verify", "fence"]);
        let shift = g.steps.iter().find(|s| s.id == "shift-50").unwrap();
        assert_eq!(shift.params["weight"], 50);
        assert_eq!(shift.params["to"], "us-west-2");
    }

    #[test]
    fn lag_is_measured_from_the_primary_when_it_answers() {
        let at = |reachable, lsn: &str, received: Option<&str>| Replication {
            id: "x".into(),
            region: String::new(),
            role: ReplicaRole::Replica,
            reachable,
            lsn: Some(lsn.into()),
            received_lsn: received.map(Into::into),
            source: None,
            read_only: true,
        };
        assert_eq!(measure(&at(true, "0/2000", None), &at(true, "0/1000", Some("0/1800"))).0, Some(0x1000));
        assert_eq!(measure(&at(false, "0/0", None), &at(true, "0/1000", Some("0/1800"))).0, Some(0x800));
        assert_eq!(measure(&at(false, "0/0", None), &at(true, "0/1000", None)).0, None);
    }
}
