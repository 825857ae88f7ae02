//! `skiff terraform generate`: a service's stable infrastructure as Terraform for the
//! AWS provider — the instance role with its least-privilege policy and profile, the
//! log group, the load balancer's and instances' security groups, the ALB and its
//! listener, the Secrets Manager secrets the service reads (never their values) and
//! the RDS instance — named exactly as Skiff's AWS provider names them, so a later
//! deploy finds them. What belongs to a release stays Skiff's: each release's launch
//! template, auto scaling group and target group, and the listener's weights (the
//! listener's default action is ignored by Terraform). Every resource that takes tags
//! carries `skiff:logical-id`. `outputs.tf` ends in one `skiff` output that
//! `skiff adopt terraform` reads back.

use std::collections::BTreeMap;

use serde::Serialize;
use skiff_ir::ServiceIr;
use skiff_provider_aws::names;
use skiff_provider_aws::policy::Scope;

use crate::hcl::{Item, Value, attr, block, file, raw, s};

/// One resource the files declare.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Declared {
    /// Terraform address: `aws_lb.web`.
    pub address: String,
    /// Skiff's logical id: `lb-rule/web`.
    pub logical_id: String,
    /// The name AWS knows it by.
    pub name: String,
}

/// The generated module.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Generated {
    /// File name → content (`main.tf`, `variables.tf`, `outputs.tf`).
    pub files: BTreeMap<String, String>,
    /// What it declares, in file order.
    pub resources: Vec<Declared>,
}

/// A Terraform identifier from a Skiff name: `orders-db` → `orders_db`.
fn ident(name: &str) -> String {
    let mut out: String = name.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).collect();
    if !out.starts_with(|c: char| c.is_ascii_alphabetic()) {
        out.insert(0, 'r');
    }
    out
}

fn tags(service: &str, logical_id: &str) -> Item {
    attr(
        "tags",
        Value::Object(vec![
            (names::TAG_SERVICE.to_owned(), s(service)),
            ("skiff:logical-id".to_owned(), s(logical_id)),
        ]),
    )
}

struct Module {
    blocks: Vec<Item>,
    declared: Vec<Declared>,
}

impl Module {
    fn resource(&mut self, kind: &str, name: &str, logical_id: &str, aws_name: &str, body: Vec<Item>) {
        self.declared.push(Declared {
            address: format!("{kind}.{name}"),
            logical_id: logical_id.to_owned(),
            name: aws_name.to_owned(),
        });
        self.blocks.push(block("resource", &[kind, name], body));
    }
}

/// The role's policy, with Terraform interpolations for what is only known there.
fn role_policy(ir: &ServiceIr) -> String {
    let scope = Scope {
        partition: "${data.aws_partition.current.partition}".to_owned(),
        account: "${data.aws_caller_identity.current.account_id}".to_owned(),
        region: "${var.region}".to_owned(),
        bucket: "${var.state_bucket}".to_owned(),
        prefix: "${var.state_prefix}".to_owned(),
    };
    let permissions: Vec<skiff_pluginapi::Permission> = skiff_compiler::permissions(ir)
        .into_iter()
        .map(|p| skiff_pluginapi::Permission { action: p.action, resource: p.resource })
        .collect();
    serde_json::to_string_pretty(&scope.role_policy(&permissions)).unwrap_or_default()
}

const TRUST: &str = r#"{
  "Version": "2012-10-17",
  "Statement": [
    {
      "Effect": "Allow",
      "Principal": { "Service": "ec2.amazonaws.com" },
      "Action": "sts:AssumeRole"
    }
  ]
}"#;

