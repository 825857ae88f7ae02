//! Backups of a local PostgreSQL: every cluster archives its WAL into `<base>/wal`; a
//! backup is a `pg_basebackup` copy (with the WAL it needs) under `<base>/backups/<id>`
//! followed by a named restore point, taken while every user table is locked against
//! writes so the manifest (rows and checksum per table) is exactly the data at the
//! point. The backup's description is kept beside the records, so taking a backup
//! with the same id again answers the same backup.

use std::path::{Path, PathBuf};
use std::time::Duration;

use skiff_pluginapi::{BackupInfo, ProviderError, Result, TableManifest};

use super::{Postgres, Record, err};

/// The settings that make a cluster archive its WAL, appended once to postgresql.conf.
pub(super) const MARKER: &str = "# skiff: WAL archiving for backups and point-in-time restore";

/// How long a backup waits for its restore point's WAL segment to be archived.
const ARCHIVE_WAIT: Duration = Duration::from_secs(60);

impl Postgres {
    /// Where a cluster's WAL is archived.
    pub(super) fn wal_dir(r: &Record) -> PathBuf {
        r.base.join("wal")
    }

    fn backup_path(&self, backup_id: &str) -> PathBuf {
        self.records.join("backups").join(format!("{backup_id}.json"))
    }

    /// Appends the archiving settings to the cluster's postgresql.conf (once) and makes
    /// the archive directory; they apply from the next start.
    pub(super) fn ensure_archiving(r: &Record, owner: Option<(u32, u32)>) -> Result<()> {
        let wal = Self::wal_dir(r);
        Self::owned_dir(&wal, owner)?;
        let conf = r.base.join("data/postgresql.conf");
        let text = std::fs::read_to_string(&conf).map_err(|e| err(format!("{}: {e}", conf.display())))?;
        if text.contains(MARKER) {
            return Ok(());
        }
        let w = wal.display();
        let lines = format!(
            "\n{MARKER}\nwal_level = replica\narchive_mode = on\narchive_command = 'test ! -f {w}/%f && cp %p {w}/%f'\n"
        );
        std::fs::write(&conf, text + &lines).map_err(|e| err(format!("{}: {e}", conf.display())))
    }

    /// Runs `sql` through psql as the cluster's user: rows of `|`-separated fields.
    pub(super) async fn sql(&self, r: &Record, sql: &str) -> Result<Vec<Vec<String>>> {
        let mut args = Self::admin(r);
        args.extend(
            ["-d", &r.name, "-X", "-q", "-At", "-F", "|", "-v", "ON_ERROR_STOP=1", "-f", "-"].map(str::to_owned),
        );
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = self.tool("psql", &args, None, Some(sql.as_bytes())).await?;
        Ok(String::from_utf8_lossy(&out)
            .lines()
            .filter(|l| !l.is_empty())
            .map(|l| l.split('|').map(str::to_owned).collect())
            .collect())
    }

    /// Digests of the migration tools' version tables the instance has.
    pub(crate) async fn migration_marks(&self, id: &str) -> Result<std::collections::BTreeMap<String, String>> {
        let r = self.read_record(id).ok_or_else(|| ProviderError::not_found(format!("database {id}")))?;
        let names: Vec<String> = skiff_pluginapi::MIGRATION_TABLES.iter().map(|t| format!("('{t}')")).collect();
        let found = self
            .sql(
                &r,
                &format!(
                    "select t from (values {}) v(t) where to_regclass('public.' || quote_ident(t)) is not null",
                    names.join(",")
                ),
            )
            .await?;
        let mut out = std::collections::BTreeMap::new();
        for row in found {
            let Some(t) = row.first() else { continue };
            let digest = self
                .sql(
                    &r,
                    &format!(
                        "select count(*) || ':' || coalesce(md5(string_agg(x::text, ',' order by x::text)), '') from public.\"{t}\" x"
                    ),
                )
                .await?;
            out.insert(t.clone(), digest.first().and_then(|d| d.first()).cloned().unwrap_or_default());
        }
        Ok(out)
    }

    pub(crate) async fn backup(&self, id: &str, backup_id: &str) -> Result<BackupInfo> {
        if let Some(b) = std::fs::read(self.backup_path(backup_id)).ok().and_then(|b| serde_json::from_slice(&b).ok()) {
            return Ok(b);
        }
        let r = self.read_record(id).ok_or_else(|| ProviderError::not_found(format!("database {id}")))?;
        let owner = super::pg_user()?.map(|(u, g, _)| (u, g));
        Self::ensure_archiving(&r, owner)?;
        if self.sql(&r, "show archive_mode").await?.first().and_then(|row| row.first()).map(String::as_str)
            != Some("on")
        {
            // A cluster made before archiving was on: one restart turns it on.
            let data = r.base.join("data").display().to_string();
            self.tool("pg_ctl", &["-D", &data, "-m", "fast", "-w", "stop"], None, None).await?;
            self.start(&r).await?;
        }
        let root = r.base.join("backups");
        Self::owned_dir(&root, owner)?;
        let dir = root.join(backup_id);
        // A copy left by a crash is incomplete: start it again.
        let _ = std::fs::remove_dir_all(&dir);
        let target = dir.display().to_string();
        let mut args = Self::admin(&r);
        args.extend(["-D", &target, "-X", "stream", "--checkpoint=fast", "-Fp"].map(str::to_owned));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.tool("pg_basebackup", &args, None, None).await?;
        let (restore_point, at_ms, lsn, tables, segment) = self.restore_point(&r, backup_id).await?;
        self.wait_archived(&r, &segment).await?;
        let info = BackupInfo {
            id: backup_id.to_owned(),
            database: id.to_owned(),
            provider_ref: format!("local-basebackup:{target}"),
            restore_point,
            at_ms,
            lsn: Some(lsn),
            size_bytes: Some(dir_size(&dir)),
            tables,
        };
        let path = self.backup_path(backup_id);
        std::fs::create_dir_all(path.parent().expect("has a parent")).map_err(|e| err(e.to_string()))?;
        std::fs::write(&path, serde_json::to_vec_pretty(&info).unwrap_or_default()).map_err(|e| err(e.to_string()))?;
        Ok(info)
    }

