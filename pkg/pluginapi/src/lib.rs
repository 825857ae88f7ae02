//! What a provider must offer Skiff, as capability traits: [`Compute`] (instance groups
//! per release), [`Traffic`] (a load balancer with weighted target groups, health and
//! per-group stats), [`Logs`], [`Secrets`] (references only; values resolve on the
//! instance), [`Identity`], [`Database`] and [`Posture`] (security drift). [`conformance`] is the suite every
//! provider runs against itself. Depends on nothing of Skiff's.
#![warn(missing_docs)]

pub mod conformance;
mod types;

use async_trait::async_trait;

pub use types::*;

/// A provider failure.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct ProviderError {
    /// A taxonomy code name, usually `PROVIDER_ERROR`, `NOT_FOUND` or `STATE_UNAVAILABLE`.
    pub code: String,
    /// What failed and what to check.
    pub message: String,
    /// Whether retrying may help.
    pub retryable: bool,
}

impl ProviderError {
    /// A provider call failed; `retryable` says whether trying again may help.
    pub fn new(message: impl Into<String>, retryable: bool) -> Self {
        ProviderError { code: "PROVIDER_ERROR".to_owned(), message: message.into(), retryable }
    }

    /// Something named does not exist.
    pub fn not_found(what: impl Into<String>) -> Self {
        ProviderError {
            code: "NOT_FOUND".to_owned(),
            message: format!("{} does not exist", what.into()),
            retryable: false,
        }
    }
}

/// The result of a provider call.
pub type Result<T, E = ProviderError> = std::result::Result<T, E>;

/// Instance groups: one per release, launched from a launch configuration.
#[async_trait]
pub trait Compute: Send + Sync {
    /// Creates the group, or returns it unchanged if it exists (idempotent by name).
    async fn create_group(&self, spec: &GroupSpec) -> Result<GroupInfo>;
    /// Sets how many instances the group keeps running.
    async fn set_desired(&self, group: &str, desired: u32) -> Result<()>;
    /// The group and its members, as the provider sees them now.
    async fn describe_group(&self, group: &str) -> Result<Option<GroupInfo>>;
    /// Every group of a service.
    async fn list_groups(&self, service: &str) -> Result<Vec<GroupInfo>>;
    /// Terminates one instance (the group replaces it if below desired).
    async fn terminate_instance(&self, group: &str, instance: &str) -> Result<()>;
    /// Deletes the group and its instances (idempotent).
    async fn delete_group(&self, group: &str) -> Result<()>;
    /// Runs a task of a release once (its schema migration) on an instance launched
    /// like `spec.group`'s, and waits for it: the artifact verified, its secrets
    /// resolved. The task dies if the caller goes away.
    async fn run_task(&self, spec: &TaskSpec) -> Result<TaskOutcome> {
        Err(ProviderError::new(
            format!("this provider cannot run the {} task of {} yet", spec.task, spec.group.release),
            false,
        ))
    }
}

/// A load balancer per service with weighted target groups.
#[async_trait]
pub trait Traffic: Send + Sync {
    /// Creates the service's load balancer and listener (idempotent).
    async fn ensure_load_balancer(&self, spec: &LoadBalancerSpec) -> Result<LoadBalancerInfo>;
    /// Creates a target group with its health check (idempotent).
    async fn ensure_target_group(&self, spec: &TargetGroupSpec) -> Result<()>;
    /// Adds targets to a target group (idempotent).
    async fn register(&self, target_group: &str, targets: &[Target]) -> Result<()>;
    /// Removes targets; in-flight requests finish, new ones go elsewhere.
    async fn deregister(&self, target_group: &str, target_ids: &[String]) -> Result<()>;
    /// Sets the listener's forward weights (percent per target group).
    async fn set_weights(&self, service: &str, weights: &[Weight]) -> Result<()>;
    /// The weights in effect now, read back from the load balancer.
    async fn weights(&self, service: &str) -> Result<Vec<Weight>>;
    /// Health of each target of a target group.
    async fn target_health(&self, target_group: &str) -> Result<Vec<TargetHealth>>;
    /// Cumulative request, error and latency counters of a target group.
    async fn stats(&self, target_group: &str) -> Result<TrafficStats>;
    /// Deletes a target group (idempotent).
    async fn delete_target_group(&self, target_group: &str) -> Result<()>;
    /// Describes the service's load balancer, if it exists.
    async fn describe_load_balancer(&self, service: &str) -> Result<Option<LoadBalancerInfo>>;
    /// Copies a share of the service's requests to a target group (`None` stops it);
    /// starts a new [`MirrorReport`]. Providers whose load balancer cannot mirror say so.
    async fn set_mirror(&self, service: &str, mirror: Option<&Mirror>) -> Result<()> {
        let _ = mirror;
        Err(ProviderError::new(format!("this provider's load balancer cannot mirror requests of {service}"), false))
    }
    /// What mirroring saw since it was last set.
    async fn mirror_report(&self, service: &str) -> Result<MirrorReport> {
        Err(ProviderError::new(format!("this provider's load balancer cannot mirror requests of {service}"), false))
    }
    /// Creates (or updates the endpoints of) the service's global traffic front across
    /// regions (idempotent; an existing front keeps its weights).
    async fn ensure_front(&self, spec: &FrontSpec) -> Result<FrontInfo> {
        Err(no_front(&spec.service))
    }
    /// Sets the percent of the service's global traffic each region gets.
    async fn set_region_weights(&self, service: &str, weights: &[RegionWeight]) -> Result<()> {
        let _ = weights;
        Err(no_front(service))
    }
    /// The global front, its address and weights read back; `None` without one.
    async fn describe_front(&self, service: &str) -> Result<Option<FrontInfo>> {
        Err(no_front(service))
    }
}

