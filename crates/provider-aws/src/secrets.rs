//! Secrets: every key of `secret://NAME/KEY` lives in one Secrets Manager secret
//! `skiff/NAME` (a JSON object), encrypted with Skiff's KMS key when there is one.
//! Instances read whole secrets with their role; the CLI never prints values.

use std::collections::BTreeMap;

use async_trait::async_trait;
use skiff_pluginapi::{KeyInfo, ProviderError, Result, Secrets};

use crate::names::{self, TAG_SERVICE};
use crate::{AwsProvider, code, fail};

fn bad_ref(reference: &str) -> ProviderError {
    ProviderError::new(format!("{reference} is not a secret reference; write secret://NAME/KEY"), false)
}

impl AwsProvider {
    /// The keys and values of `skiff/NAME`; `None` when it does not exist.
    pub(crate) async fn secret_map(&self, name: &str) -> Result<Option<BTreeMap<String, String>>> {
        let id = names::secret(name);
        match self.c.secrets.get_secret_value().secret_id(&id).send().await {
            Ok(v) => {
                let text = v.secret_string().unwrap_or("{}");
                serde_json::from_str(text).map(Some).map_err(|_| {
                    ProviderError::new(
                        format!("secret {id} is not a JSON object of strings; Skiff did not write it"),
                        false,
                    )
                })
            }
            Err(e) if code(&e) == Some("ResourceNotFoundException") => Ok(None),
            Err(e) => Err(fail(&format!("read secret {id}"), e)),
        }
    }

    pub(crate) async fn write_secret_map(
        &self,
        name: &str,
        map: &BTreeMap<String, String>,
        exists: bool,
    ) -> Result<()> {
        let id = names::secret(name);
        let body = serde_json::to_string(map).map_err(|e| ProviderError::new(e.to_string(), false))?;
        if exists {
            self.c
                .secrets
                .put_secret_value()
                .secret_id(&id)
                .secret_string(body)
                .send()
                .await
                .map_err(|e| fail(&format!("write secret {id}"), e))?;
            return Ok(());
        }
        let mut req = self
            .c
            .secrets
            .create_secret()
            .name(&id)
            .description("Skiff secret; values are resolved on instances only")
            .secret_string(body)
            .tags(aws_sdk_secretsmanager::types::Tag::builder().key(TAG_SERVICE).value(name).build());
        if let Some(key) = self.kms_key().await? {
            req = req.kms_key_id(key);
        }
        match req.send().await {
            Ok(_) => Ok(()),
            // Created concurrently: write the value as a new version instead.
            Err(e) if code(&e) == Some("ResourceExistsException") => {
                Box::pin(self.write_secret_map(name, map, true)).await
            }
            Err(e) => Err(fail(&format!("create secret {id}"), e)),
        }
    }
}

impl AwsProvider {
    /// Sets `reference` to `value`, keeping the value it replaces at
    /// `REFERENCE-previous` (in the same write), so an incident repair can go back.
    pub async fn put_keeping_previous(&self, reference: &str, value: &str) -> Result<()> {
        let (name, key) = names::parse_secret_ref(reference).ok_or_else(|| bad_ref(reference))?;
        let existing = self.secret_map(name).await?;
        let exists = existing.is_some();
        let mut map = existing.unwrap_or_default();
        if let Some(old) = map.get(key).cloned()
            && old != value
        {
            map.insert(format!("{key}-previous"), old);
        }
        map.insert(key.to_owned(), value.to_owned());
        self.write_secret_map(name, &map, exists).await
    }
}

impl AwsProvider {
    /// Every reference stored under `skiff/*`, sorted.
    pub async fn all_secret_refs(&self) -> Result<Vec<String>> {
        let mut pages = self.c.secrets.list_secrets().into_paginator().send();
        let mut names = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| fail("list secrets", e))?;
            names.extend(page.secret_list().iter().filter_map(|s| s.name()?.strip_prefix("skiff/").map(str::to_owned)));
        }
        let mut out = Vec::new();
        for name in names {
            out.extend(self.list(&name).await?);
        }
        out.sort();
        Ok(out)
    }
}

