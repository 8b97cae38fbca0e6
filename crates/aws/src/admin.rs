//! Admin operations: create the vault's resources (`tidemark init`) and wire a bucket's change events (`protect`).
//!
//! Every operation is idempotent: running it twice leaves the same resources and configuration.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::{AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType, TimeToLiveSpecification};
use aws_sdk_eventbridge::types::Target;
use aws_sdk_s3::types::{
    DefaultRetention, EventBridgeConfiguration, NotificationConfiguration, ObjectLockConfiguration, ObjectLockEnabled,
    ObjectLockRetentionMode, ObjectLockRule,
};
use aws_sdk_sqs::types::QueueAttributeName;
use tidemark_core::{Error, Result};

use crate::errors::{code, map};
use crate::AwsClients;

/// Names of the vault's resources, derived from one name prefix so several vaults can share an endpoint.
#[derive(Debug, Clone)]
pub struct ResourceNames {
    pub work_queue: String,
    pub delta_queue: String,
    pub restore_queue: String,
    pub table: String,
}

impl ResourceNames {
    /// Names under `prefix` (default `tidemark`).
    pub fn new(prefix: &str) -> Self {
        ResourceNames {
            work_queue: format!("{prefix}-work"),
            delta_queue: format!("{prefix}-delta"),
            restore_queue: format!("{prefix}-restore"),
            table: format!("{prefix}-control"),
        }
    }

    fn dlq(queue: &str) -> String {
        format!("{queue}-dlq")
    }
}

/// How many times a message is received before it goes to its dead-letter queue.
pub const MAX_RECEIVES: u32 = 3;

/// Creates the vault bucket with versioning and Object Lock (COMPLIANCE default retention).
pub async fn ensure_vault_bucket(c: &AwsClients, bucket: &str, retention_days: i32) -> Result<()> {
    match c.s3.create_bucket().bucket(bucket).object_lock_enabled_for_bucket(true).send().await {
        Ok(_) => {}
        Err(e) if code(&e).as_deref() == Some("BucketAlreadyOwnedByYou") => {}
        Err(e) => return Err(map("CreateBucket (vault)", e)),
    }
    let current = c.s3.get_object_lock_configuration().bucket(bucket).send().await;
    let locked = current.as_ref().ok().and_then(|o| o.object_lock_configuration()).and_then(|c| c.object_lock_enabled())
        == Some(&ObjectLockEnabled::Enabled);
    if !locked {
        return Err(Error::Invalid(format!(
            "bucket {bucket} exists without Object Lock; a vault must be created with Object Lock enabled"
        )));
    }
    let has_rule = current.ok().and_then(|o| o.object_lock_configuration().and_then(|c| c.rule()).cloned()).is_some();
    if !has_rule {
        let rule = ObjectLockRule::builder()
            .default_retention(DefaultRetention::builder().mode(ObjectLockRetentionMode::Compliance).days(retention_days).build())
            .build();
        c.s3.put_object_lock_configuration()
            .bucket(bucket)
            .object_lock_configuration(
                ObjectLockConfiguration::builder().object_lock_enabled(ObjectLockEnabled::Enabled).rule(rule).build(),
            )
            .send()
            .await
            .map_err(|e| map("PutObjectLockConfiguration", e))?;
    }
    Ok(())
}

