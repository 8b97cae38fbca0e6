//! The delta function's handler: a batch of S3 change events from the delta queue.

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use tidemark_core::changes::delta::{process_batch, DeltaMessage};
use tidemark_core::engine::Engine;

use crate::sqs::{failure, response};

/// Delta: captures a batch of S3 change events; malformed or foreign ones are reported so SQS
/// retries and then dead-letters them without blocking the others.
pub async fn delta_handler(engine: &Engine, event: SqsEvent) -> SqsBatchResponse {
    let msgs: Vec<DeltaMessage> = event
        .records
        .iter()
        .map(|m| DeltaMessage { id: m.message_id.clone().unwrap_or_default(), body: m.body.clone().unwrap_or_default() })
        .collect();
    match process_batch(engine, &msgs).await {
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
