//! A strict fake of Meta's Graph API for the Messenger API for Instagram (Page tokens,
//! graph.facebook.com). It refuses what Meta refuses, with Meta's error texts (see `fixtures/meta`):
//!
//! - every call made with a user or Page token must carry `appsecret_proof` = hex HMAC-SHA256 of the
//!   token keyed by the app secret ("Require App Secret" on, as Meta recommends for server apps);
//! - token kinds: `/me/accounts` needs a user token, Page edges a token of that Page, revoking a
//!   grant the app token or the user's own token; unknown or revoked tokens get code 190;
//! - `subscribed_fields` must be Page webhook field names;
//! - Send API bodies: a recipient, a message or a sender action (not both), text ≤ 1000 bytes,
//!   known attachment types with a URL, `MESSAGE_TAG` only with `HUMAN_AGENT`;
//! - `/me/accounts` is paged with cursors and an absolute `paging.next`, as Meta pages it;
//! - `debug_token` needs the app token and answers an invalid token with `is_valid: false` in
//!   `data` (HTTP 200); a Page token invalidated by a password change is refused with 190/460;
//! - the OAuth code exchange checks the client secret, the redirect URI and single use.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

use crate::fixtures::{Faults, Fixture, fixture};

/// The Page webhook fields Meta accepts on `POST /{page-id}/subscribed_apps` (Graph API
/// reference, "Webhooks for Pages" field list, and the `(#100) Param subscribed_fields[…] must be
/// one of {…}` error that enumerates them). `messaging_seen` and `messaging_referral` are the
/// Instagram product's names and are not among them.
pub const PAGE_WEBHOOK_FIELDS: &[&str] = &[
    "feed",
    "mention",
    "name",
    "picture",
    "category",
    "description",
    "conversations",
    "feature_access_list",
    "inbox_labels",
    "standby",
    "message_mention",
    "messages",
    "message_reactions",
    "messaging_account_linking",
    "messaging_checkout_updates",
    "messaging_customer_information",
    "message_echoes",
    "message_edits",
    "message_deliveries",
    "message_context",
    "messaging_game_plays",
    "messaging_optins",
    "messaging_optouts",
    "messaging_payments",
    "messaging_postbacks",
    "messaging_pre_checkouts",
    "message_reads",
    "messaging_referrals",
    "messaging_handovers",
    "messaging_policy_enforcement",
    "messaging_appointments",
    "messaging_direct_sends",
    "messaging_fblogin_account_linking",
    "messaging_feedback",
    "messaging_in_thread_lead_form_submit",
    "response_feedback",
    "send_cart",
    "calls",
    "leadgen",
    "live_videos",
    "ratings",
    "videos",
    "website",
];

/// Send API attachment types on the Page-token surface.
const ATTACHMENT_TYPES: &[&str] = &[
    "image",
    "audio",
    "video",
    "file",
    "like_heart",
    "MEDIA_SHARE",
    "template",
];

/// A Facebook Page the fake knows.
#[derive(Debug, Clone)]
pub struct FbPage {
    /// Page id.
    pub id: String,
    /// Page name.
    pub name: String,
    /// Its Page access token.
    pub token: String,
    /// The tasks the logged-in person may perform on it (`MANAGE`, `MESSAGING`, …).
    pub tasks: Vec<String>,
    /// Linked Instagram professional account: (id, username).
    pub instagram: Option<(String, String)>,
}

impl FbPage {
    /// A Page with full control and a linked Instagram account; its token is `PAGE-TOKEN-{id}`.
    pub fn new(id: &str, name: &str, instagram: Option<(&str, &str)>) -> Self {
        Self {
            id: id.into(),
            name: name.into(),
            token: format!("PAGE-TOKEN-{id}"),
            tasks: vec!["MANAGE".into(), "MESSAGING".into(), "MODERATE".into()],
            instagram: instagram.map(|(a, b)| (a.into(), b.into())),
        }
    }

    /// The same Page with other tasks.
    pub fn tasks(mut self, tasks: &[&str]) -> Self {
        self.tasks = tasks.iter().map(|t| t.to_string()).collect();
        self
    }
}

/// A Facebook user who can log in to the app.
#[derive(Debug, Clone)]
struct FbUser {
    id: String,
    pages: Vec<String>,
}

