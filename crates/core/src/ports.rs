//! Ports: the small traits through which the engine reaches S3, the queues, the control store, the key service and the clock.
//!
//! Each port has an in-memory fake in `tidemark-testkit` and an AWS adapter in `tidemark-aws`,
//! and both pass the same conformance suite (`tidemark_testkit::conformance`).

use std::collections::BTreeMap;

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};

use crate::domain::{Acl, ObjectAttributes, ObjectInfo};
use crate::Result;

/// One page of a listing.
#[derive(Debug, Clone, Default)]
pub struct ListPage {
    /// Objects in key order; `version_id`, `content_type` and `metadata` are not filled by a listing.
    pub objects: Vec<ObjectInfo>,
    /// Common prefixes when a delimiter was given.
    pub common_prefixes: Vec<String>,
    /// Token for the next page, if there is one.
    pub next_token: Option<String>,
}

/// A listing request.
#[derive(Debug, Clone, Default)]
pub struct ListRequest<'a> {
    pub prefix: &'a str,
    pub delimiter: Option<&'a str>,
    /// List keys strictly after this one.
    pub start_after: Option<&'a str>,
    pub continuation: Option<String>,
    pub max_keys: Option<i32>,
}

/// A reference to one object version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectRef {
    pub bucket: String,
    pub key: String,
    pub version_id: Option<String>,
}

/// Options for writing an object.
#[derive(Debug, Clone, Default)]
pub struct PutOptions {
    pub content_type: Option<String>,
    pub metadata: BTreeMap<String, String>,
    /// SHA-256 of the body (hex); the server verifies it and refuses a mismatch.
    pub sha256_hex: Option<String>,
    /// Refuse to write if the key already exists (`If-None-Match: *`).
    pub if_none_match: bool,
    /// The other attributes to write with the object: the system metadata headers, tags
    /// (`x-amz-tagging`), storage class, server-side encryption, Object Lock, ACL grants, and a
    /// full-object `source_checksum` (sent as `x-amz-checksum-*` by a PUT, which S3 verifies; its
    /// algorithm alone by a copy or a multipart upload). `archived` is not written.
    pub attributes: ObjectAttributes,
}

/// A ListObjectVersions request.
#[derive(Debug, Clone, Default)]
pub struct VersionListRequest<'a> {
    pub prefix: &'a str,
    /// List the versions of keys after this one (or, with `version_id_marker`, from this key on).
    pub key_marker: Option<String>,
    pub version_id_marker: Option<String>,
    pub max_keys: Option<i32>,
}

/// One version or delete marker of a listing of versions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionEntry {
    pub key: String,
    /// `None` for the `null` version (an object written while versioning was off).
    pub version_id: Option<String>,
    pub is_latest: bool,
    pub is_delete_marker: bool,
    pub last_modified: DateTime<Utc>,
    /// The ETag without quotes; empty for a delete marker.
    pub etag: String,
    pub size: u64,
    pub storage_class: Option<String>,
}

/// One page of ListObjectVersions: versions of each key newest first, keys in order.
#[derive(Debug, Clone, Default)]
pub struct VersionPage {
    pub versions: Vec<VersionEntry>,
    /// Markers for the next page, if there is one.
    pub next_key_marker: Option<String>,
    pub next_version_id_marker: Option<String>,
}

/// What a write returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    pub etag: String,
    pub version_id: Option<String>,
}

/// The outcome of a read or copy that names a precondition.
#[derive(Debug, Clone)]
pub enum Fetch<T> {
    Found(T),
    /// The object (or version) does not exist.
    NotFound,
    /// The object exists but no longer matches the expected ETag.
    Changed,
}

