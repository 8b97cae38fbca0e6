//! The engine's error type: one enum, every variant classed as transient or permanent.

use chrono::{DateTime, Utc};

fn rfc(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// Result alias used throughout the engine.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in the engine.
///
/// Adapters map their own failures into [`Error::Port`], saying whether a retry may help, so
/// that handlers can decide between retrying a message and dead-lettering it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A bucket named by the operator or the configuration does not exist.
    #[error("bucket {bucket} does not exist (or is not reachable with these credentials)")]
    NoSuchBucket { bucket: String },
    /// A port (S3, SQS, DynamoDB) failed.
    #[error("{operation} failed: {message}")]
    Port { operation: String, message: String, transient: bool },
    /// Input from an operator or a message was not acceptable.
    #[error("{0}")]
    Invalid(String),
    /// Stored data (a pack, a segment, a recovery point) failed to parse or verify.
    #[error("corrupt {what}: {detail}")]
    Corrupt { what: String, detail: String },
    /// The requested time is later than the newest sealed recovery point.
    #[error("as-of time {} is after the latest recovery point; the latest recoverable time is {}", rfc(requested), rfc(latest))]
    AfterLatestPoint { requested: DateTime<Utc>, latest: DateTime<Utc> },
    /// The requested time is earlier than protection began.
    #[error(
        "as-of time {} is before the first recovery point of s3://{bucket} ({}); recoverable times run from {} to {}",
        rfc(requested),
        rfc(first),
        rfc(first),
        rfc(latest)
    )]
    BeforeFirstPoint { bucket: String, requested: DateTime<Utc>, first: DateTime<Utc>, latest: DateTime<Utc> },
    /// No recovery point has been sealed for the bucket yet.
    #[error(
        "no recovery point has been sealed for s3://{bucket} in vault {vault}; run `tidemark protect --wait` or `tidemark sync` first"
    )]
    NoRecoveryPoint { bucket: String, vault: String },
    /// Another worker holds or took the task's lease; this worker must stop touching it.
    #[error("lease on task {task_id} was lost to another worker")]
    LeaseLost { task_id: String },
    /// Bytes read back did not match the checksum recorded at capture time.
    #[error("checksum mismatch for {key}: expected {expected}, got {actual}")]
    ChecksumMismatch { key: String, expected: String, actual: String },
    /// An S3 Inventory report (its manifest or a data file) is missing, corrupt or malformed.
    ///
    /// `file` is the key of the manifest or data file; `line` is the 1-based CSV line where the
    /// problem was found, when there is one (Parquet rows are named in `detail`).
    #[error("inventory {file}{}: {detail}", line.map(|l| format!(", line {l}")).unwrap_or_default())]
    Inventory { file: String, line: Option<u64>, detail: String },
    /// The key service could not make or unwrap a data key with `key_id` (unknown, disabled, not
    /// allowed, not the key that wrapped it, or unreachable).
    #[error("KMS key {key_id} cannot be used to {operation}: {detail}")]
    Key { key_id: String, operation: String, detail: String, transient: bool },
    /// S3 answered `503 SlowDown` (or another throttling reply) for a request under `prefix`.
    ///
    /// It is kept apart from [`Error::Port`] so that the per-prefix scheduler can count it as a
    /// throttle observation; retrying later (at a lower rate) is expected to succeed.
    #[error("{operation} was throttled by S3 (503 SlowDown) on prefix {prefix:?}")]
    Throttled { operation: String, prefix: String },
    /// The bytes read from the source do not match what S3 says about them (its MD5 ETag or an
    /// `x-amz-checksum-*` value): damaged in transit, or changed under the read. Transient: the
    /// read is retried, and nothing is captured from it.
    #[error("source bytes of s3://{bucket}/{key} do not match their {what}: expected {expected}, got {actual}")]
    SourceMismatch { bucket: String, key: String, what: String, expected: String, actual: String },
    /// The object is in an archive tier (Glacier Flexible Retrieval, Deep Archive, an
    /// Intelligent-Tiering archive tier) and cannot be read until it is restored
    /// (`InvalidObjectState`).
    #[error("s3://{bucket}/{key} is archived and cannot be read before a RestoreObject")]
    Archived { bucket: String, key: String },
}

impl Error {
    /// True when retrying the same operation later may succeed.
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Port { transient, .. } => *transient,
            Error::Key { transient, .. } => *transient,
            Error::LeaseLost { .. } => true,
            Error::Throttled { .. } => true,
            Error::SourceMismatch { .. } => true,
            // A report is rewritten only by the next inventory run, so retrying the same files
            // cannot help; source read failures arrive as `Port` errors with their own class.
            Error::Inventory { .. } => false,
            _ => false,
        }
    }

    /// Builds a port error; adapters use this to report failures.
    pub fn port(operation: impl Into<String>, message: impl Into<String>, transient: bool) -> Self {
        Error::Port { operation: operation.into(), message: message.into(), transient }
    }

    /// Builds a key service error naming the key; adapters use this to report KMS failures.
    pub fn key(key_id: impl Into<String>, operation: impl Into<String>, detail: impl Into<String>, transient: bool) -> Self {
        Error::Key { key_id: key_id.into(), operation: operation.into(), detail: detail.into(), transient }
    }

    /// Builds a corruption error for stored data.
    pub fn corrupt(what: impl Into<String>, detail: impl Into<String>) -> Self {
        Error::Corrupt { what: what.into(), detail: detail.into() }
    }
}
