//! The capture pipeline shared by seed workers and the delta handler.
//!
//! Small objects are read and streamed into packs; large ones are copied server-side (one
//! CopyObject, or UploadPartCopy in parallel parts), so their bytes never pass through the
//! process. The resulting capture records go into one index segment per batch.

pub mod verify;

use bytes::Bytes;
use chrono::{DateTime, SubsecRound, Utc};
use futures::stream::{self, StreamExt};

use crate::config::ArchivedPolicy;
use crate::control::Counters;
use crate::domain::{archive_tier, new_id, stable_id, CaptureKind, CaptureRecord, Location, ObjectInfo};
use crate::engine::Engine;
use crate::ports::{Fetch, ObjectRef, ObjectStore, PutOptions};
use crate::vault::pack::PackSink;
use crate::{vault, Error, Result};

/// One object to capture.
#[derive(Debug, Clone)]
pub struct CaptureItem {
    pub key: String,
    /// Capture exactly this version (versioned buckets).
    pub version_id: Option<String>,
    /// Capture only if the current object still has this ETag (unversioned buckets).
    pub if_match: Option<String>,
    /// The size the listing or event reported; decides packing versus server-side copy.
    pub size_hint: u64,
    /// The event's sequencer, kept on the record to order same-second events.
    pub sequencer: Option<String>,
    /// Record the version as known from this time on only (keeping its Last-Modified in
    /// `last_modified`): an older version that a permanent delete made current, of which the
    /// catalog may know nothing before then.
    pub visible_from: Option<DateTime<Utc>>,
}

impl CaptureItem {
    /// An item for `key` of `size_hint` bytes, with no version, precondition or sequencer.
    pub fn new(key: impl Into<String>, size_hint: u64) -> Self {
        CaptureItem { key: key.into(), version_id: None, if_match: None, size_hint, sequencer: None, visible_from: None }
    }
}

enum Captured {
    Small(CaptureRecord, Bytes),
    Large(CaptureRecord),
    /// In an archive tier: recorded with its class and no location.
    Archived(CaptureRecord),
    /// Deleted, or replaced by a newer version, before it could be read: not a failure.
    Gone,
}

fn clean_version(v: Option<String>) -> Option<String> {
    v.filter(|v| v != "null" && !v.is_empty())
}

/// What one batch reads from its source besides the objects.
struct Reader<'a> {
    engine: &'a Engine,
    source: &'a dyn ObjectStore,
    bucket: &'a str,
    /// Whether the bucket has ACLs enabled and ACLs are captured.
    acls: bool,
}

impl Reader<'_> {
    /// Fills the attributes that need requests of their own: the tags (unless S3 said there are
    /// none) and, where the bucket has ACLs, the ACL. Returns the requests sent, or `None` if the
    /// object vanished in between.
    async fn enrich(&self, info: &mut ObjectInfo) -> Result<Option<u64>> {
        let version = clean_version(info.version_id.clone());
        let mut requests = 0;
        if info.tag_count != Some(0) {
            requests += 1;
            match self.source.get_tags(self.bucket, &info.key, version.as_deref()).await? {
                Some(tags) => info.attributes.tags = tags,
                None => return Ok(None),
            }
        }
        if self.acls {
            requests += 1;
            match self.source.get_acl(self.bucket, &info.key, version.as_deref()).await? {
                Some(acl) => info.attributes.acl = Some(acl),
                None => return Ok(None),
            }
        }
        Ok(Some(requests))
    }

    /// The record of an object found in an archive tier: its class, no location; and, when the
    /// configuration says so, a RestoreObject so that a later capture (the restore's completion
    /// event, or reconciliation) can read it.
    async fn archived(&self, key: &str, version_id: Option<&str>, sequencer: Option<String>) -> Result<(Captured, u64)> {
        let cfg = &self.engine.config;
        let Some(mut info) = self.source.head(self.bucket, key, version_id).await? else {
            return Ok((Captured::Gone, 1));
        };
        info.key = key.to_string();
        let Some(tier) = archive_tier(&info) else {
            return Err(Error::port("GetObject", format!("s3://{}/{key} was restored while it was read; retrying", self.bucket), true));
        };
        let mut requests = 1;
        if let ArchivedPolicy::Restore { days } = cfg.archived {
            self.source.restore_archived(self.bucket, key, clean_version(info.version_id.clone()).as_deref(), days).await?;
            requests += 1;
        }
        let Some(n) = self.enrich(&mut info).await? else { return Ok((Captured::Gone, requests)) };
        let mut rec = put_record(self.bucket, &info, sequencer, self.engine.clock.now());
        rec.attributes.archived = Some(tier);
        Ok((Captured::Archived(rec), requests + n))
    }
}

