//! Key rotation for what Skiff encrypts with KMS: its Secrets Manager secrets and the
//! state bucket. A rotation makes a new key (tagged with the operation, so making it
//! again finds it), re-encrypts every secret of the old key under it (UpdateSecret
//! with the new KmsKeyId and the same value) and points the bucket's default
//! encryption at it, moves the alias, and schedules the old key's deletion. Objects
//! written to the bucket before the rotation stay encrypted with the old key: the key
//! counts as still in use while any does, so its deletion waits until they are
//! rewritten.

use aws_sdk_kms::types::{KeyMetadata, KeyState, Tag};
use aws_sdk_s3::types::{
    ServerSideEncryption, ServerSideEncryptionByDefault, ServerSideEncryptionConfiguration, ServerSideEncryptionRule,
};
use skiff_pluginapi::{KeyInfo, ProviderError, Result};

use crate::{AwsProvider, code, fail};

const TAG_ROTATION: &str = "skiff:rotation";

fn alias_name(alias: &str) -> String {
    if alias.starts_with("alias/") { alias.to_owned() } else { format!("alias/{alias}") }
}

fn names(kms: &str, meta: &KeyMetadata) -> bool {
    kms == meta.key_id() || meta.arn() == Some(kms) || kms.ends_with(&format!("key/{}", meta.key_id()))
}

fn bad(e: impl std::fmt::Display) -> ProviderError {
    ProviderError::new(e.to_string(), false)
}

impl AwsProvider {
    async fn key_meta(&self, key: &str) -> Result<Option<KeyMetadata>> {
        match self.c.kms.describe_key().key_id(key).send().await {
            Ok(k) => Ok(k.key_metadata().cloned()),
            Err(e) if code(&e) == Some("NotFoundException") => Ok(None),
            Err(e) => Err(fail(&format!("describe KMS key {key}"), e)),
        }
    }

