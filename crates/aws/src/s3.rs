//! The S3 adapter of the [`ObjectStore`] port.

use std::collections::BTreeMap;

use async_trait::async_trait;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{
    ChecksumAlgorithm, ChecksumMode, CompletedMultipartUpload, CompletedPart, MetadataDirective, ObjectLockLegalHoldStatus, ObjectLockMode,
    ObjectOwnership, ServerSideEncryption, StorageClass, TaggingDirective,
};
use bytes::Bytes;
use chrono::{DateTime, Utc};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use tidemark_core::domain::{normalize_etag, Acl, Grant, Grantee, ObjectAttributes, ObjectInfo, ObjectLock, SourceChecksum, Sse};
use tidemark_core::ports::{
    Fetch, ListPage, ListRequest, ObjectRef, ObjectStore, PutOptions, VersionEntry, VersionListRequest, VersionPage, Written,
};
use tidemark_core::{Error, Result};

use crate::errors::{code, map, map_keyed, status};

/// S3 through the AWS SDK.
#[derive(Clone, Debug)]
pub struct S3Store {
    client: aws_sdk_s3::Client,
}

impl S3Store {
    /// Wraps a client.
    pub fn new(client: aws_sdk_s3::Client) -> Self {
        S3Store { client }
    }
}

/// Characters left as they are in a copy source: RFC 3986 unreserved characters and `/`.
const COPY_SOURCE: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~').remove(b'/');

/// The `x-amz-copy-source` value: URL-encoded `bucket/key`, with `?versionId=` if pinned.
fn copy_source(src: &ObjectRef) -> String {
    let mut s = format!("{}/{}", src.bucket, utf8_percent_encode(&src.key, COPY_SOURCE));
    if let Some(v) = &src.version_id {
        s.push_str("?versionId=");
        s.push_str(&utf8_percent_encode(v, COPY_SOURCE).to_string());
    }
    s
}

fn to_chrono(t: Option<&aws_smithy_types::DateTime>) -> DateTime<Utc> {
    t.and_then(|t| DateTime::from_timestamp(t.secs(), t.subsec_nanos())).unwrap_or(DateTime::UNIX_EPOCH)
}

fn metadata(m: Option<&std::collections::HashMap<String, String>>) -> BTreeMap<String, String> {
    m.map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect()).unwrap_or_default()
}

fn not_found(st: Option<u16>, c: Option<&str>) -> bool {
    st == Some(404) || matches!(c, Some("NoSuchKey" | "NoSuchVersion" | "NotFound"))
}

fn no_such_bucket(bucket: &str, c: Option<&str>) -> Option<Error> {
    (c == Some("NoSuchBucket")).then(|| Error::NoSuchBucket { bucket: bucket.into() })
}

fn from_chrono(t: DateTime<Utc>) -> aws_smithy_types::DateTime {
    aws_smithy_types::DateTime::from_secs_and_nanos(t.timestamp(), t.timestamp_subsec_nanos())
}

/// The attributes a HEAD or GET reports, from the response's getters (the two outputs share them).
macro_rules! attributes_of {
    ($o:expr) => {{
        let o = &$o;
        let checksum = [
            ("CRC64NVME", o.checksum_crc64_nvme()),
            ("CRC32", o.checksum_crc32()),
            ("CRC32C", o.checksum_crc32_c()),
            ("SHA256", o.checksum_sha256()),
            ("SHA1", o.checksum_sha1()),
        ]
        .into_iter()
        .find_map(|(algorithm, v)| {
            v.map(|v| SourceChecksum {
                algorithm: algorithm.into(),
                value: v.to_string(),
                kind: o.checksum_type().map(|t| t.as_str().to_string()),
            })
        });
        let sse = match (o.server_side_encryption(), o.sse_customer_algorithm()) {
            (_, Some(alg)) => Some(Sse { algorithm: alg.to_string(), kms_key_id: None, bucket_key: None, customer_key: true }),
            (Some(alg), None) => Some(Sse {
                algorithm: alg.as_str().to_string(),
                kms_key_id: o.ssekms_key_id().map(String::from),
                bucket_key: o.bucket_key_enabled(),
                customer_key: false,
            }),
            (None, None) => None,
        };
        let lock = ObjectLock {
            mode: o.object_lock_mode().map(|m| m.as_str().to_string()),
            retain_until: o.object_lock_retain_until_date().map(|t| to_chrono(Some(t))),
            legal_hold: o.object_lock_legal_hold_status().map(|h| h.as_str() == "ON"),
        };
        ObjectAttributes {
            cache_control: o.cache_control().map(String::from),
            content_encoding: o.content_encoding().map(String::from),
            content_disposition: o.content_disposition().map(String::from),
            content_language: o.content_language().map(String::from),
            expires: o.expires_string().and_then(|e| DateTime::parse_from_rfc2822(e).ok()).map(|t| t.with_timezone(&Utc)),
            website_redirect_location: o.website_redirect_location().map(String::from),
            tags: BTreeMap::new(),
            storage_class: o.storage_class().map(|c| c.as_str().to_string()).filter(|c| c != "STANDARD"),
            source_checksum: checksum,
            sse,
            object_lock: (lock.mode.is_some() || lock.legal_hold.is_some()).then_some(lock),
            acl: None,
            archived: None,
        }
    }};
}

