//! The distributed restore on the fakes: a run planned in many small tasks and continued steps
//! restores exactly the state the in-memory resolver gives; a rollback rewrites only what
//! changed and deletes what was born after T, and its dry run says so without writing; a run
//! killed at any moment and resumed ends exact with nothing written twice beyond a batch; a
//! damaged segment fails the run before the target is written; bad requests change nothing.

use super::support::{drain_work, seal};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use tidemark_core::config::EngineConfig;
use tidemark_core::engine::Engine;
use tidemark_core::plan::partition::PlanTargets;
use tidemark_core::ports::{list_all, Fetch, ObjectStore, PutOptions, SameStore, Targets};
use tidemark_core::protect::seed::{seed, PlanSource};
use tidemark_core::protocol::local::drive_restore;
use tidemark_core::restore::run::{self, RestoreState, RestoreStatus};
use tidemark_core::restore::{load_state, RestoreMode, RestoreRequest};
use tidemark_testkit::fakes::{mem_engine, MemObjectStore};

struct World {
    engine: Engine,
    s3: Arc<MemObjectStore>,
}

fn config() -> EngineConfig {
    let mut c = EngineConfig::new("vault");
    c.small_object_threshold = 2_000;
    c.multipart_copy_threshold = 6 * 1024 * 1024;
    c.copy_part_bytes = 5 * 1024 * 1024;
    c.batch_objects = 40;
    c.restore_task_objects = 7;
    c.lease_seconds = 1;
    c.concurrency = 4;
    c
}

fn body(key: &str, generation: u32) -> Vec<u8> {
    let n = if key.starts_with("big/") {
        6 * 1024 * 1024 + 17
    } else if key.starts_with("mid/") {
        3_000
    } else {
        20 + key.len()
    };
    format!("{key}@{generation}:").into_bytes().into_iter().cycle().take(n).collect()
}

async fn put(s3: &MemObjectStore, key: &str, generation: u32) {
    let mut meta = BTreeMap::new();
    meta.insert("gen".to_string(), generation.to_string());
    let o = PutOptions { content_type: Some("text/plain".into()), metadata: meta, ..Default::default() };
    s3.put("src", key, Bytes::from(body(key, generation)), &o).await.unwrap();
}

/// A protected bucket of 60 keys over four prefixes (two large objects), a point T1, then
/// changes (overwrites, deletes, new keys) captured as a second seed, and a point T2.
async fn world() -> (World, DateTime<Utc>, DateTime<Utc>) {
    let s3 = Arc::new(MemObjectStore::new());
    s3.create("src", false);
    s3.create("vault", true);
    let engine = mem_engine(s3.clone(), config());
    for i in 0..56 {
        put(&s3, &format!("{}/k{i:03}", ["a", "b", "mid", "z"][i % 4]), 1).await;
    }
    put(&s3, "big/one", 1).await;
    put(&s3, "big/two", 1).await;
    put(&s3, "root.txt", 1).await;
    put(&s3, "a/with space+plus%", 1).await;
    seed(&engine, "src", "", PlanSource::Listing(PlanTargets { objects: 25, ..Default::default() })).await.unwrap();
    drain_work(&engine).await;
    let t1 = seal(&engine).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    for i in (0..56).step_by(5) {
        put(&s3, &format!("{}/k{i:03}", ["a", "b", "mid", "z"][i % 4]), 2).await;
    }
    for i in (1..56).step_by(9) {
        s3.delete("src", &format!("{}/k{i:03}", ["a", "b", "mid", "z"][i % 4])).await.unwrap();
    }
    put(&s3, "b/new-after-t1", 2).await;
    put(&s3, "big/two", 2).await;
    seed(&engine, "src", "", PlanSource::Listing(PlanTargets { objects: 25, ..Default::default() })).await.unwrap();
    drain_work(&engine).await;
    let t2 = seal(&engine).await;
    (World { engine, s3 }, t1, t2)
}

