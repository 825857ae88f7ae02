//! What policies see: one plan, described as plain data. The same document is the
//! `input` of every Rego policy, so its field names are a public contract.

use serde::{Deserialize, Serialize};

/// A plan about to be executed.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PlanInput {
    /// What is about to run: `deploy`, `rollback`, a saga kind, or `check`.
    pub action: String,
    /// The service.
    pub service: String,
    /// Its environment (`production`, `staging`, …).
    pub environment: String,
    /// The provider, `local` or `aws`.
    pub provider: String,
    /// Who asks.
    pub actor: Actor,
    /// The release being rolled out; `None` when none exists yet (`skiff policy check`).
    pub release: Option<ReleaseFacts>,
    /// Instance counts and class.
    pub instances: Instances,
    /// Network ingress to instances.
    pub ingress: Vec<Ingress>,
    /// The saga's steps, in order.
    pub steps: Vec<StepFacts>,
    /// Databases the plan deletes.
    pub database_deletions: Vec<DatabaseDeletion>,
    /// The compiled resource plan, for user policies.
    pub resources: serde_json::Value,
    /// The plan's monthly cost, estimated from the committed price table; `None` when
    /// the caller has none (a Terraform plan, a test).
    #[serde(default)]
    pub cost: Option<CostFacts>,
}

/// A plan's monthly cost: the figures `skiff cost explain` shows, so the cost-ceiling
/// rule and the explanation never disagree.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CostFacts {
    /// USD per month with the normal instance counts.
    pub monthly_usd: f64,
    /// USD per month with every group at its maximum: what the ceiling judges.
    pub at_max_usd: f64,
    /// Resources without a known price (their cost is not in the figures).
    pub unpriced: Vec<String>,
}

/// Who asks, and with which roles (`viewer`, `operator`, `approver`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    /// Name, as recorded in audit entries.
    pub name: String,
    /// Roles held.
    pub roles: Vec<String>,
}

/// What is known about the release.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleaseFacts {
    /// Release id.
    pub id: String,
    /// Its manifest's signature verified against the trusted key.
    pub signature_verified: bool,
    /// The artifact's `sha256:` digest, as pinned in the manifest.
    pub artifact_digest: Option<String>,
}

/// Instance counts and class.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Instances {
    /// Kept running.
    pub desired: u32,
    /// The most autoscaling may run.
    pub max: u32,
    /// Machine class.
    pub instance_type: String,
    /// Interruptible capacity.
    pub spot: bool,
}

/// One ingress rule.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ingress {
    /// Port.
    pub port: u16,
    /// Who may connect (`load-balancer`, a CIDR, …).
    pub from: String,
}

/// One step of the plan.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepFacts {
    /// Step id.
    pub id: String,
    /// Step kind.
    pub kind: String,
    /// `read_only`, `reversible` or `irreversible`.
    pub safety: String,
    /// An approval gate precedes it.
    pub approval: bool,
    /// Irreversible, but undone by a routine operation (e.g. retiring an old group,
    /// which `skiff rollback` re-creates).
    pub routine: bool,
}

/// A database the plan deletes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatabaseDeletion {
    /// Database id.
    pub id: String,
    /// Age of its newest snapshot, if any.
    pub snapshot_age_ms: Option<u64>,
}
