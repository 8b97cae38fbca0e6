//! Capture through the source read role with moto's IAM access control on: the role holds exactly
//! the policy both IaC sides deploy (tests/iac/read-role-policy.json, kept equal to the templates
//! by tests/iac/test_read_role_policy.py), so a request the capture path needs and the policy does
//! not grant fails here as it would in AWS.
//!
//! moto checks S3 requests against the caller's policies once access control is turned on
//! (`/moto-api/reset-auth`); everything else the functions do runs as an administrator user of
//! the test, so only the read role's policy is under test.

use anyhow::{Context, Result};
use aws_lambda_events::event::sqs::SqsEvent;
use bytes::Bytes;
use tidemark_aws::{admin, AwsClients, ClientOptions, S3Store};
use tidemark_core::ports::{ObjectStore, PutOptions};
use tidemark_lambda::{seeder_dispatch, worker_handler, LambdaConfig};
use tidemark_testkit::harness;

/// The protected bucket and the vault the policy file names (scenario "source-defaults").
const SOURCE: &str = "acme-prod-data";
/// The other protected bucket of the policy file, protected with a narrowed policy.
const OTHER: &str = "acme-prod-logs";
const VAULT: &str = "tidemark-vault-222222222222-eu-west-1";
/// moto's default account, where the test's read role lives.
const ACCOUNT: &str = "123456789012";
const ROLE: &str = "tidemark-backup-read";
const EXTERNAL_ID: &str = "0123456789abcdef0123";

fn sqs_event(msgs: &[tidemark_core::ports::Message]) -> SqsEvent {
    let records: Vec<serde_json::Value> = msgs
        .iter()
        .map(|m| {
            serde_json::json!({"messageId": m.id, "receiptHandle": m.receipt, "body": m.body, "eventSource": "aws:sqs",
            "attributes": {"ApproximateReceiveCount": m.receive_count.to_string()}})
        })
        .collect();
    serde_json::from_value(serde_json::json!({ "Records": records })).expect("an SQS event parses")
}

/// Seeds `bucket` and runs the worker until the work queue is empty; returns the objects
/// captured and the failures (objects that failed, and deliveries the worker reported failed).
async fn protect(config: &LambdaConfig, clients: &AwsClients, work: &str, bucket: &str) -> Result<(u64, usize)> {
    let (engine, _) = config.engine_and_targets_with(clients);
    let seeded = seeder_dispatch(&engine, serde_json::json!({"source_bucket": bucket})).await?;
    let run_id = seeded["run_id"].as_str().context("the seed names its run")?.to_string();
    let (mut failing, mut empty) = (0usize, 0);
    while empty < 2 {
        let msgs = engine.queue.receive(work, 10, 1, 30).await?;
        if msgs.is_empty() {
            empty += 1;
            continue;
        }
        empty = 0;
        let resp = worker_handler(&engine, sqs_event(&msgs), "enforced-worker").await;
        for m in &msgs {
            if resp.batch_item_failures.iter().any(|f| f.item_identifier == m.id) {
                failing += 1;
                // A task that failed three times is given up on: the policy, not a retry, is at fault.
                if m.receive_count >= 3 {
                    engine.queue.delete(work, &m.receipt).await?;
                } else {
                    engine.queue.change_visibility(work, &m.receipt, 0).await?;
                }
            } else {
                engine.queue.delete(work, &m.receipt).await?;
            }
        }
    }
    let tasks = engine.control().tasks(&run_id).await?;
    let captured = tasks.iter().filter(|t| t.done).map(|t| t.counters.objects).sum();
    // A refused read of one object fails that object (recorded with the run), not the task.
    let failed: u64 = tasks.iter().map(|t| t.counters.failed).sum();
    eprintln!("{bucket}: {} tasks, {captured} captured, {failed} objects failed, {failing} deliveries failed", tasks.len());
    Ok((captured, failing + failed as usize))
}

