//! The delta handler: turns a batch of S3 change events into capture records, exactly once in effect.
//!
//! Duplicates (same key, version, ETag, sequencer and kind) are dropped within a batch and across
//! batches (a `seen` mark per change, written only after its segment is registered). A put is
//! captured from the exact version (versioned buckets) or from the current object if its ETag still
//! matches the event (a newer write wins and arrives through its own event). Malformed messages
//! and events for buckets this vault does not protect are reported as failures, so SQS retries
//! and then dead-letters them without blocking the rest of the batch.

use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::{DateTime, Duration, Utc};

use crate::capture::{capture_batch, describe, CaptureItem};
use crate::changes::events::{key_candidates, parse_change, ChangeEvent, ChangeKind};
use crate::control::{captured_facts, Counters, FailureRecord};
use crate::domain::CaptureRecord;
use crate::domain::ObjectInfo;
use crate::engine::Engine;
use crate::ports::{key_versions, ObjectStore};
use crate::scheduler::source::PacedStore;
use crate::vault::segment::{SegmentKind, SegmentMeta};
use crate::Result;

/// One message of a delta batch.
#[derive(Debug, Clone)]
pub struct DeltaMessage {
    pub id: String,
    pub body: String,
}

/// What a delta batch did.
#[derive(Debug, Clone, Default)]
pub struct DeltaReport {
    /// Puts captured.
    pub captured: u64,
    /// Deletes recorded (delete markers, unversioned deletes and permanent deletes of versions).
    pub deleted: u64,
    /// Attribute changes recorded (tags, ACL, storage class).
    pub attributes: u64,
    /// Events of types tidemark does not capture.
    pub ignored: u64,
    /// Changes already captured before (duplicate deliveries).
    pub duplicates: u64,
    /// Creates whose object was already gone or replaced when fetched (a later event covers them).
    pub superseded: u64,
    /// Messages that could not be handled, with the reason; they are left for retry and dead-lettering.
    pub failed: Vec<(String, String)>,
    /// Failed messages by source bucket (`ChangesFailed`); a message that names no bucket this
    /// vault protects counts under the bucket it names, a malformed one under the empty name.
    pub failed_by_bucket: BTreeMap<String, u64>,
    pub segment: Option<SegmentMeta>,
    pub counters: Counters,
}

impl DeltaReport {
    /// Adds another batch's report to this one (the totals of a drain).
    pub fn absorb(&mut self, other: DeltaReport) {
        self.captured += other.captured;
        self.deleted += other.deleted;
        self.attributes += other.attributes;
        self.ignored += other.ignored;
        self.duplicates += other.duplicates;
        self.superseded += other.superseded;
        self.failed.extend(other.failed);
        for (b, n) in other.failed_by_bucket {
            *self.failed_by_bucket.entry(b).or_default() += n;
        }
        self.counters.add(&other.counters);
    }

    fn fail(&mut self, bucket: &str, id: &str, reason: String) {
        self.failed.push((id.to_string(), reason));
        *self.failed_by_bucket.entry(bucket.to_string()).or_default() += 1;
    }
}

/// How long dedup marks live: longer than EventBridge's 24-hour retry window.
const SEEN_TTL_DAYS: i64 = 7;

/// One change to capture: the message it came in and its dedup identity.
struct Change {
    message_id: String,
    identity: String,
    event: ChangeEvent,
}

