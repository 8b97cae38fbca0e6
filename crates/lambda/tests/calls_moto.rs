//! What each function asks of AWS, recorded on the local stack (moto), for the policy test.
//!
//! Every function's handler runs as in Lambda (configuration from its environment variables,
//! the engine wired by `LambdaConfig`, SQS batches received and deleted with the function's own
//! credentials, as the event source mapping does) with clients that record each request
//! (`tidemark_aws::CallRecorder`). The requests become IAM actions and resources, named with the
//! placeholders `${vault}`, `${source}`, `${target}`, `${control_table}`, `${work_queue}`,
//! `${delta_queue}`, `${restore_queue}`, `${work_dlq}`, `${delta_dlq}`, `${alert_topic}`, `${region}` and
//! `${account}`, and each is attributed to
//! the principal that makes it when deployed: the function's own role, or the source account's
//! read role (`read`) for every request on a source bucket (the functions read sources through
//! it, and copy large objects into the vault with it).
//!
//! The result must equal tests/iac/recorded-calls.json, which tests/iac/test_calls.py checks
//! against each function's policy in both templates. After a change to what the code calls, run
//! `TIDEMARK_RECORD_CALLS=1 cargo test -p tidemark-lambda --test calls_moto` and commit the file.

use std::collections::BTreeSet;
use std::sync::Arc;

use anyhow::Result;
use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use bytes::Bytes;
use chrono::Utc;
use tidemark_aws::{admin, AwsClients, CallRecorder, ClientOptions, S3Store, SnsNotifier};
use tidemark_core::ports::{ObjectStore, PutOptions};
use tidemark_lambda::{
    alert_handler, checkpoint_handler, delta_handler, restore_handler, scrub_handler, seeder_dispatch, worker_handler, CheckpointRequest,
    LambdaConfig, ScrubRequest,
};
use tidemark_testkit::harness::{self, repo_root};

const VAULT: &str = "calls-vault";
const SOURCE: &str = "calls-src";
const TARGET: &str = "tidemark-restore-calls";
const TABLE: &str = "calls-control";

fn sqs_event(msgs: &[tidemark_core::ports::Message]) -> SqsEvent {
    let sent = Utc::now().timestamp_millis().to_string();
    let records: Vec<serde_json::Value> = msgs
        .iter()
        .map(|m| {
            serde_json::json!({"messageId": m.id, "receiptHandle": m.receipt, "body": m.body, "eventSource": "aws:sqs",
                "attributes": {"ApproximateReceiveCount": m.receive_count.to_string(), "SentTimestamp": sent}})
        })
        .collect();
    serde_json::from_value(serde_json::json!({ "Records": records })).expect("an SQS event parses")
}

/// One function: its recorder, its clients and its engine, configured from the environment the templates set.
struct Function {
    name: &'static str,
    recorder: CallRecorder,
    config: LambdaConfig,
    clients: AwsClients,
}

impl Function {
    async fn new(name: &'static str, endpoint: &str, queues: &[(&str, String)]) -> Function {
        let recorder = CallRecorder::new();
        let opts = ClientOptions { recorder: Some(recorder.clone()), ..ClientOptions::local(endpoint) };
        let clients = AwsClients::load(&opts).await;
        let mut vars: Vec<(String, String)> = vec![
            ("TIDEMARK_VAULT_BUCKET".into(), VAULT.into()),
            ("TIDEMARK_CONTROL_TABLE".into(), TABLE.into()),
            ("TIDEMARK_SMALL_OBJECT_THRESHOLD".into(), "1000".into()),
            ("TIDEMARK_LATE_EVENT_SECONDS".into(), "0".into()),
        ];
        vars.extend(queues.iter().map(|(k, v)| (k.to_string(), v.clone())));
        let config = LambdaConfig::from_lookup(|n| vars.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone())).expect("configuration");
        Function { name, recorder, config, clients }
    }

    fn engine(&self) -> (tidemark_core::engine::Engine, Arc<dyn tidemark_core::ports::Targets>) {
        self.config.engine_and_targets_with(&self.clients)
    }

    /// The event source mapping's loop: receive with the function's credentials, hand the batch
    /// to `handle`, delete what it did not report as failed; until the queue stays empty.
    async fn drain<F, Fut>(&self, queue_url: &str, handle: F)
    where
        F: Fn(SqsEvent) -> Fut,
        Fut: std::future::Future<Output = SqsBatchResponse>,
    {
        let (engine, _) = self.engine();
        let mut empty = 0;
        while empty < 2 {
            let msgs = engine.queue.receive(queue_url, 10, 1, 30).await.unwrap();
            if msgs.is_empty() {
                empty += 1;
                continue;
            }
            empty = 0;
            let resp = handle(sqs_event(&msgs)).await;
            for m in msgs.iter().filter(|m| !resp.batch_item_failures.iter().any(|f| f.item_identifier == m.id)) {
                engine.queue.delete(queue_url, &m.receipt).await.unwrap();
            }
        }
    }
}

