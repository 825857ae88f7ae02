//! What a command answers: its [`Envelope`] plus the detail only people read (a table,
//! a document), and the one way both are rendered for a terminal. Direct mode and
//! skiffd produce the same answer, so `--server` prints the same screen.

use std::fmt::Write as _;

use crate::Envelope;

/// A command's answer.
#[derive(Clone, Debug, PartialEq)]
pub struct Answer {
    /// The envelope (all that `--format json` prints).
    pub envelope: Envelope,
    /// Detail for human output, printed after the summary and facts.
    pub body: Option<String>,
    /// Print only `body` in human mode (output meant to be redirected: a schema, a policy).
    pub raw: bool,
    /// Leave the facts out of human mode because `body` says the same at more length.
    pub body_replaces_facts: bool,
}

impl From<Envelope> for Answer {
    fn from(envelope: Envelope) -> Self {
        Answer { envelope, body: None, raw: false, body_replaces_facts: false }
    }
}

impl Answer {
    /// Adds human-only detail.
    #[must_use]
    pub fn body(mut self, body: impl Into<String>) -> Self {
        self.body = Some(body.into());
        self
    }

    /// Prints only the body in human mode.
    #[must_use]
    pub fn raw(mut self) -> Self {
        self.raw = true;
        self
    }

    /// Leaves the facts out of human mode (the body repeats them).
    #[must_use]
    pub fn body_replaces_facts(mut self) -> Self {
        self.body_replaces_facts = true;
        self
    }

    /// The answer as text for people: `✓ summary` or `✗ CODE: summary`, the facts, the
    /// risk, the body and the recommended next commands.
    pub fn human(&self) -> String {
        let env = &self.envelope;
        if self.raw
            && let Some(body) = &self.body
        {
            return ensure_newline(body.clone());
        }
        let mut out = String::new();
        if env.ok {
            let _ = writeln!(out, "✓ {}", env.summary);
        } else {
            let _ = writeln!(out, "✗ {}: {}", env.code, env.summary);
        }
        for fact in env.facts.iter().filter(|_| !self.body_replaces_facts) {
            let _ = writeln!(out, "  • {fact}");
        }
        if let Some(risk) = &env.risk {
            let level =
                serde_json::to_value(risk.level).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default();
            let reasons =
                if risk.reasons.is_empty() { String::new() } else { format!(" ({})", risk.reasons.join("; ")) };
            let _ = writeln!(out, "  risk: {level}{reasons}");
        }
        if let Some(body) = &self.body {
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
}

fn ensure_newline(mut s: String) -> String {
    if !s.ends_with('\n') {
        s.push('\n');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Code, Safety};

    #[test]
    fn human_text_has_summary_facts_body_and_next_steps() {
        let a = Answer::from(
            Envelope::failure(Code::NotFound, "web has never been deployed").fact("bucket: memory://").action(
                "deploy",
                "skiff deploy --yes",
                true,
                Safety::Reversible,
                0.6,
            ),
        )
        .body("detail");
        assert_eq!(
            a.human(),
            "✗ NOT_FOUND: web has never been deployed\n  • bucket: memory://\n\ndetail\n\nNext:\n  $ skiff deploy --yes  (changes state)\n"
        );
        assert_eq!(Answer::from(Envelope::ok("x")).body("only").raw().human(), "only\n");
    }
}
