//! The CSV side of the reader: a streaming record splitter for S3 Inventory's quoted CSV,
//! strict URL decoding of keys, and the mapping of a record to a [`RowView`].

use std::io::{self, BufRead};

use super::manifest::Columns;
use super::{parse_bool, parse_timestamp, RowView};
use crate::{Error, Result};

/// Splits a decompressed CSV stream into records, each a list of unquoted fields.
///
/// Fields are copied, unescaped, into one buffer per record, so a record costs no allocation
/// once the buffers have grown to the longest record seen.
pub(crate) struct CsvRecords<R> {
    input: R,
    file: String,
    /// Physical lines consumed so far.
    line: u64,
    /// The line on which the current record began.
    record_line: u64,
    raw: Vec<u8>,
    out: Vec<u8>,
    ends: Vec<usize>,
}

/// What a scan of the raw bytes found.
enum Scan {
    Complete,
    /// The record ends inside a quoted field: the newline belongs to the field.
    OpenQuote,
}

impl<R: BufRead> CsvRecords<R> {
    pub(crate) fn new(input: R, file: &str) -> Self {
        CsvRecords {
            input,
            file: file.to_string(),
            line: 0,
            record_line: 0,
            raw: Vec::with_capacity(1024),
            out: Vec::with_capacity(1024),
            ends: Vec::with_capacity(32),
        }
    }

    /// The line on which the current record began (1-based).
    pub(crate) fn record_line(&self) -> u64 {
        self.record_line
    }

    /// Lines consumed so far; the position of a failure inside the stream itself.
    pub(crate) fn lines_read(&self) -> u64 {
        self.line
    }

    pub(crate) fn input_mut(&mut self) -> &mut R {
        &mut self.input
    }

    pub(crate) fn error(&self, line: u64, detail: impl Into<String>) -> Error {
        Error::Inventory { file: self.file.clone(), line: Some(line), detail: detail.into() }
    }

    /// Reads the next record; `Ok(false)` at the end of the stream. Blank lines are skipped,
    /// since S3 ends files (and sometimes gzip members) with a newline.
    pub(crate) fn next_record(&mut self) -> Result<bool> {
        loop {
            self.raw.clear();
            let n = self.read_line()?;
            if n == 0 {
                return Ok(false);
            }
            self.record_line = self.line;
            if trim_eol(&self.raw).is_empty() {
                continue;
            }
            loop {
                match self.scan()? {
                    Scan::Complete => return Ok(true),
                    Scan::OpenQuote => {
                        if self.read_line()? == 0 {
                            return Err(self.error(self.record_line, "a quoted field is not closed before the end of the file"));
                        }
                    }
                }
            }
        }
    }

    fn read_line(&mut self) -> Result<usize> {
        match self.input.read_until(b'\n', &mut self.raw) {
            Ok(0) => Ok(0),
            Ok(n) => {
                self.line += 1;
                Ok(n)
            }
            Err(e) => Err(match e.kind() {
                // The input is gzip-decompressed, so these name what went wrong in the stream.
                io::ErrorKind::UnexpectedEof => self.error(self.line + 1, format!("the gzip stream ends early (truncated file?): {e}")),
                io::ErrorKind::InvalidInput | io::ErrorKind::InvalidData => {
                    self.error(self.line + 1, format!("the gzip stream is corrupt (or not gzip): {e}"))
                }
                _ => super::io_error(e, &self.file, Some(self.line + 1)),
            }),
        }
    }

    /// Splits `raw` into fields. Quoted fields may contain commas, doubled quotes and
    /// newlines; unquoted fields are taken as they are.
    fn scan(&mut self) -> Result<Scan> {
        self.out.clear();
        self.ends.clear();
        let complete_line = self.raw.last() == Some(&b'\n');
        let raw = trim_eol(&self.raw);
        let mut i = 0;
        loop {
            if raw.get(i) == Some(&b'"') {
                i += 1;
                loop {
                    match raw[i..].iter().position(|&b| b == b'"') {
                        None => {
                            if complete_line {
                                return Ok(Scan::OpenQuote);
                            }
                            return Err(self.error(self.record_line, "a quoted field is not closed before the end of the file"));
                        }
                        Some(p) => {
                            self.out.extend_from_slice(&raw[i..i + p]);
                            i += p + 1;
                            if raw.get(i) == Some(&b'"') {
                                self.out.push(b'"');
                                i += 1;
                            } else {
                                break;
                            }
                        }
                    }
                }
                self.ends.push(self.out.len());
                match raw.get(i) {
                    None => return Ok(Scan::Complete),
                    Some(b',') => i += 1,
                    Some(&c) => {
                        return Err(self.error(
                            self.record_line,
                            format!("unexpected {:?} after the closing quote of field {}", c as char, self.ends.len()),
                        ))
                    }
                }
            } else {
                let rest = &raw[i..];
                let p = rest.iter().position(|&b| b == b',').unwrap_or(rest.len());
                self.out.extend_from_slice(&rest[..p]);
                self.ends.push(self.out.len());
                i += p;
                if i >= raw.len() {
                    return Ok(Scan::Complete);
                }
                i += 1;
            }
        }
    }

