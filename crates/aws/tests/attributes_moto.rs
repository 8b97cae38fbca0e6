//! Every attribute round-trips on the local stack (moto): a packed object, one copied with
//! CopyObject and one copied in parts are captured through the AWS adapters and restored into a
//! bucket with Object Lock and ACLs, and what S3 reports of each restored object equals what it
//! reports of the source (bytes, content type, user metadata, Cache-Control, Content-Encoding,
//! Content-Disposition, Content-Language, Expires, website redirect, tags, storage class,
//! checksum algorithm and value, encryption, Object Lock mode, retain-until and legal hold, and
//! ACL grants), except what the restore says it could not apply.

use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::Result;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{ChecksumAlgorithm, ChecksumMode, ObjectLockLegalHoldStatus, ObjectLockMode, ServerSideEncryption, StorageClass};
use tidemark_aws::{admin, AwsClients, ClientOptions, DynamoControlStore, S3Store, SqsQueue};
use tidemark_core::changes::checkpoint::{self, Sealed};
use tidemark_core::config::EngineConfig;
use tidemark_core::engine::{Engine, QueueUrls};
use tidemark_core::ports::SystemClock;
use tidemark_core::protect::seed::{seed, PlanSource};
use tidemark_core::protocol::dispatch::{dispatch, Disposition};
use tidemark_core::protocol::local::restore_here;
use tidemark_core::restore::attributes::AttributeRequest;
use tidemark_core::restore::{RestoreMode, RestoreRequest};
use tidemark_testkit::harness;

const MIB: usize = 1024 * 1024;

/// What S3 reports of one object, field by field, as the comparison sees it.
async fn describe(s3: &aws_sdk_s3::Client, bucket: &str, key: &str) -> Result<BTreeMap<&'static str, String>> {
    let h = s3.head_object().bucket(bucket).key(key).checksum_mode(ChecksumMode::Enabled).send().await?;
    let body = s3.get_object().bucket(bucket).key(key).send().await?.body.collect().await?.into_bytes();
    let tags = s3.get_object_tagging().bucket(bucket).key(key).send().await?;
    let acl = s3.get_object_acl().bucket(bucket).key(key).send().await?;
    let mut tags: Vec<String> = tags.tag_set().iter().map(|t| format!("{}={}", t.key(), t.value())).collect();
    tags.sort();
    let mut grants: Vec<String> = acl
        .grants()
        .iter()
        .filter(|g| g.grantee().and_then(|w| w.uri()).is_some())
        .map(|g| format!("{:?}:{:?}", g.grantee().and_then(|w| w.uri()), g.permission()))
        .collect();
    grants.sort();
    let d = |v: Option<&str>| v.unwrap_or("-").to_string();
    Ok(BTreeMap::from([
        ("bytes (sha256)", hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&body))),
        ("size", h.content_length().unwrap_or(0).to_string()),
        ("content type", d(h.content_type())),
        ("metadata", format!("{:?}", h.metadata().map(|m| m.iter().collect::<BTreeMap<_, _>>()))),
        ("cache control", d(h.cache_control())),
        ("content encoding", d(h.content_encoding())),
        ("content disposition", d(h.content_disposition())),
        ("content language", d(h.content_language())),
        ("expires", d(h.expires_string())),
        ("website redirect", d(h.website_redirect_location())),
        ("tags", tags.join("&")),
        ("storage class", format!("{:?}", h.storage_class())),
        ("checksum CRC32", d(h.checksum_crc32())),
        ("encryption", format!("{:?}", h.server_side_encryption())),
        ("object lock mode", format!("{:?}", h.object_lock_mode())),
        ("object lock retain-until", format!("{:?}", h.object_lock_retain_until_date().map(|t| t.secs()))),
        ("legal hold", format!("{:?}", h.object_lock_legal_hold_status())),
        ("acl grants", grants.join(",")),
    ]))
}

