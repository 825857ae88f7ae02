//! What a compiled plan costs per month, estimated from a committed price table
//! (`prices.json`: its source and date inside, no network at run time). One line per
//! resource that costs money, each with the figure at the normal instance count and
//! with every group at its maximum, the intent choices that drove it, and the stated
//! assumptions (log volume, data transfer, load balancer capacity units). The same
//! [`Estimate`] feeds the cost-ceiling policy rule ([`Estimate::policy_facts`]), so
//! `skiff cost explain` and the guardrail never disagree. Pure: no I/O, no clock.
#![warn(missing_docs)]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::OnceLock;

use serde::{Deserialize, Serialize};
use skiff_compiler::{ResourcePlan, ResourceSpec};
use skiff_ir::ServiceIr;
use skiff_spec::{Availability, Cost, Intent};

/// The committed price table, as text.
pub const PRICES_JSON: &str = include_str!("../prices.json");

/// Unit prices and the assumptions usage-priced resources are estimated with.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PriceTable {
    /// Where the prices come from.
    pub source: String,
    /// The date they were read.
    pub as_of: String,
    /// The region they are for.
    pub region: String,
    /// Always `USD`.
    pub currency: String,
    /// Hours billed per month.
    pub hours_per_month: f64,
    /// On-demand price per hour, by instance type.
    pub instance_hour: BTreeMap<String, f64>,
    /// What spot capacity costs relative to on-demand.
    pub spot_factor: f64,
    /// Single-AZ database instance price per hour, by class.
    pub database_hour: BTreeMap<String, f64>,
    /// Database storage per GiB-month.
    pub database_storage_gib_month: f64,
    /// What a standby in a second zone multiplies instance and storage by.
    pub multi_az_factor: f64,
    /// A load balancer per hour.
    pub load_balancer_hour: f64,
    /// One load balancer capacity unit per hour.
    pub load_balancer_lcu_hour: f64,
    /// Log ingestion per GiB.
    pub log_ingest_gib: f64,
    /// Log storage per GiB-month.
    pub log_storage_gib_month: f64,
    /// Data transfer out to the internet per GiB.
    pub transfer_out_gib: f64,
    /// Data transfer between regions per GiB.
    pub inter_region_transfer_gib: f64,
    /// One stored secret per month.
    pub secret_month: f64,
    /// One DNS zone per month.
    pub hosted_zone_month: f64,
    /// One million DNS queries.
    pub dns_query_million: f64,
    /// Usage the estimate assumes.
    pub assumptions: Assumptions,
}

/// Usage figures the estimate assumes, stated in every answer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Assumptions {
    /// Average capacity units a load balancer uses.
    pub load_balancer_lcu: f64,
    /// Log volume one instance writes per month, GiB.
    pub log_gib_per_instance_month: f64,
    /// Data one serving instance sends out per month, GiB.
    pub transfer_out_gib_per_instance_month: f64,
    /// What a cross-region replica's stream carries per month, GiB.
    pub replication_gib_month: f64,
    /// DNS queries per month, millions.
    pub dns_query_million_month: f64,
}

impl PriceTable {
    /// The table committed beside this crate.
    ///
    /// # Panics
    /// Never for the committed file: a unit test parses it.
    pub fn committed() -> &'static PriceTable {
        static TABLE: OnceLock<PriceTable> = OnceLock::new();
        TABLE.get_or_init(|| serde_json::from_str(PRICES_JSON).expect("prices.json parses (tested)"))
    }

    /// The assumptions, as sentences.
    pub fn assumption_lines(&self) -> Vec<String> {
        let a = &self.assumptions;
        vec![
            format!("prices: {} on-demand, {} ({}), read {}", self.region, self.currency, self.source, self.as_of),
            format!(
                "{} hours per month; spot capacity at {:.0}% of on-demand",
                self.hours_per_month,
                self.spot_factor * 100.0
            ),
            format!("each load balancer averages {} capacity unit(s)", a.load_balancer_lcu),
            format!(
                "each instance writes {} GiB of logs per month, kept for the log retention",
                a.log_gib_per_instance_month
            ),
            format!(
                "each serving instance sends {} GiB per month to the internet",
                a.transfer_out_gib_per_instance_month
            ),
            format!("each cross-region replica streams {} GiB per month", a.replication_gib_month),
            format!("a multi-region front answers {} million DNS queries per month", a.dns_query_million_month),
        ]
    }
}

/// One resource's monthly cost.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Line {
    /// The resource's logical id (`instance-group/web`), or `data-transfer/<service>`
    /// for the assumed traffic.
    pub resource: String,
    /// What is priced, in words (`2 × t4g.small on-demand`).
    pub item: String,
    /// USD per month with the normal instance counts.
    pub monthly_usd: f64,
    /// USD per month with every group at its maximum.
    pub at_max_usd: f64,
    /// The decisions that drove the figure (`capacity.instance_type = t4g.small (intent: …)`).
    pub drivers: Vec<String>,
}

