//! The checkpoint function: run on a schedule, seals recovery points and publishes the RPO.

use lambda_runtime::{run, service_fn, Error, LambdaEvent};
use tidemark_lambda::{checkpoint_handler, init_logging, invocation_span, CheckpointRequest, LambdaConfig};
use tracing::Instrument;

#[tokio::main]
async fn main() -> Result<(), Error> {
    init_logging();
    let config = LambdaConfig::from_env()?;
    let engine = config.engine().await;
    let (engine, late) = (&engine, config.late_event_seconds);
    run(service_fn(move |event: LambdaEvent<CheckpointRequest>| async move {
        let span = invocation_span("checkpoint", &event.context.request_id);
        Ok::<_, Error>(checkpoint_handler(engine, event.payload, late).instrument(span).await?)
    }))
    .await
}
