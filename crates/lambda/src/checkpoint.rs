//! The checkpoint function's handler: seals recovery points on a schedule and publishes the RPO.

use chrono::Duration;
use serde::{Deserialize, Serialize};
use tidemark_core::changes::checkpoint;
use tidemark_core::engine::Engine;

use crate::LambdaError;

/// The checkpoint's request: which buckets to seal (the schedule's constant input).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CheckpointRequest {
    pub buckets: Vec<String>,
}

/// What the checkpoint did for one bucket.
pub use tidemark_core::changes::checkpoint::BucketCheckpoint as CheckpointResult;

/// Checkpoint: seals a point at the watermark the delta handlers' records allow.
///
/// The watermark is the late-event allowance behind the oldest change not yet handled, as the
/// delta handlers recorded it in the control table (`changes::backlog`), or behind the moment the
/// queue was seen empty. SQS's own `ApproximateAgeOfOldestMessage`, a minute or more late, is
/// read beside it as a cross-check that flags a point sealed too early. The seal itself is the
/// engine's one seal path, which `tidemark sync` uses too. The RPO is printed in CloudWatch
/// Embedded Metric Format.
pub async fn checkpoint_handler(
    engine: &Engine,
    req: CheckpointRequest,
    late_event_seconds: i64,
) -> Result<Vec<CheckpointResult>, LambdaError> {
    let evidence = checkpoint::handlers_evidence(engine).await?;
    let mut out = checkpoint::checkpoint(engine, &req.buckets, &evidence, Duration::seconds(late_event_seconds)).await?;
    let now = engine.clock.now();
    // A bucket that exists again after it was gone is seeded afresh (by listing, on the work
    // queue). A re-created bucket has no notification configuration, and the read role may not
    // change one (it is read-only by design), so a returned bucket without EventBridge
    // notifications fails this checkpoint, naming the fix, instead of silently losing its changes
    // until the daily reconciliation.
    for res in out.iter_mut().filter(|r| r.returned) {
        if !engine.source.event_notifications_enabled(&res.bucket).await? {
            res.error = Some(format!(
                "bucket {} exists again but sends no events to EventBridge, so its changes reach the vault only through the daily \
                 reconciliation: apply the source-account stack again, which turns its notifications on",
                res.bucket
            ));
        }
        let targets = tidemark_core::plan::partition::PlanTargets { objects: engine.config.target_objects, ..Default::default() };
        let seeded =
            tidemark_core::protect::seed::seed(engine, &res.bucket, "", tidemark_core::protect::seed::PlanSource::Listing(targets)).await?;
        tracing::info!(bucket = %res.bucket, run_id = %seeded.run.run_id, "the bucket exists again; seeding it afresh");
        res.note = Some(format!("the bucket exists again; seed run {} started", seeded.run.run_id));
    }
    for res in &out {
        if let Some(rpo) = res.rpo_seconds {
            crate::metrics::emit(&crate::metrics::rpo_line(&res.bucket, rpo, now.timestamp_millis()));
        }
    }
    // A source that cannot be read fails the invocation once every bucket was checkpointed, so
    // the schedule's error alarm sees it; gone and unprotected sources are no error.
    if let Some(e) = out.iter().find_map(|r| r.error.clone()) {
        return Err(LambdaError::Engine(tidemark_core::Error::port("checkpoint", e, false)));
    }
    Ok(out)
}
