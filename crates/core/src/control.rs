//! Control state over the [`ControlStore`] port: runs, tasks with fenced leases, the segment registry, dedup marks.
//!
//! Every transition is a conditional write (put-if-absent or compare-and-set on the item
//! version), so concurrent workers and retried messages can never both win.

use chrono::{DateTime, Duration, Utc};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::plan::partition::Partition;
use crate::ports::{ControlStore, Item};
use crate::vault::segment::SegmentMeta;
use crate::{Error, Result};

/// Where a seed run is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunState {
    /// The plan is being made; no task exists yet.
    Planning,
    /// Tasks exist and are being worked.
    Running,
    /// Every task is done.
    Complete,
}

/// The format version of the run and task records ([`RunRecord`], [`TaskRecord`], [`SeedPlan`])
/// this code writes. Version 2 adds `format_version` itself; a record without it is version 1
/// (what earlier builds wrote) and reads unchanged, so runs started by an earlier build finish
/// under this one. Readers accept every version up to this one (ARCHITECTURE.md, upgrade rule).
pub const RECORD_FORMAT_VERSION: u32 = 2;

/// A seed run: one full pass over a source bucket (or prefix).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    #[serde(default = "one")]
    pub format_version: u32,
    pub run_id: String,
    pub source_bucket: String,
    pub prefix: String,
    pub vault_bucket: String,
    pub state: RunState,
    pub started_at: DateTime<Utc>,
    #[serde(default)]
    pub finished_at: Option<DateTime<Utc>>,
    /// Task ids of the plan, as runs planned before `task_count` listed them. New runs leave
    /// it empty: an item holding every id breaks DynamoDB's 400 KB limit near 14,000 tasks, and
    /// a run's tasks are queryable under the run anyway.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tasks: Vec<String>,
    /// How many tasks the plan made, once planned.
    #[serde(default)]
    pub task_count: u64,
    /// True when the run captures every version and delete marker, not only current versions.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub all_versions: bool,
}

impl RunRecord {
    /// The number of tasks of the plan, whichever way the run recorded it.
    pub fn task_total(&self) -> u64 {
        self.task_count.max(self.tasks.len() as u64)
    }
}

/// The progress of a run seeded from an inventory report in steps (`protect::steps`): which data
/// files are summarised, and how far the plan got in creating and enqueueing tasks.
///
/// One item per run, changed only by compare-and-set, so concurrent and retried steps agree.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeedPlan {
    #[serde(default = "one")]
    pub format_version: u32,
    pub manifest_url: String,
    /// Data files of the report.
    pub files: usize,
    /// The bound of each file's summary (a function of `files`, fixed for the run).
    pub max_samples: usize,
    pub target_objects: u64,
    pub target_bytes: u64,
    /// Summarise messages sent so far (files `0..files_enqueued`).
    pub files_enqueued: usize,
    /// One bit per data file, set once its summary is stored, as hexadecimal.
    pub summarised: String,
    /// True once the plan message was sent after the last file was summarised.
    pub plan_enqueued: bool,
    /// Tasks of the plan, once planned, and how many of them (in the enqueue order) were
    /// created and enqueued so far.
    #[serde(default)]
    pub tasks_total: Option<u64>,
    #[serde(default)]
    pub tasks_enqueued: u64,
}

impl SeedPlan {
    /// A new plan of `files` data files with nothing done.
    pub fn new(manifest_url: &str, files: usize, max_samples: usize, target_objects: u64, target_bytes: u64) -> Self {
        SeedPlan {
            format_version: RECORD_FORMAT_VERSION,
            manifest_url: manifest_url.into(),
            files,
            max_samples,
            target_objects,
            target_bytes,
            files_enqueued: 0,
            summarised: "00".repeat(files.div_ceil(8)),
            plan_enqueued: false,
            tasks_total: None,
            tasks_enqueued: 0,
        }
    }

    fn bits(&self) -> Vec<u8> {
        hex::decode(&self.summarised).unwrap_or_default()
    }

