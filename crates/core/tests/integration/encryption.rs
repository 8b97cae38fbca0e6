//! Encrypted vaults on the fakes: with a vault key no vault object holds the plaintext of a small
//! source object (and without one the same scan finds it, so the scan can fail), every vault
//! write names the key for SSE-KMS, and the vault restores exactly, verifies and rebuilds; packs
//! written before the key was configured still restore beside encrypted ones; a key that cannot
//! be used is named by restore and verify.

use super::support::{drain_work, seal};
use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use tidemark_core::config::EngineConfig;
use tidemark_core::domain::Location;
use tidemark_core::engine::Engine;
use tidemark_core::memory::MemKeys;
use tidemark_core::plan::partition::PlanTargets;
use tidemark_core::ports::{list_all, Fetch, ObjectStore, PutOptions, SameStore};
use tidemark_core::protect::seed::{seed, PlanSource};
use tidemark_core::protocol::local::drive_restore;
use tidemark_core::rebuild::{rebuild, RebuildOptions};
use tidemark_core::restore::run::{self, RestoreState};
use tidemark_core::restore::{load_state, RestoreRequest};
use tidemark_core::vault::crypt::NoKeys;
use tidemark_core::vault::pack;
use tidemark_core::vault::verify::{verify, VerifyOptions};
use tidemark_testkit::fakes::{mem_engine, MemObjectStore};

const SMALL: usize = 24;

fn config(key: Option<&str>) -> EngineConfig {
    let mut c = EngineConfig::new("vault");
    c.small_object_threshold = 4_000;
    c.batch_objects = 10;
    c.concurrency = 3;
    c.restore_task_objects = 9;
    c.kms_key_id = key.map(String::from);
    c
}

fn engine(s3: &Arc<MemObjectStore>, keys: &Arc<MemKeys>, key: Option<&str>) -> Engine {
    let mut e = mem_engine(s3.clone(), config(key));
    e.keys = keys.clone();
    e
}

/// A distinctive body: a marker naming the key and generation, then the bytes of a SHA-256 chain,
/// which zstd cannot shrink (stored raw without a key, so a scan finds it); objects whose key
/// ends in 0, 4 or 8 are text that zstd shrinks, so both codecs are sealed.
fn body(key: &str, generation: u32) -> Vec<u8> {
    let mut out = format!("PLAINTEXT-MARK {key} gen {generation}: ").into_bytes();
    let n = 300 + key.len() * 37 % 900;
    if key.ends_with('0') || key.ends_with('4') || key.ends_with('8') {
        while out.len() < n {
            out.extend_from_slice(format!("repeated words of {key}, ").as_bytes());
        }
    } else {
        let mut h = Sha256::digest(key.as_bytes());
        while out.len() < n {
            out.extend_from_slice(&h);
            h = Sha256::digest(h);
        }
    }
    out
}

async fn put(s3: &MemObjectStore, key: &str, data: Vec<u8>) {
    s3.put("src", key, Bytes::from(data), &PutOptions::default()).await.unwrap();
}

/// Every vault object, with its bytes.
async fn vault_objects(s3: &MemObjectStore) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for o in list_all(s3, "vault", "", None).await.unwrap().objects {
        let Fetch::Found((_, b)) = s3.get("vault", &o.key, None, None).await.unwrap() else { panic!("{} vanished", o.key) };
        out.push((o.key, b.to_vec()));
    }
    out
}

/// The (vault key, source key) pairs where a 24-byte window of a small source object's body (its
/// start, middle or end) appears in a pack or a segment. Large objects are server-side copies,
/// protected by SSE-KMS only, so they are left out (the test checks that they name the key).
fn plaintext_hits(vault: &[(String, Vec<u8>)], small: &BTreeMap<String, Vec<u8>>) -> Vec<(String, String)> {
    let mut hits = Vec::new();
    for (vk, bytes) in vault.iter().filter(|(k, _)| !k.contains("/objects/")) {
        for (sk, data) in small {
            let windows = [0, data.len() / 2 - 12, data.len() - 24].map(|i| &data[i..i + 24]);
            if windows.iter().any(|w| bytes.windows(24).any(|b| b == *w)) {
                hits.push((vk.clone(), sk.clone()));
            }
        }
    }
    hits
}

