//! livechat-webhook: the `/webhooks/livechat` route on API Gateway. Wiring only; the handler is
//! `shared::ingest::livechat_router`.

use lambda_http::Error;
use shared::app::Services;
use shared::config::{AwsResources, Config, Settings};

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::logging::init();
    let sdk = shared::aws::sdk_config().await;
    let config = Config::load(&sdk).await?;
    let resources = AwsResources::from_settings(&Settings::from_env())?;
    let services = Services::aws(&sdk, config, &resources);
    lambda_http::run(shared::ingest::livechat_router(services.livechat_ingest())).await
}
