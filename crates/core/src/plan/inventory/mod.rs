//! Streaming S3 Inventory reader: a verified manifest, CSV.gz and Parquet data files read row by
//! row with their MD5s checked as they stream, and a bounded-memory partition plan of the report.
//!
//! The pieces:
//! - [`InventorySource`] opens objects of the destination bucket by key ([`LocalDirSource`]
//!   for `file://` URLs; an S3 adapter lives outside the engine).
//! - [`Inventory`] is an opened, verified manifest; [`Inventory::records`] streams its rows as
//!   [`InventoryRecord`]s, keeping current versions (or every version) and counting the rest.
//! - [`summarise_file`] and [`merge_summaries`] plan a report one data file at a time: each file
//!   is sorted on its own (an external merge sort, whatever the order of its rows) into a bounded
//!   summary, and the summaries are merged into partitions. [`plan_from_manifest`] and [`plan`]
//!   do both halves in one call (`tidemark inventory plan`, the one-shot seeder); the stepwise
//!   seeder (`protect::steps`) runs them in separate invocations, so they all plan alike.
//! - [`StreamSampler`] summarises a key stream of unknown length the same way (the listing
//!   planner, `listing`).
//!
//! ORC reports are refused with an error that names the format: the maintained Rust ORC reader
//! depends on all of Arrow, which is too heavy for the engine.

mod csv;
mod manifest;
mod object_source;
mod parquet;
mod plan;
mod sort;
mod source;
mod summary;

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::PathBuf;
use std::sync::Arc;

use chrono::{DateTime, NaiveDate, Utc};
use flate2::bufread::MultiGzDecoder;
use md5::{Digest, Md5};
use serde::{Deserialize, Serialize};

pub use self::csv::decode_key;
pub use self::manifest::{Columns, DataFile, FileFormat, Manifest};
pub use self::object_source::{parse_s3_url, ObjectStoreSource};
pub use self::plan::{plan, plan_from_manifest, InventoryPlan, PlanOptions, SUMMARY_SORT_BUDGET};
pub use self::source::{InventorySource, LocalDirSource};
pub use self::summary::{
    merge, merge_samples, merge_summaries, samples_per_file, summarise_file, FileSummary, Sample, StreamSampler, SUMMARY_FORMAT,
    SUMMARY_VERSION, TOTAL_SAMPLES,
};

use self::csv::CsvRecords;
use self::parquet::ParquetRows;
use self::sort::SpillDir;
use crate::{Error, Result};

/// Skip reason: the row is a delete marker, which has no data to protect.
pub const SKIP_DELETE_MARKER: &str = "delete_marker";
/// Skip reason: the row is an older version of a key and only current versions are protected.
pub const SKIP_NONCURRENT: &str = "noncurrent_version";
/// Skip reason: the key is outside the prefix being protected.
pub const SKIP_OUTSIDE_PREFIX: &str = "outside_prefix";
/// Skip reason (plans only): the report lists the same current key more than once.
pub const SKIP_DUPLICATE: &str = "duplicate_key";

/// Manifests larger than this are refused rather than read into memory; a real one listing
/// ten thousand data files is a few megabytes.
const MANIFEST_LIMIT: u64 = 64 * 1024 * 1024;

/// Read buffers for compressed and decompressed bytes.
const BUF: usize = 256 * 1024;

/// One object (or version) listed by the report, as the seeder needs it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InventoryRecord {
    pub key: String,
    pub size: u64,
    pub version_id: Option<String>,
    /// False only for a non-current version in a versioned report.
    pub is_latest: bool,
    pub is_delete_marker: bool,
    pub last_modified: Option<DateTime<Utc>>,
    /// The ETag without quotes, as S3 Inventory writes it.
    pub etag: Option<String>,
    pub storage_class: Option<String>,
}

/// A row borrowed from a reader's buffers; converted to an [`InventoryRecord`] only if kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RowView<'a> {
    pub key: &'a str,
    pub size: u64,
    pub version_id: Option<&'a str>,
    pub is_latest: Option<bool>,
    pub is_delete_marker: bool,
    pub last_modified_ms: Option<i64>,
    pub etag: Option<&'a str>,
    pub storage_class: Option<&'a str>,
}

impl RowView<'_> {
    fn to_record(self) -> InventoryRecord {
        InventoryRecord {
            key: self.key.to_string(),
            size: self.size,
            version_id: self.version_id.map(str::to_string),
            is_latest: self.is_latest.unwrap_or(true),
            is_delete_marker: self.is_delete_marker,
            last_modified: self.last_modified_ms.and_then(DateTime::from_timestamp_millis),
            etag: self.etag.map(str::to_string),
            storage_class: self.storage_class.map(str::to_string),
        }
    }
}

