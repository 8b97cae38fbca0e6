//! Reading a restore request from a request body, at least as strictly as `api/openapi.yaml`
//! describes it: whatever the document says is invalid is refused here with a 400 naming the
//! field (schemathesis checks exactly that), before the engine sees it.

use serde_json::{Map, Value};
use tidemark_core::domain::check_bucket_name;
use tidemark_core::restore::request::check_role_arn;
use tidemark_core::restore::RestoreRequest;

use crate::error::ApiError;

/// The JSON type a field must have.
#[derive(Clone, Copy)]
enum Kind {
    Text,
    Flag,
    /// The `attributes` object, whose own fields [`ATTRIBUTE_FIELDS`] lists.
    Attributes,
}

/// Every field of a restore request, as the OpenAPI document lists them.
const FIELDS: &[(&str, Kind)] = &[
    ("source_bucket", Kind::Text),
    ("prefix", Kind::Text),
    ("as_of", Kind::Text),
    ("target_bucket", Kind::Text),
    ("target_prefix", Kind::Text),
    ("mode", Kind::Text),
    ("delete_newer", Kind::Flag),
    ("dry_run", Kind::Flag),
    ("target_role_arn", Kind::Text),
    ("attributes", Kind::Attributes),
];

/// The fields of `attributes`: which optional attributes the restore writes.
const ATTRIBUTE_FIELDS: &[(&str, Kind)] = &[("storage_class", Kind::Text), ("object_lock", Kind::Flag), ("acl", Kind::Flag)];

/// The fields a request cannot do without (the others have defaults).
const REQUIRED: &[&str] = &["source_bucket", "as_of", "target_bucket"];

/// The longest prefix S3 can hold: a key is at most 1024 bytes.
const MAX_PREFIX_BYTES: usize = 1024;

/// The longest IAM role ARN.
const MAX_ROLE_ARN: usize = 2048;

/// Parses and checks a restore request body; every refusal names what was wrong.
pub fn parse_request(body: &[u8]) -> Result<RestoreRequest, ApiError> {
    let value: Value = serde_json::from_slice(body).map_err(|e| ApiError::bad(None, format!("the body is not JSON: {e}")))?;
    let Value::Object(map) = &value else {
        return Err(ApiError::bad(None, "the body must be a JSON object: a restore request"));
    };
    check_fields(map)?;
    let text = |name: &str| map.get(name).and_then(Value::as_str);
    let as_of = text("as_of").unwrap_or_default();
    if !is_rfc3339(as_of) || chrono::DateTime::parse_from_rfc3339(as_of).is_err() {
        return Err(ApiError::bad(Some("as_of"), format!("as_of '{as_of}' is not an RFC 3339 time (for example 2026-11-21T09:40:00Z)")));
    }
    for name in ["source_bucket", "target_bucket"] {
        check_bucket_name(text(name).unwrap_or_default()).map_err(|e| ApiError::bad(Some(name), format!("{name}: {e}")))?;
    }
    for name in ["prefix", "target_prefix"] {
        if text(name).is_some_and(|p| p.len() > MAX_PREFIX_BYTES) {
            return Err(ApiError::bad(Some(name), format!("{name} is longer than {MAX_PREFIX_BYTES} bytes, the longest S3 key")));
        }
    }
    if let Some(mode) = text("mode") {
        if !matches!(mode, "copy" | "rollback") {
            return Err(ApiError::bad(Some("mode"), format!("mode '{mode}' is not one of: copy, rollback")));
        }
    }
    if let Some(arn) = text("target_role_arn") {
        let partition_ok = arn.split(':').nth(1).is_some_and(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_lowercase() || c == '-'));
        if arn.len() > MAX_ROLE_ARN || !partition_ok {
            return Err(ApiError::bad(
                Some("target_role_arn"),
                format!("target role '{arn}' is not an IAM role ARN (arn:aws:iam::123456789012:role/NAME)"),
            ));
        }
        check_role_arn(arn).map_err(|e| ApiError::bad(Some("target_role_arn"), e.to_string()))?;
    }
    let req: RestoreRequest =
        serde_json::from_value(value.clone()).map_err(|e| ApiError::bad(None, format!("not a restore request: {e}")))?;
    req.validate().map_err(|e| ApiError::bad(None, e.to_string()))?;
    Ok(req)
}