/// A resource named with the placeholders (see the module documentation); object keys keep
/// their first three segments under the vault (`v1/<bucket>/<kind>/*`) and none elsewhere.
fn normalise(resource: &str, queues: &[(&str, String)], account: &str) -> String {
    let mut r = resource.replace(&format!(":{account}:"), ":${account}:").replace(":us-east-1:", ":${region}:");
    r = r.replace(":calls-alarms", ":${alert_topic}");
    for (placeholder, name) in queues {
        r = r.replace(&format!(":{name}"), &format!(":{placeholder}"));
    }
    r = r.replace(&format!("table/{TABLE}"), "table/${control_table}");
    if let Some(rest) = r.strip_prefix("arn:aws:s3:::") {
        let (bucket, key) = rest.split_once('/').map_or((rest, None), |(b, k)| (b, Some(k)));
        let bucket = match bucket {
            VAULT => "${vault}",
            SOURCE => "${source}",
            TARGET => "${target}",
            other => panic!("a request on a bucket this test did not create: {other}"),
        };
        return match key {
            None => format!("arn:aws:s3:::{bucket}"),
            Some(k) if bucket == "${vault}" => {
                let parts: Vec<&str> = k.splitn(4, '/').collect();
                let parts: Vec<String> = parts.iter().take(3).map(|p| p.replace(SOURCE, "${source}")).collect();
                format!("arn:aws:s3:::{bucket}/{}/*", parts.join("/"))
            }
            // A restore's run marker keeps its place: the restore role may delete nothing else.
            Some(k) if k.contains(".tidemark-restore/") => format!("arn:aws:s3:::{bucket}/.tidemark-restore/*"),
            Some(_) => format!("arn:aws:s3:::{bucket}/*"),
        };
    }
    r
}

