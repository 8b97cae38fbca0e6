//! The delta-path load test (`make bench-delta`): S3 changes at the reference rate through the real chain, event-to-capture latency, RPO, exactness and restores.
//!
//! By default it starts MiniStack on a free loopback port (`TIDEMARK_BENCH_DELTA_STACK=moto`
//! runs the same test on moto, at 25 changes/s by default, as a cross-check), protects a bucket
//! with the real `tidemark` binary (which turns the bucket's EventBridge notifications on and
//! routes them to the delta queue), and then, for `TIDEMARK_BENCH_DELTA_SECONDS` (600):
//!
//! - **the generator**, a separate process (this binary with `generate`, so that its CPU is its
//!   own and it is never the bottleneck), puts new objects, overwrites and deletes existing ones
//!   over 32 prefixes on an open-loop schedule of `TIDEMARK_BENCH_DELTA_RATE` (278/s, a million
//!   an hour), and logs each change with when it was sent and acknowledged and the SHA-256 of
//!   its bytes. S3 itself announces every change on the event bus. A share of changes is also
//!   delivered again, as copies in AWS's documented form sent to the delta queue as EventBridge
//!   would deliver them: 2 % duplicated (the copy sent twice), 2 % reordered (a key's previous
//!   change delivered after its current one) and 1 % late (30 to 60 s after the change). None of
//!   them may change any state.
//! - **the delta path**, in-process, as the deployed Lambda event source mapping runs it: pollers
//!   receive from the delta queue, batches close at the mapping's batch size or batching window,
//!   and at most the mapping's `MaximumConcurrency` batches are handled at once, each through
//!   `changes::backlog::handle` (what the delta function calls), on a runtime of its own whose
//!   threads' CPU is measured. Batch size, window and concurrency are read from the Terraform
//!   module (`terraform/modules/vault-account`), checked against the CloudFormation template.
//!   Handled messages are deleted ten at a time; failed ones come back after the visibility
//!   timeout, as with the mapping.
//! - **the checkpoint** every `TIDEMARK_BENCH_DELTA_CHECKPOINT_SECONDS` (10), exactly as the
//!   checkpoint function does it (`checkpoint::handlers_evidence`, then `checkpoint::checkpoint`):
//!   the watermark comes from the handlers' records in the control table, never from a queue
//!   metric (MiniStack has none). A compaction runs every
//!   `TIDEMARK_BENCH_DELTA_COMPACT_SECONDS` (120).
//!
//! Afterwards it compares the catalog as of **every** sealed point with the state the generator's
//! log says the source had (a change sent before the end of the point's second and acknowledged
//! after the point may count either way), counts changes lost (a change with no record, unless a
//! newer write replaced the object before its event was handled) and duplicated (one event
//! recorded twice), restores sampled prefixes as of several points and compares them byte by
//! byte, and writes `bench-delta-report.md` with `bench-delta-plot.svg`.
//!
//! `TIDEMARK_BENCH_DELTA_RAMP=300,400,…` instead runs one step per rate
//! (`TIDEMARK_BENCH_DELTA_RAMP_SECONDS`, 120, each) to find the largest rate this machine
//! sustains, into `bench-delta-ramp.md` (and `bench-delta-ramp-plot.svg`). The other knobs:
//! `TIDEMARK_BENCH_DELTA_LATE_SECONDS` (the late-event allowance; default the batching window
//! plus 5 s), `TIDEMARK_BENCH_DELTA_CONSUMERS`, `_BATCH`, `_WINDOW_SECONDS` (override the IaC),
//! `_INITIAL` (20,000 objects seeded first, so that a key is rarely changed twice within seconds), `_DRAIN_SECONDS` (300).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{BufRead, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use aws_sdk_s3::primitives::ByteStream;
use chrono::{DateTime, SubsecRound, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tidemark_aws::admin::{self, ResourceNames};
use tidemark_aws::{AwsClients, ClientOptions, DynamoControlStore, S3Store, SqsQueue};
use tidemark_core::changes::backlog::{self, Received};
use tidemark_core::changes::checkpoint;
use tidemark_core::changes::events::{parse_change, ChangeKind};
use tidemark_core::config::EngineConfig;
use tidemark_core::domain::CaptureKind;
use tidemark_core::engine::{Engine, QueueUrls};
use tidemark_core::ports::{Message, ObjectStore, SystemClock};
use tidemark_core::restore::{self, RestoreMode, RestoreRequest};
use tidemark_core::vault::segment::{self, SegmentKind};
use tidemark_e2e::tidemark_json;
use tidemark_testkit::harness;

const SOURCE: &str = "bd-source";
const VAULT: &str = "bd-vault";
const PREFIXES: u64 = 32;
/// Shares of changes announced again, in percent: duplicated, reordered, late.
const DUPLICATED_PCT: u64 = 2;
const REORDERED_PCT: u64 = 2;
const LATE_PCT: u64 = 1;
/// How late a late copy arrives, in seconds.
const LATE_RANGE: (u64, u64) = (30, 60);
/// The delta queue's visibility timeout here: failed batches come back within the run.
const VISIBILITY_SECONDS: i32 = 120;
/// Pollers that receive for the mapping (Lambda starts with five).
const POLLERS: usize = 5;

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

fn at_ms(v: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(v).unwrap_or(DateTime::UNIX_EPOCH)
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

fn new_key(n: u64, rng: &mut Rng) -> String {
    format!("p{:02}/d{:02}/obj-{n:08}.bin", rng.below(PREFIXES), rng.below(8))
}

fn body(key: &str, n: u64, rng: &mut Rng) -> Vec<u8> {
    let size = 200 + rng.below(1800) as usize;
    let mut b = format!("{key}\n{n}\n").into_bytes();
    while b.len() < size {
        b.push(b'a' + (rng.below(26) as u8));
    }
    b
}

fn sha256_hex(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}

// ------------------------------------------------------------------------------------------------
// The deployed event source mapping, read from the IaC.

/// What the deployed delta event source mapping allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Mapping {
    batch_size: usize,
    window_seconds: u64,
    max_concurrency: usize,
}

/// The number after `name =` or `name:` on the first line holding `name` at or after `from` in `text`.
fn number_after(text: &str, from: usize, name: &str, file: &str) -> Result<u64> {
    let rest = &text[from..];
    for line in rest.lines() {
        let t = line.trim();
        if let Some(v) = t.strip_prefix(name) {
            let v = v.trim_start().trim_start_matches(['=', ':']).trim();
            let digits: String = v.chars().take_while(|c| c.is_ascii_digit()).collect();
            if !digits.is_empty() {
                return Ok(digits.parse()?);
            }
        }
    }
    bail!("{file}: no numeric `{name}` after offset {from}")
}

fn find(text: &str, needle: &str, from: usize, file: &str) -> Result<usize> {
    text[from..].find(needle).map(|i| i + from).with_context(|| format!("{file}: `{needle}` not found"))
}

/// The delta mapping as the Terraform module declares it, checked against the CloudFormation template.
fn deployed_mapping() -> Result<Mapping> {
    let root = harness::repo_root();
    let (main, vars, cfn) =
        ("terraform/modules/vault-account/main.tf", "terraform/modules/vault-account/variables.tf", "cloudformation/vault-account.yaml");
    let tf = std::fs::read_to_string(root.join(main))?;
    let sources = find(&tf, "event_sources = {", 0, main)?;
    let delta = find(&tf, "delta = {", sources, main).or_else(|_| {
        // `terraform fmt` aligns the `=`; accept any run of spaces.
        tf[sources..].find("delta").map(|i| i + sources).context("no delta event source")
    })?;
    let batch_size = number_after(&tf, delta, "batch_size", main)? as usize;
    let window_seconds = number_after(&tf, delta, "batching_window", main)?;
    let tfvars = std::fs::read_to_string(root.join(vars))?;
    let var = find(&tfvars, "variable \"delta_max_concurrency\"", 0, vars)?;
    let max_concurrency = number_after(&tfvars, var, "default", vars)? as usize;
    let tf_mapping = Mapping { batch_size, window_seconds, max_concurrency };

    let yaml = std::fs::read_to_string(root.join(cfn))?;
    let param = find(&yaml, "  DeltaMaxConcurrency:", 0, cfn)?;
    let source = find(&yaml, "  DeltaEventSource:", 0, cfn)?;
    let cfn_mapping = Mapping {
        batch_size: number_after(&yaml, source, "BatchSize", cfn)? as usize,
        window_seconds: number_after(&yaml, source, "MaximumBatchingWindowInSeconds", cfn)?,
        max_concurrency: number_after(&yaml, param, "Default", cfn)? as usize,
    };
    if tf_mapping != cfn_mapping {
        bail!("the delta event source differs between {main} ({tf_mapping:?}) and {cfn} ({cfn_mapping:?})");
    }
    Ok(tf_mapping)
}

// ------------------------------------------------------------------------------------------------
// The generator (a child process).

/// What the generator is asked to do.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct GenSpec {
    endpoint: String,
    /// (rate per second, seconds) steps, run one after the other.
    steps: Vec<(f64, u64)>,
    seed: u64,
    /// The keys that exist when it starts, one a line.
    keys_file: String,
    log_file: String,
    /// The first change number (the initial population used the ones below).
    first: u64,
    /// Send copies of changes (duplicated, reordered, late) to this queue, as EventBridge would.
    copies_to: Option<String>,
}

