//! Index segments: immutable, sorted files of capture records in the vault, and their reads and writes.
//!
//! Encoding (documented in ARCHITECTURE.md and docs/catalog.md): a header (`format`, `version`,
//! `key`, `bucket`, `kind`, `count`, `min_key`, `max_key`, `min_time`, `max_time`, `sha256` of the
//! body) and a body of newline-delimited JSON, one capture record a line, sorted by (key, event
//! time, sequencer, captured-at). Version 3, which this code writes, keeps them apart: the
//! segment's key (`v1/<bucket>/index/<id>.idx`) holds the header line alone, naming in `body` the
//! catalog object (`v1/<bucket>/catalog/<id>.ndjson`) that holds the records alone, and in
//! `body_size` its length, so that DuckDB and Athena read the catalog with one schema and no
//! header to skip. Versions 1 and 2 (still
//! read) hold the header as the first line of the segment object, followed by the body.

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
/// markers' version ids and purge records; the layout is version 1's. Version 3 has version 2's
/// records and header fields, with the body in a catalog object of its own (`body`). A record's
/// pack location may carry an `envelope` (an encrypted blob, pack version 3).
pub const FORMAT_VERSION: u32 = 3;

/// The first version whose body lives apart from its header.
const BODY_APART_SINCE: u32 = 3;

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

/// The two fields every version's header has, read first so that a header of a version this
/// build does not know is refused by its version rather than by whatever field it lacks.
#[derive(Deserialize)]
struct Version {
    format: String,
    version: u32,
}

#[derive(Serialize, Deserialize)]
struct Header {
    format: String,
    version: u32,
    #[serde(flatten)]
    meta: SegmentMeta,
    bucket: String,
    sha256: String,
    /// The key of the catalog object that holds the body (version 3 on); versions 1 and 2 have
    /// none, their body follows the header line in the segment object itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    body: Option<String>,
    /// The body's length in bytes (version 3 on), so that a streaming reader needs no HEAD of the
    /// catalog object (one request fewer per segment, and no trust in a length a HEAD may omit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    body_size: Option<u64>,
}

/// A segment as [`encode`] makes it: the header object, the body (the catalog object) and what
/// recovery points say of it.
#[derive(Debug, Clone)]
pub struct Encoded {
    /// The bytes of the segment object: the header line.
    pub header: Vec<u8>,
    /// The key of the catalog object, named by the header.
    pub body_key: String,
    /// The bytes of the catalog object: one record a line, sorted, nothing else.
    pub body: Vec<u8>,
    pub meta: SegmentMeta,
}

/// Encodes records (in any order) as a segment of key `key` whose body is written at `body_key`.
pub fn encode(key: &str, body_key: &str, bucket: &str, kind: SegmentKind, mut records: Vec<CaptureRecord>) -> Result<Encoded> {
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
        body: Some(body_key.into()),
        body_size: Some(body.len() as u64),
    };
    let mut out = serde_json::to_vec(&header).expect("header serialises");
    out.push(b'\n');
    Ok(Encoded { header: out, body_key: body_key.into(), body, meta })
}

/// Parses a header line, refusing a format or version this build cannot read; every earlier
/// format version stays readable, so a vault written by an older build restores after an upgrade.
fn parse_header(line: &[u8]) -> std::result::Result<Header, String> {
    let v: Version = serde_json::from_slice(line).map_err(|e| format!("header: {e}"))?;
    if v.format != "tidemark-segment" || !(1..=FORMAT_VERSION).contains(&v.version) {
        return Err(format!("unsupported format {} v{} (this build reads tidemark-segment v1 to v{FORMAT_VERSION})", v.format, v.version));
    }
    let header: Header = serde_json::from_slice(line).map_err(|e| format!("header: {e}"))?;
    match (&header.body, header.body_size, header.version >= BODY_APART_SINCE) {
        (None, _, true) | (_, None, true) => Err(format!("a v{} header names no body and its size", header.version)),
        (Some(_), _, false) | (_, Some(_), false) => {
            Err(format!("a v{} header names a body, which only v{BODY_APART_SINCE} on have", header.version))
        }
        _ => Ok(header),
    }
}

/// A segment object split into its header and, for versions 1 and 2, the body that follows it.
struct Split<'a> {
    header: Header,
    /// The body inside the segment object (versions 1 and 2); `None` when the header names a
    /// catalog object instead.
    inline: Option<&'a [u8]>,
}

