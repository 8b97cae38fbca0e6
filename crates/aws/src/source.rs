//! Access to the source buckets through each source account's read role.
//!
//! In a cross-account deployment the functions run in the vault account and cannot read the
//! source buckets with their own credentials: the source-account stacks create a read role in
//! every source account whose trust policy admits the vault's function roles only with the
//! deployment's external id. [`SourceSessions`] assumes that role once per account
//! (`sts:AssumeRole` through [`aws_config::sts::AssumeRoleProvider`]) and keeps one S3 client per
//! account; the clients' identity cache keeps the temporary credentials and refreshes them before
//! they expire, so STS is asked again only then.
//!
//! Two stores use these sessions:
//! - [`RoleSourceStore`], the engine's source store, sends every request for a bucket with the
//!   session of the account that owns the bucket.
//! - [`RoleVaultStore`], the engine's vault store, sends the server-side copies of large objects
//!   (`v1/<bucket>/objects/…`: CopyObject, and the multipart upload made of UploadPartCopy) with
//!   the source account's session too, because one request must both read the source and write
//!   the vault, and only the read role may read the source (the vault bucket policy and key policy
//!   let that role add new versions under `v1/*/objects/`). Everything else goes to the vault with
//!   the function's own credentials.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use tidemark_core::domain::{Acl, ObjectInfo};
use tidemark_core::ports::{Fetch, ListPage, ListRequest, ObjectRef, ObjectStore, PutOptions, VersionListRequest, VersionPage, Written};
use tidemark_core::{Error, Result};

use crate::s3::S3Store;

/// True when `id` is an AWS account id (exactly 12 ASCII digits).
fn is_account_id(id: &str) -> bool {
    id.len() == 12 && id.bytes().all(|b| b.is_ascii_digit())
}

/// Which source account owns each bucket.
///
/// With exactly one source account every bucket belongs to it; with several, each bucket must be
/// named in the bucket map, because nothing in a bucket's name tells its account and guessing
/// would send requests with the wrong account's credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BucketAccounts {
    accounts: Vec<String>,
    buckets: BTreeMap<String, String>,
}

impl BucketAccounts {
    /// Parses `TIDEMARK_SOURCE_ACCOUNT_IDS` (comma-separated) and `TIDEMARK_BUCKET_ACCOUNTS`
    /// (`bucket=account,bucket=account`, may be empty). The error says which value is wrong.
    pub fn parse(account_ids: &str, bucket_accounts: &str) -> std::result::Result<Self, String> {
        let mut accounts = Vec::new();
        for id in account_ids.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            if !is_account_id(id) {
                return Err(format!("TIDEMARK_SOURCE_ACCOUNT_IDS: '{id}' is not a 12-digit AWS account id"));
            }
            if !accounts.iter().any(|a| a == id) {
                accounts.push(id.to_string());
            }
        }
        if accounts.is_empty() {
            return Err("TIDEMARK_SOURCE_ACCOUNT_IDS names no account; it must hold the source account ids, comma-separated".into());
        }
        let mut buckets = BTreeMap::new();
        for entry in bucket_accounts.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let Some((bucket, account)) = entry.split_once('=') else {
                return Err(format!("TIDEMARK_BUCKET_ACCOUNTS: entry '{entry}' is not of the form bucket=account"));
            };
            let (bucket, account) = (bucket.trim(), account.trim());
            if bucket.is_empty() {
                return Err(format!("TIDEMARK_BUCKET_ACCOUNTS: entry '{entry}' has no bucket name"));
            }
            if !is_account_id(account) {
                return Err(format!("TIDEMARK_BUCKET_ACCOUNTS: account '{account}' of bucket '{bucket}' is not a 12-digit AWS account id"));
            }
            // The functions may only assume roles in the listed accounts (their IAM policies say
            // so), so a bucket mapped elsewhere could never be read; better to say it now.
            if !accounts.iter().any(|a| a == account) {
                return Err(format!(
                    "TIDEMARK_BUCKET_ACCOUNTS: account {account} of bucket '{bucket}' is not one of TIDEMARK_SOURCE_ACCOUNT_IDS ({})",
                    accounts.join(",")
                ));
            }
            if let Some(prev) = buckets.insert(bucket.to_string(), account.to_string()) {
                if prev != account {
                    return Err(format!("TIDEMARK_BUCKET_ACCOUNTS: bucket '{bucket}' is mapped to both {prev} and {account}"));
                }
            }
        }
        Ok(BucketAccounts { accounts, buckets })
    }

    /// The source account ids, in the order given.
    pub fn accounts(&self) -> &[String] {
        &self.accounts
    }

    /// The account that owns `bucket`; a bucket with no known account is a permanent error that
    /// names the variables to set.
    pub fn account_of(&self, bucket: &str) -> Result<&str> {
        if let Some(a) = self.buckets.get(bucket) {
            return Ok(a);
        }
        match self.accounts.as_slice() {
            [only] => Ok(only),
            many => Err(Error::Invalid(format!(
                "source bucket '{bucket}' has no known account: with several source accounts ({}) every bucket must be \
                 mapped in TIDEMARK_BUCKET_ACCOUNTS (bucket=account,...; Terraform variable bucket_accounts, \
                 CloudFormation parameter BucketAccounts)",
                many.join(",")
            ))),
        }
    }
}

