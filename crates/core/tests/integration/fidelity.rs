//! Fidelity on the in-memory fakes: nothing is dropped without a word, bytes are checked against
//! what S3 says about them, archived objects are accounted for, attributes and tag changes are
//! captured, reconciliation of a versioned bucket keeps S3's own times, and a prefix seed holds
//! sealing back.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use tidemark_core::changes::checkpoint::{self, Sealed};
use tidemark_core::changes::delta::{process_batch, DeltaMessage};
use tidemark_core::changes::reconcile::{reconcile, ReconcileOptions};
use tidemark_core::config::{ArchivedPolicy, EngineConfig};
use tidemark_core::domain::{Grant, Grantee, ObjectAttributes, SourceChecksum};
use tidemark_core::engine::{Engine, QueueUrls};
use tidemark_core::ports::{list_all, Fetch, ObjectStore, PutOptions, SystemClock};
use tidemark_core::protect::seed::{seed, PlanSource};
use tidemark_core::protocol::dispatch::{dispatch, Disposition};
use tidemark_core::protocol::local::restore_here;
use tidemark_core::restore::attributes::AttributeRequest;
use tidemark_core::restore::{load_state, RestoreReport, RestoreRequest};
use tidemark_core::vault::point::RecoveryPoint;
use tidemark_core::{Error, Result};
use tidemark_testkit::events::S3Event;
use tidemark_testkit::fakes::{GetHook, HookedStore, MemControlStore, MemObjectStore, MemQueue};

const SRC: &str = "fid-src";
const VAULT: &str = "fid-vault";

/// Refuses reads of the keys it holds, as S3 does when a key policy or a bucket policy denies them.
#[derive(Default)]
struct Denying(Mutex<HashSet<String>>);

#[async_trait]
impl GetHook for Denying {
    async fn before_get(&self, _inner: &MemObjectStore, _bucket: &str, key: &str) -> Result<()> {
        if self.0.lock().unwrap().contains(key) {
            return Err(Error::port("GetObject", format!("AccessDenied: the read role may not read {key}"), false));
        }
        Ok(())
    }
}

struct World {
    engine: Engine,
    s3: Arc<MemObjectStore>,
    source: Arc<HookedStore<Denying>>,
    n: u64,
}

impl World {
    async fn new(versioned: bool, config: impl FnOnce(&mut EngineConfig)) -> World {
        let s3 = Arc::new(MemObjectStore::new());
        s3.create(SRC, versioned);
        s3.create(VAULT, true);
        let source = Arc::new(HookedStore { inner: s3.clone(), hook: Denying::default() });
        let mut cfg = EngineConfig::new(VAULT);
        config(&mut cfg);
        let engine = Engine {
            source: source.clone(),
            vault: s3.clone(),
            control: Arc::new(MemControlStore::new()),
            queue: Arc::new(MemQueue::new()),
            clock: Arc::new(SystemClock),
            keys: Arc::new(tidemark_core::memory::MemKeys::new()),
            config: cfg,
            queues: QueueUrls { work: "work".into(), delta: "delta".into(), restore: "restore".into() },
        };
        World { engine, s3, source, n: 0 }
    }

    fn deny(&self, key: &str, denied: bool) {
        let mut d = self.source.hook.0.lock().unwrap();
        if denied {
            d.insert(key.into());
        } else {
            d.remove(key);
        }
    }

    async fn protect(&self) {
        self.engine.control().set_protected(SRC, Utc::now()).await.unwrap();
        self.seal().await;
    }

    async fn seal(&self) -> RecoveryPoint {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        let now = Utc::now();
        match checkpoint::seal(&self.engine, SRC, now, now).await.unwrap() {
            Sealed::New(p) => p,
            other => panic!("expected a new point, got {other:?}"),
        }
    }

    /// Puts an object and returns the `Object Created` event AWS sends for it.
    async fn put(&mut self, key: &str, body: &str, opts: &PutOptions) -> String {
        let w = self.s3.put(SRC, key, Bytes::from(body.to_string()), opts).await.unwrap();
        let info = self.s3.head(SRC, key, w.version_id.as_deref()).await.unwrap().unwrap();
        self.n += 1;
        let seq = format!("0062{:012X}", self.n);
        S3Event {
            size: Some(info.size),
            etag: Some(&w.etag),
            version_id: w.version_id.as_deref(),
            sequencer: Some(&seq),
            n: self.n,
            ..S3Event::new("Object Created", SRC, key, info.last_modified)
        }
        .body()
    }

