//! The scrub function: run on a schedule, verifies the vault a step at a time and prints `VerifyDamaged` as EMF.

use lambda_runtime::{run, service_fn, Error, LambdaEvent};
use tidemark_lambda::{in_invocation, init_logging, scrub_handler, verify_damaged_emf, LambdaConfig, ScrubRequest};

#[tokio::main]
async fn main() -> Result<(), Error> {
    init_logging();
    let config = LambdaConfig::from_env()?;
    let engine = config.engine().await;
    let (engine, sample, budget) = (&engine, config.verify_sample, std::time::Duration::from_secs(config.verify_step_seconds));
    run(service_fn(move |event: LambdaEvent<ScrubRequest>| async move {
        let result = in_invocation("scrub", &event.context.request_id, scrub_handler(engine, event.payload, sample, budget)).await?;
        tidemark_lambda::metrics::emit(&verify_damaged_emf(&result, chrono::Utc::now()));
        Ok::<_, Error>(result)
    }))
    .await
}
