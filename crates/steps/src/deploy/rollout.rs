//! What a rollout is, decided before anything runs: the release's instance group,
//! its traffic plan, canary steps, thresholds and deadlines, derived from the IR.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use skiff_ir::ServiceIr;
use skiff_pluginapi::{
    DatabaseSpec, GroupSpec, HealthCheck, LaunchConfig, Permission, RoleSpec, RunnerConfig, TargetGroupSpec,
};

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
    /// The managed database, ensured before instances start (a deploy only).
    #[serde(default)]
    pub database: Option<DatabaseSpec>,
    /// The release's schema migration (a deploy only).
    #[serde(default)]
    pub migration: Option<MigrationPlan>,
    /// Streaming replicas of the database in the other regions (a deploy only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub replicas: Vec<ReplicaPlan>,
    /// Logical ids Terraform owns (`skiff adopt terraform`): read, never changed.
    #[serde(default)]
    pub terraform_owned: Vec<String>,
    /// The regions after the primary: each gets the release in its own group behind its
    /// own load balancer once the canary in the primary promoted it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub regions: Vec<String>,
    /// The global traffic front across every region, for a service in several.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub front: Option<FrontPlan>,
    /// Plugin steps the deploy runs (`rollout.hooks`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hooks: Vec<skiff_ir::HookIr>,
}

/// A service's global traffic front, as a deploy ensures it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FrontPlan {
    /// The service.
    pub service: String,
    /// Every region with the load balancer that serves it, primary first.
    pub regions: Vec<(String, String)>,
    /// How each region is judged healthy.
    pub health: HealthCheck,
    /// The region a new front sends all traffic to (the one that writes).
    pub initial_region: String,
}

/// The load balancer serving `service` in `region` (the service's own in the primary).
pub fn regional_lb(ir: &ServiceIr, region: &str) -> String {
    if ir.regions.first().is_some_and(|r| r == region) {
        ir.service.clone()
    } else {
        skiff_compiler::regional_name(&ir.service, region)
    }
}

/// Every group a release of `ir` runs as: the primary region's, then one per other region.
pub fn release_groups(ir: &ServiceIr, release: &str) -> Vec<String> {
    let group = group_name(&ir.service, release);
    let others = skiff_compiler::secondary_regions(ir).iter().map(|r| skiff_compiler::regional_name(&group, r));
    std::iter::once(group.clone()).chain(others).collect()
}

fn front_plan(ir: &ServiceIr, writer_region: &str) -> Option<FrontPlan> {
    if skiff_compiler::secondary_regions(ir).is_empty() {
        return None;
    }
    Some(FrontPlan {
        service: ir.service.clone(),
        regions: ir.regions.iter().map(|r| (r.clone(), regional_lb(ir, r))).collect(),
        health: health_of(ir)?,
        initial_region: writer_region.to_owned(),
    })
}

impl Rollout {
    /// Points the replicas and a new traffic front at the region that writes now.
    pub fn follow_writer(&mut self, ir: &ServiceIr, writer: &str, writer_region: &str) {
        self.replicas = replica_plans(ir, writer, writer_region);
        self.front = front_plan(ir, writer_region);
    }
}

/// A release's schema migration, as its deploy runs it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MigrationPlan {
    /// The service.
    pub service: String,
    /// The release whose artifact carries it.
    pub release: String,
    /// The database it changes.
    pub database: String,
    /// The command (shown; the runner takes it from the signed release).
    pub command: Vec<String>,
    /// What undoes it; `None` makes the step irreversible.
    pub down: Option<Vec<String>>,
    /// When it runs.
    pub phase: skiff_spec::MigrationPhase,
    /// How long it may run, ms.
    pub timeout_ms: u64,
    /// The release's group: the task instance is launched like its instances.
    pub group: GroupSpec,
    /// The release taking traffic now, which meets the new schema during a canary.
    pub previous: Option<String>,
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
        trace: None,
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
            target_type: skiff_pluginapi::TargetType::Instance,
        },
        listener_port: network.port,
    })
}

/// A streaming replica a deploy ensures after the database.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplicaPlan {
    /// The instance it follows (the instance that writes).
    pub source: String,
    /// Its region.
    pub region: String,
    /// The replica instance.
    pub spec: DatabaseSpec,
}

/// The replicas of `ir`'s database: one in every region but `writer_region`, each
/// following `writer` (the instance that takes writes now).
pub fn replica_plans(ir: &ServiceIr, writer: &str, writer_region: &str) -> Vec<ReplicaPlan> {
    let (Some(db), Some(primary)) = (ir.database.as_ref(), database_spec(ir)) else { return Vec::new() };
    if db.replica_regions.is_empty() {
        return Vec::new();
    }
    ir.regions
        .iter()
        .filter(|r| r.as_str() != writer_region)
        .map(|region| ReplicaPlan {
            source: writer.to_owned(),
            region: region.clone(),
            spec: DatabaseSpec { id: skiff_compiler::replica_name(&db.name, region), ..primary.clone() },
        })
        .filter(|p| p.spec.id != writer)
        .collect()
}

/// The managed database of `ir` as the provider creates it: its id is its name, so
/// its credentials are behind `secret://NAME/url` on every provider.
pub fn database_spec(ir: &ServiceIr) -> Option<DatabaseSpec> {
    ir.database.as_ref().map(|db| DatabaseSpec {
        id: db.name.clone(),
        name: db.name.replace('-', "_"),
        engine: match db.engine {
            skiff_spec::DatabaseEngine::Postgres => "postgres".to_owned(),
        },
        version: db.version.clone(),
        instance_class: db.instance_class.clone(),
        storage_gib: db.storage_gib,
        multi_az: db.multi_az,
        backup_retention_days: u32::try_from(db.backup_retention.as_millis() / 86_400_000).unwrap_or(u32::MAX).max(1),
    })
}

/// The canary analysis thresholds of `ir`.
pub fn thresholds(ir: &ServiceIr) -> Thresholds {
    let a = &ir.rollout.analysis;
    Thresholds {
        max_error_rate: a.max_error_rate.fraction(),
        max_p95_ms: a.max_p95_latency.as_millis(),
        min_requests: u64::from(a.min_requests),
    }
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
    Rollout {
        service: ir.service.clone(),
        release: release.to_owned(),
        spec_digest: spec_digest.to_owned(),
        traffic: traffic_plan(ir, release),
        steps: if ir.rollout.strategy == skiff_spec::Strategy::AllAtOnce {
            vec![100]
        } else {
            ir.rollout.steps.clone()
        },
        bake_ms: ir.rollout.bake.as_millis(),
        thresholds: thresholds(ir),
        step_timeout_ms: ir.rollout.step_timeout.as_millis(),
        hooks: ir.rollout.hooks.clone(),
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
        database: database_spec(ir),
        replicas: ir.database.as_ref().map(|d| replica_plans(ir, &d.name, &ir.regions[0])).unwrap_or_default(),
        migration: ir.database.as_ref().and_then(|d| {
            let m = d.migrations.as_ref()?;
            Some(MigrationPlan {
                service: ir.service.clone(),
                release: release.to_owned(),
                database: d.name.clone(),
                command: m.command.clone(),
                down: m.down.clone(),
                phase: m.phase,
                timeout_ms: m.timeout.as_millis(),
                group: group.clone(),
                previous: stable.as_ref().map(|s| s.release.clone()),
            })
        }),
        group,
        stable,
        terraform_owned: Vec::new(),
        regions: skiff_compiler::secondary_regions(ir).to_vec(),
        front: front_plan(ir, &ir.regions[0]),
    }
}
