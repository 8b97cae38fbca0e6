//! The delta handlers' backlog records (`changes::backlog`) and the watermark the checkpoint derives from them.
//!
//! A batch is recorded before it is handled and removed after; a failed change stays pinned until
//! it is handled; a batch that died is cleared by the batch that handles its redelivered
//! messages; many batches at once lose nothing; and the watermark never passes a message still
//! unhandled, while an empty queue lets it reach the present.

use std::collections::HashSet;
use std::sync::Arc;

use bytes::Bytes;
use chrono::{DateTime, Duration, Utc};
use tidemark_core::changes::backlog::{self, Received, Seen};
use tidemark_core::changes::checkpoint::watermark_from_handlers;
use tidemark_core::config::EngineConfig;
use tidemark_core::engine::Engine;
use tidemark_core::ports::{Backlog, PutOptions};
use tidemark_testkit::fakes::{mem_engine, MemObjectStore};

const SRC: &str = "src";

fn t(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(1_790_000_000_000 + ms).unwrap()
}

fn msg(id: &str, body: &str, sent: DateTime<Utc>, receive_count: u32) -> Received {
    Received { id: id.into(), body: body.into(), sent_at: Some(sent), receive_count }
}

async fn world() -> Engine {
    let s3 = Arc::new(MemObjectStore::new());
    s3.create(SRC, false);
    s3.create("vault", true);
    let engine = mem_engine(s3, EngineConfig::new("vault"));
    engine.control().set_protected(SRC, Utc::now()).await.unwrap();
    engine
}

/// A put of `key` with its AWS-form event.
async fn put_event(engine: &Engine, key: &str) -> String {
    let w = engine.source.put(SRC, key, Bytes::from(key.to_string()), &PutOptions::default()).await.unwrap();
    serde_json::json!({"version":"0","id":"e","detail-type":"Object Created","source":"aws.s3","time": Utc::now().to_rfc3339(),
        "detail":{"bucket":{"name":SRC},"object":{"key":key,"size":key.len(),"etag":w.etag,"sequencer":"00A"}}})
    .to_string()
}

#[tokio::test]
async fn a_batch_is_recorded_while_it_is_handled_and_its_newest_send_is_remembered() {
    let engine = world().await;
    let empty = backlog::seen(&engine).await.unwrap();
    assert_eq!((empty.newest_received, empty.oldest_unhandled, empty.open_batches), (None, None, 0));

    let (a, b) = (put_event(&engine, "a").await, put_event(&engine, "b").await);
    let batch = vec![msg("m1", &a, t(1_000), 1), msg("m2", &b, t(3_000), 1)];
    let open = backlog::begin(&engine, &batch).await.unwrap();
    let during = backlog::seen(&engine).await.unwrap();
    assert_eq!((during.oldest_unhandled, during.newest_received, during.open_batches), (Some(t(1_000)), Some(t(3_000)), 1));
    backlog::finish(&engine, open, &HashSet::new()).await.unwrap();
    let after = backlog::seen(&engine).await.unwrap();
    assert_eq!((after.oldest_unhandled, after.newest_received, after.open_batches), (None, Some(t(3_000)), 0));

    // The whole path: handle() records, captures and closes.
    let c = put_event(&engine, "c").await;
    let report = backlog::handle(&engine, &[msg("m3", &c, t(5_000), 1)]).await.unwrap();
    assert_eq!(report.captured, 1);
    let done = backlog::seen(&engine).await.unwrap();
    assert_eq!((done.oldest_unhandled, done.newest_received, done.open_batches), (None, Some(t(5_000)), 0));
}

#[tokio::test]
async fn a_failed_change_stays_pinned_until_a_later_batch_handles_it_but_a_malformed_message_pins_nothing() {
    let engine = world().await;
    let a = put_event(&engine, "a").await;
    let b = put_event(&engine, "b").await;
    let open = backlog::begin(&engine, &[msg("m1", &a, t(1_000), 1), msg("m2", &b, t(2_000), 1)]).await.unwrap();
    backlog::finish(&engine, open, &HashSet::from(["m1".to_string()])).await.unwrap();
    let pinned = backlog::seen(&engine).await.unwrap();
    assert_eq!((pinned.pinned, pinned.oldest_unhandled, pinned.open_batches), (1, Some(t(1_000)), 0), "{pinned:?}");

    // Newer batches do not unpin it.
    let c = put_event(&engine, "c").await;
    backlog::handle(&engine, &[msg("m3", &c, t(9_000), 1)]).await.unwrap();
    assert_eq!(backlog::seen(&engine).await.unwrap().oldest_unhandled, Some(t(1_000)));
    // Its redelivery (or a redriven copy: the same body) does.
    backlog::handle(&engine, &[msg("m1", &a, t(1_000), 2)]).await.unwrap();
    let clear = backlog::seen(&engine).await.unwrap();
    assert_eq!((clear.pinned, clear.oldest_unhandled), (0, None), "{clear:?}");

    // A message that is no change of a protected bucket fails without holding anything back.
    let foreign = a.replace(&format!("\"name\":\"{SRC}\""), "\"name\":\"someone-elses\"");
    let report = backlog::handle(&engine, &[msg("m4", "not json", t(10_000), 1), msg("m5", &foreign, t(10_000), 1)]).await.unwrap();
    assert_eq!(report.failed.len(), 2);
    let after = backlog::seen(&engine).await.unwrap();
    assert_eq!((after.pinned, after.oldest_unhandled), (0, None), "{after:?}");
}

