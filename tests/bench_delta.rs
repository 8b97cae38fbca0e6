//! The delta-path load test (`make bench-delta`): changes at 278 per second against the local stack, event-to-capture latency, RPO, and exact restores.
//!
//! It starts moto on a free loopback port, protects a bucket with the real `tidemark` binary,
//! then runs three things at once for `TIDEMARK_BENCH_DELTA_SECONDS` (default 600):
//!
//! - a generator that puts new objects, overwrites and deletes existing ones across many
//!   prefixes on an open-loop schedule of `TIDEMARK_BENCH_DELTA_RATE` changes per second
//!   (default 278, one million an hour), logging for each change when it was sent and acknowledged;
//! - the delta path in-process, as the Lambda event source mapping would run it: one receiver
//!   pulls batches of 10 from the delta queue and up to `TIDEMARK_BENCH_DELTA_CONSUMERS` batches
//!   are handled at once by `delta::process_batch`; the time each change's capture record was
//!   registered is noted;
//! - a checkpoint every `TIDEMARK_BENCH_DELTA_CHECKPOINT_SECONDS` (default 10) that seals a
//!   recovery point at the watermark (the oldest change not yet handled, minus the late-event
//!   allowance), and a compaction every `TIDEMARK_BENCH_DELTA_COMPACT_SECONDS` (default 120).
//!
//! Afterwards it checks the catalog as of every sealed point against the state the generator
//! knows the source had (a change whose acknowledgement straddles the point's second may count
//! either way), restores a few prefixes as of a few points and compares them object by object,
//! and writes `bench-delta-report.md` and `bench-delta-plot.svg`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use aws_sdk_s3::primitives::ByteStream;
use chrono::{DateTime, SubsecRound, Utc};
use tidemark_aws::admin::{self, ResourceNames};
use tidemark_aws::{AwsClients, ClientOptions, DynamoControlStore, S3Store, SqsQueue};
use tidemark_core::changes::checkpoint::{self, Sealed};
use tidemark_core::changes::delta::{process_batch, DeltaMessage};
use tidemark_core::changes::events::{parse_change, ChangeKind};
use tidemark_core::config::EngineConfig;
use tidemark_core::engine::{Engine, QueueUrls};
use tidemark_core::ports::{ObjectStore, SystemClock};
use tidemark_core::restore::{self, RestoreMode, RestoreRequest};
use tidemark_e2e::tidemark_json;
use tidemark_testkit::harness;

const SOURCE: &str = "bd-source";
const VAULT: &str = "bd-vault";
const PREFIXES: u64 = 32;

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// A small deterministic generator (xorshift64*), so a run can be repeated change for change.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// One change the generator made.
#[derive(Debug, Clone)]
struct Op {
    key: String,
    /// The ETag S3 returned for a put; `None` for a delete.
    etag: Option<String>,
    sent: DateTime<Utc>,
    acked: DateTime<Utc>,
    /// How late the change was sent against its open-loop schedule.
    lag_ms: i64,
}

/// Which keys exist and which have a change in flight (a key is never changed twice at once, so
/// the order of its changes is the order the generator made them).
#[derive(Default)]
struct Keys {
    live: Vec<String>,
    index: HashMap<String, usize>,
    busy: HashSet<String>,
    /// Keys whose change failed: whether it happened is unknown, so they are not compared.
    retired: HashSet<String>,
    next: u64,
}

impl Keys {
    fn add(&mut self, k: String) {
        if !self.index.contains_key(&k) {
            self.index.insert(k.clone(), self.live.len());
            self.live.push(k);
        }
    }
    fn remove(&mut self, k: &str) {
        if let Some(i) = self.index.remove(k) {
            self.live.swap_remove(i);
            if i < self.live.len() {
                let moved = self.live[i].clone();
                self.index.insert(moved, i);
            }
        }
    }
    fn new_key(&mut self, rng: &mut Rng) -> String {
        self.next += 1;
        format!("p{:02}/d{:02}/obj-{:07}.bin", rng.below(PREFIXES), rng.below(8), self.next)
    }
}

fn body(key: &str, n: u64, rng: &mut Rng) -> Vec<u8> {
    let size = 200 + rng.below(1800) as usize;
    let mut b = format!("{key}\n{n}\n").into_bytes();
    while b.len() < size {
        b.push(b'a' + (rng.below(26) as u8));
    }
    b
}

async fn put(s3: &aws_sdk_s3::Client, key: &str, data: Vec<u8>) -> Result<String> {
    let out = s3.put_object().bucket(SOURCE).key(key).body(ByteStream::from(data)).send().await?;
    Ok(out.e_tag().unwrap_or_default().trim_matches('"').to_string())
}

/// The EventBridge event S3 sends for a change, in AWS's documented form (`etag`, a real,
/// increasing sequencer; `deletion-type` on deletes).
fn s3_event_detail(key: &str, etag: Option<&str>, size: usize, sequencer: u64) -> (String, String) {
    let (kind, object, reason) = match etag {
        Some(e) => (
            "Object Created",
            serde_json::json!({"key": key, "size": size, "etag": e, "sequencer": format!("{sequencer:018X}")}),
            "PutObject",
        ),
        None => ("Object Deleted", serde_json::json!({"key": key, "sequencer": format!("{sequencer:018X}")}), "DeleteObject"),
    };
    let mut detail = serde_json::json!({"version": "0", "bucket": {"name": SOURCE}, "object": object,
        "request-id": format!("R{sequencer:015X}"), "requester": "123456789012", "source-ip-address": "127.0.0.1", "reason": reason});
    if etag.is_none() {
        detail["deletion-type"] = "Permanently Deleted".into();
    }
    (kind.to_string(), detail.to_string())
}

