//! The only place that prints: an outcome as one JSON envelope on stdout, or as text
//! for people (successes on stdout, failures on stderr).

use std::fmt::Write as _;
use std::io::Write as _;
use std::process::ExitCode;

use skiff_sdk::{Code, Envelope};

use crate::{Format, Outcome};

/// Prints an outcome and returns its exit code.
pub(crate) fn print(format: Format, outcome: &Outcome) -> ExitCode {
    let env = &outcome.envelope;
    let text = match format {
        Format::Json => env.to_json(),
        Format::Human => human(outcome),
    };
    let result = if env.ok || format == Format::Json {
        std::io::stdout().lock().write_all(text.as_bytes())
    } else {
        std::io::stderr().lock().write_all(text.as_bytes())
    };
    // A closed pipe (`skiff schema | head`) is not an error worth reporting.
    drop(result);
    ExitCode::from(env.exit_code())
}

/// Renders an outcome for people.
pub(crate) fn human(outcome: &Outcome) -> String {
    let env = &outcome.envelope;
    if outcome.raw
        && let Some(body) = &outcome.body
    {
        return ensure_newline(body.clone());
    }
    let mut out = String::new();
    if env.ok {
        let _ = writeln!(out, "✓ {}", env.summary);
    } else {
        let _ = writeln!(out, "✗ {}: {}", env.code, env.summary);
    }
    for fact in env.facts.iter().filter(|_| !outcome.body_replaces_facts) {
        let _ = writeln!(out, "  • {fact}");
    }
    if let Some(risk) = &env.risk {
        let level =
            serde_json::to_value(risk.level).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default();
        let _ = writeln!(
            out,
            "  risk: {level}{}",
            if risk.reasons.is_empty() { String::new() } else { format!(" ({})", risk.reasons.join("; ")) }
        );
    }
    if let Some(body) = &outcome.body {
        out.push('\n');
        out.push_str(&ensure_newline(body.clone()));
    }
    if !env.recommended_actions.is_empty() {
        out.push_str("\nNext:\n");
        for a in &env.recommended_actions {
            let note = if a.mutating { "  (changes state)" } else { "" };
            let _ = writeln!(out, "  $ {}{note}", a.command);
        }
    }
    out
}

fn ensure_newline(mut s: String) -> String {
    if !s.ends_with('\n') {
        s.push('\n');
    }
    s
}

/// Reports a command-line parsing error: clap's own text, or a USAGE envelope in JSON mode.
pub(crate) fn clap_error(e: clap::Error, json: bool) -> ExitCode {
    use clap::error::ErrorKind;
    if matches!(
        e.kind(),
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    ) {
        let _ = e.print();
        return ExitCode::from(if e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
            Code::Usage.exit_code()
        } else {
            0
        });
    }
    if json {
        let text = e.render().to_string();
        let first = text.lines().next().unwrap_or("invalid arguments").trim_start_matches("error: ").to_owned();
        let env = Envelope::failure(Code::Usage, first)
            .facts(text.lines().skip(1).map(str::trim).filter(|l| !l.is_empty()).map(str::to_owned))
            .action("help", "skiff --help", false, skiff_sdk::Safety::ReadOnly, 0.5);
        return print(Format::Json, &env.into());
    }
    let _ = e.print();
    ExitCode::from(Code::Usage.exit_code())
}

/// Prints one streamed item: a compact JSON line in JSON mode, text otherwise.
pub(crate) fn emit(format: Format, json: &serde_json::Value, human: &str) {
    let line = match format {
        Format::Json => json.to_string(),
        Format::Human => human.to_owned(),
    };
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// Asks a yes/no question on the terminal.
pub(crate) fn ask(question: &str) -> bool {
    let mut err = std::io::stderr().lock();
    let _ = write!(err, "{question}");
    let _ = err.flush();
    let mut answer = String::new();
    std::io::stdin().read_line(&mut answer).is_ok()
        && matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes")
}

/// A progress line for people, on stderr (never mixed into the data on stdout).
pub(crate) fn progress(line: &str) {
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "{line}");
}
