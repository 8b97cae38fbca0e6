//! Recovery points: the `points/T.json` files, finding the point that serves a time, and writing one.
//!
//! When a point may be sealed is the checkpoint's decision (`changes::checkpoint`); this module
//! only knows the format.

use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::ports::{ObjectStore, PutOptions};
use crate::vault;
use crate::vault::segment::SegmentMeta;
use crate::{Error, Result};

/// The format version of the recovery points this code writes; it reads every version up to it.
pub const FORMAT_VERSION: u32 = 2;

/// A sealed recovery point: every change with event time ≤ `time` is captured in `segments`,
/// except the changes of the keys named in `unprotected`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecoveryPoint {
    pub format: String,
    pub version: u32,
    pub bucket: String,
    pub time: DateTime<Utc>,
    pub sealed_at: DateTime<Utc>,
    pub segments: Vec<SegmentMeta>,
    /// Keys whose state the segments may not hold for a time range: a change of the key could
    /// not be captured (format version 2; absent means none).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unprotected: Vec<Unprotected>,
}

/// A key whose state is unknown from `since` (the time of the change that could not be
/// captured) until `until` (the time of the first capture of the key after it), or from `since`
/// on while `until` is `None`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Unprotected {
    pub key: String,
    pub reason: String,
    pub since: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<DateTime<Utc>>,
}

impl Unprotected {
    /// True if the key's state at `t` is unknown.
    pub fn covers(&self, t: DateTime<Utc>) -> bool {
        self.since.timestamp() <= t.timestamp() && self.until.is_none_or(|u| t.timestamp() < u.timestamp())
    }
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
    if !(1..=FORMAT_VERSION).contains(&p.version) {
        return Err(Error::corrupt(
            format!("recovery point {key}"),
            format!("format version {} is not supported (this build reads 1 to {FORMAT_VERSION})", p.version),
        ));
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

/// Writes a recovery point to the vault under `points/<time>.json`.
pub async fn write_point(
    vault: &dyn ObjectStore,
    vault_bucket: &str,
    point: &RecoveryPoint,
    sse: Option<crate::domain::Sse>,
) -> Result<()> {
    let body = Bytes::from(serde_json::to_vec_pretty(point).expect("point serialises"));
    let mut opts = PutOptions { content_type: Some("application/json".into()), ..Default::default() };
    opts.attributes.sse = sse;
    vault.put(vault_bucket, &vault::point_key(&point.bucket, point.time), body, &opts).await?;
    Ok(())
}
