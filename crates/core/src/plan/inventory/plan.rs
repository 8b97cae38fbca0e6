//! Planning from a report: every data file is summarised on its own ([`summarise_file`]) and
//! the summaries merged into partitions ([`merge_summaries`]). This is the one planning function
//! of a report: `tidemark inventory plan --manifest URL --json` prints it, the one-shot seeder
//! (`seed::plan_by_inventory`) plans with it, and the stepwise seeder (`protect::steps`) runs the
//! same two halves in separate invocations, so all three give the same partitions.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::summary::{merge_summaries, samples_per_file, summarise_file};
use super::{Inventory, ReadOptions, Totals};
use crate::plan::partition::{Partition, PlanTargets};
use crate::Result;

/// How to plan.
#[derive(Debug, Clone)]
pub struct PlanOptions {
    pub targets: PlanTargets,
    pub read: ReadOptions,
    /// Bytes of (key, size) pairs one data file's sort holds in memory before it spills to disk.
    pub memory_budget: usize,
    /// Where sort runs go; the report's own spill directory (the system's temporary one) by default.
    pub spill_dir: Option<PathBuf>,
}

/// Bytes of keys a summary's sort holds in memory before it spills to disk.
pub const SUMMARY_SORT_BUDGET: usize = 64 * 1024 * 1024;

impl Default for PlanOptions {
    fn default() -> Self {
        PlanOptions { targets: PlanTargets::default(), read: ReadOptions::default(), memory_budget: SUMMARY_SORT_BUDGET, spill_dir: None }
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
/// rows of each file, so the same report always gives the same plan. Each file is summarised
/// in at most [`samples_per_file`] samples (memory is bounded by `opts.memory_budget` and that
/// bound, whatever the report's size); when every summary keeps every key the plan is exactly
/// the plan of the whole sorted report. Totals count rows as read; `objects` and `bytes` are
/// what the partitions hold. A key listed twice is one object unless every version is kept,
/// when each row is a version of its own.
pub fn plan(inventory: &Inventory, opts: &PlanOptions) -> Result<InventoryPlan> {
    let spill = opts.spill_dir.clone().or_else(|| inventory.spill_root.clone());
    let inventory = Inventory { source: inventory.source.clone(), manifest: inventory.manifest.clone(), spill_root: spill };
    let files = inventory.manifest().files.len();
    let max_samples = samples_per_file(files);
    let summaries =
        (0..files).map(|i| summarise_file(&inventory, i, &opts.read, max_samples, opts.memory_budget)).collect::<Result<Vec<_>>>()?;
    merge_summaries(&summaries, opts.targets)
}
