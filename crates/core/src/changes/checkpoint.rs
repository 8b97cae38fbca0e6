//! The checkpoint: the watermark the delta queue's evidence allows, and sealing recovery points at it.
//!
//! One seal path serves the checkpoint function (evidence: what the delta handlers recorded,
//! `changes::backlog`, with the queue's own report beside it) and `tidemark sync` (evidence: the
//! drain it just did). A point at watermark T is sealed only when no seed run
//! of the bucket is unfinished, whatever prefix it seeds, and it lists every live registered
//! segment; a point is never written behind the latest one.

use chrono::{DateTime, Duration, SubsecRound, Utc};
use serde::{Deserialize, Serialize};

use crate::changes::backlog::Seen;
use crate::control::Lifecycle;
use crate::engine::Engine;
use crate::ports::Backlog;
use crate::protect::lifecycle::{self, Observed};
use crate::vault::point::{self, RecoveryPoint};
use crate::vault::segment::SegmentMeta;
use crate::Result;
use tracing::Instrument;

/// What a seal attempt did.
#[derive(Debug, Clone, PartialEq)]
pub enum Sealed {
    /// A new point was written at this time.
    New(RecoveryPoint),
    /// The latest point is already at or after the watermark.
    UpToDate(DateTime<Utc>),
    /// A seed run is still in progress, so no point can be complete yet.
    SeedInProgress(String),
}

impl Sealed {
    /// The time of the point that is now the latest, if one was sealed or already covered the watermark.
    pub fn time(&self) -> Option<DateTime<Utc>> {
        match self {
            Sealed::New(p) => Some(p.time),
            Sealed::UpToDate(t) => Some(*t),
            Sealed::SeedInProgress(_) => None,
        }
    }
}

/// What the checkpoint knows about the delta queue when it seals.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Evidence {
    /// What the queue reports about its oldest unhandled message.
    Backlog(Backlog),
    /// What the delta handlers recorded (the checkpoint function), with the queue's own report,
    /// which can only add to it (an empty queue) or contradict it (its age metric; see
    /// [`cross_check`]).
    Handlers { seen: Seen, queue: Backlog },
    /// The queue was drained by this process, starting at this instant (`tidemark sync`).
    Drained { started: DateTime<Utc> },
}

/// The watermark the evidence allows, or why there is none.
///
/// A change reaches the queue some time after it happened (EventBridge delivery, retries), so the
/// watermark stays `late_allowance` behind the oldest message still unhandled, or behind the moment
/// the queue was seen empty or its drain began. It is never later than `now`.
pub fn watermark(evidence: &Evidence, late_allowance: Duration, now: DateTime<Utc>) -> std::result::Result<DateTime<Utc>, String> {
    let w = match evidence {
        Evidence::Backlog(b) => watermark_from_backlog(b, late_allowance).ok_or_else(|| match b {
            Backlog::Unknown { reason } => reason.clone(),
            other => format!("{other:?}"),
        })?,
        Evidence::Drained { started } => watermark_after_drain(*started, late_allowance),
        Evidence::Handlers { seen, queue } => watermark_from_handlers(seen, queue, late_allowance)?,
    };
    Ok(w.min(now))
}

/// The watermark for a drained queue: changes older than `drain_started - allowance` are assumed delivered.
pub fn watermark_after_drain(drain_started: DateTime<Utc>, late_allowance: Duration) -> DateTime<Utc> {
    drain_started - late_allowance
}

/// The watermark the delta queue's backlog allows, if any; `None` when the queue cannot tell:
/// sealing then waits, and the RPO metric shows it.
pub fn watermark_from_backlog(backlog: &Backlog, late_allowance: Duration) -> Option<DateTime<Utc>> {
    match backlog {
        Backlog::Empty { at } => Some(*at - late_allowance),
        Backlog::Oldest { at, oldest_sent } => Some((*oldest_sent).min(*at) - late_allowance),
        Backlog::Unknown { .. } => None,
    }
}

/// The checkpoint function's evidence: the handlers' records, then the queue's own report.
///
/// The records are read first: a message handled between the two reads then shows in neither,
/// and one that arrives between them is younger than both.
pub async fn handlers_evidence(engine: &Engine) -> Result<Evidence> {
    let seen = crate::changes::backlog::seen(engine).await?;
    let queue = engine.queue.oldest_unhandled(&engine.queues.delta).await?;
    Ok(Evidence::Handlers { seen, queue })
}

/// The watermark the handlers' records allow: every message sent before the newest one a batch
/// received has been received (or, later still, before the moment the queue was seen empty), and
/// every received message not yet handled is recorded, so nothing older than the older of the
/// two is unhandled. Before the first batch the queue's own report decides.
pub fn watermark_from_handlers(seen: &Seen, queue: &Backlog, late_allowance: Duration) -> std::result::Result<DateTime<Utc>, String> {
    let received = match (seen.newest_received, queue) {
        (newest, Backlog::Empty { at }) => newest.map_or(*at, |n| n.max(*at)),
        (Some(newest), _) => newest,
        (None, Backlog::Oldest { .. }) => return watermark_from_backlog(queue, late_allowance).ok_or_else(|| format!("{queue:?}")),
        (None, Backlog::Unknown { reason }) => return Err(format!("no delta batch has been recorded yet and {reason}")),
    };
    let oldest = seen.oldest_unhandled.map_or(received, |o| o.min(received));
    Ok(oldest.min(seen.at) - late_allowance)
}

