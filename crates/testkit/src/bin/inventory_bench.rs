//! Benchmarks the inventory reader and planner on a generated N-row CSV.gz report and prints
//! one JSON line: the reader's rows per second against `zcat` of the same files (gzip
//! decompression is the physical floor), the plan's balance (largest partition ÷ mean, both as the
//! plan estimates it and as counted by a second pass over the report), and peak RSS.
//!
//! Usage: `inventory_bench N [--files F] [--target-objects T] [--dir DIR]`. With `--dir`, the
//! report is kept there and reused by later runs with the same N and F. The reader and the
//! planner each run in a child process of this binary, so that each peak RSS (VmHWM) is theirs
//! alone and not the generator's.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use tidemark_core::plan::inventory::{plan_from_manifest, Inventory, PlanOptions, ReadOptions};
use tidemark_core::plan::partition::PlanTargets;
use tidemark_testkit::inventory_gen::{write_report, ReportSpec};

/// Peak resident set size of this process, in bytes, from /proc/self/status.
fn peak_rss() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Child mode: reads every row through the public streaming iterator.
fn measure_read(url: &str) -> Result<Value> {
    let start = Instant::now();
    let inv = Inventory::open_url(url)?;
    let mut records = inv.records(&ReadOptions::default());
    let mut rows = 0u64;
    let mut bytes = 0u64;
    for r in records.by_ref() {
        let r = r?;
        rows += 1;
        bytes += r.size;
    }
    let secs = start.elapsed().as_secs_f64();
    if records.totals().rows != rows {
        bail!("the reader skipped rows of an unversioned report");
    }
    Ok(json!({"rows": rows, "bytes": bytes, "secs": secs, "peak_rss": peak_rss()}))
}

/// Largest ÷ mean of `values` (0 when there are none).
fn balance(values: &[u64]) -> f64 {
    let mean = values.iter().sum::<u64>() as f64 / values.len().max(1) as f64;
    let largest = values.iter().copied().max().unwrap_or(0) as f64;
    if mean > 0.0 {
        largest / mean
    } else {
        0.0
    }
}

/// Child mode: plans the report, then counts the rows that really fall in each planned partition.
///
/// The plan's per-partition counts are estimates once a file's summary samples instead of keeping
/// every key, so the balance is reported twice: from the plan's estimates, and from a second
/// streaming pass over the report that assigns every kept row to its partition (a binary search
/// over the partition starts). Peak RSS and time are taken before that pass, so they are the
/// planner's alone (the pass is a streaming read, whose memory the reader child measures).
fn measure_plan(url: &str, target: u64) -> Result<Value> {
    let start = Instant::now();
    let opts = PlanOptions { targets: PlanTargets { objects: target, ..PlanTargets::default() }, ..PlanOptions::default() };
    let plan = plan_from_manifest(url, &opts)?;
    let secs = start.elapsed().as_secs_f64();
    let plan_rss = peak_rss();

    let parts = &plan.partitions;
    let est_objects: Vec<u64> = parts.iter().map(|p| p.objects).collect();
    let est_bytes: Vec<u64> = parts.iter().map(|p| p.bytes).collect();
    let count_start = Instant::now();
    let mut true_objects = vec![0u64; parts.len()];
    let mut true_bytes = vec![0u64; parts.len()];
    let mut uncovered = 0u64;
    let inv = Inventory::open_url(url)?;
    for r in inv.records(&opts.read) {
        let r = r?;
        // Partitions are sorted, contiguous key ranges: the candidate is the last one starting at or before the key.
        let i = parts.partition_point(|p| p.start.as_str() <= r.key.as_str());
        match i.checked_sub(1).filter(|&i| parts[i].contains(&r.key)) {
            Some(i) => {
                true_objects[i] += 1;
                true_bytes[i] += r.size;
            }
            None => uncovered += 1,
        }
    }
    let count_secs = count_start.elapsed().as_secs_f64();
    // Largest estimation error of one partition's object count, relative to the mean partition.
    let mean = true_objects.iter().sum::<u64>() as f64 / parts.len().max(1) as f64;
    let max_error = est_objects.iter().zip(&true_objects).map(|(e, t)| e.abs_diff(*t)).max().unwrap_or(0) as f64;
    Ok(json!({
        "secs": secs,
        "objects": plan.totals.objects,
        "partitions": parts.len(),
        "balance_estimated": balance(&est_objects),
        "bytes_balance_estimated": balance(&est_bytes),
        "balance_true": balance(&true_objects),
        "bytes_balance_true": balance(&true_bytes),
        "true_objects": true_objects.iter().sum::<u64>(),
        "uncovered_rows": uncovered,
        "max_estimate_error_vs_mean": if mean > 0.0 { max_error / mean } else { 0.0 },
        "count_secs": count_secs,
        "peak_rss": plan_rss,
    }))
}

