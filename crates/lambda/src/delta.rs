//! The delta function's handler: a batch of S3 change events from the delta queue.

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use chrono::DateTime;
use tidemark_core::changes::backlog::{self, Received};
use tidemark_core::engine::Engine;

use crate::sqs::{failure, response};

/// The `ChangesFailed` metric of a batch in CloudWatch Embedded Metric Format: one line per
/// bucket with failed changes (the metrics namespace, dimension `Bucket`); a malformed message
/// that names no bucket counts under `-`.
pub fn changes_failed_emf(failed_by_bucket: &std::collections::BTreeMap<String, u64>, now_ms: i64) -> Vec<serde_json::Value> {
    failed_by_bucket
        .iter()
        .map(|(bucket, n)| {
            let bucket = if bucket.is_empty() { "-" } else { bucket.as_str() };
            crate::metrics::emf_line(&[("Bucket", bucket)], &[("ChangesFailed", "Count", serde_json::json!(n))], now_ms)
        })
        .collect()
}

/// One SQS record as the backlog records it: its SentTimestamp and receive count come from the
/// record's attributes, which the event source mapping always fills.
fn received(m: &SqsMessage) -> Received {
    let attr = |name: &str| m.attributes.get(name).and_then(|v| v.parse::<i64>().ok());
    Received {
        id: m.message_id.clone().unwrap_or_default(),
        body: m.body.clone().unwrap_or_default(),
        sent_at: attr("SentTimestamp").and_then(DateTime::from_timestamp_millis),
        receive_count: attr("ApproximateReceiveCount").map_or(1, |n| n.clamp(1, u32::MAX as i64) as u32),
    }
}

/// Delta: captures a batch of S3 change events, recording the batch for the checkpoint's
/// watermark (`changes::backlog`); malformed or foreign ones, and changes whose object cannot be
/// read, are reported so SQS retries and then dead-letters them without blocking the others, and
/// counted in the `ChangesFailed` metric per bucket.
pub async fn delta_handler(engine: &Engine, event: SqsEvent) -> SqsBatchResponse {
    let msgs: Vec<Received> = event.records.iter().map(received).collect();
    match backlog::handle(engine, &msgs).await {
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
                crate::metrics::emit(&line);
            }
            crate::metrics::print_capture_tally(engine.clock.now().timestamp_millis());
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
        let v = lines;
        assert_eq!((v[0]["Bucket"].as_str(), v[0]["ChangesFailed"].as_u64()), (Some("-"), Some(1)));
        assert_eq!((v[1]["Bucket"].as_str(), v[1]["ChangesFailed"].as_u64()), (Some("acme-data"), Some(2)));
        let m = &v[1]["_aws"]["CloudWatchMetrics"][0];
        assert_eq!((m["Namespace"].as_str(), m["Metrics"][0]["Name"].as_str()), (Some("Tidemark"), Some("ChangesFailed")));
        assert!(changes_failed_emf(&Default::default(), 0).is_empty(), "no failures, no line");
    }
}
