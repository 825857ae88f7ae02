//! The one module that knows the bucket's key layout (DESIGN §3). Everything else asks
//! it for keys, and [`classify`] maps any key back to what it holds.

use skiff_objstore::validate_key;

use crate::error::StateError;

/// Every key lives under this prefix; a new layout would use `v2/`.
pub const ROOT: &str = "v1/";

/// The bucket marker written by `skiff state init`.
pub fn bucket() -> String {
    format!("{ROOT}bucket.json")
}

/// A service's pointer document (current/stable/candidate release, spec digest).
pub fn service_state(service: &str) -> String {
    format!("{ROOT}services/{service}/state.json")
}

/// A service's last reconcile result.
pub fn service_reconcile(service: &str) -> String {
    format!("{ROOT}services/{service}/reconcile.json")
}

/// What Terraform owns of a service (`skiff adopt terraform`).
pub fn service_ownership(service: &str) -> String {
    format!("{ROOT}services/{service}/ownership.json")
}

/// A service's queue autoscaler: last reading and last change.
pub fn service_autoscale(service: &str) -> String {
    format!("{ROOT}services/{service}/autoscale.json")
}

/// Where a service's releases were promoted to (`skiff release promote`).
pub fn service_promotions(service: &str) -> String {
    format!("{ROOT}services/{service}/promotions.json")
}

/// Prefix of every service's documents.
pub fn services() -> String {
    format!("{ROOT}services/")
}

/// An immutable compiled IR, named by its content digest.
pub fn spec(digest: &str) -> String {
    format!("{ROOT}specs/{digest}.json")
}

/// An immutable release manifest.
pub fn release(service: &str, release_id: &str) -> String {
    format!("{ROOT}releases/{service}/{release_id}.json")
}

/// A release manifest's detached signature.
pub fn release_signature(service: &str, release_id: &str) -> String {
    format!("{ROOT}releases/{service}/{release_id}.json.sig")
}

/// Prefix of a service's releases.
pub fn releases(service: &str) -> String {
    format!("{ROOT}releases/{service}/")
}

/// A content-addressed blob.
pub fn blob(digest: &str) -> String {
    format!("{ROOT}blobs/sha256/{digest}")
}

/// An operation's immutable intent.
pub fn op_intent(op: &str) -> String {
    format!("{ROOT}operations/{op}/intent.json")
}

/// An operation's immutable plan.
pub fn op_plan(op: &str) -> String {
    format!("{ROOT}operations/{op}/plan.json")
}

/// An operation's mutable state (status, cursor, results, fence).
pub fn op_state(op: &str) -> String {
    format!("{ROOT}operations/{op}/state.json")
}

/// Event `seq` of an operation (1-based, gap-free).
pub fn op_event(op: &str, seq: u64) -> String {
    format!("{ROOT}operations/{op}/events/{seq:08}.json")
}

/// Prefix of an operation's events.
pub fn op_events(op: &str) -> String {
    format!("{ROOT}operations/{op}/events/")
}

/// Prefix of every operation.
pub fn operations() -> String {
    format!("{ROOT}operations/")
}

/// A lease on `scope` (segments separated by `/`, e.g. `services/payments-api`).
pub fn lease(scope: &str) -> String {
    format!("{ROOT}leases/{scope}.json")
}

/// Prefix of every lease.
pub fn leases() -> String {
    format!("{ROOT}leases/")
}

/// A short-lived object `skiff doctor` writes and deletes to prove the bucket is writable.
pub fn probe(id: &str) -> String {
    format!("{ROOT}probes/{id}.json")
}

/// A runner's heartbeat document.
pub fn member(service: &str, instance: &str) -> String {
    format!("{ROOT}members/{service}/{instance}.json")
}

/// Prefix of a service's members.
pub fn members(service: &str) -> String {
    format!("{ROOT}members/{service}/")
}

/// An audit entry: `audit/<yyyy-mm-dd>/<compact-ts>-<id>.json`.
pub fn audit(date: &str, compact_ts: &str, id: &str) -> String {
    format!("{ROOT}audit/{date}/{compact_ts}-{id}.json")
}

/// Prefix of every audit entry.
pub fn audits() -> String {
    format!("{ROOT}audit/")
}

/// A database backup's record.
pub fn database_backup(database: &str, backup: &str) -> String {
    format!("{ROOT}databases/{database}/backups/{backup}.json")
}

/// Prefix of a database's backup records.
pub fn database_backups(database: &str) -> String {
    format!("{ROOT}databases/{database}/backups/")
}

/// A database restore's record.
pub fn database_restore(database: &str, op: &str) -> String {
    format!("{ROOT}databases/{database}/restores/{op}.json")
}

