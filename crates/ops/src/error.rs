//! The error every request can end with: a failure [`Answer`] carrying its taxonomy
//! code, facts and recommended actions, and the translations of the lower crates'
//! errors into it, each saying what to do next.

use skiff_sdk::{Answer, Code, Envelope, Safety};
use skiff_spec::SpecError;

/// A failed request: the answer to give (its code is never `OK`).
#[derive(Debug)]
pub struct Error(Box<Answer>);

/// The result of a request step.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// The taxonomy code.
    pub fn code(&self) -> Code {
        self.0.envelope.code
    }

    /// The failure envelope.
    pub fn envelope(&self) -> &Envelope {
        &self.0.envelope
    }

    /// The answer to give.
    pub fn into_answer(self) -> Answer {
        *self.0
    }
}

impl From<Envelope> for Error {
    fn from(e: Envelope) -> Self {
        Error(Box::new(e.into()))
    }
}

impl From<Answer> for Error {
    fn from(a: Answer) -> Self {
        Error(Box::new(a))
    }
}

impl From<Error> for Answer {
    fn from(e: Error) -> Self {
        e.into_answer()
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.0.envelope.code, self.0.envelope.summary)
    }
}

impl std::error::Error for Error {}

/// Either outcome of a request as the answer to give.
pub fn answer(r: Result<Answer>) -> Answer {
    r.unwrap_or_else(Error::into_answer)
}

/// The answer for a ledger error, with what to do next.
pub(crate) fn state(e: &skiff_state::StateError) -> Error {
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

/// The answer for an engine error.
pub(crate) fn saga(e: &skiff_saga::SagaError) -> Error {
    use skiff_saga::SagaError;
    if let SagaError::State(s) = e {
        return state(s);
    }
    let env = Envelope::failure(e.code(), e.to_string());
    let env = match e {
        SagaError::UnknownSaga { .. } => env.action("kinds", "skiff saga kinds", false, Safety::ReadOnly, 0.8),
        SagaError::NotFound { .. } => env.action("list", "skiff saga list", false, Safety::ReadOnly, 0.7),
        SagaError::InvalidTransition { op, .. } => {
            env.action("show", format!("skiff saga show {op}"), false, Safety::ReadOnly, 0.7)
        }
        SagaError::ScopeHeld { op, status, .. } => env
            .fact(format!("{op} is {status}; one operation changes a service at a time"))
            .operation(op.clone())
            .action("show", format!("skiff saga show {op}"), false, Safety::ReadOnly, 0.8)
            .action("resume", format!("skiff saga resume {op} --yes"), true, Safety::Reversible, 0.5)
            .action("cancel", format!("skiff saga cancel {op} --yes"), true, Safety::Reversible, 0.4),
        _ => env,
    };
    env.into()
}

/// The answer for a release error.
pub(crate) fn release(e: &skiff_release::ReleaseError) -> Error {
    use skiff_release::ReleaseError;
    if let ReleaseError::State(s) = e {
        return state(s);
    }
    let env = Envelope::failure(e.code(), e.to_string());
    let env = match e {
        ReleaseError::Key(_) => env.action("keys", "skiff keys generate", true, Safety::Reversible, 0.5),
        ReleaseError::SignatureInvalid { .. } | ReleaseError::DigestMismatch { .. } => env
            .fact("treat the release as untrusted: do not deploy it")
            .action("recreate", "skiff release create --yes", true, Safety::Reversible, 0.5),
        _ => env,
    };
    env.into()
}

/// The SPEC_INVALID answer: one fact per problem, structured diagnostics in `data`,
/// the full text with expectations and fixes for people.
pub(crate) fn spec(file: &str, e: &SpecError) -> Error {
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
    let env = Envelope::failure(Code::SpecInvalid, format!("{file} is invalid: {}", plural(n, "problem")))
        .facts(e.diagnostics().iter().map(|d| format!("{}:{}: {}: {}", d.file, d.pos, d.path, d.message)))
        .data(serde_json::json!({ "file": file, "diagnostics": diagnostics }))
        .action("validate", format!("skiff validate -f {file}"), false, Safety::ReadOnly, 0.9)
        .action("schema", "skiff schema", false, Safety::ReadOnly, 0.3);
    Answer::from(env).body(e.to_string()).body_replaces_facts().into()
}

/// The answer for a provider that refused or failed.
pub(crate) fn provider(what: &str, e: &skiff_pluginapi::ProviderError) -> Error {
    let code = if e.code == "NOT_FOUND" { Code::NotFound } else { Code::ProviderError };
    Envelope::failure(code, what.to_owned()).fact(e.message.clone()).into()
}

/// `n thing` or `n things`.
pub(crate) fn plural(n: impl TryInto<u64>, thing: &str) -> String {
    let n: u64 = n.try_into().unwrap_or(u64::MAX);
    format!("{n} {thing}{}", if n == 1 { "" } else { "s" })
}
