//! The engine as a pure state machine: [`SagaEvent`]s fold into a [`SagaDetail`], and
//! [`decide`] reads plan + detail and says what to do next. The event log is the truth;
//! the state document is this fold, cached. Engine events carry the writer's lease
//! token: events from a token older than one already seen are stale and ignored.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use skiff_sagaapi::{Safety, StepCode};
use skiff_state::docs::OpStatus;

use crate::doc::{Failure, Phase, SagaDetail, SagaPlan, StepRecord, StepStatus};

/// Everything that happens to an operation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data", rename_all = "snake_case")]
#[allow(missing_docs, reason = "variant fields are self-describing; each variant is documented")]
pub enum SagaEvent {
    /// Intent and plan were recorded.
    OperationPlanned { steps: usize },
    /// An engine took the lease and started.
    OperationStarted { token: u64, holder: String },
    /// An engine took the lease and continued an earlier run.
    OperationResumed { token: u64, holder: String },
    /// A step attempt begins (`resume`: the attempt may find an earlier effect).
    StepStarted { token: u64, step: String, attempt: u32, idempotency_key: String, resume: bool },
    /// A running step reported progress.
    StepProgress { token: u64, step: String, message: String, data: Value },
    /// A step attempt succeeded.
    StepSucceeded { token: u64, step: String, attempt: u32, summary: String, outputs: Value },
    /// A step attempt failed; `retrying` if another attempt follows, `uncertain` if the
    /// effect may have happened (deadline missed).
    StepFailed {
        token: u64,
        step: String,
        attempt: u32,
        code: StepCode,
        message: String,
        facts: Vec<String>,
        retrying: bool,
        uncertain: bool,
    },
    /// A step could not decide (see `ErrorClass::Hold`): the operation pauses and the
    /// step runs again on resume.
    StepHeld { token: u64, step: String, attempt: u32, code: StepCode, message: String, facts: Vec<String> },
    /// The engine stopped before a gated step.
    ApprovalRequested { token: u64, step: String },
    /// An approver approved the waiting step (or `step`).
    Approved { by: String, step: Option<String> },
    /// An approver rejected the operation; it compensates.
    Rejected { by: String, reason: String },
    /// Someone asked the engine to pause at the next step boundary.
    PauseRequested { by: String },
    /// The engine paused.
    Paused { token: u64 },
    /// Someone asked a paused operation to continue.
    ResumeRequested { by: String },
    /// Someone asked to cancel; completed reversible steps are compensated.
    CancelRequested { by: String },
    /// Compensation begins.
    CompensationStarted { token: u64, reason: String },
    /// A step's compensation begins.
    StepCompensating { token: u64, step: String },
    /// A step was undone.
    StepCompensated { token: u64, step: String, summary: String },
    /// Compensation reached an irreversible step and stopped.
    CompensationBlocked { token: u64, step: String },
    /// A step's compensation failed.
    CompensationFailed { token: u64, step: String, code: StepCode, message: String },
    /// Every step succeeded.
    OperationSucceeded { token: u64 },
    /// The operation failed and could not be fully compensated.
    OperationFailed { token: u64, code: StepCode, message: String },
    /// The operation failed and every completed reversible step was undone.
    OperationCompensated { token: u64 },
    /// The operation was cancelled (completed reversible steps undone).
    OperationCancelled { token: u64 },
}

impl SagaEvent {
    /// The lease token of engine events; `None` for control events anyone may append.
    pub fn token(&self) -> Option<u64> {
        use SagaEvent::*;
        match self {
            OperationPlanned { .. }
            | Approved { .. }
            | Rejected { .. }
            | PauseRequested { .. }
            | ResumeRequested { .. }
            | CancelRequested { .. } => None,
            OperationStarted { token, .. }
            | OperationResumed { token, .. }
            | StepStarted { token, .. }
            | StepProgress { token, .. }
            | StepSucceeded { token, .. }
            | StepFailed { token, .. }
            | StepHeld { token, .. }
            | ApprovalRequested { token, .. }
            | Paused { token }
            | CompensationStarted { token, .. }
            | StepCompensating { token, .. }
            | StepCompensated { token, .. }
            | CompensationBlocked { token, .. }
            | CompensationFailed { token, .. }
            | OperationSucceeded { token }
            | OperationFailed { token, .. }
            | OperationCompensated { token }
            | OperationCancelled { token } => Some(*token),
        }
    }

    /// The event's type name and data, as stored in the ledger.
    pub fn to_parts(&self) -> (String, Value) {
        let v = serde_json::to_value(self).expect("saga events serialize");
        (v["type"].as_str().unwrap_or_default().to_owned(), v.get("data").cloned().unwrap_or(Value::Null))
    }

