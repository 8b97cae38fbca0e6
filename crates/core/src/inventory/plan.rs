//! Planning from a report: every kept row goes through the external sorter, and the sorted
//! stream is cut into partitions by the [`Planner`]. This is what
//! `tidemark inventory plan --manifest URL --json` prints.

use std::path::PathBuf;

use std::sync::mpsc;

use serde::{Deserialize, Serialize};

use super::sort::ExternalSorter;
use super::{Inventory, ReadOptions, Totals, SKIP_DUPLICATE};
use crate::partition::{Partition, PlanTargets, Planner};
use crate::{Error, Result};

/// How to plan.
#[derive(Debug, Clone)]
pub struct PlanOptions {
    pub targets: PlanTargets,
    pub read: ReadOptions,
    /// Bytes of (key, size) pairs held in memory before sorted runs spill to disk.
    pub memory_budget: usize,
    /// Where sort runs go; the system's temporary directory by default.
    pub spill_dir: Option<PathBuf>,
}

impl Default for PlanOptions {
    fn default() -> Self {
        PlanOptions { targets: PlanTargets::default(), read: ReadOptions::default(), memory_budget: 64 * 1024 * 1024, spill_dir: None }
    }
}

/// The plan of a report: the JSON contract of `tidemark inventory plan`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InventoryPlan {
    pub partitions: Vec<Partition>,
    pub totals: Totals,
}

/// Opens the report at `url` (a `file://` manifest URL) and plans it.
pub fn plan_from_manifest(url: &str, opts: &PlanOptions) -> Result<InventoryPlan> {
    let inventory = Inventory::open_url(url)?.with_spill_dir(opts.spill_dir.clone());
    plan(&inventory, opts)
}

/// Plans an opened report.
///
/// Rows may come in any order, within and across data files; the plan depends only on the
/// multiset of kept (key, size) pairs, so the same report always gives the same plan. Totals
/// count rows as read; `objects` and `bytes` are what the partitions hold. A key listed twice
/// is one object unless every version is kept, when each row is a version of its own.
pub fn plan(inventory: &Inventory, opts: &PlanOptions) -> Result<InventoryPlan> {
    let mut sorter = ExternalSorter::new(opts.memory_budget, opts.spill_dir.clone());
    // Reading (decompression, parsing) runs on its own thread while this one sorts, so the
    // two halves of the work overlap on a two-core machine (or a Lambda with two vCPUs).
    let (full_tx, full_rx) = mpsc::sync_channel::<Batch>(IN_FLIGHT);
    let (empty_tx, empty_rx) = mpsc::channel::<Batch>();
    let mut totals = std::thread::scope(|scope| -> Result<Totals> {
        let reader = scope.spawn(move || read_batches(inventory, &opts.read, full_tx, empty_rx));
        let mut sorted = Ok(());
        for batch in full_rx.iter() {
            sorted = batch.pairs().try_for_each(|(key, size)| sorter.push(key, size));
            if sorted.is_err() {
                break;
            }
            // The reader may have moved on without waiting for this batch back; that is fine.
            let _ = empty_tx.send(batch.cleared());
        }
        // Closing the channels stops a reader that is still going after a sort failure.
        drop(full_rx);
        drop(empty_tx);
        let read = reader.join().map_err(|_| Error::Inventory {
            file: inventory.manifest().key.clone(),
            line: None,
            detail: "a data file could not be decoded (the reader panicked; see the log)".into(),
        })?;
        sorted?;
        read
    })?;
    let mut planner = Planner::new(opts.targets);
    let mut current: Vec<u8> = Vec::new();
    let mut pending: Option<(u64, u64)> = None;
    let mut duplicates = 0u64;
    let all_versions = opts.read.all_versions;
    let flush = |planner: &mut Planner, key: &[u8], objects: u64, bytes: u64| -> Result<()> {
        let key = std::str::from_utf8(key).map_err(|_| Error::corrupt("inventory sort run", "a key is no longer UTF-8"))?;
        planner.push_many(key, objects, bytes)
    };
    sorter.finish(|key, size| {
        match &mut pending {
            Some((objects, bytes)) if key == current.as_slice() => {
                if all_versions {
                    *objects += 1;
                    *bytes = bytes.saturating_add(size);
                } else {
                    // Sorted by (key, size), so the smallest listing of a duplicated key is kept.
                    duplicates += 1;
                }
            }
            _ => {
                if let Some((objects, bytes)) = pending.take() {
                    flush(&mut planner, &current, objects, bytes)?;
                }
                current.clear();
                current.extend_from_slice(key);
                pending = Some((1, size));
            }
        }
        Ok(())
    })?;
    if let Some((objects, bytes)) = pending {
        flush(&mut planner, &current, objects, bytes)?;
    }
    if duplicates > 0 {
        *totals.skipped.entry(SKIP_DUPLICATE.to_string()).or_default() += duplicates;
    }
    let partitions = planner.finish();
    totals.objects = partitions.iter().map(|p| p.objects).sum();
    totals.bytes = partitions.iter().map(|p| p.bytes).sum();
    Ok(InventoryPlan { partitions, totals })
}

/// Batches of pairs handed from the reading thread to the sorting one; a few in flight keep
/// both busy without holding more than a few hundred kilobytes.
const IN_FLIGHT: usize = 4;
const BATCH_PAIRS: usize = 4096;

/// Kept (key, size) pairs, keys packed in one buffer; recycled between the threads.
#[derive(Default)]
struct Batch {
    keys: Vec<u8>,
    ends: Vec<usize>,
    sizes: Vec<u64>,
}

impl Batch {
    fn push(&mut self, key: &[u8], size: u64) {
        self.keys.extend_from_slice(key);
        self.ends.push(self.keys.len());
        self.sizes.push(size);
    }

    fn pairs(&self) -> impl Iterator<Item = (&[u8], u64)> {
        let starts = std::iter::once(0).chain(self.ends.iter().copied());
        starts.zip(&self.ends).zip(&self.sizes).map(|((s, &e), &size)| (&self.keys[s..e], size))
    }

    fn cleared(mut self) -> Batch {
        self.keys.clear();
        self.ends.clear();
        self.sizes.clear();
        self
    }
}

/// Reads every row, counts skips, and sends kept pairs in batches; returns the row totals.
fn read_batches(inventory: &Inventory, read: &ReadOptions, full: mpsc::SyncSender<Batch>, empty: mpsc::Receiver<Batch>) -> Result<Totals> {
    let mut totals = Totals::default();
    let mut batch = Batch::default();
    let closed = || Error::Invalid("the inventory sorter stopped".into());
    inventory.for_each_row(0..inventory.manifest().files.len(), |row| {
        totals.rows += 1;
        match read.skip_reason(row) {
            Some(reason) => totals.skip(reason),
            None => {
                batch.push(row.key.as_bytes(), row.size);
                if batch.sizes.len() >= BATCH_PAIRS {
                    let next = empty.try_recv().unwrap_or_default();
                    full.send(std::mem::replace(&mut batch, next)).map_err(|_| closed())?;
                }
            }
        }
        Ok(())
    })?;
    if !batch.sizes.is_empty() {
        full.send(batch).map_err(|_| closed())?;
    }
    Ok(totals)
}
