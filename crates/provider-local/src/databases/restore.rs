//! Point-in-time restore of a local PostgreSQL into a NEW cluster: the backup's base
//! copy goes into a new data directory on a new port, the source's archived WAL is
//! replayed up to a named restore point or a time, and the cluster is promoted. The
//! source's data directory and archive are only read. The copy archives its own WAL
//! from then on, and its connection URL (same roles, so the same password) is stored
//! behind `secret://<new id>/url`.

use std::time::Duration;

use skiff_clock::Utc;
use skiff_pluginapi::{BackupInfo, DatabaseInfo, DatabaseSpec, ProviderError, RestoreTarget, Result, TableManifest};

use super::backup::MARKER;
use super::{Postgres, Record, err, pg_user};

/// How long a restored cluster may take to reach its target and promote.
const PROMOTE_WAIT: Duration = Duration::from_secs(120);

impl Postgres {
    pub(crate) async fn restore_to(
        &self,
        backup: &BackupInfo,
        target: &RestoreTarget,
        spec: &DatabaseSpec,
    ) -> Result<DatabaseInfo> {
        if let Some(r) = self.read_record(&spec.id) {
            // Recorded only once promoted: a repeated call answers the same copy.
            if !self.running(&r).await {
                self.start(&r).await?;
            }
            return Ok(Self::info(&r, "available"));
        }
        let source = self
            .read_record(&backup.database)
            .ok_or_else(|| ProviderError::not_found(format!("database {}", backup.database)))?;
        let base_copy = backup
            .provider_ref
            .strip_prefix("local-basebackup:")
            .ok_or_else(|| err(format!("backup {} is not a local base backup", backup.id)))?;
        let owner = pg_user()?.map(|(u, g, _)| (u, g));
        let base = source.base.parent().expect("a cluster lives in a directory").join(&spec.id);
        // A copy left by a crash before it was recorded is incomplete: stop whatever runs
        // on it, then start it again.
        if base.join("data/postmaster.pid").exists() {
            let data = base.join("data").display().to_string();
            let _ = self.tool("pg_ctl", &["-D", &data, "-m", "immediate", "-w", "stop"], None, None).await;
        }
        let _ = std::fs::remove_dir_all(&base);
        Self::owned_dir(&base, owner)?;
        Self::owned_dir(&base.join("sock"), owner)?;
        let data = base.join("data");
        self.run_as("cp", &["-a", base_copy, &data.display().to_string()]).await?;
        let record = Record {
            id: spec.id.clone(),
            name: source.name.clone(),
            port: self.free_port()?,
            base,
            user: source.user.clone(),
            version: source.version.clone(),
            created_at_ms: self.ledger.clock().now_ms(),
            region: source.region.clone(),
            source: None,
            fenced: false,
        };
        if let Err(e) = self.recover(&record, &source, target).await {
            // Nothing half-made stays behind: the copy is removed, the source was only read.
            let data = record.base.join("data").display().to_string();
            let _ = self.tool("pg_ctl", &["-D", &data, "-m", "immediate", "-w", "stop"], None, None).await;
            let _ = std::fs::remove_dir_all(&record.base);
            let _ = self.secrets.delete(&Self::url_ref(&spec.id));
            return Err(e);
        }
        std::fs::write(self.record_path(&spec.id), serde_json::to_vec_pretty(&record).unwrap_or_default())
            .map_err(|e| err(e.to_string()))?;
        Ok(Self::info(&record, "available"))
    }

    /// Configures, starts and promotes the copy, and stores its connection URL.
    async fn recover(&self, record: &Record, source: &Record, target: &RestoreTarget) -> Result<()> {
        Self::recovery_settings(record, source, target)?;
        self.start(record).await?;
        // The copy has the source's logins: its URL is the source's, on the copy's port.
        let source_url = self.url(&source.id)?;
        let url = with_port(&source_url, record.port).ok_or_else(|| {
            err(format!("the connection URL of {} is not postgres://USER:PASSWORD@HOST:PORT/DB", source.id))
        })?;
        self.secrets.put(&Self::url_ref(&record.id), &url).map_err(|e| err(e.to_string()))?;
        self.wait_promoted(record).await
    }

