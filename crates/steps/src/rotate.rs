//! The `secret-rotation` saga: a database credential rotated the way Secrets Manager
//! rotates one — create a pending value, set it in the database, test it, finish
//! (promote it; the previous value is kept) — with two alternating users, so the login
//! a consumer holds is never changed under it. Then every consumer is restarted one
//! instance at a time, and only when each running instance's heartbeat reports the
//! new version, and the delay has passed, is the old login disabled. A stale consumer
//! holds the last step (the operation pauses with a finding) instead of cutting it off.

use serde::{Deserialize, Serialize};
use serde_json::json;
use skiff_pluginapi::{Credential, StagedLogin};
use skiff_saga::{Registry, SagaBuilder, SagaError, SagaGraph};
use skiff_sagaapi::{Risk, Safety, Step, StepCode, StepContext, StepError, StepPlan, StepRequest, StepResult};

use crate::consumers::Consumer;
use crate::deploy::{provider, provider_error};
use crate::step_plan;

/// `secret-rotation` in the catalog: planned from the ledger by `skiff rotate secret`.
pub(crate) const KIND: crate::SagaKind = crate::SagaKind {
    name: "secret-rotation",
    description: "rotate a database credential with alternating users, restart its consumers, then disable the old login (`skiff rotate secret NAME`)",
    params: &[],
    build: |_| Err(crate::deploy::needs_command("secret-rotation", "skiff rotate secret NAME --yes")),
};

/// How long the disable step waits for a stale consumer to catch up before it holds,
/// by default (`SKIFF_ROTATION_STALE_WAIT_MS`).
pub const STALE_WAIT_MS: u64 = 60_000;

fn stale_wait_default() -> u64 {
    STALE_WAIT_MS
}

/// Everything a rotation needs, decided before it runs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RotationPlan {
    /// The secret's name (`orders-db`).
    pub secret: String,
    /// The reference rotated (`secret://orders-db/url`).
    pub reference: String,
    /// The database whose login it holds.
    pub database: String,
    /// The instance serving the database now.
    pub instance: String,
    /// The services that read the reference.
    pub consumers: Vec<Consumer>,
    /// How long after the finish step the old login stays enabled, at least.
    pub disable_after_ms: u64,
    /// How long the disable step waits for stale consumers before it holds.
    #[serde(default = "stale_wait_default")]
    pub stale_wait_ms: u64,
}

/// The rotation graph.
pub fn rotation_graph(p: &RotationPlan) -> Result<SagaGraph, SagaError> {
    let plan = serde_json::to_value(p).unwrap_or_default();
    SagaBuilder::new("secret-rotation")
        .step("create", "rotate.create", plan.clone())
        .step("set", "rotate.set", plan.clone())
        .step("test", "rotate.test", plan.clone())
        .step("finish", "rotate.finish", plan.clone())
        .step("restart", "rotate.restart", plan.clone())
        .timeout_ms(30 * 60 * 1000)
        .step("disable", "rotate.disable", plan)
        .timeout_ms(p.disable_after_ms + p.stale_wait_ms + 5 * 60 * 1000)
        .build()
}

/// Registers the rotation step kinds.
pub(crate) fn register(r: Registry) -> Registry {
    r.with(Create).with(Set).with(Test).with(Finish).with(Restart).with(Disable)
}

fn plan_of(req: &StepRequest) -> Result<RotationPlan, StepError> {
    req.params_as()
}

struct Create;

#[async_trait::async_trait]
impl Step for Create {
    fn kind(&self) -> &str {
        "rotate.create"
    }

    async fn plan(&self, _: &StepContext, req: &StepRequest) -> Result<StepPlan, StepError> {
        let p = plan_of(req)?;
        Ok(step_plan(
            format!(
                "stage a pending value of {} for the other of two alternating users, with a new password",
                p.reference
            ),
            Safety::Reversible,
            Risk::Low,
            500,
            vec![format!("{}-pending", p.reference)],
        ))
    }

