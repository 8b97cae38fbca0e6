//! The state of a key range at a time T, streamed: a k-way merge of a recovery point's sorted
//! index segments, resolved key by key, in memory that grows with the number of segments open
//! at once, not with the number of records.
//!
//! Segments are opened lazily, when the merge reaches their smallest key, and each is read one
//! chunk at a time ([`SegmentStream`]); the records of one key from every open segment are
//! resolved with the rule of [`crate::restore::resolve`] (the greatest order key whose event
//! time is at most T wins; a delete means the key does not exist at T).

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, VecDeque};

use chrono::{DateTime, Utc};

use crate::domain::CaptureRecord;
use crate::ports::ObjectStore;
use crate::vault::segment::{SegmentMeta, SegmentStream};
use crate::Result;

/// Bytes a segment stream fetches per ranged GET.
pub const CHUNK_BYTES: u64 = 256 * 1024;

/// The key range a state stream covers: keys under `prefix`, from `start` (inclusive) to `end`
/// (exclusive, `None` for the end of the bucket).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyRange {
    pub prefix: String,
    pub start: String,
    pub end: Option<String>,
}

impl KeyRange {
    /// Everything under `prefix`.
    pub fn prefix(prefix: &str) -> Self {
        KeyRange { prefix: prefix.into(), start: prefix.into(), end: None }
    }

    /// The first key the range can hold.
    fn lower(&self) -> &str {
        if self.start.as_str() > self.prefix.as_str() {
            &self.start
        } else {
            &self.prefix
        }
    }

    /// True when `key` lies at or past the range's end (no later key can be in it).
    fn past_end(&self, key: &str) -> bool {
        self.end.as_deref().is_some_and(|e| key >= e) || (key > self.prefix.as_str() && !key.starts_with(&self.prefix))
    }

    /// True when a segment with these key bounds may hold keys of the range.
    pub fn overlaps(&self, seg: &SegmentMeta) -> bool {
        seg.may_contain_prefix(&self.prefix)
            && seg.max_key.as_str() >= self.lower()
            && self.end.as_deref().is_none_or(|e| seg.min_key.as_str() < e)
    }
}

/// One open segment: its stream and the record it stands at (read, not yet merged).
struct Open<'a> {
    stream: SegmentStream<'a>,
    head: CaptureRecord,
    /// The offset of `head` in the segment, which a later stream can resume from.
    head_offset: u64,
}

/// A streaming merge of segments resolved at a time (see the module documentation).
pub struct StateStream<'a> {
    vault: &'a dyn ObjectStore,
    vault_bucket: &'a str,
    range: KeyRange,
    as_of: DateTime<Utc>,
    chunk: u64,
    /// Segments not opened yet, by smallest key.
    pending: VecDeque<SegmentMeta>,
    /// Where to open a pending segment instead of at its start (a task's recorded offsets).
    offsets: BTreeMap<String, u64>,
    open: Vec<Option<Open<'a>>>,
    /// (key of the head, index into `open`), smallest first.
    heap: BinaryHeap<Reverse<(String, usize)>>,
    /// Segments read to their end (and so verified, when read from their start).
    finished: usize,
}

impl<'a> StateStream<'a> {
    /// A stream over the segments of a recovery point that may hold keys of `range`, resolved at
    /// `as_of`. `offsets` names segments to open at a recorded offset instead of their start.
    pub fn new(
        vault: &'a dyn ObjectStore,
        vault_bucket: &'a str,
        segments: &[SegmentMeta],
        range: KeyRange,
        as_of: DateTime<Utc>,
        offsets: BTreeMap<String, u64>,
    ) -> Self {
        let mut pending: Vec<SegmentMeta> = segments.iter().filter(|s| range.overlaps(s)).cloned().collect();
        pending.sort_by(|a, b| a.min_key.cmp(&b.min_key).then_with(|| a.key.cmp(&b.key)));
        StateStream {
            vault,
            vault_bucket,
            range,
            as_of,
            chunk: CHUNK_BYTES,
            pending: pending.into(),
            offsets,
            open: Vec::new(),
            heap: BinaryHeap::new(),
            finished: 0,
        }
    }

    /// How many segments the stream will read at most.
    pub fn segments(&self) -> usize {
        self.pending.len() + self.open.len()
    }

