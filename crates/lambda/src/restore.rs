//! The restore function's handler: batches from the restore queue (restore steps and tasks),
//! and restore requests (a console test event) that start a run.

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use serde::{Deserialize, Serialize};
use tidemark_core::engine::Engine;
use tidemark_core::ports::Targets;
use tidemark_core::protocol::dispatch::{dispatch_restore, RestoreDisposition};
use tidemark_core::restore::run;
use tidemark_core::restore::RestoreRequest;

use crate::sqs::{failure, response};
use crate::LambdaError;

/// What starting a restore returned: the run's id and where it is.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RestoreStarted {
    pub restore_id: String,
    pub state: String,
    /// True when the request continued its unfinished run instead of starting one.
    pub resumed: bool,
}

/// Restore-queue batch: every message handed to the engine's restore dispatcher; the ones to
/// retry or that failed are reported as batch item failures, so only they come back.
pub async fn restore_queue_handler(engine: &Engine, targets: &dyn Targets, event: SqsEvent, owner: &str) -> SqsBatchResponse {
    let mut failures = Vec::new();
    for m in event.records {
        let id = m.message_id.clone().unwrap_or_default();
        match dispatch_restore(engine, targets, &id, m.body.as_deref().unwrap_or_default(), owner).await {
            RestoreDisposition::Done => {}
            RestoreDisposition::Retry { .. } | RestoreDisposition::Failed { .. } => failures.push(failure(&id)),
        }
    }
    response(failures)
}

/// Starts (or continues) the restore a request asks for; the work happens on the restore queue.
pub async fn start_restore(engine: &Engine, targets: &dyn Targets, req: RestoreRequest) -> Result<RestoreStarted, LambdaError> {
    let target = targets.store(req.target_role_arn.as_deref()).await?;
    let (r, resumed) = run::start(engine, target.as_ref(), req).await?;
    Ok(RestoreStarted { restore_id: r.restore_id, state: r.state.name().to_string(), resumed })
}

/// The restore function's entry: an SQS batch from the restore queue (it has `Records`), or a
/// restore request.
pub async fn restore_handler(
    engine: &Engine,
    targets: &dyn Targets,
    event: serde_json::Value,
    owner: &str,
) -> Result<serde_json::Value, LambdaError> {
    let bad = |e: serde_json::Error| LambdaError::Engine(tidemark_core::Error::Invalid(format!("restore event: {e}")));
    if event.get("Records").is_some() {
        let batch: SqsEvent = serde_json::from_value(event).map_err(bad)?;
        let resp = restore_queue_handler(engine, targets, batch, owner).await;
        return Ok(serde_json::to_value(resp).expect("a batch response serialises"));
    }
    let req: RestoreRequest = serde_json::from_value(event).map_err(bad)?;
    Ok(serde_json::to_value(start_restore(engine, targets, req).await?).expect("the started restore serialises"))
}
