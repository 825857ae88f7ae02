//! Managed databases on the local provider: each is a real PostgreSQL cluster made with
//! `initdb` and run with `pg_ctl` on its own port on 127.0.0.1. Snapshots are
//! `pg_dump` archives stored as blobs in the state bucket; a restore loads one into a
//! new cluster with `pg_restore`. The password lives only in the secret store, behind
//! `secret://<id>/url`. Every cluster archives its WAL; the `backup` module takes base backups
//! and restore points. PostgreSQL refuses to run as root: when Skiff runs as root the
//! tools run as the `postgres` user (`SKIFF_PG_USER`) and data lives under that user's
//! home, since root-only parent directories would be closed to it.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use skiff_clock::SystemClock;
use skiff_pluginapi::{ConnectionInfo, DatabaseInfo, DatabaseSpec, ProviderError, Result, SnapshotInfo};
use skiff_secrets::LocalSecrets;
use skiff_state::Ledger;
use tokio::io::AsyncWriteExt;

mod backup;
mod replicas;
mod restore;
mod rotate;

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Record {
    id: String,
    name: String,
    port: u16,
    base: PathBuf,
    user: String,
    version: String,
    created_at_ms: u64,
    /// The region it runs in (a label on this provider).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    region: String,
    /// The instance a streaming replica follows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    source: Option<String>,
    /// Fenced after a failover: it starts as a read-only standby.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    fenced: bool,
}

/// The local PostgreSQL manager.
#[derive(Clone, Debug)]
pub(crate) struct Postgres {
    records: PathBuf,
    secrets: LocalSecrets,
    ledger: Ledger,
}

fn err(message: impl Into<String>) -> ProviderError {
    ProviderError::new(message, false)
}

/// The directory holding initdb, pg_ctl, pg_dump and pg_restore.
fn bin_dir() -> Result<PathBuf> {
    if let Ok(dir) = std::env::var("SKIFF_PG_BIN") {
        return Ok(PathBuf::from(dir));
    }
    let from_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join("initdb"))
        .find(|p| p.exists())
        .and_then(|p| p.canonicalize().ok())
        .and_then(|p| p.parent().map(Path::to_path_buf));
    let debian = || {
        let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
            .ok()?
            .flatten()
            .map(|e| e.path().join("bin"))
            .filter(|d| d.join("initdb").exists())
            .collect();
        dirs.sort();
        dirs.pop()
    };
    from_path.or_else(debian).ok_or_else(|| {
        err("PostgreSQL is not installed: no `initdb` on PATH (install postgresql, or set SKIFF_PG_BIN)")
    })
}

/// Uid and gid to run the tools as, when this process is root.
fn pg_user() -> Result<Option<(u32, u32, String)>> {
    if !nix::unistd::geteuid().is_root() {
        return Ok(None);
    }
    let name = std::env::var("SKIFF_PG_USER").unwrap_or_else(|_| "postgres".to_owned());
    let user = nix::unistd::User::from_name(&name)
        .map_err(|e| err(format!("cannot look up user {name}: {e}")))?
        .ok_or_else(|| {
            err(format!("running as root, PostgreSQL needs an unprivileged user: create `{name}` or set SKIFF_PG_USER"))
        })?;
    Ok(Some((user.uid.as_raw(), user.gid.as_raw(), user.dir.display().to_string())))
}

fn random_hex(bytes: usize) -> Result<String> {
    let mut buf = vec![0u8; bytes];
    getrandom::fill(&mut buf).map_err(|e| err(e.to_string()))?;
    Ok(buf.iter().map(|b| format!("{b:02x}")).collect())
}

