//! The engine: plans and records operations, then drives them under the operation's
//! lease — events before and after every step, the folded state written with the
//! lease's fencing token — until they finish, pause, or wait for approval. After a
//! crash, `run` again resumes: in-flight steps get `resume`, never a blind re-run.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use serde_json::Value;
use skiff_sagaapi::{
    CancelHandle, Cancellation, ErrorClass, Extensions, Progress, Safety, StepContext, StepRequest, StepResult,
};
use skiff_state::docs::{Event, OpStatus, OperationIntent, OperationState};
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
    /// Crash-test points the queued write covers.
    queued_points: std::sync::Mutex<Vec<String>>,
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

    /// The operation id an idempotency key gives for a saga kind.
    pub fn op_id_for(saga: &str, key: &str) -> String {
        let digest = skiff_ir::canonical::sha256_hex(format!("{saga}\n{key}").as_bytes());
        format!("op-{}", &digest[..20])
    }

    /// Plans a graph without recording anything: each step describes itself.
    pub async fn plan(&self, graph: &SagaGraph, service: Option<&str>, op_id: &str) -> Result<SagaPlan, SagaError> {
        validate(graph)?;
        let ctx = StepContext::new(Arc::new(NoProgress), self.now_fn());
        let mut steps = Vec::new();
        for def in &graph.steps {
            let step = self
                .registry
                .get(&def.kind)
                .ok_or_else(|| SagaError::UnknownStepKind { step: def.id.clone(), kind: def.kind.clone() })?;
            let req = StepRequest {
                op_id: op_id.to_owned(),
                step_id: def.id.clone(),
                attempt: 0,
                idempotency_key: format!("{op_id}:{}", def.id),
                params: def.params.clone(),
                inputs: BTreeMap::new(),
                extensions: self.extensions.clone(),
                cancel: Cancellation::never(),
            };
            let p = step.plan(&ctx, &req).await.map_err(|e| SagaError::PlanFailed {
                step: def.id.clone(),
                code: e.code.clone(),
                message: e.message.clone(),
            })?;
            let mut planned = PlannedStep {
                id: def.id.clone(),
                kind: def.kind.clone(),
                params: def.params.clone(),
                depends_on: def.depends_on.clone(),
                timeout_ms: def.timeout_ms,
                retry: def.retry,
                needs_approval: def.approval,
                description: p.description,
                safety: p.safety,
                risk: p.risk,
                expected_duration_ms: p.expected_duration_ms,
                affected_resources: p.affected_resources,
            };
            planned.needs_approval |= self.policy.needs_approval(&graph.saga, &planned);
            steps.push(planned);
        }
        Ok(SagaPlan { op_id: op_id.to_owned(), saga: graph.saga.clone(), service: service.map(str::to_owned), steps })
    }

    fn now_fn(&self) -> Arc<dyn Fn() -> u64 + Send + Sync> {
        let clock = self.ledger.clock().clone();
        Arc::new(move || clock.now_ms())
    }

    /// Records an operation: intent, plan, a `operation_planned` event and its state.
    /// Submitting the same idempotency key again returns the existing operation.
    pub async fn submit(&self, s: Submission) -> Result<Submitted, SagaError> {
        let key = s.idempotency_key.clone().unwrap_or_else(|| self.ledger.ids().id("key"));
        let op = Self::op_id_for(&s.graph.saga, &key);
        if let Some(existing) = self.ledger.read::<OperationIntent>(&keys::op_intent(&op)).await? {
            return self.existing(&s, &op, &key, &existing).await;
        }
        let plan = self.plan(&s.graph, s.service.as_deref(), &op).await?;
        let intent = OperationIntent {
            op_id: op.clone(),
            saga: s.graph.saga.clone(),
            service: s.service.clone(),
            actor: s.actor.clone(),
            reason: s.reason.clone(),
            idempotency_key: key.clone(),
            params: s.params.clone(),
            created_at_ms: self.ledger.clock().now_ms(),
        };
        match self.ledger.create(&keys::op_intent(&op), &intent).await {
            Ok(_) => {}
            Err(StateError::AlreadyExists { .. }) => {
                let existing = self
                    .ledger
                    .read::<OperationIntent>(&keys::op_intent(&op))
                    .await?
                    .ok_or(SagaError::NotFound { op: op.clone() })?;
                return self.existing(&s, &op, &key, &existing).await;
            }
            Err(e) => return Err(e.into()),
        }
        self.ledger.create(&keys::op_plan(&op), &plan).await?;
        self.finish_submission(&op, &plan).await?;
        Ok(Submitted { op_id: op, plan, created: true, idempotency_key: key })
    }

    /// Writes what follows the plan (the planned event, the state document), each only
    /// if missing, so a submission cut short by a crash is completed by its retry.
    async fn finish_submission(&self, op: &str, plan: &SagaPlan) -> Result<(), SagaError> {
        // One read: the log is gap-free, so it has events exactly when it has seq 1.
        if self.ledger.read::<Event>(&keys::op_event(op, 1)).await?.is_none() {
            let (t, data) = SagaEvent::OperationPlanned { steps: plan.steps.len() }.to_parts();
            self.ledger.append_event(op, &format!("{op}:planned"), &t, data).await?;
        }
        let detail = SagaDetail::new(plan);
        let (saga, service) = (plan.saga.clone(), plan.service.clone());
        self.ledger
            .update::<OperationState<SagaDetail>, _>(&keys::op_state(op), |cur| {
                Ok(match cur {
                    Some(_) => Update::Keep,
                    None => Update::Write(OperationState {
                        cas: Default::default(),
                        op_id: op.to_owned(),
                        saga: saga.clone(),
                        service: service.clone(),
                        status: OpStatus::Planned,
                        fence: 0,
                        updated_at_ms: self.ledger.clock().now_ms(),
                        detail: detail.clone(),
                    }),
                })
            })
            .await?;
        Ok(())
    }

    async fn existing(
        &self,
        s: &Submission,
        op: &str,
        key: &str,
        intent: &OperationIntent,
    ) -> Result<Submitted, SagaError> {
        if intent.saga != s.graph.saga || intent.params != s.params || intent.service != s.service {
            return Err(SagaError::IdempotencyConflict { key: key.to_owned(), op: op.to_owned() });
        }
        let plan = match self.ledger.read::<SagaPlan>(&keys::op_plan(op)).await? {
            Some(p) => p,
            None => {
                // The first submission stopped after its intent: finish it now.
                let plan = self.plan(&s.graph, s.service.as_deref(), op).await?;
                match self.ledger.create(&keys::op_plan(op), &plan).await {
                    Ok(_) => plan,
                    Err(StateError::AlreadyExists { .. }) => self.load_plan(op).await?,
                    Err(e) => return Err(e.into()),
                }
            }
        };
        self.finish_submission(op, &plan).await?;
        Ok(Submitted { op_id: op.to_owned(), plan, created: false, idempotency_key: key.to_owned() })
    }

    /// The recorded plan of an operation.
    pub async fn load_plan(&self, op: &str) -> Result<SagaPlan, SagaError> {
        self.ledger.read::<SagaPlan>(&keys::op_plan(op)).await?.ok_or_else(|| SagaError::NotFound { op: op.to_owned() })
    }

    /// The operation's progress: the stored fold plus any events written after it.
    pub async fn load(&self, op: &str) -> Result<(SagaPlan, SagaDetail), SagaError> {
        let plan = self.load_plan(op).await?;
        let state = self.ledger.read::<OperationState<SagaDetail>>(&keys::op_state(op)).await?;
        let mut detail = state.map_or_else(|| SagaDetail::new(&plan), |s| s.detail);
        for e in self.ledger.events_from(op, detail.applied_seq + 1).await? {
            fold_stored(&mut detail, &e);
        }
        Ok((plan, detail))
    }

    async fn acquire(&self, op: &str) -> Result<LeaseGuard, SagaError> {
        let start = self.ledger.clock().now_ms();
        loop {
            match self.ledger.acquire_lease(&Self::scope(op), &self.holder, self.lease_ttl_ms).await {
                Ok(g) => return Ok(g),
                Err(StateError::LeaseHeld { .. })
                    if self.ledger.clock().now_ms().saturating_sub(start) < self.lease_wait_ms =>
                {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Drives the operation until it finishes, pauses or waits for approval.
    pub async fn run(&self, op: &str) -> Result<RunReport, SagaError> {
        let (plan, detail) = self.load(op).await?;
        if detail.status.is_terminal() {
            return Ok(RunReport { op_id: op.to_owned(), status: detail.status, detail, plan });
        }
        let guard = self.acquire(op).await?;
        // Another engine may have finished it between the read and the lease: read
        // again under the lease so a finished operation never starts twice.
        let (plan, detail) = match self.load(op).await {
            Ok(v) => v,
            Err(e) => {
                let _ = self.ledger.release_lease(&guard).await;
                return Err(e);
            }
        };
        if detail.status.is_terminal() {
            let _ = self.ledger.release_lease(&guard).await;
            return Ok(RunReport { op_id: op.to_owned(), status: detail.status, detail, plan });
        }
        let (cancel_handle, cancel) = Cancellation::new();
        let shared = Arc::new(Shared {
            op: op.to_owned(),
            service: plan.service.clone(),
            plan,
            guard: guard.clone(),
            detail: Mutex::new(detail),
            last: Mutex::new(None),
            pending: Mutex::new(None),
            queued: AtomicBool::new(false),
            queued_points: std::sync::Mutex::new(Vec::new()),
            lost: AtomicBool::new(false),
            cancel,
        });
        let watcher = tokio::spawn(self.clone().watch(shared.clone(), cancel_handle));
        let result = self.drive(&shared).await;
        watcher.abort();
        if !shared.lost.load(Ordering::SeqCst) {
            let _ = self.ledger.release_lease(&guard).await;
        }
        let detail = shared.detail.lock().await.clone();
        result.map(|()| RunReport { op_id: op.to_owned(), status: detail.status, detail, plan: shared.plan.clone() })
    }

    /// Renews the lease every third of its life, and fires the step cancellation when
    /// the lease is lost or someone asks to cancel.
    async fn watch(self, shared: Arc<Shared>, cancel: CancelHandle) {
        let mut guard = shared.guard.clone();
        let period = Duration::from_millis((self.lease_ttl_ms / 3).max(10));
        let mut seen = shared.detail.lock().await.applied_seq;
        loop {
            tokio::time::sleep(period).await;
            match self.ledger.renew_lease(&guard, self.lease_ttl_ms).await {
                Ok(g) => guard = g,
                Err(_) => {
                    shared.lost.store(true, Ordering::SeqCst);
                    cancel.cancel();
                    return;
                }
            }
            if let Ok(events) = self.ledger.events_from(&shared.op, seen + 1).await {
                for e in &events {
                    seen = e.seq;
                    if e.event_type == "cancel_requested" {
                        cancel.cancel();
                    }
                }
            }
        }
    }

    async fn drive(&self, sh: &Arc<Shared>) -> Result<(), SagaError> {
        let resumed = sh.detail.lock().await.status != OpStatus::Planned;
        let token = sh.guard.token;
        let start = if resumed {
            SagaEvent::OperationResumed { token, holder: self.holder.clone() }
        } else {
            SagaEvent::OperationStarted { token, holder: self.holder.clone() }
        };
        self.emit(sh, start).await?;
        self.persist(sh).await?;
        loop {
            self.sync(sh).await?;
            let decision = {
                let d = sh.detail.lock().await;
                decide(&sh.plan, &d)
            };
            match decision {
                Decision::Done => return self.flush(sh).await,
                Decision::Finish => {
                    self.emit(sh, SagaEvent::OperationSucceeded { token }).await?;
                    self.persist(sh).await?;
                }
                Decision::Pause => {
                    self.emit(sh, SagaEvent::Paused { token }).await?;
                    self.persist(sh).await?;
                    return Ok(());
                }
                Decision::AwaitApproval(step) => {
                    if sh.detail.lock().await.awaiting.as_ref() != Some(&step) {
                        self.emit(sh, SagaEvent::ApprovalRequested { token, step }).await?;
                    }
                    self.persist(sh).await?;
                    return Ok(());
                }
                Decision::StartCompensation(reason) => {
                    self.emit(sh, SagaEvent::CompensationStarted { token, reason }).await?;
                    self.persist(sh).await?;
                }
                Decision::Compensate => self.compensate(sh).await?,
                Decision::Run(steps) => {
                    let runs = steps.into_iter().map(|(id, resume)| self.run_step(sh, id, resume));
                    for r in futures::future::join_all(runs).await {
                        r?;
                    }
                }
            }
        }
    }

    /// Checks the lease right before a step's effect, so an engine that stalled past
    /// its lease (and was replaced) stops instead of acting as a zombie.
    async fn still_leased(&self, sh: &Arc<Shared>) -> Result<(), SagaError> {
        if let Err(e) = self.ledger.check_lease(&sh.guard).await {
            sh.lost.store(true, Ordering::SeqCst);
            return Err(e.into());
        }
        Ok(())
    }

    /// Appends an engine event and folds it (and anything appended before it) in.
    async fn emit(&self, sh: &Arc<Shared>, event: SagaEvent) -> Result<Event, SagaError> {
        if sh.lost.load(Ordering::SeqCst) {
            return Err(StateError::Fenced {
                key: keys::lease(&Self::scope(&sh.op)),
                token: sh.guard.token,
                current: 0,
            }
            .into());
        }
        let (t, data) = event.to_parts();
        let mut d = sh.detail.lock().await;
        let stored = self.ledger.append(&sh.op, &t, data).await?;
        if stored.seq > d.applied_seq + 1 {
            for e in self.ledger.events_from(&sh.op, d.applied_seq + 1).await? {
                if e.seq < stored.seq {
                    fold_stored(&mut d, &e);
                }
            }
        }
        apply(&mut d, stored.seq, &event);
        drop(d);
        if let Some(o) = &self.observer {
            o(&stored, &event);
        }
        Ok(stored)
    }

    /// Folds events others appended (control events) since the last fold.
    async fn sync(&self, sh: &Arc<Shared>) -> Result<(), SagaError> {
        let mut d = sh.detail.lock().await;
        let next = d.applied_seq + 1;
        for e in self.ledger.events_from(&sh.op, next).await? {
            fold_stored(&mut d, &e);
        }
        Ok(())
    }

    /// Writes the folded state under the lease's fencing token. The first write
    /// checks lease and fence; later ones replace the version this engine wrote last
    /// in one conditional put, and fall back to the checked path if anyone else wrote.
    async fn persist(&self, sh: &Arc<Shared>) -> Result<(), SagaError> {
        self.flush(sh).await?;
        self.write_cursor(sh).await
    }

    /// Writes the cursor in the background: the next step's `step_started` event may be
    /// written meanwhile (the cursor is a snapshot of the event fold; the events carry
    /// the order). Cursor writes stay in order, and every status change or return
    /// [`Engine::flush`]es first. While one write is in flight, later requests coalesce
    /// into a single queued write that reads the newest fold when it starts, so a slow
    /// store writes fewer snapshots instead of falling behind. `point` is the hook fired
    /// once a write covering it is durable.
    async fn persist_behind(&self, sh: &Arc<Shared>, point: String) {
        let mut pending = sh.pending.lock().await;
        sh.queued_points.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(point);
        if pending.is_some() && sh.queued.load(Ordering::SeqCst) {
            // A write is already queued and will read the newest fold: nothing to add.
            return;
        }
        let previous = pending.take();
        sh.queued.store(true, Ordering::SeqCst);
        let (engine, shared) = (self.clone(), sh.clone());
        *pending = Some(tokio::spawn(async move {
            if let Some(p) = previous {
                join_cursor(p).await?;
            }
            shared.queued.store(false, Ordering::SeqCst);
            let points: Vec<String> =
                std::mem::take(&mut *shared.queued_points.lock().unwrap_or_else(std::sync::PoisonError::into_inner));
            engine.write_cursor(&shared).await?;
            for p in &points {
                engine.hook(p);
            }
            Ok(())
        }));
    }

    /// Waits for a background cursor write and reports its error.
    async fn flush(&self, sh: &Arc<Shared>) -> Result<(), SagaError> {
        let pending = sh.pending.lock().await.take();
        match pending {
            Some(p) => join_cursor(p).await,
            None => Ok(()),
        }
    }

    async fn write_cursor(&self, sh: &Arc<Shared>) -> Result<(), SagaError> {
        let d = sh.detail.lock().await.clone();
        let key = keys::op_state(&sh.op);
        let doc = OperationState {
            cas: Default::default(),
            op_id: sh.op.clone(),
            saga: sh.plan.saga.clone(),
            service: sh.service.clone(),
            status: d.status,
            fence: sh.guard.token,
            updated_at_ms: self.ledger.clock().now_ms(),
            detail: d.clone(),
        };
        let mut last = sh.last.lock().await;
        if let Some((prev, version)) = last.as_ref()
            && let Some(written) = self.ledger.replace_if_match(&key, prev, version, doc.clone()).await?
        {
            *last = Some(written);
            return Ok(());
        }
        let written = self.ledger.fenced_update_versioned(&key, &sh.guard, |_| Ok(Update::Write(doc.clone()))).await?;
        *last = Some(written);
        Ok(())
    }

    async fn request(&self, sh: &Arc<Shared>, step: &PlannedStep, attempt: u32) -> StepRequest {
        let d = sh.detail.lock().await;
        let inputs = d.steps.iter().filter_map(|(id, r)| r.outputs.clone().map(|o| (id.clone(), o))).collect();
        StepRequest {
            op_id: sh.op.clone(),
            step_id: step.id.clone(),
            attempt,
            idempotency_key: format!("{}:{}", sh.op, step.id),
            params: step.params.clone(),
            inputs,
            extensions: self.extensions.clone(),
            cancel: sh.cancel.clone(),
        }
    }

    fn context(&self, sh: &Arc<Shared>, step: &str) -> StepContext {
        let progress = EngineProgress { engine: self.clone(), shared: sh.clone(), step: step.to_owned() };
        StepContext::new(Arc::new(progress), self.now_fn())
    }

    async fn run_step(&self, sh: &Arc<Shared>, id: String, mut resume: bool) -> Result<(), SagaError> {
        let def = sh
            .plan
            .step(&id)
            .cloned()
            .ok_or_else(|| SagaError::InvalidGraph { saga: sh.plan.saga.clone(), why: format!("no step `{id}`") })?;
        let step = self
            .registry
            .get(&def.kind)
            .cloned()
            .ok_or_else(|| SagaError::UnknownStepKind { step: id.clone(), kind: def.kind.clone() })?;
        let token = sh.guard.token;
        let mut attempt = sh.detail.lock().await.step(&id).attempts + 1;
        loop {
            self.hook(&format!("before:step_started:{id}"));
            let key = format!("{}:{id}", sh.op);
            self.emit(sh, SagaEvent::StepStarted { token, step: id.clone(), attempt, idempotency_key: key, resume })
                .await?;
            self.hook(&format!("after:step_started:{id}"));
            self.still_leased(sh).await?;
            let req = self.request(sh, &def, attempt).await;
            let ctx = self.context(sh, &id);
            let call = async { if resume { step.resume(&ctx, &req).await } else { step.run(&ctx, &req).await } };
            let outcome = tokio::time::timeout(Duration::from_millis(def.timeout_ms), call).await;
            match outcome {
                Ok(Ok(r)) => {
                    self.emit(
                        sh,
                        SagaEvent::StepSucceeded {
                            token,
                            step: id.clone(),
                            attempt,
                            summary: r.summary,
                            outputs: r.outputs,
                        },
                    )
                    .await?;
                    self.hook(&format!("after:result:{id}"));
                    self.persist_behind(sh, format!("after:cursor:{id}")).await;
                    return Ok(());
                }
                Ok(Err(e)) if e.class == ErrorClass::Hold && !sh.cancel.is_cancelled() => {
                    self.emit(
                        sh,
                        SagaEvent::StepHeld {
                            token,
                            step: id.clone(),
                            attempt,
                            code: e.code,
                            message: e.message,
                            facts: e.facts,
                        },
                    )
                    .await?;
                    self.persist(sh).await?;
                    return Ok(());
                }
                Ok(Err(e)) if e.is_retryable() && attempt < def.retry.max_attempts && !sh.cancel.is_cancelled() => {
                    self.emit(
                        sh,
                        SagaEvent::StepFailed {
                            token,
                            step: id.clone(),
                            attempt,
                            code: e.code,
                            message: e.message,
                            facts: e.facts,
                            retrying: true,
                            uncertain: false,
                        },
                    )
                    .await?;
                    tokio::time::sleep(Duration::from_millis(def.retry.backoff_ms)).await;
                    attempt += 1;
                    resume = true;
                }
                Ok(Err(e)) => {
                    let uncertain = e.code == "CANCELLED";
                    self.emit(
                        sh,
                        SagaEvent::StepFailed {
                            token,
                            step: id.clone(),
                            attempt,
                            code: e.code,
                            message: e.message,
                            facts: e.facts,
                            retrying: false,
                            uncertain,
                        },
                    )
                    .await?;
                    self.persist(sh).await?;
                    return Ok(());
                }
                Err(_) => {
                    self.emit(
                        sh,
                        SagaEvent::StepFailed {
                            token,
                            step: id.clone(),
                            attempt,
                            code: "DEADLINE_EXCEEDED".to_owned(),
                            message: format!("step `{id}` missed its {}ms deadline", def.timeout_ms),
                            facts: vec![format!("deadline {}ms", def.timeout_ms)],
                            retrying: false,
                            uncertain: true,
                        },
                    )
                    .await?;
                    self.persist(sh).await?;
                    return Ok(());
                }
            }
        }
    }

    /// Undoes completed reversible steps newest first, stopping at an irreversible one,
    /// then records how the operation ended.
    async fn compensate(&self, sh: &Arc<Shared>) -> Result<(), SagaError> {
        let token = sh.guard.token;
        let order = {
            let d = sh.detail.lock().await;
            compensation_order(&sh.plan, &d)
        };
        let mut blocked = false;
        let mut broken = None;
        for (id, safety) in order {
            match safety {
                Safety::ReadOnly => continue,
                Safety::Irreversible => {
                    if sh.detail.lock().await.blocked_at.is_none() {
                        self.emit(sh, SagaEvent::CompensationBlocked { token, step: id.clone() }).await?;
                    }
                    blocked = true;
                    break;
                }
                _ => {}
            }
            if let Err((code, message)) = self.compensate_step(sh, &id).await? {
                broken = Some((id, code, message));
                break;
            }
        }
        let d = sh.detail.lock().await.clone();
        let end = if let Some((id, code, message)) = broken {
            SagaEvent::OperationFailed { token, code, message: format!("compensating step `{id}` failed: {message}") }
        } else if blocked {
            let at = d.blocked_at.clone().unwrap_or_default();
            let code = d.failure.as_ref().map_or("OPERATION_FAILED".to_owned(), |f| f.code.clone());
            SagaEvent::OperationFailed {
                token,
                code,
                message: format!("compensation stopped at irreversible step `{at}`; everything after it was undone"),
            }
        } else if d.cancel_requested {
            SagaEvent::OperationCancelled { token }
        } else {
            SagaEvent::OperationCompensated { token }
        };
        self.emit(sh, end).await?;
        self.persist(sh).await?;
        Ok(())
    }

    /// Compensates one step with its retry policy; `Ok(Err(..))` when it keeps failing.
    async fn compensate_step(&self, sh: &Arc<Shared>, id: &str) -> Result<Result<(), (String, String)>, SagaError> {
        let token = sh.guard.token;
        let def = sh
            .plan
            .step(id)
            .cloned()
            .ok_or_else(|| SagaError::InvalidGraph { saga: sh.plan.saga.clone(), why: format!("no step `{id}`") })?;
        let step = self
            .registry
            .get(&def.kind)
            .cloned()
            .ok_or_else(|| SagaError::UnknownStepKind { step: id.to_owned(), kind: def.kind.clone() })?;
        let record = sh.detail.lock().await.step(id);
        let result = StepResult {
            summary: record.summary.clone().unwrap_or_default(),
            outputs: record.outputs.clone().unwrap_or(Value::Null),
        };
        self.emit(sh, SagaEvent::StepCompensating { token, step: id.to_owned() }).await?;
        let mut attempt = 1;
        loop {
            self.still_leased(sh).await?;
            let req = self.request(sh, &def, record.attempts + attempt).await;
            let req = StepRequest { cancel: Cancellation::never(), ..req };
            let ctx = self.context(sh, id);
            let outcome =
                tokio::time::timeout(Duration::from_millis(def.timeout_ms), step.compensate(&ctx, &req, &result)).await;
            let err = match outcome {
                Ok(Ok(r)) => {
                    self.emit(sh, SagaEvent::StepCompensated { token, step: id.to_owned(), summary: r.summary })
                        .await?;
                    self.hook(&format!("after:compensated:{id}"));
                    self.persist(sh).await?;
                    return Ok(Ok(()));
                }
                Ok(Err(e)) if e.is_retryable() && attempt < def.retry.max_attempts => {
                    attempt += 1;
                    tokio::time::sleep(Duration::from_millis(def.retry.backoff_ms)).await;
                    continue;
                }
                Ok(Err(e)) => (e.code, e.message),
                Err(_) => {
                    ("DEADLINE_EXCEEDED".to_owned(), format!("compensation missed its {}ms deadline", def.timeout_ms))
                }
            };
            self.emit(
                sh,
                SagaEvent::CompensationFailed {
                    token,
                    step: id.to_owned(),
                    code: err.0.clone(),
                    message: err.1.clone(),
                },
            )
            .await?;
            self.persist(sh).await?;
            return Ok(Err(err));
        }
    }

    async fn control(
        &self,
        op: &str,
        action: &'static str,
        event: SagaEvent,
        allowed: impl Fn(&SagaDetail) -> bool,
    ) -> Result<SagaDetail, SagaError> {
        let (_, detail) = self.load(op).await?;
        if !allowed(&detail) {
            return Err(SagaError::InvalidTransition {
                op: op.to_owned(),
                action,
                status: detail.status.as_str().to_owned(),
            });
        }
        let (t, data) = event.to_parts();
        self.ledger.append(op, &t, data).await?;
        Ok(self.load(op).await?.1)
    }

    /// Approves the waiting step (or `step`, ahead of time).
    pub async fn approve(&self, op: &str, by: &str, step: Option<String>) -> Result<SagaDetail, SagaError> {
        let ahead = step.is_some();
        self.control(op, "approve", SagaEvent::Approved { by: by.to_owned(), step }, |d| {
            d.status == OpStatus::AwaitingApproval || (ahead && !d.status.is_terminal())
        })
        .await
    }

    /// Rejects the operation at its approval gate; it compensates.
    pub async fn reject(&self, op: &str, by: &str, reason: &str) -> Result<SagaDetail, SagaError> {
        self.control(op, "reject", SagaEvent::Rejected { by: by.to_owned(), reason: reason.to_owned() }, |d| {
            d.status == OpStatus::AwaitingApproval
        })
        .await
    }

    /// Asks the engine to pause at the next step boundary.
    pub async fn pause(&self, op: &str, by: &str) -> Result<SagaDetail, SagaError> {
        self.control(op, "pause", SagaEvent::PauseRequested { by: by.to_owned() }, |d| {
            matches!(d.status, OpStatus::Planned | OpStatus::Running | OpStatus::AwaitingApproval)
        })
        .await
    }

    /// Lets a paused operation continue (then call [`Engine::run`]).
    pub async fn request_resume(&self, op: &str, by: &str) -> Result<SagaDetail, SagaError> {
        self.control(op, "resume", SagaEvent::ResumeRequested { by: by.to_owned() }, |d| {
            d.status == OpStatus::Paused || d.pause_requested
        })
        .await
    }

    /// Cancels the operation: completed reversible steps are compensated.
    pub async fn cancel(&self, op: &str, by: &str) -> Result<SagaDetail, SagaError> {
        self.control(op, "cancel", SagaEvent::CancelRequested { by: by.to_owned() }, |d| !d.status.is_terminal()).await
    }

    /// Whether a live lease is held on the operation by someone.
    pub async fn lease_holder(&self, op: &str) -> Result<Option<(String, u64)>, SagaError> {
        let now = self.ledger.clock().now_ms();
        Ok(self
            .ledger
            .lease(&Self::scope(op))
            .await?
            .filter(|l| !l.released && l.expires_at_ms > now)
            .map(|l| (l.holder, l.expires_at_ms)))
    }
}

/// Joins a background cursor write. A panic in it is re-raised: a bug stops the run
/// like any other panic would, instead of turning into an ordinary error.
async fn join_cursor(handle: tokio::task::JoinHandle<Result<(), SagaError>>) -> Result<(), SagaError> {
    match handle.await {
        Ok(result) => result,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(e) => Err(SagaError::InvalidGraph { saga: String::new(), why: format!("cursor writer stopped: {e}") }),
    }
}

/// Folds a stored event if it is one of the engine's.
pub fn fold_stored(d: &mut SagaDetail, e: &Event) {
    match SagaEvent::from_parts(&e.event_type, &e.data) {
        Some(ev) => apply(d, e.seq, &ev),
        None => d.applied_seq = d.applied_seq.max(e.seq),
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
