//! In-memory fakes of the engine's ports, faithful to the S3, SQS and DynamoDB behaviours the engine relies on.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Duration, Utc};
use md5::{Digest, Md5};
use tidemark_core::capture::verify::compute;
use tidemark_core::domain::{Acl, Grant, Grantee, ObjectAttributes, ObjectInfo, SourceChecksum};
use tidemark_core::ports::{
    Clock, Fetch, ListPage, ListRequest, ObjectRef, ObjectStore, PutOptions, VersionEntry, VersionListRequest, VersionPage, Written,
};
use tidemark_core::{Error, Result};

// The queue and control store fakes live in the engine, which also runs them for one process
// (the CLI's vault-only mode); the test kit offers them beside the other fakes.
pub use tidemark_core::memory::{MemControlStore, MemQueue};

/// The canonical id the fake gives the owner of every bucket.
pub const OWNER: &str = "fake-owner-0123456789abcdef";

#[derive(Clone)]
struct Version {
    id: String,
    data: Bytes,
    etag: String,
    last_modified: DateTime<Utc>,
    content_type: Option<String>,
    metadata: BTreeMap<String, String>,
    /// Everything else S3 keeps with a version (tags, storage class, checksum, lock, …).
    attributes: ObjectAttributes,
    /// The ACL; `None` is S3's default (the owner has full control).
    acl: Option<Acl>,
    /// A restored copy of an archived version is readable.
    restored: bool,
    delete_marker: bool,
}

impl Version {
    fn archived(&self) -> bool {
        matches!(self.attributes.storage_class.as_deref(), Some("GLACIER" | "DEEP_ARCHIVE")) && !self.restored
    }

    fn locked(&self, now: DateTime<Utc>) -> bool {
        self.attributes.object_lock.as_ref().is_some_and(|l| l.legal_hold == Some(true) || l.retain_until.is_some_and(|u| u > now))
    }
}

#[derive(Default)]
struct Bucket {
    versioned: bool,
    /// ACLs enabled (S3's default since 2023 is `BucketOwnerEnforced`: disabled).
    acls: bool,
    /// EventBridge notifications on (a new bucket has none, as in S3).
    events: bool,
    keys: BTreeMap<String, Vec<Version>>,
}

struct Upload {
    bucket: String,
    key: String,
    opts: PutOptions,
    parts: BTreeMap<i32, Bytes>,
}

#[derive(Default)]
struct S3State {
    buckets: HashMap<String, Bucket>,
    uploads: HashMap<String, Upload>,
    counter: u64,
    requests: u64,
    /// Every ListObjectsV2 call: (prefix, delimiter).
    lists: Vec<(String, Option<String>)>,
    /// Buckets whose policy denies the reader: every read answers AccessDenied.
    denied: std::collections::HashSet<String>,
}

/// An in-memory S3 with versioning (versions, delete markers, permanent deletes), multipart
/// uploads, conditional reads and copies, tags, checksums, Object Lock, ACLs and archive tiers.
#[derive(Default)]
pub struct MemObjectStore {
    state: Mutex<S3State>,
}

fn md5_hex(b: &[u8]) -> String {
    hex::encode(Md5::digest(b))
}

fn no_bucket(bucket: &str) -> Error {
    Error::NoSuchBucket { bucket: bucket.into() }
}

/// AccessDenied as the S3 adapter reports it: permanent.
fn check_denied(s: &S3State, operation: &str, bucket: &str) -> Result<()> {
    if s.denied.contains(bucket) {
        return Err(Error::port(operation, format!("AccessDenied: the bucket policy of {bucket} denies this reader"), false));
    }
    Ok(())
}

fn archived_error(bucket: &str, key: &str) -> Error {
    Error::Archived { bucket: bucket.into(), key: key.into() }
}