/// S3 as the engine uses it, for the source bucket, the vault and restore targets alike.
#[async_trait]
pub trait ObjectStore: Send + Sync {
    /// True if the bucket exists and is reachable.
    async fn bucket_exists(&self, bucket: &str) -> Result<bool>;
    /// Creates a bucket if it does not exist yet.
    async fn create_bucket(&self, bucket: &str) -> Result<()>;
    /// One page of ListObjectsV2.
    async fn list(&self, bucket: &str, req: ListRequest<'_>) -> Result<ListPage>;
    /// HEAD of the current object or a version; `None` if it does not exist.
    async fn head(&self, bucket: &str, key: &str, version_id: Option<&str>) -> Result<Option<ObjectInfo>>;
    /// GET of a whole object, optionally a version, optionally only if its ETag matches.
    async fn get(&self, bucket: &str, key: &str, version_id: Option<&str>, if_match: Option<&str>) -> Result<Fetch<(ObjectInfo, Bytes)>>;
    /// Ranged GET of `len` bytes from `offset`.
    async fn get_range(&self, bucket: &str, key: &str, version_id: Option<&str>, offset: u64, len: u64) -> Result<Bytes>;
    /// PutObject.
    async fn put(&self, bucket: &str, key: &str, body: Bytes, opts: &PutOptions) -> Result<Written>;
    /// Server-side CopyObject, keeping the source's metadata and content type.
    async fn copy(&self, src: &ObjectRef, if_match: Option<&str>, bucket: &str, key: &str) -> Result<Fetch<Written>>;
    /// Starts a multipart upload and returns its id.
    async fn create_multipart(&self, bucket: &str, key: &str, opts: &PutOptions) -> Result<String>;
    /// Uploads one part and returns its ETag.
    async fn upload_part(&self, bucket: &str, key: &str, upload_id: &str, part_number: i32, body: Bytes) -> Result<String>;
    /// Copies a byte range (inclusive) of another object as one part.
    async fn upload_part_copy(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        part_number: i32,
        src: &ObjectRef,
        if_match: Option<&str>,
        first: u64,
        last: u64,
    ) -> Result<Fetch<String>>;
    /// Completes a multipart upload from (part number, ETag) pairs.
    async fn complete_multipart(&self, bucket: &str, key: &str, upload_id: &str, parts: &[(i32, String)]) -> Result<Written>;
    /// Aborts a multipart upload, freeing its parts.
    async fn abort_multipart(&self, bucket: &str, key: &str, upload_id: &str) -> Result<()>;
    /// Deletes the current object (in a versioned bucket, creates a delete marker).
    async fn delete(&self, bucket: &str, key: &str) -> Result<()>;
    /// One page of ListObjectVersions (every version and delete marker).
    async fn list_versions(&self, bucket: &str, req: VersionListRequest<'_>) -> Result<VersionPage>;
    /// GetObjectTagging of the current object or a version; `None` if it does not exist.
    async fn get_tags(&self, bucket: &str, key: &str, version_id: Option<&str>) -> Result<Option<BTreeMap<String, String>>>;
    /// GetObjectAcl of the current object or a version; `None` if it does not exist.
    async fn get_acl(&self, bucket: &str, key: &str, version_id: Option<&str>) -> Result<Option<Acl>>;
    /// True unless the bucket's object ownership is `BucketOwnerEnforced` (ACLs disabled).
    async fn acls_enabled(&self, bucket: &str) -> Result<bool>;
    /// True if the bucket sends its events to EventBridge. A bucket re-created after it was gone
    /// has no notification configuration, and without it continuous backup silently stops.
    async fn event_notifications_enabled(&self, bucket: &str) -> Result<bool>;
    /// Server-side CopyObject that writes `opts` instead of the source's metadata and tags
    /// (`REPLACE` directives): content type, user metadata and every attribute of `opts`.
    async fn copy_with(
        &self,
        src: &ObjectRef,
        if_match: Option<&str>,
        bucket: &str,
        key: &str,
        opts: &PutOptions,
    ) -> Result<Fetch<Written>>;
    /// Deletes one version or delete marker permanently (DeleteObject with a version id).
    async fn delete_version(&self, bucket: &str, key: &str, version_id: &str) -> Result<()>;
    /// RestoreObject: asks S3 for a readable copy of an archived object for `days` days. Asking
    /// again while a restore is in progress, or once it is done, is not an error.
    async fn restore_archived(&self, bucket: &str, key: &str, version_id: Option<&str>, days: u32) -> Result<()>;
    /// Deletes many current objects (DeleteObjects, up to 1,000 a request); returns the keys that
    /// could not be deleted, with the reason. The default deletes one key at a time.
    async fn delete_many(&self, bucket: &str, keys: &[String]) -> Result<Vec<(String, String)>> {
        let mut failed = Vec::new();
        for key in keys {
            if let Err(e) = self.delete(bucket, key).await {
                if e.is_transient() {
                    return Err(e);
                }
                failed.push((key.clone(), e.to_string()));
            }
        }
        Ok(failed)
    }
}

/// Where a restore writes: the store for a target bucket, reached with the restore's own
/// credentials, or through a role in the target's account.
#[async_trait]
pub trait Targets: Send + Sync {
    /// The store to write a target with; `role_arn` names the role to assume, if any. A role
    /// that cannot be assumed is an error naming it.
    async fn store(&self, role_arn: Option<&str>) -> Result<std::sync::Arc<dyn ObjectStore>>;

    /// The role that writes `bucket` when a request names none, if the deployment has one for
    /// the bucket's account (the restore target role of a source account); `None` writes with
    /// the restore's own credentials. Starting a restore asks only for buckets the vault protects.
    fn default_role(&self, _bucket: &str) -> Option<String> {
        None
    }
}

/// Every target written with one store and no role (tests, the local stack, a single account).
pub struct SameStore(pub std::sync::Arc<dyn ObjectStore>);

#[async_trait]
impl Targets for SameStore {
    async fn store(&self, role_arn: Option<&str>) -> Result<std::sync::Arc<dyn ObjectStore>> {
        match role_arn {
            None => Ok(self.0.clone()),
            Some(arn) => Err(crate::Error::Invalid(format!(
                "target role {arn} cannot be assumed here: this runner writes targets with its own credentials only"
            ))),
        }
    }
}

/// Lists every version and delete marker of exactly `key` (not of other keys it prefixes),
/// newest first.
pub async fn key_versions(store: &dyn ObjectStore, bucket: &str, key: &str) -> Result<Vec<VersionEntry>> {
    let mut out = Vec::new();
    let mut req = VersionListRequest { prefix: key, ..Default::default() };
    loop {
        let page = store.list_versions(bucket, req.clone()).await?;
        let past = page.versions.iter().any(|v| v.key.as_str() > key);
        out.extend(page.versions.into_iter().filter(|v| v.key == key));
        match page.next_key_marker {
            Some(k) if !past && k.as_str() <= key => {
                req.key_marker = Some(k);
                req.version_id_marker = page.next_version_id_marker;
            }
            _ => return Ok(out),
        }
    }
}

/// Lists everything under `prefix`, following continuation tokens, as one page.
///
/// Every caller that needs a whole prefix (recovery points, a restore target, reconciliation,
/// listing-based planning) pages the same way; this is that one loop.
pub async fn list_all(store: &dyn ObjectStore, bucket: &str, prefix: &str, delimiter: Option<&str>) -> Result<ListPage> {
    let mut all = ListPage::default();
    let mut token = None;
    loop {
        let page = store.list(bucket, ListRequest { prefix, delimiter, continuation: token, ..Default::default() }).await?;
        all.objects.extend(page.objects);
        all.common_prefixes.extend(page.common_prefixes);
        match page.next_token {
            Some(t) => token = Some(t),
            None => return Ok(all),
        }
    }
}

/// A message received from a queue.
#[derive(Debug, Clone)]
pub struct Message {
    pub id: String,
    pub receipt: String,
    pub body: String,
    /// How many times the queue has handed this message out, this time included.
    pub receive_count: u32,
    /// When the queue accepted the message (SQS's `SentTimestamp`); the delta handlers record it
    /// as the checkpoint's evidence (`changes::backlog`). `None` if the queue did not say.
    pub sent_at: Option<DateTime<Utc>>,
}

/// A work queue with at-least-once delivery (SQS).
#[async_trait]
pub trait Queue: Send + Sync {
    /// Sends one message, visible after `delay_seconds`.
    async fn send(&self, queue: &str, body: &str, delay_seconds: i32) -> Result<()>;
    /// Receives up to `max` messages, waiting up to `wait_seconds`, hiding them for `visibility_seconds`.
    async fn receive(&self, queue: &str, max: i32, wait_seconds: i32, visibility_seconds: i32) -> Result<Vec<Message>>;
    /// Deletes a handled message.
    async fn delete(&self, queue: &str, receipt: &str) -> Result<()>;
    /// Deletes several handled messages (SQS's DeleteMessageBatch takes ten per request, as the
    /// Lambda event source mapping does); by default one request each.
    async fn delete_many(&self, queue: &str, receipts: &[String]) -> Result<()> {
        for r in receipts {
            self.delete(queue, r).await?;
        }
        Ok(())
    }
    /// Changes how long a received message stays hidden (0 makes it visible again at once).
    async fn change_visibility(&self, queue: &str, receipt: &str, visibility_seconds: i32) -> Result<()>;
    /// Approximate number of messages visible plus in flight.
    async fn depth(&self, queue: &str) -> Result<u64>;
    /// What the queue can tell about its oldest message not yet handled (deleted): the checkpoint's
    /// evidence for the watermark while changes keep arriving.
    async fn oldest_unhandled(&self, queue: &str) -> Result<Backlog>;
}

/// Where alerts go (an SNS topic): one message per alert, with a subject line.
#[async_trait]
pub trait Notifier: Send + Sync {
    /// Publishes one alert to `topic`; returns the publisher's message id.
    async fn publish(&self, topic: &str, subject: &str, body: &str) -> Result<String>;
}

/// A queue's evidence about the messages it still holds (visible, delayed or in flight).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Backlog {
    /// As of `at`, the queue held no message at all.
    Empty { at: DateTime<Utc> },
    /// As of `at`, every message sent before `oldest_sent` had been handled.
    Oldest { at: DateTime<Utc>, oldest_sent: DateTime<Utc> },
    /// The queue cannot say (for example, no recent datapoint of its age metric); nothing may be sealed on it.
    Unknown { reason: String },
}

/// One item of the control store: a JSON body under a partition and sort key, with a version for compare-and-set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    pub pk: String,
    pub sk: String,
    pub version: u64,
    pub body: String,
}

