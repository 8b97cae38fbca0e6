//! Sources that vanish by design, on the fakes: a deleted bucket becomes "gone since T" in the
//! control table and the vault while the checkpoint, reconciliation and the delta handler carry
//! on for the others without an error or a failed message; its points stay restorable; a bucket
//! that comes back is noticed; an emptied seeded prefix is gone too; a bucket that denies the
//! reader is not gone and still fails; `unprotect` ends protection on purpose.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use tidemark_core::changes::checkpoint::{self, BucketCheckpoint, Evidence};
use tidemark_core::changes::delta::{process_batch, DeltaMessage};
use tidemark_core::changes::reconcile::{reconcile, ReconcileOptions};
use tidemark_core::config::EngineConfig;
use tidemark_core::control::Lifecycle;
use tidemark_core::engine::Engine;
use tidemark_core::plan::partition::PlanTargets;
use tidemark_core::ports::{list_all, ObjectStore, PutOptions};
use tidemark_core::protect::lifecycle;
use tidemark_core::protect::seed::{seed, PlanSource};
use tidemark_core::protocol::dispatch::{dispatch, Disposition};
use tidemark_core::restore::load_state;
use tidemark_testkit::events::S3Event;
use tidemark_testkit::fakes::{mem_engine, MemObjectStore};

async fn drain_work(e: &Engine) {
    loop {
        let msgs = e.queue.receive("work", 10, 0, 30).await.unwrap();
        if msgs.is_empty() {
            return;
        }
        for m in msgs {
            assert!(matches!(dispatch(e, &m.id, &m.body, "worker").await, Disposition::Done));
            e.queue.delete("work", &m.receipt).await.unwrap();
        }
    }
}

async fn put(s3: &MemObjectStore, bucket: &str, key: &str) {
    s3.put(bucket, key, Bytes::from(format!("{bucket}/{key}")), &PutOptions::default()).await.unwrap();
}

async fn protect(e: &Engine, bucket: &str, prefix: &str) {
    seed(e, bucket, prefix, PlanSource::Listing(PlanTargets { objects: 10, ..Default::default() })).await.unwrap();
    drain_work(e).await;
}

/// One checkpoint of both buckets, as `sync` does it (the queue drained just now).
async fn checkpoint_all(e: &Engine) -> Vec<BucketCheckpoint> {
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let evidence = Evidence::Drained { started: Utc::now() };
    checkpoint::checkpoint(e, &["keep".to_string(), "doomed".to_string()], &evidence, chrono::Duration::zero()).await.unwrap()
}

fn by_bucket<'a>(out: &'a [BucketCheckpoint], bucket: &str) -> &'a BucketCheckpoint {
    out.iter().find(|c| c.bucket == bucket).unwrap()
}

async fn lifecycle_objects(s3: &MemObjectStore, bucket: &str) -> Vec<String> {
    list_all(s3, "vault", &format!("v1/{bucket}/lifecycle/"), None).await.unwrap().objects.into_iter().map(|o| o.key).collect()
}

fn created(bucket: &'static str, key: &'static str, n: u64) -> DeltaMessage {
    let mut ev = S3Event::new("Object Created", bucket, key, Utc::now());
    ev.n = n;
    ev.size = Some(10);
    DeltaMessage { id: format!("m{n}"), body: ev.body() }
}

