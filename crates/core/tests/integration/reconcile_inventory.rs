//! Reconciliation from an S3 Inventory report delivered to a bucket (an `s3://` manifest), read
//! through the ObjectStore port, on the in-memory fakes.

use std::sync::Arc;

use bytes::Bytes;
use tidemark_core::changes::reconcile::{reconcile, ReconcileOptions};
use tidemark_core::config::EngineConfig;

use tidemark_core::ports::{ObjectStore, PutOptions};
use tidemark_testkit::fakes::{mem_engine, MemObjectStore};
use tidemark_testkit::inventory_gen::{object_body, rows, write_report, ReportSpec};

#[tokio::test(flavor = "multi_thread")]
async fn an_s3_manifest_reconciles_like_a_local_one() {
    let s3 = Arc::new(MemObjectStore::new());
    for b in ["src", "vault", "reports"] {
        s3.create(b, b == "vault");
    }
    let engine = mem_engine(s3.clone(), EngineConfig::new("vault"));
    let dir = tempfile::tempdir().unwrap();
    let mut spec = ReportSpec::new(60, 2);
    spec.source_bucket = "src".into();
    spec.max_size = Some(2_000);
    spec.content_etags = true;
    let report = write_report(dir.path(), &spec).unwrap();
    let current: Vec<_> = rows(&spec).filter(|r| r.is_latest && !r.is_delete_marker).collect();
    for r in &current {
        s3.put("src", &r.key, Bytes::from(object_body(&r.key, r.size)), &PutOptions::default()).await.unwrap();
    }
    // The report as S3 Inventory delivers it: the manifest, its checksum and the data files.
    let mut keys = vec![report.manifest_key.clone(), report.manifest_key.replace("manifest.json", "manifest.checksum")];
    keys.extend(report.data_keys.iter().cloned());
    for key in &keys {
        let body = std::fs::read(report.path(key)).unwrap();
        s3.put("reports", key, Bytes::from(body), &PutOptions::default()).await.unwrap();
    }
    engine.control().set_protected("src", engine.clock.now()).await.unwrap();

    let s3_url = format!("s3://reports/{}", report.manifest_key);
    let opts = ReconcileOptions { prefix: String::new(), inventory_manifest: Some(s3_url) };
    let r = reconcile(&engine, "src", &opts).await.unwrap();
    assert_eq!(r.source, "inventory");
    assert_eq!(r.source_objects, current.len() as u64);
    assert_eq!((r.missing, r.puts, r.deletes), (current.len() as u64, current.len() as u64, 0), "{r:?}");

    // The local copy of the same report now finds nothing missing: both read the same rows.
    let opts = ReconcileOptions { prefix: String::new(), inventory_manifest: Some(report.manifest_url.clone()) };
    let again = reconcile(&engine, "src", &opts).await.unwrap();
    assert_eq!((again.source_objects, again.missing, again.changed, again.puts), (current.len() as u64, 0, 0, 0), "{again:?}");

    // A report of another bucket is refused, naming both.
    let opts = ReconcileOptions { prefix: String::new(), inventory_manifest: Some(format!("s3://reports/{}", report.manifest_key)) };
    engine.control().set_protected("vault", engine.clock.now()).await.unwrap();
    let e = reconcile(&engine, "vault", &opts).await.unwrap_err().to_string();
    assert!(e.contains("describes bucket src, not vault"), "{e}");
}
