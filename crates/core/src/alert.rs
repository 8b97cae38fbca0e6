//! Alerts that say what happened: one per dead-lettered message, composed from the message itself, the run's history and the bucket's failures.
//!
//! An alert names the step that failed and its error, quotes its input (the message body,
//! truncated, with where the whole one is: the dead-letter queue and the message id, which SQS
//! keeps when it moves a message there), lists the run's preceding steps with their outcomes,
//! and gives the log id with a ready CloudWatch Logs Insights query over the JSON logs
//! (`tidemark_lambda::logging`). Everything it reads is best effort: a message that parses as
//! nothing still gets an alert saying so.

use serde::Serialize;

use crate::engine::Engine;
use crate::history::{self, StepState};
use crate::protocol::messages::{parse_restore_message, parse_work_message, RestoreMessage, WorkMessage};
use crate::Result;

/// How much of a message body an alert quotes.
pub const INPUT_QUOTE_BYTES: usize = 2048;

/// How many of the run's preceding steps an alert lists (the latest ones).
pub const PRECEDING_STEPS: usize = 20;

/// One earlier step of the run, as an alert lists it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct StepOutcome {
    pub name: String,
    pub state: StepState,
    pub started_at: chrono::DateTime<chrono::Utc>,
    pub task_id: Option<String>,
    pub error: Option<String>,
}

/// Everything an alert says.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Alert {
    /// `seed task`, `restore plan`, `delta batch`, …, or `unknown` for a body that is no message.
    pub step: String,
    pub run_id: Option<String>,
    pub task_id: Option<String>,
    pub source_bucket: Option<String>,
    pub error: String,
    pub attempts: Option<u32>,
    /// The message body, cut at [`INPUT_QUOTE_BYTES`] (on a character boundary).
    pub input: String,
    pub input_truncated: bool,
    pub input_bytes: usize,
    /// Where the whole input is.
    pub input_location: String,
    pub preceding_steps: Vec<StepOutcome>,
    pub log_id: Option<String>,
    /// A CloudWatch Logs Insights query for every log line of the failed invocation (or, without
    /// a log id, of the run).
    pub logs_insights_query: Option<String>,
    /// The runbook section for this step.
    pub runbook: String,
}

fn quote(body: &str) -> (String, bool) {
    if body.len() <= INPUT_QUOTE_BYTES {
        return (body.to_string(), false);
    }
    let mut cut = INPUT_QUOTE_BYTES;
    while !body.is_char_boundary(cut) {
        cut -= 1;
    }
    (body[..cut].to_string(), true)
}

/// The Logs Insights query for lines whose `field` is `value`.
pub fn insights_query(field: &str, value: &str) -> String {
    format!(
        "fields @timestamp, level, step, run_id, task_id, source_bucket, message, error | filter {field} = \"{}\" | sort @timestamp asc | limit 500",
        value.replace('"', "\\\"")
    )
}

/// Composes the alert for one dead-lettered message `message_id` with `body`, found on `dlq`.
pub async fn compose(engine: &Engine, dlq: &str, message_id: &str, body: &str) -> Result<Alert> {
    let (input, input_truncated) = quote(body);
    let mut alert = Alert {
        step: "unknown".into(),
        run_id: None,
        task_id: None,
        source_bucket: None,
        error: String::new(),
        attempts: None,
        input,
        input_truncated,
        input_bytes: body.len(),
        input_location: format!("message {message_id} on the dead-letter queue {dlq}"),
        preceding_steps: Vec::new(),
        log_id: None,
        logs_insights_query: None,
        runbook: String::new(),
    };
    let (step, run_id, task_id) = if let Ok(m) = parse_work_message(body) {
        match &m {
            WorkMessage::Task(t) => ("seed task".to_string(), Some(t.run_id.clone()), Some(t.task_id.clone())),
            WorkMessage::Step(s) => (format!("seed {:?}", s.step).to_lowercase(), Some(s.run_id.clone()), None),
        }
    } else if let Ok(m) = parse_restore_message(body) {
        match &m {
            RestoreMessage::Task(t) => ("restore task".to_string(), Some(t.restore_id.clone()), Some(t.task_id.clone())),
            RestoreMessage::Step(s) => (format!("restore {:?}", s.step).to_lowercase(), Some(s.restore_id.clone()), None),
        }
    } else if let Ok(Some(ev)) = crate::changes::events::parse_change(body) {
        alert.step = "delta batch".into();
        alert.source_bucket = Some(ev.bucket.clone());
        // The delta handler records why a change could not be captured as a failure of its key.
        let failure = engine.control().failures(&ev.bucket).await?.into_iter().map(|(_, f)| f).find(|f| f.key == ev.key);
        alert.error = match failure {
            Some(f) => format!("s3://{}/{}: {}", ev.bucket, ev.key, f.reason),
            None if !engine.control().is_protected(&ev.bucket).await? => {
                format!("event for bucket {} which this vault ({}) does not protect", ev.bucket, engine.config.vault_bucket)
            }
            None => format!("the change of s3://{}/{} kept failing; the delta function's log lines say why", ev.bucket, ev.key),
        };
        alert.runbook = runbook("delta batch");
        return Ok(alert);
    } else {
        alert.error = "the body is not a message tidemark writes (nor an S3 event), so no handler could take it".into();
        alert.runbook = runbook("unknown");
        return Ok(alert);
    };
    alert.step = step;
    alert.runbook = runbook(&alert.step);
    alert.task_id = task_id;
    let Some(run_id) = run_id else { return Ok(alert) };
    if let Some(h) = history::run_history(engine, &run_id).await? {
        alert.source_bucket = Some(h.source_bucket.clone());
        let failed = h.steps.iter().find(|s| s.step_id == message_id);
        if let Some(s) = failed {
            alert.error = s.error.clone().unwrap_or_default();
            alert.attempts = Some(s.attempts);
            alert.log_id = Some(s.log_id.clone());
        }
        let before: Vec<StepOutcome> = h
            .steps
            .iter()
            .filter(|s| s.step_id != message_id && failed.is_none_or(|f| s.started_at <= f.started_at))
            .map(|s| StepOutcome {
                name: s.name.clone(),
                state: s.state,
                started_at: s.started_at,
                task_id: s.task_id.clone(),
                error: s.error.clone(),
            })
            .collect();
        alert.preceding_steps = before[before.len().saturating_sub(PRECEDING_STEPS)..].to_vec();
    }
    if alert.error.is_empty() {
        alert.error = format!("no step of run {run_id} recorded this message; the run's log lines say what happened");
    }
    alert.logs_insights_query = Some(match &alert.log_id {
        Some(id) => insights_query("log_id", id),
        None => insights_query("run_id", &run_id),
    });
    alert.run_id = Some(run_id);
    Ok(alert)
}

