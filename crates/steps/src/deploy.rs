//! `deploy` and `rollback`: rolling a release out through a provider, health-gated.
//!
//! A deploy provisions an instance group for the new release, registers it in a
//! target group and waits until every target is healthy, then shifts traffic in the
//! spec's canary steps. After each weight change it reads the weights and target
//! health back and advances only when they are in effect; each bake ends in an
//! analysis of the canary's error rate and p95 latency against the spec's thresholds
//! and the stable group's baseline. Too few requests is inconclusive and pauses the
//! operation; a failed analysis compensates back to stable. Promotion records the
//! new stable release; the old group is drained and retired only after that. A
//! rollback is the same graph towards an older release, with one 100% shift.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::json;
use skiff_ir::ServiceIr;
use skiff_pluginapi::{
    GroupSpec, HealthCheck, HealthState, LaunchConfig, LoadBalancerSpec, Permission, Provider, ProviderError, RoleSpec,
    RunnerConfig, Target, TargetGroupSpec, TargetHealth, TrafficStats, Weight,
};
use skiff_saga::{Registry, SagaBuilder, SagaError, SagaGraph};
use skiff_sagaapi::{Risk, Safety, Step, StepContext, StepError, StepPlan, StepRequest, StepResult};
use skiff_state::Ledger;
use skiff_state::docs::{Member, MemberHealth, RunnerDetail, ServiceState};

/// `deploy` in the catalog: planned from a spec and a release, so started by `skiff deploy`.
pub(crate) const DEPLOY_KIND: crate::SagaKind = crate::SagaKind {
    name: "deploy",
    description: "canary rollout of a new release (start it with `skiff deploy -f skiff.yaml`)",
    params: &[],
    build: |_| Err(needs_command("deploy", "skiff deploy -f skiff.yaml --yes")),
};

/// `rollback` in the catalog: planned from the ledger, so started by `skiff rollback`.
pub(crate) const ROLLBACK_KIND: crate::SagaKind = crate::SagaKind {
    name: "rollback",
    description: "move a service back to an earlier release (`skiff rollback SERVICE [--to previous-stable|RELEASE]`)",
    params: &[],
    build: |_| Err(needs_command("rollback", "skiff saga start rollback --service SERVICE --to previous-stable --yes")),
};

pub(crate) fn needs_command(saga: &str, command: &str) -> SagaError {
    SagaError::InvalidGraph {
        saga: saga.to_owned(),
        why: format!("its plan comes from the spec and the ledger; start it with `{command}`"),
    }
}

/// How often waiting steps look again.
pub(crate) const POLL: Duration = Duration::from_millis(250);

/// Canary analysis thresholds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Thresholds {
    /// Highest acceptable share of 5xx answers, 0..=1.
    pub max_error_rate: f64,
    /// Highest acceptable p95 latency.
    pub max_p95_ms: u64,
    /// Fewest canary requests a verdict needs; fewer is inconclusive.
    pub min_requests: u64,
}

/// The release currently taking traffic, which a rollout moves away from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Stable {
    /// Its release id.
    pub release: String,
    /// Its instance group.
    pub group: String,
    /// Its target group, if the service serves traffic.
    pub target_group: Option<String>,
    /// The IR digest it was built from.
    pub spec_digest: Option<String>,
    /// Whether it has healthy targets taking traffic (else there is nothing to
    /// canary against, and it is only cleaned up).
    pub serving: bool,
}

/// Everything a deploy or rollback graph needs, decided before anything runs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rollout {
    /// The service.
    pub service: String,
    /// The release to roll out.
    pub release: String,
    /// The IR digest the release was built from.
    pub spec_digest: String,
    /// Its instance group.
    pub group: GroupSpec,
    /// Its target group and the load balancer's port, for services that serve.
    pub traffic: Option<TrafficPlan>,
    /// What takes traffic now.
    pub stable: Option<Stable>,
    /// Canary weights, ascending, ending at 100.
    pub steps: Vec<u32>,
    /// Bake time after each shift.
    pub bake_ms: u64,
    /// Analysis thresholds.
    pub thresholds: Thresholds,
    /// Deadline of each step (bakes get theirs on top).
    pub step_timeout_ms: u64,
    /// Time in-flight requests get when targets leave.
    pub drain_ms: u64,
    /// How long the old group is kept after promotion.
    pub retention_ms: u64,
    /// The role instances run as, ensured before they start.
    pub role: Option<RoleSpec>,
    /// The log group (name, retention in days), ensured before instances start.
    pub log_group: Option<(String, u32)>,
}

/// Where a serving release takes traffic.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrafficPlan {
    /// Its target group.
    pub target_group: TargetGroupSpec,
    /// The load balancer's port.
    pub listener_port: u16,
}

/// The instance group (and target group) name of a release: `hello-2026-11-23-1`.
pub fn group_name(service: &str, release: &str) -> String {
    format!("{service}-{}", release.replace('.', "-"))
}

fn health_of(ir: &ServiceIr) -> Option<HealthCheck> {
    ir.network.as_ref().map(|n| HealthCheck {
        path: n.health.path.clone(),
        interval_ms: n.health.interval.as_millis(),
        timeout_ms: n.health.timeout.as_millis(),
        healthy_threshold: n.health.healthy_threshold,
        unhealthy_threshold: n.health.unhealthy_threshold,
    })
}

/// The instance group a release of `ir` runs as.
pub fn group_spec(ir: &ServiceIr, release: &str, runner: RunnerConfig) -> GroupSpec {
    GroupSpec {
        name: group_name(&ir.service, release),
        service: ir.service.clone(),
        release: release.to_owned(),
        desired: ir.capacity.desired,
        zones: ir.capacity.zones.clone(),
        launch: LaunchConfig {
            instance_type: ir.capacity.instance_type.clone(),
            spot: ir.capacity.spot,
            command: ir.run.command.clone(),
            env: BTreeMap::new(),
            secrets: ir.secrets.iter().map(|(k, v)| (k.clone(), v.to_string())).collect(),
            port: ir.network.as_ref().map(|n| n.port),
            health: health_of(ir),
            drain_timeout_ms: ir.rollout.drain_timeout.as_millis(),
            role: Some(skiff_compiler::role_name(ir)),
            log_group: Some(ir.logs.group.clone()),
            runner,
        },
        operation: None,
    }
}

