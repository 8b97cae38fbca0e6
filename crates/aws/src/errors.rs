//! Mapping of SDK errors into the engine's error, with a transient/permanent decision.

use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use tidemark_core::Error;

/// The HTTP status of a failed call, if a response came back.
pub(crate) fn status<E>(e: &SdkError<E, aws_sdk_s3::config::http::HttpResponse>) -> Option<u16> {
    e.raw_response().map(|r| r.status().as_u16())
}

/// The service's error code, if any.
pub(crate) fn code<E: ProvideErrorMetadata>(e: &SdkError<E, aws_sdk_s3::config::http::HttpResponse>) -> Option<String> {
    e.code().map(str::to_string)
}

/// True when S3 refused the request because the prefix is over its request rate: HTTP 503 or
/// the `SlowDown` code (S3 sends both together; some S3-compatible servers send only one).
pub(crate) fn is_throttle<E: ProvideErrorMetadata>(e: &SdkError<E, aws_sdk_s3::config::http::HttpResponse>) -> bool {
    status(e) == Some(503) || matches!(e.code(), Some("SlowDown" | "SlowDownRead" | "SlowDownWrite"))
}

/// Converts an SDK error into the engine's error, reporting throttling as [`Error::Throttled`]
/// on the top-level prefix of `key`, so that the scheduler can count it per prefix.
pub(crate) fn map_keyed<E>(operation: &str, key: &str, e: SdkError<E, aws_sdk_s3::config::http::HttpResponse>) -> Error
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    if is_throttle(&e) {
        return Error::Throttled { operation: operation.to_string(), prefix: tidemark_core::scheduler::fleet::top_prefix(key).to_string() };
    }
    map(operation, e)
}

/// Converts an SDK error into the engine's error.
pub(crate) fn map<E>(operation: &str, e: SdkError<E, aws_sdk_s3::config::http::HttpResponse>) -> Error
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let st = status(&e);
    let c = code(&e).unwrap_or_default();
    let transient = matches!(e, SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_))
        || st.is_some_and(|s| s >= 500 || s == 429)
        || matches!(
            c.as_str(),
            "SlowDown" | "ThrottlingException" | "ProvisionedThroughputExceededException" | "RequestLimitExceeded" | "InternalError"
        );
    if c == "NoSuchBucket" {
        let msg = e.message().unwrap_or_default().to_string();
        return Error::port(operation, format!("NoSuchBucket: the bucket does not exist {msg}"), false);
    }
    let message = match (e.code(), e.message()) {
        (Some(code), Some(msg)) => format!("{code}: {msg}"),
        (Some(code), None) => code.to_string(),
        _ => format!("{}", DisplayErrorContext(&e)),
    };
    Error::port(operation, message, transient)
}
