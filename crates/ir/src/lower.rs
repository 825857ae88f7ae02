//! Lowering a validated spec into the IR: apply defaults, resolve intent, and record
//! every choice with where it came from and why.

use std::fmt::Display;

use skiff_spec::values::{Duration, Percentage};
use skiff_spec::{Availability, Cost, DatabaseSize, MAX_INSTANCES, MigrationPhase, Spec, Strategy, WorkloadKind};

use crate::model::*;

/// Default region when a spec names none.
pub const DEFAULT_REGION: &str = "us-east-1";
/// Default environment when a spec names none.
pub const DEFAULT_ENVIRONMENT: &str = "production";
/// Default Postgres major version.
pub const DEFAULT_POSTGRES: &str = "16";

/// Compiles a spec into its IR. Total and pure: the same spec always gives the same IR.
///
/// The spec is expected to have passed [`skiff_spec::parse`]'s validation; lowering
/// does not re-check it.
pub fn compile(spec: &Spec) -> ServiceIr {
    if !spec.environments.is_empty() {
        // The spec's own environment's overlay applies; the IR's source is the result,
        // so compiling the source again gives the same IR.
        let env = spec.environment.clone().unwrap_or_else(|| {
            DEFAULT_ENVIRONMENT.parse().unwrap_or_else(|_| unreachable!("`production` is a DNS label"))
        });
        let mut merged = spec.for_environment(&env);
        merged.environment = spec.environment.clone();
        return compile(&merged);
    }
    let mut c = Choices::default();
    let workload = spec.kind.unwrap_or(WorkloadKind::Service);
    let environment = c.pick(
        "environment",
        spec.environment.as_ref().map(|e| e.to_string()),
        DEFAULT_ENVIRONMENT.to_owned(),
        Source::Default,
        "no environment named: production, the conservative choice (approval rules apply)",
    );
    let regions: Vec<String> = if spec.regions.is_empty() {
        c.note("regions", format!("[{DEFAULT_REGION}]"), Source::Default, "no regions named: one default region");
        vec![DEFAULT_REGION.to_owned()]
    } else {
        c.note("regions", list(&spec.regions), Source::Explicit, "set in the spec");
        spec.regions.iter().map(ToString::to_string).collect()
    };

    let availability_stated = spec.intent.as_ref().and_then(|i| i.availability);
    let cost_stated = spec.intent.as_ref().and_then(|i| i.cost);
    let availability = availability_stated.unwrap_or(Availability::Standard);
    let cost = cost_stated.unwrap_or(Cost::Balanced);
    let a_src = if availability_stated.is_some() { Source::Intent } else { Source::Default };
    let k_src = if cost_stated.is_some() { Source::Intent } else { Source::Default };

    let (capacity, availability_plan_reasons) =
        capacity(spec, workload, availability, a_src, cost, k_src, &regions[0], &mut c);
    let database = spec.database.as_ref().map(|db| {
        let size = c.pick(
            "database.size",
            db.size,
            if cost == Cost::Performance { DatabaseSize::Medium } else { DatabaseSize::Small },
            k_src,
            &format!("cost {}: {} database", cost, if cost == Cost::Performance { "medium" } else { "small" }),
        );
        let multi_az = availability == Availability::High;
        c.note(
            "database.multi_az",
            multi_az,
            a_src,
            if multi_az {
                "availability high: a standby in a second zone with automatic failover"
            } else {
                "availability below high: single zone, recovered from backups"
            },
        );
        let (instance_class, storage_gib) = match size {
            DatabaseSize::Small => ("db.t4g.small", 20),
            DatabaseSize::Medium => ("db.m7g.large", 100),
            DatabaseSize::Large => ("db.r7g.xlarge", 500),
        };
        DatabaseIr {
            name: db.name.to_string(),
            engine: db.engine,
            version: c.pick(
                "database.version",
                db.version.clone(),
                DEFAULT_POSTGRES.to_owned(),
                Source::Default,
                "current supported Postgres major",
            ),
            size,
            instance_class: instance_class.to_owned(),
            storage_gib,
            multi_az,
            backup_retention: c.pick(
                "database.backup_retention",
                db.backups.as_ref().and_then(|b| b.retention),
                Duration::from_secs(7 * 86_400),
                Source::Default,
                "a week of point-in-time recovery",
            ),
            migrations: db.migrations.as_ref().map(|m| MigrationIr {
                command: m.command.clone(),
                down: m.down.clone(),
                phase: m.phase.unwrap_or(MigrationPhase::BeforeCanary),
                timeout: m.timeout.unwrap_or(Duration::from_secs(300)),
            }),
            replica_regions: replica_regions(&regions, &db.name.to_string(), &mut c),
            automatic_failover: db.failover.as_ref().filter(|f| f.automatic).map(|f| AutoFailoverIr {
                max_lag_bytes: f.max_lag_bytes.unwrap_or(1 << 20),
                after: f.after.unwrap_or(Duration::from_secs(10)),
            }),
        }
    });

    let network = spec.port.filter(|_| workload == WorkloadKind::Service).map(|port| {
        let h = spec.health.clone().unwrap_or(skiff_spec::Health {
            path: None,
            interval: None,
            timeout: None,
            healthy_threshold: None,
            unhealthy_threshold: None,
        });
        NetworkIr {
            port,
            health: HealthIr {
                path: c.pick(
                    "health.path",
                    h.path.map(|p| p.to_string()),
                    "/healthz".to_owned(),
                    Source::Default,
                    "the conventional health path",
                ),
                interval: c.pick(
                    "health.interval",
                    h.interval,
                    Duration::from_secs(5),
                    Source::Default,
                    "probe every 5s",
                ),
                timeout: c.pick(
                    "health.timeout",
                    h.timeout,
                    Duration::from_secs(2),
                    Source::Default,
                    "a probe slower than 2s counts as failed",
                ),
                healthy_threshold: c.pick(
                    "health.healthy_threshold",
                    h.healthy_threshold,
                    2,
                    Source::Default,
                    "two passing probes before traffic",
                ),
                unhealthy_threshold: c.pick(
                    "health.unhealthy_threshold",
                    h.unhealthy_threshold,
                    2,
                    Source::Default,
                    "two failing probes before removal",
                ),
            },
        }
    });

    let rollout = rollout(spec, workload, &mut c);
    let logs = LogsIr {
        group: format!("/skiff/{environment}/{}", spec.service),
        retention: c.pick(
            "logs.retention",
            spec.logs.as_ref().and_then(|l| l.retention),
            Duration::from_secs(30 * 86_400),
            Source::Default,
            "a month of logs",
        ),
    };

    let availability_plan = AvailabilityPlan {
        level: availability,
        source: a_src,
        instances: capacity.desired,
        zones: u32::try_from(capacity.zones.len()).unwrap_or(u32::MAX),
        multi_az_database: database.as_ref().is_some_and(|d| d.multi_az),
        reasons: availability_plan_reasons,
    };
    let cost_plan = cost_plan(cost, k_src, workload, &capacity, database.as_ref());

    ServiceIr {
        kind: KIND.to_owned(),
        schema_version: SCHEMA_VERSION,
        service: spec.service.to_string(),
        workload,
        environment,
        artifact: ArtifactIr {
            build: spec.artifact.build.clone(),
            path: spec.artifact.path.clone(),
            url: spec.artifact.url.clone(),
            sha256: spec.artifact.sha256.as_ref().map(ToString::to_string),
        },
        run: RunIr {
            command: spec.run.command.clone(),
            env: spec.run.env.iter().map(|(k, v)| (k.to_string(), v.clone())).collect(),
        },
        network,
        capacity,
        secrets: spec.secrets.iter().map(|(k, v)| (k.to_string(), v.clone())).collect(),
        database,
        rollout,
        regions,
        iam: spec.iam.as_ref().map(|i| i.allow.clone()).unwrap_or_default(),
        logs,
        decision: Decision { availability_plan, cost_plan, choices: c.0 },
        source: spec.clone(),
    }
}

