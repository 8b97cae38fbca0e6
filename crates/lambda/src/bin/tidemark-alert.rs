//! The alert function: the event source of every dead-letter queue; publishes one alert per dead-lettered message to the SNS topic.

use aws_lambda_events::event::sqs::SqsEvent;
use lambda_runtime::{run, service_fn, Error, LambdaEvent};
use tidemark_aws::{AwsClients, ClientOptions, SnsNotifier};
use tidemark_lambda::{alert_handler, in_invocation, init_logging, LambdaConfig, LambdaError};

#[tokio::main]
async fn main() -> Result<(), Error> {
    init_logging();
    let config = LambdaConfig::from_env()?;
    let topic = config.alert_topic_arn.clone().ok_or_else(|| LambdaError::Config("TIDEMARK_ALERT_TOPIC_ARN is not set".into()))?;
    let engine = config.engine().await;
    let notifier = SnsNotifier::new(AwsClients::load(&ClientOptions::default()).await.sns);
    let (engine, notifier, topic) = (&engine, &notifier, topic.as_str());
    run(service_fn(move |event: LambdaEvent<SqsEvent>| async move {
        Ok::<_, Error>(in_invocation("alert", &event.context.request_id, alert_handler(engine, notifier, topic, event.payload)).await)
    }))
    .await
}
