//! The stepwise inventory seed on the local stack (moto): the seeder function's handler starts
//! it from an `s3://` report, the worker function's handler runs the summarise, plan and task
//! messages it finds on the real SQS queue, and the bucket restores exactly.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use aws_lambda_events::event::sqs::SqsEvent;
use bytes::Bytes;
use tidemark_aws::{admin, AwsClients, ClientOptions, DynamoControlStore, S3Store, SqsQueue};
use tidemark_core::config::EngineConfig;
use tidemark_core::control::RunState;
use tidemark_core::engine::{Engine, QueueUrls};
use tidemark_core::ports::{list_all, Fetch, ObjectStore, PutOptions, SystemClock};
use tidemark_core::restore::{RestoreMode, RestoreRequest};
use tidemark_lambda::{checkpoint_handler, restore_handler, seeder_dispatch, worker_handler, CheckpointRequest};
use tidemark_testkit::harness;
use tidemark_testkit::inventory_gen::{object_body, rows, write_report, ReportSpec};

fn sqs_event(msgs: &[tidemark_core::ports::Message]) -> SqsEvent {
    let records: Vec<serde_json::Value> = msgs
        .iter()
        .map(|m| serde_json::json!({"messageId": m.id, "receiptHandle": m.receipt, "body": m.body, "eventSource": "aws:sqs"}))
        .collect();
    serde_json::from_value(serde_json::json!({ "Records": records })).expect("an SQS event parses")
}

