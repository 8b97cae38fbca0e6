//! The stepwise seeder: seeding from an S3 Inventory report in steps that each fit one Lambda
//! invocation, whatever the size of the report.
//!
//! - [`start`] (the seeder function) reads the manifest only, starts or resumes the run in
//!   `Planning`, records a [`SeedPlan`] in the control store and sends one summarise message
//!   per data file.
//! - [`summarise`] (a worker, one message per data file) reads that file only, stores its
//!   bounded [`FileSummary`] in the vault (`vault::summary_key`) and then sets the file's bit in
//!   the plan with a compare-and-set; the step that sets the last bit sends the plan message.
//! - [`plan`] (a worker) merges the summaries into partitions, exactly as the one-shot seeder
//!   does (`seed::plan_by_inventory`), creates the tasks and sends their messages interleaved
//!   across prefixes, recording its progress in the plan. When its time budget runs out it sends
//!   itself again and the next invocation carries on from the recorded position; once every task
//!   is enqueued it moves the run to `Running` with its task count.
//!
//! Every step is idempotent: a step that finds its work recorded sends nothing. A step that
//! dies between sending and recording resends at most that one chunk when retried, and
//! duplicate task messages are fenced by the task leases. Step messages travel on the work
//! queue with `"kind": "seed_step"` (`protocol::messages` tells them from task messages).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::stream::{self, StreamExt, TryStreamExt};

use crate::control::{RunRecord, RunState, SeedPlan};
use crate::engine::Engine;
use crate::plan::inventory::FileSummary;
use crate::plan::partition::interleave;
use crate::plan::partition::{Partition, PlanTargets};
use crate::ports::{Fetch, PutOptions};
use crate::protect::seed::{new_task, read_options, task_id, task_message, with_inventory, Seeded, SUMMARY_SORT_BUDGET};
use crate::protocol::messages::{StepKind, StepMessage};
use crate::{Error, Result};

/// Messages (summarise messages, or tasks) sent and then recorded together; a retry after a
/// crash between the two resends at most this many.
const SEND_CHUNK: usize = 256;

/// What handling a step message did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepOutcome {
    /// The step did its work now.
    Done,
    /// The step's work was already recorded (a duplicate or retried message); nothing was sent
    /// except a plan message that a crash had kept from being sent.
    AlreadyDone,
    /// A plan message came before every file was summarised; the last summary sends another.
    Waiting,
    /// The plan step's time budget ran out; it sent itself again to carry on.
    Continued,
}

/// Handles one step message with the engine's time budget for a plan step.
pub async fn handle_step(engine: &Engine, msg: &StepMessage) -> Result<StepOutcome> {
    // The run names its source; one read of its record puts them on every line of the step.
    if let Some((_, run)) = engine.control().get_run(&msg.run_id).await? {
        crate::telemetry::record(None, None, Some(&run.source_bucket), Some(&run.prefix));
    }
    match (msg.step, msg.file) {
        (StepKind::Summarise, Some(file)) => summarise(engine, &msg.run_id, file).await,
        (StepKind::Summarise, None) => Err(Error::Invalid(format!("summarise message of run {} names no data file", msg.run_id))),
        (StepKind::Plan, _) => plan(engine, &msg.run_id, Duration::from_secs(engine.config.step_seconds)).await,
    }
}

/// Sends bodies to the work queue, several at a time.
async fn send_all(engine: &Engine, bodies: Vec<String>) -> Result<()> {
    // Futures built in a loop rather than by a closure: a closure returning a borrowing future
    // makes the caller's future fail the `Send` check that `tokio::spawn` needs.
    let mut sends = Vec::with_capacity(bodies.len());
    for body in bodies {
        sends.push(async move { engine.queue.send(&engine.queues.work, &body, 0).await });
    }
    stream::iter(sends).buffer_unordered(engine.config.concurrency.max(1)).try_collect::<Vec<()>>().await?;
    Ok(())
}

/// Changes the run's plan with a compare-and-set, re-reading it after a lost race. `change`
/// returns false when the stored plan already says what it would write; nothing is written then.
async fn update_plan(engine: &Engine, run_id: &str, mut change: impl FnMut(&mut SeedPlan) -> bool) -> Result<SeedPlan> {
    let control = engine.control();
    loop {
        let (version, mut plan) = load_plan(engine, run_id).await?;
        if !change(&mut plan) {
            return Ok(plan);
        }
        if control.update_seed_plan(run_id, version, &plan).await? {
            return Ok(plan);
        }
    }
}

async fn load_plan(engine: &Engine, run_id: &str) -> Result<(u64, SeedPlan)> {
    engine.control().seed_plan(run_id).await?.ok_or_else(|| Error::Invalid(format!("run {run_id} has no stepwise seed plan")))
}

async fn load_run(engine: &Engine, run_id: &str) -> Result<RunRecord> {
    let run = engine.control().get_run(run_id).await?.map(|(_, r)| r);
    run.ok_or_else(|| Error::Invalid(format!("run {run_id} does not exist")))
}

