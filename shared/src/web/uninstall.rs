//! `functions/uninstall`'s routes: LiveChat's app webhook (`POST /webhooks/livechat/app`),
//! Meta's deauthorize and data-deletion callbacks (`POST /meta/deauthorize`,
//! `POST /meta/data-deletion`) and the deletion status page (`GET /meta/data-deletion/{code}`),
//! carried out by `crate::lifecycle::callbacks`.

use std::sync::Arc;

use axum::extract::{Form, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;

use super::html::{esc, page, plain};
use crate::domain::DeletionStatus;
use crate::lifecycle::callbacks::{AppWebhookDone, CallbackError, Callbacks};
use crate::routes;

/// The function's router.
pub fn router(state: Arc<Callbacks>) -> Router {
    Router::new()
        .route(routes::LIVECHAT_APP_WEBHOOK, post(app_webhook))
        .route(routes::META_DEAUTHORIZE, post(deauthorize))
        .route(routes::META_DATA_DELETION, post(data_deletion))
        .route(routes::META_DELETION_STATUS, get(deletion_status))
        .with_state(state)
}

impl IntoResponse for CallbackError {
    fn into_response(self) -> Response {
        let (status, body) = match &self {
            CallbackError::WrongToken => (StatusCode::UNAUTHORIZED, "invalid token"),
            CallbackError::NotJson => (StatusCode::BAD_REQUEST, "not JSON"),
            CallbackError::OtherClient => (StatusCode::FORBIDDEN, "not this app"),
            CallbackError::NoOrganization => (StatusCode::BAD_REQUEST, "no organizationID"),
            CallbackError::NoSignedRequest => (StatusCode::BAD_REQUEST, "missing signed_request"),
            CallbackError::BadSignature => (StatusCode::FORBIDDEN, "invalid signature"),
            CallbackError::Expired => (StatusCode::BAD_REQUEST, "signed_request expired"),
            CallbackError::Invalid(_) => (StatusCode::BAD_REQUEST, "invalid signed_request"),
            CallbackError::Store(_) => (StatusCode::SERVICE_UNAVAILABLE, "try again later"),
        };
        if status.is_server_error() {
            tracing::error!(error = %self, "lifecycle callback failed; the platform will retry");
        } else {
            tracing::warn!(error = %self, "lifecycle callback refused");
        }
        plain(status, body)
    }
}

/// `?token=`: the shared secret of the App Webhooks URL.
#[derive(Deserialize)]
struct AppWebhookQuery {
    token: Option<String>,
}

/// Meta's callbacks post `signed_request` as a form field.
#[derive(Deserialize)]
struct SignedForm {
    signed_request: Option<String>,
}

async fn app_webhook(
    State(state): State<Arc<Callbacks>>,
    Query(q): Query<AppWebhookQuery>,
    body: axum::body::Bytes,
) -> Result<Response, CallbackError> {
    if !state.app_webhook_token_ok(q.token.as_deref()) {
        return Err(CallbackError::WrongToken);
    }
    if let AppWebhookDone::Acknowledged(event) = state.app_webhook(&body).await? {
        tracing::info!(event, "app webhook acknowledged");
    }
    Ok(plain(StatusCode::OK, "ok"))
}

async fn deauthorize(
    State(state): State<Arc<Callbacks>>,
    Form(form): Form<SignedForm>,
) -> Result<Response, CallbackError> {
    let n = state.deauthorize(form.signed_request.as_deref()).await?;
    tracing::info!(connections = n, "Meta deauthorize handled");
    Ok(plain(StatusCode::OK, "ok"))
}

async fn data_deletion(
    State(state): State<Arc<Callbacks>>,
    Form(form): Form<SignedForm>,
) -> Response {
    match state.data_deletion(form.signed_request.as_deref()).await {
        Ok(answer) => Json(answer).into_response(),
        // Meta reads JSON from this callback, its failures included.
        Err(CallbackError::Store(e)) => {
            tracing::error!(error = %e, "data deletion request failed");
            let body = serde_json::json!({"error": "try again later"});
            (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response()
        }
        Err(refused) => refused.into_response(),
    }
}

fn status_page(status: StatusCode, title: &str, body: &str) -> Response {
    page(status, title, &format!("<p>{}</p>", esc(body)))
}

async fn deletion_status(
    State(state): State<Arc<Callbacks>>,
    Path(code): Path<String>,
) -> Response {
    match state.deletion_status(&code).await {
        Ok(Some(DeletionStatus::Pending)) => status_page(
            StatusCode::OK,
            "Deletion pending",
            &format!(
                "Request {code} is being processed. All data will be deleted within 7 days of the request."
            ),
        ),
        Ok(Some(DeletionStatus::Completed)) => status_page(
            StatusCode::OK,
            "Deletion completed",
            &format!("Request {code} is complete: the data has been deleted."),
        ),
        Ok(None) => status_page(
            StatusCode::NOT_FOUND,
            "Unknown request",
            "There is no data deletion request with this code.",
        ),
        Err(_) => status_page(
            StatusCode::SERVICE_UNAVAILABLE,
            "Try again later",
            "The status cannot be read right now.",
        ),
    }
}
