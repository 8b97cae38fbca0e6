//! S3 change events as EventBridge delivers them (through SQS), in AWS's form and the local stack's.
//!
//! AWS spells the ETag `etag`; moto spells it `eTag`. Both are accepted. `version-id` of `"null"`
//! means an unversioned object.

use chrono::{DateTime, Utc};
use serde::Deserialize;

use crate::{Error, Result};

#[derive(Deserialize)]
struct Envelope {
    #[serde(rename = "detail-type")]
    detail_type: String,
    source: String,
    #[serde(default)]
    id: String,
    time: DateTime<Utc>,
    detail: serde_json::Value,
}

#[derive(Deserialize)]
struct Detail {
    bucket: BucketRef,
    object: ObjectRef,
    #[serde(default, rename = "deletion-type")]
    deletion_type: Option<String>,
}

#[derive(Deserialize)]
struct BucketRef {
    name: String,
}

#[derive(Deserialize)]
struct ObjectRef {
    key: String,
    #[serde(default)]
    size: Option<u64>,
    #[serde(default, alias = "eTag")]
    etag: Option<String>,
    #[serde(default, rename = "version-id")]
    version_id: Option<String>,
    #[serde(default)]
    sequencer: Option<String>,
}

/// The EventBridge detail types of S3 events the delta handler captures; an event rule that
/// routes changes to the delta queue matches these (and other types are acknowledged and dropped).
pub const CAPTURED_DETAIL_TYPES: [&str; 8] = [
    "Object Created",
    "Object Deleted",
    "Object Tags Added",
    "Object Tags Deleted",
    "Object ACL Updated",
    "Object Storage Class Changed",
    "Object Access Tier Changed",
    "Object Restore Completed",
];

/// What happened to an object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChangeKind {
    Created,
    /// `deletion_type` is `Permanently Deleted` or `Delete Marker Created` (absent on the local stack).
    Deleted {
        deletion_type: Option<String>,
    },
    /// An attribute of an existing version changed: its tags (`Object Tags Added`, `Object Tags
    /// Deleted`), its ACL (`Object ACL Updated`) or its storage class or access tier (`Object
    /// Storage Class Changed`, `Object Access Tier Changed`). `change` is the detail type.
    Attributes {
        change: String,
    },
    /// A restored copy of an archived object is readable now (`Object Restore Completed`).
    Restored,
}

/// One S3 change, parsed from an EventBridge event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangeEvent {
    pub event_id: String,
    pub bucket: String,
    pub key: String,
    pub kind: ChangeKind,
    pub time: DateTime<Utc>,
    pub size: Option<u64>,
    pub etag: Option<String>,
    pub version_id: Option<String>,
    /// True when the event named the `null` version explicitly (`"version-id": "null"`).
    pub null_version: bool,
    pub sequencer: Option<String>,
}

impl ChangeEvent {
    /// Identity for de-duplication: the same change delivered twice has the same identity.
    pub fn identity(&self) -> String {
        format!(
            "{}\u{0}{}\u{0}{}\u{0}{}\u{0}{}\u{0}{}",
            self.bucket,
            self.key,
            self.version_id.as_deref().unwrap_or(""),
            self.etag.as_deref().unwrap_or(""),
            self.sequencer.as_deref().unwrap_or(""),
            match &self.kind {
                ChangeKind::Created => format!("put@{}", self.time.timestamp()),
                ChangeKind::Deleted { .. } => format!("delete@{}", self.time.timestamp()),
                ChangeKind::Attributes { change } => format!("{change}@{}", self.time.timestamp()),
                ChangeKind::Restored => format!("restored@{}", self.time.timestamp()),
            }
        )
    }
}

