//! The `skiff` command line: parses arguments, runs one command, prints its envelope.
//! Commands are functions returning an [`Outcome`]; printing happens only in
//! [`output`], so JSON and human output always describe the same result.

pub mod api;
pub mod cli;
pub(crate) mod cmd;
mod output;
mod remote;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use skiff_sdk::config::{self, ClientConfig, Flags, Resolved};
use skiff_sdk::{Code, Envelope};

pub use cli::Format;

/// What a command produced: the envelope, plus text only humans see.
#[derive(Debug)]
pub struct Outcome {
    /// The envelope.
    pub envelope: Envelope,
    /// Detail for human output, printed after the summary and facts.
    pub body: Option<String>,
    /// Print only `body` in human mode (for output meant to be redirected).
    pub raw: bool,
    /// Leave the facts out of human mode because `body` says the same at more length.
    pub body_replaces_facts: bool,
}

impl From<Envelope> for Outcome {
    fn from(envelope: Envelope) -> Self {
        Outcome { envelope, body: None, raw: false, body_replaces_facts: false }
    }
}

impl Outcome {
    /// Adds human-only detail.
    #[must_use]
    pub fn body(mut self, body: impl Into<String>) -> Self {
        self.body = Some(body.into());
        self
    }
}

/// Reads an environment variable; injected so tests can control the environment.
pub(crate) type EnvLookup = Box<dyn Fn(&str) -> Option<String>>;

/// Everything a command may consult about its invocation.
pub(crate) struct Ctx {
    pub(crate) format: Format,
    pub(crate) quiet: bool,
    pub(crate) flags: Flags,
    pub(crate) cwd: PathBuf,
    pub(crate) env: EnvLookup,
    pub(crate) yes: bool,
    pub(crate) interactive: bool,
    /// Submit operations and return instead of running them (skiffd, `deploy --detach`):
    /// a worker claims and runs them.
    pub(crate) detach: bool,
}

impl Ctx {
    pub(crate) fn config_path(&self) -> PathBuf {
        let p = config::config_path(&*self.env);
        if p.is_absolute() { p } else { self.cwd.join(p) }
    }

    /// Loads contexts and resolves bucket, provider, region and server.
    pub(crate) fn resolve(&self) -> Result<(ClientConfig, Resolved), Box<Outcome>> {
        let path = self.config_path();
        let cfg = ClientConfig::load(&path).map_err(|e| Box::new(cmd::config::error_outcome(e)))?;
        let resolved = config::resolve(&self.flags, &*self.env, &self.cwd, &path, &cfg)
            .map_err(|e| Box::new(cmd::config::error_outcome(e)))?;
        Ok((cfg, resolved))
    }

    /// Who is acting, for audit entries: `$SKIFF_ACTOR`, else `$USER`, else `$LOGNAME`.
    pub(crate) fn actor(&self) -> String {
        ["SKIFF_ACTOR", "USER", "LOGNAME"]
            .iter()
            .find_map(|k| (self.env)(k).filter(|a| !a.is_empty()))
            .unwrap_or_else(|| "unknown".to_owned())
    }

