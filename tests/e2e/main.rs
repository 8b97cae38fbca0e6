//! End-to-end tests of the tidemark CLI on the local stack (moto server started by each test).

use std::collections::BTreeMap;
use std::process::Stdio;
use std::time::Duration;

use anyhow::Result;
use tidemark_e2e::{s3, tidemark, tidemark_json, Scenario};
use tidemark_testkit::harness;

mod encryption;
mod history;
mod lifecycle;
mod vault_alone;
mod versions;

/// The whole job at a small scale: protect, change, sync, restore at two times, compare everything.
#[tokio::test(flavor = "multi_thread")]
async fn protect_change_sync_restore_matches_the_source_at_both_times() -> Result<()> {
    let moto = harness::start_moto()?;
    let sc = Scenario { objects: 300, prefixes: 6, large: 3, workers: 3, seed: 11 };
    let summary = tidemark_e2e::run(&moto.endpoint, &sc, |s| eprintln!("{s}")).await?;
    assert!(summary.mismatches.is_empty(), "{:#?}", summary.mismatches);
    Ok(())
}

async fn fill(endpoint: &str, bucket: &str, n: usize) -> Result<()> {
    let c = s3(endpoint).await;
    c.create_bucket().bucket(bucket).send().await?;
    let objs = tidemark_testkit::data::objects(3, n, 5, 0, 0);
    for chunk in objs.chunks(32) {
        let puts = chunk.iter().map(|o| c.put_object().bucket(bucket).key(&o.key).body(o.body.clone().into()).send());
        for r in futures::future::join_all(puts).await {
            r?;
        }
    }
    Ok(())
}

/// A restore killed with SIGKILL at any moment (three times, at different points) and resumed
/// ends with the target exactly equal to the state at T, no object written more than twice
/// (the batch in flight at a kill), and its status saying so.
#[tokio::test(flavor = "multi_thread")]
async fn restore_killed_with_sigkill_resumes_to_the_exact_state() -> Result<()> {
    let moto = harness::start_moto()?;
    let ep = moto.endpoint.as_str();
    let env = vec![
        ("TIDEMARK_RESTORE_TASK_OBJECTS", "40".to_string()),
        ("TIDEMARK_CONCURRENCY", "2".to_string()),
        ("TIDEMARK_LEASE_SECONDS", "3".to_string()),
    ];
    tidemark_json(ep, &env, &["init", "--local", "--vault", "s3://rk-vault", "--json"])?;
    fill(ep, "rk-src", 600).await?;
    let p = tidemark_json(ep, &env, &["protect", "--source", "s3://rk-src", "--vault", "s3://rk-vault", "--wait", "--json"])?;
    let point = p["recovery_point"].as_str().expect("a point").to_string();
    let c = s3(ep).await;
    // A versioned target counts every write of a key.
    c.create_bucket().bucket("rk-target").send().await?;
    c.put_bucket_versioning()
        .bucket("rk-target")
        .versioning_configuration(
            aws_sdk_s3::types::VersioningConfiguration::builder().status(aws_sdk_s3::types::BucketVersioningStatus::Enabled).build(),
        )
        .send()
        .await?;
    let started = tidemark_json(
        ep,
        &env,
        &["restore", "--source", "s3://rk-src", "--vault", "s3://rk-vault", "--as-of", &point, "--to", "s3://rk-target", "--json"],
    )?;
    let id = started["restore_id"].as_str().expect("a restore id").to_string();
    assert_eq!(started["state"], "planning", "{started}");
    let mut kills = 0usize;
    for ms in [1500u64, 3000, 4500] {
        let mut cmd = tidemark_e2e::local_command(ep, &env);
        cmd.args(["restore", "resume", &id, "--vault", "s3://rk-vault", "--wait", "--json"]).stdout(Stdio::null()).stderr(Stdio::null());
        let mut child = cmd.spawn()?;
        tokio::time::sleep(Duration::from_millis(ms)).await;
        let finished = child.try_wait()?.is_some();
        child.kill()?;
        child.wait()?;
        if finished {
            break;
        }
        kills += 1;
    }
    assert!(kills > 0, "no run was killed mid-restore; the test needs a bigger bucket");
    let done = tidemark_json(ep, &env, &["restore", "resume", &id, "--vault", "s3://rk-vault", "--wait", "--json"])?;
    assert_eq!((done["state"].as_str(), done["failed"].as_u64()), (Some("done"), Some(0)), "{done}");
    assert_eq!((done["objects"].as_u64(), done["verified"].as_u64()), (Some(600), Some(600)), "{done}");
    let status = tidemark_json(ep, &env, &["restore", "status", &id, "--vault", "s3://rk-vault", "--json"])?;
    assert_eq!(status["state"], "done", "{status}");
    let want = tidemark_e2e::snapshot(&c, "rk-src", "").await?;
    let got = tidemark_e2e::snapshot(&c, "rk-target", "").await?;
    let mismatches = tidemark_e2e::diff(&want, &got);
    assert!(mismatches.is_empty(), "the target differs from the state at T: {:?}", &mismatches[..mismatches.len().min(10)]);
    let mut writes: BTreeMap<String, usize> = BTreeMap::new();
    let (mut key_marker, mut version_marker) = (None, None);
    loop {
        let page = c
            .list_object_versions()
            .bucket("rk-target")
            .set_key_marker(key_marker.take())
            .set_version_id_marker(version_marker.take())
            .send()
            .await?;
        for v in page.versions() {
            *writes.entry(v.key().unwrap_or_default().to_string()).or_default() += 1;
        }
        if page.is_truncated() != Some(true) {
            break;
        }
        key_marker = page.next_key_marker().map(String::from);
        version_marker = page.next_version_id_marker().map(String::from);
    }
    // Only the batches in flight at a kill are written again: one batch per worker (4, of at most
    // 40 objects, one task each) per kill, and a key at most once more per kill.
    let writes: BTreeMap<String, usize> = writes.into_iter().filter(|(k, _)| !k.contains(".tidemark-restore/")).collect();
    assert_eq!(writes.len(), 600);
    let too_often: Vec<_> = writes.iter().filter(|(_, n)| **n > 1 + kills).collect();
    assert!(too_often.is_empty(), "keys written more than once per kill: {too_often:?}");
    let again = writes.values().filter(|n| **n > 1).count();
    assert!(again <= kills * 4 * 40, "{again} keys written again after {kills} kills; at most {} were in flight", kills * 4 * 40);
    eprintln!("{kills} kills: {again} of 600 keys written more than once");
    Ok(())
}

