//! The Lambda handlers called directly with real event payloads, on the in-memory fakes.
//!
//! SQS events carry EventBridge S3 events in AWS's documented form (`etag`) and in the local
//! stack's form (`eTag`, constant sequencer). Poison messages must come back as batch item
//! failures without blocking the rest; objects that vanish or change between listing and copy
//! must be recorded correctly.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use aws_lambda_events::event::sqs::SqsEvent;
use bytes::Bytes;
use chrono::Utc;
use tidemark_core::changes::backlog::{self, Received};
use tidemark_core::changes::delta::{process_batch, DeltaMessage};
use tidemark_core::config::EngineConfig;
use tidemark_core::engine::{Engine, QueueUrls};
use tidemark_core::ports::{Fetch, ListRequest, ObjectStore, PutOptions, Queue, SystemClock};
use tidemark_core::restore::{RestoreMode, RestoreRequest};
use tidemark_core::Result;
use tidemark_lambda::metrics::{Emf, RESTORE_METRICS};
use tidemark_lambda::{checkpoint_handler, delta_handler, restore_handler, seeder_handler, worker_handler, CheckpointRequest, SeedRequest};
use tidemark_testkit::fakes::{GetHook, HookedStore, MemControlStore, MemObjectStore, MemQueue};

/// Before a read, deletes or overwrites chosen keys (the races between a worker's listing and
/// its copy), fails every read after a number of them (a crash), or refuses some keys for good.
struct Racing {
    delete_before_get: Mutex<Vec<String>>,
    overwrite_before_get: Mutex<Vec<String>>,
    /// After this many more reads every read fails, as if the process had died.
    reads_left: Mutex<Option<usize>>,
    /// Keys whose reads are refused for good, as with AccessDenied.
    denied: Mutex<Vec<String>>,
}

#[async_trait]
impl GetHook for Racing {
    async fn before_get(&self, inner: &MemObjectStore, b: &str, k: &str) -> Result<()> {
        if self.denied.lock().unwrap().iter().any(|d| d == k) {
            return Err(tidemark_core::Error::port("GetObject", "AccessDenied: Access Denied", false));
        }
        if let Some(n) = self.reads_left.lock().unwrap().as_mut() {
            if *n == 0 {
                return Err(tidemark_core::Error::port("GetObject", "injected crash", true));
            }
            *n -= 1;
        }
        let del = std::mem::take(&mut *self.delete_before_get.lock().unwrap());
        for key in del.iter().filter(|d| d.as_str() == k) {
            inner.delete(b, key).await?;
        }
        self.delete_before_get.lock().unwrap().extend(del.into_iter().filter(|d| d != k));
        let ow = std::mem::take(&mut *self.overwrite_before_get.lock().unwrap());
        for key in ow.iter().filter(|d| d.as_str() == k) {
            inner.put(b, key, Bytes::from_static(b"newer version"), &PutOptions::default()).await?;
        }
        self.overwrite_before_get.lock().unwrap().extend(ow.into_iter().filter(|d| d != k));
        Ok(())
    }
}

type RacingStore = HookedStore<Racing>;

struct World {
    engine: Engine,
    s3: Arc<MemObjectStore>,
    racing: Arc<RacingStore>,
    queue: Arc<MemQueue>,
}

fn world() -> World {
    let s3 = Arc::new(MemObjectStore::new());
    s3.create("src", false);
    s3.create("vault", true);
    let racing = Arc::new(HookedStore {
        inner: s3.clone(),
        hook: Racing {
            delete_before_get: Mutex::new(vec![]),
            overwrite_before_get: Mutex::new(vec![]),
            reads_left: Mutex::new(None),
            denied: Mutex::new(vec![]),
        },
    });
    let queue = Arc::new(MemQueue::new());
    queue.set_redrive("work", "work-dlq", 3);
    let mut config = EngineConfig::new("vault");
    config.small_object_threshold = 1000;
    config.multipart_copy_threshold = 6 * 1024 * 1024;
    config.copy_part_bytes = 5 * 1024 * 1024;
    config.batch_objects = 7;
    let engine = Engine {
        source: racing.clone(),
        vault: s3.clone(),
        control: Arc::new(MemControlStore::new()),
        queue: queue.clone(),
        clock: Arc::new(SystemClock),
        keys: Arc::new(tidemark_core::memory::MemKeys::new()),
        config,
        queues: QueueUrls { work: "work".into(), delta: "delta".into(), restore: "restore".into() },
    };
    World { engine, s3, racing, queue }
}

