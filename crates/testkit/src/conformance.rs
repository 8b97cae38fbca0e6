//! Conformance suites: one set of checks per port, run against the fakes and against the local stack.
//!
//! Each suite panics with a message naming the broken expectation, so a failing adapter or fake
//! says exactly which behaviour the engine relies on is missing.

use std::collections::BTreeMap;

use bytes::Bytes;
use md5::{Digest, Md5};
use tidemark_core::domain::{ObjectAttributes, SourceChecksum, Sse};
use tidemark_core::ports::{
    key_versions, Backlog, ControlStore, Fetch, KeyService, ListRequest, ObjectRef, ObjectStore, PutOptions, Queue, VersionListRequest,
};

fn md5_hex(b: &[u8]) -> String {
    hex::encode(Md5::digest(b))
}

fn found<T>(f: Fetch<T>, what: &str) -> T {
    match f {
        Fetch::Found(t) => t,
        Fetch::NotFound => panic!("{what}: expected Found, got NotFound"),
        Fetch::Changed => panic!("{what}: expected Found, got Changed"),
    }
}

/// Known deviations of a server from S3, stated by the caller so the suite checks everything else.
#[derive(Debug, Clone, Copy, Default)]
pub struct Quirks {
    /// moto 5.2 ignores `x-amz-copy-source-if-match` on CopyObject; the engine compensates by
    /// comparing the copy's ETag with the one it expected.
    pub copy_ignores_if_match: bool,
    /// SeaweedFS 4.48 gives UploadPartCopy parts other ETags than S3 does, so a multipart copy's
    /// ETag differs from its source's even with identical parts. Restore verifies multipart vault
    /// copies by that ETag, so on such a server they would be reported as mismatches.
    pub part_copy_etag_differs: bool,
    /// moto 5.2 accepts any `x-amz-checksum-*` value without checking it; the engine verifies
    /// captured bytes itself and restores check the ETag, so nothing relies on the server here.
    pub checksums_unverified: bool,
    /// SeaweedFS 4.48 drops `x-amz-website-redirect-location`.
    pub no_website_redirect: bool,
    /// SeaweedFS 4.48 answers GetBucketOwnershipControls with AccessDenied (capture then reads no ACLs).
    pub no_ownership_controls: bool,
    /// SeaweedFS 4.48 has no bucket notification configuration (it answers with an error).
    pub no_event_notifications: bool,
}

