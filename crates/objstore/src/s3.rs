//! `s3://` backend over `object_store`'s S3 client: create-only puts send
//! `If-None-Match: *`, conditional puts `If-Match: <etag>`. `object_store` has no
//! conditional delete, so delete-if-match sends a SigV4-presigned DELETE with
//! `If-Match`. The client's own retries are off: [`crate::Retrying`] retries instead,
//! so it knows when a conditional write may have applied before an error.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::TryStreamExt;
use object_store::aws::{AmazonS3, AmazonS3Builder, S3ConditionalPut};
use object_store::path::Path;
use object_store::signer::Signer;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload, RetryConfig, UpdateVersion};

use crate::key::{validate_key, validate_prefix};
use crate::{Listed, Object, Result, Store, StoreError, Version};

/// How to reach S3: everything `AWS_*` configures, with explicit overrides.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct S3Settings {
    /// An S3-compatible endpoint such as `http://127.0.0.1:5000` (else `AWS_ENDPOINT_URL[_S3]`).
    pub endpoint: Option<String>,
    /// The region (else `AWS_REGION` / `AWS_DEFAULT_REGION`).
    pub region: Option<String>,
    /// Access key id (else the standard credential chain).
    pub access_key_id: Option<String>,
    /// Secret access key.
    pub secret_access_key: Option<String>,
}

impl S3Settings {
    /// Settings from the standard environment variables.
    pub fn from_env() -> Self {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        S3Settings {
            endpoint: var("AWS_ENDPOINT_URL_S3").or_else(|| var("AWS_ENDPOINT_URL")),
            region: var("AWS_REGION").or_else(|| var("AWS_DEFAULT_REGION")),
            access_key_id: None,
            secret_access_key: None,
        }
    }
}

/// A bucket (and key prefix) on S3 or an S3-compatible endpoint.
#[derive(Debug, Clone)]
pub struct S3Store {
    store: Arc<AmazonS3>,
    http: reqwest::Client,
    bucket: String,
    prefix: String,
}

impl S3Store {
    /// Configures from the standard `AWS_*` variables and the credential chain, with
    /// `settings` on top; plain-HTTP endpoints such as moto on loopback are allowed.
    pub fn new(bucket: &str, prefix: &str, settings: &S3Settings) -> Result<Self> {
        let url = format!("s3://{bucket}/{prefix}");
        let S3Settings { endpoint, region, access_key_id, secret_access_key } = settings.clone();
        let mut builder = AmazonS3Builder::from_env()
            .with_bucket_name(bucket)
            .with_conditional_put(S3ConditionalPut::ETagMatch)
            .with_retry(RetryConfig { max_retries: 0, ..RetryConfig::default() });
        if let Some(region) = region {
            builder = builder.with_region(region);
        }
        if let (Some(id), Some(secret)) = (access_key_id, secret_access_key) {
            builder = builder.with_access_key_id(id).with_secret_access_key(secret);
        }
        if let Some(endpoint) = endpoint {
            builder = builder
                .with_allow_http(endpoint.starts_with("http://"))
                .with_virtual_hosted_style_request(false)
                .with_endpoint(endpoint);
        }
        let store = builder.build().map_err(|e| StoreError::Unavailable {
            url: url.clone(),
            message: format!("{e}; set AWS credentials and region (and AWS_ENDPOINT_URL for a non-AWS endpoint)"),
        })?;
        Ok(S3Store {
            store: Arc::new(store),
            http: reqwest::Client::new(),
            bucket: bucket.to_owned(),
            prefix: prefix.to_owned(),
        })
    }

    fn path(&self, key: &str) -> Path {
        if self.prefix.is_empty() { Path::from(key) } else { Path::from(format!("{}/{key}", self.prefix)) }
    }

    fn strip<'a>(&self, location: &'a str) -> &'a str {
        if self.prefix.is_empty() {
            location
        } else {
            location.strip_prefix(&self.prefix).and_then(|l| l.strip_prefix('/')).unwrap_or(location)
        }
    }

    fn error(&self, key: &str, e: object_store::Error) -> StoreError {
        use object_store::Error as E;
        if e.to_string().contains("NoSuchBucket") {
            return StoreError::Unavailable {
                url: self.url(),
                message: format!("bucket `{}` does not exist; create it or fix the URL", self.bucket),
            };
        }
        match e {
            E::AlreadyExists { .. } => StoreError::AlreadyExists { key: key.to_owned(), maybe_applied: false },
            E::Precondition { .. } | E::NotFound { .. } => {
                StoreError::PreconditionFailed { key: key.to_owned(), maybe_applied: false }
            }
            E::PermissionDenied { .. } | E::Unauthenticated { .. } => StoreError::Unavailable {
                url: self.url(),
                message: format!("{e}; check the credentials and bucket policy"),
            },
            other => classify(&self.url(), key, &other.to_string()),
        }
    }
}