    /// Parses a stored event; `None` for events the engine does not own.
    pub fn from_parts(event_type: &str, data: &Value) -> Option<Self> {
        serde_json::from_value(serde_json::json!({ "type": event_type, "data": data })).ok()
    }
}

/// Folds event `seq` into `d`. Stale engine events advance `applied_seq` only.
pub fn apply(d: &mut SagaDetail, seq: u64, event: &SagaEvent) {
    d.applied_seq = d.applied_seq.max(seq);
    if let Some(t) = event.token() {
        if t < d.token {
            return;
        }
        d.token = t;
    }
    let running_status =
        |d: &SagaDetail| if d.phase == Phase::Compensating { OpStatus::Compensating } else { OpStatus::Running };
    use SagaEvent::*;
    match event {
        OperationPlanned { .. } => {}
        OperationStarted { .. } | OperationResumed { .. } => {
            if !d.status.is_terminal() {
                // Still waiting at a gate nobody approved: the status says so.
                d.status = if d.awaiting.is_some() { OpStatus::AwaitingApproval } else { running_status(d) };
            }
        }
        StepStarted { step, attempt, .. } => {
            if d.held.as_ref().is_some_and(|h| h.step.as_ref() == Some(step)) {
                d.held = None;
            }
            let r = d.steps.entry(step.clone()).or_default();
            r.status = StepStatus::Running;
            r.attempts = r.attempts.max(*attempt);
        }
        StepProgress { .. } => {}
        StepSucceeded { step, summary, outputs, .. } => {
            let r = d.steps.entry(step.clone()).or_default();
            r.status = StepStatus::Succeeded;
            r.summary = Some(summary.clone());
            r.outputs = Some(outputs.clone());
            r.error = None;
            if !d.completed.contains(step) {
                d.completed.push(step.clone());
            }
        }
        StepFailed { step, code, message, facts, retrying, uncertain, .. } => {
            let r = d.steps.entry(step.clone()).or_default();
            r.error = Some(format!("{code}: {message}"));
            r.uncertain |= *uncertain;
            if !retrying {
                r.status = StepStatus::Failed;
                d.failure.get_or_insert_with(|| Failure {
                    step: Some(step.clone()),
                    code: *code,
                    message: message.clone(),
                    facts: facts.clone(),
                });
            }
        }
        StepHeld { step, code, message, facts, .. } => {
            let r = d.steps.entry(step.clone()).or_default();
            r.status = StepStatus::Pending;
            r.error = Some(format!("{code}: {message}"));
            d.held =
                Some(Failure { step: Some(step.clone()), code: *code, message: message.clone(), facts: facts.clone() });
            d.pause_requested = true;
        }
        ApprovalRequested { step, .. } => {
            d.status = OpStatus::AwaitingApproval;
            d.awaiting = Some(step.clone());
        }
        Approved { step, .. } => {
            if let Some(s) = step.clone().or_else(|| d.awaiting.clone()) {
                if d.awaiting.as_ref() == Some(&s) {
                    d.awaiting = None;
                }
                d.approvals.insert(s);
            }
        }
        Rejected { by, reason } => {
            d.rejected = true;
            d.failure.get_or_insert_with(|| Failure {
                step: d.awaiting.clone(),
                code: StepCode::ApprovalRequired,
                message: format!("rejected by {by}: {reason}"),
                facts: Vec::new(),
            });
        }
        PauseRequested { .. } => d.pause_requested = true,
        Paused { .. } => {
            d.status = OpStatus::Paused;
            d.pause_requested = false;
        }
        ResumeRequested { .. } => d.pause_requested = false,
        CancelRequested { .. } => d.cancel_requested = true,
        CompensationStarted { .. } => {
            d.phase = Phase::Compensating;
            d.status = OpStatus::Compensating;
        }
        StepCompensating { step, .. } => d.steps.entry(step.clone()).or_default().status = StepStatus::Compensating,
        StepCompensated { step, .. } => d.steps.entry(step.clone()).or_default().status = StepStatus::Compensated,
        CompensationBlocked { step, .. } => d.blocked_at = Some(step.clone()),
        CompensationFailed { step, code, message, .. } => {
            d.steps.entry(step.clone()).or_default().status = StepStatus::CompensationFailed;
            d.failure.get_or_insert_with(|| Failure {
                step: Some(step.clone()),
                code: *code,
                message: message.clone(),
                facts: Vec::new(),
            });
        }
        OperationSucceeded { .. } => finish(d, OpStatus::Succeeded),
        OperationFailed { code, message, .. } => {
            d.failure.get_or_insert_with(|| Failure {
                step: None,
                code: *code,
                message: message.clone(),
                facts: Vec::new(),
            });
            finish(d, OpStatus::Failed);
        }
        OperationCompensated { .. } => finish(d, OpStatus::Compensated),
        OperationCancelled { .. } => finish(d, OpStatus::Cancelled),
    }
}

