//! The journeys that run against a whole app reached over HTTP (`igbridge serve`, or the Lambda
//! binaries behind the HTTP API emulator): the platform fakes set up for one app, and the install
//! walked through the app's own routes as a browser would.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use wiremock::MockServer;

use crate::bridge::{IG, IGSID, ORG};
use crate::livechat::FakeLivechat;
use crate::meta::{FakeMeta, FbPage};

/// The Facebook Page the install connects (its Instagram account is [`IG`]).
pub const PAGE: &str = "100000000000001";

/// The strict fakes of both platforms for one app.
pub struct AppFakes {
    /// LiveChat (accounts and the Agent/Customer APIs).
    pub livechat: FakeLivechat,
    /// Meta's Graph API.
    pub graph: FakeMeta,
}

impl AppFakes {
    /// The fakes for the app with these credentials: a LiveChat owner of [`ORG`] who approves
    /// with `dal:CODE`, and a Facebook user (`FBCODE`) with 150 Pages whose only connectable one
    /// ([`PAGE`], with an Instagram account and the Messages task) is on the second page of
    /// `/me/accounts`; the customer [`IGSID`] has a profile.
    pub async fn start(livechat_client: (&str, &str), meta_app: (&str, &str)) -> Self {
        let livechat = FakeLivechat::start(livechat_client.0, livechat_client.1).await;
        let graph = FakeMeta::start(meta_app.0, meta_app.1).await;
        livechat.add_code(
            "dal:CODE",
            ORG,
            "acc",
            "customers:own,chats--all:rw,agents--all:ro",
        );
        livechat.add_organization(ORG, "Example Support", "owner@example.com");
        let mut pages: Vec<FbPage> = (0..150)
            .map(|i| FbPage::new(&format!("2000000000{i:05}"), &format!("Page {i}"), None))
            .collect();
        pages[120] = FbPage::new(PAGE, "Shop", Some((IG, "shop")));
        graph.add_user("fbuser", "FBCODE", pages);
        graph.add_profile(
            IGSID,
            json!({"name": "Example Customer", "username": "example_customer"}),
        );
        Self { livechat, graph }
    }

    /// Asserts that neither platform refused a request the app made.
    pub fn assert_nothing_refused(&self) {
        crate::assert_nothing_refused(&self.graph, &self.livechat);
    }
}

/// Waits (up to 20 s) until `check` holds for the requests `server` received.
pub async fn wait_for<F: Fn(&[wiremock::Request]) -> bool>(
    server: &MockServer,
    what: &str,
    check: F,
) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let got = server.received_requests().await.unwrap_or_default();
        if check(&got) {
            return;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A request's JSON body (`null` when it has none).
pub fn body_of(r: &wiremock::Request) -> Value {
    serde_json::from_slice(&r.body).unwrap_or(Value::Null)
}

/// Installs through the app's own routes at `base`, as the install page's script and a browser
/// do: `/install`, LiveChat's callback, Facebook's callback, the Page choice; ends on the success
/// page.
pub async fn install(base: &str, f: &AppFakes) {
    f.graph
        .expect_redirect_uri(&format!("{base}/oauth/facebook/callback"));
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    // A client holding its tab's flow secret, as the install page's script does.
    let secret = "e2e-tab-secret";
    let binding = shared::install::state::binding_of(secret);
    let state_of = |loc: &str| {
        reqwest::Url::parse(loc)
            .unwrap()
            .query_pairs()
            .find(|(k, _)| k == "state")
            .unwrap()
            .1
            .to_string()
    };
    let field = |page: &str, marker: &str| {
        page.split(marker)
            .nth(1)
            .unwrap_or_else(|| panic!("{marker} in {page}"))
            .split('"')
            .next()
            .unwrap()
            .replace("&amp;", "&")
    };
    let start = http
        .get(format!("{base}/install?b={binding}"))
        .send()
        .await
        .unwrap();
    let lc_state = state_of(start.headers()["location"].to_str().unwrap());
    let callback = |path: &str, code: &'static str, state: String| {
        let form = [
            ("code", code.to_string()),
            ("state", state),
            ("browser", secret.to_string()),
        ];
        let request = http.post(format!("{base}{path}")).form(&form);
        async move { request.send().await.unwrap().text().await.unwrap() }
    };
    let back = callback("/oauth/livechat/callback", "dal:CODE", lc_state).await;
    let fb_state = state_of(&field(&back, "data-go href=\""));
    let shown = callback("/oauth/facebook/callback", "FBCODE", fb_state).await;
    assert!(
        shown.contains("Example Support") && shown.contains("@shop"),
        "{shown}"
    );
    let done = http
        .post(format!("{base}/oauth/facebook/select"))
        .form(&[
            ("state", field(&shown, "name=\"state\" value=\"").as_str()),
            ("page_id", PAGE),
            ("browser", secret),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(done.status(), 200);
    assert!(
        done.text()
            .await
            .unwrap()
            .contains("Instagram is connected")
    );
}

/// A signed-in status page, as a browser tab holds it.
pub struct StatusTab {
    /// The tab's secret (the page's script keeps it in `sessionStorage`).
    pub secret: String,
    /// The session the page's buttons post.
    pub session: String,
    /// The page.
    pub html: String,
}

/// Signs in to the status page at `base` as the installer (an owner of [`ORG`]), the way the
/// page's script and LiveChat's redirect do.
pub async fn status_sign_in(base: &str, f: &AppFakes, code: &str) -> StatusTab {
    f.livechat
        .add_member(ORG, "acc", "owner@example.com", "owner");
    f.livechat.add_code(
        code,
        ORG,
        "acc",
        "customers:own,chats--all:rw,agents--all:ro",
    );
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let secret = format!("status-tab-{code}");
    let binding = shared::install::state::binding_of(&secret);
    let start = http
        .get(format!("{base}/status?b={binding}"))
        .send()
        .await
        .unwrap();
    let location = start.headers()["location"].to_str().unwrap().to_string();
    let state = reqwest::Url::parse(&location)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "state")
        .unwrap()
        .1
        .to_string();
    let html = http
        .post(format!("{base}/oauth/livechat/callback"))
        .form(&[("code", code), ("state", &state), ("browser", &secret)])
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let session = html
        .split("name=\"state\" value=\"")
        .nth(1)
        .unwrap_or_else(|| panic!("a signed-in status page: {html}"))
        .split('"')
        .next()
        .unwrap()
        .replace("&amp;", "&");
    StatusTab {
        secret,
        session,
        html,
    }
}

/// A button of the status page (`action`, for account `ig`); the page that answers.
pub async fn status_post(base: &str, tab: &StatusTab, action: &str, ig: &str) -> String {
    reqwest::Client::new()
        .post(format!("{base}/status"))
        .form(&[
            ("state", tab.session.as_str()),
            ("browser", &tab.secret),
            ("action", action),
            ("ig", ig),
        ])
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}
