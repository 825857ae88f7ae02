//! What every request shares: the settings requests run with, the ledger, tokens,
//! the index and the metrics. Each request runs in a fresh working directory holding
//! only what it brought (a spec, an artifact) and the server's `policies/`.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use skiff_ops::{Context, Request};
use skiff_sdk::{Answer, Code, Envelope};
use skiff_state::Ledger;

use crate::auth::{Caller, Tokens};
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
    /// Issued tokens.
    pub tokens: Tokens,
    /// The read index.
    pub index: Index,
    /// Request metrics.
    pub metrics: Metrics,
    /// Wakes the refresher after a write.
    pub refresh: tokio::sync::Notify,
}

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
        self.refresh.notify_one();
    }
}