    /// True if data file `i` is summarised.
    pub fn is_summarised(&self, i: usize) -> bool {
        self.bits().get(i / 8).is_some_and(|b| b & (1 << (i % 8)) != 0)
    }

    /// Marks data file `i` summarised.
    pub fn set_summarised(&mut self, i: usize) {
        let mut bits = self.bits();
        bits.resize(self.files.div_ceil(8), 0);
        if let Some(b) = bits.get_mut(i / 8) {
            *b |= 1 << (i % 8);
        }
        self.summarised = hex::encode(bits);
    }

    /// How many data files are summarised.
    pub fn summarised_count(&self) -> usize {
        (0..self.files).filter(|&i| self.is_summarised(i)).count()
    }
}

/// Counters a task accumulates.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counters {
    pub objects: u64,
    pub bytes: u64,
    pub packs: u64,
    pub large_objects: u64,
    /// Objects listed but gone before they could be read: deleted in between, not a failure.
    pub vanished: u64,
    pub failed: u64,
    pub vault_requests: u64,
    pub source_requests: u64,
    /// Restored objects whose written bytes a checksum S3 accepted, or a check after writing, confirmed.
    #[serde(default)]
    pub verified: u64,
    /// Restored keys whose target already held their state at T (rollback), left untouched.
    #[serde(default)]
    pub unchanged: u64,
    /// Keys a restore deleted from the target (rollback with delete-newer).
    #[serde(default)]
    pub deleted: u64,
    /// Requests a restore sent to its target.
    #[serde(default)]
    pub target_requests: u64,
    /// Attributes a restore could not write (each object's, counted one by one).
    #[serde(default)]
    pub attributes_not_applied: u64,
    /// Keys a restore could not restore because the vault does not hold their state at T.
    #[serde(default)]
    pub unprotected: u64,
    /// Objects found in an archive tier: recorded as archived, their bytes not captured.
    #[serde(default)]
    pub archived: u64,
}

impl Counters {
    /// Adds another set of counters to this one.
    pub fn add(&mut self, o: &Counters) {
        self.objects += o.objects;
        self.bytes += o.bytes;
        self.packs += o.packs;
        self.large_objects += o.large_objects;
        self.vanished += o.vanished;
        self.failed += o.failed;
        self.vault_requests += o.vault_requests;
        self.source_requests += o.source_requests;
        self.verified += o.verified;
        self.unchanged += o.unchanged;
        self.deleted += o.deleted;
        self.target_requests += o.target_requests;
        self.attributes_not_applied += o.attributes_not_applied;
        self.unprotected += o.unprotected;
        self.archived += o.archived;
    }
}

/// A task: one partition of a run, with its resumable cursor and lease.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskRecord {
    #[serde(default = "one")]
    pub format_version: u32,
    pub task_id: String,
    pub run_id: String,
    pub source_bucket: String,
    pub prefix: String,
    pub partition: Partition,
    pub done: bool,
    /// The last key already captured; the task resumes after it.
    pub cursor: Option<String>,
    /// Number of batches finished.
    pub batch: u32,
    pub lease_owner: Option<String>,
    /// Fencing token: increases with every claim.
    pub lease_token: u64,
    pub lease_expires: Option<DateTime<Utc>>,
    pub attempts: u32,
    pub counters: Counters,
    /// Where to start reading large index segments (a restore task's range starts inside them),
    /// by segment key; empty for seed tasks.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub offsets: std::collections::BTreeMap<String, u64>,
    /// Capture every version and delete marker of the partition (the run's `all_versions`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub all_versions: bool,
}

impl TaskRecord {
    /// A new task of `run_id` over `partition`: not started, unleased, nothing counted.
    pub fn new(task_id: String, run_id: &str, source_bucket: &str, prefix: &str, partition: Partition) -> Self {
        TaskRecord {
            format_version: RECORD_FORMAT_VERSION,
            task_id,
            run_id: run_id.into(),
            source_bucket: source_bucket.into(),
            prefix: prefix.into(),
            partition,
            done: false,
            cursor: None,
            batch: 0,
            lease_owner: None,
            lease_token: 0,
            lease_expires: None,
            attempts: 0,
            counters: Counters::default(),
            offsets: Default::default(),
            all_versions: false,
        }
    }
}

