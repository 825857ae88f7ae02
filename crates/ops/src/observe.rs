//! `skiff status`, `skiff logs` and `skiff metrics`: what a service runs and how it
//! does, from the ledger (pointers, operations, member heartbeats) and the provider
//! (instances, target health, load-balancer stats).

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use skiff_clock::{Clock as _, SystemClock};
use skiff_pluginapi::{HealthState, LogQuery, Provider, TrafficStats};
use skiff_sdk::{Answer, Code, Envelope, RiskLevel, Safety};
use skiff_state::Ledger;
use skiff_state::docs::{Member, MemberHealth, OpStatus, OperationState, RunnerDetail, ServiceState};
use skiff_steps::deploy::group_name;

use crate::context::Context;
use crate::error::{Error, Result, plural};
use crate::request::LogsRequest;

/// One service's view, shared by `status` and `metrics`.
#[derive(Debug, serde::Serialize)]
pub(crate) struct ServiceView {
    pub(crate) service: String,
    pub(crate) release: Option<String>,
    pub(crate) stable_release: Option<String>,
    pub(crate) candidate_release: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) shadow_release: Option<String>,
    pub(crate) instances_healthy: usize,
    pub(crate) instances_total: usize,
    pub(crate) requests: u64,
    pub(crate) error_rate: f64,
    pub(crate) p95_ms: Option<u64>,
    pub(crate) cpu_percent: Option<f64>,
    pub(crate) rss_mb: Option<f64>,
    pub(crate) restarts: u32,
    pub(crate) active_operation: Option<serde_json::Value>,
    pub(crate) last_reconcile: Option<serde_json::Value>,
    pub(crate) members: Vec<serde_json::Value>,
    pub(crate) weights: Vec<skiff_pluginapi::Weight>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) database: Option<DatabaseView>,
    /// Multi-region: the global front and each region's share, group and health.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) front: Option<FrontView>,
    /// A queue-scaled service: the autoscaler's last reading and decision.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) autoscale: Option<serde_json::Value>,
}

/// A multi-region service's global traffic front, read back from the provider.
#[derive(Debug, serde::Serialize)]
pub(crate) struct FrontView {
    pub(crate) address: Option<String>,
    pub(crate) regions: Vec<serde_json::Value>,
}

/// The front's weights and every region's load balancer, group and healthy targets.
async fn front_view(ledger: &Ledger, provider: &dyn Provider, s: &ServiceState) -> Option<FrontView> {
    let ir = ledger.get_spec(s.spec_digest.as_ref()?).await.ok()?;
    if skiff_compiler::secondary_regions(&ir).is_empty() {
        return None;
    }
    let release = s.current_release.as_deref()?;
    let front = provider.traffic().describe_front(&s.service).await.ok().flatten();
    let groups = skiff_steps::deploy::release_groups(&ir, release);
    let mut regions = Vec::new();
    for (region, group) in ir.regions.iter().zip(groups) {
        let health = provider.traffic().target_health(&group).await.unwrap_or_default();
        let weight = front.as_ref().and_then(|f| f.weights.iter().find(|w| &w.region == region)).map(|w| w.weight);
        regions.push(serde_json::json!({
            "region": region,
            "weight": weight.unwrap_or(0),
            "load_balancer": skiff_steps::deploy::regional_lb(&ir, region),
            "group": group,
            "healthy": health.iter().filter(|t| t.state == HealthState::Healthy).count(),
            "targets": health.len(),
        }));
    }
    Some(FrontView { address: front.map(|f| f.address), regions })
}

/// The service's managed database as the ledger knows it.
#[derive(Debug, serde::Serialize)]
pub(crate) struct DatabaseView {
    pub(crate) name: String,
    pub(crate) engine: String,
    pub(crate) instance: String,
    pub(crate) backups: usize,
    pub(crate) newest_restore_point: Option<String>,
    pub(crate) newest_backup_at_ms: Option<u64>,
    pub(crate) retained: Vec<serde_json::Value>,
    /// Multi-region: each region's instance, its role and its replay lag behind the writer.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(crate) regions: Vec<serde_json::Value>,
}