/// One line of the generator's log.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "snake_case")]
enum LogLine {
    /// A change S3 acknowledged: `etag` is `None` for a delete.
    Op { n: u64, step: usize, key: String, etag: Option<String>, sha256: Option<String>, sent: i64, acked: i64, lag: i64 },
    /// A change whose request failed: whether it happened is unknown, so its key is not compared.
    Failed { n: u64, key: String, error: String },
    /// A copy of a change's event sent to the delta queue.
    Copy { kind: String, key: String, of_sent: i64, at: i64 },
    /// The last line: the generator's own CPU time and how many copies the queue refused.
    Summary { cpu_seconds: f64, copies_failed: u64 },
}

/// A change as the generator remembers it for copies.
#[derive(Debug, Clone)]
struct Change {
    key: String,
    etag: Option<String>,
    size: usize,
    sent: DateTime<Utc>,
}

/// A copy of a change's event as EventBridge delivers it to the delta queue, in AWS's
/// documented form (`etag`, `deletion-type`), with no sequencer and stamped with the second the
/// change was sent, never later than S3's own event: resolution orders a same-second copy below
/// every real event, so it cannot outrank a newer change, and for a put the handler captures only
/// the object whose ETag it names.
///
/// Copies go straight to the delta queue: MiniStack, like EventBridge itself, refuses `aws.s3`
/// as the source of a PutEvents entry (`NotAuthorizedForSourceException`).
fn copy_event(c: &Change, id: u64) -> String {
    let (kind, object, reason) = match &c.etag {
        Some(e) => ("Object Created", serde_json::json!({"key": c.key, "size": c.size, "etag": e}), "PutObject"),
        None => ("Object Deleted", serde_json::json!({"key": c.key}), "DeleteObject"),
    };
    let mut detail = serde_json::json!({"version": "0", "bucket": {"name": SOURCE}, "object": object,
        "request-id": "TIDEMARKBENCHCOPY", "requester": "123456789012", "source-ip-address": "127.0.0.1", "reason": reason});
    if c.etag.is_none() {
        detail["deletion-type"] = "Permanently Deleted".into();
    }
    serde_json::json!({"version": "0", "id": format!("00000000-0000-0000-0000-{id:012x}"), "detail-type": kind, "source": "aws.s3",
        "account": "000000000000", "time": c.sent.trunc_subsecs(0).to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "region": "us-east-1", "resources": [format!("arn:aws:s3:::{SOURCE}")], "detail": detail})
    .to_string()
}

/// Sends copies to the delta queue, up to 10 per SendMessageBatch call, a few calls at once;
/// returns how many the queue refused.
async fn announce(sqs: aws_sdk_sqs::Client, queue: String, mut rx: tokio::sync::mpsc::UnboundedReceiver<String>) -> u64 {
    use aws_sdk_sqs::types::SendMessageBatchRequestEntry;
    let sem = Arc::new(tokio::sync::Semaphore::new(4));
    let failed = Arc::new(AtomicU64::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while batch.len() < 10 {
            match rx.try_recv() {
                Ok(e) => batch.push(e),
                Err(_) => break,
            }
        }
        let entries: Vec<SendMessageBatchRequestEntry> = batch
            .into_iter()
            .enumerate()
            .map(|(i, body)| SendMessageBatchRequestEntry::builder().id(i.to_string()).message_body(body).build().expect("id and body set"))
            .collect();
        let Ok(permit) = sem.clone().acquire_owned().await else { break };
        let (sqs, queue, failed) = (sqs.clone(), queue.clone(), failed.clone());
        tasks.spawn(async move {
            let n = entries.len() as u64;
            match sqs.send_message_batch().queue_url(&queue).set_entries(Some(entries)).send().await {
                Ok(out) => failed.fetch_add(out.failed().len() as u64, Ordering::Relaxed),
                Err(e) => {
                    eprintln!("generator: send_message_batch: {}", aws_sdk_sqs::error::DisplayErrorContext(e));
                    failed.fetch_add(n, Ordering::Relaxed)
                }
            };
            drop(permit);
        });
        while tasks.try_join_next().is_some() {}
    }
    while tasks.join_next().await.is_some() {}
    failed.load(Ordering::Relaxed)
}

/// Which keys exist and which have a change in flight (a key is never changed twice at once, so
/// the order of its changes is the order the generator made them).
#[derive(Default)]
struct Keys {
    live: Vec<String>,
    index: HashMap<String, usize>,
    busy: HashSet<String>,
    /// The latest change of each key, for reordered copies.
    last: HashMap<String, Change>,
}

impl Keys {
    fn add(&mut self, k: &str) {
        if !self.index.contains_key(k) {
            self.index.insert(k.to_string(), self.live.len());
            self.live.push(k.to_string());
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
    /// A live key with no change in flight, if one turns up within a few draws.
    fn pick(&self, rng: &mut Rng) -> Option<String> {
        (0..8).map(|_| &self.live[rng.below(self.live.len() as u64) as usize]).find(|c| !self.busy.contains(*c)).cloned()
    }
}

/// The generator process: runs the schedule, logs every change, exits when done (or when the
/// process that started it is gone).
async fn generate(spec: GenSpec) -> Result<()> {
    let parent = std::os::unix::process::parent_id();
    std::thread::spawn(move || loop {
        // Orphaned (the load test died): stop rather than keep writing to a stack nobody reads.
        if std::os::unix::process::parent_id() != parent {
            std::process::exit(3);
        }
        std::thread::sleep(Duration::from_secs(1));
    });
    let clients = AwsClients::load(&ClientOptions::local(&spec.endpoint)).await;
    let s3 = clients.s3.clone();
    let keys = Arc::new(Mutex::new(Keys::default()));
    for k in std::fs::read_to_string(&spec.keys_file)?.lines().filter(|l| !l.is_empty()) {
        keys.lock().unwrap().add(k);
    }
    let log = Arc::new(Mutex::new(std::io::BufWriter::new(std::fs::File::create(&spec.log_file)?)));
    let write = |log: &Mutex<std::io::BufWriter<std::fs::File>>, line: &LogLine| {
        let mut l = log.lock().unwrap();
        let _ = serde_json::to_writer(&mut *l, line);
        let _ = l.write_all(b"\n");
    };
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let announcer = tokio::spawn(announce(clients.sqs.clone(), spec.copies_to.clone().unwrap_or_default(), rx));
    let sem = Arc::new(tokio::sync::Semaphore::new(64));
    let mut rng = Rng(spec.seed);
    let mut tasks = tokio::task::JoinSet::new();
    let mut n = spec.first;
    let start = Instant::now();
    let mut step_start = 0.0f64;
    for (step, &(rate, seconds)) in spec.steps.iter().enumerate() {
        let mut i: u64 = 0;
        loop {
            let offset = step_start + i as f64 / rate;
            if offset >= step_start + seconds as f64 {
                break;
            }
            let due = start + Duration::from_secs_f64(offset);
            tokio::time::sleep_until(due.into()).await;
            let permit = sem.clone().acquire_owned().await?;
            let lag = Instant::now().saturating_duration_since(due).as_millis() as i64;
            let roll = rng.below(100);
            let (key, data, previous) = {
                let mut k = keys.lock().unwrap();
                let existing = if k.live.len() > 100 && roll >= 50 { k.pick(&mut rng) } else { None };
                let (key, data) = match existing {
                    // 30 % overwrites, 20 % deletes, the rest new objects.
                    Some(key) if roll < 80 => {
                        let d = body(&key, n, &mut rng);
                        (key, Some(d))
                    }
                    Some(key) => (key, None),
                    None => {
                        let key = new_key(n, &mut rng);
                        let d = body(&key, n, &mut rng);
                        (key, Some(d))
                    }
                };
                k.busy.insert(key.clone());
                let previous = k.last.get(&key).cloned();
                (key, data, previous)
            };
            let copy_roll = if spec.copies_to.is_some() { rng.below(100) } else { 100 };
            let late_after = LATE_RANGE.0 + rng.below(LATE_RANGE.1 - LATE_RANGE.0 + 1);
            let (s3, keys, log, tx) = (s3.clone(), keys.clone(), log.clone(), tx.clone());
            let this = n;
            tasks.spawn(async move {
                let sent = Utc::now();
                let size = data.as_ref().map_or(0, Vec::len);
                let sha = data.as_deref().map(sha256_hex);
                let r = match data {
                    Some(d) => s3
                        .put_object()
                        .bucket(SOURCE)
                        .key(&key)
                        .body(ByteStream::from(d))
                        .send()
                        .await
                        .map(|o| Some(o.e_tag().unwrap_or_default().trim_matches('"').to_string()))
                        .map_err(|e| format!("{}", aws_sdk_s3::error::DisplayErrorContext(e))),
                    None => s3
                        .delete_object()
                        .bucket(SOURCE)
                        .key(&key)
                        .send()
                        .await
                        .map(|_| None)
                        .map_err(|e| format!("{}", aws_sdk_s3::error::DisplayErrorContext(e))),
                };
                let acked = Utc::now();
                let change = {
                    let mut k = keys.lock().unwrap();
                    match &r {
                        Ok(etag) => {
                            match etag {
                                Some(_) => k.add(&key),
                                None => k.remove(&key),
                            }
                            k.busy.remove(&key);
                            let change = Change { key: key.clone(), etag: etag.clone(), size, sent };
                            k.last.insert(key.clone(), change.clone());
                            Some(change)
                        }
                        // A failed request may or may not have happened; the key stays busy so
                        // it is never changed again, and the analysis leaves it out.
                        Err(_) => {
                            k.remove(&key);
                            None
                        }
                    }
                };
                let (etag, change) = match (r, change) {
                    (Ok(etag), Some(change)) => (etag, change),
                    (Err(error), _) => {
                        eprintln!("generator: {key}: {error}");
                        write(&log, &LogLine::Failed { n: this, key, error });
                        return;
                    }
                    (Ok(_), None) => unreachable!("a change that succeeded is remembered"),
                };
                write(&log, &LogLine::Op { n: this, step, key: key.clone(), etag, sha256: sha, sent: ms(sent), acked: ms(acked), lag });
                let announce = |kind: &str, c: &Change| {
                    let _ = tx.send(copy_event(c, this));
                    write(&log, &LogLine::Copy { kind: kind.into(), key: c.key.clone(), of_sent: ms(c.sent), at: ms(Utc::now()) });
                };
                if copy_roll < DUPLICATED_PCT {
                    announce("duplicated", &change);
                    announce("duplicated", &change);
                } else if copy_roll < DUPLICATED_PCT + REORDERED_PCT {
                    if let Some(p) = &previous {
                        announce("reordered", p);
                    }
                } else if copy_roll < DUPLICATED_PCT + REORDERED_PCT + LATE_PCT {
                    // The request slot is free while the copy waits.
                    drop(permit);
                    tokio::time::sleep(Duration::from_secs(late_after)).await;
                    announce("late", &change);
                    return;
                }
                drop(permit);
            });
            i += 1;
            n += 1;
            while tasks.try_join_next().is_some() {}
        }
        step_start += seconds as f64;
    }
    while tasks.join_next().await.is_some() {}
    drop(tx);
    let copies_failed = announcer.await?;
    let cpu_seconds = harness::process_cpu_seconds(std::process::id());
    write(&log, &LogLine::Summary { cpu_seconds, copies_failed });
    log.lock().unwrap().flush()?;
    Ok(())
}

/// The generator child; killed if the load test stops early.
struct Generator(std::process::Child);

impl Drop for Generator {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
        }
        let _ = self.0.wait();
    }
}

