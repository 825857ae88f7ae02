//! Regions: a service in several regions has an auto scaling group, load balancer,
//! target groups and security groups in each, made by clients of that region in its
//! VPC. Skiff names another region's resources `<name>-<region>`, so a resource's
//! region is read from its name ([`crate::replicas::region_of`]); anything else is in
//! the provider's own region. The state bucket and the log group stay in the
//! provider's region; the secrets a regional group reads are replicated to its region
//! (Secrets Manager replication), where its instances fetch them.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use aws_sdk_secretsmanager::types::ReplicaRegionType;
use skiff_pluginapi::Result;
use tokio::sync::OnceCell;

use crate::{AwsProvider, Network, fail};

/// The clients and network of one region.
#[derive(Debug)]
pub(crate) struct Regional {
    /// The region.
    pub(crate) name: String,
    /// Whether it is the provider's own region.
    pub(crate) home: bool,
    pub(crate) ec2: aws_sdk_ec2::Client,
    pub(crate) asg: aws_sdk_autoscaling::Client,
    pub(crate) elb: aws_sdk_elasticloadbalancingv2::Client,
    pub(crate) metrics: aws_sdk_cloudwatch::Client,
    /// Subnets to use (configured for the provider's own region; another region uses
    /// its default VPC).
    subnets: Vec<String>,
    network: OnceCell<Network>,
}

impl Regional {
    /// Clients of `region` from the loaded configuration.
    pub(crate) fn new(conf: &aws_config::SdkConfig, region: &str, home: bool, subnets: Vec<String>) -> Self {
        let conf = conf.to_builder().region(aws_config::Region::new(region.to_owned())).build();
        Regional {
            name: region.to_owned(),
            home,
            ec2: aws_sdk_ec2::Client::new(&conf),
            asg: aws_sdk_autoscaling::Client::new(&conf),
            elb: aws_sdk_elasticloadbalancingv2::Client::new(&conf),
            metrics: aws_sdk_cloudwatch::Client::new(&conf),
            subnets,
            network: OnceCell::new(),
        }
    }

    /// The VPC and subnets Skiff uses in this region (looked up once).
    pub(crate) async fn network(&self) -> Result<&Network> {
        self.network.get_or_try_init(|| crate::compute::discover_network(&self.ec2, &self.subnets)).await
    }

    /// `base` as this region names it: itself at home, `<base>-<region>` elsewhere
    /// (the load balancer of a service in another region, say).
    pub(crate) fn named(&self, base: &str) -> String {
        if self.home { base.to_owned() } else { format!("{base}-{}", self.name) }
    }
}

/// The regions a provider has clients for, its own first.
#[derive(Debug)]
pub(crate) struct Regions {
    home: Arc<Regional>,
    others: Mutex<BTreeMap<String, Arc<Regional>>>,
}

impl Regions {
    pub(crate) fn new(home: Regional) -> Self {
        Regions { home: Arc::new(home), others: Mutex::new(BTreeMap::new()) }
    }

    /// The provider's own region.
    pub(crate) fn home(&self) -> &Arc<Regional> {
        &self.home
    }

    /// Every region with clients so far, the provider's own first.
    pub(crate) fn known(&self) -> Vec<Arc<Regional>> {
        let others = self.others.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        std::iter::once(self.home.clone()).chain(others.values().cloned()).collect()
    }
}

impl AwsProvider {
    /// The region a resource named `name` is in, with its clients.
    pub(crate) fn at(&self, name: &str) -> Arc<Regional> {
        match crate::replicas::region_of(name) {
            Some(region) if region != self.region => self.in_region(&region),
            _ => self.regions.home().clone(),
        }
    }

    /// The clients of `region`, made on first use.
    pub(crate) fn in_region(&self, region: &str) -> Arc<Regional> {
        if region == self.region {
            return self.regions.home().clone();
        }
        let mut others = self.regions.others.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        others
            .entry(region.to_owned())
            .or_insert_with(|| Arc::new(Regional::new(&self.conf, region, false, Vec::new())))
            .clone()
    }

    /// Replicates each named secret to `region` (Secrets Manager keeps the replica's
    /// value in step with the primary's), unless it already is.
    pub(crate) async fn replicate_secrets(&self, names: &[&str], region: &str) -> Result<()> {
        for name in names {
            let id = crate::names::secret(name);
            let d = match self.c.secrets.describe_secret().secret_id(&id).send().await {
                Ok(d) => d,
                // A secret not there yet is the runner's to report (SECRET_MISSING).
                Err(e) if crate::code(&e) == Some("ResourceNotFoundException") => continue,
                Err(e) => return Err(fail(&format!("describe secret {id}"), e)),
            };
            if d.replication_status().iter().any(|r| r.region() == Some(region)) {
                continue;
            }
            self.c
                .secrets
                .replicate_secret_to_regions()
                .secret_id(&id)
                .add_replica_regions(ReplicaRegionType::builder().region(region).build())
                .send()
                .await
                .map_err(|e| fail(&format!("replicate secret {id} to {region}"), e))?;
        }
        Ok(())
    }
}
