//! The seeder function's handlers: a seed request, or the scheduled reconciliation.

use serde::{Deserialize, Serialize};
use tidemark_core::changes::reconcile;
use tidemark_core::engine::Engine;
use tidemark_core::plan::partition::PlanTargets;

use crate::LambdaError;

/// The seeder's request (a console test event or the protect API).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SeedRequest {
    pub source_bucket: String,
    #[serde(default)]
    pub prefix: String,
    #[serde(default)]
    pub target_objects: Option<u64>,
    /// Seed from this S3 Inventory manifest instead of listing.
    #[serde(default)]
    pub inventory_manifest: Option<String>,
    /// Seed every version and delete marker (overrides TIDEMARK_ALL_VERSIONS for this run).
    #[serde(default)]
    pub all_versions: Option<bool>,
}

/// What the seeder did.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SeedResponse {
    pub run_id: String,
    pub tasks: usize,
    pub enqueued: usize,
    pub resumed: bool,
    /// `planning` while a stepwise seed is summarising its report (`tasks` is 0 until planned),
    /// then `running` and `complete`.
    pub state: String,
}

/// Seeder: plans a run by listing and enqueues its tasks, or, with an inventory manifest,
/// starts the stepwise seed (`protect::steps`): one summarise message per data file, handled by
/// the worker function, so that no invocation's time grows with the report.
pub async fn seeder_handler(engine: &Engine, req: SeedRequest) -> Result<SeedResponse, LambdaError> {
    let mut engine = engine.clone();
    if let Some(all) = req.all_versions {
        engine.config.all_versions = all;
    }
    let engine = &engine;
    let targets = PlanTargets { objects: req.target_objects.unwrap_or(engine.config.target_objects), ..Default::default() };
    let s = match req.inventory_manifest {
        Some(url) => tidemark_core::protect::steps::start(engine, &req.source_bucket, &req.prefix, &url, targets).await?,
        None => {
            let source = tidemark_core::protect::seed::PlanSource::Listing(targets);
            tidemark_core::protect::seed::seed(engine, &req.source_bucket, &req.prefix, source).await?
        }
    };
    let state = serde_json::to_value(s.run.state).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default();
    Ok(SeedResponse { run_id: s.run.run_id.clone(), tasks: s.run.task_total() as usize, enqueued: s.enqueued, resumed: s.resumed, state })
}

/// The daily reconciliation request the deployed schedule sends to the seeder function
/// (`{"mode":"reconcile","buckets":[...]}`, see `infra/events/reconcile.json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReconcileRequest {
    /// Always `reconcile`; the field is what tells this request from a [`SeedRequest`].
    pub mode: String,
    pub buckets: Vec<String>,
    #[serde(default)]
    pub prefix: String,
    /// Compare a bucket with this S3 Inventory manifest (by bucket name) instead of listing it.
    #[serde(default)]
    pub inventory_manifests: std::collections::BTreeMap<String, String>,
    /// Where the source-account stack delivers the inventory reports (`s3://<bucket>/<prefix>`;
    /// empty: none). Each bucket without a manifest above is compared with its newest complete
    /// report there, or listed when it has none (the result says why).
    #[serde(default)]
    pub inventory_destination: String,
}

/// What reconciliation found in one bucket.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReconcileResult {
    pub bucket: String,
    pub reconciled_puts: u64,
    pub reconciled_deletes: u64,
    pub missing: u64,
    pub changed: u64,
    /// `inventory` or `listing`.
    pub source: String,
    /// The bucket was deleted by design at this time: nothing to compare, not an error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gone_since: Option<chrono::DateTime<chrono::Utc>>,
    /// The inventory manifest compared with, when `source` is `inventory`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manifest: Option<String>,
    /// Why the bucket was listed although an inventory destination was given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listed_because: Option<String>,
}

/// Reconcile: compares each bucket with the catalog and captures what the events missed.
///
/// Each bucket is compared with its newest complete S3 Inventory report under
/// `inventory_destination` when there is one (cheaper than listing a large bucket), else listed,
/// with a warning that says why.
///
/// The reconciled records land in delta segments that the next checkpoint seals into a point.
/// One bucket failing does not stop the others; the error is returned after all were tried, so
/// the schedule's retry policy and dead-letter queue see it.
pub async fn reconcile_handler(engine: &Engine, req: ReconcileRequest) -> Result<Vec<ReconcileResult>, LambdaError> {
    let mut out = Vec::new();
    let mut first_error = None;
    for bucket in &req.buckets {
        let (manifest, mut listed_because) = match req.inventory_manifests.get(bucket) {
            Some(m) => (Some(m.clone()), None),
            None if req.inventory_destination.trim().is_empty() => (None, None),
            None => match reconcile::newest_manifest(engine.source.as_ref(), req.inventory_destination.trim(), bucket).await {
                Ok(m) => (Some(m), None),
                Err(why) => (None, Some(why)),
            },
        };
        let opts = |inventory_manifest| reconcile::ReconcileOptions { prefix: req.prefix.clone(), inventory_manifest };
        let mut result = reconcile::reconcile(engine, bucket, &opts(manifest.clone())).await;
        // A report that cannot be used (malformed, checksum mismatch, no ETag column) must not
        // stop the daily check: the bucket is listed instead, and the result says why.
        if let (Err(e), Some(m)) = (&result, &manifest) {
            if !req.inventory_manifests.contains_key(bucket) && !e.is_transient() {
                listed_because = Some(format!("inventory report {m} could not be used: {e}"));
                result = reconcile::reconcile(engine, bucket, &opts(None)).await;
            }
        }
        if let Some(why) = &listed_because {
            tracing::warn!(%bucket, reason = %why, "reconciling by listing the bucket instead of its inventory report");
        }
        match result {
            Ok(r) => out.push(ReconcileResult {
                bucket: bucket.clone(),
                reconciled_puts: r.puts,
                reconciled_deletes: r.deletes,
                missing: r.missing,
                changed: r.changed,
                manifest: (r.source == "inventory").then(|| manifest.clone()).flatten(),
                source: r.source,
                gone_since: r.gone_since,
                listed_because,
            }),
            Err(e) => {
                tracing::error!(%bucket, error = %e, "reconciliation failed");
                first_error.get_or_insert(e);
            }
        }
    }
    match first_error {
        Some(e) => Err(e.into()),
        None => Ok(out),
    }
}

