//! [`LocalProvider`]: the capability traits over the supervisor's control API, plus
//! the parts that need no daemon (secrets, roles, logs, databases).

use std::path::{Path, PathBuf};

use async_trait::async_trait;
use serde::Serialize;
use serde::de::DeserializeOwned;
use skiff_clock::Utc;
use skiff_pluginapi::*;
use skiff_secrets::LocalSecrets;
use skiff_state::Ledger;

use crate::LocalDir;
use crate::api::{Deregister, Desired, Endpoint, Shutdown, Status, Weights};
use crate::databases::Postgres;

/// The local provider.
#[derive(Clone, Debug)]
pub struct LocalProvider {
    dir: LocalDir,
    http: reqwest::Client,
    secrets: LocalSecrets,
    postgres: Postgres,
}

fn not_running(dir: &LocalDir) -> ProviderError {
    ProviderError {
        code: "PROVIDER_ERROR".to_owned(),
        message: format!(
            "the local supervisor is not running (no {}); start it with `skiff local up`",
            dir.endpoint().display()
        ),
        retryable: false,
    }
}

impl LocalProvider {
    /// The provider for `dir`; `ledger` holds database snapshots.
    pub fn new(dir: LocalDir, ledger: Ledger) -> Self {
        let secrets = LocalSecrets::new(dir.secrets());
        let postgres = Postgres::new(dir.databases(), secrets.clone(), ledger);
        // Plain HTTP to 127.0.0.1 only: no TLS roots to load (reading the system's
        // certificates costs a short command like `skiff status` a few milliseconds).
        let http = reqwest::Client::builder().no_proxy().tls_certs_only(Vec::new()).build().unwrap_or_default();
        LocalProvider { dir, http, secrets, postgres }
    }

    /// Its directory.
    pub fn dir(&self) -> &LocalDir {
        &self.dir
    }

    /// The secret store instances resolve from.
    pub fn secret_store(&self) -> &LocalSecrets {
        &self.secrets
    }

    /// Stops every local PostgreSQL cluster (data is kept; `create` starts it again).
    pub async fn stop_databases(&self) {
        self.postgres.stop_all().await;
    }

    fn endpoint_file(&self) -> Option<Endpoint> {
        std::fs::read(self.dir.endpoint()).ok().and_then(|b| serde_json::from_slice(&b).ok())
    }

    /// The running supervisor's status, or `None` when none answers.
    pub async fn status(&self) -> Option<Status> {
        let e = self.endpoint_file()?;
        let r = self.http.get(format!("http://127.0.0.1:{}/v1/status", e.port)).send().await.ok()?;
        r.json::<Status>().await.ok().filter(|s| s.pid == e.pid)
    }

    /// Asks the supervisor to exit (and stop every instance if `stop_instances`).
    pub async fn shutdown(&self, stop_instances: bool) -> Result<bool> {
        let Some(e) = self.endpoint_file() else { return Ok(false) };
        let sent = self
            .http
            .post(format!("http://127.0.0.1:{}/v1/shutdown", e.port))
            .json(&Shutdown { stop_instances })
            .send()
            .await;
        Ok(sent.is_ok())
    }

