//! instagram-to-livechat: consumes the to-livechat FIFO queue and reports partial batch
//! failures. Wiring only; the worker is `shared::relay::inbound::Inbound`.

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use lambda_runtime::{Error, LambdaEvent, service_fn};
use shared::app::Services;
use shared::config::{AwsResources, Config, Settings};
use shared::worker::handle_sqs_event;

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::logging::init();
    let sdk = shared::aws::sdk_config().await;
    let config = Config::load(&sdk).await?;
    let resources = AwsResources::from_settings(&Settings::from_env())?;
    let services = Services::aws(&sdk, config, &resources);
    let inbound = services.inbound();
    let (services, inbound) = (&services, &inbound);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<SqsEvent>| async move {
        let response: SqsBatchResponse = handle_sqs_event(
            inbound,
            services.to_livechat.as_ref(),
            services.to_livechat_dlq.as_ref(),
            services.clock.now(),
            event.payload,
        )
        .await;
        Ok::<_, Error>(response)
    }))
    .await
}
