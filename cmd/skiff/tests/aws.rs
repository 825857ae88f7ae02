//! `--provider aws` end to end against moto's server on 127.0.0.1: the state bucket
//! prepared, releases signed into S3, the same canary saga creating launch templates,
//! auto scaling groups, target groups and ALB weights, the old release retired, a
//! rollback re-creating it, and `skiff iam policy`.
//!
//! moto reports every registered target healthy at once and publishes no ALB metrics,
//! so these rollouts run with `bake: 0s` (no analysis); health-gated and analysed
//! rollouts are proven on the local provider (tests/deploy.rs), and the AWS stats path
//! is tested in crates/provider-aws against metrics put into moto's CloudWatch.

mod common;

use common::*;
use skiff_pluginapi::{Provider, Weight};
use skiff_testkit::Moto;

const BUCKET: &str = "s3://skiff-e2e/prod";

struct Aws<'a> {
    s: &'a Sandbox,
    moto: Moto,
    env: Vec<(&'static str, String)>,
}

impl<'a> Aws<'a> {
    /// moto started, a signing key made and the state bucket initialized.
    fn ready(s: &'a Sandbox) -> Self {
        let moto = Moto::start();
        let mut env = moto.env();
        env.push(("SKIFF_AWS_AMI", "ami-12c6146b".to_owned()));
        let aws = Aws { s, moto, env };
        assert_eq!(s.run(&["keys", "generate", "--format", "json"]).code, 0);
        assert_eq!(aws.run(&["state", "init", "--yes", "--format", "json"]).code, 0);
        aws
    }

    fn run(&self, args: &[&str]) -> Run {
        let mut all = vec!["--provider", "aws", "--bucket", BUCKET];
        all.extend_from_slice(args);
        let env: Vec<(&str, &str)> = self.env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        self.s.run_env(&all, &env)
    }

    fn spec(&self, message: &str) -> String {
        let hello = skiff_testkit::workspace_bin("hello");
        let yaml = format!(
            "service: web\nartifact: {{path: {}}}\nrun: {{command: [hello], env: {{HELLO_MESSAGE: {message}}}}}\nport: 8080\n\
             health: {{path: /healthz, interval: 5s, timeout: 2s, healthy_threshold: 2, unhealthy_threshold: 2}}\n\
             instances: {{min: 2, max: 4, desired: 2}}\n\
             rollout:\n  canary: {{steps: [10, 50, 100], bake: 0s}}\n  drain_timeout: 1s\n  step_timeout: 2m\n",
            hello.display()
        );
        let path = self.s.path().join("web.yaml");
        std::fs::write(&path, yaml).unwrap();
        path.display().to_string()
    }

    fn deploy(&self, message: &str) -> Run {
        let spec = self.spec(message);
        self.run(&["deploy", "-f", &spec, "--yes", "--format", "json"])
    }