/// Which rows to keep.
#[derive(Debug, Clone, Default)]
pub struct ReadOptions {
    /// Keep every row of a versioned report (non-current versions and delete markers too).
    /// By default only current versions that are not delete markers are kept.
    pub all_versions: bool,
    /// Keep only keys that start with this prefix.
    pub prefix: Option<String>,
}

impl ReadOptions {
    /// Why a row is skipped, or `None` if it is kept.
    pub(crate) fn skip_reason(&self, row: &RowView<'_>) -> Option<&'static str> {
        if let Some(p) = &self.prefix {
            if !row.key.starts_with(p.as_str()) {
                return Some(SKIP_OUTSIDE_PREFIX);
            }
        }
        if self.all_versions {
            return None;
        }
        if row.is_delete_marker {
            return Some(SKIP_DELETE_MARKER);
        }
        if row.is_latest == Some(false) {
            return Some(SKIP_NONCURRENT);
        }
        None
    }
}

/// What a read or a plan saw: `rows` = `objects` + the sum of `skipped`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Totals {
    pub rows: u64,
    pub objects: u64,
    pub bytes: u64,
    /// Rows not kept, by reason (`delete_marker`, `noncurrent_version`, ...).
    pub skipped: BTreeMap<String, u64>,
}

impl Totals {
    pub(crate) fn skip(&mut self, reason: &str) {
        *self.skipped.entry(reason.to_string()).or_default() += 1;
    }
}

/// Maps an I/O error met while reading `file` to the engine's error. A source may smuggle an
/// engine error (a transient S3 failure, say) through `io::Error`; it comes back out intact.
pub(crate) fn io_error(e: io::Error, file: &str, line: Option<u64>) -> Error {
    if e.get_ref().is_some_and(|inner| inner.is::<Error>()) {
        if let Some(inner) = e.into_inner() {
            if let Ok(engine) = inner.downcast::<Error>() {
                return *engine;
            }
        }
        return Error::Inventory { file: file.to_string(), line, detail: "read failed".into() };
    }
    let detail = match e.kind() {
        io::ErrorKind::UnexpectedEof => format!("the data ends early (truncated file?): {e}"),
        _ => format!("read failed (truncated or corrupt data?): {e}"),
    };
    Error::Inventory { file: file.to_string(), line, detail }
}

/// Parses `true`/`false` as S3 writes them (case-insensitively, to be lenient).
pub(crate) fn parse_bool(v: &[u8]) -> Option<bool> {
    if v.eq_ignore_ascii_case(b"true") {
        Some(true)
    } else if v.eq_ignore_ascii_case(b"false") {
        Some(false)
    } else {
        None
    }
}

/// Parses an RFC 3339 time to epoch milliseconds. S3's own form
/// (`2017-08-09T07:07:56.000Z`) takes a fast path, because every row carries one.
pub(crate) fn parse_timestamp(v: &[u8]) -> Option<i64> {
    let digits = |r: std::ops::Range<usize>| -> Option<u32> {
        let mut n = 0u32;
        for &c in v.get(r)? {
            if !c.is_ascii_digit() {
                return None;
            }
            n = n * 10 + u32::from(c - b'0');
        }
        Some(n)
    };
    if v.len() == 24 && v[4] == b'-' && v[7] == b'-' && v[10] == b'T' && v[13] == b':' && v[16] == b':' && v[19] == b'.' && v[23] == b'Z' {
        let date = NaiveDate::from_ymd_opt(digits(0..4)? as i32, digits(5..7)?, digits(8..10)?)?;
        let t = date.and_hms_milli_opt(digits(11..13)?, digits(14..16)?, digits(17..19)?, digits(20..23)?)?;
        return Some(t.and_utc().timestamp_millis());
    }
    let s = std::str::from_utf8(v).ok()?;
    DateTime::parse_from_rfc3339(s).ok().map(|t| t.timestamp_millis())
}

/// Counts and hashes the bytes read through it, so a data file's MD5 is checked in the same
/// pass that parses it.
struct Hashing<R> {
    inner: R,
    md5: Md5,
    bytes: u64,
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.md5.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
}

impl<R: Read> Hashing<R> {
    fn new(inner: R) -> Self {
        Hashing { inner, md5: Md5::new(), bytes: 0 }
    }

