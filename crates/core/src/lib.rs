//! The tidemark engine: domain types, ports, vault format, point-in-time resolution and handlers.
//!
//! Architecture invariant: this crate knows nothing about AWS SDKs or Lambda. It reaches the
//! world only through the traits in [`ports`], so the same handlers run in Lambda, in the local
//! runner and in tests.

pub mod capture;
pub mod compact;
pub mod config;
pub mod control;
pub mod delta;
pub mod domain;
pub mod engine;
pub mod error;
pub mod events;
pub mod inventory;
pub mod listing;
pub mod pack;
pub mod partition;
pub mod point;
pub mod ports;
pub mod pressure;
pub mod reconcile;
pub mod resolve;
pub mod restore;
pub mod scheduler;
pub mod seed;
pub mod seed_steps;
pub mod segment;
pub mod vault;
pub mod worker;

pub use error::{Error, Result};
