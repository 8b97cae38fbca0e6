//! Restore: resolve a prefix's state at time T from the vault and materialise it into a target, verified.
//!
//! Small objects are read with ranged GETs from their packs, checked against their SHA-256 and
//! written with that checksum so S3 verifies them again; large objects are copied server-side
//! with the part layout of their vault copy, so the target's ETag must equal the vault's. Each
//! object is written with the attributes its record holds (`restore::attributes`); what a write
//! could not apply, and the keys the recovery point names as unprotected at T (or that were
//! archived when captured), are reported rather than left out without a word.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::stream::{self, StreamExt};
use serde::{Deserialize, Serialize};

use crate::domain::{CaptureRecord, Location};
use crate::engine::Engine;
use crate::ports::{Fetch, ObjectRef, ObjectStore};
use crate::restore::attributes::{write_options, AttributeRequest, NotApplied, WritePath};
use crate::restore::resolve::resolve;
use crate::vault::pack::decode_blob;
use crate::vault::point::{point_for, RecoveryPoint};
use crate::vault::{self, segment};
use crate::{Error, Result};

/// How a restore writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RestoreMode {
    /// Into an empty or new target.
    Copy,
    /// In place: rewrite changed keys, optionally delete keys born after T.
    Rollback,
}

impl std::str::FromStr for RestoreMode {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "copy" => Ok(RestoreMode::Copy),
            "rollback" => Ok(RestoreMode::Rollback),
            other => Err(Error::Invalid(format!("restore mode '{other}' is not one of: copy, rollback"))),
        }
    }
}

/// A restore request, as the CLI, the REST API and console test events give it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RestoreRequest {
    pub source_bucket: String,
    #[serde(default)]
    pub prefix: String,
    pub as_of: DateTime<Utc>,
    pub target_bucket: String,
    #[serde(default)]
    pub target_prefix: String,
    #[serde(default = "default_mode")]
    pub mode: RestoreMode,
    /// In rollback mode, delete keys that did not exist at T.
    #[serde(default)]
    pub delete_newer: bool,
    #[serde(default)]
    pub dry_run: bool,
    /// Which optional attributes (storage class, Object Lock, ACL) to write.
    #[serde(default)]
    pub attributes: AttributeRequest,
}

fn default_mode() -> RestoreMode {
    RestoreMode::Copy
}

/// What a restore did (or, for a dry run, would do).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RestoreReport {
    pub objects: u64,
    pub bytes: u64,
    pub verified: u64,
    pub failed: u64,
    pub deleted: u64,
    pub unchanged: u64,
    pub recovery_point: Option<DateTime<Utc>>,
    pub dry_run: bool,
    /// Keys that failed, with the reason (at most 100 are kept).
    pub failures: Vec<(String, String)>,
    /// Attributes that were not written, as (key, "attribute: reason") (at most 100 are kept).
    #[serde(default)]
    pub not_applied: Vec<(String, String)>,
    /// How many attributes were not written, over all objects.
    #[serde(default)]
    pub attributes_not_applied: u64,
    /// Keys whose state at T the vault does not hold, with the reason: a change of theirs could
    /// not be captured, or they were archived when captured (at most 1,000 are kept).
    #[serde(default)]
    pub unprotected: Vec<(String, String)>,
    /// How many keys are unprotected at T.
    #[serde(default)]
    pub unprotected_count: u64,
}