/// Refuses unknown fields, fields of the wrong JSON type, and missing required fields.
fn check_fields(map: &Map<String, Value>) -> Result<(), ApiError> {
    check_kinds(map, FIELDS, "", "a restore request")?;
    for name in REQUIRED {
        if !map.contains_key(*name) {
            return Err(ApiError::bad(Some(name), format!("{name} is required")));
        }
    }
    Ok(())
}

/// Checks every field of `map` against `fields` (names the refused one as `within` + its name).
fn check_kinds(map: &Map<String, Value>, fields: &[(&str, Kind)], within: &str, what: &str) -> Result<(), ApiError> {
    for (name, v) in map {
        let field = format!("{within}{name}");
        let Some((_, kind)) = fields.iter().find(|(f, _)| f == name) else {
            let known: Vec<&str> = fields.iter().map(|(f, _)| *f).collect();
            return Err(ApiError::bad(Some(&field), format!("unknown field '{field}'; {what} has {}", known.join(", "))));
        };
        let (ok, want) = match kind {
            Kind::Text => (v.is_string(), "a string"),
            Kind::Flag => (v.is_boolean(), "true or false"),
            Kind::Attributes => (v.is_object(), "an object"),
        };
        if !ok {
            return Err(ApiError::bad(Some(&field), format!("{field} must be {want}, not {v}")));
        }
        if let (Kind::Attributes, Value::Object(inner)) = (kind, v) {
            check_kinds(inner, ATTRIBUTE_FIELDS, "attributes.", "attributes")?;
            if let Some(class) = inner.get("storage_class").and_then(Value::as_str) {
                if !tidemark_core::restore::request::STORAGE_CLASSES.contains(&class) {
                    let all = tidemark_core::restore::request::STORAGE_CLASSES.join(", ");
                    return Err(ApiError::bad(Some("attributes.storage_class"), format!("storage class '{class}' is not one of: {all}")));
                }
            }
        }
    }
    Ok(())
}

