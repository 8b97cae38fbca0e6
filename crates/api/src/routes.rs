//! The routes of `api/openapi.yaml`: start a restore, show one, list a bucket's.

use axum::body::Bytes;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;
use tidemark_core::domain::check_bucket_name;
use tidemark_core::restore::run;

use crate::error::ApiError;
use crate::json::{run_json, status_json};
use crate::request::parse_request;
use crate::start::start_restore;
use crate::ApiState;

/// The router of every route, with JSON answers for unknown routes and methods too.
pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/v1/restores", get(list).post(create))
        .route("/v1/restores/{restore_id}", get(show))
        .fallback(unknown_route)
        .method_not_allowed_fallback(unknown_method)
        .with_state(state)
}

/// `POST /v1/restores`: 202 with the run's id and state; the restore goes on in the background.
async fn create(State(state): State<ApiState>, body: Bytes) -> Result<Response, ApiError> {
    let req = parse_request(&body)?;
    let started = start_restore(&state.engine, state.targets.as_ref(), req).await?;
    let location = format!("/v1/restores/{}", started.restore_id);
    let mut response = (StatusCode::ACCEPTED, Json(json!(started))).into_response();
    if let Ok(v) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, v);
    }
    Ok(response)
}

/// `GET /v1/restores/{restore_id}`: the run's status, as `tidemark restore status --json` prints it.
async fn show(State(state): State<ApiState>, id: Result<Path<String>, PathRejection>) -> Result<Response, ApiError> {
    let Ok(Path(id)) = id else { return Err(ApiError::NotFound("no such restore: the restore id is not valid".into())) };
    let unknown = || ApiError::NotFound(format!("restore {id} does not exist in vault {}", state.engine.config.vault_bucket));
    // Anything that is not a restore id names no run; asking the control table about it would
    // only risk a key it refuses.
    if !is_restore_id(&id) || run::load(&state.engine, &id).await?.is_none() {
        return Err(unknown());
    }
    let status = run::status(&state.engine, &id).await?;
    Ok(Json(status_json(&status)).into_response())
}

/// `GET /v1/restores?source_bucket=…`: the bucket's runs, newest first.
async fn list(
    State(state): State<ApiState>,
    query: Result<Query<std::collections::HashMap<String, String>>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::bad(None, format!("the query string is not valid: {e}")))?;
    let bucket = query.get("source_bucket").ok_or_else(|| ApiError::bad(Some("source_bucket"), "source_bucket is required"))?;
    check_bucket_name(bucket).map_err(|e| ApiError::bad(Some("source_bucket"), format!("source_bucket: {e}")))?;
    if !state.engine.control().is_protected(bucket).await? {
        return Err(ApiError::NotFound(format!("s3://{bucket} is not protected by vault {}", state.engine.config.vault_bucket)));
    }
    let runs = run::list(&state.engine, bucket).await?;
    Ok(Json(json!({"source_bucket": bucket, "restores": runs.iter().map(run_json).collect::<Vec<_>>()})).into_response())
}

async fn unknown_route() -> ApiError {
    ApiError::NotFound(
        "no such route; see api/openapi.yaml (POST /v1/restores, GET /v1/restores/{restore_id}, GET /v1/restores?source_bucket=…)".into(),
    )
}

async fn unknown_method() -> Response {
    let body = json!({"error": "method not allowed on this route; see api/openapi.yaml"});
    (StatusCode::METHOD_NOT_ALLOWED, Json(body)).into_response()
}

/// True for the form `restore::run` gives ids: `YYYYMMDDTHHMMSSmmmZ-` and 16 hex digits.
pub(crate) fn is_restore_id(id: &str) -> bool {
    let b = id.as_bytes();
    b.len() == 36
        && b[..8].iter().all(u8::is_ascii_digit)
        && b[8] == b'T'
        && b[9..18].iter().all(u8::is_ascii_digit)
        && b[18] == b'Z'
        && b[19] == b'-'
        && b[20..].iter().all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(c))
}