/// One request the fake received, and whether it refused it.
#[derive(Debug, Clone)]
pub struct Call {
    /// HTTP method.
    pub method: String,
    /// Path below the version, e.g. `me/accounts`.
    pub path: String,
    /// Query and form parameters.
    pub params: BTreeMap<String, String>,
    /// JSON body (Send API), or `Null`.
    pub body: Value,
    /// `Some(message)` when the fake refused the request.
    pub refused: Option<String>,
}

/// A message the Send API accepted.
#[derive(Debug, Clone)]
pub struct Sent {
    /// The Page it was sent from.
    pub page_id: String,
    /// The request body.
    pub body: Value,
    /// The `message_id` answered (absent for sender actions).
    pub message_id: Option<String>,
    /// When it was accepted (latency benchmarks).
    pub at: std::time::Instant,
}

#[derive(Default)]
struct State {
    app_id: String,
    app_secret: String,
    require_proof: bool,
    redirect_uri: Option<String>,
    codes: HashMap<String, String>,
    used_codes: Vec<String>,
    users: HashMap<String, FbUser>,
    user_tokens: HashMap<String, String>,
    pages: HashMap<String, FbPage>,
    page_tokens: HashMap<String, String>,
    revoked_users: Vec<String>,
    /// Page tokens Meta invalidated (a password change): refused with 190/460.
    invalidated: HashMap<String, String>,
    subscriptions: HashMap<String, Vec<String>>,
    /// Permissions the person declined in the Login dialog, by Page: `debug_token` leaves them
    /// out of the Page token's scopes.
    declined: HashMap<String, Vec<String>>,
    profiles: HashMap<String, Value>,
    sent: Vec<Sent>,
    calls: Vec<Call>,
    faults: Faults,
    lost: Faults<Lost>,
    wire: Option<Arc<crate::crash::Tripwire>>,
    next_mid: u32,
}

/// A request whose answer never reaches the caller (it times out first).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lost {
    /// Meta carried the request out; the answer was lost (a reset or timeout after sending).
    Answer,
    /// The request never got to Meta's logic; nothing happened.
    Request,
}

/// How long a lost answer is held back: far beyond any client timeout the bridge uses.
const LOST_FOR: std::time::Duration = std::time::Duration::from_secs(60);

/// The fake Graph API.
#[derive(Clone)]
pub struct FakeMeta {
    server: Arc<MockServer>,
    state: Arc<Mutex<State>>,
}

/// Graph API version the bridge calls.
pub const VERSION: &str = "v25.0";

