//! The functions' configuration, read once at start-up from the environment, and the stores it builds.

use std::sync::Arc;

use tidemark_aws::{
    AwsClients, BucketAccounts, ClientOptions, DynamoControlStore, KmsKeys, RoleSourceStore, RoleTargets, RoleVaultStore, S3Store,
    SourceRole, SourceSessions, SqsQueue, TargetRole,
};
use tidemark_core::config::settings::Settings;
use tidemark_core::config::EngineConfig;
use tidemark_core::engine::{Engine, QueueUrls};
use tidemark_core::ports::SystemClock;
use tidemark_core::ports::Targets;

use crate::LambdaError;

/// Configuration every function reads once at start-up from its environment.
#[derive(Debug, Clone)]
pub struct LambdaConfig {
    pub engine: EngineConfig,
    pub control_table: String,
    pub queues: QueueUrls,
    pub late_event_seconds: i64,
    /// The read role assumed in the source accounts; `None` reads the source with the function's
    /// own credentials (the local stack, a single-account deployment without the role).
    pub source_role: Option<SourceRole>,
    /// The restore target role of the source accounts (`TIDEMARK_TARGET_ROLE_NAME`); `None`
    /// writes targets that a request names no role for with the function's own credentials.
    pub target_role: Option<TargetRole>,
    /// The external id presented when assuming a target role.
    pub external_id: Option<String>,
    /// The share of packs and large copies the scrub reads (`TIDEMARK_VERIFY_SAMPLE`).
    pub verify_sample: f64,
    /// Seconds one scrub invocation verifies before it leaves the rest to the next (`TIDEMARK_VERIFY_STEP_SECONDS`).
    pub verify_step_seconds: u64,
    /// The SNS topic of the alert function (`TIDEMARK_ALERT_TOPIC_ARN`).
    pub alert_topic_arn: Option<String>,
    /// The dead-letter queues the alert function sweeps (`TIDEMARK_DEAD_LETTER_QUEUE_URLS`).
    pub dead_letter_queue_urls: Vec<String>,
    /// The CloudWatch namespace of every EMF line (`TIDEMARK_METRICS_NAMESPACE`).
    pub metrics_namespace: String,
}

impl LambdaConfig {
    /// Reads the configuration table from the process environment (see [`LambdaConfig::from_lookup`]).
    ///
    /// It also sets the namespace of the metrics this process prints ([`crate::metrics::set_namespace`]).
    pub fn from_env() -> Result<Self, LambdaError> {
        let config = Self::from_lookup(|name| std::env::var(name).ok())?;
        crate::metrics::set_namespace(&config.metrics_namespace);
        Ok(config)
    }

