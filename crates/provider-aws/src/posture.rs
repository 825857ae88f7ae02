//! Security posture on AWS ([`Posture`]): what a security reviewer checks on the
//! resources Skiff made for a service, against what Skiff writes —
//! - the instance role: inline policies besides Skiff's own, attached managed policies;
//! - the load balancer's and instances' security groups: any ingress besides the
//!   listener port from anywhere (LB) and the service port from the LB (instances);
//! - the release's launch template: its default version (what the auto scaling group
//!   launches) against the data Skiff renders for the group recorded in the ledger
//!   (user data, image, type, instance profile, IMDSv2, security groups), and the
//!   group's pointer to the default version (a version nobody launches is not drift:
//!   moving the default to it is);
//! - the listener: rules besides the default action;
//! - the state bucket: default SSE-KMS encryption, the public access block, the bucket
//!   policy (TLS-only, or none on a plain-http emulator), Skiff's tags.
//!
//! Every finding with a `fix` is reversible: a removed policy or rule is recorded in
//! the fix's `undo`, and a launch template is repaired by moving its default version
//! back to Skiff's (versions are immutable; undo moves the pointer again).

use async_trait::async_trait;
use aws_sdk_ec2::types as ec2;
use aws_sdk_elasticloadbalancingv2::types as elb;
use aws_sdk_s3::types as s3;
use base64::Engine as _;
use serde_json::{Value, json};
use skiff_pluginapi::{Fix, GroupSpec, Posture, PostureScope, ProviderError, Result, SettingDrift, Severity};

use crate::names;
use crate::{AwsProvider, code, fail};

/// The tags Skiff puts on its state bucket.
pub(crate) const BUCKET_TAGS: &[(&str, &str)] = &[("skiff:managed-by", "skiff"), ("skiff:layout", "v1")];

fn drift(
    path: &str,
    resource: &str,
    desired: Value,
    actual: Value,
    severity: Severity,
    summary: String,
) -> SettingDrift {
    SettingDrift {
        path: path.to_owned(),
        resource: resource.to_owned(),
        desired,
        actual,
        severity,
        summary,
        fix: None,
        repair: None,
    }
}

fn with_fix(mut d: SettingDrift, description: String, apply: Value, undo: Value) -> SettingDrift {
    d.fix = Some(Fix { description, apply, undo });
    d
}

/// Whether an IAM policy document allows a wildcard action on every resource.
fn grants_everything(doc: &Value) -> bool {
    let statements = match &doc["Statement"] {
        Value::Array(a) => a.clone(),
        s @ Value::Object(_) => vec![s.clone()],
        _ => Vec::new(),
    };
    let any = |v: &Value, f: &dyn Fn(&str) -> bool| match v {
        Value::String(s) => f(s),
        Value::Array(a) => a.iter().filter_map(Value::as_str).any(f),
        _ => false,
    };
    statements.iter().any(|s| {
        s["Effect"] == "Allow"
            && any(&s["Action"], &|a| a == "*" || a.ends_with(":*"))
            && any(&s["Resource"], &|r| r == "*")
    })
}

/// One ingress grant: a protocol, a port range and one source.
fn grants(p: &ec2::IpPermission) -> Vec<(ec2::IpPermission, String)> {
    let base = || {
        ec2::IpPermission::builder()
            .set_ip_protocol(p.ip_protocol().map(str::to_owned))
            .set_from_port(p.from_port())
            .set_to_port(p.to_port())
    };
    let mut out = Vec::new();
    for r in p.ip_ranges() {
        let cidr = r.cidr_ip().unwrap_or_default().to_owned();
        out.push((base().ip_ranges(ec2::IpRange::builder().cidr_ip(&cidr).build()).build(), cidr));
    }
    for r in p.ipv6_ranges() {
        let cidr = r.cidr_ipv6().unwrap_or_default().to_owned();
        out.push((base().ipv6_ranges(ec2::Ipv6Range::builder().cidr_ipv6(&cidr).build()).build(), cidr));
    }
    for g in p.user_id_group_pairs() {
        let id = g.group_id().unwrap_or_default().to_owned();
        out.push((base().user_id_group_pairs(ec2::UserIdGroupPair::builder().group_id(&id).build()).build(), id));
    }
    out
}

/// A grant as JSON, for findings and fixes.
fn grant_json(g: &ec2::IpPermission, source: &str) -> Value {
    json!({
        "protocol": g.ip_protocol(),
        "from_port": g.from_port(),
        "to_port": g.to_port(),
        "source": source,
    })
}

