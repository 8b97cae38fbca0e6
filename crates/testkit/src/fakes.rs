//! In-memory fakes of the engine's ports, faithful to the S3, SQS and DynamoDB behaviours the engine relies on.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Mutex;

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Duration, Utc};
use md5::{Digest, Md5};
use tidemark_core::domain::ObjectInfo;
use tidemark_core::ports::{
    Backlog, Clock, ControlStore, Fetch, Item, ListPage, ListRequest, Message, ObjectRef, ObjectStore, PutOptions, Queue, Written,
};
use tidemark_core::{Error, Result};

#[derive(Clone)]
struct Version {
    id: String,
    data: Bytes,
    etag: String,
    last_modified: DateTime<Utc>,
    content_type: Option<String>,
    metadata: BTreeMap<String, String>,
    delete_marker: bool,
}

#[derive(Default)]
struct Bucket {
    versioned: bool,
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
}

/// An in-memory S3 with versioning, multipart uploads, conditional reads and copies.
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

    /// Requests served so far.
    pub fn requests(&self) -> u64 {
        self.state.lock().unwrap().requests
    }

    /// Every listing call served so far, as (prefix, delimiter), in the order they came.
    pub fn list_calls(&self) -> Vec<(String, Option<String>)> {
        self.state.lock().unwrap().lists.clone()
    }

    fn current<'a>(b: &'a Bucket, key: &str) -> Option<&'a Version> {
        b.keys.get(key).and_then(|v| v.last()).filter(|v| !v.delete_marker)
    }

    fn info(key: &str, v: &Version, versioned: bool) -> ObjectInfo {
        ObjectInfo {
            key: key.into(),
            size: v.data.len() as u64,
            etag: v.etag.clone(),
            last_modified: v.last_modified,
            version_id: Some(if versioned { v.id.clone() } else { "null".into() }),
            content_type: v.content_type.clone(),
            metadata: v.metadata.clone(),
        }
    }

    fn find<'a>(b: &'a Bucket, key: &str, version: Option<&str>) -> Option<&'a Version> {
        match version {
            None => Self::current(b, key),
            Some(id) => b.keys.get(key)?.iter().find(|v| v.id == id && !v.delete_marker),
        }
    }

    fn write(s: &mut S3State, bucket: &str, key: &str, data: Bytes, etag: String, opts: &PutOptions) -> Result<Written> {
        s.counter += 1;
        let id = format!("v{:08}", s.counter);
        let b = s.buckets.get_mut(bucket).ok_or_else(|| no_bucket(bucket))?;
        if opts.if_none_match && Self::current(b, key).is_some() {
            return Err(Error::port("PutObject", format!("{key} already exists (If-None-Match)"), false));
        }
        let v = Version {
            id: id.clone(),
            data,
            etag: etag.clone(),
            last_modified: Utc::now(),
            content_type: opts.content_type.clone().or(Some("binary/octet-stream".into())),
            metadata: opts.metadata.clone(),
            delete_marker: false,
        };
        let versions = b.keys.entry(key.into()).or_default();
        if !b.versioned {
            versions.clear();
        }
        versions.push(v);
        Ok(Written { etag, version_id: b.versioned.then_some(id) })
    }
}

#[async_trait]
impl ObjectStore for MemObjectStore {
    async fn bucket_exists(&self, bucket: &str) -> Result<bool> {
        Ok(self.state.lock().unwrap().buckets.contains_key(bucket))
    }

    async fn create_bucket(&self, bucket: &str) -> Result<()> {
        self.state.lock().unwrap().buckets.entry(bucket.into()).or_default();
        Ok(())
    }

