//! A restore is a run: its record in the control table (request, state, plan progress), its
//! tasks, failures and dry-run samples, and the steps that start, resume, finish and report it.
//!
//! Control items, all under `run#<restore id>`: `restore` (the [`RestoreRun`], changed only by
//! compare-and-set), `task#<n>` (one key range each, `n` zero-padded so tasks sort in key order, a [`TaskRecord`] with its lease and cursor),
//! `done#<n>` (a marker per finished task), `failure#<target key>` (an object that could not be
//! restored, with the reason) and `sample#<action>#<key>` (a dry run's first keys of each action).
//! `restores#<vault>#<bucket>` indexes the runs of a source bucket by start time, and
//! `restore-request#<vault>#<digest>` points at the unfinished run of a request, so that running
//! the same request again continues it.

use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::control::{Counters, TaskRecord};
use crate::domain::new_id;
use crate::engine::Engine;
use crate::ports::{ObjectStore, PutOptions};
use crate::protocol::messages::{RestoreStepKind, RestoreStepMessage};
use crate::restore::request::{RestoreMode, RestoreRequest};
use crate::vault::point::{point_for, RecoveryPoint};
use crate::{Error, Result};

/// Where a restore run is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RestoreState {
    /// The state at T is being cut into tasks.
    Planning,
    /// Tasks are being enqueued and restored.
    Restoring,
    /// Every task finished and every object was restored (or, for a dry run, planned).
    Done,
    /// The run ended with failed objects, or could not go on (its `error` says why).
    Failed,
}

impl RestoreState {
    /// True once the run has ended.
    pub fn is_final(self) -> bool {
        matches!(self, RestoreState::Done | RestoreState::Failed)
    }

    /// The state's name, as in the JSON.
    pub fn name(self) -> &'static str {
        match self {
            RestoreState::Planning => "planning",
            RestoreState::Restoring => "restoring",
            RestoreState::Done => "done",
            RestoreState::Failed => "failed",
        }
    }
}

/// How far planning got: tasks are cut in key order, and a plan step that runs out of time
/// records where the next task starts and hands the rest to a fresh step message.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanProgress {
    /// The first key of the next task to cut; `None` before the first step.
    pub next_start: Option<String>,
    /// Tasks cut so far (task ids are their numbers).
    pub tasks: u64,
    /// Objects and bytes of the state at T cut into tasks so far.
    pub objects: u64,
    pub bytes: u64,
    /// Segments read to their end and verified.
    pub segments_verified: u64,
    /// True once every key is in a task.
    pub done: bool,
}

/// A restore run (see the module documentation).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RestoreRun {
    #[serde(default = "version_one")]
    pub version: u32,
    pub restore_id: String,
    pub request: RestoreRequest,
    pub state: RestoreState,
    pub started_at: DateTime<Utc>,
    #[serde(default)]
    pub finished_at: Option<DateTime<Utc>>,
    /// The recovery point the restore reads (the latest at the start, which covers `as_of`).
    pub recovery_point: DateTime<Utc>,
    pub plan: PlanProgress,
    /// Task messages sent so far, in the interleaved order.
    #[serde(default)]
    pub enqueued: u64,
    /// The marker object this run keeps in a copy-mode target while it writes there.
    #[serde(default)]
    pub marker: Option<String>,
    /// Why the run failed, when it did.
    #[serde(default)]
    pub error: Option<String>,
    /// The totals, once the run ended.
    #[serde(default)]
    pub totals: Option<Counters>,
    /// Keys the recovery point names as unprotected at T under the prefix (a change of theirs
    /// could not be captured): the first 1,000, and how many there are.
    #[serde(default)]
    pub unprotected: Vec<Failure>,
    #[serde(default)]
    pub unprotected_count: u64,
}

fn version_one() -> u32 {
    1
}

/// The item key of a run's parts.
pub(crate) fn run_pk(id: &str) -> String {
    format!("run#{id}")
}