/// The read role the functions assume in every source account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceRole {
    /// The role's name (`TIDEMARK_SOURCE_ROLE_NAME`); the same in every source account.
    pub role_name: String,
    /// The external id the role's trust policy requires (`TIDEMARK_EXTERNAL_ID`).
    pub external_id: String,
    /// The session name, which CloudTrail in the source account shows for every request.
    pub session_name: String,
    pub accounts: BucketAccounts,
}

/// The partition of a region, for role ARNs (`arn:<partition>:iam::…`).
pub fn partition_of(region: &str) -> &'static str {
    if region.starts_with("cn-") {
        "aws-cn"
    } else if region.starts_with("us-gov-") {
        "aws-us-gov"
    } else if region.starts_with("us-iso-") {
        "aws-iso"
    } else if region.starts_with("us-isob-") {
        "aws-iso-b"
    } else {
        "aws"
    }
}

/// One account's assumed-role clients.
#[derive(Debug)]
struct Session {
    role_arn: String,
    /// The assumed-role credentials both clients sign with.
    credentials: aws_sdk_s3::config::SharedCredentialsProvider,
    /// Reads of the source: the base source client's configuration (throttles surfaced when the
    /// scheduler runs) with the assumed-role credentials.
    reads: aws_sdk_s3::Client,
    /// Server-side copies into the vault: the vault client's configuration with the same role.
    copies: aws_sdk_s3::Client,
}

/// Assumed-role sessions into the source accounts, one per account, created on first use.
#[derive(Debug)]
pub struct SourceSessions {
    shared: aws_config::SdkConfig,
    role: SourceRole,
    partition: String,
    reads: aws_sdk_s3::Client,
    copies: aws_sdk_s3::Client,
    cache: Mutex<HashMap<String, Arc<Session>>>,
}

impl SourceSessions {
    /// Sessions that call STS with `shared`'s credentials, region and endpoint, and derive their
    /// S3 clients from `reads` (the source client) and `copies` (the vault client), so the
    /// endpoint, path-style addressing and retry behaviour stay those of the clients they replace.
    pub fn new(shared: aws_config::SdkConfig, reads: aws_sdk_s3::Client, copies: aws_sdk_s3::Client, role: SourceRole) -> Self {
        let partition = partition_of(shared.region().map(|r| r.as_ref()).unwrap_or("us-east-1")).to_string();
        SourceSessions { shared, role, partition, reads, copies, cache: Mutex::new(HashMap::new()) }
    }

