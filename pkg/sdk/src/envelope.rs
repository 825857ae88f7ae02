//! The one JSON envelope every command answers with, for humans and agents alike.
//!
//! Keys are sorted and no wall-clock value appears outside `data`, so the same
//! outcome always prints the same bytes.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::code::Code;

/// What a command answered.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Envelope {
    /// Whether the command did what was asked (`code` is `OK`).
    pub ok: bool,
    /// The outcome's class.
    pub code: Code,
    /// One line saying what happened.
    pub summary: String,
    /// Short statements of fact behind the summary.
    pub facts: Vec<String>,
    /// Command-specific details; omitted when empty.
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub data: Value,
    /// How risky what the command did (or proposes) is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub risk: Option<Risk>,
    /// What to do next, most useful first.
    pub recommended_actions: Vec<Action>,
    /// The operation this command started or acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation_id: Option<String>,
    /// The idempotency key the command used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
}

/// A next step an agent can run as-is.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Action {
    /// A stable name, e.g. `rollback`.
    pub id: String,
    /// The full command line.
    pub command: String,
    /// Whether it changes state.
    pub mutating: bool,
    /// How reversible it is.
    pub safety: Safety,
    /// How likely it is the right step, 0 to 1.
    pub confidence: f64,
}

/// How reversible an action or step is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Safety {
    /// Changes nothing.
    ReadOnly,
    /// Can be undone (by compensation or the opposite command).
    Reversible,
    /// Cannot be undone.
    Irreversible,
}

/// How risky a change is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Risk {
    /// The level.
    pub level: RiskLevel,
    /// Why, in short sentences.
    pub reasons: Vec<String>,
}

/// Risk levels, lowest first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum RiskLevel {
    /// Nothing changes, or only additions.
    None,
    /// Routine, easily reversed.
    Low,
    /// Visible to users if wrong; reversible.
    Medium,
    /// Data or availability at stake.
    High,
}

impl Envelope {
    /// A successful answer.
    pub fn ok(summary: impl Into<String>) -> Self {
        Self::new(Code::Ok, summary)
    }

    /// A failed answer of class `code`.
    pub fn failure(code: Code, summary: impl Into<String>) -> Self {
        Self::new(code, summary)
    }

    fn new(code: Code, summary: impl Into<String>) -> Self {
        Envelope {
            ok: code == Code::Ok,
            code,
            summary: summary.into(),
            facts: Vec::new(),
            data: Value::Null,
            risk: None,
            recommended_actions: Vec::new(),
            operation_id: None,
            idempotency_key: None,
        }
    }

    /// Adds a fact.
    #[must_use]
    pub fn fact(mut self, fact: impl Into<String>) -> Self {
        self.facts.push(fact.into());
        self
    }

    /// Adds facts.
    #[must_use]
    pub fn facts<I: IntoIterator<Item = S>, S: Into<String>>(mut self, facts: I) -> Self {
        self.facts.extend(facts.into_iter().map(Into::into));
        self
    }

    /// Sets `data` from any serializable value.
    ///
    /// # Panics
    /// If `data` cannot be represented as JSON (a map with non-string keys): a bug.
    #[must_use]
    pub fn data(mut self, data: impl Serialize) -> Self {
        self.data = serde_json::to_value(data).expect("envelope data must serialize to JSON");
        self
    }

    /// Sets the risk.
    #[must_use]
    pub fn risk(mut self, level: RiskLevel, reasons: Vec<String>) -> Self {
        self.risk = Some(Risk { level, reasons });
        self
    }

    /// Adds a recommended action.
    #[must_use]
    pub fn action(
        mut self,
        id: &str,
        command: impl Into<String>,
        mutating: bool,
        safety: Safety,
        confidence: f64,
    ) -> Self {
        self.recommended_actions.push(Action {
            id: id.to_owned(),
            command: command.into(),
            mutating,
            safety,
            confidence,
        });
        self
    }

    /// Sets the operation id.
    #[must_use]
    pub fn operation(mut self, id: impl Into<String>) -> Self {
        self.operation_id = Some(id.into());
        self
    }

    /// The process exit code for this answer.
    pub fn exit_code(&self) -> u8 {
        self.code.exit_code()
    }

    /// The envelope as deterministic JSON: keys sorted, two-space indent, trailing newline.
    pub fn to_json(&self) -> String {
        // serde_json's `Value` keeps object keys sorted (no `preserve_order` in this
        // workspace), so converting first sorts the keys at every depth.
        let value = serde_json::to_value(self).expect("an envelope always serializes");
        let mut out = serde_json::to_string_pretty(&value).expect("a JSON value always serializes");
        out.push('\n');
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_has_sorted_keys_and_omits_empty_optionals() {
        let e = Envelope::failure(Code::CanaryFailed, "new release failed readiness")
            .fact("rollout paused at 10%")
            .action("rollback", "skiff rollback payments-api --yes", true, Safety::Reversible, 0.91);
        insta::assert_snapshot!(e.to_json(), @r#"
        {
          "code": "CANARY_FAILED",
          "facts": [
            "rollout paused at 10%"
          ],
          "ok": false,
          "recommended_actions": [
            {
              "command": "skiff rollback payments-api --yes",
              "confidence": 0.91,
              "id": "rollback",
              "mutating": true,
              "safety": "reversible"
            }
          ],
          "summary": "new release failed readiness"
        }
        "#);
        let back: Envelope = serde_json::from_str(&e.to_json()).unwrap();
        assert_eq!(back, e);
    }
}