#[tokio::test(flavor = "multi_thread")]
async fn stepwise_inventory_seed_through_the_lambda_handlers_restores_exactly() -> Result<()> {
    let moto = harness::start_moto()?;
    let c = AwsClients::load(&ClientOptions::local(&moto.endpoint)).await;
    admin::ensure_vault_bucket(&c, "fan-vault", 1).await?;
    let (work, _) = admin::ensure_queue(&c, "fan-work", 30).await?;
    let (delta, _) = admin::ensure_queue(&c, "fan-delta", 30).await?;
    let (restore, _) = admin::ensure_queue(&c, "fan-restore", 30).await?;
    admin::ensure_table(&c, "fan-control").await?;
    let s3 = Arc::new(S3Store::new(c.s3.clone()));
    let engine = Engine {
        source: s3.clone(),
        vault: s3.clone(),
        control: Arc::new(DynamoControlStore::new(c.dynamodb.clone(), "fan-control")),
        queue: Arc::new(SqsQueue::new(c.sqs.clone())),
        clock: Arc::new(SystemClock),
        keys: Arc::new(tidemark_core::memory::MemKeys::new()),
        config: EngineConfig::new("fan-vault"),
        queues: QueueUrls { work: work.clone(), delta, restore: restore.clone() },
    };

    // A shuffled three-file report of the source bucket, delivered to a reports bucket.
    let dir = tempfile::tempdir()?;
    let mut spec = ReportSpec::new(180, 3);
    spec.source_bucket = "fan-src".into();
    spec.max_size = Some(20_000);
    spec.content_etags = true;
    let report = write_report(dir.path(), &spec)?;
    s3.create_bucket("fan-src").await?;
    s3.create_bucket("fan-reports").await?;
    let current: Vec<_> = rows(&spec).filter(|r| r.is_latest && !r.is_delete_marker).collect();
    for r in &current {
        s3.put("fan-src", &r.key, Bytes::from(object_body(&r.key, r.size)), &PutOptions::default()).await?;
    }
    let mut keys = vec![report.manifest_key.clone(), report.manifest_key.replace("manifest.json", "manifest.checksum")];
    keys.extend(report.data_keys.iter().cloned());
    for key in &keys {
        s3.put("fan-reports", key, Bytes::from(std::fs::read(report.path(key))?), &PutOptions::default()).await?;
    }

    let manifest = format!("s3://fan-reports/{}", report.manifest_key);
    let started = Instant::now();
    let seeded =
        seeder_dispatch(&engine, serde_json::json!({"source_bucket": "fan-src", "inventory_manifest": manifest, "target_objects": 40}))
            .await?;
    assert_eq!(seeded["state"], "planning", "{seeded}");
    assert_eq!(seeded["enqueued"], 3, "one summarise message per data file: {seeded}");
    let run_id = seeded["run_id"].as_str().unwrap().to_string();

    // The worker function's loop: whatever is on the work queue, in batches, until the run is complete.
    loop {
        let (_, run) = engine.control().get_run(&run_id).await?.expect("the run exists");
        if run.state == RunState::Complete {
            break;
        }
        if started.elapsed() > Duration::from_secs(120) {
            bail!("the run did not complete: {run:?}");
        }
        let msgs = engine.queue.receive(&work, 10, 1, 30).await?;
        let failed = worker_handler(&engine, sqs_event(&msgs), "fan-worker").await.batch_item_failures;
        for m in &msgs {
            if !failed.iter().any(|f| f.item_identifier == m.id) {
                engine.queue.delete(&work, &m.receipt).await?;
            }
        }
    }
    eprintln!("stepwise seed of {} objects complete in {:?}", current.len(), started.elapsed());
    let tasks = engine.control().tasks(&run_id).await?;
    let (_, run) = engine.control().get_run(&run_id).await?.unwrap();
    assert_eq!(tasks.len() as u64, run.task_count);
    assert!(tasks.len() >= 4, "several partitions: {}", tasks.len());
    assert_eq!(tasks.iter().map(|t| t.counters.objects).sum::<u64>(), current.len() as u64);
    for i in 0..3 {
        let key = tidemark_core::vault::summary_key("fan-src", &run_id, i);
        assert!(s3.head("fan-vault", &key, None).await?.is_some(), "summary {key} stored");
    }

    tokio::time::sleep(Duration::from_millis(1100)).await;
    let sealed = checkpoint_handler(&engine, CheckpointRequest { buckets: vec!["fan-src".into()] }, 0).await?;
    let as_of = sealed[0].recovery_point.expect("a point is sealed");
    let req = RestoreRequest {
        source_bucket: "fan-src".into(),
        prefix: String::new(),
        as_of,
        target_bucket: "fan-restored".into(),
        target_prefix: String::new(),
        mode: RestoreMode::Copy,
        delete_newer: false,
        dry_run: false,
        target_role_arn: None,
        attributes: Default::default(),
    };
    // The restore function as Lambda runs it: the request starts the run, then the restore
    // queue's batches go through the same handler as SQS events.
    let targets = tidemark_core::ports::SameStore(s3.clone());
    let metrics = tidemark_lambda::metrics::Emf::new(Vec::new());
    let started = restore_handler(&engine, &targets, &metrics, serde_json::to_value(&req)?, "restore-fn").await?;
    let id = started["restore_id"].as_str().expect("a restore id").to_string();
    let status = loop {
        let status = tidemark_core::restore::run::status(&engine, &id).await?;
        if status.run.state.is_final() {
            break status;
        }
        let msgs = engine.queue.receive(&restore, 10, 1, 30).await?;
        if msgs.is_empty() {
            continue;
        }
        let resp: aws_lambda_events::event::sqs::SqsBatchResponse = serde_json::from_value(
            restore_handler(&engine, &targets, &metrics, serde_json::to_value(sqs_event(&msgs))?, "restore-fn").await?,
        )?;
        for m in msgs.iter().filter(|m| !resp.batch_item_failures.iter().any(|f| f.item_identifier == m.id)) {
            engine.queue.delete(&restore, &m.receipt).await?;
        }
    };
    let restored = &status.counters;
    assert_eq!(restored.objects, current.len() as u64, "{restored:?}");
    let want = list_all(s3.as_ref(), "fan-src", "", None).await?.objects;
    let got = list_all(s3.as_ref(), "fan-restored", "", None).await?.objects;
    assert_eq!(want.iter().map(|o| (&o.key, o.size)).collect::<Vec<_>>(), got.iter().map(|o| (&o.key, o.size)).collect::<Vec<_>>());
    for o in &want {
        let (Fetch::Found((_, a)), Fetch::Found((_, b))) =
            (s3.get("fan-src", &o.key, None, None).await?, s3.get("fan-restored", &o.key, None, None).await?)
        else {
            bail!("{} is missing", o.key);
        };
        assert_eq!(a, b, "{}", o.key);
    }
    Ok(())
}
