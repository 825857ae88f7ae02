//! Every environment variable Skiff's programs read, declared once: its name, default,
//! meaning and the programs that read it. Code reads a variable through its
//! [`Setting`]; `cargo xtask codegen` writes `docs/configuration.md` from [`ALL`], and a
//! tidy test fails when a `SKIFF_*` name appears in the source without a declaration.
#![warn(missing_docs)]

/// One environment variable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Setting {
    /// Its name, e.g. `SKIFF_STATE`.
    pub name: &'static str,
    /// What applies when it is unset, in words (`None`: nothing, the feature is off).
    pub default: Option<&'static str>,
    /// What it means and when to set it.
    pub meaning: &'static str,
    /// The programs that read it.
    pub read_by: &'static [Program],
    /// Which section of `docs/configuration.md` it belongs to.
    pub group: Group,
    /// Whether its value is a secret (never logged or shown).
    pub secret: bool,
}

/// A program of Skiff's.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Program {
    /// The `skiff` CLI (and the local supervisor it starts).
    Skiff,
    /// The control plane.
    Skiffd,
    /// The worker.
    Worker,
    /// The instance agent.
    Runner,
    /// A plugin Skiff starts.
    Plugin,
    /// Tests, benchmarks and `cargo xtask`.
    Development,
}

impl Program {
    /// Its name as the docs print it.
    pub fn as_str(self) -> &'static str {
        match self {
            Program::Skiff => "skiff",
            Program::Skiffd => "skiffd",
            Program::Worker => "skiff-worker",
            Program::Runner => "skiff-runner",
            Program::Plugin => "plugins",
            Program::Development => "tests and xtask",
        }
    }
}

/// Sections of the configuration reference.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Group {
    /// Where state lives and which provider runs things.
    Target,
    /// Who acts, and with which keys.
    Identity,
    /// Talking to skiffd.
    Server,
    /// Saga engine and diagnostics tuning.
    Engine,
    /// The local provider.
    Local,
    /// The AWS provider.
    Aws,
    /// What the runner is started with (launch templates and the local supervisor set these).
    Runner,
    /// skiffd and skiff-worker flags' environment forms.
    ControlPlane,
    /// What Skiff sets when it starts a plugin.
    Plugins,
    /// Tests and benchmarks.
    Development,
}

impl Group {
    /// The section title.
    pub fn title(self) -> &'static str {
        match self {
            Group::Target => "State and provider",
            Group::Identity => "Identity and keys",
            Group::Server => "skiffd clients",
            Group::Engine => "Engine and diagnostics",
            Group::Local => "Local provider",
            Group::Aws => "AWS provider",
            Group::Runner => "Runner",
            Group::ControlPlane => "skiffd and skiff-worker",
            Group::Plugins => "Plugins",
            Group::Development => "Development",
        }
    }
}

impl Setting {
    /// The value `lookup` has for it, empty values included.
    pub fn raw(&self, lookup: impl Fn(&str) -> Option<String>) -> Option<String> {
        lookup(self.name)
    }

    /// The value `lookup` has for it; an empty value counts as unset.
    pub fn get(&self, lookup: impl Fn(&str) -> Option<String>) -> Option<String> {
        lookup(self.name).filter(|v| !v.trim().is_empty())
    }

    /// The value parsed as `T`; unset or unparsable gives `None` (the default applies).
    pub fn parse<T: std::str::FromStr>(&self, lookup: impl Fn(&str) -> Option<String>) -> Option<T> {
        self.get(lookup).and_then(|v| v.trim().parse().ok())
    }

    /// The value from this process's environment.
    pub fn from_process(&self) -> Option<String> {
        self.get(|k| std::env::var(k).ok())
    }
}

use Program::{Development as Dev, Plugin, Runner as Run, Skiff, Skiffd, Worker};

