//! The install pages in a real browser: headless Chromium (Debian's chromium and chromium-driver,
//! installed by .ci/run) driven over WebDriver through the whole install — LiveChat authorization
//! and the Facebook dialog are loopback fakes that redirect back — clicking through the chooser.
//! Screenshots of each page are saved under `target/tmp/install-screenshots/`.

mod support;

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use fantoccini::{ClientBuilder, Locator};
use serde_json::json;
use shared::app::Services;
use shared::clock::SystemClock;
use shared::config::{Config, Settings};
use testkit::livechat::FakeLivechat;
use testkit::meta::{FakeMeta, FbPage};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

/// An authorization page that approves at once: redirects to `redirect_uri` with a code and the
/// state it was given, as LiveChat and Facebook do after the user clicks Allow.
struct Approve(&'static str);

impl Respond for Approve {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let q: std::collections::HashMap<String, String> = req
            .url
            .query_pairs()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let mut back = reqwest::Url::parse(&q["redirect_uri"]).unwrap();
        back.query_pairs_mut()
            .append_pair("code", self.0)
            .append_pair("state", &q["state"]);
        ResponseTemplate::new(302).insert_header("location", back.as_str())
    }
}

/// Waits until the page's heading reads `expected` (a click navigates asynchronously).
async fn heading_becomes(client: &fantoccini::Client, expected: &str) {
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut last = String::new();
    while Instant::now() < deadline {
        if let Ok(h) = client.find(Locator::Css("h1")).await {
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

fn shots_dir() -> std::path::PathBuf {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("install-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[tokio::test]
async fn the_install_walks_through_in_chromium() {
    // The app on a real loopback socket.
    let app_port = support::free_port();
    let base = format!("http://127.0.0.1:{app_port}");
    let livechat = FakeLivechat::start("CLIENT_ID_0001", "lc-client-secret").await;
    let graph = FakeMeta::start("1234", "meta-app-secret").await;
    let dialog = MockServer::start().await;
    let config = Config::from_settings(&Settings::from_pairs([
        ("PUBLIC_BASE_URL", base.clone()),
        ("META_APP_ID", "1234".into()),
        ("META_APP_SECRET", "meta-app-secret".into()),
        ("META_VERIFY_TOKEN", "v".into()),
        ("LIVECHAT_CLIENT_ID", "CLIENT_ID_0001".into()),
        ("LIVECHAT_CLIENT_SECRET", "lc-client-secret".into()),
        ("LIVECHAT_WEBHOOK_SECRET", "w".into()),
        ("LIVECHAT_APP_WEBHOOK_TOKEN", "a".into()),
        (
            "TOKEN_ENCRYPTION_KEY",
            "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=".into(),
        ),
        ("GRAPH_API_BASE_URL", graph.uri()),
        ("LIVECHAT_API_BASE_URL", livechat.uri()),
        ("LIVECHAT_ACCOUNTS_BASE_URL", livechat.uri()),
        ("FACEBOOK_DIALOG_BASE_URL", dialog.uri()),
    ]))
    .unwrap();
    let services = Services::memory(config, Arc::new(SystemClock));
    let router = shared::install::install_router(services.install());
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", app_port))
        .await
        .unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });

    Mock::given(method("GET"))
        .and(path("/"))
        .respond_with(Approve("dal:BROWSERCODE"))
        .mount(&livechat)
        .await;
    let scope = "customers:own,chats--all:rw";
    livechat.add_code("dal:BROWSERCODE", "browser-org", "admin-account", scope);
    livechat.add_code("dal:MARKET", "browser-org", "admin-account", scope);
    Mock::given(method("GET"))
        .and(path("/v25.0/dialog/oauth"))
        .respond_with(Approve("FBCODE"))
        .mount(&dialog)
        .await;
    graph.expect_redirect_uri(&format!("{base}/oauth/facebook/callback"));
    graph.add_user(
        "fbuser",
        "FBCODE",
        vec![
            FbPage {
                token: "PT1".into(),
                ..FbPage::new(
                    "100000000000021",
                    "Downtown Store",
                    Some(("17841400000000021", "downtown")),
                )
            },
            FbPage {
                token: "PT2".into(),
                ..FbPage::new(
                    "100000000000022",
                    "Online Shop",
                    Some(("17841400000000022", "online_shop")),
                )
            },
        ],
    );

    // Chromium through chromedriver.
    let driver_port = support::free_port();
    let _driver = support::Guard(
        Command::new("chromedriver")
            .arg(format!("--port={driver_port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver (Debian package chromium-driver) must be installed; .ci/run installs it"),
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", driver_port)).is_err() {
        assert!(Instant::now() < deadline, "chromedriver did not start");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let profile = std::env::temp_dir().join(format!("igbridge-chromium-{}", std::process::id()));
    let mut caps = serde_json::Map::new();
    caps.insert("goog:chromeOptions".into(), json!({
        "binary": "/usr/bin/chromium",
        "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync", "--window-size=412,915",
                 format!("--user-data-dir={}", profile.display())]
    }));
    let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{driver_port}"))
        .await
        .expect("a WebDriver session with headless Chromium");
    let shots = shots_dir();
    let shot = |name: &'static str| {
        let client = client.clone();
        let shots = shots.clone();
        async move {
            let png = client.screenshot().await.unwrap();
            assert!(png.starts_with(b"\x89PNG"));
            std::fs::write(shots.join(format!("{name}.png")), png).unwrap();
        }
    };

    // Start: LiveChat approves, Facebook approves, and the chooser is shown.
    client.goto(&format!("{base}/install")).await.unwrap();
    let heading = client
        .find(Locator::Css("h1"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(heading, "Choose the Instagram account");
    let labels = client.find_all(Locator::Css("label")).await.unwrap();
    let mut texts = Vec::new();
    for l in &labels {
        texts.push(l.text().await.unwrap());
    }
    assert_eq!(
        texts,
        vec![
            "Downtown Store — Instagram @downtown",
            "Online Shop — Instagram @online_shop"
        ]
    );
    let source = client.source().await.unwrap();
    assert!(
        !source.contains("PT1") && !source.contains("PT2"),
        "no Page token in the page"
    );
    assert!(
        client.get_all_cookies().await.unwrap().is_empty(),
        "no cookies"
    );
    shot("1-chooser").await;

    // Choose the second Page and connect.
    client
        .find(Locator::Css("label[for=page-1]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    client
        .find(Locator::Css("button[type=submit]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    heading_becomes(&client, "Instagram is connected").await;
    assert_eq!(
        graph.refusals(),
        Vec::<String>::new(),
        "Meta accepted every call"
    );
    assert_eq!(livechat.refusals(), Vec::<String>::new());
    assert!(graph.subscription("100000000000022").is_some());
    let body = client
        .find(Locator::Css("main"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        body.contains("@online_shop")
            && body.contains("Uninstall igbridge from the LiveChat Marketplace"),
        "{body}"
    );
    shot("2-connected").await;

    // Going back and submitting the chooser again is refused: the state was single-use.
    client.back().await.unwrap();
    heading_becomes(&client, "Choose the Instagram account").await;
    client
        .find(Locator::Css("button[type=submit]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    heading_becomes(&client, "This link has expired").await;
    shot("3-expired").await;

    // A Marketplace install (no state of ours) shows the confirmation page.
    client
        .goto(&format!("{base}/oauth/livechat/callback?code=dal%3AMARKET"))
        .await
        .unwrap();
    let heading = client
        .find(Locator::Css("h1"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(heading, "Connect Instagram to LiveChat");
    assert!(
        client
            .find(Locator::Css("main"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
            .contains("admin-account")
    );
    shot("4-confirm").await;

    client.close().await.unwrap();
    let _ = std::fs::remove_dir_all(profile);
    for name in ["1-chooser", "2-connected", "3-expired", "4-confirm"] {
        assert!(shots.join(format!("{name}.png")).exists());
    }
    let _ = support::unique("x");
}
