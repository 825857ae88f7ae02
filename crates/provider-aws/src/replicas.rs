//! Cross-region read replicas on RDS: a replica is made in its region by an RDS client
//! of that region from the source's ARN, promoted with `PromoteReadReplica`, and a
//! fenced primary is a stopped instance. An instance's region is read from its id
//! (`<database>-<region>`, as Skiff names replicas); any other id is in the provider's
//! region. RDS reports no log positions: replication carries none, so the lag is
//! unknown on AWS — a switchover is refused and a failover needs `--accept-data-loss`.

use aws_sdk_rds::types::{DbInstance, Tag};
use skiff_clock::{Clock as _, SystemClock};
use skiff_pluginapi::{DatabaseInfo, DatabaseSpec, ProviderError, ReplicaRole, Replication, Result, Secrets};

use crate::names::TAG_SERVICE;
use crate::{AwsProvider, code, fail};

/// The tag Skiff writes on a replica it promoted.
const PROMOTED: &str = "skiff:promoted";

/// `us-west-2` of `orders-db-us-west-2`: the last three dash-separated parts when they
/// read as a region (letters, letters, a number).
pub(crate) fn region_of(id: &str) -> Option<String> {
    let parts: Vec<&str> = id.rsplitn(4, '-').collect();
    let [number, area, geo, _rest] = parts[..] else { return None };
    let letters = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_lowercase());
    (letters(geo)
        && geo.len() == 2
        && letters(area)
        && number.chars().all(|c| c.is_ascii_digit())
        && !number.is_empty())
    .then(|| format!("{geo}-{area}-{number}"))
}

impl AwsProvider {
    fn rds_in(&self, region: &str) -> aws_sdk_rds::Client {
        if region == self.region {
            return self.c.rds.clone();
        }
        let conf =
            aws_sdk_rds::config::Builder::from(&self.conf).region(aws_config::Region::new(region.to_owned())).build();
        aws_sdk_rds::Client::from_conf(conf)
    }

    /// Whether Skiff promoted `d` (its `skiff:promoted` tag).
    async fn promoted(&self, region: &str, d: &DbInstance) -> Result<bool> {
        let arn = d.db_instance_arn().unwrap_or_default();
        let out = self
            .rds_in(region)
            .list_tags_for_resource()
            .resource_name(arn)
            .send()
            .await
            .map_err(|e| fail(&format!("read the tags of {arn}"), e))?;
        Ok(out.tag_list().iter().any(|t| t.key() == Some(PROMOTED)))
    }

    pub(crate) fn home_of(&self, id: &str) -> String {
        region_of(id).unwrap_or_else(|| self.region.clone())
    }

    pub(crate) async fn db_at(&self, region: &str, id: &str) -> Result<Option<DbInstance>> {
        match self.rds_in(region).describe_db_instances().db_instance_identifier(id).send().await {
            Ok(out) => Ok(out.db_instances().first().cloned()),
            Err(e) if code(&e) == Some("DBInstanceNotFound") => Ok(None),
            Err(e) => Err(fail(&format!("describe database {id} in {region}"), e)),
        }
    }

    async fn available_at(&self, region: &str, id: &str) -> Result<DbInstance> {
        let clock = SystemClock;
        let deadline = clock.now_ms() + 45 * 60 * 1000;
        loop {
            let d = self.db_at(region, id).await?.ok_or_else(|| ProviderError::not_found(format!("database {id}")))?;
            if d.db_instance_status() == Some("available") {
                return Ok(d);
            }
            if clock.now_ms() > deadline {
                return Err(ProviderError::new(format!("database {id} in {region} is not available after 45m"), true));
            }
            clock.sleep(std::time::Duration::from_secs(5)).await;
        }
    }
}