/// True when an `x-amz-restore` header says a restored copy is available.
fn restored(header: Option<&str>) -> bool {
    header.is_some_and(|h| h.contains("ongoing-request=\"false\""))
}

/// The `x-amz-tagging` value of a tag set (URL query encoding).
fn tagging(tags: &BTreeMap<String, String>) -> Option<String> {
    const Q: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~');
    (!tags.is_empty()).then(|| {
        tags.iter().map(|(k, v)| format!("{}={}", utf8_percent_encode(k, Q), utf8_percent_encode(v, Q))).collect::<Vec<_>>().join("&")
    })
}

/// The `x-amz-grant-*` header value of the grants of one permission.
fn grant_header(acl: Option<&Acl>, permission: &str) -> Option<String> {
    let grantees: Vec<String> = acl?
        .grants
        .iter()
        .filter(|g| g.permission == permission)
        .map(|g| match &g.grantee {
            Grantee::CanonicalUser { id } => format!("id=\"{id}\""),
            Grantee::Group { uri } => format!("uri=\"{uri}\""),
            Grantee::Email { address } => format!("emailAddress=\"{address}\""),
        })
        .collect();
    (!grantees.is_empty()).then(|| grantees.join(", "))
}

/// Sets the attributes of `opts` that PutObject, CopyObject and CreateMultipartUpload share on
/// a request builder (their setters have the same names).
macro_rules! with_attributes {
    ($req:expr, $opts:expr) => {{
        let a: &ObjectAttributes = &$opts.attributes;
        let lock = a.object_lock.as_ref();
        let sse = a.sse.as_ref().filter(|s| !s.customer_key);
        $req.set_content_type($opts.content_type.clone())
            .set_metadata((!$opts.metadata.is_empty()).then(|| $opts.metadata.clone().into_iter().collect()))
            .set_cache_control(a.cache_control.clone())
            .set_content_encoding(a.content_encoding.clone())
            .set_content_disposition(a.content_disposition.clone())
            .set_content_language(a.content_language.clone())
            .set_expires(a.expires.map(from_chrono))
            .set_website_redirect_location(a.website_redirect_location.clone())
            .set_tagging(tagging(&a.tags))
            .set_storage_class(a.storage_class.as_deref().map(StorageClass::from))
            .set_server_side_encryption(sse.map(|s| ServerSideEncryption::from(s.algorithm.as_str())))
            .set_ssekms_key_id(sse.and_then(|s| s.kms_key_id.clone()))
            .set_bucket_key_enabled(sse.and_then(|s| s.bucket_key))
            .set_object_lock_mode(lock.and_then(|l| l.mode.as_deref()).map(ObjectLockMode::from))
            .set_object_lock_retain_until_date(lock.and_then(|l| l.retain_until).map(from_chrono))
            .set_object_lock_legal_hold_status(
                lock.and_then(|l| l.legal_hold).map(|h| ObjectLockLegalHoldStatus::from(if h { "ON" } else { "OFF" })),
            )
            .set_grant_full_control(grant_header(a.acl.as_ref(), "FULL_CONTROL"))
            .set_grant_read(grant_header(a.acl.as_ref(), "READ"))
            .set_grant_read_acp(grant_header(a.acl.as_ref(), "READ_ACP"))
            .set_grant_write_acp(grant_header(a.acl.as_ref(), "WRITE_ACP"))
    }};
}

