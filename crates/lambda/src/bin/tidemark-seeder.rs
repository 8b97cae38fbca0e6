//! The seeder function: plans a seed run by listing and enqueues its tasks.

use lambda_runtime::{run, service_fn, Error, LambdaEvent};
use tidemark_lambda::{init_logging, seeder_handler, LambdaConfig, SeedRequest};

#[tokio::main]
async fn main() -> Result<(), Error> {
    init_logging();
    let config = LambdaConfig::from_env()?;
    let engine = config.engine().await;
    let engine = &engine;
    run(service_fn(move |event: LambdaEvent<SeedRequest>| async move { Ok::<_, Error>(seeder_handler(engine, event.payload).await?) }))
        .await
}