    /// Reads the configuration table through `get`; the vault bucket, control table and queue
    /// URLs are required, and a missing or malformed variable is named in the error.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, LambdaError> {
        let config = |e: tidemark_core::Error| LambdaError::Config(e.to_string());
        let settings = Settings::from_lookup(&get).map_err(config)?;
        let required = |value: &Option<String>, var: &str| Settings::require(value, var).map(str::to_string).map_err(config);
        let engine = settings.engine_config(&required(&settings.vault_bucket, "TIDEMARK_VAULT_BUCKET")?)?;
        Ok(LambdaConfig {
            engine,
            control_table: required(&settings.control_table, "TIDEMARK_CONTROL_TABLE")?,
            queues: QueueUrls {
                work: required(&settings.work_queue_url, "TIDEMARK_WORK_QUEUE_URL")?,
                delta: required(&settings.delta_queue_url, "TIDEMARK_DELTA_QUEUE_URL")?,
                restore: required(&settings.restore_queue_url, "TIDEMARK_RESTORE_QUEUE_URL")?,
            },
            late_event_seconds: settings.late_event_seconds,
            source_role: source_role_from(&get)?,
            target_role: target_role_from(&get)?,
            external_id: settings.external_id.clone(),
            verify_sample: settings.verify_sample,
            verify_step_seconds: settings.verify_step_seconds,
            alert_topic_arn: settings.alert_topic_arn.clone(),
            dead_letter_queue_urls: queue_list(settings.dead_letter_queue_urls.as_deref()),
            metrics_namespace: settings.metrics_namespace.clone(),
        })
    }

    /// Builds the engine with AWS clients (the endpoint comes from the standard AWS variables).
    pub async fn engine(&self) -> Engine {
        self.engine_and_targets().await.0
    }

    /// The engine and the stores restores write their targets with (through the role a request
    /// names, or the function's own credentials).
    pub async fn engine_and_targets(&self) -> (Engine, Arc<dyn Targets>) {
        self.engine_and_targets_with(&AwsClients::load(&ClientOptions::default()).await)
    }

    /// The engine and restore targets over `clients`, wired exactly as in Lambda (tests give
    /// clients that point at the local stack and record their calls).
    pub fn engine_and_targets_with(&self, clients: &AwsClients) -> (Engine, Arc<dyn Targets>) {
        let (source, vault) = self.stores(clients);
        let session =
            std::env::var("AWS_LAMBDA_FUNCTION_NAME").map(|f| format!("tidemark-{f}")).unwrap_or_else(|_| "tidemark-restore".into());
        let session: String = session.chars().filter(|c| iam_name_char(*c)).take(64).collect();
        let targets: Arc<dyn Targets> = Arc::new(
            RoleTargets::new(clients.shared.clone(), clients.s3.clone(), vault.clone(), &session)
                .with_external_id(self.external_id.clone())
                .with_target_role(self.target_role.clone()),
        );
        let engine = Engine {
            source,
            vault,
            control: Arc::new(DynamoControlStore::new(clients.dynamodb.clone(), &self.control_table)),
            queue: Arc::new(SqsQueue::new(clients.sqs.clone()).with_age_metric(clients.cloudwatch.clone())),
            clock: Arc::new(SystemClock),
            keys: key_service(&clients),
            config: self.engine.clone(),
            queues: self.queues.clone(),
        };
        (engine, targets)
    }

    /// The source and vault stores over `clients`: with a source role, the source is read (and
    /// large objects are copied into the vault) through the role assumed in the bucket's account;
    /// without one, both use the function's own credentials as before.
    pub fn stores(&self, clients: &AwsClients) -> (Arc<dyn tidemark_core::ports::ObjectStore>, Arc<dyn tidemark_core::ports::ObjectStore>) {
        let s3 = S3Store::new(clients.s3.clone());
        // Under the scheduler, source reads surface `503 SlowDown` to it instead of retrying.
        let source_client = match self.engine.scheduler {
            Some(_) => clients.s3_source.clone(),
            None => clients.s3.clone(),
        };
        match &self.source_role {
            None => (Arc::new(S3Store::new(source_client)), Arc::new(s3)),
            Some(role) => {
                let sessions = Arc::new(SourceSessions::new(clients.shared.clone(), source_client, clients.s3.clone(), role.clone()));
                (Arc::new(RoleSourceStore::new(sessions.clone())), Arc::new(RoleVaultStore::new(s3, &self.engine.vault_bucket, sessions)))
            }
        }
    }
}

/// The key service of encrypted vaults: KMS, with the data keys it unwraps remembered (bounded)
/// so that a restore asks once per pack.
pub fn key_service(clients: &AwsClients) -> Arc<dyn tidemark_core::ports::KeyService> {
    Arc::new(tidemark_core::vault::crypt::CachedKeys::new(Arc::new(KmsKeys::new(clients.kms.clone()))))
}

/// Reads the source role settings through `get` (the environment in [`LambdaConfig::from_env`]).
///
/// Without `TIDEMARK_SOURCE_ROLE_NAME` (or with it empty) there is no role and the source is read
/// with the function's own credentials. With it, the external id and the source account ids are
/// required, because the role's trust policy demands the one and the role ARN needs the other.
pub fn source_role_from(get: impl Fn(&str) -> Option<String>) -> Result<Option<SourceRole>, LambdaError> {
    let settings = Settings::from_lookup(&get).map_err(|e| LambdaError::Config(e.to_string()))?;
    let Some(role_name) = settings.source_role_name else {
        return Ok(None);
    };
    if !role_name.chars().all(iam_name_char) || role_name.len() > 64 {
        return Err(LambdaError::Config(format!("environment variable TIDEMARK_SOURCE_ROLE_NAME='{role_name}' is not an IAM role name")));
    }
    let external_id = settings.external_id.ok_or_else(|| {
        LambdaError::Config("environment variable TIDEMARK_EXTERNAL_ID is not set; the source read role's trust policy requires it".into())
    })?;
    let account_ids = settings.source_account_ids.ok_or_else(|| {
        LambdaError::Config(
            "environment variable TIDEMARK_SOURCE_ACCOUNT_IDS is not set; with TIDEMARK_SOURCE_ROLE_NAME it must name the source accounts (comma-separated)".into(),
        )
    })?;
    let accounts =
        BucketAccounts::parse(&account_ids, settings.bucket_accounts.as_deref().unwrap_or_default()).map_err(LambdaError::Config)?;
    // The session name shows in the source account's CloudTrail; naming the function tells
    // which of them read. STS allows [\w+=,.@-]{2,64}.
    let session_name = match get("AWS_LAMBDA_FUNCTION_NAME") {
        Some(f) => format!("tidemark-{f}").chars().filter(|c| iam_name_char(*c)).take(64).collect(),
        None => "tidemark".to_string(),
    };
    Ok(Some(SourceRole { role_name, external_id, session_name, accounts }))
}

