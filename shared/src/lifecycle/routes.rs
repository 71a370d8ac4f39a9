//! The uninstall function's routes: LiveChat's app webhook, Meta's deauthorize and data-deletion
//! callbacks, and the deletion status page.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Form, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};

use super::Lifecycle;
use super::signed_request;
use crate::domain::DeletionStatus;

/// What the uninstall routes need.
pub struct UninstallState {
    /// The lifecycle service.
    pub lifecycle: Lifecycle,
    /// The shared secret in the App Webhooks URL.
    pub app_webhook_token: crate::config::RotatingSecret,
    /// Our LiveChat client id (app webhooks must name it).
    pub livechat_client_id: String,
    /// Verifies `signed_request`.
    pub meta_app_secret: SecretString,
    /// For the status URL.
    pub public_base_url: String,
}

/// `POST /webhooks/livechat/app`, `POST /meta/deauthorize`, `POST /meta/data-deletion`,
/// `GET /meta/data-deletion/{code}`.
pub fn uninstall_router(state: Arc<UninstallState>) -> Router {
    Router::new()
        .route(crate::routes::LIVECHAT_APP_WEBHOOK, post(app_webhook))
        .route(crate::routes::META_DEAUTHORIZE, post(deauthorize))
        .route(crate::routes::META_DATA_DELETION, post(data_deletion))
        .route(crate::routes::META_DELETION_STATUS, get(deletion_status))
        .with_state(state)
}

fn plain(status: StatusCode, body: &'static str) -> Response {
    crate::html::plain(status, body)
}

async fn app_webhook(
    State(state): State<Arc<UninstallState>>,
    Query(q): Query<HashMap<String, String>>,
    body: axum::body::Bytes,
) -> Response {
    let token_ok = q
        .get("token")
        .is_some_and(|t| state.app_webhook_token.matches(t));
    if !token_ok {
        tracing::warn!("app webhook without the right token refused");
        return plain(StatusCode::UNAUTHORIZED, "invalid token");
    }
    let Ok(body) = serde_json::from_slice::<Value>(&body) else {
        return plain(StatusCode::BAD_REQUEST, "not JSON");
    };
    if body.get("clientID").and_then(Value::as_str) != Some(state.livechat_client_id.as_str()) {
        tracing::warn!("app webhook for another client refused");
        return plain(StatusCode::FORBIDDEN, "not this app");
    }
    let event = body
        .get("event")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let org = body
        .get("organizationID")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if event != "application_uninstalled" {
        tracing::info!(event, "app webhook acknowledged");
        return plain(StatusCode::OK, "ok");
    }
    if org.is_empty() {
        return plain(StatusCode::BAD_REQUEST, "no organizationID");
    }
    // LiveChat's `date` (RFC 3339 with offset); an unreadable one is not trusted to skip.
    let sent_at = body
        .get("date")
        .and_then(Value::as_str)
        .and_then(|d| chrono::DateTime::parse_from_rfc3339(d).ok())
        .map(|d| d.with_timezone(&chrono::Utc));
    match state.lifecycle.uninstall(org, sent_at).await {
        Ok(report) => {
            tracing::info!(organization_id = %org, uninstalled = report.uninstalled, revoked = report.revoked, deferred = report.deferred, items = report.items, "uninstall handled");
            plain(StatusCode::OK, "ok")
        }
        Err(e) => {
            tracing::error!(error = %e, "uninstall failed; LiveChat will retry");
            plain(StatusCode::SERVICE_UNAVAILABLE, "try again later")
        }
    }
}

fn verify(
    state: &UninstallState,
    form: &HashMap<String, String>,
) -> Result<String, (StatusCode, &'static str)> {
    let Some(sr) = form.get("signed_request") else {
        return Err((StatusCode::BAD_REQUEST, "missing signed_request"));
    };
    match signed_request::parse(state.meta_app_secret.expose_secret().as_bytes(), sr) {
        Ok(r) => {
            // A captured request must not work forever: Meta sends it at once.
            let now = state.lifecycle.deps.clock.now().timestamp();
            match r.issued_at {
                Some(at) if (now - at).abs() <= signed_request::MAX_AGE_SECS => Ok(r.user_id),
                _ => {
                    tracing::warn!("signed_request too old (or undated) refused");
                    Err((StatusCode::BAD_REQUEST, "signed_request expired"))
                }
            }
        }
        Err(signed_request::SignedRequestError::BadSignature) => {
            tracing::warn!("signed_request with a wrong signature refused");
            Err((StatusCode::FORBIDDEN, "invalid signature"))
        }
        Err(e) => {
            tracing::warn!(error = %e, "signed_request refused");
            Err((StatusCode::BAD_REQUEST, "invalid signed_request"))
        }
    }
}

async fn deauthorize(
    State(state): State<Arc<UninstallState>>,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let user = match verify(&state, &form) {
        Ok(u) => u,
        Err((status, why)) => return plain(status, why),
    };
    match state.lifecycle.disconnect_facebook_user(&user, None).await {
        Ok(n) => {
            tracing::info!(connections = n, "Meta deauthorize handled");
            plain(StatusCode::OK, "ok")
        }
        Err(e) => {
            tracing::error!(error = %e, "deauthorize failed");
            plain(StatusCode::SERVICE_UNAVAILABLE, "try again later")
        }
    }
}

async fn data_deletion(
    State(state): State<Arc<UninstallState>>,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let user = match verify(&state, &form) {
        Ok(u) => u,
        Err((status, why)) => return plain(status, why),
    };
    match state.lifecycle.request_deletion(&user).await {
        Ok(code) => Json(Lifecycle::deletion_answer(&state.public_base_url, &code)).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "data deletion request failed");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({"error": "try again later"})),
            )
                .into_response()
        }
    }
}

fn page(status: StatusCode, title: &str, body: &str) -> Response {
    crate::html::page(status, title, &format!("<p>{}</p>", crate::html::esc(body)))
}

async fn deletion_status(
    State(state): State<Arc<UninstallState>>,
    Path(code): Path<String>,
) -> Response {
    if code.is_empty() || code.len() > 64 || !code.chars().all(|c| c.is_ascii_alphanumeric()) {
        return page(
            StatusCode::NOT_FOUND,
            "Unknown request",
            "There is no data deletion request with this code.",
        );
    }
    match state.lifecycle.deletion_status(&code).await {
        Ok(Some(DeletionStatus::Pending)) => page(
            StatusCode::OK,
            "Deletion pending",
            &format!(
                "Request {code} is being processed. All data will be deleted within 7 days of the request."
            ),
        ),
        Ok(Some(DeletionStatus::Completed)) => page(
            StatusCode::OK,
            "Deletion completed",
            &format!("Request {code} is complete: the data has been deleted."),
        ),
        Ok(None) => page(
            StatusCode::NOT_FOUND,
            "Unknown request",
            "There is no data deletion request with this code.",
        ),
        Err(_) => page(
            StatusCode::SERVICE_UNAVAILABLE,
            "Try again later",
            "The status cannot be read right now.",
        ),
    }
}
