//! Conversions between the saga contract's types and the protocol's messages, used by
//! both ends: the host sends [`StepCall`]s and decodes [`Reply`]s, the plugin does the
//! opposite.

use std::collections::BTreeMap;

use serde::Serialize;
use serde::de::DeserializeOwned;
use skiff_sagaapi::{ErrorClass, StepCode, StepError, StepRequest, StepResult};

use crate::proto::{Failure, Reply, StepCall, reply::Answer};

/// The step calls of the protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    /// `Step::plan`.
    Plan,
    /// `Step::run`.
    Run,
    /// `Step::resume`.
    Resume,
    /// `Step::compensate`.
    Compensate,
    /// `Step::doctor`.
    Doctor,
}

impl Method {
    /// Its name, as failures say it.
    pub fn name(self) -> &'static str {
        match self {
            Method::Plan => "plan",
            Method::Run => "run",
            Method::Resume => "resume",
            Method::Compensate => "compensate",
            Method::Doctor => "doctor",
        }
    }
}

/// The call for `req`, with the engine's time and (for compensate) the result undone.
pub fn step_call(kind: &str, req: &StepRequest, now_ms: u64, result: Option<&StepResult>) -> StepCall {
    StepCall {
        kind: kind.to_owned(),
        op_id: req.op_id.clone(),
        step_id: req.step_id.clone(),
        attempt: req.attempt,
        idempotency_key: req.idempotency_key.clone(),
        params_json: req.params.to_string(),
        inputs_json: serde_json::to_string(&req.inputs).unwrap_or_else(|_| "{}".to_owned()),
        result_json: result.map(|r| serde_json::to_string(r).unwrap_or_default()).unwrap_or_default(),
        now_ms,
    }
}

/// The parameters and inputs of a call, or why they are not JSON.
pub fn call_payload(call: &StepCall) -> Result<(serde_json::Value, BTreeMap<String, serde_json::Value>), String> {
    let params = if call.params_json.is_empty() {
        serde_json::Value::Null
    } else {
        serde_json::from_str(&call.params_json).map_err(|e| format!("params_json is not JSON: {e}"))?
    };
    let inputs = if call.inputs_json.is_empty() {
        BTreeMap::new()
    } else {
        serde_json::from_str(&call.inputs_json).map_err(|e| format!("inputs_json is not a JSON object: {e}"))?
    };
    Ok((params, inputs))
}

/// A successful reply carrying `value` as JSON.
pub fn ok<T: Serialize>(value: &T) -> Reply {
    match serde_json::to_string(value) {
        Ok(json) => Reply { answer: Some(Answer::OkJson(json)) },
        Err(e) => failed(&StepError::terminal(StepCode::Internal, format!("the answer does not serialize: {e}"))),
    }
}

/// A failed reply.
pub fn failed(e: &StepError) -> Reply {
    let class = match e.class {
        ErrorClass::Retryable => "retryable",
        ErrorClass::Hold => "hold",
        _ => "terminal",
    };
    Reply {
        answer: Some(Answer::Error(Failure {
            class: class.to_owned(),
            code: e.code.as_str().to_owned(),
            message: e.message.clone(),
            facts: e.facts.clone(),
        })),
    }
}

/// What a reply says: the value, the step's own error, or (the outer `Err`) why the
/// reply is not an answer at all — garbage that is the plugin's fault.
pub fn decode<T: DeserializeOwned>(reply: Reply) -> Result<Result<T, StepError>, String> {
    match reply.answer {
        Some(Answer::OkJson(json)) => serde_json::from_str(&json)
            .map(Ok)
            .map_err(|e| format!("its answer does not match the contract: {e} (in {})", clip(&json))),
        Some(Answer::Error(f)) => {
            let class = match f.class.as_str() {
                "retryable" => ErrorClass::Retryable,
                "hold" => ErrorClass::Hold,
                "terminal" => ErrorClass::Terminal,
                other => return Err(format!("its error has an unknown class `{}`", clip(other))),
            };
            let code = StepCode::from_name(&f.code, StepCode::OperationFailed);
            Ok(Err(StepError { class, code, message: f.message, facts: f.facts }))
        }
        None => Err("its reply is empty".to_owned()),
    }
}

fn clip(s: &str) -> String {
    let mut out: String = s.chars().take(160).collect();
    if out.len() < s.len() {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use skiff_sagaapi::{Risk, Safety, StepPlan};

    #[test]
    fn answers_round_trip_and_garbage_is_named() {
        let plan = StepPlan {
            description: "append a line".to_owned(),
            safety: Safety::Reversible,
            risk: Risk::Low,
            expected_duration_ms: 10,
            affected_resources: vec!["CHANGELOG".to_owned()],
        };
        assert_eq!(decode::<StepPlan>(ok(&plan)).unwrap().unwrap(), plan);
        let e = StepError::retryable(StepCode::ProviderError, "busy").fact("try later");
        assert_eq!(decode::<StepPlan>(failed(&e)).unwrap().unwrap_err(), e);
        let garbage = Reply { answer: Some(Answer::OkJson("{\"nope\": 1}".to_owned())) };
        assert!(decode::<StepPlan>(garbage).unwrap_err().contains("does not match the contract"));
        assert!(decode::<StepPlan>(Reply { answer: None }).unwrap_err().contains("empty"));
    }
}