    /// The number of fields in the current record.
    pub(crate) fn len(&self) -> usize {
        self.ends.len()
    }

    /// The `i`th field of the current record, unquoted.
    pub(crate) fn field(&self, i: usize) -> &[u8] {
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        &self.out[start..self.ends[i]]
    }
}

/// Strips a trailing `\n` or `\r\n`.
fn trim_eol(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// Decodes an S3 Inventory CSV key: `+` is a space and `%XX` a byte; the result must be UTF-8.
///
/// A `%` not followed by two hex digits is an error rather than a literal, because S3 always
/// encodes `%` itself, so such a key cannot have come from S3 and guessing would protect the
/// wrong object.
pub fn decode_key(encoded: &[u8], out: &mut Vec<u8>) -> std::result::Result<(), String> {
    out.clear();
    if !encoded.iter().any(|&b| b == b'%' || b == b'+') {
        out.extend_from_slice(encoded);
    } else {
        let mut i = 0;
        while i < encoded.len() {
            match encoded[i] {
                b'+' => {
                    out.push(b' ');
                    i += 1;
                }
                b'%' => {
                    let hi = encoded.get(i + 1).and_then(|&c| (c as char).to_digit(16));
                    let lo = encoded.get(i + 2).and_then(|&c| (c as char).to_digit(16));
                    match (hi, lo) {
                        (Some(h), Some(l)) => out.push((h * 16 + l) as u8),
                        _ => {
                            let end = (i + 3).min(encoded.len());
                            return Err(format!(
                                "key {:?} has a malformed escape {:?}",
                                String::from_utf8_lossy(encoded),
                                String::from_utf8_lossy(&encoded[i..end])
                            ));
                        }
                    }
                    i += 3;
                }
                b => {
                    out.push(b);
                    i += 1;
                }
            }
        }
    }
    if std::str::from_utf8(out).is_err() {
        return Err(format!("key {:?} does not decode to UTF-8", String::from_utf8_lossy(encoded)));
    }
    if out.is_empty() {
        return Err("the key is empty".into());
    }
    Ok(())
}

fn optional(field: &[u8]) -> Option<&[u8]> {
    (!field.is_empty()).then_some(field)
}

fn text<'a>(field: &'a [u8], what: &str) -> std::result::Result<&'a str, String> {
    std::str::from_utf8(field).map_err(|_| format!("{what} is not UTF-8"))
}

/// Maps the current record to a row, decoding the key into `key_buf`.
pub(crate) fn to_row<'a, R: BufRead>(rec: &'a CsvRecords<R>, cols: &Columns, key_buf: &'a mut Vec<u8>) -> Result<RowView<'a>> {
    let line = rec.record_line();
    let fail = |d: String| rec.error(line, d);
    if rec.len() != cols.count {
        return Err(fail(format!("expected {} columns (from fileSchema), found {}", cols.count, rec.len())));
    }
    decode_key(rec.field(cols.key), key_buf).map_err(fail)?;
    let key = std::str::from_utf8(key_buf).map_err(|_| fail("key is not UTF-8".into()))?;
    let size = match cols.size.and_then(|i| optional(rec.field(i))) {
        None => 0,
        Some(s) => parse_u64(s).ok_or_else(|| fail(format!("Size {:?} is not a byte count", String::from_utf8_lossy(s))))?,
    };
    let flag = |col: Option<usize>, name: &str| -> Result<Option<bool>> {
        match col.and_then(|i| optional(rec.field(i))) {
            None => Ok(None),
            Some(v) => parse_bool(v).map(Some).ok_or_else(|| fail(format!("{name} {:?} is not true or false", String::from_utf8_lossy(v)))),
        }
    };
    let is_latest = flag(cols.is_latest, "IsLatest")?;
    let is_delete_marker = flag(cols.is_delete_marker, "IsDeleteMarker")?.unwrap_or(false);
    let last_modified = match cols.last_modified.and_then(|i| optional(rec.field(i))) {
        None => None,
        Some(v) => Some(
            parse_timestamp(v).ok_or_else(|| fail(format!("LastModifiedDate {:?} is not an RFC 3339 time", String::from_utf8_lossy(v))))?,
        ),
    };
    let get = |col: Option<usize>, name: &str| -> Result<Option<&'a str>> {
        match col.and_then(|i| optional(rec.field(i))) {
            None => Ok(None),
            Some(v) => text(v, name).map(Some).map_err(fail),
        }
    };
    Ok(RowView {
        key,
        size,
        version_id: get(cols.version_id, "VersionId")?,
        is_latest,
        is_delete_marker,
        last_modified_ms: last_modified,
        etag: get(cols.etag, "ETag")?,
        storage_class: get(cols.storage_class, "StorageClass")?,
    })
}

