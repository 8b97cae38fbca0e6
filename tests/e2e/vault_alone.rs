//! The vault stands alone (issue 12): with the control table and every queue deleted, `ls` lists
//! the recovery points and the state at each, and `restore` writes that state exactly.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{bail, Context as _, Result};
use chrono::SubsecRound;
use tidemark_aws::admin::ResourceNames;
use tidemark_aws::{AwsClients, ClientOptions};
use tidemark_e2e::{s3, snapshot, tidemark, tidemark_json, Seen};
use tidemark_testkit::harness;

/// Deletes the control table and every queue (and dead-letter queue) of the default deployment
/// name: what is left is the vault bucket.
pub async fn drop_control_plane(endpoint: &str) -> Result<()> {
    let c = AwsClients::load(&ClientOptions::local(endpoint)).await;
    let names = ResourceNames::new("tidemark");
    c.dynamodb.delete_table().table_name(&names.table).send().await.context("deleting the control table")?;
    for q in [&names.work_queue, &names.delta_queue, &names.restore_queue] {
        for name in [q.clone(), format!("{q}-dlq")] {
            if let Ok(url) = c.sqs.get_queue_url().queue_name(&name).send().await {
                c.sqs
                    .delete_queue()
                    .queue_url(url.queue_url().unwrap_or_default())
                    .send()
                    .await
                    .with_context(|| format!("deleting {name}"))?;
            }
        }
    }
    Ok(())
}

/// Protects a bucket of `n` objects, changes it and syncs; returns the two recovery points with
/// the source's state at each.
pub async fn protect_change_sync(
    ep: &str,
    env: &[(&str, String)],
    src: &str,
    vault: &str,
    n: usize,
) -> Result<[(String, BTreeMap<String, Seen>); 2]> {
    tidemark_json(ep, env, &["init", "--local", "--vault", &format!("s3://{vault}"), "--json"])?;
    super::fill(ep, src, n).await?;
    let c = s3(ep).await;
    // One object above the small-object threshold is copied server-side, not packed.
    c.put_object().bucket(src).key("large/one.bin").body(vec![b'L'; 1_200_000].into()).send().await?;
    let p =
        tidemark_json(ep, env, &["protect", "--source", &format!("s3://{src}"), "--vault", &format!("s3://{vault}"), "--wait", "--json"])?;
    let p1 = p["recovery_point"].as_str().context("protect sealed no point")?.to_string();
    let at_p1 = snapshot(&c, src, "").await?;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let keys: Vec<String> = at_p1.keys().cloned().collect();
    for k in keys.iter().take(5) {
        c.put_object().bucket(src).key(k).body(format!("changed {k}").into_bytes().into()).send().await?;
    }
    for k in keys.iter().skip(5).take(3) {
        c.delete_object().bucket(src).key(k).send().await?;
    }
    for i in 0..4 {
        c.put_object().bucket(src).key(format!("new/{i}")).body(vec![b'n'; 100 + i].into()).send().await?;
    }
    let at_p2 = snapshot(&c, src, "").await?;
    let changed_at = chrono::Utc::now().trunc_subsecs(0);
    // Past the late-event allowance (2 s on the local stack), so the point covers the changes.
    tokio::time::sleep(Duration::from_millis(3100)).await;
    let s = tidemark_json(ep, env, &["sync", "--source", &format!("s3://{src}"), "--vault", &format!("s3://{vault}"), "--json"])?;
    let p2 = s["recovery_point"].as_str().context("sync sealed no point")?.to_string();
    if chrono::DateTime::parse_from_rfc3339(&p2)? < changed_at {
        bail!("the point {p2} does not cover the changes made by {changed_at}");
    }
    Ok([(p1, at_p1), (p2, at_p2)])
}