/// Prefix of a database's restore records.
pub fn database_restores(database: &str) -> String {
    format!("{ROOT}databases/{database}/restores/")
}

/// A bearer token skiffd accepts.
pub fn token(name: &str) -> String {
    format!("{ROOT}tokens/{name}.json")
}

/// Prefix of the token records.
pub fn tokens() -> String {
    format!("{ROOT}tokens/")
}

/// What Skiff launched a group with.
pub fn group_launch(service: &str, group: &str) -> String {
    format!("{ROOT}services/{service}/launches/{group}.json")
}

/// The versions Skiff wrote of a secret's keys.
pub fn secret_record(name: &str) -> String {
    format!("{ROOT}secrets/{name}.json")
}

/// A release's schema migration record.
pub fn migration(service: &str, release: &str) -> String {
    format!("{ROOT}migrations/{service}/{release}.json")
}

/// Prefix of a service's migration records.
pub fn migrations(service: &str) -> String {
    format!("{ROOT}migrations/{service}/")
}

/// The record of a retained instance's deletion.
pub fn database_retired(database: &str, instance: &str) -> String {
    format!("{ROOT}databases/{database}/retired/{instance}.json")
}

/// Prefix of a database's retirement records.
pub fn database_retirements(database: &str) -> String {
    format!("{ROOT}databases/{database}/retired/")
}

/// The evidence of a traffic cutover that retired an old backend.
pub fn cutover(service: &str, op: &str) -> String {
    format!("{ROOT}cutovers/{service}/{op}.json")
}

/// The executor's pointer of a Terraform workspace.
pub fn terraform_current(workspace: &str) -> String {
    format!("{ROOT}terraform/{workspace}/current.json")
}

/// One Terraform execution's record.
pub fn terraform_execution(workspace: &str, op: &str) -> String {
    format!("{ROOT}terraform/{workspace}/executions/{op}.json")
}

/// What a key holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyKind {
    /// `bucket.json`.
    Bucket,
    /// `services/<svc>/state.json`.
    ServiceState {
        /// Service.
        service: String,
    },
    /// `services/<svc>/reconcile.json`.
    ServiceReconcile {
        /// Service.
        service: String,
    },
    /// `services/<svc>/ownership.json`.
    ServiceOwnership {
        /// Service.
        service: String,
    },
    /// `services/<svc>/autoscale.json`.
    ServiceAutoscale {
        /// Service.
        service: String,
    },
    /// `services/<svc>/promotions.json`.
    ServicePromotions {
        /// Service.
        service: String,
    },
    /// `specs/<digest>.json`.
    Spec {
        /// Digest.
        digest: String,
    },
    /// `releases/<svc>/<id>.json`.
    Release {
        /// Service.
        service: String,
        /// Release id.
        release: String,
    },
    /// `releases/<svc>/<id>.json.sig`.
    ReleaseSignature {
        /// Service.
        service: String,
        /// Release id.
        release: String,
    },
    /// `blobs/sha256/<digest>`.
    Blob {
        /// Digest.
        digest: String,
    },
    /// `operations/<op>/intent.json`.
    OpIntent {
        /// Operation.
        op: String,
    },
    /// `operations/<op>/plan.json`.
    OpPlan {
        /// Operation.
        op: String,
    },
    /// `operations/<op>/state.json`.
    OpState {
        /// Operation.
        op: String,
    },
    /// `operations/<op>/events/<seq>.json`.
    OpEvent {
        /// Operation.
        op: String,
        /// Sequence number.
        seq: u64,
    },
    /// `leases/<scope>.json`.
    Lease {
        /// Scope.
        scope: String,
    },
    /// `members/<svc>/<instance>.json`.
    Member {
        /// Service.
        service: String,
        /// Instance.
        instance: String,
    },
    /// `audit/<date>/<ts>-<id>.json`.
    Audit {
        /// Date.
        date: String,
    },
    /// `databases/<db>/backups/<id>.json`.
    DatabaseBackup {
        /// Database.
        database: String,
        /// Backup id.
        backup: String,
    },
    /// `databases/<db>/restores/<op>.json`.
    DatabaseRestore {
        /// Database.
        database: String,
        /// Operation.
        op: String,
    },
    /// `services/<svc>/launches/<group>.json`.
    GroupLaunch {
        /// Service.
        service: String,
        /// Group.
        group: String,
    },
    /// `tokens/<name>.json`.
    Token {
        /// Token name.
        name: String,
    },
    /// `secrets/<name>.json`.
    SecretRecord {
        /// Secret name.
        name: String,
    },
    /// `migrations/<svc>/<release>.json`.
    Migration {
        /// Service.
        service: String,
        /// Release.
        release: String,
    },
    /// `databases/<db>/retired/<instance>.json`.
    DatabaseRetired {
        /// Database.
        database: String,
        /// The instance deleted.
        instance: String,
    },
    /// `terraform/<workspace>/current.json`.
    TerraformCurrent {
        /// Workspace.
        workspace: String,
    },
    /// `terraform/<workspace>/executions/<op>.json`.
    TerraformExecution {
        /// Workspace.
        workspace: String,
        /// Operation.
        op: String,
    },
    /// `cutovers/<svc>/<op>.json`.
    Cutover {
        /// Service.
        service: String,
        /// The cutover operation.
        op: String,
    },
    /// Anything else under `v1/`.
    Unknown,
}