/// Forwards S3 events to the event bus the way the source account's rule does in a deployment:
/// up to 10 entries per PutEvents call, a few calls at once.
async fn forward_events(
    events: aws_sdk_eventbridge::Client,
    mut rx: tokio::sync::mpsc::UnboundedReceiver<(String, String, DateTime<Utc>)>,
) -> Result<u64> {
    use aws_sdk_eventbridge::types::PutEventsRequestEntry;
    let sem = Arc::new(tokio::sync::Semaphore::new(8));
    let mut tasks = tokio::task::JoinSet::new();
    let failed = Arc::new(AtomicU64::new(0));
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while batch.len() < 10 {
            match rx.try_recv() {
                Ok(e) => batch.push(e),
                Err(_) => break,
            }
        }
        let entries: Vec<PutEventsRequestEntry> = batch
            .into_iter()
            .map(|(kind, detail, time)| {
                PutEventsRequestEntry::builder()
                    .time(aws_sdk_eventbridge::primitives::DateTime::from_millis(time.timestamp_millis()))
                    .source("aws.s3")
                    .detail_type(kind)
                    .resources(format!("arn:aws:s3:::{SOURCE}"))
                    .detail(detail)
                    .build()
            })
            .collect();
        let permit = sem.clone().acquire_owned().await?;
        let (events, failed) = (events.clone(), failed.clone());
        tasks.spawn(async move {
            let n = entries.len() as u64;
            match events.put_events().set_entries(Some(entries)).send().await {
                Ok(out) => {
                    failed.fetch_add(out.failed_entry_count() as u64, Ordering::Relaxed);
                }
                Err(e) => {
                    eprintln!("put_events: {e}");
                    failed.fetch_add(n, Ordering::Relaxed);
                }
            }
            drop(permit);
        });
        while tasks.try_join_next().is_some() {}
    }
    while tasks.join_next().await.is_some() {}
    Ok(failed.load(Ordering::Relaxed))
}

/// Runs the generator until `deadline`; returns every change it made. With `events`, it also
/// announces each change as S3 would (for a source bucket on a server that sends no events).
async fn generate(
    s3: aws_sdk_s3::Client,
    keys: Arc<Mutex<Keys>>,
    rate: f64,
    seconds: u64,
    seed: u64,
    events: Option<tokio::sync::mpsc::UnboundedSender<(String, String, DateTime<Utc>)>>,
) -> Result<Vec<Op>> {
    let log = Arc::new(Mutex::new(Vec::new()));
    let sem = Arc::new(tokio::sync::Semaphore::new(48));
    let start = Instant::now();
    let mut rng = Rng(seed);
    let mut i: u64 = 0;
    let mut tasks = tokio::task::JoinSet::new();
    let errors = Arc::new(AtomicU64::new(0));
    loop {
        let due = start + Duration::from_secs_f64(i as f64 / rate);
        // Under overload the schedule falls behind; the run still ends on time, and the report
        // shows the rate that was achieved rather than the one asked for.
        if due.duration_since(start).as_secs() >= seconds || start.elapsed().as_secs() >= seconds {
            break;
        }
        tokio::time::sleep_until(due.into()).await;
        let permit = sem.clone().acquire_owned().await?;
        let lag_ms = Instant::now().saturating_duration_since(due).as_millis() as i64;
        let (key, data) = {
            let mut k = keys.lock().unwrap();
            let roll = rng.below(100);
            let pick = |k: &Keys, rng: &mut Rng| -> Option<String> {
                for _ in 0..8 {
                    let c = &k.live[rng.below(k.live.len() as u64) as usize];
                    if !k.busy.contains(c) {
                        return Some(c.clone());
                    }
                }
                None
            };
            let existing = if k.live.len() > 100 && roll >= 50 { pick(&k, &mut rng) } else { None };
            match existing {
                // 30 % overwrites, 20 % deletes, the rest new objects.
                Some(key) if roll < 80 => {
                    let d = body(&key, i, &mut rng);
                    (key, Some(d))
                }
                Some(key) => (key, None),
                None => {
                    let key = k.new_key(&mut rng);
                    let d = body(&key, i, &mut rng);
                    (key, Some(d))
                }
            }
        };
        keys.lock().unwrap().busy.insert(key.clone());
        let (s3, keys, log, errors, events) = (s3.clone(), keys.clone(), log.clone(), errors.clone(), events.clone());
        let sequencer = i;
        tasks.spawn(async move {
            let sent = Utc::now();
            let size = data.as_ref().map_or(0, Vec::len);
            let r = match data {
                Some(d) => put(&s3, &key, d).await.map(Some),
                None => s3.delete_object().bucket(SOURCE).key(&key).send().await.map(|_| None).map_err(anyhow::Error::from),
            };
            let acked = Utc::now();
            if let (Some(tx), Ok(etag)) = (&events, &r) {
                // S3 stamps the event while it handles the request; the acknowledgement is the
                // latest such moment, so the catalog's view and the generator's log agree.
                let (kind, detail) = s3_event_detail(&key, etag.as_deref(), size, sequencer);
                let _ = tx.send((kind, detail, acked));
            }
            let mut k = keys.lock().unwrap();
            k.busy.remove(&key);
            match r {
                Ok(etag) => {
                    match &etag {
                        Some(_) => k.add(key.clone()),
                        None => k.remove(&key),
                    }
                    log.lock().unwrap().push(Op { key, etag, sent, acked, lag_ms });
                }
                Err(e) => {
                    // A failed request may or may not have happened; the key is retired so that
                    // the expected state never depends on it.
                    eprintln!("generator: {key}: {e}");
                    errors.fetch_add(1, Ordering::Relaxed);
                    k.remove(&key);
                    k.busy.insert(key.clone());
                    k.retired.insert(key);
                }
            }
            drop(permit);
        });
        i += 1;
        while tasks.try_join_next().is_some() {}
    }
    while tasks.join_next().await.is_some() {}
    let n = errors.load(Ordering::Relaxed);
    if n > 0 {
        eprintln!("generator: {n} requests failed");
    }
    let out = std::mem::take(&mut *log.lock().unwrap());
    Ok(out)
}

