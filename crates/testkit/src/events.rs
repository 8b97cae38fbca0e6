//! S3 change events as EventBridge delivers them, in the form AWS documents (`etag`, real version
//! ids, `deletion-type`), for tests that drive the delta handler on the fakes.

use chrono::{DateTime, SubsecRound, Utc};
use serde_json::json;

/// One S3 event to build: its detail type and what its `detail.object` says.
#[derive(Debug, Clone)]
pub struct S3Event<'a> {
    /// `Object Created`, `Object Deleted`, `Object Tags Added`, `Object Restore Completed`, …
    pub detail_type: &'a str,
    pub bucket: &'a str,
    pub key: &'a str,
    pub size: Option<u64>,
    pub etag: Option<&'a str>,
    pub version_id: Option<&'a str>,
    /// `Permanently Deleted` or `Delete Marker Created`, for `Object Deleted`.
    pub deletion_type: Option<&'a str>,
    pub sequencer: Option<&'a str>,
    pub time: DateTime<Utc>,
    /// Makes the event's `id` unique.
    pub n: u64,
}

impl<'a> S3Event<'a> {
    /// An event of `detail_type` for `bucket`/`key` at `time`, saying nothing else yet.
    pub fn new(detail_type: &'a str, bucket: &'a str, key: &'a str, time: DateTime<Utc>) -> Self {
        S3Event { detail_type, bucket, key, size: None, etag: None, version_id: None, deletion_type: None, sequencer: None, time, n: 0 }
    }

    /// The SQS message body EventBridge delivers for it.
    pub fn body(&self) -> String {
        let mut object = json!({"key": self.key});
        for (field, value) in [("etag", self.etag), ("version-id", self.version_id), ("sequencer", self.sequencer)] {
            if let Some(v) = value {
                object[field] = json!(v);
            }
        }
        if let Some(size) = self.size {
            object["size"] = json!(size);
        }
        let mut detail = json!({
            "version": "0",
            "bucket": {"name": self.bucket},
            "object": object,
            "request-id": format!("REQ{:013X}", self.n),
            "requester": "111122223333",
            "source-ip-address": "203.0.113.15",
            "reason": if self.detail_type == "Object Deleted" { "DeleteObject" } else { "PutObject" },
        });
        if let Some(d) = self.deletion_type {
            detail["deletion-type"] = json!(d);
        }
        json!({
            "version": "0",
            "id": format!("17793124-05d4-b198-2fde-{:012x}", self.n),
            "detail-type": self.detail_type,
            "source": "aws.s3",
            "account": "111122223333",
            "time": self.time.trunc_subsecs(0).to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            "region": "us-east-1",
            "resources": [format!("arn:aws:s3:::{}", self.bucket)],
            "detail": detail,
        })
        .to_string()
    }
}
