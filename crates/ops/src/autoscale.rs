//! Queue-driven autoscaling of a service's current group (`scale.queue` in the spec).
//!
//! One pass ([`tick`]) reads the queue's backlog, lets [`skiff_autoscale::decide`] pick
//! the count from it and the last change (kept in `services/<svc>/autoscale.json`,
//! compare-and-swap, so every autoscaler shares one cooldown), records the decision,
//! then sets the group's size. Recording first means a crash between the two leaves a
//! group whose size differs from the record, which the next pass sets again. Scaling in
//! lowers the group's size; the provider stops the newest instances with SIGTERM and
//! the runner lets each finish its job (`rollout.drain_timeout`). The passes run in the
//! local supervisor's process and in `skiff-worker`, every `SKIFF_AUTOSCALE_POLL_MS`.
//! The queue's URL is read from the local provider's secret store; on a cloud the
//! secrets resolve on the instances only, so this is the local provider's for now.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use skiff_autoscale::{Backlog, Direction, Policy};
use skiff_ir::{QueueIr, ServiceIr};
use skiff_pluginapi::Provider;
use skiff_sdk::{Code, Envelope, Safety};
use skiff_state::Ledger;
use skiff_state::docs::AutoscaleDoc;

use crate::{Answer, Context, Result};

/// The most one reading of a queue may take.
const READ_DEADLINE: Duration = Duration::from_secs(5);

/// The pause between passes: `SKIFF_AUTOSCALE_POLL_MS`, default 5 s.
pub fn poll(ctx: &Context) -> Duration {
    Duration::from_millis(skiff_settings::AUTOSCALE_POLL_MS.parse(|k| ctx.env.get(k)).unwrap_or(5_000).max(100))
}

/// What a queue-scaled service runs: its current release's group and queue.
struct Target {
    ir: ServiceIr,
    queue: QueueIr,
    group: String,
}

impl Target {
    /// The bounds and pace the spec gives.
    fn policy(&self) -> Policy {
        Policy {
            min: self.ir.capacity.min,
            max: self.ir.capacity.max,
            target_per_instance: self.queue.target_per_instance,
            cooldown_ms: self.queue.cooldown_ms,
        }
    }
}

async fn target(ledger: &Ledger, service: &str) -> Result<Option<Target>> {
    let state = crate::lookup::service(ledger, service).await?;
    let (Some(release), Some(digest)) = (&state.current_release, &state.spec_digest) else { return Ok(None) };
    let ir: ServiceIr = ledger.get_spec(digest).await.map_err(|e| crate::error::state(&e))?;
    let Some(queue) = ir.capacity.queue.clone() else { return Ok(None) };
    Ok(Some(Target { group: skiff_steps::deploy::group_name(service, release), ir, queue }))
}

/// The queue database's URL, from the local provider's secret store.
async fn queue_url(ctx: &Context, provider: &dyn Provider, q: &QueueIr) -> Result<String> {
    let (_, resolved) = ctx.resolve()?;
    if resolved.provider.value != skiff_sdk::config::ProviderKind::Local {
        return Err(Envelope::failure(
            Code::ProviderError,
            format!("queue autoscaling reads database {}'s URL from the local secret store", q.database),
        )
        .fact(format!("the {:?} provider's secrets are resolved on its instances only", resolved.provider.value))
        .into());
    }
    let reference = match provider.database().connection(&q.database).await {
        Ok(c) => c.url_ref,
        Err(_) => format!("secret://{}/url", q.database),
    };
    let dir = crate::factory::local_dir(ctx)?;
    match skiff_secrets::LocalSecrets::new(dir.secrets()).get(&reference) {
        Ok(Some(url)) => Ok(url),
        Ok(None) => Err(Envelope::failure(Code::NotFound, format!("the queue's database URL {reference} is not set"))
            .fact(format!("scale.queue reads its backlog from database {}", q.database))
            .action("deploy", "skiff deploy --yes", true, Safety::Reversible, 0.5)
            .into()),
        Err(e) => Err(Envelope::failure(Code::IoError, format!("the queue's database URL {reference} cannot be read"))
            .fact(e.to_string())
            .into()),
    }
}

async fn read(ctx: &Context, ledger: &Ledger, provider: &dyn Provider, q: &QueueIr) -> Result<Backlog> {
    let url = queue_url(ctx, provider, q).await?;
    skiff_autoscale::read_backlog(ledger.clock(), &url, &q.query, READ_DEADLINE).await.map_err(|m| {
        Envelope::failure(Code::ProviderError, format!("the queue in database {} could not be read", q.database))
            .fact(m)
            .fact(format!("query: {}", q.query))
            .into()
    })
}

