//! The ledger's document types. Each is stored through [`crate::codec`], which adds
//! `kind` and `schema_version`; the stored form of each is snapshot-tested.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::codec::{Cas, CasDocument, Document};

macro_rules! document {
    ($ty:ident $(<$d:ident>)?, $kind:literal, $version:literal) => {
        impl$(<$d: Serialize + serde::de::DeserializeOwned>)? Document for $ty$(<$d>)? {
            const KIND: &'static str = $kind;
            const SCHEMA_VERSION: u32 = $version;
        }
    };
    ($ty:ident $(<$d:ident>)?, $kind:literal, $version:literal, cas) => {
        document!($ty $(<$d>)?, $kind, $version);
        impl$(<$d: Serialize + serde::de::DeserializeOwned>)? CasDocument for $ty$(<$d>)? {
            fn cas(&self) -> &Cas {
                &self.cas
            }
            fn cas_mut(&mut self) -> &mut Cas {
                &mut self.cas
            }
        }
    };
}

/// `bucket.json`: marks an initialized bucket.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BucketDoc {
    /// The key layout, `v1`.
    pub layout: String,
    /// When it was initialized (RFC 3339).
    pub created_at: String,
    /// Who initialized it.
    pub created_by: String,
}
document!(BucketDoc, "skiff.bucket", 1);

/// `services/<svc>/state.json`: what a service runs and wants.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceState {
    /// CAS metadata.
    pub cas: Cas,
    /// The service.
    pub service: String,
    /// Digest of the desired IR (`specs/<digest>.json`).
    pub spec_digest: Option<String>,
    /// The release taking traffic now.
    pub current_release: Option<String>,
    /// The last release that finished a rollout healthy.
    pub stable_release: Option<String>,
    /// A release being rolled out, or whose rollout failed (cleared by promotion).
    pub candidate_release: Option<String>,
    /// The stable release before the current one (what `rollback --to previous-stable` means
    /// once the last rollout succeeded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_stable: Option<String>,
    /// The operation working on the service, if any.
    pub active_operation: Option<String>,
    /// A release running beside the stable one without user traffic (`skiff deploy
    /// --shadow`), until a traffic cutover promotes it or another shadow replaces it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shadow_release: Option<String>,
    /// The region whose database instance takes writes, once a failover moved it from
    /// the first region in the spec (changed in the same write that records the
    /// promotion, so reconcile never sees the two disagree).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub writer_region: Option<String>,
    /// Percent of global traffic per region, as the last traffic shift of a failover
    /// set it (empty: all of it to the region that writes).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub region_weights: BTreeMap<String, u32>,
    /// Last change, milliseconds since the epoch.
    pub updated_at_ms: u64,
}
document!(ServiceState, "skiff.service_state", 1, cas);

/// Whether actual state matches desired state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SyncStatus {
    /// Actual matches desired.
    #[default]
    InSync,
    /// Something differs; see the differences.
    Drifted,
}

impl SyncStatus {
    /// `IN_SYNC` or `DRIFTED`.
    pub fn as_str(self) -> &'static str {
        match self {
            SyncStatus::InSync => "IN_SYNC",
            SyncStatus::Drifted => "DRIFTED",
        }
    }
}

/// One field where actual state differs from desired state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Difference {
    /// Field path, e.g. `instances.running` or `traffic.weights`.
    pub path: String,
    /// What the ledger wants.
    pub desired: serde_json::Value,
    /// What the provider has.
    pub actual: serde_json::Value,
    /// What brings it back.
    pub repair: String,
    /// How much it matters (`medium` in records written before severities).
    #[serde(default = "medium")]
    pub severity: skiff_pluginapi::Severity,
    /// The reversible repair the `repair` saga runs for it, if there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fix: Option<skiff_pluginapi::Fix>,
    /// The Terraform-owned resource it is on (`skiff adopt terraform`): Terraform's to fix.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub terraform_owned: Option<String>,
}

fn medium() -> skiff_pluginapi::Severity {
    skiff_pluginapi::Severity::Medium
}

