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
use tidemark_testkit::fakes::{MemControlStore, MemObjectStore, MemQueue};

const SRC: &str = "source-bucket";
const VAULT: &str = "vault-bucket";

/// One change of a script.
#[derive(Debug, Clone)]
enum Change {
    Put(&'static str, &'static str),
    Delete(&'static str),
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
    let mut object = serde_json::json!({"key": key, "sequencer": sequencer});
    if created {
        object["size"] = serde_json::json!(size);
        object["etag"] = serde_json::json!(etag);
    }
    if let Some(v) = version {
        object["version-id"] = serde_json::json!(v);
    }
    let mut detail = serde_json::json!({
        "version": "0",
        "bucket": {"name": SRC},
        "object": object,
        "request-id": format!("N4N7GDK58NMK{n:04X}"),
        "requester": "111122223333",
        "source-ip-address": "203.0.113.15",
        "reason": if created { "PutObject" } else { "DeleteObject" },
    });
    if !created {
        detail["deletion-type"] = serde_json::json!(if version.is_some() { "Delete Marker Created" } else { "Permanently Deleted" });
    }
    serde_json::json!({
        "version": "0",
        "id": format!("17793124-05d4-b198-2fde-{n:012x}"),
        "detail-type": if created { "Object Created" } else { "Object Deleted" },
        "source": "aws.s3",
        "account": "111122223333",
        "time": time.trunc_subsecs(0).to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "region": "us-east-1",
        "resources": [format!("arn:aws:s3:::{SRC}")],
        "detail": detail,
    })
    .to_string()
}

impl World {
    async fn new(versioned: bool) -> World {
        let store = Arc::new(MemObjectStore::new());
        store.create(SRC, versioned);
        store.create(VAULT, true);
        let engine = Engine {
            source: store.clone(),
            vault: store.clone(),
            control: Arc::new(MemControlStore::new()),
            queue: Arc::new(MemQueue::new()),
            clock: Arc::new(SystemClock),
            config: EngineConfig::new(VAULT),
            queues: QueueUrls::default(),
        };
        engine.control().set_protected(SRC, Utc::now()).await.unwrap();
        // The first point opens the recoverable range before any change happens.
        let w = World { engine, store, versioned, seq: 0, truth: Vec::new(), made: Vec::new() };
        w.seal().await;
        w
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
                    let marker = format!("dm{:08}", self.seq);
                    // A versioned bucket's delete creates a marker, named by the event's version id.
                    let version = self.versioned.then_some(marker.as_str());
                    aws_event(false, &spelled(key), 0, "", version, &sequencer, Utc::now(), self.seq)
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
