//! What the cockpit asks and what it shows: the same typed requests the CLI makes
//! ([`Api::ask`] answers them directly or through skiffd, as `skiff` would), and the
//! rows each pane draws, read from the answers' envelopes.

use async_trait::async_trait;
use serde_json::Value;
use skiff_ops::{Request, SagaRequest};
use skiff_sdk::{Answer, Envelope};

/// Answers requests: in-process over the bucket and provider, or through skiffd.
#[async_trait]
pub trait Api: Send + Sync {
    /// The answer to `request`, as `skiff` would print it in JSON.
    async fn ask(&self, request: Request) -> Answer;
    /// Where answers come from (`direct: file://…` or a server URL), for the title.
    fn target(&self) -> String;
}

/// The operations layer as the CLI reaches it: through the configured server when
/// there is one, else directly.
#[derive(Clone, Debug)]
pub struct OpsApi {
    /// The context requests run in (confirmed: the cockpit asks before mutating).
    pub ctx: skiff_ops::Context,
    /// `--server`, or the context's.
    pub server: Option<String>,
}

#[async_trait]
impl Api for OpsApi {
    async fn ask(&self, request: Request) -> Answer {
        match &self.server {
            Some(server) if request.served() => skiff_ops::remote::run(&self.ctx, server, request).await,
            _ => skiff_ops::run(&self.ctx, request).await,
        }
    }

    fn target(&self) -> String {
        match &self.server {
            Some(s) => s.clone(),
            None => match self.ctx.resolve() {
                Ok((_, r)) => format!("direct: {}", r.state.value),
                Err(_) => "direct".to_owned(),
            },
        }
    }
}

fn s(v: &Value) -> String {
    v.as_str().unwrap_or_default().to_owned()
}

/// One service, as `skiff status` reports it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ServiceRow {
    /// Name.
    pub service: String,
    /// The release taking traffic.
    pub release: String,
    /// Healthy instances.
    pub healthy: u64,
    /// All instances.
    pub total: u64,
    /// p95 latency, ms.
    pub p95_ms: Option<u64>,
    /// Error rate, 0 to 1.
    pub error_rate: f64,
    /// Requests so far.
    pub requests: u64,
    /// Mean CPU of its instances.
    pub cpu_percent: Option<f64>,
    /// The operation working on it.
    pub active: Option<String>,
    /// `IN_SYNC`, `DRIFTED`, or `-`.
    pub reconcile: String,
}

/// Services from a `Status` answer.
pub fn services(env: &Envelope) -> Vec<ServiceRow> {
    env.data["services"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|v| ServiceRow {
            service: s(&v["service"]),
            release: v["release"].as_str().unwrap_or("-").to_owned(),
            healthy: v["instances_healthy"].as_u64().unwrap_or(0),
            total: v["instances_total"].as_u64().unwrap_or(0),
            p95_ms: v["p95_ms"].as_u64(),
            error_rate: v["error_rate"].as_f64().unwrap_or(0.0),
            requests: v["requests"].as_u64().unwrap_or(0),
            cpu_percent: v["cpu_percent"].as_f64(),
            active: v["active_operation"]["op_id"].as_str().map(|op| {
                format!("{} {} {}", s(&v["active_operation"]["saga"]), op, s(&v["active_operation"]["status"]))
            }),
            reconcile: v["last_reconcile"]["status"].as_str().unwrap_or("-").to_owned(),
        })
        .collect()
}

/// One operation, as `skiff saga list` reports it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OpRow {
    /// Its id.
    pub op_id: String,
    /// Its saga kind.
    pub saga: String,
    /// Its service.
    pub service: String,
    /// Its status.
    pub status: String,
    /// Events so far.
    pub events: u64,
}

/// Operations from a `saga list` answer.
pub fn operations(env: &Envelope) -> Vec<OpRow> {
    env.data
        .as_array()
        .into_iter()
        .flatten()
        .map(|v| OpRow {
            op_id: s(&v["op_id"]),
            saga: s(&v["saga"]),
            service: v["service"].as_str().unwrap_or("-").to_owned(),
            status: s(&v["status"]),
            events: v["events"].as_u64().unwrap_or(0),
        })
        .collect()
}

/// One step of an operation.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StepRow {
    /// Its id.
    pub id: String,
    /// Its status.
    pub status: String,
    /// `read_only`, `reversible`, `irreversible`.
    pub safety: String,
    /// Its planned risk.
    pub risk: String,
    /// What it did (or will do).
    pub summary: String,
}

/// An operation in detail, as `skiff saga show` reports it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OpDetail {
    /// Its id.
    pub op_id: String,
    /// Its saga kind.
    pub saga: String,
    /// Its service.
    pub service: String,
    /// Its status.
    pub status: String,
    /// The step waiting for approval.
    pub awaiting: Option<String>,
    /// Its steps.
    pub steps: Vec<StepRow>,
    /// The answer's facts (the gate's facts among them).
    pub facts: Vec<String>,
}