    /// The ARN of the read role in `account`.
    pub fn role_arn(&self, account: &str) -> String {
        format!("arn:{}:iam::{account}:role/{}", self.partition, self.role.role_name)
    }

    /// The role configuration.
    pub fn role(&self) -> &SourceRole {
        &self.role
    }

    async fn session(&self, bucket: &str) -> Result<Arc<Session>> {
        let account = self.role.accounts.account_of(bucket)?.to_string();
        if let Some(s) = self.cache.lock().expect("session cache lock").get(&account) {
            return Ok(s.clone());
        }
        let role_arn = self.role_arn(&account);
        let provider = aws_config::sts::AssumeRoleProvider::builder(role_arn.clone())
            .external_id(self.role.external_id.clone())
            .session_name(self.role.session_name.clone())
            .configure(&self.shared)
            .build()
            .await;
        let provider = aws_sdk_s3::config::SharedCredentialsProvider::new(provider);
        let session = Arc::new(Session {
            role_arn,
            credentials: provider.clone(),
            reads: aws_sdk_s3::Client::from_conf(self.reads.config().to_builder().credentials_provider(provider.clone()).build()),
            copies: aws_sdk_s3::Client::from_conf(self.copies.config().to_builder().credentials_provider(provider).build()),
        });
        // Two tasks may build a session for the same account at once; the first one stored wins
        // and the other is dropped before it has called STS (the provider is lazy).
        Ok(self.cache.lock().expect("session cache lock").entry(account).or_insert(session).clone())
    }

    /// The credentials the clients for `bucket` sign with (its account's session) and the role
    /// ARN they assume; the tests use them to ask STS who the session is.
    pub async fn session_credentials(&self, bucket: &str) -> Result<(aws_sdk_s3::config::SharedCredentialsProvider, String)> {
        let s = self.session(bucket).await?;
        Ok((s.credentials.clone(), s.role_arn.clone()))
    }

    /// The accounts that have a session so far.
    pub fn cached_accounts(&self) -> Vec<String> {
        let mut v: Vec<String> = self.cache.lock().expect("session cache lock").keys().cloned().collect();
        v.sort();
        v
    }

    async fn reads(&self, bucket: &str) -> Result<S3Store> {
        Ok(S3Store::new(self.session(bucket).await?.reads.clone()))
    }

    async fn copies(&self, bucket: &str) -> Result<S3Store> {
        Ok(S3Store::new(self.session(bucket).await?.copies.clone()))
    }
}

/// The source store of a cross-account deployment: every request for a bucket is sent with the
/// read role of the account that owns it.
#[derive(Debug, Clone)]
pub struct RoleSourceStore {
    sessions: Arc<SourceSessions>,
}

impl RoleSourceStore {
    pub fn new(sessions: Arc<SourceSessions>) -> Self {
        RoleSourceStore { sessions }
    }
}

#[async_trait]
impl ObjectStore for RoleSourceStore {
    async fn bucket_exists(&self, bucket: &str) -> Result<bool> {
        self.sessions.reads(bucket).await?.bucket_exists(bucket).await
    }

    async fn create_bucket(&self, bucket: &str) -> Result<()> {
        self.sessions.reads(bucket).await?.create_bucket(bucket).await
    }

    async fn list(&self, bucket: &str, req: ListRequest<'_>) -> Result<ListPage> {
        self.sessions.reads(bucket).await?.list(bucket, req).await
    }

    async fn head(&self, bucket: &str, key: &str, version_id: Option<&str>) -> Result<Option<ObjectInfo>> {
        self.sessions.reads(bucket).await?.head(bucket, key, version_id).await
    }

    async fn get(&self, bucket: &str, key: &str, version_id: Option<&str>, if_match: Option<&str>) -> Result<Fetch<(ObjectInfo, Bytes)>> {
        self.sessions.reads(bucket).await?.get(bucket, key, version_id, if_match).await
    }

