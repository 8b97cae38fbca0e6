//! Verification of a vault from the vault alone: every index segment's header hash, every packed
//! blob's SHA-256 (of all packs, or of a deterministic sample), and every large copy's existence,
//! size and ETag; each damaged or missing object is reported with the source keys and recovery
//! points it affects.
//!
//! Packs are read in ranged GETs of at most [`RANGE_BYTES`] (adjacent blobs together, as a
//! restore reads them) plus their trailer and footer, so memory stays at `concurrency` ranges.
//!
//! Work is cut into time-budgeted steps so that a Lambda function can scrub a vault a piece at a
//! time: a step returns a [`VerifyCursor`] (the source bucket and the last vault object checked)
//! from which the next step continues. Objects are checked in key order, so a cursor means the
//! same thing whatever happened in between. A step rebuilds the catalog of its bucket from the
//! segments (a bucket's catalog is small beside its packs), but reports the segments' own
//! problems only in the step that starts the bucket, so no problem is reported twice.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Instant;

use chrono::{DateTime, Utc};
use futures::stream::{self, StreamExt};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::domain::{CaptureRecord, Location};
use crate::ports::{list_all, KeyService, ObjectStore};
use crate::vault::{pack, point, segment};
use crate::{Error, Result};

/// The most source keys one problem names (the total is always given).
pub const MAX_KEYS_PER_PROBLEM: usize = 1000;

/// What to verify.
#[derive(Debug, Clone)]
pub struct VerifyOptions {
    /// Only this source bucket; every bucket the vault holds when `None`.
    pub source: Option<String>,
    /// The share of packs and large copies read, in (0, 1]: an object is in the sample when the
    /// SHA-256 of its key, read as a fraction, is below it, so the same vault gives the same sample.
    pub sample: f64,
    /// Objects read at once.
    pub concurrency: usize,
}

impl VerifyOptions {
    /// Refuses a sample outside (0, 1], naming it.
    pub fn validate(&self) -> Result<()> {
        if !(self.sample > 0.0 && self.sample <= 1.0) {
            return Err(Error::Invalid(format!(
                "sample {} is not a fraction in (0, 1] (for example 0.1 reads a tenth of the packs)",
                self.sample
            )));
        }
        Ok(())
    }
}

/// Where the next step continues: the source bucket, and the last vault object (pack or large
/// copy) of it that was checked, `None` before the first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifyCursor {
    pub bucket: String,
    pub after: Option<String>,
}

/// Whether an object is gone or its bytes are wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProblemKind {
    Missing,
    Damaged,
}

/// One damaged or missing vault object, with what it affects.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Problem {
    /// The source bucket whose captures it holds.
    pub bucket: String,
    /// The vault object's key.
    pub object: String,
    pub kind: ProblemKind,
    pub detail: String,
    /// The source keys whose captured bytes or records it holds (the first
    /// [`MAX_KEYS_PER_PROBLEM`], in order), and how many there are.
    pub source_keys: Vec<String>,
    pub source_keys_total: u64,
    /// The recovery points that name a segment holding an affected record (or the affected segment).
    pub recovery_points: Vec<DateTime<Utc>>,
}

/// What verification read and found.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct VerifyReport {
    /// Source buckets looked at.
    pub buckets: Vec<String>,
    pub points: u64,
    pub segments: u64,
    pub records: u64,
    /// Packs read (of `packs_total` referenced), blobs checked.
    pub packs: u64,
    pub packs_total: u64,
    pub blobs: u64,
    /// Large copies checked (of `large_objects_total` referenced).
    pub large_objects: u64,
    pub large_objects_total: u64,
    /// Bytes read from the vault.
    pub bytes_read: u64,
    pub problems: Vec<Problem>,
}

impl VerifyReport {
    /// True when nothing is damaged or missing.
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }

    /// Adds a later step's report to this one.
    pub fn absorb(&mut self, o: VerifyReport) {
        for b in o.buckets {
            if !self.buckets.contains(&b) {
                self.buckets.push(b);
            }
        }
        self.points += o.points;
        self.segments += o.segments;
        self.records += o.records;
        self.packs += o.packs;
        self.packs_total += o.packs_total;
        self.blobs += o.blobs;
        self.large_objects += o.large_objects;
        self.large_objects_total += o.large_objects_total;
        self.bytes_read += o.bytes_read;
        self.problems.extend(o.problems);
    }
}

