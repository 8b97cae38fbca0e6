//! The worker function: SQS event source with partial batch responses.

use aws_lambda_events::event::sqs::SqsEvent;
use lambda_runtime::{run, service_fn, Error, LambdaEvent};
use tidemark_lambda::{init_logging, invocation_span, worker_handler, LambdaConfig};
use tracing::Instrument;

#[tokio::main]
async fn main() -> Result<(), Error> {
    init_logging();
    let config = LambdaConfig::from_env()?;
    let engine = config.engine().await;
    let engine = &engine;
    run(service_fn(move |event: LambdaEvent<SqsEvent>| async move {
        let span = invocation_span("worker", &event.context.request_id);
        Ok::<_, Error>(worker_handler(engine, event.payload, &event.context.request_id).instrument(span).await)
    }))
    .await
}
