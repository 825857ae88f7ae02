//! Automatic failover (`database.failover.automatic`): a watch over every service whose
//! database has a streaming replica. Each pass measures the primary and the replica;
//! while the primary answers it remembers the lag. Once the primary has not answered
//! for `after`, and the lag last measured (or, now, the replica's received-minus-
//! replayed lower bound, whichever is larger) is within `max_lag_bytes`, it starts the
//! `region-failover` saga in failover mode and approves its gate itself — the spec's
//! `automatic: true` is the approval, recorded as such. Above the bound it promotes
//! nothing and says so once: a person decides (`--accept-data-loss`). The saga fences
//! the old primary (started again, it is a standby with nothing to follow, so it
//! refuses writes), and the service's state document — compare-and-swap, the one
//! record of which region writes — moves in the same write as the promotion.
//!
//! The watch runs in the local supervisor beside the autoscaler and in `skiff-worker`,
//! every `SKIFF_HA_POLL_MS`; what it remembers is per process (a restarted watch waits
//! `after` again before acting).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use skiff_ir::AutoFailoverIr;
use skiff_sdk::{Answer, Code};

use crate::context::Context;
use crate::error::Result;
use crate::failover::{FailoverMode, FailoverRequest};

/// What one pass saw of a service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The primary answers; the replica's lag (bytes of log), when known.
    Healthy {
        /// The lag.
        lag_bytes: Option<u64>,
    },
    /// The primary has not answered for `for_ms`; not yet `after`.
    Down {
        /// Since when, ms.
        for_ms: u64,
    },
    /// The replica was promoted: the failover's operation and its outcome.
    FailedOver {
        /// The operation.
        op: Option<String>,
        /// Its outcome.
        summary: String,
    },
    /// The primary is down and the replica too far behind (or unmeasured): nothing promoted.
    Refused {
        /// Why.
        reason: String,
    },
}

/// What the watch remembers between passes.
#[derive(Debug, Default)]
pub struct Watch {
    down_since: BTreeMap<String, u64>,
    last_lag: BTreeMap<String, u64>,
}

/// The pause between passes: `SKIFF_HA_POLL_MS`, default 2 s.
pub fn poll(ctx: &Context) -> Duration {
    Duration::from_millis(skiff_settings::HA_POLL_MS.parse(|k| ctx.env.get(k)).unwrap_or(2_000).max(100))
}

/// One pass over `service`; `None` for a service without automatic failover.
pub async fn tick(ctx: &Context, watch: &mut Watch, service: &str) -> Result<Option<Verdict>> {
    let (_, ledger) = ctx.ledger()?;
    let Some((state, Some(ir))) = ledger.recorded(service).await.map_err(|e| crate::error::state(&e))? else {
        return Ok(None);
    };
    let Some(db) = ir.database.as_ref().filter(|d| !d.replica_regions.is_empty()) else { return Ok(None) };
    let Some(auto) = db.automatic_failover else { return Ok(None) };
    let writer = skiff_steps::failover::writer_region(&ir, Some(&state));
    let Some(to) = ir.regions.iter().find(|r| **r != writer).cloned() else { return Ok(None) };
    let primary =
        skiff_steps::database::current_instance(&ledger, &db.name).await.map_err(|e| crate::error::state(&e))?;
    let replica = skiff_compiler::replica_name(&db.name, &to);
    let provider = crate::factory::provider(ctx, &ledger).await?;
    let now = ledger.clock().now_ms();
    // A provider that cannot be asked says nothing about the primary: the pass fails
    // and the primary's downtime does not advance (an API hiccup never fails over).
    let p = provider
        .database()
        .replication(&primary)
        .await
        .map_err(|e| crate::error::provider(&format!("cannot measure {primary}"), &e))?;
    // An unmeasurable replica leaves the lag unknown, which refuses a promotion.
    let q = provider.database().replication(&replica).await.ok();
    let measured = q.as_ref().and_then(|q| skiff_steps::failover::measure(&p, q).0);
    if p.reachable {
        watch.down_since.remove(service);
        if let Some(lag) = measured {
            watch.last_lag.insert(service.to_owned(), lag);
        }
        return Ok(Some(Verdict::Healthy { lag_bytes: measured }));
    }
    let since = *watch.down_since.entry(service.to_owned()).or_insert(now);
    let for_ms = now.saturating_sub(since);
    let lag = match decide(for_ms, watch.last_lag.get(service).copied(), measured, auto) {
        Decision::Wait => return Ok(Some(Verdict::Down { for_ms })),
        Decision::Promote { lag } => lag,
        Decision::Refuse { lag } => {
            let shown = lag.map_or_else(|| "unknown".to_owned(), |l| format!("{l} bytes"));
            return Ok(Some(Verdict::Refused {
                reason: format!(
                    "{primary} does not answer; {replica}'s lag ({shown}) is over the bound ({} bytes): \
                 nothing promoted — `skiff failover stack {service} --to {to} --mode failover --accept-data-loss` decides",
                    auto.max_lag_bytes
                ),
            }));
        }
    };
    let request = FailoverRequest {
        service: service.to_owned(),
        to: to.clone(),
        mode: FailoverMode::Failover,
        max_lag_bytes: auto.max_lag_bytes,
        accept_data_loss: false,
        dry_run: false,
    };
    let confirmed = Context { yes: true, ..ctx.clone() };
    let started = crate::failover::stack(&confirmed, &request).await;
    let answer = match started {
        Ok(a) if a.envelope.code == Code::ApprovalRequired => approve(&confirmed, a).await,
        Ok(a) => a,
        Err(e) => {
            return Ok(Some(Verdict::Refused {
                reason: format!("the failover of {service} to {to} did not start: {}", e.envelope().summary),
            }));
        }
    };
    watch.down_since.remove(service);
    watch.last_lag.remove(service);
    let summary = format!(
        "{primary} did not answer for {} s; {replica} (lag {lag} bytes, bound {}) promoted automatically: {}",
        for_ms / 1000,
        auto.max_lag_bytes,
        answer.envelope.summary
    );
    Ok(Some(Verdict::FailedOver { op: answer.envelope.operation_id.clone(), summary }))
}