impl KeyKind {
    /// The document `kind` a JSON key must hold, or `None` for raw bytes.
    pub fn expected_kind(&self) -> Option<&'static str> {
        use crate::Document;
        use crate::docs::*;
        Some(match self {
            KeyKind::Bucket => BucketDoc::KIND,
            KeyKind::ServiceState { .. } => ServiceState::KIND,
            KeyKind::ServiceReconcile { .. } => "skiff.reconcile",
            KeyKind::ServiceOwnership { .. } => OwnershipDoc::KIND,
            KeyKind::ServicePromotions { .. } => PromotionsDoc::KIND,
            KeyKind::ServiceAutoscale { .. } => AutoscaleDoc::KIND,
            KeyKind::Spec { .. } => skiff_ir::KIND,
            KeyKind::Release { .. } => "skiff.release",
            KeyKind::OpIntent { .. } => OperationIntent::KIND,
            KeyKind::OpPlan { .. } => "skiff.saga_plan",
            KeyKind::OpState { .. } => <OperationState>::KIND,
            KeyKind::OpEvent { .. } => Event::KIND,
            KeyKind::Lease { .. } => Lease::KIND,
            KeyKind::Member { .. } => <Member>::KIND,
            KeyKind::Audit { .. } => AuditEntry::KIND,
            KeyKind::DatabaseBackup { .. } => BackupRecord::KIND,
            KeyKind::DatabaseRestore { .. } => RestoreRecord::KIND,
            KeyKind::DatabaseRetired { .. } => RetireRecord::KIND,
            KeyKind::Cutover { .. } => CutoverRecord::KIND,
            KeyKind::TerraformCurrent { .. } => TerraformCurrent::KIND,
            KeyKind::TerraformExecution { .. } => TerraformExecution::KIND,
            KeyKind::Migration { .. } => MigrationRecord::KIND,
            KeyKind::GroupLaunch { .. } => GroupLaunch::KIND,
            KeyKind::SecretRecord { .. } => SecretRecord::KIND,
            KeyKind::Token { .. } => TokenRecord::KIND,
            KeyKind::ReleaseSignature { .. } | KeyKind::Blob { .. } | KeyKind::Unknown => return None,
        })
    }
}

