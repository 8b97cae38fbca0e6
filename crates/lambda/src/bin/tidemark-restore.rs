//! The restore function: runs a restore request from the REST API or a console test event.

use lambda_runtime::{run, service_fn, Error, LambdaEvent};
use tidemark_core::restore::RestoreRequest;
use tidemark_lambda::{init_logging, restore_handler, LambdaConfig};

#[tokio::main]
async fn main() -> Result<(), Error> {
    init_logging();
    let config = LambdaConfig::from_env()?;
    let engine = config.engine().await;
    let engine = &engine;
    run(service_fn(move |event: LambdaEvent<RestoreRequest>| async move { Ok::<_, Error>(restore_handler(engine, event.payload).await?) }))
        .await
}
