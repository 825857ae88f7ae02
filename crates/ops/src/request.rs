//! The typed requests every front end builds: the CLI from its arguments, skiffd from
//! proto messages, the worker from the ledger, the TUI from a key press. One variant
//! per command; [`crate::run`] answers any of them.

use std::path::PathBuf;

/// Every request Skiff answers.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Request {
    /// Write a commented skiff.yaml from a recipe.
    Init(InitRequest),
    /// Check a spec.
    Validate {
        /// The spec file.
        file: PathBuf,
    },
    /// What a spec compiles to and what would change.
    Plan {
        /// The spec file.
        file: PathBuf,
    },
    /// Build, sign and roll out a release.
    Deploy(DeployRequest),
    /// Follow the rollout running for a spec's service.
    Watch {
        /// The spec file naming the service.
        file: PathBuf,
    },
    /// Move a service back to an earlier release.
    Rollback(RollbackRequest),
    /// What runs, per service.
    Status {
        /// One service, or all.
        service: Option<String>,
    },
    /// Desired against actual state.
    Reconcile {
        /// One service, or all.
        service: Option<String>,
    },
    /// Evidence, hypotheses, reversible remediations, verification: the
    /// `incident-repair` saga.
    Incident {
        /// The service.
        service: String,
        /// Plan only.
        dry_run: bool,
    },
    /// Reconcile, then run the `repair` saga for what a step can fix.
    Repair {
        /// The service.
        service: String,
    },
    /// A service's logs.
    Logs(LogsRequest),
    /// Kubernetes manifests into skiff.yaml specs, with a loss report.
    ImportKube {
        /// Files and directories of manifests.
        paths: Vec<PathBuf>,
        /// Where the spec goes (a directory for several).
        out: PathBuf,
        /// Overwrite existing specs.
        force: bool,
    },
    /// Record which resources Terraform owns, from its state.
    AdoptTerraform {
        /// A state file or `terraform show -json` output.
        file: PathBuf,
        /// Specs of services not deployed yet, to recognize their resources by name.
        specs: Vec<PathBuf>,
    },
    /// Plan, check and apply a Terraform module (the `terraform-apply` saga).
    TerraformApply {
        /// The module's directory.
        module: PathBuf,
        /// JSON variable files, in order.
        var_files: Vec<PathBuf>,
        /// `K=V` variables, after the files.
        vars: Vec<(String, String)>,
        /// The workspace (default: the module directory's name).
        workspace: Option<String>,
        /// The environment the guardrails judge for (`production` waits for approval).
        environment: String,
        /// Plan the steps only.
        dry_run: bool,
    },
    /// A Terraform workspace's drift: `terraform plan` of its last applied configuration.
    TerraformDrift {
        /// The workspace.
        workspace: String,
    },
    /// The service's stable AWS shape as a Terraform module.
    TerraformGenerate {
        /// The spec file.
        file: PathBuf,
        /// The module's directory.
        out: PathBuf,
        /// Replace files with other content.
        force: bool,
    },
    /// Collect a service's evidence bundle into the ledger (and a file).
    DebugCollect {
        /// The service.
        service: String,
        /// Also write the bundle here.
        out: Option<PathBuf>,
    },
    /// Requests, errors and latency per target group; usage per instance.
    Metrics {
        /// The service.
        service: String,
        /// The queue's backlog and age instead (`scale.queue`).
        queue_lag: bool,
    },
    /// Find problems.
    Doctor {
        /// Only this service (plus the bucket and keys).
        service: Option<String>,
    },
    /// The JSON Schema of skiff.yaml.
    Schema,
    /// The version.
    Version,
    /// Contexts.
    Config(ConfigRequest),
    /// Initialize the state bucket.
    StateInit,
    /// Verify the state bucket.
    StateVerify,
    /// An operation's event log.
    Events {
        /// The operation.
        op: String,
        /// Keep streaming until it ends.
        follow: bool,
        /// Only events after this sequence number.
        after: u64,
    },
    /// Audit entries.
    Audit {
        /// A date, a time or an age.
        since: Option<String>,
    },
    /// Operations as sagas.
    Saga(SagaRequest),
    /// Generate a signing key pair.
    KeysGenerate {
        /// Replace an existing pair.
        force: bool,
    },
    /// The IAM policy Skiff needs on AWS.
    IamPolicy {
        /// The AWS account (default: asked of STS).
        account: Option<String>,
    },
    /// Check a spec's plan against every policy.
    PolicyCheck {
        /// The spec file.
        file: PathBuf,
    },
    /// A spec's monthly cost, per resource, with the intent behind it.
    CostExplain {
        /// The spec file.
        file: PathBuf,
        /// Estimate for this environment instead of the spec's own.
        env: Option<String>,
    },
    /// The local provider's supervisor.
    Local(LocalRequest),
    /// Secret values for references.
    Secrets(SecretsRequest),
    /// Managed dependencies: databases, backups, restores, credential and key rotations.
    Database(DatabaseRequest),
    /// Move the region that writes a service's database (the `region-failover` saga).
    Failover(crate::failover::FailoverRequest),
    /// Releases.
    Release(ReleaseRequest),
    /// Installed plugins.
    Plugin(PluginRequest),
}