fn child(mode: &str, url: &str, target: u64) -> Result<Value> {
    let exe = std::env::current_exe()?;
    let out = Command::new(exe).args(["--child", mode, url, &target.to_string()]).stderr(Stdio::inherit()).output()?;
    if !out.status.success() {
        bail!("{mode} child failed: {}", String::from_utf8_lossy(&out.stdout));
    }
    Ok(serde_json::from_slice(&out.stdout)?)
}

fn zcat(root: &Path, keys: &[String]) -> Result<f64> {
    let start = Instant::now();
    let status = Command::new("zcat").args(keys.iter().map(|k| root.join(k))).stdout(Stdio::null()).status().context("run zcat")?;
    if !status.success() {
        bail!("zcat failed");
    }
    Ok(start.elapsed().as_secs_f64())
}

fn arg<T: std::str::FromStr>(args: &[String], name: &str) -> Result<Option<T>> {
    match args.iter().position(|a| a == name) {
        None => Ok(None),
        Some(i) => {
            let v = args.get(i + 1).with_context(|| format!("{name} needs a value"))?;
            Ok(Some(v.parse().map_err(|_| anyhow::anyhow!("bad value for {name}: {v}"))?))
        }
    }
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--child") {
        let (mode, url) = (&args[1], &args[2]);
        let target: u64 = args[3].parse()?;
        let v = if mode == "read" { measure_read(url)? } else { measure_plan(url, target)? };
        println!("{v}");
        return Ok(());
    }
    let n: u64 = args.first().context("usage: inventory_bench N [--files F] [--target-objects T] [--dir DIR]")?.parse()?;
    let files: usize = arg(&args, "--files")?.unwrap_or_else(|| n.div_ceil(1_000_000).max(1) as usize);
    let target: u64 = arg(&args, "--target-objects")?.unwrap_or(100_000);
    let kept: Option<PathBuf> = arg(&args, "--dir")?;
    let temp;
    let root = match &kept {
        Some(d) => d.join(format!("n{n}-f{files}")),
        None => {
            temp = tempfile::tempdir()?;
            temp.path().to_path_buf()
        }
    };
    let spec = ReportSpec::new(n, files);
    let done_marker = root.join(".complete");
    let gen_start = Instant::now();
    let report = if done_marker.exists() {
        None
    } else {
        let r = write_report(&root, &spec)?;
        std::fs::write(&done_marker, b"")?;
        Some(r)
    };
    let gen_secs = report.as_ref().map(|_| gen_start.elapsed().as_secs_f64());
    let url = format!("file://{}", root.join(spec.manifest_key()).display());
    let inv = Inventory::open_url(&url)?;
    let keys: Vec<String> = inv.manifest().files.iter().map(|f| f.key.clone()).collect();
    let compressed: u64 = inv.manifest().files.iter().map(|f| f.size).sum();

    // Warm the page cache once so neither side pays for the disk.
    zcat(&root, &keys)?;
    let zcat_secs = zcat(&root, &keys)?;
    let read = child("read", &url, target)?;
    let plan = child("plan", &url, target)?;
    let rows = read["rows"].as_u64().unwrap_or(0);
    let read_secs = read["secs"].as_f64().unwrap_or(f64::NAN);
    let out = json!({
        "rows": rows,
        "files": keys.len(),
        "compressed_bytes": compressed,
        "generate_secs": gen_secs,
        "zcat_secs": zcat_secs,
        "zcat_rows_per_sec": rows as f64 / zcat_secs,
        "reader_secs": read_secs,
        "reader_rows_per_sec": rows as f64 / read_secs,
        "reader_vs_zcat": zcat_secs / read_secs,
        "reader_peak_rss": read["peak_rss"],
        "plan_secs": plan["secs"],
        "plan_rows_per_sec": rows as f64 / plan["secs"].as_f64().unwrap_or(f64::NAN),
        "plan_partitions": plan["partitions"],
        "plan_balance_true": plan["balance_true"],
        "plan_balance_estimated": plan["balance_estimated"],
        "plan_bytes_balance_true": plan["bytes_balance_true"],
        "plan_bytes_balance_estimated": plan["bytes_balance_estimated"],
        "plan_max_estimate_error_vs_mean": plan["max_estimate_error_vs_mean"],
        "plan_objects": plan["objects"],
        "plan_true_objects": plan["true_objects"],
        "plan_uncovered_rows": plan["uncovered_rows"],
        "plan_count_secs": plan["count_secs"],
        "plan_peak_rss": plan["peak_rss"],
    });
    println!("{out}");
    Ok(())
}
