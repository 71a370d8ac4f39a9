//! livechat-webhook: `POST /webhooks/livechat` on API Gateway. Wiring only; the handler is
//! `shared::ingest::livechat_router`.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    let services = shared::app::lambda::services().await?;
    lambda_http::run(shared::ingest::livechat_router(services.livechat_ingest())).await
}
