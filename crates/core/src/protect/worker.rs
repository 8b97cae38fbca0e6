//! The seed worker: takes a task, copies its partition into the vault batch by batch, resumably.
//!
//! Each batch lists the next keys after the task's cursor, captures them (packs and server-side
//! copies), writes one segment and registers it in a slot named by (run, task, batch number).
//! The slot is written with put-if-absent, so a batch is registered exactly once however often
//! it is retried; a retry that finds the slot taken adopts it instead of registering twice.

use std::time::Duration;

use crate::capture::{capture_batch, CaptureItem};
use crate::control::{captured_facts, Counters, FailureRecord, RunState, SegmentSlot, TaskRecord};
use crate::domain::CaptureRecord;
use crate::engine::Engine;
use crate::ports::{ListRequest, ObjectStore, VersionListRequest};
use crate::protocol::messages::TaskMessage;
use crate::scheduler::fleet::{millis, top_prefix};
use crate::scheduler::gate::Gate;
use crate::scheduler::source::PacedStore;
use crate::scheduler::Admission;
use crate::vault::segment::SegmentKind;
use crate::{Error, Result};

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

/// The top-level prefix the task's next batch reads from: that of its cursor, or of its
/// partition's start, or of the run's prefix. A task that starts at the beginning of the bucket
/// does not know its first key, so it asks for it (one single-key listing), rather than be
/// admitted on the bucket's root when its keys live under some prefix.
async fn batch_prefix(source: &dyn ObjectStore, task: &TaskRecord) -> Result<String> {
    let at = task.cursor.as_deref().filter(|c| !c.is_empty()).unwrap_or(&task.partition.start);
    let at = if at.is_empty() { task.prefix.as_str() } else { at };
    if !top_prefix(at).is_empty() || at.contains('/') {
        return Ok(top_prefix(at).to_string());
    }
    let req = ListRequest { prefix: &task.prefix, start_after: (!at.is_empty()).then_some(at), max_keys: Some(1), ..Default::default() };
    let page = source.list(&task.source_bucket, req).await?;
    Ok(page.objects.first().map_or_else(String::new, |o| top_prefix(&o.key).to_string()))
}

/// What the source answered since the last look, added to the process tally as well (the
/// worker function's `SlowDown503` metric per prefix); the prefix is only known under the
/// shared scheduler, and `-` otherwise.
fn observe(source: &PacedStore, bucket: &str, prefix: &str) -> crate::scheduler::Observation {
    let seen = source.take_observation();
    crate::tally::throttled(bucket, prefix, seen.throttles);
    seen
}

/// What capturing the next batch of a task's partition gave.
enum Batch {
    /// The partition has no keys after the cursor: the task is done.
    End,
    /// Every key listed vanished before it could be read: the cursor moves, nothing is registered.
    Vanished { last: String, counters: Counters },
    /// A segment was written and registered in the batch's slot (or a retry found it there).
    Registered(SegmentSlot),
}

