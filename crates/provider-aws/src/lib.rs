//! The AWS provider: an instance group is an auto scaling group per release launched
//! from its own launch template (IMDSv2 only, no SSH, user data that installs and
//! starts `skiff-runner`); traffic is an ALB listener whose forward action carries the
//! canary weights; identity is an IAM role + instance profile with a least-privilege
//! inline policy; plus CloudWatch Logs, Secrets Manager, KMS, RDS and the S3 state
//! bucket. Every creation is idempotent by name and tagged `skiff:service`,
//! `skiff:release`, `skiff:operation`; `AWS_ENDPOINT_URL` is honoured (tests use moto).
#![warn(missing_docs)]

mod bucket;
mod compute;
mod database;
mod front;
mod identity;
mod keys;
mod logins;
mod logs;
pub mod names;
mod pg;
pub mod policy;
mod posture;
mod regional;
mod replicas;
mod secrets;
mod traffic;
pub mod userdata;

use std::fmt::Debug;

use aws_sdk_ec2::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use skiff_pluginapi::{Compute, Database, Identity, Logs, Provider, ProviderError, Secrets, Traffic};
use tokio::sync::OnceCell;

pub use bucket::{BucketReport, ensure_state_bucket};
pub use policy::{PolicyDocument, Scope, skiff_policy};
pub use userdata::RunnerArtifact;

/// The default machine image: Amazon Linux 2023, resolved by EC2 at launch from the
/// public SSM parameter (it ships the AWS CLI, curl, systemd and sha256sum).
pub const DEFAULT_AMI: &str = "resolve:ssm:/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64";

/// What the provider needs beyond credentials.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AwsSettings {
    /// Region; `None` takes it from the environment or profile.
    pub region: Option<String>,
    /// The state bucket, `s3://BUCKET[/PREFIX]`.
    pub state: String,
    /// Machine image id (or `resolve:ssm:` parameter) instances boot from.
    pub ami: String,
    /// Subnets for instances and load balancers; empty uses the default VPC's.
    pub subnets: Vec<String>,
    /// Where instances download `skiff-runner`.
    pub runner: RunnerArtifact,
    /// How the control plane reaches a database instance's engine when it cannot reach
    /// the endpoint itself: instance id → a local forward (`127.0.0.1:PORT` of an SSM or
    /// SSH port forwarding session).
    pub database_tunnels: std::collections::BTreeMap<String, std::net::SocketAddr>,
    /// A PEM bundle of the CAs an RDS endpoint's certificate chains to (Amazon's
    /// `global-bundle.pem`); `None` trusts the system's roots.
    pub rds_ca: Option<std::path::PathBuf>,
}

