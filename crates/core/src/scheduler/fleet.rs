//! The fleet-shared per-prefix scheduler state in the control store, and a worker's handle on it.
//!
//! Every worker of a vault reads and writes one [`PrefixState`] per (vault, source bucket,
//! top-level prefix), stored as a control item under `pk = pressure#{vault}#{bucket}` and
//! `sk = {prefix}/`. The sort key carries a trailing slash because keys at the bucket's root share
//! the empty prefix, and DynamoDB refuses an empty sort key; the slash cannot occur inside a
//! top-level prefix, so no two prefixes share a sort key.
//!
//! A write is conditional on the item's version. A worker whose write lost a race reads the stored
//! copy and applies its own step (the observation it reports and its claim) to that copy again,
//! which is [`PrefixState::merge`] of its step into the fleet's state: only the owner writes its
//! claim, and a throttle that arrives within the hold of the last cut does not cut twice, so the
//! retry counts nothing twice. A worker keeps the copy it last wrote for a short while and writes
//! against that copy's version without reading first; a stale copy only costs one failed condition.

use std::time::{Duration, Instant};

use crate::ports::{ControlStore, Item};
use crate::scheduler::{Admission, ControllerConfig, Millis, Observation, PrefixState};
use crate::{Error, Result};

/// How long a worker trusts its last copy of a prefix's state before reading it again.
pub const CACHE_TTL: Duration = Duration::from_secs(1);

/// How often a worker retries a write that lost a race before giving up on recording this step.
const MAX_ATTEMPTS: usize = 16;

/// The top-level prefix of a key as the scheduler and the throttling proxy see it: the part
/// before the first `/`, or the empty string for a key at the bucket's root.
///
/// S3 partitions by key prefix; tidemark schedules by the first path component, which is how
/// applications usually lay out their keys and how the seeder interleaves its tasks.
pub fn top_prefix(key: &str) -> &str {
    match key.split_once('/') {
        Some((top, _)) => top,
        None => "",
    }
}

/// The partition key of a vault's and bucket's prefix states.
pub fn partition_key(vault: &str, bucket: &str) -> String {
    format!("pressure#{vault}#{bucket}")
}

/// The sort key of one prefix's state (see the module documentation for the trailing slash).
pub fn sort_key(prefix: &str) -> String {
    format!("{prefix}/")
}

/// Milliseconds since the Unix epoch of a time, the scheduler's clock.
pub fn millis(t: chrono::DateTime<chrono::Utc>) -> Millis {
    t.timestamp_millis().max(0) as Millis
}

/// Reads one prefix's stored state and the item version to condition the next write on.
pub async fn load(store: &dyn ControlStore, vault: &str, bucket: &str, prefix: &str) -> Result<Option<(u64, PrefixState)>> {
    let Some(Item { version, body, .. }) = store.get(&partition_key(vault, bucket), &sort_key(prefix)).await? else {
        return Ok(None);
    };
    let state: PrefixState =
        serde_json::from_str(&body).map_err(|e| Error::corrupt(format!("scheduler state of prefix {prefix:?}"), e.to_string()))?;
    Ok(Some((version, state)))
}

/// The last copy of a prefix's state this worker read or wrote.
#[derive(Debug, Clone)]
struct Cached {
    prefix: String,
    /// The item version the copy corresponds to; `None` when no item existed.
    version: Option<u64>,
    state: PrefixState,
    at: Instant,
}

/// One worker's view of the shared scheduler state of one source bucket in one vault.
///
/// A worker holds one for the length of a task; it caches the copy of the prefix it last wrote
/// for [`CACHE_TTL`].
pub struct Pressure<'a> {
    store: &'a dyn ControlStore,
    vault: String,
    bucket: String,
    config: ControllerConfig,
    worker: String,
    want_rps: f64,
    cached: Option<Cached>,
    /// Writes that lost a race and were retried, for tests and logs.
    pub conflicts: u64,
}

impl<'a> Pressure<'a> {
    /// A handle for `worker`, which can send up to `want_rps` requests per second to one prefix.
    pub fn new(
        store: &'a dyn ControlStore,
        vault: &str,
        bucket: &str,
        config: ControllerConfig,
        worker: &str,
        want_rps: f64,
    ) -> Result<Self> {
        config.validate()?;
        if !(want_rps.is_finite() && want_rps > 0.0) {
            return Err(Error::Invalid(format!("scheduler: a worker's wanted rate must be positive, got {want_rps}")));
        }
        Ok(Pressure {
            store,
            vault: vault.into(),
            bucket: bucket.into(),
            config,
            worker: worker.into(),
            want_rps,
            cached: None,
            conflicts: 0,
        })
    }

