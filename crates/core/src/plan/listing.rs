//! The listing planner: partitions of a bucket (or prefix) that has no S3 Inventory report,
//! from parallel ListObjectsV2 calls, in memory bounded whatever the bucket's size.
//!
//! A prefix is listed from its first page. If that page is the whole prefix (no continuation
//! token), its keys are one listed range. If the page is full, the prefix is large: rather than
//! follow one sequential chain of pages, the planner lists the prefix again with the delimiter
//! `/`, and lists each sub-prefix it finds the same way, in parallel (at most
//! `concurrency` requests in flight), recursively, so that parallelism follows the data. The
//! objects directly at a split level (not under a sub-prefix) are a listed range of their own.
//!
//! Summaries are built in key order: a split level merges its direct objects and its
//! sub-prefixes' results (listed in parallel, consumed in order) into one bounded summary
//! ([`StreamSampler`], the sampling of an inventory data file's summary) instead of a list of
//! keys, and the prefix's summary is merged into partitions with `inventory::merge_samples`, as
//! a report's summaries are. A sub-prefix whose first page is the whole of it hands that page up;
//! a split sub-prefix hands up its own summary. Because every summary is fed in key order, its
//! runs never reach across keys it has not seen, and when no summary had to re-cut (at most
//! `range_samples` keys under each split sub-prefix, at most `total_samples` in all) the plan is
//! exactly the plan of the whole sorted listing, whatever order the requests finished in. Beyond
//! that, object and byte counts are estimates (within about one run of the summary at each cut);
//! partition bounds are always real keys (or the ends of the key space) and contiguous, so they
//! cover the bucket exactly. Workers list their range, so an estimate affects balance, never what
//! is captured.
//!
//! Memory: the prefix's summary holds at most `total_samples + 1` samples, each split sub-prefix
//! still being listed at most `range_samples + 1`, and each level holds one delimiter page and
//! the results of at most `concurrency` of its sub-prefixes at once; nothing grows with the
//! number of keys. What does grow is the number of split levels open at once in a deep, wide
//! tree of large prefixes (at most `concurrency` per open level).

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use futures::future::BoxFuture;
use futures::stream::{self, StreamExt};
use futures::FutureExt;
use serde::Serialize;
use tokio::sync::Semaphore;

use crate::domain::ObjectInfo;
use crate::plan::inventory::{merge_samples, Sample, StreamSampler, TOTAL_SAMPLES};
use crate::plan::partition::{Partition, PlanTargets};
use crate::ports::{ListPage, ListRequest, ObjectStore};
use crate::{Error, Result};

/// Samples the summary of a split sub-prefix holds at most by default: a sixteenth of the whole
/// prefix's, so that one huge sub-prefix (`logs/` holding most of a bucket) is still cut finely
/// (about 32,000 runs), and sixteen of them listed at once hold no more than the whole plan.
pub const RANGE_SAMPLES: usize = TOTAL_SAMPLES / 16;

/// How to list.
#[derive(Debug, Clone)]
pub struct ListingOptions {
    /// List requests in flight at once.
    pub concurrency: usize,
    /// Keys per page (`max-keys`); `None` for the server's default (1,000 on S3). A prefix whose
    /// first page is full is split.
    pub page_keys: Option<i32>,
    /// Samples the summary of a split sub-prefix holds at most.
    pub range_samples: usize,
    /// Samples the summary of the whole prefix holds at most.
    pub total_samples: usize,
}

impl ListingOptions {
    /// The default bounds, with `concurrency` requests in flight.
    pub fn new(concurrency: usize) -> Self {
        ListingOptions { concurrency: concurrency.max(1), page_keys: None, range_samples: RANGE_SAMPLES, total_samples: TOTAL_SAMPLES }
    }
}

/// What a listing plan did, for logs and tests.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct ListingStats {
    /// ListObjectsV2 calls made.
    pub list_calls: u64,
    /// Prefixes found large and split with the delimiter.
    pub split_prefixes: u64,
    /// Objects listed.
    pub objects: u64,
    /// The most samples held at once by all summaries together.
    pub peak_samples: usize,
    /// Samples the plan was merged from.
    pub samples: usize,
}

/// A listing plan: the partitions and what listing them took.
#[derive(Debug, Clone)]
pub struct ListingPlan {
    pub partitions: Vec<Partition>,
    pub stats: ListingStats,
}