/// `skiff plugin`.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum PluginRequest {
    /// Every installed plugin and its digest check.
    List,
    /// Start a plugin once and check it against its manifest.
    Validate {
        /// A plugin's name, one of its kinds, or a manifest path.
        what: String,
    },
    /// Install a plugin from its manifest into the plugins directory, then start it once.
    Install {
        /// The manifest to install.
        manifest: std::path::PathBuf,
        /// The executable, instead of the one the manifest names.
        executable: Option<std::path::PathBuf>,
        /// Record the executable's sha256 as it is now (a plugin you built yourself).
        pin: bool,
        /// Replace an installed plugin of the same name.
        force: bool,
    },
    /// What a plugin offers and how a spec uses it.
    Explain {
        /// A plugin's name, one of its kinds, or a manifest path.
        what: String,
    },
}

/// `skiff init`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InitRequest {
    /// The recipe.
    pub recipe: Recipe,
    /// The service name.
    pub name: String,
    /// Directory to write skiff.yaml into.
    pub dir: PathBuf,
    /// Port the service listens on.
    pub port: u16,
    /// Overwrite an existing skiff.yaml.
    pub force: bool,
}

/// Recipes `skiff init` writes.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Recipe {
    /// An HTTP service.
    Service,
    /// A worker.
    Worker,
    /// An HTTP API with its own PostgreSQL database.
    ApiDb,
    /// An API whose PostgreSQL has a streaming replica, failed over automatically.
    PostgresHa,
    /// A recipe an installed plugin serves (`PLUGIN.NAME`).
    Plugin(String),
}

/// `skiff deploy`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeployRequest {
    /// The spec file.
    pub file: PathBuf,
    /// Run `artifact.build` first.
    pub build: bool,
    /// Plan the rollout's steps and change nothing.
    pub dry_run: bool,
    /// Run the release beside the stable one without user traffic.
    pub shadow: Option<ShadowRequest>,
}

/// `skiff deploy --shadow [--mirror PERCENT]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ShadowRequest {
    /// Percent of GET/HEAD requests copied to the shadow during the bake.
    pub mirror_percent: Option<u32>,
}

/// `skiff rollback`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RollbackRequest {
    /// The service.
    pub service: String,
    /// `previous-stable` or a release id.
    pub to: String,
}

/// `skiff logs`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogsRequest {
    /// The service.
    pub service: String,
    /// Only this instance.
    pub instance: Option<String>,
    /// Keep printing new lines.
    pub follow: bool,
    /// Only lines since a date, a time or an age.
    pub since: Option<String>,
    /// Only lines matching this regular expression.
    pub grep: Option<String>,
    /// Only the instances started in this trace (a trace id or an operation id).
    pub trace: Option<String>,
    /// One JSON object per line in human mode (`at_ms`, `instance`, `line`).
    pub json: bool,
}

/// `skiff config`.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigRequest {
    /// List contexts.
    GetContexts,
    /// Make a context current.
    UseContext {
        /// Its name.
        name: String,
    },
    /// Create or update a context.
    SetContext {
        /// Its name.
        name: String,
        /// State bucket URL.
        state: Option<String>,
        /// skiffd URL.
        server: Option<String>,
        /// Also make it current.
        make_current: bool,
    },
    /// The resolved settings and where each came from.
    Show,
}

