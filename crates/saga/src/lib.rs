//! The saga engine (DESIGN §4): typed step graphs ([`SagaBuilder`]) planned before they
//! run, recorded in the ledger, and driven under the operation's lease with fencing —
//! events before and after every step, resume after a crash, per-step deadlines and
//! retries, approval gates, pause, cancel, and compensation of completed reversible
//! steps in reverse order, never crossing an irreversible one.
#![warn(missing_docs)]

pub mod doc;
mod engine;
mod error;
pub mod fold;
mod graph;
mod registry;

pub use doc::{Failure, Phase, PlannedStep, SagaDetail, SagaPlan, StepRecord, StepStatus};
pub use engine::{Engine, Hook, Observer, RunReport, ServiceScope, Submission, Submitted, fold_stored};
pub use error::{SagaError, step_code, taxonomy};
pub use fold::SagaEvent;
pub use graph::{DEFAULT_TIMEOUT_MS, RetryPolicy, SagaBuilder, SagaGraph, StepDef, validate};
pub use registry::{AllowIrreversible, ApprovalPolicy, IrreversibleNeedsApproval, Registry};