fn grant_from_json(v: &Value) -> Result<ec2::IpPermission> {
    let source = v["source"].as_str().unwrap_or_default();
    let port = |k: &str| v[k].as_i64().and_then(|p| i32::try_from(p).ok());
    let b = ec2::IpPermission::builder()
        .set_ip_protocol(v["protocol"].as_str().map(str::to_owned))
        .set_from_port(port("from_port"))
        .set_to_port(port("to_port"));
    Ok(if source.starts_with("sg-") {
        b.user_id_group_pairs(ec2::UserIdGroupPair::builder().group_id(source).build()).build()
    } else if source.contains(':') {
        b.ipv6_ranges(ec2::Ipv6Range::builder().cidr_ipv6(source).build()).build()
    } else if !source.is_empty() {
        b.ip_ranges(ec2::IpRange::builder().cidr_ip(source).build()).build()
    } else {
        return Err(ProviderError::new(format!("an ingress fix without a source: {v}"), false));
    })
}

/// Whether a grant opens port 22 (or every port) to the internet.
fn opens_ssh_to_world(g: &ec2::IpPermission, source: &str) -> bool {
    let world = source == "0.0.0.0/0" || source == "::/0";
    let all = g.ip_protocol() == Some("-1");
    let covers = g.from_port().unwrap_or(0) <= 22 && g.to_port().unwrap_or(65535) >= 22;
    world && (all || covers)
}

/// The launch settings a reviewer compares, of one template version.
fn launch_facts(d: &ec2::ResponseLaunchTemplateData) -> Value {
    let user_data = d
        .user_data()
        .and_then(|u| base64::engine::general_purpose::STANDARD.decode(u).ok())
        .map(|b| String::from_utf8_lossy(&b).into_owned());
    let mut sgs: Vec<&str> = d.security_group_ids().iter().map(String::as_str).collect();
    sgs.sort_unstable();
    json!({
        "image_id": d.image_id(),
        "instance_type": d.instance_type().map(|t| t.as_str().to_owned()),
        "instance_profile": d.iam_instance_profile().and_then(|p| p.name()),
        "http_tokens": d.metadata_options().and_then(|m| m.http_tokens()).map(|t| t.as_str().to_owned()),
        "security_groups": sgs,
        "user_data_sha256": user_data.as_deref().map(sha256),
    })
}

fn sha256(text: &str) -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(text.as_bytes()))
}

/// Only the fields of `actual` that differ from `desired`, and their severity.
fn changed(desired: &Value, actual: &Value) -> (Value, Value, Severity) {
    let (mut want, mut have) = (serde_json::Map::new(), serde_json::Map::new());
    let mut severity = Severity::Low;
    for (k, v) in desired.as_object().into_iter().flatten() {
        if actual.get(k) != Some(v) {
            want.insert(k.clone(), v.clone());
            have.insert(k.clone(), actual.get(k).cloned().unwrap_or(Value::Null));
            severity = severity.max(match k.as_str() {
                "instance_type" => Severity::Medium,
                "security_groups" => Severity::High,
                // Code run at boot as root, the machine image, the instance's powers,
                // IMDSv1: each is the instance itself.
                _ => Severity::Critical,
            });
        }
    }
    (Value::Object(want), Value::Object(have), severity)
}

impl AwsProvider {
    async fn role_drift(&self, role: &str) -> Result<Vec<SettingDrift>> {
        let iam = &self.c.iam;
        let mut out = Vec::new();
        let inline = match iam.list_role_policies().role_name(role).send().await {
            Ok(o) => o.policy_names().to_vec(),
            Err(e) if code(&e) == Some("NoSuchEntity") => return Ok(out),
            Err(e) => return Err(fail(&format!("list the inline policies of {role}"), e)),
        };
        for name in inline.iter().filter(|n| n.as_str() != crate::identity::POLICY) {
            let text = iam
                .get_role_policy()
                .role_name(role)
                .policy_name(name)
                .send()
                .await
                .map_err(|e| fail(&format!("read policy {name} of {role}"), e))?
                .policy_document
                .clone();
            let doc: Value = serde_json::from_str(&crate::policy::url_decode(&text)).unwrap_or(Value::String(text));
            let severity = if grants_everything(&doc) { Severity::Critical } else { Severity::High };
            let d = drift(
                "identity.inline_policies",
                role,
                json!([crate::identity::POLICY]),
                json!({"name": name, "document": doc}),
                severity,
                format!("role {role} has an inline policy `{name}` Skiff did not write"),
            );
            out.push(with_fix(
                d,
                format!("delete inline policy {name} from role {role}"),
                json!({"kind": "delete_role_policy", "role": role, "name": name}),
                json!({"kind": "put_role_policy", "role": role, "name": name, "document": doc}),
            ));
        }
        let attached = iam
            .list_attached_role_policies()
            .role_name(role)
            .send()
            .await
            .map_err(|e| fail(&format!("list the policies attached to {role}"), e))?;
        for p in attached.attached_policies() {
            let arn = p.policy_arn().unwrap_or_default();
            let broad = ["AdministratorAccess", "PowerUserAccess", "IAMFullAccess"].iter().any(|n| arn.ends_with(n))
                || self.managed_policy(arn).await?.is_some_and(|d| grants_everything(&d));
            let d = drift(
                "identity.attached_policies",
                role,
                json!([]),
                json!(arn),
                if broad { Severity::Critical } else { Severity::High },
                format!("managed policy {arn} is attached to role {role}; Skiff attaches none"),
            );
            out.push(with_fix(
                d,
                format!("detach {arn} from role {role}"),
                json!({"kind": "detach_role_policy", "role": role, "arn": arn}),
                json!({"kind": "attach_role_policy", "role": role, "arn": arn}),
            ));
        }
        Ok(out)
    }