    async fn list(&self, bucket: &str, req: ListRequest<'_>) -> Result<ListPage> {
        let mut s = self.state.lock().unwrap();
        s.requests += 1;
        s.lists.push((req.prefix.to_string(), req.delimiter.map(str::to_string)));
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
            let mut info = Self::info(key, v, b.versioned);
            info.version_id = None;
            info.content_type = None;
            info.metadata.clear();
            page.objects.push(info);
            last = Some(key.clone());
        }
        Ok(page)
    }

    async fn head(&self, bucket: &str, key: &str, version_id: Option<&str>) -> Result<Option<ObjectInfo>> {
        let mut s = self.state.lock().unwrap();
        s.requests += 1;
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
            Some(v) => Fetch::Found((Self::info(key, v, b.versioned), v.data.clone())),
        })
    }

    async fn get_range(&self, bucket: &str, key: &str, version_id: Option<&str>, offset: u64, len: u64) -> Result<Bytes> {
        let mut s = self.state.lock().unwrap();
        s.requests += 1;
        let b = s.buckets.get(bucket).ok_or_else(|| no_bucket(bucket))?;
        let v = Self::find(b, key, version_id).ok_or_else(|| Error::port("GetObject", format!("{key} not found"), false))?;
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
        Self::write(&mut s, bucket, key, body, etag, opts)
    }

    async fn copy(&self, src: &ObjectRef, if_match: Option<&str>, bucket: &str, key: &str) -> Result<Fetch<Written>> {
        let mut s = self.state.lock().unwrap();
        s.requests += 1;
        let sb = s.buckets.get(&src.bucket).ok_or_else(|| no_bucket(&src.bucket))?;
        let v = match Self::find(sb, &src.key, src.version_id.as_deref()) {
            None => return Ok(Fetch::NotFound),
            Some(v) if if_match.is_some_and(|e| e != v.etag) => return Ok(Fetch::Changed),
            Some(v) => v.clone(),
        };
        let opts = PutOptions { content_type: v.content_type.clone(), metadata: v.metadata.clone(), ..Default::default() };
        // A copy of a multipart object becomes a single-part object with a plain MD5 ETag.
        let etag = md5_hex(&v.data);
        Ok(Fetch::Found(Self::write(&mut s, bucket, key, v.data, etag, &opts)?))
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
        let sb = s.buckets.get(&src.bucket).ok_or_else(|| no_bucket(&src.bucket))?;
        let data = match Self::find(sb, &src.key, src.version_id.as_deref()) {
            None => return Ok(Fetch::NotFound),
            Some(v) if if_match.is_some_and(|e| e != v.etag) => return Ok(Fetch::Changed),
            Some(v) => v.data.slice(first as usize..=last as usize),
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
        Self::write(&mut s, bucket, key, Bytes::from(body), etag, &u.opts)
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
                delete_marker: true,
            };
            b.keys.entry(key.into()).or_default().push(marker);
        } else {
            b.keys.remove(key);
        }
        Ok(())
    }
}

struct QMsg {
    id: String,
    body: String,
    sent_at: DateTime<Utc>,
    visible_at: DateTime<Utc>,
    receives: u32,
    receipt: Option<String>,
}

#[derive(Default)]
struct QState {
    queues: HashMap<String, VecDeque<QMsg>>,
    redrive: HashMap<String, (String, u32)>,
    counter: u64,
}

/// An in-memory SQS: visibility timeouts, receive counts, redrive to a dead-letter queue.
#[derive(Default)]
pub struct MemQueue {
    state: Mutex<QState>,
}

impl MemQueue {
    /// An empty set of queues.
    pub fn new() -> Self {
        Self::default()
    }

    /// Moves a message to `dlq` once it has been received `max_receives` times.
    pub fn set_redrive(&self, queue: &str, dlq: &str, max_receives: u32) {
        self.state.lock().unwrap().redrive.insert(queue.into(), (dlq.into(), max_receives));
    }

    /// Messages currently held by a queue.
    pub fn len(&self, queue: &str) -> usize {
        self.state.lock().unwrap().queues.get(queue).map_or(0, |q| q.len())
    }

    /// The bodies of a queue's messages (for assertions on dead-letter queues).
    pub fn bodies(&self, queue: &str) -> Vec<String> {
        self.state.lock().unwrap().queues.get(queue).map_or(vec![], |q| q.iter().map(|m| m.body.clone()).collect())
    }
}

#[async_trait]
impl Queue for MemQueue {
    async fn send(&self, queue: &str, body: &str, delay_seconds: i32) -> Result<()> {
        let mut s = self.state.lock().unwrap();
        s.counter += 1;
        let id = format!("m{}", s.counter);
        s.queues.entry(queue.into()).or_default().push_back(QMsg {
            id,
            body: body.into(),
            sent_at: Utc::now(),
            visible_at: Utc::now() + Duration::seconds(delay_seconds.into()),
            receives: 0,
            receipt: None,
        });
        Ok(())
    }

