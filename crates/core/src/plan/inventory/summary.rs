//! Summaries of single data files, and the partition plan merged from them: how a report of any
//! size is planned in steps that each read one data file.
//!
//! A [`FileSummary`] lists, in key order, the first key of each run of consecutive keys of one
//! data file ("samples"), with the objects and bytes of that run. A file holds every kept key of
//! its rows, sorted with the bounded-memory external sort, de-duplicated as the one-shot plan
//! does; samples close at a granularity chosen from the file's row count, so a summary never
//! holds more than `max_samples + 1` samples however large the file is. Runs close early at a
//! directory change once they are half full, so that sample keys (the only places where the plan
//! can cut) fall on prefix boundaries where the file has them.
//!
//! [`merge`] feeds the samples of every file, in key order, to the [`Planner`]: each sample
//! stands for its run's objects and bytes at its key. When a summary keeps every key (a file of
//! at most `max_samples / 4` kept keys) the merged plan is exactly the plan of the sorted key
//! stream; otherwise object and byte counts are estimates within about one run per file at each
//! cut, and partition bounds are still exact key ranges that cover the bucket (workers list
//! their range, so an estimate affects balance, never what is captured).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::sort::ExternalSorter;
use super::{Inventory, InventoryPlan, ReadOptions, Totals, SKIP_DUPLICATE};
use crate::plan::partition::{Partition, PlanTargets, Planner};
use crate::{Error, Result};

/// The `format` field of a stored summary.
pub const SUMMARY_FORMAT: &str = "tidemark-inventory-summary";
/// The version of the summary format.
pub const SUMMARY_VERSION: u32 = 1;
/// Samples that all the summaries of one report hold together: the plan step keeps them all in
/// memory (a few hundred megabytes at most), whatever the number of data files.
pub const TOTAL_SAMPLES: usize = 2_000_000;
/// Bounds on one file's samples; with fewer than [`TOTAL_SAMPLES`] / 16,384 data files every file
/// gets the upper bound (about 1 MB of JSON for 60-byte keys).
pub const MIN_FILE_SAMPLES: usize = 256;
pub const MAX_FILE_SAMPLES: usize = 16_384;

/// How many samples each file's summary may hold, for a report of `files` data files.
pub fn samples_per_file(files: usize) -> usize {
    (TOTAL_SAMPLES / files.max(1)).clamp(MIN_FILE_SAMPLES, MAX_FILE_SAMPLES)
}

/// The first key of a run of consecutive keys, and that run's objects and bytes. Stored as a
/// JSON array `[key, objects, bytes]` to keep summaries small.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sample(pub String, pub u64, pub u64);

/// What one data file of a report holds, compactly; see the module documentation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileSummary {
    pub format: String,
    pub version: u32,
    /// The file's index in the manifest's list, and its key.
    pub index: usize,
    pub file: String,
    /// Rows read, and what was kept of them (after de-duplication within the file).
    pub rows: u64,
    pub objects: u64,
    pub bytes: u64,
    /// Rows not kept, by reason.
    pub skipped: BTreeMap<String, u64>,
    /// The bound the samples were cut to.
    pub max_samples: usize,
    /// True if every version was kept (each row an object), false if only current versions
    /// were (a key is one object). Summaries stored before this field existed kept current ones.
    #[serde(default)]
    pub all_versions: bool,
    pub samples: Vec<Sample>,
}

impl FileSummary {
    /// Parses a stored summary, checking that it is the one of data file `index`.
    pub fn parse(what: &str, bytes: &[u8], index: usize) -> Result<Self> {
        let s: FileSummary = serde_json::from_slice(bytes).map_err(|e| Error::corrupt(what, e.to_string()))?;
        if s.format != SUMMARY_FORMAT || s.version != SUMMARY_VERSION {
            return Err(Error::corrupt(
                what,
                format!("format {} version {} is not {SUMMARY_FORMAT} {SUMMARY_VERSION}", s.format, s.version),
            ));
        }
        if s.index != index {
            return Err(Error::corrupt(what, format!("summarises data file {}, not {index}", s.index)));
        }
        Ok(s)
    }
}