/// The queue's age metric against the handlers' records: the metric says that at `at` a message
/// sent at `oldest_sent` was still in the queue; if a point sealed before `at` lies after that
/// message, the point was sealed too early (unless the message holds no change of the bucket,
/// such as a dead-lettered foreign event). Returns the warning, if there is one.
pub async fn cross_check(engine: &Engine, bucket: &str, queue: &Backlog) -> Result<Option<String>> {
    let Backlog::Oldest { at, oldest_sent } = queue else { return Ok(None) };
    let vault_bucket = engine.config.vault_bucket.as_str();
    let Some(last) = point::list_points(engine.vault.as_ref(), vault_bucket, bucket).await?.last().cloned() else { return Ok(None) };
    let p = point::read_point(engine.vault.as_ref(), vault_bucket, &last).await?;
    if p.time > *oldest_sent && p.sealed_at < *at {
        let warning = format!(
            "cross-check: the queue's age metric shows a message sent at {} still unhandled at {}, after point {} was sealed at {}",
            oldest_sent.to_rfc3339(),
            at.to_rfc3339(),
            p.time.to_rfc3339(),
            p.sealed_at.to_rfc3339()
        );
        tracing::warn!(bucket, %warning, "watermark cross-check failed");
        return Ok(Some(warning));
    }
    Ok(None)
}

/// Seals a recovery point of `bucket` at `watermark` listing every live registered segment, if
/// no seed run of the bucket is unfinished and the point moves time forward.
///
/// The caller guarantees that every change with event time ≤ `watermark` is captured (that is
/// what the evidence behind the watermark says).
pub async fn seal(engine: &Engine, bucket: &str, watermark: DateTime<Utc>, now: DateTime<Utc>) -> Result<Sealed> {
    let control = engine.control();
    let vault_bucket = engine.config.vault_bucket.as_str();
    // A seed of any prefix holds sealing back: a point sealed mid-seed would miss objects of
    // that prefix without saying so.
    if let Some(run) = control.active_runs(bucket).await?.into_iter().next() {
        return Ok(Sealed::SeedInProgress(run.run_id));
    }
    // Truncated to milliseconds, so that the point's file name and its `time` agree exactly.
    let watermark = watermark.trunc_subsecs(3);
    if let Some(last) = point::list_points(engine.vault.as_ref(), vault_bucket, bucket).await?.last() {
        let p = point::read_point(engine.vault.as_ref(), vault_bucket, last).await?;
        if p.time >= watermark {
            return Ok(Sealed::UpToDate(p.time));
        }
    }
    // Segments replaced by a compacted one are left out: the compacted segment holds their records.
    let mut segments: Vec<SegmentMeta> = control.live_segments(bucket).await?.into_iter().map(|s| s.meta).collect();
    segments.sort_by(|a, b| a.key.cmp(&b.key));
    // Keys whose changes could not be captured are named, so that a restore reports them
    // instead of leaving them out without a word.
    let unprotected = control
        .failures(bucket)
        .await?
        .into_iter()
        .map(|(_, f)| point::Unprotected { key: f.key, reason: f.reason, since: f.since, until: f.until })
        .collect();
    let point = RecoveryPoint {
        format: "tidemark-recovery-point".into(),
        version: point::FORMAT_VERSION,
        bucket: bucket.into(),
        time: watermark,
        sealed_at: now,
        segments,
        unprotected,
    };
    point::write_point(engine.vault.as_ref(), vault_bucket, &point, engine.config.vault_sse()).await?;
    Ok(Sealed::New(point))
}

/// What the checkpoint did for one bucket.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BucketCheckpoint {
    pub bucket: String,
    /// The latest recovery point after this checkpoint (new or not).
    pub recovery_point: Option<DateTime<Utc>>,
    /// True when this checkpoint wrote a new point.
    pub sealed: bool,
    /// Now minus the latest recovery point.
    pub rpo_seconds: Option<i64>,
    pub note: Option<String>,
    /// The unfinished seed run that held sealing back, if one did.
    #[serde(skip)]
    pub seed_in_progress: Option<String>,
    /// When the source went away by design (deleted), if it did: no point is sealed after it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gone_since: Option<DateTime<Utc>>,
    /// The bucket exists again after being gone: protected again, to be seeded afresh.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub returned: bool,
    /// Why this bucket's checkpoint failed (a source that cannot be read), after the others were done.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The one seal path: for each bucket, seals a point at the watermark the evidence allows, and