macro_rules! settings {
    ($( $(#[$doc:meta])* $id:ident = $name:literal, $group:ident, [$($p:ident),*], $default:expr, $secret:literal, $meaning:literal; )+) => {
        $(
            $(#[$doc])*
            pub const $id: Setting = Setting {
                name: $name,
                default: $default,
                meaning: $meaning,
                read_by: &[$($p),*],
                group: Group::$group,
                secret: $secret,
            };
        )+
        /// Every variable, in the order the reference lists them.
        pub const ALL: &[Setting] = &[$($id),+];
    };
}

settings! {
    /// The state bucket.
    STATE = "SKIFF_STATE", Target, [Skiff, Skiffd, Worker, Run], Some("the context's, else `file://.skiff/state`"), false,
        "State bucket URL: `file://PATH`, `s3://BUCKET/PREFIX` or `memory://NAME`. `--bucket` wins over it; it wins over the context.";
    /// The provider.
    PROVIDER = "SKIFF_PROVIDER", Target, [Skiff, Skiffd, Worker], Some("the context's, else `local`"), false,
        "Which provider runs the primitives: `local` or `aws`.";
    /// The context.
    CONTEXT = "SKIFF_CONTEXT", Target, [Skiff], Some("the contexts file's current context"), false,
        "Use this named context instead of the current one.";
    /// The region.
    REGION = "SKIFF_REGION", Target, [Skiff, Skiffd, Worker], Some("the context's; on AWS the SDK's chain"), false,
        "Cloud region.";
    /// The contexts file.
    CONFIG = "SKIFF_CONFIG", Target, [Skiff], Some("`~/.config/skiff/config.yaml`"), false,
        "The contexts file (kubeconfig-like named contexts).";
    /// Output format.
    FORMAT = "SKIFF_FORMAT", Target, [Skiff], Some("`human`"), false,
        "Output format: `human` or `json` (one envelope on stdout).";
    /// Actor name.
    ACTOR = "SKIFF_ACTOR", Identity, [Skiff], Some("`$USER`, else `$LOGNAME`, else the OS user of the process"), false,
        "Who acts, in intents, events and the audit log (skiffd uses the token's name).";
    /// Direct-mode roles.
    ROLES = "SKIFF_ROLES", Identity, [Skiff], Some("`viewer,operator,approver`"), false,
        "Roles a direct-mode actor holds in policy checks, comma-separated (skiffd uses the token's role).";
    /// Signing key.
    KEY = "SKIFF_KEY", Identity, [Skiff], Some("`.skiff/keys/cosign.key`"), false,
        "The release signing key (cosign's encrypted PEM), relative to the working directory.";
    /// Trusted public key.
    PUBLIC_KEY = "SKIFF_PUBLIC_KEY", Identity, [Skiff, Run], Some("`.skiff/keys/cosign.pub`"), false,
        "The trusted public key releases are verified against (the runner reads it as a file too).";
    /// Key password.
    KEY_PASSWORD = "SKIFF_KEY_PASSWORD", Identity, [Skiff, Skiffd, Worker], Some("empty"), true,
        "Password of the signing key.";
    /// skiffd URL.
    SERVER = "SKIFF_SERVER", Server, [Skiff], Some("the context's; none: direct mode"), false,
        "A skiffd URL: commands about services and operations go there over gRPC.";
    /// Bearer token.
    TOKEN = "SKIFF_TOKEN", Server, [Skiff], None, true,
        "The bearer token sent to skiffd (`skiffd token create` prints one).";
    /// CA for https servers.
    TLS_CA = "SKIFF_TLS_CA", Server, [Skiff], None, false,
        "PEM file of the CA that signed an `https://` skiffd's certificate.";
    /// Client certificate.
    TLS_CERT = "SKIFF_TLS_CERT", Server, [Skiff], None, false,
        "PEM certificate the CLI presents for mutual TLS (with SKIFF_TLS_KEY).";
    /// Client key.
    TLS_KEY = "SKIFF_TLS_KEY", Server, [Skiff], None, true,
        "PEM private key of SKIFF_TLS_CERT.";
    /// Lease TTL.
    LEASE_TTL_MS = "SKIFF_LEASE_TTL_MS", Engine, [Skiff, Skiffd, Worker], Some("`30000`"), false,
        "Operation lease time to live in ms: a dead engine's operation can be resumed once it lapses.";
    /// Queue autoscaling's poll.
    AUTOSCALE_POLL_MS = "SKIFF_AUTOSCALE_POLL_MS", Engine, [Skiff, Worker], Some("`5000`"), false,
        "How often the queue autoscaler (in `skiff local serve` and skiff-worker) reads each `scale.queue` backlog, in ms.";
    /// Automatic failover's watch.
    HA_POLL_MS = "SKIFF_HA_POLL_MS", Engine, [Skiff, Worker], Some("`2000`"), false,
        "How often the automatic-failover watch (in `skiff local serve` and skiff-worker) measures each `database.failover.automatic` primary, in ms.";
    /// Installed plugins.
    PLUGINS = "SKIFF_PLUGINS", Engine, [Skiff, Skiffd, Worker], Some("`.skiff/plugins`"), false,
        "Directory of installed plugins, one directory each holding its `plugin.yaml` manifest (`skiff plugin list`).";
    /// Rotation's wait for stale consumers.
    ROTATION_STALE_WAIT_MS = "SKIFF_ROTATION_STALE_WAIT_MS", Engine, [Skiff, Skiffd, Worker], Some("`60000`"), false,
        "How long a secret rotation's disable step waits for consumers still on the old version before it pauses.";
    /// Stuck operations.
    DOCTOR_STUCK_AFTER_MS = "SKIFF_DOCTOR_STUCK_AFTER_MS", Engine, [Skiff], Some("`900000` (15 minutes)"), false,
        "`skiff doctor` calls a running operation with no event for this long stuck.";
    /// Log filter.
    LOG = "SKIFF_LOG", Engine, [Skiff, Skiffd, Worker, Run], Some("`warn` for skiff, `info` for skiffd, skiff-worker and skiff-runner"), false,
        "Which log lines are written (stderr): a level, or per-module directives like `info,skiff_saga=debug`. OpenTelemetry export is set by the standard `OTEL_*` variables (`OTEL_EXPORTER_OTLP_ENDPOINT`).";
    /// Log format of the servers.
    LOG_FORMAT = "SKIFF_LOG_FORMAT", ControlPlane, [Skiffd, Worker, Run], Some("`text`"), false,
        "Log line format: `text` or `json` (one object per line with the span fields, e.g. `op` and `trace_id`); the servers' `--log-format`.";
    /// The terraform executable.
    TERRAFORM = "SKIFF_TERRAFORM", Engine, [Skiff, Skiffd, Worker], Some("`terraform` on PATH"), false,
        "The `terraform` executable `skiff terraform apply|drift` and reconcile's Terraform signal run.";
    /// The skiff executable.
    BIN = "SKIFF_BIN", Local, [Skiff, Skiffd, Worker], Some("this `skiff`, or the `skiff` beside skiffd/skiff-worker"), false,
        "The `skiff` executable that starts the local supervisor (`skiff local serve`).";
    /// The runner executable.
    RUNNER_BIN = "SKIFF_RUNNER_BIN", Local, [Skiff], Some("`skiff-runner` beside `skiff`, else on PATH, else `skiff __runner`"), false,
        "The runner local instances run.";
    /// PostgreSQL binaries.
    PG_BIN = "SKIFF_PG_BIN", Local, [Skiff], Some("the directory of `initdb` on PATH, or Debian's `/usr/lib/postgresql/*/bin`"), false,
        "Directory holding `initdb`, `pg_ctl` and `pg_basebackup` for local databases.";
    /// PostgreSQL user.
    PG_USER = "SKIFF_PG_USER", Local, [Skiff], Some("`postgres`"), false,
        "Unprivileged user local PostgreSQL runs as when Skiff runs as root.";
    /// AMI.
    AWS_AMI = "SKIFF_AWS_AMI", Aws, [Skiff, Skiffd, Worker], Some("Amazon Linux 2023 (its public SSM parameter)"), false,
        "Machine image instances boot from (an AMI id or `resolve:ssm:NAME`).";
    /// Subnets.
    AWS_SUBNETS = "SKIFF_AWS_SUBNETS", Aws, [Skiff, Skiffd, Worker], Some("the default VPC's subnets"), false,
        "Comma-separated subnets for instances and load balancers.";
    /// Runner download.
    AWS_RUNNER_URL = "SKIFF_AWS_RUNNER_URL", Aws, [Skiff, Skiffd, Worker], Some("`s3://BUCKET/PREFIX/tools/skiff-runner`"), false,
        "Where instances download `skiff-runner` at boot.";
    /// Runner digest.
    AWS_RUNNER_SHA256 = "SKIFF_AWS_RUNNER_SHA256", Aws, [Skiff, Skiffd, Worker], None, false,
        "The sha256 the downloaded `skiff-runner` must match.";
    /// Database tunnels.
    AWS_DATABASE_TUNNELS = "SKIFF_AWS_DATABASE_TUNNELS", Aws, [Skiff, Skiffd, Worker], Some("the instance's endpoint"), false,
        "`ID=127.0.0.1:PORT,…`: reach an RDS instance's engine through a local port forward (SSM or SSH) for the SQL a rotation runs.";
    /// RDS CA bundle.
    AWS_RDS_CA = "SKIFF_AWS_RDS_CA", Aws, [Skiff, Skiffd, Worker], Some("the system's roots"), false,
        "PEM file of the CAs RDS certificates chain to (Amazon's `global-bundle.pem`).";
    /// Service.
    SERVICE = "SKIFF_SERVICE", Runner, [Run], None, false, "The service this instance runs.";
    /// Release.
    RELEASE = "SKIFF_RELEASE", Runner, [Run], None, false, "The release this instance runs.";
    /// Instance id.
    INSTANCE = "SKIFF_INSTANCE", Runner, [Run], None, false, "This instance's id (its member document's name).";
    /// Bind host.
    HOST = "SKIFF_HOST", Runner, [Run], Some("`127.0.0.1`"), false, "Host the program binds, given to it as HOST.";
    /// Public key text.
    PUBLIC_KEY_PEM = "SKIFF_PUBLIC_KEY_PEM", Runner, [Run], None, false,
        "The trusted public key itself (PEM text), instead of SKIFF_PUBLIC_KEY.";
    /// Runner directory.
    RUNNER_DIR = "SKIFF_RUNNER_DIR", Runner, [Run], None, false, "Working directory: the artifact goes here.";
    /// Log directory.
    LOG_DIR = "SKIFF_LOG_DIR", Runner, [Run], Some("`SKIFF_RUNNER_DIR/logs`"), false, "Where the program's and runner's logs go.";
    /// Secrets source.
    SECRETS = "SKIFF_SECRETS", Runner, [Run], None, false,
        "Where secrets resolve from: `local:DIR` (the local store) or `dir:DIR` (files fetched at boot).";
    /// Secret reference remapping.
    SECRET_MAP = "SKIFF_SECRET_MAP", Runner, [Run], None, false,
        "Resolve some references from others instead: `secret://A/k=secret://B/k,...` (a restore's shadow instance reads the copy's URL).";
    /// One-shot task.
    TASK = "SKIFF_TASK", Runner, [Run], Some("none: supervise the program"), false,
        "Run a task of the release once and exit with its code: `migrate` or `migrate-down` (`database.migrations`).";
    /// Heartbeat period.
    HEARTBEAT_MS = "SKIFF_HEARTBEAT_MS", Runner, [Run], Some("`2000`"), false, "Heartbeat period of the member document, ms.";
    /// Crash loop threshold.
    CRASH_LOOP_RESTARTS = "SKIFF_CRASH_LOOP_RESTARTS", Runner, [Run], Some("`5`"), false,
        "Restarts within a minute that make a crash loop.";
    /// Plugin cookie.
    PLUGIN_COOKIE = "SKIFF_PLUGIN_COOKIE", Plugins, [Plugin], None, false,
        "Set by Skiff when it starts a plugin; a plugin started without it explains itself and exits.";
    /// The mesh's environment.
    MESH = "SKIFF_MESH", Runner, [Run], Some("none: no mesh"), false,
        "The environment whose mesh the instance joins (`network.mtls`; the mTLS plugin's addon sets it in the release).";
    /// The mesh's upstreams.
    MESH_UPSTREAMS = "SKIFF_MESH_UPSTREAMS", Runner, [Run], Some("none"), false,
        "Services the program calls through the mesh, comma-separated; each gets a loopback port in `SKIFF_UPSTREAM_<NAME>`.";
    /// Mesh certificate lifetime.
    MESH_TTL_SECS = "SKIFF_MESH_TTL_SECS", Runner, [Run], Some("3600"), false,
        "How long an instance's mesh certificate lives, seconds; the runner renews it two thirds in.";
    /// The mesh CA's certificate.
    MESH_CA_CERT = "SKIFF_MESH_CA_CERT", Runner, [Run], None, false,
        "The environment CA's certificate (PEM), from its secret reference; the runner takes it out of the program's environment.";
    /// The mesh CA's key.
    MESH_CA_KEY = "SKIFF_MESH_CA_KEY", Runner, [Run], None, true,
        "The environment CA's key (PEM), from its secret reference; the runner signs the instance's certificates with it and never passes it on.";
    /// Plugin socket.
    PLUGIN_SOCKET = "SKIFF_PLUGIN_SOCKET", Plugins, [Plugin], None, false,
        "The Unix socket a plugin serves its gRPC service on, in a private directory Skiff creates.";
    /// Tokens file.
    SKIFFD_TOKENS = "SKIFFD_TOKENS", ControlPlane, [Skiffd], None, true,
        "skiffd's tokens file (`--tokens`): SHA-256 digests of issued tokens with names and roles.";
    /// Keys directory.
    SKIFFD_KEYS = "SKIFFD_KEYS", ControlPlane, [Skiffd, Worker], None, false,
        "Directory of the signing key pair (`cosign.key`, `cosign.pub`) skiffd signs and the worker verifies with.";
    /// Policies directory.
    SKIFFD_POLICIES = "SKIFFD_POLICIES", ControlPlane, [Skiffd, Worker], None, false,
        "Directory of policies every plan is checked against (`*.rego`, `limits.json`).";
    /// Bench output.
    BENCH_OUT = "SKIFF_BENCH_OUT", Development, [Dev], Some("stdout"), false,
        "Where a benchmark writes its JSON (set by `cargo xtask bench`).";
    /// Restore bench size.
    BENCH_RESTORE_MB = "SKIFF_BENCH_RESTORE_MB", Development, [Dev], Some("`1024`"), false,
        "Size of the database `cargo xtask bench restore` restores, MiB.";
    /// Bench supervisor.
    BENCH_SUPERVISOR_DIR = "SKIFF_BENCH_SUPERVISOR_DIR", Development, [Dev], None, false,
        "Set by `cargo xtask bench local` in the supervisor process it starts: that process serves this local directory.";
    /// Bench parent.
    BENCH_PARENT = "SKIFF_BENCH_PARENT", Development, [Dev], None, false,
        "The pid of the local benchmark whose supervisor's instances exit with it.";
    /// Bless fixtures.
    BLESS = "SKIFF_BLESS", Development, [Dev], None, false,
        "`1` rewrites the spec crate's bad-fixture expectations.";
    /// Crash point.
    CRASH_AT = "SKIFF_CRASH_AT", Development, [Dev], None, false,
        "The engine crash test's child freezes at this hook point until it is killed.";
    /// Crash dir.
    CRASH_DIR = "SKIFF_CRASH_DIR", Development, [Dev], None, false, "The crash test's working directory for its child.";
    /// Crash saga fails.
    CRASH_FAILING = "SKIFF_CRASH_FAILING", Development, [Dev], None, false, "The crash test's child runs the failing saga.";
    /// Freeze point.
    FREEZE_AT = "SKIFF_FREEZE_AT", Development, [Dev], None, false,
        "An engine hook point (`after:result:STEP`, `before:step_started:STEP` …) where a `skiff` process freezes, for kill-and-resume tests.";
    /// Freeze marker.
    FREEZE_MARKER = "SKIFF_FREEZE_MARKER", Development, [Dev], None, false,
        "A file a process frozen by `SKIFF_FREEZE_AT` writes when it reaches the point.";
    /// Simulation seeds.
    SIM_SEEDS = "SKIFF_SIM_SEEDS", Development, [Dev], Some("`0..100`"), false,
        "Seeds the deterministic simulation test runs: one (`17`) or a range (`0..100`).";
    /// Child mode.
    CHILD = "SKIFF_CHILD", Development, [Dev], None, false, "The ledger process test's child mode.";
    /// Child bucket.
    CHILD_URL = "SKIFF_CHILD_URL", Development, [Dev], None, false, "The ledger process test's child bucket.";
}

/// `SKIFF_*` words in the source that are not environment variables (heredoc markers,
/// prefixes), for the tidy test.
pub const NOT_VARIABLES: &[&str] = &["SKIFF_UNIT", "SKIFF_", "SKIFFD_", "SKIFF_AWS_", "SKIFF_LOCAL", "SKIFF_UPSTREAM_"];

/// The declaration of `name`, if any.
pub fn find(name: &str) -> Option<&'static Setting> {
    ALL.iter().find(|s| s.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_documented() {
        let mut names: Vec<&str> = ALL.iter().map(|s| s.name).collect();
        names.sort_unstable();
        let n = names.len();
        names.dedup();
        assert_eq!(names.len(), n, "a variable is declared twice");
        for s in ALL {
            assert!(s.name.starts_with("SKIFF_") || s.name.starts_with("SKIFFD_"), "{}", s.name);
            assert!(!s.meaning.is_empty() && !s.read_by.is_empty(), "{}", s.name);
        }
    }

    #[test]
    fn empty_values_count_as_unset() {
        let env = |k: &str| (k == "SKIFF_LEASE_TTL_MS").then(|| " 1500 ".to_owned());
        assert_eq!(LEASE_TTL_MS.parse::<u64>(env), Some(1500));
        assert_eq!(STATE.get(|_| Some(String::new())), None);
        assert_eq!(STATE.raw(|_| Some(String::new())), Some(String::new()));
    }
}
