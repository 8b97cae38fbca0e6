//! The alert function's handler: one alert per dead-lettered message, published to the SNS topic.
//!
//! It is the event source of every dead-letter queue (work, delta, restore). Each message is
//! read, never changed: the alert quotes it and says where it stays (the dead-letter queue keeps
//! it for its retention, to be redriven once the cause is fixed). A message whose alert cannot be
//! published is reported as a batch item failure, so it is tried again rather than lost.

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use tidemark_core::alert::{self, Alert};
use tidemark_core::engine::Engine;
use tidemark_core::ports::Notifier;

use crate::sqs::{failure, response};

/// Publishes one alert per message of `event` to `topic`; returns the messages to try again.
pub async fn alert_handler(engine: &Engine, notifier: &dyn Notifier, topic: &str, event: SqsEvent) -> SqsBatchResponse {
    let mut failed = Vec::new();
    for m in event.records {
        let id = m.message_id.clone().unwrap_or_default();
        // The queue's ARN names where the whole message stays.
        let dlq = m.event_source_arn.clone().unwrap_or_else(|| "(unknown queue)".into());
        let body = m.body.as_deref().unwrap_or_default();
        match publish_one(engine, notifier, topic, &dlq, &id, body).await {
            Ok(alert) => tracing::info!(message_id = %id, step = %alert.step, run_id = ?alert.run_id, "alert published"),
            Err(e) => {
                tracing::error!(message_id = %id, error = %e, "the alert could not be published; the message is tried again");
                failed.push(failure(&id));
            }
        }
    }
    response(failed)
}

async fn publish_one(
    engine: &Engine,
    notifier: &dyn Notifier,
    topic: &str,
    dlq: &str,
    id: &str,
    body: &str,
) -> tidemark_core::Result<Alert> {
    let alert = alert::compose(engine, dlq, id, body).await?;
    let text = serde_json::to_string_pretty(&alert).expect("alert serialises");
    notifier.publish(topic, &alert::subject(&alert), &text).await?;
    Ok(alert)
}
