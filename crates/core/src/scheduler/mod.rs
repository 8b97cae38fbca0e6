//! The per-prefix scheduler: how a `503 SlowDown` becomes a slower rate for the whole fleet.
//!
//! The chain, in the order a throttle travels: the AWS adapter turns S3's `503 SlowDown` into
//! [`crate::Error::Throttled`]; [`source::PacedStore`] (every request a task sends to the source)
//! retries it with backoff and counts it; the worker hands the counts to its [`gate::Gate`] with
//! its next report; the gate writes them into the prefix's fleet-shared state ([`fleet`], in the
//! control store), where the [`controller`] cuts the prefix's rate; the admission it returns sets
//! the pace of the task's [`source::PacedStore`] ([`pacer`]), or defers the task.

pub mod controller;
pub mod fleet;
pub mod gate;
pub mod pacer;
pub mod source;

pub use controller::*;
