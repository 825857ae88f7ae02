//! Diagnostics: looks at the bucket, the signing key, operations and their leases,
//! runner heartbeats and the provider's actual state, and turns every problem into a
//! [`Finding`] with a taxonomy code, the facts behind it and recommended actions.
#![warn(missing_docs)]

use std::collections::BTreeSet;

use serde::Serialize;
use skiff_pluginapi::{HealthState, Provider};
use skiff_saga::{Engine, SagaDetail};
use skiff_sdk::{Action, Code, Safety};
use skiff_state::docs::{Lease, MemberHealth, OperationState, RunnerDetail, ServiceState};
use skiff_state::{Ledger, keys};

/// One problem.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Finding {
    /// Its taxonomy code.
    pub code: Code,
    /// What it concerns: `bucket`, `keys`, a service, an operation.
    pub subject: String,
    /// What is wrong.
    pub summary: String,
    /// Observations behind it.
    pub facts: Vec<String>,
    /// What to do, best first.
    pub actions: Vec<Action>,
}

impl Finding {
    fn new(code: Code, subject: impl Into<String>, summary: impl Into<String>) -> Self {
        Finding { code, subject: subject.into(), summary: summary.into(), facts: Vec::new(), actions: Vec::new() }
    }

    fn fact(mut self, f: impl Into<String>) -> Self {
        self.facts.push(f.into());
        self
    }

    fn action(mut self, id: &str, command: impl Into<String>, mutating: bool, safety: Safety, confidence: f64) -> Self {
        self.actions.push(Action { id: id.to_owned(), command: command.into(), mutating, safety, confidence });
        self
    }
}

/// Whether the signing key is usable, as the caller found it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyCheck {
    /// Present and readable.
    Present,
    /// Missing at this path.
    Missing(String),
}

/// What the doctor looks at.
pub struct Inputs<'a> {
    /// The state bucket.
    pub ledger: &'a Ledger,
    /// The provider, or why it cannot be reached.
    pub provider: Result<&'a dyn Provider, String>,
    /// The signing key.
    pub key: KeyCheck,
    /// Only this service (and the bucket and keys).
    pub service: Option<String>,
    /// Now, milliseconds since the epoch.
    pub now_ms: u64,
    /// A running operation with no event for this long is stuck.
    pub stuck_after_ms: u64,
    /// A heartbeat older than this is stale.
    pub heartbeat_stale_ms: u64,
    /// A queue autoscaler's reading older than this is stale.
    pub autoscale_stale_ms: u64,
}

impl std::fmt::Debug for Inputs<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inputs")
            .field("provider", &self.provider.as_ref().map(|p| p.name()))
            .field("key", &self.key)
            .field("service", &self.service)
            .field("now_ms", &self.now_ms)
            .finish_non_exhaustive()
    }
}

/// Every finding, bucket first, then keys, operations and services.
pub async fn diagnose(i: &Inputs<'_>) -> Vec<Finding> {
    let mut out = Vec::new();
    if let Some(f) = bucket(i.ledger).await {
        out.push(f);
        return out;
    }
    if let KeyCheck::Missing(path) = &i.key {
        out.push(
            Finding::new(Code::SignatureInvalid, "keys", "no signing key: releases cannot be signed")
                .fact(format!("{path} does not exist"))
                .action("keys", "skiff keys generate", true, Safety::Reversible, 0.9),
        );
    }
    let services = services(i).await;
    out.extend(operations(i, &services).await);
    if let Err(why) = &i.provider {
        out.push(
            Finding::new(Code::ProviderError, "provider", "the provider cannot be reached").fact(why.clone()).action(
                "up",
                "skiff local up",
                true,
                Safety::Reversible,
                0.8,
            ),
        );
    }
    for s in &services {
        out.extend(service(i, s).await);
        out.extend(database(i, s).await);
        out.extend(secret_versions(i, s).await);
        out.extend(migrations(i, s).await);
        out.extend(autoscale(i, s).await);
    }
    out
}

