//! Traffic: one internet-facing ALB per service whose HTTP listener forwards to the
//! release target groups with weights; health from `DescribeTargetHealth`; stats from
//! the ALB's CloudWatch metrics (`AWS/ApplicationELB`).

use std::collections::BTreeMap;

use async_trait::async_trait;
use aws_sdk_cloudwatch::primitives::DateTime;
use aws_sdk_cloudwatch::types::{Dimension, Statistic};
use aws_sdk_elasticloadbalancingv2::types as elb;
use skiff_pluginapi::{
    HealthState, LATENCY_BUCKETS_MS, LoadBalancerInfo, LoadBalancerSpec, ProviderError, Result, Target,
    TargetGroupSpec, TargetHealth, Traffic, TrafficStats, Weight,
};

use crate::names::{self, TAG_CREATED, TAG_NAME, TAG_SERVICE};
use crate::regional::Regional;
use crate::{AwsProvider, code, fail, now_ms};

fn tag(k: &str, v: &str) -> elb::Tag {
    elb::Tag::builder().key(k).value(v).build()
}

/// The metric dimension value of an ARN: what follows `loadbalancer/` or the resource type.
fn dimension_of(arn: &str, after: &str) -> Option<String> {
    arn.split_once(after).map(|(_, rest)| rest.to_owned())
}

impl AwsProvider {
    async fn load_balancer(&self, service: &str) -> Result<Option<elb::LoadBalancer>> {
        let name = names::load_balancer(service);
        match self.at(service).elb.describe_load_balancers().names(&name).send().await {
            Ok(out) => Ok(out.load_balancers().first().cloned()),
            Err(e) if code(&e) == Some("LoadBalancerNotFound") => Ok(None),
            Err(e) => Err(fail(&format!("describe load balancer {name}"), e)),
        }
    }

    pub(crate) async fn listener(&self, service: &str) -> Result<Option<elb::Listener>> {
        let Some(lb) = self.load_balancer(service).await? else { return Ok(None) };
        let out = self
            .at(service)
            .elb
            .describe_listeners()
            .load_balancer_arn(lb.load_balancer_arn().unwrap_or_default())
            .send()
            .await
            .map_err(|e| fail("describe listeners", e))?;
        Ok(out.listeners().first().cloned())
    }

    async fn target_group_raw(&self, name: &str) -> Result<Option<elb::TargetGroup>> {
        let aws = names::target_group(name);
        match self.at(name).elb.describe_target_groups().names(&aws).send().await {
            Ok(out) => Ok(out.target_groups().first().cloned()),
            Err(e) if code(&e) == Some("TargetGroupNotFound") => Ok(None),
            Err(e) => Err(fail(&format!("describe target group {name}"), e)),
        }
    }

    async fn target_group_arn(&self, name: &str) -> Result<String> {
        self.target_group_raw(name)
            .await?
            .and_then(|t| t.target_group_arn().map(str::to_owned))
            .ok_or_else(|| ProviderError::not_found(format!("target group {name}")))
    }

    /// Tags of ELB resources by ARN, all in region `r`.
    async fn elb_tags(r: &Regional, arns: &[String]) -> Result<BTreeMap<String, BTreeMap<String, String>>> {
        let mut out = BTreeMap::new();
        for chunk in arns.chunks(20) {
            let tags = r
                .elb
                .describe_tags()
                .set_resource_arns(Some(chunk.to_vec()))
                .send()
                .await
                .map_err(|e| fail("describe tags", e))?;
            for d in tags.tag_descriptions() {
                let map = d
                    .tags()
                    .iter()
                    .filter_map(|t| Some((t.key()?.to_owned(), t.value().unwrap_or_default().to_owned())))
                    .collect();
                out.insert(d.resource_arn().unwrap_or_default().to_owned(), map);
            }
        }
        Ok(out)
    }

    /// The listener's action when no release serves: a 503 of its own.
    fn not_yet() -> elb::Action {
        elb::Action::builder()
            .r#type(elb::ActionTypeEnum::FixedResponse)
            .fixed_response_config(
                elb::FixedResponseActionConfig::builder()
                    .status_code("503")
                    .content_type("text/plain")
                    .message_body("no release is serving yet")
                    .build(),
            )
            .build()
    }

    async fn serve_nothing(&self, service: &str) -> Result<()> {
        let Some(listener) = self.listener(service).await? else { return Ok(()) };
        self.at(service)
            .elb
            .modify_listener()
            .listener_arn(listener.listener_arn().unwrap_or_default())
            .default_actions(Self::not_yet())
            .send()
            .await
            .map_err(|e| fail(&format!("stop forwarding traffic of {service}"), e))?;
        Ok(())
    }