    async fn run(&self, _: &StepContext, req: &StepRequest) -> Result<StepResult, StepError> {
        let p = plan_of(req)?;
        let staged: StagedLogin =
            provider(req)?.database().rotation_create(&p.instance, &p.reference).await.map_err(provider_error)?;
        Ok(StepResult::new(
            format!(
                "pending {} for user {} (now {} as {})",
                staged.pending.version, staged.pending.user, staged.current.version, staged.current.user
            ),
            staged,
        ))
    }

    async fn resume(&self, ctx: &StepContext, req: &StepRequest) -> Result<StepResult, StepError> {
        self.run(ctx, req).await
    }

    async fn compensate(&self, _: &StepContext, req: &StepRequest, _: &StepResult) -> Result<StepResult, StepError> {
        // The pending password goes with its value: nobody can use the login it set.
        let p = plan_of(req)?;
        provider(req)?.database().rotation_cancel(&p.instance, &p.reference).await.map_err(provider_error)?;
        Ok(StepResult::new(format!("removed the pending value of {}", p.reference), json!({})))
    }
}

struct Set;

#[async_trait::async_trait]
impl Step for Set {
    fn kind(&self) -> &str {
        "rotate.set"
    }

    async fn plan(&self, _: &StepContext, req: &StepRequest) -> Result<StepPlan, StepError> {
        let p = plan_of(req)?;
        Ok(step_plan(
            format!(
                "create or re-password the alternate user in {} (a clone of the current one); the current login keeps working",
                p.instance
            ),
            Safety::Reversible,
            Risk::Low,
            1_000,
            vec![format!("database/{}", p.instance)],
        ))
    }

    async fn run(&self, _: &StepContext, req: &StepRequest) -> Result<StepResult, StepError> {
        let p = plan_of(req)?;
        let c = provider(req)?.database().rotation_set(&p.instance, &p.reference).await.map_err(provider_error)?;
        Ok(StepResult::new(format!("{} can log in to {} with {}", c.user, p.instance, c.version), c))
    }

    async fn resume(&self, ctx: &StepContext, req: &StepRequest) -> Result<StepResult, StepError> {
        self.run(ctx, req).await
    }

    async fn compensate(&self, _: &StepContext, _: &StepRequest, _: &StepResult) -> Result<StepResult, StepError> {
        Ok(StepResult::new(
            "kept the alternate user: its password was only in the pending value, which is removed",
            json!({}),
        ))
    }
}

struct Test;

#[async_trait::async_trait]
impl Step for Test {
    fn kind(&self) -> &str {
        "rotate.test"
    }

    async fn plan(&self, _: &StepContext, req: &StepRequest) -> Result<StepPlan, StepError> {
        let p = plan_of(req)?;
        Ok(step_plan(
            format!("open a new connection to {} with the pending value", p.instance),
            Safety::ReadOnly,
            Risk::None,
            500,
            vec![format!("database/{}", p.instance)],
        ))
    }

    async fn run(&self, _: &StepContext, req: &StepRequest) -> Result<StepResult, StepError> {
        let p = plan_of(req)?;
        let c = provider(req)?.database().rotation_test(&p.instance, &p.reference).await;
        let c = c.map_err(|e| {
            StepError::terminal(StepCode::OperationFailed, format!("the pending login to {} fails", p.instance))
                .fact(e.message)
                .fact("nothing was promoted; compensation removes the pending value")
        })?;
        Ok(StepResult::new(format!("{} logs in to {} with {}", c.user, p.instance, c.version), c))
    }

    async fn resume(&self, ctx: &StepContext, req: &StepRequest) -> Result<StepResult, StepError> {
        self.run(ctx, req).await
    }

    async fn compensate(&self, _: &StepContext, _: &StepRequest, _: &StepResult) -> Result<StepResult, StepError> {
        Ok(StepResult::new("nothing to undo", json!({})))
    }
}

struct Finish;

/// What the finish step records: the login now current and when it became so.
#[derive(Debug, Serialize, Deserialize)]
struct Finished {
    user: String,
    version: String,
    at_ms: u64,
}

#[async_trait::async_trait]
impl Step for Finish {
    fn kind(&self) -> &str {
        "rotate.finish"
    }