/// What the delta path saw, shared between the receiver, the handlers and the checkpoint.
#[derive(Default)]
struct DeltaState {
    /// (key, ETag) of a put, or (key, "") of a delete with its event second → when its record was registered.
    captured: HashMap<(String, String), Vec<(i64, DateTime<Utc>)>>,
    /// Batches received and not yet handled: id → oldest event time in it.
    inflight: BTreeMap<u64, DateTime<Utc>>,
    /// Start of the latest receive that found the queue (nearly) empty: every change sent before
    /// it has been received.
    caught_up: Option<DateTime<Utc>>,
    /// Oldest event of a batch that failed and went back to the queue (pins the watermark).
    failed_floor: Option<DateTime<Utc>>,
    handled: u64,
    superseded: u64,
    batches: u64,
    batch_errors: u64,
}

impl DeltaState {
    fn watermark(&self, allowance: chrono::Duration) -> Option<DateTime<Utc>> {
        let mut w = self.caught_up?;
        if let Some(t) = self.inflight.values().min() {
            w = w.min(*t);
        }
        if let Some(f) = self.failed_floor {
            w = w.min(f);
        }
        Some(w - allowance)
    }
}

async fn receiver(engine: Engine, state: Arc<Mutex<DeltaState>>, consumers: usize, batch_max: usize, stop: Arc<AtomicBool>) -> Result<()> {
    let sem = Arc::new(tokio::sync::Semaphore::new(consumers));
    let mut tasks = tokio::task::JoinSet::new();
    let mut id = 0u64;
    let mut empty_after_stop = 0;
    loop {
        let permit = sem.clone().acquire_owned().await?;
        let t0 = Utc::now();
        // Like the Lambda event source mapping with a batch size above 10 and a batching window:
        // receive until the batch is full, the queue runs dry or the window closes.
        let window = Instant::now();
        let mut msgs = Vec::new();
        let mut last = 10;
        let mut failed = false;
        while msgs.len() < batch_max && last == 10 && window.elapsed() < Duration::from_secs(1) {
            match engine.queue.receive(&engine.queues.delta, 10, if msgs.is_empty() { 1 } else { 0 }, 120).await {
                Ok(m) => {
                    last = m.len();
                    msgs.extend(m);
                }
                Err(e) => {
                    eprintln!("receive: {e}");
                    failed = true;
                    break;
                }
            }
        }
        if failed && msgs.is_empty() {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        }
        if stop.load(Ordering::SeqCst) && msgs.is_empty() {
            empty_after_stop += 1;
            if empty_after_stop >= 3 {
                break;
            }
        }
        let events: Vec<_> = msgs.iter().filter_map(|m| parse_change(&m.body).ok().flatten()).collect();
        {
            let mut s = state.lock().unwrap();
            if let Some(oldest) = events.iter().map(|e| e.time).min() {
                s.inflight.insert(id, oldest);
            }
            if last < 10 && !failed {
                s.caught_up = Some(s.caught_up.map_or(t0, |c| c.max(t0)));
            }
        }
        if msgs.is_empty() {
            continue;
        }
        let (engine, state, this) = (engine.clone(), state.clone(), id);
        id += 1;
        tasks.spawn(async move {
            let batch: Vec<DeltaMessage> = msgs.iter().map(|m| DeltaMessage { id: m.id.clone(), body: m.body.clone() }).collect();
            let r = process_batch(&engine, &batch).await;
            let now = Utc::now();
            match r {
                Ok(report) => {
                    // Which puts made it into the segment: all of them unless some were superseded.
                    let mut kept: Option<HashSet<(String, String)>> = None;
                    if report.superseded > 0 {
                        if let Some(seg) = &report.segment {
                            if let Ok(recs) =
                                tidemark_core::vault::segment::read(engine.vault.as_ref(), &engine.config.vault_bucket, &seg.key).await
                            {
                                kept = Some(recs.into_iter().map(|r| (r.key, r.etag.unwrap_or_default())).collect());
                            }
                        }
                    }
                    for m in &msgs {
                        if report.failed.iter().any(|(f, _)| f == &m.id) {
                            let _ = engine.queue.change_visibility(&engine.queues.delta, &m.receipt, 0).await;
                        } else {
                            let _ = engine.queue.delete(&engine.queues.delta, &m.receipt).await;
                        }
                    }
                    let mut s = state.lock().unwrap();
                    s.batches += 1;
                    s.superseded += report.superseded;
                    for e in &events {
                        let tag = match e.kind {
                            ChangeKind::Created => e.etag.clone().unwrap_or_default(),
                            ChangeKind::Deleted { .. } => String::new(),
                            // moto follows every put with an `Object Tags Added` event; only
                            // creates and deletes change what the load test compares.
                            ChangeKind::Attributes { .. } | ChangeKind::Restored => continue,
                        };
                        let k = (e.key.clone(), tag);
                        if !tag_is_delete(&k) && kept.as_ref().is_some_and(|kept| !kept.contains(&k)) {
                            continue;
                        }
                        s.handled += 1;
                        s.captured.entry(k).or_default().push((e.time.timestamp(), now));
                    }
                    s.inflight.remove(&this);
                }
                Err(e) => {
                    eprintln!("delta batch failed: {e}");
                    for m in &msgs {
                        let _ = engine.queue.change_visibility(&engine.queues.delta, &m.receipt, 0).await;
                    }
                    let mut s = state.lock().unwrap();
                    s.batch_errors += 1;
                    if let Some(t) = s.inflight.remove(&this) {
                        s.failed_floor = Some(s.failed_floor.map_or(t, |f| f.min(t)));
                    }
                }
            }
            drop(permit);
        });
        while tasks.try_join_next().is_some() {}
    }
    while tasks.join_next().await.is_some() {}
    Ok(())
}