/// Parses an SQS message body holding an EventBridge S3 event.
///
/// `Ok(None)` is an S3 event of a type tidemark does not capture (a restore initiated or
/// expired, an asynchronous copy…): it is acknowledged and dropped. An error means the message is malformed and goes to the dead-letter
/// queue after its retries.
pub fn parse_change(body: &str) -> Result<Option<ChangeEvent>> {
    let env: Envelope =
        serde_json::from_str(body).map_err(|e| Error::Invalid(format!("delta message is not an EventBridge event: {e}")))?;
    if env.source != "aws.s3" {
        return Err(Error::Invalid(format!("delta message has source '{}', expected aws.s3", env.source)));
    }
    let kind = match env.detail_type.as_str() {
        "Object Created" => ChangeKind::Created,
        "Object Deleted" => ChangeKind::Deleted { deletion_type: None },
        "Object Tags Added"
        | "Object Tags Deleted"
        | "Object ACL Updated"
        | "Object Storage Class Changed"
        | "Object Access Tier Changed" => ChangeKind::Attributes { change: env.detail_type.clone() },
        "Object Restore Completed" => ChangeKind::Restored,
        _ => return Ok(None),
    };
    let detail: Detail =
        serde_json::from_value(env.detail).map_err(|e| Error::Invalid(format!("{} event detail is malformed: {e}", env.detail_type)))?;
    if detail.object.key.is_empty() {
        return Err(Error::Invalid("event names an empty object key".into()));
    }
    Ok(Some(ChangeEvent {
        event_id: env.id,
        bucket: detail.bucket.name,
        key: detail.object.key,
        kind: match kind {
            ChangeKind::Deleted { .. } => ChangeKind::Deleted { deletion_type: detail.deletion_type },
            other => other,
        },
        time: env.time,
        size: detail.object.size,
        etag: detail.object.etag.map(|e| crate::domain::normalize_etag(&e)).filter(|e| !e.is_empty()),
        null_version: detail.object.version_id.as_deref() == Some("null"),
        version_id: detail.object.version_id.filter(|v| v != "null" && !v.is_empty()),
        sequencer: detail.object.sequencer.filter(|s| !s.is_empty()),
    }))
}

