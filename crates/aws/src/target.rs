//! Restore targets in other accounts: the target store a restore writes with, through the role
//! the request names (assumed with STS), or the function's own credentials when it names none.
//!
//! A deployment with a restore target role in its source accounts (`TIDEMARK_TARGET_ROLE_NAME`)
//! also answers which role writes a source bucket when a request names none
//! ([`Targets::default_role`]): the target role in the account that owns the bucket.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use aws_sdk_sts::error::{ProvideErrorMetadata, SdkError};
use tidemark_core::ports::{ObjectStore, Targets};
use tidemark_core::{Error, Result};

use crate::source::{partition_of, BucketAccounts};
use crate::S3Store;

/// The restore target role that every source account holds under one name, and which account
/// owns each bucket (the same map the source read role uses).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetRole {
    /// The role's name (`TIDEMARK_TARGET_ROLE_NAME`).
    pub role_name: String,
    pub accounts: BucketAccounts,
}

/// Target stores by role, each role assumed once (checked with STS first, so that a role that
/// cannot be assumed is a clear error before anything is written) and cached.
pub struct RoleTargets {
    shared: aws_config::SdkConfig,
    /// The client whose configuration (endpoint, addressing, retries) assumed-role clients copy.
    base: aws_sdk_s3::Client,
    own: Arc<dyn ObjectStore>,
    session_name: String,
    /// Sent with every AssumeRole: the target roles' trust policies require it, and a role whose
    /// trust policy does not ignores it.
    external_id: Option<String>,
    target_role: Option<TargetRole>,
    cache: Mutex<HashMap<String, Arc<dyn ObjectStore>>>,
}

impl RoleTargets {
    /// Targets written with `own` unless a role is named; roles are assumed with `shared`'s
    /// credentials, their clients derived from `base`.
    pub fn new(shared: aws_config::SdkConfig, base: aws_sdk_s3::Client, own: Arc<dyn ObjectStore>, session_name: &str) -> Self {
        RoleTargets {
            shared,
            base,
            own,
            session_name: session_name.into(),
            external_id: None,
            target_role: None,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// Presents `external_id` when assuming a role.
    pub fn with_external_id(mut self, external_id: Option<String>) -> Self {
        self.external_id = external_id;
        self
    }

    /// Writes a source bucket through `role` in the bucket's account when a request names no role.
    pub fn with_target_role(mut self, role: Option<TargetRole>) -> Self {
        self.target_role = role;
        self
    }

    fn partition(&self) -> &'static str {
        partition_of(self.shared.region().map(|r| r.as_ref()).unwrap_or("us-east-1"))
    }
}

/// Whether an AssumeRole failure may pass: throttling, a server error, or no answer at all.
fn transient<E: ProvideErrorMetadata, R>(e: &SdkError<E, R>) -> bool {
    matches!(e, SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_))
        || matches!(e.code(), Some("Throttling" | "ThrottlingException" | "RequestLimitExceeded" | "InternalFailure"))
}

#[async_trait]
impl Targets for RoleTargets {
    async fn store(&self, role_arn: Option<&str>) -> Result<Arc<dyn ObjectStore>> {
        let Some(arn) = role_arn else { return Ok(self.own.clone()) };
        tidemark_core::restore::request::check_role_arn(arn)?;
        if let Some(s) = self.cache.lock().expect("target cache lock").get(arn) {
            return Ok(s.clone());
        }
        let sts = aws_sdk_sts::Client::new(&self.shared);
        let mut assume = sts.assume_role().role_arn(arn).role_session_name(&self.session_name).duration_seconds(900);
        if let Some(id) = &self.external_id {
            assume = assume.external_id(id);
        }
        assume.send().await.map_err(|e| {
            let detail = aws_sdk_sts::error::DisplayErrorContext(&e).to_string();
            if transient(&e) {
                Error::port(format!("sts:AssumeRole of target role {arn}"), detail, true)
            } else {
                Error::Invalid(format!("target role {arn} cannot be assumed: {detail}"))
            }
        })?;
        let mut provider = aws_config::sts::AssumeRoleProvider::builder(arn).session_name(&self.session_name);
        if let Some(id) = &self.external_id {
            provider = provider.external_id(id);
        }
        let provider = provider.configure(&self.shared).build().await;
        let provider = aws_sdk_s3::config::SharedCredentialsProvider::new(provider);
        let client = aws_sdk_s3::Client::from_conf(self.base.config().to_builder().credentials_provider(provider).build());
        let store: Arc<dyn ObjectStore> = Arc::new(S3Store::new(client));
        Ok(self.cache.lock().expect("target cache lock").entry(arn.to_string()).or_insert(store).clone())
    }

    fn default_role(&self, bucket: &str) -> Option<String> {
        let role = self.target_role.as_ref()?;
        let account = role.accounts.account_of(bucket).ok()?;
        Some(format!("arn:{}:iam::{account}:role/{}", self.partition(), role.role_name))
    }
}