fn tag_is_delete(k: &(String, String)) -> bool {
    k.1.is_empty()
}

/// A sealed point and when it was sealed.
#[derive(Debug, Clone)]
struct PointRec {
    time: DateTime<Utc>,
    sealed_at: DateTime<Utc>,
    /// Segments the point lists (unknown for the point `protect` sealed).
    segments: Option<usize>,
}

async fn seal_now(engine: &Engine, state: &Mutex<DeltaState>, allowance: chrono::Duration) -> Result<Option<PointRec>> {
    let Some(w) = state.lock().unwrap().watermark(allowance) else { return Ok(None) };
    let now = Utc::now();
    match checkpoint::seal(engine, SOURCE, w.min(now), now).await? {
        Sealed::New(p) => Ok(Some(PointRec { time: p.time, sealed_at: p.sealed_at, segments: Some(p.segments.len()) })),
        _ => Ok(None),
    }
}

/// The expected state of every key at second `s`: for each key the possible (ETag or absent)
/// values, more than one when a change's acknowledgement straddles the second.
fn expected_at(ops_by_key: &HashMap<String, Vec<Op>>, s: i64) -> HashMap<String, Vec<Option<String>>> {
    let mut out = HashMap::new();
    for (key, ops) in ops_by_key {
        let mut state: Option<String> = None;
        let mut possible: Vec<Option<String>> = Vec::new();
        for op in ops {
            // S3 stamps a change somewhere between sending and acknowledgement, in whole seconds,
            // and a point at second s includes every change stamped at or before s.
            if op.acked.timestamp() <= s {
                state = op.etag.clone();
                possible.clear();
            } else if op.sent.timestamp() <= s {
                if possible.is_empty() {
                    possible.push(state.clone());
                }
                possible.push(op.etag.clone());
            } else {
                break;
            }
        }
        if possible.is_empty() {
            possible.push(state);
        }
        out.insert(key.clone(), possible);
    }
    out
}