/// The format version of [`SourceState`] records this code writes; it reads this one and every
/// earlier one (a record without the field is version 1).
pub const SOURCE_STATE_VERSION: u32 = 1;

/// Where the protection of a source (a bucket, or a seeded prefix of it) stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Lifecycle {
    /// Protected and present.
    Protected,
    /// Deleted by design (the bucket does not exist, or the prefix holds no objects): nothing
    /// more to capture, every point up to `since` stays restorable.
    Gone,
    /// Protection ended on purpose (`tidemark unprotect`): its changes are ignored, its points kept.
    Unprotected,
}

/// The recorded lifecycle of a source: what it is, since when, and why.
///
/// Kept in the control table (one item per bucket and prefix) and, for every transition, as a
/// small immutable JSON object in the vault beside the points (`v1/<bucket>/lifecycle/`), so the
/// vault alone still says when a source went away.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SourceState {
    #[serde(default = "one")]
    pub format_version: u32,
    pub bucket: String,
    /// Empty for the whole bucket.
    #[serde(default)]
    pub prefix: String,
    pub state: Lifecycle,
    /// When the state was first observed (for `gone`, an upper bound of the deletion).
    pub since: DateTime<Utc>,
    pub reason: String,
    /// The latest recovery point when the state began, if any.
    #[serde(default)]
    pub last_point: Option<DateTime<Utc>>,
}

fn one() -> u32 {
    1
}

/// One registered segment with the cursor its batch reached (seed) — the exactly-once fence.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SegmentSlot {
    pub meta: SegmentMeta,
    #[serde(default)]
    pub end_cursor: Option<String>,
    #[serde(default)]
    pub counters: Counters,
}

/// A registry slot as stored, with the compaction marker: a compacted segment's slot names the
/// segments it replaces. New recovery points list the compacted segment instead of those; the
/// replaced segments stay in the vault untouched, so older points that name them still restore.
/// Plain slots have no `replaces` field, so every existing reader of [`SegmentSlot`] still parses
/// them (and reads a compacted slot as an ordinary one).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RegistrySlot {
    #[serde(flatten)]
    pub slot: SegmentSlot,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub replaces: Vec<String>,
}

/// Drops the slots that a registered compacted segment replaces.
///
/// Registering the compacted slot is the single commit point of a compaction: before it, the
/// small segments are live; after it, the compacted one is. A compaction that died before
/// registering leaves an unreferenced segment behind and changes nothing.
pub fn live(slots: Vec<RegistrySlot>) -> Vec<SegmentSlot> {
    let replaced: std::collections::HashSet<String> = slots.iter().flat_map(|s| s.replaces.iter().cloned()).collect();
    slots.into_iter().filter(|s| !replaced.contains(&s.slot.meta.key)).map(|s| s.slot).collect()
}

/// A key whose change could not be captured, as the control store keeps it (one item per key of
/// a source bucket): recovery points name it as unprotected until a later capture settles it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailureRecord {
    pub key: String,
    pub reason: String,
    /// The time of the change that could not be captured (an event's time; a seed batch's time).
    pub since: DateTime<Utc>,
    /// What failed to capture it: `seed`, `delta` or `reconcile`.
    pub origin: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
    /// The version that could not be captured, when the change named one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version_id: Option<String>,
    /// The ETag of the object that could not be captured, when the change named one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
    /// The event time of the first capture of the key after the failure: the state from then
    /// on is known again, the state between `since` and `until` is not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<DateTime<Utc>>,
    /// True once the change that failed was captured after all (a retry that worked): nothing
    /// is missing any more.
    #[serde(default)]
    pub resolved: bool,
}

impl FailureRecord {
    /// An open failure of `key` (of `version_id`, when known) from `origin` at `since`.
    pub fn new(key: &str, version_id: Option<&str>, reason: &str, since: DateTime<Utc>, origin: &str) -> Self {
        FailureRecord {
            key: key.into(),
            reason: reason.into(),
            since,
            origin: origin.into(),
            run_id: None,
            version_id: version_id.map(String::from),
            etag: None,
            until: None,
            resolved: false,
        }
    }