    /// The default version's document of a managed policy.
    async fn managed_policy(&self, arn: &str) -> Result<Option<Value>> {
        let iam = &self.c.iam;
        let version = match iam.get_policy().policy_arn(arn).send().await {
            Ok(o) => o.policy().and_then(|p| p.default_version_id().map(str::to_owned)),
            Err(e) if code(&e) == Some("NoSuchEntity") => None,
            Err(e) => return Err(fail(&format!("read policy {arn}"), e)),
        };
        let Some(version) = version else { return Ok(None) };
        let doc = iam
            .get_policy_version()
            .policy_arn(arn)
            .version_id(version)
            .send()
            .await
            .map_err(|e| fail(&format!("read the document of {arn}"), e))?
            .policy_version()
            .and_then(|v| v.document().map(str::to_owned));
        Ok(doc.and_then(|d| serde_json::from_str(&crate::policy::url_decode(&d)).ok()))
    }

    async fn security_group(&self, name: &str) -> Result<Option<ec2::SecurityGroup>> {
        let net = self.network().await?;
        let found = self
            .c
            .ec2
            .describe_security_groups()
            .filters(ec2::Filter::builder().name("group-name").values(name).build())
            .filters(ec2::Filter::builder().name("vpc-id").values(&net.vpc).build())
            .send()
            .await
            .map_err(|e| fail("describe security groups", e))?;
        Ok(found.security_groups().first().cloned())
    }

    /// Ingress of `sg_name` besides `port` from `source` (a CIDR, or the group named).
    async fn ingress_drift(&self, sg_name: &str, port: u16, source: &str) -> Result<Vec<SettingDrift>> {
        let Some(sg) = self.security_group(sg_name).await? else { return Ok(Vec::new()) };
        let id = sg.group_id().unwrap_or_default().to_owned();
        let wanted = match source.strip_prefix("group:") {
            Some(name) => self.security_group(name).await?.and_then(|g| g.group_id().map(str::to_owned)),
            None => Some(source.to_owned()),
        };
        let mut out = Vec::new();
        for p in sg.ip_permissions() {
            for (g, src) in grants(p) {
                let ours = g.ip_protocol() == Some("tcp")
                    && g.from_port() == Some(i32::from(port))
                    && g.to_port() == Some(i32::from(port))
                    && wanted.as_deref() == Some(src.as_str());
                if ours {
                    continue;
                }
                let severity = if opens_ssh_to_world(&g, &src) {
                    Severity::Critical
                } else if src == "0.0.0.0/0" || src == "::/0" {
                    Severity::High
                } else {
                    Severity::Medium
                };
                let rule = grant_json(&g, &src);
                let d = drift(
                    "network.ingress",
                    &id,
                    json!({"protocol": "tcp", "from_port": port, "to_port": port, "source": wanted}),
                    rule.clone(),
                    severity,
                    format!(
                        "security group {sg_name} allows {} ports {}-{} from {src}, which Skiff did not open",
                        g.ip_protocol().unwrap_or("?"),
                        g.from_port().unwrap_or(-1),
                        g.to_port().unwrap_or(-1)
                    ),
                );
                out.push(with_fix(
                    d,
                    format!("revoke that ingress from {sg_name}"),
                    json!({"kind": "revoke_ingress", "group_id": id, "rule": rule}),
                    json!({"kind": "authorize_ingress", "group_id": id, "rule": rule}),
                ));
            }
        }
        Ok(out)
    }

