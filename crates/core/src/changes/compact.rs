//! Compaction: merges small delta segments into larger `compacted` segments so restore planning stays fast.
//!
//! Weeks of one-minute delta batches leave tens of thousands of small segments, and every restore
//! reads every segment whose key range touches its prefix. Compaction reads a group of live delta
//! segments, sorts their records, drops exact duplicates, writes one compacted segment and
//! registers it with the list of segments it replaces. Registering that slot is the commit point:
//! recovery points sealed afterwards list the compacted segment instead of the small ones. The
//! vault stays immutable: nothing is deleted or overwritten, and older points still name (and
//! restore from) the small segments.

use crate::control::{Counters, RegistrySlot, SegmentSlot};
use crate::domain::{order_key, stable_id, CaptureRecord};
use crate::engine::Engine;
use crate::vault::segment::{self, SegmentKind, SegmentMeta};
use crate::Result;

/// Limits of one compaction pass.
#[derive(Debug, Clone, Copy)]
pub struct CompactOptions {
    /// Segments with fewer records than this count as small.
    pub small_records: u64,
    /// The most records one compacted segment holds.
    pub max_records: u64,
    /// A group is only compacted if it merges at least this many segments.
    pub min_inputs: usize,
}

impl Default for CompactOptions {
    fn default() -> Self {
        CompactOptions { small_records: 10_000, max_records: 500_000, min_inputs: 2 }
    }
}

/// What a compaction pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CompactReport {
    /// Live segments before the pass.
    pub segments_before: usize,
    /// Live segments after the pass.
    pub segments_after: usize,
    /// Small segments replaced by compacted ones.
    pub replaced: usize,
    /// Compacted segments written and registered.
    pub compacted: usize,
    /// Records read from the replaced segments.
    pub records_in: u64,
    /// Records written (after dropping exact duplicates).
    pub records_out: u64,
    /// Keys of the compacted segments written.
    pub segments: Vec<String>,
}

/// Merges records of several segments: sorted as segments are, exact duplicates dropped.
///
/// Only records equal in every field are dropped, so resolution over the result is the same as
/// over the inputs (the resolver is insensitive to duplicates and order, see `resolve.rs`).
pub fn merge_records(inputs: Vec<Vec<CaptureRecord>>) -> Vec<CaptureRecord> {
    let mut all: Vec<CaptureRecord> = inputs.into_iter().flatten().collect();
    all.sort_by(|a, b| {
        (a.key.as_str(), order_key(a))
            .cmp(&(b.key.as_str(), order_key(b)))
            .then_with(|| serde_json::to_string(a).unwrap_or_default().cmp(&serde_json::to_string(b).unwrap_or_default()))
    });
    all.dedup();
    all
}

/// Groups small live delta segments, oldest first, into batches of at most `max_records` records.
fn plan_groups(live: &[SegmentSlot], opts: &CompactOptions) -> Vec<Vec<SegmentMeta>> {
    let mut small: Vec<&SegmentMeta> =
        live.iter().map(|s| &s.meta).filter(|m| m.kind == SegmentKind::Delta && m.count < opts.small_records).collect();
    small.sort_by(|a, b| (a.min_time, &a.key).cmp(&(b.min_time, &b.key)));
    let mut groups: Vec<Vec<SegmentMeta>> = Vec::new();
    let mut current: Vec<SegmentMeta> = Vec::new();
    let mut records = 0u64;
    for m in small {
        if !current.is_empty() && records + m.count > opts.max_records {
            groups.push(std::mem::take(&mut current));
            records = 0;
        }
        records += m.count;
        current.push(m.clone());
    }
    if !current.is_empty() {
        groups.push(current);
    }
    groups.retain(|g| g.len() >= opts.min_inputs.max(2));
    groups
}

/// Compacts the small live delta segments of `bucket`.
#[tracing::instrument(name = "step", skip_all, fields(step = "compaction", source_bucket = %bucket))]
pub async fn compact(engine: &Engine, bucket: &str, opts: &CompactOptions) -> Result<CompactReport> {
    let control = engine.control();
    let live = control.live_segments(bucket).await?;
    let mut report = CompactReport { segments_before: live.len(), ..Default::default() };
    for group in plan_groups(&live, opts) {
        let keys: Vec<String> = group.iter().map(|m| m.key.clone()).collect();
        let inputs =
            segment::read_many(engine.vault.as_ref(), &engine.config.vault_bucket, keys.clone(), engine.config.concurrency).await?;
        let records_in: u64 = inputs.iter().map(|r| r.len() as u64).sum();
        let merged = merge_records(inputs);
        let records_out = merged.len() as u64;
        let meta = engine.write_segment(bucket, SegmentKind::Compacted, merged, engine.clock.now()).await?;
        // The slot name derives from the replaced set, so two passes over the same group (a retry,
        // or two operators at once) commit at most one of their segments; the loser's segment is
        // left unreferenced.
        let mut sorted = keys.clone();
        sorted.sort();
        let refs: Vec<&str> = sorted.iter().map(String::as_str).collect();
        let slot_name = format!("compact#{}", stable_id(&refs));
        let slot =
            RegistrySlot { slot: SegmentSlot { meta: meta.clone(), end_cursor: None, counters: Counters::default() }, replaces: sorted };
        let won = control.register_compacted(bucket, &slot_name, &slot).await?;
        report.replaced += keys.len();
        report.compacted += 1;
        report.records_in += records_in;
        report.records_out += records_out;
        report.segments.push(won.slot.meta.key.clone());
    }
    report.segments_after = control.live_segments(bucket).await?.len();
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};

    fn meta(key: &str, count: u64, kind: SegmentKind, sec: u32) -> SegmentSlot {
        let t = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, sec).unwrap();
        SegmentSlot {
            meta: SegmentMeta { key: key.into(), kind, count, min_key: "a".into(), max_key: "z".into(), min_time: t, max_time: t },
            end_cursor: None,
            counters: Counters::default(),
        }
    }

    #[test]
    fn groups_take_only_small_delta_segments_oldest_first_within_the_record_limit() {
        let live = vec![
            meta("seed", 5, SegmentKind::Seed, 0),
            meta("d3", 4, SegmentKind::Delta, 3),
            meta("d1", 4, SegmentKind::Delta, 1),
            meta("d2", 4, SegmentKind::Delta, 2),
            meta("big", 50, SegmentKind::Delta, 4),
            meta("d5", 4, SegmentKind::Delta, 5),
        ];
        let opts = CompactOptions { small_records: 10, max_records: 8, min_inputs: 2 };
        let groups: Vec<Vec<String>> = plan_groups(&live, &opts).into_iter().map(|g| g.into_iter().map(|m| m.key).collect()).collect();
        // d5 alone is left: a group of one would only copy a segment.
        assert_eq!(groups, vec![vec!["d1".to_string(), "d2".into()], vec!["d3".into(), "d5".into()]]);
    }

    #[test]
    fn merge_sorts_and_drops_only_exact_duplicates() {
        let t = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        let a = CaptureRecord::delete("b", "a", t, None, t);
        let mut a_later = a.clone();
        a_later.captured_at = t + chrono::Duration::seconds(1);
        let z = CaptureRecord::delete("b", "z", t, None, t);
        let out = merge_records(vec![vec![z.clone(), a.clone()], vec![a.clone(), a_later.clone()]]);
        assert_eq!(out, vec![a, a_later, z]);
    }
}