/// What a CopyObject's response means: the copy, a failed precondition, a missing source, an
/// archived source, or an error.
fn copy_outcome(
    res: std::result::Result<
        aws_sdk_s3::operation::copy_object::CopyObjectOutput,
        aws_sdk_s3::error::SdkError<aws_sdk_s3::operation::copy_object::CopyObjectError, aws_sdk_s3::config::http::HttpResponse>,
    >,
    src: &ObjectRef,
) -> Result<Fetch<Written>> {
    match res {
        Ok(o) => Ok(Fetch::Found(Written {
            etag: normalize_etag(o.copy_object_result().and_then(|r| r.e_tag()).unwrap_or_default()),
            version_id: o.version_id().map(String::from),
        })),
        Err(e) if status(&e) == Some(412) => Ok(Fetch::Changed),
        Err(e) if code(&e).as_deref() == Some("InvalidObjectState") => {
            Err(Error::Archived { bucket: src.bucket.clone(), key: src.key.clone() })
        }
        Err(e) if not_found(status(&e), code(&e).as_deref()) && code(&e).as_deref() != Some("NoSuchBucket") => Ok(Fetch::NotFound),
        // A copy reads the source, so S3 throttles it on the source key's prefix.
        Err(e) => Err(map_keyed("CopyObject", &src.key, e)),
    }
}

/// The bucket's notification configuration (GetBucketNotificationConfiguration).
pub(crate) async fn notification_configuration(
    client: &aws_sdk_s3::Client,
    bucket: &str,
) -> Result<aws_sdk_s3::operation::get_bucket_notification_configuration::GetBucketNotificationConfigurationOutput> {
    match client.get_bucket_notification_configuration().bucket(bucket).send().await {
        Ok(cur) => Ok(cur),
        // moto answers an empty configuration with a root element the SDK does not parse. Only an
        // answer that carries no configuration at all may be read as empty: anything else is an
        // error, so an existing configuration is never overwritten by mistake.
        Err(e) if status(&e) == Some(200) => {
            let body = e.raw_response().and_then(|r| r.body().bytes()).map(|b| String::from_utf8_lossy(b).to_string()).unwrap_or_default();
            if ["QueueConfiguration", "TopicConfiguration", "CloudFunctionConfiguration", "EventBridgeConfiguration"]
                .iter()
                .any(|t| body.contains(t))
            {
                return Err(map("GetBucketNotificationConfiguration", e));
            }
            Ok(aws_sdk_s3::operation::get_bucket_notification_configuration::GetBucketNotificationConfigurationOutput::builder().build())
        }
        Err(e) => Err(no_such_bucket(bucket, code(&e).as_deref()).unwrap_or_else(|| map("GetBucketNotificationConfiguration", e))),
    }
}

fn sha256_b64(hex_digest: &str) -> Result<String> {
    let raw = hex::decode(hex_digest).map_err(|e| Error::Invalid(format!("sha256 '{hex_digest}' is not hex: {e}")))?;
    Ok(aws_smithy_types::base64::encode(raw))
}

#[async_trait]
impl ObjectStore for S3Store {
    async fn bucket_exists(&self, bucket: &str) -> Result<bool> {
        match self.client.head_bucket().bucket(bucket).send().await {
            Ok(_) => Ok(true),
            Err(e) if status(&e) == Some(404) => Ok(false),
            Err(e) => Err(map("HeadBucket", e)),
        }
    }

    async fn create_bucket(&self, bucket: &str) -> Result<()> {
        match self.client.create_bucket().bucket(bucket).send().await {
            Ok(_) => Ok(()),
            Err(e) if code(&e).as_deref() == Some("BucketAlreadyOwnedByYou") => Ok(()),
            Err(e) => Err(map("CreateBucket", e)),
        }
    }

