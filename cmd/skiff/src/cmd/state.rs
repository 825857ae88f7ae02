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
    let bucket = match prepare_aws_bucket(ctx, &url) {
        Ok(b) => b,
        Err(o) => return *o,
    };
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
        let mut data = serde_json::json!({ "url": url, "created": created });
        let mut env = Envelope::ok(summary).fact(format!("layout v1 under {url}"));
        if let Some(b) = &bucket {
            env = env.facts(bucket_facts(b));
            data["bucket"] = serde_json::to_value(b).unwrap_or_default();
        }
        env.data(data).action("verify", "skiff state verify", false, Safety::ReadOnly, 0.5).into()
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

/// On the AWS provider, creates or completes the S3 bucket itself first: versioning,
/// SSE-KMS, public access blocked, TLS only, conditional writes proven.
fn prepare_aws_bucket(ctx: &Ctx, url: &str) -> Result<Option<skiff_provider_aws::BucketReport>, Box<Outcome>> {
    let (_, resolved) = ctx.resolve()?;
    if resolved.provider.value != skiff_sdk::config::ProviderKind::Aws || !url.starts_with("s3://") {
        return Ok(None);
    }
    let provider = super::deploy::aws_provider(ctx)?;
    let runtime = ctx.runtime()?;
    let report = runtime.block_on(skiff_provider_aws::ensure_state_bucket(&provider)).map_err(|e| {
        Box::new(Outcome::from(
            Envelope::failure(Code::ProviderError, format!("cannot prepare the state bucket {url}"))
                .fact(e.message)
                .fact("the caller needs the StateBucket and Keys statements of `skiff iam policy`")
                .action("iam", "skiff iam policy", false, Safety::ReadOnly, 0.6),
        ))
    })?;
    if !report.conditional_writes {
        return Err(Box::new(Outcome::from(
            Envelope::failure(Code::StateUnavailable, format!("{url} does not honour conditional writes"))
                .fact("a second create-only write of one key was accepted; compare-and-swap would lose updates")
                .fact("use AWS S3 or an S3 service with If-None-Match/If-Match support"),
        )));
    }
    Ok(Some(report))
}

fn bucket_facts(b: &skiff_provider_aws::BucketReport) -> Vec<String> {
    let yes = |v: bool| if v { "on" } else { "off" };
    vec![
        format!("bucket {} {}", b.bucket, if b.created { "created" } else { "already existed" }),
        format!("versioning {}, public access blocked {}", yes(b.versioning), yes(b.public_access_blocked)),
        format!("default encryption SSE-KMS with {}", b.kms_key),
        format!("TLS-only policy {}, conditional writes honoured", yes(b.tls_only)),
    ]
}
