//! The provider-neutral resource plan: what a service needs, each resource with a
//! stable logical id, properties and dependencies. Providers map it to primitives
//! (an ASG, a local process group, ...).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use skiff_ir::{ServiceIr, canonical};
use skiff_spec::values::{Duration, SecretRef};
use skiff_spec::{DatabaseEngine, WorkloadKind};

/// The `kind` of a stored plan.
pub const KIND: &str = "skiff.plan";
/// The plan's schema version.
pub const SCHEMA_VERSION: u32 = 1;

/// Everything a service needs, ready for a provider.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResourcePlan {
    /// Always [`KIND`].
    pub kind: String,
    /// Always [`SCHEMA_VERSION`] when written by this version.
    pub schema_version: u32,
    /// The service.
    pub service: String,
    /// The content digest of the IR this plan was made from.
    pub ir_digest: String,
    /// The resources, sorted by id.
    pub resources: Vec<Resource>,
}

/// One resource.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Resource {
    /// Stable logical id, `<type>/<name>`; the same spec always gives the same ids.
    pub id: String,
    /// Ids this resource needs to exist first.
    pub depends_on: Vec<String>,
    /// What the resource is.
    pub spec: ResourceSpec,
}

/// A resource's type and properties.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
#[non_exhaustive]
pub enum ResourceSpec {
    /// Instances of one release; one group per release, named from `name_template`.
    InstanceGroup {
        /// Group name with `{release}` to fill in.
        name_template: String,
        /// The launch configuration id.
        launch_config: String,
        /// Fewest instances.
        min: u32,
        /// Most instances.
        max: u32,
        /// Normal count.
        desired: u32,
        /// Zones to spread over.
        zones: Vec<String>,
        /// Interruptible capacity.
        spot: bool,
    },
    /// How an instance starts: the runner, told which service and release to run.
    LaunchConfig {
        /// Machine class.
        instance_type: String,
        /// The program and arguments.
        command: Vec<String>,
        /// Plain environment.
        env: BTreeMap<String, String>,
        /// Environment filled from secrets on the instance (references only).
        secret_env: BTreeMap<String, SecretRef>,
        /// The port the program listens on, if it serves.
        port: Option<u16>,
        /// Network ingress allowed to the instance.
        ingress: Vec<Ingress>,
        /// Remote shell access: always false.
        ssh: bool,
        /// The role instances assume.
        role: String,
        /// The log group output goes to.
        log_group: String,
    },
    /// Targets of one release behind the load balancer, with their health check.
    TargetGroup {
        /// Group name with `{release}` to fill in.
        name_template: String,
        /// The port targets serve on.
        port: u16,
        /// Health check path.
        health_path: String,
        /// Probe interval.
        interval: Duration,
        /// Probe timeout.
        timeout: Duration,
        /// Successes before healthy.
        healthy_threshold: u32,
        /// Failures before unhealthy.
        unhealthy_threshold: u32,
        /// Drain time when a target leaves.
        deregistration_delay: Duration,
    },
    /// The listener rule that forwards to release target groups by weight.
    LoadBalancerRule {
        /// The port clients connect to.
        listener_port: u16,
        /// The path pattern matched.
        path_pattern: String,
        /// The target group template forwarded to.
        target_group: String,
        /// The weights a canary passes through, percent of traffic to the new release.
        canary_steps: Vec<u32>,
    },
    /// The identity instances run as.
    Role {
        /// Role name.
        name: String,
        /// Who may assume it.
        assumed_by: String,
    },
    /// The role's permissions, least privilege.
    Policy {
        /// The role it attaches to.
        role: String,
        /// Allowed statements.
        statements: Vec<Permission>,
    },
    /// Where logs go.
    LogGroup {
        /// Group name.
        name: String,
        /// Retention.
        retention: Duration,
    },
    /// One secret an instance reads at start (never its value).
    SecretReference {
        /// The environment variable it fills.
        env: String,
        /// The reference.
        reference: SecretRef,
        /// Other regions the service runs in: the secret is replicated to each, where
        /// that region's instances read it.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        replica_regions: Vec<String>,
    },
    /// A managed database.
    Database {
        /// Name.
        name: String,
        /// Engine.
        engine: DatabaseEngine,
        /// Major version.
        version: String,
        /// Instance class.
        instance_class: String,
        /// Storage.
        storage_gib: u32,
        /// Standby in a second zone.
        multi_az: bool,
        /// Backup retention.
        backup_retention: Duration,
        /// Encrypted at rest: always true.
        encrypted: bool,
    },
    /// The global traffic entry of a service in several regions: a weight per region
    /// (weighted DNS records on a cloud, a weighted proxy locally), all of it to the
    /// region that writes until a failover shifts it.
    TrafficFront {
        /// Every region, primary first; each has its own load balancer and group.
        regions: Vec<String>,
        /// The region that takes all traffic when the front is made.
        initial_region: String,
        /// The path each region is judged healthy by.
        health_path: String,
    },
    /// A streaming replica of a managed database in another region.
    DatabaseReplica {
        /// Instance name (`<database>-<region>`).
        name: String,
        /// The database it follows.
        source: String,
        /// Its region.
        region: String,
        /// Instance class (the primary's, so a promotion keeps capacity).
        instance_class: String,
        /// Storage.
        storage_gib: u32,
        /// Encrypted at rest: always true.
        encrypted: bool,
    },
}