    async fn deliver(&self, bodies: &[String]) -> tidemark_core::changes::delta::DeltaReport {
        let msgs: Vec<DeltaMessage> =
            bodies.iter().enumerate().map(|(i, b)| DeltaMessage { id: format!("m{i}"), body: b.clone() }).collect();
        process_batch(&self.engine, &msgs).await.unwrap()
    }

    /// Runs every work message until the queue is empty, as the local runner does.
    async fn work(&self) {
        loop {
            let msgs = self.engine.queue.receive("work", 10, 0, 30).await.unwrap();
            if msgs.is_empty() {
                return;
            }
            for m in msgs {
                let d = dispatch(&self.engine, &m.id, &m.body, "test").await;
                assert!(matches!(d, Disposition::Done), "{d:?}");
                self.engine.queue.delete("work", &m.receipt).await.unwrap();
            }
        }
    }

    async fn restore_to(&self, target: &str, as_of: DateTime<Utc>, attributes: AttributeRequest) -> RestoreReport {
        let req = RestoreRequest { attributes, ..RestoreRequest::copy_all(SRC, as_of, target) };
        restore_here(&self.engine, self.s3.clone(), req, 4).await.unwrap()
    }

    async fn keys(&self, bucket: &str) -> Vec<String> {
        list_all(self.s3.as_ref(), bucket, "", None).await.unwrap().objects.into_iter().map(|o| o.key).collect()
    }
}

/// A change whose object cannot be read is never marked seen: its message fails with the
/// reason every time it comes back, the bucket's `ChangesFailed` counts it, every point sealed
/// meanwhile names the key as unprotected, and a restore reports it instead of leaving it out.
/// Once the object can be read, the retried message captures it and the key is protected again.
#[tokio::test]
async fn a_change_that_cannot_be_captured_fails_is_never_seen_and_is_named_until_it_is_captured() {
    let mut w = World::new(true, |_| {}).await;
    w.protect().await;
    let ok = w.put("ok.txt", "fine", &PutOptions::default()).await;
    let secret = w.put("secret.txt", "no access", &PutOptions::default()).await;
    w.deny("secret.txt", true);
    for attempt in 1..=3 {
        let r = w.deliver(&[ok.clone(), secret.clone()]).await;
        assert_eq!(r.failed.len(), 1, "attempt {attempt}: {r:?}");
        assert_eq!(r.failed[0].0, "m1");
        assert!(r.failed[0].1.contains("AccessDenied"), "the reason is kept: {:?}", r.failed);
        assert_eq!(r.failed_by_bucket.get(SRC), Some(&1), "ChangesFailed counts it under its bucket");
        assert_eq!((r.captured, r.duplicates), (if attempt == 1 { 1 } else { 0 }, if attempt == 1 { 0 } else { 1 }), "{r:?}");
    }
    let p = w.seal().await;
    assert_eq!(p.unprotected.len(), 1, "{:?}", p.unprotected);
    assert_eq!(p.unprotected[0].key, "secret.txt");
    assert!(p.unprotected[0].reason.contains("AccessDenied"));
    let failures = w.engine.control().failures(SRC).await.unwrap();
    assert_eq!((failures.len(), failures[0].1.origin.as_str()), (1, "delta"));

    let r = w.restore_to("restored-1", p.time, AttributeRequest::default()).await;
    assert_eq!(r.objects, 1);
    assert_eq!(r.unprotected_count, 1, "{r:?}");
    assert!(r.unprotected[0].0 == "secret.txt" && r.unprotected[0].1.contains("could not be captured"), "{r:?}");

    // The read role is fixed; the message's next delivery captures the object.
    w.deny("secret.txt", false);
    let r = w.deliver(&[secret.clone()]).await;
    assert!(r.failed.is_empty() && r.captured == 1, "{r:?}");
    let p = w.seal().await;
    assert!(p.unprotected.is_empty(), "the failure is resolved: {:?}", p.unprotected);
    assert_eq!(w.restore_to("restored-2", p.time, AttributeRequest::default()).await.unprotected_count, 0);
    assert_eq!(w.keys("restored-2").await, vec!["ok.txt", "secret.txt"]);
}