fn no_front(service: &str) -> ProviderError {
    ProviderError::new(format!("this provider has no global traffic front for {service} across regions"), false)
}

/// Log groups and reading logs back.
#[async_trait]
pub trait Logs: Send + Sync {
    /// Creates the log group with its retention (idempotent).
    async fn ensure_log_group(&self, name: &str, retention_days: u32) -> Result<()>;
    /// Lines of a service's logs, oldest first.
    async fn read(&self, query: &LogQuery) -> Result<Vec<LogLine>>;
}

/// Secrets by reference. Skiff stores references only; values are written by an
/// operator and resolved on the instance by the runner.
#[async_trait]
pub trait Secrets: Send + Sync {
    /// Stores a value under a reference (`secret://name/key`).
    async fn put(&self, reference: &str, value: &str) -> Result<()>;
    /// Whether a reference resolves (without revealing the value).
    async fn exists(&self, reference: &str) -> Result<bool>;
    /// References stored under a secret name.
    async fn list(&self, name: &str) -> Result<Vec<String>>;
    /// A secret cutover: `reference` takes the value behind `source`; the value it held
    /// is kept behind `<reference>-previous`. Repeating it changes nothing more.
    async fn cut_over(&self, reference: &str, source: &str) -> Result<()> {
        let _ = source;
        Err(ProviderError::new(format!("this provider cannot cut {reference} over"), false))
    }
    /// Removes a reference (idempotent).
    async fn delete(&self, reference: &str) -> Result<()>;
    /// The key `alias` names (`skiff` is the one secrets are encrypted with); `None`
    /// when no key has that alias.
    async fn key_alias(&self, alias: &str) -> Result<Option<KeyInfo>> {
        Err(ProviderError::new(format!("this provider cannot manage the key behind alias {alias}"), false))
    }
    /// Key `id` and what it still encrypts; `None` when it does not exist.
    async fn key(&self, id: &str) -> Result<Option<KeyInfo>> {
        let _ = id;
        Ok(None)
    }
    /// Makes a new key for a rotation of `alias`, not yet behind it; making it again
    /// with the same `token` returns the same key.
    async fn create_key(&self, alias: &str, token: &str) -> Result<KeyInfo> {
        let _ = token;
        Err(ProviderError::new(format!("this provider cannot make a key for alias {alias}"), false))
    }
    /// Re-encrypts every secret encrypted with key `from` under key `to`; the
    /// references re-encrypted (none the second time).
    async fn reencrypt(&self, from: &str, to: &str) -> Result<Vec<String>> {
        let _ = to;
        Err(ProviderError::new(format!("this provider cannot re-encrypt what key {from} encrypted"), false))
    }
    /// Points `alias` at key `to` (idempotent).
    async fn move_alias(&self, alias: &str, to: &str) -> Result<()> {
        let _ = to;
        Err(ProviderError::new(format!("this provider cannot move alias {alias}"), false))
    }
    /// Schedules key `id` for deletion in `days` days; when it is due. Refused while the
    /// key still encrypts a secret or an alias names it.
    async fn schedule_key_deletion(&self, id: &str, days: u32) -> Result<u64> {
        let _ = days;
        Err(ProviderError::new(format!("this provider cannot delete key {id}"), false))
    }
    /// The version of the value behind `reference` (see [`Credential::version`]), so
    /// consumers' reported versions can be compared with it; `None` where unknown.
    async fn version(&self, reference: &str) -> Result<Option<String>> {
        let _ = reference;
        Ok(None)
    }
}