    async fn get_range(&self, bucket: &str, key: &str, version_id: Option<&str>, offset: u64, len: u64) -> Result<Bytes> {
        self.sessions.reads(bucket).await?.get_range(bucket, key, version_id, offset, len).await
    }

    async fn put(&self, bucket: &str, key: &str, body: Bytes, opts: &PutOptions) -> Result<Written> {
        self.sessions.reads(bucket).await?.put(bucket, key, body, opts).await
    }

    async fn copy(&self, src: &ObjectRef, if_match: Option<&str>, bucket: &str, key: &str) -> Result<Fetch<Written>> {
        self.sessions.reads(&src.bucket).await?.copy(src, if_match, bucket, key).await
    }

    async fn create_multipart(&self, bucket: &str, key: &str, opts: &PutOptions) -> Result<String> {
        self.sessions.reads(bucket).await?.create_multipart(bucket, key, opts).await
    }

    async fn upload_part(&self, bucket: &str, key: &str, upload_id: &str, part_number: i32, body: Bytes) -> Result<String> {
        self.sessions.reads(bucket).await?.upload_part(bucket, key, upload_id, part_number, body).await
    }

    async fn upload_part_copy(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        part_number: i32,
        src: &ObjectRef,
        if_match: Option<&str>,
        first: u64,
        last: u64,
    ) -> Result<Fetch<String>> {
        self.sessions.reads(&src.bucket).await?.upload_part_copy(bucket, key, upload_id, part_number, src, if_match, first, last).await
    }

    async fn complete_multipart(&self, bucket: &str, key: &str, upload_id: &str, parts: &[(i32, String)]) -> Result<Written> {
        self.sessions.reads(bucket).await?.complete_multipart(bucket, key, upload_id, parts).await
    }

    async fn abort_multipart(&self, bucket: &str, key: &str, upload_id: &str) -> Result<()> {
        self.sessions.reads(bucket).await?.abort_multipart(bucket, key, upload_id).await
    }

    async fn delete(&self, bucket: &str, key: &str) -> Result<()> {
        self.sessions.reads(bucket).await?.delete(bucket, key).await
    }

    async fn list_versions(&self, bucket: &str, req: VersionListRequest<'_>) -> Result<VersionPage> {
        self.sessions.reads(bucket).await?.list_versions(bucket, req).await
    }

    async fn get_tags(&self, bucket: &str, key: &str, version_id: Option<&str>) -> Result<Option<BTreeMap<String, String>>> {
        self.sessions.reads(bucket).await?.get_tags(bucket, key, version_id).await
    }

    async fn get_acl(&self, bucket: &str, key: &str, version_id: Option<&str>) -> Result<Option<Acl>> {
        self.sessions.reads(bucket).await?.get_acl(bucket, key, version_id).await
    }

    async fn acls_enabled(&self, bucket: &str) -> Result<bool> {
        self.sessions.reads(bucket).await?.acls_enabled(bucket).await
    }

    async fn event_notifications_enabled(&self, bucket: &str) -> Result<bool> {
        self.sessions.reads(bucket).await?.event_notifications_enabled(bucket).await
    }

    async fn copy_with(
        &self,
        src: &ObjectRef,
        if_match: Option<&str>,
        bucket: &str,
        key: &str,
        opts: &PutOptions,
    ) -> Result<Fetch<Written>> {
        self.sessions.reads(&src.bucket).await?.copy_with(src, if_match, bucket, key, opts).await
    }

    async fn delete_version(&self, bucket: &str, key: &str, version_id: &str) -> Result<()> {
        self.sessions.reads(bucket).await?.delete_version(bucket, key, version_id).await
    }

    async fn restore_archived(&self, bucket: &str, key: &str, version_id: Option<&str>, days: u32) -> Result<()> {
        self.sessions.reads(bucket).await?.restore_archived(bucket, key, version_id, days).await
    }
}

