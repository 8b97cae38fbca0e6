//! Benchmarks the restore planner at a number of capture records and prints one JSON line: the
//! time to plan, the peak RSS of the planning process, tasks and objects planned.
//!
//! Usage: `tidemark-restore-plan-bench N --endpoint URL`. The parent writes a synthetic vault to
//! the S3 server at URL (SeaweedFS in `make bench`): N capture records in seed segments of
//! 10,000 disjoint keys each (as seed batches write them), plus 20 delta segments of 100
//! overwrites spread over the whole key space (which stay open for the whole merge), and a
//! recovery point naming them all. A child process of this binary then plans a restore of the
//! whole bucket, so that its peak RSS (VmHWM) is the planner's, not the generator's.

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use chrono::{TimeZone, Utc};
use serde_json::{json, Value};
use tidemark_aws::{AwsClients, ClientOptions, S3Store};
use tidemark_core::config::EngineConfig;
use tidemark_core::domain::{CaptureKind, CaptureRecord, Codec, Location};
use tidemark_core::ports::ObjectStore;
use tidemark_core::restore::plan::{self, TaskLimits};
use tidemark_core::restore::run::{self, RestoreState};
use tidemark_core::restore::RestoreRequest;
use tidemark_core::vault::point::{write_point, RecoveryPoint};
use tidemark_core::vault::segment::{self, SegmentKind};
use tidemark_testkit::fakes::{mem_engine, MemObjectStore};

const SEED_SEGMENT: u64 = 10_000;
const SOURCE: &str = "rpb-source";

fn peak_rss() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kb: u64 = status.lines().find(|l| l.starts_with("VmHWM:"))?.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

fn record(i: u64, generation: u64, t: chrono::DateTime<Utc>) -> CaptureRecord {
    let key = format!("p{:02}/obj-{i:09}", i % 50);
    let mut r = CaptureRecord::delete(SOURCE, &key, t, None, t);
    r.kind = CaptureKind::Put;
    r.size = 4096;
    r.etag = Some(format!("{:032x}", i * 7919 + generation));
    r.content_type = Some("application/octet-stream".into());
    r.location = Some(Location::Pack {
        pack: format!("v1/{SOURCE}/packs/2026-12-01/p{}.pack", i / SEED_SEGMENT),
        offset: (i % SEED_SEGMENT) * 4096,
        length: 4096,
        raw_length: 4096,
        codec: Codec::Raw,
        envelope: None,
    });
    r
}

fn vault_name(n: u64) -> String {
    format!("rpb-vault-{n}")
}

async fn store(endpoint: &str) -> Arc<dyn ObjectStore> {
    Arc::new(S3Store::new(AwsClients::load(&ClientOptions::local(endpoint)).await.s3))
}

/// Writes the synthetic vault unless it is there already.
async fn generate(endpoint: &str, n: u64) -> Result<()> {
    let s3 = store(endpoint).await;
    let vault = vault_name(n);
    if s3.bucket_exists(&vault).await? {
        return Ok(());
    }
    s3.create_bucket(&vault).await?;
    let t0 = Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0).unwrap();
    // Keys sort by prefix first: build them, sort, and cut seed segments of consecutive keys.
    let mut ids: Vec<u64> = (0..n).collect();
    ids.sort_by_key(|i| format!("p{:02}/obj-{i:09}", i % 50));
    let mut metas = Vec::new();
    for chunk in ids.chunks(SEED_SEGMENT as usize) {
        let recs: Vec<CaptureRecord> = chunk.iter().map(|&i| record(i, 0, t0)).collect();
        metas.push(segment::write(s3.as_ref(), &vault, SOURCE, SegmentKind::Seed, recs, Utc::now(), None).await?);
    }
    for d in 0..20u64 {
        let recs: Vec<CaptureRecord> =
            (0..100u64).map(|j| record((j * 104_729 + d * 7) % n, d + 1, t0 + chrono::Duration::minutes(d as i64 + 1))).collect();
        metas.push(segment::write(s3.as_ref(), &vault, SOURCE, SegmentKind::Delta, recs, Utc::now(), None).await?);
    }
    let time = t0 + chrono::Duration::hours(1);
    let point = RecoveryPoint {
        format: "tidemark-recovery-point".into(),
        version: tidemark_core::vault::point::FORMAT_VERSION,
        bucket: SOURCE.into(),
        time,
        sealed_at: time,
        segments: metas,
        unprotected: Vec::new(),
    };
    write_point(s3.as_ref(), &vault, &point, None).await?;
    Ok(())
}

/// Child mode: plans a restore of the whole bucket and reports time and peak RSS.
async fn measure(endpoint: &str, n: u64) -> Result<Value> {
    let vault_store = store(endpoint).await;
    let targets = Arc::new(MemObjectStore::new());
    let mut config = EngineConfig::new(vault_name(n));
    config.restore_task_objects = 5_000;
    let mut engine = mem_engine(targets.clone(), config);
    engine.vault = vault_store;
    engine.control().set_protected(SOURCE, Utc::now()).await?;
    let as_of = Utc.with_ymd_and_hms(2026, 11, 1, 1, 0, 0).unwrap();
    let req = RestoreRequest::copy_all(SOURCE, as_of, "rpb-target");
    let base_rss = peak_rss();
    let (started, _) = run::start(&engine, targets.as_ref(), req).await?;
    let t = Instant::now();
    let outcome =
        plan::plan(&engine, &started.restore_id, TaskLimits { objects: 5_000, bytes: 1 << 30 }, Duration::from_secs(3600)).await?;
    let secs = t.elapsed().as_secs_f64();
    let (_, r) = run::get(&engine, &started.restore_id).await?;
    if r.state != RestoreState::Restoring || r.plan.objects != n {
        bail!(
            "planning ended {:?} in state {} with {} objects planned, expected {n}: {:?}",
            outcome,
            r.state.name(),
            r.plan.objects,
            r.error
        );
    }
    Ok(
        json!({"records": n, "secs": secs, "peak_rss": peak_rss(), "base_rss": base_rss, "tasks": r.plan.tasks, "objects": r.plan.objects, "segments_verified": r.plan.segments_verified}),
    )
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let n: u64 = args.get(1).context("usage: tidemark-restore-plan-bench N --endpoint URL [--child]")?.parse().context("N")?;
    let endpoint = args.iter().position(|a| a == "--endpoint").and_then(|i| args.get(i + 1)).context("--endpoint URL")?.clone();
    if !endpoint.starts_with("http://127.0.0.1:") {
        bail!("the benchmark talks to a local S3 server on 127.0.0.1 only, not {endpoint}");
    }
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    if args.iter().any(|a| a == "--child") {
        println!("{}", rt.block_on(measure(&endpoint, n))?);
        return Ok(());
    }
    let t = Instant::now();
    rt.block_on(generate(&endpoint, n))?;
    let gen_secs = t.elapsed().as_secs_f64();
    let out = Command::new(std::env::current_exe()?)
        .args([&n.to_string(), "--endpoint", &endpoint, "--child"])
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()?;
    if !out.status.success() {
        bail!("the planning child failed");
    }
    let mut v: Value = serde_json::from_slice(&out.stdout)?;
    v["generate_secs"] = json!(gen_secs);
    println!("{v}");
    Ok(())
}