    fn lb_info(
        &self,
        service: &str,
        lb: &elb::LoadBalancer,
        port: Option<i32>,
        weights: Vec<Weight>,
    ) -> LoadBalancerInfo {
        let host = lb.dns_name().unwrap_or_default();
        LoadBalancerInfo {
            service: service.to_owned(),
            address: port.map_or_else(|| host.to_owned(), |p| format!("{host}:{p}")),
            weights,
            provider_id: lb.load_balancer_arn().unwrap_or_default().to_owned(),
        }
    }

    /// One CloudWatch metric of a target group, per minute since `start_ms`.
    async fn metric(
        r: &Regional,
        name: &str,
        dims: &[Dimension],
        start_ms: u64,
        stat: Option<Statistic>,
        extended: Option<&str>,
    ) -> Result<BTreeMap<i64, f64>> {
        let now = now_ms();
        // CloudWatch keeps minute data points for 15 days and answers 1,440 per call.
        let start = start_ms.max(now.saturating_sub(24 * 3_600_000)) / 60_000 * 60_000;
        let mut req = r
            .metrics
            .get_metric_statistics()
            .namespace("AWS/ApplicationELB")
            .metric_name(name)
            .set_dimensions(Some(dims.to_vec()))
            .start_time(DateTime::from_millis(start as i64))
            .end_time(DateTime::from_millis(now as i64 + 60_000))
            .period(60);
        if let Some(s) = stat.clone() {
            req = req.statistics(s);
        }
        if let Some(x) = extended {
            req = req.extended_statistics(x);
        }
        let out = req.send().await.map_err(|e| fail(&format!("read metric {name}"), e))?;
        Ok(out
            .datapoints()
            .iter()
            .filter_map(|d| {
                let at = d.timestamp()?.secs();
                // The extended statistic when asked for and present, else the plain one.
                let extended = extended.and_then(|x| d.extended_statistics().and_then(|m| m.get(x).copied()));
                let v = extended.or_else(|| d.sum().filter(|_| stat == Some(Statistic::Sum))).or(d.average())?;
                Some((at, v))
            })
            .collect())
    }
}

fn health_state(s: Option<&elb::TargetHealthStateEnum>) -> HealthState {
    match s.map(elb::TargetHealthStateEnum::as_str) {
        Some("healthy") => HealthState::Healthy,
        Some("draining") => HealthState::Draining,
        Some("initial") | None => HealthState::Initial,
        _ => HealthState::Unhealthy,
    }
}

/// Per-minute request counts placed in the bucket of that minute's p95 (its average
/// where CloudWatch has no p95): cumulative counters whose percentiles are upper
/// bounds of what CloudWatch reports.
fn stats_from(requests: &BTreeMap<i64, f64>, errors: &BTreeMap<i64, f64>, p95_s: &BTreeMap<i64, f64>) -> TrafficStats {
    let mut buckets = vec![0u64; LATENCY_BUCKETS_MS.len()];
    let mut total = 0u64;
    for (at, n) in requests {
        let n = n.max(0.0).round() as u64;
        total += n;
        // A minute without a latency figure counts as slow, never as fast.
        let ms = p95_s.get(at).map_or(u64::MAX, |s| (s * 1000.0).ceil().max(0.0) as u64);
        let i = LATENCY_BUCKETS_MS.iter().position(|b| ms <= *b).unwrap_or(LATENCY_BUCKETS_MS.len() - 1);
        buckets[i] += n;
    }
    let errors = errors.values().map(|n| n.max(0.0).round() as u64).sum::<u64>().min(total);
    TrafficStats { requests: total, errors, latency_buckets: buckets }
}

