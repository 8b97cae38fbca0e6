//! Planning from a report: every kept row goes through the external sorter, and the sorted
//! stream is cut into partitions by the [`Planner`]. This is what
//! `tidemark inventory plan --manifest URL --json` prints.

use std::path::PathBuf;

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
    let mut totals = Totals::default();
    let mut sorter = ExternalSorter::new(opts.memory_budget, opts.spill_dir.clone());
    inventory.for_each_row(0..inventory.manifest().files.len(), |row| {
        totals.rows += 1;
        match opts.read.skip_reason(row) {
            Some(reason) => totals.skip(reason),
            None => sorter.push(row.key.as_bytes(), row.size)?,
        }
        Ok(())
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
