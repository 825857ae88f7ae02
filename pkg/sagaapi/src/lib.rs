//! The contract between Skiff's saga engine and the steps it runs, for operators and
//! plugin authors: implement [`Step`] (plan, run, resume, compensate, doctor) and the
//! engine makes it durable, resumable, approvable and compensable. This crate depends
//! on nothing of Skiff's, so a plugin builds against it alone.
#![warn(missing_docs)]

use std::any::{Any, TypeId};
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use async_trait::async_trait;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The failure codes a step or the engine records: the names of Skiff's failure
/// taxonomy (`skiff_sdk::Code`) a step can end with, stored as those names. Front
/// ends map them to exit codes with a `match`; nothing parses spelled-out strings.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[non_exhaustive]
pub enum StepCode {
    /// The release failed its canary analysis or readiness.
    CanaryFailed,
    /// Too little evidence to judge (a hold, not a failure).
    AnalysisInconclusive,
    /// A step missed its deadline.
    DeadlineExceeded,
    /// The step failed for a reason of its own.
    OperationFailed,
    /// The operation was cancelled while the step ran.
    Cancelled,
    /// An approver rejected the operation at its gate.
    ApprovalRequired,
    /// Something the step needs does not exist.
    NotFound,
    /// The cloud or local provider refused or failed.
    ProviderError,
    /// A release signature does not verify.
    SignatureInvalid,
    /// An artifact does not match its digest.
    DigestMismatch,
    /// The state bucket could not be reached or written.
    StateUnavailable,
    /// The state bucket holds a document that fails verification.
    StateCorrupt,
    /// Another writer won; retries ran out.
    Conflict,
    /// Another operation holds a lease the step needs.
    LeaseHeld,
    /// The step's parameters are invalid.
    SpecInvalid,
    /// A bug or a misconfigured engine (a missing handle, outputs of the wrong shape).
    Internal,
    /// A guardrail denied what the step would do (a Terraform plan, say).
    PolicyDenied,
    /// A plugin serving the step crashed, answered garbage or failed its handshake.
    PluginFailed,
    /// A code this build does not know (read from an older or newer ledger).
    #[serde(other)]
    Unknown,
}

impl StepCode {
    /// Its taxonomy name, e.g. `CANARY_FAILED`.
    pub fn as_str(self) -> &'static str {
        match self {
            StepCode::CanaryFailed => "CANARY_FAILED",
            StepCode::AnalysisInconclusive => "ANALYSIS_INCONCLUSIVE",
            StepCode::DeadlineExceeded => "DEADLINE_EXCEEDED",
            StepCode::OperationFailed => "OPERATION_FAILED",
            StepCode::Cancelled => "CANCELLED",
            StepCode::ApprovalRequired => "APPROVAL_REQUIRED",
            StepCode::NotFound => "NOT_FOUND",
            StepCode::ProviderError => "PROVIDER_ERROR",
            StepCode::SignatureInvalid => "SIGNATURE_INVALID",
            StepCode::DigestMismatch => "DIGEST_MISMATCH",
            StepCode::StateUnavailable => "STATE_UNAVAILABLE",
            StepCode::StateCorrupt => "STATE_CORRUPT",
            StepCode::Conflict => "CONFLICT",
            StepCode::LeaseHeld => "LEASE_HELD",
            StepCode::SpecInvalid => "SPEC_INVALID",
            StepCode::Internal => "INTERNAL",
            StepCode::PolicyDenied => "POLICY_DENIED",
            StepCode::PluginFailed => "PLUGIN_FAILED",
            StepCode::Unknown => "UNKNOWN",
        }
    }

    /// The code a name from outside the engine stands for (a runner's refusal, a
    /// provider's error code): unknown names are `fallback`.
    pub fn from_name(name: &str, fallback: StepCode) -> StepCode {
        match serde_json::from_value(Value::String(name.to_owned())) {
            Ok(StepCode::Unknown) | Err(_) => fallback,
            Ok(c) => c,
        }
    }
}

impl fmt::Display for StepCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How reversible a step is. Compensation undoes `reversible` steps, skips
/// `read_only` ones, and never crosses an `irreversible` one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Safety {
    /// Changes nothing.
    ReadOnly,
    /// Its effect can be undone by `compensate`.
    Reversible,
    /// Its effect cannot be undone; needs an approval gate unless policy allows.
    Irreversible,
}

impl Safety {
    /// The name as stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            Safety::ReadOnly => "read_only",
            Safety::Reversible => "reversible",
            Safety::Irreversible => "irreversible",
        }
    }
}

