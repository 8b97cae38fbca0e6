//! Run history: every step of a seed run or a restore run, kept in the control table beside the run.
//!
//! A step is one message handled (a seed task, a summarise or plan step, a restore plan, enqueue,
//! finish or task) or the start of the run. Its record says what it was (`name`, the task id),
//! how it went (`state`, `attempts`, `error`), when (`started_at`, `ended_at`), what it read (a
//! SHA-256 digest of its input and a pointer to where the whole input is) and which log lines
//! are its (`log_id`: the Lambda request id, or the local worker's name). `tidemark status --run`
//! and `tidemark report --run` read them; the alert function quotes a failed message's run's
//! steps. Recording is best effort: a step whose record cannot be written still runs (the log says
//! so), because the history describes the work and must never stop it.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::engine::Engine;
use crate::Result;

/// The format version of [`StepRecord`]s this code writes (and the newest it reads).
pub const STEP_FORMAT_VERSION: u32 = 1;

/// How a step went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StepState {
    Running,
    Done,
    /// Will be tried again (busy, deferred, or a transient failure).
    Retry,
    /// Failed for good: the queue's retries and then its dead-letter queue take the message.
    Failed,
}

/// One step of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepRecord {
    #[serde(default = "one")]
    pub format_version: u32,
    pub run_id: String,
    /// `seed start`, `seed summarise`, `seed plan`, `seed task`, `restore plan`, `restore task`, …
    pub name: String,
    /// The queue's message id (or the step's own id for a step that is no message).
    pub step_id: String,
    #[serde(default)]
    pub task_id: Option<String>,
    pub state: StepState,
    pub started_at: DateTime<Utc>,
    #[serde(default)]
    pub ended_at: Option<DateTime<Utc>>,
    pub attempts: u32,
    #[serde(default)]
    pub error: Option<String>,
    /// SHA-256 (hex) of the step's input (the message body).
    pub input_digest: String,
    /// Where the whole input is: `queue:<queue url>#<message id>` (and its dead-letter queue once dead-lettered).
    pub input_ref: String,
    pub log_id: String,
    /// What the step captured or restored, when it says (tasks): for throughput over time.
    #[serde(default)]
    pub objects: Option<u64>,
    #[serde(default)]
    pub bytes: Option<u64>,
}

fn one() -> u32 {
    1
}

fn pk(run_id: &str) -> String {
    format!("run#{run_id}")
}

fn sk(step_id: &str) -> String {
    format!("step#{step_id}")
}

/// SHA-256 (hex) of a step's input.
pub fn digest(input: &str) -> String {
    hex::encode(Sha256::digest(input.as_bytes()))
}

/// What a step is, as it begins.
pub struct Begin<'a> {
    pub run_id: &'a str,
    pub name: &'a str,
    pub step_id: &'a str,
    pub task_id: Option<&'a str>,
    pub input: &'a str,
    pub input_ref: String,
    pub log_id: &'a str,
}

/// How a step ended.
pub struct End {
    pub state: StepState,
    pub error: Option<String>,
    pub objects: Option<u64>,
    pub bytes: Option<u64>,
}

/// Records that a step begins (a retried message is the same step, one attempt more).
pub async fn begin(engine: &Engine, b: &Begin<'_>) -> Result<()> {
    let now = engine.clock.now();
    loop {
        match engine.control.get(&pk(b.run_id), &sk(b.step_id)).await? {
            None => {
                let rec = StepRecord {
                    format_version: STEP_FORMAT_VERSION,
                    run_id: b.run_id.into(),
                    name: b.name.into(),
                    step_id: b.step_id.into(),
                    task_id: b.task_id.map(String::from),
                    state: StepState::Running,
                    started_at: now,
                    ended_at: None,
                    attempts: 1,
                    error: None,
                    input_digest: digest(b.input),
                    input_ref: b.input_ref.clone(),
                    log_id: b.log_id.into(),
                    objects: None,
                    bytes: None,
                };
                if engine.control.put_new(&pk(b.run_id), &sk(b.step_id), &body(&rec), None).await? {
                    return Ok(());
                }
            }
            Some(item) => {
                let mut rec = parse(&item.body)?;
                rec.attempts += 1;
                rec.state = StepState::Running;
                rec.log_id = b.log_id.into();
                rec.ended_at = None;
                if engine.control.replace(&pk(b.run_id), &sk(b.step_id), item.version, &body(&rec)).await? {
                    return Ok(());
                }
            }
        }
    }
}