/// Seed objects that fail for good are kept on the run with their reason, the run still
/// completes, the first point names them, and reconciliation settles them once readable.
#[tokio::test]
async fn seed_failures_are_kept_on_the_run_and_named_by_points_until_reconciled() {
    let w = World::new(false, |c| c.batch_objects = 2).await;
    for k in ["a", "b", "c", "d", "e"] {
        w.s3.put(SRC, k, Bytes::from(format!("body of {k}")), &PutOptions::default()).await.unwrap();
    }
    w.deny("c", true);
    let seeded = seed(&w.engine, SRC, "", PlanSource::Listing(Default::default())).await.unwrap();
    w.work().await;
    let control = w.engine.control();
    let run = control.get_run(&seeded.run.run_id).await.unwrap().unwrap().1;
    assert_eq!(run.state, tidemark_core::control::RunState::Complete);
    let kept = control.run_failures(&run.run_id).await.unwrap();
    assert_eq!(kept.len(), 1);
    assert_eq!(kept[0].key, "c");
    assert!(kept[0].reason.contains("AccessDenied"), "{kept:?}");
    let p = w.seal().await;
    assert_eq!(p.unprotected.iter().map(|u| u.key.as_str()).collect::<Vec<_>>(), vec!["c"]);

    w.deny("c", false);
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let r = reconcile(&w.engine, SRC, &ReconcileOptions::default()).await.unwrap();
    assert_eq!((r.missing, r.puts), (1, 1), "{r:?}");
    let p = w.seal().await;
    assert!(p.unprotected.is_empty(), "{:?}", p.unprotected);
    let (_, state) = load_state(&w.engine, SRC, "", p.time).await.unwrap();
    assert_eq!(state.keys().collect::<Vec<_>>(), vec!["a", "b", "c", "d", "e"]);
}

/// Bytes that disagree with S3's MD5 ETag or checksum are a transient failure: the batch is
/// retried and nothing is captured from them, on the delta path and the seed path alike.
#[tokio::test]
async fn bytes_that_disagree_with_what_s3_says_are_never_captured() {
    let mut w = World::new(true, |_| {}).await;
    w.protect().await;
    let ev = w.put("k", "the bytes S3 has", &PutOptions::default()).await;
    w.s3.corrupt(SRC, "k").unwrap();
    let msgs = vec![DeltaMessage { id: "m".into(), body: ev.clone() }];
    let e = process_batch(&w.engine, &msgs).await.unwrap_err();
    assert!(e.is_transient(), "{e}");
    assert!(e.to_string().contains("do not match their MD5 ETag"), "{e}");
    assert!(w.engine.control().segments(SRC).await.unwrap().is_empty(), "nothing is registered");
    // Once the read is good again (S3 serves the bytes it describes), the retry captures it.
    w.s3.corrupt(SRC, "k").unwrap();
    assert_eq!(w.deliver(&[ev]).await.captured, 1);

    // A seed worker's task fails transiently too, and its message comes back.
    let w = World::new(false, |_| {}).await;
    let opts = PutOptions {
        attributes: ObjectAttributes {
            source_checksum: Some(SourceChecksum { algorithm: "CRC32".into(), value: String::new(), kind: None }),
            ..Default::default()
        },
        ..Default::default()
    };
    w.s3.put(SRC, "seeded", Bytes::from_static(b"checked with CRC32"), &opts).await.unwrap();
    w.s3.corrupt(SRC, "seeded").unwrap();
    seed(&w.engine, SRC, "", PlanSource::Listing(Default::default())).await.unwrap();
    let m = w.engine.queue.receive("work", 1, 0, 30).await.unwrap().remove(0);
    match dispatch(&w.engine, &m.id, &m.body, "test").await {
        Disposition::Retry { reason, .. } => assert!(reason.contains("do not match"), "{reason}"),
        other => panic!("a mismatch must be retried, got {other:?}"),
    }
}

