//! Test steps with counted effects on an external store. `run` applies its effect
//! blindly (so an engine that re-runs a step is caught); `resume` checks the store by
//! idempotency key first. Behaviour comes from the step's parameters.

#![allow(dead_code, unreachable_pub, reason = "each test binary uses a different part of this shared module")]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::json;
use skiff_sagaapi::{Risk, Safety, Step, StepCode, StepContext, StepError, StepPlan, StepRequest, StepResult};

/// Where effects go: in memory, or a directory shared between processes.
#[derive(Clone, Debug)]
pub enum Effects {
    Memory(Arc<Mutex<Log>>),
    Dir(PathBuf),
}

#[derive(Debug, Default, Clone)]
pub struct Log {
    pub lines: Vec<String>,
    pub attempts: BTreeMap<String, u32>,
}

impl Effects {
    pub fn memory() -> Self {
        Effects::Memory(Arc::default())
    }

    fn push(&self, line: String) {
        match self {
            Effects::Memory(log) => log.lock().unwrap().lines.push(line),
            Effects::Dir(dir) => {
                use std::io::Write;
                let mut f =
                    std::fs::OpenOptions::new().create(true).append(true).open(dir.join("effects.log")).unwrap();
                writeln!(f, "{line}").unwrap();
                f.sync_all().unwrap();
            }
        }
    }

    pub fn lines(&self) -> Vec<String> {
        match self {
            Effects::Memory(log) => log.lock().unwrap().lines.clone(),
            Effects::Dir(dir) => std::fs::read_to_string(dir.join("effects.log"))
                .unwrap_or_default()
                .lines()
                .map(str::to_owned)
                .collect(),
        }
    }

    pub fn count(&self, line: &str) -> usize {
        self.lines().iter().filter(|l| *l == line).count()
    }

    fn applied(&self, key: &str) -> bool {
        self.count(&format!("apply {key}")) > 0
    }

    fn undone(&self, key: &str) -> bool {
        self.count(&format!("undo {key}")) > 0
    }

    fn bump_attempt(&self, key: &str) -> u32 {
        match self {
            Effects::Memory(log) => {
                let mut l = log.lock().unwrap();
                let n = l.attempts.entry(key.to_owned()).or_default();
                *n += 1;
                *n
            }
            Effects::Dir(dir) => {
                let path = dir.join(format!("attempts-{}", key.replace(':', "_")));
                let n: u32 = std::fs::read_to_string(&path).ok().and_then(|s| s.parse().ok()).unwrap_or(0) + 1;
                std::fs::write(path, n.to_string()).unwrap();
                n
            }
        }
    }
}

/// Called between "effect applied" and "result recorded" with `after:effect:STEP`.
pub type EffectHook = Arc<dyn Fn(&str) + Send + Sync>;

#[derive(Deserialize, Default)]
#[serde(default)]
struct Params {
    safety: Option<String>,
    /// `terminal`, `retryable`, `timeout`, `hold` (undecided: the operation pauses)
    fail: Option<String>,
    /// for `retryable`: how many attempts fail before success (absent: always fail)
    fail_times: Option<u32>,
    sleep_ms: u64,
    fail_compensation: bool,
}

/// The counted test step.
pub struct Counted;

fn params(req: &StepRequest) -> Params {
    serde_json::from_value(req.params.clone()).unwrap_or_default()
}

fn effects(req: &StepRequest) -> Effects {
    req.extensions.get::<Effects>().expect("tests provide an effect store").clone()
}

impl Counted {
    async fn work(&self, req: &StepRequest) -> Result<StepResult, StepError> {
        let p = params(req);
        let fx = effects(req);
        let mut cancel = req.cancel.clone();
        if p.sleep_ms > 0 {
            cancel.sleep(Duration::from_millis(p.sleep_ms)).await?;
        }
        match p.fail.as_deref() {
            Some("terminal") => return Err(StepError::terminal(StepCode::ProviderError, "told to fail")),
            Some("timeout") => {
                cancel.sleep(Duration::from_secs(3600)).await?;
            }
            Some("hold") => {
                let n = fx.bump_attempt(&req.idempotency_key);
                if p.fail_times.is_none_or(|k| n <= k) {
                    return Err(StepError::hold(StepCode::AnalysisInconclusive, format!("undecided {n}")));
                }
            }
            Some("retryable") => {
                let n = fx.bump_attempt(&req.idempotency_key);
                if p.fail_times.is_none_or(|k| n <= k) {
                    return Err(StepError::retryable(StepCode::ProviderError, format!("transient failure {n}")));
                }
            }
            _ => {}
        }
        fx.push(format!("apply {}", req.idempotency_key));
        if let Some(hook) = req.extensions.get::<EffectHook>() {
            hook(&format!("after:effect:{}", req.step_id));
        }
        Ok(StepResult::new(format!("applied {}", req.step_id), json!({"key": req.idempotency_key})))
    }
}

#[async_trait]
impl Step for Counted {
    fn kind(&self) -> &str {
        "counted"
    }

    async fn plan(&self, _ctx: &StepContext, req: &StepRequest) -> Result<StepPlan, StepError> {
        let safety = match params(req).safety.as_deref() {
            Some("irreversible") => Safety::Irreversible,
            Some("read_only") => Safety::ReadOnly,
            _ => Safety::Reversible,
        };
        Ok(StepPlan {
            description: format!("count {}", req.step_id),
            safety,
            risk: Risk::Low,
            expected_duration_ms: 1,
            affected_resources: vec![format!("counter/{}", req.step_id)],
        })
    }

    async fn run(&self, _ctx: &StepContext, req: &StepRequest) -> Result<StepResult, StepError> {
        self.work(req).await
    }

    async fn resume(&self, _ctx: &StepContext, req: &StepRequest) -> Result<StepResult, StepError> {
        if effects(req).applied(&req.idempotency_key) {
            return Ok(StepResult::new(format!("applied {}", req.step_id), json!({"key": req.idempotency_key})));
        }
        self.work(req).await
    }

    async fn compensate(
        &self,
        _ctx: &StepContext,
        req: &StepRequest,
        _result: &StepResult,
    ) -> Result<StepResult, StepError> {
        let fx = effects(req);
        if params(req).fail_compensation {
            return Err(StepError::terminal(StepCode::ProviderError, "compensation told to fail"));
        }
        if fx.applied(&req.idempotency_key) && !fx.undone(&req.idempotency_key) {
            fx.push(format!("undo {}", req.idempotency_key));
            if let Some(hook) = req.extensions.get::<EffectHook>() {
                hook(&format!("after:undo:{}", req.step_id));
            }
        }
        Ok(StepResult::new(format!("undid {}", req.step_id), json!({})))
    }
}