fn traffic_plan(ir: &ServiceIr, release: &str) -> Option<TrafficPlan> {
    let (network, health) = (ir.network.as_ref()?, health_of(ir)?);
    Some(TrafficPlan {
        target_group: TargetGroupSpec {
            name: group_name(&ir.service, release),
            service: ir.service.clone(),
            port: network.port,
            health,
            deregistration_delay_ms: ir.rollout.drain_timeout.as_millis(),
        },
        listener_port: network.port,
    })
}

/// Everything a rollout of `release` needs, from its IR: group, traffic, canary steps,
/// thresholds and deadlines.
pub fn rollout_for(
    ir: &ServiceIr,
    release: &str,
    spec_digest: &str,
    group: GroupSpec,
    stable: Option<Stable>,
) -> Rollout {
    let a = &ir.rollout.analysis;
    Rollout {
        service: ir.service.clone(),
        release: release.to_owned(),
        spec_digest: spec_digest.to_owned(),
        group,
        traffic: traffic_plan(ir, release),
        stable,
        steps: if ir.rollout.strategy == skiff_spec::Strategy::AllAtOnce {
            vec![100]
        } else {
            ir.rollout.steps.clone()
        },
        bake_ms: ir.rollout.bake.as_millis(),
        thresholds: Thresholds {
            max_error_rate: a.max_error_rate.fraction(),
            max_p95_ms: a.max_p95_latency.as_millis(),
            min_requests: u64::from(a.min_requests),
        },
        step_timeout_ms: ir.rollout.step_timeout.as_millis(),
        drain_ms: ir.rollout.drain_timeout.as_millis(),
        retention_ms: ir.rollout.retention.as_millis(),
        role: Some(RoleSpec {
            name: skiff_compiler::role_name(ir),
            service: ir.service.clone(),
            permissions: skiff_compiler::permissions(ir)
                .into_iter()
                .map(|p| Permission { action: p.action, resource: p.resource })
                .collect(),
        }),
        log_group: Some((
            ir.logs.group.clone(),
            u32::try_from(ir.logs.retention.as_millis() / 86_400_000).unwrap_or(u32::MAX).max(1),
        )),
    }
}

/// The deploy graph: provision, register, then shift/analyse per canary step,
/// promote, retire.
pub fn deploy_graph(r: &Rollout) -> Result<SagaGraph, SagaError> {
    let stable_serves = r.stable.as_ref().is_some_and(|s| s.serving && s.target_group.is_some());
    graph("deploy", r, stable_serves && r.traffic.is_some())
}

/// The rollback graph: the same steps towards an older release with one 100% shift
/// and no analysis.
pub fn rollback_graph(r: &Rollout) -> Result<SagaGraph, SagaError> {
    graph("rollback", r, false)
}

fn graph(saga: &str, r: &Rollout, canary: bool) -> Result<SagaGraph, SagaError> {
    let t = r.step_timeout_ms;
    let mut b = SagaBuilder::new(saga)
        .step(
            "provision",
            "deploy.provision",
            json!({"group": r.group, "service": r.service, "role": r.role, "log_group": r.log_group}),
        )
        .timeout_ms(t);
    let canary_tg = r.traffic.as_ref().map(|tp| tp.target_group.name.clone());
    let stable_tg = r.stable.as_ref().and_then(|s| s.target_group.clone());
    if let Some(tp) = &r.traffic {
        b = b
            .step(
                "register",
                "deploy.register",
                json!({"service": r.service, "target_group": tp.target_group, "listener_port": tp.listener_port}),
            )
            .timeout_ms(t);
        let weights: Vec<u32> = if canary { r.steps.clone() } else { vec![100] };
        for w in weights {
            let shift = json!({"service": r.service, "canary": canary_tg, "stable": stable_tg, "weight": w});
            b = b.step(&format!("shift-{w}"), "deploy.shift", shift).timeout_ms(t);
            // A zero bake opts out of analysis: each shift still waits for its weights
            // and the canary's health to be in effect.
            if canary && r.bake_ms > 0 {
                let analyse = json!({
                    "service": r.service, "canary": canary_tg, "stable": stable_tg, "weight": w,
                    "bake_ms": r.bake_ms, "thresholds": r.thresholds,
                });
                b = b.step(&format!("analyse-{w}"), "deploy.analyse", analyse).timeout_ms(r.bake_ms + t);
            }
        }
    }
    b = b
        .step(
            "promote",
            "deploy.promote",
            json!({
                "service": r.service, "release": r.release, "spec_digest": r.spec_digest,
                "previous": r.stable.as_ref().map(|s| &s.release),
                "previous_spec": r.stable.as_ref().and_then(|s| s.spec_digest.as_ref()),
            }),
        )
        .timeout_ms(t);
    if let Some(s) = &r.stable
        && s.group != r.group.name
    {
        let retire = json!({
            "service": r.service, "group": s.group, "target_group": s.target_group,
            "drain_ms": r.drain_ms, "retention_ms": r.retention_ms,
        });
        b = b.step("retire", "deploy.retire", retire).timeout_ms(r.retention_ms + r.drain_ms + t).retry(5, 1_000);
    }
    b.build()
}

/// Which steps wait for approval: irreversible ones, except retiring the previous
/// group at the end of a deploy or rollback — routine, and `skiff rollback` re-creates
/// it. Any other irreversible step (and any step of other sagas) still needs approval.
#[derive(Clone, Copy, Debug, Default)]
pub struct RoutinePolicy;

