//! `functions/instagram-webhook`'s routes: Meta's subscription handshake (`GET`) and its signed
//! event bodies (`POST /webhooks/instagram`), queued by `crate::ingest` before Meta gets its 200.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;

use super::html::plain;
use crate::ingest::{IngestError, InstagramIngest, MAX_BODY_BYTES, ingest_instagram};
use crate::routes;

/// The function's router.
pub fn router(state: Arc<InstagramIngest>) -> Router {
    Router::new()
        .route(routes::INSTAGRAM_WEBHOOK, get(handshake).post(events))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

/// Why a request to the Instagram webhook was not acknowledged.
#[derive(Debug, thiserror::Error)]
pub enum InstagramWebhookError {
    /// A handshake with the wrong mode or verify token, or no challenge.
    #[error("handshake refused")]
    HandshakeRefused,
    /// A body without Meta's signature over it.
    #[error("missing or wrong signature over {bytes} bytes")]
    BadSignature {
        /// The body's size (logged; the body never is).
        bytes: usize,
    },
    /// An authentic body not queued: Meta retries it.
    #[error("not queued: {0}")]
    NotQueued(#[from] IngestError),
}

impl IntoResponse for InstagramWebhookError {
    fn into_response(self) -> Response {
        match self {
            Self::HandshakeRefused => {
                tracing::warn!("instagram webhook handshake refused");
                plain(StatusCode::FORBIDDEN, "forbidden")
            }
            Self::BadSignature { bytes } => {
                tracing::warn!(
                    bytes,
                    "instagram webhook with a missing or wrong signature refused"
                );
                plain(StatusCode::UNAUTHORIZED, "invalid signature")
            }
            Self::NotQueued(reason) => {
                tracing::error!(%reason, "instagram webhook not queued; Meta will retry");
                plain(StatusCode::SERVICE_UNAVAILABLE, "try again later")
            }
        }
    }
}

/// Meta's handshake query (`hub.mode=subscribe&hub.verify_token=…&hub.challenge=…`).
#[derive(Deserialize)]
struct Handshake {
    #[serde(rename = "hub.mode")]
    mode: Option<String>,
    #[serde(rename = "hub.verify_token")]
    verify_token: Option<String>,
    #[serde(rename = "hub.challenge")]
    challenge: Option<String>,
}

async fn handshake(
    State(state): State<Arc<InstagramIngest>>,
    Query(q): Query<Handshake>,
) -> Result<Response, InstagramWebhookError> {
    let challenge = state
        .handshake(
            q.mode.as_deref(),
            q.verify_token.as_deref(),
            q.challenge.as_deref(),
        )
        .ok_or(InstagramWebhookError::HandshakeRefused)?;
    Ok(plain(StatusCode::OK, challenge.to_string()))
}

async fn events(
    State(state): State<Arc<InstagramIngest>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, InstagramWebhookError> {
    let signature = headers
        .get("x-hub-signature-256")
        .and_then(|v| v.to_str().ok());
    if !state.authentic(signature, &body) {
        let bytes = body.len();
        return Err(InstagramWebhookError::BadSignature { bytes });
    }
    let report = ingest_instagram(&state, &body).await?;
    tracing::info!(
        queued = report.queued,
        unrouted = report.unrouted,
        parked = report.parked,
        "instagram webhook accepted"
    );
    Ok(plain(StatusCode::OK, "EVENT_RECEIVED"))
}
