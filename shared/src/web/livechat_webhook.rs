//! `functions/livechat-webhook`'s route: LiveChat's chat webhooks (`POST /webhooks/livechat`),
//! authenticated by the `secret_key` in the body and queued by `crate::ingest` before LiveChat
//! gets its 200.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;

use super::html::plain;
use crate::ingest::{IngestError, LivechatIngest, MAX_BODY_BYTES, ingest_livechat};
use crate::livechat::webhook::{AuthError, authenticate};
use crate::routes;

/// The function's router.
pub fn router(state: Arc<LivechatIngest>) -> Router {
    Router::new()
        .route(routes::LIVECHAT_WEBHOOK, post(events))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

/// Why a chat webhook was not acknowledged.
#[derive(Debug, thiserror::Error)]
pub enum LivechatWebhookError {
    /// No `secret_key`, or not ours.
    #[error("refused: {reason} ({bytes} bytes)")]
    Unauthenticated {
        /// Why.
        reason: AuthError,
        /// The body's size (logged; the body never is).
        bytes: usize,
    },
    /// An authentic body not queued: LiveChat retries it.
    #[error("not queued: {0}")]
    NotQueued(#[from] IngestError),
}

impl IntoResponse for LivechatWebhookError {
    fn into_response(self) -> Response {
        match self {
            Self::Unauthenticated { reason, bytes } => {
                tracing::warn!(%reason, bytes, "livechat webhook refused");
                plain(StatusCode::UNAUTHORIZED, "invalid secret_key")
            }
            Self::NotQueued(reason) => {
                tracing::error!(%reason, "livechat webhook not queued; LiveChat will retry");
                plain(StatusCode::SERVICE_UNAVAILABLE, "try again later")
            }
        }
    }
}

async fn events(
    State(state): State<Arc<LivechatIngest>>,
    body: Bytes,
) -> Result<Response, LivechatWebhookError> {
    let value = authenticate(&state.webhook_secret, &body).map_err(|reason| {
        let bytes = body.len();
        LivechatWebhookError::Unauthenticated { reason, bytes }
    })?;
    let what = ingest_livechat(&state, value, &body).await?;
    tracing::info!(result = what, "livechat webhook accepted");
    Ok(plain(StatusCode::OK, "ok"))
}