/// Handles one batch of delta messages.
///
/// A change that cannot be captured (its object cannot be read for good: access denied, a KMS
/// key the role may not use) is never marked seen: its message is reported failed with the
/// reason, so the queue retries it and then dead-letters it, and its key is recorded as a
/// failure of the bucket, which recovery points name as unprotected until a later capture of
/// the key settles it.
pub async fn process_batch(engine: &Engine, messages: &[DeltaMessage]) -> Result<DeltaReport> {
    let control = engine.control();
    let mut report = DeltaReport::default();
    let mut protected: HashMap<String, Option<DateTime<Utc>>> = HashMap::new();
    let mut batch_ids = HashSet::new();
    let mut changes: Vec<Change> = Vec::new();
    for m in messages {
        let ev = match parse_change(&m.body) {
            Ok(Some(ev)) => ev,
            Ok(None) => {
                report.ignored += 1;
                continue;
            }
            Err(e) => {
                tracing::warn!(message_id = %m.id, reason = %e, "malformed delta message");
                report.fail("", &m.id, e.to_string());
                continue;
            }
        };
        let since = match protected.get(&ev.bucket) {
            Some(k) => *k,
            None => {
                let k = control.protected_since(&ev.bucket).await?;
                protected.insert(ev.bucket.clone(), k);
                k
            }
        };
        if since.is_none() && control.is_protected(&ev.bucket).await? {
            // Unprotected on purpose (`tidemark unprotect`): its events are dropped, not failed.
            report.ignored += 1;
            continue;
        }
        if since.is_none() {
            let reason = format!("event for bucket {} which this vault ({}) does not protect", ev.bucket, engine.config.vault_bucket);
            tracing::warn!(message_id = %m.id, %reason, "unknown bucket");
            report.fail(&ev.bucket, &m.id, reason);
            continue;
        }
        let identity = ev.identity();
        if !batch_ids.insert(identity.clone()) {
            report.duplicates += 1;
            continue;
        }
        changes.push(Change { message_id: m.id.clone(), identity, event: ev });
    }
    // Group by bucket: each bucket's changes go into its own segment. Seen marks are read and
    // written per bucket in batches: a batch of 100 changes costs a handful of requests, not 200.
    let mut by_bucket: HashMap<String, Vec<Change>> = HashMap::new();
    for c in changes {
        by_bucket.entry(c.event.bucket.clone()).or_default().push(c);
    }
    for (bucket, evs) in by_bucket {
        let identities: Vec<String> = evs.iter().map(|c| c.identity.clone()).collect();
        let seen = control.seen_among(&bucket, &identities).await?;
        let fresh: Vec<Change> = evs.into_iter().filter(|c| !seen.contains(&c.identity)).collect();
        report.duplicates += (identities.len() - fresh.len()) as u64;
        if fresh.is_empty() {
            continue;
        }
        let since = protected.get(&bucket).copied().flatten().unwrap_or(DateTime::<Utc>::MIN_UTC);
        let failed = capture_bucket_changes(engine, &bucket, since, &fresh, &mut report).await?;
        let failures: Vec<FailureRecord> = fresh
            .iter()
            .filter_map(|c| failed.get(&c.message_id).map(|reason| (c, reason)))
            .map(|(c, reason)| FailureRecord {
                etag: c.event.etag.clone(),
                ..FailureRecord::new(&c.event.key, c.event.version_id.as_deref(), reason, c.event.time, "delta")
            })
            .collect();
        control.record_failures(&bucket, &failures).await?;
        for (id, reason) in &failed {
            tracing::warn!(message_id = %id, %bucket, %reason, "change could not be captured; it will be retried, then dead-lettered");
            report.fail(&bucket, id, reason.clone());
        }
        let done: Vec<String> = fresh.into_iter().filter(|c| !failed.contains_key(&c.message_id)).map(|c| c.identity).collect();
        let expires = (engine.clock.now() + Duration::days(SEEN_TTL_DAYS)).timestamp();
        control.mark_seen_many(&bucket, &done, expires).await?;
    }
    Ok(report)
}

