//! Integration tests of the inventory reader and planner on reports written by the test kit's
//! generator: totals match what was generated, plans are contiguous, deterministic and
//! independent of row order, CSV and Parquet agree, and damaged files are named.

use std::collections::BTreeMap;

use tidemark_core::plan::inventory::{
    plan_from_manifest, Inventory, InventoryPlan, InventoryRecord, PlanOptions, ReadOptions, SKIP_DELETE_MARKER, SKIP_NONCURRENT,
};
use tidemark_core::plan::partition::PlanTargets;
use tidemark_core::Error;
use tidemark_testkit::inventory_gen::{rows, write_report, Report, ReportFormat, ReportSpec, RowOrder};

fn generate(spec: &ReportSpec) -> (tempfile::TempDir, Report) {
    let dir = tempfile::tempdir().unwrap();
    let report = write_report(dir.path(), spec).unwrap();
    (dir, report)
}

fn opts(objects: u64) -> PlanOptions {
    PlanOptions { targets: PlanTargets { objects, bytes: u64::MAX }, ..PlanOptions::default() }
}

/// Checks the plan's invariants and returns it.
fn check_plan(plan: &InventoryPlan) {
    let parts = &plan.partitions;
    assert!(!parts.is_empty());
    assert_eq!(parts.first().unwrap().start, "", "the first partition starts at the beginning");
    assert_eq!(parts.last().unwrap().end, None, "the last partition runs to the end");
    for w in parts.windows(2) {
        assert_eq!(w[0].end.as_deref(), Some(w[1].start.as_str()), "partitions must be contiguous");
        assert!(w[0].start < w[1].start, "partitions must ascend");
    }
    assert_eq!(parts.iter().map(|p| p.objects).sum::<u64>(), plan.totals.objects);
    assert_eq!(parts.iter().map(|p| p.bytes).sum::<u64>(), plan.totals.bytes);
    assert_eq!(plan.totals.objects + plan.totals.skipped.values().sum::<u64>(), plan.totals.rows);
}

fn read_sorted(url: &str, read: &ReadOptions) -> Vec<InventoryRecord> {
    let inv = Inventory::open_url(url).unwrap();
    let mut out: Vec<InventoryRecord> = inv.records(read).map(Result::unwrap).collect();
    out.sort_by(|a, b| (&a.key, &a.version_id).cmp(&(&b.key, &b.version_id)));
    out
}

#[test]
fn csv_plan_matches_what_was_generated() {
    // At most 4,096 keys per data file: every summary keeps every key, so the plan is exact.
    let spec = ReportSpec { rows_per_chunk: 700, ..ReportSpec::new(20_000, 5) };
    let (_dir, report) = generate(&spec);
    let plan = plan_from_manifest(&report.manifest_url, &opts(1_000)).unwrap();
    check_plan(&plan);
    assert_eq!(plan.totals.rows, report.expected.rows);
    assert_eq!(plan.totals.objects, 20_000);
    assert_eq!(plan.totals.bytes, report.expected.current_bytes);
    assert!(plan.totals.skipped.is_empty());
    let largest = plan.partitions.iter().map(|p| p.objects).max().unwrap();
    assert!(largest <= 1_250, "the planner's slack is a quarter of the target: {largest}");
    // Every generated key falls in exactly one partition, and partitions hold what they say.
    let mut counted = vec![0u64; plan.partitions.len()];
    for row in rows(&spec) {
        let hits: Vec<usize> = plan.partitions.iter().enumerate().filter(|(_, p)| p.contains(&row.key)).map(|(i, _)| i).collect();
        assert_eq!(hits.len(), 1, "{}", row.key);
        counted[hits[0]] += 1;
    }
    assert_eq!(counted, plan.partitions.iter().map(|p| p.objects).collect::<Vec<_>>());
    // The same report plans the same way twice, and the JSON has the contract's shape.
    assert_eq!(plan, plan_from_manifest(&report.manifest_url, &opts(1_000)).unwrap());
    let json = serde_json::to_value(&plan).unwrap();
    let keys = |v: &serde_json::Value| {
        let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
        k.sort();
        k
    };
    assert_eq!(keys(&json), ["partitions", "totals"]);
    assert_eq!(keys(&json["partitions"][0]), ["bytes", "end", "objects", "start"]);
    assert_eq!(keys(&json["totals"]), ["bytes", "objects", "rows", "skipped"]);
}

