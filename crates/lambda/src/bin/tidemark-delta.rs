//! The delta function: SQS event source with partial batch responses.

use aws_lambda_events::event::sqs::SqsEvent;
use lambda_runtime::{run, service_fn, Error, LambdaEvent};
use tidemark_lambda::{delta_handler, in_invocation, init_logging, LambdaConfig};

#[tokio::main]
async fn main() -> Result<(), Error> {
    init_logging();
    let config = LambdaConfig::from_env()?;
    let engine = config.engine().await;
    let engine = &engine;
    run(service_fn(move |event: LambdaEvent<SqsEvent>| async move {
        Ok::<_, Error>(in_invocation("delta", &event.context.request_id, delta_handler(engine, event.payload)).await)
    }))
    .await
}
