//! Restore: a run that resolves a prefix's state at a time T from the vault and writes it into a
//! target, distributed over tasks, resumable, verified.
//!
//! `request` (what is asked, its checks), `run` (the run's control state: start, resume, status,
//! finish), `state` (the streaming k-way merge of segments resolved at T), `plan` (cutting the
//! state into tasks in time-budgeted steps, enqueueing them, the finish check), `task` (the
//! worker that restores one task's range), `write` (coalesced reads and verified writes),
//! `resolve` (the resolution rule on a set of records) and `materialise` (the whole state of a
//! prefix in memory, for `ls` and small tools).

pub mod attributes;
pub mod materialise;
pub mod plan;
pub mod request;
pub mod resolve;
pub mod run;
pub mod state;
pub mod task;
pub mod write;

pub use materialise::*;
pub use request::{RestoreMode, RestoreReport, RestoreRequest};
