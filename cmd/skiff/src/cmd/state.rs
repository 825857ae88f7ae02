//! `skiff state init|verify`.

use std::fmt::Write as _;

use skiff_sdk::{Code, Envelope, Safety};

use crate::cli::StateAction;
use crate::{Ctx, Outcome};

pub(super) fn run(ctx: &Ctx, action: StateAction) -> Outcome {
    match action {
        StateAction::Init => init(ctx),
        StateAction::Verify => verify(ctx),
    }
}

fn init(ctx: &Ctx) -> Outcome {
    let url = match ctx.resolve() {
        Ok((_, r)) => r.state.value,
        Err(o) => return *o,
    };
    if let Err(o) = ctx.confirm(&format!("initialize the state bucket {url}"), "skiff state init") {
        return *o;
    }
    let actor = ctx.actor();
    super::block_on(ctx, |ledger, _| async move {
        let created = match ledger.init(&actor).await {
            Ok(c) => c,
            Err(e) => return super::state_error(&e),
        };
        if created && let Err(e) = ledger.audit(&actor, "state.init", &url, Code::Ok, serde_json::json!({})).await {
            return super::state_error(&e);
        }
        let summary = if created {
            format!("initialized state bucket {url}")
        } else {
            format!("state bucket {url} was already initialized")
        };
        Envelope::ok(summary)
            .fact(format!("layout v1 under {url}"))
            .data(serde_json::json!({ "url": url, "created": created }))
            .action("verify", "skiff state verify", false, Safety::ReadOnly, 0.5)
            .into()
    })
}

fn verify(ctx: &Ctx) -> Outcome {
    super::block_on(ctx, |ledger, _| async move {
        let url = ledger.url();
        let report = match ledger.verify().await {
            Ok(r) => r,
            Err(e) => return super::state_error(&e),
        };
        let counts = format!(
            "{} objects, {} documents, {} event logs ({} events), {} digests checked",
            report.objects, report.documents, report.event_logs, report.events, report.digests
        );
        if report.is_clean() {
            return Envelope::ok(format!("state bucket {url} is sound")).fact(counts).data(&report).into();
        }
        let mut body = String::new();
        for f in &report.findings {
            let _ = writeln!(body, "{} {}\n    {}\n    fix: {}", f.code, f.key, f.message, f.fix);
        }
        let n = report.findings.len();
        let env = Envelope::failure(
            Code::StateCorrupt,
            format!("state bucket {url}: {n} finding{}", if n == 1 { "" } else { "s" }),
        )
        .fact(counts)
        .facts(report.findings.iter().take(20).map(|f| format!("{}: {}: {}", f.code, f.key, f.message)))
        .data(&report)
        .action("verify-json", "skiff state verify --format json", false, Safety::ReadOnly, 0.4);
        Outcome { body_replaces_facts: false, ..Outcome::from(env).body(body) }
    })
}