/// The task id of task `n`.
pub(crate) fn task_id(n: u64) -> String {
    format!("{n:010}")
}

fn index_pk(vault: &str, bucket: &str) -> String {
    format!("restores#{vault}#{bucket}")
}

fn request_pk(vault: &str, digest: &str) -> String {
    format!("restore-request#{vault}#{digest}")
}

fn body<T: Serialize>(v: &T) -> String {
    serde_json::to_string(v).expect("a restore record serialises")
}

fn parse<T: serde::de::DeserializeOwned>(what: &str, body: &str) -> Result<T> {
    serde_json::from_str(body).map_err(|e| Error::corrupt(what, e.to_string()))
}

/// Reads a run with its item version.
pub async fn load(engine: &Engine, id: &str) -> Result<Option<(u64, RestoreRun)>> {
    match engine.control.get(&run_pk(id), "restore").await? {
        None => Ok(None),
        Some(item) => Ok(Some((item.version, parse(&format!("restore run {id}"), &item.body)?))),
    }
}

/// Reads a run that must exist.
pub async fn get(engine: &Engine, id: &str) -> Result<(u64, RestoreRun)> {
    load(engine, id).await?.ok_or_else(|| Error::Invalid(format!("restore {id} does not exist in vault {}", engine.config.vault_bucket)))
}

/// Applies `change` to the run with compare-and-set, re-reading on a lost race; returns the run as written.
pub async fn update(engine: &Engine, id: &str, mut change: impl FnMut(&mut RestoreRun) -> bool) -> Result<RestoreRun> {
    loop {
        let (version, mut run) = get(engine, id).await?;
        if !change(&mut run) {
            return Ok(run);
        }
        if engine.control.replace(&run_pk(id), "restore", version, &body(&run)).await? {
            return Ok(run);
        }
    }
}

/// The marker key a copy-mode run keeps in its target while it writes there.
pub fn marker_key(req: &RestoreRequest, id: &str) -> String {
    format!("{}.tidemark-restore/{id}", req.target_prefix)
}

