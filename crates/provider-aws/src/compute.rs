//! Compute: a launch template and an auto scaling group per release, and the two
//! security groups of a service (load balancer: the listener port from anywhere;
//! instances: the service port from the load balancer only, never SSH).

use async_trait::async_trait;
use aws_sdk_autoscaling::types as asg;
use aws_sdk_ec2::types as ec2;
use base64::Engine as _;
use skiff_pluginapi::{Compute, GroupInfo, GroupSpec, InstanceInfo, InstanceState, ProviderError, Result};

use crate::names::{self, TAG_NAME, TAG_OPERATION, TAG_PORT, TAG_RELEASE, TAG_SERVICE};
use crate::regional::Regional;
use crate::{AwsProvider, Network, code, fail};

/// The default VPC and its subnets, or the configured subnets and their VPC.
pub(crate) async fn discover_network(c: &aws_sdk_ec2::Client, configured: &[String]) -> Result<Network> {
    let filter = |k: &str, v: &str| ec2::Filter::builder().name(k).values(v).build();
    let subnets = if configured.is_empty() {
        let vpcs = c
            .describe_vpcs()
            .filters(filter("is-default", "true"))
            .send()
            .await
            .map_err(|e| fail("find the default VPC", e))?;
        let vpc = vpcs.vpcs().first().and_then(|v| v.vpc_id()).ok_or_else(|| {
            ProviderError::new("this region has no default VPC; set SKIFF_AWS_SUBNETS to the subnets to use", false)
        })?;
        c.describe_subnets().filters(filter("vpc-id", vpc)).send().await.map_err(|e| fail("list subnets", e))?
    } else {
        c.describe_subnets()
            .set_subnet_ids(Some(configured.to_vec()))
            .send()
            .await
            .map_err(|e| fail("describe subnets", e))?
    };
    // One subnet per zone, in zone order, so groups spread evenly.
    let mut by_zone: Vec<(String, String, String)> = subnets
        .subnets()
        .iter()
        .filter_map(|s| Some((s.availability_zone()?.to_owned(), s.subnet_id()?.to_owned(), s.vpc_id()?.to_owned())))
        .collect();
    by_zone.sort();
    by_zone.dedup_by(|a, b| a.0 == b.0);
    let vpc = by_zone
        .first()
        .map(|s| s.2.clone())
        .ok_or_else(|| ProviderError::new("no subnets to place instances in; set SKIFF_AWS_SUBNETS", false))?;
    Ok(Network { vpc, subnets: by_zone.into_iter().map(|s| s.1).collect() })
}

fn ec2_tags(pairs: &[(&str, &str)]) -> Vec<ec2::Tag> {
    pairs.iter().map(|(k, v)| ec2::Tag::builder().key(*k).value(*v).build()).collect()
}

fn group_tags(spec: &GroupSpec) -> Vec<(&'static str, String)> {
    let mut tags = vec![
        (TAG_SERVICE, spec.service.clone()),
        (TAG_RELEASE, spec.release.clone()),
        (TAG_NAME, spec.name.clone()),
        ("Name", spec.name.clone()),
    ];
    if let Some(op) = &spec.operation {
        tags.push((TAG_OPERATION, op.clone()));
    }
    if let Some(port) = spec.launch.port {
        tags.push((TAG_PORT, port.to_string()));
    }
    tags
}

/// The launch template version every auto scaling group launches.
pub(crate) const LAUNCH_VERSION: &str = "$Default";

impl AwsProvider {
    /// The id of a security group by name in the service's VPC, creating it (tagged)
    /// with `ingress` when it does not exist yet.
    pub(crate) async fn ensure_security_group(
        &self,
        r: &Regional,
        name: &str,
        service: &str,
        ingress: ec2::IpPermission,
    ) -> Result<String> {
        let net = r.network().await?;
        let c = &r.ec2;
        let found = c
            .describe_security_groups()
            .filters(ec2::Filter::builder().name("group-name").values(name).build())
            .filters(ec2::Filter::builder().name("vpc-id").values(&net.vpc).build())
            .send()
            .await
            .map_err(|e| fail("describe security groups", e))?;
        let id = match found.security_groups().first().and_then(|g| g.group_id()) {
            Some(id) => id.to_owned(),
            None => {
                let made = c
                    .create_security_group()
                    .group_name(name)
                    .description(format!("Skiff: {name}"))
                    .vpc_id(&net.vpc)
                    .tag_specifications(
                        ec2::TagSpecification::builder()
                            .resource_type(ec2::ResourceType::SecurityGroup)
                            .set_tags(Some(ec2_tags(&[(TAG_SERVICE, service), ("Name", name)])))
                            .build(),
                    )
                    .send()
                    .await;
                match made {
                    Ok(m) => m.group_id().unwrap_or_default().to_owned(),
                    // Another process created it between our describe and create: the
                    // retry finds it (EC2's describe may lag its create briefly).
                    Err(e) if code(&e) == Some("InvalidGroup.Duplicate") => {
                        return Err(ProviderError::new(
                            format!("security group {name} is being created elsewhere; retry"),
                            true,
                        ));
                    }
                    Err(e) => return Err(fail(&format!("create security group {name}"), e)),
                }
            }
        };
        let r = c.authorize_security_group_ingress().group_id(&id).ip_permissions(ingress).send().await;
        match r {
            Ok(_) => Ok(id),
            Err(e) if code(&e) == Some("InvalidPermission.Duplicate") => Ok(id),
            Err(e) => Err(fail(&format!("allow ingress to {name}"), e)),
        }
    }

