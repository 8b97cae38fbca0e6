//! Continuous backup: S3 change events, delta batches, reconciliation and compaction of delta segments.

pub mod checkpoint;
pub mod compact;
pub mod delta;
pub mod events;
pub mod reconcile;
