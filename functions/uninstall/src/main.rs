//! uninstall: LiveChat's app webhook and Meta's deauthorize and data-deletion callbacks on API Gateway. Wiring only; the routes are
//! `shared::routes::ROUTES`, the router `shared::web::uninstall::router`.

use shared::function::Function;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    let services = shared::app::lambda::services(Function::Uninstall).await?;
    shared::web::api_gateway::run(shared::web::uninstall::router(services.callbacks())).await
}
