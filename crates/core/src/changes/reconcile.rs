//! Reconciliation: compares the source (a listing, or an S3 Inventory report) with the catalog and captures what the events missed.
//!
//! EventBridge drops an event after 24 hours of failed delivery, and the local stack sends no
//! event at all for a delete marker, so the catalog can drift from the source. Reconciliation
//! finds the drift and writes it down as ordinary capture records in a delta segment:
//!
//! - a key in the source that the catalog lacks, or holds with another ETag, is captured from
//!   the source (only if it still has the ETag the listing saw; otherwise a newer write happened,
//!   and its own event covers it);
//! - a key in the catalog that the source lacks becomes a delete record, once a look confirms it
//!   is still gone. In a versioned bucket that look lists the key's versions: a delete marker is
//!   recorded at its own Last-Modified time, and versions the catalog holds but the bucket no
//!   longer does are recorded as permanently deleted. Where S3 keeps no time (an unversioned
//!   delete, a permanent delete), the record's time is the time of the look, an upper bound of
//!   the real time, so no restore ever loses an object earlier than it really disappeared;
//! - a key whose current version in the bucket is another than the catalog's is captured, and in
//!   a versioned bucket the catalog's versions the bucket no longer holds are recorded as
//!   permanently deleted (at the time of the look), so an older version that became current
//!   again shows from then on;
//! - a key the catalog holds as archived (no bytes) is captured once the bucket can serve it
//!   (restored, or moved out of the archive tier).
//!
//! The catalog is the state resolved over every live registered segment (the latest recovery
//! point's segments plus whatever was captured since), so changes that were captured but not yet
//! sealed are not captured twice. Keys whose catalog record is newer than the start of the
//! source view are left alone: they changed while the view was being taken, and their events
//! describe them better than a listing can.

use std::collections::BTreeMap;

use chrono::{DateTime, SubsecRound, Utc};
use serde::Serialize;

use crate::capture::{capture_batch, CaptureItem};
use crate::changes::delta::write_registered_segment;
use crate::control::{Counters, FailureRecord, RunState};
use crate::domain::{archive_tier, normalize_etag, CaptureRecord};
use crate::engine::Engine;
use crate::ports::{key_versions, ObjectStore};
use crate::protect::lifecycle;
use crate::restore::resolve::{resolve_keys, KeyState};
use crate::scheduler::source::PacedStore;
use crate::vault::segment::{self, SegmentMeta};
use crate::{Error, Result};

/// What to compare the catalog with.
#[derive(Debug, Clone, Default)]
pub struct ReconcileOptions {
    /// Only keys under this prefix.
    pub prefix: String,
    /// Compare with this S3 Inventory report (a `file://` or `s3://` manifest URL) instead of a listing.
    pub inventory_manifest: Option<String>,
}

/// What a reconciliation found and did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ReconcileReport {
    /// Objects the source view holds under the prefix.
    pub source_objects: u64,
    /// Objects the catalog holds under the prefix.
    pub catalog_objects: u64,
    /// Keys in the source that the catalog lacked.
    pub missing: u64,
    /// Keys the catalog held with another ETag than the source.
    pub changed: u64,
    /// Puts captured (missing and changed keys that could still be read as seen).
    pub puts: u64,
    /// Delete records written for keys gone from the source.
    pub deletes: u64,
    /// Keys left alone because they changed while the source view was taken.
    pub recent: u64,
    /// Keys that changed again before they could be captured (their own events cover them).
    pub vanished: u64,
    /// Versions recorded as permanently deleted (the catalog held them, the bucket no longer does).
    pub purges: u64,
    /// Keys still archived (the catalog holds no bytes of them and the bucket cannot serve them yet).
    pub archived: u64,
    /// Objects that could not be captured (recorded as failures of the bucket).
    pub failed: u64,
    /// Where the source view came from: `listing` or `inventory`.
    pub source: String,
    /// The bucket went away by design at this time (deleted): nothing was compared.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gone_since: Option<DateTime<Utc>>,
    /// Protection of the bucket was ended on purpose at this time: nothing was compared.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unprotected_since: Option<DateTime<Utc>>,
    /// The delta segments written (one per batch of changes).
    #[serde(skip)]
    pub segments: Vec<SegmentMeta>,
    #[serde(skip)]
    pub counters: Counters,
}

/// One object of the source view.
#[derive(Debug, Clone)]
struct Seen {
    etag: String,
    size: u64,
}

