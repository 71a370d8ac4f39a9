//! oauth-install: `/install` and `/oauth/*` on API Gateway. Wiring only; the routes are
//! `shared::routes::ROUTES`, the router `shared::app::Services::oauth_install_router`.

use shared::function::Function;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    let services = shared::app::lambda::services(Function::OauthInstall).await?;
    shared::api_gateway::run(services.oauth_install_router()).await
}