/// Says what `key` holds.
pub fn classify(key: &str) -> KeyKind {
    let Some(rest) = key.strip_prefix(ROOT) else { return KeyKind::Unknown };
    let parts: Vec<&str> = rest.split('/').collect();
    let json = |s: &str| s.strip_suffix(".json").map(str::to_owned);
    match parts.as_slice() {
        ["bucket.json"] => KeyKind::Bucket,
        ["services", svc, "state.json"] => KeyKind::ServiceState { service: (*svc).to_owned() },
        ["services", svc, "reconcile.json"] => KeyKind::ServiceReconcile { service: (*svc).to_owned() },
        ["services", svc, "ownership.json"] => KeyKind::ServiceOwnership { service: (*svc).to_owned() },
        ["services", svc, "promotions.json"] => KeyKind::ServicePromotions { service: (*svc).to_owned() },
        ["services", svc, "autoscale.json"] => KeyKind::ServiceAutoscale { service: (*svc).to_owned() },
        ["specs", file] => json(file).map_or(KeyKind::Unknown, |digest| KeyKind::Spec { digest }),
        ["releases", svc, file] => match file.strip_suffix(".json.sig") {
            Some(r) => KeyKind::ReleaseSignature { service: (*svc).to_owned(), release: r.to_owned() },
            None => {
                json(file).map_or(KeyKind::Unknown, |release| KeyKind::Release { service: (*svc).to_owned(), release })
            }
        },
        ["blobs", "sha256", digest] => KeyKind::Blob { digest: (*digest).to_owned() },
        ["operations", op, "intent.json"] => KeyKind::OpIntent { op: (*op).to_owned() },
        ["operations", op, "plan.json"] => KeyKind::OpPlan { op: (*op).to_owned() },
        ["operations", op, "state.json"] => KeyKind::OpState { op: (*op).to_owned() },
        ["operations", op, "events", file] => json(file)
            .and_then(|s| if s.len() == 8 { s.parse().ok() } else { None })
            .map_or(KeyKind::Unknown, |seq| KeyKind::OpEvent { op: (*op).to_owned(), seq }),
        ["leases", scope @ ..] if !scope.is_empty() => {
            let joined = scope.join("/");
            json(&joined).map_or(KeyKind::Unknown, |scope| KeyKind::Lease { scope })
        }
        ["members", svc, file] => {
            json(file).map_or(KeyKind::Unknown, |instance| KeyKind::Member { service: (*svc).to_owned(), instance })
        }
        ["audit", date, _] => KeyKind::Audit { date: (*date).to_owned() },
        ["databases", db, "restores", file] => {
            json(file).map_or(KeyKind::Unknown, |op| KeyKind::DatabaseRestore { database: (*db).to_owned(), op })
        }
        ["services", svc, "launches", file] => {
            json(file).map_or(KeyKind::Unknown, |group| KeyKind::GroupLaunch { service: (*svc).to_owned(), group })
        }
        ["secrets", file] => json(file).map_or(KeyKind::Unknown, |name| KeyKind::SecretRecord { name }),
        ["tokens", file] => json(file).map_or(KeyKind::Unknown, |name| KeyKind::Token { name }),
        ["migrations", svc, file] => {
            json(file).map_or(KeyKind::Unknown, |release| KeyKind::Migration { service: (*svc).to_owned(), release })
        }
        ["databases", db, "retired", file] => json(file)
            .map_or(KeyKind::Unknown, |instance| KeyKind::DatabaseRetired { database: (*db).to_owned(), instance }),
        ["terraform", ws, "current.json"] => KeyKind::TerraformCurrent { workspace: (*ws).to_owned() },
        ["terraform", ws, "executions", file] => {
            json(file).map_or(KeyKind::Unknown, |op| KeyKind::TerraformExecution { workspace: (*ws).to_owned(), op })
        }
        ["cutovers", svc, file] => {
            json(file).map_or(KeyKind::Unknown, |op| KeyKind::Cutover { service: (*svc).to_owned(), op })
        }
        ["databases", db, "backups", file] => {
            json(file).map_or(KeyKind::Unknown, |backup| KeyKind::DatabaseBackup { database: (*db).to_owned(), backup })
        }
        _ => KeyKind::Unknown,
    }
}

/// Checks that `value` is usable as one key segment (or, for scopes, several).
pub fn check_name(what: &'static str, value: &str) -> Result<(), StateError> {
    let single = what != "lease scope";
    let valid = validate_key(value).is_ok() && (!single || !value.contains('/'));
    if valid {
        Ok(())
    } else {
        Err(StateError::InvalidName {
            what,
            value: value.to_owned(),
            why: "use letters, digits, `.`, `_` and `-`".to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_classifies_back() {
        let cases = [
            (bucket(), KeyKind::Bucket),
            (service_state("api"), KeyKind::ServiceState { service: "api".into() }),
            (spec("ab"), KeyKind::Spec { digest: "ab".into() }),
            (
                release("api", "2026.05.16.1"),
                KeyKind::Release { service: "api".into(), release: "2026.05.16.1".into() },
            ),
            (release_signature("api", "r1"), KeyKind::ReleaseSignature { service: "api".into(), release: "r1".into() }),
            (blob("ff"), KeyKind::Blob { digest: "ff".into() }),
            (op_event("op-1", 7), KeyKind::OpEvent { op: "op-1".into(), seq: 7 }),
            (op_state("op-1"), KeyKind::OpState { op: "op-1".into() }),
            (lease("services/api"), KeyKind::Lease { scope: "services/api".into() }),
            (member("api", "i-1"), KeyKind::Member { service: "api".into(), instance: "i-1".into() }),
            (audit("2026-11-22", "20261122T000000000Z", "a-1"), KeyKind::Audit { date: "2026-11-22".into() }),
        ];
        for (key, kind) in cases {
            assert_eq!(classify(&key), kind, "{key}");
        }
        assert_eq!(op_event("op", 1), "v1/operations/op/events/00000001.json");
        assert_eq!(classify("v1/whatever.txt"), KeyKind::Unknown);
        assert_eq!(classify("v1/operations/op/events/1.json"), KeyKind::Unknown);
    }
}
