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
/// markers' version ids and purge records; the layout is version 1's. A record's pack location
/// may carry an `envelope` (an encrypted blob, pack version 3); the segment version is left to
/// the catalog's format change, so a build from before encryption reads such a segment and
/// reports the encrypted blobs as damaged rather than refusing the segment's version.
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

/// Refuses a header this build cannot read; every earlier format version stays readable, so a vault
/// written by an older build restores after an upgrade.
fn check_format(header: &Header) -> std::result::Result<(), String> {
    if header.format != "tidemark-segment" || !(1..=FORMAT_VERSION).contains(&header.version) {
        return Err(format!(
            "unsupported format {} v{} (this build reads tidemark-segment v1 to v{FORMAT_VERSION})",
            header.format, header.version
        ));
    }
    Ok(())
}

/// Decodes and verifies a segment.
pub fn decode(key: &str, bytes: &[u8]) -> Result<(SegmentMeta, Vec<CaptureRecord>)> {
    let bad = |d: String| Error::corrupt(format!("segment {key}"), d);
    let nl = bytes.iter().position(|b| *b == b'\n').ok_or_else(|| bad("no header line".into()))?;
    let header: Header = serde_json::from_slice(&bytes[..nl]).map_err(|e| bad(format!("header: {e}")))?;
    check_format(&header).map_err(bad)?;
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
    sse: Option<crate::domain::Sse>,
) -> Result<SegmentMeta> {
    let key = layout::segment_key(bucket, &new_id(now));
    let (bytes, meta) = encode(&key, bucket, kind, records)?;
    let mut opts = PutOptions { content_type: Some("application/x-ndjson".into()), if_none_match: true, ..Default::default() };
    // Segments stay plaintext JSON for the catalog's readers; at rest they are SSE-KMS.
    opts.attributes.sse = sse;
    vault.put(vault_bucket, &key, Bytes::from(bytes), &opts).await?;
    Ok(meta)
}

/// Reads and verifies one segment from the vault.
pub async fn read(vault: &dyn ObjectStore, vault_bucket: &str, key: &str) -> Result<Vec<CaptureRecord>> {
    Ok(read_with_meta(vault, vault_bucket, key).await?.1)
}

