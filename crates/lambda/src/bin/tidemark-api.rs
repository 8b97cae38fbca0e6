//! The api function: API Gateway REST proxy events served by the REST API's one router
//! (`tidemark_api::router`, the same that `tidemark serve` serves locally), through `lambda_http`.
//!
//! A restore it starts is planned and restored by the restore function from the restore queue;
//! this function only starts runs and reads their state, so each request ends within a second.

use lambda_http::RequestExt;
use tidemark_api::{router, ApiState};
use tidemark_lambda::{in_invocation, init_logging, LambdaConfig};
use tower::ServiceExt;

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    init_logging();
    let config = LambdaConfig::from_env()?;
    let (engine, targets) = config.engine_and_targets().await;
    let app = router(ApiState::new(engine, targets));
    // Each request runs in the invocation span, so its log lines carry the request id as `log_id`.
    lambda_http::run(lambda_http::service_fn(move |req: lambda_http::Request| {
        let app = app.clone();
        let request_id = req.lambda_context_ref().map(|c| c.request_id.clone()).unwrap_or_default();
        async move { in_invocation("api", &request_id, app.oneshot(req)).await }
    }))
    .await
}