impl skiff_saga::ApprovalPolicy for RoutinePolicy {
    fn needs_approval(&self, saga: &str, step: &skiff_saga::PlannedStep) -> bool {
        let routine = (saga == "deploy" || saga == "rollback") && step.kind == "deploy.retire";
        step.safety == Safety::Irreversible && !routine
    }
}

/// The safety each deploy step kind declares in its plan, known before planning (for
/// policy checks), and whether [`RoutinePolicy`] exempts it from approval.
pub fn declared_safety(saga: &str, kind: &str) -> (Safety, bool) {
    match kind {
        "deploy.retire" => (Safety::Irreversible, saga == "deploy" || saga == "rollback"),
        "deploy.analyse" => (Safety::ReadOnly, false),
        _ => (Safety::Reversible, false),
    }
}

/// The deploy step kinds.
pub(crate) fn register(r: Registry) -> Registry {
    r.with(Provision).with(Register).with(Shift).with(Analyse).with(Promote).with(Retire)
}

pub(crate) fn provider(req: &StepRequest) -> Result<&Arc<dyn Provider>, StepError> {
    req.extensions.require::<Arc<dyn Provider>>()
}

fn ledger(req: &StepRequest) -> Result<&Ledger, StepError> {
    req.extensions.require::<Ledger>()
}

fn params<T: DeserializeOwned>(req: &StepRequest) -> Result<T, StepError> {
    req.params_as()
}

pub(crate) fn provider_error(e: ProviderError) -> StepError {
    if e.retryable { StepError::retryable(&e.code, e.message) } else { StepError::terminal(&e.code, e.message) }
}

fn percent(rate: f64) -> String {
    format!("{:.1}%", rate * 100.0)
}

/// "new targets return 500 on /healthz" from a health reason such as "/healthz answered 500".
fn health_fact(health: &[TargetHealth]) -> Option<String> {
    let reasons: Vec<&str> =
        health.iter().filter(|h| h.state == HealthState::Unhealthy).filter_map(|h| h.reason.as_deref()).collect();
    // An answered status says more than a transport error on one target, so it wins.
    if let Some((path, code)) = reasons.iter().find_map(|r| r.split_once(" answered ")) {
        return Some(format!("new targets return {code} on {path}"));
    }
    reasons.first().map(|r| format!("new targets fail their health check: {r}"))
}

fn healthy_count(health: &[TargetHealth]) -> usize {
    health.iter().filter(|h| h.state == HealthState::Healthy).count()
}

#[derive(Deserialize)]
struct ProvisionParams {
    group: GroupSpec,
    service: String,
    #[serde(default)]
    role: Option<RoleSpec>,
    #[serde(default)]
    log_group: Option<(String, u32)>,
}

/// What provisioning produced: the group and its running instances as targets.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Provisioned {
    /// The group.
    pub group: String,
    /// Its instances.
    pub targets: Vec<Target>,
}

struct Provision;

impl Provision {
    /// Refusals recorded by runners of this group (bad signature or digest).
    async fn refusal(req: &StepRequest, service: &str, ids: &[String]) -> Option<StepError> {
        let ledger = ledger(req).ok()?;
        for id in ids {
            let key = skiff_state::keys::member(service, id);
            if let Ok(Some(m)) = ledger.read::<Member<RunnerDetail>>(&key).await
                && m.health == MemberHealth::Refused
            {
                let code = m.detail.code.clone().unwrap_or_else(|| "SIGNATURE_INVALID".to_owned());
                let why = m.detail.reason.clone().unwrap_or_default();
                return Some(
                    StepError::terminal(&code, format!("instance {id} refused the release: {why}"))
                        .fact("runners verify the signature and the artifact digest before starting anything"),
                );
            }
        }
        None
    }
}

#[async_trait]
impl Step for Provision {
    fn kind(&self) -> &str {
        "deploy.provision"
    }

    async fn plan(&self, _: &StepContext, req: &StepRequest) -> Result<StepPlan, StepError> {
        let p: ProvisionParams = params(req)?;
        Ok(StepPlan {
            description: format!(
                "start instance group {} ({} × {} in {}) for release {}",
                p.group.name,
                p.group.desired,
                p.group.launch.instance_type,
                p.group.zones.join(", "),
                p.group.release
            ),
            safety: Safety::Reversible,
            risk: Risk::Low,
            expected_duration_ms: 5_000,
            affected_resources: vec![format!("instance-group/{}", p.group.name)],
        })
    }

    async fn run(&self, ctx: &StepContext, req: &StepRequest) -> Result<StepResult, StepError> {
        let p: ProvisionParams = params(req)?;
        let result = self.start(ctx, req, &p).await;
        if let Err(e) = &result
            && !e.is_retryable()
        {
            // A failed step is not compensated: remove what it started.
            let _ = provider(req)?.compute().delete_group(&p.group.name).await;
        }
        result
    }

    async fn resume(&self, ctx: &StepContext, req: &StepRequest) -> Result<StepResult, StepError> {
        self.run(ctx, req).await
    }

    async fn compensate(&self, _: &StepContext, req: &StepRequest, _: &StepResult) -> Result<StepResult, StepError> {
        let p: ProvisionParams = params(req)?;
        provider(req)?.compute().delete_group(&p.group.name).await.map_err(provider_error)?;
        Ok(StepResult::new(format!("stopped instance group {}", p.group.name), json!({})))
    }
}