#[async_trait]
impl Secrets for AwsProvider {
    async fn put(&self, reference: &str, value: &str) -> Result<()> {
        let (name, key) = names::parse_secret_ref(reference).ok_or_else(|| bad_ref(reference))?;
        let existing = self.secret_map(name).await?;
        let exists = existing.is_some();
        let mut map = existing.unwrap_or_default();
        map.insert(key.to_owned(), value.to_owned());
        self.write_secret_map(name, &map, exists).await
    }

    async fn exists(&self, reference: &str) -> Result<bool> {
        let (name, key) = names::parse_secret_ref(reference).ok_or_else(|| bad_ref(reference))?;
        Ok(self.secret_map(name).await?.is_some_and(|m| m.contains_key(key)))
    }

    async fn list(&self, name: &str) -> Result<Vec<String>> {
        let map = self.secret_map(name).await?.unwrap_or_default();
        Ok(map.keys().map(|k| format!("secret://{name}/{k}")).collect())
    }

    /// Secrets Manager keeps the replaced version too (`AWSPREVIOUS`).
    async fn cut_over(&self, reference: &str, source: &str) -> Result<()> {
        let (sname, skey) = names::parse_secret_ref(source).ok_or_else(|| bad_ref(source))?;
        let new = self
            .secret_map(sname)
            .await?
            .and_then(|m| m.get(skey).cloned())
            .ok_or_else(|| ProviderError::not_found(source))?;
        let (name, key) = names::parse_secret_ref(reference).ok_or_else(|| bad_ref(reference))?;
        let existing = self.secret_map(name).await?;
        let exists = existing.is_some();
        let mut map = existing.unwrap_or_default();
        if map.get(key) == Some(&new) {
            return Ok(());
        }
        if let Some(old) = map.get(key).cloned() {
            map.insert(format!("{key}-previous"), old);
        }
        map.insert(key.to_owned(), new);
        self.write_secret_map(name, &map, exists).await
    }

    /// The version of a key's value, or of the whole secret for `secret://NAME`.
    async fn version(&self, reference: &str) -> Result<Option<String>> {
        let whole = reference.strip_prefix("secret://").is_some_and(|r| !r.contains('/'));
        let (name, key) = names::parse_secret_ref(reference).ok_or_else(|| bad_ref(reference))?;
        let Some(map) = self.secret_map(name).await? else { return Ok(None) };
        let value = if whole { serde_json::to_string(&map).ok() } else { map.get(key).cloned() };
        Ok(value.map(|v| skiff_secrets::version(&v)))
    }

    async fn key_alias(&self, alias: &str) -> Result<Option<KeyInfo>> {
        self.kms_alias(alias).await
    }

    async fn key(&self, id: &str) -> Result<Option<KeyInfo>> {
        self.kms_key_info(id).await
    }

    async fn create_key(&self, alias: &str, token: &str) -> Result<KeyInfo> {
        self.kms_create(alias, token).await
    }

    async fn reencrypt(&self, from: &str, to: &str) -> Result<Vec<String>> {
        self.kms_reencrypt(from, to).await
    }

    async fn move_alias(&self, alias: &str, to: &str) -> Result<()> {
        self.kms_move_alias(alias, to).await
    }

    async fn schedule_key_deletion(&self, id: &str, days: u32) -> Result<u64> {
        self.kms_schedule_deletion(id, days).await
    }

    async fn delete(&self, reference: &str) -> Result<()> {
        let (name, key) = names::parse_secret_ref(reference).ok_or_else(|| bad_ref(reference))?;
        let Some(mut map) = self.secret_map(name).await? else { return Ok(()) };
        if map.remove(key).is_none() {
            return Ok(());
        }
        if !map.is_empty() {
            return self.write_secret_map(name, &map, true).await;
        }
        let id = names::secret(name);
        match self.c.secrets.delete_secret().secret_id(&id).force_delete_without_recovery(true).send().await {
            Ok(_) => Ok(()),
            Err(e) if code(&e) == Some("ResourceNotFoundException") => Ok(()),
            Err(e) => Err(fail(&format!("delete secret {id}"), e)),
        }
    }
}