#[expect(clippy::too_many_arguments, reason = "one call site; the arguments are the intent already resolved")]
fn capacity(
    spec: &Spec,
    workload: WorkloadKind,
    availability: Availability,
    a_src: Source,
    cost: Cost,
    k_src: Source,
    primary_region: &str,
    c: &mut Choices,
) -> (CapacityIr, Vec<String>) {
    let given = match &spec.scale {
        // A queue-scaled group starts at its floor; the backlog moves it from there.
        Some(sc) => {
            let min = sc.min.unwrap_or(u32::from(workload == WorkloadKind::Service));
            skiff_spec::Instances { min: Some(min), max: Some(sc.max), desired: Some(min) }
        }
        None => spec.instances.clone().unwrap_or(skiff_spec::Instances { min: None, max: None, desired: None }),
    };
    let need = availability.min_instances();

    let mut reasons = Vec::new();
    let desired_default = need.clamp(given.min.unwrap_or(0), given.max.unwrap_or(MAX_INSTANCES));
    let why = match availability {
        Availability::High => "availability high: at least 3 instances, so losing a zone leaves two serving",
        Availability::Standard => {
            "availability standard: at least 2 instances, so one can fail or be replaced while another serves"
        }
        Availability::Low => "availability low: one instance is enough; a failure means downtime until it is replaced",
    };
    reasons.push(why.to_owned());
    let desired = c.pick("capacity.desired", given.desired, desired_default, a_src, why);
    let min = c.pick(
        "capacity.min",
        given.min,
        need.min(desired),
        a_src,
        &format!("availability {availability}: never fewer than {} instances", need.min(desired)),
    );
    let max_default = (desired.max(min) * 2).clamp(1, MAX_INSTANCES);
    let max = c.pick("capacity.max", given.max, max_default, Source::Default, "room to double under load");
    let zone_cap = match availability {
        Availability::High => 3,
        Availability::Standard => 2,
        Availability::Low => 1,
    };
    let zone_count = desired.clamp(1, zone_cap).max(availability.min_zones().min(desired.max(1)));
    let zones: Vec<String> = (0..zone_count).map(|i| zone_name(primary_region, i)).collect();
    let zone_reason = match availability {
        Availability::High => format!("availability high: spread over {zone_count} zones so one zone can fail"),
        Availability::Standard => format!("availability standard: spread over {zone_count} zones"),
        Availability::Low => "availability low: one zone".to_owned(),
    };
    c.note("capacity.zones", list(&zones), a_src, &zone_reason);
    reasons.push(zone_reason);
    if availability == Availability::High && spec.database.is_some() {
        reasons.push("availability high: multi-AZ database with automatic failover".to_owned());
    }
    let default_type = match cost {
        Cost::Low => "t4g.micro",
        Cost::Balanced => "t4g.small",
        Cost::Performance => "c7g.large",
    };
    let instance_type = c.pick(
        "capacity.instance_type",
        spec.resources.as_ref().and_then(|r| r.instance_type.as_ref()).map(ToString::to_string),
        default_type.to_owned(),
        k_src,
        &format!("cost {}: {default_type}", cost),
    );
    let spot = workload == WorkloadKind::Worker && cost == Cost::Low;
    c.note(
        "capacity.spot",
        spot,
        k_src,
        match (workload, cost) {
            (WorkloadKind::Worker, Cost::Low) => "cost low: workers tolerate interruption, so spot capacity",
            (WorkloadKind::Service, _) => "services stay on-demand so serving capacity is never reclaimed",
            (WorkloadKind::Worker, _) => "cost above low: on-demand capacity",
        },
    );
    let queue = spec.scale.as_ref().map(|sc| queue(spec, &sc.queue));
    if let Some(q) = &queue {
        reasons.push(format!(
            "scale: ⌈backlog ÷ {}⌉ instances within {min}..={max}, {}s between changes of direction",
            q.target_per_instance,
            q.cooldown_ms / 1000
        ));
    }
    (CapacityIr { min, max, desired, zones, instance_type, spot, queue }, reasons)
}