    async fn plan(&self, _: &StepContext, req: &StepRequest) -> Result<StepPlan, StepError> {
        let p = plan_of(req)?;
        Ok(step_plan(
            format!(
                "promote the pending value: {} resolves to the new login, the previous value is kept as {}-previous, nothing stays pending",
                p.reference, p.reference
            ),
            Safety::Reversible,
            Risk::Medium,
            500,
            vec![p.reference.clone()],
        ))
    }

    async fn run(&self, ctx: &StepContext, req: &StepRequest) -> Result<StepResult, StepError> {
        let p = plan_of(req)?;
        let c = provider(req)?.database().rotation_finish(&p.instance, &p.reference).await.map_err(provider_error)?;
        crate::record_secret(req, &p.reference).await?;
        let done = Finished { user: c.user.clone(), version: c.version.clone(), at_ms: ctx.now_ms() };
        Ok(StepResult::new(format!("{} is {} ({}); the previous value is kept", p.reference, c.version, c.user), done))
    }

    async fn resume(&self, ctx: &StepContext, req: &StepRequest) -> Result<StepResult, StepError> {
        self.run(ctx, req).await
    }

    async fn compensate(&self, _: &StepContext, _: &StepRequest, _: &StepResult) -> Result<StepResult, StepError> {
        Ok(StepResult::new(
            "kept the new value: consumers may use it already, and both logins work until the disable step",
            json!({}),
        ))
    }
}

struct Restart;

#[async_trait::async_trait]
impl Step for Restart {
    fn kind(&self) -> &str {
        "rotate.restart"
    }

    async fn plan(&self, _: &StepContext, req: &StepRequest) -> Result<StepPlan, StepError> {
        let p = plan_of(req)?;
        let groups: Vec<String> =
            p.consumers.iter().filter_map(|c| c.group.as_ref().map(|(g, n)| format!("{g} ({n})"))).collect();
        let what = if groups.is_empty() {
            format!("no instances read {}: nothing to restart", p.reference)
        } else {
            format!("restart {} one instance at a time so each reads {} anew", groups.join(", "), p.reference)
        };
        let affected = p.consumers.iter().map(|c| format!("service/{}", c.service)).collect();
        Ok(step_plan(what, Safety::Reversible, Risk::Medium, 30_000, affected))
    }

    async fn run(&self, ctx: &StepContext, req: &StepRequest) -> Result<StepResult, StepError> {
        let p = plan_of(req)?;
        let finished: Finished = req.input("finish")?;
        let mut restarted = 0;
        for c in &p.consumers {
            let Some((group, size)) = &c.group else { continue };
            // An instance that already reports the new version (after a resumed restart) stays.
            let stale = crate::consumers::stale(req, &c.service, group, &p.reference, &finished.version).await?;
            let stale: Vec<String> = stale.into_iter().map(|(instance, _)| instance).collect();
            if !stale.is_empty() {
                restarted += crate::consumers::rolling_restart(ctx, req, group, *size, Some(&stale)).await?;
            }
        }
        Ok(StepResult::new(
            format!("restarted {}; each read {} anew", crate::consumers::instances(restarted), p.reference),
            json!({"restarted": restarted}),
        ))
    }

    async fn resume(&self, ctx: &StepContext, req: &StepRequest) -> Result<StepResult, StepError> {
        self.run(ctx, req).await
    }

    async fn compensate(&self, _: &StepContext, _: &StepRequest, _: &StepResult) -> Result<StepResult, StepError> {
        Ok(StepResult::new("restarted instances stay restarted", json!({})))
    }
}

struct Disable;

#[async_trait::async_trait]
impl Step for Disable {
    fn kind(&self) -> &str {
        "rotate.disable"
    }

    async fn plan(&self, _: &StepContext, req: &StepRequest) -> Result<StepPlan, StepError> {
        let p = plan_of(req)?;
        Ok(step_plan(
            format!(
                "after {} s, and once every running consumer reports the new version, disable the old login in {}",
                p.disable_after_ms / 1000,
                p.instance
            ),
            Safety::Reversible,
            Risk::Medium,
            p.disable_after_ms + 1_000,
            vec![format!("database/{}", p.instance)],
        ))
    }