#[test]
fn sorted_and_shuffled_reports_plan_the_same() {
    // Files of at most 4,096 keys, so that summaries keep every key: then how rows are spread
    // over files does not matter (with sampled summaries it may, within the estimates).
    let base = ReportSpec { rows_per_chunk: 1_000, ..ReportSpec::new(15_000, 4) };
    let sorted = ReportSpec { order: RowOrder::Sorted, ..base.clone() };
    let shuffled_other_files = ReportSpec { order: RowOrder::Shuffled, files: 5, shuffle_columns: true, ..base.clone() };
    let small_budget = PlanOptions { memory_budget: 0, ..opts(800) };
    let mut plans = Vec::new();
    for spec in [&base, &sorted, &shuffled_other_files] {
        let (_dir, report) = generate(spec);
        let plan = plan_from_manifest(&report.manifest_url, &opts(800)).unwrap();
        check_plan(&plan);
        // Spilling to many runs changes nothing either.
        assert_eq!(plan, plan_from_manifest(&report.manifest_url, &small_budget).unwrap());
        plans.push(plan);
    }
    assert_eq!(plans[0], plans[1]);
    assert_eq!(plans[0], plans[2]);
}

#[test]
fn versioned_reports_in_both_formats_read_and_plan_alike() {
    let csv = ReportSpec { versioned: true, rows_per_chunk: 500, shuffle_columns: true, seed: 9, ..ReportSpec::new(6_000, 3) };
    let parquet = ReportSpec { format: ReportFormat::Parquet, shuffle_columns: false, ..csv.clone() };
    let (_d1, csv_report) = generate(&csv);
    let (_d2, pq_report) = generate(&parquet);
    assert_eq!(csv_report.expected, pq_report.expected);
    let e = &csv_report.expected;
    assert!(e.delete_markers > 0 && e.noncurrent_versions > 0, "{e:?}");

    for read in [ReadOptions::default(), ReadOptions { all_versions: true, prefix: None }] {
        let a = read_sorted(&csv_report.manifest_url, &read);
        let b = read_sorted(&pq_report.manifest_url, &read);
        assert_eq!(a.len(), b.len());
        assert_eq!(a, b, "CSV and Parquet must read to the same records");
        let mut want: Vec<_> = rows(&csv)
            .filter(|r| read.all_versions || (r.is_latest && !r.is_delete_marker))
            .map(|r| (r.key, r.version_id, r.size, r.etag, r.last_modified_ms, r.is_latest, r.is_delete_marker))
            .collect();
        want.sort_by(|x, y| (&x.0, &x.1).cmp(&(&y.0, &y.1)));
        let got: Vec<_> = a
            .into_iter()
            .map(|r| (r.key, r.version_id, r.size, r.etag, r.last_modified.unwrap().timestamp_millis(), r.is_latest, r.is_delete_marker))
            .collect();
        assert_eq!(got, want);
    }

    let current_csv = plan_from_manifest(&csv_report.manifest_url, &opts(500)).unwrap();
    let current_pq = plan_from_manifest(&pq_report.manifest_url, &opts(500)).unwrap();
    check_plan(&current_csv);
    assert_eq!(current_csv, current_pq);
    assert_eq!(current_csv.totals.objects, e.current_objects);
    assert_eq!(current_csv.totals.bytes, e.current_bytes);
    let skipped: BTreeMap<String, u64> =
        [(SKIP_DELETE_MARKER.to_string(), e.delete_markers), (SKIP_NONCURRENT.to_string(), e.noncurrent_versions)].into();
    assert_eq!(current_csv.totals.skipped, skipped);

    let all = PlanOptions { read: ReadOptions { all_versions: true, prefix: None }, ..opts(500) };
    let every = plan_from_manifest(&pq_report.manifest_url, &all).unwrap();
    check_plan(&every);
    assert_eq!((every.totals.rows, every.totals.objects, every.totals.bytes), (e.rows, e.rows, e.all_bytes));
}

#[test]
fn a_prefix_limits_the_plan() {
    let spec = ReportSpec::new(7_000, 2);
    let (_dir, report) = generate(&spec);
    let read = ReadOptions { all_versions: false, prefix: Some("tenants/".into()) };
    let plan = plan_from_manifest(&report.manifest_url, &PlanOptions { read, ..opts(300) }).unwrap();
    check_plan(&plan);
    let want = rows(&spec).filter(|r| r.key.starts_with("tenants/")).count() as u64;
    assert_eq!(plan.totals.objects, want);
    assert!(want > 0 && want < 7_000);
}