    /// `$Latest` and `$Default` of the group's launch template against what Skiff renders.
    async fn launch_drift(&self, group: &GroupSpec) -> Result<Vec<SettingDrift>> {
        let name = names::launch_template(&group.name);
        let versions = match self.c.ec2.describe_launch_template_versions().launch_template_name(&name).send().await {
            Ok(o) => o.launch_template_versions().to_vec(),
            Err(e) if code(&e).is_some_and(|c| c.contains("NotFound")) => return Ok(Vec::new()),
            Err(e) => return Err(fail(&format!("describe the versions of launch template {name}"), e)),
        };
        let sg = self.security_group(&names::instance_security_group(&group.service)).await?;
        let user_data = crate::userdata::script(group, &self.region, &self.at(&group.name).name, &self.settings.runner);
        let mut sgs: Vec<String> = sg.and_then(|g| g.group_id().map(str::to_owned)).into_iter().collect();
        sgs.sort_unstable();
        let desired = json!({
            "image_id": self.settings.ami,
            "instance_type": group.launch.instance_type,
            "instance_profile": group.launch.role,
            "http_tokens": "required",
            "security_groups": sgs,
            "user_data_sha256": sha256(&user_data),
        });
        let facts: Vec<(i64, bool, Value)> = versions
            .iter()
            .filter_map(|v| {
                Some((v.version_number()?, v.default_version() == Some(true), launch_facts(v.launch_template_data()?)))
            })
            .collect();
        let ours = facts.iter().filter(|f| f.2 == desired).map(|f| f.0).min();
        let mut out = Vec::new();
        // The version the group launches.
        if let Some((v, _, actual)) = facts.iter().find(|f| f.1)
            && *actual != desired
        {
            let (want, have, severity) = changed(&desired, actual);
            let d = drift(
                "launch.template",
                &name,
                want,
                json!({"version": v, "settings": have}),
                severity,
                format!(
                    "the default version of launch template {name} (version {v}), which new instances boot from, is not what Skiff launches"
                ),
            );
            out.push(match ours {
                Some(o) => with_fix(
                    d,
                    format!("make version {o} (Skiff's) the default version of {name} again"),
                    json!({"kind": "launch_template_default", "template": name, "version": o}),
                    json!({"kind": "launch_template_default", "template": name, "version": v}),
                ),
                None => SettingDrift {
                    repair: Some(format!(
                        "no version of {name} is what Skiff launches: redeploy (`skiff deploy -f skiff.yaml --yes`)"
                    )),
                    ..d
                },
            });
        }
        // Which version the group launches.
        if let Some(g) = self.asg(&group.name).await? {
            let pointer = g.launch_template().and_then(|t| t.version()).unwrap_or_default().to_owned();
            if pointer != crate::compute::LAUNCH_VERSION {
                let d = drift(
                    "launch.group_version",
                    &group.name,
                    json!(crate::compute::LAUNCH_VERSION),
                    json!(pointer),
                    Severity::High,
                    format!("auto scaling group {} launches version {pointer} of {name}, not its default", group.name),
                );
                out.push(with_fix(
                    d,
                    format!("make {} launch the default version of {name} again", group.name),
                    json!({"kind": "group_launch_version", "group": group.name, "template": name, "version": crate::compute::LAUNCH_VERSION}),
                    json!({"kind": "group_launch_version", "group": group.name, "template": name, "version": pointer}),
                ));
            }
        }
        Ok(out)
    }