    /// Reads whatever the parser left unread, then checks size and MD5 against the manifest.
    fn verify(&mut self, file: &DataFile) -> Result<()> {
        io::copy(self, &mut io::sink()).map_err(|e| io_error(e, &file.key, None))?;
        let actual = hex::encode(self.md5.finalize_reset());
        if actual != file.md5 {
            return Err(Error::Inventory {
                file: file.key.clone(),
                line: None,
                detail: format!("MD5 mismatch: the manifest says {}, the file's {} bytes hash to {actual}", file.md5, self.bytes),
            });
        }
        if self.bytes != file.size {
            return Err(Error::Inventory {
                file: file.key.clone(),
                line: None,
                detail: format!("size mismatch: the manifest says {} bytes, read {}", file.size, self.bytes),
            });
        }
        Ok(())
    }
}

type CsvInput = BufReader<MultiGzDecoder<BufReader<Hashing<Box<dyn Read + Send>>>>>;

/// Rows of one data file, whatever its format.
enum FileRows {
    Csv {
        file: DataFile,
        records: Box<CsvRecords<CsvInput>>,
        columns: Columns,
        key_buf: Vec<u8>,
    },
    Parquet {
        rows: Box<ParquetRows>,
        /// Keeps the spilled copy of a non-local file alive while it is read.
        _spill: Option<SpillDir>,
    },
}

impl FileRows {
    fn open(source: &dyn InventorySource, manifest: &Manifest, file: &DataFile, spill_root: Option<&PathBuf>) -> Result<Self> {
        match manifest.format {
            FileFormat::Csv => {
                let columns = manifest.csv_columns()?;
                let raw = source.open(&file.key)?;
                let gz = MultiGzDecoder::new(BufReader::with_capacity(BUF, Hashing::new(raw)));
                Ok(FileRows::Csv {
                    file: file.clone(),
                    records: Box::new(CsvRecords::new(BufReader::with_capacity(BUF, gz), &file.key)),
                    columns,
                    key_buf: Vec::with_capacity(256),
                })
            }
            FileFormat::Parquet => {
                // Parquet needs random access (its footer is at the end), so the file is
                // hashed in one pass and then read in place; a remote one is spilled to a
                // temporary file during that pass.
                let mut hashing = Hashing::new(source.open(&file.key)?);
                let (path, spill) = match source.local_path(&file.key) {
                    Some(p) => {
                        hashing.verify(file)?;
                        (p, None)
                    }
                    None => {
                        let dir = SpillDir::new(spill_root)?;
                        let path = dir.path().join("data.parquet");
                        let mut out = File::create(&path).map_err(|e| sort::spill_error("create", e))?;
                        io::copy(&mut hashing, &mut out).map_err(|e| io_error(e, &file.key, None))?;
                        hashing.verify(file)?;
                        (path, Some(dir))
                    }
                };
                Ok(FileRows::Parquet { rows: Box::new(ParquetRows::open(&file.key, &path)?), _spill: spill })
            }
            FileFormat::Orc => Err(Error::Inventory {
                file: manifest.key.clone(),
                line: None,
                detail: "the report's fileFormat is ORC, which tidemark does not read; configure the inventory with CSV or Parquet output"
                    .into(),
            }),
        }
    }

    /// The next row; at the end of a CSV file its MD5 and size are checked before `None`.
    fn next_row(&mut self) -> Result<Option<RowView<'_>>> {
        match self {
            FileRows::Csv { file, records, columns, key_buf } => {
                if records.next_record()? {
                    return csv::to_row(records, columns, key_buf).map(Some);
                }
                let hashing = records.input_mut().get_mut().get_mut().get_mut();
                hashing.verify(file).map_err(|e| match e {
                    // A size mismatch is better explained by where the text stopped.
                    Error::Inventory { file, detail, .. } => {
                        Error::Inventory { file, line: None, detail: format!("{detail} (after {} lines)", records.lines_read()) }
                    }
                    other => other,
                })?;
                Ok(None)
            }
            FileRows::Parquet { rows, .. } => rows.next_row(),
        }
    }
}

/// An opened, verified inventory report.
#[derive(Clone)]
pub struct Inventory {
    source: Arc<dyn InventorySource>,
    manifest: Arc<Manifest>,
    spill_root: Option<PathBuf>,
}

impl std::fmt::Debug for Inventory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inventory").field("manifest", &self.manifest).finish()
    }
}

impl Inventory {
    /// Reads `manifest_key` (and the `manifest.checksum` beside it) from `source`.
    ///
    /// A missing checksum file is an error: S3 always writes one, and without it a manifest
    /// truncated in transit would be indistinguishable from a good one.
    pub fn open(source: Arc<dyn InventorySource>, manifest_key: &str) -> Result<Self> {
        let json = source::read_all(source.as_ref(), manifest_key, MANIFEST_LIMIT)?;
        let checksum_key = match manifest_key.rsplit_once('/') {
            Some((dir, _)) => format!("{dir}/manifest.checksum"),
            None => "manifest.checksum".to_string(),
        };
        let checksum = source::read_all(source.as_ref(), &checksum_key, 1024)?;
        let manifest = Manifest::parse(manifest_key, &json, Some(&checksum))?;
        Ok(Inventory { source, manifest: Arc::new(manifest), spill_root: None })
    }