/// What the watch does about a primary that has not answered for `down_for_ms`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Decision {
    /// Not down for `after` yet.
    Wait,
    /// Promote: the lag (the larger of the last measured and the one now) is within the bound.
    Promote { lag: u64 },
    /// The lag is over the bound, or unknown: a person decides.
    Refuse { lag: Option<u64> },
}

/// The whole policy, pure: wait for `after`; then promote only with a known lag within
/// `max_lag_bytes`, taking the larger of the last lag seen while the primary answered
/// and the lower bound measured now.
fn decide(down_for_ms: u64, last_lag: Option<u64>, now_lag: Option<u64>, auto: AutoFailoverIr) -> Decision {
    if down_for_ms < auto.after.as_millis() {
        return Decision::Wait;
    }
    let lag = match (last_lag, now_lag) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    };
    match lag {
        Some(l) if l <= auto.max_lag_bytes => Decision::Promote { lag: l },
        other => Decision::Refuse { lag: other },
    }
}

/// Approves the failover's gate: `database.failover.automatic` stands for the person.
async fn approve(ctx: &Context, waiting: Answer) -> Answer {
    let Some(op) = waiting.envelope.operation_id.clone() else { return waiting };
    let approved = crate::saga::run(ctx, crate::request::SagaRequest::Approve { op, step: None }).await;
    approved.unwrap_or_else(Answer::from)
}

/// One pass over every service.
pub async fn tick_all(ctx: &Context, watch: &mut Watch) -> Vec<(String, Result<Verdict>)> {
    let services = match crate::worker::services(ctx).await {
        Ok(s) => s,
        Err(e) => return vec![(String::new(), Err(e))],
    };
    let mut out = Vec::new();
    for s in services {
        match tick(ctx, watch, &s).await {
            Ok(Some(v)) => out.push((s, Ok(v))),
            Ok(None) => {}
            Err(e) => out.push((s, Err(e))),
        }
    }
    out
}

/// Runs a pass every [`poll`] until the process stops; `on` sees each outcome.
pub async fn run(ctx: &Context, mut on: impl FnMut(&str, &Result<Verdict>)) {
    let clock: Arc<dyn skiff_clock::Clock> = match ctx.ledger() {
        Ok((_, l)) => l.clock().clone(),
        Err(_) => Arc::new(skiff_clock::SystemClock),
    };
    let mut watch = Watch::default();
    loop {
        for (service, outcome) in tick_all(ctx, &mut watch).await {
            on(&service, &outcome);
        }
        clock.sleep(poll(ctx)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use skiff_spec::values::Duration as SpecDuration;

    fn auto(max: u64) -> AutoFailoverIr {
        AutoFailoverIr { max_lag_bytes: max, after: SpecDuration::from_secs(10) }
    }

    #[test]
    fn it_waits_then_promotes_within_the_bound_and_refuses_above_it_or_unknown() {
        assert_eq!(decide(9_999, Some(0), Some(0), auto(100)), Decision::Wait);
        assert_eq!(decide(10_000, Some(100), Some(3), auto(100)), Decision::Promote { lag: 100 });
        // The last lag seen while the primary answered counts, even if the bound now is lower.
        assert_eq!(decide(10_000, Some(101), Some(3), auto(100)), Decision::Refuse { lag: Some(101) });
        assert_eq!(decide(10_000, None, Some(3), auto(100)), Decision::Promote { lag: 3 });
        assert_eq!(decide(10_000, None, None, auto(100)), Decision::Refuse { lag: None });
    }

    proptest! {
        #[test]
        fn it_never_promotes_early_over_the_bound_or_blind(
            down in 0u64..30_000,
            last in proptest::option::of(0u64..4_096),
            now in proptest::option::of(0u64..4_096),
            max in 0u64..4_096,
        ) {
            match decide(down, last, now, auto(max)) {
                Decision::Wait => prop_assert!(down < 10_000),
                Decision::Promote { lag } => {
                    prop_assert!(down >= 10_000);
                    prop_assert!(lag <= max);
                    prop_assert!(last.is_none_or(|l| l <= lag) && now.is_none_or(|n| n <= lag));
                    prop_assert!(last.is_some() || now.is_some());
                }
                Decision::Refuse { lag } => {
                    prop_assert!(down >= 10_000);
                    prop_assert!(lag.is_none_or(|l| l > max));
                }
            }
        }
    }
}
