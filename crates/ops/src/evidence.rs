//! `skiff debug collect SERVICE`: what someone debugging a service looks at, in one
//! bundle — the service's pointer document, its current release with its provenance,
//! the member documents of its instances, its recent operations with their events,
//! recent logs of every instance, traffic metrics, doctor's findings and a fresh
//! reconcile verdict. Secrets are redacted (credentials in URLs, `password=`-like
//! pairs, bearer tokens, AWS keys, private keys); values Skiff never reads cannot leak.
//! The bundle is stored as an immutable blob (`blobs/sha256/<digest>`), named in the
//! audit log, and optionally written to a local file. The incident saga collects the
//! same bundle as its first step's evidence.

use std::path::PathBuf;
use std::sync::LazyLock;

use regex::Regex;
use serde_json::{Value, json};
use skiff_clock::Clock as _;
use skiff_pluginapi::{LogQuery, Provider};
use skiff_sdk::{Answer, Code, Envelope, Safety};
use skiff_state::Ledger;
use skiff_state::docs::{RunnerDetail, ServiceState};

use crate::context::Context;
use crate::error::{Result, plural};

/// The kind of a stored bundle.
pub(crate) const KIND: &str = "skiff.evidence";
/// Operations of the service in a bundle, newest first.
const OPERATIONS: usize = 5;
/// Events per operation (its last ones).
const EVENTS: usize = 200;
/// Log lines of the service (its last ones).
const LOG_LINES: usize = 500;

/// A collected bundle and where it is kept.
pub(crate) struct Collected {
    /// The bundle.
    pub(crate) bundle: Value,
    /// Its sha256 (`blobs/sha256/<digest>`).
    pub(crate) digest: String,
}

static PATTERNS: LazyLock<Vec<(Regex, &'static str)>> = LazyLock::new(|| {
    [
        // scheme://user:password@host
        (r"(?P<pre>[a-zA-Z][a-zA-Z0-9+.-]*://[^:/@\s]+:)[^@\s/]+@", "${pre}[REDACTED]@"),
        // password=..., "token": "...", api_key: ...
        (
            r#"(?i)(?P<pre>(?:password|passwd|secret|token|api[_-]?key|access[_-]?key)"?\s*[:=]\s*"?)[^\s"&,;]+"#,
            "${pre}[REDACTED]",
        ),
        (r"(?i)(?P<pre>bearer\s+)[A-Za-z0-9._~+/=-]+", "${pre}[REDACTED]"),
        (r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b", "[REDACTED AWS KEY]"),
        (r"-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?-----END [A-Z ]*PRIVATE KEY-----", "[REDACTED PRIVATE KEY]"),
    ]
    .into_iter()
    .filter_map(|(p, r)| Regex::new(p).ok().map(|re| (re, r)))
    .collect()
});

/// `text` with every secret-looking value replaced.
pub(crate) fn redact(text: &str) -> String {
    PATTERNS.iter().fold(text.to_owned(), |t, (re, with)| re.replace_all(&t, *with).into_owned())
}

/// Every string of `v` redacted.
fn redact_all(v: Value) -> Value {
    match v {
        Value::String(s) => Value::String(redact(&s)),
        Value::Array(a) => Value::Array(a.into_iter().map(redact_all).collect()),
        Value::Object(o) => Value::Object(o.into_iter().map(|(k, v)| (k, redact_all(v))).collect()),
        other => other,
    }
}

/// The bundle of `service` (not stored yet).
pub(crate) async fn gather(ctx: &Context, ledger: &Ledger, provider: &dyn Provider, state: &ServiceState) -> Value {
    let service = &state.service;
    let now = skiff_clock::SystemClock.now_ms();
    let release = match &state.current_release {
        Some(r) => ledger.store().get(&skiff_state::keys::release(service, r)).await.ok().flatten(),
        None => None,
    };
    let manifest: Option<Value> = release.and_then(|o| serde_json::from_slice(&o.bytes).ok());
    let provenance = match manifest.as_ref().and_then(|m| m["provenance"].as_str()) {
        Some(d) => ledger.get_blob(d).await.ok().and_then(|b| serde_json::from_slice::<Value>(&b).ok()),
        None => None,
    };
    let members = ledger.members::<RunnerDetail>(service).await.unwrap_or_default();
    let index = ledger.rebuild_index().await.ok();
    let mut ops: Vec<(String, skiff_state::OperationEntry)> = index
        .map(|i| i.operations.into_iter().filter(|(_, o)| o.service.as_deref() == Some(service)).collect())
        .unwrap_or_default();
    ops.sort_by(|a, b| b.1.updated_at_ms.cmp(&a.1.updated_at_ms).then(a.0.cmp(&b.0)));
    let mut operations = Vec::new();
    for (id, o) in ops.into_iter().take(OPERATIONS) {
        let events = ledger.events_after(&id, 0).await.unwrap_or_default();
        let tail = &events[events.len().saturating_sub(EVENTS)..];
        operations.push(json!({"op_id": id, "saga": o.saga, "status": o.status, "events": tail}));
    }
    let logs = provider
        .logs()
        .read(&LogQuery { service: service.clone(), instance: None, since_ms: None, limit: Some(LOG_LINES) })
        .await
        .map(|lines| {
            lines.iter().map(|l| json!({"at_ms": l.at_ms, "instance": l.instance, "line": l.line})).collect::<Vec<_>>()
        })
        .unwrap_or_else(|e| vec![json!({"error": e.message})]);
    let view = crate::observe::view(ledger, provider, state).await;
    let mut traffic = Vec::new();
    for w in &view.weights {
        let st = provider.traffic().stats(&w.target_group).await.unwrap_or_default();
        traffic.push(json!({
            "target_group": w.target_group, "weight": w.weight, "requests": st.requests, "errors": st.errors,
            "error_rate": st.error_rate(), "p95_ms": st.percentile_ms(0.95),
        }));
    }
    let findings = crate::doctor::findings(ctx, ledger, Some(service.clone())).await;
    let reconcile = skiff_steps::reconcile::reconcile(ledger, provider, service, &ctx.actor())
        .await
        .map_or_else(|e| json!({"error": e.to_string()}), |d| json!(d));
    redact_all(json!({
        "kind": KIND,
        "schema_version": 1,
        "service": service,
        "collected_at": skiff_clock::Utc::from_ms(now).rfc3339(),
        "collected_by": ctx.actor(),
        "provider": provider.name(),
        "state": state,
        "release": {"manifest": manifest, "provenance": provenance},
        "members": members,
        "operations": operations,
        "logs": logs,
        "metrics": {"service": view.service, "instances_healthy": view.instances_healthy,
            "instances_total": view.instances_total, "members": view.members, "target_groups": traffic},
        "doctor": findings,
        "reconcile": reconcile,
    }))
}

