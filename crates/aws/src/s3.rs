//! The S3 adapter of the [`ObjectStore`] port.

use std::collections::BTreeMap;

use async_trait::async_trait;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use bytes::Bytes;
use chrono::{DateTime, Utc};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use tidemark_core::domain::{normalize_etag, ObjectInfo};
use tidemark_core::ports::{Fetch, ListPage, ListRequest, ObjectRef, ObjectStore, PutOptions, Written};
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
                ..Default::default()
            })
            .collect();
        let common_prefixes = out.common_prefixes().iter().filter_map(|p| p.prefix().map(String::from)).collect();
        let next_token = if out.is_truncated().unwrap_or(false) { out.next_continuation_token().map(String::from) } else { None };
        Ok(ListPage { objects, common_prefixes, next_token })
    }

    async fn head(&self, bucket: &str, key: &str, version_id: Option<&str>) -> Result<Option<ObjectInfo>> {
        match self.client.head_object().bucket(bucket).key(key).set_version_id(version_id.map(String::from)).send().await {
            Ok(o) => Ok(Some(ObjectInfo {
                key: key.into(),
                size: o.content_length().unwrap_or(0).max(0) as u64,
                etag: normalize_etag(o.e_tag().unwrap_or_default()),
                last_modified: to_chrono(o.last_modified()),
                version_id: o.version_id().map(String::from),
                content_type: o.content_type().map(String::from),
                metadata: metadata(o.metadata()),
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
            .send()
            .await;
        let o = match res {
            Ok(o) => o,
            Err(e) if status(&e) == Some(412) => return Ok(Fetch::Changed),
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
            .map_err(|e| map_keyed("GetObject (range)", key, e))?;
        let body = o.body.collect().await.map_err(|e| Error::port("GetObject body", e.to_string(), true))?.into_bytes();
        if body.len() as u64 != len {
            return Err(Error::port("GetObject (range)", format!("{key}: got {} bytes, asked for {len}", body.len()), true));
        }
        Ok(body)
    }

    async fn put(&self, bucket: &str, key: &str, body: Bytes, opts: &PutOptions) -> Result<Written> {
        let body_for_sum = body.clone();
        let mut req = self
            .client
            .put_object()
            .bucket(bucket)
            .key(key)
            .body(ByteStream::from(body))
            .set_content_type(opts.content_type.clone())
            .set_metadata((!opts.metadata.is_empty()).then(|| opts.metadata.clone().into_iter().collect()));
        // Object Lock buckets refuse writes without an integrity header; S3 verifies this one.
        let sha = match &opts.sha256_hex {
            Some(sha) => sha256_b64(sha)?,
            None => aws_smithy_types::base64::encode(<sha2::Sha256 as sha2::Digest>::digest(&body_for_sum)),
        };
        req = req.checksum_algorithm(aws_sdk_s3::types::ChecksumAlgorithm::Sha256).checksum_sha256(sha);
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
        match res {
            Ok(o) => Ok(Fetch::Found(Written {
                etag: normalize_etag(o.copy_object_result().and_then(|r| r.e_tag()).unwrap_or_default()),
                version_id: o.version_id().map(String::from),
            })),
            Err(e) if status(&e) == Some(412) => Ok(Fetch::Changed),
            Err(e) if not_found(status(&e), code(&e).as_deref()) && code(&e).as_deref() != Some("NoSuchBucket") => Ok(Fetch::NotFound),
            // A copy reads the source, so S3 throttles it on the source key's prefix.
            Err(e) => Err(map_keyed("CopyObject", &src.key, e)),
        }
    }

    async fn create_multipart(&self, bucket: &str, key: &str, opts: &PutOptions) -> Result<String> {
        let o = self
            .client
            .create_multipart_upload()
            .bucket(bucket)
            .key(key)
            .set_content_type(opts.content_type.clone())
            .set_metadata((!opts.metadata.is_empty()).then(|| opts.metadata.clone().into_iter().collect()))
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
}

#[cfg(test)]
mod tests {
    #[test]
    fn copy_source_is_url_encoded() {
        let r = tidemark_core::ports::ObjectRef { bucket: "b".into(), key: "dir/a b+c%=é.txt".into(), version_id: Some("v+1".into()) };
        assert_eq!(super::copy_source(&r), "b/dir/a%20b%2Bc%25%3D%C3%A9.txt?versionId=v%2B1");
    }
}
