//! The one operation pipeline every mutating request goes through once its graph is
//! planned and its policy checked: submit (the engine claims the service), audit, then
//! run here or leave it for a worker (`detach`), then report from the ledger.

use serde_json::Value;
use skiff_saga::{Engine, SagaGraph, ServiceScope, Submission, Submitted};
use skiff_sdk::{Answer, Code};
use skiff_state::Ledger;

use crate::context::Context;
use crate::error::Result;

/// An operation ready to submit.
#[derive(Debug)]
pub(crate) struct Launch {
    /// Its graph (the saga kind is the graph's).
    pub(crate) graph: SagaGraph,
    /// The service it acts on.
    pub(crate) service: Option<String>,
    /// Whether it claims the service (one operation per service at a time), and the
    /// candidate release it records.
    pub(crate) scope: Option<ServiceScope>,
    /// Same key, same operation.
    pub(crate) key: Option<String>,
    /// Why, for the intent.
    pub(crate) reason: String,
    /// Recorded in the intent; `notes` (facts from before the run) are added to its
    /// answer, and a repair's `drift` and `policy` say what it started from.
    pub(crate) params: Value,
    /// The audit action (`deploy.start`) and its detail.
    pub(crate) audit: (String, Value),
    /// Audit a re-submission of an existing operation too.
    pub(crate) audit_existing: bool,
    /// What a detached answer names: the release (or nothing).
    pub(crate) release: String,
}

/// What became of a launch.
#[derive(Debug)]
pub(crate) enum Launched {
    /// Submitted for a worker (`detach`).
    Submitted(Submitted, Answer),
    /// Run here to its end or its next gate.
    Ran(Submitted, Answer),
}

impl Launched {
    /// The answer either way.
    pub(crate) fn answer(self) -> Answer {
        match self {
            Launched::Submitted(_, a) | Launched::Ran(_, a) => a,
        }
    }
}

/// Submits, audits, and runs (unless detached) an operation, then answers with its
/// outcome as [`crate::report::outcome`] reads it from the ledger.
pub(crate) async fn launch(ctx: &Context, engine: &Engine, ledger: &Ledger, l: Launch) -> Result<Launched> {
    let saga = l.graph.saga.clone();
    let actor = ctx.actor();
    let submitted = engine
        .submit(Submission {
            graph: l.graph,
            service: l.service.clone(),
            actor: actor.clone(),
            reason: l.reason,
            idempotency_key: l.key,
            params: l.params,
            scope: l.scope,
        })
        .await
        .map_err(|e| crate::error::saga(&e))?;
    let op = submitted.op_id.clone();
    if submitted.created || l.audit_existing {
        let _ = ledger.audit(&actor, &l.audit.0, &op, Code::Ok, l.audit.1).await;
    }
    if !submitted.created {
        ctx.progress(&format!("operation {op} already exists for this idempotency key; continuing it"));
    }
    let steps = submitted.plan.steps.len();
    if ctx.detach {
        let service = l.service.or_else(|| submitted.plan.service.clone()).unwrap_or_default();
        let answer = crate::report::submitted(&saga, &service, &l.release, &op, steps);
        return Ok(Launched::Submitted(submitted, answer));
    }
    ctx.progress(&format!("operation {op}: {steps} steps"));
    engine.run(&op).await.map_err(|e| crate::error::saga(&e))?;
    let answer = crate::report::outcome(ctx, ledger, &op).await?;
    Ok(Launched::Ran(submitted, answer))
}
