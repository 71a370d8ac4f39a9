//! connection-health: the hourly health check (schedule), and the replay of an organization's
//! parked jobs when the lifecycle bus says it was repaired or an admin asked for it. Wiring only;
//! the logic is `shared::health::check::HealthCheck`.

use lambda_runtime::{Error, LambdaEvent, service_fn};
use serde_json::Value;
use shared::health::check::HealthInput;

#[tokio::main]
async fn main() -> Result<(), Error> {
    let services =
        shared::app::lambda::services(shared::function::Function::ConnectionHealth).await?;
    let health = services.health();
    let (services, health) = (&services, &health);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        let input = HealthInput::from_event(&event.payload);
        let deadline = shared::worker::start_by(event.context.deadline, services.clock.now());
        let report = health.handle(&input, deadline).await?;
        Ok::<_, Error>(serde_json::to_value(report)?)
    }))
    .await
}
