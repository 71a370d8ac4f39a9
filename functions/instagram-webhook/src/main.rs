//! instagram-webhook: `GET`/`POST /webhooks/instagram` on API Gateway. Wiring only; the routes are
//! `shared::routes::ROUTES`, the router `shared::app::Services::router`.

use shared::routes::HttpFunction;

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    let services = shared::app::lambda::services("instagram-webhook").await?;
    lambda_http::run(services.router(HttpFunction::InstagramWebhook)).await
}