#[tokio::test]
async fn a_batch_that_died_holds_its_messages_until_their_redelivery_is_handled() {
    let engine = world().await;
    let a = put_event(&engine, "a").await;
    let b = put_event(&engine, "b").await;
    // The invocation recorded its batch and died; the queue hands the messages out again.
    backlog::begin(&engine, &[msg("m1", &a, t(1_000), 1), msg("m2", &b, t(1_500), 1)]).await.unwrap();
    let c = put_event(&engine, "c").await;
    backlog::handle(&engine, &[msg("m3", &c, t(4_000), 1)]).await.unwrap();
    let held = backlog::seen(&engine).await.unwrap();
    assert_eq!((held.oldest_unhandled, held.open_batches), (Some(t(1_000)), 1), "{held:?}");
    // One of the two comes back first: the other still holds the watermark.
    backlog::handle(&engine, &[msg("m1", &a, t(1_000), 2)]).await.unwrap();
    assert_eq!(backlog::seen(&engine).await.unwrap().oldest_unhandled, Some(t(1_500)));
    backlog::handle(&engine, &[msg("m2", &b, t(1_500), 2)]).await.unwrap();
    let clear = backlog::seen(&engine).await.unwrap();
    assert_eq!((clear.oldest_unhandled, clear.open_batches), (None, 0), "{clear:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn many_batches_at_once_lose_no_record() {
    let engine = world().await;
    let mut bodies = Vec::new();
    for i in 0..120 {
        bodies.push(put_event(&engine, &format!("k{i:03}")).await);
    }
    // 40 batches of three at once: several share a lane, so their writes conflict and retry.
    let mut tasks = tokio::task::JoinSet::new();
    for (n, chunk) in bodies.chunks(3).enumerate() {
        let engine = engine.clone();
        let batch: Vec<Received> =
            chunk.iter().enumerate().map(|(i, b)| msg(&format!("m{n}-{i}"), b, t((n * 3 + i) as i64 * 10), 1)).collect();
        tasks.spawn(async move { backlog::handle(&engine, &batch).await.map(|r| r.captured) });
    }
    let mut captured = 0;
    while let Some(r) = tasks.join_next().await {
        captured += r.unwrap().unwrap();
    }
    assert_eq!(captured, 120);
    let seen = backlog::seen(&engine).await.unwrap();
    assert_eq!((seen.open_batches, seen.pinned, seen.oldest_unhandled, seen.newest_received), (0, 0, None, Some(t(1_190))));
}

#[test]
fn the_watermark_stays_the_allowance_behind_the_oldest_unhandled_message_and_an_empty_queue_moves_it_on() {
    let allowance = Duration::seconds(2);
    let seen = |newest: Option<i64>, oldest: Option<i64>| Seen {
        at: t(100_000),
        newest_received: newest.map(t),
        oldest_unhandled: oldest.map(t),
        open_batches: 0,
        pinned: 0,
    };
    let unknown = Backlog::Unknown { reason: "no metric here".into() };
    // Busy, nothing held: the newest message received.
    assert_eq!(watermark_from_handlers(&seen(Some(50_000), None), &unknown, allowance), Ok(t(48_000)));
    // A message received and not handled holds it.
    assert_eq!(watermark_from_handlers(&seen(Some(50_000), Some(20_000)), &unknown, allowance), Ok(t(18_000)));
    // The queue seen empty: everything sent before then was handled, but pins still hold.
    let empty = Backlog::Empty { at: t(90_000) };
    assert_eq!(watermark_from_handlers(&seen(Some(50_000), None), &empty, allowance), Ok(t(88_000)));
    assert_eq!(watermark_from_handlers(&seen(None, None), &empty, allowance), Ok(t(88_000)));
    assert_eq!(watermark_from_handlers(&seen(Some(50_000), Some(30_000)), &empty, allowance), Ok(t(28_000)));
    // The metric never moves it past the records; before the first batch it is all there is.
    let metric = Backlog::Oldest { at: t(95_000), oldest_sent: t(70_000) };
    assert_eq!(watermark_from_handlers(&seen(Some(50_000), None), &metric, allowance), Ok(t(48_000)));
    assert_eq!(watermark_from_handlers(&seen(None, None), &metric, allowance), Ok(t(68_000)));
    // No batch and a queue that cannot tell: nothing to seal on, and the reason says why.
    let err = watermark_from_handlers(&seen(None, None), &unknown, allowance).unwrap_err();
    assert!(err.contains("no delta batch") && err.contains("no metric here"), "{err}");
}
