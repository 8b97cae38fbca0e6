//! Point-in-time resolution: the state of every key at time T, exactly as ARCHITECTURE.md's point-in-time semantics define it.
//!
//! A key's records at T are those with event time ≤ T. They describe the key's versions the
//! way S3 keeps them: every put creates a version, every delete marker is a version that hides
//! the key, and a purge (a permanent delete of one version, or the removal of a delete marker)
//! takes that version out from its own time on, so the version below it is current again. The
//! state at T is the topmost version that is not purged, by the order key of its creation
//! (event time, sequencer right-padded with zeros, captured-at); a delete marker on top, or no
//! version, means the key does not exist at T.
//!
//! Records of one version are one version: a seed record and an event record of it, a record of
//! a later change of its tags or storage class (which gives the version's attributes from that
//! change's time on, and borrows the bytes' location from the records that have it), or an
//! archived placeholder and the capture made once it was restored. Records without a version id
//! (unversioned buckets, the `null` version) form one version per ETag and creation second, and a
//! delete without a version id is a marker of its own. Duplicates and any arrival order give the
//! same state.

use std::collections::{BTreeMap, HashSet};

use chrono::{DateTime, Utc};

use crate::domain::{order_key, padded_sequencer, CaptureKind, CaptureRecord};

/// What the records of one key say at one time.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct KeyState {
    /// The current version, if the key exists: its latest attributes, with the bytes' location.
    pub current: Option<CaptureRecord>,
    /// The version ids (versions and delete markers) that the catalog holds and no purge removed.
    pub alive: Vec<String>,
}

/// Resolves the state at `as_of` of every key starting with `prefix`.
///
/// Returns the current version's record by key; keys that do not exist at `as_of` are left out.
pub fn resolve<'a>(
    records: impl IntoIterator<Item = &'a CaptureRecord>,
    prefix: &str,
    as_of: DateTime<Utc>,
) -> BTreeMap<String, CaptureRecord> {
    resolve_keys(records, prefix, as_of).into_iter().filter_map(|(k, s)| s.current.map(|r| (k, r))).collect()
}

/// Resolves every key starting with `prefix` at `as_of`, with the versions still alive.
pub fn resolve_keys<'a>(
    records: impl IntoIterator<Item = &'a CaptureRecord>,
    prefix: &str,
    as_of: DateTime<Utc>,
) -> BTreeMap<String, KeyState> {
    let cutoff = as_of.timestamp();
    let mut by_key: BTreeMap<&str, Vec<&CaptureRecord>> = BTreeMap::new();
    for r in records {
        if r.key.starts_with(prefix) && r.event_time.timestamp() <= cutoff {
            by_key.entry(r.key.as_str()).or_default().push(r);
        }
    }
    by_key.into_iter().map(|(k, recs)| (k.to_string(), resolve_key(&recs))).collect()
}

type OrderKey = (i64, String, DateTime<Utc>);

/// Which version a record belongs to.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum VersionId<'a> {
    /// A real version or delete-marker id.
    Id(&'a str),
    /// The `null` version (or an unversioned object) with this ETag, created in this second.
    Null(&'a str, i64),
    /// A delete without a version id, at this order key.
    Anonymous(OrderKey),
}

#[derive(Default)]
struct Version<'a> {
    /// The creation order key: the greatest of the creation records' (records without
    /// `last_modified`); from Last-Modified alone if only attribute-change records exist.
    position: Option<OrderKey>,
    fallback: Option<OrderKey>,
    /// The record whose attributes are current: the latest fact, a located record first within
    /// one second.
    content: Option<&'a CaptureRecord>,
    located: Option<&'a CaptureRecord>,
}

fn content_key(r: &CaptureRecord) -> (i64, bool, String, DateTime<Utc>) {
    (r.event_time.timestamp(), r.location.is_some(), padded_sequencer(r.sequencer.as_deref()), r.captured_at)
}

