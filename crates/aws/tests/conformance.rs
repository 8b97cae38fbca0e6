//! The conformance suites against the AWS adapters on the local stacks (moto, SeaweedFS,
//! MiniStack), S3 → EventBridge → SQS routing on the stacks that send S3 events, and the vault's
//! immutability on SeaweedFS, which enforces Object Lock as strictly as S3.

use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use bytes::Bytes;
use tidemark_aws::admin;
use tidemark_aws::{AwsClients, ClientOptions, DynamoControlStore, KmsKeys, S3Store, SqsQueue};
use tidemark_core::changes::events::{parse_change, ChangeEvent, ChangeKind};
use tidemark_core::ports::{Message, ObjectStore, PutOptions, Queue};
use tidemark_testkit::{conformance, harness};

async fn clients(endpoint: &str) -> AwsClients {
    AwsClients::load(&ClientOptions::local(endpoint)).await
}

async fn enable_versioning(c: &AwsClients, bucket: &str) -> Result<()> {
    c.s3.create_bucket().bucket(bucket).send().await?;
    let on = aws_sdk_s3::types::VersioningConfiguration::builder().status(aws_sdk_s3::types::BucketVersioningStatus::Enabled).build();
    c.s3.put_bucket_versioning().bucket(bucket).versioning_configuration(on).send().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn adapters_conform_on_moto() -> Result<()> {
    let moto = harness::start_moto()?;
    let c = clients(&moto.endpoint).await;
    let s3 = S3Store::new(c.s3.clone());
    s3.create_bucket("plain").await?;
    let quirks = conformance::Quirks { copy_ignores_if_match: true, checksums_unverified: true, ..Default::default() };
    conformance::object_store(&s3, "plain", "missing-bucket", quirks).await;
    c.s3.create_bucket().bucket("versioned").send().await?;
    c.s3.put_bucket_versioning()
        .bucket("versioned")
        .versioning_configuration(
            aws_sdk_s3::types::VersioningConfiguration::builder().status(aws_sdk_s3::types::BucketVersioningStatus::Enabled).build(),
        )
        .send()
        .await?;
    conformance::versioned_object_store(&s3, "versioned").await;
    s3.create_bucket("attrs").await?;
    conformance::attributes(&s3, "attrs", quirks).await;
    enable_versioning(&c, "versions").await?;
    conformance::versions(&s3, "versions").await;

    let (url, _) = admin::ensure_queue(&c, "conf-q", 30).await?;
    conformance::queue(&SqsQueue::new(c.sqs.clone()).with_age_metric(c.cloudwatch.clone()), &url).await;

    admin::ensure_table(&c, "conf-control").await?;
    admin::ensure_table(&c, "conf-control").await?;
    conformance::control_store(&DynamoControlStore::new(c.dynamodb.clone(), "conf-control"), "pk").await;

    let key = tidemark_aws::kms::create_vault_key(&c.kms, "conformance").await?;
    let other = tidemark_aws::kms::create_vault_key(&c.kms, "conformance, another").await?;
    let missing = "arn:aws:kms:us-east-1:123456789012:key/00000000-0000-0000-0000-000000000000".to_string();
    conformance::key_service(&KmsKeys::new(c.kms.clone()), &conformance::TestKeys { key, other, disabled: None, missing }).await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn adapters_conform_on_ministack() -> Result<()> {
    let ms = harness::start_ministack()?;
    let c = clients(&ms.endpoint).await;
    let s3 = S3Store::new(c.s3.clone());
    s3.create_bucket("plain").await?;
    conformance::object_store(&s3, "plain", "missing-bucket", conformance::Quirks::default()).await;
    c.s3.create_bucket().bucket("versioned").send().await?;
    c.s3.put_bucket_versioning()
        .bucket("versioned")
        .versioning_configuration(
            aws_sdk_s3::types::VersioningConfiguration::builder().status(aws_sdk_s3::types::BucketVersioningStatus::Enabled).build(),
        )
        .send()
        .await?;
    conformance::versioned_object_store(&s3, "versioned").await;

    // MiniStack has no CloudWatch, so the queue is read without the age metric, as the load test does.
    let (url, _) = admin::ensure_queue(&c, "conf-q", 30).await?;
    conformance::queue(&SqsQueue::new(c.sqs.clone()), &url).await;

    admin::ensure_table(&c, "conf-control").await?;
    admin::ensure_table(&c, "conf-control").await?;
    conformance::control_store(&DynamoControlStore::new(c.dynamodb.clone(), "conf-control"), "pk").await;
    Ok(())
}

/// How a stack's S3 change events differ from AWS's documented EventBridge form.
#[derive(Debug, Clone, Copy, Default)]
struct EventQuirks {
    /// MiniStack 1.5.33 sends no `version-id`, even from a versioned bucket, so the delta handler
    /// falls back to the current object with an ETag check there.
    no_version_id: bool,
    /// moto 5.2.5 sends no event for a delete marker in a versioned bucket.
    no_delete_marker_event: bool,
    /// moto 5.2.5 sends one constant sequencer for every event; order within a second then rests
    /// on the capture time.
    constant_sequencer: bool,
}

/// Receives from `url` until `want` creations and deletions have arrived or 20 s pass. Attribute
/// events are routed too (moto follows each put with `Object Tags Added`); they are not what
/// this test counts.
async fn receive_changes(q: &SqsQueue, url: &str, want: usize) -> Result<Vec<(Message, ChangeEvent)>> {
    let mut out = Vec::new();
    let start = Instant::now();
    while out.len() < want && start.elapsed() < Duration::from_secs(20) {
        for m in q.receive(url, 10, 1, 30).await? {
            if let Some(ev) = parse_change(&m.body)? {
                if matches!(ev.kind, ChangeKind::Created | ChangeKind::Deleted { .. }) {
                    out.push((m, ev));
                }
            }
        }
    }
    Ok(out)
}

/// S3 → EventBridge → SQS as `tidemark protect` sets it up (`enable_bucket_events`,
/// `route_events`): every put and delete of the protected bucket arrives once parsed, with a
/// literal key, the object's ETag, a sent time, and nothing from another bucket.
async fn event_routing(c: &AwsClients, quirks: EventQuirks) -> Result<()> {
    let q = SqsQueue::new(c.sqs.clone());
    for b in ["events-src", "events-other", "events-versioned"] {
        c.s3.create_bucket().bucket(b).send().await?;
    }
    c.s3.put_bucket_versioning()
        .bucket("events-versioned")
        .versioning_configuration(
            aws_sdk_s3::types::VersioningConfiguration::builder().status(aws_sdk_s3::types::BucketVersioningStatus::Enabled).build(),
        )
        .send()
        .await?;
    let (url, _) = admin::ensure_queue(c, "events-delta", 30).await?;
    for b in ["events-src", "events-other", "events-versioned"] {
        admin::enable_bucket_events(c, b).await?;
        // Turning events on again changes nothing (protect may run twice).
        admin::enable_bucket_events(c, b).await?;
    }
    admin::route_events(c, "conf", "events-src", &url).await?;
    admin::route_events(c, "conf", "events-versioned", &url).await?;

    let before = chrono::Utc::now();
    let key = "dir/a b+c%=é.txt";
    let put = c.s3.put_object().bucket("events-src").key(key).body(b"hello".to_vec().into()).send().await?;
    let etag = put.e_tag().unwrap_or_default().trim_matches('"').to_string();
    c.s3.put_object().bucket("events-other").key("not-routed").body(b"x".to_vec().into()).send().await?;
    c.s3.delete_object().bucket("events-src").key(key).send().await?;
    let vput = c.s3.put_object().bucket("events-versioned").key("v").body(b"one".to_vec().into()).send().await?;
    c.s3.delete_object().bucket("events-versioned").key("v").send().await?;
    let after = chrono::Utc::now();

    let want = if quirks.no_delete_marker_event { 3 } else { 4 };
    let got = receive_changes(&q, &url, want).await?;
    let extra = receive_changes(&q, &url, 1).await?;
    let all: Vec<&ChangeEvent> = got.iter().chain(extra.iter()).map(|(_, e)| e).collect();
    if all.len() != want {
        bail!("expected {want} routed changes, got {}: {all:#?}", all.len());
    }
    assert!(all.iter().all(|e| e.bucket != "events-other"), "a bucket without a rule is not routed: {all:#?}");
    for (m, e) in got.iter().chain(extra.iter()) {
        let sent = m.sent_at.unwrap_or_else(|| panic!("routed message {} carries no sent time", m.id));
        let slack = chrono::Duration::seconds(2);
        assert!(e.time >= before - slack && e.time <= after + slack, "event time {} outside the changes' {before}..{after}", e.time);
        assert!(sent >= e.time - slack && sent <= chrono::Utc::now(), "sent at {sent}, event at {}", e.time);
        assert!(e.sequencer.is_some(), "every event carries a sequencer: {e:?}");
    }
    let created = all.iter().find(|e| e.bucket == "events-src" && e.kind == ChangeKind::Created).expect("the put is routed");
    assert_eq!(created.key, key, "the key arrives literally, not URL-encoded");
    assert_eq!(created.etag.as_deref(), Some(etag.as_str()), "the event names the object's ETag");
    assert_eq!(created.version_id, None, "an unversioned object has no version");
    let deleted =
        all.iter().find(|e| e.bucket == "events-src" && matches!(e.kind, ChangeKind::Deleted { .. })).expect("the delete is routed");
    assert_eq!(deleted.key, key);
    if !quirks.constant_sequencer {
        assert!(
            tidemark_core::domain::padded_sequencer(created.sequencer.as_deref())
                < tidemark_core::domain::padded_sequencer(deleted.sequencer.as_deref()),
            "a key's later change has the greater sequencer: {created:?} then {deleted:?}"
        );
    }
    let vcreated =
        all.iter().find(|e| e.bucket == "events-versioned" && e.kind == ChangeKind::Created).expect("the versioned put is routed");
    if quirks.no_version_id {
        assert_eq!(vcreated.version_id, None, "this stack sends no version-id (if it starts to, drop the quirk)");
    } else {
        assert_eq!(vcreated.version_id.as_deref(), vput.version_id(), "a versioned put names its version");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn s3_events_are_routed_to_the_delta_queue_on_moto() -> Result<()> {
    let moto = harness::start_moto()?;
    let c = clients(&moto.endpoint).await;
    event_routing(&c, EventQuirks { no_delete_marker_event: true, constant_sequencer: true, ..Default::default() }).await
}

#[tokio::test(flavor = "multi_thread")]
async fn s3_events_are_routed_to_the_delta_queue_on_ministack() -> Result<()> {
    let ms = harness::start_ministack()?;
    let c = clients(&ms.endpoint).await;
    event_routing(&c, EventQuirks { no_version_id: true, ..Default::default() }).await
}

/// The checkpoint's evidence on a busy queue: the adapter reads SQS's own age metric. moto does
/// not publish SQS metrics, so the test publishes the datapoint SQS would (namespace `AWS/SQS`,
/// dimension `QueueName`) into moto's CloudWatch and checks what the adapter makes of it.
#[tokio::test(flavor = "multi_thread")]
async fn a_busy_queue_reports_its_oldest_message_from_the_age_metric() -> Result<()> {
    use aws_sdk_cloudwatch::types::{Dimension, MetricDatum, StandardUnit};
    use tidemark_core::ports::{Backlog, Queue};
    let moto = harness::start_moto()?;
    let c = clients(&moto.endpoint).await;
    let (url, _) = admin::ensure_queue(&c, "busy-q", 30).await?;
    let (other, _) = admin::ensure_queue(&c, "other-q", 30).await?;
    let q = SqsQueue::new(c.sqs.clone()).with_age_metric(c.cloudwatch.clone());
    q.send(&url, "change", 0).await?;
    q.send(&other, "change", 0).await?;
    match q.oldest_unhandled(&url).await? {
        Backlog::Unknown { reason } => assert!(reason.contains("busy-q"), "{reason}"),
        b => panic!("no datapoint yet, but the queue claims {b:?}"),
    }
    let minute = chrono::Utc::now().timestamp() / 60 * 60;
    let publish = |queue: &str, age: f64| {
        c.cloudwatch.put_metric_data().namespace("AWS/SQS").metric_data(
            MetricDatum::builder()
                .metric_name("ApproximateAgeOfOldestMessage")
                .dimensions(Dimension::builder().name("QueueName").value(queue).build())
                .timestamp(aws_sdk_cloudwatch::primitives::DateTime::from_secs(minute))
                .value(age)
                .unit(StandardUnit::Seconds)
                .build(),
        )
    };
    publish("busy-q", 42.0).send().await?;
    publish("other-q", 900.0).send().await?;
    match q.oldest_unhandled(&url).await? {
        Backlog::Oldest { at, oldest_sent } => {
            assert_eq!(at.timestamp(), minute, "the datapoint's minute");
            assert_eq!((at - oldest_sent).num_seconds(), 42, "the busy queue's own age, not the other queue's");
        }
        b => panic!("expected the oldest message from the metric, got {b:?}"),
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn s3_adapter_conforms_on_seaweedfs_and_the_vault_is_immutable() -> Result<()> {
    let weed = harness::start_seaweedfs()?;
    let c = clients(&weed.endpoint).await;
    let s3 = S3Store::new(c.s3.clone());
    s3.create_bucket("plain").await?;
    let quirks = conformance::Quirks {
        part_copy_etag_differs: true,
        no_website_redirect: true,
        no_ownership_controls: true,
        no_event_notifications: true,
        ..Default::default()
    };
    conformance::object_store(&s3, "plain", "missing-bucket", quirks).await;
    s3.create_bucket("attrs").await?;
    conformance::attributes(&s3, "attrs", quirks).await;
    enable_versioning(&c, "versions").await?;
    conformance::versions(&s3, "versions").await;

    // A vault bucket: Object Lock with COMPLIANCE default retention.
    admin::ensure_vault_bucket(&c, "vault", 1).await?;
    admin::ensure_vault_bucket(&c, "vault", 1).await?;
    let w = s3.put("vault", "v1/b/packs/p.pack", Bytes::from_static(b"pack bytes"), &PutOptions::default()).await?;
    let version = w.version_id.expect("the vault is versioned");
    let head = c.s3.head_object().bucket("vault").key("v1/b/packs/p.pack").send().await?;
    assert_eq!(head.object_lock_mode().map(|m| m.as_str()), Some("COMPLIANCE"), "default retention applies");

    // Deleting the locked version is refused.
    let del = c.s3.delete_object().bucket("vault").key("v1/b/packs/p.pack").version_id(&version).send().await;
    assert!(del.is_err(), "deleting a locked vault version must be refused");
    // Shortening the retention is refused.
    let shorter = aws_sdk_s3::types::ObjectLockRetention::builder()
        .mode(aws_sdk_s3::types::ObjectLockRetentionMode::Compliance)
        .retain_until_date(aws_smithy_types::DateTime::from_secs(chrono::Utc::now().timestamp() + 60))
        .build();
    let r = c.s3.put_object_retention().bucket("vault").key("v1/b/packs/p.pack").version_id(&version).retention(shorter).send().await;
    assert!(r.is_err(), "shortening a COMPLIANCE retention must be refused");
    // Writing the key again never replaces the locked version: it stays readable by id.
    s3.put("vault", "v1/b/packs/p.pack", Bytes::from_static(b"other"), &PutOptions::default()).await?;
    let got = c.s3.get_object().bucket("vault").key("v1/b/packs/p.pack").version_id(&version).send().await?;
    assert_eq!(&got.body.collect().await?.into_bytes()[..], b"pack bytes", "the original version is intact");
    Ok(())
}
