//! The source read role on the local stack (moto, whose STS answers AssumeRole and tells the
//! assumed-role identity of the temporary credentials it issued, and whose S3 keeps each
//! account's buckets apart by the credentials' account).
//!
//! With a role configured, the functions' source store reads a bucket through a session of the
//! read role in the bucket's account; without one, the function's own credentials are used.

use std::sync::Arc;

use anyhow::{Context, Result};
use bytes::Bytes;
use tidemark_aws::{AwsClients, BucketAccounts, ClientOptions, RoleSourceStore, SourceRole, SourceSessions};
use tidemark_core::config::EngineConfig;
use tidemark_core::engine::QueueUrls;
use tidemark_core::ports::{Fetch, ObjectStore, PutOptions};
use tidemark_lambda::LambdaConfig;
use tidemark_testkit::harness;

/// moto's default account: the credentials `test`/`test` act in it.
const OWN_ACCOUNT: &str = "123456789012";
/// A second source account, reachable only through the read role.
const OTHER_ACCOUNT: &str = "111122223333";
const ROLE: &str = "tidemark-backup-read";
const EXTERNAL_ID: &str = "0123456789abcdef0123";

/// The identity STS reports for `creds`.
async fn caller_arn(shared: &aws_config::SdkConfig, creds: aws_sdk_s3::config::SharedCredentialsProvider) -> Result<String> {
    let sts_conf = aws_sdk_sts::config::Builder::from(shared).credentials_provider(creds).build();
    let who = aws_sdk_sts::Client::from_conf(sts_conf).get_caller_identity().send().await?;
    Ok(who.arn().unwrap_or_default().to_string())
}

fn role(bucket_accounts: &str) -> SourceRole {
    SourceRole {
        role_name: ROLE.into(),
        external_id: EXTERNAL_ID.into(),
        session_name: "tidemark-test".into(),
        accounts: BucketAccounts::parse(&format!("{OWN_ACCOUNT},{OTHER_ACCOUNT}"), bucket_accounts).expect("valid accounts"),
    }
}

fn lambda_config(source_role: Option<SourceRole>) -> LambdaConfig {
    LambdaConfig {
        engine: EngineConfig::new("role-vault"),
        control_table: "unused".into(),
        queues: QueueUrls::default(),
        late_event_seconds: 60,
        source_role,
        target_role: None,
        external_id: None,
        verify_sample: 1.0,
        verify_step_seconds: 600,
        alert_topic_arn: None,
        dead_letter_queue_urls: Vec::new(),
        metrics_namespace: tidemark_lambda::metrics::DEFAULT_NAMESPACE.into(),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn source_reads_go_through_the_read_role_of_the_buckets_account() -> Result<()> {
    let moto = harness::start_moto()?;
    let c = AwsClients::load(&ClientOptions::local(&moto.endpoint)).await;

    // The function's own credentials act in moto's default account.
    // (moto names it `arn:aws:sts::<account>:user/moto`.)
    let own = caller_arn(&c.shared, c.shared.credentials_provider().context("own credentials")?).await?;
    assert!(own.contains(OWN_ACCOUNT) && !own.contains("assumed-role"), "{own}");

    let own_bucket = harness::unique("role-own");
    let other_bucket = harness::unique("role-other");
    let map = format!("{own_bucket}={OWN_ACCOUNT},{other_bucket}={OTHER_ACCOUNT}");
    let sessions = Arc::new(SourceSessions::new(c.shared.clone(), c.s3_source.clone(), c.s3.clone(), role(&map)));
    let store = RoleSourceStore::new(sessions.clone());

    // A bucket in the other account, made and filled through that account's session.
    store.create_bucket(&other_bucket).await?;
    store.put(&other_bucket, "a/report.csv", Bytes::from_static(b"id,total\n1,42\n"), &PutOptions::default()).await?;

    // Reading it back through the store works, and the client that did it is an assumed-role
    // session of the read role in that account, with the configured session name.
    match store.get(&other_bucket, "a/report.csv", None, None).await? {
        Fetch::Found((info, body)) => {
            assert_eq!(&body[..], b"id,total\n1,42\n");
            assert_eq!(info.size, 14);
        }
        other => panic!("expected the object, got {other:?}"),
    }
    let (creds, role_arn) = sessions.session_credentials(&other_bucket).await?;
    assert_eq!(role_arn, format!("arn:aws:iam::{OTHER_ACCOUNT}:role/{ROLE}"));
    assert_eq!(caller_arn(&c.shared, creds).await?, format!("arn:aws:sts::{OTHER_ACCOUNT}:assumed-role/{ROLE}/tidemark-test"));
    assert_eq!(sessions.role().external_id, EXTERNAL_ID);
    assert_eq!(sessions.cached_accounts(), vec![OTHER_ACCOUNT.to_string()], "one session, for the account that was read");

    // The bucket belongs to the other account: creating it again is accepted through the
    // session (S3 answers BucketAlreadyOwnedByYou, or re-creates it in us-east-1) and refused with
    // the function's own credentials (BucketAlreadyExists: someone else owns it).
    let plain = tidemark_aws::S3Store::new(c.s3.clone());
    store.create_bucket(&other_bucket).await?;
    let refused = plain.create_bucket(&other_bucket).await.expect_err("the function's own account does not own the bucket");
    assert!(refused.to_string().contains("BucketAlreadyExists"), "{refused}");

    // A bucket of the own account goes through its own session (another cache entry), and a
    // bucket in neither the map nor a single-account deployment is a permanent error.
    plain.create_bucket(&own_bucket).await?;
    plain.put(&own_bucket, "x", Bytes::from_static(b"own"), &PutOptions::default()).await?;
    assert!(matches!(store.get(&own_bucket, "x", None, None).await?, Fetch::Found(_)));
    let (own_creds, _) = sessions.session_credentials(&own_bucket).await?;
    assert_eq!(caller_arn(&c.shared, own_creds).await?, format!("arn:aws:sts::{OWN_ACCOUNT}:assumed-role/{ROLE}/tidemark-test"));
    assert_eq!(sessions.cached_accounts(), vec![OTHER_ACCOUNT.to_string(), OWN_ACCOUNT.to_string()]);
    let unknown = store.get("not-mapped", "x", None, None).await.unwrap_err();
    assert!(!unknown.is_transient() && unknown.to_string().contains("TIDEMARK_BUCKET_ACCOUNTS"), "{unknown}");

    // The functions' stores: with the role, the source store sees the other account's bucket;
    // without it, the source is read with the function's own credentials, which do not.
    let (with_role, _) = lambda_config(Some(role(&map))).stores(&c);
    with_role.create_bucket(&other_bucket).await?;
    assert!(matches!(with_role.get(&other_bucket, "a/report.csv", None, None).await?, Fetch::Found(_)));
    let (without_role, _) = lambda_config(None).stores(&c);
    let refused = without_role.create_bucket(&other_bucket).await.expect_err("without a role name the function's own client is used");
    assert!(refused.to_string().contains("BucketAlreadyExists"), "{refused}");
    assert!(matches!(without_role.get(&own_bucket, "x", None, None).await?, Fetch::Found(_)));
    Ok(())
}