fn proof(secret: &str, token: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(token.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

enum Token {
    App,
    User(String),
    Page(String),
}

type Answer = Result<Value, Fixture>;

impl std::ops::Deref for FakeMeta {
    type Target = MockServer;

    /// The fake is also its wiremock server: `received_requests`, or a test's own `Mock` with a
    /// priority below 50 for a fault the fake does not model.
    fn deref(&self) -> &MockServer {
        &self.server
    }
}

impl FakeMeta {
    /// Starts a fake for the app `app_id` / `app_secret`.
    pub async fn start(app_id: &str, app_secret: &str) -> Self {
        let server = MockServer::start().await;
        let state = Arc::new(Mutex::new(State {
            app_id: app_id.into(),
            app_secret: app_secret.into(),
            require_proof: true,
            ..State::default()
        }));
        let fake = Self {
            server: Arc::new(server),
            state,
        };
        Mock::given(wiremock::matchers::any())
            .respond_with(Responder(fake.state.clone(), fake.server.uri()))
            .with_priority(50)
            .mount(&fake.server)
            .await;
        fake
    }

    /// The base URL (`GRAPH_API_BASE_URL`).
    pub fn uri(&self) -> String {
        self.server.uri()
    }

    /// The wiremock server, to mount a fault the fake does not model (priority < 50 wins).
    pub fn server(&self) -> &MockServer {
        &self.server
    }

    fn with<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        f(&mut self.state.lock().unwrap())
    }

    /// Turns "Require App Secret" off (proofs are then optional but still checked when sent).
    pub fn require_proof(&self, on: bool) {
        self.with(|s| s.require_proof = on);
    }

    /// The redirect URI the Login dialog used; the code exchange must repeat it exactly.
    pub fn expect_redirect_uri(&self, uri: &str) {
        self.with(|s| s.redirect_uri = Some(uri.into()));
    }

    /// A Page (and its token) the fake knows, without a user (for connections made earlier).
    pub fn add_page(&self, page: FbPage) {
        self.with(|s| {
            s.page_tokens.insert(page.token.clone(), page.id.clone());
            s.pages.insert(page.id.clone(), page);
        });
    }

    /// A Facebook user who logs in with `code` and manages `pages`, in that order (added to the
    /// Pages the user already had).
    pub fn add_user(&self, user_id: &str, code: &str, pages: Vec<FbPage>) {
        let ids: Vec<String> = pages.iter().map(|p| p.id.clone()).collect();
        for p in pages {
            self.add_page(p);
        }
        self.with(|s| {
            s.codes.insert(code.into(), user_id.into());
            let user = s.users.entry(user_id.into()).or_insert_with(|| FbUser {
                id: user_id.into(),
                pages: vec![],
            });
            user.pages.extend(ids);
        });
    }

    /// A customer profile answered by `GET /{igsid}`.
    pub fn add_profile(&self, igsid: &str, profile: Value) {
        self.with(|s| s.profiles.insert(igsid.into(), profile));
    }

    /// The next `times` requests whose method is `method` and whose path ends with `suffix` get
    /// `fault` instead of the normal answer (Meta's state: throttling, a revoked token, …).
    pub fn fail_next(&self, method: &str, suffix: &str, fault: Fixture, times: usize) {
        self.with(|s| s.faults.push(method, suffix, fault, times));
    }

    /// The next `times` requests on a path ending with `suffix` are carried out (a message is
    /// sent) but their answer never arrives: the caller's client times out. Meta's Send API has no
    /// idempotency key, so this is the fault that makes a blind retry send twice.
    pub fn lose_answer_next(&self, suffix: &str, times: usize) {
        self.with(|s| s.lost.push("*", suffix, Lost::Answer, times));
    }

    /// The next `times` requests on a path ending with `suffix` get no answer and have no effect
    /// (lost before Meta acted).
    pub fn lose_request_next(&self, suffix: &str, times: usize) {
        self.with(|s| s.lost.push("*", suffix, Lost::Request, times));
    }

    /// Drops every fault still queued (a throttle ends).
    pub fn clear_faults(&self) {
        self.with(|s| {
            s.faults = Faults::default();
            s.lost = Faults::default();
        });
    }

    /// The webhook `messaging` item Meta sends for a message the Page sent (`is_echo`, sender and
    /// recipient reversed, the Send API's `message_id` as `mid`; media carry Meta's CDN URL, not
    /// the URL sent) — instagram-messaging.md §3(f), §7. `None` for sender actions.
    pub fn echo(&self, sent: &Sent) -> Option<Value> {
        let mid = sent.message_id.clone()?;
        let ig = self.with(|s| {
            s.pages
                .get(&sent.page_id)
                .and_then(|p| p.instagram.clone())
                .map(|(id, _)| id)
        })?;
        let sent_message = &sent.body["message"];
        let mut message = json!({"mid": mid, "is_echo": true});
        if let Some(text) = sent_message.get("text") {
            message["text"] = text.clone();
        }
        if let Some(kind) = sent_message.pointer("/attachment/type") {
            let url = format!("https://lookaside.fbsbx.com/ig_messaging_cdn/?asset_id={mid}");
            message["attachments"] = json!([{"type": kind, "payload": {"url": url}}]);
        }
        Some(json!({
            "sender": {"id": ig},
            "recipient": sent.body["recipient"].clone(),
            "timestamp": 1569262486134u64 + u64::from(self.with(|s| s.next_mid)),
            "message": message,
        }))
    }

    /// Reports every request to `wire`, which may crash the caller at it
    /// ([`crate::crash::Tripwire`]): before (nothing happens) or after (Meta acts).
    pub fn trip(&self, wire: Arc<crate::crash::Tripwire>) {
        self.with(|s| s.wire = Some(wire));
    }

    /// Every request received, in order.
    pub fn calls(&self) -> Vec<Call> {
        self.with(|s| s.calls.clone())
    }

    /// The messages of the requests the fake refused (a faithful bridge has none).
    pub fn refusals(&self) -> Vec<String> {
        self.with(|s| s.calls.iter().filter_map(|c| c.refused.clone()).collect())
    }

    /// Messages and sender actions the Send API accepted.
    pub fn sent(&self) -> Vec<Sent> {
        self.with(|s| s.sent.clone())
    }

    /// The fields this app is subscribed to on a Page (`None`: not installed on it).
    pub fn subscription(&self, page_id: &str) -> Option<Vec<String>> {
        self.with(|s| s.subscriptions.get(page_id).cloned())
    }

    /// Subscribes the app on a Page directly (a connection made before the test).
    pub fn subscribe(&self, page_id: &str, fields: &[&str]) {
        self.with(|s| {
            s.subscriptions.insert(
                page_id.into(),
                fields.iter().map(|f| f.to_string()).collect(),
            )
        });
    }

    /// Meta drops the app's subscription on a Page (it happens silently: a Page admin removes
    /// the app, or a permission change unsubscribes it).
    pub fn drop_subscription(&self, page_id: &str) {
        self.with(|s| s.subscriptions.remove(page_id));
    }

    /// Meta invalidates a Page's token, as a password change does: calls with it are refused
    /// (190/460) and `debug_token` says `is_valid: false`. A new Facebook Login gets the Page a
    /// new token (`PAGE-TOKEN-{id}-{n}`), which the next `/me/accounts` answers.
    pub fn invalidate_page_token(&self, page_id: &str) -> String {
        self.with(|s| {
            let page = s.pages.get_mut(page_id).expect("a Page the fake knows");
            let old = page.token.clone();
            let n = s.invalidated.len() + 2;
            let fresh = format!("PAGE-TOKEN-{page_id}-{n}");
            page.token = fresh.clone();
            s.page_tokens.remove(&old);
            s.page_tokens.insert(fresh.clone(), page_id.to_string());
            s.invalidated.insert(old, page_id.to_string());
            fresh
        })
    }

    /// The person who connected the Page declined `permissions` in the Login dialog (Meta lets
    /// each permission be unticked): its token's `debug_token` scopes lack them.
    pub fn decline(&self, page_id: &str, permissions: &[&str]) {
        self.with(|s| {
            s.declined
                .entry(page_id.to_string())
                .or_default()
                .extend(permissions.iter().map(|p| p.to_string()))
        });
    }

    /// Users whose grant to the app was revoked.
    pub fn revoked_users(&self) -> Vec<String> {
        self.with(|s| s.revoked_users.clone())
    }
}

struct Responder(Arc<Mutex<State>>, String);

fn params(req: &Request) -> BTreeMap<String, String> {
    let mut out: BTreeMap<String, String> = req
        .url
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let form = req
        .headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|c| c.starts_with("application/x-www-form-urlencoded"));
    if form {
        for (k, v) in url::form_urlencoded::parse(&req.body) {
            out.insert(k.into_owned(), v.into_owned());
        }
    }
    out
}