fn inventory_error<T: std::fmt::Debug>(r: Result<T, Error>) -> (String, Option<u64>, String) {
    match r {
        Err(Error::Inventory { file, line, detail }) => (file, line, detail),
        other => panic!("expected an inventory error, got {other:?}"),
    }
}

#[test]
fn damaged_generated_reports_name_the_file() {
    // A flipped byte inside a CSV data file: gzip or the MD5 check catches it, naming the file.
    let spec = ReportSpec::new(5_000, 2);
    let (_dir, report) = generate(&spec);
    let victim = &report.data_keys[1];
    let path = report.path(victim);
    let mut bytes = std::fs::read(&path).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x55;
    std::fs::write(&path, &bytes).unwrap();
    let (file, _, detail) = inventory_error(plan_from_manifest(&report.manifest_url, &PlanOptions::default()));
    assert_eq!(&file, victim, "{detail}");

    // A Parquet file whose bytes no longer match the manifest's MD5.
    let spec = ReportSpec { format: ReportFormat::Parquet, ..ReportSpec::new(3_000, 2) };
    let (_dir, report) = generate(&spec);
    let victim = &report.data_keys[0];
    let path = report.path(victim);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[10] ^= 0x01;
    std::fs::write(&path, &bytes).unwrap();
    let (file, line, detail) = inventory_error(plan_from_manifest(&report.manifest_url, &PlanOptions::default()));
    assert_eq!((&file, line), (victim, None));
    assert!(detail.contains("MD5 mismatch"), "{detail}");

    // A truncated CSV file whose manifest entry was rewritten to match: the gzip stream's
    // end is missing, and the error names the file and the line it had reached.
    let spec = ReportSpec { rows_per_chunk: 100_000, ..ReportSpec::new(30_000, 1) };
    let (_dir, report) = generate(&spec);
    let victim = report.data_keys[0].clone();
    let path = report.path(&victim);
    let bytes = std::fs::read(&path).unwrap();
    let cut = &bytes[..bytes.len() * 2 / 3];
    replace_data_file(&report, 0, cut);
    let (file, line, detail) = inventory_error(plan_from_manifest(&report.manifest_url, &PlanOptions::default()));
    assert_eq!(file, victim);
    assert!(line.is_some_and(|l| l > 1000 && l < 30_000), "{line:?}: {detail}");
    assert!(detail.contains("truncated"), "{detail}");
}

/// Overwrites data file `index` with `bytes` and rewrites the manifest (and its checksum) to
/// match, so that only the file's contents are wrong.
fn replace_data_file(report: &Report, index: usize, bytes: &[u8]) {
    std::fs::write(report.path(&report.data_keys[index]), bytes).unwrap();
    let manifest_path = report.path(&report.manifest_key);
    let mut manifest: serde_json::Value = serde_json::from_slice(&std::fs::read(&manifest_path).unwrap()).unwrap();
    manifest["files"][index]["size"] = bytes.len().into();
    manifest["files"][index]["MD5checksum"] = md5_hex(bytes).into();
    let json = serde_json::to_vec(&manifest).unwrap();
    std::fs::write(&manifest_path, &json).unwrap();
    std::fs::write(manifest_path.with_file_name("manifest.checksum"), md5_hex(&json)).unwrap();
}

#[test]
fn unreadable_parquet_names_the_file() {
    let spec = ReportSpec { format: ReportFormat::Parquet, ..ReportSpec::new(2_000, 2) };
    let (_dir, report) = generate(&spec);
    // Half a Parquet file: the footer, which holds the schema, is gone.
    let bytes = std::fs::read(report.path(&report.data_keys[1])).unwrap();
    replace_data_file(&report, 1, &bytes[..bytes.len() / 2]);
    let (file, _, detail) = inventory_error(plan_from_manifest(&report.manifest_url, &PlanOptions::default()));
    assert_eq!(file, report.data_keys[1]);
    assert!(detail.contains("not a readable Parquet file"), "{detail}");
}

fn md5_hex(bytes: &[u8]) -> String {
    use md5::{Digest, Md5};
    hex::encode(Md5::digest(bytes))
}
