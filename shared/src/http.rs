//! The one HTTP client setup for the platform APIs (Graph API, LiveChat): rustls, timeouts, a
//! user agent, no cookies, and which responses are worth retrying.

use std::time::Duration;

use reqwest::StatusCode;

/// The user agent sent to Meta and LiveChat.
pub const USER_AGENT: &str = concat!("igbridge/", env!("CARGO_PKG_VERSION"));
/// How long to wait for a connection.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// How long one request may take in all; below the webhook platforms' own timeouts.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Builds the client; call once per cold start and share it. Its TLS is rustls with ring,
/// installed as the process's provider (the SDK's client uses the same, [`crate::aws`]).
pub fn client() -> reqwest::Client {
    // Already installed (a second client in this process) is fine.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .user_agent(USER_AGENT)
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(REQUEST_TIMEOUT)
        .pool_idle_timeout(Duration::from_secs(60))
        .redirect(reqwest::redirect::Policy::limited(3))
        .build()
        .expect("static client settings are valid")
}

/// The platform client, built on first use and then shared: a function that never calls Meta or
/// LiveChat (the webhooks) never builds one, and its binary does not link it.
#[derive(Clone, Default)]
pub struct LazyClient(std::sync::Arc<std::sync::OnceLock<reqwest::Client>>);

impl LazyClient {
    /// The client ([`client`] the first time).
    pub fn get(&self) -> reqwest::Client {
        self.0.get_or_init(client).clone()
    }
}

impl From<reqwest::Client> for LazyClient {
    fn from(c: reqwest::Client) -> Self {
        Self(std::sync::Arc::new(std::sync::OnceLock::from(c)))
    }
}

/// Whether a response status means "try again later" (throttling or a server fault).
pub fn is_retryable_status(status: StatusCode) -> bool {
    status == StatusCode::TOO_MANY_REQUESTS
        || status == StatusCode::REQUEST_TIMEOUT
        || status.is_server_error()
}

/// Whether a transport error means "try again later".
pub fn is_retryable_error(err: &reqwest::Error) -> bool {
    err.is_timeout() || err.is_connect() || err.is_request() && !err.is_builder()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retryable_statuses() {
        assert!(is_retryable_status(StatusCode::TOO_MANY_REQUESTS));
        assert!(is_retryable_status(StatusCode::BAD_GATEWAY));
        assert!(!is_retryable_status(StatusCode::BAD_REQUEST));
        assert!(!is_retryable_status(StatusCode::UNAUTHORIZED));
    }

    #[tokio::test]
    async fn client_sends_user_agent_and_times_out_on_silence() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = vec![0u8; 4096];
            let n = s.read(&mut buf).await.unwrap();
            let req = String::from_utf8_lossy(&buf[..n]).to_lowercase();
            s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                .await
                .unwrap();
            req
        });
        let res = client()
            .get(format!("http://{addr}/x"))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        let req = server.await.unwrap();
        assert!(req.contains(&format!("user-agent: {}", USER_AGENT.to_lowercase())));
        assert!(!req.contains("cookie"));
    }
}
