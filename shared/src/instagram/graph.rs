//! The Graph API client (graph.facebook.com, Page tokens): profiles, media downloads, and the
//! error envelope every call shares. Tokens go in the `Authorization` header, never in URLs.

use bytes::Bytes;
use reqwest::StatusCode;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::Value;

use crate::http::{is_retryable_error, is_retryable_status};

/// Largest media the bridge fetches (LiveChat's upload limit).
pub const MAX_MEDIA_BYTES: usize = 10 * 1024 * 1024;

/// A Graph API failure.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum GraphError {
    /// Meta answered with an error envelope (or a bare status).
    #[error("graph error {status} code {code:?} subcode {subcode:?}: {message}")]
    Api {
        /// HTTP status.
        status: u16,
        /// `error.code`.
        code: Option<i64>,
        /// `error.error_subcode`.
        subcode: Option<i64>,
        /// `error.message` (Meta's text, never ours).
        message: String,
        /// `error.fbtrace_id`, for support requests.
        fbtrace_id: Option<String>,
    },
    /// The request did not complete.
    #[error("graph transport: {message}")]
    Transport {
        /// What failed.
        message: String,
        /// Whether retrying may help.
        retryable: bool,
    },
    /// A media file is larger than the bridge forwards.
    #[error("media of {0} bytes is too large")]
    TooLarge(usize),
}

/// Codes Meta uses for throttling.
const THROTTLE_CODES: &[i64] = &[1, 2, 4, 17, 32, 341, 368, 613, 80002, 80006];

impl GraphError {
    /// Throttling, temporary Meta faults and transport errors: retry later.
    pub fn is_transient(&self) -> bool {
        match self {
            GraphError::Api { status, code, .. } => {
                code.is_some_and(|c| THROTTLE_CODES.contains(&c))
                    || is_retryable_status(StatusCode::from_u16(*status).unwrap_or(StatusCode::OK))
            }
            GraphError::Transport { retryable, .. } => *retryable,
            GraphError::TooLarge(_) => false,
        }
    }

    /// The Page token is invalid or expired (code 190): the account must be reconnected.
    pub fn is_token_invalid(&self) -> bool {
        matches!(
            self,
            GraphError::Api {
                code: Some(190),
                ..
            }
        )
    }

    /// The message is outside the allowed messaging window.
    pub fn is_outside_window(&self) -> bool {
        matches!(self, GraphError::Api { code: Some(10), subcode: Some(s), .. } if [2534022, 2018278].contains(s))
            || matches!(
                self,
                GraphError::Api {
                    code: Some(1545041),
                    ..
                }
            )
    }
}

/// An Instagram user's public profile, as the Page may see it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct Profile {
    /// Display name (may be absent).
    pub name: Option<String>,
    /// Username (v14+).
    pub username: Option<String>,
    /// Avatar URL (expires within days).
    pub profile_pic: Option<String>,
}

/// Downloaded media.
#[derive(Debug, Clone)]
pub struct Media {
    /// The bytes.
    pub bytes: Bytes,
    /// Content type from the CDN.
    pub content_type: String,
}

/// The Graph API client.
#[derive(Debug, Clone)]
pub struct GraphClient {
    http: reqwest::Client,
    base: String,
    version: String,
}

fn transport(e: reqwest::Error) -> GraphError {
    GraphError::Transport {
        retryable: is_retryable_error(&e),
        message: e.without_url().to_string(),
    }
}

/// Turns a Graph response into JSON or a [`GraphError`].
pub async fn parse_response(res: reqwest::Response) -> Result<Value, GraphError> {
    let status = res.status();
    let body: Value = res.json().await.unwrap_or(Value::Null);
    if status.is_success() && body.get("error").is_none() {
        return Ok(body);
    }
    let e = body.get("error").cloned().unwrap_or(Value::Null);
    Err(GraphError::Api {
        status: status.as_u16(),
        code: e.get("code").and_then(Value::as_i64),
        subcode: e.get("error_subcode").and_then(Value::as_i64),
        message: e
            .get("message")
            .and_then(Value::as_str)
            .unwrap_or(status.canonical_reason().unwrap_or("error"))
            .to_string(),
        fbtrace_id: e
            .get("fbtrace_id")
            .and_then(Value::as_str)
            .map(str::to_string),
    })
}

impl GraphClient {
    /// A client for `base` (e.g. `https://graph.facebook.com`) and `version` (e.g. `v25.0`).
    pub fn new(http: reqwest::Client, base: &str, version: &str) -> Self {
        Self {
            http,
            base: base.trim_end_matches('/').to_string(),
            version: version.to_string(),
        }
    }