/// A plan's monthly cost.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Estimate {
    /// The service.
    pub service: String,
    /// Its environment.
    pub environment: String,
    /// Resources that cost money, in plan order.
    pub lines: Vec<Line>,
    /// Sum of the lines' `monthly_usd`.
    pub monthly_usd: f64,
    /// Sum of the lines' `at_max_usd`: what the cost ceiling judges.
    pub at_max_usd: f64,
    /// Resources with no known price, not in the sums.
    pub unpriced: Vec<String>,
    /// Resources that cost nothing by themselves (roles, policies, target groups…).
    pub free: Vec<String>,
}

impl Estimate {
    /// The figures the cost-ceiling rule judges.
    pub fn policy_facts(&self) -> skiff_policy::CostFacts {
        skiff_policy::CostFacts {
            monthly_usd: self.monthly_usd,
            at_max_usd: self.at_max_usd,
            unpriced: self.unpriced.clone(),
        }
    }
}

/// Rounds to cents, so sums of lines equal the totals shown.
fn cents(usd: f64) -> f64 {
    (usd * 100.0).round() / 100.0
}

/// The estimate of `ir`'s plan with the committed prices.
pub fn estimate(ir: &ServiceIr) -> Estimate {
    estimate_with(ir, &skiff_compiler::plan(ir), PriceTable::committed())
}

/// The estimate of `plan` (compiled from `ir`) with `prices`.
pub fn estimate_with(ir: &ServiceIr, plan: &ResourcePlan, prices: &PriceTable) -> Estimate {
    let p = prices;
    let a = &p.assumptions;
    let hours = p.hours_per_month;
    let drivers = |fields: &[&str]| -> Vec<String> {
        ir.decision
            .choices
            .iter()
            .filter(|c| fields.contains(&c.field.as_str()))
            .map(|c| format!("{} = {} ({}: {})", c.field, c.value, source(c.source), c.reason))
            .collect()
    };
    let mut lines = Vec::new();
    let mut unpriced = Vec::new();
    let mut free = Vec::new();
    let mut secrets = BTreeSet::new();
    let (mut instances, mut instances_at_max, mut serving) = (0u32, 0u32, false);
    for r in &plan.resources {
        let line = |item: String, monthly: f64, at_max: f64, fields: &[&str]| Line {
            resource: r.id.clone(),
            item,
            monthly_usd: cents(monthly),
            at_max_usd: cents(at_max),
            drivers: drivers(fields),
        };
        match &r.spec {
            ResourceSpec::InstanceGroup { launch_config, desired, max, spot, .. } => {
                instances += desired;
                instances_at_max += max;
                let class = plan.get(launch_config).and_then(|l| match &l.spec {
                    ResourceSpec::LaunchConfig { instance_type, .. } => Some(instance_type.clone()),
                    _ => None,
                });
                let class = class.unwrap_or_default();
                let Some(hourly) = p.instance_hour.get(&class) else {
                    unpriced.push(format!("{} ({class})", r.id));
                    continue;
                };
                let each = hourly * hours * if *spot { p.spot_factor } else { 1.0 };
                let kind = if *spot { "spot" } else { "on-demand" };
                lines.push(line(
                    format!("{desired} × {class} {kind} (up to {max})"),
                    each * f64::from(*desired),
                    each * f64::from(*max),
                    &["capacity.desired", "capacity.max", "capacity.instance_type", "capacity.spot"],
                ));
            }
            ResourceSpec::LoadBalancerRule { .. } => {
                serving = true;
                let m = (p.load_balancer_hour + a.load_balancer_lcu * p.load_balancer_lcu_hour) * hours;
                lines.push(line(format!("a load balancer, {} LCU", a.load_balancer_lcu), m, m, &[]));
            }
            ResourceSpec::Database { instance_class, storage_gib, multi_az, .. } => {
                let Some(hourly) = p.database_hour.get(instance_class) else {
                    unpriced.push(format!("{} ({instance_class})", r.id));
                    continue;
                };
                let factor = if *multi_az { p.multi_az_factor } else { 1.0 };
                let m = (hourly * hours + f64::from(*storage_gib) * p.database_storage_gib_month) * factor;
                let az = if *multi_az { "multi-AZ" } else { "single-AZ" };
                lines.push(line(
                    format!("{instance_class} {az}, {storage_gib} GiB storage"),
                    m,
                    m,
                    &["database.size", "database.multi_az"],
                ));
            }
            ResourceSpec::DatabaseReplica { instance_class, storage_gib, region, .. } => {
                let Some(hourly) = p.database_hour.get(instance_class) else {
                    unpriced.push(format!("{} ({instance_class})", r.id));
                    continue;
                };
                let m = hourly * hours
                    + f64::from(*storage_gib) * p.database_storage_gib_month
                    + a.replication_gib_month * p.inter_region_transfer_gib;
                lines.push(line(
                    format!(
                        "{instance_class} replica in {region}, {storage_gib} GiB, {} GiB streamed",
                        a.replication_gib_month
                    ),
                    m,
                    m,
                    &["regions", "database.replica_regions"],
                ));
            }
            ResourceSpec::TrafficFront { regions, .. } => {
                let m = p.hosted_zone_month + a.dns_query_million_month * p.dns_query_million;
                lines.push(line(
                    format!("weighted DNS over {} regions, {}M queries", regions.len(), a.dns_query_million_month),
                    m,
                    m,
                    &["regions"],
                ));
            }
            ResourceSpec::SecretReference { reference, .. } => {
                if secrets.insert(reference.name().to_owned()) {
                    lines.push(line(format!("secret {}", reference.name()), p.secret_month, p.secret_month, &[]));
                } else {
                    free.push(r.id.clone());
                }
            }
            _ => free.push(r.id.clone()),
        }
    }
    // Usage-priced lines last: they scale with the instance counts summed above.
    if let Some(r) = plan.resources.iter().find(|r| matches!(r.spec, ResourceSpec::LogGroup { .. })) {
        let months = ir.logs.retention.as_millis() as f64 / (30.0 * 86_400_000.0);
        let per = a.log_gib_per_instance_month * (p.log_ingest_gib + months * p.log_storage_gib_month);
        lines.push(Line {
            resource: r.id.clone(),
            item: format!("{:.0} GiB per instance-month, kept {}", a.log_gib_per_instance_month, ir.logs.retention),
            monthly_usd: cents(per * f64::from(instances)),
            at_max_usd: cents(per * f64::from(instances_at_max)),
            drivers: drivers(&["logs.retention", "capacity.desired"]),
        });
    }
    if serving {
        let per = a.transfer_out_gib_per_instance_month * p.transfer_out_gib;
        lines.push(Line {
            resource: format!("data-transfer/{}", ir.service),
            item: format!("{} GiB out per serving instance-month (assumed)", a.transfer_out_gib_per_instance_month),
            monthly_usd: cents(per * f64::from(instances)),
            at_max_usd: cents(per * f64::from(instances_at_max)),
            drivers: drivers(&["capacity.desired"]),
        });
    }
    let free = free.into_iter().filter(|id| !lines.iter().any(|l| &l.resource == id)).collect();
    Estimate {
        service: ir.service.clone(),
        environment: ir.environment.clone(),
        monthly_usd: cents(lines.iter().map(|l| l.monthly_usd).sum()),
        at_max_usd: cents(lines.iter().map(|l| l.at_max_usd).sum()),
        lines,
        unpriced,
        free,
    }
}