/// reports the latest point and the RPO.
///
/// When the evidence allows no watermark nothing is sealed and the RPO grows, which the RPO alarm
/// sees; one bucket's seed in progress does not hold the others back.
pub async fn checkpoint(
    engine: &Engine,
    buckets: &[String],
    evidence: &Evidence,
    late_allowance: Duration,
) -> Result<Vec<BucketCheckpoint>> {
    let now = engine.clock.now();
    let watermark = watermark(evidence, late_allowance, now);
    let mut out = Vec::new();
    for bucket in buckets {
        let span = crate::telemetry::step_span("checkpoint");
        out.push(checkpoint_bucket(engine, bucket, evidence, &watermark, now).instrument(span).await?);
    }
    Ok(out)
}

/// The checkpoint of one bucket (see [`checkpoint`]), in its own step span.
async fn checkpoint_bucket(
    engine: &Engine,
    bucket: &str,
    evidence: &Evidence,
    watermark: &std::result::Result<DateTime<Utc>, String>,
    now: DateTime<Utc>,
) -> Result<BucketCheckpoint> {
    crate::telemetry::record(None, None, Some(bucket), Some(""));
    let mut res = BucketCheckpoint {
        bucket: bucket.to_string(),
        recovery_point: None,
        sealed: false,
        rpo_seconds: None,
        note: None,
        seed_in_progress: None,
        gone_since: None,
        returned: false,
        error: None,
    };
    // A source gone or unprotected on purpose seals nothing more: its points up to then
    // stay restorable, and the others carry on.
    if let Some(stopped) = lifecycle::stopped(engine, bucket).await? {
        match stopped.state {
            Lifecycle::Unprotected => res.note = Some(format!("unprotected since {}", stopped.since.to_rfc3339())),
            _ => match lifecycle::observe(engine, bucket).await {
                Ok(Observed::Returned { at }) => {
                    res.returned = true;
                    res.note = Some(format!("the bucket exists again (seen at {}); protect it afresh", at.to_rfc3339()));
                }
                Ok(_) => {
                    res.gone_since = Some(stopped.since);
                    res.note = Some(format!("gone since {} ({})", stopped.since.to_rfc3339(), stopped.reason));
                }
                Err(e) => res.error = Some(e.to_string()),
            },
        }
        res.recovery_point =
            point::recoverable_range(engine.vault.as_ref(), &engine.config.vault_bucket, bucket).await?.map(|(_, l)| l.time);
        return Ok(res);
    }
    let contradiction = match evidence {
        Evidence::Handlers { queue, .. } => cross_check(engine, bucket, queue).await?,
        _ => None,
    };
    match &watermark {
        Ok(w) => {
            let sealed = seal(engine, bucket, *w, now).await?;
            res.recovery_point = sealed.time();
            res.sealed = matches!(sealed, Sealed::New(_));
            if let Sealed::SeedInProgress(run) = sealed {
                res.note = Some(format!("seed run {run} in progress"));
                res.seed_in_progress = Some(run);
            }
            if let Evidence::Backlog(Backlog::Oldest { oldest_sent, .. }) = evidence {
                res.note.get_or_insert_with(|| format!("oldest unhandled change sent at {}", oldest_sent.to_rfc3339()));
            }
            if let Evidence::Handlers { seen, .. } = evidence {
                res.note.get_or_insert_with(|| {
                    let show = |t: Option<DateTime<Utc>>| t.map_or("none".to_string(), |t| t.to_rfc3339());
                    format!(
                        "oldest unhandled change sent at {}, newest received sent at {} ({} batches open, {} messages pinned)",
                        show(seen.oldest_unhandled),
                        show(seen.newest_received),
                        seen.open_batches,
                        seen.pinned
                    )
                });
            }
        }
        Err(reason) => res.note = Some(format!("not sealing: {reason}")),
    }
    if let Some(c) = contradiction {
        res.note = Some(match res.note.take() {
            Some(n) => format!("{n}; {c}"),
            None => c,
        });
    }
    if res.recovery_point.is_none() {
        if let Some((_, latest)) = point::recoverable_range(engine.vault.as_ref(), &engine.config.vault_bucket, bucket).await? {
            res.recovery_point = Some(latest.time);
        }
    }
    // Sealed first, then looked at: the point covers the changes handled before the bucket
    // went, and a deletion seen now is recorded as the end of the source, not an error.
    match lifecycle::observe(engine, bucket).await {
        Ok(Observed::Gone { since, reason, .. }) => {
            res.gone_since = Some(since);
            res.note = Some(format!("gone since {} ({reason})", since.to_rfc3339()));
        }
        Ok(_) => {}
        Err(e) => res.error = Some(format!("s3://{bucket} cannot be read: {e}")),
    }
    res.rpo_seconds = res.recovery_point.filter(|_| res.gone_since.is_none()).map(|p| (now - p).num_seconds());
    tracing::info!(sealed = res.sealed, recovery_point = ?res.recovery_point, note = ?res.note, "checkpoint");
    Ok(res)
}
