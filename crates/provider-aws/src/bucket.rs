//! The state bucket and Skiff's KMS key: a bucket with versioning, default SSE-KMS
//! encryption under `alias/skiff`, every public access path blocked, TLS-only access,
//! and a proof that conditional writes are honoured (a stale `If-None-Match` is refused).

use aws_sdk_s3::types::{
    BucketVersioningStatus, PublicAccessBlockConfiguration, ServerSideEncryption, ServerSideEncryptionByDefault,
    ServerSideEncryptionConfiguration, ServerSideEncryptionRule, VersioningConfiguration,
};
use serde::Serialize;
use skiff_pluginapi::{ProviderError, Result};

use crate::names::KMS_ALIAS;
use crate::{AwsProvider, code, fail};

/// What [`ensure_state_bucket`] found and set.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct BucketReport {
    /// Bucket name.
    pub bucket: String,
    /// Whether this call created it.
    pub created: bool,
    /// The KMS key (ARN) objects are encrypted with.
    pub kms_key: String,
    /// Versioning is enabled.
    pub versioning: bool,
    /// All four public access blocks are on.
    pub public_access_blocked: bool,
    /// A bucket policy refuses requests without TLS (not set on a plain-http endpoint).
    pub tls_only: bool,
    /// A create-only write of an existing key was refused (412).
    pub conditional_writes: bool,
}

impl AwsProvider {
    /// The KMS key behind `alias/skiff`, if it exists (looked up once per process).
    pub(crate) async fn kms_key(&self) -> Result<Option<String>> {
        match self.c.kms.describe_key().key_id(KMS_ALIAS).send().await {
            Ok(k) => Ok(k.key_metadata().map(|m| m.arn().unwrap_or(m.key_id()).to_owned())),
            Err(e) if code(&e) == Some("NotFoundException") => Ok(None),
            Err(e) => Err(fail("describe the KMS key alias/skiff", e)),
        }
    }

    /// The KMS key behind `alias/skiff`, created (with rotation on) when missing.
    pub async fn ensure_kms_key(&self) -> Result<String> {
        if let Some(k) = self.kms_key().await? {
            return Ok(k);
        }
        let made = self
            .c
            .kms
            .create_key()
            .description("Skiff: state bucket and secrets")
            .tags(
                aws_sdk_kms::types::Tag::builder()
                    .tag_key("skiff:purpose")
                    .tag_value("state")
                    .build()
                    .map_err(|e| ProviderError::new(e.to_string(), false))?,
            )
            .send()
            .await
            .map_err(|e| fail("create the KMS key", e))?;
        let meta = made.key_metadata().ok_or_else(|| ProviderError::new("the new KMS key was not returned", true))?;
        let id = meta.key_id().to_owned();
        let arn = meta.arn().unwrap_or(&id).to_owned();
        let _ = self.c.kms.enable_key_rotation().key_id(&id).send().await;
        match self.c.kms.create_alias().alias_name(KMS_ALIAS).target_key_id(&id).send().await {
            Ok(_) => Ok(arn),
            // Another process won the race: use its key, leave ours unused.
            Err(e) if code(&e) == Some("AlreadyExistsException") => {
                self.kms_key().await?.ok_or_else(|| ProviderError::new("alias/skiff vanished", true))
            }
            Err(e) => Err(fail("name the KMS key alias/skiff", e)),
        }
    }
}

