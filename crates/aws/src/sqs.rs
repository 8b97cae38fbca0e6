//! The SQS adapter of the [`Queue`] port.

use async_trait::async_trait;
use aws_sdk_sqs::types::{MessageSystemAttributeName, QueueAttributeName};
use tidemark_core::ports::{Message, Queue};
use tidemark_core::Result;

use crate::errors::map;

/// SQS through the AWS SDK; queues are named by URL.
#[derive(Clone, Debug)]
pub struct SqsQueue {
    client: aws_sdk_sqs::Client,
}

impl SqsQueue {
    /// Wraps a client.
    pub fn new(client: aws_sdk_sqs::Client) -> Self {
        SqsQueue { client }
    }
}

#[async_trait]
impl Queue for SqsQueue {
    async fn send(&self, queue: &str, body: &str, delay_seconds: i32) -> Result<()> {
        self.client
            .send_message()
            .queue_url(queue)
            .message_body(body)
            .delay_seconds(delay_seconds)
            .send()
            .await
            .map_err(|e| map("SendMessage", e))?;
        Ok(())
    }

    async fn receive(&self, queue: &str, max: i32, wait_seconds: i32, visibility_seconds: i32) -> Result<Vec<Message>> {
        let out = self
            .client
            .receive_message()
            .queue_url(queue)
            .max_number_of_messages(max.clamp(1, 10))
            .wait_time_seconds(wait_seconds)
            .visibility_timeout(visibility_seconds)
            .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
            .send()
            .await
            .map_err(|e| map("ReceiveMessage", e))?;
        Ok(out
            .messages()
            .iter()
            .map(|m| Message {
                id: m.message_id().unwrap_or_default().to_string(),
                receipt: m.receipt_handle().unwrap_or_default().to_string(),
                body: m.body().unwrap_or_default().to_string(),
                receive_count: m
                    .attributes()
                    .and_then(|a| a.get(&MessageSystemAttributeName::ApproximateReceiveCount))
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(1),
            })
            .collect())
    }

    async fn delete(&self, queue: &str, receipt: &str) -> Result<()> {
        self.client.delete_message().queue_url(queue).receipt_handle(receipt).send().await.map_err(|e| map("DeleteMessage", e))?;
        Ok(())
    }

    async fn change_visibility(&self, queue: &str, receipt: &str, visibility_seconds: i32) -> Result<()> {
        self.client
            .change_message_visibility()
            .queue_url(queue)
            .receipt_handle(receipt)
            .visibility_timeout(visibility_seconds)
            .send()
            .await
            .map_err(|e| map("ChangeMessageVisibility", e))?;
        Ok(())
    }

    async fn depth(&self, queue: &str) -> Result<u64> {
        let out = self
            .client
            .get_queue_attributes()
            .queue_url(queue)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesDelayed)
            .send()
            .await
            .map_err(|e| map("GetQueueAttributes", e))?;
        Ok(out.attributes().map(|a| a.values().filter_map(|v| v.parse::<u64>().ok()).sum()).unwrap_or(0))
    }
}
