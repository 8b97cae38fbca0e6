//! The vault format: key layout, packs, index segments and recovery points.

pub mod layout;
pub mod pack;
pub mod point;
pub mod segment;

pub use layout::*;