    /// `skiff/*` secrets and the key each is encrypted with.
    async fn secret_keys(&self) -> Result<Vec<(String, Option<String>)>> {
        let mut pages = self.c.secrets.list_secrets().into_paginator().send();
        let mut out = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| fail("list secrets", e))?;
            for s in page.secret_list() {
                if let Some(name) = s.name().filter(|n| n.starts_with("skiff/")) {
                    out.push((name.to_owned(), s.kms_key_id().map(str::to_owned)));
                }
            }
        }
        Ok(out)
    }

    /// The key the state bucket's default encryption names.
    async fn bucket_key(&self) -> Result<Option<String>> {
        match self.c.s3.get_bucket_encryption().bucket(&self.bucket).send().await {
            Ok(r) => Ok(r
                .server_side_encryption_configuration()
                .and_then(|c| c.rules().first())
                .and_then(|r| r.apply_server_side_encryption_by_default())
                .and_then(|d| d.kms_master_key_id())
                .map(str::to_owned)),
            Err(e) if code(&e) == Some("ServerSideEncryptionConfigurationNotFoundError") => Ok(None),
            Err(e) => Err(fail("read the state bucket's encryption", e)),
        }
    }

    /// Objects under the state prefix encrypted with the key.
    async fn objects_under(&self, meta: &KeyMetadata) -> Result<usize> {
        let mut pages = self.c.s3.list_objects_v2().bucket(&self.bucket).prefix(&self.prefix).into_paginator().send();
        let mut n = 0;
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| fail("list the state bucket", e))?;
            for o in page.contents() {
                let Some(key) = o.key() else { continue };
                let head = self.c.s3.head_object().bucket(&self.bucket).key(key).send().await;
                let head = head.map_err(|e| fail(&format!("look at s3://{}/{key}", self.bucket), e))?;
                if head.ssekms_key_id().is_some_and(|k| names(k, meta)) {
                    n += 1;
                }
            }
        }
        Ok(n)
    }

    async fn info(&self, meta: &KeyMetadata, scan_objects: bool) -> Result<KeyInfo> {
        let mut sealed: Vec<String> = self
            .secret_keys()
            .await?
            .into_iter()
            .filter(|(_, k)| k.as_deref().is_some_and(|k| names(k, meta)))
            .map(|(n, _)| format!("secret://{}", n.trim_start_matches("skiff/")))
            .collect();
        if self.bucket_key().await?.is_some_and(|k| names(&k, meta)) {
            sealed.push(format!("s3://{}/{} (default encryption)", self.bucket, self.prefix));
        }
        if scan_objects {
            let n = self.objects_under(meta).await?;
            if n > 0 {
                sealed.push(format!("s3://{}/{}: {n} objects written before the rotation", self.bucket, self.prefix));
            }
        }
        let ms =
            |t: Option<&aws_sdk_kms::primitives::DateTime>| t.and_then(|t| u64::try_from(t.to_millis().ok()?).ok());
        Ok(KeyInfo {
            id: meta.key_id().to_owned(),
            provider_id: meta.arn().unwrap_or(meta.key_id()).to_owned(),
            created_at_ms: ms(meta.creation_date()).unwrap_or(0),
            deletion_at_ms: if meta.key_state() == Some(&KeyState::PendingDeletion) {
                ms(meta.deletion_date())
            } else {
                None
            },
            sealed,
        })
    }

    pub(crate) async fn kms_alias(&self, alias: &str) -> Result<Option<KeyInfo>> {
        let Some(meta) = self.key_meta(&alias_name(alias)).await? else { return Ok(None) };
        self.info(&meta, false).await.map(Some)
    }

    pub(crate) async fn kms_key_info(&self, id: &str) -> Result<Option<KeyInfo>> {
        let Some(meta) = self.key_meta(id).await? else { return Ok(None) };
        self.info(&meta, true).await.map(Some)
    }

    pub(crate) async fn kms_create(&self, alias: &str, token: &str) -> Result<KeyInfo> {
        let mut pages = self.c.kms.list_keys().into_paginator().send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| fail("list KMS keys", e))?;
            for k in page.keys() {
                let Some(id) = k.key_id() else { continue };
                let tags = self.c.kms.list_resource_tags().key_id(id).send().await;
                let Ok(tags) = tags else { continue };
                if tags.tags().iter().any(|t| t.tag_key() == TAG_ROTATION && t.tag_value() == token)
                    && let Some(meta) = self.key_meta(id).await?
                {
                    return self.info(&meta, false).await;
                }
            }
        }
        let tag = |k: &str, v: &str| Tag::builder().tag_key(k).tag_value(v).build().map_err(bad);
        let made = self
            .c
            .kms
            .create_key()
            .description(format!("Skiff: state bucket and secrets ({} rotation {token})", alias_name(alias)))
            .tags(tag("skiff:purpose", "state")?)
            .tags(tag(TAG_ROTATION, token)?)
            .send()
            .await
            .map_err(|e| fail("create a KMS key", e))?;
        let meta = made.key_metadata().ok_or_else(|| ProviderError::new("the new KMS key was not returned", true))?;
        let _ = self.c.kms.enable_key_rotation().key_id(meta.key_id()).send().await;
        self.info(meta, false).await
    }

    pub(crate) async fn kms_reencrypt(&self, from: &str, to: &str) -> Result<Vec<String>> {
        let old = self.key_meta(from).await?.ok_or_else(|| ProviderError::not_found(format!("KMS key {from}")))?;
        let new = self.key_meta(to).await?.ok_or_else(|| ProviderError::not_found(format!("KMS key {to}")))?;
        let target = new.arn().unwrap_or(new.key_id()).to_owned();
        let mut done = Vec::new();
        for (name, key) in self.secret_keys().await? {
            if !key.as_deref().is_some_and(|k| names(k, &old)) {
                continue;
            }
            let value = self.c.secrets.get_secret_value().secret_id(&name).send().await;
            let value = value.map_err(|e| fail(&format!("read secret {name}"), e))?;
            let text = value.secret_string().unwrap_or_default();
            self.c
                .secrets
                .update_secret()
                .secret_id(&name)
                .kms_key_id(&target)
                .secret_string(text)
                .send()
                .await
                .map_err(|e| fail(&format!("re-encrypt secret {name}"), e))?;
            done.push(format!("secret://{}", name.trim_start_matches("skiff/")));
        }
        if self.bucket_key().await?.is_some_and(|k| names(&k, &old)) {
            let by_default = ServerSideEncryptionByDefault::builder()
                .sse_algorithm(ServerSideEncryption::AwsKms)
                .kms_master_key_id(&target)
                .build()
                .map_err(bad)?;
            let rule = ServerSideEncryptionRule::builder()
                .apply_server_side_encryption_by_default(by_default)
                .bucket_key_enabled(true)
                .build();
            let config = ServerSideEncryptionConfiguration::builder().rules(rule).build().map_err(bad)?;
            self.c
                .s3
                .put_bucket_encryption()
                .bucket(&self.bucket)
                .server_side_encryption_configuration(config)
                .send()
                .await
                .map_err(|e| fail("point the state bucket's encryption at the new key", e))?;
            done.push(format!("s3://{} (default encryption)", self.bucket));
        }
        Ok(done)
    }

    pub(crate) async fn kms_move_alias(&self, alias: &str, to: &str) -> Result<()> {
        let name = alias_name(alias);
        match self.c.kms.update_alias().alias_name(&name).target_key_id(to).send().await {
            Ok(_) => Ok(()),
            Err(e) if code(&e) == Some("NotFoundException") => self
                .c
                .kms
                .create_alias()
                .alias_name(&name)
                .target_key_id(to)
                .send()
                .await
                .map(drop)
                .map_err(|e| fail(&format!("create {name}"), e)),
            Err(e) => Err(fail(&format!("move {name}"), e)),
        }
    }

    pub(crate) async fn kms_schedule_deletion(&self, id: &str, days: u32) -> Result<u64> {
        let meta = self.key_meta(id).await?.ok_or_else(|| ProviderError::not_found(format!("KMS key {id}")))?;
        if meta.key_state() == Some(&KeyState::PendingDeletion) {
            let at = meta.deletion_date().and_then(|t| t.to_millis().ok()).unwrap_or(0);
            return Ok(u64::try_from(at).unwrap_or(0));
        }
        let aliases = self.c.kms.list_aliases().key_id(id).send().await.map_err(|e| fail("list KMS aliases", e))?;
        if let Some(a) = aliases.aliases().first().and_then(|a| a.alias_name()) {
            return Err(ProviderError::new(format!("KMS key {id} is still named by {a}"), false));
        }
        let info = self.info(&meta, true).await?;
        if !info.sealed.is_empty() {
            return Err(ProviderError::new(format!("KMS key {id} still encrypts {}", info.sealed.join(", ")), false));
        }
        let days = i32::try_from(days).map_err(bad)?;
        let r = self.c.kms.schedule_key_deletion().key_id(id).pending_window_in_days(days).send().await;
        let r = r.map_err(|e| fail(&format!("schedule the deletion of KMS key {id}"), e))?;
        let at = r.deletion_date().and_then(|t| t.to_millis().ok()).unwrap_or(0);
        Ok(u64::try_from(at).unwrap_or(0))
    }
}
