//! Delta semantics on the in-memory fakes: duplicated, reordered and late S3 events in AWS's documented form give exactly the state ARCHITECTURE.md's point-in-time semantics define.
//!
//! Each case runs a script of changes against a source bucket in phases, one wall-clock second
//! each (S3 and EventBridge times are whole seconds), and builds for every change the
//! EventBridge event AWS documents (`etag`, real version ids, increasing hex sequencers). The
//! events are then delivered to `delta::process_batch` in the case's order — reversed, duplicated,
//! split across batches, a delete before the put it follows, a whole phase arriving late — and
//! the state resolved as of every phase's second must equal what the source held then. The same
//! harness checks URL-encoded keys, reconciliation (a delete marker with no event) and compaction.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use chrono::{DateTime, SubsecRound, Utc};
use tidemark_core::changes::checkpoint::{self, Sealed};
use tidemark_core::changes::compact::{compact, CompactOptions};
use tidemark_core::changes::delta::{process_batch, DeltaMessage};
use tidemark_core::changes::reconcile::{reconcile, ReconcileOptions};
use tidemark_core::config::EngineConfig;
use tidemark_core::engine::{Engine, QueueUrls};
use tidemark_core::ports::{ObjectStore, PutOptions, SystemClock};
use tidemark_core::restore::load_state;
use tidemark_core::vault::point;
use tidemark_testkit::events::S3Event;
use tidemark_testkit::fakes::{MemControlStore, MemObjectStore, MemQueue};

const SRC: &str = "source-bucket";
const VAULT: &str = "vault-bucket";

