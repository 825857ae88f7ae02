//! The provider-neutral shapes passed to and returned by the capability traits.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// An HTTP health check.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthCheck {
    /// Path probed with GET; 2xx is healthy.
    pub path: String,
    /// Time between probes.
    pub interval_ms: u64,
    /// Time one probe may take.
    pub timeout_ms: u64,
    /// Successes before healthy.
    pub healthy_threshold: u32,
    /// Failures before unhealthy.
    pub unhealthy_threshold: u32,
}

/// How instances find and verify their release (passed to the runner).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunnerConfig {
    /// The state bucket URL.
    pub bucket: String,
    /// The public key releases must be signed with (PEM).
    pub public_key_pem: String,
    /// Heartbeat period.
    pub heartbeat_ms: u64,
}

/// What each instance of a group runs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LaunchConfig {
    /// Machine class.
    pub instance_type: String,
    /// Interruptible capacity.
    pub spot: bool,
    /// Program and arguments (placeholders `${PORT}`, `${SERVICE}`, `${RELEASE}`, `${INSTANCE}`).
    pub command: Vec<String>,
    /// Environment of the runner itself (e.g. `RUST_LOG`). The program's environment
    /// comes from the signed release manifest, so it cannot change without a new signature.
    pub env: BTreeMap<String, String>,
    /// Environment filled from secrets on the instance: variable → `secret://…`.
    pub secrets: BTreeMap<String, String>,
    /// The port the program serves on, if any.
    pub port: Option<u16>,
    /// Health check of the program, if it serves.
    pub health: Option<HealthCheck>,
    /// Time to finish in-flight work on stop.
    pub drain_timeout_ms: u64,
    /// Role instances run as.
    pub role: Option<String>,
    /// Log group output goes to.
    pub log_group: Option<String>,
    /// Runner settings.
    pub runner: RunnerConfig,
}

/// An instance group: the instances of one release of one service.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupSpec {
    /// Group name, unique per provider (e.g. `hello-2026.11.22.1`).
    pub name: String,
    /// Service.
    pub service: String,
    /// Release.
    pub release: String,
    /// Instances to keep running.
    pub desired: u32,
    /// Zones to spread over.
    pub zones: Vec<String>,
    /// What each instance runs.
    pub launch: LaunchConfig,
    /// The operation creating it, recorded on what the provider creates (tags).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation: Option<String>,
    /// Where that operation's step is in its trace (W3C `traceparent`): the local
    /// provider starts the runners with it as `TRACEPARENT`, so they continue the trace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace: Option<String>,
}

/// Where an instance is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum InstanceState {
    /// Starting.
    Pending,
    /// Running.
    Running,
    /// Being stopped.
    Stopping,
    /// Gone.
    Terminated,
}

/// One instance as the provider sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceInfo {
    /// Instance id.
    pub id: String,
    /// State.
    pub state: InstanceState,
    /// Address traffic reaches it at.
    pub address: String,
    /// Port the program serves on.
    pub port: Option<u16>,
    /// The provider's own id (a PID, an EC2 instance id).
    pub provider_id: String,
    /// Zone.
    pub zone: String,
}

/// A group and its instances.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupInfo {
    /// Group name.
    pub name: String,
    /// Service.
    pub service: String,
    /// Release.
    pub release: String,
    /// Desired count.
    pub desired: u32,
    /// Instances.
    pub instances: Vec<InstanceInfo>,
    /// The provider's own id (an ASG name).
    pub provider_id: String,
}

impl GroupInfo {
    /// Instances in `Running` state.
    pub fn running(&self) -> Vec<&InstanceInfo> {
        self.instances.iter().filter(|i| i.state == InstanceState::Running).collect()
    }
}

/// A service's load balancer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoadBalancerSpec {
    /// Service.
    pub service: String,
    /// Port clients connect to.
    pub listener_port: u16,
}

/// A load balancer as it is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoadBalancerInfo {
    /// Service.
    pub service: String,
    /// Where clients connect (`host:port`).
    pub address: String,
    /// Forward weights in effect.
    pub weights: Vec<Weight>,
    /// The provider's own id (an ARN).
    pub provider_id: String,
}

