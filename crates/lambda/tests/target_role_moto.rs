//! Restores into another account through its restore target role, on the local stack (moto,
//! whose STS issues assumed-role credentials for the account an ARN names, and whose S3 keeps
//! each account's buckets apart by the credentials' account).
//!
//! Two protected buckets live in a second account, read through its source read role. A restore
//! that names no role and writes a protected bucket takes that account's target role
//! (`TIDEMARK_TARGET_ROLE_NAME` with `TIDEMARK_BUCKET_ACCOUNTS`): a deleted bucket is created
//! again in its own account, and an in-place rollback rewrites and deletes exactly what changed.
//! A role ARN that cannot be assumed is a clear error naming it, and starts nothing. moto's STS
//! answers AssumeRole for any well-formed ARN (it checks no trust policy), so the refusals tested
//! here are the ones made before STS is asked.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use bytes::Bytes;
use chrono::{DateTime, Utc};
use tidemark_aws::{admin, AwsClients, BucketAccounts, ClientOptions, DynamoControlStore, RoleTargets, SourceRole, SqsQueue};
use tidemark_core::changes::checkpoint::{self, Sealed};
use tidemark_core::config::EngineConfig;
use tidemark_core::engine::{Engine, QueueUrls};
use tidemark_core::ports::{Fetch, ObjectStore, PutOptions, SystemClock, Targets};
use tidemark_core::restore::run::{self, RestoreState, RestoreStatus};
use tidemark_core::restore::{RestoreMode, RestoreRequest};
use tidemark_lambda::metrics::Emf;
use tidemark_lambda::{restore_handler, seeder_handler, start_restore, target_role_from, worker_handler, LambdaConfig, SeedRequest};
use tidemark_testkit::harness;

/// moto's default account: the credentials `test`/`test` act in it.
const OWN_ACCOUNT: &str = "123456789012";
/// The source account that holds the protected buckets.
const OTHER_ACCOUNT: &str = "111122223333";
const EXTERNAL_ID: &str = "0123456789abcdef0123";
const TARGET_ROLE: &str = "tidemark-restore-target";

struct World {
    engine: Engine,
    targets: RoleTargets,
    /// The other account's buckets as its own session sees them.
    other: Arc<dyn ObjectStore>,
    /// moto's default account, the functions' own credentials.
    own: tidemark_aws::S3Store,
    work: String,
    restore: String,
}

fn sqs_event(msgs: &[tidemark_core::ports::Message]) -> SqsEvent {
    let records: Vec<serde_json::Value> = msgs
        .iter()
        .map(|m| serde_json::json!({"messageId": m.id, "receiptHandle": m.receipt, "body": m.body, "eventSource": "aws:sqs"}))
        .collect();
    serde_json::from_value(serde_json::json!({ "Records": records })).expect("an SQS event parses")
}

/// The functions' configuration as a deployment with the target role sets it.
fn lambda_config(vault: &str, map: &str) -> Result<LambdaConfig> {
    let vars: BTreeMap<&str, String> = [
        ("TIDEMARK_VAULT_BUCKET", vault.to_string()),
        ("TIDEMARK_CONTROL_TABLE", "tr-control".into()),
        ("TIDEMARK_WORK_QUEUE_URL", "unused".into()),
        ("TIDEMARK_DELTA_QUEUE_URL", "unused".into()),
        ("TIDEMARK_RESTORE_QUEUE_URL", "unused".into()),
        ("TIDEMARK_SOURCE_ROLE_NAME", "tidemark-backup-read".into()),
        ("TIDEMARK_TARGET_ROLE_NAME", TARGET_ROLE.into()),
        ("TIDEMARK_EXTERNAL_ID", EXTERNAL_ID.into()),
        ("TIDEMARK_SOURCE_ACCOUNT_IDS", format!("{OWN_ACCOUNT},{OTHER_ACCOUNT}")),
        ("TIDEMARK_BUCKET_ACCOUNTS", map.to_string()),
    ]
    .into_iter()
    .collect();
    Ok(LambdaConfig::from_lookup(|k| vars.get(k).cloned())?)
}