/// True if `key` is in the deterministic sample of share `fraction`.
pub fn sampled(key: &str, fraction: f64) -> bool {
    if fraction >= 1.0 {
        return true;
    }
    let d = Sha256::digest(key.as_bytes());
    let x = u64::from_be_bytes(d[..8].try_into().expect("8 bytes"));
    (x as f64 / u64::MAX as f64) < fraction
}

/// The source buckets a vault holds captures of (`v1/<bucket>/`), in order.
pub async fn buckets(vault: &dyn ObjectStore, vault_bucket: &str) -> Result<Vec<String>> {
    let page = list_all(vault, vault_bucket, "v1/", Some("/")).await?;
    let mut out: Vec<String> =
        page.common_prefixes.iter().filter_map(|p| p.strip_prefix("v1/")?.strip_suffix('/').map(String::from)).collect();
    out.sort();
    Ok(out)
}

/// A record that points into a vault object, and the segment it came from.
struct Reference {
    record: CaptureRecord,
    segment: String,
}

/// A bucket's catalog: which segments each point names, and which records point into each
/// vault object, in key order.
struct Catalog {
    /// Segment key to the times of the points that name it.
    named_by: HashMap<String, Vec<DateTime<Utc>>>,
    objects: BTreeMap<String, Vec<Reference>>,
}

impl Catalog {
    fn points_of<'a>(&self, segments: impl Iterator<Item = &'a str>) -> Vec<DateTime<Utc>> {
        let set: BTreeSet<DateTime<Utc>> = segments.flat_map(|s| self.named_by.get(s).into_iter().flatten().copied()).collect();
        set.into_iter().collect()
    }
}

fn problem(catalog: &Catalog, bucket: &str, object: &str, kind: ProblemKind, detail: String, refs: &[&Reference]) -> Problem {
    let keys: BTreeSet<&str> = refs.iter().map(|r| r.record.key.as_str()).collect();
    Problem {
        bucket: bucket.into(),
        object: object.into(),
        kind,
        detail,
        source_keys_total: keys.len() as u64,
        source_keys: keys.into_iter().take(MAX_KEYS_PER_PROBLEM).map(String::from).collect(),
        recovery_points: catalog.points_of(refs.iter().map(|r| r.segment.as_str())),
    }
}

/// Reads a bucket's points and segments. Segment problems go into `report` when `report_segments`
/// (the step that starts the bucket); the counts of points, segments and records likewise.
async fn catalog(
    vault: &dyn ObjectStore,
    vault_bucket: &str,
    bucket: &str,
    concurrency: usize,
    report: &mut VerifyReport,
    report_segments: bool,
) -> Result<Catalog> {
    let mut named_by: HashMap<String, Vec<DateTime<Utc>>> = HashMap::new();
    let mut metas: BTreeMap<String, segment::SegmentMeta> = BTreeMap::new();
    let point_keys = point::list_points(vault, vault_bucket, bucket).await?;
    let mut points = 0;
    for key in &point_keys {
        match point::read_point(vault, vault_bucket, key).await {
            Ok(p) => {
                points += 1;
                for s in p.segments {
                    named_by.entry(s.key.clone()).or_default().push(p.time);
                    metas.entry(s.key.clone()).or_insert(s);
                }
            }
            Err(e) if report_segments => report.problems.push(Problem {
                bucket: bucket.into(),
                object: key.clone(),
                kind: ProblemKind::Damaged,
                detail: format!("recovery point unreadable: {e}"),
                source_keys: Vec::new(),
                source_keys_total: 0,
                recovery_points: Vec::new(),
            }),
            Err(_) => {}
        }
    }
    // Segments not named by any point yet (registered since the latest seal) are checked too.
    let listed = list_all(vault, vault_bucket, &format!("{}index/", crate::vault::root(bucket)), None).await?;
    let mut keys: BTreeSet<String> = listed.objects.into_iter().map(|o| o.key).filter(|k| k.ends_with(".idx")).collect();
    keys.extend(named_by.keys().cloned());
    let read: Vec<(String, Result<Vec<CaptureRecord>>)> = stream::iter(keys)
        .map(|k| async move {
            let r = segment::read(vault, vault_bucket, &k).await;
            (k, r)
        })
        .buffered(concurrency.max(1))
        .collect()
        .await;
    let mut cat = Catalog { named_by, objects: BTreeMap::new() };
    let (mut segments, mut records) = (0, 0);
    for (key, r) in read {
        segments += 1;
        match r {
            Ok(recs) => {
                records += recs.len() as u64;
                for record in recs {
                    let object = match &record.location {
                        Some(Location::Pack { pack, .. }) => pack.clone(),
                        Some(Location::Object { key, .. }) => key.clone(),
                        None => continue,
                    };
                    cat.objects.entry(object).or_default().push(Reference { record, segment: key.clone() });
                }
            }
            Err(e) if report_segments => {
                let missing = matches!(vault.head(vault_bucket, &key, None).await, Ok(None));
                let range =
                    metas.get(&key).map(|m| format!(" (keys {:?} to {:?}, {} records)", m.min_key, m.max_key, m.count)).unwrap_or_default();
                let (kind, detail) = if missing {
                    (ProblemKind::Missing, format!("index segment is named by a recovery point but missing{range}"))
                } else {
                    (ProblemKind::Damaged, format!("index segment: {e}{range}"))
                };
                let mut p = problem(&cat, bucket, &key, kind, detail, &[]);
                p.recovery_points = cat.points_of(std::iter::once(key.as_str()));
                if let Some(m) = metas.get(&key) {
                    p.source_keys = vec![m.min_key.clone(), m.max_key.clone()];
                    p.source_keys.dedup();
                    p.source_keys_total = m.count;
                }
                report.problems.push(p);
            }
            Err(_) => {}
        }
    }
    if report_segments {
        report.points += points;
        report.segments += segments;
        report.records += records;
    }
    Ok(cat)
}