/// Creates or completes the state bucket of `provider`'s settings (idempotent).
pub async fn ensure_state_bucket(p: &AwsProvider) -> Result<BucketReport> {
    let s3 = &p.c.s3;
    let bucket = p.bucket.clone();
    let created = match s3.head_bucket().bucket(&bucket).send().await {
        Ok(_) => false,
        Err(e) if e.raw_response().is_some_and(|r| r.status().as_u16() == 404) => {
            let mut req = s3.create_bucket().bucket(&bucket);
            if p.region != "us-east-1" {
                req = req.create_bucket_configuration(
                    aws_sdk_s3::types::CreateBucketConfiguration::builder()
                        .location_constraint(aws_sdk_s3::types::BucketLocationConstraint::from(p.region.as_str()))
                        .build(),
                );
            }
            match req.send().await {
                Ok(_) => true,
                Err(e) if code(&e) == Some("BucketAlreadyOwnedByYou") => false,
                Err(e) => return Err(fail(&format!("create bucket {bucket}"), e)),
            }
        }
        Err(e) => return Err(fail(&format!("look at bucket {bucket}"), e)),
    };
    s3.put_bucket_versioning()
        .bucket(&bucket)
        .versioning_configuration(VersioningConfiguration::builder().status(BucketVersioningStatus::Enabled).build())
        .send()
        .await
        .map_err(|e| fail("enable versioning", e))?;
    let key = p.ensure_kms_key().await?;
    let rule = ServerSideEncryptionRule::builder()
        .apply_server_side_encryption_by_default(
            ServerSideEncryptionByDefault::builder()
                .sse_algorithm(ServerSideEncryption::AwsKms)
                .kms_master_key_id(&key)
                .build()
                .map_err(|e| ProviderError::new(e.to_string(), false))?,
        )
        .bucket_key_enabled(true)
        .build();
    s3.put_bucket_encryption()
        .bucket(&bucket)
        .server_side_encryption_configuration(
            ServerSideEncryptionConfiguration::builder()
                .rules(rule)
                .build()
                .map_err(|e| ProviderError::new(e.to_string(), false))?,
        )
        .send()
        .await
        .map_err(|e| fail("set default SSE-KMS encryption", e))?;
    s3.put_public_access_block()
        .bucket(&bucket)
        .public_access_block_configuration(
            PublicAccessBlockConfiguration::builder()
                .block_public_acls(true)
                .ignore_public_acls(true)
                .block_public_policy(true)
                .restrict_public_buckets(true)
                .build(),
        )
        .send()
        .await
        .map_err(|e| fail("block public access", e))?;
    let tags = crate::posture::BUCKET_TAGS
        .iter()
        .map(|(k, v)| aws_sdk_s3::types::Tag::builder().key(*k).value(*v).build())
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| ProviderError::new(e.to_string(), false))?;
    s3.put_bucket_tagging()
        .bucket(&bucket)
        .tagging(
            aws_sdk_s3::types::Tagging::builder()
                .set_tag_set(Some(tags))
                .build()
                .map_err(|e| ProviderError::new(e.to_string(), false))?,
        )
        .send()
        .await
        .map_err(|e| fail("tag the state bucket", e))?;
    // A plain-http endpoint (an emulator on loopback) could not be reached at all
    // under a TLS-only policy, so it gets none, and the report says so.
    let tls_only = !p.plain_http;
    if tls_only {
        require_tls(p, &bucket).await?;
    }
    let conditional_writes = probe_conditional_writes(p).await?;
    let versioning = probe_versioning(p).await?;
    let blocked = s3
        .get_public_access_block()
        .bucket(&bucket)
        .send()
        .await
        .map_err(|e| fail("read the public access block", e))?
        .public_access_block_configuration()
        .is_some_and(|c| {
            c.block_public_acls() == Some(true)
                && c.ignore_public_acls() == Some(true)
                && c.block_public_policy() == Some(true)
                && c.restrict_public_buckets() == Some(true)
        });
    Ok(BucketReport {
        bucket,
        created,
        kms_key: key,
        versioning,
        public_access_blocked: blocked,
        tls_only,
        conditional_writes,
    })
}

/// The bucket policy Skiff writes: every request not made over TLS is refused.
pub(crate) fn tls_only_policy(partition: &str, bucket: &str) -> serde_json::Value {
    serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Sid": "TlsOnly",
            "Effect": "Deny",
            "Principal": "*",
            "Action": "s3:*",
            "Resource": [format!("arn:{partition}:s3:::{bucket}"), format!("arn:{partition}:s3:::{bucket}/*")],
            "Condition": {"Bool": {"aws:SecureTransport": "false"}}
        }]
    })
}

/// A bucket policy refusing every request not made over TLS.
async fn require_tls(p: &AwsProvider, bucket: &str) -> Result<()> {
    let scope = p.scope().await?;
    let policy = tls_only_policy(&scope.partition, bucket);
    p.c.s3
        .put_bucket_policy()
        .bucket(bucket)
        .policy(policy.to_string())
        .send()
        .await
        .map_err(|e| fail("require TLS", e))?;
    Ok(())
}

/// Writes a probe create-only twice: the second must be refused with 412.
async fn probe_conditional_writes(p: &AwsProvider) -> Result<bool> {
    let key = format!("{}.skiff/conditional-write-probe", p.prefix);
    let put = || {
        p.c.s3.put_object().bucket(&p.bucket).key(&key).if_none_match("*").body(Vec::from(&b"probe"[..]).into()).send()
    };
    match put().await {
        Ok(_) => {}
        Err(e) if e.raw_response().is_some_and(|r| r.status().as_u16() == 412) => {}
        Err(e) => return Err(fail("probe conditional writes", e)),
    }
    let refused = match put().await {
        Ok(_) => false,
        Err(e) if e.raw_response().is_some_and(|r| matches!(r.status().as_u16(), 409 | 412)) => true,
        Err(e) => return Err(fail("probe conditional writes", e)),
    };
    Ok(refused)
}

/// Writes a probe key twice: a versioned bucket keeps both versions.
async fn probe_versioning(p: &AwsProvider) -> Result<bool> {
    let key = format!("{}.skiff/versioning-probe", p.prefix);
    for body in [&b"one"[..], &b"two"[..]] {
        p.c.s3
            .put_object()
            .bucket(&p.bucket)
            .key(&key)
            .body(Vec::from(body).into())
            .send()
            .await
            .map_err(|e| fail("probe versioning", e))?;
    }
    let versions =
        p.c.s3
            .list_object_versions()
            .bucket(&p.bucket)
            .prefix(&key)
            .send()
            .await
            .map_err(|e| fail("list versions of the versioning probe", e))?;
    Ok(versions.versions().iter().filter(|v| v.key() == Some(key.as_str())).count() >= 2)
}