fn bearer(req: &Request) -> Option<String> {
    req.headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_string)
}

impl Respond for Responder {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let mut s = self.0.lock().unwrap();
        let method = req.method.as_str().to_uppercase();
        let full = req.url.path().trim_start_matches('/').to_string();
        let (version, path) = full.split_once('/').unwrap_or((full.as_str(), ""));
        let params = params(req);
        let body: Value = serde_json::from_slice(&req.body).unwrap_or(Value::Null);
        let crash = s
            .wire
            .as_ref()
            .and_then(|w| w.step(format!("graph {method} {path}")));
        let lost = match crash {
            Some(crate::crash::When::Before) => Some(Lost::Request),
            Some(crate::crash::When::After) => Some(Lost::Answer),
            None => s.lost.take(&method, path),
        };
        if lost == Some(Lost::Request) {
            return ResponseTemplate::new(504).set_delay(LOST_FOR);
        }
        let answer = if !(version.starts_with('v') && version.contains('.')) {
            Err(fixture("meta/error_unknown_path").with(&[("path", &format!("/{full}"))]))
        } else {
            s.handle(&method, path, &params, bearer(req), &body, &self.1)
        };
        let refused = answer.as_ref().err().map(Fixture::message);
        s.calls.push(Call {
            method,
            path: path.to_string(),
            params,
            body,
            refused,
        });
        let response = match answer {
            Ok(v) => ResponseTemplate::new(200).set_body_json(v),
            Err(f) => f.response(),
        };
        match lost {
            Some(_) => response.set_delay(LOST_FOR),
            None => response,
        }
    }
}

