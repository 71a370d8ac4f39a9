//! oauth-install: `/install` and `/oauth/*` on API Gateway. Wiring only; the routes are
//! `shared::routes::ROUTES`, the router `shared::web::oauth_install::router`.

use shared::function::Function;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    let services = shared::app::lambda::services(Function::OauthInstall).await?;
    shared::web::api_gateway::run(shared::web::oauth_install::router(services.install())).await
}