fn finish(d: &mut SagaDetail, status: OpStatus) {
    d.status = status;
    d.phase = Phase::Done;
    d.awaiting = None;
}

/// What the engine should do next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Nothing: the operation is over.
    Done,
    /// Begin compensating, for this reason.
    StartCompensation(String),
    /// Continue compensating.
    Compensate,
    /// Stop at this boundary; the operation is paused.
    Pause,
    /// Stop before this step until someone approves it.
    AwaitApproval(String),
    /// Run these steps (`true`: resume an attempt that may have had an effect).
    Run(Vec<(String, bool)>),
    /// Every step succeeded.
    Finish,
}

/// Decides the next move from the plan and the folded detail. Pure.
pub fn decide(plan: &SagaPlan, d: &SagaDetail) -> Decision {
    if d.status.is_terminal() {
        return Decision::Done;
    }
    if d.phase == Phase::Compensating {
        return Decision::Compensate;
    }
    if d.cancel_requested {
        return Decision::StartCompensation("cancelled".to_owned());
    }
    if d.rejected {
        return Decision::StartCompensation("rejected at the approval gate".to_owned());
    }
    if let Some((id, _)) = d.steps.iter().find(|(_, r)| r.status == StepStatus::Failed) {
        return Decision::StartCompensation(format!("step `{id}` failed"));
    }
    if d.pause_requested {
        return Decision::Pause;
    }
    if plan.steps.iter().all(|s| d.step(&s.id).status == StepStatus::Succeeded) {
        return Decision::Finish;
    }
    let mut run: Vec<(String, bool)> = plan
        .steps
        .iter()
        .filter(|s| d.step(&s.id).status == StepStatus::Running)
        .map(|s| (s.id.clone(), true))
        .collect();
    let mut gated = None;
    for s in &plan.steps {
        let ready = d.step(&s.id).status == StepStatus::Pending
            && s.depends_on.iter().all(|dep| d.step(dep).status == StepStatus::Succeeded);
        if !ready {
            continue;
        }
        let covered = s.approved_by.as_ref().is_some_and(|gate| d.approvals.contains(gate));
        if s.needs_approval && !covered && !d.approvals.contains(&s.id) {
            gated.get_or_insert_with(|| s.id.clone());
        } else {
            run.push((s.id.clone(), false));
        }
    }
    match (run.is_empty(), gated) {
        (false, _) => Decision::Run(run),
        (true, Some(step)) => Decision::AwaitApproval(step),
        (true, None) => Decision::StartCompensation("no step can run (inconsistent plan)".to_owned()),
    }
}