fn parent(key: &str) -> &str {
    key.rfind('/').map_or("", |i| &key[..=i])
}

/// Closes runs of keys into samples at a fixed granularity (see the module documentation).
#[derive(Debug)]
struct Sampler {
    objects_step: u64,
    bytes_step: u64,
    samples: Vec<Sample>,
    prev: String,
}

impl Sampler {
    /// A sampler cutting `objects` objects of `bytes` bytes into at most `max_samples + 1` samples.
    fn new(objects: u64, bytes: u64, max_samples: usize) -> Self {
        // A run closes when full, or at a directory change when half full; each closed run thus
        // holds at least half a step of objects or of bytes, which bounds the samples by
        // 2 × (objects / step + bytes / step) = max_samples.
        let runs = (max_samples / 4).max(1) as u64;
        Sampler {
            objects_step: objects.div_ceil(runs).max(1),
            bytes_step: bytes.div_ceil(runs).max(1),
            samples: Vec::new(),
            prev: String::new(),
        }
    }

    /// Adds the next key (or the next run of keys, starting at `key`).
    fn push(&mut self, key: &str, objects: u64, bytes: u64) {
        let close = match self.samples.last() {
            None => true,
            Some(Sample(_, o, b)) => {
                let full = *o >= self.objects_step || *b >= self.bytes_step;
                let half = *o >= self.objects_step.div_ceil(2) || *b >= self.bytes_step.div_ceil(2);
                full || (half && parent(key) != parent(&self.prev))
            }
        };
        if close {
            self.samples.push(Sample(key.to_string(), 0, 0));
        }
        if let Some(last) = self.samples.last_mut() {
            last.1 = last.1.saturating_add(objects);
            last.2 = last.2.saturating_add(bytes);
        }
        self.prev.clear();
        self.prev.push_str(key);
    }
}

/// A bounded summary of a key stream whose length is not known in advance (a listing).
///
/// Every key is its own sample until the summary holds more than `max_samples`; it is then
/// re-cut with the rules of a file's summary at the granularity of what it has seen so far, keeping at
/// most half the bound, and keys that follow join runs of that granularity. Samples thus stay
/// under `max_samples + 1` however long the stream, and a stream of at most `max_samples` keys
/// keeps every key, so its merged plan is exactly the plan of the sorted keys. The result
/// depends only on the stream, so the same keys in the same order give the same samples.
#[derive(Debug)]
pub struct StreamSampler {
    max_samples: usize,
    sampler: Sampler,
    objects: u64,
    bytes: u64,
    last: String,
}

impl StreamSampler {
    /// An empty summary of at most `max_samples` (at least 4) samples.
    pub fn new(max_samples: usize) -> Self {
        let max_samples = max_samples.max(4);
        // With zero totals every step is 1, so every key closes a run: one sample per key.
        StreamSampler { max_samples, sampler: Sampler::new(0, 0, max_samples), objects: 0, bytes: 0, last: String::new() }
    }

    /// Adds the next key (keys must come in ascending order, as a listing gives them).
    pub fn push(&mut self, key: &str, objects: u64, bytes: u64) {
        self.sampler.push(key, objects, bytes);
        self.objects = self.objects.saturating_add(objects);
        self.bytes = self.bytes.saturating_add(bytes);
        self.last.clear();
        self.last.push_str(key);
        if self.sampler.samples.len() > self.max_samples {
            self.sampler = resample(std::mem::take(&mut self.sampler.samples), self.objects, self.bytes, self.max_samples / 2);
            // Directory changes are judged against the last key, not the last sample's key.
            self.sampler.prev.clone_from(&self.last);
        }
    }

    /// Samples held now.
    pub fn len(&self) -> usize {
        self.sampler.samples.len()
    }

    /// True if no key was pushed.
    pub fn is_empty(&self) -> bool {
        self.sampler.samples.is_empty()
    }

    /// The samples so far, in key order.
    pub fn samples(&self) -> &[Sample] {
        &self.sampler.samples
    }

    /// The samples, in key order.
    pub fn finish(self) -> Vec<Sample> {
        self.sampler.samples
    }
}

