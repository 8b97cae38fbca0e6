//! The queue protocol: every message tidemark puts on its queues, and what handling one means.
//!
//! [`messages`] defines the bodies (tasks and seed steps on the work queue; each carries a
//! `version`), parses them, and accepts the bodies written before versions existed.
//! [`dispatch`] hands a work-queue message to its handler and says what the queue should do
//! with it ([`dispatch::Disposition`]); the worker Lambda maps that to a partial batch response and
//! the local runner to a delete or a visibility change, so both treat every outcome alike. The
//! delta queue carries S3's EventBridge events, whose format is AWS's (`changes::events`).
//! [`local`] drives the restore queue in this process (the CLI's `restore --wait`, tests).
//!
//! Upgrade rule: readers first, writers after. A reader accepts every version up to its own and
//! the bodies without a version (version 1); a body of a newer version is retried, not failed,
//! so that an upgraded worker can take it.

pub mod dispatch;
pub mod local;
pub mod messages;