#[tokio::test]
async fn a_deleted_bucket_is_gone_since_t_and_the_others_carry_on() {
    let s3 = Arc::new(MemObjectStore::new());
    for b in ["keep", "doomed"] {
        s3.create(b, false);
    }
    s3.create("vault", true);
    let e = mem_engine(s3.clone(), EngineConfig::new("vault"));
    for i in 0..5 {
        put(&s3, "keep", &format!("k{i}")).await;
        put(&s3, "doomed", &format!("d{i}")).await;
    }
    protect(&e, "keep", "").await;
    protect(&e, "doomed", "").await;
    let first = checkpoint_all(&e).await;
    let before: DateTime<Utc> = by_bucket(&first, "doomed").recovery_point.expect("a first point of doomed");
    assert!(first.iter().all(|c| c.error.is_none() && c.gone_since.is_none()), "{first:?}");

    // The bucket is deleted by design (S3 wants it emptied first; the fake deletes all at once).
    s3.remove_bucket("doomed");
    put(&s3, "keep", "after").await;
    let out = checkpoint_all(&e).await;
    let doomed = by_bucket(&out, "doomed");
    let gone = doomed.gone_since.expect("the deleted bucket is recorded as gone");
    assert!(doomed.error.is_none() && doomed.rpo_seconds.is_none(), "a gone source is no error and has no RPO: {doomed:?}");
    assert!(doomed.note.as_deref().unwrap_or_default().contains("gone since"), "{doomed:?}");
    assert!(by_bucket(&out, "keep").error.is_none(), "{out:?}");
    let (_, state) = e.control().source_state("doomed", "").await.unwrap().expect("a recorded state");
    // The checkpoint sealed its point first (covering the changes handled before the bucket
    // went), then saw the bucket gone.
    assert_eq!((state.state, state.since, state.last_point), (Lifecycle::Gone, gone, doomed.recovery_point));
    assert_eq!(lifecycle_objects(&s3, "doomed").await.len(), 1, "one transition object in the vault");

    // Later checkpoints seal nothing for it and stay quiet; the other bucket moves on.
    let later = checkpoint_all(&e).await;
    assert_eq!(by_bucket(&later, "doomed").gone_since, Some(gone));
    assert!(!by_bucket(&later, "doomed").sealed && by_bucket(&later, "doomed").error.is_none(), "{later:?}");
    assert!(by_bucket(&later, "keep").recovery_point > Some(before));

    // Every point up to the deletion restores what the bucket held.
    let (_, at_before) = load_state(&e, "doomed", "", before).await.unwrap();
    assert_eq!(at_before.keys().cloned().collect::<Vec<_>>(), (0..5).map(|i| format!("d{i}")).collect::<Vec<_>>());

    // Reconciliation skips it without an error; the delta handler takes its late events
    // without failing them (the object went with its bucket).
    let r = reconcile(&e, "doomed", &ReconcileOptions::default()).await.unwrap();
    assert_eq!(r.gone_since, Some(gone));
    let report = process_batch(&e, &[created("doomed", "d9", 1), created("keep", "k0", 2)]).await.unwrap();
    assert!(report.failed.is_empty(), "no change of a gone bucket fails: {:?}", report.failed);

    // The bucket comes back: noticed, protected again, its old keys not current any more.
    s3.create("doomed", false);
    put(&s3, "doomed", "reborn").await;
    let back = checkpoint_all(&e).await;
    assert!(by_bucket(&back, "doomed").returned, "{back:?}");
    assert_eq!(e.control().source_state("doomed", "").await.unwrap().unwrap().1.state, Lifecycle::Protected);
    assert_eq!(lifecycle_objects(&s3, "doomed").await.len(), 2);
    protect(&e, "doomed", "").await;
    let sealed = checkpoint_all(&e).await;
    let (_, now_state) = load_state(&e, "doomed", "", by_bucket(&sealed, "doomed").recovery_point.unwrap()).await.unwrap();
    assert_eq!(now_state.keys().cloned().collect::<Vec<_>>(), vec!["reborn".to_string()], "the old keys ended when the bucket went");
}

#[tokio::test]
async fn an_emptied_prefix_is_gone_and_a_refilled_one_protected_again() {
    let s3 = Arc::new(MemObjectStore::new());
    s3.create("keep", false);
    s3.create("doomed", false);
    s3.create("vault", true);
    let e = mem_engine(s3.clone(), EngineConfig::new("vault"));
    put(&s3, "keep", "tenant/a").await;
    put(&s3, "keep", "other/b").await;
    protect(&e, "keep", "tenant/").await;
    checkpoint_all(&e).await;
    s3.delete("keep", "tenant/a").await.unwrap();
    checkpoint_all(&e).await;
    let (_, s) = e.control().source_state("keep", "tenant/").await.unwrap().expect("the emptied prefix is recorded");
    assert_eq!(s.state, Lifecycle::Gone);
    assert!(e.control().source_state("keep", "").await.unwrap().is_none(), "the bucket itself is not gone");
    put(&s3, "keep", "tenant/c").await;
    checkpoint_all(&e).await;
    assert_eq!(e.control().source_state("keep", "tenant/").await.unwrap().unwrap().1.state, Lifecycle::Protected);
}

