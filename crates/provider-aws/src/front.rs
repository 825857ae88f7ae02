//! The global traffic front across regions: weighted Route 53 records. A service's
//! name in the private zone `skiff.internal` (attached to Skiff's VPC in every region the
//! service runs in) has one CNAME record per region (its set identifier), pointing at that
//! region's ALB, with the region's weight. Route 53 answers a share of lookups with each
//! record; changes take the records' TTL (60 s) to reach every resolver. Health: no
//! Route 53 health checks are made, so every region with a record counts as healthy (the
//! regional ALB's own target health is what the failover saga verifies).

use aws_sdk_route53::types::{
    Change, ChangeAction, ChangeBatch, HostedZoneConfig, ResourceRecord, ResourceRecordSet, RrType, Vpc, VpcRegion,
};
use skiff_pluginapi::{FrontInfo, FrontSpec, ProviderError, RegionWeight, Result};

use crate::{AwsProvider, fail};

/// The private zone service names live in.
const ZONE: &str = "skiff.internal";
const TTL: i64 = 60;

fn fqdn(service: &str) -> String {
    format!("{service}.{ZONE}.")
}

/// One region's record: where it points and its weight.
struct Record {
    region: String,
    target: String,
    weight: u32,
}

impl AwsProvider {
    /// The zone's id, made (private, in Skiff's VPC) when `create` and it is missing.
    async fn zone(&self, create: bool) -> Result<Option<String>> {
        let name = format!("{ZONE}.");
        let out = self
            .c
            .route53
            .list_hosted_zones_by_name()
            .dns_name(&name)
            .send()
            .await
            .map_err(|e| fail("list hosted zones", e))?;
        if let Some(z) = out.hosted_zones().iter().find(|z| z.name() == name) {
            return Ok(Some(z.id().trim_start_matches("/hostedzone/").to_owned()));
        }
        if !create {
            return Ok(None);
        }
        let net = self.network().await?;
        let made = self
            .c
            .route53
            .create_hosted_zone()
            .name(&name)
            .caller_reference(format!("skiff-{ZONE}-{}", net.vpc))
            .hosted_zone_config(HostedZoneConfig::builder().private_zone(true).comment("Skiff service names").build())
            .vpc(Vpc::builder().vpc_id(&net.vpc).vpc_region(VpcRegion::from(self.region.as_str())).build())
            .send()
            .await
            .map_err(|e| fail(&format!("create hosted zone {ZONE}"), e))?;
        Ok(made.hosted_zone().map(|z| z.id().trim_start_matches("/hostedzone/").to_owned()))
    }

    /// Attaches the zone to the VPC Skiff uses in `region`, so the service's name resolves
    /// there too (a VPC already attached is left as it is).
    async fn attach_region(&self, zone: &str, region: &str) -> Result<()> {
        let r = self.in_region(region);
        let net = r.network().await?;
        let out = self
            .c
            .route53
            .get_hosted_zone()
            .id(zone)
            .send()
            .await
            .map_err(|e| fail(&format!("describe hosted zone {ZONE}"), e))?;
        if out.vpcs().iter().any(|v| v.vpc_id() == Some(net.vpc.as_str())) {
            return Ok(());
        }
        self.c
            .route53
            .associate_vpc_with_hosted_zone()
            .hosted_zone_id(zone)
            .vpc(Vpc::builder().vpc_id(&net.vpc).vpc_region(VpcRegion::from(region)).build())
            .send()
            .await
            .map_err(|e| fail(&format!("attach hosted zone {ZONE} to {} in {region}", net.vpc), e))?;
        Ok(())
    }

