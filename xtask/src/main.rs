//! `cargo xtask`: the project's automation, in Rust so it runs wherever cargo does.
//! `ci` runs what CI runs; `codegen` regenerates committed files; `bench` runs the
//! benchmarks and writes their JSON results (and draws them, `bench --plot`).
#![expect(clippy::print_stdout, clippy::print_stderr, reason = "a developer tool reports on the terminal")]

mod bench;
mod codegen;
mod plot;
#[cfg(test)]
mod tidy;

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

/// The test command the README gives and `.ci/run` calls.
pub(crate) const TEST_COMMAND: &[&str] = &["test", "--workspace", "--locked"];

const USAGE: &str = "\
usage: cargo xtask <task>

tasks:
  ci                 fmt --check, clippy -D warnings, codegen --check, the test command, cargo deny (if installed)
  codegen [--check]  regenerate skiff.schema.json, docs/failure-codes.md, docs/man and the README's code table
  bench [SUITE..]    run benchmarks (release build); results in bench/results.json
  bench --plot       draw bench/results.json as SVG charts in bench/ (with SUITEs: run them first)";

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("ci") => ci(),
        Some("codegen") => codegen::run(args.iter().any(|a| a == "--check")),
        Some("bench") => bench::run(&args[1..]),
        Some("-h" | "--help" | "help") | None => {
            println!("{USAGE}");
            Ok(())
        }
        Some(other) => bail!("unknown task `{other}`\n{USAGE}"),
    }
}

/// The repository root.
pub(crate) fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("xtask lives in the workspace").to_path_buf()
}

pub(crate) fn cargo(args: &[&str]) -> Result<()> {
    cargo_with(args, &[])
}

pub(crate) fn cargo_with(args: &[&str], env: &[(&str, &std::ffi::OsStr)]) -> Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    eprintln!("$ cargo {}", args.join(" "));
    let status = Command::new(&cargo)
        .args(args)
        .envs(env.iter().map(|(k, v)| (*k, *v)))
        .current_dir(root())
        .status()
        .with_context(|| format!("run {cargo}"))?;
    if !status.success() {
        bail!("`cargo {}` failed ({status})", args.join(" "));
    }
    Ok(())
}

fn ci() -> Result<()> {
    cargo(&["fmt", "--all", "--", "--check"])?;
    cargo(&["clippy", "--workspace", "--all-targets", "--locked", "--", "-D", "warnings"])?;
    codegen::run(true)?;
    cargo(TEST_COMMAND)?;
    let deny = Command::new("cargo").args(["deny", "--version"]).output().is_ok_and(|o| o.status.success());
    if deny {
        // Advisories need github.com (RustSec database); licenses, bans and sources run offline.
        cargo(&["deny", "check", "bans", "licenses", "sources"])?;
    } else {
        eprintln!("cargo-deny is not installed: skipping `cargo deny check` (cargo install cargo-deny)");
    }
    eprintln!("ci: all checks passed");
    Ok(())
}
