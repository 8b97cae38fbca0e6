//! The api function: API Gateway REST proxy events served by the REST API's one router
//! (`tidemark_api::router`, the same that `tidemark serve` serves locally), through `lambda_http`.
//!
//! A restore it starts is planned and restored by the restore function from the restore queue;
//! this function only starts runs and reads their state, so each request ends within a second.

use tidemark_api::{router, ApiState};
use tidemark_lambda::{init_logging, LambdaConfig};

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    init_logging();
    let config = LambdaConfig::from_env()?;
    let (engine, targets) = config.engine_and_targets().await;
    lambda_http::run(router(ApiState::new(engine, targets))).await
}