#[tokio::test(flavor = "multi_thread")]
async fn ls_and_restore_read_the_vault_alone_when_the_control_plane_is_gone() -> Result<()> {
    let moto = harness::start_moto()?;
    let ep = moto.endpoint.as_str();
    let env: Vec<(&str, String)> = vec![];
    let points = protect_change_sync(ep, &env, "va-src", "va-vault", 120).await?;
    drop_control_plane(ep).await?;

    // Without --as-of, ls lists the recovery points from the vault.
    let out = tidemark(ep, &env, &["ls", "s3://va-src", "--vault", "s3://va-vault", "--json"])?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "ls of the points failed: {stderr}");
    assert_eq!(stderr.matches("reading vault s3://va-vault alone").count(), 1, "the vault-only note is said once: {stderr}");
    let listed: Vec<serde_json::Value> = String::from_utf8(out.stdout)?.lines().map(serde_json::from_str).collect::<Result<_, _>>()?;
    let times: Vec<String> = listed
        .iter()
        .map(|p| chrono::DateTime::parse_from_rfc3339(p["recovery_point"].as_str().unwrap_or_default()).map(|t| t.to_rfc3339()))
        .collect::<Result<_, _>>()?;
    for (p, _) in &points {
        let p = chrono::DateTime::parse_from_rfc3339(p)?.to_rfc3339();
        assert!(times.contains(&p), "ls does not list the point {p}: {listed:?}");
    }

    let c = s3(ep).await;
    for (i, (point, expected)) in points.iter().enumerate() {
        let out = tidemark(ep, &env, &["ls", "s3://va-src", "--vault", "s3://va-vault", "--as-of", point, "--json"])?;
        assert!(out.status.success(), "ls as of {point}: {}", String::from_utf8_lossy(&out.stderr));
        let keys: Vec<String> = String::from_utf8(out.stdout)?
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).map(|v| v["key"].as_str().unwrap_or_default().to_string()))
            .collect::<Result<_, _>>()?;
        assert_eq!(keys, expected.keys().cloned().collect::<Vec<_>>(), "ls as of {point} lists the source's keys then");

        // No --wait: with no worker to see the run, it runs here anyway.
        let target = format!("va-restore-{i}");
        let r = tidemark_json(
            ep,
            &env,
            &[
                "restore",
                "--source",
                "s3://va-src",
                "--vault",
                "s3://va-vault",
                "--as-of",
                point,
                "--to",
                &format!("s3://{target}"),
                "--json",
            ],
        )?;
        assert_eq!((r["state"].as_str(), r["failed"].as_u64()), (Some("done"), Some(0)), "{r}");
        assert_eq!(r["objects"].as_u64(), Some(expected.len() as u64), "{r}");
        let got = snapshot(&c, &target, "").await?;
        let d = tidemark_e2e::diff(expected, &got);
        assert!(d.is_empty(), "restore as of {point} differs from the source then: {:?}", &d[..d.len().min(10)]);
    }
    // Runs live in the control plane; without it, listing them is a clear error.
    let out = tidemark(ep, &env, &["restore", "list", "--source", "s3://va-src", "--vault", "s3://va-vault"])?;
    let says = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && says.contains("restore runs are kept in the control plane"), "{says}");
    Ok(())
}

/// Runs `tidemark verify` and returns its exit status with the `--json` report.
fn verify(ep: &str, args: &[&str]) -> Result<(bool, serde_json::Value, String)> {
    let mut all = vec!["verify"];
    all.extend_from_slice(args);
    all.push("--json");
    let out = tidemark(ep, &[], &all)?;
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    let text = String::from_utf8(out.stdout)?;
    let v = serde_json::from_str(text.trim()).with_context(|| format!("verify printed no report: {text} {stderr}"))?;
    Ok((out.status.success(), v, stderr))
}