/// Re-cuts sorted samples (standing for `objects` and `bytes` in all) into at most
/// `max_samples + 1` coarser ones: each new sample starts at an old sample's key, so every
/// bound the plan can cut at is still a real key.
fn resample(samples: Vec<Sample>, objects: u64, bytes: u64, max_samples: usize) -> Sampler {
    let mut sampler = Sampler::new(objects, bytes, max_samples);
    for Sample(key, o, b) in samples {
        sampler.push(&key, o, b);
    }
    sampler
}

/// Reads data file `index` of `inventory` (and only it) and summarises it in at most
/// `max_samples + 1` samples. Memory is bounded by `memory_budget` (the sort spills beyond it).
pub fn summarise_file(
    inventory: &Inventory,
    index: usize,
    read: &ReadOptions,
    max_samples: usize,
    memory_budget: usize,
) -> Result<FileSummary> {
    let Some(file) = inventory.manifest().files.get(index) else {
        return Err(Error::Invalid(format!(
            "data file {index} does not exist: manifest {} lists {} files",
            inventory.manifest().key,
            inventory.manifest().files.len()
        )));
    };
    let mut sorter = ExternalSorter::new(memory_budget, inventory.spill_root.clone());
    let mut totals = super::Totals::default();
    let (mut kept, mut kept_bytes) = (0u64, 0u64);
    inventory.for_each_row(index..index + 1, |row| {
        totals.rows += 1;
        match read.skip_reason(row) {
            Some(reason) => totals.skip(reason),
            None => {
                kept += 1;
                kept_bytes = kept_bytes.saturating_add(row.size);
                sorter.push(row.key.as_bytes(), row.size)?;
            }
        }
        Ok(())
    })?;
    let mut sampler = Sampler::new(kept, kept_bytes, max_samples);
    // The same de-duplication as the one-shot plan: sorted by (key, size), a key listed twice
    // keeps its smallest listing, unless every version is kept, when each row counts.
    let mut current: Vec<u8> = Vec::new();
    let mut pending: Option<(u64, u64)> = None;
    let mut duplicates = 0u64;
    let flush = |sampler: &mut Sampler, key: &[u8], objects: u64, bytes: u64| -> Result<()> {
        let key = std::str::from_utf8(key).map_err(|_| Error::corrupt("inventory sort run", "a key is no longer UTF-8"))?;
        sampler.push(key, objects, bytes);
        Ok(())
    };
    sorter.finish(|key, size| {
        match &mut pending {
            Some((objects, bytes)) if key == current.as_slice() => {
                if read.all_versions {
                    *objects += 1;
                    *bytes = bytes.saturating_add(size);
                } else {
                    duplicates += 1;
                }
            }
            _ => {
                if let Some((objects, bytes)) = pending.take() {
                    flush(&mut sampler, &current, objects, bytes)?;
                }
                current.clear();
                current.extend_from_slice(key);
                pending = Some((1, size));
            }
        }
        Ok(())
    })?;
    if let Some((objects, bytes)) = pending {
        flush(&mut sampler, &current, objects, bytes)?;
    }
    if duplicates > 0 {
        *totals.skipped.entry(SKIP_DUPLICATE.to_string()).or_default() += duplicates;
    }
    let samples = sampler.samples;
    Ok(FileSummary {
        format: SUMMARY_FORMAT.into(),
        version: SUMMARY_VERSION,
        index,
        file: file.key.clone(),
        rows: totals.rows,
        objects: samples.iter().map(|s| s.1).sum(),
        bytes: samples.iter().map(|s| s.2).sum(),
        skipped: totals.skipped,
        max_samples,
        all_versions: read.all_versions,
        samples,
    })
}

/// Merges the summaries of every data file into partitions.
///
/// The result depends only on the set of summaries (not their order), so the one-shot seeder,
/// which summarises every file in one process, and the stepwise seeder, which summarises one
/// file per invocation, plan the same partitions.
pub fn merge(summaries: &[FileSummary], targets: PlanTargets) -> Result<Vec<Partition>> {
    Ok(merge_summaries(summaries, targets)?.partitions)
}

