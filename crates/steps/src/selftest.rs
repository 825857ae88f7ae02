//! `selftest`: exercises the engine end to end against the real ledger, with no
//! provider: reversible notes (events in the operation's own log, compensated by
//! "undone" events), a read-only wait (honours pause points and cancel), parallel
//! branches, and an irreversible seal (an immutable blob) behind an approval gate.

use std::time::Duration;

use async_trait::async_trait;
use serde_json::json;
use skiff_saga::{Registry, SagaBuilder, SagaError, SagaGraph};
use skiff_sagaapi::{Risk, Safety, Step, StepCode, StepContext, StepError, StepPlan, StepRequest, StepResult};
use skiff_state::Ledger;

use crate::{Params, SagaKind, ledger_error};

pub(crate) const KIND: SagaKind = SagaKind {
    name: "selftest",
    description: "exercise the saga engine against the state bucket: notes, a wait, parallel branches and an irreversible seal behind approval",
    params: &[
        ("wait_ms", "how long the read-only wait step sleeps (default 0)"),
        (
            "fail_at",
            "a step id that fails, to watch compensation (record-start, wait, record-branch, seal, record-end)",
        ),
        ("seal", "`false` leaves out the irreversible seal step and its approval gate (default true)"),
    ],
    build,
};

fn build(params: &Params) -> Result<SagaGraph, SagaError> {
    let wait_ms: u64 = match params.get("wait_ms") {
        Some(v) => v.parse().map_err(|_| SagaError::InvalidGraph {
            saga: "selftest".into(),
            why: format!("wait_ms `{v}` is not a number of milliseconds"),
        })?,
        None => 0,
    };
    let fail_at = params.get("fail_at").cloned().unwrap_or_default();
    let seal = params.get("seal").is_none_or(|v| v != "false");
    let p = |id: &str| json!({"fail": fail_at == id});
    let mut b = SagaBuilder::new("selftest")
        .step("record-start", "selftest.note", p("record-start"))
        .branches([
            ("wait", "selftest.wait", json!({"fail": fail_at == "wait", "ms": wait_ms})),
            ("record-branch", "selftest.note", p("record-branch")),
        ])
        .timeout_ms(wait_ms + 60_000);
    if seal {
        b = b.step("seal", "selftest.seal", p("seal"));
    }
    b.step("record-end", "selftest.note", p("record-end")).build()
}

pub(crate) fn register(r: Registry) -> Registry {
    r.with(Note).with(Wait).with(Seal)
}

fn fail_if_asked(req: &StepRequest) -> Result<(), StepError> {
    if req.params["fail"] == true {
        return Err(StepError::terminal(
            StepCode::OperationFailed,
            format!("step `{}` failed on purpose (fail_at)", req.step_id),
        ));
    }
    Ok(())
}

fn ledger(req: &StepRequest) -> Result<&Ledger, StepError> {
    req.extensions.require::<Ledger>()
}

/// Appends a note to the operation's own log; the event id is the idempotency key,
/// so a repeated attempt finds the note instead of writing another.
struct Note;

#[async_trait]
impl Step for Note {
    fn kind(&self) -> &str {
        "selftest.note"
    }

    async fn plan(&self, _ctx: &StepContext, req: &StepRequest) -> Result<StepPlan, StepError> {
        Ok(StepPlan {
            description: format!("record note `{}` in the operation log", req.step_id),
            safety: Safety::Reversible,
            risk: Risk::None,
            expected_duration_ms: 10,
            affected_resources: vec![format!("operations/{}/events", req.op_id)],
        })
    }

    async fn run(&self, _ctx: &StepContext, req: &StepRequest) -> Result<StepResult, StepError> {
        fail_if_asked(req)?;
        let e = ledger(req)?
            .append_event(&req.op_id, &req.idempotency_key, "selftest_note", json!({"step": req.step_id}))
            .await
            .map_err(ledger_error)?;
        Ok(StepResult::new(format!("noted at event {}", e.seq), json!({"seq": e.seq})))
    }

