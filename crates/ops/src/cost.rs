//! `skiff cost explain`: a spec's monthly estimate per resource (skiff-cost, from the
//! committed price table), the intent behind each figure, what another intent would
//! cost, and the environment's ceiling from `policies/limits.json` — the figure the
//! cost-ceiling rule judges. Read-only; reads no bucket.

use std::fmt::Write as _;
use std::path::Path;

use skiff_cost::{Alternative, Estimate, PriceTable};
use skiff_sdk::{Answer, Envelope, Safety};

use crate::context::Context;
use crate::error::Result;

/// `skiff cost explain [-f FILE] [--env ENV]`.
pub(crate) async fn explain(ctx: &Context, file: &Path, env: Option<&str>) -> Result<Answer> {
    let (shown, spec) = crate::spec::load(ctx, file).await?;
    let spec = crate::spec::for_environment(spec, env)?;
    let ir = skiff_ir::compile(&spec);
    let spec_path = ctx.cwd.join(file);
    let policy = crate::policy::load(&spec_path)?;
    let limits_file =
        spec_path.parent().unwrap_or(Path::new(".")).join(skiff_policy::POLICY_DIR).join(skiff_policy::LIMITS_FILE);
    let ceiling_from = if limits_file.is_file() {
        format!("{}/{}", skiff_policy::POLICY_DIR, skiff_policy::LIMITS_FILE)
    } else {
        "built-in default".to_owned()
    };
    let ceiling = policy.limits().for_env(&ir.environment).max_monthly_usd;
    let estimate = skiff_cost::estimate(&ir);
    let alternatives = skiff_cost::alternatives(&ir);
    let prices = PriceTable::committed();
    let within = estimate.at_max_usd <= ceiling;
    let mut answer = Envelope::ok(format!(
        "{} costs ≈ {}/month ({} at most, every group at its maximum)",
        ir.service,
        usd(estimate.monthly_usd),
        usd(estimate.at_max_usd)
    ))
    .fact(format!(
        "ceiling for environment {}: {} ({ceiling_from}); {}",
        ir.environment,
        usd(ceiling),
        if within {
            format!("at most {}, {} below it", usd(estimate.at_max_usd), usd(ceiling - estimate.at_max_usd))
        } else {
            "exceeded: the cost-ceiling rule denies a deploy on aws".to_owned()
        }
    ))
    .fact(format!("prices: {} on-demand, read {} (committed table, no network)", prices.region, prices.as_of));
    if ctx.resolve().is_ok_and(|(_, r)| r.provider.value.as_str() == "local") {
        answer = answer.fact("the local provider costs nothing: these figures are what `--provider aws` would cost");
    }
    if !estimate.unpriced.is_empty() {
        answer = answer.fact(format!(
            "no price known for {}: not in the figures, and the cost-ceiling rule does not apply",
            estimate.unpriced.join(", ")
        ));
    }
    answer = answer
        .data(serde_json::json!({
            "file": shown,
            "service": ir.service,
            "environment": ir.environment,
            "currency": prices.currency,
            "prices": { "source": prices.source, "as_of": prices.as_of, "region": prices.region },
            "monthly_usd": estimate.monthly_usd,
            "at_max_usd": estimate.at_max_usd,
            "lines": estimate.lines,
            "unpriced": estimate.unpriced,
            "free": estimate.free,
            "assumptions": prices.assumption_lines(),
            "alternatives": alternatives,
            "ceiling": {
                "environment": ir.environment,
                "max_monthly_usd": ceiling,
                "from": ceiling_from,
                "within": within,
            },
        }))
        .action("plan", format!("skiff plan -f {shown}"), false, Safety::ReadOnly, 0.5)
        .action(
            "policy",
            format!("skiff policy check -f {shown}"),
            false,
            Safety::ReadOnly,
            if within { 0.3 } else { 0.8 },
        );
    Ok(Answer::from(answer).body(body(&estimate, &alternatives, prices)))
}

/// `$1234.50`, `-$3.20`.
pub(crate) fn usd(v: f64) -> String {
    if v < 0.0 { format!("-${:.2}", -v) } else { format!("${v:.2}") }
}

/// A change in cost, signed: `+$3.20`, `-$1.00`, `±$0.00`.
pub(crate) fn delta(v: f64) -> String {
    if v.abs() < 0.005 {
        "±$0.00".to_owned()
    } else if v > 0.0 {
        format!("+${v:.2}")
    } else {
        usd(v)
    }
}

fn body(e: &Estimate, alternatives: &[Alternative], prices: &PriceTable) -> String {
    let width = e.lines.iter().map(|l| l.resource.len()).max().unwrap_or(0);
    let item = e.lines.iter().map(|l| l.item.chars().count()).max().unwrap_or(0);
    let mut out = format!("{:width$}  {:item$}  {:>10}  {:>10}\n", "Resource", "What", "per month", "at most");
    for l in &e.lines {
        let _ = writeln!(
            out,
            "{:width$}  {:item$}  {:>10}  {:>10}",
            l.resource,
            l.item,
            usd(l.monthly_usd),
            usd(l.at_max_usd)
        );
        for d in &l.drivers {
            let _ = writeln!(out, "    · {d}");
        }
    }
    let _ = writeln!(out, "{:width$}  {:item$}  {:>10}  {:>10}", "Total", "", usd(e.monthly_usd), usd(e.at_max_usd));
    if !alternatives.is_empty() {
        out.push_str("\nWith another intent\n");
        let w = alternatives.iter().map(|a| a.intent.len()).max().unwrap_or(0);
        for a in alternatives {
            let _ = writeln!(
                out,
                "  {:w$}  {:>10}  {:>10}  {}",
                a.intent,
                usd(a.monthly_usd),
                delta(a.delta_usd),
                a.summary
            );
        }
    }
    if !e.free.is_empty() {
        let _ = writeln!(out, "\nNo charge of their own: {}", e.free.join(", "));
    }
    out.push_str("\nAssumptions\n");
    for a in prices.assumption_lines() {
        let _ = writeln!(out, "  · {a}");
    }
    out
}