#[tokio::test]
async fn a_bucket_that_denies_the_reader_is_not_gone_and_still_fails() {
    let s3 = Arc::new(MemObjectStore::new());
    s3.create("keep", false);
    s3.create("doomed", false);
    s3.create("vault", true);
    let e = mem_engine(s3.clone(), EngineConfig::new("vault"));
    put(&s3, "keep", "k").await;
    protect(&e, "keep", "").await;
    checkpoint_all(&e).await;
    s3.deny("keep", true);
    let out = checkpoint_all(&e).await;
    let keep = by_bucket(&out, "keep");
    assert!(keep.error.as_deref().unwrap_or_default().contains("AccessDenied"), "{keep:?}");
    assert!(keep.gone_since.is_none());
    assert!(e.control().source_state("keep", "").await.unwrap().is_none(), "access denied records no state");
    let err = reconcile(&e, "keep", &ReconcileOptions::default()).await.unwrap_err();
    assert!(err.to_string().contains("AccessDenied"), "{err}");
    assert!(lifecycle::observe(&e, "keep").await.is_err());
}

#[tokio::test]
async fn unprotect_ends_protection_on_purpose_and_refuses_unknown_sources() {
    let s3 = Arc::new(MemObjectStore::new());
    s3.create("keep", false);
    s3.create("doomed", false);
    s3.create("vault", true);
    let e = mem_engine(s3.clone(), EngineConfig::new("vault"));
    put(&s3, "keep", "k").await;
    protect(&e, "keep", "").await;
    let first = checkpoint_all(&e).await;
    let point = by_bucket(&first, "keep").recovery_point.unwrap();

    let unknown = lifecycle::unprotect(&e, "nobody").await.unwrap_err();
    assert!(unknown.to_string().contains("s3://nobody is not a source of vault vault"), "{unknown}");
    let s = lifecycle::unprotect(&e, "keep").await.unwrap();
    assert_eq!((s.state, s.last_point), (Lifecycle::Unprotected, Some(point)));
    assert!(e.control().protected_since("keep").await.unwrap().is_none());

    let out = checkpoint_all(&e).await;
    assert!(!by_bucket(&out, "keep").sealed && by_bucket(&out, "keep").note.as_deref().unwrap().contains("unprotected since"));
    let report = process_batch(&e, &[created("keep", "k", 7)]).await.unwrap();
    assert!(report.failed.is_empty() && report.ignored == 1, "events of an unprotected bucket are dropped, not failed");
    let (_, state) = load_state(&e, "keep", "", point).await.unwrap();
    assert!(state.contains_key("k"), "its points stay restorable");

    // Protecting it again ends the unprotected state.
    protect(&e, "keep", "").await;
    assert_eq!(e.control().source_state("keep", "").await.unwrap().unwrap().1.state, Lifecycle::Protected);
}

#[tokio::test]
async fn a_bucket_deleted_while_it_is_seeded_ends_its_tasks_and_is_gone() {
    let s3 = Arc::new(MemObjectStore::new());
    s3.create("keep", false);
    s3.create("doomed", false);
    s3.create("vault", true);
    let e = mem_engine(s3.clone(), EngineConfig::new("vault"));
    for i in 0..30 {
        put(&s3, "doomed", &format!("d{i:02}")).await;
    }
    seed(&e, "doomed", "", PlanSource::Listing(PlanTargets { objects: 10, ..Default::default() })).await.unwrap();
    s3.remove_bucket("doomed");
    // Every task message is handled (none is failed or retried) and the run completes.
    drain_work(&e).await;
    assert!(e.control().active_runs("doomed").await.unwrap().is_empty(), "the run completed");
    let out = checkpoint_all(&e).await;
    assert!(by_bucket(&out, "doomed").gone_since.is_some(), "{out:?}");
}