/// Reads the restore target role settings through `get`.
///
/// Without `TIDEMARK_TARGET_ROLE_NAME` there is none: a restore writes with the role its request
/// names, or the function's own credentials. With it, the external id (the role's trust policy
/// requires it) and the source account ids (the role ARN needs the bucket's account) are required.
pub fn target_role_from(get: impl Fn(&str) -> Option<String>) -> Result<Option<TargetRole>, LambdaError> {
    let settings = Settings::from_lookup(&get).map_err(|e| LambdaError::Config(e.to_string()))?;
    let Some(role_name) = settings.target_role_name else {
        return Ok(None);
    };
    if !role_name.chars().all(iam_name_char) || role_name.len() > 64 {
        return Err(LambdaError::Config(format!("environment variable TIDEMARK_TARGET_ROLE_NAME='{role_name}' is not an IAM role name")));
    }
    if settings.external_id.is_none() {
        return Err(LambdaError::Config(
            "environment variable TIDEMARK_EXTERNAL_ID is not set; the restore target role's trust policy requires it".into(),
        ));
    }
    let account_ids = settings.source_account_ids.ok_or_else(|| {
        LambdaError::Config(
            "environment variable TIDEMARK_SOURCE_ACCOUNT_IDS is not set; with TIDEMARK_TARGET_ROLE_NAME it must name the source accounts (comma-separated)".into(),
        )
    })?;
    let accounts =
        BucketAccounts::parse(&account_ids, settings.bucket_accounts.as_deref().unwrap_or_default()).map_err(LambdaError::Config)?;
    Ok(Some(TargetRole { role_name, accounts }))
}

/// A character IAM allows in role and session names (`[\w+=,.@-]`).
fn iam_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "+=,.@_-".contains(c)
}