impl MemObjectStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Creates a bucket, versioned or not.
    pub fn create(&self, bucket: &str, versioned: bool) {
        let mut s = self.state.lock().unwrap();
        s.buckets.entry(bucket.into()).or_default().versioned = versioned;
    }

    /// Deletes a bucket with everything in it (S3 wants it emptied first; the effect is the same).
    pub fn remove_bucket(&self, bucket: &str) {
        self.state.lock().unwrap().buckets.remove(bucket);
    }

    /// Makes every read of `bucket` answer AccessDenied (a bucket policy denying the reader), or
    /// lifts that with `denied` false.
    pub fn deny(&self, bucket: &str, denied: bool) {
        let mut s = self.state.lock().unwrap();
        if denied {
            s.denied.insert(bucket.into());
        } else {
            s.denied.remove(bucket);
        }
    }

    /// Turns ACLs on for a bucket (object ownership other than `BucketOwnerEnforced`).
    pub fn enable_acls(&self, bucket: &str) {
        let mut s = self.state.lock().unwrap();
        s.buckets.entry(bucket.into()).or_default().acls = true;
    }

    /// Turns a bucket's EventBridge notifications on, as the source account's setup does.
    pub fn enable_event_notifications(&self, bucket: &str) {
        let mut s = self.state.lock().unwrap();
        s.buckets.entry(bucket.into()).or_default().events = true;
    }

    /// Requests served so far.
    pub fn requests(&self) -> u64 {
        self.state.lock().unwrap().requests
    }

    /// Every listing call served so far, as (prefix, delimiter), in the order they came.
    pub fn list_calls(&self) -> Vec<(String, Option<String>)> {
        self.state.lock().unwrap().lists.clone()
    }

    /// How many versions (delete markers included) a key has: in a versioned bucket, how often it was written.
    pub fn versions(&self, bucket: &str, key: &str) -> usize {
        self.state.lock().unwrap().buckets.get(bucket).and_then(|b| b.keys.get(key)).map_or(0, Vec::len)
    }

    /// PutObjectTagging: replaces the tags of the current object or of a version.
    pub fn set_tags(&self, bucket: &str, key: &str, version_id: Option<&str>, tags: BTreeMap<String, String>) -> Result<()> {
        self.with_version(bucket, key, version_id, |v| v.attributes.tags = tags)
    }

    /// PutObjectAcl: replaces the grants of the current object or of a version.
    pub fn set_acl(&self, bucket: &str, key: &str, version_id: Option<&str>, grants: Vec<Grant>) -> Result<()> {
        self.with_version(bucket, key, version_id, |v| v.acl = Some(Acl { owner: Some(OWNER.into()), grants }))
    }

    /// A lifecycle transition: moves the current object or a version to another storage class.
    pub fn set_storage_class(&self, bucket: &str, key: &str, version_id: Option<&str>, class: &str) -> Result<()> {
        self.with_version(bucket, key, version_id, |v| {
            v.attributes.storage_class = Some(class.to_string()).filter(|c| c != "STANDARD");
            v.restored = false;
        })
    }

    /// Changes the bytes of the current object without changing what S3 says about them (its
    /// ETag and checksum), as a disk or transfer error would.
    pub fn corrupt(&self, bucket: &str, key: &str) -> Result<()> {
        self.damage(bucket, key, 0)
    }

    /// Flips the bits of the byte at `offset` of the current object in place, as damage on disk
    /// would (the vault's own writes never do this): for tests that damaged data is caught.
    pub fn damage(&self, bucket: &str, key: &str, offset: usize) -> Result<()> {
        self.with_version(bucket, key, None, |v| {
            let mut d = v.data.to_vec();
            if let Some(b) = d.get_mut(offset) {
                *b ^= 0xff;
            }
            v.data = Bytes::from(d);
        })
    }

    fn with_version(&self, bucket: &str, key: &str, version_id: Option<&str>, f: impl FnOnce(&mut Version)) -> Result<()> {
        let mut s = self.state.lock().unwrap();
        let b = s.buckets.get_mut(bucket).ok_or_else(|| no_bucket(bucket))?;
        let versions = b.keys.get_mut(key).ok_or_else(|| Error::port("PutObjectTagging", format!("NoSuchKey: {key}"), false))?;
        let v = match version_id {
            None => versions.last_mut().filter(|v| !v.delete_marker),
            Some(id) => versions.iter_mut().find(|v| v.id == id && !v.delete_marker),
        }
        .ok_or_else(|| Error::port("PutObjectTagging", format!("NoSuchVersion: {key}"), false))?;
        f(v);
        Ok(())
    }

    fn current<'a>(b: &'a Bucket, key: &str) -> Option<&'a Version> {
        b.keys.get(key).and_then(|v| v.last()).filter(|v| !v.delete_marker)
    }

    fn shown_id(v: &Version, versioned: bool) -> String {
        if versioned {
            v.id.clone()
        } else {
            "null".into()
        }
    }

    fn info(key: &str, v: &Version, versioned: bool) -> ObjectInfo {
        ObjectInfo {
            key: key.into(),
            size: v.data.len() as u64,
            etag: v.etag.clone(),
            last_modified: v.last_modified,
            version_id: Some(Self::shown_id(v, versioned)),
            content_type: v.content_type.clone(),
            metadata: v.metadata.clone(),
            attributes: ObjectAttributes { tags: BTreeMap::new(), acl: None, ..v.attributes.clone() },
            tag_count: Some(v.attributes.tags.len() as u32),
            archive_status: None,
            restored: v.restored,
        }
    }

    fn find<'a>(b: &'a Bucket, key: &str, version: Option<&str>) -> Option<&'a Version> {
        match version {
            None => Self::current(b, key),
            Some("null") if !b.versioned => Self::current(b, key),
            Some(id) => b.keys.get(key)?.iter().find(|v| v.id == id && !v.delete_marker),
        }
    }

    /// The attributes a write keeps: what the options say, with the checksum S3 would compute
    /// (the one asked for, or CRC64NVME when none was) and verify (a value that was sent).
    fn stored_attributes(data: &[u8], opts: &PutOptions, multipart: bool) -> Result<ObjectAttributes> {
        let mut a = ObjectAttributes { archived: None, ..opts.attributes.clone() };
        a.storage_class = a.storage_class.filter(|c| c != "STANDARD");
        a.source_checksum = if multipart {
            None
        } else {
            let algorithm = opts.attributes.source_checksum.as_ref().map_or("CRC64NVME".to_string(), |c| c.algorithm.clone());
            let value = compute(&algorithm, data)
                .ok_or_else(|| Error::port("PutObject", format!("InvalidRequest: checksum algorithm {algorithm}"), false))?;
            if let Some(sent) = opts.attributes.source_checksum.as_ref().filter(|c| !c.value.is_empty()) {
                if sent.value != value {
                    return Err(Error::port("PutObject", format!("BadDigest: {algorithm} {} != {value}", sent.value), false));
                }
            }
            Some(SourceChecksum { algorithm, value, kind: Some("FULL_OBJECT".into()) })
        };
        Ok(a)
    }

    fn write(s: &mut S3State, bucket: &str, key: &str, data: Bytes, etag: String, opts: &PutOptions, multipart: bool) -> Result<Written> {
        let attributes = Self::stored_attributes(&data, opts, multipart)?;
        s.counter += 1;
        let id = format!("v{:08}", s.counter);
        let b = s.buckets.get_mut(bucket).ok_or_else(|| no_bucket(bucket))?;
        if opts.if_none_match && Self::current(b, key).is_some() {
            return Err(Error::port("PutObject", format!("{key} already exists (If-None-Match)"), false));
        }
        if opts.attributes.acl.is_some() && !b.acls {
            return Err(Error::port("PutObject", "AccessControlListNotSupported: The bucket does not allow ACLs", false));
        }
        if opts.attributes.object_lock.is_some() && !b.versioned {
            return Err(Error::port("PutObject", "InvalidRequest: Bucket is missing Object Lock Configuration", false));
        }
        let v = Version {
            id: id.clone(),
            data,
            etag: etag.clone(),
            last_modified: Utc::now(),
            content_type: opts.content_type.clone().or(Some("binary/octet-stream".into())),
            metadata: opts.metadata.clone(),
            acl: opts.attributes.acl.clone(),
            attributes,
            restored: false,
            delete_marker: false,
        };
        let versions = b.keys.entry(key.into()).or_default();
        if !b.versioned {
            versions.clear();
        }
        versions.push(v);
        Ok(Written { etag, version_id: b.versioned.then_some(id) })
    }

    /// CopyObject: writes the source version's bytes with the options `opts` makes of it. A copy
    /// can ask for a checksum algorithm but not send a value: S3 computes it, and a copy of a
    /// multipart object becomes a single-part object with a plain MD5 ETag.
    fn copy_object(
        &self,
        src: &ObjectRef,
        if_match: Option<&str>,
        bucket: &str,
        key: &str,
        opts: impl FnOnce(&Version) -> PutOptions,
    ) -> Result<Fetch<Written>> {
        let mut s = self.state.lock().unwrap();
        s.requests += 1;
        let v = match Self::copy_source(&s, src, if_match)? {
            Fetch::Found(v) => v,
            Fetch::NotFound => return Ok(Fetch::NotFound),
            Fetch::Changed => return Ok(Fetch::Changed),
        };
        let mut opts = opts(&v);
        if let Some(c) = opts.attributes.source_checksum.as_mut() {
            c.value.clear();
        }
        let etag = md5_hex(&v.data);
        Ok(Fetch::Found(Self::write(&mut s, bucket, key, v.data, etag, &opts, false)?))
    }

    /// The readable version a copy reads, or why there is none.
    fn copy_source(s: &S3State, src: &ObjectRef, if_match: Option<&str>) -> Result<Fetch<Version>> {
        let sb = s.buckets.get(&src.bucket).ok_or_else(|| no_bucket(&src.bucket))?;
        Ok(match Self::find(sb, &src.key, src.version_id.as_deref()) {
            None => Fetch::NotFound,
            Some(v) if if_match.is_some_and(|e| e != v.etag) => Fetch::Changed,
            Some(v) if v.archived() => return Err(archived_error(&src.bucket, &src.key)),
            Some(v) => Fetch::Found(v.clone()),
        })
    }
}