/// An allowed network source.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ingress {
    /// Destination port on the instance.
    pub port: u16,
    /// Who may connect: `load-balancer`.
    pub from: String,
}

/// One allowed action on one resource, provider-neutral (`state:read`, `logs:write`, ...)
/// or a provider action passed through from the spec's `iam.allow`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Permission {
    /// The action.
    pub action: String,
    /// The resource.
    pub resource: String,
}

impl ResourceSpec {
    /// The type name as it appears in ids and JSON.
    pub fn type_name(&self) -> &'static str {
        match self {
            ResourceSpec::InstanceGroup { .. } => "instance-group",
            ResourceSpec::LaunchConfig { .. } => "launch-config",
            ResourceSpec::TargetGroup { .. } => "target-group",
            ResourceSpec::LoadBalancerRule { .. } => "lb-rule",
            ResourceSpec::Role { .. } => "role",
            ResourceSpec::Policy { .. } => "policy",
            ResourceSpec::LogGroup { .. } => "log-group",
            ResourceSpec::SecretReference { .. } => "secret-ref",
            ResourceSpec::Database { .. } => "database",
            ResourceSpec::DatabaseReplica { .. } => "database-replica",
            ResourceSpec::TrafficFront { .. } => "traffic-front",
        }
    }
}

impl ResourcePlan {
    /// The canonical JSON bytes of the plan.
    pub fn canonical_json(&self) -> Vec<u8> {
        canonical::to_vec(self)
    }

    /// Looks a resource up by id.
    pub fn get(&self, id: &str) -> Option<&Resource> {
        self.resources.iter().find(|r| r.id == id)
    }
}

