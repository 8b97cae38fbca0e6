//! Writes a tiny vault with the code of this build into a directory, so that later builds can
//! prove they still restore what this one wrote (`tests/integration/vault_fixtures.rs`).
//!
//! `cargo run -p tidemark-core --example write_vault_fixture -- crates/core/tests/fixtures/vault/<name> [--encrypted]`
//!
//! With `--encrypted` the vault has a key, as `init --local` gives one: packs are sealed under
//! data keys it wraps, and the key's id and material are written to `<dir>/key.json` (a key of
//! the in-memory key service, made for the fixture; no real key is ever written).
//!
//! The vault is made on the test kit's fakes the way a deployment makes it: a seed run by listing
//! (packed objects raw and compressed, a large object copied with CopyObject, a larger one with
//! UploadPartCopy), then changes captured from AWS-form EventBridge events (an overwrite, a
//! delete, a new key, a permanent delete of a version) and two sealed recovery points. Objects
//! carry attributes and tags where the code of the day records them, and `expected.json` holds
//! every field a restore of the day writes back. Every vault object is written to
//! `<dir>/vault/<key>`, its content type and metadata to `<dir>/objects.json`, and what a restore
//! as of each point must give to `<dir>/expected.json`. The vault bucket is unversioned, so that
//! the large objects' locations name no version id that a reloaded store could not reproduce.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use chrono::{DateTime, SubsecRound, Utc};
use serde_json::json;
use sha2::{Digest, Sha256};
use tidemark_core::changes::checkpoint::{self, Sealed};
use tidemark_core::changes::delta::{process_batch, DeltaMessage};
use tidemark_core::config::EngineConfig;
use tidemark_core::domain::ObjectAttributes;
use tidemark_core::memory::MemKeys;
use tidemark_core::plan::partition::PlanTargets;
use tidemark_core::ports::{list_all, Fetch, ObjectStore, PutOptions};
use tidemark_core::protect::seed::{self, PlanSource};
use tidemark_core::protocol::dispatch::{dispatch, Disposition};
use tidemark_testkit::fakes::{mem_engine, MemObjectStore};

const SRC: &str = "fixture-src";
const VAULT: &str = "fixture-vault";

fn put_opts(content_type: &str, metadata: &[(&str, &str)]) -> PutOptions {
    PutOptions {
        content_type: Some(content_type.into()),
        metadata: metadata.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        ..Default::default()
    }
}

fn with_attributes(mut opts: PutOptions, cache_control: &str, tags: &[(&str, &str)]) -> PutOptions {
    opts.attributes = ObjectAttributes {
        cache_control: Some(cache_control.into()),
        tags: tags.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        ..Default::default()
    };
    opts
}

/// The EventBridge event AWS documents for a change of a versioned object.
fn event(created: bool, key: &str, size: u64, etag: &str, version: &str, n: u64, time: DateTime<Utc>) -> String {
    event_of(created, "Delete Marker Created", key, size, etag, version, n, time)
}

#[allow(clippy::too_many_arguments)]
fn event_of(created: bool, deletion: &str, key: &str, size: u64, etag: &str, version: &str, n: u64, time: DateTime<Utc>) -> String {
    let mut object = json!({"key": key, "version-id": version, "sequencer": format!("0062A1B2C3D4{n:06X}")});
    if created {
        object["size"] = json!(size);
        object["etag"] = json!(etag);
    }
    let mut detail =
        json!({"version": "0", "bucket": {"name": SRC}, "object": object, "reason": if created { "PutObject" } else { "DeleteObject" }});
    if !created {
        detail["deletion-type"] = json!(deletion);
    }
    json!({
        "version": "0", "id": format!("fixture-{n}"), "detail-type": if created { "Object Created" } else { "Object Deleted" },
        "source": "aws.s3", "account": "111122223333", "time": time.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "region": "us-east-1", "resources": [format!("arn:aws:s3:::{SRC}")], "detail": detail,
    })
    .to_string()
}

async fn source_state(s3: &MemObjectStore) -> serde_json::Value {
    let mut out = serde_json::Map::new();
    for o in list_all(s3, SRC, "", None).await.unwrap().objects {
        let Fetch::Found((info, data)) = s3.get(SRC, &o.key, None, None).await.unwrap() else { panic!("{} vanished", o.key) };
        let tags = s3.get_tags(SRC, &o.key, None).await.unwrap().unwrap_or_default();
        out.insert(
            o.key,
            json!({"sha256": hex::encode(Sha256::digest(&data)), "size": data.len(), "content_type": info.content_type, "metadata": info.metadata, "cache_control": info.attributes.cache_control, "tags": tags}),
        );
    }
    serde_json::Value::Object(out)
}

async fn next_second() {
    let now = Utc::now();
    let next = now.trunc_subsecs(0) + chrono::Duration::milliseconds(1050);
    tokio::time::sleep((next - now).to_std().unwrap()).await;
}

async fn seal(engine: &tidemark_core::engine::Engine) -> DateTime<Utc> {
    next_second().await;
    let now = Utc::now();
    match checkpoint::seal(engine, SRC, now, now).await.unwrap() {
        Sealed::New(p) => p.time,
        other => panic!("expected a new point, got {other:?}"),
    }
}

