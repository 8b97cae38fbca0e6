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
    let out = checkpoint::checkpoint(engine, &req.buckets, &evidence, Duration::seconds(late_event_seconds)).await?;
    let now = engine.clock.now();
    for res in &out {
        if let Some(rpo) = res.rpo_seconds {
            crate::metrics::emit(&crate::metrics::rpo_line(&res.bucket, rpo, now.timestamp_millis()));
        }
    }
    Ok(out)
}
