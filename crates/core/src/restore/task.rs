//! The restore worker: takes one task (a key range of a run), resolves its state at T from the
//! recovery point's segments, and writes it into the target batch by batch, resumably.
//!
//! After each batch the task's cursor (the last source key handled) and counters move with a
//! compare-and-set fenced by the task's lease, so a killed worker's successor redoes at most the
//! batch that was in flight. In rollback mode the target's current keys in the range are listed
//! and merged with the state: a key whose ETag already matches is left untouched, a key that
//! differs or is missing is written, and (with delete-newer) a key that did not exist at T is
//! deleted, in batches. A dry run decides the same actions and writes nothing to the target.

use std::collections::VecDeque;

use crate::control::{Counters, Lease};
use crate::domain::{normalize_etag, CaptureRecord};
use crate::engine::Engine;
use crate::ports::{ListRequest, ObjectStore, Targets};
use crate::protocol::messages::RestoreTaskMessage;
use crate::restore::request::{RestoreMode, RestoreRequest};
use crate::restore::run::{self, RestoreState};
use crate::restore::state::{KeyRange, StateStream};
use crate::restore::write::{Item, Writer};
use crate::scheduler::fleet::{millis, top_prefix};
use crate::scheduler::gate::Gate;
use crate::scheduler::source::PacedStore;
use crate::scheduler::Admission;
use crate::{Error, Result};

/// The most objects one batch writes before the cursor moves.
pub const BATCH_OBJECTS: usize = 500;

/// The most packed bytes one batch reads before the cursor moves.
pub const BATCH_BYTES: u64 = 64 * 1024 * 1024;

/// Dry-run samples kept per action and task.
const SAMPLES: usize = 10;

/// What handling a restore task message did.
#[derive(Debug, Clone, PartialEq)]
pub enum TaskOutcome {
    /// The task finished now; these are its totals.
    Finished(Counters),
    /// The task was already done, or its run has ended (a duplicate or late message).
    AlreadyDone,
    /// Another live worker holds the task's lease.
    Busy,
    /// The scheduler has no room for the target's prefix now: the task's lease is released and
    /// the message should come back after this delay (nothing of the deferred batch was written).
    Deferred(std::time::Duration),
}

/// One decision about one target key.
#[derive(Debug)]
enum Action {
    Write(Item),
    Unchanged(String),
    Delete(String),
    /// The vault holds no bytes for the key's state at T (archived when it was captured).
    Unprotected(String, String),
}

impl Action {
    /// The target key the action is about.
    fn key(&self) -> &str {
        match self {
            Action::Write(i) => &i.target_key,
            Action::Unchanged(k) | Action::Delete(k) | Action::Unprotected(k, _) => k,
        }
    }
}

/// The target's current keys in a range, read a page at a time, in key order.
struct TargetListing<'a> {
    target: &'a dyn ObjectStore,
    bucket: &'a str,
    prefix: &'a str,
    after: Option<String>,
    /// Keys before this one belong to the previous range (ListObjectsV2 has no inclusive start).
    from: Option<String>,
    end: Option<String>,
    page: VecDeque<(String, String)>,
    token: Option<String>,
    exhausted: bool,
}

impl<'a> TargetListing<'a> {
    async fn peek(&mut self) -> Result<Option<&(String, String)>> {
        while self.page.is_empty() && !self.exhausted {
            let req = ListRequest {
                prefix: self.prefix,
                start_after: self.after.as_deref(),
                continuation: self.token.take(),
                ..Default::default()
            };
            let page = self.target.list(self.bucket, req).await?;
            self.token = page.next_token;
            self.exhausted = self.token.is_none();
            for o in page.objects {
                if self.from.as_deref().is_some_and(|f| o.key.as_str() < f) {
                    continue;
                }
                if self.end.as_deref().is_some_and(|e| o.key.as_str() >= e) {
                    self.exhausted = true;
                    break;
                }
                self.page.push_back((o.key, normalize_etag(&o.etag)));
            }
        }
        Ok(self.page.front())
    }

