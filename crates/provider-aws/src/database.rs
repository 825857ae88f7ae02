//! Databases on RDS for PostgreSQL: create (encrypted, tagged, password generated and
//! kept in Secrets Manager as `secret://ID/…`, the
//! same references the local provider uses), snapshot, restore into a new
//! instance, delete with a final snapshot. Waits poll `DescribeDBInstances`.

use std::time::{Duration, Instant};

use async_trait::async_trait;
use aws_sdk_rds::types::{DbInstance, Tag};
use skiff_pluginapi::{
    BackupInfo, ConnectionInfo, Credential, Database, DatabaseInfo, DatabaseSpec, ProviderError, RestoreTarget, Result,
    Secrets, SnapshotInfo, StagedLogin,
};

use crate::names::TAG_SERVICE;
use crate::{AwsProvider, code, fail, now_ms};
use skiff_clock::{Clock as _, SystemClock};

/// How long creation, restore and snapshots may take before the call gives up.
const WAIT: Duration = Duration::from_secs(45 * 60);
const POLL: Duration = Duration::from_secs(5);
const USER: &str = "skiff";

/// The secret holding a database's `password` and `url`: named as the database, so
/// a spec's `secret://DB/url` means the same on every provider.
fn secret_name(id: &str) -> String {
    id.to_owned()
}

/// An instance that already exists was made by an earlier attempt: fine.
fn exists_ok<E, R>(e: aws_sdk_rds::error::SdkError<E, R>, what: &str) -> Result<()>
where
    E: aws_sdk_rds::error::ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug,
{
    if code(&e) == Some("DBInstanceAlreadyExists") { Ok(()) } else { Err(fail(what, e)) }
}

fn info(d: &DbInstance) -> DatabaseInfo {
    DatabaseInfo {
        id: d.db_instance_identifier().unwrap_or_default().to_owned(),
        status: d.db_instance_status().unwrap_or_default().to_owned(),
        host: d.endpoint().and_then(|e| e.address()).unwrap_or_default().to_owned(),
        port: d.endpoint().and_then(|e| e.port()).and_then(|p| u16::try_from(p).ok()).unwrap_or(5432),
        provider_id: d.db_instance_arn().unwrap_or_default().to_owned(),
    }
}

pub(crate) fn password() -> Result<String> {
    let mut bytes = [0u8; 24];
    getrandom::fill(&mut bytes).map_err(|e| ProviderError::new(format!("no randomness for a password: {e}"), true))?;
    Ok(hex::encode(bytes))
}

impl AwsProvider {
    /// Instance `id`, looked up in its region (a replica's, from its name).
    pub(crate) async fn db(&self, id: &str) -> Result<Option<DbInstance>> {
        self.db_at(&self.home_of(id), id).await
    }

    async fn wait_available(&self, id: &str) -> Result<DatabaseInfo> {
        let deadline = Instant::now() + WAIT;
        loop {
            let d = self.db(id).await?.ok_or_else(|| ProviderError::not_found(format!("database {id}")))?;
            let i = info(&d);
            match i.status.as_str() {
                "available" => return Ok(i),
                "failed" | "incompatible-restore" | "incompatible-parameters" | "storage-full" => {
                    return Err(ProviderError::new(
                        format!("database {id} is {}; see the RDS console events", i.status),
                        false,
                    ));
                }
                _ if Instant::now() > deadline => {
                    return Err(ProviderError::new(
                        format!("database {id} still {} after {}m", i.status, WAIT.as_secs() / 60),
                        true,
                    ));
                }
                _ => SystemClock.sleep(POLL).await,
            }
        }
    }

    /// Writes the connection URL (with its password) behind `secret://ID/url`.
    async fn store_url(&self, d: &DatabaseInfo, db_name: &str, pass: &str) -> Result<()> {
        let name = secret_name(&d.id);
        if !self.exists(&format!("secret://{name}/password")).await? {
            self.put(&format!("secret://{name}/password"), pass).await?;
        }
        let url = format!("postgres://{USER}:{pass}@{}:{}/{db_name}", d.host, d.port);
        self.put(&format!("secret://{name}/url"), &url).await
    }

    /// A copy starts with the master password its snapshot holds; it takes the
    /// source's current one (a rotation may have changed it since).
    async fn adopt_password(&self, d: &DatabaseInfo, pass: &str) -> Result<DatabaseInfo> {
        self.c
            .rds
            .modify_db_instance()
            .db_instance_identifier(&d.id)
            .master_user_password(pass)
            .apply_immediately(true)
            .send()
            .await
            .map_err(|e| fail(&format!("set the master password of {}", d.id), e))?;
        self.wait_available(&d.id).await
    }

