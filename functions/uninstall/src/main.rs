//! uninstall: LiveChat's app webhook and Meta's deauthorize and data-deletion callbacks on API Gateway. Wiring only; the routes are
//! `shared::routes::ROUTES`, the router `shared::app::Services::router`.

use shared::routes::HttpFunction;

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    let services = shared::app::lambda::services("uninstall").await?;
    lambda_http::run(services.router(HttpFunction::Uninstall)).await
}