// ------------------------------------------------------------------------------------------------
// The delta path: the event source mapping, emulated.

/// What the delta path saw, shared between the handlers, the checkpoint and the analysis.
#[derive(Default)]
struct DeltaState {
    /// (key, ETag) of a put, or (key, "") of a delete → (record's event second, when its batch finished).
    captured: HashMap<(String, String), Vec<(i64, DateTime<Utc>)>>,
    /// (key, ETag or "") of an event → when a batch holding it first finished.
    first_handled: HashMap<(String, String), DateTime<Utc>>,
    /// (key, ETag or "") of S3's own event → (its time, SQS's SentTimestamp, when its batch was
    /// gathered, when it finished): what a mismatch report shows.
    traces: HashMap<(String, String), [DateTime<Utc>; 4]>,
    /// SQS's SentTimestamp minus the event's time, for S3's own events: the emulated
    /// EventBridge's delivery delay, which the late-event allowance must cover.
    delivery_delays: Vec<f64>,
    /// Messages handled per second of the run.
    handled_per_second: BTreeMap<i64, u64>,
    /// The segments the batches wrote, as their reports name them.
    segments: HashSet<String>,
    in_flight: usize,
    messages: u64,
    batches: u64,
    batch_sizes: Vec<usize>,
    batch_seconds: Vec<f64>,
    batch_errors: u64,
    failed_messages: u64,
    duplicates: u64,
    superseded: u64,
}

/// What the load test compares of a change: the ETag it created, or "" for a delete. Tag, ACL,
/// storage-class and restore events (moto follows every put with `Object Tags Added`) change no
/// bytes, so they are not changes here.
fn event_tag(kind: &ChangeKind, etag: &Option<String>) -> Option<String> {
    match kind {
        ChangeKind::Created => Some(etag.clone().unwrap_or_default()),
        ChangeKind::Deleted { .. } => Some(String::new()),
        ChangeKind::Attributes { .. } | ChangeKind::Restored => None,
    }
}

/// One batch, handled on the delta runtime as the delta function would handle it; the mapping's
/// part (deleting what succeeded) and the test's bookkeeping run on the main runtime.
async fn run_batch(
    engine: Engine,
    delta_rt: tokio::runtime::Handle,
    state: Arc<Mutex<DeltaState>>,
    msgs: Vec<Message>,
    run_start: DateTime<Utc>,
) {
    let gathered = Utc::now();
    let received: Vec<Received> = msgs.iter().map(Received::from).collect();
    let handler_engine = engine.clone();
    let t0 = Instant::now();
    let outcome = delta_rt.spawn(async move { backlog::handle(&handler_engine, &received).await }).await;
    let done = Utc::now();
    let seconds = t0.elapsed().as_secs_f64();
    let report = match outcome {
        Ok(Ok(report)) => report,
        Ok(Err(e)) => {
            eprintln!("delta batch of {} failed: {e}", msgs.len());
            let mut s = state.lock().unwrap();
            s.batch_errors += 1;
            s.in_flight -= 1;
            return;
        }
        Err(e) => {
            eprintln!("delta batch panicked: {e}");
            state.lock().unwrap().in_flight -= 1;
            return;
        }
    };
    let failed: HashSet<&str> = report.failed.iter().map(|(id, _)| id.as_str()).collect();
    let receipts: Vec<String> = msgs.iter().filter(|m| !failed.contains(m.id.as_str())).map(|m| m.receipt.clone()).collect();
    if let Err(e) = engine.queue.delete_many(&engine.queues.delta, &receipts).await {
        // They come back after the visibility timeout and are handled again as duplicates.
        eprintln!("deleting a handled batch: {e}");
    }
    let records = match &report.segment {
        Some(seg) => segment::read(engine.vault.as_ref(), &engine.config.vault_bucket, &seg.key).await.unwrap_or_else(|e| {
            eprintln!("reading back segment {}: {e}", seg.key);
            Vec::new()
        }),
        None => Vec::new(),
    };
    let mut s = state.lock().unwrap();
    if let Some(seg) = &report.segment {
        s.segments.insert(seg.key.clone());
    }
    s.in_flight -= 1;
    s.batches += 1;
    s.messages += msgs.len() as u64;
    s.batch_sizes.push(msgs.len());
    s.batch_seconds.push(seconds);
    s.failed_messages += failed.len() as u64;
    s.duplicates += report.duplicates;
    s.superseded += report.superseded;
    *s.handled_per_second.entry((done - run_start).num_seconds()).or_default() += msgs.len() as u64;
    for m in &msgs {
        if let Ok(Some(ev)) = parse_change(&m.body) {
            let Some(tag) = event_tag(&ev.kind, &ev.etag) else { continue };
            let k = (ev.key.clone(), tag);
            s.first_handled.entry(k.clone()).or_insert(done);
            // S3's own events carry a sequencer; the test's copies do not.
            if let (Some(sent), Some(_)) = (m.sent_at, &ev.sequencer) {
                s.delivery_delays.push((sent - ev.time).num_milliseconds() as f64 / 1000.0);
                s.traces.entry(k).or_insert([ev.time, sent, gathered, done]);
            }
        }
    }
    for r in records {
        let tag = match r.kind {
            // A record of an attribute change (it keeps the version's LastModified) is no new bytes.
            CaptureKind::Put if r.last_modified.is_some() => continue,
            CaptureKind::Put => r.etag.clone().unwrap_or_default(),
            CaptureKind::Delete => String::new(),
            // The load test's bucket is unversioned: nothing is permanently deleted by version.
            CaptureKind::Purge => continue,
        };
        s.captured.entry((r.key, tag)).or_default().push((r.event_time.timestamp(), done));
    }
}