/// The catalog's versions of `key` that the bucket no longer holds, as purge records at `now`.
async fn purged_versions(
    engine: &Engine,
    bucket: &str,
    key: &str,
    state: &KeyState,
) -> Result<(Vec<CaptureRecord>, Vec<crate::ports::VersionEntry>)> {
    let listed = key_versions(engine.source.as_ref(), bucket, key).await?;
    let held: std::collections::HashSet<&str> = listed.iter().filter_map(|v| v.version_id.as_deref()).collect();
    let now = engine.clock.now();
    let purges = state
        .alive
        .iter()
        .filter(|v| !held.contains(v.as_str()))
        .map(|v| CaptureRecord::purge(bucket, key, Some(v), now, None, now))
        .collect();
    Ok((purges, listed))
}

/// Lists the source under `prefix`.
async fn list_source(engine: &Engine, bucket: &str, prefix: &str) -> Result<BTreeMap<String, Seen>> {
    let page = crate::ports::list_all(engine.source.as_ref(), bucket, prefix, None).await?;
    Ok(page.objects.into_iter().map(|o| (o.key, Seen { etag: normalize_etag(&o.etag), size: o.size })).collect())
}

/// Reads the current objects of an inventory report under `prefix`; returns them with the report's start time.
///
/// The report is opened as the seeder opens it (`seed::open_inventory`): a `file://` manifest
/// from a local directory, an `s3://` one through the engine's source store.
async fn read_inventory(engine: &Engine, url: &str, bucket: &str, prefix: &str) -> Result<(BTreeMap<String, Seen>, DateTime<Utc>)> {
    let (opts, file) = (crate::protect::seed::read_options(prefix, false), url.to_string());
    crate::protect::seed::with_inventory(engine.source.clone(), url, bucket, "inventory reading", move |inv| {
        let m = inv.manifest();
        let started = m.creation_timestamp.and_then(DateTime::from_timestamp_millis).ok_or_else(|| Error::Inventory {
            file: file.clone(),
            line: None,
            detail: "manifest has no creationTimestamp, which reconciliation needs to tell old drift from new changes".into(),
        })?;
        let mut out = BTreeMap::new();
        for r in inv.records(&opts) {
            let r = r?;
            let Some(etag) = r.etag else {
                return Err(Error::Inventory {
                    file: file.clone(),
                    line: None,
                    detail: "report has no ETag field, which reconciliation compares".into(),
                });
            };
            out.insert(r.key, Seen { etag: normalize_etag(&etag), size: r.size });
        }
        Ok((out, started))
    })
    .await
}

/// The catalog's current state under `prefix`: resolved over every live registered segment.
pub async fn catalog_state(engine: &Engine, bucket: &str, prefix: &str) -> Result<BTreeMap<String, CaptureRecord>> {
    Ok(catalog_keys(engine, bucket, prefix).await?.into_iter().filter_map(|(k, s)| s.current.map(|r| (k, r))).collect())
}

/// Every key the catalog knows under `prefix`, with its current version and its live versions.
async fn catalog_keys(engine: &Engine, bucket: &str, prefix: &str) -> Result<BTreeMap<String, KeyState>> {
    let live = engine.control().live_segments(bucket).await?;
    let keys: Vec<String> = live.iter().map(|s| &s.meta).filter(|m| m.may_contain_prefix(prefix)).map(|m| m.key.clone()).collect();
    let records = segment::read_many(engine.vault.as_ref(), &engine.config.vault_bucket, keys, engine.config.concurrency).await?;
    Ok(resolve_keys(records.iter().flatten(), prefix, DateTime::<Utc>::MAX_UTC))
}

/// The report of a reconciliation that found its source gone or unprotected by design.
fn stopped_report(s: &crate::control::SourceState) -> ReconcileReport {
    let mut r = ReconcileReport { source: "none".into(), ..Default::default() };
    match s.state {
        crate::control::Lifecycle::Unprotected => r.unprotected_since = Some(s.since),
        _ => r.gone_since = Some(s.since),
    }
    tracing::info!(bucket = %s.bucket, state = ?s.state, since = %s.since, "reconciliation skipped: the source is not there by design");
    r
}

/// The id of the S3 Inventory configuration the source-account stacks put on every protected
/// bucket (terraform/modules/source-account/bucket_setup.py); its reports land under
/// `<destination prefix>/<bucket>/tidemark/<YYYY-MM-DDTHH-MMZ>/`.
pub const INVENTORY_CONFIG_ID: &str = "tidemark";