/// An SQS event of messages sent just now, each received for the first time.
fn sqs_event(bodies: &[(&str, String)]) -> SqsEvent {
    let now = Utc::now();
    sqs_event_with(&bodies.iter().map(|(id, body)| (*id, body.clone(), now, 1)).collect::<Vec<_>>())
}

/// An SQS event of the messages a queue handed out, with their sent times and receive counts.
fn sqs_event_of(msgs: &[tidemark_core::ports::Message]) -> SqsEvent {
    sqs_event_with(
        &msgs
            .iter()
            .map(|m| (m.id.as_str(), m.body.clone(), m.sent_at.expect("the queue stamps messages"), m.receive_count))
            .collect::<Vec<_>>(),
    )
}

fn sqs_event_with(records: &[(&str, String, chrono::DateTime<Utc>, u32)]) -> SqsEvent {
    let records: Vec<serde_json::Value> = records
        .iter()
        .map(|(id, body, sent, count)| {
            let sent = sent.timestamp_millis().to_string();
            serde_json::json!({
                "messageId": id, "receiptHandle": format!("rh-{id}"), "body": body,
                "attributes": {"ApproximateReceiveCount": count.to_string(), "SentTimestamp": sent, "SenderId": "AIDAIENQZJOLO23YVJ4VO", "ApproximateFirstReceiveTimestamp": sent},
                "messageAttributes": {}, "md5OfBody": "", "eventSource": "aws:sqs",
                "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:tidemark-delta", "awsRegion": "us-east-1"
            })
        })
        .collect();
    serde_json::from_value(serde_json::json!({ "Records": records })).expect("a real SQS event parses")
}

/// An EventBridge S3 event as AWS documents it (`etag`, real sequencer).
fn aws_event(kind: &str, bucket: &str, key: &str, etag: &str, seq: &str) -> String {
    serde_json::json!({"version":"0","id":"17793124-05d4-b198-2fde-7ededc63b103","detail-type":kind,"source":"aws.s3","account":"111122223333",
      "time": Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),"region":"us-east-1","resources":[format!("arn:aws:s3:::{bucket}")],
      "detail":{"version":"0","bucket":{"name":bucket},"object":{"key":key,"size":5,"etag":etag,"sequencer":seq},
      "request-id":"N4N7GDK58NMKJ12R","requester":"123456789012","source-ip-address":"1.2.3.4","reason":"PutObject"}})
    .to_string()
}

/// The same event as the local stack (moto) sends it: `eTag`, `version-id: "null"`, a constant sequencer.
fn moto_event(kind: &str, bucket: &str, key: &str, etag: &str) -> String {
    serde_json::json!({"version":"0","id":"17793124-05d4-b198-2fde-7ededc63b103","detail-type":kind,"source":"aws.s3","account":"123456789012",
      "time": Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),"region":"us-east-1","resources":[format!("arn:aws:s3:::{bucket}")],
      "detail":{"version":"0","bucket":{"name":bucket},"object":{"key":key,"size":5,"eTag":etag,"version-id":"null","sequencer":"617f08299329d189"},
      "request-id":"N4N7GDK58NMKJ12R","requester":"123456789012","source-ip-address":"1.2.3.4","reason":"ObjectCreated"}})
    .to_string()
}

async fn put(s3: &MemObjectStore, key: &str, body: &[u8]) -> String {
    let mut meta = BTreeMap::new();
    meta.insert("k".to_string(), key.len().to_string());
    let o = PutOptions { content_type: Some("text/plain".into()), metadata: meta, ..Default::default() };
    s3.put("src", key, Bytes::copy_from_slice(body), &o).await.unwrap().etag
}