    /// One call to the supervisor's API, as a span (`provider.local`) under the step
    /// that makes it.
    pub(crate) async fn call<T: DeserializeOwned, B: Serialize + Sync>(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<Option<T>> {
        use tracing::Instrument as _;
        let span = tracing::info_span!(
            "provider",
            otel.name = %format!("local {method} {}", path.split('?').next().unwrap_or(path)),
            otel.kind = "client",
            provider = "local",
            method = %method,
            path = %path,
        );
        self.call_once(method, path, body).instrument(span).await
    }

    async fn call_once<T: DeserializeOwned, B: Serialize + Sync>(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<Option<T>> {
        let e = self.endpoint_file().ok_or_else(|| not_running(&self.dir))?;
        let mut req = self.http.request(method, format!("http://127.0.0.1:{}{path}", e.port));
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req.send().await.map_err(|_| not_running(&self.dir))?;
        let status = resp.status();
        if status == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !status.is_success() {
            let text = resp.text().await.unwrap_or_default();
            let msg = serde_json::from_str::<crate::api::ApiError>(&text).map(|e| e.message).unwrap_or(text);
            return Err(ProviderError::new(format!("supervisor {path}: {msg}"), status.is_server_error()));
        }
        if status == reqwest::StatusCode::NO_CONTENT || status == reqwest::StatusCode::ACCEPTED {
            return Ok(serde_json::from_value(serde_json::Value::Null).ok());
        }
        resp.json::<T>().await.map(Some).map_err(|e| ProviderError::new(format!("supervisor {path}: {e}"), true))
    }

    pub(crate) async fn act<B: Serialize + Sync>(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&B>,
        what: &str,
    ) -> Result<()> {
        match self.call::<serde_json::Value, B>(method, path, body).await? {
            Some(_) => Ok(()),
            None => Err(ProviderError::not_found(what)),
        }
    }
}

const NO_BODY: Option<&()> = None;

#[async_trait]
impl Compute for LocalProvider {
    async fn run_task(&self, spec: &TaskSpec) -> Result<TaskOutcome> {
        let body = crate::api::RunTask { task: spec.clone(), owner: Some(std::process::id()) };
        self.call(reqwest::Method::POST, "/v1/tasks", Some(&body)).await?.ok_or_else(|| {
            ProviderError::new("the supervisor does not run tasks; restart it (`skiff local up`)", false)
        })
    }
    async fn create_group(&self, spec: &GroupSpec) -> Result<GroupInfo> {
        self.call(reqwest::Method::PUT, &format!("/v1/groups/{}", spec.name), Some(spec))
            .await?
            .ok_or_else(|| ProviderError::new("no answer", true))
    }
    async fn set_desired(&self, group: &str, desired: u32) -> Result<()> {
        self.act(
            reqwest::Method::POST,
            &format!("/v1/groups/{group}/desired"),
            Some(&Desired { desired }),
            &format!("group {group}"),
        )
        .await
    }
    async fn describe_group(&self, group: &str) -> Result<Option<GroupInfo>> {
        self.call(reqwest::Method::GET, &format!("/v1/groups/{group}"), NO_BODY).await
    }
    async fn list_groups(&self, service: &str) -> Result<Vec<GroupInfo>> {
        Ok(self
            .call(reqwest::Method::GET, &format!("/v1/groups?service={service}"), NO_BODY)
            .await?
            .unwrap_or_default())
    }
    async fn terminate_instance(&self, group: &str, instance: &str) -> Result<()> {
        self.act(
            reqwest::Method::DELETE,
            &format!("/v1/groups/{group}/instances/{instance}"),
            NO_BODY,
            &format!("instance {instance}"),
        )
        .await
    }
    async fn delete_group(&self, group: &str) -> Result<()> {
        self.call::<serde_json::Value, ()>(reqwest::Method::DELETE, &format!("/v1/groups/{group}"), None)
            .await
            .map(drop)
    }
}

#[async_trait]
impl Traffic for LocalProvider {
    async fn ensure_load_balancer(&self, spec: &LoadBalancerSpec) -> Result<LoadBalancerInfo> {
        self.call(reqwest::Method::PUT, &format!("/v1/lbs/{}", spec.service), Some(spec))
            .await?
            .ok_or_else(|| ProviderError::new("no answer", true))
    }
    async fn ensure_target_group(&self, spec: &TargetGroupSpec) -> Result<()> {
        self.act(reqwest::Method::PUT, &format!("/v1/target-groups/{}", spec.name), Some(spec), "target group").await
    }
    async fn register(&self, target_group: &str, targets: &[Target]) -> Result<()> {
        self.act(
            reqwest::Method::POST,
            &format!("/v1/target-groups/{target_group}/targets"),
            Some(&targets.to_vec()),
            &format!("target group {target_group}"),
        )
        .await
    }
    async fn deregister(&self, target_group: &str, target_ids: &[String]) -> Result<()> {
        let body = Deregister { targets: target_ids.to_vec() };
        self.act(
            reqwest::Method::POST,
            &format!("/v1/target-groups/{target_group}/deregister"),
            Some(&body),
            &format!("target group {target_group}"),
        )
        .await
    }
    async fn set_weights(&self, service: &str, weights: &[Weight]) -> Result<()> {
        let body = Weights { weights: weights.to_vec() };
        self.act(
            reqwest::Method::PUT,
            &format!("/v1/lbs/{service}/weights"),
            Some(&body),
            &format!("load balancer of {service}"),
        )
        .await
    }
    async fn weights(&self, service: &str) -> Result<Vec<Weight>> {
        let w: Option<Weights> =
            self.call(reqwest::Method::GET, &format!("/v1/lbs/{service}/weights"), NO_BODY).await?;
        w.map(|w| w.weights).ok_or_else(|| ProviderError::not_found(format!("load balancer of {service}")))
    }
    async fn target_health(&self, target_group: &str) -> Result<Vec<TargetHealth>> {
        self.call(reqwest::Method::GET, &format!("/v1/target-groups/{target_group}/health"), NO_BODY)
            .await?
            .ok_or_else(|| ProviderError::not_found(format!("target group {target_group}")))
    }
    async fn stats(&self, target_group: &str) -> Result<TrafficStats> {
        self.call(reqwest::Method::GET, &format!("/v1/target-groups/{target_group}/stats"), NO_BODY)
            .await?
            .ok_or_else(|| ProviderError::not_found(format!("target group {target_group}")))
    }
    async fn delete_target_group(&self, target_group: &str) -> Result<()> {
        self.call::<serde_json::Value, ()>(reqwest::Method::DELETE, &format!("/v1/target-groups/{target_group}"), None)
            .await
            .map(drop)
    }
    async fn describe_load_balancer(&self, service: &str) -> Result<Option<LoadBalancerInfo>> {
        self.call(reqwest::Method::GET, &format!("/v1/lbs/{service}"), NO_BODY).await
    }
    async fn set_mirror(&self, service: &str, mirror: Option<&Mirror>) -> Result<()> {
        self.act(
            reqwest::Method::PUT,
            &format!("/v1/lbs/{service}/mirror"),
            Some(&mirror),
            &format!("load balancer of {service}"),
        )
        .await
    }
    async fn mirror_report(&self, service: &str) -> Result<MirrorReport> {
        self.call(reqwest::Method::GET, &format!("/v1/lbs/{service}/mirror"), NO_BODY)
            .await?
            .ok_or_else(|| ProviderError::not_found(format!("load balancer of {service}")))
    }
    async fn ensure_front(&self, spec: &FrontSpec) -> Result<FrontInfo> {
        crate::front::ensure(self, spec).await
    }
    async fn set_region_weights(&self, service: &str, weights: &[RegionWeight]) -> Result<()> {
        crate::front::set_weights(self, service, weights).await
    }
    async fn describe_front(&self, service: &str) -> Result<Option<FrontInfo>> {
        crate::front::describe(self, service).await
    }
}

fn io(what: &Path, e: std::io::Error) -> ProviderError {
    ProviderError::new(format!("{}: {e}", what.display()), false)
}

fn write_json(path: &Path, value: &impl Serialize) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
    }
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(value).unwrap_or_default()).map_err(|e| io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| io(path, e))
}

