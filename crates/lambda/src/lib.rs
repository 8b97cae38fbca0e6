//! Lambda handlers of tidemark: thin adapters from Lambda events to the engine's handlers.
//!
//! Each binary in `src/bin` reads [`LambdaConfig`] once, builds the engine once and calls
//! `lambda_runtime::run` with one of these handlers. Tests call the handlers directly with real
//! event payloads. One module per function, beside the configuration, the error type and the
//! SQS glue they share.

mod alert;
mod checkpoint;
mod config;
mod delta;
mod error;
pub mod logging;
pub mod metrics;
mod restore;
mod scrub;
mod seeder;
mod sqs;
mod worker;

pub use alert::alert_handler;
pub use checkpoint::{checkpoint_handler, CheckpointRequest, CheckpointResult};
pub use config::{source_role_from, target_role_from, LambdaConfig};
pub use delta::{changes_failed_emf, delta_handler};
pub use error::LambdaError;
pub use logging::{in_invocation, init_logging, invocation_span};
pub use restore::{restore_handler, restore_queue_handler, start_restore, RestoreStarted};
pub use scrub::{scrub_handler, verify_damaged_emf, ScrubRequest, ScrubResult};
pub use seeder::{reconcile_handler, seeder_dispatch, seeder_handler, ReconcileRequest, ReconcileResult, SeedRequest, SeedResponse};
pub use worker::worker_handler;
