//! The only place that prints: an answer as one JSON envelope on stdout, or as text
//! for people (successes on stdout, failures on stderr); progress on stderr; the
//! terminal's questions.

use std::io::{Read as _, Write as _};
use std::process::ExitCode;

use skiff_sdk::{Answer, Code, Envelope};

use crate::Format;

/// Prints an answer and returns its exit code.
pub(crate) fn print(format: Format, answer: &Answer) -> ExitCode {
    let env = &answer.envelope;
    let text = match format {
        Format::Json => env.to_json(),
        Format::Human => answer.human(),
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

/// The terminal as the requests' UI: progress on stderr in human mode (unless
/// `--quiet`), streamed items on stdout, questions when there is a terminal to ask on.
#[derive(Debug)]
pub(crate) struct Terminal {
    pub(crate) format: Format,
    pub(crate) quiet: bool,
    pub(crate) interactive: bool,
}

impl skiff_ops::Ui for Terminal {
    fn wants_progress(&self) -> bool {
        self.format == Format::Human && !self.quiet
    }

    fn progress(&self, line: &str) {
        if self.wants_progress() {
            let _ = writeln!(std::io::stderr().lock(), "{line}");
        }
    }

    fn emit(&self, json: &serde_json::Value, human: &str) {
        let line = match self.format {
            Format::Json => json.to_string(),
            Format::Human => human.to_owned(),
        };
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{line}");
        let _ = out.flush();
    }

    fn ask(&self, question: &str) -> Option<bool> {
        if !self.interactive {
            return None;
        }
        let mut err = std::io::stderr().lock();
        let _ = write!(err, "{question}");
        let _ = err.flush();
        let mut answer = String::new();
        Some(
            std::io::stdin().read_line(&mut answer).is_ok()
                && matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes"),
        )
    }

    fn read_value(&self) -> std::io::Result<String> {
        let mut value = String::new();
        std::io::stdin().read_to_string(&mut value)?;
        Ok(value)
    }
}
