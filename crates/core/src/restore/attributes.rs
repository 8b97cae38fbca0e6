//! What a restore writes for a capture record besides its bytes, and what it could not write.
//!
//! [`write_options`] maps a record's attributes to the [`PutOptions`] of the write that restores
//! it (a PUT of a packed object, a CopyObject or a multipart copy of a large one) and lists the
//! attributes that write cannot reproduce, each with its reason. Content type, user metadata,
//! Cache-Control, Content-Encoding, Content-Disposition, Content-Language, Expires, the website
//! redirect location, tags and server-side encryption are written on every path; the storage
//! class as recorded unless the request names another; Object Lock and ACL grants only when the
//! request asks, because the target may not allow them (Object Lock needs a lock-enabled bucket,
//! grants need ACLs enabled).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::domain::{CaptureRecord, Grantee, ObjectAttributes, SourceChecksum};
use crate::ports::PutOptions;

/// Which optional attributes a restore writes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttributeRequest {
    /// Write this storage class instead of the recorded one (`STANDARD` writes none).
    #[serde(default)]
    pub storage_class: Option<String>,
    /// Write the recorded Object Lock mode, retain-until date and legal hold.
    #[serde(default)]
    pub object_lock: bool,
    /// Write the recorded ACL grants.
    #[serde(default)]
    pub acl: bool,
}

/// How the restore writes an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WritePath {
    /// A PUT of the bytes (a packed object).
    Put,
    /// One server-side CopyObject (a large object, or an old version copied in place).
    Copy,
    /// A multipart copy with the part layout of the vault copy (a very large object).
    MultipartCopy,
}

/// An attribute a restore did not write, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NotApplied {
    pub attribute: String,
    pub reason: String,
}

fn not_applied(attribute: &str, reason: impl Into<String>) -> NotApplied {
    NotApplied { attribute: attribute.into(), reason: reason.into() }
}

/// True if an ACL says no more than S3's default does: the owner has full control.
fn default_acl(acl: &crate::domain::Acl) -> bool {
    acl.grants
        .iter()
        .all(|g| g.permission == "FULL_CONTROL" && matches!(&g.grantee, Grantee::CanonicalUser { id } if Some(id) == acl.owner.as_ref()))
}

