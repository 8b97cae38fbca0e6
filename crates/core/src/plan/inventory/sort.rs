//! A bounded-memory external merge sort of (key, size) pairs: inventory rows come in any order,
//! the planner needs them in key order, and a report can hold billions of rows.
//!
//! Pairs are collected in one byte arena until the memory budget is reached, sorted, and
//! written as a run file (keys front-coded, since sorted neighbours share long prefixes).
//! Runs are then merged k ways, at most [`FAN_IN`] at a time, so open files and merge buffers
//! stay bounded too. The order is (key bytes, size), total and independent of how rows were
//! split into runs, so the same report always yields the same sequence.

use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;
use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering as AtomicOrdering};

use crate::{Error, Result};

/// Most runs merged at once; more are merged in rounds through intermediate runs.
const FAN_IN: usize = 64;
/// Buffer per run file while merging, and for writing a run.
const RUN_BUF: usize = 64 * 1024;
/// Bytes of bookkeeping per pair besides the key's own bytes.
const ENTRY_BYTES: usize = std::mem::size_of::<Entry>();

pub(crate) fn spill_error(what: &str, e: io::Error) -> Error {
    Error::port(format!("inventory spill ({what})"), e.to_string(), false)
}

/// A private temporary directory, removed (with its contents) when dropped.
#[derive(Debug)]
pub(crate) struct SpillDir {
    path: PathBuf,
}