/// The record of a put from what S3 said about the object (the location is filled later).
fn put_record(bucket: &str, info: &ObjectInfo, sequencer: Option<String>, now: DateTime<Utc>) -> CaptureRecord {
    CaptureRecord {
        bucket: bucket.into(),
        key: info.key.clone(),
        version_id: clean_version(info.version_id.clone()),
        event_time: info.last_modified.trunc_subsecs(0),
        sequencer,
        captured_at: now,
        kind: CaptureKind::Put,
        size: info.size,
        etag: Some(info.etag.clone()),
        checksum: None,
        content_type: info.content_type.clone(),
        metadata: info.metadata.clone(),
        location: None,
        last_modified: None,
        attributes: info.attributes.clone(),
    }
}

async fn capture_one(reader: &Reader<'_>, item: CaptureItem) -> Result<(Captured, u64)> {
    let visible_from = item.visible_from;
    let (mut captured, requests) = capture_version(reader, item).await?;
    if let (Some(at), Captured::Small(rec, _) | Captured::Large(rec) | Captured::Archived(rec)) = (visible_from, &mut captured) {
        rec.last_modified = Some(rec.event_time);
        rec.event_time = at.trunc_subsecs(0).max(rec.event_time);
    }
    Ok((captured, requests))
}

async fn capture_version(reader: &Reader<'_>, item: CaptureItem) -> Result<(Captured, u64)> {
    let (engine, source, bucket) = (reader.engine, reader.source, reader.bucket);
    let now = engine.clock.now();
    if item.size_hint < engine.config.small_object_threshold {
        let fetched = match source.get(bucket, &item.key, item.version_id.as_deref(), item.if_match.as_deref()).await {
            Err(Error::Archived { .. }) => return reader.archived(&item.key, item.version_id.as_deref(), item.sequencer).await,
            other => other?,
        };
        return match fetched {
            Fetch::Found((mut info, data)) => {
                info.key = item.key.clone();
                verify::verify_source(bucket, &info, &data)?;
                let Some(n) = reader.enrich(&mut info).await? else { return Ok((Captured::Gone, 1)) };
                Ok((Captured::Small(put_record(bucket, &info, item.sequencer, now), data), 1 + n))
            }
            Fetch::NotFound | Fetch::Changed => Ok((Captured::Gone, 1)),
        };
    }
    // A large object: learn its version and metadata, then copy that exact version.
    let mut requests = 0;
    for _ in 0..3 {
        requests += 1;
        let Some(mut info) = source.head(bucket, &item.key, item.version_id.as_deref()).await? else {
            return Ok((Captured::Gone, requests));
        };
        info.key = item.key.clone();
        if item.if_match.as_deref().is_some_and(|e| e != info.etag) {
            return Ok((Captured::Gone, requests));
        }
        let version = clean_version(info.version_id.clone());
        if archive_tier(&info).is_some() {
            let (c, n) = reader.archived(&item.key, version.as_deref(), item.sequencer.clone()).await?;
            return Ok((c, requests + n));
        }
        let Some(n) = reader.enrich(&mut info).await? else { return Ok((Captured::Gone, requests)) };
        requests += n;
        let src = ObjectRef { bucket: bucket.into(), key: item.key.clone(), version_id: version };
        let (fetched, n) = match copy_to_vault(engine, &src, &info).await {
            Err(Error::Archived { .. }) => return reader.archived(&item.key, src.version_id.as_deref(), item.sequencer.clone()).await,
            other => other?,
        };
        requests += n;
        match fetched {
            Fetch::Found(location) => {
                let mut rec = put_record(bucket, &info, item.sequencer.clone(), now);
                rec.location = Some(location);
                return Ok((Captured::Large(rec), requests));
            }
            Fetch::NotFound if item.version_id.is_some() => return Ok((Captured::Gone, requests)),
            // The object changed between HEAD and copy: look again and copy the new version.
            Fetch::NotFound | Fetch::Changed => continue,
        }
    }
    Err(Error::port("copy large object", format!("s3://{bucket}/{} kept changing during copy", item.key), true))
}

/// A record of a change of a version's attributes (tags, storage class, ACL) at `at`, from what
/// S3 says about the version now; no bytes are read: restore takes them from the version's
/// other records. `None` if the version no longer exists.
pub async fn describe(
    engine: &Engine,
    source: &dyn ObjectStore,
    bucket: &str,
    key: &str,
    version_id: Option<&str>,
    at: DateTime<Utc>,
) -> Result<Option<(CaptureRecord, u64)>> {
    let reader = Reader { engine, source, bucket, acls: acls_enabled(engine, source, bucket).await? };
    let Some(mut info) = source.head(bucket, key, version_id).await? else { return Ok(None) };
    info.key = key.to_string();
    let Some(n) = reader.enrich(&mut info).await? else { return Ok(None) };
    let mut rec = put_record(bucket, &info, None, engine.clock.now());
    rec.last_modified = Some(rec.event_time);
    rec.event_time = at.trunc_subsecs(0).max(rec.event_time);
    Ok(Some((rec, n + 2)))
}

