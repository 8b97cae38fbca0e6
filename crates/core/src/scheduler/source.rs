//! The source as a task sees it: one wrapper store that paces requests, retries throttled ones
//! and counts what S3 answered, for the scheduler.
//!
//! Every request to the source goes through [`PacedStore`]: it waits for the pacer's slot, sends
//! the request, and when S3 answers `503 SlowDown` ([`Error::Throttled`]) backs off and tries again
//! up to [`RetryConfig::max_retries`] times. Each answer is counted; the worker hands the counts
//! ([`PacedStore::take_observation`]) to the scheduler with its next report, and the scheduler's
//! answer sets the pace ([`PacedStore::set_rate`]). Without a scheduler the same wrapper runs with
//! pacing off, so throttle retries work alike on every path (seed workers, delta batches,
//! reconciliation).

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use rand::Rng;

use crate::domain::{Acl, ObjectInfo};
use crate::ports::{Fetch, ListPage, ListRequest, ObjectRef, ObjectStore, PutOptions, VersionListRequest, VersionPage, Written};
use crate::scheduler::pacer::Pacer;
use crate::scheduler::Observation;
use crate::{Error, Result};

/// How throttled requests are retried: exponential backoff with jitter, a bounded number of times.
///
/// The delay before retry `n` (from 1) is drawn uniformly from the upper half of
/// `min(initial · 2^(n-1), max)`, so that the requests one worker has in flight, throttled
/// together, do not come back together (AWS's "exponential backoff and jitter"). The bound is
/// small on purpose: past it the task yields to the scheduler, which slows the whole fleet on the
/// prefix instead of one request.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryConfig {
    /// Retries after the first attempt.
    pub max_retries: u32,
    /// The delay bound before the first retry.
    pub initial_backoff: Duration,
    /// The largest delay bound.
    pub max_backoff: Duration,
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig { max_retries: 4, initial_backoff: Duration::from_millis(200), max_backoff: Duration::from_millis(3_200) }
    }
}

impl RetryConfig {
    /// The delay before retry `n` (1-based), given a uniform draw `u` in [0, 1).
    pub fn backoff(&self, n: u32, u: f64) -> Duration {
        let bound = self.initial_backoff.saturating_mul(1u32 << (n.saturating_sub(1)).min(16)).min(self.max_backoff);
        bound.mul_f64(0.5 + 0.5 * u.clamp(0.0, 1.0))
    }
}

/// Counts of what S3 answered since they were last taken.
#[derive(Debug, Default)]
struct Counts {
    successes: AtomicU64,
    throttles: AtomicU64,
}

/// An [`ObjectStore`] that paces, retries throttled requests and counts answers (see the module
/// documentation). Cheap to share: clones see the same pacer and counts.
#[derive(Clone)]
pub struct PacedStore {
    inner: Arc<dyn ObjectStore>,
    pacer: Arc<Pacer>,
    retry: RetryConfig,
    counts: Arc<Counts>,
}

impl PacedStore {
    /// A wrapper with pacing off (an unlimited rate) and the default retry policy.
    pub fn new(inner: Arc<dyn ObjectStore>) -> Self {
        Self::with_retry(inner, RetryConfig::default())
    }

    /// A wrapper with pacing off and the given retry policy.
    pub fn with_retry(inner: Arc<dyn ObjectStore>, retry: RetryConfig) -> Self {
        PacedStore { inner, pacer: Arc::new(Pacer::new(f64::INFINITY)), retry, counts: Arc::default() }
    }

    /// Sets the pace for the requests not yet started (`f64::INFINITY` turns pacing off).
    pub fn set_rate(&self, rate_rps: f64) {
        self.pacer.set_rate(rate_rps);
    }

    /// What S3 answered since the last call: requests that succeeded and attempts it throttled.
    pub fn take_observation(&self) -> Observation {
        Observation {
            successes: self.counts.successes.swap(0, Ordering::Relaxed),
            throttles: self.counts.throttles.swap(0, Ordering::Relaxed),
        }
    }

    /// Sends one request through the pacer, retrying it while S3 throttles it.
    async fn send<T, F, Fut>(&self, request: F) -> Result<T>
    where
        F: Fn() -> Fut + Send,
        Fut: Future<Output = Result<T>> + Send,
        T: Send,
    {
        let mut retries = 0;
        loop {
            self.pacer.wait().await;
            match request().await {
                Ok(v) => {
                    self.counts.successes.fetch_add(1, Ordering::Relaxed);
                    return Ok(v);
                }
                Err(e @ Error::Throttled { .. }) => {
                    self.counts.throttles.fetch_add(1, Ordering::Relaxed);
                    if retries >= self.retry.max_retries {
                        return Err(e);
                    }
                    retries += 1;
                    let u: f64 = rand::thread_rng().gen();
                    tokio::time::sleep(self.retry.backoff(retries, u)).await;
                }
                Err(e) => return Err(e),
            }
        }
    }
}

