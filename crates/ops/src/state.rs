//! `skiff state init|verify`.

use std::fmt::Write as _;

use skiff_sdk::{Answer, Code, Envelope, Safety};

use crate::context::Context;
use crate::error::{Error, Result, plural};

/// `skiff state init`.
pub(crate) async fn init(ctx: &Context) -> Result<Answer> {
    let (_, resolved) = ctx.resolve()?;
    let url = resolved.state.value;
    ctx.confirm(&format!("initialize the state bucket {url}"), "skiff state init")?;
    let bucket = prepare_aws_bucket(ctx, &url).await?;
    let actor = ctx.actor();
    {
        let (_, ledger) = ctx.ledger()?;
        let created = ledger.init(&actor).await.map_err(|e| crate::error::state(&e))?;
        if created {
            ledger
                .audit(&actor, "state.init", &url, Code::Ok, serde_json::json!({}))
                .await
                .map_err(|e| crate::error::state(&e))?;
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
        Ok(env.data(data).action("verify", "skiff state verify", false, Safety::ReadOnly, 0.5).into())
    }
}

/// `skiff state verify`.
pub(crate) async fn verify(ctx: &Context) -> Result<Answer> {
    {
        let (_, ledger) = ctx.ledger()?;
        let url = ledger.url();
        let report = ledger.verify().await.map_err(|e| crate::error::state(&e))?;
        let counts = format!(
            "{} objects, {} documents, {} event logs ({} events), {} digests checked",
            report.objects, report.documents, report.event_logs, report.events, report.digests
        );
        if report.is_clean() {
            return Ok(Envelope::ok(format!("state bucket {url} is sound")).fact(counts).data(&report).into());
        }
        let mut body = String::new();
        for f in &report.findings {
            let _ = writeln!(body, "{} {}\n    {}\n    fix: {}", f.code, f.key, f.message, f.fix);
        }
        let n = report.findings.len();
        let env = Envelope::failure(Code::StateCorrupt, format!("state bucket {url}: {}", plural(n, "finding")))
            .fact(counts)
            .facts(report.findings.iter().take(20).map(|f| format!("{}: {}: {}", f.code, f.key, f.message)))
            .data(&report)
            .action("verify-json", "skiff state verify --format json", false, Safety::ReadOnly, 0.4);
        Ok(Answer::from(env).body(body))
    }
}

/// On the AWS provider, creates or completes the S3 bucket itself first: versioning,
/// SSE-KMS, public access blocked, TLS only, conditional writes proven.
async fn prepare_aws_bucket(ctx: &Context, url: &str) -> Result<Option<skiff_provider_aws::BucketReport>> {
    let (_, resolved) = ctx.resolve()?;
    if resolved.provider.value != skiff_sdk::config::ProviderKind::Aws || !url.starts_with("s3://") {
        return Ok(None);
    }
    let provider = crate::factory::aws_provider(ctx).await?;
    let report = skiff_provider_aws::ensure_state_bucket(&provider).await.map_err(|e| {
        Error::from(
            Envelope::failure(Code::ProviderError, format!("cannot prepare the state bucket {url}"))
                .fact(e.message)
                .fact("the caller needs the StateBucket and Keys statements of `skiff iam policy`")
                .action("iam", "skiff iam policy", false, Safety::ReadOnly, 0.6),
        )
    })?;
    if !report.conditional_writes {
        return Err(Envelope::failure(Code::StateUnavailable, format!("{url} does not honour conditional writes"))
            .fact("a second create-only write of one key was accepted; compare-and-swap would lose updates")
            .fact("use AWS S3 or an S3 service with If-None-Match/If-Match support")
            .into());
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
