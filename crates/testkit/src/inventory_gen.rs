//! Writes realistic S3 Inventory reports (manifest, checksum, CSV.gz or Parquet data files) to a
//! local directory that stands for the destination bucket, for tests and benchmarks.
//!
//! Reports are generated row by row, so a ten-million-row report costs no more memory than a
//! small one. Every row is a pure function of the spec and its index, which lets tests compute
//! the expected contents ([`rows`], [`Expected`]) without reading the report back.
//!
//! Keys are awkward on purpose: spaces, `+`, `%`, `=`, commas and non-ASCII letters, in
//! several top-level prefixes. Rows can be written sorted or shuffled (within and across data
//! files), and columns can be put in a shuffled order, as S3 does not document theirs.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};
use flate2::write::GzEncoder;
use md5::{Digest, Md5};
use parquet::basic::Compression as ParquetCompression;
use parquet::data_type::{BoolType, ByteArray, ByteArrayType, Int64Type};
use parquet::file::properties::WriterProperties;
use parquet::file::writer::SerializedFileWriter;

/// The data file format of a generated report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportFormat {
    Csv,
    Parquet,
}

/// The order rows are written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowOrder {
    /// Ascending key order, in and across files.
    Sorted,
    /// A scrambled order: neither a file nor the report as a whole is sorted.
    Shuffled,
}

/// What report to write.
#[derive(Debug, Clone)]
pub struct ReportSpec {
    pub source_bucket: String,
    /// The report's prefix in the destination bucket (may contain `/`).
    pub prefix: String,
    pub config_id: String,
    /// The report's folder name, `YYYY-MM-DDTHH-MMZ`.
    pub timestamp: String,
    pub format: ReportFormat,
    /// Distinct keys in the source bucket.
    pub objects: u64,
    /// Data files to spread the rows over (at least one, unless there are no rows).
    pub files: usize,
    /// Include VersionId, IsLatest and IsDeleteMarker, with non-current versions and delete
    /// markers for some keys.
    pub versioned: bool,
    pub order: RowOrder,
    /// Put the optional columns in a seed-dependent order (Bucket and Key stay first).
    pub shuffle_columns: bool,
    pub seed: u64,
    /// Rows per gzip member (CSV) or row group (Parquet).
    pub rows_per_chunk: u64,
    /// gzip level for CSV (0-9).
    pub gzip_level: u32,
    /// Caps object sizes (sizes are otherwise spread from 0 to 16 MiB), so that a test can
    /// afford to create the objects a report lists.
    pub max_size: Option<u64>,
    /// Make each ETag the MD5 of [`object_body`] for the row, so that a test that writes the
    /// listed objects with those bodies gets a bucket matching the report.
    pub content_etags: bool,
}

impl ReportSpec {
    /// A CSV report of `objects` keys in shuffled order, over `files` data files.
    pub fn new(objects: u64, files: usize) -> Self {
        ReportSpec {
            source_bucket: "src-bucket".into(),
            prefix: "inventory/reports".into(),
            config_id: "daily-all".into(),
            timestamp: "2026-01-01T00-00Z".into(),
            format: ReportFormat::Csv,
            objects,
            files: files.max(1),
            versioned: false,
            order: RowOrder::Shuffled,
            shuffle_columns: false,
            seed: 1,
            rows_per_chunk: 50_000,
            gzip_level: 6,
            max_size: None,
            content_etags: false,
        }
    }

    /// The key of `manifest.json` in the destination bucket.
    pub fn manifest_key(&self) -> String {
        format!("{}/manifest.json", self.report_dir())
    }

    fn report_dir(&self) -> String {
        join(&[&self.prefix, &self.source_bucket, &self.config_id, &self.timestamp])
    }

    fn data_key(&self, file: usize) -> String {
        let h = mix(self.seed ^ 0xda7a ^ (file as u64) << 20);
        let ext = match self.format {
            ReportFormat::Csv => "csv.gz",
            ReportFormat::Parquet => "parquet",
        };
        let dir = join(&[&self.prefix, &self.source_bucket, &self.config_id, "data"]);
        format!(
            "{dir}/{:08x}-{:04x}-{:04x}-{:04x}-{:012x}.{ext}",
            h >> 32,
            (h >> 16) & 0xffff,
            h & 0xffff,
            mix(h) & 0xffff,
            mix(h ^ 1) & 0xffff_ffff_ffff
        )
    }
}

