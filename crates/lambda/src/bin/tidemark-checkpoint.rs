//! The checkpoint function: run on a schedule, seals recovery points and publishes the RPO.

use lambda_runtime::{run, service_fn, Error, LambdaEvent};
use tidemark_lambda::{checkpoint_handler, in_invocation, init_logging, CheckpointRequest, LambdaConfig};

#[tokio::main]
async fn main() -> Result<(), Error> {
    init_logging();
    let config = LambdaConfig::from_env()?;
    let engine = config.engine().await;
    let (engine, late) = (&engine, config.late_event_seconds);
    run(service_fn(move |event: LambdaEvent<CheckpointRequest>| async move {
        Ok::<_, Error>(in_invocation("checkpoint", &event.context.request_id, checkpoint_handler(engine, event.payload, late)).await?)
    }))
    .await
}
