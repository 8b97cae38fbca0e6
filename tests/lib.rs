//! The end-to-end scenario shared by `make demo` and the e2e tests: a real `tidemark` binary
//! against a real local stack, with every restored object compared to what the source held.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use aws_sdk_s3::primitives::ByteStream;
use chrono::{DateTime, SubsecRound, Utc};
use futures::StreamExt as _;
use sha2::{Digest, Sha256};
use tidemark_aws::{AwsClients, ClientOptions};
use tidemark_testkit::data;

/// The `tidemark` binary next to this executable (cargo builds both into the same directory).
pub fn tidemark_bin() -> PathBuf {
    if let Ok(p) = std::env::var("TIDEMARK_BIN") {
        return p.into();
    }
    let exe = std::env::current_exe().expect("current exe");
    let dir = exe.parent().expect("exe dir");
    for d in [dir, dir.parent().unwrap_or(dir)] {
        let p = d.join("tidemark");
        if p.exists() {
            return p;
        }
    }
    panic!("tidemark binary not found next to {}; build it with `cargo build -p tidemark-cli`", exe.display())
}

/// Settings every run of the CLI on the local stack starts from (the caller's environment
/// overrides them): moto and SeaweedFS deliver an S3 change to the queue within a second, so a
/// recovery point needs to stay only 2 s behind a drain instead of the 60 s a deployment allows.
pub const LOCAL_STACK_ENV: &[(&str, &str)] = &[("TIDEMARK_LATE_EVENT_SECONDS", "2")];

