//! The `traffic-cutover` saga: a service's traffic moves from an old backend (a
//! Kubernetes Service, or any HTTP server) to its Skiff release step by step. The
//! service's load balancer gains an external target group for the old backend
//! (`cutover.attach`, which sends it all traffic first), then each step shifts a
//! weight to the Skiff side with read-back (`deploy.shift`) and bakes and judges the
//! Skiff side against the old one (`deploy.analyse`: error rate, and p95 against the
//! old side's). The move to 100% waits for approval; the Skiff release is promoted;
//! and the old backend is retired only on evidence (`cutover.retire_old`, irreversible
//! and approved): the verdicts are recorded, the scale-down of the old workload runs
//! (given a kubeconfig) or is printed, and the external target group is removed.
//! Any failure or rejection before that returns every weight to the old backend.

use serde::{Deserialize, Serialize};
use serde_json::json;
use skiff_pluginapi::{HealthCheck, HealthState, LoadBalancerSpec, Target, TargetGroupSpec, TargetType, Weight};
use skiff_saga::{Registry, SagaBuilder, SagaError, SagaGraph};
use skiff_sagaapi::{Risk, Safety, Step, StepCode, StepContext, StepError, StepPlan, StepRequest, StepResult};
use skiff_state::Ledger;
use skiff_state::docs::CutoverRecord;

use crate::deploy::{POLL, Thresholds, apply_weights, provider, provider_error};
use crate::{ledger_error, step_plan};

/// `traffic-cutover` in the catalog: planned from the ledger by `skiff saga start`.
pub(crate) const KIND: crate::SagaKind = crate::SagaKind {
    name: "traffic-cutover",
    description: "move a service's traffic from an old backend (any HTTP URL) to its Skiff release step by step, judged against the old side; approval before 100% and before the old backend is retired",
    params: &[
        ("from", "the old backend, http://HOST:PORT (also `--from`)"),
        ("steps", "weights on the Skiff side, ascending, ending at 100 (also `--steps`; default 5,25,50,100)"),
        ("health", "the old backend's health-check path (default /)"),
        ("workload", "the old workload to scale down at the end (default deployment/SERVICE)"),
        ("namespace", "its Kubernetes namespace"),
        (
            "kubeconfig",
            "run the scale-down with kubectl and this kubeconfig (also `--kubeconfig`); without it, it is printed",
        ),
    ],
    build: |_| {
        Err(crate::deploy::needs_command(
            "traffic-cutover",
            "skiff saga start traffic-cutover --service SERVICE --from http://HOST:PORT --yes",
        ))
    },
};

/// The old backend, resolved.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OldBackend {
    /// As given: `http://old-web.shop:8080`.
    pub url: String,
    /// Its IP address (the load balancer's target).
    pub address: String,
    /// Its port.
    pub port: u16,
    /// Its health-check path.
    pub health: String,
}

/// Everything a cutover needs, decided before it runs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CutoverPlan {
    /// The service.
    pub service: String,
    /// The Skiff release taking the traffic.
    pub release: String,
    /// Whether that release is the shadow release (promoted at the end).
    pub from_shadow: bool,
    /// The IR digest of the release.
    pub spec_digest: Option<String>,
    /// The stable release before (restored if the promotion is undone).
    pub previous_stable: Option<String>,
    /// The Skiff side's target group.
    pub target_group: String,
    /// The load balancer's port.
    pub listener_port: u16,
    /// The old backend.
    pub old: OldBackend,
    /// Weights on the Skiff side, ascending, ending at 100.
    pub steps: Vec<u32>,
    /// Bake time after each shift (0: no analysis).
    pub bake_ms: u64,
    /// Analysis thresholds.
    pub thresholds: Thresholds,
    /// Deadline of each step.
    pub step_timeout_ms: u64,
    /// The old workload (`deployment/web`).
    pub workload: String,
    /// Its namespace.
    pub namespace: Option<String>,
    /// The kubeconfig the scale-down runs with; `None` prints it.
    pub kubeconfig: Option<String>,
}