impl Postgres {
    /// A port for a new cluster: free now, and none a kept cluster (running or not)
    /// was given.
    fn free_port(&self) -> Result<u16> {
        let taken = std::fs::read_dir(&self.records)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| e.path().file_stem().and_then(|s| self.read_record(&s.to_string_lossy())))
            .map(|r| r.port)
            .collect();
        crate::ports::free_port(&taken).map_err(|e| err(e.to_string()))
    }

    pub(crate) fn new(records: PathBuf, secrets: LocalSecrets, ledger: Ledger) -> Self {
        Postgres { records, secrets, ledger }
    }

    /// The ledger's clock: time for everything the provider records.
    pub(crate) fn now_ms(&self) -> u64 {
        self.ledger.clock().now_ms()
    }

    fn record_path(&self, id: &str) -> PathBuf {
        self.records.join(format!("{id}.json"))
    }

    fn read_record(&self, id: &str) -> Option<Record> {
        std::fs::read(self.record_path(id)).ok().and_then(|b| serde_json::from_slice(&b).ok())
    }

    /// Where cluster data goes: beside the records, or under the postgres user's home
    /// when running as root.
    fn data_base(&self) -> Result<PathBuf> {
        data_base(&self.records)
    }

    fn url_ref(id: &str) -> String {
        format!("secret://{id}/url")
    }

    /// Connection arguments for the provider's own work (dumps, base backups, manifests,
    /// rotations): the cluster's Unix socket, where its owner logs in without a password
    /// (`--auth-local=trust`), so no rotation of the consumers' login can lock Skiff out.
    fn admin(r: &Record) -> Vec<String> {
        let sock = r.base.join("sock").display().to_string();
        vec!["-h".to_owned(), sock, "-p".to_owned(), r.port.to_string(), "-U".to_owned(), r.user.clone()]
    }

    /// The consumers' connection URL of instance `id`.
    fn url(&self, id: &str) -> Result<String> {
        self.secrets
            .get(&Self::url_ref(id))
            .map_err(|e| err(e.to_string()))?
            .ok_or_else(|| err(format!("no credentials for database {id}")))
    }

    async fn tool(&self, tool: &str, args: &[&str], password: Option<&str>, stdin: Option<&[u8]>) -> Result<Vec<u8>> {
        self.program(&bin_dir()?.join(tool), args, password, stdin).await
    }

    /// A system program (`cp`) as the PostgreSQL user.
    async fn run_as(&self, program: &str, args: &[&str]) -> Result<Vec<u8>> {
        self.program(Path::new(program), args, None, None).await
    }

    async fn program(
        &self,
        bin: &Path,
        args: &[&str],
        password: Option<&str>,
        stdin: Option<&[u8]>,
    ) -> Result<Vec<u8>> {
        let tool = bin.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let mut cmd = tokio::process::Command::new(bin);
        cmd.args(args)
            .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        cmd.env("LC_ALL", "C").envs(skiff_observability::child_env());
        if let Some(p) = password {
            cmd.env("PGPASSWORD", p);
        }
        if let Some((uid, gid, home)) = pg_user()? {
            cmd.uid(uid).gid(gid).env("HOME", home).current_dir("/");
        }
        let mut child = cmd.spawn().map_err(|e| err(format!("cannot run {}: {e}", bin.display())))?;
        if let (Some(data), Some(mut input)) = (stdin, child.stdin.take()) {
            let data = data.to_vec();
            tokio::spawn(async move {
                let _ = input.write_all(&data).await;
            });
        }
        let out = skiff_clock::timeout(&SystemClock, Duration::from_secs(120), child.wait_with_output())
            .await
            .map_err(|_| err(format!("{tool} timed out")))?
            .map_err(|e| err(format!("{tool}: {e}")))?;
        if !out.status.success() {
            let text = String::from_utf8_lossy(&out.stderr);
            return Err(err(format!("{tool} failed ({}): {}", out.status, text.trim())));
        }
        Ok(out.stdout)
    }

    /// Creates `dir` (one level; its parent exists) owned by `owner`, mode 0700.
    fn owned_dir(dir: &Path, owner: Option<(u32, u32)>) -> Result<()> {
        match std::fs::create_dir(dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(err(format!("{}: {e}", dir.display()))),
        }
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::chown(dir, Some(uid), Some(gid))
                .map_err(|e| err(format!("chown {}: {e}", dir.display())))?;
        }
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(|e| err(e.to_string()))
    }

    async fn running(&self, r: &Record) -> bool {
        let data = r.base.join("data");
        self.tool("pg_ctl", &["-D", &data.display().to_string(), "status"], None, None).await.is_ok()
    }

    async fn start(&self, r: &Record) -> Result<()> {
        Self::ensure_archiving(r, pg_user()?.map(|(u, g, _)| (u, g)))?;
        let (data, log, sock) = (r.base.join("data"), r.base.join("postgres.log"), r.base.join("sock"));
        let opts = format!("-p {} -c listen_addresses=127.0.0.1 -k {}", r.port, sock.display());
        self.tool(
            "pg_ctl",
            &[
                "-D",
                &data.display().to_string(),
                "-l",
                &log.display().to_string(),
                "-w",
                "-t",
                "60",
                "-o",
                &opts,
                "start",
            ],
            None,
            None,
        )
        .await
        .map(drop)
    }

    fn info(r: &Record, status: &str) -> DatabaseInfo {
        DatabaseInfo {
            id: r.id.clone(),
            status: status.to_owned(),
            host: "127.0.0.1".to_owned(),
            port: r.port,
            provider_id: format!("local-postgres:{}:{}", r.id, r.port),
        }
    }

    pub(crate) async fn create(&self, spec: &DatabaseSpec) -> Result<DatabaseInfo> {
        if let Some(r) = self.read_record(&spec.id) {
            if !self.running(&r).await {
                self.start(&r).await?;
            }
            return Ok(Self::info(&r, "available"));
        }
        let owner = pg_user()?.map(|(u, g, _)| (u, g));
        let root = self.data_base()?;
        if owner.is_some() {
            let skiff = root.parent().expect("home/skiff/tag");
            Self::owned_dir(skiff, owner)?;
        }
        std::fs::create_dir_all(root.parent().unwrap_or(&root)).map_err(|e| err(e.to_string()))?;
        Self::owned_dir(&root, owner)?;
        let base = root.join(&spec.id);
        let _ = std::fs::remove_dir_all(&base);
        Self::owned_dir(&base, owner)?;
        let sock = base.join("sock");
        Self::owned_dir(&sock, owner)?;
        let password = random_hex(16)?;
        let pwfile = base.join("pwfile");
        std::fs::write(&pwfile, &password).map_err(|e| err(e.to_string()))?;
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::chown(&pwfile, Some(uid), Some(gid)).map_err(|e| err(e.to_string()))?;
        }
        let data = base.join("data").display().to_string();
        let init = self
            .tool(
                "initdb",
                &[
                    "-D",
                    &data,
                    "-U",
                    "skiff",
                    "--pwfile",
                    &pwfile.display().to_string(),
                    "--auth-host=scram-sha-256",
                    "--auth-local=trust",
                    "-E",
                    "UTF8",
                    "--locale=C",
                    "--no-instructions",
                ],
                None,
                None,
            )
            .await;
        let _ = std::fs::remove_file(&pwfile);
        init?;
        let version = self
            .tool("pg_ctl", &["--version"], None, None)
            .await
            .map(|v| String::from_utf8_lossy(&v).trim().to_owned())
            .unwrap_or_default();
        let record = Record {
            id: spec.id.clone(),
            name: spec.name.clone(),
            port: self.free_port()?,
            base,
            user: "skiff".to_owned(),
            version,
            created_at_ms: self.ledger.clock().now_ms(),
            region: String::new(),
            source: None,
            fenced: false,
        };
        self.start(&record).await?;
        let port = record.port.to_string();
        self.tool("createdb", &["-h", "127.0.0.1", "-p", &port, "-U", "skiff", &spec.name], Some(&password), None)
            .await?;
        let url = format!("postgres://skiff:{password}@127.0.0.1:{}/{}", record.port, spec.name);
        self.secrets.put(&Self::url_ref(&spec.id), &url).map_err(|e| err(e.to_string()))?;
        std::fs::create_dir_all(&self.records).map_err(|e| err(e.to_string()))?;
        std::fs::write(self.record_path(&spec.id), serde_json::to_vec_pretty(&record).unwrap_or_default())
            .map_err(|e| err(e.to_string()))?;
        Ok(Self::info(&record, "available"))
    }

    pub(crate) async fn describe(&self, id: &str) -> Result<Option<DatabaseInfo>> {
        let Some(r) = self.read_record(id) else { return Ok(None) };
        let status = if self.running(&r).await { "available" } else { "stopped" };
        Ok(Some(Self::info(&r, status)))
    }

    pub(crate) async fn snapshot(&self, id: &str, snapshot_id: &str) -> Result<SnapshotInfo> {
        let path = self.records.join("snapshots").join(format!("{snapshot_id}.json"));
        if let Some(s) = std::fs::read(&path).ok().and_then(|b| serde_json::from_slice::<SnapshotInfo>(&b).ok()) {
            return Ok(s);
        }
        let r = self.read_record(id).ok_or_else(|| ProviderError::not_found(format!("database {id}")))?;
        let mut args = Self::admin(&r);
        args.extend(["-Fc".to_owned(), "-d".to_owned(), r.name.clone()]);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let dump = self.tool("pg_dump", &args, None, None).await?;
        let size = dump.len() as u64;
        let digest = self.ledger.put_blob(dump).await.map_err(|e| err(e.to_string()))?;
        let snap = SnapshotInfo {
            id: snapshot_id.to_owned(),
            database: id.to_owned(),
            provider_ref: format!("sha256:{digest}"),
            size_bytes: Some(size),
        };
        std::fs::create_dir_all(path.parent().expect("has a parent")).map_err(|e| err(e.to_string()))?;
        std::fs::write(&path, serde_json::to_vec_pretty(&snap).unwrap_or_default()).map_err(|e| err(e.to_string()))?;
        Ok(snap)
    }

    pub(crate) async fn restore(&self, snapshot: &SnapshotInfo, spec: &DatabaseSpec) -> Result<DatabaseInfo> {
        let digest = snapshot.provider_ref.strip_prefix("sha256:").unwrap_or(&snapshot.provider_ref);
        let dump = self.ledger.get_blob(digest).await.map_err(|e| err(format!("snapshot {}: {e}", snapshot.id)))?;
        let fresh = self.read_record(&spec.id).is_none();
        let info = self.create(spec).await?;
        if fresh {
            let r =
                self.read_record(&spec.id).ok_or_else(|| ProviderError::not_found(format!("database {}", spec.id)))?;
            let mut args = Self::admin(&r);
            args.extend(["--no-owner", "--no-privileges", "-d", &spec.name].map(str::to_owned));
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            self.tool("pg_restore", &args, None, Some(&dump)).await?;
        }
        Ok(info)
    }

    pub(crate) async fn connection(&self, id: &str) -> Result<ConnectionInfo> {
        let r = self.read_record(id).ok_or_else(|| ProviderError::not_found(format!("database {id}")))?;
        Ok(ConnectionInfo {
            host: "127.0.0.1".to_owned(),
            port: r.port,
            database: r.name,
            user: r.user,
            url_ref: Self::url_ref(id),
        })
    }

    pub(crate) async fn delete(&self, id: &str) -> Result<()> {
        let Some(r) = self.read_record(id) else { return Ok(()) };
        let _ = self
            .tool("pg_ctl", &["-D", &r.base.join("data").display().to_string(), "-m", "fast", "-w", "stop"], None, None)
            .await;
        let _ = std::fs::remove_dir_all(&r.base);
        // Its own URL, unless a restore's cutover gave that reference to another instance.
        let own = Self::url_ref(id);
        if self.secrets.get(&own).ok().flatten().is_some_and(|url| url.contains(&format!(":{}/", r.port))) {
            let _ = self.secrets.delete(&own);
        }
        let _ = std::fs::remove_file(self.record_path(id));
        Ok(())
    }

    /// Stops every running cluster (data is kept).
    pub(crate) async fn stop_all(&self) {
        for entry in std::fs::read_dir(&self.records).into_iter().flatten().flatten() {
            let id = entry.path().file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
            if let Some(r) = self.read_record(&id) {
                let _ = self
                    .tool(
                        "pg_ctl",
                        &["-D", &r.base.join("data").display().to_string(), "-m", "fast", "-w", "stop"],
                        None,
                        None,
                    )
                    .await;
            }
        }
    }
}

/// Where the clusters of the records in `records` keep their data.
pub(crate) fn data_base(records: &Path) -> Result<PathBuf> {
    Ok(match pg_user()? {
        Some((_, _, home)) => PathBuf::from(home).join("skiff").join(path_tag(&records.display().to_string())),
        None => records.to_path_buf(),
    })
}

/// A short stable tag for a path (so two local directories never share data).
fn path_tag(text: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}
