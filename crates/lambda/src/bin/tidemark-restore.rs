//! The restore function: restore steps and tasks from the restore queue (partial batch
//! responses), and restore requests from a console test event; what each task restored goes to
//! stdout as CloudWatch EMF (`tidemark_lambda::metrics`).

use lambda_runtime::{run, service_fn, Error, LambdaEvent};
use tidemark_lambda::metrics::Emf;
use tidemark_lambda::{in_invocation, init_logging, restore_handler, LambdaConfig};

#[tokio::main]
async fn main() -> Result<(), Error> {
    init_logging();
    let config = LambdaConfig::from_env()?;
    let (engine, targets) = config.engine_and_targets().await;
    let metrics = Emf::stdout();
    let (engine, targets, metrics) = (&engine, targets.as_ref(), &metrics);
    run(service_fn(move |event: LambdaEvent<serde_json::Value>| async move {
        Ok::<_, Error>(
            in_invocation(
                "restore",
                &event.context.request_id,
                restore_handler(engine, targets, metrics, event.payload, &event.context.request_id),
            )
            .await?,
        )
    }))
    .await
}
