//! Saga graphs: steps with dependencies, built stage by stage. A step runs when every
//! step it depends on has succeeded; steps without a path between them run
//! concurrently.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::SagaError;

/// How often a step is retried on retryable errors.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryPolicy {
    /// Attempts in all, including the first.
    pub max_attempts: u32,
    /// Wait between attempts, milliseconds.
    pub backoff_ms: u64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy { max_attempts: 3, backoff_ms: 500 }
    }
}

/// One step of a saga, before planning.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepDef {
    /// Unique within the saga.
    pub id: String,
    /// The registered step kind.
    pub kind: String,
    /// The step's parameters.
    pub params: Value,
    /// Steps that must succeed first.
    pub depends_on: Vec<String>,
    /// The step's deadline, milliseconds; missing it fails the step (and compensates).
    pub timeout_ms: u64,
    /// Retries on retryable errors.
    pub retry: RetryPolicy,
    /// Always wait for approval before this step, whatever its safety.
    pub approval: bool,
    /// An earlier gated step whose approval covers this one too (one decision before a
    /// sequence that must not wait for a person halfway, such as freeze → promote).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approved_by: Option<String>,
}

/// A saga: a named graph of steps.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SagaGraph {
    /// The saga kind, e.g. `deploy`.
    pub saga: String,
    /// The steps, in a topological order.
    pub steps: Vec<StepDef>,
}

/// Default step deadline: ten minutes.
pub const DEFAULT_TIMEOUT_MS: u64 = 600_000;

/// Builds a [`SagaGraph`] stage by stage.
///
/// ```
/// use serde_json::json;
/// let graph = skiff_saga::SagaBuilder::new("demo")
///     .step("provision", "provision", json!({}))
///     .branches([("warm-cache", "warm", json!({})), ("check-db", "check", json!({}))])
///     .step("shift", "shift-traffic", json!({"weight": 5}))
///     .timeout_ms(60_000)
///     .build()
///     .unwrap();
/// assert_eq!(graph.steps[3].depends_on, vec!["warm-cache", "check-db"]);
/// ```
#[derive(Debug, Clone)]
pub struct SagaBuilder {
    graph: SagaGraph,
    frontier: Vec<String>,
    last: Vec<usize>,
}

impl SagaBuilder {
    /// A saga of kind `saga`.
    pub fn new(saga: &str) -> Self {
        SagaBuilder {
            graph: SagaGraph { saga: saga.to_owned(), steps: Vec::new() },
            frontier: Vec::new(),
            last: Vec::new(),
        }
    }

    fn def(&self, id: &str, kind: &str, params: Value) -> StepDef {
        StepDef {
            id: id.to_owned(),
            kind: kind.to_owned(),
            params,
            depends_on: self.frontier.clone(),
            timeout_ms: DEFAULT_TIMEOUT_MS,
            retry: RetryPolicy::default(),
            approval: false,
            approved_by: None,
        }
    }

    /// Adds a step after everything added so far.
    #[must_use]
    pub fn step(mut self, id: &str, kind: &str, params: Value) -> Self {
        let def = self.def(id, kind, params);
        self.graph.steps.push(def);
        self.frontier = vec![id.to_owned()];
        self.last = vec![self.graph.steps.len() - 1];
        self
    }

    /// Adds independent steps that run concurrently after everything added so far;
    /// the next step waits for all of them.
    #[must_use]
    pub fn branches<'a>(mut self, steps: impl IntoIterator<Item = (&'a str, &'a str, Value)>) -> Self {
        let defs: Vec<StepDef> = steps.into_iter().map(|(id, kind, params)| self.def(id, kind, params)).collect();
        self.frontier = defs.iter().map(|d| d.id.clone()).collect();
        let start = self.graph.steps.len();
        self.graph.steps.extend(defs);
        self.last = (start..self.graph.steps.len()).collect();
        self
    }

    /// Appends `graph`'s steps after everything added so far: its first steps wait for
    /// the last ones added here, and the next step waits for its last ones.
    #[must_use]
    pub fn then(mut self, graph: SagaGraph) -> Self {
        let start = self.graph.steps.len();
        let ids: Vec<String> = graph.steps.iter().map(|s| s.id.clone()).collect();
        let ends: Vec<String> =
            ids.iter().filter(|id| !graph.steps.iter().any(|s| s.depends_on.contains(id))).cloned().collect();
        for mut s in graph.steps {
            if s.depends_on.is_empty() {
                s.depends_on.clone_from(&self.frontier);
            }
            self.graph.steps.push(s);
        }
        if start < self.graph.steps.len() {
            self.last = (start..self.graph.steps.len()).filter(|&i| ends.contains(&self.graph.steps[i].id)).collect();
            self.frontier = ends;
        }
        self
    }

    /// Sets the deadline of the last step (or branches) added.
    #[must_use]
    pub fn timeout_ms(mut self, ms: u64) -> Self {
        for &i in &self.last {
            self.graph.steps[i].timeout_ms = ms;
        }
        self
    }

    /// Sets the retry policy of the last step (or branches) added.
    #[must_use]
    pub fn retry(mut self, max_attempts: u32, backoff_ms: u64) -> Self {
        for &i in &self.last {
            self.graph.steps[i].retry = RetryPolicy { max_attempts: max_attempts.max(1), backoff_ms };
        }
        self
    }

    /// Requires approval before the last step (or branches) added.
    #[must_use]
    pub fn require_approval(mut self) -> Self {
        for &i in &self.last {
            self.graph.steps[i].approval = true;
        }
        self
    }

    /// The approval of earlier step `gate` (which waits for one) covers the last step
    /// (or branches) added: they do not wait again, whatever their safety.
    #[must_use]
    pub fn approved_by(mut self, gate: &str) -> Self {
        for &i in &self.last {
            self.graph.steps[i].approved_by = Some(gate.to_owned());
        }
        self
    }

    /// Checks and returns the graph.
    pub fn build(self) -> Result<SagaGraph, SagaError> {
        validate(&self.graph)?;
        Ok(self.graph)
    }
}

/// Checks ids are unique and valid, dependencies exist and come first.
pub fn validate(graph: &SagaGraph) -> Result<(), SagaError> {
    let bad = |why: String| Err(SagaError::InvalidGraph { saga: graph.saga.clone(), why });
    if graph.steps.is_empty() {
        return bad("a saga needs at least one step".to_owned());
    }
    let mut seen = BTreeSet::new();
    for s in &graph.steps {
        if s.id.is_empty() || !s.id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
            return bad(format!("step id `{}` must be letters, digits, `-` or `_`", s.id));
        }
        for d in &s.depends_on {
            if !seen.contains(d) {
                return bad(format!("step `{}` depends on `{d}`, which is not an earlier step", s.id));
            }
        }
        if let Some(gate) = &s.approved_by
            && !graph.steps.iter().any(|g| &g.id == gate && g.approval && seen.contains(gate))
        {
            return bad(format!("step `{}` is approved by `{gate}`, which is not an earlier gated step", s.id));
        }
        if !seen.insert(s.id.clone()) {
            return bad(format!("step id `{}` appears twice", s.id));
        }
        if s.timeout_ms == 0 || s.retry.max_attempts == 0 {
            return bad(format!("step `{}` needs a deadline and at least one attempt", s.id));
        }
    }
    Ok(())
}