    /// The load balancer's security group in region `r`: the listener port, from
    /// anywhere. `service` is the load balancer's name (`<service>-<region>` elsewhere).
    pub(crate) async fn lb_security_group(&self, r: &Regional, service: &str, port: u16) -> Result<String> {
        let ingress = ec2::IpPermission::builder()
            .ip_protocol("tcp")
            .from_port(i32::from(port))
            .to_port(i32::from(port))
            .ip_ranges(ec2::IpRange::builder().cidr_ip("0.0.0.0/0").description("clients").build())
            .build();
        self.ensure_security_group(r, &names::lb_security_group(service), service, ingress).await
    }

    /// The instances' security group in region `r`: the service port, from that
    /// region's load balancer only.
    async fn instance_security_group(&self, r: &Regional, service: &str, port: Option<u16>) -> Result<String> {
        let port = port.unwrap_or(80);
        let lb = self.lb_security_group(r, &r.named(service), port).await?;
        let ingress = ec2::IpPermission::builder()
            .ip_protocol("tcp")
            .from_port(i32::from(port))
            .to_port(i32::from(port))
            .user_id_group_pairs(ec2::UserIdGroupPair::builder().group_id(lb).description("load balancer").build())
            .build();
        self.ensure_security_group(r, &names::instance_security_group(&r.named(service)), service, ingress).await
    }

    /// The launch template of a group: created once per release, never edited.
    async fn ensure_launch_template(&self, r: &Regional, spec: &GroupSpec, security_group: &str) -> Result<()> {
        let name = names::launch_template(&spec.name);
        let c = &r.ec2;
        if self.launch_template_exists(r, &name).await? {
            return Ok(());
        }
        let l = &spec.launch;
        let user_data = crate::userdata::script(spec, &self.region, &r.name, &self.settings.runner);
        let tags: Vec<ec2::Tag> =
            group_tags(spec).iter().map(|(k, v)| ec2::Tag::builder().key(*k).value(v).build()).collect();
        let mut data = ec2::RequestLaunchTemplateData::builder()
            .image_id(&self.settings.ami)
            .instance_type(ec2::InstanceType::from(l.instance_type.as_str()))
            .metadata_options(
                ec2::LaunchTemplateInstanceMetadataOptionsRequest::builder()
                    .http_tokens(ec2::LaunchTemplateHttpTokensState::Required)
                    .http_endpoint(ec2::LaunchTemplateInstanceMetadataEndpointState::Enabled)
                    .http_put_response_hop_limit(1)
                    .build(),
            )
            .security_group_ids(security_group)
            .user_data(base64::engine::general_purpose::STANDARD.encode(user_data))
            .tag_specifications(
                ec2::LaunchTemplateTagSpecificationRequest::builder()
                    .resource_type(ec2::ResourceType::Instance)
                    .set_tags(Some(tags.clone()))
                    .build(),
            );
        if let Some(role) = &l.role {
            data = data.iam_instance_profile(
                ec2::LaunchTemplateIamInstanceProfileSpecificationRequest::builder().name(role).build(),
            );
        }
        if l.spot {
            data = data.instance_market_options(
                ec2::LaunchTemplateInstanceMarketOptionsRequest::builder().market_type(ec2::MarketType::Spot).build(),
            );
        }
        let made = c
            .create_launch_template()
            .launch_template_name(&name)
            .client_token(names::short_hash(&format!("lt:{}", spec.name), 32))
            .launch_template_data(data.build())
            .tag_specifications(
                ec2::TagSpecification::builder()
                    .resource_type(ec2::ResourceType::LaunchTemplate)
                    .set_tags(Some(tags))
                    .build(),
            )
            .send()
            .await;
        match made {
            Ok(_) => Ok(()),
            Err(e) if code(&e).is_some_and(|c| c.contains("AlreadyExists")) => Ok(()),
            Err(e) => Err(fail(&format!("create launch template {name}"), e)),
        }
    }