pub(crate) async fn create(p: &AwsProvider, source: &str, spec: &DatabaseSpec, region: &str) -> Result<DatabaseInfo> {
    let from = p.home_of(source);
    let src = p.db_at(&from, source).await?.ok_or_else(|| ProviderError::not_found(format!("database {source}")))?;
    if p.db_at(region, &spec.id).await?.is_none() {
        let tags = vec![
            Tag::builder().key(TAG_SERVICE).value(&spec.name).build(),
            Tag::builder().key("skiff:database").value(&spec.id).build(),
            Tag::builder().key("skiff:region").value(region).build(),
        ];
        // A source in another region is named by its ARN; the SDK presigns the copy.
        let req = p
            .rds_in(region)
            .create_db_instance_read_replica()
            .db_instance_identifier(&spec.id)
            .source_db_instance_identifier(src.db_instance_arn().unwrap_or(source))
            .db_instance_class(&spec.instance_class)
            .publicly_accessible(false)
            .set_tags(Some(tags));
        match req.send().await {
            Ok(_) => {}
            Err(e) if code(&e) == Some("DBInstanceAlreadyExists") => {}
            Err(e) => return Err(fail(&format!("create replica {} of {source} in {region}", spec.id), e)),
        }
    }
    let d = p.available_at(region, &spec.id).await?;
    // The replica's consumers log in as the source's: its URL carries the source's login.
    let url = p
        .secret_map(source)
        .await?
        .and_then(|m| m.get("url").cloned())
        .ok_or_else(|| ProviderError::not_found(format!("secret://{source}/url")))?;
    let endpoint = d.endpoint().and_then(|e| e.address()).unwrap_or_default();
    let port = d.endpoint().and_then(|e| e.port()).unwrap_or(5432);
    let replaced = match url.split_once('@').and_then(|(login, rest)| Some((login, rest.split_once('/')?.1))) {
        Some((login, db)) => format!("{login}@{endpoint}:{port}/{db}"),
        None => url,
    };
    p.put(&format!("secret://{}/url", spec.id), &replaced).await?;
    Ok(DatabaseInfo {
        id: spec.id.clone(),
        status: "available".to_owned(),
        host: endpoint.to_owned(),
        port: u16::try_from(port).unwrap_or(5432),
        provider_id: d.db_instance_arn().unwrap_or_default().to_owned(),
    })
}

pub(crate) async fn replication(p: &AwsProvider, id: &str) -> Result<Replication> {
    let region = p.home_of(id);
    let d = p.db_at(&region, id).await?.ok_or_else(|| ProviderError::not_found(format!("database {id}")))?;
    let status = d.db_instance_status().unwrap_or_default();
    let mut source =
        d.read_replica_source_db_instance_identifier().map(|s| s.rsplit(':').next().unwrap_or(s).to_owned());
    // Skiff tags what it promoted: an emulator (moto) keeps the source after promotion.
    if source.is_some() && p.promoted(&region, &d).await? {
        source = None;
    }
    let role = if matches!(status, "stopped" | "stopping") {
        ReplicaRole::Fenced
    } else if source.is_some() {
        ReplicaRole::Replica
    } else {
        ReplicaRole::Primary
    };
    Ok(Replication {
        id: id.to_owned(),
        region,
        reachable: status == "available",
        read_only: role != ReplicaRole::Primary,
        role,
        lsn: None,
        received_lsn: None,
        source,
    })
}

pub(crate) async fn promote(p: &AwsProvider, id: &str) -> Result<()> {
    let region = p.home_of(id);
    let d = p.db_at(&region, id).await?.ok_or_else(|| ProviderError::not_found(format!("database {id}")))?;
    if d.read_replica_source_db_instance_identifier().is_some() && !p.promoted(&region, &d).await? {
        p.rds_in(&region)
            .promote_read_replica()
            .db_instance_identifier(id)
            .send()
            .await
            .map_err(|e| fail(&format!("promote {id} in {region}"), e))?;
        p.rds_in(&region)
            .add_tags_to_resource()
            .resource_name(d.db_instance_arn().unwrap_or_default())
            .tags(Tag::builder().key(PROMOTED).value("true").build())
            .send()
            .await
            .map_err(|e| fail(&format!("tag {id} promoted"), e))?;
    }
    p.available_at(&region, id).await.map(drop)
}

pub(crate) async fn fence(p: &AwsProvider, id: &str) -> Result<()> {
    let region = p.home_of(id);
    let Some(d) = p.db_at(&region, id).await? else { return Ok(()) };
    if matches!(d.db_instance_status(), Some("stopped" | "stopping" | "deleting")) {
        return Ok(());
    }
    match p.rds_in(&region).stop_db_instance().db_instance_identifier(id).send().await {
        Ok(_) => Ok(()),
        Err(e) if code(&e) == Some("InvalidDBInstanceState") => Ok(()),
        Err(e) => Err(fail(&format!("stop (fence) {id} in {region}"), e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_replicas_region_is_read_from_its_name() {
        assert_eq!(region_of("orders-db-us-west-2").as_deref(), Some("us-west-2"));
        assert_eq!(region_of("db-eu-central-1").as_deref(), Some("eu-central-1"));
        assert_eq!(region_of("orders-db"), None);
        assert_eq!(region_of("us-west-2"), None, "a region alone names no database");
    }
}
