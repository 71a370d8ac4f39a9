//! livechat-webhook: `POST /webhooks/livechat` on API Gateway. Wiring only; the routes are
//! `shared::routes::ROUTES`, the router `shared::web::livechat_webhook::router`.

use shared::function::Function;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    let services = shared::app::lambda::services(Function::LivechatWebhook).await?;
    shared::web::api_gateway::run(shared::web::livechat_webhook::router(
        services.livechat_ingest(),
    ))
    .await
}
