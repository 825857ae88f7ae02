//! `skiff-plugin-mtls`: the mTLS plugin. A service with `network: {mtls: true}` gets
//! mutual TLS between services, with no cluster and no sidecar to run:
//!
//! - **`mtls.mesh`** (runtime addon, what `network.mtls` stands for): puts the mesh
//!   in the release — the environment (`SKIFF_MESH`), the upstreams, the certificate
//!   lifetime, and the references of the environment's CA (`SKIFF_MESH_CA_CERT`,
//!   `SKIFF_MESH_CA_KEY`, resolved only on the instance and never given to the
//!   program) — and adds the `mtls.ca` hook before any instance starts.
//! - **`mtls.ca`** (step): the environment's CA, made once (P-256, a year) and kept
//!   in the local secret store, encrypted like every secret there; a resume finds it
//!   and makes nothing. Its compensation keeps it: other services trust it.
//! - **`mtls.expiry`** (doctor check): a member whose certificate is past its
//!   renewal and near its end (its runner stopped renewing), and a CA in its last
//!   thirty days.
//!
//! The runner does the rest (`skiff-mesh`): a certificate per instance at start,
//! renewed two thirds into its life, the mesh port, and the upstreams' ports.

use std::collections::BTreeMap;
use std::process::ExitCode;

use async_trait::async_trait;
use serde::Deserialize;
use skiff_mesh::Ca;
use skiff_plugin::{Addon, AddonAnswer, AddonHook, Check, CheckContext, Plugin};
use skiff_sagaapi::{Finding, Risk, Safety, Step, StepCode, StepContext, StepError, StepPlan, StepRequest, StepResult};
use skiff_secrets::LocalSecrets;

/// The environment a spec without `environment:` deploys to.
const DEFAULT_ENVIRONMENT: &str = "production";
/// A CA this close to its end is reported.
const CA_WARNING_MS: u64 = 30 * 86_400_000;
/// Members whose heartbeat is older than this are gone, not failing to renew.
const STALE_MS: u64 = 5 * 60_000;

#[tokio::main]
async fn main() -> ExitCode {
    Plugin::new("mtls", env!("CARGO_PKG_VERSION"))
        .addon("mtls.mesh", Mesh)
        .step(CaStep)
        .check("mtls.expiry", Expiry)
        .serve()
        .await
}

struct Mesh;

#[async_trait]
impl Addon for Mesh {
    async fn apply(&self, spec: &serde_json::Value, with: &BTreeMap<String, String>) -> AddonAnswer {
        let mut answer = AddonAnswer::default();
        for key in with.keys() {
            answer.problems.push(format!("mtls.mesh takes no `with`, not `{key}`: set `network` in the spec"));
        }
        let spec: skiff_spec::Spec = match serde_json::from_value(spec.clone()) {
            Ok(s) => s,
            Err(e) => {
                answer.problems.push(format!("the spec does not read as a spec: {e}"));
                return answer;
            }
        };
        let network = spec.network.clone().unwrap_or_default();
        let environment = spec.environment.as_ref().map_or(DEFAULT_ENVIRONMENT, |e| e.as_str()).to_owned();
        answer.env.insert("SKIFF_MESH".to_owned(), environment.clone());
        if !network.upstreams.is_empty() {
            let list: Vec<&str> = network.upstreams.iter().map(|u| u.as_str()).collect();
            answer.env.insert("SKIFF_MESH_UPSTREAMS".to_owned(), list.join(","));
        }
        if let Some(ttl) = network.certificate_ttl {
            answer.env.insert("SKIFF_MESH_TTL_SECS".to_owned(), (ttl.as_millis() / 1000).to_string());
        }
        let (cert, key) = skiff_mesh::ca_secrets(&environment);
        answer.secrets.insert("SKIFF_MESH_CA_CERT".to_owned(), cert);
        answer.secrets.insert("SKIFF_MESH_CA_KEY".to_owned(), key);
        answer.hooks.push(AddonHook {
            step: "mtls.ca".to_owned(),
            at: "before_start".to_owned(),
            with: BTreeMap::from([("environment".to_owned(), environment)]),
        });
        answer
    }
}

#[derive(Deserialize)]
struct Params {
    #[serde(default)]
    with: BTreeMap<String, String>,
}

struct CaStep;

impl CaStep {
    fn environment(req: &StepRequest) -> Result<String, StepError> {
        let p = req.params_as::<Params>()?;
        p.with.get("environment").cloned().ok_or_else(|| {
            StepError::terminal(StepCode::SpecInvalid, "mtls.ca needs `with: {environment: NAME}`".to_owned())
        })
    }