/// The database view of `s`, when its recorded spec has a database.
async fn database_view(ledger: &Ledger, provider: &dyn Provider, s: &ServiceState) -> Option<DatabaseView> {
    let digest = s.spec_digest.as_ref()?;
    let ir = ledger.get_spec(digest).await.ok()?;
    let db = ir.database.clone()?;
    let backups = crate::database::records(ledger, &db.name).await.unwrap_or_default();
    let restores = skiff_steps::database::restores(ledger, &db.name).await.unwrap_or_default();
    let retired = skiff_steps::retire::retired(ledger, &db.name).await.unwrap_or_default();
    let newest = backups.last();
    let current = restores.last().map_or_else(|| db.name.clone(), |r| r.to_instance.clone());
    let regions = if db.replica_regions.is_empty() { Vec::new() } else { regions(provider, &ir, s, &current).await };
    Some(DatabaseView {
        regions,
        engine: format!("postgres {}", db.version),
        instance: restores.last().map_or_else(|| db.name.clone(), |r| r.to_instance.clone()),
        backups: backups.len(),
        newest_restore_point: newest.map(|b| b.restore_point.clone()),
        newest_backup_at_ms: newest.map(|b| b.at_ms),
        retained: restores
            .iter()
            .filter(|r| !retired.contains(&r.from_instance))
            .map(
                |r| serde_json::json!({"instance": r.from_instance, "until_ms": r.retained_until_ms, "op_id": r.op_id}),
            )
            .collect(),
        name: db.name,
    })
}

/// Every region's database instance: the writer and each replica with its lag.
async fn regions(
    provider: &dyn Provider,
    ir: &skiff_ir::ServiceIr,
    s: &ServiceState,
    writer: &str,
) -> Vec<serde_json::Value> {
    let Some(db) = &ir.database else { return Vec::new() };
    let writer_region = skiff_steps::failover::writer_region(ir, Some(s));
    let primary = provider.database().replication(writer).await.ok();
    let mut out = Vec::new();
    for region in &ir.regions {
        let instance =
            if *region == writer_region { writer.to_owned() } else { skiff_compiler::replica_name(&db.name, region) };
        let r = provider.database().replication(&instance).await.ok();
        let lag = match (&primary, &r) {
            (Some(p), Some(q)) if *region != writer_region => skiff_steps::failover::measure(p, q).0,
            _ => None,
        };
        out.push(serde_json::json!({
            "region": region,
            "instance": instance,
            "writes": *region == writer_region,
            "role": r.as_ref().map(|r| r.role),
            "reachable": r.as_ref().is_some_and(|r| r.reachable),
            "lag_bytes": lag,
        }));
    }
    out
}

/// "database orders-db (postgres 16) on orders-db: 2 backups, newest restore point … at …".
fn database_fact(d: &DatabaseView) -> String {
    let at = |ms: u64| skiff_clock::Utc::from_ms(ms).rfc3339();
    let mut f = format!("database {} ({}) on {}: {}", d.name, d.engine, d.instance, plural(d.backups, "backup"));
    if let (Some(p), Some(ms)) = (&d.newest_restore_point, d.newest_backup_at_ms) {
        f.push_str(&format!(", newest restore point {p} at {}", at(ms)));
    }
    for r in &d.regions {
        let role = r["role"].as_str().unwrap_or("unknown");
        match r["lag_bytes"].as_u64() {
            Some(lag) => f.push_str(&format!(
                "; {} in {}: {role}, {lag} bytes behind",
                r["instance"].as_str().unwrap_or("?"),
                r["region"].as_str().unwrap_or("?")
            )),
            None => f.push_str(&format!(
                "; {} in {}: {role}",
                r["instance"].as_str().unwrap_or("?"),
                r["region"].as_str().unwrap_or("?")
            )),
        }
    }
    for r in &d.retained {
        f.push_str(&format!(
            "; keeps {} until {}",
            r["instance"].as_str().unwrap_or("?"),
            at(r["until_ms"].as_u64().unwrap_or_default())
        ));
    }
    f
}