/// Stores `bundle` as a blob and audits it.
pub(crate) async fn store(ctx: &Context, ledger: &Ledger, service: &str, bundle: Value) -> Result<Collected> {
    let bytes = serde_json::to_vec_pretty(&bundle).unwrap_or_default();
    let digest = ledger.put_blob(bytes).await.map_err(|e| crate::error::state(&e))?;
    ledger
        .audit(
            &ctx.actor(),
            "debug.collect",
            service,
            Code::Ok,
            json!({"digest": digest, "key": skiff_state::keys::blob(&digest)}),
        )
        .await
        .map_err(|e| crate::error::state(&e))?;
    Ok(Collected { bundle, digest })
}

/// What a bundle holds, counted.
pub(crate) fn counts(bundle: &Value) -> Vec<String> {
    let n = |k: &str| bundle[k].as_array().map_or(0, Vec::len);
    let events: usize =
        bundle["operations"].as_array().into_iter().flatten().map(|o| o["events"].as_array().map_or(0, Vec::len)).sum();
    vec![
        plural(n("operations"), "operation"),
        plural(events, "event"),
        plural(n("logs"), "log line"),
        plural(n("members"), "member document"),
        plural(n("doctor"), "finding"),
        format!("reconcile {}", bundle["reconcile"]["status"].as_str().unwrap_or("not run")),
    ]
}

/// `skiff debug collect SERVICE [--out FILE]`.
pub(crate) async fn collect(ctx: &Context, service: &str, out: Option<PathBuf>) -> Result<Answer> {
    let (_, ledger) = ctx.ledger()?;
    let state = crate::lookup::service(&ledger, service).await?;
    let provider = crate::factory::provider(ctx, &ledger).await?;
    let bundle = gather(ctx, &ledger, provider.as_ref(), &state).await;
    let c = store(ctx, &ledger, service, bundle).await?;
    let key = skiff_state::keys::blob(&c.digest);
    let mut env = Envelope::ok(format!("collected evidence for {service}: {}", counts(&c.bundle).join(", ")))
        .fact(format!("stored as {key} (sha256 {})", c.digest))
        .fact("secrets are redacted: credentials in URLs, password/token/key values, bearer tokens, AWS keys, private keys");
    if let Some(path) = &out {
        write(ctx, path, &c.bundle)?;
        env = env.fact(format!("written to {}", path.display()));
    }
    env = env
        .data(json!({"service": service, "digest": c.digest, "key": key, "counts": counts(&c.bundle),
            "bundle": c.bundle}))
        .action("doctor", format!("skiff doctor {service}"), false, Safety::ReadOnly, 0.6)
        .action("incident", format!("skiff repair incident {service} --yes"), true, Safety::Reversible, 0.5);
    Ok(env.into())
}

/// Writes a bundle to `path` (relative to the working directory).
pub(crate) fn write(ctx: &Context, path: &std::path::Path, bundle: &Value) -> Result<()> {
    let file = ctx.cwd.join(path);
    std::fs::write(&file, serde_json::to_vec_pretty(bundle).unwrap_or_default()).map_err(|e| {
        crate::error::Error::from(
            Envelope::failure(Code::IoError, format!("cannot write {}", file.display()))
                .fact(e.to_string())
                .fact("the bundle is kept in the ledger: `skiff audit` names its digest"),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn credentials_tokens_and_keys_are_redacted() {
        let cases = [
            ("postgres://app:hunter2@db:5432/x", "postgres://app:[REDACTED]@db:5432/x"),
            ("connecting with password=s3cr3t now", "connecting with password=[REDACTED] now"),
            (r#"{"token": "abc.def"}"#, r#"{"token": "[REDACTED]"}"#),
            ("Authorization: Bearer eyJhbGc.x.y", "Authorization: Bearer [REDACTED]"),
            ("key AKIAABCDEFGHIJKLMNOP used", "key [REDACTED AWS KEY] used"),
            ("GET /healthz 200", "GET /healthz 200"),
        ];
        for (input, want) in cases {
            assert_eq!(redact(input), want, "{input}");
        }
        let pem = "a\n-----BEGIN PRIVATE KEY-----\nMIIB\n-----END PRIVATE KEY-----\nb";
        assert_eq!(redact(pem), "a\n[REDACTED PRIVATE KEY]\nb");
    }
}