    /// Replaces the copied archiving settings with the copy's own, and asks for a
    /// recovery from the source's archive up to `target`, then promotion.
    fn recovery_settings(copy: &Record, source: &Record, target: &RestoreTarget) -> Result<()> {
        let conf = copy.base.join("data/postgresql.conf");
        let text = std::fs::read_to_string(&conf).map_err(|e| err(format!("{}: {e}", conf.display())))?;
        let kept = text.split(MARKER).next().unwrap_or(&text).trim_end().to_owned();
        std::fs::write(&conf, kept + "\n").map_err(|e| err(format!("{}: {e}", conf.display())))?;
        Self::ensure_archiving(copy, pg_user()?.map(|(u, g, _)| (u, g)))?;
        let wal = Self::wal_dir(source).display().to_string();
        let stop = match target {
            RestoreTarget::Point(name) => format!("recovery_target_name = '{}'\n", name.replace('\'', "''")),
            RestoreTarget::Time(ms) => {
                let t = Utc::from_ms(*ms);
                format!(
                    "recovery_target_time = '{} {:02}:{:02}:{:02}.{:03}+00'\n",
                    t.date(),
                    t.hour,
                    t.minute,
                    t.second,
                    t.milli
                )
            }
            RestoreTarget::Latest => String::new(),
        };
        let recovery = format!(
            "\n# skiff: point-in-time restore from {}\nrestore_command = 'cp {wal}/%f %p'\n{stop}recovery_target_action = 'promote'\n",
            source.id
        );
        let mut text = std::fs::read_to_string(&conf).map_err(|e| err(e.to_string()))?;
        text.push_str(&recovery);
        std::fs::write(&conf, text).map_err(|e| err(e.to_string()))?;
        let signal = copy.base.join("data/recovery.signal");
        std::fs::write(&signal, "").map_err(|e| err(format!("{}: {e}", signal.display())))?;
        if let Some((uid, gid)) = pg_user()?.map(|(u, g, _)| (u, g)) {
            std::os::unix::fs::chown(&signal, Some(uid), Some(gid)).map_err(|e| err(e.to_string()))?;
        }
        Ok(())
    }

    /// Waits until the copy has replayed to its target and accepts writes.
    async fn wait_promoted(&self, r: &Record) -> Result<()> {
        let deadline = self.ledger.clock().now_ms() + u64::try_from(PROMOTE_WAIT.as_millis()).unwrap_or(u64::MAX);
        loop {
            let state = self.sql(r, "select pg_is_in_recovery()").await;
            if let Ok(rows) = &state
                && rows.first().and_then(|row| row.first()).map(String::as_str) == Some("f")
            {
                return Ok(());
            }
            if self.ledger.clock().now_ms() > deadline || !self.running(r).await {
                let log = std::fs::read_to_string(r.base.join("postgres.log")).unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(5).collect();
                return Err(ProviderError::new(
                    format!(
                        "restored copy {} did not reach its target and promote: {}",
                        r.id,
                        tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
                    ),
                    false,
                ));
            }
            self.ledger.clock().sleep(Duration::from_millis(200)).await;
        }
    }

    /// Every user table now: rows and checksum (the manifest a backup records).
    pub(crate) async fn manifest(&self, id: &str) -> Result<Vec<TableManifest>> {
        let r = self.read_record(id).ok_or_else(|| ProviderError::not_found(format!("database {id}")))?;
        let tables = self.user_tables(&r).await?;
        let mut sql = String::from("begin isolation level repeatable read;\n");
        for t in &tables {
            sql.push_str(&super::backup::table_query(t));
        }
        sql.push_str("commit;\n");
        Ok(super::backup::parse_tables(self.sql(&r, &sql).await?))
    }

    /// The settings a restored copy must share with its source (network, authentication,
    /// durability, encoding), by name.
    pub(crate) async fn settings(&self, id: &str) -> Result<std::collections::BTreeMap<String, String>> {
        let r = self.read_record(id).ok_or_else(|| ProviderError::not_found(format!("database {id}")))?;
        let rows = self
            .sql(
                &r,
                "select name, setting from pg_settings where name in ('listen_addresses', 'password_encryption', \
                 'ssl', 'wal_level', 'archive_mode', 'max_connections', 'server_encoding', 'lc_collate', \
                 'fsync', 'full_page_writes', 'server_version_num') order by name",
            )
            .await?;
        Ok(rows.into_iter().filter(|row| row.len() == 2).map(|row| (row[0].clone(), row[1].clone())).collect())
    }
}

/// `url` with its port replaced.
pub(super) fn with_port(url: &str, port: u16) -> Option<String> {
    let (head, tail) = url.rsplit_once('@')?;
    let (_, path) = tail.split_once('/')?;
    Some(format!("{head}@127.0.0.1:{port}/{path}"))
}
