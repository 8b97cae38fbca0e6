//! The delta function's handler: a batch of S3 change events from the delta queue.

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use chrono::DateTime;
use tidemark_core::changes::backlog::{self, Received};
use tidemark_core::engine::Engine;

use crate::sqs::{failure, response};

/// One SQS record as the backlog records it: its SentTimestamp and receive count come from the
/// record's attributes, which the event source mapping always fills.
fn received(m: &SqsMessage) -> Received {
    let attr = |name: &str| m.attributes.get(name).and_then(|v| v.parse::<i64>().ok());
    Received {
        id: m.message_id.clone().unwrap_or_default(),
        body: m.body.clone().unwrap_or_default(),
        sent_at: attr("SentTimestamp").and_then(DateTime::from_timestamp_millis),
        receive_count: attr("ApproximateReceiveCount").map_or(1, |n| n.clamp(1, u32::MAX as i64) as u32),
    }
}

/// Delta: captures a batch of S3 change events, recording the batch for the checkpoint's
/// watermark (`changes::backlog`); malformed or foreign events are reported so SQS retries and
/// then dead-letters them without blocking the others.
pub async fn delta_handler(engine: &Engine, event: SqsEvent) -> SqsBatchResponse {
    let msgs: Vec<Received> = event.records.iter().map(received).collect();
    match backlog::handle(engine, &msgs).await {
        Ok(report) => {
            tracing::info!(
                captured = report.captured,
                deleted = report.deleted,
                duplicates = report.duplicates,
                failed = report.failed.len(),
                "delta batch"
            );
            response(report.failed.iter().map(|(id, _)| failure(id)).collect())
        }
        Err(e) => {
            tracing::error!(error = %e, "delta batch failed; every message will be retried");
            response(msgs.iter().map(|m| failure(&m.id)).collect())
        }
    }
}