/// How risky a step is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Risk {
    /// Nothing changes.
    None,
    /// Routine and easily undone.
    Low,
    /// Visible to users if wrong.
    Medium,
    /// Data or availability at stake.
    High,
}

impl Risk {
    /// The name as stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            Risk::None => "none",
            Risk::Low => "low",
            Risk::Medium => "medium",
            Risk::High => "high",
        }
    }
}

/// What a step will do, shown before anything mutates.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepPlan {
    /// One line for people.
    pub description: String,
    /// How reversible it is.
    pub safety: Safety,
    /// How risky it is.
    pub risk: Risk,
    /// How long it should take, in milliseconds.
    pub expected_duration_ms: u64,
    /// Resources it touches (provider ids or logical ids).
    pub affected_resources: Vec<String>,
}

/// What a step produced. `outputs` become inputs of later steps and are kept in the
/// ledger: never put secret values in them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepResult {
    /// One line for people.
    pub summary: String,
    /// Machine-readable outputs.
    pub outputs: Value,
}

impl StepResult {
    /// A result with a summary and serialized outputs.
    ///
    /// # Panics
    /// If `outputs` does not serialize to JSON (a bug in the step).
    pub fn new(summary: impl Into<String>, outputs: impl Serialize) -> Self {
        StepResult {
            summary: summary.into(),
            outputs: serde_json::to_value(outputs).expect("step outputs serialize to JSON"),
        }
    }

    /// The outputs as a typed value.
    pub fn outputs_as<T: DeserializeOwned>(&self) -> Result<T, StepError> {
        serde_json::from_value(self.outputs.clone()).map_err(|e| {
            StepError::terminal(StepCode::Internal, format!("outputs do not match the expected type: {e}"))
        })
    }
}

/// Whether an error is worth retrying.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ErrorClass {
    /// Temporary: the engine retries within the step's retry policy.
    Retryable,
    /// Final: the operation fails (and compensates).
    Terminal,
    /// Undecided (too little evidence, say): the operation pauses before this step,
    /// nothing is compensated, and resuming runs the step again.
    Hold,
}

/// A step's failure: a class, a code from Skiff's failure taxonomy (such as
/// `PROVIDER_ERROR` or `CANARY_FAILED`), a message, and facts behind it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{code}: {message}")]
pub struct StepError {
    /// Retryable or terminal.
    pub class: ErrorClass,
    /// Its taxonomy code.
    pub code: StepCode,
    /// What went wrong, for people.
    pub message: String,
    /// Observations behind it (shown as facts).
    pub facts: Vec<String>,
}

impl StepError {
    /// A temporary failure.
    pub fn retryable(code: StepCode, message: impl Into<String>) -> Self {
        StepError { class: ErrorClass::Retryable, code, message: message.into(), facts: Vec::new() }
    }

    /// A final failure.
    pub fn terminal(code: StepCode, message: impl Into<String>) -> Self {
        StepError { class: ErrorClass::Terminal, code, message: message.into(), facts: Vec::new() }
    }

    /// Adds a fact.
    #[must_use]
    pub fn fact(mut self, fact: impl Into<String>) -> Self {
        self.facts.push(fact.into());
        self
    }

    /// An undecided outcome: pause the operation here (see [`ErrorClass::Hold`]).
    pub fn hold(code: StepCode, message: impl Into<String>) -> Self {
        StepError { class: ErrorClass::Hold, code, message: message.into(), facts: Vec::new() }
    }

    /// Whether the engine should retry.
    pub fn is_retryable(&self) -> bool {
        self.class == ErrorClass::Retryable
    }
}

/// A diagnosis from [`Step::doctor`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Finding {
    /// A taxonomy code name.
    pub code: String,
    /// What is wrong.
    pub message: String,
    /// Observations behind it.
    pub facts: Vec<String>,
    /// A command that fixes it, if there is one.
    pub fix: Option<String>,
}

/// The engine's time, lent to steps: read it and wait on it. The engine's owner
/// decides which clock it is (the system's, or a manual one in tests and
/// simulations), so a step never sleeps on a timer of its own.
pub trait Timer: Send + Sync + fmt::Debug {
    /// Milliseconds since the epoch.
    fn now_ms(&self) -> u64;
    /// Completes once `d` has passed.
    fn sleep(&self, d: Duration) -> Pin<Box<dyn Future<Output = ()> + Send + 'static>>;
}

/// A cooperative cancellation signal: long steps check it and stop early. It waits
/// on the engine's [`Timer`].
#[derive(Clone, Debug)]
pub struct Cancellation {
    signal: tokio::sync::watch::Receiver<bool>,
    timer: Arc<dyn Timer>,
}