/// Merges the summaries of every data file into the plan of the report, with its totals: what
/// `tidemark inventory plan` prints and what the seeders plan.
///
/// A key that starts a sample in several files is one point. Unless the summaries keep every
/// version, it is also one object: a key listed by two files is counted once (the smaller
/// listing's bytes when both samples are that key alone) and the other listings are skipped as
/// duplicates, as a plan of the whole sorted report would. A duplicate that falls inside a
/// sampled run of another file cannot be seen and counts twice.
pub fn merge_summaries(summaries: &[FileSummary], targets: PlanTargets) -> Result<InventoryPlan> {
    let dedup = !summaries.iter().any(|s| s.all_versions);
    let (partitions, duplicates) = merge_points(summaries.iter().flat_map(|s| &s.samples).collect(), targets, dedup)?;
    let mut totals = Totals { rows: summaries.iter().map(|s| s.rows).sum(), ..Totals::default() };
    for s in summaries {
        for (reason, n) in &s.skipped {
            *totals.skipped.entry(reason.clone()).or_default() += n;
        }
    }
    if duplicates > 0 {
        *totals.skipped.entry(SKIP_DUPLICATE.to_string()).or_default() += duplicates;
    }
    totals.objects = partitions.iter().map(|p| p.objects).sum();
    totals.bytes = partitions.iter().map(|p| p.bytes).sum();
    Ok(InventoryPlan { partitions, totals })
}

/// Feeds samples from any number of summaries of disjoint key sets (the ranges of a listing),
/// in any order, to the [`Planner`] in key order. The plan depends only on the set of samples.
pub fn merge_samples(samples: Vec<&Sample>, targets: PlanTargets) -> Result<Vec<Partition>> {
    Ok(merge_points(samples, targets, false)?.0)
}