/// Creates a queue (and its dead-letter queue) if missing; returns (url, arn).
pub async fn ensure_queue(c: &AwsClients, name: &str, visibility_seconds: i32) -> Result<(String, String)> {
    let (_, dlq_arn) = create_queue(c, &ResourceNames::dlq(name), HashMap::new()).await?;
    let redrive = serde_json::json!({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": MAX_RECEIVES.to_string()}).to_string();
    let mut attrs = HashMap::new();
    attrs.insert(QueueAttributeName::RedrivePolicy, redrive);
    attrs.insert(QueueAttributeName::VisibilityTimeout, visibility_seconds.to_string());
    create_queue(c, name, attrs).await
}

async fn create_queue(c: &AwsClients, name: &str, attrs: HashMap<QueueAttributeName, String>) -> Result<(String, String)> {
    let url = match c.sqs.get_queue_url().queue_name(name).send().await {
        Ok(o) => o.queue_url().unwrap_or_default().to_string(),
        Err(_) => c
            .sqs
            .create_queue()
            .queue_name(name)
            .set_attributes(Some(attrs.clone()))
            .send()
            .await
            .map_err(|e| map("CreateQueue", e))?
            .queue_url()
            .unwrap_or_default()
            .to_string(),
    };
    if !attrs.is_empty() {
        c.sqs.set_queue_attributes().queue_url(&url).set_attributes(Some(attrs)).send().await.map_err(|e| map("SetQueueAttributes", e))?;
    }
    let arn = queue_arn(c, &url).await?;
    Ok((url, arn))
}

/// The ARN of a queue.
pub async fn queue_arn(c: &AwsClients, url: &str) -> Result<String> {
    let a = c
        .sqs
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .map_err(|e| map("GetQueueAttributes", e))?;
    a.attributes()
        .and_then(|m| m.get(&QueueAttributeName::QueueArn))
        .cloned()
        .ok_or_else(|| Error::port("GetQueueAttributes", "no QueueArn", true))
}

/// The URL of an existing queue, with a clear error if it is missing.
pub async fn queue_url(c: &AwsClients, name: &str) -> Result<String> {
    match c.sqs.get_queue_url().queue_name(name).send().await {
        Ok(o) => Ok(o.queue_url().unwrap_or_default().to_string()),
        Err(e) if code(&e).as_deref().is_some_and(|c| c.contains("NonExistentQueue")) || crate::errors::status(&e) == Some(400) => Err(
            Error::Invalid(format!("queue {name} does not exist; run `tidemark init --local` (or deploy the vault-account stack) first")),
        ),
        Err(e) => Err(map("GetQueueUrl", e)),
    }
}

/// What of the control plane (the control table, the work and delta queues) does not exist at
/// the endpoint, by name; empty when it is all there. Reads of the vault work without it, so a
/// command that only reads can tell "gone" apart from an error it should report.
pub async fn missing_control_plane(c: &AwsClients, names: &ResourceNames) -> Result<Vec<String>> {
    let mut missing = Vec::new();
    match c.dynamodb.describe_table().table_name(&names.table).send().await {
        Ok(_) => {}
        Err(e) if code(&e).as_deref() == Some("ResourceNotFoundException") => missing.push(format!("table {}", names.table)),
        Err(e) => return Err(map("DescribeTable", e)),
    }
    for q in [&names.work_queue, &names.delta_queue] {
        match queue_url(c, q).await {
            Ok(_) => {}
            Err(Error::Invalid(_)) => missing.push(format!("queue {q}")),
            Err(e) => return Err(e),
        }
    }
    Ok(missing)
}

/// Creates the control table (pk, sk; on-demand; TTL on `ttl`) if missing and waits until it is active.
pub async fn ensure_table(c: &AwsClients, table: &str) -> Result<()> {
    match c.dynamodb.describe_table().table_name(table).send().await {
        Ok(_) => return Ok(()),
        Err(e) if code(&e).as_deref() == Some("ResourceNotFoundException") => {}
        Err(e) => return Err(map("DescribeTable", e)),
    }
    let attr = |n: &str| AttributeDefinition::builder().attribute_name(n).attribute_type(ScalarAttributeType::S).build().expect("complete");
    let key = |n: &str, t| KeySchemaElement::builder().attribute_name(n).key_type(t).build().expect("complete");
    match c
        .dynamodb
        .create_table()
        .table_name(table)
        .attribute_definitions(attr("pk"))
        .attribute_definitions(attr("sk"))
        .key_schema(key("pk", KeyType::Hash))
        .key_schema(key("sk", KeyType::Range))
        .billing_mode(BillingMode::PayPerRequest)
        .send()
        .await
    {
        Ok(_) => {}
        Err(e) if code(&e).as_deref() == Some("ResourceInUseException") => {}
        Err(e) => return Err(map("CreateTable", e)),
    }
    for _ in 0..60 {
        let d = c.dynamodb.describe_table().table_name(table).send().await.map_err(|e| map("DescribeTable", e))?;
        if d.table().and_then(|t| t.table_status()).map(|s| s.as_str() == "ACTIVE").unwrap_or(false) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    }
    c.dynamodb
        .update_time_to_live()
        .table_name(table)
        .time_to_live_specification(TimeToLiveSpecification::builder().attribute_name("ttl").enabled(true).build().expect("complete"))
        .send()
        .await
        .map_err(|e| map("UpdateTimeToLive", e))?;
    Ok(())
}

/// Turns on EventBridge notifications for a bucket, keeping every existing queue, topic and Lambda configuration.
///
/// PutBucketNotificationConfiguration replaces the whole configuration, so the current one is
/// read first and written back with EventBridge added.
pub async fn enable_bucket_events(c: &AwsClients, bucket: &str) -> Result<()> {
    let cur = crate::s3::notification_configuration(&c.s3, bucket).await?;
    if cur.event_bridge_configuration().is_some() {
        return Ok(());
    }
    let merged = NotificationConfiguration::builder()
        .set_topic_configurations(Some(cur.topic_configurations().to_vec()).filter(|v| !v.is_empty()))
        .set_queue_configurations(Some(cur.queue_configurations().to_vec()).filter(|v| !v.is_empty()))
        .set_lambda_function_configurations(Some(cur.lambda_function_configurations().to_vec()).filter(|v| !v.is_empty()))
        .event_bridge_configuration(EventBridgeConfiguration::builder().build())
        .build();
    c.s3.put_bucket_notification_configuration()
        .bucket(bucket)
        .notification_configuration(merged)
        .send()
        .await
        .map_err(|e| map("PutBucketNotificationConfiguration", e))?;
    Ok(())
}

/// Routes a bucket's change events (every type the delta handler captures,
/// `tidemark_core::changes::events::CAPTURED_DETAIL_TYPES`) to the delta queue with an EventBridge rule.
pub async fn route_events(c: &AwsClients, rule_prefix: &str, bucket: &str, delta_queue_url: &str) -> Result<()> {
    let arn = queue_arn(c, delta_queue_url).await?;
    let rule = format!("{rule_prefix}-{bucket}");
    let rule = &rule[..rule.len().min(64)];
    let pattern = serde_json::json!({
        "source": ["aws.s3"],
        "detail-type": tidemark_core::changes::events::CAPTURED_DETAIL_TYPES,
        "detail": {"bucket": {"name": [bucket]}}
    });
    let put = c
        .events
        .put_rule()
        .name(rule)
        .event_pattern(pattern.to_string())
        .description(format!("tidemark: changes of s3://{bucket} to the delta queue"))
        .send()
        .await
        .map_err(|e| map("PutRule", e))?;
    c.events
        .put_targets()
        .rule(rule)
        .targets(Target::builder().id("tidemark-delta").arn(&arn).build().expect("complete"))
        .send()
        .await
        .map_err(|e| map("PutTargets", e))?;
    // EventBridge needs the queue's permission to send; the rule ARN scopes it.
    let policy = serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Sid": "tidemark-eventbridge",
            "Effect": "Allow",
            "Principal": {"Service": "events.amazonaws.com"},
            "Action": "sqs:SendMessage",
            "Resource": arn,
            "Condition": {"ArnLike": {"aws:SourceArn": put.rule_arn().unwrap_or_default()}}
        }]
    });
    c.sqs
        .set_queue_attributes()
        .queue_url(delta_queue_url)
        .attributes(QueueAttributeName::Policy, policy.to_string())
        .send()
        .await
        .map_err(|e| map("SetQueueAttributes (policy)", e))?;
    Ok(())
}
