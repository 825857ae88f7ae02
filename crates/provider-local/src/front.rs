//! The global traffic front between regions (what DNS weights stand for on a cloud):
//! one more load balancer of the supervisor, `<service>-front` on a port of its own,
//! whose target groups are the regions (`<service>-front-<region>`), each with one
//! target, that region's load balancer. Health checks go through the regional load
//! balancer to its instances, so a region without a healthy instance gets no share.

use skiff_pluginapi::{
    FrontInfo, FrontSpec, HealthState, LoadBalancerSpec, ProviderError, RegionWeight, Result, Target, TargetGroupSpec,
    TargetType, Traffic, Weight,
};

/// The front's load balancer name.
pub fn front_name(service: &str) -> String {
    format!("{service}-front")
}

fn region_group(service: &str, region: &str) -> String {
    format!("{}-{region}", front_name(service))
}

fn to_regions(service: &str, weights: Vec<Weight>) -> Vec<RegionWeight> {
    let prefix = format!("{}-", front_name(service));
    let mut out: Vec<RegionWeight> = weights
        .into_iter()
        .filter_map(|w| {
            w.target_group.strip_prefix(&prefix).map(|r| RegionWeight { region: r.to_owned(), weight: w.weight })
        })
        .collect();
    out.sort();
    out
}

fn to_groups(service: &str, weights: &[RegionWeight]) -> Vec<Weight> {
    weights.iter().map(|w| Weight { target_group: region_group(service, &w.region), weight: w.weight }).collect()
}

pub(crate) async fn ensure(t: &dyn Traffic, spec: &FrontSpec) -> Result<FrontInfo> {
    let name = front_name(&spec.service);
    let fresh = t.describe_load_balancer(&name).await?.is_none();
    t.ensure_load_balancer(&LoadBalancerSpec { service: name.clone(), listener_port: 0 }).await?;
    for r in &spec.regions {
        let (host, port) =
            r.address.rsplit_once(':').and_then(|(h, p)| Some((h.to_owned(), p.parse::<u16>().ok()?))).ok_or_else(
                || ProviderError::new(format!("region {}: {} is not host:port", r.region, r.address), false),
            )?;
        let group = region_group(&spec.service, &r.region);
        t.ensure_target_group(&TargetGroupSpec {
            name: group.clone(),
            service: name.clone(),
            port,
            health: spec.health.clone(),
            deregistration_delay_ms: 0,
            target_type: TargetType::Ip,
        })
        .await?;
        t.register(&group, &[Target { id: r.region.clone(), address: host, port }]).await?;
    }
    if fresh || t.weights(&name).await?.is_empty() {
        t.set_weights(&name, &to_groups(&spec.service, &spec.initial)).await?;
    }
    describe(t, &spec.service).await?.ok_or_else(|| ProviderError::new(format!("{name} vanished"), true))
}

pub(crate) async fn set_weights(t: &dyn Traffic, service: &str, weights: &[RegionWeight]) -> Result<()> {
    t.set_weights(&front_name(service), &to_groups(service, weights)).await
}

pub(crate) async fn describe(t: &dyn Traffic, service: &str) -> Result<Option<FrontInfo>> {
    let Some(lb) = t.describe_load_balancer(&front_name(service)).await? else { return Ok(None) };
    let weights = to_regions(service, lb.weights);
    let mut healthy = Vec::new();
    for w in &weights {
        let health = t.target_health(&region_group(service, &w.region)).await.unwrap_or_default();
        if health.iter().any(|h| h.state == HealthState::Healthy) {
            healthy.push(w.region.clone());
        }
    }
    Ok(Some(FrontInfo { service: service.to_owned(), address: lb.address, weights, healthy }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn region_weights_map_to_the_fronts_target_groups_and_back() {
        let w = vec![
            RegionWeight { region: "us-east-1".into(), weight: 90 },
            RegionWeight { region: "us-west-2".into(), weight: 10 },
        ];
        let groups = to_groups("web", &w);
        assert_eq!(groups[1].target_group, "web-front-us-west-2");
        let mut foreign = groups.clone();
        foreign.push(Weight { target_group: "other".into(), weight: 5 });
        assert_eq!(to_regions("web", foreign), w);
    }
}