/// The keys an event key may stand for: as given, and form-URL-decoded if that differs.
///
/// What the documentation says (searched 2026-11-21): classic S3 notifications (SQS, SNS,
/// Lambda) URL-encode keys, and say so — "the object keyname value is URL encoded. For example,
/// 'red flower.jpg' becomes 'red+flower.jpg'"
/// (<https://docs.aws.amazon.com/AmazonS3/latest/userguide/notification-content-structure.html>).
/// The EventBridge page for the same events lists `detail.object.key` with no such note
/// (<https://docs.aws.amazon.com/AmazonS3/latest/userguide/ev-events.html>), and its examples
/// only use keys with no character that would need encoding, so AWS's documentation does not
/// settle it. The one first-hand report found is a pull request to an AWS solutions sample
/// (<https://github.com/aws-solutions-library-samples/guidance-for-medialake-on-aws/pull/21>,
/// 2026-03) which, after testing keys such as `test+b.png` and `%2B++ %20.mp3` through both
/// paths, removed the decoding of EventBridge keys and kept it for S3 notifications: EventBridge
/// keys arrive literally. moto sends them literally too.
///
/// So the literal key is tried first and is almost always right; the form-decoded key is the
/// fallback for a sender that does encode. A key whose literal and decoded forms both exist in
/// the bucket resolves to the literal one.
pub fn key_candidates(key: &str) -> Vec<String> {
    let mut out = vec![key.to_string()];
    if key.contains('%') || key.contains('+') {
        let plus = key.replace('+', " ");
        if let Ok(decoded) = percent_encoding::percent_decode_str(&plus).decode_utf8() {
            if decoded != key {
                out.push(decoded.into_owned());
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const AWS_CREATED: &str = r#"{"version":"0","id":"17793124-05d4-b198-2fde-7ededc63b103","detail-type":"Object Created","source":"aws.s3","account":"111122223333","time":"2021-11-12T00:00:00Z","region":"ca-central-1","resources":["arn:aws:s3:::amzn-s3-demo-bucket1"],"detail":{"version":"0","bucket":{"name":"amzn-s3-demo-bucket1"},"object":{"key":"example-key","size":5,"etag":"b1946ac92492d2347c6235b4d2611184","version-id":"IYV3p45BT0ac8hjHg1houSdS1a.Mro8e","sequencer":"617f08299329d189"},"request-id":"N4N7GDK58NMKJ12R","requester":"123456789012","source-ip-address":"1.2.3.4","reason":"PutObject"}}"#;
    const MOTO_CREATED: &str = r#"{"version":"0","id":"17793124-05d4-b198-2fde-7ededc63b103","detail-type":"Object Created","source":"aws.s3","account":"123456789012","time":"2026-11-21T10:00:01Z","region":"us-east-1","resources":["arn:aws:s3:::b"],"detail":{"version":"0","bucket":{"name":"b"},"object":{"key":"dir/hello.txt","size":5,"eTag":"5d41402abc4b2a76b9719d911017c592","version-id":"null","sequencer":"617f08299329d189"},"request-id":"N4N7GDK58NMKJ12R","requester":"123456789012","source-ip-address":"1.2.3.4","reason":"ObjectCreated"}}"#;
    const AWS_DELETED: &str = r#"{"version":"0","id":"2ee9cc15-d022-99ea-1fb8-1b1bac4850f9","detail-type":"Object Deleted","source":"aws.s3","account":"111122223333","time":"2021-11-12T00:00:00Z","region":"ca-central-1","resources":["arn:aws:s3:::amzn-s3-demo-bucket1"],"detail":{"version":"0","bucket":{"name":"amzn-s3-demo-bucket1"},"object":{"key":"example-key","etag":"d41d8cd98f00b204e9800998ecf8427e","version-id":"1QW9g1Z99LUNbvaaYVpW9xDlOLU.qxgF","sequencer":"617f0837b476e463"},"request-id":"0BH729840619AG5K","requester":"123456789012","source-ip-address":"1.2.3.4","reason":"DeleteObject","deletion-type":"Delete Marker Created"}}"#;

    #[test]
    fn parses_both_etag_spellings_and_deletes() {
        let a = parse_change(AWS_CREATED).unwrap().unwrap();
        assert_eq!(a.etag.as_deref(), Some("b1946ac92492d2347c6235b4d2611184"));
        assert_eq!(a.version_id.as_deref(), Some("IYV3p45BT0ac8hjHg1houSdS1a.Mro8e"));
        assert_eq!(a.kind, ChangeKind::Created);
        let m = parse_change(MOTO_CREATED).unwrap().unwrap();
        assert_eq!(m.etag.as_deref(), Some("5d41402abc4b2a76b9719d911017c592"));
        assert_eq!(m.version_id, None, "\"null\" means unversioned");
        let d = parse_change(AWS_DELETED).unwrap().unwrap();
        assert_eq!(d.kind, ChangeKind::Deleted { deletion_type: Some("Delete Marker Created".into()) });
        assert_ne!(a.identity(), d.identity());
    }

    #[test]
    fn other_types_are_ignored_and_garbage_is_an_error() {
        let tags = AWS_CREATED.replace("Object Created", "Object Tags Added");
        assert_eq!(parse_change(&tags).unwrap().unwrap().kind, ChangeKind::Attributes { change: "Object Tags Added".into() });
        let initiated = AWS_CREATED.replace("Object Created", "Object Restore Initiated");
        assert_eq!(parse_change(&initiated).unwrap(), None);
        let completed = AWS_CREATED.replace("Object Created", "Object Restore Completed");
        assert_eq!(parse_change(&completed).unwrap().unwrap().kind, ChangeKind::Restored);
        assert!(parse_change("not json").unwrap_err().to_string().contains("not an EventBridge event"));
        let other = AWS_CREATED.replace("aws.s3", "aws.ec2");
        assert!(parse_change(&other).unwrap_err().to_string().contains("aws.ec2"));
        let nokey = AWS_CREATED.replace("\"key\":\"example-key\",", "");
        assert!(parse_change(&nokey).unwrap_err().to_string().contains("malformed"));
    }

    #[test]
    fn key_candidates_decode_form_encoding() {
        assert_eq!(key_candidates("a/b.txt"), vec!["a/b.txt"]);
        assert_eq!(key_candidates("red+flower.jpg"), vec!["red+flower.jpg", "red flower.jpg"]);
        assert_eq!(key_candidates("100%25"), vec!["100%25", "100%"]);
    }
}
