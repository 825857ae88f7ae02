//! Streaming replicas and what a regional failover does to them: a replica is a
//! `pg_basebackup -R` copy of its source that PostgreSQL keeps replaying over a
//! replication connection on the source's Unix socket; `freeze` makes a primary
//! read-only and ends its client sessions (waiting for them), `promote` is `pg_ctl
//! promote`, and `fence` puts a `standby.signal` into the old primary's data so that,
//! started again, it comes up as a hot standby that refuses every write.

use skiff_pluginapi::{DatabaseInfo, DatabaseSpec, ProviderError, ReplicaRole, Replication, Result};

use super::backup::MARKER;
use super::{Postgres, Record, err, pg_user};

/// How long a client session may take to end when a primary is frozen.
const END_SESSION_MS: u32 = 5_000;

impl Postgres {
    pub(crate) async fn create_replica(&self, source: &str, spec: &DatabaseSpec, region: &str) -> Result<DatabaseInfo> {
        if let Some(r) = self.read_record(&spec.id) {
            if !self.running(&r).await {
                self.start(&r).await?;
            }
            return Ok(Self::info(&r, "available"));
        }
        let src = self.read_record(source).ok_or_else(|| ProviderError::not_found(format!("database {source}")))?;
        if !self.running(&src).await {
            return Err(err(format!("database {source} is not running: a replica is copied from a running primary")));
        }
        let owner = pg_user()?.map(|(u, g, _)| (u, g));
        let base = self.data_base()?.join(&spec.id);
        let _ = std::fs::remove_dir_all(&base);
        Self::owned_dir(&base, owner)?;
        Self::owned_dir(&base.join("sock"), owner)?;
        let record = Record {
            id: spec.id.clone(),
            name: src.name.clone(),
            port: self.free_port()?,
            base,
            user: src.user.clone(),
            version: src.version.clone(),
            created_at_ms: self.now_ms(),
            region: region.to_owned(),
            source: Some(source.to_owned()),
            fenced: false,
        };
        if let Err(e) = self.copy_and_start(&src, &record).await {
            let data = record.base.join("data").display().to_string();
            let _ = self.tool("pg_ctl", &["-D", &data, "-m", "immediate", "-w", "stop"], None, None).await;
            let _ = std::fs::remove_dir_all(&record.base);
            return Err(e);
        }
        // The consumers' login is the source's (users replicate); only the port differs.
        let url = self.url(source)?.replace(&format!(":{}/", src.port), &format!(":{}/", record.port));
        self.secrets.put(&Self::url_ref(&spec.id), &url).map_err(|e| err(e.to_string()))?;
        std::fs::write(self.record_path(&spec.id), serde_json::to_vec_pretty(&record).unwrap_or_default())
            .map_err(|e| err(e.to_string()))?;
        Ok(Self::info(&record, "available"))
    }

    /// The base copy (the replication settings written by `-R`), its own WAL archive,
    /// started as a hot standby.
    async fn copy_and_start(&self, src: &Record, r: &Record) -> Result<()> {
        let data = r.base.join("data").display().to_string();
        let mut args = Self::admin(src);
        args.extend(["-D", &data, "-R", "-X", "stream", "-c", "fast", "--no-password"].map(str::to_owned));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.tool("pg_basebackup", &args, None, None).await?;
        // The copy archives into its own directory once it is promoted, not the source's.
        let conf = r.base.join("data/postgresql.conf");
        let text = std::fs::read_to_string(&conf).map_err(|e| err(format!("{}: {e}", conf.display())))?;
        let own = text.split(&format!("\n{MARKER}")).next().unwrap_or(&text).to_owned();
        std::fs::write(&conf, own).map_err(|e| err(format!("{}: {e}", conf.display())))?;
        self.start(r).await
    }