/// Processes one task to completion (or until its lease is lost, or its prefix has no room).
///
/// Before each batch the worker reports to its [`Gate`] what the source answered since the last
/// report and is told whether to go on, at what pace, or to defer. Every source request goes
/// through one [`PacedStore`], which paces at the granted rate and retries throttled requests.
/// When the prefix has no room, or S3 throttles a batch beyond its retries under the scheduler,
/// the task is checkpointed, its lease released, and [`TaskOutcome::Deferred`] returned so that
/// the caller puts the message back with that delay and takes another task. Without a scheduler
/// the gate always admits and the pace is unlimited.
pub async fn process_task(engine: &Engine, msg: &TaskMessage, owner: &str) -> Result<TaskOutcome> {
    let control = engine.control();
    let cfg = &engine.config;
    let Some(mut lease) = control.claim(&msg.run_id, &msg.task_id, owner, engine.clock.now(), cfg.lease_seconds).await? else {
        let done = control.get_task(&msg.run_id, &msg.task_id).await?.is_some_and(|(_, t)| t.done);
        return Ok(if done { TaskOutcome::AlreadyDone } else { TaskOutcome::Busy });
    };
    let bucket = lease.task.source_bucket.clone();
    crate::telemetry::record(None, None, Some(&bucket), Some(&lease.task.prefix));
    tracing::info!(run_id = %msg.run_id, task_id = %msg.task_id, attempt = lease.task.attempts, cursor = ?lease.task.cursor, "task claimed");
    let mut gate = Gate::new(engine.control.as_ref(), cfg, &bucket, owner)?;
    let source = PacedStore::new(engine.source.clone());
    // The top-level prefix the last report was about; only the shared scheduler needs to know it.
    let mut prefix = String::new();
    if gate.is_shared() {
        prefix = batch_prefix(&source, &lease.task).await?;
    }
    loop {
        let now = millis(engine.clock.now());
        if gate.is_shared() {
            let next = batch_prefix(&source, &lease.task).await?;
            if next != prefix {
                // The task crossed into another top-level prefix: settle the old one first.
                gate.release(&prefix, now, observe(&source, &bucket, &prefix)).await?;
                prefix = next;
            }
        }
        match gate.report(&prefix, now, observe(&source, &bucket, &prefix)).await? {
            Admission::Go { rate_rps } => source.set_rate(rate_rps),
            Admission::Defer(delay) => {
                tracing::info!(task_id = %msg.task_id, %prefix, delay_ms = delay.as_millis() as u64, "prefix over budget; task deferred");
                return yield_task(engine, &mut lease, delay).await;
            }
        }
        let batch = match next_batch(engine, &source, &bucket, msg, &lease.task).await {
            Ok(batch) => batch,
            Err(e @ Error::Throttled { .. }) => {
                let Some(delay) = gate.throttle_deferral() else { return Err(e) };
                // The batch's work is lost with it and redone from the cursor; its throttles,
                // counted by the source store, cut the prefix's rate for the whole fleet.
                let seen = observe(&source, &bucket, &prefix);
                gate.release(&prefix, millis(engine.clock.now()), seen).await?;
                tracing::info!(task_id = %lease.task.task_id, %prefix, throttles = seen.throttles, "S3 throttled the batch; task yielded");
                return yield_task(engine, &mut lease, delay).await;
            }
            // The bucket was deleted while it was seeded: nothing is left to capture, and the
            // checkpoint records it as gone. The task ends rather than dead-lettering.
            Err(e) if crate::protect::lifecycle::is_no_such_bucket(&e) => {
                tracing::info!(task_id = %lease.task.task_id, %bucket, "the bucket no longer exists; the task ends");
                Batch::End
            }
            Err(e) => return Err(e),
        };
        match batch {
            Batch::End => {
                lease.task.done = true;
                control.commit(&mut lease, engine.clock.now(), cfg.lease_seconds).await?;
                gate.release(&prefix, millis(engine.clock.now()), observe(&source, &bucket, &prefix)).await?;
                finish_run_if_complete(engine, &msg.run_id).await?;
                tracing::info!(run_id = %msg.run_id, task_id = %msg.task_id, objects = lease.task.counters.objects, "task done");
                return Ok(TaskOutcome::Finished(lease.task.counters));
            }
            Batch::Vanished { last, counters } => {
                lease.task.cursor = Some(last);
                lease.task.counters.add(&counters);
            }
            Batch::Registered(slot) => {
                lease.task.cursor = slot.end_cursor.clone();
                lease.task.batch += 1;
                lease.task.counters.add(&slot.counters);
                crate::tally::captured(&bucket, slot.counters.objects, slot.counters.bytes);
            }
        }
        control.commit(&mut lease, engine.clock.now(), cfg.lease_seconds).await?;
    }
}

/// Captures the task's next batch into the vault and registers it in the batch's slot, unless a
/// previous attempt already registered it (the slot is named by run, task and batch number).
async fn next_batch(engine: &Engine, source: &PacedStore, bucket: &str, msg: &TaskMessage, task: &TaskRecord) -> Result<Batch> {
    let control = engine.control();
    let slot_name = format!("seed#{}#{}#{:06}", msg.run_id, msg.task_id, task.batch);
    if let Some(slot) = control.segment_slot(bucket, &slot_name).await? {
        return Ok(Batch::Registered(slot));
    }
    let versions = if task.all_versions {
        list_version_batch(engine, source, task).await?
    } else {
        let items = list_batch(engine, source, task).await?;
        let last = items.last().map(|i| i.key.clone());
        VersionBatch { items, markers: Vec::new(), last, ranks: Default::default() }
    };
    let Some(last) = versions.last else {
        return Ok(Batch::End);
    };
    let mut batch = capture_batch(engine, source, bucket, versions.items).await?;
    batch.counters.source_requests += 1;
    for r in batch.records.iter_mut() {
        if let Some(at) = versions.ranks.get(&(r.key.clone(), r.version_id.clone())) {
            r.captured_at = *at;
        }
    }
    batch.records.extend(versions.markers);
    // Objects that failed for good are kept on the run and named by every point sealed until a
    // later capture settles them; they never pass for captured.
    let now = engine.clock.now();
    let failures: Vec<FailureRecord> = batch
        .failures
        .iter()
        .map(|f| FailureRecord {
            run_id: Some(msg.run_id.clone()),
            ..FailureRecord::new(&f.key, f.version_id.as_deref(), &f.reason, now, "seed")
        })
        .collect();
    control.record_failures(bucket, &failures).await?;
    if batch.records.is_empty() {
        return Ok(Batch::Vanished { last, counters: batch.counters });
    }
    let captured = captured_facts(&batch.records);
    let meta = engine.write_segment(bucket, SegmentKind::Seed, batch.records, now).await?;
    batch.counters.vault_requests += 2;
    let slot = SegmentSlot { meta, end_cursor: Some(last), counters: batch.counters };
    let slot = control.register_segment(bucket, &slot_name, &slot).await?;
    control.settle_failures(bucket, &captured).await?;
    Ok(Batch::Registered(slot))
}

