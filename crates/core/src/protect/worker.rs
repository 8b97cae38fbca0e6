//! The seed worker: takes a task, copies its partition into the vault batch by batch, resumably.
//!
//! Each batch lists the next keys after the task's cursor, captures them (packs and server-side
//! copies), writes one segment and registers it in a slot named by (run, task, batch number).
//! The slot is written with put-if-absent, so a batch is registered exactly once however often
//! it is retried; a retry that finds the slot taken adopts it instead of registering twice.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::capture::{capture_batch_paced, CaptureItem, Pacer};
use crate::control::{Counters, RunState, SegmentSlot};
use crate::engine::Engine;
use crate::ports::ListRequest;
use crate::scheduler::fleet::{millis, top_prefix, Pressure};
use crate::scheduler::{Admission, Observation};
use crate::vault::segment::{self, SegmentKind};
use crate::{Error, Result};

/// The body of a work-queue message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskMessage {
    pub run_id: String,
    pub task_id: String,
}

/// What handling a task message did.
#[derive(Debug, Clone, PartialEq)]
pub enum TaskOutcome {
    /// The task finished now; these are its totals.
    Finished(Counters),
    /// The task was already done (a duplicate message).
    AlreadyDone,
    /// Another live worker holds the lease; the message should come back later.
    Busy,
    /// The task's prefix is over its budget (or S3 throttled it): the task was checkpointed and
    /// its lease released; the message should come back after this delay.
    Deferred(Duration),
}

/// Parses a work-queue message body.
pub fn parse_task_message(body: &str) -> Result<TaskMessage> {
    serde_json::from_str(body).map_err(|e| Error::Invalid(format!("work message is not a task: {e}: {}", truncate(body))))
}

pub(crate) fn truncate(s: &str) -> String {
    s.chars().take(200).collect()
}

/// The top-level prefix the task's next batch reads from: that of its cursor, or of its
/// partition's start, or of the run's prefix. A task that starts at the beginning of the bucket
/// does not know its first key, so it asks for it (one single-key listing), rather than be
/// admitted on the bucket's root when its keys live under some prefix.
async fn batch_prefix(engine: &Engine, task: &crate::control::TaskRecord) -> Result<String> {
    let at = task.cursor.as_deref().filter(|c| !c.is_empty()).unwrap_or(&task.partition.start);
    let at = if at.is_empty() { task.prefix.as_str() } else { at };
    if !top_prefix(at).is_empty() || at.contains('/') {
        return Ok(top_prefix(at).to_string());
    }
    let req = ListRequest { prefix: &task.prefix, start_after: (!at.is_empty()).then_some(at), max_keys: Some(1), ..Default::default() };
    let page = engine.source.list(&task.source_bucket, req).await?;
    Ok(page.objects.first().map_or_else(String::new, |o| top_prefix(&o.key).to_string()))
}

