//! A task's admission on the prefixes it reads: the fleet-shared scheduler when the operator set
//! a ceiling, or an open gate that admits everything at full speed.
//!
//! The worker talks to a [`Gate`] the same way in both cases, so that the seed loop has one path;
//! only the open gate's answers differ (always go, never yield on a throttle).

use std::time::Duration;

use crate::config::EngineConfig;
use crate::ports::ControlStore;
use crate::scheduler::fleet::Pressure;
use crate::scheduler::{Admission, Millis, Observation};
use crate::Result;

/// A task's admission (see the module documentation).
pub enum Gate<'a> {
    /// No scheduler: every report is answered "go, unpaced", and a throttled batch is an ordinary
    /// transient error that the queue retries.
    Open,
    /// The fleet-shared per-prefix scheduler.
    Shared(Pressure<'a>),
}

impl<'a> Gate<'a> {
    /// The gate for `owner`'s task on `bucket` under `config`: shared when a scheduler is configured.
    pub fn new(store: &'a dyn ControlStore, config: &EngineConfig, bucket: &str, owner: &str) -> Result<Self> {
        Ok(match &config.scheduler {
            Some(sc) => Gate::Shared(Pressure::new(store, &config.vault_bucket, bucket, sc.clone(), owner, config.want_rps())?),
            None => Gate::Open,
        })
    }

    /// True when admission depends on the prefix (so the worker must say which one it reads).
    pub fn is_shared(&self) -> bool {
        matches!(self, Gate::Shared(_))
    }

    /// Reports what the task saw on `prefix` since its last report and asks whether it may go on
    /// (and at what pace) or must defer.
    pub async fn report(&mut self, prefix: &str, now: Millis, observation: Observation) -> Result<Admission> {
        match self {
            Gate::Open => Ok(Admission::Go { rate_rps: f64::INFINITY }),
            Gate::Shared(p) => p.report(prefix, now, observation).await,
        }
    }

    /// Gives back the task's slice of `prefix` (it moved on, ended or yielded), with a last observation.
    pub async fn release(&mut self, prefix: &str, now: Millis, observation: Observation) -> Result<()> {
        match self {
            Gate::Open => Ok(()),
            Gate::Shared(p) => p.release(prefix, now, observation).await,
        }
    }

    /// How long a task whose batch S3 throttled beyond its retries steps aside: under the
    /// scheduler it yields for the shortest deferral (its throttles cut the prefix's rate for the
    /// whole fleet); without one there is no deferral and the error goes back to the queue.
    pub fn throttle_deferral(&self) -> Option<Duration> {
        match self {
            Gate::Open => None,
            Gate::Shared(p) => Some(Duration::from_millis(p.config().min_defer_ms)),
        }
    }
}