    /// `skiff secrets set REFERENCE` with the value on stdin.
    fn set_secret(&self, reference: &str, value: &str) -> i32 {
        use std::io::Write as _;
        let mut cmd = std::process::Command::new(assert_cmd::cargo::cargo_bin("skiff"));
        cmd.current_dir(self.s.path())
            .env("SKIFF_CONFIG", self.s.path().join("config.yaml"))
            .args(["--provider", "aws", "--bucket", BUCKET, "secrets", "set", reference, "--yes", "--format", "json"])
            .envs(self.env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        let mut child = cmd.spawn().unwrap();
        child.stdin.take().unwrap().write_all(value.as_bytes()).unwrap();
        child.wait().unwrap().code().unwrap_or(-1)
    }

    fn provider(&self) -> skiff_provider_aws::AwsProvider {
        let settings = skiff_provider_aws::AwsSettings::from_vars(BUCKET, Some("us-east-1".into()), |_| None).unwrap();
        let conf = block(
            aws_config::defaults(aws_config::BehaviorVersion::latest())
                .endpoint_url(self.moto.endpoint())
                .region(aws_config::Region::new("us-east-1"))
                .credentials_provider(aws_sdk_s3::config::Credentials::new("testing", "testing", None, None, "moto"))
                .load(),
        );
        skiff_provider_aws::AwsProvider::with_config(settings, &conf).unwrap()
    }
}

#[test]
fn deploy_rollback_and_status_run_the_canary_saga_on_aws_apis() {
    let s = Sandbox::new();
    let moto = Moto::start();
    let mut env = moto.env();
    env.push(("SKIFF_AWS_AMI", "ami-12c6146b".to_owned()));
    let aws = Aws { s: &s, moto, env };

    assert_eq!(s.run(&["keys", "generate", "--format", "json"]).code, 0);
    let init = aws.run(&["state", "init", "--yes", "--format", "json"]);
    assert_eq!(init.code, 0, "{}", init.stdout);
    let bucket = &json(&init)["data"]["bucket"];
    assert_eq!(bucket["created"], true, "{bucket}");
    assert_eq!(bucket["versioning"], true);
    assert_eq!(bucket["public_access_blocked"], true);
    assert_eq!(bucket["conditional_writes"], true);

    // Secrets go to Secrets Manager; values are never printed.
    assert_eq!(aws.set_secret("secret://web-db/url", "postgres://u:hunter2@db/web"), 0);
    assert_eq!(aws.set_secret("secret://web-db/password", "hunter2"), 0);
    let listed = aws.run(&["secrets", "list", "--format", "json"]);
    assert_eq!(
        json(&listed)["data"]["references"],
        serde_json::json!(["secret://web-db/password", "secret://web-db/url"])
    );
    assert!(!listed.stdout.contains("hunter2"));
    assert_eq!(aws.run(&["secrets", "delete", "secret://web-db/password", "--yes"]).code, 0);
    let listed = aws.run(&["secrets", "list", "web-db", "--format", "json"]);
    assert_eq!(json(&listed)["data"]["references"], serde_json::json!(["secret://web-db/url"]));

    // First release: nothing serves yet, so it takes all traffic at once.
    let first = aws.deploy("v1");
    assert_eq!(first.code, 0, "{}\n{}", first.stdout, first.stderr);
    let v1 = json(&first)["data"]["release"].as_str().unwrap().to_owned();

    // Second release: the canary walks 10 → 50 → 100 with weights read back each time.
    let second = aws.deploy("v2");
    assert_eq!(second.code, 0, "{}\n{}", second.stdout, second.stderr);
    let v2 = json(&second)["data"]["release"].as_str().unwrap().to_owned();
    assert_ne!(v1, v2);
    let events = aws.run(&["saga", "events", json(&second)["operation_id"].as_str().unwrap(), "--format", "json"]);
    let shifts: Vec<String> = json(&events)["data"]["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == "step_succeeded" && e["data"]["step"].as_str().is_some_and(|s| s.starts_with("shift")))
        .map(|e| e["data"]["step"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(shifts, ["shift-10", "shift-50", "shift-100"], "{}", events.stdout);

    let p = aws.provider();
    let group = |release: &str| skiff_steps::deploy::group_name("web", release);
    block(async {
        let weights = p.traffic().weights("web").await.unwrap();
        assert_eq!(weights, [Weight { target_group: group(&v2), weight: 100 }], "all traffic on v2");
        let groups: Vec<String> = p.compute().list_groups("web").await.unwrap().into_iter().map(|g| g.name).collect();
        assert_eq!(groups, [group(&v2)], "v1's auto scaling group retired");
        let g = p.compute().describe_group(&group(&v2)).await.unwrap().unwrap();
        assert_eq!(g.running().len(), 2);
        let role = p.identity().describe_role("skiff-production-web").await.unwrap().expect("instance role");
        assert!(role.permissions.iter().any(|x| x.action == "state:read" && x.resource == "releases/web/*"));
    });

    let status = aws.run(&["status", "web", "--format", "json"]);
    assert_eq!(status.code, 0, "{}", status.stdout);
    assert_eq!(json(&status)["data"]["release"], v2.as_str());

    // Rollback re-creates the retired release's group and moves traffic back.
    let back = aws.run(&["rollback", "web", "--yes", "--format", "json"]);
    assert_eq!(back.code, 0, "{}\n{}", back.stdout, back.stderr);
    assert_eq!(json(&back)["data"]["release"], v1.as_str());
    block(async {
        let weights = p.traffic().weights("web").await.unwrap();
        assert_eq!(weights, [Weight { target_group: group(&v1), weight: 100 }], "all traffic back on v1");
    });
    assert_eq!(aws.run(&["state", "verify", "--format", "json"]).code, 0);
}

#[test]
fn a_deploy_with_a_database_creates_it_encrypted_private_and_backed_up_on_rds() {
    let s = Sandbox::new();
    let aws = Aws::ready(&s);
    let hello = skiff_testkit::workspace_bin("hello");
    let yaml = format!(
        "service: orders\nartifact: {{path: {}}}\nrun: {{command: [hello]}}\nport: 8080\n\
         instances: {{min: 1, max: 2, desired: 1}}\n\
         secrets: {{DATABASE_URL: secret://orders-db/url}}\n\
         database: {{name: orders-db, engine: postgres, version: \"16\", backups: {{retention: 7d}}}}\n\
         rollout: {{canary: {{steps: [100], bake: 0s}}, drain_timeout: 1s, step_timeout: 2m}}\n",
        hello.display()
    );
    std::fs::write(s.path().join("orders.yaml"), yaml).unwrap();
    let r = aws.run(&["deploy", "-f", "orders.yaml", "--yes", "--format", "json"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let steps = json(&r)["data"]["steps"].clone();
    assert_eq!(steps[0]["id"], "database", "{steps}");
    assert!(steps[0]["summary"].as_str().unwrap().contains("database orders-db created"), "{steps}");

    let p = aws.provider();
    let conf = block(
        aws_config::defaults(aws_config::BehaviorVersion::latest())
            .endpoint_url(aws.moto.endpoint())
            .region(aws_config::Region::new("us-east-1"))
            .credentials_provider(aws_sdk_s3::config::Credentials::new("testing", "testing", None, None, "moto"))
            .load(),
    );
    let rds = aws_sdk_rds::Client::new(&conf);
    block(async {
        let out = rds.describe_db_instances().db_instance_identifier("orders-db").send().await.unwrap();
        let db = &out.db_instances()[0];
        assert_eq!(db.storage_encrypted(), Some(true), "encrypted");
        assert_eq!(db.publicly_accessible(), Some(false), "private");
        assert_eq!(db.backup_retention_period(), Some(7), "backups kept a week");
        assert_eq!(db.db_name(), Some("orders_db"));
        // The credentials are behind the reference the spec names, and the role may read them.
        assert!(p.secrets().exists("secret://orders-db/url").await.unwrap());
        let role = p.identity().describe_role("skiff-production-orders").await.unwrap().expect("instance role");
        assert!(role.permissions.iter().any(|x| x.action == "secrets:read" && x.resource == "orders-db"), "{role:?}");
    });
    // The next deploy finds the database instead of creating another.
    let again = aws.run(&["deploy", "-f", "orders.yaml", "--yes", "--format", "json"]);
    assert_eq!(again.code, 0, "{}", again.stdout);
    assert!(json(&again)["data"]["steps"][0]["summary"].as_str().unwrap().contains("available"), "{}", again.stdout);
    let count = block(async { rds.describe_db_instances().send().await.unwrap().db_instances().len() });
    assert_eq!(count, 1);

    // A secret rotation on RDS. moto runs no engine: a real PostgreSQL with the
    // instance's master password stands in, reached through a local forward as an
    // operator reaches a private instance.
    let current = |key: &str| {
        let sm = aws_sdk_secretsmanager::Client::new(&conf);
        let v = block(async { sm.get_secret_value().secret_id("skiff/orders-db").send().await.unwrap() });
        let map: std::collections::BTreeMap<String, String> = serde_json::from_str(v.secret_string().unwrap()).unwrap();
        map[key].clone()
    };
    let master = current("password");
    let engine = skiff_testkit::postgres::Postgres::start("skiff", &master, "orders_db");
    let login = |url: &str| {
        let u = skiff_secrets::logins::LoginUrl::parse(url).unwrap();
        engine.psql(u.user, u.password, "orders_db", "select current_user")
    };
    let old = current("url");
    let tunnel = [
        ("SKIFF_AWS_DATABASE_TUNNELS", format!("orders-db=127.0.0.1:{}", engine.port)),
        ("SKIFF_ROTATION_STALE_WAIT_MS", "500".to_owned()),
    ];
    let rotate = |args: &[&str]| {
        let mut all = vec!["--provider", "aws", "--bucket", BUCKET];
        all.extend_from_slice(args);
        let env: Vec<(&str, &str)> = aws.env.iter().chain(tunnel.iter()).map(|(k, v)| (*k, v.as_str())).collect();
        s.run_env(&all, &env)
    };
    let planned = rotate(&["rotate", "secret", "orders-db", "--dry-run", "--format", "json"]);
    assert_eq!(json(&planned)["data"]["steps"].as_array().map(Vec::len), Some(6), "{}", planned.stdout);
    let ran = rotate(&["rotate", "secret", "orders-db", "--disable-after", "0s", "--yes", "--format", "json"]);
    let answer = json(&ran);
    // No runner reports a version on moto: the old login stays, and the pause says who.
    assert_eq!(answer["data"]["status"], "paused", "{}", ran.stdout);
    assert!(answer["summary"].as_str().unwrap().contains("before step `disable`"), "{}", ran.stdout);
    let facts: Vec<String> =
        answer["facts"].as_array().unwrap().iter().filter_map(|f| f.as_str().map(str::to_owned)).collect();
    let stale: Vec<String> = facts
        .iter()
        .filter_map(|f| f.strip_prefix("orders instance ")?.strip_suffix(" reports none").map(str::to_owned))
        .collect();
    assert_eq!(stale.len(), 1, "the one instance has not reported: {facts:?}");
    let new = current("url");
    assert_eq!(login(&new).unwrap(), "skiff_a", "the consumers' value is the alternate user, and it works");
    assert_eq!(login(&old).unwrap(), "skiff", "the old login is kept while a consumer may use it");
    // Its runner reports the new version (as a runner on the instance would), and the
    // paused rotation finishes: the old login is refused, Skiff's admin login changed.
    let version = block(async { p.secrets().version("secret://orders-db/url").await.unwrap().unwrap() });
    let s3 = skiff_objstore::S3Settings {
        endpoint: Some(aws.moto.endpoint()),
        region: Some("us-east-1".into()),
        access_key_id: Some("testing".into()),
        secret_access_key: Some("testing".into()),
    };
    let ledger = skiff_state::Ledger::open(BUCKET, &skiff_objstore::OpenOptions { s3, ..Default::default() }).unwrap();
    for id in &stale {
        use skiff_state::docs::{Member, MemberHealth, RunnerDetail};
        let doc = Member {
            cas: Default::default(),
            service: "orders".into(),
            instance: id.clone(),
            release: "r".into(),
            health: MemberHealth::Healthy,
            updated_at_ms: 0,
            detail: RunnerDetail {
                secrets: [("secret://orders-db/url".to_owned(), version.clone())].into(),
                ..RunnerDetail::default()
            },
        };
        let key = skiff_state::keys::member("orders", id);
        block(ledger.update::<Member<RunnerDetail>, _>(&key, |_| Ok(skiff_state::Update::Write(doc.clone())))).unwrap();
    }
    let op = answer["operation_id"].as_str().unwrap().to_owned();
    let done = rotate(&["saga", "resume", &op, "--yes", "--format", "json"]);
    assert_eq!(json(&done)["code"], "OK", "{}", done.stdout);
    assert!(login(&old).is_err(), "the old login is refused");
    assert_eq!(login(&new).unwrap(), "skiff_a");
    assert_ne!(current("password"), master, "the master user has a new password");

    // Backup and restore run the same sagas as locally: an RDS snapshot, a restore into
    // a new instance proven against the source's settings, approval, secret cutover.
    let backup = aws.run(&["database", "backup", "orders-db", "--yes", "--format", "json"]);
    assert_eq!(backup.code, 0, "{}", backup.stdout);
    let point = json(&backup)["operation_id"].as_str().unwrap().to_owned();
    let gated = aws.run(&["restore", "database", "orders-db", "--to", &point, "--yes", "--format", "json"]);
    assert_eq!(json(&gated)["code"], "APPROVAL_REQUIRED", "{}", gated.stdout);
    let op = json(&gated)["operation_id"].as_str().unwrap().to_owned();
    let done = aws.run(&["saga", "approve", &op, "--yes", "--format", "json"]);
    assert_eq!(json(&done)["code"], "OK", "{}", done.stdout);
    let restored: Vec<String> = block(async {
        let out = rds.describe_db_instances().send().await.unwrap();
        out.db_instances().iter().filter_map(|d| d.db_instance_identifier()).map(str::to_owned).collect()
    });
    assert_eq!(restored.len(), 2, "the source is kept beside the copy: {restored:?}");
    block(async {
        assert!(p.secrets().exists("secret://orders-db/url-previous").await.unwrap(), "the previous value is kept");
    });

    // A copy whose settings differ from the source's (changed since the snapshot) fails
    // the smoke step and is removed.
    let backup = aws.run(&["database", "backup", "orders-db", "--yes", "--format", "json"]);
    let point = json(&backup)["operation_id"].as_str().unwrap().to_owned();
    block(async {
        rds.modify_db_instance()
            .db_instance_identifier(restored.iter().find(|i| i.as_str() != "orders-db").unwrap())
            .enable_iam_database_authentication(true)
            .apply_immediately(true)
            .send()
            .await
            .unwrap();
    });
    let failed = aws.run(&["restore", "database", "orders-db", "--to", &point, "--yes", "--format", "json"]);
    assert_eq!(json(&failed)["code"], "OPERATION_FAILED", "{}", failed.stdout);
    assert!(failed.stdout.contains("iam_auth"), "names the setting: {}", failed.stdout);
    let left = block(async { rds.describe_db_instances().send().await.unwrap().db_instances().len() });
    assert_eq!(left, 2, "the failed copy was deleted; the source and the first copy remain");

    // The retained source is deleted by its own saga: a final snapshot, then the deletion
    // after approval.
    let gated = aws.run(&["database", "retire", "orders-db", "--yes", "--format", "json"]);
    assert_eq!(json(&gated)["code"], "APPROVAL_REQUIRED", "{}", gated.stdout);
    let op = json(&gated)["operation_id"].as_str().unwrap().to_owned();
    let kept = block(async { rds.describe_db_instances().db_instance_identifier("orders-db").send().await.is_ok() });
    assert!(kept, "nothing is deleted before the approval");
    let done = aws.run(&["saga", "approve", &op, "--yes", "--format", "json"]);
    assert_eq!(json(&done)["code"], "OK", "{}", done.stdout);
    let (gone, snapshots) = block(async {
        let gone = rds.describe_db_instances().db_instance_identifier("orders-db").send().await.is_err();
        let snaps = rds.describe_db_snapshots().send().await.unwrap();
        let ids: Vec<String> =
            snaps.db_snapshots().iter().filter_map(|s| s.db_snapshot_identifier()).map(str::to_owned).collect();
        (gone, ids)
    });
    assert!(gone, "orders-db is deleted");
    assert!(snapshots.iter().any(|s| s.starts_with("orders-db-final-")), "a final snapshot: {snapshots:?}");

    // A key rotation on KMS: secrets and the bucket's default move to a new key; the old
    // one cannot be deleted while the bucket's earlier objects are encrypted with it.
    let gated = aws.run(&["rotate", "key", "--delete-after", "7d", "--yes", "--format", "json"]);
    assert_eq!(json(&gated)["code"], "APPROVAL_REQUIRED", "{}", gated.stdout);
    let op = json(&gated)["operation_id"].as_str().unwrap().to_owned();
    block(async {
        let now = p.secrets().key_alias("skiff").await.unwrap().expect("alias/skiff");
        assert!(now.sealed.contains(&"secret://orders-db".to_owned()), "re-encrypted under the new key: {now:?}");
    });
    let held = aws.run(&["saga", "approve", &op, "--yes", "--format", "json"]);
    assert!(held.stdout.contains("objects written before the rotation"), "{}", held.stdout);
    let answer = json(&held);
    assert_eq!(answer["data"]["status"], "paused", "{}", held.stdout);
    assert_eq!(answer["data"]["held"]["step"], "schedule-deletion", "{}", held.stdout);
    let facts: Vec<&str> = answer["facts"].as_array().unwrap().iter().filter_map(|f| f.as_str()).collect();
    assert!(facts.iter().any(|f| f.starts_with("rewrite that under the new key")), "the hold's facts: {facts:?}");
    assert_eq!(aws.run(&["state", "verify", "--format", "json"]).code, 0);
}

#[test]
fn iam_policy_prints_a_document_without_wildcard_actions() {
    let s = Sandbox::new();
    let args = ["iam", "policy", "--provider", "aws", "--bucket", "s3://acme-skiff/prod", "--account", "123456789012"];
    let mut with_region = args.to_vec();
    with_region.extend(["--region", "eu-west-1"]);
    let human = s.run(&with_region);
    assert_eq!(human.code, 0, "{}", human.stderr);
    let doc: serde_json::Value = serde_json::from_str(&human.stdout).expect("human output is the document alone");
    for st in doc["Statement"].as_array().unwrap() {
        for a in st["Action"].as_array().unwrap() {
            assert!(!a.as_str().unwrap().contains('*'), "{a}");
        }
    }
    insta::assert_snapshot!("iam-policy", human.stdout);
    let mut json_args = with_region.clone();
    json_args.extend(["--format", "json"]);
    let j = s.run(&json_args);
    insta::assert_snapshot!("iam-policy-json-head", {
        let v = json(&j);
        serde_json::to_string_pretty(&serde_json::json!({"ok": v["ok"], "summary": v["summary"], "facts": v["facts"]}))
            .unwrap()
    });
    // Without a region there is nothing to scope the ARNs to.
    let no_region = s.run(&args);
    assert_eq!(no_region.code, 2, "{}", no_region.stdout);
}

/// Security drift made by hand with boto3 behind Skiff's back — an extra inline policy
/// (`s3:*` on `*`), AdministratorAccess attached, port 22 opened, the launch template's
/// user data swapped, a listener rule, the state bucket's encryption, public access
/// block, policy and tags, a secret's value — each reported DRIFTED with its path and
/// severity; the repair saga puts back every reversible one, and reconcile is IN_SYNC
/// once the secret's change is accepted.
#[test]
fn security_drift_made_by_hand_is_reported_with_its_severity_and_repaired() {
    let s = Sandbox::new();
    let aws = Aws::ready(&s);
    assert_eq!(aws.set_secret("secret://web-db/url", "postgres://web@db/web"), 0);
    let hello = skiff_testkit::workspace_bin("hello");
    let yaml = format!(
        "service: web\nartifact: {{path: {}}}\nrun: {{command: [hello]}}\nport: 8080\n\
         health: {{path: /healthz, interval: 5s, timeout: 2s, healthy_threshold: 2, unhealthy_threshold: 2}}\n\
         instances: {{min: 2, max: 4, desired: 2}}\nsecrets: {{DATABASE_URL: secret://web-db/url}}\n\
         rollout:\n  canary: {{steps: [100], bake: 0s}}\n  drain_timeout: 1s\n  step_timeout: 2m\n",
        hello.display()
    );
    std::fs::write(s.path().join("web.yaml"), yaml).unwrap();
    let deployed = aws.run(&["deploy", "-f", "web.yaml", "--yes", "--format", "json"]);
    assert_eq!(deployed.code, 0, "{}\n{}", deployed.stdout, deployed.stderr);
    let release = json(&deployed)["data"]["release"].as_str().unwrap().to_owned();
    let clean = aws.run(&["reconcile", "web", "--format", "json"]);
    assert_eq!(json(&clean)["code"], "OK", "no drift right after a deploy: {}", clean.stdout);

    let script = repo().join("cmd/skiff/tests/drift/aws_drift.py");
    let group = skiff_steps::deploy::group_name("web", &release);
    let out = std::process::Command::new("python3")
        .arg(&script)
        .args(["web", "skiff-e2e", &group, "web-db"])
        .envs(aws.env.iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    let drifted = json(&aws.run(&["reconcile", "web", "--format", "json"]));
    assert_eq!(drifted["code"], "DRIFTED", "{drifted}");
    let found: Vec<(String, String)> = drifted["data"]["services"][0]["differences"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| (d["path"].as_str().unwrap().to_owned(), d["severity"].as_str().unwrap().to_owned()))
        .collect();
    for (path, severity) in [
        ("identity.inline_policies", "critical"),
        ("identity.attached_policies", "critical"),
        ("network.ingress", "critical"),
        ("launch.template", "critical"),
        ("traffic.listener_rules", "high"),
        ("state.encryption", "high"),
        ("state.public_access_block", "critical"),
        ("state.policy", "critical"),
        ("state.tags", "low"),
        ("secrets.secret://web-db/url", "high"),
    ] {
        assert!(found.contains(&(path.to_owned(), severity.to_owned())), "{path} [{severity}] in {found:?}");
    }
    assert_eq!(drifted["risk"]["level"], "high", "{drifted}");
    assert!(
        drifted["recommended_actions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["command"] == "skiff reconcile web --repair --yes"),
        "{drifted}"
    );

    // The saga fixes every reversible difference; the secret's change needs a person.
    let repaired = json(&aws.run(&["reconcile", "web", "--repair", "--yes", "--format", "json"]));
    assert_eq!(repaired["code"], "DRIFTED", "{repaired}");
    assert!(repaired["summary"].as_str().unwrap().starts_with("repaired what a step can"), "{repaired}");
    assert!(
        repaired["recommended_actions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["command"] == "skiff secrets set secret://web-db/url"),
        "{repaired}"
    );
    let after = json(&aws.run(&["reconcile", "web", "--format", "json"]));
    let left: Vec<&str> = after["data"]["services"][0]["differences"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["path"].as_str().unwrap())
        .collect();
    assert_eq!(left, ["secrets.secret://web-db/url"], "only the secret needs a person: {after}");

    // Every fix is reversible: its undo (what compensation runs) brings the drift back,
    // and the repair saga fixes it again.
    let p = aws.provider();
    let differences = drifted["data"]["services"][0]["differences"].as_array().unwrap().clone();
    block(async {
        for d in differences.iter().filter(|d| !d["fix"].is_null()) {
            p.posture().unwrap().fix(&d["fix"]["undo"]).await.unwrap_or_else(|e| panic!("undo {}: {e}", d["path"]));
        }
    });
    let again = json(&aws.run(&["reconcile", "web", "--format", "json"]));
    let back: Vec<&str> = again["data"]["services"][0]["differences"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["path"].as_str().unwrap())
        .collect();
    let fixed: Vec<&str> =
        differences.iter().filter(|d| !d["fix"].is_null()).map(|d| d["path"].as_str().unwrap()).collect();
    for path in &fixed {
        assert!(back.contains(path), "{path} is back after its undo: {back:?}");
    }
    let repaired = json(&aws.run(&["reconcile", "web", "--repair", "--yes", "--format", "json"]));
    assert!(repaired["summary"].as_str().unwrap().starts_with("repaired what a step can"), "{repaired}");

    // Accepting the new value records it; then nothing differs.
    assert_eq!(aws.set_secret("secret://web-db/url", "postgres://mallory@evil/db"), 0);
    let synced = aws.run(&["reconcile", "web", "--format", "json"]);
    assert_eq!(json(&synced)["code"], "OK", "{}", synced.stdout);
    let verified = aws.run(&["state", "verify", "--format", "json"]);
    assert_eq!(verified.code, 0, "{}", verified.stdout);
}

#[test]
fn a_shadow_release_takes_the_traffic_of_an_old_backend_through_an_ip_target_group() {
    let s = Sandbox::new();
    let aws = Aws::ready(&s);
    let spec = aws.spec("migrated");

    // The ALB cannot mirror: refused before anything is built or created.
    let refused = aws.run(&["deploy", "-f", &spec, "--shadow", "--mirror", "10", "--yes", "--format", "json"]);
    assert_eq!(json(&refused)["code"], "USAGE", "{}", refused.stdout);
    assert_eq!(json(&aws.run(&["release", "list", "--format", "json"]))["data"].as_array().map(Vec::len), Some(0));

    let shadow = aws.run(&["deploy", "-f", &spec, "--shadow", "--yes", "--format", "json"]);
    assert_eq!(shadow.code, 0, "{}\n{}", shadow.stdout, shadow.stderr);
    let status = json(&aws.run(&["status", "web", "--format", "json"]));
    let release = status["data"]["shadow_release"].as_str().unwrap_or_else(|| panic!("{status:#}")).to_owned();
    let group = skiff_steps::deploy::group_name("web", &release);
    let p = aws.provider();
    block(async {
        assert!(p.traffic().weights("web").await.unwrap().is_empty(), "a shadow takes no traffic");
    });

    // The old backend (an address in the VPC) joins as an IP target group.
    let start = [
        "saga",
        "start",
        "traffic-cutover",
        "--service",
        "web",
        "--from",
        "http://10.0.1.50:8080",
        "--steps",
        "50,100",
        "--yes",
        "--format",
        "json",
    ];
    let gated = json(&aws.run(&start));
    assert_eq!(gated["code"], "APPROVAL_REQUIRED", "{gated:#}");
    let op = gated["operation_id"].as_str().unwrap().to_owned();
    block(async {
        let mut w = p.traffic().weights("web").await.unwrap();
        w.sort();
        let half = |t: &str| Weight { target_group: t.to_owned(), weight: 50 };
        assert_eq!(w, [half(&group), half("web-external")]);
        let targets = p.traffic().target_health("web-external").await.unwrap();
        assert_eq!(targets.iter().map(|t| t.id.as_str()).collect::<Vec<_>>(), ["10.0.1.50"]);
    });
    let approve = ["saga", "approve", &op, "--yes", "--format", "json"];
    assert_eq!(json(&aws.run(&approve))["code"], "APPROVAL_REQUIRED", "the retirement waits too");
    let done = json(&aws.run(&approve));
    assert_eq!(done["code"], "OK", "{done:#}");
    block(async {
        assert_eq!(p.traffic().weights("web").await.unwrap(), [Weight { target_group: group.clone(), weight: 100 }]);
        assert!(p.traffic().target_health("web-external").await.is_err(), "the old backend's target group is gone");
    });
    let status = json(&aws.run(&["status", "web", "--format", "json"]));
    assert_eq!(status["data"]["stable_release"], release.as_str(), "{status:#}");
    assert_eq!(aws.run(&["state", "verify", "--format", "json"]).code, 0);
}

/// `by_hand.py ACTION` against moto.
fn by_hand(aws: &Aws<'_>, action: &str) -> String {
    let out = std::process::Command::new("python3")
        .arg(repo().join("cmd/skiff/tests/terraform/by_hand.py"))
        .args([action, "skiff-production-web", "/skiff/production/web"])
        .envs(aws.env.iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn adopted_terraform_resources_are_read_and_never_changed_by_a_deploy() {
    let s = Sandbox::new();
    let aws = Aws::ready(&s);
    let spec = aws.spec("adopted");

    // A team's own Terraform made the role (with its own policy) and the log group; its
    // hand-written state has no Skiff tags.
    by_hand(&aws, "create");
    let before = by_hand(&aws, "show");
    let state = serde_json::json!({
        "version": 4, "terraform_version": "1.11.4", "serial": 7, "lineage": "team-infra",
        "resources": [
            {"mode": "managed", "type": "aws_iam_role", "name": "app", "instances": [{"attributes": {"name": "skiff-production-web", "arn": "arn:aws:iam::123456789012:role/skiff-production-web"}}]},
            {"mode": "managed", "type": "aws_iam_instance_profile", "name": "app", "instances": [{"attributes": {"name": "skiff-production-web"}}]},
            {"mode": "managed", "type": "aws_cloudwatch_log_group", "name": "app", "instances": [{"attributes": {"name": "/skiff/production/web", "retention_in_days": 3}}]},
            {"mode": "managed", "type": "aws_s3_bucket", "name": "assets", "instances": [{"attributes": {"bucket": "team-assets"}}]},
            {"mode": "data", "type": "aws_vpc", "name": "default", "instances": [{"attributes": {}}]}
        ]
    });
    std::fs::write(s.path().join("hand.tfstate"), serde_json::to_vec_pretty(&state).unwrap()).unwrap();
    let adopted =
        json(&aws.run(&["adopt", "terraform", "--state", "hand.tfstate", "-f", &spec, "--yes", "--format", "json"]));
    assert_eq!(adopted["code"], "OK", "{adopted:#}");
    assert!(adopted["summary"].as_str().unwrap().contains("3 terraform-owned"), "{adopted:#}");
    assert!(adopted["summary"].as_str().unwrap().contains("1 external"), "{adopted:#}");
    let plan = json(&aws.run(&["plan", "-f", &spec, "--format", "json"]));
    assert_eq!(plan["data"]["ownership"]["role/web"], "terraform-owned", "{plan:#}");
    assert_eq!(plan["data"]["ownership"]["log-group/web"], "terraform-owned");
    assert_eq!(plan["data"]["ownership"]["instance-group/web"], "skiff-owned");

    // The deploy runs on the role and log group and changes neither.
    let deployed = aws.run(&["deploy", "-f", &spec, "--yes", "--format", "json"]);
    assert_eq!(deployed.code, 0, "{}\n{}", deployed.stdout, deployed.stderr);
    assert!(
        deployed.stdout.contains("Terraform-owned, read and never changed: log-group/web, role/web"),
        "{}",
        deployed.stdout
    );
    assert_eq!(by_hand(&aws, "show"), before, "the role's policy and the log group's retention are Terraform's");

    // Drift on the role is Terraform's to fix: no Skiff repair for it.
    let drifted = json(&aws.run(&["reconcile", "web", "--format", "json"]));
    let differences = drifted["data"]["services"][0]["differences"].as_array().cloned().unwrap_or_default();
    let role =
        differences.iter().find(|d| d["path"] == "identity.permissions").unwrap_or_else(|| panic!("{drifted:#}"));
    assert_eq!(role["terraform_owned"], "role/web", "{role:#}");
    assert!(role["fix"].is_null() && role["repair"].as_str().unwrap().contains("terraform plan"), "{role:#}");
    assert_eq!(aws.run(&["state", "verify", "--format", "json"]).code, 0);
}

#[test]
fn a_two_region_service_fails_over_with_a_cross_region_replica_and_route53_weights() {
    let s = Sandbox::new();
    let aws = Aws::ready(&s);
    let hello = skiff_testkit::workspace_bin("hello");
    let yaml = format!(
        "service: orders\nartifact: {{path: {}}}\nrun: {{command: [hello]}}\nport: 8080\n\
         instances: {{min: 1, max: 2, desired: 1}}\n\
         regions: [us-east-1, us-west-2]\n\
         secrets: {{DATABASE_URL: secret://orders-db/url}}\n\
         database: {{name: orders-db, engine: postgres, version: \"16\"}}\n\
         rollout: {{canary: {{steps: [100], bake: 0s}}, drain_timeout: 1s, step_timeout: 2m}}\n",
        hello.display()
    );
    std::fs::write(s.path().join("orders.yaml"), yaml).unwrap();
    let r = aws.run(&["deploy", "-f", "orders.yaml", "--yes", "--format", "json"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);

    let p = aws.provider();
    let conf = |region: &str| {
        block(
            aws_config::defaults(aws_config::BehaviorVersion::latest())
                .endpoint_url(aws.moto.endpoint())
                .region(aws_config::Region::new(region.to_owned()))
                .credentials_provider(aws_sdk_s3::config::Credentials::new("testing", "testing", None, None, "moto"))
                .load(),
        )
    };
    let west = aws_sdk_rds::Client::new(&conf("us-west-2"));
    let replica = || {
        block(async {
            west.describe_db_instances()
                .db_instance_identifier("orders-db-us-west-2")
                .send()
                .await
                .unwrap()
                .db_instances()[0]
                .clone()
        })
    };
    // The replica lives in us-west-2 (its own regional client) and follows the primary.
    assert!(replica().read_replica_source_db_instance_identifier().is_some_and(|s| s.contains("orders-db")));
    // us-west-2 runs its own group and load balancer, made by that region's clients in
    // its own VPC; the home region has neither.
    let groups = |region: &str| {
        let c = aws_sdk_autoscaling::Client::new(&conf(region));
        let out = block(async { c.describe_auto_scaling_groups().send().await.unwrap() });
        out.auto_scaling_groups()
            .iter()
            .filter_map(|g| g.auto_scaling_group_name().map(str::to_owned))
            .collect::<Vec<_>>()
    };
    let (east_groups, west_groups) = (groups("us-east-1"), groups("us-west-2"));
    assert!(west_groups.iter().all(|g| g.ends_with("-us-west-2")) && west_groups.len() == 1, "{west_groups:?}");
    assert!(east_groups.iter().all(|g| !g.ends_with("-us-west-2")) && east_groups.len() == 1, "{east_groups:?}");
    let west_elb = aws_sdk_elasticloadbalancingv2::Client::new(&conf("us-west-2"));
    let lbs = block(async { west_elb.describe_load_balancers().send().await.unwrap() });
    let west_lb = lbs.load_balancers().first().expect("a load balancer in us-west-2").clone();
    let east_elb = aws_sdk_elasticloadbalancingv2::Client::new(&conf("us-east-1"));
    let east_lbs = block(async { east_elb.describe_load_balancers().send().await.unwrap() });
    assert_eq!(east_lbs.load_balancers().len(), 1, "only the home region's own load balancer there");
    let west_vpc = west_lb.vpc_id().unwrap().to_owned();
    assert_ne!(Some(west_vpc.as_str()), east_lbs.load_balancers()[0].vpc_id(), "each region's own VPC");
    // The consumers' secret is replicated to us-west-2, where its instances read it.
    let sm_west = aws_sdk_secretsmanager::Client::new(&conf("us-west-2"));
    let replica_secret = block(async { sm_west.describe_secret().secret_id("skiff/orders-db").send().await });
    assert!(replica_secret.is_ok(), "a replica of the secret in us-west-2: {replica_secret:?}");
    // The private zone resolves in both regions' VPCs, and the west record points at the west ALB.
    let r53 = aws_sdk_route53::Client::new(&conf("us-east-1"));
    let zones = block(async { r53.list_hosted_zones().send().await.unwrap() });
    let zone = zones.hosted_zones().iter().find(|z| z.name() == "skiff.internal.").unwrap().id().to_owned();
    let attached = block(async { r53.get_hosted_zone().id(&zone).send().await.unwrap() });
    assert!(attached.vpcs().iter().any(|v| v.vpc_id() == Some(west_vpc.as_str())), "{attached:?}");
    let sets = block(async { r53.list_resource_record_sets().hosted_zone_id(&zone).send().await.unwrap() });
    let west_record = sets.resource_record_sets().iter().find(|r| r.set_identifier() == Some("us-west-2")).unwrap();
    assert_eq!(west_record.resource_records()[0].value(), west_lb.dns_name().unwrap());

    let front = || block(p.traffic().describe_front("orders")).unwrap().expect("a Route 53 front");
    let weight = |region: &str| front().weights.iter().find(|w| w.region == region).map(|w| w.weight);
    assert_eq!((weight("us-east-1"), weight("us-west-2")), (Some(100), Some(0)));
    assert_eq!(front().address, "orders.skiff.internal");

    // RDS reports no log positions: the lag is unknown, so a switchover is refused and a
    // failover needs the loss accepted.
    let refused = aws.run(&["failover", "stack", "orders", "--to", "us-west-2", "--yes", "--format", "json"]);
    assert_eq!(json(&refused)["code"], "POLICY_DENIED", "{}", refused.stdout);
    let args = ["failover", "stack", "orders", "--to", "us-west-2", "--mode", "failover", "--accept-data-loss"];
    let gated = aws.run(&[&args[..], &["--yes", "--format", "json"]].concat());
    assert_eq!(json(&gated)["code"], "APPROVAL_REQUIRED", "{}", gated.stdout);
    let op = json(&gated)["operation_id"].as_str().unwrap().to_owned();
    let done = aws.run(&["saga", "approve", &op, "--yes", "--format", "json"]);
    assert_eq!(json(&done)["code"], "OK", "{}\n{}", done.stdout, done.stderr);

    // PromoteReadReplica was called: Skiff tagged the instance it promoted (moto keeps
    // the source identifier where RDS clears it) and reads it as the primary.
    let arn = replica().db_instance_arn().unwrap().to_owned();
    let tags = block(async { west.list_tags_for_resource().resource_name(&arn).send().await.unwrap() });
    assert!(tags.tag_list().iter().any(|t| t.key() == Some("skiff:promoted")), "{tags:?}");
    let role = block(p.database().replication("orders-db-us-west-2")).unwrap().role;
    assert_eq!(role, skiff_pluginapi::ReplicaRole::Primary, "the replica is promoted");
    assert_eq!((weight("us-east-1"), weight("us-west-2")), (Some(0), Some(100)), "Route 53 weights moved");
    let east = aws_sdk_rds::Client::new(&conf("us-east-1"));
    let old = block(async {
        east.describe_db_instances().db_instance_identifier("orders-db").send().await.unwrap().db_instances()[0].clone()
    });
    assert!(matches!(old.db_instance_status(), Some("stopped" | "stopping")), "the old primary is fenced: {old:?}");
    let sm = aws_sdk_secretsmanager::Client::new(&conf("us-east-1"));
    let v = block(async { sm.get_secret_value().secret_id("skiff/orders-db").send().await.unwrap() });
    let map: std::collections::BTreeMap<String, String> = serde_json::from_str(v.secret_string().unwrap()).unwrap();
    let url = map["url"].clone();
    let endpoint = replica().endpoint().and_then(|e| e.address()).unwrap().to_owned();
    assert!(url.contains(&endpoint), "the consumers' secret points at the promoted replica: {url}");
    let west_value = block(async { sm_west.get_secret_value().secret_id("skiff/orders-db").send().await.unwrap() });
    let west_map: std::collections::BTreeMap<String, String> =
        serde_json::from_str(west_value.secret_string().unwrap()).unwrap();
    assert_eq!(west_map["url"], url, "us-west-2's replica of the secret follows the repoint");
    let status = json(&aws.run(&["status", "orders", "--format", "json"]));
    assert_eq!(status["data"]["front"]["regions"][1]["weight"], 100, "{status}");
}
