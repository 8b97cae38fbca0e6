//! Rebuilding the control state from the vault alone (`tidemark rebuild`): the protected
//! sources, the segment registry that new recovery points list, the keys the latest point names
//! unprotected, and index entries for packs that no segment describes (from the packs' footers).
//!
//! What is rebuilt, per source bucket of the vault:
//!
//! - **Protection**: the bucket is marked protected from the time of its first segment (the id of
//!   a segment starts with its write time, which is after the protection began, so a delta batch
//!   treats an older version as predating the protection: at worst it is captured twice).
//!   A bucket with no recovery point is left unprotected and reported: its seed never finished,
//!   and a point sealed now would claim objects the vault does not hold.
//! - **The registry**: every readable segment except those a compaction replaced, which are
//!   recognisable as segments an earlier point named and the latest point does not (the only way a
//!   segment leaves the live set). Segments no point names yet (registered after the latest seal,
//!   or orphans of a killed batch) are registered too: a duplicate record changes no state.
//!   Segments already registered under any slot are skipped, so a rebuild beside running workers
//!   registers nothing twice that it can see.
//! - **Failures**: the latest point's unprotected keys, so that later points keep naming them.
//! - **Packs without a segment** (its batch died between the pack and the segment, or the segment
//!   is missing or damaged): a segment is written from the pack's footer and registered. A large
//!   copy without a segment cannot be: the copy does not carry its source key, so it is reported.
//!
//! Not rebuilt: seed and restore runs (a run in flight when the table was lost must be started
//! again), and the delta dedup marks, whose only purpose is to drop redelivered events early:
//! without them a redelivered event is captured once more, which changes no state.
//!
//! Every write is put-if-absent under a name derived from what it describes, so running it again
//! changes nothing.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, NaiveDateTime, Utc};
use futures::stream::{self, StreamExt};
use serde::{Deserialize, Serialize};

use crate::control::{FailureRecord, SegmentSlot};
use crate::domain::Location;
use crate::engine::Engine;
use crate::ports::{list_all, ObjectStore};
use crate::vault::segment::{self, SegmentKind, SegmentMeta};
use crate::vault::{pack, point, verify};
use crate::{Error, Result};

/// A segment read in full: its header and records, or why it could not be read.
type SegmentRead = Result<(SegmentMeta, Vec<crate::domain::CaptureRecord>)>;

/// What to rebuild.
#[derive(Debug, Clone, Default)]
pub struct RebuildOptions {
    /// Only this source bucket; every bucket the vault holds when `None`.
    pub source: Option<String>,
}

/// What a rebuild did for one source bucket.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BucketRebuild {
    pub bucket: String,
    pub points: u64,
    /// Segments found in the vault (listed under `index/` or named by a point).
    pub segments: u64,
    /// Segments registered by this rebuild, and those found registered already.
    pub registered: u64,
    pub already_registered: u64,
    /// Segments left out because a compaction replaced them.
    pub replaced: u64,
    /// Segments named by a point that are missing or do not verify (their packs are re-indexed).
    pub unreadable: Vec<String>,
    /// Packs no readable segment describes, and the records re-indexed from their footers.
    pub packs_reindexed: u64,
    pub records_reindexed: u64,
    /// Large copies (`objects/`) no readable segment describes: their record is lost with its
    /// segment and a copy does not carry its source key, so they cannot be re-indexed (the first
    /// 1,000, and how many there are).
    pub unindexed_copies: Vec<String>,
    pub unindexed_copies_total: u64,
    /// Unprotected keys of the latest point recorded as failures.
    pub failures: u64,
    /// When the bucket counts as protected from; `None` when it was left unprotected.
    pub protected_since: Option<DateTime<Utc>>,
    /// Why the bucket was left unprotected, when it was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// What a rebuild did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RebuildReport {
    pub buckets: Vec<BucketRebuild>,
}

/// The write time a segment's id starts with (`segment::write` names segments with `new_id`).
fn segment_time(key: &str) -> Option<DateTime<Utc>> {
    let id = key.rsplit('/').next()?;
    let stamp = id.split('-').next()?;
    NaiveDateTime::parse_from_str(stamp, "%Y%m%dT%H%M%S%3fZ").ok().map(|t| t.and_utc())
}

/// Rebuilds the control state of every source bucket of the vault (or of `opts.source`).
pub async fn rebuild(engine: &Engine, opts: &RebuildOptions) -> Result<RebuildReport> {
    let vault = engine.config.vault_bucket.clone();
    if !engine.vault.bucket_exists(&vault).await? {
        return Err(Error::NoSuchBucket { bucket: vault });
    }
    let all = verify::buckets(engine.vault.as_ref(), &vault).await?;
    let todo = match &opts.source {
        Some(b) if !all.contains(b) => return Err(Error::Invalid(format!("vault {vault} holds nothing of s3://{b}; nothing to rebuild"))),
        Some(b) => vec![b.clone()],
        None => all,
    };
    let mut report = RebuildReport::default();
    for bucket in todo {
        report.buckets.push(rebuild_bucket(engine, &bucket).await?);
    }
    Ok(report)
}