    async fn list(&self, bucket: &str, req: ListRequest<'_>) -> Result<ListPage> {
        let out = self
            .client
            .list_objects_v2()
            .bucket(bucket)
            .prefix(req.prefix)
            .set_delimiter(req.delimiter.map(String::from))
            .set_start_after(req.start_after.map(String::from))
            .set_continuation_token(req.continuation)
            .set_max_keys(req.max_keys)
            .send()
            .await;
        let out = match out {
            Ok(o) => o,
            Err(e) => {
                let key = req.start_after.unwrap_or(req.prefix);
                return Err(no_such_bucket(bucket, code(&e).as_deref()).unwrap_or_else(|| map_keyed("ListObjectsV2", key, e)));
            }
        };
        let objects = out
            .contents()
            .iter()
            .map(|o| ObjectInfo {
                key: o.key().unwrap_or_default().to_string(),
                size: o.size().unwrap_or(0).max(0) as u64,
                etag: normalize_etag(o.e_tag().unwrap_or_default()),
                last_modified: to_chrono(o.last_modified()),
                attributes: ObjectAttributes {
                    storage_class: o.storage_class().map(|c| c.as_str().to_string()).filter(|c| c != "STANDARD"),
                    ..Default::default()
                },
                ..Default::default()
            })
            .collect();
        let common_prefixes = out.common_prefixes().iter().filter_map(|p| p.prefix().map(String::from)).collect();
        let next_token = if out.is_truncated().unwrap_or(false) { out.next_continuation_token().map(String::from) } else { None };
        Ok(ListPage { objects, common_prefixes, next_token })
    }

    async fn head(&self, bucket: &str, key: &str, version_id: Option<&str>) -> Result<Option<ObjectInfo>> {
        let req = self.client.head_object().bucket(bucket).key(key).set_version_id(version_id.map(String::from));
        match req.checksum_mode(ChecksumMode::Enabled).send().await {
            Ok(o) => Ok(Some(ObjectInfo {
                key: key.into(),
                size: o.content_length().unwrap_or(0).max(0) as u64,
                etag: normalize_etag(o.e_tag().unwrap_or_default()),
                last_modified: to_chrono(o.last_modified()),
                version_id: o.version_id().map(String::from),
                content_type: o.content_type().map(String::from),
                metadata: metadata(o.metadata()),
                attributes: attributes_of!(o),
                tag_count: o.tag_count().map(|n| n.max(0) as u32),
                archive_status: o.archive_status().map(|a| a.as_str().to_string()),
                restored: restored(o.restore()),
            })),
            Err(e) if not_found(status(&e), code(&e).as_deref()) => Ok(None),
            // A version id that cannot exist in this bucket is answered with 400.
            Err(e) if version_id.is_some() && status(&e) == Some(400) => Ok(None),
            Err(e) => Err(map_keyed("HeadObject", key, e)),
        }
    }

    async fn get(&self, bucket: &str, key: &str, version_id: Option<&str>, if_match: Option<&str>) -> Result<Fetch<(ObjectInfo, Bytes)>> {
        let res = self
            .client
            .get_object()
            .bucket(bucket)
            .key(key)
            .set_version_id(version_id.map(String::from))
            .set_if_match(if_match.map(|e| format!("\"{e}\"")))
            .checksum_mode(ChecksumMode::Enabled)
            .send()
            .await;
        let o = match res {
            Ok(o) => o,
            Err(e) if status(&e) == Some(412) => return Ok(Fetch::Changed),
            Err(e) if code(&e).as_deref() == Some("InvalidObjectState") => {
                return Err(Error::Archived { bucket: bucket.into(), key: key.into() })
            }
            Err(e) if not_found(status(&e), code(&e).as_deref()) && code(&e).as_deref() != Some("NoSuchBucket") => {
                return Ok(Fetch::NotFound)
            }
            Err(e) if version_id.is_some() && status(&e) == Some(400) => return Ok(Fetch::NotFound),
            Err(e) => return Err(no_such_bucket(bucket, code(&e).as_deref()).unwrap_or_else(|| map_keyed("GetObject", key, e))),
        };
        let info = ObjectInfo {
            key: key.into(),
            size: o.content_length().unwrap_or(0).max(0) as u64,
            etag: normalize_etag(o.e_tag().unwrap_or_default()),
            last_modified: to_chrono(o.last_modified()),
            version_id: o.version_id().map(String::from),
            content_type: o.content_type().map(String::from),
            metadata: metadata(o.metadata()),
            attributes: attributes_of!(o),
            tag_count: Some(o.tag_count().unwrap_or(0).max(0) as u32),
            archive_status: None,
            restored: restored(o.restore()),
        };
        let body = o.body.collect().await.map_err(|e| Error::port("GetObject body", e.to_string(), true))?.into_bytes();
        Ok(Fetch::Found((info, body)))
    }

