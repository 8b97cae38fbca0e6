//! The seeder: starts (or resumes) a run, plans partitions by listing, creates and enqueues tasks.
//!
//! Planning is resumable: a run stays in `Planning` until its task list is recorded, and task
//! ids are derived from the run and the partition bounds, so a retried seeder creates nothing twice.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::stream::{self, StreamExt, TryStreamExt};

use crate::control::{Counters, RunRecord, RunState, TaskRecord};
use crate::domain::{new_id, stable_id};
use crate::engine::Engine;
use crate::partition::{Partition, PlanTargets, Planner};
use crate::ports::{list_all, ListPage, ObjectStore};
use crate::worker::TaskMessage;
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
    /// The bucket's S3 Inventory report (a `file://` manifest URL for now).
    Inventory { manifest_url: String, targets: PlanTargets },
}

/// Plans partitions from an S3 Inventory report, checking that it describes `bucket`.
///
/// `file://` manifests are read from a local directory standing for the destination bucket;
/// `s3://` manifests through `store` (the S3 port), streamed with bounded ranged reads.
pub async fn plan_by_inventory(
    store: Arc<dyn ObjectStore>,
    manifest_url: &str,
    bucket: &str,
    prefix: &str,
    targets: PlanTargets,
) -> Result<Vec<Partition>> {
    let (url, bucket, prefix) = (manifest_url.to_string(), bucket.to_string(), prefix.to_string());
    let handle = tokio::runtime::Handle::current();
    // Reading and sorting a report is CPU-bound and synchronous: keep it off the async workers.
    tokio::task::spawn_blocking(move || {
        let inventory = if url.starts_with("s3://") {
            let (dest_bucket, key) = crate::inventory::parse_s3_url(&url)?;
            let source = crate::inventory::ObjectStoreSource::new(store, dest_bucket, handle);
            crate::inventory::Inventory::open(Arc::new(source), &key)?
        } else {
            crate::inventory::Inventory::open_url(&url)?
        };
        if inventory.manifest().source_bucket != bucket {
            return Err(Error::Invalid(format!(
                "inventory report {url} describes bucket {}, not {bucket}",
                inventory.manifest().source_bucket
            )));
        }
        let mut opts = crate::inventory::PlanOptions { targets, ..Default::default() };
        if !prefix.is_empty() {
            opts.read.prefix = Some(prefix);
        }
        Ok(crate::inventory::plan(&inventory, &opts)?.partitions)
    })
    .await
    .map_err(|e| Error::port("inventory planning", e.to_string(), false))?
}

/// Starts or resumes a seed run of `bucket/prefix` and enqueues its unfinished tasks.
pub async fn seed(engine: &Engine, bucket: &str, prefix: &str, source: PlanSource) -> Result<Seeded> {
    check_buckets(engine, bucket).await?;
    let control = engine.control();
    let now = engine.clock.now();
    control.set_protected(bucket, now).await?;
    let candidate = RunRecord {
        run_id: new_id(now),
        source_bucket: bucket.into(),
        prefix: prefix.into(),
        vault_bucket: engine.config.vault_bucket.clone(),
        state: RunState::Planning,
        started_at: now,
        finished_at: None,
        tasks: Vec::new(),
    };
    let (mut version, mut run, resumed) = control.start_or_resume_run(candidate).await?;
    while run.state == RunState::Planning {
        let partitions = match &source {
            PlanSource::Listing(targets) => plan_by_listing(engine, bucket, prefix, *targets).await?,
            PlanSource::Inventory { manifest_url, targets } => {
                plan_by_inventory(engine.source.clone(), manifest_url, bucket, prefix, *targets).await?
            }
        };
        let mut ids = Vec::new();
        for p in &partitions {
            let task_id = stable_id(&[&run.run_id, &p.start, p.end.as_deref().unwrap_or("\u{10FFFF}")]);
            let task = TaskRecord {
                task_id: task_id.clone(),
                run_id: run.run_id.clone(),
                source_bucket: bucket.into(),
                prefix: prefix.into(),
                partition: p.clone(),
                done: false,
                cursor: None,
                batch: 0,
                lease_owner: None,
                lease_token: 0,
                lease_expires: None,
                attempts: 0,
                counters: Counters::default(),
            };
            control.create_task(&task).await?;
            ids.push(task_id);
        }
        let mut next = run.clone();
        next.tasks = interleave(&partitions, ids);
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
    tracing::info!(run_id = %run.run_id, tasks = run.tasks.len(), enqueued, resumed, "seeded");
    Ok(Seeded { run, resumed, enqueued })
}

/// Sends a message for every task of the run that is not done (duplicates are harmless: leases fence them).
pub async fn enqueue_unfinished(engine: &Engine, run: &RunRecord) -> Result<usize> {
    let tasks = engine.control().tasks(&run.run_id).await?;
    let done: std::collections::HashSet<&str> = tasks.iter().filter(|t| t.done).map(|t| t.task_id.as_str()).collect();
    let mut n = 0;
    for id in &run.tasks {
        if done.contains(id.as_str()) {
            continue;
        }
        let body = serde_json::to_string(&TaskMessage { run_id: run.run_id.clone(), task_id: id.clone() }).expect("serialises");
        engine.queue.send(&engine.queues.work, &body, 0).await?;
        n += 1;
    }
    Ok(n)
}

/// Orders task ids round-robin across top-level prefixes so one throttled prefix never blocks the queue.
fn interleave(partitions: &[Partition], ids: Vec<String>) -> Vec<String> {
    let mut groups: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (p, id) in partitions.iter().zip(ids) {
        let top = p.start.split('/').next().unwrap_or("").to_string();
        groups.entry(top).or_default().push(id);
    }
    let mut queues: Vec<std::collections::VecDeque<String>> = groups.into_values().map(Into::into).collect();
    let mut out = Vec::new();
    while queues.iter().any(|q| !q.is_empty()) {
        for q in queues.iter_mut() {
            if let Some(id) = q.pop_front() {
                out.push(id);
            }
        }
    }
    out
}

/// Plans partitions by listing: discovers top-level prefixes with the delimiter, lists them in parallel.
pub async fn plan_by_listing(engine: &Engine, bucket: &str, prefix: &str, targets: PlanTargets) -> Result<Vec<Partition>> {
    let top = list_all(engine.source.as_ref(), bucket, prefix, Some("/")).await?;
    let listed: Vec<ListPage> = stream::iter(top.common_prefixes)
        .map(|p| async move { list_all(engine.source.as_ref(), bucket, &p, None).await })
        .buffered(engine.config.concurrency.max(1))
        .try_collect()
        .await?;
    let mut all: Vec<(String, u64)> =
        top.objects.into_iter().chain(listed.into_iter().flat_map(|p| p.objects)).map(|o| (o.key, o.size)).collect();
    all.sort();
    let mut planner = Planner::new(targets);
    for (k, s) in &all {
        planner.push(k, *s)?;
    }
    Ok(planner.finish())
}