/// Checkpoints the task with its lease released (it expires now), so that whichever worker
/// draws the message next can claim it at once, and reports the deferral.
async fn yield_task(engine: &Engine, lease: &mut crate::control::Lease, delay: Duration) -> Result<TaskOutcome> {
    engine.control().commit(lease, engine.clock.now(), 0).await?;
    Ok(TaskOutcome::Deferred(delay))
}

/// The key a task's next listing starts after: its cursor, or a key just before its partition.
///
/// Listings have no inclusive start: start after the partition start with its last character
/// dropped (which sorts before it) and filter what precedes the start.
fn resume_after(task: &TaskRecord) -> Option<String> {
    match &task.cursor {
        Some(c) => Some(c.clone()),
        None if task.partition.start.is_empty() => None,
        None => {
            let mut s = task.partition.start.clone();
            s.pop();
            Some(s)
        }
    }
}

/// Lists the next batch of the task's partition after its cursor.
async fn list_batch(engine: &Engine, source: &dyn ObjectStore, task: &TaskRecord) -> Result<Vec<CaptureItem>> {
    let cfg = &engine.config;
    let part = &task.partition;
    let start_after = resume_after(task);
    let mut items = Vec::new();
    let mut bytes = 0u64;
    let mut token = None;
    loop {
        let want = (cfg.batch_objects - items.len()).min(1000) as i32;
        let req = ListRequest {
            prefix: &task.prefix,
            start_after: start_after.as_deref().filter(|s| !s.is_empty()),
            continuation: token.take(),
            max_keys: Some(want),
            ..Default::default()
        };
        let page = source.list(&task.source_bucket, req).await?;
        for o in page.objects {
            if o.key.as_str() < part.start.as_str() {
                continue;
            }
            if !part.contains(&o.key) {
                return Ok(items);
            }
            bytes += o.size;
            items.push(CaptureItem::new(o.key, o.size));
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

/// Lists the next batch of every version and delete marker of the task's partition after its
/// cursor: versions to capture (each pinned to its version id) and delete-marker records at
/// their own Last-Modified. A key's versions never split across batches, so the cursor (the last
/// key) stays a key.
async fn list_version_batch(engine: &Engine, source: &dyn ObjectStore, task: &TaskRecord) -> Result<VersionBatch> {
    let cfg = &engine.config;
    let part = &task.partition;
    let key_marker = resume_after(task);
    let (mut items, mut markers) = (Vec::new(), Vec::new());
    let mut last: Option<String> = None;
    let (mut count, mut bytes) = (0usize, 0u64);
    let now = engine.clock.now();
    let mut rank = 0i64;
    let mut ranks = std::collections::HashMap::new();
    let mut req = VersionListRequest { prefix: &task.prefix, key_marker: key_marker.filter(|k| !k.is_empty()), ..Default::default() };
    loop {
        req.max_keys = Some((cfg.batch_objects.saturating_sub(count)).clamp(1, 1000) as i32);
        let page = source.list_versions(&task.source_bucket, req.clone()).await?;
        for v in page.versions {
            if v.key.as_str() < part.start.as_str() {
                continue;
            }
            let full = count >= cfg.batch_objects || bytes >= cfg.pack_target_bytes;
            if !part.contains(&v.key) || (full && last.as_deref() != Some(v.key.as_str())) {
                return Ok(VersionBatch { items, markers, last, ranks });
            }
            count += 1;
            // The listing gives each key's entries newest first; versions of one key in one
            // second keep that order through their capture times (which break same-second ties).
            rank = if last.as_deref() == Some(v.key.as_str()) { rank + 1 } else { 0 };
            let at = now - chrono::Duration::microseconds(rank);
            if v.is_delete_marker {
                markers.push(match &v.version_id {
                    Some(id) => CaptureRecord::delete_marker(&task.source_bucket, &v.key, id, v.last_modified, None, at),
                    None => CaptureRecord::delete(&task.source_bucket, &v.key, v.last_modified, None, at),
                });
            } else {
                bytes += v.size;
                let version = Some(v.version_id.clone().unwrap_or_else(|| "null".into()));
                items.push(CaptureItem { version_id: version, ..CaptureItem::new(v.key.clone(), v.size) });
                ranks.insert((v.key.clone(), v.version_id.clone()), at);
            }
            last = Some(v.key);
        }
        match page.next_key_marker {
            Some(k) => {
                req.key_marker = Some(k);
                req.version_id_marker = page.next_version_id_marker;
            }
            None => return Ok(VersionBatch { items, markers, last, ranks }),
        }
    }
}

/// The next batch of every version and delete marker of a partition.
struct VersionBatch {
    items: Vec<CaptureItem>,
    markers: Vec<CaptureRecord>,
    last: Option<String>,
    /// The capture time each version's record gets, by (key, version id): the listing's order.
    ranks: std::collections::HashMap<(String, Option<String>), chrono::DateTime<chrono::Utc>>,
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
    let body = TaskMessage::new(&msg.run_id, &msg.task_id).body();
    let seconds = delay.as_secs_f64().ceil().clamp(1.0, 900.0) as i32;
    engine.queue.send(&engine.queues.work, &body, seconds).await
}