    async fn get_range(&self, bucket: &str, key: &str, version_id: Option<&str>, offset: u64, len: u64) -> Result<Bytes> {
        if len == 0 {
            return Ok(Bytes::new());
        }
        let o = self
            .client
            .get_object()
            .bucket(bucket)
            .key(key)
            .set_version_id(version_id.map(String::from))
            .range(format!("bytes={}-{}", offset, offset + len - 1))
            .send()
            .await
            .map_err(|e| match code(&e).as_deref() {
                Some("InvalidObjectState") => Error::Archived { bucket: bucket.into(), key: key.into() },
                _ => map_keyed("GetObject (range)", key, e),
            })?;
        let body = o.body.collect().await.map_err(|e| Error::port("GetObject body", e.to_string(), true))?.into_bytes();
        if body.len() as u64 != len {
            return Err(Error::port("GetObject (range)", format!("{key}: got {} bytes, asked for {len}", body.len()), true));
        }
        Ok(body)
    }

    async fn put(&self, bucket: &str, key: &str, body: Bytes, opts: &PutOptions) -> Result<Written> {
        let body_for_sum = body.clone();
        let mut req = with_attributes!(self.client.put_object().bucket(bucket).key(key).body(ByteStream::from(body)), opts);
        // Object Lock buckets refuse writes without an integrity header; S3 verifies this one:
        // the source's own checksum when the record has its full-object value, SHA-256 otherwise.
        match opts.attributes.source_checksum.as_ref().filter(|c| !c.value.is_empty()) {
            Some(c) => {
                let v = Some(c.value.clone());
                req = match c.algorithm.as_str() {
                    "CRC32" => req.checksum_algorithm(ChecksumAlgorithm::Crc32).set_checksum_crc32(v),
                    "CRC32C" => req.checksum_algorithm(ChecksumAlgorithm::Crc32C).set_checksum_crc32_c(v),
                    "CRC64NVME" => req.checksum_algorithm(ChecksumAlgorithm::Crc64Nvme).set_checksum_crc64_nvme(v),
                    "SHA1" => req.checksum_algorithm(ChecksumAlgorithm::Sha1).set_checksum_sha1(v),
                    _ => req.checksum_algorithm(ChecksumAlgorithm::Sha256).set_checksum_sha256(v),
                };
            }
            None => {
                let sha = match &opts.sha256_hex {
                    Some(sha) => sha256_b64(sha)?,
                    None => aws_smithy_types::base64::encode(<sha2::Sha256 as sha2::Digest>::digest(&body_for_sum)),
                };
                req = req.checksum_algorithm(ChecksumAlgorithm::Sha256).checksum_sha256(sha);
            }
        }
        if opts.if_none_match {
            req = req.if_none_match("*");
        }
        let o = req.send().await.map_err(|e| no_such_bucket(bucket, code(&e).as_deref()).unwrap_or_else(|| map("PutObject", e)))?;
        Ok(Written { etag: normalize_etag(o.e_tag().unwrap_or_default()), version_id: o.version_id().map(String::from) })
    }

    async fn copy(&self, src: &ObjectRef, if_match: Option<&str>, bucket: &str, key: &str) -> Result<Fetch<Written>> {
        let res = self
            .client
            .copy_object()
            .bucket(bucket)
            .key(key)
            .copy_source(copy_source(src))
            .checksum_algorithm(aws_sdk_s3::types::ChecksumAlgorithm::Sha256)
            .set_copy_source_if_match(if_match.map(|e| format!("\"{e}\"")))
            .customize()
            // moto refuses copies into Object Lock buckets without the header PutObject needs.
            .mutate_request(|r| {
                r.headers_mut().insert("x-amz-sdk-checksum-algorithm", "SHA256");
            })
            .send()
            .await;
        copy_outcome(res, src)
    }

    async fn create_multipart(&self, bucket: &str, key: &str, opts: &PutOptions) -> Result<String> {
        let o = with_attributes!(self.client.create_multipart_upload().bucket(bucket).key(key), opts)
            .send()
            .await
            .map_err(|e| map("CreateMultipartUpload", e))?;
        o.upload_id().map(String::from).ok_or_else(|| Error::port("CreateMultipartUpload", "no upload id in the response", true))
    }

