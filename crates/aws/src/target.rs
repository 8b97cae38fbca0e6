//! Restore targets in other accounts: the target store a restore writes with, through the role
//! the request names (assumed with STS), or the function's own credentials when it names none.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use tidemark_core::ports::{ObjectStore, Targets};
use tidemark_core::{Error, Result};

use crate::S3Store;

/// Target stores by role, each role assumed once (checked with STS first, so that a role that
/// cannot be assumed is a clear error before anything is written) and cached.
pub struct RoleTargets {
    shared: aws_config::SdkConfig,
    /// The client whose configuration (endpoint, addressing, retries) assumed-role clients copy.
    base: aws_sdk_s3::Client,
    own: Arc<dyn ObjectStore>,
    session_name: String,
    cache: Mutex<HashMap<String, Arc<dyn ObjectStore>>>,
}

impl RoleTargets {
    /// Targets written with `own` unless a role is named; roles are assumed with `shared`'s
    /// credentials, their clients derived from `base`.
    pub fn new(shared: aws_config::SdkConfig, base: aws_sdk_s3::Client, own: Arc<dyn ObjectStore>, session_name: &str) -> Self {
        RoleTargets { shared, base, own, session_name: session_name.into(), cache: Mutex::new(HashMap::new()) }
    }
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
        sts.assume_role().role_arn(arn).role_session_name(&self.session_name).duration_seconds(900).send().await.map_err(|e| {
            let detail = aws_sdk_sts::error::DisplayErrorContext(&e).to_string();
            Error::Invalid(format!("target role {arn} cannot be assumed: {detail}"))
        })?;
        let provider =
            aws_config::sts::AssumeRoleProvider::builder(arn).session_name(&self.session_name).configure(&self.shared).build().await;
        let provider = aws_sdk_s3::config::SharedCredentialsProvider::new(provider);
        let client = aws_sdk_s3::Client::from_conf(self.base.config().to_builder().credentials_provider(provider).build());
        let store: Arc<dyn ObjectStore> = Arc::new(S3Store::new(client));
        Ok(self.cache.lock().expect("target cache lock").entry(arn.to_string()).or_insert(store).clone())
    }
}