/// The vault store of a cross-account deployment: the function's own client, except that the
/// server-side copies of large objects into `v1/<bucket>/objects/` go with the read role of the
/// account that owns `<bucket>` (see the module documentation).
///
/// A whole multipart copy (create, part copies, complete or abort) goes with the same role, so
/// one principal owns the upload from start to end.
#[derive(Debug, Clone)]
pub struct RoleVaultStore {
    own: S3Store,
    vault_bucket: String,
    sessions: Arc<SourceSessions>,
}

impl RoleVaultStore {
    pub fn new(own: S3Store, vault_bucket: impl Into<String>, sessions: Arc<SourceSessions>) -> Self {
        RoleVaultStore { own, vault_bucket: vault_bucket.into(), sessions }
    }

    /// The store for a request on `bucket`/`key`: the read role's copy client for a large-object
    /// key in the vault, the function's own client otherwise.
    async fn route(&self, bucket: &str, key: &str) -> Result<S3Store> {
        match tidemark_core::vault::object_key_bucket(key) {
            Some(source) if bucket == self.vault_bucket => self.sessions.copies(source).await,
            _ => Ok(self.own.clone()),
        }
    }
}

#[async_trait]
impl ObjectStore for RoleVaultStore {
    async fn bucket_exists(&self, bucket: &str) -> Result<bool> {
        self.own.bucket_exists(bucket).await
    }

    async fn create_bucket(&self, bucket: &str) -> Result<()> {
        self.own.create_bucket(bucket).await
    }

    async fn list(&self, bucket: &str, req: ListRequest<'_>) -> Result<ListPage> {
        self.own.list(bucket, req).await
    }

    async fn head(&self, bucket: &str, key: &str, version_id: Option<&str>) -> Result<Option<ObjectInfo>> {
        self.own.head(bucket, key, version_id).await
    }

    async fn get(&self, bucket: &str, key: &str, version_id: Option<&str>, if_match: Option<&str>) -> Result<Fetch<(ObjectInfo, Bytes)>> {
        self.own.get(bucket, key, version_id, if_match).await
    }

    async fn get_range(&self, bucket: &str, key: &str, version_id: Option<&str>, offset: u64, len: u64) -> Result<Bytes> {
        self.own.get_range(bucket, key, version_id, offset, len).await
    }

    async fn put(&self, bucket: &str, key: &str, body: Bytes, opts: &PutOptions) -> Result<Written> {
        self.own.put(bucket, key, body, opts).await
    }

    async fn copy(&self, src: &ObjectRef, if_match: Option<&str>, bucket: &str, key: &str) -> Result<Fetch<Written>> {
        // Only a copy out of a source bucket needs the read role; a copy out of the vault (a
        // restore) goes with the function's credentials.
        if src.bucket != self.vault_bucket {
            return self.route(bucket, key).await?.copy(src, if_match, bucket, key).await;
        }
        self.own.copy(src, if_match, bucket, key).await
    }

    async fn create_multipart(&self, bucket: &str, key: &str, opts: &PutOptions) -> Result<String> {
        self.route(bucket, key).await?.create_multipart(bucket, key, opts).await
    }

    async fn upload_part(&self, bucket: &str, key: &str, upload_id: &str, part_number: i32, body: Bytes) -> Result<String> {
        self.route(bucket, key).await?.upload_part(bucket, key, upload_id, part_number, body).await
    }

    async fn upload_part_copy(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        part_number: i32,
        src: &ObjectRef,
        if_match: Option<&str>,
        first: u64,
        last: u64,
    ) -> Result<Fetch<String>> {
        self.route(bucket, key).await?.upload_part_copy(bucket, key, upload_id, part_number, src, if_match, first, last).await
    }

    async fn complete_multipart(&self, bucket: &str, key: &str, upload_id: &str, parts: &[(i32, String)]) -> Result<Written> {
        self.route(bucket, key).await?.complete_multipart(bucket, key, upload_id, parts).await
    }

    async fn abort_multipart(&self, bucket: &str, key: &str, upload_id: &str) -> Result<()> {
        self.route(bucket, key).await?.abort_multipart(bucket, key, upload_id).await
    }