/// The runbook section (docs/runbook.md) for a step.
pub fn runbook(step: &str) -> String {
    let anchor = match step {
        s if s.starts_with("seed") => "seed-steps-and-tasks",
        s if s.starts_with("restore") => "restore-steps-and-tasks",
        "delta batch" => "delta-batches",
        _ => "messages-that-are-no-message",
    };
    format!("docs/runbook.md#{anchor}")
}

/// The subject line of an alert (SNS subjects are at most 100 characters).
pub fn subject(a: &Alert) -> String {
    let s = format!("tidemark: {} failed{}", a.step, a.run_id.as_ref().map(|r| format!(" in run {r}")).unwrap_or_default());
    s.chars().take(100).collect()
}

/// The control-store partition of the markers that say a dead-lettered message was alerted.
const ALERTED_PK: &str = "alerts";
/// How long a marker is kept: SQS's longest message retention (14 days), so that a message is
/// never alerted twice while its queue can still hold it.
const ALERTED_TTL_SECONDS: i64 = 14 * 24 * 3600;
/// How long a message stays hidden while a sweep reads its queue: long enough that one pass
/// does not receive it twice, short enough that a redrive after the alert finds it soon.
const SWEEP_VISIBILITY_SECONDS: i32 = 120;
/// The most messages one sweep reads from one queue; the next sweep reads on.
pub const SWEEP_MAX_MESSAGES: usize = 1000;

/// What one sweep of the dead-letter queues did.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct SweepReport {
    /// Messages read, per queue URL.
    pub read: std::collections::BTreeMap<String, usize>,
    /// Alerts published now.
    pub published: usize,
    /// Messages alerted by an earlier sweep.
    pub already_alerted: usize,
}

/// Reads every message on the dead-letter queues `dlqs` and publishes one alert per message not
/// alerted before, leaving the messages where they are.
///
/// A dead-letter queue keeps what failed so that it can be redriven once the cause is fixed: a
/// consumer that deleted what it read (an SQS event source does) would lose it. So the sweep
/// receives without deleting, remembers each alerted message id in the control store, and makes
/// the messages visible again when it is done with a queue. A message whose alert cannot be
/// published gets no marker, so the next sweep tries again; the error is returned after every
/// queue was read.
pub async fn sweep(engine: &Engine, notifier: &dyn crate::ports::Notifier, topic: &str, dlqs: &[String]) -> Result<SweepReport> {
    let mut report = SweepReport::default();
    let mut first_error = None;
    for dlq in dlqs {
        let mut receipts = Vec::new();
        let mut read = 0usize;
        while read < SWEEP_MAX_MESSAGES {
            let msgs = engine.queue.receive(dlq, 10, 0, SWEEP_VISIBILITY_SECONDS).await?;
            if msgs.is_empty() {
                break;
            }
            read += msgs.len();
            for m in msgs {
                receipts.push(m.receipt.clone());
                let sk = format!("message#{}", m.id);
                if engine.control.get(ALERTED_PK, &sk).await?.is_some() {
                    report.already_alerted += 1;
                    continue;
                }
                let published = async {
                    let alert = compose(engine, dlq, &m.id, &m.body).await?;
                    let text = serde_json::to_string_pretty(&alert).expect("alert serialises");
                    notifier.publish(topic, &subject(&alert), &text).await?;
                    Ok::<_, crate::Error>(alert)
                }
                .await;
                match published {
                    Ok(alert) => {
                        let expires = engine.clock.now().timestamp() + ALERTED_TTL_SECONDS;
                        engine.control.put_new(ALERTED_PK, &sk, &alert.step, Some(expires)).await?;
                        report.published += 1;
                        tracing::info!(queue = %dlq, message_id = %m.id, step = %alert.step, run_id = ?alert.run_id, "alert published");
                    }
                    Err(e) => {
                        tracing::error!(queue = %dlq, message_id = %m.id, error = %e, "the alert could not be published; the next sweep tries again");
                        first_error.get_or_insert(e);
                    }
                }
            }
        }
        // The messages stay on their queue, visible again for a redrive or the next sweep.
        for r in &receipts {
            engine.queue.change_visibility(dlq, r, 0).await?;
        }
        report.read.insert(dlq.clone(), read);
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok(report),
    }
}