/// A queue-scaled service whose autoscaler has not read its queue lately: its size no
/// longer follows the backlog.
async fn autoscale(i: &Inputs<'_>, s: &ServiceState) -> Vec<Finding> {
    use skiff_state::docs::AutoscaleDoc;
    let Some(digest) = &s.spec_digest else { return Vec::new() };
    let Ok(ir) = i.ledger.get_spec(digest).await else { return Vec::new() };
    let Some(q) = &ir.capacity.queue else { return Vec::new() };
    let doc: Option<AutoscaleDoc> = i.ledger.read(&keys::service_autoscale(&s.service)).await.ok().flatten();
    let age_ms = doc.as_ref().map(|d| i.now_ms.saturating_sub(d.observed_ms));
    if age_ms.is_some_and(|a| a <= i.autoscale_stale_ms) {
        return Vec::new();
    }
    let summary = match age_ms {
        Some(a) => format!(
            "the autoscaler of {} has not read its queue for {}s: the instance count no longer follows the backlog",
            s.service,
            a / 1000
        ),
        None => format!(
            "the autoscaler of {} has never read its queue: the instance count stays where a deploy put it",
            s.service
        ),
    };
    let mut f = Finding::new(Code::Unhealthy, format!("autoscaler of {}", s.service), summary)
        .fact(format!("queue: database {}, {}", q.database, q.query));
    if let Some(d) = &doc {
        f = f.fact(format!(
            "last reading at {}: {} waiting, {} instances ({})",
            skiff_clock::Utc::from_ms(d.observed_ms).rfc3339(),
            d.backlog,
            d.desired,
            d.reason
        ));
    }
    vec![
        f.fact("the autoscaler runs in the local supervisor (`skiff local up`) and in every skiff-worker")
            .action("lag", format!("skiff metrics {} queue-lag", s.service), false, Safety::ReadOnly, 0.8)
            .action("up", "skiff local up", true, Safety::Reversible, 0.5),
    ]
}

/// Migrations of the service that failed, or were interrupted with no operation left
/// to finish them.
async fn migrations(i: &Inputs<'_>, s: &ServiceState) -> Vec<Finding> {
    use skiff_state::docs::{MigrationRecord, MigrationState};
    let mut out = Vec::new();
    for l in i.ledger.store().list(&keys::migrations(&s.service)).await.unwrap_or_default() {
        let Ok(Some(m)) = i.ledger.read::<MigrationRecord>(&l.key).await else { continue };
        let subject = format!("migration {}/{}", m.service, m.release);
        let output: Vec<String> = m
            .output
            .lines()
            .filter(|x| !x.trim().is_empty())
            .rev()
            .take(5)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .map(|x| format!("output: {x}"))
            .collect();
        let finding =
            match m.state {
                MigrationState::Failed => Finding::new(
                    Code::OperationFailed,
                    &subject,
                    format!(
                        "the migration of {} failed (exit {}); the deploy stopped before traffic moved",
                        m.release,
                        m.exit_code.unwrap_or(-1)
                    ),
                )
                .facts(output)
                .fact(format!("operation {}; fix the migration in a new release, then deploy it", m.op_id))
                .action("show", format!("skiff saga show {}", m.op_id), false, Safety::ReadOnly, 0.6)
                .action("deploy", "skiff deploy -f skiff.yaml --yes", true, Safety::Reversible, 0.5),
                MigrationState::Running if s.active_operation.as_deref() != Some(m.op_id.as_str()) => Finding::new(
                    Code::Unhealthy,
                    &subject,
                    format!("the migration of {} was interrupted and nothing is finishing it", m.release),
                )
                .fact(format!("started by {} at {}", m.op_id, skiff_clock::Utc::from_ms(m.started_at_ms).rfc3339()))
                .fact("resuming checks the version table before it runs anything again")
                .action("resume", format!("skiff saga resume {} --yes", m.op_id), true, Safety::Reversible, 0.7),
                _ => continue,
            };
        out.push(finding);
    }
    out
}