/// `services/<svc>/reconcile.json`: the last comparison of desired and actual state.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReconcileDoc {
    /// CAS metadata.
    pub cas: Cas,
    /// The service.
    pub service: String,
    /// The release the ledger wants serving.
    pub release: Option<String>,
    /// The verdict.
    pub status: SyncStatus,
    /// Field-level differences, empty when in sync.
    pub differences: Vec<Difference>,
    /// When it was checked, milliseconds since the epoch.
    pub checked_at_ms: u64,
    /// Who checked (`skiff reconcile`, a worker).
    pub checked_by: String,
}
document!(ReconcileDoc, "skiff.reconcile", 1, cas);

impl ServiceState {
    /// A service nothing has been recorded for yet.
    pub fn new(service: &str) -> Self {
        ServiceState { service: service.to_owned(), ..ServiceState::default() }
    }
}

/// `operations/<op>/intent.json`: who asked for what, and why. Immutable.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OperationIntent {
    /// The operation id.
    pub op_id: String,
    /// The saga kind, e.g. `deploy`.
    pub saga: String,
    /// The service it acts on.
    pub service: Option<String>,
    /// Who asked.
    pub actor: String,
    /// Why.
    pub reason: String,
    /// The caller's idempotency key.
    pub idempotency_key: String,
    /// Saga parameters.
    pub params: Value,
    /// When, milliseconds since the epoch.
    pub created_at_ms: u64,
    /// Where the operation's trace is: whoever drives it, in any process and after any
    /// crash, continues this trace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace: Option<TraceContext>,
}
document!(OperationIntent, "skiff.operation_intent", 1);

/// A span's place in a trace, as W3C trace context.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TraceContext {
    /// `00-<trace id>-<span id>-<flags>`.
    pub traceparent: String,
    /// Vendor state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tracestate: Option<String>,
}

/// The status of an operation (DESIGN §4).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum OpStatus {
    /// Planned, not started.
    Planned,
    /// Waiting at an approval gate.
    AwaitingApproval,
    /// Steps are running.
    Running,
    /// Paused by a person or an inconclusive analysis.
    Paused,
    /// Undoing completed steps.
    Compensating,
    /// Finished; every step succeeded.
    Succeeded,
    /// Failed and could not be fully compensated.
    Failed,
    /// Failed and compensated back.
    Compensated,
    /// Cancelled by a person.
    Cancelled,
}

impl OpStatus {
    /// Whether the operation is over.
    pub fn is_terminal(self) -> bool {
        matches!(self, OpStatus::Succeeded | OpStatus::Failed | OpStatus::Compensated | OpStatus::Cancelled)
    }

    /// The name as stored.
    pub fn as_str(self) -> &'static str {
        match self {
            OpStatus::Planned => "planned",
            OpStatus::AwaitingApproval => "awaiting_approval",
            OpStatus::Running => "running",
            OpStatus::Paused => "paused",
            OpStatus::Compensating => "compensating",
            OpStatus::Succeeded => "succeeded",
            OpStatus::Failed => "failed",
            OpStatus::Compensated => "compensated",
            OpStatus::Cancelled => "cancelled",
        }
    }
}

/// `operations/<op>/state.json`: status and progress; written only by the lease holder.
/// `detail` belongs to the saga engine.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OperationState<D = Value> {
    /// CAS metadata.
    pub cas: Cas,
    /// The operation id.
    pub op_id: String,
    /// The saga kind.
    pub saga: String,
    /// The service it acts on.
    pub service: Option<String>,
    /// Where it is.
    pub status: OpStatus,
    /// The highest lease token that wrote this document; lower tokens are fenced.
    pub fence: u64,
    /// Last change, milliseconds since the epoch.
    pub updated_at_ms: u64,
    /// Engine-owned progress (cursor, step results).
    pub detail: D,
}
document!(OperationState<D>, "skiff.operation_state", 1, cas);

/// `operations/<op>/events/<seq>.json`: one step of an operation's history. Immutable.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Event {
    /// The operation.
    pub op_id: String,
    /// Position in the log, from 1, gap-free.
    pub seq: u64,
    /// Unique id; an ambiguous append is resolved by it.
    pub event_id: String,
    /// When, milliseconds since the epoch.
    pub at_ms: u64,
    /// What happened, e.g. `step_started`.
    #[serde(rename = "type")]
    pub event_type: String,
    /// Details.
    pub data: Value,
}
document!(Event, "skiff.event", 1);

