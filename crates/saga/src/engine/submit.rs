//! Recording operations: planning a graph, the intent, plan, first event and state
//! (idempotent by key, completing a submission cut short), and the service scope a
//! submission claims and its end releases.

use super::*;

impl Engine {
    /// The operation id an idempotency key gives for a saga kind.
    pub fn op_id_for(saga: &str, key: &str) -> String {
        let digest = skiff_ir::canonical::sha256_hex(format!("{saga}\n{key}").as_bytes());
        format!("op-{}", &digest[..20])
    }

    /// Plans a graph without recording anything: each step describes itself.
    pub async fn plan(&self, graph: &SagaGraph, service: Option<&str>, op_id: &str) -> Result<SagaPlan, SagaError> {
        validate(graph)?;
        let ctx = StepContext::new(Arc::new(NoProgress), self.timer());
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
                cancel: Cancellation::never(self.timer()),
            };
            let p = step.plan(&ctx, &req).await.map_err(|e| SagaError::PlanFailed {
                step: def.id.clone(),
                code: e.code,
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
                approved_by: def.approved_by.clone(),
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

    /// Records an operation: intent, plan, a `operation_planned` event and its state.
    /// Submitting the same idempotency key again returns the existing operation.
    pub async fn submit(&self, s: Submission) -> Result<Submitted, SagaError> {
        let key = s.idempotency_key.clone().unwrap_or_else(|| self.ledger.ids().id("key"));
        let op = Self::op_id_for(&s.graph.saga, &key);
        if let Some(existing) = self.ledger.read::<OperationIntent>(&keys::op_intent(&op)).await? {
            return self.existing(&s, &op, &key, &existing).await;
        }
        let plan = self.plan(&s.graph, s.service.as_deref(), &op).await?;
        if let Some(scope) = &s.scope {
            self.claim(scope, &op).await?;
        }
        let intent = OperationIntent {
            op_id: op.clone(),
            saga: s.graph.saga.clone(),
            service: s.service.clone(),
            actor: s.actor.clone(),
            reason: s.reason.clone(),
            idempotency_key: key.clone(),
            params: s.params.clone(),
            created_at_ms: self.ledger.clock().now_ms(),
            trace: skiff_observability::current()
                .map(|c| skiff_state::docs::TraceContext { traceparent: c.traceparent, tracestate: c.tracestate }),
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
    pub(super) async fn finish_submission(&self, op: &str, plan: &SagaPlan) -> Result<(), SagaError> {
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

    pub(super) async fn existing(
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

    /// The live operation other than `except` holding `service`, with its status.
    pub async fn scope_holder(
        &self,
        service: &str,
        except: Option<&str>,
    ) -> Result<Option<(String, OpStatus)>, SagaError> {
        let state = self.ledger.read::<ServiceState>(&keys::service_state(service)).await?;
        self.live_other(state.as_ref(), except).await
    }

    pub(super) async fn live_other(
        &self,
        state: Option<&ServiceState>,
        except: Option<&str>,
    ) -> Result<Option<(String, OpStatus)>, SagaError> {
        let Some(other) = state.and_then(|s| s.active_operation.clone()).filter(|o| Some(o.as_str()) != except) else {
            return Ok(None);
        };
        // A claim whose operation was never recorded (a crash between claim and intent) is free.
        let Ok((_, d)) = self.load(&other).await else { return Ok(None) };
        Ok((!d.status.is_terminal()).then_some((other, d.status)))
    }

    /// Names `op` as the operation working on the scope's service in one conditional
    /// write, so two submissions racing for it cannot both win; another live
    /// operation answers [`SagaError::ScopeHeld`].
    pub(super) async fn claim(&self, scope: &ServiceScope, op: &str) -> Result<(), SagaError> {
        let key = keys::service_state(&scope.service);
        self.ledger
            .update::<ServiceState, _>(&key, |cur| {
                Ok(match cur {
                    Some(_) => Update::Keep,
                    None => Update::Write(ServiceState::new(&scope.service)),
                })
            })
            .await?;
        for _ in 0..50 {
            let Some((cur, version)) = self.ledger.read_versioned::<ServiceState>(&key).await? else { continue };
            if let Some((other, status)) = self.live_other(Some(&cur), Some(op)).await? {
                return Err(SagaError::ScopeHeld {
                    scope: scope.service.clone(),
                    op: other,
                    status: status.as_str().to_owned(),
                });
            }
            let mut next = cur.clone();
            next.active_operation = Some(op.to_owned());
            if let Some(c) = &scope.candidate_release {
                next.candidate_release = Some(c.clone());
            }
            if self.ledger.replace_if_match(&key, &cur, &version, next).await?.is_some() {
                return Ok(());
            }
        }
        Err(StateError::Conflict { key, attempts: 50 }.into())
    }

    /// Lets go of the service once `op` has ended (if it is the one holding it).
    pub(super) async fn release_scope(&self, service: Option<&str>, op: &str) {
        let Some(service) = service else { return };
        let key = keys::service_state(service);
        let _ = self
            .ledger
            .update::<ServiceState, _>(&key, |cur| match cur {
                Some(s) if s.active_operation.as_deref() == Some(op) => {
                    let mut s = s.clone();
                    s.active_operation = None;
                    Ok(Update::Write(s))
                }
                _ => Ok(Update::Keep),
            })
            .await;
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
}