    async fn launch_template_exists(&self, r: &Regional, name: &str) -> Result<bool> {
        match r.ec2.describe_launch_templates().launch_template_names(name).send().await {
            Ok(out) => Ok(!out.launch_templates().is_empty()),
            Err(e) if code(&e).is_some_and(|c| c.contains("NotFound")) => Ok(false),
            Err(e) => Err(fail(&format!("describe launch template {name}"), e)),
        }
    }

    /// The raw auto scaling group by name.
    pub(crate) async fn asg(&self, name: &str) -> Result<Option<asg::AutoScalingGroup>> {
        let out = self
            .at(name)
            .asg
            .describe_auto_scaling_groups()
            .auto_scaling_group_names(name)
            .send()
            .await
            .map_err(|e| fail(&format!("describe auto scaling group {name}"), e))?;
        // A group being deleted is gone as far as Skiff is concerned.
        Ok(out.auto_scaling_groups().iter().find(|g| g.status().is_none_or(|s| !s.starts_with("Delete"))).cloned())
    }

    async fn group_info(&self, r: &Regional, g: &asg::AutoScalingGroup) -> Result<GroupInfo> {
        let tag = |k: &str| g.tags().iter().find(|t| t.key() == Some(k)).and_then(|t| t.value()).map(str::to_owned);
        let port = tag(TAG_PORT).and_then(|p| p.parse::<u16>().ok());
        let ids: Vec<String> = g.instances().iter().filter_map(|i| i.instance_id().map(str::to_owned)).collect();
        let addresses = Self::private_addresses(r, &ids).await?;
        let instances = g
            .instances()
            .iter()
            .filter_map(|i| {
                let id = i.instance_id()?.to_owned();
                Some(InstanceInfo {
                    address: addresses.iter().find(|(a, _)| *a == id).map(|(_, ip)| ip.clone()).unwrap_or_default(),
                    state: lifecycle(i.lifecycle_state().map(asg::LifecycleState::as_str).unwrap_or_default()),
                    port,
                    provider_id: id.clone(),
                    zone: i.availability_zone().unwrap_or_default().to_owned(),
                    id,
                })
            })
            .collect();
        let name = g.auto_scaling_group_name().unwrap_or_default().to_owned();
        Ok(GroupInfo {
            service: tag(TAG_SERVICE).unwrap_or_default(),
            release: tag(TAG_RELEASE).unwrap_or_default(),
            desired: u32::try_from(g.desired_capacity().unwrap_or(0)).unwrap_or(0),
            instances,
            provider_id: g.auto_scaling_group_arn().map_or_else(|| name.clone(), str::to_owned),
            name: tag(TAG_NAME).unwrap_or(name),
        })
    }

    async fn private_addresses(r: &Regional, ids: &[String]) -> Result<Vec<(String, String)>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let out = r
            .ec2
            .describe_instances()
            .set_instance_ids(Some(ids.to_vec()))
            .send()
            .await
            .map_err(|e| fail("describe instances", e))?;
        Ok(out
            .reservations()
            .iter()
            .flat_map(|r| r.instances())
            .filter_map(|i| Some((i.instance_id()?.to_owned(), i.private_ip_address()?.to_owned())))
            .collect())
    }
}

fn lifecycle(state: &str) -> InstanceState {
    match state {
        "InService" => InstanceState::Running,
        s if s.starts_with("Pending") || s.starts_with("Warmed") || s == "Standby" => InstanceState::Pending,
        "Terminated" => InstanceState::Terminated,
        _ => InstanceState::Stopping,
    }
}

