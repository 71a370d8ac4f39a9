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
use serde_json::Value;
use shared::clock::Clock;
use shared::domain::*;
use shared::store::Condition;
use std::sync::atomic::{AtomicUsize, Ordering};
use testkit::fixture;
use testkit::meta::FbPage;
use tower::ServiceExt;

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

static CODES: AtomicUsize = AtomicUsize::new(0);

fn fresh(prefix: &str) -> String {
    format!("{prefix}-{}", CODES.fetch_add(1, Ordering::SeqCst))
}

const NEW_ACCOUNT: &str = "00000000-0000-4000-8000-00000000b00f";
const FB_USER: &str = "fbuser-new";

/// The Facebook user who logs in manages `pages`; Meta checks the callback URL at the exchange.
fn fakes(h: &Harness, pages: Vec<FbPage>) {
    h.graph.add_user(FB_USER, &fresh("FBCODE"), pages);
    h.graph
        .expect_redirect_uri("https://bridge.example.com/oauth/facebook/callback");
}

/// A fresh Facebook Login code for the user (Meta's codes are single use).
fn fb_code(h: &Harness) -> String {
    let code = fresh("FBCODE");
    h.graph.add_user(FB_USER, &code, vec![]);
    code
}

/// A fresh LiveChat authorization code for the new organization, with `scope`.
fn lc_code(h: &Harness, scope: &str) -> String {
    let code = fresh("dal:CODE");
    h.livechat.add_code(&code, NEW_ORG, NEW_ACCOUNT, scope);
    code
}

fn page(id: &str, name: &str, ig: Option<(&str, &str)>) -> FbPage {
    FbPage::new(id, name, ig)
}

