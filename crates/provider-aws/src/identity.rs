//! Identity: an IAM role EC2 may assume, its least-privilege inline policy, and an
//! instance profile of the same name that launch templates name.

use async_trait::async_trait;
use aws_sdk_iam::types::Tag;
use skiff_pluginapi::{Identity, ProviderError, Result, RoleInfo, RoleSpec};

use crate::names::TAG_SERVICE;
use crate::policy::PolicyDocument;
use crate::{AwsProvider, code, fail};

/// The inline policy's name on every role Skiff manages.
pub(crate) const POLICY: &str = "skiff";

const TRUST: &str = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"ec2.amazonaws.com"},"Action":"sts:AssumeRole"}]}"#;

fn missing<E: aws_sdk_iam::error::ProvideErrorMetadata, R>(e: &aws_sdk_iam::error::SdkError<E, R>) -> bool {
    code(e) == Some("NoSuchEntity")
}

impl AwsProvider {
    async fn ensure_instance_profile(&self, name: &str) -> Result<()> {
        let iam = &self.c.iam;
        let profile = match iam.get_instance_profile().instance_profile_name(name).send().await {
            Ok(p) => p.instance_profile,
            Err(e) if missing(&e) => match iam.create_instance_profile().instance_profile_name(name).send().await {
                Ok(p) => p.instance_profile,
                Err(e) if code(&e) == Some("EntityAlreadyExists") => None,
                Err(e) => return Err(fail(&format!("create instance profile {name}"), e)),
            },
            Err(e) => return Err(fail(&format!("get instance profile {name}"), e)),
        };
        let has_role = profile.is_some_and(|p| p.roles().iter().any(|r| r.role_name() == name));
        if !has_role {
            match iam.add_role_to_instance_profile().instance_profile_name(name).role_name(name).send().await {
                Ok(_) => {}
                Err(e) if code(&e) == Some("LimitExceeded") || code(&e) == Some("EntityAlreadyExists") => {}
                Err(e) => return Err(fail(&format!("add role {name} to its instance profile"), e)),
            }
        }
        Ok(())
    }
}

#[async_trait]
impl Identity for AwsProvider {
    async fn ensure_role(&self, role: &RoleSpec) -> Result<RoleInfo> {
        let iam = &self.c.iam;
        let arn = match iam.get_role().role_name(&role.name).send().await {
            Ok(r) => r.role.map(|r| r.arn).unwrap_or_default(),
            Err(e) if missing(&e) => {
                let made = iam
                    .create_role()
                    .role_name(&role.name)
                    .assume_role_policy_document(TRUST)
                    .description(format!("Skiff: instances of {}", role.service))
                    .tags(
                        Tag::builder()
                            .key(TAG_SERVICE)
                            .value(&role.service)
                            .build()
                            .map_err(|e| ProviderError::new(e.to_string(), false))?,
                    )
                    .send()
                    .await;
                match made {
                    Ok(r) => r.role.map(|r| r.arn).unwrap_or_default(),
                    // Created concurrently (or IAM has not caught up): the next attempt finds it.
                    Err(e) if code(&e) == Some("EntityAlreadyExists") => {
                        return Err(ProviderError::new(
                            format!("role {} is being created elsewhere; retry", role.name),
                            true,
                        ));
                    }
                    Err(e) => return Err(fail(&format!("create role {}", role.name), e)),
                }
            }
            Err(e) => return Err(fail(&format!("get role {}", role.name), e)),
        };
        let scope = self.scope().await?;
        let doc = serde_json::to_string(&scope.role_policy(&role.permissions))
            .map_err(|e| ProviderError::new(format!("encode the policy of {}: {e}", role.name), false))?;
        iam.put_role_policy()
            .role_name(&role.name)
            .policy_name(POLICY)
            .policy_document(doc)
            .send()
            .await
            .map_err(|e| fail(&format!("put the policy of {}", role.name), e))?;
        self.ensure_instance_profile(&role.name).await?;
        Ok(RoleInfo { name: role.name.clone(), permissions: role.permissions.clone(), provider_id: arn })
    }

    async fn describe_role(&self, name: &str) -> Result<Option<RoleInfo>> {
        let iam = &self.c.iam;
        let arn = match iam.get_role().role_name(name).send().await {
            Ok(r) => r.role.map(|r| r.arn).unwrap_or_default(),
            Err(e) if missing(&e) => return Ok(None),
            Err(e) => return Err(fail(&format!("get role {name}"), e)),
        };
        let doc = match iam.get_role_policy().role_name(name).policy_name(POLICY).send().await {
            Ok(p) => p.policy_document,
            Err(e) if missing(&e) => {
                return Ok(Some(RoleInfo { name: name.to_owned(), permissions: Vec::new(), provider_id: arn }));
            }
            Err(e) => return Err(fail(&format!("get the policy of {name}"), e)),
        };
        let parsed = PolicyDocument::from_iam(&doc)
            .map_err(|e| ProviderError::new(format!("the policy of role {name} is not one Skiff wrote: {e}"), false))?;
        let permissions = self.scope().await?.permissions_of(&parsed).ok_or_else(|| {
            ProviderError::new(
                format!("the policy of role {name} was edited outside Skiff; run a deploy to restore it"),
                false,
            )
        })?;
        Ok(Some(RoleInfo { name: name.to_owned(), permissions, provider_id: arn }))
    }

    async fn delete_role(&self, name: &str) -> Result<()> {
        let iam = &self.c.iam;
        match iam.remove_role_from_instance_profile().instance_profile_name(name).role_name(name).send().await {
            Ok(_) => {}
            Err(e) if missing(&e) => {}
            Err(e) => return Err(fail(&format!("detach role {name} from its instance profile"), e)),
        }
        match iam.delete_instance_profile().instance_profile_name(name).send().await {
            Ok(_) => {}
            Err(e) if missing(&e) => {}
            Err(e) => return Err(fail(&format!("delete instance profile {name}"), e)),
        }
        match iam.delete_role_policy().role_name(name).policy_name(POLICY).send().await {
            Ok(_) => {}
            Err(e) if missing(&e) => {}
            Err(e) => return Err(fail(&format!("delete the policy of {name}"), e)),
        }
        match iam.delete_role().role_name(name).send().await {
            Ok(_) => Ok(()),
            Err(e) if missing(&e) => Ok(()),
            Err(e) => Err(fail(&format!("delete role {name}"), e)),
        }
    }
}