/// How old the newest backup of a database may be before doctor reports it.
const BACKUP_MAX_AGE_MS: u64 = 24 * 60 * 60 * 1000;

/// A database without a recent backup, and retained copies past their expiry.
async fn database(i: &Inputs<'_>, s: &ServiceState) -> Vec<Finding> {
    let mut out = Vec::new();
    let Some(db) = i.ledger.recorded(&s.service).await.ok().flatten().and_then(|(_, ir)| ir).and_then(|ir| ir.database)
    else {
        return out;
    };
    let subject = format!("database {}", db.name);
    let listed = i.ledger.store().list(&keys::database_backups(&db.name)).await.unwrap_or_default();
    let mut newest: Option<skiff_state::docs::BackupRecord> = None;
    for l in &listed {
        if let Ok(Some(b)) = i.ledger.read::<skiff_state::docs::BackupRecord>(&l.key).await
            && newest.as_ref().is_none_or(|n| b.at_ms > n.at_ms)
        {
            newest = Some(b);
        }
    }
    let backup = format!("skiff database backup {} --yes", db.name);
    match newest {
        None => out.push(
            Finding::new(Code::Unhealthy, &subject, format!("{} has no backup to restore from", db.name))
                .fact("a restore needs a base backup and the log after it")
                .action("backup", backup, true, Safety::Reversible, 0.9),
        ),
        Some(b) if i.now_ms.saturating_sub(b.at_ms) > BACKUP_MAX_AGE_MS => out.push(
            Finding::new(Code::Unhealthy, &subject, format!("the newest backup of {} is over a day old", db.name))
                .fact(format!("newest restore point {} is {} h old", b.restore_point, (i.now_ms - b.at_ms) / 3_600_000))
                .action("backup", backup, true, Safety::Reversible, 0.8),
        ),
        Some(_) => {}
    }
    let retired = skiff_steps::retire::retired(i.ledger, &db.name).await.unwrap_or_default();
    for r in skiff_steps::database::restores(i.ledger, &db.name).await.unwrap_or_default() {
        if r.retained_until_ms < i.now_ms && !retired.contains(&r.from_instance) {
            out.push(
                Finding::new(
                    Code::Unhealthy,
                    &subject,
                    format!("retained instance {} is past its expiry", r.from_instance),
                )
                .fact(format!(
                    "kept after restore {} until {}",
                    r.op_id,
                    skiff_clock::Utc::from_ms(r.retained_until_ms).rfc3339()
                ))
                .fact(
                    "deleting it is irreversible: a final snapshot is taken first, and the deletion waits for approval",
                )
                .action(
                    "retire",
                    format!("skiff database retire {} --instance {} --yes", db.name, r.from_instance),
                    true,
                    Safety::Irreversible,
                    0.6,
                ),
            );
        }
    }
    out
}

