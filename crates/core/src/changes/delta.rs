//! The delta handler: turns a batch of S3 change events into capture records, exactly once in effect.
//!
//! Duplicates (same key, version, ETag, sequencer and kind) are dropped within a batch and across
//! batches (a `seen` mark per change, written only after its segment is registered). A put is
//! captured from the exact version (versioned buckets) or from the current object if its ETag still
//! matches the event (a newer write wins and arrives through its own event). Malformed messages
//! and events for buckets this vault does not protect are reported as failures, so SQS retries
//! and then dead-letters them without blocking the rest of the batch.

use std::collections::{HashMap, HashSet};

use chrono::Duration;

use crate::capture::{capture_batch, CaptureItem};
use crate::changes::events::{key_candidates, parse_change, ChangeEvent, ChangeKind};
use crate::control::Counters;
use crate::domain::CaptureRecord;
use crate::engine::Engine;
use crate::ports::ObjectStore;
use crate::scheduler::source::PacedStore;
use crate::vault::segment::{self, SegmentKind, SegmentMeta};
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
    /// Deletes recorded.
    pub deleted: u64,
    /// Events of types tidemark does not capture.
    pub ignored: u64,
    /// Changes already captured before (duplicate deliveries).
    pub duplicates: u64,
    /// Creates whose object was already gone or replaced when fetched (a later event covers them).
    pub superseded: u64,
    /// Messages that could not be handled, with the reason; they are left for retry and dead-lettering.
    pub failed: Vec<(String, String)>,
    pub segment: Option<SegmentMeta>,
    pub counters: Counters,
}

impl DeltaReport {
    /// Adds another batch's report to this one (the totals of a drain).
    pub fn absorb(&mut self, other: DeltaReport) {
        self.captured += other.captured;
        self.deleted += other.deleted;
        self.ignored += other.ignored;
        self.duplicates += other.duplicates;
        self.superseded += other.superseded;
        self.failed.extend(other.failed);
        self.counters.add(&other.counters);
    }
}

/// How long dedup marks live: longer than EventBridge's 24-hour retry window.
const SEEN_TTL_DAYS: i64 = 7;

/// Handles one batch of delta messages.
pub async fn process_batch(engine: &Engine, messages: &[DeltaMessage]) -> Result<DeltaReport> {
    let control = engine.control();
    let mut report = DeltaReport::default();
    let mut protected: HashMap<String, bool> = HashMap::new();
    let mut batch_ids = HashSet::new();
    // Each change with its identity, computed once: it keys the batch's and the store's dedup.
    let mut events: Vec<(String, ChangeEvent)> = Vec::new();
    for m in messages {
        let ev = match parse_change(&m.body) {
            Ok(Some(ev)) => ev,
            Ok(None) => {
                report.ignored += 1;
                continue;
            }
            Err(e) => {
                tracing::warn!(message_id = %m.id, reason = %e, "malformed delta message");
                report.failed.push((m.id.clone(), e.to_string()));
                continue;
            }
        };
        let known = match protected.get(&ev.bucket) {
            Some(k) => *k,
            None => {
                let k = control.is_protected(&ev.bucket).await?;
                protected.insert(ev.bucket.clone(), k);
                k
            }
        };
        if !known {
            let reason = format!("event for bucket {} which this vault ({}) does not protect", ev.bucket, engine.config.vault_bucket);
            tracing::warn!(message_id = %m.id, %reason, "unknown bucket");
            report.failed.push((m.id.clone(), reason));
            continue;
        }
        let identity = ev.identity();
        if !batch_ids.insert(identity.clone()) {
            report.duplicates += 1;
            continue;
        }
        events.push((identity, ev));
    }
    // Group by bucket: each bucket's changes go into its own segment. Seen marks are read and
    // written per bucket in batches: a batch of 100 changes costs a handful of requests, not 200.
    let mut by_bucket: HashMap<String, Vec<(String, ChangeEvent)>> = HashMap::new();
    for (identity, ev) in events {
        by_bucket.entry(ev.bucket.clone()).or_default().push((identity, ev));
    }
    for (bucket, evs) in by_bucket {
        let identities: Vec<String> = evs.iter().map(|(id, _)| id.clone()).collect();
        let seen = control.seen_among(&bucket, &identities).await?;
        let (fresh_ids, fresh): (Vec<String>, Vec<ChangeEvent>) = evs.into_iter().filter(|(id, _)| !seen.contains(id)).unzip();
        report.duplicates += (identities.len() - fresh.len()) as u64;
        if fresh.is_empty() {
            continue;
        }
        capture_bucket_changes(engine, &bucket, &fresh, &mut report).await?;
        let expires = (engine.clock.now() + Duration::days(SEEN_TTL_DAYS)).timestamp();
        control.mark_seen_many(&bucket, &fresh_ids, expires).await?;
    }
    Ok(report)
}