/// Compares a catalog state (key → ETag) with the expected one; returns the mismatches and how many keys were ambiguous.
fn compare(
    expected: &HashMap<String, Vec<Option<String>>>,
    got: &HashMap<String, String>,
    retired: &HashSet<String>,
) -> (Vec<String>, u64) {
    let mut bad = Vec::new();
    let mut ambiguous = 0;
    for (k, poss) in expected {
        if retired.contains(k) {
            continue;
        }
        if poss.len() > 1 {
            ambiguous += 1;
        }
        let g = got.get(k).cloned();
        if !poss.contains(&g) {
            bad.push(format!("{k}: expected one of {poss:?}, catalog has {g:?}"));
        }
    }
    for k in got.keys() {
        if !expected.contains_key(k) && !retired.contains(k) {
            bad.push(format!("{k}: unexpected in catalog"));
        }
    }
    (bad, ambiguous)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// A line chart as SVG: one panel, several series of (x seconds, y) points.
fn svg_panel(out: &mut String, y0: f64, title: &str, y_label: &str, series: &[(&str, &str, Vec<(f64, f64)>)], x_max: f64) {
    let (w, h, left, top) = (860.0, 260.0, 70.0, y0 + 30.0);
    let y_max = series.iter().flat_map(|s| s.2.iter().map(|p| p.1)).filter(|v| v.is_finite()).fold(1.0f64, f64::max) * 1.1;
    out.push_str(&format!("<text x=\"{left}\" y=\"{}\" font-size=\"15\" font-weight=\"bold\">{title}</text>\n", y0 + 18.0));
    out.push_str(&format!("<rect x=\"{left}\" y=\"{top}\" width=\"{w}\" height=\"{h}\" fill=\"none\" stroke=\"#888\"/>\n"));
    for i in 0..=4 {
        let v = y_max * i as f64 / 4.0;
        let y = top + h - h * i as f64 / 4.0;
        out.push_str(&format!(
            "<text x=\"{}\" y=\"{:.1}\" font-size=\"11\" text-anchor=\"end\">{:.1}</text><line x1=\"{left}\" x2=\"{}\" y1=\"{y:.1}\" y2=\"{y:.1}\" stroke=\"#eee\"/>\n",
            left - 4.0,
            y + 4.0,
            v,
            left + w
        ));
        let x = left + w * i as f64 / 4.0;
        out.push_str(&format!(
            "<text x=\"{x:.1}\" y=\"{}\" font-size=\"11\" text-anchor=\"middle\">{:.0} s</text>\n",
            top + h + 14.0,
            x_max * i as f64 / 4.0
        ));
    }
    out.push_str(&format!(
        "<text x=\"14\" y=\"{:.1}\" font-size=\"11\" transform=\"rotate(-90 14 {:.1})\" text-anchor=\"middle\">{y_label}</text>\n",
        top + h / 2.0,
        top + h / 2.0
    ));
    for (n, (name, color, pts)) in series.iter().enumerate() {
        let path: Vec<String> = pts
            .iter()
            .filter(|p| p.1.is_finite())
            .map(|(x, y)| format!("{:.1},{:.1}", left + w * x / x_max.max(1.0), top + h - h * y / y_max))
            .collect();
        out.push_str(&format!("<polyline fill=\"none\" stroke=\"{color}\" stroke-width=\"1.5\" points=\"{}\"/>\n", path.join(" ")));
        out.push_str(&format!(
            "<text x=\"{}\" y=\"{}\" font-size=\"12\" fill=\"{color}\">{name}</text>\n",
            left + w - 150.0,
            top + 16.0 + 15.0 * n as f64
        ));
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 4)]
async fn main() -> Result<()> {
    let seconds = env_u64("TIDEMARK_BENCH_DELTA_SECONDS", 600);
    let rate = env_u64("TIDEMARK_BENCH_DELTA_RATE", 278) as f64;
    let checkpoint_s = env_u64("TIDEMARK_BENCH_DELTA_CHECKPOINT_SECONDS", 10);
    let compact_s = env_u64("TIDEMARK_BENCH_DELTA_COMPACT_SECONDS", 120);
    let consumers = env_u64("TIDEMARK_BENCH_DELTA_CONSUMERS", 4) as usize;
    let initial = env_u64("TIDEMARK_BENCH_DELTA_INITIAL", 2000);
    let drain_cap = env_u64("TIDEMARK_BENCH_DELTA_DRAIN_SECONDS", 300);
    let allowance = chrono::Duration::seconds(2);
    let t_total = Instant::now();

    let batch_max = env_u64("TIDEMARK_BENCH_DELTA_BATCH", 100) as usize;
    // `split` (the default): S3 on SeaweedFS, SQS, EventBridge and DynamoDB on moto, and the
    // generator announces its changes on the event bus as the source account's forwarding rule
    // would (SeaweedFS sends no S3 events). `moto`: everything on moto, events sent by moto's S3.
    let split = std::env::var("TIDEMARK_BENCH_DELTA_STACK").map_or(true, |v| v != "moto");
    let moto = harness::start_moto()?;
    let weed = if split { Some(harness::start_seaweedfs()?) } else { None };
    let ep = moto.endpoint.clone();
    let s3_ep = weed.as_ref().map(|w| w.endpoint.clone());
    eprintln!("moto on {ep}; S3 on {}", s3_ep.as_deref().unwrap_or("moto"));
    let mut env: Vec<(&str, String)> = vec![("TIDEMARK_LATE_EVENT_SECONDS", "2".into()), ("TIDEMARK_TARGET_OBJECTS", "1000".into())];
    if let Some(e) = &s3_ep {
        env.push(("AWS_ENDPOINT_URL_S3", e.clone()));
    }
    tidemark_json(&ep, &env, &["init", "--local", "--vault", &format!("s3://{VAULT}"), "--json"])?;
    let clients = AwsClients::load(&ClientOptions { s3_endpoint_url: s3_ep.clone(), ..ClientOptions::local(&ep) }).await;
    let s3 = clients.s3.clone();
    s3.create_bucket().bucket(SOURCE).send().await?;

    // The initial population, seeded by protect rather than captured from events.
    let keys = Arc::new(Mutex::new(Keys::default()));
    let mut rng = Rng(0x5eed_1234_abcd_ef01);
    let mut log: Vec<Op> = Vec::new();
    let mut batch = Vec::new();
    for i in 0..initial {
        let key = keys.lock().unwrap().new_key(&mut rng);
        batch.push((key.clone(), body(&key, i, &mut rng)));
    }
    for chunk in batch.chunks(32) {
        let puts = chunk.iter().map(|(k, d)| {
            let s3 = s3.clone();
            async move {
                let sent = Utc::now();
                let etag = put(&s3, k, d.clone()).await?;
                anyhow::Ok(Op { key: k.clone(), etag: Some(etag), sent, acked: Utc::now(), lag_ms: 0 })
            }
        });
        for op in futures::future::join_all(puts).await {
            let op = op?;
            keys.lock().unwrap().add(op.key.clone());
            log.push(op);
        }
    }
    let (source_url, vault_url) = (format!("s3://{SOURCE}"), format!("s3://{VAULT}"));
    let mut protect = vec!["protect", "--source", &source_url, "--vault", &vault_url, "--workers", "4", "--wait", "--json"];
    if split {
        protect.push("--no-events");
    }
    let p = tidemark_json(&ep, &env, &protect)?;
    eprintln!("protected {} objects; first point {}", p["objects"], p["recovery_point"]);

    let names = ResourceNames::new("tidemark");
    let s3store = Arc::new(S3Store::new(clients.s3.clone()));
    let mut config = EngineConfig::new(VAULT);
    config.concurrency = 8;
    let engine = Engine {
        source: s3store.clone(),
        vault: s3store,
        control: Arc::new(DynamoControlStore::new(clients.dynamodb.clone(), &names.table)),
        queue: Arc::new(SqsQueue::new(clients.sqs.clone())),
        clock: Arc::new(SystemClock),
        config,
        queues: QueueUrls {
            work: admin::queue_url(&clients, &names.work_queue).await?,
            delta: admin::queue_url(&clients, &names.delta_queue).await?,
            ..Default::default()
        },
    };

    if split {
        admin::route_events(&clients, "tidemark", SOURCE, &engine.queues.delta).await?;
    }
    let state = Arc::new(Mutex::new(DeltaState::default()));
    let stop_rx = Arc::new(AtomicBool::new(false));
    let recv = tokio::spawn(receiver(engine.clone(), state.clone(), consumers, batch_max, stop_rx.clone()));
    let points: Arc<Mutex<Vec<PointRec>>> = Arc::new(Mutex::new(Vec::new()));
    if let Some(t) = p["recovery_point"].as_str() {
        let t: DateTime<Utc> = t.parse()?;
        points.lock().unwrap().push(PointRec { time: t, sealed_at: Utc::now(), segments: None });
    }
    let run_start = Utc::now();
    let stop_cp = Arc::new(AtomicBool::new(false));
    let rpo: Arc<Mutex<Vec<(f64, f64, u64)>>> = Arc::new(Mutex::new(Vec::new()));
    let compactions: Arc<Mutex<Vec<String>>> = Arc::new(Mutex::new(Vec::new()));
    let checkpoint = {
        let (engine, state, points, stop, rpo) = (engine.clone(), state.clone(), points.clone(), stop_cp.clone(), rpo.clone());
        tokio::spawn(async move {
            let mut last_cp = Instant::now();
            let (mut ticks, mut depth) = (0u64, 0u64);
            while !stop.load(Ordering::SeqCst) {
                tokio::time::sleep(Duration::from_secs(1)).await;
                if last_cp.elapsed().as_secs() >= checkpoint_s {
                    last_cp = Instant::now();
                    match seal_now(&engine, &state, allowance).await {
                        Ok(Some(p)) => points.lock().unwrap().push(p),
                        Ok(None) => {}
                        Err(e) => eprintln!("checkpoint: {e}"),
                    }
                }
                let now = Utc::now();
                let latest = points.lock().unwrap().last().map(|p| p.time);
                // moto computes the depth by walking the queue, so it is sampled every fifth second.
                ticks += 1;
                if ticks % 5 == 1 {
                    depth = engine.queue.depth(&engine.queues.delta).await.unwrap_or(depth);
                }
                if let Some(l) = latest {
                    let x = (now - run_start).num_milliseconds() as f64 / 1000.0;
                    rpo.lock().unwrap().push((x, (now - l).num_milliseconds() as f64 / 1000.0, depth));
                }
            }
        })
    };
    // Compaction runs beside the checkpoint, not in its loop, so a slow merge never delays a seal.
    let compactor = {
        let (engine, stop, compactions) = (engine.clone(), stop_cp.clone(), compactions.clone());
        tokio::spawn(async move {
            let mut last_compact = Instant::now();
            while !stop.load(Ordering::SeqCst) {
                tokio::time::sleep(Duration::from_secs(1)).await;
                if compact_s > 0 && last_compact.elapsed().as_secs() >= compact_s {
                    last_compact = Instant::now();
                    let t = Instant::now();
                    match tidemark_core::changes::compact::compact(&engine, SOURCE, &Default::default()).await {
                        Ok(r) => compactions.lock().unwrap().push(format!(
                            "at {:.0} s: {} segments merged into {} ({} records), live segments {} → {}, {:.1} s",
                            (Utc::now() - run_start).num_milliseconds() as f64 / 1000.0,
                            r.replaced,
                            r.compacted,
                            r.records_out,
                            r.segments_before,
                            r.segments_after,
                            t.elapsed().as_secs_f64()
                        )),
                        Err(e) => eprintln!("compaction: {e}"),
                    }
                }
            }
        })
    };
    let progress = {
        let (state, stop) = (state.clone(), stop_cp.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::SeqCst) {
                tokio::time::sleep(Duration::from_secs(15)).await;
                let s = state.lock().unwrap();
                eprintln!(
                    "[{:.0} s] handled {} changes in {} batches ({} errors)",
                    (Utc::now() - run_start).num_seconds(),
                    s.handled,
                    s.batches,
                    s.batch_errors
                );
            }
        })
    };

    eprintln!("generating {rate}/s for {seconds} s");
    let gen_start = Instant::now();
    let (tx, forwarder) = if split {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        (Some(tx), Some(tokio::spawn(forward_events(clients.events.clone(), rx))))
    } else {
        (None, None)
    };
    let ops = generate(s3.clone(), keys.clone(), rate, seconds, 0xfeed_beef_0bad_cafe, tx).await?;
    if let Some(f) = forwarder {
        let failed = f.await??;
        if failed > 0 {
            eprintln!("event forwarding: {failed} entries failed");
        }
    }
    let gen_secs = gen_start.elapsed().as_secs_f64();
    let gen_end = Utc::now();
    eprintln!("generator done: {} changes in {gen_secs:.1} s", ops.len());

    // Let the delta path finish the backlog (bounded), then seal a last point.
    let drain_start = Instant::now();
    loop {
        let depth = engine.queue.depth(&engine.queues.delta).await?;
        let inflight = state.lock().unwrap().inflight.len();
        if (depth == 0 && inflight == 0) || drain_start.elapsed().as_secs() > drain_cap {
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let drain_secs = drain_start.elapsed().as_secs_f64();
    let backlog_left = engine.queue.depth(&engine.queues.delta).await?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    if let Some(p) = seal_now(&engine, &state, allowance).await? {
        points.lock().unwrap().push(p);
    }
    stop_cp.store(true, Ordering::SeqCst);
    stop_rx.store(true, Ordering::SeqCst);
    let _ = checkpoint.await;
    let _ = compactor.await;
    let _ = progress.await;
    recv.await??;

    // ---------------------------------------------------------------- analysis
    log.extend(ops.iter().cloned());
    let mut ops_by_key: HashMap<String, Vec<Op>> = HashMap::new();
    for op in &log {
        ops_by_key.entry(op.key.clone()).or_default().push(op.clone());
    }
    for v in ops_by_key.values_mut() {
        v.sort_by_key(|o| o.sent);
    }
    let st = state.lock().unwrap();
    let mut lat: Vec<(f64, f64)> = Vec::new();
    let mut not_captured = 0u64;
    for op in &ops {
        let tag = op.etag.clone().unwrap_or_default();
        let at = st.captured.get(&(op.key.clone(), tag)).and_then(|v| {
            v.iter()
                .filter(|(sec, _)| op.etag.is_some() || (*sec >= op.sent.timestamp() && *sec <= op.acked.timestamp()))
                .map(|x| x.1)
                .min()
        });
        match at {
            Some(t) => {
                lat.push(((op.acked - run_start).num_milliseconds() as f64 / 1000.0, (t - op.acked).num_milliseconds() as f64 / 1000.0))
            }
            None => not_captured += 1,
        }
    }
    let mut all: Vec<f64> = lat.iter().map(|x| x.1).collect();
    all.sort_by(f64::total_cmp);
    let (p50, p99, pmax) = (percentile(&all, 0.5), percentile(&all, 0.99), all.last().copied().unwrap_or(f64::NAN));
    let window = 10.0;
    let mut by_window: BTreeMap<i64, Vec<f64>> = BTreeMap::new();
    for (x, l) in &lat {
        by_window.entry((x / window) as i64).or_default().push(*l);
    }
    let mut p50_series = Vec::new();
    let mut p99_series = Vec::new();
    for (w, v) in by_window.iter_mut() {
        v.sort_by(f64::total_cmp);
        let x = *w as f64 * window + window / 2.0;
        p50_series.push((x, percentile(v, 0.5)));
        p99_series.push((x, percentile(v, 0.99)));
    }
    let rpo = rpo.lock().unwrap().clone();
    let rpo_series: Vec<(f64, f64)> = rpo.iter().map(|r| (r.0, r.1)).collect();
    let mut rpos: Vec<f64> = rpo.iter().filter(|r| r.0 <= gen_secs).map(|r| r.1).collect();
    rpos.sort_by(f64::total_cmp);
    let depth_max = rpo.iter().map(|r| r.2).max().unwrap_or(0);
    let lag_max = ops.iter().map(|o| o.lag_ms).max().unwrap_or(0);
    let puts = ops.iter().filter(|o| o.etag.is_some()).count();
    let deletes = ops.len() - puts;
    let handled_rate = st.handled as f64 / (gen_secs + drain_secs);
    let (superseded, batches, batch_errors) = (st.superseded, st.batches, st.batch_errors);
    drop(st);

    // ---------------------------------------------------------------- verification
    let retired = keys.lock().unwrap().retired.clone();
    let pts = points.lock().unwrap().clone();
    eprintln!("verifying {} sealed points", pts.len());
    let mut verify_lines = Vec::new();
    let mut mismatches_total = 0usize;
    let mut checked = 0usize;
    let step = (pts.len() / 12).max(1);
    let chosen: Vec<&PointRec> = pts.iter().enumerate().filter(|(i, _)| i % step == 0 || *i == pts.len() - 1).map(|(_, p)| p).collect();
    for p in &chosen {
        let t = Instant::now();
        let (_, state_at) = restore::load_state(&engine, SOURCE, "", p.time).await?;
        let got: HashMap<String, String> = state_at.into_iter().map(|(k, r)| (k, r.etag.unwrap_or_default())).collect();
        let exp = expected_at(&ops_by_key, p.time.trunc_subsecs(0).timestamp());
        let (bad, ambiguous) = compare(&exp, &got, &retired);
        mismatches_total += bad.len();
        checked += 1;
        verify_lines.push(format!(
            "| {} | {} | {} | {} | {} | {:.1} |",
            p.time.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            got.len(),
            ambiguous,
            bad.len(),
            bad.first().cloned().unwrap_or_default().replace('|', "/"),
            t.elapsed().as_secs_f64()
        ));
    }
    // Byte-level restores of a few prefixes as of a few points.
    let mut restore_lines = Vec::new();
    let mut restore_mismatches = 0usize;
    let picks: Vec<&PointRec> = {
        let n = pts.len();
        let mut v = vec![&pts[n / 3], &pts[2 * n / 3], &pts[n - 1]];
        v.dedup_by_key(|p| p.time);
        v
    };
    for (i, p) in picks.iter().enumerate() {
        let prefix = format!("p{:02}/", (i * 11) % PREFIXES as usize);
        let target = format!("bd-restore-{i}");
        let t = Instant::now();
        let req = RestoreRequest {
            source_bucket: SOURCE.into(),
            prefix: prefix.clone(),
            as_of: p.time,
            target_bucket: target.clone(),
            target_prefix: prefix.clone(),
            mode: RestoreMode::Copy,
            delete_newer: false,
            dry_run: false,
            target_role_arn: None,
            attributes: Default::default(),
        };
        let target_store: Arc<dyn ObjectStore> = engine.vault.clone();
        let r = tidemark_core::protocol::local::restore_here(&engine, target_store, req, 4).await?;
        let got_etags: HashMap<String, String> = {
            let mut m = HashMap::new();
            let mut pages = s3.list_objects_v2().bucket(&target).into_paginator().send();
            while let Some(page) = pages.next().await {
                for o in page?.contents() {
                    m.insert(o.key().unwrap_or_default().to_string(), o.e_tag().unwrap_or_default().trim_matches('"').to_string());
                }
            }
            m
        };
        let exp: HashMap<String, Vec<Option<String>>> =
            expected_at(&ops_by_key, p.time.trunc_subsecs(0).timestamp()).into_iter().filter(|(k, _)| k.starts_with(&prefix)).collect();
        let (bad, ambiguous) = compare(&exp, &got_etags, &retired);
        restore_mismatches += bad.len();
        restore_lines.push(format!(
            "| {} | `{prefix}` | {} | {} | {} | {} | {} | {:.1} |",
            p.time.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            r.objects,
            r.verified,
            got_etags.len(),
            ambiguous,
            bad.len(),
            t.elapsed().as_secs_f64()
        ));
    }

    // ---------------------------------------------------------------- report
    let x_max = rpo_series.last().map(|p| p.0).unwrap_or(seconds as f64).max(1.0);
    let mut svg = String::from(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"960\" height=\"660\" font-family=\"sans-serif\"><rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n",
    );
    svg_panel(
        &mut svg,
        0.0,
        "Event-to-capture latency (10-s windows by change time)",
        "seconds",
        &[("p50", "#1f77b4", p50_series.clone()), ("p99", "#d62728", p99_series.clone())],
        x_max,
    );
    svg_panel(&mut svg, 320.0, "RPO: now − latest sealed recovery point", "seconds", &[("RPO", "#2ca02c", rpo_series.clone())], x_max);
    svg.push_str("</svg>\n");
    std::fs::write("bench-delta-plot.svg", &svg)?;

    let gen_rate = ops.len() as f64 / gen_secs;
    let mut md = String::new();
    md.push_str("# tidemark delta-path load test\n\n");
    md.push_str(&format!(
        "Run {} on the local stack ({}), {} s of changes at a target of {rate:.0}/s; \
         checkpoint every {checkpoint_s} s (late-event allowance 2 s), compaction every {compact_s} s, \
         {consumers} delta batches of up to {batch_max} handled at once. Reproduce: `make bench-delta` \
         (`TIDEMARK_BENCH_DELTA_SECONDS={seconds}`).\n\n",
        run_start.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        if split {
            "S3 on SeaweedFS; SQS, EventBridge and DynamoDB on moto; each change announced on the event bus as the \
             source account's forwarding rule would, with a real increasing sequencer"
        } else {
            "everything on moto; events sent by moto's S3"
        },
        seconds
    ));
    md.push_str("## Figures\n\n| measure | value |\n|---|---|\n");
    md.push_str(&format!(
        "| changes made | {} ({puts} puts and overwrites, {deletes} deletes) over {} initial objects |\n",
        ops.len(),
        initial
    ));
    md.push_str(&format!(
        "| generator rate achieved | **{gen_rate:.1}/s** (target {rate:.0}/s; worst lag behind schedule {lag_max} ms) |\n"
    ));
    md.push_str(&format!(
        "| delta path rate | {handled_rate:.1} changes/s handled ({} batches, {batch_errors} failed batches) |\n",
        batches
    ));
    md.push_str(&format!(
        "| event-to-capture latency | **p50 {p50:.2} s, p99 {p99:.2} s**, max {pmax:.2} s ({} changes measured) |\n",
        all.len()
    ));
    md.push_str(&format!(
        "| changes without a capture record | {not_captured} ({superseded} puts superseded by a newer write before they could be read, as expected for an unversioned bucket) |\n"
    ));
    md.push_str(&format!(
        "| RPO during the run | p50 {:.1} s, p99 {:.1} s, max {:.1} s |\n",
        percentile(&rpos, 0.5),
        percentile(&rpos, 0.99),
        rpos.last().copied().unwrap_or(f64::NAN)
    ));
    md.push_str(&format!("| delta queue depth | max {depth_max}; {backlog_left} left after {drain_secs:.0} s of draining at the end |\n"));
    md.push_str(&format!("| recovery points sealed | {} |\n", pts.len()));
    md.push_str(&format!("| catalog checked against the source's known state | {checked} points, {mismatches_total} mismatched keys |\n"));
    md.push_str(&format!(
        "| byte-level restores compared | {} prefixes × points, {restore_mismatches} mismatched keys |\n",
        restore_lines.len()
    ));
    md.push_str(&format!("| total wall time | {:.0} s |\n\n", t_total.elapsed().as_secs_f64()));
    md.push_str("![latency and RPO](bench-delta-plot.svg)\n\n");
    md.push_str("## Catalog as of sealed points vs the generator's log\n\nA key counts as ambiguous when one of its changes was sent before and acknowledged after the point's second, so either state is right.\n\n| point | keys | ambiguous | mismatches | first mismatch | s |\n|---|---|---|---|---|---|\n");
    for l in &verify_lines {
        md.push_str(l);
        md.push('\n');
    }
    md.push_str("\n## Restores as of sealed points, compared object by object (ETag = MD5 of the bytes)\n\n| point | prefix | restored | verified | objects in target | ambiguous | mismatches | s |\n|---|---|---|---|---|---|---|---|\n");
    for l in &restore_lines {
        md.push_str(l);
        md.push('\n');
    }
    md.push_str("\n## Compactions during the run\n\n");
    for c in compactions.lock().unwrap().iter() {
        md.push_str(&format!("- {c}\n"));
    }
    md.push_str("\n## Sealed points\n\n| point | sealed at | lag (s) | segments listed |\n|---|---|---|---|\n");
    for p in &pts {
        md.push_str(&format!(
            "| {} | {} | {:.1} | {} |\n",
            p.time.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            p.sealed_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            (p.sealed_at - p.time).num_milliseconds() as f64 / 1000.0,
            p.segments.map(|n| n.to_string()).unwrap_or_else(|| "(sealed by protect)".into())
        ));
    }
    md.push_str(&format!("\nGenerator finished at {}.\n", gen_end.to_rfc3339()));
    std::fs::write("bench-delta-report.md", &md)?;
    println!("{md}");
    if mismatches_total > 0 || restore_mismatches > 0 {
        bail!("{mismatches_total} catalog mismatches and {restore_mismatches} restore mismatches; see bench-delta-report.md");
    }
    drop(moto);
    drop(weed);
    Ok(())
}