    /// The ensured CA: found whole, or made now.
    fn ensure(ctx: &StepContext, environment: &str) -> Result<StepResult, StepError> {
        let store = store()?;
        let (cert_ref, key_ref) = skiff_mesh::ca_secrets(environment);
        let failed = |e: skiff_secrets::SecretError| StepError::retryable(StepCode::ProviderError, e.to_string());
        if let (Some(cert), Some(key)) = (store.get(&cert_ref).map_err(failed)?, store.get(&key_ref).map_err(failed)?) {
            let ca = Ca::from_pem(&cert, &key).map_err(|e| {
                StepError::terminal(
                    StepCode::OperationFailed,
                    format!("the CA of {environment} in the secret store is unusable: {e}"),
                )
            })?;
            let outputs =
                serde_json::json!({"environment": environment, "created": false, "not_after_ms": ca.not_after_ms()});
            return Ok(StepResult::new(format!("the CA of {environment} is in place"), outputs));
        }
        let ca = Ca::generate(environment, ctx.now_ms())
            .map_err(|e| StepError::terminal(StepCode::Internal, format!("cannot make a CA: {e}")))?;
        // The key first: a crash between the two leaves no certificate, so the next
        // attempt makes the pair again rather than trusting half of one.
        store.put(&key_ref, ca.key_pem()).map_err(failed)?;
        store.put(&cert_ref, ca.cert_pem()).map_err(failed)?;
        let outputs =
            serde_json::json!({"environment": environment, "created": true, "not_after_ms": ca.not_after_ms()});
        Ok(StepResult::new(format!("made the CA of {environment}, kept in the secret store"), outputs))
    }
}

/// The local secret store Skiff tells its plugins about (`SKIFF_SECRETS=local:DIR`).
fn store() -> Result<LocalSecrets, StepError> {
    match std::env::var("SKIFF_SECRETS").ok().as_deref().and_then(|s| s.strip_prefix("local:")) {
        Some(dir) => Ok(LocalSecrets::new(dir)),
        None => Err(StepError::terminal(
            StepCode::OperationFailed,
            "the mTLS plugin keeps its CA in the local secret store, and Skiff named none: \
             the mesh runs on the local provider in this build"
                .to_owned(),
        )),
    }
}

#[async_trait]
impl Step for CaStep {
    fn kind(&self) -> &str {
        "mtls.ca"
    }

    async fn plan(&self, _: &StepContext, req: &StepRequest) -> Result<StepPlan, StepError> {
        let environment = Self::environment(req)?;
        let (_, key) = skiff_mesh::ca_secrets(&environment);
        Ok(StepPlan {
            description: format!("make sure {environment} has its mesh CA (made once, its key kept encrypted)"),
            safety: Safety::Reversible,
            risk: Risk::Low,
            expected_duration_ms: 50,
            affected_resources: vec![key],
        })
    }

    async fn run(&self, ctx: &StepContext, req: &StepRequest) -> Result<StepResult, StepError> {
        Self::ensure(ctx, &Self::environment(req)?)
    }

    async fn resume(&self, ctx: &StepContext, req: &StepRequest) -> Result<StepResult, StepError> {
        // The store is the record: a CA there was made by the attempt that crashed.
        self.run(ctx, req).await
    }

    async fn compensate(&self, _: &StepContext, req: &StepRequest, _: &StepResult) -> Result<StepResult, StepError> {
        let environment = Self::environment(req)?;
        Ok(StepResult::new(
            format!("kept the CA of {environment}: every service of the environment trusts it"),
            serde_json::json!({"environment": environment, "kept": true}),
        ))
    }
}

struct Expiry;

#[async_trait]
impl Check for Expiry {
    async fn check(&self, ctx: &CheckContext) -> Vec<Finding> {
        let mut out = Vec::new();
        let Some(state) = ctx.state.as_deref() else { return out };
        let Ok(ledger) = skiff_state::Ledger::open(state, &skiff_objstore::OpenOptions::default()) else { return out };
        let now = ctx.now_ms;
        let mut environments = std::collections::BTreeSet::new();
        for service in &ctx.services {
            let Ok(members) = ledger.members::<skiff_state::docs::RunnerDetail>(service).await else { continue };
            for m in members {
                let Some(mesh) = &m.detail.mesh else { continue };
                if let Some(env) = mesh.identity.strip_prefix("spiffe://skiff/").and_then(|r| r.split('/').next()) {
                    environments.insert(env.to_owned());
                }
                if let Some(f) = member_finding(service, &m.instance, m.updated_at_ms, mesh, now) {
                    out.push(f);
                }
            }
        }
        if let Ok(store) = store() {
            for env in environments {
                let (cert_ref, _) = skiff_mesh::ca_secrets(&env);
                let Ok(Some(cert)) = store.get(&cert_ref) else { continue };
                match skiff_mesh::not_after_ms(&cert) {
                    Ok(end) if end.saturating_sub(now) < CA_WARNING_MS => out.push(Finding {
                        code: "UNHEALTHY".to_owned(),
                        message: format!("the mesh CA of {env} ends in {}", left(end, now)),
                        facts: vec![format!("{cert_ref} is valid until {end} ms")],
                        fix: Some(format!(
                            "skiff secrets delete {cert_ref} and deploy each service of {env} again (a new CA)"
                        )),
                    }),
                    _ => {}
                }
            }
        }
        out
    }
}