    async fn run(&self, ctx: &StepContext, req: &StepRequest) -> Result<StepResult, StepError> {
        let p = plan_of(req)?;
        let before: StagedLogin = req.input("create")?;
        let finished: Finished = req.input("finish")?;
        let mut cancel = req.cancel.clone();
        let not_before = finished.at_ms + p.disable_after_ms;
        let now = ctx.now_ms();
        if now < not_before {
            ctx.progress(
                &format!("keeping {}'s login for {} s more", before.current.user, (not_before - now).div_ceil(1000)),
                json!({"not_before_ms": not_before}),
            )
            .await;
            cancel.sleep(std::time::Duration::from_millis(not_before - now)).await?;
        }
        let deadline = ctx.now_ms() + p.stale_wait_ms;
        loop {
            let mut stale = Vec::new();
            for c in &p.consumers {
                let Some((group, _)) = &c.group else { continue };
                for (instance, v) in
                    crate::consumers::stale(req, &c.service, group, &p.reference, &finished.version).await?
                {
                    stale.push(format!("{} instance {instance} reports {v}", c.service));
                }
            }
            if stale.is_empty() {
                break;
            }
            if ctx.now_ms() >= deadline {
                let mut e = StepError::hold(
                    StepCode::OperationFailed,
                    format!(
                        "{} consumer(s) still use an old version of {}; the old login stays enabled",
                        stale.len(),
                        p.reference
                    ),
                )
                .fact(format!("the new version is {}", finished.version));
                for s in stale {
                    e = e.fact(s);
                }
                return Err(e.fact(format!(
                    "restart them (a rolling restart or `skiff deploy`), then `skiff saga resume {}`",
                    req.op_id
                )));
            }
            cancel.sleep(crate::deploy::POLL * 4).await?;
        }
        let old: &Credential = &before.current;
        if old.user != finished.user {
            provider(req)?.database().disable_login(&p.instance, &old.user).await.map_err(provider_error)?;
        }
        Ok(StepResult::new(
            format!("every consumer uses {}; {}'s login is disabled", finished.version, old.user),
            json!({"disabled": old.user, "version": finished.version}),
        ))
    }

    async fn resume(&self, ctx: &StepContext, req: &StepRequest) -> Result<StepResult, StepError> {
        self.run(ctx, req).await
    }

    async fn compensate(&self, _: &StepContext, _: &StepRequest, _: &StepResult) -> Result<StepResult, StepError> {
        Ok(StepResult::new("the old login stays disabled; the next rotation gives it a new password", json!({})))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::pin::Pin;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::time::Duration;

    use serde_json::{Value, json};
    use skiff_pluginapi::{Compute, GroupSpec, Provider};
    use skiff_sagaapi::{Cancellation, ErrorClass, Extensions, Progress, Step, StepContext, StepRequest, Timer};
    use skiff_state::docs::{Member, MemberHealth, RunnerDetail};
    use skiff_state::{Ledger, Update};
    use skiff_testkit::memory::MemoryProvider;

    /// Time that passes exactly as fast as the step sleeps.
    #[derive(Debug, Default)]
    struct Skip(AtomicU64);

    impl Timer for Skip {
        fn now_ms(&self) -> u64 {
            self.0.load(Ordering::SeqCst)
        }
        fn sleep(&self, d: Duration) -> Pin<Box<dyn Future<Output = ()> + Send + 'static>> {
            self.0.fetch_add(u64::try_from(d.as_millis()).unwrap_or(u64::MAX), Ordering::SeqCst);
            Box::pin(async {})
        }
    }

    struct Quiet;

    #[async_trait::async_trait]
    impl Progress for Quiet {
        async fn report(&self, _: &str, _: Value) {}
    }