/// Restores through the restore function as Lambda would run it: the request event starts the
/// run; then every batch on the restore queue goes through the same handler as an SQS event,
/// and only the messages it did not report as failures are deleted.
/// Returns the run's status and the EMF lines the function printed for it.
async fn restore_through_the_function(
    w: &World,
    req: RestoreRequest,
) -> (tidemark_core::restore::run::RestoreStatus, Vec<serde_json::Value>) {
    let targets = tidemark_core::ports::SameStore(w.s3.clone());
    let metrics = Emf::new(Vec::new());
    let started = restore_handler(&w.engine, &targets, &metrics, serde_json::to_value(&req).unwrap(), "restore-fn").await.unwrap();
    let id = started["restore_id"].as_str().expect("a restore id").to_string();
    loop {
        let status = tidemark_core::restore::run::status(&w.engine, &id).await.unwrap();
        if status.run.state.is_final() {
            let printed = String::from_utf8(metrics.into_inner()).unwrap();
            let lines =
                printed.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("an EMF line is JSON ({e}): {l}"))).collect();
            return (status, lines);
        }
        let msgs = w.queue.receive("restore", 10, 0, 30).await.unwrap();
        if msgs.is_empty() {
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            continue;
        }
        let event = sqs_event(&msgs.iter().map(|m| (m.id.as_str(), m.body.clone())).collect::<Vec<_>>());
        let resp: aws_lambda_events::event::sqs::SqsBatchResponse = serde_json::from_value(
            restore_handler(&w.engine, &targets, &metrics, serde_json::to_value(&event).unwrap(), "restore-fn").await.unwrap(),
        )
        .unwrap();
        let failed: Vec<String> = resp.batch_item_failures.iter().map(|f| f.item_identifier.clone()).collect();
        for m in msgs.iter().filter(|m| !failed.contains(&m.id)) {
            w.queue.delete("restore", &m.receipt).await.unwrap();
        }
    }
}

async fn drain_work(w: &World) {
    loop {
        let msgs = w.queue.receive("work", 10, 0, 30).await.unwrap();
        if msgs.is_empty() {
            break;
        }
        let event = sqs_event(&msgs.iter().map(|m| (m.id.as_str(), m.body.clone())).collect::<Vec<_>>());
        let resp = worker_handler(&w.engine, event, "test-worker").await;
        assert!(resp.batch_item_failures.is_empty(), "worker failures: {:?}", resp.batch_item_failures.len());
        for m in msgs {
            w.queue.delete("work", &m.receipt).await.unwrap();
        }
    }
}

async fn state(s3: &MemObjectStore, bucket: &str) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let page = s3.list(bucket, ListRequest { max_keys: Some(1000), ..Default::default() }).await.unwrap();
    for o in page.objects {
        if let Fetch::Found((_, b)) = s3.get(bucket, &o.key, None, None).await.unwrap() {
            out.insert(o.key, b.to_vec());
        }
    }
    out
}