fn header() -> Vec<Item> {
    vec![
        block(
            "terraform",
            &[],
            vec![
                attr("required_version", s(">= 1.5")),
                Item::Blank,
                block(
                    "required_providers",
                    &[],
                    vec![attr(
                        "aws",
                        Value::Object(vec![
                            ("source".to_owned(), s("hashicorp/aws")),
                            ("version".to_owned(), s(">= 5.0")),
                        ]),
                    )],
                ),
            ],
        ),
        block("provider", &["aws"], vec![attr("region", raw("var.region"))]),
        block("data", &["aws_partition", "current"], vec![]),
        block("data", &["aws_caller_identity", "current"], vec![]),
        block("data", &["aws_vpc", "default"], vec![attr("default", raw("true"))]),
        block(
            "data",
            &["aws_subnets", "default"],
            vec![block(
                "filter",
                &[],
                vec![attr("name", s("vpc-id")), attr("values", Value::List(vec![raw("data.aws_vpc.default.id")]))],
            )],
        ),
        block(
            "locals",
            &[],
            vec![
                attr("vpc_id", raw("var.vpc_id != \"\" ? var.vpc_id : data.aws_vpc.default.id")),
                attr("subnet_ids", raw("length(var.subnet_ids) > 0 ? var.subnet_ids : data.aws_subnets.default.ids")),
            ],
        ),
    ]
}

fn identity(m: &mut Module, ir: &ServiceIr) {
    let svc = &ir.service;
    let role = skiff_compiler::role_name(ir);
    let id = ident(svc);
    m.resource(
        "aws_iam_role",
        &id,
        &format!("role/{svc}"),
        &role,
        vec![
            attr("name", s(&role)),
            attr("description", s(format!("Skiff: instances of {svc}"))),
            Item::Blank,
            attr("assume_role_policy", Value::Heredoc(TRUST.to_owned())),
            Item::Blank,
            tags(svc, &format!("role/{svc}")),
        ],
    );
    m.resource(
        "aws_iam_role_policy",
        &id,
        &format!("policy/{svc}"),
        "skiff",
        vec![
            attr("name", s("skiff")),
            attr("role", raw(format!("aws_iam_role.{id}.id"))),
            Item::Blank,
            attr("policy", Value::Heredoc(role_policy(ir))),
        ],
    );
    m.resource(
        "aws_iam_instance_profile",
        &id,
        &format!("role/{svc}"),
        &role,
        vec![
            attr("name", s(&role)),
            attr("role", raw(format!("aws_iam_role.{id}.name"))),
            Item::Blank,
            tags(svc, &format!("role/{svc}")),
        ],
    );
    let days = ir.logs.retention.as_millis() / 86_400_000;
    m.resource(
        "aws_cloudwatch_log_group",
        &id,
        &format!("log-group/{svc}"),
        &ir.logs.group,
        vec![
            attr("name", s(&ir.logs.group)),
            attr("retention_in_days", raw(days.max(1).to_string())),
            Item::Blank,
            tags(svc, &format!("log-group/{svc}")),
        ],
    );
}