/// An operation from a `saga show` answer.
pub fn detail(env: &Envelope) -> Option<OpDetail> {
    let d = &env.data;
    let op_id = d["op_id"].as_str()?.to_owned();
    let planned: Vec<&Value> = d["plan"]["steps"].as_array().map(|a| a.iter().collect()).unwrap_or_default();
    let steps = d["steps"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|st| {
            let id = s(&st["id"]);
            let plan = planned.iter().find(|p| p["id"] == st["id"]);
            StepRow {
                status: s(&st["status"]),
                safety: st["safety"]
                    .as_str()
                    .or_else(|| plan.and_then(|p| p["safety"].as_str()))
                    .unwrap_or("-")
                    .to_owned(),
                risk: plan.and_then(|p| p["risk"].as_str()).unwrap_or("-").to_owned(),
                summary: st["summary"]
                    .as_str()
                    .filter(|x| !x.is_empty())
                    .or_else(|| plan.and_then(|p| p["description"].as_str()))
                    .unwrap_or_default()
                    .to_owned(),
                id,
            }
        })
        .collect();
    Some(OpDetail {
        op_id,
        saga: s(&d["saga"]),
        service: d["service"].as_str().unwrap_or("-").to_owned(),
        status: s(&d["status"]),
        awaiting: d["awaiting"].as_str().map(str::to_owned),
        steps,
        facts: env.facts.clone(),
    })
}

/// One event line.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EventRow {
    /// Its sequence number.
    pub seq: u64,
    /// When, ms since the epoch.
    pub at_ms: u64,
    /// Its type.
    pub kind: String,
    /// Its step, if any.
    pub step: String,
}

/// Events from an `events` answer.
pub fn events(env: &Envelope) -> Vec<EventRow> {
    env.data["events"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| EventRow {
            seq: e["seq"].as_u64().unwrap_or(0),
            at_ms: e["at_ms"].as_u64().unwrap_or(0),
            kind: s(&e["type"]),
            step: e["data"]["step"].as_str().unwrap_or_default().to_owned(),
        })
        .collect()
}

/// One log line.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LogRow {
    /// When, ms since the epoch.
    pub at_ms: u64,
    /// Which instance.
    pub instance: String,
    /// The line.
    pub line: String,
}

/// Lines from a `logs` answer.
pub fn logs(env: &Envelope) -> Vec<LogRow> {
    env.data["lines"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|l| LogRow { at_ms: l["at_ms"].as_u64().unwrap_or(0), instance: s(&l["instance"]), line: s(&l["line"]) })
        .collect()
}

/// One sample of a service's traffic (summed over its target groups).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Sample {
    /// Requests so far.
    pub requests: u64,
    /// Errors so far.
    pub errors: u64,
    /// p95, ms.
    pub p95_ms: u64,
}

/// A sample from a `metrics` answer.
pub fn sample(env: &Envelope) -> Sample {
    let groups: Vec<&Value> = env.data["target_groups"].as_array().map(|a| a.iter().collect()).unwrap_or_default();
    Sample {
        requests: groups.iter().filter_map(|g| g["requests"].as_u64()).sum(),
        errors: groups.iter().filter_map(|g| g["errors"].as_u64()).sum(),
        p95_ms: groups.iter().filter_map(|g| g["p95_ms"].as_u64()).max().unwrap_or(0),
    }
}

/// One doctor finding with its actions.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FindingRow {
    /// Its code.
    pub code: String,
    /// What it is about.
    pub subject: String,
    /// What is wrong.
    pub summary: String,
    /// Evidence.
    pub facts: Vec<String>,
    /// `(command, safety)`.
    pub actions: Vec<(String, String)>,
}

/// Findings from a `doctor` answer.
pub fn findings(env: &Envelope) -> Vec<FindingRow> {
    env.data["findings"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|f| FindingRow {
            code: s(&f["code"]),
            subject: s(&f["subject"]),
            summary: s(&f["summary"]),
            facts: f["facts"].as_array().into_iter().flatten().map(s).collect(),
            actions: f["actions"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|a| (s(&a["command"]), s(&a["safety"])))
                .collect(),
        })
        .collect()
}

/// The requests each pane polls.
pub fn status() -> Request {
    Request::Status { service: None }
}

/// `saga list`.
pub fn saga_list() -> Request {
    Request::Saga(SagaRequest::List { service: None, status: None })
}

/// `saga show OP`.
pub fn saga_show(op: &str) -> Request {
    Request::Saga(SagaRequest::Show { op: op.to_owned() })
}
