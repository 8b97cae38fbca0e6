//! Metrics both ways: every metric the dashboard or an alarm queries is printed by a handler with
//! the dimensions the query uses, and every metric a handler prints is queried somewhere.
//!
//! The handlers run on the in-memory fakes with the per-prefix scheduler on and a source that
//! answers some reads with `503 SlowDown`: the seeder and worker capture a bucket, the delta
//! handler captures a change and fails a foreign one, the checkpoint seals a point, the
//! restore function restores it and the scrub verifies the vault (printing its line as the
//! scrub binary does). The EMF lines they print are parsed and compared with the
//! Metrics Insights queries of infra/dashboard.json and of the alarms in both templates. One
//! test in its own binary, because the capture tally and the namespace are process-wide.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use bytes::Bytes;
use chrono::Utc;
use tidemark_core::config::EngineConfig;
use tidemark_core::engine::{Engine, QueueUrls};
use tidemark_core::ports::{ObjectStore, PutOptions, Queue, SystemClock};
use tidemark_core::restore::{RestoreMode, RestoreRequest};
use tidemark_core::Result;
use tidemark_lambda::metrics::{self, Emf};
use tidemark_lambda::{
    checkpoint_handler, delta_handler, restore_handler, scrub_handler, seeder_handler, verify_damaged_emf, worker_handler,
    CheckpointRequest, ScrubRequest, SeedRequest,
};
use tidemark_testkit::fakes::{GetHook, HookedStore, MemControlStore, MemObjectStore, MemQueue};
use tidemark_testkit::harness::repo_root;

/// Answers the first reads of each key with `503 SlowDown`, as a hot prefix does.
struct SlowDown {
    throttled: Mutex<BTreeMap<String, u32>>,
}

#[async_trait]
impl GetHook for SlowDown {
    async fn before_get(&self, _inner: &MemObjectStore, bucket: &str, key: &str) -> Result<()> {
        let mut seen = self.throttled.lock().unwrap();
        let n = seen.entry(format!("{bucket}/{key}")).or_default();
        if *n < 1 {
            *n += 1;
            return Err(tidemark_core::Error::Throttled { operation: "GetObject".into(), prefix: key.into() });
        }
        Ok(())
    }
}

fn sqs_event(bodies: &[(String, String)]) -> SqsEvent {
    let sent = Utc::now().timestamp_millis().to_string();
    let records: Vec<serde_json::Value> = bodies
        .iter()
        .map(|(id, body)| {
            serde_json::json!({"messageId": id, "receiptHandle": format!("rh-{id}"), "body": body, "eventSource": "aws:sqs",
                "attributes": {"ApproximateReceiveCount": "1", "SentTimestamp": sent}})
        })
        .collect();
    serde_json::from_value(serde_json::json!({ "Records": records })).expect("an SQS event parses")
}

fn created(bucket: &str, key: &str, etag: &str) -> String {
    serde_json::json!({"version":"0","id":"1","detail-type":"Object Created","source":"aws.s3","account":"111122223333",
      "time": Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),"region":"us-east-1","resources":[],
      "detail":{"version":"0","bucket":{"name":bucket},"object":{"key":key,"size":5,"etag":etag,"sequencer":"0062E8A3C1A0D7F2C5"},
      "reason":"PutObject"}})
    .to_string()
}

/// (metric, namespace token, the SCHEMA dimensions if any, the GROUP BY dimensions) of every
/// Metrics Insights query in `text`.
type Query = (String, String, Option<BTreeSet<String>>, BTreeSet<String>);

