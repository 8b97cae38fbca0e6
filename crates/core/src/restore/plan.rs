//! Planning a restore: the state at T, streamed from the recovery point's segments, cut into
//! tasks (key ranges of a bounded number of objects and bytes) in time-budgeted steps; then the
//! tasks' messages sent interleaved across top-level prefixes; then a finish check that repeats
//! until every task is done.
//!
//! Tasks tile the restored prefix: the first starts at the prefix, each ends where the next
//! starts, and the last is open-ended, so that a rollback's deletes of keys born after T are
//! found wherever they are. Nothing is enqueued before planning has read every segment it
//! touched to its end and verified it, so a damaged segment fails the run before the target is
//! written. Every step is idempotent: task ids are their numbers and tasks are created with
//! put-if-absent, so a step redone after a crash creates the same tasks again, harmlessly.

use std::time::{Duration, Instant};

use crate::control::TaskRecord;
use crate::domain::Location;
use crate::engine::Engine;
use crate::plan::partition::{interleave, Partition};
use crate::ports::Targets;
use crate::protocol::messages::{RestoreStepKind, RestoreTaskMessage};
use crate::restore::run::{self, send_step, task_id, RestoreState};
use crate::restore::state::{resolve_at, KeyRange, StateStream};
use crate::Result;

/// Offsets into segments are recorded on a task only past this many bytes: a smaller segment
/// costs little to read from its start.
pub const OFFSET_MIN_BYTES: u64 = 1024 * 1024;

/// Messages sent and then recorded together; a retry after a crash between the two resends at
/// most this many (task leases fence the duplicates).
const SEND_CHUNK: usize = 256;

/// How long a finish check waits before it looks again.
pub const FINISH_POLL: Duration = Duration::from_secs(2);

/// What a step did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepOutcome {
    /// The step did its part and the next step is sent.
    Done,
    /// The step's time budget ran out; it sent itself again to carry on.
    Continued,
    /// The run is past this step (a duplicate or late message); nothing was sent.
    AlreadyDone,
}

/// How big a restore task may be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TaskLimits {
    pub objects: u64,
    pub bytes: u64,
}

/// Plans run `id` for at most `budget`: cuts tasks from where the last step stopped, records
/// them, and either continues itself or, once every key is in a task, moves the run to
/// `restoring` and sends the enqueue step. A corrupt segment fails the run.
pub async fn plan(engine: &Engine, id: &str, limits: TaskLimits, budget: Duration) -> Result<StepOutcome> {
    let (_, run) = run::get(engine, id).await?;
    if run.state != RestoreState::Planning {
        return Ok(StepOutcome::AlreadyDone);
    }
    match plan_inner(engine, &run, limits, budget).await {
        Err(e @ crate::Error::Corrupt { .. }) => {
            run::fail(engine, id, &format!("planning stopped: {e}")).await?;
            tracing::error!(restore_id = %id, error = %e, "restore planning found damaged vault data; the run failed");
            Ok(StepOutcome::Done)
        }
        other => other,
    }
}