    async fn upload_part(&self, bucket: &str, key: &str, upload_id: &str, part_number: i32, body: Bytes) -> Result<String> {
        let o = self
            .client
            .upload_part()
            .bucket(bucket)
            .key(key)
            .upload_id(upload_id)
            .part_number(part_number)
            .content_md5(aws_smithy_types::base64::encode(<md5::Md5 as md5::Digest>::digest(&body)))
            .body(ByteStream::from(body))
            .send()
            .await
            .map_err(|e| map("UploadPart", e))?;
        Ok(normalize_etag(o.e_tag().unwrap_or_default()))
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
        let res = self
            .client
            .upload_part_copy()
            .bucket(bucket)
            .key(key)
            .upload_id(upload_id)
            .part_number(part_number)
            .copy_source(copy_source(src))
            .copy_source_range(format!("bytes={first}-{last}"))
            .set_copy_source_if_match(if_match.map(|e| format!("\"{e}\"")))
            .send()
            .await;
        match res {
            Ok(o) => Ok(Fetch::Found(normalize_etag(o.copy_part_result().and_then(|r| r.e_tag()).unwrap_or_default()))),
            Err(e) if status(&e) == Some(412) => Ok(Fetch::Changed),
            Err(e) if code(&e).as_deref() == Some("InvalidObjectState") => {
                Err(Error::Archived { bucket: src.bucket.clone(), key: src.key.clone() })
            }
            Err(e) if not_found(status(&e), code(&e).as_deref()) && code(&e).as_deref() != Some("NoSuchUpload") => Ok(Fetch::NotFound),
            Err(e) => Err(map("UploadPartCopy", e)),
        }
    }

    async fn complete_multipart(&self, bucket: &str, key: &str, upload_id: &str, parts: &[(i32, String)]) -> Result<Written> {
        let parts = parts.iter().map(|(n, e)| CompletedPart::builder().part_number(*n).e_tag(format!("\"{e}\"")).build()).collect();
        let o = self
            .client
            .complete_multipart_upload()
            .bucket(bucket)
            .key(key)
            .upload_id(upload_id)
            .multipart_upload(CompletedMultipartUpload::builder().set_parts(Some(parts)).build())
            .send()
            .await
            .map_err(|e| map("CompleteMultipartUpload", e))?;
        Ok(Written { etag: normalize_etag(o.e_tag().unwrap_or_default()), version_id: o.version_id().map(String::from) })
    }

    async fn abort_multipart(&self, bucket: &str, key: &str, upload_id: &str) -> Result<()> {
        match self.client.abort_multipart_upload().bucket(bucket).key(key).upload_id(upload_id).send().await {
            Ok(_) => Ok(()),
            Err(e) if status(&e) == Some(404) => Ok(()),
            Err(e) => Err(map("AbortMultipartUpload", e)),
        }
    }

    async fn delete(&self, bucket: &str, key: &str) -> Result<()> {
        self.client.delete_object().bucket(bucket).key(key).send().await.map_err(|e| map("DeleteObject", e))?;
        Ok(())
    }

    async fn delete_many(&self, bucket: &str, keys: &[String]) -> Result<Vec<(String, String)>> {
        use aws_sdk_s3::types::{Delete, ObjectIdentifier};
        let mut failed = Vec::new();
        for chunk in keys.chunks(1000) {
            let objects = chunk
                .iter()
                .map(|k| ObjectIdentifier::builder().key(k).build().map_err(|e| Error::Invalid(format!("delete of {k}: {e}"))))
                .collect::<Result<Vec<_>>>()?;
            let delete = Delete::builder()
                .set_objects(Some(objects))
                .quiet(true)
                .build()
                .map_err(|e| Error::Invalid(format!("DeleteObjects: {e}")))?;
            let out = self
                .client
                .delete_objects()
                .bucket(bucket)
                .delete(delete)
                .checksum_algorithm(aws_sdk_s3::types::ChecksumAlgorithm::Sha256)
                .send()
                .await
                .map_err(|e| map("DeleteObjects", e))?;
            for e in out.errors() {
                failed.push((
                    e.key().unwrap_or_default().to_string(),
                    format!("{}: {}", e.code().unwrap_or("error"), e.message().unwrap_or_default()),
                ));
            }
        }
        Ok(failed)
    }