fn queries(text: &str) -> Vec<Query> {
    let mut out = Vec::new();
    for (i, _) in text.match_indices("SELECT ") {
        let expr: String = text[i..].chars().take_while(|c| *c != '"' && *c != '\n').collect();
        let rest = expr["SELECT ".len()..].trim();
        let (_, rest) = rest.split_once('(').expect("SELECT FN(metric)");
        let (metric, rest) = rest.split_once(')').expect("SELECT FN(metric)");
        let rest = rest.trim().strip_prefix("FROM ").unwrap_or_else(|| panic!("no FROM in {expr}")).trim();
        let (namespace, schema, rest) = match rest.strip_prefix("SCHEMA(") {
            Some(r) => {
                let (inside, rest) = r.split_once(')').expect("SCHEMA(...)");
                let mut parts = inside.split(',').map(|p| p.trim().to_string());
                let ns = parts.next().unwrap();
                (ns, Some(parts.collect::<BTreeSet<_>>()), rest.trim().to_string())
            }
            None => {
                let (ns, rest) = rest.split_once(' ').unwrap_or((rest, ""));
                (ns.to_string(), None, rest.trim().to_string())
            }
        };
        let group: BTreeSet<String> =
            rest.strip_prefix("GROUP BY ").map(|g| g.split(',').map(|d| d.trim().to_string()).collect()).unwrap_or_default();
        out.push((metric.trim().to_string(), namespace, schema, group));
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn every_metric_queried_is_printed_with_its_dimensions_and_every_printed_metric_is_queried() {
    // The namespace comes from TIDEMARK_METRICS_NAMESPACE through the configuration, as at start-up.
    let vars = [
        ("TIDEMARK_VAULT_BUCKET", "vault"),
        ("TIDEMARK_CONTROL_TABLE", "t"),
        ("TIDEMARK_WORK_QUEUE_URL", "work"),
        ("TIDEMARK_DELTA_QUEUE_URL", "delta"),
        ("TIDEMARK_RESTORE_QUEUE_URL", "restore"),
        ("TIDEMARK_METRICS_NAMESPACE", "Acme/Backup"),
    ];
    let config = tidemark_lambda::LambdaConfig::from_lookup(|n| vars.iter().find(|(k, _)| *k == n).map(|(_, v)| v.to_string())).unwrap();
    metrics::set_namespace(&config.metrics_namespace);
    metrics::record_printed();
    tidemark_core::tally::take();

    let s3 = Arc::new(MemObjectStore::new());
    s3.create("src", false);
    s3.create("vault", true);
    let source = Arc::new(HookedStore { inner: s3.clone(), hook: SlowDown { throttled: Mutex::new(BTreeMap::new()) } });
    let queue = Arc::new(MemQueue::new());
    let mut engine_config = EngineConfig::new("vault");
    engine_config.small_object_threshold = 1000;
    engine_config.scheduler = Some(EngineConfig::scheduler_for(1000.0, 0.8));
    let engine = Engine {
        source,
        vault: s3.clone(),
        control: Arc::new(MemControlStore::new()),
        queue: queue.clone(),
        clock: Arc::new(SystemClock),
        keys: Arc::new(tidemark_core::memory::MemKeys::new()),
        config: engine_config,
        queues: QueueUrls { work: "work".into(), delta: "delta".into(), restore: "restore".into() },
    };
    for i in 0..6 {
        s3.put("src", &format!("logs/{i}"), Bytes::from(format!("log line {i}")), &PutOptions::default()).await.unwrap();
    }

    // Seed: the seeder plans, the worker function captures (through the throttling source).
    let req = SeedRequest {
        source_bucket: "src".into(),
        prefix: String::new(),
        target_objects: None,
        inventory_manifest: None,
        all_versions: None,
    };
    seeder_handler(&engine, req).await.unwrap();
    loop {
        let msgs = queue.receive("work", 10, 0, 30).await.unwrap();
        if msgs.is_empty() {
            break;
        }
        let resp = worker_handler(&engine, sqs_event(&msgs.iter().map(|m| (m.id.clone(), m.body.clone())).collect::<Vec<_>>()), "w").await;
        let failed: Vec<&str> = resp.batch_item_failures.iter().map(|f| f.item_identifier.as_str()).collect();
        for m in msgs.iter().filter(|m| !failed.contains(&m.id.as_str())) {
            queue.delete("work", &m.receipt).await.unwrap();
        }
    }
    // A change, and one from a bucket this vault does not protect (a failed change).
    let etag = s3.put("src", "logs/new", Bytes::from_static(b"new line"), &PutOptions::default()).await.unwrap().etag;
    let batch = sqs_event(&[("m1".into(), created("src", "logs/new", &etag)), ("m2".into(), created("not-protected", "x", "e"))]);
    let resp = delta_handler(&engine, batch).await;
    assert_eq!(resp.batch_item_failures.len(), 1, "the foreign change fails");
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let sealed = checkpoint_handler(&engine, CheckpointRequest { buckets: vec!["src".into()] }, 0).await.unwrap();
    let as_of = sealed[0].recovery_point.expect("a point is sealed");

    // The restore function: the request starts the run, then the restore queue's batches.
    let targets = tidemark_core::ports::SameStore(s3.clone());
    let emf = Emf::new(Vec::new());
    let req = RestoreRequest {
        source_bucket: "src".into(),
        prefix: String::new(),
        as_of,
        target_bucket: "restored".into(),
        target_prefix: String::new(),
        mode: RestoreMode::Copy,
        delete_newer: false,
        dry_run: false,
        target_role_arn: None,
        attributes: Default::default(),
    };
    let started = restore_handler(&engine, &targets, &emf, serde_json::to_value(&req).unwrap(), "r").await.unwrap();
    let id = started["restore_id"].as_str().unwrap().to_string();
    while !tidemark_core::restore::run::status(&engine, &id).await.unwrap().run.state.is_final() {
        let msgs = queue.receive("restore", 10, 0, 30).await.unwrap();
        let event = sqs_event(&msgs.iter().map(|m| (m.id.clone(), m.body.clone())).collect::<Vec<_>>());
        let resp: SqsBatchResponse =
            serde_json::from_value(restore_handler(&engine, &targets, &emf, serde_json::to_value(&event).unwrap(), "r").await.unwrap())
                .unwrap();
        for m in msgs.iter().filter(|m| !resp.batch_item_failures.iter().any(|f| f.item_identifier == m.id)) {
            queue.delete("restore", &m.receipt).await.unwrap();
        }
    }

    // The scrub: one step verifies the whole (small) vault; the binary prints its line.
    let scrubbed = scrub_handler(&engine, ScrubRequest::default(), 1.0, std::time::Duration::from_secs(60)).await.unwrap();
    assert!(scrubbed.packs > 0 && scrubbed.damaged == 0, "{scrubbed:?}");
    metrics::emit(&verify_damaged_emf(&scrubbed, Utc::now()));

    let mut lines = metrics::printed();
    lines.extend(String::from_utf8(emf.into_inner()).unwrap().lines().map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()));
    // metric -> the dimension sets it was printed with
    let mut printed: BTreeMap<String, BTreeSet<BTreeSet<String>>> = BTreeMap::new();
    for line in &lines {
        let spec = &line["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(spec["Namespace"], "Acme/Backup", "every line is in the configured namespace: {line}");
        let dims: BTreeSet<String> = spec["Dimensions"][0].as_array().unwrap().iter().map(|d| d.as_str().unwrap().to_string()).collect();
        for d in &dims {
            assert!(line[d].is_string(), "dimension {d} has a value: {line}");
        }
        for m in spec["Metrics"].as_array().unwrap() {
            let name = m["Name"].as_str().unwrap();
            assert!(line[name].is_number(), "{name} has a value: {line}");
            printed.entry(name.to_string()).or_default().insert(dims.clone());
        }
    }
    let root = repo_root();
    let mut all = Vec::new();
    for file in ["infra/dashboard.json", "terraform/modules/vault-account/monitoring.tf", "cloudformation/vault-account.yaml"] {
        let text = std::fs::read_to_string(root.join(file)).unwrap();
        let found = queries(&text);
        assert!(!found.is_empty(), "{file} has no Metrics Insights queries");
        for (metric, namespace, schema, group) in &found {
            assert!(
                namespace.contains("etrics_namespace") || namespace.contains("MetricsNamespace"),
                "{file}: {metric} is read from {namespace}, not the configured namespace"
            );
            let dims = printed
                .get(metric)
                .unwrap_or_else(|| panic!("{file} queries {metric}, which no handler printed; printed: {:?}", printed.keys()));
            if let Some(schema) = schema {
                assert!(dims.contains(schema), "{file}: {metric} is queried with SCHEMA dimensions {schema:?}, printed with {dims:?}");
            }
            assert!(dims.iter().any(|d| group.is_subset(d)), "{file}: {metric} is grouped by {group:?}, printed with {dims:?}");
        }
        all.extend(found);
    }
    let queried: BTreeSet<&str> = all.iter().map(|q| q.0.as_str()).collect();
    let unqueried: Vec<&String> = printed.keys().filter(|m| !queried.contains(m.as_str())).collect();
    assert!(unqueried.is_empty(), "printed but read by no widget or alarm: {unqueried:?}");
    for alarm_metric in ["RpoSeconds", "SlowDown503", "RestoreFailed", "ChangesFailed", "VerifyDamaged"] {
        let in_alarms = all.iter().filter(|q| q.0 == alarm_metric).count();
        assert!(in_alarms >= 3, "{alarm_metric}: the dashboard and an alarm on each side ({in_alarms} queries)");
    }
    let slowdowns: Vec<&serde_json::Value> = lines.iter().filter(|l| l.get("SlowDown503").is_some()).collect();
    assert!(slowdowns.iter().any(|l| l["Prefix"] == "logs" && l["Bucket"] == "src"), "throttles per prefix: {slowdowns:?}");
    let captured: u64 = lines.iter().filter_map(|l| l["ObjectsCaptured"].as_u64()).sum();
    assert_eq!(captured, 7, "six seeded objects and one change");
}
