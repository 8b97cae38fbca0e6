//! Sources that vanish by design, end to end on moto: a protected bucket emptied and deleted is
//! "gone" after `sync` (which exits 0 and dead-letters nothing), `status` says so, a restore as
//! of before the deletion gives back what it held, `unprotect` ends protection on purpose (and
//! refuses an unknown source), and a bucket created again under the same name is protected again.

use std::time::Duration;

use anyhow::Result;
use tidemark_e2e::{s3, tidemark, tidemark_json};
use tidemark_testkit::harness;

async fn dead_letters(ep: &str) -> Result<String> {
    let clients =
        tidemark_aws::AwsClients::load(&tidemark_aws::ClientOptions { endpoint_url: Some(ep.into()), ..Default::default() }).await;
    let dlq = clients.sqs.get_queue_url().queue_name("tidemark-delta-dlq").send().await?.queue_url().unwrap().to_string();
    let attrs = clients
        .sqs
        .get_queue_attributes()
        .queue_url(&dlq)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages)
        .send()
        .await?;
    Ok(attrs.attributes().unwrap().values().next().unwrap().clone())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_deleted_bucket_is_gone_sync_carries_on_and_its_points_restore() -> Result<()> {
    let moto = harness::start_moto()?;
    let ep = moto.endpoint.as_str();
    let env: Vec<(&str, String)> = vec![("TIDEMARK_LATE_EVENT_SECONDS", "1".into())];
    let (keep, doomed, vault) = ("lg-keep", "lg-doomed", "s3://lg-vault");
    tidemark_json(ep, &env, &["init", "--local", "--vault", vault, "--json"])?;
    super::fill(ep, keep, 10).await?;
    super::fill(ep, doomed, 20).await?;
    tidemark_json(ep, &env, &["protect", "--source", &format!("s3://{keep}"), "--vault", vault, "--wait", "--json"])?;
    let p = tidemark_json(ep, &env, &["protect", "--source", &format!("s3://{doomed}"), "--vault", vault, "--wait", "--json"])?;
    let before = p["recovery_point"].as_str().expect("a first point").to_string();
    let c = s3(ep).await;
    let held = tidemark_e2e::snapshot(&c, doomed, "").await?;
    assert_eq!(held.len(), 20);

    // Deleted by design: emptied (S3 refuses to delete a bucket that is not), then deleted.
    for key in held.keys() {
        c.delete_object().bucket(doomed).key(key).send().await?;
    }
    c.delete_bucket().bucket(doomed).send().await?;
    tokio::time::sleep(Duration::from_millis(2200)).await;

    let s = tidemark_json(ep, &env, &["sync", "--source", &format!("s3://{doomed}"), "--vault", vault, "--json"])?;
    assert!(s["gone_since"].is_string(), "sync records the bucket as gone: {s}");
    assert_eq!(s["failed"], 0, "{s}");
    let again = tidemark_json(ep, &env, &["sync", "--source", &format!("s3://{doomed}"), "--vault", vault, "--json"])?;
    assert_eq!(again["gone_since"], s["gone_since"], "a second sync finds it still gone, with no error: {again}");
    tidemark_json(ep, &env, &["sync", "--source", &format!("s3://{keep}"), "--vault", vault, "--json"])?;
    assert_eq!(dead_letters(ep).await?, "0", "nothing of the deleted bucket was dead-lettered");

    let st = tidemark_json(ep, &env, &["status", "--source", &format!("s3://{doomed}"), "--vault", vault, "--json"])?;
    assert_eq!(st["state"], "gone", "{st}");
    assert_eq!(st["gone_since"], s["gone_since"], "{st}");

    // Every point up to the deletion still restores what the bucket held.
    let r = tidemark_json(
        ep,
        &env,
        &[
            "restore",
            "--source",
            &format!("s3://{doomed}"),
            "--vault",
            vault,
            "--as-of",
            &before,
            "--to",
            "s3://lg-restored",
            "--wait",
            "--json",
        ],
    )?;
    assert_eq!(r["failed"], 0, "{r}");
    let got = tidemark_e2e::snapshot(&c, "lg-restored", "").await?;
    assert_eq!(tidemark_e2e::diff(&held, &got), Vec::<String>::new(), "the restore as of before the deletion is exact");

    // Created again under the same name: noticed by the next sync and seeded afresh.
    c.create_bucket().bucket(doomed).send().await?;
    c.put_object().bucket(doomed).key("reborn").body(b"new life".to_vec().into()).send().await?;
    let back = tidemark_json(ep, &env, &["sync", "--source", &format!("s3://{doomed}"), "--vault", vault, "--json"])?;
    assert!(back["returned_run_id"].is_string(), "{back}");
    let st = tidemark_json(ep, &env, &["status", "--source", &format!("s3://{doomed}"), "--vault", vault, "--json"])?;
    assert_eq!(st["state"], "protected", "{st}");
    let now = back["recovery_point"].as_str().expect("a point after the new seed").to_string();
    let lines = super::ls_lines(ep, &env, doomed, "lg-vault", &now)?;
    assert_eq!(lines.len(), 1, "only the new object is current: {lines:?}");

    // Unprotect: an unknown source is a clear error; a known one ends on purpose.
    let out = tidemark(ep, &env, &["unprotect", "--source", "s3://nobody-here", "--vault", vault])?;
    assert!(!out.status.success());
    let e = String::from_utf8(out.stderr)?;
    assert!(e.contains("s3://nobody-here is not a source of vault lg-vault"), "{e}");
    let u = tidemark_json(ep, &env, &["unprotect", "--source", &format!("s3://{keep}"), "--vault", vault, "--json"])?;
    assert_eq!(u["state"], "unprotected", "{u}");
    let st = tidemark_json(ep, &env, &["status", "--source", &format!("s3://{keep}"), "--vault", vault, "--json"])?;
    assert_eq!(st["state"], "unprotected", "{st}");
    assert!(st["latest_recovery_point"].is_string(), "its points stay: {st}");
    Ok(())
}
