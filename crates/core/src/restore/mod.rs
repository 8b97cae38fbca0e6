//! Restore: resolving a prefix's state at a time T and materialising it into a target.

pub mod attributes;
pub mod materialise;
pub mod resolve;

pub use materialise::*;
