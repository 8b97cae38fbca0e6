//! Planning a seed: cutting a bucket's key space into balanced partitions, from a listing or an S3 Inventory report.

pub mod inventory;
pub mod listing;
pub mod partition;
