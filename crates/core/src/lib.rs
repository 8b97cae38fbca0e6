//! The tidemark engine: domain types, ports, vault format, point-in-time resolution and handlers.
//!
//! Architecture invariant: this crate knows nothing about AWS SDKs or Lambda. It reaches the
//! world only through the traits in [`ports`], so the same handlers run in Lambda, in the local
//! runner and in tests.

// Foundations every stage shares: errors, configuration, domain types, the ports, typed control
// state and the engine context.
pub mod alert;
pub mod config;
pub mod control;
pub mod domain;
pub mod engine;
pub mod error;
pub mod history;
pub mod memory;
pub mod ports;
pub mod telemetry;

// The stages, in the order the data flows through them: a seed is planned, its tasks are
// protected by workers that the scheduler paces, objects are captured into the vault format,
// changes keep the vault current, and a restore reads it back.
pub mod plan;

pub mod protect;

pub mod protocol;

pub mod scheduler;

pub mod capture;

pub mod vault;

pub mod changes;

pub mod restore;

// Rebuilding the control state from the vault, when the control table is lost.
pub mod rebuild;
// What the stages did, for the metrics the Lambda functions print.
pub mod tally;

pub use error::{Error, Result};