fn join(parts: &[&str]) -> String {
    parts.iter().map(|p| p.trim_matches('/')).filter(|p| !p.is_empty()).collect::<Vec<_>>().join("/")
}

/// What a generated report holds, computed while it was written.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Expected {
    pub rows: u64,
    /// Keys whose latest version is an object (not a delete marker), and their bytes.
    pub current_objects: u64,
    pub current_bytes: u64,
    pub noncurrent_versions: u64,
    pub delete_markers: u64,
    /// Bytes of every row, delete markers counting zero.
    pub all_bytes: u64,
}

/// A report written to disk.
#[derive(Debug, Clone)]
pub struct Report {
    /// The directory standing for the destination bucket.
    pub root: PathBuf,
    pub manifest_key: String,
    /// `file://` URL of the manifest.
    pub manifest_url: String,
    /// Data file keys, in manifest order.
    pub data_keys: Vec<String>,
    /// The column names, in file order (CSV `fileSchema` names or Parquet column names).
    pub columns: Vec<String>,
    pub expected: Expected,
}

impl Report {
    /// The local path of a key of the destination bucket.
    pub fn path(&self, key: &str) -> PathBuf {
        self.root.join(key)
    }
}

/// One row of a generated report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GenRow {
    pub key: String,
    pub size: u64,
    pub version_id: Option<String>,
    pub is_latest: bool,
    pub is_delete_marker: bool,
    pub last_modified_ms: i64,
    pub etag: Option<String>,
    pub storage_class: &'static str,
    pub multipart: bool,
}

/// SplitMix64: a cheap, well-mixed hash of a row index.
fn mix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Top-level prefixes, in ascending byte order, none a prefix of another.
const TOPS: [&str; 7] = ["archive 2019/", "data/", "logs=raw/", "media+files/", "pct%20dir/", "tenants/", "ünïcødé/"];
const SUFFIXES: [&str; 6] = ["", ".txt", " with space.jpg", "+plus,comma", "%41=eq", "-日本.bin"];

/// The `i`th key (of `n`); strictly increasing in `i`.
pub fn key_for(i: u64, n: u64) -> String {
    let n = n.max(1);
    let top = ((u128::from(i) * TOPS.len() as u128) / u128::from(n)) as usize;
    // The first index of this top's block, so numbering restarts in each top.
    let start = (top as u128 * u128::from(n)).div_ceil(TOPS.len() as u128) as u64;
    let j = i - start;
    format!("{}{:05}/obj {j:09}{}", TOPS[top], j / 1000, SUFFIXES[(j % SUFFIXES.len() as u64) as usize])
}

/// The rows of key `i`, newest version first.
fn key_rows(spec: &ReportSpec, i: u64) -> Vec<GenRow> {
    let key = key_for(i, spec.objects);
    let h = mix(spec.seed.wrapping_mul(0x1000_0001) ^ i);
    let versions: usize;
    let deleted: bool;
    if spec.versioned {
        match h % 10 {
            0..=5 => (versions, deleted) = (1, false),
            6 | 7 => (versions, deleted) = (2, false),
            8 => (versions, deleted) = (1, true),
            _ => (versions, deleted) = (3, false),
        }
    } else {
        (versions, deleted) = (1, false);
    }
    let base_ms = 1_577_836_800_000i64 + (mix(h) % (5 * 365 * 86_400_000)) as i64;
    let mut out = Vec::with_capacity(versions + 1);
    if deleted {
        out.push(GenRow {
            key: key.clone(),
            size: 0,
            version_id: Some(format!("dm{:016x}", mix(h ^ 0xdead))),
            is_latest: true,
            is_delete_marker: true,
            last_modified_ms: base_ms + 86_400_000,
            etag: None,
            storage_class: "",
            multipart: false,
        });
    }
    for v in 0..versions {
        let hv = mix(h ^ (v as u64 + 1) << 40);
        let mut size = if hv.is_multiple_of(50) { 0 } else { (1u64 << (hv % 24)) + (hv >> 40) % 1000 };
        if let Some(max) = spec.max_size {
            size %= max.saturating_add(1);
        }
        let multipart = size > 8 << 20 && !spec.content_etags;
        let etag = if spec.content_etags {
            hex::encode(Md5::digest(object_body(&key, size)))
        } else if multipart {
            format!("{:016x}{:016x}-{}", mix(hv ^ 1), mix(hv ^ 2), 1 + size / (8 << 20))
        } else {
            format!("{:016x}{:016x}", mix(hv ^ 1), mix(hv ^ 2))
        };
        out.push(GenRow {
            key: key.clone(),
            size,
            version_id: spec.versioned.then(|| format!("{:032x}", u128::from(mix(hv ^ 3)) << 64 | u128::from(mix(hv ^ 4)))),
            is_latest: v == 0 && !deleted,
            is_delete_marker: false,
            last_modified_ms: base_ms - (v as i64) * 3_600_000,
            etag: Some(etag),
            storage_class: ["STANDARD", "STANDARD", "STANDARD", "STANDARD_IA", "GLACIER_IR", "INTELLIGENT_TIERING"][(hv % 6) as usize],
            multipart,
        });
    }
    out
}