#[async_trait]
impl Logs for LocalProvider {
    async fn ensure_log_group(&self, name: &str, retention_days: u32) -> Result<()> {
        let file =
            self.dir.root().join("log-groups").join(format!("{}.json", name.trim_matches('/').replace('/', "_")));
        write_json(&file, &serde_json::json!({"name": name, "retention_days": retention_days}))
    }

    async fn read(&self, q: &LogQuery) -> Result<Vec<LogLine>> {
        let mut files: Vec<(String, PathBuf)> = Vec::new();
        let base = self.dir.instances_of(&q.service);
        for group in std::fs::read_dir(&base).into_iter().flatten().flatten() {
            for inst in std::fs::read_dir(group.path()).into_iter().flatten().flatten() {
                let id = inst.file_name().to_string_lossy().into_owned();
                if q.instance.as_ref().is_some_and(|want| want != &id) {
                    continue;
                }
                let logs = inst.path().join("logs");
                for name in ["service.log.3", "service.log.2", "service.log.1", "service.log"] {
                    let p = logs.join(name);
                    if p.exists() {
                        files.push((id.clone(), p));
                    }
                }
            }
        }
        let mut lines = Vec::new();
        for (instance, path) in files {
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            for raw in text.lines() {
                let (stamp, rest) = raw.split_once(' ').unwrap_or(("", raw));
                let at_ms = Utc::parse(stamp).map_or(0, Utc::to_ms);
                if q.since_ms.is_some_and(|s| at_ms < s) {
                    continue;
                }
                lines.push(LogLine { at_ms, instance: instance.clone(), line: rest.to_owned() });
            }
        }
        lines.sort_by(|a, b| (a.at_ms, &a.instance).cmp(&(b.at_ms, &b.instance)));
        if let Some(limit) = q.limit {
            let skip = lines.len().saturating_sub(limit);
            lines.drain(..skip);
        }
        Ok(lines)
    }
}

