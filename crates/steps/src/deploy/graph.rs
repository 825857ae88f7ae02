//! The step graphs of `deploy` and `rollback`, built from a [`Rollout`].

use serde_json::json;
use skiff_saga::{SagaBuilder, SagaError, SagaGraph};

use skiff_spec::HookPoint;

use super::Rollout;

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

/// What makes a rollout a shadow deploy.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ShadowPlan {
    /// Percent of GET/HEAD requests copied to the shadow during the bake.
    pub mirror_percent: Option<u32>,
    /// The shadow release it replaces (and its group, retired at the end).
    pub previous: Option<(String, String)>,
}

/// The shadow graph: the release runs and is health-checked without user traffic
/// (its target group is outside the weights), optionally mirrored for a bake, then
/// recorded as the service's shadow release; a previous shadow is retired.
pub fn shadow_graph(r: &Rollout, s: &ShadowPlan) -> Result<SagaGraph, SagaError> {
    let t = r.step_timeout_ms;
    let mut b = SagaBuilder::new("shadow-deploy");
    if let Some(db) = &r.database {
        b = b
            .step("database", "deploy.database", serde_json::to_value(db).unwrap_or_default())
            .timeout_ms(t.max(DB_MS));
    }
    if let Some(m) = r.migration.as_ref().filter(|m| m.phase == skiff_spec::MigrationPhase::BeforeCanary) {
        b = b
            .step("migrate", "deploy.migrate", serde_json::to_value(m).unwrap_or_default())
            .timeout_ms(m.timeout_ms + t);
        if m.down.is_none() {
            b = b.require_approval();
        }
    }
    b = b
        .step(
            "provision",
            "deploy.provision",
            json!({"group": r.group, "service": r.service, "role": r.role, "log_group": r.log_group, "owned": r.terraform_owned}),
        )
        .timeout_ms(t);
    let tp = r.traffic.as_ref().ok_or_else(|| SagaError::InvalidGraph {
        saga: "shadow-deploy".to_owned(),
        why: format!("{} serves no port: a shadow release is one that takes no traffic", r.service),
    })?;
    b = b
        .step(
            "register",
            "deploy.register",
            json!({"service": r.service, "target_group": tp.target_group, "listener_port": tp.listener_port, "owned": r.terraform_owned}),
        )
        .timeout_ms(t);
    if let Some(percent) = s.mirror_percent {
        let bake = r.bake_ms.max(1_000);
        let mirror =
            json!({"service": r.service, "target_group": tp.target_group.name, "percent": percent, "bake_ms": bake});
        b = b.step("mirror", "deploy.mirror", mirror).timeout_ms(bake + t);
    }
    b = b
        .step(
            "shadow",
            "deploy.shadow",
            json!({"service": r.service, "release": r.release, "previous": s.previous.as_ref().map(|p| &p.0)}),
        )
        .timeout_ms(t);
    if let Some((_, group)) = s.previous.as_ref().filter(|(_, g)| g != &r.group.name) {
        let retire = json!({
            "service": r.service, "group": group, "target_group": group, "drain_ms": 0, "retention_ms": 0,
        });
        b = b.step("retire", "deploy.retire", retire).timeout_ms(t).retry(5, 1_000);
    }
    b.build()
}

/// The least time creating a managed database gets (RDS takes minutes).
const DB_MS: u64 = 60 * 60 * 1000;