    /// The URL of a Graph path, e.g. `"{page-id}/messages"`.
    pub fn url(&self, path: &str) -> String {
        format!(
            "{}/{}/{}",
            self.base,
            self.version,
            path.trim_start_matches('/')
        )
    }

    /// `GET /{igsid}?fields=name,username,profile_pic`.
    pub async fn profile(
        &self,
        igsid: &str,
        page_token: &SecretString,
    ) -> Result<Profile, GraphError> {
        let res = self
            .http
            .get(self.url(igsid))
            .query(&[("fields", "name,username,profile_pic")])
            .bearer_auth(page_token.expose_secret())
            .send()
            .await
            .map_err(transport)?;
        let body = parse_response(res).await?;
        serde_json::from_value(body).map_err(|e| GraphError::Transport {
            message: format!("profile shape: {e}"),
            retryable: false,
        })
    }

    /// GETs a Graph path with a token and query parameters.
    pub async fn get(
        &self,
        path: &str,
        token: Option<&SecretString>,
        query: &[(&str, &str)],
    ) -> Result<Value, GraphError> {
        let mut req = self.http.get(self.url(path)).query(query);
        if let Some(t) = token {
            req = req.bearer_auth(t.expose_secret());
        }
        parse_response(req.send().await.map_err(transport)?).await
    }

    /// POSTs form parameters to a Graph path (e.g. `subscribed_apps`).
    pub async fn post_form(
        &self,
        path: &str,
        token: &SecretString,
        form: &[(&str, &str)],
    ) -> Result<Value, GraphError> {
        let res = self
            .http
            .post(self.url(path))
            .bearer_auth(token.expose_secret())
            .form(form)
            .send()
            .await
            .map_err(transport)?;
        parse_response(res).await
    }

    /// POSTs JSON to a Graph path with the Page token.
    pub async fn post(
        &self,
        path: &str,
        token: &SecretString,
        body: &Value,
    ) -> Result<Value, GraphError> {
        let res = self
            .http
            .post(self.url(path))
            .bearer_auth(token.expose_secret())
            .json(body)
            .send()
            .await
            .map_err(transport)?;
        parse_response(res).await
    }

    /// DELETEs a Graph path (unsubscribe a Page, revoke a user's grant).
    pub async fn delete(&self, path: &str, token: &SecretString) -> Result<Value, GraphError> {
        let res = self
            .http
            .delete(self.url(path))
            .bearer_auth(token.expose_secret())
            .send()
            .await
            .map_err(transport)?;
        parse_response(res).await
    }

    /// Downloads media from Meta's CDN (signed URLs, no token), at most [`MAX_MEDIA_BYTES`].
    pub async fn download(&self, url: &str) -> Result<Media, GraphError> {
        let mut res = self.http.get(url).send().await.map_err(transport)?;
        if !res.status().is_success() {
            return Err(GraphError::Api {
                status: res.status().as_u16(),
                code: None,
                subcode: None,
                message: "media download failed".into(),
                fbtrace_id: None,
            });
        }
        if let Some(len) = res.content_length() {
            if len as usize > MAX_MEDIA_BYTES {
                return Err(GraphError::TooLarge(len as usize));
            }
        }
        let content_type = res
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("application/octet-stream")
            .to_string();
        let mut buf = Vec::new();
        while let Some(chunk) = res.chunk().await.map_err(transport)? {
            buf.extend_from_slice(&chunk);
            if buf.len() > MAX_MEDIA_BYTES {
                return Err(GraphError::TooLarge(buf.len()));
            }
        }
        Ok(Media {
            bytes: Bytes::from(buf),
            content_type,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(status: u16, code: i64, subcode: Option<i64>) -> GraphError {
        GraphError::Api {
            status,
            code: Some(code),
            subcode,
            message: String::new(),
            fbtrace_id: None,
        }
    }

    #[test]
    fn classifies_meta_error_codes() {
        assert!(api(400, 4, None).is_transient());
        assert!(api(400, 613, None).is_transient());
        assert!(api(400, 80002, None).is_transient());
        assert!(api(500, 100, None).is_transient());
        assert!(!api(400, 100, None).is_transient());
        assert!(api(400, 190, None).is_token_invalid());
        assert!(api(403, 10, Some(2534022)).is_outside_window());
        assert!(api(400, 10, Some(2018278)).is_outside_window());
        assert!(!api(400, 10, None).is_outside_window());
        assert!(!api(400, 10, Some(2534022)).is_transient());
    }
}
