//! The install flow against loopback fakes of LiveChat accounts and the Graph API: one Page,
//! several Pages (chooser), none, and every bad-input case. No response ever sets a cookie.

#[path = "support/bridge.rs"]
mod bridge;
mod support;

use std::collections::HashMap;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use bridge::*;
use http_body_util::BodyExt;
use serde_json::{Value, json};
use shared::clock::Clock;
use shared::domain::*;
use shared::store::Condition;
use tower::ServiceExt;
use wiremock::matchers::{method, path, query_param};
use wiremock::{Mock, ResponseTemplate};

const NEW_ORG: &str = "00000000-0000-4000-8000-00000000a00f";
const IG_NEW: &str = "17841400000000009";

struct Answer {
    status: StatusCode,
    location: Option<String>,
    body: String,
}

async fn call(h: &Harness, req: Request<Body>) -> Answer {
    let res = shared::install::install_router(h.services.install())
        .oneshot(req)
        .await
        .unwrap();
    assert!(
        !res.headers().contains_key(header::SET_COOKIE),
        "no cookies, ever"
    );
    let status = res.status();
    let location = res
        .headers()
        .get(header::LOCATION)
        .map(|v| v.to_str().unwrap().to_string());
    let body =
        String::from_utf8_lossy(&res.into_body().collect().await.unwrap().to_bytes()).to_string();
    Answer {
        status,
        location,
        body,
    }
}

async fn get(h: &Harness, uri: &str) -> Answer {
    call(h, Request::get(uri).body(Body::empty()).unwrap()).await
}

async fn post_form(h: &Harness, uri: &str, form: &[(&str, &str)]) -> Answer {
    let body = form
        .iter()
        .map(|(k, v)| format!("{k}={}", urlencode(v)))
        .collect::<Vec<_>>()
        .join("&");
    call(
        h,
        Request::post(uri)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(Body::from(body))
            .unwrap(),
    )
    .await
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn query(url: &str) -> HashMap<String, String> {
    let url = reqwest::Url::parse(url).unwrap();
    url.query_pairs()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

async fn fakes(h: &Harness, pages: Value) {
    Mock::given(method("POST")).and(path("/v2/token"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"access_token": "dal:NEW-AGENT", "account_id": "00000000-0000-4000-8000-00000000b00f",
            "expires_in": 28800, "organization_id": NEW_ORG, "refresh_token": "NEW-REFRESH", "scope": "chats--all:rw,customers:own", "token_type": "Bearer"})))
        .mount(&h.livechat).await;
    Mock::given(method("GET"))
        .and(path("/v25.0/oauth/access_token"))
        .and(query_param("code", "FBCODE"))
        .respond_with(ResponseTemplate::new(200).set_body_json(
            json!({"access_token": "SHORT-USER", "token_type": "bearer", "expires_in": 3600}),
        ))
        .mount(&h.graph)
        .await;
    Mock::given(method("GET"))
        .and(path("/v25.0/oauth/access_token"))
        .and(query_param("grant_type", "fb_exchange_token"))
        .respond_with(ResponseTemplate::new(200).set_body_json(
            json!({"access_token": "LONG-USER", "token_type": "bearer", "expires_in": 5183944}),
        ))
        .mount(&h.graph)
        .await;
    Mock::given(method("GET"))
        .and(path("/v25.0/me"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"id": "fbuser-new"})))
        .mount(&h.graph)
        .await;
    Mock::given(method("GET"))
        .and(path("/v25.0/me/accounts"))
        .respond_with(ResponseTemplate::new(200).set_body_json(pages))
        .mount(&h.graph)
        .await;
    Mock::given(method("POST"))
        .and(wiremock::matchers::path_regex(
            r"^/v25\.0/[0-9]+/subscribed_apps$",
        ))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"success": true})))
        .mount(&h.graph)
        .await;
}