    /// True while no later capture of the key has succeeded.
    pub fn is_open(&self) -> bool {
        !self.resolved && self.until.is_none()
    }
}

/// What a registered segment captured of one key, for settling failures ([`captured_facts`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CapturedFact {
    pub time: DateTime<Utc>,
    pub version_id: Option<String>,
    pub etag: Option<String>,
    /// A put whose bytes are in the vault (not an attribute change or an archived placeholder).
    pub bytes: bool,
}

/// The facts `records` capture, by key: puts with their bytes, delete markers, deletes and
/// purges (attribute changes and archived placeholders carry no state of their own).
pub fn captured_facts(records: &[crate::domain::CaptureRecord]) -> std::collections::HashMap<String, Vec<CapturedFact>> {
    use crate::domain::CaptureKind;
    let mut out: std::collections::HashMap<String, Vec<CapturedFact>> = std::collections::HashMap::new();
    for r in records.iter().filter(|r| r.kind != CaptureKind::Put || r.location.is_some()) {
        out.entry(r.key.clone()).or_default().push(CapturedFact {
            time: r.event_time,
            version_id: r.version_id.clone(),
            etag: r.etag.clone(),
            bytes: r.kind == CaptureKind::Put,
        });
    }
    out
}

impl FailureRecord {
    /// Settles this failure with what a segment captured of its key: resolved if the change that
    /// failed is among it (its version, or its ETag no later than the failure), otherwise its
    /// unknown range ends at the first later fact. Returns whether anything changed.
    fn settle(&mut self, facts: &[CapturedFact]) -> bool {
        let since = self.since.timestamp();
        let same = |f: &CapturedFact| match (&self.version_id, &self.etag) {
            (Some(v), _) => f.version_id.as_ref() == Some(v),
            (None, Some(e)) => f.etag.as_ref() == Some(e) && f.time.timestamp() <= since,
            (None, None) => f.time.timestamp() <= since,
        };
        if facts.iter().any(|f| f.bytes && same(f)) {
            self.resolved = true;
            return true;
        }
        match facts.iter().map(|f| f.time).filter(|t| t.timestamp() > since).min() {
            Some(t) => {
                self.until = Some(t);
                true
            }
            None => false,
        }
    }
}

/// A held lease: the item version to compare against and the fencing token.
#[derive(Debug, Clone)]
pub struct Lease {
    pub version: u64,
    pub token: u64,
    pub task: TaskRecord,
}

/// Typed access to the control store.
pub struct Control<'a> {
    pub store: &'a dyn ControlStore,
    pub vault: &'a str,
}

fn parse<T: DeserializeOwned>(item: &Item) -> Result<T> {
    // A record of a newer format than this build knows is the upgrade rule broken (a writer
    // deployed before its readers): retried, so that an upgraded reader takes it, never misread.
    if let Some(v) = newer_format(&item.body) {
        return Err(Error::port(
            format!("reading control item {}/{}", item.pk, item.sk),
            format!("format version {v} is newer than this build reads ({RECORD_FORMAT_VERSION}); upgrade the readers first"),
            true,
        ));
    }
    serde_json::from_str(&item.body).map_err(|e| Error::corrupt(format!("control item {}/{}", item.pk, item.sk), e.to_string()))
}

/// The `format_version` of a record body, if it is newer than [`RECORD_FORMAT_VERSION`].
fn newer_format(body: &str) -> Option<u64> {
    // Cheap first: most bodies name no format version above the current one.
    let at = body.find("\"format_version\":")?;
    let digits: String = body[at + 17..].chars().skip_while(|c| c.is_whitespace()).take_while(|c| c.is_ascii_digit()).collect();
    digits.parse::<u64>().ok().filter(|v| *v > u64::from(RECORD_FORMAT_VERSION))
}

fn body<T: Serialize>(v: &T) -> String {
    serde_json::to_string(v).expect("control record serialises")
}

