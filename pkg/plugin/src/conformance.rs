//! The suite every step kind passes, whether in-process or served by a plugin (through
//! Skiff's host, `skiff_plugins::PluginStep`): what the engine relies on when it plans,
//! retries, resumes after a crash and compensates.
//!
//! ```no_run
//! # async fn f(step: &dyn skiff_sagaapi::Step) {
//! let problems = skiff_plugin::conformance::step(step, serde_json::json!({"service": "web"})).await;
//! assert!(problems.is_empty(), "{problems:#?}");
//! # }
//! ```
//!
//! It runs the step for real (once, then compensates it), so point it at a scratch
//! target.

use std::sync::Arc;

use serde_json::Value;
use skiff_sagaapi::{Cancellation, ErrorClass, Extensions, Step, StepContext, StepRequest};

use crate::serve::{HostTime, Quiet};

fn request(kind: &str, key: &str, params: Value, timer: &Arc<dyn skiff_sagaapi::Timer>) -> StepRequest {
    StepRequest {
        op_id: format!("op-conformance-{key}"),
        step_id: format!("conformance-{}", kind.replace('.', "-")),
        attempt: 1,
        idempotency_key: format!("conformance:{kind}:{key}"),
        params,
        inputs: Default::default(),
        extensions: Arc::new(Extensions::default()),
        cancel: Cancellation::never(timer.clone()),
    }
}

/// Checks `step` with `params` (parameters it accepts); every problem found, empty
/// when it conforms:
///
/// - its kind is `PLUGIN.NAME`;
/// - `plan` answers the same twice (it only describes);
/// - `run` succeeds, and `resume` with the same idempotency key answers the same
///   outputs (it found the earlier effect rather than redoing it);
/// - `compensate` succeeds, and again (idempotent);
/// - parameters it cannot read fail with a terminal error, not a retry or a panic.
pub async fn step(step: &dyn Step, params: Value) -> Vec<String> {
    let mut problems = Vec::new();
    let kind = step.kind().to_owned();
    if !kind.split_once('.').is_some_and(|(p, n)| !p.is_empty() && !n.is_empty()) {
        problems.push(format!("kind `{kind}` is not `PLUGIN.NAME`"));
    }
    let timer: Arc<dyn skiff_sagaapi::Timer> = Arc::new(HostTime::now());
    let ctx = StepContext::new(Arc::new(Quiet), timer.clone());
    let key = format!("{}", timer.now_ms());
    let req = request(&kind, &key, params, &timer);
    match (step.plan(&ctx, &req).await, step.plan(&ctx, &req).await) {
        (Ok(a), Ok(b)) if a != b => problems.push(format!("plan answered differently twice: {a:?} then {b:?}")),
        (Err(e), _) | (_, Err(e)) => problems.push(format!("plan failed: {e}")),
        _ => {}
    }
    let ran = match step.run(&ctx, &req).await {
        Ok(r) => r,
        Err(e) => {
            problems.push(format!("run failed: {e}"));
            return problems;
        }
    };
    match step.resume(&ctx, &req).await {
        Ok(r) if r.outputs != ran.outputs => problems.push(format!(
            "resume after run answered other outputs ({} then {}): it must find the earlier effect by the idempotency key",
            ran.outputs, r.outputs
        )),
        Err(e) => problems.push(format!("resume after run failed: {e}")),
        Ok(_) => {}
    }
    for n in ["first", "second"] {
        if let Err(e) = step.compensate(&ctx, &req, &ran).await {
            problems.push(format!("the {n} compensate failed: {e}"));
        }
    }
    let bad = request(&kind, &format!("{key}-bad"), Value::String("not parameters".to_owned()), &timer);
    match step.run(&ctx, &bad).await {
        Ok(r) => problems.push(format!("run accepted parameters it cannot read: {}", r.summary)),
        Err(e) if e.class != ErrorClass::Terminal => {
            problems.push(format!("unreadable parameters failed as {:?}, not terminal: {e}", e.class));
        }
        Err(_) => {}
    }
    let _ = step.doctor(&ctx, &req).await;
    problems
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use async_trait::async_trait;
    use skiff_sagaapi::{Risk, Safety, StepCode, StepError, StepPlan, StepResult};

    use super::*;

    /// Counts its runs and forgets them: `resume` does the work again.
    struct Forgetful(AtomicU32);

    #[async_trait]
    impl Step for Forgetful {
        fn kind(&self) -> &str {
            "counter"
        }
        async fn plan(&self, _: &StepContext, _: &StepRequest) -> Result<StepPlan, StepError> {
            Ok(StepPlan {
                description: "count".to_owned(),
                safety: Safety::Reversible,
                risk: Risk::Low,
                expected_duration_ms: 1,
                affected_resources: Vec::new(),
            })
        }
        async fn run(&self, _: &StepContext, req: &StepRequest) -> Result<StepResult, StepError> {
            if !req.params.is_object() {
                return Err(StepError::retryable(StepCode::Internal, "try again"));
            }
            Ok(StepResult::new("counted", self.0.fetch_add(1, Ordering::SeqCst) + 1))
        }
        async fn resume(&self, ctx: &StepContext, req: &StepRequest) -> Result<StepResult, StepError> {
            self.run(ctx, req).await
        }
        async fn compensate(&self, _: &StepContext, _: &StepRequest, _: &StepResult) -> Result<StepResult, StepError> {
            Ok(StepResult::new("nothing", ()))
        }
    }

    #[tokio::test]
    async fn the_suite_names_what_a_step_gets_wrong() {
        let problems = step(&Forgetful(AtomicU32::new(0)), serde_json::json!({})).await;
        assert_eq!(problems.len(), 3, "{problems:#?}");
        assert!(problems[0].contains("not `PLUGIN.NAME`"));
        assert!(problems[1].contains("resume after run answered other outputs"));
        assert!(problems[2].contains("not terminal"));
    }
}