    fn pop(&mut self) -> Option<(String, String)> {
        self.page.pop_front()
    }
}

/// The key just before `key` in ListObjectsV2's sense: listing "after" it starts at `key` itself.
fn before(key: &str) -> Option<String> {
    let mut s = key.to_string();
    s.pop();
    (!s.is_empty()).then_some(s)
}

/// Processes one restore task to its end (or until its lease is lost).
pub async fn process(engine: &Engine, targets: &dyn Targets, msg: &RestoreTaskMessage, owner: &str) -> Result<TaskOutcome> {
    let control = engine.control();
    let cfg = &engine.config;
    let (_, run) = run::get(engine, &msg.restore_id).await?;
    if run.state.is_final() {
        return Ok(TaskOutcome::AlreadyDone);
    }
    if run.state != RestoreState::Restoring {
        return Err(Error::port(
            "restore task",
            format!("run {} is still {}; its tasks wait for the plan", msg.restore_id, run.state.name()),
            true,
        ));
    }
    let Some(mut lease) = control.claim(&msg.restore_id, &msg.task_id, owner, engine.clock.now(), cfg.lease_seconds).await? else {
        let done = control.get_task(&msg.restore_id, &msg.task_id).await?.is_some_and(|(_, t)| t.done);
        return Ok(if done { TaskOutcome::AlreadyDone } else { TaskOutcome::Busy });
    };
    let req = run.request.clone();
    // Every target request goes through one paced store under the scheduler's gate for the
    // target bucket, as the backup's source reads do: a rollback in place shares the prefix's
    // budget with the workers protecting it and with the application.
    let target = PacedStore::new(targets.store(req.target_role_arn.as_deref()).await?);
    let mut gate = Gate::new(engine.control.as_ref(), cfg, &req.target_bucket, owner)?;
    let point = run::point(engine, &run).await?;
    let part = lease.task.partition.clone();
    let cursor = lease.task.cursor.clone();
    let range = KeyRange { prefix: req.prefix.clone(), start: cursor.clone().unwrap_or_else(|| part.start.clone()), end: part.end.clone() };
    let mut state =
        StateStream::new(engine.vault.as_ref(), &cfg.vault_bucket, &point.segments, range, req.as_of, lease.task.offsets.clone());
    let mut listing = match req.mode {
        RestoreMode::Rollback => Some(TargetListing {
            target: &target,
            bucket: &req.target_bucket,
            prefix: &req.target_prefix,
            after: match &cursor {
                Some(c) => Some(req.target_key(c)),
                None => before(&req.target_key(&part.start)),
            },
            from: cursor.is_none().then(|| req.target_key(&part.start)),
            end: part.end.as_deref().map(|e| req.target_key(e)),
            page: VecDeque::new(),
            token: None,
            exhausted: false,
        }),
        RestoreMode::Copy => None,
    };
    let mut samples: std::collections::BTreeMap<&'static str, usize> = Default::default();
    tracing::info!(restore_id = %msg.restore_id, task_id = %msg.task_id, attempt = lease.task.attempts, cursor = ?cursor, "restore task claimed");
    let mut prefix = String::new();
    loop {
        let (actions, last) = next_actions(&req, &mut state, listing.as_mut(), cursor.as_deref()).await?;
        let Some(last) = last else {
            lease.task.done = true;
            control.commit(&mut lease, engine.clock.now(), cfg.lease_seconds).await?;
            gate.release(&prefix, millis(engine.clock.now()), target.take_observation()).await?;
            engine.control.put_new(&run::run_pk(&msg.restore_id), &format!("done#{}", msg.task_id), "1", None).await?;
            tracing::info!(restore_id = %msg.restore_id, task_id = %msg.task_id, objects = lease.task.counters.objects, "restore task done");
            return Ok(TaskOutcome::Finished(lease.task.counters));
        };
        // A batch can outlast the lease (large copies, a slow target): the lease is renewed while
        // it runs, so that no second worker takes the task and writes the same keys again.
        let renew_every = std::time::Duration::from_millis((cfg.lease_seconds.max(1) as u64 * 1000) / 3);
        if gate.is_shared() {
            let next = actions.first().map_or("", |a| top_prefix(a.key())).to_string();
            if next != prefix {
                // The task crossed into another top-level prefix: settle the old one first.
                gate.release(&prefix, millis(engine.clock.now()), target.take_observation()).await?;
                prefix = next;
            }
        }
        match gate.report(&prefix, millis(engine.clock.now()), target.take_observation()).await? {
            Admission::Go { rate_rps } => target.set_rate(rate_rps),
            Admission::Defer(delay) => {
                tracing::info!(restore_id = %msg.restore_id, task_id = %msg.task_id, %prefix, delay_ms = delay.as_millis() as u64, "target prefix over budget; restore task deferred");
                control.commit(&mut lease, engine.clock.now(), 0).await?;
                return Ok(TaskOutcome::Deferred(delay));
            }
        }
        let work = apply(engine, &target, &run, &actions, &mut samples);
        tokio::pin!(work);
        let counters = loop {
            tokio::select! {
                c = &mut work => break c?,
                _ = tokio::time::sleep(renew_every) => commit(engine, &mut lease).await?,
            }
        };
        lease.task.counters.add(&counters);
        lease.task.cursor = Some(last);
        lease.task.batch += 1;
        commit(engine, &mut lease).await?;
    }
}