/// True for `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)` of at most 40 characters: the form the
/// document allows (chrono alone would also take a space or a lower-case `t`).
fn is_rfc3339(s: &str) -> bool {
    let b = s.as_bytes();
    let digits = |range: std::ops::Range<usize>| range.clone().all(|i| b.get(i).is_some_and(u8::is_ascii_digit));
    if s.len() > 40
        || b.len() < 20
        || !digits(0..4)
        || !digits(5..7)
        || !digits(8..10)
        || !digits(11..13)
        || !digits(14..16)
        || !digits(17..19)
    {
        return false;
    }
    if b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || b[13] != b':' || b[16] != b':' {
        return false;
    }
    let mut i = 19;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        if i == start {
            return false;
        }
    }
    match &b[i..] {
        [b'Z'] => true,
        [sign, h1, h2, b':', m1, m2] => matches!(sign, b'+' | b'-') && [h1, h2, m1, m2].iter().all(|c| c.is_ascii_digit()),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(v: Value) -> Result<RestoreRequest, ApiError> {
        parse_request(v.to_string().as_bytes())
    }

    fn refused(v: Value) -> (Option<String>, String) {
        match parse(v) {
            Err(ApiError::BadRequest { field, message }) => (field, message),
            other => panic!("expected a 400, got {other:?}"),
        }
    }

    const OK: &str = r#"{"source_bucket":"acme-prod-data","as_of":"2026-11-20T09:40:00Z","target_bucket":"acme-restored"}"#;

    #[test]
    fn a_minimal_request_takes_the_defaults_and_the_console_event_parses() {
        let r = parse_request(OK.as_bytes()).unwrap();
        assert_eq!((r.prefix.as_str(), r.mode, r.dry_run, r.target_role_arn), ("", tidemark_core::restore::RestoreMode::Copy, false, None));
        let event = include_str!("../../../infra/events/restore-request.json");
        let r = parse_request(event.as_bytes()).unwrap();
        assert_eq!(r.source_bucket, "acme-prod-data");
        let with_role = json!({"source_bucket": "a-b-c", "as_of": "2026-11-20T09:40:00.250+01:00", "target_bucket": "d-e-f", "target_role_arn": "arn:aws:iam::111122223333:role/tidemark-restore-target"});
        assert_eq!(parse(with_role).unwrap().target_role_arn.as_deref(), Some("arn:aws:iam::111122223333:role/tidemark-restore-target"));
        let with_attributes = json!({"source_bucket": "a-b-c", "as_of": "2026-11-20T09:40:00Z", "target_bucket": "d-e-f", "attributes": {"storage_class": "STANDARD_IA", "object_lock": true}});
        let a = parse(with_attributes).unwrap().attributes;
        assert_eq!((a.storage_class.as_deref(), a.object_lock, a.acl), (Some("STANDARD_IA"), true, false));
    }

    #[test]
    fn every_refusal_names_the_field() {
        let base: Value = serde_json::from_str(OK).unwrap();
        let with = |k: &str, v: Value| {
            let mut b = base.clone();
            b[k] = v;
            b
        };
        let cases = [
            (with("as_of", json!("yesterday at 9")), "as_of", "not an RFC 3339 time"),
            (with("as_of", json!("2026-11-20 09:40:00Z")), "as_of", "not an RFC 3339 time"),
            (with("as_of", json!("2026-13-45T09:40:00Z")), "as_of", "not an RFC 3339 time"),
            (with("as_of", json!(1_795_772_412)), "as_of", "must be a string"),
            (with("source_bucket", json!("Bad_Bucket")), "source_bucket", "not a valid S3 bucket name"),
            (with("target_bucket", json!("ab")), "target_bucket", "not a valid S3 bucket name"),
            (with("mode", json!("overwrite")), "mode", "not one of: copy, rollback"),
            (with("dry_run", json!("yes")), "dry_run", "must be true or false"),
            (with("prefix", json!("p".repeat(1025))), "prefix", "longer than 1024 bytes"),
            (with("target_role_arn", json!("arn:aws:iam::12:role/x")), "target_role_arn", "is not an IAM role ARN"),
            (with("target_role_arn", json!("arn:AWS:iam::111122223333:role/x")), "target_role_arn", "is not an IAM role ARN"),
            (with("colour", json!("blue")), "colour", "unknown field 'colour'"),
            (with("attributes", json!(true)), "attributes", "must be an object"),
            (with("attributes", json!({"storage_class": "COLD"})), "attributes.storage_class", "not one of: STANDARD"),
            (with("attributes", json!({"acl": "yes"})), "attributes.acl", "must be true or false"),
            (with("attributes", json!({"tags": false})), "attributes.tags", "unknown field 'attributes.tags'"),
        ];
        for (body, field, says) in cases {
            let (f, message) = refused(body.clone());
            assert_eq!(f.as_deref(), Some(field), "{body}: {message}");
            assert!(message.contains(says), "{body}: '{message}' should say '{says}'");
        }
        let mut missing = base.clone();
        missing.as_object_mut().unwrap().remove("target_bucket");
        assert_eq!(refused(missing), (Some("target_bucket".into()), "target_bucket is required".into()));
        assert!(refused(json!([1, 2])).1.contains("JSON object"));
        match parse_request(b"{not json") {
            Err(ApiError::BadRequest { field: None, message }) => assert!(message.contains("not JSON"), "{message}"),
            other => panic!("{other:?}"),
        }
        // The request's own rules (here: delete_newer outside rollback mode) are refused too.
        assert!(refused(with("delete_newer", json!(true))).1.contains("rollback mode only"));
    }

    #[test]
    fn the_time_form_is_the_documents() {
        for ok in ["2026-11-20T09:40:00Z", "2026-11-20T09:40:00.5Z", "2026-11-20T09:40:00.123456789-05:30"] {
            assert!(is_rfc3339(ok), "{ok}");
        }
        for bad in [
            "2026-11-20T09:40:00",
            "2026-11-20t09:40:00Z",
            "2026-11-20T09:40:00.Z",
            "2026-11-20T09:40:00+0100",
            "２026-11-20T09:40:00Z",
            "",
        ] {
            assert!(!is_rfc3339(bad), "{bad}");
        }
    }
}
