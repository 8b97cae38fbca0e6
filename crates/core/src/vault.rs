//! The vault's key layout (DESIGN §4): where packs, large objects, segments and recovery points live.

use chrono::{DateTime, Utc};

/// Key prefix of everything captured from `bucket`.
pub fn root(bucket: &str) -> String {
    format!("v1/{bucket}/")
}

/// Key of a new pack.
pub fn pack_key(bucket: &str, now: DateTime<Utc>, id: &str) -> String {
    format!("v1/{bucket}/packs/{}/{id}.pack", now.format("%Y-%m-%d"))
}

/// Key of a large object's copy; `object_id` is stable for one source version.
pub fn object_key(bucket: &str, object_id: &str) -> String {
    format!("v1/{bucket}/objects/{}/{object_id}", &object_id[..2])
}

/// Key of an index segment.
pub fn segment_key(bucket: &str, id: &str) -> String {
    format!("v1/{bucket}/index/{id}.idx")
}

/// Prefix under which recovery points live.
pub fn points_prefix(bucket: &str) -> String {
    format!("v1/{bucket}/points/")
}

/// Key of the recovery point sealed at `t`; lexical order is time order.
pub fn point_key(bucket: &str, t: DateTime<Utc>) -> String {
    format!("v1/{bucket}/points/{}.json", t.format("%Y-%m-%dT%H:%M:%S%.3fZ"))
}

/// Key of the summary of data file `file` of the inventory report a seed run plans from.
/// Summaries are planning notes, not captures: nothing reads them once the run is planned.
pub fn summary_key(bucket: &str, run_id: &str, file: usize) -> String {
    format!("v1/{bucket}/runs/{run_id}/summaries/{file:06}.json")
}