/// Starts a restore run for `req`, or returns the unfinished run of the same request
/// (`resumed` true), after checking everything that can be checked before writing: the source
/// has a recovery point covering `as_of`, a copy-mode target holds nothing but this run's own
/// writes, a rollback target exists. Sends the first plan step.
#[tracing::instrument(name = "step", skip_all, fields(step = "restore start", source_bucket = %req.source_bucket, prefix = %req.prefix, run_id = tracing::field::Empty))]
pub async fn start(engine: &Engine, target: &dyn ObjectStore, req: RestoreRequest) -> Result<(RestoreRun, bool)> {
    req.validate()?;
    let vault = engine.config.vault_bucket.clone();
    if !engine.vault.bucket_exists(&vault).await? {
        return Err(Error::NoSuchBucket { bucket: vault });
    }
    // The vault's recovery points are the authority, so a vault restores without its control
    // table; the control table only gives the clearer error for a bucket that was never protected.
    let point = match point_for(engine.vault.as_ref(), &vault, &req.source_bucket, req.as_of).await {
        Ok(point) => point,
        Err(e) if !engine.control().is_protected(&req.source_bucket).await? => {
            return Err(Error::Invalid(format!("s3://{} is not protected by vault {vault}; nothing to restore ({e})", req.source_bucket)));
        }
        Err(e) => return Err(e),
    };
    let digest = req.digest();
    if let Some(item) = engine.control.get(&request_pk(&vault, &digest), "active").await? {
        let id: String = parse("restore request pointer", &item.body)?;
        if let Some((_, run)) = load(engine, &id).await? {
            if !run.state.is_final() {
                resume(engine, &id).await?;
                return Ok((run, true));
            }
        }
    }
    let now = engine.clock.now();
    let id = new_id(now);
    crate::telemetry::record(Some(&id), None, None, None);
    tracing::info!(as_of = %req.as_of, target = %req.target_bucket, "restore run started");
    check_target(target, &req, &id).await?;
    let marker = (req.mode == RestoreMode::Copy && !req.dry_run).then(|| marker_key(&req, &id));
    let run = RestoreRun {
        version: 1,
        restore_id: id.clone(),
        request: req.clone(),
        state: RestoreState::Planning,
        started_at: now,
        finished_at: None,
        recovery_point: point.time,
        plan: PlanProgress::default(),
        enqueued: 0,
        marker: marker.clone(),
        error: None,
        totals: None,
        unprotected: Vec::new(),
        unprotected_count: 0,
    };
    let mut run = run;
    for u in point.unprotected.iter().filter(|u| u.key.starts_with(&req.prefix) && u.covers(req.as_of)) {
        run.unprotected_count += 1;
        if run.unprotected.len() < 1000 {
            run.unprotected.push(Failure {
                key: u.key.clone(),
                reason: format!("a change at {} could not be captured: {}", u.since.to_rfc3339(), u.reason),
            });
        }
    }
    engine.control.put_new(&run_pk(&id), "restore", &body(&run), None).await?;
    let input = serde_json::to_string(&req).expect("the request serialises");
    crate::history::best_effort("start", crate::history::record_start(engine, &id, "restore start", &input).await);
    let sk = format!("{}#{id}", now.to_rfc3339_opts(chrono::SecondsFormat::Millis, true));
    engine.control.put_new(&index_pk(&vault, &req.source_bucket), &sk, &body(&id), None).await?;
    // The pointer is replaced by each new run of the request; a lost race only means two runs.
    match engine.control.get(&request_pk(&vault, &digest), "active").await? {
        None => {
            engine.control.put_new(&request_pk(&vault, &digest), "active", &body(&id), None).await?;
        }
        Some(item) => {
            engine.control.replace(&request_pk(&vault, &digest), "active", item.version, &body(&id)).await?;
        }
    }
    if let Some(key) = &marker {
        if !target.bucket_exists(&req.target_bucket).await? {
            target.create_bucket(&req.target_bucket).await?;
        }
        let note =
            serde_json::json!({"restore_id": id, "source": format!("s3://{}/{}", req.source_bucket, req.prefix), "as_of": req.as_of});
        let opts = PutOptions { content_type: Some("application/json".into()), ..Default::default() };
        target.put(&req.target_bucket, key, Bytes::from(note.to_string()), &opts).await?;
    }
    send_step(engine, &id, RestoreStepKind::Plan, 0).await?;
    tracing::info!(restore_id = %id, source = %req.source_bucket, prefix = %req.prefix, as_of = %req.as_of, "restore started");
    Ok((run, false))
}

/// Refuses a target this run cannot write: in copy mode one holding any object (a marker of
/// another run included); in rollback mode one that does not exist.
async fn check_target(target: &dyn ObjectStore, req: &RestoreRequest, id: &str) -> Result<()> {
    let exists = target.bucket_exists(&req.target_bucket).await?;
    match req.mode {
        RestoreMode::Rollback if !exists => Err(Error::NoSuchBucket { bucket: req.target_bucket.clone() }),
        RestoreMode::Rollback => Ok(()),
        RestoreMode::Copy if !exists => Ok(()),
        RestoreMode::Copy => {
            let page = target
                .list(&req.target_bucket, crate::ports::ListRequest { prefix: &req.target_prefix, max_keys: Some(2), ..Default::default() })
                .await?;
            let own = marker_key(req, id);
            match page.objects.iter().find(|o| o.key != own) {
                None => Ok(()),
                Some(o) => Err(Error::Invalid(format!(
                        "target s3://{}/{} is not empty (it holds {}, not written by this restore); copy mode restores into an empty or new target",
                        req.target_bucket, req.target_prefix, o.key
                ))),
            }
        }
    }
}

/// Sends a step message of a run to the restore queue, visible after `delay_seconds`.
pub(crate) async fn send_step(engine: &Engine, id: &str, step: RestoreStepKind, delay_seconds: i32) -> Result<()> {
    engine.queue.send(&engine.queues.restore, &RestoreStepMessage::new(id, step).body(), delay_seconds).await
}

