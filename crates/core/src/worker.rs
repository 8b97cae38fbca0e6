//! The seed worker: takes a task, copies its partition into the vault batch by batch, resumably.
//!
//! Each batch lists the next keys after the task's cursor, captures them (packs and server-side
//! copies), writes one segment and registers it in a slot named by (run, task, batch number).
//! The slot is written with put-if-absent, so a batch is registered exactly once however often
//! it is retried; a retry that finds the slot taken adopts it instead of registering twice.

use serde::{Deserialize, Serialize};

use crate::capture::{capture_batch, write_segment, CaptureItem};
use crate::control::{Counters, RunState, SegmentSlot};
use crate::engine::Engine;
use crate::ports::ListRequest;
use crate::segment::SegmentKind;
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
}

/// Parses a work-queue message body.
pub fn parse_task_message(body: &str) -> Result<TaskMessage> {
    serde_json::from_str(body).map_err(|e| Error::Invalid(format!("work message is not a task: {e}: {}", truncate(body))))
}

pub(crate) fn truncate(s: &str) -> String {
    s.chars().take(200).collect()
}

/// Processes one task to completion (or until its lease is lost).
pub async fn process_task(engine: &Engine, msg: &TaskMessage, owner: &str) -> Result<TaskOutcome> {
    let control = engine.control();
    let cfg = &engine.config;
    let Some(mut lease) = control.claim(&msg.run_id, &msg.task_id, owner, engine.clock.now(), cfg.lease_seconds).await? else {
        let done = control.get_task(&msg.run_id, &msg.task_id).await?.is_some_and(|(_, t)| t.done);
        return Ok(if done { TaskOutcome::AlreadyDone } else { TaskOutcome::Busy });
    };
    let bucket = lease.task.source_bucket.clone();
    tracing::info!(run_id = %msg.run_id, task_id = %msg.task_id, attempt = lease.task.attempts, cursor = ?lease.task.cursor, "task claimed");
    loop {
        let slot_name = format!("seed#{}#{}#{:06}", msg.run_id, msg.task_id, lease.task.batch);
        let slot = match control.segment_slot(&bucket, &slot_name).await? {
            Some(slot) => Some(slot),
            None => {
                let listed = list_batch(engine, &lease.task).await?;
                let Some(last) = listed.last().map(|i| i.key.clone()) else {
                    lease.task.done = true;
                    control.commit(&mut lease, engine.clock.now(), cfg.lease_seconds).await?;
                    finish_run_if_complete(engine, &msg.run_id).await?;
                    tracing::info!(run_id = %msg.run_id, task_id = %msg.task_id, objects = lease.task.counters.objects, "task done");
                    return Ok(TaskOutcome::Finished(lease.task.counters));
                };
                let mut batch = capture_batch(engine, &bucket, listed).await?;
                batch.counters.source_requests += 1;
                if batch.records.is_empty() {
                    // Everything listed vanished: advance the cursor, nothing to register.
                    lease.task.cursor = Some(last);
                    lease.task.counters.add(&batch.counters);
                    control.commit(&mut lease, engine.clock.now(), cfg.lease_seconds).await?;
                    continue;
                }
                let meta = write_segment(engine, &bucket, SegmentKind::Seed, batch.records).await?;
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

/// Lists the next batch of the task's partition after its cursor.
async fn list_batch(engine: &Engine, task: &crate::control::TaskRecord) -> Result<Vec<CaptureItem>> {
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
        let page = engine
            .source
            .list(
                &task.source_bucket,
                ListRequest {
                    prefix: &task.prefix,
                    start_after: start_after.as_deref().filter(|s| !s.is_empty()),
                    continuation: token.take(),
                    max_keys: Some(want),
                    ..Default::default()
                },
            )
            .await?;
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
        let all_done = run.tasks.iter().all(|id| tasks.iter().any(|t| &t.task_id == id && t.done));
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