fn source(s: skiff_ir::Source) -> &'static str {
    match s {
        skiff_ir::Source::Explicit => "set in the spec",
        skiff_ir::Source::Intent => "intent",
        skiff_ir::Source::Default => "default",
    }
}

/// What the same spec would cost with one intent knob turned.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Alternative {
    /// The changed knob, as it would be written (`intent.cost: low`).
    pub intent: String,
    /// USD per month with the normal instance counts.
    pub monthly_usd: f64,
    /// Difference to the current estimate's `monthly_usd`.
    pub delta_usd: f64,
    /// What the knob changes (`1 × t4g.micro, single-AZ database`).
    pub summary: String,
}

/// Every other value of each intent knob, one knob at a time, estimated. Values the
/// spec overrides (an explicit instance type, count) stay as written, so the
/// difference is what the knob alone would make.
pub fn alternatives(ir: &ServiceIr) -> Vec<Alternative> {
    let current = estimate(ir);
    let plan = &ir.decision;
    let stated = ir.source.intent.clone().unwrap_or(Intent { availability: None, cost: None });
    let mut out = Vec::new();
    let mut push = |label: String, intent: Intent| {
        let mut spec = ir.source.clone();
        spec.intent = Some(intent);
        let other = skiff_ir::compile(&spec);
        let e = estimate(&other);
        let db = other
            .database
            .as_ref()
            .map(|d| format!(", {} {} database", d.instance_class, if d.multi_az { "multi-AZ" } else { "single-AZ" }))
            .unwrap_or_default();
        out.push(Alternative {
            intent: label,
            monthly_usd: e.monthly_usd,
            delta_usd: cents(e.monthly_usd - current.monthly_usd),
            summary: format!("{} × {}{db}", other.capacity.desired, other.capacity.instance_type),
        });
    };
    for level in [Availability::Low, Availability::Standard, Availability::High] {
        if level != plan.availability_plan.level {
            push(format!("intent.availability: {level}"), Intent { availability: Some(level), ..stated.clone() });
        }
    }
    for level in [Cost::Low, Cost::Balanced, Cost::Performance] {
        if level != plan.cost_plan.level {
            push(format!("intent.cost: {level}"), Intent { cost: Some(level), ..stated.clone() });
        }
    }
    out
}

#[cfg(test)]
mod tests;