#[async_trait]
impl ObjectStore for MemObjectStore {
    async fn bucket_exists(&self, bucket: &str) -> Result<bool> {
        let s = self.state.lock().unwrap();
        check_denied(&s, "HeadBucket", bucket)?;
        Ok(s.buckets.contains_key(bucket))
    }

    async fn create_bucket(&self, bucket: &str) -> Result<()> {
        self.state.lock().unwrap().buckets.entry(bucket.into()).or_default();
        Ok(())
    }

    async fn list(&self, bucket: &str, req: ListRequest<'_>) -> Result<ListPage> {
        let mut s = self.state.lock().unwrap();
        s.requests += 1;
        s.lists.push((req.prefix.to_string(), req.delimiter.map(str::to_string)));
        check_denied(&s, "ListObjectsV2", bucket)?;
        let b = s.buckets.get(bucket).ok_or_else(|| no_bucket(bucket))?;
        let max = req.max_keys.unwrap_or(1000).clamp(1, 1000) as usize;
        let after = req.continuation.as_deref().or(req.start_after).unwrap_or("");
        let mut page = ListPage::default();
        let mut last = None;
        for (key, versions) in b.keys.range::<str, _>((std::ops::Bound::Excluded(after), std::ops::Bound::Unbounded)) {
            if !key.starts_with(req.prefix) {
                if key.as_str() > req.prefix {
                    break;
                }
                continue;
            }
            let Some(v) = versions.last().filter(|v| !v.delete_marker) else { continue };
            if let Some(d) = req.delimiter {
                if let Some(i) = key[req.prefix.len()..].find(d) {
                    let cp = key[..req.prefix.len() + i + d.len()].to_string();
                    if page.common_prefixes.last() != Some(&cp) {
                        if page.objects.len() + page.common_prefixes.len() >= max {
                            page.next_token = last;
                            return Ok(page);
                        }
                        page.common_prefixes.push(cp.clone());
                    }
                    // Continue after every key of this common prefix.
                    last = Some(format!("{cp}\u{10FFFF}"));
                    continue;
                }
            }
            if page.objects.len() + page.common_prefixes.len() >= max {
                page.next_token = last;
                return Ok(page);
            }
            // A listing says no more than ListObjectsV2 does: key, size, ETag, time and class.
            let mut info = Self::info(key, v, b.versioned);
            info.version_id = None;
            info.content_type = None;
            info.metadata.clear();
            info.attributes = ObjectAttributes { storage_class: v.attributes.storage_class.clone(), ..Default::default() };
            info.tag_count = None;
            page.objects.push(info);
            last = Some(key.clone());
        }
        Ok(page)
    }