/// The options of the write that restores `record` by `path`, and what that write cannot apply.
///
/// `now` decides whether a recorded retain-until date is still in the future (S3 refuses a
/// retention that has passed).
pub fn write_options(
    record: &CaptureRecord,
    request: &AttributeRequest,
    path: WritePath,
    now: DateTime<Utc>,
) -> (PutOptions, Vec<NotApplied>) {
    let a = &record.attributes;
    let mut skipped = Vec::new();
    let mut out = ObjectAttributes {
        cache_control: a.cache_control.clone(),
        content_encoding: a.content_encoding.clone(),
        content_disposition: a.content_disposition.clone(),
        content_language: a.content_language.clone(),
        expires: a.expires,
        website_redirect_location: a.website_redirect_location.clone(),
        tags: a.tags.clone(),
        ..Default::default()
    };
    out.storage_class = request.storage_class.clone().or_else(|| a.storage_class.clone()).filter(|c| c != "STANDARD");
    out.source_checksum = match (&a.source_checksum, path) {
        (None, _) => None,
        // A PUT sends the recorded value, which S3 verifies against the bytes it receives.
        (Some(c), WritePath::Put) if c.is_full_object() => Some(c.clone()),
        // A single copy asks for the algorithm: S3 computes the same full-object value.
        (Some(c), WritePath::Copy) if c.is_full_object() => Some(SourceChecksum { value: String::new(), ..c.clone() }),
        (Some(c), WritePath::MultipartCopy) => {
            skipped.push(not_applied(
                "checksum",
                format!("{} {}: a multipart copy in the vault's part layout has a checksum of its own parts", c.algorithm, c.value),
            ));
            None
        }
        (Some(c), _) => {
            skipped.push(not_applied(
                "checksum",
                format!(
                    "{} {} is a composite of the source's parts, which one write cannot reproduce; written with {} of the whole object",
                    c.algorithm, c.value, c.algorithm
                ),
            ));
            Some(SourceChecksum { value: String::new(), kind: None, ..c.clone() })
        }
    };
    match &a.sse {
        Some(sse) if sse.customer_key => skipped.push(not_applied(
            "server-side encryption",
            "SSE-C: tidemark does not hold the customer's key; written with the target bucket's default encryption",
        )),
        Some(sse) => out.sse = Some(sse.clone()),
        None => {}
    }
    if let Some(lock) = &a.object_lock {
        if request.object_lock {
            let mut l = lock.clone();
            if let Some(until) = lock.retain_until.filter(|u| *u <= now) {
                skipped.push(not_applied("object lock retention", format!("retain-until date {} has passed", until.to_rfc3339())));
                l.retain_until = None;
                l.mode = None;
            }
            out.object_lock = Some(l).filter(|l| l.mode.is_some() || l.legal_hold == Some(true));
        } else if lock.mode.is_some() || lock.legal_hold == Some(true) {
            skipped.push(not_applied("object lock", "not asked for (restore with --object-lock into a bucket with Object Lock enabled)"));
        }
    }
    if let Some(acl) = &a.acl {
        if request.acl {
            out.acl = Some(acl.clone());
        } else if !default_acl(acl) {
            skipped.push(not_applied("acl", "not asked for (restore with --acl into a bucket with ACLs enabled)"));
        }
    }
    let opts =
        PutOptions { content_type: record.content_type.clone(), metadata: record.metadata.clone(), attributes: out, ..Default::default() };
    (opts, skipped)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    use crate::domain::{Acl, Grant, ObjectLock, Sse};

    fn record() -> CaptureRecord {
        let t = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        let mut r = CaptureRecord::delete("b", "k", t, None, t);
        r.kind = crate::domain::CaptureKind::Put;
        r.content_type = Some("text/html".into());
        r.metadata.insert("m".into(), "1".into());
        r.attributes = ObjectAttributes {
            cache_control: Some("max-age=60".into()),
            content_encoding: Some("gzip".into()),
            content_disposition: Some("inline".into()),
            content_language: Some("en".into()),
            expires: Some(t),
            website_redirect_location: Some("/elsewhere".into()),
            tags: [("team".to_string(), "a".to_string())].into(),
            storage_class: Some("STANDARD_IA".into()),
            source_checksum: Some(SourceChecksum { algorithm: "CRC32".into(), value: "NhCmhg==".into(), kind: Some("FULL_OBJECT".into()) }),
            sse: Some(Sse { algorithm: "aws:kms".into(), kms_key_id: Some("key-1".into()), bucket_key: Some(true), customer_key: false }),
            object_lock: Some(ObjectLock {
                mode: Some("GOVERNANCE".into()),
                retain_until: Some(t + chrono::Duration::days(30)),
                legal_hold: Some(true),
            }),
            acl: Some(Acl {
                owner: Some("owner".into()),
                grants: vec![Grant {
                    grantee: Grantee::Group { uri: "http://acs.amazonaws.com/groups/global/AllUsers".into() },
                    permission: "READ".into(),
                }],
            }),
            archived: None,
        };
        r
    }

    #[test]
    fn a_put_writes_every_attribute_asked_for() {
        let r = record();
        let t = r.event_time;
        let ask = AttributeRequest { storage_class: None, object_lock: true, acl: true };
        let (opts, skipped) = write_options(&r, &ask, WritePath::Put, t);
        assert!(skipped.is_empty(), "{skipped:?}");
        assert_eq!(opts.content_type.as_deref(), Some("text/html"));
        assert_eq!(opts.metadata, r.metadata);
        let mut want = r.attributes.clone();
        want.archived = None;
        assert_eq!(opts.attributes, want, "every attribute, the checksum value included");
    }

    #[test]
    fn what_a_write_cannot_apply_is_named() {
        let r = record();
        let t = r.event_time;
        let (opts, skipped) = write_options(&r, &AttributeRequest::default(), WritePath::Copy, t);
        let names: Vec<&str> = skipped.iter().map(|s| s.attribute.as_str()).collect();
        assert_eq!(names, vec!["object lock", "acl"], "{skipped:?}");
        assert_eq!(opts.attributes.source_checksum.as_ref().map(|c| (c.algorithm.as_str(), c.value.as_str())), Some(("CRC32", "")));
        assert_eq!((opts.attributes.object_lock, opts.attributes.acl), (None, None));

        let ask = AttributeRequest { storage_class: Some("STANDARD".into()), object_lock: true, acl: false };
        let later = t + chrono::Duration::days(31);
        let (opts, skipped) = write_options(&r, &ask, WritePath::MultipartCopy, later);
        let names: Vec<&str> = skipped.iter().map(|s| s.attribute.as_str()).collect();
        assert_eq!(names, vec!["checksum", "object lock retention", "acl"], "{skipped:?}");
        assert_eq!(opts.attributes.storage_class, None, "STANDARD is written as no class");
        assert_eq!(
            opts.attributes.object_lock,
            Some(ObjectLock { mode: None, retain_until: None, legal_hold: Some(true) }),
            "the hold stays"
        );

        let mut sse_c = record();
        sse_c.attributes.sse = Some(Sse { algorithm: "AES256".into(), kms_key_id: None, bucket_key: None, customer_key: true });
        sse_c.attributes.acl = None;
        sse_c.attributes.object_lock = None;
        let (opts, skipped) = write_options(&sse_c, &AttributeRequest::default(), WritePath::Put, t);
        assert_eq!(opts.attributes.sse, None);
        assert_eq!(skipped.len(), 1);
        assert!(skipped[0].reason.contains("SSE-C"), "{skipped:?}");
    }
}