/// The backlog query and bounds of a queue-scaled spec.
fn queue(spec: &Spec, q: &skiff_spec::QueueScale) -> QueueIr {
    let query = match (&q.table, &q.query) {
        (_, Some(sql)) => sql.trim().trim_end_matches(';').trim().to_owned(),
        (Some(t), None) => {
            let age = q
                .age_column
                .as_ref()
                .map_or_else(|| "NULL::float8".to_owned(), |c| format!("EXTRACT(EPOCH FROM now() - min({c}))::float8"));
            format!("SELECT count(*)::int8, {age} FROM {t}")
        }
        (None, None) => String::new(),
    };
    QueueIr {
        database: q
            .database
            .as_ref()
            .or(spec.database.as_ref().map(|d| &d.name))
            .map(ToString::to_string)
            .unwrap_or_default(),
        query,
        target_per_instance: q.target_per_instance,
        cooldown_ms: q.cooldown.map_or(60_000, Duration::as_millis),
    }
}

fn cost_plan(
    cost: Cost,
    source: Source,
    workload: WorkloadKind,
    cap: &CapacityIr,
    db: Option<&DatabaseIr>,
) -> CostPlan {
    let mut reasons = vec![match cost {
        Cost::Low => format!("cost low: smaller machines ({})", cap.instance_type),
        Cost::Balanced => format!("cost balanced: general-purpose machines ({})", cap.instance_type),
        Cost::Performance => format!("cost performance: compute-optimised machines ({})", cap.instance_type),
    }];
    if cap.spot {
        reasons.push("cost low: spot capacity for this worker".to_owned());
    } else if workload == WorkloadKind::Worker && cost == Cost::Low {
        reasons.push("on-demand capacity".to_owned());
    }
    if let Some(db) = db {
        reasons.push(format!("database {} ({}, {} GiB)", db.size, db.instance_class, db.storage_gib));
    }
    CostPlan {
        level: cost,
        source,
        instance_type: cap.instance_type.clone(),
        spot: cap.spot,
        database_size: db.map(|d| d.size),
        reasons,
    }
}

