//! The seeder: starts (or resumes) a run, plans partitions by listing, creates and enqueues tasks.
//!
//! Planning is resumable: a run stays in `Planning` until its task list is recorded, and task
//! ids are derived from the run and the partition bounds, so a retried seeder creates nothing twice.

use std::sync::Arc;

use crate::control::{RunRecord, RunState, TaskRecord};
use crate::domain::{new_id, stable_id};
use crate::engine::Engine;
use crate::plan::partition::{interleave, Partition, PlanTargets};
use crate::ports::ObjectStore;
use crate::protocol::messages::TaskMessage;
use crate::{Error, Result};

/// The result of seeding.
#[derive(Debug, Clone)]
pub struct Seeded {
    pub run: RunRecord,
    /// True if an unfinished run was resumed rather than a new one started.
    pub resumed: bool,
    /// Tasks (re-)enqueued now.
    pub enqueued: usize,
}

/// Checks that the source and vault buckets exist, with errors that name the missing one.
pub async fn check_buckets(engine: &Engine, source_bucket: &str) -> Result<()> {
    if !engine.source.bucket_exists(source_bucket).await? {
        return Err(Error::NoSuchBucket { bucket: source_bucket.into() });
    }
    if !engine.vault.bucket_exists(&engine.config.vault_bucket).await? {
        return Err(Error::Invalid(format!(
            "vault bucket {} does not exist; create it with `tidemark init --local --vault s3://{}` (or deploy the vault-account stack)",
            engine.config.vault_bucket, engine.config.vault_bucket
        )));
    }
    Ok(())
}

/// Where a seed run's partitions come from.
#[derive(Debug, Clone)]
pub enum PlanSource {
    /// Parallel ListObjectsV2 over the prefixes found with the delimiter.
    Listing(PlanTargets),
    /// The bucket's S3 Inventory report (a `file://` or `s3://` manifest URL).
    Inventory { manifest_url: String, targets: PlanTargets },
}

/// Opens the report at `manifest_url`, whatever bucket it describes. Synchronous (it reads the
/// manifest): call it off the async workers.
///
/// `file://` manifests are read from a local directory standing for the destination bucket;
/// `s3://` manifests through `store` (the S3 port), streamed with bounded ranged reads; any other
/// scheme is an error that names the URL. `store` may be `None` only where no `s3://` URL is
/// expected (a command that plans a local copy without loading any AWS configuration).
pub fn open_report(
    store: Option<Arc<dyn ObjectStore>>,
    manifest_url: &str,
    handle: tokio::runtime::Handle,
) -> Result<crate::plan::inventory::Inventory> {
    if manifest_url.starts_with("s3://") {
        let (dest_bucket, key) = crate::plan::inventory::parse_s3_url(manifest_url)?;
        let store = store.ok_or_else(|| Error::Invalid(format!("manifest URL {manifest_url:?}: no S3 client to read it with")))?;
        let source = crate::plan::inventory::ObjectStoreSource::new(store, dest_bucket, handle);
        crate::plan::inventory::Inventory::open(Arc::new(source), &key)
    } else if manifest_url.starts_with("file://") {
        crate::plan::inventory::Inventory::open_url(manifest_url)
    } else {
        Err(Error::Invalid(format!(
            "manifest URL {manifest_url:?}: only file:// (a local copy of the report) and s3:// (the inventory destination bucket) manifests can be read"
        )))
    }
}

/// Opens the report at `manifest_url` ([`open_report`]) and checks that it describes `bucket`.
/// Synchronous (it reads the manifest): call it off the async workers.
pub(crate) fn open_inventory(
    store: Arc<dyn ObjectStore>,
    manifest_url: &str,
    bucket: &str,
    handle: tokio::runtime::Handle,
) -> Result<crate::plan::inventory::Inventory> {
    let inventory = open_report(Some(store), manifest_url, handle)?;
    if inventory.manifest().source_bucket != bucket {
        return Err(Error::Invalid(format!(
            "inventory report {manifest_url} describes bucket {}, not {bucket}",
            inventory.manifest().source_bucket
        )));
    }
    Ok(inventory)
}

