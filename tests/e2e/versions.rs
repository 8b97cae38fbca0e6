//! A versioned bucket with history before protection, protected with every version, then
//! overwrites, tag changes, delete markers, permanent deletes, undeletes and a re-creation:
//! restores as of several times give exactly what the bucket showed at each.
//!
//! moto sends no event for a versioned delete (markers, permanent deletes, removed markers), so
//! `sync --reconcile` finds them: a delete marker at its own time, a permanent delete at the
//! time of the reconciliation (S3 keeps no time for it). The times compared are the ones S3's
//! own records pin down.

use std::time::Duration;

use anyhow::Result;
use aws_sdk_s3::primitives::ByteStream;
use tidemark_e2e::{diff, s3, snapshot, tidemark, tidemark_json};
use tidemark_testkit::harness;

async fn put(c: &aws_sdk_s3::Client, bucket: &str, key: &str, body: &str, tags: Option<&str>) -> Result<String> {
    let o = c
        .put_object()
        .bucket(bucket)
        .key(key)
        .body(ByteStream::from(body.as_bytes().to_vec()))
        .content_type("text/plain; charset=utf-8")
        .metadata("body", body)
        .set_tagging(tags.map(String::from))
        .send()
        .await?;
    Ok(o.version_id().unwrap_or_default().to_string())
}

async fn latest_version(c: &aws_sdk_s3::Client, bucket: &str, key: &str) -> Result<(String, bool)> {
    let out = c.list_object_versions().bucket(bucket).prefix(key).send().await?;
    if let Some(m) = out.delete_markers().iter().find(|m| m.key() == Some(key) && m.is_latest() == Some(true)) {
        return Ok((m.version_id().unwrap_or_default().to_string(), true));
    }
    let v = out.versions().iter().find(|v| v.key() == Some(key) && v.is_latest() == Some(true)).expect("a latest version");
    Ok((v.version_id().unwrap_or_default().to_string(), false))
}

fn second() -> Duration {
    Duration::from_millis(1100)
}

