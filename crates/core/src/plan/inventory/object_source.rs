//! An inventory source over the engine's [`ObjectStore`] port: report objects are read from S3
//! with ranged GETs of bounded size, so a report of any size streams through constant memory.
//!
//! The parsers are synchronous `Read` consumers running on a blocking thread; each read here
//! blocks that thread on one async ranged GET.

use std::io::{self, Read};
use std::sync::Arc;

use bytes::Bytes;

use super::source::InventorySource;
use crate::ports::ObjectStore;
use crate::{Error, Result};

/// Bytes fetched per ranged GET.
const CHUNK: u64 = 8 * 1024 * 1024;

/// Reads objects of the inventory destination bucket through the S3 port.
pub struct ObjectStoreSource {
    store: Arc<dyn ObjectStore>,
    bucket: String,
    handle: tokio::runtime::Handle,
}

impl ObjectStoreSource {
    /// A source for `bucket`; `handle` is the runtime the port's futures run on.
    pub fn new(store: Arc<dyn ObjectStore>, bucket: impl Into<String>, handle: tokio::runtime::Handle) -> Self {
        ObjectStoreSource { store, bucket: bucket.into(), handle }
    }
}

impl InventorySource for ObjectStoreSource {
    fn open(&self, key: &str) -> Result<Box<dyn Read + Send>> {
        let info = self.handle.block_on(self.store.head(&self.bucket, key, None))?;
        let Some(info) = info else {
            return Err(Error::Inventory {
                file: format!("s3://{}/{key}", self.bucket),
                line: None,
                detail: "missing: no such object".into(),
            });
        };
        // Pin the version read first, so a report rewritten during the read is never mixed.
        let version = info.version_id.filter(|v| v != "null" && !v.is_empty());
        Ok(Box::new(RangedReader {
            store: self.store.clone(),
            bucket: self.bucket.clone(),
            key: key.to_string(),
            version,
            size: info.size,
            pos: 0,
            buf: Bytes::new(),
            handle: self.handle.clone(),
        }))
    }
}

struct RangedReader {
    store: Arc<dyn ObjectStore>,
    bucket: String,
    key: String,
    version: Option<String>,
    size: u64,
    pos: u64,
    buf: Bytes,
    handle: tokio::runtime::Handle,
}

impl Read for RangedReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.buf.is_empty() {
            if self.pos >= self.size {
                return Ok(0);
            }
            let len = CHUNK.min(self.size - self.pos);
            let fut = self.store.get_range(&self.bucket, &self.key, self.version.as_deref(), self.pos, len);
            self.buf = self.handle.block_on(fut).map_err(|e| io::Error::other(format!("s3://{}/{}: {e}", self.bucket, self.key)))?;
            if self.buf.is_empty() {
                return Err(io::Error::new(io::ErrorKind::UnexpectedEof, format!("s3://{}/{} ended early", self.bucket, self.key)));
            }
            self.pos += self.buf.len() as u64;
        }
        let n = out.len().min(self.buf.len());
        out[..n].copy_from_slice(&self.buf.split_to(n));
        Ok(n)
    }
}

/// Splits `s3://bucket/key` into its parts, with an error that names the URL.
pub fn parse_s3_url(url: &str) -> Result<(String, String)> {
    let rest = url.strip_prefix("s3://").ok_or_else(|| Error::Invalid(format!("manifest URL {url} is not an s3:// URL")))?;
    match rest.split_once('/') {
        Some((b, k)) if !b.is_empty() && !k.is_empty() => Ok((b.to_string(), k.to_string())),
        _ => Err(Error::Invalid(format!("manifest URL {url} needs a bucket and a key: s3://bucket/path/manifest.json"))),
    }
}
