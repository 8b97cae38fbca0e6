//! Restore metrics in CloudWatch Embedded Metric Format: one JSON line per restore-queue task
//! message that restored, failed or deleted anything, with `RestoreObjects`, `RestoreBytes`,
//! `RestoreFailed`, `RestoreVerified` and `RestoreDeleted` under the dimension `SourceBucket`.
//! In Lambda the lines go to stdout, where CloudWatch Logs turns them into metrics of the
//! `Tidemark` namespace (the dashboard's restore widgets); tests give the sink a buffer.

use std::io::Write;
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use tidemark_core::control::Counters;

/// The namespace of every tidemark metric (the checkpoint's `RpoSeconds` too).
pub const NAMESPACE: &str = "Tidemark";

/// The metric names a restore line carries, in its order.
pub const RESTORE_METRICS: [&str; 5] = ["RestoreObjects", "RestoreBytes", "RestoreFailed", "RestoreVerified", "RestoreDeleted"];

/// Where the restore worker reports what each task message did.
pub trait Metrics: Send + Sync {
    /// Reports the work one message did for a restore of `source_bucket`.
    fn restore_progress(&self, source_bucket: &str, done: &Counters, at: DateTime<Utc>);
}

/// Writes EMF lines to a writer: stdout in Lambda.
pub struct Emf<W: Write + Send> {
    out: Mutex<W>,
}

impl Emf<std::io::Stdout> {
    /// EMF on stdout, as Lambda's log capture expects it.
    pub fn stdout() -> Self {
        Emf::new(std::io::stdout())
    }
}

impl<W: Write + Send> Emf<W> {
    pub fn new(out: W) -> Self {
        Emf { out: Mutex::new(out) }
    }

    /// The writer, with what was written to it.
    pub fn into_inner(self) -> W {
        self.out.into_inner().expect("metrics writer lock")
    }
}

impl<W: Write + Send> Metrics for Emf<W> {
    fn restore_progress(&self, source_bucket: &str, done: &Counters, at: DateTime<Utc>) {
        let line = restore_line(source_bucket, done, at);
        let mut out = self.out.lock().expect("metrics writer lock");
        // A metric that cannot be written must not fail the restore it describes.
        if let Err(e) = writeln!(out, "{line}").and_then(|_| out.flush()) {
            tracing::warn!(error = %e, "could not write restore metrics");
        }
    }
}

/// The EMF line of one message's restore work.
pub fn restore_line(source_bucket: &str, done: &Counters, at: DateTime<Utc>) -> Value {
    let units = ["Count", "Bytes", "Count", "Count", "Count"];
    let values = [done.objects, done.bytes, done.failed, done.verified, done.deleted];
    let mut line = json!({
        "_aws": {
            "Timestamp": at.timestamp_millis(),
            "CloudWatchMetrics": [{
                "Namespace": NAMESPACE,
                "Dimensions": [["SourceBucket"]],
                "Metrics": RESTORE_METRICS.iter().zip(units).map(|(n, u)| json!({"Name": n, "Unit": u})).collect::<Vec<_>>(),
            }],
        },
        "SourceBucket": source_bucket,
    });
    for (name, value) in RESTORE_METRICS.iter().zip(values) {
        line[*name] = json!(value);
    }
    line
}

/// What a task did between two readings of its counters.
pub(crate) fn progress(before: &Counters, after: &Counters) -> Counters {
    Counters {
        objects: after.objects.saturating_sub(before.objects),
        bytes: after.bytes.saturating_sub(before.bytes),
        failed: after.failed.saturating_sub(before.failed),
        verified: after.verified.saturating_sub(before.verified),
        deleted: after.deleted.saturating_sub(before.deleted),
        unchanged: after.unchanged.saturating_sub(before.unchanged),
        ..Counters::default()
    }
}