/// Reads and verifies one segment from the vault, with its header.
pub async fn read_with_meta(vault: &dyn ObjectStore, vault_bucket: &str, key: &str) -> Result<(SegmentMeta, Vec<CaptureRecord>)> {
    match vault.get(vault_bucket, key, None, None).await? {
        Fetch::Found((_, bytes)) => decode(key, &bytes),
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

/// Reads a segment's records in order, one chunk (a ranged GET) at a time, so that memory stays
/// at one chunk whatever the segment's size.
///
/// A stream opened at the start of the body hashes every byte it reads and, once it reaches the
/// end, checks the body's SHA-256 and record count against the header: a damaged segment is an
/// error, never silently shorter. A stream opened at an offset (a restore task resuming inside a
/// segment the planner has already verified) skips that check.
pub struct SegmentStream<'a> {
    vault: &'a dyn ObjectStore,
    vault_bucket: &'a str,
    key: String,
    meta: SegmentMeta,
    sha256: String,
    /// The object's size in bytes.
    size: u64,
    /// The offset of the first byte not yet fetched.
    fetched: u64,
    /// Fetched bytes not yet parsed, starting at `offset`.
    buf: Vec<u8>,
    /// The offset of the next record not yet returned.
    offset: u64,
    chunk: u64,
    /// The running hash of the body, when the stream started at the body's start.
    hasher: Option<Sha256>,
    records: u64,
}

impl<'a> SegmentStream<'a> {
    /// Opens a segment at the start of its body (verified when read to the end).
    pub async fn open(vault: &'a dyn ObjectStore, vault_bucket: &'a str, key: &str, chunk: u64) -> Result<Self> {
        Self::open_at(vault, vault_bucket, key, None, chunk).await
    }

    /// Opens a segment at `offset` (an offset an earlier stream's [`SegmentStream::offset`] gave),
    /// or at the start of its body when `None`.
    pub async fn open_at(vault: &'a dyn ObjectStore, vault_bucket: &'a str, key: &str, offset: Option<u64>, chunk: u64) -> Result<Self> {
        let bad = |d: String| Error::corrupt(format!("segment {key}"), d);
        let Some(info) = vault.head(vault_bucket, key, None).await? else {
            return Err(bad("named by a recovery point but missing from the vault".into()));
        };
        let chunk = chunk.max(4096);
        // The header line is short (a few hundred bytes); read until its newline.
        let mut head = Vec::new();
        let nl = loop {
            let from = head.len() as u64;
            if from >= info.size {
                return Err(bad("no header line".into()));
            }
            let part = vault.get_range(vault_bucket, key, None, from, chunk.min(info.size - from)).await?;
            if part.is_empty() {
                return Err(bad("ends inside its header line".into()));
            }
            head.extend_from_slice(&part);
            if let Some(nl) = head.iter().position(|b| *b == b'\n') {
                break nl;
            }
        };
        let header: Header = serde_json::from_slice(&head[..nl]).map_err(|e| bad(format!("header: {e}")))?;
        check_format(&header).map_err(bad)?;
        let body_start = nl as u64 + 1;
        let mut stream = SegmentStream {
            vault,
            vault_bucket,
            key: key.to_string(),
            meta: header.meta,
            sha256: header.sha256,
            size: info.size,
            fetched: head.len() as u64,
            buf: head.split_off(nl + 1),
            offset: body_start,
            chunk,
            hasher: Some(Sha256::new()),
            records: 0,
        };
        if let Some(h) = stream.hasher.as_mut() {
            h.update(&stream.buf);
        }
        match offset {
            Some(at) if at > body_start => {
                if at > stream.size {
                    return Err(bad(format!("offset {at} is past its end ({} bytes)", stream.size)));
                }
                // Resuming inside the body: what came before was verified by whoever gave the offset.
                stream.hasher = None;
                stream.offset = at;
                if at <= stream.fetched {
                    stream.buf.drain(..(at - body_start) as usize);
                } else {
                    stream.buf.clear();
                    stream.fetched = at;
                }
            }
            _ => {}
        }
        Ok(stream)
    }

    /// The segment's header.
    pub fn meta(&self) -> &SegmentMeta {
        &self.meta
    }

    /// The segment's key in the vault.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The offset of the next record not yet returned (for [`SegmentStream::open_at`]).
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// The next record, or `None` at the end (after checking the body's hash and count when
    /// the stream read the whole body).
    pub async fn next(&mut self) -> Result<Option<CaptureRecord>> {
        loop {
            if let Some(nl) = self.buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=nl).collect();
                self.offset += line.len() as u64;
                if line.len() == 1 {
                    continue;
                }
                self.records += 1;
                match serde_json::from_slice(&line[..line.len() - 1]) {
                    Ok(rec) => return Ok(Some(rec)),
                    Err(e) => return Err(self.unreadable(format!("record at byte {}: {e}", self.offset)).await),
                }
            }
            if self.fetched >= self.size {
                if !self.buf.is_empty() {
                    return Err(Error::corrupt(format!("segment {}", self.key), "the last record has no newline"));
                }
                self.finish()?;
                return Ok(None);
            }
            let len = self.chunk.min(self.size - self.fetched);
            let part = self.vault.get_range(self.vault_bucket, &self.key, None, self.fetched, len).await?;
            if part.is_empty() {
                return Err(Error::corrupt(
                    format!("segment {}", self.key),
                    format!("ends at byte {}, not at {}", self.fetched, self.size),
                ));
            }
            if let Some(h) = self.hasher.as_mut() {
                h.update(&part);
            }
            self.fetched += part.len() as u64;
            self.buf.extend_from_slice(&part);
        }
    }

    /// The error for a record that does not parse. Damaged bytes are the likelier cause than a
    /// format defect, so a stream that hashes the body reads the rest of it and names a hash
    /// mismatch when there is one.
    async fn unreadable(&mut self, detail: String) -> Error {
        let bad = |d: String| Error::corrupt(format!("segment {}", self.key), d);
        if self.hasher.is_none() {
            return bad(detail);
        }
        while self.fetched < self.size {
            let len = self.chunk.min(self.size - self.fetched);
            match self.vault.get_range(self.vault_bucket, &self.key, None, self.fetched, len).await {
                Ok(part) if !part.is_empty() => {
                    if let Some(h) = self.hasher.as_mut() {
                        h.update(&part);
                    }
                    self.fetched += part.len() as u64;
                }
                _ => return bad(detail),
            }
        }
        let actual = hex::encode(self.hasher.take().expect("checked above").finalize());
        if actual != self.sha256 {
            return bad(format!("body sha256 {actual} does not match header {} ({detail})", self.sha256));
        }
        bad(detail)
    }

    /// Checks hash and count once a stream that started at the body's start reached the end.
    fn finish(&mut self) -> Result<()> {
        let Some(h) = self.hasher.take() else { return Ok(()) };
        let bad = |d: String| Error::corrupt(format!("segment {}", self.key), d);
        let actual = hex::encode(h.finalize());
        if actual != self.sha256 {
            return Err(bad(format!("body sha256 {actual} does not match header {}", self.sha256)));
        }
        if self.records != self.meta.count {
            return Err(bad(format!("{} records, header says {}", self.records, self.meta.count)));
        }
        Ok(())
    }
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