impl<'a> Control<'a> {
    /// Typed access for one vault.
    pub fn new(store: &'a dyn ControlStore, vault: &'a str) -> Self {
        Control { store, vault }
    }

    fn run_pk(run_id: &str) -> String {
        format!("run#{run_id}")
    }

    fn source_pk(&self, bucket: &str) -> String {
        format!("source#{}#{bucket}", self.vault)
    }

    fn segments_pk(&self, bucket: &str) -> String {
        format!("segments#{}#{bucket}", self.vault)
    }

    /// The unfinished seed run for a source and prefix, if any.
    pub async fn active_run(&self, bucket: &str, prefix: &str) -> Result<Option<(u64, RunRecord)>> {
        let Some(ptr) = self.store.get(&self.source_pk(bucket), &format!("active-run#{prefix}")).await? else {
            return Ok(None);
        };
        let run_id: String = parse(&ptr)?;
        Ok(self.get_run(&run_id).await?.filter(|(_, r)| r.state != RunState::Complete))
    }

    /// Every unfinished seed run of a source, whatever prefix it seeds.
    pub async fn active_runs(&self, bucket: &str) -> Result<Vec<RunRecord>> {
        let mut out = Vec::new();
        for ptr in self.store.query(&self.source_pk(bucket), "active-run#").await? {
            let run_id: String = parse(&ptr)?;
            if let Some((_, run)) = self.get_run(&run_id).await?.filter(|(_, r)| r.state != RunState::Complete) {
                out.push(run);
            }
        }
        Ok(out)
    }

    /// Starts a new run, or returns the unfinished one for this source and prefix (resume).
    pub async fn start_or_resume_run(&self, candidate: RunRecord) -> Result<(u64, RunRecord, bool)> {
        loop {
            if let Some((v, run)) = self.active_run(&candidate.source_bucket, &candidate.prefix).await? {
                return Ok((v, run, true));
            }
            let pk = self.source_pk(&candidate.source_bucket);
            let sk = format!("active-run#{}", candidate.prefix);
            self.store.put_new(&Self::run_pk(&candidate.run_id), "run", &body(&candidate), None).await?;
            let won = match self.store.get(&pk, &sk).await? {
                None => self.store.put_new(&pk, &sk, &body(&candidate.run_id), None).await?,
                Some(item) => self.store.replace(&pk, &sk, item.version, &body(&candidate.run_id)).await?,
            };
            if won {
                let (v, run) = self.get_run(&candidate.run_id).await?.ok_or_else(|| Error::corrupt("run", "vanished after creation"))?;
                return Ok((v, run, false));
            }
        }
    }

    /// Reads a run.
    pub async fn get_run(&self, run_id: &str) -> Result<Option<(u64, RunRecord)>> {
        match self.store.get(&Self::run_pk(run_id), "run").await? {
            None => Ok(None),
            Some(item) => Ok(Some((item.version, parse(&item)?))),
        }
    }

    /// Replaces a run if nobody changed it since `version`.
    pub async fn update_run(&self, version: u64, run: &RunRecord) -> Result<bool> {
        self.store.replace(&Self::run_pk(&run.run_id), "run", version, &body(run)).await
    }

    /// Records a run's stepwise plan unless one exists; returns the one stored (with its version).
    pub async fn create_seed_plan(&self, run_id: &str, plan: &SeedPlan) -> Result<(u64, SeedPlan)> {
        self.store.put_new(&Self::run_pk(run_id), "seed-plan", &body(plan), None).await?;
        self.seed_plan(run_id).await?.ok_or_else(|| Error::corrupt("seed plan", format!("run {run_id}: vanished after creation")))
    }

    /// Reads a run's stepwise plan.
    pub async fn seed_plan(&self, run_id: &str) -> Result<Option<(u64, SeedPlan)>> {
        match self.store.get(&Self::run_pk(run_id), "seed-plan").await? {
            None => Ok(None),
            Some(item) => Ok(Some((item.version, parse(&item)?))),
        }
    }