impl State {
    fn handle(
        &mut self,
        method: &str,
        path: &str,
        params: &BTreeMap<String, String>,
        bearer: Option<String>,
        body: &Value,
        base: &str,
    ) -> Answer {
        if let Some(fault) = self.faults.take(method, path) {
            return Err(fault);
        }
        let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        // Graph takes the exchange's parameters in the query (GET) or a form body (POST).
        if segments == ["oauth", "access_token"] && (method == "GET" || method == "POST") {
            return self.access_token(params);
        }
        let token = bearer.or_else(|| params.get("access_token").cloned());
        let Some(token) = token else {
            return Err(fixture("meta/error_2500_active_token_required"));
        };
        if self.invalidated.contains_key(&token) {
            return Err(fixture("meta/error_190_session_invalidated"));
        }
        let kind = self.token(&token, params)?;
        if method == "GET" && segments == ["debug_token"] {
            return self.debug_token(kind, params);
        }
        match (method, segments.as_slice()) {
            ("GET", ["me"]) => match kind {
                Token::User(u) => Ok(json!({"id": u, "name": "Example Admin"})),
                Token::Page(p) => Ok(json!({"id": p, "name": self.pages[&p].name})),
                Token::App => Err(fixture("meta/error_2500_active_token_required")),
            },
            ("GET", ["me", "accounts"]) => self.accounts(kind, params, &token, base),
            (_, [page, "subscribed_apps"]) => self.subscribed_apps(method, page, kind, params),
            ("POST", [page, "messages"]) => self.send(page, kind, body),
            ("DELETE", [user, "permissions"]) => self.revoke(user, kind),
            ("GET", [id]) => self.node(id, kind),
            _ => Err(fixture("meta/error_unknown_path").with(&[("path", &format!("/{path}"))])),
        }
    }

    /// Classifies a token and checks `appsecret_proof`.
    fn token(&self, token: &str, params: &BTreeMap<String, String>) -> Result<Token, Fixture> {
        if token == format!("{}|{}", self.app_id, self.app_secret) {
            return Ok(Token::App);
        }
        let kind = if let Some(u) = self.user_tokens.get(token) {
            if self.revoked_users.contains(u) {
                return Err(
                    fixture("meta/error_190_not_authorized").with(&[("app_id", &self.app_id)])
                );
            }
            Token::User(u.clone())
        } else if let Some(p) = self.page_tokens.get(token) {
            let owner_revoked = self
                .users
                .values()
                .any(|u| u.pages.contains(p) && self.revoked_users.contains(&u.id));
            if owner_revoked {
                return Err(
                    fixture("meta/error_190_not_authorized").with(&[("app_id", &self.app_id)])
                );
            }
            Token::Page(p.clone())
        } else {
            return Err(fixture("meta/error_190_cannot_parse"));
        };
        match params.get("appsecret_proof") {
            None if self.require_proof => Err(fixture("meta/error_100_appsecret_proof_required")),
            Some(p) if !p.eq_ignore_ascii_case(&proof(&self.app_secret, token)) => {
                Err(fixture("meta/error_100_appsecret_proof_invalid"))
            }
            _ => Ok(kind),
        }
    }