#[tokio::main]
async fn main() {
    let dir = PathBuf::from(std::env::args().nth(1).expect("usage: write_vault_fixture <dir> [--encrypted]"));
    let encrypted = match std::env::args().nth(2).as_deref() {
        None => false,
        Some("--encrypted") => true,
        Some(other) => panic!("write_vault_fixture: unknown argument {other}; expected --encrypted"),
    };
    let s3 = Arc::new(MemObjectStore::new());
    s3.create(SRC, true);
    s3.create(VAULT, false);
    let mut config = EngineConfig::new(VAULT);
    config.small_object_threshold = 128;
    config.multipart_copy_threshold = 400;
    config.copy_part_bytes = 150;
    config.batch_objects = 3;
    config.pack_target_bytes = 160;
    let keys = Arc::new(MemKeys::new());
    if encrypted {
        let id = keys.create_key();
        let material = keys.material(&id).expect("the key was just made");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("key.json"),
            serde_json::to_string_pretty(&json!({"key_id": id, "material": hex::encode(material)})).unwrap() + "\n",
        )
        .unwrap();
        config.kms_key_id = Some(id);
    }
    let mut engine = mem_engine(s3.clone(), config);
    engine.keys = keys;

    let bodies: Vec<(&str, Vec<u8>, PutOptions)> = vec![
        (
            "docs/readme.txt",
            b"hello, fixture".to_vec(),
            with_attributes(put_opts("text/plain; charset=utf-8", &[("owner", "team-a")]), "max-age=60", &[("team", "a")]),
        ),
        ("docs/compressible.txt", b"tidemark ".repeat(12), put_opts("text/plain", &[])),
        ("docs/empty", Vec::new(), put_opts("application/octet-stream", &[])),
        (
            "media/copied.bin",
            (0..200u32).map(|i| (i * 7 % 251) as u8).collect(),
            with_attributes(put_opts("application/x-copied", &[("k", "v")]), "no-cache", &[("copied", "yes")]),
        ),
        ("media/parts.bin", (0..470u32).map(|i| (i * 13 % 251) as u8).collect(), put_opts("application/x-parts", &[("parts", "4")])),
        ("logs/a b+c%.log", b"one log line\n".to_vec(), put_opts("text/plain", &[])),
    ];
    for (key, body, opts) in &bodies {
        s3.put(SRC, key, Bytes::from(body.clone()), opts).await.unwrap();
    }
    let targets = PlanTargets { objects: 4, ..Default::default() };
    let seeded = seed::seed(&engine, SRC, "", PlanSource::Listing(targets)).await.unwrap();
    loop {
        let msgs = engine.queue.receive("work", 10, 0, 30).await.unwrap();
        if msgs.is_empty() {
            break;
        }
        for m in msgs {
            match dispatch(&engine, &m.id, &m.body, "fixture").await {
                Disposition::Done => engine.queue.delete("work", &m.receipt).await.unwrap(),
                other => panic!("work message {}: {other:?}", m.body),
            }
        }
    }
    let run = engine.control().get_run(&seeded.run.run_id).await.unwrap().unwrap().1;
    assert_eq!(run.state, tidemark_core::control::RunState::Complete, "the seed run completes");
    let t1 = seal(&engine).await;
    let state_t1 = source_state(&s3).await;

    // Changes after the seed, captured from their events.
    next_second().await;
    let mut events = Vec::new();
    let w = s3
        .put(SRC, "docs/readme.txt", Bytes::from_static(b"hello again, fixture"), &put_opts("text/markdown", &[("owner", "team-b")]))
        .await
        .unwrap();
    events.push(event(true, "docs/readme.txt", 20, &w.etag, w.version_id.as_deref().unwrap(), 1, Utc::now()));
    s3.delete(SRC, "logs/a b+c%.log").await.unwrap();
    events.push(event(false, "logs/a b+c%.log", 0, "", "marker-1", 2, Utc::now()));
    let w = s3.put(SRC, "new/one.txt", Bytes::from_static(b"born after the seed"), &put_opts("text/plain", &[])).await.unwrap();
    events.push(event(true, "new/one.txt", 19, &w.etag, w.version_id.as_deref().unwrap(), 3, Utc::now()));
    // A permanent delete of a version: the key has no other, so it is gone from then on.
    let only = s3.head(SRC, "docs/compressible.txt", None).await.unwrap().unwrap().version_id.unwrap();
    s3.delete_version(SRC, "docs/compressible.txt", &only).await.unwrap();
    events.push(event_of(false, "Permanently Deleted", "docs/compressible.txt", 0, "", &only, 4, Utc::now()));
    let msgs: Vec<DeltaMessage> = events.into_iter().enumerate().map(|(i, body)| DeltaMessage { id: format!("m{i}"), body }).collect();
    let report = process_batch(&engine, &msgs).await.unwrap();
    assert!(report.failed.is_empty(), "{:?}", report.failed);
    let t2 = seal(&engine).await;
    let state_t2 = source_state(&s3).await;

    // Dump the vault: every object's bytes, its content type and metadata, and the expectations.
    let vault_dir = dir.join("vault");
    let mut objects = serde_json::Map::new();
    for o in list_all(s3.as_ref(), VAULT, "", None).await.unwrap().objects {
        let Fetch::Found((info, data)) = s3.get(VAULT, &o.key, None, None).await.unwrap() else { panic!("{} vanished", o.key) };
        let path = vault_dir.join(&o.key);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &data).unwrap();
        objects.insert(o.key, json!({"content_type": info.content_type, "metadata": info.metadata}));
    }
    let write_json = |name: &str, v: &serde_json::Value| {
        std::fs::write(dir.join(name), serde_json::to_string_pretty(v).unwrap() + "\n").unwrap();
    };
    write_json("objects.json", &serde_json::Value::Object(objects));
    let expected: BTreeMap<String, serde_json::Value> = [
        (t1.to_rfc3339_opts(chrono::SecondsFormat::Millis, true), state_t1),
        (t2.to_rfc3339_opts(chrono::SecondsFormat::Millis, true), state_t2),
    ]
    .into_iter()
    .collect();
    write_json("expected.json", &json!({"source_bucket": SRC, "vault_bucket": VAULT, "states": expected}));
    println!("wrote the vault fixture to {}", dir.display());
}