/// Killing `protect --wait` mid-run and running it again completes with nothing lost and no duplicate capture record.
#[tokio::test(flavor = "multi_thread")]
async fn protect_killed_mid_run_resumes_with_nothing_lost_or_duplicated() -> Result<()> {
    let moto = harness::start_moto()?;
    let ep = moto.endpoint.as_str();
    let env = vec![
        ("TIDEMARK_BATCH_OBJECTS", "25".to_string()),
        ("TIDEMARK_TARGET_OBJECTS", "150".to_string()),
        ("TIDEMARK_LEASE_SECONDS", "3".to_string()),
        ("TIDEMARK_CONCURRENCY", "2".to_string()),
    ];
    tidemark_json(ep, &env, &["init", "--local", "--vault", "s3://kill-vault", "--json"])?;
    fill(ep, "kill-src", 900).await?;
    let args = ["protect", "--source", "s3://kill-src", "--vault", "s3://kill-vault", "--workers", "2", "--wait", "--json"];
    let mut cmd = tidemark_e2e::local_command(ep, &env);
    cmd.args(args).stdout(Stdio::null()).stderr(Stdio::null());
    let mut child = cmd.spawn()?;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(child.try_wait()?.is_none(), "protect finished before it could be killed; the test needs a bigger bucket");
    child.kill()?;
    child.wait()?;

    let out = tidemark_json(ep, &env, &args)?;
    assert_eq!(out["resumed"], true, "the second run resumes the first: {out}");
    assert_eq!(out["objects"], 900, "{out}");
    assert_eq!(out["failed"], 0, "{out}");

    // The recovery point's segments hold exactly one capture record per object.
    let c = s3(ep).await;
    let points = c.list_objects_v2().bucket("kill-vault").prefix("v1/kill-src/points/").send().await?;
    let key = points.contents().last().and_then(|o| o.key()).expect("a sealed point").to_string();
    let body = c.get_object().bucket("kill-vault").key(&key).send().await?.body.collect().await?.into_bytes();
    let point: serde_json::Value = serde_json::from_slice(&body)?;
    let records: u64 = point["segments"].as_array().unwrap().iter().map(|s| s["count"].as_u64().unwrap()).sum();
    assert_eq!(records, 900, "no capture record lost or duplicated across the kill");
    let ls =
        tidemark(ep, &env, &["ls", "s3://kill-src", "--vault", "s3://kill-vault", "--as-of", point["time"].as_str().unwrap(), "--json"])?;
    assert_eq!(String::from_utf8_lossy(&ls.stdout).lines().count(), 900);
    Ok(())
}

