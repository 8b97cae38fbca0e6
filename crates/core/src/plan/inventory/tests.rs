//! Unit tests of the reader and planner against small reports written by hand, so that every
//! bad-input error can be provoked precisely.

use std::io::Write;
use std::path::PathBuf;

use flate2::write::GzEncoder;
use flate2::Compression;

use super::manifest::md5_hex;
use super::*;
use crate::plan::partition::PlanTargets;

/// A temporary bucket root, removed on drop.
struct Root(PathBuf);

impl Root {
    fn new(name: &str) -> Root {
        let dir = sort::SpillDir::new(None).unwrap();
        let p = dir.path().join(name);
        // The directory outlives the guard on purpose; `Root` removes it instead.
        std::mem::forget(dir);
        std::fs::create_dir_all(&p).unwrap();
        Root(p)
    }

    fn write(&self, key: &str, bytes: &[u8]) {
        let p = self.0.join(key);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, bytes).unwrap();
    }

    /// Writes a CSV report whose data files hold `files` (each a list of gzip members of
    /// CSV text), and returns the manifest URL.
    fn csv_report(&self, schema: &str, files: &[Vec<&str>]) -> String {
        let mut listed = Vec::new();
        for (i, members) in files.iter().enumerate() {
            let mut bytes = Vec::new();
            for m in members {
                let mut gz = GzEncoder::new(Vec::new(), Compression::fast());
                gz.write_all(m.as_bytes()).unwrap();
                bytes.extend(gz.finish().unwrap());
            }
            let key = format!("inv/src-bucket/cfg/data/file-{i}.csv.gz");
            self.write(&key, &bytes);
            listed.push((key, bytes));
        }
        self.manifest("CSV", schema, &listed)
    }

    fn manifest(&self, format: &str, schema: &str, files: &[(String, Vec<u8>)]) -> String {
        let files: Vec<serde_json::Value> =
            files.iter().map(|(k, b)| serde_json::json!({"key": k, "size": b.len(), "MD5checksum": md5_hex(b)})).collect();
        let m = serde_json::json!({
            "sourceBucket": "src-bucket",
            "destinationBucket": "arn:aws:s3:::dest",
            "version": "2016-11-30",
            "creationTimestamp": "1514944800000",
            "fileFormat": format,
            "fileSchema": schema,
            "files": files,
        });
        let json = serde_json::to_vec_pretty(&m).unwrap();
        let dir = "inv/src-bucket/cfg/2026-01-01T00-00Z";
        self.write(&format!("{dir}/manifest.json"), &json);
        self.write(&format!("{dir}/manifest.checksum"), format!("{}\n", md5_hex(&json)).as_bytes());
        format!("file://{}/{dir}/manifest.json", self.0.display())
    }

    fn path(&self, key: &str) -> PathBuf {
        self.0.join(key)
    }
}

impl Drop for Root {
    fn drop(&mut self) {
        if let Some(parent) = self.0.parent() {
            let _ = std::fs::remove_dir_all(parent);
        }
    }
}

fn read_all(url: &str, opts: &ReadOptions) -> Result<(Vec<InventoryRecord>, Totals)> {
    let inv = Inventory::open_url(url)?;
    let mut records = inv.records(opts);
    let mut out = Vec::new();
    for r in records.by_ref() {
        out.push(r?);
    }
    Ok((out, records.totals().clone()))
}

fn expect_inventory_error(r: Result<impl std::fmt::Debug>, file_suffix: &str, line: Option<u64>, detail: &str) {
    match r {
        Err(Error::Inventory { file, line: l, detail: d }) => {
            assert!(file.ends_with(file_suffix), "file {file:?} should end with {file_suffix:?} ({d})");
            assert_eq!(l, line, "line, in {file}: {d}");
            assert!(d.contains(detail), "{d:?} should mention {detail:?}");
        }
        other => panic!("expected an inventory error about {detail:?}, got {other:?}"),
    }
}

const VERSIONED: &str = "Bucket, Key, VersionId, IsLatest, IsDeleteMarker, Size, LastModifiedDate, ETag";

