//! The LiveChat admin's status page in headless Chromium: opening `/status` signs in through
//! LiveChat by itself (the page's script ties it to the tab; no cookie), and the page shows each
//! state the health check finds — healthy, unsubscribed, broken token, parked messages. Then the
//! admin reconnects (Facebook Login) and the parked replies go out in order; replays a message
//! parked for another reason with the button; and disconnects. Screenshots of each state are
//! saved under `target/tmp/status-screenshots/`.

use shared::ids::{IgAccountId, OrgId};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use shared::domain::*;
use shared::health::check::HealthCheck;
use shared::store::MemoryStore;
use system::browser::{Approve, Browser};
use testkit::bridge::*;
use testkit::fixture;
use testkit::moto;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer};

const ADMIN: &str = "00000000-0000-4000-8000-00000000b0ad";
const PAGE: &str = "PAGE-17841400000000001";

fn soon() -> Instant {
    Instant::now() + Duration::from_secs(60)
}

/// Reloads the status page (a fresh sign-in, silent: LiveChat approves at once) and waits for it.
async fn open_status(b: &Browser, base: &str) {
    b.client.goto(&format!("{base}/status")).await.unwrap();
    b.heading_becomes("Instagram connections").await;
}

async fn sees(b: &Browser, words: &[&str]) {
    let text = b.main_text().await;
    for w in words {
        assert!(text.contains(w), "{w:?} not on the page:\n{text}");
    }
}

async fn agent_replies(h: &Harness, texts: &[&str]) {
    for (i, t) in texts.iter().enumerate() {
        let id = format!("EV-{t}-{i}");
        assert_eq!(h.post_livechat(&text_event(&id, t)).await, StatusCode::OK);
    }
    h.work_outbound().await;
}

fn sent_texts(h: &Harness) -> Vec<String> {
    h.graph
        .sent()
        .iter()
        .filter_map(|s| s.body["message"]["text"].as_str().map(str::to_string))
        .collect()
}

