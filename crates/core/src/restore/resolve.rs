//! Point-in-time resolution: the state of every key at time T, exactly as ARCHITECTURE.md's point-in-time semantics define it.
//!
//! The state of key K at T is the capture record of K with the greatest order key whose event
//! time is ≤ T; a delete, or no record, means K does not exist at T. The order key is (event
//! time, sequencer right-padded with zeros, captured-at): sequencers order events of one key
//! within a second, and the capture time breaks the ties that remain (the local stack sends one
//! constant sequencer). Duplicates and any arrival order give the same state.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use crate::domain::{order_key, CaptureKind, CaptureRecord};

/// Resolves the state at `as_of` of every key starting with `prefix`.
///
/// Returns the winning put records by key; keys whose winner is a delete are left out.
pub fn resolve<'a>(
    records: impl IntoIterator<Item = &'a CaptureRecord>,
    prefix: &str,
    as_of: DateTime<Utc>,
) -> BTreeMap<String, CaptureRecord> {
    let mut best: BTreeMap<&str, &CaptureRecord> = BTreeMap::new();
    let cutoff = as_of.timestamp();
    for r in records {
        if !r.key.starts_with(prefix) || r.event_time.timestamp() > cutoff {
            continue;
        }
        match best.get(r.key.as_str()) {
            Some(cur) if order_key(cur) >= order_key(r) => {}
            _ => {
                best.insert(r.key.as_str(), r);
            }
        }
    }
    best.into_iter().filter(|(_, r)| r.kind == CaptureKind::Put).map(|(k, r)| (k.to_string(), r.clone())).collect()
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