/// What checking one vault object found.
struct Checked {
    problems: Vec<Problem>,
    bytes: u64,
    blobs: u64,
    pack: bool,
}

/// Keeps the first failure's detail and every record a failed blob affects.
fn note<'a>(first: &mut Option<String>, bad: &mut Vec<&'a Reference>, detail: String, rs: &[&'a Reference]) {
    first.get_or_insert(detail);
    bad.extend_from_slice(rs);
}

/// The most bytes one ranged GET of a pack reads: adjacent blobs are read together up to this,
/// so memory stays at one range per object in flight whatever the pack size.
pub const RANGE_BYTES: u64 = 8 * 1024 * 1024;

#[allow(clippy::too_many_arguments)]
async fn check_pack(
    vault: &dyn ObjectStore,
    keys: &dyn KeyService,
    vault_bucket: &str,
    bucket: &str,
    cat: &Catalog,
    key: &str,
    refs: &[Reference],
) -> Result<Checked> {
    let mut out = Checked { problems: Vec::new(), bytes: 0, blobs: 0, pack: true };
    let all: Vec<&Reference> = refs.iter().collect();
    let Some(info) = vault.head(vault_bucket, key, None).await? else {
        out.problems.push(problem(cat, bucket, key, ProblemKind::Missing, "pack is missing from the vault".into(), &all));
        return Ok(out);
    };
    let size = info.size;
    // A footer that does not parse does not stop restores (they read blobs by their recorded
    // ranges) but stops a rebuild of the index from this pack, so it is a problem of its own.
    match pack::read_footer(vault, vault_bucket, key, size).await {
        Ok(_) => {}
        Err(e) if e.is_transient() => return Err(e),
        Err(e) => out.problems.push(problem(cat, bucket, key, ProblemKind::Damaged, format!("pack footer or trailer: {e}"), &[])),
    }
    // The distinct blobs in offset order (one blob may be named by several records, a seed and an
    // event record of one version), each with the records that name it.
    let mut blobs: BTreeMap<(u64, u64), Vec<&Reference>> = BTreeMap::new();
    for r in refs {
        if let Some(Location::Pack { offset, length, .. }) = &r.record.location {
            blobs.entry((*offset, *length)).or_default().push(r);
        }
    }
    let mut bad: Vec<&Reference> = Vec::new();
    let mut first: Option<String> = None;
    let entries: Vec<((u64, u64), Vec<&Reference>)> = blobs.into_iter().collect();
    let mut i = 0;
    while i < entries.len() {
        // One ranged GET for a run of blobs that fits in RANGE_BYTES (a larger blob alone).
        let start = entries[i].0 .0;
        let mut j = i;
        let mut end = start;
        while j < entries.len() {
            let ((o, l), _) = &entries[j];
            let e = o.saturating_add(*l);
            if j > i && (e.saturating_sub(start) > RANGE_BYTES || *o < end) {
                break;
            }
            end = end.max(e);
            j += 1;
        }
        out.blobs += (j - i) as u64;
        if end > size {
            for ((o, l), rs) in &entries[i..j] {
                let e = o.saturating_add(*l);
                if e > size {
                    note(
                        &mut first,
                        &mut bad,
                        format!("blob of {} at bytes {o}..{e} lies past the pack's end ({size} bytes)", rs[0].record.key),
                        rs,
                    );
                }
            }
            end = size.max(start);
        }
        let range = if end > start { vault.get_range(vault_bucket, key, None, start, end - start).await? } else { bytes::Bytes::new() };
        out.bytes += range.len() as u64;
        for ((o, l), rs) in &entries[i..j] {
            let e = o.saturating_add(*l);
            if e > size {
                continue;
            }
            let (from, to) = ((o - start) as usize, (e - start) as usize);
            let verdict = match range.get(from..to) {
                None => Some(format!("blob of {} at bytes {o}..{e} could not be read ({} bytes came back)", rs[0].record.key, range.len())),
                Some(stored) => match pack::open_blob(keys, &rs[0].record, stored).await {
                    Ok(_) => None,
                    // A key service that cannot answer now says nothing about the pack's bytes.
                    Err(err) if err.is_transient() => return Err(err),
                    Err(err) => Some(format!("blob at bytes {o}..{e}: {err}")),
                },
            };
            if let Some(v) = verdict {
                note(&mut first, &mut bad, v, rs);
            }
        }
        i = j;
    }
    if let Some(detail) = first {
        let n = bad.iter().map(|r| r.record.key.as_str()).collect::<BTreeSet<_>>().len();
        out.problems.push(problem(
            cat,
            bucket,
            key,
            ProblemKind::Damaged,
            format!("{n} blobs do not match their records, first: {detail}"),
            &bad,
        ));
    }
    Ok(out)
}

