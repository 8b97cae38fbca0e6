//! The S3 Inventory manifest: parsing `manifest.json`, verifying it against `manifest.checksum`,
//! and mapping the report's columns by name.

use md5::{Digest, Md5};
use serde::Deserialize;

use crate::{Error, Result};

/// The data file format a report was written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileFormat {
    Csv,
    Parquet,
    Orc,
}

impl FileFormat {
    fn parse(s: &str) -> Option<Self> {
        match s.to_ascii_lowercase().as_str() {
            "csv" => Some(FileFormat::Csv),
            "parquet" => Some(FileFormat::Parquet),
            "orc" => Some(FileFormat::Orc),
            _ => None,
        }
    }

    /// The name S3 uses in `fileFormat`.
    pub fn name(self) -> &'static str {
        match self {
            FileFormat::Csv => "CSV",
            FileFormat::Parquet => "Parquet",
            FileFormat::Orc => "ORC",
        }
    }
}

/// One data file listed by the manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataFile {
    /// The key of the data file in the destination bucket.
    pub key: String,
    /// Its size in bytes, as the manifest states it.
    pub size: u64,
    /// The lowercase hex MD5 of the file's bytes (the compressed bytes, for CSV).
    pub md5: String,
}

/// A parsed, verified manifest.
#[derive(Debug, Clone)]
pub struct Manifest {
    /// The key of `manifest.json` itself, used to name it in errors.
    pub key: String,
    pub source_bucket: String,
    pub destination_bucket: String,
    pub version: String,
    /// Milliseconds since the epoch when S3 started the report.
    pub creation_timestamp: Option<i64>,
    pub format: FileFormat,
    /// The raw `fileSchema` string.
    pub file_schema: String,
    pub files: Vec<DataFile>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawManifest {
    source_bucket: String,
    #[serde(default)]
    destination_bucket: String,
    #[serde(default)]
    version: String,
    #[serde(default)]
    creation_timestamp: Option<serde_json::Value>,
    file_format: String,
    file_schema: String,
    files: Vec<RawFile>,
}

#[derive(Deserialize)]
struct RawFile {
    key: String,
    size: serde_json::Value,
    #[serde(rename = "MD5checksum")]
    md5: String,
}

fn manifest_error(key: &str, detail: impl Into<String>) -> Error {
    Error::Inventory { file: key.to_string(), line: None, detail: detail.into() }
}

/// Lowercase hex MD5 of `bytes`.
pub(crate) fn md5_hex(bytes: &[u8]) -> String {
    hex::encode(Md5::digest(bytes))
}

impl Manifest {
    /// Parses `manifest.json` and checks it against the contents of `manifest.checksum`.
    ///
    /// The checksum file holds the hex MD5 of the manifest's bytes, possibly followed by a
    /// newline; a mismatch means the manifest was truncated or replaced while being read.
    pub fn parse(key: &str, json: &[u8], checksum: Option<&[u8]>) -> Result<Self> {
        if let Some(sum) = checksum {
            let expected = String::from_utf8_lossy(sum).trim().to_ascii_lowercase();
            let actual = md5_hex(json);
            if expected != actual {
                return Err(manifest_error(
                    key,
                    format!("MD5 mismatch: manifest.checksum says {expected}, manifest.json hashes to {actual}"),
                ));
            }
        }
        let raw: RawManifest = serde_json::from_slice(json).map_err(|e| Error::Inventory {
            file: key.to_string(),
            line: Some(e.line() as u64),
            detail: format!("not a valid inventory manifest: {e}"),
        })?;
        let format = FileFormat::parse(&raw.file_format)
            .ok_or_else(|| manifest_error(key, format!("unknown fileFormat {:?} (expected CSV, Parquet or ORC)", raw.file_format)))?;
        let creation_timestamp = match &raw.creation_timestamp {
            None | Some(serde_json::Value::Null) => None,
            Some(serde_json::Value::String(s)) => Some(
                s.trim().parse::<i64>().map_err(|_| manifest_error(key, format!("creationTimestamp {s:?} is not epoch milliseconds")))?,
            ),
            Some(serde_json::Value::Number(n)) => n.as_i64(),
            Some(other) => return Err(manifest_error(key, format!("creationTimestamp {other} is not epoch milliseconds"))),
        };
        let mut files = Vec::with_capacity(raw.files.len());
        for (i, f) in raw.files.into_iter().enumerate() {
            // S3 writes sizes as numbers; a string is accepted too because some tools re-emit
            // manifests with every value quoted.
            let size = match &f.size {
                serde_json::Value::Number(n) => n.as_u64(),
                serde_json::Value::String(s) => s.trim().parse::<u64>().ok(),
                _ => None,
            }
            .ok_or_else(|| manifest_error(key, format!("files[{i}] ({}): size {} is not a byte count", f.key, f.size)))?;
            let md5 = f.md5.trim().to_ascii_lowercase();
            if md5.len() != 32 || !md5.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(manifest_error(key, format!("files[{i}] ({}): MD5checksum {:?} is not a hex MD5", f.key, f.md5)));
            }
            if f.key.is_empty() {
                return Err(manifest_error(key, format!("files[{i}] has an empty key")));
            }
            files.push(DataFile { key: f.key, size, md5 });
        }
        Ok(Manifest {
            key: key.to_string(),
            source_bucket: raw.source_bucket,
            destination_bucket: raw.destination_bucket,
            version: raw.version,
            creation_timestamp,
            format,
            file_schema: raw.file_schema,
            files,
        })
    }