pub(crate) async fn view(ledger: &Ledger, provider: &dyn Provider, s: &ServiceState) -> ServiceView {
    let release = s.current_release.clone();
    let group = release.as_deref().map(|r| group_name(&s.service, r));
    let (mut healthy, mut total) = (0, 0);
    let mut stats = TrafficStats::default();
    if let Some(g) = &group {
        if let Ok(Some(info)) = provider.compute().describe_group(g).await {
            total = info.running().len();
            healthy = total;
        }
        if let Ok(h) = provider.traffic().target_health(g).await
            && !h.is_empty()
        {
            total = h.len();
            healthy = h.iter().filter(|t| t.state == HealthState::Healthy).count();
        }
        stats = provider.traffic().stats(g).await.unwrap_or_default();
    }
    let weights = provider.traffic().weights(&s.service).await.unwrap_or_default();
    let current: Vec<Member<RunnerDetail>> = ledger
        .members::<RunnerDetail>(&s.service)
        .await
        .unwrap_or_default()
        .into_iter()
        .filter(|m| Some(&m.release) == release.as_ref() && m.health != MemberHealth::Stopped)
        .collect();
    let cpu: Vec<f64> = current.iter().filter_map(|m| m.detail.cpu_percent).collect();
    let rss: Vec<u64> = current.iter().filter_map(|m| m.detail.rss_kb).collect();
    let active = match &s.active_operation {
        Some(op) => ledger
            .read::<OperationState>(&skiff_state::keys::op_state(op))
            .await
            .ok()
            .flatten()
            .filter(|o| !o.status.is_terminal() || o.status == OpStatus::Failed)
            .map(|o| serde_json::json!({"op_id": op, "saga": o.saga, "status": o.status})),
        None => None,
    };
    let reconcile = ledger
        .store()
        .get(&skiff_state::keys::service_reconcile(&s.service))
        .await
        .ok()
        .flatten()
        .and_then(|o| serde_json::from_slice(&o.bytes).ok());
    ServiceView {
        service: s.service.clone(),
        release,
        stable_release: s.stable_release.clone(),
        candidate_release: s.candidate_release.clone(),
        shadow_release: s.shadow_release.clone(),
        instances_healthy: healthy,
        instances_total: total,
        requests: stats.requests,
        error_rate: stats.error_rate(),
        p95_ms: stats.percentile_ms(0.95),
        cpu_percent: (!cpu.is_empty()).then(|| cpu.iter().sum::<f64>() / cpu.len() as f64),
        rss_mb: (!rss.is_empty()).then(|| rss.iter().sum::<u64>() as f64 / rss.len() as f64 / 1024.0),
        restarts: current.iter().map(|m| m.detail.restarts).sum(),
        active_operation: active,
        last_reconcile: reconcile,
        members: current
            .iter()
            .map(|m| {
                serde_json::json!({"instance": m.instance, "health": m.health, "restarts": m.detail.restarts,
                    "crash_loop": m.detail.crash_loop, "cpu_percent": m.detail.cpu_percent, "rss_kb": m.detail.rss_kb})
            })
            .collect(),
        weights,
        database: database_view(ledger, provider, s).await,
        front: front_view(ledger, provider, s).await,
        autoscale: ledger
            .read::<skiff_state::docs::AutoscaleDoc>(&skiff_state::keys::service_autoscale(&s.service))
            .await
            .ok()
            .flatten()
            .map(|d| {
                serde_json::json!({"desired": d.desired, "backlog": d.backlog, "oldest_age_s": d.oldest_age_s,
                    "observed_ms": d.observed_ms, "last_change": d.last_change, "reason": d.reason})
            }),
    }
}

fn p95(v: Option<u64>) -> String {
    v.map_or_else(|| "-".to_owned(), |p| format!("{p} ms"))
}