/// The manifest URL of the newest complete S3 Inventory report of `bucket` under an inventory
/// destination (`s3://<inventory bucket>/<prefix>`, as the source-account stack configured it),
/// or why there is none.
///
/// A report is complete once S3 has written both `manifest.json` and `manifest.checksum` (it
/// writes the checksum last); the checksum itself is verified when the report is read. Report
/// folders are named by their UTC time, so the newest sorts last. A destination that cannot be
/// listed is a reason too: reconciliation then lists the bucket instead of failing.
pub async fn newest_manifest(store: &dyn ObjectStore, destination: &str, bucket: &str) -> std::result::Result<String, String> {
    let Some(rest) = destination.strip_prefix("s3://") else {
        return Err(format!("inventory destination '{destination}' is not an s3:// URL"));
    };
    let (dest_bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    let prefix = prefix.trim_matches('/');
    let folder =
        if prefix.is_empty() { format!("{bucket}/{INVENTORY_CONFIG_ID}/") } else { format!("{prefix}/{bucket}/{INVENTORY_CONFIG_ID}/") };
    let page = crate::ports::list_all(store, dest_bucket, &folder, None)
        .await
        .map_err(|e| format!("s3://{dest_bucket}/{folder} cannot be listed: {e}"))?;
    let keys: std::collections::BTreeSet<&str> = page.objects.iter().map(|o| o.key.as_str()).collect();
    let mut reports: Vec<&str> = keys
        .iter()
        .filter_map(|k| k.strip_prefix(folder.as_str())?.strip_suffix("/manifest.json"))
        .filter(|ts| !ts.contains('/'))
        .collect();
    reports.sort_unstable();
    let newest = reports.last().copied();
    match reports.iter().rev().find(|ts| keys.contains(format!("{folder}{ts}/manifest.checksum").as_str())) {
        Some(ts) => Ok(format!("s3://{dest_bucket}/{folder}{ts}/manifest.json")),
        None => Err(match newest {
            Some(ts) => format!("the newest inventory report under s3://{dest_bucket}/{folder} ({ts}) has no manifest.checksum yet, and no older one is complete"),
            None => format!("no inventory report under s3://{dest_bucket}/{folder} yet (the first arrives within 48 hours)"),
        }),
    }
}

/// Reconciles `bucket` (under `opts.prefix`) with the catalog and records what the events missed.
#[tracing::instrument(name = "step", skip_all, fields(step = "reconcile", source_bucket = %bucket, prefix = %opts.prefix))]
pub async fn reconcile(engine: &Engine, bucket: &str, opts: &ReconcileOptions) -> Result<ReconcileReport> {
    let control = engine.control();
    if !control.is_protected(bucket).await? {
        return Err(Error::Invalid(format!(
            "s3://{bucket} is not protected by vault {}; run `tidemark protect` first",
            engine.config.vault_bucket
        )));
    }
    // A source gone or unprotected by design has nothing to reconcile; the others carry on.
    if let Some(stopped) = lifecycle::stopped(engine, bucket).await? {
        return Ok(stopped_report(&stopped));
    }
    let mut prefixes = vec![String::new()];
    if !opts.prefix.is_empty() {
        prefixes.push(opts.prefix.clone());
    }
    // While a seed run is unfinished the catalog is incomplete by design; reconciling then would
    // capture the whole bucket a second time.
    for p in &prefixes {
        if let Some((_, run)) = control.active_run(bucket, p).await? {
            if run.state != RunState::Complete {
                return Err(Error::Invalid(format!(
                    "seed run {} of s3://{bucket} is still in progress; reconcile after it completes",
                    run.run_id
                )));
            }
        }
    }
    let mut report = ReconcileReport::default();
    let (source, view_started) = match &opts.inventory_manifest {
        Some(url) => {
            report.source = "inventory".into();
            read_inventory(engine, url, bucket, &opts.prefix).await?
        }
        None => {
            report.source = "listing".into();
            let started = engine.clock.now();
            match list_source(engine, bucket, &opts.prefix).await {
                Ok(listed) => (listed, started),
                // Deleted since the last look: recorded as gone, not an error.
                Err(e) if lifecycle::is_no_such_bucket(&e) => {
                    lifecycle::observe(engine, bucket).await?;
                    return match lifecycle::stopped(engine, bucket).await? {
                        Some(stopped) => Ok(stopped_report(&stopped)),
                        None => Err(e),
                    };
                }
                Err(e) => return Err(e),
            }
        }
    };
    // Loaded after the source view, so a change captured while the view was taken shows up
    // here with a time at or after `cutoff` and is left to its event.
    let catalog = catalog_keys(engine, bucket, &opts.prefix).await?;
    let cutoff = view_started.trunc_subsecs(0);
    report.source_objects = source.len() as u64;
    report.catalog_objects = catalog.values().filter(|s| s.current.is_some()).count() as u64;

    let mut items = Vec::new();
    let mut deletes = Vec::new();
    for (key, seen) in &source {
        let state = catalog.get(key);
        match state.and_then(|s| s.current.as_ref()) {
            // Held without bytes because it was archived: captured once the bucket can serve it.
            Some(rec) if rec.etag.as_deref() == Some(seen.etag.as_str()) && rec.location.is_none() && rec.attributes.archived.is_some() => {
                match engine.source.head(bucket, key, rec.version_id.as_deref()).await? {
                    Some(info) if archive_tier(&info).is_none() => {}
                    _ => {
                        report.archived += 1;
                        continue;
                    }
                }
            }
            Some(rec) if rec.etag.as_deref() == Some(seen.etag.as_str()) => continue,
            Some(rec) if rec.event_time >= cutoff => {
                report.recent += 1;
                continue;
            }
            Some(_) => report.changed += 1,
            None => report.missing += 1,
        }
        // A versioned key the bucket shows otherwise than the catalog: the catalog's versions it
        // no longer holds (a version deleted for good, a removed delete marker) stop counting.
        if let Some(st) = state.filter(|s| !s.alive.is_empty()) {
            let (purges, _) = purged_versions(engine, bucket, key, st).await?;
            report.purges += purges.len() as u64;
            deletes.extend(purges);
        }
        items.push(CaptureItem { if_match: Some(seen.etag.clone()), ..CaptureItem::new(key.clone(), seen.size) });
    }
    for (key, state) in &catalog {
        let Some(rec) = &state.current else { continue };
        if source.contains_key(key) {
            continue;
        }
        if rec.event_time >= cutoff {
            report.recent += 1;
            continue;
        }
        // A listing or a report is a view of the past; the key may have been written again since.
        if rec.version_id.is_none() {
            match engine.source.head(bucket, key, None).await? {
                Some(_) => report.recent += 1,
                None => deletes.push(CaptureRecord::delete(bucket, key, engine.clock.now(), None, engine.clock.now())),
            }
            continue;
        }
        // A versioned key: its versions say whether a delete marker hides it (and since when)
        // and which of the catalog's versions were deleted for good.
        let (purges, listed) = purged_versions(engine, bucket, key, state).await?;
        match listed.first() {
            Some(v) if !v.is_delete_marker => report.recent += 1,
            top => {
                report.purges += purges.len() as u64;
                deletes.extend(purges);
                let now = engine.clock.now();
                deletes.push(match top {
                    Some(m) => match &m.version_id {
                        Some(id) => CaptureRecord::delete_marker(bucket, key, id, m.last_modified, None, now),
                        None => CaptureRecord::delete(bucket, key, m.last_modified, None, now),
                    },
                    None => CaptureRecord::delete(bucket, key, now, None, now),
                });
            }
        }
    }

    let batch = engine.config.batch_objects.max(1);
    let source = PacedStore::new(engine.source.clone());
    let mut deletes = deletes.into_iter().peekable();
    let mut items = items.into_iter().peekable();
    while items.peek().is_some() || deletes.peek().is_some() {
        let chunk: Vec<CaptureItem> = items.by_ref().take(batch).collect();
        let mut records: Vec<CaptureRecord> = deletes.by_ref().take(batch).collect();
        report.deletes += records.iter().filter(|r| r.kind == crate::domain::CaptureKind::Delete).count() as u64;
        let captured = capture_batch(engine, &source, bucket, chunk).await?;
        report.puts += captured.counters.objects;
        report.vanished += captured.counters.vanished;
        report.archived += captured.counters.archived;
        report.failed += captured.failures.len() as u64;
        let now = engine.clock.now();
        let failures: Vec<FailureRecord> =
            captured.failures.iter().map(|f| FailureRecord::new(&f.key, f.version_id.as_deref(), &f.reason, now, "reconcile")).collect();
        engine.control().record_failures(bucket, &failures).await?;
        report.counters.add(&captured.counters);
        records.extend(captured.records);
        if records.is_empty() {
            continue;
        }
        report.segments.push(write_registered_segment(engine, bucket, "reconcile", records, captured.counters).await?);
    }
    tracing::info!(
        bucket,
        source = %report.source,
        puts = report.puts,
        deletes = report.deletes,
        missing = report.missing,
        changed = report.changed,
        "reconciled"
    );
    Ok(report)
}