impl<'a> Version<'a> {
    fn add(&mut self, r: &'a CaptureRecord) {
        match r.last_modified {
            None => self.position = self.position.clone().max(Some(order_key(r))),
            Some(lm) => self.fallback = self.fallback.clone().max(Some((lm.timestamp(), String::new(), DateTime::<Utc>::MIN_UTC))),
        }
        if self.content.is_none_or(|c| content_key(r) > content_key(c)) {
            self.content = Some(r);
        }
        if r.location.is_some() && self.located.is_none_or(|c| order_key(r) > order_key(c)) {
            self.located = Some(r);
        }
    }

    fn position(&self) -> OrderKey {
        self.position.clone().or_else(|| self.fallback.clone()).expect("a version has at least one record")
    }
}

/// Resolves one key from its records with event time ≤ T (in any order, duplicates allowed).
pub fn resolve_key(records: &[&CaptureRecord]) -> KeyState {
    let purged: HashSet<&str> = records.iter().filter(|r| r.kind == CaptureKind::Purge).filter_map(|r| r.version_id.as_deref()).collect();
    let null_purges: Vec<OrderKey> =
        records.iter().filter(|r| r.kind == CaptureKind::Purge && r.version_id.is_none()).map(|r| order_key(r)).collect();
    let mut versions: BTreeMap<VersionId, Version> = BTreeMap::new();
    for r in records {
        let id = match (r.kind, r.version_id.as_deref()) {
            (CaptureKind::Purge, _) => continue,
            (_, Some(v)) if purged.contains(v) => continue,
            (_, Some(v)) => VersionId::Id(v),
            (CaptureKind::Put, None) => {
                VersionId::Null(r.etag.as_deref().unwrap_or(""), r.last_modified.unwrap_or(r.event_time).timestamp())
            }
            (CaptureKind::Delete, None) => VersionId::Anonymous(order_key(r)),
        };
        versions.entry(id).or_default().add(r);
    }
    // A purge of the `null` version removes the null versions created before it; a later write
    // of the null version (a suspended-versioning bucket) is a new one.
    versions.retain(|id, v| !matches!(id, VersionId::Null(..)) || !null_purges.iter().any(|p| &v.position() < p));
    let alive = versions.keys().filter_map(|id| if let VersionId::Id(v) = id { Some(v.to_string()) } else { None }).collect();
    let top = versions.values().max_by(|a, b| a.position().cmp(&b.position()));
    let current = top.and_then(|v| {
        let content = v.content.expect("a version has at least one record");
        if content.kind != CaptureKind::Put {
            return None;
        }
        let mut r = content.clone();
        if r.location.is_none() {
            if let Some(located) = v.located {
                r.location = located.location.clone();
                r.checksum = located.checksum.clone();
            }
        }
        Some(r)
    });
    KeyState { current, alive }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn t(s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 3, 1, 12, 0, 0).unwrap() + chrono::Duration::seconds(s as i64)
    }

    /// (kind, key, event second, sequencer, captured second, etag)
    type Row = (&'static str, &'static str, u32, Option<&'static str>, u32, &'static str);

    fn rec(row: &Row) -> CaptureRecord {
        let (kind, key, at, seq, cap, etag) = *row;
        let mut r = CaptureRecord::delete("b", key, t(at), seq.map(String::from), t(cap));
        if kind == "put" {
            r.kind = CaptureKind::Put;
            r.etag = Some(etag.into());
        }
        r
    }

    /// Each case: records, the as-of second, and the expected (key, etag) state.
    #[test]
    fn table() {
        let cases: Vec<(&str, Vec<Row>, u32, Vec<(&str, &str)>)> = vec![
            ("single put visible after its time", vec![("put", "a", 10, None, 11, "e1")], 10, vec![("a", "e1")]),
            ("put not visible before its time", vec![("put", "a", 10, None, 11, "e1")], 9, vec![]),
            ("overwrite wins later", vec![("put", "a", 10, None, 11, "e1"), ("put", "a", 20, None, 21, "e2")], 25, vec![("a", "e2")]),
            ("overwrite not yet at T", vec![("put", "a", 10, None, 11, "e1"), ("put", "a", 20, None, 21, "e2")], 15, vec![("a", "e1")]),
            ("delete removes", vec![("put", "a", 10, None, 11, "e1"), ("delete", "a", 20, None, 21, "")], 20, vec![]),
            (
                "delete then re-create",
                vec![("put", "a", 10, None, 11, "e1"), ("delete", "a", 20, None, 21, ""), ("put", "a", 30, None, 31, "e3")],
                30,
                vec![("a", "e3")],
            ),
            (
                "between delete and re-create",
                vec![("put", "a", 10, None, 11, "e1"), ("delete", "a", 20, None, 21, ""), ("put", "a", 30, None, 31, "e3")],
                25,
                vec![],
            ),
            (
                "delete arriving before the put it follows",
                vec![("delete", "a", 20, None, 21, ""), ("put", "a", 10, None, 40, "e1")],
                30,
                vec![],
            ),
            (
                "duplicates change nothing",
                vec![("put", "a", 10, None, 11, "e1"), ("put", "a", 10, None, 11, "e1"), ("put", "a", 10, None, 11, "e1")],
                10,
                vec![("a", "e1")],
            ),
            (
                "same second ordered by sequencer",
                vec![("put", "a", 10, Some("00A2"), 12, "e2"), ("put", "a", 10, Some("00A1"), 13, "e1")],
                10,
                vec![("a", "e2")],
            ),
            (
                "sequencer padding: shorter is smaller",
                vec![("put", "a", 10, Some("617f0829"), 12, "long"), ("put", "a", 10, Some("617f08"), 13, "short")],
                10,
                vec![("a", "long")],
            ),
            (
                "same second constant sequencer: capture order",
                vec![("put", "a", 10, Some("1"), 11, "e1"), ("delete", "a", 10, Some("1"), 12, "")],
                10,
                vec![],
            ),
            (
                "same second put after delete by capture order",
                vec![("delete", "a", 10, Some("1"), 11, ""), ("put", "a", 10, Some("1"), 12, "e2")],
                10,
                vec![("a", "e2")],
            ),
            (
                "event beats seed record in the same second",
                vec![("put", "a", 10, None, 50, "seed"), ("put", "a", 10, Some("5"), 11, "evt")],
                10,
                vec![("a", "evt")],
            ),
            (
                "keys are independent",
                vec![("put", "a", 10, None, 11, "ea"), ("put", "b", 10, None, 11, "eb"), ("delete", "b", 12, None, 13, "")],
                12,
                vec![("a", "ea")],
            ),
            ("prefix filter", vec![("put", "x/a", 10, None, 11, "1"), ("put", "y/a", 10, None, 11, "2")], 10, vec![("x/a", "1")]),
        ];
        for (name, rows, at, want) in cases {
            let prefix = if name == "prefix filter" { "x/" } else { "" };
            let recs: Vec<CaptureRecord> = rows.iter().map(rec).collect();
            let want: Vec<(String, String)> = want.iter().map(|(k, e)| (k.to_string(), e.to_string())).collect();
            // Every permutation order must give the same state: reverse and rotate as cheap permutations.
            let mut orders = vec![recs.clone(), recs.iter().rev().cloned().collect()];
            for i in 1..recs.len() {
                let mut r = recs.clone();
                r.rotate_left(i);
                orders.push(r);
            }
            for order in orders {
                let got: Vec<(String, String)> =
                    resolve(&order, prefix, t(at)).into_iter().map(|(k, r)| (k, r.etag.unwrap_or_default())).collect();
                assert_eq!(got, want, "case: {name}");
            }
        }
    }
}