fn rollout(spec: &Spec, workload: WorkloadKind, c: &mut Choices) -> RolloutIr {
    let r = spec.rollout.clone().unwrap_or(skiff_spec::Rollout {
        strategy: None,
        canary: None,
        step_timeout: None,
        drain_timeout: None,
        retention: None,
        hooks: Vec::new(),
    });
    let default_strategy = if workload == WorkloadKind::Service { Strategy::Canary } else { Strategy::AllAtOnce };
    let strategy = c.pick(
        "rollout.strategy",
        r.strategy,
        default_strategy,
        Source::Default,
        if workload == WorkloadKind::Service {
            "services shift traffic gradually with analysis"
        } else {
            "workers take no traffic to shift"
        },
    );
    let canary = r.canary.unwrap_or(skiff_spec::Canary { steps: None, bake: None, analysis: None });
    let analysis = canary.analysis.unwrap_or(skiff_spec::Analysis {
        max_error_rate: None,
        max_p95_latency: None,
        min_requests: None,
    });
    let steps = if strategy == Strategy::Canary {
        c.pick_list("rollout.steps", canary.steps, vec![5, 25, 50, 100], "a small first step limits the blast radius")
    } else {
        c.note("rollout.steps", "[100]", Source::Default, "all at once: one step");
        vec![100]
    };
    RolloutIr {
        strategy,
        steps,
        bake: c.pick(
            "rollout.bake",
            canary.bake,
            Duration::from_secs(120),
            Source::Default,
            "two minutes of traffic per step before analysis",
        ),
        analysis: AnalysisIr {
            max_error_rate: c.pick(
                "rollout.analysis.max_error_rate",
                analysis.max_error_rate,
                Percentage::from_ppm(10_000),
                Source::Default,
                "more than 1% errors fails a step",
            ),
            max_p95_latency: c.pick(
                "rollout.analysis.max_p95_latency",
                analysis.max_p95_latency,
                Duration::from_millis(500),
                Source::Default,
                "p95 above 500ms fails a step",
            ),
            min_requests: c.pick(
                "rollout.analysis.min_requests",
                analysis.min_requests,
                20,
                Source::Default,
                "fewer than 20 requests is too little evidence: the step pauses",
            ),
        },
        step_timeout: c.pick(
            "rollout.step_timeout",
            r.step_timeout,
            Duration::from_secs(600),
            Source::Default,
            "a step that takes over 10m is rolled back",
        ),
        drain_timeout: c.pick(
            "rollout.drain_timeout",
            r.drain_timeout,
            Duration::from_secs(30),
            Source::Default,
            "30s for in-flight requests to finish",
        ),
        retention: c.pick(
            "rollout.retention",
            r.retention,
            Duration::from_millis(0),
            Source::Default,
            "the previous release stops once the new one takes all traffic; rollback re-creates it",
        ),
        hooks: r
            .hooks
            .iter()
            .map(|h| HookIr { step: h.step.as_str().to_owned(), at: h.at, with: h.with.clone() })
            .collect(),
    }
}