async fn world(key: Option<&str>) -> (Arc<MemObjectStore>, Arc<MemKeys>, Engine, DateTime<Utc>, BTreeMap<String, Vec<u8>>) {
    let s3 = Arc::new(MemObjectStore::new());
    s3.create("src", false);
    s3.create("vault", true);
    let keys = Arc::new(MemKeys::new());
    let key = key.map(|_| keys.create_key());
    let engine = engine(&s3, &keys, key.as_deref());
    let mut small = BTreeMap::new();
    for i in 0..SMALL {
        let k = format!("{}/obj-{i:03}", ["a", "b", "c"][i % 3]);
        small.insert(k.clone(), body(&k, 1));
        put(&s3, &k, body(&k, 1)).await;
    }
    put(&s3, "empty", Vec::new()).await;
    put(&s3, "large/one", body("large/one", 1).repeat(20)).await;
    seed(&engine, "src", "", PlanSource::Listing(PlanTargets { objects: 12, ..Default::default() })).await.unwrap();
    drain_work(&engine).await;
    let t = seal(&engine).await;
    (s3, keys, engine, t, small)
}

/// The objects of a target bucket (the restore's marker left out).
async fn restored(s3: &MemObjectStore, target: &str) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    for o in list_all(s3, target, "", None).await.unwrap().objects {
        if o.key.contains(".tidemark-restore/") {
            continue;
        }
        let Fetch::Found((_, b)) = s3.get(target, &o.key, None, None).await.unwrap() else { panic!() };
        out.insert(o.key, b.to_vec());
    }
    out
}