fn split<'a>(key: &str, bytes: &'a [u8]) -> Result<Split<'a>> {
    let bad = |d: String| Error::corrupt(format!("segment {key}"), d);
    let nl = bytes.iter().position(|b| *b == b'\n').ok_or_else(|| bad("no header line".into()))?;
    let header = parse_header(&bytes[..nl]).map_err(bad)?;
    let rest = &bytes[nl + 1..];
    if header.body.is_some() {
        if !rest.is_empty() {
            return Err(bad(format!("{} bytes follow a v{} header, which stands alone", rest.len(), header.version)));
        }
        return Ok(Split { header, inline: None });
    }
    Ok(Split { header, inline: Some(rest) })
}

/// Checks a body against its header (SHA-256, record count) and parses its records. `first_line`
/// is the line number of the body's first line in its object, for errors.
fn decode_body(key: &str, header: &Header, body: &[u8], first_line: usize) -> Result<Vec<CaptureRecord>> {
    let bad = |d: String| Error::corrupt(format!("segment {key}"), d);
    if let (Some(of), Some(size)) = (&header.body, header.body_size) {
        if body.len() as u64 != size {
            return Err(bad(format!("body ({of}) is {} bytes, header says {size}", body.len())));
        }
    }
    let actual = hex::encode(Sha256::digest(body));
    if actual != header.sha256 {
        let of = header.body.as_deref().map(|b| format!(" ({b})")).unwrap_or_default();
        return Err(bad(format!("body{of} sha256 {actual} does not match header {}", header.sha256)));
    }
    let mut records = Vec::with_capacity(header.meta.count as usize);
    for (i, line) in body.split(|b| *b == b'\n').enumerate() {
        if line.is_empty() {
            continue;
        }
        records.push(serde_json::from_slice(line).map_err(|e| bad(format!("line {}: {e}", i + first_line)))?);
    }
    if records.len() as u64 != header.meta.count {
        return Err(bad(format!("{} records, header says {}", records.len(), header.meta.count)));
    }
    Ok(records)
}

/// Decodes and verifies a segment of version 1 or 2, whose object holds header and body. A
/// version-3 segment's records are elsewhere: [`decode_apart`] decodes it, [`read`] fetches both.
pub fn decode(key: &str, bytes: &[u8]) -> Result<(SegmentMeta, Vec<CaptureRecord>)> {
    let s = split(key, bytes)?;
    let Some(body) = s.inline else {
        return Err(Error::corrupt(
            format!("segment {key}"),
            format!("a v{} header whose records are in {}: decode it with its body", s.header.version, s.header.body.unwrap_or_default()),
        ));
    };
    let records = decode_body(key, &s.header, body, 2)?;
    Ok((s.header.meta, records))
}

/// Decodes and verifies a segment of version 3 from its header object and its catalog object.
pub fn decode_apart(key: &str, header: &[u8], body: &[u8]) -> Result<(SegmentMeta, Vec<CaptureRecord>)> {
    let s = split(key, header)?;
    if s.inline.is_some() {
        return Err(Error::corrupt(format!("segment {key}"), format!("a v{} header with its body inline", s.header.version)));
    }
    let records = decode_body(key, &s.header, body, 1)?;
    Ok((s.header.meta, records))
}

/// Writes records as a new segment of `bucket`'s index in the vault and returns its metadata.
///
/// The keys are new (an id from `now`), and the writes refuse to replace an existing object, so a
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
    let id = new_id(now);
    let key = layout::segment_key(bucket, &id);
    let e = encode(&key, &layout::catalog_key(bucket, &id), bucket, kind, records)?;
    // The body goes first: a header is only ever seen once the records it names are there, and
    // a writer killed between the two leaves a catalog object no segment names, which nothing
    // reads but a catalog query (docs/catalog.md says why such rows are duplicates, never news).
    // Both stay plaintext JSON for the catalog's readers; at rest they are SSE-KMS.
    let mut body = PutOptions { content_type: Some("application/x-ndjson".into()), if_none_match: true, ..Default::default() };
    body.attributes.sse = sse.clone();
    vault.put(vault_bucket, &e.body_key, Bytes::from(e.body), &body).await?;
    let mut header = PutOptions { content_type: Some("application/json".into()), if_none_match: true, ..Default::default() };
    header.attributes.sse = sse;
    vault.put(vault_bucket, &key, Bytes::from(e.header), &header).await?;
    Ok(e.meta)
}