impl CutoverPlan {
    /// The old backend's target group: `<service>-external`.
    pub fn external_group(&self) -> String {
        format!("{}-external", self.service)
    }

    /// The scale-down command of the old workload.
    pub fn scale_down(&self) -> Vec<String> {
        let mut c = vec!["kubectl".to_owned()];
        if let Some(k) = &self.kubeconfig {
            c.extend(["--kubeconfig".to_owned(), k.clone()]);
        }
        if let Some(n) = &self.namespace {
            c.extend(["-n".to_owned(), n.clone()]);
        }
        c.extend(["scale".to_owned(), self.workload.clone(), "--replicas=0".to_owned()]);
        c
    }
}

/// Parses `5,25,50,100`: ascending weights from 1 to 100, ending at 100.
pub fn parse_steps(text: &str) -> Result<Vec<u32>, String> {
    let steps: Vec<u32> = text
        .split(',')
        .map(|s| s.trim().parse::<u32>().map_err(|_| format!("`{}` is not a whole percent", s.trim())))
        .collect::<Result<_, _>>()?;
    if steps.iter().any(|w| *w == 0 || *w > 100) {
        return Err("each step is a percent from 1 to 100".to_owned());
    }
    if steps.windows(2).any(|w| w[0] >= w[1]) {
        return Err("steps go up: each weight is higher than the one before".to_owned());
    }
    if steps.last() != Some(&100) {
        return Err("the last step is 100: a cutover ends with all traffic on Skiff".to_owned());
    }
    Ok(steps)
}

/// The cutover graph.
pub fn cutover_graph(p: &CutoverPlan) -> Result<SagaGraph, SagaError> {
    let t = p.step_timeout_ms;
    let plan = serde_json::to_value(p).unwrap_or_default();
    let (skiff, old) = (p.target_group.clone(), p.external_group());
    let mut b = SagaBuilder::new("traffic-cutover").step("attach", "cutover.attach", plan.clone()).timeout_ms(t);
    for w in &p.steps {
        let shift = json!({"service": p.service, "canary": skiff, "stable": old, "weight": w});
        b = b.step(&format!("shift-{w}"), "deploy.shift", shift).timeout_ms(t);
        if *w == 100 {
            b = b.require_approval();
        }
        if p.bake_ms > 0 {
            let analyse = json!({
                "service": p.service, "canary": skiff, "stable": old, "weight": w,
                "bake_ms": p.bake_ms, "thresholds": p.thresholds,
            });
            b = b.step(&format!("analyse-{w}"), "deploy.analyse", analyse).timeout_ms(p.bake_ms + t);
        }
    }
    b.step(
        "promote",
        "deploy.promote",
        json!({
            "service": p.service, "release": p.release, "spec_digest": p.spec_digest.clone().unwrap_or_default(),
            "previous": p.previous_stable, "previous_spec": null, "shadow": p.from_shadow,
        }),
    )
    .timeout_ms(t)
    .step("retire-old", "cutover.retire_old", plan)
    .require_approval()
    .timeout_ms(t)
    .build()
}

/// Registers the cutover step kinds.
pub(crate) fn register(r: Registry) -> Registry {
    r.with(Attach).with(RetireOld)
}

fn plan_of(req: &StepRequest) -> Result<CutoverPlan, StepError> {
    req.params_as()
}

fn external_spec(p: &CutoverPlan) -> TargetGroupSpec {
    TargetGroupSpec {
        name: p.external_group(),
        service: p.service.clone(),
        port: p.old.port,
        health: HealthCheck {
            path: p.old.health.clone(),
            interval_ms: 1_000,
            timeout_ms: 1_000,
            healthy_threshold: 1,
            unhealthy_threshold: 3,
        },
        deregistration_delay_ms: 1_000,
        target_type: TargetType::Ip,
    }
}