    async fn resume(&self, ctx: &StepContext, req: &StepRequest) -> Result<StepResult, StepError> {
        // Appending with the same event id returns the note if it already exists.
        self.run(ctx, req).await
    }

    async fn compensate(
        &self,
        _ctx: &StepContext,
        req: &StepRequest,
        _result: &StepResult,
    ) -> Result<StepResult, StepError> {
        let e = ledger(req)?
            .append_event(
                &req.op_id,
                &format!("{}:undo", req.idempotency_key),
                "selftest_note_undone",
                json!({"step": req.step_id}),
            )
            .await
            .map_err(ledger_error)?;
        Ok(StepResult::new(format!("note undone at event {}", e.seq), json!({"seq": e.seq})))
    }
}

/// Waits; read-only. Cancel interrupts it.
struct Wait;

#[async_trait]
impl Step for Wait {
    fn kind(&self) -> &str {
        "selftest.wait"
    }

    async fn plan(&self, _ctx: &StepContext, req: &StepRequest) -> Result<StepPlan, StepError> {
        let ms = req.params["ms"].as_u64().unwrap_or(0);
        Ok(StepPlan {
            description: format!("wait {ms}ms"),
            safety: Safety::ReadOnly,
            risk: Risk::None,
            expected_duration_ms: ms,
            affected_resources: vec![],
        })
    }

    async fn run(&self, ctx: &StepContext, req: &StepRequest) -> Result<StepResult, StepError> {
        fail_if_asked(req)?;
        let ms = req.params["ms"].as_u64().unwrap_or(0);
        ctx.progress(&format!("waiting {ms}ms"), json!({"ms": ms})).await;
        req.cancel.clone().sleep(Duration::from_millis(ms)).await?;
        Ok(StepResult::new(format!("waited {ms}ms"), json!({"ms": ms})))
    }

    async fn resume(&self, ctx: &StepContext, req: &StepRequest) -> Result<StepResult, StepError> {
        self.run(ctx, req).await
    }

    async fn compensate(
        &self,
        _ctx: &StepContext,
        _req: &StepRequest,
        _result: &StepResult,
    ) -> Result<StepResult, StepError> {
        Ok(StepResult::new("nothing to undo", json!({})))
    }
}

/// Writes an immutable blob naming the operation: it can never be taken back.
struct Seal;

#[async_trait]
impl Step for Seal {
    fn kind(&self) -> &str {
        "selftest.seal"
    }

    async fn plan(&self, _ctx: &StepContext, req: &StepRequest) -> Result<StepPlan, StepError> {
        Ok(StepPlan {
            description: "write an immutable seal blob for this operation".to_owned(),
            safety: Safety::Irreversible,
            risk: Risk::Low,
            expected_duration_ms: 10,
            affected_resources: vec![format!("blobs/sha256 (seal of {})", req.op_id)],
        })
    }

    async fn run(&self, _ctx: &StepContext, req: &StepRequest) -> Result<StepResult, StepError> {
        fail_if_asked(req)?;
        let digest =
            ledger(req)?.put_blob(format!("selftest seal {}\n", req.op_id).into_bytes()).await.map_err(ledger_error)?;
        Ok(StepResult::new(format!("sealed as blob {}", &digest[..12]), json!({"seal": format!("sha256:{digest}")})))
    }

    async fn resume(&self, ctx: &StepContext, req: &StepRequest) -> Result<StepResult, StepError> {
        // Content-addressed: writing the same seal again is a no-op.
        self.run(ctx, req).await
    }

    async fn compensate(
        &self,
        _ctx: &StepContext,
        _req: &StepRequest,
        _result: &StepResult,
    ) -> Result<StepResult, StepError> {
        Err(StepError::terminal(StepCode::Internal, "a seal is irreversible; the engine never compensates it"))
    }
}