async fn check_copy(
    vault: &dyn ObjectStore,
    vault_bucket: &str,
    bucket: &str,
    cat: &Catalog,
    key: &str,
    refs: &[Reference],
) -> Result<Checked> {
    let mut out = Checked { problems: Vec::new(), bytes: 0, blobs: 0, pack: false };
    // Records of one copy name one version; each distinct version is checked once.
    let mut versions: BTreeMap<Option<String>, Vec<&Reference>> = BTreeMap::new();
    for r in refs {
        if let Some(Location::Object { version_id, .. }) = &r.record.location {
            versions.entry(version_id.clone()).or_default().push(r);
        }
    }
    for (version, rs) in versions {
        let Some(Location::Object { etag, .. }) = &rs[0].record.location else { continue };
        let expected_size = rs[0].record.size;
        let what = format!("large copy{}", version.as_deref().map(|v| format!(" version {v}")).unwrap_or_default());
        match vault.head(vault_bucket, key, version.as_deref()).await? {
            None => out.problems.push(problem(cat, bucket, key, ProblemKind::Missing, format!("{what} is missing from the vault"), &rs)),
            Some(info) => {
                let got = info.etag.trim_matches('"');
                if info.size != expected_size {
                    out.problems.push(problem(
                        cat,
                        bucket,
                        key,
                        ProblemKind::Damaged,
                        format!("{what} holds {} bytes, its record says {expected_size}", info.size),
                        &rs,
                    ));
                } else if got != etag.trim_matches('"') {
                    out.problems.push(problem(
                        cat,
                        bucket,
                        key,
                        ProblemKind::Damaged,
                        format!("{what} has ETag {got}, its record says {etag}"),
                        &rs,
                    ));
                }
            }
        }
    }
    Ok(out)
}