/// An archived object is recorded as archived with its class, counted, not read, and reported
/// by a restore; with the `restore` policy capture asks S3 to restore it, and the restore's
/// completion event captures its bytes.
#[tokio::test]
async fn archived_objects_are_recorded_counted_and_skipped_or_restored() {
    let glacier =
        PutOptions { attributes: ObjectAttributes { storage_class: Some("GLACIER".into()), ..Default::default() }, ..Default::default() };
    for policy in [ArchivedPolicy::Skip, ArchivedPolicy::Restore { days: 3 }] {
        let mut w = World::new(true, |c| c.archived = policy).await;
        w.protect().await;
        w.put("hot.txt", "standard", &PutOptions::default()).await;
        let cold = w.put("cold.txt", "frozen", &glacier).await;
        let seeded = seed(&w.engine, SRC, "", PlanSource::Listing(Default::default())).await.unwrap();
        w.work().await;
        let tasks = w.engine.control().tasks(&seeded.run.run_id).await.unwrap();
        let archived: u64 = tasks.iter().map(|t| t.counters.archived).sum();
        assert_eq!(archived, 1, "{policy:?}: counted");
        let p = w.seal().await;
        let (_, state) = load_state(&w.engine, SRC, "", p.time).await.unwrap();
        assert_eq!(state["cold.txt"].attributes.archived.as_deref(), Some("GLACIER"), "{policy:?}");
        assert!(state["cold.txt"].location.is_none());
        let r = w.restore_to(&format!("r-{}", w.n), p.time, AttributeRequest::default()).await;
        assert_eq!((r.objects, r.failed, r.unprotected_count), (1, 0, 1), "{policy:?}: {r:?}");
        assert!(r.unprotected[0].1.contains("archived (GLACIER)"), "{r:?}");

        let info = w.s3.head(SRC, "cold.txt", None).await.unwrap().unwrap();
        assert_eq!(info.restored, matches!(policy, ArchivedPolicy::Restore { .. }), "{policy:?}: RestoreObject sent only when asked");
        if info.restored {
            // S3 announces the restored copy; its event captures the bytes.
            let done = cold.replace("Object Created", "Object Restore Completed");
            assert_eq!(w.deliver(&[done]).await.captured, 1);
            let p = w.seal().await;
            let r = w.restore_to("as-recorded", p.time, AttributeRequest::default()).await;
            assert_eq!((r.objects, r.unprotected_count), (2, 0), "{r:?}");
            let i = w.s3.head("as-recorded", "cold.txt", None).await.unwrap().unwrap();
            assert_eq!(i.attributes.storage_class.as_deref(), Some("GLACIER"), "written back in its recorded class");
            let standard = AttributeRequest { storage_class: Some("STANDARD".into()), ..Default::default() };
            w.restore_to("as-asked", p.time, standard).await;
            let Fetch::Found((i, data)) = w.s3.get("as-asked", "cold.txt", None, None).await.unwrap() else { panic!() };
            assert_eq!((&data[..], i.attributes.storage_class), (&b"frozen"[..], None), "or in the class the request names");
        }
    }
}

