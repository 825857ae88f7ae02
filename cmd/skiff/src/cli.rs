//! The command line: every command, flag and example `--help` shows, and the typed
//! request each command line asks for.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use clap_complete::engine::ArgValueCandidates;
use skiff_ops::{
    ConfigRequest, DatabaseRequest, DeployRequest, InitRequest, LocalRequest, LogsRequest, PluginRequest, Recipe,
    ReleaseRequest, Request, RollbackRequest, SagaRequest, SagaStart, SecretsRequest, ShadowRequest,
};
use skiff_sdk::config::ProviderKind;

/// Output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Readable text; errors on stderr.
    Human,
    /// One JSON envelope on stdout, keys sorted, deterministic.
    Json,
}

const ABOUT: &str = "Skiff compiles a short service spec into visible cloud primitives and runs \
deploys, rollbacks and repairs as resumable, approvable sagas.";

const EXAMPLES: &str = "\
Examples:
  skiff init service payments-api        write a commented skiff.yaml
  skiff validate                         check ./skiff.yaml
  skiff plan -f examples/hello/skiff.yaml --format json
  skiff config show                      which bucket and provider a command would use

Every command answers in one envelope (`--format json`): ok, code, summary, facts,
data, risk, recommended_actions. Exit codes follow the code (see README, \"Failure codes\").";

#[derive(Debug, Parser)]
#[command(name = "skiff", version, about = ABOUT, after_help = EXAMPLES, propagate_version = true)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

/// Flags every command takes.
#[derive(Debug, Args)]
pub struct Global {
    /// Output format.
    #[arg(long, global = true, value_enum, default_value = "human", env = "SKIFF_FORMAT")]
    pub format: Format,
    /// State bucket URL: file://PATH, s3://BUCKET/PREFIX or memory:// [else $SKIFF_STATE, the context, file://.skiff/state].
    #[arg(long, global = true, value_name = "URL")]
    pub bucket: Option<String>,
    /// Provider that runs the primitives [else $SKIFF_PROVIDER, the context, local].
    #[arg(long, global = true, value_parser = parse_provider)]
    pub provider: Option<ProviderKind>,
    /// Use this context instead of the current one [else $SKIFF_CONTEXT].
    #[arg(long, global = true, value_name = "NAME")]
    pub context: Option<String>,
    /// Cloud region [else $SKIFF_REGION, the context].
    #[arg(long, global = true)]
    pub region: Option<String>,
    /// A skiffd URL (http://HOST:PORT): commands about services and operations go there
    /// over gRPC, authenticated by $SKIFF_TOKEN [else $SKIFF_SERVER, the context; none: direct mode].
    #[arg(long, global = true, value_name = "URL")]
    pub server: Option<String>,
    /// Answer yes to confirmations (required for mutating commands without a terminal).
    #[arg(long, short = 'y', global = true)]
    pub yes: bool,
    /// No progress lines on stderr (human mode); the result is printed as usual.
    #[arg(long, short = 'q', global = true)]
    pub quiet: bool,
}

fn parse_provider(s: &str) -> Result<ProviderKind, String> {
    s.parse()
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Write a commented skiff.yaml from a recipe.
    #[command(after_help = "\
Examples:
  skiff init service payments-api              ./skiff.yaml for an HTTP service
  skiff init service payments-api --port 9000 --dir services/payments
  skiff init worker thumbnailer                a queue consumer, no port
  skiff init stack api-db orders-api           an API with its own PostgreSQL database
  skiff init plugin changelog.service shop     a recipe an installed plugin serves")]
    Init {
        #[command(subcommand)]
        recipe: InitRecipe,
    },
    /// Check a spec: strict types, ranges and intent; every problem with line:column and a fix.
    #[command(after_help = "\
Examples:
  skiff validate                               ./skiff.yaml
  skiff validate -f examples/api-db/skiff.yaml --format json

Exit code 0 when valid, 3 (SPEC_INVALID) with every problem listed otherwise.")]
    Validate {
        /// The spec file.
        #[arg(short = 'f', long = "file", default_value = "skiff.yaml")]
        file: PathBuf,
    },
    /// Show what a spec compiles to: decisions with reasons, resources, and changes.
    #[command(after_help = "\
Examples:
  skiff plan                                   ./skiff.yaml
  skiff plan -f examples/api-db/skiff.yaml --format json

Read-only: nothing is created or changed. The JSON is byte-identical across runs.")]
    Plan {
        /// The spec file.
        #[arg(short = 'f', long = "file", default_value = "skiff.yaml")]
        file: PathBuf,
    },
    /// Build, sign and roll out a release with a health-gated canary.
    #[command(after_help = "\
Examples:
  skiff deploy -f examples/hello/skiff.yaml --yes
  skiff deploy --no-build --yes --format json   use the artifact as it is
  skiff deploy --watch                         follow the rollout another terminal started
  skiff deploy --shadow --mirror 10 --yes      beside stable, no user traffic; 10% of GETs copied

What happens: build (artifact.build) → signed release (artifact, SBOM, provenance)
→ policy check → canary saga: start the new instance group, wait until every target
is healthy, shift traffic in the spec's steps (e.g. 5 → 25 → 50 → 100%), reading the
weights and health back after each change, bake and judge error rate and p95 against
the spec and the stable group, then promote and retire the old group. A failing
analysis rolls back to stable by itself (CANARY_FAILED, exit 11); too little traffic
to judge pauses (ANALYSIS_INCONCLUSIVE, exit 12): send traffic, then
`skiff saga resume OP`. `skiff saga pause OP` works mid-rollout from another terminal.
--shadow stops after the health check: the release runs without user traffic (with
--mirror, copies of live GET/HEAD requests for one bake, compared with the primary's
answers) until `skiff saga start traffic-cutover` moves traffic to it.
On the local provider the supervisor is started when needed, and on the embedded
default (./.skiff) the state bucket and a signing key are created on first use.")]
    Deploy {
        /// The spec file.
        #[arg(short = 'f', long = "file", default_value = "skiff.yaml")]
        file: PathBuf,
        /// Use the artifact as it is; do not run `artifact.build`.
        #[arg(long)]
        no_build: bool,
        /// Start nothing: follow the rollout already running for this spec's service
        /// (from another terminal or a killed CLI) until it ends.
        #[arg(long)]
        watch: bool,
        /// Submit the operation and return at once: a `skiff-worker` claims and runs it
        /// (follow it with `skiff saga events OP --follow`; `skiff saga resume OP` runs it here).
        #[arg(long, conflicts_with = "watch")]
        detach: bool,
        /// Plan the rollout and show every step with its safety, risk and approval gate;
        /// build, sign, start and record nothing.
        #[arg(long, conflicts_with_all = ["watch", "detach"])]
        dry_run: bool,
        /// Run the new release beside the stable one, health-checked, without user
        /// traffic (recorded as the shadow release; `skiff saga start traffic-cutover`
        /// moves traffic to it).
        #[arg(long, conflicts_with = "watch")]
        shadow: bool,
        /// With --shadow: copy PERCENT of the GET/HEAD requests to it during the bake
        /// (answers discarded) and compare status and latency with the primary.
        #[arg(long, value_name = "PERCENT", requires = "shadow", value_parser = clap::value_parser!(u32).range(1..=100))]
        mirror: Option<u32>,
    },
    /// Move a service back to an earlier release (re-creating its group if retired).
    #[command(after_help = "\
Examples:
  skiff rollback hello --yes                   back to the previous stable release
  skiff rollback hello --to 2026.11.22.3 --yes

`previous-stable` is the stable release before the last rollout: after a rollout
that failed or is still running, the current stable release; after one that
succeeded, the release it replaced.")]
    Rollback {
        /// The service.
        service: String,
        /// `previous-stable` or a release id.
        #[arg(long, default_value = "previous-stable")]
        to: String,
    },
    /// What runs: release, instances healthy/total, p95, error rate, CPU, active operation.
    #[command(after_help = "\
Examples:
  skiff status                                 every service, one line each
  skiff status hello --format json")]
    Status {
        /// The service (all services when left out).
        #[arg(add = ArgValueCandidates::new(crate::complete::services))]
        service: Option<String>,
    },
    /// Compare desired state (the ledger) with actual state (the provider): IN_SYNC or DRIFTED.
    #[command(after_help = "\
Examples:
  skiff reconcile                              every service
  skiff reconcile hello --format json          field-level differences, each with its repair
  skiff reconcile hello --repair --yes         run the repair saga for what a step can fix

Compares the release's instance group and running instances, groups of other
releases left running, the load balancer's weights and targets' health, and the
instance role's permissions. Records the verdict in services/<svc>/reconcile.json
(shown by `skiff status`). Exit 24 (DRIFTED) when anything differs. Without --repair
it changes nothing else; with it, a `repair` saga scales the release's group back
and re-applies its weights (read back), after the same policy check as a deploy.
Other drift keeps the command that repairs it. A service an operation is working on
is skipped.")]
    Reconcile {
        /// The service (all services when left out).
        service: Option<String>,
        /// Run the `repair` saga for drift a step can fix (group size, weights), after a
        /// policy check; needs SERVICE and --yes.
        #[arg(long, requires = "service")]
        repair: bool,
    },
    /// A service's logs, from every instance (or one), oldest first.
    #[command(after_help = "\
Examples:
  skiff logs hello --since 10m
  skiff logs hello --instance i-01m8… --follow")]
    Logs {
        /// The service.
        service: String,
        /// Only this instance.
        #[arg(long)]
        instance: Option<String>,
        /// Keep printing new lines until interrupted.
        #[arg(long)]
        follow: bool,
        /// Only lines since a date, a time or an age (10m, 24h).
        #[arg(long)]
        since: Option<String>,
        /// Only lines matching this regular expression, e.g. 'error|timeout'.
        #[arg(long, value_name = "REGEX")]
        grep: Option<String>,
        /// Only the instances an operation started: its trace id (32 hex digits, from
        /// the operation's intent or a trace viewer) or the operation id itself.
        #[arg(long, value_name = "TRACE_ID|OP")]
        trace: Option<String>,
        /// One JSON object per line (at_ms, instance, line), for jq; `--format json`
        /// answers one envelope instead.
        #[arg(long)]
        json: bool,
    },
    /// Bring workloads from elsewhere: Kubernetes manifests into skiff.yaml specs.
    #[command(after_help = "\
Examples:
  skiff import kube k8s/ --out skiff.yaml           one Deployment → one spec
  helm template api ./chart | tee api.yaml; skiff import kube api.yaml --out specs/
  skiff import kube k8s/ --out specs/ --format json   every input path, classified

Every path of every input object is reported: mapped (to which spec field), warned
(approximated, and why) or unsupported (what to do). StatefulSets, DaemonSets, Jobs,
privileged pods, hostPath volumes and custom resources are refused with the reason;
the rest is still imported. Secret values are never read: the answer lists the
`skiff secrets set` commands to fill each reference.")]
    Import {
        #[command(subcommand)]
        action: ImportAction,
    },
    /// Take over what another tool manages: record Terraform's ownership in the ledger.
    #[command(after_help = "\
Examples:
  skiff adopt terraform --state infra/terraform.tfstate --yes
  terraform -chdir=infra show -json > show.json; skiff adopt terraform --show-json show.json --yes
  skiff adopt terraform --state hand.tfstate -f skiff.yaml --yes   before the first deploy

Resources carrying Skiff's tags (as `skiff terraform generate` writes them), or named
as Skiff names a known service's resources, become terraform-owned: a deploy reads
them and never changes them, plan and reconcile say so, and drift on them points to
`terraform plan`. What Skiff would create beside them stays skiff-owned; the rest of
the state is external.")]
    Adopt {
        #[command(subcommand)]
        action: AdoptAction,
    },
    /// Terraform for the stable infrastructure: generate a module of a service's AWS shape.
    #[command(after_help = "\
Examples:
  skiff terraform generate -f skiff.yaml --out infra/
  terraform -chdir=infra init && terraform -chdir=infra plan -out=tfplan
  skiff terraform apply --module infra/ --var-file prod.json --yes
  skiff terraform apply --module infra/ --var region=eu-west-1 --dry-run

The module holds what is stable (role, policy and profile, log group, security groups,
load balancer and listener, secrets, database), named as Skiff's AWS provider names
them and tagged with Skiff's logical ids; each release's launch template, auto scaling
group and target group, and the listener's weights, stay Skiff's. The output is
already `terraform fmt`-formatted and the same spec always gives the same files.

`apply` is the Terraform executor: the module and its variables go into the ledger
(content-hashed), `terraform plan -out` runs in a working directory of the operation's
own, the plan JSON is stored and checked against the built-in guardrails and
policies/*.rego, production waits for approval, and exactly that plan is applied
(planned and checked again if it no longer applies). Transient failures are retried;
a permanent one rolls back to the last configuration applied completely. Skiff's lease
replaces Terraform's lock; state snapshots and apply logs are kept in the ledger.")]
    Terraform {
        #[command(subcommand)]
        action: TerraformAction,
    },
    /// The cockpit: services, operations and their gates, events, logs, metrics, doctor.
    #[command(after_help = "\
Examples:
  skiff tui                                    over the bucket and provider (direct)
  skiff --server https://skiffd:7400 tui       through skiffd (SKIFF_TOKEN)
  skiff tui --readonly                         no action that changes anything

Keys: ? lists them all. Every action shows its exact `skiff` command and safety before
it runs; approvals and rejections ask for the operation id. Data is fetched in the
background: a slow or unreachable API shows its age, never a frozen screen.")]
    Tui {
        /// Hide and refuse every action that changes something.
        #[arg(long)]
        readonly: bool,
    },
    /// Print a shell's completion script (commands, flags, services and operation ids).
    #[command(after_help = "\
Examples:
  source <(skiff completion bash)              bash: add the line to ~/.bashrc
  source <(skiff completion zsh)               zsh: add the line to ~/.zshrc
  skiff completion fish | source               fish: add the line to config.fish
  skiff completion powershell | Out-String | Invoke-Expression

The script asks `skiff` itself at each TAB (COMPLETE=SHELL skiff -- WORDS), so names
come from the bucket (or skiffd) of the current directory's configuration.")]
    Completion {
        /// The shell.
        #[arg(value_enum)]
        shell: crate::complete::Shell,
    },
    /// Incident repair: evidence, hypotheses, reversible remediations, verification.
    #[command(after_help = "\
Examples:
  skiff repair incident hello --dry-run        hypotheses and the plan; nothing runs
  skiff repair incident hello --yes            collect, remediate, verify

Hypotheses: an operation whose engine died, a secret changed before instances failed,
drifted capacity or traffic, security drift, a crash loop or exhausted error budget
after a release, a dead database. Only reversible remediations run (a secret put back,
instances replaced, drift reverted, a rollback, a resumed operation); the rest are
recommended. Every step is in the ledger: `skiff saga show OP`.")]
    Repair {
        #[command(subcommand)]
        action: RepairAction,
    },
    /// Evidence for debugging a service, in one redacted bundle kept in the ledger.
    #[command(after_help = "\
Examples:
  skiff debug collect hello                    store the bundle in the ledger (audited)
  skiff debug collect hello --out hello.json   and write it here too

The bundle: the service's state, its release and provenance, member documents, its last
operations with their events, recent logs of every instance, metrics, doctor's findings
and a fresh reconcile verdict. Credentials in URLs, password/token/key values, bearer
tokens, AWS keys and private keys are redacted.")]
    Debug {
        #[command(subcommand)]
        action: DebugAction,
    },
    /// Requests, errors and latency per target group; CPU, memory and restarts per
    /// instance; or a queue-scaled worker's backlog.
    #[command(after_help = "\
Examples:
  skiff metrics hello
  skiff metrics hello --format json
  skiff metrics thumbnailer queue-lag          jobs waiting, the oldest's age, instances")]
    Metrics {
        /// The service.
        service: String,
        /// `queue-lag`: the backlog and age of the queue `scale.queue` reads, the
        /// instance count and the autoscaler's last decision.
        view: Option<MetricsView>,
    },
    /// Find problems: bucket, keys, stuck operations, unhealthy or refusing instances, drift, failed canaries.
    #[command(after_help = "\
Examples:
  skiff doctor                                 everything
  skiff doctor hello --format json             findings with codes, facts and actions

Exit 0 when nothing is wrong; otherwise the code of the first finding.")]
    Doctor {
        /// Only this service (plus the bucket and keys).
        service: Option<String>,
    },
    /// Print the JSON Schema of skiff.yaml (for editors and CI).
    #[command(after_help = "\
Examples:
  skiff schema > skiff.schema.json
  # in skiff.yaml, for editor completion:
  # yaml-language-server: $schema=./skiff.schema.json")]
    Schema,
    /// Print the version.
    Version,
    /// The state bucket: initialize it, verify it.
    #[command(after_help = "\
Examples:
  skiff state init --yes                       initialize ./.skiff/state (the default bucket)
  skiff state init --bucket s3://acme-skiff/prod --yes
  skiff state verify --format json             every log gap-free, every document and digest sound")]
    State {
        #[command(subcommand)]
        action: StateAction,
    },
    /// An operation's event log, oldest first; --follow streams new events.
    #[command(after_help = "\
Examples:
  skiff events --op op-01jd3x7k2a-7q0c5m1z
  skiff events --op op-01jd3x7k2a-7q0c5m1z --follow --format json   one JSON object per line, then the envelope")]
    Events {
        /// The operation id.
        #[arg(long)]
        op: String,
        /// Keep printing new events until the operation ends (or Ctrl-C).
        #[arg(long)]
        follow: bool,
        /// Print only events after this sequence number.
        #[arg(long, default_value_t = 0)]
        after: u64,
    },
    /// Audit entries: who did what, when, with which outcome.
    #[command(after_help = "\
Examples:
  skiff audit                                  everything
  skiff audit --since 24h                      the last day
  skiff audit --since 2026-11-01 --format json")]
    Audit {
        /// Only entries at or after: a date (2026-11-22), a time (2026-11-22T10:00:00Z) or an age (30m, 24h, 7d).
        #[arg(long)]
        since: Option<String>,
    },
    /// Operations as sagas: plan, run, approve, reject, pause, resume, cancel, inspect.
    #[command(after_help = "\
Examples:
  skiff saga start selftest --dry-run          the plan, with safety and risk, before anything mutates
  skiff saga start selftest --param wait_ms=5000 --yes
  skiff saga approve OP --yes                  let the operation past its approval gate
  skiff saga pause OP --yes                    stop at the next step boundary; `resume` continues
  skiff saga cancel OP --yes                   undo completed reversible steps, newest first
  skiff saga show OP                           steps, status, failure and recent events
  skiff saga list --status running
  skiff saga start traffic-cutover --service web --from http://10.0.0.12:8080 --steps 5,25,50,100 --yes
                                               move web's traffic off its old backend, judged step by step

Mutating subcommands ask on a terminal and need --yes otherwise.")]
    Saga {
        #[command(subcommand)]
        action: SagaAction,
    },
    /// Signing keys for releases (ECDSA P-256, cosign formats).
    #[command(after_help = "\
Examples:
  skiff keys generate                          .skiff/keys/cosign.key and cosign.pub
  SKIFF_KEY_PASSWORD=... skiff keys generate --force

The private key is encrypted with $SKIFF_KEY_PASSWORD (empty if unset). Runners trust
the public key; keep the private key out of the repository.")]
    Keys {
        #[command(subcommand)]
        action: KeysAction,
    },
    /// Plugins: executables Skiff starts over gRPC that add saga step kinds and doctor checks.
    #[command(after_help = "\
Examples:
  skiff plugin list                            installed plugins and their digest checks
  skiff plugin validate changelog              start it once: digest, handshake, description
  skiff plugin validate ./plugin.yaml          a manifest before installing it
  skiff plugin explain changelog.append        what a kind does and how a spec uses it
  skiff plugin install examples/plugin/plugin.yaml --executable target/debug/skiff-plugin-changelog --pin
                                               install one you built yourself (its digest recorded now)

A plugin is a directory under $SKIFF_PLUGINS (default .skiff/plugins) holding its
plugin.yaml: name, version, protocol, executable, sha256, steps, checks, deadline.
Skiff refuses an executable whose sha256 differs, and fails the step (never the
engine) when a plugin crashes, hangs past its deadline or answers garbage.
A spec runs a plugin's step in every deploy with
  rollout: {hooks: [{step: changelog.append, at: after_promote}]}")]
    Plugin {
        #[command(subcommand)]
        action: PluginAction,
    },
    /// Guardrails: check a spec's plan against the built-in rules and policies/*.rego.
    #[command(after_help = "\
Examples:
  skiff policy check                           ./skiff.yaml and ./policies/
  skiff policy check -f services/api/skiff.yaml --format json

Built-in rules: no-ssh-ingress, artifact-signed-and-pinned, instance-ceiling,
cost-ceiling, database-deletion-needs-snapshot, irreversible-needs-approval,
production-needs-approver. User policies are Rego files in policies/ beside the spec,
each with its own package and a `deny` set of messages or {rule, reason, fix}
objects; the plan is `input`. Ceilings per environment live in policies/limits.json.
Every deploy and rollback runs the same check before anything changes; a denial
exits 8 (POLICY_DENIED) naming the rule, the reason and the fix.")]
    Policy {
        #[command(subcommand)]
        action: PolicyAction,
    },
    /// Cost: what a spec costs per month, resource by resource, and why.
    #[command(after_help = "\
Examples:
  skiff cost explain                           ./skiff.yaml, its environment
  skiff cost explain -f services/api/skiff.yaml --env staging
  skiff cost explain --format json | jq .data.at_max_usd

Figures are AWS on-demand prices from a table committed with Skiff (its source and
date are in the answer; nothing is fetched). Each line says what drove it (intent,
default or the spec), \"at most\" counts every group at its maximum, and the cost-ceiling
rule judges exactly that figure against policies/limits.json. Usage-priced items
(logs, data transfer, capacity units) use the stated assumptions.")]
    Cost {
        #[command(subcommand)]
        action: CostAction,
    },
    /// AWS identity: the least-privilege policy Skiff itself needs.
    #[command(after_help = "\
Examples:
  skiff iam policy --provider aws --bucket s3://acme-skiff/prod > skiff-policy.json
  aws iam create-policy --policy-name skiff --policy-document file://skiff-policy.json
  skiff iam policy --account 123456789012 --region eu-west-1 --format json

The account is looked up with your credentials (sts:GetCallerIdentity) unless
--account names it. No statement grants a wildcard action; resources are limited
to the state bucket prefix and to what Skiff names (skiff-*, sk-*, /skiff/*).")]
    Iam {
        #[command(subcommand)]
        action: IamAction,
    },
    /// Releases: build, upload, sign, list, show, verify.
    #[command(after_help = "\
Examples:
  skiff release create -f examples/hello/skiff.yaml --yes
  skiff release list hello
  skiff release show hello 2026.11.22.1
  skiff release verify hello 2026.11.22.1      signature, artifact, SBOM and provenance digests")]
    Release {
        #[command(subcommand)]
        action: ReleaseAction,
    },
    /// The local provider's supervisor: instances and load balancers on this machine.
    #[command(after_help = "\
Examples:
  skiff local up                               start the supervisor (idempotent)
  skiff local status                           instances, load balancers, targets' health
  skiff local down                             stop the supervisor; instances keep running
  skiff local down --stop-instances            stop everything, databases included

The supervisor outlives the CLI; any later `skiff` finds it through .skiff/local/supervisor.json.")]
    Local {
        #[command(subcommand)]
        action: LocalAction,
    },
    /// Secret values for references (`secret://NAME/KEY`); values are never printed or recorded.
    #[command(after_help = "\
Examples:
  printf '%s' \"$DB_URL\" | skiff secrets set secret://orders-db/url
  skiff secrets list orders-db
  skiff secrets delete secret://orders-db/url --yes")]
    Secrets {
        #[command(subcommand)]
        action: SecretsAction,
    },
    /// Managed databases: backups and restore points; retiring kept copies.
    #[command(after_help = "\
Examples:
  skiff database backup orders-db --dry-run    the steps, with safety and risk; nothing runs
  skiff database backup orders-db --yes        a base copy and a restore point named after the operation
  skiff database list-backups orders-db        restore points, newest first, with their table manifests
  skiff database retire orders-db --yes        delete the instance a restore retained, after approval

A database is the `database.name` of a deployed spec. Locally a backup is a
pg_basebackup copy plus a named restore point in the archived WAL; on AWS an RDS
snapshot (automated backups cover the time between).")]
    Database {
        #[command(subcommand)]
        action: DatabaseAction,
    },
    /// Restore a managed database into a new instance and cut its consumers over.
    #[command(after_help = "\
Examples:
  skiff restore database orders-db --to latest --dry-run     the saga's steps, with safety and risk
  skiff restore database orders-db --to op-5623444cc83fd5484351 --yes
  skiff restore database orders-db --to 2026-12-03T13:00:00Z --yes

Never in place: the current database is snapshotted, the backup is restored into a
new instance and proven (the restore point's rows, the source's settings), then the
saga waits for `skiff saga approve OP` before pointing the consumers' secret at the
copy and restarting them. The old instance is kept for 7 days.")]
    Restore {
        #[command(subcommand)]
        what: RestoreWhat,
    },
    /// Move the region that writes a multi-region service's database (switchover or failover).
    #[command(after_help = "\
Examples:
  skiff failover stack accounts-api --to us-west-2 --dry-run          every step with its safety; nothing runs
  skiff failover stack accounts-api --to us-west-2 --yes              planned switchover: zero acknowledged writes lost
  skiff failover stack accounts-api --to us-west-2 --mode failover --yes
  skiff failover stack accounts-api --to us-west-2 --mode failover --accept-data-loss --yes

A switchover checks the replica's lag, waits for one approval (`skiff saga approve
OP`), freezes writes on the primary, waits until the replica has replayed its last
write, promotes it (IRREVERSIBLE), points the consumers' secret at it, restarts them
and fences the old primary (started again, it refuses writes). A failover (the
primary's region is gone) promotes what the replica has; a lag above --max-lag is
refused unless --accept-data-loss, whose approval names the lag. Failback is a new
switchover, not an undo.")]
    Failover {
        #[command(subcommand)]
        what: FailoverWhat,
    },
    /// Rotate a database's credential or the secrets' key as a saga.
    #[command(after_help = "\
Examples:
  skiff rotate secret orders-db --dry-run             the saga's steps, with safety and risk
  skiff rotate secret orders-db --yes
  skiff rotate secret orders-db --disable-after 10m --yes

A rotation alternates between two database users, as Secrets Manager's multi-user
rotation does: the other user gets a new password, is tested, and becomes what
secret://DB/url resolves to (the previous value is kept as url-previous). Consumers
are restarted one instance at a time; the old login is disabled only after every
running instance reports the new version in its heartbeat and --disable-after has
passed. A consumer that does not catch up pauses the saga with a finding.

  skiff rotate key --dry-run                           a new key for alias `skiff`
  skiff rotate key skiff --delete-after 7d --yes

A key rotation makes a new key, re-encrypts every secret under it, restarts one
consumer instance as a canary, moves the alias, then waits for `skiff saga approve
OP` before scheduling the old key's deletion (7 to 30 days out; it decrypts old
ciphertext until then).")]
    Rotate {
        #[command(subcommand)]
        what: RotateWhat,
    },
    /// Contexts: named state buckets, providers, regions and servers.
    #[command(after_help = "\
Examples:
  skiff config set-context prod --state s3://acme-skiff/prod --provider aws --region us-east-1
  skiff config use-context prod
  skiff config get-contexts
  skiff config show                            resolved settings and where each came from

Resolution order for each setting: flag, environment ($SKIFF_STATE, $SKIFF_PROVIDER,
$SKIFF_REGION, $SKIFF_SERVER), the context, the default (file://.skiff/state, local).
The contexts file is $SKIFF_CONFIG, else ~/.config/skiff/config.yaml.")]
    Config {
        #[command(subcommand)]
        action: ConfigAction,
    },
}

#[derive(Debug, Subcommand)]
pub enum AdoptAction {
    /// Resources of a Terraform state.
    Terraform {
        /// The state file (format version 4).
        #[arg(long, value_name = "FILE", required_unless_present = "show_json", conflicts_with = "show_json")]
        state: Option<PathBuf>,
        /// `terraform show -json` output.
        #[arg(long, value_name = "FILE")]
        show_json: Option<PathBuf>,
        /// Specs of services not deployed yet (their resources are recognized by name).
        #[arg(short = 'f', long = "file")]
        specs: Vec<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub enum TerraformAction {
    /// `terraform plan -detailed-exitcode` of a workspace's last applied configuration on
    /// its newest state: IN_SYNC, or DRIFTED (exit 24) with each planned change.
    Drift {
        /// The workspace.
        #[arg(long)]
        workspace: String,
    },
    /// Plan a module with its variables, check the plan against every guardrail, and
    /// apply exactly that plan (the `terraform-apply` saga).
    Apply {
        /// The module's directory.
        #[arg(long)]
        module: PathBuf,
        /// A JSON variables file (terraform.tfvars.json's format); repeatable, in order.
        #[arg(long = "var-file", value_name = "FILE")]
        var_files: Vec<PathBuf>,
        /// A variable, K=V (V read as JSON when it is, else as a string); after the files.
        #[arg(long = "var", value_name = "K=V", value_parser = parse_param)]
        vars: Vec<(String, String)>,
        /// The workspace: one state and one lease (default: the module directory's name).
        #[arg(long)]
        workspace: Option<String>,
        /// The environment the guardrails judge for; `production` waits for approval.
        #[arg(long, default_value = "production")]
        environment: String,
        /// Print the plan of steps and stop; nothing is recorded or run.
        #[arg(long)]
        dry_run: bool,
    },
    /// Write main.tf, variables.tf and outputs.tf for the spec's service.
    Generate {
        /// The spec file.
        #[arg(short = 'f', long = "file", default_value = "skiff.yaml")]
        file: PathBuf,
        /// The module's directory.
        #[arg(long, default_value = "terraform")]
        out: PathBuf,
        /// Replace files that have other content.
        #[arg(long)]
        force: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum ImportAction {
    /// Kubernetes manifests (YAML or JSON files, directories, multi-document streams).
    Kube {
        /// Files and directories to read.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// The spec to write; with several workloads, a directory of `<service>.yaml`.
        #[arg(long, default_value = "skiff.yaml")]
        out: PathBuf,
        /// Overwrite specs that exist.
        #[arg(long)]
        force: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum RepairAction {
    /// Repair an incident of a service.
    Incident {
        /// The service.
        service: String,
        /// Show the hypotheses and the plan; run nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum DebugAction {
    /// Collect a service's evidence bundle.
    Collect {
        /// The service.
        service: String,
        /// Also write the bundle to this file.
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub enum LocalAction {
    /// Start the supervisor if it is not running.
    Up,
    /// Stop the supervisor.
    Down {
        /// Also stop every instance and local database.
        #[arg(long)]
        stop_instances: bool,
    },
    /// What the supervisor runs.
    Status,
    /// Run the supervisor in the foreground (what `up` starts).
    #[command(hide = true)]
    Serve {
        /// Control port on 127.0.0.1 (0 picks one).
        #[arg(long, default_value_t = 0)]
        port: u16,
    },
}

#[derive(Debug, Subcommand)]
pub enum FailoverWhat {
    /// A service and its database (the `region-failover` saga).
    Stack {
        /// The service.
        service: String,
        /// The region that writes afterwards (one of the spec's `regions`).
        #[arg(long, value_name = "REGION")]
        to: String,
        /// `switchover` (the primary is up; nothing acknowledged is lost) or `failover`
        /// (its region is gone; the replica is promoted with what it has).
        #[arg(long, value_enum, default_value = "switchover")]
        mode: FailoverModeArg,
        /// The most replica lag a promotion takes without accepting loss (bytes of log;
        /// KiB, MiB and GiB suffixes accepted).
        #[arg(long, value_name = "SIZE", default_value = "1MiB", value_parser = parse_size)]
        max_lag: u64,
        /// Promote even when the lag is above --max-lag (a failover only); the writes the
        /// replica has not replayed are lost, and the approval says how many bytes.
        #[arg(long)]
        accept_data_loss: bool,
        /// Plan the failover and show its steps; change nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

/// What `skiff metrics SERVICE VIEW` shows.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum MetricsView {
    /// Jobs waiting in the service's queue and the oldest one's age.
    QueueLag,
}

/// `--mode` of `skiff failover stack`.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum FailoverModeArg {
    /// Planned, zero data loss.
    Switchover,
    /// The primary's region is gone.
    Failover,
}

/// `1048576`, `512KiB`, `1MiB`, `2GiB`.
fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let (digits, unit) = t.split_at(t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len()));
    let n: u64 =
        digits.parse().map_err(|_| format!("`{text}` is not a size: a number of bytes, or with KiB, MiB, GiB"))?;
    let scale = match unit.trim() {
        "" | "B" => 1,
        "KiB" | "K" | "KB" => 1 << 10,
        "MiB" | "M" | "MB" => 1 << 20,
        "GiB" | "G" | "GB" => 1 << 30,
        other => return Err(format!("unknown unit `{other}` in `{text}`: use KiB, MiB or GiB")),
    };
    n.checked_mul(scale).ok_or_else(|| format!("`{text}` is too large"))
}

#[derive(Debug, Subcommand)]
pub enum RestoreWhat {
    /// A managed database (its `database.name` in the spec).
    Database {
        /// The database.
        database: String,
        /// `latest`, a restore point (see `skiff database list-backups`), or an RFC 3339 time.
        #[arg(long, default_value = "latest")]
        to: String,
        /// A path a shadow instance of the service on the copy must answer with 2xx
        /// before the approval gate (its health path is always asked).
        #[arg(long, value_name = "PATH")]
        shadow_read: Option<String>,
        /// Plan the restore and show its steps; change nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum RotateWhat {
    /// The login a managed database's secret holds (secret://NAME/url; NAME is the database).
    Secret {
        /// The secret's name, which is its database's.
        name: String,
        /// How long the old login stays enabled after the new one is promoted.
        #[arg(long, value_name = "DURATION", default_value = "1m", value_parser = parse_duration)]
        disable_after: u64,
        /// Plan the rotation and show its steps; change nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// The key secrets are encrypted with (alias `skiff`; a KMS key on AWS, a key
    /// version of the encrypted store locally).
    Key {
        /// The alias.
        #[arg(default_value = "skiff")]
        alias: String,
        /// When the old key is deleted, once approved: 7d to 30d, as KMS allows.
        #[arg(long, value_name = "DAYS", default_value = "30d", value_parser = parse_days)]
        delete_after: u32,
        /// Plan the rotation and show its steps; change nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

fn parse_days(s: &str) -> Result<u32, String> {
    s.strip_suffix('d')
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| format!("`{s}` is not a number of days such as `30d`"))
}

fn parse_duration(s: &str) -> Result<u64, String> {
    s.parse::<skiff_spec::values::Duration>()
        .map(|d| d.as_millis())
        .map_err(|_| format!("`{s}` is not {}", skiff_spec::values::Duration::EXPECTED))
}

#[derive(Debug, Subcommand)]
pub enum DatabaseAction {
    /// Take a backup: a base copy and a named restore point with every table's rows
    /// and checksum, recorded in the ledger (the `database-backup` saga).
    Backup {
        /// The database.
        database: String,
        /// Plan the backup and show its steps; change nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// The backups recorded for a database, newest first.
    ListBackups {
        /// The database.
        database: String,
    },
    /// Delete an instance a restore retained (the `database-retire` saga): a final
    /// snapshot, then the deletion once approved. Irreversible.
    Retire {
        /// The database.
        database: String,
        /// The retained instance (default: the only one; `skiff status` lists them).
        #[arg(long)]
        instance: Option<String>,
        /// Plan the retirement and show its steps; change nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum SecretsAction {
    /// Store a value (read from stdin) under a reference.
    Set {
        /// The reference, `secret://NAME/KEY`.
        reference: String,
    },
    /// References stored under a secret name (never values).
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

#[derive(Debug, Subcommand)]
pub enum PolicyAction {
    /// Evaluate every rule against the plan a deploy of the spec would run.
    Check {
        /// The spec file.
        #[arg(short = 'f', long = "file", default_value = "skiff.yaml")]
        file: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
pub enum CostAction {
    /// Monthly estimate per resource, the intent behind each figure, other intents, the ceiling.
    Explain {
        /// The spec file.
        #[arg(short = 'f', long = "file", default_value = "skiff.yaml")]
        file: PathBuf,
        /// Estimate for this environment (its ceiling) instead of the spec's `environment`.
        #[arg(long = "env", value_name = "ENV")]
        env: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum IamAction {
    /// Print the IAM policy document the identity running Skiff needs.
    Policy {
        /// The AWS account id (default: asked of STS with your credentials).
        #[arg(long)]
        account: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum KeysAction {
    /// Generate a signing key pair.
    Generate {
        /// Replace an existing key pair.
        #[arg(long)]
        force: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum PluginAction {
    /// Every installed plugin, its version, kinds and whether its executable matches its digest.
    List,
    /// Start a plugin once: manifest, digest, handshake and its own description must agree.
    Validate {
        /// A plugin's name, one of its step kinds or checks, or a plugin.yaml path.
        plugin: String,
    },
    /// Install a plugin from its plugin.yaml into the plugins directory, then start it once to check it.
    Install {
        /// The manifest (plugin.yaml) to install.
        manifest: PathBuf,
        /// The executable to install instead of the one the manifest names.
        #[arg(long, value_name = "PATH")]
        executable: Option<PathBuf>,
        /// Record the executable's sha256 as it is now, for a plugin you built yourself
        /// (otherwise it must match the manifest's `sha256`).
        #[arg(long)]
        pin: bool,
        /// Replace an installed plugin of the same name.
        #[arg(long)]
        force: bool,
    },
    /// What a plugin offers and how a spec uses its step kinds.
    Explain {
        /// A plugin's name, one of its step kinds or checks, or a plugin.yaml path.
        plugin: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum ReleaseAction {
    /// Build (unless --no-build), upload the artifact, SBOM and provenance, and sign.
    Create {
        /// The spec file.
        #[arg(short = 'f', long = "file", default_value = "skiff.yaml")]
        file: PathBuf,
        /// Use the artifact as it is; do not run `artifact.build`.
        #[arg(long)]
        no_build: bool,
    },
    /// A service's releases (every service's when none is named).
    List {
        /// The service.
        service: Option<String>,
    },
    /// One release's manifest.
    Show {
        /// The service.
        service: String,
        /// The release id (default: the newest).
        release: Option<String>,
    },
    /// Check the signature, then the artifact, SBOM, provenance and spec digests.
    Verify {
        /// The service.
        service: String,
        /// The release id (default: the newest).
        release: Option<String>,
        /// The trusted public key (default .skiff/keys/cosign.pub or $SKIFF_PUBLIC_KEY).
        #[arg(long)]
        public_key: Option<PathBuf>,
    },
    /// Roll a release that ran here out in another environment: same artifact, no rebuild.
    #[command(after_help = "\
Examples:
  skiff config set-context staging --state file://.skiff/staging/state --use
  skiff config set-context production --state file://.skiff/production/state
  skiff release promote web 2026.12.07.1 --to production --yes
  skiff --context staging release promote web 2026.12.07.1 --to production -f services/web/skiff.yaml

The release comes from this context's bucket (where it must have finished a rollout)
and goes to the context named ENV (its own bucket and provider). Its signature and
every digest are verified first; the artifact, SBOM and provenance are copied byte for
byte (same digests), the manifest is re-signed with ENV's spec — the spec's
`environments.ENV` overlay (instances, intent, resources, secrets) — and recorded as
promoted from here. Then it rolls out in ENV exactly as `skiff deploy` would: ENV's
policy ceilings, its canary, approval where ENV needs one. Refused with SIGNATURE_INVALID
or DIGEST_MISMATCH for an unsigned or tampered release, POLICY_DENIED for one that
never ran here, NOT_FOUND for an unknown release or context.")]
    Promote {
        /// The service.
        service: String,
        /// The release id (`skiff release list SERVICE`).
        release: String,
        /// The target environment: a context of that name (`skiff config get-contexts`).
        #[arg(long, value_name = "ENV")]
        to: String,
        /// The service's spec.
        #[arg(short = 'f', long = "file", default_value = "skiff.yaml")]
        file: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
pub enum SagaAction {
    /// Operations in the bucket, newest first.
    List {
        /// Only this service's operations.
        #[arg(long)]
        service: Option<String>,
        /// Only operations in this status (running, awaiting_approval, paused, succeeded, ...).
        #[arg(long)]
        status: Option<String>,
    },
    /// One operation: intent, steps with safety and status, failure, recent events.
    Show {
        /// The operation id.
        #[arg(add = ArgValueCandidates::new(crate::complete::operations))]
        op: String,
    },
    /// Plan and run a saga kind in the foreground (`--dry-run`: plan only).
    Start {
        /// The saga kind (see `skiff saga kinds`).
        kind: String,
        /// The service it acts on.
        #[arg(long)]
        service: Option<String>,
        /// A parameter of the saga kind, KEY=VALUE; repeatable.
        #[arg(long = "param", value_name = "KEY=VALUE", value_parser = parse_param)]
        params: Vec<(String, String)>,
        /// Print the plan and stop; nothing is recorded or changed.
        #[arg(long)]
        dry_run: bool,
        /// Makes the start idempotent: the same key returns the same operation.
        #[arg(long)]
        idempotency_key: Option<String>,
        /// Why, for the intent and the audit log.
        #[arg(long, default_value = "")]
        reason: String,
        /// For `rollback`: `previous-stable` or a release id.
        #[arg(long)]
        to: Option<String>,
        /// For `traffic-cutover`: the old backend, http://HOST:PORT.
        #[arg(long, value_name = "URL")]
        from: Option<String>,
        /// For `traffic-cutover`: the weights on the Skiff side, ascending, ending at 100.
        #[arg(long, value_name = "W,W,…")]
        steps: Option<String>,
        /// For `traffic-cutover`: run the old workload's scale-down with kubectl and this
        /// kubeconfig at the end (without it, the command is printed).
        #[arg(long, value_name = "FILE")]
        kubeconfig: Option<String>,
    },
    /// The saga kinds this build can run, with their parameters.
    Kinds,
    /// Approve the step the operation waits at (or `--step` ahead of time), then continue it.
    Approve {
        /// The operation id.
        #[arg(add = ArgValueCandidates::new(crate::complete::operations))]
        op: String,
        /// Approve this step ahead of time instead of the one waiting.
        #[arg(long)]
        step: Option<String>,
    },
    /// Reject the operation at its approval gate; completed reversible steps are undone.
    Reject {
        /// The operation id.
        #[arg(add = ArgValueCandidates::new(crate::complete::operations))]
        op: String,
        /// Why.
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Pause at the next step boundary.
    Pause {
        /// The operation id.
        #[arg(add = ArgValueCandidates::new(crate::complete::operations))]
        op: String,
    },
    /// Continue a paused operation, or one whose engine died (after its lease lapses).
    Resume {
        /// The operation id.
        #[arg(add = ArgValueCandidates::new(crate::complete::operations))]
        op: String,
    },
    /// Cancel: undo completed reversible steps, newest first.
    Cancel {
        /// The operation id.
        #[arg(add = ArgValueCandidates::new(crate::complete::operations))]
        op: String,
    },
    /// The operation's events (same as `skiff events --op OP`).
    Events {
        /// The operation id.
        #[arg(add = ArgValueCandidates::new(crate::complete::operations))]
        op: String,
        /// Keep printing new events until the operation ends.
        #[arg(long)]
        follow: bool,
    },
}

fn parse_param(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.trim().to_owned(), v.to_owned()))
        .filter(|(k, _)| !k.is_empty())
        .ok_or_else(|| format!("`{s}` is not KEY=VALUE"))
}

#[derive(Debug, Subcommand)]
pub enum StateAction {
    /// Create the bucket's marker (and directory, for file://). Idempotent.
    Init,
    /// Check every document, event log, digest and reference; findings in the envelope.
    Verify,
}

#[derive(Debug, Subcommand)]
pub enum InitRecipe {
    /// An HTTP service behind the load balancer.
    Service(InitArgs),
    /// A worker: no port, no load balancer.
    Worker(InitArgs),
    /// A multi-part recipe.
    Stack {
        /// The stack recipe.
        #[arg(value_enum)]
        stack: StackKind,
        #[command(flatten)]
        args: InitArgs,
    },
    /// A recipe an installed plugin serves (`skiff plugin list` names them).
    Plugin {
        /// The recipe, `PLUGIN.NAME`.
        recipe: String,
        #[command(flatten)]
        args: InitArgs,
    },
}

/// Stack recipes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum StackKind {
    /// An HTTP API with its own PostgreSQL database.
    #[value(name = "api-db")]
    ApiDb,
    /// An API whose PostgreSQL has a streaming replica promoted automatically when the primary fails.
    #[value(name = "postgres-ha")]
    PostgresHa,
}

#[derive(Debug, Args)]
pub struct InitArgs {
    /// The service name: a DNS label such as payments-api.
    pub name: String,
    /// Directory to write skiff.yaml into.
    #[arg(long, default_value = ".")]
    pub dir: PathBuf,
    /// Port the service listens on (services only).
    #[arg(long, default_value_t = 8080)]
    pub port: u16,
    /// Overwrite an existing skiff.yaml.
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Subcommand)]
pub enum ConfigAction {
    /// List contexts; the current one is marked.
    GetContexts,
    /// Make a context the current one.
    UseContext {
        /// The context's name.
        name: String,
    },
    /// Create or update a context; `--provider` and `--region` set its provider and region.
    SetContext {
        /// The context's name.
        name: String,
        /// State bucket URL (`--bucket` works too).
        #[arg(long, value_name = "URL")]
        state: Option<String>,
        /// skiffd server URL for this context.
        #[arg(long, value_name = "URL")]
        server: Option<String>,
        /// Also make it the current context.
        #[arg(long = "use")]
        make_current: bool,
    },
    /// Show the resolved bucket, provider, region and server, and where each came from.
    Show,
}

impl Command {
    /// The typed request this command line asks for.
    pub fn into_request(self) -> Request {
        match self {
            Command::Init { recipe } => Request::Init(recipe.into_request()),
            Command::Validate { file } => Request::Validate { file },
            Command::Plan { file } => Request::Plan { file },
            Command::Deploy { file, watch: true, .. } => Request::Watch { file },
            Command::Deploy { file, no_build, dry_run, shadow, mirror, .. } => {
                let shadow = shadow.then_some(ShadowRequest { mirror_percent: mirror });
                Request::Deploy(DeployRequest { file, build: !no_build, dry_run, shadow })
            }
            Command::Rollback { service, to } => Request::Rollback(RollbackRequest { service, to }),
            Command::Status { service } => Request::Status { service },
            Command::Reconcile { service: Some(service), repair: true } => Request::Repair { service },
            Command::Reconcile { service, .. } => Request::Reconcile { service },
            Command::Logs { service, instance, follow, since, grep, trace, json } => {
                Request::Logs(LogsRequest { service, instance, follow, since, grep, trace, json })
            }
            Command::Metrics { service, view } => {
                Request::Metrics { service, queue_lag: matches!(view, Some(MetricsView::QueueLag)) }
            }
            Command::Debug { action: DebugAction::Collect { service, out } } => Request::DebugCollect { service, out },
            Command::Adopt { action: AdoptAction::Terraform { state, show_json, specs } } => {
                Request::AdoptTerraform { file: state.or(show_json).unwrap_or_default(), specs }
            }
            Command::Terraform {
                action: TerraformAction::Apply { module, var_files, vars, workspace, environment, dry_run },
            } => Request::TerraformApply { module, var_files, vars, workspace, environment, dry_run },
            Command::Terraform { action: TerraformAction::Drift { workspace } } => {
                Request::TerraformDrift { workspace }
            }
            Command::Terraform { action: TerraformAction::Generate { file, out, force } } => {
                Request::TerraformGenerate { file, out, force }
            }
            Command::Import { action: ImportAction::Kube { paths, out, force } } => {
                Request::ImportKube { paths, out, force }
            }
            Command::Repair { action: RepairAction::Incident { service, dry_run } } => {
                Request::Incident { service, dry_run }
            }
            Command::Doctor { service } => Request::Doctor { service },
            Command::Schema => Request::Schema,
            Command::Version => Request::Version,
            // Not a request: `crate::main` runs the cockpit before asking for one.
            Command::Tui { .. } | Command::Completion { .. } => Request::Version,
            Command::Config { action } => Request::Config(match action {
                ConfigAction::GetContexts => ConfigRequest::GetContexts,
                ConfigAction::UseContext { name } => ConfigRequest::UseContext { name },
                ConfigAction::SetContext { name, state, server, make_current } => {
                    ConfigRequest::SetContext { name, state, server, make_current }
                }
                ConfigAction::Show => ConfigRequest::Show,
            }),
            Command::State { action: StateAction::Init } => Request::StateInit,
            Command::State { action: StateAction::Verify } => Request::StateVerify,
            Command::Events { op, follow, after } => Request::Events { op, follow, after },
            Command::Audit { since } => Request::Audit { since },
            Command::Saga { action } => action.into_request(),
            Command::Keys { action: KeysAction::Generate { force } } => Request::KeysGenerate { force },
            Command::Plugin { action } => Request::Plugin(match action {
                PluginAction::List => PluginRequest::List,
                PluginAction::Validate { plugin } => PluginRequest::Validate { what: plugin },
                PluginAction::Explain { plugin } => PluginRequest::Explain { what: plugin },
                PluginAction::Install { manifest, executable, pin, force } => {
                    PluginRequest::Install { manifest, executable, pin, force }
                }
            }),
            Command::Iam { action: IamAction::Policy { account } } => Request::IamPolicy { account },
            Command::Policy { action: PolicyAction::Check { file } } => Request::PolicyCheck { file },
            Command::Cost { action: CostAction::Explain { file, env } } => Request::CostExplain { file, env },
            Command::Local { action } => Request::Local(match action {
                LocalAction::Up => LocalRequest::Up,
                LocalAction::Down { stop_instances } => LocalRequest::Down { stop_instances },
                LocalAction::Status => LocalRequest::Status,
                LocalAction::Serve { port } => LocalRequest::Serve { port },
            }),
            Command::Failover {
                what: FailoverWhat::Stack { service, to, mode, max_lag, accept_data_loss, dry_run },
            } => Request::Failover(skiff_ops::failover::FailoverRequest {
                service,
                to,
                mode: match mode {
                    FailoverModeArg::Switchover => skiff_ops::failover::FailoverMode::Switchover,
                    FailoverModeArg::Failover => skiff_ops::failover::FailoverMode::Failover,
                },
                max_lag_bytes: max_lag,
                accept_data_loss,
                dry_run,
            }),
            Command::Restore { what: RestoreWhat::Database { database, to, shadow_read, dry_run } } => {
                Request::Database(DatabaseRequest::Restore { database, to, shadow_read, dry_run })
            }
            Command::Rotate { what: RotateWhat::Secret { name, disable_after, dry_run } } => {
                Request::Database(DatabaseRequest::RotateSecret {
                    secret: name,
                    disable_after_ms: Some(disable_after),
                    dry_run,
                })
            }
            Command::Rotate { what: RotateWhat::Key { alias, delete_after, dry_run } } => {
                Request::Database(DatabaseRequest::RotateKey { alias, deletion_days: delete_after, dry_run })
            }
            Command::Database { action } => Request::Database(match action {
                DatabaseAction::Backup { database, dry_run } => DatabaseRequest::Backup { database, dry_run },
                DatabaseAction::ListBackups { database } => DatabaseRequest::ListBackups { database },
                DatabaseAction::Retire { database, instance, dry_run } => {
                    DatabaseRequest::Retire { database, instance, dry_run }
                }
            }),
            Command::Secrets { action } => Request::Secrets(match action {
                SecretsAction::Set { reference } => SecretsRequest::Set { reference },
                SecretsAction::List { name } => SecretsRequest::List { name },
                SecretsAction::Delete { reference } => SecretsRequest::Delete { reference },
            }),
            Command::Release { action } => Request::Release(match action {
                ReleaseAction::Create { file, no_build } => ReleaseRequest::Create { file, build: !no_build },
                ReleaseAction::List { service } => ReleaseRequest::List { service },
                ReleaseAction::Show { service, release } => ReleaseRequest::Show { service, release },
                ReleaseAction::Verify { service, release, public_key } => {
                    ReleaseRequest::Verify { service, release, public_key }
                }
                ReleaseAction::Promote { service, release, to, file } => {
                    ReleaseRequest::Promote { service, release, to, file }
                }
            }),
        }
    }
}

impl InitRecipe {
    fn into_request(self) -> InitRequest {
        let (recipe, a) = match self {
            InitRecipe::Service(a) => (Recipe::Service, a),
            InitRecipe::Worker(a) => (Recipe::Worker, a),
            InitRecipe::Stack { stack: StackKind::ApiDb, args } => (Recipe::ApiDb, args),
            InitRecipe::Stack { stack: StackKind::PostgresHa, args } => (Recipe::PostgresHa, args),
            InitRecipe::Plugin { recipe, args } => (Recipe::Plugin(recipe), args),
        };
        InitRequest { recipe, name: a.name, dir: a.dir, port: a.port, force: a.force }
    }
}

impl SagaAction {
    fn into_request(self) -> Request {
        let saga = match self {
            SagaAction::Events { op, follow } => return Request::Events { op, follow, after: 0 },
            SagaAction::List { service, status } => SagaRequest::List { service, status },
            SagaAction::Show { op } => SagaRequest::Show { op },
            SagaAction::Start {
                kind,
                service,
                mut params,
                dry_run,
                idempotency_key,
                reason,
                to,
                from,
                steps,
                kubeconfig,
            } => {
                let flags = [("from", from), ("steps", steps), ("kubeconfig", kubeconfig)];
                params.extend(flags.into_iter().filter_map(|(k, v)| Some((k.to_owned(), v?))));
                SagaRequest::Start(SagaStart { kind, service, params, dry_run, idempotency_key, reason, to })
            }
            SagaAction::Kinds => SagaRequest::Kinds,
            SagaAction::Approve { op, step } => SagaRequest::Approve { op, step },
            SagaAction::Reject { op, reason } => SagaRequest::Reject { op, reason },
            SagaAction::Pause { op } => SagaRequest::Pause { op },
            SagaAction::Resume { op } => SagaRequest::Resume { op },
            SagaAction::Cancel { op } => SagaRequest::Cancel { op },
        };
        Request::Saga(saga)
    }
}