fn secret_error(e: skiff_secrets::SecretError) -> ProviderError {
    ProviderError::new(e.to_string(), false)
}

#[async_trait]
impl Secrets for LocalProvider {
    async fn put(&self, reference: &str, value: &str) -> Result<()> {
        self.secrets.put(reference, value).map_err(secret_error)
    }
    async fn exists(&self, reference: &str) -> Result<bool> {
        self.secrets.exists(reference).map_err(secret_error)
    }
    async fn list(&self, name: &str) -> Result<Vec<String>> {
        self.secrets.list(name).map_err(secret_error)
    }
    async fn delete(&self, reference: &str) -> Result<()> {
        self.secrets.delete(reference).map_err(secret_error)
    }
    async fn version(&self, reference: &str) -> Result<Option<String>> {
        Ok(self.secrets.get(reference).map_err(secret_error)?.map(|v| skiff_secrets::version(&v)))
    }
    async fn key_alias(&self, alias: &str) -> Result<Option<KeyInfo>> {
        let Some(id) = self.secrets.alias(alias).map_err(secret_error)? else { return Ok(None) };
        self.key_info(&id).map(Some)
    }
    async fn key(&self, id: &str) -> Result<Option<KeyInfo>> {
        Ok(self.key_info(id).ok())
    }
    async fn create_key(&self, _alias: &str, token: &str) -> Result<KeyInfo> {
        let id = self.secrets.create_key(token, self.postgres.now_ms()).map_err(secret_error)?;
        self.key_info(&id)
    }
    async fn reencrypt(&self, from: &str, to: &str) -> Result<Vec<String>> {
        self.secrets.reencrypt(from, to).map_err(secret_error)
    }
    async fn move_alias(&self, alias: &str, to: &str) -> Result<()> {
        self.secrets.move_alias(alias, to).map_err(secret_error)
    }
    async fn schedule_key_deletion(&self, id: &str, days: u32) -> Result<u64> {
        let at = self.postgres.now_ms() + u64::from(days) * 86_400_000;
        self.secrets.schedule_deletion(id, at).map_err(secret_error)
    }
    async fn cut_over(&self, reference: &str, source: &str) -> Result<()> {
        let new = self.secrets.get(source).map_err(secret_error)?.ok_or_else(|| ProviderError::not_found(source))?;
        let current = self.secrets.get(reference).map_err(secret_error)?;
        if current.as_deref() == Some(new.as_str()) {
            return Ok(());
        }
        if let Some(old) = current {
            self.secrets.put(&format!("{reference}-previous"), &old).map_err(secret_error)?;
        }
        self.secrets.put(reference, &new).map_err(secret_error)
    }
}

impl LocalProvider {
    fn key_info(&self, id: &str) -> Result<KeyInfo> {
        let versions = self.secrets.key_versions().map_err(secret_error)?;
        let v =
            versions.into_iter().find(|v| v.id == id).ok_or_else(|| ProviderError::not_found(format!("key {id}")))?;
        Ok(KeyInfo {
            provider_id: format!("local-key:{}", v.id),
            id: v.id,
            created_at_ms: v.created_at_ms,
            deletion_at_ms: v.deletion_at_ms,
            sealed: v.sealed,
        })
    }
}

/// Roles are recorded, not enforced: local processes run as the current user. The
/// record shows exactly what a cloud role would grant.
#[async_trait]
impl Identity for LocalProvider {
    async fn ensure_role(&self, role: &RoleSpec) -> Result<RoleInfo> {
        let info = RoleInfo {
            name: role.name.clone(),
            permissions: role.permissions.clone(),
            provider_id: format!("local-role:{}", role.name),
        };
        write_json(&self.dir.identity().join(format!("{}.json", role.name)), &info)?;
        Ok(info)
    }
    async fn describe_role(&self, name: &str) -> Result<Option<RoleInfo>> {
        Ok(std::fs::read(self.dir.identity().join(format!("{name}.json")))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok()))
    }
    async fn delete_role(&self, name: &str) -> Result<()> {
        let _ = std::fs::remove_file(self.dir.identity().join(format!("{name}.json")));
        Ok(())
    }
}

