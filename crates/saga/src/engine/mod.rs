//! The engine: plans and records operations ([`submit`]), then drives them under the
//! operation's lease ([`drive`]) — events before and after every step, the folded
//! state written with the lease's fencing token ([`cursor`]) — until they finish,
//! pause, or wait for approval; anyone may steer them ([`control`]). After a crash,
//! `run` again resumes: in-flight steps get `resume`, never a blind re-run.

mod control;
mod cursor;
mod drive;
mod submit;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use serde_json::Value;
use skiff_sagaapi::{
    CancelHandle, Cancellation, ErrorClass, Extensions, Progress, Safety, StepCode, StepContext, StepRequest,
    StepResult,
};
use skiff_state::docs::{Event, OpStatus, OperationIntent, OperationState, ServiceState};
use skiff_state::{LeaseGuard, Ledger, StateError, Update, keys};
use tokio::sync::Mutex;

use crate::doc::{Failure, PlannedStep, SagaDetail, SagaPlan, StepStatus};
use crate::error::SagaError;
use crate::fold::{Decision, SagaEvent, apply, compensation_order, decide};
use crate::graph::{SagaGraph, validate};
use crate::registry::{ApprovalPolicy, IrreversibleNeedsApproval, Registry};

/// Called with each event the engine appends (for live progress).
pub type Observer = Arc<dyn Fn(&Event, &SagaEvent) + Send + Sync>;
/// Called at named points (`before:step_started:ID`, `after:step_started:ID`,
/// `after:result:ID`, `after:cursor:ID`, `after:compensated:ID`): crash injection for tests.
pub type Hook = Arc<dyn Fn(&str) + Send + Sync>;

/// What to run.
#[derive(Clone, Debug)]
pub struct Submission {
    /// The saga graph.
    pub graph: SagaGraph,
    /// The service it acts on.
    pub service: Option<String>,
    /// Who asks.
    pub actor: String,
    /// Why.
    pub reason: String,
    /// Makes the submission idempotent; a fresh key when `None`.
    pub idempotency_key: Option<String>,
    /// Saga parameters, recorded in the intent.
    pub params: Value,
    /// The service this operation changes, claimed at submission so one operation
    /// changes a service at a time; released when the operation ends.
    pub scope: Option<ServiceScope>,
}

/// The claim a submission takes on a service (`services/<svc>/state.json` names the
/// operation working on it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceScope {
    /// The service.
    pub service: String,
    /// Recorded as the service's candidate release (a deploy's new release).
    pub candidate_release: Option<String>,
}

impl ServiceScope {
    /// A claim on `service`.
    pub fn service(service: impl Into<String>) -> Self {
        ServiceScope { service: service.into(), candidate_release: None }
    }
}

/// A recorded operation.
#[derive(Clone, Debug)]
pub struct Submitted {
    /// Its id.
    pub op_id: String,
    /// Its plan.
    pub plan: SagaPlan,
    /// `false` when the idempotency key named an existing operation.
    pub created: bool,
    /// The idempotency key used.
    pub idempotency_key: String,
}

/// Where an operation stands after [`Engine::run`].
#[derive(Clone, Debug)]
pub struct RunReport {
    /// The operation.
    pub op_id: String,
    /// Its status.
    pub status: OpStatus,
    /// Its progress.
    pub detail: SagaDetail,
    /// Its plan.
    pub plan: SagaPlan,
}

/// Runs sagas over a ledger.
#[derive(Clone)]
pub struct Engine {
    ledger: Ledger,
    registry: Arc<Registry>,
    extensions: Arc<Extensions>,
    policy: Arc<dyn ApprovalPolicy>,
    holder: String,
    lease_ttl_ms: u64,
    lease_wait_ms: u64,
    observer: Option<Observer>,
    hook: Option<Hook>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine").field("holder", &self.holder).field("registry", &self.registry).finish_non_exhaustive()
    }
}

struct Shared {
    op: String,
    plan: SagaPlan,
    service: Option<String>,
    guard: LeaseGuard,
    detail: Mutex<SagaDetail>,
    /// The state document as this engine last wrote it, and its version.
    last: Mutex<Option<(OperationState<SagaDetail>, skiff_objstore::Version)>>,
    /// A cursor write still in flight (see [`Engine::persist_behind`]).
    pending: Mutex<Option<tokio::task::JoinHandle<Result<(), SagaError>>>>,
    /// A cursor write is queued behind the pending one and has not read the fold yet.
    queued: AtomicBool,
    /// Crash-test points the next cursor write covers.
    queued_points: std::sync::Mutex<Vec<String>>,
    /// When the last cursor write started (clock milliseconds).
    checkpointed_at_ms: AtomicU64,
    lost: AtomicBool,
    cancel: Cancellation,
}

