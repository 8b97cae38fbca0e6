//! The vault's key layout (ARCHITECTURE.md, "The vault format"): where packs, large objects, segments and recovery points live.

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

/// The source bucket whose large-object copy `key` is (the inverse of [`object_key`]), if it is one.
pub fn object_key_bucket(key: &str) -> Option<&str> {
    let (bucket, rest) = key.strip_prefix("v1/")?.split_once('/')?;
    rest.starts_with("objects/").then_some(bucket)
}

/// Key of an index segment.
pub fn segment_key(bucket: &str, id: &str) -> String {
    format!("v1/{bucket}/index/{id}.idx")
}

/// Key of the records of an index segment of format version 3: `v1/<bucket>/catalog/<id>.ndjson`.
///
/// The records live apart from the segment's header, under a prefix that holds records and
/// nothing else, so that DuckDB or the Athena table (one partition per source bucket) reads
/// them with one schema (docs/catalog.md). The prefix is inside `v1/<bucket>/`, where every
/// function role may already read and write, and where a source read role's grant on
/// `v1/*/objects/*` does not reach.
pub fn catalog_key(bucket: &str, id: &str) -> String {
    format!("v1/{bucket}/catalog/{id}.ndjson")
}

/// Prefix under which `bucket`'s catalog objects live.
pub fn catalog_prefix(bucket: &str) -> String {
    format!("v1/{bucket}/catalog/")
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

/// Splits `size` bytes into the inclusive ranges of `part` bytes that a multipart copy uses.
///
/// A restore copies a large object with the part layout of its vault copy, so that the target's
/// ETag equals the vault's; both sides cut parts with this one function.
pub fn part_ranges(size: u64, part: u64) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    let mut first = 0;
    while first < size {
        let last = (first + part).min(size) - 1;
        out.push((first, last));
        first = last + 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn large_object_keys_name_their_source_bucket() {
        assert_eq!(object_key_bucket("v1/acme-data/objects/ab/abcdef"), Some("acme-data"));
        assert_eq!(object_key_bucket(&object_key("acme-data", "abcdef")), Some("acme-data"));
        assert_eq!(object_key_bucket("v1/acme-data/packs/2024-01-01/x.pack"), None);
        assert_eq!(object_key_bucket("v1/acme-data/index/x.idx"), None);
        assert_eq!(object_key_bucket("objects/ab"), None);
        assert_eq!(object_key_bucket(&catalog_key("acme-data", "abc")), None);
        assert!(catalog_key("acme-data", "abc").starts_with(&catalog_prefix("acme-data")));
    }

    #[test]
    fn part_ranges_cover_exactly() {
        assert_eq!(part_ranges(10, 4), vec![(0, 3), (4, 7), (8, 9)]);
        assert_eq!(part_ranges(8, 4), vec![(0, 3), (4, 7)]);
        assert!(part_ranges(0, 4).is_empty());
    }
}