    async fn head(&self, bucket: &str, key: &str, version_id: Option<&str>) -> Result<Option<ObjectInfo>> {
        let mut s = self.state.lock().unwrap();
        s.requests += 1;
        check_denied(&s, "HeadObject", bucket)?;
        let b = s.buckets.get(bucket).ok_or_else(|| no_bucket(bucket))?;
        Ok(Self::find(b, key, version_id).map(|v| Self::info(key, v, b.versioned)))
    }

    async fn get(&self, bucket: &str, key: &str, version_id: Option<&str>, if_match: Option<&str>) -> Result<Fetch<(ObjectInfo, Bytes)>> {
        let mut s = self.state.lock().unwrap();
        s.requests += 1;
        let b = s.buckets.get(bucket).ok_or_else(|| no_bucket(bucket))?;
        Ok(match Self::find(b, key, version_id) {
            None => Fetch::NotFound,
            Some(v) if if_match.is_some_and(|e| e != v.etag) => Fetch::Changed,
            Some(v) if v.archived() => return Err(archived_error(bucket, key)),
            Some(v) => Fetch::Found((Self::info(key, v, b.versioned), v.data.clone())),
        })
    }

    async fn get_range(&self, bucket: &str, key: &str, version_id: Option<&str>, offset: u64, len: u64) -> Result<Bytes> {
        let mut s = self.state.lock().unwrap();
        s.requests += 1;
        let b = s.buckets.get(bucket).ok_or_else(|| no_bucket(bucket))?;
        let v = Self::find(b, key, version_id).ok_or_else(|| Error::port("GetObject", format!("{key} not found"), false))?;
        if v.archived() {
            return Err(archived_error(bucket, key));
        }
        let end = (offset + len).min(v.data.len() as u64);
        if offset > end {
            return Err(Error::port("GetObject", "range not satisfiable", false));
        }
        Ok(v.data.slice(offset as usize..end as usize))
    }

