//! What the engine stores: the plan (`operations/<op>/plan.json`, immutable) and the
//! progress detail inside `operations/<op>/state.json`.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use skiff_sagaapi::{Risk, Safety};
use skiff_state::Document;
use skiff_state::docs::OpStatus;

use crate::graph::RetryPolicy;

/// A step as planned: its definition, what it will do, and whether it waits for approval.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlannedStep {
    /// Step id.
    pub id: String,
    /// Step kind.
    pub kind: String,
    /// Parameters.
    pub params: Value,
    /// Dependencies.
    pub depends_on: Vec<String>,
    /// Deadline, milliseconds.
    pub timeout_ms: u64,
    /// Retries.
    pub retry: RetryPolicy,
    /// Whether it waits for an approver.
    pub needs_approval: bool,
    /// The earlier step whose approval covers this one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approved_by: Option<String>,
    /// What it will do.
    pub description: String,
    /// How reversible it is.
    pub safety: Safety,
    /// How risky it is.
    pub risk: Risk,
    /// Expected duration, milliseconds.
    pub expected_duration_ms: u64,
    /// Resources it touches.
    pub affected_resources: Vec<String>,
}

/// `operations/<op>/plan.json`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SagaPlan {
    /// The operation.
    pub op_id: String,
    /// The saga kind.
    pub saga: String,
    /// The service it acts on.
    pub service: Option<String>,
    /// The steps, in a topological order.
    pub steps: Vec<PlannedStep>,
}

impl Document for SagaPlan {
    const KIND: &'static str = "skiff.saga_plan";
    const SCHEMA_VERSION: u32 = 1;
}

impl SagaPlan {
    /// A step by id.
    pub fn step(&self, id: &str) -> Option<&PlannedStep> {
        self.steps.iter().find(|s| s.id == id)
    }

    /// The highest risk of any step.
    pub fn risk(&self) -> Risk {
        self.steps.iter().map(|s| s.risk).max().unwrap_or(Risk::None)
    }

    /// The least reversible safety of any step.
    pub fn safety(&self) -> Safety {
        self.steps.iter().map(|s| s.safety).max().unwrap_or(Safety::ReadOnly)
    }
}

/// Where a step is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepStatus {
    /// Not started.
    Pending,
    /// Started; its effect may or may not have happened.
    Running,
    /// Done.
    Succeeded,
    /// Failed for good.
    Failed,
    /// Being undone.
    Compensating,
    /// Undone.
    Compensated,
    /// Its compensation failed.
    CompensationFailed,
}

/// A step's progress.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepRecord {
    /// Status.
    pub status: StepStatus,
    /// Attempts started.
    pub attempts: u32,
    /// Summary of the result.
    pub summary: Option<String>,
    /// Outputs, once succeeded.
    pub outputs: Option<Value>,
    /// Last error.
    pub error: Option<String>,
    /// The step failed in a way that may have left an effect (deadline missed).
    pub uncertain: bool,
}

impl Default for StepRecord {
    fn default() -> Self {
        StepRecord {
            status: StepStatus::Pending,
            attempts: 0,
            summary: None,
            outputs: None,
            error: None,
            uncertain: false,
        }
    }
}

/// Why an operation did not succeed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Failure {
    /// The step that failed, if one did.
    pub step: Option<String>,
    /// Taxonomy code.
    pub code: skiff_sagaapi::StepCode,
    /// Message.
    pub message: String,
    /// Facts.
    pub facts: Vec<String>,
}

/// Whether the saga is moving forward or undoing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Running steps.
    Forward,
    /// Undoing completed steps.
    Compensating,
    /// Over.
    Done,
}

/// The engine's progress: a fold of the operation's events up to `applied_seq`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SagaDetail {
    /// The last event folded in.
    pub applied_seq: u64,
    /// The highest lease token seen in engine events; lower ones are stale.
    pub token: u64,
    /// Status.
    pub status: OpStatus,
    /// Forward, compensating or done.
    pub phase: Phase,
    /// Each step's progress.
    pub steps: BTreeMap<String, StepRecord>,
    /// Steps in the order they succeeded (compensation goes in reverse).
    pub completed: Vec<String>,
    /// Approved steps.
    pub approvals: BTreeSet<String>,
    /// The step waiting for approval.
    pub awaiting: Option<String>,
    /// A pause was asked for.
    pub pause_requested: bool,
    /// A cancel was asked for.
    pub cancel_requested: bool,
    /// An approver rejected the operation.
    pub rejected: bool,
    /// Compensation stopped at this irreversible step.
    pub blocked_at: Option<String>,
    /// Why it failed.
    pub failure: Option<Failure>,
    /// Why the operation paused itself at a step that could not decide, until the
    /// step starts again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held: Option<Failure>,
}

impl SagaDetail {
    /// The detail of a freshly planned operation.
    pub fn new(plan: &SagaPlan) -> Self {
        SagaDetail {
            applied_seq: 0,
            token: 0,
            status: OpStatus::Planned,
            phase: Phase::Forward,
            steps: plan.steps.iter().map(|s| (s.id.clone(), StepRecord::default())).collect(),
            completed: Vec::new(),
            approvals: BTreeSet::new(),
            awaiting: None,
            pause_requested: false,
            cancel_requested: false,
            rejected: false,
            blocked_at: None,
            failure: None,
            held: None,
        }
    }

    /// A step's record (a default one for an unknown id).
    pub fn step(&self, id: &str) -> StepRecord {
        self.steps.get(id).cloned().unwrap_or_default()
    }
}
