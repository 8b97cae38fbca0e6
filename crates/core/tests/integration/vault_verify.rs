//! Verification of a vault on the fakes: a sound vault verifies; a damaged blob, a missing pack,
//! a missing large copy and a damaged segment are each reported with the source keys and points
//! they affect; steps with a spent budget continue from their cursor to the same report.

use super::support::{drain_work, seal};
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use tidemark_core::config::EngineConfig;
use tidemark_core::domain::Location;
use tidemark_core::plan::partition::PlanTargets;
use tidemark_core::ports::{list_all, Fetch, ObjectStore, PutOptions};
use tidemark_core::protect::seed::{seed, PlanSource};
use tidemark_core::vault::verify::{verify, verify_step, ProblemKind, VerifyOptions, VerifyReport};
use tidemark_core::vault::{pack, segment};
use tidemark_testkit::fakes::{mem_engine, MemObjectStore};

fn config() -> EngineConfig {
    let mut c = EngineConfig::new("vault");
    c.small_object_threshold = 2_000;
    c.batch_objects = 15;
    c.concurrency = 2;
    c
}

/// 40 small keys and 3 large ones (copied server-side), seeded and sealed at a point.
async fn world() -> (Arc<MemObjectStore>, DateTime<Utc>) {
    let s3 = Arc::new(MemObjectStore::new());
    s3.create("src", false);
    s3.create("vault", true);
    let engine = mem_engine(s3.clone(), config());
    for i in 0..40 {
        s3.put("src", &format!("small/{i:03}"), Bytes::from(format!("body of {i} ").repeat(10)), &PutOptions::default()).await.unwrap();
    }
    for i in 0..3 {
        s3.put("src", &format!("large/{i}"), Bytes::from(vec![b'a' + i as u8; 3_000]), &PutOptions::default()).await.unwrap();
    }
    seed(&engine, "src", "", PlanSource::Listing(PlanTargets { objects: 20, ..Default::default() })).await.unwrap();
    drain_work(&engine).await;
    let t = seal(&engine).await;
    (s3, t)
}

fn opts() -> VerifyOptions {
    VerifyOptions { source: None, sample: 1.0, concurrency: 2 }
}