    /// Opens a report by URL. Only `file://` is read here; `s3://` URLs need an S3-backed
    /// [`InventorySource`] and [`Inventory::open`].
    pub fn open_url(url: &str) -> Result<Self> {
        if url.starts_with("s3://") {
            return Err(Error::Invalid(format!(
                "manifest URL {url}: s3:// reports are read through an S3 inventory source, not by the engine alone"
            )));
        }
        let located = source::locate_file_url(url, |path| {
            let json = std::fs::read(path).map_err(|e| Error::Inventory {
                file: url.to_string(),
                line: None,
                detail: format!("cannot read: {e}"),
            })?;
            // The checksum is verified properly by `open`; this pass only finds the root.
            let m = Manifest::parse(url, &json, None)?;
            Ok(m.files.first().map(|f| f.key.clone()))
        })?;
        Inventory::open(Arc::new(located.source), &located.manifest_key)
    }

    /// Where temporary files (sort runs, spilled Parquet copies) go; the system's temporary
    /// directory by default.
    pub fn with_spill_dir(mut self, dir: Option<PathBuf>) -> Self {
        self.spill_root = dir;
        self
    }

    /// The verified manifest.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// Streams the kept rows of every data file, in manifest order.
    pub fn records(&self, opts: &ReadOptions) -> Records {
        self.file_records(0..self.manifest.files.len(), opts)
    }

    /// Streams the kept rows of the data files `files` (indexes into the manifest's list),
    /// so that work can fan out one data file per invocation.
    ///
    /// A file's MD5 is known only once it has been read to the end, so a consumer that acts
    /// on rows before the iterator moves past the file must be ready to undo them if the
    /// file then turns out to be corrupt.
    pub fn file_records(&self, files: std::ops::Range<usize>, opts: &ReadOptions) -> Records {
        Records { inventory: self.clone(), files, current: None, opts: opts.clone(), totals: Totals::default(), done: false }
    }

    /// Feeds every row of the data files `files` to `f`, with its skip reason; the planner's
    /// allocation-free path.
    pub(crate) fn for_each_row(&self, files: std::ops::Range<usize>, mut f: impl FnMut(&RowView<'_>) -> Result<()>) -> Result<()> {
        for i in files {
            let file = &self.manifest.files[i];
            let mut rows = FileRows::open(self.source.as_ref(), &self.manifest, file, self.spill_root.as_ref())?;
            while let Some(row) = rows.next_row()? {
                f(&row)?;
            }
        }
        Ok(())
    }
}

/// The kept rows of a report, streamed; see [`Inventory::records`].
pub struct Records {
    inventory: Inventory,
    files: std::ops::Range<usize>,
    current: Option<FileRows>,
    opts: ReadOptions,
    totals: Totals,
    done: bool,
}

impl Records {
    /// What has been read so far (all of it, once the iterator has returned `None`).
    pub fn totals(&self) -> &Totals {
        &self.totals
    }
}

impl Iterator for Records {
    type Item = Result<InventoryRecord>;

    fn next(&mut self) -> Option<Self::Item> {
        while !self.done {
            if self.current.is_none() {
                let i = self.files.next()?;
                let inv = &self.inventory;
                match FileRows::open(inv.source.as_ref(), &inv.manifest, &inv.manifest.files[i], inv.spill_root.as_ref()) {
                    Ok(rows) => self.current = Some(rows),
                    Err(e) => {
                        self.done = true;
                        return Some(Err(e));
                    }
                }
            }
            let rows = self.current.as_mut()?;
            match rows.next_row() {
                Ok(Some(row)) => {
                    self.totals.rows += 1;
                    match self.opts.skip_reason(&row) {
                        Some(reason) => self.totals.skip(reason),
                        None => {
                            self.totals.objects += 1;
                            self.totals.bytes = self.totals.bytes.saturating_add(row.size);
                            return Some(Ok(row.to_record()));
                        }
                    }
                }
                Ok(None) => self.current = None,
                Err(e) => {
                    // After a bad row the stream's position is unknown; stop rather than guess.
                    self.done = true;
                    return Some(Err(e));
                }
            }
        }
        None
    }
}

#[cfg(test)]
mod tests;
