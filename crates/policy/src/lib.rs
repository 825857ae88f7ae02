//! Guardrails evaluated on every plan before anything mutates: built-in rules (no SSH
//! ingress, signed and digest-pinned artifacts, instance and cost ceilings per
//! environment, no database deletion without a fresh snapshot, irreversible steps need
//! approval, production changes need the approver role) and user policies in Rego
//! (`policies/*.rego`, evaluated with regorus). A denial names the rule, the reason and
//! the fix. Depends on no other crate of Skiff's: callers describe the plan as
//! [`PlanInput`].
#![warn(missing_docs)]

pub mod builtin;
mod input;
mod rego;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use builtin::{Ceiling, Limits};
pub use input::{Actor, CostFacts, DatabaseDeletion, Ingress, Instances, PlanInput, ReleaseFacts, StepFacts};

/// Where user policies live, relative to the spec's directory.
pub const POLICY_DIR: &str = "policies";
/// The ceilings file inside [`POLICY_DIR`].
pub const LIMITS_FILE: &str = "limits.json";

/// Why policies could not be loaded or evaluated.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    /// A policy file does not parse or evaluate.
    #[error("{file}: {message}")]
    Invalid {
        /// The file.
        file: String,
        /// What is wrong, with line and column where the parser gives them.
        message: String,
    },
    /// A file cannot be read.
    #[error("cannot read {file}: {message}")]
    Io {
        /// The file.
        file: String,
        /// The OS error.
        message: String,
    },
}

/// A rule's verdict.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// The plan satisfies it.
    Pass,
    /// The plan breaks it: nothing may run.
    Deny,
    /// It does not apply to this plan.
    Skip,
}

/// One rule's result.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleResult {
    /// Rule name.
    pub rule: String,
    /// `built-in` or the policy file it comes from.
    pub source: String,
    /// The verdict.
    pub verdict: Verdict,
    /// Why.
    pub reason: String,
    /// What to do, for denials.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

impl RuleResult {
    fn builtin(rule: &str, verdict: Verdict, reason: impl Into<String>, fix: Option<String>) -> Self {
        RuleResult { rule: rule.to_owned(), source: "built-in".to_owned(), verdict, reason: reason.into(), fix }
    }
}

/// Every rule's result for one plan.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    /// No rule denied.
    pub allowed: bool,
    /// Results, built-in rules first, then user policies by file name.
    pub results: Vec<RuleResult>,
}

impl Report {
    /// The denials.
    pub fn denials(&self) -> impl Iterator<Item = &RuleResult> {
        self.results.iter().filter(|r| r.verdict == Verdict::Deny)
    }
}

/// The rules in force: built-in ones with their ceilings, plus user policies.
#[derive(Debug)]
pub struct Policy {
    limits: Limits,
    rego: rego::UserPolicies,
}

impl Policy {
    /// Built-in rules with the default ceilings, no user policies.
    pub fn builtin() -> Self {
        Policy { limits: Limits::default(), rego: rego::UserPolicies::default() }
    }

    /// Built-in rules plus what `dir` holds (usually `policies/` beside the spec):
    /// every `*.rego` file, and `limits.json` for the ceilings. A missing directory
    /// means built-in rules only.
    ///
    /// # Errors
    /// A file that cannot be read, a policy that does not parse (with its line), or a
    /// limits file that is not valid.
    pub fn load(dir: &Path) -> Result<Self, PolicyError> {
        if !dir.is_dir() {
            return Ok(Policy::builtin());
        }
        let limits_path = dir.join(LIMITS_FILE);
        let limits = match std::fs::read_to_string(&limits_path) {
            Ok(text) => serde_json::from_str(&text).map_err(|e| PolicyError::Invalid {
                file: format!("{POLICY_DIR}/{LIMITS_FILE}"),
                message: format!(
                    "line {} column {}: {e}; expected {{\"default\": {{\"max_instances\": N, \"max_monthly_usd\": N}}, \"environments\": {{…}}}}",
                    e.line(),
                    e.column()
                ),
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Limits::default(),
            Err(e) => return Err(PolicyError::Io { file: limits_path.display().to_string(), message: e.to_string() }),
        };
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(|e| PolicyError::Io { file: dir.display().to_string(), message: e.to_string() })?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "rego"))
            .collect();
        files.sort();
        // Files are named relative to the directory's parent (`policies/x.rego`), so
        // reports read the same wherever the command runs.
        let dir_name = dir.file_name().map_or_else(|| POLICY_DIR.into(), |n| n.to_string_lossy().into_owned());
        let mut sources = Vec::new();
        for f in files {
            let shown = format!("{dir_name}/{}", f.file_name().map(|n| n.to_string_lossy()).unwrap_or_default());
            let text = std::fs::read_to_string(&f)
                .map_err(|e| PolicyError::Io { file: shown.clone(), message: e.to_string() })?;
            sources.push((shown, text));
        }
        Ok(Policy { limits, rego: rego::UserPolicies::parse(sources)? })
    }

    /// The ceilings in force.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// The user policy files in force.
    pub fn files(&self) -> Vec<&str> {
        self.rego.files()
    }

    /// Evaluates every rule against `input`.
    ///
    /// # Errors
    /// A user policy that fails while evaluating (a runtime error or its time limit).
    pub fn check(&self, input: &PlanInput) -> Result<Report, PolicyError> {
        let mut results = builtin::evaluate(input, &self.limits);
        results.extend(self.rego.evaluate(input)?);
        let allowed = results.iter().all(|r| r.verdict != Verdict::Deny);
        Ok(Report { allowed, results })
    }
}

#[cfg(test)]
mod tests;
