//! The partition planner: cuts a sorted key space into contiguous ranges balanced by count and bytes.
//!
//! A partition is `[start, end)`: `start` inclusive (empty means the beginning of the bucket),
//! `end` exclusive (`None` means the end). Cuts prefer prefix boundaries (a change of the
//! `/`-separated parent) within a slack of the target, so one partition rarely splits a directory.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A contiguous key range of the source bucket, with what the plan knew of its contents.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Partition {
    pub start: String,
    pub end: Option<String>,
    pub objects: u64,
    pub bytes: u64,
}

impl Partition {
    /// True if `key` falls in this partition.
    pub fn contains(&self, key: &str) -> bool {
        key >= self.start.as_str() && self.end.as_deref().is_none_or(|e| key < e)
    }
}

/// How big partitions should be.
#[derive(Debug, Clone, Copy)]
pub struct PlanTargets {
    pub objects: u64,
    pub bytes: u64,
}

impl Default for PlanTargets {
    fn default() -> Self {
        PlanTargets { objects: 100_000, bytes: 50 * 1024 * 1024 * 1024 }
    }
}

/// Builds partitions from keys fed in ascending order.
#[derive(Debug)]
pub struct Planner {
    targets: PlanTargets,
    done: Vec<Partition>,
    cur: Partition,
    prev_key: Option<String>,
}

fn parent(key: &str) -> &str {
    key.rfind('/').map_or("", |i| &key[..=i])
}

impl Planner {
    /// A planner with the given targets.
    pub fn new(targets: PlanTargets) -> Self {
        Planner {
            targets: PlanTargets { objects: targets.objects.max(1), bytes: targets.bytes.max(1) },
            done: Vec::new(),
            cur: Partition { start: String::new(), end: None, objects: 0, bytes: 0 },
            prev_key: None,
        }
    }

    /// Adds the next key. Keys must come in ascending order; an out-of-order key is an error.
    pub fn push(&mut self, key: &str, size: u64) -> crate::Result<()> {
        self.push_many(key, 1, size)
    }

    /// Adds the next key standing for `objects` objects of `bytes` bytes in all (the versions
    /// of one key, when every version is protected). A key is never split across partitions.
    pub fn push_many(&mut self, key: &str, objects: u64, bytes: u64) -> crate::Result<()> {
        if let Some(prev) = &self.prev_key {
            if key <= prev.as_str() {
                return Err(crate::Error::Invalid(format!("planner got key '{key}' after '{prev}': keys must be sorted and unique")));
            }
            let full = self.cur.objects >= self.targets.objects || self.cur.bytes >= self.targets.bytes;
            if full {
                let over = self.cur.objects >= self.targets.objects.saturating_add(self.targets.objects / 4)
                    || self.cur.bytes >= self.targets.bytes.saturating_add(self.targets.bytes / 4);
                // Within one directory, wait (up to the slack) for the directory to end.
                let same_dir = !parent(key).is_empty() && parent(prev) == parent(key);
                if over || !same_dir {
                    self.cut(key);
                }
            }
        }
        self.cur.objects = self.cur.objects.saturating_add(objects);
        self.cur.bytes = self.cur.bytes.saturating_add(bytes);
        // The previous key's buffer is reused: planning billions of keys should not allocate
        // once per key.
        let prev = self.prev_key.get_or_insert_with(String::new);
        prev.clear();
        prev.push_str(key);
        Ok(())
    }

    fn cut(&mut self, key: &str) {
        let mut next = Partition { start: key.to_string(), end: None, objects: 0, bytes: 0 };
        std::mem::swap(&mut self.cur, &mut next);
        next.end = Some(key.to_string());
        self.done.push(next);
    }

    /// Finishes the plan. An empty bucket gives one empty partition covering everything.
    pub fn finish(mut self) -> Vec<Partition> {
        self.done.push(self.cur);
        self.done
    }
}

/// Orders task ids round-robin across top-level prefixes so one throttled prefix never blocks the queue.
pub fn interleave(partitions: &[Partition], ids: Vec<String>) -> Vec<String> {
    let mut groups: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (p, id) in partitions.iter().zip(ids) {
        let top = p.start.split('/').next().unwrap_or("").to_string();
        groups.entry(top).or_default().push(id);
    }
    let mut queues: Vec<std::collections::VecDeque<String>> = groups.into_values().map(Into::into).collect();
    let mut out = Vec::new();
    while queues.iter().any(|q| !q.is_empty()) {
        for q in queues.iter_mut() {
            if let Some(id) = q.pop_front() {
                out.push(id);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(keys: &[(&str, u64)], objects: u64, bytes: u64) -> Vec<Partition> {
        let mut p = Planner::new(PlanTargets { objects, bytes });
        for (k, s) in keys {
            p.push(k, *s).unwrap();
        }
        p.finish()
    }

    #[test]
    fn covers_everything_contiguously() {
        let keys: Vec<String> = (0..1000).map(|i| format!("p{}/k{:04}", i % 7, i)).collect();
        let mut sorted = keys.clone();
        sorted.sort();
        let refs: Vec<(&str, u64)> = sorted.iter().map(|k| (k.as_str(), 10)).collect();
        let parts = plan(&refs, 100, u64::MAX);
        assert_eq!(parts.first().unwrap().start, "");
        assert_eq!(parts.last().unwrap().end, None);
        for w in parts.windows(2) {
            assert_eq!(w[0].end.as_deref(), Some(w[1].start.as_str()));
        }
        assert_eq!(parts.iter().map(|p| p.objects).sum::<u64>(), 1000);
        for k in &sorted {
            assert_eq!(parts.iter().filter(|p| p.contains(k)).count(), 1, "{k}");
        }
        assert!(parts.iter().all(|p| p.objects <= 125), "{parts:?}");
    }

    #[test]
    fn prefers_prefix_boundaries() {
        let mut keys = Vec::new();
        for d in ["a/", "b/", "c/"] {
            for i in 0..110 {
                keys.push(format!("{d}{i:03}"));
            }
        }
        let refs: Vec<(&str, u64)> = keys.iter().map(|k| (k.as_str(), 1)).collect();
        let parts = plan(&refs, 100, u64::MAX);
        let starts: Vec<&str> = parts.iter().map(|p| p.start.as_str()).collect();
        assert_eq!(starts, vec!["", "b/000", "c/000"]);
    }

    #[test]
    fn push_many_counts_versions_and_never_splits_a_key() {
        let mut p = Planner::new(PlanTargets { objects: 10, bytes: u64::MAX });
        p.push_many("a", 9, 90).unwrap();
        p.push_many("b", 30, 300).unwrap();
        p.push_many("c", 1, 1).unwrap();
        assert!(p.push_many("c", 1, 1).is_err());
        let parts = p.finish();
        let shape: Vec<(&str, u64, u64)> = parts.iter().map(|p| (p.start.as_str(), p.objects, p.bytes)).collect();
        assert_eq!(shape, vec![("", 39, 390), ("c", 1, 1)]);
    }

    #[test]
    fn balances_by_bytes_and_rejects_unsorted() {
        let parts = plan(&[("a", 60), ("b", 60), ("c", 60), ("d", 60), ("e", 1)], 1000, 100);
        assert_eq!(parts.len(), 3);
        let mut p = Planner::new(PlanTargets::default());
        p.push("b", 1).unwrap();
        assert!(p.push("a", 1).unwrap_err().to_string().contains("sorted"));
        assert_eq!(Planner::new(PlanTargets::default()).finish().len(), 1);
    }
}