#[async_trait]
impl Traffic for AwsProvider {
    async fn ensure_load_balancer(&self, spec: &LoadBalancerSpec) -> Result<LoadBalancerInfo> {
        // Port 0 asks for any port: an ALB has an address of its own and listens on 80.
        let spec = &LoadBalancerSpec {
            listener_port: if spec.listener_port == 0 { 80 } else { spec.listener_port },
            ..spec.clone()
        };
        let lb = match self.load_balancer(&spec.service).await? {
            Some(lb) => lb,
            None => {
                let r = self.at(&spec.service);
                let sg = self.lb_security_group(&r, &spec.service, spec.listener_port).await?;
                let net = r.network().await?;
                let made = r
                    .elb
                    .create_load_balancer()
                    .name(names::load_balancer(&spec.service))
                    .r#type(elb::LoadBalancerTypeEnum::Application)
                    .scheme(elb::LoadBalancerSchemeEnum::InternetFacing)
                    .set_subnets(Some(net.subnets.clone()))
                    .security_groups(sg)
                    .tags(tag(TAG_SERVICE, &spec.service))
                    .send()
                    .await
                    .map_err(|e| fail(&format!("create the load balancer of {}", spec.service), e))?;
                made.load_balancers().first().cloned().ok_or_else(|| {
                    ProviderError::new(format!("the load balancer of {} was not returned", spec.service), true)
                })?
            }
        };
        let arn = lb.load_balancer_arn().unwrap_or_default().to_owned();
        if self.listener(&spec.service).await?.is_none() {
            // Until a release is ready the listener answers 503 itself.
            let not_yet = Self::not_yet();
            self.at(&spec.service)
                .elb
                .create_listener()
                .load_balancer_arn(&arn)
                .protocol(elb::ProtocolEnum::Http)
                .port(i32::from(spec.listener_port))
                .default_actions(not_yet)
                .send()
                .await
                .map_err(|e| fail(&format!("create the listener of {}", spec.service), e))?;
        }
        let weights = self.weights(&spec.service).await?;
        Ok(self.lb_info(&spec.service, &lb, Some(i32::from(spec.listener_port)), weights))
    }

    async fn ensure_target_group(&self, spec: &TargetGroupSpec) -> Result<()> {
        if self.target_group_raw(&spec.name).await?.is_some() {
            return Ok(());
        }
        let r = self.at(&spec.name);
        let net = r.network().await?;
        let h = &spec.health;
        let secs = |ms: u64, lo: u64, hi: u64| i32::try_from(ms.div_ceil(1000).clamp(lo, hi)).unwrap_or(5);
        let interval = secs(h.interval_ms, 5, 300);
        let made = r
            .elb
            .create_target_group()
            .name(names::target_group(&spec.name))
            .protocol(elb::ProtocolEnum::Http)
            .port(i32::from(spec.port))
            .vpc_id(&net.vpc)
            .target_type(match spec.target_type {
                skiff_pluginapi::TargetType::Instance => elb::TargetTypeEnum::Instance,
                skiff_pluginapi::TargetType::Ip => elb::TargetTypeEnum::Ip,
            })
            .health_check_path(&h.path)
            .health_check_interval_seconds(interval)
            .health_check_timeout_seconds(secs(h.timeout_ms, 2, 120).min(interval - 1).max(2))
            .healthy_threshold_count(i32::try_from(h.healthy_threshold.clamp(2, 10)).unwrap_or(2))
            .unhealthy_threshold_count(i32::try_from(h.unhealthy_threshold.clamp(2, 10)).unwrap_or(2))
            .tags(tag(TAG_SERVICE, &spec.service))
            .tags(tag(TAG_NAME, &spec.name))
            .tags(tag(TAG_CREATED, &now_ms().to_string()))
            .send()
            .await
            .map_err(|e| fail(&format!("create target group {}", spec.name), e))?;
        let arn = made.target_groups().first().and_then(|t| t.target_group_arn()).unwrap_or_default().to_owned();
        let delay = (spec.deregistration_delay_ms / 1000).min(3600).to_string();
        r.elb
            .modify_target_group_attributes()
            .target_group_arn(&arn)
            .attributes(
                elb::TargetGroupAttribute::builder().key("deregistration_delay.timeout_seconds").value(delay).build(),
            )
            .send()
            .await
            .map_err(|e| fail(&format!("set the drain time of {}", spec.name), e))?;
        Ok(())
    }

    async fn register(&self, target_group: &str, targets: &[Target]) -> Result<()> {
        if targets.is_empty() {
            return Ok(());
        }
        let arn = self.target_group_arn(target_group).await?;
        let descs: Vec<elb::TargetDescription> = targets
            .iter()
            .map(|t| elb::TargetDescription::builder().id(&t.id).port(i32::from(t.port)).build())
            .collect();
        self.at(target_group)
            .elb
            .register_targets()
            .target_group_arn(arn)
            .set_targets(Some(descs))
            .send()
            .await
            .map_err(|e| fail(&format!("register targets with {target_group}"), e))?;
        Ok(())
    }