/// Poison delta messages are dead-lettered with their reason and never block the others; bad input is a clear one-line error.
#[tokio::test(flavor = "multi_thread")]
async fn poison_messages_are_dead_lettered_and_bad_input_is_a_clear_error() -> Result<()> {
    let moto = harness::start_moto()?;
    let ep = moto.endpoint.as_str();
    let env: Vec<(&str, String)> = vec![];
    tidemark_json(ep, &env, &["init", "--local", "--vault", "s3://p-vault", "--json"])?;
    fill(ep, "p-src", 20).await?;
    tidemark_json(ep, &env, &["protect", "--source", "s3://p-src", "--vault", "s3://p-vault", "--wait", "--json"])?;

    let clients =
        tidemark_aws::AwsClients::load(&tidemark_aws::ClientOptions { endpoint_url: Some(ep.into()), ..Default::default() }).await;
    let q = clients.sqs.get_queue_url().queue_name("tidemark-delta").send().await?.queue_url().unwrap().to_string();
    clients.sqs.send_message().queue_url(&q).message_body("this is not an event").send().await?;
    let foreign = r#"{"version":"0","id":"1","detail-type":"Object Created","source":"aws.s3","account":"1","time":"2026-01-01T00:00:00Z","region":"us-east-1","resources":[],"detail":{"bucket":{"name":"not-protected"},"object":{"key":"k","size":1,"etag":"e"}}}"#;
    clients.sqs.send_message().queue_url(&q).message_body(foreign).send().await?;
    s3(ep).await.put_object().bucket("p-src").key("after/poison").body(b"ok".to_vec().into()).send().await?;
    tokio::time::sleep(Duration::from_millis(2500)).await;

    let s = tidemark_json(ep, &env, &["sync", "--source", "s3://p-src", "--vault", "s3://p-vault", "--json"])?;
    assert_eq!(s["captured"], 1, "the good event is captured despite the poison: {s}");
    assert_eq!(s["failed"], 2, "{s}");
    let dlq = clients.sqs.get_queue_url().queue_name("tidemark-delta-dlq").send().await?.queue_url().unwrap().to_string();
    let attrs = clients
        .sqs
        .get_queue_attributes()
        .queue_url(&dlq)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages)
        .send()
        .await?;
    let depth = attrs.attributes().unwrap().values().next().unwrap().clone();
    assert_eq!(depth, "2", "both poison messages are in the dead-letter queue");

    let err = |args: &[&str]| -> Result<String> {
        let out = tidemark(ep, &env, args)?;
        assert!(!out.status.success(), "tidemark {args:?} should fail");
        let e = String::from_utf8(out.stderr)?;
        assert_eq!(e.trim().lines().count(), 1, "one line on stderr: {e}");
        Ok(e)
    };
    let e = err(&["protect", "--source", "s3://no-such-src", "--vault", "s3://p-vault", "--wait"])?;
    assert!(e.contains("no-such-src does not exist"), "{e}");
    let e = err(&["protect", "--source", "s3://p-src", "--vault", "s3://no-such-vault", "--wait"])?;
    assert!(e.contains("vault bucket no-such-vault does not exist"), "{e}");
    let e = err(&["ls", "s3://p-src", "--vault", "s3://p-vault", "--as-of", "yesterday"])?;
    assert!(e.contains("not an RFC 3339 time"), "{e}");
    let e =
        err(&["restore", "--source", "s3://p-src", "--vault", "s3://p-vault", "--as-of", "2099-01-01T00:00:00Z", "--to", "s3://x-target"])?;
    assert!(e.contains("latest recoverable time is"), "{e}");
    let e =
        err(&["restore", "--source", "s3://p-src", "--vault", "s3://p-vault", "--as-of", "2001-01-01T00:00:00Z", "--to", "s3://x-target"])?;
    assert!(e.contains("before the first recovery point"), "{e}");
    let e = err(&[
        "restore",
        "--source",
        "s3://p-src",
        "--vault",
        "s3://p-vault",
        "--as-of",
        "2001-01-01T00:00:00Z",
        "--to",
        "s3://x-target",
        "--mode",
        "sideways",
    ])?;
    assert!(e.contains("not one of"), "{e}");
    let e = err(&["ls", "s3://Bad_Bucket", "--vault", "s3://p-vault", "--as-of", "2001-01-01T00:00:00Z"])?;
    assert!(e.contains("not a valid S3 bucket name"), "{e}");
    // Restoring into a non-empty target in copy mode is refused and writes nothing.
    let latest = s["recovery_point"].as_str().unwrap().to_string();
    let e = err(&["restore", "--source", "s3://p-src", "--vault", "s3://p-vault", "--as-of", &latest, "--to", "s3://p-src/after/"])?;
    assert!(e.contains("use --mode rollback to restore in place"), "{e}");
    s3(ep).await.create_bucket().bucket("busy-target").send().await?;
    s3(ep).await.put_object().bucket("busy-target").key("keep-me").body(b"x".to_vec().into()).send().await?;
    let e = err(&["restore", "--source", "s3://p-src", "--vault", "s3://p-vault", "--as-of", &latest, "--to", "s3://busy-target"])?;
    assert!(e.contains("is not empty"), "{e}");
    // The vault is untouched by all of that: the same point still restores.
    let r = tidemark_json(
        ep,
        &env,
        &[
            "restore",
            "--source",
            "s3://p-src",
            "--vault",
            "s3://p-vault",
            "--as-of",
            &latest,
            "--to",
            "s3://p-restored",
            "--wait",
            "--json",
        ],
    )?;
    assert_eq!((r["objects"].as_u64(), r["failed"].as_u64()), (Some(21), Some(0)), "{r}");
    Ok(())
}