fn line(v: &ServiceView) -> String {
    format!(
        "{:<16} {:<14} {:>2}/{:<2} healthy  p95 {:<7} errors {:<6} cpu {:<6} {}",
        v.service,
        v.release.as_deref().unwrap_or("-"),
        v.instances_healthy,
        v.instances_total,
        p95(v.p95_ms),
        format!("{:.1}%", v.error_rate * 100.0),
        v.cpu_percent.map_or_else(|| "-".to_owned(), |c| format!("{c:.1}%")),
        v.active_operation
            .as_ref()
            .map(|o| format!(
                "{} {} ({})",
                o["saga"].as_str().unwrap_or(""),
                o["op_id"].as_str().unwrap_or(""),
                o["status"].as_str().unwrap_or("")
            ))
            .unwrap_or_default()
    )
}

/// The states of `only` (NOT_FOUND when it is unknown) or of every service, then the
/// provider: what the user named is checked before anything else is needed.
async fn open(ctx: &Context, only: Option<&str>) -> Result<(Ledger, Vec<ServiceState>, Arc<dyn Provider>)> {
    let (_, ledger) = ctx.ledger()?;
    let states = service_states(&ledger, only).await?;
    let provider = crate::factory::provider(ctx, &ledger).await?;
    Ok((ledger, states, provider))
}

/// Services whose documents are read at once by `status` (in order).
const CONCURRENT_READS: usize = 16;

async fn service_states(ledger: &Ledger, only: Option<&str>) -> Result<Vec<ServiceState>> {
    if let Some(s) = only {
        return Ok(vec![crate::lookup::service(ledger, s).await?]);
    }
    // The services' own documents only (not the whole bucket), read a few at a time.
    let listed =
        ledger.store().list(&skiff_state::keys::services()).await.map_err(|e| crate::error::state(&e.into()))?;
    let keys: Vec<String> = listed
        .into_iter()
        .filter(|l| matches!(skiff_state::keys::classify(&l.key), skiff_state::keys::KeyKind::ServiceState { .. }))
        .map(|l| l.key)
        .collect();
    let mut out = Vec::new();
    for chunk in keys.chunks(CONCURRENT_READS) {
        let read = futures::future::join_all(chunk.iter().map(|k| ledger.read::<ServiceState>(k))).await;
        for r in read {
            if let Some(s) = r.map_err(|e| crate::error::state(&e))? {
                out.push(s);
            }
        }
    }
    out.sort_by(|a, b| a.service.cmp(&b.service));
    Ok(out)
}

/// The answer for a reconcile that could not run.
pub(crate) fn reconcile_error(e: skiff_steps::reconcile::ReconcileError) -> Error {
    match e {
        skiff_steps::reconcile::ReconcileError::State(e) => crate::error::state(&e),
        other => Envelope::failure(Code::ProviderError, other.to_string()).into(),
    }
}

