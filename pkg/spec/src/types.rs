//! The skiff.yaml document as written by a person: every field optional unless the
//! service cannot exist without it. Defaults are applied later, by the IR.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::values::{
    DnsLabel, Duration, EnvName, HttpPath, IamAction, InstanceType, Percentage, Region, SecretRef, Sha256Hex, StepKind,
};

/// A service spec: one `skiff.yaml`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "Skiff service spec", description = "One skiff.yaml: a service or worker and how to run it.")]
pub struct Spec {
    /// The service name, a DNS label such as `payments-api`.
    pub service: DnsLabel,
    /// `service` (serves HTTP behind the load balancer) or `worker` (no port). Default `service`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<WorkloadKind>,
    /// The environment this spec deploys to, such as `production` or `staging`. Default `production`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment: Option<DnsLabel>,
    /// Where the program comes from.
    pub artifact: Artifact,
    /// How to start the program.
    pub run: Run,
    /// The TCP port the service listens on (required for `kind: service`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// How to tell that an instance is healthy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<Health>,
    /// How many instances to run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instances: Option<Instances>,
    /// Instance bounds and the queue whose backlog moves the count between them (instead
    /// of `instances`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale: Option<Scale>,
    /// High-level knobs the compiler turns into concrete choices.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub intent: Option<Intent>,
    /// Environment variables resolved from secrets on the instance: `NAME: secret://secret/key`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub secrets: BTreeMap<EnvName, SecretRef>,
    /// A managed database for this service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database: Option<Database>,
    /// How a new release replaces the running one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout: Option<Rollout>,
    /// Regions to run in; the first is the primary. Default `[us-east-1]`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub regions: Vec<Region>,
    /// Machine resources.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<Resources>,
    /// Extra permissions for the service's role, beyond what Skiff grants itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iam: Option<Iam>,
    /// Log retention.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logs: Option<Logs>,
    /// Values for one environment, laid over the rest when the spec is compiled for it
    /// (`skiff release promote --to ENV`, `--env ENV`): port, instances, intent, resources
    /// and secrets differ between environments; the program and how it runs do not.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub environments: BTreeMap<DnsLabel, Overlay>,
    /// Runtime addons installed plugins serve: each checks the spec and may add
    /// environment variables and secret references before it is compiled.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub addons: Vec<AddonUse>,
    /// How the service talks to other services: `mtls: true` puts it in its
    /// environment's mesh (the mTLS plugin).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<Network>,
}

/// Service-to-service networking.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Network {
    /// Calls between services over mutual TLS: every instance gets a short-lived
    /// certificate from the environment's CA and a mesh port that refuses callers
    /// without one. Needs the mTLS plugin (`skiff plugin install plugins/mtls/plugin.yaml`).
    #[serde(default)]
    pub mtls: bool,
    /// Services this one calls through the mesh; each is reached at the URL in
    /// `SKIFF_UPSTREAM_<NAME>` (`http://127.0.0.1:PORT`, mutual TLS from there on).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub upstreams: Vec<DnsLabel>,
    /// How long an instance certificate lives; renewed two thirds in. Default `1h`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate_ttl: Option<Duration>,
}

/// One runtime addon a spec uses.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AddonUse {
    /// The addon, `PLUGIN.NAME`, served by an installed plugin.
    pub addon: StepKind,
    /// Parameters the addon reads (text values).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub with: BTreeMap<String, String>,
}

/// What one environment changes. Each field given replaces the spec's (instances and
/// intent field by field; secrets variable by variable).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Overlay {
    /// The port in this environment (two environments sharing one machine on the local
    /// provider need two).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// Instance counts in this environment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instances: Option<Instances>,
    /// Intent in this environment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub intent: Option<Intent>,
    /// Machine resources in this environment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<Resources>,
    /// Secret references in this environment (added to, or replacing, the spec's).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub secrets: BTreeMap<EnvName, SecretRef>,
}

impl Spec {
    /// The spec as it runs in environment `env`: `environment` set to it, its overlay
    /// (if any) laid over the rest, and no overlays left (so compiling the result twice
    /// gives the same IR).
    #[must_use]
    pub fn for_environment(&self, env: &DnsLabel) -> Spec {
        let mut out = self.clone();
        out.environment = Some(env.clone());
        out.environments = BTreeMap::new();
        let Some(o) = self.environments.get(env) else { return out };
        out.port = o.port.or(out.port);
        if let Some(i) = &o.instances {
            let base = out.instances.take().unwrap_or(Instances { min: None, max: None, desired: None });
            out.instances = Some(Instances {
                min: i.min.or(base.min),
                max: i.max.or(base.max),
                desired: i.desired.or(base.desired),
            });
        }
        if let Some(i) = &o.intent {
            let base = out.intent.take().unwrap_or(Intent { availability: None, cost: None });
            out.intent =
                Some(Intent { availability: i.availability.or(base.availability), cost: i.cost.or(base.cost) });
        }
        if let Some(r) = &o.resources {
            out.resources = Some(r.clone());
        }
        out.secrets.extend(o.secrets.clone());
        out
    }
}