/// Makes the resource plan of an IR. Pure and deterministic.
pub fn plan(ir: &ServiceIr) -> ResourcePlan {
    let svc = &ir.service;
    let id = |ty: &str, name: &str| format!("{ty}/{name}");
    let role_name = role_name(ir);
    let mut resources = Vec::new();
    let mut push = |id: String, depends_on: Vec<String>, spec: ResourceSpec| {
        resources.push(Resource { id, depends_on, spec });
    };

    let role_id = id("role", svc);
    let log_id = id("log-group", svc);
    push(role_id.clone(), vec![], ResourceSpec::Role { name: role_name.clone(), assumed_by: "instance".to_owned() });
    push(
        id("policy", svc),
        vec![role_id.clone()],
        ResourceSpec::Policy { role: role_id.clone(), statements: permissions(ir) },
    );
    push(log_id.clone(), vec![], ResourceSpec::LogGroup { name: ir.logs.group.clone(), retention: ir.logs.retention });

    let mut secret_ids = Vec::new();
    for (env, reference) in &ir.secrets {
        let sid = id("secret-ref", &format!("{svc}/{env}"));
        secret_ids.push(sid.clone());
        let spec = ResourceSpec::SecretReference {
            env: env.clone(),
            reference: reference.clone(),
            replica_regions: secondary_regions(ir).to_vec(),
        };
        push(sid, vec![], spec);
    }
    let mut db_ids = Vec::new();
    if let Some(db) = &ir.database {
        let did = id("database", &db.name);
        db_ids.push(did.clone());
        push(
            did,
            vec![],
            ResourceSpec::Database {
                name: db.name.clone(),
                engine: db.engine,
                version: db.version.clone(),
                instance_class: db.instance_class.clone(),
                storage_gib: db.storage_gib,
                multi_az: db.multi_az,
                backup_retention: db.backup_retention,
                encrypted: true,
            },
        );
        for region in &db.replica_regions {
            let name = replica_name(&db.name, region);
            push(
                id("database-replica", &name),
                vec![id("database", &db.name)],
                ResourceSpec::DatabaseReplica {
                    source: db.name.clone(),
                    region: region.clone(),
                    instance_class: db.instance_class.clone(),
                    storage_gib: db.storage_gib,
                    encrypted: true,
                    name,
                },
            );
        }
    }

    let lc_id = id("launch-config", svc);
    let port = ir.network.as_ref().map(|n| n.port);
    let mut lc_deps = vec![role_id.clone(), log_id.clone()];
    lc_deps.extend(secret_ids);
    lc_deps.extend(db_ids);
    push(
        lc_id.clone(),
        lc_deps,
        ResourceSpec::LaunchConfig {
            instance_type: ir.capacity.instance_type.clone(),
            command: ir.run.command.clone(),
            env: ir.run.env.clone(),
            secret_env: ir.secrets.clone(),
            port,
            ingress: port.map(|p| vec![Ingress { port: p, from: "load-balancer".to_owned() }]).unwrap_or_default(),
            ssh: false,
            role: role_id,
            log_group: log_id,
        },
    );
    push(
        id("instance-group", svc),
        vec![lc_id.clone()],
        ResourceSpec::InstanceGroup {
            name_template: format!("{svc}-{{release}}"),
            launch_config: lc_id.clone(),
            min: ir.capacity.min,
            max: ir.capacity.max,
            desired: ir.capacity.desired,
            zones: ir.capacity.zones.clone(),
            spot: ir.capacity.spot,
        },
    );
    if let (WorkloadKind::Service, Some(net)) = (ir.workload, &ir.network) {
        // The primary region's names are the service's own; every other region's carry
        // its name, and a release reaches them after its canary in the primary.
        let home = std::iter::once((svc.clone(), format!("{svc}-{{release}}"), ir.rollout.steps.clone()));
        let others =
            secondary_regions(ir).iter().map(|r| (regional_name(svc, r), format!("{svc}-{{release}}-{r}"), vec![100]));
        for (name, template, steps) in home.chain(others) {
            let tg_id = id("target-group", &name);
            push(
                tg_id.clone(),
                vec![],
                ResourceSpec::TargetGroup {
                    name_template: template.clone(),
                    port: net.port,
                    health_path: net.health.path.clone(),
                    interval: net.health.interval,
                    timeout: net.health.timeout,
                    healthy_threshold: net.health.healthy_threshold,
                    unhealthy_threshold: net.health.unhealthy_threshold,
                    deregistration_delay: ir.rollout.drain_timeout,
                },
            );
            push(
                id("lb-rule", &name),
                vec![tg_id.clone()],
                ResourceSpec::LoadBalancerRule {
                    listener_port: net.port,
                    path_pattern: "/*".to_owned(),
                    target_group: tg_id,
                    canary_steps: steps,
                },
            );
            if name != *svc {
                push(
                    id("instance-group", &name),
                    vec![lc_id.clone()],
                    ResourceSpec::InstanceGroup {
                        name_template: template,
                        launch_config: lc_id.clone(),
                        min: ir.capacity.min,
                        max: ir.capacity.max,
                        desired: ir.capacity.desired,
                        zones: zones_in(&ir.capacity.zones, name.strip_prefix(&format!("{svc}-")).unwrap_or(&name)),
                        spot: ir.capacity.spot,
                    },
                );
            }
        }
        if !secondary_regions(ir).is_empty() {
            push(
                id("traffic-front", svc),
                ir.regions
                    .iter()
                    .map(|r| id("lb-rule", &if r == &ir.regions[0] { svc.clone() } else { regional_name(svc, r) }))
                    .collect(),
                ResourceSpec::TrafficFront {
                    regions: ir.regions.clone(),
                    initial_region: ir.regions[0].clone(),
                    health_path: net.health.path.clone(),
                },
            );
        }
    }
    resources.sort_by(|a, b| a.id.cmp(&b.id));
    ResourcePlan {
        kind: KIND.to_owned(),
        schema_version: SCHEMA_VERSION,
        service: svc.clone(),
        ir_digest: ir.digest(),
        resources,
    }
}