#[test]
fn versioned_reports_keep_current_versions_unless_asked() {
    let root = Root::new("versioned");
    let url = root.csv_report(
        VERSIONED,
        &[vec![
            "\"src-bucket\",\"a\",\"v2\",\"true\",\"false\",\"10\",\"2026-01-01T00:00:00.000Z\",\"e1\"\n\
             \"src-bucket\",\"a\",\"v1\",\"false\",\"false\",\"7\",\"2025-01-01T00:00:00.000Z\",\"e0\"\n\
             \"src-bucket\",\"b\",\"v9\",\"true\",\"true\",\"\",\"2026-01-02T00:00:00.000Z\",\"\"\n\
             \"src-bucket\",\"b\",\"v8\",\"false\",\"false\",\"5\",\"2025-06-01T00:00:00.000Z\",\"e2\"\n",
        ]],
    );
    let (rows, totals) = read_all(&url, &ReadOptions::default()).unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].key, "a");
    assert_eq!(rows[0].version_id.as_deref(), Some("v2"));
    assert_eq!(rows[0].etag.as_deref(), Some("e1"));
    assert_eq!(rows[0].last_modified.unwrap().to_rfc3339(), "2026-01-01T00:00:00+00:00");
    assert_eq!((totals.rows, totals.objects, totals.bytes), (4, 1, 10));
    assert_eq!(totals.skipped.get(SKIP_NONCURRENT), Some(&2));
    assert_eq!(totals.skipped.get(SKIP_DELETE_MARKER), Some(&1));

    let all = ReadOptions { all_versions: true, prefix: None };
    let (rows, totals) = read_all(&url, &all).unwrap();
    assert_eq!(rows.len(), 4);
    assert!(rows[2].is_delete_marker && rows[2].is_latest && rows[2].size == 0);
    assert!(!rows[3].is_latest);
    assert_eq!((totals.objects, totals.bytes), (4, 22));
    assert!(totals.skipped.is_empty());

    // In a plan with every version, a key's versions share one partition entry.
    let plan = plan_from_manifest(&url, &PlanOptions { read: all, ..PlanOptions::default() }).unwrap();
    assert_eq!((plan.totals.rows, plan.totals.objects, plan.totals.bytes), (4, 4, 22));
}

#[test]
fn columns_are_mapped_by_name_whatever_their_order() {
    let a = Root::new("order-a");
    let url_a = a.csv_report("Bucket, Key, Size, ETag, StorageClass", &[vec!["\"src-bucket\",\"k+1\",\"5\",\"abc\",\"STANDARD\"\n"]]);
    let b = Root::new("order-b");
    let url_b = b.csv_report("Bucket, Key, StorageClass, ETag, Size", &[vec!["\"src-bucket\",\"k+1\",\"STANDARD\",\"abc\",\"5\"\n"]]);
    let (ra, _) = read_all(&url_a, &ReadOptions::default()).unwrap();
    let (rb, _) = read_all(&url_b, &ReadOptions::default()).unwrap();
    assert_eq!(ra, rb);
    assert_eq!(ra[0].key, "k 1");
    assert_eq!(ra[0].size, 5);
    assert_eq!(ra[0].storage_class.as_deref(), Some("STANDARD"));
}

#[test]
fn multi_member_gzip_and_awkward_keys_are_read() {
    let root = Root::new("members");
    let url = root.csv_report(
        "Bucket, Key, Size",
        &[
            vec!["\"src-bucket\",\"a%20b+c%2Bd\",\"1\"\n", "\"src-bucket\",\"%C3%BCber%3D%25\",\"2\"\n"],
            vec!["\"src-bucket\",\"dir/x,y\",\"3\"\n\n"],
        ],
    );
    let (rows, totals) = read_all(&url, &ReadOptions::default()).unwrap();
    let keys: Vec<&str> = rows.iter().map(|r| r.key.as_str()).collect();
    assert_eq!(keys, vec!["a b c+d", "über=%", "dir/x,y"]);
    assert_eq!((totals.rows, totals.bytes), (3, 6));
    let only_dir = ReadOptions { all_versions: false, prefix: Some("dir/".into()) };
    let (rows, totals) = read_all(&url, &only_dir).unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(totals.skipped.get(SKIP_OUTSIDE_PREFIX), Some(&2));
}

#[test]
fn unsorted_reports_plan_like_sorted_ones() {
    let rows: Vec<String> = (0..3000).map(|i| format!("\"src-bucket\",\"d{}/k{:05}\",\"{}\"\n", i % 7, i, i % 100)).collect();
    let mut sorted = rows.clone();
    sorted.sort_by_key(|r| {
        let key = r.split("\",\"").nth(1).unwrap().to_string();
        key
    });
    let scrambled: Vec<String> = (0..rows.len()).map(|i| rows[(i * 1009) % rows.len()].clone()).collect();
    let opts = PlanOptions {
        targets: PlanTargets { objects: 200, bytes: u64::MAX },
        // A budget this small forces the sort through many spilled runs.
        memory_budget: 0,
        ..PlanOptions::default()
    };
    let mut plans = Vec::new();
    for (name, lines) in [("sorted", &sorted), ("scrambled", &scrambled)] {
        let root = Root::new(name);
        let (a, b) = lines.split_at(1700);
        let (a, b) = (a.concat(), b.concat());
        let url = root.csv_report("Bucket, Key, Size", &[vec![b.as_str()], vec![a.as_str()]]);
        plans.push(plan_from_manifest(&url, &opts).unwrap());
    }
    assert_eq!(plans[0], plans[1]);
    let plan = &plans[0];
    assert_eq!(plan.totals.rows, 3000);
    assert_eq!(plan.partitions.iter().map(|p| p.objects).sum::<u64>(), 3000);
    assert_eq!(plan.partitions.first().unwrap().start, "");
    assert_eq!(plan.partitions.last().unwrap().end, None);
    for w in plan.partitions.windows(2) {
        assert_eq!(w[0].end.as_deref(), Some(w[1].start.as_str()));
    }
    let json = serde_json::to_value(plan).unwrap();
    assert_eq!(json["totals"]["skipped"], serde_json::json!({}));
    assert!(json["partitions"][0].get("start").is_some() && json["partitions"][0].get("end").is_some());
}