/// What kind of workload a spec describes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum WorkloadKind {
    /// Serves HTTP on `port` behind the load balancer.
    Service,
    /// Runs without a port or load balancer (queue consumers, schedulers).
    Worker,
}

/// Where the program comes from: a local `path` (optionally built first) or a `url` pinned by `sha256`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Artifact {
    /// A shell command run before the release is made, such as `cargo build --release -p api`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub build: Option<String>,
    /// The program file, relative to the spec's directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Where to download the program from (needs `sha256`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// The program's SHA-256 digest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<Sha256Hex>,
}

/// How to start the program.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Run {
    /// The program and its arguments; `${PORT}` is replaced by the instance's port.
    pub command: Vec<String>,
    /// Plain environment variables (not secrets).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<EnvName, String>,
}

/// An HTTP health check.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Health {
    /// The path probed with GET; a 2xx answer is healthy. Default `/healthz`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<HttpPath>,
    /// Time between probes. Default `5s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<Duration>,
    /// How long one probe may take. Default `2s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Duration>,
    /// Consecutive successes before an instance is healthy (1-10). Default 2.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healthy_threshold: Option<u32>,
    /// Consecutive failures before an instance is unhealthy (1-10). Default 2.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unhealthy_threshold: Option<u32>,
}

/// Instance counts; `min <= desired <= max`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Instances {
    /// Fewest instances.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<u32>,
    /// Most instances.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<u32>,
    /// Instances to run normally.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub desired: Option<u32>,
}

/// Autoscaling from a queue: desired = ⌈backlog ÷ `queue.target_per_instance`⌉, kept
/// within `min..=max`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Scale {
    /// Fewest instances, when the queue is empty. Default 0 for a worker, 1 for a service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<u32>,
    /// Most instances, however long the queue.
    pub max: u32,
    /// The queue whose backlog sets the count.
    pub queue: QueueScale,
}

/// Where the backlog is read and how much of it one instance takes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct QueueScale {
    /// The queue's kind; only `postgres` (a table, or a query, in a PostgreSQL database).
    pub kind: QueueKind,
    /// The database the queue lives in (its URL is `secret://DATABASE/url`). Default: the
    /// spec's `database`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database: Option<DnsLabel>,
    /// A table holding one row per waiting job: the backlog is its row count.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table: Option<String>,
    /// Instead of `table`: a read-only query returning one row — the backlog, then
    /// (optionally) the oldest waiting job's age in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query: Option<String>,
    /// A timestamp column of `table` the oldest job's age is read from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub age_column: Option<String>,
    /// Waiting jobs one instance is meant to take.
    pub target_per_instance: u32,
    /// The least time between a scale-out and a scale-in (either order). Default `60s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cooldown: Option<Duration>,
}

/// Queue kinds autoscaling reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum QueueKind {
    /// A PostgreSQL table or query.
    Postgres,
}

/// High-level knobs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Intent {
    /// How much downtime is acceptable. Default `standard`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub availability: Option<Availability>,
    /// Where to sit between cheap and fast. Default `balanced`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost: Option<Cost>,
}

/// Availability intent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Availability {
    /// At least 3 instances over at least 2 zones; multi-AZ database.
    High,
    /// 2 instances over 2 zones.
    Standard,
    /// 1 instance.
    Low,
}

/// Cost intent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Cost {
    /// Smaller machines; spot capacity for workers.
    Low,
    /// General-purpose machines.
    Balanced,
    /// Larger, compute-optimised machines.
    Performance,
}

/// A managed database.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Database {
    /// The database's name, a DNS label.
    pub name: DnsLabel,
    /// The engine; only `postgres`.
    pub engine: DatabaseEngine,
    /// The engine's major version, such as `"15"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// `small`, `medium` or `large`. Default follows the cost intent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<DatabaseSize>,
    /// Backup policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backups: Option<Backups>,
    /// Schema migrations each deploy runs once, from the new release's artifact.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub migrations: Option<Migrations>,
    /// What happens when the primary stops answering (a service in two or more regions,
    /// each after the first with a streaming replica).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failover: Option<DatabaseFailover>,
}

/// Failover without a person: the replica is promoted when the primary has not
/// answered for `after`, only when it was within `max_lag_bytes` of the primary.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DatabaseFailover {
    /// Promote the replica automatically. Default `false`: a person runs
    /// `skiff failover stack`.
    #[serde(default)]
    pub automatic: bool,
    /// The most replication lag, in bytes of log, an automatic failover may lose;
    /// above it the database stays down for a person to decide. Default 1 MiB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_lag_bytes: Option<u64>,
    /// How long the primary must not answer before the failover (1s-1h). Default `10s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<Duration>,
}