/// The S3 behaviours the engine relies on. `bucket` must exist and be empty; `missing` must not exist.
pub async fn object_store(s: &dyn ObjectStore, bucket: &str, missing: &str, quirks: Quirks) {
    assert!(s.bucket_exists(bucket).await.unwrap(), "bucket_exists on an existing bucket");
    assert!(!s.bucket_exists(missing).await.unwrap(), "bucket_exists on a missing bucket");
    if !quirks.no_event_notifications {
        assert!(!s.event_notifications_enabled(bucket).await.unwrap(), "a new bucket sends no events to EventBridge");
    }
    assert!(s.event_notifications_enabled(missing).await.is_err(), "a missing bucket has no notification configuration");

    // Put and get keep the bytes, content type and user metadata; the ETag of a PUT is the MD5.
    let mut meta = BTreeMap::new();
    meta.insert("owner".to_string(), "team-a".to_string());
    let opts = PutOptions { content_type: Some("text/plain".into()), metadata: meta.clone(), ..Default::default() };
    let key = "dir/a file+%=é.txt";
    let w = s.put(bucket, key, Bytes::from_static(b"hello world"), &opts).await.unwrap();
    assert_eq!(w.etag, md5_hex(b"hello world"), "PUT ETag is the MD5 of the body");
    let (info, data) = found(s.get(bucket, key, None, None).await.unwrap(), "get");
    assert_eq!(&data[..], b"hello world");
    assert_eq!(info.content_type.as_deref(), Some("text/plain"), "content type kept");
    assert_eq!(info.metadata, meta, "user metadata kept");
    assert_eq!(info.size, 11);
    assert!(matches!(s.get(bucket, key, None, Some("0123")).await.unwrap(), Fetch::Changed), "get with a stale If-Match is Changed");
    assert!(matches!(s.get(bucket, "nope", None, None).await.unwrap(), Fetch::NotFound), "get of a missing key is NotFound");
    assert!(s.head(bucket, "nope", None).await.unwrap().is_none(), "head of a missing key is None");
    let h = s.head(bucket, key, None).await.unwrap().expect("head finds the object");
    assert_eq!((h.size, h.etag.as_str()), (11, w.etag.as_str()));
    assert_eq!(&s.get_range(bucket, key, None, 6, 5).await.unwrap()[..], b"world", "ranged get");

    // A put with the correct SHA-256 is accepted.
    let body = Bytes::from_static(b"checked");
    let sha = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&body));
    let o2 = PutOptions { sha256_hex: Some(sha), ..Default::default() };
    s.put(bucket, "checked", body, &o2).await.expect("put with a correct sha256");

    // Deleting many keys at once removes each of them and reports nothing for a missing one.
    for k in ["dm/1", "dm/2 x+y", "dm/3"] {
        s.put(bucket, k, Bytes::from_static(b"d"), &PutOptions::default()).await.unwrap();
    }
    let failed = s.delete_many(bucket, &["dm/1".into(), "dm/2 x+y".into(), "dm/never-was".into()]).await.unwrap();
    assert!(failed.is_empty(), "delete_many failures: {failed:?}");
    let left: Vec<String> =
        tidemark_core::ports::list_all(s, bucket, "dm/", None).await.unwrap().objects.into_iter().map(|o| o.key).collect();
    assert_eq!(left, vec!["dm/3".to_string()], "delete_many removed exactly the keys named");

    // Listing: prefix, delimiter, start-after and pagination.
    for k in ["l/a", "l/b", "l/c/1", "l/c/2", "l/d"] {
        s.put(bucket, k, Bytes::from_static(b"x"), &PutOptions::default()).await.unwrap();
    }
    let page = s.list(bucket, ListRequest { prefix: "l/", delimiter: Some("/"), ..Default::default() }).await.unwrap();
    let keys: Vec<&str> = page.objects.iter().map(|o| o.key.as_str()).collect();
    assert_eq!(keys, vec!["l/a", "l/b", "l/d"], "delimiter listing objects");
    assert_eq!(page.common_prefixes, vec!["l/c/"], "delimiter listing prefixes");
    let page = s.list(bucket, ListRequest { prefix: "l/", start_after: Some("l/b"), ..Default::default() }).await.unwrap();
    let keys: Vec<&str> = page.objects.iter().map(|o| o.key.as_str()).collect();
    assert_eq!(keys, vec!["l/c/1", "l/c/2", "l/d"], "start_after");
    let mut all = Vec::new();
    let mut token = None;
    loop {
        let page =
            s.list(bucket, ListRequest { prefix: "l/", max_keys: Some(2), continuation: token, ..Default::default() }).await.unwrap();
        assert!(page.objects.len() <= 2, "max_keys respected");
        all.extend(page.objects.into_iter().map(|o| (o.key, o.size)));
        match page.next_token {
            Some(t) => token = Some(t),
            None => break,
        }
    }
    assert_eq!(all.len(), 5, "pagination visits every key once: {all:?}");

    // Copy keeps metadata; a stale If-Match or a missing source is reported, not an error.
    let src = ObjectRef { bucket: bucket.into(), key: key.into(), version_id: None };
    let c = found(s.copy(&src, Some(&w.etag), bucket, "copy/of").await.unwrap(), "copy");
    assert_eq!(c.etag, w.etag, "a copy of a single-part object keeps its ETag");
    let ci = s.head(bucket, "copy/of", None).await.unwrap().unwrap();
    assert_eq!(ci.metadata, meta, "copy keeps user metadata");
    assert_eq!(ci.content_type.as_deref(), Some("text/plain"), "copy keeps the content type");
    if !quirks.copy_ignores_if_match {
        assert!(matches!(s.copy(&src, Some("0123"), bucket, "copy/x").await.unwrap(), Fetch::Changed), "copy with a stale If-Match");
    }
    let gone = ObjectRef { bucket: bucket.into(), key: "nope".into(), version_id: None };
    assert!(matches!(s.copy(&gone, None, bucket, "copy/y").await.unwrap(), Fetch::NotFound), "copy of a missing source");

    // Multipart upload and multipart copy; the ETag is MD5 of the part MD5s, dash, part count.
    let part1 = Bytes::from(vec![7u8; 5 * 1024 * 1024]);
    let part2 = Bytes::from_static(b"tail");
    let up = s.create_multipart(bucket, "mp", &opts).await.unwrap();
    let e1 = s.upload_part(bucket, "mp", &up, 1, part1.clone()).await.unwrap();
    let e2 = s.upload_part(bucket, "mp", &up, 2, part2.clone()).await.unwrap();
    let done = s.complete_multipart(bucket, "mp", &up, &[(1, e1), (2, e2)]).await.unwrap();
    let mut md5s = Vec::new();
    md5s.extend_from_slice(&Md5::digest(&part1));
    md5s.extend_from_slice(&Md5::digest(&part2));
    assert_eq!(done.etag, format!("{}-2", md5_hex(&md5s)), "multipart ETag");
    let mp = s.head(bucket, "mp", None).await.unwrap().unwrap();
    assert_eq!(mp.size, part1.len() as u64 + 4);
    assert_eq!(mp.metadata, meta, "multipart upload keeps metadata given at creation");
    let msrc = ObjectRef { bucket: bucket.into(), key: "mp".into(), version_id: None };
    let up = s.create_multipart(bucket, "mpc", &opts).await.unwrap();
    let last = mp.size - 1;
    let c1 = found(s.upload_part_copy(bucket, "mpc", &up, 1, &msrc, Some(&mp.etag), 0, 5 * 1024 * 1024 - 1).await.unwrap(), "part copy");
    let c2 = found(s.upload_part_copy(bucket, "mpc", &up, 2, &msrc, None, 5 * 1024 * 1024, last).await.unwrap(), "part copy");
    let copied = s.complete_multipart(bucket, "mpc", &up, &[(1, c1), (2, c2)]).await.unwrap();
    if !quirks.part_copy_etag_differs {
        assert_eq!(copied.etag, done.etag, "a multipart copy with the same parts reproduces the ETag");
    }
    let (_, copied_bytes) = found(s.get(bucket, "mpc", None, None).await.unwrap(), "get multipart copy");
    assert_eq!(copied_bytes.len() as u64, mp.size, "a multipart copy has every byte");
    assert!(
        copied_bytes[..part1.len()].iter().all(|b| *b == 7) && &copied_bytes[part1.len()..] == b"tail",
        "a multipart copy has the right bytes"
    );
    let up = s.create_multipart(bucket, "aborted", &opts).await.unwrap();
    s.abort_multipart(bucket, "aborted", &up).await.unwrap();
    assert!(s.head(bucket, "aborted", None).await.unwrap().is_none(), "an aborted upload leaves nothing");

    // Delete.
    s.delete(bucket, "copy/of").await.unwrap();
    assert!(s.head(bucket, "copy/of", None).await.unwrap().is_none(), "deleted");

    // Create bucket is idempotent.
    s.create_bucket(bucket).await.expect("create_bucket on an existing own bucket succeeds");
}

