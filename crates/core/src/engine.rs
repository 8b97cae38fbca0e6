//! The engine context handed to every handler: ports, configuration and queue names.

use std::sync::Arc;

use crate::config::EngineConfig;
use crate::ports::{Clock, ControlStore, KeyService, ObjectStore, Queue};

/// Queue URLs the handlers send to and receive from.
#[derive(Debug, Clone, Default)]
pub struct QueueUrls {
    /// Seed and capture tasks.
    pub work: String,
    /// S3 change events (EventBridge → SQS).
    pub delta: String,
    /// Restore steps and restore tasks.
    pub restore: String,
}

/// Everything a handler needs, built once per process (or per Lambda container).
#[derive(Clone)]
pub struct Engine {
    /// S3 as seen through the source account's read-only role.
    pub source: Arc<dyn ObjectStore>,
    /// S3 as seen from the vault account.
    pub vault: Arc<dyn ObjectStore>,
    pub control: Arc<dyn crate::ports::ControlStore>,
    pub queue: Arc<dyn Queue>,
    pub clock: Arc<dyn Clock>,
    /// The key service (KMS) that makes and unwraps the data keys of encrypted packs.
    pub keys: Arc<dyn KeyService>,
    pub config: EngineConfig,
    pub queues: QueueUrls,
}

impl Engine {
    /// Writes records as a new index segment of `bucket` into this engine's vault, with the
    /// vault's configured encryption (`vault::segment::write`).
    pub async fn write_segment(
        &self,
        bucket: &str,
        kind: crate::vault::segment::SegmentKind,
        records: Vec<crate::domain::CaptureRecord>,
        now: chrono::DateTime<chrono::Utc>,
    ) -> crate::Result<crate::vault::segment::SegmentMeta> {
        crate::vault::segment::write(self.vault.as_ref(), &self.config.vault_bucket, bucket, kind, records, now, self.config.vault_sse())
            .await
    }

    /// Typed control-state access for this engine's vault.
    pub fn control(&self) -> crate::control::Control<'_> {
        crate::control::Control::new(self.control.as_ref() as &dyn ControlStore, &self.config.vault_bucket)
    }
}