fn page(id: &str, name: &str, ig: Option<(&str, &str)>) -> Value {
    let mut p = json!({"id": id, "name": name, "access_token": format!("PAGE-TOKEN-{id}"), "tasks": ["MANAGE", "MESSAGING"]});
    if let Some((ig_id, user)) = ig {
        p["instagram_business_account"] = json!({"id": ig_id, "username": user});
    }
    p
}

/// /install → LiveChat → back; returns the Facebook dialog URL.
async fn through_livechat(h: &Harness) -> String {
    let start = get(h, "/install").await;
    assert_eq!(start.status, StatusCode::SEE_OTHER);
    let lc = query(start.location.as_deref().unwrap());
    assert_eq!(lc["response_type"], "code");
    assert_eq!(lc["client_id"], "CLIENT_ID_0001");
    assert_eq!(
        lc["redirect_uri"],
        "https://bridge.example.com/oauth/livechat/callback"
    );
    let back = get(
        h,
        &format!(
            "/oauth/livechat/callback?code=dal%3ACODE&state={}",
            urlencode(&lc["state"])
        ),
    )
    .await;
    assert_eq!(back.status, StatusCode::SEE_OTHER, "{}", back.body);
    back.location.unwrap()
}

#[tokio::test]
async fn one_page_is_connected_straight_away() {
    let h = Harness::new().await;
    fakes(&h, json!({"data": [page("100000000000009", "Shop Page", Some((IG_NEW, "shop_new"))), page("100000000000010", "No IG", None)]})).await;
    let dialog = through_livechat(&h).await;
    assert!(
        dialog.starts_with("https://www.facebook.com/v25.0/dialog/oauth?"),
        "{dialog}"
    );
    let fb = query(&dialog);
    assert_eq!(fb["client_id"], "1234");
    assert_eq!(
        fb["redirect_uri"],
        "https://bridge.example.com/oauth/facebook/callback"
    );
    assert!(
        fb["scope"].contains("instagram_manage_messages")
            && fb["scope"].contains("pages_manage_metadata")
    );

    let exchange = h.requests("/v2/token").await;
    let form = String::from_utf8(exchange[0].body.clone()).unwrap();
    assert!(
        form.contains("grant_type=authorization_code")
            && form.contains("code=dal%3ACODE")
            && form.contains("client_secret=lc-client-secret"),
        "{form}"
    );

    let done = get(
        &h,
        &format!(
            "/oauth/facebook/callback?code=FBCODE&state={}",
            urlencode(&fb["state"])
        ),
    )
    .await;
    assert_eq!(done.status, StatusCode::OK, "{}", done.body);
    assert!(done.body.contains("Instagram is connected") && done.body.contains("@shop_new"));
    assert!(!done.body.contains("PAGE-TOKEN"));

    let subs: Vec<_> = h
        .graph
        .received_requests()
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.url.path().ends_with("/subscribed_apps"))
        .collect();
    assert_eq!(subs.len(), 1);
    assert_eq!(subs[0].url.path(), "/v25.0/100000000000009/subscribed_apps");
    assert_eq!(
        subs[0].headers["authorization"],
        "Bearer PAGE-TOKEN-100000000000009"
    );
    assert_eq!(
        String::from_utf8(subs[0].body.clone()).unwrap(),
        "subscribed_fields=messages%2Cmessaging_postbacks%2Cmessage_reactions%2Cmessaging_seen%2Cmessaging_referral"
    );

    let inst: Installation = h
        .services
        .repo
        .get(&Installation::key_for(NEW_ORG))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(inst.status, InstallationStatus::Active);
    assert!(inst.scopes.contains(&"customers:own".to_string()));
    let conn: InstagramConnection = h
        .services
        .repo
        .get(&InstagramConnection::key_for(NEW_ORG, IG_NEW))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (
            conn.page_id.as_str(),
            conn.facebook_user_id.as_str(),
            conn.ig_username.as_deref()
        ),
        ("100000000000009", "fbuser-new", Some("shop_new"))
    );
    let token = h
        .services
        .config
        .cipher
        .open(
            conn.page_token.as_ref().unwrap(),
            &token_context(NEW_ORG, &format!("instagram.page_token:{IG_NEW}")),
        )
        .unwrap();
    assert_eq!(
        secrecy::ExposeSecret::expose_secret(&token),
        "PAGE-TOKEN-100000000000009"
    );
    let route: AccountRoute = h
        .services
        .repo
        .get(&AccountRoute::key_for(IG_NEW))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(route.organization_id, NEW_ORG);
    assert!(
        h.services
            .repo
            .get::<FacebookUserLink>(&FacebookUserLink::key_for("fbuser-new", NEW_ORG, IG_NEW))
            .await
            .unwrap()
            .is_some()
    );
}