/// Parses a non-negative decimal integer without going through `str`.
fn parse_u64(s: &[u8]) -> Option<u64> {
    if s.is_empty() || s.len() > 20 {
        return None;
    }
    let mut n: u64 = 0;
    for &c in s {
        if !c.is_ascii_digit() {
            return None;
        }
        n = n.checked_mul(10)?.checked_add(u64::from(c - b'0'))?;
    }
    Some(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn records(text: &str) -> Vec<Vec<String>> {
        let mut r = CsvRecords::new(text.as_bytes(), "f.csv");
        let mut out = Vec::new();
        while r.next_record().unwrap() {
            out.push((0..r.len()).map(|i| String::from_utf8(r.field(i).to_vec()).unwrap()).collect());
        }
        out
    }

    #[test]
    fn splits_quoted_and_unquoted_fields() {
        let got = records("\"b\",\"a,b\",\"say \"\"hi\"\"\",\"\"\nplain,,x\r\n\n\"multi\nline\",\"z\"\n\"last\"");
        assert_eq!(got, vec![vec!["b", "a,b", "say \"hi\"", ""], vec!["plain", "", "x"], vec!["multi\nline", "z"], vec!["last"],]);
    }

    #[test]
    fn the_documented_line_parses() {
        let line = "\"ctripcorp-nephele-file-eu\",\"fd/tg/g3/M08/E6/51/CggYG1Y26zCAfj-uAAFPZF8NV_g821.jpg\",\"85860\",\"2017-08-09T07:07:56.000Z\",\"d0655f3673af1ca741b11b29865be8e1\",\"STANDARD\",\"false\",\"\"\n";
        let cols = Columns::from_names(&[
            "Bucket",
            "Key",
            "Size",
            "LastModifiedDate",
            "ETag",
            "StorageClass",
            "IsMultipartUploaded",
            "ReplicationStatus",
        ])
        .unwrap();
        let mut r = CsvRecords::new(line.as_bytes(), "f.csv");
        assert!(r.next_record().unwrap());
        let mut kb = Vec::new();
        let row = to_row(&r, &cols, &mut kb).unwrap();
        assert_eq!(row.key, "fd/tg/g3/M08/E6/51/CggYG1Y26zCAfj-uAAFPZF8NV_g821.jpg");
        assert_eq!(row.size, 85860);
        assert_eq!(row.etag, Some("d0655f3673af1ca741b11b29865be8e1"));
        assert_eq!(row.storage_class, Some("STANDARD"));
        assert_eq!(row.last_modified_ms, Some(1_502_262_476_000));
        assert_eq!((row.version_id, row.is_latest, row.is_delete_marker), (None, None, false));
    }

    #[test]
    fn decodes_keys_strictly() {
        let mut out = Vec::new();
        let mut dec = |s: &str| decode_key(s.as_bytes(), &mut out).map(|_| String::from_utf8(out.clone()).unwrap());
        assert_eq!(dec("a+b%2Bc%25d%3De").unwrap(), "a b+c%d=e");
        assert_eq!(dec("%C3%BCnic%c3%b6de/x").unwrap(), "ünicöde/x");
        assert_eq!(dec("plain/key.txt").unwrap(), "plain/key.txt");
        assert!(dec("100%").unwrap_err().contains("malformed escape"));
        assert!(dec("a%zzb").unwrap_err().contains("malformed escape"));
        assert!(dec("%FF%FE").unwrap_err().contains("UTF-8"));
        assert!(dec("").unwrap_err().contains("empty"));
    }

    #[test]
    fn bad_records_name_the_line() {
        let cols = Columns::from_names(&["Bucket", "Key", "Size"]).unwrap();
        let check = |text: &str, line: u64, what: &str| {
            let mut r = CsvRecords::new(text.as_bytes(), "data/x.csv.gz");
            let mut kb = Vec::new();
            let err = loop {
                match r.next_record() {
                    Err(e) => break e,
                    Ok(false) => panic!("no error in {text:?}"),
                    Ok(true) => {
                        if let Err(e) = to_row(&r, &cols, &mut kb) {
                            break e;
                        }
                    }
                }
            };
            match &err {
                Error::Inventory { file, line: Some(l), detail } => {
                    assert_eq!((file.as_str(), *l), ("data/x.csv.gz", line), "{err}");
                    assert!(detail.contains(what), "{err}");
                }
                other => panic!("unexpected {other}"),
            }
        };
        check("\"b\",\"k\",\"1\"\n\"b\",\"k2\"\n", 2, "expected 3 columns");
        check("\"b\",\"k\",\"1\"\n\n\"b\",\"k%G1\",\"1\"\n", 3, "malformed escape");
        check("\"b\",\"k\",\"x1\"\n", 1, "not a byte count");
        check("\"b\",\"k\"x,\"1\"\n", 1, "after the closing quote");
        check("\"b\",\"k\",\"1\"\n\"b\",\"k\n", 2, "not closed");
    }
}