/// Processes one task to completion (or until its lease is lost, or its prefix has no room).
///
/// With a scheduler configured, the worker asks for admission on the task's prefix before each
/// batch, reporting what the previous batch saw (successes and throttles), and paces its source
/// requests at the rate it was granted. When the prefix has no room, or S3 throttles a batch
/// beyond its retries, the task is checkpointed, its lease released, and [`TaskOutcome::Deferred`]
/// returned so that the caller puts the message back with that delay and takes another task.
pub async fn process_task(engine: &Engine, msg: &TaskMessage, owner: &str) -> Result<TaskOutcome> {
    let control = engine.control();
    let cfg = &engine.config;
    let Some(mut lease) = control.claim(&msg.run_id, &msg.task_id, owner, engine.clock.now(), cfg.lease_seconds).await? else {
        let done = control.get_task(&msg.run_id, &msg.task_id).await?.is_some_and(|(_, t)| t.done);
        return Ok(if done { TaskOutcome::AlreadyDone } else { TaskOutcome::Busy });
    };
    let bucket = lease.task.source_bucket.clone();
    tracing::info!(run_id = %msg.run_id, task_id = %msg.task_id, attempt = lease.task.attempts, cursor = ?lease.task.cursor, "task claimed");
    let mut pressure = match &cfg.scheduler {
        Some(sc) => Some(Pressure::new(engine.control.as_ref(), &cfg.vault_bucket, &bucket, sc.clone(), owner, cfg.want_rps())?),
        None => None,
    };
    let pacer = Pacer::new(f64::INFINITY);
    // What the source answered since the last report, and the prefix it was about.
    let mut seen = Observation::default();
    let mut seen_prefix = match pressure {
        Some(_) => batch_prefix(engine, &lease.task).await?,
        None => String::new(),
    };
    loop {
        if let Some(p) = pressure.as_mut() {
            let prefix = batch_prefix(engine, &lease.task).await?;
            if prefix != seen_prefix {
                // The task crossed into another top-level prefix: settle the old one first.
                p.release(&seen_prefix, millis(engine.clock.now()), std::mem::take(&mut seen)).await?;
                seen_prefix = prefix.clone();
            }
            match p.report(&prefix, millis(engine.clock.now()), std::mem::take(&mut seen)).await? {
                Admission::Go { rate_rps } => pacer.set_rate(rate_rps),
                Admission::Defer(delay) => {
                    tracing::info!(task_id = %msg.task_id, %prefix, delay_ms = delay.as_millis() as u64, "prefix over budget; task deferred");
                    return yield_task(engine, &mut lease, delay).await;
                }
            }
        }
        let slot_name = format!("seed#{}#{}#{:06}", msg.run_id, msg.task_id, lease.task.batch);
        let slot = match control.segment_slot(&bucket, &slot_name).await? {
            Some(slot) => Some(slot),
            None => {
                let listed = match list_batch(engine, &lease.task, &mut seen).await {
                    Ok(listed) => listed,
                    Err(Error::Throttled { .. }) if pressure.is_some() => {
                        return throttled(engine, &mut pressure, &seen_prefix, seen, &mut lease).await;
                    }
                    Err(e) => return Err(e),
                };
                let Some(last) = listed.last().map(|i| i.key.clone()) else {
                    lease.task.done = true;
                    control.commit(&mut lease, engine.clock.now(), cfg.lease_seconds).await?;
                    if let Some(p) = pressure.as_mut() {
                        p.release(&seen_prefix, millis(engine.clock.now()), std::mem::take(&mut seen)).await?;
                    }
                    finish_run_if_complete(engine, &msg.run_id).await?;
                    tracing::info!(run_id = %msg.run_id, task_id = %msg.task_id, objects = lease.task.counters.objects, "task done");
                    return Ok(TaskOutcome::Finished(lease.task.counters));
                };
                let paced = pressure.as_ref().map(|_| &pacer);
                let mut batch = match capture_batch_paced(engine, &bucket, listed, paced).await {
                    Ok(batch) => batch,
                    Err(Error::Throttled { .. }) if pressure.is_some() => {
                        // The batch's own counts are lost with it; one throttle is enough to
                        // make the scheduler cut, and the batch is redone from the cursor.
                        seen.throttles += 1;
                        return throttled(engine, &mut pressure, &seen_prefix, seen, &mut lease).await;
                    }
                    Err(e) => return Err(e),
                };
                seen.successes += batch.observation.successes;
                seen.throttles += batch.observation.throttles;
                batch.counters.source_requests += 1;
                if batch.records.is_empty() {
                    // Everything listed vanished: advance the cursor, nothing to register.
                    lease.task.cursor = Some(last);
                    lease.task.counters.add(&batch.counters);
                    control.commit(&mut lease, engine.clock.now(), cfg.lease_seconds).await?;
                    continue;
                }
                let meta =
                    segment::write(engine.vault.as_ref(), &cfg.vault_bucket, &bucket, SegmentKind::Seed, batch.records, engine.clock.now())
                        .await?;
                batch.counters.vault_requests += 2;
                let slot = SegmentSlot { meta, end_cursor: Some(last), counters: batch.counters };
                Some(control.register_segment(&bucket, &slot_name, &slot).await?)
            }
        };
        let slot = slot.expect("set in both arms");
        lease.task.cursor = slot.end_cursor.clone();
        lease.task.batch += 1;
        lease.task.counters.add(&slot.counters);
        control.commit(&mut lease, engine.clock.now(), cfg.lease_seconds).await?;
    }
}

/// Checkpoints the task with its lease released (it expires now), so that whichever worker
/// draws the message next can claim it at once, and reports the deferral.
async fn yield_task(engine: &Engine, lease: &mut crate::control::Lease, delay: Duration) -> Result<TaskOutcome> {
    engine.control().commit(lease, engine.clock.now(), 0).await?;
    Ok(TaskOutcome::Deferred(delay))
}

/// A batch S3 throttled beyond its retries: report the throttles (which cuts the prefix's rate),
/// release this worker's claim, and yield the task for at least the shortest deferral.
async fn throttled(
    engine: &Engine,
    pressure: &mut Option<Pressure<'_>>,
    prefix: &str,
    seen: Observation,
    lease: &mut crate::control::Lease,
) -> Result<TaskOutcome> {
    let Some(p) = pressure.as_mut() else {
        return Err(Error::Invalid("a throttled batch is only yielded under a scheduler".into()));
    };
    let delay = Duration::from_millis(p.config().min_defer_ms);
    p.release(prefix, millis(engine.clock.now()), seen).await?;
    tracing::info!(task_id = %lease.task.task_id, %prefix, throttles = seen.throttles, "S3 throttled the batch; task yielded");
    yield_task(engine, lease, delay).await
}

