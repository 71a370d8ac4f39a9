//! livechat-webhook: `POST /webhooks/livechat` on API Gateway. Wiring only; the routes are
//! `shared::routes::ROUTES`, the router `shared::app::Services::router`.

use shared::routes::HttpFunction;

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    let services = shared::app::lambda::services("livechat-webhook").await?;
    lambda_http::run(services.router(HttpFunction::LivechatWebhook)).await
}
