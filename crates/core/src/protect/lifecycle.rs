//! Sources that go away by design: a deleted bucket or an emptied prefix becomes "gone since T", a bucket that comes back is protected again, and `unprotect` ends protection on purpose.
//!
//! A deletion is not a failure: the checkpoint, `sync` and reconciliation record the state and
//! carry on for the other sources, without an error and without dead letters. A source that
//! cannot be read (access denied) is a different thing and still fails, since its objects may
//! still exist unprotected. Every transition is kept in the control table
//! ([`crate::control::SourceState`]) and as a small immutable JSON object in the vault beside
//! the points (`v1/<bucket>/lifecycle/<time>-<state>.json`), so the vault alone tells when a
//! source went away; the points sealed before stay restorable.

use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::control::{Lifecycle, RunState, SourceState, SOURCE_STATE_VERSION};
use crate::domain::CaptureRecord;
use crate::engine::Engine;
use crate::ports::{ListRequest, PutOptions};
use crate::vault::point;
use crate::{Error, Result};

/// Key of the vault's record of one lifecycle transition of `bucket`; lexical order is time order.
pub fn lifecycle_key(bucket: &str, t: DateTime<Utc>, state: Lifecycle, prefix: &str) -> String {
    let name = match state {
        Lifecycle::Protected => "protected",
        Lifecycle::Gone => "gone",
        Lifecycle::Unprotected => "unprotected",
    };
    // The prefix is part of the name (hashed, since it may hold any character) so that two
    // prefixes going away in the same millisecond never write the same key.
    let scope = if prefix.is_empty() { "bucket".to_string() } else { crate::domain::stable_id(&[prefix])[..16].to_string() };
    format!("v1/{bucket}/lifecycle/{}-{name}-{scope}.json", t.format("%Y-%m-%dT%H:%M:%S%.3fZ"))
}

/// What an observation of a source found.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "change", rename_all = "lowercase")]
pub enum Observed {
    /// Present and protected, as before.
    Present,
    /// Gone now, or still gone (`new` is true when this observation recorded it).
    Gone { since: DateTime<Utc>, new: bool, reason: String },
    /// It had gone and is back: protected again from `at`.
    Returned { at: DateTime<Utc> },
    /// Protection was ended on purpose.
    Unprotected { since: DateTime<Utc> },
}

/// True when `e` says the bucket itself does not exist (not a key, and not a refusal).
pub fn is_no_such_bucket(e: &Error) -> bool {
    match e {
        Error::NoSuchBucket { .. } => true,
        Error::Port { message, .. } => message.starts_with("NoSuchBucket"),
        _ => false,
    }
}

/// Records a transition in the control table (compare-and-set, so concurrent observers agree)
/// and in the vault; returns false when another observer recorded a transition first.
async fn record(engine: &Engine, version: Option<u64>, state: &SourceState) -> Result<bool> {
    if !engine.control().put_source_state(version, state).await? {
        return Ok(false);
    }
    let body = Bytes::from(serde_json::to_vec_pretty(state).expect("source state serialises"));
    let mut opts = PutOptions { content_type: Some("application/json".into()), ..Default::default() };
    opts.attributes.sse = engine.config.vault_sse();
    let key = lifecycle_key(&state.bucket, state.since, state.state, &state.prefix);
    engine.vault.put(&engine.config.vault_bucket, &key, body, &opts).await?;
    tracing::info!(bucket = %state.bucket, prefix = %state.prefix, state = ?state.state, since = %state.since, reason = %state.reason, "source lifecycle recorded");
    Ok(true)
}

async fn latest_point(engine: &Engine, bucket: &str) -> Result<Option<DateTime<Utc>>> {
    Ok(point::recoverable_range(engine.vault.as_ref(), &engine.config.vault_bucket, bucket).await?.map(|(_, l)| l.time))
}

fn state(
    bucket: &str,
    prefix: &str,
    lifecycle: Lifecycle,
    since: DateTime<Utc>,
    reason: &str,
    last_point: Option<DateTime<Utc>>,
) -> SourceState {
    SourceState {
        format_version: SOURCE_STATE_VERSION,
        bucket: bucket.into(),
        prefix: prefix.into(),
        state: lifecycle,
        since,
        reason: reason.into(),
        last_point,
    }
}

/// Marks the whole bucket gone at `since` (it was seen not to exist): every key the catalog still
/// holds as current gets a delete record at `since`, so that the catalog agrees with the
/// (absent) bucket and a bucket re-created under the same name starts from nothing.
async fn mark_bucket_gone(engine: &Engine, version: Option<u64>, bucket: &str, reason: &str) -> Result<Observed> {
    let since = engine.clock.now();
    let catalog = crate::changes::reconcile::catalog_state(engine, bucket, "").await?;
    let last_point = latest_point(engine, bucket).await?;
    if !catalog.is_empty() {
        let records: Vec<CaptureRecord> = catalog.keys().map(|k| CaptureRecord::delete(bucket, k, since, None, since)).collect();
        crate::changes::delta::write_registered_segment(engine, bucket, "gone", records, Default::default()).await?;
    }
    let s = state(bucket, "", Lifecycle::Gone, since, reason, last_point);
    if record(engine, version, &s).await? {
        return Ok(Observed::Gone { since, new: true, reason: reason.into() });
    }
    // Another observer recorded it first; report what it recorded.
    match engine.control().source_state(bucket, "").await? {
        Some((_, s)) if s.state == Lifecycle::Gone => Ok(Observed::Gone { since: s.since, new: false, reason: s.reason }),
        _ => Ok(Observed::Present),
    }
}