/// Control state with conditional writes (DynamoDB). No read-modify-write happens without a condition.
#[async_trait]
pub trait ControlStore: Send + Sync {
    /// Reads one item.
    async fn get(&self, pk: &str, sk: &str) -> Result<Option<Item>>;
    /// Writes an item only if none exists under its key; returns false if one did.
    async fn put_new(&self, pk: &str, sk: &str, body: &str, expires_at: Option<i64>) -> Result<bool>;
    /// Replaces an item only if its version is still `expected_version`; returns false otherwise.
    async fn replace(&self, pk: &str, sk: &str, expected_version: u64, body: &str) -> Result<bool>;
    /// All items of a partition whose sort key starts with `sk_prefix`, in sort-key order.
    async fn query(&self, pk: &str, sk_prefix: &str) -> Result<Vec<Item>>;
    /// Reads many items of one partition at once (DynamoDB BatchGetItem); returns those that
    /// exist, in no particular order. Duplicate sort keys are allowed.
    async fn get_many(&self, pk: &str, sks: &[String]) -> Result<Vec<Item>>;
    /// Writes marker items (existence is all they say; their body never changes) of one partition
    /// unconditionally and in batches (DynamoDB BatchWriteItem). A marker written twice stays one
    /// marker. Not for items that are ever replaced: this bypasses compare-and-set.
    async fn put_markers(&self, pk: &str, sks: &[String], body: &str, expires_at: Option<i64>) -> Result<()>;
}

