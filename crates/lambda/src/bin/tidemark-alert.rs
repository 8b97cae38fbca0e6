//! The alert function: run on a schedule, sweeps every dead-letter queue and publishes one alert per new dead-lettered message to the SNS topic.

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
    let (engine, notifier, topic, dlqs) = (&engine, &notifier, topic.as_str(), config.dead_letter_queue_urls.as_slice());
    // The scheduled event says nothing the sweep needs.
    run(service_fn(move |event: LambdaEvent<serde_json::Value>| async move {
        Ok::<_, Error>(in_invocation("alert", &event.context.request_id, alert_handler(engine, notifier, topic, dlqs)).await?)
    }))
    .await
}