/// The attributes the engine records and restores: `bucket` must exist and be empty.
///
/// A PUT keeps the system metadata headers, the tags, the storage class, the encryption and the
/// checksum it sent (which HEAD reports with `ChecksumMode=ENABLED`); a copy with `copy_with`
/// writes the attributes it is given instead of the source's.
pub async fn attributes(s: &dyn ObjectStore, bucket: &str, quirks: Quirks) {
    let body = Bytes::from_static(b"hello");
    let attrs = ObjectAttributes {
        cache_control: Some("max-age=60".into()),
        content_encoding: Some("gzip".into()),
        content_disposition: Some("attachment; filename=\"a.txt\"".into()),
        content_language: Some("de".into()),
        expires: Some("2030-01-02T03:04:05Z".parse().unwrap()),
        website_redirect_location: Some("/other.html".into()),
        tags: BTreeMap::from([("team".to_string(), "a b".to_string()), ("n".to_string(), "1".to_string())]),
        storage_class: Some("STANDARD_IA".to_string()),
        // The value S3 reports for the five bytes `hello`; the server verifies it.
        source_checksum: Some(SourceChecksum { algorithm: "CRC32".into(), value: "NhCmhg==".into(), kind: None }),
        sse: Some(Sse { algorithm: "AES256".into(), kms_key_id: None, bucket_key: None, customer_key: false }),
        object_lock: None,
        acl: None,
        archived: None,
    };
    let opts = PutOptions { content_type: Some("text/x-test".into()), attributes: attrs.clone(), ..Default::default() };
    s.put(bucket, "attrs/a", body.clone(), &opts).await.expect("a put with every attribute");
    let h = s.head(bucket, "attrs/a", None).await.unwrap().expect("head");
    let a = &h.attributes;
    assert_eq!(a.cache_control, attrs.cache_control, "Cache-Control kept");
    assert_eq!(a.content_encoding, attrs.content_encoding, "Content-Encoding kept");
    assert_eq!(a.content_disposition, attrs.content_disposition, "Content-Disposition kept");
    assert_eq!(a.content_language, attrs.content_language, "Content-Language kept");
    assert_eq!(a.expires, attrs.expires, "Expires kept");
    if !quirks.no_website_redirect {
        assert_eq!(a.website_redirect_location, attrs.website_redirect_location, "website redirect kept");
    }
    assert_eq!(a.storage_class, attrs.storage_class, "storage class kept");
    assert_eq!(a.sse.as_ref().map(|s| s.algorithm.as_str()), attrs.sse.as_ref().map(|s| s.algorithm.as_str()), "encryption reported");
    let ck = a.source_checksum.as_ref().expect("HEAD with checksum mode reports the checksum");
    assert_eq!((ck.algorithm.as_str(), ck.value.as_str()), ("CRC32", "NhCmhg=="), "the checksum sent is the one kept");
    assert_ne!(h.tag_count, Some(0), "a tagged object does not say it has no tags");
    assert_eq!(s.get_tags(bucket, "attrs/a", None).await.unwrap(), Some(attrs.tags.clone()), "tags kept");
    assert_eq!(s.get_tags(bucket, "attrs/missing", None).await.unwrap(), None, "no tags of a missing key");
    let acl = s.get_acl(bucket, "attrs/a", None).await.unwrap().expect("every object has an ACL");
    assert!(acl.grants.iter().any(|g| g.permission == "FULL_CONTROL"), "the owner has full control: {acl:?}");
    if !quirks.no_ownership_controls {
        s.acls_enabled(bucket).await.expect("ownership controls can be asked for");
    }
    let bad = PutOptions {
        attributes: ObjectAttributes {
            source_checksum: Some(SourceChecksum { algorithm: "CRC32".into(), value: "AAAAAA==".into(), kind: None }),
            ..Default::default()
        },
        ..Default::default()
    };
    if !quirks.checksums_unverified {
        assert!(s.put(bucket, "attrs/bad", body.clone(), &bad).await.is_err(), "a wrong checksum is refused");
    }
    if let Fetch::Found((info, data)) = s.get(bucket, "attrs/a", None, None).await.unwrap() {
        assert_eq!(&data[..], b"hello");
        assert_eq!(info.attributes.cache_control, attrs.cache_control, "GET reports the attributes too");
    } else {
        panic!("get after put");
    }

    // A copy with other attributes writes them, not the source's.
    let src = ObjectRef { bucket: bucket.into(), key: "attrs/a".into(), version_id: None };
    let other = PutOptions {
        content_type: Some("application/x-copied".into()),
        metadata: BTreeMap::from([("m".to_string(), "2".to_string())]),
        attributes: ObjectAttributes {
            cache_control: Some("no-store".into()),
            website_redirect_location: Some("/copied.html".into()),
            tags: BTreeMap::from([("copied".to_string(), "yes".to_string())]),
            source_checksum: Some(SourceChecksum { algorithm: "CRC32".into(), value: String::new(), kind: None }),
            ..Default::default()
        },
        ..Default::default()
    };
    let w = found(s.copy_with(&src, Some(&md5_hex(&body)), bucket, "attrs/copy", &other).await.unwrap(), "copy_with");
    assert_eq!(w.etag, md5_hex(&body), "a copy of a single-part object keeps its ETag");
    let c = s.head(bucket, "attrs/copy", None).await.unwrap().expect("head copy");
    assert_eq!(c.content_type.as_deref(), Some("application/x-copied"), "copy_with replaces the content type");
    assert_eq!(c.metadata, other.metadata, "copy_with replaces the metadata");
    assert_eq!(c.attributes.cache_control.as_deref(), Some("no-store"), "copy_with replaces Cache-Control");
    assert_eq!(c.attributes.content_encoding, None, "copy_with does not keep what it was not given");
    if !quirks.no_website_redirect {
        assert_eq!(c.attributes.website_redirect_location.as_deref(), Some("/copied.html"), "copy_with writes the redirect");
    }
    assert_eq!(s.get_tags(bucket, "attrs/copy", None).await.unwrap(), Some(other.attributes.tags.clone()), "copy_with replaces the tags");
    assert_eq!(c.attributes.source_checksum.as_ref().map(|c| c.value.as_str()), Some("NhCmhg=="), "the copy has the algorithm asked for");
}