async fn world(c: &AwsClients, src: &str, dst: &str) -> Result<World> {
    let vault = harness::unique("tr-vault");
    admin::ensure_vault_bucket(c, &vault, 1).await?;
    let (work, _) = admin::ensure_queue(c, "tr-work", 30).await?;
    let (delta, _) = admin::ensure_queue(c, "tr-delta", 30).await?;
    let (restore, _) = admin::ensure_queue(c, "tr-restore", 30).await?;
    admin::ensure_table(c, "tr-control").await?;
    let map = format!("{src}={OTHER_ACCOUNT},{dst}={OTHER_ACCOUNT}");
    let config = lambda_config(&vault, &map)?;
    assert_eq!(config.target_role.as_ref().map(|t| t.role_name.as_str()), Some(TARGET_ROLE));
    let (source, vault_store) = config.stores(c);
    let engine = Engine {
        source,
        vault: vault_store.clone(),
        control: Arc::new(DynamoControlStore::new(c.dynamodb.clone(), "tr-control")),
        queue: Arc::new(SqsQueue::new(c.sqs.clone())),
        clock: Arc::new(SystemClock),
        keys: Arc::new(tidemark_core::memory::MemKeys::new()),
        config: EngineConfig::new(&vault),
        queues: QueueUrls { work: work.clone(), delta, restore: restore.clone() },
    };
    let targets = RoleTargets::new(c.shared.clone(), c.s3.clone(), vault_store, "tidemark-restore-test")
        .with_external_id(config.external_id.clone())
        .with_target_role(config.target_role.clone());
    // The other account's own view of its buckets: a session of its read role.
    let read = SourceRole {
        role_name: "tidemark-backup-read".into(),
        external_id: EXTERNAL_ID.into(),
        session_name: "tidemark-test".into(),
        accounts: BucketAccounts::parse(&format!("{OWN_ACCOUNT},{OTHER_ACCOUNT}"), &map).map_err(anyhow::Error::msg)?,
    };
    let sessions = Arc::new(tidemark_aws::SourceSessions::new(c.shared.clone(), c.s3_source.clone(), c.s3.clone(), read));
    let other: Arc<dyn ObjectStore> = Arc::new(tidemark_aws::RoleSourceStore::new(sessions));
    Ok(World { engine, targets, other, own: tidemark_aws::S3Store::new(c.s3.clone()), work, restore })
}

async fn contents(store: &dyn ObjectStore, bucket: &str, prefix: &str) -> Result<BTreeMap<String, Vec<u8>>> {
    let mut out = BTreeMap::new();
    for o in tidemark_core::ports::list_all(store, bucket, prefix, None).await?.objects {
        if let Fetch::Found((_, body)) = store.get(bucket, &o.key, None, None).await? {
            out.insert(o.key[prefix.len()..].to_string(), body.to_vec());
        }
    }
    Ok(out)
}

/// Protects `src` (seed by listing through the worker function's handler) and seals a point.
async fn protect(w: &World, src: &str) -> Result<DateTime<Utc>> {
    seeder_handler(
        &w.engine,
        SeedRequest {
            source_bucket: src.into(),
            prefix: String::new(),
            target_objects: Some(10),
            inventory_manifest: None,
            all_versions: None,
        },
    )
    .await?;
    loop {
        let msgs = w.engine.queue.receive(&w.work, 10, 1, 30).await?;
        if msgs.is_empty() {
            break;
        }
        let failed = worker_handler(&w.engine, sqs_event(&msgs), "tr-worker").await.batch_item_failures;
        assert!(failed.is_empty(), "worker failures");
        for m in &msgs {
            w.engine.queue.delete(&w.work, &m.receipt).await?;
        }
    }
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let now = Utc::now();
    match checkpoint::seal(&w.engine, src, now, now).await? {
        Sealed::New(p) => Ok(p.time),
        other => bail!("expected a new point, got {other:?}"),
    }
}

/// Runs the restore function's handler on the restore queue's batches until run `id` ends.
async fn drive(w: &World, id: &str) -> Result<RestoreStatus> {
    let started = Instant::now();
    let metrics = Emf::new(Vec::new());
    loop {
        let status = run::status(&w.engine, id).await?;
        if status.run.state.is_final() {
            return Ok(status);
        }
        if started.elapsed() > Duration::from_secs(120) {
            bail!("restore {id} did not finish: {status:?}");
        }
        let msgs = w.engine.queue.receive(&w.restore, 10, 1, 30).await?;
        if msgs.is_empty() {
            continue;
        }
        let resp: SqsBatchResponse = serde_json::from_value(
            restore_handler(&w.engine, &w.targets, &metrics, serde_json::to_value(sqs_event(&msgs))?, "tr-restore-fn").await?,
        )?;
        for m in msgs.iter().filter(|m| !resp.batch_item_failures.iter().any(|f| f.item_identifier == m.id)) {
            w.engine.queue.delete(&w.restore, &m.receipt).await?;
        }
    }
}