impl Provision {
    async fn start(&self, ctx: &StepContext, req: &StepRequest, p: &ProvisionParams) -> Result<StepResult, StepError> {
        let prov = provider(req)?;
        if let Some(role) = &p.role {
            prov.identity().ensure_role(role).await.map_err(provider_error)?;
        }
        if let Some((name, days)) = &p.log_group {
            prov.logs().ensure_log_group(name, *days).await.map_err(provider_error)?;
        }
        let group = GroupSpec { operation: Some(req.op_id.clone()), ..p.group.clone() };
        prov.compute().create_group(&group).await.map_err(provider_error)?;
        let mut cancel = req.cancel.clone();
        let mut last = usize::MAX;
        loop {
            let g = prov.compute().describe_group(&p.group.name).await.map_err(provider_error)?.ok_or_else(|| {
                StepError::terminal("NOT_FOUND", format!("instance group {} vanished while starting", p.group.name))
            })?;
            let running: Vec<Target> = g
                .running()
                .iter()
                .filter_map(|i| i.port.map(|port| Target { id: i.id.clone(), address: i.address.clone(), port }))
                .collect();
            let count = if p.group.launch.port.is_some() { running.len() } else { g.running().len() };
            if count != last {
                ctx.progress(
                    &format!("{count}/{} instances running", p.group.desired),
                    json!({"running": count, "desired": p.group.desired}),
                )
                .await;
                last = count;
            }
            let ids: Vec<String> = g.instances.iter().map(|i| i.id.clone()).collect();
            if let Some(e) = Provision::refusal(req, &p.service, &ids).await {
                return Err(e);
            }
            if count >= p.group.desired as usize {
                let out = Provisioned { group: p.group.name.clone(), targets: running };
                return Ok(StepResult::new(format!("{count} instances of {} running", p.group.release), out));
            }
            cancel.sleep(POLL).await?;
        }
    }
}

#[derive(Deserialize)]
struct RegisterParams {
    service: String,
    target_group: TargetGroupSpec,
    listener_port: u16,
}

async fn register_and_wait(ctx: &StepContext, req: &StepRequest) -> Result<StepResult, StepError> {
    let p: RegisterParams = params(req)?;
    let provisioned: Provisioned = req.input("provision")?;
    let traffic = provider(req)?.traffic();
    traffic
        .ensure_load_balancer(&LoadBalancerSpec { service: p.service.clone(), listener_port: p.listener_port })
        .await
        .map_err(provider_error)?;
    traffic.ensure_target_group(&p.target_group).await.map_err(provider_error)?;
    traffic.register(&p.target_group.name, &provisioned.targets).await.map_err(provider_error)?;
    let want = provisioned.targets.len();
    // Targets failing for this long (after their first verdict) will not recover.
    let h = &p.target_group.health;
    let patience = Duration::from_millis(h.interval_ms * u64::from(h.unhealthy_threshold + 2) + 2_000);
    let mut cancel = req.cancel.clone();
    let mut failing_since: Option<u64> = None;
    let mut last = usize::MAX;
    loop {
        let health = traffic.target_health(&p.target_group.name).await.map_err(provider_error)?;
        let healthy = healthy_count(&health);
        if healthy != last {
            ctx.progress(&format!("{healthy}/{want} targets healthy"), json!({"healthy": healthy, "targets": want}))
                .await;
            last = healthy;
        }
        if healthy >= want {
            return Ok(StepResult::new(
                format!("{healthy}/{want} targets healthy in {}", p.target_group.name),
                json!({"target_group": p.target_group.name, "healthy": healthy}),
            ));
        }
        if health.iter().any(|t| t.state == HealthState::Unhealthy) {
            let since = *failing_since.get_or_insert_with(|| ctx.now_ms());
            if ctx.now_ms().saturating_sub(since) > u64::try_from(patience.as_millis()).unwrap_or(u64::MAX) {
                let mut e = StepError::terminal("CANARY_FAILED", "new release failed readiness")
                    .fact(format!("{healthy}/{want} new targets healthy after {}s", patience.as_secs()));
                if let Some(f) = health_fact(&health) {
                    e = e.fact(f);
                }
                return Err(e);
            }
        } else {
            failing_since = None;
        }
        cancel.sleep(POLL).await?;
    }
}

struct Register;

#[async_trait]
impl Step for Register {
    fn kind(&self) -> &str {
        "deploy.register"
    }

    async fn plan(&self, _: &StepContext, req: &StepRequest) -> Result<StepPlan, StepError> {
        let p: RegisterParams = params(req)?;
        Ok(StepPlan {
            description: format!(
                "register the new instances in target group {} (health {}) and wait until every one is healthy",
                p.target_group.name, p.target_group.health.path
            ),
            safety: Safety::Reversible,
            risk: Risk::Low,
            expected_duration_ms: 3_000,
            affected_resources: vec![
                format!("target-group/{}", p.target_group.name),
                format!("load-balancer/{}", p.service),
            ],
        })
    }

    async fn run(&self, ctx: &StepContext, req: &StepRequest) -> Result<StepResult, StepError> {
        let result = register_and_wait(ctx, req).await;
        if let Err(e) = &result
            && !e.is_retryable()
        {
            // A failed step is not compensated: remove the target group it made.
            let p: RegisterParams = params(req)?;
            let _ = provider(req)?.traffic().delete_target_group(&p.target_group.name).await;
        }
        result
    }

    async fn resume(&self, ctx: &StepContext, req: &StepRequest) -> Result<StepResult, StepError> {
        self.run(ctx, req).await
    }

    async fn compensate(&self, _: &StepContext, req: &StepRequest, _: &StepResult) -> Result<StepResult, StepError> {
        let p: RegisterParams = params(req)?;
        provider(req)?.traffic().delete_target_group(&p.target_group.name).await.map_err(provider_error)?;
        Ok(StepResult::new(format!("removed target group {}", p.target_group.name), json!({})))
    }
}

#[derive(Deserialize)]
struct ShiftParams {
    service: String,
    canary: String,
    stable: Option<String>,
    weight: u32,
}

#[derive(Serialize, Deserialize)]
struct Shifted {
    previous: Vec<Weight>,
    weights: Vec<Weight>,
}

fn weights_for(p: &ShiftParams) -> Vec<Weight> {
    let mut w = vec![Weight { target_group: p.canary.clone(), weight: p.weight }];
    if let Some(s) = &p.stable
        && s != &p.canary
    {
        w.push(Weight { target_group: s.clone(), weight: 100 - p.weight.min(100) });
    }
    w
}