/// ListObjectVersions and permanent deletes: `bucket` must exist, be empty and have versioning on.
pub async fn versions(s: &dyn ObjectStore, bucket: &str) {
    let w1 = s.put(bucket, "v/k", Bytes::from_static(b"one"), &PutOptions::default()).await.unwrap();
    let w2 = s.put(bucket, "v/k", Bytes::from_static(b"two"), &PutOptions::default()).await.unwrap();
    s.put(bucket, "v/k2", Bytes::from_static(b"other"), &PutOptions::default()).await.unwrap();
    let (v1, v2) = (w1.version_id.unwrap(), w2.version_id.unwrap());
    s.delete(bucket, "v/k").await.unwrap();
    let listed = key_versions(s, bucket, "v/k").await.unwrap();
    assert_eq!(listed.len(), 3, "two versions and a marker of exactly this key: {listed:?}");
    assert!(listed[0].is_delete_marker && listed[0].is_latest, "the marker is newest and latest: {listed:?}");
    let ids: Vec<Option<&str>> = listed.iter().skip(1).map(|v| v.version_id.as_deref()).collect();
    assert_eq!(ids, vec![Some(v2.as_str()), Some(v1.as_str())], "versions newest first");
    assert_eq!((listed[1].size, listed[1].etag.as_str()), (3, md5_hex(b"two").as_str()));
    // Page by page, one entry at a time, every entry of the prefix comes once.
    let mut all = Vec::new();
    let mut req = VersionListRequest { prefix: "v/", max_keys: Some(1), ..Default::default() };
    loop {
        let page = s.list_versions(bucket, req.clone()).await.unwrap();
        assert!(page.versions.len() <= 1, "max_keys respected");
        all.extend(page.versions.into_iter().map(|v| (v.key, v.version_id)));
        match page.next_key_marker {
            Some(k) => {
                req.key_marker = Some(k);
                req.version_id_marker = page.next_version_id_marker;
            }
            None => break,
        }
    }
    assert_eq!(all.len(), 4, "pagination visits every version and marker once: {all:?}");

    // Removing the marker brings the key back; deleting the current version for good makes the
    // older one current; deleting a non-current one changes nothing current.
    let marker = listed[0].version_id.clone().expect("a marker has an id");
    s.delete_version(bucket, "v/k", &marker).await.unwrap();
    let (info, data) = found(s.get(bucket, "v/k", None, None).await.unwrap(), "undeleted");
    assert_eq!((&data[..], info.version_id.as_deref()), (&b"two"[..], Some(v2.as_str())));
    s.delete_version(bucket, "v/k", &v2).await.unwrap();
    let (_, data) = found(s.get(bucket, "v/k", None, None).await.unwrap(), "older version current");
    assert_eq!(&data[..], b"one");
    let w3 = s.put(bucket, "v/k", Bytes::from_static(b"three"), &PutOptions::default()).await.unwrap();
    s.delete_version(bucket, "v/k", &v1).await.unwrap();
    let (info, _) = found(s.get(bucket, "v/k", None, None).await.unwrap(), "current after a non-current delete");
    assert_eq!(info.version_id, w3.version_id);
    assert!(matches!(s.get(bucket, "v/k", Some(&v1), None).await.unwrap(), Fetch::NotFound), "a deleted version is gone");
    let tags = BTreeMap::from([("t".to_string(), "1".to_string())]);
    let opts = PutOptions { attributes: ObjectAttributes { tags: tags.clone(), ..Default::default() }, ..Default::default() };
    let w4 = s.put(bucket, "v/tagged", Bytes::from_static(b"x"), &opts).await.unwrap();
    s.put(bucket, "v/tagged", Bytes::from_static(b"y"), &PutOptions::default()).await.unwrap();
    assert_eq!(s.get_tags(bucket, "v/tagged", w4.version_id.as_deref()).await.unwrap(), Some(tags), "tags of a version");
}

