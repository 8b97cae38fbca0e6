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

    /// One record of a versioned case.
    #[derive(Clone, Copy)]
    enum V {
        /// A version created at a second (located in a pack), with a tag value.
        Put(&'static str, u32, &'static str),
        /// A version's archived placeholder (no location) created at a second.
        Archived(&'static str, u32),
        /// A delete marker created at a second.
        Marker(&'static str, u32),
        /// A permanent delete of a version (or marker) at a second.
        Purge(&'static str, u32),
        /// A change of a version's tags at a second (no location), with the new tag value.
        Tags(&'static str, u32, u32, &'static str),
        /// A `null`-version put with an ETag at a second, and a purge of the `null` version.
        NullPut(&'static str, u32),
        NullPurge(u32),
        /// A delete without a version id (records written before markers kept theirs).
        LegacyDelete(u32),
    }

    fn vrec(v: V) -> CaptureRecord {
        let put = |id: Option<&str>, at: u32, etag: &str| {
            let mut r = CaptureRecord::delete("b", "k", t(at), None, t(at + 1));
            r.kind = CaptureKind::Put;
            r.version_id = id.map(String::from);
            r.etag = Some(etag.into());
            r
        };
        let located = |mut r: CaptureRecord| {
            let pack = format!("pack-of-{}", r.version_id.as_deref().unwrap_or(r.etag.as_deref().unwrap_or("")));
            r.location = Some(crate::domain::Location::Pack {
                pack,
                offset: 0,
                length: 1,
                raw_length: 1,
                codec: crate::domain::Codec::Raw,
                envelope: None,
            });
            r
        };
        match v {
            V::Put(id, at, tag) => {
                let mut r = located(put(Some(id), at, &format!("etag-{id}")));
                r.attributes.tags.insert("t".into(), tag.into());
                r
            }
            V::Archived(id, at) => {
                let mut r = put(Some(id), at, &format!("etag-{id}"));
                r.attributes.archived = Some("GLACIER".into());
                r
            }
            V::Marker(id, at) => CaptureRecord::delete_marker("b", "k", id, t(at), None, t(at + 1)),
            V::Purge(id, at) => CaptureRecord::purge("b", "k", Some(id), t(at), None, t(at + 1)),
            V::Tags(id, created, at, tag) => {
                let mut r = put(Some(id), at, &format!("etag-{id}"));
                r.last_modified = Some(t(created));
                r.attributes.tags.insert("t".into(), tag.into());
                r
            }
            V::NullPut(etag, at) => located(put(None, at, etag)),
            V::NullPurge(at) => CaptureRecord::purge("b", "k", None, t(at), None, t(at + 1)),
            V::LegacyDelete(at) => CaptureRecord::delete("b", "k", t(at), None, t(at + 1)),
        }
    }

    /// What a case expects at a second: absent, or (version or ETag, tag value, pack).
    type Want = Option<(&'static str, &'static str, &'static str)>;

    fn shown(r: &CaptureRecord) -> (String, String, String) {
        let pack = match &r.location {
            Some(crate::domain::Location::Pack { pack, .. }) => pack.clone(),
            _ => "no bytes".into(),
        };
        let id = r.version_id.clone().or(r.etag.clone()).unwrap_or_default();
        (id, r.attributes.tags.get("t").cloned().unwrap_or_default(), pack)
    }

    /// Every versioned case, at several times, in every rotation and reversal of its records,
    /// with every record duplicated too: the state is a function of the set of records.
    #[test]
    fn versioned_table() {
        use V::*;
        let cases: Vec<(&str, Vec<V>, Vec<(u32, Want)>)> = vec![
            (
                "overwrite",
                vec![Put("v1", 10, "a"), Put("v2", 20, "b")],
                vec![(15, Some(("v1", "a", "pack-of-v1"))), (25, Some(("v2", "b", "pack-of-v2")))],
            ),
            ("delete marker", vec![Put("v1", 10, "a"), Marker("m1", 20)], vec![(15, Some(("v1", "a", "pack-of-v1"))), (25, None)]),
            (
                "permanent delete of the current version",
                vec![Put("v1", 10, "a"), Put("v2", 20, "b"), Purge("v2", 30)],
                vec![(25, Some(("v2", "b", "pack-of-v2"))), (35, Some(("v1", "a", "pack-of-v1")))],
            ),
            (
                "permanent delete of a non-current version",
                vec![Put("v1", 10, "a"), Put("v2", 20, "b"), Purge("v1", 30)],
                vec![(15, Some(("v1", "a", "pack-of-v1"))), (25, Some(("v2", "b", "pack-of-v2"))), (35, Some(("v2", "b", "pack-of-v2")))],
            ),
            (
                "removal of a delete marker",
                vec![Put("v1", 10, "a"), Marker("m1", 20), Purge("m1", 30)],
                vec![(25, None), (35, Some(("v1", "a", "pack-of-v1")))],
            ),
            (
                "re-creation after a delete marker",
                vec![Put("v1", 10, "a"), Marker("m1", 20), Put("v3", 30, "c")],
                vec![(25, None), (35, Some(("v3", "c", "pack-of-v3")))],
            ),
            (
                "permanent delete of the current version, then re-creation",
                vec![Put("v1", 10, "a"), Put("v2", 20, "b"), Purge("v2", 30), Put("v3", 40, "c")],
                vec![(35, Some(("v1", "a", "pack-of-v1"))), (45, Some(("v3", "c", "pack-of-v3")))],
            ),
            (
                "every version deleted for good",
                vec![Put("v1", 10, "a"), Purge("v1", 20)],
                vec![(15, Some(("v1", "a", "pack-of-v1"))), (25, None)],
            ),
            (
                "a marker removed over a non-current version deleted for good",
                vec![Put("v1", 10, "a"), Put("v2", 20, "b"), Marker("m1", 30), Purge("v2", 40), Purge("m1", 50)],
                vec![(35, None), (45, None), (55, Some(("v1", "a", "pack-of-v1")))],
            ),
            (
                "a tag change of the current version",
                vec![Put("v1", 10, "a"), Tags("v1", 10, 20, "b")],
                vec![(15, Some(("v1", "a", "pack-of-v1"))), (25, Some(("v1", "b", "pack-of-v1")))],
            ),
            (
                "a tag change of a non-current version does not make it current",
                vec![Put("v1", 10, "a"), Put("v2", 20, "b"), Tags("v1", 10, 30, "z")],
                vec![(35, Some(("v2", "b", "pack-of-v2")))],
            ),
            (
                "a non-current version's new tags show once it is current again",
                vec![Put("v1", 10, "a"), Put("v2", 20, "b"), Tags("v1", 10, 30, "z"), Purge("v2", 40)],
                vec![(35, Some(("v2", "b", "pack-of-v2"))), (45, Some(("v1", "z", "pack-of-v1")))],
            ),
            (
                "an archived placeholder and the capture after its restore",
                vec![Archived("v1", 10), Put("v1", 10, "a")],
                vec![(15, Some(("v1", "a", "pack-of-v1")))],
            ),
            ("an archived version alone has no bytes", vec![Archived("v1", 10)], vec![(15, Some(("v1", "", "no bytes")))]),
            (
                "the null version deleted for good under a newer version",
                vec![NullPut("e0", 5), Put("v1", 10, "a"), NullPurge(20), Purge("v1", 30)],
                vec![(8, Some(("e0", "", "pack-of-e0"))), (25, Some(("v1", "a", "pack-of-v1"))), (35, None)],
            ),
            (
                "the null version deleted for good, then written again",
                vec![NullPut("e0", 5), NullPurge(20), NullPut("e1", 30)],
                vec![(10, Some(("e0", "", "pack-of-e0"))), (25, None), (35, Some(("e1", "", "pack-of-e1")))],
            ),
            (
                "records written before markers kept their ids",
                vec![Put("v1", 10, "a"), LegacyDelete(20), Put("v2", 30, "b")],
                vec![(25, None), (35, Some(("v2", "b", "pack-of-v2")))],
            ),
        ];
        for (name, rows, checks) in cases {
            let recs: Vec<CaptureRecord> = rows.iter().map(|v| vrec(*v)).collect();
            let mut orders = vec![recs.clone(), recs.iter().rev().cloned().collect(), recs.iter().chain(recs.iter()).cloned().collect()];
            for i in 1..recs.len() {
                let mut r = recs.clone();
                r.rotate_left(i);
                orders.push(r.clone());
                orders.push(r.iter().chain(recs.iter().rev()).cloned().collect());
            }
            for (at, want) in &checks {
                let want = want.map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string()));
                for order in &orders {
                    let got = resolve(order, "", t(*at)).get("k").map(shown);
                    assert_eq!(got, want, "case '{name}' as of second {at}");
                }
            }
        }
    }
}