    async fn put(&self, bucket: &str, key: &str, body: Bytes, opts: &PutOptions) -> Result<Written> {
        let mut s = self.state.lock().unwrap();
        s.requests += 1;
        if let Some(want) = &opts.sha256_hex {
            let got = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&body));
            if &got != want {
                return Err(Error::port("PutObject", format!("BadDigest: sha256 {got} != {want}"), false));
            }
        }
        let etag = md5_hex(&body);
        Self::write(&mut s, bucket, key, body, etag, opts, false)
    }

    async fn copy(&self, src: &ObjectRef, if_match: Option<&str>, bucket: &str, key: &str) -> Result<Fetch<Written>> {
        // COPY directives keep the metadata, the system metadata and the tags; not the storage
        // class, Object Lock, the ACL or the encryption, which are the destination's defaults.
        self.copy_object(src, if_match, bucket, key, |v| {
            let attributes = ObjectAttributes {
                storage_class: None,
                object_lock: None,
                acl: None,
                sse: None,
                website_redirect_location: None,
                ..v.attributes.clone()
            };
            PutOptions { content_type: v.content_type.clone(), metadata: v.metadata.clone(), attributes, ..Default::default() }
        })
    }

    async fn create_multipart(&self, bucket: &str, key: &str, opts: &PutOptions) -> Result<String> {
        let mut s = self.state.lock().unwrap();
        s.requests += 1;
        if !s.buckets.contains_key(bucket) {
            return Err(no_bucket(bucket));
        }
        s.counter += 1;
        let id = format!("upload-{}", s.counter);
        s.uploads.insert(id.clone(), Upload { bucket: bucket.into(), key: key.into(), opts: opts.clone(), parts: BTreeMap::new() });
        Ok(id)
    }

    async fn upload_part(&self, _bucket: &str, _key: &str, upload_id: &str, part_number: i32, body: Bytes) -> Result<String> {
        let mut s = self.state.lock().unwrap();
        s.requests += 1;
        let u = s.uploads.get_mut(upload_id).ok_or_else(|| Error::port("UploadPart", "NoSuchUpload", false))?;
        let etag = md5_hex(&body);
        u.parts.insert(part_number, body);
        Ok(etag)
    }

    async fn upload_part_copy(
        &self,
        _bucket: &str,
        _key: &str,
        upload_id: &str,
        part_number: i32,
        src: &ObjectRef,
        if_match: Option<&str>,
        first: u64,
        last: u64,
    ) -> Result<Fetch<String>> {
        let mut s = self.state.lock().unwrap();
        s.requests += 1;
        let data = match Self::copy_source(&s, src, if_match)? {
            Fetch::Found(v) => v.data.slice(first as usize..=last as usize),
            Fetch::NotFound => return Ok(Fetch::NotFound),
            Fetch::Changed => return Ok(Fetch::Changed),
        };
        let etag = md5_hex(&data);
        let u = s.uploads.get_mut(upload_id).ok_or_else(|| Error::port("UploadPartCopy", "NoSuchUpload", false))?;
        u.parts.insert(part_number, data);
        Ok(Fetch::Found(etag))
    }

    async fn complete_multipart(&self, bucket: &str, key: &str, upload_id: &str, parts: &[(i32, String)]) -> Result<Written> {
        let mut s = self.state.lock().unwrap();
        s.requests += 1;
        let u = s.uploads.remove(upload_id).ok_or_else(|| Error::port("CompleteMultipartUpload", "NoSuchUpload", false))?;
        if u.bucket != bucket || u.key != key {
            return Err(Error::port("CompleteMultipartUpload", "upload belongs to another key", false));
        }
        let mut body = Vec::new();
        let mut md5s = Vec::new();
        for (n, etag) in parts {
            let p = u.parts.get(n).ok_or_else(|| Error::port("CompleteMultipartUpload", format!("InvalidPart {n}"), false))?;
            if &md5_hex(p) != etag {
                return Err(Error::port("CompleteMultipartUpload", format!("InvalidPart {n}: ETag mismatch"), false));
            }
            md5s.extend_from_slice(&Md5::digest(p));
            body.extend_from_slice(p);
        }
        let etag = format!("{}-{}", md5_hex(&md5s), parts.len());
        Self::write(&mut s, bucket, key, Bytes::from(body), etag, &u.opts, true)
    }

    async fn abort_multipart(&self, _bucket: &str, _key: &str, upload_id: &str) -> Result<()> {
        let mut s = self.state.lock().unwrap();
        s.requests += 1;
        s.uploads.remove(upload_id);
        Ok(())
    }

    async fn delete(&self, bucket: &str, key: &str) -> Result<()> {
        let mut s = self.state.lock().unwrap();
        s.requests += 1;
        s.counter += 1;
        let id = format!("v{:08}", s.counter);
        let b = s.buckets.get_mut(bucket).ok_or_else(|| no_bucket(bucket))?;
        if b.versioned {
            let marker = Version {
                id,
                data: Bytes::new(),
                etag: String::new(),
                last_modified: Utc::now(),
                content_type: None,
                metadata: BTreeMap::new(),
                attributes: ObjectAttributes::default(),
                acl: None,
                restored: false,
                delete_marker: true,
            };
            b.keys.entry(key.into()).or_default().push(marker);
        } else {
            b.keys.remove(key);
        }
        Ok(())
    }

    async fn list_versions(&self, bucket: &str, req: VersionListRequest<'_>) -> Result<VersionPage> {
        let mut s = self.state.lock().unwrap();
        s.requests += 1;
        let b = s.buckets.get(bucket).ok_or_else(|| no_bucket(bucket))?;
        let max = req.max_keys.unwrap_or(1000).clamp(1, 1000) as usize;
        let mut page = VersionPage::default();
        let start = req.key_marker.clone().unwrap_or_default();
        // With a version-id marker, the marker key's versions after it come first.
        let bound = match (&req.key_marker, &req.version_id_marker) {
            (Some(k), Some(_)) => std::ops::Bound::Included(k.clone()),
            (Some(k), None) => std::ops::Bound::Excluded(k.clone()),
            (None, _) => std::ops::Bound::Unbounded,
        };
        for (key, versions) in b.keys.range::<String, _>((bound, std::ops::Bound::Unbounded)) {
            if !key.starts_with(req.prefix) {
                if key.as_str() > req.prefix && key.as_str() > start.as_str() {
                    break;
                }
                continue;
            }
            let mut newest_first: Vec<&Version> = versions.iter().rev().collect();
            if let (Some(k), Some(vm)) = (&req.key_marker, &req.version_id_marker) {
                if key == k {
                    match newest_first.iter().position(|v| &Self::shown_id(v, b.versioned) == vm) {
                        Some(i) => newest_first.drain(..=i),
                        None => newest_first.drain(..),
                    };
                }
            }
            for v in newest_first.iter() {
                if page.versions.len() >= max {
                    // The markers of the next page are the last entry of this one.
                    let last = page.versions.last().expect("max is at least 1");
                    page.next_key_marker = Some(last.key.clone());
                    page.next_version_id_marker = Some(last.version_id.clone().unwrap_or_else(|| "null".into()));
                    return Ok(page);
                }
                page.versions.push(VersionEntry {
                    key: key.clone(),
                    version_id: b.versioned.then(|| v.id.clone()),
                    is_latest: versions.last().map(|l| &l.id) == Some(&v.id),
                    is_delete_marker: v.delete_marker,
                    last_modified: v.last_modified,
                    etag: v.etag.clone(),
                    size: v.data.len() as u64,
                    storage_class: (!v.delete_marker).then(|| v.attributes.storage_class.clone().unwrap_or_else(|| "STANDARD".into())),
                });
            }
        }
        Ok(page)
    }

    async fn get_tags(&self, bucket: &str, key: &str, version_id: Option<&str>) -> Result<Option<BTreeMap<String, String>>> {
        let mut s = self.state.lock().unwrap();
        s.requests += 1;
        let b = s.buckets.get(bucket).ok_or_else(|| no_bucket(bucket))?;
        Ok(Self::find(b, key, version_id).map(|v| v.attributes.tags.clone()))
    }

    async fn get_acl(&self, bucket: &str, key: &str, version_id: Option<&str>) -> Result<Option<Acl>> {
        let mut s = self.state.lock().unwrap();
        s.requests += 1;
        let b = s.buckets.get(bucket).ok_or_else(|| no_bucket(bucket))?;
        let owner = || Acl {
            owner: Some(OWNER.into()),
            grants: vec![Grant { grantee: Grantee::CanonicalUser { id: OWNER.into() }, permission: "FULL_CONTROL".into() }],
        };
        Ok(Self::find(b, key, version_id).map(|v| v.acl.clone().unwrap_or_else(owner)))
    }

    async fn acls_enabled(&self, bucket: &str) -> Result<bool> {
        let mut s = self.state.lock().unwrap();
        s.requests += 1;
        Ok(s.buckets.get(bucket).ok_or_else(|| no_bucket(bucket))?.acls)
    }

    async fn event_notifications_enabled(&self, bucket: &str) -> Result<bool> {
        let mut s = self.state.lock().unwrap();
        s.requests += 1;
        Ok(s.buckets.get(bucket).ok_or_else(|| no_bucket(bucket))?.events)
    }

    async fn copy_with(
        &self,
        src: &ObjectRef,
        if_match: Option<&str>,
        bucket: &str,
        key: &str,
        opts: &PutOptions,
    ) -> Result<Fetch<Written>> {
        self.copy_object(src, if_match, bucket, key, |_| opts.clone())
    }

    async fn delete_version(&self, bucket: &str, key: &str, version_id: &str) -> Result<()> {
        let mut s = self.state.lock().unwrap();
        s.requests += 1;
        let b = s.buckets.get_mut(bucket).ok_or_else(|| no_bucket(bucket))?;
        let versioned = b.versioned;
        let Some(versions) = b.keys.get_mut(key) else { return Ok(()) };
        if let Some(i) = versions.iter().position(|v| Self::shown_id(v, versioned) == version_id) {
            if versions[i].locked(Utc::now()) {
                return Err(Error::port("DeleteObject", format!("AccessDenied: {key} version {version_id} is locked"), false));
            }
            versions.remove(i);
        }
        if versions.is_empty() {
            b.keys.remove(key);
        }
        Ok(())
    }

    async fn restore_archived(&self, bucket: &str, key: &str, version_id: Option<&str>, _days: u32) -> Result<()> {
        let mut s = self.state.lock().unwrap();
        s.requests += 1;
        drop(s);
        // The fake restores at once (as moto does); S3 takes minutes to hours.
        self.with_version(bucket, key, version_id, |v| v.restored = v.restored || v.archived())
    }
}

