//! Domain types: capture records, their locations in the vault, and object descriptions.

use std::collections::BTreeMap;

use chrono::{DateTime, SubsecRound, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// What a capture record says happened to a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CaptureKind {
    /// An object version existed: created at `event_time`, or (with `last_modified` set) its
    /// attributes changed at `event_time`.
    Put,
    /// The key was deleted: a delete marker named `version_id` was created, or (with no
    /// version id) the object of an unversioned key was removed.
    Delete,
    /// Version `version_id` (a version or a delete marker; none for the `null` version) was
    /// permanently deleted: from `event_time` on it no longer counts, so the version below it is
    /// current again. Earlier times are unchanged.
    Purge,
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
    Pack {
        pack: String,
        offset: u64,
        length: u64,
        raw_length: u64,
        codec: Codec,
        /// The pack's data key, wrapped, when the blob is encrypted (pack format version 3 with
        /// the encrypted flag); `None` for a plaintext blob, as every earlier version wrote.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        envelope: Option<Envelope>,
    },
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

/// How an encrypted pack's blobs are sealed: AES-256-GCM under one data key per pack, which the
/// key service made under `key_id` and returned wrapped (see `vault::crypt`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    /// The KMS key (ARN or id) that wrapped the data key; a restore asks it to unwrap.
    pub key_id: String,
    /// The wrapped data key (KMS's ciphertext blob), base64.
    pub wrapped_key: String,
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

/// Server-side encryption of a source object, as S3 reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sse {
    /// `AES256`, `aws:kms` or `aws:kms:dsse` (`x-amz-server-side-encryption`); for SSE-C, the
    /// customer algorithm (`x-amz-server-side-encryption-customer-algorithm`) with `customer_key`.
    pub algorithm: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kms_key_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bucket_key: Option<bool>,
    /// True for SSE-C: the key is the customer's and tidemark never holds it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub customer_key: bool,
}

impl Sse {
    /// True when S3's ETag of a single-part object is not the MD5 of its bytes (SSE-KMS, SSE-C).
    pub fn hides_md5(&self) -> bool {
        self.customer_key || self.algorithm.starts_with("aws:kms")
    }
}

/// An Object Lock setting of a source object version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectLock {
    /// `GOVERNANCE` or `COMPLIANCE`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retain_until: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub legal_hold: Option<bool>,
}

/// One grantee of an ACL grant, in S3's three spellings.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Grantee {
    /// A canonical user id.
    CanonicalUser { id: String },
    /// A predefined group (`http://acs.amazonaws.com/groups/global/AllUsers`, …).
    Group { uri: String },
    /// An e-mail address (only some Regions accept it).
    Email { address: String },
}

/// One ACL grant: a grantee and a permission (`READ`, `WRITE`, `READ_ACP`, `WRITE_ACP`, `FULL_CONTROL`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Grant {
    pub grantee: Grantee,
    pub permission: String,
}

/// An object's ACL: its owner and grants (recorded only where the bucket has ACLs enabled).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Acl {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    #[serde(default)]
    pub grants: Vec<Grant>,
}

/// A checksum as S3 reports it for an object (`x-amz-checksum-*`), base64 as S3 spells it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceChecksum {
    /// `CRC64NVME`, `CRC32`, `CRC32C`, `SHA1` or `SHA256`.
    pub algorithm: String,
    pub value: String,
    /// `FULL_OBJECT` or `COMPOSITE` (a multipart object's checksum of its parts' checksums).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
}

impl SourceChecksum {
    /// True when the value is of the whole object (not a composite of part checksums, which
    /// carry a `-N` suffix and cannot be recomputed without the part boundaries).
    pub fn is_full_object(&self) -> bool {
        self.kind.as_deref() != Some("COMPOSITE") && !self.value.contains('-')
    }
}

/// The attributes of an object version beyond its bytes, content type and user metadata: what
/// a restore writes back (ARCHITECTURE.md, "Capture record").
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectAttributes {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_control: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_encoding: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_disposition: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_language: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub website_redirect_location: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
    /// The storage class; `None` is STANDARD (S3 omits it then).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_checksum: Option<SourceChecksum>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sse: Option<Sse>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object_lock: Option<ObjectLock>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acl: Option<Acl>,
    /// Set when the version was in an archive tier when it was captured (Glacier Flexible
    /// Retrieval, Deep Archive, or an Intelligent-Tiering archive tier): its class, for example
    /// `GLACIER` or `INTELLIGENT_TIERING/ARCHIVE_ACCESS`. Such a record has no location.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub archived: Option<String>,
}

impl ObjectAttributes {
    /// True if no attribute is set.
    pub fn is_empty(&self) -> bool {
        self == &ObjectAttributes::default()
    }
}

