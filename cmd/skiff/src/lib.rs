//! The `skiff` command line: parses arguments into a typed request, answers it with
//! `skiff-ops` (here, or through skiffd with `--server`), and prints the answer.
//! Printing happens only in [`output`], so JSON and human output always describe the
//! same answer.

pub mod cli;
pub mod complete;
pub mod man;
mod output;

use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use skiff_ops::{Context, Env, Request};
use skiff_sdk::config::Flags;
use skiff_sdk::{Answer, Code, Envelope};

pub use cli::Format;

/// Runs the command line and returns the process exit code.
pub fn main() -> ExitCode {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if args.get(1).is_some_and(|a| a == skiff_ops::RUNNER_ARG) {
        // The local supervisor runs instances with `skiff __runner` when no separate
        // `skiff-runner` binary is installed (e.g. straight after `cargo run`).
        let telemetry = skiff_observability::init(&skiff_runner::telemetry());
        let code = skiff_runner::run_from_env();
        telemetry.shutdown();
        return ExitCode::from(code);
    }
    if args.get(1).is_some_and(|a| a == man::MAN_ARG) {
        // `cargo xtask codegen` writes the man pages through the binary.
        let Some(dir) = args.get(2) else { return ExitCode::from(Code::Usage.exit_code()) };
        return match man::write(std::path::Path::new(dir)) {
            Ok(_) => ExitCode::SUCCESS,
            Err(e) => output::print(
                Format::Human,
                &Envelope::failure(Code::IoError, "cannot write the man pages").fact(e.to_string()).into(),
            ),
        };
    }
    // A shell asking for completions (COMPLETE=SHELL): answered here, then exit.
    clap_complete::CompleteEnv::with_factory(<cli::Cli as clap::CommandFactory>::command).var(complete::VAR).complete();
    // Quiet by default: stdout and stderr belong to the answer. SKIFF_LOG opens it up;
    // OTEL_EXPORTER_OTLP_ENDPOINT exports the request's trace.
    let telemetry = skiff_observability::init(&skiff_observability::Setup {
        service: "skiff",
        default_filter: "skiff=warn",
        format: skiff_observability::LogFormat::Text,
    });
    let code = command_line(&args);
    telemetry.shutdown();
    code
}

fn command_line(args: &[std::ffi::OsString]) -> ExitCode {
    let json_requested = wants_json(args);
    let cli = match cli::Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => return output::clap_error(e, json_requested),
    };
    let format = cli.global.format;
    let cwd = match std::env::current_dir() {
        Ok(d) => d,
        Err(e) => {
            let env = Envelope::failure(Code::IoError, "cannot read the working directory").fact(e.to_string());
            return output::print(format, &env.into());
        }
    };
    let detach = matches!(cli.command, cli::Command::Deploy { detach: true, .. });
    let ctx = Context {
        cwd,
        env: Env::Process,
        flags: Flags {
            state: cli.global.bucket.clone(),
            provider: cli.global.provider,
            context: cli.global.context.clone(),
            region: cli.global.region.clone(),
            server: cli.global.server.clone(),
        },
        yes: cli.global.yes,
        detach,
        ui: Arc::new(output::Terminal {
            format,
            quiet: cli.global.quiet,
            interactive: std::io::stdin().is_terminal() && std::io::stderr().is_terminal(),
        }),
    };
    if let cli::Command::Completion { shell } = cli.command {
        let bin = args.first().and_then(|a| a.to_str()).unwrap_or("skiff");
        return match complete::write_script(shell, bin, &mut std::io::stdout().lock()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => output::print(
                format,
                &Envelope::failure(Code::IoError, "cannot write the script").fact(e.to_string()).into(),
            ),
        };
    }
    if let cli::Command::Tui { readonly } = cli.command {
        return tui(ctx, readonly, format);
    }
    let request = cli.command.into_request();
    // The supervisor serves its load balancers and health checks beside its control
    // API: it needs more than one thread. Everything else runs on one.
    let runtime = match request {
        Request::Local(skiff_ops::LocalRequest::Serve { .. }) => {
            tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()
        }
        _ => tokio::runtime::Builder::new_current_thread().enable_all().build(),
    };
    let answer = match runtime {
        Ok(rt) => rt.block_on(answer(&ctx, request)),
        Err(e) => Envelope::failure(Code::Internal, "cannot start the async runtime").fact(e.to_string()).into(),
    };
    output::print(format, &answer)
}

/// `skiff tui`: the cockpit over the same requests, through the same server choice.
fn tui(ctx: Context, readonly: bool, format: Format) -> ExitCode {
    if !(std::io::stdin().is_terminal() && std::io::stdout().is_terminal()) {
        let env = Envelope::failure(Code::Usage, "skiff tui needs a terminal: stdin and stdout are not one")
            .fact("the cockpit draws on a terminal; agents and scripts read the same answers as JSON")
            .action("status", "skiff status --format json", false, skiff_sdk::Safety::ReadOnly, 0.7)
            .action("doctor", "skiff doctor --format json", false, skiff_sdk::Safety::ReadOnly, 0.6);
        return output::print(format, &env.into());
    }
    let server = match &ctx.flags.server {
        Some(s) => Some(s.clone()),
        None => ctx.resolve().ok().and_then(|(_, r)| r.server.map(|s| s.value)),
    };
    // The cockpit confirms every action itself (command, safety, the operation id).
    let ctx = Context { yes: true, ui: Arc::new(skiff_ops::Quiet), ..ctx };
    let api = Arc::new(skiff_tui::api::OpsApi { ctx, server });
    match skiff_tui::run(api, readonly) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let env = Envelope::failure(Code::IoError, "the terminal could not run the cockpit").fact(e.to_string());
            output::print(Format::Human, &env.into())
        }
    }
}

/// Answers a request through the server it goes to (`--server`, `$SKIFF_SERVER` or the
/// context's), or here: direct mode, and requests about this machine.
async fn answer(ctx: &Context, request: Request) -> Answer {
    if !request.served() {
        return skiff_ops::run(ctx, request).await;
    }
    let server = match &ctx.flags.server {
        Some(s) => Some(s.clone()),
        None => match ctx.resolve() {
            Ok((_, resolved)) => resolved.server.map(|s| s.value),
            Err(e) => return e.into_answer(),
        },
    };
    match server {
        Some(server) => skiff_ops::remote::run(ctx, &server, request).await,
        None => skiff_ops::run(ctx, request).await,
    }
}

/// Whether JSON output was asked for, read before parsing so a usage error can
/// still answer in JSON.
fn wants_json(args: &[std::ffi::OsString]) -> bool {
    let flag =
        args.windows(2).any(|w| w[0] == "--format" && w[1] == "json") || args.iter().any(|a| a == "--format=json");
    flag || skiff_settings::FORMAT.from_process().is_some_and(|v| v == "json")
}