/// The `n`th zone (0-based) of `region`: `us-east-1a`, … or `local-a`, … for `local`.
pub fn zone_name(region: &str, n: u32) -> String {
    let letter = char::from(b'a' + u8::try_from(n % 26).unwrap_or(0));
    if region == "local" { format!("local-{letter}") } else { format!("{region}{letter}") }
}

fn list<T: Display>(items: &[T]) -> String {
    format!("[{}]", items.iter().map(ToString::to_string).collect::<Vec<_>>().join(", "))
}

#[derive(Default)]
struct Choices(Vec<Choice>);

impl Choices {
    fn pick<T: Display + Clone>(
        &mut self,
        field: &str,
        explicit: Option<T>,
        derived: T,
        source: Source,
        reason: &str,
    ) -> T {
        let (value, source, reason) = match explicit {
            Some(v) => (v, Source::Explicit, "set in the spec"),
            None => (derived, source, reason),
        };
        self.note(field, value.clone(), source, reason);
        value
    }

    fn pick_list(&mut self, field: &str, explicit: Option<Vec<u32>>, derived: Vec<u32>, reason: &str) -> Vec<u32> {
        let (value, source, reason) = match explicit {
            Some(v) => (v, Source::Explicit, "set in the spec"),
            None => (derived, Source::Default, reason),
        };
        self.note(field, list(&value), source, reason);
        value
    }

    fn note(&mut self, field: &str, value: impl Display, source: Source, reason: &str) {
        self.0.push(Choice { field: field.to_owned(), value: value.to_string(), source, reason: reason.to_owned() });
    }
}

/// A streaming replica in every region after the first, which writes.
fn replica_regions(regions: &[String], database: &str, c: &mut Choices) -> Vec<String> {
    let replicas = regions.get(1..).unwrap_or_default().to_vec();
    if !replicas.is_empty() {
        c.note(
            "database.replica_regions",
            list(&replicas),
            Source::Explicit,
            &format!("{database} writes in {}; a streaming replica in each other region", regions[0]),
        );
    }
    replicas
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_specs_own_environment_overlay_applies_and_the_source_compiles_back() {
        let text = "service: web\nartifact: {path: web}\nrun: {command: [web]}\nport: 8080\nenvironment: staging\n\
            environments:\n  staging: {instances: {desired: 1}, intent: {availability: low}}\n  production: {}\n";
        let spec = skiff_spec::parse("skiff.yaml", text.as_bytes()).unwrap();
        let ir = compile(&spec);
        assert_eq!((ir.environment.as_str(), ir.capacity.desired), ("staging", 1));
        assert!(ir.source.environments.is_empty());
        assert_eq!(compile(&ir.source), ir);
        let mut production = spec.clone();
        production.environment = Some("production".parse().unwrap());
        let ir = compile(&production);
        assert_eq!((ir.environment.as_str(), ir.capacity.desired), ("production", 2));
    }
}