#[tokio::test]
async fn seed_capture_delta_and_restore_with_real_payloads() {
    let w = world();
    for i in 0..30 {
        put(&w.s3, &format!("p{}/obj {i}+%=é", i % 4), format!("body {i}").repeat(i).as_bytes()).await;
    }
    // Two large objects: one single CopyObject, one multipart UploadPartCopy.
    put(&w.s3, "big/single", &vec![1u8; 3000]).await;
    put(&w.s3, "big/multipart", &vec![2u8; 7 * 1024 * 1024]).await;
    // Races between listing and copy.
    w.racing.hook.delete_before_get.lock().unwrap().push("p1/obj 1+%=é".into());
    w.racing.hook.overwrite_before_get.lock().unwrap().push("p2/obj 2+%=é".into());

    let seeded = seeder_handler(
        &w.engine,
        SeedRequest {
            source_bucket: "src".into(),
            prefix: String::new(),
            target_objects: Some(10),
            inventory_manifest: None,
            all_versions: None,
        },
    )
    .await
    .unwrap();
    assert!(seeded.tasks >= 3, "several partitions: {seeded:?}");
    drain_work(&w).await;
    let tasks = w.engine.control().tasks(&seeded.run_id).await.unwrap();
    assert!(tasks.iter().all(|t| t.done));
    let vanished: u64 = tasks.iter().map(|t| t.counters.vanished).sum();
    let failed: u64 = tasks.iter().map(|t| t.counters.failed).sum();
    assert_eq!((vanished, failed), (1, 0), "the object deleted between listing and copy is recorded as vanished, not failed");

    let first = checkpoint_handler(&w.engine, CheckpointRequest { buckets: vec!["src".into()] }, 0).await.unwrap();
    assert!(first[0].sealed, "{first:?}");
    let t1 = first[0].recovery_point.unwrap();
    let at_t1 = state(&w.s3, "src").await;
    assert_eq!(
        at_t1.get("p2/obj 2+%=é").map(|v| v.as_slice()),
        Some(&b"newer version"[..]),
        "the overwritten object's newer version is the one captured"
    );

    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    // Changes, delivered as real SQS events: AWS form, local-stack form, a duplicate, and poison.
    let e1 = put(&w.s3, "p0/obj 0+%=é", b"changed").await;
    let e2 = put(&w.s3, "p3/new", b"brand new").await;
    w.s3.delete("src", "p3/obj 3+%=é").await.unwrap();
    let created_aws = aws_event("Object Created", "src", "p0/obj 0+%=é", &e1, "0062E8A3C1A0D7F2C5");
    let created_moto = moto_event("Object Created", "src", "p3/new", &e2);
    let deleted = aws_event("Object Deleted", "src", "p3/obj 3+%=é", "", "0062E8A3C1A0D7F2C6");
    let tags = created_aws.replace("Object Created", "Object Tags Added");
    let foreign = aws_event("Object Created", "someone-elses-bucket", "x", "e", "1");
    let event = sqs_event(&[
        ("m1", created_aws.clone()),
        ("m2", created_moto),
        ("m3", deleted),
        ("m4", created_aws),
        ("m5", "this is not json".into()),
        ("m6", tags),
        ("m7", foreign),
    ]);
    let resp = delta_handler(&w.engine, event).await;
    let mut failed: Vec<String> = resp.batch_item_failures.iter().map(|f| f.item_identifier.clone()).collect();
    failed.sort();
    assert_eq!(failed, vec!["m5", "m7"], "only the malformed and the foreign message fail");

    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let second = checkpoint_handler(&w.engine, CheckpointRequest { buckets: vec!["src".into()] }, 0).await.unwrap();
    assert!(second[0].sealed && second[0].recovery_point.unwrap() > t1);
    let at_t2 = state(&w.s3, "src").await;

    for (t, expected, target) in [(t1, &at_t1, "restore-t1"), (second[0].recovery_point.unwrap(), &at_t2, "restore-t2")] {
        let req = RestoreRequest {
            source_bucket: "src".into(),
            prefix: String::new(),
            as_of: t,
            target_bucket: target.into(),
            target_prefix: String::new(),
            mode: RestoreMode::Copy,
            delete_newer: false,
            dry_run: false,
            target_role_arn: None,
            attributes: Default::default(),
        };
        let (status, emf) = restore_through_the_function(&w, req).await;
        let report = &status.counters;
        assert_eq!((report.failed, report.verified), (0, expected.len() as u64), "{report:?}");
        // Every task message printed one EMF line: the restore metrics under the source bucket's
        // dimension, which add up to what the run restored.
        assert!(!emf.is_empty(), "the restore function printed no metrics");
        let mut sums = [0u64; 3];
        for line in &emf {
            let spec = &line["_aws"]["CloudWatchMetrics"][0];
            assert_eq!(spec["Namespace"], "Tidemark", "{line}");
            assert_eq!(spec["Dimensions"], serde_json::json!([["SourceBucket"]]), "{line}");
            let names: Vec<&str> = spec["Metrics"].as_array().unwrap().iter().map(|m| m["Name"].as_str().unwrap()).collect();
            assert_eq!(names, RESTORE_METRICS, "{line}");
            assert!(line["_aws"]["Timestamp"].as_i64().unwrap() > 0, "{line}");
            assert_eq!(line["SourceBucket"], "src", "{line}");
            for (sum, name) in sums.iter_mut().zip(["RestoreObjects", "RestoreBytes", "RestoreFailed"]) {
                *sum += line[name].as_u64().unwrap_or_else(|| panic!("{name} is a number in {line}"));
            }
        }
        assert_eq!(sums, [report.objects, report.bytes, report.failed], "{emf:?}");
        assert_eq!(&state(&w.s3, target).await, expected, "restore as of {t} matches the source at that time");
        let h = w.s3.head(target, "big/multipart", None).await.unwrap().unwrap();
        assert!(h.etag.ends_with("-2"), "the multipart vault copy is restored with its part layout");
        assert_eq!(h.metadata.get("k").map(String::as_str), Some("13"), "user metadata restored");
    }
}

