//! The functions' metrics in CloudWatch Embedded Metric Format (EMF): JSON lines on stdout that
//! CloudWatch Logs turns into metrics of the namespace `TIDEMARK_METRICS_NAMESPACE` (`Tidemark`).
//!
//! * restore: one line per restore-queue task message that restored, failed or deleted anything,
//!   with `RestoreObjects`, `RestoreBytes`, `RestoreFailed`, `RestoreVerified` and
//!   `RestoreDeleted` under the dimension `SourceBucket` (tests give the sink a buffer);
//! * worker, delta and the seeder's reconciliation: `ObjectsCaptured` and `BytesCaptured` per
//!   `Bucket`, and `SlowDown503` per `Bucket` and `Prefix` (the source's throttles as the
//!   scheduler saw them), from the process tally ([`tidemark_core::tally`]) after each invocation;
//! * checkpoint: `RpoSeconds` per `Bucket`; delta: `ChangesFailed` per `Bucket`.
//!
//! The dashboard and the alarms query exactly these names and dimensions; a test in
//! crates/lambda/tests/metrics_moto.rs checks both directions.

use std::io::Write;
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use tidemark_core::control::Counters;

/// The namespace of every tidemark metric unless `TIDEMARK_METRICS_NAMESPACE` names another.
pub const DEFAULT_NAMESPACE: &str = "Tidemark";

/// The namespace set at start-up. It is process-wide because a function process has exactly one
/// configuration and the handlers that print metrics do not otherwise take it.
static NAMESPACE: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// Sets the namespace of every metric this process prints (the first call wins: start-up).
pub fn set_namespace(namespace: &str) {
    let _ = NAMESPACE.set(namespace.to_string());
}

/// The namespace metrics are printed in.
pub fn namespace() -> &'static str {
    NAMESPACE.get().map_or(DEFAULT_NAMESPACE, String::as_str)
}

/// The metric names of the capture lines (worker, delta, reconciliation).
pub const CAPTURE_METRICS: [&str; 2] = ["ObjectsCaptured", "BytesCaptured"];

/// One EMF line: the metrics (name, unit, value) under one dimension set, at `at_ms`.
pub fn emf_line(dimensions: &[(&str, &str)], metrics: &[(&str, &str, Value)], at_ms: i64) -> Value {
    let mut line = json!({
        "_aws": {
            "Timestamp": at_ms,
            "CloudWatchMetrics": [{
                "Namespace": namespace(),
                "Dimensions": [dimensions.iter().map(|(k, _)| *k).collect::<Vec<_>>()],
                "Metrics": metrics.iter().map(|(n, u, _)| json!({"Name": n, "Unit": u})).collect::<Vec<_>>(),
            }],
        },
    });
    for (k, v) in dimensions {
        line[*k] = json!(v);
    }
    for (n, _, v) in metrics {
        line[*n] = v.clone();
    }
    line
}

/// The capture lines of a tally: objects and bytes per bucket, throttles per bucket and prefix.
pub fn capture_lines(tally: &tidemark_core::tally::Tally, at_ms: i64) -> Vec<Value> {
    let mut out = Vec::new();
    for (bucket, (objects, bytes)) in &tally.captured {
        let m = [(CAPTURE_METRICS[0], "Count", json!(objects)), (CAPTURE_METRICS[1], "Bytes", json!(bytes))];
        out.push(emf_line(&[("Bucket", bucket)], &m, at_ms));
    }
    for ((bucket, prefix), n) in &tally.throttles {
        out.push(emf_line(&[("Bucket", bucket), ("Prefix", prefix)], &[("SlowDown503", "Count", json!(n))], at_ms));
    }
    out
}

/// Lines printed since [`record_printed`] was called, for tests (stdout is theirs to capture).
static PRINTED: std::sync::Mutex<Option<Vec<Value>>> = std::sync::Mutex::new(None);

/// Prints one EMF line on stdout: the one way the handlers' metrics leave the process.
pub fn emit(line: &Value) {
    println!("{line}");
    if let Some(lines) = PRINTED.lock().unwrap_or_else(|p| p.into_inner()).as_mut() {
        lines.push(line.clone());
    }
}

/// Starts keeping a copy of every line [`emit`] prints (tests read them with [`printed`]).
pub fn record_printed() {
    PRINTED.lock().unwrap_or_else(|p| p.into_inner()).get_or_insert_with(Vec::new);
}

/// The lines printed since [`record_printed`], leaving the record empty.
pub fn printed() -> Vec<Value> {
    PRINTED.lock().unwrap_or_else(|p| p.into_inner()).as_mut().map(std::mem::take).unwrap_or_default()
}

/// Prints what this process captured and was throttled since the last call (end of an invocation).
pub fn print_capture_tally(at_ms: i64) {
    for line in capture_lines(&tidemark_core::tally::take(), at_ms) {
        emit(&line);
    }
}

/// The checkpoint's RPO line for one bucket.
pub fn rpo_line(bucket: &str, rpo_seconds: impl serde::Serialize, at_ms: i64) -> Value {
    emf_line(&[("Bucket", bucket)], &[("RpoSeconds", "Seconds", json!(rpo_seconds))], at_ms)
}

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
    let metrics: Vec<(&str, &str, Value)> = RESTORE_METRICS.iter().zip(units).zip(values).map(|((n, u), v)| (*n, u, json!(v))).collect();
    emf_line(&[("SourceBucket", source_bucket)], &metrics, at.timestamp_millis())
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