/// Sends the plan message once every file is summarised, unless it was sent already.
async fn enqueue_plan_if_ready(engine: &Engine, run_id: &str, plan: &SeedPlan) -> Result<usize> {
    if plan.plan_enqueued || plan.summarised_count() < plan.files {
        return Ok(0);
    }
    engine.queue.send(&engine.queues.work, &StepMessage::plan(run_id).body(), 0).await?;
    update_plan(engine, run_id, |p| !std::mem::replace(&mut p.plan_enqueued, true)).await?;
    Ok(1)
}

/// Starts (or resumes) a run of `bucket/prefix` seeded from the report at `manifest_url`, in
/// steps: records the plan and sends one summarise message per data file.
///
/// A run already planned is left alone and nothing is sent; a run still planning gets only the
/// messages its plan does not record as sent.
#[tracing::instrument(name = "step", skip_all, fields(step = "seed start", source_bucket = %bucket, prefix = %prefix, run_id = tracing::field::Empty))]
pub async fn start(engine: &Engine, bucket: &str, prefix: &str, manifest_url: &str, targets: PlanTargets) -> Result<Seeded> {
    let control = engine.control();
    let (_, run, resumed) = crate::protect::seed::begin_run(engine, bucket, prefix).await?;
    crate::telemetry::record(Some(&run.run_id), None, None, None);
    tracing::info!(resumed, %manifest_url, "stepwise seed run begun");
    let input = serde_json::json!({"source_bucket": bucket, "prefix": prefix, "inventory_manifest": manifest_url}).to_string();
    crate::history::best_effort("start", crate::history::record_start(engine, &run.run_id, "seed start", &input).await);
    if run.state != RunState::Planning {
        return Ok(Seeded { run, resumed, enqueued: 0 });
    }
    let (_, mut plan) = match control.seed_plan(&run.run_id).await? {
        Some((version, plan)) if plan.manifest_url == manifest_url => (version, plan),
        Some((_, plan)) => {
            return Err(Error::Invalid(format!(
                "run {} of s3://{bucket}/{prefix} is being planned from {}, not {manifest_url}; let it finish first",
                run.run_id, plan.manifest_url
            )))
        }
        None => {
            let files = with_inventory(engine.source.clone(), manifest_url, bucket, "reading the inventory manifest", |i| {
                Ok(i.manifest().files.len())
            })
            .await?;
            let max_samples = crate::plan::inventory::samples_per_file(files);
            control.create_seed_plan(&run.run_id, &SeedPlan::new(manifest_url, files, max_samples, targets.objects, targets.bytes)).await?
        }
    };
    let mut enqueued = 0;
    while plan.files_enqueued < plan.files {
        let (from, to) = (plan.files_enqueued, (plan.files_enqueued + SEND_CHUNK).min(plan.files));
        let bodies: Vec<String> =
            (from..to).filter(|&i| !plan.is_summarised(i)).map(|i| StepMessage::summarise(&run.run_id, i).body()).collect();
        enqueued += bodies.len();
        send_all(engine, bodies).await?;
        plan = update_plan(engine, &run.run_id, |p| {
            p.files_enqueued < to && {
                p.files_enqueued = to;
                true
            }
        })
        .await?;
    }
    // A report with no data files, or a plan message lost to a crash, is sent from here.
    enqueued += enqueue_plan_if_ready(engine, &run.run_id, &plan).await?;
    tracing::info!(run_id = %run.run_id, files = plan.files, enqueued, resumed, "stepwise seed started");
    Ok(Seeded { run, resumed, enqueued })
}

/// Summarises data file `file` of the run's report into the vault and marks it done; the
/// step that marks the last file sends the plan message.
pub async fn summarise(engine: &Engine, run_id: &str, file: usize) -> Result<StepOutcome> {
    let run = load_run(engine, run_id).await?;
    let (_, mut plan) = load_plan(engine, run_id).await?;
    if run.state != RunState::Planning {
        return Ok(StepOutcome::AlreadyDone);
    }
    if file >= plan.files {
        return Err(Error::Invalid(format!("run {run_id}: data file {file} does not exist (the report has {} files)", plan.files)));
    }
    let mut outcome = StepOutcome::AlreadyDone;
    if !plan.is_summarised(file) {
        let vault = &engine.config.vault_bucket;
        let key = crate::vault::summary_key(&run.source_bucket, run_id, file);
        // A summary is stored before its bit is set, so one that exists is complete: a retry
        // after a crash between the two only sets the bit.
        if engine.vault.head(vault, &key, None).await?.is_none() {
            let started = Instant::now();
            let (read, max) = (read_options(&run.prefix, run.all_versions), plan.max_samples);
            let summary = with_inventory(
                engine.source.clone(),
                &plan.manifest_url,
                &run.source_bucket,
                "summarising an inventory data file",
                move |inventory| crate::plan::inventory::summarise_file(&inventory, file, &read, max, SUMMARY_SORT_BUDGET),
            )
            .await?;
            let body = Bytes::from(serde_json::to_vec(&summary).expect("a summary serialises"));
            let size = body.len();
            let mut opts = PutOptions { content_type: Some("application/json".into()), if_none_match: true, ..Default::default() };
            opts.attributes.sse = engine.config.vault_sse();
            if let Err(e) = engine.vault.put(vault, &key, body, &opts).await {
                // A duplicate step stored the same summary first (summaries are deterministic).
                if engine.vault.head(vault, &key, None).await?.is_none() {
                    return Err(e);
                }
            }
            tracing::info!(
                run_id,
                file,
                rows = summary.rows,
                samples = summary.samples.len(),
                bytes = size,
                ms = started.elapsed().as_millis() as u64,
                "data file summarised"
            );
        }
        plan = update_plan(engine, run_id, |p| {
            !p.is_summarised(file) && {
                p.set_summarised(file);
                true
            }
        })
        .await?;
        outcome = StepOutcome::Done;
    }
    enqueue_plan_if_ready(engine, run_id, &plan).await?;
    Ok(outcome)
}

