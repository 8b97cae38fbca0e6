//! The restore queue driven in this process, as the restore function would drive it: what the
//! CLI's `restore --wait` and the engine's tests run.
//!
//! Several loops each receive one message at a time and hand it to [`dispatch_restore`]; a done
//! message is deleted, a retried one made visible again after its delay, a failed one left for
//! the queue's retries and dead-letter queue (its run is already marked failed). A monitor reads
//! the run's status every half second for the caller and stops the loops once the run ended.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures::future::join_all;

use crate::engine::Engine;
use std::sync::Arc;

use crate::ports::{ObjectStore, SameStore, Targets};
use crate::protocol::dispatch::{dispatch_restore, RestoreDisposition};
use crate::restore::request::{RestoreReport, RestoreRequest};
use crate::restore::run::{self, Failure, RestoreStatus};
use crate::Result;

/// How often the monitor reads the run's status.
const STATUS_EVERY: Duration = Duration::from_millis(500);

/// Receives restore-queue messages one at a time and hands each to [`dispatch_restore`] until
/// `stop` is set: what the CLI's `restore --wait` runs for one run and `tidemark serve` runs for
/// every run. A queue error ends the loop with it (the caller decides whether to go on).
pub async fn work_restore_queue(engine: &Engine, targets: &dyn Targets, owner: &str, stop: &AtomicBool) -> Result<()> {
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
        }
    }
    Ok(())
}

/// Handles restore-queue messages with `workers` loops until run `id` ends; calls `on_status`
/// with each status read, and returns the last one.
pub async fn drive_restore(
    engine: &Engine,
    targets: &dyn Targets,
    id: &str,
    workers: usize,
    owner: &str,
    mut on_status: impl FnMut(&RestoreStatus),
) -> Result<RestoreStatus> {
    let stop = AtomicBool::new(false);
    let worker = |i: usize| {
        let (stop, owner) = (&stop, format!("{owner}-{i}"));
        async move { work_restore_queue(engine, targets, &owner, stop).await }
    };
    let monitor = async {
        let status = loop {
            let status = run::status(engine, id).await;
            match status {
                Ok(s) => {
                    on_status(&s);
                    if s.run.state.is_final() {
                        break Ok(s);
                    }
                }
                Err(e) => break Err(e),
            }
            tokio::time::sleep(STATUS_EVERY).await;
        };
        stop.store(true, Ordering::SeqCst);
        status
    };
    let loops = join_all((0..workers.max(1)).map(worker));
    let (status, results) = tokio::join!(monitor, loops);
    for r in results {
        r?;
    }
    status
}

/// Restores `req` into `target` in this process and waits for it: a run started, planned and
/// restored through the restore queue by [`drive_restore`], reported as a [`RestoreReport`].
/// For tools and tests that want a restore's outcome in one call; the run is as resumable as any.
pub async fn restore_here(engine: &Engine, target: Arc<dyn ObjectStore>, req: RestoreRequest, workers: usize) -> Result<RestoreReport> {
    let (started, _) = run::start(engine, target.as_ref(), req).await?;
    let s = drive_restore(engine, &SameStore(target), &started.restore_id, workers, "restore-here", |_| {}).await?;
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