/// A data key made by the key service: the plaintext to encrypt with (never stored) and the same
/// key wrapped by the named key (stored beside what it encrypts).
#[derive(Clone, PartialEq, Eq)]
pub struct DataKey {
    /// The 32 bytes of an AES-256 key.
    pub plaintext: [u8; 32],
    /// The key encrypted under `key_id`; only the key service can unwrap it.
    pub wrapped: Vec<u8>,
}

impl std::fmt::Debug for DataKey {
    /// Leaves the plaintext out, so that no log or panic message ever shows a data key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DataKey").field("wrapped_len", &self.wrapped.len()).finish_non_exhaustive()
    }
}

/// The key service (KMS): envelope encryption's data keys, made and unwrapped under a named key.
///
/// A failure is an [`crate::Error::Key`] naming the key: transient when a retry may help
/// (throttling, a network failure), permanent when the key cannot be used (unknown, disabled,
/// not allowed, or not the key that wrapped the blob).
#[async_trait]
pub trait KeyService: Send + Sync {
    /// Makes a fresh AES-256 data key under `key_id` (KMS GenerateDataKey).
    async fn generate_data_key(&self, key_id: &str) -> Result<DataKey>;
    /// Unwraps a data key that `key_id` wrapped (KMS Decrypt); returns its 32 bytes.
    async fn decrypt_data_key(&self, key_id: &str, wrapped: &[u8]) -> Result<[u8; 32]>;
}

/// The time source; a port so that tests can pin it.
pub trait Clock: Send + Sync {
    fn now(&self) -> DateTime<Utc>;
}

/// The real clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}