#[tokio::test]
async fn the_status_page_walks_through_in_chromium() {
    let app_port = moto::free_port();
    let base = format!("http://127.0.0.1:{app_port}");
    let dialog = MockServer::start().await;
    let h = Harness::with_settings(
        Arc::new(MemoryStore::new()),
        &[
            ("PUBLIC_BASE_URL", base.clone()),
            ("FACEBOOK_DIALOG_BASE_URL", dialog.uri()),
        ],
    )
    .await;
    h.seed_contact(ORG, IG, IGSID, CHAT, Some(chrono::Duration::hours(1)))
        .await;
    let router = shared::web::oauth_install::router(h.services.install());
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", app_port))
        .await
        .unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });

    // The admin is signed in to LiveChat; LiveChat approves igbridge for them at once.
    let scope = "customers:own,chats--all:rw,agents--all:ro";
    h.livechat
        .add_organization(ORG, "Downtown Store Support", "owner@downtown.example");
    h.livechat
        .add_member(ORG, ADMIN, "admin@downtown.example", "administrator");
    let lc = h.livechat.clone();
    Mock::given(method("GET"))
        .and(path("/"))
        .respond_with(Approve::new("dal:STATUSCODE", move |code: &str| {
            lc.add_code(code, ORG, ADMIN, scope)
        }))
        .mount(&h.livechat)
        .await;
    let fb = h.graph.clone();
    Mock::given(method("GET"))
        .and(path("/v25.0/dialog/oauth"))
        .respond_with(Approve::new("FBCODE", move |code: &str| {
            fb.add_user("fbuser", code, vec![])
        }))
        .mount(&dialog)
        .await;
    let health: HealthCheck = h.services.health();
    let b = Browser::start(
        std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("status-screenshots"),
    )
    .await;

    // Healthy.
    health.run(soon()).await.unwrap();
    open_status(&b, &base).await;
    sees(
        &b,
        &[
            "@shop",
            "✔ Connected",
            "✔ valid",
            "✔ subscribed",
            "none parked",
        ],
    )
    .await;
    assert!(
        b.client.get_all_cookies().await.unwrap().is_empty(),
        "no cookies"
    );
    b.shot("1-healthy").await;

    // Meta dropped the subscription and refuses to restore it this time.
    h.graph.drop_subscription(PAGE);
    h.graph.fail_next(
        "POST",
        "subscribed_apps",
        fixture("meta/error_2_service"),
        1,
    );
    health.run(soon()).await.unwrap();
    open_status(&b, &base).await;
    sees(&b, &["✖ missing", "refused to subscribe it again"]).await;
    b.shot("2-unsubscribed").await;

    // A password change invalidates the Page token.
    h.graph.invalidate_page_token(PAGE);
    health.run(soon()).await.unwrap();
    open_status(&b, &base).await;
    sees(
        &b,
        &[
            "✖ Broken",
            "✖ refused by Facebook",
            "changed their password",
        ],
    )
    .await;
    b.shot("3-broken-token").await;

    // Agents answer meanwhile: the replies are parked, waiting for the repair.
    agent_replies(&h, &["first", "second"]).await;
    assert!(sent_texts(&h).is_empty());
    open_status(&b, &base).await;
    sees(&b, &["2 messages, 2 of them waiting for a repair"]).await;
    b.shot("4-parked-messages").await;

    // Reconnect: Facebook Login, the confirmation, connected; the parked replies go, in order.
    b.click("section form button").await;
    b.heading_becomes("Confirm the connection").await;
    b.click("button[type=submit]").await;
    b.heading_becomes("Instagram is connected").await;
    let replayed = health
        .replay_requested(&OrgId::from(ORG), soon())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(replayed.replayed, 2);
    h.work_outbound().await;
    assert_eq!(sent_texts(&h), ["first", "second"]);
    health.run(soon()).await.unwrap();
    open_status(&b, &base).await;
    sees(&b, &["✔ Connected", "2 messages sent again", "none parked"]).await;
    b.shot("5-reconnected").await;

    // A reply Meta refuses for good is parked for a human; the admin replays it with the button.
    h.graph
        .fail_next("POST", "messages", fixture("meta/error_100_param_value"), 1);
    agent_replies(&h, &["third"]).await;
    open_status(&b, &base).await;
    sees(&b, &["1 message, none of them waiting for a repair"]).await;
    b.click("form.inline button").await;
    b.heading_becomes("Instagram connections").await;
    sees(&b, &["Replay requested"]).await;
    b.shot("6-replay-requested").await;
    assert_eq!(health.replay_all_requested(soon()).await.unwrap(), 1);
    h.work_outbound().await;
    assert_eq!(sent_texts(&h), ["first", "second", "third"]);

    // Disconnect.
    open_status(&b, &base).await;
    let buttons = b
        .client
        .find_all(fantoccini::Locator::Css("section form button"))
        .await
        .unwrap();
    let mut disconnect = None;
    for btn in buttons {
        if btn.text().await.unwrap().starts_with("Disconnect") {
            disconnect = Some(btn);
        }
    }
    disconnect
        .expect("a Disconnect button")
        .click()
        .await
        .unwrap();
    b.heading_becomes("Instagram connections").await;
    sees(
        &b,
        &["was disconnected", "No Instagram account is connected"],
    )
    .await;
    b.shot("7-disconnected").await;
    let conn: InstagramConnection = h
        .services
        .repo
        .get(&InstagramConnection::key_for(
            &OrgId::from(ORG),
            &IgAccountId::from(IG),
        ))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(conn.status, ConnectionStatus::Disconnected);
    assert_eq!(h.graph.subscription(PAGE), None);
    assert_eq!(h.livechat.refusals(), Vec::<String>::new());

    let shots = b.shots.clone();
    b.close().await;
    for name in [
        "1-healthy",
        "2-unsubscribed",
        "3-broken-token",
        "4-parked-messages",
        "5-reconnected",
        "6-replay-requested",
        "7-disconnected",
    ] {
        assert!(shots.join(format!("{name}.png")).exists(), "{name}");
    }
}