/// The partitions of a run whose files are all summarised: the summaries, merged.
pub async fn planned_partitions(engine: &Engine, run: &RunRecord, plan: &SeedPlan) -> Result<Vec<Partition>> {
    let vault = engine.config.vault_bucket.as_str();
    let mut reads = Vec::with_capacity(plan.files);
    for i in 0..plan.files {
        reads.push(async move {
            let key = crate::vault::summary_key(&run.source_bucket, &run.run_id, i);
            match engine.vault.get(vault, &key, None, None).await? {
                Fetch::Found((_, bytes)) => FileSummary::parse(&key, &bytes, i),
                _ => Err(Error::corrupt(format!("summary {key}"), "missing, though the plan records the file as summarised")),
            }
        });
    }
    let summaries: Vec<FileSummary> = stream::iter(reads).buffered(engine.config.concurrency.max(1)).try_collect().await?;
    crate::plan::inventory::merge(&summaries, PlanTargets { objects: plan.target_objects, bytes: plan.target_bytes })
}

/// Plans the run from its summaries: creates its tasks and sends their messages, interleaved
/// across prefixes, from where the plan records it got to, for at most `budget` (at least one
/// chunk); then sends itself again, or, when every task is enqueued, moves the run to `Running`.
pub async fn plan(engine: &Engine, run_id: &str, budget: Duration) -> Result<StepOutcome> {
    let started = Instant::now();
    let run = load_run(engine, run_id).await?;
    let (_, plan) = load_plan(engine, run_id).await?;
    if run.state != RunState::Planning {
        return Ok(StepOutcome::AlreadyDone);
    }
    if plan.summarised_count() < plan.files {
        return Ok(StepOutcome::Waiting);
    }
    let partitions = planned_partitions(engine, &run, &plan).await?;
    let ids: Vec<String> = partitions.iter().map(|p| task_id(run_id, p)).collect();
    let by_id: HashMap<&str, &Partition> = ids.iter().map(String::as_str).zip(&partitions).collect();
    let order = interleave(&partitions, ids.clone());
    let total = order.len() as u64;
    let first = plan.tasks_enqueued as usize;
    let mut cursor = first;
    let mut outcome = if first >= order.len() { StepOutcome::AlreadyDone } else { StepOutcome::Done };
    while cursor < order.len() {
        if cursor > first && started.elapsed() >= budget {
            engine.queue.send(&engine.queues.work, &StepMessage::plan(run_id).body(), 0).await?;
            tracing::info!(run_id, enqueued = cursor, total, "plan step out of time; continuing in a new message");
            return Ok(StepOutcome::Continued);
        }
        let chunk = &order[cursor..(cursor + SEND_CHUNK).min(order.len())];
        let mut creates = Vec::with_capacity(chunk.len());
        for id in chunk {
            let task = new_task(&run, by_id[id.as_str()]);
            creates.push(async move { engine.control().create_task(&task).await });
        }
        stream::iter(creates).buffer_unordered(engine.config.concurrency.max(1)).try_collect::<Vec<bool>>().await?;
        send_all(engine, chunk.iter().map(|id| task_message(run_id, id)).collect()).await?;
        let to = (cursor + chunk.len()) as u64;
        let recorded = update_plan(engine, run_id, |p| {
            let stale = p.tasks_total != Some(total) || p.tasks_enqueued < to;
            p.tasks_total = Some(total);
            p.tasks_enqueued = p.tasks_enqueued.max(to);
            stale
        })
        .await?;
        cursor = recorded.tasks_enqueued as usize;
    }
    // Every task exists and is enqueued: the run is planned.
    let control = engine.control();
    loop {
        let Some((version, mut current)) = control.get_run(run_id).await? else {
            return Err(Error::corrupt("run", format!("{run_id} vanished during planning")));
        };
        if current.state != RunState::Planning {
            break;
        }
        current.state = RunState::Running;
        current.task_count = total;
        if control.update_run(version, &current).await? {
            outcome = StepOutcome::Done;
            break;
        }
    }
    // Workers may have finished every task while the run was still planning; nobody else
    // would notice then.
    crate::protect::worker::finish_run_if_complete(engine, run_id).await?;
    tracing::info!(run_id, tasks = total, ms = started.elapsed().as_millis() as u64, "run planned");
    Ok(outcome)
}
