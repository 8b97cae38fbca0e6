//! The tidemark REST API (`api/openapi.yaml`): one axum router over the engine, served in Lambda
//! behind the API Gateway proxy (`tidemark-api`, through `lambda_http`) and on a loopback port by
//! `tidemark serve`.
//!
//! `POST /v1/restores` starts a restore run and answers 202 at once (the run plans and restores
//! on the restore queue); `GET /v1/restores/{restore_id}` is the run's status, the JSON of
//! `tidemark restore status --json`; `GET /v1/restores?source_bucket=…` lists a bucket's runs.
//! Errors are JSON `{"error": "...", …}` naming what was wrong ([`ApiError`]).
//!
//! Modules: `request` (reading a request body as strictly as the document describes it),
//! `start` (starting a restore, shared with the restore function's console event), `json` (the
//! run's JSON, shared with the CLI), `error` (statuses and bodies), `routes`.

mod error;
mod json;
mod request;
mod routes;
mod start;

use std::sync::Arc;

use tidemark_core::engine::Engine;
use tidemark_core::ports::Targets;

pub use error::{ApiError, RETRY_AFTER_SECONDS};
pub use json::{run_json, status_json};
pub use request::parse_request;
pub use routes::router;
pub use start::{start_restore, RestoreStarted};

/// What every request is answered with: the engine of one vault and the stores its restores
/// write targets with.
#[derive(Clone)]
pub struct ApiState {
    pub engine: Engine,
    pub targets: Arc<dyn Targets>,
}

impl ApiState {
    pub fn new(engine: Engine, targets: Arc<dyn Targets>) -> Self {
        ApiState { engine, targets }
    }
}

/// Serves the router on `listener` until `shutdown` completes (what `tidemark serve` runs; in
/// Lambda, `lambda_http` serves the same router).
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: ApiState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(state)).with_graceful_shutdown(shutdown).await
}
