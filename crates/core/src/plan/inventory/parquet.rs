//! The Parquet side of the reader: reads only the columns the engine needs, a batch of rows at
//! a time, straight from the column readers (no Arrow, no per-row allocation of a record tree).
//!
//! Columns are found by name in the file's own schema (`key`, `size`, `version_id`, ...),
//! which is the authority for Parquet; S3 writes Parquet keys unencoded.

use std::fs::File;

use parquet::basic::{ConvertedType, LogicalType, TimeUnit, Type as PhysicalType};
use parquet::column::reader::{ColumnReader, ColumnReaderImpl};
use parquet::data_type::{BoolType, ByteArray, ByteArrayType, Int32Type, Int64Type, Int96, Int96Type};
use parquet::file::reader::{FileReader, SerializedFileReader};

use super::manifest::Columns;
use super::RowView;
use crate::{Error, Result};

/// Rows decoded per column per step; bounds memory to a few pages per column.
const BATCH: usize = 4096;

#[derive(Clone, Copy)]
enum TsUnit {
    Millis,
    Micros,
    Nanos,
}

/// One projected column: its reader for the current row group and the decoded batch.
struct Col {
    index: usize,
    max_def: i16,
    data: ColData,
    def: Vec<i16>,
    /// Position of the next non-null value in the batch's values.
    next_value: usize,
}

enum ColData {
    Bytes(Option<ColumnReaderImpl<ByteArrayType>>, Vec<ByteArray>),
    Bool(Option<ColumnReaderImpl<BoolType>>, Vec<bool>),
    I64(Option<ColumnReaderImpl<Int64Type>>, Vec<i64>, TsUnit),
    I32(Option<ColumnReaderImpl<Int32Type>>, Vec<i32>),
    I96(Option<ColumnReaderImpl<Int96Type>>, Vec<Int96>),
}

/// Which projected column holds each field.
struct Slots {
    key: usize,
    version_id: Option<usize>,
    is_latest: Option<usize>,
    is_delete_marker: Option<usize>,
    size: Option<usize>,
    last_modified: Option<usize>,
    etag: Option<usize>,
    storage_class: Option<usize>,
}

/// One value of the current row, borrowed from a column's batch.
enum Val<'a> {
    Null,
    Bytes(&'a [u8]),
    Bool(bool),
    Int(i64),
    Millis(i64),
}

/// Streams rows out of one Parquet data file.
pub(crate) struct ParquetRows {
    file: String,
    reader: SerializedFileReader<File>,
    cols: Vec<Col>,
    slots: Slots,
    /// The next row group to open, and whether one is open.
    row_group: usize,
    in_row_group: bool,
    /// Rows of the current batch, and the position of the next one.
    batch_rows: usize,
    batch_pos: usize,
    /// Rows returned so far (1-based position of the last one), for error messages.
    row: u64,
}

fn err(file: &str, detail: impl Into<String>) -> Error {
    Error::Inventory { file: file.to_string(), line: None, detail: detail.into() }
}

