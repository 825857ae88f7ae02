//! The AWS provider against moto's server on 127.0.0.1: the conformance suite, one
//! resource per double create, the launch template's contents, the generated IAM
//! policies, and the state bucket's settings. moto reports every target healthy and
//! every database available at once, and carries no traffic: health-gated behaviour is
//! proven on the local provider; here the API calls and their idempotency are.

use std::collections::BTreeMap;
use std::time::Duration;

use base64::Engine as _;
use skiff_pluginapi::conformance::{Fixture, run};
use skiff_pluginapi::{
    DatabaseSpec, GroupSpec, HealthCheck, LaunchConfig, LoadBalancerSpec, Permission, Provider, RoleSpec, RunnerConfig,
    TargetGroupSpec,
};
use skiff_provider_aws::{AwsProvider, AwsSettings, RunnerArtifact, ensure_state_bucket};
use skiff_testkit::Moto;
use skiff_testkit::postgres::Postgres;

/// A default moto AMI (moto cannot resolve `resolve:ssm:` image ids).
const AMI: &str = "ami-12c6146b";

async fn sdk(moto: &Moto) -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(moto.endpoint())
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_s3::config::Credentials::new("testing", "testing", None, None, "moto"))
        .load()
        .await
}

async fn provider(moto: &Moto, conf: &aws_config::SdkConfig) -> AwsProvider {
    let _ = moto;
    let settings = AwsSettings {
        region: Some("us-east-1".into()),
        state: "s3://skiff-state/prod".into(),
        ami: AMI.into(),
        subnets: Vec::new(),
        runner: RunnerArtifact { url: "s3://skiff-state/prod/tools/skiff-runner".into(), sha256: Some("0".repeat(64)) },
        database_tunnels: Default::default(),
        rds_ca: None,
    };
    AwsProvider::with_config(settings, conf).expect("provider")
}