/// A `tidemark` command for the local stack at `endpoint`, with [`LOCAL_STACK_ENV`] and then `env`.
pub fn local_command(endpoint: &str, env: &[(&str, String)]) -> Command {
    let mut cmd = Command::new(tidemark_bin());
    cmd.env("AWS_ENDPOINT_URL", endpoint).env_remove("AWS_ENDPOINT_URL_S3");
    for (k, v) in LOCAL_STACK_ENV {
        cmd.env(k, v);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

/// Runs the CLI with the stack's endpoint and extra environment.
pub fn tidemark(endpoint: &str, env: &[(&str, String)], args: &[&str]) -> Result<Output> {
    let mut cmd = local_command(endpoint, env);
    cmd.args(args);
    Ok(cmd.output().context("running tidemark")?)
}

/// Runs the CLI and parses its `--json` stdout, failing with its stderr if it failed.
pub fn tidemark_json(endpoint: &str, env: &[(&str, String)], args: &[&str]) -> Result<serde_json::Value> {
    let out = tidemark(endpoint, env, args)?;
    if !out.status.success() {
        bail!("tidemark {} failed: {}", args.join(" "), String::from_utf8_lossy(&out.stderr));
    }
    let text = String::from_utf8(out.stdout)?;
    serde_json::from_str(text.trim()).with_context(|| format!("parsing JSON of tidemark {}: {text}", args[0]))
}

/// S3 clients for the test's own reads and writes.
pub async fn s3(endpoint: &str) -> aws_sdk_s3::Client {
    AwsClients::load(&ClientOptions::local(endpoint)).await.s3
}

/// What one object looks like: content hash, size, content type, user metadata, the system
/// metadata headers and tags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    pub sha256: String,
    pub size: usize,
    pub content_type: Option<String>,
    pub metadata: BTreeMap<String, String>,
    pub cache_control: Option<String>,
    pub content_encoding: Option<String>,
    pub tags: BTreeMap<String, String>,
}

/// Reads every object of a bucket under a prefix (keys relative to the prefix).
pub async fn snapshot(s3: &aws_sdk_s3::Client, bucket: &str, prefix: &str) -> Result<BTreeMap<String, Seen>> {
    let mut keys = Vec::new();
    let mut pages = s3.list_objects_v2().bucket(bucket).prefix(prefix).into_paginator().send();
    while let Some(page) = pages.next().await {
        keys.extend(page?.contents().iter().filter_map(|o| o.key().map(String::from)));
    }
    let mut out = BTreeMap::new();
    let results = futures::stream::iter(keys)
        .map(|k| async move {
            let o = s3.get_object().bucket(bucket).key(&k).send().await?;
            let ct = o.content_type().map(String::from);
            let md: BTreeMap<String, String> =
                o.metadata().map(|m| m.iter().map(|(a, b)| (a.clone(), b.clone())).collect()).unwrap_or_default();
            let (cache_control, content_encoding) = (o.cache_control().map(String::from), o.content_encoding().map(String::from));
            // Only objects that say they have tags cost a tagging request.
            let tags = match o.tag_count() {
                Some(n) if n > 0 => s3
                    .get_object_tagging()
                    .bucket(bucket)
                    .key(&k)
                    .send()
                    .await?
                    .tag_set()
                    .iter()
                    .map(|t| (t.key().to_string(), t.value().to_string()))
                    .collect(),
                _ => BTreeMap::new(),
            };
            let body = o.body.collect().await?.into_bytes();
            let seen = Seen {
                sha256: hex::encode(Sha256::digest(&body)),
                size: body.len(),
                content_type: ct,
                metadata: md,
                cache_control,
                content_encoding,
                tags,
            };
            anyhow::Ok((k, seen))
        })
        .buffer_unordered(16);
    futures::pin_mut!(results);
    while let Some(r) = results.next().await {
        let (k, s) = r?;
        out.insert(k[prefix.len()..].to_string(), s);
    }
    Ok(out)
}

/// Compares a restored bucket with the expected state; returns a list of differences.
pub fn diff(expected: &BTreeMap<String, Seen>, got: &BTreeMap<String, Seen>) -> Vec<String> {
    let mut out = Vec::new();
    for (k, e) in expected {
        match got.get(k) {
            None => out.push(format!("missing: {k}")),
            Some(g) if g != e => out.push(format!("differs: {k}: expected {e:?}, got {g:?}")),
            _ => {}
        }
    }
    for k in got.keys().filter(|k| !expected.contains_key(*k)) {
        out.push(format!("unexpected: {k}"));
    }
    out
}

/// The `x-amz-tagging` value of a tag set (URL query encoding).
pub fn tagging(tags: &[(String, String)]) -> Option<String> {
    let enc = |s: &str| s.replace('%', "%25").replace(' ', "%20").replace('&', "%26").replace('=', "%3D").replace('+', "%2B");
    (!tags.is_empty()).then(|| tags.iter().map(|(k, v)| format!("{}={}", enc(k), enc(v))).collect::<Vec<_>>().join("&"))
}

async fn put_object(s3: &aws_sdk_s3::Client, bucket: &str, o: &data::GenObject) -> Result<()> {
    let mut req = s3
        .put_object()
        .bucket(bucket)
        .key(&o.key)
        .body(ByteStream::from(o.body.clone()))
        .content_type(&o.content_type)
        .set_cache_control(o.cache_control.clone())
        .set_content_encoding(o.content_encoding.clone())
        .set_tagging(tagging(&o.tags));
    for (k, v) in &o.metadata {
        req = req.metadata(k, v);
    }
    req.send().await?;
    Ok(())
}

/// Waits until the wall clock enters a new second, so S3's whole-second Last-Modified times fall
/// strictly on one side of a noted time.
async fn next_second() -> DateTime<Utc> {
    let now = Utc::now();
    let next = now.trunc_subsecs(0) + chrono::Duration::milliseconds(1100);
    tokio::time::sleep((next - now).to_std().unwrap_or_default()).await;
    Utc::now().trunc_subsecs(0)
}

/// Sizes of a scenario.
#[derive(Debug, Clone)]
pub struct Scenario {
    pub objects: usize,
    pub prefixes: usize,
    pub large: usize,
    pub workers: usize,
    pub seed: u64,
}

/// What a scenario measured.
#[derive(Debug, Default)]
pub struct Summary {
    pub lines: Vec<String>,
    pub mismatches: Vec<String>,
}

/// Protects a generated bucket, changes it, syncs, and restores it as of two times, comparing everything.
pub async fn run(endpoint: &str, sc: &Scenario, say: impl Fn(&str)) -> Result<Summary> {
    let t0 = Instant::now();
    let s3 = s3(endpoint).await;
    let env: Vec<(&str, String)> = vec![
        ("TIDEMARK_TARGET_OBJECTS", (sc.objects / 5).max(50).to_string()),
        ("TIDEMARK_MULTIPART_COPY_THRESHOLD", (8 * 1024 * 1024).to_string()),
        ("TIDEMARK_COPY_PART_BYTES", (5 * 1024 * 1024).to_string()),
        ("TIDEMARK_LATE_EVENT_SECONDS", "2".into()),
    ];
    let (src, vault) = ("demo-source", "demo-vault");
    let mut summary = Summary::default();

    say("init: vault bucket (Object Lock, COMPLIANCE), queues with dead-letter queues, control table");
    tidemark_json(endpoint, &env, &["init", "--local", "--vault", &format!("s3://{vault}"), "--json"])?;
    tidemark_json(endpoint, &env, &["init", "--local", "--vault", &format!("s3://{vault}"), "--json"])
        .context("init must be safe to run twice")?;

    say(&format!(
        "source: {} objects over {} prefixes, {} large (two above the multipart-copy threshold)",
        sc.objects, sc.prefixes, sc.large
    ));
    s3.create_bucket().bucket(src).send().await?;
    let mut objs = data::objects(sc.seed, sc.objects, sc.prefixes, sc.large, 1536 * 1024);
    // Two objects above the 8 MiB multipart-copy threshold exercise UploadPartCopy.
    for (i, o) in objs.iter_mut().take(2).enumerate() {
        o.body = vec![b'm' + i as u8; 9 * 1024 * 1024 + i * 777];
    }
    let bytes_total: usize = objs.iter().map(|o| o.body.len()).sum();
    put_all(&s3, src, &objs).await?;

    say("protect: seed by listing, pack small objects, copy large ones server-side, capture changes from EventBridge");
    let tp = Instant::now();
    let p = tidemark_json(
        endpoint,
        &env,
        &[
            "protect",
            "--source",
            &format!("s3://{src}"),
            "--vault",
            &format!("s3://{vault}"),
            "--workers",
            &sc.workers.to_string(),
            "--wait",
            "--json",
        ],
    )?;
    let protect_s = tp.elapsed().as_secs_f64();
    for k in ["run_id", "objects", "bytes", "packs", "large_objects", "failed"] {
        if p.get(k).is_none() {
            bail!("protect --json lacks '{k}': {p}");
        }
    }
    if p["objects"].as_u64() != Some(sc.objects as u64) || p["failed"].as_u64() != Some(0) {
        summary.mismatches.push(format!("protect captured {} objects ({} failed), expected {}", p["objects"], p["failed"], sc.objects));
    }

    let t1 = next_second().await;
    let state_t1 = snapshot(&s3, src, "").await?;
    next_second().await;

    let n_over = sc.objects / 10;
    let n_del = sc.objects / 20;
    let n_new = sc.objects / 10;
    say(&format!("changes: overwrite {n_over}, delete {n_del}, add {n_new}"));
    let mut rng_objs = data::objects(sc.seed + 1, n_over + n_new, sc.prefixes, 0, 0);
    for (i, o) in rng_objs.iter_mut().enumerate().take(n_over) {
        o.key = objs[2 + i * 7 % (objs.len() - 2)].key.clone();
    }
    for o in rng_objs.iter_mut().skip(n_over) {
        o.key = format!("new/{}", o.key);
    }
    put_all(&s3, src, &rng_objs).await?;
    for i in 0..n_del {
        let k = &objs[objs.len() - 1 - i * 3 % (objs.len() / 2)].key;
        s3.delete_object().bucket(src).key(k).send().await?;
    }
    next_second().await;
    let t2 = Utc::now().trunc_subsecs(0);
    let state_t2 = snapshot(&s3, src, "").await?;
    // Past the late-event allowance, so the sealed point covers T2.
    tokio::time::sleep(Duration::from_millis(2600)).await;

    say("sync: drain S3 change events from the delta queue, seal a recovery point");
    let s = tidemark_json(endpoint, &env, &["sync", "--source", &format!("s3://{src}"), "--vault", &format!("s3://{vault}"), "--json"])?;
    for k in ["captured", "deleted", "recovery_point"] {
        if s.get(k).is_none() {
            bail!("sync --json lacks '{k}': {s}");
        }
    }

    let mut restore_lines = Vec::new();
    for (label, t, expected) in [("T1", t1, &state_t1), ("T2", t2, &state_t2)] {
        let target = format!("demo-restore-{}", label.to_lowercase());
        let ts = t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let ls = tidemark(endpoint, &env, &["ls", &format!("s3://{src}"), "--vault", &format!("s3://{vault}"), "--as-of", &ts, "--json"])?;
        let listed = String::from_utf8_lossy(&ls.stdout).lines().count();
        if listed != expected.len() {
            summary.mismatches.push(format!("ls as of {label} lists {listed} keys, the source held {}", expected.len()));
        }
        say(&format!("restore as of {label} ({ts}) into s3://{target}"));
        let tr = Instant::now();
        let r = tidemark_json(
            endpoint,
            &env,
            &[
                "restore",
                "--source",
                &format!("s3://{src}"),
                "--vault",
                &format!("s3://{vault}"),
                "--as-of",
                &ts,
                "--to",
                &format!("s3://{target}"),
                "--wait",
                "--json",
            ],
        )?;
        let secs = tr.elapsed().as_secs_f64();
        let got = snapshot(&s3, &target, "").await?;
        let d = diff(expected, &got);
        summary.mismatches.extend(d.iter().take(20).map(|m| format!("as of {label}: {m}")));
        restore_lines.push(format!(
            "restore as of {label}: {} objects, {} bytes, {} verified, {} failed, {:.1} s; compared with the source at {label}: {} objects, {} mismatches",
            r["objects"], r["bytes"], r["verified"], r["failed"], secs, expected.len(), d.len()
        ));
    }
    // A time after the latest point must be refused with the latest recoverable time.
    let late = tidemark(
        endpoint,
        &env,
        &[
            "restore",
            "--source",
            &format!("s3://{src}"),
            "--vault",
            &format!("s3://{vault}"),
            "--as-of",
            "2099-01-01T00:00:00Z",
            "--to",
            "s3://demo-never",
        ],
    )?;
    let err = String::from_utf8_lossy(&late.stderr);
    if late.status.success() || !err.contains("latest recoverable time") {
        summary.mismatches.push(format!("a restore after the latest point was not refused clearly: {err}"));
    }

    summary.lines.push(format!("source: {} objects, {} bytes, {} prefixes", sc.objects, bytes_total, sc.prefixes));
    for (label, state) in [("T1", &state_t1), ("T2", &state_t2)] {
        let tagged = state.values().filter(|s| !s.tags.is_empty()).count();
        let cached = state.values().filter(|s| s.cache_control.is_some()).count();
        let encoded = state.values().filter(|s| s.content_encoding.is_some()).count();
        summary.lines.push(format!(
            "attributes at {label}: {tagged} objects with tags, {cached} with Cache-Control, {encoded} with Content-Encoding, every one compared after the restore"
        ));
    }
    summary.lines.push(format!(
        "protect: {} objects, {} bytes, {} packs, {} large objects, {} vanished, {} failed, {} requests to the vault, {:.1} s",
        p["objects"], p["bytes"], p["packs"], p["large_objects"], p["vanished"], p["failed"], p["vault_requests"], protect_s
    ));
    summary
        .lines
        .push(format!("sync: {} puts and {} deletes captured, recovery point {}", s["captured"], s["deleted"], s["recovery_point"]));
    summary.lines.extend(restore_lines);
    summary.lines.push(format!("total: {:.1} s", t0.elapsed().as_secs_f64()));
    Ok(summary)
}

async fn put_all(s3: &aws_sdk_s3::Client, bucket: &str, objs: &[data::GenObject]) -> Result<()> {
    let results = futures::stream::iter(objs).map(|o| put_object(s3, bucket, o)).buffer_unordered(16);
    futures::pin_mut!(results);
    while let Some(r) = results.next().await {
        r?;
    }
    Ok(())
}
