//! The KMS adapter of the [`KeyService`] port: GenerateDataKey and Decrypt under the vault's key.

use async_trait::async_trait;
use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::DataKeySpec;
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use tidemark_core::ports::{DataKey, KeyService};
use tidemark_core::{Error, Result};

/// KMS through the AWS SDK.
#[derive(Clone, Debug)]
pub struct KmsKeys {
    client: aws_sdk_kms::Client,
}

impl KmsKeys {
    /// Wraps a client.
    pub fn new(client: aws_sdk_kms::Client) -> Self {
        KmsKeys { client }
    }
}

/// Converts a KMS error into the engine's key error, naming the key; throttling, KMS's own
/// failures and network failures are transient, everything about the key itself is not.
fn key_error<E>(key_id: &str, operation: &str, e: SdkError<E, aws_sdk_s3::config::http::HttpResponse>) -> Error
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let status = e.raw_response().map(|r| r.status().as_u16());
    let code = e.code().unwrap_or_default().to_string();
    let transient = matches!(e, SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_))
        || status.is_some_and(|s| s >= 500 || s == 429)
        || matches!(
            code.as_str(),
            "ThrottlingException" | "KMSInternalException" | "KeyUnavailableException" | "DependencyTimeoutException"
        );
    let detail = match (e.code(), e.message()) {
        (Some(c), Some(m)) => format!("{c}: {m}"),
        (Some(c), None) => c.to_string(),
        _ => format!("{}", DisplayErrorContext(&e)),
    };
    Error::key(key_id, operation, detail, transient)
}

#[async_trait]
impl KeyService for KmsKeys {
    async fn generate_data_key(&self, key_id: &str) -> Result<DataKey> {
        let op = "generate a data key";
        let o = self
            .client
            .generate_data_key()
            .key_id(key_id)
            .key_spec(DataKeySpec::Aes256)
            .send()
            .await
            .map_err(|e| key_error(key_id, op, e))?;
        let plaintext: [u8; 32] = o
            .plaintext()
            .map(|b| b.as_ref())
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| Error::key(key_id, op, "GenerateDataKey returned no 32-byte plaintext", false))?;
        let wrapped = o
            .ciphertext_blob()
            .map(|b| b.as_ref().to_vec())
            .filter(|b| !b.is_empty())
            .ok_or_else(|| Error::key(key_id, op, "GenerateDataKey returned no ciphertext blob", false))?;
        Ok(DataKey { plaintext, wrapped })
    }

    async fn decrypt_data_key(&self, key_id: &str, wrapped: &[u8]) -> Result<[u8; 32]> {
        let op = "decrypt a data key";
        // Naming the key makes KMS refuse a blob another key wrapped (IncorrectKeyException)
        // instead of quietly using whichever key the blob names.
        let o =
            self.client.decrypt().key_id(key_id).ciphertext_blob(Blob::new(wrapped)).send().await.map_err(|e| key_error(key_id, op, e))?;
        o.plaintext()
            .map(|b| b.as_ref())
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| Error::key(key_id, op, "Decrypt returned no 32-byte plaintext", false))
    }
}

/// Creates a symmetric KMS key for a local stack's vault (`tidemark init --local`) and returns
/// its ARN.
pub async fn create_vault_key(client: &aws_sdk_kms::Client, description: &str) -> Result<String> {
    let o = client.create_key().description(description).send().await.map_err(|e| key_error("(new key)", "create a key", e))?;
    o.key_metadata()
        .map(|m| m.arn().map(String::from).unwrap_or_else(|| m.key_id().to_string()))
        .ok_or_else(|| Error::key("(new key)", "create a key", "CreateKey returned no key metadata", false))
}
