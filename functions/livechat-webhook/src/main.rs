//! livechat-webhook: `POST /webhooks/livechat` on API Gateway. Wiring only; the routes are
//! `shared::routes::ROUTES`, the router `shared::app::Services::livechat_webhook_router`.

use shared::function::Function;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    let services = shared::app::lambda::services(Function::LivechatWebhook).await?;
    shared::api_gateway::run(services.livechat_webhook_router()).await
}