/// Records how a step ended.
pub async fn end(engine: &Engine, run_id: &str, step_id: &str, e: End) -> Result<()> {
    let now = engine.clock.now();
    loop {
        let Some(item) = engine.control.get(&pk(run_id), &sk(step_id)).await? else { return Ok(()) };
        let mut rec = parse(&item.body)?;
        rec.state = e.state;
        rec.ended_at = Some(now);
        rec.error = e.error.clone();
        rec.objects = e.objects.or(rec.objects);
        rec.bytes = e.bytes.or(rec.bytes);
        if engine.control.replace(&pk(run_id), &sk(step_id), item.version, &body(&rec)).await? {
            return Ok(());
        }
    }
}

/// Records the start of a run (a seed start, a restore start) as its first step, done: its input
/// is the request that started it, its log id the invocation's (or `local` in the CLI).
pub async fn record_start(engine: &Engine, run_id: &str, name: &str, input: &str) -> Result<()> {
    let log_id = crate::telemetry::log_id().unwrap_or_else(|| "local".into());
    let b = Begin {
        run_id,
        name,
        step_id: "start",
        task_id: None,
        input,
        input_ref: "the request that started the run".into(),
        log_id: &log_id,
    };
    record_done(engine, &b).await
}

/// Records a step that is over as soon as it is recorded: it begins and ends done.
pub async fn record_done(engine: &Engine, b: &Begin<'_>) -> Result<()> {
    begin(engine, b).await?;
    end(engine, b.run_id, b.step_id, End { state: StepState::Done, error: None, objects: None, bytes: None }).await
}

/// Every recorded step of a run, in the order they began.
pub async fn steps(engine: &Engine, run_id: &str) -> Result<Vec<StepRecord>> {
    let mut out: Vec<StepRecord> =
        engine.control.query(&pk(run_id), "step#").await?.iter().map(|i| parse(&i.body)).collect::<Result<_>>()?;
    out.sort_by(|a, b| a.started_at.cmp(&b.started_at).then_with(|| a.step_id.cmp(&b.step_id)));
    Ok(out)
}

/// One step, by its id.
pub async fn step(engine: &Engine, run_id: &str, step_id: &str) -> Result<Option<StepRecord>> {
    engine.control.get(&pk(run_id), &sk(step_id)).await?.map(|i| parse(&i.body)).transpose()
}

/// Logs instead of failing: the history must never stop the work it describes.
pub fn best_effort(what: &str, r: Result<()>) {
    if let Err(e) = r {
        tracing::warn!(error = %e, "could not record the step's {what} in the run history");
    }
}

fn body(r: &StepRecord) -> String {
    serde_json::to_string(r).expect("step record serialises")
}

fn parse(s: &str) -> Result<StepRecord> {
    let r: StepRecord = serde_json::from_str(s).map_err(|e| crate::Error::corrupt("step record", e.to_string()))?;
    if r.format_version > STEP_FORMAT_VERSION {
        return Err(crate::Error::port(
            "reading the run history",
            format!(
                "step record of format {} is newer than this build reads ({STEP_FORMAT_VERSION}); upgrade the readers first",
                r.format_version
            ),
            true,
        ));
    }
    Ok(r)
}

/// A run as its history shows it: what it is, where it stands, and its steps in order.
#[derive(Debug, Clone, Serialize)]
pub struct RunHistory {
    pub run_id: String,
    /// `seed` or `restore`.
    pub kind: String,
    pub state: String,
    pub source_bucket: String,
    pub prefix: String,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    pub steps: Vec<StepRecord>,
}

/// The history of a seed run or a restore run, or `None` when no run has this id.
pub async fn run_history(engine: &Engine, run_id: &str) -> Result<Option<RunHistory>> {
    let state_name = |v: serde_json::Value| v.as_str().unwrap_or_default().to_string();
    let (kind, state, source_bucket, prefix, started_at, finished_at) = if let Some((_, run)) = engine.control().get_run(run_id).await? {
        ("seed", state_name(serde_json::json!(run.state)), run.source_bucket, run.prefix, run.started_at, run.finished_at)
    } else if let Some((_, run)) = crate::restore::run::load(engine, run_id).await? {
        let r = run.request;
        ("restore", state_name(serde_json::json!(run.state)), r.source_bucket, r.prefix, run.started_at, run.finished_at)
    } else {
        return Ok(None);
    };
    Ok(Some(RunHistory {
        run_id: run_id.into(),
        kind: kind.into(),
        state,
        source_bucket,
        prefix,
        started_at,
        finished_at,
        steps: steps(engine, run_id).await?,
    }))
}