/// The sending side of a [`Cancellation`].
#[derive(Debug)]
pub struct CancelHandle(tokio::sync::watch::Sender<bool>);

impl Cancellation {
    /// A linked handle and signal whose sleeps wait on `timer`.
    pub fn new(timer: Arc<dyn Timer>) -> (CancelHandle, Cancellation) {
        let (tx, rx) = tokio::sync::watch::channel(false);
        (CancelHandle(tx), Cancellation { signal: rx, timer })
    }

    /// A signal that never fires.
    pub fn never(timer: Arc<dyn Timer>) -> Cancellation {
        let (tx, rx) = tokio::sync::watch::channel(false);
        std::mem::forget(tx);
        Cancellation { signal: rx, timer }
    }

    /// Whether cancellation was requested.
    pub fn is_cancelled(&self) -> bool {
        *self.signal.borrow()
    }

    /// Completes when cancellation is requested.
    pub async fn cancelled(&mut self) {
        while !*self.signal.borrow_and_update() {
            if self.signal.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }

    /// Sleeps for `d` on the engine's timer, or returns `Err` early when cancelled.
    pub async fn sleep(&mut self, d: Duration) -> Result<(), StepError> {
        let mut sleep = self.timer.sleep(d);
        let timer_done = std::future::poll_fn(|cx| sleep.as_mut().poll(cx));
        let mut timer_done = std::pin::pin!(timer_done);
        let cancelled = self.cancelled();
        let mut cancelled = std::pin::pin!(cancelled);
        std::future::poll_fn(|cx| {
            if cancelled.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Err(StepError::terminal(StepCode::Cancelled, "the operation was cancelled")));
            }
            timer_done.as_mut().poll(cx).map(Ok)
        })
        .await
    }
}

impl CancelHandle {
    /// Requests cancellation.
    pub fn cancel(&self) {
        let _ = self.0.send(true);
    }
}

/// Typed handles the engine's owner provides to steps (providers, stores, clients),
/// looked up by type.
#[derive(Clone, Default)]
pub struct Extensions(HashMap<TypeId, Arc<dyn Any + Send + Sync>>);

impl fmt::Debug for Extensions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Extensions({} handles)", self.0.len())
    }
}

impl Extensions {
    /// Adds a handle, replacing one of the same type.
    pub fn insert<T: Send + Sync + 'static>(&mut self, value: T) {
        self.0.insert(TypeId::of::<T>(), Arc::new(value));
    }

    /// The handle of type `T`, if provided.
    pub fn get<T: Send + Sync + 'static>(&self) -> Option<&T> {
        self.0.get(&TypeId::of::<T>()).and_then(|v| v.downcast_ref())
    }

    /// The handle of type `T`, or a terminal error naming what is missing.
    pub fn require<T: Send + Sync + 'static>(&self) -> Result<&T, StepError> {
        self.get::<T>().ok_or_else(|| {
            StepError::terminal(
                StepCode::Internal,
                format!("the engine was not given a `{}` handle", std::any::type_name::<T>()),
            )
        })
    }
}

/// Everything a step call needs to know.
#[derive(Clone, Debug)]
pub struct StepRequest {
    /// The operation.
    pub op_id: String,
    /// This step's id in the saga.
    pub step_id: String,
    /// 1 for the first try, then 2, 3, ...
    pub attempt: u32,
    /// Stable across attempts and resumes: use it to make effects happen once.
    pub idempotency_key: String,
    /// The step's own parameters from the plan.
    pub params: Value,
    /// Outputs of earlier steps, by step id.
    pub inputs: BTreeMap<String, Value>,
    /// Provider handles and other services.
    pub extensions: Arc<Extensions>,
    /// Fires when the operation is cancelled or the engine loses its lease.
    pub cancel: Cancellation,
}

impl StepRequest {
    /// The parameters as a typed value.
    pub fn params_as<T: DeserializeOwned>(&self) -> Result<T, StepError> {
        serde_json::from_value(self.params.clone()).map_err(|e| {
            StepError::terminal(
                StepCode::SpecInvalid,
                format!("parameters of step `{}` are invalid: {e}", self.step_id),
            )
        })
    }

    /// The outputs of step `step_id` as a typed value.
    pub fn input<T: DeserializeOwned>(&self, step_id: &str) -> Result<T, StepError> {
        let v = self.inputs.get(step_id).ok_or_else(|| {
            StepError::terminal(StepCode::Internal, format!("no outputs from step `{step_id}` (is it a dependency?)"))
        })?;
        serde_json::from_value(v.clone()).map_err(|e| {
            StepError::terminal(StepCode::Internal, format!("outputs of step `{step_id}` do not match: {e}"))
        })
    }
}