/// Every object of a bucket under a prefix: key → (bytes, content type, metadata).
async fn contents(
    s3: &MemObjectStore,
    bucket: &str,
    prefix: &str,
) -> BTreeMap<String, (Vec<u8>, Option<String>, BTreeMap<String, String>)> {
    let mut out = BTreeMap::new();
    for o in list_all(s3, bucket, prefix, None).await.unwrap().objects {
        if o.key.contains(".tidemark-restore/") {
            out.insert(o.key.clone(), (b"marker".to_vec(), None, BTreeMap::new()));
            continue;
        }
        let Fetch::Found((info, b)) = s3.get(bucket, &o.key, None, None).await.unwrap() else { panic!("{} vanished", o.key) };
        out.insert(o.key, (b.to_vec(), info.content_type, info.metadata));
    }
    out
}

/// What the in-memory resolver says the prefix held at `t`, mapped into the target prefix.
async fn expected(
    w: &World,
    prefix: &str,
    target_prefix: &str,
    t: DateTime<Utc>,
) -> BTreeMap<String, (Vec<u8>, Option<String>, BTreeMap<String, String>)> {
    let (_, state) = load_state(&w.engine, "src", prefix, t).await.unwrap();
    let mut out = BTreeMap::new();
    for (key, rec) in state {
        let generation: u32 = rec.metadata["gen"].parse().unwrap();
        out.insert(
            format!("{target_prefix}{}", &key[prefix.len()..]),
            (body(&key, generation), rec.content_type.clone(), rec.metadata.clone()),
        );
    }
    out
}

fn request(prefix: &str, t: DateTime<Utc>, target: &str, target_prefix: &str, mode: RestoreMode) -> RestoreRequest {
    RestoreRequest {
        source_bucket: "src".into(),
        prefix: prefix.into(),
        as_of: t,
        target_bucket: target.into(),
        target_prefix: target_prefix.into(),
        mode,
        delete_newer: false,
        dry_run: false,
        attributes: Default::default(),
        target_role_arn: None,
    }
}