async fn facebook_back(h: &Harness, state: &str) -> Answer {
    let code = fb_code(h);
    get(
        h,
        &format!(
            "/oauth/facebook/callback?code={code}&state={}",
            urlencode(state)
        ),
    )
    .await
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
    let code = lc_code(h, "chats--all:rw,customers:own");
    let back = get(
        h,
        &format!(
            "/oauth/livechat/callback?code={}&state={}",
            urlencode(&code),
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
    fakes(
        &h,
        vec![
            page("100000000000009", "Shop Page", Some((IG_NEW, "shop_new"))),
            page("100000000000010", "No IG", None),
        ],
    );
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

    let done = facebook_back(&h, &fb["state"]).await;
    assert_eq!(done.status, StatusCode::OK, "{}", done.body);
    assert!(done.body.contains("Instagram is connected") && done.body.contains("@shop_new"));
    assert!(!done.body.contains("PAGE-TOKEN"));

    // Meta accepted every call: Page field names, appsecret_proof, token kinds.
    h.assert_nothing_refused();
    assert_eq!(
        h.graph.subscription("100000000000009"),
        Some(
            shared::install::SUBSCRIBED_FIELDS
                .iter()
                .map(|f| f.to_string())
                .collect()
        )
    );
    let subs: Vec<_> = h
        .graph
        .calls()
        .into_iter()
        .filter(|c| c.path.ends_with("/subscribed_apps"))
        .collect();
    assert_eq!(subs.len(), 1);
    assert_eq!(
        subs[0].params["appsecret_proof"],
        testkit::meta::appsecret_proof(APP_SECRET, "PAGE-TOKEN-100000000000009")
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
    fakes(
        &h,
        vec![
            page(
                "100000000000011",
                "First <Shop>",
                Some(("17841400000000011", "first")),
            ),
            page(
                "100000000000012",
                "Second",
                Some(("17841400000000012", "second")),
            ),
        ],
    );
    let fb = query(&through_livechat(&h).await);
    let chooser = facebook_back(&h, &fb["state"]).await;
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
    fakes(&h, vec![page("100000000000013", "Plain Page", None)]);
    let fb = query(&through_livechat(&h).await);
    let res = facebook_back(&h, &fb["state"]).await;
    assert_eq!(res.status, StatusCode::OK);
    assert!(
        res.body.contains("No Instagram account found") && res.body.contains("Meta Business Suite")
    );
    assert!(
        res.body.contains("Plain Page")
            && res
                .body
                .contains("no Instagram professional account is linked"),
        "the Page seen is listed with the reason: {}",
        res.body
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
        vec![page("100000000000009", "Shop", Some((IG_NEW, "shop_new")))],
    );
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
    let ok = facebook_back(&h, &dialog["state"]).await;
    assert_eq!(ok.status, StatusCode::OK);
    let replay = facebook_back(&h, &dialog["state"]).await;
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
    // A code LiveChat never issued (or already used): `unauthorized_client`.
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

    // An agent without the administrator scope approves: no `customers:own`.
    let code = lc_code(&h, "chats--all:rw");
    let start = query(get(&h, "/install").await.location.as_deref().unwrap());
    let missing = get(
        &h,
        &format!(
            "/oauth/livechat/callback?code={}&state={}",
            urlencode(&code),
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
    fakes(
        &h,
        vec![page("100000000000009", "Shop", Some((IG_NEW, "shop_new")))],
    );
    h.graph
        .fail_next("GET", "me/accounts", fixture("meta/error_2_service"), 1);
    let fb = query(&through_livechat(&h).await);
    let res = facebook_back(&h, &fb["state"]).await;
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
    fakes(&h, vec![]);
    h.livechat.add_code(
        "dal:MARKET",
        NEW_ORG,
        NEW_ACCOUNT,
        "chats--all:rw,customers:own",
    );
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
        vec![page("100000000000001", "Taken", Some((IG, "shop")))],
    );
    let fb = query(&through_livechat(&h).await);
    let res = facebook_back(&h, &fb["state"]).await;
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
    let res = facebook_back(&h, &fb["state"]).await;
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

/// A person with many Pages: `/me/accounts` is paged (100 per request here), and the only
/// connectable Page is on the second page of results.
fn many_pages(eligible_at: usize) -> Vec<FbPage> {
    (0..150)
        .map(|i| {
            let id = format!("2000000000{i:05}");
            if i == eligible_at {
                page(&id, "The Shop", Some((IG_NEW, "the_shop")))
            } else if i % 2 == 0 {
                page(&id, &format!("Page {i}"), None)
            } else {
                page(
                    &id,
                    &format!("Page {i}"),
                    Some((&format!("1784149{i:010}"), "other")),
                )
                .tasks(&["ANALYZE", "ADVERTISE", "CREATE_CONTENT"])
            }
        })
        .collect()
}

#[tokio::test]
async fn the_page_list_is_followed_to_its_end_and_only_messaging_pages_are_offered() {
    let h = Harness::new().await;
    fakes(&h, many_pages(130));
    let fb = query(&through_livechat(&h).await);
    let res = facebook_back(&h, &fb["state"]).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    assert!(res.body.contains("Instagram is connected") && res.body.contains("@the_shop"));
    h.assert_nothing_refused();
    let listings: Vec<_> = h
        .graph
        .calls()
        .into_iter()
        .filter(|c| c.path == "me/accounts")
        .collect();
    assert_eq!(listings.len(), 2, "two pages of results");
    assert!(!listings[0].params.contains_key("after"));
    assert!(listings[1].params.contains_key("after"));
    let conn: InstagramConnection = h
        .services
        .repo
        .get(&InstagramConnection::key_for(NEW_ORG, IG_NEW))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(conn.page_id, "200000000000130");
}

#[tokio::test]
async fn pages_that_cannot_message_are_listed_with_the_reason_not_offered() {
    let h = Harness::new().await;
    fakes(
        &h,
        vec![
            page(
                "100000000000021",
                "Can Message",
                Some(("17841400000000021", "can")),
            ),
            page(
                "100000000000022",
                "Analyst Only",
                Some(("17841400000000022", "analyst")),
            )
            .tasks(&["ANALYZE"]),
            page(
                "100000000000023",
                "Moderator",
                Some(("17841400000000023", "moderator")),
            )
            .tasks(&["MODERATE"]),
            page("100000000000024", "No Instagram", None),
        ],
    );
    let fb = query(&through_livechat(&h).await);
    let chooser = facebook_back(&h, &fb["state"]).await;
    assert_eq!(chooser.status, StatusCode::OK);
    let form = chooser.body.split("</form>").next().unwrap();
    assert!(
        form.contains("value=\"100000000000021\"") && form.contains("value=\"100000000000023\"")
    );
    assert!(!form.contains("100000000000022") && !form.contains("100000000000024"));
    let rest = chooser.body.split("</form>").nth(1).unwrap();
    assert!(rest.contains("Analyst Only") && rest.contains("cannot manage messages"));
    assert!(rest.contains("No Instagram") && rest.contains("no Instagram professional account"));
}

#[tokio::test]
async fn a_refused_page_subscription_connects_nothing_and_says_so() {
    let h = Harness::new().await;
    fakes(
        &h,
        vec![page("100000000000009", "Shop", Some((IG_NEW, "shop_new")))],
    );
    let refusal = fixture("meta/error_100_subscribed_fields").with(&[
        ("index", "3"),
        ("fields", "feed, mention, …"),
        ("got", "messaging_seen"),
    ]);
    h.graph.fail_next("POST", "subscribed_apps", refusal, 1);
    let fb = query(&through_livechat(&h).await);
    let res = facebook_back(&h, &fb["state"]).await;
    assert_eq!(res.status, StatusCode::BAD_GATEWAY);
    assert!(
        res.body.contains("Could not subscribe the Page")
            && res.body.contains("Nothing was connected")
    );
    for key in [
        InstagramConnection::key_for(NEW_ORG, IG_NEW),
        AccountRoute::key_for(IG_NEW),
        FacebookUserLink::key_for(FB_USER, NEW_ORG, IG_NEW),
    ] {
        assert!(
            h.services.repo.store().get(&key).await.unwrap().is_none(),
            "{key:?}"
        );
    }
}

#[tokio::test]
async fn graph_calls_without_a_valid_appsecret_proof_are_refused_by_the_fake() {
    // The fake is what makes the other tests meaningful: a missing or wrong proof is refused with
    // Meta's error, and the install then fails visibly.
    let meta = testkit::meta::FakeMeta::start("1234", APP_SECRET).await;
    meta.add_user("u1", "C1", vec![page("1", "P", Some(("17", "p")))]);
    let http = reqwest::Client::new();
    let url = format!("{}/v25.0/me/accounts", meta.uri());
    let exchanged = http
        .get(format!("{}/v25.0/oauth/access_token", meta.uri()))
        .query(&[
            ("client_id", "1234"),
            ("client_secret", APP_SECRET),
            ("code", "C1"),
            ("redirect_uri", "x"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(exchanged.status(), 200);
    let missing = http.get(&url).bearer_auth("EAAS-u1").send().await.unwrap();
    assert_eq!(missing.status(), 400);
    let wrong = http
        .get(&url)
        .bearer_auth("EAAS-u1")
        .query(&[("appsecret_proof", "00")])
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    assert_eq!(
        wrong["error"]["message"],
        "Invalid appsecret_proof provided in the API argument"
    );
    let right = http
        .get(&url)
        .bearer_auth("EAAS-u1")
        .query(&[(
            "appsecret_proof",
            testkit::meta::appsecret_proof(APP_SECRET, "EAAS-u1"),
        )])
        .send()
        .await
        .unwrap();
    assert_eq!(right.status(), 200);
    assert_eq!(
        meta.refusals(),
        vec![
            "API calls from the server require an appsecret_proof argument".to_string(),
            "Invalid appsecret_proof provided in the API argument".to_string()
        ]
    );
}
