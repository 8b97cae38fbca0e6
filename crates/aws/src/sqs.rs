//! The SQS adapter of the [`Queue`] port, with the queue's age metric read from CloudWatch.

use async_trait::async_trait;
use aws_sdk_cloudwatch::types::{Dimension, Statistic};
use aws_sdk_sqs::types::{DeleteMessageBatchRequestEntry, MessageSystemAttributeName, QueueAttributeName};
use chrono::{DateTime, Duration, Utc};
use tidemark_core::ports::{Backlog, Message, Queue};
use tidemark_core::Result;

use crate::errors::map;

/// How far back the checkpoint looks for a datapoint of the queue's age metric.
const AGE_LOOKBACK_MINUTES: i64 = 15;

/// SQS through the AWS SDK; queues are named by URL.
#[derive(Clone, Debug)]
pub struct SqsQueue {
    client: aws_sdk_sqs::Client,
    /// Reads `AWS/SQS ApproximateAgeOfOldestMessage`, the only measure SQS offers of its oldest
    /// unhandled message (GetQueueAttributes has counts, not ages).
    metrics: Option<aws_sdk_cloudwatch::Client>,
}

impl SqsQueue {
    /// Wraps a client; without a CloudWatch client only an empty queue is evidence for the watermark.
    pub fn new(client: aws_sdk_sqs::Client) -> Self {
        SqsQueue { client, metrics: None }
    }

    /// Also reads the queue's age metric, so a checkpoint can seal while changes keep arriving.
    pub fn with_age_metric(mut self, metrics: aws_sdk_cloudwatch::Client) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// The latest `ApproximateAgeOfOldestMessage` datapoint (its period's start and its maximum, in seconds).
    async fn latest_age(
        &self,
        metrics: &aws_sdk_cloudwatch::Client,
        queue: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<(DateTime<Utc>, f64)>> {
        let name = queue_name(queue);
        let secs = |t: DateTime<Utc>| aws_sdk_cloudwatch::primitives::DateTime::from_secs(t.timestamp());
        let out = metrics
            .get_metric_statistics()
            .namespace("AWS/SQS")
            .metric_name("ApproximateAgeOfOldestMessage")
            .dimensions(Dimension::builder().name("QueueName").value(name).build())
            .start_time(secs(now - Duration::minutes(AGE_LOOKBACK_MINUTES)))
            .end_time(secs(now + Duration::minutes(1)))
            .period(60)
            .statistics(Statistic::Maximum)
            .send()
            .await
            .map_err(|e| map("GetMetricStatistics", e))?;
        Ok(out
            .datapoints()
            .iter()
            .filter_map(|d| Some((DateTime::from_timestamp(d.timestamp()?.secs(), 0)?, d.maximum()?)))
            .max_by_key(|(t, _)| *t))
    }
}

/// The queue's name: the last path segment of its URL (the metric's `QueueName` dimension).
fn queue_name(url: &str) -> &str {
    url.trim_end_matches('/').rsplit('/').next().unwrap_or(url)
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
            .message_system_attribute_names(MessageSystemAttributeName::SentTimestamp)
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
                sent_at: m
                    .attributes()
                    .and_then(|a| a.get(&MessageSystemAttributeName::SentTimestamp))
                    .and_then(|v| v.parse::<i64>().ok())
                    .and_then(DateTime::from_timestamp_millis),
            })
            .collect())
    }

    async fn delete(&self, queue: &str, receipt: &str) -> Result<()> {
        self.client.delete_message().queue_url(queue).receipt_handle(receipt).send().await.map_err(|e| map("DeleteMessage", e))?;
        Ok(())
    }

    /// DeleteMessageBatch, ten entries per request. Every request is sent even when an entry
    /// is refused (a receipt that a redelivery replaced, say); then the error names the first.
    async fn delete_many(&self, queue: &str, receipts: &[String]) -> Result<()> {
        let mut refused: Vec<(String, bool)> = Vec::new();
        for chunk in receipts.chunks(10) {
            let entries: Vec<DeleteMessageBatchRequestEntry> = chunk
                .iter()
                .enumerate()
                .map(|(i, r)| {
                    DeleteMessageBatchRequestEntry::builder().id(i.to_string()).receipt_handle(r).build().expect("id and receipt set")
                })
                .collect();
            let out = self
                .client
                .delete_message_batch()
                .queue_url(queue)
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(|e| map("DeleteMessageBatch", e))?;
            refused.extend(out.failed().iter().map(|f| (format!("{}: {}", f.code(), f.message().unwrap_or("")), f.sender_fault())));
        }
        match refused.first() {
            None => Ok(()),
            Some((first, sender_fault)) => Err(tidemark_core::Error::port(
                "DeleteMessageBatch",
                format!("{} of {} entries refused, the first with {first}", refused.len(), receipts.len()),
                !sender_fault,
            )),
        }
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

    /// An empty queue is evidence as of now; otherwise the latest datapoint of the age metric says
    /// that, at the start of its minute, nothing older than its maximum age was left unhandled.
    async fn oldest_unhandled(&self, queue: &str) -> Result<Backlog> {
        let now = Utc::now();
        if self.depth(queue).await? == 0 {
            return Ok(Backlog::Empty { at: now });
        }
        let Some(metrics) = &self.metrics else {
            return Ok(Backlog::Unknown { reason: "the queue is not empty and its age metric is not read here".into() });
        };
        Ok(match self.latest_age(metrics, queue, now).await? {
            Some((at, age)) => Backlog::Oldest { at, oldest_sent: at - Duration::milliseconds((age * 1000.0).ceil() as i64) },
            None => Backlog::Unknown {
                reason: format!(
                    "no ApproximateAgeOfOldestMessage datapoint for queue {} in the last {AGE_LOOKBACK_MINUTES} minutes",
                    queue_name(queue)
                ),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::queue_name;

    #[test]
    fn the_metric_dimension_is_the_last_segment_of_the_queue_url() {
        assert_eq!(queue_name("https://sqs.eu-west-1.amazonaws.com/123456789012/tidemark-delta"), "tidemark-delta");
        assert_eq!(queue_name("http://127.0.0.1:5000/123456789012/q/"), "q");
    }
}
