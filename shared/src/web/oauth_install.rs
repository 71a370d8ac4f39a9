//! `functions/oauth-install`'s routes: the install flow (`/install`, both platform callbacks —
//! GET: the platform's redirect; POST: the same, posted back by the tab with its secret — and
//! the confirmation) and the status page. The steps themselves are `crate::install::Install`'s;
//! here each request is read into a typed form and each `StepError` answered with its page.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Form, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;

use super::install_pages::{self as pages, Start};
use super::status_page;
use crate::domain::OAuthStep;
use crate::install::{Install, Posted, StepError};
use crate::routes;

/// The oauth-install function's router.
pub fn router(install: Arc<Install>) -> Router {
    Router::new()
        .route(routes::INSTALL, get(start))
        .route(
            routes::LIVECHAT_CALLBACK,
            get(livechat_return).post(livechat_callback),
        )
        .route(
            routes::FACEBOOK_CALLBACK,
            get(facebook_return).post(facebook_callback),
        )
        .route(routes::FACEBOOK_SELECT, post(confirm))
        .route(
            routes::STATUS,
            get(status_page::start).post(status_page::act),
        )
        .route(routes::STATUS_WIDGET, get(status_page::widget))
        .with_state(install)
}

/// A platform's redirect: `?code=&state=` (no code: the person cancelled).
#[derive(Deserialize)]
struct Redirected {
    code: Option<String>,
    state: Option<String>,
}

/// A posted step: the sealed state, the tab's secret, and the platform's code. Missing fields
/// read as empty, which no state or code matches.
#[derive(Deserialize)]
struct CodePost {
    #[serde(default)]
    state: String,
    #[serde(default)]
    browser: String,
    #[serde(default)]
    code: String,
}

impl CodePost {
    fn posted(&self) -> Posted<'_> {
        Posted {
            state: &self.state,
            browser: &self.browser,
        }
    }
}

/// The confirmation: the state, the tab's secret and the chosen Page.
#[derive(Deserialize)]
struct ConfirmPost {
    #[serde(default)]
    state: String,
    #[serde(default)]
    browser: String,
    #[serde(default)]
    page_id: String,
}

impl ConfirmPost {
    fn posted(&self) -> Posted<'_> {
        Posted {
            state: &self.state,
            browser: &self.browser,
        }
    }
}

/// `GET /install`: the page that creates the tab's flow secret; with `?b=<its hash>`, on to
/// LiveChat with a state bound to the tab.
async fn start(State(app): State<Arc<Install>>, Query(q): Query<Start>) -> Response {
    pages::to_livechat(&app, q, OAuthStep::Livechat, pages::begin)
}

/// `GET /oauth/livechat/callback`: LiveChat's redirect. With our state it is posted back with
/// the tab's secret; without (an install started in the Marketplace) this tab starts its own
/// bound flow, whose LiveChat authorization is immediate for a signed-in administrator.
async fn livechat_return(Query(q): Query<Redirected>) -> Result<Response, StepError> {
    let code = q.code.ok_or(StepError::Cancelled("LiveChat"))?;
    Ok(match q.state {
        Some(state) => pages::post_back(
            routes::LIVECHAT_CALLBACK,
            &[("code", &code), ("state", &state)],
        ),
        None => pages::begin(),
    })
}

/// `POST /oauth/livechat/callback`: the code, from the browser that started the flow — the
/// install's LiveChat step, or the status page's sign-in.
async fn livechat_callback(
    State(app): State<Arc<Install>>,
    Form(form): Form<CodePost>,
) -> Result<Response, StepError> {
    if let Some(sign_in) = app.status_sign_in(&form.state) {
        let session = app.sign_in(sign_in, &form.browser, &form.code).await?;
        return status_page::show(&app, &session, None).await;
    }
    let facebook = app.install_livechat(form.posted(), &form.code).await?;
    Ok(pages::go_on(
        "LiveChat is authorized",
        &facebook,
        "Continue with Facebook",
    ))
}

