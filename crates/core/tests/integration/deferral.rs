//! The worker under the per-prefix scheduler, on the fakes: a task whose prefix is full of other
//! workers' claims is deferred with its cursor unchanged and its lease released; S3 throttles are
//! retried within the batch and reported (the prefix's rate is cut); a batch throttled beyond its
//! retries yields the task.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use tidemark_core::config::EngineConfig;
use tidemark_core::engine::{Engine, QueueUrls};
use tidemark_core::plan::partition::PlanTargets;
use tidemark_core::ports::{ObjectStore, PutOptions, SystemClock};
use tidemark_core::protect::seed::{seed, PlanSource};
use tidemark_core::protect::worker::{process_task, TaskOutcome};
use tidemark_core::protocol::messages::TaskMessage;
use tidemark_core::scheduler::fleet::{load, millis, Pressure};
use tidemark_core::scheduler::{Admission, Observation};
use tidemark_core::{Error, Result};
use tidemark_testkit::fakes::{GetHook, HookedStore, MemControlStore, MemObjectStore, MemQueue};

/// Refuses object reads with `503 SlowDown` while `throttle_gets` lasts.
struct Throttling {
    throttle_gets: AtomicU64,
}

#[async_trait]
impl GetHook for Throttling {
    async fn before_get(&self, _inner: &MemObjectStore, _b: &str, _k: &str) -> Result<()> {
        let left = self.throttle_gets.load(Ordering::SeqCst);
        if left > 0 {
            self.throttle_gets.store(left - 1, Ordering::SeqCst);
            return Err(Error::Throttled { operation: "GetObject".into(), prefix: "hot".into() });
        }
        Ok(())
    }
}

const OBJECTS: usize = 30;

/// An engine on the fakes with the scheduler on, a source of `OBJECTS` objects under `hot/`, and
/// one seeded task.
async fn world() -> anyhow::Result<(Engine, Arc<HookedStore<Throttling>>, TaskMessage)> {
    let s3 = Arc::new(MemObjectStore::new());
    s3.create("src", false);
    s3.create("vault", true);
    for i in 0..OBJECTS {
        s3.put("src", &format!("hot/{i:03}"), Bytes::from(format!("object {i}")), &PutOptions::default()).await?;
    }
    let source = Arc::new(HookedStore { inner: s3.clone(), hook: Throttling { throttle_gets: AtomicU64::new(0) } });
    let mut config = EngineConfig::new("vault");
    config.batch_objects = 10;
    config.concurrency = 4;
    // A backup cap of 2,000 requests per second per prefix, starting at 1,000; each worker asks
    // for 400 (four in flight), so the pace keeps the test fast.
    config.scheduler = Some(EngineConfig::scheduler_for(4_000.0, 0.5));
    config.validate()?;
    let queue = Arc::new(MemQueue::new());
    let engine = Engine {
        source: source.clone(),
        vault: s3,
        control: Arc::new(MemControlStore::new()),
        queue,
        clock: Arc::new(SystemClock),
        keys: Arc::new(tidemark_core::memory::MemKeys::new()),
        config,
        queues: QueueUrls { work: "work".into(), delta: "delta".into(), restore: "restore".into() },
    };
    let seeded = seed(&engine, "src", "", PlanSource::Listing(PlanTargets::default())).await?;
    assert_eq!(seeded.run.task_total(), 1);
    let task_id = engine.control().tasks(&seeded.run.run_id).await?[0].task_id.clone();
    let msg = TaskMessage::new(&seeded.run.run_id, &task_id);
    Ok((engine, source, msg))
}

/// Makes another worker see `hot` ten seconds ago, so that the prefix's curve started then: a
/// throttle within `cut_hold_ms` of a curve's start is part of the same congestion event and
/// would not cut.
async fn seen_long_ago(engine: &Engine) -> anyhow::Result<()> {
    let cfg = engine.config.scheduler.clone().expect("scheduler on");
    let mut p = Pressure::new(engine.control.as_ref(), "vault", "src", cfg, "w0", engine.config.want_rps())?;
    p.report("hot", millis(chrono::Utc::now()) - 10_000, Observation::default()).await?;
    Ok(())
}