/// Plans from samples; samples that share a key are one point (see [`merge_summaries`] for
/// `dedup`). Returns the partitions and the listings dropped as duplicates.
fn merge_points(mut samples: Vec<&Sample>, targets: PlanTargets, dedup: bool) -> Result<(Vec<Partition>, u64)> {
    samples.sort_unstable_by(|a, b| a.0.cmp(&b.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));
    let mut planner = Planner::new(targets);
    let mut duplicates = 0u64;
    let mut i = 0;
    while i < samples.len() {
        let key = &samples[i].0;
        let end = i + samples[i..].iter().take_while(|s| &s.0 == key).count();
        let group = &samples[i..end];
        let mut objects = group.iter().fold(0u64, |n, s| n.saturating_add(s.1));
        let mut bytes = group.iter().fold(0u64, |n, s| n.saturating_add(s.2));
        if dedup && group.len() > 1 {
            // Every sample of the group counts the key itself once: keep one of them. Samples
            // of one key alone come first (sorted by objects), the smallest listing first.
            let extra = group.len() as u64 - 1;
            duplicates += extra;
            objects = objects.saturating_sub(extra);
            let runs: Vec<&&Sample> = group.iter().filter(|s| s.1 > 1).collect();
            bytes = if runs.is_empty() { group[0].2 } else { runs.iter().fold(0u64, |n, s| n.saturating_add(s.2)) };
        }
        planner.push_many(key, objects, bytes)?;
        i = end;
    }
    Ok((planner.finish(), duplicates))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sampled(keys: &[(&str, u64)], max_samples: usize) -> Vec<Sample> {
        let objects = keys.len() as u64;
        let bytes = keys.iter().map(|k| k.1).sum();
        let mut s = Sampler::new(objects, bytes, max_samples);
        for (k, b) in keys {
            s.push(k, 1, *b);
        }
        s.samples
    }

    #[test]
    fn small_files_keep_every_key_and_large_ones_stay_bounded() {
        let keys: Vec<String> = (0..100).map(|i| format!("d{}/k{i:03}", i / 10)).collect();
        let refs: Vec<(&str, u64)> = keys.iter().map(|k| (k.as_str(), 5)).collect();
        assert_eq!(sampled(&refs, 400).len(), 100, "a file of at most max_samples / 4 keys keeps every key");
        for n in [1_000usize, 10_000, 100_000] {
            let keys: Vec<String> = (0..n).map(|i| format!("d{}/k{i:06}", i / 7)).collect();
            let refs: Vec<(&str, u64)> = keys.iter().map(|k| (k.as_str(), (k.len() as u64 * 37) % 1000)).collect();
            let s = sampled(&refs, 64);
            assert!(s.len() <= 65, "{n} keys gave {} samples", s.len());
            assert_eq!(s.iter().map(|s| s.1).sum::<u64>(), n as u64);
            assert_eq!(s.iter().map(|s| s.2).sum::<u64>(), refs.iter().map(|r| r.1).sum::<u64>());
        }
    }

    #[test]
    fn runs_close_at_directory_changes_once_half_full() {
        // Directories of 6 keys and a step of 8 keys: each run ends where its directory does.
        let keys: Vec<String> = (0..48).map(|i| format!("d{}/k{i:02}", i / 6)).collect();
        let refs: Vec<(&str, u64)> = keys.iter().map(|k| (k.as_str(), 1)).collect();
        let s = sampled(&refs, 24);
        assert_eq!(s.len(), 8, "{s:?}");
        assert!(s.iter().all(|s| s.0.split("/k").nth(1).unwrap().parse::<usize>().unwrap() % 6 == 0), "{s:?}");
    }

    #[test]
    fn merging_is_independent_of_summary_order() {
        let summary = |index: usize, samples: Vec<Sample>| FileSummary {
            format: SUMMARY_FORMAT.into(),
            version: SUMMARY_VERSION,
            index,
            file: format!("f{index}"),
            rows: 0,
            objects: samples.iter().map(|s| s.1).sum(),
            bytes: samples.iter().map(|s| s.2).sum(),
            skipped: BTreeMap::new(),
            max_samples: 8,
            all_versions: false,
            samples,
        };
        let a = summary(0, vec![Sample("a/1".into(), 5, 50), Sample("b/1".into(), 5, 50)]);
        let b = summary(1, vec![Sample("a/1".into(), 1, 1), Sample("c/1".into(), 7, 70)]);
        let targets = PlanTargets { objects: 6, bytes: u64::MAX };
        let one = merge(&[a.clone(), b.clone()], targets).unwrap();
        assert_eq!(one, merge(&[b.clone(), a.clone()], targets).unwrap());
        let shape: Vec<(&str, u64)> = one.iter().map(|p| (p.start.as_str(), p.objects)).collect();
        // a/1 starts a run in both files: one point, and the key itself one object (5 + 1 - 1).
        assert_eq!(shape, vec![("", 10), ("c/1", 7)], "the same key in two files is one point and one object");
        let versions = |mut s: FileSummary| {
            s.all_versions = true;
            s
        };
        let every = merge_summaries(&[versions(a), versions(b)], targets).unwrap();
        let shape: Vec<(&str, u64)> = every.partitions.iter().map(|p| (p.start.as_str(), p.objects)).collect();
        assert_eq!(shape, vec![("", 6), ("b/1", 12)], "with every version kept, each listing counts");
        assert!(every.totals.skipped.is_empty());
    }

    #[test]
    fn a_stream_keeps_every_key_up_to_its_bound_and_stays_bounded_beyond() {
        let mut small = StreamSampler::new(64);
        (0..64).for_each(|i| small.push(&format!("d{:02}/k{i:03}", i / 10), 1, 3));
        assert_eq!(small.finish().len(), 64, "at most max_samples keys: one sample each");
        for n in [1_000usize, 100_000] {
            let mut s = StreamSampler::new(64);
            (0..n).for_each(|i| s.push(&format!("d{:05}/k{i:06}", i / 7), 1, (i % 10) as u64));
            let samples = s.finish();
            assert!(samples.len() <= 65, "{n} keys gave {} samples", samples.len());
            assert_eq!(samples.iter().map(|s| s.1).sum::<u64>(), n as u64);
            assert_eq!(samples.iter().map(|s| s.2).sum::<u64>(), (0..n).map(|i| (i % 10) as u64).sum::<u64>());
            assert!(samples.windows(2).all(|w| w[0].0 < w[1].0), "in key order");
        }
    }
}