/// `protect --inventory` plans from a generated S3 Inventory report; the bucket restores exactly.
#[tokio::test(flavor = "multi_thread")]
async fn protect_seeded_from_an_inventory_report_restores_exactly() -> Result<()> {
    use tidemark_testkit::inventory_gen::{object_body, rows, write_report, ReportSpec};
    let moto = harness::start_moto()?;
    let ep = moto.endpoint.as_str();
    let dir = tempfile::tempdir()?;
    let mut spec = ReportSpec::new(240, 3);
    spec.source_bucket = "inv-src".into();
    spec.max_size = Some(20_000);
    spec.content_etags = true;
    let report = write_report(dir.path(), &spec)?;
    let c = s3(ep).await;
    c.create_bucket().bucket("inv-src").send().await?;
    let current: Vec<_> = rows(&spec).filter(|r| r.is_latest && !r.is_delete_marker).collect();
    for chunk in current.chunks(32) {
        let puts = chunk.iter().map(|r| c.put_object().bucket("inv-src").key(&r.key).body(object_body(&r.key, r.size).into()).send());
        for r in futures::future::join_all(puts).await {
            r?;
        }
    }
    let env = vec![("TIDEMARK_TARGET_OBJECTS", "60".to_string())];
    let plan = tidemark_json(ep, &env, &["inventory", "plan", "--manifest", &report.manifest_url, "--target-objects", "60", "--json"])?;
    assert_eq!(plan["totals"]["objects"].as_u64(), Some(current.len() as u64), "{plan}");
    let parts = plan["partitions"].as_array().unwrap();
    assert!(parts.len() >= 4, "{plan}");
    assert_eq!(parts.iter().map(|p| p["objects"].as_u64().unwrap()).sum::<u64>(), current.len() as u64);

    tidemark_json(ep, &env, &["init", "--local", "--vault", "s3://inv-vault", "--json"])?;
    c.create_bucket().bucket("inv-other").send().await?;
    let wrong = tidemark(
        ep,
        &env,
        &["protect", "--source", "s3://inv-other", "--vault", "s3://inv-vault", "--inventory", &report.manifest_url, "--wait"],
    )?;
    let e = String::from_utf8_lossy(&wrong.stderr);
    assert!(!wrong.status.success() && e.contains("describes bucket inv-src, not inv-other"), "{e}");
    // The report also goes to an S3 bucket, as S3 Inventory delivers it, and protect reads it from there.
    c.create_bucket().bucket("inv-reports").send().await?;
    let mut keys = vec![report.manifest_key.clone(), report.manifest_key.replace("manifest.json", "manifest.checksum")];
    keys.extend(report.data_keys.iter().cloned());
    for key in &keys {
        let body = std::fs::read(report.path(key))?;
        c.put_object().bucket("inv-reports").key(key).body(body.into()).send().await?;
    }
    let s3_manifest = format!("s3://inv-reports/{}", report.manifest_key);
    // `inventory plan` reads the s3:// copy as the seeder does, and plans it exactly as the local copy.
    let s3_plan = tidemark_json(ep, &env, &["inventory", "plan", "--manifest", &s3_manifest, "--target-objects", "60", "--json"])?;
    assert_eq!(s3_plan["partitions"], plan["partitions"], "s3:// {s3_plan}\nfile:// {plan}");
    assert_eq!(s3_plan["totals"], plan["totals"]);
    let p = tidemark_json(
        ep,
        &env,
        &["protect", "--source", "s3://inv-src", "--vault", "s3://inv-vault", "--inventory", &s3_manifest, "--wait", "--json"],
    )?;
    assert_eq!(p["objects"].as_u64(), Some(current.len() as u64), "{p}");
    assert_eq!(p["tasks"].as_u64(), Some(parts.len() as u64), "one task per planned partition: {p}");
    let t = p["recovery_point"].as_str().unwrap();
    tidemark_json(
        ep,
        &env,
        &[
            "restore",
            "--source",
            "s3://inv-src",
            "--vault",
            "s3://inv-vault",
            "--as-of",
            t,
            "--to",
            "s3://inv-restored",
            "--wait",
            "--json",
        ],
    )?;
    let want = tidemark_e2e::snapshot(&c, "inv-src", "").await?;
    let got = tidemark_e2e::snapshot(&c, "inv-restored", "").await?;
    assert_eq!(tidemark_e2e::diff(&want, &got), Vec::<String>::new());
    Ok(())
}