    /// Maps the CSV columns named by `fileSchema` (split on ", ") to the fields the reader uses.
    pub fn csv_columns(&self) -> Result<Columns> {
        let names: Vec<&str> = self.file_schema.split(',').map(str::trim).collect();
        Columns::from_names(&names).map_err(|detail| manifest_error(&self.key, detail))
    }
}

/// Normalises a column name so that CSV's `VersionId` and Parquet's `version_id` compare equal.
pub(crate) fn normalise(name: &str) -> String {
    name.chars().filter(|c| *c != '_' && *c != ' ').flat_map(char::to_lowercase).collect()
}

/// Where each column the reader needs sits in a row; `None` when the report lacks it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Columns {
    /// How many columns every row must have.
    pub count: usize,
    pub bucket: Option<usize>,
    pub key: usize,
    pub version_id: Option<usize>,
    pub is_latest: Option<usize>,
    pub is_delete_marker: Option<usize>,
    pub size: Option<usize>,
    pub last_modified: Option<usize>,
    pub etag: Option<usize>,
    pub storage_class: Option<usize>,
}

impl Columns {
    /// Maps column names (in file order) to positions; the `Key` column is required.
    pub fn from_names<S: AsRef<str>>(names: &[S]) -> std::result::Result<Self, String> {
        let norm: Vec<String> = names.iter().map(|n| normalise(n.as_ref())).collect();
        let find = |wanted: &str| -> std::result::Result<Option<usize>, String> {
            let mut hits = norm.iter().enumerate().filter(|(_, n)| n.as_str() == wanted);
            let first = hits.next().map(|(i, _)| i);
            if hits.next().is_some() {
                return Err(format!("the schema names column {wanted:?} twice"));
            }
            Ok(first)
        };
        let key = find("key")?.ok_or_else(|| {
            format!("the schema has no Key column (columns: {})", names.iter().map(|n| n.as_ref()).collect::<Vec<_>>().join(", "))
        })?;
        Ok(Columns {
            count: names.len(),
            bucket: find("bucket")?,
            key,
            version_id: find("versionid")?,
            is_latest: find("islatest")?,
            is_delete_marker: find("isdeletemarker")?,
            size: find("size")?,
            last_modified: find("lastmodifieddate")?,
            etag: find("etag")?,
            storage_class: find("storageclass")?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = r#"{"sourceBucket":"example-source-bucket","destinationBucket":"arn:aws:s3:::example-inventory-destination-bucket",
 "version":"2016-11-30","creationTimestamp":"1514944800000","fileFormat":"CSV",
 "fileSchema":"Bucket, Key, VersionId, IsLatest, IsDeleteMarker, Size, LastModifiedDate, ETag, StorageClass, IsMultipartUploaded, ReplicationStatus, EncryptionStatus, ObjectLockRetainUntilDate, ObjectLockMode, ObjectLockLegalHoldStatus, IntelligentTieringAccessTier, BucketKeyStatus, ChecksumAlgorithm",
 "files":[{"key":"Inventory/example-source-bucket/2016-11-06T21-32Z/files/939c6d46-85a9-4ba8-87bd-9db705a579ce.csv.gz","size":2147483647,"MD5checksum":"f11166069f1990abeb9c97ace9cdfabc"}]}"#;

    #[test]
    fn parses_the_documented_example() {
        let sum = format!("{}\n", md5_hex(SAMPLE.as_bytes()));
        let m = Manifest::parse("m.json", SAMPLE.as_bytes(), Some(sum.as_bytes())).unwrap();
        assert_eq!(m.source_bucket, "example-source-bucket");
        assert_eq!(m.format, FileFormat::Csv);
        assert_eq!(m.creation_timestamp, Some(1_514_944_800_000));
        assert_eq!(m.files.len(), 1);
        assert_eq!(m.files[0].size, 2_147_483_647);
        let c = m.csv_columns().unwrap();
        assert_eq!(c.count, 18);
        assert_eq!((c.bucket, c.key, c.version_id, c.is_latest, c.is_delete_marker), (Some(0), 1, Some(2), Some(3), Some(4)));
        assert_eq!((c.size, c.last_modified, c.etag, c.storage_class), (Some(5), Some(6), Some(7), Some(8)));
    }

    #[test]
    fn checksum_mismatch_and_garbage_name_the_manifest() {
        let e = Manifest::parse("a/b/manifest.json", SAMPLE.as_bytes(), Some(b"00000000000000000000000000000000")).unwrap_err().to_string();
        assert!(e.contains("a/b/manifest.json") && e.contains("MD5 mismatch"), "{e}");
        let e = Manifest::parse("a/b/manifest.json", b"{\n\"sourceBucket\": 3", None).unwrap_err().to_string();
        assert!(e.contains("a/b/manifest.json, line 2") && e.contains("not a valid"), "{e}");
        let bad = SAMPLE.replace("\"CSV\"", "\"XML\"");
        let e = Manifest::parse("m", bad.as_bytes(), None).unwrap_err().to_string();
        assert!(e.contains("unknown fileFormat"), "{e}");
        let bad = SAMPLE.replace("f11166069f1990abeb9c97ace9cdfabc", "nothex");
        let e = Manifest::parse("m", bad.as_bytes(), None).unwrap_err().to_string();
        assert!(e.contains("not a hex MD5"), "{e}");
    }

    #[test]
    fn columns_map_by_name_in_any_order() {
        let c = Columns::from_names(&["Bucket", "Key", "ETag", "Size", "StorageClass", "LastModifiedDate"]).unwrap();
        assert_eq!((c.key, c.etag, c.size, c.storage_class, c.last_modified), (1, Some(2), Some(3), Some(4), Some(5)));
        assert_eq!(c.version_id, None);
        let p = Columns::from_names(&["bucket", "key", "version_id", "is_latest", "size", "e_tag"]).unwrap();
        assert_eq!((p.version_id, p.is_latest, p.size, p.etag), (Some(2), Some(3), Some(4), Some(5)));
        assert!(Columns::from_names(&["Bucket", "Size"]).unwrap_err().contains("no Key column"));
        assert!(Columns::from_names(&["Key", "Size", "size"]).unwrap_err().contains("twice"));
    }
}
