//! The restore function's handler: batches from the restore queue (restore steps and tasks),
//! and restore requests (a console test event) that start a run.

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use tidemark_core::control::Counters;
use tidemark_core::engine::Engine;
use tidemark_core::ports::Targets;
use tidemark_core::protocol::dispatch::{dispatch_restore, RestoreDisposition};
use tidemark_core::protocol::messages::{parse_restore_message, RestoreMessage, RestoreTaskMessage};
use tidemark_core::restore::run;
use tidemark_core::restore::RestoreRequest;

pub use tidemark_api::RestoreStarted;

use crate::metrics::{progress, Metrics};
use crate::sqs::{failure, response};
use crate::LambdaError;

/// Restore-queue batch: every message handed to the engine's restore dispatcher; the ones to
/// retry or that failed are reported as batch item failures, so only they come back. What each
/// task message restored is reported to `metrics`.
pub async fn restore_queue_handler(
    engine: &Engine,
    targets: &dyn Targets,
    metrics: &dyn Metrics,
    event: SqsEvent,
    owner: &str,
) -> SqsBatchResponse {
    let mut failures = Vec::new();
    for m in event.records {
        let id = m.message_id.clone().unwrap_or_default();
        let body = m.body.as_deref().unwrap_or_default();
        let task = match parse_restore_message(body) {
            Ok(RestoreMessage::Task(t)) => Some(t),
            _ => None,
        };
        let before = match &task {
            Some(t) => task_counters(engine, t).await,
            None => None,
        };
        match dispatch_restore(engine, targets, &id, body, owner).await {
            RestoreDisposition::Done => {}
            RestoreDisposition::Retry { .. } | RestoreDisposition::Failed { .. } => failures.push(failure(&id)),
        }
        // Without a first reading the difference would count earlier invocations' work again.
        if let (Some(t), Some(before)) = (&task, before) {
            report(engine, metrics, t, before).await;
        }
    }
    response(failures)
}

/// A task's counters as its record holds them (what finished batches restored), if it can be read.
async fn task_counters(engine: &Engine, t: &RestoreTaskMessage) -> Option<Counters> {
    match engine.control().get_task(&t.restore_id, &t.task_id).await {
        Ok(task) => task.map(|(_, t)| t.counters),
        Err(e) => {
            tracing::warn!(restore_id = %t.restore_id, task_id = %t.task_id, error = %e, "could not read the task's counters for metrics");
            None
        }
    }
}

/// Reports what the message's batches restored: the task's counters now, less before. A dry run
/// wrote nothing and reports nothing.
async fn report(engine: &Engine, metrics: &dyn Metrics, t: &RestoreTaskMessage, before: Counters) {
    let Some(after) = task_counters(engine, t).await else { return };
    let done = progress(&before, &after);
    if done.objects + done.failed + done.deleted + done.unchanged == 0 {
        return;
    }
    match run::load(engine, &t.restore_id).await {
        Ok(Some((_, r))) if !r.request.dry_run => metrics.restore_progress(&r.request.source_bucket, &done, engine.clock.now()),
        Ok(_) => {}
        Err(e) => tracing::warn!(restore_id = %t.restore_id, error = %e, "could not read the run for metrics"),
    }
}

/// Starts (or continues) the restore a request asks for; the work happens on the restore queue.
pub async fn start_restore(engine: &Engine, targets: &dyn Targets, req: RestoreRequest) -> Result<RestoreStarted, LambdaError> {
    Ok(tidemark_api::start_restore(engine, targets, req).await?)
}

/// The restore function's entry: an SQS batch from the restore queue (it has `Records`), or a
/// restore request.
pub async fn restore_handler(
    engine: &Engine,
    targets: &dyn Targets,
    metrics: &dyn Metrics,
    event: serde_json::Value,
    owner: &str,
) -> Result<serde_json::Value, LambdaError> {
    let bad = |e: serde_json::Error| LambdaError::Engine(tidemark_core::Error::Invalid(format!("restore event: {e}")));
    if event.get("Records").is_some() {
        let batch: SqsEvent = serde_json::from_value(event).map_err(bad)?;
        let resp = restore_queue_handler(engine, targets, metrics, batch, owner).await;
        return Ok(serde_json::to_value(resp).expect("a batch response serialises"));
    }
    let req: RestoreRequest = serde_json::from_value(event).map_err(bad)?;
    Ok(serde_json::to_value(start_restore(engine, targets, req).await?).expect("the started restore serialises"))
}