/// A target group.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetGroupSpec {
    /// Name, unique per provider.
    pub name: String,
    /// Service it belongs to.
    pub service: String,
    /// Port targets serve on.
    pub port: u16,
    /// Health check.
    pub health: HealthCheck,
    /// Drain time of a deregistered target.
    pub deregistration_delay_ms: u64,
    /// What its targets are.
    #[serde(default)]
    pub target_type: TargetType,
}

/// What a target group's targets are.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TargetType {
    /// The provider's instances (their id).
    #[default]
    Instance,
    /// IP addresses outside Skiff (a backend being migrated from): the id is the IP.
    Ip,
}

/// A target to send traffic to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Target {
    /// Target id (the instance id).
    pub id: String,
    /// Address.
    pub address: String,
    /// Port.
    pub port: u16,
}

/// A forward weight: percent of the listener's traffic to a target group.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Weight {
    /// Target group.
    pub target_group: String,
    /// Percent, 0 to 100.
    pub weight: u32,
}

/// A target's health.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum HealthState {
    /// Registered, not yet judged.
    Initial,
    /// Passing.
    Healthy,
    /// Failing.
    Unhealthy,
    /// Deregistered; finishing in-flight requests.
    Draining,
}

/// Health of one target.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetHealth {
    /// Target id.
    pub id: String,
    /// State.
    pub state: HealthState,
    /// Why, when not healthy.
    pub reason: Option<String>,
}

/// Upper bounds (ms) of the latency histogram buckets; the last bucket is unbounded.
pub const LATENCY_BUCKETS_MS: [u64; 24] = [
    1,
    2,
    3,
    5,
    7,
    10,
    15,
    20,
    30,
    50,
    75,
    100,
    150,
    200,
    300,
    500,
    750,
    1_000,
    1_500,
    2_000,
    3_000,
    5_000,
    10_000,
    u64::MAX,
];

/// Cumulative counters of a target group; subtract two readings for a window.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrafficStats {
    /// Requests answered (or failed).
    pub requests: u64,
    /// 5xx answers and failed connections.
    pub errors: u64,
    /// Request counts per [`LATENCY_BUCKETS_MS`] bucket.
    pub latency_buckets: Vec<u64>,
}

impl TrafficStats {
    /// What happened between `earlier` and `self`.
    #[must_use]
    pub fn since(&self, earlier: &TrafficStats) -> TrafficStats {
        let buckets = self
            .latency_buckets
            .iter()
            .enumerate()
            .map(|(i, n)| n.saturating_sub(earlier.latency_buckets.get(i).copied().unwrap_or(0)))
            .collect();
        TrafficStats {
            requests: self.requests.saturating_sub(earlier.requests),
            errors: self.errors.saturating_sub(earlier.errors),
            latency_buckets: buckets,
        }
    }

    /// Share of errors, 0 to 1 (0 with no requests).
    pub fn error_rate(&self) -> f64 {
        if self.requests == 0 { 0.0 } else { self.errors as f64 / self.requests as f64 }
    }

    /// The `p`th percentile latency (0 < p ≤ 1) as a bucket upper bound in ms;
    /// `None` without requests.
    pub fn percentile_ms(&self, p: f64) -> Option<u64> {
        let total: u64 = self.latency_buckets.iter().sum();
        if total == 0 {
            return None;
        }
        let rank = (p * total as f64).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, n) in self.latency_buckets.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return Some(LATENCY_BUCKETS_MS.get(i).copied().unwrap_or(u64::MAX));
            }
        }
        Some(u64::MAX)
    }
}

/// A share of a load balancer's live requests copied to a target group that takes
/// no traffic of its own (a shadow release); its answers are discarded.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mirror {
    /// The target group that receives the copies.
    pub target_group: String,
    /// Percent of requests copied, 1 to 100.
    pub percent: u32,
}

