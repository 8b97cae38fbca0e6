//! The fleet-shared scheduler state through the fake control store: several workers' reports
//! merge into one state per prefix, a write that loses a race is retried without double counting,
//! and a worker's cached copy saves reads.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tidemark_core::ports::{ControlStore, Item};
use tidemark_core::scheduler::fleet::{load, Pressure};
use tidemark_core::scheduler::{Admission, ControllerConfig, Observation};
use tidemark_core::Result;
use tidemark_testkit::fakes::MemControlStore;

/// A control store that counts reads and can slip in another worker's write just before the
/// next conditional write, as a concurrent worker on another machine would.
struct RacyStore {
    inner: MemControlStore,
    gets: AtomicU64,
    race_next_replace: AtomicBool,
}

impl RacyStore {
    fn new() -> Self {
        RacyStore { inner: MemControlStore::new(), gets: AtomicU64::new(0), race_next_replace: AtomicBool::new(false) }
    }
}

#[async_trait]
impl ControlStore for RacyStore {
    async fn get(&self, pk: &str, sk: &str) -> Result<Option<Item>> {
        self.gets.fetch_add(1, Ordering::SeqCst);
        self.inner.get(pk, sk).await
    }
    async fn put_new(&self, pk: &str, sk: &str, body: &str, expires_at: Option<i64>) -> Result<bool> {
        self.inner.put_new(pk, sk, body, expires_at).await
    }
    async fn replace(&self, pk: &str, sk: &str, expected_version: u64, body: &str) -> Result<bool> {
        if self.race_next_replace.swap(false, Ordering::SeqCst) {
            // Another worker claims a slice of the same prefix first.
            let mut intruder = Pressure::new(&self.inner, "vault", "src", config(), "intruder", 10.0)?;
            let granted = intruder.report("hot", T0 + 50, Observation::default()).await?;
            assert!(matches!(granted, Admission::Go { .. }), "{granted:?}");
        }
        self.inner.replace(pk, sk, expected_version, body).await
    }
    async fn query(&self, pk: &str, sk_prefix: &str) -> Result<Vec<Item>> {
        self.inner.query(pk, sk_prefix).await
    }
    async fn get_many(&self, pk: &str, sks: &[String]) -> Result<Vec<Item>> {
        self.inner.get_many(pk, sks).await
    }
    async fn put_markers(&self, pk: &str, sks: &[String], body: &str, expires_at: Option<i64>) -> Result<()> {
        self.inner.put_markers(pk, sks, body, expires_at).await
    }
}

const T0: u64 = 1_800_000_000_000;

/// A prefix capped at 100 requests per second for the backup, starting at the cap.
fn config() -> ControllerConfig {
    ControllerConfig { ceiling_rps: 200.0, backup_share: 0.5, initial_rps: 100.0, min_rps: 5.0, ..ControllerConfig::default() }
}

fn rate(a: Admission) -> Option<f64> {
    match a {
        Admission::Go { rate_rps } => Some(rate_rps),
        Admission::Defer(_) => None,
    }
}