/// Looks at a protected bucket (and the prefixes its seed runs covered) and records what changed:
/// a bucket that no longer exists is gone, one that exists again after being gone is protected
/// again, an emptied seeded prefix is gone and a refilled one protected again.
///
/// A bucket that cannot be read (access denied) is not gone: its error is returned.
pub async fn observe(engine: &Engine, bucket: &str) -> Result<Observed> {
    let control = engine.control();
    let recorded = control.source_state(bucket, "").await?;
    if let Some((_, s)) = &recorded {
        if s.state == Lifecycle::Unprotected {
            return Ok(Observed::Unprotected { since: s.since });
        }
    }
    let exists = engine.source.bucket_exists(bucket).await?;
    let version = recorded.as_ref().map(|(v, _)| *v);
    match (&recorded, exists) {
        (Some((_, s)), false) if s.state == Lifecycle::Gone => Ok(Observed::Gone { since: s.since, new: false, reason: s.reason.clone() }),
        (_, false) => mark_bucket_gone(engine, version, bucket, "NoSuchBucket: the bucket was deleted").await,
        (Some((_, s)), true) if s.state == Lifecycle::Gone => {
            let at = engine.clock.now();
            let back = state(bucket, "", Lifecycle::Protected, at, "the bucket exists again", latest_point(engine, bucket).await?);
            record(engine, version, &back).await?;
            Ok(Observed::Returned { at })
        }
        _ => {
            observe_prefixes(engine, bucket).await?;
            Ok(Observed::Present)
        }
    }
}

/// Records seeded prefixes that hold no objects any more as gone, and refilled ones as protected again.
///
/// A prefix whose seed has not finished is left alone: its run decides what it holds.
async fn observe_prefixes(engine: &Engine, bucket: &str) -> Result<()> {
    let control = engine.control();
    for prefix in control.seeded_prefixes(bucket).await?.into_iter().filter(|p| !p.is_empty()) {
        if control.latest_run(bucket, &prefix).await?.is_none_or(|r| r.state != RunState::Complete) {
            continue;
        }
        let req = ListRequest { prefix: &prefix, delimiter: None, start_after: None, continuation: None, max_keys: Some(1) };
        let empty = engine.source.list(bucket, req).await?.objects.is_empty();
        let recorded = control.source_state(bucket, &prefix).await?;
        let was_gone = recorded.as_ref().is_some_and(|(_, s)| s.state == Lifecycle::Gone);
        let version = recorded.as_ref().map(|(v, _)| *v);
        let now = engine.clock.now();
        if empty && !was_gone {
            let s = state(bucket, &prefix, Lifecycle::Gone, now, "no objects left under the prefix", latest_point(engine, bucket).await?);
            record(engine, version, &s).await?;
        } else if !empty && was_gone {
            let s =
                state(bucket, &prefix, Lifecycle::Protected, now, "objects under the prefix again", latest_point(engine, bucket).await?);
            record(engine, version, &s).await?;
        }
    }
    Ok(())
}

/// The bucket's own recorded state, if it is gone or unprotected (the states that stop sealing).
pub async fn stopped(engine: &Engine, bucket: &str) -> Result<Option<SourceState>> {
    Ok(engine.control().source_state(bucket, "").await?.map(|(_, s)| s).filter(|s| s.state != Lifecycle::Protected))
}

/// Ends the protection of `bucket` on purpose: its changes are ignored from now on (the delta
/// handler drops them), no more points are sealed, and every point sealed so far stays
/// restorable. An unknown bucket is a clear error naming the vault's protected sources.
pub async fn unprotect(engine: &Engine, bucket: &str) -> Result<SourceState> {
    let control = engine.control();
    if !control.is_protected(bucket).await? {
        return Err(Error::Invalid(format!(
            "s3://{bucket} is not a source of vault {}; `tidemark status` lists the protected sources",
            engine.config.vault_bucket
        )));
    }
    let recorded = control.source_state(bucket, "").await?;
    if let Some((_, s)) = &recorded {
        if s.state == Lifecycle::Unprotected {
            return Ok(s.clone());
        }
    }
    let now = engine.clock.now();
    let s = state(bucket, "", Lifecycle::Unprotected, now, "unprotected on purpose", latest_point(engine, bucket).await?);
    if !record(engine, recorded.map(|(v, _)| v), &s).await? {
        return Err(Error::port(
            "unprotect",
            format!("the state of s3://{bucket} changed while it was being unprotected; run it again"),
            true,
        ));
    }
    Ok(s)
}

/// Protects a bucket again that was unprotected or gone (a new `protect`): its lifecycle is
/// `protected` from `now` on. Does nothing for a bucket with no such record.
pub async fn protect_again(engine: &Engine, bucket: &str, now: DateTime<Utc>) -> Result<()> {
    let Some((version, s)) = engine.control().source_state(bucket, "").await? else { return Ok(()) };
    if s.state == Lifecycle::Protected {
        return Ok(());
    }
    let back = state(bucket, "", Lifecycle::Protected, now, "protected again", latest_point(engine, bucket).await?);
    record(engine, Some(version), &back).await?;
    Ok(())
}
