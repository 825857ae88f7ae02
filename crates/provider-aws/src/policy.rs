//! IAM policy documents: a service role's least-privilege inline policy translated from
//! Skiff's provider-neutral permissions (and back, so `describe_role` reports exactly
//! what was asked for), and the policy Skiff itself needs (`skiff iam policy`).
//! No statement ever carries a wildcard action.

use serde::{Deserialize, Serialize};
use skiff_pluginapi::Permission;

/// Where ARNs point: the account, region and state bucket of this provider.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Scope {
    /// AWS partition, `aws` outside China and GovCloud.
    pub partition: String,
    /// Account id.
    pub account: String,
    /// Region.
    pub region: String,
    /// State bucket name.
    pub bucket: String,
    /// Key prefix of the state inside the bucket (empty or ending in `/`).
    pub prefix: String,
}

/// An IAM policy document.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct PolicyDocument {
    /// Always `2012-10-17`.
    pub version: String,
    /// Statements, in order.
    pub statement: Vec<Statement>,
}

impl PolicyDocument {
    /// Parses a document as IAM returns it: URL-encoded (RFC 3986) JSON.
    pub fn from_iam(text: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(&url_decode(text))
    }
}

/// Undoes RFC 3986 percent-encoding; text without escapes comes back unchanged.
pub(crate) fn url_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = (bytes[i] == b'%' && i + 2 < bytes.len())
            .then(|| u8::from_str_radix(text.get(i + 1..i + 3)?, 16).ok())
            .flatten();
        match hex {
            Some(b) => {
                out.push(b);
                i += 3;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// One Allow statement.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Statement {
    /// Names what the statement is for; also how it is read back.
    pub sid: String,
    /// Always `Allow`.
    pub effect: String,
    /// Actions, each naming one API call.
    pub action: Vec<String>,
    /// Resources.
    pub resource: Vec<String>,
}

/// How each neutral action maps onto IAM: statement id prefix, IAM actions.
const NEUTRAL: [(&str, &str, &[&str]); 4] = [
    ("state:read", "StateRead", &["s3:GetObject"]),
    ("state:write", "StateWrite", &["s3:GetObject", "s3:PutObject"]),
    ("logs:write", "LogsWrite", &["logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams"]),
    ("secrets:read", "SecretsRead", &["secretsmanager:GetSecretValue", "secretsmanager:DescribeSecret"]),
];
const PASSTHROUGH: &str = "Allow";
/// Where the ledger's documents start inside the state prefix.
const LEDGER_ROOT: &str = "v1/";

impl Scope {
    fn object(&self, key: &str) -> String {
        // Ledger keys live under its root (`skiff_state::keys::ROOT`) inside the prefix.
        format!("arn:{}:s3:::{}/{}{LEDGER_ROOT}{key}", self.partition, self.bucket, self.prefix)
    }

    fn log_group(&self, group: &str) -> String {
        format!("arn:{}:logs:{}:{}:log-group:{group}:*", self.partition, self.region, self.account)
    }

    fn secret(&self, name: &str) -> String {
        // Secrets Manager appends a random suffix to a secret's ARN.
        format!(
            "arn:{}:secretsmanager:{}:{}:secret:{}-*",
            self.partition,
            self.region,
            self.account,
            crate::names::secret(name)
        )
    }

    fn resource_of(&self, action: &str, resource: &str) -> String {
        match action {
            "state:read" | "state:write" => self.object(resource),
            "logs:write" => self.log_group(resource),
            "secrets:read" => self.secret(resource),
            _ => resource.to_owned(),
        }
    }

    fn neutral_resource(&self, action: &str, arn: &str) -> Option<String> {
        let (head, tail) = match action {
            "state:read" | "state:write" => (self.object(""), String::new()),
            "logs:write" => {
                (format!("arn:{}:logs:{}:{}:log-group:", self.partition, self.region, self.account), ":*".to_owned())
            }
            "secrets:read" => (
                format!("arn:{}:secretsmanager:{}:{}:secret:skiff/", self.partition, self.region, self.account),
                "-*".to_owned(),
            ),
            _ => return Some(arn.to_owned()),
        };
        arn.strip_prefix(head.as_str())?.strip_suffix(tail.as_str()).map(str::to_owned)
    }

    /// The inline policy of a service role: one statement per permission.
    pub fn role_policy(&self, permissions: &[Permission]) -> PolicyDocument {
        let statement = permissions
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let (sid, actions) = NEUTRAL
                    .iter()
                    .find(|(n, _, _)| *n == p.action)
                    .map_or((PASSTHROUGH, vec![p.action.clone()]), |(_, sid, actions)| {
                        (*sid, actions.iter().map(|a| (*a).to_owned()).collect())
                    });
                Statement {
                    sid: format!("{sid}{i}"),
                    effect: "Allow".to_owned(),
                    action: actions,
                    resource: vec![self.resource_of(&p.action, &p.resource)],
                }
            })
            .collect();
        PolicyDocument { version: "2012-10-17".to_owned(), statement }
    }

    /// The neutral permissions a role policy written by [`Scope::role_policy`] grants;
    /// `None` when it was not written by Skiff (or was edited by hand).
    pub fn permissions_of(&self, doc: &PolicyDocument) -> Option<Vec<Permission>> {
        doc.statement
            .iter()
            .map(|s| {
                let prefix = s.sid.trim_end_matches(|c: char| c.is_ascii_digit());
                let action = match NEUTRAL.iter().find(|(_, sid, _)| *sid == prefix) {
                    Some((neutral, _, _)) => (*neutral).to_owned(),
                    None if prefix == PASSTHROUGH && s.action.len() == 1 => s.action[0].clone(),
                    None => return None,
                };
                let [arn] = s.resource.as_slice() else { return None };
                Some(Permission { resource: self.neutral_resource(&action, arn)?, action })
            })
            .collect()
    }
}

