//! The install pages in a real browser: headless Chromium (Debian's chromium and chromium-driver,
//! installed by scripts/test) driven over WebDriver through the whole install — LiveChat authorization
//! and the Facebook dialog are loopback fakes that redirect back — with the page's own script
//! (under its Content Security Policy) tying each step to the tab. First the attack of a
//! forwarded link: an attacker (a plain HTTP client) starts an install for their organization
//! and sends the Facebook Login link to a business, whose Chromium follows it and is refused with
//! nothing stored; then the business's own install, confirmed. Screenshots of each page are
//! saved under `target/tmp/install-screenshots/`.

use shared::ids::{FacebookUserId, IgAccountId, OrgId};
use testkit::moto;

use std::sync::{Arc, Mutex};

use fantoccini::Locator;
use shared::app::Services;
use shared::clock::SystemClock;
use shared::config::{Config, Settings};
use shared::domain::*;
use system::browser::{Approve, Browser};
use testkit::livechat::FakeLivechat;
use testkit::meta::{FakeMeta, FbPage};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer};

#[tokio::test]
async fn the_install_walks_through_in_chromium() {
    // The app on a real loopback socket.
    let app_port = moto::free_port();
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
    let router = shared::web::oauth_install::router(services.install());
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", app_port))
        .await
        .unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });

    // Whoever is signed in to LiveChat approves for their organization.
    let signed_in = Arc::new(Mutex::new("attacker-org".to_string()));
    let scope = "customers:own,chats--all:rw,agents--all:ro";
    livechat.add_organization(
        "attacker-org",
        "Mallory Support",
        "mallory@attacker.example",
    );
    livechat.add_organization(
        "shop-org",
        "Downtown Store Support",
        "owner@downtown.example",
    );
    let (lc, who) = (livechat.clone(), signed_in.clone());
    Mock::given(method("GET"))
        .and(path("/"))
        .respond_with(Approve::new("dal:BROWSERCODE", move |code: &str| {
            let org = who.lock().unwrap().clone();
            lc.add_code(code, &org, &format!("admin-of-{org}"), scope);
        }))
        .mount(&livechat)
        .await;
    let fb = graph.clone();
    Mock::given(method("GET"))
        .and(path("/v25.0/dialog/oauth"))
        .respond_with(Approve::new("FBCODE", move |code: &str| {
            fb.add_user("fbuser", code, vec![])
        }))
        .mount(&dialog)
        .await;
    graph.expect_redirect_uri(&format!("{base}/oauth/facebook/callback"));
    graph.add_user(
        "fbuser",
        "FBCODE-unused",
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

    // The attacker, with a plain HTTP client, starts an install for their own organization and
    // stops at the Facebook Login link.
    let forwarded = attacker_gets_facebook_link(&base).await;
    assert!(forwarded.starts_with(&dialog.uri()), "{forwarded}");

    let browser = Browser::start(
        std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("install-screenshots"),
    )
    .await;
    let client = browser.client.clone();
    let shot = |name: &'static str| browser.shot(name);
    let heading_becomes = |h: &'static str| browser.heading_becomes(h);
    let click = |css: &'static str| browser.click(css);

    // The business follows the forwarded link in Chromium and logs in to Facebook: refused.
    client.goto(&forwarded).await.unwrap();
    heading_becomes("Start the installation in your own browser").await;
    shot("1-forwarded-link-refused").await;
    let repo = services.repo.clone();
    let nothing = || async {
        for ig in ["17841400000000021", "17841400000000022"] {
            assert!(
                repo.get::<AccountRoute>(&AccountRoute::key_for(&IgAccountId::from(ig)))
                    .await
                    .unwrap()
                    .is_none()
            );
            assert!(
                repo.get::<InstagramConnection>(&InstagramConnection::key_for(
                    &OrgId::from("attacker-org"),
                    &IgAccountId::from(ig)
                ))
                .await
                .unwrap()
                .is_none()
            );
        }
        assert!(
            repo.get::<FacebookUserLink>(&FacebookUserLink::key_for(
                &FacebookUserId::from("fbuser"),
                &OrgId::from("attacker-org"),
                &IgAccountId::from("17841400000000021")
            ))
            .await
            .unwrap()
            .is_none()
        );
    };
    nothing().await;
    assert_eq!(graph.subscription("100000000000021"), None);
    assert_eq!(graph.subscription("100000000000022"), None);

    // The business's own install: LiveChat approves, Facebook approves, and the confirmation
    // names the organization, its owner, the Pages and the Instagram accounts.
    *signed_in.lock().unwrap() = "shop-org".into();
    client.goto(&format!("{base}/install")).await.unwrap();
    heading_becomes("Connecting Instagram to LiveChat").await;
    shot("2-start").await;
    click("#begin").await;
    heading_becomes("Confirm the connection").await;
    let main = client
        .find(Locator::Css("main"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        main.contains("Downtown Store Support") && main.contains("owner@downtown.example"),
        "{main}"
    );
    let labels = client.find_all(Locator::Css("label")).await.unwrap();
    let mut texts = Vec::new();
    for l in &labels {
        texts.push(l.text().await.unwrap());
    }
    assert_eq!(
        texts,
        vec![
            "Facebook Page Downtown Store — Instagram @downtown",
            "Facebook Page Online Shop — Instagram @online_shop"
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
    nothing().await;
    shot("3-confirm").await;
    let confirm_state = client
        .find(Locator::Css("input[name=state]"))
        .await
        .unwrap()
        .attr("value")
        .await
        .unwrap()
        .unwrap();

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
    heading_becomes("Instagram is connected").await;
    assert_eq!(
        graph.refusals(),
        Vec::<String>::new(),
        "Meta accepted every call"
    );
    assert!(graph.subscription("100000000000022").is_some());
    let route: AccountRoute = services
        .repo
        .get(&AccountRoute::key_for(&IgAccountId::from(
            "17841400000000022",
        )))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(route.organization_id, "shop-org");
    let body = client
        .find(Locator::Css("main"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        body.contains("@online_shop")
            && body.contains("uninstall igbridge from the LiveChat Marketplace"),
        "{body}"
    );
    shot("4-connected").await;

    // Posting the same confirmation again, even with this tab's secret, is refused: spent.
    let secret = client
        .execute("return sessionStorage.getItem('igbridge.install')", vec![])
        .await
        .unwrap();
    let secret = secret
        .as_str()
        .expect("the tab holds its flow secret")
        .to_string();
    let again = reqwest::Client::new()
        .post(format!("{base}/oauth/facebook/select"))
        .form(&[
            ("state", confirm_state.as_str()),
            ("page_id", "100000000000021"),
            ("browser", secret.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 400);
    assert!(
        again
            .text()
            .await
            .unwrap()
            .contains("This link has expired")
    );
    assert!(
        services
            .repo
            .get::<AccountRoute>(&AccountRoute::key_for(&IgAccountId::from(
                "17841400000000021"
            )))
            .await
            .unwrap()
            .is_none()
    );

    // A Marketplace install (LiveChat's code without a state of ours) starts a flow bound to
    // this tab and reaches the same confirmation.
    client
        .goto(&format!("{base}/oauth/livechat/callback?code=dal%3AMARKET"))
        .await
        .unwrap();
    heading_becomes("Connecting Instagram to LiveChat").await;
    click("#begin").await;
    heading_becomes("Confirm the connection").await;
    shot("5-marketplace-confirm").await;
    assert_eq!(livechat.refusals(), Vec::<String>::new());

    let shots = browser.shots.clone();
    browser.close().await;
    for name in [
        "1-forwarded-link-refused",
        "2-start",
        "3-confirm",
        "4-connected",
        "5-marketplace-confirm",
    ] {
        assert!(shots.join(format!("{name}.png")).exists());
    }
}

/// The attacker's side, as a plain client that runs no script: makes its own flow secret,
/// authorizes its LiveChat organization, posts the code back, and keeps the Facebook Login URL.
async fn attacker_gets_facebook_link(base: &str) -> String {
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let secret = "attackers-tab-secret";
    let binding = shared::install::state::binding_of(secret);
    let location = |r: &reqwest::Response| r.headers()["location"].to_str().unwrap().to_string();
    let to_lc = http
        .get(format!("{base}/install?b={binding}"))
        .send()
        .await
        .unwrap();
    let approved = http.get(location(&to_lc)).send().await.unwrap();
    let back = reqwest::Url::parse(&location(&approved)).unwrap();
    let q: std::collections::HashMap<String, String> = back
        .query_pairs()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let posted = http
        .post(format!("{base}/oauth/livechat/callback"))
        .form(&[
            ("code", q["code"].as_str()),
            ("state", q["state"].as_str()),
            ("browser", secret),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(posted.status(), 200);
    let page = posted.text().await.unwrap();
    page.split("data-go href=\"")
        .nth(1)
        .expect("the Facebook link")
        .split('"')
        .next()
        .unwrap()
        .replace("&amp;", "&")
}
