//! What every request shares: the settings requests run with, the ledger, tokens,
//! the index and the metrics. Each request runs in a fresh working directory holding
//! only what it brought (a spec, an artifact) and the server's `policies/`.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use skiff_ops::{Context, Request};
use skiff_sdk::{Answer, Code, Envelope};
use skiff_state::Ledger;

use crate::auth::{Auth, Caller};
use crate::index::Index;
use crate::metrics::Metrics;

/// How the server runs commands.
#[derive(Clone, Debug)]
pub struct Settings {
    /// The state bucket URL (absolute for file://).
    pub bucket: String,
    /// `local` or `aws`.
    pub provider: String,
    /// The signing key pair's directory (cosign.key, cosign.pub).
    pub keys: PathBuf,
    /// Policies every plan is checked against (`*.rego`, `limits.json`).
    pub policies: Option<PathBuf>,
    /// Settings passed through to commands (AWS_*, SKIFF_AWS_*, SKIFF_LEASE_TTL_MS, ...).
    pub passthrough: BTreeMap<String, String>,
}

/// Shared server state.
#[derive(Debug)]
pub struct Server {
    /// Settings.
    pub settings: Settings,
    /// The bucket.
    pub ledger: Ledger,
    /// Issued tokens: the bootstrap file's and the bucket's.
    pub auth: Auth,
    /// The read index.
    pub index: Index,
    /// Request metrics.
    pub metrics: Metrics,
    /// Wakes the refresher after a write.
    pub refresh: tokio::sync::Notify,
    /// The newest write a client of this replica saw succeed (ms since the epoch): reads
    /// answered after it include it.
    pub last_write_ms: std::sync::atomic::AtomicU64,
    /// Operation submissions in flight at once.
    pub submissions: tokio::sync::Semaphore,
    /// Longest a request may take (event streams excepted).
    pub request_timeout: std::time::Duration,
}

/// How long a submission waits for a slot before it is shed.
const SUBMISSION_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// The header carrying a consistency token: the time of a write, in ms since the epoch.
/// Mutations answer with it; a read sending it is answered from an index holding that
/// write, on any replica.
pub const CONSISTENCY: &str = "x-skiff-consistency";

/// A file a request brings into the command's working directory.
#[derive(Debug)]
pub struct Upload {
    /// Relative path inside the working directory.
    pub path: String,
    /// Content.
    pub bytes: Vec<u8>,
}

/// A relative path with no `..`, root or prefix: safe to join under a directory.
pub fn safe_relative(path: &str) -> Option<PathBuf> {
    let p = Path::new(path);
    let ok = !path.is_empty() && p.components().all(|c| matches!(c, Component::Normal(_) | Component::CurDir));
    ok.then(|| p.to_path_buf())
}

impl Server {
    /// The environment a caller's command sees.
    pub fn env(&self, caller: &Caller) -> BTreeMap<String, String> {
        let mut env = self.settings.passthrough.clone();
        let s = &self.settings;
        env.insert("SKIFF_STATE".into(), s.bucket.clone());
        env.insert("SKIFF_PROVIDER".into(), s.provider.clone());
        env.insert("SKIFF_KEY".into(), s.keys.join("cosign.key").display().to_string());
        env.insert("SKIFF_PUBLIC_KEY".into(), s.keys.join("cosign.pub").display().to_string());
        env.insert("SKIFF_CONFIG".into(), s.keys.join("no-client-contexts.yaml").display().to_string());
        env.insert("SKIFF_ACTOR".into(), caller.name.clone());
        env.insert("SKIFF_ROLES".into(), caller.role.expanded().join(","));
        env
    }

    /// Answers `request` for `caller` with `uploads` in its working directory;
    /// operations are submitted for a worker, not run here.
    pub async fn run(self: &Arc<Self>, caller: &Caller, request: Request, uploads: Vec<Upload>) -> Answer {
        self.run_confirmed(caller, request, uploads, true).await
    }

    /// [`Server::run`] for a mutating request the caller may not have confirmed: then
    /// what it names is checked and the answer is CONFIRMATION_REQUIRED, as a terminal
    /// without `--yes` answers.
    pub async fn run_confirmed(
        self: &Arc<Self>,
        caller: &Caller,
        request: Request,
        uploads: Vec<Upload>,
        confirmed: bool,
    ) -> Answer {
        self.with_context(caller, uploads, move |ctx| async move {
            let ctx = Context { yes: confirmed, ..ctx };
            skiff_ops::run(&ctx, request).await
        })
        .await
    }

    /// Stages a fresh working directory (the request's files, the server's `policies/`)
    /// and calls `f` with the caller's context in it.
    pub async fn with_context<F, Fut>(self: &Arc<Self>, caller: &Caller, uploads: Vec<Upload>, f: F) -> Answer
    where
        F: FnOnce(Context) -> Fut,
        Fut: std::future::Future<Output = Answer>,
    {
        let dir = match self.stage(uploads) {
            Ok(d) => d,
            Err(why) => return Envelope::failure(Code::Usage, "the request could not be staged").fact(why).into(),
        };
        let ctx = Context::service(dir.path().to_path_buf(), self.env(caller), true);
        f(ctx).await
    }

    fn stage(&self, uploads: Vec<Upload>) -> Result<tempfile::TempDir, String> {
        let dir = tempfile::Builder::new().prefix("skiffd-").tempdir().map_err(|e| e.to_string())?;
        if let Some(p) = &self.settings.policies {
            std::os::unix::fs::symlink(p, dir.path().join("policies")).map_err(|e| e.to_string())?;
        }
        for u in uploads {
            let rel = safe_relative(&u.path).ok_or_else(|| format!("`{}` is not a relative path", u.path))?;
            let path = dir.path().join(rel);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent).map_err(|e| e.to_string())?;
            }
            std::fs::write(&path, &u.bytes).map_err(|e| e.to_string())?;
        }
        Ok(dir)
    }

    /// Records a mutating call in the audit log.
    pub async fn audit(&self, caller: &str, action: &str, target: &str, env: &Envelope) {
        let detail = serde_json::json!({"summary": env.summary, "via": "skiffd"});
        let _ = self.ledger.audit(caller, action, target, env.code, detail).await;
        self.saw_write();
        self.refresh.notify_one();
    }

    /// A slot for one operation submission, waiting a little for one; none means the
    /// server sheds the request (429).
    pub async fn submission_slot(&self, who: &str) -> Result<tokio::sync::SemaphorePermit<'_>, crate::auth::Refusal> {
        match skiff_clock::timeout(&skiff_clock::SystemClock, SUBMISSION_WAIT, self.submissions.acquire()).await {
            Ok(Ok(permit)) => Ok(permit),
            _ => Err(crate::auth::Refusal::RateLimited {
                who: who.to_owned(),
                retry_after_ms: 1_000,
                why: "too many operations are being submitted at once",
            }),
        }
    }

    /// Notes that a client saw a write succeed now (a mutation, or an operation it
    /// followed to its end): the consistency token to answer with.
    pub fn saw_write(&self) -> u64 {
        let now = self.ledger.clock().now_ms();
        self.last_write_ms.fetch_max(now, std::sync::atomic::Ordering::SeqCst);
        now
    }

    /// Before a read: the index holds every write this replica's clients saw, and the
    /// one the caller's consistency token names.
    pub async fn read_your_writes(&self, token: Option<u64>) -> anyhow::Result<()> {
        let seen = self.last_write_ms.load(std::sync::atomic::Ordering::SeqCst);
        self.index.at_least(&self.ledger, seen.max(token.unwrap_or(0))).await
    }
}