    fn access_token(&mut self, params: &BTreeMap<String, String>) -> Answer {
        if params.get("client_id") != Some(&self.app_id) {
            return Err(fixture("meta/error_101_invalid_app_id"));
        }
        if params.get("client_secret") != Some(&self.app_secret) {
            return Err(fixture("meta/error_1_client_secret"));
        }
        if params.get("grant_type").map(String::as_str) == Some("fb_exchange_token") {
            let short = params.get("fb_exchange_token").cloned().unwrap_or_default();
            let Some(user) = self.user_tokens.get(&short).cloned() else {
                return Err(fixture("meta/error_190_cannot_parse"));
            };
            let long = format!("EAAL-{user}");
            self.user_tokens.insert(long.clone(), user);
            return Ok(
                json!({"access_token": long, "token_type": "bearer", "expires_in": 5183944}),
            );
        }
        let code = params.get("code").cloned().unwrap_or_default();
        if let Some(expected) = &self.redirect_uri {
            if params.get("redirect_uri") != Some(expected) {
                return Err(fixture("meta/error_100_36008_redirect_uri"));
            }
        }
        if self.used_codes.contains(&code) {
            return Err(fixture("meta/error_100_36009_code_used"));
        }
        let Some(user) = self.codes.get(&code).cloned() else {
            return Err(fixture("meta/error_100_36007_code_invalid"));
        };
        self.used_codes.push(code);
        let short = format!("EAAS-{user}");
        self.user_tokens.insert(short.clone(), user);
        Ok(json!({"access_token": short, "token_type": "bearer", "expires_in": 3600}))
    }

    fn accounts(
        &self,
        kind: Token,
        params: &BTreeMap<String, String>,
        token: &str,
        base: &str,
    ) -> Answer {
        let Token::User(user) = kind else {
            return Err(fixture("meta/error_100_nonexisting_field").with(&[("field", "accounts")]));
        };
        let fields = params
            .get("fields")
            .cloned()
            .unwrap_or_else(|| "name,id".into());
        let limit: usize = params
            .get("limit")
            .and_then(|l| l.parse().ok())
            .unwrap_or(25)
            .clamp(1, 100);
        let start: usize = match params.get("after") {
            Some(c) => {
                decode_cursor(c).ok_or_else(|| fixture("meta/error_100_invalid_cursor"))? + 1
            }
            None => 0,
        };
        let ids = &self.users[&user].pages;
        let end = (start + limit).min(ids.len());
        let data: Vec<Value> = ids[start.min(end)..end]
            .iter()
            .map(|id| page_fields(&self.pages[id], &fields))
            .collect();
        let mut out = json!({"data": data});
        if start < end {
            out["paging"] = json!({"cursors": {"before": cursor(start), "after": cursor(end - 1)}});
            if end < ids.len() {
                // Meta's `next` repeats the query, token included, with the `after` cursor.
                let mut next = url::Url::parse(&format!("{base}/{VERSION}/me/accounts")).unwrap();
                next.query_pairs_mut()
                    .append_pair("access_token", token)
                    .append_pair("fields", &fields)
                    .append_pair("limit", &limit.to_string())
                    .append_pair("after", &cursor(end - 1));
                out["paging"]["next"] = json!(next.to_string());
            }
        }
        Ok(out)
    }

    fn page_token_for(&self, page: &str, kind: Token) -> Result<(), Fixture> {
        match kind {
            Token::Page(p) if p == page => Ok(()),
            Token::Page(_) => Err(fixture("meta/error_100_unsupported_post").with(&[("id", page)])),
            _ => Err(fixture("meta/error_210_page_token_required")),
        }
    }

    fn subscribed_apps(
        &mut self,
        method: &str,
        page: &str,
        kind: Token,
        params: &BTreeMap<String, String>,
    ) -> Answer {
        self.page_token_for(page, kind)?;
        match method {
            "POST" => {
                let Some(fields) = params.get("subscribed_fields") else {
                    return Err(fixture("meta/error_100_param_required")
                        .with(&[("param", "subscribed_fields")]));
                };
                let fields: Vec<String> = fields.split(',').map(|f| f.trim().to_string()).collect();
                if let Some((i, bad)) = fields
                    .iter()
                    .enumerate()
                    .find(|(_, f)| !PAGE_WEBHOOK_FIELDS.contains(&f.as_str()))
                {
                    return Err(fixture("meta/error_100_subscribed_fields").with(&[
                        ("index", &i.to_string()),
                        ("fields", &PAGE_WEBHOOK_FIELDS.join(", ")),
                        ("got", bad),
                    ]));
                }
                self.subscriptions.insert(page.into(), fields);
                Ok(json!({"success": true}))
            }
            "GET" => Ok(
                json!({"data": self.subscriptions.get(page).map(|f| vec![json!({
                "category": "Business", "link": "https://bridge.example.com/",
                "name": "igbridge", "id": self.app_id, "subscribed_fields": f})]).unwrap_or_default()}),
            ),
            "DELETE" => {
                self.subscriptions.remove(page);
                Ok(json!({"success": true}))
            }
            _ => Err(fixture("meta/error_unknown_path")
                .with(&[("path", &format!("/{page}/subscribed_apps"))])),
        }
    }