/// Running instances that do not report the current version of a secret they read
/// (after a rotation or a cutover they were not restarted for). Not while an operation
/// works on the service: a rotation's own restart is under way then.
async fn secret_versions(i: &Inputs<'_>, s: &ServiceState) -> Vec<Finding> {
    let mut out = Vec::new();
    let (Ok(p), Some(release), None) = (&i.provider, &s.current_release, &s.active_operation) else { return out };
    let Some(ir) = i.ledger.recorded(&s.service).await.ok().flatten().and_then(|(_, ir)| ir) else { return out };
    let group = skiff_steps::deploy::group_name(&s.service, release);
    let Some(info) = p.compute().describe_group(&group).await.ok().flatten() else { return out };
    let running: Vec<String> = info.running().iter().map(|x| x.id.clone()).collect();
    let refs: BTreeSet<String> = ir.secrets.values().map(ToString::to_string).collect();
    for reference in refs {
        let Some(current) = p.secrets().version(&reference).await.ok().flatten() else { continue };
        let mut stale = Vec::new();
        for id in &running {
            let key = keys::member(&s.service, id);
            let Ok(Some(m)) = i.ledger.read::<skiff_state::docs::Member<RunnerDetail>>(&key).await else { continue };
            match m.detail.secrets.get(&reference) {
                Some(v) if *v != current => stale.push(format!("instance {id} reports {v}")),
                _ => {}
            }
        }
        if stale.is_empty() {
            continue;
        }
        let summary = if stale.len() == running.len() {
            format!("no instance of {} has picked up the current version of {reference}", s.service)
        } else {
            format!("{} of {} instances of {} use an old version of {reference}", stale.len(), running.len(), s.service)
        };
        let mut f = Finding::new(Code::Unhealthy, format!("service {}", s.service), summary)
            .fact(format!("the current version is {current}"));
        for x in stale {
            f = f.fact(x);
        }
        let name = reference.trim_start_matches("secret://").split('/').next().unwrap_or_default().to_owned();
        let database = ir.database.as_ref().is_some_and(|d| d.name == name);
        f = f.fact("instances resolve secrets when they start: replace them and they read the current value");
        f = if database {
            f.action("rotate", format!("skiff rotate secret {name} --yes"), true, Safety::Reversible, 0.6)
        } else {
            f.action("deploy", "skiff deploy -f skiff.yaml --yes", true, Safety::Reversible, 0.6)
        };
        out.push(f);
    }
    out
}

/// The bucket answers, is initialized and takes writes.
async fn bucket(ledger: &Ledger) -> Option<Finding> {
    let unavailable = |why: String| {
        Finding::new(Code::StateUnavailable, "bucket", "the state bucket cannot be used")
            .fact(why)
            .action("show", "skiff config show", false, Safety::ReadOnly, 0.6)
            .action("init", "skiff state init --yes", true, Safety::Reversible, 0.4)
    };
    match ledger.store().get(&keys::bucket()).await {
        Err(e) => return Some(unavailable(format!("reading {}: {e}", keys::bucket()))),
        Ok(None) => {
            return Some(
                Finding::new(Code::StateUnavailable, "bucket", "the state bucket is not initialized")
                    .fact(format!("{} is missing", keys::bucket()))
                    .action("init", "skiff state init --yes", true, Safety::Reversible, 0.9),
            );
        }
        Ok(Some(_)) => {}
    }
    let probe = keys::probe(&ledger.ids().id("probe"));
    match ledger.store().put_create(&probe, b"{}".to_vec()).await {
        Ok(v) => {
            let _ = ledger.store().delete_if_match(&probe, &v).await;
            None
        }
        Err(e) => Some(unavailable(format!("the bucket is not writable: {e}"))),
    }
}

async fn services(i: &Inputs<'_>) -> Vec<ServiceState> {
    let names: Vec<String> = match &i.service {
        Some(s) => vec![s.clone()],
        None => i.ledger.rebuild_index().await.map(|x| x.services.keys().cloned().collect()).unwrap_or_default(),
    };
    let mut out = Vec::new();
    for n in names {
        if let Ok(Some(s)) = i.ledger.read::<ServiceState>(&keys::service_state(&n)).await {
            out.push(s);
        }
    }
    out
}