pub(crate) async fn status(ctx: &Context, service: Option<String>) -> Result<Answer> {
    {
        let (ledger, states, provider) = open(ctx, service.as_deref()).await?;
        let mut views = Vec::new();
        for chunk in states.chunks(CONCURRENT_READS) {
            views.extend(futures::future::join_all(chunk.iter().map(|s| view(&ledger, provider.as_ref(), s))).await);
        }
        let mut body = String::new();
        for v in &views {
            let _ = writeln!(body, "{}", line(v));
        }
        let env = match (&service, views.first()) {
            (Some(_), Some(v)) => {
                let mut env = Envelope::ok(format!(
                    "{} runs {} with {}/{} instances healthy",
                    v.service,
                    v.release.as_deref().unwrap_or("nothing"),
                    v.instances_healthy,
                    v.instances_total
                ))
                .fact(format!(
                    "{} requests, error rate {:.1}%, p95 {}",
                    v.requests,
                    v.error_rate * 100.0,
                    p95(v.p95_ms)
                ));
                if let Some(shadow) = &v.shadow_release {
                    env = env.fact(format!(
                        "shadow release {shadow} runs without user traffic; `skiff saga start traffic-cutover --service {} --from URL` moves traffic to it",
                        v.service
                    ));
                }
                env = env.fact(match v.cpu_percent {
                    Some(c) => format!("cpu {c:.1}% per instance, {:.1} MB memory", v.rss_mb.unwrap_or(0.0)),
                    None => "cpu and memory not measured yet (instances report them with their heartbeats)".to_owned(),
                });
                if v.restarts > 0 {
                    env = env.fact(format!("{} restarts", v.restarts));
                }
                if let Some(c) = &v.candidate_release {
                    env = env.fact(format!("release {c} did not finish its rollout"));
                }
                if let Some(o) = &v.active_operation {
                    env = env
                        .fact(format!("operation {} ({}) is {}", o["op_id"], o["saga"], o["status"]).replace('"', ""));
                }
                if let Some(d) = &v.database {
                    env = env.fact(database_fact(d));
                }
                if let Some(a) = &v.autoscale {
                    env = env.fact(format!(
                        "autoscaled to {} for {} jobs waiting at {}: {}",
                        a["desired"],
                        a["backlog"],
                        skiff_clock::Utc::from_ms(a["observed_ms"].as_u64().unwrap_or(0)).rfc3339(),
                        a["reason"].as_str().unwrap_or("")
                    ));
                }
                if let Some(f) = &v.front {
                    let shares: Vec<String> = f
                        .regions
                        .iter()
                        .map(|r| {
                            format!(
                                "{} {}% ({}/{} healthy)",
                                r["region"].as_str().unwrap_or("?"),
                                r["weight"],
                                r["healthy"],
                                r["targets"]
                            )
                        })
                        .collect();
                    env = env.fact(format!(
                        "global traffic at {}: {}",
                        f.address.as_deref().unwrap_or("(no front)"),
                        shares.join(", ")
                    ));
                }
                env = env.fact(match &v.last_reconcile {
                    Some(r) => format!("last reconcile: {}", r["status"].as_str().unwrap_or("unknown")),
                    None => "last reconcile: never (no worker has reconciled this service)".to_owned(),
                });
                if v.instances_healthy < v.instances_total || v.instances_total == 0 {
                    env = env.action("doctor", format!("skiff doctor {}", v.service), false, Safety::ReadOnly, 0.8);
                }
                env.action("logs", format!("skiff logs {}", v.service), false, Safety::ReadOnly, 0.4)
                    .data(serde_json::to_value(v).unwrap_or_default())
            }
            _ => Envelope::ok(plural(views.len(), "service")).data(serde_json::json!({"services": views})),
        };
        Ok(Answer::from(env).body(body))
    }
}

pub(crate) async fn metrics(ctx: &Context, service: &str) -> Result<Answer> {
    {
        let (ledger, states, provider) = open(ctx, Some(service)).await?;
        let Some(s) = states.first() else { return Err(crate::lookup::no_service(&ledger, service)) };
        let v = view(&ledger, provider.as_ref(), s).await;
        let mut groups = Vec::new();
        for w in &v.weights {
            let st = provider.traffic().stats(&w.target_group).await.unwrap_or_default();
            groups.push(serde_json::json!({
                "target_group": w.target_group, "weight": w.weight, "requests": st.requests, "errors": st.errors,
                "error_rate": st.error_rate(), "p50_ms": st.percentile_ms(0.5), "p95_ms": st.percentile_ms(0.95),
                "p99_ms": st.percentile_ms(0.99),
            }));
        }
        let mut body = String::new();
        for g in &groups {
            let _ = writeln!(
                body,
                "{:<28} weight {:>3}%  {:>8} requests  errors {:>5.1}%  p50 {:<7} p95 {:<7} p99 {}",
                g["target_group"].as_str().unwrap_or(""),
                g["weight"],
                g["requests"],
                g["error_rate"].as_f64().unwrap_or(0.0) * 100.0,
                p95(g["p50_ms"].as_u64()),
                p95(g["p95_ms"].as_u64()),
                p95(g["p99_ms"].as_u64())
            );
        }
        for m in &v.members {
            let _ = writeln!(
                body,
                "{:<28} {:<10} restarts {:<3} cpu {:<7} rss {}",
                m["instance"].as_str().unwrap_or(""),
                m["health"].as_str().unwrap_or(""),
                m["restarts"],
                m["cpu_percent"].as_f64().map_or_else(|| "-".to_owned(), |c| format!("{c:.1}%")),
                m["rss_kb"].as_u64().map_or_else(|| "-".to_owned(), |k| format!("{:.1} MB", k as f64 / 1024.0))
            );
        }
        let env = Envelope::ok(format!(
            "metrics of {service}: {}, {}",
            plural(groups.len(), "target group"),
            plural(v.members.len(), "instance")
        ))
        .fact("request counts, errors and latency percentiles are since each target group was created")
        .data(serde_json::json!({"service": service, "target_groups": groups, "members": v.members}));
        Ok(Answer::from(env).body(body))
    }
}

