//! Restore: resolve a prefix's state at time T from the vault and materialise it into a target, verified.
//!
//! Small objects are read with ranged GETs from their packs, checked against their SHA-256 and
//! written with that checksum so S3 verifies them again; large objects are copied server-side
//! with the part layout of their vault copy, so the target's ETag must equal the vault's.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::stream::{self, StreamExt};

use crate::domain::{CaptureRecord, Location};
use crate::engine::Engine;
use crate::ports::{Fetch, ObjectRef, ObjectStore, PutOptions};
use crate::restore::request::{RestoreMode, RestoreReport, RestoreRequest};
use crate::restore::resolve::resolve;
use crate::vault::pack::decode_blob;
use crate::vault::point::{point_for, RecoveryPoint};
use crate::vault::{self, segment};
use crate::{Error, Result};

/// Resolves the state of `prefix` at `as_of` from the recovery point that covers it.
pub async fn load_state(
    engine: &Engine,
    bucket: &str,
    prefix: &str,
    as_of: DateTime<Utc>,
) -> Result<(RecoveryPoint, BTreeMap<String, CaptureRecord>)> {
    let vault_bucket = engine.config.vault_bucket.clone();
    if !engine.vault.bucket_exists(&vault_bucket).await? {
        return Err(Error::NoSuchBucket { bucket: vault_bucket });
    }
    let point = point_for(engine.vault.as_ref(), &vault_bucket, bucket, as_of).await?;
    let keys: Vec<String> = point.segments.iter().filter(|s| s.may_contain_prefix(prefix)).map(|s| s.key.clone()).collect();
    let records = segment::read_many(engine.vault.as_ref(), &engine.config.vault_bucket, keys, engine.config.concurrency).await?;
    let state = resolve(records.iter().flatten(), prefix, as_of);
    Ok((point, state))
}

/// Restores a prefix as of a time into `target` (the S3 client that can write the target bucket).
pub async fn restore(
    engine: &Engine,
    target: Arc<dyn ObjectStore>,
    req: &RestoreRequest,
    progress: &(dyn Fn(u64, u64) + Sync),
) -> Result<RestoreReport> {
    if req.mode == RestoreMode::Copy && req.target_bucket == req.source_bucket && overlaps(&req.prefix, &req.target_prefix) {
        return Err(Error::Invalid("copy mode needs a target outside the restored prefix; use --mode rollback to restore in place".into()));
    }
    let (point, state) = load_state(engine, &req.source_bucket, &req.prefix, req.as_of).await?;
    let mut report = RestoreReport { recovery_point: Some(point.time), dry_run: req.dry_run, ..Default::default() };
    let map_key = |k: &str| format!("{}{}", req.target_prefix, &k[req.prefix.len()..]);
    let target_exists = target.bucket_exists(&req.target_bucket).await?;
    let current = if target_exists { list_current(target.as_ref(), &req.target_bucket, &req.target_prefix).await? } else { HashMap::new() };
    let mut todo: Vec<(String, CaptureRecord)> = Vec::new();
    let mut deletes = Vec::new();
    match req.mode {
        RestoreMode::Copy => {
            if !current.is_empty() {
                return Err(Error::Invalid(format!(
                    "target s3://{}/{} is not empty ({} objects); copy mode restores into an empty or new target",
                    req.target_bucket,
                    req.target_prefix,
                    current.len()
                )));
            }
            todo = state.into_iter().map(|(k, r)| (map_key(&k), r)).collect();
        }
        RestoreMode::Rollback => {
            if !target_exists {
                return Err(Error::NoSuchBucket { bucket: req.target_bucket.clone() });
            }
            let mut wanted = std::collections::HashSet::new();
            for (k, r) in state {
                let tk = map_key(&k);
                wanted.insert(tk.clone());
                if current.get(&tk).is_some_and(|etag| Some(etag) == r.etag.as_ref()) {
                    report.unchanged += 1;
                } else {
                    todo.push((tk, r));
                }
            }
            if req.delete_newer {
                deletes = current.keys().filter(|k| !wanted.contains(*k)).cloned().collect();
            }
        }
    }
    if req.dry_run {
        report.objects = todo.len() as u64;
        report.bytes = todo.iter().map(|(_, r)| r.size).sum();
        report.deleted = deletes.len() as u64;
        return Ok(report);
    }
    if !target_exists {
        target.create_bucket(&req.target_bucket).await?;
    }
    let total = todo.len() as u64;
    let mut done = 0u64;
    let in_place = req.mode == RestoreMode::Rollback && req.target_bucket == req.source_bucket;
    let mut results = stream::iter(todo)
        .map(|(tk, rec)| {
            let target = target.clone();
            let tb = req.target_bucket.clone();
            async move {
                let r = restore_one(engine, target.as_ref(), &tb, &tk, &rec, in_place).await;
                (tk, rec.size, r)
            }
        })
        .buffer_unordered(engine.config.concurrency.max(1));
    while let Some((key, size, r)) = results.next().await {
        done += 1;
        match r {
            Ok(()) => {
                report.objects += 1;
                report.bytes += size;
                report.verified += 1;
            }
            Err(e) => {
                tracing::error!(%key, error = %e, "restore of object failed");
                report.failed += 1;
                if report.failures.len() < 100 {
                    report.failures.push((key, e.to_string()));
                }
            }
        }
        if done % 250 == 0 || done == total {
            progress(done, total);
        }
    }
    drop(results);
    for k in deletes {
        target.delete(&req.target_bucket, &k).await?;
        report.deleted += 1;
    }
    Ok(report)
}