/// What mirroring saw since it was set: the same requests answered by the primary
/// and by the mirror target group.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MirrorReport {
    /// Requests copied and answered by both sides.
    pub mirrored: u64,
    /// Requests not copied: bodies too large to buffer, or the mirror too far behind.
    pub skipped: u64,
    /// Requests whose two answers had different status codes.
    pub status_mismatches: u64,
    /// Up to 10 of them: `METHOD PATH: primary STATUS, mirror STATUS`.
    pub mismatch_samples: Vec<String>,
    /// The primary's answers to the mirrored requests.
    pub primary: TrafficStats,
    /// The mirror's answers to them.
    pub mirror: TrafficStats,
}

/// Which logs to read.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogQuery {
    /// Service.
    pub service: String,
    /// One instance only.
    pub instance: Option<String>,
    /// Only lines at or after this time.
    pub since_ms: Option<u64>,
    /// At most this many lines (the newest).
    pub limit: Option<usize>,
}

/// One log line.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogLine {
    /// When it was written.
    pub at_ms: u64,
    /// Which instance wrote it.
    pub instance: String,
    /// The text.
    pub line: String,
}

/// One permission of a role.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Permission {
    /// Action.
    pub action: String,
    /// Resource.
    pub resource: String,
}

/// A role with exactly these permissions.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoleSpec {
    /// Role name.
    pub name: String,
    /// Service it belongs to.
    pub service: String,
    /// Permissions.
    pub permissions: Vec<Permission>,
}

/// A role as it is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoleInfo {
    /// Role name.
    pub name: String,
    /// Permissions.
    pub permissions: Vec<Permission>,
    /// The provider's own id (an ARN).
    pub provider_id: String,
}

/// A database instance to create.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatabaseSpec {
    /// Instance id (unique per provider).
    pub id: String,
    /// Database name inside the instance.
    pub name: String,
    /// Engine, `postgres`.
    pub engine: String,
    /// Engine major version.
    pub version: String,
    /// Instance class.
    pub instance_class: String,
    /// Storage.
    pub storage_gib: u32,
    /// Standby in a second zone.
    pub multi_az: bool,
    /// Backup retention in days.
    pub backup_retention_days: u32,
}

/// A database instance as it is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatabaseInfo {
    /// Instance id.
    pub id: String,
    /// Status, e.g. `available`.
    pub status: String,
    /// Host.
    pub host: String,
    /// Port.
    pub port: u16,
    /// The provider's own id.
    pub provider_id: String,
}

/// A snapshot.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotInfo {
    /// Snapshot id.
    pub id: String,
    /// Instance it was taken from.
    pub database: String,
    /// Where the provider keeps it (`sha256:<digest>` of a blob, or a snapshot id).
    pub provider_ref: String,
    /// Size, if known.
    pub size_bytes: Option<u64>,
}

/// One table at a restore point: its rows and a checksum of their contents.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableManifest {
    /// `schema.table`.
    pub table: String,
    /// Row count.
    pub rows: u64,
    /// md5 over the rows' text, in order (empty for an empty table).
    pub checksum: String,
}

/// A backup: a base copy the provider restores from and a named restore point after it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupInfo {
    /// Backup id.
    pub id: String,
    /// Instance it was taken from.
    pub database: String,
    /// Where the provider keeps the copy (a directory, a snapshot ARN).
    pub provider_ref: String,
    /// The restore point's name, for a restore `--to` it.
    pub restore_point: String,
    /// When the point was taken (ms since the epoch, the database's clock).
    pub at_ms: u64,
    /// The point's log position, where the engine has one.
    pub lsn: Option<String>,
    /// Size of the copy, if known.
    pub size_bytes: Option<u64>,
    /// Every user table at the point (empty where the provider cannot look inside).
    pub tables: Vec<TableManifest>,
}

/// Where a point-in-time restore stops.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "at")]
pub enum RestoreTarget {
    /// A named restore point (a backup's).
    Point(String),
    /// A time, ms since the epoch: every transaction committed up to it.
    Time(u64),
    /// Everything archived.
    Latest,
}