#[tokio::test]
async fn a_killed_worker_resumes_without_duplicate_records() {
    let w = world();
    for i in 0..40 {
        put(&w.s3, &format!("k{i:03}"), b"data").await;
    }
    let seeded = seeder_handler(
        &w.engine,
        SeedRequest {
            source_bucket: "src".into(),
            prefix: String::new(),
            target_objects: Some(1000),
            inventory_manifest: None,
            all_versions: None,
        },
    )
    .await
    .unwrap();
    assert_eq!(seeded.tasks, 1);
    let msg = w.queue.receive("work", 1, 0, 30).await.unwrap().remove(0);
    let control = w.engine.control();
    let task: tidemark_core::protocol::messages::TaskMessage = serde_json::from_str(&msg.body).unwrap();
    // First worker: finishes two batches of 7, then dies in the middle of the third.
    let mut dying = w.engine.clone();
    dying.config.lease_seconds = 0;
    dying.config.concurrency = 1;
    *w.racing.hook.reads_left.lock().unwrap() = Some(20);
    let err = tidemark_core::protect::worker::process_task(&dying, &task, "dying").await.unwrap_err();
    assert!(err.is_transient(), "{err}");
    let (_, t) = control.get_task(&task.run_id, &task.task_id).await.unwrap().unwrap();
    assert_eq!((t.batch, t.cursor.as_deref(), t.done), (2, Some("k013"), false), "two batches checkpointed");
    *w.racing.hook.reads_left.lock().unwrap() = None;
    // A second worker takes over once the lease has expired and resumes from the cursor.
    let r = tidemark_core::protect::worker::process_task(&w.engine, &task, "alive").await.unwrap();
    assert!(matches!(r, tidemark_core::protect::worker::TaskOutcome::Finished(_)));
    // A duplicate message changes nothing.
    let again = tidemark_core::protect::worker::process_task(&w.engine, &task, "third").await.unwrap();
    assert_eq!(again, tidemark_core::protect::worker::TaskOutcome::AlreadyDone);
    let segs = control.segments("src").await.unwrap();
    let total: u64 = segs.iter().map(|s| s.meta.count).sum();
    assert_eq!(total, 40, "every object captured exactly once across {} segments", segs.len());
}

#[tokio::test]
async fn an_unreadable_object_is_counted_as_failed_and_the_rest_is_captured() {
    let w = world();
    for i in 0..12 {
        put(&w.s3, &format!("k{i:02}"), b"data").await;
    }
    w.racing.hook.denied.lock().unwrap().push("k05".into());
    let seeded = seeder_handler(
        &w.engine,
        SeedRequest {
            source_bucket: "src".into(),
            prefix: String::new(),
            target_objects: Some(1000),
            inventory_manifest: None,
            all_versions: None,
        },
    )
    .await
    .unwrap();
    drain_work(&w).await;
    let tasks = w.engine.control().tasks(&seeded.run_id).await.unwrap();
    assert!(tasks.iter().all(|t| t.done));
    let (objects, failed): (u64, u64) = tasks.iter().fold((0, 0), |(o, f), t| (o + t.counters.objects, f + t.counters.failed));
    assert_eq!((objects, failed), (11, 1));
}