    async fn report(ledger: &Ledger, instance: &str, version: &str) {
        let doc = Member {
            cas: Default::default(),
            service: "api".into(),
            instance: instance.into(),
            release: "r1".into(),
            health: MemberHealth::Healthy,
            updated_at_ms: 0,
            detail: RunnerDetail {
                secrets: BTreeMap::from([("secret://pay-db/url".to_owned(), version.to_owned())]),
                ..RunnerDetail::default()
            },
        };
        let key = skiff_state::keys::member("api", instance);
        ledger.update::<Member<RunnerDetail>, _>(&key, |_| Ok(Update::Write(doc.clone()))).await.unwrap();
    }

    #[tokio::test]
    async fn a_stale_consumer_holds_the_disable_step_and_the_old_login_stays() {
        let timer: Arc<Skip> = Arc::default();
        let clock: Arc<dyn skiff_clock::Clock> = Arc::new(skiff_clock::SystemClock);
        let memory = MemoryProvider::new(clock);
        let group: GroupSpec = serde_json::from_value(json!({
            "name": "api-r1", "service": "api", "release": "r1", "desired": 2, "zones": ["mem-a"],
            "launch": {"instance_type": "t", "spot": false, "command": ["x"], "env": {}, "secrets": {}, "port": 8080,
                "health": null, "drain_timeout_ms": 0, "role": null, "log_group": null,
                "runner": {"bucket": "memory://", "public_key_pem": "", "heartbeat_ms": 1000}}
        }))
        .unwrap();
        let ids: Vec<String> = memory.create_group(&group).await.unwrap().instances.into_iter().map(|i| i.id).collect();
        let ledger = Ledger::open("memory://", &skiff_objstore::OpenOptions::default()).unwrap();
        report(&ledger, &ids[0], "sv-new").await;
        report(&ledger, &ids[1], "sv-old").await;
        let plan = super::RotationPlan {
            secret: "pay-db".into(),
            reference: "secret://pay-db/url".into(),
            database: "pay-db".into(),
            instance: "pay-db".into(),
            consumers: vec![crate::consumers::Consumer {
                service: "api".into(),
                group: Some(("api-r1".into(), 2)),
                references: vec!["secret://pay-db/url".into()],
            }],
            disable_after_ms: 30_000,
            stale_wait_ms: super::STALE_WAIT_MS,
        };
        let mut ext = Extensions::default();
        ext.insert::<Arc<dyn Provider>>(Arc::new(memory.clone()));
        ext.insert(ledger.clone());
        let inputs = BTreeMap::from([
            (
                "create".to_owned(),
                json!({"current": {"user": "skiff", "version": "sv-old"}, "pending": {"user": "skiff_a", "version": "sv-new"}}),
            ),
            ("finish".to_owned(), json!({"user": "skiff_a", "version": "sv-new", "at_ms": 0})),
        ]);
        let req = StepRequest {
            op_id: "op-1".into(),
            step_id: "disable".into(),
            attempt: 1,
            idempotency_key: "op-1/disable".into(),
            params: serde_json::to_value(&plan).unwrap(),
            inputs,
            extensions: Arc::new(ext),
            cancel: Cancellation::never(timer.clone()),
        };
        let ctx = StepContext::new(Arc::new(Quiet), timer.clone());
        let held = super::Disable.run(&ctx, &req).await.unwrap_err();
        assert_eq!(held.class, ErrorClass::Hold, "{held:?}");
        assert!(held.message.contains("1 consumer(s) still use an old version"), "{}", held.message);
        let facts = held.facts.join("\n");
        assert!(facts.contains(&format!("api instance {} reports sv-old", ids[1])), "{facts}");
        assert!(facts.contains("skiff saga resume op-1"), "{facts}");
        assert!(timer.now_ms() >= 30_000 + super::STALE_WAIT_MS, "it waited the delay, then for the consumer");
        assert!(!memory.journal().iter().any(|j| j.starts_with("disable-login")), "the old login stays");

        // Once the consumer reports the new version, resuming disables the old login.
        report(&ledger, &ids[1], "sv-new").await;
        let done = super::Disable.resume(&ctx, &req).await.unwrap();
        assert!(done.summary.contains("skiff's login is disabled"), "{}", done.summary);
        assert_eq!(memory.journal().iter().filter(|j| *j == "disable-login pay-db skiff").count(), 1);
    }
}