    pub(crate) async fn replication(&self, id: &str) -> Result<Replication> {
        let r = self.read_record(id).ok_or_else(|| ProviderError::not_found(format!("database {id}")))?;
        let recorded = if r.fenced {
            ReplicaRole::Fenced
        } else if r.source.is_some() {
            ReplicaRole::Replica
        } else {
            ReplicaRole::Primary
        };
        let mut out = Replication {
            id: r.id.clone(),
            region: r.region.clone(),
            role: recorded,
            reachable: false,
            lsn: None,
            received_lsn: None,
            source: r.source.clone(),
            read_only: r.fenced || r.source.is_some(),
        };
        if !self.running(&r).await {
            return Ok(out);
        }
        let rows = self
            .sql(
                &r,
                "select pg_is_in_recovery(), \
                 case when pg_is_in_recovery() then pg_last_wal_replay_lsn() else pg_current_wal_lsn() end, \
                 pg_last_wal_receive_lsn(), current_setting('default_transaction_read_only')",
            )
            .await;
        let Ok(rows) = rows else { return Ok(out) };
        let Some(row) = rows.first().filter(|row| row.len() == 4) else { return Ok(out) };
        let some = |v: &str| (!v.is_empty()).then(|| v.to_owned());
        let recovering = row[0] == "t";
        out.reachable = true;
        out.lsn = some(&row[1]);
        out.received_lsn = some(&row[2]);
        out.read_only = recovering || row[3] == "on";
        out.role = match (r.fenced, recovering) {
            (true, _) => ReplicaRole::Fenced,
            (false, true) => ReplicaRole::Replica,
            (false, false) => ReplicaRole::Primary,
        };
        Ok(out)
    }

    pub(crate) async fn freeze(&self, id: &str) -> Result<String> {
        let r = self.read_record(id).ok_or_else(|| ProviderError::not_found(format!("database {id}")))?;
        self.sql(&r, "alter system set default_transaction_read_only = on").await?;
        self.sql(&r, "select pg_reload_conf()").await?;
        // A session started after the postmaster reloaded is read-only: once a new one
        // sees it, every session that could still write is older, and ending those ends
        // every write.
        let seen = self.sql(&r, "show default_transaction_read_only").await?;
        if seen.first().and_then(|row| row.first()).map(String::as_str) != Some("on") {
            return Err(err(format!("database {id} did not become read-only")));
        }
        let end = format!(
            "select count(pg_terminate_backend(pid, {END_SESSION_MS})) from pg_stat_activity \
             where backend_type = 'client backend' and pid <> pg_backend_pid()"
        );
        self.sql(&r, &end).await?;
        let lsn = self.sql(&r, "select pg_current_wal_lsn()").await?;
        lsn.first()
            .and_then(|row| row.first())
            .cloned()
            .ok_or_else(|| err(format!("database {id} reported no log position")))
    }

    pub(crate) async fn thaw(&self, id: &str) -> Result<()> {
        let r = self.read_record(id).ok_or_else(|| ProviderError::not_found(format!("database {id}")))?;
        self.sql(&r, "alter system reset default_transaction_read_only").await?;
        self.sql(&r, "select pg_reload_conf()").await.map(drop)
    }

    pub(crate) async fn promote(&self, id: &str) -> Result<()> {
        let mut r = self.read_record(id).ok_or_else(|| ProviderError::not_found(format!("database {id}")))?;
        if !self.running(&r).await {
            self.start(&r).await?;
        }
        let recovering = self.sql(&r, "select pg_is_in_recovery()").await?;
        if recovering.first().and_then(|row| row.first()).map(String::as_str) == Some("t") {
            let data = r.base.join("data").display().to_string();
            self.tool("pg_ctl", &["-D", &data, "-w", "-t", "60", "promote"], None, None).await?;
        }
        if r.source.take().is_some() {
            std::fs::write(self.record_path(id), serde_json::to_vec_pretty(&r).unwrap_or_default())
                .map_err(|e| err(e.to_string()))?;
        }
        Ok(())
    }

    pub(crate) async fn fence(&self, id: &str) -> Result<()> {
        let mut r = self.read_record(id).ok_or_else(|| ProviderError::not_found(format!("database {id}")))?;
        let data = r.base.join("data");
        let signal = data.join("standby.signal");
        if r.fenced && signal.exists() {
            return Ok(());
        }
        let _ = self.tool("pg_ctl", &["-D", &data.display().to_string(), "-m", "fast", "-w", "stop"], None, None).await;
        // Started again, it recovers as a standby with nothing to follow: read-only.
        std::fs::write(&signal, b"").map_err(|e| err(format!("{}: {e}", signal.display())))?;
        if let Some((uid, gid, _)) = pg_user()? {
            std::os::unix::fs::chown(&signal, Some(uid), Some(gid)).map_err(|e| err(e.to_string()))?;
        }
        r.fenced = true;
        std::fs::write(self.record_path(id), serde_json::to_vec_pretty(&r).unwrap_or_default())
            .map_err(|e| err(e.to_string()))
    }
}
