//! Typed engine configuration, read once at start-up by binaries and passed to handlers.

use serde::{Deserialize, Serialize};

/// Tunables of the engine. Defaults follow DESIGN §4 and §7.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EngineConfig {
    /// The vault bucket every capture goes to.
    pub vault_bucket: String,
    /// Objects smaller than this are read and packed; larger ones are copied server-side.
    pub small_object_threshold: u64,
    /// A pack is closed once it holds this many bytes.
    pub pack_target_bytes: u64,
    /// Part size for streaming packs with multipart upload (S3 needs at least 5 MiB).
    pub pack_part_bytes: u64,
    /// Large objects at or above this size are copied with UploadPartCopy instead of CopyObject.
    pub multipart_copy_threshold: u64,
    /// Part size of a multipart server-side copy.
    pub copy_part_bytes: u64,
    /// Requests a worker keeps in flight against the source.
    pub concurrency: usize,
    /// The most objects one batch (one pack and one segment) covers.
    pub batch_objects: usize,
    /// How long a task lease lasts without a checkpoint.
    pub lease_seconds: i64,
    /// Whether blobs are zstd-compressed when that makes them smaller.
    pub compress: bool,
}

impl EngineConfig {
    /// The defaults for a vault bucket.
    pub fn new(vault_bucket: impl Into<String>) -> Self {
        EngineConfig {
            vault_bucket: vault_bucket.into(),
            small_object_threshold: 1024 * 1024,
            pack_target_bytes: 64 * 1024 * 1024,
            pack_part_bytes: 8 * 1024 * 1024,
            multipart_copy_threshold: 5 * 1024 * 1024 * 1024,
            copy_part_bytes: 512 * 1024 * 1024,
            concurrency: 16,
            batch_objects: 10_000,
            lease_seconds: 60,
            compress: true,
        }
    }

    /// Checks the values against S3's limits so a bad setting fails at start-up, not mid-run.
    pub fn validate(&self) -> crate::Result<()> {
        const MIB5: u64 = 5 * 1024 * 1024;
        let bad = |m: String| Err(crate::Error::Invalid(m));
        if self.vault_bucket.is_empty() {
            return bad("vault bucket is empty".into());
        }
        if self.pack_part_bytes < MIB5 {
            return bad(format!("pack part size {} is below S3's 5 MiB minimum part size", self.pack_part_bytes));
        }
        if self.copy_part_bytes < MIB5 {
            return bad(format!("copy part size {} is below S3's 5 MiB minimum part size", self.copy_part_bytes));
        }
        if self.multipart_copy_threshold < self.small_object_threshold {
            return bad("multipart copy threshold must not be below the small-object threshold".into());
        }
        if self.concurrency == 0 || self.batch_objects == 0 {
            return bad("concurrency and batch size must be at least 1".into());
        }
        Ok(())
    }
}
