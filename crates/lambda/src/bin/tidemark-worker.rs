//! The worker function: SQS event source with partial batch responses.

use aws_lambda_events::event::sqs::SqsEvent;
use lambda_runtime::{run, service_fn, Error, LambdaEvent};
use tidemark_lambda::{in_invocation, init_logging, worker_handler, LambdaConfig};

#[tokio::main]
async fn main() -> Result<(), Error> {
    init_logging();
    let config = LambdaConfig::from_env()?;
    let engine = config.engine().await;
    let engine = &engine;
    run(service_fn(move |event: LambdaEvent<SqsEvent>| async move {
        Ok::<_, Error>(
            in_invocation("worker", &event.context.request_id, worker_handler(engine, event.payload, &event.context.request_id)).await,
        )
    }))
    .await
}