#[tokio::test(flavor = "multi_thread")]
async fn versioned_history_then_deletes_and_undeletes_restores_exactly_at_every_time() -> Result<()> {
    let moto = harness::start_moto()?;
    let ep = moto.endpoint.as_str();
    let env: Vec<(&str, String)> = vec![("TIDEMARK_LATE_EVENT_SECONDS", "1".into())];
    let (src, vault) = ("vh-src", "vh-vault");
    let (s, v) = (format!("s3://{src}"), format!("s3://{vault}"));
    tidemark_json(ep, &env, &["init", "--local", "--vault", &v, "--json"])?;
    let c = s3(ep).await;
    c.create_bucket().bucket(src).send().await?;
    let on = aws_sdk_s3::types::VersioningConfiguration::builder().status(aws_sdk_s3::types::BucketVersioningStatus::Enabled).build();
    c.put_bucket_versioning().bucket(src).versioning_configuration(on).send().await?;

    // History before protection: overwrites, a delete marker, tags.
    for k in ["a", "b", "c", "d"] {
        put(&c, src, k, &format!("{k}1"), None).await?;
    }
    tokio::time::sleep(second()).await;
    put(&c, src, "a", "a2", Some("gen=2")).await?;
    c.delete_object().bucket(src).key("b").send().await?;
    put(&c, src, "c", "c2", None).await?;
    tokio::time::sleep(second()).await;

    let p = tidemark_json(ep, &env, &["protect", "--source", &s, "--vault", &v, "--all-versions", "--wait", "--json"])?;
    assert_eq!((p["all_versions"].as_bool(), p["failed"].as_u64()), (Some(true), Some(0)), "{p}");
    assert_eq!(p["objects"].as_u64(), Some(6), "every version of the history (the marker is a record, no object): {p}");
    let mut times = vec![("after the seed", p["recovery_point"].as_str().unwrap().to_string(), snapshot(&c, src, "").await?)];
    let status = tidemark_json(ep, &env, &["status", "--source", &s, "--vault", &v, "--json"])?;
    assert_eq!((status["unprotected"].as_u64(), status["latest_run"]["failed"].as_u64()), (Some(0), Some(0)), "{status}");
    assert_eq!(status["latest_run"]["all_versions"], true, "{status}");

    // After protection, with events: an overwrite, a new key, a tag change.
    tokio::time::sleep(second()).await;
    put(&c, src, "a", "a3", None).await?;
    put(&c, src, "e", "e1", None).await?;
    let tags =
        aws_sdk_s3::types::Tagging::builder().tag_set(aws_sdk_s3::types::Tag::builder().key("reviewed").value("yes").build()?).build()?;
    c.put_object_tagging().bucket(src).key("c").tagging(tags).send().await?;
    tokio::time::sleep(Duration::from_millis(2200)).await;
    let s1 = tidemark_json(ep, &env, &["sync", "--source", &s, "--vault", &v, "--json"])?;
    assert!(s1["attribute_changes"].as_u64().unwrap() >= 1, "the tag change is captured: {s1}");
    times.push(("after overwrite and tags", s1["recovery_point"].as_str().unwrap().to_string(), snapshot(&c, src, "").await?));

    // Without events on moto: a delete marker, a permanent delete of the current version, and
    // the removal of a delete marker (an undelete).
    tokio::time::sleep(second()).await;
    c.delete_object().bucket(src).key("c").send().await?;
    let marker_placed = chrono::Utc::now();
    let (a3, _) = latest_version(&c, src, "a").await?;
    c.delete_object().bucket(src).key("a").version_id(&a3).send().await?;
    let (b_marker, is_marker) = latest_version(&c, src, "b").await?;
    assert!(is_marker);
    c.delete_object().bucket(src).key("b").version_id(&b_marker).send().await?;
    tokio::time::sleep(Duration::from_millis(2200)).await;
    let s2 = tidemark_json(ep, &env, &["sync", "--source", &s, "--vault", &v, "--reconcile", "--json"])?;
    assert_eq!(s2["reconcile"]["deletes"], 1, "the delete marker on c: {s2}");
    assert_eq!(s2["reconcile"]["purges"], 2, "a3 and b's marker are gone from the bucket: {s2}");
    times.push((
        "after reconciling deletes and undeletes",
        s2["recovery_point"].as_str().unwrap().to_string(),
        snapshot(&c, src, "").await?,
    ));
    // The marker counts from its own time, not from the reconciliation's.
    let at_marker = (marker_placed + chrono::Duration::seconds(1)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let ls = tidemark(ep, &env, &["ls", &s, "--vault", &v, "--as-of", &at_marker, "--json"])?;
    let listed = String::from_utf8(ls.stdout)?;
    assert!(!listed.contains("\"key\":\"c\""), "c is deleted from its marker's time on: {listed}");

    // A re-creation of the deleted key, and a permanent delete of a non-current version.
    tokio::time::sleep(second()).await;
    put(&c, src, "c", "c3", None).await?;
    let oldest_d = c.list_object_versions().bucket(src).prefix("d").send().await?;
    assert_eq!(oldest_d.versions().len(), 1);
    put(&c, src, "d", "d2", None).await?;
    let d1 = oldest_d.versions()[0].version_id().unwrap().to_string();
    c.delete_object().bucket(src).key("d").version_id(&d1).send().await?;
    tokio::time::sleep(Duration::from_millis(2200)).await;
    let s3j = tidemark_json(ep, &env, &["sync", "--source", &s, "--vault", &v, "--reconcile", "--json"])?;
    times.push(("after re-creation", s3j["recovery_point"].as_str().unwrap().to_string(), snapshot(&c, src, "").await?));

    let mut compared = 0;
    for (i, (label, t, want)) in times.iter().enumerate() {
        let target = format!("s3://vh-restored-{i}");
        let r = tidemark_json(ep, &env, &["restore", "--source", &s, "--vault", &v, "--as-of", t, "--to", &target, "--wait", "--json"])?;
        assert_eq!((r["failed"].as_u64(), r["unprotected"].as_u64()), (Some(0), Some(0)), "{label}: {r}");
        let got = snapshot(&c, &format!("vh-restored-{i}"), "").await?;
        assert_eq!(diff(want, &got), Vec::<String>::new(), "restore as of {label} ({t})");
        compared += want.len();
    }
    eprintln!("versioned history: {} restores, {compared} objects compared, all exact", times.len());
    Ok(())
}