/// Restores everything as of `t` into a new bucket `target`.
async fn restore(e: &Engine, s3: &Arc<MemObjectStore>, t: DateTime<Utc>, target: &str) -> run::RestoreStatus {
    s3.create(target, false);
    let (r, _) = run::start(e, s3.as_ref(), RestoreRequest::copy_all("src", t, target)).await.unwrap();
    drive_restore(e, std::sync::Arc::new(SameStore(s3.clone())), &r.restore_id, 3, "t", |_| {}).await.unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn an_encrypted_vault_holds_no_plaintext_and_restores_verifies_and_rebuilds() {
    let (s3, keys, engine, t, small) = world(Some("key")).await;
    let key = engine.config.kms_key_id.clone().unwrap();
    let vault = vault_objects(&s3).await;
    assert!(vault.iter().any(|(k, _)| k.ends_with(".pack")) && vault.iter().any(|(k, _)| k.contains("/index/")));
    assert_eq!(plaintext_hits(&vault, &small), Vec::<(String, String)>::new(), "plaintext of source objects in the vault");
    // Every pack is version 3 with the encrypted flag, and every packed record names the key.
    for (k, bytes) in vault.iter().filter(|(k, _)| k.ends_with(".pack")) {
        let n = bytes.len();
        assert_eq!(u32::from_le_bytes(bytes[n - 12..n - 8].try_into().unwrap()), pack::FLAG_ENCRYPTED, "{k}");
        for r in pack::parse_pack(bytes).unwrap().records {
            let Some(Location::Pack { envelope: Some(env), .. }) = &r.location else { panic!("{} in {k} has no envelope", r.key) };
            assert_eq!(env.key_id, key);
        }
    }
    // Every vault write named the vault key for SSE-KMS, the large object's copy included.
    for (k, _) in &vault {
        let info = s3.head("vault", k, None).await.unwrap().unwrap();
        let sse = info.attributes.sse.unwrap_or_else(|| panic!("{k} names no server-side encryption"));
        assert_eq!((sse.algorithm.as_str(), sse.kms_key_id.as_deref()), ("aws:kms", Some(key.as_str())), "{k}");
    }

    // The restore is exact.
    let status = restore(&engine, &s3, t, "out-r1").await;
    assert_eq!(status.run.state, RestoreState::Done, "{status:?}");
    let mut want = small.clone();
    want.insert("empty".into(), Vec::new());
    want.insert("large/one".into(), body("large/one", 1).repeat(20));
    assert_eq!(restored(&s3, "out-r1").await, want);

    // Verify opens every blob with the key; without a key service it names the key it needs.
    let opts = VerifyOptions { source: None, sample: 1.0, concurrency: 2 };
    let r = verify(s3.as_ref(), keys.as_ref(), "vault", &opts).await.unwrap();
    assert!(r.ok() && r.blobs as usize == SMALL + 1, "{r:?}");
    let r = verify(s3.as_ref(), &NoKeys, "vault", &opts).await.unwrap();
    assert!(!r.ok() && r.problems.iter().all(|p| p.detail.contains(&key)), "{:?}", r.problems);

    // A fresh control plane rebuilt from the vault alone gives the same state.
    let (_, before) = load_state(&engine, "src", "", t).await.unwrap();
    let fresh = self::engine(&s3, &keys, Some(&key));
    rebuild(&fresh, &RebuildOptions::default()).await.unwrap();
    let (_, after) = load_state(&fresh, "src", "", t).await.unwrap();
    assert_eq!(before, after);

    // A disabled key fails the restore's objects with an error naming the key.
    keys.set_enabled(&key, false);
    let status = restore(&engine, &s3, t, "out-r2").await;
    assert_ne!(status.run.state, RestoreState::Done, "{status:?}");
    let failures = serde_json::to_string(&status).unwrap();
    assert!(failures.contains(&key) && failures.contains("disabled"), "{failures}");
}

#[tokio::test(flavor = "multi_thread")]
async fn without_a_key_the_same_scan_finds_the_plaintext() {
    let (s3, _, engine, t, small) = world(None).await;
    let hits = plaintext_hits(&vault_objects(&s3).await, &small);
    let found: std::collections::BTreeSet<&String> = hits.iter().map(|(_, k)| k).collect();
    // Every small object shows through: the raw ones whole, the compressed ones in zstd's
    // literal run at their start.
    assert_eq!(found, small.keys().collect(), "the scan missed some plaintext");
    let status = restore(&engine, &s3, t, "out-r").await;
    assert_eq!(status.run.state, RestoreState::Done, "{status:?}");
    for (k, data) in &small {
        assert_eq!(restored(&s3, "out-r").await.get(k), Some(data), "{k}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn plaintext_packs_written_before_the_key_restore_beside_encrypted_ones() {
    let (s3, keys, plain, t1, small) = world(None).await;
    let key = keys.create_key();
    // The same deployment (control state and queues) with the key configured from now on.
    let mut encrypted = plain.clone();
    encrypted.config.kms_key_id = Some(key.clone());
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let mut later = small.clone();
    for (k, v) in later.iter_mut().step_by(2) {
        *v = body(k, 2);
        put(&s3, k, v.clone()).await;
    }
    seed(&encrypted, "src", "", PlanSource::Listing(PlanTargets { objects: 12, ..Default::default() })).await.unwrap();
    drain_work(&encrypted).await;
    let t2 = seal(&encrypted).await;
    let packs: Vec<Vec<u8>> = vault_objects(&s3).await.into_iter().filter(|(k, _)| k.ends_with(".pack")).map(|(_, b)| b).collect();
    let flags: std::collections::BTreeSet<u32> =
        packs.iter().map(|b| u32::from_le_bytes(b[b.len() - 12..b.len() - 8].try_into().unwrap())).collect();
    assert_eq!(flags, [0, pack::FLAG_ENCRYPTED].into(), "both kinds of pack are in the vault");
    for (t, want, prefix) in [(t1, &small, "out-one"), (t2, &later, "out-two")] {
        let status = restore(&encrypted, &s3, t, prefix).await;
        assert_eq!(status.run.state, RestoreState::Done, "{status:?}");
        let got = restored(&s3, prefix).await;
        for (k, data) in want {
            assert_eq!(got.get(k), Some(data), "{k} at {t}");
        }
    }
}
