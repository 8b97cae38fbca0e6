//! The delta queue's backlog as the delta handlers saw it: the checkpoint's evidence for the watermark.
//!
//! No queue says, at the moment a checkpoint runs, how old its oldest unhandled message is: SQS
//! publishes that only as a CloudWatch metric a minute or more late, and no local emulator
//! publishes it at all. The handlers know better, because SQS stamps every message with the
//! time it was sent (`SentTimestamp`). So every delta batch goes through [`handle`], which
//!
//! 1. before handling anything, records the batch in one of [`LANES`] control items (a lane is
//!    chosen by the batch's id, so concurrent batches rarely write the same item): the sent time
//!    and a fingerprint of each message, and the newest sent time the lane has ever received;
//! 2. calls `changes::delta::process_batch`;
//! 3. afterwards pins the messages that failed and hold a change of a protected bucket (they go
//!    back to the queue) in the `pinned` item, unpins the ones that were pinned and are now
//!    handled, and removes the batch from its lane. A batch holding a redelivered message
//!    (received before, so an earlier batch may have died holding it) also removes that message
//!    from any other lane's batch. A malformed message, or one about a bucket this vault does not
//!    protect, fails too but holds no change, so it holds no point back.
//!
//! [`seen`] reads the lanes and the pins in one request. Every message sent before the newest
//! sent time any batch received has been received (the queue hands messages out roughly in the
//! order they were sent; the late-event allowance covers the rest, with EventBridge's delivery
//! delay and the event source mapping's batching window), and every received message is either
//! handled or still recorded. So the oldest unhandled message was sent no earlier than the older
//! of the two, which is what `changes::checkpoint` seals behind.
//!
//! A message that keeps failing stays pinned after it is dead-lettered: the RPO then stops
//! advancing and its alarm fires, as the delta dead-letter alarm says, until the message is
//! redriven and handled (pins are fingerprints of the body, so a redriven copy clears them).

use std::collections::{BTreeMap, HashSet};

use chrono::{DateTime, Utc};
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::changes::delta::{process_batch, DeltaMessage, DeltaReport};
use crate::changes::events::parse_change;
use crate::engine::Engine;
use crate::ports::{ControlStore, Message};
use crate::{Error, Result};

/// How many lane items the batches spread over: well above the delta function's default
/// concurrency (20), so that two batches rarely share one, and within one BatchGetItem (100).
pub const LANES: usize = 64;

/// Compare-and-set attempts on one item before the batch gives up (transiently).
const MAX_ATTEMPTS: u32 = 40;

/// One message of a delta batch as the queue handed it out.
#[derive(Debug, Clone)]
pub struct Received {
    pub id: String,
    pub body: String,
    /// SQS's `SentTimestamp`.
    pub sent_at: Option<DateTime<Utc>>,
    /// SQS's `ApproximateReceiveCount`; above 1, an earlier batch may have died holding it.
    pub receive_count: u32,
}

impl From<&Message> for Received {
    fn from(m: &Message) -> Self {
        Received { id: m.id.clone(), body: m.body.clone(), sent_at: m.sent_at, receive_count: m.receive_count }
    }
}

/// What the handlers' records say about the delta queue, as of `at`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    /// When the records were read.
    pub at: DateTime<Utc>,
    /// The newest sent time any batch has received; `None` before the first batch.
    pub newest_received: Option<DateTime<Utc>>,
    /// The oldest sent time of a message received (or failed) and not yet handled.
    pub oldest_unhandled: Option<DateTime<Utc>>,
    /// Batches in progress (or that died in progress) and messages pinned by failures.
    pub open_batches: usize,
    pub pinned: usize,
}