/// Stuck operations, expired leases still held, pauses and approvals waiting.
async fn operations(i: &Inputs<'_>, services: &[ServiceState]) -> Vec<Finding> {
    let wanted: BTreeSet<&str> = services.iter().map(|s| s.service.as_str()).collect();
    let mut out = Vec::new();
    let ops: BTreeSet<String> = i
        .ledger
        .store()
        .list(&keys::operations())
        .await
        .unwrap_or_default()
        .into_iter()
        .filter_map(|l| l.key.strip_prefix(&keys::operations()).and_then(|r| r.split('/').next()).map(str::to_owned))
        .collect();
    for op in ops {
        let Ok(Some(st)) = i.ledger.read::<OperationState<SagaDetail>>(&keys::op_state(&op)).await else { continue };
        if st.status.is_terminal() {
            continue;
        }
        if i.service.is_some() && !st.service.as_deref().is_some_and(|s| wanted.contains(s)) {
            continue;
        }
        let lease = i.ledger.read::<Lease>(&keys::lease(&format!("operations/{op}"))).await.ok().flatten();
        let live = lease.as_ref().is_some_and(|l| !l.released && l.expires_at_ms > i.now_ms);
        let subject = format!("operation {op}");
        let d = &st.detail;
        use skiff_state::docs::OpStatus as S;
        match st.status {
            S::Paused => {
                let mut f = Finding::new(
                    d.held.as_ref().map_or(Code::Ok, |h| skiff_saga::taxonomy(h.code)),
                    &subject,
                    format!("{} {op} is paused", st.saga),
                );
                if f.code == Code::Ok {
                    f.code = Code::OperationFailed;
                }
                if let Some(h) = &d.held {
                    f = f
                        .fact(format!("{}: {}", h.code, h.message))
                        .fact(format!("held at step `{}`", h.step.clone().unwrap_or_default()));
                }
                out.push(
                    f.action("resume", format!("skiff saga resume {op} --yes"), true, Safety::Reversible, 0.6).action(
                        "cancel",
                        format!("skiff saga cancel {op} --yes"),
                        true,
                        Safety::Reversible,
                        0.3,
                    ),
                );
            }
            S::AwaitingApproval => out.push(
                Finding::new(Code::ApprovalRequired, &subject, format!("{} {op} waits for approval", st.saga))
                    .fact(format!("step `{}`", d.awaiting.clone().unwrap_or_default()))
                    .action("approve", format!("skiff saga approve {op} --yes"), true, Safety::Irreversible, 0.5)
                    .action("reject", format!("skiff saga reject {op} --yes"), true, Safety::Reversible, 0.4),
            ),
            _ if !live => {
                let mut f = Finding::new(
                    Code::LeaseHeld,
                    &subject,
                    format!("{} {op} is stuck: its engine stopped while it was {}", st.saga, st.status.as_str()),
                );
                f = match &lease {
                    Some(l) if !l.released => f.fact(format!(
                        "lease held by {} expired {}s ago and was never released",
                        l.holder,
                        i.now_ms.saturating_sub(l.expires_at_ms) / 1000
                    )),
                    _ => f.fact("no engine holds its lease"),
                };
                out.push(
                    f.action("resume", format!("skiff saga resume {op} --yes"), true, Safety::Reversible, 0.8).action(
                        "cancel",
                        format!("skiff saga cancel {op} --yes"),
                        true,
                        Safety::Reversible,
                        0.3,
                    ),
                );
            }
            _ => {
                let last =
                    i.ledger.events_from(&op, d.applied_seq.max(1)).await.ok().and_then(|e| e.last().map(|e| e.at_ms));
                if let Some(at) = last
                    && i.now_ms.saturating_sub(at) > i.stuck_after_ms
                {
                    out.push(
                        Finding::new(
                            Code::DeadlineExceeded,
                            &subject,
                            format!("{} {op} has made no progress", st.saga),
                        )
                        .fact(format!(
                            "no event for {}s although its engine holds the lease",
                            i.now_ms.saturating_sub(at) / 1000
                        ))
                        .action("events", format!("skiff saga events {op}"), false, Safety::ReadOnly, 0.6)
                        .action(
                            "cancel",
                            format!("skiff saga cancel {op} --yes"),
                            true,
                            Safety::Reversible,
                            0.3,
                        ),
                    );
                }
            }
        }
    }
    out
}