async fn rebuild_bucket(engine: &Engine, bucket: &str) -> Result<BucketRebuild> {
    let store: &dyn ObjectStore = engine.vault.as_ref();
    let vault = engine.config.vault_bucket.as_str();
    let control = engine.control();
    let mut out = BucketRebuild { bucket: bucket.into(), ..Default::default() };

    let point_keys = point::list_points(store, vault, bucket).await?;
    let mut points = Vec::new();
    for k in &point_keys {
        points.push(point::read_point(store, vault, k).await?);
    }
    out.points = points.len() as u64;
    let latest: BTreeSet<String> = points.last().map(|p| p.segments.iter().map(|s| s.key.clone()).collect()).unwrap_or_default();
    let earlier: BTreeSet<String> =
        points.iter().rev().skip(1).flat_map(|p| p.segments.iter().map(|s| s.key.clone())).filter(|k| !latest.contains(k)).collect();
    let named: BTreeMap<String, SegmentMeta> = points.iter().flat_map(|p| p.segments.iter().map(|s| (s.key.clone(), s.clone()))).collect();

    let listed = list_all(store, vault, &format!("{}index/", crate::vault::root(bucket)), None).await?;
    let mut keys: BTreeSet<String> = listed.objects.into_iter().map(|o| o.key).filter(|k| k.ends_with(".idx")).collect();
    keys.extend(named.keys().cloned());
    out.segments = keys.len() as u64;

    // Every segment is read and verified: its records say which packs it describes, and a
    // segment that does not verify must not be registered.
    let read: Vec<(String, SegmentRead)> = stream::iter(keys.iter().cloned())
        .map(|k| async move {
            let r = segment::read_with_meta(store, vault, &k).await;
            (k, r)
        })
        .buffered(engine.config.concurrency.max(1))
        .collect()
        .await;
    let registered: BTreeSet<String> = control.registry(bucket).await?.into_iter().map(|s| s.slot.meta.key).collect();
    let mut described: BTreeSet<String> = BTreeSet::new();
    let mut first_write: Option<DateTime<Utc>> = None;
    for (key, r) in read {
        let (meta, records) = match r {
            Ok(read) => read,
            Err(e) if e.is_transient() => return Err(e),
            Err(e) => {
                tracing::warn!(segment = %key, error = %e, "segment does not verify; its packs are re-indexed from their footers");
                out.unreadable.push(key);
                continue;
            }
        };
        for r in &records {
            match &r.location {
                Some(Location::Pack { pack, .. }) => described.insert(pack.clone()),
                Some(Location::Object { key, .. }) => described.insert(key.clone()),
                None => false,
            };
        }
        if let Some(t) = segment_time(&key) {
            first_write = Some(first_write.map_or(t, |f| f.min(t)));
        }
        if earlier.contains(&key) {
            out.replaced += 1;
            continue;
        }
        if registered.contains(&key) {
            out.already_registered += 1;
            continue;
        }
        let slot = SegmentSlot { meta, end_cursor: None, counters: Default::default() };
        control.register_segment(bucket, &format!("rebuilt#{key}"), &slot).await?;
        out.registered += 1;
    }

    // Packs no readable segment describes get a segment from their footer.
    let packs = list_all(store, vault, &format!("{}packs/", crate::vault::root(bucket)), None).await?;
    for p in packs.objects.iter().filter(|o| o.key.ends_with(".pack") && !described.contains(&o.key)) {
        let footer = match pack::read_footer(store, vault, &p.key, p.size).await {
            Ok(f) => f,
            Err(e) if e.is_transient() => return Err(e),
            Err(e) => {
                tracing::warn!(pack = %p.key, error = %e, "pack footer unreadable; its objects cannot be re-indexed");
                continue;
            }
        };
        let records: Vec<_> =
            footer.records.into_iter().filter(|r| matches!(&r.location, Some(Location::Pack { pack, .. }) if pack == &p.key)).collect();
        if records.is_empty() {
            continue;
        }
        let n = records.len() as u64;
        let meta = segment::write(store, vault, bucket, SegmentKind::Delta, records, engine.clock.now(), engine.config.vault_sse()).await?;
        let slot = SegmentSlot { meta: meta.clone(), end_cursor: None, counters: Default::default() };
        control.register_segment(bucket, &format!("rebuilt#{}", meta.key), &slot).await?;
        out.packs_reindexed += 1;
        out.records_reindexed += n;
        out.registered += 1;
    }

    let copies = list_all(store, vault, &format!("{}objects/", crate::vault::root(bucket)), None).await?;
    for c in copies.objects.iter().filter(|o| !described.contains(&o.key)) {
        tracing::warn!(copy = %c.key, "large copy described by no readable segment; it cannot be re-indexed");
        out.unindexed_copies_total += 1;
        if out.unindexed_copies.len() < 1000 {
            out.unindexed_copies.push(c.key.clone());
        }
    }

    // The keys the latest point names unprotected stay named by the points sealed after it.
    if let Some(last) = points.last() {
        let failures: Vec<FailureRecord> = last
            .unprotected
            .iter()
            .map(|u| FailureRecord { until: u.until, ..FailureRecord::new(&u.key, None, &u.reason, u.since, "rebuild") })
            .collect();
        out.failures = failures.len() as u64;
        control.record_failures(bucket, &failures).await?;
    }

    if points.is_empty() {
        out.note = Some(format!(
            "no recovery point of s3://{bucket} was ever sealed, so its seed never finished; it is left unprotected (run `tidemark protect` to seed it)"
        ));
        return Ok(out);
    }
    let since = first_write.unwrap_or_else(|| points[0].time);
    control.set_protected(bucket, since).await?;
    out.protected_since = Some(control.protected_since(bucket).await?.unwrap_or(since));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_segment_key_gives_its_write_time() {
        let t = segment_time("v1/b/index/20261201T135830123Z-00ab00cd00ef0011.idx").unwrap();
        assert_eq!(t.to_rfc3339(), "2026-12-01T13:58:30.123+00:00");
        assert_eq!(segment_time("v1/b/index/not-an-id.idx"), None);
    }
}
