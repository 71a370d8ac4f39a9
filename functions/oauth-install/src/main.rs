//! oauth-install: `/install` and `/oauth/*` on API Gateway. Wiring only; the flow is
//! `shared::install`.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    let services = shared::app::lambda::services().await?;
    lambda_http::run(shared::install::install_router(services.install())).await
}
