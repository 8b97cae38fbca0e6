//! Conformance suites: one set of checks per port, run against the fakes and against the local stack.
//!
//! Each suite panics with a message naming the broken expectation, so a failing adapter or fake
//! says exactly which behaviour the engine relies on is missing.

use std::collections::BTreeMap;

use bytes::Bytes;
use md5::{Digest, Md5};
use tidemark_core::ports::{Backlog, ControlStore, Fetch, ListRequest, ObjectRef, ObjectStore, PutOptions, Queue};

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
}

/// The S3 behaviours the engine relies on. `bucket` must exist and be empty; `missing` must not exist.
pub async fn object_store(s: &dyn ObjectStore, bucket: &str, missing: &str, quirks: Quirks) {
    assert!(s.bucket_exists(bucket).await.unwrap(), "bucket_exists on an existing bucket");
    assert!(!s.bucket_exists(missing).await.unwrap(), "bucket_exists on a missing bucket");

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