/// Continues a run that stopped (its process was killed, its messages lost): planning goes on
/// from its recorded progress; a restoring run gets its unfinished tasks' messages again
/// (duplicates are fenced by the task leases) and a finish check. A run that ended is left alone.
pub async fn resume(engine: &Engine, id: &str) -> Result<RestoreRun> {
    let (_, run) = get(engine, id).await?;
    match run.state {
        RestoreState::Planning => send_step(engine, id, RestoreStepKind::Plan, 0).await?,
        RestoreState::Restoring if run.enqueued < run.plan.tasks => send_step(engine, id, RestoreStepKind::Enqueue, 0).await?,
        RestoreState::Restoring => {
            let tasks = engine.control().tasks(id).await?;
            for t in tasks.iter().filter(|t| !t.done) {
                engine
                    .queue
                    .send(&engine.queues.restore, &crate::protocol::messages::RestoreTaskMessage::new(id, &t.task_id).body(), 0)
                    .await?;
            }
            send_step(engine, id, RestoreStepKind::Finish, 0).await?;
        }
        RestoreState::Done | RestoreState::Failed => {}
    }
    Ok(run)
}

/// One failed object of a run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    pub key: String,
    pub reason: String,
}

/// Records a failed object (idempotent: the first reason stays).
pub(crate) async fn record_failure(engine: &Engine, id: &str, key: &str, reason: &str) -> Result<()> {
    let f = Failure { key: key.into(), reason: reason.chars().take(1000).collect() };
    engine.control.put_new(&run_pk(id), &format!("failure#{key}"), &body(&f), None).await?;
    Ok(())
}

/// Records a note on one key of a run (`unprotected`: the vault does not hold its state at T;
/// `not-applied`: attributes its write could not apply), idempotent.
pub(crate) async fn record_note(engine: &Engine, id: &str, kind: &str, key: &str, reason: &str) -> Result<()> {
    let f = Failure { key: key.into(), reason: reason.chars().take(1000).collect() };
    engine.control.put_new(&run_pk(id), &format!("{kind}#{key}"), &body(&f), None).await?;
    Ok(())
}

/// Records a dry run's sample of an action (idempotent).
pub(crate) async fn record_sample(engine: &Engine, id: &str, action: &str, key: &str) -> Result<()> {
    engine.control.put_new(&run_pk(id), &format!("sample#{action}#{key}"), "1", None).await?;
    Ok(())
}

/// A run with what its tasks did so far: the status the CLI and the API show.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RestoreStatus {
    pub run: RestoreRun,
    /// The sum over the run's tasks (the final totals once it ended).
    pub counters: Counters,
    pub tasks: u64,
    pub tasks_done: u64,
    /// Failed objects with their reasons (the first 1,000 in key order), and how many there are.
    pub failures: Vec<Failure>,
    pub failures_total: u64,
    /// For a dry run: the first keys of each action (`write`, `unchanged`, `delete`).
    pub samples: std::collections::BTreeMap<String, Vec<String>>,
    /// Keys whose state at T the vault does not hold, with the reason (the recovery point names
    /// them unprotected at T, or they were archived when captured): the first 1,000.
    pub unprotected: Vec<Failure>,
    /// Attributes that were not written, by key (the first 1,000 keys).
    pub not_applied: Vec<Failure>,
}