fn graph(saga: &str, r: &Rollout, canary: bool) -> Result<SagaGraph, SagaError> {
    let t = r.step_timeout_ms;
    let mut b = SagaBuilder::new(saga);
    // A rollback goes back to a release that ran against the database already.
    if let Some(db) = r.database.as_ref().filter(|_| saga == "deploy") {
        b = b
            .step("database", "deploy.database", serde_json::to_value(db).unwrap_or_default())
            .timeout_ms(t.max(DB_MS));
        for replica in &r.replicas {
            b = b
                .step(
                    &format!("replica-{}", replica.region),
                    "deploy.replica",
                    serde_json::to_value(replica).unwrap_or_default(),
                )
                .timeout_ms(t.max(DB_MS));
        }
    }
    // A migration before the canary runs first, on its own task instance: a failed one
    // stops the deploy before any instance starts, and compensation of everything after
    // an irreversible one still removes the new group.
    let migration = r.migration.as_ref().filter(|_| saga == "deploy");
    let migrate = |b: SagaBuilder, m: &super::MigrationPlan| {
        let b = b.step("migrate", "deploy.migrate", serde_json::to_value(m).unwrap_or_default()).timeout_ms(
            // Its own time, starting the task instance, and writing the record.
            m.timeout_ms + t,
        );
        // Without a `down` it is irreversible: it waits for approval, as policy asks.
        if m.down.is_none() { b.require_approval() } else { b }
    };
    if let Some(m) = migration.filter(|m| m.phase == skiff_spec::MigrationPhase::BeforeCanary) {
        b = migrate(b, m);
    }
    if saga == "deploy" {
        b = hooks(b, r, HookPoint::BeforeStart);
    }
    let mut b = b
        .step(
            "provision",
            "deploy.provision",
            json!({"group": r.group, "service": r.service, "role": r.role, "log_group": r.log_group, "owned": r.terraform_owned}),
        )
        .timeout_ms(t);
    let canary_tg = r.traffic.as_ref().map(|tp| tp.target_group.name.clone());
    let stable_tg = r.stable.as_ref().and_then(|s| s.target_group.clone());
    if let Some(tp) = &r.traffic {
        b = b
            .step(
                "register",
                "deploy.register",
                json!({"service": r.service, "target_group": tp.target_group, "listener_port": tp.listener_port, "owned": r.terraform_owned}),
            )
            .timeout_ms(t);
    }
    if saga == "deploy" {
        b = hooks(b, r, HookPoint::BeforeTraffic);
    }
    if r.traffic.is_some() {
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
    if let Some(m) = migration.filter(|m| m.phase == skiff_spec::MigrationPhase::AfterPromote) {
        b = migrate(b, m);
    }
    if saga == "deploy" {
        b = hooks(b, r, HookPoint::AfterPromote);
    }
    b = regions(b, r);
    if let Some(s) = &r.stable
        && s.group != r.group.name
    {
        let retire = json!({
            "service": r.service, "group": s.group, "target_group": s.target_group,
            "drain_ms": r.drain_ms, "retention_ms": r.retention_ms,
        });
        b = b.step("retire", "deploy.retire", retire).timeout_ms(r.retention_ms + r.drain_ms + t).retry(5, 1_000);
        for region in r.regions.iter().filter(|_| r.traffic.is_some()) {
            let old = skiff_compiler::regional_name(&s.group, region);
            let retire = json!({
                "service": r.service, "group": old, "target_group": s.target_group.as_ref().map(|_| &old),
                "drain_ms": r.drain_ms, "retention_ms": r.retention_ms,
                "load_balancer": skiff_compiler::regional_name(&r.service, region),
            });
            b = b
                .step(&format!("retire-{region}"), "deploy.retire", retire)
                .timeout_ms(r.retention_ms + r.drain_ms + t)
                .retry(5, 1_000);
        }
    }
    b.build()
}

/// The plugin steps of `rollout.hooks` that run at `at`, each `hook-PLUGIN-NAME` (`-2`,
/// `-3` for the same kind again), with the service, the release and the spec's `with`.
fn hooks(mut b: SagaBuilder, r: &Rollout, at: HookPoint) -> SagaBuilder {
    for (i, h) in r.hooks.iter().enumerate() {
        if h.at != at {
            continue;
        }
        let n = r.hooks[..i].iter().filter(|o| o.step == h.step).count();
        let name = h.step.replace('.', "-");
        let id = if n == 0 { format!("hook-{name}") } else { format!("hook-{name}-{}", n + 1) };
        let params = json!({"service": r.service, "release": r.release, "with": h.with});
        b = b.step(&id, &h.step, params).timeout_ms(r.step_timeout_ms);
    }
    b
}

/// After the primary region promoted the release: in every other region its own group
/// behind that region's load balancer (all of the region's traffic at once: the canary
/// judged the release already), then the global front across the regions.
fn regions(mut b: SagaBuilder, r: &Rollout) -> SagaBuilder {
    let t = r.step_timeout_ms;
    let Some(tp) = &r.traffic else { return b };
    for region in &r.regions {
        let mut group = r.group.clone();
        group.name = skiff_compiler::regional_name(&group.name, region);
        group.zones = skiff_compiler::zones_in(&group.zones, region);
        let mut tg = tp.target_group.clone();
        tg.name = group.name.clone();
        let lb = skiff_compiler::regional_name(&r.service, region);
        let provision = format!("provision-{region}");
        let stable = r.stable.as_ref().filter(|s| s.target_group.is_some() && s.group != r.group.name);
        b = b
            .step(
                &provision,
                "deploy.provision",
                json!({"group": group, "service": r.service, "role": r.role, "log_group": r.log_group}),
            )
            .timeout_ms(t)
            .step(
                &format!("register-{region}"),
                "deploy.register",
                json!({"service": lb, "target_group": tg, "listener_port": 0, "provisioned_by": provision}),
            )
            .timeout_ms(t)
            .step(
                &format!("shift-{region}"),
                "deploy.shift",
                json!({
                    "service": lb, "canary": tg.name, "weight": 100,
                    "stable": stable.map(|s| skiff_compiler::regional_name(&s.group, region)),
                }),
            )
            .timeout_ms(t);
    }
    if let Some(front) = &r.front {
        b = b.step("front", "deploy.front", serde_json::to_value(front).unwrap_or_default()).timeout_ms(t);
    }
    b
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deploy::{Stable, Thresholds, TrafficPlan};
    use skiff_pluginapi::{GroupSpec, TargetGroupSpec};

    const T: Thresholds = Thresholds { max_error_rate: 0.01, max_p95_ms: 250, min_requests: 20 };

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
            target_type: skiff_pluginapi::TargetType::Instance,
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
            database: None,
            replicas: Vec::new(),
            migration: None,
            terraform_owned: Vec::new(),
            regions: Vec::new(),
            front: None,
            hooks: Vec::new(),
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
        // A managed database is ensured before a deploy's instances start, never by a rollback.
        r.database = Some(skiff_pluginapi::DatabaseSpec {
            id: "web-db".into(),
            name: "web_db".into(),
            engine: "postgres".into(),
            version: "16".into(),
            instance_class: "db.t4g.small".into(),
            storage_gib: 20,
            multi_az: false,
            backup_retention_days: 7,
        });
        assert_eq!(ids(deploy_graph(&r).unwrap())[..2], ["database", "provision"]);
        assert_eq!(ids(rollback_graph(&r).unwrap()), ["provision", "register", "shift-100", "promote"]);
        // Plugin hooks run in a deploy where the spec puts them (the same kind twice
        // gets a second id), never in a rollback.
        let hook = |at| skiff_ir::HookIr { step: "changelog.append".into(), at, with: Default::default() };
        r.hooks = vec![hook(HookPoint::BeforeTraffic), hook(HookPoint::AfterPromote)];
        assert_eq!(
            ids(deploy_graph(&r).unwrap()),
            [
                "database",
                "provision",
                "register",
                "hook-changelog-append",
                "shift-100",
                "promote",
                "hook-changelog-append-2"
            ]
        );
        assert_eq!(ids(rollback_graph(&r).unwrap()), ["provision", "register", "shift-100", "promote"]);
        r.hooks.clear();
        // A second region gets the promoted release in its own group, then the front
        // points at both; the previous release is retired in both.
        r.database = None;
        r.regions = vec!["us-west-2".into()];
        r.front = Some(crate::deploy::FrontPlan {
            service: "web".into(),
            regions: vec![("us-east-1".into(), "web".into()), ("us-west-2".into(), "web-us-west-2".into())],
            health: r.traffic.as_ref().unwrap().target_group.health.clone(),
            initial_region: "us-east-1".into(),
        });
        r.stable = Some(Stable {
            release: "r1".into(),
            group: "web-r1".into(),
            target_group: Some("web-r1".into()),
            spec_digest: None,
            serving: false,
        });
        assert_eq!(
            ids(deploy_graph(&r).unwrap()),
            [
                "provision",
                "register",
                "shift-100",
                "promote",
                "provision-us-west-2",
                "register-us-west-2",
                "shift-us-west-2",
                "front",
                "retire",
                "retire-us-west-2"
            ]
        );
        let g = serde_json::to_value(deploy_graph(&r).unwrap()).unwrap();
        let step = |id: &str| g["steps"].as_array().unwrap().iter().find(|s| s["id"] == id).unwrap().clone();
        assert_eq!(step("provision-us-west-2")["params"]["group"]["name"], "web-r2-us-west-2");
        assert_eq!(step("register-us-west-2")["params"]["service"], "web-us-west-2");
        assert_eq!(step("retire-us-west-2")["params"]["load_balancer"], "web-us-west-2");
    }
}