#[tokio::test(flavor = "multi_thread")]
async fn verify_names_the_source_keys_and_points_of_a_damaged_pack_byte() -> Result<()> {
    let moto = harness::start_moto()?;
    let ep = moto.endpoint.as_str();
    let points = protect_change_sync(ep, &[], "vv-src", "vv-vault", 150).await?;
    // Verification reads the vault alone.
    drop_control_plane(ep).await?;

    let (ok, clean, stderr) = verify(ep, &["--vault", "s3://vv-vault"])?;
    assert!(ok, "a sound vault verifies: {clean} {stderr}");
    assert_eq!(clean["ok"], true, "{clean}");
    assert!(clean["packs"].as_u64() >= Some(2) && clean["packs"] == clean["packs_total"], "{clean}");
    assert!(clean["blobs"].as_u64() >= Some(150), "every blob is checked: {clean}");
    assert_eq!(clean["large_objects"].as_u64(), Some(1), "{clean}");
    eprintln!(
        "clean verify: {} bytes in {:.2} s, {:.1} MiB/s",
        clean["bytes_read"],
        clean["seconds"].as_f64().unwrap_or(0.0),
        clean["mib_per_s"].as_f64().unwrap_or(0.0)
    );

    // A sample is deterministic: the same share reads the same packs.
    let (_, half, _) = verify(ep, &["--vault", "s3://vv-vault", "--sample", "0.5"])?;
    let (_, again, _) = verify(ep, &["--vault", "s3://vv-vault", "--sample", "0.5"])?;
    assert_eq!((half["packs"].clone(), half["large_objects"].clone()), (again["packs"].clone(), again["large_objects"].clone()));
    let bad = tidemark(ep, &[], &["verify", "--vault", "s3://vv-vault", "--sample", "2"])?;
    let says = String::from_utf8_lossy(&bad.stderr);
    assert!(!bad.status.success() && says.contains("--sample") && says.contains("not a fraction"), "{says}");

    // Damage one byte of the first blob of a seed pack: a new version of the pack object, as a
    // disk error would show it to readers of the key.
    let c = s3(ep).await;
    let listed = c.list_objects_v2().bucket("vv-vault").prefix("v1/vv-src/packs/").send().await?;
    let mut packs: Vec<String> = listed.contents().iter().filter_map(|o| o.key().map(String::from)).collect();
    packs.sort();
    let pack_key = packs.first().context("no pack in the vault")?.clone();
    let bytes = c.get_object().bucket("vv-vault").key(&pack_key).send().await?.body.collect().await?.into_bytes().to_vec();
    let footer = tidemark_core::vault::pack::parse_pack(&bytes)?;
    let (victim, offset) = footer
        .records
        .iter()
        .find_map(|r| match &r.location {
            Some(tidemark_core::domain::Location::Pack { offset, length, .. }) if *length > 0 => Some((r.key.clone(), *offset)),
            _ => None,
        })
        .context("no blob in the pack")?;
    let mut damaged = bytes.clone();
    damaged[offset as usize] ^= 0xff;
    c.put_object().bucket("vv-vault").key(&pack_key).body(damaged.into()).send().await.context("writing the damaged pack")?;

    let (ok, report, stderr) = verify(ep, &["--vault", "s3://vv-vault", "--source", "s3://vv-src"])?;
    assert!(!ok, "a damaged vault fails verification: {report}");
    assert!(stderr.contains("damaged or missing"), "{stderr}");
    let problems = report["problems"].as_array().context("no problems array")?;
    assert_eq!(problems.len(), 1, "exactly the damaged pack is reported: {report}");
    let p = &problems[0];
    assert_eq!((p["object"].as_str(), p["kind"].as_str()), (Some(pack_key.as_str()), Some("damaged")), "{p}");
    assert_eq!(p["source_keys"], serde_json::json!([victim]), "the damaged blob's key alone is named: {p}");
    let named: Vec<String> = p["recovery_points"]
        .as_array()
        .context("no recovery points")?
        .iter()
        .map(|t| chrono::DateTime::parse_from_rfc3339(t.as_str().unwrap_or_default()).map(|t| t.to_rfc3339()))
        .collect::<Result<_, _>>()?;
    for (point, _) in &points {
        let point = chrono::DateTime::parse_from_rfc3339(point)?.to_rfc3339();
        assert!(named.contains(&point), "the seed pack is part of the point {point}: {p}");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn rebuild_after_the_table_is_lost_lets_protection_go_on_and_restores_stay_exact() -> Result<()> {
    let moto = harness::start_moto()?;
    let ep = moto.endpoint.as_str();
    let env: Vec<(&str, String)> = vec![];
    let [(p1, at_p1), (p2, at_p2)] = protect_change_sync(ep, &env, "rb-src", "rb-vault", 120).await?;
    let clients = AwsClients::load(&ClientOptions::local(ep)).await;
    clients.dynamodb.delete_table().table_name("tidemark-control").send().await?;

    let first = tidemark_json(ep, &env, &["rebuild", "--vault", "s3://rb-vault", "--json"])?;
    assert_eq!(first["bucket"], "rb-src", "{first}");
    assert!(first["registered"].as_u64() >= Some(2) && first["protected_since"].is_string(), "{first}");
    assert_eq!(first["unreadable"], serde_json::json!([]), "{first}");
    // Idempotent: a second rebuild finds everything in place.
    let second = tidemark_json(ep, &env, &["rebuild", "--vault", "s3://rb-vault", "--source", "s3://rb-src", "--json"])?;
    assert_eq!((second["registered"].as_u64(), second["already_registered"].as_u64()), (Some(0), first["registered"].as_u64()), "{second}");

    // Protection goes on: changes after the rebuild are captured by sync and sealed in a point.
    let c = s3(ep).await;
    c.put_object().bucket("rb-src").key("after/rebuild").body(b"written after the rebuild".to_vec().into()).send().await?;
    let gone = at_p2.keys().nth(20).context("a key to delete")?.clone();
    c.delete_object().bucket("rb-src").key(&gone).send().await?;
    let at_p3 = snapshot(&c, "rb-src", "").await?;
    tokio::time::sleep(Duration::from_millis(3100)).await;
    let s = tidemark_json(ep, &env, &["sync", "--source", "s3://rb-src", "--vault", "s3://rb-vault", "--json"])?;
    assert!(s["captured"].as_u64() >= Some(1) && s["deleted"].as_u64() >= Some(1), "{s}");
    let p3 = s["recovery_point"].as_str().context("sync sealed no point")?.to_string();

    for (i, (point, expected)) in [(p1, at_p1), (p2, at_p2), (p3, at_p3)].iter().enumerate() {
        let target = format!("rb-restore-{i}");
        let r = tidemark_json(
            ep,
            &env,
            &[
                "restore",
                "--source",
                "s3://rb-src",
                "--vault",
                "s3://rb-vault",
                "--as-of",
                point,
                "--to",
                &format!("s3://{target}"),
                "--wait",
                "--json",
            ],
        )?;
        assert_eq!((r["state"].as_str(), r["failed"].as_u64()), (Some("done"), Some(0)), "{r}");
        let got = snapshot(&c, &target, "").await?;
        let d = tidemark_e2e::diff(expected, &got);
        assert!(d.is_empty(), "restore as of {point} after the rebuild differs: {:?}", &d[..d.len().min(10)]);
    }
    Ok(())
}
