//! Builds the engine (clients, ports, typed configuration) once per command.

use std::sync::Arc;

use anyhow::{Context as _, Result};
use tidemark_aws::admin::{self, ResourceNames};
use tidemark_aws::{AwsClients, ClientOptions, DynamoControlStore, KmsKeys, RoleTargets, S3Store, SqsQueue};
use tidemark_core::config::settings::Settings;
use tidemark_core::config::EngineConfig;
use tidemark_core::domain::S3Url;
use tidemark_core::engine::{Engine, QueueUrls};
use tidemark_core::ports::{ControlStore, SystemClock, Targets};

use crate::args::Global;

/// The control-table item where `init --local` keeps the vault's KMS key.
const KMS_KEY_PK: &str = "config";
const KMS_KEY_SK: &str = "kms-key";

#[derive(serde::Serialize, serde::Deserialize)]
struct StoredKey {
    kms_key_id: String,
}

/// Clients and resource names for one invocation.
pub struct Context {
    pub clients: AwsClients,
    pub names: ResourceNames,
    pub global: Global,
    /// The configuration table with this invocation's flags applied.
    pub settings: Settings,
}

impl Context {
    /// Loads the SDK configuration.
    pub async fn load(global: &Global, settings: Settings) -> Self {
        let opts = ClientOptions {
            endpoint_url: global.endpoint_url.clone(),
            s3_endpoint_url: global.s3_endpoint_url.clone(),
            region: global.region.clone(),
            profile: global.profile.clone(),
            recorder: None,
        };
        Context { clients: AwsClients::load(&opts).await, names: ResourceNames::new(&settings.name), global: global.clone(), settings }
    }

    /// Fills in the vault key from the control table when `TIDEMARK_KMS_KEY_ARN` does not name
    /// one: `init --local` stores the key it creates there, so every later command of this
    /// deployment encrypts with it. A missing table, or one these credentials may not read, means
    /// no key: readers need none (every encrypted record names its key) and writers cannot work
    /// without the table anyway. Any other failure is an error, so that a transient one never
    /// turns encryption off.
    pub async fn load_kms_key(&mut self) -> Result<()> {
        if self.settings.kms_key_arn.is_some() {
            return Ok(());
        }
        let store = self.control_store();
        match store.get(KMS_KEY_PK, KMS_KEY_SK).await {
            Ok(Some(item)) => {
                let stored: StoredKey = serde_json::from_str(&item.body)
                    .with_context(|| format!("the vault key item in control table {}", self.names.table))?;
                self.settings.kms_key_arn = Some(stored.kms_key_id);
            }
            Ok(None) => {}
            Err(e) if ["ResourceNotFoundException", "AccessDenied"].iter().any(|c| e.to_string().contains(c)) => {}
            Err(e) => return Err(e).with_context(|| format!("reading the vault key from control table {}", self.names.table)),
        }
        Ok(())
    }

    /// Records the vault key in the control table (put-if-absent: the first key stored stays).
    /// Returns the key the table holds afterwards.
    pub async fn store_kms_key(&self, key_id: &str) -> Result<String> {
        let store = self.control_store();
        let body = serde_json::to_string(&StoredKey { kms_key_id: key_id.to_string() })?;
        if store.put_new(KMS_KEY_PK, KMS_KEY_SK, &body, None).await? {
            return Ok(key_id.to_string());
        }
        let item = store.get(KMS_KEY_PK, KMS_KEY_SK).await?.context("the vault key item vanished")?;
        Ok(serde_json::from_str::<StoredKey>(&item.body)?.kms_key_id)
    }

    /// The engine configuration for a vault, validated.
    pub fn config(&self, vault: &str) -> Result<EngineConfig> {
        Ok(self.settings.engine_config(vault)?)
    }

    /// The engine for a vault, with the queues of this deployment.
    pub async fn engine(&self, vault: &S3Url) -> Result<Engine> {
        let config = self.config(&vault.bucket)?;
        let work = admin::queue_url(&self.clients, &self.names.work_queue).await?;
        let delta = admin::queue_url(&self.clients, &self.names.delta_queue).await?;
        // Only restores need the restore queue; a stack initialised before it existed still
        // serves every other command (and `restore` says to run `init`).
        let restore = admin::queue_url(&self.clients, &self.names.restore_queue).await.unwrap_or_default();
        let s3: Arc<S3Store> = Arc::new(S3Store::new(self.clients.s3.clone()));
        // Under the scheduler, source reads use the client that surfaces `503 SlowDown` so that
        // every throttle is counted; without it, the SDK retries them as it always did.
        let source = match config.scheduler {
            Some(_) => Arc::new(S3Store::new(self.clients.s3_source.clone())),
            None => s3.clone(),
        };
        Ok(Engine {
            source,
            vault: s3,
            control: Arc::new(self.control_store()),
            queue: Arc::new(SqsQueue::new(self.clients.sqs.clone())),
            clock: Arc::new(SystemClock),
            keys: self.keys(),
            config,
            queues: QueueUrls { work, delta, restore },
        })
    }
}

