//! The capture pipeline shared by seed workers and the delta handler.
//!
//! Small objects are read and streamed into packs; large ones are copied server-side (one
//! CopyObject, or UploadPartCopy in parallel parts), so their bytes never pass through the
//! process. The resulting capture records go into one index segment per batch.

use bytes::Bytes;
use chrono::SubsecRound;
use futures::stream::{self, StreamExt};

use crate::control::Counters;
use crate::domain::{new_id, stable_id, CaptureKind, CaptureRecord, Location, ObjectInfo};
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
}

enum Captured {
    Small(CaptureRecord, Bytes),
    Large(CaptureRecord),
    /// Deleted, or replaced by a newer version, before it could be read: not a failure.
    Gone,
}

fn clean_version(v: Option<String>) -> Option<String> {
    v.filter(|v| v != "null" && !v.is_empty())
}

fn put_record(bucket: &str, info: &ObjectInfo, sequencer: Option<String>, now: chrono::DateTime<chrono::Utc>) -> CaptureRecord {
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
    }
}

async fn capture_one(engine: &Engine, source: &dyn ObjectStore, bucket: &str, item: CaptureItem) -> Result<(Captured, u64)> {
    let now = engine.clock.now();
    if item.size_hint < engine.config.small_object_threshold {
        return match source.get(bucket, &item.key, item.version_id.as_deref(), item.if_match.as_deref()).await? {
            Fetch::Found((info, data)) => {
                let mut info = info;
                info.key = item.key.clone();
                Ok((Captured::Small(put_record(bucket, &info, item.sequencer, now), data), 1))
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
        let src = ObjectRef { bucket: bucket.into(), key: item.key.clone(), version_id: clean_version(info.version_id.clone()) };
        let (fetched, n) = copy_to_vault(engine, &src, &info).await?;
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

/// Copies one source version into the vault server-side; returns its location and the requests sent.
pub async fn copy_to_vault(engine: &Engine, src: &ObjectRef, info: &ObjectInfo) -> Result<(Fetch<Location>, u64)> {
    let cfg = &engine.config;
    let object_id = stable_id(&[&src.bucket, &src.key, src.version_id.as_deref().unwrap_or(""), &info.etag]);
    let key = vault::object_key(&src.bucket, &object_id);
    let if_match = Some(info.etag.as_str());
    if info.size < cfg.multipart_copy_threshold {
        return Ok(match engine.vault.copy(src, if_match, &cfg.vault_bucket, &key).await? {
            // A single-part copy keeps the ETag, so a different one means the source changed under
            // us even if the server ignored the precondition; that copy is not recorded.
            Fetch::Found(w) if !info.etag.contains('-') && w.etag != info.etag => (Fetch::Changed, 1),
            Fetch::Found(w) => (Fetch::Found(Location::Object { key, version_id: w.version_id, etag: w.etag, part_size: None }), 1),
            Fetch::NotFound => (Fetch::NotFound, 1),
            Fetch::Changed => (Fetch::Changed, 1),
        });
    }
    let opts = PutOptions { content_type: info.content_type.clone(), metadata: info.metadata.clone(), ..Default::default() };
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

/// What a batch capture produced.
pub struct BatchResult {
    pub records: Vec<CaptureRecord>,
    pub counters: Counters,
}

/// Captures a batch of objects: packs the small ones, copies the large ones, returns the records.
///
/// Objects are read through `source` (the task's [`crate::scheduler::source::PacedStore`], which
/// paces and retries throttled requests); large ones are copied by the vault store. A permanent
/// failure of one object is counted and the batch goes on; a transient one fails the batch, which
/// the caller redoes from its last checkpoint.
pub async fn capture_batch(engine: &Engine, source: &dyn ObjectStore, bucket: &str, items: Vec<CaptureItem>) -> Result<BatchResult> {
    let cfg = &engine.config;
    let mut counters = Counters::default();
    let mut records = Vec::new();
    let new_pack = |engine: &Engine| {
        let key = vault::pack_key(bucket, engine.clock.now(), &new_id(engine.clock.now()));
        PackSink::new(engine.vault.clone(), &cfg.vault_bucket, &key, cfg.pack_part_bytes, cfg.compress)
    };
    let mut pack = new_pack(engine);
    let mut results = stream::iter(items)
        .map(|item| async move {
            let key = item.key.clone();
            capture_one(engine, source, bucket, item).await.map_err(|e| (key, e))
        })
        .buffer_unordered(cfg.concurrency.max(1));
    while let Some(r) = results.next().await {
        let (captured, requests) = match r {
            Ok(ok) => ok,
            // A permanent failure of one object (access denied, an archived storage class) is
            // counted and reported; the batch goes on. Transient ones retry the whole batch.
            Err((key, e)) if !e.is_transient() => {
                tracing::error!(%bucket, %key, error = %e, "object could not be captured");
                counters.failed += 1;
                continue;
            }
            Err((_, e)) => return Err(e),
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
            Captured::Gone => counters.vanished += 1,
        }
    }
    drop(results);
    if !pack.is_empty() {
        counters.packs += 1;
    }
    let (recs, reqs) = pack.finish().await?;
    counters.vault_requests += reqs;
    records.extend(recs);
    Ok(BatchResult { records, counters })
}
