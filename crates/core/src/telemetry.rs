//! The span every step of the engine runs in, so that each log line names its run, step, task and source.
//!
//! A step is one unit of work a message or a schedule asks for: a seed start, a summarise or
//! plan step, a seed task, a delta batch, a checkpoint, a reconciliation, a compaction, a restore
//! step or task. Its span carries `step`, `run_id`, `task_id`, `source_bucket` and `prefix`
//! (those not known when the step begins are filled in once its records are read), and the Lambda
//! functions' log layer flattens them into every line logged inside it, beside the invocation's
//! `log_id`.

use tracing::field::Empty;

/// A span for one step named `step`, with the run, task and source left to [`record`].
pub fn step_span(step: &str) -> tracing::Span {
    tracing::info_span!("step", step = %step, run_id = Empty, task_id = Empty, source_bucket = Empty, prefix = Empty)
}

/// Fills in what the current step span did not know when it began.
pub fn record(run_id: Option<&str>, task_id: Option<&str>, source_bucket: Option<&str>, prefix: Option<&str>) {
    let span = tracing::Span::current();
    for (name, value) in [("run_id", run_id), ("task_id", task_id), ("source_bucket", source_bucket), ("prefix", prefix)] {
        if let Some(v) = value {
            span.record(name, v);
        }
    }
}

tokio::task_local! {
    /// The log id of the invocation the current task serves (the Lambda request id).
    static LOG_ID: String;
}

/// Runs `f` as part of the invocation `log_id`, so that what it records ([`crate::history`])
/// names the invocation whose log lines tell its story.
pub async fn with_log_id<F: std::future::Future>(log_id: String, f: F) -> F::Output {
    LOG_ID.scope(log_id, f).await
}

/// The log id of the invocation the current task serves, if one was set ([`with_log_id`]).
pub fn log_id() -> Option<String> {
    LOG_ID.try_with(|id| id.clone()).ok()
}