fn same_weights(a: &[Weight], b: &[Weight]) -> bool {
    let norm = |w: &[Weight]| {
        let mut v: Vec<(String, u32)> =
            w.iter().filter(|w| w.weight > 0).map(|w| (w.target_group.clone(), w.weight)).collect();
        v.sort();
        v
    };
    norm(a) == norm(b)
}

/// Sets weights, then reads weights and health back until both are in effect.
pub(crate) async fn apply_weights(
    ctx: &StepContext,
    req: &StepRequest,
    service: &str,
    weights: &[Weight],
    must_be_healthy: &[String],
) -> Result<(), StepError> {
    let traffic = provider(req)?.traffic();
    traffic.set_weights(service, weights).await.map_err(provider_error)?;
    let mut cancel = req.cancel.clone();
    loop {
        let read = traffic.weights(service).await.map_err(provider_error)?;
        let mut healthy = true;
        for tg in must_be_healthy {
            let h = traffic.target_health(tg).await.map_err(provider_error)?;
            if h.is_empty() || healthy_count(&h) < h.len() {
                healthy = false;
                if h.iter().any(|t| t.state == HealthState::Unhealthy) {
                    let mut e = StepError::terminal("CANARY_FAILED", "new release failed readiness").fact(format!(
                        "{}/{} targets of {tg} healthy after the weight change",
                        healthy_count(&h),
                        h.len()
                    ));
                    if let Some(f) = health_fact(&h) {
                        e = e.fact(f);
                    }
                    return Err(e);
                }
            }
        }
        if same_weights(&read, weights) && healthy {
            ctx.progress(
                &format!(
                    "weights in effect: {}",
                    read.iter().map(|w| format!("{} {}%", w.target_group, w.weight)).collect::<Vec<_>>().join(", ")
                ),
                json!({"weights": read}),
            )
            .await;
            return Ok(());
        }
        cancel.sleep(POLL).await?;
    }
}

struct Shift;

#[async_trait]
impl Step for Shift {
    fn kind(&self) -> &str {
        "deploy.shift"
    }

    async fn plan(&self, _: &StepContext, req: &StepRequest) -> Result<StepPlan, StepError> {
        let p: ShiftParams = params(req)?;
        Ok(StepPlan {
            description: match &p.stable {
                Some(s) => format!(
                    "send {}% of traffic to {} and {}% to {s}; read both back",
                    p.weight,
                    p.canary,
                    100 - p.weight
                ),
                None => format!("send {}% of traffic to {}; read it back", p.weight, p.canary),
            },
            safety: Safety::Reversible,
            risk: if p.weight >= 50 { Risk::Medium } else { Risk::Low },
            expected_duration_ms: 500,
            affected_resources: vec![format!("load-balancer/{}", p.service)],
        })
    }

    async fn run(&self, ctx: &StepContext, req: &StepRequest) -> Result<StepResult, StepError> {
        let p: ShiftParams = params(req)?;
        let previous = provider(req)?.traffic().weights(&p.service).await.map_err(provider_error)?;
        let weights = weights_for(&p);
        if let Err(e) = apply_weights(ctx, req, &p.service, &weights, std::slice::from_ref(&p.canary)).await {
            if !e.is_retryable() {
                // A failed step is not compensated: put the weights back as they were.
                let _ = provider(req)?.traffic().set_weights(&p.service, &previous).await;
            }
            return Err(e);
        }
        Ok(StepResult::new(format!("{}% of traffic on {}", p.weight, p.canary), Shifted { previous, weights }))
    }

    async fn resume(&self, ctx: &StepContext, req: &StepRequest) -> Result<StepResult, StepError> {
        // The first attempt may have set the weights already: the previous ones are
        // those of the step before (or all on stable).
        let p: ShiftParams = params(req)?;
        let current = provider(req)?.traffic().weights(&p.service).await.map_err(provider_error)?;
        let weights = weights_for(&p);
        let previous = if same_weights(&current, &weights) {
            match &p.stable {
                Some(s) => vec![Weight { target_group: s.clone(), weight: 100 }],
                None => Vec::new(),
            }
        } else {
            current
        };
        apply_weights(ctx, req, &p.service, &weights, std::slice::from_ref(&p.canary)).await?;
        Ok(StepResult::new(format!("{}% of traffic on {}", p.weight, p.canary), Shifted { previous, weights }))
    }

    async fn compensate(
        &self,
        ctx: &StepContext,
        req: &StepRequest,
        result: &StepResult,
    ) -> Result<StepResult, StepError> {
        let p: ShiftParams = params(req)?;
        let shifted: Shifted = result.outputs_as()?;
        let back: Vec<String> = p.stable.iter().cloned().collect();
        let traffic = provider(req)?.traffic();
        if shifted.previous.is_empty() {
            traffic.set_weights(&p.service, &[]).await.map_err(provider_error)?;
        } else {
            apply_weights(ctx, req, &p.service, &shifted.previous, &back).await?;
        }
        let shown = shifted.previous.iter().map(|w| format!("{} {}%", w.target_group, w.weight)).collect::<Vec<_>>();
        Ok(StepResult::new(
            format!("weights back to {}", if shown.is_empty() { "none".to_owned() } else { shown.join(", ") }),
            json!({}),
        ))
    }
}

#[derive(Deserialize)]
struct AnalyseParams {
    canary: String,
    stable: Option<String>,
    weight: u32,
    bake_ms: u64,
    thresholds: Thresholds,
}

/// What a bake observed.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Verdict {
    /// Canary requests during the bake.
    pub requests: u64,
    /// Their error rate.
    pub error_rate: f64,
    /// Their p95 latency.
    pub p95_ms: Option<u64>,
    /// The stable group's requests, error rate and p95 over the same window.
    pub baseline: Option<(u64, f64, Option<u64>)>,
}

