//! The vault format: key layout, packs, index segments and recovery points, and the verification
//! of a vault from the vault alone.

pub mod crypt;
pub mod layout;
pub mod pack;
pub mod point;
pub mod segment;
pub mod verify;

pub use layout::*;
