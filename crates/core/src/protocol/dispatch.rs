//! Handling one work-queue message, and what the queue should do with it afterwards.
//!
//! The worker Lambda and the local runner both call [`dispatch`]; the Lambda reports
//! [`Disposition::Retry`] and [`Disposition::Failed`] as batch item failures (the queue's
//! visibility timeout brings them back; a Lambda cannot shorten it without an extra call per
//! message), and the local runner deletes a done message and makes a retried one visible again
//! after its delay.

use std::time::Duration;

use crate::engine::Engine;
use crate::history::{self, StepState};
use crate::ports::Targets;
use crate::protect::steps::handle_step;
use crate::protect::worker::{process_task, requeue_deferred, TaskOutcome};
use crate::protocol::messages::{parse_restore_message, parse_work_message, RestoreMessage, RestoreStepKind, WorkMessage};
use crate::restore::plan::{self, TaskLimits};
use crate::restore::task::{self as restore_task, TaskOutcome as RestoreTaskOutcome};
use crate::telemetry::{record, step_span};
use crate::Error;
use tracing::Instrument;

/// How long a busy task's message waits before it is tried again: about the time a live worker
/// needs to checkpoint, after which either it still holds the lease or the lease has lapsed.
pub const BUSY_RETRY: Duration = Duration::from_secs(2);

/// How long a message whose handling failed transiently waits before it is tried again.
pub const TRANSIENT_RETRY: Duration = Duration::from_secs(1);

/// What the queue should do with a message once its handler returned.
#[derive(Debug)]
pub enum Disposition {
    /// Handled now, or found already handled (a duplicate): delete the message.
    Done,
    /// Not handled now and worth another try after `after`: a busy task, an interrupted step, a
    /// transient failure, or a message of a newer version than this worker reads.
    Retry { after: Duration, reason: String },
    /// Cannot be handled: the queue's retries and then its dead-letter queue take it. `message`
    /// is the parsed message, or `None` when the body is not a message at all.
    Failed { error: Error, message: Option<WorkMessage> },
}

/// What the restore queue should do with a message (as [`Disposition`]; `restore_id` names the
/// run of a failed message that parsed).
#[derive(Debug)]
pub enum RestoreDisposition {
    Done,
    Retry { after: Duration, reason: String },
    Failed { error: Error, restore_id: Option<String> },
}

fn from_error(error: Error, message: Option<WorkMessage>) -> Disposition {
    if error.is_transient() {
        Disposition::Retry { after: TRANSIENT_RETRY, reason: error.to_string() }
    } else {
        Disposition::Failed { error, message }
    }
}

/// Handles one work-queue message (`id` is the queue's message id, for the logs).
///
/// A deferred task is put back as a fresh, delayed copy of its message (see
/// [`requeue_deferred`]) and the received one is done; if sending the copy fails, the received
/// one is retried instead, so the task is never dropped.
pub async fn dispatch(engine: &Engine, id: &str, body: &str, owner: &str) -> Disposition {
    let span = step_span("work message");
    dispatch_work(engine, id, body, owner).instrument(span).await
}