/// Verifies from `cursor` (the start when `None`) until everything is checked or `deadline`
/// passes (at least one round of objects is checked per step, so every step makes progress).
/// Returns what this step found and where the next one continues, `None` when done.
pub async fn verify_step(
    vault: &dyn ObjectStore,
    keys: &dyn KeyService,
    vault_bucket: &str,
    opts: &VerifyOptions,
    cursor: Option<VerifyCursor>,
    deadline: Option<Instant>,
) -> Result<(VerifyReport, Option<VerifyCursor>)> {
    opts.validate()?;
    if !vault.bucket_exists(vault_bucket).await? {
        return Err(Error::NoSuchBucket { bucket: vault_bucket.into() });
    }
    let all = buckets(vault, vault_bucket).await?;
    let todo: Vec<String> = match &opts.source {
        Some(b) if !all.contains(b) => return Err(Error::Invalid(format!("vault {vault_bucket} holds nothing of s3://{b}"))),
        Some(b) => vec![b.clone()],
        None => all,
    };
    let mut report = VerifyReport::default();
    let start = cursor.clone();
    for bucket in todo.iter().filter(|b| start.as_ref().is_none_or(|c| b.as_str() >= c.bucket.as_str())) {
        let after = start.as_ref().filter(|c| &c.bucket == bucket).and_then(|c| c.after.clone());
        let fresh = after.is_none();
        if !report.buckets.contains(bucket) {
            report.buckets.push(bucket.clone());
        }
        let cat = catalog(vault, vault_bucket, bucket, opts.concurrency, &mut report, fresh).await?;
        let work: Vec<(&String, &Vec<Reference>)> =
            cat.objects.iter().filter(|(k, _)| after.as_ref().is_none_or(|a| k.as_str() > a.as_str())).collect();
        if fresh {
            for k in cat.objects.keys() {
                if crate::vault::object_key_bucket(k).is_some() {
                    report.large_objects_total += 1;
                } else {
                    report.packs_total += 1;
                }
            }
        }
        let chosen: Vec<(&String, &Vec<Reference>)> = work.into_iter().filter(|(k, _)| sampled(k, opts.sample)).collect();
        let round = opts.concurrency.max(1);
        for chunk in chosen.chunks(round) {
            let results: Vec<Result<Checked>> = stream::iter(chunk)
                .map(|(k, refs)| {
                    let cat = &cat;
                    async move {
                        if crate::vault::object_key_bucket(k).is_some() {
                            check_copy(vault, vault_bucket, bucket, cat, k, refs).await
                        } else {
                            check_pack(vault, keys, vault_bucket, bucket, cat, k, refs).await
                        }
                    }
                })
                .buffered(round)
                .collect()
                .await;
            for r in results {
                let c = r?;
                report.bytes_read += c.bytes;
                report.blobs += c.blobs;
                if c.pack {
                    report.packs += 1;
                } else {
                    report.large_objects += 1;
                }
                report.problems.extend(c.problems);
            }
            let last = chunk.last().map(|(k, _)| (*k).clone());
            if deadline.is_some_and(|d| Instant::now() >= d) && last.as_ref() != chosen.last().map(|(k, _)| *k) {
                return Ok((report, Some(VerifyCursor { bucket: bucket.clone(), after: last })));
            }
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            // The bucket is done; the next step starts the next one, if any.
            return Ok((
                report,
                todo.iter().find(|b| b.as_str() > bucket.as_str()).map(|b| VerifyCursor { bucket: b.clone(), after: None }),
            ));
        }
    }
    Ok((report, None))
}

/// Verifies everything `opts` names in one go (steps without a deadline).
pub async fn verify(vault: &dyn ObjectStore, keys: &dyn KeyService, vault_bucket: &str, opts: &VerifyOptions) -> Result<VerifyReport> {
    let (report, _) = verify_step(vault, keys, vault_bucket, opts, None, None).await?;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sample_is_deterministic_and_about_its_share() {
        let keys: Vec<String> = (0..10_000).map(|i| format!("v1/b/packs/2026-01-01/{i}.pack")).collect();
        let n = keys.iter().filter(|k| sampled(k, 0.1)).count();
        assert!((800..1200).contains(&n), "{n} of 10,000 keys in a 10% sample");
        assert_eq!(n, keys.iter().filter(|k| sampled(k, 0.1)).count());
        assert!(keys.iter().all(|k| sampled(k, 1.0)));
        for bad in [0.0, -1.0, 1.5, f64::NAN] {
            let e = VerifyOptions { source: None, sample: bad, concurrency: 1 }.validate().unwrap_err();
            assert!(e.to_string().contains("is not a fraction"), "{e}");
        }
    }
}