#[async_trait]
impl ObjectStore for PacedStore {
    async fn bucket_exists(&self, bucket: &str) -> Result<bool> {
        self.send(|| self.inner.bucket_exists(bucket)).await
    }
    async fn create_bucket(&self, bucket: &str) -> Result<()> {
        self.send(|| self.inner.create_bucket(bucket)).await
    }
    async fn list(&self, bucket: &str, req: ListRequest<'_>) -> Result<ListPage> {
        self.send(|| self.inner.list(bucket, req.clone())).await
    }
    async fn head(&self, bucket: &str, key: &str, version_id: Option<&str>) -> Result<Option<ObjectInfo>> {
        self.send(|| self.inner.head(bucket, key, version_id)).await
    }
    async fn get(&self, bucket: &str, key: &str, version_id: Option<&str>, if_match: Option<&str>) -> Result<Fetch<(ObjectInfo, Bytes)>> {
        self.send(|| self.inner.get(bucket, key, version_id, if_match)).await
    }
    async fn get_range(&self, bucket: &str, key: &str, version_id: Option<&str>, offset: u64, len: u64) -> Result<Bytes> {
        self.send(|| self.inner.get_range(bucket, key, version_id, offset, len)).await
    }
    async fn put(&self, bucket: &str, key: &str, body: Bytes, opts: &PutOptions) -> Result<Written> {
        self.send(|| self.inner.put(bucket, key, body.clone(), opts)).await
    }
    async fn copy(&self, src: &ObjectRef, if_match: Option<&str>, bucket: &str, key: &str) -> Result<Fetch<Written>> {
        self.send(|| self.inner.copy(src, if_match, bucket, key)).await
    }
    async fn create_multipart(&self, bucket: &str, key: &str, opts: &PutOptions) -> Result<String> {
        self.send(|| self.inner.create_multipart(bucket, key, opts)).await
    }
    async fn upload_part(&self, bucket: &str, key: &str, upload_id: &str, part_number: i32, body: Bytes) -> Result<String> {
        self.send(|| self.inner.upload_part(bucket, key, upload_id, part_number, body.clone())).await
    }
    async fn upload_part_copy(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        part_number: i32,
        src: &ObjectRef,
        if_match: Option<&str>,
        first: u64,
        last: u64,
    ) -> Result<Fetch<String>> {
        self.send(|| self.inner.upload_part_copy(bucket, key, upload_id, part_number, src, if_match, first, last)).await
    }
    async fn complete_multipart(&self, bucket: &str, key: &str, upload_id: &str, parts: &[(i32, String)]) -> Result<Written> {
        self.send(|| self.inner.complete_multipart(bucket, key, upload_id, parts)).await
    }
    async fn abort_multipart(&self, bucket: &str, key: &str, upload_id: &str) -> Result<()> {
        self.send(|| self.inner.abort_multipart(bucket, key, upload_id)).await
    }
    async fn delete(&self, bucket: &str, key: &str) -> Result<()> {
        self.send(|| self.inner.delete(bucket, key)).await
    }
    async fn delete_many(&self, bucket: &str, keys: &[String]) -> Result<Vec<(String, String)>> {
        self.send(|| self.inner.delete_many(bucket, keys)).await
    }
    async fn list_versions(&self, bucket: &str, req: VersionListRequest<'_>) -> Result<VersionPage> {
        self.send(|| self.inner.list_versions(bucket, req.clone())).await
    }
    async fn get_tags(
        &self,
        bucket: &str,
        key: &str,
        version_id: Option<&str>,
    ) -> Result<Option<std::collections::BTreeMap<String, String>>> {
        self.send(|| self.inner.get_tags(bucket, key, version_id)).await
    }
    async fn get_acl(&self, bucket: &str, key: &str, version_id: Option<&str>) -> Result<Option<Acl>> {
        self.send(|| self.inner.get_acl(bucket, key, version_id)).await
    }
    async fn acls_enabled(&self, bucket: &str) -> Result<bool> {
        self.send(|| self.inner.acls_enabled(bucket)).await
    }
    async fn event_notifications_enabled(&self, bucket: &str) -> Result<bool> {
        // A bucket-level read: S3 does not count it against any prefix.
        self.inner.event_notifications_enabled(bucket).await
    }
    async fn copy_with(
        &self,
        src: &ObjectRef,
        if_match: Option<&str>,
        bucket: &str,
        key: &str,
        opts: &PutOptions,
    ) -> Result<Fetch<Written>> {
        self.send(|| self.inner.copy_with(src, if_match, bucket, key, opts)).await
    }
    async fn delete_version(&self, bucket: &str, key: &str, version_id: &str) -> Result<()> {
        self.send(|| self.inner.delete_version(bucket, key, version_id)).await
    }
    async fn restore_archived(&self, bucket: &str, key: &str, version_id: Option<&str>, days: u32) -> Result<()> {
        self.send(|| self.inner.restore_archived(bucket, key, version_id, days)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_its_bound_and_keeps_the_upper_half() {
        let r = RetryConfig::default();
        assert_eq!(r.backoff(1, 0.0), Duration::from_millis(100));
        assert_eq!(r.backoff(1, 1.0), Duration::from_millis(200));
        assert_eq!(r.backoff(3, 1.0), Duration::from_millis(800));
        assert_eq!(r.backoff(9, 1.0), Duration::from_millis(3_200), "capped at max_backoff");
        assert_eq!(r.backoff(40, 0.0), Duration::from_millis(1_600), "no overflow far out");
    }
}
