//! instagram-webhook: `GET`/`POST /webhooks/instagram` on API Gateway. Wiring only; the routes are
//! `shared::routes::ROUTES`, the router `shared::web::instagram_webhook::router`.

use shared::function::Function;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    let services = shared::app::lambda::services(Function::InstagramWebhook).await?;
    shared::web::api_gateway::run(shared::web::instagram_webhook::router(
        services.instagram_ingest(),
    ))
    .await
}
