//! `skiff failover stack SERVICE --to REGION [--mode switchover|failover]`: the
//! `region-failover` saga, planned from the ledger and a measurement of the replica
//! taken now. What it would refuse — a service without replicas, a region it does not
//! run in or already writes in, a switchover whose primary does not answer, a lag
//! above the threshold without `--accept-data-loss` — is refused before anything is
//! recorded, with the measured lag in the facts.

use skiff_sdk::{Answer, Code, Envelope, Safety};
use skiff_steps::failover::{FailoverPlan, Mode};

use crate::context::Context;
use crate::error::{Error, Result};
use crate::pipeline::{Launch, launch};

/// How long the old primary is kept, fenced, after a failover.
const RETAIN_MS: u64 = 7 * 86_400_000;

/// The default lag threshold: 1 MiB of log not yet replayed.
pub const DEFAULT_MAX_LAG_BYTES: u64 = 1 << 20;

/// What `skiff failover stack` asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FailoverRequest {
    /// The service.
    pub service: String,
    /// The region that writes afterwards.
    pub to: String,
    /// Switchover (the primary is up) or failover (its region is gone).
    pub mode: FailoverMode,
    /// The most lag, in bytes of log, a promotion takes without accepting loss.
    pub max_lag_bytes: u64,
    /// Promote even above the threshold (a failover only).
    pub accept_data_loss: bool,
    /// Plan it and change nothing.
    pub dry_run: bool,
}

/// `--mode`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailoverMode {
    /// Planned, no data loss: writes are frozen and the replica catches up first.
    Switchover,
    /// The primary's region is gone: the replica is promoted with what it has.
    Failover,
}

impl FailoverMode {
    /// `switchover` or `failover`.
    pub fn as_str(self) -> &'static str {
        match self {
            FailoverMode::Switchover => "switchover",
            FailoverMode::Failover => "failover",
        }
    }
}

fn refuse(code: Code, summary: String, facts: Vec<String>, action: (&str, String, bool, Safety)) -> Error {
    let mut e = Envelope::failure(code, summary);
    for f in facts {
        e = e.fact(f);
    }
    e.action(action.0, action.1, action.2, action.3, 0.7).into()
}

