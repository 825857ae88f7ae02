//! The `key-rotation` saga: a new key for the secrets an alias encrypts (a KMS key;
//! locally a new key version of the encrypted store), every secret re-encrypted under
//! it, a canary consumer restarted to prove it still decrypts what it reads, the alias
//! moved, and — after a separate approval — the old key scheduled for deletion no
//! sooner than seven days out. Until then the old key stays enabled for any
//! ciphertext still sealed with it.

use serde::{Deserialize, Serialize};
use serde_json::json;
use skiff_pluginapi::KeyInfo;
use skiff_saga::{Registry, SagaBuilder, SagaError, SagaGraph};
use skiff_sagaapi::{Risk, Safety, Step, StepCode, StepContext, StepError, StepPlan, StepRequest, StepResult};

use crate::consumers::Consumer;
use crate::deploy::{provider, provider_error};
use crate::step_plan;

/// `key-rotation` in the catalog: planned from the ledger by `skiff rotate key`.
pub(crate) const KIND: crate::SagaKind = crate::SagaKind {
    name: "key-rotation",
    description: "a new key for the secrets an alias encrypts: re-encrypt, canary a consumer, move the alias, schedule the old key's deletion after approval (`skiff rotate key [ALIAS]`)",
    params: &[],
    build: |_| Err(crate::deploy::needs_command("key-rotation", "skiff rotate key --yes")),
};

/// The shortest and longest deletion windows KMS accepts, in days.
pub const DELETION_DAYS: std::ops::RangeInclusive<u32> = 7..=30;

/// Everything a key rotation needs, decided before it runs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyRotationPlan {
    /// The alias (`skiff`).
    pub alias: String,
    /// The key it names now.
    pub old_key: String,
    /// The services reading secrets, whose first instance is the canary.
    pub consumers: Vec<Consumer>,
    /// Days until the old key is deleted, once scheduled.
    pub deletion_days: u32,
}

/// The key rotation graph.
pub fn key_rotation_graph(p: &KeyRotationPlan) -> Result<SagaGraph, SagaError> {
    let plan = serde_json::to_value(p).unwrap_or_default();
    SagaBuilder::new("key-rotation")
        .step("create", "key.create", plan.clone())
        .step("reencrypt", "key.reencrypt", plan.clone())
        .step("canary", "key.canary", plan.clone())
        .timeout_ms(10 * 60 * 1000)
        .step("alias", "key.alias", plan.clone())
        .step("schedule-deletion", "key.schedule-deletion", plan)
        .require_approval()
        .build()
}

/// Registers the key rotation step kinds.
pub(crate) fn register(r: Registry) -> Registry {
    r.with(Create).with(Reencrypt).with(Canary).with(Alias).with(ScheduleDeletion)
}

fn plan_of(req: &StepRequest) -> Result<KeyRotationPlan, StepError> {
    req.params_as()
}

fn new_key(req: &StepRequest) -> Result<KeyInfo, StepError> {
    req.input("create")
}

struct Create;

#[async_trait::async_trait]
impl Step for Create {
    fn kind(&self) -> &str {
        "key.create"
    }

    async fn plan(&self, _: &StepContext, req: &StepRequest) -> Result<StepPlan, StepError> {
        let p = plan_of(req)?;
        Ok(step_plan(
            format!("make a new key for alias {} (it replaces {})", p.alias, p.old_key),
            Safety::Reversible,
            Risk::Low,
            500,
            vec![format!("key/{}", p.alias)],
        ))
    }

    async fn run(&self, _: &StepContext, req: &StepRequest) -> Result<StepResult, StepError> {
        let p = plan_of(req)?;
        let k = provider(req)?.secrets().create_key(&p.alias, &req.op_id).await.map_err(provider_error)?;
        Ok(StepResult::new(format!("made key {} for alias {}", k.id, p.alias), k))
    }

    async fn resume(&self, ctx: &StepContext, req: &StepRequest) -> Result<StepResult, StepError> {
        self.run(ctx, req).await
    }

    async fn compensate(&self, _: &StepContext, req: &StepRequest, done: &StepResult) -> Result<StepResult, StepError> {
        // Nothing was sealed with it (re-encryption was undone first): the shortest window.
        let k: KeyInfo = serde_json::from_value(done.outputs.clone())
            .map_err(|e| StepError::terminal(StepCode::Internal, e.to_string()))?;
        let days = *DELETION_DAYS.start();
        match provider(req)?.secrets().schedule_key_deletion(&k.id, days).await {
            Ok(_) => {
                Ok(StepResult::new(format!("scheduled the unused key {} for deletion in {days} days", k.id), json!({})))
            }
            // Data written while it was current (the state bucket's objects) needs it.
            Err(e) if !e.retryable => Ok(StepResult::new(
                format!("kept key {}: {}; schedule its deletion once that is rewritten", k.id, e.message),
                json!({"kept": k.id}),
            )),
            Err(e) => Err(provider_error(e)),
        }
    }
}