/// The queue URLs of a comma-separated list, blanks dropped.
fn queue_list(urls: Option<&str>) -> Vec<String> {
    urls.unwrap_or_default().split(',').map(str::trim).filter(|u| !u.is_empty()).map(String::from).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lookup(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let vars: std::collections::HashMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        move |name| vars.get(name).cloned()
    }

    const ROLE: (&str, &str) = ("TIDEMARK_SOURCE_ROLE_NAME", "tidemark-backup-read");
    const EXT: (&str, &str) = ("TIDEMARK_EXTERNAL_ID", "0123456789abcdef0123");

    #[test]
    fn without_a_role_name_the_function_reads_with_its_own_credentials() {
        assert_eq!(source_role_from(lookup(&[])).unwrap(), None);
        assert_eq!(source_role_from(lookup(&[("TIDEMARK_SOURCE_ROLE_NAME", ""), EXT])).unwrap(), None);
    }

    #[test]
    fn one_source_account_owns_every_bucket() {
        let r = source_role_from(lookup(&[
            ROLE,
            EXT,
            ("TIDEMARK_SOURCE_ACCOUNT_IDS", "111122223333"),
            ("AWS_LAMBDA_FUNCTION_NAME", "tm-worker"),
        ]))
        .unwrap()
        .expect("a role");
        assert_eq!(r.role_name, "tidemark-backup-read");
        assert_eq!(r.external_id, "0123456789abcdef0123");
        assert_eq!(r.session_name, "tidemark-tm-worker");
        assert_eq!(r.accounts.account_of("acme-prod-data").unwrap(), "111122223333");
    }

    #[test]
    fn several_source_accounts_use_the_bucket_map() {
        let r = source_role_from(lookup(&[
            ROLE,
            EXT,
            ("TIDEMARK_SOURCE_ACCOUNT_IDS", "111122223333,444455556666"),
            ("TIDEMARK_BUCKET_ACCOUNTS", "acme-prod-data=111122223333,acme-logs=444455556666"),
        ]))
        .unwrap()
        .expect("a role");
        assert_eq!(r.accounts.account_of("acme-prod-data").unwrap(), "111122223333");
        assert_eq!(r.accounts.account_of("acme-logs").unwrap(), "444455556666");
        let missing = r.accounts.account_of("acme-other").unwrap_err();
        assert!(!missing.is_transient(), "a bucket with no account is permanent");
        let msg = missing.to_string();
        assert!(msg.contains("acme-other") && msg.contains("TIDEMARK_BUCKET_ACCOUNTS") && msg.contains("bucket_accounts"), "{msg}");
    }

    #[test]
    fn the_target_role_is_read_with_the_accounts_it_is_assumed_in() {
        assert_eq!(target_role_from(lookup(&[EXT])).unwrap(), None, "without a name there is no target role");
        let t = target_role_from(lookup(&[
            ("TIDEMARK_TARGET_ROLE_NAME", "tidemark-restore-target"),
            EXT,
            ("TIDEMARK_SOURCE_ACCOUNT_IDS", "111122223333,444455556666"),
            ("TIDEMARK_BUCKET_ACCOUNTS", "acme-prod-data=444455556666"),
        ]))
        .unwrap()
        .expect("a target role");
        assert_eq!(t.role_name, "tidemark-restore-target");
        assert_eq!(t.accounts.account_of("acme-prod-data").unwrap(), "444455556666");
        for (vars, expected) in [
            (
                vec![("TIDEMARK_TARGET_ROLE_NAME", "tidemark-restore-target"), ("TIDEMARK_SOURCE_ACCOUNT_IDS", "111122223333")],
                "TIDEMARK_EXTERNAL_ID is not set",
            ),
            (vec![("TIDEMARK_TARGET_ROLE_NAME", "tidemark-restore-target"), EXT], "TIDEMARK_SOURCE_ACCOUNT_IDS is not set"),
            (vec![("TIDEMARK_TARGET_ROLE_NAME", "no spaces"), EXT], "not an IAM role name"),
        ] {
            let e = target_role_from(lookup(&vars)).unwrap_err();
            assert!(e.to_string().contains(expected), "{vars:?}: '{e}' should contain '{expected}'");
        }
        let config = LambdaConfig::from_lookup(lookup(&[
            ("TIDEMARK_VAULT_BUCKET", "v"),
            ("TIDEMARK_CONTROL_TABLE", "t"),
            ("TIDEMARK_WORK_QUEUE_URL", "w"),
            ("TIDEMARK_DELTA_QUEUE_URL", "d"),
            ("TIDEMARK_RESTORE_QUEUE_URL", "r"),
            ("TIDEMARK_TARGET_ROLE_NAME", "tidemark-restore-target"),
            EXT,
            ("TIDEMARK_SOURCE_ACCOUNT_IDS", "111122223333"),
        ]))
        .unwrap();
        assert_eq!(config.target_role.map(|t| t.role_name).as_deref(), Some("tidemark-restore-target"));
        assert_eq!(config.external_id.as_deref(), Some(EXT.1));
    }

    #[test]
    fn malformed_source_settings_are_configuration_errors() {
        let cases: &[(&[(&str, &str)], &str)] = &[
            (&[ROLE, EXT, ("TIDEMARK_SOURCE_ACCOUNT_IDS", "11112222333")], "'11112222333' is not a 12-digit"),
            (&[ROLE, EXT, ("TIDEMARK_SOURCE_ACCOUNT_IDS", "11112222333a")], "is not a 12-digit"),
            (&[ROLE, EXT], "TIDEMARK_SOURCE_ACCOUNT_IDS is not set"),
            (&[ROLE, ("TIDEMARK_SOURCE_ACCOUNT_IDS", "111122223333")], "TIDEMARK_EXTERNAL_ID is not set"),
            (&[ROLE, EXT, ("TIDEMARK_SOURCE_ACCOUNT_IDS", "111122223333"), ("TIDEMARK_BUCKET_ACCOUNTS", "acme=1")], "'1' of bucket 'acme'"),
            (&[ROLE, EXT, ("TIDEMARK_SOURCE_ACCOUNT_IDS", "111122223333"), ("TIDEMARK_BUCKET_ACCOUNTS", "acme")], "bucket=account"),
            (
                &[ROLE, EXT, ("TIDEMARK_SOURCE_ACCOUNT_IDS", "111122223333"), ("TIDEMARK_BUCKET_ACCOUNTS", "acme=444455556666")],
                "not one of TIDEMARK_SOURCE_ACCOUNT_IDS",
            ),
            (&[("TIDEMARK_SOURCE_ROLE_NAME", "no spaces allowed"), EXT], "not an IAM role name"),
        ];
        for (vars, expected) in cases {
            let e = source_role_from(lookup(vars)).unwrap_err();
            assert!(matches!(e, LambdaError::Config(_)) && !e.is_transient(), "{e}");
            assert!(e.to_string().contains(expected), "{vars:?}: '{e}' should contain '{expected}'");
        }
    }
}