/// Where a step reports progress while it runs; the engine records each report as
/// an event (`step_progress`) and shows it live.
#[async_trait]
pub trait Progress: Send + Sync {
    /// Reports a line and structured data.
    async fn report(&self, message: &str, data: Value);
}

/// What the engine lends a step during a call.
#[derive(Clone)]
pub struct StepContext {
    progress: Arc<dyn Progress>,
    timer: Arc<dyn Timer>,
}

impl fmt::Debug for StepContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("StepContext")
    }
}

impl StepContext {
    /// A context reporting to `progress` and reading time from `timer`.
    pub fn new(progress: Arc<dyn Progress>, timer: Arc<dyn Timer>) -> Self {
        StepContext { progress, timer }
    }

    /// Reports progress.
    pub async fn progress(&self, message: &str, data: Value) {
        self.progress.report(message, data).await;
    }

    /// The engine's clock, in milliseconds since the epoch.
    pub fn now_ms(&self) -> u64 {
        self.timer.now_ms()
    }

    /// The engine's timer.
    pub fn timer(&self) -> &Arc<dyn Timer> {
        &self.timer
    }
}

/// One kind of step. The engine guarantees: `run` is called for a fresh attempt;
/// `resume` whenever an earlier attempt may have had an effect (after a crash or an
/// error) and must find out, by `idempotency_key`, whether it did; `compensate`
/// undoes a completed reversible step; all of them may be called again after a crash
/// and must be idempotent.
///
/// The engine checks its lease immediately before each call, but a process can still
/// stall between that check and the effect while another engine takes over. Where the
/// provider allows it, pass the idempotency key along (a client token, a tag, a
/// create-only name) so such a late duplicate is a no-op.
#[async_trait]
pub trait Step: Send + Sync {
    /// The kind name, e.g. `shift-traffic`.
    fn kind(&self) -> &str;

    /// Describes what the step will do, without doing it.
    async fn plan(&self, ctx: &StepContext, req: &StepRequest) -> Result<StepPlan, StepError>;

    /// Does it.
    async fn run(&self, ctx: &StepContext, req: &StepRequest) -> Result<StepResult, StepError>;

    /// Finishes an attempt that may have had an effect: discover it by idempotency
    /// key and return its result, or do the work if it never happened.
    async fn resume(&self, ctx: &StepContext, req: &StepRequest) -> Result<StepResult, StepError>;

    /// Undoes a completed step, given what it returned.
    async fn compensate(
        &self,
        ctx: &StepContext,
        req: &StepRequest,
        result: &StepResult,
    ) -> Result<StepResult, StepError>;

    /// Diagnoses a stuck or failed step.
    async fn doctor(&self, _ctx: &StepContext, _req: &StepRequest) -> Vec<Finding> {
        Vec::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq)]
    struct Handle(u8);

    #[test]
    fn extensions_are_typed() {
        let mut ext = Extensions::default();
        ext.insert(Handle(7));
        assert_eq!(ext.get::<Handle>(), Some(&Handle(7)));
        assert!(ext.get::<String>().is_none());
        assert_eq!(ext.require::<String>().unwrap_err().code, StepCode::Internal);
    }

    /// A timer whose sleeps end at once.
    #[derive(Debug)]
    struct Instant;

    impl Timer for Instant {
        fn now_ms(&self) -> u64 {
            0
        }
        fn sleep(&self, _: Duration) -> Pin<Box<dyn Future<Output = ()> + Send + 'static>> {
            Box::pin(std::future::ready(()))
        }
    }

    /// A timer whose sleeps never end.
    #[derive(Debug)]
    struct Frozen;

    impl Timer for Frozen {
        fn now_ms(&self) -> u64 {
            0
        }
        fn sleep(&self, _: Duration) -> Pin<Box<dyn Future<Output = ()> + Send + 'static>> {
            Box::pin(std::future::pending())
        }
    }

    #[tokio::test]
    async fn cancellation_interrupts_sleep() {
        let (handle, mut cancel) = Cancellation::new(Arc::new(Frozen));
        handle.cancel();
        assert!(cancel.is_cancelled());
        let e = cancel.sleep(Duration::from_secs(60)).await.unwrap_err();
        assert_eq!(e.code, StepCode::Cancelled);
        let mut never = Cancellation::never(Arc::new(Instant));
        assert!(never.sleep(Duration::from_millis(1)).await.is_ok());
    }
}