async fn dispatch_work(engine: &Engine, id: &str, body: &str, owner: &str) -> Disposition {
    let message = match parse_work_message(body) {
        Ok(m) => m,
        Err(e) => {
            tracing::error!(message_id = %id, error = %e, transient = e.is_transient(), "malformed work message");
            return from_error(e, None);
        }
    };
    let started = std::time::Instant::now();
    let span = tracing::Span::current();
    let (name, task_id) = match &message {
        WorkMessage::Step(step) => (format!("seed {:?}", step.step).to_lowercase(), None),
        WorkMessage::Task(task) => ("seed task".to_string(), Some(task.task_id.as_str())),
    };
    span.record("step", name.as_str());
    record(Some(message.run_id()), task_id, None, None);
    tracing::info!(message_id = %id, "step started");
    let begin = history::Begin {
        run_id: message.run_id(),
        name: &name,
        step_id: id,
        task_id,
        input: body,
        input_ref: format!("queue:{}#{id}", engine.queues.work),
        log_id: owner,
    };
    history::best_effort("start", history::begin(engine, &begin).await);
    let mut counted = (None, None);
    let disposition = match &message {
        WorkMessage::Step(step) => match handle_step(engine, step).await {
            Ok(outcome) => {
                tracing::info!(message_id = %id, run_id = %step.run_id, step = ?step.step, file = ?step.file, ?outcome, "seed step");
                Disposition::Done
            }
            Err(e) => from_error(e, Some(message.clone())),
        },
        WorkMessage::Task(task) => match process_task(engine, task, owner).await {
            Ok(TaskOutcome::Finished(c)) => {
                counted = (Some(c.objects), Some(c.bytes));
                Disposition::Done
            }
            Ok(TaskOutcome::AlreadyDone) => Disposition::Done,
            Ok(TaskOutcome::Busy) => {
                Disposition::Retry { after: BUSY_RETRY, reason: format!("task {} is leased by another live worker", task.task_id) }
            }
            Ok(TaskOutcome::Deferred(delay)) => match requeue_deferred(engine, task, delay).await {
                Ok(()) => Disposition::Done,
                Err(e) => from_error(e, Some(message.clone())),
            },
            Err(e) => from_error(e, Some(message.clone())),
        },
    };
    match &disposition {
        Disposition::Retry { reason, .. } => {
            tracing::warn!(message_id = %id, run_id = %message.run_id(), %reason, "work message will be retried")
        }
        Disposition::Failed { error, .. } => {
            tracing::error!(message_id = %id, run_id = %message.run_id(), error = %error, "work message failed")
        }
        Disposition::Done => {
            tracing::info!(message_id = %id, run_id = %message.run_id(), elapsed_ms = started.elapsed().as_millis() as u64, "step finished")
        }
    }
    let end = match &disposition {
        Disposition::Done => history::End { state: StepState::Done, error: None, objects: counted.0, bytes: counted.1 },
        Disposition::Retry { reason, .. } => {
            history::End { state: StepState::Retry, error: Some(reason.clone()), objects: None, bytes: None }
        }
        Disposition::Failed { error, .. } => {
            history::End { state: StepState::Failed, error: Some(error.to_string()), objects: None, bytes: None }
        }
    };
    history::best_effort("end", history::end(engine, message.run_id(), id, end).await);
    disposition
}

/// Handles one restore-queue message: a step of a run (plan, enqueue, finish) or one of its
/// tasks. `targets` gives the store each run writes its target with.
pub async fn dispatch_restore(engine: &Engine, targets: &dyn Targets, id: &str, body: &str, owner: &str) -> RestoreDisposition {
    let span = step_span("restore message");
    dispatch_restore_in_span(engine, targets, id, body, owner).instrument(span).await
}