/// The seeder function's entry: a reconciliation request (`"mode": "reconcile"`) or a seed request.
pub async fn seeder_dispatch(engine: &Engine, event: serde_json::Value) -> Result<serde_json::Value, LambdaError> {
    let bad = |e: serde_json::Error| LambdaError::Engine(tidemark_core::Error::Invalid(format!("seeder request: {e}")));
    match event.get("mode").and_then(|m| m.as_str()) {
        Some("reconcile") => {
            let req: ReconcileRequest = serde_json::from_value(event).map_err(bad)?;
            let res = reconcile_handler(engine, req).await;
            // What reconciliation captured counts as captured, failed buckets or not.
            crate::metrics::print_capture_tally(engine.clock.now().timestamp_millis());
            let res = res?;
            Ok(serde_json::json!({ "reconciled": res }))
        }
        Some(other) => Err(LambdaError::Engine(tidemark_core::Error::Invalid(format!(
            "seeder request has mode '{other}'; the only mode is 'reconcile' (omit it to seed)"
        )))),
        None => {
            let req: SeedRequest = serde_json::from_value(event).map_err(bad)?;
            let res = seeder_handler(engine, req).await?;
            Ok(serde_json::to_value(res).expect("seed response serialises"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    use chrono::Utc;
    use tidemark_core::config::EngineConfig;
    use tidemark_core::engine::QueueUrls;
    use tidemark_core::ports::{ObjectStore, PutOptions, SystemClock};
    use tidemark_testkit::fakes::{MemControlStore, MemObjectStore, MemQueue};

    fn engine(store: Arc<MemObjectStore>) -> Engine {
        Engine {
            source: store.clone(),
            vault: store,
            control: Arc::new(MemControlStore::new()),
            queue: Arc::new(MemQueue::new()),
            clock: Arc::new(SystemClock),
            keys: Arc::new(tidemark_core::memory::MemKeys::new()),
            config: EngineConfig::new("vault"),
            queues: QueueUrls::default(),
        }
    }

    /// The deployed schedule's input (`infra/events/reconcile.json`'s shape) reaches reconciliation
    /// through the seeder's entry point; other modes and malformed requests are clear errors.
    #[tokio::test]
    async fn the_seeder_dispatches_the_scheduled_reconcile_request() {
        let store = Arc::new(MemObjectStore::new());
        store.create("acme-prod-data", false);
        store.create("vault", true);
        let e = engine(store.clone());
        e.control().set_protected("acme-prod-data", Utc::now()).await.unwrap();
        store.put("acme-prod-data", "missed.txt", bytes_of("x"), &PutOptions::default()).await.unwrap();
        let event: serde_json::Value =
            serde_json::from_str(include_str!("../../../infra/events/reconcile.json")).expect("the console event parses");
        let out = seeder_dispatch(&e, event).await.unwrap();
        assert_eq!(out["reconciled"][0]["bucket"], "acme-prod-data", "{out}");
        assert_eq!(out["reconciled"][0]["reconciled_puts"], 1, "{out}");
        assert_eq!(out["reconciled"][0]["reconciled_deletes"], 0, "{out}");
        assert_eq!(e.control().segments("acme-prod-data").await.unwrap().len(), 1, "one reconcile segment is registered");

        let bad = seeder_dispatch(&e, serde_json::json!({"mode": "sideways", "buckets": []})).await.unwrap_err();
        assert!(bad.to_string().contains("the only mode is 'reconcile'"), "{bad}");
        let unknown = seeder_dispatch(&e, serde_json::json!({"mode": "reconcile", "buckets": ["not-protected"]})).await.unwrap_err();
        assert!(unknown.to_string().contains("not protected"), "{unknown}");
        let malformed = seeder_dispatch(&e, serde_json::json!({"prefix": "x/"})).await.unwrap_err();
        assert!(malformed.to_string().contains("source_bucket"), "{malformed}");
    }

    fn bytes_of(s: &str) -> bytes::Bytes {
        bytes::Bytes::from(s.to_string())
    }
}