/// Whether ACLs are captured from `bucket`: when the configuration asks for them and the bucket
/// has ACLs enabled (a bucket whose ownership is `BucketOwnerEnforced` has none). A bucket that
/// does not let the read role ask is read without ACLs, and the log says so.
async fn acls_enabled(engine: &Engine, source: &dyn ObjectStore, bucket: &str) -> Result<bool> {
    if !engine.config.capture_acls {
        return Ok(false);
    }
    match source.acls_enabled(bucket).await {
        Ok(enabled) => Ok(enabled),
        Err(e) if !e.is_transient() => {
            tracing::info!(%bucket, error = %e, "cannot tell whether the bucket has ACLs; ACLs are not captured");
            Ok(false)
        }
        Err(e) => Err(e),
    }
}

/// Copies one source version into the vault server-side; returns its location and the requests sent.
pub async fn copy_to_vault(engine: &Engine, src: &ObjectRef, info: &ObjectInfo) -> Result<(Fetch<Location>, u64)> {
    let cfg = &engine.config;
    let object_id = stable_id(&[&src.bucket, &src.key, src.version_id.as_deref().unwrap_or(""), &info.etag]);
    let key = vault::object_key(&src.bucket, &object_id);
    let if_match = Some(info.etag.as_str());
    if info.size < cfg.multipart_copy_threshold {
        // With a vault key the copy names it (SSE-KMS), which only a copy that replaces the
        // object's metadata can; the record keeps the source's metadata, which restores use.
        let copied = match cfg.vault_sse() {
            None => engine.vault.copy(src, if_match, &cfg.vault_bucket, &key).await?,
            Some(sse) => {
                let mut opts =
                    PutOptions { content_type: info.content_type.clone(), metadata: info.metadata.clone(), ..Default::default() };
                opts.attributes.sse = Some(sse);
                engine.vault.copy_with(src, if_match, &cfg.vault_bucket, &key, &opts).await?
            }
        };
        return Ok(match copied {
            // A single-part copy keeps the ETag, so a different one means the source changed under
            // us even if the server ignored the precondition; that copy is not recorded.
            Fetch::Found(w) if !info.etag.contains('-') && w.etag != info.etag => (Fetch::Changed, 1),
            Fetch::Found(w) => (Fetch::Found(Location::Object { key, version_id: w.version_id, etag: w.etag, part_size: None }), 1),
            Fetch::NotFound => (Fetch::NotFound, 1),
            Fetch::Changed => (Fetch::Changed, 1),
        });
    }
    let mut opts = PutOptions { content_type: info.content_type.clone(), metadata: info.metadata.clone(), ..Default::default() };
    opts.attributes.sse = cfg.vault_sse();
    let upload = engine.vault.create_multipart(&cfg.vault_bucket, &key, &opts).await?;
    let ranges = vault::part_ranges(info.size, cfg.copy_part_bytes);
    let n = ranges.len() as u64;
    let results: Vec<Result<(i32, Fetch<String>)>> = stream::iter(ranges.into_iter().enumerate())
        .map(|(i, (first, last))| {
            let (vault, bucket, key, upload) = (engine.vault.clone(), cfg.vault_bucket.clone(), key.clone(), upload.clone());
            async move {
                let part = i as i32 + 1;
                Ok((part, vault.upload_part_copy(&bucket, &key, &upload, part, src, if_match, first, last).await?))
            }
        })
        .buffer_unordered(cfg.concurrency.max(1))
        .collect()
        .await;
    let mut parts = Vec::new();
    let mut outcome = None;
    for r in results {
        match r {
            Ok((p, Fetch::Found(etag))) => parts.push((p, etag)),
            Ok((_, Fetch::NotFound)) => outcome = Some(Fetch::NotFound),
            Ok((_, Fetch::Changed)) => outcome = outcome.or(Some(Fetch::Changed)),
            Err(e) => {
                let _ = engine.vault.abort_multipart(&cfg.vault_bucket, &key, &upload).await;
                return Err(e);
            }
        }
    }
    if let Some(o) = outcome {
        engine.vault.abort_multipart(&cfg.vault_bucket, &key, &upload).await?;
        return Ok((o, n + 2));
    }
    parts.sort();
    let w = engine.vault.complete_multipart(&cfg.vault_bucket, &key, &upload, &parts).await?;
    let loc = Location::Object { key, version_id: w.version_id, etag: w.etag, part_size: Some(cfg.copy_part_bytes) };
    Ok((Fetch::Found(loc), n + 2))
}