#[tokio::test(flavor = "multi_thread")]
async fn capture_through_the_read_role_needs_nothing_the_templates_do_not_grant() -> Result<()> {
    let moto = harness::start_moto()?;
    let setup = AwsClients::load(&ClientOptions::local(&moto.endpoint)).await;
    let iam = aws_sdk_iam::Client::new(&setup.shared);

    // The administrator the functions act as, and the read role with the deployed policy.
    iam.create_user().user_name("tidemark-test-admin").send().await?;
    let everything = serde_json::json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]});
    iam.put_user_policy().user_name("tidemark-test-admin").policy_name("all").policy_document(everything.to_string()).send().await?;
    let key = iam.create_access_key().user_name("tidemark-test-admin").send().await?;
    let key = key.access_key().context("an access key")?;
    // moto's trust check compares the caller with the principal itself (AWS also accepts the
    // account's root for any of its users, as the templates' trust policy says).
    let trust = serde_json::json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
        "Principal": {"AWS": format!("arn:aws:iam::{ACCOUNT}:user/tidemark-test-admin")}, "Action": "sts:AssumeRole"}]});
    iam.create_role().role_name(ROLE).assume_role_policy_document(trust.to_string()).send().await?;
    let deployed: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(harness::repo_root().join("tests/iac/read-role-policy.json"))?)?;
    let policy = for_moto(&deployed, None);
    iam.put_role_policy().role_name(ROLE).policy_name("read").policy_document(policy.to_string()).send().await?;

    // The source, with small objects (packed) and one large one (copied server-side through the
    // role), tagged so that capture reads their tags; the vault, queues and table.
    let s3 = S3Store::new(setup.s3.clone());
    s3.create_bucket(SOURCE).await?;
    for i in 0..6 {
        let mut opts = PutOptions::default();
        opts.attributes.tags = [("team".to_string(), format!("t{i}"))].into();
        s3.put(SOURCE, &format!("data/{i}"), Bytes::from(format!("small object {i}")), &opts).await?;
    }
    s3.put(SOURCE, "data/large", Bytes::from(vec![7u8; 3000]), &PutOptions::default()).await?;
    s3.create_bucket(OTHER).await?;
    let mut tagged = PutOptions::default();
    tagged.attributes.tags = [("team".to_string(), "logs".to_string())].into();
    s3.put(OTHER, "logs/1", Bytes::from_static(b"a tagged log line"), &tagged).await?;
    admin::ensure_vault_bucket(&setup, VAULT, 1).await?;
    let (work, _) = admin::ensure_queue(&setup, "enforced-work", 30).await?;
    let (delta, _) = admin::ensure_queue(&setup, "enforced-delta", 30).await?;
    let (restore, _) = admin::ensure_queue(&setup, "enforced-restore", 30).await?;
    admin::ensure_table(&setup, "enforced-control").await?;

    // From here on moto authorises every request against the caller's policies.
    let reset = std::process::Command::new("curl")
        // moto reads the count from the raw body, which a form content type would hide.
        .args(["-sf", "-X", "POST", "-H", "Content-Type: text/plain", "--data", "0", &format!("{}/moto-api/reset-auth", moto.endpoint)])
        .output()?;
    assert!(reset.status.success(), "moto's access control could not be turned on: {}", String::from_utf8_lossy(&reset.stderr));
    // The functions' own credentials: the administrator's key.
    std::env::set_var("AWS_ACCESS_KEY_ID", key.access_key_id());
    std::env::set_var("AWS_SECRET_ACCESS_KEY", key.secret_access_key());
    let clients = AwsClients::load(&ClientOptions::local(&moto.endpoint)).await;
    let vars = [
        ("TIDEMARK_VAULT_BUCKET", VAULT.to_string()),
        ("TIDEMARK_CONTROL_TABLE", "enforced-control".into()),
        ("TIDEMARK_WORK_QUEUE_URL", work.clone()),
        ("TIDEMARK_DELTA_QUEUE_URL", delta),
        ("TIDEMARK_RESTORE_QUEUE_URL", restore),
        ("TIDEMARK_SMALL_OBJECT_THRESHOLD", "1000".into()),
        ("TIDEMARK_SOURCE_ROLE_NAME", ROLE.into()),
        ("TIDEMARK_EXTERNAL_ID", EXTERNAL_ID.into()),
        ("TIDEMARK_SOURCE_ACCOUNT_IDS", ACCOUNT.into()),
    ];
    let config = LambdaConfig::from_lookup(|n| vars.iter().find(|(k, _)| *k == n).map(|(_, v)| v.clone())).context("configuration")?;

    // A stranger's key is refused: access control is on.
    let anonymous = S3Store::new(setup.s3.clone());
    assert!(anonymous.bucket_exists(SOURCE).await.is_err(), "moto still accepts credentials it does not know");

    let (captured, failing) = protect(&config, &clients, &work, SOURCE).await?;
    assert_eq!((captured, failing), (7, 0), "every object captured through the read role, nothing refused");

    // Without one action the policy grants, capture fails: the check is real.
    let narrowed = for_moto(&deployed, Some("s3:GetObjectTagging"));
    assert_ne!(narrowed, policy, "the policy grants s3:GetObjectTagging");
    let admin_iam = aws_sdk_iam::Client::new(&clients.shared);
    admin_iam.put_role_policy().role_name(ROLE).policy_name("read").policy_document(narrowed.to_string()).send().await?;
    let (captured, failing) = protect(&config, &clients, &work, OTHER).await?;
    assert!(captured == 0 && failing > 0, "a read role without s3:GetObjectTagging cannot capture a tagged object: {captured} captured");
    Ok(())
}

/// The deployed policy as moto's access control reads it, without `drop` if given. moto checks
/// HeadBucket as an action of its own, `s3:HeadBucket`, where AWS checks `s3:ListBucket`: a
/// statement granting `s3:ListBucket` grants `s3:HeadBucket` too here, on the same resources.
fn for_moto(deployed: &serde_json::Value, drop: Option<&str>) -> serde_json::Value {
    let mut doc = deployed.clone();
    for st in doc["Statement"].as_array_mut().expect("statements") {
        let actions = st["Action"].as_array_mut().expect("an action list");
        actions.retain(|a| Some(a.as_str().unwrap_or_default()) != drop);
        if actions.iter().any(|a| a == "s3:ListBucket") {
            actions.push("s3:HeadBucket".into());
        }
    }
    doc
}