async fn restore(w: &World, req: RestoreRequest) -> RestoreStatus {
    let targets: Arc<dyn Targets> = Arc::new(SameStore(w.s3.clone()));
    let (run, _) = run::start(&w.engine, w.s3.as_ref(), req).await.unwrap();
    drive_restore(&w.engine, targets.clone(), &run.restore_id, 3, "t", |_| {}).await.unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_run_of_many_small_tasks_restores_exactly_the_resolved_state() {
    let (mut w, t1, t2) = world().await;
    // A zero budget makes every plan step continue itself after its first cut.
    w.engine.config.step_seconds = 0;
    for (t, target) in [(t1, "out-t1"), (t2, "out-t2")] {
        let s = restore(&w, request("", t, target, "", RestoreMode::Copy)).await;
        assert_eq!(s.run.state, RestoreState::Done, "{:?}", s.run.error);
        let want = expected(&w, "", "", t).await;
        assert_eq!(contents(&w.s3, target, "").await, want, "the target equals the state at {t}");
        assert_eq!(s.counters.objects as usize, want.len());
        assert_eq!(s.counters.verified, s.counters.objects, "every write was checked");
        assert_eq!(s.counters.failed, 0);
        assert!(s.tasks >= 8, "60 keys in tasks of 7 objects: {} tasks", s.tasks);
        assert_eq!(s.tasks, s.tasks_done);
        assert!(s.run.plan.segments_verified > 0);
    }
    // A prefix into a target prefix: only that prefix, mapped.
    let s = restore(&w, request("a/", t1, "out-prefix", "restored/a-", RestoreMode::Copy)).await;
    assert_eq!(s.run.state, RestoreState::Done);
    assert_eq!(contents(&w.s3, "out-prefix", "").await, expected(&w, "a/", "restored/a-", t1).await);
}

#[tokio::test(flavor = "multi_thread")]
async fn rollback_rewrites_what_changed_deletes_what_is_newer_and_its_dry_run_writes_nothing() {
    let (w, t1, _) = world().await;
    let before = contents(&w.s3, "src", "").await;
    let mut req = request("", t1, "src", "", RestoreMode::Rollback);
    req.delete_newer = true;
    req.dry_run = true;
    let dry = restore(&w, req.clone()).await;
    assert_eq!(dry.run.state, RestoreState::Done);
    assert_eq!(contents(&w.s3, "src", "").await, before, "a dry run writes nothing");
    let want = expected(&w, "", "", t1).await;
    let changed: Vec<&String> = want.iter().filter(|(k, v)| before.get(*k) != Some(*v)).map(|(k, _)| k).collect();
    let newer: Vec<&String> = before.keys().filter(|k| !want.contains_key(*k)).collect();
    assert_eq!(dry.counters.objects as usize, changed.len(), "keys to write");
    assert_eq!(dry.counters.deleted as usize, newer.len(), "keys to delete: {newer:?}");
    assert_eq!(dry.counters.unchanged as usize, want.len() - changed.len());
    assert_eq!(dry.samples["delete"], vec!["b/new-after-t1".to_string()]);
    assert!(dry.samples["write"].len() <= 10 && !dry.samples["write"].is_empty());

    req.dry_run = false;
    let versions_before: BTreeMap<String, usize> = want.keys().map(|k| (k.clone(), w.s3.versions("src", k))).collect();
    let real = restore(&w, req).await;
    assert_eq!(real.run.state, RestoreState::Done, "{:?}", real.run.error);
    assert_eq!(contents(&w.s3, "src", "").await, want, "the bucket is back at T1");
    assert_eq!(
        (real.counters.objects, real.counters.deleted, real.counters.unchanged),
        (dry.counters.objects, dry.counters.deleted, dry.counters.unchanged)
    );
    // Unchanged keys were not rewritten (the source is unversioned: a rewrite would not show in
    // versions, so compare what the run wrote with what changed instead).
    assert_eq!(real.counters.objects as usize, changed.len());
    assert_eq!(versions_before.len(), want.len());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_run_killed_at_any_moment_resumes_to_the_exact_state_writing_nothing_twice_beyond_a_batch() {
    let (w, t1, _) = world().await;
    w.s3.create("out-kill", true);
    let want = expected(&w, "", "", t1).await;
    let targets: Arc<dyn Targets> = Arc::new(SameStore(w.s3.clone()));
    let (started, _) = run::start(&w.engine, w.s3.as_ref(), request("", t1, "out-kill", "", RestoreMode::Copy)).await.unwrap();
    let id = started.restore_id.clone();
    // Kill the local runner three times at different moments (dropping its futures mid-flight),
    // then let it finish.
    let kills = [5u64, 60, 250];
    for ms in kills {
        let _ = tokio::time::timeout(Duration::from_millis(ms), drive_restore(&w.engine, targets.clone(), &id, 3, "killed", |_| {})).await;
        run::resume(&w.engine, &id).await.unwrap();
    }
    let s = drive_restore(&w.engine, targets.clone(), &id, 3, "survivor", |_| {}).await.unwrap();
    assert_eq!(s.run.state, RestoreState::Done, "{:?}", s.run.error);
    assert_eq!(contents(&w.s3, "out-kill", "").await, want, "the target is exactly the state at T1 (the marker is gone)");
    // Each kill can cost the batches in flight then (one per worker, a task's objects at most)
    // one rewrite each, and nothing else: a key is written at most once plus once per kill, and
    // all rewrites together fit in the kills' batches.
    let writes: Vec<(String, usize)> = want.keys().map(|k| (k.clone(), w.s3.versions("out-kill", k))).collect();
    let too_often: Vec<&(String, usize)> = writes.iter().filter(|(_, n)| *n > 1 + kills.len()).collect();
    assert!(too_often.is_empty(), "a key written more often than once per kill beyond the first: {too_often:?}");
    let rewrites: usize = writes.iter().map(|(_, n)| n.saturating_sub(1)).sum();
    let in_flight = kills.len() * 3 * w.engine.config.restore_task_objects as usize;
    assert!(rewrites <= in_flight, "{rewrites} rewrites, more than the {in_flight} objects the kills' batches held");
    // Running the same request again finds the finished run's writes and refuses to mix.
    let again = run::start(&w.engine, w.s3.as_ref(), request("", t1, "out-kill", "", RestoreMode::Copy)).await.unwrap_err();
    assert!(again.to_string().contains("is not empty"), "{again}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_same_request_continues_its_unfinished_run() {
    let (w, t1, _) = world().await;
    let req = request("", t1, "out-same", "", RestoreMode::Copy);
    let (first, resumed) = run::start(&w.engine, w.s3.as_ref(), req.clone()).await.unwrap();
    assert!(!resumed);
    let (second, resumed) = run::start(&w.engine, w.s3.as_ref(), req).await.unwrap();
    assert!(resumed, "the second start continues the first run");
    assert_eq!(first.restore_id, second.restore_id);
    let s = drive_restore(&w.engine, Arc::new(SameStore(w.s3.clone())), &first.restore_id, 2, "t", |_| {}).await.unwrap();
    assert_eq!(s.run.state, RestoreState::Done);
    assert_eq!(run::list(&w.engine, "src").await.unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_damaged_segment_fails_the_run_before_the_target_is_written() {
    let (w, t1, _) = world().await;
    let point = tidemark_core::vault::point::point_for(w.s3.as_ref(), "vault", "src", t1).await.unwrap();
    let seg = &point.segments[0].key;
    let records = tidemark_core::vault::segment::records_object(w.s3.as_ref(), "vault", seg).await.unwrap();
    assert_ne!(&records, seg, "a version-3 segment keeps its records in a catalog object");
    let bytes = match w.s3.get("vault", &records, None, None).await.unwrap() {
        Fetch::Found((_, b)) => b.to_vec(),
        _ => panic!("segment missing"),
    };
    // A hex digit of the last record's ETag: still valid JSON, so only the hash can tell.
    let text = String::from_utf8(bytes).unwrap();
    let at = text.rfind("\"etag\":\"").unwrap() + "\"etag\":\"".len();
    w.s3.damage("vault", &records, at).unwrap();
    let s = restore(&w, request("", t1, "out-damaged", "", RestoreMode::Copy)).await;
    assert_eq!(s.run.state, RestoreState::Failed);
    let error = s.run.error.unwrap_or_default();
    assert!(error.contains(seg) && error.contains("sha256"), "{error}");
    let written: Vec<String> = contents(&w.s3, "out-damaged", "").await.into_keys().filter(|k| !k.contains(".tidemark-restore/")).collect();
    assert!(written.is_empty(), "nothing is restored from a damaged catalog: {written:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_requests_are_clear_errors_that_change_nothing() {
    let (w, t1, _) = world().await;
    w.s3.create("busy", false);
    w.s3.put("busy", "keep-me", Bytes::from_static(b"x"), &PutOptions::default()).await.unwrap();
    let cases: Vec<(RestoreRequest, &str)> = vec![
        (request("", t1, "busy", "", RestoreMode::Copy), "holds keep-me"),
        (request("", t1, "src", "", RestoreMode::Copy), "use --mode rollback"),
        (request("", t1, "no-such-target", "", RestoreMode::Rollback), "no-such-target does not exist"),
        (RestoreRequest { source_bucket: "not-protected".into(), ..request("", t1, "x-out", "", RestoreMode::Copy) }, "not protected"),
        (request("", Utc::now() + chrono::Duration::days(1), "x-out", "", RestoreMode::Copy), "latest recoverable time"),
        (
            RestoreRequest { target_role_arn: Some("role/x".into()), ..request("", t1, "x-out", "", RestoreMode::Copy) },
            "not an IAM role ARN",
        ),
        (RestoreRequest { delete_newer: true, ..request("", t1, "x-out", "", RestoreMode::Copy) }, "rollback mode only"),
    ];
    for (req, says) in cases {
        let e = run::start(&w.engine, w.s3.as_ref(), req).await.unwrap_err();
        assert!(e.to_string().contains(says), "'{e}' should say '{says}'");
    }
    assert!(run::list(&w.engine, "src").await.unwrap().is_empty(), "no run was started");
    assert!(!w.s3.bucket_exists("x-out").await.unwrap(), "no target was created");
    assert_eq!(w.engine.queue.depth("restore").await.unwrap(), 0);
    let e = run::status(&w.engine, "no-such-restore").await.unwrap_err();
    assert!(e.to_string().contains("restore no-such-restore does not exist"), "{e}");
}

/// Under the per-prefix scheduler a restore's writes go through the gate of the target bucket,
/// as the backup's reads do through the source's: a task whose target prefix is taken by other
/// workers' claims is put back (its lease released, nothing of the batch written), and the run
/// still ends exact once the prefix has room; a finished task gives its slice back.
#[tokio::test(flavor = "multi_thread")]
async fn restore_tasks_wait_for_room_in_the_target_prefix() {
    use tidemark_core::scheduler::fleet::{load, millis, Pressure};
    use tidemark_core::scheduler::{Admission, Observation};
    let (mut w, t1, _) = world().await;
    w.engine.config.scheduler = Some(EngineConfig::scheduler_for(4_000.0, 0.5));
    let cfg = w.engine.config.scheduler.clone().unwrap();
    let want = w.engine.config.want_rps();
    // Three other workers hold all of what the target's prefix `a` is allowed now.
    let mut others = Vec::new();
    for worker in ["a1", "a2", "a3"] {
        let mut p = Pressure::new(w.engine.control.as_ref(), "vault", "out-paced", cfg.clone(), worker, want).unwrap();
        assert!(matches!(p.report("a", millis(Utc::now()), Observation::default()).await.unwrap(), Admission::Go { .. }));
        others.push(p);
    }
    let targets: Arc<dyn Targets> = Arc::new(SameStore(w.s3.clone()));
    let (run, _) = run::start(&w.engine, w.s3.as_ref(), request("a/", t1, "out-paced", "a/", RestoreMode::Copy)).await.unwrap();
    let id = run.restore_id.clone();
    let driver = {
        let engine = w.engine.clone();
        tokio::spawn(async move { drive_restore(&engine, targets.clone(), &id, 2, "restorer", |_| {}).await.unwrap() })
    };
    tokio::time::sleep(Duration::from_secs(2)).await;
    let written: Vec<String> = contents(&w.s3, "out-paced", "a/").await.into_keys().filter(|k| !k.contains(".tidemark-restore/")).collect();
    assert!(written.is_empty(), "nothing but the run's marker is written while the prefix has no room: {written:?}");
    for p in &mut others {
        p.release("a", millis(Utc::now()), Observation::default()).await.unwrap();
    }
    let s = tokio::time::timeout(Duration::from_secs(60), driver).await.expect("the run ends once there is room").unwrap();
    assert_eq!(s.run.state, RestoreState::Done, "{:?}", s.run.error);
    assert_eq!(contents(&w.s3, "out-paced", "a/").await, expected(&w, "a/", "a/", t1).await);
    let tasks = w.engine.control().tasks(&run.restore_id).await.unwrap();
    assert!(
        tasks.iter().any(|t| t.attempts >= 2),
        "a deferred task was claimed again: {:?}",
        tasks.iter().map(|t| t.attempts).collect::<Vec<_>>()
    );
    let (_, state) = load(w.engine.control.as_ref(), "vault", "out-paced", "a").await.unwrap().expect("the target prefix has a state");
    assert!(state.claims.keys().any(|k| k.starts_with("restorer")), "the restore's workers claimed the prefix: {:?}", state.claims.keys());
    assert!(
        state.claims.iter().filter(|(k, _)| k.starts_with("restorer")).all(|(_, c)| c.rate == 0.0),
        "finished tasks give their slices back"
    );
}