#[tokio::test]
async fn several_pages_show_a_chooser_without_tokens_and_the_choice_connects() {
    let h = Harness::new().await;
    fakes(&h, json!({"data": [page("100000000000011", "First <Shop>", Some(("17841400000000011", "first"))), page("100000000000012", "Second", Some(("17841400000000012", "second")))]})).await;
    let fb = query(&through_livechat(&h).await);
    let chooser = get(
        &h,
        &format!(
            "/oauth/facebook/callback?code=FBCODE&state={}",
            urlencode(&fb["state"])
        ),
    )
    .await;
    assert_eq!(chooser.status, StatusCode::OK);
    assert!(chooser.body.contains("First &lt;Shop&gt;") && chooser.body.contains("@second"));
    assert!(
        !chooser.body.contains("PAGE-TOKEN"),
        "Page tokens never reach the browser"
    );
    let state = chooser
        .body
        .split("name=\"state\" value=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_string();
    let chosen = post_form(
        &h,
        "/oauth/facebook/select",
        &[("state", &state), ("page_id", "100000000000012")],
    )
    .await;
    assert_eq!(chosen.status, StatusCode::OK, "{}", chosen.body);
    assert!(chosen.body.contains("@second"));
    assert!(
        h.services
            .repo
            .get::<InstagramConnection>(&InstagramConnection::key_for(NEW_ORG, "17841400000000012"))
            .await
            .unwrap()
            .is_some()
    );
    assert!(
        h.services
            .repo
            .get::<InstagramConnection>(&InstagramConnection::key_for(NEW_ORG, "17841400000000011"))
            .await
            .unwrap()
            .is_none()
    );
    // The chooser's state is single-use.
    let again = post_form(
        &h,
        "/oauth/facebook/select",
        &[("state", &state), ("page_id", "100000000000011")],
    )
    .await;
    assert_eq!(again.status, StatusCode::BAD_REQUEST);
    assert!(
        h.services
            .repo
            .get::<InstagramConnection>(&InstagramConnection::key_for(NEW_ORG, "17841400000000011"))
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn no_page_with_instagram_explains_what_to_link() {
    let h = Harness::new().await;
    fakes(
        &h,
        json!({"data": [page("100000000000013", "Plain Page", None)]}),
    )
    .await;
    let fb = query(&through_livechat(&h).await);
    let res = get(
        &h,
        &format!(
            "/oauth/facebook/callback?code=FBCODE&state={}",
            urlencode(&fb["state"])
        ),
    )
    .await;
    assert_eq!(res.status, StatusCode::OK);
    assert!(
        res.body.contains("No Instagram account found") && res.body.contains("Meta Business Suite")
    );
    assert!(
        h.graph
            .received_requests()
            .await
            .unwrap()
            .iter()
            .all(|r| !r.url.path().ends_with("/subscribed_apps"))
    );
}

#[tokio::test]
async fn forged_expired_replayed_or_missing_states_are_refused_and_store_nothing() {
    let h = Harness::new().await;
    fakes(
        &h,
        json!({"data": [page("100000000000009", "Shop", Some((IG_NEW, "shop_new")))]}),
    )
    .await;
    let forged = get(
        &h,
        "/oauth/livechat/callback?code=dal%3ACODE&state=eyJuIjoieCJ9.AAAA",
    )
    .await;
    assert_eq!(forged.status, StatusCode::BAD_REQUEST);
    assert!(
        h.requests("/v2/token").await.is_empty(),
        "no exchange for a forged state"
    );

    let start = query(get(&h, "/install").await.location.as_deref().unwrap());
    h.clock.advance(chrono::Duration::minutes(16));
    let expired = get(
        &h,
        &format!(
            "/oauth/livechat/callback?code=dal%3ACODE&state={}",
            urlencode(&start["state"])
        ),
    )
    .await;
    assert_eq!(expired.status, StatusCode::BAD_REQUEST);
    assert!(
        h.services
            .repo
            .get::<Installation>(&Installation::key_for(NEW_ORG))
            .await
            .unwrap()
            .is_none()
    );

    let dialog = query(&through_livechat(&h).await);
    let lc_state = {
        let s = query(get(&h, "/install").await.location.as_deref().unwrap());
        s["state"].clone()
    };
    // A LiveChat-step state is no good at the Facebook step, and the Facebook step needs one.
    assert_eq!(
        get(
            &h,
            &format!(
                "/oauth/facebook/callback?code=FBCODE&state={}",
                urlencode(&lc_state)
            )
        )
        .await
        .status,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        get(&h, "/oauth/facebook/callback?code=FBCODE").await.status,
        StatusCode::BAD_REQUEST
    );
    let ok = get(
        &h,
        &format!(
            "/oauth/facebook/callback?code=FBCODE&state={}",
            urlencode(&dialog["state"])
        ),
    )
    .await;
    assert_eq!(ok.status, StatusCode::OK);
    let replay = get(
        &h,
        &format!(
            "/oauth/facebook/callback?code=FBCODE&state={}",
            urlencode(&dialog["state"])
        ),
    )
    .await;
    assert_eq!(replay.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        post_form(&h, "/oauth/facebook/select", &[("page_id", "1")])
            .await
            .status,
        StatusCode::BAD_REQUEST
    );
}

#[tokio::test]
async fn failed_exchanges_and_missing_scopes_leave_nothing_half_made() {
    let h = Harness::new().await;
    Mock::given(method("POST"))
        .and(path("/v2/token"))
        .respond_with(
            ResponseTemplate::new(400).set_body_json(
                json!({"error": "invalid_grant", "error_description": "code expired"}),
            ),
        )
        .up_to_n_times(1)
        .mount(&h.livechat)
        .await;
    let start = query(get(&h, "/install").await.location.as_deref().unwrap());
    let failed = get(
        &h,
        &format!(
            "/oauth/livechat/callback?code=dal%3AOLD&state={}",
            urlencode(&start["state"])
        ),
    )
    .await;
    assert_eq!(failed.status, StatusCode::BAD_GATEWAY);
    assert!(failed.body.contains("Start the installation again"));
    assert!(
        h.services
            .repo
            .get::<Installation>(&Installation::key_for(NEW_ORG))
            .await
            .unwrap()
            .is_none()
    );

    Mock::given(method("POST")).and(path("/v2/token"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"access_token": "dal:X", "expires_in": 28800, "organization_id": NEW_ORG, "refresh_token": "R", "scope": "chats--all:rw"})))
        .up_to_n_times(1).mount(&h.livechat).await;
    let start = query(get(&h, "/install").await.location.as_deref().unwrap());
    let missing = get(
        &h,
        &format!(
            "/oauth/livechat/callback?code=dal%3AC&state={}",
            urlencode(&start["state"])
        ),
    )
    .await;
    assert_eq!(missing.status, StatusCode::FORBIDDEN);
    assert!(missing.body.contains("customers:own"));
    assert!(
        h.services
            .repo
            .get::<Installation>(&Installation::key_for(NEW_ORG))
            .await
            .unwrap()
            .is_none()
    );

    // The Graph fails while listing Pages: no connection.
    fakes(&h, json!({})).await;
    Mock::given(method("GET"))
        .and(path("/v25.0/me/accounts"))
        .respond_with(
            ResponseTemplate::new(500)
                .set_body_json(json!({"error": {"message": "An unknown error", "code": 1}})),
        )
        .with_priority(1)
        .mount(&h.graph)
        .await;
    let fb = query(&through_livechat(&h).await);
    let res = get(
        &h,
        &format!(
            "/oauth/facebook/callback?code=FBCODE&state={}",
            urlencode(&fb["state"])
        ),
    )
    .await;
    assert_eq!(res.status, StatusCode::BAD_GATEWAY);
    assert!(res.body.contains("listing your Pages"));
    assert!(
        h.services
            .repo
            .get::<AccountRoute>(&AccountRoute::key_for(IG_NEW))
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn a_marketplace_install_without_our_state_asks_for_confirmation_first() {
    let h = Harness::new().await;
    fakes(&h, json!({"data": []})).await;
    let res = get(&h, "/oauth/livechat/callback?code=dal%3AMARKET").await;
    assert_eq!(
        res.status,
        StatusCode::OK,
        "no automatic redirect to Facebook"
    );
    assert!(
        res.body.contains(NEW_ORG) && res.body.contains("00000000-0000-4000-8000-00000000b00f")
    );
    assert!(res.body.contains("If you did not start this installation"));
    let link = res
        .body
        .split("class=\"button\" href=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .replace("&amp;", "&");
    assert!(link.starts_with("https://www.facebook.com/v25.0/dialog/oauth?"));
    assert!(!query(&link)["state"].is_empty());
}

#[tokio::test]
async fn an_account_connected_to_another_live_installation_is_refused_and_reconnecting_replaces_the_token()
 {
    let h = Harness::new().await;
    // IG (from the harness) belongs to ORG, which is live.
    fakes(
        &h,
        json!({"data": [page("100000000000001", "Taken", Some((IG, "shop")))]}),
    )
    .await;
    let fb = query(&through_livechat(&h).await);
    let res = get(
        &h,
        &format!(
            "/oauth/facebook/callback?code=FBCODE&state={}",
            urlencode(&fb["state"])
        ),
    )
    .await;
    assert_eq!(res.status, StatusCode::CONFLICT);
    assert!(
        res.body
            .contains("already connected to another LiveChat account")
    );
    let route: AccountRoute = h
        .services
        .repo
        .get(&AccountRoute::key_for(IG))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(route.organization_id, ORG);

    // The same organization reconnecting its own account replaces the Page token.
    let mut inst: Installation = h
        .services
        .repo
        .get(&Installation::key_for(ORG))
        .await
        .unwrap()
        .unwrap();
    inst.organization_id = NEW_ORG.into();
    let _ = inst;
    let mut route = route;
    route.organization_id = NEW_ORG.into();
    h.services
        .repo
        .put(&route, Condition::Always)
        .await
        .unwrap();
    let fb = query(&through_livechat(&h).await);
    let res = get(
        &h,
        &format!(
            "/oauth/facebook/callback?code=FBCODE&state={}",
            urlencode(&fb["state"])
        ),
    )
    .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    let conn: InstagramConnection = h
        .services
        .repo
        .get(&InstagramConnection::key_for(NEW_ORG, IG))
        .await
        .unwrap()
        .unwrap();
    let token = h
        .services
        .config
        .cipher
        .open(
            conn.page_token.as_ref().unwrap(),
            &token_context(NEW_ORG, &format!("instagram.page_token:{IG}")),
        )
        .unwrap();
    assert_eq!(
        secrecy::ExposeSecret::expose_secret(&token),
        "PAGE-TOKEN-100000000000001"
    );
    let _ = h.clock.now();
}
