//! The alert function on the local stack (moto): an SQS queue subscribed to an SNS topic receives
//! one alert per dead-lettered message, naming the failed step and its error, quoting its input
//! (truncated, with where the whole one is), listing the run's preceding steps with their
//! outcomes, and giving the log id with a ready CloudWatch Logs Insights query.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use aws_lambda_events::event::sqs::SqsEvent;
use bytes::Bytes;
use tidemark_aws::{admin, AwsClients, ClientOptions, DynamoControlStore, S3Store, SnsNotifier, SqsQueue};
use tidemark_core::config::EngineConfig;
use tidemark_core::engine::{Engine, QueueUrls};
use tidemark_core::ports::{Message, ObjectStore, PutOptions, SystemClock};
use tidemark_lambda::{alert_handler, seeder_handler, worker_handler, SeedRequest};
use tidemark_testkit::harness;

fn sqs_event(msgs: &[Message], arn: &str) -> SqsEvent {
    let records: Vec<serde_json::Value> = msgs
        .iter()
        .map(|m| serde_json::json!({"messageId": m.id, "receiptHandle": m.receipt, "body": m.body, "eventSource": "aws:sqs", "eventSourceARN": arn}))
        .collect();
    serde_json::from_value(serde_json::json!({ "Records": records })).expect("an SQS event parses")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dead_lettered_task_publishes_an_alert_that_says_what_happened() -> Result<()> {
    let moto = harness::start_moto()?;
    let c = AwsClients::load(&ClientOptions::local(&moto.endpoint)).await;
    admin::ensure_vault_bucket(&c, "al-vault", 1).await?;
    let (work, work_arn) = admin::ensure_queue(&c, "al-work", 30).await?;
    let dlq = c.sqs.get_queue_url().queue_name("al-work-dlq").send().await?.queue_url().unwrap().to_string();
    admin::ensure_table(&c, "al-control").await?;
    let s3 = Arc::new(S3Store::new(c.s3.clone()));
    let engine = Engine {
        source: s3.clone(),
        vault: s3.clone(),
        control: Arc::new(DynamoControlStore::new(c.dynamodb.clone(), "al-control")),
        queue: Arc::new(SqsQueue::new(c.sqs.clone())),
        clock: Arc::new(SystemClock),
        keys: Arc::new(tidemark_core::memory::MemKeys::new()),
        config: EngineConfig::new("al-vault"),
        queues: QueueUrls { work: work.clone(), ..Default::default() },
    };

    // The alert topic, with an SQS queue subscribed to it (raw delivery: the alert itself).
    let sns = aws_sdk_sns::Client::new(&c.shared);
    let topic = sns.create_topic().name("al-alerts").send().await?.topic_arn().unwrap().to_string();
    let (inbox, inbox_arn) = admin::ensure_queue(&c, "al-inbox", 30).await?;
    sns.subscribe().topic_arn(&topic).protocol("sqs").endpoint(&inbox_arn).attributes("RawMessageDelivery", "true").send().await?;

    // A seed run whose tasks succeed: the run's preceding steps.
    s3.create_bucket("al-src").await?;
    for i in 0..30 {
        s3.put("al-src", &format!("p{}/k{i:02}", i % 3), Bytes::from(format!("object {i}")), &PutOptions::default()).await?;
    }
    let req = SeedRequest {
        source_bucket: "al-src".into(),
        prefix: String::new(),
        target_objects: Some(10),
        inventory_manifest: None,
        all_versions: None,
    };
    let seeded = tidemark_lambda::in_invocation("seeder", "req-seed-0", seeder_handler(&engine, req)).await?;
    let msgs = engine.queue.receive(&work, 10, 1, 30).await?;
    assert!(!msgs.is_empty());
    let out = worker_handler(&engine, sqs_event(&msgs, &work_arn), "req-good-1").await;
    assert!(out.batch_item_failures.is_empty());
    for m in &msgs {
        engine.queue.delete(&work, &m.receipt).await?;
    }

    // A poison message: a task of that run that does not exist (and a long tail, to be cut).
    let poison =
        serde_json::json!({"kind": "task", "version": 1, "run_id": seeded.run_id, "task_id": "no-such-task", "note": "x".repeat(5000)})
            .to_string();
    engine.queue.send(&work, &poison, 0).await?;
    let mut dead = Vec::new();
    for attempt in 0..20 {
        let got = engine.queue.receive(&work, 10, 1, 0).await?;
        for m in &got {
            let failed = worker_handler(&engine, sqs_event(std::slice::from_ref(m), &work_arn), &format!("req-poison-{attempt}")).await;
            assert_eq!(failed.batch_item_failures.len(), 1, "the poison message fails");
            engine.queue.change_visibility(&work, &m.receipt, 0).await?;
        }
        // Looked at without hiding it: the sweep reads it next.
        dead = engine.queue.receive(&dlq, 10, 0, 0).await?;
        if !dead.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(dead.len(), 1, "the poison message was dead-lettered");

    let notifier = SnsNotifier::new(sns.clone());
    let swept = alert_handler(&engine, &notifier, &topic, std::slice::from_ref(&dlq)).await?;
    assert_eq!((swept.published, swept.already_alerted), (1, 0), "{swept:?}");
    // The dead letter stays on its queue, to be redriven once the cause is fixed.
    let kept = engine.queue.receive(&dlq, 10, 1, 0).await?;
    assert_eq!(kept.iter().map(|m| &m.id).collect::<Vec<_>>(), vec![&dead[0].id], "the sweep leaves the message on the dead-letter queue");

    let mut alerts = Vec::new();
    for _ in 0..10 {
        alerts.extend(engine.queue.receive(&inbox, 10, 1, 30).await?);
        if !alerts.is_empty() {
            break;
        }
    }
    assert_eq!(alerts.len(), 1, "one alert per failed message");
    // A second sweep finds the same message already alerted and publishes nothing.
    let again = alert_handler(&engine, &notifier, &topic, std::slice::from_ref(&dlq)).await?;
    assert_eq!((again.published, again.already_alerted), (0, 1), "{again:?}");
    assert!(engine.queue.receive(&inbox, 10, 1, 30).await?.is_empty(), "no second alert for the same message");
    let a: serde_json::Value = serde_json::from_str(&alerts[0].body)?;
    assert_eq!(a["step"], "seed task", "{a:#}");
    assert_eq!(a["run_id"], seeded.run_id.as_str());
    assert_eq!(a["task_id"], "no-such-task");
    assert_eq!(a["source_bucket"], "al-src");
    assert!(a["error"].as_str().unwrap().contains("task no-such-task of run"), "{a:#}");
    assert!(a["attempts"].as_u64() >= Some(3), "every receive was an attempt: {a:#}");
    assert_eq!(a["input_truncated"], true);
    assert_eq!(a["input_bytes"], poison.len());
    assert!(poison.starts_with(a["input"].as_str().unwrap()) && a["input"].as_str().unwrap().len() < poison.len());
    let location = a["input_location"].as_str().unwrap();
    assert!(location.contains(&dead[0].id) && location.contains(&dlq), "{location}");
    let preceding = a["preceding_steps"].as_array().unwrap();
    assert_eq!(preceding.len(), msgs.len() + 1, "every earlier step of the run, its start first: {a:#}");
    assert_eq!(preceding[0]["name"], "seed start", "{a:#}");
    assert!(preceding[1..].iter().all(|s| s["name"] == "seed task" && s["state"] == "done"), "{a:#}");
    let steps = tidemark_core::history::steps(&engine, &seeded.run_id).await?;
    assert_eq!(steps[0].log_id, "req-seed-0", "the start step names the seeder's invocation");
    let log_id = a["log_id"].as_str().unwrap();
    assert!(log_id.starts_with("req-poison-"), "the failed invocation's request id: {log_id}");
    let query = a["logs_insights_query"].as_str().unwrap();
    assert!(query.contains(&format!("filter log_id = \"{log_id}\"")), "{query}");
    assert_eq!(a["runbook"], "docs/runbook.md#seed-steps-and-tasks");
    Ok(())
}
