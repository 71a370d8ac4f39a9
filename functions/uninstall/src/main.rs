//! uninstall: LiveChat's app webhook and Meta's deauthorize and data-deletion callbacks on API Gateway. Wiring only; the routes are
//! `shared::routes::ROUTES`, the router `shared::app::Services::uninstall_router`.

use shared::function::Function;

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    let services = shared::app::lambda::services(Function::Uninstall).await?;
    lambda_http::run(services.uninstall_router()).await
}