impl ParquetRows {
    /// Opens `path` (holding the data file `file`) and maps its columns by name.
    pub(crate) fn open(file: &str, path: &std::path::Path) -> Result<Self> {
        let f = File::open(path).map_err(|e| err(file, format!("cannot open {}: {e}", path.display())))?;
        let reader = SerializedFileReader::new(f).map_err(|e| err(file, format!("not a readable Parquet file: {e}")))?;
        let schema = reader.metadata().file_metadata().schema_descr_ptr();
        // Only top-level primitive columns can be inventory fields; nested ones are ignored.
        let names: Vec<String> = (0..schema.num_columns())
            .map(|i| {
                let c = schema.column(i);
                if c.path().parts().len() == 1 {
                    c.name().to_string()
                } else {
                    format!("{}", c.path())
                }
            })
            .collect();
        let mapped = Columns::from_names(&names).map_err(|d| err(file, d))?;
        let mut cols = Vec::new();
        let mut add = |index: Option<usize>, want: &str| -> Result<Option<usize>> {
            let Some(index) = index else { return Ok(None) };
            let descr = schema.column(index);
            if descr.max_rep_level() > 0 {
                return Err(err(file, format!("column {} is repeated; expected one {want} per row", descr.name())));
            }
            let ok = matches!(
                (want, descr.physical_type()),
                ("text", PhysicalType::BYTE_ARRAY)
                    | ("bool", PhysicalType::BOOLEAN)
                    | ("int", PhysicalType::INT64 | PhysicalType::INT32)
                    | ("time", PhysicalType::INT64 | PhysicalType::INT96)
            );
            if !ok {
                return Err(err(file, format!("column {} has physical type {:?}; expected {want}", descr.name(), descr.physical_type())));
            }
            let unit = match descr.logical_type_ref() {
                Some(LogicalType::Timestamp(t)) => match t.unit {
                    TimeUnit::MILLIS => TsUnit::Millis,
                    TimeUnit::MICROS => TsUnit::Micros,
                    TimeUnit::NANOS => TsUnit::Nanos,
                },
                _ if descr.converted_type() == ConvertedType::TIMESTAMP_MICROS => TsUnit::Micros,
                _ => TsUnit::Millis,
            };
            let data = match descr.physical_type() {
                PhysicalType::BYTE_ARRAY => ColData::Bytes(None, Vec::new()),
                PhysicalType::BOOLEAN => ColData::Bool(None, Vec::new()),
                PhysicalType::INT64 => ColData::I64(None, Vec::new(), unit),
                PhysicalType::INT32 => ColData::I32(None, Vec::new()),
                _ => ColData::I96(None, Vec::new()),
            };
            cols.push(Col { index, max_def: descr.max_def_level(), data, def: Vec::new(), next_value: 0 });
            Ok(Some(cols.len() - 1))
        };
        let key = add(Some(mapped.key), "text")?.unwrap_or_default();
        let slots = Slots {
            key,
            version_id: add(mapped.version_id, "text")?,
            is_latest: add(mapped.is_latest, "bool")?,
            is_delete_marker: add(mapped.is_delete_marker, "bool")?,
            size: add(mapped.size, "int")?,
            last_modified: add(mapped.last_modified, "time")?,
            etag: add(mapped.etag, "text")?,
            storage_class: add(mapped.storage_class, "text")?,
        };
        Ok(ParquetRows {
            file: file.to_string(),
            reader,
            cols,
            slots,
            row_group: 0,
            in_row_group: false,
            batch_rows: 0,
            batch_pos: 0,
            row: 0,
        })
    }

    /// Opens the next row group's column readers; false when there is none left.
    fn open_row_group(&mut self) -> Result<bool> {
        if self.row_group >= self.reader.num_row_groups() {
            return Ok(false);
        }
        let rg = self.reader.get_row_group(self.row_group).map_err(|e| err(&self.file, format!("row group {}: {e}", self.row_group)))?;
        for c in &mut self.cols {
            let r = rg.get_column_reader(c.index).map_err(|e| err(&self.file, format!("row group {}: {e}", self.row_group)))?;
            match (&mut c.data, r) {
                (ColData::Bytes(slot, _), ColumnReader::ByteArrayColumnReader(r)) => *slot = Some(r),
                (ColData::Bool(slot, _), ColumnReader::BoolColumnReader(r)) => *slot = Some(r),
                (ColData::I64(slot, _, _), ColumnReader::Int64ColumnReader(r)) => *slot = Some(r),
                (ColData::I32(slot, _), ColumnReader::Int32ColumnReader(r)) => *slot = Some(r),
                (ColData::I96(slot, _), ColumnReader::Int96ColumnReader(r)) => *slot = Some(r),
                _ => return Err(err(&self.file, "a column changed type between row groups")),
            }
        }
        self.row_group += 1;
        Ok(true)
    }

    /// Decodes the next batch of every projected column; false at the end of the row group.
    fn read_batch(&mut self) -> Result<bool> {
        let mut rows: Option<usize> = None;
        let rg = self.row_group;
        for c in &mut self.cols {
            c.def.clear();
            c.next_value = 0;
            let def = Some(&mut c.def);
            let got = match &mut c.data {
                ColData::Bytes(r, v) => read(r, v, def),
                ColData::Bool(r, v) => read(r, v, def),
                ColData::I64(r, v, _) => read(r, v, def),
                ColData::I32(r, v) => read(r, v, def),
                ColData::I96(r, v) => read(r, v, def),
            }
            .map_err(|e| err(&self.file, format!("row group {}, after row {}: {e}", rg - 1, self.row)))?;
            let (got, values) = got;
            // Rows are assembled by indexing these buffers, so they must agree exactly.
            let present = if c.max_def == 0 { got } else { c.def.iter().filter(|&&d| d == c.max_def).count() };
            if (c.max_def > 0 && c.def.len() != got) || present != values {
                return Err(err(
                    &self.file,
                    format!(
                        "row group {}, after row {}: column {} has {values} values for {present} non-null rows",
                        rg - 1,
                        self.row,
                        c.index
                    ),
                ));
            }
            match rows {
                None => rows = Some(got),
                Some(n) if n == got => {}
                Some(n) => return Err(err(&self.file, format!("row group {}: columns disagree on the row count ({n} vs {got})", rg - 1))),
            }
        }
        self.batch_rows = rows.unwrap_or(0);
        self.batch_pos = 0;
        Ok(self.batch_rows > 0)
    }