/// A service: its runners' heartbeats, the provider against the ledger, a failed canary.
async fn service(i: &Inputs<'_>, s: &ServiceState) -> Vec<Finding> {
    let mut out = Vec::new();
    let svc = &s.service;
    let subject = format!("service {svc}");
    let group = s.current_release.as_deref().map(|r| skiff_steps::deploy::group_name(svc, r));
    let live: Vec<String> = match (&i.provider, &group) {
        (Ok(p), Some(g)) => p
            .compute()
            .describe_group(g)
            .await
            .ok()
            .flatten()
            .map(|info| {
                info.instances
                    .iter()
                    .filter(|x| x.state != skiff_pluginapi::InstanceState::Terminated)
                    .map(|x| x.id.clone())
                    .collect()
            })
            .unwrap_or_default(),
        _ => Vec::new(),
    };
    let mut refused = BTreeSet::new();
    // `skiff rollback SVC` goes to the previous stable release: recommended only when
    // there is one to go to.
    let can_roll_back =
        if s.candidate_release.is_some() { s.stable_release.is_some() } else { s.previous_stable.is_some() };
    let rollback = |f: Finding| {
        if can_roll_back {
            f.action("rollback", format!("skiff rollback {svc} --yes"), true, Safety::Reversible, 0.5)
        } else {
            f.fact(format!("{svc} has no earlier stable release to roll back to"))
        }
    };
    for m in i.ledger.members::<RunnerDetail>(svc).await.unwrap_or_default() {
        let current =
            Some(&m.release) == s.current_release.as_ref() || Some(&m.release) == s.candidate_release.as_ref();
        if !current
            || m.health == MemberHealth::Stopped
            || (i.provider.is_ok() && !live.is_empty() && !live.contains(&m.instance))
        {
            continue;
        }
        let who = format!("instance {} of {svc} ({})", m.instance, m.release);
        let logs = format!("skiff logs {svc} --instance {}", m.instance);
        if m.health == MemberHealth::Refused {
            let code = m.detail.code.as_deref().and_then(|c| c.parse().ok()).unwrap_or(Code::SignatureInvalid);
            if refused.insert(code.as_str()) {
                out.push(rollback(
                    Finding::new(code, &subject, format!("{who} refused its release"))
                        .fact(m.detail.reason.clone().unwrap_or_default())
                        .fact("runners verify the signature and digests before starting anything")
                        .action(
                            "verify",
                            format!("skiff release verify {svc} {}", m.release),
                            false,
                            Safety::ReadOnly,
                            0.8,
                        ),
                ));
            }
        } else if m.detail.crash_loop {
            out.push(rollback(
                Finding::new(Code::Unhealthy, &subject, format!("{who} is crash looping"))
                    .fact(format!(
                        "{} restarts; last exit: {}",
                        m.detail.restarts,
                        m.detail.last_exit.clone().unwrap_or_default()
                    ))
                    .action("logs", logs, false, Safety::ReadOnly, 0.8),
            ));
        } else if m.health == MemberHealth::Unhealthy {
            out.push(
                Finding::new(Code::Unhealthy, &subject, format!("{who} is unhealthy"))
                    .fact(m.detail.reason.clone().unwrap_or_else(|| "its health check fails".to_owned()))
                    .action("logs", logs, false, Safety::ReadOnly, 0.8),
            );
        } else if i.now_ms.saturating_sub(m.updated_at_ms) > i.heartbeat_stale_ms {
            out.push(
                Finding::new(Code::Unhealthy, &subject, format!("{who} stopped heartbeating"))
                    .fact(format!("last heartbeat {}s ago", i.now_ms.saturating_sub(m.updated_at_ms) / 1000))
                    .action("status", format!("skiff status {svc}"), false, Safety::ReadOnly, 0.6),
            );
        }
    }
    if let (Ok(p), Some(g), Some(release)) = (&i.provider, &group, &s.current_release) {
        out.extend(drift(*p, s, g, release).await);
    }
    if let Some(c) = &s.candidate_release
        && s.active_operation.is_none()
    {
        let op = Engine::op_id_for("deploy", &format!("deploy:{svc}:{c}"));
        let failure = i
            .ledger
            .read::<OperationState<SagaDetail>>(&keys::op_state(&op))
            .await
            .ok()
            .flatten()
            .and_then(|st| st.detail.failure.clone())
            .filter(|f| f.code == skiff_sagaapi::StepCode::CanaryFailed);
        if let Some(f) = failure {
            out.push(
                Finding::new(
                    Code::CanaryFailed,
                    &subject,
                    format!("release {c} failed its canary and was rolled back"),
                )
                .fact(f.message.clone())
                .facts(f.facts.iter().cloned())
                .fact(format!("{} keeps serving", s.stable_release.clone().unwrap_or_default()))
                .action("show", format!("skiff saga show {op}"), false, Safety::ReadOnly, 0.6)
                .action("deploy", "skiff deploy -f skiff.yaml --yes", true, Safety::Reversible, 0.4),
            );
        }
    }
    out
}