impl RestoreReport {
    fn unprotected(&mut self, key: &str, reason: String) {
        self.unprotected_count += 1;
        if self.unprotected.len() < 1000 {
            self.unprotected.push((key.to_string(), reason));
        }
    }
}

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
    let (point, mut state) = load_state(engine, &req.source_bucket, &req.prefix, req.as_of).await?;
    let mut report = RestoreReport { recovery_point: Some(point.time), dry_run: req.dry_run, ..Default::default() };
    // Keys the point names as unprotected at T are reported (a state the vault holds for them
    // may be out of date), and archived ones (no bytes in the vault) are reported, not written.
    for u in point.unprotected.iter().filter(|u| u.key.starts_with(&req.prefix) && u.covers(req.as_of)) {
        report.unprotected(&u.key, format!("a change at {} could not be captured: {}", u.since.to_rfc3339(), u.reason));
    }
    state.retain(|key, r| match (&r.location, &r.attributes.archived) {
        (None, Some(class)) => {
            report.unprotected(key, format!("archived ({class}) when it was captured; its bytes are not in the vault"));
            false
        }
        _ => true,
    });
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
                let r = restore_one(engine, target.as_ref(), &tb, &tk, &rec, in_place, &req.attributes).await;
                (tk, rec.size, r)
            }
        })
        .buffer_unordered(engine.config.concurrency.max(1));
    while let Some((key, size, r)) = results.next().await {
        done += 1;
        match r {
            Ok(skipped) => {
                report.objects += 1;
                report.bytes += size;
                report.verified += 1;
                report.attributes_not_applied += skipped.len() as u64;
                for s in skipped {
                    if report.not_applied.len() < 100 {
                        report.not_applied.push((key.clone(), format!("{}: {}", s.attribute, s.reason)));
                    }
                }
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

/// Restores one object with its attributes and verifies it; returns the attributes not written.
async fn restore_one(
    engine: &Engine,
    target: &dyn ObjectStore,
    bucket: &str,
    key: &str,
    rec: &CaptureRecord,
    in_place: bool,
    ask: &AttributeRequest,
) -> Result<Vec<NotApplied>> {
    let vb = &engine.config.vault_bucket;
    let now = engine.clock.now();
    // In place on a versioned source, the old version may still be there: copy it server-side.
    if in_place {
        if let (Some(v), Some(etag)) = (&rec.version_id, &rec.etag) {
            let src = ObjectRef { bucket: rec.bucket.clone(), key: rec.key.clone(), version_id: Some(v.clone()) };
            if rec.size < engine.config.multipart_copy_threshold {
                let (opts, skipped) = write_options(rec, ask, WritePath::Copy, now);
                if let Fetch::Found(w) = target.copy_with(&src, Some(etag), bucket, key, &opts).await? {
                    if &w.etag == etag {
                        return Ok(skipped);
                    }
                }
            }
        }
    }
    match &rec.location {
        Some(Location::Pack { pack, offset, length, .. }) => {
            let stored = engine.vault.get_range(vb, pack, None, *offset, *length).await?;
            let data: Bytes = decode_blob(rec, &stored)?;
            let (mut opts, skipped) = write_options(rec, ask, WritePath::Put, now);
            opts.sha256_hex = rec.checksum.as_ref().filter(|c| c.algorithm == "SHA256").map(|c| c.value.clone());
            let w = target.put(bucket, key, data.clone(), &opts).await?;
            let md5 = hex::encode(<md5::Md5 as md5::Digest>::digest(&data));
            // A plain-MD5 ETag that disagrees means the bytes changed in transit.
            if w.etag.len() == 32 && !w.etag.contains('-') && w.etag != md5 && rec.etag.as_deref() == Some(md5.as_str()) {
                return Err(Error::ChecksumMismatch { key: key.into(), expected: md5, actual: w.etag });
            }
            Ok(skipped)
        }
        Some(Location::Object { key: vkey, version_id, etag, part_size }) => {
            let src = ObjectRef { bucket: vb.clone(), key: vkey.clone(), version_id: version_id.clone() };
            let path = if part_size.is_some() { WritePath::MultipartCopy } else { WritePath::Copy };
            let (opts, skipped) = write_options(rec, ask, path, now);
            let written = match part_size {
                None => match target.copy_with(&src, None, bucket, key, &opts).await? {
                    Fetch::Found(w) => w,
                    _ => return Err(Error::corrupt("vault object", format!("{vkey} is missing"))),
                },
                Some(ps) => {
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
            Ok(skipped)
        }
        None => Err(Error::corrupt("capture record", format!("{} has no location", rec.key))),
    }
}