/// Version behaviour: `bucket` must exist, be empty and have versioning on.
pub async fn versioned_object_store(s: &dyn ObjectStore, bucket: &str) {
    let w1 = s.put(bucket, "k", Bytes::from_static(b"one"), &PutOptions::default()).await.unwrap();
    let w2 = s.put(bucket, "k", Bytes::from_static(b"two"), &PutOptions::default()).await.unwrap();
    let (v1, v2) = (w1.version_id.expect("versioned put returns a version id"), w2.version_id.unwrap());
    assert_ne!(v1, v2);
    let (_, old) = found(s.get(bucket, "k", Some(&v1), None).await.unwrap(), "get old version");
    assert_eq!(&old[..], b"one");
    let (info, cur) = found(s.get(bucket, "k", None, None).await.unwrap(), "get current");
    assert_eq!((&cur[..], info.version_id.as_deref()), (&b"two"[..], Some(v2.as_str())));
    s.delete(bucket, "k").await.unwrap();
    assert!(s.head(bucket, "k", None).await.unwrap().is_none(), "a delete marker hides the object");
    let (_, still) = found(s.get(bucket, "k", Some(&v1), None).await.unwrap(), "old version survives a delete marker");
    assert_eq!(&still[..], b"one");
    let src = ObjectRef { bucket: bucket.into(), key: "k".into(), version_id: Some(v1.clone()) };
    found(s.copy(&src, None, bucket, "restored").await.unwrap(), "copy from a version");
    let (_, r) = found(s.get(bucket, "restored", None, None).await.unwrap(), "get copy");
    assert_eq!(&r[..], b"one");
}

