//! `skiff doctor [SERVICE]`: every problem the doctor finds, as facts and actions.

use skiff_clock::Clock as _;
use skiff_doctor::{Finding, Inputs, KeyCheck};
use skiff_sdk::config::ProviderKind;
use skiff_sdk::{Answer, Code, Envelope};

use crate::context::Context;
use crate::error::{Result, plural};

/// A running operation with no event for this long is stuck (`$SKIFF_DOCTOR_STUCK_AFTER_MS`).
const STUCK_AFTER_MS: u64 = 15 * 60 * 1000;
/// A heartbeat older than this (runners beat every 2 s) is stale.
const HEARTBEAT_STALE_MS: u64 = 30_000;

pub(crate) async fn run(ctx: &Context, service: Option<String>) -> Result<Answer> {
    if let Some(s) = &service {
        let (_, ledger) = ctx.ledger()?;
        if !crate::lookup::service_known(&ledger, s).await? {
            return Err(crate::lookup::no_service(&ledger, s));
        }
    }
    let (_, ledger) = ctx.ledger()?;
    let findings = findings(ctx, &ledger, service.clone()).await;
    Ok(outcome(service.as_deref(), &findings))
}

/// Doctor's findings for `service` (or everything).
pub(crate) async fn findings(ctx: &Context, ledger: &skiff_state::Ledger, service: Option<String>) -> Vec<Finding> {
    let key = {
        let p = ctx.private_key_path();
        if p.exists() { KeyCheck::Present } else { KeyCheck::Missing(p.display().to_string()) }
    };
    let reachable = match ctx.resolve().map(|(_, r)| r.provider.value) {
        Ok(ProviderKind::Local) => match crate::factory::local_dir(ctx) {
            Ok(dir) if crate::local::running(&dir).await.unwrap_or(false) => Ok(()),
            _ => Err("the local supervisor is not running: instances are not supervised and load balancers are down"
                .to_owned()),
        },
        _ => Ok(()),
    };
    let provider = crate::factory::provider(ctx, ledger).await.map_err(|e| e.envelope().summary.clone());
    let provider_ref = match (&provider, &reachable) {
        (Ok(p), Ok(())) => Ok(p.as_ref()),
        (Err(e), _) | (_, Err(e)) => Err(e.clone()),
    };
    let inputs = Inputs {
        ledger,
        provider: provider_ref,
        key,
        service,
        now_ms: skiff_clock::SystemClock.now_ms(),
        stuck_after_ms: skiff_settings::DOCTOR_STUCK_AFTER_MS.parse(|k| ctx.env.get(k)).unwrap_or(STUCK_AFTER_MS),
        heartbeat_stale_ms: HEARTBEAT_STALE_MS,
        // Three passes missed, and never less than a minute.
        autoscale_stale_ms: (3 * crate::autoscale::poll(ctx).as_millis()).try_into().unwrap_or(u64::MAX).max(60_000),
    };
    let mut found = skiff_doctor::diagnose(&inputs).await;
    let services = match &inputs.service {
        Some(s) => vec![s.clone()],
        None => crate::worker::services(ctx).await.unwrap_or_default(),
    };
    found.extend(crate::plugin::findings(ctx, ledger.clock().clone(), &services, &ledger.url()).await);
    found
}

/// The services whose findings an incident repair addresses: unhealthy or crash-looping
/// instances, drift, an operation stuck on the service asked about.
fn incident_services(service: Option<&str>, findings: &[Finding]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for f in findings {
        let named = if let Some(s) = f.subject.strip_prefix("service ") {
            matches!(f.code, Code::Unhealthy | Code::Drifted).then(|| s.to_owned())
        } else if let Some(rest) = f.subject.strip_prefix("instance ") {
            (f.code == Code::Unhealthy)
                .then(|| rest.split_once(" of ").map(|(_, s)| s.split(' ').next().unwrap_or(s).to_owned()))
                .flatten()
        } else if f.subject.starts_with("operation ") && f.code == Code::LeaseHeld {
            service.map(str::to_owned)
        } else {
            None
        };
        if let Some(s) = named.filter(|s| !out.contains(s)) {
            out.push(s);
        }
    }
    out
}

fn outcome(service: Option<&str>, findings: &[Finding]) -> Answer {
    let scope = service.map_or_else(|| "everything".to_owned(), |s| format!("{s}, the bucket and keys"));
    let Some(first) = findings.first() else {
        return Envelope::ok(format!("no problems found in {scope}")).data(serde_json::json!({"findings": []})).into();
    };
    let mut env =
        Envelope::failure(first.code, format!("{} in {scope}: {}", plural(findings.len(), "finding"), first.summary));
    let mut body = String::new();
    for f in findings {
        env = env.fact(format!("{}: {}: {}", f.code, f.subject, f.summary));
        body.push_str(&format!("✗ {} — {}\n", f.code, f.summary));
        for fact in &f.facts {
            body.push_str(&format!("    • {fact}\n"));
        }
        for a in &f.actions {
            body.push_str(&format!("    $ {}{}\n", a.command, if a.mutating { "  (changes state)" } else { "" }));
        }
    }
    let mut seen = std::collections::BTreeSet::new();
    // A service that is unwell gets its incident repair first: it collects evidence and
    // runs the reversible remediations these findings point to.
    for svc in incident_services(service, findings) {
        let command = format!("skiff repair incident {svc} --yes");
        seen.insert(command.clone());
        env = env.action(&format!("incident-{svc}"), command, true, skiff_sdk::Safety::Reversible, 0.8);
    }
    for a in findings.iter().flat_map(|f| f.actions.iter()) {
        if seen.insert(a.command.clone()) {
            env = env.action(&a.id, a.command.clone(), a.mutating, a.safety, a.confidence);
        }
    }
    env.ok = first.code == Code::Ok;
    Answer::from(env.data(serde_json::json!({"findings": findings}))).body(body).body_replaces_facts()
}
