//! Writing restored objects into a target: packed objects read with coalesced ranged GETs (the
//! adjacent blobs of one pack in one request), checked against their SHA-256 and written with it;
//! large objects copied server-side with the part layout of their vault copy, parts in parallel.
//!
//! Every object comes back with whether its written bytes were verified: a PUT carries the
//! blob's SHA-256, which S3 checks before it accepts the object (and a plain-MD5 ETag that
//! disagrees with the bytes sent is a failure); a copy's ETag must equal the vault copy's.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use futures::stream::{self, StreamExt};
use tokio::sync::Semaphore;

use crate::domain::{CaptureRecord, Location};
use crate::engine::Engine;
use chrono::{DateTime, Utc};

use crate::ports::{Fetch, ObjectRef, ObjectStore};
use crate::restore::attributes::{write_options, AttributeRequest, NotApplied, WritePath};
use crate::vault::pack::open_blob;
use crate::vault::{self};
use crate::{Error, Result};

/// The most bytes one coalesced ranged GET reads.
pub const MAX_RANGE_BYTES: u64 = 8 * 1024 * 1024;

/// The largest gap between two wanted blobs that one ranged GET reads through rather than split.
pub const MAX_GAP_BYTES: u64 = 256 * 1024;

/// One object to restore: its key in the target and the record that wins at T.
#[derive(Debug, Clone)]
pub struct Item {
    pub target_key: String,
    pub record: CaptureRecord,
}

/// What writing one object did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wrote {
    pub bytes: u64,
    pub verified: bool,
    /// Requests sent to the vault (reads) and to the target (writes) for this object.
    pub vault_requests: u64,
    pub target_requests: u64,
    /// The attributes this write could not apply, with the reasons.
    pub not_applied: Vec<NotApplied>,
}

/// How one restore writes: the engine (for the vault), the target store and bucket.
pub struct Writer<'a> {
    pub engine: &'a Engine,
    pub target: &'a dyn ObjectStore,
    pub bucket: &'a str,
    /// In place on the source bucket itself: an old version that still exists is copied
    /// server-side from the source instead of read from the vault.
    pub in_place: bool,
    /// Which optional attributes the request asked to write.
    pub attributes: &'a AttributeRequest,
    /// Decides whether a recorded Object Lock retention is still in the future.
    pub now: DateTime<Utc>,
}

/// A group of packed objects read with one ranged GET.
struct RangeRead {
    pack: String,
    offset: u64,
    len: u64,
    items: Vec<Item>,
}

/// Groups packed objects into ranged reads: by pack, in offset order, merged while the gap to
/// the next blob is small and the read stays under [`MAX_RANGE_BYTES`].
fn coalesce(items: Vec<Item>) -> Vec<RangeRead> {
    let mut by_pack: BTreeMap<String, Vec<(u64, u64, Item)>> = BTreeMap::new();
    for item in items {
        if let Some(Location::Pack { pack, offset, length, .. }) = &item.record.location {
            by_pack.entry(pack.clone()).or_default().push((*offset, *length, item.clone()));
        }
    }
    let mut out = Vec::new();
    for (pack, mut blobs) in by_pack {
        blobs.sort_by_key(|(o, _, _)| *o);
        let mut cur: Option<RangeRead> = None;
        for (offset, length, item) in blobs {
            match cur.as_mut() {
                Some(r) if offset <= r.offset + r.len + MAX_GAP_BYTES && offset + length - r.offset <= MAX_RANGE_BYTES => {
                    r.len = r.len.max(offset + length - r.offset);
                    r.items.push(item);
                }
                _ => {
                    out.extend(cur.take());
                    cur = Some(RangeRead { pack: pack.clone(), offset, len: length, items: vec![item] });
                }
            }
        }
        out.extend(cur);
    }
    out
}

