//! One module per command; each returns an [`Outcome`] and prints nothing.

mod audit;
pub(crate) mod config;
pub(crate) mod deploy;
mod doctor;
pub(crate) mod events;
mod iam;
mod init;
pub(crate) mod intent;
mod keys;
pub(crate) mod local;
mod observe;
pub(crate) mod plan;
pub(crate) mod policy;
mod release;
pub(crate) mod saga;
mod schema;
mod state;
mod validate;
mod version;

use std::path::Path;

use skiff_sdk::{Code, Envelope, Safety};
use skiff_spec::{Spec, SpecError};

use crate::cli::Command;
use crate::{Ctx, Outcome};

pub(crate) fn run(ctx: &Ctx, command: Command) -> Outcome {
    match command {
        Command::Init { recipe } => init::run(ctx, recipe),
        Command::Validate { file } => validate::run(ctx, &file),
        Command::Plan { file } => plan::run(ctx, &file),
        Command::Deploy { file, watch: true, .. } => deploy::watch(ctx, &file),
        Command::Deploy { file, no_build, watch: false, .. } => deploy::deploy(ctx, &file, !no_build),
        Command::Rollback { service, to } => deploy::rollback(ctx, &service, &to),
        Command::Status { service } => observe::status(ctx, service),
        Command::Reconcile { service: Some(service), repair: true } => deploy::repair(ctx, &service),
        Command::Reconcile { service, .. } => observe::reconcile(ctx, service),
        Command::Logs { service, instance, follow, since } => {
            observe::logs(ctx, &service, instance, follow, since.as_deref())
        }
        Command::Metrics { service } => observe::metrics(ctx, &service),
        Command::Doctor { service } => doctor::run(ctx, service),
        Command::Schema => schema::run(),
        Command::Version => version::run(),
        Command::Config { action } => config::run(ctx, action),
        Command::State { action } => state::run(ctx, action),
        Command::Events { op, follow, after } => events::run(ctx, &op, follow, after),
        Command::Audit { since } => audit::run(ctx, since.as_deref()),
        Command::Saga { action } => saga::run(ctx, action),
        Command::Keys { action } => keys::run(ctx, action),
        Command::Iam { action } => iam::run(ctx, action),
        Command::Policy { action: crate::cli::PolicyAction::Check { file } } => policy::check(ctx, &file),
        Command::Local { action } => local::run(ctx, action),
        Command::Secrets { action } => local::secrets(ctx, action),
        Command::Release { action } => release::run(ctx, action),
    }
}

/// Runs an async body with the resolved ledger on a fresh runtime; a setup failure
/// is the outcome to answer with.
pub(crate) fn with_ledger<T, F>(
    ctx: &Ctx,
    f: impl FnOnce(skiff_state::Ledger, skiff_sdk::config::Resolved) -> F,
) -> Result<T, Box<Outcome>>
where
    F: std::future::Future<Output = T>,
{
    let runtime = ctx.runtime()?;
    let (resolved, ledger) = ctx.ledger()?;
    Ok(runtime.block_on(f(ledger, resolved)))
}

/// [`with_ledger`] for bodies that produce the command's outcome.
pub(crate) fn block_on<F>(ctx: &Ctx, f: impl FnOnce(skiff_state::Ledger, skiff_sdk::config::Resolved) -> F) -> Outcome
where
    F: std::future::Future<Output = Outcome>,
{
    with_ledger(ctx, f).unwrap_or_else(|o| *o)
}

/// The answer for a ledger error, with what to do next.
pub(crate) fn state_error(e: &skiff_state::StateError) -> Outcome {
    use skiff_state::StateError as E;
    let env = Envelope::failure(e.code(), e.to_string());
    let env = match e {
        E::Unavailable { .. } => env.action("show", "skiff config show", false, Safety::ReadOnly, 0.6).action(
            "init",
            "skiff state init --yes",
            true,
            Safety::Reversible,
            0.3,
        ),
        E::Corrupt { .. } | E::DigestMismatch { .. } => {
            env.action("verify", "skiff state verify", false, Safety::ReadOnly, 0.8)
        }
        E::Conflict { .. } => {
            env.fact("nothing was changed by the failed attempt; running the command again re-reads the latest state")
        }
        _ => env,
    };
    env.into()
}

/// Reads and parses a spec file; `Err` is the outcome to answer with.
pub(crate) fn load_spec(ctx: &Ctx, file: &Path) -> Result<(String, Spec), Box<Outcome>> {
    let shown = file.display().to_string();
    let path = ctx.cwd.join(file);
    let bytes = std::fs::read(&path).map_err(|e| {
        Box::new(if e.kind() == std::io::ErrorKind::NotFound {
            Envelope::failure(Code::NotFound, format!("no spec at {shown}"))
                .fact(format!("{} does not exist", path.display()))
                .action("init", "skiff init service NAME", false, Safety::ReadOnly, 0.6)
                .action("validate-other", "skiff validate -f PATH/skiff.yaml", false, Safety::ReadOnly, 0.4)
                .into()
        } else {
            Envelope::failure(Code::IoError, format!("cannot read {shown}"))
                .fact(format!("{}: {e}", path.display()))
                .into()
        })
    })?;
    let spec = skiff_spec::parse(&shown, &bytes).map_err(|e| Box::new(spec_error(&shown, &e)))?;
    Ok((shown, spec))
}

/// The SPEC_INVALID answer: one fact per problem, structured diagnostics in `data`,
/// the full text with expectations and fixes for people.
pub(crate) fn spec_error(file: &str, e: &SpecError) -> Outcome {
    let n = e.diagnostics().len();
    let diagnostics: Vec<serde_json::Value> = e
        .diagnostics()
        .iter()
        .map(|d| {
            serde_json::json!({
                "file": d.file,
                "line": d.pos.line,
                "column": d.pos.column,
                "path": d.path.to_string(),
                "message": d.message,
                "expected": d.expected,
                "fix": d.hint,
            })
        })
        .collect();
    let env = Envelope::failure(
        Code::SpecInvalid,
        format!("{file} is invalid: {n} problem{}", if n == 1 { "" } else { "s" }),
    )
    .facts(e.diagnostics().iter().map(|d| format!("{}:{}: {}: {}", d.file, d.pos, d.path, d.message)))
    .data(serde_json::json!({ "file": file, "diagnostics": diagnostics }))
    .action("validate", format!("skiff validate -f {file}"), false, Safety::ReadOnly, 0.9)
    .action("schema", "skiff schema", false, Safety::ReadOnly, 0.3);
    Outcome { body_replaces_facts: true, ..Outcome::from(env).body(e.to_string()) }
}

/// `n thing` or `n things`.
pub(crate) fn plural(n: impl Into<u64>, thing: &str) -> String {
    let n = n.into();
    format!("{n} {thing}{}", if n == 1 { "" } else { "s" })
}