/// The SQS behaviours the engine relies on. `queue` must exist and be empty.
pub async fn queue(q: &dyn Queue, queue: &str) {
    assert!(matches!(q.oldest_unhandled(queue).await.unwrap(), Backlog::Empty { .. }), "an empty queue says so");
    let before_send = chrono::Utc::now();
    q.send(queue, "a", 0).await.unwrap();
    q.send(queue, "b", 0).await.unwrap();
    // A queue that holds messages must never claim to be empty, nor that its oldest message is
    // younger than it is; one that cannot tell says Unknown, which seals nothing.
    match q.oldest_unhandled(queue).await.unwrap() {
        Backlog::Empty { .. } => panic!("a queue holding two messages claims to be empty"),
        Backlog::Oldest { oldest_sent, .. } => {
            assert!(oldest_sent <= before_send + chrono::Duration::seconds(1), "oldest {oldest_sent} vs sent after {before_send}")
        }
        Backlog::Unknown { .. } => {}
    }
    let mut got = Vec::new();
    for _ in 0..5 {
        got.extend(q.receive(queue, 10, 1, 30).await.unwrap());
        if got.len() == 2 {
            break;
        }
    }
    let mut bodies: Vec<&str> = got.iter().map(|m| m.body.as_str()).collect();
    bodies.sort();
    assert_eq!(bodies, vec!["a", "b"], "both messages received");
    assert!(got.iter().all(|m| m.receive_count == 1), "first receive counts 1");
    // The delta handlers record when each message was sent (the checkpoint's evidence), so the
    // queue must say, and not later than the message was received.
    for m in &got {
        let sent = m.sent_at.unwrap_or_else(|| panic!("message {} carries no sent time", m.body));
        assert!(
            sent >= before_send - chrono::Duration::seconds(2) && sent <= chrono::Utc::now() + chrono::Duration::seconds(1),
            "message {} sent at {sent}, but it was sent after {before_send} and received by now",
            m.body
        );
    }
    assert!(q.receive(queue, 10, 0, 30).await.unwrap().is_empty(), "in-flight messages are hidden");
    let a = got.iter().find(|m| m.body == "a").unwrap();
    q.change_visibility(queue, &a.receipt, 0).await.unwrap();
    let again = q.receive(queue, 10, 1, 30).await.unwrap();
    assert_eq!(again.len(), 1, "visibility 0 makes a message visible again");
    assert_eq!(again[0].receive_count, 2, "receive count increments");
    q.delete(queue, &again[0].receipt).await.unwrap();
    let b = got.iter().find(|m| m.body == "b").unwrap();
    q.delete(queue, &b.receipt).await.unwrap();
    assert_eq!(q.depth(queue).await.unwrap(), 0, "deleted messages are gone");
    assert!(matches!(q.oldest_unhandled(queue).await.unwrap(), Backlog::Empty { .. }), "a drained queue says so");

    // Deleting in batches: more than one DeleteMessageBatch request's worth (10).
    for i in 0..13 {
        q.send(queue, &format!("batch-{i}"), 0).await.unwrap();
    }
    let mut many = Vec::new();
    for _ in 0..10 {
        many.extend(q.receive(queue, 10, 1, 30).await.unwrap());
        if many.len() >= 13 {
            break;
        }
    }
    assert_eq!(many.len(), 13, "every message of the batch received");
    let receipts: Vec<String> = many.iter().map(|m| m.receipt.clone()).collect();
    q.delete_many(queue, &receipts).await.unwrap();
    assert_eq!(q.depth(queue).await.unwrap(), 0, "delete_many deletes every message it is given");
}