    /// Replaces a run's stepwise plan if nobody changed it since `version`.
    pub async fn update_seed_plan(&self, run_id: &str, version: u64, plan: &SeedPlan) -> Result<bool> {
        self.store.replace(&Self::run_pk(run_id), "seed-plan", version, &body(plan)).await
    }

    /// All runs of a source bucket that the active-run pointer ever named are not indexed; this lists a run's tasks.
    pub async fn tasks(&self, run_id: &str) -> Result<Vec<TaskRecord>> {
        self.store.query(&Self::run_pk(run_id), "task#").await?.iter().map(parse).collect()
    }

    /// Creates a task unless it exists (plans are deterministic, so re-planning creates nothing twice).
    pub async fn create_task(&self, task: &TaskRecord) -> Result<bool> {
        self.store.put_new(&Self::run_pk(&task.run_id), &format!("task#{}", task.task_id), &body(task), None).await
    }

    /// Reads a task.
    pub async fn get_task(&self, run_id: &str, task_id: &str) -> Result<Option<(u64, TaskRecord)>> {
        match self.store.get(&Self::run_pk(run_id), &format!("task#{task_id}")).await? {
            None => Ok(None),
            Some(item) => Ok(Some((item.version, parse(&item)?))),
        }
    }

    /// Claims a task's lease. `Ok(None)` means it is done or another live worker holds it.
    pub async fn claim(&self, run_id: &str, task_id: &str, owner: &str, now: DateTime<Utc>, lease_seconds: i64) -> Result<Option<Lease>> {
        let Some((version, mut task)) = self.get_task(run_id, task_id).await? else {
            return Err(Error::Invalid(format!("task {task_id} of run {run_id} does not exist")));
        };
        if task.done {
            return Ok(None);
        }
        let held = task.lease_owner.as_deref().is_some_and(|o| o != owner) && task.lease_expires.is_some_and(|e| e > now);
        if held {
            return Ok(None);
        }
        task.lease_owner = Some(owner.into());
        task.lease_token += 1;
        task.lease_expires = Some(now + Duration::seconds(lease_seconds));
        task.attempts += 1;
        if !self.store.replace(&Self::run_pk(run_id), &format!("task#{task_id}"), version, &body(&task)).await? {
            return Ok(None);
        }
        Ok(Some(Lease { version: version + 1, token: task.lease_token, task }))
    }

    /// Writes the lease's task state back (checkpoint, renewal or completion), fenced by the lease.
    pub async fn commit(&self, lease: &mut Lease, now: DateTime<Utc>, lease_seconds: i64) -> Result<()> {
        lease.task.lease_expires = Some(now + Duration::seconds(lease_seconds));
        let pk = Self::run_pk(&lease.task.run_id);
        let sk = format!("task#{}", lease.task.task_id);
        if self.store.replace(&pk, &sk, lease.version, &body(&lease.task)).await? {
            lease.version += 1;
            Ok(())
        } else {
            Err(Error::LeaseLost { task_id: lease.task.task_id.clone() })
        }
    }

    /// Registers a segment under a slot name exactly once; returns the slot that won.
    pub async fn register_segment(&self, bucket: &str, slot_name: &str, slot: &SegmentSlot) -> Result<SegmentSlot> {
        let pk = self.segments_pk(bucket);
        if self.store.put_new(&pk, slot_name, &body(slot), None).await? {
            return Ok(slot.clone());
        }
        self.segment_slot(bucket, slot_name).await?.ok_or_else(|| Error::corrupt("segment registry", format!("{slot_name} vanished")))
    }

    /// Reads one registry slot.
    pub async fn segment_slot(&self, bucket: &str, slot_name: &str) -> Result<Option<SegmentSlot>> {
        match self.store.get(&self.segments_pk(bucket), slot_name).await? {
            None => Ok(None),
            Some(item) => Ok(Some(parse(&item)?)),
        }
    }

    /// Every registered segment of a source bucket.
    pub async fn segments(&self, bucket: &str) -> Result<Vec<SegmentSlot>> {
        self.store.query(&self.segments_pk(bucket), "").await?.iter().map(parse).collect()
    }