/// The policy the identity running Skiff (CLI, skiffd, skiff-worker) needs: read and
/// write its own state bucket, and manage only the resources it creates. Actions on
/// resources that carry Skiff's tags are conditioned on them where IAM allows.
pub fn skiff_policy(scope: &Scope) -> PolicyDocument {
    let any_in = |service: &str, kind: &str| {
        format!("arn:{}:{service}:{}:{}:{kind}", scope.partition, scope.region, scope.account)
    };
    let s = |sid: &str, actions: &[&str], resources: Vec<String>| Statement {
        sid: sid.to_owned(),
        effect: "Allow".to_owned(),
        action: actions.iter().map(|a| (*a).to_owned()).collect(),
        resource: resources,
    };
    let bucket = format!("arn:{}:s3:::{}", scope.partition, scope.bucket);
    let statement = vec![
        s(
            "StateBucket",
            &[
                "s3:CreateBucket",
                "s3:GetBucketVersioning",
                "s3:PutBucketVersioning",
                "s3:GetEncryptionConfiguration",
                "s3:PutEncryptionConfiguration",
                "s3:GetBucketPublicAccessBlock",
                "s3:PutBucketPublicAccessBlock",
                "s3:GetBucketPolicy",
                "s3:PutBucketPolicy",
                "s3:ListBucket",
            ],
            vec![bucket.clone()],
        ),
        s(
            "StateObjects",
            &["s3:GetObject", "s3:PutObject", "s3:DeleteObject"],
            vec![format!("{bucket}/{}*", scope.prefix)],
        ),
        s(
            "Describe",
            &[
                "ec2:DescribeImages",
                "ec2:DescribeInstances",
                "ec2:DescribeLaunchTemplates",
                "ec2:DescribeSecurityGroups",
                "ec2:DescribeSubnets",
                "ec2:DescribeVpcs",
                "autoscaling:DescribeAutoScalingGroups",
                "elasticloadbalancing:DescribeListeners",
                "elasticloadbalancing:DescribeLoadBalancers",
                "elasticloadbalancing:DescribeTags",
                "elasticloadbalancing:DescribeTargetGroups",
                "elasticloadbalancing:DescribeTargetHealth",
                "cloudwatch:GetMetricStatistics",
                "logs:DescribeLogGroups",
                "rds:DescribeDBInstances",
                "rds:DescribeDBSnapshots",
                "kms:ListAliases",
                "sts:GetCallerIdentity",
            ],
            // These calls do not support resource-level permissions.
            vec!["*".to_owned()],
        ),
        s(
            "Compute",
            &[
                "ec2:CreateLaunchTemplate",
                "ec2:DeleteLaunchTemplate",
                "ec2:CreateSecurityGroup",
                "ec2:AuthorizeSecurityGroupIngress",
                "ec2:CreateTags",
                "ec2:RunInstances",
                "autoscaling:CreateAutoScalingGroup",
                "autoscaling:UpdateAutoScalingGroup",
                "autoscaling:DeleteAutoScalingGroup",
                "autoscaling:TerminateInstanceInAutoScalingGroup",
                "autoscaling:CreateOrUpdateTags",
            ],
            vec![
                any_in("ec2", "launch-template/*"),
                any_in("ec2", "security-group/*"),
                any_in("ec2", "instance/*"),
                any_in("ec2", "volume/*"),
                any_in("ec2", "network-interface/*"),
                any_in("ec2", "subnet/*"),
                any_in("ec2", "vpc/*"),
                format!("arn:{}:ec2:{}::image/*", scope.partition, scope.region),
                any_in("autoscaling", "autoScalingGroup:*:autoScalingGroupName/*"),
            ],
        ),
        s(
            "Traffic",
            &[
                "elasticloadbalancing:CreateLoadBalancer",
                "elasticloadbalancing:CreateListener",
                "elasticloadbalancing:ModifyListener",
                "elasticloadbalancing:CreateTargetGroup",
                "elasticloadbalancing:ModifyTargetGroupAttributes",
                "elasticloadbalancing:DeleteTargetGroup",
                "elasticloadbalancing:RegisterTargets",
                "elasticloadbalancing:DeregisterTargets",
                "elasticloadbalancing:AddTags",
            ],
            vec![
                any_in("elasticloadbalancing", "loadbalancer/app/skiff-*"),
                any_in("elasticloadbalancing", "listener/app/skiff-*"),
                any_in("elasticloadbalancing", "targetgroup/sk-*"),
            ],
        ),
        s(
            "Identity",
            &[
                "iam:CreateRole",
                "iam:GetRole",
                "iam:DeleteRole",
                "iam:TagRole",
                "iam:PutRolePolicy",
                "iam:GetRolePolicy",
                "iam:DeleteRolePolicy",
                "iam:CreateInstanceProfile",
                "iam:GetInstanceProfile",
                "iam:DeleteInstanceProfile",
                "iam:AddRoleToInstanceProfile",
                "iam:RemoveRoleFromInstanceProfile",
                "iam:PassRole",
            ],
            vec![
                format!("arn:{}:iam::{}:role/skiff-*", scope.partition, scope.account),
                format!("arn:{}:iam::{}:instance-profile/skiff-*", scope.partition, scope.account),
            ],
        ),
        s(
            "Logs",
            &["logs:CreateLogGroup", "logs:PutRetentionPolicy", "logs:TagResource", "logs:FilterLogEvents"],
            vec![any_in("logs", "log-group:/skiff/*")],
        ),
        s(
            "Secrets",
            &[
                "secretsmanager:CreateSecret",
                "secretsmanager:DescribeSecret",
                "secretsmanager:GetSecretValue",
                "secretsmanager:PutSecretValue",
                "secretsmanager:DeleteSecret",
                "secretsmanager:TagResource",
            ],
            vec![any_in("secretsmanager", "secret:skiff/*")],
        ),
        s(
            "Keys",
            &[
                "kms:CreateKey",
                "kms:CreateAlias",
                "kms:DescribeKey",
                "kms:Encrypt",
                "kms:Decrypt",
                "kms:GenerateDataKey",
            ],
            vec![any_in("kms", "key/*"), any_in("kms", "alias/skiff")],
        ),
        s(
            "Databases",
            &[
                "rds:CreateDBInstance",
                "rds:AddTagsToResource",
                "rds:CreateDBSnapshot",
                "rds:RestoreDBInstanceFromDBSnapshot",
                "rds:DeleteDBInstance",
            ],
            vec![any_in("rds", "db:*"), any_in("rds", "snapshot:*"), any_in("rds", "subgrp:*")],
        ),
    ];
    PolicyDocument { version: "2012-10-17".to_owned(), statement }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scope() -> Scope {
        Scope {
            partition: "aws".into(),
            account: "123456789012".into(),
            region: "eu-west-1".into(),
            bucket: "acme-skiff".into(),
            prefix: "prod/".into(),
        }
    }

    fn p(action: &str, resource: &str) -> Permission {
        Permission { action: action.into(), resource: resource.into() }
    }

    #[test]
    fn a_role_policy_reads_back_as_exactly_its_permissions() {
        let perms = vec![
            p("logs:write", "/skiff/production/web"),
            p("s3:GetObject", "arn:aws:s3:::assets/*"),
            p("secrets:read", "db"),
            p("state:read", "blobs/sha256/*"),
            p("state:read", "releases/web/*"),
            p("state:write", "members/web/*"),
        ];
        let doc = scope().role_policy(&perms);
        assert_eq!(scope().permissions_of(&doc), Some(perms));
        let json = serde_json::to_value(&doc).unwrap();
        assert_eq!(
            json["Statement"][0]["Resource"][0],
            "arn:aws:logs:eu-west-1:123456789012:log-group:/skiff/production/web:*"
        );
        assert_eq!(
            json["Statement"][2]["Resource"][0],
            "arn:aws:secretsmanager:eu-west-1:123456789012:secret:skiff/db-*"
        );
        assert_eq!(json["Statement"][4]["Resource"][0], "arn:aws:s3:::acme-skiff/prod/v1/releases/web/*");
    }

    #[test]
    fn iam_documents_decode_from_their_url_encoding() {
        assert_eq!(url_decode("%7B%22a%22%3A%22b%2Fc%22%7D"), r#"{"a":"b/c"}"#);
        assert_eq!(url_decode(r#"{"a":1}"#), r#"{"a":1}"#);
        let doc = scope().role_policy(&[p("state:read", "x")]);
        let text = serde_json::to_string(&doc).unwrap().replace('{', "%7B").replace('"', "%22");
        assert_eq!(PolicyDocument::from_iam(&text).unwrap(), doc);
    }

    #[test]
    fn no_policy_names_a_wildcard_action() {
        let docs = [skiff_policy(&scope()), scope().role_policy(&[p("state:read", "x")])];
        for doc in docs {
            for st in &doc.statement {
                for a in &st.action {
                    assert!(!a.contains('*'), "{} allows {a}", st.sid);
                    assert_eq!(a.split(':').count(), 2, "{a} names one service and one call");
                }
            }
        }
    }
}