/// A message as a lane records it: its fingerprint and sent time (milliseconds).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Entry {
    fp: String,
    sent: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct OpenBatch {
    /// When the batch was recorded (milliseconds; for operators reading the item).
    received: i64,
    messages: Vec<Entry>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Lane {
    /// The newest sent time (milliseconds) of any message a batch of this lane received.
    #[serde(default)]
    newest_sent: i64,
    /// Batches received and not yet finished, by batch id.
    #[serde(default)]
    open: BTreeMap<String, OpenBatch>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Pinned {
    /// Messages that failed and went back to the queue: fingerprint → sent time (milliseconds).
    #[serde(default)]
    messages: BTreeMap<String, i64>,
}

fn pk(engine: &Engine) -> String {
    format!("backlog#{}", engine.config.vault_bucket)
}

fn lane_sk(i: usize) -> String {
    format!("lane#{i:02}")
}

const PINNED_SK: &str = "pinned";

/// A body's fingerprint: the same change delivered twice, or redriven, has the same one.
fn fingerprint(body: &str) -> String {
    hex::encode(&Sha256::digest(body.as_bytes())[..8])
}

/// The sent time a message is recorded with. Without `SentTimestamp` the event's own time stands
/// in (it is never later than the send), and without that the Unix epoch, which holds the
/// watermark back until the message is handled and so shows up in the RPO, never hides it.
fn sent_millis(m: &Received) -> i64 {
    m.sent_at.or_else(|| parse_change(&m.body).ok().flatten().map(|e| e.time)).map_or(0, |t| t.timestamp_millis())
}

/// Reads, changes and writes back one JSON item with compare-and-set, retrying on conflicts;
/// `change` returns false when there is nothing to write.
async fn update<T: Default + Serialize + DeserializeOwned>(
    store: &dyn ControlStore,
    pk: &str,
    sk: &str,
    mut change: impl FnMut(&mut T) -> bool,
) -> Result<()> {
    for attempt in 0..MAX_ATTEMPTS {
        let current = store.get(pk, sk).await?;
        let mut value: T = match &current {
            Some(item) => serde_json::from_str(&item.body).map_err(|e| Error::corrupt(format!("control item {pk}/{sk}"), e.to_string()))?,
            None => T::default(),
        };
        if !change(&mut value) {
            return Ok(());
        }
        let body = serde_json::to_string(&value).expect("backlog items serialise");
        let written = match &current {
            Some(item) => store.replace(pk, sk, item.version, &body).await?,
            None => store.put_new(pk, sk, &body, None).await?,
        };
        if written {
            return Ok(());
        }
        // Another batch wrote the item between the read and the write: read it again, after a
        // short, growing, jittered pause so that the contenders spread out.
        let pause = 2 + u64::from(attempt) * 3 + rand::random::<u64>() % 5;
        tokio::time::sleep(std::time::Duration::from_millis(pause)).await;
    }
    Err(Error::port("backlog", format!("control item {pk}/{sk} kept changing under {MAX_ATTEMPTS} attempts to update it"), true))
}

/// A batch recorded in its lane by [`begin`], to be closed by [`finish`].
#[derive(Debug, Clone)]
pub struct OpenRecord {
    id: String,
    lane: usize,
    /// Message id → its entry.
    entries: Vec<(String, Entry)>,
    /// Some message was received before: earlier batches may still list it.
    redelivered: bool,
    /// Fingerprints of this batch that were pinned when it began.
    was_pinned: HashSet<String>,
}

/// Records a batch before any of it is handled.
pub async fn begin(engine: &Engine, batch: &[Received]) -> Result<OpenRecord> {
    let pk = pk(engine);
    let entries: Vec<(String, Entry)> =
        batch.iter().map(|m| (m.id.clone(), Entry { fp: fingerprint(&m.body), sent: sent_millis(m) })).collect();
    let mut ids: Vec<&str> = batch.iter().map(|m| m.id.as_str()).collect();
    ids.sort_unstable();
    // The same batch handed out again (a retried invocation) gets the same id and entry.
    let digest = Sha256::digest(ids.join("\n").as_bytes());
    let id = hex::encode(&digest[..8]);
    let lane = (u64::from_be_bytes(digest[..8].try_into().expect("8 bytes")) % LANES as u64) as usize;
    let newest = entries.iter().map(|(_, e)| e.sent).max().unwrap_or(0);
    let open = OpenBatch { received: engine.clock.now().timestamp_millis(), messages: entries.iter().map(|(_, e)| e.clone()).collect() };
    update(engine.control.as_ref(), &pk, &lane_sk(lane), |l: &mut Lane| {
        l.newest_sent = l.newest_sent.max(newest);
        l.open.insert(id.clone(), open.clone());
        true
    })
    .await?;
    let pinned: Pinned = match engine.control.get(&pk, PINNED_SK).await? {
        Some(item) => {
            serde_json::from_str(&item.body).map_err(|e| Error::corrupt(format!("control item {pk}/{PINNED_SK}"), e.to_string()))?
        }
        None => Pinned::default(),
    };
    let was_pinned = entries.iter().filter(|(_, e)| pinned.messages.contains_key(&e.fp)).map(|(_, e)| e.fp.clone()).collect();
    Ok(OpenRecord { id, lane, entries, redelivered: batch.iter().any(|m| m.receive_count > 1), was_pinned })
}

/// Closes a batch: `failed` (ids of messages that go back to the queue holding a change) stay
/// pinned; the others are done, so they leave the lanes and the pins.
pub async fn finish(engine: &Engine, open: OpenRecord, failed: &HashSet<String>) -> Result<()> {
    let pk = pk(engine);
    let store = engine.control.as_ref();
    let failed_entries: Vec<&Entry> = open.entries.iter().filter(|(id, _)| failed.contains(id)).map(|(_, e)| e).collect();
    let failed_fps: HashSet<&str> = failed_entries.iter().map(|e| e.fp.as_str()).collect();
    let handled: HashSet<&str> = open.entries.iter().map(|(_, e)| e.fp.as_str()).filter(|fp| !failed_fps.contains(fp)).collect();
    // Pins first: a message must be pinned before the batch that held it lets go of it.
    let unpin: Vec<&String> = open.was_pinned.iter().filter(|fp| handled.contains(fp.as_str())).collect();
    if !failed_entries.is_empty() || !unpin.is_empty() {
        update(store, &pk, PINNED_SK, |p: &mut Pinned| {
            let mut changed = false;
            for e in &failed_entries {
                let sent = p.messages.entry(e.fp.clone()).or_insert(e.sent);
                changed |= *sent >= e.sent;
                *sent = (*sent).min(e.sent);
            }
            for fp in &unpin {
                changed |= p.messages.remove(fp.as_str()).is_some();
            }
            changed
        })
        .await?;
    }
    if open.redelivered {
        // An earlier batch that died (or outlived its visibility timeout) still lists these
        // messages; they are handled now, so they hold nothing back any more.
        let sks: Vec<String> = (0..LANES).map(lane_sk).collect();
        for item in store.get_many(&pk, &sks).await? {
            let lane: Lane =
                serde_json::from_str(&item.body).map_err(|e| Error::corrupt(format!("control item {pk}/{}", item.sk), e.to_string()))?;
            let stale = lane.open.iter().any(|(id, b)| *id != open.id && b.messages.iter().any(|e| handled.contains(e.fp.as_str())));
            if stale {
                update(store, &pk, &item.sk, |l: &mut Lane| {
                    let before: usize = l.open.values().map(|b| b.messages.len()).sum();
                    for (id, b) in l.open.iter_mut() {
                        if *id != open.id {
                            b.messages.retain(|e| !handled.contains(e.fp.as_str()));
                        }
                    }
                    l.open.retain(|_, b| !b.messages.is_empty());
                    before != l.open.values().map(|b| b.messages.len()).sum::<usize>()
                })
                .await?;
            }
        }
    }
    update(store, &pk, &lane_sk(open.lane), |l: &mut Lane| l.open.remove(&open.id).is_some()).await
}

/// Handles one delta batch with its bookkeeping: the one entry point of the delta function, the
/// local runner's drain and the load test.
///
/// A batch whose bookkeeping fails is an error as a whole, so every message comes back and is
/// handled again (as a duplicate where it was captured), which repairs the records.
#[tracing::instrument(name = "step", skip_all, fields(step = "delta batch", messages = batch.len()))]
pub async fn handle(engine: &Engine, batch: &[Received]) -> Result<DeltaReport> {
    let open = begin(engine, batch).await?;
    let messages: Vec<DeltaMessage> = batch.iter().map(|m| DeltaMessage { id: m.id.clone(), body: m.body.clone() }).collect();
    match process_batch(engine, &messages).await {
        Ok(report) => {
            let failed: HashSet<&str> = report.failed.iter().map(|(id, _)| id.as_str()).collect();
            let held = holding_changes(engine, batch.iter().filter(|m| failed.contains(m.id.as_str()))).await?;
            finish(engine, open, &held).await?;
            Ok(report)
        }
        Err(e) => {
            let held = match holding_changes(engine, batch.iter()).await {
                Ok(held) => held,
                Err(_) => batch.iter().map(|m| m.id.clone()).collect(),
            };
            if let Err(f) = finish(engine, open, &held).await {
                // The batch stays recorded as open, which holds the watermark back until its
                // messages come back and are handled.
                tracing::warn!(error = %f, "delta batch failed and its messages could not be pinned");
            }
            Err(e)
        }
    }
}

/// The ids of the messages that hold a change of a bucket this vault protects: only those can
/// hold a point back when they fail.
async fn holding_changes(engine: &Engine, failed: impl Iterator<Item = &Received>) -> Result<HashSet<String>> {
    let control = engine.control();
    let mut protected: BTreeMap<String, bool> = BTreeMap::new();
    let mut out = HashSet::new();
    for m in failed {
        let Ok(Some(ev)) = parse_change(&m.body) else { continue };
        let known = match protected.get(&ev.bucket) {
            Some(k) => *k,
            None => {
                let k = control.is_protected(&ev.bucket).await?;
                protected.insert(ev.bucket.clone(), k);
                k
            }
        };
        if known {
            out.insert(m.id.clone());
        }
    }
    Ok(out)
}

/// Reads what the handlers recorded, in one request.
pub async fn seen(engine: &Engine) -> Result<Seen> {
    let pk = pk(engine);
    let at = engine.clock.now();
    let mut sks: Vec<String> = (0..LANES).map(lane_sk).collect();
    sks.push(PINNED_SK.to_string());
    let mut newest: Option<i64> = None;
    let mut oldest: Option<i64> = None;
    let (mut open_batches, mut pinned) = (0, 0);
    for item in engine.control.get_many(&pk, &sks).await? {
        let corrupt = |e: serde_json::Error| Error::corrupt(format!("control item {pk}/{}", item.sk), e.to_string());
        if item.sk == PINNED_SK {
            let p: Pinned = serde_json::from_str(&item.body).map_err(corrupt)?;
            pinned += p.messages.len();
            oldest = p.messages.values().copied().chain(oldest).min();
        } else {
            let l: Lane = serde_json::from_str(&item.body).map_err(corrupt)?;
            newest = newest.max(Some(l.newest_sent));
            open_batches += l.open.len();
            oldest = l.open.values().flat_map(|b| b.messages.iter().map(|e| e.sent)).chain(oldest).min();
        }
    }
    let time = |ms: i64| DateTime::from_timestamp_millis(ms).unwrap_or(DateTime::UNIX_EPOCH);
    Ok(Seen { at, newest_received: newest.map(time), oldest_unhandled: oldest.map(time), open_batches, pinned })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_body_has_one_fingerprint_and_a_missing_sent_time_falls_back_to_the_event_or_the_epoch() {
        assert_eq!(fingerprint("a"), fingerprint("a"));
        assert_ne!(fingerprint("a"), fingerprint("b"));
        let event = r#"{"version":"0","id":"e","detail-type":"Object Created","source":"aws.s3","time":"2026-11-21T10:00:01Z","detail":{"bucket":{"name":"b"},"object":{"key":"k","etag":"x"}}}"#;
        let m = |body: &str, sent_at| Received { id: "m".into(), body: body.into(), sent_at, receive_count: 1 };
        let sent = DateTime::from_timestamp_millis(1_790_000_000_123).unwrap();
        assert_eq!(sent_millis(&m(event, Some(sent))), 1_790_000_000_123);
        assert_eq!(sent_millis(&m(event, None)), "2026-11-21T10:00:01Z".parse::<DateTime<Utc>>().unwrap().timestamp_millis());
        assert_eq!(sent_millis(&m("not json", None)), 0);
    }
}
