//! Where a report's bytes come from: a small trait, and the local-directory implementation
//! behind `file://` manifest URLs.
//!
//! The trait is synchronous on purpose: the parsers are streaming `Read` consumers, and an S3
//! adapter wraps a GetObject body (on a blocking thread) rather than the parsers becoming async.

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use crate::{Error, Result};

/// Opens objects of the inventory destination bucket by key.
pub trait InventorySource: Send + Sync {
    /// Opens the object at `key` for a sequential read of its whole body.
    ///
    /// A missing object should be reported as [`Error::Inventory`] naming the key (a report
    /// whose files are gone is permanently broken); a failed request as [`Error::Port`].
    fn open(&self, key: &str) -> Result<Box<dyn Read + Send>>;

    /// A local file holding the object, when there is one, so that formats that need random
    /// access (Parquet) read it in place instead of spilling a copy to a temporary file.
    fn local_path(&self, _key: &str) -> Option<PathBuf> {
        None
    }
}

/// A local directory standing for the destination bucket's root: the object at key `k` is
/// the file `root/k`.
#[derive(Debug, Clone)]
pub struct LocalDirSource {
    root: PathBuf,
}

impl LocalDirSource {
    /// A source rooted at `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        LocalDirSource { root: root.into() }
    }

    /// The directory standing for the bucket root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn path(&self, key: &str) -> Result<PathBuf> {
        // Keys are joined component by component so that a hostile manifest cannot name a
        // file outside the root (`..`) or an absolute path.
        let mut p = self.root.clone();
        for part in key.split('/') {
            if part == ".." || part == "." {
                return Err(Error::Inventory {
                    file: key.to_string(),
                    line: None,
                    detail: "a key with '.' or '..' components cannot be read from a local directory".into(),
                });
            }
            if !part.is_empty() {
                p.push(part);
            }
        }
        Ok(p)
    }
}

impl InventorySource for LocalDirSource {
    fn open(&self, key: &str) -> Result<Box<dyn Read + Send>> {
        let path = self.path(key)?;
        match File::open(&path) {
            Ok(f) => Ok(Box::new(f)),
            Err(e) => Err(Error::Inventory {
                file: key.to_string(),
                line: None,
                detail: if e.kind() == io::ErrorKind::NotFound {
                    format!("missing: no file at {}", path.display())
                } else {
                    format!("cannot open {}: {e}", path.display())
                },
            }),
        }
    }

    fn local_path(&self, key: &str) -> Option<PathBuf> {
        self.path(key).ok().filter(|p| p.is_file())
    }
}

/// A manifest located by URL: the source that reads the destination bucket, and the
/// manifest's key in it.
pub(crate) struct Located {
    pub source: LocalDirSource,
    pub manifest_key: String,
}

/// Splits a `file://` manifest URL into a bucket-root directory and the manifest's key.
///
/// The manifest sits at `<prefix>/<source-bucket>/<config-id>/<timestamp>/manifest.json` and
/// the prefix may have any number of components, so the root is found as the nearest ancestor
/// of the manifest's directory under which the first data file the manifest lists exists.
/// A manifest that lists no file is read with its own directory's grandparent's parent
/// (`<prefix>/<source-bucket>`) as the root, which only affects how keys are printed.
pub(crate) fn locate_file_url(url: &str, first_data_key: impl Fn(&Path) -> Result<Option<String>>) -> Result<Located> {
    let path = url.strip_prefix("file://").ok_or_else(|| Error::Invalid(format!("manifest URL {url:?} is not a file:// URL")))?;
    let path = PathBuf::from(path);
    if !path.is_file() {
        return Err(Error::Inventory { file: url.to_string(), line: None, detail: format!("missing: no manifest at {}", path.display()) });
    }
    let dir = path.parent().ok_or_else(|| Error::Invalid(format!("manifest URL {url:?} has no directory")))?;
    let first = first_data_key(&path)?;
    let root = match first {
        Some(key) => dir
            .ancestors()
            .find(|a| LocalDirSource::new(*a).local_path(&key).is_some())
            .ok_or_else(|| Error::Inventory {
                file: key.clone(),
                line: None,
                detail: format!("missing: the manifest lists it, but no ancestor directory of {} holds it", dir.display()),
            })?
            .to_path_buf(),
        None => dir.ancestors().nth(3).unwrap_or(dir).to_path_buf(),
    };
    let manifest_key = path
        .strip_prefix(&root)
        .map_err(|_| Error::Invalid(format!("manifest {} is not under {}", path.display(), root.display())))?
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join("/");
    Ok(Located { source: LocalDirSource::new(root), manifest_key })
}

/// Reads a whole small object (a manifest or its checksum) into memory.
pub(crate) fn read_all(source: &dyn InventorySource, key: &str, limit: u64) -> Result<Vec<u8>> {
    let mut r = source.open(key)?.take(limit + 1);
    let mut buf = Vec::new();
    r.read_to_end(&mut buf).map_err(|e| crate::plan::inventory::io_error(e, key, None))?;
    if buf.len() as u64 > limit {
        return Err(Error::Inventory {
            file: key.to_string(),
            line: None,
            detail: format!("larger than {limit} bytes; this is not an inventory manifest"),
        });
    }
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_paths_stay_under_the_root() {
        let s = LocalDirSource::new("/tmp/x");
        assert!(s.open("a/../../etc/passwd").is_err());
        assert_eq!(s.path("a//b").unwrap(), PathBuf::from("/tmp/x/a/b"));
        let e = s.open("no/such/key").err().unwrap().to_string();
        assert!(e.contains("no/such/key") && e.contains("missing"), "{e}");
    }
}
