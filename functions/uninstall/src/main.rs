//! uninstall: LiveChat's app webhook and Meta's deauthorize and data-deletion callbacks. Wiring
//! only; the handlers are `shared::lifecycle::routes`.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    let services = shared::app::lambda::services().await?;
    lambda_http::run(shared::lifecycle::routes::uninstall_router(
        services.uninstall_state(),
    ))
    .await
}
