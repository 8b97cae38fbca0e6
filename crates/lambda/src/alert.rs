//! The alert function's handler: on a schedule, one alert per dead-lettered message, published to the SNS topic.
//!
//! The function sweeps every dead-letter queue (work, delta, restore) with
//! `tidemark_core::alert::sweep`: it reads each message without deleting it, publishes an alert
//! for each message not alerted before, and leaves the message on its queue to be redriven once
//! the cause is fixed. It is deliberately not an SQS event source of those queues: an event
//! source deletes every message its function handled, and the dead letters would be lost.

use tidemark_core::alert::{self, SweepReport};
use tidemark_core::engine::Engine;
use tidemark_core::ports::Notifier;

use crate::LambdaError;

/// Sweeps `dead_letter_queues` and publishes their new alerts to `topic`. A sweep that could not
/// publish every alert fails the invocation (its error alarm), after every queue was read.
pub async fn alert_handler(
    engine: &Engine,
    notifier: &dyn Notifier,
    topic: &str,
    dead_letter_queues: &[String],
) -> Result<SweepReport, LambdaError> {
    if dead_letter_queues.is_empty() {
        return Err(LambdaError::Config("TIDEMARK_DEAD_LETTER_QUEUE_URLS names no queue to sweep".into()));
    }
    let report = alert::sweep(engine, notifier, topic, dead_letter_queues).await?;
    tracing::info!(published = report.published, already_alerted = report.already_alerted, "dead-letter queues swept");
    Ok(report)
}
