//! The worker function's handler: tasks and seed steps from the work queue.

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use tidemark_core::engine::Engine;
use tidemark_core::protocol::dispatch::{dispatch, Disposition};

use crate::sqs::{failure, response};

/// Worker: one message per task or seed step, each handed to the engine's one dispatcher; a
/// message to retry or that failed is reported as a batch item failure, so only it comes back.
pub async fn worker_handler(engine: &Engine, event: SqsEvent, owner: &str) -> SqsBatchResponse {
    let mut failures = Vec::new();
    for m in event.records {
        let id = m.message_id.clone().unwrap_or_default();
        match dispatch(engine, &id, m.body.as_deref().unwrap_or_default(), owner).await {
            Disposition::Done => {}
            Disposition::Retry { .. } | Disposition::Failed { .. } => failures.push(failure(&id)),
        }
    }
    response(failures)
}
