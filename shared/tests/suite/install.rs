//! The install flow against the strict fakes of LiveChat and the Graph API, driven as one or two
//! browser tabs would (each with its own flow secret): the confirmation, several Pages, none,
//! forwarded links, races, and every bad-input case. No response ever sets a cookie, and every
//! page carries the security headers.

use shared::ids::{FacebookUserId, IgAccountId, OrgId};
use testkit::bridge;

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use bridge::*;
use http_body_util::BodyExt;
use serde_json::Value;
use shared::cipher::TokenContext;
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
    let res = shared::web::oauth_install::router(h.services.install())
        .oneshot(req)
        .await
        .unwrap();
    assert!(
        !res.headers().contains_key(header::SET_COOKIE),
        "no cookies, ever"
    );
    let html = res
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|c| c.to_str().unwrap().starts_with("text/html"));
    if html {
        let csp = res.headers()[header::CONTENT_SECURITY_POLICY]
            .to_str()
            .unwrap();
        assert!(csp.contains("frame-ancestors 'none'") && csp.contains("default-src 'none'"));
        assert_eq!(res.headers()[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
        assert_eq!(res.headers()[header::REFERRER_POLICY], "no-referrer");
    }
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
const ORG_NAME: &str = "New Shop <Ltd>";
const OWNER: &str = "owner@newshop.example";
const SCOPES: &str = "chats--all:rw,customers:own,agents--all:ro";

/// One browser tab: the secret the install page keeps in its `sessionStorage`.
struct Tab {
    secret: String,
}

impl Tab {
    fn new() -> Self {
        Tab {
            secret: fresh("tab-secret"),
        }
    }

    fn binding(&self) -> String {
        shared::install::state::binding_of(&self.secret)
    }
}

/// The Facebook user who logs in manages `pages`; Meta checks the callback URL at the exchange.
fn fakes(h: &Harness, pages: Vec<FbPage>) {
    h.graph.add_user(FB_USER, &fresh("FBCODE"), pages);
    h.graph
        .expect_redirect_uri("https://bridge.example.com/oauth/facebook/callback");
    h.livechat.add_organization(NEW_ORG, ORG_NAME, OWNER);
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

/// A hidden field of the first form in a page.
fn hidden(body: &str, name: &str) -> String {
    body.split(&format!("name=\"{name}\" value=\""))
        .nth(1)
        .unwrap_or_else(|| panic!("no field {name} in {body}"))
        .split('"')
        .next()
        .unwrap()
        .replace("&amp;", "&")
}

/// The tab opens /install (the page makes its secret) and goes on to LiveChat: the authorize
/// URL's query.
async fn start(h: &Harness, tab: &Tab) -> HashMap<String, String> {
    let page = get(h, "/install").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(
        page.body.contains("id=\"begin\" data-next=\"/install\""),
        "{}",
        page.body
    );
    let on = get(h, &format!("/install?b={}", tab.binding())).await;
    assert_eq!(on.status, StatusCode::SEE_OTHER, "{}", on.body);
    query(on.location.as_deref().unwrap())
}

/// A platform redirects the tab to `path` with `code` and `state`: the page posts them back
/// with the tab's secret (`browser`, as the page's script does).
async fn redirected(h: &Harness, tab: &Tab, path: &str, code: &str, state: &str) -> Answer {
    let landing = get(
        h,
        &format!("{path}?code={}&state={}", urlencode(code), urlencode(state)),
    )
    .await;
    assert_eq!(landing.status, StatusCode::OK, "{}", landing.body);
    assert!(landing.body.contains("data-auto"), "{}", landing.body);
    assert_eq!(hidden(&landing.body, "code"), code);
    post_form(
        h,
        path,
        &[
            ("code", code),
            ("state", &hidden(&landing.body, "state")),
            ("browser", &tab.secret),
        ],
    )
    .await
}

/// /install → LiveChat → back in the same tab; returns the Facebook dialog URL.
async fn through_livechat(h: &Harness, tab: &Tab) -> String {
    let lc = start(h, tab).await;
    assert_eq!(lc["response_type"], "code");
    assert_eq!(lc["client_id"], "CLIENT_ID_0001");
    assert_eq!(
        lc["redirect_uri"],
        "https://bridge.example.com/oauth/livechat/callback"
    );
    let code = lc_code(h, SCOPES);
    let back = redirected(h, tab, "/oauth/livechat/callback", &code, &lc["state"]).await;
    facebook_link(&back)
}

/// The Facebook dialog link the page follows after the LiveChat step.
fn facebook_link(back: &Answer) -> String {
    assert_eq!(back.status, StatusCode::OK, "{}", back.body);
    back.body
        .split("data-go href=\"")
        .nth(1)
        .unwrap_or_else(|| panic!("no link in {}", back.body))
        .split('"')
        .next()
        .unwrap()
        .replace("&amp;", "&")
}

/// Facebook Login done in the tab: the confirmation page (or what stops the flow).
async fn facebook_back(h: &Harness, tab: &Tab, state: &str) -> Answer {
    let code = fb_code(h);
    redirected(h, tab, "/oauth/facebook/callback", &code, state).await
}

/// The tab confirms `page_id` on the confirmation page.
async fn confirm(h: &Harness, tab: &Tab, confirmation: &Answer, page_id: &str) -> Answer {
    post_form(
        h,
        "/oauth/facebook/select",
        &[
            ("state", &hidden(&confirmation.body, "state")),
            ("page_id", page_id),
            ("browser", &tab.secret),
        ],
    )
    .await
}

/// Whether anything of the new organization's connection exists.
async fn nothing_connected(h: &Harness, ig: &str) -> bool {
    let mut none = true;
    for key in [
        InstagramConnection::key_for(&OrgId::from(NEW_ORG), &IgAccountId::from(ig)),
        AccountRoute::key_for(&IgAccountId::from(ig)),
        FacebookUserLink::key_for(
            &FacebookUserId::from(FB_USER),
            &OrgId::from(NEW_ORG),
            &IgAccountId::from(ig),
        ),
    ] {
        none &= h.services.repo.store().get(&key).await.unwrap().is_none();
    }
    none
}

#[tokio::test]
async fn the_confirmation_names_the_organization_and_the_page_and_only_then_connects() {
    let h = Harness::new().await;
    fakes(
        &h,
        vec![
            page("100000000000009", "Shop Page", Some((IG_NEW, "shop_new"))),
            page("100000000000010", "No IG", None),
        ],
    );
    let tab = Tab::new();
    let dialog = through_livechat(&h, &tab).await;
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
    assert!(
        !fb["state"].contains(OWNER) && !fb["state"].contains("Shop"),
        "the state is sealed"
    );
    let exchange = h.requests("/v2/token").await;
    let form = String::from_utf8(exchange[0].body.clone()).unwrap();
    assert!(
        form.contains("grant_type=authorization_code")
            && form.contains("code=dal%3ACODE")
            && form.contains("client_secret=lc-client-secret"),
        "{form}"
    );

    let shown = facebook_back(&h, &tab, &fb["state"]).await;
    assert_eq!(shown.status, StatusCode::OK, "{}", shown.body);
    // The code exchanges carry the app secret in a POST body, never in a URL.
    let exchanges: Vec<_> = h
        .graph
        .received_requests()
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.url.path().ends_with("oauth/access_token"))
        .collect();
    assert_eq!(exchanges.len(), 2, "the code, then the long-lived token");
    for r in &exchanges {
        assert_eq!(r.method.as_str(), "POST");
        assert!(!r.url.query().unwrap_or("").contains("secret"), "{}", r.url);
        assert!(String::from_utf8_lossy(&r.body).contains("client_secret="));
    }
    for what in [
        "Confirm the connection",
        "New Shop &lt;Ltd&gt;",
        OWNER,
        NEW_ORG,
        "Shop Page",
        "@shop_new",
    ] {
        assert!(shown.body.contains(what), "{what}: {}", shown.body);
    }
    assert!(
        !shown.body.contains("PAGE-TOKEN"),
        "Page tokens reach the browser only sealed"
    );
    assert!(
        nothing_connected(&h, IG_NEW).await,
        "nothing before the POST"
    );
    assert_eq!(h.graph.subscription("100000000000009"), None);

    let done = confirm(&h, &tab, &shown, "100000000000009").await;
    assert_eq!(done.status, StatusCode::OK, "{}", done.body);
    assert!(done.body.contains("Instagram is connected") && done.body.contains("@shop_new"));
    assert!(!done.body.contains("PAGE-TOKEN"));

    // Meta and LiveChat accepted every call: Page field names, appsecret_proof, token kinds.
    h.assert_nothing_refused();
    assert_eq!(
        h.graph.subscription("100000000000009"),
        Some(
            shared::instagram::graph::SUBSCRIBED_FIELDS
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

    let inst = h.installation(NEW_ORG).await;
    assert_eq!(inst.status, InstallationStatus::Active);
    assert!(inst.scopes.contains(&"customers:own".to_string()));
    let conn: InstagramConnection = h
        .services
        .repo
        .get(&InstagramConnection::key_for(
            &OrgId::from(NEW_ORG),
            &IgAccountId::from(IG_NEW),
        ))
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
            &TokenContext::Page {
                org: NEW_ORG,
                ig: IG_NEW,
            },
        )
        .unwrap();
    assert_eq!(
        secrecy::ExposeSecret::expose_secret(&token),
        "PAGE-TOKEN-100000000000009"
    );
    let route: AccountRoute = h
        .services
        .repo
        .get(&AccountRoute::key_for(&IgAccountId::from(IG_NEW)))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(route.organization_id, NEW_ORG);
    assert!(!nothing_connected(&h, IG_NEW).await);
}

#[tokio::test]
async fn several_pages_are_offered_and_the_confirmation_is_single_use() {
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
    let tab = Tab::new();
    let fb = query(&through_livechat(&h, &tab).await);
    let shown = facebook_back(&h, &tab, &fb["state"]).await;
    assert_eq!(shown.status, StatusCode::OK);
    assert!(shown.body.contains("First &lt;Shop&gt;") && shown.body.contains("@second"));
    assert!(!shown.body.contains("PAGE-TOKEN"));
    let chosen = confirm(&h, &tab, &shown, "100000000000012").await;
    assert_eq!(chosen.status, StatusCode::OK, "{}", chosen.body);
    assert!(chosen.body.contains("@second"));
    assert!(!nothing_connected(&h, "17841400000000012").await);
    assert!(nothing_connected(&h, "17841400000000011").await);
    // The confirmation is spent.
    let again = confirm(&h, &tab, &shown, "100000000000011").await;
    assert_eq!(again.status, StatusCode::BAD_REQUEST);
    assert!(nothing_connected(&h, "17841400000000011").await);
    // A Page that was not offered is refused.
    let tab2 = Tab::new();
    let fb = query(&through_livechat(&h, &tab2).await);
    let shown = facebook_back(&h, &tab2, &fb["state"]).await;
    let odd = confirm(&h, &tab2, &shown, "999").await;
    assert_eq!(odd.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn no_page_with_instagram_explains_what_to_link() {
    let h = Harness::new().await;
    fakes(&h, vec![page("100000000000013", "Plain Page", None)]);
    let tab = Tab::new();
    let fb = query(&through_livechat(&h, &tab).await);
    let res = facebook_back(&h, &tab, &fb["state"]).await;
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
async fn forged_expired_wrong_step_or_missing_states_are_refused_and_store_nothing() {
    let h = Harness::new().await;
    fakes(
        &h,
        vec![page("100000000000009", "Shop", Some((IG_NEW, "shop_new")))],
    );
    let tab = Tab::new();
    let forged = post_form(
        &h,
        "/oauth/livechat/callback",
        &[
            ("code", "dal:CODE"),
            ("state", "v1:k1:AAAA"),
            ("browser", &tab.secret),
        ],
    )
    .await;
    assert_eq!(forged.status, StatusCode::BAD_REQUEST);
    assert!(
        h.requests("/v2/token").await.is_empty(),
        "no exchange for a forged state"
    );
    // /install with something that is not a binding is the start page again.
    let unbound = get(&h, "/install?b=short").await;
    assert_eq!(unbound.status, StatusCode::OK);
    assert!(unbound.body.contains("id=\"begin\""));

    let lc = start(&h, &tab).await;
    h.clock.advance(chrono::Duration::minutes(16));
    let code = lc_code(&h, SCOPES);
    let expired = redirected(&h, &tab, "/oauth/livechat/callback", &code, &lc["state"]).await;
    assert_eq!(expired.status, StatusCode::BAD_REQUEST);
    assert!(
        h.services
            .repo
            .get::<Installation>(&Installation::key_for(&OrgId::from(NEW_ORG)))
            .await
            .unwrap()
            .is_none()
    );

    let dialog = query(&through_livechat(&h, &tab).await);
    let lc_state = start(&h, &tab).await["state"].clone();
    // A LiveChat-step state is no good at the Facebook step, and the Facebook step needs one.
    let wrong = facebook_back(&h, &tab, &lc_state).await;
    assert_eq!(wrong.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        get(&h, "/oauth/facebook/callback?code=FBCODE").await.status,
        StatusCode::BAD_REQUEST
    );
    // The Facebook state is no good at the confirmation.
    let skipped = post_form(
        &h,
        "/oauth/facebook/select",
        &[
            ("state", &dialog["state"]),
            ("page_id", "100000000000009"),
            ("browser", &tab.secret),
        ],
    )
    .await;
    assert_eq!(skipped.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        post_form(&h, "/oauth/facebook/select", &[("page_id", "1")])
            .await
            .status,
        StatusCode::BAD_REQUEST
    );
    assert!(nothing_connected(&h, IG_NEW).await);
}

#[tokio::test]
async fn failed_exchanges_and_missing_scopes_leave_nothing_half_made() {
    let h = Harness::new().await;
    h.livechat.add_organization(NEW_ORG, ORG_NAME, OWNER);
    let tab = Tab::new();
    // A code LiveChat never issued (or already used): `unauthorized_client`.
    let lc = start(&h, &tab).await;
    let failed = redirected(
        &h,
        &tab,
        "/oauth/livechat/callback",
        "dal:OLD",
        &lc["state"],
    )
    .await;
    assert_eq!(failed.status, StatusCode::BAD_GATEWAY);
    assert!(failed.body.contains("Start the installation again"));
    assert!(
        h.services
            .repo
            .get::<Installation>(&Installation::key_for(&OrgId::from(NEW_ORG)))
            .await
            .unwrap()
            .is_none()
    );

    // An agent without the administrator scopes approves: no `customers:own`, and an app
    // without `agents--all:ro` cannot name the owner.
    for (scope, missing) in [
        ("chats--all:rw,agents--all:ro", "customers:own"),
        ("chats--all:rw,customers:own", "agents--all:ro"),
    ] {
        let code = lc_code(&h, scope);
        let lc = start(&h, &tab).await;
        let refused = redirected(&h, &tab, "/oauth/livechat/callback", &code, &lc["state"]).await;
        assert_eq!(refused.status, StatusCode::FORBIDDEN);
        assert!(refused.body.contains(missing), "{}", refused.body);
        assert!(
            h.services
                .repo
                .get::<Installation>(&Installation::key_for(&OrgId::from(NEW_ORG)))
                .await
                .unwrap()
                .is_none()
        );
    }

    // The Graph fails while listing Pages: no connection.
    fakes(
        &h,
        vec![page("100000000000009", "Shop", Some((IG_NEW, "shop_new")))],
    );
    h.graph
        .fail_next("GET", "me/accounts", fixture("meta/error_2_service"), 1);
    let fb = query(&through_livechat(&h, &tab).await);
    let res = facebook_back(&h, &tab, &fb["state"]).await;
    assert_eq!(res.status, StatusCode::BAD_GATEWAY);
    assert!(res.body.contains("did not list your Pages"));
    assert!(nothing_connected(&h, IG_NEW).await);
}

#[tokio::test]
async fn a_marketplace_install_without_our_state_starts_a_flow_bound_to_this_tab() {
    let h = Harness::new().await;
    fakes(&h, vec![]);
    h.livechat
        .add_code("dal:MARKET", NEW_ORG, NEW_ACCOUNT, SCOPES);
    let res = get(&h, "/oauth/livechat/callback?code=dal%3AMARKET").await;
    assert_eq!(res.status, StatusCode::OK);
    assert!(
        res.body.contains("id=\"begin\""),
        "this tab starts its own flow: {}",
        res.body
    );
    assert!(
        h.requests("/v2/token").await.is_empty(),
        "a code that arrived without our state is never exchanged"
    );
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
    let tab = Tab::new();
    let fb = query(&through_livechat(&h, &tab).await);
    let shown = facebook_back(&h, &tab, &fb["state"]).await;
    let res = confirm(&h, &tab, &shown, "100000000000001").await;
    assert_eq!(res.status, StatusCode::CONFLICT);
    assert!(
        res.body
            .contains("already connected to another LiveChat account")
    );
    let route: AccountRoute = h
        .services
        .repo
        .get(&AccountRoute::key_for(&IgAccountId::from(IG)))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(route.organization_id, ORG);
    assert!(
        h.services
            .repo
            .get::<InstagramConnection>(&InstagramConnection::key_for(
                &OrgId::from(NEW_ORG),
                &IgAccountId::from(IG)
            ))
            .await
            .unwrap()
            .is_none()
    );

    // The same organization reconnecting its own account replaces the Page token.
    let mut route = route;
    route.organization_id = NEW_ORG.into();
    h.services
        .repo
        .put(&route, Condition::Always)
        .await
        .unwrap();
    let fb = query(&through_livechat(&h, &tab).await);
    let shown = facebook_back(&h, &tab, &fb["state"]).await;
    let res = confirm(&h, &tab, &shown, "100000000000001").await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    let conn: InstagramConnection = h
        .services
        .repo
        .get(&InstagramConnection::key_for(
            &OrgId::from(NEW_ORG),
            &IgAccountId::from(IG),
        ))
        .await
        .unwrap()
        .unwrap();
    let token = h
        .services
        .config
        .cipher
        .open(
            conn.page_token.as_ref().unwrap(),
            &TokenContext::Page {
                org: NEW_ORG,
                ig: IG,
            },
        )
        .unwrap();
    assert_eq!(
        secrecy::ExposeSecret::expose_secret(&token),
        "PAGE-TOKEN-100000000000001"
    );
}

/// The install flow runs in oauth-install, the internet-facing function: every table call it
/// makes — a first install, an install again (its replaced tokens revoked), a confirmation after
/// the uninstall (refused, what it obtained given back) — is one the function's role allows.
#[tokio::test]
async fn the_install_flow_touches_only_what_the_install_role_allows() {
    let store = Arc::new(testkit::store::RecordingStore::new(Arc::new(
        shared::store::MemoryStore::new(),
    )));
    let h = Harness::with_store(store.clone()).await;
    fakes(
        &h,
        vec![page("100000000000009", "Shop", Some((IG_NEW, "shop_new")))],
    );
    // Another person of the organization manages another Page.
    let other = page(
        "100000000000010",
        "Other",
        Some(("17841400000000010", "other")),
    );
    h.graph
        .add_user("fbuser-other", "FBCODE-OTHER", vec![other]);
    store.record(true);
    // A: as far as the confirmation, with the other person's Page.
    let tab_a = Tab::new();
    let fb = query(&through_livechat(&h, &tab_a).await);
    let shown_a = redirected(
        &h,
        &tab_a,
        "/oauth/facebook/callback",
        "FBCODE-OTHER",
        &fb["state"],
    )
    .await;
    // B: installs again (the tokens A's step stored are replaced) and connects.
    let tab_b = Tab::new();
    let fb = query(&through_livechat(&h, &tab_b).await);
    let shown = facebook_back(&h, &tab_b, &fb["state"]).await;
    let res = confirm(&h, &tab_b, &shown, "100000000000009").await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    store.record(false);
    h.services
        .lifecycle()
        .uninstall(&OrgId::from(NEW_ORG), None)
        .await
        .unwrap();
    // A confirms after the uninstall: refused, what it obtained given back.
    store.record(true);
    let refused = confirm(&h, &tab_a, &shown_a, "100000000000010").await;
    assert_eq!(refused.status, StatusCode::CONFLICT, "{}", refused.body);
    assert!(
        h.graph
            .revoked_users()
            .contains(&"fbuser-other".to_string())
    );
    store.record(false);
    let seen = store.seen();
    assert!(seen.iter().any(|(a, _)| a == "dynamodb:ConditionCheckItem"));
    testkit::lambda::template::assert_role_allows("OAuthInstallRole", &seen);
}

/// The installation's LiveChat tokens, opened.
async fn livechat_tokens(h: &Harness, org: &str) -> (String, String) {
    let inst = h.installation(org).await;
    let open = |sealed: &Option<shared::cipher::EncryptedToken>, context: TokenContext| {
        let token = h
            .services
            .config
            .cipher
            .open(sealed.as_ref().unwrap(), &context)
            .unwrap();
        secrecy::ExposeSecret::expose_secret(&token).to_string()
    };
    (
        open(&inst.access_token, TokenContext::AgentAccess { org }),
        open(&inst.refresh_token, TokenContext::AgentRefresh { org }),
    )
}

/// Installing again replaces the installation's LiveChat tokens with the new ones: the replaced
/// pair is queued for revocation in the same write as the new tokens (the uninstall revokes only
/// the current one, so a replaced one would stay usable), the sweeper revokes it, the new pair
/// stays live.
#[tokio::test]
async fn livechat_tokens_a_new_install_replaces_are_revoked() {
    let h = Harness::new().await;
    fakes(&h, vec![]);
    through_livechat(&h, &Tab::new()).await;
    let (access, refresh) = livechat_tokens(&h, NEW_ORG).await;
    assert!(h.livechat.token_live(&access) && h.livechat.token_live(&refresh));
    through_livechat(&h, &Tab::new()).await;
    let (new_access, new_refresh) = livechat_tokens(&h, NEW_ORG).await;
    assert_ne!(new_refresh, refresh);
    let queued: Vec<PendingRevocation> = h
        .services
        .repo
        .query_prefix(PendingRevocation::PARTITION, "")
        .await
        .unwrap();
    assert_eq!(queued.len(), 1, "queued with the save: {queued:?}");
    let swept = h.services.lifecycle().sweep(h.clock.now(), false).await;
    assert_eq!(swept.unwrap().revocations_done, 1);
    assert!(
        !h.livechat.token_live(&access),
        "the replaced access token revoked"
    );
    assert!(
        !h.livechat.token_live(&refresh),
        "the replaced refresh token revoked"
    );
    assert!(h.livechat.token_live(&new_access) && h.livechat.token_live(&new_refresh));
    h.assert_nothing_refused();
}

/// A confirmation that lands after the uninstall (the tab left open on the confirmation page,
/// LiveChat's uninstall in between) connects nothing: no connection, token, route or link is
/// stored, and what the flow obtained from Facebook is given back — the Page unsubscribed, the
/// person's grant revoked — since the purge would never unsubscribe a Page it does not know.
#[tokio::test]
async fn a_confirmation_after_the_uninstall_connects_nothing_and_gives_back_what_it_obtained() {
    let h = Harness::new().await;
    fakes(
        &h,
        vec![page("100000000000009", "Shop", Some((IG_NEW, "shop_new")))],
    );
    let tab = Tab::new();
    let fb = query(&through_livechat(&h, &tab).await);
    let shown = facebook_back(&h, &tab, &fb["state"]).await;
    assert_eq!(shown.status, StatusCode::OK, "{}", shown.body);
    h.services
        .lifecycle()
        .uninstall(&OrgId::from(NEW_ORG), None)
        .await
        .unwrap();
    let res = confirm(&h, &tab, &shown, "100000000000009").await;
    assert_eq!(res.status, StatusCode::CONFLICT, "{}", res.body);
    assert!(res.body.contains("uninstalled"), "{}", res.body);
    assert!(nothing_connected(&h, IG_NEW).await);
    assert_eq!(
        h.graph.subscription("100000000000009"),
        None,
        "unsubscribed again"
    );
    assert!(
        h.graph.revoked_users().contains(&FB_USER.to_string()),
        "the grant given back: {:?}",
        h.graph.revoked_users()
    );
    assert_eq!(
        h.installation(NEW_ORG).await.status,
        InstallationStatus::Uninstalled
    );
}

#[tokio::test]
async fn two_organizations_confirming_the_same_account_at_once_cannot_both_connect_it() {
    let h = Harness::new().await;
    let other_org = "00000000-0000-4000-8000-00000000a0ee";
    fakes(
        &h,
        vec![page("100000000000009", "Shop", Some((IG_NEW, "shop_new")))],
    );
    h.livechat
        .add_organization(other_org, "Other", "o@other.example");
    let (tab_a, tab_b) = (Tab::new(), Tab::new());
    // Both reach the confirmation before either confirms.
    let fb_a = query(&through_livechat(&h, &tab_a).await);
    let shown_a = facebook_back(&h, &tab_a, &fb_a["state"]).await;
    let lc = start(&h, &tab_b).await;
    let code = fresh("dal:CODE");
    h.livechat.add_code(&code, other_org, NEW_ACCOUNT, SCOPES);
    let back = redirected(&h, &tab_b, "/oauth/livechat/callback", &code, &lc["state"]).await;
    let fb_b = query(&facebook_link(&back));
    let shown_b = facebook_back(&h, &tab_b, &fb_b["state"]).await;
    let (a, b) = tokio::join!(
        confirm(&h, &tab_a, &shown_a, "100000000000009"),
        confirm(&h, &tab_b, &shown_b, "100000000000009")
    );
    let mut statuses = vec![a.status, b.status];
    statuses.sort();
    assert_eq!(statuses, vec![StatusCode::OK, StatusCode::CONFLICT]);
    let route: AccountRoute = h
        .services
        .repo
        .get(&AccountRoute::key_for(&IgAccountId::from(IG_NEW)))
        .await
        .unwrap()
        .unwrap();
    let winner = if a.status == StatusCode::OK {
        NEW_ORG
    } else {
        other_org
    };
    assert_eq!(route.organization_id, winner);
    let loser = if winner == NEW_ORG {
        other_org
    } else {
        NEW_ORG
    };
    assert!(
        h.services
            .repo
            .get::<InstagramConnection>(&InstagramConnection::key_for(
                &OrgId::from(loser),
                &IgAccountId::from(IG_NEW)
            ))
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn links_forwarded_to_another_browser_fail_clearly_and_store_nothing() {
    let h = Harness::new().await;
    fakes(
        &h,
        vec![page(
            "100000000000009",
            "Victim Shop",
            Some((IG_NEW, "victim")),
        )],
    );
    // The attacker starts in their own tab and authorizes their own LiveChat organization, then
    // forwards the Facebook Login link instead of following it.
    let attacker = Tab::new();
    let fb = query(&through_livechat(&h, &attacker).await);
    // The victim logs in to Facebook from the forwarded link in their own browser: that tab
    // holds no secret of this flow (or one of its own).
    for victim in ["", "the-victims-own-tab-secret"] {
        let code = fb_code(&h);
        let landing = get(
            &h,
            &format!(
                "/oauth/facebook/callback?code={code}&state={}",
                urlencode(&fb["state"])
            ),
        )
        .await;
        let res = post_form(
            &h,
            "/oauth/facebook/callback",
            &[
                ("code", &code),
                ("state", &hidden(&landing.body, "state")),
                ("browser", victim),
            ],
        )
        .await;
        assert_eq!(res.status, StatusCode::FORBIDDEN);
        assert!(
            res.body.contains("started in a different browser")
                && res.body.contains("Nothing was connected"),
            "{}",
            res.body
        );
        assert!(
            !res.body.contains("Victim Shop"),
            "the victim's Pages are never read"
        );
    }
    assert!(
        h.graph
            .calls()
            .iter()
            .all(|c| !c.path.contains("oauth/access_token")),
        "the victim's login code is never exchanged"
    );
    assert!(nothing_connected(&h, IG_NEW).await);
    assert_eq!(h.graph.subscription("100000000000009"), None);

    // A forwarded LiveChat redirect is refused the same way, before its code is exchanged.
    let lc = start(&h, &attacker).await;
    let code = lc_code(&h, SCOPES);
    let before = h.requests("/v2/token").await.len();
    let res = post_form(
        &h,
        "/oauth/livechat/callback",
        &[("code", &code), ("state", &lc["state"]), ("browser", "")],
    )
    .await;
    assert_eq!(res.status, StatusCode::FORBIDDEN);
    assert_eq!(h.requests("/v2/token").await.len(), before);
}

#[tokio::test]
async fn unauthenticated_traffic_costs_no_writes() {
    let store = Arc::new(testkit::store::FaultyStore::default());
    let h = Harness::with_store(store.clone()).await;
    store.reset_counts();
    let tab = Tab::new();
    for _ in 0..20 {
        start(&h, &tab).await;
    }
    get(&h, "/oauth/livechat/callback?code=x&state=y").await;
    get(&h, "/oauth/facebook/callback?code=x&state=y").await;
    for path in [
        "/oauth/livechat/callback",
        "/oauth/facebook/callback",
        "/oauth/facebook/select",
    ] {
        let res = post_form(
            &h,
            path,
            &[("code", "x"), ("state", "v1:k1:AAAA"), ("browser", "b")],
        )
        .await;
        assert_eq!(res.status, StatusCode::BAD_REQUEST, "{path}");
    }
    assert_eq!(store.writes(), 0);
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
    let tab = Tab::new();
    let fb = query(&through_livechat(&h, &tab).await);
    let shown = facebook_back(&h, &tab, &fb["state"]).await;
    let res = confirm(&h, &tab, &shown, "200000000000130").await;
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
        .get(&InstagramConnection::key_for(
            &OrgId::from(NEW_ORG),
            &IgAccountId::from(IG_NEW),
        ))
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
    let tab = Tab::new();
    let fb = query(&through_livechat(&h, &tab).await);
    let chooser = facebook_back(&h, &tab, &fb["state"]).await;
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
    let tab = Tab::new();
    let fb = query(&through_livechat(&h, &tab).await);
    let shown = facebook_back(&h, &tab, &fb["state"]).await;
    let res = confirm(&h, &tab, &shown, "100000000000009").await;
    assert_eq!(res.status, StatusCode::BAD_GATEWAY);
    assert!(
        res.body.contains("Could not subscribe the Page")
            && res.body.contains("Nothing was connected")
    );
    for key in [
        InstagramConnection::key_for(&OrgId::from(NEW_ORG), &IgAccountId::from(IG_NEW)),
        AccountRoute::key_for(&IgAccountId::from(IG_NEW)),
        FacebookUserLink::key_for(
            &FacebookUserId::from(FB_USER),
            &OrgId::from(NEW_ORG),
            &IgAccountId::from(IG_NEW),
        ),
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