/// Receives one batch for the mapping: until `batch_size` messages or the batching window has
/// passed since the first; empty if the queue had nothing within a second.
async fn gather(engine: &Engine, mapping: Mapping) -> Vec<Message> {
    let mut batch: Vec<Message> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(mapping.window_seconds);
    loop {
        let want = (mapping.batch_size - batch.len()).min(10) as i32;
        match engine.queue.receive(&engine.queues.delta, want, 1, VISIBILITY_SECONDS).await {
            Ok(msgs) => {
                if msgs.is_empty() && batch.is_empty() {
                    return batch;
                }
                batch.extend(msgs);
            }
            Err(e) => {
                eprintln!("receive: {e}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
        if batch.len() >= mapping.batch_size || Instant::now() >= deadline {
            return batch;
        }
    }
}

/// The event source mapping: `POLLERS` pollers gather batches of up to `batch_size` within the
/// batching window, and at most `max_concurrency` batches are handled at once. A poller gathers
/// only once a handler slot is free, as a mapping with MaximumConcurrency reads only what it can
/// hand to an invocation: while every slot is busy the messages stay in the queue.
async fn event_source_mapping(
    engine: Engine,
    delta_rt: tokio::runtime::Handle,
    state: Arc<Mutex<DeltaState>>,
    mapping: Mapping,
    stop: Arc<AtomicBool>,
    run_start: DateTime<Utc>,
) -> Result<()> {
    let slots = Arc::new(tokio::sync::Semaphore::new(mapping.max_concurrency));
    let mut pollers = tokio::task::JoinSet::new();
    for _ in 0..POLLERS {
        let (engine, delta_rt, state, stop, slots) = (engine.clone(), delta_rt.clone(), state.clone(), stop.clone(), slots.clone());
        pollers.spawn(async move {
            let mut empty_after_stop = 0;
            loop {
                let Ok(slot) = slots.clone().acquire_owned().await else { return };
                let batch = gather(&engine, mapping).await;
                if batch.is_empty() {
                    if stop.load(Ordering::SeqCst) {
                        empty_after_stop += 1;
                        if empty_after_stop >= 3 {
                            return;
                        }
                    }
                    continue;
                }
                empty_after_stop = 0;
                state.lock().unwrap().in_flight += 1;
                let (engine, delta_rt, state) = (engine.clone(), delta_rt.clone(), state.clone());
                tokio::spawn(async move {
                    run_batch(engine, delta_rt, state, batch, run_start).await;
                    drop(slot);
                });
            }
        });
    }
    while pollers.join_next().await.is_some() {}
    // The last batches finish before the mapping stops.
    let _ = slots.acquire_many(mapping.max_concurrency as u32).await?;
    Ok(())
}

/// CPU seconds of this process's threads named `name` (the delta runtime's workers).
fn threads_cpu_seconds(name: &str) -> f64 {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else { return 0.0 };
    tasks
        .filter_map(|t| t.ok())
        .filter(|t| std::fs::read_to_string(t.path().join("comm")).is_ok_and(|c| c.trim() == name))
        .filter_map(|t| t.file_name().to_str().and_then(|s| s.parse::<u32>().ok()))
        .map(|tid| {
            let stat = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")).unwrap_or_default();
            let rest = stat.rfind(')').map(|i| stat[i + 1..].to_string()).unwrap_or_default();
            let f: Vec<f64> = rest.split_whitespace().map(|v| v.parse().unwrap_or(0.0)).collect();
            (f.get(11).copied().unwrap_or(0.0) + f.get(12).copied().unwrap_or(0.0)) / 100.0
        })
        .sum()
}

// ------------------------------------------------------------------------------------------------
// Analysis.

/// One change the generator made (or the initial population).
#[derive(Debug, Clone)]
struct Op {
    n: u64,
    step: usize,
    key: String,
    etag: Option<String>,
    sha256: Option<String>,
    sent: DateTime<Utc>,
    acked: DateTime<Utc>,
    lag_ms: i64,
}

/// A sealed point and when it was sealed.
#[derive(Debug, Clone)]
struct PointRec {
    time: DateTime<Utc>,
    sealed_at: DateTime<Utc>,
}

/// The expected state of every key as of point `t`: for each key the possible values (ETag, or
/// absent). A change acknowledged by `t` is in (its event time is at most its acknowledgement,
/// and the point claims every change up to `t`); one sent after the end of `t`'s second is out
/// (records resolve by whole seconds); one in between may be either. A put that a newer write
/// replaced before its event was handled was never readable, so its state may be missing too,
/// and so may every state that was possible before it.
fn expected_at(
    ops_by_key: &HashMap<String, Vec<Op>>,
    unobservable: &HashSet<u64>,
    t: DateTime<Utc>,
) -> HashMap<String, Vec<Option<String>>> {
    let second_end = t.trunc_subsecs(0) + chrono::Duration::seconds(1);
    let mut out = HashMap::new();
    for (key, ops) in ops_by_key {
        let mut state: Option<String> = None;
        let mut possible: Vec<Option<String>> = Vec::new();
        for op in ops {
            if op.acked <= t {
                let before = state.clone();
                state = op.etag.clone();
                if unobservable.contains(&op.n) {
                    // The state before an unobservable put may itself have been unobservable
                    // (two puts in a row overwritten before their events were handled): every
                    // state possible before it stays possible.
                    if possible.is_empty() {
                        possible.push(before);
                    }
                    possible.push(state.clone());
                } else {
                    possible.clear();
                }
            } else if op.sent < second_end {
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
        possible.dedup();
        out.insert(key.clone(), possible);
    }
    out
}

/// Compares a state (key → ETag) with the expected one; returns the mismatches and how many keys were ambiguous.
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
            bad.push(format!("{k}: unexpected"));
        }
    }
    bad.sort();
    (bad, ambiguous)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn sorted(mut v: Vec<f64>) -> Vec<f64> {
    v.sort_by(f64::total_cmp);
    v
}

/// A line chart as SVG: one panel, several series of (x seconds, y) points.
fn svg_panel(out: &mut String, y0: f64, title: &str, y_label: &str, series: &[(&str, &str, Vec<(f64, f64)>)], x_max: f64) {
    let (w, h, left, top) = (860.0, 200.0, 70.0, y0 + 30.0);
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

// ------------------------------------------------------------------------------------------------
// The run.

#[derive(Debug, Clone, Copy, PartialEq)]
enum Stack {
    MiniStack,
    Moto,
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("generate") {
        let spec: GenSpec = serde_json::from_str(args.get(2).context("generate needs its spec")?)?;
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
        return rt.block_on(generate(spec));
    }
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).thread_name("tm-bench").enable_all().build()?;
    // The delta handlers run on a runtime of their own, so that their CPU can be told apart
    // from the emulated mapping's polling and the test's bookkeeping.
    let delta_rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).thread_name("tm-delta").enable_all().build()?;
    let result = rt.block_on(run(delta_rt.handle().clone()));
    delta_rt.shutdown_background();
    result
}

async fn run(delta_rt: tokio::runtime::Handle) -> Result<()> {
    let t_total = Instant::now();
    let stack = match std::env::var("TIDEMARK_BENCH_DELTA_STACK").as_deref() {
        Ok("moto") => Stack::Moto,
        Ok("ministack") | Err(_) => Stack::MiniStack,
        Ok(other) => bail!("TIDEMARK_BENCH_DELTA_STACK={other}: expected ministack or moto"),
    };
    let deployed = deployed_mapping()?;
    let mapping = Mapping {
        batch_size: env_u64("TIDEMARK_BENCH_DELTA_BATCH", deployed.batch_size as u64) as usize,
        window_seconds: env_u64("TIDEMARK_BENCH_DELTA_WINDOW_SECONDS", deployed.window_seconds),
        max_concurrency: env_u64("TIDEMARK_BENCH_DELTA_CONSUMERS", deployed.max_concurrency as u64) as usize,
    };
    let default_rate = if stack == Stack::Moto { 25 } else { 278 };
    let ramp: Vec<f64> = std::env::var("TIDEMARK_BENCH_DELTA_RAMP")
        .ok()
        .map(|v| v.split(',').filter_map(|r| r.trim().parse().ok()).collect())
        .unwrap_or_default();
    let steps: Vec<(f64, u64)> = if ramp.is_empty() {
        vec![(env_u64("TIDEMARK_BENCH_DELTA_RATE", default_rate) as f64, env_u64("TIDEMARK_BENCH_DELTA_SECONDS", 600))]
    } else {
        let each = env_u64("TIDEMARK_BENCH_DELTA_RAMP_SECONDS", 120);
        ramp.iter().map(|r| (*r, each)).collect()
    };
    let seconds: u64 = steps.iter().map(|s| s.1).sum();
    let checkpoint_s = env_u64("TIDEMARK_BENCH_DELTA_CHECKPOINT_SECONDS", 10);
    let compact_s = env_u64("TIDEMARK_BENCH_DELTA_COMPACT_SECONDS", 120);
    let initial = env_u64("TIDEMARK_BENCH_DELTA_INITIAL", 20_000);
    let drain_cap = env_u64("TIDEMARK_BENCH_DELTA_DRAIN_SECONDS", 300);
    let late_s = env_u64("TIDEMARK_BENCH_DELTA_LATE_SECONDS", mapping.window_seconds + 5) as i64;
    let allowance = chrono::Duration::seconds(late_s);
    let (report_md, report_svg) = if ramp.is_empty() {
        ("bench-delta-report.md", "bench-delta-plot.svg")
    } else {
        ("bench-delta-ramp.md", "bench-delta-ramp-plot.svg")
    };

    let server = match stack {
        Stack::MiniStack => harness::start_ministack()?,
        Stack::Moto => harness::start_moto()?,
    };
    let ep = server.endpoint.clone();
    eprintln!("{stack:?} on {ep}; mapping {mapping:?} (deployed {deployed:?}); late-event allowance {late_s} s");
    let env: Vec<(&str, String)> = vec![("TIDEMARK_LATE_EVENT_SECONDS", "2".into()), ("TIDEMARK_TARGET_OBJECTS", "1000".into())];
    // Plaintext packs, as the bench measured before encryption (MiniStack serves no KMS).
    tidemark_json(&ep, &env, &["init", "--local", "--no-kms-key", "--vault", &format!("s3://{VAULT}"), "--json"])?;
    let clients = AwsClients::load(&ClientOptions::local(&ep)).await;
    let s3 = clients.s3.clone();
    s3.create_bucket().bucket(SOURCE).send().await?;

    // The initial population, seeded by protect rather than captured from events.
    let mut rng = Rng(0x5eed_1234_abcd_ef01);
    let mut log: Vec<Op> = Vec::new();
    let mut batch = Vec::new();
    for n in 0..initial {
        let key = new_key(n, &mut rng);
        let data = body(&key, n, &mut rng);
        batch.push((n, key, data));
    }
    for chunk in batch.chunks(32) {
        let puts = chunk.iter().map(|(n, k, d)| {
            let s3 = s3.clone();
            async move {
                let sent = Utc::now();
                let out = s3.put_object().bucket(SOURCE).key(k).body(ByteStream::from(d.clone())).send().await?;
                let etag = out.e_tag().unwrap_or_default().trim_matches('"').to_string();
                anyhow::Ok(Op {
                    n: *n,
                    step: 0,
                    key: k.clone(),
                    etag: Some(etag),
                    sha256: Some(sha256_hex(d)),
                    sent,
                    acked: Utc::now(),
                    lag_ms: 0,
                })
            }
        });
        for op in futures::future::join_all(puts).await {
            log.push(op?);
        }
    }
    let work = tempfile::Builder::new().prefix("tidemark-bench-delta").tempdir()?;
    let keys_file = work.path().join("keys.txt");
    std::fs::write(&keys_file, log.iter().map(|o| format!("{}\n", o.key)).collect::<String>())?;
    let (source_url, vault_url) = (format!("s3://{SOURCE}"), format!("s3://{VAULT}"));
    // Protect turns the bucket's EventBridge notifications on and routes them to the delta queue.
    let p = tidemark_json(&ep, &env, &["protect", "--source", &source_url, "--vault", &vault_url, "--workers", "4", "--wait", "--json"])?;
    eprintln!("protected {} objects; first point {}", p["objects"], p["recovery_point"]);

    let names = ResourceNames::new("tidemark");
    let store = Arc::new(S3Store::new(clients.s3.clone()));
    let mut config = EngineConfig::new(VAULT);
    config.concurrency = 8;
    let engine = Engine {
        source: store.clone(),
        vault: store,
        control: Arc::new(DynamoControlStore::new(clients.dynamodb.clone(), &names.table)),
        queue: Arc::new(SqsQueue::new(clients.sqs.clone())),
        clock: Arc::new(SystemClock),
        keys: Arc::new(tidemark_core::memory::MemKeys::new()),
        config,
        queues: QueueUrls {
            work: admin::queue_url(&clients, &names.work_queue).await?,
            delta: admin::queue_url(&clients, &names.delta_queue).await?,
            restore: admin::queue_url(&clients, &names.restore_queue).await?,
        },
    };

    let state = Arc::new(Mutex::new(DeltaState::default()));
    let points: Arc<Mutex<Vec<PointRec>>> = Arc::new(Mutex::new(Vec::new()));
    if let Some(t) = p["recovery_point"].as_str() {
        points.lock().unwrap().push(PointRec { time: t.parse()?, sealed_at: Utc::now() });
    }
    let run_start = Utc::now();
    let stop_esm = Arc::new(AtomicBool::new(false));
    let esm = tokio::spawn(event_source_mapping(engine.clone(), delta_rt.clone(), state.clone(), mapping, stop_esm.clone(), run_start));

    // The checkpoint, exactly as the checkpoint function does it, and the samplers beside it.
    let stop_cp = Arc::new(AtomicBool::new(false));
    let samples: Arc<Mutex<Vec<(f64, f64, u64)>>> = Arc::new(Mutex::new(Vec::new()));
    let notes: Arc<Mutex<Vec<String>>> = Arc::new(Mutex::new(Vec::new()));
    let checkpoint_task = {
        let (engine, points, stop, notes) = (engine.clone(), points.clone(), stop_cp.clone(), notes.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::SeqCst) {
                tokio::time::sleep(Duration::from_secs(checkpoint_s)).await;
                let r = async {
                    let evidence = checkpoint::handlers_evidence(&engine).await?;
                    checkpoint::checkpoint(&engine, &[SOURCE.to_string()], &evidence, allowance).await
                }
                .await;
                match r {
                    Ok(out) => {
                        let b = &out[0];
                        if b.sealed {
                            if let Some(t) = b.recovery_point {
                                points.lock().unwrap().push(PointRec { time: t, sealed_at: Utc::now() });
                            }
                        }
                        if let Some(n) = &b.note {
                            if n.contains("cross-check") || n.contains("not sealing") {
                                notes.lock().unwrap().push(format!("{}: {n}", Utc::now().to_rfc3339()));
                            }
                        }
                    }
                    Err(e) => eprintln!("checkpoint: {e}"),
                }
            }
        })
    };
    let sampler = {
        let (engine, points, stop, samples) = (engine.clone(), points.clone(), stop_cp.clone(), samples.clone());
        tokio::spawn(async move {
            let (mut ticks, mut depth) = (0u64, 0u64);
            while !stop.load(Ordering::SeqCst) {
                tokio::time::sleep(Duration::from_secs(1)).await;
                // moto computes the depth by walking the queue, so there it is sampled every fifth second.
                ticks += 1;
                if stack == Stack::MiniStack || ticks % 5 == 1 {
                    depth = engine.queue.depth(&engine.queues.delta).await.unwrap_or(depth);
                }
                let now = Utc::now();
                if let Some(l) = points.lock().unwrap().last().map(|p| p.time) {
                    let x = (now - run_start).num_milliseconds() as f64 / 1000.0;
                    samples.lock().unwrap().push((x, (now - l).num_milliseconds() as f64 / 1000.0, depth));
                }
            }
        })
    };
    // Compaction runs beside the checkpoint, not in its loop, so a slow merge never delays a seal.
    let compactions: Arc<Mutex<Vec<String>>> = Arc::new(Mutex::new(Vec::new()));
    let compactor = {
        let (engine, stop, compactions) = (engine.clone(), stop_cp.clone(), compactions.clone());
        tokio::spawn(async move {
            let mut last = Instant::now();
            while !stop.load(Ordering::SeqCst) {
                tokio::time::sleep(Duration::from_secs(1)).await;
                if compact_s > 0 && last.elapsed().as_secs() >= compact_s {
                    last = Instant::now();
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
                    "[{:.0} s] handled {} messages in {} batches ({} in flight, {} failed batches)",
                    (Utc::now() - run_start).num_seconds(),
                    s.messages,
                    s.batches,
                    s.in_flight,
                    s.batch_errors
                );
            }
        })
    };

    // The generator, in its own process.
    let log_file = work.path().join("generator.ndjson");
    let spec = GenSpec {
        endpoint: ep.clone(),
        steps: steps.clone(),
        seed: 0xfeed_beef_0bad_cafe,
        keys_file: keys_file.display().to_string(),
        log_file: log_file.display().to_string(),
        first: initial,
        copies_to: Some(engine.queues.delta.clone()),
    };
    eprintln!("generating {steps:?}");
    let cpu_start = (harness::process_cpu_seconds(std::process::id()), threads_cpu_seconds("tm-delta"), server.cpu_seconds());
    let gen_start = Instant::now();
    let mut child =
        Generator(std::process::Command::new(std::env::current_exe()?).arg("generate").arg(serde_json::to_string(&spec)?).spawn()?);
    let status = tokio::task::spawn_blocking(move || {
        let s = child.0.wait();
        (s, child)
    })
    .await?;
    let (status, _child) = status;
    if !status?.success() {
        bail!("the generator failed; see its messages above");
    }
    let gen_secs = gen_start.elapsed().as_secs_f64();
    eprintln!("generator done after {gen_secs:.1} s");

    // Let the delta path finish the backlog (bounded), then seal a last point.
    let drain_start = Instant::now();
    loop {
        let depth = engine.queue.depth(&engine.queues.delta).await?;
        let in_flight = state.lock().unwrap().in_flight;
        if (depth == 0 && in_flight == 0) || drain_start.elapsed().as_secs() > drain_cap {
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let drain_secs = drain_start.elapsed().as_secs_f64();
    let backlog_left = engine.queue.depth(&engine.queues.delta).await?;
    let cpu_end = (harness::process_cpu_seconds(std::process::id()), threads_cpu_seconds("tm-delta"), server.cpu_seconds());
    stop_esm.store(true, Ordering::SeqCst);
    esm.await??;
    tokio::time::sleep(Duration::from_secs(late_s as u64 + 1)).await;
    let evidence = checkpoint::handlers_evidence(&engine).await?;
    let last = checkpoint::checkpoint(&engine, &[SOURCE.to_string()], &evidence, allowance).await?;
    if last[0].sealed {
        points.lock().unwrap().push(PointRec { time: last[0].recovery_point.expect("sealed"), sealed_at: Utc::now() });
    }
    stop_cp.store(true, Ordering::SeqCst);
    let _ = checkpoint_task.await;
    let _ = sampler.await;
    let _ = compactor.await;
    let _ = progress.await;

    // ---------------------------------------------------------------- the generator's log
    let mut ops: Vec<Op> = Vec::new();
    let mut retired: HashSet<String> = HashSet::new();
    let mut copies: BTreeMap<String, u64> = BTreeMap::new();
    let (mut gen_cpu, mut copies_failed) = (f64::NAN, 0);
    for line in std::io::BufReader::new(std::fs::File::open(&log_file)?).lines() {
        match serde_json::from_str::<LogLine>(&line?)? {
            LogLine::Op { n, step, key, etag, sha256, sent, acked, lag } => {
                ops.push(Op { n, step, key, etag, sha256, sent: at_ms(sent), acked: at_ms(acked), lag_ms: lag })
            }
            LogLine::Failed { key, .. } => {
                retired.insert(key);
            }
            LogLine::Copy { kind, .. } => *copies.entry(kind).or_default() += 1,
            LogLine::Summary { cpu_seconds, copies_failed: f } => {
                gen_cpu = cpu_seconds;
                copies_failed = f;
            }
        }
    }
    ops.sort_by_key(|o| o.n);
    let mut ops_by_key: HashMap<String, Vec<Op>> = HashMap::new();
    for op in log.iter().chain(ops.iter()) {
        ops_by_key.entry(op.key.clone()).or_default().push(op.clone());
    }
    for v in ops_by_key.values_mut() {
        v.sort_by_key(|o| o.n);
    }

    // ---------------------------------------------------------------- latency, losses, duplicates
    let mut st = state.lock().unwrap();
    let mut lat: Vec<(f64, f64, usize)> = Vec::new();
    let mut unobservable: HashSet<u64> = HashSet::new();
    let mut lost: Vec<String> = Vec::new();
    for op in &ops {
        if retired.contains(&op.key) {
            continue;
        }
        let tag = op.etag.clone().unwrap_or_default();
        let k = (op.key.clone(), tag);
        let captured = st.captured.get(&k).and_then(|v| {
            v.iter()
                // A delete's record carries the second of its event (S3's, or a copy's, which is
                // the second it was sent); a put's names its ETag, which is unique.
                .filter(|(sec, _)| op.etag.is_some() || (*sec >= op.sent.timestamp() && *sec <= op.acked.timestamp()))
                .map(|x| x.1)
                .min()
        });
        match captured {
            Some(t) => lat.push((
                (op.sent - run_start).num_milliseconds() as f64 / 1000.0,
                (t - op.sent).num_milliseconds() as f64 / 1000.0,
                op.step,
            )),
            None => {
                let next = ops_by_key[&op.key].iter().find(|o| o.n > op.n);
                let handled = st.first_handled.get(&k);
                match (op.etag.is_some(), next, handled) {
                    // Overwritten or deleted before its event was handled: never readable.
                    (true, Some(next), Some(h)) if next.sent < *h => {
                        unobservable.insert(op.n);
                    }
                    _ => lost.push(format!("{} {} (sent {})", op.key, op.etag.as_deref().unwrap_or("delete"), op.sent.to_rfc3339())),
                }
            }
        }
    }
    let latencies = sorted(lat.iter().map(|x| x.1).collect());
    let (p50, p99, pmax) = (percentile(&latencies, 0.5), percentile(&latencies, 0.99), latencies.last().copied().unwrap_or(f64::NAN));
    let window = 10.0;
    let mut by_window: BTreeMap<i64, Vec<f64>> = BTreeMap::new();
    for (x, l, _) in &lat {
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
    let handled_per_second = st.handled_per_second.clone();
    let (messages, batches, batch_errors, failed_messages, duplicates, superseded) =
        (st.messages, st.batches, st.batch_errors, st.failed_messages, st.duplicates, st.superseded);
    let batch_sizes = sorted(st.batch_sizes.iter().map(|n| *n as f64).collect());
    let batch_seconds = sorted(st.batch_seconds.clone());
    let traces = std::mem::take(&mut st.traces);
    let reported_segments = std::mem::take(&mut st.segments);
    let delays = sorted(std::mem::take(&mut st.delivery_delays));
    drop(st);
    let samples = samples.lock().unwrap().clone();
    let rpo_series: Vec<(f64, f64)> = samples.iter().map(|r| (r.0, r.1)).collect();
    let depth_series: Vec<(f64, f64)> = samples.iter().map(|r| (r.0, r.2 as f64)).collect();
    let rpos = sorted(samples.iter().filter(|r| r.0 <= gen_secs).map(|r| r.1).collect());
    let depth_max = samples.iter().map(|r| r.2).max().unwrap_or(0);
    let lag_max = ops.iter().map(|o| o.lag_ms).max().unwrap_or(0);
    let puts = ops.iter().filter(|o| o.etag.is_some()).count();
    let deletes = ops.len() - puts;

    // One event recorded twice: identical records (same key, ETag, second, sequencer, kind) in
    // the delta segments. Real events carry a sequencer; the test's copies do not.
    let control = engine.control();
    let mut identities: HashMap<String, u32> = HashMap::new();
    let slots = control.segments(SOURCE).await?;
    let delta_slots: Vec<_> = slots.iter().filter(|s| s.meta.kind == SegmentKind::Delta).collect();
    let registered: HashSet<&str> = delta_slots.iter().map(|s| s.meta.key.as_str()).collect();
    let unregistered = reported_segments.iter().filter(|k| !registered.contains(k.as_str())).count();
    eprintln!(
        "{} segments reported by batches, {} delta slots registered, {unregistered} reported but not registered",
        reported_segments.len(),
        registered.len()
    );
    let mut records_by_key: HashMap<String, Vec<(String, tidemark_core::domain::CaptureRecord)>> = HashMap::new();
    for slot in &delta_slots {
        for r in segment::read(engine.vault.as_ref(), VAULT, &slot.meta.key).await? {
            records_by_key.entry(r.key.clone()).or_default().push((slot.meta.key.clone(), r.clone()));
            let id = format!("{}\u{0}{:?}\u{0}{}\u{0}{:?}\u{0}{:?}", r.key, r.etag, r.event_time.timestamp(), r.sequencer, r.kind);
            *identities.entry(id).or_default() += 1;
        }
    }
    let dup_real =
        identities.iter().filter(|(id, n)| **n > 1 && !id.ends_with("\u{0}None\u{0}Put") && !id.ends_with("\u{0}None\u{0}Delete")).count();
    let dup_copies =
        identities.iter().filter(|(id, n)| **n > 1 && (id.ends_with("\u{0}None\u{0}Put") || id.ends_with("\u{0}None\u{0}Delete"))).count();

    // ---------------------------------------------------------------- every point vs the log
    let pts = points.lock().unwrap().clone();
    eprintln!("verifying {} sealed points", pts.len());
    let mut verify_lines = Vec::new();
    let mut mismatch_traces = Vec::new();
    let mut mismatches_total = 0usize;
    for p in &pts {
        let t = Instant::now();
        let (point_used, state_at) = restore::load_state(&engine, SOURCE, "", p.time).await?;
        let got: HashMap<String, String> = state_at.into_iter().map(|(k, r)| (k, r.etag.unwrap_or_default())).collect();
        let exp = expected_at(&ops_by_key, &unobservable, p.time);
        let (bad, ambiguous) = compare(&exp, &got, &retired);
        mismatches_total += bad.len();
        for b in bad.iter().take(3) {
            // What happened to the key's last change acknowledged by the point, to tell a late
            // delivery from a late handling.
            let key = b.split(": ").next().unwrap_or_default();
            let last = ops_by_key.get(key).and_then(|v| v.iter().filter(|o| o.acked <= p.time).last());
            let trace = last.and_then(|o| traces.get(&(o.key.clone(), o.etag.clone().unwrap_or_default())));
            let show = |t: &DateTime<Utc>| format!("{:+.1}", (*t - p.time).num_milliseconds() as f64 / 1000.0);
            // The key's records in the catalog.
            let listed: HashSet<&str> = point_used.segments.iter().map(|s| s.key.as_str()).collect();
            let mut records = Vec::new();
            for (seg, r) in records_by_key.get(key).into_iter().flatten() {
                records.push(format!(
                    "{:?} {} at {} seq {} captured {}{}",
                    r.kind,
                    r.etag.as_deref().unwrap_or("-").get(..6).unwrap_or("-"),
                    show(&r.event_time),
                    r.sequencer.as_deref().unwrap_or("none"),
                    show(&r.captured_at),
                    if listed.contains(seg.as_str()) { "" } else { " (segment not in the point)" }
                ));
            }
            mismatch_traces.push(format!(
                "- point {} (sealed {}): {b}; records: [{}]; its last change acknowledged by then was sent {} and acknowledged {}; S3's event at {}, SQS sent {}, gathered {}, handled {} (seconds from the point)",
                p.time.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                show(&p.sealed_at),
                records.join("; "),
                last.map_or("?".into(), |o| show(&o.sent)),
                last.map_or("?".into(), |o| show(&o.acked)),
                trace.map_or("?".into(), |t| show(&t[0])),
                trace.map_or("?".into(), |t| show(&t[1])),
                trace.map_or("?".into(), |t| show(&t[2])),
                trace.map_or("?".into(), |t| show(&t[3])),
            ));
        }
        verify_lines.push(format!(
            "| {} | {:.1} | {} | {} | {} | {} | {:.1} |",
            p.time.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            (p.sealed_at - p.time).num_milliseconds() as f64 / 1000.0,
            got.len(),
            ambiguous,
            bad.len(),
            bad.first().cloned().unwrap_or_default().replace('|', "/"),
            t.elapsed().as_secs_f64()
        ));
    }

    // ---------------------------------------------------------------- byte-level restores
    let mut restore_lines = Vec::new();
    let mut restore_mismatches = 0usize;
    let sha_of: HashMap<(String, String), String> =
        log.iter().chain(ops.iter()).filter_map(|o| Some(((o.key.clone(), o.etag.clone()?), o.sha256.clone()?))).collect();
    let picks: Vec<PointRec> = {
        let n = pts.len();
        let mut v: Vec<PointRec> = [n / 4, n / 2, 3 * n / 4, n - 1].iter().map(|i| pts[*i].clone()).collect();
        v.dedup_by_key(|p| p.time);
        v
    };
    for (i, p) in picks.iter().enumerate() {
        for j in 0..2 {
            let prefix = format!("p{:02}/", (i * 11 + j * 5) % PREFIXES as usize);
            let target = format!("bd-restore-{i}-{j}");
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
            // Every restored object read back whole: its SHA-256 against the generator's log.
            let mut got: HashMap<String, String> = HashMap::new();
            let mut bytes_bad = 0usize;
            let mut pages = s3.list_objects_v2().bucket(&target).into_paginator().send();
            while let Some(page) = pages.next().await {
                for o in page?.contents() {
                    let key = o.key().unwrap_or_default().to_string();
                    let etag = o.e_tag().unwrap_or_default().trim_matches('"').to_string();
                    let data = s3.get_object().bucket(&target).key(&key).send().await?.body.collect().await?.into_bytes();
                    if sha_of.get(&(key.clone(), etag.clone())) != Some(&sha256_hex(&data)) {
                        bytes_bad += 1;
                    }
                    got.insert(key, etag);
                }
            }
            let exp: HashMap<String, Vec<Option<String>>> =
                expected_at(&ops_by_key, &unobservable, p.time).into_iter().filter(|(k, _)| k.starts_with(&prefix)).collect();
            let (bad, ambiguous) = compare(&exp, &got, &retired);
            restore_mismatches += bad.len() + bytes_bad;
            restore_lines.push(format!(
                "| {} | `{prefix}` | {} | {} | {} | {ambiguous} | {} | {bytes_bad} | {:.1} |",
                p.time.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                r.objects,
                r.verified,
                got.len(),
                bad.len(),
                t.elapsed().as_secs_f64()
            ));
        }
    }

    // ---------------------------------------------------------------- steps (the ramp)
    let mut step_lines = Vec::new();
    let mut sustained: Option<f64> = None;
    let mut offset = 0.0;
    for (i, (rate, secs)) in steps.iter().enumerate() {
        let (from, to) = (offset, offset + *secs as f64);
        offset = to;
        let made = ops.iter().filter(|o| o.step == i).count() as f64;
        // Over the time the step's requests actually took to send, which is longer than the
        // step when the stack cannot keep up.
        let span = {
            let sent: Vec<DateTime<Utc>> = ops.iter().filter(|o| o.step == i).map(|o| o.sent).collect();
            match (sent.iter().min(), sent.iter().max()) {
                (Some(a), Some(b)) => ((*b - *a).num_milliseconds() as f64 / 1000.0).max(*secs as f64),
                _ => *secs as f64,
            }
        };
        let handled: u64 = handled_per_second.range(from as i64..to as i64).map(|(_, n)| n).sum();
        let lats = sorted(lat.iter().filter(|x| x.2 == i).map(|x| x.1).collect());
        let depth_at = |x: f64| samples.iter().filter(|s| s.0 <= x).last().map_or(0, |s| s.2);
        let (d0, d1) = (depth_at(from + 10.0), depth_at(to));
        let lag = ops.iter().filter(|o| o.step == i).map(|o| o.lag_ms).max().unwrap_or(0);
        // Keeping up: the generator kept its schedule, the queue did not grow by more than ten
        // seconds of changes over the step, and the step's changes were captured within 60 s.
        let keeps_up = made / span >= 0.97 * rate && (d1 as f64) < d0 as f64 + 10.0 * rate && percentile(&lats, 0.99) <= 60.0;
        if keeps_up && sustained.is_none_or(|s| *rate > s) {
            sustained = Some(*rate);
        }
        step_lines.push(format!(
            "| {rate:.0} | {:.1} | {lag} | {:.1} | {d0} → {d1} | {:.2} | {:.2} | {} |",
            made / span,
            handled as f64 / *secs as f64,
            percentile(&lats, 0.5),
            percentile(&lats, 0.99),
            if keeps_up { "yes" } else { "**no**" }
        ));
    }

    // ---------------------------------------------------------------- report
    let x_max = samples.last().map(|p| p.0).unwrap_or(seconds as f64).max(1.0);
    let mut svg = String::from(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"960\" height=\"760\" font-family=\"sans-serif\"><rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n",
    );
    svg_panel(
        &mut svg,
        0.0,
        "Event-to-capture latency (10-s windows by change time)",
        "seconds",
        &[("p50", "#1f77b4", p50_series), ("p99", "#d62728", p99_series)],
        x_max,
    );
    svg_panel(&mut svg, 250.0, "RPO: now − latest sealed recovery point", "seconds", &[("RPO", "#2ca02c", rpo_series)], x_max);
    svg_panel(&mut svg, 500.0, "Delta queue depth (visible + in flight)", "messages", &[("depth", "#9467bd", depth_series)], x_max);
    svg.push_str("</svg>\n");
    std::fs::write(report_svg, &svg)?;

    let changes = ops.len() as f64;
    let gen_span = match (ops.iter().map(|o| o.sent).min(), ops.iter().map(|o| o.sent).max()) {
        (Some(a), Some(b)) => ((b - a).num_milliseconds() as f64 / 1000.0).max(seconds as f64),
        _ => seconds as f64,
    };
    let cpu = (cpu_end.0 - cpu_start.0, cpu_end.1 - cpu_start.1, cpu_end.2 - cpu_start.2);
    let per_change_ms = |s: f64| s * 1000.0 / changes.max(1.0);
    let stack_name = match stack {
        Stack::MiniStack => "MiniStack 1.5.33: S3, SQS, EventBridge and DynamoDB in one process",
        Stack::Moto => "moto 5.2.5: S3, SQS, EventBridge and DynamoDB",
    };
    let stack_env = if stack == Stack::Moto { "TIDEMARK_BENCH_DELTA_STACK=moto " } else { "" };
    let reproduce = if ramp.is_empty() {
        let (r, s) = steps[0];
        if r == default_rate as f64 && s == 600 {
            format!("`{stack_env}make bench-delta`")
        } else {
            format!("`{stack_env}TIDEMARK_BENCH_DELTA_RATE={r} TIDEMARK_BENCH_DELTA_SECONDS={s} make bench-delta`")
        }
    } else {
        format!(
            "`{stack_env}TIDEMARK_BENCH_DELTA_RAMP={} TIDEMARK_BENCH_DELTA_RAMP_SECONDS={} make bench-delta`",
            ramp.iter().map(|r| format!("{r}")).collect::<Vec<_>>().join(","),
            steps[0].1
        )
    };
    let mut md = String::new();
    md.push_str(if ramp.is_empty() { "# tidemark delta-path load test\n\n" } else { "# tidemark delta-path load test: the rate ramp\n\n" });
    md.push_str(&format!(
        "Run {} on {stack_name}, bound to 127.0.0.1, on this machine ({} cores, shared). {seconds} s of changes ({}) through \
         the real chain: S3 change → EventBridge rule → delta queue → delta handlers (`changes::backlog::handle`) → segments → \
         sealed points. Delta handlers as the deployed event source mapping allows them (read from the Terraform module and \
         checked against the CloudFormation template): batches of up to {} with a {} s batching window, at most {} at once, \
         {POLLERS} pollers. Checkpoint every {checkpoint_s} s through `checkpoint::handlers_evidence` (the handlers' records; no \
         queue metric) with a late-event allowance of {late_s} s; compaction every {compact_s} s. Reproduce: {reproduce}.\n\n",
        run_start.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        steps.iter().map(|(r, s)| format!("{r:.0}/s for {s} s")).collect::<Vec<_>>().join(", then "),
        mapping.batch_size,
        mapping.window_seconds,
        mapping.max_concurrency
    ));
    let verdict = |ok: bool| if ok { "✔" } else { "✘" };
    md.push_str("## Figures\n\n| measure | value |\n|---|---|\n");
    md.push_str(&format!(
        "| changes made | {} ({puts} puts and overwrites, {deletes} deletes) over {initial} initial objects |\n",
        ops.len()
    ));
    md.push_str(&format!(
        "| generator rate achieved | **{:.1}/s** over {gen_span:.0} s (worst lag behind its open-loop schedule {lag_max} ms; {} requests failed) |\n",
        changes / gen_span,
        retired.len()
    ));
    md.push_str(&format!(
        "| copies announced | {} (duplicated {}, reordered {}, late {}; {copies_failed} refused by the queue) |\n",
        copies.values().sum::<u64>(),
        copies.get("duplicated").unwrap_or(&0),
        copies.get("reordered").unwrap_or(&0),
        copies.get("late").unwrap_or(&0)
    ));
    md.push_str(&format!(
        "| delta path | {messages} messages (changes and copies) handled, {:.1}/s over the schedule, in {batches} batches (size p50 {:.0}, max {:.0}; {:.2} s p50, {:.2} s p99 per batch); {batch_errors} failed batches, {failed_messages} failed messages, {duplicates} duplicates dropped, {superseded} puts superseded |\n",
        messages as f64 / seconds as f64,
        percentile(&batch_sizes, 0.5),
        batch_sizes.last().copied().unwrap_or(0.0),
        percentile(&batch_seconds, 0.5),
        percentile(&batch_seconds, 0.99)
    ));
    md.push_str(&format!(
        "| event → captured | **p50 {p50:.2} s, p99 {p99:.2} s**, max {pmax:.2} s ({} changes; from the request's start to its batch's end) {} p99 ≤ 60 s |\n",
        latencies.len(),
        verdict(p99 <= 60.0)
    ));
    let (rpo50, rpo99, rpomax) = (percentile(&rpos, 0.5), percentile(&rpos, 0.99), rpos.last().copied().unwrap_or(f64::NAN));
    md.push_str(&format!(
        "| RPO during the run (sampled every second) | p50 {rpo50:.1} s, **p99 {rpo99:.1} s**, max {rpomax:.1} s {} p99 ≤ 120 s, {} never above 900 s |\n",
        verdict(rpo99 <= 120.0),
        verdict(rpomax <= 900.0)
    ));
    md.push_str(&format!(
        "| S3 event → SQS (the emulated EventBridge's delivery) | p50 {:.2} s, p99 {:.2} s, max {:.2} s (the allowance of {late_s} s must cover it) |\n",
        percentile(&delays, 0.5),
        percentile(&delays, 0.99),
        delays.last().copied().unwrap_or(f64::NAN)
    ));
    md.push_str(&format!("| delta queue depth | max {depth_max}; {backlog_left} left after {drain_secs:.0} s of draining at the end |\n"));
    md.push_str(&format!(
        "| CPU per change | delta handlers {:.2} ms (their runtime's threads); whole test process {:.2} ms (with the emulated mapping's polling and deletes, checkpoints, compaction and bookkeeping); emulator {:.2} ms; generator {:.2} ms |\n",
        per_change_ms(cpu.1),
        per_change_ms(cpu.0),
        per_change_ms(cpu.2),
        per_change_ms(gen_cpu)
    ));
    md.push_str(&format!("| recovery points sealed | {} |\n", pts.len()));
    md.push_str(&format!(
        "| catalog as of every sealed point vs the generator's log | {} points, **{mismatches_total} mismatched keys** {} |\n",
        pts.len(),
        verdict(mismatches_total == 0)
    ));
    md.push_str(&format!(
        "| changes lost | **{}** {} ({} puts overwritten before their event was handled, never readable) |\n",
        lost.len(),
        verdict(lost.is_empty()),
        unobservable.len()
    ));
    md.push_str(&format!(
        "| changes duplicated | **{dup_real}** events recorded twice {} (and {dup_copies} of the test's copies, announced twice, captured by two batches at once: same state) |\n",
        verdict(dup_real == 0)
    ));
    md.push_str(&format!(
        "| byte-level restores | {} prefixes × points, every object read back and its SHA-256 compared: **{restore_mismatches} mismatches** {} |\n",
        restore_lines.len(),
        verdict(restore_mismatches == 0)
    ));
    md.push_str(&format!("| total wall time | {:.0} s |\n\n", t_total.elapsed().as_secs_f64()));
    md.push_str(&format!("![latency, RPO and queue depth]({report_svg})\n\n"));
    if steps.len() > 1 {
        md.push_str(&format!(
            "## Steps\n\nA step keeps up when the generator kept its schedule (97 %), the queue grew by less than ten seconds of changes over it, and its changes were captured within 60 s (p99).\n\n| target/s | made/s | worst lag ms | handled/s | depth | p50 s | p99 s | keeps up |\n|---|---|---|---|---|---|---|---|\n{}\n\n**Largest rate sustained: {}** with {} delta batches at once.\n\n",
            step_lines.join("\n"),
            sustained.map_or("none of the steps".to_string(), |r| format!("{r:.0} changes/s")),
            mapping.max_concurrency
        ));
    }
    if !mismatch_traces.is_empty() {
        md.push_str("## Mismatches, traced (first three per point)\n\n");
        for t in &mismatch_traces {
            md.push_str(t);
            md.push('\n');
        }
        md.push('\n');
    }
    if !lost.is_empty() {
        md.push_str("## Lost changes (first 20)\n\n");
        for l in lost.iter().take(20) {
            md.push_str(&format!("- {l}\n"));
        }
        md.push('\n');
    }
    md.push_str("## Restores as of sealed points, compared object by object\n\n| point | prefix | restored | verified | objects in target | ambiguous | key mismatches | byte mismatches | s |\n|---|---|---|---|---|---|---|---|---|\n");
    for l in &restore_lines {
        md.push_str(l);
        md.push('\n');
    }
    md.push_str("\n## Compactions during the run\n\n");
    for c in compactions.lock().unwrap().iter() {
        md.push_str(&format!("- {c}\n"));
    }
    let notes = notes.lock().unwrap();
    md.push_str(&format!("\n## Checkpoint notes\n\n{} checkpoints did not seal or flagged a cross-check.\n", notes.len()));
    for n in notes.iter().take(20) {
        md.push_str(&format!("- {n}\n"));
    }
    md.push_str(
        "\n## Every sealed point against the generator's log\n\nA key is ambiguous when one of its changes was sent before the end of the point's second and acknowledged after the point, or was overwritten before it could be read; either state is then right.\n\n| point | sealed after (s) | keys | ambiguous | mismatches | first mismatch | check s |\n|---|---|---|---|---|---|---|\n",
    );
    for l in &verify_lines {
        md.push_str(l);
        md.push('\n');
    }
    std::fs::write(report_md, &md)?;
    println!("{md}");
    if mismatches_total > 0 || restore_mismatches > 0 || !lost.is_empty() || dup_real > 0 {
        bail!(
            "{mismatches_total} catalog mismatches, {restore_mismatches} restore mismatches, {} lost and {dup_real} duplicated changes; see {report_md}",
            lost.len()
        );
    }
    drop(server);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(n: u64, etag: &str, at: i64) -> Op {
        let t = DateTime::<Utc>::from_timestamp(at, 0).unwrap();
        Op { n, step: 0, key: "k".into(), etag: Some(etag.into()), sha256: None, sent: t, acked: t, lag_ms: 0 }
    }

    #[test]
    fn two_unobservable_puts_in_a_row_leave_the_key_possibly_absent() {
        // A key created by a put that the next put overwrote before either event was handled:
        // the vault never saw either, so at a point after both the key may be absent.
        let ops = HashMap::from([("k".to_string(), vec![op(1, "a", 10), op(2, "b", 11), op(3, "c", 20)])]);
        let t = DateTime::<Utc>::from_timestamp(12, 0).unwrap();
        let both = expected_at(&ops, &HashSet::from([1, 2]), t);
        assert_eq!(both["k"], vec![None, Some("a".into()), Some("b".into())]);
        // Only the second unobservable: the first was captured, so the key exists.
        let second = expected_at(&ops, &HashSet::from([2]), t);
        assert_eq!(second["k"], vec![Some("a".into()), Some("b".into())]);
        // Both observable: exactly the last acknowledged state.
        assert_eq!(expected_at(&ops, &HashSet::new(), t)["k"], vec![Some("b".into())]);
    }
}