/// `skiff saga`.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SagaRequest {
    /// Operations, newest first.
    List {
        /// Only this service's.
        service: Option<String>,
        /// Only in this status.
        status: Option<String>,
    },
    /// One operation.
    Show {
        /// The operation.
        op: String,
    },
    /// One operation's own outcome, as the run that ended it answered (what a client
    /// following an operation prints at the end).
    Outcome {
        /// The operation.
        op: String,
    },
    /// Plan and run a saga kind.
    Start(SagaStart),
    /// The saga kinds this build runs.
    Kinds,
    /// Approve the waiting step (or `step` ahead of time).
    Approve {
        /// The operation.
        op: String,
        /// A step to approve ahead of time.
        step: Option<String>,
    },
    /// Reject at the approval gate.
    Reject {
        /// The operation.
        op: String,
        /// Why.
        reason: String,
    },
    /// Pause at the next step boundary.
    Pause {
        /// The operation.
        op: String,
    },
    /// Continue a paused operation, or one whose engine died.
    Resume {
        /// The operation.
        op: String,
    },
    /// Cancel: undo completed reversible steps.
    Cancel {
        /// The operation.
        op: String,
    },
}

/// `skiff saga start`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SagaStart {
    /// The saga kind.
    pub kind: String,
    /// The service it acts on.
    pub service: Option<String>,
    /// Parameters of the kind.
    pub params: Vec<(String, String)>,
    /// Plan only.
    pub dry_run: bool,
    /// Same key, same operation.
    pub idempotency_key: Option<String>,
    /// Why.
    pub reason: String,
    /// For `rollback`: `previous-stable` or a release id.
    pub to: Option<String>,
}

/// `skiff local`.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum LocalRequest {
    /// Start the supervisor if it is not running.
    Up,
    /// Stop it.
    Down {
        /// Also stop every instance and database.
        stop_instances: bool,
    },
    /// What it runs.
    Status,
    /// Run it in the foreground (what `up` starts).
    Serve {
        /// Control port on 127.0.0.1 (0 picks one).
        port: u16,
    },
}

/// `skiff database`.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DatabaseRequest {
    /// Take a backup (the `database-backup` saga).
    Backup {
        /// The database.
        database: String,
        /// Plan it and change nothing.
        dry_run: bool,
    },
    /// The backups recorded for a database.
    ListBackups {
        /// The database.
        database: String,
    },
    /// Restore it into a new instance and cut its consumers over (the `database-restore` saga).
    Restore {
        /// The database.
        database: String,
        /// `latest`, a restore point, or an RFC 3339 time.
        to: String,
        /// The path a shadow instance on the copy must answer (default: its health path).
        shadow_read: Option<String>,
        /// Plan it and change nothing.
        dry_run: bool,
    },
    /// Rotate the login a database's secret holds (the `secret-rotation` saga).
    RotateSecret {
        /// The secret (named as its database).
        secret: String,
        /// How long the old login stays enabled after the new one is promoted.
        disable_after_ms: Option<u64>,
        /// Plan it and change nothing.
        dry_run: bool,
    },
    /// Delete an instance a restore retained, after approval (the `database-retire` saga).
    Retire {
        /// The database.
        database: String,
        /// The retained instance (default: the only one).
        instance: Option<String>,
        /// Plan it and change nothing.
        dry_run: bool,
    },
    /// A new key for the secrets an alias encrypts (the `key-rotation` saga).
    RotateKey {
        /// The alias (`skiff`).
        alias: String,
        /// Days until the old key is deleted, once approved (7 to 30).
        deletion_days: u32,
        /// Plan it and change nothing.
        dry_run: bool,
    },
}

/// `skiff secrets`.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SecretsRequest {
    /// Store a value (read through [`crate::Ui::read_value`]) under a reference.
    Set {
        /// The reference.
        reference: String,
    },
    /// References under a name.
    List {
        /// The secret name.
        name: Option<String>,
    },
    /// Remove a reference.
    Delete {
        /// The reference.
        reference: String,
    },
}