pub(crate) async fn logs(ctx: &Context, r: LogsRequest) -> Result<Answer> {
    let since_ms = match r.since.as_deref() {
        Some(s) => match crate::audit::since_ms(s, SystemClock.now_ms()) {
            Some(v) => Some(v),
            None => {
                return Err(Envelope::failure(Code::Usage, format!("--since `{s}` is not a date, a time or an age"))
                    .fact("write 2026-11-22, 2026-11-22T10:00:00Z, or an age such as 10m or 24h")
                    .into());
            }
        },
        None => None,
    };
    let grep = match r.grep.as_deref().map(regex::Regex::new).transpose() {
        Ok(g) => g,
        Err(e) => {
            return Err(Envelope::failure(
                Code::Usage,
                format!("--grep `{}` is not a regular expression", r.grep.as_deref().unwrap_or_default()),
            )
            .fact(e.to_string())
            .fact("write e.g. --grep 'error|timeout' (Rust regex syntax; escape ( and [ with a backslash)")
            .into());
        }
    };
    let service = r.service;
    let (ledger, _, provider) = open(ctx, Some(&service)).await?;
    let mut filter = LineFilter { grep, trace: None, instances: BTreeSet::new() };
    if let Some(t) = r.trace.as_deref() {
        filter.trace = Some(trace_of(&ledger, t).await?);
    }
    let mut q = LogQuery { service: service.clone(), instance: r.instance, since_ms, limit: None };
    loop {
        let read = provider
            .logs()
            .read(&q)
            .await
            .map_err(|e| Error::from(Envelope::failure(Code::ProviderError, e.message)))?;
        let next = read.last().map(|l| l.at_ms + 1);
        let lines = filter.apply(read);
        let json = |l: &skiff_pluginapi::LogLine| serde_json::json!({"at_ms": l.at_ms, "instance": l.instance, "line": l.line});
        let human = |l: &skiff_pluginapi::LogLine| {
            format!("{} {} {}", skiff_clock::Utc::from_ms(l.at_ms).rfc3339(), l.instance, l.line)
        };
        if !r.follow {
            let body: Vec<String> = lines.iter().map(human).collect();
            let data: Vec<serde_json::Value> = lines.iter().map(json).collect();
            let mut env = Envelope::ok(format!("{} of {service}", plural(lines.len(), "log line")));
            if let Some(t) = &filter.trace {
                env = env.fact(format!(
                    "trace {t}: instances {}",
                    filter.instances.iter().cloned().collect::<Vec<_>>().join(", ")
                ));
            }
            let answer = Answer::from(env.data(serde_json::json!({"lines": data}))).body(body.join("\n")).raw();
            return Ok(if r.json { json_lines(answer, &data) } else { answer });
        }
        for l in &lines {
            let j = json(l);
            ctx.emit(&j, &if r.json { j.to_string() } else { human(l) });
        }
        if next.is_some() {
            q.since_ms = next;
        }
        SystemClock.sleep(Duration::from_millis(500)).await;
    }
}

/// The answer with its body as one JSON object per line (`skiff logs --json`).
pub(crate) fn json_lines(answer: Answer, lines: &[serde_json::Value]) -> Answer {
    let body: Vec<String> = lines.iter().map(serde_json::Value::to_string).collect();
    answer.body(body.join("\n")).raw()
}