fn network(m: &mut Module, ir: &ServiceIr, port: u16) {
    let svc = &ir.service;
    let id = ident(svc);
    let lb_sg = names::lb_security_group(svc);
    let rule = format!("lb-rule/{svc}");
    let cidr = |from: &str| {
        vec![
            attr("from_port", raw(port.to_string())),
            attr("to_port", raw(port.to_string())),
            attr("protocol", s("tcp")),
            attr("description", s(from)),
        ]
    };
    let mut lb_ingress = cidr("clients");
    lb_ingress.push(attr("cidr_blocks", Value::List(vec![s("0.0.0.0/0")])));
    let egress = vec![
        attr("from_port", raw("0")),
        attr("to_port", raw("0")),
        attr("protocol", s("-1")),
        attr("cidr_blocks", Value::List(vec![s("0.0.0.0/0")])),
    ];
    m.resource(
        "aws_security_group",
        &format!("{id}_lb"),
        &rule,
        &lb_sg,
        vec![
            attr("name", s(&lb_sg)),
            attr("description", s(format!("Skiff: {lb_sg}"))),
            attr("vpc_id", raw("local.vpc_id")),
            Item::Blank,
            block("ingress", &[], lb_ingress),
            Item::Blank,
            block("egress", &[], egress.clone()),
            Item::Blank,
            tags(svc, &rule),
        ],
    );
    let inst_sg = names::instance_security_group(svc);
    let mut inst_ingress = cidr("load balancer");
    inst_ingress.push(attr("security_groups", Value::List(vec![raw(format!("aws_security_group.{id}_lb.id"))])));
    m.resource(
        "aws_security_group",
        &format!("{id}_instances"),
        &format!("launch-config/{svc}"),
        &inst_sg,
        vec![
            attr("name", s(&inst_sg)),
            attr("description", s(format!("Skiff: {inst_sg}"))),
            attr("vpc_id", raw("local.vpc_id")),
            Item::Blank,
            block("ingress", &[], inst_ingress),
            Item::Blank,
            block("egress", &[], egress),
            Item::Blank,
            tags(svc, &format!("launch-config/{svc}")),
        ],
    );
    let lb = names::load_balancer(svc);
    m.resource(
        "aws_lb",
        &id,
        &rule,
        &lb,
        vec![
            attr("name", s(&lb)),
            attr("load_balancer_type", s("application")),
            attr("internal", raw("false")),
            attr("subnets", raw("local.subnet_ids")),
            attr("security_groups", Value::List(vec![raw(format!("aws_security_group.{id}_lb.id"))])),
            Item::Blank,
            tags(svc, &rule),
        ],
    );
    m.resource(
        "aws_lb_listener",
        &id,
        &rule,
        &format!("{lb}:{port}"),
        vec![
            attr("load_balancer_arn", raw(format!("aws_lb.{id}.arn"))),
            attr("port", raw(port.to_string())),
            attr("protocol", s("HTTP")),
            Item::Blank,
            block(
                "default_action",
                &[],
                vec![
                    attr("type", s("fixed-response")),
                    Item::Blank,
                    block(
                        "fixed_response",
                        &[],
                        vec![
                            attr("content_type", s("text/plain")),
                            attr("message_body", s("no release of this service is serving yet")),
                            attr("status_code", s("503")),
                        ],
                    ),
                ],
            ),
            Item::Blank,
            // Skiff moves the weights between release target groups.
            block("lifecycle", &[], vec![attr("ignore_changes", Value::List(vec![raw("default_action")]))]),
            Item::Blank,
            tags(svc, &rule),
        ],
    );
}

fn secrets(m: &mut Module, ir: &ServiceIr) {
    let svc = &ir.service;
    let mut by_name: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (env, r) in &ir.secrets {
        by_name.entry(r.name()).or_default().push(env);
    }
    let db = ir.database.as_ref().map(|d| d.name.as_str());
    for (name, envs) in by_name {
        // The database's own secret is created with the database (it holds its URL).
        if Some(name) == db {
            continue;
        }
        let logical = format!("secret-ref/{svc}/{}", envs[0]);
        m.resource(
            "aws_secretsmanager_secret",
            &ident(name),
            &logical,
            &names::secret(name),
            vec![
                attr("name", s(names::secret(name))),
                attr(
                    "description",
                    s(format!("Skiff: secret://{name}/… read by {svc}; values are set with `skiff secrets set`")),
                ),
                attr("kms_key_id", raw("var.kms_key_id")),
                Item::Blank,
                tags(svc, &logical),
            ],
        );
    }
}

fn database(m: &mut Module, ir: &ServiceIr) {
    let Some(db) = &ir.database else { return };
    let svc = &ir.service;
    let id = ident(&db.name);
    let logical = format!("database/{}", db.name);
    let days = db.backup_retention.as_millis() / 86_400_000;
    m.resource(
        "aws_db_instance",
        &id,
        &logical,
        &db.name,
        vec![
            attr("identifier", s(&db.name)),
            attr("engine", s("postgres")),
            attr("engine_version", s(&db.version)),
            attr("instance_class", s(&db.instance_class)),
            attr("allocated_storage", raw(db.storage_gib.to_string())),
            attr("db_name", s(db.name.replace('-', "_"))),
            attr("username", s("skiff")),
            attr("password", raw("var.database_password")),
            attr("multi_az", raw(db.multi_az.to_string())),
            attr("backup_retention_period", raw(days.max(1).to_string())),
            attr("storage_encrypted", raw("true")),
            attr("publicly_accessible", raw("false")),
            attr("skip_final_snapshot", raw("false")),
            attr("final_snapshot_identifier", s(format!("{}-final", db.name))),
            Item::Blank,
            tags(svc, &logical),
        ],
    );
    m.resource(
        "aws_secretsmanager_secret",
        &format!("{id}_url"),
        &logical,
        &names::secret(&db.name),
        vec![
            attr("name", s(names::secret(&db.name))),
            attr("description", s(format!("Skiff: secret://{}/url, the connection URL of {}", db.name, db.name))),
            attr("kms_key_id", raw("var.kms_key_id")),
            Item::Blank,
            tags(svc, &logical),
        ],
    );
}