/// Lists the next batch of the task's partition after its cursor.
async fn list_batch(engine: &Engine, task: &crate::control::TaskRecord, seen: &mut Observation) -> Result<Vec<CaptureItem>> {
    let cfg = &engine.config;
    let part = &task.partition;
    // ListObjectsV2 has no inclusive start: start after the key with its last character
    // dropped (which sorts before the partition start) and filter what precedes the start.
    let start_after = match &task.cursor {
        Some(c) => Some(c.clone()),
        None if part.start.is_empty() => None,
        None => {
            let mut s = part.start.clone();
            s.pop();
            Some(s)
        }
    };
    let mut items = Vec::new();
    let mut bytes = 0u64;
    let mut token = None;
    loop {
        let want = (cfg.batch_objects - items.len()).min(1000) as i32;
        let continuation = token.take();
        let mut attempt = 0u32;
        let page = loop {
            let req = ListRequest {
                prefix: &task.prefix,
                start_after: start_after.as_deref().filter(|s| !s.is_empty()),
                continuation: continuation.clone(),
                max_keys: Some(want),
                ..Default::default()
            };
            match engine.source.list(&task.source_bucket, req).await {
                Ok(page) => {
                    seen.successes += 1;
                    break page;
                }
                // A throttled listing is retried with a backoff a bounded number of times, as
                // the SDK would have; its throttles are reported to the scheduler.
                Err(Error::Throttled { .. }) if attempt < crate::capture::THROTTLE_RETRIES => {
                    seen.throttles += 1;
                    attempt += 1;
                    tokio::time::sleep(Duration::from_millis(200u64 << (attempt - 1).min(4))).await;
                }
                Err(e) => {
                    if matches!(e, Error::Throttled { .. }) {
                        seen.throttles += 1;
                    }
                    return Err(e);
                }
            }
        };
        for o in page.objects {
            if o.key.as_str() < part.start.as_str() {
                continue;
            }
            if !part.contains(&o.key) {
                return Ok(items);
            }
            bytes += o.size;
            items.push(CaptureItem { key: o.key, version_id: None, if_match: None, size_hint: o.size, sequencer: None });
            if items.len() >= cfg.batch_objects || bytes >= cfg.pack_target_bytes {
                return Ok(items);
            }
        }
        match page.next_token {
            Some(t) => token = Some(t),
            None => return Ok(items),
        }
    }
}

/// Marks a run complete once all of its tasks are done. Safe to call from many workers.
pub async fn finish_run_if_complete(engine: &Engine, run_id: &str) -> Result<bool> {
    let control = engine.control();
    loop {
        let Some((version, mut run)) = control.get_run(run_id).await? else {
            return Err(Error::Invalid(format!("run {run_id} does not exist")));
        };
        if run.state == RunState::Complete {
            return Ok(true);
        }
        if run.state != RunState::Running {
            return Ok(false);
        }
        let tasks = control.tasks(run_id).await?;
        // Every task of the plan exists once the run is Running, so the count guards only
        // against a store that lost items.
        let all_done = tasks.len() as u64 >= run.task_total() && tasks.iter().all(|t| t.done);
        if !all_done {
            return Ok(false);
        }
        run.state = RunState::Complete;
        run.finished_at = Some(engine.clock.now());
        if control.update_run(version, &run).await? {
            return Ok(true);
        }
    }
}

/// Puts a deferred task back on the work queue: a fresh copy of its message, visible after
/// `delay` (rounded up to whole seconds, at most SQS's 15-minute delay).
///
/// A fresh message rather than a longer visibility timeout on the received one, because every
/// receive counts towards the queue's redrive limit (three receives), and a task deferred a few
/// times while its prefix is busy has not failed; the caller deletes the received message once
/// the copy is sent. A duplicate (the send succeeded, the delete did not) is harmless: a second
/// worker finds the lease held or the task done.
pub async fn requeue_deferred(engine: &Engine, msg: &TaskMessage, delay: Duration) -> Result<()> {
    let body = serde_json::to_string(msg).map_err(|e| Error::Invalid(format!("task message: {e}")))?;
    let seconds = delay.as_secs_f64().ceil().clamp(1.0, 900.0) as i32;
    engine.queue.send(&engine.queues.work, &body, seconds).await
}