/// `leases/<scope>.json`: who may act on a scope, until when, with which fencing token.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Lease {
    /// CAS metadata.
    pub cas: Cas,
    /// The scope.
    pub scope: String,
    /// The holder's id.
    pub holder: String,
    /// Fencing token: grows by one each time the lease changes hands.
    pub token: u64,
    /// When the holder acquired it.
    pub acquired_at_ms: u64,
    /// When it lapses unless renewed.
    pub expires_at_ms: u64,
    /// Whether the holder gave it up.
    pub released: bool,
}
document!(Lease, "skiff.lease", 1, cas);

/// Health of an instance as its runner reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum MemberHealth {
    /// Started, not yet passing health checks.
    Starting,
    /// Passing health checks.
    Healthy,
    /// Failing health checks or crash-looping.
    Unhealthy,
    /// Leaving: finishing in-flight work.
    Draining,
    /// Stopped.
    Stopped,
    /// Refused to start (signature or digest check failed).
    Refused,
}

/// What the runner reports beyond health.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunnerDetail {
    /// What the runner is doing: verifying, starting, running, backing-off, draining, stopped, refused.
    pub phase: String,
    /// The program's process id.
    pub pid: Option<u32>,
    /// The program's port.
    pub port: u16,
    /// The runner's own process id.
    pub runner_pid: u32,
    /// Times the program was restarted.
    pub restarts: u32,
    /// Restarting too often to be useful.
    pub crash_loop: bool,
    /// The program's resident memory, KiB.
    pub rss_kb: Option<u64>,
    /// The program's CPU use over the last heartbeat, percent of one core.
    pub cpu_percent: Option<f64>,
    /// A taxonomy code when refused or failing (SIGNATURE_INVALID, DIGEST_MISMATCH, ...).
    pub code: Option<String>,
    /// Why, for people.
    pub reason: Option<String>,
    /// How the program last exited.
    pub last_exit: Option<String>,
    /// When the runner started.
    pub started_at_ms: u64,
    /// The version of every secret the program was given, by reference
    /// (`skiff_secrets::version` of the value): rotations read it as evidence of which
    /// credential each consumer uses.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub secrets: BTreeMap<String, String>,
    /// Its mesh port and certificate, for a service with `network.mtls`: where its
    /// callers find it, and what the mTLS plugin's doctor check reads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mesh: Option<MeshDetail>,
}

/// A member's place in the mesh (`network.mtls`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MeshDetail {
    /// The mesh port's address (`host:port`): callers connect here with mutual TLS.
    pub address: String,
    /// Who its certificate names (`spiffe://skiff/ENV/SERVICE`).
    pub identity: String,
    /// The certificate's serial number, hex.
    pub serial: String,
    /// When the certificate was issued, ms since the epoch.
    pub issued_at_ms: u64,
    /// When it stops being valid, ms since the epoch.
    pub not_after_ms: u64,
    /// Certificates issued since the runner started (1: never renewed).
    pub issued: u32,
}

/// `members/<svc>/<instance>.json`: a runner's heartbeat. `detail` belongs to the runner.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Member<D = Value> {
    /// CAS metadata.
    pub cas: Cas,
    /// The service.
    pub service: String,
    /// The instance id.
    pub instance: String,
    /// The release it runs.
    pub release: String,
    /// Its health.
    pub health: MemberHealth,
    /// Last heartbeat, milliseconds since the epoch.
    pub updated_at_ms: u64,
    /// Runner-owned details (pid, port, restarts, RSS, CPU, refusal reason).
    pub detail: D,
}
document!(Member<D>, "skiff.member", 1, cas);

/// `audit/<date>/<ts>-<id>.json`: one audited action. Immutable.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditEntry {
    /// Unique id.
    pub id: String,
    /// When, milliseconds since the epoch.
    pub at_ms: u64,
    /// Who.
    pub actor: String,
    /// What, e.g. `state.init`, `deploy.start`.
    pub action: String,
    /// On what, e.g. a service or operation.
    pub target: String,
    /// The outcome's failure code.
    pub outcome: String,
    /// Details.
    pub details: Value,
}
document!(AuditEntry, "skiff.audit", 1);