/// A clock tests can set and advance.
pub struct ManualClock(Mutex<DateTime<Utc>>);

impl ManualClock {
    /// A clock stopped at `t`.
    pub fn new(t: DateTime<Utc>) -> Self {
        ManualClock(Mutex::new(t))
    }

    /// Moves the clock forward.
    pub fn advance(&self, d: Duration) {
        *self.0.lock().unwrap() += d;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.0.lock().unwrap()
    }
}

/// Something that runs before every GET of a [`HookedStore`]: it may change the store first (a
/// race between listing and reading) or fail the read (throttling, access denied, a crash).
#[async_trait]
pub trait GetHook: Send + Sync {
    async fn before_get(&self, inner: &MemObjectStore, bucket: &str, key: &str) -> Result<()>;
}

/// An in-memory S3 whose reads pass through a [`GetHook`]; every other call goes straight through.
pub struct HookedStore<H> {
    pub inner: std::sync::Arc<MemObjectStore>,
    pub hook: H,
}

#[async_trait]
impl<H: GetHook> ObjectStore for HookedStore<H> {
    async fn bucket_exists(&self, b: &str) -> Result<bool> {
        self.inner.bucket_exists(b).await
    }
    async fn create_bucket(&self, b: &str) -> Result<()> {
        self.inner.create_bucket(b).await
    }
    async fn list(&self, b: &str, r: ListRequest<'_>) -> Result<ListPage> {
        self.inner.list(b, r).await
    }
    async fn head(&self, b: &str, k: &str, v: Option<&str>) -> Result<Option<ObjectInfo>> {
        self.inner.head(b, k, v).await
    }
    async fn get(&self, b: &str, k: &str, v: Option<&str>, m: Option<&str>) -> Result<Fetch<(ObjectInfo, Bytes)>> {
        self.hook.before_get(&self.inner, b, k).await?;
        self.inner.get(b, k, v, m).await
    }
    async fn get_range(&self, b: &str, k: &str, v: Option<&str>, o: u64, l: u64) -> Result<Bytes> {
        self.inner.get_range(b, k, v, o, l).await
    }
    async fn put(&self, b: &str, k: &str, body: Bytes, o: &PutOptions) -> Result<Written> {
        self.inner.put(b, k, body, o).await
    }
    async fn copy(&self, s: &ObjectRef, m: Option<&str>, b: &str, k: &str) -> Result<Fetch<Written>> {
        self.inner.copy(s, m, b, k).await
    }
    async fn create_multipart(&self, b: &str, k: &str, o: &PutOptions) -> Result<String> {
        self.inner.create_multipart(b, k, o).await
    }
    async fn upload_part(&self, b: &str, k: &str, u: &str, n: i32, body: Bytes) -> Result<String> {
        self.inner.upload_part(b, k, u, n, body).await
    }
    #[allow(clippy::too_many_arguments)]
    async fn upload_part_copy(
        &self,
        b: &str,
        k: &str,
        u: &str,
        n: i32,
        s: &ObjectRef,
        m: Option<&str>,
        f: u64,
        l: u64,
    ) -> Result<Fetch<String>> {
        self.inner.upload_part_copy(b, k, u, n, s, m, f, l).await
    }
    async fn complete_multipart(&self, b: &str, k: &str, u: &str, p: &[(i32, String)]) -> Result<Written> {
        self.inner.complete_multipart(b, k, u, p).await
    }
    async fn abort_multipart(&self, b: &str, k: &str, u: &str) -> Result<()> {
        self.inner.abort_multipart(b, k, u).await
    }
    async fn delete(&self, b: &str, k: &str) -> Result<()> {
        self.inner.delete(b, k).await
    }
    async fn list_versions(&self, b: &str, r: VersionListRequest<'_>) -> Result<VersionPage> {
        self.inner.list_versions(b, r).await
    }
    async fn get_tags(&self, b: &str, k: &str, v: Option<&str>) -> Result<Option<BTreeMap<String, String>>> {
        self.inner.get_tags(b, k, v).await
    }
    async fn get_acl(&self, b: &str, k: &str, v: Option<&str>) -> Result<Option<Acl>> {
        self.inner.get_acl(b, k, v).await
    }
    async fn acls_enabled(&self, b: &str) -> Result<bool> {
        self.inner.acls_enabled(b).await
    }
    async fn event_notifications_enabled(&self, b: &str) -> Result<bool> {
        self.inner.event_notifications_enabled(b).await
    }
    async fn copy_with(&self, s: &ObjectRef, m: Option<&str>, b: &str, k: &str, o: &PutOptions) -> Result<Fetch<Written>> {
        self.inner.copy_with(s, m, b, k, o).await
    }
    async fn delete_version(&self, b: &str, k: &str, v: &str) -> Result<()> {
        self.inner.delete_version(b, k, v).await
    }
    async fn restore_archived(&self, b: &str, k: &str, v: Option<&str>, d: u32) -> Result<()> {
        self.inner.restore_archived(b, k, v, d).await
    }
}

/// An engine over the fakes: `s3` as both the source and the vault, a fresh control store and
/// queue, the system clock, and the queues named `work` and `delta`; the shape most engine tests
/// start from.
pub fn mem_engine(s3: std::sync::Arc<MemObjectStore>, config: tidemark_core::config::EngineConfig) -> tidemark_core::engine::Engine {
    tidemark_core::engine::Engine {
        source: s3.clone(),
        vault: s3,
        control: std::sync::Arc::new(MemControlStore::new()),
        queue: std::sync::Arc::new(MemQueue::new()),
        clock: std::sync::Arc::new(tidemark_core::ports::SystemClock),
        keys: std::sync::Arc::new(tidemark_core::memory::MemKeys::new()),
        config,
        queues: tidemark_core::engine::QueueUrls { work: "work".into(), delta: "delta".into(), restore: "restore".into() },
    }
}