/// Roles and their policies.
#[async_trait]
pub trait Identity: Send + Sync {
    /// Creates or updates a role with exactly these permissions (idempotent).
    async fn ensure_role(&self, role: &RoleSpec) -> Result<RoleInfo>;
    /// The role, if it exists.
    async fn describe_role(&self, name: &str) -> Result<Option<RoleInfo>>;
    /// Deletes a role (idempotent).
    async fn delete_role(&self, name: &str) -> Result<()>;
}

/// Managed databases.
#[async_trait]
pub trait Database: Send + Sync {
    /// Creates a database instance (idempotent by id) and waits until it is available.
    async fn create(&self, spec: &DatabaseSpec) -> Result<DatabaseInfo>;
    /// The instance, if it exists.
    async fn describe(&self, id: &str) -> Result<Option<DatabaseInfo>>;
    /// Takes a snapshot (idempotent by snapshot id).
    async fn snapshot(&self, id: &str, snapshot_id: &str) -> Result<SnapshotInfo>;
    /// Restores a snapshot into a new instance.
    async fn restore(&self, snapshot: &SnapshotInfo, spec: &DatabaseSpec) -> Result<DatabaseInfo>;
    /// How to connect; the password stays behind a secret reference.
    async fn connection(&self, id: &str) -> Result<ConnectionInfo>;
    /// Deletes an instance (idempotent).
    async fn delete(&self, id: &str) -> Result<()>;
    /// Takes a backup: a base copy plus a named restore point after it, with a manifest
    /// of every table at the point (idempotent by backup id).
    async fn backup(&self, id: &str, backup_id: &str) -> Result<BackupInfo> {
        let _ = backup_id;
        Err(ProviderError::new(format!("this provider cannot back up database {id}"), false))
    }
    /// Restores `backup` into a NEW instance `spec.id`, replaying the log to `target`;
    /// the source is only read. Idempotent by `spec.id`.
    async fn restore_to(
        &self,
        backup: &BackupInfo,
        target: &RestoreTarget,
        spec: &DatabaseSpec,
    ) -> Result<DatabaseInfo> {
        let _ = (target, spec);
        Err(ProviderError::new(format!("this provider cannot restore backup {}", backup.id), false))
    }
    /// Every user table of the instance now, as a backup's manifest records them
    /// (empty where the provider cannot look inside).
    async fn manifest(&self, id: &str) -> Result<Vec<TableManifest>> {
        let _ = id;
        Ok(Vec::new())
    }
    /// The settings a restored copy must share with its source (network, parameters,
    /// encryption), by name.
    async fn settings(&self, id: &str) -> Result<std::collections::BTreeMap<String, String>> {
        Err(ProviderError::new(format!("this provider cannot describe the settings of database {id}"), false))
    }
    /// Rotation, step 1 (Secrets Manager's `createSecret`): stage a pending value of
    /// `reference` (`secret://NAME/url`) for the *other* of two alternating users, with a
    /// new password. An existing pending value is kept. Returns both logins.
    async fn rotation_create(&self, id: &str, reference: &str) -> Result<StagedLogin> {
        let _ = reference;
        Err(ProviderError::new(format!("this provider cannot rotate the credentials of database {id}"), false))
    }
    /// Rotation, step 2 (`setSecret`): make the pending login work on instance `id` — the
    /// alternate user is created (a clone of the current one) or given the new password.
    /// The current login keeps working.
    async fn rotation_set(&self, id: &str, reference: &str) -> Result<Credential> {
        let _ = reference;
        Err(ProviderError::new(format!("this provider cannot rotate the credentials of database {id}"), false))
    }
    /// Rotation, step 3 (`testSecret`): open a new connection with the pending value.
    async fn rotation_test(&self, id: &str, reference: &str) -> Result<Credential> {
        let _ = reference;
        Err(ProviderError::new(format!("this provider cannot rotate the credentials of database {id}"), false))
    }
    /// Rotation, step 4 (`finishSecret`): the pending value becomes current, the current
    /// one is kept as `<reference>-previous`, and nothing is left pending. Repeating it
    /// changes nothing more. Returns the current login.
    async fn rotation_finish(&self, id: &str, reference: &str) -> Result<Credential> {
        let _ = reference;
        Err(ProviderError::new(format!("this provider cannot rotate the credentials of database {id}"), false))
    }
    /// The version tables of well-known migration tools ([`MIGRATION_TABLES`]) that
    /// instance `id` has, each with a digest of its rows: a migration interrupted by a
    /// crash ran if one changed. Empty where the provider cannot look inside.
    async fn migration_marks(&self, id: &str) -> Result<std::collections::BTreeMap<String, String>> {
        let _ = id;
        Ok(std::collections::BTreeMap::new())
    }
    /// Rotation's compensation: drops the pending value `rotation_create` staged (the
    /// alternate user's new password was only in it, so nobody can use it). Idempotent.
    async fn rotation_cancel(&self, id: &str, reference: &str) -> Result<()> {
        let _ = reference;
        Err(ProviderError::new(format!("this provider cannot rotate the credentials of database {id}"), false))
    }
    /// Disables password login for `user` on instance `id` (its open sessions stay; the
    /// next rotation gives it a new password). Idempotent.
    async fn disable_login(&self, id: &str, user: &str) -> Result<()> {
        let _ = user;
        Err(ProviderError::new(format!("this provider cannot rotate the credentials of database {id}"), false))
    }
    /// Creates instance `spec.id` in `region` as a streaming replica of `source`
    /// (idempotent by id) and waits until it replays the source's log. Its consumers'
    /// URL (`secret://<spec.id>/url`) carries the source's login.
    async fn create_replica(&self, source: &str, spec: &DatabaseSpec, region: &str) -> Result<DatabaseInfo> {
        let _ = (spec, region);
        Err(ProviderError::new(format!("this provider cannot replicate database {source}"), false))
    }
    /// Where instance `id` stands in replication: its role and log positions.
    async fn replication(&self, id: &str) -> Result<Replication> {
        Err(ProviderError::new(format!("this provider cannot describe the replication of database {id}"), false))
    }
    /// Freezes writes on primary `id`: new transactions are read-only and every client
    /// session is ended (waited for). Returns the log position after the freeze: every
    /// write acknowledged before it is at or below it. Idempotent.
    async fn freeze(&self, id: &str) -> Result<String> {
        Err(ProviderError::new(format!("this provider cannot freeze database {id}"), false))
    }
    /// Undoes [`Database::freeze`]: new transactions may write again. Idempotent.
    async fn thaw(&self, id: &str) -> Result<()> {
        Err(ProviderError::new(format!("this provider cannot freeze database {id}"), false))
    }
    /// Promotes replica `id` to a primary that accepts writes. Irreversible; repeating it
    /// changes nothing more.
    async fn promote(&self, id: &str) -> Result<()> {
        Err(ProviderError::new(format!("this provider cannot promote database {id}"), false))
    }
    /// Fences `id` so it refuses writes, now and whenever it is started again (a
    /// stopped or unreachable instance is fenced where it lies). Idempotent.
    async fn fence(&self, id: &str) -> Result<()> {
        Err(ProviderError::new(format!("this provider cannot fence database {id}"), false))
    }
}