/// The body of a generated object: `size` bytes that depend on the key, so that every object
/// of a seeded bucket is distinct and checkable.
pub fn object_body(key: &str, size: u64) -> Vec<u8> {
    let mut h = key.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3));
    let mut out = Vec::with_capacity(size as usize);
    while (out.len() as u64) < size {
        h = mix(h);
        let take = (size - out.len() as u64).min(8) as usize;
        out.extend_from_slice(&h.to_le_bytes()[..take]);
    }
    out
}

/// Every row of the report described by `spec`, in ascending key order.
pub fn rows(spec: &ReportSpec) -> impl Iterator<Item = GenRow> + '_ {
    (0..spec.objects).flat_map(move |i| key_rows(spec, i))
}

/// A bijection of `0..n` that scrambles order: `t -> (a t + c) mod n` with `a` coprime to `n`.
struct Permutation {
    n: u64,
    a: u64,
    c: u64,
}

impl Permutation {
    fn new(n: u64, seed: u64, shuffled: bool) -> Self {
        if !shuffled || n < 3 {
            return Permutation { n, a: 1, c: 0 };
        }
        let gcd = |mut a: u64, mut b: u64| {
            while b != 0 {
                (a, b) = (b, a % b);
            }
            a
        };
        // Start near the golden ratio of n, so neighbours land far apart.
        let mut a = ((n as f64) * 0.618_033_988_7) as u64 | 1;
        while gcd(a, n) != 1 {
            a += 1;
        }
        Permutation { n, a, c: mix(seed) % n }
    }

    fn at(&self, t: u64) -> u64 {
        ((u128::from(self.a) * u128::from(t) + u128::from(self.c)) % u128::from(self.n)) as u64
    }
}

/// The CSV columns a spec's report has, in file order.
fn column_names(spec: &ReportSpec) -> Vec<&'static str> {
    let mut optional =
        vec!["Size", "LastModifiedDate", "ETag", "StorageClass", "IsMultipartUploaded", "ReplicationStatus", "EncryptionStatus"];
    if spec.versioned {
        for (i, c) in ["VersionId", "IsLatest", "IsDeleteMarker"].into_iter().enumerate() {
            optional.insert(i, c);
        }
    }
    if spec.shuffle_columns {
        let mut h = mix(spec.seed ^ 0xc01);
        for i in (1..optional.len()).rev() {
            h = mix(h);
            optional.swap(i, (h % (i as u64 + 1)) as usize);
        }
    }
    let mut names = vec!["Bucket", "Key"];
    names.extend(optional);
    names
}

/// Percent-encodes a key the way S3 Inventory CSV does: space as `+`, and every byte other
/// than letters, digits, `-_.*/` as `%XX`.
pub fn encode_key(key: &str, out: &mut String) {
    for &b in key.as_bytes() {
        match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'*' | b'/' => out.push(b as char),
            b' ' => out.push('+'),
            _ => {
                const HEX: &[u8; 16] = b"0123456789ABCDEF";
                out.push('%');
                out.push(HEX[(b >> 4) as usize] as char);
                out.push(HEX[(b & 15) as usize] as char);
            }
        }
    }
}