    /// The configuration in force.
    pub fn config(&self) -> &ControllerConfig {
        &self.config
    }

    /// Records what this worker saw on `prefix` since its last report and decides whether it may
    /// go on (and at what pace) or must defer; the claim it holds is granted, renewed or released
    /// in the shared state accordingly.
    pub async fn report(&mut self, prefix: &str, now: Millis, observation: Observation) -> Result<Admission> {
        let (config, worker, want) = (self.config.clone(), self.worker.clone(), self.want_rps);
        self.step(prefix, now, move |state| {
            state.record(&config, now, observation);
            let admission = state.admit(&config, &worker, want, now);
            state.prune(&config, now);
            match admission {
                // The rate itself has room; other workers' claims fill it. Those are released
                // when their tasks end or yield, which the curve cannot predict, so look again
                // after the shortest deferral rather than when the curve would get there.
                Admission::Defer(d) if state.allowed_rps(&config, now) >= config.min_slice * want => {
                    Admission::Defer(d.min(Duration::from_millis(config.min_defer_ms)))
                }
                other => other,
            }
        })
        .await
    }

    /// Gives back this worker's slice of `prefix` (its task ended or yielded), recording a last
    /// observation first.
    pub async fn release(&mut self, prefix: &str, now: Millis, observation: Observation) -> Result<()> {
        let (config, worker) = (self.config.clone(), self.worker.clone());
        self.step(prefix, now, move |state| {
            state.record(&config, now, observation);
            state.release(&worker, now);
            state.prune(&config, now);
        })
        .await
    }

    /// Applies `change` to the current state of `prefix` and writes it back conditionally,
    /// re-reading and re-applying on a lost race. A step that changes nothing is not written.
    async fn step<T>(&mut self, prefix: &str, now: Millis, change: impl Fn(&mut PrefixState) -> T) -> Result<T> {
        let (pk, sk) = (partition_key(&self.vault, &self.bucket), sort_key(prefix));
        let mut fresh_read = false;
        for _ in 0..MAX_ATTEMPTS {
            let (version, mut state) = match self.cached.take() {
                Some(c) if c.prefix == prefix && c.at.elapsed() < CACHE_TTL && !fresh_read => (c.version, c.state),
                _ => match load(self.store, &self.vault, &self.bucket, prefix).await? {
                    Some((v, s)) => (Some(v), s),
                    None => (None, PrefixState::new(prefix, &self.config, now)),
                },
            };
            let before = state.clone();
            let out = change(&mut state);
            if state == before {
                self.cached = Some(Cached { prefix: prefix.into(), version, state, at: Instant::now() });
                return Ok(out);
            }
            state.bump();
            let body = serde_json::to_string(&state).map_err(|e| Error::Invalid(format!("scheduler state: {e}")))?;
            let written = match version {
                Some(v) => self.store.replace(&pk, &sk, v, &body).await?,
                None => self.store.put_new(&pk, &sk, &body, None).await?,
            };
            if written {
                let version = Some(version.map_or(1, |v| v + 1));
                self.cached = Some(Cached { prefix: prefix.into(), version, state, at: Instant::now() });
                return Ok(out);
            }
            self.conflicts += 1;
            fresh_read = true;
        }
        Err(Error::port(
            "scheduler state write",
            format!("prefix {prefix:?} of s3://{}: lost {MAX_ATTEMPTS} races in a row", self.bucket),
            true,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_prefix_is_the_first_component() {
        for (key, top) in [("hot/a/b", "hot"), ("hot/", "hot"), ("root.txt", ""), ("", ""), ("/x", "")] {
            assert_eq!(top_prefix(key), top, "{key}");
        }
    }

    #[test]
    fn sort_keys_are_never_empty_and_never_collide() {
        assert_eq!(sort_key(""), "/");
        assert_ne!(sort_key("a"), sort_key(""));
        assert_eq!(partition_key("v", "b"), "pressure#v#b");
    }
}
