//! The delta function's handler: a batch of S3 change events from the delta queue.

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use tidemark_core::changes::delta::{process_batch, DeltaMessage};
use tidemark_core::engine::Engine;

use crate::sqs::{failure, response};

/// The `ChangesFailed` metric of a batch in CloudWatch Embedded Metric Format: one line per
/// bucket with failed changes (namespace `Tidemark`, dimension `Bucket`); a malformed message
/// that names no bucket counts under `-`.
pub fn changes_failed_emf(failed_by_bucket: &std::collections::BTreeMap<String, u64>, now_ms: i64) -> Vec<String> {
    failed_by_bucket
        .iter()
        .map(|(bucket, n)| {
            let bucket = if bucket.is_empty() { "-" } else { bucket.as_str() };
            serde_json::json!({
                "_aws": {"Timestamp": now_ms, "CloudWatchMetrics": [{"Namespace": "Tidemark", "Dimensions": [["Bucket"]], "Metrics": [{"Name": "ChangesFailed", "Unit": "Count"}]}]},
                "Bucket": bucket,
                "ChangesFailed": n,
            })
            .to_string()
        })
        .collect()
}

/// Delta: captures a batch of S3 change events; malformed or foreign ones, and changes whose
/// object cannot be read, are reported so SQS retries and then dead-letters them without
/// blocking the others, and counted in the `ChangesFailed` metric per bucket.
pub async fn delta_handler(engine: &Engine, event: SqsEvent) -> SqsBatchResponse {
    let msgs: Vec<DeltaMessage> = event
        .records
        .iter()
        .map(|m| DeltaMessage { id: m.message_id.clone().unwrap_or_default(), body: m.body.clone().unwrap_or_default() })
        .collect();
    match process_batch(engine, &msgs).await {
        Ok(report) => {
            tracing::info!(
                captured = report.captured,
                deleted = report.deleted,
                duplicates = report.duplicates,
                failed = report.failed.len(),
                "delta batch"
            );
            for (id, reason) in &report.failed {
                tracing::warn!(message_id = %id, %reason, "change not captured; SQS retries it, then dead-letters it");
            }
            for line in changes_failed_emf(&report.failed_by_bucket, engine.clock.now().timestamp_millis()) {
                println!("{line}");
            }
            response(report.failed.iter().map(|(id, _)| failure(id)).collect())
        }
        Err(e) => {
            tracing::error!(error = %e, "delta batch failed; every message will be retried");
            response(msgs.iter().map(|m| failure(&m.id)).collect())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_failed_is_one_emf_line_per_bucket() {
        let failed = std::collections::BTreeMap::from([("acme-data".to_string(), 2u64), (String::new(), 1)]);
        let lines = changes_failed_emf(&failed, 1_700_000_000_000);
        assert_eq!(lines.len(), 2);
        let v: Vec<serde_json::Value> = lines.iter().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!((v[0]["Bucket"].as_str(), v[0]["ChangesFailed"].as_u64()), (Some("-"), Some(1)));
        assert_eq!((v[1]["Bucket"].as_str(), v[1]["ChangesFailed"].as_u64()), (Some("acme-data"), Some(2)));
        let m = &v[1]["_aws"]["CloudWatchMetrics"][0];
        assert_eq!((m["Namespace"].as_str(), m["Metrics"][0]["Name"].as_str()), (Some("Tidemark"), Some("ChangesFailed")));
        assert!(changes_failed_emf(&Default::default(), 0).is_empty(), "no failures, no line");
    }
}