/// Schema migrations: a command that ships in the release's artifact (signed and
/// digest-pinned like the service), run once per release on one instance of it with
/// the database's secret resolved.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Migrations {
    /// The program and its arguments, as in `run.command`.
    pub command: Vec<String>,
    /// Undoes the migration; without it the migration is irreversible.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub down: Option<Vec<String>>,
    /// `before_canary` (the default: both releases meet the new schema) or
    /// `after_promote` (the old release has stopped taking traffic).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<MigrationPhase>,
    /// How long it may run (1s-1h). Default `5m`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Duration>,
}

/// When a deploy runs its migration.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum MigrationPhase {
    /// Before the new release's instances start, so before any traffic moves to it.
    BeforeCanary,
    /// After the new release is promoted, before the old one is retired.
    AfterPromote,
}

/// Database engines.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum DatabaseEngine {
    /// PostgreSQL.
    Postgres,
}

/// Database size classes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum DatabaseSize {
    /// 2 vCPU burstable, 20 GiB.
    Small,
    /// 2 vCPU, 100 GiB.
    Medium,
    /// 4 vCPU memory-optimised, 500 GiB.
    Large,
}

/// Backup policy.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Backups {
    /// How long automated backups are kept (1d-35d). Default `7d`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention: Option<Duration>,
}

/// How a new release replaces the running one.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Rollout {
    /// `canary` (weighted steps with analysis) or `all_at_once`. Default `canary` for services.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strategy: Option<Strategy>,
    /// Canary settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary: Option<Canary>,
    /// Deadline of each rollout step; a missed deadline rolls back. Default `10m`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step_timeout: Option<Duration>,
    /// How long in-flight requests may finish when an instance leaves. Default `30s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drain_timeout: Option<Duration>,
    /// How long the previous release keeps running after a successful rollout. Default `0s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention: Option<Duration>,
    /// Steps installed plugins serve, run inside every deploy (`skiff plugin list`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hooks: Vec<Hook>,
}

/// A plugin's step run inside every deploy of the service.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Hook {
    /// The step kind, served by an installed plugin, e.g. `changelog.append`.
    pub step: StepKind,
    /// When it runs: `before_start` (before any instance of the release starts),
    /// `before_traffic` (the release is up, before any traffic moves) or `after_promote`
    /// (the release took all traffic and is recorded).
    pub at: HookPoint,
    /// Parameters the plugin's step reads (text values).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub with: BTreeMap<String, String>,
}

/// Where in a deploy a hook runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum HookPoint {
    /// Before any instance of the release starts (what the instances need, made first).
    BeforeStart,
    /// After the release's instances are up (and registered), before traffic moves.
    BeforeTraffic,
    /// After the release is promoted.
    AfterPromote,
}

/// Rollout strategies.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// Shift traffic in weighted steps, analysing each.
    Canary,
    /// Replace everything once the new instances are healthy.
    AllAtOnce,
}

/// Canary settings.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Canary {
    /// Traffic percentages, ascending in 1..=100, ending at 100. Default `[5, 25, 50, 100]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub steps: Option<Vec<u32>>,
    /// How long each step runs before analysis. Default `2m`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bake: Option<Duration>,
    /// Thresholds the canary must meet at each step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub analysis: Option<Analysis>,
}

/// Canary analysis thresholds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Analysis {
    /// Highest acceptable share of 5xx answers. Default `1%`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_error_rate: Option<Percentage>,
    /// Highest acceptable 95th percentile latency. Default `500ms`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_p95_latency: Option<Duration>,
    /// Fewest canary requests for a verdict; fewer is inconclusive and pauses. Default 20.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_requests: Option<u32>,
}

/// Machine resources.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Resources {
    /// The machine class, such as `t4g.small`. Default follows the cost intent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_type: Option<InstanceType>,
}

/// Extra permissions.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Iam {
    /// Statements allowed to the service's role.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow: Vec<IamStatement>,
}

/// One allowed action on one resource.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct IamStatement {
    /// A named action such as `s3:GetObject`.
    pub action: IamAction,
    /// The resource, such as `arn:aws:s3:::payments-assets/*`.
    pub resource: String,
}

/// Log settings.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Logs {
    /// How long logs are kept (1d-3650d). Default `30d`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention: Option<Duration>,
}

macro_rules! names {
    ($($ty:ident { $($variant:ident => $text:literal),+ $(,)? })+) => {$(
        impl $ty {
            /// The name as written in a spec.
            pub const fn as_str(self) -> &'static str {
                match self { $($ty::$variant => $text),+ }
            }
        }

        impl std::fmt::Display for $ty {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    )+};
}

names! {
    WorkloadKind { Service => "service", Worker => "worker" }
    Availability { High => "high", Standard => "standard", Low => "low" }
    Cost { Low => "low", Balanced => "balanced", Performance => "performance" }
    DatabaseEngine { Postgres => "postgres" }
    DatabaseSize { Small => "small", Medium => "medium", Large => "large" }
    Strategy { Canary => "canary", AllAtOnce => "all_at_once" }
}