/// A missing manifest, or one of an unsupported scheme, is a one-line error naming it.
#[tokio::test(flavor = "multi_thread")]
async fn inventory_plan_errors_name_the_file() -> Result<()> {
    let out = tidemark("http://127.0.0.1:9", &[], &["inventory", "plan", "--manifest", "file:///nonexistent/manifest.json", "--json"])?;
    assert!(!out.status.success());
    let e = String::from_utf8(out.stderr)?;
    assert!(e.contains("manifest.json"), "{e}");
    // Only file:// and s3:// manifests are read; any other scheme is refused, naming the URL,
    // before any AWS configuration is loaded.
    let url = "https://example.invalid/inv/manifest.json";
    let out = tidemark("http://127.0.0.1:9", &[], &["inventory", "plan", "--manifest", url, "--json"])?;
    assert!(!out.status.success());
    let e = String::from_utf8(out.stderr)?;
    assert!(e.contains(url) && e.contains("s3://"), "{e}");
    Ok(())
}

/// Lines of `tidemark ls --json` as of a time (the catalog as an operator sees it).
fn ls_lines(ep: &str, env: &[(&str, String)], src: &str, vault: &str, t: &str) -> Result<Vec<String>> {
    let out = tidemark(ep, env, &["ls", &format!("s3://{src}"), "--vault", &format!("s3://{vault}"), "--as-of", t, "--json"])?;
    anyhow::ensure!(out.status.success(), "ls failed: {}", String::from_utf8_lossy(&out.stderr));
    Ok(String::from_utf8(out.stdout)?.lines().map(String::from).collect())
}