#[tokio::test(flavor = "multi_thread")]
async fn every_call_each_function_makes_is_recorded_for_the_policy_test() -> Result<()> {
    let moto = harness::start_moto()?;
    let admin_clients = AwsClients::load(&ClientOptions::local(&moto.endpoint)).await;
    admin::ensure_vault_bucket(&admin_clients, VAULT, 1).await?;
    let (work, _) = admin::ensure_queue(&admin_clients, "calls-work", 30).await?;
    let (delta, _) = admin::ensure_queue(&admin_clients, "calls-delta", 30).await?;
    let (restore, _) = admin::ensure_queue(&admin_clients, "calls-restore", 30).await?;
    admin::ensure_table(&admin_clients, TABLE).await?;
    let s3 = S3Store::new(admin_clients.s3.clone());
    s3.create_bucket(SOURCE).await?;
    for i in 0..5 {
        s3.put(SOURCE, &format!("data/{i}"), Bytes::from(format!("small {i}")), &PutOptions::default()).await?;
    }
    // Above the pack threshold: copied server-side into the vault.
    s3.put(SOURCE, "data/large", Bytes::from(vec![7u8; 3000]), &PutOptions::default()).await?;
    let queues = [
        ("TIDEMARK_WORK_QUEUE_URL", work.clone()),
        ("TIDEMARK_DELTA_QUEUE_URL", delta.clone()),
        ("TIDEMARK_RESTORE_QUEUE_URL", restore.clone()),
    ];
    // The dead-letter queue first: its name begins with its queue's.
    let names = [
        ("${work_dlq}", "calls-work-dlq".to_string()),
        ("${delta_dlq}", "calls-delta-dlq".into()),
        ("${work_queue}", "calls-work".to_string()),
        ("${delta_queue}", "calls-delta".into()),
        ("${restore_queue}", "calls-restore".into()),
    ];

    let seeder = Function::new("seeder", &moto.endpoint, &queues).await;
    let worker = Function::new("worker", &moto.endpoint, &queues).await;
    let delta_fn = Function::new("delta", &moto.endpoint, &queues).await;
    let checkpoint = Function::new("checkpoint", &moto.endpoint, &queues).await;
    let restore_fn = Function::new("restore", &moto.endpoint, &queues).await;
    let scrub = Function::new("scrub", &moto.endpoint, &queues).await;
    let alert = Function::new("alert", &moto.endpoint, &queues).await;

    // The seed: the seeder plans, the worker captures.
    let (engine, _) = seeder.engine();
    let seeded = seeder_dispatch(&engine, serde_json::json!({"source_bucket": SOURCE})).await?;
    let seed_run = seeded["run_id"].as_str().expect("the seed names its run").to_string();
    let (worker_engine, _) = worker.engine();
    worker.drain(&work, |e| worker_handler(&worker_engine, e, "calls-worker")).await;

    // A change the delta function captures, delivered as EventBridge puts it on the queue.
    let etag = s3.put(SOURCE, "data/changed", Bytes::from_static(b"changed"), &PutOptions::default()).await?.etag;
    let event = serde_json::json!({"version":"0","id":"1","detail-type":"Object Created","source":"aws.s3","account":"123456789012",
      "time": Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),"region":"us-east-1","resources":[],
      "detail":{"version":"0","bucket":{"name":SOURCE},"object":{"key":"data/changed","size":7,"etag":etag,"sequencer":"0062E8A3C1A0D7F2C5"},"reason":"PutObject"}});
    admin_clients.sqs.send_message().queue_url(&delta).message_body(event.to_string()).send().await?;
    let (delta_engine, _) = delta_fn.engine();
    delta_fn.drain(&delta, |e| delta_handler(&delta_engine, e)).await;

    // The daily reconciliation (in the seeder) finds a change no event announced.
    s3.put(SOURCE, "data/missed", Bytes::from_static(b"missed"), &PutOptions::default()).await?;
    let reconciled = seeder_dispatch(&engine, serde_json::json!({"mode": "reconcile", "buckets": [SOURCE]})).await?;
    assert_eq!(reconciled["reconciled"][0]["reconciled_puts"], 1, "{reconciled}");

    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let (checkpoint_engine, _) = checkpoint.engine();
    let sealed = checkpoint_handler(&checkpoint_engine, CheckpointRequest { buckets: vec![SOURCE.into()] }, 0).await?;
    let as_of = sealed[0].recovery_point.expect("a point is sealed");

    // A restore into a new bucket of the restore prefix: started by a request, run from the queue.
    let (restore_engine, targets) = restore_fn.engine();
    let emf = tidemark_lambda::metrics::Emf::new(Vec::new());
    let req = serde_json::json!({"source_bucket": SOURCE, "as_of": as_of, "target_bucket": TARGET, "mode": "copy"});
    let started = restore_handler(&restore_engine, targets.as_ref(), &emf, req, "calls-restore").await?;
    let id = started["restore_id"].as_str().expect("a restore id").to_string();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(90);
    while !tidemark_core::restore::run::status(&restore_engine, &id).await?.run.state.is_final() {
        assert!(std::time::Instant::now() < deadline, "the restore did not finish");
        restore_fn
            .drain(&restore, |e| {
                let (engine, targets, emf) = (&restore_engine, targets.clone(), &emf);
                async move {
                    let v =
                        restore_handler(engine, targets.as_ref(), emf, serde_json::to_value(e).unwrap(), "calls-restore").await.unwrap();
                    serde_json::from_value(v).unwrap()
                }
            })
            .await;
    }
    let status = tidemark_core::restore::run::status(&restore_engine, &id).await?;
    assert!(status.run.state.is_final() && status.counters.failed == 0, "{:?}", status.counters);
    assert_eq!(status.counters.objects, 8, "every object restored: {:?}", status.counters);

    // The scheduled scrub: a first step with no time left stores the cursor, the next one
    // continues from it and finishes the pass (the compare-and-set replace).
    let (scrub_engine, _) = scrub.engine();
    let (sample, step) = (scrub.config.verify_sample, std::time::Duration::from_secs(scrub.config.verify_step_seconds));
    let first = scrub_handler(&scrub_engine, ScrubRequest::default(), sample, std::time::Duration::ZERO).await?;
    let mut scrubbed = first.packs + first.large_objects;
    let mut last = first;
    while last.next.is_some() {
        last = scrub_handler(&scrub_engine, ScrubRequest::default(), sample, step).await?;
        scrubbed += last.packs + last.large_objects;
    }
    assert!(scrubbed > 0 && last.damaged == 0, "the scrub checked the vault and found it whole: {last:?}");

    // Messages that kept failing land on the dead-letter queues; the alert function sweeps them
    // and publishes one alert for each to the alarm topic, leaving them there: a task of the seed
    // run (the alert reads the run's history) and a change event (it reads the bucket's recorded
    // failures).
    let topic = admin_clients.sns.create_topic().name("calls-alarms").send().await?.topic_arn().unwrap_or_default().to_string();
    let dlq_url = |name: &'static str| {
        let sqs = admin_clients.sqs.clone();
        async move { sqs.get_queue_url().queue_name(name).send().await.map(|o| o.queue_url().unwrap_or_default().to_string()) }
    };
    let (work_dlq, delta_dlq) = (dlq_url("calls-work-dlq").await?, dlq_url("calls-delta-dlq").await?);
    let poison = serde_json::json!({"kind": "task", "version": 1, "run_id": seed_run, "task_id": "no-such-task"});
    admin_clients.sqs.send_message().queue_url(&work_dlq).message_body(poison.to_string()).send().await?;
    admin_clients.sqs.send_message().queue_url(&delta_dlq).message_body(event.to_string()).send().await?;
    let (alert_engine, _) = alert.engine();
    let notifier = SnsNotifier::new(alert.clients.sns.clone());
    let swept = alert_handler(&alert_engine, &notifier, &topic, &[work_dlq.clone(), delta_dlq.clone()]).await?;
    assert_eq!(swept.published, 2, "{swept:?}");
    let published = alert.recorder.calls().iter().filter(|c| c.operation == "Publish").count();
    assert_eq!(published, 2, "one alert per dead-lettered message");

    // The source is deleted by design, then created again: the checkpoint records it gone,
    // then finds it back and seeds it afresh. A re-created bucket has no notification
    // configuration, so the checkpoint also fails, naming the bucket and the fix, for its error
    // alarm to page.
    loop {
        let page = s3.list(SOURCE, tidemark_core::ports::ListRequest::default()).await?;
        let keys: Vec<String> = page.objects.iter().map(|o| o.key.clone()).collect();
        if keys.is_empty() {
            break;
        }
        assert!(s3.delete_many(SOURCE, &keys).await?.is_empty(), "the source's objects are deleted");
    }
    admin_clients.s3.delete_bucket().bucket(SOURCE).send().await?;
    let gone = checkpoint_handler(&checkpoint_engine, CheckpointRequest { buckets: vec![SOURCE.into()] }, 0).await?;
    assert!(gone[0].gone_since.is_some(), "a deleted source is recorded gone: {gone:?}");
    s3.create_bucket(SOURCE).await?;
    let back = checkpoint_handler(&checkpoint_engine, CheckpointRequest { buckets: vec![SOURCE.into()] }, 0).await;
    let err = back.expect_err("a returned bucket without notifications fails the checkpoint").to_string();
    assert!(err.contains(SOURCE) && err.contains("sends no events to EventBridge"), "{err}");

    // The record: (principal, function, action, resource), deduplicated and sorted.
    let account = work.trim_end_matches("/calls-work").rsplit('/').next().unwrap().to_string();
    let mut record = BTreeSet::new();
    for f in [&seeder, &worker, &delta_fn, &checkpoint, &restore_fn, &scrub, &alert] {
        let calls = f.recorder.calls();
        assert!(!calls.is_empty(), "{} made no calls", f.name);
        for call in calls {
            let perms = call.permissions("us-east-1", &account);
            // A request that touches a source bucket is made with the read role when deployed.
            let on_source = perms.iter().any(|p| p.resource.starts_with(&format!("arn:aws:s3:::{SOURCE}")));
            let principal = if on_source { "read" } else { f.name };
            for p in perms {
                record.insert((principal.to_string(), f.name.to_string(), p.action.clone(), normalise(&p.resource, &names, &account)));
            }
        }
    }
    let rows: Vec<serde_json::Value> = record
        .iter()
        .map(|(principal, function, action, resource)| {
            serde_json::json!({"principal": principal, "function": function, "action": action, "resource": resource})
        })
        .collect();
    let text = serde_json::to_string_pretty(&rows)? + "\n";
    let path = repo_root().join("tests/iac/recorded-calls.json");
    if std::env::var("TIDEMARK_RECORD_CALLS").is_ok_and(|v| v == "1") {
        std::fs::write(&path, &text)?;
        eprintln!("wrote {} ({} rows)", path.display(), rows.len());
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == text,
        "tests/iac/recorded-calls.json is not what the functions call now; run TIDEMARK_RECORD_CALLS=1 cargo test -p tidemark-lambda --test calls_moto, check the diff and commit it\nnow:\n{text}"
    );
    Ok(())
}