    fn tags(spec: &DatabaseSpec) -> Vec<Tag> {
        vec![
            Tag::builder().key(TAG_SERVICE).value(&spec.name).build(),
            Tag::builder().key("skiff:database").value(&spec.id).build(),
        ]
    }
}

#[async_trait]
impl Database for AwsProvider {
    async fn create(&self, spec: &DatabaseSpec) -> Result<DatabaseInfo> {
        // The password is stored before the instance exists, so a crash anywhere below
        // leaves a password the next attempt reuses, never an instance nobody can log into.
        let pass = match self.secret_map(&secret_name(&spec.id)).await?.and_then(|m| m.get("password").cloned()) {
            Some(p) => p,
            None => {
                let p = password()?;
                self.put(&format!("secret://{}/password", secret_name(&spec.id)), &p).await?;
                p
            }
        };
        if self.db(&spec.id).await?.is_none() {
            let mut req = self
                .c
                .rds
                .create_db_instance()
                .db_instance_identifier(&spec.id)
                .db_name(&spec.name)
                .engine(&spec.engine)
                .engine_version(&spec.version)
                .db_instance_class(&spec.instance_class)
                .allocated_storage(i32::try_from(spec.storage_gib).unwrap_or(20))
                .multi_az(spec.multi_az)
                .backup_retention_period(i32::try_from(spec.backup_retention_days).unwrap_or(7))
                .master_username(USER)
                .master_user_password(&pass)
                .storage_encrypted(true)
                .publicly_accessible(false)
                .copy_tags_to_snapshot(true)
                .set_tags(Some(Self::tags(spec)));
            if let Some(key) = self.kms_key().await? {
                req = req.kms_key_id(key);
            }
            match req.send().await {
                Ok(_) => {}
                Err(e) if code(&e) == Some("DBInstanceAlreadyExists") => {}
                Err(e) => return Err(fail(&format!("create database {}", spec.id), e)),
            }
        }
        let d = self.wait_available(&spec.id).await?;
        self.store_url(&d, &spec.name, &pass).await?;
        Ok(d)
    }

    async fn create_replica(&self, source: &str, spec: &DatabaseSpec, region: &str) -> Result<DatabaseInfo> {
        crate::replicas::create(self, source, spec, region).await
    }

    async fn replication(&self, id: &str) -> Result<skiff_pluginapi::Replication> {
        crate::replicas::replication(self, id).await
    }

    async fn promote(&self, id: &str) -> Result<()> {
        crate::replicas::promote(self, id).await
    }

    async fn fence(&self, id: &str) -> Result<()> {
        crate::replicas::fence(self, id).await
    }

    async fn describe(&self, id: &str) -> Result<Option<DatabaseInfo>> {
        Ok(self.db(id).await?.filter(|d| d.db_instance_status() != Some("deleting")).map(|d| info(&d)))
    }

    async fn snapshot(&self, id: &str, snapshot_id: &str) -> Result<SnapshotInfo> {
        let existing = match self.c.rds.describe_db_snapshots().db_snapshot_identifier(snapshot_id).send().await {
            Ok(out) => out.db_snapshots().first().cloned(),
            Err(e) if code(&e) == Some("DBSnapshotNotFound") => None,
            Err(e) => return Err(fail(&format!("describe snapshot {snapshot_id}"), e)),
        };
        let snap = match existing {
            Some(s) => s,
            None => self
                .c
                .rds
                .create_db_snapshot()
                .db_instance_identifier(id)
                .db_snapshot_identifier(snapshot_id)
                .send()
                .await
                .map_err(|e| fail(&format!("snapshot database {id}"), e))?
                .db_snapshot
                .ok_or_else(|| ProviderError::new(format!("snapshot {snapshot_id} was not returned"), true))?,
        };
        let deadline = Instant::now() + WAIT;
        let mut status = snap.status().unwrap_or_default().to_owned();
        while status != "available" {
            if Instant::now() > deadline {
                return Err(ProviderError::new(format!("snapshot {snapshot_id} still {status}"), true));
            }
            SystemClock.sleep(POLL).await;
            let out = self
                .c
                .rds
                .describe_db_snapshots()
                .db_snapshot_identifier(snapshot_id)
                .send()
                .await
                .map_err(|e| fail(&format!("describe snapshot {snapshot_id}"), e))?;
            status = out.db_snapshots().first().and_then(|s| s.status()).unwrap_or_default().to_owned();
        }
        Ok(SnapshotInfo {
            id: snapshot_id.to_owned(),
            database: id.to_owned(),
            provider_ref: snap.db_snapshot_arn().unwrap_or(snapshot_id).to_owned(),
            size_bytes: snap.allocated_storage().and_then(|g| u64::try_from(g).ok()).map(|g| g << 30),
        })
    }

