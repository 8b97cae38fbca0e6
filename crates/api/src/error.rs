//! The API's error type, and how each error becomes a response: a status and a JSON body
//! `{"error": "...", …}` that says what was wrong (the field, the recoverable range, the bucket).
//!
//! A request that is malformed is 400; a restore id that does not exist is 404; a well-formed
//! request that cannot be done (an unprotected bucket, a time outside the recoverable range, a
//! target that is not empty, a role that cannot be assumed) is 422. Only failures that may pass
//! on a retry (throttling, a dropped connection) are 503, with `Retry-After`; damaged vault data
//! is 500, because neither the caller nor a retry can fix it.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};
use tidemark_core::Error;

/// Seconds a caller should wait before retrying a transient failure.
pub const RETRY_AFTER_SECONDS: u32 = 1;

/// Everything the API can answer instead of a result.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The request is malformed: not JSON, a field of the wrong type or form, an unknown field,
    /// a missing parameter. `field` names the part that is wrong, when one is.
    #[error("{message}")]
    BadRequest { message: String, field: Option<String> },
    /// The path names nothing (an unknown restore id, an unknown route).
    #[error("{0}")]
    NotFound(String),
    /// The request is well-formed but names something that cannot be restored from or into.
    #[error("{message}")]
    Unprocessable { message: String, field: Option<String> },
    /// The engine refused or failed.
    #[error(transparent)]
    Engine(#[from] Error),
}

impl ApiError {
    /// A malformed request, naming the field that is wrong.
    pub fn bad(field: Option<&str>, message: impl Into<String>) -> Self {
        ApiError::BadRequest { message: message.into(), field: field.map(str::to_string) }
    }

    /// True when retrying the same request later may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, ApiError::Engine(e) if e.is_transient())
    }

    /// The status and body this error answers with.
    pub fn parts(&self) -> (StatusCode, Value) {
        let message = self.to_string();
        let with_field = |status, field: &Option<String>| {
            let mut body = json!({ "error": message });
            if let Some(f) = field {
                body["field"] = json!(f);
            }
            (status, body)
        };
        match self {
            ApiError::BadRequest { field, .. } => with_field(StatusCode::BAD_REQUEST, field),
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, json!({ "error": message })),
            ApiError::Unprocessable { field, .. } => with_field(StatusCode::UNPROCESSABLE_ENTITY, field),
            ApiError::Engine(e) if e.is_transient() => (StatusCode::SERVICE_UNAVAILABLE, json!({ "error": message, "transient": true })),
            ApiError::Engine(e) => engine_parts(e, message),
        }
    }
}

/// The status and body of a permanent engine error, with the facts the caller needs to fix the request.
fn engine_parts(e: &Error, message: String) -> (StatusCode, Value) {
    let unprocessable = StatusCode::UNPROCESSABLE_ENTITY;
    match e {
        Error::AfterLatestPoint { latest, .. } => {
            (unprocessable, json!({ "error": message, "field": "as_of", "latest_recovery_point": latest }))
        }
        Error::BeforeFirstPoint { first, latest, .. } => {
            (unprocessable, json!({ "error": message, "field": "as_of", "first_recovery_point": first, "latest_recovery_point": latest }))
        }
        Error::NoRecoveryPoint { bucket, .. } => (unprocessable, json!({ "error": message, "field": "source_bucket", "bucket": bucket })),
        Error::NoSuchBucket { bucket } => (unprocessable, json!({ "error": message, "bucket": bucket })),
        Error::Corrupt { .. } | Error::ChecksumMismatch { .. } => (StatusCode::INTERNAL_SERVER_ERROR, json!({ "error": message })),
        _ => (unprocessable, json!({ "error": message })),
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, body) = self.parts();
        if status.is_server_error() {
            tracing::error!(status = status.as_u16(), error = %self, "API request failed");
        } else {
            tracing::info!(status = status.as_u16(), error = %self, "API request refused");
        }
        let mut response = (status, Json(body)).into_response();
        if status == StatusCode::SERVICE_UNAVAILABLE {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECONDS));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};

    #[test]
    fn each_error_answers_with_its_status_and_the_facts_that_fix_the_request() {
        let latest = Utc.with_ymd_and_hms(2026, 11, 21, 9, 40, 0).unwrap();
        let after = ApiError::from(Error::AfterLatestPoint { requested: latest + chrono::Duration::hours(1), latest });
        let (status, body) = after.parts();
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(body["field"], "as_of");
        assert_eq!(body["latest_recovery_point"], json!(latest));
        assert!(body["error"].as_str().unwrap().contains("latest recoverable time is 2026-11-21T09:40:00.000Z"), "{body}");

        let (status, body) = ApiError::bad(Some("as_of"), "as_of 'x' is not an RFC 3339 time").parts();
        assert_eq!((status, body["field"].as_str()), (StatusCode::BAD_REQUEST, Some("as_of")));
        assert_eq!(ApiError::NotFound("restore r does not exist".into()).parts().0, StatusCode::NOT_FOUND);

        let throttled = ApiError::from(Error::Throttled { operation: "GetItem".into(), prefix: String::new() });
        assert!(throttled.is_transient());
        assert_eq!(throttled.parts().0, StatusCode::SERVICE_UNAVAILABLE);
        let response = throttled.into_response();
        assert_eq!(response.headers()[header::RETRY_AFTER], "1");

        let denied = ApiError::from(Error::port("HeadBucket", "403 AccessDenied", false));
        assert!(!denied.is_transient());
        assert_eq!(denied.parts().0, StatusCode::UNPROCESSABLE_ENTITY, "only transient failures are 5xx, besides damaged data");
        assert_eq!(ApiError::from(Error::corrupt("segment", "bad hash")).parts().0, StatusCode::INTERNAL_SERVER_ERROR);
    }
}