/// The DynamoDB behaviours the engine relies on. `pk` must be unused.
pub async fn control_store(c: &dyn ControlStore, pk: &str) {
    assert!(c.get(pk, "a").await.unwrap().is_none());
    assert!(c.put_new(pk, "a", "{\"n\":1}", None).await.unwrap(), "first put_new wins");
    assert!(!c.put_new(pk, "a", "{\"n\":2}", None).await.unwrap(), "second put_new loses");
    let item = c.get(pk, "a").await.unwrap().unwrap();
    assert_eq!(item.body, "{\"n\":1}", "the loser wrote nothing");
    assert!(c.replace(pk, "a", item.version, "{\"n\":3}").await.unwrap(), "replace at the current version");
    assert!(!c.replace(pk, "a", item.version, "{\"n\":4}").await.unwrap(), "replace at a stale version fails");
    assert!(!c.replace(pk, "missing", 1, "{}").await.unwrap(), "replace of a missing item fails");
    let item2 = c.get(pk, "a").await.unwrap().unwrap();
    assert_eq!((item2.version, item2.body.as_str()), (item.version + 1, "{\"n\":3}"));
    for sk in ["task#2", "task#1", "other", "task#3"] {
        c.put_new(pk, sk, "{}", Some(4_000_000_000)).await.unwrap();
    }
    let q: Vec<String> = c.query(pk, "task#").await.unwrap().into_iter().map(|i| i.sk).collect();
    assert_eq!(q, vec!["task#1", "task#2", "task#3"], "query by sort-key prefix, in order");
    assert_eq!(c.query(pk, "").await.unwrap().len(), 5, "empty prefix returns the whole partition");

    // Markers in batches: more than one BatchWriteItem (25) and BatchGetItem (100) each, with
    // duplicate keys in both requests, written twice.
    let markers = format!("{pk}-markers");
    let mut sks: Vec<String> = (0..130).map(|i| format!("m{i:03}")).collect();
    sks.push("m007".into());
    c.put_markers(&markers, &sks, "1", Some(4_000_000_000)).await.unwrap();
    c.put_markers(&markers, &sks[..40], "1", Some(4_000_000_000)).await.unwrap();
    let mut wanted: Vec<String> = (100..150).chain(0..110).map(|i| format!("m{i:03}")).collect();
    wanted.push("m001".into());
    let mut found: Vec<String> = c.get_many(&markers, &wanted).await.unwrap().into_iter().map(|i| i.sk).collect();
    found.sort();
    assert_eq!(found, (0..130).map(|i| format!("m{i:03}")).collect::<Vec<_>>(), "every marker once, missing keys absent");
    assert!(c.get_many(pk, &["m001".to_string()]).await.unwrap().is_empty(), "markers stay in their partition");
    assert!(c.get_many(&markers, &[]).await.unwrap().is_empty());
}