impl AwsSettings {
    /// Settings for a state bucket, from environment variables (looked up with `env`):
    /// `SKIFF_AWS_AMI`, `SKIFF_AWS_SUBNETS` (comma-separated), `SKIFF_AWS_RUNNER_URL`
    /// (default: the bucket's `tools/skiff-runner`), `SKIFF_AWS_RUNNER_SHA256`,
    /// `SKIFF_AWS_DATABASE_TUNNELS` (`ID=127.0.0.1:PORT,…`), `SKIFF_AWS_RDS_CA`.
    pub fn from_vars(
        state: &str,
        region: Option<String>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ProviderError> {
        let (bucket, prefix) = split_bucket(state)?;
        let var = |k: &str| env(k).filter(|v| !v.trim().is_empty());
        Ok(AwsSettings {
            region,
            state: state.to_owned(),
            ami: var("SKIFF_AWS_AMI").unwrap_or_else(|| DEFAULT_AMI.to_owned()),
            subnets: var("SKIFF_AWS_SUBNETS")
                .map(|s| s.split(',').map(|x| x.trim().to_owned()).filter(|x| !x.is_empty()).collect())
                .unwrap_or_default(),
            runner: RunnerArtifact {
                url: var("SKIFF_AWS_RUNNER_URL").unwrap_or_else(|| format!("s3://{bucket}/{prefix}tools/skiff-runner")),
                sha256: var("SKIFF_AWS_RUNNER_SHA256"),
            },
            database_tunnels: var("SKIFF_AWS_DATABASE_TUNNELS").map(|v| tunnels(&v)).transpose()?.unwrap_or_default(),
            rds_ca: var("SKIFF_AWS_RDS_CA").map(std::path::PathBuf::from),
        })
    }
}

/// `ID=HOST:PORT,…` → instance id → address.
fn tunnels(text: &str) -> Result<std::collections::BTreeMap<String, std::net::SocketAddr>, ProviderError> {
    text.split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(|t| {
            let parsed = t.split_once('=').and_then(|(id, at)| Some((id.trim(), at.trim().parse().ok()?)));
            match parsed {
                Some((id, at)) if !id.is_empty() => Ok((id.to_owned(), at)),
                _ => Err(ProviderError::new(
                    format!("SKIFF_AWS_DATABASE_TUNNELS: `{t}` is not ID=IP:PORT (such as orders-db=127.0.0.1:15432)"),
                    false,
                )),
            }
        })
        .collect()
}

/// `s3://bucket/prefix` → (`bucket`, `prefix/`), the prefix empty or ending in `/`.
pub fn split_bucket(state: &str) -> Result<(String, String), ProviderError> {
    let rest = state.strip_prefix("s3://").ok_or_else(|| {
        ProviderError::new(
            format!("the AWS provider keeps state in S3, not at {state}; use --bucket s3://BUCKET[/PREFIX]"),
            false,
        )
    })?;
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    let prefix = prefix.trim_matches('/');
    if bucket.is_empty() {
        return Err(ProviderError::new(format!("{state} names no bucket; use s3://BUCKET[/PREFIX]"), false));
    }
    Ok((bucket.to_owned(), if prefix.is_empty() { String::new() } else { format!("{prefix}/") }))
}

#[derive(Debug)]
struct Clients {
    ec2: aws_sdk_ec2::Client,
    asg: aws_sdk_autoscaling::Client,
    elb: aws_sdk_elasticloadbalancingv2::Client,
    iam: aws_sdk_iam::Client,
    secrets: aws_sdk_secretsmanager::Client,
    logs: aws_sdk_cloudwatchlogs::Client,
    kms: aws_sdk_kms::Client,
    rds: aws_sdk_rds::Client,
    route53: aws_sdk_route53::Client,
    s3: aws_sdk_s3::Client,
    sts: aws_sdk_sts::Client,
}

/// The VPC and subnets Skiff places load balancers and instances in.
#[derive(Clone, Debug)]
struct Network {
    vpc: String,
    subnets: Vec<String>,
}

/// The AWS provider.
#[derive(Debug)]
pub struct AwsProvider {
    c: Clients,
    /// The loaded configuration: clients of another region start from it.
    conf: aws_config::SdkConfig,
    settings: AwsSettings,
    region: String,
    bucket: String,
    prefix: String,
    scope: OnceCell<Scope>,
    /// Clients and networks per region, the provider's own first.
    regions: regional::Regions,
    /// The endpoint is plain http (an emulator such as moto on loopback).
    plain_http: bool,
}

impl AwsProvider {
    /// Loads credentials and region (environment, profile, IMDS) and builds the clients.
    pub async fn connect(settings: AwsSettings) -> Result<Self, ProviderError> {
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
        if let Some(r) = &settings.region {
            loader = loader.region(aws_config::Region::new(r.clone()));
        }
        Self::with_config(settings, &loader.load().await)
    }