/// `skiff release`.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReleaseRequest {
    /// Build, upload and sign.
    Create {
        /// The spec file.
        file: PathBuf,
        /// Run `artifact.build` first.
        build: bool,
    },
    /// Releases of a service (or all).
    List {
        /// The service.
        service: Option<String>,
    },
    /// One release's manifest.
    Show {
        /// The service.
        service: String,
        /// The release (default: newest).
        release: Option<String>,
    },
    /// Verify signature and digests.
    Verify {
        /// The service.
        service: String,
        /// The release (default: newest).
        release: Option<String>,
        /// The trusted public key.
        public_key: Option<PathBuf>,
    },
    /// Roll a release that ran here out in another environment, unchanged.
    Promote {
        /// The service.
        service: String,
        /// The release.
        release: String,
        /// The environment (a context of that name).
        to: String,
        /// The service's spec (its `environments.<to>` overlay applies).
        file: PathBuf,
    },
}

impl Request {
    /// The request's name in spans and logs, e.g. `deploy`, `terraform_apply`.
    pub fn name(&self) -> &'static str {
        match self {
            Request::Init { .. } => "init",
            Request::Validate { .. } => "validate",
            Request::Plan { .. } => "plan",
            Request::Deploy { .. } => "deploy",
            Request::Watch { .. } => "watch",
            Request::Rollback { .. } => "rollback",
            Request::Status { .. } => "status",
            Request::Reconcile { .. } => "reconcile",
            Request::Incident { .. } => "incident",
            Request::Repair { .. } => "repair",
            Request::Logs { .. } => "logs",
            Request::ImportKube { .. } => "import_kube",
            Request::AdoptTerraform { .. } => "adopt_terraform",
            Request::TerraformApply { .. } => "terraform_apply",
            Request::TerraformDrift { .. } => "terraform_drift",
            Request::TerraformGenerate { .. } => "terraform_generate",
            Request::DebugCollect { .. } => "debug_collect",
            Request::Metrics { .. } => "metrics",
            Request::Doctor { .. } => "doctor",
            Request::Schema => "schema",
            Request::Version => "version",
            Request::Config { .. } => "config",
            Request::StateInit => "state_init",
            Request::StateVerify => "state_verify",
            Request::Events { .. } => "events",
            Request::Audit { .. } => "audit",
            Request::Saga { .. } => "saga",
            Request::KeysGenerate { .. } => "keys_generate",
            Request::IamPolicy { .. } => "iam_policy",
            Request::PolicyCheck { .. } => "policy_check",
            Request::CostExplain { .. } => "cost_explain",
            Request::Local { .. } => "local",
            Request::Secrets { .. } => "secrets",
            Request::Database { .. } => "database",
            Request::Failover { .. } => "failover",
            Request::Release { .. } => "release",
            Request::Plugin(_) => "plugin",
        }
    }

    /// The operation a request acts on (approve, reject, pause, resume, cancel): its
    /// span joins that operation's trace.
    pub fn acts_on(&self) -> Option<&str> {
        match self {
            Request::Saga(
                SagaRequest::Approve { op, .. }
                | SagaRequest::Reject { op, .. }
                | SagaRequest::Pause { op, .. }
                | SagaRequest::Resume { op, .. }
                | SagaRequest::Cancel { op, .. },
            ) => Some(op),
            _ => None,
        }
    }

    /// Whether skiffd serves it (the rest are about this machine: files, keys, the
    /// local supervisor, the terminal).
    pub fn served(&self) -> bool {
        !matches!(
            self,
            Request::Init(_)
                | Request::ImportKube { .. }
                | Request::TerraformGenerate { .. }
                | Request::AdoptTerraform { .. }
                | Request::TerraformApply { .. }
                | Request::TerraformDrift { .. }
                | Request::Validate { .. }
                | Request::CostExplain { .. }
                | Request::Release(ReleaseRequest::Promote { .. })
                | Request::Schema
                | Request::Version
                | Request::Config(_)
                | Request::KeysGenerate { .. }
                | Request::Local(_)
                | Request::Plugin(_)
        )
    }

    /// Whether it submits operations a worker runs when detached.
    pub fn detachable(&self) -> bool {
        matches!(self, Request::Deploy(_))
    }
}
