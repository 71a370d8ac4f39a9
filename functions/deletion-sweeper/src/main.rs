//! deletion-sweeper: runs one sweep per scheduled invocation. Wiring only; the sweep is
//! `shared::lifecycle::Lifecycle::sweep`.

use lambda_runtime::{Error, LambdaEvent, service_fn};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), Error> {
    let services =
        shared::app::lambda::services(shared::function::Function::DeletionSweeper).await?;
    let lifecycle = services.lifecycle();
    let (services, lifecycle) = (&services, &lifecycle);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        let input = shared::lifecycle::sweeper::SweepInput::from_event(
            &event.payload,
            services.clock.now(),
        )?;
        let report = lifecycle.sweep(input.now, input.dry_run).await?;
        Ok::<_, Error>(serde_json::to_value(report)?)
    }))
    .await
}