/// The status of run `id`.
pub async fn status(engine: &Engine, id: &str) -> Result<RestoreStatus> {
    let (_, run) = get(engine, id).await?;
    let items = engine.control.query(&run_pk(id), "").await?;
    let mut counters = Counters::default();
    let (mut tasks, mut tasks_done) = (0, 0);
    let mut failures = Vec::new();
    let mut failures_total = 0;
    let mut samples: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    let mut unprotected = run.unprotected.clone();
    let mut not_applied = Vec::new();
    for item in items {
        if item.sk.starts_with("task#") {
            let t: TaskRecord = parse("restore task", &item.body)?;
            tasks += 1;
            tasks_done += u64::from(t.done);
            counters.add(&t.counters);
        } else if item.sk.starts_with("failure#") {
            failures_total += 1;
            if failures.len() < 1000 {
                failures.push(parse("restore failure", &item.body)?);
            }
        } else if item.sk.starts_with("unprotected#") {
            if unprotected.len() < 1000 {
                unprotected.push(parse("restore note", &item.body)?);
            }
        } else if item.sk.starts_with("not-applied#") {
            if not_applied.len() < 1000 {
                not_applied.push(parse("restore note", &item.body)?);
            }
        } else if let Some(rest) = item.sk.strip_prefix("sample#") {
            if let Some((action, key)) = rest.split_once('#') {
                let keys = samples.entry(action.to_string()).or_default();
                if keys.len() < 10 {
                    keys.push(key.to_string());
                }
            }
        }
    }
    if let Some(t) = &run.totals {
        counters = t.clone();
    }
    Ok(RestoreStatus { run, counters, tasks, tasks_done, failures, failures_total, samples, unprotected, not_applied })
}

/// The runs of a source bucket, newest first.
pub async fn list(engine: &Engine, source_bucket: &str) -> Result<Vec<RestoreRun>> {
    let items = engine.control.query(&index_pk(&engine.config.vault_bucket, source_bucket), "").await?;
    let mut out = Vec::new();
    for item in items.iter().rev() {
        let id: String = parse("restore index", &item.body)?;
        if let Some((_, run)) = load(engine, &id).await? {
            out.push(run);
        }
    }
    Ok(out)
}

/// Ends the run if every task is done: sums the tasks, sets `done` (or `failed` when objects
/// failed), removes the copy-mode marker from the target. Safe to call often and from many
/// workers; returns the run as it now stands.
pub async fn finish_if_complete(engine: &Engine, target: &dyn ObjectStore, id: &str) -> Result<RestoreRun> {
    let (_, run) = get(engine, id).await?;
    if run.state != RestoreState::Restoring || run.enqueued < run.plan.tasks {
        return Ok(run);
    }
    let done = engine.control.query(&run_pk(id), "done#").await?.len() as u64;
    if done < run.plan.tasks {
        return Ok(run);
    }
    let tasks = engine.control().tasks(id).await?;
    if (tasks.len() as u64) < run.plan.tasks || tasks.iter().any(|t| !t.done) {
        return Ok(run);
    }
    let mut totals = Counters::default();
    tasks.iter().for_each(|t| totals.add(&t.counters));
    if let Some(key) = &run.marker {
        target.delete(&run.request.target_bucket, key).await?;
    }
    let now = engine.clock.now();
    update(engine, id, |r| {
        if r.state.is_final() {
            return false;
        }
        r.state = if totals.failed > 0 { RestoreState::Failed } else { RestoreState::Done };
        if totals.failed > 0 {
            r.error = Some(format!("{} objects failed to restore", totals.failed));
        }
        r.finished_at = Some(now);
        r.totals = Some(totals.clone());
        true
    })
    .await
}

/// Marks the run failed for a reason that stops it (a corrupt segment, a target that refuses).
pub(crate) async fn fail(engine: &Engine, id: &str, reason: &str) -> Result<RestoreRun> {
    let now = engine.clock.now();
    update(engine, id, |r| {
        if r.state.is_final() {
            return false;
        }
        r.state = RestoreState::Failed;
        r.error = Some(reason.to_string());
        r.finished_at = Some(now);
        true
    })
    .await
}

/// The recovery point a run reads.
pub(crate) async fn point(engine: &Engine, run: &RestoreRun) -> Result<RecoveryPoint> {
    crate::vault::point::read_point(
        engine.vault.as_ref(),
        &engine.config.vault_bucket,
        &crate::vault::point_key(&run.request.source_bucket, run.recovery_point),
    )
    .await
}