/// The archive tier that makes `info` unreadable without a RestoreObject, if it is in one and
/// no restored copy is available: Glacier Flexible Retrieval, Deep Archive, or an
/// Intelligent-Tiering archive access tier.
pub fn archive_tier(info: &ObjectInfo) -> Option<String> {
    if info.restored {
        return None;
    }
    let class = info.attributes.storage_class.as_deref().unwrap_or("STANDARD");
    match (class, info.archive_status.as_deref()) {
        ("GLACIER" | "DEEP_ARCHIVE", _) => Some(class.to_string()),
        ("INTELLIGENT_TIERING", Some(tier @ ("ARCHIVE_ACCESS" | "DEEP_ARCHIVE_ACCESS"))) => Some(format!("{class}/{tier}")),
        _ => None,
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
    /// The version's own Last-Modified time when it differs from `event_time`: on a record that
    /// says what the version is from `event_time` on — an attribute change (tags, storage class,
    /// ACL), or an older version a permanent delete made current again, of which the catalog
    /// knew nothing before. Versions keep their place among a key's versions by Last-Modified.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_modified: Option<DateTime<Utc>>,
    /// Every other attribute of the version (absent from records of format version 1).
    #[serde(flatten)]
    pub attributes: ObjectAttributes,
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
            last_modified: None,
            attributes: ObjectAttributes::default(),
        }
    }

    /// A delete-marker record: the marker `version_id` of `key` created at `time`.
    pub fn delete_marker(
        bucket: &str,
        key: &str,
        version_id: &str,
        time: DateTime<Utc>,
        sequencer: Option<String>,
        captured_at: DateTime<Utc>,
    ) -> Self {
        let mut r = Self::delete(bucket, key, time, sequencer, captured_at);
        r.version_id = Some(version_id.to_string());
        r
    }

    /// A purge record: version `version_id` of `key` (`None`: the `null` version) was
    /// permanently deleted at `time`.
    pub fn purge(
        bucket: &str,
        key: &str,
        version_id: Option<&str>,
        time: DateTime<Utc>,
        sequencer: Option<String>,
        captured_at: DateTime<Utc>,
    ) -> Self {
        let mut r = Self::delete(bucket, key, time, sequencer, captured_at);
        r.kind = CaptureKind::Purge;
        r.version_id = version_id.map(String::from);
        r
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
    /// Attributes a HEAD or GET reports (tags and the ACL need requests of their own and are
    /// filled by the capture; a listing fills only the storage class).
    pub attributes: ObjectAttributes,
    /// How many tags the object has (`x-amz-tagging-count`); `None` when the server did not say.
    pub tag_count: Option<u32>,
    /// `x-amz-archive-status` of an Intelligent-Tiering object in an archive tier.
    pub archive_status: Option<String>,
    /// True when a restored copy of an archived object is available (`x-amz-restore` says the
    /// restore is no longer ongoing).
    pub restored: bool,
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
    fn archive_tiers_are_the_unreadable_classes() {
        let info = |class: Option<&str>, status: Option<&str>, restored: bool| ObjectInfo {
            attributes: ObjectAttributes { storage_class: class.map(String::from), ..Default::default() },
            archive_status: status.map(String::from),
            restored,
            ..Default::default()
        };
        assert_eq!(archive_tier(&info(Some("GLACIER"), None, false)).as_deref(), Some("GLACIER"));
        assert_eq!(archive_tier(&info(Some("DEEP_ARCHIVE"), None, false)).as_deref(), Some("DEEP_ARCHIVE"));
        assert_eq!(
            archive_tier(&info(Some("INTELLIGENT_TIERING"), Some("DEEP_ARCHIVE_ACCESS"), false)).as_deref(),
            Some("INTELLIGENT_TIERING/DEEP_ARCHIVE_ACCESS")
        );
        assert_eq!(archive_tier(&info(Some("INTELLIGENT_TIERING"), None, false)), None, "frequent and infrequent tiers are readable");
        assert_eq!(archive_tier(&info(Some("GLACIER_IR"), None, false)), None, "Glacier Instant Retrieval is readable");
        assert_eq!(archive_tier(&info(Some("GLACIER"), None, true)), None, "a restored copy is readable");
        assert_eq!(archive_tier(&info(None, None, false)), None);
    }

    #[test]
    fn records_of_format_version_1_parse_with_empty_attributes() {
        let v1 = r#"{"bucket":"b","key":"k","event_time":"2026-01-01T00:00:00Z","captured_at":"2026-01-01T00:00:01Z","kind":"put","size":3,"etag":"e","content_type":"text/plain"}"#;
        let r: CaptureRecord = serde_json::from_str(v1).unwrap();
        assert!(r.attributes.is_empty() && r.last_modified.is_none());
        let back = serde_json::to_string(&r).unwrap();
        assert!(!back.contains("tags") && !back.contains("last_modified"), "empty attributes are not written: {back}");
    }

    #[test]
    fn etags_lose_their_quotes() {
        assert_eq!(normalize_etag("\"abc\""), "abc");
        assert_eq!(normalize_etag("abc"), "abc");
    }
}