#[tokio::test]
async fn a_task_whose_prefix_is_full_of_claims_is_deferred_and_resumes_later() -> anyhow::Result<()> {
    let (engine, _, msg) = world().await?;
    let cfg = engine.config.scheduler.clone().expect("scheduler on");
    let want = engine.config.want_rps();
    let now = millis(chrono::Utc::now());
    assert_eq!(want, 400.0);
    // Three other workers hold all of the 1,000 requests per second `hot` is allowed now.
    let mut others = Vec::new();
    // Their names sort before "me", because claims granted in the same millisecond are ordered
    // by worker id.
    for w in ["a1", "a2", "a3"] {
        let mut p = Pressure::new(engine.control.as_ref(), "vault", "src", cfg.clone(), w, want)?;
        assert!(matches!(p.report("hot", now, Observation::default()).await?, Admission::Go { .. }));
        others.push(p);
    }
    let outcome = process_task(&engine, &msg, "me").await?;
    let state = load(engine.control.as_ref(), "vault", "src", "hot").await?;
    let TaskOutcome::Deferred(delay) = outcome else { panic!("expected a deferral, got {outcome:?}; {state:?}") };
    assert!(delay <= Duration::from_millis(cfg.min_defer_ms), "claims, not the curve, block the prefix: {delay:?}");
    let (_, task) = engine.control().get_task(&msg.run_id, &msg.task_id).await?.expect("task");
    assert_eq!((task.cursor.as_deref(), task.batch, task.done), (None, 0, false), "nothing was captured");
    assert!(task.lease_expires.is_some_and(|e| e <= chrono::Utc::now()), "the lease is released for the next worker");

    // Once one of them finishes, the task runs to the end.
    others[0].release("hot", millis(chrono::Utc::now()), Observation::default()).await?;
    let outcome = process_task(&engine, &msg, "me").await?;
    let TaskOutcome::Finished(counters) = outcome else { panic!("expected the task to finish, got {outcome:?}") };
    assert_eq!(counters.objects, OBJECTS as u64);
    let (_, state) = load(engine.control.as_ref(), "vault", "src", "hot").await?.expect("state");
    assert_eq!(state.claims.get("me").map(|c| c.rate), Some(0.0), "a finished task gives its slice back");
    Ok(())
}

#[tokio::test]
async fn throttles_are_retried_in_the_batch_and_cut_the_prefix() -> anyhow::Result<()> {
    let (engine, source, msg) = world().await?;
    let cfg = engine.config.scheduler.clone().expect("scheduler on");
    // Three refusals: each object is retried within its batch, so the task finishes.
    source.hook.throttle_gets.store(3, Ordering::SeqCst);
    seen_long_ago(&engine).await?;
    let before = millis(chrono::Utc::now());
    let outcome = process_task(&engine, &msg, "me").await?;
    let TaskOutcome::Finished(counters) = outcome else { panic!("expected the task to finish, got {outcome:?}") };
    assert_eq!((counters.objects, counters.failed), (OBJECTS as u64, 0));
    let (_, state) = load(engine.control.as_ref(), "vault", "src", "hot").await?.expect("state");
    assert!(state.epoch.at_ms > before, "the reported throttles cut the rate: {state:?}");
    assert!(state.allowed_rps(&cfg, state.epoch.at_ms) < cfg.cap_rps(), "{state:?}");
    Ok(())
}

#[tokio::test]
async fn a_batch_throttled_beyond_its_retries_yields_the_task() -> anyhow::Result<()> {
    let (engine, source, msg) = world().await?;
    let cfg = engine.config.scheduler.clone().expect("scheduler on");
    source.hook.throttle_gets.store(u64::MAX, Ordering::SeqCst);
    seen_long_ago(&engine).await?;
    let outcome = process_task(&engine, &msg, "me").await?;
    assert_eq!(outcome, TaskOutcome::Deferred(Duration::from_millis(cfg.min_defer_ms)));
    let (_, task) = engine.control().get_task(&msg.run_id, &msg.task_id).await?.expect("task");
    assert_eq!((task.cursor.as_deref(), task.batch, task.done), (None, 0, false), "the batch is redone from the cursor");
    let (_, state) = load(engine.control.as_ref(), "vault", "src", "hot").await?.expect("state");
    assert_eq!(state.claims.get("me").map(|c| c.rate), Some(0.0), "a yielded task holds no claim: {state:?}");
    assert!(state.allowed_rps(&cfg, state.epoch.at_ms) < cfg.cap_rps(), "the throttles cut the rate: {state:?}");
    Ok(())
}