fn variables(ir: &ServiceIr) -> String {
    let var = |name: &str, ty: &str, description: &str, default: Option<Value>| {
        let mut body = vec![attr("type", raw(ty)), attr("description", s(description))];
        if let Some(d) = default {
            body.push(attr("default", d));
        }
        block("variable", &[name], body)
    };
    let mut blocks = vec![
        var(
            "region",
            "string",
            "The AWS region.",
            Some(s(ir.regions.first().cloned().unwrap_or_else(|| "us-east-1".to_owned()))),
        ),
        var("state_bucket", "string", "Skiff's state bucket, which instances read releases from.", None),
        var(
            "state_prefix",
            "string",
            "The key prefix of Skiff's state in the bucket, ending in / when set.",
            Some(s("")),
        ),
        var("vpc_id", "string", "The VPC; empty for the default VPC.", Some(s(""))),
        var(
            "subnet_ids",
            "list(string)",
            "Subnets for the load balancer; empty for the default VPC's.",
            Some(Value::List(vec![])),
        ),
        var(
            "kms_key_id",
            "string",
            "The KMS key that encrypts secrets; null for Secrets Manager's default.",
            Some(raw("null")),
        ),
    ];
    if ir.database.is_some() {
        let mut b =
            var("database_password", "string", "The database's master password (Skiff rotates it later).", None);
        if let Item::Block(_, _, body) = &mut b {
            body.push(attr("sensitive", raw("true")));
        }
        blocks.push(b);
    }
    file(&blocks)
}

fn outputs(ir: &ServiceIr, declared: &[Declared]) -> String {
    let id = ident(&ir.service);
    let mut fields = vec![
        ("service".to_owned(), s(&ir.service)),
        ("role_arn".to_owned(), raw(format!("aws_iam_role.{id}.arn"))),
        ("log_group".to_owned(), raw(format!("aws_cloudwatch_log_group.{id}.name"))),
    ];
    if ir.network.is_some() {
        fields.push(("load_balancer_arn".to_owned(), raw(format!("aws_lb.{id}.arn"))));
        fields.push(("load_balancer_dns".to_owned(), raw(format!("aws_lb.{id}.dns_name"))));
        fields.push(("listener_arn".to_owned(), raw(format!("aws_lb_listener.{id}.arn"))));
    }
    if let Some(db) = &ir.database {
        fields.push(("database_endpoint".to_owned(), raw(format!("aws_db_instance.{}.address", ident(&db.name)))));
    }
    let owned = declared.iter().map(|d| (d.address.clone(), s(&d.logical_id))).collect();
    fields.push(("resources".to_owned(), Value::Object(owned)));
    file(&[block(
        "output",
        &["skiff"],
        vec![
            attr("description", s("What Skiff reads back: `skiff adopt terraform` records these as Terraform-owned.")),
            Item::Blank,
            attr("value", Value::Object(fields)),
        ],
    )])
}

/// The module for `ir`.
pub fn generate(ir: &ServiceIr) -> Generated {
    let mut m = Module { blocks: header(), declared: Vec::new() };
    identity(&mut m, ir);
    if let Some(net) = &ir.network {
        network(&mut m, ir, net.port);
    }
    secrets(&mut m, ir);
    database(&mut m, ir);
    let banner = format!(
        "# Generated by `skiff terraform generate` for the service {} ({}).\n# Terraform owns this stable shape; each release's launch template, auto scaling\n# group, target group and the listener's weights stay Skiff's.\n\n",
        ir.service, ir.environment
    );
    let mut files = BTreeMap::new();
    files.insert("main.tf".to_owned(), banner + &file(&m.blocks));
    files.insert("variables.tf".to_owned(), variables(ir));
    files.insert("outputs.tf".to_owned(), outputs(ir, &m.declared));
    Generated { files, resources: m.declared }
}