impl SpillDir {
    pub(crate) fn new(root: Option<&PathBuf>) -> Result<Self> {
        static SEQ: AtomicU64 = AtomicU64::new(0);
        let root = root.cloned().unwrap_or_else(std::env::temp_dir);
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or_default();
        let path = root.join(format!("tidemark-inventory-{}-{nanos}-{}", std::process::id(), SEQ.fetch_add(1, AtomicOrdering::Relaxed)));
        std::fs::create_dir_all(&path).map_err(|e| spill_error("create directory", e))?;
        Ok(SpillDir { path })
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for SpillDir {
    fn drop(&mut self) {
        // Nothing useful can be done about a failure to clean up a temporary directory.
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

#[derive(Clone, Copy)]
struct Entry {
    off: usize,
    len: usize,
    size: u64,
}

/// Collects pairs in any order and yields them sorted.
pub(crate) struct ExternalSorter {
    arena_cap: usize,
    entries_cap: usize,
    arena: Vec<u8>,
    entries: Vec<Entry>,
    spill_root: Option<PathBuf>,
    dir: Option<SpillDir>,
    runs: Vec<PathBuf>,
    /// Total run bytes written, for reporting.
    spilled_bytes: u64,
}

impl ExternalSorter {
    /// A sorter holding at most about `budget` bytes of pairs in memory.
    pub(crate) fn new(budget: usize, spill_root: Option<PathBuf>) -> Self {
        let budget = budget.max(64 * 1024);
        // Two thirds for key bytes, one third for the entries that index them: about right
        // for keys of 40-100 bytes, and either side spills when it fills.
        let arena_cap = budget / 3 * 2;
        let entries_cap = (budget - arena_cap) / ENTRY_BYTES;
        ExternalSorter {
            arena_cap,
            entries_cap,
            arena: Vec::new(),
            entries: Vec::new(),
            spill_root,
            dir: None,
            runs: Vec::new(),
            spilled_bytes: 0,
        }
    }

    /// Adds a pair.
    pub(crate) fn push(&mut self, key: &[u8], size: u64) -> Result<()> {
        if !self.entries.is_empty() && (self.arena.len() + key.len() > self.arena_cap || self.entries.len() >= self.entries_cap) {
            self.spill()?;
        }
        // Grow by doubling up to the cap (not past it), so a small report stays small and a
        // large one never holds more than the budget.
        let need = self.arena.len() + key.len();
        if need > self.arena.capacity() {
            let target = (self.arena.capacity() * 2).max(64 * 1024).min(self.arena_cap).max(need);
            self.arena.reserve_exact(target - self.arena.len());
        }
        if self.entries.len() == self.entries.capacity() {
            let target = (self.entries.capacity() * 2).max(1024).min(self.entries_cap).max(self.entries.len() + 1);
            self.entries.reserve_exact(target - self.entries.len());
        }
        self.entries.push(Entry { off: self.arena.len(), len: key.len(), size });
        self.arena.extend_from_slice(key);
        Ok(())
    }

    fn sort_entries(&mut self) {
        let arena = &self.arena;
        self.entries.sort_unstable_by(|a, b| arena[a.off..a.off + a.len].cmp(&arena[b.off..b.off + b.len]).then(a.size.cmp(&b.size)));
    }

    fn spill_dir(&mut self) -> Result<&Path> {
        if self.dir.is_none() {
            self.dir = Some(SpillDir::new(self.spill_root.as_ref())?);
        }
        Ok(self.dir.as_ref().map(SpillDir::path).unwrap_or(Path::new(".")))
    }

    fn new_run_path(&mut self) -> Result<PathBuf> {
        let n = self.runs.len();
        Ok(self.spill_dir()?.join(format!("run-{n:06}")))
    }

    /// Sorts what is in memory and writes it out as a run.
    fn spill(&mut self) -> Result<()> {
        self.sort_entries();
        let path = self.new_run_path()?;
        let mut w = RunWriter::create(&path)?;
        for e in &self.entries {
            w.write(&self.arena[e.off..e.off + e.len], e.size)?;
        }
        self.spilled_bytes += w.finish()?;
        self.runs.push(path);
        self.entries.clear();
        self.arena.clear();
        Ok(())
    }

    /// Calls `f` with every pair in ascending (key, size) order.
    pub(crate) fn finish(mut self, mut f: impl FnMut(&[u8], u64) -> Result<()>) -> Result<SortStats> {
        if self.runs.is_empty() {
            // Everything fitted in memory: no files at all.
            self.sort_entries();
            for e in &self.entries {
                f(&self.arena[e.off..e.off + e.len], e.size)?;
            }
            return Ok(SortStats::default());
        }
        if !self.entries.is_empty() {
            self.spill()?;
        }
        // Free the arena before merging: the merge needs only its small buffers.
        self.arena = Vec::new();
        self.entries = Vec::new();
        let mut runs = std::mem::take(&mut self.runs);
        let total_runs = runs.len();
        let mut merged = 0usize;
        while runs.len() > FAN_IN {
            let mut next = Vec::new();
            for group in runs.chunks(FAN_IN) {
                let path = self.spill_dir()?.join(format!("merged-{merged:06}"));
                merged += 1;
                let mut w = RunWriter::create(&path)?;
                merge(group, |k, s| w.write(k, s))?;
                self.spilled_bytes += w.finish()?;
                for p in group {
                    // Merged runs are no longer needed; removing them keeps the disk bounded.
                    let _ = std::fs::remove_file(p);
                }
                next.push(path);
            }
            runs = next;
        }
        merge(&runs, &mut f)?;
        Ok(SortStats { runs: total_runs, spilled_bytes: self.spilled_bytes })
    }
}

/// How much a sort spilled.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct SortStats {
    pub runs: usize,
    pub spilled_bytes: u64,
}

fn write_varint(w: &mut impl Write, mut v: u64) -> io::Result<()> {
    let mut buf = [0u8; 10];
    let mut i = 0;
    loop {
        let b = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            buf[i] = b;
            i += 1;
            break;
        }
        buf[i] = b | 0x80;
        i += 1;
    }
    w.write_all(&buf[..i])
}

/// Reads a varint; `Ok(None)` at a clean end of file.
fn read_varint(r: &mut impl Read) -> io::Result<Option<u64>> {
    let mut v = 0u64;
    let mut shift = 0;
    loop {
        let mut b = [0u8; 1];
        if r.read(&mut b)? == 0 {
            if shift == 0 {
                return Ok(None);
            }
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        v |= u64::from(b[0] & 0x7f) << shift;
        if b[0] & 0x80 == 0 {
            return Ok(Some(v));
        }
        shift += 7;
        if shift > 63 {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "varint too long"));
        }
    }
}

/// Writes a run: per pair, the length of the prefix shared with the previous key, the rest of
/// the key, and the size.
struct RunWriter {
    out: BufWriter<File>,
    prev: Vec<u8>,
    /// One encoded pair, so each pair costs a single buffered write.
    scratch: Vec<u8>,
    bytes: u64,
}

/// The length of the common prefix of `a` and `b`, compared eight bytes at a time because
/// sorted neighbours share most of their bytes.
fn common_prefix(a: &[u8], b: &[u8]) -> usize {
    let n = a.len().min(b.len());
    let mut i = 0;
    while i + 8 <= n {
        let x = u64::from_le_bytes(a[i..i + 8].try_into().unwrap_or_default());
        let y = u64::from_le_bytes(b[i..i + 8].try_into().unwrap_or_default());
        if x != y {
            return i + ((x ^ y).trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    while i < n && a[i] == b[i] {
        i += 1;
    }
    i
}

impl RunWriter {
    fn create(path: &Path) -> Result<Self> {
        let f = File::create(path).map_err(|e| spill_error("create run", e))?;
        Ok(RunWriter { out: BufWriter::with_capacity(RUN_BUF, f), prev: Vec::new(), scratch: Vec::with_capacity(256), bytes: 0 })
    }

    fn write(&mut self, key: &[u8], size: u64) -> Result<()> {
        let shared = common_prefix(&self.prev, key);
        let rest = &key[shared..];
        self.scratch.clear();
        // Writing to a Vec cannot fail.
        let _ = write_varint(&mut self.scratch, shared as u64);
        let _ = write_varint(&mut self.scratch, rest.len() as u64);
        self.scratch.extend_from_slice(rest);
        let _ = write_varint(&mut self.scratch, size);
        self.out.write_all(&self.scratch).map_err(|e| spill_error("write run", e))?;
        self.bytes += self.scratch.len() as u64;
        self.prev.truncate(shared);
        self.prev.extend_from_slice(rest);
        Ok(())
    }

    fn finish(mut self) -> Result<u64> {
        self.out.flush().map_err(|e| spill_error("write run", e))?;
        Ok(self.bytes)
    }
}

/// Reads a run back, one pair at a time.
struct RunReader {
    input: BufReader<File>,
    key: Vec<u8>,
    size: u64,
}

impl RunReader {
    fn open(path: &Path) -> Result<Self> {
        let f = File::open(path).map_err(|e| spill_error("open run", e))?;
        Ok(RunReader { input: BufReader::with_capacity(RUN_BUF, f), key: Vec::new(), size: 0 })
    }

    /// Advances to the next pair; false at the end of the run.
    fn advance(&mut self) -> Result<bool> {
        (|| -> io::Result<bool> {
            let Some(shared) = read_varint(&mut self.input)? else {
                return Ok(false);
            };
            let len = read_varint(&mut self.input)?.ok_or(io::ErrorKind::UnexpectedEof)?;
            self.key.truncate(shared as usize);
            let start = self.key.len();
            self.key.resize(start + len as usize, 0);
            self.input.read_exact(&mut self.key[start..])?;
            self.size = read_varint(&mut self.input)?.ok_or(io::ErrorKind::UnexpectedEof)?;
            Ok(true)
        })()
        .map_err(|e| spill_error("read run", e))
    }
}

/// A run's current pair in the merge heap, ordered by (key, size, run).
struct Head {
    run: usize,
    key: Vec<u8>,
    size: u64,
}

impl PartialEq for Head {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Head {}
impl PartialOrd for Head {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Head {
    fn cmp(&self, other: &Self) -> Ordering {
        self.key.cmp(&other.key).then(self.size.cmp(&other.size)).then(self.run.cmp(&other.run))
    }
}

/// Merges sorted runs into `f`, in ascending order.
fn merge(paths: &[PathBuf], mut f: impl FnMut(&[u8], u64) -> Result<()>) -> Result<()> {
    let mut readers = Vec::with_capacity(paths.len());
    let mut heap = BinaryHeap::with_capacity(paths.len());
    for (i, p) in paths.iter().enumerate() {
        let mut r = RunReader::open(p)?;
        if r.advance()? {
            heap.push(Reverse(Head { run: i, key: r.key.clone(), size: r.size }));
        }
        readers.push(r);
    }
    while let Some(Reverse(mut head)) = heap.pop() {
        f(&head.key, head.size)?;
        let r = &mut readers[head.run];
        if r.advance()? {
            head.key.clear();
            head.key.extend_from_slice(&r.key);
            head.size = r.size;
            heap.push(Reverse(head));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sorted_by(budget: usize, pairs: &[(String, u64)]) -> (Vec<(String, u64)>, SortStats) {
        let mut s = ExternalSorter::new(budget, None);
        for (k, v) in pairs {
            s.push(k.as_bytes(), *v).unwrap();
        }
        let mut out = Vec::new();
        let stats = s
            .finish(|k, v| {
                out.push((String::from_utf8(k.to_vec()).unwrap(), v));
                Ok(())
            })
            .unwrap();
        (out, stats)
    }

    #[test]
    fn spilled_and_in_memory_sorts_agree() {
        // A scrambled sequence with duplicates and shared prefixes.
        let pairs: Vec<(String, u64)> = (0..80_000u64)
            .map(|i| {
                let j = (i * 7919) % 80_000;
                (format!("dir{}/sub/{:05}", j % 13, j / 3), j % 5)
            })
            .collect();
        let mut expected = pairs.clone();
        expected.sort();
        let (mem, mem_stats) = sorted_by(64 << 20, &pairs);
        assert_eq!(mem_stats.runs, 0);
        assert_eq!(mem, expected);
        // The smallest budget forces many runs, and more than FAN_IN of them.
        let (disk, disk_stats) = sorted_by(0, &pairs);
        assert!(disk_stats.runs > FAN_IN, "{disk_stats:?}");
        assert_eq!(disk, expected);
    }

    #[test]
    fn common_prefixes() {
        assert_eq!(common_prefix(b"", b"abc"), 0);
        assert_eq!(common_prefix(b"abcdefghijk", b"abcdefghijx"), 10);
        assert_eq!(common_prefix(b"abcdefgh", b"abcdefgh"), 8);
        assert_eq!(common_prefix(b"abcxefghij", b"abcdefghij"), 3);
        assert_eq!(common_prefix(b"abcdefghijklmnopq", b"abcdefghijklmnop"), 16);
    }

    #[test]
    fn varints_round_trip() {
        let mut buf = Vec::new();
        for v in [0, 1, 127, 128, 300, u64::MAX] {
            write_varint(&mut buf, v).unwrap();
        }
        let mut r = &buf[..];
        for v in [0, 1, 127, 128, 300, u64::MAX] {
            assert_eq!(read_varint(&mut r).unwrap(), Some(v));
        }
        assert_eq!(read_varint(&mut r).unwrap(), None);
    }
}
