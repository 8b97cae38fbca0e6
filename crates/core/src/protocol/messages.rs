//! The bodies of work-queue messages: tasks and seed steps, each with a format version.
//!
//! On the work queue, a task: `{"kind":"task","version":1,"run_id":…,"task_id":…}`, or a seed
//! step: `{"kind":"seed_step","version":1,"run_id":…,"step":"summarise","file":3}` or
//! `"step":"plan"`. On the restore queue, a restore step:
//! `{"kind":"restore_step","version":1,"restore_id":…,"step":"plan"|"enqueue"|"finish"}`, or a
//! restore task: `{"kind":"restore_task","version":1,"restore_id":…,"task_id":…}`.
//! Bodies written before versions existed have no `version` (read as 1), and a task body had no
//! `kind` either; both are still accepted (see the fixtures under `tests/fixtures/messages`).

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// The version this code writes, and the newest it reads.
pub const VERSION: u32 = 1;

/// The `kind` of a task message.
pub const TASK_KIND: &str = "task";

/// The `kind` of a step message on the work queue.
pub const STEP_KIND: &str = "seed_step";

/// The `kind` of a restore step message on the restore queue.
pub const RESTORE_STEP_KIND: &str = "restore_step";

/// The `kind` of a restore task message on the restore queue.
pub const RESTORE_TASK_KIND: &str = "restore_task";

fn version_one() -> u32 {
    1
}

fn task_kind() -> String {
    TASK_KIND.into()
}

/// A task message: copy (the rest of) one task's partition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskMessage {
    /// Always [`TASK_KIND`]; absent in bodies written before kinds existed.
    #[serde(default = "task_kind")]
    pub kind: String,
    #[serde(default = "version_one")]
    pub version: u32,
    pub run_id: String,
    pub task_id: String,
}

impl TaskMessage {
    /// The message of task `task_id` of `run_id`.
    pub fn new(run_id: &str, task_id: &str) -> Self {
        TaskMessage { kind: TASK_KIND.into(), version: VERSION, run_id: run_id.into(), task_id: task_id.into() }
    }

    /// The message body.
    pub fn body(&self) -> String {
        serde_json::to_string(self).expect("a task message serialises")
    }
}

/// Which step a step message asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepKind {
    Summarise,
    Plan,
}

/// A step message of a stepwise seed (`protect::steps`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepMessage {
    /// Always [`STEP_KIND`].
    pub kind: String,
    #[serde(default = "version_one")]
    pub version: u32,
    pub run_id: String,
    pub step: StepKind,
    /// The data file to summarise (its index in the manifest).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<usize>,
}

impl StepMessage {
    /// The message that summarises data file `file` of `run_id`'s report.
    pub fn summarise(run_id: &str, file: usize) -> Self {
        StepMessage { kind: STEP_KIND.into(), version: VERSION, run_id: run_id.into(), step: StepKind::Summarise, file: Some(file) }
    }

    /// The message that plans `run_id` from its summaries.
    pub fn plan(run_id: &str) -> Self {
        StepMessage { kind: STEP_KIND.into(), version: VERSION, run_id: run_id.into(), step: StepKind::Plan, file: None }
    }

    /// The message body.
    pub fn body(&self) -> String {
        serde_json::to_string(self).expect("a step message serialises")
    }
}

/// A work-queue message: a task, or a step of a stepwise seed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WorkMessage {
    Task(TaskMessage),
    Step(StepMessage),
}

impl WorkMessage {
    /// The run the message belongs to.
    pub fn run_id(&self) -> &str {
        match self {
            WorkMessage::Task(t) => &t.run_id,
            WorkMessage::Step(s) => &s.run_id,
        }
    }

    /// The message's format version.
    pub fn version(&self) -> u32 {
        match self {
            WorkMessage::Task(t) => t.version,
            WorkMessage::Step(s) => s.version,
        }
    }
}

/// Which step of a restore run a message asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RestoreStepKind {
    /// Cut the state at T into tasks (continues itself when its time budget runs out).
    Plan,
    /// Send the tasks' messages, interleaved across prefixes (continues itself likewise).
    Enqueue,
    /// Check whether every task is done and end the run (sent again, delayed, until it is).
    Finish,
}

/// A step of a restore run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestoreStepMessage {
    /// Always [`RESTORE_STEP_KIND`].
    pub kind: String,
    #[serde(default = "version_one")]
    pub version: u32,
    pub restore_id: String,
    pub step: RestoreStepKind,
}

impl RestoreStepMessage {
    /// The message asking for `step` of run `restore_id`.
    pub fn new(restore_id: &str, step: RestoreStepKind) -> Self {
        RestoreStepMessage { kind: RESTORE_STEP_KIND.into(), version: VERSION, restore_id: restore_id.into(), step }
    }