    async fn deregister(&self, target_group: &str, target_ids: &[String]) -> Result<()> {
        if target_ids.is_empty() {
            return Ok(());
        }
        let arn = self.target_group_arn(target_group).await?;
        let descs: Vec<elb::TargetDescription> =
            target_ids.iter().map(|id| elb::TargetDescription::builder().id(id).build()).collect();
        self.at(target_group)
            .elb
            .deregister_targets()
            .target_group_arn(arn)
            .set_targets(Some(descs))
            .send()
            .await
            .map_err(|e| fail(&format!("deregister targets from {target_group}"), e))?;
        Ok(())
    }

    async fn set_weights(&self, service: &str, weights: &[Weight]) -> Result<()> {
        let listener = self.listener(service).await?.ok_or_else(|| {
            ProviderError::not_found(format!("the load balancer listener of {service} (run a deploy first)"))
        })?;
        let mut tuples = Vec::new();
        for w in weights {
            let arn = self.target_group_arn(&w.target_group).await?;
            tuples.push(
                elb::TargetGroupTuple::builder()
                    .target_group_arn(arn)
                    .weight(i32::try_from(w.weight.min(999)).unwrap_or(0))
                    .build(),
            );
        }
        let forward = elb::Action::builder()
            .r#type(elb::ActionTypeEnum::Forward)
            .forward_config(elb::ForwardActionConfig::builder().set_target_groups(Some(tuples)).build())
            .build();
        self.at(service)
            .elb
            .modify_listener()
            .listener_arn(listener.listener_arn().unwrap_or_default())
            .default_actions(forward)
            .send()
            .await
            .map_err(|e| fail(&format!("set the weights of {service}"), e))?;
        Ok(())
    }

