//! Recovery points: sealing `points/T.json` at the watermark, and finding the point that serves a time.

use std::sync::Arc;

use bytes::Bytes;
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use crate::control::{Control, RunState};
use crate::ports::{ControlStore, ObjectStore, PutOptions};
use crate::vault;
use crate::vault::segment::SegmentMeta;
use crate::{Error, Result};

/// A sealed recovery point: every change with event time ≤ `time` is captured in `segments`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecoveryPoint {
    pub format: String,
    pub version: u32,
    pub bucket: String,
    pub time: DateTime<Utc>,
    pub sealed_at: DateTime<Utc>,
    pub segments: Vec<SegmentMeta>,
}

/// Lists the keys of every recovery point of a bucket, oldest first.
pub async fn list_points(vault: &dyn ObjectStore, vault_bucket: &str, bucket: &str) -> Result<Vec<String>> {
    let page = crate::ports::list_all(vault, vault_bucket, &vault::points_prefix(bucket), None).await?;
    let mut keys: Vec<String> = page.objects.into_iter().map(|o| o.key).filter(|k| k.ends_with(".json")).collect();
    keys.sort();
    Ok(keys)
}

/// Reads one recovery point.
pub async fn read_point(vault: &dyn ObjectStore, vault_bucket: &str, key: &str) -> Result<RecoveryPoint> {
    let bytes = match vault.get(vault_bucket, key, None, None).await? {
        crate::ports::Fetch::Found((_, b)) => b,
        _ => return Err(Error::corrupt("recovery point", format!("{key} is listed but cannot be read"))),
    };
    let p: RecoveryPoint = serde_json::from_slice(&bytes).map_err(|e| Error::corrupt(format!("recovery point {key}"), e.to_string()))?;
    if p.format != "tidemark-recovery-point" {
        return Err(Error::corrupt(format!("recovery point {key}"), "wrong format tag"));
    }
    Ok(p)
}

/// The time range a vault can restore a bucket to: (first point, latest point).
pub async fn recoverable_range(
    vault: &dyn ObjectStore,
    vault_bucket: &str,
    bucket: &str,
) -> Result<Option<(RecoveryPoint, RecoveryPoint)>> {
    let keys = list_points(vault, vault_bucket, bucket).await?;
    let (Some(first), Some(last)) = (keys.first(), keys.last()) else {
        return Ok(None);
    };
    let f = read_point(vault, vault_bucket, first).await?;
    let l = if first == last { f.clone() } else { read_point(vault, vault_bucket, last).await? };
    Ok(Some((f, l)))
}

/// Finds the point that serves `as_of`: the latest one, after checking `as_of` lies in the recoverable range.
pub async fn point_for(vault: &dyn ObjectStore, vault_bucket: &str, bucket: &str, as_of: DateTime<Utc>) -> Result<RecoveryPoint> {
    let Some((first, latest)) = recoverable_range(vault, vault_bucket, bucket).await? else {
        return Err(Error::NoRecoveryPoint { bucket: bucket.into(), vault: vault_bucket.into() });
    };
    if as_of > latest.time {
        return Err(Error::AfterLatestPoint { requested: as_of, latest: latest.time });
    }
    if as_of < first.time {
        return Err(Error::BeforeFirstPoint { bucket: bucket.into(), requested: as_of, first: first.time, latest: latest.time });
    }
    Ok(latest)
}

/// What a seal attempt did.
#[derive(Debug, Clone, PartialEq)]
pub enum Sealed {
    /// A new point was written at this time.
    New(RecoveryPoint),
    /// The latest point is already at or after the watermark.
    UpToDate(DateTime<Utc>),
    /// A seed run is still in progress, so no point can be complete yet.
    SeedInProgress(String),
}

/// Seals a recovery point at `watermark` listing every registered segment, if that moves time forward.
///
/// The caller guarantees that every change with event time ≤ `watermark` is captured (the delta
/// queue was drained up to it); this function checks that no seed run is unfinished.
pub async fn seal(
    vault: &Arc<dyn ObjectStore>,
    control_store: &dyn ControlStore,
    vault_bucket: &str,
    bucket: &str,
    prefixes_protected: &[String],
    watermark: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<Sealed> {
    let control = Control::new(control_store, vault_bucket);
    for prefix in prefixes_protected {
        if let Some((_, run)) = control.active_run(bucket, prefix).await? {
            if run.state != RunState::Complete {
                return Ok(Sealed::SeedInProgress(run.run_id));
            }
        }
    }
    let watermark = watermark.trunc_subsecs_ms();
    if let Some(last) = list_points(vault.as_ref(), vault_bucket, bucket).await?.last() {
        let p = read_point(vault.as_ref(), vault_bucket, last).await?;
        if p.time >= watermark {
            return Ok(Sealed::UpToDate(p.time));
        }
    }
    // Segments replaced by a compacted one are left out: the compacted segment holds their records.
    let mut segments: Vec<SegmentMeta> = control.live_segments(bucket).await?.into_iter().map(|s| s.meta).collect();
    segments.sort_by(|a, b| a.key.cmp(&b.key));
    let point = RecoveryPoint {
        format: "tidemark-recovery-point".into(),
        version: 1,
        bucket: bucket.into(),
        time: watermark,
        sealed_at: now,
        segments,
    };
    let body = Bytes::from(serde_json::to_vec_pretty(&point).expect("point serialises"));
    let opts = PutOptions { content_type: Some("application/json".into()), ..Default::default() };
    vault.put(vault_bucket, &vault::point_key(bucket, watermark), body, &opts).await?;
    Ok(Sealed::New(point))
}

/// Truncation to milliseconds, so a point's file name and its `time` agree exactly.
trait TruncMs {
    fn trunc_subsecs_ms(self) -> Self;
}

impl TruncMs for DateTime<Utc> {
    fn trunc_subsecs_ms(self) -> Self {
        use chrono::SubsecRound;
        self.trunc_subsecs(3)
    }
}

/// The watermark for a drained queue: changes older than `now - allowance` are assumed delivered.
pub fn watermark_after_drain(drain_started: DateTime<Utc>, late_allowance: Duration) -> DateTime<Utc> {
    drain_started - late_allowance
}

/// The watermark the delta queue's backlog allows, if any.
///
/// A change reaches the queue some time after it happened (EventBridge delivery, retries), so the
/// watermark stays `late_allowance` behind the oldest message still unhandled, or behind the moment
/// the queue was seen empty. `None` when the queue cannot tell: sealing then waits, and the RPO
/// metric shows it.
pub fn watermark_from_backlog(backlog: &crate::ports::Backlog, late_allowance: Duration) -> Option<DateTime<Utc>> {
    use crate::ports::Backlog;
    match backlog {
        Backlog::Empty { at } => Some(*at - late_allowance),
        Backlog::Oldest { at, oldest_sent } => Some((*oldest_sent).min(*at) - late_allowance),
        Backlog::Unknown { .. } => None,
    }
}