/// One change of a script.
#[derive(Debug, Clone)]
enum Change {
    Put(&'static str, &'static str),
    /// A delete: a delete marker in a versioned bucket.
    Delete(&'static str),
    /// DeleteObject with the current version's id: the version below becomes current again.
    PurgeCurrent(&'static str),
    /// DeleteObject with the oldest version's id (a non-current version): the current view stays.
    PurgeOldest(&'static str),
    /// DeleteObject with the id of the delete marker on top: the key is back.
    Undelete(&'static str),
}

/// A change as made, with the event EventBridge would deliver for it.
#[derive(Debug, Clone)]
struct Made {
    phase: usize,
    body: String,
}

struct World {
    engine: Engine,
    store: Arc<MemObjectStore>,
    versioned: bool,
    seq: u64,
    /// The source's state (key → ETag) at the end of each phase, and that phase's second.
    truth: Vec<(DateTime<Utc>, BTreeMap<String, String>)>,
    made: Vec<Made>,
}

/// How event keys are spelled: as is (what EventBridge appears to send) or form-URL-encoded
/// (what classic S3 notifications send).
#[derive(Debug, Clone, Copy, PartialEq)]
enum KeyForm {
    Literal,
    FormEncoded,
}

fn form_encode(key: &str) -> String {
    let mut out = String::new();
    for b in key.bytes() {
        match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => out.push(b as char),
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// The EventBridge event AWS documents for an S3 change (`Object Created` / `Object Deleted`).
#[allow(clippy::too_many_arguments)]
fn aws_event(
    created: bool,
    key: &str,
    size: u64,
    etag: &str,
    version: Option<&str>,
    sequencer: &str,
    time: DateTime<Utc>,
    n: u64,
) -> String {
    let deletion = if version.is_some() { "Delete Marker Created" } else { "Permanently Deleted" };
    aws_event_of(created, deletion, key, size, etag, version, sequencer, time, n)
}

/// [`aws_event`] with the deletion type given (`Permanently Deleted` of one version, too).
#[allow(clippy::too_many_arguments)]
fn aws_event_of(
    created: bool,
    deletion: &str,
    key: &str,
    size: u64,
    etag: &str,
    version: Option<&str>,
    sequencer: &str,
    time: DateTime<Utc>,
    n: u64,
) -> String {
    let detail_type = if created { "Object Created" } else { "Object Deleted" };
    S3Event {
        size: created.then_some(size),
        etag: created.then_some(etag),
        version_id: version,
        deletion_type: (!created).then_some(deletion),
        sequencer: Some(sequencer),
        n,
        ..S3Event::new(detail_type, SRC, key, time)
    }
    .body()
}

impl World {
    async fn new(versioned: bool) -> World {
        Self::with(versioned, EngineConfig::new(VAULT), true).await
    }

    /// A world with `config`; unless `protect` is set, the bucket is protected (and the first
    /// point sealed) only when [`World::protect`] says so, after some history.
    async fn with(versioned: bool, config: EngineConfig, protect: bool) -> World {
        let store = Arc::new(MemObjectStore::new());
        store.create(SRC, versioned);
        store.create(VAULT, true);
        let engine = Engine {
            source: store.clone(),
            vault: store.clone(),
            control: Arc::new(MemControlStore::new()),
            queue: Arc::new(MemQueue::new()),
            clock: Arc::new(SystemClock),
            keys: Arc::new(tidemark_core::memory::MemKeys::new()),
            config,
            queues: QueueUrls::default(),
        };
        let w = World { engine, store, versioned, seq: 0, truth: Vec::new(), made: Vec::new() };
        if protect {
            // The first point opens the recoverable range before any change happens.
            w.protect().await;
        }
        w
    }

    async fn protect(&self) {
        self.engine.control().set_protected(SRC, Utc::now()).await.unwrap();
        self.seal().await;
    }

    /// The version ids of `key`, newest first, with whether each is a delete marker.
    async fn versions(&self, key: &str) -> Vec<(String, bool)> {
        let vs = tidemark_core::ports::key_versions(self.store.as_ref(), SRC, key).await.unwrap();
        vs.into_iter().map(|v| (v.version_id.expect("a versioned bucket"), v.is_delete_marker)).collect()
    }

    /// Deletes one version for good and returns the event AWS documents for it.
    async fn purge(&mut self, key: &str, version: &str, sequencer: &str, spelled: &str) -> String {
        self.store.delete_version(SRC, key, version).await.unwrap();
        aws_event_of(false, "Permanently Deleted", spelled, 0, "", Some(version), sequencer, Utc::now(), self.seq)
    }

    async fn seal(&self) -> Option<point::RecoveryPoint> {
        // Point times have millisecond resolution; two seals must not share one.
        tokio::time::sleep(std::time::Duration::from_millis(3)).await;
        let now = Utc::now();
        match checkpoint::seal(&self.engine, SRC, now, now).await.unwrap() {
            Sealed::New(p) => Some(p),
            other => panic!("expected a new point, got {other:?}"),
        }
    }

    /// Runs one phase of changes inside one wall-clock second and records the events and the truth.
    async fn phase(&mut self, changes: &[Change], form: KeyForm) {
        let phase = self.truth.len();
        // Start just after a second begins, so every change of the phase shares that second.
        let now = Utc::now();
        let next = now.trunc_subsecs(0) + chrono::Duration::milliseconds(1010);
        tokio::time::sleep((next - now).to_std().unwrap()).await;
        let second = Utc::now().trunc_subsecs(0);
        let spelled = |k: &str| if form == KeyForm::FormEncoded { form_encode(k) } else { k.to_string() };
        for c in changes {
            self.seq += 1;
            // Real sequencers: hex, increasing per key in the order S3 applied the changes.
            let sequencer = format!("0061F0D8C1A5{:06X}", self.seq * 16);
            let body = match c {
                Change::Put(key, content) => {
                    let w = self.store.put(SRC, key, Bytes::from(content.to_string()), &PutOptions::default()).await.unwrap();
                    let info = self.store.head(SRC, key, w.version_id.as_deref()).await.unwrap().unwrap();
                    aws_event(true, &spelled(key), info.size, &w.etag, w.version_id.as_deref(), &sequencer, info.last_modified, self.seq)
                }
                Change::Delete(key) => {
                    self.store.delete(SRC, key).await.unwrap();
                    // A versioned bucket's delete creates a marker, named by the event's version id.
                    let marker = if self.versioned { Some(self.versions(key).await[0].0.clone()) } else { None };
                    aws_event(false, &spelled(key), 0, "", marker.as_deref(), &sequencer, Utc::now(), self.seq)
                }
                Change::PurgeCurrent(key) => {
                    let (id, marker) = self.versions(key).await.first().cloned().expect("a version to delete");
                    assert!(!marker, "the script deletes the current version of {key}, not a marker");
                    self.purge(key, &id, &sequencer, &spelled(key)).await
                }
                Change::PurgeOldest(key) => {
                    let (id, _) = self.versions(key).await.last().cloned().expect("a version to delete");
                    self.purge(key, &id, &sequencer, &spelled(key)).await
                }
                Change::Undelete(key) => {
                    let (id, marker) = self.versions(key).await.first().cloned().expect("a marker to remove");
                    assert!(marker, "the script removes the delete marker on top of {key}");
                    self.purge(key, &id, &sequencer, &spelled(key)).await
                }
            };
            self.made.push(Made { phase, body });
        }
        assert_eq!(Utc::now().trunc_subsecs(0), second, "a phase's changes must share one second; the machine is too slow");
        let state = self.source_state().await;
        self.truth.push((second, state));
    }

    async fn source_state(&self) -> BTreeMap<String, String> {
        let page = self.store.list(SRC, Default::default()).await.unwrap();
        page.objects.into_iter().map(|o| (o.key, o.etag)).collect()
    }

    /// Delivers events (by index into `made`) in batches, as SQS would.
    async fn deliver(&self, batches: &[Vec<usize>]) {
        for (b, batch) in batches.iter().enumerate() {
            let msgs: Vec<DeltaMessage> =
                batch.iter().enumerate().map(|(i, e)| DeltaMessage { id: format!("m{b}-{i}"), body: self.made[*e].body.clone() }).collect();
            let r = process_batch(&self.engine, &msgs).await.unwrap();
            assert!(r.failed.is_empty(), "no message may fail: {:?}", r.failed);
        }
    }

    /// The catalog as of `t` through the latest point, as `tidemark ls` shows it.
    async fn state_at(&self, t: DateTime<Utc>) -> BTreeMap<String, String> {
        let (_, state) = load_state(&self.engine, SRC, "", t).await.unwrap();
        state.into_iter().map(|(k, r)| (k, r.etag.unwrap_or_default())).collect()
    }

    /// The catalog (every live segment) resolved as of `t`, also before the first point.
    async fn catalog_at(&self, t: DateTime<Utc>) -> BTreeMap<String, String> {
        let live = self.engine.control().live_segments(SRC).await.unwrap();
        let keys = live.into_iter().map(|s| s.meta.key).collect();
        let records = tidemark_core::vault::segment::read_many(self.engine.vault.as_ref(), VAULT, keys, 4).await.unwrap();
        let state = tidemark_core::restore::resolve::resolve(records.iter().flatten(), "", t);
        state.into_iter().map(|(k, r)| (k, r.etag.unwrap_or_default())).collect()
    }

    async fn check_every_phase(&self, case: &str) {
        for (p, (second, want)) in self.truth.iter().enumerate() {
            assert_eq!(&self.state_at(*second).await, want, "case '{case}': state as of phase {p} ({second})");
        }
    }
}

/// Delivery orders, from the events in the order S3 made them.
#[derive(Debug, Clone, Copy)]
enum Order {
    InOrderOneBatch,
    ReversedOneEventPerBatch,
    EveryEventTwiceInterleaved,
    Rotated,
    /// Phase 0's events arrive after all the others, in a later batch.
    FirstPhaseLate,
}

fn plan(order: Order, made: &[Made]) -> Vec<Vec<usize>> {
    let n = made.len();
    match order {
        Order::InOrderOneBatch => vec![(0..n).collect()],
        Order::ReversedOneEventPerBatch => (0..n).rev().map(|i| vec![i]).collect(),
        Order::EveryEventTwiceInterleaved => {
            // Duplicates inside one batch and across batches, in a scrambled order.
            let mut all: Vec<usize> = (0..n).chain((0..n).rev()).collect();
            all.rotate_left(n / 2 + 1);
            all.chunks(3).map(|c| c.to_vec()).collect()
        }
        Order::Rotated => {
            let mut all: Vec<usize> = (0..n).collect();
            all.rotate_left(n / 3 + 1);
            all.chunks(2).map(|c| c.to_vec()).collect()
        }
        Order::FirstPhaseLate => {
            let late: Vec<usize> = (0..n).filter(|i| made[*i].phase == 0).collect();
            let rest: Vec<usize> = (0..n).filter(|i| made[*i].phase != 0).rev().collect();
            vec![rest, late]
        }
    }
}

type Script = Vec<Vec<Change>>;

fn scripts() -> Vec<(&'static str, Script)> {
    use Change::*;
    vec![
        (
            "put, overwrite, delete",
            vec![vec![Put("a", "a1"), Put("b", "b1")], vec![Put("a", "a2"), Delete("b")], vec![Delete("a"), Put("c", "c1")]],
        ),
        ("delete then re-create", vec![vec![Put("k", "one")], vec![Delete("k")], vec![Put("k", "three")]]),
        (
            "several changes of one key in one second",
            vec![
                vec![Put("x", "x1"), Put("x", "x2"), Delete("x"), Put("y", "y1")],
                vec![Put("x", "x3"), Delete("y"), Put("y", "y2"), Put("x", "x4")],
            ],
        ),
    ]
}

/// Every script under every delivery order, on a versioned source (each version can be read exactly).
#[tokio::test(flavor = "multi_thread")]
async fn duplicated_reordered_and_late_events_give_exactly_the_design_state() {
    let orders =
        [Order::InOrderOneBatch, Order::ReversedOneEventPerBatch, Order::EveryEventTwiceInterleaved, Order::Rotated, Order::FirstPhaseLate];
    let mut runs = Vec::new();
    for (name, script) in scripts() {
        for order in orders {
            let script = script.clone();
            runs.push(tokio::spawn(async move {
                let mut w = World::new(true).await;
                for phase in &script {
                    w.phase(phase, KeyForm::Literal).await;
                }
                let batches = plan(order, &w.made);
                if let Order::FirstPhaseLate = order {
                    // A point sealed before the late events arrive is never rewritten by them.
                    let (first, late) = (&batches[..1], &batches[1..]);
                    w.deliver(first).await;
                    let early = w.seal().await.unwrap();
                    w.deliver(late).await;
                    w.seal().await.unwrap();
                    let reread =
                        point::read_point(w.engine.vault.as_ref(), VAULT, &tidemark_core::vault::point_key(SRC, early.time)).await.unwrap();
                    assert_eq!(reread, early, "case '{name}' {order:?}: the earlier point is immutable");
                } else {
                    w.deliver(&batches).await;
                    w.seal().await.unwrap();
                }
                w.check_every_phase(&format!("{name} / {order:?}")).await;
            }));
        }
    }
    for r in runs {
        r.await.unwrap();
    }
}

/// Every versioned case the version stack knows: each script, under every delivery order (each
/// phase reversed and twice, deletions late and reversed, deletions before puts, and everything
/// again at the end, scrambled), gives exactly the current view the bucket showed after each phase.
#[tokio::test(flavor = "multi_thread")]
async fn versioned_cases_give_the_current_view_at_every_time() {
    use Change::*;
    let scripts: Vec<(&str, Script)> = vec![
        ("overwrite", vec![vec![Put("a", "a1")], vec![Put("a", "a2")], vec![Put("a", "a3"), Put("b", "b1")]]),
        ("delete marker", vec![vec![Put("a", "a1"), Put("b", "b1")], vec![Delete("a")], vec![Put("b", "b2")]]),
        (
            "permanent delete of the current version",
            vec![vec![Put("a", "a1")], vec![Put("a", "a2")], vec![PurgeCurrent("a")], vec![PurgeCurrent("a")]],
        ),
        (
            "permanent delete of a non-current version",
            vec![vec![Put("a", "a1"), Put("b", "b1")], vec![Put("a", "a2")], vec![PurgeOldest("a")], vec![PurgeCurrent("a")]],
        ),
        (
            "removal of a delete marker",
            vec![vec![Put("a", "a1")], vec![Delete("a")], vec![Undelete("a")], vec![Delete("a")], vec![Undelete("a")]],
        ),
        ("re-creation", vec![vec![Put("a", "a1")], vec![Delete("a")], vec![Put("a", "a3")], vec![PurgeCurrent("a")]]),
    ];
    // A version's bytes can be captured only while the version exists, so every put is delivered
    // within its phase (as events arrive within seconds); the deletions, which carry everything
    // they say, are also delivered late, reversed and twice, and everything is delivered again
    // at the end in a scrambled order.
    let orders = ["phase by phase", "each phase reversed and twice", "deletions late and reversed", "deletions before puts"];
    let mut runs = Vec::new();
    for (name, script) in scripts {
        for order in orders {
            let script = script.clone();
            runs.push(tokio::spawn(async move {
                let mut w = World::new(true).await;
                let mut late = Vec::new();
                for phase in &script {
                    let first = w.made.len();
                    w.phase(phase, KeyForm::Literal).await;
                    let ids: Vec<usize> = (first..w.made.len()).collect();
                    let (dels, puts): (Vec<usize>, Vec<usize>) = ids.iter().partition(|i| w.made[**i].body.contains("Object Deleted"));
                    let batches: Vec<Vec<usize>> = match order {
                        "phase by phase" => vec![ids.clone()],
                        "each phase reversed and twice" => ids.iter().rev().chain(ids.iter().rev()).map(|i| vec![*i]).collect(),
                        "deletions late and reversed" => {
                            late.extend(dels.iter().copied());
                            vec![puts.clone()]
                        }
                        _ => vec![dels.clone(), puts.clone()],
                    };
                    w.deliver(&batches).await;
                }
                late.reverse();
                w.deliver(&[late.clone(), late]).await;
                let mut all: Vec<usize> = (0..w.made.len()).rev().collect();
                all.rotate_left(w.made.len() / 2);
                w.deliver(&all.chunks(3).map(|c| c.to_vec()).collect::<Vec<_>>()).await;
                w.seal().await.unwrap();
                w.check_every_phase(&format!("{name} / {order}")).await;
            }));
        }
    }
    for r in runs {
        r.await.unwrap();
    }
}

/// A version deleted for good before its event could be handled cannot be captured: its key is
/// reported unprotected from the version's creation until the delete, and known again after it.
#[tokio::test(flavor = "multi_thread")]
async fn a_version_deleted_before_its_capture_is_unprotected_until_the_delete() {
    use Change::*;
    let mut w = World::new(true).await;
    w.phase(&[Put("a", "a1")], KeyForm::Literal).await;
    w.deliver(&[vec![0]]).await;
    w.phase(&[Put("a", "a2")], KeyForm::Literal).await;
    w.phase(&[PurgeCurrent("a")], KeyForm::Literal).await;
    // a2's event arrives only now, after a2 is gone.
    w.deliver(&[vec![2, 1]]).await;
    let p = w.seal().await.unwrap();
    assert_eq!(p.unprotected.len(), 1, "{:?}", p.unprotected);
    let u = &p.unprotected[0];
    assert_eq!(u.key, "a");
    assert!(u.covers(w.truth[1].0) && !u.covers(w.truth[0].0) && !u.covers(w.truth[2].0), "{u:?}");
    assert_eq!(w.state_at(w.truth[2].0).await, w.truth[2].1, "a1 is current again after the delete");
    assert_eq!(w.state_at(w.truth[0].0).await, w.truth[0].1);
}

/// A versioned bucket with history before protection: seeded with every version
/// (`all_versions`), every earlier state resolves too; seeded with current versions only, a
/// permanent delete or a removed delete marker after protection captures the older version it
/// makes current, at its own time. Either way every state from the seed on is exact.
#[tokio::test(flavor = "multi_thread")]
async fn history_before_protection_then_permanent_deletes_and_undeletes() {
    use Change::*;
    for all_versions in [true, false] {
        let mut config = EngineConfig::new(VAULT);
        config.all_versions = all_versions;
        config.batch_objects = 2;
        let mut w = World::with(true, config, false).await;
        w.phase(&[Put("a", "a1"), Put("b", "b1"), Put("c", "c1"), Put("d", "d1")], KeyForm::Literal).await;
        w.phase(&[Put("a", "a2"), Delete("b"), Put("c", "c2"), Delete("d")], KeyForm::Literal).await;
        // Before protection: no event of these is ever delivered.
        let history = w.made.len();
        tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
        w.protect().await;
        let seeded =
            tidemark_core::protect::seed::seed(&w.engine, SRC, "", tidemark_core::protect::seed::PlanSource::Listing(Default::default()))
                .await
                .unwrap();
        assert_eq!(seeded.run.all_versions, all_versions);
        loop {
            let msgs = w.engine.queue.receive("", 10, 0, 30).await.unwrap();
            if msgs.is_empty() {
                break;
            }
            for m in msgs {
                let d = tidemark_core::protocol::dispatch::dispatch(&w.engine, &m.id, &m.body, "test").await;
                assert!(matches!(d, tidemark_core::protocol::dispatch::Disposition::Done), "{d:?}");
                w.engine.queue.delete("", &m.receipt).await.unwrap();
            }
        }
        w.phase(&[PurgeCurrent("a"), Undelete("b"), PurgeOldest("c"), Put("e", "e1")], KeyForm::Literal).await;
        w.phase(&[Undelete("d"), PurgeCurrent("c")], KeyForm::Literal).await;
        let after: Vec<usize> = (history..w.made.len()).rev().collect();
        w.deliver(&[after.clone(), after]).await;
        w.seal().await.unwrap();
        // Seeded with every version, the catalog knows the history before the first point too.
        let from = if all_versions { 0 } else { 1 };
        for (p, (second, want)) in w.truth.iter().enumerate().skip(from) {
            assert_eq!(&w.catalog_at(*second).await, want, "all_versions={all_versions}: state as of phase {p}");
        }
        for (p, (second, want)) in w.truth.iter().enumerate().skip(2) {
            assert_eq!(&w.state_at(*second).await, want, "all_versions={all_versions}: restorable state as of phase {p}");
        }
    }
}

/// The case the issue names: the delete arrives (and is captured) before the put it follows.
#[tokio::test(flavor = "multi_thread")]
async fn a_delete_arriving_before_the_put_it_follows_wins() {
    for versioned in [true, false] {
        let mut w = World::new(versioned).await;
        w.phase(&[Change::Put("report.csv", "v1")], KeyForm::Literal).await;
        w.phase(&[Change::Delete("report.csv")], KeyForm::Literal).await;
        w.deliver(&[vec![1], vec![0], vec![1, 0]]).await;
        w.seal().await.unwrap();
        let after_delete = w.truth[1].0;
        assert!(w.state_at(after_delete).await.is_empty(), "versioned={versioned}: the key is gone after its delete");
        if versioned {
            // The exact version is still readable, so the history before the delete is complete.
            assert_eq!(w.state_at(w.truth[0].0).await, w.truth[0].1);
        }
    }
}

/// Keys with `+`, `%` and spaces survive whether EventBridge sends them literally or form-encoded.
#[tokio::test(flavor = "multi_thread")]
async fn keys_with_plus_percent_and_spaces_survive_both_encodings() {
    const KEYS: [&str; 5] = ["a+b c%.txt", "100%25 done+ok.txt", "plus+only", "dir with space/file name.txt", "x%2By"];
    for form in [KeyForm::Literal, KeyForm::FormEncoded] {
        let mut w = World::new(true).await;
        let puts: Vec<Change> = KEYS.iter().map(|k| Change::Put(k, "content")).collect();
        w.phase(&puts, form).await;
        w.phase(&[Change::Delete(KEYS[0]), Change::Put(KEYS[1], "newer"), Change::Delete(KEYS[4])], form).await;
        let all: Vec<usize> = (0..w.made.len()).rev().collect();
        w.deliver(&[all]).await;
        w.seal().await.unwrap();
        w.check_every_phase(&format!("{form:?} keys")).await;
    }
}

/// Reconciliation finds what the events missed: a delete marker (no event on the local stack), a
/// put and an overwrite whose events were lost. History before the drift stays as it was.
#[tokio::test(flavor = "multi_thread")]
async fn reconciliation_captures_missed_deletes_puts_and_overwrites() {
    let mut w = World::new(true).await;
    w.phase(&[Change::Put("keep", "k"), Change::Put("gone", "g"), Change::Put("changed", "c1")], KeyForm::Literal).await;
    w.deliver(&[vec![0, 1, 2]]).await;
    let before = w.seal().await.unwrap();
    // Changes whose events never arrive.
    w.phase(&[Change::Delete("gone"), Change::Put("missed", "m"), Change::Put("changed", "c2")], KeyForm::Literal).await;
    let drifted = w.seal().await.unwrap();
    assert_ne!(w.state_at(drifted.time).await, w.truth[1].1, "the catalog drifted");
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let r = reconcile(&w.engine, SRC, &ReconcileOptions::default()).await.unwrap();
    assert_eq!((r.missing, r.changed, r.puts, r.deletes), (1, 1, 2, 1), "{r:?}");
    let p = w.seal().await.unwrap();
    assert_eq!(w.state_at(p.time).await, w.source_state().await, "after reconciliation the catalog matches the source");
    assert_eq!(w.state_at(w.truth[0].0).await, w.truth[0].1, "the state before the drift is unchanged");
    assert!(before.time < p.time);
    // A second pass finds nothing more.
    let again = reconcile(&w.engine, SRC, &ReconcileOptions::default()).await.unwrap();
    assert_eq!((again.puts, again.deletes), (0, 0), "{again:?}");
}

/// Compaction merges the small delta segments; every state resolves the same before and after,
/// new points list fewer segments, and the replaced segments stay in the vault for older points.
#[tokio::test(flavor = "multi_thread")]
async fn compaction_keeps_every_state_and_the_old_segments() {
    let mut w = World::new(true).await;
    for (_, script) in scripts() {
        for phase in &script {
            w.phase(phase, KeyForm::Literal).await;
        }
    }
    // One small segment per event, as a quiet bucket's one-event batches make them.
    let n = w.made.len();
    w.deliver(&(0..n).map(|i| vec![i]).collect::<Vec<_>>()).await;
    let p1 = w.seal().await.unwrap();
    let before: Vec<_> = futures_collect(w.truth.iter().map(|(t, _)| w.state_at(*t))).await;
    let r = compact(&w.engine, SRC, &CompactOptions { small_records: 100, max_records: 10_000, min_inputs: 2 }).await.unwrap();
    assert_eq!(r.replaced, p1.segments.len(), "every small delta segment is merged: {r:?}");
    assert_eq!(r.compacted, 1);
    assert_eq!(r.segments_after, 1);
    let p2 = w.seal().await.unwrap();
    assert_eq!(p2.segments.len(), 1, "the new point lists the compacted segment only");
    assert_eq!(p2.segments[0].kind, tidemark_core::vault::segment::SegmentKind::Compacted);
    let after: Vec<_> = futures_collect(w.truth.iter().map(|(t, _)| w.state_at(*t))).await;
    assert_eq!(before, after, "every state resolves identically after compaction");
    w.check_every_phase("after compaction").await;
    for s in &p1.segments {
        assert!(w.store.head(VAULT, &s.key, None).await.unwrap().is_some(), "replaced segment {} is still in the vault", s.key);
    }
    // Compacting again has nothing to merge.
    let r2 = compact(&w.engine, SRC, &CompactOptions::default()).await.unwrap();
    assert_eq!(r2.compacted, 0);
}

async fn futures_collect<F: std::future::Future>(it: impl Iterator<Item = F>) -> Vec<F::Output> {
    let mut out = Vec::new();
    for f in it {
        out.push(f.await);
    }
    out
}