/// An object that could not be captured, with the reason: it is never reported as captured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaptureFailure {
    pub key: String,
    pub version_id: Option<String>,
    pub reason: String,
}

/// What a batch capture produced.
pub struct BatchResult {
    pub records: Vec<CaptureRecord>,
    /// Objects whose capture failed permanently (access denied, KMS denied, …).
    pub failures: Vec<CaptureFailure>,
    /// Objects gone (or replaced) before they could be read, as (key, version asked for).
    pub vanished: Vec<(String, Option<String>)>,
    pub counters: Counters,
}

/// Captures a batch of objects: packs the small ones, copies the large ones, returns the records.
///
/// Objects are read through `source` (the task's [`crate::scheduler::source::PacedStore`], which
/// paces and retries throttled requests); large ones are copied by the vault store. Every read
/// is verified against what S3 says of the object ([`verify`]), and the object's tags (and ACL,
/// where the bucket has ACLs) are read with it. A permanent failure of one object is returned
/// in [`BatchResult::failures`] and the batch goes on; a transient one fails the batch, which the
/// caller redoes from its last checkpoint. An archived object is recorded with its class and no
/// location (and restored first, if the configuration says so).
pub async fn capture_batch(engine: &Engine, source: &dyn ObjectStore, bucket: &str, items: Vec<CaptureItem>) -> Result<BatchResult> {
    let cfg = &engine.config;
    let mut counters = Counters::default();
    let mut records = Vec::new();
    let mut failures = Vec::new();
    let mut vanished = Vec::new();
    if items.is_empty() {
        return Ok(BatchResult { records, failures, vanished, counters });
    }
    let reader = Reader { engine, source, bucket, acls: acls_enabled(engine, source, bucket).await? };
    if cfg.capture_acls {
        counters.source_requests += 1;
    }
    let new_pack = |engine: &Engine| {
        let key = vault::pack_key(bucket, engine.clock.now(), &new_id(engine.clock.now()));
        let sink =
            PackSink::new(engine.vault.clone(), &cfg.vault_bucket, &key, cfg.pack_part_bytes, cfg.compress).with_sse(cfg.vault_sse());
        match &cfg.kms_key_id {
            Some(id) => sink.encrypted(engine.keys.clone(), id),
            None => sink,
        }
    };
    let mut pack = new_pack(engine);
    let reader = &reader;
    let mut results = stream::iter(items)
        .map(|item| async move {
            let (key, version_id) = (item.key.clone(), item.version_id.clone());
            let r = capture_one(reader, item).await;
            (key, version_id, r)
        })
        .buffer_unordered(cfg.concurrency.max(1));
    while let Some((key, version_id, r)) = results.next().await {
        let (captured, requests) = match r {
            Ok(ok) => ok,
            // A permanent failure of one object (access denied, a key it may not use) is
            // returned with its reason; the batch goes on. Transient ones retry the whole batch.
            Err(e) if !e.is_transient() => {
                tracing::error!(%bucket, %key, error = %e, "object could not be captured");
                counters.failed += 1;
                failures.push(CaptureFailure { key, version_id, reason: e.to_string() });
                continue;
            }
            Err(e) => return Err(e),
        };
        counters.source_requests += requests;
        match captured {
            Captured::Small(rec, data) => {
                counters.objects += 1;
                counters.bytes += data.len() as u64;
                pack.add(rec, &data).await?;
                if pack.len() >= cfg.pack_target_bytes {
                    let full = std::mem::replace(&mut pack, new_pack(engine));
                    let (recs, reqs) = full.finish().await?;
                    counters.packs += 1;
                    counters.vault_requests += reqs;
                    records.extend(recs);
                }
            }
            Captured::Large(rec) => {
                counters.objects += 1;
                counters.bytes += rec.size;
                counters.large_objects += 1;
                counters.vault_requests += 1;
                records.push(rec);
            }
            Captured::Archived(rec) => {
                counters.archived += 1;
                records.push(rec);
            }
            Captured::Gone => {
                counters.vanished += 1;
                vanished.push((key, version_id));
            }
        }
    }
    drop(results);
    if !pack.is_empty() {
        counters.packs += 1;
    }
    let (recs, reqs) = pack.finish().await?;
    counters.vault_requests += reqs;
    records.extend(recs);
    Ok(BatchResult { records, failures, vanished, counters })
}
