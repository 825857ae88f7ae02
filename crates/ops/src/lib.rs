//! The application layer every front end calls: a typed [`Request`] in, an
//! [`Answer`](skiff_sdk::Answer) out. Mutating requests are planned, checked against
//! policy, submitted (the engine claims the service), audited, and run here or left
//! for a worker ([`pipeline`]); every operation's answer is read back from the ledger
//! ([`report::outcome`]), so the CLI, skiffd, skiff-worker and the TUI answer alike.
//! [`remote`] runs the same requests against skiffd. No argument parsing, no printing:
//! a [`Ui`] shows progress and asks questions.
#![warn(missing_docs)]

mod adopt;
mod audit;
pub mod autoscale;
mod config;
mod context;
mod cost;
mod cutover;
mod database;
mod deploy;
pub mod describe;
mod doctor;
mod error;
mod events;
mod evidence;
pub mod factory;
pub mod failover;
pub mod ha;
mod iam;
mod import;
mod incident;
mod init;
pub mod intent;
mod keys;
mod local;
mod lookup;
mod meta;
mod observe;
mod pipeline;
mod plan;
mod plugin;
mod policy;
mod release;
pub mod remote;
pub mod report;
mod request;
mod restore;
mod rotate;
mod saga;
mod secrets;
pub mod spec;
mod state;
mod terraform;
pub mod worker;

pub use context::{Context, Env, Quiet, Ui};
pub use error::{Error, Result, answer};
pub use local::RUNNER_ARG;
pub use request::{
    ConfigRequest, DatabaseRequest, DeployRequest, InitRequest, LocalRequest, LogsRequest, PluginRequest, Recipe,
    ReleaseRequest, Request, RollbackRequest, SagaRequest, SagaStart, SecretsRequest, ShadowRequest,
};
use skiff_sdk::Answer;

/// Answers a request here (direct mode).
pub async fn run(ctx: &Context, request: Request) -> Answer {
    use tracing::Instrument as _;
    let span = tracing::info_span!(
        "request",
        otel.name = %format!("skiff {}", request.name()),
        request = request.name(),
        code = tracing::field::Empty,
        otel.status_code = tracing::field::Empty,
    );
    if let Some(carrier) = join(ctx, &request).await {
        skiff_observability::continue_trace(&span, &carrier);
    }
    let mut a = answer(execute(ctx, request).instrument(span.clone()).await);
    span.record("code", a.envelope.code.as_str());
    if a.envelope.code.exit_code() != 0 {
        span.record("otel.status_code", "ERROR");
    }
    if a.envelope.code == skiff_sdk::Code::StateUnavailable {
        name_the_bucket(ctx, &mut a);
    }
    a
}

/// The trace a request joins: the operation's it acts on (recorded in its intent), or
/// the `TRACEPARENT` this process was started with when it is not inside a trace yet.
async fn join(ctx: &Context, request: &Request) -> Option<skiff_observability::Carrier> {
    if let Some(op) = request.acts_on()
        && let Ok((_, ledger)) = ctx.ledger()
        && let Ok(Some(intent)) =
            ledger.read::<skiff_state::docs::OperationIntent>(&skiff_state::keys::op_intent(op)).await
        && let Some(t) = intent.trace
    {
        return Some(skiff_observability::Carrier { traceparent: t.traceparent, tracestate: t.tracestate });
    }
    if tracing::Span::current().is_none() {
        return skiff_observability::Carrier::from_env();
    }
    None
}

/// An unreachable bucket is always named, with where its URL came from.
fn name_the_bucket(ctx: &Context, a: &mut Answer) {
    let Ok((_, resolved)) = ctx.resolve() else { return };
    let url = &resolved.state.value;
    if !a.envelope.summary.contains(url.as_str()) && !a.envelope.facts.iter().any(|f| f.contains(url.as_str())) {
        let from = match resolved.state.origin {
            skiff_sdk::config::Origin::Flag => "--bucket",
            skiff_sdk::config::Origin::Env => "$SKIFF_STATE",
            skiff_sdk::config::Origin::Context => "the current context",
            skiff_sdk::config::Origin::Default => "the default",
        };
        a.envelope.facts.insert(0, format!("bucket: {url} (from {from})"));
    }
}