/// One pass for `service`: read, decide, record, resize. `None` when the service does
/// not scale from a queue (or has no release yet).
pub async fn tick(ctx: &Context, service: &str) -> Result<Option<AutoscaleDoc>> {
    let (_, ledger) = ctx.ledger()?;
    let Some(t) = target(&ledger, service).await? else { return Ok(None) };
    let provider = crate::factory::provider(ctx, &ledger).await?;
    let compute = provider.compute();
    let Some(group) =
        compute.describe_group(&t.group).await.map_err(|e| crate::error::provider("describe group", &e))?
    else {
        return Ok(None);
    };
    let backlog = read(ctx, &ledger, provider.as_ref(), &t.queue).await?;
    let policy = t.policy();
    let now = ledger.clock().now_ms();
    let key = skiff_state::keys::service_autoscale(service);
    let doc = ledger
        .update::<AutoscaleDoc, _>(&key, |current| {
            let last = current
                .and_then(|d| d.last_change.as_ref())
                .and_then(|(at, dir)| Direction::parse(dir).map(|d| (*at, d)));
            let d = skiff_autoscale::decide(&policy, group.desired, backlog.jobs, last, now);
            let last_change = match d.change {
                Some(dir) => Some((now, dir.as_str().to_owned())),
                None => current.and_then(|c| c.last_change.clone()),
            };
            Ok(skiff_state::Update::Write(AutoscaleDoc {
                cas: current.map(|c| c.cas.clone()).unwrap_or_default(),
                service: service.to_owned(),
                group: t.group.clone(),
                desired: d.desired,
                backlog: backlog.jobs,
                oldest_age_s: backlog.oldest_age_s,
                observed_ms: now,
                last_change,
                reason: d.reason,
            }))
        })
        .await
        .map_err(|e| crate::error::state(&e))?;
    if doc.desired != group.desired {
        compute
            .set_desired(&t.group, doc.desired)
            .await
            .map_err(|e| crate::error::provider("set the group's size", &e))?;
    }
    Ok(Some(doc))
}

/// One pass over every service; each service's outcome (skipped ones left out).
pub async fn tick_all(ctx: &Context) -> Vec<(String, Result<AutoscaleDoc>)> {
    let services = match crate::worker::services(ctx).await {
        Ok(s) => s,
        Err(e) => return vec![(String::new(), Err(e))],
    };
    let mut out = Vec::new();
    for s in services {
        match tick(ctx, &s).await {
            Ok(Some(doc)) => out.push((s, Ok(doc))),
            Ok(None) => {}
            Err(e) => out.push((s, Err(e))),
        }
    }
    out
}

/// Runs a pass over every service each [`poll`] until the process stops; `on` sees each
/// outcome (the caller logs them).
pub async fn run(ctx: &Context, mut on: impl FnMut(&str, &Result<AutoscaleDoc>)) {
    let clock: Arc<dyn skiff_clock::Clock> = match ctx.ledger() {
        Ok((_, l)) => l.clock().clone(),
        Err(_) => Arc::new(skiff_clock::SystemClock),
    };
    loop {
        for (service, outcome) in tick_all(ctx).await {
            on(&service, &outcome);
        }
        clock.sleep(poll(ctx)).await;
    }
}

fn age(seconds: Option<f64>) -> String {
    seconds.map_or_else(|| "-".to_owned(), |s| format!("{s:.1}s"))
}

/// `skiff metrics SERVICE queue-lag`: the backlog and its oldest job's age read now,
/// the instance count and what the autoscaler last decided.
pub(crate) async fn queue_lag(ctx: &Context, service: &str) -> Result<Answer> {
    let (_, ledger) = ctx.ledger()?;
    let Some(t) = target(&ledger, service).await? else {
        return Err(Envelope::failure(Code::NotFound, format!("{service} does not scale from a queue"))
            .fact("its current release's spec has no `scale.queue`")
            .action("metrics", format!("skiff metrics {service}"), false, Safety::ReadOnly, 0.5)
            .into());
    };
    let provider = crate::factory::provider(ctx, &ledger).await?;
    let backlog = read(ctx, &ledger, provider.as_ref(), &t.queue).await?;
    let group =
        provider.compute().describe_group(&t.group).await.map_err(|e| crate::error::provider("describe group", &e))?;
    let (desired, running) = group.as_ref().map_or((0, 0), |g| (g.desired, g.running().len()));
    let last: Option<AutoscaleDoc> =
        ledger.read(&skiff_state::keys::service_autoscale(service)).await.map_err(|e| crate::error::state(&e))?;
    let policy = t.policy();
    let wanted = skiff_autoscale::wanted(&policy, backlog.jobs);
    let mut body = String::new();
    let _ = writeln!(body, "backlog       {} jobs waiting, oldest {}", backlog.jobs, age(backlog.oldest_age_s));
    let _ = writeln!(body, "instances     {running} running, {desired} desired, {wanted} wanted by the backlog");
    let _ = writeln!(
        body,
        "policy        ⌈backlog ÷ {}⌉ within {}..={}, cooldown {}s",
        policy.target_per_instance,
        policy.min,
        policy.max,
        policy.cooldown_ms / 1000
    );
    if let Some(d) = &last {
        let _ = writeln!(body, "last decision {}", d.reason);
    }
    let env = Envelope::ok(format!(
        "{service}: {} jobs waiting (oldest {}), {running} of {desired} instances running",
        backlog.jobs,
        age(backlog.oldest_age_s)
    ))
    .fact(format!("queue: database {}, {}", t.queue.database, t.queue.query))
    .data(serde_json::json!({
        "service": service,
        "group": t.group,
        "backlog": backlog.jobs,
        "oldest_age_s": backlog.oldest_age_s,
        "desired": desired,
        "running": running,
        "wanted": wanted,
        "min": policy.min,
        "max": policy.max,
        "target_per_instance": policy.target_per_instance,
        "cooldown_ms": policy.cooldown_ms,
        "last_decision": last.map(|d| serde_json::json!({
            "desired": d.desired, "backlog": d.backlog, "observed_ms": d.observed_ms,
            "last_change": d.last_change, "reason": d.reason,
        })),
    }));
    Ok(Answer::from(env).body(body))
}