#[async_trait]
impl Database for LocalProvider {
    async fn create(&self, spec: &DatabaseSpec) -> Result<DatabaseInfo> {
        self.postgres.create(spec).await
    }
    async fn describe(&self, id: &str) -> Result<Option<DatabaseInfo>> {
        self.postgres.describe(id).await
    }
    async fn snapshot(&self, id: &str, snapshot_id: &str) -> Result<SnapshotInfo> {
        self.postgres.snapshot(id, snapshot_id).await
    }
    async fn restore(&self, snapshot: &SnapshotInfo, spec: &DatabaseSpec) -> Result<DatabaseInfo> {
        self.postgres.restore(snapshot, spec).await
    }
    async fn connection(&self, id: &str) -> Result<ConnectionInfo> {
        self.postgres.connection(id).await
    }
    async fn delete(&self, id: &str) -> Result<()> {
        self.postgres.delete(id).await
    }
    async fn backup(&self, id: &str, backup_id: &str) -> Result<BackupInfo> {
        self.postgres.backup(id, backup_id).await
    }
    async fn restore_to(
        &self,
        backup: &BackupInfo,
        target: &RestoreTarget,
        spec: &DatabaseSpec,
    ) -> Result<DatabaseInfo> {
        self.postgres.restore_to(backup, target, spec).await
    }
    async fn manifest(&self, id: &str) -> Result<Vec<TableManifest>> {
        self.postgres.manifest(id).await
    }
    async fn settings(&self, id: &str) -> Result<std::collections::BTreeMap<String, String>> {
        self.postgres.settings(id).await
    }
    async fn rotation_create(&self, id: &str, reference: &str) -> Result<StagedLogin> {
        self.postgres.rotation_create(id, reference).await
    }
    async fn rotation_set(&self, id: &str, reference: &str) -> Result<Credential> {
        self.postgres.rotation_set(id, reference).await
    }
    async fn rotation_test(&self, id: &str, reference: &str) -> Result<Credential> {
        self.postgres.rotation_test(id, reference).await
    }
    async fn rotation_finish(&self, id: &str, reference: &str) -> Result<Credential> {
        self.postgres.rotation_finish(id, reference).await
    }
    async fn migration_marks(&self, id: &str) -> Result<std::collections::BTreeMap<String, String>> {
        self.postgres.migration_marks(id).await
    }
    async fn rotation_cancel(&self, id: &str, reference: &str) -> Result<()> {
        self.postgres.rotation_cancel(id, reference).await
    }
    async fn create_replica(&self, source: &str, spec: &DatabaseSpec, region: &str) -> Result<DatabaseInfo> {
        self.postgres.create_replica(source, spec, region).await
    }
    async fn replication(&self, id: &str) -> Result<skiff_pluginapi::Replication> {
        self.postgres.replication(id).await
    }
    async fn freeze(&self, id: &str) -> Result<String> {
        self.postgres.freeze(id).await
    }
    async fn thaw(&self, id: &str) -> Result<()> {
        self.postgres.thaw(id).await
    }
    async fn promote(&self, id: &str) -> Result<()> {
        self.postgres.promote(id).await
    }
    async fn fence(&self, id: &str) -> Result<()> {
        self.postgres.fence(id).await
    }
    async fn disable_login(&self, id: &str, user: &str) -> Result<()> {
        self.postgres.disable_login(id, user).await
    }
}

impl Provider for LocalProvider {
    fn name(&self) -> &str {
        "local"
    }
    fn compute(&self) -> &dyn Compute {
        self
    }
    fn traffic(&self) -> &dyn Traffic {
        self
    }
    fn logs(&self) -> &dyn Logs {
        self
    }
    fn secrets(&self) -> &dyn Secrets {
        self
    }
    fn identity(&self) -> &dyn Identity {
        self
    }
    fn database(&self) -> &dyn Database {
        self
    }
    fn posture(&self) -> Option<&dyn Posture> {
        Some(self)
    }
}
