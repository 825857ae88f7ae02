//! User policies in Rego (v1 syntax), evaluated with regorus. Each file declares a
//! package and a `deny` set; each element is a message string or an object
//! `{"rule": …, "reason": …, "fix": …}`. The plan is the `input` document.

use std::num::NonZeroU32;
use std::time::Duration;

use regorus::utils::limits::ExecutionTimerConfig;

use crate::{PlanInput, PolicyError, RuleResult, Verdict};

/// How long one policy may evaluate before it counts as failed.
const TIME_LIMIT: Duration = Duration::from_secs(2);

/// Parsed user policies.
#[derive(Debug, Default)]
pub(crate) struct UserPolicies {
    /// (file, package) in file order.
    files: Vec<(String, String)>,
    engine: Option<regorus::Engine>,
}

fn invalid(file: &str, e: impl std::fmt::Display) -> PolicyError {
    PolicyError::Invalid { file: file.to_owned(), message: e.to_string() }
}

impl UserPolicies {
    /// Parses every `(file, source)`; each must define `deny`.
    pub(crate) fn parse(sources: Vec<(String, String)>) -> Result<Self, PolicyError> {
        if sources.is_empty() {
            return Ok(UserPolicies::default());
        }
        let mut engine = regorus::Engine::new();
        engine.set_execution_timer_config(ExecutionTimerConfig {
            limit: TIME_LIMIT,
            check_interval: NonZeroU32::new(64).unwrap_or(NonZeroU32::MIN),
        });
        let mut files = Vec::new();
        for (file, source) in sources {
            let package = engine.add_policy(file.clone(), source).map_err(|e| invalid(&file, e))?;
            if files.iter().any(|(_, p)| *p == package) {
                return Err(invalid(
                    &file,
                    format!("{package} is declared by another policy file too; give each file its own package"),
                ));
            }
            files.push((file, package));
        }
        let policies = UserPolicies { files, engine: Some(engine) };
        // Evaluating once against an empty plan finds a missing `deny` now, not at deploy
        // (its resources an empty list, as every real plan's are a list).
        policies.evaluate(&PlanInput { resources: serde_json::json!([]), ..PlanInput::default() })?;
        Ok(policies)
    }

    pub(crate) fn files(&self) -> Vec<&str> {
        self.files.iter().map(|(f, _)| f.as_str()).collect()
    }

    pub(crate) fn evaluate(&self, input: &PlanInput) -> Result<Vec<RuleResult>, PolicyError> {
        let Some(prepared) = &self.engine else { return Ok(Vec::new()) };
        let mut engine = prepared.clone();
        let json = serde_json::to_string(input).map_err(|e| invalid("input", e))?;
        engine.set_input_json(&json).map_err(|e| invalid("input", e))?;
        let mut out = Vec::new();
        for (file, package) in &self.files {
            let value = engine
                .eval_rule(format!("{package}.deny"))
                .map_err(|e| invalid(file, format!("{e} (a policy declares `deny contains msg if {{ … }}`)")))?;
            let text = value.to_json_str().map_err(|e| invalid(file, e))?;
            let denials: serde_json::Value = serde_json::from_str(&text).unwrap_or(serde_json::Value::Null);
            let items = match denials {
                serde_json::Value::Array(items) => items,
                serde_json::Value::Null => Vec::new(),
                serde_json::Value::String(s) if s == "<undefined>" => Vec::new(),
                other => {
                    return Err(invalid(file, format!("`deny` must be a set of messages or objects, not {other}")));
                }
            };
            let rule = package.strip_prefix("data.").unwrap_or(package).to_owned();
            if items.is_empty() {
                out.push(RuleResult {
                    rule,
                    source: file.clone(),
                    verdict: Verdict::Pass,
                    reason: "no denial".to_owned(),
                    fix: None,
                });
                continue;
            }
            for item in items {
                out.push(denial(&rule, file, &item));
            }
        }
        Ok(out)
    }
}

fn denial(rule: &str, file: &str, item: &serde_json::Value) -> RuleResult {
    let field = |k: &str| item.get(k).and_then(serde_json::Value::as_str).map(str::to_owned);
    let reason = item.as_str().map(str::to_owned).or_else(|| field("reason")).or_else(|| field("msg"));
    RuleResult {
        rule: field("rule").unwrap_or_else(|| rule.to_owned()),
        source: file.to_owned(),
        verdict: Verdict::Deny,
        reason: reason.unwrap_or_else(|| item.to_string()),
        fix: Some(field("fix").unwrap_or_else(|| format!("change the plan, or the policy in {file}"))),
    }
}