struct Reencrypt;

#[async_trait::async_trait]
impl Step for Reencrypt {
    fn kind(&self) -> &str {
        "key.reencrypt"
    }

    async fn plan(&self, _: &StepContext, req: &StepRequest) -> Result<StepPlan, StepError> {
        let p = plan_of(req)?;
        Ok(step_plan(
            format!("re-encrypt every secret {} encrypts under the new key (values do not change)", p.old_key),
            Safety::Reversible,
            Risk::Medium,
            2_000,
            vec![format!("key/{}", p.old_key)],
        ))
    }

    async fn run(&self, _: &StepContext, req: &StepRequest) -> Result<StepResult, StepError> {
        let p = plan_of(req)?;
        let k = new_key(req)?;
        let done = provider(req)?.secrets().reencrypt(&p.old_key, &k.id).await.map_err(provider_error)?;
        Ok(StepResult::new(format!("re-encrypted {} secrets under {}", done.len(), k.id), json!({"references": done})))
    }

    async fn resume(&self, ctx: &StepContext, req: &StepRequest) -> Result<StepResult, StepError> {
        // The first attempt's references are in its own output only: count what is left.
        self.run(ctx, req).await
    }

    async fn compensate(&self, _: &StepContext, req: &StepRequest, _: &StepResult) -> Result<StepResult, StepError> {
        let p = plan_of(req)?;
        let k = new_key(req)?;
        let back = provider(req)?.secrets().reencrypt(&k.id, &p.old_key).await.map_err(provider_error)?;
        Ok(StepResult::new(format!("re-encrypted {} secrets back under {}", back.len(), p.old_key), json!({})))
    }
}

struct Canary;

#[async_trait::async_trait]
impl Step for Canary {
    fn kind(&self) -> &str {
        "key.canary"
    }

    async fn plan(&self, _: &StepContext, req: &StepRequest) -> Result<StepPlan, StepError> {
        let p = plan_of(req)?;
        let canary = p.consumers.iter().find_map(|c| c.group.as_ref().map(|(g, _)| g.clone()));
        let what = canary.map_or_else(
            || "decrypt every re-encrypted secret (no instances read secrets: no consumer to canary)".to_owned(),
            |g| format!("decrypt every re-encrypted secret, then restart one instance of {g} and see it resolve them"),
        );
        let affected = p.consumers.iter().take(1).map(|c| format!("service/{}", c.service)).collect();
        Ok(step_plan(what, Safety::Reversible, Risk::Low, 15_000, affected))
    }

    async fn run(&self, ctx: &StepContext, req: &StepRequest) -> Result<StepResult, StepError> {
        let p = plan_of(req)?;
        let prov = provider(req)?;
        let k = new_key(req)?;
        let refs = prov.secrets().reencrypt(&p.old_key, &k.id).await.map_err(provider_error)?;
        let mut checked = 0;
        let all: Vec<String> = req
            .input::<serde_json::Value>("reencrypt")?
            .get("references")
            .and_then(|r| serde_json::from_value::<Vec<String>>(r.clone()).ok())
            .unwrap_or_default()
            .into_iter()
            .chain(refs)
            .collect();
        for r in all.iter().filter(|r| r.starts_with("secret://")) {
            if prov.secrets().version(r).await.map_err(provider_error)?.is_none() {
                return Err(StepError::terminal(
                    StepCode::OperationFailed,
                    format!("{r} does not decrypt under {}", k.id),
                )
                .fact("compensation re-encrypts every secret under the old key"));
            }
            checked += 1;
        }
        let Some(c) = p.consumers.iter().find(|c| c.group.is_some()) else {
            return Ok(StepResult::new(format!("{checked} secrets decrypt under {}", k.id), json!({"canary": null})));
        };
        let (group, size) = c.group.clone().unwrap_or_default();
        let running = prov.compute().describe_group(&group).await.map_err(provider_error)?;
        let Some(first) = running.as_ref().and_then(|g| g.running().first().map(|i| i.id.clone())) else {
            return Ok(StepResult::new(
                format!("{checked} secrets decrypt; {group} runs nothing"),
                json!({"canary": null}),
            ));
        };
        ctx.progress(&format!("canary: restarting {first} of {group}"), json!({"instance": first})).await;
        crate::consumers::rolling_restart(ctx, req, &group, size, Some(std::slice::from_ref(&first))).await?;
        // The replacement resolved every secret it reads: its versions are the current ones.
        let mut stale = Vec::new();
        for r in &c.references {
            let Some(v) = prov.secrets().version(r).await.map_err(provider_error)? else { continue };
            // An instance with no heartbeat at all (moto runs no runner) is judged by its
            // health alone, which the restart waited for.
            let found = crate::consumers::stale(req, &c.service, &group, r, &v).await?;
            stale.extend(found.into_iter().filter(|(_, reported)| reported != "none"));
        }
        if !stale.is_empty() {
            let mut e = StepError::retryable(
                StepCode::OperationFailed,
                format!("the canary instance of {} does not report the secrets it reads yet", c.service),
            );
            for (i, v) in stale {
                e = e.fact(format!("{i} reports {v}"));
            }
            return Err(e);
        }
        Ok(StepResult::new(
            format!("{checked} secrets decrypt under {}; a restarted instance of {} resolved them", k.id, c.service),
            json!({"canary": group, "checked": checked}),
        ))
    }