async fn commit(engine: &Engine, lease: &mut Lease) -> Result<()> {
    engine.control().commit(lease, engine.clock.now(), engine.config.lease_seconds).await
}

/// The next batch of actions after `cursor`, and the last source key it covers (`None` when the
/// range is exhausted).
async fn next_actions(
    req: &RestoreRequest,
    state: &mut StateStream<'_>,
    mut listing: Option<&mut TargetListing<'_>>,
    cursor: Option<&str>,
) -> Result<(Vec<Action>, Option<String>)> {
    let mut actions = Vec::new();
    let (mut writes, mut bytes) = (0usize, 0u64);
    let mut last = None;
    let source_key = |target_key: &str| format!("{}{}", req.prefix, &target_key[req.target_prefix.len()..]);
    loop {
        if writes >= BATCH_OBJECTS || bytes >= BATCH_BYTES || actions.len() >= BATCH_OBJECTS * 4 {
            break;
        }
        let next_state: Option<(String, CaptureRecord)> = state.next().await?;
        let Some((key, rec)) = next_state else {
            // The state is exhausted; what the target still holds in the range was born after T.
            if let Some(l) = listing.as_deref_mut() {
                while let Some((tk, _)) = l.peek().await?.cloned() {
                    l.pop();
                    if req.delete_newer {
                        actions.push(Action::Delete(tk.clone()));
                    }
                    last = Some(source_key(&tk));
                    if actions.len() >= BATCH_OBJECTS * 4 {
                        break;
                    }
                }
            }
            break;
        };
        if cursor.is_some_and(|c| key.as_str() <= c) {
            continue;
        }
        let tk = req.target_key(&key);
        if let Some(l) = listing.as_deref_mut() {
            // Target keys before this one are not in the state at T.
            while let Some((lk, _)) = l.peek().await?.cloned() {
                if lk >= tk {
                    break;
                }
                l.pop();
                if req.delete_newer {
                    actions.push(Action::Delete(lk));
                }
            }
            if let Some((lk, etag)) = l.peek().await?.cloned() {
                if lk == tk {
                    l.pop();
                    if rec.etag.as_deref().map(normalize_etag).as_deref() == Some(etag.as_str()) {
                        actions.push(Action::Unchanged(tk));
                        last = Some(key);
                        continue;
                    }
                }
            }
        }
        if rec.location.is_none() {
            if let Some(class) = rec.attributes.archived.clone() {
                actions.push(Action::Unprotected(tk, format!("archived ({class}) when it was captured; its bytes are not in the vault")));
                last = Some(key);
                continue;
            }
        }
        if matches!(rec.location, Some(crate::domain::Location::Pack { .. })) {
            bytes += rec.size;
        }
        writes += 1;
        actions.push(Action::Write(Item { target_key: tk, record: rec }));
        last = Some(key);
    }
    Ok((actions, last))
}