fn overlaps(a: &str, b: &str) -> bool {
    a.starts_with(b) || b.starts_with(a)
}

async fn list_current(store: &dyn ObjectStore, bucket: &str, prefix: &str) -> Result<HashMap<String, String>> {
    let page = crate::ports::list_all(store, bucket, prefix, None).await?;
    Ok(page.objects.into_iter().map(|o| (o.key, o.etag)).collect())
}

/// Restores one object and verifies it.
async fn restore_one(
    engine: &Engine,
    target: &dyn ObjectStore,
    bucket: &str,
    key: &str,
    rec: &CaptureRecord,
    in_place: bool,
) -> Result<()> {
    let vb = &engine.config.vault_bucket;
    // In place on a versioned source, the old version may still be there: copy it server-side.
    if in_place {
        if let (Some(v), Some(etag)) = (&rec.version_id, &rec.etag) {
            let src = ObjectRef { bucket: rec.bucket.clone(), key: rec.key.clone(), version_id: Some(v.clone()) };
            if rec.size < engine.config.multipart_copy_threshold {
                if let Fetch::Found(w) = target.copy(&src, Some(etag), bucket, key).await? {
                    if &w.etag == etag {
                        return Ok(());
                    }
                }
            }
        }
    }
    match &rec.location {
        Some(Location::Pack { pack, offset, length, .. }) => {
            let stored = engine.vault.get_range(vb, pack, None, *offset, *length).await?;
            let data: Bytes = decode_blob(rec, &stored)?;
            let opts = PutOptions {
                content_type: rec.content_type.clone(),
                metadata: rec.metadata.clone(),
                sha256_hex: rec.checksum.as_ref().filter(|c| c.algorithm == "SHA256").map(|c| c.value.clone()),
                if_none_match: false,
            };
            let w = target.put(bucket, key, data.clone(), &opts).await?;
            let md5 = hex::encode(<md5::Md5 as md5::Digest>::digest(&data));
            // A plain-MD5 ETag that disagrees means the bytes changed in transit.
            if w.etag.len() == 32 && !w.etag.contains('-') && w.etag != md5 && rec.etag.as_deref() == Some(md5.as_str()) {
                return Err(Error::ChecksumMismatch { key: key.into(), expected: md5, actual: w.etag });
            }
            Ok(())
        }
        Some(Location::Object { key: vkey, version_id, etag, part_size }) => {
            let src = ObjectRef { bucket: vb.clone(), key: vkey.clone(), version_id: version_id.clone() };
            let written = match part_size {
                None => match target.copy(&src, None, bucket, key).await? {
                    Fetch::Found(w) => w,
                    _ => return Err(Error::corrupt("vault object", format!("{vkey} is missing"))),
                },
                Some(ps) => {
                    let opts = PutOptions { content_type: rec.content_type.clone(), metadata: rec.metadata.clone(), ..Default::default() };
                    let upload = target.create_multipart(bucket, key, &opts).await?;
                    let mut parts = Vec::new();
                    for (i, (first, last)) in vault::part_ranges(rec.size, *ps).into_iter().enumerate() {
                        match target.upload_part_copy(bucket, key, &upload, i as i32 + 1, &src, None, first, last).await? {
                            Fetch::Found(e) => parts.push((i as i32 + 1, e)),
                            _ => {
                                target.abort_multipart(bucket, key, &upload).await?;
                                return Err(Error::corrupt("vault object", format!("{vkey} is missing")));
                            }
                        }
                    }
                    target.complete_multipart(bucket, key, &upload, &parts).await?
                }
            };
            if &written.etag != etag {
                return Err(Error::ChecksumMismatch { key: key.into(), expected: etag.clone(), actual: written.etag });
            }
            Ok(())
        }
        None => Err(Error::corrupt("capture record", format!("{} has no location", rec.key))),
    }
}