/// Version tables of well-known migration tools (Rails, Ecto, golang-migrate and
/// orders-api's `schema_migrations`; sqlx, Flyway, refinery, goose, Diesel, Alembic,
/// Knex, Django).
pub const MIGRATION_TABLES: &[&str] = &[
    "schema_migrations",
    "_sqlx_migrations",
    "flyway_schema_history",
    "refinery_schema_history",
    "goose_db_version",
    "__diesel_schema_migrations",
    "alembic_version",
    "knex_migrations",
    "django_migrations",
];

/// Security posture: the settings a security reviewer checks on what Skiff made for
/// a service (its role's policies, network rules, launch settings, listener rules, the
/// state bucket), compared with what Skiff wrote.
#[async_trait]
pub trait Posture: Send + Sync {
    /// Every setting of `scope`'s resources that differs from what Skiff writes.
    async fn drift(&self, scope: &PostureScope) -> Result<Vec<SettingDrift>>;
    /// Runs one side of a [`Fix`] (its `apply` or its `undo`); idempotent.
    async fn fix(&self, action: &serde_json::Value) -> Result<()>;
}

/// A provider: its capabilities, by trait.
pub trait Provider: Send + Sync {
    /// The provider's name, `local` or `aws`.
    fn name(&self) -> &str;
    /// Instance groups.
    fn compute(&self) -> &dyn Compute;
    /// Load balancing.
    fn traffic(&self) -> &dyn Traffic;
    /// Logs.
    fn logs(&self) -> &dyn Logs;
    /// Secrets.
    fn secrets(&self) -> &dyn Secrets;
    /// Identity.
    fn identity(&self) -> &dyn Identity;
    /// Databases.
    fn database(&self) -> &dyn Database;
    /// Security posture, where the provider can read it back.
    fn posture(&self) -> Option<&dyn Posture> {
        None
    }
}