#[tokio::test]
async fn reports_of_several_workers_merge_into_one_state() -> anyhow::Result<()> {
    struct Case {
        name: &'static str,
        /// (worker, milliseconds after T0, successes, throttles) in the order they report.
        reports: &'static [(&'static str, u64, u64, u64)],
        /// The rate each report was granted (`None`: deferred).
        granted: &'static [Option<f64>],
        /// The rate the fleet may send after the last report, at its time.
        allowed_after: f64,
    }
    let cases = [
        Case {
            name: "claims fill the prefix in grant order, the fourth worker defers",
            reports: &[("a", 0, 0, 0), ("b", 10, 0, 0), ("c", 20, 0, 0), ("d", 30, 0, 0)],
            // c gets what a and b leave (20, at least a quarter of what it wants); d gets nothing.
            granted: &[Some(40.0), Some(40.0), Some(20.0), None],
            allowed_after: 100.0,
        },
        Case {
            name: "throttles seen by two workers within the hold cut once",
            reports: &[("a", 0, 0, 0), ("b", 10, 0, 0), ("a", 3_000, 90, 2), ("b", 3_000, 90, 3)],
            // The cut is from what the fleet claimed (80) to 0.7 x 80 = 56: a keeps 40, b gets 16.
            granted: &[Some(40.0), Some(40.0), Some(40.0), Some(16.0)],
            allowed_after: 56.0,
        },
        Case {
            name: "throttles after the hold cut again",
            reports: &[("a", 0, 0, 0), ("a", 3_000, 50, 1), ("a", 6_000, 50, 1)],
            // 40 claimed -> 28 -> 0.7 x 28 = 19.6.
            granted: &[Some(40.0), Some(28.0), Some(19.6)],
            allowed_after: 19.6,
        },
        Case {
            name: "successes alone never cut",
            reports: &[("a", 0, 0, 0), ("b", 3_000, 500, 0), ("a", 6_000, 500, 0)],
            granted: &[Some(40.0), Some(40.0), Some(40.0)],
            allowed_after: 100.0,
        },
    ];
    for case in cases {
        let store = MemControlStore::new();
        let mut workers: Vec<(&str, Pressure<'_>)> = Vec::new();
        for (i, &(worker, at, successes, throttles)) in case.reports.iter().enumerate() {
            if !workers.iter().any(|(w, _)| *w == worker) {
                workers.push((worker, Pressure::new(&store, "vault", "src", config(), worker, 40.0)?));
            }
            let p = &mut workers.iter_mut().find(|(w, _)| *w == worker).expect("added").1;
            let got = rate(p.report("hot", T0 + at, Observation { successes, throttles }).await?);
            let want = case.granted[i];
            let close = match (got, want) {
                (Some(g), Some(w)) => (g - w).abs() < 1e-6,
                (None, None) => true,
                _ => false,
            };
            assert!(close, "{}: report {i} by {worker}: granted {got:?}, expected {want:?}", case.name);
        }
        let (_, stored) = load(&store, "vault", "src", "hot").await?.expect("written");
        let last = case.reports.last().expect("cases have reports").1;
        let allowed = stored.allowed_rps(&config(), T0 + last);
        assert!((allowed - case.allowed_after).abs() < 1e-6, "{}: allowed {allowed}, expected {}", case.name, case.allowed_after);
    }
    Ok(())
}

#[tokio::test]
async fn a_write_that_loses_a_race_is_retried_on_the_fresh_copy() -> anyhow::Result<()> {
    let store = RacyStore::new();
    let mut a = Pressure::new(&store, "vault", "src", config(), "a", 40.0)?;
    assert_eq!(rate(a.report("hot", T0, Observation::default()).await?), Some(40.0));
    // a's next write finds that the intruder wrote in between; a re-reads, re-applies its throttle
    // report on the intruder's copy, and both claims survive.
    store.race_next_replace.store(true, Ordering::SeqCst);
    let granted = a.report("hot", T0 + 3_000, Observation { successes: 10, throttles: 1 }).await?;
    assert_eq!(a.conflicts, 1);
    let (_, stored) = load(&store.inner, "vault", "src", "hot").await?.expect("written");
    assert!(stored.claims.contains_key("a") && stored.claims.contains_key("intruder"), "{stored:?}");
    // One cut only, from the 50 claimed by both workers: 0.7 x 50 = 35; a's earlier claim keeps 35.
    assert!((stored.allowed_rps(&config(), T0 + 3_000) - 35.0).abs() < 1e-6, "{stored:?}");
    assert_eq!(rate(granted), Some(35.0));
    Ok(())
}

#[tokio::test]
async fn a_fresh_cached_copy_is_written_without_a_read() -> anyhow::Result<()> {
    let store = Arc::new(RacyStore::new());
    let mut a = Pressure::new(store.as_ref(), "vault", "src", config(), "a", 40.0)?;
    a.report("hot", T0, Observation::default()).await?;
    let reads = store.gets.load(Ordering::SeqCst);
    a.report("hot", T0 + 100, Observation { successes: 5, throttles: 0 }).await?;
    assert_eq!(store.gets.load(Ordering::SeqCst), reads, "the copy written a moment ago is trusted");
    tokio::time::sleep(tidemark_core::scheduler::fleet::CACHE_TTL + Duration::from_millis(50)).await;
    a.report("hot", T0 + 2_000, Observation { successes: 5, throttles: 0 }).await?;
    assert_eq!(store.gets.load(Ordering::SeqCst), reads + 1, "an old copy is read again");
    // Releasing leaves the prefix free for others.
    a.release("hot", T0 + 2_100, Observation::default()).await?;
    let (_, stored) = load(&store.inner, "vault", "src", "hot").await?.expect("written");
    assert_eq!(stored.claimed_rps(T0 + 2_100), 0.0);
    Ok(())
}