/// Opens the report at `manifest_url` for `bucket` (through `store` for `s3://`) and runs `work`
/// on it, off the async workers: reading and sorting a report is CPU-bound and synchronous.
/// `what` names the work in the error if the blocking task itself fails.
pub(crate) async fn with_inventory<T: Send + 'static>(
    store: Arc<dyn ObjectStore>,
    manifest_url: &str,
    bucket: &str,
    what: &'static str,
    work: impl FnOnce(crate::plan::inventory::Inventory) -> Result<T> + Send + 'static,
) -> Result<T> {
    let (url, bucket) = (manifest_url.to_string(), bucket.to_string());
    let handle = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || work(open_inventory(store, &url, &bucket, handle)?))
        .await
        .map_err(|e| Error::port(what, e.to_string(), false))?
}

/// The rows of a report that a seed of `prefix` keeps: every version's (and delete marker's)
/// when the run protects every version, the current objects' otherwise.
pub(crate) fn read_options(prefix: &str, all_versions: bool) -> crate::plan::inventory::ReadOptions {
    crate::plan::inventory::ReadOptions { prefix: (!prefix.is_empty()).then(|| prefix.to_string()), all_versions }
}

pub(crate) use crate::plan::inventory::SUMMARY_SORT_BUDGET;

/// Plans partitions from an S3 Inventory report, checking that it describes `bucket`.
///
/// This is `inventory::plan` (every data file summarised, the summaries merged), the function
/// `tidemark inventory plan` prints, in this one call: the same partitions as the stepwise
/// seeder (`protect::steps`), which summarises one file per invocation.
pub async fn plan_by_inventory(
    store: Arc<dyn ObjectStore>,
    manifest_url: &str,
    bucket: &str,
    prefix: &str,
    targets: PlanTargets,
) -> Result<Vec<Partition>> {
    plan_inventory(store, manifest_url, bucket, read_options(prefix, false), targets).await
}

/// [`plan_by_inventory`] of the rows `read` keeps (every version's, for an all-versions run).
async fn plan_inventory(
    store: Arc<dyn ObjectStore>,
    manifest_url: &str,
    bucket: &str,
    read: crate::plan::inventory::ReadOptions,
    targets: PlanTargets,
) -> Result<Vec<Partition>> {
    let opts = crate::plan::inventory::PlanOptions { targets, read, ..Default::default() };
    with_inventory(store, manifest_url, bucket, "inventory planning", move |inventory| {
        Ok(crate::plan::inventory::plan(&inventory, &opts)?.partitions)
    })
    .await
}

/// The id of the task of `partition` in `run_id`: a function of the run and the bounds, so
/// that re-planning the same report creates nothing twice.
pub fn task_id(run_id: &str, partition: &Partition) -> String {
    stable_id(&[run_id, &partition.start, partition.end.as_deref().unwrap_or("\u{10FFFF}")])
}

/// A new task for `partition` of `run`.
pub(crate) fn new_task(run: &RunRecord, partition: &Partition) -> TaskRecord {
    TaskRecord {
        all_versions: run.all_versions,
        ..TaskRecord::new(task_id(&run.run_id, partition), &run.run_id, &run.source_bucket, &run.prefix, partition.clone())
    }
}

/// The body of the work message of a task.
pub(crate) fn task_message(run_id: &str, task_id: &str) -> String {
    TaskMessage::new(run_id, task_id).body()
}