async fn keys(s3: &MemObjectStore, prefix: &str) -> Vec<String> {
    list_all(s3, "vault", prefix, None).await.unwrap().objects.into_iter().map(|o| o.key).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sound_vault_verifies_and_each_kind_of_damage_is_named_with_what_it_affects() {
    let (s3, t) = world().await;
    let r = verify(s3.as_ref(), &tidemark_core::vault::crypt::NoKeys, "vault", &opts()).await.unwrap();
    assert!(r.ok(), "{:?}", r.problems);
    assert_eq!((r.buckets.clone(), r.points, r.large_objects, r.large_objects_total), (vec!["src".to_string()], 1, 3, 3));
    assert_eq!(r.blobs, 40);
    assert!(r.packs >= 3 && r.packs == r.packs_total && r.segments >= 3, "{r:?}");

    // A damaged byte inside one blob: only that blob's key is named, with the point.
    let packs = keys(&s3, "v1/src/packs/").await;
    let Fetch::Found((_, bytes)) = s3.get("vault", &packs[0], None, None).await.unwrap() else { panic!() };
    let footer = pack::parse_pack(&bytes).unwrap();
    let victim = &footer.records[1];
    let Some(Location::Pack { offset, .. }) = &victim.location else { panic!() };
    s3.damage("vault", &packs[0], *offset as usize + 2).unwrap();
    // A missing pack names all its keys.
    let Fetch::Found((_, other)) = s3.get("vault", &packs[1], None, None).await.unwrap() else { panic!() };
    let lost: Vec<String> = pack::parse_pack(&other).unwrap().records.into_iter().map(|r| r.key).collect();
    s3.delete("vault", &packs[1]).await.unwrap();
    // A missing large copy (its recorded version deleted).
    let copy = keys(&s3, "v1/src/objects/").await.remove(0);
    let versions = tidemark_core::ports::key_versions(s3.as_ref(), "vault", &copy).await.unwrap();
    s3.delete_version("vault", &copy, versions[0].version_id.as_deref().unwrap()).await.unwrap();

    // A damaged trailer: restores still read the blobs, but a rebuild could not use the footer.
    let Fetch::Found((_, third)) = s3.get("vault", &packs[2], None, None).await.unwrap() else { panic!() };
    s3.damage("vault", &packs[2], third.len() - 1).unwrap();

    let r = verify(s3.as_ref(), &tidemark_core::vault::crypt::NoKeys, "vault", &opts()).await.unwrap();
    assert!(!r.ok());
    let find =
        |object: &str| r.problems.iter().find(|p| p.object == object).unwrap_or_else(|| panic!("{object} not reported: {:?}", r.problems));
    let p = find(&packs[0]);
    assert_eq!((p.kind, p.source_keys.clone(), p.recovery_points.clone()), (ProblemKind::Damaged, vec![victim.key.clone()], vec![t]));
    // A compressed blob fails to decompress, a raw one fails its SHA-256; either names the key.
    assert!(p.detail.contains(&victim.key), "{}", p.detail);
    let p = find(&packs[1]);
    assert_eq!((p.kind, p.source_keys.clone(), p.recovery_points.clone()), (ProblemKind::Missing, lost.clone(), vec![t]));
    let p = find(&copy);
    assert_eq!(p.kind, ProblemKind::Missing);
    assert_eq!(p.source_keys.len(), 1);
    assert!(p.source_keys[0].starts_with("large/"), "{p:?}");
    let p = find(&packs[2]);
    assert_eq!((p.kind, p.source_keys_total), (ProblemKind::Damaged, 0), "{p:?}");
    assert!(p.detail.contains("trailer magic"), "{}", p.detail);
    assert_eq!(r.problems.len(), 4, "{:?}", r.problems);

    // A damaged segment: named with its key range and the point.
    // Its records live in the catalog object its header names; damage is found there.
    let seg = keys(&s3, "v1/src/index/").await.remove(0);
    let Fetch::Found((_, header)) = s3.get("vault", &seg, None, None).await.unwrap() else { panic!() };
    let body_key = segment::records_object(s3.as_ref(), "vault", &seg).await.unwrap();
    assert!(body_key.starts_with("v1/src/catalog/"), "{body_key}");
    let Fetch::Found((_, body)) = s3.get("vault", &body_key, None, None).await.unwrap() else { panic!() };
    let text = String::from_utf8(body.to_vec()).unwrap();
    s3.damage("vault", &body_key, text.rfind("\"etag\":\"").unwrap() + 8).unwrap();
    let r = verify(s3.as_ref(), &tidemark_core::vault::crypt::NoKeys, "vault", &opts()).await.unwrap();
    let p = r.problems.iter().find(|p| p.object == seg).expect("the segment is reported");
    assert_eq!((p.kind, p.recovery_points.clone()), (ProblemKind::Damaged, vec![t]));
    assert!(p.detail.contains("sha256") && p.detail.contains(&body_key), "{}", p.detail);
    let (_, recs) = segment::decode_apart(&seg, &header, text.as_bytes()).unwrap();
    assert_eq!(p.source_keys.first(), Some(&recs[0].key));
}

#[tokio::test(flavor = "multi_thread")]
async fn steps_out_of_time_continue_from_their_cursor_to_the_same_report() {
    let (s3, _) = world().await;
    let packs = keys(&s3, "v1/src/packs/").await;
    s3.damage("vault", &packs[packs.len() - 1], 0).unwrap();
    let whole = verify(s3.as_ref(), &tidemark_core::vault::crypt::NoKeys, "vault", &opts()).await.unwrap();
    let mut steps = 0;
    let mut total = VerifyReport::default();
    let mut cursor = None;
    loop {
        // A deadline already past: each step checks one round (two objects) and stops.
        let (r, next) =
            verify_step(s3.as_ref(), &tidemark_core::vault::crypt::NoKeys, "vault", &opts(), cursor, Some(Instant::now())).await.unwrap();
        total.absorb(r);
        steps += 1;
        match next {
            None => break,
            Some(c) => cursor = Some(c),
        }
        assert!(steps < 100, "the steps make no progress");
    }
    assert!(steps >= 3, "{steps} steps");
    assert_eq!(
        (total.packs, total.blobs, total.large_objects, total.segments, total.records, total.problems.clone()),
        (whole.packs, whole.blobs, whole.large_objects, whole.segments, whole.records, whole.problems.clone())
    );
    assert_eq!(total.problems.len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_verify_requests_are_clear_errors() {
    let (s3, _) = world().await;
    let e = verify(s3.as_ref(), &tidemark_core::vault::crypt::NoKeys, "vault", &VerifyOptions { source: Some("other".into()), ..opts() })
        .await
        .unwrap_err();
    assert!(e.to_string().contains("holds nothing of s3://other"), "{e}");
    let e = verify(s3.as_ref(), &tidemark_core::vault::crypt::NoKeys, "no-vault", &opts()).await.unwrap_err();
    assert!(e.to_string().contains("no-vault does not exist"), "{e}");
    let e = verify(s3.as_ref(), &tidemark_core::vault::crypt::NoKeys, "vault", &VerifyOptions { sample: 0.0, ..opts() }).await.unwrap_err();
    assert!(e.to_string().contains("not a fraction"), "{e}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_segment_whose_catalog_object_is_gone_is_named_with_the_missing_object() {
    let (s3, t) = world().await;
    let seg = keys(&s3, "v1/src/index/").await.remove(0);
    let body_key = segment::records_object(s3.as_ref(), "vault", &seg).await.unwrap();
    s3.delete("vault", &body_key).await.unwrap();
    let r = verify(s3.as_ref(), &tidemark_core::vault::crypt::NoKeys, "vault", &opts()).await.unwrap();
    let p = r.problems.iter().find(|p| p.object == seg).expect("the segment is reported");
    assert_eq!((p.kind, p.recovery_points.clone()), (ProblemKind::Damaged, vec![t]));
    assert!(p.detail.contains(&body_key) && p.detail.contains("missing"), "{}", p.detail);
    // The streaming reader a restore uses says the same.
    let err = segment::SegmentStream::open(s3.as_ref(), "vault", &seg, 4096).await.err().expect("no stream without its records");
    assert!(err.to_string().contains(&body_key), "{err}");
}