/// Waits until the target group has a healthy target; the error says why not.
async fn wait_healthy(
    req: &StepRequest,
    tg: &str,
    what: &str,
    patience_ms: u64,
    ctx: &StepContext,
) -> Result<(), StepError> {
    let traffic = provider(req)?.traffic();
    let start = ctx.now_ms();
    let mut cancel = req.cancel.clone();
    loop {
        let health = traffic.target_health(tg).await.map_err(provider_error)?;
        if health.iter().any(|h| h.state == HealthState::Healthy) {
            return Ok(());
        }
        if ctx.now_ms().saturating_sub(start) > patience_ms {
            let why = health.iter().find_map(|h| h.reason.clone()).unwrap_or_else(|| "no verdict yet".to_owned());
            return Err(StepError::terminal(StepCode::OperationFailed, format!("{what} has no healthy target"))
                .fact(format!("{tg}: {why}")));
        }
        cancel.sleep(POLL).await?;
    }
}

struct Attach;

#[async_trait::async_trait]
impl Step for Attach {
    fn kind(&self) -> &str {
        "cutover.attach"
    }

    async fn plan(&self, _: &StepContext, req: &StepRequest) -> Result<StepPlan, StepError> {
        let p = plan_of(req)?;
        Ok(step_plan(
            format!(
                "add the old backend {} ({}:{}, health {}) to the load balancer of {} as target group {} and send it all traffic; {} waits at 0%",
                p.old.url,
                p.old.address,
                p.old.port,
                p.old.health,
                p.service,
                p.external_group(),
                p.target_group
            ),
            Safety::Reversible,
            Risk::Medium,
            3_000,
            vec![format!("load-balancer/{}", p.service), format!("target-group/{}", p.external_group())],
        ))
    }

    async fn run(&self, ctx: &StepContext, req: &StepRequest) -> Result<StepResult, StepError> {
        let p = plan_of(req)?;
        let traffic = provider(req)?.traffic();
        let ext = external_spec(&p);
        traffic
            .ensure_load_balancer(&LoadBalancerSpec { service: p.service.clone(), listener_port: p.listener_port })
            .await
            .map_err(provider_error)?;
        traffic.ensure_target_group(&ext).await.map_err(provider_error)?;
        let target = Target { id: p.old.address.clone(), address: p.old.address.clone(), port: p.old.port };
        traffic.register(&ext.name, &[target]).await.map_err(provider_error)?;
        wait_healthy(req, &ext.name, &format!("the old backend {}", p.old.url), 10_000, ctx).await?;
        wait_healthy(req, &p.target_group, &format!("the Skiff side {}", p.target_group), 10_000, ctx)
            .await
            .map_err(|e| e.fact(format!("deploy {} first: `skiff deploy --shadow -f skiff.yaml`", p.service)))?;
        let previous = traffic.weights(&p.service).await.map_err(provider_error)?;
        let all_old = [Weight { target_group: ext.name.clone(), weight: 100 }];
        apply_weights(ctx, req, &p.service, &all_old, std::slice::from_ref(&ext.name)).await?;
        Ok(StepResult::new(
            format!("the old backend {} takes all traffic of {} through its load balancer", p.old.url, p.service),
            json!({"previous": previous, "external": ext.name}),
        ))
    }

    async fn resume(&self, ctx: &StepContext, req: &StepRequest) -> Result<StepResult, StepError> {
        self.run(ctx, req).await
    }

    async fn compensate(&self, ctx: &StepContext, req: &StepRequest, _: &StepResult) -> Result<StepResult, StepError> {
        // Undoing the cutover means the old backend serves everything, as before it.
        let p = plan_of(req)?;
        let all_old = [Weight { target_group: p.external_group(), weight: 100 }];
        apply_weights(ctx, req, &p.service, &all_old, &[p.external_group()]).await?;
        Ok(StepResult::new(format!("all traffic of {} stays on the old backend {}", p.service, p.old.url), json!({})))
    }
}

struct RetireOld;