fn iso_ms(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms).map(|t| t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()).unwrap_or_default()
}

fn push_csv_row(line: &mut String, names: &[&str], bucket: &str, row: &GenRow) {
    for (i, name) in names.iter().enumerate() {
        if i > 0 {
            line.push(',');
        }
        line.push('"');
        match *name {
            "Bucket" => line.push_str(bucket),
            "Key" => encode_key(&row.key, line),
            "VersionId" => line.push_str(row.version_id.as_deref().unwrap_or("")),
            "IsLatest" => line.push_str(if row.is_latest { "true" } else { "false" }),
            "IsDeleteMarker" => line.push_str(if row.is_delete_marker { "true" } else { "false" }),
            "Size" if !row.is_delete_marker => line.push_str(&row.size.to_string()),
            "LastModifiedDate" => line.push_str(&iso_ms(row.last_modified_ms)),
            "ETag" => line.push_str(row.etag.as_deref().unwrap_or("")),
            "StorageClass" => line.push_str(row.storage_class),
            "IsMultipartUploaded" if !row.is_delete_marker => line.push_str(if row.multipart { "true" } else { "false" }),
            "EncryptionStatus" if !row.is_delete_marker => line.push_str("SSE-S3"),
            _ => {}
        }
        line.push('"');
    }
    line.push('\n');
}

/// Hashes and counts what is written through it, so the manifest's MD5 and size come free.
struct Hashing<W> {
    inner: W,
    md5: Md5,
    bytes: u64,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.md5.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

fn create(root: &Path, key: &str) -> Result<File> {
    let path = root.join(key);
    std::fs::create_dir_all(path.parent().context("key has no parent")?)?;
    File::create(&path).with_context(|| format!("create {}", path.display()))
}

fn tally(expected: &mut Expected, row: &GenRow) {
    expected.rows += 1;
    expected.all_bytes += row.size;
    if row.is_delete_marker {
        expected.delete_markers += 1;
    } else if !row.is_latest {
        expected.noncurrent_versions += 1;
    } else {
        expected.current_objects += 1;
        expected.current_bytes += row.size;
    }
}

/// Writes the report described by `spec` under `root` and returns where it is.
pub fn write_report(root: &Path, spec: &ReportSpec) -> Result<Report> {
    let perm = Permutation::new(spec.objects, spec.seed, spec.order == RowOrder::Shuffled);
    let files = if spec.objects == 0 { 0 } else { spec.files.max(1) };
    let names = column_names(spec);
    let mut expected = Expected::default();
    let mut listed = Vec::new();
    for f in 0..files {
        // File f holds the positions [f n / files, (f+1) n / files) of the permutation.
        let lo = (u128::from(spec.objects) * f as u128 / files as u128) as u64;
        let hi = (u128::from(spec.objects) * (f as u128 + 1) / files as u128) as u64;
        let key = spec.data_key(f);
        let out = Hashing { inner: BufWriter::with_capacity(1 << 20, create(root, &key)?), md5: Md5::new(), bytes: 0 };
        let keys = (lo..hi).map(|t| perm.at(t));
        let out = match spec.format {
            ReportFormat::Csv => write_csv(out, spec, &names, keys, &mut expected)?,
            ReportFormat::Parquet => write_parquet(out, spec, &names, keys, &mut expected)?,
        };
        listed.push(serde_json::json!({"key": key, "size": out.bytes, "MD5checksum": hex::encode(out.md5.finalize())}));
    }
    let schema = match spec.format {
        ReportFormat::Csv => names.join(", "),
        ReportFormat::Parquet => parquet_message(&names),
    };
    let manifest = serde_json::json!({
        "sourceBucket": spec.source_bucket,
        "destinationBucket": "arn:aws:s3:::inventory-destination",
        "version": "2016-11-30",
        "creationTimestamp": "1767225600000",
        "fileFormat": match spec.format { ReportFormat::Csv => "CSV", ReportFormat::Parquet => "Parquet" },
        "fileSchema": schema,
        "files": listed,
    });
    let json = serde_json::to_vec(&manifest)?;
    let manifest_key = spec.manifest_key();
    create(root, &manifest_key)?.write_all(&json)?;
    create(root, &format!("{}/manifest.checksum", spec.report_dir()))?
        .write_all(format!("{}\n", hex::encode(Md5::digest(&json))).as_bytes())?;
    let root = root.to_path_buf();
    Ok(Report {
        manifest_url: format!("file://{}", root.join(&manifest_key).display()),
        root,
        manifest_key,
        data_keys: (0..files).map(|f| spec.data_key(f)).collect(),
        columns: match spec.format {
            ReportFormat::Csv => names.iter().map(|s| s.to_string()).collect(),
            ReportFormat::Parquet => names.iter().map(|s| parquet_name(s).to_string()).collect(),
        },
        expected,
    })
}

type Out = Hashing<BufWriter<File>>;

fn write_csv(mut out: Out, spec: &ReportSpec, names: &[&str], keys: impl Iterator<Item = u64>, expected: &mut Expected) -> Result<Out> {
    let level = flate2::Compression::new(spec.gzip_level.min(9));
    let mut member = GzEncoder::new(Vec::with_capacity(1 << 20), level);
    let mut in_member = 0u64;
    let mut line = String::with_capacity(512);
    for i in keys {
        for row in key_rows(spec, i) {
            tally(expected, &row);
            line.clear();
            push_csv_row(&mut line, names, &spec.source_bucket, &row);
            member.write_all(line.as_bytes())?;
            in_member += 1;
        }
        // Members end between keys, as S3's writers flush whole records.
        if in_member >= spec.rows_per_chunk.max(1) {
            out.write_all(&member.finish()?)?;
            member = GzEncoder::new(Vec::with_capacity(1 << 20), level);
            in_member = 0;
        }
    }
    if in_member > 0 {
        out.write_all(&member.finish()?)?;
    }
    out.flush()?;
    Ok(out)
}

fn parquet_name(csv: &str) -> &'static str {
    match csv {
        "Bucket" => "bucket",
        "Key" => "key",
        "VersionId" => "version_id",
        "IsLatest" => "is_latest",
        "IsDeleteMarker" => "is_delete_marker",
        "Size" => "size",
        "LastModifiedDate" => "last_modified_date",
        "ETag" => "e_tag",
        "StorageClass" => "storage_class",
        "IsMultipartUploaded" => "is_multipart_uploaded",
        "ReplicationStatus" => "replication_status",
        _ => "encryption_status",
    }
}

