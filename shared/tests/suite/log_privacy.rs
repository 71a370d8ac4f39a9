//! Privacy: logs never carry message text, tokens or secrets. The capturing subscriber is the
//! test thread's default (the test's current-thread runtime runs the whole bridge on it), so the
//! other tests of the binary, on their own threads, neither reach nor disturb it.

use testkit::bridge;

use std::sync::{Arc, Mutex};

use bridge::*;
use shared::instagram::webhook::sign;
use wiremock::matchers::{method, path};
use wiremock::{Mock, ResponseTemplate};

#[tokio::test]
async fn logs_never_contain_message_text_or_tokens() {
    #[derive(Clone, Default)]
    struct Capture(Arc<Mutex<Vec<u8>>>);
    impl std::io::Write for Capture {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let capture = Capture::default();
    let writer = capture.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let h = Harness::new().await;
    Mock::given(method("GET"))
        .and(path(format!("/v25.0/{IGSID}")))
        .respond_with(ResponseTemplate::new(500))
        .with_priority(1)
        .mount(&h.graph)
        .await;
    h.deliver(&webhook(vec![text("M1", "SECRET-CUSTOMER-TEXT")]))
        .await;
    let bad =
        r#"{"object":"instagram","entry":[{"messaging":[{"message":{"text":"SECRET-CUSTOMER-TEXT""#;
    h.post_webhook(bad, Some(sign(APP_SECRET.as_bytes(), bad.as_bytes())))
        .await;
    h.post_webhook(bad, Some("sha256=00".into())).await;
    h.work().await;
    let logs = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
    assert!(
        logs.contains("instagram webhook accepted"),
        "logging was captured: {logs}"
    );
    for secret in [
        "SECRET-CUSTOMER-TEXT",
        "dal:AGENT-A",
        "dal:CUSTOMER-TOKEN",
        "PAGE-TOKEN-A",
        APP_SECRET,
        "lc-client-secret",
    ] {
        assert!(!logs.contains(secret), "{secret} leaked into logs:\n{logs}");
    }
}