/// Reads and verifies one segment from the vault.
pub async fn read(vault: &dyn ObjectStore, vault_bucket: &str, key: &str) -> Result<Vec<CaptureRecord>> {
    Ok(read_with_meta(vault, vault_bucket, key).await?.1)
}

/// Reads and verifies one segment from the vault, with its header: the segment object and, for
/// version 3, the catalog object its header names.
pub async fn read_with_meta(vault: &dyn ObjectStore, vault_bucket: &str, key: &str) -> Result<(SegmentMeta, Vec<CaptureRecord>)> {
    let bytes = match vault.get(vault_bucket, key, None, None).await? {
        Fetch::Found((_, bytes)) => bytes,
        _ => return Err(Error::corrupt(format!("segment {key}"), "named by a recovery point but missing from the vault")),
    };
    let s = split(key, &bytes)?;
    if let Some(body) = s.inline {
        let records = decode_body(key, &s.header, body, 2)?;
        return Ok((s.header.meta, records));
    }
    let body_key = s.header.body.clone().expect("a header without an inline body names one");
    let body = match vault.get(vault_bucket, &body_key, None, None).await? {
        Fetch::Found((_, bytes)) => bytes,
        _ => return Err(Error::corrupt(format!("segment {key}"), format!("its records {body_key} are missing from the vault"))),
    };
    let records = decode_body(key, &s.header, &body, 1)?;
    Ok((s.header.meta, records))
}

