//! Encrypted vaults on the local stack (issue 12, item 4): `init --local` creates a KMS key on
//! moto, a protect packs under data keys it wraps, no pack or segment holds the bytes of a small
//! source object (and a vault without a key does, so the scan can fail), every vault object
//! names the key for SSE-KMS, and the vault alone plus the key restores exactly.

use std::collections::BTreeMap;

use anyhow::{Context as _, Result};
use sha2::{Digest, Sha256};
use tidemark_e2e::{s3, snapshot, tidemark_json};
use tidemark_testkit::harness;

/// 40 distinctive bodies that zstd cannot shrink (a marker, then a SHA-256 chain), so a pack
/// without encryption holds them as they are.
fn bodies(tag: &str) -> BTreeMap<String, Vec<u8>> {
    (0..40)
        .map(|i| {
            let key = format!("{}/obj-{i:03}", ["a", "b", "c", "d"][i % 4]);
            let mut body = format!("PLAINTEXT-MARK {tag} {key}: ").into_bytes();
            let mut h = Sha256::digest(key.as_bytes());
            while body.len() < 600 + i * 13 {
                body.extend_from_slice(&h);
                h = Sha256::digest(h);
            }
            (key, body)
        })
        .collect()
}

/// The (vault key, source key) pairs where a 24-byte window of a small body (its start, middle
/// or end) appears in a vault object other than a large object's server-side copy.
async fn scan(c: &aws_sdk_s3::Client, vault: &str, small: &BTreeMap<String, Vec<u8>>) -> Result<(Vec<(String, String)>, Vec<String>)> {
    let mut hits = Vec::new();
    let mut keys = Vec::new();
    let mut pages = c.list_objects_v2().bucket(vault).into_paginator().send();
    while let Some(page) = pages.next().await {
        for o in page?.contents() {
            keys.push(o.key().unwrap_or_default().to_string());
        }
    }
    for k in keys.iter().filter(|k| !k.contains("/objects/")) {
        let bytes = c.get_object().bucket(vault).key(k).send().await?.body.collect().await?.into_bytes();
        for (sk, data) in small {
            let windows = [0, data.len() / 2 - 12, data.len() - 24].map(|i| &data[i..i + 24]);
            if windows.iter().any(|w| bytes.windows(24).any(|b| b == *w)) {
                hits.push((k.clone(), sk.clone()));
            }
        }
    }
    Ok((hits, keys))
}

async fn fill(c: &aws_sdk_s3::Client, bucket: &str, small: &BTreeMap<String, Vec<u8>>) -> Result<()> {
    c.create_bucket().bucket(bucket).send().await?;
    for (k, v) in small {
        c.put_object().bucket(bucket).key(k).body(v.clone().into()).send().await?;
    }
    // Above the small-object threshold: copied server-side, protected by SSE-KMS only.
    c.put_object().bucket(bucket).key("large/one.bin").body(vec![b'L'; 1_200_000].into()).send().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_protected_vault_holds_no_plaintext_and_restores_from_the_vault_and_key_alone() -> Result<()> {
    let moto = harness::start_moto()?;
    let ep = moto.endpoint.as_str();
    let c = s3(ep).await;

    // Without a key (another deployment name, its own table): the same scan finds every body.
    let plain_env = vec![("TIDEMARK_NAME", "plain".to_string())];
    let init = tidemark_json(ep, &plain_env, &["init", "--local", "--no-kms-key", "--vault", "s3://plain-vault", "--json"])?;
    assert_eq!((init["encrypted"].as_bool(), init["kms_key"].is_null()), (Some(false), true), "{init}");
    let plain = bodies("plain");
    fill(&c, "plain-src", &plain).await?;
    tidemark_json(ep, &plain_env, &["protect", "--source", "s3://plain-src", "--vault", "s3://plain-vault", "--wait", "--json"])?;
    let (hits, _) = scan(&c, "plain-vault", &plain).await?;
    let found: std::collections::BTreeSet<&String> = hits.iter().map(|(_, k)| k).collect();
    assert_eq!(found, plain.keys().collect(), "the scan misses plaintext in an unencrypted vault");

    // With the key `init --local` creates and keeps in the control table.
    let env: Vec<(&str, String)> = vec![];
    let init = tidemark_json(ep, &env, &["init", "--local", "--vault", "s3://enc-vault", "--json"])?;
    let key = init["kms_key"].as_str().context("init created no key")?.to_string();
    let again = tidemark_json(ep, &env, &["init", "--local", "--vault", "s3://enc-vault", "--json"])?;
    assert_eq!(again["kms_key"].as_str(), Some(key.as_str()), "a second init keeps the stored key");
    let small = bodies("secret");
    fill(&c, "enc-src", &small).await?;
    // Past the late-event allowance (2 s on the local stack): a point sealed sooner lies before the
    // last puts, and the restore as of it rightly leaves them out.
    tokio::time::sleep(std::time::Duration::from_millis(3100)).await;
    let p = tidemark_json(ep, &env, &["protect", "--source", "s3://enc-src", "--vault", "s3://enc-vault", "--wait", "--json"])?;
    let point = p["recovery_point"].as_str().context("protect sealed no point")?.to_string();
    let expected = snapshot(&c, "enc-src", "").await?;

    let (hits, keys) = scan(&c, "enc-vault", &small).await?;
    assert!(keys.iter().any(|k| k.ends_with(".pack")) && keys.iter().any(|k| k.contains("/objects/")), "{keys:?}");
    assert!(hits.is_empty(), "plaintext of source objects in the encrypted vault: {hits:?}");
    // Every vault object, packs, segments, points and the large copy, names the vault key.
    for k in &keys {
        let h = c.head_object().bucket("enc-vault").key(k).send().await?;
        assert_eq!(
            (h.server_side_encryption().map(|s| s.as_str().to_string()), h.ssekms_key_id()),
            (Some("aws:kms".to_string()), Some(key.as_str())),
            "{k}"
        );
    }

    // The control plane gone, the vault and the key restore exactly.
    super::vault_alone::drop_control_plane(ep).await?;
    let r = tidemark_json(
        ep,
        &env,
        &["restore", "--source", "s3://enc-src", "--vault", "s3://enc-vault", "--as-of", &point, "--to", "s3://enc-restored", "--json"],
    )?;
    assert_eq!((r["state"].as_str(), r["failed"].as_u64()), (Some("done"), Some(0)), "{r}");
    let got = snapshot(&c, "enc-restored", "").await?;
    let d = tidemark_e2e::diff(&expected, &got);
    assert!(d.is_empty(), "the restore differs from the source: {:?}", &d[..d.len().min(10)]);
    Ok(())
}