impl Writer<'_> {
    /// Restores `items`, `concurrency` requests at a time; returns each target key with what
    /// happened to it. A failure of one object does not stop the others.
    pub async fn write_all(&self, items: Vec<Item>) -> Vec<(String, Result<Wrote>)> {
        let permits = Arc::new(Semaphore::new(self.engine.config.concurrency.max(1)));
        let (packed, other): (Vec<Item>, Vec<Item>) =
            items.into_iter().partition(|i| !self.in_place_candidate(i) && matches!(i.record.location, Some(Location::Pack { .. })));
        let reads = coalesce(packed);
        let width = self.engine.config.concurrency.max(1);
        let mut out: Vec<(String, Result<Wrote>)> = stream::iter(reads)
            .map(|r| self.read_and_put(r, permits.clone()))
            .buffer_unordered(width)
            .flat_map(stream::iter)
            .collect()
            .await;
        let single: Vec<(String, Result<Wrote>)> = stream::iter(other)
            .map(|item| {
                let permits = permits.clone();
                async move {
                    let r = self.write_one(&item, &permits).await;
                    (item.target_key, r)
                }
            })
            .buffer_unordered(width)
            .collect()
            .await;
        out.extend(single);
        out
    }

    fn in_place_candidate(&self, item: &Item) -> bool {
        self.in_place && item.record.version_id.is_some() && item.record.etag.is_some()
    }

    /// Reads one coalesced range and writes each of its objects.
    async fn read_and_put(&self, read: RangeRead, permits: Arc<Semaphore>) -> Vec<(String, Result<Wrote>)> {
        let vb = &self.engine.config.vault_bucket;
        let data = {
            let _p = permits.acquire().await.expect("the semaphore is never closed");
            self.engine.vault.get_range(vb, &read.pack, None, read.offset, read.len).await
        };
        let data = match data {
            Ok(d) if d.len() as u64 == read.len => d,
            Ok(d) => {
                let detail = format!("read {} bytes at {}, expected {}", d.len(), read.offset, read.len);
                return read
                    .items
                    .into_iter()
                    .map(|i| (i.target_key, Err(Error::corrupt(format!("pack {}", read.pack), detail.clone()))))
                    .collect();
            }
            Err(e) => {
                let (msg, transient) = (e.to_string(), e.is_transient());
                return read
                    .items
                    .into_iter()
                    .map(|i| (i.target_key, Err(Error::port("GetObject (pack range)", msg.clone(), transient))))
                    .collect();
            }
        };
        let puts = read.items.into_iter().map(|item| {
            let (data, permits) = (data.clone(), permits.clone());
            async move {
                let Some(Location::Pack { offset, length, .. }) = &item.record.location else {
                    return (item.target_key, Err(Error::corrupt("capture record", "lost its pack location")));
                };
                let start = (offset - read.offset) as usize;
                let stored = data.slice(start..start + *length as usize);
                let r = match open_blob(self.engine.keys.as_ref(), &item.record, &stored).await {
                    Ok(blob) => {
                        let _p = permits.acquire().await.expect("the semaphore is never closed");
                        self.put_blob(&item, blob).await
                    }
                    Err(e) => Err(e),
                };
                (item.target_key, r)
            }
        });
        let mut results: Vec<(String, Result<Wrote>)> =
            stream::iter(puts).buffer_unordered(self.engine.config.concurrency.max(1)).collect().await;
        // The range's one request is counted once, on the first object it carried.
        if let Some((_, Ok(w))) = results.iter_mut().find(|(_, r)| r.is_ok()) {
            w.vault_requests = 1;
        }
        results
    }

    /// Writes one blob with its SHA-256, which S3 checks before accepting the object.
    async fn put_blob(&self, item: &Item, data: Bytes) -> Result<Wrote> {
        let rec = &item.record;
        let sha = rec.checksum.as_ref().filter(|c| c.algorithm == "SHA256").map(|c| c.value.clone());
        let (mut opts, not_applied) = write_options(rec, self.attributes, WritePath::Put, self.now);
        opts.sha256_hex = sha.clone();
        let w = self.target.put(self.bucket, &item.target_key, data.clone(), &opts).await?;
        let md5 = hex::encode(<md5::Md5 as md5::Digest>::digest(&data));
        let plain_etag = w.etag.len() == 32 && !w.etag.contains('-');
        // A plain-MD5 ETag is S3's own digest of what it stored: it must be the bytes sent.
        if plain_etag && w.etag != md5 && rec.etag.as_deref() == Some(md5.as_str()) {
            return Err(Error::ChecksumMismatch { key: item.target_key.clone(), expected: md5, actual: w.etag });
        }
        let verified = sha.is_some() || (plain_etag && w.etag == md5);
        Ok(Wrote { bytes: data.len() as u64, verified, vault_requests: 0, target_requests: 1, not_applied })
    }

    /// Restores an object that is not read from a pack range: a large one copied server-side,
    /// or (in place) an old version copied from the source, falling back to the vault.
    async fn write_one(&self, item: &Item, permits: &Semaphore) -> Result<Wrote> {
        let rec = &item.record;
        if self.in_place_candidate(item) {
            let (v, etag) = (rec.version_id.clone().expect("checked"), rec.etag.clone().expect("checked"));
            if rec.size < self.engine.config.multipart_copy_threshold {
                let src = ObjectRef { bucket: rec.bucket.clone(), key: rec.key.clone(), version_id: Some(v) };
                let (opts, not_applied) = write_options(rec, self.attributes, WritePath::Copy, self.now);
                let copied = {
                    let _p = permits.acquire().await.expect("the semaphore is never closed");
                    self.target.copy_with(&src, Some(&etag), self.bucket, &item.target_key, &opts).await?
                };
                if let Fetch::Found(w) = copied {
                    if w.etag == etag {
                        return Ok(Wrote { bytes: rec.size, verified: true, vault_requests: 0, target_requests: 1, not_applied });
                    }
                }
            }
        }
        match &rec.location {
            Some(Location::Pack { pack, offset, length, .. }) => {
                let stored = {
                    let _p = permits.acquire().await.expect("the semaphore is never closed");
                    self.engine.vault.get_range(&self.engine.config.vault_bucket, pack, None, *offset, *length).await?
                };
                let blob = open_blob(self.engine.keys.as_ref(), rec, &stored).await?;
                let _p = permits.acquire().await.expect("the semaphore is never closed");
                let w = self.put_blob(item, blob).await?;
                Ok(Wrote { vault_requests: 1, target_requests: w.target_requests + 1, ..w })
            }
            Some(Location::Object { key: vkey, version_id, etag, part_size }) => {
                self.copy_large(item, vkey, version_id.clone(), etag, *part_size, permits).await
            }
            None => Err(Error::corrupt("capture record", format!("{} has no location in the vault", rec.key))),
        }
    }

    /// Copies a large object from the vault server-side: one CopyObject, or UploadPartCopy of
    /// the vault copy's part layout with the parts in parallel, so the ETags agree.
    async fn copy_large(
        &self,
        item: &Item,
        vkey: &str,
        version_id: Option<String>,
        etag: &str,
        part_size: Option<u64>,
        permits: &Semaphore,
    ) -> Result<Wrote> {
        let rec = &item.record;
        let src = ObjectRef { bucket: self.engine.config.vault_bucket.clone(), key: vkey.to_string(), version_id };
        let missing = || Error::corrupt("vault object", format!("{vkey} is missing"));
        let path = if part_size.is_some() { WritePath::MultipartCopy } else { WritePath::Copy };
        let (opts, not_applied) = write_options(rec, self.attributes, path, self.now);
        let (written, requests) = match part_size {
            None => {
                let _p = permits.acquire().await.expect("the semaphore is never closed");
                match self.target.copy_with(&src, None, self.bucket, &item.target_key, &opts).await? {
                    Fetch::Found(w) => (w, 1),
                    _ => return Err(missing()),
                }
            }
            Some(ps) => {
                let upload = self.target.create_multipart(self.bucket, &item.target_key, &opts).await?;
                let ranges = vault::part_ranges(rec.size, ps);
                let n = ranges.len() as u64;
                let parts: Vec<Result<(i32, Fetch<String>)>> = stream::iter(ranges.into_iter().enumerate())
                    .map(|(i, (first, last))| {
                        let (src, upload) = (&src, &upload);
                        async move {
                            let _p = permits.acquire().await.expect("the semaphore is never closed");
                            let part = i as i32 + 1;
                            Ok((
                                part,
                                self.target.upload_part_copy(self.bucket, &item.target_key, upload, part, src, None, first, last).await?,
                            ))
                        }
                    })
                    .buffer_unordered(self.engine.config.concurrency.max(1))
                    .collect()
                    .await;
                let mut etags = Vec::new();
                for p in parts {
                    match p {
                        Ok((n, Fetch::Found(e))) => etags.push((n, e)),
                        Ok(_) => {
                            self.target.abort_multipart(self.bucket, &item.target_key, &upload).await?;
                            return Err(missing());
                        }
                        Err(e) => {
                            let _ = self.target.abort_multipart(self.bucket, &item.target_key, &upload).await;
                            return Err(e);
                        }
                    }
                }
                etags.sort();
                (self.target.complete_multipart(self.bucket, &item.target_key, &upload, &etags).await?, n + 2)
            }
        };
        if written.etag != etag {
            return Err(Error::ChecksumMismatch { key: item.target_key.clone(), expected: etag.to_string(), actual: written.etag });
        }
        Ok(Wrote { bytes: rec.size, verified: true, vault_requests: 0, target_requests: requests, not_applied })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Codec;
    use chrono::Utc;

    fn item(pack: &str, offset: u64, length: u64) -> Item {
        let mut record = CaptureRecord::delete("b", &format!("{pack}-{offset}"), Utc::now(), None, Utc::now());
        record.location = Some(Location::Pack { pack: pack.into(), offset, length, raw_length: length, codec: Codec::Raw, envelope: None });
        Item { target_key: record.key.clone(), record }
    }

    #[test]
    fn adjacent_blobs_of_a_pack_are_read_in_one_range() {
        let reads = coalesce(vec![item("p", 100, 10), item("p", 0, 100), item("q", 0, 5), item("p", 110 + MAX_GAP_BYTES + 1, 1)]);
        let shape: Vec<(String, u64, u64, usize)> = reads.iter().map(|r| (r.pack.clone(), r.offset, r.len, r.items.len())).collect();
        assert_eq!(shape, vec![("p".into(), 0, 110, 2), ("p".into(), 110 + MAX_GAP_BYTES + 1, 1, 1), ("q".into(), 0, 5, 1)]);
    }

    #[test]
    fn a_range_never_grows_past_its_bound() {
        let half = MAX_RANGE_BYTES / 2 + 1;
        let reads = coalesce(vec![item("p", 0, half), item("p", half, half)]);
        assert_eq!(reads.len(), 2);
    }
}