    /// The message body.
    pub fn body(&self) -> String {
        serde_json::to_string(self).expect("a restore step message serialises")
    }
}

/// A restore task: restore one key range of a run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestoreTaskMessage {
    /// Always [`RESTORE_TASK_KIND`].
    pub kind: String,
    #[serde(default = "version_one")]
    pub version: u32,
    pub restore_id: String,
    pub task_id: String,
}

impl RestoreTaskMessage {
    /// The message of task `task_id` of run `restore_id`.
    pub fn new(restore_id: &str, task_id: &str) -> Self {
        RestoreTaskMessage { kind: RESTORE_TASK_KIND.into(), version: VERSION, restore_id: restore_id.into(), task_id: task_id.into() }
    }

    /// The message body.
    pub fn body(&self) -> String {
        serde_json::to_string(self).expect("a restore task message serialises")
    }
}

/// A restore-queue message: a step of a run, or one of its tasks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RestoreMessage {
    Step(RestoreStepMessage),
    Task(RestoreTaskMessage),
}

impl RestoreMessage {
    /// The run the message belongs to.
    pub fn restore_id(&self) -> &str {
        match self {
            RestoreMessage::Step(s) => &s.restore_id,
            RestoreMessage::Task(t) => &t.restore_id,
        }
    }
}

/// Parses a restore-queue message body (see [`parse_work_message`] for the error classes).
pub fn parse_restore_message(body: &str) -> Result<RestoreMessage> {
    let value = versioned(body, "restore message")?;
    let malformed = |e: serde_json::Error| Error::Invalid(format!("malformed restore message: {e}: {}", truncate(body)));
    match value.get("kind").and_then(|k| k.as_str()) {
        Some(RESTORE_STEP_KIND) => serde_json::from_value(value).map(RestoreMessage::Step).map_err(malformed),
        Some(RESTORE_TASK_KIND) => serde_json::from_value(value).map(RestoreMessage::Task).map_err(malformed),
        Some(other) => Err(Error::Invalid(format!("restore message of unknown kind '{other}': {}", truncate(body)))),
        None => Err(Error::Invalid(format!("restore message has no kind: {}", truncate(body)))),
    }
}

/// Parses a body as JSON and refuses a version newer than this reader (transiently).
fn versioned(body: &str, what: &str) -> Result<serde_json::Value> {
    let value: serde_json::Value =
        serde_json::from_str(body).map_err(|e| Error::Invalid(format!("{what} is not JSON: {e}: {}", truncate(body))))?;
    if let Some(v) = value.get("version").and_then(|v| v.as_u64()) {
        if v > u64::from(VERSION) {
            return Err(Error::port(
                what,
                format!(
                    "version {v} is newer than this worker reads (up to {VERSION}); an upgraded worker will take it: {}",
                    truncate(body)
                ),
                true,
            ));
        }
    }
    Ok(value)
}

/// The first 200 characters of a body, for error messages.
pub(crate) fn truncate(s: &str) -> String {
    s.chars().take(200).collect()
}

/// Parses a work-queue message body of either kind, of this version or an older one.
///
/// A body that is not a message is [`Error::Invalid`] (permanent: the dead-letter queue keeps
/// it). A body of a newer version than [`VERSION`] is a transient [`Error::Port`]: this reader
/// cannot handle it, but an upgraded one can, so it goes back to the queue.
pub fn parse_work_message(body: &str) -> Result<WorkMessage> {
    let value: serde_json::Value =
        serde_json::from_str(body).map_err(|e| Error::Invalid(format!("work message is not JSON: {e}: {}", truncate(body))))?;
    if let Some(v) = value.get("version").and_then(|v| v.as_u64()) {
        if v > u64::from(VERSION) {
            return Err(Error::port(
                "work message",
                format!(
                    "version {v} is newer than this worker reads (up to {VERSION}); an upgraded worker will take it: {}",
                    truncate(body)
                ),
                true,
            ));
        }
    }
    match value.get("kind").and_then(|k| k.as_str()) {
        Some(STEP_KIND) => {
            let step: StepMessage = serde_json::from_value(value)
                .map_err(|e| Error::Invalid(format!("malformed seed step message: {e}: {}", truncate(body))))?;
            if step.step == StepKind::Summarise && step.file.is_none() {
                return Err(Error::Invalid(format!("summarise message names no data file: {}", truncate(body))));
            }
            Ok(WorkMessage::Step(step))
        }
        None | Some(TASK_KIND) => serde_json::from_value(value)
            .map(WorkMessage::Task)
            .map_err(|e| Error::Invalid(format!("work message is not a task: {e}: {}", truncate(body)))),
        Some(other) => Err(Error::Invalid(format!("work message of unknown kind '{other}': {}", truncate(body)))),
    }
}