/// Checks the buckets, marks the source protected and starts a run of `bucket/prefix` in
/// `Planning`, or resumes the unfinished one: the opening shared by one-shot and stepwise seeding.
/// Returns the run's version, the run and whether it was resumed.
pub(crate) async fn begin_run(engine: &Engine, bucket: &str, prefix: &str) -> Result<(u64, RunRecord, bool)> {
    check_buckets(engine, bucket).await?;
    let control = engine.control();
    let now = engine.clock.now();
    control.set_protected(bucket, now).await?;
    crate::protect::lifecycle::protect_again(engine, bucket, now).await?;
    let candidate = RunRecord {
        format_version: crate::control::RECORD_FORMAT_VERSION,
        run_id: new_id(now),
        source_bucket: bucket.into(),
        prefix: prefix.into(),
        vault_bucket: engine.config.vault_bucket.clone(),
        state: RunState::Planning,
        started_at: now,
        finished_at: None,
        tasks: Vec::new(),
        task_count: 0,
        all_versions: engine.config.all_versions,
    };
    control.start_or_resume_run(candidate).await
}

/// Starts or resumes a seed run of `bucket/prefix` and enqueues its unfinished tasks.
#[tracing::instrument(name = "step", skip_all, fields(step = "seed start", source_bucket = %bucket, prefix = %prefix, run_id = tracing::field::Empty))]
pub async fn seed(engine: &Engine, bucket: &str, prefix: &str, source: PlanSource) -> Result<Seeded> {
    let control = engine.control();
    let (mut version, mut run, resumed) = begin_run(engine, bucket, prefix).await?;
    crate::telemetry::record(Some(&run.run_id), None, None, None);
    tracing::info!(resumed, "seed run begun");
    // Recorded before any task is sent, so the run's history begins with its start.
    let input = serde_json::json!({"source_bucket": bucket, "prefix": prefix, "plan": format!("{source:?}")}).to_string();
    crate::history::best_effort("start", crate::history::record_start(engine, &run.run_id, "seed start", &input).await);
    while run.state == RunState::Planning {
        let partitions = match &source {
            PlanSource::Listing(targets) => plan_by_listing(engine, bucket, prefix, *targets).await?,
            PlanSource::Inventory { manifest_url, targets } => {
                let read = read_options(prefix, run.all_versions);
                plan_inventory(engine.source.clone(), manifest_url, bucket, read, *targets).await?
            }
        };
        for p in &partitions {
            control.create_task(&new_task(&run, p)).await?;
        }
        let mut next = run.clone();
        next.task_count = partitions.len() as u64;
        next.state = RunState::Running;
        if control.update_run(version, &next).await? {
            version += 1;
            run = next;
        } else {
            let (v, r) = control.get_run(&run.run_id).await?.ok_or_else(|| Error::corrupt("run", "vanished during planning"))?;
            version = v;
            run = r;
        }
    }
    let _ = version;
    let enqueued = enqueue_unfinished(engine, &run).await?;
    tracing::info!(run_id = %run.run_id, tasks = run.task_total(), enqueued, resumed, "seeded");
    Ok(Seeded { run, resumed, enqueued })
}

/// Sends a message for every task of the run that is not done (duplicates are harmless: leases
/// fence them), interleaved across top-level prefixes.
pub async fn enqueue_unfinished(engine: &Engine, run: &RunRecord) -> Result<usize> {
    let mut tasks = engine.control().tasks(&run.run_id).await?;
    tasks.retain(|t| !t.done);
    tasks.sort_by(|a, b| a.partition.start.cmp(&b.partition.start));
    let partitions: Vec<Partition> = tasks.iter().map(|t| t.partition.clone()).collect();
    let ids = tasks.into_iter().map(|t| t.task_id).collect();
    let order = interleave(&partitions, ids);
    for id in &order {
        engine.queue.send(&engine.queues.work, &task_message(&run.run_id, id), 0).await?;
    }
    Ok(order.len())
}

/// Plans partitions by listing (`listing::plan`): prefixes found with the delimiter are listed
/// in parallel, large ones split as they appear, into bounded summaries merged like a report's.
pub async fn plan_by_listing(engine: &Engine, bucket: &str, prefix: &str, targets: PlanTargets) -> Result<Vec<Partition>> {
    let opts = crate::plan::listing::ListingOptions::new(engine.config.concurrency);
    Ok(crate::plan::listing::plan(engine.source.as_ref(), bucket, prefix, targets, &opts).await?.partitions)
}
