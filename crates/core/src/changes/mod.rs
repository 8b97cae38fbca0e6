//! Continuous backup: S3 change events, delta batches and their backlog records, recovery points, reconciliation and compaction of delta segments.

pub mod backlog;
pub mod checkpoint;
pub mod compact;
pub mod delta;
pub mod events;
pub mod reconcile;