/// Every attribute survives a packed and a copied object's capture and restore on the fakes,
/// and a tag change is captured as a change of the key at its own time.
#[tokio::test]
async fn attributes_and_tag_changes_round_trip_for_packed_and_copied_objects() {
    let mut w = World::new(true, |c| {
        c.small_object_threshold = 64;
        c.multipart_copy_threshold = 10_000;
    })
    .await;
    w.s3.enable_acls(SRC);
    w.s3.create("target", true);
    w.s3.enable_acls("target");
    w.protect().await;
    let until = Utc::now() + chrono::Duration::days(2);
    let attrs = ObjectAttributes {
        cache_control: Some("max-age=60".into()),
        content_encoding: Some("gzip".into()),
        content_disposition: Some("attachment; filename=x.gz".into()),
        content_language: Some("de".into()),
        expires: Some("2030-01-02T03:04:05Z".parse().unwrap()),
        website_redirect_location: Some("/elsewhere.html".into()),
        tags: BTreeMap::from([("team".to_string(), "a b".to_string()), ("tier".to_string(), "1".to_string())]),
        storage_class: Some("STANDARD_IA".into()),
        source_checksum: Some(SourceChecksum { algorithm: "CRC32".into(), value: String::new(), kind: None }),
        sse: Some(tidemark_core::domain::Sse {
            algorithm: "aws:kms".into(),
            kms_key_id: Some("key-1".into()),
            bucket_key: Some(true),
            customer_key: false,
        }),
        object_lock: Some(tidemark_core::domain::ObjectLock {
            mode: Some("GOVERNANCE".into()),
            retain_until: Some(until),
            legal_hold: Some(true),
        }),
        acl: None,
        archived: None,
    };
    let opts = PutOptions {
        content_type: Some("text/html; charset=utf-8".into()),
        metadata: BTreeMap::from([("origin".to_string(), "fixture".to_string())]),
        attributes: attrs.clone(),
        ..Default::default()
    };
    let grants = vec![Grant {
        grantee: Grantee::Group { uri: "http://acs.amazonaws.com/groups/global/AllUsers".into() },
        permission: "READ".into(),
    }];
    let small = w.put("small.html", "tiny", &opts).await;
    let large = w.put("large.bin", &"x".repeat(200), &opts).await;
    w.s3.set_acl(SRC, "small.html", None, grants.clone()).unwrap();
    w.s3.set_acl(SRC, "large.bin", None, grants.clone()).unwrap();
    let r = w.deliver(&[small, large]).await;
    assert_eq!((r.captured, r.counters.large_objects), (2, 1), "{r:?}");
    let p1 = w.seal().await;
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;

    // A tag change: S3 sends `Object Tags Added`; no bytes are read again.
    let v = w.s3.head(SRC, "small.html", None).await.unwrap().unwrap();
    w.s3.set_tags(SRC, "small.html", v.version_id.as_deref(), BTreeMap::from([("team".to_string(), "b".to_string())])).unwrap();
    let tagged = S3Event {
        version_id: v.version_id.as_deref(),
        etag: Some(&v.etag),
        ..S3Event::new("Object Tags Added", SRC, "small.html", Utc::now())
    }
    .body();
    let r = w.deliver(&[tagged]).await;
    assert_eq!((r.attributes, r.captured), (1, 0), "{r:?}");
    let p2 = w.seal().await;

    let all = AttributeRequest { storage_class: None, object_lock: true, acl: true };
    let r = w.restore_to("target", p1.time, all.clone()).await;
    assert_eq!((r.objects, r.failed, r.attributes_not_applied), (2, 0, 0), "{r:?}");
    for key in ["small.html", "large.bin"] {
        let got = w.s3.head("target", key, None).await.unwrap().unwrap();
        let tags = w.s3.get_tags("target", key, None).await.unwrap().unwrap();
        let acl = w.s3.get_acl("target", key, None).await.unwrap().unwrap();
        assert_eq!(got.content_type.as_deref(), Some("text/html; charset=utf-8"), "{key}");
        assert_eq!(got.metadata, opts.metadata, "{key}");
        let mut want = attrs.clone();
        want.tags = BTreeMap::new();
        want.source_checksum = got.attributes.source_checksum.clone();
        assert_eq!(got.attributes, want, "{key}: every attribute");
        assert_eq!(got.attributes.source_checksum.as_ref().map(|c| c.algorithm.as_str()), Some("CRC32"), "{key}: the source's algorithm");
        assert_eq!(tags, attrs.tags, "{key}: tags");
        assert_eq!(acl.grants, grants, "{key}: ACL grants");
    }
    // As of after the tag change, the new tags come back, with the bytes of the first capture.
    w.s3.create("target-2", true);
    let r = w.restore_to("target-2", p2.time, AttributeRequest::default()).await;
    assert_eq!(r.failed, 0, "{r:?}");
    assert_eq!(
        w.s3.get_tags("target-2", "small.html", None).await.unwrap().unwrap(),
        BTreeMap::from([("team".to_string(), "b".to_string())])
    );
    let Fetch::Found((_, data)) = w.s3.get("target-2", "small.html", None, None).await.unwrap() else { panic!() };
    assert_eq!(&data[..], b"tiny");
    // Without --object-lock and --acl, the report says what it did not write.
    let mut skipped: Vec<&str> = r.not_applied.iter().map(|(_, a)| a.split(':').next().unwrap()).collect();
    skipped.sort();
    assert_eq!(skipped, vec!["acl", "acl", "object lock", "object lock"], "{r:?}");
}

