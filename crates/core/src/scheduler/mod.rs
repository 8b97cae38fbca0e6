//! The per-prefix scheduler: the rate controller, and its fleet-shared state in the control store.

pub mod controller;
pub mod fleet;

pub use controller::*;