#[test]
fn duplicate_current_keys_are_counted_once() {
    let root = Root::new("dupes");
    let url = root.csv_report("Bucket, Key, Size", &[vec!["\"s\",\"a\",\"1\"\n\"s\",\"b\",\"2\"\n"], vec!["\"s\",\"a\",\"1\"\n"]]);
    let plan = plan_from_manifest(&url, &PlanOptions::default()).unwrap();
    assert_eq!((plan.totals.rows, plan.totals.objects, plan.totals.bytes), (3, 2, 3));
    assert_eq!(plan.totals.skipped.get(SKIP_DUPLICATE), Some(&1));
}

#[test]
fn manifest_problems_name_the_manifest() {
    let root = Root::new("manifest-errors");
    let url = root.csv_report("Bucket, Key, Size", &[vec!["\"s\",\"a\",\"1\"\n"]]);
    let dir = "inv/src-bucket/cfg/2026-01-01T00-00Z";

    let missing = format!("file://{}/{dir}/nope/manifest.json", root.0.display());
    expect_inventory_error(Inventory::open_url(&missing), "nope/manifest.json", None, "missing");

    std::fs::write(root.path(&format!("{dir}/manifest.checksum")), "0123456789abcdef0123456789abcdef").unwrap();
    expect_inventory_error(Inventory::open_url(&url), "manifest.json", None, "MD5 mismatch");

    std::fs::remove_file(root.path(&format!("{dir}/manifest.checksum"))).unwrap();
    expect_inventory_error(Inventory::open_url(&url), "manifest.checksum", None, "missing");

    let garbage = b"{\"sourceBucket\": \"s\",\n \"files\": [";
    std::fs::write(root.path(&format!("{dir}/manifest.json")), garbage).unwrap();
    std::fs::write(root.path(&format!("{dir}/manifest.checksum")), md5_hex(garbage)).unwrap();
    expect_inventory_error(Inventory::open_url(&url), "manifest.json", Some(2), "not a valid inventory manifest");
}

