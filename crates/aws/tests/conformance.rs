//! The conformance suites against the AWS adapters on the local stack (moto, SeaweedFS), and the
//! vault's immutability on SeaweedFS, which enforces Object Lock as strictly as S3.

use anyhow::Result;
use bytes::Bytes;
use tidemark_aws::admin;
use tidemark_aws::{AwsClients, ClientOptions, DynamoControlStore, S3Store, SqsQueue};
use tidemark_core::ports::{ObjectStore, PutOptions};
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
    Ok(())
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
    let quirks =
        conformance::Quirks { part_copy_etag_differs: true, no_website_redirect: true, no_ownership_controls: true, ..Default::default() };
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