async fn dispatch_restore_in_span(engine: &Engine, targets: &dyn Targets, id: &str, body: &str, owner: &str) -> RestoreDisposition {
    let message = match parse_restore_message(body) {
        Ok(m) => m,
        Err(e) => {
            tracing::error!(message_id = %id, error = %e, transient = e.is_transient(), "malformed restore message");
            return restore_from_error(e, None);
        }
    };
    let run_id = message.restore_id().to_string();
    let (name, task_id) = match &message {
        RestoreMessage::Step(step) => (format!("restore {:?}", step.step).to_lowercase(), None),
        RestoreMessage::Task(task) => ("restore task".to_string(), Some(task.task_id.as_str())),
    };
    tracing::Span::current().record("step", name.as_str());
    record(Some(&run_id), task_id, None, None);
    // The run names its source; one read of its record puts them on every line of the step.
    if let Ok((_, run)) = crate::restore::run::get(engine, &run_id).await {
        record(None, None, Some(&run.request.source_bucket), Some(&run.request.prefix));
    }
    tracing::info!(message_id = %id, "step started");
    let begin = history::Begin {
        run_id: &run_id,
        name: &name,
        step_id: id,
        task_id,
        input: body,
        input_ref: format!("queue:{}#{id}", engine.queues.restore),
        log_id: owner,
    };
    history::best_effort("start", history::begin(engine, &begin).await);
    let mut counted = None;
    let disposition = restore_outcome(engine, targets, id, owner, &message, &run_id, &mut counted).await;
    let (objects, bytes) = (counted.as_ref().map(|c| c.objects), counted.as_ref().map(|c| c.bytes));
    let end = match &disposition {
        RestoreDisposition::Done => history::End { state: StepState::Done, error: None, objects, bytes },
        RestoreDisposition::Retry { reason, .. } => {
            history::End { state: StepState::Retry, error: Some(reason.clone()), objects: None, bytes: None }
        }
        RestoreDisposition::Failed { error, .. } => {
            history::End { state: StepState::Failed, error: Some(error.to_string()), objects: None, bytes: None }
        }
    };
    history::best_effort("end", history::end(engine, &run_id, id, end).await);
    disposition
}

async fn restore_outcome(
    engine: &Engine,
    targets: &dyn Targets,
    id: &str,
    owner: &str,
    message: &RestoreMessage,
    run_id: &str,
    counted: &mut Option<crate::control::Counters>,
) -> RestoreDisposition {
    let run_id = run_id.to_string();
    let limits = TaskLimits { objects: engine.config.restore_task_objects, bytes: engine.config.restore_task_bytes };
    let budget = Duration::from_secs(engine.config.step_seconds);
    let result = match message {
        RestoreMessage::Step(step) => match step.step {
            RestoreStepKind::Plan => plan::plan(engine, &run_id, limits, budget).await.map(|o| format!("{o:?}")),
            RestoreStepKind::Enqueue => plan::enqueue(engine, &run_id, budget).await.map(|o| format!("{o:?}")),
            RestoreStepKind::Finish => plan::finish(engine, targets, &run_id).await.map(|o| format!("{o:?}")),
        },
        RestoreMessage::Task(task) => match restore_task::process(engine, targets, task, owner).await {
            Ok(RestoreTaskOutcome::Deferred(delay)) => {
                return RestoreDisposition::Retry {
                    after: delay,
                    reason: format!("restore task {}: the scheduler has no room for its target prefix now", task.task_id),
                }
            }
            Ok(RestoreTaskOutcome::Busy) => {
                return RestoreDisposition::Retry {
                    after: BUSY_RETRY,
                    reason: format!("restore task {} is leased by another live worker", task.task_id),
                }
            }
            Ok(outcome) => {
                if let RestoreTaskOutcome::Finished(c) = &outcome {
                    *counted = Some(c.clone());
                }
                Ok(format!("{outcome:?}"))
            }
            Err(e) => Err(e),
        },
    };
    match result {
        Ok(outcome) => {
            tracing::info!(message_id = %id, restore_id = %run_id, %outcome, "restore message handled");
            RestoreDisposition::Done
        }
        Err(e) => {
            tracing::warn!(message_id = %id, restore_id = %run_id, error = %e, transient = e.is_transient(), "restore message failed");
            if !e.is_transient() {
                // A step or task that cannot succeed keeps the run from ever ending: it fails now,
                // naming why, rather than waiting for an operator to read the dead-letter queue.
                if let Err(f) = crate::restore::run::fail(engine, &run_id, &format!("{message:?} failed: {e}")).await {
                    tracing::error!(restore_id = %run_id, error = %f, "could not mark the restore failed");
                }
            }
            restore_from_error(e, Some(run_id))
        }
    }
}

fn restore_from_error(error: Error, restore_id: Option<String>) -> RestoreDisposition {
    if error.is_transient() {
        RestoreDisposition::Retry { after: TRANSIENT_RETRY, reason: error.to_string() }
    } else {
        RestoreDisposition::Failed { error, restore_id }
    }
}