/// Sorts an error message into permanent (bucket missing, access denied) or transient.
fn classify(url: &str, key: &str, message: &str) -> StoreError {
    const PERMANENT: [&str; 7] = [
        "NoSuchBucket",
        "AccessDenied",
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "403",
        "401",
        "InvalidBucketName",
    ];
    if PERMANENT.iter().any(|p| message.contains(p)) {
        StoreError::Unavailable {
            url: url.to_owned(),
            message: format!("{message}; check the bucket exists and the credentials may use it"),
        }
    } else {
        StoreError::Transient { key: key.to_owned(), message: message.to_owned() }
    }
}

fn version(e_tag: Option<String>) -> Version {
    Version(e_tag.unwrap_or_default())
}

#[async_trait]
impl Store for S3Store {
    async fn get(&self, key: &str) -> Result<Option<Object>> {
        validate_key(key)?;
        let got = match self.store.get(&self.path(key)).await {
            Ok(g) => g,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(self.error(key, e)),
        };
        let e_tag = got.meta.e_tag.clone();
        let bytes = got.bytes().await.map_err(|e| self.error(key, e))?;
        Ok(Some(Object { bytes: bytes.to_vec(), version: version(e_tag) }))
    }

    async fn put_create(&self, key: &str, bytes: Vec<u8>) -> Result<Version> {
        validate_key(key)?;
        let opts = PutOptions { mode: PutMode::Create, ..PutOptions::default() };
        let r = self.store.put_opts(&self.path(key), PutPayload::from(bytes), opts).await;
        match r {
            Ok(r) => Ok(version(r.e_tag)),
            Err(object_store::Error::Precondition { .. }) => {
                Err(StoreError::AlreadyExists { key: key.to_owned(), maybe_applied: false })
            }
            Err(e) => Err(self.error(key, e)),
        }
    }

    async fn put_if_match(&self, key: &str, bytes: Vec<u8>, expected: &Version) -> Result<Version> {
        validate_key(key)?;
        let mode = PutMode::Update(UpdateVersion { e_tag: Some(expected.0.clone()), version: None });
        let opts = PutOptions { mode, ..PutOptions::default() };
        match self.store.put_opts(&self.path(key), PutPayload::from(bytes), opts).await {
            Ok(r) => Ok(version(r.e_tag)),
            Err(e) => Err(self.error(key, e)),
        }
    }

    async fn delete_if_match(&self, key: &str, expected: &Version) -> Result<()> {
        validate_key(key)?;
        let url = self
            .store
            .signed_url(reqwest::Method::DELETE, &self.path(key), Duration::from_secs(300))
            .await
            .map_err(|e| self.error(key, e))?;
        let response = self
            .http
            .delete(url.as_str())
            .header("If-Match", &expected.0)
            .send()
            .await
            .map_err(|e| StoreError::Transient { key: key.to_owned(), message: e.to_string() })?;
        match response.status().as_u16() {
            200 | 204 => Ok(()),
            404 | 412 => Err(StoreError::PreconditionFailed { key: key.to_owned(), maybe_applied: false }),
            status => {
                let body = response.text().await.unwrap_or_default();
                Err(classify(&self.url(), key, &format!("DELETE returned {status}: {body}")))
            }
        }
    }

    async fn list(&self, prefix: &str) -> Result<Vec<Listed>> {
        validate_prefix(prefix)?;
        let dir = match prefix.rfind('/') {
            Some(i) => &prefix[..i],
            None => "",
        };
        let base = match (self.prefix.is_empty(), dir.is_empty()) {
            (true, true) => None,
            (true, false) => Some(Path::from(dir)),
            (false, true) => Some(Path::from(self.prefix.as_str())),
            (false, false) => Some(Path::from(format!("{}/{dir}", self.prefix))),
        };
        let metas: Vec<_> = self.store.list(base.as_ref()).try_collect().await.map_err(|e| self.error(prefix, e))?;
        let mut out: Vec<Listed> = metas
            .into_iter()
            .map(|m| Listed { key: self.strip(m.location.as_ref()).to_owned(), size: m.size })
            .filter(|l| l.key.starts_with(prefix))
            .collect();
        out.sort();
        Ok(out)
    }

    fn url(&self) -> String {
        if self.prefix.is_empty() {
            format!("s3://{}", self.bucket)
        } else {
            format!("s3://{}/{}", self.bucket, self.prefix)
        }
    }
}
