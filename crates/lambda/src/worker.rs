//! The worker function's handler: tasks and seed steps from the work queue.

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use tidemark_core::engine::Engine;
use tidemark_core::protocol::dispatch::{dispatch, Disposition};

use crate::sqs::{failure, response};

/// Worker: one message per task or seed step, each handed to the engine's one dispatcher; a
/// message to retry or that failed is reported as a batch item failure, so only it comes back.
/// `ObjectsCaptured`, `BytesCaptured` and `SlowDown503` are printed as EMF after the batch.
pub async fn worker_handler(engine: &Engine, event: SqsEvent, owner: &str) -> SqsBatchResponse {
    let mut failures = Vec::new();
    for m in event.records {
        let id = m.message_id.clone().unwrap_or_default();
        match dispatch(engine, &id, m.body.as_deref().unwrap_or_default(), owner).await {
            Disposition::Done => {}
            Disposition::Retry { .. } | Disposition::Failed { .. } => failures.push(failure(&id)),
        }
    }
    // What the batch captured and how often S3 throttled it, as the dashboard's metrics.
    crate::metrics::print_capture_tally(engine.clock.now().timestamp_millis());
    response(failures)
}