/// `GET /oauth/facebook/callback`: Facebook's redirect, posted back with the tab's secret.
async fn facebook_return(Query(q): Query<Redirected>) -> Result<Response, StepError> {
    let code = q.code.ok_or(StepError::Cancelled("Facebook"))?;
    let state = q.state.ok_or(StepError::BadState)?;
    Ok(pages::post_back(
        routes::FACEBOOK_CALLBACK,
        &[("code", &code), ("state", &state)],
    ))
}

/// `POST /oauth/facebook/callback`: the code, from the browser that started the flow → the
/// confirmation page (nothing is stored yet).
async fn facebook_callback(
    State(app): State<Arc<Install>>,
    Form(form): Form<CodePost>,
) -> Result<Response, StepError> {
    let offer = app.offer(form.posted(), &form.code).await?;
    if offer.pages.is_empty() {
        return Ok(pages::no_pages(&offer.not_eligible));
    }
    Ok(pages::confirm(&offer))
}

/// `POST /oauth/facebook/select`: the person confirmed the organization and the Page.
async fn confirm(
    State(app): State<Arc<Install>>,
    Form(form): Form<ConfirmPost>,
) -> Result<Response, StepError> {
    let done = app
        .confirm(form.posted(), &form.page_id.as_str().into())
        .await?;
    Ok(pages::success(done.ig_username.as_deref(), &done.page_name))
}

impl IntoResponse for StepError {
    fn into_response(self) -> Response {
        match &self {
            StepError::Store(_) | StepError::Misconfigured(_) => {
                tracing::error!(error = %self, "install or status step failed");
            }
            _ => tracing::warn!(error = %self, "install or status step refused"),
        }
        match self {
            StepError::BadState => pages::error(
                StatusCode::BAD_REQUEST,
                "This link has expired",
                "The installation link is invalid, expired or was already used. Nothing was changed.",
            ),
            StepError::OtherBrowser => pages::other_browser(),
            StepError::Cancelled(at) => pages::error(
                StatusCode::BAD_REQUEST,
                "Installation cancelled",
                &format!("{at} did not authorize igbridge, so nothing was connected."),
            ),
            StepError::Platform { what, .. } => pages::error(
                StatusCode::BAD_GATEWAY,
                "The installation could not continue",
                &format!("{what}. Nothing was connected; please try again."),
            ),
            StepError::MissingScope(missing) => pages::error(
                StatusCode::FORBIDDEN,
                "Missing permission",
                &format!(
                    "igbridge needs the LiveChat permission {missing}, which only an owner or administrator can grant. Ask an administrator to install igbridge. Nothing was installed."
                ),
            ),
            StepError::SubscribeRefused(_) => pages::error(
                StatusCode::BAD_GATEWAY,
                "Could not subscribe the Page",
                "Facebook refused to subscribe igbridge to the Page's Instagram messages. Check that you have full control of the Page, then try again. Nothing was connected.",
            ),
            StepError::NoPageChosen => pages::error(
                StatusCode::BAD_REQUEST,
                "No Page chosen",
                "The chosen Page was not among those offered. Nothing was connected.",
            ),
            StepError::ConnectedElsewhere { ig_username } => {
                pages::already_connected(ig_username.as_deref())
            }
            StepError::UninstalledMeanwhile => pages::error(
                StatusCode::CONFLICT,
                "igbridge was uninstalled",
                "igbridge was uninstalled from this LiveChat organization while you confirmed, so nothing was connected and Facebook's access was given back. Install igbridge again to connect the account.",
            ),
            StepError::Store(_) | StepError::Misconfigured(_) => pages::error(
                StatusCode::SERVICE_UNAVAILABLE,
                "Something went wrong",
                "igbridge could not save the installation. Nothing was connected; please try again.",
            ),
            status @ (StepError::SignInRefused(_)
            | StepError::RoleUnknown(_)
            | StepError::NotAdmin
            | StepError::OrganizationUnknown
            | StepError::NotInstalled
            | StepError::ChangedMeanwhile
            | StepError::SignedOut
            | StepError::NoLongerInstalled) => status_page::refused(status),
        }
    }
}
