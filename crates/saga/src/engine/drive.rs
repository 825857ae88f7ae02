//! Driving an operation under its lease: acquire, resume or start, decide the next
//! move from the fold, run steps with deadlines and retries, compensate in reverse.
//! The drive is a span `operation` in the trace its intent recorded; each step
//! attempt and each compensation is a span beneath it.

use tracing::Instrument as _;

use super::*;

impl Engine {
    pub(super) async fn acquire(&self, op: &str) -> Result<LeaseGuard, SagaError> {
        let start = self.ledger.clock().now_ms();
        loop {
            match self.ledger.acquire_lease(&Self::scope(op), &self.holder, self.lease_ttl_ms).await {
                Ok(g) => return Ok(g),
                Err(StateError::LeaseHeld { .. })
                    if self.ledger.clock().now_ms().saturating_sub(start) < self.lease_wait_ms =>
                {
                    self.clock().sleep(Duration::from_millis(100)).await;
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Drives the operation until it finishes, pauses or waits for approval.
    pub async fn run(&self, op: &str) -> Result<RunReport, SagaError> {
        let (plan, detail) = self.load(op).await?;
        if detail.status.is_terminal() {
            self.release_scope(plan.service.as_deref(), op).await;
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
            self.release_scope(plan.service.as_deref(), op).await;
            return Ok(RunReport { op_id: op.to_owned(), status: detail.status, detail, plan });
        }
        let (cancel_handle, cancel) = Cancellation::new(self.timer());
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
            checkpointed_at_ms: AtomicU64::new(0),
            lost: AtomicBool::new(false),
            cancel,
        });
        // Dropped with this call, however it ends (a panic included): a lease is never
        // renewed for an engine that stopped driving its operation.
        let watcher = AbortOnDrop(tokio::spawn(self.clone().watch(shared.clone(), cancel_handle)));
        let span = self.operation_span(&shared.plan).await;
        let result = self.drive(&shared).instrument(span.clone()).await;
        span.record("status", shared.detail.lock().await.status.as_str());
        drop(watcher);
        if !shared.lost.load(Ordering::SeqCst) {
            let _ = self.ledger.release_lease(&guard).await;
        }
        let detail = shared.detail.lock().await.clone();
        if result.is_ok() && detail.status.is_terminal() {
            self.release_scope(shared.plan.service.as_deref(), op).await;
        }
        result.map(|()| RunReport { op_id: op.to_owned(), status: detail.status, detail, plan: shared.plan.clone() })
    }

    /// The span of this drive: in the trace the operation's intent recorded (the
    /// request that submitted it), so every process that drives it adds to one trace.
    async fn operation_span(&self, plan: &SagaPlan) -> tracing::Span {
        let span = tracing::info_span!(
            "operation",
            otel.name = %format!("operation {}", plan.saga),
            op = %plan.op_id,
            saga = %plan.saga,
            service = plan.service.as_deref().unwrap_or(""),
            holder = %self.holder,
            trace_id = tracing::field::Empty,
            status = tracing::field::Empty,
        );
        let intent = self.ledger.read::<OperationIntent>(&keys::op_intent(&plan.op_id)).await.ok().flatten();
        if let Some(t) = intent.and_then(|i| i.trace) {
            let carrier = skiff_observability::Carrier { traceparent: t.traceparent, tracestate: t.tracestate };
            skiff_observability::continue_trace(&span, &carrier);
        }
        if let Some(id) = skiff_observability::trace_id(&span) {
            span.record("trace_id", id.as_str());
        }
        span
    }

    /// Renews the lease every third of its life, and fires the step cancellation when
    /// the lease is lost or someone asks to cancel.
    pub(super) async fn watch(self, shared: Arc<Shared>, cancel: CancelHandle) {
        let mut guard = shared.guard.clone();
        let period = Duration::from_millis((self.lease_ttl_ms / 3).max(10));
        let mut seen = shared.detail.lock().await.applied_seq;
        loop {
            self.clock().sleep(period).await;
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

    pub(super) async fn drive(&self, sh: &Arc<Shared>) -> Result<(), SagaError> {
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
    pub(super) async fn still_leased(&self, sh: &Arc<Shared>) -> Result<(), SagaError> {
        if let Err(e) = self.ledger.check_lease(&sh.guard).await {
            sh.lost.store(true, Ordering::SeqCst);
            return Err(e.into());
        }
        Ok(())
    }

    /// Appends an engine event and folds it (and anything appended before it) in.
    pub(super) async fn emit(&self, sh: &Arc<Shared>, event: SagaEvent) -> Result<Event, SagaError> {
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
    pub(super) async fn sync(&self, sh: &Arc<Shared>) -> Result<(), SagaError> {
        let mut d = sh.detail.lock().await;
        let next = d.applied_seq + 1;
        for e in self.ledger.events_from(&sh.op, next).await? {
            fold_stored(&mut d, &e);
        }
        Ok(())
    }

    pub(super) async fn request(&self, sh: &Arc<Shared>, step: &PlannedStep, attempt: u32) -> StepRequest {
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

    pub(super) fn context(&self, sh: &Arc<Shared>, step: &str) -> StepContext {
        let progress = EngineProgress { engine: self.clone(), shared: sh.clone(), step: step.to_owned() };
        StepContext::new(Arc::new(progress), self.timer())
    }

    pub(super) async fn run_step(&self, sh: &Arc<Shared>, id: String, mut resume: bool) -> Result<(), SagaError> {
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
            let span = step_span("step", &def, attempt, resume);
            let started_ms = self.clock().now_ms();
            let call = async { if resume { step.resume(&ctx, &req).await } else { step.run(&ctx, &req).await } };
            let outcome = skiff_clock::timeout(self.clock(), Duration::from_millis(def.timeout_ms), call)
                .instrument(span.clone())
                .await;
            let ended = record_outcome(&span, &outcome);
            let seconds = self.clock().now_ms().saturating_sub(started_ms) as f64 / 1000.0;
            skiff_observability::metrics::step(&def.kind, ended, seconds);
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
                    self.clock().sleep(Duration::from_millis(def.retry.backoff_ms)).await;
                    attempt += 1;
                    resume = true;
                }
                Ok(Err(e)) => {
                    let uncertain = e.code == StepCode::Cancelled;
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
                            code: StepCode::DeadlineExceeded,
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
    pub(super) async fn compensate(&self, sh: &Arc<Shared>) -> Result<(), SagaError> {
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
            let code = d.failure.as_ref().map_or(StepCode::OperationFailed, |f| f.code);
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
    pub(super) async fn compensate_step(
        &self,
        sh: &Arc<Shared>,
        id: &str,
    ) -> Result<Result<(), (StepCode, String)>, SagaError> {
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
            let req = StepRequest { cancel: Cancellation::never(self.timer()), ..req };
            let ctx = self.context(sh, id);
            let span = step_span("compensate", &def, attempt, false);
            let outcome = skiff_clock::timeout(
                self.clock(),
                Duration::from_millis(def.timeout_ms),
                step.compensate(&ctx, &req, &result),
            )
            .instrument(span.clone())
            .await;
            record_outcome(&span, &outcome);
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
                    self.clock().sleep(Duration::from_millis(def.retry.backoff_ms)).await;
                    continue;
                }
                Ok(Err(e)) => (e.code, e.message),
                Err(_) => {
                    (StepCode::DeadlineExceeded, format!("compensation missed its {}ms deadline", def.timeout_ms))
                }
            };
            self.emit(
                sh,
                SagaEvent::CompensationFailed { token, step: id.to_owned(), code: err.0, message: err.1.clone() },
            )
            .await?;
            self.persist(sh).await?;
            return Ok(Err(err));
        }
    }
}

/// A span for one attempt of a step (`what`: `step` or `compensate`).
fn step_span(what: &str, def: &PlannedStep, attempt: u32, resume: bool) -> tracing::Span {
    tracing::info_span!(
        "step",
        otel.name = %format!("{what} {}", def.kind),
        step = %def.id,
        kind = %def.kind,
        safety = def.safety.as_str(),
        risk = def.risk.as_str(),
        attempt,
        resume,
        compensation = what == "compensate",
        outcome = tracing::field::Empty,
        code = tracing::field::Empty,
        otel.status_code = tracing::field::Empty,
    )
}

/// Records how an attempt ended on its span, and returns it: `succeeded`, `held`,
/// `failed` (with the step code) or `deadline_exceeded`.
fn record_outcome<T, E>(
    span: &tracing::Span,
    outcome: &Result<Result<T, skiff_sagaapi::StepError>, E>,
) -> &'static str {
    let (outcome, code) = match outcome {
        Ok(Ok(_)) => ("succeeded", None),
        Ok(Err(e)) if e.class == ErrorClass::Hold => ("held", Some(e.code)),
        Ok(Err(e)) => ("failed", Some(e.code)),
        Err(_) => ("deadline_exceeded", Some(StepCode::DeadlineExceeded)),
    };
    span.record("outcome", outcome);
    if let Some(code) = code {
        span.record("code", code.as_str());
        if outcome != "held" {
            span.record("otel.status_code", "ERROR");
        }
    }
    outcome
}

/// Aborts a background task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