impl Engine {
    /// An engine over `ledger` running the steps of `registry`.
    pub fn new(ledger: Ledger, registry: Registry) -> Self {
        let holder = ledger.ids().id("engine");
        Engine {
            ledger,
            registry: Arc::new(registry),
            extensions: Arc::new(Extensions::default()),
            policy: Arc::new(IrreversibleNeedsApproval),
            holder,
            lease_ttl_ms: 30_000,
            lease_wait_ms: 0,
            observer: None,
            hook: None,
        }
    }

    /// Handles steps can look up (providers, stores).
    #[must_use]
    pub fn with_extensions(mut self, extensions: Extensions) -> Self {
        self.extensions = Arc::new(extensions);
        self
    }

    /// The approval policy (default: irreversible steps need approval).
    #[must_use]
    pub fn with_policy(mut self, policy: Arc<dyn ApprovalPolicy>) -> Self {
        self.policy = policy;
        self
    }

    /// The operation lease's time to live; it is renewed every third of it.
    #[must_use]
    pub fn with_lease_ttl_ms(mut self, ms: u64) -> Self {
        self.lease_ttl_ms = ms.max(30);
        self
    }

    /// How long `run` waits for another holder's lease to lapse (default: not at all).
    #[must_use]
    pub fn with_lease_wait_ms(mut self, ms: u64) -> Self {
        self.lease_wait_ms = ms;
        self
    }

    /// Sees every event appended.
    #[must_use]
    pub fn with_observer(mut self, observer: Observer) -> Self {
        self.observer = Some(observer);
        self
    }

    /// Crash-injection points for tests.
    #[must_use]
    pub fn with_hook(mut self, hook: Hook) -> Self {
        self.hook = Some(hook);
        self
    }

    /// This engine's lease holder id.
    pub fn holder(&self) -> &str {
        &self.holder
    }

    /// The ledger.
    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    fn hook(&self, point: &str) {
        if let Some(h) = &self.hook {
            h(point);
        }
    }

    fn scope(op: &str) -> String {
        format!("operations/{op}")
    }

    /// The ledger's clock, lent to steps.
    fn timer(&self) -> Arc<dyn skiff_sagaapi::Timer> {
        Arc::new(ClockTimer(self.ledger.clock().clone()))
    }

    fn clock(&self) -> &dyn skiff_clock::Clock {
        self.ledger.clock().as_ref()
    }
}

/// Folds a stored event if it is one of the engine's.
pub fn fold_stored(d: &mut SagaDetail, e: &Event) {
    match SagaEvent::from_parts(&e.event_type, &e.data) {
        Some(ev) => apply(d, e.seq, &ev),
        None => d.applied_seq = d.applied_seq.max(e.seq),
    }
}

/// The ledger's clock as the [`skiff_sagaapi::Timer`] steps wait on.
#[derive(Debug)]
struct ClockTimer(Arc<dyn skiff_clock::Clock>);

impl skiff_sagaapi::Timer for ClockTimer {
    fn now_ms(&self) -> u64 {
        self.0.now_ms()
    }

    fn sleep(&self, d: Duration) -> skiff_clock::Sleep {
        self.0.sleep(d)
    }
}

struct NoProgress;

#[async_trait]
impl Progress for NoProgress {
    async fn report(&self, _message: &str, _data: Value) {}
}

struct EngineProgress {
    engine: Engine,
    shared: Arc<Shared>,
    step: String,
}

#[async_trait]
impl Progress for EngineProgress {
    async fn report(&self, message: &str, data: Value) {
        let event = SagaEvent::StepProgress {
            token: self.shared.guard.token,
            step: self.step.clone(),
            message: message.to_owned(),
            data,
        };
        // Progress is best-effort: a failure to record it must not fail the step.
        let _ = self.engine.emit(&self.shared, event).await;
    }
}

impl RunReport {
    /// Why the operation did not succeed, if it did not.
    pub fn failure(&self) -> Option<&Failure> {
        self.detail.failure.as_ref()
    }

    /// Steps in a given status.
    pub fn steps_in(&self, status: StepStatus) -> Vec<String> {
        self.plan.steps.iter().filter(|s| self.detail.step(&s.id).status == status).map(|s| s.id.clone()).collect()
    }
}