    async fn records(&self, zone: &str, service: &str) -> Result<Vec<Record>> {
        let name = fqdn(service);
        let out = self
            .c
            .route53
            .list_resource_record_sets()
            .hosted_zone_id(zone)
            .start_record_name(&name)
            .send()
            .await
            .map_err(|e| fail(&format!("list the records of {name}"), e))?;
        let mut records: Vec<Record> = out
            .resource_record_sets()
            .iter()
            .filter(|r| r.name() == name && r.r#type() == &RrType::Cname)
            .filter_map(|r| {
                Some(Record {
                    region: r.set_identifier()?.to_owned(),
                    target: r.resource_records().first()?.value().to_owned(),
                    weight: u32::try_from(r.weight().unwrap_or(0)).unwrap_or(0),
                })
            })
            .collect();
        records.sort_by(|a, b| a.region.cmp(&b.region));
        Ok(records)
    }

    async fn upsert(&self, zone: &str, service: &str, records: &[Record]) -> Result<()> {
        let mut changes = Vec::new();
        for r in records {
            let set = ResourceRecordSet::builder()
                .name(fqdn(service))
                .r#type(RrType::Cname)
                .set_identifier(&r.region)
                .weight(i64::from(r.weight))
                .ttl(TTL)
                .resource_records(ResourceRecord::builder().value(&r.target).build().map_err(invalid)?)
                .build()
                .map_err(invalid)?;
            changes.push(
                Change::builder().action(ChangeAction::Upsert).resource_record_set(set).build().map_err(invalid)?,
            );
        }
        let batch = ChangeBatch::builder()
            .comment(format!("skiff: {service}'s weights per region"))
            .set_changes(Some(changes))
            .build()
            .map_err(invalid)?;
        self.c
            .route53
            .change_resource_record_sets()
            .hosted_zone_id(zone)
            .change_batch(batch)
            .send()
            .await
            .map_err(|e| fail(&format!("change the records of {}", fqdn(service)), e))?;
        Ok(())
    }
}

fn invalid(e: impl std::fmt::Display) -> ProviderError {
    ProviderError::new(format!("a Route 53 change Skiff built is invalid: {e}"), false)
}

/// An ALB's address without the listener port: what a CNAME points at.
fn host(address: &str) -> &str {
    address.rsplit_once(':').map_or(address, |(h, _)| h)
}

pub(crate) async fn ensure(p: &AwsProvider, spec: &FrontSpec) -> Result<FrontInfo> {
    let zone =
        p.zone(true).await?.ok_or_else(|| ProviderError::new(format!("no zone {ZONE} after creating it"), true))?;
    for r in spec.regions.iter().filter(|r| r.region != p.region) {
        p.attach_region(&zone, &r.region).await?;
    }
    let existing = p.records(&zone, &spec.service).await?;
    let fresh = existing.is_empty();
    let records: Vec<Record> = spec
        .regions
        .iter()
        .map(|r| {
            let kept = existing.iter().find(|e| e.region == r.region).map(|e| e.weight);
            let initial = spec.initial.iter().find(|w| w.region == r.region).map_or(0, |w| w.weight);
            Record {
                region: r.region.clone(),
                target: host(&r.address).to_owned(),
                weight: if fresh { initial } else { kept.unwrap_or(0) },
            }
        })
        .collect();
    p.upsert(&zone, &spec.service, &records).await?;
    describe(p, &spec.service)
        .await?
        .ok_or_else(|| ProviderError::new(format!("{} vanished", fqdn(&spec.service)), true))
}

pub(crate) async fn set_weights(p: &AwsProvider, service: &str, weights: &[RegionWeight]) -> Result<()> {
    let zone = p.zone(false).await?.ok_or_else(|| ProviderError::not_found(format!("zone {ZONE}")))?;
    let mut records = p.records(&zone, service).await?;
    for w in weights {
        let Some(r) = records.iter_mut().find(|r| r.region == w.region) else {
            return Err(ProviderError::new(format!("{} has no record for region {}", fqdn(service), w.region), false));
        };
        r.weight = w.weight;
    }
    p.upsert(&zone, service, &records).await
}

pub(crate) async fn describe(p: &AwsProvider, service: &str) -> Result<Option<FrontInfo>> {
    let Some(zone) = p.zone(false).await? else { return Ok(None) };
    let records = p.records(&zone, service).await?;
    if records.is_empty() {
        return Ok(None);
    }
    Ok(Some(FrontInfo {
        service: service.to_owned(),
        address: fqdn(service).trim_end_matches('.').to_owned(),
        weights: records.iter().map(|r| RegionWeight { region: r.region.clone(), weight: r.weight }).collect(),
        healthy: records.iter().map(|r| r.region.clone()).collect(),
    }))
}
