//! Source integrity: captured bytes are checked against what S3 says about them before they are
//! captured.
//!
//! Two statements can be checked without trusting the transfer: the ETag of a single-part
//! object that is not encrypted with SSE-KMS or SSE-C is the MD5 of its bytes, and a
//! full-object `x-amz-checksum-*` value (asked for with `ChecksumMode=ENABLED`) is the
//! checksum of its bytes. A mismatch is [`Error::SourceMismatch`], a transient error: the read is
//! retried and nothing is captured from it.

use base64::Engine as _;
use md5::Digest as _;

use crate::domain::{ObjectInfo, SourceChecksum};
use crate::{Error, Result};

/// True if `etag` has the form of a plain MD5 (32 hex digits, no `-N` part count).
pub fn is_plain_md5(etag: &str) -> bool {
    etag.len() == 32 && etag.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The value of `checksum`'s algorithm over `data`, base64 as S3 spells it; `None` for an
/// algorithm this build does not know.
pub fn compute(algorithm: &str, data: &[u8]) -> Option<String> {
    use crc_fast::{checksum, CrcAlgorithm};
    let raw: Vec<u8> = match algorithm.to_ascii_uppercase().as_str() {
        "CRC32" => (checksum(CrcAlgorithm::Crc32IsoHdlc, data) as u32).to_be_bytes().to_vec(),
        "CRC32C" => (checksum(CrcAlgorithm::Crc32Iscsi, data) as u32).to_be_bytes().to_vec(),
        "CRC64NVME" => checksum(CrcAlgorithm::Crc64Nvme, data).to_be_bytes().to_vec(),
        "SHA1" => sha1::Sha1::digest(data).to_vec(),
        "SHA256" => sha2::Sha256::digest(data).to_vec(),
        _ => return None,
    };
    Some(base64::engine::general_purpose::STANDARD.encode(raw))
}

/// Checks the bytes read for `info` against its size, its MD5 ETag (where S3 makes it the MD5)
/// and its full-object checksum (where S3 reported one).
pub fn verify_source(bucket: &str, info: &ObjectInfo, data: &[u8]) -> Result<()> {
    let mismatch = |what: &str, expected: String, actual: String| Error::SourceMismatch {
        bucket: bucket.into(),
        key: info.key.clone(),
        what: what.into(),
        expected,
        actual,
    };
    if data.len() as u64 != info.size {
        return Err(mismatch("size", info.size.to_string(), data.len().to_string()));
    }
    let md5_etag = is_plain_md5(&info.etag) && !info.attributes.sse.as_ref().is_some_and(|s| s.hides_md5());
    if md5_etag {
        let actual = hex::encode(md5::Md5::digest(data));
        if !actual.eq_ignore_ascii_case(&info.etag) {
            return Err(mismatch("MD5 ETag", info.etag.clone(), actual));
        }
    }
    if let Some(SourceChecksum { algorithm, value, .. }) = info.attributes.source_checksum.as_ref().filter(|c| c.is_full_object()) {
        if let Some(actual) = compute(algorithm, data) {
            if &actual != value {
                return Err(mismatch(&format!("{algorithm} checksum"), value.clone(), actual));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{ObjectAttributes, Sse};

    fn info(etag: &str, size: u64, checksum: Option<(&str, &str)>, sse: Option<&str>) -> ObjectInfo {
        ObjectInfo {
            key: "k".into(),
            size,
            etag: etag.into(),
            attributes: ObjectAttributes {
                source_checksum: checksum.map(|(a, v)| SourceChecksum {
                    algorithm: a.into(),
                    value: v.into(),
                    kind: Some("FULL_OBJECT".into()),
                }),
                sse: sse.map(|a| Sse { algorithm: a.into(), kms_key_id: None, bucket_key: None, customer_key: false }),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    #[test]
    fn checksums_match_the_values_s3_reports() {
        // The values moto (and S3) report for the five bytes `hello`.
        assert_eq!(compute("CRC32", b"hello").as_deref(), Some("NhCmhg=="));
        assert_eq!(compute("SHA256", b"hello").as_deref(), Some("LPJNul+wow4m6DsqxbninhsWHlwfp0JecwQzYpOLmCQ="));
        assert_eq!(compute("CRC32C", b"hello").as_deref(), Some("mnG7TA=="));
        assert_eq!(compute("SHA1", b"hello").as_deref(), Some("qvTGHdzF6KLavt4PO0gs2a6pQ00="));
        assert!(compute("CRC64NVME", b"hello").is_some());
        assert_eq!(compute("MD4", b"hello"), None);
    }

    #[test]
    fn mismatches_are_transient_and_name_what_disagreed() {
        let md5 = "5d41402abc4b2a76b9719d911017c592";
        verify_source("b", &info(md5, 5, Some(("CRC32", "NhCmhg==")), None), b"hello").unwrap();
        let e = verify_source("b", &info(md5, 5, None, None), b"hellp").unwrap_err();
        assert!(e.is_transient() && e.to_string().contains("MD5 ETag"), "{e}");
        let e = verify_source("b", &info("0123", 5, Some(("CRC32", "AAAAAA==")), None), b"hello").unwrap_err();
        assert!(e.is_transient() && e.to_string().contains("CRC32 checksum"), "{e}");
        let e = verify_source("b", &info(md5, 6, None, None), b"hello").unwrap_err();
        assert!(e.to_string().contains("size"), "{e}");
        // SSE-KMS ETags and multipart ETags are not MD5s of the bytes, so they are not compared.
        verify_source("b", &info("00000000000000000000000000000000", 5, None, Some("aws:kms")), b"hello").unwrap();
        verify_source("b", &info("0123456789abcdef0123456789abcdef-2", 5, None, None), b"hello").unwrap();
    }
}