/// Judges a bake: `Ok` passes, `Err` explains the failure (or inconclusiveness).
pub fn judge(t: &Thresholds, canary: &TrafficStats, stable: Option<&TrafficStats>) -> Result<Verdict, StepError> {
    let verdict = Verdict {
        requests: canary.requests,
        error_rate: canary.error_rate(),
        p95_ms: canary.percentile_ms(0.95),
        baseline: stable.map(|s| (s.requests, s.error_rate(), s.percentile_ms(0.95))),
    };
    let floor = t.min_requests.max(1);
    // Errors beyond what the threshold allows over the larger of the minimum sample and
    // the requests seen: with fewer requests than the minimum, more traffic could not
    // bring the rate back under the threshold, so the verdict need not wait.
    let over_budget = canary.errors as f64 > t.max_error_rate * floor.max(canary.requests) as f64;
    if canary.requests < floor && !over_budget {
        return Err(StepError::hold(
            "ANALYSIS_INCONCLUSIVE",
            format!("{} canary requests during the bake; a verdict needs {floor}", canary.requests),
        )
        .fact("send traffic to the service, then resume the operation"));
    }
    let mut reasons = Vec::new();
    if over_budget {
        reasons.push(format!(
            "canary error rate {} over {} request{} exceeds {}",
            percent(verdict.error_rate),
            canary.requests,
            if canary.requests == 1 { "" } else { "s" },
            percent(t.max_error_rate)
        ));
    }
    if let Some(p95) = verdict.p95_ms
        && p95 > t.max_p95_ms
        && canary.requests >= floor
    {
        reasons.push(format!("canary p95 latency {p95} ms exceeds {} ms", t.max_p95_ms));
    }
    if let Some(s) = stable.filter(|s| s.requests >= t.min_requests.max(1)) {
        // The error threshold is absolute (a worse stable group does not excuse a
        // canary); latency is also judged against the stable group's, since the
        // same requests should not become much slower.
        if let (Some(cp), Some(sp)) = (verdict.p95_ms, s.percentile_ms(0.95))
            && cp > sp.saturating_mul(2).max(sp + 50)
        {
            reasons.push(format!("canary p95 {cp} ms is over twice the stable group's {sp} ms"));
        }
    }
    if reasons.is_empty() {
        return Ok(verdict);
    }
    let mut e = StepError::terminal("CANARY_FAILED", "new release failed canary analysis");
    for r in reasons {
        e = e.fact(r);
    }
    Err(e)
}

struct Analyse;

#[async_trait]
impl Step for Analyse {
    fn kind(&self) -> &str {
        "deploy.analyse"
    }

    async fn plan(&self, _: &StepContext, req: &StepRequest) -> Result<StepPlan, StepError> {
        let p: AnalyseParams = params(req)?;
        Ok(StepPlan {
            description: format!(
                "bake {}s at {}%, then judge the canary: error rate ≤ {}, p95 ≤ {} ms, at least {} requests",
                p.bake_ms / 1000,
                p.weight,
                percent(p.thresholds.max_error_rate),
                p.thresholds.max_p95_ms,
                p.thresholds.min_requests
            ),
            safety: Safety::ReadOnly,
            risk: Risk::None,
            expected_duration_ms: p.bake_ms,
            affected_resources: vec![format!("target-group/{}", p.canary)],
        })
    }

    async fn run(&self, ctx: &StepContext, req: &StepRequest) -> Result<StepResult, StepError> {
        let p: AnalyseParams = params(req)?;
        let traffic = provider(req)?.traffic();
        let stats = |tg: String| async move { traffic.stats(&tg).await.map_err(provider_error) };
        let canary_start = stats(p.canary.clone()).await?;
        let stable_start = match &p.stable {
            Some(s) => Some(stats(s.clone()).await?),
            None => None,
        };
        let start = ctx.now_ms();
        let mut cancel = req.cancel.clone();
        let mut last_report = 0;
        loop {
            let elapsed = ctx.now_ms().saturating_sub(start);
            let health = traffic.target_health(&p.canary).await.map_err(provider_error)?;
            if health.iter().any(|t| t.state == HealthState::Unhealthy) {
                let mut e = StepError::terminal("CANARY_FAILED", "new release failed readiness").fact(format!(
                    "{}/{} canary targets healthy during the bake",
                    healthy_count(&health),
                    health.len()
                ));
                if let Some(f) = health_fact(&health) {
                    e = e.fact(f);
                }
                return Err(e);
            }
            let seen = stats(p.canary.clone()).await?.since(&canary_start);
            let floor = p.thresholds.min_requests.max(1);
            if seen.errors as f64 > p.thresholds.max_error_rate * floor.max(seen.requests) as f64 {
                // Over the error budget already: stop now rather than at the end of the bake.
                return Err(judge(&p.thresholds, &seen, None)
                    .err()
                    .unwrap_or_else(|| StepError::terminal("CANARY_FAILED", "new release failed canary analysis"))
                    .fact(format!("rollout stopped at {}%", p.weight)));
            }
            if elapsed >= last_report + 1_000 || elapsed >= p.bake_ms {
                last_report = elapsed;
                let p95 = seen.percentile_ms(0.95);
                ctx.progress(
                    &format!(
                        "{}% · {}/{} healthy · {} requests · errors {} · p95 {}",
                        p.weight,
                        healthy_count(&health),
                        health.len(),
                        seen.requests,
                        percent(seen.error_rate()),
                        p95.map_or_else(|| "-".to_owned(), |v| format!("{v} ms"))
                    ),
                    json!({"weight": p.weight, "healthy": healthy_count(&health), "targets": health.len(),
                           "requests": seen.requests, "error_rate": seen.error_rate(), "p95_ms": p95}),
                )
                .await;
            }
            if elapsed >= p.bake_ms {
                break;
            }
            cancel.sleep(POLL.min(Duration::from_millis(p.bake_ms - elapsed))).await?;
        }
        let canary = stats(p.canary.clone()).await?.since(&canary_start);
        let stable = match (&p.stable, &stable_start) {
            (Some(s), Some(start)) => Some(stats(s.clone()).await?.since(start)),
            _ => None,
        };
        let v = judge(&p.thresholds, &canary, stable.as_ref())
            .map_err(|e| e.fact(format!("rollout stopped at {}%", p.weight)))?;
        Ok(StepResult::new(
            format!(
                "canary passed at {}%: {} requests, errors {}, p95 {}",
                p.weight,
                v.requests,
                percent(v.error_rate),
                v.p95_ms.map_or_else(|| "-".to_owned(), |x| format!("{x} ms"))
            ),
            v,
        ))
    }