/// One table of a backup's manifest.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TableRecord {
    /// `schema.table`.
    pub table: String,
    /// Rows at the restore point.
    pub rows: u64,
    /// md5 over the rows' text, in order.
    pub checksum: String,
}

/// `databases/<db>/backups/<id>.json`: a backup a restore can go back to. Immutable.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackupRecord {
    /// Backup id (the operation's id).
    pub id: String,
    /// The database.
    pub database: String,
    /// The instance it was taken from (the database's own name until a restore moves it).
    #[serde(default)]
    pub instance: String,
    /// The operation that took it.
    pub op_id: String,
    /// The restore point's name.
    pub restore_point: String,
    /// When the point was taken, ms since the epoch.
    pub at_ms: u64,
    /// The point's log position, where the engine has one.
    pub lsn: Option<String>,
    /// Size of the base copy, if known.
    pub size_bytes: Option<u64>,
    /// Where the provider keeps the copy.
    pub provider_ref: String,
    /// Every user table at the point (empty where the provider cannot look inside).
    pub tables: Vec<TableRecord>,
}
document!(BackupRecord, "skiff.database_backup", 1);

/// `databases/<db>/restores/<op>.json`: a restore that moved `db` onto a new instance.
/// Immutable; the newest one names the instance the database is now, and the one it
/// replaced is retained until `retained_until_ms` (deleting it is a separate step).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RestoreRecord {
    /// The operation.
    pub op_id: String,
    /// The database.
    pub database: String,
    /// The instance it ran on before.
    pub from_instance: String,
    /// The restored instance it runs on now.
    pub to_instance: String,
    /// The backup restored from.
    pub backup: String,
    /// Where the restore stopped, as given (`latest`, a time, a restore point).
    pub target: String,
    /// When the cutover happened, ms since the epoch.
    pub at_ms: u64,
    /// Until when the old instance is kept.
    pub retained_until_ms: u64,
}
document!(RestoreRecord, "skiff.database_restore", 1);

/// A retained instance deleted after a restore, by an approved `database-retire` saga
/// (`databases/<db>/retired/<instance>.json`). Immutable.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetireRecord {
    /// The operation that deleted it.
    pub op_id: String,
    /// The database.
    pub database: String,
    /// The instance deleted.
    pub instance: String,
    /// The restore that retained it.
    pub restore_op: String,
    /// The final snapshot taken before the deletion (the provider's reference).
    pub final_snapshot: String,
    /// When it was deleted, ms since the epoch.
    pub at_ms: u64,
}
document!(RetireRecord, "skiff.database_retire", 1);

/// A Terraform configuration as the executor stores it: every file and the variables,
/// each a blob.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TerraformConfig {
    /// Module file name → blob digest.
    pub files: std::collections::BTreeMap<String, String>,
    /// The `terraform.tfvars.json` blob digest.
    pub vars: String,
}

/// `terraform/<workspace>/current.json`: the last configuration applied completely (the
/// known-good one a failed apply rolls back to) and the newest state snapshot.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TerraformCurrent {
    /// CAS metadata.
    pub cas: Cas,
    /// The workspace.
    pub workspace: String,
    /// The last configuration applied completely, and the operation that applied it.
    pub good: Option<(TerraformConfig, String)>,
    /// The newest state snapshot (blob digest), after whatever ran last.
    pub state: Option<String>,
    /// When it changed, ms since the epoch.
    pub updated_at_ms: u64,
}
document!(TerraformCurrent, "skiff.terraform_current", 1, cas);

/// `terraform/<workspace>/executions/<op>.json`: one execution's record. Immutable.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TerraformExecution {
    /// The operation.
    pub op_id: String,
    /// The workspace.
    pub workspace: String,
    /// What was applied.
    pub config: TerraformConfig,
    /// The reviewed plan (`terraform show -json`), a blob.
    pub plan: String,
    /// `applied`, or `rolled-back` after a permanent failure.
    pub outcome: String,
    /// Addresses created, changed and destroyed, as the states before and after say.
    pub created: Vec<String>,
    /// Changed in place.
    pub updated: Vec<String>,
    /// Destroyed.
    pub destroyed: Vec<String>,
    /// The state snapshot afterwards, a blob.
    pub state: Option<String>,
    /// Every Terraform command's output, a blob.
    pub log: String,
    /// When, ms since the epoch.
    pub at_ms: u64,
}
document!(TerraformExecution, "skiff.terraform_execution", 1);