/// How to connect to a database; the password stays behind a reference.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnectionInfo {
    /// Host.
    pub host: String,
    /// Port.
    pub port: u16,
    /// Database name.
    pub database: String,
    /// User.
    pub user: String,
    /// A secret reference holding the full connection URL (with its password).
    pub url_ref: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_and_deltas() {
        let mut a = TrafficStats { requests: 0, errors: 0, latency_buckets: vec![0; LATENCY_BUCKETS_MS.len()] };
        let mut b = a.clone();
        b.requests = 100;
        b.errors = 3;
        b.latency_buckets[2] = 90; // <= 3ms
        b.latency_buckets[15] = 10; // <= 500ms
        let d = b.since(&a);
        assert_eq!(d.percentile_ms(0.5), Some(3));
        assert_eq!(d.percentile_ms(0.95), Some(500));
        assert!((d.error_rate() - 0.03).abs() < 1e-9);
        a.requests = 100;
        assert_eq!(b.since(&b).percentile_ms(0.95), None);
    }

    #[test]
    fn lsns_are_byte_positions() {
        assert_eq!(lsn_bytes("0/16B3748"), Some(0x16B_3748));
        assert_eq!(lsn_bytes("1/0"), Some(1 << 32));
        assert_eq!(lsn_lag("1/10", "1/0"), Some(16));
        assert_eq!(lsn_lag("0/5", "0/9"), Some(0));
        assert_eq!(lsn_bytes("nope"), None);
        assert_eq!(lsn_bytes("0/"), None);
    }
}

/// A database login as a rotation sees it: the user and the version of the secret value
/// that holds its password (never the password itself).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Credential {
    /// The database user.
    pub user: String,
    /// The secret value's version (`sv-` and twelve hex digits of its SHA-256).
    pub version: String,
}

/// A staged rotation: the login in use and the one waiting to replace it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StagedLogin {
    /// What the reference resolves to now.
    pub current: Credential,
    /// What it will resolve to after the rotation's last step.
    pub pending: Credential,
}

/// A key secrets are encrypted with at rest (a KMS key; locally a key version of the
/// encrypted store).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyInfo {
    /// The key's id (a KMS key id; `local-N`).
    pub id: String,
    /// The provider's full name for it (an ARN), or the id again.
    pub provider_id: String,
    /// When it was made (ms since the epoch; 0 when unknown).
    pub created_at_ms: u64,
    /// When its deletion is due, once scheduled.
    pub deletion_at_ms: Option<u64>,
    /// The secret references encrypted with it.
    pub sealed: Vec<String>,
}

/// A task of a release to run once (see `Compute::run_task`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskSpec {
    /// Names the task's instance (unique per operation and step).
    pub id: String,
    /// The release's group: its launch settings are the task instance's.
    pub group: GroupSpec,
    /// `migrate` or `migrate-down`.
    pub task: String,
    /// How long it may run, ms (the runner enforces the release's own timeout too).
    pub timeout_ms: u64,
}

/// How a task ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskOutcome {
    /// Its exit code (124: past its timeout).
    pub exit_code: i32,
    /// The end of its output (stdout and stderr, at most 16 KiB).
    pub output: String,
    /// How long it ran, ms.
    pub duration_ms: u64,
}

/// How much a difference matters to a security reviewer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Severity {
    /// Bookkeeping (a missing tag).
    Low,
    /// Capacity or routing off its desired value.
    Medium,
    /// A security setting changed (an extra policy, a swapped launch template).
    High,
    /// Exposure now (SSH open to the world, `*` on `*`, a public bucket).
    Critical,
}

impl Severity {
    /// `low`, `medium`, `high` or `critical`.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }
}

/// What Skiff made for a service and what it should look like, for [`crate::Posture`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PostureScope {
    /// The service.
    pub service: String,
    /// The serving release's group as Skiff launched it (recorded in the ledger), when known.
    pub group: Option<GroupSpec>,
    /// Skiff's role for the service.
    pub role: Option<String>,
    /// The target groups Skiff made for the service's releases.
    pub target_groups: Vec<String>,
    /// The listener port clients connect to, if the service serves.
    pub listener_port: Option<u16>,
    /// The state bucket URL.
    pub state: String,
}

