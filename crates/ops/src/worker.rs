//! What a worker asks of the ledger: which operations wait for an engine, running one
//! under its lease (nothing runs twice), and which services to reconcile.

use std::collections::BTreeMap;

use skiff_sdk::Answer;
use skiff_state::docs::{OpStatus, OperationState};
use skiff_state::keys::{self, KeyKind};

use crate::context::Context;
use crate::error::Result;

/// Operations a worker should run: submitted and not started, started by an engine
/// whose lease may have lapsed, approved, or asked to resume or cancel.
pub async fn runnable_operations(ctx: &Context) -> Result<Vec<String>> {
    let (_, ledger) = ctx.ledger()?;
    let fail = |e: skiff_state::StateError| crate::error::state(&e);
    let engine = crate::factory::engine_with(ctx, &ledger, skiff_sagaapi::Extensions::default());
    let mut out = Vec::new();
    // Only the operations' state documents are read, not the whole bucket.
    for listed in ledger.store().list(&keys::operations()).await.map_err(|e| fail(e.into()))? {
        let KeyKind::OpState { op } = keys::classify(&listed.key) else { continue };
        let Some(state) = ledger.read::<OperationState>(&listed.key).await.map_err(fail)? else { continue };
        let status = state.status;
        if status.is_terminal() {
            continue;
        }
        let wanted = match status {
            OpStatus::Planned | OpStatus::Running | OpStatus::Compensating => true,
            OpStatus::AwaitingApproval | OpStatus::Paused => {
                let Ok((_, d)) = engine.load(&op).await else { continue };
                let steered = d.rejected || d.cancel_requested;
                let approved = status == OpStatus::AwaitingApproval && d.awaiting.is_none();
                let resumed =
                    status == OpStatus::Paused && event_is(&ledger, &op, d.applied_seq, "resume_requested").await;
                steered || approved || resumed
            }
            _ => false,
        };
        if wanted && !matches!(engine.lease_holder(&op).await, Ok(Some(_))) {
            out.push(op);
        }
    }
    Ok(out)
}

/// Claims `op` through its lease and runs it to its end (or its next gate). `None`
/// when there was nothing to do: another engine holds the lease or already finished
/// it. Nothing runs twice.
pub async fn run_operation(ctx: &Context, op: &str) -> Option<Answer> {
    let (_, ledger) = match ctx.ledger() {
        Ok(l) => l,
        Err(e) => return Some(e.into_answer()),
    };
    let engine = crate::factory::engine(ctx, &ledger).await.with_lease_wait_ms(0);
    let before = engine.load(op).await.map(|(_, d)| d.applied_seq).unwrap_or(0);
    let result = engine.run(op).await;
    if let Err(skiff_saga::SagaError::State(skiff_state::StateError::LeaseHeld { .. })) = &result {
        return None;
    }
    // Did this engine start or resume it, or did it find it finished by another?
    let events = ledger.events_from(op, before + 1).await.unwrap_or_default();
    let mine = events.iter().any(|e| {
        matches!(e.event_type.as_str(), "operation_started" | "operation_resumed")
            && e.data["holder"].as_str() == Some(engine.holder())
    });
    match result {
        Ok(_) if !mine => None,
        Ok(_) => Some(crate::error::answer(crate::report::outcome(ctx, &ledger, op).await)),
        Err(e) => Some(crate::error::saga(&e).into_answer()),
    }
}

/// The services the bucket knows.
pub async fn services(ctx: &Context) -> Result<Vec<String>> {
    let (_, ledger) = ctx.ledger()?;
    let listed = ledger.store().list(&keys::services()).await.map_err(|e| crate::error::state(&e.into()))?;
    Ok(listed
        .iter()
        .filter_map(|l| match keys::classify(&l.key) {
            KeyKind::ServiceState { service } => Some(service),
            _ => None,
        })
        .collect())
}

/// What a server or worker passes from its own environment to the requests it runs:
/// cloud credentials and endpoints, local-provider and runner settings, lease TTL,
/// key password, `HOME` and `PATH`; nothing else leaks in.
pub fn inherited_env() -> BTreeMap<String, String> {
    use skiff_settings as s;
    let passed = [
        s::LEASE_TTL_MS,
        s::PLUGINS,
        s::KEY_PASSWORD,
        s::REGION,
        s::BIN,
        s::RUNNER_BIN,
        s::PG_BIN,
        s::PG_USER,
        s::AWS_AMI,
        s::AWS_SUBNETS,
        s::AWS_RUNNER_URL,
        s::AWS_RUNNER_SHA256,
    ];
    std::env::vars()
        .filter(|(k, _)| {
            k.starts_with("AWS_") || passed.iter().any(|p| p.name == k) || matches!(k.as_str(), "HOME" | "PATH")
        })
        .collect()
}

/// Whether event `seq` of `op` is of type `kind` (one read; `load` folded every event,
/// so its `applied_seq` is the last one).
async fn event_is(ledger: &skiff_state::Ledger, op: &str, seq: u64, kind: &str) -> bool {
    let event = ledger.read::<skiff_state::docs::Event>(&keys::op_event(op, seq)).await;
    event.ok().flatten().is_some_and(|e| e.event_type == kind)
}