    async fn list_versions(&self, bucket: &str, req: VersionListRequest<'_>) -> Result<VersionPage> {
        let out = self
            .client
            .list_object_versions()
            .bucket(bucket)
            .prefix(req.prefix)
            .set_key_marker(req.key_marker.clone())
            .set_version_id_marker(req.version_id_marker.clone())
            .set_max_keys(req.max_keys)
            .send()
            .await
            .map_err(|e| no_such_bucket(bucket, code(&e).as_deref()).unwrap_or_else(|| map_keyed("ListObjectVersions", req.prefix, e)))?;
        let id = |v: Option<&str>| v.filter(|v| *v != "null").map(String::from);
        let mut versions: Vec<VersionEntry> = out
            .versions()
            .iter()
            .map(|v| VersionEntry {
                key: v.key().unwrap_or_default().to_string(),
                version_id: id(v.version_id()),
                is_latest: v.is_latest().unwrap_or(false),
                is_delete_marker: false,
                last_modified: to_chrono(v.last_modified()),
                etag: normalize_etag(v.e_tag().unwrap_or_default()),
                size: v.size().unwrap_or(0).max(0) as u64,
                storage_class: v.storage_class().map(|c| c.as_str().to_string()),
            })
            .chain(out.delete_markers().iter().map(|m| VersionEntry {
                key: m.key().unwrap_or_default().to_string(),
                version_id: id(m.version_id()),
                is_latest: m.is_latest().unwrap_or(false),
                is_delete_marker: true,
                last_modified: to_chrono(m.last_modified()),
                etag: String::new(),
                size: 0,
                storage_class: None,
            }))
            .collect();
        // The SDK parts versions from delete markers; S3 lists each key's entries newest first.
        versions.sort_by(|a, b| a.key.cmp(&b.key).then(b.is_latest.cmp(&a.is_latest)).then(b.last_modified.cmp(&a.last_modified)));
        let truncated = out.is_truncated().unwrap_or(false);
        Ok(VersionPage {
            versions,
            next_key_marker: out.next_key_marker().filter(|_| truncated).map(String::from),
            next_version_id_marker: out.next_version_id_marker().filter(|_| truncated).map(String::from),
        })
    }

    async fn get_tags(&self, bucket: &str, key: &str, version_id: Option<&str>) -> Result<Option<BTreeMap<String, String>>> {
        match self.client.get_object_tagging().bucket(bucket).key(key).set_version_id(version_id.map(String::from)).send().await {
            Ok(o) => Ok(Some(o.tag_set().iter().map(|t| (t.key().to_string(), t.value().to_string())).collect())),
            Err(e) if not_found(status(&e), code(&e).as_deref()) && code(&e).as_deref() != Some("NoSuchBucket") => Ok(None),
            Err(e) if version_id.is_some() && status(&e) == Some(400) => Ok(None),
            Err(e) => Err(map_keyed("GetObjectTagging", key, e)),
        }
    }

    async fn get_acl(&self, bucket: &str, key: &str, version_id: Option<&str>) -> Result<Option<Acl>> {
        match self.client.get_object_acl().bucket(bucket).key(key).set_version_id(version_id.map(String::from)).send().await {
            Ok(o) => {
                let mut grants: Vec<Grant> = o
                    .grants()
                    .iter()
                    .filter_map(|g| {
                        let who = g.grantee()?;
                        let grantee = match (who.id(), who.uri(), who.email_address()) {
                            (Some(id), _, _) => Grantee::CanonicalUser { id: id.into() },
                            (None, Some(uri), _) => Grantee::Group { uri: uri.into() },
                            (None, None, Some(address)) => Grantee::Email { address: address.into() },
                            _ => return None,
                        };
                        Some(Grant { grantee, permission: g.permission()?.as_str().to_string() })
                    })
                    .collect();
                grants.sort();
                Ok(Some(Acl { owner: o.owner().and_then(|w| w.id()).map(String::from), grants }))
            }
            Err(e) if not_found(status(&e), code(&e).as_deref()) && code(&e).as_deref() != Some("NoSuchBucket") => Ok(None),
            Err(e) if version_id.is_some() && status(&e) == Some(400) => Ok(None),
            Err(e) => Err(map_keyed("GetObjectAcl", key, e)),
        }
    }