    /// Listener rules besides the default action.
    async fn listener_drift(&self, service: &str) -> Result<Vec<SettingDrift>> {
        let Some(listener) = self.listener(service).await? else { return Ok(Vec::new()) };
        let arn = listener.listener_arn().unwrap_or_default().to_owned();
        let rules = self
            .c
            .elb
            .describe_rules()
            .listener_arn(&arn)
            .send()
            .await
            .map_err(|e| fail("describe listener rules", e))?;
        let mut out = Vec::new();
        for r in rules.rules().iter().filter(|r| r.is_default() != Some(true)) {
            let rule_arn = r.rule_arn().unwrap_or_default();
            let paths: Vec<&str> = r
                .conditions()
                .iter()
                .flat_map(|c| {
                    c.path_pattern_config().map(|p| p.values()).unwrap_or_default().iter().map(String::as_str)
                })
                .collect();
            let hosts: Vec<&str> = r
                .conditions()
                .iter()
                .flat_map(|c| c.host_header_config().map(|h| h.values()).unwrap_or_default().iter().map(String::as_str))
                .collect();
            let targets: Vec<&str> = r
                .actions()
                .iter()
                .filter(|a| a.r#type() == Some(&elb::ActionTypeEnum::Forward))
                .filter_map(|a| a.target_group_arn())
                .collect();
            let simple = r.conditions().len() == usize::from(!paths.is_empty()) + usize::from(!hosts.is_empty())
                && r.actions().len() == 1
                && targets.len() == 1;
            let actual = json!({
                "rule": rule_arn, "priority": r.priority(), "path_patterns": paths, "host_headers": hosts,
                "forward_to": targets,
            });
            let d = drift(
                "traffic.listener_rules",
                &arn,
                json!([]),
                actual.clone(),
                Severity::High,
                format!(
                    "the listener of {service} has a rule Skiff did not write (priority {}): requests matching it bypass the release weights",
                    r.priority().unwrap_or("?")
                ),
            );
            out.push(if simple {
                with_fix(
                    d,
                    format!("delete listener rule {}", r.priority().unwrap_or("?")),
                    json!({"kind": "delete_rule", "rule": rule_arn}),
                    json!({"kind": "create_rule", "listener": arn, "rule": actual}),
                )
            } else {
                SettingDrift {
                    repair: Some(format!(
                        "review it, then `aws elbv2 delete-rule --rule-arn {rule_arn}` (its conditions cannot be recorded for an undo)"
                    )),
                    ..d
                }
            });
        }
        Ok(out)
    }

    /// The state bucket's encryption, public access block, policy and tags.
    async fn bucket_drift(&self) -> Result<Vec<SettingDrift>> {
        let s3c = &self.c.s3;
        let bucket = self.bucket.clone();
        let mut out = Vec::new();
        // Encryption: SSE-KMS with Skiff's key.
        let key = self.kms_key().await?;
        let actual = match s3c.get_bucket_encryption().bucket(&bucket).send().await {
            Ok(o) => o
                .server_side_encryption_configuration()
                .and_then(|c| c.rules().first())
                .and_then(|r| r.apply_server_side_encryption_by_default())
                .map(|d| json!({"algorithm": d.sse_algorithm().as_str(), "kms_key": d.kms_master_key_id()})),
            Err(e) if code(&e) == Some("ServerSideEncryptionConfigurationNotFoundError") => None,
            Err(e) => return Err(fail("read the bucket's encryption", e)),
        };
        let kms = actual.as_ref().is_some_and(|a| a["algorithm"] == "aws:kms");
        if !kms {
            let d = drift(
                "state.encryption",
                &bucket,
                json!({"algorithm": "aws:kms", "kms_key": key}),
                actual.clone().unwrap_or(Value::Null),
                Severity::High,
                format!("the state bucket {bucket} is no longer encrypted with Skiff's KMS key by default"),
            );
            out.push(with_fix(
                d,
                format!("set SSE-KMS with Skiff's key as {bucket}'s default encryption"),
                json!({"kind": "bucket_encryption", "setting": {"algorithm": "aws:kms", "kms_key": key}}),
                json!({"kind": "bucket_encryption", "setting": actual}),
            ));
        }
        // The public access block: all four on.
        let block = match s3c.get_public_access_block().bucket(&bucket).send().await {
            Ok(o) => o.public_access_block_configuration().map(|c| {
                json!({
                    "block_public_acls": c.block_public_acls().unwrap_or(false),
                    "ignore_public_acls": c.ignore_public_acls().unwrap_or(false),
                    "block_public_policy": c.block_public_policy().unwrap_or(false),
                    "restrict_public_buckets": c.restrict_public_buckets().unwrap_or(false),
                })
            }),
            Err(e) if code(&e) == Some("NoSuchPublicAccessBlockConfiguration") => None,
            Err(e) => return Err(fail("read the bucket's public access block", e)),
        };
        let all = json!({"block_public_acls": true, "ignore_public_acls": true, "block_public_policy": true, "restrict_public_buckets": true});
        if block.as_ref() != Some(&all) {
            let d = drift(
                "state.public_access_block",
                &bucket,
                all.clone(),
                block.clone().unwrap_or(Value::Null),
                Severity::Critical,
                format!("the public access block of the state bucket {bucket} was loosened"),
            );
            out.push(with_fix(
                d,
                format!("block all public access to {bucket} again"),
                json!({"kind": "public_access_block", "setting": all}),
                json!({"kind": "public_access_block", "setting": block}),
            ));
        }
        // The policy: Skiff's TLS-only one (none on a plain-http endpoint).
        let partition = self.scope().await?.partition.clone();
        let desired_policy = (!self.plain_http).then(|| crate::bucket::tls_only_policy(&partition, &bucket));
        let actual_policy = match s3c.get_bucket_policy().bucket(&bucket).send().await {
            Ok(o) => o.policy().map(|p| serde_json::from_str::<Value>(p).unwrap_or(Value::String(p.to_owned()))),
            Err(e) if code(&e) == Some("NoSuchBucketPolicy") => None,
            Err(e) => return Err(fail("read the bucket policy", e)),
        };
        if actual_policy != desired_policy {
            let public = actual_policy.as_ref().is_some_and(|p| {
                let st = match &p["Statement"] {
                    Value::Array(a) => a.clone(),
                    s => vec![s.clone()],
                };
                st.iter().any(|s| s["Effect"] == "Allow" && (s["Principal"] == "*" || s["Principal"]["AWS"] == "*"))
            });
            let d = drift(
                "state.policy",
                &bucket,
                desired_policy.clone().unwrap_or(Value::Null),
                actual_policy.clone().unwrap_or(Value::Null),
                if public { Severity::Critical } else { Severity::High },
                if public {
                    format!("the policy of the state bucket {bucket} allows anyone")
                } else {
                    format!("the policy of the state bucket {bucket} is not the one Skiff wrote")
                },
            );
            out.push(with_fix(
                d,
                format!("put Skiff's policy back on {bucket}"),
                json!({"kind": "bucket_policy", "policy": desired_policy}),
                json!({"kind": "bucket_policy", "policy": actual_policy}),
            ));
        }
        // Skiff's tags.
        let tags: Vec<(String, String)> = match s3c.get_bucket_tagging().bucket(&bucket).send().await {
            Ok(o) => o.tag_set().iter().map(|t| (t.key().to_owned(), t.value().to_owned())).collect(),
            Err(e) if code(&e) == Some("NoSuchTagSet") => Vec::new(),
            Err(e) => return Err(fail("read the bucket's tags", e)),
        };
        let missing: Vec<&(&str, &str)> =
            BUCKET_TAGS.iter().filter(|(k, v)| !tags.iter().any(|(tk, tv)| tk == k && tv == v)).collect();
        if !missing.is_empty() {
            let mut merged = tags.clone();
            merged.retain(|(k, _)| !BUCKET_TAGS.iter().any(|(bk, _)| bk == k));
            merged.extend(BUCKET_TAGS.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
            let d = drift(
                "state.tags",
                &bucket,
                json!(BUCKET_TAGS.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>()),
                json!(tags.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>()),
                Severity::Low,
                format!("the state bucket {bucket} lost Skiff's tags (cost and ownership reports miss it)"),
            );
            out.push(with_fix(
                d,
                format!("tag {bucket} as Skiff's again"),
                json!({"kind": "bucket_tags", "tags": merged}),
                json!({"kind": "bucket_tags", "tags": tags}),
            ));
        }
        Ok(out)
    }

    async fn apply_encryption(&self, setting: &Value) -> Result<()> {
        let s3c = &self.c.s3;
        let Some(algorithm) = setting["algorithm"].as_str() else {
            return s3c
                .delete_bucket_encryption()
                .bucket(&self.bucket)
                .send()
                .await
                .map(drop)
                .map_err(|e| fail("remove the bucket's default encryption", e));
        };
        let mut by_default =
            s3::ServerSideEncryptionByDefault::builder().sse_algorithm(s3::ServerSideEncryption::from(algorithm));
        if let Some(k) = setting["kms_key"].as_str() {
            by_default = by_default.kms_master_key_id(k);
        }
        let rule = s3::ServerSideEncryptionRule::builder()
            .apply_server_side_encryption_by_default(
                by_default.build().map_err(|e| ProviderError::new(e.to_string(), false))?,
            )
            .bucket_key_enabled(algorithm == "aws:kms")
            .build();
        let conf = s3::ServerSideEncryptionConfiguration::builder()
            .rules(rule)
            .build()
            .map_err(|e| ProviderError::new(e.to_string(), false))?;
        s3c.put_bucket_encryption()
            .bucket(&self.bucket)
            .server_side_encryption_configuration(conf)
            .send()
            .await
            .map(drop)
            .map_err(|e| fail("set the bucket's default encryption", e))
    }

    async fn apply_block(&self, setting: &Value) -> Result<()> {
        let s3c = &self.c.s3;
        if setting.is_null() {
            return s3c
                .delete_public_access_block()
                .bucket(&self.bucket)
                .send()
                .await
                .map(drop)
                .map_err(|e| fail("remove the public access block", e));
        }
        let on = |k: &str| setting[k].as_bool().unwrap_or(false);
        s3c.put_public_access_block()
            .bucket(&self.bucket)
            .public_access_block_configuration(
                s3::PublicAccessBlockConfiguration::builder()
                    .block_public_acls(on("block_public_acls"))
                    .ignore_public_acls(on("ignore_public_acls"))
                    .block_public_policy(on("block_public_policy"))
                    .restrict_public_buckets(on("restrict_public_buckets"))
                    .build(),
            )
            .send()
            .await
            .map(drop)
            .map_err(|e| fail("set the public access block", e))
    }

    async fn apply_policy(&self, policy: &Value) -> Result<()> {
        let s3c = &self.c.s3;
        if policy.is_null() {
            return s3c
                .delete_bucket_policy()
                .bucket(&self.bucket)
                .send()
                .await
                .map(drop)
                .map_err(|e| fail("remove the bucket policy", e));
        }
        let text = match policy {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        s3c.put_bucket_policy()
            .bucket(&self.bucket)
            .policy(text)
            .send()
            .await
            .map(drop)
            .map_err(|e| fail("put the bucket policy", e))
    }

    async fn apply_tags(&self, tags: &Value) -> Result<()> {
        let s3c = &self.c.s3;
        let pairs: Vec<(String, String)> = serde_json::from_value(tags.clone()).unwrap_or_default();
        if pairs.is_empty() {
            return s3c
                .delete_bucket_tagging()
                .bucket(&self.bucket)
                .send()
                .await
                .map(drop)
                .map_err(|e| fail("remove the bucket's tags", e));
        }
        let set = pairs
            .iter()
            .map(|(k, v)| s3::Tag::builder().key(k).value(v).build())
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| ProviderError::new(e.to_string(), false))?;
        let tagging = s3::Tagging::builder()
            .set_tag_set(Some(set))
            .build()
            .map_err(|e| ProviderError::new(e.to_string(), false))?;
        s3c.put_bucket_tagging()
            .bucket(&self.bucket)
            .tagging(tagging)
            .send()
            .await
            .map(drop)
            .map_err(|e| fail("tag the bucket", e))
    }

    async fn apply_rule(&self, listener: &str, rule: &Value) -> Result<()> {
        let strings = |k: &str| -> Vec<String> {
            rule[k].as_array().into_iter().flatten().filter_map(|v| v.as_str().map(str::to_owned)).collect()
        };
        let mut conditions = Vec::new();
        if !strings("path_patterns").is_empty() {
            conditions.push(
                elb::RuleCondition::builder()
                    .field("path-pattern")
                    .path_pattern_config(
                        elb::PathPatternConditionConfig::builder().set_values(Some(strings("path_patterns"))).build(),
                    )
                    .build(),
            );
        }
        if !strings("host_headers").is_empty() {
            conditions.push(
                elb::RuleCondition::builder()
                    .field("host-header")
                    .host_header_config(
                        elb::HostHeaderConditionConfig::builder().set_values(Some(strings("host_headers"))).build(),
                    )
                    .build(),
            );
        }
        let target = strings("forward_to").into_iter().next().unwrap_or_default();
        let priority = rule["priority"].as_str().and_then(|p| p.parse::<i32>().ok()).unwrap_or(1);
        self.c
            .elb
            .create_rule()
            .listener_arn(listener)
            .priority(priority)
            .set_conditions(Some(conditions))
            .actions(elb::Action::builder().r#type(elb::ActionTypeEnum::Forward).target_group_arn(target).build())
            .send()
            .await
            .map(drop)
            .map_err(|e| fail("re-create the listener rule", e))
    }

    async fn set_default_version(&self, template: &str, version: i64) -> Result<()> {
        self.c
            .ec2
            .modify_launch_template()
            .launch_template_name(template)
            .default_version(version.to_string())
            .send()
            .await
            .map(drop)
            .map_err(|e| fail(&format!("make version {version} the default of {template}"), e))
    }

    async fn set_group_version(&self, group: &str, template: &str, version: &str) -> Result<()> {
        self.c
            .asg
            .update_auto_scaling_group()
            .auto_scaling_group_name(group)
            .launch_template(
                aws_sdk_autoscaling::types::LaunchTemplateSpecification::builder()
                    .launch_template_name(template)
                    .version(version)
                    .build(),
            )
            .send()
            .await
            .map(drop)
            .map_err(|e| fail(&format!("point {group} at version {version} of {template}"), e))
    }
}

fn str_of<'a>(action: &'a Value, k: &str) -> Result<&'a str> {
    action[k].as_str().ok_or_else(|| ProviderError::new(format!("a posture fix without `{k}`: {action}"), false))
}

#[async_trait]
impl Posture for AwsProvider {
    async fn drift(&self, scope: &PostureScope) -> Result<Vec<SettingDrift>> {
        let mut out = Vec::new();
        if let Some(role) = &scope.role {
            out.extend(self.role_drift(role).await?);
        }
        let port = scope.group.as_ref().and_then(|g| g.launch.port).or(scope.listener_port);
        if let Some(port) = scope.listener_port {
            out.extend(self.ingress_drift(&names::lb_security_group(&scope.service), port, "0.0.0.0/0").await?);
        }
        if let Some(port) = port {
            let lb = format!("group:{}", names::lb_security_group(&scope.service));
            out.extend(self.ingress_drift(&names::instance_security_group(&scope.service), port, &lb).await?);
        }
        if let Some(g) = &scope.group {
            out.extend(self.launch_drift(g).await?);
        }
        out.extend(self.listener_drift(&scope.service).await?);
        if crate::split_bucket(&scope.state).is_ok_and(|(b, _)| b == self.bucket) {
            out.extend(self.bucket_drift().await?);
        }
        Ok(out)
    }