/// Lists `bucket` under `prefix` and plans its partitions (see the module documentation).
pub async fn plan(store: &dyn ObjectStore, bucket: &str, prefix: &str, targets: PlanTargets, opts: &ListingOptions) -> Result<ListingPlan> {
    let lister = Lister {
        store,
        bucket,
        opts,
        permits: Semaphore::new(opts.concurrency.max(1)),
        calls: AtomicU64::new(0),
        splits: AtomicU64::new(0),
        objects: AtomicU64::new(0),
        held: AtomicUsize::new(0),
        peak: AtomicUsize::new(0),
    };
    let samples: Vec<Sample> = match lister.range(prefix.to_string(), 0).await? {
        Listed::Page(objects) => objects.into_iter().map(|o| Sample(o.key, 1, o.size)).collect(),
        Listed::Summary(summary) => summary.finish(),
    };
    let stats = ListingStats {
        list_calls: lister.calls.into_inner(),
        split_prefixes: lister.splits.into_inner(),
        objects: lister.objects.into_inner(),
        peak_samples: lister.peak.into_inner().max(samples.len()),
        samples: samples.len(),
    };
    let partitions = merge_samples(samples.iter().collect(), targets)?;
    tracing::info!(bucket, prefix, partitions = partitions.len(), ?stats, "planned by listing");
    Ok(ListingPlan { partitions, stats })
}

/// What listing a prefix gives its parent: its only page, or the summary of a split prefix.
enum Listed {
    Page(Vec<ObjectInfo>),
    Summary(StreamSampler),
}

struct Lister<'a> {
    store: &'a dyn ObjectStore,
    bucket: &'a str,
    opts: &'a ListingOptions,
    /// One permit per request in flight; held only while a request is, so a split level waiting
    /// for its sub-prefixes never starves them.
    permits: Semaphore,
    calls: AtomicU64,
    splits: AtomicU64,
    objects: AtomicU64,
    /// Samples held by every summary now, and the most ever held (the memory measure).
    held: AtomicUsize,
    peak: AtomicUsize,
}

impl Lister<'_> {
    async fn page(&self, prefix: &str, delimiter: Option<&str>, continuation: Option<String>) -> Result<ListPage> {
        let _permit = self.permits.acquire().await.map_err(|e| Error::Invalid(format!("listing stopped: {e}")))?;
        self.calls.fetch_add(1, Ordering::Relaxed);
        let req = ListRequest { prefix, delimiter, continuation, max_keys: self.opts.page_keys, ..Default::default() };
        let page = self.store.list(self.bucket, req).await?;
        self.objects.fetch_add(page.objects.len() as u64, Ordering::Relaxed);
        Ok(page)
    }

    /// Records that a summary went from `before` to `after` samples.
    fn held(&self, before: usize, after: usize) {
        let now = if after >= before {
            self.held.fetch_add(after - before, Ordering::Relaxed) + (after - before)
        } else {
            self.held.fetch_sub(before - after, Ordering::Relaxed) - (before - after)
        };
        self.peak.fetch_max(now, Ordering::Relaxed);
    }

    /// Lists everything under `prefix` (`depth` levels below the planned prefix), splitting it
    /// if its first page is full.
    fn range(&self, prefix: String, depth: usize) -> BoxFuture<'_, Result<Listed>> {
        async move {
            let first = self.page(&prefix, None, None).await?;
            if first.next_token.is_none() {
                return Ok(Listed::Page(first.objects));
            }
            // A full first page: list the level with the delimiter and descend. The first page is
            // not counted (its keys are listed again below), so that every key is counted once.
            self.objects.fetch_sub(first.objects.len() as u64, Ordering::Relaxed);
            self.splits.fetch_add(1, Ordering::Relaxed);
            let bound = if depth == 0 { self.opts.total_samples } else { self.opts.range_samples };
            let mut summary = StreamSampler::new(bound);
            let mut token = None;
            // The samples of this summary that `held` counts.
            let mut counted = 0;
            loop {
                let page = self.page(&prefix, Some("/"), token).await?;
                let mut objects = page.objects.into_iter().peekable();
                let mut children =
                    stream::iter(page.common_prefixes.clone()).map(|p| self.range(p, depth + 1)).buffered(self.opts.concurrency.max(1));
                // Sub-prefixes are listed in parallel but taken in order, between the objects
                // directly at this level, so the summary is fed in key order. An object sorts
                // before a common prefix exactly when it sorts before every key under it.
                for cp in &page.common_prefixes {
                    while let Some(o) = objects.next_if(|o| o.key.as_str() < cp.as_str()) {
                        summary.push(&o.key, 1, o.size);
                    }
                    let child = children.next().await.ok_or_else(|| Error::Invalid(format!("listing of {cp} vanished")))??;
                    match child {
                        Listed::Page(list) => list.iter().for_each(|o| summary.push(&o.key, 1, o.size)),
                        Listed::Summary(sub) => {
                            sub.samples().iter().for_each(|Sample(key, o, b)| summary.push(key, *o, *b));
                            // Both summaries are in memory until the sub-prefix's is dropped.
                            self.held(counted, summary.len());
                            counted = summary.len();
                            self.held(sub.len(), 0);
                        }
                    }
                }
                objects.for_each(|o| summary.push(&o.key, 1, o.size));
                self.held(counted, summary.len());
                counted = summary.len();
                match page.next_token {
                    Some(t) => token = Some(t),
                    None => break,
                }
            }
            Ok(Listed::Summary(summary))
        }
        .boxed()
    }
}
