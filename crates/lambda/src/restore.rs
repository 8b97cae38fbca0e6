//! The restore function's handler: a restore request from the REST API or a console test event.

use tidemark_core::engine::Engine;
use tidemark_core::restore::{RestoreReport, RestoreRequest};

use crate::LambdaError;

/// Restore: runs a restore request (REST API, console test event) with the function's S3 client.
pub async fn restore_handler(engine: &Engine, req: RestoreRequest) -> Result<RestoreReport, LambdaError> {
    let target = engine.vault.clone();
    Ok(tidemark_core::restore::restore(engine, target, &req, &|done, total| tracing::info!(done, total, "restore progress")).await?)
}
