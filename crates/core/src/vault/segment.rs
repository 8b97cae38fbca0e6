//! Index segments: immutable, sorted files of capture records in the vault, and their reads and writes.
//!
//! Encoding (documented in ARCHITECTURE.md): newline-delimited JSON. The first line is a header
//! (`format`, `version`, `segment_id`, `bucket`, `kind`, `count`, `min_key`, `max_key`,
//! `min_time`, `max_time`, `sha256` of the body); every further line is one capture record, sorted
//! by (key, event time, sequencer, captured-at). DuckDB or Athena read it as JSON lines.

use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::stream::{self, StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::domain::{new_id, order_key, CaptureRecord};
use crate::ports::{Fetch, ObjectStore, PutOptions};
use crate::vault::layout;
use crate::{Error, Result};

/// The format version of the segments this code writes; it reads every version from 1 up to it.
/// Version 2 records carry the attributes of `domain::ObjectAttributes`, `last_modified`, delete
/// markers' version ids and purge records; the layout is version 1's.
pub const FORMAT_VERSION: u32 = 2;

/// What produced a segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SegmentKind {
    /// A seed batch covering a key range of one partition.
    Seed,
    /// One batch of captured changes.
    Delta,
    /// A merge of smaller segments.
    Compacted,
}

/// A segment's header; also what recovery points and the registry say about a segment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SegmentMeta {
    /// The segment's key in the vault.
    pub key: String,
    pub kind: SegmentKind,
    pub count: u64,
    pub min_key: String,
    pub max_key: String,
    pub min_time: DateTime<Utc>,
    pub max_time: DateTime<Utc>,
}

impl SegmentMeta {
    /// True if the segment may hold keys under `prefix`.
    pub fn may_contain_prefix(&self, prefix: &str) -> bool {
        if prefix.is_empty() {
            return true;
        }
        // Keys under the prefix sort between `prefix` and `prefix` followed by the highest char.
        self.max_key.as_str() >= prefix && (self.min_key.as_str() <= prefix || self.min_key.starts_with(prefix))
    }
}

#[derive(Serialize, Deserialize)]
struct Header {
    format: String,
    version: u32,
    #[serde(flatten)]
    meta: SegmentMeta,
    bucket: String,
    sha256: String,
}

/// Encodes records (in any order) as a segment; returns its bytes and metadata.
pub fn encode(key: &str, bucket: &str, kind: SegmentKind, mut records: Vec<CaptureRecord>) -> Result<(Vec<u8>, SegmentMeta)> {
    if records.is_empty() {
        return Err(Error::Invalid("a segment needs at least one capture record".into()));
    }
    records.sort_by(|a, b| a.key.cmp(&b.key).then_with(|| order_key(a).cmp(&order_key(b))));
    let mut body = Vec::new();
    for r in &records {
        serde_json::to_writer(&mut body, r).expect("record serialises");
        body.push(b'\n');
    }
    let meta = SegmentMeta {
        key: key.into(),
        kind,
        count: records.len() as u64,
        min_key: records.first().expect("non-empty").key.clone(),
        max_key: records.last().expect("non-empty").key.clone(),
        min_time: records.iter().map(|r| r.event_time).min().expect("non-empty"),
        max_time: records.iter().map(|r| r.event_time).max().expect("non-empty"),
    };
    let header = Header {
        format: "tidemark-segment".into(),
        version: FORMAT_VERSION,
        meta: meta.clone(),
        bucket: bucket.into(),
        sha256: hex::encode(Sha256::digest(&body)),
    };
    let mut out = serde_json::to_vec(&header).expect("header serialises");
    out.push(b'\n');
    out.extend_from_slice(&body);
    Ok((out, meta))
}