fn group(service: &str, release: &str, desired: u32) -> GroupSpec {
    GroupSpec {
        name: format!("{service}-{release}"),
        service: service.into(),
        release: release.into(),
        desired,
        zones: vec!["us-east-1a".into(), "us-east-1b".into()],
        launch: LaunchConfig {
            instance_type: "t3.micro".into(),
            spot: false,
            command: vec!["./app".into()],
            env: BTreeMap::new(),
            secrets: BTreeMap::from([("DATABASE_URL".into(), "secret://db/url".into())]),
            port: Some(8080),
            health: Some(HealthCheck {
                path: "/healthz".into(),
                interval_ms: 5_000,
                timeout_ms: 2_000,
                healthy_threshold: 2,
                unhealthy_threshold: 2,
            }),
            drain_timeout_ms: 5_000,
            role: None,
            log_group: Some(format!("/skiff/production/{service}")),
            runner: RunnerConfig {
                bucket: "s3://skiff-state/prod".into(),
                public_key_pem: "-----BEGIN PUBLIC KEY-----\nMFkwEw\n-----END PUBLIC KEY-----\n".into(),
                heartbeat_ms: 2_000,
            },
        },
        operation: Some("op-1".into()),
        trace: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_aws_provider_conforms_on_moto() {
    let moto = Moto::start();
    let conf = sdk(&moto).await;
    let p = provider(&moto, &conf).await;
    let fixture = Fixture {
        group: group("conform", "2026.11.23.1", 2),
        listener_port: 80,
        // moto's load balancer carries no traffic and publishes no metrics.
        probe_traffic: false,
        database: Some(DatabaseSpec {
            id: "conform-db".into(),
            name: "app".into(),
            engine: "postgres".into(),
            version: "16".into(),
            instance_class: "db.t4g.small".into(),
            storage_gib: 20,
            multi_az: false,
            backup_retention_days: 7,
        }),
        settle: Duration::from_secs(30),
    };
    run(&p, &fixture).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_create_twice_makes_one_resource() {
    let moto = Moto::start();
    let conf = sdk(&moto).await;
    let p = provider(&moto, &conf).await;
    let g = group("web", "2026.11.23.1", 2);
    for _ in 0..2 {
        p.compute().create_group(&g).await.expect("create_group");
        p.traffic().ensure_load_balancer(&LoadBalancerSpec { service: "web".into(), listener_port: 80 }).await.unwrap();
        p.traffic()
            .ensure_target_group(&TargetGroupSpec {
                name: g.name.clone(),
                service: "web".into(),
                port: 8080,
                health: g.launch.health.clone().unwrap(),
                deregistration_delay_ms: 5_000,
                target_type: skiff_pluginapi::TargetType::Instance,
            })
            .await
            .unwrap();
        p.identity().ensure_role(&role("web")).await.unwrap();
        p.logs().ensure_log_group("/skiff/production/web", 14).await.unwrap();
        p.secrets().put("secret://db/url", "postgres://x").await.unwrap();
    }
    let asg = aws_sdk_autoscaling::Client::new(&conf);
    let groups = asg.describe_auto_scaling_groups().send().await.unwrap();
    assert_eq!(groups.auto_scaling_groups().len(), 1, "one auto scaling group");
    let g0 = &groups.auto_scaling_groups()[0];
    assert_eq!(g0.instances().len(), 2, "desired instances");
    let tags: BTreeMap<&str, &str> = g0.tags().iter().filter_map(|t| Some((t.key()?, t.value()?))).collect();
    assert_eq!(tags.get("skiff:service"), Some(&"web"));
    assert_eq!(tags.get("skiff:release"), Some(&"2026.11.23.1"));
    assert_eq!(tags.get("skiff:operation"), Some(&"op-1"));

    let ec2 = aws_sdk_ec2::Client::new(&conf);
    assert_eq!(ec2.describe_launch_templates().send().await.unwrap().launch_templates().len(), 1, "one template");
    let sgs = ec2.describe_security_groups().send().await.unwrap();
    let skiff_sgs =
        sgs.security_groups().iter().filter(|s| s.group_name().is_some_and(|n| n.starts_with("skiff-"))).count();
    assert_eq!(skiff_sgs, 2, "one security group for the load balancer, one for instances");

    let elb = aws_sdk_elasticloadbalancingv2::Client::new(&conf);
    assert_eq!(elb.describe_load_balancers().send().await.unwrap().load_balancers().len(), 1, "one load balancer");
    assert_eq!(elb.describe_target_groups().send().await.unwrap().target_groups().len(), 1, "one target group");

    let iam = aws_sdk_iam::Client::new(&conf);
    assert_eq!(iam.list_roles().send().await.unwrap().roles().len(), 1, "one role");
    assert_eq!(iam.list_instance_profiles().send().await.unwrap().instance_profiles().len(), 1, "one profile");

    let logs = aws_sdk_cloudwatchlogs::Client::new(&conf);
    let lg = logs.describe_log_groups().send().await.unwrap();
    assert_eq!(lg.log_groups().len(), 1, "one log group");
    assert_eq!(lg.log_groups()[0].retention_in_days(), Some(14));

    let sm = aws_sdk_secretsmanager::Client::new(&conf);
    assert_eq!(sm.list_secrets().send().await.unwrap().secret_list().len(), 1, "one secret");
}

fn role(service: &str) -> RoleSpec {
    let p = |a: &str, r: &str| Permission { action: a.into(), resource: r.into() };
    RoleSpec {
        name: format!("skiff-{service}"),
        service: service.into(),
        permissions: vec![
            p("logs:write", &format!("/skiff/production/{service}")),
            p("secrets:read", "db"),
            p("state:read", "blobs/sha256/*"),
            p("state:read", &format!("releases/{service}/*")),
            p("state:write", &format!("members/{service}/*")),
        ],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_launch_template_requires_imdsv2_has_no_ssh_and_starts_the_runner() {
    let moto = Moto::start();
    let conf = sdk(&moto).await;
    let p = provider(&moto, &conf).await;
    let mut g = group("api", "2026.11.23.7", 1);
    p.identity().ensure_role(&role("api")).await.unwrap();
    g.launch.role = Some("skiff-api".into());
    p.compute().create_group(&g).await.unwrap();

    let ec2 = aws_sdk_ec2::Client::new(&conf);
    let versions =
        ec2.describe_launch_template_versions().launch_template_name("skiff-api-2026.11.23.7").send().await.unwrap();
    let data = versions.launch_template_versions()[0].launch_template_data().unwrap();
    assert_eq!(data.image_id(), Some(AMI));
    assert_eq!(data.instance_type().map(|t| t.as_str()), Some("t3.micro"));
    assert_eq!(
        data.metadata_options().and_then(|m| m.http_tokens()).map(|t| t.as_str()),
        Some("required"),
        "IMDSv2 only"
    );
    assert_eq!(data.key_name(), None, "no SSH key");
    assert_eq!(data.iam_instance_profile().and_then(|i| i.name()), Some("skiff-api"));
    let script = String::from_utf8(
        base64::engine::general_purpose::STANDARD.decode(data.user_data().expect("user data")).unwrap(),
    )
    .unwrap();
    for want in [
        "'SKIFF_STATE=s3://skiff-state/prod'",
        "'SKIFF_SERVICE=api'",
        "'SKIFF_RELEASE=2026.11.23.7'",
        "SKIFF_INSTANCE=$INSTANCE",
        "aws s3 cp --only-show-errors 's3://skiff-state/prod/tools/skiff-runner'",
        "systemctl enable --now skiff-runner.service",
    ] {
        assert!(script.contains(want), "user data lacks {want}:\n{script}");
    }

    // No security group Skiff made lets anyone reach port 22.
    let sgs = ec2.describe_security_groups().send().await.unwrap();
    for sg in sgs.security_groups().iter().filter(|s| s.group_name().is_some_and(|n| n.starts_with("skiff-"))) {
        for perm in sg.ip_permissions() {
            let (from, to) = (perm.from_port().unwrap_or(0), perm.to_port().unwrap_or(65535));
            assert!(!(from..=to).contains(&22), "{} opens port 22", sg.group_name().unwrap());
        }
    }
    // The instances' group admits the service port from the load balancer's group only.
    let inst = sgs.security_groups().iter().find(|s| s.group_name() == Some("skiff-api-instances")).unwrap();
    let perm = &inst.ip_permissions()[0];
    assert_eq!(perm.from_port(), Some(8080));
    assert!(perm.ip_ranges().is_empty(), "no CIDR ingress to instances");
    assert_eq!(perm.user_id_group_pairs().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generated_iam_policies_name_no_wildcard_action() {
    let moto = Moto::start();
    let conf = sdk(&moto).await;
    let p = provider(&moto, &conf).await;
    p.identity().ensure_role(&role("api")).await.unwrap();
    let iam = aws_sdk_iam::Client::new(&conf);
    let doc = iam.get_role_policy().role_name("skiff-api").policy_name("skiff").send().await.unwrap();
    let v = serde_json::to_value(skiff_provider_aws::PolicyDocument::from_iam(doc.policy_document()).unwrap()).unwrap();
    let scope = p.scope().await.unwrap().clone();
    let mut docs = vec![v, serde_json::to_value(skiff_provider_aws::skiff_policy(&scope)).unwrap()];
    for doc in &mut docs {
        for st in doc["Statement"].as_array().unwrap() {
            for a in st["Action"].as_array().unwrap() {
                let a = a.as_str().unwrap();
                assert!(!a.contains('*'), "{} allows {a}", st["Sid"]);
            }
        }
    }
    // The role reaches only its own prefixes of the state bucket.
    let resources = docs[0]["Statement"].to_string();
    assert!(resources.contains("arn:aws:s3:::skiff-state/prod/v1/releases/api/*"), "{resources}");
    assert!(resources.contains("arn:aws:s3:::skiff-state/prod/v1/members/api/*"), "{resources}");
    assert!(!resources.contains("\"arn:aws:s3:::skiff-state/*\""), "{resources}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_state_bucket_is_versioned_encrypted_private_and_conditional() {
    let moto = Moto::start();
    let conf = sdk(&moto).await;
    let p = provider(&moto, &conf).await;
    let first = ensure_state_bucket(&p).await.expect("bucket");
    let again = ensure_state_bucket(&p).await.expect("bucket again");
    assert!(first.created && !again.created, "created once");
    assert_eq!(first.kms_key, again.kms_key, "one KMS key");
    for r in [&first, &again] {
        assert!(r.versioning && r.public_access_blocked && r.conditional_writes, "{r:?}");
        assert!(!r.tls_only, "no TLS-only policy on moto's plain-http endpoint: it could not be reached");
    }
    let s3 = aws_sdk_s3::Client::from_conf(aws_sdk_s3::config::Builder::from(&conf).force_path_style(true).build());
    let enc = s3.get_bucket_encryption().bucket("skiff-state").send().await.unwrap();
    let rule = &enc.server_side_encryption_configuration().unwrap().rules()[0];
    let default = rule.apply_server_side_encryption_by_default().unwrap();
    assert_eq!(default.sse_algorithm().as_str(), "aws:kms");
    assert_eq!(default.kms_master_key_id(), Some(first.kms_key.as_str()));
    let kms = aws_sdk_kms::Client::new(&conf);
    let aliases = kms.list_aliases().send().await.unwrap();
    assert_eq!(aliases.aliases().iter().filter(|a| a.alias_name() == Some("alias/skiff")).count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn target_group_stats_come_from_the_alb_metrics_in_cloudwatch() {
    use aws_sdk_cloudwatch::types::{Dimension, MetricDatum, StandardUnit};

    let moto = Moto::start();
    let conf = sdk(&moto).await;
    let p = provider(&moto, &conf).await;
    let g = group("web", "2026.11.23.1", 1);
    p.traffic().ensure_load_balancer(&LoadBalancerSpec { service: "web".into(), listener_port: 80 }).await.unwrap();
    let tg = TargetGroupSpec {
        name: g.name.clone(),
        service: "web".into(),
        port: 8080,
        health: g.launch.health.clone().unwrap(),
        deregistration_delay_ms: 5_000,
        target_type: skiff_pluginapi::TargetType::Instance,
    };
    p.traffic().ensure_target_group(&tg).await.unwrap();
    p.traffic()
        .set_weights("web", &[skiff_pluginapi::Weight { target_group: g.name.clone(), weight: 100 }])
        .await
        .unwrap();
    assert_eq!(p.traffic().stats(&g.name).await.unwrap().requests, 0, "no traffic yet");

    // What the ALB would publish for the target group: requests, 5xx and response times.
    let elb = aws_sdk_elasticloadbalancingv2::Client::new(&conf);
    let t = elb.describe_target_groups().send().await.unwrap().target_groups()[0].clone();
    let arn = t.target_group_arn().unwrap();
    let tg_dim = &arn[arn.find("targetgroup/").unwrap()..];
    let lbs = elb.describe_load_balancers().send().await.unwrap();
    let lb_arn = lbs.load_balancers()[0].load_balancer_arn().unwrap();
    let lb_dim = &lb_arn[lb_arn.find("loadbalancer/").unwrap() + "loadbalancer/".len()..];
    let dims = vec![
        Dimension::builder().name("TargetGroup").value(tg_dim).build(),
        Dimension::builder().name("LoadBalancer").value(lb_dim).build(),
    ];
    let datum = |name: &str, value: f64, unit: StandardUnit| {
        MetricDatum::builder().metric_name(name).set_dimensions(Some(dims.clone())).value(value).unit(unit).build()
    };
    let cw = aws_sdk_cloudwatch::Client::new(&conf);
    cw.put_metric_data()
        .namespace("AWS/ApplicationELB")
        .metric_data(datum("RequestCount", 120.0, StandardUnit::Count))
        .metric_data(datum("HTTPCode_Target_5XX_Count", 3.0, StandardUnit::Count))
        .metric_data(datum("TargetResponseTime", 0.080, StandardUnit::Seconds))
        .send()
        .await
        .unwrap();
    let stats = p.traffic().stats(&g.name).await.unwrap();
    assert_eq!((stats.requests, stats.errors), (120, 3), "{stats:?}");
    assert_eq!(stats.percentile_ms(0.95), Some(100), "80 ms lands in the 100 ms bucket: {stats:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_read_back_per_instance_stream_oldest_first() {
    use aws_sdk_cloudwatchlogs::types::InputLogEvent;

    let moto = Moto::start();
    let conf = sdk(&moto).await;
    let p = provider(&moto, &conf).await;
    p.logs().ensure_log_group("/skiff/production/web", 7).await.unwrap();
    let logs = aws_sdk_cloudwatchlogs::Client::new(&conf);
    let now = i64::try_from(skiff_clock::Clock::now_ms(&skiff_clock::SystemClock)).unwrap();
    for (stream, lines) in [("i-aaa", ["a1", "a2"]), ("i-bbb", ["b1", "b2"])] {
        logs.create_log_stream().log_group_name("/skiff/production/web").log_stream_name(stream).send().await.unwrap();
        let offset = if stream == "i-aaa" { 0 } else { 1 };
        let events: Vec<InputLogEvent> = lines
            .iter()
            .enumerate()
            .map(|(i, l)| {
                InputLogEvent::builder().timestamp(now + (i as i64) * 10 + offset).message(*l).build().unwrap()
            })
            .collect();
        logs.put_log_events()
            .log_group_name("/skiff/production/web")
            .log_stream_name(stream)
            .set_log_events(Some(events))
            .send()
            .await
            .unwrap();
    }
    let q = |instance: Option<&str>, limit: Option<usize>| skiff_pluginapi::LogQuery {
        service: "web".into(),
        instance: instance.map(str::to_owned),
        since_ms: None,
        limit,
    };
    let all: Vec<String> = p.logs().read(&q(None, None)).await.unwrap().into_iter().map(|l| l.line).collect();
    assert_eq!(all, ["a1", "b1", "a2", "b2"]);
    let one = p.logs().read(&q(Some("i-bbb"), None)).await.unwrap();
    assert!(one.iter().all(|l| l.instance == "i-bbb") && one.len() == 2, "{one:?}");
    let newest: Vec<String> = p.logs().read(&q(None, Some(1))).await.unwrap().into_iter().map(|l| l.line).collect();
    assert_eq!(newest, ["b2"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backups_restore_into_new_private_instances_with_the_sources_settings() {
    use skiff_pluginapi::{Database as _, RestoreTarget, Secrets as _};
    let moto = Moto::start();
    let conf = sdk(&moto).await;
    let p = provider(&moto, &conf).await;
    let spec = |id: &str| DatabaseSpec {
        id: id.into(),
        name: "orders".into(),
        engine: "postgres".into(),
        version: "16".into(),
        instance_class: "db.t4g.small".into(),
        storage_gib: 20,
        multi_az: false,
        backup_retention_days: 7,
    };
    p.create(&spec("orders-db")).await.unwrap();
    let b = p.backup("orders-db", "op-backup-1").await.unwrap();
    assert_eq!(b.restore_point, "op-backup-1");
    assert!(b.provider_ref.contains("op-backup-1"), "the snapshot: {}", b.provider_ref);
    assert_eq!(
        p.backup("orders-db", "op-backup-1").await.unwrap().provider_ref,
        b.provider_ref,
        "same id, same snapshot"
    );

    let point =
        p.restore_to(&b, &RestoreTarget::Point(b.restore_point.clone()), &spec("orders-db-point")).await.unwrap();
    let time = p.restore_to(&b, &RestoreTarget::Time(b.at_ms), &spec("orders-db-time")).await.unwrap();
    assert_ne!(point.id, time.id);
    let source = p.settings("orders-db").await.unwrap();
    assert_eq!(source["storage_encrypted"], "true");
    assert_eq!(source["publicly_accessible"], "false");
    for id in ["orders-db-point", "orders-db-time"] {
        let copy = p.settings(id).await.unwrap();
        assert_eq!(copy["publicly_accessible"], "false", "{id}");
        assert_eq!(copy["engine"], source["engine"], "{id}");
        assert!(p.exists(&format!("secret://{id}/url")).await.unwrap(), "{id} has its own connection URL");
    }
    // Idempotent by id: a second call finds the instance.
    assert_eq!(p.restore_to(&b, &RestoreTarget::Latest, &spec("orders-db-time")).await.unwrap().id, time.id);
    let rds = aws_sdk_rds::Client::new(&conf);
    let n = rds.describe_db_instances().send().await.unwrap().db_instances().len();
    assert_eq!(n, 3, "the source and two copies");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_rotation_reencrypts_secrets_and_the_bucket_and_deletes_the_old_key_only_when_unused() {
    use skiff_pluginapi::Secrets;
    let moto = Moto::start();
    let conf = sdk(&moto).await;
    let p = provider(&moto, &conf).await;
    let bucket = ensure_state_bucket(&p).await.expect("bucket");
    p.put("secret://orders-db/url", "postgres://u:p@h/db").await.unwrap();
    let old = p.key_alias("skiff").await.unwrap().expect("alias/skiff");
    assert_eq!(old.provider_id, bucket.kms_key);
    assert!(old.sealed.contains(&"secret://orders-db".to_owned()), "{:?}", old.sealed);
    assert!(old.sealed.iter().any(|s| s.starts_with("s3://skiff-state")), "{:?}", old.sealed);
    assert!(p.key_alias("nosuch").await.unwrap().is_none());

    // An object written before the rotation, with the old key.
    let s3 = aws_sdk_s3::Client::from_conf(aws_sdk_s3::config::Builder::from(&conf).force_path_style(true).build());
    let put = |key: &'static str, kms: String| {
        s3.put_object()
            .bucket("skiff-state")
            .key(key)
            .server_side_encryption(aws_sdk_s3::types::ServerSideEncryption::AwsKms)
            .ssekms_key_id(kms)
            .body(Vec::from(&b"{}"[..]).into())
            .send()
    };
    put("prod/v1/old.json", old.provider_id.clone()).await.unwrap();

    let new = p.create_key("skiff", "op-rotate-1").await.unwrap();
    assert_ne!(new.id, old.id);
    assert_eq!(p.create_key("skiff", "op-rotate-1").await.unwrap().id, new.id, "made once per operation");
    let done = p.reencrypt(&old.id, &new.id).await.unwrap();
    assert!(done.contains(&"secret://orders-db".to_owned()) && done.iter().any(|d| d.starts_with("s3://")), "{done:?}");
    assert!(p.reencrypt(&old.id, &new.id).await.unwrap().is_empty(), "nothing left the second time");
    let sm = aws_sdk_secretsmanager::Client::new(&conf);
    let described = sm.describe_secret().secret_id("skiff/orders-db").send().await.unwrap();
    assert_eq!(described.kms_key_id(), Some(new.provider_id.as_str()));
    let value = sm.get_secret_value().secret_id("skiff/orders-db").send().await.unwrap();
    assert!(value.secret_string().unwrap().contains("postgres://u:p@h/db"), "the value is unchanged");
    p.move_alias("skiff", &new.id).await.unwrap();
    assert_eq!(p.key_alias("skiff").await.unwrap().unwrap().id, new.id);

    // The old key still encrypts the object written before: its deletion waits.
    let still = p.key(&old.id).await.unwrap().unwrap();
    assert!(still.sealed.iter().any(|s| s.contains("objects written before the rotation")), "{:?}", still.sealed);
    let refused = p.schedule_key_deletion(&old.id, 7).await.unwrap_err();
    assert!(refused.message.contains("still encrypts"), "{refused:?}");
    // Rewritten in place under the new key, as the finding says.
    let listed = s3.list_objects_v2().bucket("skiff-state").prefix("prod/").send().await.unwrap();
    for o in listed.contents() {
        let key = o.key().unwrap();
        let body = s3.get_object().bucket("skiff-state").key(key).send().await.unwrap().body.collect().await.unwrap();
        s3.put_object()
            .bucket("skiff-state")
            .key(key)
            .server_side_encryption(aws_sdk_s3::types::ServerSideEncryption::AwsKms)
            .ssekms_key_id(&new.provider_id)
            .body(body.into_bytes().into())
            .send()
            .await
            .unwrap();
    }
    assert!(p.key(&old.id).await.unwrap().unwrap().sealed.is_empty());
    let at = p.schedule_key_deletion(&old.id, 7).await.unwrap();
    // The new key was made moments ago: the deletion is about seven days after it.
    assert!((6 * 86_400_000..=8 * 86_400_000).contains(&at.saturating_sub(new.created_at_ms)), "7 days out: {at}");
    assert_eq!(p.schedule_key_deletion(&old.id, 7).await.unwrap(), at, "scheduling again keeps the date");
    assert!(p.key(&old.id).await.unwrap().unwrap().deletion_at_ms.is_some());
}

/// The provider with a local forward to `engine` for instance `id` (moto runs no
/// engine; a real PostgreSQL stands in for it, reached as an operator reaches a
/// private instance).
async fn tunnelled(moto: &Moto, conf: &aws_config::SdkConfig, id: &str, engine: &Postgres) -> AwsProvider {
    tunnelled_with_ca(moto, conf, id, engine, None).await
}

async fn tunnelled_with_ca(
    moto: &Moto,
    conf: &aws_config::SdkConfig,
    id: &str,
    engine: &Postgres,
    ca: Option<&std::path::Path>,
) -> AwsProvider {
    let _ = moto;
    let settings = AwsSettings::from_vars("s3://skiff-state/prod", Some("us-east-1".into()), |k| match k {
        "SKIFF_AWS_DATABASE_TUNNELS" => Some(format!("{id}=127.0.0.1:{}", engine.port)),
        "SKIFF_AWS_RDS_CA" => ca.map(|c| c.display().to_string()),
        _ => None,
    })
    .unwrap();
    AwsProvider::with_config(settings, conf).unwrap()
}

fn orders_db() -> DatabaseSpec {
    DatabaseSpec {
        id: "orders-db".into(),
        name: "orders".into(),
        engine: "postgres".into(),
        version: "16".into(),
        instance_class: "db.t4g.small".into(),
        storage_gib: 20,
        multi_az: false,
        backup_retention_days: 7,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_engine_is_reached_over_tls_verified_for_the_endpoints_name() {
    use skiff_pluginapi::Database as _;
    let moto = Moto::start();
    let conf = sdk(&moto).await;
    let p = provider(&moto, &conf).await;
    let made = p.create(&orders_db()).await.unwrap();
    let sm = aws_sdk_secretsmanager::Client::new(&conf);
    let v = sm.get_secret_value().secret_id("skiff/orders-db").send().await.unwrap();
    let map: BTreeMap<String, String> = serde_json::from_str(v.secret_string().unwrap()).unwrap();
    let (good, wrong) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    skiff_testkit::certificates(good.path(), &format!("DNS:{}", made.host));
    skiff_testkit::certificates(wrong.path(), &format!("DNS:{}", made.host));
    let pem = |d: &tempfile::TempDir, f: &str| d.path().join(f);
    // Password logins over TCP only with TLS: the rotation cannot fall back to plain text.
    let engine =
        Postgres::start_tls("skiff", &map["password"], "orders", &pem(&good, "server.pem"), &pem(&good, "server.key"));
    let reference = "secret://orders-db/url";
    let other = tunnelled_with_ca(&moto, &conf, "orders-db", &engine, Some(&pem(&wrong, "ca.pem"))).await;
    other.rotation_create("orders-db", reference).await.unwrap();
    let refused = other.rotation_set("orders-db", reference).await.unwrap_err();
    assert!(refused.message.contains("SKIFF_AWS_RDS_CA"), "a certificate from another CA is refused: {refused:?}");
    let p = tunnelled_with_ca(&moto, &conf, "orders-db", &engine, Some(&pem(&good, "ca.pem"))).await;
    assert_eq!(p.rotation_set("orders-db", reference).await.unwrap().user, "skiff_a");
    assert_eq!(p.rotation_test("orders-db", reference).await.unwrap().user, "skiff_a");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_rotation_stages_awspending_alternates_users_and_gives_the_master_a_new_password() {
    use skiff_pluginapi::{Database as _, Secrets as _};
    let moto = Moto::start();
    let conf = sdk(&moto).await;
    let p = provider(&moto, &conf).await;
    p.create(&orders_db()).await.unwrap();
    let sm = aws_sdk_secretsmanager::Client::new(&conf);
    let read = |stage: &'static str| {
        let sm = sm.clone();
        async move {
            let v = sm.get_secret_value().secret_id("skiff/orders-db").version_stage(stage).send().await.ok()?;
            serde_json::from_str::<std::collections::BTreeMap<String, String>>(v.secret_string()?).ok()
        }
    };
    let master = read("AWSCURRENT").await.unwrap()["password"].clone();
    let engine = Postgres::start("skiff", &master, "orders");
    let p = tunnelled(&moto, &conf, "orders-db", &engine).await;
    let login = |url: &str| {
        let u = skiff_secrets::logins::LoginUrl::parse(url).unwrap();
        engine.psql(u.user, u.password, "orders", "select current_user")
    };
    let reference = "secret://orders-db/url";
    let first = read("AWSCURRENT").await.unwrap()["url"].clone();
    assert_eq!(login(&first).unwrap(), "skiff");

    // Without a way in, the set step says how to get one.
    let unreachable = provider(&moto, &conf).await;
    unreachable.rotation_create("orders-db", reference).await.unwrap();
    let e = unreachable.rotation_set("orders-db", reference).await.unwrap_err();
    assert!(e.message.contains("SKIFF_AWS_DATABASE_TUNNELS"), "{e:?}");
    p.rotation_cancel("orders-db", reference).await.unwrap();
    assert!(read("AWSPENDING").await.is_none(), "cancel takes the label away");

    // Two rounds: skiff → skiff_a → skiff_b, each login working before it is promoted.
    for (round, user) in [(1, "skiff_a"), (2, "skiff_b")] {
        let before = read("AWSCURRENT").await.unwrap()["url"].clone();
        let staged = p.rotation_create("orders-db", reference).await.unwrap();
        assert_eq!(staged.pending.user, user, "round {round}");
        assert_eq!(p.rotation_create("orders-db", reference).await.unwrap(), staged, "staged once");
        let pending = read("AWSPENDING").await.expect("staged as AWSPENDING")["url"].clone();
        assert_eq!(read("AWSCURRENT").await.unwrap()["url"], before, "instances still read the current value");
        assert!(login(&pending).is_err(), "not set in the engine yet");
        p.rotation_set("orders-db", reference).await.unwrap();
        p.rotation_set("orders-db", reference).await.unwrap();
        assert_eq!(login(&pending).unwrap(), user);
        assert_eq!(login(&before).unwrap(), skiff_secrets::logins::LoginUrl::parse(&before).unwrap().user);
        assert_eq!(p.rotation_test("orders-db", reference).await.unwrap().user, user);
        let done = p.rotation_finish("orders-db", reference).await.unwrap();
        assert_eq!(done, p.rotation_finish("orders-db", reference).await.unwrap(), "finishing twice changes nothing");
        let now = read("AWSCURRENT").await.unwrap();
        assert_eq!((now["url"].clone(), now["url-previous"].clone()), (pending.clone(), before.clone()));
        assert_eq!(read("AWSPREVIOUS").await.unwrap()["url"], before, "Secrets Manager keeps the one replaced");
        assert!(read("AWSPENDING").await.is_none(), "nothing is left pending");
        assert_eq!(p.version(reference).await.unwrap().as_deref(), Some(done.version.as_str()));
        // The rows the first user made are the next one's too.
        if round == 1 {
            engine
                .psql("skiff", &master, "orders", "create table orders (id int); insert into orders values (1)")
                .unwrap();
        }
        let u = skiff_secrets::logins::LoginUrl::parse(&pending).unwrap();
        assert_eq!(engine.psql(u.user, u.password, "orders", "select count(*) from orders").unwrap(), "1");

        // The old login goes: the master (Skiff's admin) gets a new password; an
        // alternate user loses its password.
        let old_user = skiff_secrets::logins::LoginUrl::parse(&before).unwrap().user.to_owned();
        p.disable_login("orders-db", &old_user).await.unwrap();
        p.disable_login("orders-db", &old_user).await.unwrap();
        assert!(login(&before).is_err(), "round {round}: the old login is refused");
        assert_eq!(login(&pending).unwrap(), user, "the new one works");
    }
    let now = read("AWSCURRENT").await.unwrap();
    assert_ne!(now["password"], master, "the master password changed");
    assert!(!now.contains_key("password-next"));
    assert_eq!(engine.psql("skiff", &now["password"], "orders", "select 1").unwrap(), "1", "Skiff still gets in");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_old_backend_joins_the_alb_as_an_ip_target_group_and_takes_weights() {
    use skiff_pluginapi::{Target, TargetType, Weight};

    let moto = Moto::start();
    let conf = sdk(&moto).await;
    let p = provider(&moto, &conf).await;
    let g = group("web", "2026.11.23.1", 1);
    let health = g.launch.health.clone().unwrap();
    p.traffic().ensure_load_balancer(&LoadBalancerSpec { service: "web".into(), listener_port: 80 }).await.unwrap();
    let spec = |name: &str, target_type| TargetGroupSpec {
        name: name.into(),
        service: "web".into(),
        port: 8080,
        health: health.clone(),
        deregistration_delay_ms: 1_000,
        target_type,
    };
    p.traffic().ensure_target_group(&spec(&g.name, TargetType::Instance)).await.unwrap();
    p.traffic().ensure_target_group(&spec("web-external", TargetType::Ip)).await.unwrap();
    let old = Target { id: "10.0.1.50".into(), address: "10.0.1.50".into(), port: 8080 };
    p.traffic().register("web-external", &[old]).await.unwrap();

    let elb = aws_sdk_elasticloadbalancingv2::Client::new(&conf);
    let groups = elb.describe_target_groups().send().await.unwrap();
    let external = groups
        .target_groups()
        .iter()
        .find(|t| t.target_type() == Some(&aws_sdk_elasticloadbalancingv2::types::TargetTypeEnum::Ip))
        .expect("an IP target group");
    let health =
        elb.describe_target_health().target_group_arn(external.target_group_arn().unwrap()).send().await.unwrap();
    let ids: Vec<&str> =
        health.target_health_descriptions().iter().filter_map(|d| d.target().and_then(|t| t.id())).collect();
    assert_eq!(ids, ["10.0.1.50"]);

    // The cutover's weights, read back from the listener.
    for skiff in [5, 50, 100] {
        let w = [
            Weight { target_group: g.name.clone(), weight: skiff },
            Weight { target_group: "web-external".into(), weight: 100 - skiff },
        ];
        p.traffic().set_weights("web", &w).await.unwrap();
        let read: Vec<(String, u32)> =
            p.traffic().weights("web").await.unwrap().into_iter().map(|w| (w.target_group, w.weight)).collect();
        assert!(read.contains(&(g.name.clone(), skiff)), "{read:?}");
    }
    p.traffic().set_weights("web", &[Weight { target_group: g.name.clone(), weight: 100 }]).await.unwrap();
    p.traffic().delete_target_group("web-external").await.unwrap();
    assert_eq!(elb.describe_target_groups().send().await.unwrap().target_groups().len(), 1);
    // The ALB cannot mirror: the provider says so rather than pretend.
    let refused = p.traffic().set_mirror("web", None).await.unwrap_err();
    assert!(refused.message.contains("cannot mirror"), "{refused:?}");
}