/// Carries out a batch of actions (or, for a dry run, records what they would be).
async fn apply(
    engine: &Engine,
    target: &dyn ObjectStore,
    run: &run::RestoreRun,
    actions: &[Action],
    samples: &mut std::collections::BTreeMap<&'static str, usize>,
) -> Result<Counters> {
    let req = &run.request;
    let id = run.restore_id.as_str();
    let mut c = Counters::default();
    if req.dry_run {
        for a in actions {
            let (name, key, size) = match a {
                Action::Write(i) => ("write", &i.target_key, i.record.size),
                Action::Unchanged(k) => ("unchanged", k, 0),
                Action::Delete(k) => ("delete", k, 0),
                Action::Unprotected(k, _) => ("unprotected", k, 0),
            };
            match a {
                Action::Write(_) => {
                    c.objects += 1;
                    c.bytes += size;
                }
                Action::Unchanged(_) => c.unchanged += 1,
                Action::Delete(_) => c.deleted += 1,
                Action::Unprotected(..) => c.unprotected += 1,
            }
            let n = samples.entry(name).or_default();
            if *n < SAMPLES {
                *n += 1;
                run::record_sample(engine, id, name, key).await?;
            }
        }
        return Ok(c);
    }
    let mut writes = Vec::new();
    let mut deletes = Vec::new();
    for a in actions {
        match a {
            Action::Write(i) => writes.push(i.clone()),
            Action::Unchanged(_) => c.unchanged += 1,
            Action::Delete(k) => deletes.push(k.clone()),
            Action::Unprotected(k, reason) => {
                c.unprotected += 1;
                run::record_note(engine, id, "unprotected", k, reason).await?;
            }
        }
    }
    let in_place = req.mode == RestoreMode::Rollback && req.target_bucket == req.source_bucket && req.target_prefix == req.prefix;
    let writer = Writer { engine, target, bucket: &req.target_bucket, in_place, attributes: &req.attributes, now: engine.clock.now() };
    for (key, result) in writer.write_all(writes).await {
        match result {
            Ok(w) => {
                c.objects += 1;
                c.bytes += w.bytes;
                c.verified += u64::from(w.verified);
                c.vault_requests += w.vault_requests;
                c.target_requests += w.target_requests;
                c.attributes_not_applied += w.not_applied.len() as u64;
                // One note per attribute, so a report can count and filter them by attribute.
                for n in &w.not_applied {
                    let note = format!("{}: {}", n.attribute, n.reason);
                    run::record_note(engine, id, &format!("not-applied#{}", n.attribute), &key, &note).await?;
                }
            }
            // A transient failure (throttling, a dropped connection) redoes the batch.
            Err(e) if e.is_transient() => return Err(e),
            Err(e) => {
                tracing::error!(restore_id = %id, %key, error = %e, "object could not be restored");
                c.failed += 1;
                run::record_failure(engine, id, &key, &e.to_string()).await?;
            }
        }
    }
    for chunk in deletes.chunks(1000) {
        let failed = target.delete_many(&req.target_bucket, chunk).await?;
        c.target_requests += 1;
        c.deleted += (chunk.len() - failed.len()) as u64;
        for (key, reason) in failed {
            c.failed += 1;
            run::record_failure(engine, id, &key, &format!("delete: {reason}")).await?;
        }
    }
    Ok(c)
}
