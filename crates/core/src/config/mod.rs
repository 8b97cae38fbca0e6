//! Typed engine configuration, built once at start-up from the configuration table and passed to handlers.

pub mod settings;

use serde::{Deserialize, Serialize};

/// Tunables of the engine, with the defaults of a deployment.
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
    /// Objects per partition when a seed run is planned (a seed request may ask for another).
    #[serde(default = "default_target_objects")]
    pub target_objects: u64,
    /// The most objects one restore task covers.
    #[serde(default = "default_restore_task_objects")]
    pub restore_task_objects: u64,
    /// The most packed bytes one restore task covers (large objects are copied server-side).
    #[serde(default = "default_restore_task_bytes")]
    pub restore_task_bytes: u64,
    /// How long a task lease lasts without a checkpoint.
    pub lease_seconds: i64,
    /// Whether blobs are zstd-compressed when that makes them smaller.
    pub compress: bool,
    /// The per-prefix rate controller, when the operator set a ceiling; `None` admits every task
    /// at once and paces nothing (the behaviour before the scheduler existed).
    #[serde(default)]
    pub scheduler: Option<crate::scheduler::ControllerConfig>,
    /// How long a seed plan step works before it hands the rest to a fresh message, so that
    /// no invocation nears Lambda's 15-minute limit however many tasks a plan makes.
    #[serde(default = "default_step_seconds")]
    pub step_seconds: u64,
    /// Seed every version and delete marker of a versioned bucket (ListObjectVersions), not only
    /// the current versions; the catalog then holds every version that existed at the seed.
    #[serde(default)]
    pub all_versions: bool,
    /// Capture each object's ACL where the bucket has ACLs enabled (one GetObjectAcl per object).
    #[serde(default = "default_true")]
    pub capture_acls: bool,
    /// What to do with objects found in an archive tier.
    #[serde(default)]
    pub archived: ArchivedPolicy,
    /// The vault's KMS key (ARN or id): packs are encrypted under data keys it wraps, and every
    /// vault write names it for SSE-KMS. `None` writes plaintext packs, as builds before
    /// encryption did, with the bucket's default encryption.
    #[serde(default)]
    pub kms_key_id: Option<String>,
}

/// What capture does with an object in an archive tier (Glacier Flexible Retrieval, Deep
/// Archive, an Intelligent-Tiering archive tier), which cannot be read until restored.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "policy")]
pub enum ArchivedPolicy {
    /// Record it as archived with its class, count it, and skip its bytes.
    #[default]
    Skip,
    /// Record it as archived and ask S3 to restore it for `days` days (RestoreObject), so that
    /// the restore's completion event (or reconciliation) captures its bytes.
    Restore { days: u32 },
}

impl ArchivedPolicy {
    /// Parses the configuration's spelling: `skip`, or `restore` with the days a restored copy lasts.
    pub fn parse(policy: &str, days: u64) -> crate::Result<Self> {
        match policy.trim() {
            "skip" => Ok(ArchivedPolicy::Skip),
            "restore" if (1..=30_000).contains(&days) => Ok(ArchivedPolicy::Restore { days: days as u32 }),
            "restore" => Err(crate::Error::Invalid(format!("archive restore days {days} is not between 1 and 30000"))),
            other => Err(crate::Error::Invalid(format!("archived-object policy '{other}' is not one of: skip, restore"))),
        }
    }
}

fn default_true() -> bool {
    true
}

fn default_step_seconds() -> u64 {
    settings::Settings::default().step_seconds
}

fn default_target_objects() -> u64 {
    settings::Settings::default().target_objects
}

fn default_restore_task_objects() -> u64 {
    settings::Settings::default().restore_task_objects
}

fn default_restore_task_bytes() -> u64 {
    settings::Settings::default().restore_task_bytes
}

impl EngineConfig {
    /// The defaults of the configuration table for a vault bucket.
    pub fn new(vault_bucket: impl Into<String>) -> Self {
        settings::Settings::default().engine_config_unchecked(&vault_bucket.into())
    }

    /// The server-side encryption every vault write names: SSE-KMS with the vault's key, when
    /// there is one (the vault bucket's policy refuses any other key).
    pub fn vault_sse(&self) -> Option<crate::domain::Sse> {
        self.kms_key_id.as_ref().map(|k| crate::domain::Sse {
            algorithm: "aws:kms".into(),
            kms_key_id: Some(k.clone()),
            bucket_key: None,
            customer_key: false,
        })
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
        if let Some(s) = &self.scheduler {
            s.validate()?;
        }
        Ok(())
    }

    /// The scheduler configuration for an operator's ceiling (requests per second per prefix,
    /// application and backup together) and the backup's share of it; the other controller
    /// settings keep their defaults, except that the starting rate is capped by the ceiling and
    /// a deferral lasts at most one claim lease: a claim that is not renewed lapses within a
    /// lease, so after that long the prefix's room has changed and is worth asking about again.
    pub fn scheduler_for(ceiling_rps: f64, backup_share: f64) -> crate::scheduler::ControllerConfig {
        let defaults = crate::scheduler::ControllerConfig::default();
        let cap = ceiling_rps * backup_share;
        crate::scheduler::ControllerConfig {
            ceiling_rps,
            backup_share,
            initial_rps: defaults.initial_rps.min(cap),
            min_rps: defaults.min_rps.min(cap),
            max_defer_ms: defaults.max_defer_ms.min(defaults.lease_ms),
            ..defaults
        }
    }

    /// The rate one worker asks for on a prefix: what its concurrency can drive, assuming about
    /// 10 ms per small-object request, but at most a quarter of what the backup may send to one
    /// prefix, so that a hot prefix is always shared by several workers and one slow worker never
    /// holds all of it.
    pub fn want_rps(&self) -> f64 {
        let cap = self.scheduler.as_ref().map_or(f64::INFINITY, |s| s.cap_rps());
        (self.concurrency.max(1) as f64 * 100.0).min(cap / 4.0)
    }
}