/// What `skiff logs --grep/--trace` keep.
struct LineFilter {
    grep: Option<regex::Regex>,
    /// The trace whose instances are kept: an instance belongs to it when its runner
    /// noted `trace_id=<id>` (the operation that created its group started it).
    trace: Option<String>,
    /// The instances found in the trace so far (a follow keeps adding to them).
    instances: BTreeSet<String>,
}

impl LineFilter {
    fn apply(&mut self, lines: Vec<skiff_pluginapi::LogLine>) -> Vec<skiff_pluginapi::LogLine> {
        if let Some(t) = &self.trace {
            let mark = format!("trace_id={t}");
            self.instances.extend(lines.iter().filter(|l| l.line.contains(&mark)).map(|l| l.instance.clone()));
        }
        lines
            .into_iter()
            .filter(|l| self.trace.is_none() || self.instances.contains(&l.instance))
            .filter(|l| self.grep.as_ref().is_none_or(|g| g.is_match(&l.line)))
            .collect()
    }
}

/// `--trace`: a trace id as is, or the trace an operation's intent recorded.
async fn trace_of(ledger: &Ledger, given: &str) -> Result<String> {
    let given = given.trim();
    if given.len() == 32 && given.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Ok(given.to_ascii_lowercase());
    }
    let intent = ledger
        .read::<skiff_state::docs::OperationIntent>(&skiff_state::keys::op_intent(given))
        .await
        .map_err(|e| crate::error::state(&e))?;
    let Some(intent) = intent else {
        return Err(Envelope::failure(
            Code::NotFound,
            format!("--trace `{given}` is neither a trace id nor an operation"),
        )
        .fact("a trace id is 32 hex digits; an operation id is what `skiff saga list` shows")
        .action("saga-list", "skiff saga list", false, Safety::ReadOnly, 0.6)
        .into());
    };
    let trace = intent.trace.and_then(|t| t.traceparent.split('-').nth(1).map(str::to_owned));
    trace.ok_or_else(|| {
        Envelope::failure(Code::NotFound, format!("operation {given} recorded no trace"))
            .fact("operations submitted before Skiff recorded traces have none; filter with --instance instead")
            .into()
    })
}

/// A workspace Skiff applied with Terraform under the service's name is one more drift
/// signal: what `terraform plan` would change is added to the recorded verdict.
async fn with_terraform(
    ctx: &Context,
    ledger: &Ledger,
    mut doc: skiff_state::docs::ReconcileDoc,
) -> Result<skiff_state::docs::ReconcileDoc> {
    let Some(differences) = crate::terraform::drift(ctx, ledger, &doc.service).await? else { return Ok(doc) };
    if differences.is_empty() {
        return Ok(doc);
    }
    doc.differences.extend(differences);
    doc.status = skiff_state::docs::SyncStatus::Drifted;
    let written = doc.clone();
    ledger
        .update::<skiff_state::docs::ReconcileDoc, _>(&skiff_state::keys::service_reconcile(&doc.service), |_| {
            Ok(skiff_state::Update::Write(written.clone()))
        })
        .await
        .map_err(|e| crate::error::state(&e))?;
    Ok(doc)
}