async fn capture_bucket_changes(engine: &Engine, bucket: &str, evs: &[ChangeEvent], report: &mut DeltaReport) -> Result<()> {
    let now = engine.clock.now();
    // Unpaced (changes are not scheduled per prefix), but throttled reads are retried alike.
    let source = PacedStore::new(engine.source.clone());
    let mut items = Vec::new();
    let mut records: Vec<CaptureRecord> = Vec::new();
    for ev in evs {
        let candidates = key_candidates(&ev.key);
        match &ev.kind {
            ChangeKind::Created => {
                let key = resolve_existing(&source, bucket, &candidates, ev.version_id.as_deref()).await?;
                let Some(key) = key else {
                    report.superseded += 1;
                    continue;
                };
                items.push(CaptureItem {
                    key,
                    version_id: ev.version_id.clone(),
                    if_match: if ev.version_id.is_none() { ev.etag.clone() } else { None },
                    size_hint: ev.size.unwrap_or(0),
                    sequencer: ev.sequencer.clone(),
                });
            }
            ChangeKind::Deleted { deletion_type } => {
                let permanent_version = deletion_type.as_deref() == Some("Permanently Deleted") && ev.version_id.is_some();
                // A plain delete of an unambiguous key needs no look at the source: the event says it all.
                if !permanent_version && candidates.len() == 1 {
                    records.push(CaptureRecord::delete(bucket, &candidates[0], ev.time, ev.sequencer.clone(), now));
                    report.deleted += 1;
                    continue;
                }
                for key in &candidates {
                    match source.head(bucket, key, None).await? {
                        // Deleting one old version leaves the current object in place; a
                        // literal key that still exists means the event meant the other candidate.
                        Some(info) if permanent_version || candidates.len() > 1 => {
                            if permanent_version && key == &candidates[0] {
                                items.push(CaptureItem {
                                    key: key.clone(),
                                    version_id: None,
                                    if_match: Some(info.etag),
                                    size_hint: info.size,
                                    sequencer: ev.sequencer.clone(),
                                });
                            }
                        }
                        _ => {
                            records.push(CaptureRecord::delete(bucket, key, ev.time, ev.sequencer.clone(), now));
                            report.deleted += 1;
                        }
                    }
                }
            }
        }
    }
    let batch = capture_batch(engine, &source, bucket, items).await?;
    report.captured += batch.counters.objects;
    report.superseded += batch.counters.vanished;
    report.counters.add(&batch.counters);
    records.extend(batch.records);
    if records.is_empty() {
        return Ok(());
    }
    report.segment = Some(write_registered_segment(engine, bucket, "delta", records, batch.counters).await?);
    Ok(())
}

/// Finds which candidate key of a create event exists (the literal one first).
async fn resolve_existing(source: &dyn ObjectStore, bucket: &str, candidates: &[String], version: Option<&str>) -> Result<Option<String>> {
    if candidates.len() == 1 {
        return Ok(Some(candidates[0].clone()));
    }
    for key in candidates {
        if source.head(bucket, key, version).await?.is_some() {
            return Ok(Some(key.clone()));
        }
    }
    Ok(None)
}

/// Writes records as a new delta segment and registers it under `{slot_kind}#{segment key}`.
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
    let meta =
        segment::write(engine.vault.as_ref(), &engine.config.vault_bucket, bucket, SegmentKind::Delta, records, engine.clock.now()).await?;
    let slot = crate::control::SegmentSlot { meta: meta.clone(), end_cursor: None, counters };
    engine.control().register_segment(bucket, &format!("{slot_kind}#{}", meta.key), &slot).await?;
    Ok(meta)
}