/// A member past its renewal with less than a sixth of its certificate's life left.
fn member_finding(
    service: &str,
    instance: &str,
    heartbeat_ms: u64,
    mesh: &skiff_state::docs::MeshDetail,
    now: u64,
) -> Option<Finding> {
    if now.saturating_sub(heartbeat_ms) > STALE_MS {
        return None;
    }
    let life = mesh.not_after_ms.saturating_sub(mesh.issued_at_ms);
    let remaining = mesh.not_after_ms.saturating_sub(now);
    if remaining > life / 6 {
        return None;
    }
    let message = if remaining == 0 {
        format!("{service} instance {instance}: its mesh certificate expired: callers refuse it")
    } else {
        format!(
            "{service} instance {instance}: its mesh certificate ends in {} and was not renewed",
            left(mesh.not_after_ms, now)
        )
    };
    Some(Finding {
        code: "UNHEALTHY".to_owned(),
        message,
        facts: vec![
            format!("certificate {} of {}, issued at {} ms", mesh.serial, mesh.identity, mesh.issued_at_ms),
            "the runner renews two thirds into a certificate's life; its log says why it did not".to_owned(),
        ],
        fix: Some(format!("skiff logs {service} --instance {instance}")),
    })
}

fn left(end: u64, now: u64) -> String {
    let s = end.saturating_sub(now) / 1000;
    match s {
        0..120 => format!("{s}s"),
        120..7_200 => format!("{}m", s / 60),
        7_200..172_800 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86_400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use skiff_state::docs::MeshDetail;

    fn mesh(issued: u64, end: u64) -> MeshDetail {
        MeshDetail {
            address: "127.0.0.1:1".to_owned(),
            identity: "spiffe://skiff/prod/api".to_owned(),
            serial: "ab".to_owned(),
            issued_at_ms: issued,
            not_after_ms: end,
            issued: 1,
        }
    }

    #[test]
    fn a_certificate_is_reported_only_when_its_runner_is_alive_and_stopped_renewing() {
        let m = mesh(0, 60_000);
        // Before its renewal (40 s in) and just after: nothing.
        assert!(member_finding("api", "i-1", 30_000, &m, 30_000).is_none());
        assert!(member_finding("api", "i-1", 45_000, &m, 45_000).is_none());
        // Less than a sixth left: the runner missed it.
        let f = member_finding("api", "i-1", 55_000, &m, 55_000).unwrap();
        assert!(f.message.contains("ends in 5s") && f.message.contains("i-1"), "{}", f.message);
        let f = member_finding("api", "i-1", 61_000, &m, 61_000).unwrap();
        assert!(f.message.contains("expired"), "{}", f.message);
        // A member whose heartbeat stopped long ago is gone, not failing.
        assert!(member_finding("api", "i-1", 0, &m, 61_000 + STALE_MS).is_none());
    }

    #[tokio::test]
    async fn the_addon_puts_the_mesh_in_the_spec_and_the_ca_before_the_instances() {
        let spec = serde_json::json!({
            "service": "ledger-web", "environment": "staging",
            "artifact": {"path": "bin/web"}, "run": {"command": ["web"]}, "port": 8080,
            "network": {"mtls": true, "upstreams": ["ledger-api"], "certificate_ttl": "10m"}
        });
        let answer = Mesh.apply(&spec, &BTreeMap::new()).await;
        assert!(answer.problems.is_empty(), "{:?}", answer.problems);
        assert_eq!(answer.env["SKIFF_MESH"], "staging");
        assert_eq!(answer.env["SKIFF_MESH_UPSTREAMS"], "ledger-api");
        assert_eq!(answer.env["SKIFF_MESH_TTL_SECS"], "600");
        assert_eq!(answer.secrets["SKIFF_MESH_CA_KEY"], "secret://skiff-mesh-staging/ca-key");
        assert_eq!(answer.hooks[0].step, "mtls.ca");
        assert_eq!(answer.hooks[0].at, "before_start");
        let refused = Mesh.apply(&spec, &BTreeMap::from([("x".to_owned(), "1".to_owned())])).await;
        assert_eq!(refused.problems.len(), 1);
    }
}