/// Under continuous changes the delta queue is never empty, yet points must keep being sealed:
/// the checkpoint seals the late-event allowance behind the oldest change still unhandled, as
/// the delta invocations recorded it (here one held by a slow invocation), never past it, and
/// catches up once it is handled. The queue itself (a fake that knows its oldest message) is not
/// what decides: the handlers' records are.
#[tokio::test]
async fn the_checkpoint_seals_behind_the_oldest_unhandled_change_while_changes_keep_arriving() {
    let w = world();
    put(&w.s3, "base", b"base").await;
    let req = SeedRequest {
        source_bucket: "src".into(),
        prefix: String::new(),
        target_objects: None,
        inventory_manifest: None,
        all_versions: None,
    };
    seeder_handler(&w.engine, req).await.unwrap();
    drain_work(&w).await;
    let checkpoint = || checkpoint_handler(&w.engine, CheckpointRequest { buckets: vec!["src".into()] }, 2);
    assert!(checkpoint().await.unwrap()[0].recovery_point.is_some(), "the seeded bucket has a point");

    // Event times have one-second precision: the changes are 2.5 s apart so the allowance of 2 s
    // separates them cleanly.
    let change = |key: &'static str| {
        let w = &w;
        async move {
            let etag = put(&w.s3, key, key.as_bytes()).await;
            w.queue.send("delta", &aws_event("Object Created", "src", key, &etag, "0062E8A3C1A0D7F2C5"), 0).await.unwrap();
            w.queue.receive("delta", 10, 0, 300).await.unwrap()
        }
    };
    let handle = |msgs: Vec<tidemark_core::ports::Message>| {
        let w = &w;
        async move {
            let event = sqs_event_of(&msgs);
            assert!(delta_handler(&w.engine, event).await.batch_item_failures.is_empty());
            for m in msgs {
                w.queue.delete("delta", &m.receipt).await.unwrap();
            }
        }
    };
    let first = change("x1").await;
    handle(first).await;
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    let slow = change("x2").await;
    // The queue stamps x2 when it is sent, somewhere before this instant.
    let x2_sent_by = Utc::now();
    // A slow invocation has x2: it recorded its batch and is still capturing.
    let slow_batch: Vec<Received> = slow.iter().map(Received::from).collect();
    let slow_record = backlog::begin(&w.engine, &slow_batch).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    let third = change("x3").await;
    assert_eq!(third.len(), 1, "x2 is in flight, only x3 is received");
    handle(third).await;

    let busy = checkpoint().await.unwrap();
    assert!(busy[0].sealed, "a busy queue must not stop sealing: {busy:?}");
    let t = busy[0].recovery_point.unwrap();
    assert!(
        t <= x2_sent_by - chrono::Duration::seconds(2),
        "the point stays an allowance behind the unhandled change: {t} vs {x2_sent_by}"
    );
    assert!(busy[0].note.as_deref().unwrap_or("").contains("oldest unhandled change"), "{busy:?}");
    let (_, at_t) = tidemark_core::restore::load_state(&w.engine, "src", "", t).await.unwrap();
    let keys: Vec<&str> = at_t.keys().map(String::as_str).collect();
    assert_eq!(keys, vec!["base", "x1"], "as of the point: the handled change before it, nothing after");

    // The slow invocation finishes.
    let msgs: Vec<DeltaMessage> = slow_batch.iter().map(|m| DeltaMessage { id: m.id.clone(), body: m.body.clone() }).collect();
    assert!(process_batch(&w.engine, &msgs).await.unwrap().failed.is_empty());
    backlog::finish(&w.engine, slow_record, &HashSet::new()).await.unwrap();
    for m in slow {
        w.queue.delete("delta", &m.receipt).await.unwrap();
    }
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    let caught_up = checkpoint().await.unwrap();
    assert!(caught_up[0].sealed && caught_up[0].recovery_point.unwrap() > t, "{caught_up:?}");
    let (_, now_state) = tidemark_core::restore::load_state(&w.engine, "src", "", caught_up[0].recovery_point.unwrap()).await.unwrap();
    assert_eq!(now_state.keys().map(String::as_str).collect::<Vec<_>>(), vec!["base", "x1", "x2", "x3"]);
}