impl Finding {
    fn facts(mut self, f: impl IntoIterator<Item = String>) -> Self {
        self.facts.extend(f);
        self
    }
}

/// The provider against the ledger: the current release's group exists and runs,
/// and (with no operation under way) takes all of the service's traffic.
async fn drift(p: &dyn Provider, s: &ServiceState, group: &str, release: &str) -> Vec<Finding> {
    let svc = &s.service;
    let subject = format!("service {svc}");
    let repair = |f: Finding| {
        f.action("rollback", format!("skiff rollback {svc} --to {release} --yes"), true, Safety::Reversible, 0.6)
    };
    let mut out = Vec::new();
    match p.compute().describe_group(group).await {
        Ok(None) => {
            out.push(repair(
                Finding::new(Code::Drifted, &subject, format!("the provider has no instance group for {release}"))
                    .fact(format!("the ledger says {release} serves, but group {group} does not exist")),
            ));
            return out;
        }
        Ok(Some(info)) if info.running().len() < info.desired as usize => out.push(
            Finding::new(
                Code::Drifted,
                &subject,
                format!("{group} runs {} of {} instances", info.running().len(), info.desired),
            )
            .fact("the provider is replacing instances, or cannot start them")
            .action("status", format!("skiff status {svc}"), false, Safety::ReadOnly, 0.6),
        ),
        _ => {}
    }
    if let Ok(h) = p.traffic().target_health(group).await {
        let bad: Vec<_> = h.iter().filter(|t| t.state == HealthState::Unhealthy).collect();
        if !bad.is_empty() {
            out.push(
                Finding::new(
                    Code::Unhealthy,
                    &subject,
                    format!("{} of {} targets of {group} fail health checks", bad.len(), h.len()),
                )
                .facts(bad.iter().filter_map(|t| t.reason.clone().map(|r| format!("{}: {r}", t.id))))
                .action("logs", format!("skiff logs {svc}"), false, Safety::ReadOnly, 0.7),
            );
        }
        if !h.is_empty()
            && s.active_operation.is_none()
            && let Ok(w) = p.traffic().weights(svc).await
        {
            let ours: u32 = w.iter().filter(|w| w.target_group == group).map(|w| w.weight).sum();
            let total: u32 = w.iter().map(|w| w.weight).sum();
            if total == 0 || ours * 100 / total.max(1) != 100 {
                out.push(repair(
                    Finding::new(
                        Code::Drifted,
                        &subject,
                        format!("the load balancer does not send all traffic to {release}"),
                    )
                    .fact(format!(
                        "weights: {}",
                        if w.is_empty() {
                            "none".to_owned()
                        } else {
                            w.iter().map(|x| format!("{} {}%", x.target_group, x.weight)).collect::<Vec<_>>().join(", ")
                        }
                    ))
                    .fact("no operation is changing them"),
                ));
            }
        }
    }
    out
}