#[async_trait]
impl Compute for AwsProvider {
    async fn create_group(&self, spec: &GroupSpec) -> Result<GroupInfo> {
        let r = self.at(&spec.name);
        if let Some(g) = self.asg(&spec.name).await? {
            return self.group_info(&r, &g).await;
        }
        if !r.home {
            let mut secrets: Vec<&str> =
                spec.launch.secrets.values().filter_map(|s| names::parse_secret_ref(s)).map(|(n, _)| n).collect();
            secrets.sort_unstable();
            secrets.dedup();
            self.replicate_secrets(&secrets, &r.name).await?;
        }
        let sg = self.instance_security_group(&r, &spec.service, spec.launch.port).await?;
        self.ensure_launch_template(&r, spec, &sg).await?;
        let net = r.network().await?;
        let zones = spec.zones.len().clamp(1, net.subnets.len().max(1));
        let desired = i32::try_from(spec.desired).unwrap_or(i32::MAX);
        let tags: Vec<asg::Tag> = group_tags(spec)
            .into_iter()
            .map(|(k, v)| {
                asg::Tag::builder()
                    .key(k)
                    .value(v)
                    .propagate_at_launch(true)
                    .resource_id(&spec.name)
                    .resource_type("auto-scaling-group")
                    .build()
            })
            .collect();
        let made = r
            .asg
            .create_auto_scaling_group()
            .auto_scaling_group_name(&spec.name)
            .launch_template(
                asg::LaunchTemplateSpecification::builder()
                    .launch_template_name(names::launch_template(&spec.name))
                    // The default version: repairing a swapped template is moving that
                    // pointer back (versions are immutable), and moving it again undoes it.
                    .version(LAUNCH_VERSION)
                    .build(),
            )
            .min_size(desired)
            .max_size(desired)
            .desired_capacity(desired)
            .vpc_zone_identifier(net.subnets[..zones.min(net.subnets.len())].join(","))
            .set_tags(Some(tags))
            .send()
            .await;
        match made {
            Ok(_) => {}
            Err(e) if code(&e) == Some("AlreadyExists") => {}
            Err(e) => return Err(fail(&format!("create auto scaling group {}", spec.name), e)),
        }
        let g = self.asg(&spec.name).await?.ok_or_else(|| {
            ProviderError::new(format!("auto scaling group {} was created but cannot be described", spec.name), true)
        })?;
        self.group_info(&r, &g).await
    }

    async fn set_desired(&self, group: &str, desired: u32) -> Result<()> {
        let n = i32::try_from(desired).unwrap_or(i32::MAX);
        self.at(group)
            .asg
            .update_auto_scaling_group()
            .auto_scaling_group_name(group)
            .min_size(n)
            .max_size(n)
            .desired_capacity(n)
            .send()
            .await
            .map_err(|e| fail(&format!("scale {group} to {desired}"), e))?;
        Ok(())
    }

    async fn describe_group(&self, group: &str) -> Result<Option<GroupInfo>> {
        match self.asg(group).await? {
            Some(g) => Ok(Some(self.group_info(&self.at(group), &g).await?)),
            None => Ok(None),
        }
    }

    /// The service's groups in every region this provider has used so far (its own,
    /// and those other regions' groups were named in).
    async fn list_groups(&self, service: &str) -> Result<Vec<GroupInfo>> {
        let mut out = Vec::new();
        for r in self.regions.known() {
            let mut pages = r.asg.describe_auto_scaling_groups().into_paginator().send();
            while let Some(page) = pages.next().await {
                let page = page.map_err(|e| fail(&format!("list auto scaling groups in {}", r.name), e))?;
                for g in page.auto_scaling_groups() {
                    let mine = g.tags().iter().any(|t| t.key() == Some(TAG_SERVICE) && t.value() == Some(service));
                    if mine && g.status().is_none_or(|s| !s.starts_with("Delete")) {
                        out.push(self.group_info(&r, g).await?);
                    }
                }
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    async fn terminate_instance(&self, group: &str, instance: &str) -> Result<()> {
        self.at(group)
            .asg
            .terminate_instance_in_auto_scaling_group()
            .instance_id(instance)
            .should_decrement_desired_capacity(false)
            .send()
            .await
            .map_err(|e| fail(&format!("terminate {instance} of {group}"), e))?;
        Ok(())
    }

    async fn delete_group(&self, group: &str) -> Result<()> {
        let at = self.at(group);
        if self.asg(group).await?.is_some() {
            let r = at.asg.delete_auto_scaling_group().auto_scaling_group_name(group).force_delete(true).send().await;
            match r {
                Ok(_) => {}
                Err(e) if code(&e) == Some("ValidationError") => {}
                Err(e) => return Err(fail(&format!("delete auto scaling group {group}"), e)),
            }
        }
        let lt = names::launch_template(group);
        if self.launch_template_exists(&at, &lt).await? {
            match at.ec2.delete_launch_template().launch_template_name(&lt).send().await {
                Ok(_) => {}
                Err(e) if code(&e).is_some_and(|c| c.contains("NotFound")) => {}
                Err(e) => return Err(fail(&format!("delete launch template {lt}"), e)),
            }
        }
        Ok(())
    }
}
