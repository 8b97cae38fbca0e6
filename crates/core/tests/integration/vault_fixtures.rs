//! Vaults written by earlier builds still restore: every fixture under `tests/fixtures/vault/`
//! (packs, segments, large-object copies and recovery points, written by
//! `examples/write_vault_fixture.rs` with the code of its day) is loaded into a fake vault bucket
//! and restored as of each of its points, and every object must come back as the source held it.
//!
//! A fixture is never rewritten: a format change adds a new directory beside the old ones, and
//! this test keeps reading all of them. An encrypted fixture (`v3-encrypted`) holds its key of the
//! in-memory key service in `key.json`; without the key it must not restore.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use sha2::{Digest, Sha256};
use tidemark_core::config::EngineConfig;
use tidemark_core::memory::MemKeys;
use tidemark_core::ports::{list_all, Fetch, ObjectStore, PutOptions};
use tidemark_core::protocol::local::restore_here;
use tidemark_core::restore::RestoreRequest;
use tidemark_core::vault::{pack, segment};
use tidemark_testkit::fakes::{mem_engine, MemObjectStore};

fn fixtures() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/vault");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&root).unwrap().map(|e| e.unwrap().path()).filter(|p| p.is_dir()).collect();
    dirs.sort();
    assert!(!dirs.is_empty(), "no vault fixtures under {}", root.display());
    dirs
}

fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            files(&p, out);
        } else {
            out.push(p);
        }
    }
}

fn read_json(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Loads a fixture's vault objects (with their content type and metadata) into `bucket` of `s3`.
async fn load(dir: &Path, s3: &MemObjectStore, bucket: &str) -> usize {
    let objects = read_json(&dir.join("objects.json"));
    let vault_dir = dir.join("vault");
    let mut paths = Vec::new();
    files(&vault_dir, &mut paths);
    for p in &paths {
        let key = p.strip_prefix(&vault_dir).unwrap().to_str().unwrap().to_string();
        let meta = &objects[&key];
        let opts = PutOptions {
            content_type: meta["content_type"].as_str().map(String::from),
            metadata: serde_json::from_value(meta["metadata"].clone()).unwrap_or_default(),
            ..Default::default()
        };
        s3.put(bucket, &key, Bytes::from(std::fs::read(p).unwrap()), &opts).await.unwrap();
    }
    assert_eq!(paths.len(), objects.as_object().unwrap().len(), "{}: objects.json names every vault file", dir.display());
    paths.len()
}

#[tokio::test]
async fn vaults_written_by_earlier_builds_still_restore() {
    for dir in fixtures() {
        let name = dir.file_name().unwrap().to_string_lossy().to_string();
        let expected = read_json(&dir.join("expected.json"));
        let (src, vault) = (expected["source_bucket"].as_str().unwrap(), expected["vault_bucket"].as_str().unwrap());
        let s3 = Arc::new(MemObjectStore::new());
        s3.create(vault, false);
        let loaded = load(&dir, &s3, vault).await;

        // Every pack and segment of the fixture parses and verifies on its own.
        let (mut packs, mut segments) = (0, 0);
        for o in list_all(s3.as_ref(), vault, "", None).await.unwrap().objects {
            let Fetch::Found((_, bytes)) = s3.get(vault, &o.key, None, None).await.unwrap() else { unreachable!() };
            if o.key.ends_with(".pack") {
                pack::parse_pack(&bytes).unwrap_or_else(|e| panic!("{name}: pack {}: {e}", o.key));
                packs += 1;
            } else if o.key.ends_with(".idx") {
                // Versions 1 and 2 hold their records after the header line; version 3 names the
                // catalog object that holds them, which `read` fetches and checks too.
                segment::read(s3.as_ref(), vault, &o.key).await.unwrap_or_else(|e| panic!("{name}: segment {}: {e}", o.key));
                segments += 1;
            }
        }
        assert!(packs > 0 && segments > 0, "{name}: {loaded} files, {packs} packs, {segments} segments");

        let mut engine = mem_engine(s3.clone(), EngineConfig::new(vault));
        let states = expected["states"].as_object().unwrap();
        // An encrypted fixture comes with its key (one of the in-memory key service). Without it
        // no packed object restores, which shows that its packs really are sealed.
        let key_file = dir.join("key.json");
        if key_file.exists() {
            let key = read_json(&key_file);
            let as_of = states.keys().next().expect("a fixture has points");
            let without =
                restore_here(&engine, s3.clone(), RestoreRequest::copy_all(src, as_of.parse().unwrap(), "without-key"), 4).await.unwrap();
            assert!(without.failed > 0, "{name}: restored without its key: {without:?}");
            let material: [u8; 32] = hex::decode(key["material"].as_str().unwrap()).unwrap().try_into().unwrap();
            let keys = MemKeys::new();
            keys.import_key(key["key_id"].as_str().unwrap(), material);
            engine.keys = Arc::new(keys);
        }
        for (i, (as_of, want)) in states.iter().enumerate() {
            let target = format!("restored-{i}");
            let report =
                restore_here(&engine, s3.clone(), RestoreRequest::copy_all(src, as_of.parse().unwrap(), &target), 4).await.unwrap();
            assert_eq!(report.failed, 0, "{name} as of {as_of}: {:?}", report.failures);
            let want: BTreeMap<String, serde_json::Value> = serde_json::from_value(want.clone()).unwrap();
            let mut got = BTreeMap::new();
            for o in list_all(s3.as_ref(), &target, "", None).await.unwrap().objects {
                let Fetch::Found((info, data)) = s3.get(&target, &o.key, None, None).await.unwrap() else { unreachable!() };
                let tags = s3.get_tags(&target, &o.key, None).await.unwrap().unwrap_or_default();
                let all = serde_json::json!({"sha256": hex::encode(Sha256::digest(&data)), "size": data.len(), "content_type": info.content_type, "metadata": info.metadata, "cache_control": info.attributes.cache_control, "tags": tags});
                // A fixture expects the fields its day's restore wrote back; later ones may write more.
                let fields =
                    want.get(&o.key).and_then(|w| w.as_object()).map(|w| w.keys().cloned().collect::<Vec<_>>()).unwrap_or_default();
                let shown: serde_json::Map<String, serde_json::Value> = fields.into_iter().map(|f| (f.clone(), all[&f].clone())).collect();
                got.insert(o.key, serde_json::Value::Object(shown));
            }
            assert_eq!(got, want, "{name}: restore as of {as_of}");
        }
    }
}