    async fn fix(&self, action: &Value) -> Result<()> {
        let iam = &self.c.iam;
        match str_of(action, "kind")? {
            "delete_role_policy" => {
                let (role, name) = (str_of(action, "role")?, str_of(action, "name")?);
                match iam.delete_role_policy().role_name(role).policy_name(name).send().await {
                    Ok(_) => Ok(()),
                    Err(e) if code(&e) == Some("NoSuchEntity") => Ok(()),
                    Err(e) => Err(fail(&format!("delete policy {name} of {role}"), e)),
                }
            }
            "put_role_policy" => {
                let (role, name) = (str_of(action, "role")?, str_of(action, "name")?);
                let doc = match &action["document"] {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                iam.put_role_policy()
                    .role_name(role)
                    .policy_name(name)
                    .policy_document(doc)
                    .send()
                    .await
                    .map(drop)
                    .map_err(|e| fail(&format!("put policy {name} on {role}"), e))
            }
            "detach_role_policy" => {
                let (role, arn) = (str_of(action, "role")?, str_of(action, "arn")?);
                match iam.detach_role_policy().role_name(role).policy_arn(arn).send().await {
                    Ok(_) => Ok(()),
                    Err(e) if code(&e) == Some("NoSuchEntity") => Ok(()),
                    Err(e) => Err(fail(&format!("detach {arn} from {role}"), e)),
                }
            }
            "attach_role_policy" => {
                let (role, arn) = (str_of(action, "role")?, str_of(action, "arn")?);
                iam.attach_role_policy()
                    .role_name(role)
                    .policy_arn(arn)
                    .send()
                    .await
                    .map(drop)
                    .map_err(|e| fail(&format!("attach {arn} to {role}"), e))
            }
            "revoke_ingress" => {
                let id = str_of(action, "group_id")?;
                let rule = grant_from_json(&action["rule"])?;
                match self.c.ec2.revoke_security_group_ingress().group_id(id).ip_permissions(rule).send().await {
                    Ok(_) => Ok(()),
                    Err(e) if code(&e) == Some("InvalidPermission.NotFound") => Ok(()),
                    Err(e) => Err(fail(&format!("revoke ingress from {id}"), e)),
                }
            }
            "authorize_ingress" => {
                let id = str_of(action, "group_id")?;
                let rule = grant_from_json(&action["rule"])?;
                match self.c.ec2.authorize_security_group_ingress().group_id(id).ip_permissions(rule).send().await {
                    Ok(_) => Ok(()),
                    Err(e) if code(&e) == Some("InvalidPermission.Duplicate") => Ok(()),
                    Err(e) => Err(fail(&format!("authorize ingress on {id}"), e)),
                }
            }
            "launch_template_default" => {
                let template = str_of(action, "template")?;
                let version = action["version"].as_i64().unwrap_or(1);
                self.set_default_version(template, version).await
            }
            "group_launch_version" => {
                self.set_group_version(
                    str_of(action, "group")?,
                    str_of(action, "template")?,
                    str_of(action, "version")?,
                )
                .await
            }
            "delete_rule" => {
                let rule = str_of(action, "rule")?;
                match self.c.elb.delete_rule().rule_arn(rule).send().await {
                    Ok(_) => Ok(()),
                    Err(e) if code(&e) == Some("RuleNotFound") => Ok(()),
                    Err(e) => Err(fail("delete the listener rule", e)),
                }
            }
            "create_rule" => self.apply_rule(str_of(action, "listener")?, &action["rule"]).await,
            "bucket_encryption" => self.apply_encryption(&action["setting"]).await,
            "public_access_block" => self.apply_block(&action["setting"]).await,
            "bucket_policy" => self.apply_policy(&action["policy"]).await,
            "bucket_tags" => self.apply_tags(&action["tags"]).await,
            other => Err(ProviderError::new(format!("the AWS provider has no posture fix `{other}`"), false)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn star_on_star_is_everything_and_a_scoped_grant_is_not() {
        let star = json!({"Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]});
        assert!(grants_everything(&star));
        let scoped =
            json!({"Statement": {"Effect": "Allow", "Action": ["s3:GetObject"], "Resource": "arn:aws:s3:::b/*"}});
        assert!(!grants_everything(&scoped));
    }

    #[test]
    fn ssh_from_anywhere_is_told_apart() {
        let p = |from, to| ec2::IpPermission::builder().ip_protocol("tcp").from_port(from).to_port(to).build();
        assert!(opens_ssh_to_world(&p(22, 22), "0.0.0.0/0"));
        assert!(opens_ssh_to_world(&p(0, 65535), "::/0"));
        assert!(!opens_ssh_to_world(&p(22, 22), "10.0.0.0/8"));
        assert!(!opens_ssh_to_world(&p(443, 443), "0.0.0.0/0"));
        let rule = grant_json(&p(22, 22), "0.0.0.0/0");
        let back = grant_from_json(&rule).unwrap();
        assert_eq!(grants(&back)[0].1, "0.0.0.0/0");
    }

    #[test]
    fn a_swapped_user_data_is_critical() {
        let d = json!({"user_data_sha256": "a", "instance_type": "t4g.small"});
        let a = json!({"user_data_sha256": "b", "instance_type": "t4g.small"});
        let (want, have, sev) = changed(&d, &a);
        assert_eq!(sev, Severity::Critical);
        assert_eq!(want, json!({"user_data_sha256": "a"}));
        assert_eq!(have, json!({"user_data_sha256": "b"}));
    }
}
