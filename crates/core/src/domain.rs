//! Domain types: capture records, their locations in the vault, and object descriptions.

use std::collections::BTreeMap;

use chrono::{DateTime, SubsecRound, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Whether a capture record says an object version existed or was deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CaptureKind {
    Put,
    Delete,
}

/// How a blob's bytes are encoded inside a pack.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Codec {
    /// Stored as is.
    Raw,
    /// Compressed with zstd.
    Zstd,
}

/// A checksum of an object's content, verified on every read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checksum {
    /// The algorithm, in S3's spelling (`SHA256`).
    pub algorithm: String,
    /// The digest, lower-case hex.
    pub value: String,
}

impl Checksum {
    /// SHA-256 of the given bytes.
    pub fn sha256(data: &[u8]) -> Self {
        Checksum { algorithm: "SHA256".into(), value: hex::encode(Sha256::digest(data)) }
    }
}

/// Where a captured object's bytes live in the vault.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Location {
    /// A blob inside a pack.
    Pack { pack: String, offset: u64, length: u64, raw_length: u64, codec: Codec },
    /// A vault object of its own, copied server-side.
    Object {
        key: String,
        version_id: Option<String>,
        /// The vault object's ETag, which a restore with the same part layout reproduces.
        etag: String,
        /// The part size used for a multipart copy, if one was used.
        part_size: Option<u64>,
    },
}

/// A sortable key that orders the records of one object key in time.
pub fn order_key(r: &CaptureRecord) -> (i64, String, DateTime<Utc>) {
    (r.event_time.timestamp(), padded_sequencer(r.sequencer.as_deref()), r.captured_at)
}

/// A sequencer made comparable as a string: upper-case hex, right-padded with zeros to 64 chars.
pub fn padded_sequencer(seq: Option<&str>) -> String {
    match seq {
        None => String::new(),
        Some(s) => {
            let mut s = s.to_ascii_uppercase();
            while s.len() < 64 {
                s.push('0');
            }
            s
        }
    }
}

/// One fact about a source object: this version existed (or was deleted) at this time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaptureRecord {
    pub bucket: String,
    pub key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version_id: Option<String>,
    /// Source LastModified for a put, the event time for a delete, truncated to whole seconds.
    pub event_time: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sequencer: Option<String>,
    /// When tidemark observed the fact; breaks ties between same-second events.
    pub captured_at: DateTime<Utc>,
    pub kind: CaptureKind,
    #[serde(default)]
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checksum: Option<Checksum>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<Location>,
}

impl CaptureRecord {
    /// A delete record for `key` at `time`.
    pub fn delete(bucket: &str, key: &str, time: DateTime<Utc>, sequencer: Option<String>, captured_at: DateTime<Utc>) -> Self {
        CaptureRecord {
            bucket: bucket.into(),
            key: key.into(),
            version_id: None,
            event_time: time.trunc_subsecs(0),
            sequencer,
            captured_at,
            kind: CaptureKind::Delete,
            size: 0,
            etag: None,
            checksum: None,
            content_type: None,
            metadata: BTreeMap::new(),
            location: None,
        }
    }

    /// The record's identity for de-duplication: two records with equal identity say the same thing.
    pub fn identity(&self) -> String {
        format!(
            "{}\u{0}{}\u{0}{}\u{0}{}\u{0}{}\u{0}{:?}",
            self.key,
            self.version_id.as_deref().unwrap_or(""),
            self.etag.as_deref().unwrap_or(""),
            self.sequencer.as_deref().unwrap_or(""),
            self.event_time.timestamp(),
            self.kind
        )
    }
}

/// What S3 says about one object (HEAD, GET or a listing entry).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ObjectInfo {
    pub key: String,
    pub size: u64,
    /// The ETag without surrounding quotes.
    pub etag: String,
    pub last_modified: DateTime<Utc>,
    pub version_id: Option<String>,
    pub content_type: Option<String>,
    pub metadata: BTreeMap<String, String>,
}

/// Strips the quotes S3 puts around ETags (SeaweedFS sometimes omits them).
pub fn normalize_etag(etag: &str) -> String {
    etag.trim().trim_matches('"').to_string()
}

/// A bucket and an optional key prefix, parsed from `s3://bucket[/prefix]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Url {
    pub bucket: String,
    pub prefix: String,
}

/// Checks S3's rules for a bucket name; the error says what a valid one looks like.
pub fn check_bucket_name(bucket: &str) -> Result<(), String> {
    let valid = (3..=63).contains(&bucket.len())
        && bucket.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
        && !bucket.starts_with(['-', '.'])
        && !bucket.ends_with(['-', '.']);
    if valid {
        Ok(())
    } else {
        Err(format!("'{bucket}' is not a valid S3 bucket name (3-63 lower-case letters, digits, '-' or '.')"))
    }
}

impl std::str::FromStr for S3Url {
    type Err = crate::Error;

    fn from_str(s: &str) -> crate::Result<Self> {
        let rest = s
            .strip_prefix("s3://")
            .ok_or_else(|| crate::Error::Invalid(format!("'{s}' is not an S3 URL; expected s3://bucket[/prefix]")))?;
        let (bucket, prefix) = match rest.split_once('/') {
            Some((b, p)) => (b, p),
            None => (rest, ""),
        };
        check_bucket_name(bucket).map_err(|e| crate::Error::Invalid(format!("{e} in '{s}'")))?;
        Ok(S3Url { bucket: bucket.into(), prefix: prefix.into() })
    }
}

impl std::fmt::Display for S3Url {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.prefix.is_empty() {
            write!(f, "s3://{}", self.bucket)
        } else {
            write!(f, "s3://{}/{}", self.bucket, self.prefix)
        }
    }
}

/// A short random identifier, sortable by creation time, for packs, segments and runs.
pub fn new_id(now: DateTime<Utc>) -> String {
    let r: u64 = rand::random();
    format!("{}-{:016x}", now.format("%Y%m%dT%H%M%S%3fZ"), r)
}

/// A stable identifier derived from its parts (used where a retry must produce the same id).
pub fn stable_id(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update([0u8]);
    }
    hex::encode(&h.finalize()[..12])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_s3_urls() {
        let u: S3Url = "s3://my-bucket/a/b c".parse().unwrap();
        assert_eq!(u, S3Url { bucket: "my-bucket".into(), prefix: "a/b c".into() });
        assert_eq!("s3://bkt".parse::<S3Url>().unwrap().prefix, "");
        assert!("bkt".parse::<S3Url>().unwrap_err().to_string().contains("not an S3 URL"));
        assert!("s3://Bad_Bucket".parse::<S3Url>().unwrap_err().to_string().contains("not a valid S3 bucket name"));
    }

    #[test]
    fn etags_lose_their_quotes() {
        assert_eq!(normalize_etag("\"abc\""), "abc");
        assert_eq!(normalize_etag("abc"), "abc");
    }
}
