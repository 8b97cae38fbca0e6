//! The restore queue driven in this process, as the restore function would drive it: what the
//! CLI's `restore --wait` and the engine's tests run.
//!
//! Several loops each receive one message at a time and hand it to [`dispatch_restore`]; a done
//! message is deleted, a retried one made visible again after its delay, a failed one left for
//! the queue's retries and dead-letter queue (its run is already marked failed). A monitor reads
//! the run's status every half second (sooner once a message was handled) for the caller, ends
//! the run as soon as its last task is done, and stops the loops once the run ended.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use futures::future::join_all;
use tokio::sync::Notify;

use crate::engine::Engine;
use crate::history;
use crate::protocol::messages::{RestoreStepKind, RestoreStepMessage};
use std::sync::Arc;

use crate::ports::{ObjectStore, SameStore, Targets};
use crate::protocol::dispatch::{dispatch_restore, RestoreDisposition};
use crate::restore::request::{RestoreReport, RestoreRequest};
use crate::restore::run::{self, Failure, RestoreState, RestoreStatus};
use crate::{Error, Result};

/// How often the monitor reads the run's status.
const STATUS_EVERY: Duration = Duration::from_millis(500);

/// The shortest time between two status reads, however many messages are handled.
const STATUS_SOONEST: Duration = Duration::from_millis(100);

/// Receives restore-queue messages one at a time and hands each to [`dispatch_restore`] until
/// `stop` is set: what the CLI's `restore --wait` runs for one run and `tidemark serve` runs for
/// every run. A queue error ends the loop with it (the caller decides whether to go on).
pub async fn work_restore_queue(engine: &Engine, targets: &dyn Targets, owner: &str, stop: &AtomicBool) -> Result<()> {
    work_loop(engine, targets, owner, stop, None).await
}