/// Captures one bucket's changes into one registered segment; returns the messages whose change
/// could not be captured, with the reason.
async fn capture_bucket_changes(
    engine: &Engine,
    bucket: &str,
    protected_since: DateTime<Utc>,
    changes: &[Change],
    report: &mut DeltaReport,
) -> Result<BTreeMap<String, String>> {
    let now = engine.clock.now();
    // Unpaced (changes are not scheduled per prefix), but throttled reads are retried alike.
    let source = PacedStore::new(engine.source.clone());
    let mut items = Vec::new();
    // The message each capture item came from, by (key, version), with the time of a create
    // event (whose version, once gone, can never be captured).
    let mut item_messages: Vec<(String, Option<String>, String, Option<DateTime<Utc>>)> = Vec::new();
    let mut records: Vec<CaptureRecord> = Vec::new();
    let mut failed: BTreeMap<String, String> = BTreeMap::new();
    for c in changes {
        let ev = &c.event;
        let candidates = key_candidates(&ev.key);
        let created = matches!(ev.kind, ChangeKind::Created).then_some(ev.time);
        let mut push_item = |item: CaptureItem| {
            item_messages.push((item.key.clone(), item.version_id.clone(), c.message_id.clone(), created));
            items.push(item);
        };
        match &ev.kind {
            ChangeKind::Created | ChangeKind::Restored => {
                let key = resolve_existing(&source, bucket, &candidates, ev.version_id.as_deref()).await?;
                let Some(key) = key else {
                    report.superseded += 1;
                    continue;
                };
                push_item(CaptureItem {
                    key,
                    version_id: ev.version_id.clone(),
                    if_match: if ev.version_id.is_none() { ev.etag.clone() } else { None },
                    size_hint: ev.size.unwrap_or(0),
                    sequencer: ev.sequencer.clone(),
                    visible_from: None,
                });
            }
            ChangeKind::Attributes { .. } => {
                let Some(key) = resolve_existing(&source, bucket, &candidates, ev.version_id.as_deref()).await? else {
                    report.superseded += 1;
                    continue;
                };
                match describe(engine, &source, bucket, &key, ev.version_id.as_deref(), ev.time).await {
                    // The event names the ETag it was about; another one means the object was
                    // replaced since, and the replacement's own event covers it.
                    Ok(Some((rec, n))) if ev.etag.as_ref().is_none_or(|e| rec.etag.as_ref() == Some(e)) => {
                        report.counters.source_requests += n;
                        report.attributes += 1;
                        records.push(rec);
                    }
                    Ok(_) => report.superseded += 1,
                    Err(e) if crate::protect::lifecycle::is_no_such_bucket(&e) => report.superseded += 1,
                    Err(e) if !e.is_transient() => {
                        failed.insert(c.message_id.clone(), e.to_string());
                    }
                    Err(e) => return Err(e),
                }
            }
            ChangeKind::Deleted { deletion_type } => {
                let permanent = deletion_type.as_deref() == Some("Permanently Deleted");
                if permanent && (ev.version_id.is_some() || ev.null_version) {
                    // A permanent delete of one version: it stops counting from now on, whatever
                    // it was. A version id is unique, so naming it under every candidate key is
                    // harmless.
                    for key in &candidates {
                        records.push(CaptureRecord::purge(bucket, key, ev.version_id.as_deref(), ev.time, ev.sequencer.clone(), now));
                        report.deleted += 1;
                    }
                    if !engine.config.all_versions {
                        for key in &candidates {
                            match exposed(&source, bucket, key, ev.time, protected_since, now).await? {
                                Exposed::Nothing => {}
                                Exposed::Marker(r) => records.push(r),
                                Exposed::Version(item) => push_item(CaptureItem { sequencer: None, ..item }),
                            }
                        }
                    }
                    continue;
                }
                let marker = |key: &str| match &ev.version_id {
                    Some(m) => CaptureRecord::delete_marker(bucket, key, m, ev.time, ev.sequencer.clone(), now),
                    None => CaptureRecord::delete(bucket, key, ev.time, ev.sequencer.clone(), now),
                };
                // A delete of an unambiguous key needs no look at the source: the event says it all.
                if candidates.len() == 1 {
                    records.push(marker(&candidates[0]));
                    report.deleted += 1;
                    continue;
                }
                for key in &candidates {
                    // A literal key that still exists means the event meant the other candidate.
                    if head_unless_gone(&source, bucket, key, None).await?.is_none() {
                        records.push(marker(key));
                        report.deleted += 1;
                    }
                }
            }
        }
    }
    let mut batch = capture_batch(engine, &source, bucket, items).await?;
    // Objects that could not be read because their bucket was deleted went with it: superseded
    // by the deletion (the bucket's lifecycle records it), not failures to retry.
    if !batch.failures.is_empty() && !engine.source.bucket_exists(bucket).await? {
        report.superseded += batch.failures.len() as u64;
        batch.counters.failed = batch.counters.failed.saturating_sub(batch.failures.len() as u64);
        batch.failures.clear();
    }
    for f in &batch.failures {
        for (key, version, id, _) in &item_messages {
            if key == &f.key && version == &f.version_id {
                failed.entry(id.clone()).or_insert_with(|| f.reason.clone());
            }
        }
    }
    // A version created and deleted for good before its event was handled is lost: its key is
    // unprotected from the version's creation until the delete (whose record, if it is in this
    // batch, settles it at once), never silently skipped.
    let lost: Vec<FailureRecord> = batch
        .vanished
        .iter()
        .filter_map(|(key, version)| {
            let version = version.as_ref()?;
            let (_, _, _, time) = item_messages.iter().find(|(k, v, _, t)| k == key && v.as_ref() == Some(version) && t.is_some())?;
            let reason = format!("version {version} was deleted for good before it could be read");
            Some(FailureRecord::new(key, Some(version), &reason, (*time)?, "delta"))
        })
        .collect();
    engine.control().record_failures(bucket, &lost).await?;
    report.captured += batch.counters.objects;
    report.superseded += batch.counters.vanished;
    crate::tally::captured(bucket, batch.counters.objects, batch.counters.bytes);
    // Changes are not scheduled per prefix, so their throttles count under no prefix.
    crate::tally::throttled(bucket, "", source.take_observation().throttles);
    report.counters.add(&batch.counters);
    records.extend(batch.records);
    if !records.is_empty() {
        report.segment = Some(write_registered_segment(engine, bucket, "delta", records, batch.counters).await?);
    }
    Ok(failed)
}

