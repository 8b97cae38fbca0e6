//! The catalog end to end: a versioned bucket on moto protected by the real `tidemark` CLI, a
//! known history of a key K and of changes under a prefix P, then DuckDB (`.venv-catalog`,
//! tests/catalog/query.py, with the schema of docs/catalog.md) over local copies of the vault's
//! catalog objects (`v1/<bucket>/catalog/`) answers "which versions of K exist and when" and "what changed under P
//! between T1 and T2"; both answers are checked against the source bucket's own version listing.
//!
//! moto sends no event for a delete marker, so `sync --reconcile` captures the markers at their
//! own time (as in versions.rs). The same query refuses the header-first segments of format
//! version 2 (the fixture vault), which is what this layout changed.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use aws_sdk_s3::primitives::ByteStream;
use chrono::{DateTime, SecondsFormat, SubsecRound, Utc};
use sha2::{Digest, Sha256};
use tidemark_e2e::{s3, tidemark_json};
use tidemark_testkit::harness;

const SRC: &str = "cat-src";
const VAULT: &str = "cat-vault";
const K: &str = "reports/k.txt";
const P: &str = "p/";

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

async fn pause(ms: u64) {
    tokio::time::sleep(Duration::from_millis(ms)).await;
}

/// One version or delete marker of the source, as its own listing shows it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Seen {
    at: String,
    key: String,
    version_id: String,
    kind: &'static str,
    size: u64,
}

/// Every version and delete marker of the source bucket, from ListObjectVersions.
async fn history(c: &aws_sdk_s3::Client) -> Result<Vec<Seen>> {
    let mut out = Vec::new();
    let (mut key_marker, mut version_marker) = (None::<String>, None::<String>);
    loop {
        let page = c
            .list_object_versions()
            .bucket(SRC)
            .set_key_marker(key_marker.clone())
            .set_version_id_marker(version_marker.clone())
            .send()
            .await?;
        let time = |t: Option<&aws_sdk_s3::primitives::DateTime>| -> Result<String> {
            let t = t.context("a time")?;
            Ok(rfc3339(DateTime::<Utc>::from_timestamp(t.secs(), 0).context("a valid time")?))
        };
        for v in page.versions() {
            out.push(Seen {
                at: time(v.last_modified())?,
                key: v.key().context("key")?.into(),
                version_id: v.version_id().context("version")?.into(),
                kind: "put",
                size: v.size().unwrap_or_default() as u64,
            });
        }
        for m in page.delete_markers() {
            out.push(Seen {
                at: time(m.last_modified())?,
                key: m.key().context("key")?.into(),
                version_id: m.version_id().context("version")?.into(),
                kind: "delete",
                size: 0,
            });
        }
        if page.is_truncated() != Some(true) {
            break;
        }
        key_marker = page.next_key_marker().map(String::from);
        version_marker = page.next_version_id_marker().map(String::from);
    }
    out.sort();
    Ok(out)
}

/// Copies every catalog object of the source into `dir` (keys as paths); returns their keys.
async fn download_catalog(c: &aws_sdk_s3::Client, dir: &Path) -> Result<Vec<String>> {
    let mut keys = Vec::new();
    let mut token = None;
    loop {
        let page =
            c.list_objects_v2().bucket(VAULT).prefix(format!("v1/{SRC}/catalog/")).set_continuation_token(token.clone()).send().await?;
        for o in page.contents() {
            let key = o.key().context("key")?.to_string();
            let body = c.get_object().bucket(VAULT).key(&key).send().await?.body.collect().await?.into_bytes();
            let path = dir.join(&key);
            std::fs::create_dir_all(path.parent().expect("a parent"))?;
            std::fs::write(&path, &body)?;
            keys.push(key);
        }
        match page.next_continuation_token() {
            Some(t) => token = Some(t.to_string()),
            None => break,
        }
    }
    Ok(keys)
}

/// Runs tests/catalog/query.py with the catalog venv's Python.
fn query(dir: &Path, key: &str, prefix: &str, since: &str, until: &str) -> Result<std::process::Output> {
    let script = harness::repo_root().join("tests/catalog/query.py");
    Command::new(harness::catalog_venv_bin("python")?)
        .arg(&script)
        .arg(dir)
        .args(["--bucket", SRC, "--key", key, "--prefix", prefix, "--since", since, "--until", until])
        .output()
        .context("running tests/catalog/query.py")
}