/// [`work_restore_queue`], telling `handled` after each message it handled.
async fn work_loop(engine: &Engine, targets: &dyn Targets, owner: &str, stop: &AtomicBool, handled: Option<&Notify>) -> Result<()> {
    let visibility = (engine.config.lease_seconds * 2).clamp(10, 43_200) as i32;
    while !stop.load(Ordering::SeqCst) {
        let msgs = engine.queue.receive(&engine.queues.restore, 1, 1, visibility).await?;
        if msgs.is_empty() {
            // A queue that answers at once when empty (not every queue long-polls) must not keep
            // this loop from yielding to the others and to the monitor.
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        for m in msgs {
            match dispatch_restore(engine, targets, &m.id, &m.body, owner).await {
                RestoreDisposition::Done => engine.queue.delete(&engine.queues.restore, &m.receipt).await?,
                RestoreDisposition::Retry { after, .. } => {
                    let seconds = after.as_secs_f64().ceil().clamp(0.0, 43_200.0) as i32;
                    engine.queue.change_visibility(&engine.queues.restore, &m.receipt, seconds).await?;
                }
                RestoreDisposition::Failed { .. } => {}
            }
            if let Some(n) = handled {
                n.notify_one();
            }
        }
    }
    Ok(())
}

/// Handles restore-queue messages with `workers` loops until run `id` ends; calls `on_status`
/// with each status read, and returns the last one.
///
/// Each loop is a task of its own, so that the loops' request building, signing and checking
/// run on every thread of the runtime rather than on the caller's one; the tasks are aborted if
/// the caller stops waiting.
pub async fn drive_restore(
    engine: &Engine,
    targets: Arc<dyn Targets>,
    id: &str,
    workers: usize,
    owner: &str,
    mut on_status: impl FnMut(&RestoreStatus),
) -> Result<RestoreStatus> {
    let stop = Arc::new(AtomicBool::new(false));
    let handled = Arc::new(Notify::new());
    let mut loops = Loops(
        (0..workers.max(1))
            .map(|i| {
                let (engine, targets, stop, handled) = (engine.clone(), targets.clone(), stop.clone(), handled.clone());
                let owner = format!("{owner}-{i}");
                tokio::spawn(async move { work_loop(&engine, targets.as_ref(), &owner, &stop, Some(&handled)).await })
            })
            .collect(),
    );
    let monitor = async {
        let status = loop {
            let read = Instant::now();
            match monitor_step(engine, targets.as_ref(), id, owner).await {
                Ok(s) => {
                    on_status(&s);
                    if s.run.state.is_final() {
                        break Ok(s);
                    }
                }
                Err(e) => break Err(e),
            }
            // A handled message (a task done, a step taken) is worth a look sooner than the
            // next tick, but never sooner than STATUS_SOONEST after the last read: a run of many
            // small tasks must not turn the monitor into a loop of partition reads.
            tokio::select! {
                _ = tokio::time::sleep(STATUS_EVERY) => {}
                _ = handled.notified() => tokio::time::sleep(STATUS_SOONEST.saturating_sub(read.elapsed())).await,
            }
        };
        stop.store(true, Ordering::SeqCst);
        status
    };
    let (status, results) = tokio::join!(monitor, join_all(loops.0.iter_mut()));
    for r in results {
        r.map_err(|e| Error::port("restore worker loop", format!("ended abnormally: {e}"), false))??;
    }
    status
}

/// The worker loops' tasks, aborted when dropped (a finished task ignores the abort).
struct Loops(Vec<tokio::task::JoinHandle<Result<()>>>);

impl Drop for Loops {
    fn drop(&mut self) {
        self.0.iter().for_each(|h| h.abort());
    }
}

/// Reads run `id`'s status; when every task is done and the run has not ended yet, ends it
/// first, as the finish step would once its delayed message came back (it still comes back, and
/// then finds the run ended). The run's last seconds are then not spent waiting for that message.
async fn monitor_step(engine: &Engine, targets: &dyn Targets, id: &str, owner: &str) -> Result<RestoreStatus> {
    let s = run::status(engine, id).await?;
    let r = &s.run;
    let complete = r.state == RestoreState::Restoring && r.enqueued >= r.plan.tasks && s.tasks >= r.plan.tasks && s.tasks_done >= s.tasks;
    if !complete {
        return Ok(s);
    }
    let target = targets.store(r.request.target_role_arn.as_deref()).await?;
    let ended = run::finish_if_complete(engine, target.as_ref(), id).await?;
    if !ended.state.is_final() {
        return Ok(s);
    }
    // The run's history shows how it ended, as when the finish step's message ends it.
    let input = RestoreStepMessage::new(id, RestoreStepKind::Finish).body();
    let begin = history::Begin {
        run_id: id,
        name: "restore finish",
        step_id: "finish-local",
        task_id: None,
        input: &input,
        input_ref: "the local runner's monitor, once every task was done".into(),
        log_id: owner,
    };
    history::best_effort("finish", history::record_done(engine, &begin).await);
    run::status(engine, id).await
}

/// Restores `req` into `target` in this process and waits for it: a run started, planned and
/// restored through the restore queue by [`drive_restore`], reported as a [`RestoreReport`].
/// For tools and tests that want a restore's outcome in one call; the run is as resumable as any.
pub async fn restore_here(engine: &Engine, target: Arc<dyn ObjectStore>, req: RestoreRequest, workers: usize) -> Result<RestoreReport> {
    let (started, _) = run::start(engine, target.as_ref(), req).await?;
    let s = drive_restore(engine, Arc::new(SameStore(target)), &started.restore_id, workers, "restore-here", |_| {}).await?;
    let c = &s.counters;
    let pairs = |v: &[Failure]| v.iter().map(|f| (f.key.clone(), f.reason.clone())).collect::<Vec<_>>();
    Ok(RestoreReport {
        objects: c.objects,
        bytes: c.bytes,
        verified: c.verified,
        failed: c.failed,
        deleted: c.deleted,
        unchanged: c.unchanged,
        recovery_point: Some(s.run.recovery_point),
        dry_run: s.run.request.dry_run,
        failures: pairs(&s.failures),
        not_applied: pairs(&s.not_applied),
        attributes_not_applied: c.attributes_not_applied,
        unprotected: pairs(&s.unprotected),
        unprotected_count: s.run.unprotected_count + c.unprotected,
    })
}