async fn execute(ctx: &Context, request: Request) -> Result<Answer> {
    match request {
        Request::Init(r) => init::run(ctx, &r).await,
        Request::Validate { file } => meta::validate(ctx, &file).await,
        Request::Plan { file } => plan::run(ctx, &file).await,
        Request::Deploy(r) if r.dry_run => deploy::dry_run(ctx, &r.file, true, r.shadow).await,
        Request::Deploy(r) => deploy::deploy(ctx, &r.file, r.build, r.shadow).await,
        Request::Watch { file } => deploy::watch(ctx, &file).await,
        Request::Rollback(r) => deploy::rollback(ctx, &r.service, &r.to).await,
        Request::Status { service } => observe::status(ctx, service).await,
        Request::Reconcile { service } => observe::reconcile(ctx, service).await,
        Request::Repair { service } => deploy::repair(ctx, &service).await,
        Request::Incident { service, dry_run } => incident::repair(ctx, &service, dry_run).await,
        Request::Logs(r) => observe::logs(ctx, r).await,
        Request::DebugCollect { service, out } => evidence::collect(ctx, &service, out).await,
        Request::ImportKube { paths, out, force } => import::kube(ctx, &paths, &out, force),
        Request::TerraformGenerate { file, out, force } => terraform::generate(ctx, &file, &out, force).await,
        Request::AdoptTerraform { file, specs } => adopt::terraform(ctx, &file, &specs).await,
        Request::TerraformDrift { workspace } => terraform::drift_answer(ctx, &workspace).await,
        Request::TerraformApply { module, var_files, vars, workspace, environment, dry_run } => {
            let args = terraform::ApplyArgs {
                module: &module,
                var_files: &var_files,
                vars: &vars,
                workspace: workspace.as_deref(),
                environment: &environment,
                dry_run,
            };
            terraform::apply(ctx, &args).await
        }
        Request::Metrics { service, queue_lag: false } => observe::metrics(ctx, &service).await,
        Request::Metrics { service, queue_lag: true } => autoscale::queue_lag(ctx, &service).await,
        Request::Doctor { service } => doctor::run(ctx, service).await,
        Request::Schema => Ok(meta::schema()),
        Request::Version => Ok(meta::version()),
        Request::Config(r) => config::run(ctx, r),
        Request::StateInit => state::init(ctx).await,
        Request::StateVerify => state::verify(ctx).await,
        Request::Events { op, follow, after } => events::run(ctx, &op, follow, after).await,
        Request::Audit { since } => audit::run(ctx, since.as_deref()).await,
        Request::Saga(r) => saga::run(ctx, r).await,
        Request::KeysGenerate { force } => keys::generate(ctx, force),
        Request::IamPolicy { account } => iam::policy(ctx, account).await,
        Request::PolicyCheck { file } => policy::check(ctx, &file).await,
        Request::CostExplain { file, env } => cost::explain(ctx, &file, env.as_deref()).await,
        Request::Local(r) => local::run(ctx, r).await,
        Request::Secrets(r) => secrets::run(ctx, r).await,
        Request::Database(r) => database::run(ctx, r).await,
        Request::Failover(r) => failover::stack(ctx, &r).await,
        Request::Release(r) => release::run(ctx, r).await,
        Request::Plugin(PluginRequest::List) => plugin::list(ctx),
        Request::Plugin(PluginRequest::Validate { what }) => {
            plugin::validate(ctx, &what, std::sync::Arc::new(skiff_clock::SystemClock)).await
        }
        Request::Plugin(PluginRequest::Explain { what }) => plugin::explain(ctx, &what),
        Request::Plugin(PluginRequest::Install { manifest, executable, pin, force }) => {
            plugin::install(ctx, &manifest, executable.as_deref(), pin, force).await
        }
    }
}