fn parquet_message(names: &[&str]) -> String {
    let fields: Vec<String> = names
        .iter()
        .map(|n| {
            let p = parquet_name(n);
            match *n {
                "Bucket" | "Key" => format!("required binary {p} (STRING);"),
                "IsLatest" | "IsDeleteMarker" | "IsMultipartUploaded" => format!("optional boolean {p};"),
                "Size" => format!("optional int64 {p};"),
                "LastModifiedDate" => format!("optional int64 {p} (TIMESTAMP(MILLIS,true));"),
                _ => format!("optional binary {p} (STRING);"),
            }
        })
        .collect();
    format!("message s3.inventory {{ {} }}", fields.join(" "))
}

fn write_parquet(out: Out, spec: &ReportSpec, names: &[&str], keys: impl Iterator<Item = u64>, expected: &mut Expected) -> Result<Out> {
    let schema = Arc::new(parquet::schema::parser::parse_message_type(&parquet_message(names))?);
    let props = Arc::new(WriterProperties::builder().set_compression(ParquetCompression::SNAPPY).build());
    let mut writer = SerializedFileWriter::new(out, schema, props)?;
    let mut batch: Vec<GenRow> = Vec::new();
    let mut keys = keys.peekable();
    while keys.peek().is_some() {
        batch.clear();
        for i in keys.by_ref() {
            for row in key_rows(spec, i) {
                tally(expected, &row);
                batch.push(row);
            }
            if batch.len() as u64 >= spec.rows_per_chunk.max(1) {
                break;
            }
        }
        write_row_group(&mut writer, names, &spec.source_bucket, &batch)?;
    }
    let mut out = writer.into_inner()?;
    out.flush()?;
    Ok(out)
}