    async fn delete(&self, bucket: &str, key: &str) -> Result<()> {
        self.own.delete(bucket, key).await
    }

    async fn list_versions(&self, bucket: &str, req: VersionListRequest<'_>) -> Result<VersionPage> {
        self.own.list_versions(bucket, req).await
    }

    async fn get_tags(&self, bucket: &str, key: &str, version_id: Option<&str>) -> Result<Option<BTreeMap<String, String>>> {
        self.own.get_tags(bucket, key, version_id).await
    }

    async fn get_acl(&self, bucket: &str, key: &str, version_id: Option<&str>) -> Result<Option<Acl>> {
        self.own.get_acl(bucket, key, version_id).await
    }

    async fn acls_enabled(&self, bucket: &str) -> Result<bool> {
        self.own.acls_enabled(bucket).await
    }

    async fn event_notifications_enabled(&self, bucket: &str) -> Result<bool> {
        self.own.event_notifications_enabled(bucket).await
    }

    async fn copy_with(
        &self,
        src: &ObjectRef,
        if_match: Option<&str>,
        bucket: &str,
        key: &str,
        opts: &PutOptions,
    ) -> Result<Fetch<Written>> {
        // As with `copy`: only a copy out of a source bucket needs the read role.
        if src.bucket != self.vault_bucket {
            return self.route(bucket, key).await?.copy_with(src, if_match, bucket, key, opts).await;
        }
        self.own.copy_with(src, if_match, bucket, key, opts).await
    }

    async fn delete_version(&self, bucket: &str, key: &str, version_id: &str) -> Result<()> {
        self.own.delete_version(bucket, key, version_id).await
    }

    async fn restore_archived(&self, bucket: &str, key: &str, version_id: Option<&str>, days: u32) -> Result<()> {
        self.own.restore_archived(bucket, key, version_id, days).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_account_owns_every_bucket() {
        let a = BucketAccounts::parse("111122223333", "").unwrap();
        assert_eq!(a.account_of("anything").unwrap(), "111122223333");
    }

    #[test]
    fn several_accounts_need_the_map() {
        let a = BucketAccounts::parse("111122223333, 444455556666", "logs=444455556666,data=111122223333").unwrap();
        assert_eq!(a.account_of("logs").unwrap(), "444455556666");
        assert_eq!(a.account_of("data").unwrap(), "111122223333");
        let e = a.account_of("other").unwrap_err();
        assert!(!e.is_transient());
        let msg = e.to_string();
        assert!(msg.contains("'other'") && msg.contains("TIDEMARK_BUCKET_ACCOUNTS"), "{msg}");
    }

    #[test]
    fn malformed_values_are_named() {
        let e = BucketAccounts::parse("12345", "").unwrap_err();
        assert!(e.contains("'12345'") && e.contains("12-digit"), "{e}");
        let e = BucketAccounts::parse("", "").unwrap_err();
        assert!(e.contains("names no account"), "{e}");
        let e = BucketAccounts::parse("111122223333", "logs").unwrap_err();
        assert!(e.contains("bucket=account"), "{e}");
        let e = BucketAccounts::parse("111122223333", "logs=1111").unwrap_err();
        assert!(e.contains("'1111'"), "{e}");
        let e = BucketAccounts::parse("111122223333", "logs=444455556666").unwrap_err();
        assert!(e.contains("not one of TIDEMARK_SOURCE_ACCOUNT_IDS"), "{e}");
        let e = BucketAccounts::parse("111122223333,444455556666", "logs=111122223333,logs=444455556666").unwrap_err();
        assert!(e.contains("mapped to both"), "{e}");
    }

    #[test]
    fn partitions_follow_the_region() {
        assert_eq!(partition_of("eu-west-1"), "aws");
        assert_eq!(partition_of("cn-north-1"), "aws-cn");
        assert_eq!(partition_of("us-gov-west-1"), "aws-us-gov");
    }
}