    async fn weights(&self, service: &str) -> Result<Vec<Weight>> {
        let Some(listener) = self.listener(service).await? else { return Ok(Vec::new()) };
        let tuples: Vec<(String, u32)> = listener
            .default_actions()
            .iter()
            .filter(|a| a.r#type() == Some(&elb::ActionTypeEnum::Forward))
            .flat_map(|a| {
                let single = a.target_group_arn().map(|arn| (arn.to_owned(), 100));
                let weighted = a.forward_config().map(|f| {
                    f.target_groups()
                        .iter()
                        .filter_map(|t| {
                            Some((
                                t.target_group_arn()?.to_owned(),
                                u32::try_from(t.weight().unwrap_or(1)).unwrap_or(0),
                            ))
                        })
                        .collect::<Vec<_>>()
                });
                weighted.filter(|w| !w.is_empty()).unwrap_or_else(|| single.into_iter().collect())
            })
            .collect();
        let arns: Vec<String> = tuples.iter().map(|(a, _)| a.clone()).collect();
        let tags = Self::elb_tags(&self.at(service), &arns).await?;
        let mut out: Vec<Weight> = tuples
            .into_iter()
            .map(|(arn, weight)| Weight {
                target_group: tags.get(&arn).and_then(|t| t.get(TAG_NAME)).cloned().unwrap_or(arn),
                weight,
            })
            .collect();
        out.sort();
        Ok(out)
    }

    async fn target_health(&self, target_group: &str) -> Result<Vec<TargetHealth>> {
        let arn = self.target_group_arn(target_group).await?;
        let out = self
            .at(target_group)
            .elb
            .describe_target_health()
            .target_group_arn(arn)
            .send()
            .await
            .map_err(|e| fail(&format!("describe the health of {target_group}"), e))?;
        let mut health: Vec<TargetHealth> = out
            .target_health_descriptions()
            .iter()
            .filter_map(|d| {
                let h = d.target_health();
                let state = health_state(h.and_then(|h| h.state()));
                Some(TargetHealth {
                    id: d.target()?.id()?.to_owned(),
                    state,
                    reason: (state != HealthState::Healthy)
                        .then(|| {
                            h.and_then(|h| h.description().or(h.reason().map(elb::TargetHealthReasonEnum::as_str)))
                        })
                        .flatten()
                        .map(str::to_owned),
                })
            })
            .collect();
        health.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(health)
    }

    async fn stats(&self, target_group: &str) -> Result<TrafficStats> {
        let tg = self
            .target_group_raw(target_group)
            .await?
            .ok_or_else(|| ProviderError::not_found(format!("target group {target_group}")))?;
        let arn = tg.target_group_arn().unwrap_or_default().to_owned();
        let r = self.at(target_group);
        let tags = Self::elb_tags(&r, std::slice::from_ref(&arn)).await?.remove(&arn).unwrap_or_default();
        let created = tags
            .get(TAG_CREATED)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or_else(|| now_ms().saturating_sub(3_600_000));
        // The ALB publishes per-target-group metrics with both dimensions; CloudWatch
        // matches the exact set, so the service's load balancer is named too.
        // A target group in another region is tagged with the service; its load
        // balancer there is `<service>-<region>`.
        let lb_arn = match tags.get(TAG_SERVICE) {
            Some(service) => {
                self.load_balancer(&r.named(service)).await?.and_then(|lb| lb.load_balancer_arn().map(str::to_owned))
            }
            None => tg.load_balancer_arns().first().cloned(),
        };
        let mut dims = vec![
            Dimension::builder()
                .name("TargetGroup")
                .set_value(dimension_of(&arn, ":targetgroup/").map(|d| format!("targetgroup/{d}")))
                .build(),
        ];
        if let Some(lb) = lb_arn.as_deref().and_then(|a| dimension_of(a, ":loadbalancer/")) {
            dims.push(Dimension::builder().name("LoadBalancer").value(lb).build());
        }
        let requests = Self::metric(&r, "RequestCount", &dims, created, Some(Statistic::Sum), None).await?;
        let errors = Self::metric(&r, "HTTPCode_Target_5XX_Count", &dims, created, Some(Statistic::Sum), None).await?;
        let p95 = Self::metric(&r, "TargetResponseTime", &dims, created, Some(Statistic::Average), Some("p95")).await?;
        Ok(stats_from(&requests, &errors, &p95))
    }

    async fn delete_target_group(&self, target_group: &str) -> Result<()> {
        let Some(tg) = self.target_group_raw(target_group).await? else { return Ok(()) };
        let arn = tg.target_group_arn().unwrap_or_default().to_owned();
        let r = self.at(target_group);
        // A target group still named by the listener cannot be deleted: drop it there first.
        if let Some(service) =
            Self::elb_tags(&r, std::slice::from_ref(&arn)).await?.get(&arn).and_then(|t| t.get(TAG_SERVICE)).cloned()
        {
            let service = r.named(&service);
            let weights = self.weights(&service).await?;
            if weights.iter().any(|w| w.target_group == target_group) {
                let rest: Vec<Weight> = weights.into_iter().filter(|w| w.target_group != target_group).collect();
                if rest.is_empty() {
                    self.serve_nothing(&service).await?;
                } else {
                    self.set_weights(&service, &rest).await?;
                }
            }
        }
        match r.elb.delete_target_group().target_group_arn(&arn).send().await {
            Ok(_) => Ok(()),
            Err(e) if code(&e) == Some("TargetGroupNotFound") => Ok(()),
            Err(e) => Err(fail(&format!("delete target group {target_group}"), e)),
        }
    }

    async fn ensure_front(&self, spec: &skiff_pluginapi::FrontSpec) -> Result<skiff_pluginapi::FrontInfo> {
        crate::front::ensure(self, spec).await
    }
    async fn set_region_weights(&self, service: &str, weights: &[skiff_pluginapi::RegionWeight]) -> Result<()> {
        crate::front::set_weights(self, service, weights).await
    }
    async fn describe_front(&self, service: &str) -> Result<Option<skiff_pluginapi::FrontInfo>> {
        crate::front::describe(self, service).await
    }
    async fn describe_load_balancer(&self, service: &str) -> Result<Option<LoadBalancerInfo>> {
        let Some(lb) = self.load_balancer(service).await? else { return Ok(None) };
        let port = self.listener(service).await?.and_then(|l| l.port());
        let weights = self.weights(service).await?;
        Ok(Some(self.lb_info(service, &lb, port, weights)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minute_counts_land_in_the_bucket_of_their_p95() {
        let requests = BTreeMap::from([(0, 100.0), (60, 50.0)]);
        let errors = BTreeMap::from([(60, 5.0)]);
        let p95 = BTreeMap::from([(0, 0.040), (60, 0.400)]);
        let s = stats_from(&requests, &errors, &p95);
        assert_eq!((s.requests, s.errors), (150, 5));
        assert_eq!(s.percentile_ms(0.5), Some(50));
        assert_eq!(s.percentile_ms(0.95), Some(500));
    }

    #[test]
    fn a_minute_without_latency_counts_as_slow() {
        let s = stats_from(&BTreeMap::from([(0, 10.0)]), &BTreeMap::new(), &BTreeMap::new());
        assert_eq!(s.percentile_ms(0.5), Some(u64::MAX));
    }
}