/// The keys [`key_service`] runs against: two usable keys, one disabled and one that does not exist.
#[derive(Debug, Clone)]
pub struct TestKeys {
    pub key: String,
    pub other: String,
    /// A disabled key; `None` on a server that does not enforce disabling (moto 5.2 still makes
    /// data keys under a disabled key), so the suite checks everything else.
    pub disabled: Option<String>,
    pub missing: String,
}

/// The key service port: fresh data keys, unwrapped only by the key that wrapped them; a key
/// that cannot be used is a permanent error that names it.
pub async fn key_service(k: &dyn KeyService, keys: &TestKeys) {
    let named = |e: &tidemark_core::Error, key: &str, what: &str| {
        assert!(matches!(e, tidemark_core::Error::Key { .. }), "{what}: expected a key error, got {e:?}");
        assert!(!e.is_transient(), "{what}: a key that cannot be used is not worth retrying: {e}");
        assert!(e.to_string().contains(key), "{what}: the error does not name the key {key}: {e}");
    };
    let a = k.generate_data_key(&keys.key).await.expect("generate a data key");
    let b = k.generate_data_key(&keys.key).await.expect("generate a second data key");
    assert_ne!(a.plaintext, b.plaintext, "two data keys are the same");
    assert_ne!(a.plaintext, [0u8; 32], "a data key is all zeros");
    assert!(!a.wrapped.is_empty() && a.wrapped != b.wrapped, "wrapped keys are empty or equal");
    assert!(!a.wrapped.windows(32).any(|w| w == a.plaintext), "the wrapped key holds the plaintext");
    assert_eq!(k.decrypt_data_key(&keys.key, &a.wrapped).await.expect("decrypt a data key"), a.plaintext, "unwrap");
    assert_eq!(k.decrypt_data_key(&keys.key, &b.wrapped).await.expect("decrypt a data key"), b.plaintext, "unwrap");
    let other = k.generate_data_key(&keys.other).await.expect("generate under the other key");
    assert_eq!(k.decrypt_data_key(&keys.other, &other.wrapped).await.expect("decrypt under the other key"), other.plaintext);

    let e = k.decrypt_data_key(&keys.other, &a.wrapped).await.expect_err("a blob of one key unwrapped by another");
    named(&e, &keys.other, "decrypt with the wrong key");
    let mut garbage = a.wrapped.clone();
    let n = garbage.len();
    garbage[n / 2] ^= 0x55;
    garbage[n - 1] ^= 0x55;
    let e = k.decrypt_data_key(&keys.key, &garbage).await.expect_err("a damaged wrapped key unwrapped");
    named(&e, &keys.key, "decrypt a damaged blob");
    let e = k.generate_data_key(&keys.missing).await.expect_err("a data key under a key that does not exist");
    named(&e, &keys.missing, "generate under a missing key");
    if let Some(disabled) = &keys.disabled {
        let e = k.generate_data_key(disabled).await.expect_err("a data key under a disabled key");
        named(&e, disabled, "generate under a disabled key");
    }
}