    /// The next row, or `None` at the end of the file.
    pub(crate) fn next_row(&mut self) -> Result<Option<RowView<'_>>> {
        while self.batch_pos >= self.batch_rows {
            if self.in_row_group && self.read_batch()? {
                break;
            }
            if !self.open_row_group()? {
                return Ok(None);
            }
            self.in_row_group = true;
        }
        let pos = self.batch_pos;
        self.batch_pos += 1;
        self.row += 1;
        for c in &mut self.cols {
            c.next_value += usize::from(c.max_def == 0 || c.def[pos] == c.max_def);
        }
        let row = self.row;
        let file = &self.file;
        let cols = &self.cols;
        let at = |slot: Option<usize>| -> Val<'_> {
            let Some(i) = slot else { return Val::Null };
            let c = &cols[i];
            if c.max_def > 0 && c.def[pos] != c.max_def {
                return Val::Null;
            }
            let v = c.next_value - 1;
            match &c.data {
                ColData::Bytes(_, vals) => Val::Bytes(vals[v].data()),
                ColData::Bool(_, vals) => Val::Bool(vals[v]),
                ColData::I32(_, vals) => Val::Int(i64::from(vals[v])),
                ColData::I64(_, vals, unit) => match unit {
                    TsUnit::Millis => Val::Millis(vals[v]),
                    TsUnit::Micros => Val::Millis(vals[v].div_euclid(1_000)),
                    TsUnit::Nanos => Val::Millis(vals[v].div_euclid(1_000_000)),
                },
                ColData::I96(_, vals) => Val::Millis(vals[v].to_millis()),
            }
        };
        let fail = |d: String| err(file, format!("row {row}: {d}"));
        let text = |slot: Option<usize>, name: &str| -> Result<Option<&str>> {
            match at(slot) {
                Val::Null => Ok(None),
                Val::Bytes([]) => Ok(None),
                Val::Bytes(b) => std::str::from_utf8(b).map(Some).map_err(|_| fail(format!("{name} is not UTF-8"))),
                _ => Ok(None),
            }
        };
        let key = match at(Some(self.slots.key)) {
            Val::Bytes(b) if !b.is_empty() => {
                std::str::from_utf8(b).map_err(|_| fail(format!("key {:?} does not decode to UTF-8", String::from_utf8_lossy(b))))?
            }
            _ => return Err(fail("the key is empty or null".into())),
        };
        let size = match at(self.slots.size) {
            Val::Int(n) | Val::Millis(n) => u64::try_from(n).map_err(|_| fail(format!("size {n} is negative")))?,
            _ => 0,
        };
        let flag = |slot: Option<usize>| match at(slot) {
            Val::Bool(b) => Some(b),
            _ => None,
        };
        let last_modified_ms = match at(self.slots.last_modified) {
            Val::Millis(n) | Val::Int(n) => Some(n),
            _ => None,
        };
        Ok(Some(RowView {
            key,
            size,
            version_id: text(self.slots.version_id, "version_id")?,
            is_latest: flag(self.slots.is_latest),
            is_delete_marker: flag(self.slots.is_delete_marker).unwrap_or(false),
            last_modified_ms,
            etag: text(self.slots.etag, "e_tag")?,
            storage_class: text(self.slots.storage_class, "storage_class")?,
        }))
    }
}

/// Reads up to [`BATCH`] records of one column into `values`, returning how many rows and
/// how many (non-null) values were decoded.
fn read<T: parquet::data_type::DataType>(
    reader: &mut Option<ColumnReaderImpl<T>>,
    values: &mut Vec<T::T>,
    def: Option<&mut Vec<i16>>,
) -> parquet::errors::Result<(usize, usize)> {
    values.clear();
    match reader {
        None => Ok((0, 0)),
        Some(r) => {
            let (records, _, _) = r.read_records(BATCH, def, None, values)?;
            Ok((records, values.len()))
        }
    }
}
