//! The seeder function: plans a seed run and enqueues its tasks, or (`"mode": "reconcile"`) reconciles buckets with the catalog.

use lambda_runtime::{run, service_fn, Error, LambdaEvent};
use tidemark_lambda::{init_logging, invocation_span, seeder_dispatch, LambdaConfig};
use tracing::Instrument;

#[tokio::main]
async fn main() -> Result<(), Error> {
    init_logging();
    let config = LambdaConfig::from_env()?;
    let engine = config.engine().await;
    let engine = &engine;
    run(service_fn(move |event: LambdaEvent<serde_json::Value>| async move {
        let span = invocation_span("seeder", &event.context.request_id);
        Ok::<_, Error>(seeder_dispatch(engine, event.payload).instrument(span).await?)
    }))
    .await
}
