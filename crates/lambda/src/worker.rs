//! The worker function's handler: tasks and seed steps from the work queue.

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use tidemark_core::engine::Engine;
use tidemark_core::protect::steps::{handle_step, parse_work_message, WorkMessage};
use tidemark_core::protect::worker::{process_task, TaskOutcome};

use crate::sqs::{failure, response};

/// Worker: one message per task or seed step; a task that did not finish, or a step that
/// failed, is reported as a batch item failure.
pub async fn worker_handler(engine: &Engine, event: SqsEvent, owner: &str) -> SqsBatchResponse {
    let mut failures = Vec::new();
    for m in event.records {
        let id = m.message_id.clone().unwrap_or_default();
        let body = m.body.unwrap_or_default();
        let outcome = match parse_work_message(&body) {
            Ok(WorkMessage::Step(step)) => match handle_step(engine, &step).await {
                Ok(outcome) => {
                    tracing::info!(message_id = %id, run_id = %step.run_id, step = ?step.step, file = ?step.file, ?outcome, "seed step");
                    continue;
                }
                Err(e) => Err(e),
            },
            Ok(WorkMessage::Task(task)) => match process_task(engine, &task, owner).await {
                // A deferred task goes back as a fresh delayed message (see `requeue_deferred`),
                // so the received one succeeds; if the send fails, SQS redelivers this one.
                Ok(TaskOutcome::Deferred(delay)) => {
                    tidemark_core::protect::worker::requeue_deferred(engine, &task, delay).await.map(|_| TaskOutcome::Deferred(delay))
                }
                other => other,
            },
            Err(e) => Err(e),
        };
        match outcome {
            Ok(TaskOutcome::Finished(_)) | Ok(TaskOutcome::AlreadyDone) | Ok(TaskOutcome::Deferred(_)) => {}
            Ok(TaskOutcome::Busy) => failures.push(failure(&id)),
            Err(e) => {
                tracing::error!(message_id = %id, error = %e, transient = e.is_transient(), "task failed");
                failures.push(failure(&id));
            }
        }
    }
    response(failures)
}