    async fn restore(&self, snapshot: &SnapshotInfo, spec: &DatabaseSpec) -> Result<DatabaseInfo> {
        if self.db(&spec.id).await?.is_none() {
            let made = self
                .c
                .rds
                .restore_db_instance_from_db_snapshot()
                .db_instance_identifier(&spec.id)
                .db_snapshot_identifier(&snapshot.id)
                .db_instance_class(&spec.instance_class)
                .multi_az(spec.multi_az)
                .publicly_accessible(false)
                .set_tags(Some(Self::tags(spec)))
                .send()
                .await;
            match made {
                Ok(_) => {}
                Err(e) if code(&e) == Some("DBInstanceAlreadyExists") => {}
                Err(e) => return Err(fail(&format!("restore {} into {}", snapshot.id, spec.id), e)),
            }
        }
        let d = self.wait_available(&spec.id).await?;
        // The restored instance keeps the source's password: point a URL at the new host.
        let source = format!("secret://{}/password", secret_name(&snapshot.database));
        if let Some(map) = self.secret_map(&secret_name(&snapshot.database)).await?
            && let Some(pass) = map.get("password")
        {
            self.store_url(&d, &spec.name, pass).await?;
        } else {
            return Err(ProviderError::new(
                format!(
                    "restored {} but {source} is gone, so no connection URL was written; reset the password in RDS",
                    spec.id
                ),
                false,
            ));
        }
        Ok(d)
    }

    async fn connection(&self, id: &str) -> Result<ConnectionInfo> {
        let d = self.db(id).await?.ok_or_else(|| ProviderError::not_found(format!("database {id}")))?;
        let i = info(&d);
        Ok(ConnectionInfo {
            host: i.host,
            port: i.port,
            database: d.db_name().unwrap_or_default().to_owned(),
            user: d.master_username().unwrap_or(USER).to_owned(),
            url_ref: format!("secret://{}/url", secret_name(id)),
        })
    }

    /// A manual snapshot is the base copy; RDS has no named restore points, so the
    /// point is the snapshot's time (automated backups restore to any second after it
    /// within the retention window). RDS cannot look inside the data: no table manifest.
    async fn backup(&self, id: &str, backup_id: &str) -> Result<BackupInfo> {
        let snap = self.snapshot(id, backup_id).await?;
        Ok(BackupInfo {
            id: backup_id.to_owned(),
            database: id.to_owned(),
            provider_ref: snap.provider_ref,
            restore_point: backup_id.to_owned(),
            at_ms: now_ms(),
            lsn: None,
            size_bytes: snap.size_bytes,
            tables: Vec::new(),
        })
    }