#[tokio::test(flavor = "multi_thread")]
async fn duckdb_answers_versions_of_a_key_and_changes_under_a_prefix_as_the_source_history_says() -> Result<()> {
    let moto = harness::start_moto()?;
    let ep = moto.endpoint.as_str();
    let env: Vec<(&str, String)> = vec![("TIDEMARK_LATE_EVENT_SECONDS", "1".into())];
    let (s, v) = (format!("s3://{SRC}"), format!("s3://{VAULT}"));
    tidemark_json(ep, &env, &["init", "--local", "--vault", &v, "--json"])?;
    let c = s3(ep).await;
    c.create_bucket().bucket(SRC).send().await?;
    let on = aws_sdk_s3::types::VersioningConfiguration::builder().status(aws_sdk_s3::types::BucketVersioningStatus::Enabled).build();
    c.put_bucket_versioning().bucket(SRC).versioning_configuration(on).send().await?;

    // The SHA-256 of every version's bytes, by version id, to check the catalog's checksums.
    let mut bodies: BTreeMap<String, String> = BTreeMap::new();
    let put = |key: &'static str, body: &'static str| {
        let c = c.clone();
        async move {
            let o = c.put_object().bucket(SRC).key(key).body(ByteStream::from(body.as_bytes().to_vec())).send().await?;
            anyhow::Ok((o.version_id().context("a versioned put")?.to_string(), hex::encode(Sha256::digest(body.as_bytes()))))
        }
    };
    let sync = || tidemark_json(ep, &env, &["sync", "--source", &s, "--vault", &v, "--reconcile", "--json"]);

    // Before protection: K's first version and the prefix's first objects.
    for (key, body) in [(K, "k1"), ("p/a", "a1"), ("p/b", "b1"), ("q/x", "x1")] {
        bodies.extend([put(key, body).await?]);
    }
    pause(1100).await;
    let p = tidemark_json(ep, &env, &["protect", "--source", &s, "--vault", &v, "--all-versions", "--wait", "--json"])?;
    assert_eq!(p["failed"].as_u64(), Some(0), "{p}");
    pause(1100).await;
    let t1 = rfc3339(Utc::now().trunc_subsecs(0));
    pause(1100).await;

    // Between T1 and T2: an overwrite of K, changes under P and outside it, delete markers.
    for (key, body) in [(K, "k2"), ("p/a", "a2"), ("p/c", "c1"), ("q/x", "x2")] {
        bodies.extend([put(key, body).await?]);
    }
    c.delete_object().bucket(SRC).key("p/b").send().await?;
    pause(2200).await;
    sync()?;
    pause(1100).await;
    c.delete_object().bucket(SRC).key(K).send().await?;
    pause(2200).await;
    sync()?;
    pause(1100).await;
    let t2 = rfc3339(Utc::now().trunc_subsecs(0));
    pause(1100).await;

    // After T2: K comes back, and P changes once more.
    for (key, body) in [(K, "k3"), ("p/d", "d1")] {
        bodies.extend([put(key, body).await?]);
    }
    pause(2200).await;
    let last = sync()?;
    assert!(last["recovery_point"].is_string(), "{last}");

    let source = history(&c).await?;
    let want_versions: BTreeSet<(String, String, String)> =
        source.iter().filter(|x| x.key == K).map(|x| (x.version_id.clone(), x.kind.to_string(), x.at.clone())).collect();
    let want_changes: BTreeSet<(String, String, String, String)> = source
        .iter()
        .filter(|x| x.key.starts_with(P) && x.at.as_str() > t1.as_str() && x.at.as_str() <= t2.as_str())
        .map(|x| (x.key.clone(), x.version_id.clone(), x.kind.to_string(), x.at.clone()))
        .collect();
    assert_eq!(want_versions.len(), 4, "K: three versions and a delete marker: {source:?}");
    assert_eq!(want_changes.len(), 3, "under P between T1 and T2: p/a overwritten, p/c new, p/b's marker: {source:?}");

    let dir = tempfile::tempdir()?;
    let keys = download_catalog(&c, dir.path()).await?;
    let segments = c.list_objects_v2().bucket(VAULT).prefix(format!("v1/{SRC}/index/")).send().await?.key_count().unwrap_or(0);
    assert!(!keys.is_empty(), "the vault has catalog objects");
    assert!(keys.iter().all(|k| k.starts_with(&format!("v1/{SRC}/catalog/")) && k.ends_with(".ndjson")), "{keys:?}");
    assert_eq!(keys.len() as i32, segments, "one catalog object per index segment: {keys:?}");

    let out = query(dir.path(), K, P, &t1, &t2)?;
    if !out.status.success() {
        bail!("query.py failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let answer: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let s = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_string();
    let got_versions: BTreeSet<(String, String, String)> =
        answer["versions"].as_array().context("versions")?.iter().map(|r| (s(&r["version_id"]), s(&r["kind"]), s(&r["at"]))).collect();
    assert_eq!(got_versions, want_versions, "which versions of {K} exist and when: {answer}");
    assert_eq!(answer["versions"].as_array().unwrap().len(), want_versions.len(), "each version once: {answer}");
    for r in answer["versions"].as_array().unwrap() {
        let seen = source.iter().find(|x| x.version_id == s(&r["version_id"])).expect("listed above");
        assert_eq!(r["size"].as_u64(), Some(seen.size), "{r}");
        if seen.kind == "put" {
            assert_eq!(Some(s(&r["sha256"])), bodies.get(&seen.version_id).cloned(), "the catalog's SHA-256 of {r}");
        }
    }
    let got_changes: BTreeSet<(String, String, String, String)> = answer["changes"]
        .as_array()
        .context("changes")?
        .iter()
        .map(|r| (s(&r["key"]), s(&r["version_id"]), s(&r["kind"]), s(&r["at"])))
        .collect();
    assert_eq!(got_changes, want_changes, "what changed under {P} in ({t1}, {t2}]: {answer}");
    eprintln!(
        "catalog: {} objects, {} records; {} versions of {K}, {} changes under {P}",
        keys.len(),
        answer["records"],
        got_versions.len(),
        got_changes.len()
    );

    // The segments of format version 2 keep a header as their first line: the same query over
    // them refuses it by its fields instead of counting it as a record.
    let old = tempfile::tempdir()?;
    let index = harness::repo_root().join("crates/core/tests/fixtures/vault/v2/vault/v1/fixture-src/index");
    for e in std::fs::read_dir(&index)? {
        let path = e?.path();
        std::fs::copy(&path, old.path().join(path.with_extension("ndjson").file_name().expect("a name")))?;
    }
    let refused = query(old.path(), K, P, &t1, &t2)?;
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(1), "header-first segments are not catalog objects: {stderr}");
    assert!(stderr.contains("not a catalog record") && stderr.contains("min_key"), "{stderr}");
    Ok(())
}