    /// Opens `meta` and positions it at its first record in the range; pushes its head.
    async fn open_segment(&mut self, meta: SegmentMeta) -> Result<()> {
        let offset = self.offsets.get(&meta.key).copied();
        let mut stream = SegmentStream::open_at(self.vault, self.vault_bucket, &meta.key, offset, self.chunk).await?;
        let lower = self.range.lower().to_string();
        loop {
            let at = stream.offset();
            match stream.next().await? {
                None => {
                    self.finished += 1;
                    return Ok(());
                }
                Some(rec) if rec.key < lower => continue,
                Some(rec) => {
                    let idx = self.open.len();
                    self.heap.push(Reverse((rec.key.clone(), idx)));
                    self.open.push(Some(Open { stream, head: rec, head_offset: at }));
                    return Ok(());
                }
            }
        }
    }

    /// Opens every pending segment whose smallest key is not after the smallest open head, so
    /// that the heap's top is the smallest key of all segments.
    async fn prime(&mut self) -> Result<()> {
        loop {
            let due = match (self.pending.front(), self.heap.peek()) {
                (Some(p), Some(Reverse((t, _)))) => p.min_key <= *t,
                (Some(_), None) => true,
                (None, _) => false,
            };
            if !due {
                return Ok(());
            }
            let meta = self.pending.pop_front().expect("checked");
            self.open_segment(meta).await?;
        }
    }

    /// The smallest key not yet merged (live at T or not), if any key of the range is left.
    pub async fn peek_key(&mut self) -> Result<Option<String>> {
        self.prime().await?;
        Ok(self.heap.peek().map(|Reverse((k, _))| k.clone()).filter(|k| !self.range.past_end(k)))
    }

    /// The offsets of the open segments' heads: where a stream that starts at the next key can
    /// open them instead of reading them from their start. Only offsets of at least `min` bytes
    /// are returned (reading a small segment from its start costs little).
    pub fn offsets(&self, min: u64) -> BTreeMap<String, u64> {
        self.open.iter().flatten().filter(|o| o.head_offset >= min).map(|o| (o.stream.key().to_string(), o.head_offset)).collect()
    }

    /// The next key of the range with every record of it, in order, whether or not it exists at T.
    pub async fn next_key(&mut self) -> Result<Option<(String, Vec<CaptureRecord>)>> {
        self.prime().await?;
        let Some(Reverse((key, _))) = self.heap.peek().cloned() else { return Ok(None) };
        if self.range.past_end(&key) {
            return Ok(None);
        }
        let mut records = Vec::new();
        while self.heap.peek().is_some_and(|Reverse((k, _))| *k == key) {
            let Some(Reverse((_, idx))) = self.heap.pop() else { break };
            let mut open = self.open[idx].take().expect("a heap entry names an open segment");
            // Take this segment's further records of the same key, then push its next head.
            loop {
                let at = open.stream.offset();
                match open.stream.next().await? {
                    None => {
                        records.push(open.head);
                        self.finished += 1;
                        break;
                    }
                    Some(rec) if rec.key == key => records.push(std::mem::replace(&mut open.head, rec)),
                    Some(rec) => {
                        self.heap.push(Reverse((rec.key.clone(), idx)));
                        records.push(std::mem::replace(&mut open.head, rec));
                        open.head_offset = at;
                        self.open[idx] = Some(open);
                        break;
                    }
                }
            }
            // A segment's next key may be due to open pending segments before it.
            self.prime().await?;
        }
        Ok(Some((key, records)))
    }

    /// The next key that exists at T, with the record that wins.
    pub async fn next(&mut self) -> Result<Option<(String, CaptureRecord)>> {
        while let Some((key, records)) = self.next_key().await? {
            if let Some(winner) = resolve_at(records, self.as_of) {
                return Ok(Some((key, winner)));
            }
        }
        Ok(None)
    }

    /// Reads every open and pending segment to its end, so that each one read from its start
    /// has its hash and count checked; returns how many segments were read to the end in all.
    pub async fn drain(&mut self) -> Result<usize> {
        for open in self.open.iter_mut() {
            if let Some(mut o) = open.take() {
                while o.stream.next().await?.is_some() {}
                self.finished += 1;
            }
        }
        self.heap.clear();
        Ok(self.finished)
    }
}

/// The current version of one key at `as_of`, by the resolution rule of
/// [`crate::restore::resolve::resolve_key`] over the records whose event time is at most `as_of`.
pub fn resolve_at(records: Vec<CaptureRecord>, as_of: DateTime<Utc>) -> Option<CaptureRecord> {
    let cutoff = as_of.timestamp();
    let at: Vec<&CaptureRecord> = records.iter().filter(|r| r.event_time.timestamp() <= cutoff).collect();
    crate::restore::resolve::resolve_key(&at).current
}