    /// A point is its snapshot, restored as it was; a time or `latest` is RDS's
    /// point-in-time restore of the source (automated backups). Either way a new
    /// instance, private, in the source's subnet group, parameter group and security
    /// groups, with its own connection URL under the source's password.
    async fn restore_to(
        &self,
        backup: &BackupInfo,
        target: &RestoreTarget,
        spec: &DatabaseSpec,
    ) -> Result<DatabaseInfo> {
        if self.db(&spec.id).await?.is_none() {
            let source = self
                .db(&backup.database)
                .await?
                .ok_or_else(|| ProviderError::not_found(format!("database {}", backup.database)))?;
            let subnet_group = source.db_subnet_group().and_then(|g| g.db_subnet_group_name()).map(str::to_owned);
            let parameter_group =
                source.db_parameter_groups().first().and_then(|g| g.db_parameter_group_name()).map(str::to_owned);
            let security_groups: Vec<String> = source
                .vpc_security_groups()
                .iter()
                .filter_map(|g| g.vpc_security_group_id())
                .map(str::to_owned)
                .collect();
            let made = match target {
                RestoreTarget::Point(_) => self
                    .c
                    .rds
                    .restore_db_instance_from_db_snapshot()
                    .db_instance_identifier(&spec.id)
                    .db_snapshot_identifier(&backup.id)
                    .db_instance_class(&spec.instance_class)
                    .multi_az(spec.multi_az)
                    .publicly_accessible(false)
                    .set_db_subnet_group_name(subnet_group)
                    .set_db_parameter_group_name(parameter_group)
                    .set_vpc_security_group_ids(Some(security_groups))
                    .set_tags(Some(Self::tags(spec)))
                    .send()
                    .await
                    .map(drop)
                    .or_else(|e| exists_ok(e, &format!("restore {} into {}", backup.id, spec.id))),
                RestoreTarget::Time(_) | RestoreTarget::Latest => {
                    let mut req = self
                        .c
                        .rds
                        .restore_db_instance_to_point_in_time()
                        .source_db_instance_identifier(&backup.database)
                        .target_db_instance_identifier(&spec.id)
                        .db_instance_class(&spec.instance_class)
                        .multi_az(spec.multi_az)
                        .publicly_accessible(false)
                        .set_db_subnet_group_name(subnet_group)
                        .set_db_parameter_group_name(parameter_group)
                        .set_vpc_security_group_ids(Some(security_groups))
                        .set_tags(Some(Self::tags(spec)));
                    req = match target {
                        RestoreTarget::Time(ms) => req.restore_time(aws_sdk_rds::primitives::DateTime::from_millis(
                            i64::try_from(*ms).unwrap_or(i64::MAX),
                        )),
                        _ => req.use_latest_restorable_time(true),
                    };
                    req.send()
                        .await
                        .map(drop)
                        .or_else(|e| exists_ok(e, &format!("restore {} to a time into {}", backup.database, spec.id)))
                }
            };
            made?;
        }
        let d = self.wait_available(&spec.id).await?;
        let pass = self
            .secret_map(&secret_name(&backup.database))
            .await?
            .and_then(|m| m.get("password").cloned())
            .ok_or_else(|| {
                ProviderError::new(
                    format!("restored {} but the source's password is gone; reset it in RDS", spec.id),
                    false,
                )
            })?;
        let d = self.adopt_password(&d, &pass).await?;
        self.store_url(&d, &spec.name, &pass).await?;
        Ok(d)
    }

    /// Network, parameters and encryption as RDS describes them.
    async fn settings(&self, id: &str) -> Result<std::collections::BTreeMap<String, String>> {
        let d = self.db(id).await?.ok_or_else(|| ProviderError::not_found(format!("database {id}")))?;
        let mut groups: Vec<&str> = d.vpc_security_groups().iter().filter_map(|g| g.vpc_security_group_id()).collect();
        groups.sort_unstable();
        let s = |v: Option<&str>| v.unwrap_or_default().to_owned();
        Ok([
            ("engine", s(d.engine())),
            ("engine_version", s(d.engine_version())),
            ("storage_encrypted", d.storage_encrypted().unwrap_or(false).to_string()),
            ("kms_key_id", s(d.kms_key_id())),
            ("publicly_accessible", d.publicly_accessible().unwrap_or(false).to_string()),
            ("db_subnet_group", s(d.db_subnet_group().and_then(|g| g.db_subnet_group_name()))),
            ("parameter_group", s(d.db_parameter_groups().first().and_then(|g| g.db_parameter_group_name()))),
            ("security_groups", groups.join(",")),
            ("iam_auth", d.iam_database_authentication_enabled().unwrap_or(false).to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect())
    }

    async fn rotation_create(&self, id: &str, reference: &str) -> Result<StagedLogin> {
        AwsProvider::rotation_create(self, id, reference).await
    }

    async fn rotation_set(&self, id: &str, reference: &str) -> Result<Credential> {
        AwsProvider::rotation_set(self, id, reference).await
    }

    async fn rotation_test(&self, id: &str, reference: &str) -> Result<Credential> {
        AwsProvider::rotation_test(self, id, reference).await
    }

    async fn rotation_finish(&self, id: &str, reference: &str) -> Result<Credential> {
        AwsProvider::rotation_finish(self, id, reference).await
    }

    async fn rotation_cancel(&self, _id: &str, reference: &str) -> Result<()> {
        AwsProvider::rotation_cancel(self, reference).await
    }

    async fn disable_login(&self, id: &str, user: &str) -> Result<()> {
        AwsProvider::disable_login(self, id, user).await
    }

    async fn delete(&self, id: &str) -> Result<()> {
        let Some(d) = self.db(id).await? else { return Ok(()) };
        if d.db_instance_status() == Some("deleting") {
            return Ok(());
        }
        let r = self
            .c
            .rds
            .delete_db_instance()
            .db_instance_identifier(id)
            .skip_final_snapshot(false)
            .final_db_snapshot_identifier(format!("{id}-final-{}", now_ms() / 1000))
            .send()
            .await;
        match r {
            Ok(_) => Ok(()),
            Err(e) if code(&e) == Some("DBInstanceNotFound") => Ok(()),
            Err(e) => Err(fail(&format!("delete database {id}"), e)),
        }
    }
}