    async fn resume(&self, ctx: &StepContext, req: &StepRequest) -> Result<StepResult, StepError> {
        self.run(ctx, req).await
    }

    async fn compensate(&self, _: &StepContext, _: &StepRequest, _: &StepResult) -> Result<StepResult, StepError> {
        Ok(StepResult::new("nothing to undo", json!({})))
    }
}

#[derive(Deserialize)]
struct PromoteParams {
    service: String,
    release: String,
    spec_digest: String,
    /// What was stable before, restored by compensation.
    previous: Option<String>,
    previous_spec: Option<String>,
}

struct Promote;

async fn set_stable(
    req: &StepRequest,
    service: &str,
    release: Option<&String>,
    spec: Option<&String>,
    now: u64,
) -> Result<(), StepError> {
    let key = skiff_state::keys::service_state(service);
    ledger(req)?
        .update::<ServiceState, _>(&key, |cur| {
            let mut s = cur.cloned().unwrap_or_else(|| ServiceState::new(service));
            if s.stable_release.as_ref() != release {
                s.previous_stable = s.stable_release.clone();
            }
            s.current_release = release.cloned();
            s.stable_release = release.cloned();
            s.candidate_release = None;
            if let Some(d) = spec {
                s.spec_digest = Some(d.clone());
            }
            s.updated_at_ms = now;
            Ok(skiff_state::Update::Write(s))
        })
        .await
        .map_err(crate::ledger_error)?;
    Ok(())
}

#[async_trait]
impl Step for Promote {
    fn kind(&self) -> &str {
        "deploy.promote"
    }

    async fn plan(&self, _: &StepContext, req: &StepRequest) -> Result<StepPlan, StepError> {
        let p: PromoteParams = params(req)?;
        Ok(StepPlan {
            description: format!("record {} as the stable release of {}", p.release, p.service),
            safety: Safety::Reversible,
            risk: Risk::None,
            expected_duration_ms: 50,
            affected_resources: vec![format!("services/{}/state.json", p.service)],
        })
    }

    async fn run(&self, ctx: &StepContext, req: &StepRequest) -> Result<StepResult, StepError> {
        let p: PromoteParams = params(req)?;
        set_stable(req, &p.service, Some(&p.release), Some(&p.spec_digest), ctx.now_ms()).await?;
        Ok(StepResult::new(format!("{} is the stable release", p.release), json!({"stable": p.release})))
    }

    async fn resume(&self, ctx: &StepContext, req: &StepRequest) -> Result<StepResult, StepError> {
        self.run(ctx, req).await
    }

    async fn compensate(&self, ctx: &StepContext, req: &StepRequest, _: &StepResult) -> Result<StepResult, StepError> {
        let p: PromoteParams = params(req)?;
        set_stable(req, &p.service, p.previous.as_ref(), p.previous_spec.as_ref(), ctx.now_ms()).await?;
        Ok(StepResult::new(format!("stable release back to {}", p.previous.as_deref().unwrap_or("none")), json!({})))
    }
}

#[derive(Deserialize)]
struct RetireParams {
    service: String,
    group: String,
    target_group: Option<String>,
    drain_ms: u64,
    retention_ms: u64,
}

struct Retire;

#[async_trait]
impl Step for Retire {
    fn kind(&self) -> &str {
        "deploy.retire"
    }

    async fn plan(&self, _: &StepContext, req: &StepRequest) -> Result<StepPlan, StepError> {
        let p: RetireParams = params(req)?;
        let mut affected = vec![format!("instance-group/{}", p.group)];
        affected.extend(p.target_group.iter().map(|t| format!("target-group/{t}")));
        Ok(StepPlan {
            description: format!(
                "after {}s of retention, drain ({}s) and stop the previous group {}; `skiff rollback {}` re-creates it",
                p.retention_ms / 1000,
                p.drain_ms / 1000,
                p.group,
                p.service
            ),
            safety: Safety::Irreversible,
            risk: Risk::Low,
            expected_duration_ms: p.retention_ms + p.drain_ms,
            affected_resources: affected,
        })
    }

    async fn run(&self, ctx: &StepContext, req: &StepRequest) -> Result<StepResult, StepError> {
        let p: RetireParams = params(req)?;
        let prov = provider(req)?;
        let mut cancel = req.cancel.clone();
        if p.retention_ms > 0 {
            ctx.progress(&format!("keeping {} for {}s", p.group, p.retention_ms / 1000), json!({})).await;
            cancel.sleep(Duration::from_millis(p.retention_ms)).await?;
        }
        if let Some(tg) = &p.target_group {
            let weights = prov.traffic().weights(&p.service).await.map_err(provider_error)?;
            if weights.iter().any(|w| &w.target_group == tg && w.weight > 0) {
                return Err(StepError::terminal(
                    "OPERATION_FAILED",
                    format!("{tg} still takes traffic; it is not retired while it serves"),
                ));
            }
            let targets: Vec<String> =
                prov.traffic().target_health(tg).await.map_err(provider_error)?.into_iter().map(|t| t.id).collect();
            if !targets.is_empty() {
                prov.traffic().deregister(tg, &targets).await.map_err(provider_error)?;
                ctx.progress(&format!("draining {} targets of {tg}", targets.len()), json!({})).await;
                cancel.sleep(Duration::from_millis(p.drain_ms)).await?;
            }
            prov.traffic().delete_target_group(tg).await.map_err(provider_error)?;
        }
        prov.compute().delete_group(&p.group).await.map_err(provider_error)?;
        Ok(StepResult::new(format!("retired {}", p.group), json!({"group": p.group})))
    }