    async fn resume(&self, ctx: &StepContext, req: &StepRequest) -> Result<StepResult, StepError> {
        self.run(ctx, req).await
    }

    async fn compensate(&self, _: &StepContext, _: &StepRequest, _: &StepResult) -> Result<StepResult, StepError> {
        Ok(StepResult::new("the restarted instance stays", json!({})))
    }
}

struct Alias;

#[async_trait::async_trait]
impl Step for Alias {
    fn kind(&self) -> &str {
        "key.alias"
    }

    async fn plan(&self, _: &StepContext, req: &StepRequest) -> Result<StepPlan, StepError> {
        let p = plan_of(req)?;
        Ok(step_plan(
            format!(
                "point alias {} at the new key (new secrets are encrypted with it); {} stays enabled for old ciphertext",
                p.alias, p.old_key
            ),
            Safety::Reversible,
            Risk::Medium,
            500,
            vec![format!("key/{}", p.alias)],
        ))
    }

    async fn run(&self, _: &StepContext, req: &StepRequest) -> Result<StepResult, StepError> {
        let p = plan_of(req)?;
        let k = new_key(req)?;
        let s = provider(req)?.secrets();
        s.move_alias(&p.alias, &k.id).await.map_err(provider_error)?;
        // Anything written under the old key since the re-encryption moves too.
        let late = s.reencrypt(&p.old_key, &k.id).await.map_err(provider_error)?;
        Ok(StepResult::new(
            format!(
                "alias {} names {}; {} kept enabled ({} late secrets re-encrypted)",
                p.alias,
                k.id,
                p.old_key,
                late.len()
            ),
            json!({"alias": p.alias, "key": k.id, "late": late}),
        ))
    }

    async fn resume(&self, ctx: &StepContext, req: &StepRequest) -> Result<StepResult, StepError> {
        self.run(ctx, req).await
    }

    async fn compensate(&self, _: &StepContext, req: &StepRequest, _: &StepResult) -> Result<StepResult, StepError> {
        let p = plan_of(req)?;
        provider(req)?.secrets().move_alias(&p.alias, &p.old_key).await.map_err(provider_error)?;
        Ok(StepResult::new(format!("alias {} names {} again", p.alias, p.old_key), json!({})))
    }
}

struct ScheduleDeletion;

#[async_trait::async_trait]
impl Step for ScheduleDeletion {
    fn kind(&self) -> &str {
        "key.schedule-deletion"
    }

    async fn plan(&self, _: &StepContext, req: &StepRequest) -> Result<StepPlan, StepError> {
        let p = plan_of(req)?;
        Ok(step_plan(
            format!(
                "schedule the old key {} for deletion in {} days — once deleted, anything still encrypted with it is lost",
                p.old_key, p.deletion_days
            ),
            Safety::Irreversible,
            Risk::High,
            500,
            vec![format!("key/{}", p.old_key)],
        ))
    }

    async fn run(&self, _: &StepContext, req: &StepRequest) -> Result<StepResult, StepError> {
        let p = plan_of(req)?;
        // Still in use: hold here (nothing is undone) until it is not.
        if let Some(k) = provider(req)?.secrets().key(&p.old_key).await.map_err(provider_error)?
            && k.deletion_at_ms.is_none()
            && !k.sealed.is_empty()
        {
            let mut e = StepError::hold(
                StepCode::OperationFailed,
                format!("key {} still encrypts {}", p.old_key, k.sealed.join(", ")),
            );
            for s in &k.sealed {
                e = e.fact(s.clone());
            }
            return Err(e.fact(format!(
                "rewrite that under the new key (the state bucket: copy its objects in place with the new key while no operation runs), then `skiff saga resume {}`",
                req.op_id
            )));
        }
        let at = provider(req)?.secrets().schedule_key_deletion(&p.old_key, p.deletion_days).await;
        let at = at.map_err(provider_error)?;
        let when = skiff_clock::Utc::from_ms(at).rfc3339();
        Ok(StepResult::new(
            format!("{} is deleted at {when}; until then it decrypts old ciphertext", p.old_key),
            json!({"key": p.old_key, "deletion_at_ms": at}),
        ))
    }

    async fn resume(&self, ctx: &StepContext, req: &StepRequest) -> Result<StepResult, StepError> {
        self.run(ctx, req).await
    }

    async fn compensate(&self, _: &StepContext, _: &StepRequest, _: &StepResult) -> Result<StepResult, StepError> {
        Err(StepError::terminal(
            StepCode::OperationFailed,
            "a scheduled key deletion is cancelled with the provider, not by compensation",
        ))
    }
}
