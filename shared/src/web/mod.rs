//! The HTTP edge: every axum route of the four HTTP functions, one file per function, each with
//! its own error type answering as `IntoResponse`; typed forms and queries read each request.
//! The domain modules (`ingest`, `install`, `lifecycle`) take and return domain types. The same
//! routers serve Lambda (`api_gateway::run`) and the local server (`igbridge serve`).

pub mod api_gateway;
pub mod html;
pub mod instagram_webhook;
pub mod install_pages;
pub mod livechat_webhook;
pub mod oauth_install;
pub mod status_page;
pub mod uninstall;

use crate::app::Services;
use crate::routes::HttpFunction;

/// The router of one HTTP function: what `igbridge serve` merges. Each Lambda builds its own
/// instead (`functions/*/src/main.rs`), so its binary links only its own routes.
pub fn router(services: &Services, function: HttpFunction) -> axum::Router {
    match function {
        HttpFunction::OauthInstall => oauth_install::router(services.install()),
        HttpFunction::InstagramWebhook => instagram_webhook::router(services.instagram_ingest()),
        HttpFunction::LivechatWebhook => livechat_webhook::router(services.livechat_ingest()),
        HttpFunction::Uninstall => uninstall::router(services.callbacks()),
    }
}