/// Reconciliation of a versioned bucket lists versions: a delete marker that sent no event is
/// placed at its own Last-Modified time, and a permanent delete of the current version is found
/// (at the time of the look), so the older version is current from then on.
#[tokio::test]
async fn reconciliation_places_missed_delete_markers_at_their_own_time_and_finds_permanent_deletes() {
    let mut w = World::new(true, |_| {}).await;
    w.protect().await;
    let mut evs = vec![w.put("a", "a1", &PutOptions::default()).await, w.put("b", "b1", &PutOptions::default()).await];
    evs.push(w.put("b", "b2", &PutOptions::default()).await);
    evs.push(w.put("c", "c1", &PutOptions::default()).await);
    w.deliver(&evs).await;
    // A delete marker on c (a second later: S3's times are whole seconds), reconciled, then
    // removed: both without events.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    w.s3.delete(SRC, "c").await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let r = reconcile(&w.engine, SRC, &ReconcileOptions::default()).await.unwrap();
    assert_eq!(r.deletes, 1, "{r:?}");
    let marker = tidemark_core::ports::key_versions(w.s3.as_ref(), SRC, "c").await.unwrap()[0].version_id.clone().unwrap();
    w.s3.delete_version(SRC, "c", &marker).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    // No events for these two (the local stack sends none for versioned deletes).
    w.s3.delete(SRC, "a").await.unwrap();
    let marker_time = Utc::now();
    let b2 = w.s3.head(SRC, "b", None).await.unwrap().unwrap().version_id.unwrap();
    w.s3.delete_version(SRC, "b", &b2).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    let r = reconcile(&w.engine, SRC, &ReconcileOptions::default()).await.unwrap();
    assert_eq!((r.deletes, r.purges, r.changed, r.missing), (1, 2, 1, 1), "{r:?}");
    let p = w.seal().await;
    let (_, state) = load_state(&w.engine, SRC, "", marker_time + chrono::Duration::seconds(1)).await.unwrap();
    assert!(!state.contains_key("a"), "the marker counts from its own time, not the reconciliation's");
    let (_, now) = load_state(&w.engine, SRC, "", p.time).await.unwrap();
    let b1 = w.s3.head(SRC, "b", None).await.unwrap().unwrap();
    assert_eq!(now.keys().collect::<Vec<_>>(), vec!["b", "c"], "c is back once its marker is gone");
    assert_eq!(now["b"].etag.as_deref(), Some(b1.etag.as_str()), "the older version is current after the permanent delete");
    let again = reconcile(&w.engine, SRC, &ReconcileOptions::default()).await.unwrap();
    assert_eq!((again.puts, again.deletes, again.purges), (0, 0, 0), "{again:?}");
}

/// A seed of one prefix holds sealing back for the whole bucket (the one seal path the
/// checkpoint function and `sync` share), until the seed is done.
#[tokio::test]
async fn a_prefix_seed_holds_sealing_back_until_it_is_done() {
    let w = World::new(false, |_| {}).await;
    for k in ["logs/1", "logs/2", "data/1"] {
        w.s3.put(SRC, k, Bytes::from_static(b"x"), &PutOptions::default()).await.unwrap();
    }
    let seeded = seed(&w.engine, SRC, "logs/", PlanSource::Listing(Default::default())).await.unwrap();
    let now = Utc::now();
    match checkpoint::seal(&w.engine, SRC, now, now).await.unwrap() {
        Sealed::SeedInProgress(run) => assert_eq!(run, seeded.run.run_id),
        other => panic!("a prefix seed in progress must hold sealing back, got {other:?}"),
    }
    let evidence = checkpoint::Evidence::Drained { started: now };
    let c = checkpoint::checkpoint(&w.engine, &[SRC.to_string()], &evidence, chrono::Duration::zero()).await.unwrap();
    assert_eq!(c[0].seed_in_progress.as_deref(), Some(seeded.run.run_id.as_str()), "{c:?}");
    assert!(!c[0].sealed);
    w.work().await;
    let p = w.seal().await;
    let (_, state) = load_state(&w.engine, SRC, "", p.time).await.unwrap();
    assert_eq!(state.keys().collect::<Vec<_>>(), vec!["logs/1", "logs/2"]);
}