/// The name of the role a service's instances run as.
pub fn role_name(ir: &ServiceIr) -> String {
    format!("skiff-{}-{}", ir.environment, ir.service)
}

/// The least-privilege permissions of a service's role: read its own releases and
/// artifacts, heartbeat its own members, write its own logs, read its named secrets,
/// plus exactly what the spec's `iam.allow` names.
pub fn permissions(ir: &ServiceIr) -> Vec<Permission> {
    let svc = &ir.service;
    let p = |action: &str, resource: String| Permission { action: action.to_owned(), resource };
    let mut out = vec![
        p("state:read", format!("releases/{svc}/*")),
        p("state:read", "blobs/sha256/*".to_owned()),
        p("state:write", format!("members/{svc}/*")),
        p("logs:write", ir.logs.group.clone()),
    ];
    let mut secret_names: Vec<&str> = ir.secrets.values().map(SecretRef::name).collect();
    secret_names.sort_unstable();
    secret_names.dedup();
    out.extend(secret_names.into_iter().map(|n| p("secrets:read", n.to_owned())));
    out.extend(ir.iam.iter().map(|s| p(s.action.as_str(), s.resource.clone())));
    out.sort();
    out.dedup();
    out
}

/// The instance name of `database`'s replica in `region`.
pub fn replica_name(database: &str, region: &str) -> String {
    regional_name(database, region)
}

/// The name of `base` (a service's load balancer, a release's group) in a region other
/// than the primary: `<base>-<region>`.
pub fn regional_name(base: &str, region: &str) -> String {
    format!("{base}-{region}")
}

/// `zones` as they are named in `region`: an AWS-style zone (`us-east-1a`: a region
/// ending in a digit, then one letter) keeps its letter in the other region
/// (`us-west-2a`); any other zone name (`local-a`) is the same everywhere.
pub fn zones_in(zones: &[String], region: &str) -> Vec<String> {
    zones
        .iter()
        .map(|z| {
            let mut chars = z.chars();
            match (chars.next_back(), chars.next_back()) {
                (Some(letter), Some(digit)) if letter.is_ascii_lowercase() && digit.is_ascii_digit() => {
                    format!("{region}{letter}")
                }
                _ => z.clone(),
            }
        })
        .collect()
}

/// The regions after the primary a serving service runs its own group and load
/// balancer in (empty for a single-region service or one that serves no port).
pub fn secondary_regions(ir: &ServiceIr) -> &[String] {
    match (ir.workload, &ir.network, ir.regions.split_first()) {
        (WorkloadKind::Service, Some(_), Some((_, rest))) => rest,
        _ => &[],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_service_in_two_regions_reads_its_secrets_from_a_replica_in_the_other() {
        let spec = skiff_spec::parse(
            "skiff.yaml",
            b"service: web\nartifact: {path: web}\nrun: {command: [web]}\nport: 8080\nregions: [us-east-1, us-west-2]\nsecrets: {API_KEY: secret://web/key}\n",
        )
        .unwrap();
        let p = plan(&skiff_ir::compile(&spec));
        match &p.get("secret-ref/web/API_KEY").unwrap().spec {
            ResourceSpec::SecretReference { replica_regions, .. } => assert_eq!(replica_regions, &["us-west-2"]),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn zones_follow_the_region_when_they_are_named_after_it() {
        let zones = vec!["us-east-1a".to_owned(), "us-east-1c".to_owned(), "local-a".to_owned()];
        assert_eq!(zones_in(&zones, "us-west-2"), ["us-west-2a", "us-west-2c", "local-a"]);
    }
}
