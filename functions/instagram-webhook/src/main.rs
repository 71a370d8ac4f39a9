//! instagram-webhook: `GET`/`POST /webhooks/instagram` on API Gateway. Wiring only; the handler is
//! `shared::ingest::instagram_router`.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    let services = shared::app::lambda::services().await?;
    lambda_http::run(shared::ingest::instagram_router(
        services.instagram_ingest(),
    ))
    .await
}
