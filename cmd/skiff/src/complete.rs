//! Shell completion: `skiff completion SHELL` prints the script a shell sources once;
//! after that the shell asks `skiff` itself (`COMPLETE=SHELL skiff -- …`, answered by
//! clap_complete before anything else runs) for subcommands, flags and values. Service
//! names and operation ids come from the bucket, through the same requests `skiff
//! status` and `skiff saga list` make (and the same server, with `--server` or the
//! context's); an unreachable bucket completes nothing rather than failing the shell.

use std::io::Write;
use std::sync::Arc;

use clap::ValueEnum;
use clap_complete::engine::CompletionCandidate;
use clap_complete::env::{Bash, Elvish, EnvCompleter, Fish, Powershell, Zsh};
use skiff_ops::{Context, Env, Request};
use skiff_sdk::config::Flags;

/// The shells a completion script is written for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Shell {
    /// bash 4+ (`source <(skiff completion bash)` in ~/.bashrc).
    Bash,
    /// zsh (`source <(skiff completion zsh)` in ~/.zshrc).
    Zsh,
    /// fish (`skiff completion fish | source` in config.fish).
    Fish,
    /// PowerShell (`skiff completion powershell | Out-String | Invoke-Expression` in $PROFILE).
    Powershell,
    /// elvish (`eval (skiff completion elvish | slurp)` in rc.elv).
    Elvish,
}

/// The variable the shell sets when it asks `skiff` for completions.
pub const VAR: &str = "COMPLETE";

/// Writes the script `shell` sources to complete `skiff` (whose path is `bin`).
pub fn write_script(shell: Shell, bin: &str, out: &mut dyn Write) -> std::io::Result<()> {
    let completer: &dyn EnvCompleter = match shell {
        Shell::Bash => &Bash,
        Shell::Zsh => &Zsh,
        Shell::Fish => &Fish,
        Shell::Powershell => &Powershell,
        Shell::Elvish => &Elvish,
    };
    completer.write_registration(VAR, "skiff", "skiff", bin, out)
}

/// Answers a request the way the command line would, quietly; `None` on any failure.
fn ask(request: Request) -> Option<serde_json::Value> {
    let ctx = Context {
        cwd: std::env::current_dir().ok()?,
        env: Env::Process,
        flags: Flags::default(),
        yes: false,
        detach: false,
        ui: Arc::new(skiff_ops::Quiet),
    };
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().ok()?;
    let answer = rt.block_on(crate::answer(&ctx, request));
    answer.envelope.ok.then_some(answer.envelope.data)
}

/// Every service in the bucket.
pub fn services() -> Vec<CompletionCandidate> {
    let Some(data) = ask(Request::Status { service: None }) else { return Vec::new() };
    data["services"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s["service"].as_str())
        .map(|s| CompletionCandidate::new(s.to_owned()))
        .collect()
}

/// Every operation in the bucket, newest first, with its saga and status as help.
pub fn operations() -> Vec<CompletionCandidate> {
    let list = skiff_ops::SagaRequest::List { service: None, status: None };
    let Some(data) = ask(Request::Saga(list)) else { return Vec::new() };
    data.as_array()
        .into_iter()
        .flatten()
        .filter_map(|o| {
            let id = o["op_id"].as_str()?;
            let help = format!("{} {}", o["saga"].as_str().unwrap_or(""), o["status"].as_str().unwrap_or(""));
            Some(CompletionCandidate::new(id.to_owned()).help(Some(help.trim().to_owned().into())))
        })
        .collect()
}