#[test]
fn data_file_problems_name_the_file_and_line() {
    let key0 = "inv/src-bucket/cfg/data/file-0.csv.gz";
    let good = "\"s\",\"a\",\"1\"\n\"s\",\"b\",\"2\"\n\"s\",\"c\",\"3\"\n";

    // A manifest whose MD5 for the data file is wrong.
    let root = Root::new("md5-pure");
    root.csv_report("Bucket, Key, Size", &[vec![good]]);
    let bytes = std::fs::read(root.path(key0)).unwrap();
    let dir = "inv/src-bucket/cfg/2026-01-01T00-00Z";
    let m = std::fs::read_to_string(root.path(&format!("{dir}/manifest.json"))).unwrap();
    let m = m.replace(&md5_hex(&bytes), "00000000000000000000000000000000");
    root.write(&format!("{dir}/manifest.json"), m.as_bytes());
    root.write(&format!("{dir}/manifest.checksum"), md5_hex(m.as_bytes()).as_bytes());
    let url = format!("file://{}/{dir}/manifest.json", root.0.display());
    expect_inventory_error(read_all(&url, &ReadOptions::default()), key0, None, "MD5 mismatch");
    expect_inventory_error(plan_from_manifest(&url, &PlanOptions::default()), key0, None, "MD5 mismatch");

    // A truncated gzip stream whose manifest agrees with the truncated bytes.
    let root = Root::new("truncated");
    let long: String = (0..20_000).map(|i| format!("\"s\",\"key-{i}\",\"{i}\"\n")).collect();
    root.csv_report("Bucket, Key, Size", &[vec![long.as_str()]]);
    let bytes = std::fs::read(root.path(key0)).unwrap();
    let cut = bytes[..bytes.len() / 2].to_vec();
    root.write(key0, &cut);
    let url = root.manifest("CSV", "Bucket, Key, Size", &[(key0.to_string(), cut)]);
    match read_all(&url, &ReadOptions::default()) {
        Err(Error::Inventory { file, line: Some(line), detail }) => {
            assert_eq!(file, key0);
            assert!(line > 1 && line < 20_000, "{line}");
            assert!(detail.contains("truncated"), "{detail}");
        }
        other => panic!("expected a truncation error, got {other:?}"),
    }

    // A row with the wrong number of columns, and a key that does not decode.
    let root = Root::new("columns");
    let url = root.csv_report("Bucket, Key, Size", &[vec![good], vec!["\"s\",\"ok\",\"1\"\n\"s\",\"short\"\n"]]);
    expect_inventory_error(
        read_all(&url, &ReadOptions::default()),
        "file-1.csv.gz",
        Some(2),
        "expected 3 columns (from fileSchema), found 2",
    );
    let root = Root::new("undecodable");
    let url = root.csv_report("Bucket, Key, Size", &[vec!["\"s\",\"ok\",\"1\"\n\"s\",\"ok\",\"1\"\n\"s\",\"bad%E9key\",\"1\"\n"]]);
    expect_inventory_error(read_all(&url, &ReadOptions::default()), "file-0.csv.gz", Some(3), "does not decode to UTF-8");
    expect_inventory_error(plan_from_manifest(&url, &PlanOptions::default()), "file-0.csv.gz", Some(3), "UTF-8");

    // A data file the manifest lists but the bucket lacks.
    let root = Root::new("missing-data");
    let url = root.csv_report("Bucket, Key, Size", &[vec![good], vec![good]]);
    std::fs::remove_file(root.path("inv/src-bucket/cfg/data/file-1.csv.gz")).unwrap();
    expect_inventory_error(read_all(&url, &ReadOptions::default()), "file-1.csv.gz", None, "missing");

    // Bytes that are not gzip at all.
    let root = Root::new("not-gzip");
    root.write(key0, good.as_bytes());
    let url = root.manifest("CSV", "Bucket, Key, Size", &[(key0.to_string(), good.as_bytes().to_vec())]);
    expect_inventory_error(read_all(&url, &ReadOptions::default()), key0, Some(1), "corrupt");
}

#[test]
fn orc_and_unknown_schemas_are_refused_clearly() {
    let root = Root::new("orc");
    let url = root.manifest("ORC", "struct<bucket:string,key:string>", &[]);
    let inv = Inventory::open_url(&url).unwrap();
    assert_eq!(inv.manifest().format, FileFormat::Orc);
    let empty = plan(&inv, &PlanOptions::default()).unwrap();
    assert_eq!(empty.partitions.len(), 1, "a report with no files is an empty bucket");
    let root = Root::new("orc-files");
    root.write("inv/src-bucket/cfg/data/a.orc", b"ORC");
    let url = root.manifest("ORC", "struct<bucket:string,key:string>", &[("inv/src-bucket/cfg/data/a.orc".into(), b"ORC".to_vec())]);
    expect_inventory_error(plan_from_manifest(&url, &PlanOptions::default()), "manifest.json", None, "ORC");

    let root = Root::new("no-key");
    let url = root.csv_report("Bucket, Size", &[vec!["\"s\",\"1\"\n"]]);
    expect_inventory_error(read_all(&url, &ReadOptions::default()), "manifest.json", None, "no Key column");
}

#[test]
fn the_root_is_found_whatever_the_prefix_depth() {
    let root = Root::new("deep");
    let body = "\"s\",\"a\",\"1\"\n";
    let mut gz = GzEncoder::new(Vec::new(), Compression::fast());
    gz.write_all(body.as_bytes()).unwrap();
    let bytes = gz.finish().unwrap();
    let key = "a/b/c/src-bucket/cfg/data/x.csv.gz";
    root.write(key, &bytes);
    let files = [(key.to_string(), bytes)];
    let list: Vec<serde_json::Value> =
        files.iter().map(|(k, b)| serde_json::json!({"key": k, "size": b.len(), "MD5checksum": md5_hex(b)})).collect();
    let json = serde_json::to_vec(&serde_json::json!({
        "sourceBucket": "src-bucket", "fileFormat": "CSV", "fileSchema": "Bucket, Key, Size", "files": list
    }))
    .unwrap();
    let dir = "a/b/c/src-bucket/cfg/2026-01-01T00-00Z";
    root.write(&format!("{dir}/manifest.json"), &json);
    root.write(&format!("{dir}/manifest.checksum"), md5_hex(&json).as_bytes());
    let inv = Inventory::open_url(&format!("file://{}/{dir}/manifest.json", root.0.display())).unwrap();
    assert_eq!(inv.manifest().key, format!("{dir}/manifest.json"));
    assert_eq!(inv.records(&ReadOptions::default()).count(), 1);
}