/// Who owns a resource of a service.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Owner {
    /// Terraform creates and changes it; Skiff only reads it.
    TerraformOwned,
    /// Skiff creates and changes it.
    SkiffOwned,
    /// Neither: in the Terraform state, but nothing of a Skiff service.
    External,
}

impl Owner {
    /// `terraform-owned`, `skiff-owned` or `external`.
    pub fn as_str(self) -> &'static str {
        match self {
            Owner::TerraformOwned => "terraform-owned",
            Owner::SkiffOwned => "skiff-owned",
            Owner::External => "external",
        }
    }
}

/// One resource adopted from a Terraform state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OwnedResource {
    /// Terraform's address: `aws_iam_role.web`.
    pub address: String,
    /// Skiff's logical id (`role/web`), when it is one of the service's resources.
    pub logical_id: Option<String>,
    /// The name the cloud knows it by.
    pub name: String,
    /// Who owns it.
    pub owner: Owner,
}

/// `services/<svc>/ownership.json`: what `skiff adopt terraform` recorded — the
/// service's resources Terraform owns (a deploy reads them and never changes them).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OwnershipDoc {
    /// CAS metadata.
    pub cas: Cas,
    /// The service.
    pub service: String,
    /// The state it was adopted from (file, lineage, serial).
    pub source: String,
    /// The resources of the state that belong to the service.
    pub resources: Vec<OwnedResource>,
    /// When, ms since the epoch.
    pub adopted_at_ms: u64,
    /// Who adopted it.
    pub adopted_by: String,
}
document!(OwnershipDoc, "skiff.ownership", 1, cas);

impl OwnershipDoc {
    /// The logical ids Terraform owns.
    pub fn terraform_owned(&self) -> Vec<String> {
        let mut ids: Vec<String> = self
            .resources
            .iter()
            .filter(|r| r.owner == Owner::TerraformOwned)
            .filter_map(|r| r.logical_id.clone())
            .collect();
        ids.sort();
        ids.dedup();
        ids
    }
}

/// `services/<svc>/promotions.json` in the source environment's bucket: where its
/// releases were promoted to (`skiff release promote`), so `skiff release list` shows
/// it on both sides.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PromotionsDoc {
    /// CAS metadata.
    pub cas: Cas,
    /// The service.
    pub service: String,
    /// Every promotion out of this environment, oldest first.
    pub promotions: Vec<PromotionRecord>,
}
document!(PromotionsDoc, "skiff.promotions", 1, cas);

/// `services/<svc>/autoscale.json`: the queue autoscaler's last reading and the last
/// change it made, so every autoscaler (skiff-worker, the local supervisor) keeps one
/// cooldown between them.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AutoscaleDoc {
    /// CAS metadata.
    pub cas: Cas,
    /// The service.
    pub service: String,
    /// The group scaled (the current release's).
    pub group: String,
    /// The count last set.
    pub desired: u32,
    /// Jobs waiting at the last reading.
    pub backlog: u64,
    /// The oldest waiting job's age in seconds at the last reading, when the queue says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oldest_age_s: Option<f64>,
    /// When the queue was last read (ms since the epoch).
    pub observed_ms: u64,
    /// When the count last changed, and which way (`out` or `in`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_change: Option<(u64, String)>,
    /// Why the count is what it is, in words.
    pub reason: String,
}
document!(AutoscaleDoc, "skiff.autoscale", 1, cas);

/// One release promoted to another environment.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PromotionRecord {
    /// The release.
    pub release: String,
    /// The environment it went to.
    pub environment: String,
    /// That environment's bucket.
    pub bucket: String,
    /// The deploy operation there (unknown when the promotion was recorded after a
    /// resumed rollout had finished).
    pub operation: Option<String>,
    /// When, ms since the epoch.
    pub at_ms: u64,
    /// Who promoted it.
    pub by: String,
}