/// What a permanent delete at `at` may have made current that the catalog may lack.
enum Exposed {
    Nothing,
    /// A delete marker on top of the key after the delete: recorded at its own time.
    Marker(CaptureRecord),
    /// A version created before the bucket was protected (a seed of current versions only did
    /// not capture it if it was not current then): captured as current from the delete on, since
    /// the catalog knows nothing of what the bucket showed before.
    Version(CaptureItem),
}

/// Finds the version that is current just after a permanent delete at `at` and says whether the
/// catalog may lack it. A version created after the bucket was protected has its own event; one
/// created before was captured by the seed only if it was current then, so it is captured again
/// (a duplicate at worst). A run seeded with every version holds them all, so this is skipped.
async fn exposed(
    source: &dyn ObjectStore,
    bucket: &str,
    key: &str,
    at: DateTime<Utc>,
    protected_since: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<Exposed> {
    let at = at.timestamp();
    let top = match source.head(bucket, key, None).await? {
        Some(info) if info.last_modified.timestamp() <= at => Some((info.version_id.clone(), false, info.last_modified, info.size)),
        // The current version came after the delete (or a marker is current): the versions then
        // are what is left of those created by then, newest first.
        _ => key_versions(source, bucket, key)
            .await?
            .into_iter()
            .find(|v| v.last_modified.timestamp() <= at)
            .map(|v| (v.version_id, v.is_delete_marker, v.last_modified, v.size)),
    };
    let Some((version, marker, last_modified, size)) = top else { return Ok(Exposed::Nothing) };
    let version = version.filter(|v| v != "null");
    if marker {
        return Ok(Exposed::Marker(match &version {
            Some(m) => CaptureRecord::delete_marker(bucket, key, m, last_modified, None, now),
            None => CaptureRecord::delete(bucket, key, last_modified, None, now),
        }));
    }
    if last_modified >= protected_since {
        return Ok(Exposed::Nothing);
    }
    let version_id = Some(version.unwrap_or_else(|| "null".into()));
    let visible_from = Some(DateTime::from_timestamp(at, 0).unwrap_or(last_modified));
    Ok(Exposed::Version(CaptureItem { version_id, visible_from, ..CaptureItem::new(key, size) }))
}

/// Finds which candidate key of a create event exists (the literal one first).
async fn resolve_existing(source: &dyn ObjectStore, bucket: &str, candidates: &[String], version: Option<&str>) -> Result<Option<String>> {
    if candidates.len() == 1 {
        return Ok(Some(candidates[0].clone()));
    }
    for key in candidates {
        if head_unless_gone(source, bucket, key, version).await?.is_some() {
            return Ok(Some(key.clone()));
        }
    }
    Ok(None)
}

/// HEAD of a key, where a bucket deleted by design holds no key (its events still arrive after
/// it is gone, and must not be dead-lettered for it).
async fn head_unless_gone(source: &dyn ObjectStore, bucket: &str, key: &str, version: Option<&str>) -> Result<Option<ObjectInfo>> {
    match source.head(bucket, key, version).await {
        Err(e) if crate::protect::lifecycle::is_no_such_bucket(&e) => Ok(None),
        other => other,
    }
}

/// Writes records as a new delta segment, registers it under `{slot_kind}#{segment key}`, and
/// settles the failures of the keys it captured.
///
/// Delta batches and reconciliation both record changes this way; each segment key is new, so
/// each slot is registered exactly once.
pub(crate) async fn write_registered_segment(
    engine: &Engine,
    bucket: &str,
    slot_kind: &str,
    records: Vec<CaptureRecord>,
    counters: Counters,
) -> Result<SegmentMeta> {
    let captured = captured_facts(&records);
    let meta = engine.write_segment(bucket, SegmentKind::Delta, records, engine.clock.now()).await?;
    let slot = crate::control::SegmentSlot { meta: meta.clone(), end_cursor: None, counters };
    engine.control().register_segment(bucket, &format!("{slot_kind}#{}", meta.key), &slot).await?;
    engine.control().settle_failures(bucket, &captured).await?;
    Ok(meta)
}