/// `skiff reconcile [SERVICE]`: desired against actual, recorded; DRIFTED exits 24.
pub(crate) async fn reconcile(ctx: &Context, service: Option<String>) -> Result<Answer> {
    let actor = ctx.actor();
    let (ledger, states, provider) = open(ctx, service.as_deref()).await?;
    if states.is_empty() {
        return Ok(Envelope::ok("no services deployed; nothing to reconcile").into());
    }
    let mut docs = Vec::new();
    let mut skipped = Vec::new();
    for s in &states {
        match skiff_steps::reconcile::reconcile(&ledger, provider.as_ref(), &s.service, &actor).await {
            Ok(Some(doc)) => docs.push(with_terraform(ctx, &ledger, doc).await?),
            Ok(None) => skipped.push(format!(
                "{}: skipped, operation {} is working on it",
                s.service,
                s.active_operation.as_deref().unwrap_or("?")
            )),
            Err(skiff_steps::reconcile::ReconcileError::State(e)) => return Err(crate::error::state(&e)),
            Err(e) => {
                return Err(Envelope::failure(Code::ProviderError, format!("cannot reconcile {}", s.service))
                    .fact(e.to_string())
                    .into());
            }
        }
    }
    let drifted: Vec<&skiff_state::docs::ReconcileDoc> =
        docs.iter().filter(|d| d.status == skiff_state::docs::SyncStatus::Drifted).collect();
    let mut env = if drifted.is_empty() {
        let names: Vec<&str> = docs.iter().map(|d| d.service.as_str()).collect();
        if names.is_empty() {
            Envelope::ok("nothing reconciled: every service is being worked on")
        } else {
            Envelope::ok(format!("{} IN_SYNC", names.join(", ")))
        }
    } else {
        let names: Vec<&str> = drifted.iter().map(|d| d.service.as_str()).collect();
        Envelope::failure(Code::Drifted, format!("{} DRIFTED", names.join(", ")))
    };
    let short = |v: &serde_json::Value| {
        let t = v.to_string();
        if t.chars().count() > 160 { format!("{}…", t.chars().take(160).collect::<String>()) } else { t }
    };
    let mut worst = None;
    for d in &docs {
        let mut diffs: Vec<&skiff_state::docs::Difference> = d.differences.iter().collect();
        diffs.sort_by_key(|x| std::cmp::Reverse(x.severity));
        for x in diffs {
            worst = worst.max(Some(x.severity));
            env = env.fact(format!(
                "{} {} [{}]: desired {}, actual {}",
                d.service,
                x.path,
                x.severity.as_str(),
                short(&x.desired),
                short(&x.actual)
            ));
        }
    }
    env = env.facts(skipped);
    if let Some(w) = worst {
        use skiff_pluginapi::Severity;
        let level = match w {
            Severity::Critical | Severity::High => RiskLevel::High,
            Severity::Medium => RiskLevel::Medium,
            _ => RiskLevel::Low,
        };
        env = env.risk(level, vec![format!("the worst difference is {}", w.as_str())]);
    }
    for d in &drifted {
        env = drift_actions(env, &d.service, &d.differences);
    }
    Ok(env.data(serde_json::json!({ "services": docs })).into())
}

/// The commands a difference's repair names: the whole repair when it is one, else each
/// `` `skiff …` `` quoted in it.
fn commands_in(repair: &str) -> Vec<String> {
    if repair.starts_with("skiff ") {
        return vec![repair.to_owned()];
    }
    repair
        .split('`')
        .enumerate()
        .filter(|(i, part)| i % 2 == 1 && part.starts_with("skiff "))
        .map(|(_, part)| part.to_owned())
        .collect()
}

/// Recommended actions for `service`'s differences: the repair saga first when a step
/// repairs any of them, then the commands their repairs name.
pub(crate) fn drift_actions(mut env: Envelope, service: &str, diffs: &[skiff_state::docs::Difference]) -> Envelope {
    let stepped = |x: &skiff_state::docs::Difference| {
        x.fix.is_some() || matches!(x.path.as_str(), "instances.desired" | "instances.running" | "traffic.weights")
    };
    if diffs.iter().any(stepped) {
        env = env.action(
            &format!("repair-{service}"),
            format!("skiff reconcile {service} --repair --yes"),
            true,
            Safety::Reversible,
            0.8,
        );
    }
    let mut commands: Vec<String> = diffs.iter().flat_map(|x| commands_in(&x.repair)).collect();
    commands.sort_unstable();
    commands.dedup();
    for (i, c) in commands.into_iter().enumerate() {
        let read_only = c.starts_with("skiff doctor") || c.starts_with("skiff status");
        let safety = if read_only { Safety::ReadOnly } else { Safety::Reversible };
        env = env.action(&format!("repair-{service}-{}", i + 1), c, !read_only, safety, 0.6);
    }
    env
}
