//! Headless Chromium for the browser tests (Debian's chromium and chromium-driver, installed by
//! scripts/test), driven over WebDriver, and the platforms' authorization pages as loopback
//! fakes that approve at once and redirect back, as LiveChat and Facebook do after "Allow".

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;
use testkit::moto;
use wiremock::{Request, Respond, ResponseTemplate};

/// An authorization page that approves at once: redirects to `redirect_uri` with a fresh code
/// and the state it was given. The closure registers the code with the fake for whoever is
/// signed in.
pub struct Approve<F: Fn(&str) + Send + Sync>(pub &'static str, pub Arc<AtomicUsize>, pub F);

impl<F: Fn(&str) + Send + Sync> Approve<F> {
    /// Codes `<prefix>-0`, `<prefix>-1`, …, each registered by `issue`.
    pub fn new(prefix: &'static str, issue: F) -> Self {
        Self(prefix, Arc::new(AtomicUsize::new(0)), issue)
    }
}

impl<F: Fn(&str) + Send + Sync> Respond for Approve<F> {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let q: std::collections::HashMap<String, String> = req
            .url
            .query_pairs()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let code = format!("{}-{}", self.0, self.1.fetch_add(1, Ordering::SeqCst));
        (self.2)(&code);
        let mut back = reqwest::Url::parse(&q["redirect_uri"]).unwrap();
        back.query_pairs_mut()
            .append_pair("code", &code)
            .append_pair("state", &q["state"]);
        ResponseTemplate::new(302).insert_header("location", back.as_str())
    }
}

/// A headless Chromium session with its chromedriver and a fresh profile.
pub struct Browser {
    /// The WebDriver client.
    pub client: Client,
    /// Where screenshots are saved.
    pub shots: std::path::PathBuf,
    profile: std::path::PathBuf,
    _driver: moto::Guard,
}

impl Browser {
    /// Starts chromedriver and a phone-sized headless Chromium; screenshots go to `shots`.
    pub async fn start(shots: std::path::PathBuf) -> Self {
        let driver_port = moto::free_port();
        let driver = moto::Guard(
            Command::new("chromedriver")
                .arg(format!("--port={driver_port}"))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("chromedriver (Debian package chromium-driver) must be installed; scripts/test installs it"),
        );
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", driver_port)).is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not start");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let profile = std::env::temp_dir().join(format!(
            "igbridge-chromium-{}-{}",
            std::process::id(),
            shots
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or("shots")
        ));
        let mut caps = serde_json::Map::new();
        caps.insert("goog:chromeOptions".into(), json!({
            "binary": "/usr/bin/chromium",
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic", "--no-first-run",
                     "--disable-background-networking", "--disable-component-update", "--disable-sync", "--window-size=412,1600",
                     format!("--user-data-dir={}", profile.display())]
        }));
        let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{driver_port}"))
            .await
            .expect("a WebDriver session with headless Chromium");
        std::fs::create_dir_all(&shots).unwrap();
        Self {
            client,
            shots,
            profile,
            _driver: driver,
        }
    }

    /// Saves a screenshot of the page as `<name>.png`.
    pub async fn shot(&self, name: &str) {
        let png = self.client.screenshot().await.unwrap();
        assert!(png.starts_with(b"\x89PNG"));
        std::fs::write(self.shots.join(format!("{name}.png")), png).unwrap();
    }

    /// Waits until the page's heading reads `expected` (a click navigates asynchronously).
    pub async fn heading_becomes(&self, expected: &str) {
        let deadline = Instant::now() + Duration::from_secs(15);
        let mut last = String::new();
        while Instant::now() < deadline {
            if let Ok(h) = self.client.find(Locator::Css("h1")).await {
                if let Ok(t) = h.text().await {
                    if t == expected {
                        return;
                    }
                    last = t;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("heading stayed {last:?}, expected {expected:?}");
    }

    /// Clicks the first element matching `css`.
    pub async fn click(&self, css: &str) {
        self.client
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("{css}: {e}"))
            .click()
            .await
            .unwrap();
    }

    /// The text of the page's `main`.
    pub async fn main_text(&self) -> String {
        self.client
            .find(Locator::Css("main"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// Ends the session and removes the profile.
    pub async fn close(self) {
        self.client.clone().close().await.unwrap();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}
