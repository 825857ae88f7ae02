//! `skiff doctor [SERVICE]`: every problem the doctor finds, as facts and actions.

use skiff_clock::Clock as _;
use skiff_doctor::{Finding, Inputs, KeyCheck};
use skiff_sdk::config::ProviderKind;
use skiff_sdk::{Code, Envelope};

use crate::{Ctx, Outcome};

/// A running operation with no event for this long is stuck (`$SKIFF_DOCTOR_STUCK_AFTER_MS`).
const STUCK_AFTER_MS: u64 = 15 * 60 * 1000;
/// A heartbeat older than this (runners beat every 2 s) is stale.
const HEARTBEAT_STALE_MS: u64 = 30_000;

pub(crate) fn run(ctx: &Ctx, service: Option<String>) -> Outcome {
    let key = {
        let p = super::keys::private_key_path(ctx);
        if p.exists() { KeyCheck::Present } else { KeyCheck::Missing(p.display().to_string()) }
    };
    let (_, resolved) = match ctx.resolve() {
        Ok(r) => r,
        Err(o) => return *o,
    };
    let reachable = match resolved.provider.value {
        ProviderKind::Local => match super::local::local_dir(ctx).and_then(|d| super::local::running(ctx, &d)) {
            Ok(true) => Ok(()),
            Ok(false) => {
                Err("the local supervisor is not running: instances are not supervised and load balancers are down"
                    .to_owned())
            }
            Err(o) => return *o,
        },
        _ => Ok(()),
    };
    super::block_on(ctx, |ledger, _| async move {
        let provider = super::deploy::provider(ctx, &ledger).map_err(|o| o.envelope.summary.clone());
        let provider_ref = match (&provider, &reachable) {
            (Ok(p), Ok(())) => Ok(p.as_ref()),
            (Err(e), _) | (_, Err(e)) => Err(e.clone()),
        };
        let inputs = Inputs {
            ledger: &ledger,
            provider: provider_ref,
            key,
            service: service.clone(),
            now_ms: skiff_clock::SystemClock.now_ms(),
            stuck_after_ms: (ctx.env)("SKIFF_DOCTOR_STUCK_AFTER_MS")
                .and_then(|v| v.parse().ok())
                .unwrap_or(STUCK_AFTER_MS),
            heartbeat_stale_ms: HEARTBEAT_STALE_MS,
        };
        let findings = skiff_doctor::diagnose(&inputs).await;
        outcome(service.as_deref(), &findings)
    })
}

fn outcome(service: Option<&str>, findings: &[Finding]) -> Outcome {
    let scope = service.map_or_else(|| "everything".to_owned(), |s| format!("{s}, the bucket and keys"));
    let Some(first) = findings.first() else {
        return Envelope::ok(format!("no problems found in {scope}")).data(serde_json::json!({"findings": []})).into();
    };
    let mut env = Envelope::failure(
        first.code,
        format!(
            "{} in {scope}: {}",
            super::plural(u64::try_from(findings.len()).unwrap_or(0), "finding"),
            first.summary
        ),
    );
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
    for a in findings.iter().flat_map(|f| f.actions.iter()) {
        if seen.insert(a.command.clone()) {
            env = env.action(&a.id, a.command.clone(), a.mutating, a.safety, a.confidence);
        }
    }
    env.ok = first.code == Code::Ok;
    Outcome {
        body_replaces_facts: true,
        ..Outcome::from(env.data(serde_json::json!({"findings": findings}))).body(body)
    }
}