    /// Locks every user table against writes, creates the restore point, counts and
    /// checksums each table, and switches to a new WAL segment so the point is archived.
    async fn restore_point(&self, r: &Record, name: &str) -> Result<(String, u64, String, Vec<TableManifest>, String)> {
        let tables = self.user_tables(r).await?;
        let mut sql = String::from("begin;\n");
        if !tables.is_empty() {
            sql.push_str(&format!("lock table {} in share mode;\n", tables.join(", ")));
        }
        sql.push_str(&format!(
            "select 'point', pg_create_restore_point('{}')::text, (extract(epoch from clock_timestamp()) * 1000)::bigint;\n",
            name.replace('\'', "''")
        ));
        for t in &tables {
            sql.push_str(&table_query(t));
        }
        sql.push_str("commit;\nselect 'segment', pg_walfile_name(pg_switch_wal());\n");
        let rows = self.sql(r, &sql).await?;
        let (mut lsn, mut at_ms, mut segment) = (String::new(), 0, String::new());
        for row in &rows {
            match row.first().map(String::as_str) {
                Some("point") if row.len() == 3 => {
                    lsn.clone_from(&row[1]);
                    at_ms = row[2].parse().unwrap_or_default();
                }
                Some("segment") if row.len() == 2 => segment.clone_from(&row[1]),
                _ => {}
            }
        }
        let manifest = parse_tables(rows);
        if lsn.is_empty() || segment.is_empty() {
            return Err(err(format!("restore point {name} was not confirmed by the database")));
        }
        Ok((name.to_owned(), at_ms, lsn, manifest, segment))
    }

    /// `schema.table` of every user table, sorted.
    pub(super) async fn user_tables(&self, r: &Record) -> Result<Vec<String>> {
        let listed = self
            .sql(
                r,
                "select format('%I.%I', schemaname, tablename) from pg_tables \
                 where schemaname not in ('pg_catalog', 'information_schema') order by 1",
            )
            .await?;
        Ok(listed.into_iter().filter_map(|row| row.into_iter().next()).collect())
    }

    /// Waits until `segment` is in the archive (PostgreSQL archives closed segments in order).
    async fn wait_archived(&self, r: &Record, segment: &str) -> Result<()> {
        let deadline = self.ledger.clock().now_ms() + u64::try_from(ARCHIVE_WAIT.as_millis()).unwrap_or(u64::MAX);
        loop {
            if Self::wal_dir(r).join(segment).exists() {
                return Ok(());
            }
            if self.ledger.clock().now_ms() > deadline {
                let failed = self.sql(r, "select coalesce(last_failed_wal, '') from pg_stat_archiver").await?;
                let last = failed.first().and_then(|row| row.first()).cloned().unwrap_or_default();
                return Err(ProviderError::new(
                    format!(
                        "WAL segment {segment} was not archived within {}s (last failed: {last}); see {}",
                        ARCHIVE_WAIT.as_secs(),
                        r.base.join("postgres.log").display()
                    ),
                    true,
                ));
            }
            self.ledger.clock().sleep(Duration::from_millis(100)).await;
        }
    }
}

/// The manifest row of table `t`: `table|NAME|ROWS|CHECKSUM`.
pub(super) fn table_query(t: &str) -> String {
    format!(
        "select 'table', '{}', count(*), coalesce(md5(string_agg(x::text, ',' order by x::text)), '') from {t} x;\n",
        t.replace('\'', "''")
    )
}

/// The manifest from rows [`table_query`] printed (other rows are skipped).
pub(super) fn parse_tables(rows: Vec<Vec<String>>) -> Vec<TableManifest> {
    rows.into_iter()
        .filter(|row| row.len() == 4 && row[0] == "table")
        .map(|row| TableManifest {
            table: row[1].clone(),
            rows: row[2].parse().unwrap_or_default(),
            checksum: row[3].clone(),
        })
        .collect()
}

/// Bytes under `dir`.
fn dir_size(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| {
            let p = e.path();
            if p.is_dir() { dir_size(&p) } else { e.metadata().map(|m| m.len()).unwrap_or(0) }
        })
        .sum()
}