    async fn resume(&self, ctx: &StepContext, req: &StepRequest) -> Result<StepResult, StepError> {
        self.run(ctx, req).await
    }

    async fn compensate(&self, _: &StepContext, _: &StepRequest, _: &StepResult) -> Result<StepResult, StepError> {
        Err(StepError::terminal("INTERNAL", "retiring is irreversible and never compensated"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use skiff_pluginapi::LATENCY_BUCKETS_MS;
    use skiff_sagaapi::ErrorClass;

    fn stats(requests: u64, errors: u64, latency_ms: u64) -> TrafficStats {
        let mut buckets = vec![0; LATENCY_BUCKETS_MS.len()];
        let i = LATENCY_BUCKETS_MS.iter().position(|b| latency_ms <= *b).unwrap();
        buckets[i] = requests;
        TrafficStats { requests, errors, latency_buckets: buckets }
    }

    const T: Thresholds = Thresholds { max_error_rate: 0.01, max_p95_ms: 250, min_requests: 20 };

    fn unhealthy(reason: &str) -> TargetHealth {
        TargetHealth { id: reason.into(), state: HealthState::Unhealthy, reason: Some(reason.into()) }
    }

    #[test]
    fn an_answered_status_outranks_a_transport_error_in_the_health_fact() {
        let h = [unhealthy("connection closed before a response"), unhealthy("/healthz answered 500")];
        assert_eq!(health_fact(&h).as_deref(), Some("new targets return 500 on /healthz"));
        let h = [unhealthy("/healthz timed out")];
        assert_eq!(health_fact(&h).as_deref(), Some("new targets fail their health check: /healthz timed out"));
        assert_eq!(health_fact(&[]), None);
    }

    #[test]
    fn a_healthy_canary_passes() {
        let v = judge(&T, &stats(100, 0, 10), Some(&stats(1900, 1, 10))).unwrap();
        assert_eq!((v.requests, v.p95_ms), (100, Some(10)));
    }

    #[test]
    fn too_few_requests_hold_unless_the_error_budget_is_spent() {
        let e = judge(&T, &stats(8, 0, 10), None).unwrap_err();
        assert_eq!((e.class, e.code.as_str()), (ErrorClass::Hold, "ANALYSIS_INCONCLUSIVE"));
        let e = judge(&T, &stats(8, 1, 10), None).unwrap_err();
        assert_eq!((e.class, e.code.as_str()), (ErrorClass::Terminal, "CANARY_FAILED"));
    }

    #[test]
    fn thresholds_and_the_baseline_fail_a_canary() {
        let e = judge(&T, &stats(100, 5, 10), None).unwrap_err();
        assert!(e.facts[0].contains("error rate 5.0%"), "{e:?}");
        let e = judge(&T, &stats(100, 0, 300), None).unwrap_err();
        assert!(e.facts[0].contains("p95 latency 300 ms exceeds 250 ms"), "{e:?}");
        // Within the absolute limit, but far slower than stable.
        let e = judge(&T, &stats(100, 0, 200), Some(&stats(1000, 0, 20))).unwrap_err();
        assert!(e.facts.iter().any(|f| f.contains("over twice the stable group's")), "{e:?}");
    }

    #[test]
    fn weights_compare_without_zero_entries_or_order() {
        let w = |t: &str, n| Weight { target_group: t.into(), weight: n };
        assert!(same_weights(&[w("a", 100), w("b", 0)], &[w("a", 100)]));
        assert!(same_weights(&[w("b", 5), w("a", 95)], &[w("a", 95), w("b", 5)]));
        assert!(!same_weights(&[w("a", 100)], &[w("a", 95), w("b", 5)]));
    }

    #[test]
    fn the_graph_canaries_only_against_a_serving_stable_group() {
        let group: GroupSpec = serde_json::from_value(json!({
            "name": "web-r2", "service": "web", "release": "r2", "desired": 2, "zones": ["local-a"],
            "launch": {"instance_type": "t", "spot": false, "command": ["x"], "env": {}, "secrets": {}, "port": 8080,
                "health": null, "drain_timeout_ms": 0, "role": null, "log_group": null,
                "runner": {"bucket": "memory://", "public_key_pem": "", "heartbeat_ms": 1000}}
        }))
        .unwrap();
        let health = skiff_pluginapi::HealthCheck {
            path: "/healthz".into(),
            interval_ms: 1000,
            timeout_ms: 500,
            healthy_threshold: 1,
            unhealthy_threshold: 2,
        };
        let tg = TargetGroupSpec {
            name: "web-r2".into(),
            service: "web".into(),
            port: 8080,
            health,
            deregistration_delay_ms: 0,
        };
        let mut r = Rollout {
            service: "web".into(),
            release: "r2".into(),
            spec_digest: "d".into(),
            group,
            traffic: Some(TrafficPlan { target_group: tg, listener_port: 8080 }),
            stable: Some(Stable {
                release: "r1".into(),
                group: "web-r1".into(),
                target_group: Some("web-r1".into()),
                spec_digest: None,
                serving: true,
            }),
            steps: vec![5, 100],
            bake_ms: 1000,
            thresholds: T,
            step_timeout_ms: 1000,
            drain_ms: 0,
            retention_ms: 0,
            role: None,
            log_group: None,
        };
        let ids = |g: SagaGraph| {
            serde_json::to_value(&g).unwrap()["steps"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| s["id"].as_str().unwrap().to_owned())
                .collect::<Vec<_>>()
        };
        assert_eq!(
            ids(deploy_graph(&r).unwrap()),
            ["provision", "register", "shift-5", "analyse-5", "shift-100", "analyse-100", "promote", "retire"]
        );
        r.stable.as_mut().unwrap().serving = false;
        assert_eq!(ids(deploy_graph(&r).unwrap()), ["provision", "register", "shift-100", "promote", "retire"]);
        r.stable = None;
        assert_eq!(ids(rollback_graph(&r).unwrap()), ["provision", "register", "shift-100", "promote"]);
    }
}