/// The order compensation walks: a failed step whose effect is uncertain first, then
/// completed steps newest first; already compensated steps drop out. The caller stops
/// at the first irreversible one.
pub fn compensation_order(plan: &SagaPlan, d: &SagaDetail) -> Vec<(String, Safety)> {
    let safety = |id: &str| plan.step(id).map_or(Safety::Reversible, |s| s.safety);
    let uncertain =
        d.steps.iter().filter(|(_, r)| r.status == StepStatus::Failed && r.uncertain).map(|(id, _)| id.clone());
    let completed = d.completed.iter().rev().filter(|id| {
        let r: StepRecord = d.step(id);
        matches!(r.status, StepStatus::Succeeded | StepStatus::Compensating | StepStatus::CompensationFailed)
    });
    uncertain
        .chain(completed.cloned())
        .map(|id| {
            let s = safety(&id);
            (id, s)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::doc::PlannedStep;
    use crate::graph::RetryPolicy;
    use skiff_sagaapi::Risk;

    fn plan(steps: &[(&str, &[&str], Safety, bool)]) -> SagaPlan {
        SagaPlan {
            op_id: "op".into(),
            saga: "t".into(),
            service: None,
            steps: steps
                .iter()
                .map(|(id, deps, safety, gate)| PlannedStep {
                    id: (*id).into(),
                    kind: "k".into(),
                    params: Value::Null,
                    depends_on: deps.iter().map(|d| (*d).to_owned()).collect(),
                    timeout_ms: 1000,
                    retry: RetryPolicy::default(),
                    needs_approval: *gate,
                    approved_by: None,
                    description: String::new(),
                    safety: *safety,
                    risk: Risk::Low,
                    expected_duration_ms: 0,
                    affected_resources: vec![],
                })
                .collect(),
        }
    }

    fn ok(step: &str) -> SagaEvent {
        SagaEvent::StepSucceeded {
            token: 1,
            step: step.into(),
            attempt: 1,
            summary: String::new(),
            outputs: Value::Null,
        }
    }

    #[test]
    fn independent_branches_are_ready_together_and_gates_wait() {
        let p = plan(&[
            ("a", &[], Safety::Reversible, false),
            ("b", &["a"], Safety::Reversible, false),
            ("c", &["a"], Safety::ReadOnly, false),
            ("d", &["b", "c"], Safety::Irreversible, true),
        ]);
        let mut d = SagaDetail::new(&p);
        assert_eq!(decide(&p, &d), Decision::Run(vec![("a".into(), false)]));
        apply(&mut d, 1, &ok("a"));
        assert_eq!(decide(&p, &d), Decision::Run(vec![("b".into(), false), ("c".into(), false)]));
        apply(&mut d, 2, &ok("b"));
        apply(&mut d, 3, &ok("c"));
        assert_eq!(decide(&p, &d), Decision::AwaitApproval("d".into()));
        apply(&mut d, 4, &SagaEvent::Approved { by: "ann".into(), step: None });
        assert_eq!(
            decide(&p, &d),
            Decision::AwaitApproval("d".into()),
            "approval of nothing awaited yet is not approval of d"
        );
        apply(&mut d, 5, &SagaEvent::ApprovalRequested { token: 1, step: "d".into() });
        apply(&mut d, 6, &SagaEvent::Approved { by: "ann".into(), step: None });
        assert_eq!(decide(&p, &d), Decision::Run(vec![("d".into(), false)]));
    }

    #[test]
    fn one_approval_covers_the_steps_it_names() {
        let mut p = plan(&[
            ("gate", &[], Safety::ReadOnly, true),
            ("freeze", &["gate"], Safety::Reversible, false),
            ("promote", &["freeze"], Safety::Irreversible, true),
        ]);
        p.steps[2].approved_by = Some("gate".into());
        let mut d = SagaDetail::new(&p);
        assert_eq!(decide(&p, &d), Decision::AwaitApproval("gate".into()));
        apply(&mut d, 1, &SagaEvent::ApprovalRequested { token: 1, step: "gate".into() });
        apply(&mut d, 2, &SagaEvent::Approved { by: "ann".into(), step: None });
        apply(&mut d, 3, &ok("gate"));
        apply(&mut d, 4, &ok("freeze"));
        assert_eq!(decide(&p, &d), Decision::Run(vec![("promote".into(), false)]), "no second wait");
    }

    #[test]
    fn compensation_walks_back_and_stops_at_irreversible() {
        let p = plan(&[
            ("a", &[], Safety::Reversible, false),
            ("b", &["a"], Safety::Irreversible, false),
            ("c", &["b"], Safety::Reversible, false),
            ("e", &["c"], Safety::ReadOnly, false),
            ("f", &["e"], Safety::Reversible, false),
        ]);
        let mut d = SagaDetail::new(&p);
        for (i, s) in ["a", "b", "c", "e"].iter().enumerate() {
            apply(&mut d, i as u64 + 1, &ok(s));
        }
        apply(
            &mut d,
            9,
            &SagaEvent::StepFailed {
                token: 1,
                step: "f".into(),
                attempt: 1,
                code: StepCode::ProviderError,
                message: "m".into(),
                facts: vec![],
                retrying: false,
                uncertain: false,
            },
        );
        assert_eq!(decide(&p, &d), Decision::StartCompensation("step `f` failed".into()));
        let order: Vec<_> = compensation_order(&p, &d).into_iter().map(|(id, _)| id).collect();
        assert_eq!(order, vec!["e", "c", "b", "a"]);
    }

    #[test]
    fn stale_tokens_are_ignored() {
        let p = plan(&[("a", &[], Safety::Reversible, false)]);
        let mut d = SagaDetail::new(&p);
        apply(&mut d, 1, &SagaEvent::OperationStarted { token: 2, holder: "new".into() });
        apply(
            &mut d,
            2,
            &SagaEvent::StepSucceeded {
                token: 1,
                step: "a".into(),
                attempt: 1,
                summary: String::new(),
                outputs: Value::Null,
            },
        );
        assert_eq!(d.step("a").status, StepStatus::Pending, "a stale engine's event changes nothing");
        assert_eq!(d.applied_seq, 2);
    }

    #[test]
    fn events_round_trip_through_their_stored_parts() {
        let e = SagaEvent::StepStarted {
            token: 3,
            step: "a".into(),
            attempt: 2,
            idempotency_key: "op:a".into(),
            resume: true,
        };
        let (t, data) = e.to_parts();
        assert_eq!(t, "step_started");
        assert_eq!(SagaEvent::from_parts(&t, &data), Some(e));
        assert_eq!(SagaEvent::from_parts("effect", &Value::Null), None);
    }
}
