//! The built-in rules. Each looks at the plan and passes, denies (with a reason and a
//! fix) or is skipped (with why it does not apply).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::input::PlanInput;
use crate::{RuleResult, Verdict};

/// A snapshot older than this does not count as fresh.
pub const FRESH_SNAPSHOT_MS: u64 = 24 * 3_600_000;

/// Ceilings of one environment.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ceiling {
    /// Most instances one group may run (at its maximum).
    pub max_instances: u32,
    /// Most a service may cost per month, every resource counted and every group at its
    /// maximum, in USD (the figure `skiff cost explain` shows as "at most").
    pub max_monthly_usd: f64,
}

/// Ceilings per environment, with a default for the rest (`policies/limits.json`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Per environment name.
    #[serde(default)]
    pub environments: BTreeMap<String, Ceiling>,
    /// Any other environment.
    pub default: Ceiling,
}

impl Default for Limits {
    fn default() -> Self {
        let c = |max_instances, max_monthly_usd| Ceiling { max_instances, max_monthly_usd };
        Limits {
            environments: BTreeMap::from([
                ("production".to_owned(), c(50, 5_000.0)),
                ("staging".to_owned(), c(20, 1_000.0)),
            ]),
            default: c(10, 500.0),
        }
    }
}

impl Limits {
    /// The ceiling of environment `env`.
    pub fn for_env(&self, env: &str) -> Ceiling {
        self.environments.get(env).copied().unwrap_or(self.default)
    }
}

/// The local provider runs instances as processes on one machine.
pub const LOCAL_MAX_INSTANCES: u32 = 16;

fn pass(rule: &str, reason: impl Into<String>) -> RuleResult {
    RuleResult::builtin(rule, Verdict::Pass, reason, None)
}

fn deny(rule: &str, reason: impl Into<String>, fix: impl Into<String>) -> RuleResult {
    RuleResult::builtin(rule, Verdict::Deny, reason, Some(fix.into()))
}

fn skip(rule: &str, reason: impl Into<String>) -> RuleResult {
    RuleResult::builtin(rule, Verdict::Skip, reason, None)
}

/// Every built-in rule, in a fixed order.
pub fn evaluate(input: &PlanInput, limits: &Limits) -> Vec<RuleResult> {
    vec![
        no_ssh_ingress(input),
        artifact_signed_and_pinned(input),
        instance_ceiling(input, limits),
        cost_ceiling(input, limits),
        database_deletion_needs_snapshot(input),
        irreversible_needs_approval(input),
        production_needs_approver(input),
    ]
}

fn no_ssh_ingress(i: &PlanInput) -> RuleResult {
    const RULE: &str = "no-ssh-ingress";
    match i.ingress.iter().find(|r| r.port == 22) {
        Some(r) => deny(
            RULE,
            format!("the plan opens port 22 to {}", r.from),
            "remove the port 22 ingress; instances are reached through the load balancer and `skiff logs`",
        ),
        None => pass(RULE, "no ingress on port 22"),
    }
}

fn artifact_signed_and_pinned(i: &PlanInput) -> RuleResult {
    const RULE: &str = "artifact-signed-and-pinned";
    let Some(r) = &i.release else {
        return skip(RULE, "no release yet; `skiff deploy` signs one and checks it before rolling out");
    };
    if !r.signature_verified {
        return deny(
            RULE,
            format!("release {} has no signature that verifies", r.id),
            "re-create the release with the trusted key: `skiff release create --yes`",
        );
    }
    match r.artifact_digest.as_deref() {
        Some(d) if d.starts_with("sha256:") && d.len() == "sha256:".len() + 64 => {
            pass(RULE, format!("release {} signed; artifact pinned to {d}", r.id))
        }
        other => deny(
            RULE,
            format!("release {} pins its artifact by {}", r.id, other.unwrap_or("nothing")),
            "pin the artifact by sha256 (releases made by `skiff release create` are)",
        ),
    }
}