/// A reversible repair of one [`SettingDrift`]: provider-specific actions for
/// [`crate::Posture::fix`], `undo` putting back what `apply` replaced.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fix {
    /// What `apply` does, for people.
    pub description: String,
    /// The repair.
    pub apply: serde_json::Value,
    /// Its compensation.
    pub undo: serde_json::Value,
}

/// One security-relevant setting that differs from what Skiff wrote.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SettingDrift {
    /// Field path, e.g. `identity.inline_policies` or `network.ingress`.
    pub path: String,
    /// The provider's id of the resource (a role, security group, launch template).
    pub resource: String,
    /// What Skiff wrote.
    pub desired: serde_json::Value,
    /// What is there.
    pub actual: serde_json::Value,
    /// How much it matters.
    pub severity: Severity,
    /// The difference in one sentence.
    pub summary: String,
    /// A reversible repair the repair saga can run, if there is one.
    pub fix: Option<Fix>,
    /// Otherwise what to do (a command or an instruction).
    pub repair: Option<String>,
}

/// What an instance is in replication.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReplicaRole {
    /// Accepts writes.
    Primary,
    /// Replays another instance's log; read-only.
    Replica,
    /// Fenced after a failover: refuses writes whenever it runs.
    Fenced,
}

/// An instance's place in replication, as measured now.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Replication {
    /// Instance id.
    pub id: String,
    /// The region it runs in.
    pub region: String,
    /// Its role.
    pub role: ReplicaRole,
    /// Whether it answered (a stopped or unreachable instance reports what it last was).
    pub reachable: bool,
    /// A primary's current write position, a replica's replayed position
    /// (PostgreSQL's `X/Y` notation).
    pub lsn: Option<String>,
    /// A replica's last received position.
    pub received_lsn: Option<String>,
    /// The instance a replica follows.
    pub source: Option<String>,
    /// Whether new transactions are read-only (a frozen primary, a replica).
    pub read_only: bool,
}

/// A log position in bytes: PostgreSQL's `X/Y` LSN notation (two hexadecimal halves).
pub fn lsn_bytes(lsn: &str) -> Option<u64> {
    let (hi, lo) = lsn.split_once('/')?;
    let hi = u64::from_str_radix(hi, 16).ok()?;
    let lo = u64::from_str_radix(lo, 16).ok()?;
    (hi <= u64::from(u32::MAX) && lo <= u64::from(u32::MAX)).then_some((hi << 32) | lo)
}

/// How many bytes of log `behind` has still to replay to reach `ahead` (0 when it is
/// level or ahead); `None` when either is not an LSN.
pub fn lsn_lag(ahead: &str, behind: &str) -> Option<u64> {
    Some(lsn_bytes(ahead)?.saturating_sub(lsn_bytes(behind)?))
}

/// One region's entry in a service's global traffic front (what DNS weights stand for).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegionEndpoint {
    /// The region.
    pub region: String,
    /// Its load balancer's address (`host:port` locally, a DNS name on a cloud).
    pub address: String,
}

/// A service's global traffic front: one endpoint per region.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FrontSpec {
    /// The service.
    pub service: String,
    /// Every region's endpoint.
    pub regions: Vec<RegionEndpoint>,
    /// How a region's endpoint is judged healthy.
    pub health: HealthCheck,
    /// The weights a new front starts with (an existing one keeps its own).
    pub initial: Vec<RegionWeight>,
}

/// Percent of a service's global traffic sent to one region.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct RegionWeight {
    /// The region.
    pub region: String,
    /// Percent, 0 to 100.
    pub weight: u32,
}

/// A global traffic front as it is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FrontInfo {
    /// The service.
    pub service: String,
    /// Where clients connect (`host:port`, or the record's DNS name).
    pub address: String,
    /// The weights in effect, read back.
    pub weights: Vec<RegionWeight>,
    /// The regions whose endpoint passes its health check now (a weighted region
    /// that is not among them gets no traffic).
    #[serde(default)]
    pub healthy: Vec<String>,
}