    /// `GET /debug_token?input_token=…`: needs the app token; describes a Page token (valid,
    /// invalidated, or one it cannot parse) the way Meta does, in `data`.
    fn debug_token(&self, kind: Token, params: &BTreeMap<String, String>) -> Answer {
        if !matches!(kind, Token::App) {
            return Err(fixture("meta/error_100_debug_token_app_token"));
        }
        let Some(input) = params.get("input_token") else {
            return Err(fixture("meta/error_100_param_required").with(&[("param", "input_token")]));
        };
        let owner = |page: &str| {
            self.users
                .values()
                .find(|u| u.pages.iter().any(|p| p == page))
                .map_or("0".to_string(), |u| u.id.clone())
        };
        let revoked_owner = |page: &str| {
            self.users
                .values()
                .any(|u| u.pages.iter().any(|p| p == page) && self.revoked_users.contains(&u.id))
        };
        let (name, page) = if let Some(page) = self.invalidated.get(input) {
            ("meta/debug_token_invalidated", page.clone())
        } else if let Some(page) = self.page_tokens.get(input) {
            if revoked_owner(page) {
                ("meta/debug_token_invalidated", page.clone())
            } else {
                ("meta/debug_token_page", page.clone())
            }
        } else {
            return Ok(fixture("meta/debug_token_cannot_parse").body);
        };
        let mut body = fixture(name)
            .with(&[
                ("app_id", &self.app_id),
                ("page_id", &page),
                ("user_id", &owner(&page)),
            ])
            .body;
        let declined = self.declined.get(&page).cloned().unwrap_or_default();
        let kept = |v: &Value| {
            let scope = v
                .as_str()
                .or_else(|| v["scope"].as_str())
                .unwrap_or_default();
            !declined.iter().any(|d| d == scope)
        };
        for field in ["scopes", "granular_scopes"] {
            if let Some(list) = body["data"][field].as_array_mut() {
                list.retain(kept);
            }
        }
        Ok(body)
    }

    fn revoke(&mut self, user: &str, kind: Token) -> Answer {
        let target = match (kind, user) {
            (Token::User(u), "me") => u,
            (Token::User(u), _) if u == user => u,
            (Token::App, _) if user != "me" => user.to_string(),
            _ => return Err(fixture("meta/error_100_unsupported_delete").with(&[("id", user)])),
        };
        if !self.users.contains_key(&target) {
            return Err(fixture("meta/error_100_unsupported_delete").with(&[("id", user)]));
        }
        self.revoked_users.push(target);
        Ok(json!({"success": true}))
    }

    fn node(&self, id: &str, kind: Token) -> Answer {
        if let Some(profile) = self.profiles.get(id) {
            return match kind {
                Token::Page(_) => Ok(profile.clone()),
                _ => Err(fixture("meta/error_210_page_token_required")),
            };
        }
        if let Some(p) = self.pages.get(id) {
            return Ok(json!({"id": p.id, "name": p.name}));
        }
        Err(fixture("meta/error_100_unsupported_get").with(&[("id", id)]))
    }

    fn send(&mut self, page: &str, kind: Token, body: &Value) -> Answer {
        self.page_token_for(page, kind)?;
        check_send_body(body)?;
        let recipient = body["recipient"]["id"].clone();
        if body.get("sender_action").is_some() {
            self.sent.push(Sent {
                page_id: page.into(),
                body: body.clone(),
                message_id: None,
                at: std::time::Instant::now(),
            });
            return Ok(json!({"recipient_id": recipient}));
        }
        self.next_mid += 1;
        let mid = format!("MID_SENT_{:04}", self.next_mid);
        self.sent.push(Sent {
            page_id: page.into(),
            body: body.clone(),
            message_id: Some(mid.clone()),
            at: std::time::Instant::now(),
        });
        Ok(json!({"recipient_id": recipient, "message_id": mid}))
    }
}

