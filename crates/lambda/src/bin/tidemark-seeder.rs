//! The seeder function: plans a seed run and enqueues its tasks, or (`"mode": "reconcile"`) reconciles buckets with the catalog.

use lambda_runtime::{run, service_fn, Error, LambdaEvent};
use tidemark_lambda::{in_invocation, init_logging, seeder_dispatch, LambdaConfig};

#[tokio::main]
async fn main() -> Result<(), Error> {
    init_logging();
    let config = LambdaConfig::from_env()?;
    let engine = config.engine().await;
    let engine = &engine;
    run(service_fn(move |event: LambdaEvent<serde_json::Value>| async move {
        Ok::<_, Error>(in_invocation("seeder", &event.context.request_id, seeder_dispatch(engine, event.payload)).await?)
    }))
    .await
}