    /// Builds the clients from an already loaded configuration (tests point it at moto).
    pub fn with_config(settings: AwsSettings, conf: &aws_config::SdkConfig) -> Result<Self, ProviderError> {
        let region = conf.region().map(ToString::to_string).ok_or_else(|| {
            ProviderError::new("no AWS region: pass --region, or set AWS_REGION or a profile's region", false)
        })?;
        let conf = conf.clone();
        // A custom endpoint (moto, MinIO) serves buckets by path, not by host name.
        let s3_conf = aws_sdk_s3::config::Builder::from(&conf).force_path_style(conf.endpoint_url().is_some()).build();
        let (bucket, prefix) = split_bucket(&settings.state)?;
        let regions = regional::Regions::new(regional::Regional::new(&conf, &region, true, settings.subnets.clone()));
        Ok(AwsProvider {
            c: Clients {
                ec2: aws_sdk_ec2::Client::new(&conf),
                asg: aws_sdk_autoscaling::Client::new(&conf),
                elb: aws_sdk_elasticloadbalancingv2::Client::new(&conf),
                iam: aws_sdk_iam::Client::new(&conf),
                secrets: aws_sdk_secretsmanager::Client::new(&conf),
                logs: aws_sdk_cloudwatchlogs::Client::new(&conf),
                kms: aws_sdk_kms::Client::new(&conf),
                rds: aws_sdk_rds::Client::new(&conf),
                route53: aws_sdk_route53::Client::new(&conf),
                s3: aws_sdk_s3::Client::from_conf(s3_conf),
                sts: aws_sdk_sts::Client::new(&conf),
            },
            conf: conf.clone(),
            settings,
            region,
            bucket,
            prefix,
            scope: OnceCell::new(),
            regions,
            plain_http: conf.endpoint_url().is_some_and(|u| u.starts_with("http://")),
        })
    }

    /// The region in use.
    pub fn region(&self) -> &str {
        &self.region
    }

    /// Account, region and bucket ARNs point into (the account is looked up once).
    pub async fn scope(&self) -> Result<&Scope, ProviderError> {
        self.scope
            .get_or_try_init(|| async {
                let me = self.c.sts.get_caller_identity().send().await.map_err(|e| fail("who am I (sts)", e))?;
                let arn = me.arn().unwrap_or_default();
                Ok(Scope {
                    partition: arn.split(':').nth(1).filter(|p| !p.is_empty()).unwrap_or("aws").to_owned(),
                    account: me.account().unwrap_or_default().to_owned(),
                    region: self.region.clone(),
                    bucket: self.bucket.clone(),
                    prefix: self.prefix.clone(),
                })
            })
            .await
    }

    async fn network(&self) -> Result<&Network, ProviderError> {
        self.regions.home().network().await
    }
}

impl Provider for AwsProvider {
    fn name(&self) -> &str {
        "aws"
    }
    fn compute(&self) -> &dyn Compute {
        self
    }
    fn traffic(&self) -> &dyn Traffic {
        self
    }
    fn logs(&self) -> &dyn Logs {
        self
    }
    fn secrets(&self) -> &dyn Secrets {
        self
    }
    fn identity(&self) -> &dyn Identity {
        self
    }
    fn database(&self) -> &dyn Database {
        self
    }
    fn posture(&self) -> Option<&dyn skiff_pluginapi::Posture> {
        Some(self)
    }
}

/// Codes AWS answers when trying again later may succeed.
const RETRYABLE: [&str; 10] = [
    "Throttling",
    "ThrottlingException",
    "RequestLimitExceeded",
    "RequestThrottled",
    "TooManyRequestsException",
    "ServiceUnavailable",
    "InternalError",
    "InternalFailure",
    "PriorRequestNotComplete",
    "ResourceInUse",
];

/// An AWS call failed: what was attempted, AWS's own words, and whether to retry.
pub(crate) fn fail<E, R>(what: &str, e: SdkError<E, R>) -> ProviderError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: Debug,
{
    let retryable = match &e {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => true,
        SdkError::ServiceError(s) => s.err().code().is_some_and(|c| RETRYABLE.contains(&c)),
        _ => false,
    };
    ProviderError::new(format!("{what}: {}", DisplayErrorContext(&e)), retryable)
}

/// The service error code, if AWS answered with one.
pub(crate) fn code<E: ProvideErrorMetadata, R>(e: &SdkError<E, R>) -> Option<&str> {
    e.as_service_error().and_then(ProvideErrorMetadata::code)
}

/// Milliseconds since the epoch.
pub(crate) fn now_ms() -> u64 {
    // AWS timestamps are wall-clock time; there is no test clock to honour here.
    skiff_clock::Clock::now_ms(&skiff_clock::SystemClock)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_urls_split_into_bucket_and_prefix() {
        assert_eq!(split_bucket("s3://b").unwrap(), ("b".into(), String::new()));
        assert_eq!(split_bucket("s3://b/p/q/").unwrap(), ("b".into(), "p/q/".into()));
        assert!(split_bucket("file:///tmp/x").unwrap_err().message.contains("--bucket s3://"));
    }
}