/// The step's evidence, read from the ledger and the load balancer.
async fn evidence(req: &StepRequest, p: &CutoverPlan) -> Result<(serde_json::Value, u64), StepError> {
    let mut verdicts = serde_json::Map::new();
    for w in &p.steps {
        if let Ok(v) = req.input::<serde_json::Value>(&format!("analyse-{w}")) {
            verdicts.insert(w.to_string(), v);
        }
    }
    let traffic = provider(req)?.traffic();
    let weights = traffic.weights(&p.service).await.map_err(provider_error)?;
    let on_skiff = weights.iter().any(|w| w.target_group == p.target_group && w.weight == 100);
    if !on_skiff {
        let shown: Vec<String> = weights.iter().map(|w| format!("{} {}%", w.target_group, w.weight)).collect();
        return Err(StepError::terminal(StepCode::OperationFailed, "the Skiff side does not take all traffic")
            .fact(format!("weights in effect: {}", shown.join(", "))));
    }
    // Requests the old side still answered while the Skiff side baked at 100%.
    let after = verdicts.get("100").and_then(|v| v.pointer("/baseline/0")).and_then(serde_json::Value::as_u64);
    Ok((serde_json::Value::Object(verdicts), after.unwrap_or(0)))
}

async fn scale_down(p: &CutoverPlan, mut cancel: skiff_sagaapi::Cancellation) -> Result<(), StepError> {
    let cmd = p.scale_down();
    let mut child = tokio::process::Command::new(&cmd[0]);
    child.args(&cmd[1..]).kill_on_drop(true).stdin(std::process::Stdio::null());
    let run = child.output();
    let out = tokio::select! {
        out = run => out,
        () = cancel.cancelled() => return Err(StepError::retryable(StepCode::Cancelled, "cancelled during the scale-down")),
    };
    let hold = |why: String| {
        StepError::hold(StepCode::OperationFailed, format!("the scale-down of {} did not run", p.workload))
            .fact(why)
            .fact(format!("fix it, or run `{}` yourself, then resume the operation", cmd.join(" ")))
    };
    match out {
        Ok(o) if o.status.success() => Ok(()),
        Ok(o) => Err(hold(format!("{} exited {}: {}", cmd[0], o.status, String::from_utf8_lossy(&o.stderr).trim()))),
        Err(e) => Err(hold(format!("cannot run {}: {e}", cmd[0]))),
    }
}

#[async_trait::async_trait]
impl Step for RetireOld {
    fn kind(&self) -> &str {
        "cutover.retire_old"
    }

    async fn plan(&self, _: &StepContext, req: &StepRequest) -> Result<StepPlan, StepError> {
        let p = plan_of(req)?;
        let how = if p.kubeconfig.is_some() { "run" } else { "print" };
        Ok(step_plan(
            format!(
                "retire the old backend {}: record the evidence, {how} `{}`, and remove target group {} from the load balancer",
                p.old.url,
                p.scale_down().join(" "),
                p.external_group()
            ),
            Safety::Irreversible,
            Risk::High,
            5_000,
            vec![p.workload.clone(), format!("target-group/{}", p.external_group())],
        ))
    }

    async fn run(&self, _: &StepContext, req: &StepRequest) -> Result<StepResult, StepError> {
        let p = plan_of(req)?;
        let ledger = req.extensions.require::<Ledger>()?;
        let key = skiff_state::keys::cutover(&p.service, &req.op_id);
        // The record first (once): a crash after it re-runs only the idempotent rest.
        let record = match ledger.read::<CutoverRecord>(&key).await.map_err(ledger_error)? {
            Some(r) => r,
            None => {
                let (verdicts, old_requests_after) = evidence(req, &p).await?;
                let r = CutoverRecord {
                    op_id: req.op_id.clone(),
                    service: p.service.clone(),
                    release: p.release.clone(),
                    from: p.old.url.clone(),
                    steps: p.steps.clone(),
                    verdicts,
                    old_requests_after,
                    scale_down: p.scale_down().join(" "),
                    ran: p.kubeconfig.is_some(),
                    at_ms: ledger.clock().now_ms(),
                };
                ledger.create(&key, &r).await.map_err(ledger_error)?;
                r
            }
        };
        if p.kubeconfig.is_some() {
            scale_down(&p, req.cancel.clone()).await?;
        }
        let traffic = provider(req)?.traffic();
        traffic
            .set_weights(&p.service, &[Weight { target_group: p.target_group.clone(), weight: 100 }])
            .await
            .map_err(provider_error)?;
        traffic.delete_target_group(&p.external_group()).await.map_err(provider_error)?;
        let done = if record.ran {
            format!("ran `{}`", record.scale_down)
        } else {
            format!("scale it down: `{}`", record.scale_down)
        };
        Ok(StepResult::new(
            format!("the old backend {} is retired (evidence at {key}); {done}", p.old.url),
            json!({"record": key, "scale_down": record.scale_down, "ran": record.ran}),
        ))
    }