    /// A runtime for commands that talk to the bucket or providers.
    pub(crate) fn runtime(&self) -> Result<tokio::runtime::Runtime, Box<Outcome>> {
        tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| {
            Box::new(Envelope::failure(Code::Internal, "cannot start the async runtime").fact(e.to_string()).into())
        })
    }

    /// Opens the resolved state bucket.
    pub(crate) fn ledger(&self) -> Result<(Resolved, skiff_state::Ledger), Box<Outcome>> {
        let (_, resolved) = self.resolve()?;
        let ledger = skiff_state::Ledger::open(&resolved.state.value, &skiff_objstore::OpenOptions::default())
            .map_err(|e| Box::new(cmd::state_error(&e)))?;
        Ok((resolved, ledger))
    }

    /// Asks before a mutating command: `--yes` proceeds, a terminal is asked, and
    /// anything else answers CONFIRMATION_REQUIRED with the command to re-run.
    pub(crate) fn confirm(&self, question: &str, rerun: &str) -> Result<(), Box<Outcome>> {
        if self.yes {
            return Ok(());
        }
        if !self.interactive {
            return Err(Box::new(
                Envelope::failure(Code::ConfirmationRequired, format!("{question} needs confirmation"))
                    .fact("no terminal to ask on, and --yes was not given; nothing was changed")
                    .action("confirm", format!("{rerun} --yes"), true, skiff_sdk::Safety::Reversible, 0.7)
                    .into(),
            ));
        }
        if output::ask(&format!("{question} [y/N] ")) {
            Ok(())
        } else {
            Err(Box::new(Envelope::failure(Code::Cancelled, "not confirmed; nothing was changed").into()))
        }
    }

    /// A progress line for people (stderr, human mode only).
    pub(crate) fn progress(&self, line: &str) {
        if self.format == Format::Human && !self.quiet {
            output::progress(line);
        }
    }

    /// Prints one streamed item (for `--follow`): a JSON line, or text for people.
    pub(crate) fn emit(&self, json: &serde_json::Value, human: &str) {
        output::emit(self.format, json, human);
    }
}

/// The hidden first argument that makes `skiff` act as `skiff-runner`.
pub(crate) const RUNNER_ARG: &str = "__runner";

/// Runs the command line and returns the process exit code.
pub fn main() -> ExitCode {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if args.get(1).is_some_and(|a| a == RUNNER_ARG) {
        // The local supervisor runs instances with `skiff __runner` when no separate
        // `skiff-runner` binary is installed (e.g. straight after `cargo run`).
        return skiff_runner::main_from(args.into_iter().skip(1));
    }
    let json_requested = wants_json(&args);
    let cli = match cli::Cli::try_parse_from(&args) {
        Ok(cli) => cli,
        Err(e) => return output::clap_error(e, json_requested),
    };
    let cwd = match std::env::current_dir() {
        Ok(d) => d,
        Err(e) => {
            let env = Envelope::failure(Code::IoError, "cannot read the working directory").fact(e.to_string());
            return output::print(cli.global.format, &env.into());
        }
    };
    let ctx = Ctx {
        format: cli.global.format,
        quiet: cli.global.quiet,
        flags: Flags {
            state: cli.global.bucket.clone(),
            provider: cli.global.provider,
            context: cli.global.context.clone(),
            region: cli.global.region.clone(),
            server: cli.global.server.clone(),
        },
        cwd,
        env: Box::new(|k| std::env::var(k).ok()),
        yes: cli.global.yes,
        interactive: std::io::stdin().is_terminal() && std::io::stderr().is_terminal(),
        detach: matches!(cli.command, cli::Command::Deploy { detach: true, .. }),
    };
    let outcome = match server_for(&ctx, &cli.command) {
        Ok(Some(server)) => remote::run(&ctx, &server, cli.command, remote::command_args(&args)),
        Ok(None) => cmd::run(&ctx, cli.command),
        Err(o) => *o,
    };
    output::print(cli.global.format, &outcome)
}

/// The skiffd URL a command goes to: `--server`, `$SKIFF_SERVER` or the context's;
/// `None` runs it here (direct mode, or a command about this machine).
fn server_for(ctx: &Ctx, command: &cli::Command) -> Result<Option<String>, Box<Outcome>> {
    if !remote::served(command) {
        return Ok(None);
    }
    if let Some(s) = &ctx.flags.server {
        return Ok(Some(s.clone()));
    }
    let (_, resolved) = ctx.resolve()?;
    Ok(resolved.server.map(|s| s.value))
}

/// Whether JSON output was asked for, read before parsing so a usage error can
/// still answer in JSON.
fn wants_json(args: &[std::ffi::OsString]) -> bool {
    let flag =
        args.windows(2).any(|w| w[0] == "--format" && w[1] == "json") || args.iter().any(|a| a == "--format=json");
    flag || std::env::var("SKIFF_FORMAT").is_ok_and(|v| v == "json")
}
