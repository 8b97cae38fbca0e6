//! The functions' JSON logs: a worker invocation's lines, captured through the same layer the
//! binaries install, carry the invocation's `log_id` and each step's run id, step name, task id,
//! source bucket and prefix as top-level fields; so do a checkpoint's and a seed start's.

use std::sync::{Arc, Mutex};

use aws_lambda_events::event::sqs::SqsEvent;
use bytes::Bytes;
use chrono::Utc;
use tidemark_core::config::EngineConfig;
use tidemark_core::ports::{ObjectStore, PutOptions};
use tidemark_lambda::logging::JsonLines;
use tidemark_lambda::{checkpoint_handler, invocation_span, seeder_handler, worker_handler, CheckpointRequest, SeedRequest};
use tidemark_testkit::fakes::{mem_engine, MemObjectStore};
use tracing::Instrument;
use tracing_subscriber::layer::SubscriberExt;

/// A writer into a shared buffer, as the layer's `MakeWriter`.
#[derive(Clone, Default)]
struct Buffer(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Buffer {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Buffer {
    fn lines(&self) -> Vec<serde_json::Value> {
        let text = String::from_utf8(self.0.lock().unwrap().clone()).unwrap();
        text.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not one JSON object per line ({e}): {l}"))).collect()
    }
}

fn sqs_event(bodies: &[(String, String)]) -> SqsEvent {
    let sent = Utc::now().timestamp_millis().to_string();
    let records: Vec<serde_json::Value> = bodies
        .iter()
        .map(|(id, body)| {
            serde_json::json!({
                "messageId": id, "receiptHandle": format!("rh-{id}"), "body": body,
                "attributes": {"ApproximateReceiveCount": "1", "SentTimestamp": sent, "SenderId": "AIDAIENQZJOLO23YVJ4VO", "ApproximateFirstReceiveTimestamp": sent},
                "messageAttributes": {}, "md5OfBody": "", "eventSource": "aws:sqs",
                "eventSourceARN": "arn:aws:sqs:us-east-1:111122223333:tidemark-work", "awsRegion": "us-east-1"
            })
        })
        .collect();
    serde_json::from_value(serde_json::json!({ "Records": records })).unwrap()
}

#[tokio::test]
async fn every_line_of_an_invocation_names_its_log_id_run_step_and_source() {
    let buffer = Buffer::default();
    let writer = buffer.clone();
    let subscriber = tracing_subscriber::registry().with(JsonLines::new(move || writer.clone()));
    let _guard = tracing::subscriber::set_default(subscriber);

    let s3 = Arc::new(MemObjectStore::new());
    s3.create("src", false);
    s3.create("vault", true);
    for i in 0..5 {
        s3.put("src", &format!("tenants/acme/k{i}"), Bytes::from(format!("object {i}")), &PutOptions::default()).await.unwrap();
    }
    let engine = mem_engine(s3.clone(), EngineConfig::new("vault"));
    let req = SeedRequest {
        source_bucket: "src".into(),
        prefix: "tenants/".into(),
        target_objects: None,
        inventory_manifest: None,
        all_versions: None,
    };
    let seeded = seeder_handler(&engine, req).instrument(invocation_span("seeder", "req-seed-1")).await.unwrap();
    let msgs = engine.queue.receive("work", 10, 0, 30).await.unwrap();
    assert!(!msgs.is_empty());
    let event = sqs_event(&msgs.iter().map(|m| (m.id.clone(), m.body.clone())).collect::<Vec<_>>());
    let out = worker_handler(&engine, event, "worker-1").instrument(invocation_span("worker", "req-work-7")).await;
    assert!(out.batch_item_failures.is_empty());
    checkpoint_handler(&engine, CheckpointRequest { buckets: vec!["src".into()] }, 0)
        .instrument(invocation_span("checkpoint", "req-cp-3"))
        .await
        .unwrap();

    let lines = buffer.lines();
    assert!(lines.iter().all(|l| l["timestamp"].is_string() && l["level"].is_string() && l["message"].is_string()), "{lines:#?}");
    let of = |log_id: &str| lines.iter().filter(|l| l["log_id"] == log_id).cloned().collect::<Vec<_>>();

    let seed = of("req-seed-1");
    let begun = seed.iter().find(|l| l["message"] == "seed run begun").unwrap_or_else(|| panic!("{seed:#?}"));
    assert_eq!(
        (&begun["function"], &begun["step"], &begun["source_bucket"], &begun["prefix"]),
        (&"seeder".into(), &"seed start".into(), &"src".into(), &"tenants/".into())
    );
    assert_eq!(begun["run_id"], seeded.run_id.as_str());

    let work = of("req-work-7");
    let started: Vec<_> = work.iter().filter(|l| l["message"] == "step started").collect();
    assert_eq!(started.len(), msgs.len(), "one start line per task message: {work:#?}");
    let claimed = work.iter().find(|l| l["message"] == "task claimed").unwrap_or_else(|| panic!("{work:#?}"));
    for field in ["task_id", "run_id"] {
        assert!(claimed[field].is_string(), "{field} on {claimed}");
    }
    let finished = work.iter().find(|l| l["message"] == "step finished").unwrap_or_else(|| panic!("{work:#?}"));
    assert_eq!(
        (&finished["step"], &finished["run_id"], &finished["source_bucket"], &finished["prefix"]),
        (&"seed task".into(), &seeded.run_id.as_str().into(), &"src".into(), &"tenants/".into())
    );
    assert_eq!(finished["function"], "worker");
    assert!(finished["task_id"].is_string() && finished["elapsed_ms"].is_u64(), "{finished}");

    let cp = of("req-cp-3");
    let line = cp.iter().find(|l| l["message"] == "checkpoint").unwrap_or_else(|| panic!("{cp:#?}"));
    assert_eq!((&line["step"], &line["source_bucket"], &line["sealed"]), (&"checkpoint".into(), &"src".into(), &true.into()));
    assert!(lines.iter().all(|l| l["log_id"].is_string()), "no line outside an invocation: {lines:#?}");
}