/// The Send API's validation of a request body.
fn check_send_body(body: &Value) -> Result<(), Fixture> {
    let param = |p: &str| fixture("meta/error_100_param_required").with(&[("param", p)]);
    if body
        .pointer("/recipient/id")
        .and_then(Value::as_str)
        .is_none()
    {
        return Err(param("recipient"));
    }
    match (body.get("message"), body.get("sender_action")) {
        (Some(_), Some(_)) | (None, None) => {
            return Err(fixture("meta/error_100_message_or_action"));
        }
        (None, Some(a)) => {
            let a = a.as_str().unwrap_or_default();
            if !["typing_on", "typing_off", "mark_seen", "react", "unreact"].contains(&a) {
                return Err(fixture("meta/error_100_param_value")
                    .with(&[("param", "sender_action"), ("got", a)]));
            }
            return Ok(());
        }
        (Some(m), None) => check_message(m)?,
    }
    match body.get("messaging_type").and_then(Value::as_str) {
        None | Some("RESPONSE") | Some("UPDATE") if body.get("tag").is_none() => Ok(()),
        Some("MESSAGE_TAG") if body.get("tag") == Some(&json!("HUMAN_AGENT")) => Ok(()),
        Some("MESSAGE_TAG") => Err(fixture("meta/error_100_param_value").with(&[
            ("param", "tag"),
            ("got", body["tag"].as_str().unwrap_or("")),
        ])),
        other => Err(fixture("meta/error_100_param_value").with(&[
            ("param", "messaging_type"),
            ("got", other.unwrap_or("tag without MESSAGE_TAG")),
        ])),
    }
}

fn check_message(m: &Value) -> Result<(), Fixture> {
    if let Some(text) = m.get("text") {
        let text = text.as_str().unwrap_or_default();
        if text.is_empty() {
            return Err(
                fixture("meta/error_100_param_required").with(&[("param", "message[text]")])
            );
        }
        if text.len() > 1000 {
            return Err(fixture("meta/error_100_text_too_long"));
        }
        return Ok(());
    }
    let Some(att) = m.get("attachment") else {
        return Err(fixture("meta/error_100_param_required").with(&[("param", "message")]));
    };
    let kind = att.get("type").and_then(Value::as_str).unwrap_or_default();
    if !ATTACHMENT_TYPES.contains(&kind) {
        return Err(fixture("meta/error_100_param_value")
            .with(&[("param", "message[attachment][type]"), ("got", kind)]));
    }
    if ["image", "audio", "video", "file"].contains(&kind) {
        let url = att
            .pointer("/payload/url")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if !url.starts_with("https://") && !url.starts_with("http://") {
            return Err(fixture("meta/error_100_param_required")
                .with(&[("param", "message[attachment][payload][url]")]));
        }
    }
    Ok(())
}

fn page_fields(p: &FbPage, fields: &str) -> Value {
    let mut out = json!({"id": p.id});
    for f in split_fields(fields) {
        match f.as_str() {
            "name" => out["name"] = json!(p.name),
            "access_token" => out["access_token"] = json!(p.token),
            "tasks" => out["tasks"] = json!(p.tasks),
            f if f.starts_with("instagram_business_account") => {
                if let Some((id, user)) = &p.instagram {
                    let mut ig = json!({"id": id});
                    if f.contains("username") {
                        ig["username"] = json!(user);
                    }
                    out["instagram_business_account"] = ig;
                }
            }
            _ => {}
        }
    }
    out
}

/// Splits `a,b{c,d},e` at top-level commas.
fn split_fields(fields: &str) -> Vec<String> {
    let (mut out, mut cur, mut depth) = (Vec::new(), String::new(), 0);
    for c in fields.chars() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                out.push(std::mem::take(&mut cur));
                continue;
            }
            _ => {}
        }
        cur.push(c);
    }
    out.push(cur);
    out.into_iter().map(|f| f.trim().to_string()).collect()
}

fn cursor(i: usize) -> String {
    hex::encode(format!("page-cursor:{i}"))
}

fn decode_cursor(c: &str) -> Option<usize> {
    String::from_utf8(hex::decode(c).ok()?)
        .ok()?
        .strip_prefix("page-cursor:")?
        .parse()
        .ok()
}

/// The `appsecret_proof` for a token (what the bridge must send).
pub fn appsecret_proof(app_secret: &str, token: &str) -> String {
    proof(app_secret, token)
}