/// moto sends no event for a delete marker, so only reconciliation can catch such deletes:
/// `sync --reconcile` finds them (and nothing else) and places each at its own time, and the
/// history before them is kept.
/// Compaction then merges the delta segments; `ls` and `restore` give identical results before
/// and after, and the new point lists fewer segments.
#[tokio::test(flavor = "multi_thread")]
async fn reconcile_catches_delete_markers_and_compaction_changes_no_result() -> Result<()> {
    let moto = harness::start_moto()?;
    let ep = moto.endpoint.as_str();
    let env: Vec<(&str, String)> = vec![("TIDEMARK_LATE_EVENT_SECONDS", "1".into())];
    let (src, vault) = ("rc-src", "rc-vault");
    tidemark_json(ep, &env, &["init", "--local", "--vault", &format!("s3://{vault}"), "--json"])?;
    let c = s3(ep).await;
    c.create_bucket().bucket(src).send().await?;
    let on = aws_sdk_s3::types::VersioningConfiguration::builder().status(aws_sdk_s3::types::BucketVersioningStatus::Enabled).build();
    c.put_bucket_versioning().bucket(src).versioning_configuration(on).send().await?;
    for i in 0..24 {
        let body = format!("object {i}").into_bytes();
        c.put_object().bucket(src).key(format!("d{}/k{i:02} +%.txt", i % 3)).body(body.into()).send().await?;
    }
    let p =
        tidemark_json(ep, &env, &["protect", "--source", &format!("s3://{src}"), "--vault", &format!("s3://{vault}"), "--wait", "--json"])?;
    let t0 = p["recovery_point"].as_str().unwrap().to_string();
    let state_t0 = tidemark_e2e::snapshot(&c, src, "").await?;
    tokio::time::sleep(Duration::from_millis(1100)).await;

    // Three delete markers (no events), two overwrites and one new object (events).
    for i in [1, 5, 9] {
        c.delete_object().bucket(src).key(format!("d{}/k{i:02} +%.txt", i % 3)).send().await?;
    }
    for i in [2, 3] {
        c.put_object().bucket(src).key(format!("d{}/k{i:02} +%.txt", i % 3)).body(b"changed".to_vec().into()).send().await?;
    }
    c.put_object().bucket(src).key("new/one").body(b"new".to_vec().into()).send().await?;
    tokio::time::sleep(Duration::from_millis(2200)).await;
    let s1 = tidemark_json(ep, &env, &["sync", "--source", &format!("s3://{src}"), "--vault", &format!("s3://{vault}"), "--json"])?;
    assert_eq!((s1["captured"].as_u64(), s1["deleted"].as_u64()), (Some(3), Some(0)), "the delete markers sent no event: {s1}");
    let t1 = s1["recovery_point"].as_str().unwrap().to_string();
    assert_eq!(ls_lines(ep, &env, src, vault, &t1)?.len(), 25, "without reconciliation the catalog still holds the deleted objects");

    tokio::time::sleep(Duration::from_millis(1100)).await;
    let s2 = tidemark_json(
        ep,
        &env,
        &["sync", "--source", &format!("s3://{src}"), "--vault", &format!("s3://{vault}"), "--reconcile", "--json"],
    )?;
    assert_eq!(s2["reconciled_deletes"], 3, "{s2}");
    assert_eq!(s2["reconciled_puts"], 0, "what the events carried is not counted as missed: {s2}");
    for k in ["captured", "deleted", "recovery_point"] {
        assert!(s2.get(k).is_some(), "sync --json keeps '{k}': {s2}");
    }
    let t2 = s2["recovery_point"].as_str().unwrap().to_string();
    let state_t2 = tidemark_e2e::snapshot(&c, src, "").await?;
    assert_eq!(ls_lines(ep, &env, src, vault, &t2)?.len(), state_t2.len(), "after reconciliation the catalog matches the source");
    // The markers are placed at their own times (ListObjectVersions gives them), so the history
    // is corrected too: at t1 the catalog now shows what the bucket held then.
    assert_eq!(ls_lines(ep, &env, src, vault, &t1)?.len(), state_t2.len(), "at t1, after reconciliation, the three keys are deleted");

    // Compaction: same answers before and after, from fewer segments.
    let times = [t0.clone(), t1.clone(), t2.clone()];
    let before: Vec<Vec<String>> = times.iter().map(|t| ls_lines(ep, &env, src, vault, t)).collect::<Result<_>>()?;
    let k = tidemark_json(ep, &env, &["compact", "--source", &format!("s3://{src}"), "--vault", &format!("s3://{vault}"), "--json"])?;
    assert!(k["replaced"].as_u64().unwrap() >= 2 && k["compacted"] == 1, "{k}");
    assert!(k["segments_after"].as_u64() < k["segments_before"].as_u64(), "{k}");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let s3j = tidemark_json(ep, &env, &["sync", "--source", &format!("s3://{src}"), "--vault", &format!("s3://{vault}"), "--json"])?;
    assert_eq!(s3j["new_recovery_point"], true, "{s3j}");
    let after: Vec<Vec<String>> = times.iter().map(|t| ls_lines(ep, &env, src, vault, t)).collect::<Result<_>>()?;
    assert_eq!(before, after, "ls as of every time is identical after compaction");
    for (label, t, want) in [("t0", &t0, &state_t0), ("t2", &t2, &state_t2)] {
        let target = format!("rc-restored-{label}");
        let r = tidemark_json(
            ep,
            &env,
            &[
                "restore",
                "--source",
                &format!("s3://{src}"),
                "--vault",
                &format!("s3://{vault}"),
                "--as-of",
                t,
                "--to",
                &format!("s3://{target}"),
                "--wait",
                "--json",
            ],
        )?;
        assert_eq!(r["failed"], 0, "{r}");
        let got = tidemark_e2e::snapshot(&c, &target, "").await?;
        assert_eq!(tidemark_e2e::diff(want, &got), Vec::<String>::new(), "restore as of {label} after compaction");
    }
    Ok(())
}
