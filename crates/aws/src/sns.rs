//! The [`Notifier`] port over SNS: alerts are published to a topic (which mails, pages or feeds a queue).

use async_trait::async_trait;
use tidemark_core::ports::Notifier;
use tidemark_core::{Error, Result};

/// Publishes alerts with SNS `Publish`.
#[derive(Clone)]
pub struct SnsNotifier {
    client: aws_sdk_sns::Client,
}

impl SnsNotifier {
    /// A notifier over an SNS client.
    pub fn new(client: aws_sdk_sns::Client) -> Self {
        SnsNotifier { client }
    }

    /// A notifier built from the loaded configuration (`AwsClients::shared`), so the endpoint,
    /// region and credentials are the other clients'.
    pub fn from_shared(shared: &aws_config::SdkConfig) -> Self {
        SnsNotifier { client: aws_sdk_sns::Client::new(shared) }
    }
}

#[async_trait]
impl Notifier for SnsNotifier {
    async fn publish(&self, topic: &str, subject: &str, body: &str) -> Result<String> {
        use aws_sdk_sns::error::ProvideErrorMetadata;
        match self.client.publish().topic_arn(topic).subject(subject).message(body).send().await {
            Ok(out) => Ok(out.message_id().unwrap_or_default().to_string()),
            Err(e) => {
                let code = e.code().unwrap_or_default().to_string();
                // Throttling and server errors pass; a missing topic or a refused publish does not.
                let transient =
                    matches!(
                        code.as_str(),
                        "Throttling" | "ThrottlingException" | "InternalError" | "InternalFailure" | "ServiceUnavailable"
                    ) || matches!(e, aws_sdk_sns::error::SdkError::TimeoutError(_) | aws_sdk_sns::error::SdkError::DispatchFailure(_));
                let message = e
                    .message()
                    .map(|m| format!("{code}: {m}"))
                    .unwrap_or_else(|| format!("{}", aws_sdk_sns::error::DisplayErrorContext(&e)));
                Err(Error::port("SNS Publish", message, transient))
            }
        }
    }
}