    async fn acls_enabled(&self, bucket: &str) -> Result<bool> {
        match self.client.get_bucket_ownership_controls().bucket(bucket).send().await {
            Ok(o) => Ok(!o
                .ownership_controls()
                .is_some_and(|c| c.rules().iter().any(|r| r.object_ownership() == &ObjectOwnership::BucketOwnerEnforced))),
            // A bucket without ownership controls predates them: its objects have ACLs.
            Err(e) if code(&e).as_deref() == Some("OwnershipControlsNotFoundError") => Ok(true),
            Err(e) => Err(no_such_bucket(bucket, code(&e).as_deref()).unwrap_or_else(|| map("GetBucketOwnershipControls", e))),
        }
    }

    async fn event_notifications_enabled(&self, bucket: &str) -> Result<bool> {
        Ok(notification_configuration(&self.client, bucket).await?.event_bridge_configuration().is_some())
    }

    async fn copy_with(
        &self,
        src: &ObjectRef,
        if_match: Option<&str>,
        bucket: &str,
        key: &str,
        opts: &PutOptions,
    ) -> Result<Fetch<Written>> {
        let algorithm = opts.attributes.source_checksum.as_ref().map_or("SHA256", |c| c.algorithm.as_str()).to_string();
        let req = with_attributes!(self.client.copy_object().bucket(bucket).key(key).copy_source(copy_source(src)), opts)
            .metadata_directive(MetadataDirective::Replace)
            .tagging_directive(TaggingDirective::Replace)
            .checksum_algorithm(ChecksumAlgorithm::from(algorithm.as_str()))
            .set_copy_source_if_match(if_match.map(|e| format!("\"{e}\"")));
        let res = req
            .customize()
            // moto refuses copies into Object Lock buckets without the header PutObject needs.
            .mutate_request(move |r| {
                r.headers_mut().insert("x-amz-sdk-checksum-algorithm", algorithm.clone());
            })
            .send()
            .await;
        copy_outcome(res, src)
    }

    async fn delete_version(&self, bucket: &str, key: &str, version_id: &str) -> Result<()> {
        self.client.delete_object().bucket(bucket).key(key).version_id(version_id).send().await.map_err(|e| map("DeleteObject", e))?;
        Ok(())
    }

    async fn restore_archived(&self, bucket: &str, key: &str, version_id: Option<&str>, days: u32) -> Result<()> {
        use aws_sdk_s3::types::{GlacierJobParameters, RestoreRequest, Tier};
        let glacier = RestoreRequest::builder()
            .days(days as i32)
            .glacier_job_parameters(
                GlacierJobParameters::builder().tier(Tier::Standard).build().map_err(|e| Error::Invalid(e.to_string()))?,
            )
            .build();
        let send = |request: RestoreRequest| {
            self.client
                .restore_object()
                .bucket(bucket)
                .key(key)
                .set_version_id(version_id.map(String::from))
                .restore_request(request)
                .send()
        };
        match send(glacier).await {
            Ok(_) => Ok(()),
            // Asked before and still running, or already done: nothing more to ask.
            Err(e) if status(&e) == Some(409) || code(&e).as_deref() == Some("RestoreAlreadyInProgress") => Ok(()),
            // Intelligent-Tiering archive tiers take a restore without days or tier.
            Err(e) if code(&e).as_deref() == Some("InvalidArgument") || code(&e).as_deref() == Some("MalformedXML") => {
                match send(RestoreRequest::builder().build()).await {
                    Ok(_) => Ok(()),
                    Err(e) if status(&e) == Some(409) => Ok(()),
                    Err(e) => Err(map_keyed("RestoreObject", key, e)),
                }
            }
            Err(e) => Err(map_keyed("RestoreObject", key, e)),
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn copy_source_is_url_encoded() {
        let r = tidemark_core::ports::ObjectRef { bucket: "b".into(), key: "dir/a b+c%=é.txt".into(), version_id: Some("v+1".into()) };
        assert_eq!(super::copy_source(&r), "b/dir/a%20b%2Bc%25%3D%C3%A9.txt?versionId=v%2B1");
    }
}