    /// The registered segments that new recovery points list: every slot except those a
    /// compacted segment replaces (transitively, since a compacted segment can itself be compacted).
    pub async fn live_segments(&self, bucket: &str) -> Result<Vec<SegmentSlot>> {
        Ok(live(self.registry(bucket).await?))
    }

    /// Every registry slot of a source bucket with its compaction marker.
    pub async fn registry(&self, bucket: &str) -> Result<Vec<RegistrySlot>> {
        self.store.query(&self.segments_pk(bucket), "").await?.iter().map(parse).collect()
    }

    /// Registers a compacted segment under its slot name exactly once; returns the slot that won.
    pub async fn register_compacted(&self, bucket: &str, slot_name: &str, slot: &RegistrySlot) -> Result<RegistrySlot> {
        let pk = self.segments_pk(bucket);
        if self.store.put_new(&pk, slot_name, &body(slot), None).await? {
            return Ok(slot.clone());
        }
        match self.store.get(&pk, slot_name).await? {
            Some(item) => parse(&item),
            None => Err(Error::corrupt("segment registry", format!("{slot_name} vanished"))),
        }
    }

    fn failures_pk(&self, bucket: &str) -> String {
        format!("failures#{}#{bucket}", self.vault)
    }

    /// Every failure ever recorded for a source bucket that is not fully resolved, by key.
    pub async fn failures(&self, bucket: &str) -> Result<Vec<(u64, FailureRecord)>> {
        let items = self.store.query(&self.failures_pk(bucket), "").await?;
        items.iter().map(|i| Ok((i.version, parse::<FailureRecord>(i)?))).filter(|r| !matches!(r, Ok((_, f)) if f.resolved)).collect()
    }

    /// Records failures of keys of `bucket`: a key without an unsettled failure gets this one;
    /// a key whose failure is still open keeps its earlier one (the state is unknown from then).
    /// Seed failures are also kept on their run ([`Control::run_failures`]).
    pub async fn record_failures(&self, bucket: &str, failures: &[FailureRecord]) -> Result<()> {
        let pk = self.failures_pk(bucket);
        for f in failures {
            loop {
                let won = match self.store.get(&pk, &f.key).await? {
                    None => self.store.put_new(&pk, &f.key, &body(f), None).await?,
                    Some(item) => {
                        let old: FailureRecord = parse(&item)?;
                        if old.is_open() {
                            break;
                        }
                        self.store.replace(&pk, &f.key, item.version, &body(f)).await?
                    }
                };
                if won {
                    break;
                }
            }
            if let Some(run) = &f.run_id {
                let sk = format!("failure#{}", f.key);
                self.store.put_markers(&Self::run_pk(run), &[sk], &body(f), None).await?;
            }
        }
        Ok(())
    }

    /// Settles the open failures of keys that a registered segment captured (`captured`, from
    /// [`captured_facts`]; see [`FailureRecord`]).
    pub async fn settle_failures(&self, bucket: &str, captured: &std::collections::HashMap<String, Vec<CapturedFact>>) -> Result<()> {
        if captured.is_empty() {
            return Ok(());
        }
        let pk = self.failures_pk(bucket);
        for (version, mut f) in self.failures(bucket).await? {
            let Some(facts) = captured.get(&f.key).filter(|_| f.is_open()) else { continue };
            // A lost race means another capture settled it first; either settles it.
            if f.settle(facts) {
                self.store.replace(&pk, &f.key, version, &body(&f)).await?;
            }
        }
        Ok(())
    }

    /// The failures kept on a seed run: (key, reason), in key order.
    pub async fn run_failures(&self, run_id: &str) -> Result<Vec<FailureRecord>> {
        self.store.query(&Self::run_pk(run_id), "failure#").await?.iter().map(parse).collect()
    }

    /// The latest seed run of a source and prefix, finished or not.
    pub async fn latest_run(&self, bucket: &str, prefix: &str) -> Result<Option<RunRecord>> {
        let Some(ptr) = self.store.get(&self.source_pk(bucket), &format!("active-run#{prefix}")).await? else {
            return Ok(None);
        };
        let run_id: String = parse(&ptr)?;
        Ok(self.get_run(&run_id).await?.map(|(_, r)| r))
    }