    async fn receive(&self, queue: &str, max: i32, _wait_seconds: i32, visibility_seconds: i32) -> Result<Vec<Message>> {
        let mut s = self.state.lock().unwrap();
        let now = Utc::now();
        let redrive = s.redrive.get(queue).cloned();
        let mut moved = Vec::new();
        let mut out = Vec::new();
        s.counter += 1;
        let stamp = s.counter;
        let q = s.queues.entry(queue.into()).or_default();
        let mut i = 0;
        while i < q.len() && out.len() < max.max(1) as usize {
            if q[i].visible_at > now {
                i += 1;
                continue;
            }
            if let Some((_, maxr)) = &redrive {
                if q[i].receives >= *maxr {
                    moved.push(q.remove(i).expect("index checked"));
                    continue;
                }
            }
            let m = &mut q[i];
            m.receives += 1;
            m.visible_at = now + Duration::seconds(visibility_seconds.into());
            let receipt = format!("{}#{}", m.id, stamp);
            m.receipt = Some(receipt.clone());
            out.push(Message { id: m.id.clone(), receipt, body: m.body.clone(), receive_count: m.receives, sent_at: Some(m.sent_at) });
            i += 1;
        }
        if let Some((dlq, _)) = redrive {
            s.queues.entry(dlq).or_default().extend(moved);
        }
        Ok(out)
    }

    async fn delete(&self, queue: &str, receipt: &str) -> Result<()> {
        let mut s = self.state.lock().unwrap();
        if let Some(q) = s.queues.get_mut(queue) {
            q.retain(|m| m.receipt.as_deref() != Some(receipt));
        }
        Ok(())
    }

    async fn change_visibility(&self, queue: &str, receipt: &str, visibility_seconds: i32) -> Result<()> {
        let mut s = self.state.lock().unwrap();
        if let Some(m) = s.queues.get_mut(queue).and_then(|q| q.iter_mut().find(|m| m.receipt.as_deref() == Some(receipt))) {
            m.visible_at = Utc::now() + Duration::seconds(visibility_seconds.into());
        }
        Ok(())
    }

    async fn depth(&self, queue: &str) -> Result<u64> {
        Ok(self.len(queue) as u64)
    }

    /// Exact: the fake knows when every message it holds was sent.
    async fn oldest_unhandled(&self, queue: &str) -> Result<Backlog> {
        let s = self.state.lock().unwrap();
        let at = Utc::now();
        Ok(match s.queues.get(queue).and_then(|q| q.iter().map(|m| m.sent_at).min()) {
            Some(oldest_sent) => Backlog::Oldest { at, oldest_sent },
            None => Backlog::Empty { at },
        })
    }
}

/// An in-memory control store with DynamoDB's conditional-write semantics.
#[derive(Default)]
pub struct MemControlStore {
    items: Mutex<BTreeMap<(String, String), Item>>,
}

impl MemControlStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait]
impl ControlStore for MemControlStore {
    async fn get(&self, pk: &str, sk: &str) -> Result<Option<Item>> {
        Ok(self.items.lock().unwrap().get(&(pk.into(), sk.into())).cloned())
    }

    async fn put_new(&self, pk: &str, sk: &str, body: &str, _expires_at: Option<i64>) -> Result<bool> {
        let mut items = self.items.lock().unwrap();
        let k = (pk.to_string(), sk.to_string());
        if items.contains_key(&k) {
            return Ok(false);
        }
        items.insert(k, Item { pk: pk.into(), sk: sk.into(), version: 1, body: body.into() });
        Ok(true)
    }

    async fn replace(&self, pk: &str, sk: &str, expected_version: u64, body: &str) -> Result<bool> {
        let mut items = self.items.lock().unwrap();
        match items.get_mut(&(pk.to_string(), sk.to_string())) {
            Some(item) if item.version == expected_version => {
                item.version += 1;
                item.body = body.into();
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn query(&self, pk: &str, sk_prefix: &str) -> Result<Vec<Item>> {
        let items = self.items.lock().unwrap();
        Ok(items.values().filter(|i| i.pk == pk && i.sk.starts_with(sk_prefix)).cloned().collect())
    }

    async fn get_many(&self, pk: &str, sks: &[String]) -> Result<Vec<Item>> {
        let items = self.items.lock().unwrap();
        let unique: std::collections::BTreeSet<&String> = sks.iter().collect();
        Ok(unique.into_iter().filter_map(|sk| items.get(&(pk.to_string(), sk.clone())).cloned()).collect())
    }

    async fn put_markers(&self, pk: &str, sks: &[String], body: &str, _expires_at: Option<i64>) -> Result<()> {
        let mut items = self.items.lock().unwrap();
        for sk in sks {
            items.insert((pk.into(), sk.clone()), Item { pk: pk.into(), sk: sk.clone(), version: 1, body: body.into() });
        }
        Ok(())
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
        config,
        queues: tidemark_core::engine::QueueUrls { work: "work".into(), delta: "delta".into() },
    }
}