impl Context {
    /// The engine for commands that only read the vault (`ls`, `restore`): this deployment's when
    /// its control plane exists; otherwise one whose control state and queues live in this
    /// process (`tidemark_core::memory`), saying so once on stderr. The second value is true in
    /// that vault-only mode, where a restore must run here because no worker can see its queue.
    pub async fn reading_engine(&self, vault: &S3Url) -> Result<(Engine, bool)> {
        let missing = admin::missing_control_plane(&self.clients, &self.names).await?;
        if missing.is_empty() {
            return Ok((self.engine(vault).await?, false));
        }
        eprintln!(
            "tidemark: {} not found; reading vault s3://{} alone (control state and queues in this process only)",
            missing.join(", "),
            vault.bucket
        );
        let config = self.config(&vault.bucket)?;
        let s3: Arc<S3Store> = Arc::new(S3Store::new(self.clients.s3.clone()));
        Ok((tidemark_core::memory::vault_only_engine(s3.clone(), s3, self.keys(), config), true))
    }

    /// The engine for `rebuild`: the control table is created when it is missing (that is what
    /// a rebuild fills); the queues are this deployment's where they exist, and a rebuild sends
    /// nothing to them.
    pub async fn control_engine(&self, vault: &S3Url) -> Result<Engine> {
        let config = self.config(&vault.bucket)?;
        admin::ensure_table(&self.clients, &self.names.table)
            .await
            .with_context(|| format!("creating the control table {}", self.names.table))?;
        let url = |name: &str| {
            let name = name.to_string();
            async move { admin::queue_url(&self.clients, &name).await.unwrap_or_default() }
        };
        let queues = QueueUrls {
            work: url(&self.names.work_queue).await,
            delta: url(&self.names.delta_queue).await,
            restore: url(&self.names.restore_queue).await,
        };
        let s3: Arc<S3Store> = Arc::new(S3Store::new(self.clients.s3.clone()));
        Ok(Engine {
            source: s3.clone(),
            vault: s3,
            control: Arc::new(self.control_store()),
            queue: Arc::new(SqsQueue::new(self.clients.sqs.clone())),
            clock: Arc::new(SystemClock),
            keys: self.keys(),
            config,
            queues,
        })
    }

    /// The deployment's control table.
    fn control_store(&self) -> DynamoControlStore {
        DynamoControlStore::new(self.clients.dynamodb.clone(), &self.names.table)
    }

    /// The key service that makes and unwraps the data keys of encrypted packs: KMS at this
    /// invocation's endpoint, its unwrapped keys remembered (bounded) for the command's length.
    pub fn keys(&self) -> Arc<dyn tidemark_core::ports::KeyService> {
        Arc::new(tidemark_core::vault::crypt::CachedKeys::new(Arc::new(KmsKeys::new(self.clients.kms.clone()))))
    }

    /// The stores restores write targets with: the caller's credentials, or a role a request names.
    pub fn targets(&self, engine: &Engine) -> Arc<dyn Targets> {
        Arc::new(RoleTargets::new(self.clients.shared.clone(), self.clients.s3.clone(), engine.vault.clone(), "tidemark-cli"))
    }
}

/// Parses `s3://bucket[/prefix]`, naming the flag in the error.
pub fn s3_url(flag: &str, value: &str) -> Result<S3Url> {
    value.parse::<S3Url>().with_context(|| format!("--{flag}"))
}

/// Parses an RFC 3339 time, naming the flag in the error.
pub fn time(flag: &str, value: &str) -> Result<chrono::DateTime<chrono::Utc>> {
    chrono::DateTime::parse_from_rfc3339(value)
        .map(|t| t.with_timezone(&chrono::Utc))
        .with_context(|| format!("--{flag} '{value}' is not an RFC 3339 time (for example 2026-11-21T09:40:00Z)"))
}