/// Plans and starts (or shows, with `--dry-run`) the failover.
pub(crate) async fn stack(ctx: &Context, r: &FailoverRequest) -> Result<Answer> {
    let (_, ledger) = ctx.ledger()?;
    let service = &r.service;
    let (state, ir) = ledger
        .recorded(service)
        .await
        .map_err(|e| crate::error::state(&e))?
        .ok_or_else(|| crate::lookup::no_service(&ledger, service))?;
    let ir = ir.ok_or_else(|| crate::lookup::no_service(&ledger, service))?;
    let status = ("status", format!("skiff status {service}"), false, Safety::ReadOnly);
    let Some(db) = ir.database.as_ref().filter(|d| !d.replica_regions.is_empty()) else {
        return Err(refuse(
            Code::Usage,
            format!("{service} has no database replica in another region"),
            vec!["a failover promotes a streaming replica: list two regions (`regions: [us-east-1, us-west-2]`) beside `database:` and deploy".to_owned()],
            status,
        ));
    };
    let from = skiff_steps::failover::writer_region(&ir, Some(&state));
    if !ir.regions.contains(&r.to) || r.to == from {
        let why = if r.to == from {
            format!("{} writes in {from} already", db.name)
        } else {
            format!("{service} does not run in {}", r.to)
        };
        return Err(refuse(
            Code::Usage,
            why,
            vec![format!("regions: {}; {} writes in {from}", ir.regions.join(", "), db.name)],
            status,
        ));
    }
    let primary =
        skiff_steps::database::current_instance(&ledger, &db.name).await.map_err(|e| crate::error::state(&e))?;
    let replica = skiff_compiler::replica_name(&db.name, &r.to);
    let provider = crate::factory::provider(ctx, &ledger).await?;
    let measured = async {
        let p = provider.database().replication(&primary).await?;
        let q = provider.database().replication(&replica).await?;
        Ok::<_, skiff_pluginapi::ProviderError>((p, q))
    }
    .await;
    let (p, q) = measured.map_err(|e| {
        refuse(
            Code::ProviderError,
            format!("cannot measure {replica}'s replication: {}", e.message),
            vec!["nothing was changed".to_owned()],
            status.clone(),
        )
    })?;
    let (lag, how) = skiff_steps::failover::measure(&p, &q);
    let lag_fact =
        format!("replica lag: {} ({how})", lag.map_or_else(|| "unknown".to_owned(), |l| format!("{l} bytes")));
    let mode = match r.mode {
        FailoverMode::Switchover => Mode::Switchover,
        FailoverMode::Failover => Mode::Failover,
    };
    let command = format!("skiff failover stack {service} --to {}", r.to);
    if mode == Mode::Switchover && !p.reachable {
        return Err(refuse(
            Code::Usage,
            format!("{primary} does not answer: a switchover needs the primary up"),
            vec![lag_fact, "a failover promotes the replica with what it has received".to_owned()],
            ("failover", format!("{command} --mode failover --dry-run"), false, Safety::ReadOnly),
        ));
    }
    if mode == Mode::Switchover && r.accept_data_loss {
        return Err(refuse(
            Code::Usage,
            "--accept-data-loss goes with --mode failover: a switchover loses nothing".to_owned(),
            vec![lag_fact],
            ("failover", format!("{command} --mode failover --accept-data-loss --dry-run"), false, Safety::ReadOnly),
        ));
    }
    let over = lag.is_none_or(|l| l > r.max_lag_bytes);
    if over && !(mode == Mode::Failover && r.accept_data_loss) {
        let next = if mode == Mode::Failover {
            ("accept", format!("{command} --mode failover --accept-data-loss --dry-run"), false, Safety::ReadOnly)
        } else {
            ("status", format!("skiff status {service}"), false, Safety::ReadOnly)
        };
        return Err(refuse(
            Code::PolicyDenied,
            format!("{replica} is behind {primary} by more than the threshold ({} bytes)", r.max_lag_bytes),
            vec![
                lag_fact,
                format!("lag_bytes: {}", lag.map_or_else(|| "unknown".to_owned(), |l| l.to_string())),
                if mode == Mode::Failover {
                    "promoting it loses those writes; --accept-data-loss accepts that, behind its own approval"
                        .to_owned()
                } else {
                    "a switchover waits for a replica within the threshold; wait and run it again".to_owned()
                },
            ],
            next,
        ));
    }
    let groups: Vec<(String, u32)> = state
        .current_release
        .as_ref()
        .map(|rel| skiff_steps::deploy::release_groups(&ir, rel))
        .unwrap_or_default()
        .into_iter()
        .map(|g| (g, ir.capacity.desired))
        .collect();
    let mut groups = groups.into_iter();
    let group = groups.next();
    // A service in several regions moves its global traffic behind the writer.
    let shift = if skiff_compiler::secondary_regions(&ir).is_empty() { Vec::new() } else { vec![10, 50, 100] };
    let consumer_ref = ir
        .secrets
        .values()
        .map(ToString::to_string)
        .find(|s| s.starts_with(&format!("secret://{}/", db.name)))
        .unwrap_or_else(|| format!("secret://{}/url", db.name));
    let plan = FailoverPlan {
        service: service.clone(),
        database: db.name.clone(),
        mode,
        from_region: from,
        to_region: r.to.clone(),
        primary,
        replica,
        max_lag_bytes: r.max_lag_bytes,
        planned_lag_bytes: lag,
        accept_data_loss: r.accept_data_loss,
        consumer_ref,
        group,
        retention_ms: RETAIN_MS,
        write_window_ms: skiff_steps::failover::expected_write_window_ms(lag),
        regional_groups: groups.collect(),
        shift,
    };
    let graph = skiff_steps::failover::failover_graph(&plan).map_err(|e| crate::error::saga(&e))?;
    let flags = match (mode, r.accept_data_loss) {
        (Mode::Switchover, _) => String::new(),
        (Mode::Failover, false) => " --mode failover".to_owned(),
        (Mode::Failover, true) => " --mode failover --accept-data-loss".to_owned(),
    };
    let label = format!("{} of {service} to {}", r.mode.as_str(), r.to);
    if r.dry_run {
        let answer =
            crate::saga::planned(ctx, &graph, Some(service), &label, format!("{command}{flags} --yes")).await?;
        return Ok(with_facts(answer, &plan, &lag_fact));
    }
    ctx.confirm(&label, &format!("{command}{flags}"))?;
    let engine = crate::factory::engine(ctx, &ledger).await;
    let l = Launch {
        graph,
        service: Some(service.clone()),
        scope: Some(skiff_saga::ServiceScope::service(service.clone())),
        key: None,
        reason: label.clone(),
        params: serde_json::json!({"service": service, "to": r.to, "mode": r.mode.as_str(), "accept_data_loss": r.accept_data_loss}),
        audit: (
            "region.failover".to_owned(),
            serde_json::json!({"service": service, "to": r.to, "mode": r.mode.as_str(), "lag_bytes": lag}),
        ),
        audit_existing: false,
        release: String::new(),
    };
    let answer = launch(ctx, &engine, &ledger, l).await?.answer();
    Ok(with_facts(answer, &plan, &lag_fact))
}

/// The lag, the write-unavailability window and failback in every answer's facts and data.
fn with_facts(mut answer: Answer, p: &FailoverPlan, lag_fact: &str) -> Answer {
    let e = &mut answer.envelope;
    e.facts.push(lag_fact.to_owned());
    if p.mode == Mode::Switchover {
        e.facts.push(format!(
            "expected write unavailability: at most about {} s (freeze to repointed consumers: each step's expected time, the lag replayed at 20 MiB/s; `cargo xtask bench failover` measures it)",
            p.write_window_ms.div_ceil(1000)
        ));
    }
    e.facts.push(format!(
        "promoting {} is irreversible; failback is a new switchover to {} once a replica follows there",
        p.replica, p.from_region
    ));
    if let Some(obj) = e.data.as_object_mut() {
        obj.insert(
            "failover".to_owned(),
            serde_json::json!({
                "mode": p.mode,
                "from_region": p.from_region,
                "to_region": p.to_region,
                "primary": p.primary,
                "replica": p.replica,
                "lag_bytes": p.planned_lag_bytes,
                "max_lag_bytes": p.max_lag_bytes,
                "accept_data_loss": p.accept_data_loss,
                "write_unavailability_ms": if p.mode == Mode::Switchover { Some(p.write_window_ms) } else { None },
                "traffic_shift_percent": p.shift,
            }),
        );
    }
    answer
}