/// The key of the object that holds segment `key`'s records: the catalog object its header names
/// (version 3), or the segment object itself (versions 1 and 2). The header is parsed, not verified
/// against the body.
pub async fn records_object(vault: &dyn ObjectStore, vault_bucket: &str, key: &str) -> Result<String> {
    match vault.get(vault_bucket, key, None, None).await? {
        Fetch::Found((_, bytes)) => Ok(split(key, &bytes)?.header.body.unwrap_or_else(|| key.to_string())),
        _ => Err(Error::corrupt(format!("segment {key}"), "missing from the vault")),
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
/// segment the planner has already verified) skips that check. Offsets are bytes of the object
/// that holds the body: the segment object for versions 1 and 2, the catalog object for version 3.
pub struct SegmentStream<'a> {
    vault: &'a dyn ObjectStore,
    vault_bucket: &'a str,
    key: String,
    /// The object the body is read from: `key` itself (versions 1 and 2) or the catalog object.
    object: String,
    meta: SegmentMeta,
    sha256: String,
    /// The object's size in bytes.
    size: u64,
    /// The offset of the first byte not yet fetched.
    fetched: u64,
    /// Fetched bytes; those from `pos` on are not parsed yet and start at `offset`.
    buf: Vec<u8>,
    /// How many bytes at the front of `buf` are parsed. Lines are taken by moving this cursor,
    /// not by draining the buffer, which would move the rest of the chunk for every record.
    pos: usize,
    /// The offset of the next record not yet returned.
    offset: u64,
    chunk: u64,
    /// The running hash of the body, when the stream started at the body's start.
    hasher: Option<Sha256>,
    records: u64,
    /// The read of the chunk after the one being parsed, started as soon as that one arrived, so
    /// that its round trip overlaps the parsing instead of following it.
    ahead: Option<Ahead<'a>>,
}

/// A chunk read that runs ahead of the parser: the future, polled once per record handed out,
/// and its result once it is there.
struct Ahead<'a> {
    read: std::pin::Pin<Box<dyn std::future::Future<Output = Result<Bytes>> + Send + 'a>>,
    done: Option<Result<Bytes>>,
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
        let header = parse_header(&head[..nl]).map_err(bad)?;
        let mut stream = match header.body.clone() {
            None => {
                let body_start = nl as u64 + 1;
                SegmentStream {
                    vault,
                    vault_bucket,
                    key: key.to_string(),
                    object: key.to_string(),
                    meta: header.meta,
                    sha256: header.sha256,
                    size: info.size,
                    fetched: head.len() as u64,
                    buf: head.split_off(nl + 1),
                    pos: 0,
                    offset: body_start,
                    chunk,
                    hasher: Some(Sha256::new()),
                    records: 0,
                    ahead: None,
                }
            }
            Some(body) => {
                if info.size > nl as u64 + 1 {
                    return Err(bad(format!(
                        "{} bytes follow a v{} header, which stands alone",
                        info.size - nl as u64 - 1,
                        header.version
                    )));
                }
                // The header's length of the body stands in for a HEAD: a shorter object ends
                // the stream with an error, a longer one fails the hash.
                let size = header.body_size.expect("parse_header checks a v3 header names its body's size");
                if vault.head(vault_bucket, &body, None).await?.is_none() {
                    return Err(bad(format!("its records {body} are missing from the vault")));
                }
                SegmentStream {
                    vault,
                    vault_bucket,
                    key: key.to_string(),
                    object: body,
                    meta: header.meta,
                    sha256: header.sha256,
                    size,
                    fetched: 0,
                    buf: Vec::new(),
                    pos: 0,
                    offset: 0,
                    chunk,
                    hasher: Some(Sha256::new()),
                    records: 0,
                    ahead: None,
                }
            }
        };
        let body_start = stream.offset;
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
        if let Some(a) = self.ahead.as_mut().filter(|a| a.done.is_none()) {
            if let std::task::Poll::Ready(r) = futures::poll!(a.read.as_mut()) {
                a.done = Some(r);
            }
        }
        loop {
            if let Some(rel) = self.buf[self.pos..].iter().position(|b| *b == b'\n') {
                let (start, end) = (self.pos, self.pos + rel);
                self.pos = end + 1;
                self.offset += (end + 1 - start) as u64;
                if end == start {
                    continue;
                }
                self.records += 1;
                let parsed = serde_json::from_slice(&self.buf[start..end]);
                match parsed {
                    Ok(rec) => return Ok(Some(rec)),
                    Err(e) => return Err(self.unreadable(format!("record at byte {}: {e}", self.offset)).await),
                }
            }
            // Only an unfinished line is left: keep it at the front and fetch the next chunk.
            self.buf.drain(..self.pos);
            self.pos = 0;
            if self.fetched >= self.size {
                if !self.buf.is_empty() {
                    return Err(Error::corrupt(format!("segment {}", self.key), "the last record has no newline"));
                }
                self.finish()?;
                return Ok(None);
            }
            let part = self.next_chunk().await?;
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
            if self.fetched < self.size {
                self.ahead = Some(Ahead { read: self.read_at(self.fetched), done: None });
            }
        }
    }

    /// The chunk at the first byte not yet fetched: the read ahead's, or a read now.
    async fn next_chunk(&mut self) -> Result<Bytes> {
        match self.ahead.take() {
            Some(Ahead { done: Some(r), .. }) => r,
            Some(Ahead { read, done: None }) => read.await,
            None => self.read_at(self.fetched).await,
        }
    }

    /// The read of the chunk at `from`, as a future that borrows nothing from the stream.
    fn read_at(&self, from: u64) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<Bytes>> + Send + 'a>> {
        let (vault, bucket, object) = (self.vault, self.vault_bucket, self.object.clone());
        let len = self.chunk.min(self.size - from);
        Box::pin(async move { vault.get_range(bucket, &object, None, from, len).await })
    }

    /// The error for a record that does not parse. Damaged bytes are the likelier cause than a
    /// format defect, so a stream that hashes the body reads the rest of it and names a hash
    /// mismatch when there is one.
    async fn unreadable(&mut self, detail: String) -> Error {
        let what = format!("segment {}", self.key);
        let bad = |d: String| Error::corrupt(what.clone(), d);
        if self.hasher.is_none() {
            return bad(detail);
        }
        while self.fetched < self.size {
            match self.next_chunk().await {
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

    fn two() -> Vec<CaptureRecord> {
        let t = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        vec![CaptureRecord::delete("b", "z", t, None, t), CaptureRecord::delete("b", "a", t, None, t)]
    }

    #[test]
    fn segments_round_trip_sorted_and_detect_tampering() {
        let e = encode("k", "v1/b/catalog/x.ndjson", "b", SegmentKind::Delta, two()).unwrap();
        let meta = e.meta.clone();
        assert_eq!((meta.min_key.as_str(), meta.max_key.as_str(), meta.count), ("a", "z", 2));
        let (m2, back) = decode_apart("k", &e.header, &e.body).unwrap();
        assert_eq!(m2, meta);
        assert_eq!(back[0].key, "a");
        let mut bad = e.body.clone();
        let n = bad.len();
        bad[n - 3] ^= 1;
        let err = decode_apart("k", &e.header, &bad).unwrap_err().to_string();
        assert!(err.contains("sha256") && err.contains("v1/b/catalog/x.ndjson"), "{err}");
    }

    #[test]
    fn the_header_stands_alone_and_the_body_is_records_only() {
        let e = encode("k", "v1/b/catalog/x.ndjson", "b", SegmentKind::Delta, two()).unwrap();
        assert_eq!(e.header.iter().filter(|b| **b == b'\n').count(), 1, "one header line");
        let h: serde_json::Value = serde_json::from_slice(&e.header).unwrap();
        assert_eq!((h["version"].as_u64(), h["body"].as_str()), (Some(3), Some("v1/b/catalog/x.ndjson")), "{h}");
        // Every line of the body is a capture record: a reader needs no header to skip.
        for line in e.body.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            let v: serde_json::Value = serde_json::from_slice(line).unwrap();
            assert!(v.get("format").is_none() && v["key"].is_string() && v["kind"] == "delete", "{v}");
        }
        // A v3 header is not a whole segment: `decode` says where its records are.
        let err = decode("k", &e.header).unwrap_err().to_string();
        assert!(err.contains("v1/b/catalog/x.ndjson"), "{err}");
        // Nor does it carry a body of its own.
        let mut glued = e.header.clone();
        glued.extend_from_slice(&e.body);
        let err = decode_apart("k", &glued, &e.body).unwrap_err().to_string();
        assert!(err.contains("stands alone"), "{err}");
    }

    /// A segment as versions 1 and 2 wrote it: the header line, then the body, in one object.
    fn inline(version: u32, body: &[u8], named_body: Option<&str>) -> Vec<u8> {
        let t = "2026-01-01T00:00:00Z";
        let mut h = serde_json::json!({
            "format": "tidemark-segment", "version": version, "key": "k", "kind": "seed", "count": 2,
            "min_key": "a", "max_key": "z", "min_time": t, "max_time": t, "bucket": "b",
            "sha256": hex::encode(Sha256::digest(body)),
        });
        if let Some(b) = named_body {
            h["body"] = b.into();
        }
        let mut out = serde_json::to_vec(&h).unwrap();
        out.push(b'\n');
        out.extend_from_slice(body);
        out
    }

    #[test]
    fn header_first_segments_of_versions_1_and_2_still_decode() {
        let e = encode("k", "v1/b/catalog/x.ndjson", "b", SegmentKind::Seed, two()).unwrap();
        for v in [1, 2] {
            let (meta, recs) = decode("k", &inline(v, &e.body, None)).unwrap();
            assert_eq!((meta.count, recs.len(), recs[0].key.as_str()), (2, 2, "a"), "v{v}");
        }
        let err = decode("k", &inline(2, &e.body, Some("v1/b/catalog/x.ndjson"))).unwrap_err().to_string();
        assert!(err.contains("v2 header names a body"), "{err}");
    }

    #[test]
    fn an_unknown_version_is_refused_by_name() {
        let e = encode("v1/b/index/x.idx", "v1/b/catalog/x.ndjson", "b", SegmentKind::Seed, two()).unwrap();
        // A later version may change any field; the version alone decides.
        let future = br#"{"format":"tidemark-segment","version":4,"records_at":"elsewhere"}
"#;
        for err in [decode("v1/b/index/x.idx", future), decode_apart("v1/b/index/x.idx", future, &e.body)] {
            let err = err.unwrap_err().to_string();
            assert!(err.contains("v1/b/index/x.idx") && err.contains("tidemark-segment v4"), "{err}");
            assert!(err.contains("reads tidemark-segment v1 to v3"), "{err}");
        }
        let err = decode("k", &inline(3, &e.body, None)).unwrap_err().to_string();
        assert!(err.contains("v3 header names no body"), "{err}");
        // A body of another length than its header says is named as such.
        let mut short = e.body.clone();
        short.pop();
        let err = decode_apart("k", &e.header, &short).unwrap_err().to_string();
        assert!(err.contains("header says") && err.contains("v1/b/catalog/x.ndjson"), "{err}");
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