    async fn resume(&self, ctx: &StepContext, req: &StepRequest) -> Result<StepResult, StepError> {
        self.run(ctx, req).await
    }

    async fn compensate(&self, _: &StepContext, req: &StepRequest, _: &StepResult) -> Result<StepResult, StepError> {
        let p = plan_of(req)?;
        Err(StepError::terminal(StepCode::OperationFailed, "a retired backend does not come back by itself")
            .fact(format!("scale {} up again, then start a cutover the other way", p.workload)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(bake_ms: u64, kubeconfig: Option<&str>) -> CutoverPlan {
        CutoverPlan {
            service: "web".into(),
            release: "r2".into(),
            from_shadow: true,
            spec_digest: None,
            previous_stable: None,
            target_group: "web-r2".into(),
            listener_port: 8080,
            old: OldBackend {
                url: "http://10.0.0.1:80".into(),
                address: "10.0.0.1".into(),
                port: 80,
                health: "/".into(),
            },
            steps: vec![5, 50, 100],
            bake_ms,
            thresholds: Thresholds { max_error_rate: 0.01, max_p95_ms: 250, min_requests: 20 },
            step_timeout_ms: 1000,
            workload: "deployment/web".into(),
            namespace: Some("shop".into()),
            kubeconfig: kubeconfig.map(str::to_owned),
        }
    }

    fn steps(g: &SagaGraph) -> Vec<(String, bool)> {
        serde_json::to_value(g).unwrap()["steps"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| (s["id"].as_str().unwrap().to_owned(), s["approval"].as_bool().unwrap_or(false)))
            .collect()
    }

    #[test]
    fn the_graph_gates_100_percent_and_the_retirement() {
        let g = cutover_graph(&plan(1000, None)).unwrap();
        let gated: Vec<String> = steps(&g).into_iter().filter(|(_, a)| *a).map(|(id, _)| id).collect();
        assert_eq!(gated, ["shift-100", "retire-old"]);
        let ids: Vec<String> = steps(&g).into_iter().map(|(id, _)| id).collect();
        assert_eq!(
            ids,
            [
                "attach",
                "shift-5",
                "analyse-5",
                "shift-50",
                "analyse-50",
                "shift-100",
                "analyse-100",
                "promote",
                "retire-old"
            ]
        );
        let ids: Vec<String> = steps(&cutover_graph(&plan(0, None)).unwrap()).into_iter().map(|(id, _)| id).collect();
        assert_eq!(
            ids,
            ["attach", "shift-5", "shift-50", "shift-100", "promote", "retire-old"],
            "no bake, no analysis"
        );
    }

    #[test]
    fn the_scale_down_names_the_kubeconfig_and_namespace() {
        assert_eq!(plan(0, None).scale_down().join(" "), "kubectl -n shop scale deployment/web --replicas=0");
        assert_eq!(
            plan(0, Some("/k")).scale_down().join(" "),
            "kubectl --kubeconfig /k -n shop scale deployment/web --replicas=0"
        );
    }

    #[test]
    fn steps_go_up_to_100() {
        assert_eq!(parse_steps("5,25,50,100"), Ok(vec![5, 25, 50, 100]));
        assert_eq!(parse_steps("100"), Ok(vec![100]));
        assert!(parse_steps("5,25,50").unwrap_err().contains("last step is 100"));
        assert!(parse_steps("50,25,100").unwrap_err().contains("go up"));
        assert!(parse_steps("0,100").unwrap_err().contains("1 to 100"));
        assert!(parse_steps("5,x,100").unwrap_err().contains("`x`"));
    }
}