    /// When the bucket was first protected, if it is.
    /// A bucket unprotected on purpose (`tidemark unprotect`) is not protected, until protected again.
    pub async fn protected_since(&self, bucket: &str) -> Result<Option<DateTime<Utc>>> {
        if self.source_state(bucket, "").await?.is_some_and(|(_, s)| s.state == Lifecycle::Unprotected) {
            return Ok(None);
        }
        match self.store.get(&self.source_pk(bucket), "protected").await? {
            None => Ok(None),
            Some(item) => Ok(Some(parse(&item)?)),
        }
    }

    fn seen_pk(&self, bucket: &str) -> String {
        format!("seen#{}#{bucket}", self.vault)
    }

    /// Marks changes as captured (duplicate deliveries of them are dropped until `expires_at`).
    pub async fn mark_seen_many(&self, bucket: &str, identities: &[String], expires_at: i64) -> Result<()> {
        let ids: Vec<String> = identities.iter().map(|i| crate::domain::stable_id(&[i])).collect();
        self.store.put_markers(&self.seen_pk(bucket), &ids, "1", Some(expires_at)).await
    }

    /// Which of these changes were already captured.
    pub async fn seen_among(&self, bucket: &str, identities: &[String]) -> Result<std::collections::HashSet<String>> {
        let by_id: std::collections::HashMap<String, &String> = identities.iter().map(|i| (crate::domain::stable_id(&[i]), i)).collect();
        let ids: Vec<String> = by_id.keys().cloned().collect();
        let found = self.store.get_many(&self.seen_pk(bucket), &ids).await?;
        Ok(found.iter().filter_map(|item| by_id.get(&item.sk).map(|i| (*i).clone())).collect())
    }

    /// Records that a bucket is protected (the delta handler refuses events of other buckets).
    pub async fn set_protected(&self, bucket: &str, since: DateTime<Utc>) -> Result<()> {
        self.store.put_new(&self.source_pk(bucket), "protected", &body(&since), None).await?;
        Ok(())
    }

    /// The recorded lifecycle of a source (`prefix` empty for the whole bucket), if any transition was recorded.
    pub async fn source_state(&self, bucket: &str, prefix: &str) -> Result<Option<(u64, SourceState)>> {
        match self.store.get(&self.source_pk(bucket), &format!("lifecycle#{prefix}")).await? {
            None => Ok(None),
            Some(item) => Ok(Some((item.version, parse(&item)?))),
        }
    }

    /// Every recorded lifecycle of a bucket and its prefixes, the bucket's first.
    pub async fn source_states(&self, bucket: &str) -> Result<Vec<SourceState>> {
        self.store.query(&self.source_pk(bucket), "lifecycle#").await?.iter().map(parse).collect()
    }

    /// Records a source's lifecycle, replacing the one read at `version` (`None`: none was
    /// recorded). Returns false when another writer changed it first.
    pub async fn put_source_state(&self, version: Option<u64>, state: &SourceState) -> Result<bool> {
        let (pk, sk) = (self.source_pk(&state.bucket), format!("lifecycle#{}", state.prefix));
        match version {
            None => self.store.put_new(&pk, &sk, &body(state), None).await,
            Some(v) => self.store.replace(&pk, &sk, v, &body(state)).await,
        }
    }

    /// The prefixes of a bucket that seed runs covered (the active-run pointers), whole bucket included.
    pub async fn seeded_prefixes(&self, bucket: &str) -> Result<Vec<String>> {
        let items = self.store.query(&self.source_pk(bucket), "active-run#").await?;
        Ok(items.iter().filter_map(|i| i.sk.strip_prefix("active-run#").map(str::to_string)).collect())
    }

    /// True if a bucket is protected into this vault.
    pub async fn is_protected(&self, bucket: &str) -> Result<bool> {
        Ok(self.store.get(&self.source_pk(bucket), "protected").await?.is_some())
    }
}