async fn plan_inner(engine: &Engine, run: &run::RestoreRun, limits: TaskLimits, budget: Duration) -> Result<StepOutcome> {
    let started = Instant::now();
    let id = run.restore_id.as_str();
    let req = &run.request;
    let point = run::point(engine, run).await?;
    let mut progress = run.plan.clone();
    let mut next_start = progress.next_start.clone().unwrap_or_else(|| req.prefix.clone());
    let range = KeyRange { prefix: req.prefix.clone(), start: next_start.clone(), end: None };
    let mut stream =
        StateStream::new(engine.vault.as_ref(), &engine.config.vault_bucket, &point.segments, range, req.as_of, Default::default());
    stream.peek_key().await?;
    let mut start_offsets = stream.offsets(OFFSET_MIN_BYTES);
    let (mut objects, mut bytes, mut keys) = (0u64, 0u64, 0u64);
    let control = engine.control();
    let new_task = |n: u64, start: &str, end: Option<String>, objects: u64, bytes: u64, offsets| TaskRecord {
        offsets,
        ..TaskRecord::new(task_id(n), id, &req.source_bucket, &req.prefix, Partition { start: start.to_string(), end, objects, bytes })
    };
    while let Some(key) = stream.peek_key().await? {
        // A range full of deleted keys is cut too, so that a step's time is bounded by keys read.
        let full = objects >= limits.objects || bytes >= limits.bytes || keys >= limits.objects.saturating_mul(10);
        if full && key != next_start {
            control.create_task(&new_task(progress.tasks, &next_start, Some(key.clone()), objects, bytes, start_offsets)).await?;
            progress.tasks += 1;
            progress.objects += objects;
            progress.bytes += bytes;
            (objects, bytes, keys) = (0, 0, 0);
            next_start = key;
            start_offsets = stream.offsets(OFFSET_MIN_BYTES);
            if started.elapsed() >= budget {
                progress.next_start = Some(next_start);
                let recorded = progress.clone();
                run::update(engine, id, |r| {
                    if r.state != RestoreState::Planning || r.plan.tasks >= recorded.tasks {
                        return false;
                    }
                    r.plan = recorded.clone();
                    true
                })
                .await?;
                send_step(engine, id, RestoreStepKind::Plan, 0).await?;
                tracing::info!(restore_id = %id, tasks = progress.tasks, objects = progress.objects, "restore plan step continues in a fresh message");
                return Ok(StepOutcome::Continued);
            }
            continue;
        }
        let Some((_, records)) = stream.next_key().await? else { break };
        keys += 1;
        if let Some(rec) = resolve_at(records, req.as_of) {
            objects += 1;
            // Large objects are copied server-side; their bytes do not pass through a worker.
            if matches!(rec.location, Some(Location::Pack { .. })) {
                bytes += rec.size;
            }
        }
    }
    // Every segment read is read to its end, so that each one's hash and count are checked
    // before anything is written.
    progress.segments_verified += stream.drain().await? as u64;
    control.create_task(&new_task(progress.tasks, &next_start, None, objects, bytes, start_offsets)).await?;
    progress.tasks += 1;
    progress.objects += objects;
    progress.bytes += bytes;
    progress.next_start = None;
    progress.done = true;
    let recorded = progress.clone();
    run::update(engine, id, |r| {
        if r.state != RestoreState::Planning {
            return false;
        }
        r.plan = recorded.clone();
        r.state = RestoreState::Restoring;
        true
    })
    .await?;
    send_step(engine, id, RestoreStepKind::Enqueue, 0).await?;
    tracing::info!(restore_id = %id, tasks = progress.tasks, objects = progress.objects, bytes = progress.bytes, "restore planned");
    Ok(StepOutcome::Done)
}

/// Sends the messages of run `id`'s tasks, interleaved across top-level prefixes, from where the
/// last step stopped, for at most `budget`; then sends the finish check.
pub async fn enqueue(engine: &Engine, id: &str, budget: Duration) -> Result<StepOutcome> {
    let started = Instant::now();
    let (_, run) = run::get(engine, id).await?;
    if run.state != RestoreState::Restoring {
        return Ok(StepOutcome::AlreadyDone);
    }
    let mut tasks = engine.control().tasks(id).await?;
    tasks.sort_by(|a, b| a.task_id.cmp(&b.task_id));
    let partitions: Vec<Partition> = tasks.iter().map(|t| t.partition.clone()).collect();
    let order = interleave(&partitions, tasks.iter().map(|t| t.task_id.clone()).collect());
    let mut sent = run.enqueued as usize;
    while sent < order.len() {
        let chunk = &order[sent..(sent + SEND_CHUNK).min(order.len())];
        for task in chunk {
            engine.queue.send(&engine.queues.restore, &RestoreTaskMessage::new(id, task).body(), 0).await?;
        }
        sent += chunk.len();
        let upto = sent as u64;
        run::update(engine, id, |r| {
            if r.enqueued >= upto {
                return false;
            }
            r.enqueued = upto;
            true
        })
        .await?;
        if sent < order.len() && started.elapsed() >= budget {
            send_step(engine, id, RestoreStepKind::Enqueue, 0).await?;
            return Ok(StepOutcome::Continued);
        }
    }
    send_step(engine, id, RestoreStepKind::Finish, FINISH_POLL.as_secs() as i32).await?;
    Ok(StepOutcome::Done)
}

/// Ends run `id` if every task is done; otherwise sends itself again after [`FINISH_POLL`].
pub async fn finish(engine: &Engine, targets: &dyn Targets, id: &str) -> Result<StepOutcome> {
    let (_, run) = run::get(engine, id).await?;
    if run.state.is_final() {
        return Ok(StepOutcome::AlreadyDone);
    }
    let target = targets.store(run.request.target_role_arn.as_deref()).await?;
    let now = run::finish_if_complete(engine, target.as_ref(), id).await?;
    if now.state.is_final() {
        tracing::info!(restore_id = %id, state = now.state.name(), "restore finished");
        return Ok(StepOutcome::Done);
    }
    send_step(engine, id, RestoreStepKind::Finish, FINISH_POLL.as_secs() as i32).await?;
    Ok(StepOutcome::Continued)
}