fn instance_ceiling(i: &PlanInput, limits: &Limits) -> RuleResult {
    const RULE: &str = "instance-ceiling";
    let (ceiling, whose) = if i.provider == "local" {
        (LOCAL_MAX_INSTANCES, "the local provider".to_owned())
    } else {
        (limits.for_env(&i.environment).max_instances, format!("environment {}", i.environment))
    };
    let most = i.instances.max.max(i.instances.desired);
    if most > ceiling {
        let fix = if i.provider == "local" {
            format!("lower instances.max (and instances.desired) to {ceiling} or fewer: one machine runs them all")
        } else {
            "lower instances.max (and instances.desired), or raise the ceiling in policies/limits.json".to_owned()
        };
        deny(RULE, format!("up to {most} instances exceed the ceiling of {ceiling} for {whose}"), fix)
    } else {
        pass(RULE, format!("up to {most} instances within the ceiling of {ceiling} for {whose}"))
    }
}

fn cost_ceiling(i: &PlanInput, limits: &Limits) -> RuleResult {
    const RULE: &str = "cost-ceiling";
    if i.provider == "local" {
        return skip(RULE, "the local provider costs nothing");
    }
    let Some(cost) = &i.cost else {
        return skip(RULE, "no cost estimate for this plan; the instance ceiling still applies");
    };
    if !cost.unpriced.is_empty() {
        return skip(
            RULE,
            format!("no price known for {}; the instance ceiling still applies", cost.unpriced.join(", ")),
        );
    }
    let ceiling = limits.for_env(&i.environment).max_monthly_usd;
    if cost.at_max_usd > ceiling {
        deny(
            RULE,
            format!(
                "≈ ${:.2}/month at most (every group at its maximum) exceeds ${ceiling:.2} for environment {}",
                cost.at_max_usd, i.environment
            ),
            "see `skiff cost explain`; choose a smaller class or fewer instances (intent.cost: low), or raise the ceiling in policies/limits.json",
        )
    } else {
        pass(
            RULE,
            format!(
                "≈ ${:.2}/month at most (every group at its maximum), within ${ceiling:.2} for environment {}",
                cost.at_max_usd, i.environment
            ),
        )
    }
}

fn database_deletion_needs_snapshot(i: &PlanInput) -> RuleResult {
    const RULE: &str = "database-deletion-needs-snapshot";
    if i.database_deletions.is_empty() {
        return pass(RULE, "no database is deleted");
    }
    match i.database_deletions.iter().find(|d| d.snapshot_age_ms.is_none_or(|a| a > FRESH_SNAPSHOT_MS)) {
        Some(d) => deny(
            RULE,
            match d.snapshot_age_ms {
                None => format!("database {} would be deleted without any snapshot", d.id),
                Some(a) => format!("database {} would be deleted; its newest snapshot is {}h old", d.id, a / 3_600_000),
            },
            format!("snapshot database {} first, then retry: the deletion is refused until one is under 24h old", d.id),
        ),
        None => pass(RULE, "every deleted database has a snapshot from the last 24h"),
    }
}

fn irreversible_needs_approval(i: &PlanInput) -> RuleResult {
    const RULE: &str = "irreversible-needs-approval";
    let ungated: Vec<&str> = i
        .steps
        .iter()
        .filter(|s| s.safety == "irreversible" && !s.approval && !s.routine)
        .map(|s| s.id.as_str())
        .collect();
    if ungated.is_empty() {
        pass(RULE, "every irreversible step is gated by an approval or undone by a routine operation")
    } else {
        deny(
            RULE,
            format!("irreversible step(s) without an approval gate: {}", ungated.join(", ")),
            "add an approval gate before them (sagas do this unless policy allows the step)",
        )
    }
}

fn production_needs_approver(i: &PlanInput) -> RuleResult {
    const RULE: &str = "production-needs-approver";
    if i.environment != "production" {
        return skip(RULE, format!("environment {} is not production", i.environment));
    }
    if i.action == "check" {
        return skip(RULE, "nothing changes yet; the actor is checked when it does");
    }
    if i.actor.roles.iter().any(|r| r == "approver") {
        pass(RULE, format!("{} holds the approver role", i.actor.name))
    } else {
        deny(
            RULE,
            format!("{} changes production without the approver role", i.actor.name),
            "have someone with the approver role run it, or approve the operation (`skiff saga approve OP`)",
        )
    }
}
