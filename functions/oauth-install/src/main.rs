//! oauth-install: `/install` and `/oauth/*` on API Gateway. Wiring only; the routes are
//! `shared::routes::ROUTES`, the router `shared::app::Services::oauth_install_router`.

use shared::function::Function;

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    let services = shared::app::lambda::services(Function::OauthInstall).await?;
    lambda_http::run(services.oauth_install_router()).await
}
