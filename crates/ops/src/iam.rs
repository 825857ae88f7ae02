//! `skiff iam policy`: the IAM policy document Skiff itself needs on AWS, scoped to
//! the resolved state bucket, region and account.

use skiff_sdk::{Answer, Code, Envelope, Safety};

use crate::context::Context;
use crate::error::{Error, Result};

/// `skiff iam policy [--account ID]`.
pub(crate) async fn policy(ctx: &Context, account: Option<String>) -> Result<Answer> {
    let (_, resolved) = ctx.resolve()?;
    let state = resolved.state.value.clone();
    let invalid = |msg: String| {
        Error::from(Envelope::failure(Code::Usage, msg).fact("the policy is scoped to an S3 state bucket").action(
            "state",
            "skiff iam policy --bucket s3://BUCKET/PREFIX",
            false,
            Safety::ReadOnly,
            0.7,
        ))
    };
    let (bucket, prefix) = skiff_provider_aws::split_bucket(&state).map_err(|e| invalid(e.message))?;
    let scope = match account {
        Some(account) => {
            if account.len() != 12 || !account.bytes().all(|b| b.is_ascii_digit()) {
                return Err(invalid(format!("--account {account} is not a 12-digit AWS account id")));
            }
            let region = resolved
                .region
                .map(|r| r.value)
                .ok_or_else(|| invalid("no region: pass --region (or set it in the context)".to_owned()))?;
            skiff_provider_aws::Scope { partition: "aws".to_owned(), account, region, bucket, prefix }
        }
        None => {
            let provider = crate::factory::aws_provider(ctx).await?;
            provider.scope().await.cloned().map_err(|e| {
                Error::from(
                    Envelope::failure(Code::ProviderError, "cannot look up the AWS account").fact(e.message).action(
                        "account",
                        "skiff iam policy --account ACCOUNT_ID --region REGION",
                        false,
                        Safety::ReadOnly,
                        0.7,
                    ),
                )
            })?
        }
    };
    let doc = skiff_provider_aws::skiff_policy(&scope);
    let text = serde_json::to_string_pretty(&doc).unwrap_or_default();
    let actions: usize = doc.statement.iter().map(|s| s.action.len()).sum();
    // Human output is the document alone, so it can be redirected into a file.
    let outcome = Answer::from(
        Envelope::ok(format!("IAM policy for Skiff on {state}"))
            .fact(format!("{} statements, {actions} actions, none of them a wildcard", doc.statement.len()))
            .fact(format!("account {}, region {}", scope.account, scope.region))
            .data(serde_json::json!({ "policy": doc }))
            .action(
                "create",
                "aws iam create-policy --policy-name skiff --policy-document file://skiff-policy.json",
                true,
                Safety::Reversible,
                0.6,
            ),
    )
    .body(text);
    Ok(outcome.raw())
}
