//! The IR's types. Every field is concrete: no defaults are left to later stages.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use skiff_spec::values::{Duration, Percentage, SecretRef};
use skiff_spec::{
    Availability, Cost, DatabaseEngine, DatabaseSize, IamStatement, MigrationPhase, Spec, Strategy, WorkloadKind,
};

/// The `kind` of a stored IR document.
pub const KIND: &str = "skiff.ir";
/// The IR's schema version; bump it with every incompatible change.
pub const SCHEMA_VERSION: u32 = 1;

/// A compiled service: the spec with every default applied and every intent resolved.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceIr {
    /// Always [`KIND`].
    pub kind: String,
    /// Always [`SCHEMA_VERSION`] when written by this version.
    pub schema_version: u32,
    /// The service name.
    pub service: String,
    /// Service or worker.
    pub workload: WorkloadKind,
    /// The target environment.
    pub environment: String,
    /// Where the program comes from.
    pub artifact: ArtifactIr,
    /// How to start it.
    pub run: RunIr,
    /// The port and health check; `None` for workers.
    pub network: Option<NetworkIr>,
    /// Instance counts, zones and machine class.
    pub capacity: CapacityIr,
    /// Environment variables filled from secrets, by reference.
    pub secrets: BTreeMap<String, SecretRef>,
    /// The managed database, if any.
    pub database: Option<DatabaseIr>,
    /// How releases replace each other.
    pub rollout: RolloutIr,
    /// Regions, primary first.
    pub regions: Vec<String>,
    /// Extra role permissions from the spec.
    pub iam: Vec<IamStatement>,
    /// Log group and retention.
    pub logs: LogsIr,
    /// How intent and defaults became the values above, with reasons.
    pub decision: Decision,
    /// The spec this IR was compiled from; compiling it again gives this IR.
    pub source: Spec,
}

/// Where the program comes from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArtifactIr {
    /// The build command, run in the spec's directory before a release is made.
    pub build: Option<String>,
    /// A local path, relative to the spec's directory.
    pub path: Option<String>,
    /// A download URL.
    pub url: Option<String>,
    /// The pinned digest, if the spec gives one.
    pub sha256: Option<String>,
}

/// How to start the program.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunIr {
    /// Program and arguments, placeholders unexpanded.
    pub command: Vec<String>,
    /// Plain environment variables.
    pub env: BTreeMap<String, String>,
}

/// Port and health check of a service.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkIr {
    /// The port the program listens on.
    pub port: u16,
    /// The HTTP health check.
    pub health: HealthIr,
}

/// An HTTP health check.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthIr {
    /// The probed path.
    pub path: String,
    /// Time between probes.
    pub interval: Duration,
    /// Time one probe may take.
    pub timeout: Duration,
    /// Successes before healthy.
    pub healthy_threshold: u32,
    /// Failures before unhealthy.
    pub unhealthy_threshold: u32,
}

/// How much compute runs where.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CapacityIr {
    /// Fewest instances.
    pub min: u32,
    /// Most instances.
    pub max: u32,
    /// Normal instance count.
    pub desired: u32,
    /// Zones of the primary region the instances spread over.
    pub zones: Vec<String>,
    /// Machine class.
    pub instance_type: String,
    /// Whether to use spot (interruptible) capacity.
    pub spot: bool,
    /// The queue whose backlog moves the count between `min` and `max` (`desired` is
    /// then where a deploy starts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue: Option<QueueIr>,
}

/// Queue-driven autoscaling, concrete.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueueIr {
    /// The PostgreSQL database the queue lives in (its URL is `secret://DATABASE/url`).
    pub database: String,
    /// The read-only SQL returning one row: backlog, then the oldest job's age in
    /// seconds (or NULL).
    pub query: String,
    /// Waiting jobs one instance takes.
    pub target_per_instance: u32,
    /// The least time between a change of direction, in milliseconds.
    pub cooldown_ms: u64,
}