fn request(src: &str, as_of: DateTime<Utc>, target: &str, mode: RestoreMode) -> RestoreRequest {
    RestoreRequest {
        source_bucket: src.into(),
        prefix: String::new(),
        as_of,
        target_bucket: target.into(),
        target_prefix: String::new(),
        mode,
        delete_newer: mode == RestoreMode::Rollback,
        dry_run: false,
        target_role_arn: None,
        attributes: Default::default(),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn restores_into_the_source_account_write_through_its_target_role() -> Result<()> {
    let moto = harness::start_moto()?;
    let c = AwsClients::load(&ClientOptions::local(&moto.endpoint)).await;
    let (src, dst) = (harness::unique("tr-src"), harness::unique("tr-dst"));
    let w = world(&c, &src, &dst).await?;

    // The source bucket lives in the other account; the functions read it through its read role.
    w.other.create_bucket(&src).await?;
    for i in 0..24 {
        let body = Bytes::from(format!("object {i} of the other account ").repeat(i + 1));
        w.other.put(&src, &format!("p{}/k{i:02}", i % 3), body, &PutOptions::default()).await?;
    }
    let t = protect(&w, &src).await?;
    let at_t = contents(w.other.as_ref(), &src, "").await?;
    assert_eq!(at_t.len(), 24);

    // The second protected bucket of that account was deleted; a copy restore brings it back
    // through the account's target role, which creates it in its own account again.
    w.engine.control().set_protected(&dst, Utc::now()).await?;
    let started = start_restore(&w.engine, &w.targets, request(&src, t, &dst, RestoreMode::Copy)).await?;
    let role_arn = format!("arn:aws:iam::{OTHER_ACCOUNT}:role/{TARGET_ROLE}");
    assert_eq!(started.target_role_arn.as_deref(), Some(role_arn.as_str()), "the target account's role is taken");
    let status = drive(&w, &started.restore_id).await?;
    assert_eq!(status.run.state, RestoreState::Done, "{:?}", status.run.error);
    assert_eq!(status.run.request.target_role_arn.as_deref(), Some(role_arn.as_str()), "the run records the role");
    assert_eq!((status.counters.objects, status.counters.verified, status.counters.failed), (24, 24, 0));
    assert_eq!(contents(w.other.as_ref(), &dst, "").await?, at_t, "the recreated bucket holds the state at T");
    // It was created with the other account's credentials: this account cannot have it.
    let refused = w.own.create_bucket(&dst).await.expect_err("the bucket belongs to the other account");
    assert!(refused.to_string().contains("BucketAlreadyExists"), "{refused}");

    // Changes after T in the source, then an in-place rollback with delete-newer through the
    // same role: the bucket is exactly as it was at T again, and unchanged keys are left alone.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    for i in [1, 5] {
        w.other.put(&src, &format!("p{}/k{i:02}", i % 3), Bytes::from_static(b"overwritten after T"), &PutOptions::default()).await?;
    }
    w.other.delete(&src, "p0/k03").await?;
    w.other.put(&src, "new/after-t", Bytes::from_static(b"born after T"), &PutOptions::default()).await?;
    let started = start_restore(&w.engine, &w.targets, request(&src, t, &src, RestoreMode::Rollback)).await?;
    assert_eq!(started.target_role_arn.as_deref(), Some(role_arn.as_str()));
    let status = drive(&w, &started.restore_id).await?;
    assert_eq!(status.run.state, RestoreState::Done, "{:?}", status.run.error);
    assert_eq!((status.counters.objects, status.counters.deleted, status.counters.unchanged), (3, 1, 21), "{:?}", status.counters);
    assert_eq!(contents(w.other.as_ref(), &src, "").await?, at_t, "the rollback restored the state at T");

    // A role that cannot be assumed is refused, naming it, before anything is written.
    let runs_before = run::list(&w.engine, &src).await?.len();
    for bad in ["arn:aws:iam::1111:role/short-account", "arn:aws:s3:::not-a-role", "tidemark-restore-target"] {
        let mut req = request(&src, t, "tr-never-created", RestoreMode::Copy);
        req.target_role_arn = Some(bad.into());
        let e = start_restore(&w.engine, &w.targets, req).await.expect_err("refused");
        assert!(!e.is_transient(), "{e}");
        assert!(e.to_string().contains(bad), "the error names the role: {e}");
        let e = w.targets.store(Some(bad)).await.err().context("the targets refuse it too")?;
        assert!(e.to_string().contains(bad), "{e}");
    }
    assert_eq!(run::list(&w.engine, &src).await?.len(), runs_before, "no run was started");
    assert!(!w.own.bucket_exists("tr-never-created").await?, "no target was created");

    // A bucket of no known account is written with the functions' own credentials.
    let config = target_role_from(|k| match k {
        "TIDEMARK_TARGET_ROLE_NAME" => Some(TARGET_ROLE.into()),
        "TIDEMARK_EXTERNAL_ID" => Some(EXTERNAL_ID.into()),
        "TIDEMARK_SOURCE_ACCOUNT_IDS" => Some(format!("{OWN_ACCOUNT},{OTHER_ACCOUNT}")),
        _ => None,
    })?;
    let unmapped =
        RoleTargets::new(c.shared.clone(), c.s3.clone(), Arc::new(tidemark_aws::S3Store::new(c.s3.clone())), "t").with_target_role(config);
    assert_eq!(unmapped.default_role(&src), None, "with several accounts and no map the account is unknown");
    Ok(())
}