/// The evidence on which a traffic cutover retired the old backend
/// (`cutovers/<svc>/<op>.json`). Immutable.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CutoverRecord {
    /// The cutover operation.
    pub op_id: String,
    /// The service.
    pub service: String,
    /// The Skiff release now taking all traffic.
    pub release: String,
    /// The old backend's URL.
    pub from: String,
    /// The weights the cutover moved through.
    pub steps: Vec<u32>,
    /// Each step's verdict against the old backend (`analyse-<weight>` outputs).
    pub verdicts: serde_json::Value,
    /// Requests the old backend still answered through the load balancer after 100%.
    pub old_requests_after: u64,
    /// The scale-down of the old workload: the command, and whether Skiff ran it.
    pub scale_down: String,
    /// Whether `scale_down` was run (with a kubeconfig) or left to the operator.
    pub ran: bool,
    /// When, ms since the epoch.
    pub at_ms: u64,
}
document!(CutoverRecord, "skiff.cutover", 1);

/// Where a release's schema migration stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MigrationState {
    /// Started; not known to have ended (a crash leaves this).
    Running,
    /// Exited 0.
    Succeeded,
    /// Exited non-zero or ran past its timeout.
    Failed,
    /// Its `down` ran after a failed rollout.
    Undone,
}

/// `migrations/<svc>/<release>.json`: the schema migration of a release, run once per
/// release and database by the deploy that rolls it out.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MigrationRecord {
    /// CAS metadata.
    pub cas: Cas,
    /// The service.
    pub service: String,
    /// The release.
    pub release: String,
    /// The database.
    pub database: String,
    /// The operation that ran it last.
    pub op_id: String,
    /// Where it stands.
    pub state: MigrationState,
    /// Its exit code, once it ended.
    pub exit_code: Option<i32>,
    /// The end of its output.
    pub output: String,
    /// How long it ran, ms.
    pub duration_ms: u64,
    /// When it started, ms since the epoch.
    pub started_at_ms: u64,
    /// The migration tools' version tables before it ran (table → digest of its rows):
    /// after a crash, a change means it ran.
    pub marks_before: BTreeMap<String, String>,
    /// It has no `down`.
    pub irreversible: bool,
}
document!(MigrationRecord, "skiff.migration", 1, cas);

/// `services/<svc>/launches/<group>.json`: what Skiff launched a group with, written by
/// the step that created it; reconcile compares the provider's launch settings with it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupLaunch {
    /// CAS metadata.
    pub cas: Cas,
    /// The group as Skiff asked for it.
    pub group: skiff_pluginapi::GroupSpec,
    /// The operation that created it.
    pub op_id: String,
    /// When, ms since the epoch.
    pub at_ms: u64,
}
document!(GroupLaunch, "skiff.group_launch", 1, cas);

/// One secret value Skiff wrote: its version (`skiff_secrets::version`, never the value).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretWrite {
    /// The version written.
    pub version: String,
    /// What wrote it (`skiff secrets set`, an operation id).
    pub by: String,
    /// When, ms since the epoch.
    pub at_ms: u64,
}

/// `secrets/<name>.json`: the version of each of a secret's keys that Skiff last wrote
/// (set, database creation, rotation, restore cutover); a value whose version differs
/// was changed behind Skiff's back.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretRecord {
    /// CAS metadata.
    pub cas: Cas,
    /// The secret's name (`secret://NAME/…`).
    pub name: String,
    /// Reference → what Skiff wrote last.
    pub writes: BTreeMap<String, SecretWrite>,
}
document!(SecretRecord, "skiff.secret_record", 1, cas);

/// `tokens/<name>.json`: a bearer token skiffd accepts. Only the SHA-256 of its secret
/// is kept; every replica reads the same records, so issuing, revoking and expiring
/// apply everywhere without a restart.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenRecord {
    /// CAS metadata.
    pub cas: Cas,
    /// Who holds it (the actor in the audit log).
    pub name: String,
    /// `viewer`, `operator` or `approver`.
    pub role: String,
    /// Hex SHA-256 of the token.
    pub sha256: String,
    /// When it was issued, ms since the epoch.
    pub created_at_ms: u64,
    /// Who issued it.
    pub created_by: String,
    /// When it stops being accepted, if ever.
    pub expires_at_ms: Option<u64>,
    /// When it was revoked, if it was.
    pub revoked_at_ms: Option<u64>,
    /// When a request last presented it (updated at most once a minute).
    pub last_used_ms: Option<u64>,
}
document!(TokenRecord, "skiff.token", 1, cas);