/// A managed database with concrete sizing.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseIr {
    /// Database name.
    pub name: String,
    /// Engine.
    pub engine: DatabaseEngine,
    /// Engine major version.
    pub version: String,
    /// Size class.
    pub size: DatabaseSize,
    /// Provider-neutral instance class for the size.
    pub instance_class: String,
    /// Allocated storage.
    pub storage_gib: u32,
    /// Standby in a second zone with automatic failover.
    pub multi_az: bool,
    /// Backup retention.
    pub backup_retention: Duration,
    /// Schema migrations deploys run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub migrations: Option<MigrationIr>,
    /// Regions after the first, each with a streaming replica of the primary (the
    /// first region writes until a failover moves it).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub replica_regions: Vec<String>,
    /// Promote a replica without a person when the primary stops answering.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub automatic_failover: Option<AutoFailoverIr>,
}

/// `database.failover` with `automatic: true`, its defaults filled in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AutoFailoverIr {
    /// The most lag, bytes of log, a promotion may lose.
    pub max_lag_bytes: u64,
    /// How long the primary must not answer first.
    pub after: Duration,
}

/// A release's schema migration with its defaults filled in.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MigrationIr {
    /// Program and arguments (the program from the artifact).
    pub command: Vec<String>,
    /// What undoes it; `None` makes it irreversible.
    pub down: Option<Vec<String>>,
    /// When it runs.
    pub phase: MigrationPhase,
    /// How long it may run.
    pub timeout: Duration,
}

/// How a new release replaces the old one.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RolloutIr {
    /// Canary or all at once.
    pub strategy: Strategy,
    /// Traffic percentages, ascending, ending at 100 (`[100]` for all at once).
    pub steps: Vec<u32>,
    /// Time each step runs before analysis.
    pub bake: Duration,
    /// Canary thresholds.
    pub analysis: AnalysisIr,
    /// Deadline of each step.
    pub step_timeout: Duration,
    /// Drain time for leaving instances.
    pub drain_timeout: Duration,
    /// How long the previous release keeps running after success.
    pub retention: Duration,
    /// Plugin steps every deploy runs (absent when there are none, so earlier IR
    /// digests stay the same).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hooks: Vec<HookIr>,
}

/// A plugin's step in every deploy.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HookIr {
    /// The step kind, `PLUGIN.NAME`.
    pub step: String,
    /// Where it runs.
    pub at: skiff_spec::HookPoint,
    /// Its parameters.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub with: BTreeMap<String, String>,
}

/// Canary analysis thresholds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnalysisIr {
    /// Highest acceptable 5xx share.
    pub max_error_rate: Percentage,
    /// Highest acceptable p95 latency.
    pub max_p95_latency: Duration,
    /// Fewest requests for a verdict.
    pub min_requests: u32,
}

/// Log settings.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogsIr {
    /// The log group's name.
    pub group: String,
    /// Retention.
    pub retention: Duration,
}

/// How intent and defaults became concrete choices.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Decision {
    /// What availability asked for and got.
    pub availability_plan: AvailabilityPlan,
    /// What cost asked for and got.
    pub cost_plan: CostPlan,
    /// Every resolved field, where its value came from and why.
    pub choices: Vec<Choice>,
}

/// The availability side of the decision.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AvailabilityPlan {
    /// The availability level in effect.
    pub level: Availability,
    /// Whether the level was stated (`intent`) or defaulted.
    pub source: Source,
    /// Instances that will run.
    pub instances: u32,
    /// Zones they spread over.
    pub zones: u32,
    /// Whether the database has a standby in another zone.
    pub multi_az_database: bool,
    /// Why, in sentences.
    pub reasons: Vec<String>,
}

/// The cost side of the decision.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CostPlan {
    /// The cost level in effect.
    pub level: Cost,
    /// Whether the level was stated (`intent`) or defaulted.
    pub source: Source,
    /// Machine class.
    pub instance_type: String,
    /// Whether instances use spot capacity.
    pub spot: bool,
    /// Database size class, when there is a database.
    pub database_size: Option<DatabaseSize>,
    /// Why, in sentences.
    pub reasons: Vec<String>,
}

/// One resolved field.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Choice {
    /// The IR field, e.g. `capacity.desired`.
    pub field: String,
    /// The value chosen, as text.
    pub value: String,
    /// Where the value came from.
    pub source: Source,
    /// Why.
    pub reason: String,
}

/// Where a value came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// Written in the spec.
    Explicit,
    /// Derived from the spec's `intent`.
    Intent,
    /// Skiff's default.
    Default,
}