/// Decodes and verifies a segment.
pub fn decode(key: &str, bytes: &[u8]) -> Result<(SegmentMeta, Vec<CaptureRecord>)> {
    let bad = |d: String| Error::corrupt(format!("segment {key}"), d);
    let nl = bytes.iter().position(|b| *b == b'\n').ok_or_else(|| bad("no header line".into()))?;
    let header: Header = serde_json::from_slice(&bytes[..nl]).map_err(|e| bad(format!("header: {e}")))?;
    if header.format != "tidemark-segment" || !(1..=FORMAT_VERSION).contains(&header.version) {
        return Err(bad(format!(
            "unsupported format {} v{} (this build reads tidemark-segment v1 to v{FORMAT_VERSION})",
            header.format, header.version
        )));
    }
    let body = &bytes[nl + 1..];
    let actual = hex::encode(Sha256::digest(body));
    if actual != header.sha256 {
        return Err(bad(format!("body sha256 {actual} does not match header {}", header.sha256)));
    }
    let mut records = Vec::with_capacity(header.meta.count as usize);
    for (i, line) in body.split(|b| *b == b'\n').enumerate() {
        if line.is_empty() {
            continue;
        }
        records.push(serde_json::from_slice(line).map_err(|e| bad(format!("line {}: {e}", i + 2)))?);
    }
    if records.len() as u64 != header.meta.count {
        return Err(bad(format!("{} records, header says {}", records.len(), header.meta.count)));
    }
    Ok((header.meta, records))
}

/// Writes records as a new segment of `bucket`'s index in the vault and returns its metadata.
///
/// The key is new (an id from `now`), and the write refuses to replace an existing object, so a
/// segment is written once and never changed.
pub async fn write(
    vault: &dyn ObjectStore,
    vault_bucket: &str,
    bucket: &str,
    kind: SegmentKind,
    records: Vec<CaptureRecord>,
    now: DateTime<Utc>,
) -> Result<SegmentMeta> {
    let key = layout::segment_key(bucket, &new_id(now));
    let (bytes, meta) = encode(&key, bucket, kind, records)?;
    let opts = PutOptions { content_type: Some("application/x-ndjson".into()), if_none_match: true, ..Default::default() };
    vault.put(vault_bucket, &key, Bytes::from(bytes), &opts).await?;
    Ok(meta)
}

/// Reads and verifies one segment from the vault.
pub async fn read(vault: &dyn ObjectStore, vault_bucket: &str, key: &str) -> Result<Vec<CaptureRecord>> {
    match vault.get(vault_bucket, key, None, None).await? {
        Fetch::Found((_, bytes)) => Ok(decode(key, &bytes)?.1),
        _ => Err(Error::corrupt(format!("segment {key}"), "named by a recovery point but missing from the vault")),
    }
}

/// Reads and verifies several segments, `concurrency` at a time, in the order given.
///
/// Restore, reconciliation and compaction all read the catalog this way.
pub async fn read_many(
    vault: &dyn ObjectStore,
    vault_bucket: &str,
    keys: Vec<String>,
    concurrency: usize,
) -> Result<Vec<Vec<CaptureRecord>>> {
    stream::iter(keys).map(|k| async move { read(vault, vault_bucket, &k).await }).buffered(concurrency.max(1)).try_collect().await
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn segments_round_trip_sorted_and_detect_tampering() {
        let t = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        let recs = vec![CaptureRecord::delete("b", "z", t, None, t), CaptureRecord::delete("b", "a", t, None, t)];
        let (bytes, meta) = encode("k", "b", SegmentKind::Delta, recs).unwrap();
        assert_eq!((meta.min_key.as_str(), meta.max_key.as_str(), meta.count), ("a", "z", 2));
        let (m2, back) = decode("k", &bytes).unwrap();
        assert_eq!(m2, meta);
        assert_eq!(back[0].key, "a");
        let mut bad = bytes.clone();
        let n = bad.len();
        bad[n - 3] ^= 1;
        assert!(decode("k", &bad).unwrap_err().to_string().contains("sha256"));
    }

    #[test]
    fn prefix_pruning() {
        let t = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        let m = |a: &str, z: &str| SegmentMeta {
            key: "k".into(),
            kind: SegmentKind::Seed,
            count: 1,
            min_key: a.into(),
            max_key: z.into(),
            min_time: t,
            max_time: t,
        };
        assert!(m("a/1", "c/9").may_contain_prefix("b/"));
        assert!(m("b/1", "b/9").may_contain_prefix("b/"));
        assert!(!m("c/1", "d/9").may_contain_prefix("b/"));
        assert!(!m("a/1", "a/9").may_contain_prefix("b/"));
        assert!(m("a", "a").may_contain_prefix(""));
    }
}
