//! The `intent` saga: what `POST /v1/intents` records. Its one step stores the
//! compiled desired state (the IR, content-addressed under `specs/`) so the decision
//! and plan the caller was answered with are in the bucket for a deploy to realise.

use async_trait::async_trait;
use serde_json::json;
use skiff_saga::{Registry, SagaBuilder, SagaGraph};
use skiff_sagaapi::{Risk, Safety, Step, StepCode, StepContext, StepError, StepPlan, StepRequest, StepResult};
use skiff_state::Ledger;

use crate::ledger_error;

/// `intent` in the catalog: planned by skiffd from an intent, never from the CLI.
pub(crate) const KIND: crate::SagaKind = crate::SagaKind {
    name: "intent",
    description: "record the desired state an intent compiled to (`POST /v1/intents` on skiffd)",
    params: &[],
    build: |_| Err(crate::deploy::needs_command("intent", "curl -X POST $SKIFF_SERVER/v1/intents")),
};

/// The graph recording `ir` as `service`'s desired state.
pub fn intent_graph(ir: &skiff_ir::ServiceIr) -> Result<SagaGraph, skiff_saga::SagaError> {
    SagaBuilder::new("intent").step("record", "intent.record", json!({"service": ir.service, "ir": ir})).build()
}

/// Registers the intent step kinds.
pub(crate) fn register(r: Registry) -> Registry {
    r.with(Record)
}

struct Record;

#[async_trait]
impl Step for Record {
    fn kind(&self) -> &str {
        "intent.record"
    }

    async fn plan(&self, _: &StepContext, req: &StepRequest) -> Result<StepPlan, StepError> {
        let service = req.params["service"].as_str().unwrap_or("?");
        Ok(StepPlan {
            description: format!("record the desired state of {service} (compiled IR, content-addressed)"),
            // It writes, but only an immutable, content-addressed document nothing uses yet.
            safety: Safety::Reversible,
            risk: Risk::None,
            expected_duration_ms: 200,
            affected_resources: vec![format!("spec/{service}")],
        })
    }

    async fn run(&self, _: &StepContext, req: &StepRequest) -> Result<StepResult, StepError> {
        let ir: skiff_ir::ServiceIr = serde_json::from_value(req.params["ir"].clone())
            .map_err(|e| StepError::terminal(StepCode::SpecInvalid, format!("the intent's IR does not decode: {e}")))?;
        let ledger = req.extensions.require::<Ledger>()?;
        let digest = ledger.put_spec(&ir).await.map_err(ledger_error)?;
        Ok(StepResult::new(
            format!("desired state of {} recorded as spec {digest}", ir.service),
            json!({"spec_digest": digest}),
        ))
    }

    async fn resume(&self, ctx: &StepContext, req: &StepRequest) -> Result<StepResult, StepError> {
        // Content-addressed and create-only: writing it again is the same write.
        self.run(ctx, req).await
    }

    async fn compensate(&self, _: &StepContext, _: &StepRequest, _: &StepResult) -> Result<StepResult, StepError> {
        Ok(StepResult::new("nothing to undo: specs are immutable and unreferenced until deployed", json!({})))
    }
}
