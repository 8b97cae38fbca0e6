//! The daily reconciliation reads the newest complete S3 Inventory report, on the local stack (moto).
//!
//! The schedule's request names the inventory destination the source-account stack configured
//! (`inventory_destination`). Under it, a bucket has three reports: an older complete one, a newer
//! complete one and a newest whose `manifest.checksum` S3 has not written yet; reconciliation must
//! compare the bucket with the newer complete one. A bucket with no report yet is listed instead,
//! and the result says why.

use std::sync::Arc;

use anyhow::Result;
use bytes::Bytes;
use chrono::Utc;
use tidemark_aws::{admin, AwsClients, ClientOptions, DynamoControlStore, S3Store, SqsQueue};
use tidemark_core::config::EngineConfig;
use tidemark_core::engine::{Engine, QueueUrls};
use tidemark_core::ports::{ObjectStore, PutOptions, SystemClock};
use tidemark_lambda::seeder_dispatch;
use tidemark_testkit::harness;
use tidemark_testkit::inventory_gen::{object_body, rows, write_report, ReportSpec};

const DEST: &str = "inv-reports";
const PREFIX: &str = "tidemark-inventory";

fn spec(objects: u64, timestamp: &str) -> ReportSpec {
    let mut spec = ReportSpec::new(objects, 1);
    spec.source_bucket = "inv-src".into();
    spec.prefix = PREFIX.into();
    spec.config_id = tidemark_core::changes::reconcile::INVENTORY_CONFIG_ID.into();
    spec.timestamp = timestamp.into();
    // Data file names derive from the seed: distinct seeds keep the reports' files apart, as
    // S3's random names do.
    spec.seed = objects;
    spec.max_size = Some(2_000);
    spec.content_etags = true;
    spec
}

/// Writes a report into the destination bucket; without its checksum when `complete` is false.
async fn deliver(s3: &S3Store, spec: &ReportSpec, complete: bool) -> Result<String> {
    let dir = tempfile::tempdir()?;
    let report = write_report(dir.path(), spec)?;
    let mut keys = vec![report.manifest_key.clone()];
    if complete {
        keys.push(report.manifest_key.replace("manifest.json", "manifest.checksum"));
    }
    keys.extend(report.data_keys.iter().cloned());
    for key in &keys {
        s3.put(DEST, key, Bytes::from(std::fs::read(report.path(key))?), &PutOptions::default()).await?;
    }
    Ok(format!("s3://{DEST}/{}", report.manifest_key))
}

#[tokio::test(flavor = "multi_thread")]
async fn reconciliation_reads_the_newest_complete_report_and_lists_a_bucket_without_one() -> Result<()> {
    let moto = harness::start_moto()?;
    let c = AwsClients::load(&ClientOptions::local(&moto.endpoint)).await;
    admin::ensure_vault_bucket(&c, "inv-vault", 1).await?;
    let (work, _) = admin::ensure_queue(&c, "inv-work", 30).await?;
    admin::ensure_table(&c, "inv-control").await?;
    let s3 = Arc::new(S3Store::new(c.s3.clone()));
    let engine = Engine {
        source: s3.clone(),
        vault: s3.clone(),
        control: Arc::new(DynamoControlStore::new(c.dynamodb.clone(), "inv-control")),
        queue: Arc::new(SqsQueue::new(c.sqs.clone())),
        clock: Arc::new(SystemClock),
        keys: Arc::new(tidemark_core::memory::MemKeys::new()),
        config: EngineConfig::new("inv-vault"),
        queues: QueueUrls { work, delta: String::new(), restore: String::new() },
    };
    for b in ["inv-src", "inv-empty", DEST] {
        s3.create_bucket(b).await?;
    }
    // The bucket holds what the newer report lists; the older one lists fewer keys.
    let newer = spec(12, "2026-11-29T06-00Z");
    for r in rows(&newer).filter(|r| r.is_latest && !r.is_delete_marker) {
        s3.put("inv-src", &r.key, Bytes::from(object_body(&r.key, r.size)), &PutOptions::default()).await?;
    }
    deliver(&s3, &spec(5, "2026-11-28T06-00Z"), true).await?;
    let newer_url = deliver(&s3, &newer, true).await?;
    deliver(&s3, &spec(20, "2026-11-30T06-00Z"), false).await?;
    for i in 0..3 {
        s3.put("inv-empty", &format!("k{i}"), Bytes::from_static(b"x"), &PutOptions::default()).await?;
    }
    for b in ["inv-src", "inv-empty"] {
        engine.control().set_protected(b, Utc::now()).await?;
    }

    let out = seeder_dispatch(
        &engine,
        serde_json::json!({"mode": "reconcile", "buckets": ["inv-src", "inv-empty"], "inventory_destination": format!("s3://{DEST}/{PREFIX}")}),
    )
    .await?;
    let (src, empty) = (&out["reconciled"][0], &out["reconciled"][1]);
    assert_eq!(src["source"], "inventory", "{out}");
    assert_eq!(src["manifest"], newer_url.as_str(), "the newest complete report: {out}");
    assert_eq!(src["reconciled_puts"], 12, "every key of that report was missing from the catalog: {out}");
    assert!(src.get("listed_because").is_none(), "{out}");
    assert_eq!(empty["source"], "listing", "{out}");
    assert!(empty["listed_because"].as_str().unwrap_or_default().contains("no inventory report under s3://inv-reports/"), "{out}");
    assert_eq!(empty["reconciled_puts"], 3, "{out}");

    // Without a complete report at all (only the one S3 is still writing), the bucket is listed.
    let reason = tidemark_core::changes::reconcile::newest_manifest(s3.as_ref(), &format!("s3://{DEST}/{PREFIX}"), "inv-other").await;
    assert!(reason.is_err());
    s3.put(
        DEST,
        &format!("{PREFIX}/inv-other/tidemark/2026-11-30T06-00Z/manifest.json"),
        Bytes::from_static(b"{}"),
        &PutOptions::default(),
    )
    .await?;
    let reason = tidemark_core::changes::reconcile::newest_manifest(s3.as_ref(), &format!("s3://{DEST}/{PREFIX}"), "inv-other").await;
    assert!(reason.as_ref().unwrap_err().contains("has no manifest.checksum yet"), "{reason:?}");
    Ok(())
}