fn write_row_group(writer: &mut SerializedFileWriter<Out>, names: &[&str], bucket: &str, rows: &[GenRow]) -> Result<()> {
    let mut rg = writer.next_row_group()?;
    for name in names {
        let mut col = rg.next_column()?.context("schema has fewer columns than names")?;
        // Optional columns mark absent values with definition level 0 and omit them.
        let texts = |f: &dyn Fn(&GenRow) -> Option<String>| -> (Vec<ByteArray>, Vec<i16>) {
            let mut vals = Vec::new();
            let mut defs = Vec::new();
            for r in rows {
                match f(r) {
                    Some(s) if !s.is_empty() => {
                        vals.push(ByteArray::from(s.into_bytes()));
                        defs.push(1);
                    }
                    _ => defs.push(0),
                }
            }
            (vals, defs)
        };
        match *name {
            "Bucket" | "Key" => {
                let vals: Vec<ByteArray> = rows
                    .iter()
                    .map(|r| ByteArray::from(if *name == "Key" { r.key.as_bytes().to_vec() } else { bucket.as_bytes().to_vec() }))
                    .collect();
                col.typed::<ByteArrayType>().write_batch(&vals, None, None)?;
            }
            "IsLatest" | "IsDeleteMarker" | "IsMultipartUploaded" => {
                let mut vals = Vec::new();
                let mut defs = Vec::new();
                for r in rows {
                    let v = match *name {
                        "IsLatest" => Some(r.is_latest),
                        "IsDeleteMarker" => Some(r.is_delete_marker),
                        _ => (!r.is_delete_marker).then_some(r.multipart),
                    };
                    defs.push(i16::from(v.is_some()));
                    vals.extend(v);
                }
                col.typed::<BoolType>().write_batch(&vals, Some(&defs), None)?;
            }
            "Size" | "LastModifiedDate" => {
                let mut vals = Vec::new();
                let mut defs = Vec::new();
                for r in rows {
                    let v = if *name == "Size" { (!r.is_delete_marker).then_some(r.size as i64) } else { Some(r.last_modified_ms) };
                    defs.push(i16::from(v.is_some()));
                    vals.extend(v);
                }
                col.typed::<Int64Type>().write_batch(&vals, Some(&defs), None)?;
            }
            other => {
                let (vals, defs) = texts(&|r: &GenRow| match other {
                    "VersionId" => r.version_id.clone(),
                    "ETag" => r.etag.clone(),
                    "StorageClass" => Some(r.storage_class.to_string()),
                    "EncryptionStatus" if !r.is_delete_marker => Some("SSE-S3".to_string()),
                    _ => None,
                });
                col.typed::<ByteArrayType>().write_batch(&vals, Some(&defs), None)?;
            }
        }
        col.close()?;
    }
    rg.close()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_increase_and_cover_every_top() {
        let n = 10_000;
        let keys: Vec<String> = (0..n).map(|i| key_for(i, n)).collect();
        assert!(keys.windows(2).all(|w| w[0] < w[1]), "keys must strictly increase");
        for top in TOPS {
            assert!(keys.iter().any(|k| k.starts_with(top)), "{top}");
        }
        let mut enc = String::new();
        encode_key("a b+c%d=é/x", &mut enc);
        assert_eq!(enc, "a+b%2Bc%25d%3D%C3%A9/x");
    }

    #[test]
    fn content_etags_match_bodies_and_sizes_are_capped() {
        let spec = ReportSpec { max_size: Some(100), content_etags: true, ..ReportSpec::new(500, 1) };
        for row in rows(&spec) {
            assert!(row.size <= 100);
            let body = object_body(&row.key, row.size);
            assert_eq!(body.len() as u64, row.size);
            assert_eq!(row.etag.as_deref(), Some(hex::encode(Md5::digest(&body)).as_str()));
        }
        assert_ne!(object_body("a", 16), object_body("b", 16));
    }

    #[test]
    fn permutations_are_bijections() {
        for n in [1u64, 2, 3, 10, 97, 1000, 1024] {
            let p = Permutation::new(n, 7, true);
            let mut seen: Vec<u64> = (0..n).map(|t| p.at(t)).collect();
            seen.sort_unstable();
            assert_eq!(seen, (0..n).collect::<Vec<_>>());
        }
        let p = Permutation::new(1000, 7, true);
        assert!((1..1000).any(|t| p.at(t) < p.at(t - 1)), "shuffled order must not be sorted");
    }
}