#[tokio::test(flavor = "multi_thread")]
async fn every_attribute_of_a_packed_and_a_copied_object_round_trips_on_moto() -> Result<()> {
    let moto = harness::start_moto()?;
    let c = AwsClients::load(&ClientOptions::local(&moto.endpoint)).await;
    let s3c = &c.s3;
    admin::ensure_vault_bucket(&c, "attr-vault", 1).await?;
    let (work, _) = admin::ensure_queue(&c, "attr-work", 30).await?;
    let (restore_queue, _) = admin::ensure_queue(&c, "attr-restore", 30).await?;
    admin::ensure_table(&c, "attr-control").await?;
    // Source and target with Object Lock (which turns versioning on) and ACLs (moto's default).
    for b in ["attr-src", "attr-target"] {
        s3c.create_bucket().bucket(b).object_lock_enabled_for_bucket(true).send().await?;
    }
    let until = aws_smithy_types::DateTime::from_secs(chrono::Utc::now().timestamp() + 3 * 86_400);
    let objects: [(&str, usize); 3] = [("site/index.html.gz", 2_000), ("media/copied.bin", 2 * MIB), ("media/parts.bin", 11 * MIB)];
    for (i, (key, size)) in objects.iter().enumerate() {
        let body: Vec<u8> = (0..*size).map(|j| ((j * 31 + i * 7) % 251) as u8).collect();
        s3c.put_object()
            .bucket("attr-src")
            .key(*key)
            .body(ByteStream::from(body))
            .content_type("text/html; charset=utf-8")
            .metadata("origin", format!("object-{i}"))
            .cache_control("public, max-age=600")
            .content_encoding("gzip")
            .content_disposition("inline; filename=\"index.html\"")
            .content_language("de-CH")
            .expires(aws_smithy_types::DateTime::from_secs(1_900_000_000))
            .website_redirect_location("/moved/here.html")
            .tagging("team=web%20ops&tier=1")
            .storage_class(StorageClass::StandardIa)
            .server_side_encryption(ServerSideEncryption::Aes256)
            .checksum_algorithm(ChecksumAlgorithm::Crc32)
            .object_lock_mode(ObjectLockMode::Governance)
            .object_lock_retain_until_date(until)
            .object_lock_legal_hold_status(ObjectLockLegalHoldStatus::On)
            .grant_read("uri=\"http://acs.amazonaws.com/groups/global/AllUsers\"")
            .send()
            .await?;
    }

    let s3 = Arc::new(S3Store::new(s3c.clone()));
    let mut config = EngineConfig::new("attr-vault");
    config.small_object_threshold = MIB as u64;
    config.multipart_copy_threshold = 8 * MIB as u64;
    config.copy_part_bytes = 5 * MIB as u64;
    config.validate()?;
    let engine = Engine {
        source: s3.clone(),
        vault: s3.clone(),
        control: Arc::new(DynamoControlStore::new(c.dynamodb.clone(), "attr-control")),
        queue: Arc::new(SqsQueue::new(c.sqs.clone())),
        clock: Arc::new(SystemClock),
        keys: Arc::new(tidemark_core::memory::MemKeys::new()),
        config,
        queues: QueueUrls { work: work.clone(), delta: String::new(), restore: restore_queue },
    };
    seed(&engine, "attr-src", "", PlanSource::Listing(Default::default())).await?;
    loop {
        let msgs = engine.queue.receive(&work, 10, 0, 60).await?;
        if msgs.is_empty() {
            break;
        }
        for m in msgs {
            let d = dispatch(&engine, &m.id, &m.body, "attr-test").await;
            assert!(matches!(d, Disposition::Done), "{d:?}");
            engine.queue.delete(&work, &m.receipt).await?;
        }
    }
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let now = chrono::Utc::now();
    let Sealed::New(point) = checkpoint::seal(&engine, "attr-src", now, now).await? else { panic!("a point is sealed") };

    let req = RestoreRequest {
        source_bucket: "attr-src".into(),
        prefix: String::new(),
        as_of: point.time,
        target_bucket: "attr-target".into(),
        target_prefix: String::new(),
        mode: RestoreMode::Copy,
        delete_newer: false,
        dry_run: false,
        attributes: AttributeRequest { storage_class: None, object_lock: true, acl: true },
        target_role_arn: None,
    };
    let report = restore_here(&engine, s3.clone(), req, 4).await?;
    assert_eq!((report.objects, report.failed), (3, 0), "{report:?}");
    // The only attribute a restore cannot reproduce here: the composite checksum of the part-copied object.
    assert_eq!(report.not_applied.len(), 1, "{:?}", report.not_applied);
    assert_eq!(report.not_applied[0].0, "media/parts.bin");
    assert!(report.not_applied[0].1.starts_with("checksum:"), "{:?}", report.not_applied);

    let mut compared = 0;
    for (key, _) in objects {
        let want = describe(s3c, "attr-src", key).await?;
        let got = describe(s3c, "attr-target", key).await?;
        for (field, value) in &want {
            // A multipart copy's checksum is of its own parts (reported as not applied), and
            // moto 5.2 drops the Object Lock headers of CreateMultipartUpload, which S3 keeps.
            let moto_drops = ["checksum CRC32", "object lock mode", "object lock retain-until", "legal hold"];
            if key == "media/parts.bin" && moto_drops.contains(field) {
                eprintln!("{key}: {field}: source {value}, restored {:?} (not compared on moto)", got.get(field));
                continue;
            }
            assert_eq!(got.get(field), Some(value), "{key}: {field}");
            assert_ne!(value, "-", "{key}: the source has {field}");
            compared += 1;
        }
    }
    eprintln!("attributes compared: {compared} (18 per object, 3 objects; 4 of the part-copied one not comparable on moto)");
    assert_eq!(compared, 50);
    Ok(())
}
