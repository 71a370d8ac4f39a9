//! instagram-webhook: `GET`/`POST /webhooks/instagram` on API Gateway. Wiring only; the routes are
//! `shared::routes::ROUTES`, the router `shared::app::Services::instagram_webhook_router`.

use shared::function::Function;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    let services = shared::app::lambda::services(Function::InstagramWebhook).await?;
    shared::api_gateway::run(services.instagram_webhook_router()).await
}
