//! The whole state of a prefix at time T in memory, resolved from the vault: for `ls` and small
//! tools (a restore streams it instead, `restore::state`).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use crate::domain::CaptureRecord;
use crate::engine::Engine;
use crate::restore::resolve::resolve;
use crate::vault::point::{point_for, RecoveryPoint};
use crate::vault::segment;
use crate::{Error, Result};

/// Resolves the state of `prefix` at `as_of` from the recovery point that covers it.
pub async fn load_state(
    engine: &Engine,
    bucket: &str,
    prefix: &str,
    as_of: DateTime<Utc>,
) -> Result<(RecoveryPoint, BTreeMap<String, CaptureRecord>)> {
    let vault_bucket = engine.config.vault_bucket.clone();
    if !engine.vault.bucket_exists(&vault_bucket).await? {
        return Err(Error::NoSuchBucket { bucket: vault_bucket });
    }
    let point = point_for(engine.vault.as_ref(), &vault_bucket, bucket, as_of).await?;
    let keys: Vec<String> = point.segments.iter().filter(|s| s.may_contain_prefix(prefix)).map(|s| s.key.clone()).collect();
    let records = segment::read_many(engine.vault.as_ref(), &engine.config.vault_bucket, keys, engine.config.concurrency).await?;
    let state = resolve(records.iter().flatten(), prefix, as_of);
    Ok((point, state))
}
