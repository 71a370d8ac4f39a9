//! The Graph API client (graph.facebook.com, user and Page tokens): a method per call the bridge
//! makes, and the error envelope every call shares. Tokens go in the `Authorization` header, never
//! in URLs, and every call made with a token carries `appsecret_proof` (HMAC-SHA256 of the token
//! keyed by the app secret, hex), so the app keeps working when the Meta app has "Require App
//! Secret" on — Meta's recommendation for server-side apps (graph-api/guides/secure-requests).
//! Customer media is never downloaded: Meta's platform policy lets an app keep only the CDN URL.

use crate::ids::Mid;
use hmac::{Hmac, Mac};
use reqwest::StatusCode;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::Value;
use sha2::Sha256;

use super::usage::Usage;
use crate::http::{is_retryable_error, is_retryable_status};

/// Facebook Login permissions for the Messenger API for Instagram: each is one a call the
/// bridge makes needs (Meta's docs, cited in docs/health.md) —
/// `instagram_basic` (the Page's Instagram account on `/me/accounts`; Meta requires it beside
/// the next one), `instagram_manage_messages` (sending, marking seen, the messaging webhooks),
/// `pages_manage_metadata` and `pages_messaging` (subscribing the Page to the `messages`
/// webhook fields), `pages_show_list` (listing the Pages, reading their subscription),
/// `pages_read_engagement` (the customer's profile), `business_management` (Pages a business
/// portfolio owns, which `/me/accounts` leaves out otherwise). Only the absence of
/// `instagram_manage_messages` breaks a connection (`health::check::REQUIRED_PERMISSIONS`).
pub const FACEBOOK_SCOPES: &str = "instagram_basic,instagram_manage_messages,pages_manage_metadata,pages_show_list,pages_read_engagement,pages_messaging,business_management";
/// Page webhook fields the bridge subscribes the Page to. These are the *Page* names
/// (`POST /{page-id}/subscribed_apps` refuses the Instagram product's `messaging_seen` and
/// `messaging_referral` with `(#100) Param subscribed_fields[…] must be one of {…}`):
/// messages (and their echoes, shown to agents as staff messages), postbacks, reactions, reads,
/// referrals, and `standby` for conversations another app controls.
pub const SUBSCRIBED_FIELDS: &[&str] = &[
    "messages",
    "message_echoes",
    "messaging_postbacks",
    "message_reactions",
    "message_reads",
    "messaging_referrals",
    "standby",
];

/// How many Pages one `/me/accounts` request asks for; Meta pages the rest.
pub const PAGES_PER_REQUEST: usize = 100;
/// A bound on `/me/accounts` pages followed (10,000 Pages), against a paging loop.
const MAX_PAGE_REQUESTS: usize = 100;

/// A Graph API failure.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum GraphError {
    /// Meta answered with an error envelope (or a bare status).
    #[error("graph error {status} code {code:?} subcode {subcode:?}: {message}")]
    Api {
        /// HTTP status.
        status: u16,
        /// `error.code`.
        code: Option<i64>,
        /// `error.error_subcode`.
        subcode: Option<i64>,
        /// `error.message` (Meta's text, never ours).
        message: String,
        /// `error.fbtrace_id`, for support requests.
        fbtrace_id: Option<String>,
        /// How long Meta asked the caller to wait (usage headers, `Retry-After`).
        retry_after: Option<std::time::Duration>,
    },
    /// The request did not complete.
    #[error("graph transport: {message}")]
    Transport {
        /// What failed.
        message: String,
        /// Whether retrying may help.
        retryable: bool,
        /// The request may have reached Meta, but its answer did not come back (a timeout or a
        /// reset after sending): Meta may have acted on it.
        unanswered: bool,
    },
    /// Meta answered 200 with a body the bridge cannot read.
    #[error("graph answer shape: {0}")]
    Shape(String),
}

/// Codes Meta uses for throttling (rate limits, a temporary block): wait before calling again.
const THROTTLE_CODES: &[i64] = &[4, 17, 32, 341, 368, 613, 80002, 80006];
/// Codes of a temporary fault on Meta's side ("API Unknown", "API Service"): retry.
const TEMPORARY_CODES: &[i64] = &[1, 2];

impl GraphError {
    /// Throttling, temporary Meta faults and transport errors: retry later.
    pub fn is_transient(&self) -> bool {
        match self {
            GraphError::Api { status, code, .. } => {
                code.is_some_and(|c| THROTTLE_CODES.contains(&c) || TEMPORARY_CODES.contains(&c))
                    || is_retryable_status(StatusCode::from_u16(*status).unwrap_or(StatusCode::OK))
            }
            GraphError::Transport { retryable, .. } => *retryable,
            GraphError::Shape(_) => false,
        }
    }

    /// Meta refused the call for its rate limits (a throttle code, or HTTP 429).
    pub fn is_throttled(&self) -> bool {
        matches!(self, GraphError::Api { status, code, .. }
            if *status == 429 || code.is_some_and(|c| THROTTLE_CODES.contains(&c)))
    }

    /// How long Meta asked to wait before the next call, if it said.
    pub fn retry_after(&self) -> Option<std::time::Duration> {
        match self {
            GraphError::Api { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// Whether Meta may have carried the request out although the caller saw a failure: no
    /// answer came back, Meta answered with a server error, or its success could not be read.
    /// A refusal Meta explains (a throttle or request error) or a connection that never opened
    /// means nothing happened.
    pub fn may_have_been_accepted(&self) -> bool {
        match self {
            GraphError::Transport { unanswered, .. } => *unanswered,
            GraphError::Api { status, .. } => *status >= 500 && !self.is_throttled(),
            GraphError::Shape(_) => true,
        }
    }

    /// The Page token is invalid or expired (code 190): the account must be reconnected. Meta
    /// also uses 190 for "(#190) This method must be called with a Page Access Token", a token of
    /// the wrong kind, which says nothing about the Page token's health.
    pub fn is_token_invalid(&self) -> bool {
        matches!(
            self,
            GraphError::Api { code: Some(190), message, .. } if !message.contains("must be called with a Page Access Token")
        )
    }

    /// The message is outside the allowed messaging window.
    pub fn is_outside_window(&self) -> bool {
        matches!(self, GraphError::Api { code: Some(10), subcode: Some(s), .. } if [2534022, 2018278].contains(s))
            || matches!(
                self,
                GraphError::Api {
                    code: Some(1545041),
                    ..
                }
            )
    }
}

/// An Instagram user's public profile, as the Page may see it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct Profile {
    /// Display name (may be absent).
    pub name: Option<String>,
    /// Username (v14+).
    pub username: Option<String>,
    /// Avatar URL (expires within days).
    pub profile_pic: Option<String>,
}

/// The Instagram professional account linked to a Page.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct LinkedInstagram {
    /// IG professional account id (webhooks' `entry[].id`).
    pub id: String,
    /// Its username.
    pub username: Option<String>,
}

/// One Page of `/me/accounts`: what the logged-in person may do on it, and its token.
#[derive(Debug, Clone, Deserialize)]
pub struct PageAccount {
    /// Page id.
    pub id: String,
    /// Page name.
    pub name: Option<String>,
    /// Page access token (absent when the person has no task that yields one).
    pub access_token: Option<SecretString>,
    /// The person's tasks on the Page (`MANAGE`, `MESSAGING`, `MODERATE`, …).
    #[serde(default)]
    pub tasks: Vec<String>,
    /// The linked Instagram professional account, if any.
    pub instagram_business_account: Option<LinkedInstagram>,
}

/// Why a Page cannot be connected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ineligible {
    /// No Instagram professional account is linked to it.
    NoInstagram,
    /// The person may not message for the Page (needs MESSAGING, MODERATE or MANAGE).
    NoMessagingTask,
    /// Meta gave no Page token for it.
    NoToken,
}

impl Ineligible {
    /// The reason, for the admin.
    pub fn reason(self) -> &'static str {
        match self {
            Ineligible::NoInstagram => "no Instagram professional account is linked to this Page",
            Ineligible::NoMessagingTask => {
                "your Facebook user cannot manage messages for this Page (it needs the Messages, Moderate or full-control task)"
            }
            Ineligible::NoToken => "Facebook did not grant igbridge access to this Page",
        }
    }
}

/// Tasks that allow sending and reading messages as the Page (Send API: MESSAGING; profile and
/// subscription: MODERATE; MANAGE implies both).
const MESSAGING_TASKS: &[&str] = &["MESSAGING", "MODERATE", "MANAGE"];

impl PageAccount {
    /// Whether the bridge can connect this Page, and if not why.
    pub fn eligibility(&self) -> Result<(), Ineligible> {
        if self.instagram_business_account.is_none() {
            return Err(Ineligible::NoInstagram);
        }
        if !self
            .tasks
            .iter()
            .any(|t| MESSAGING_TASKS.contains(&t.as_str()))
        {
            return Err(Ineligible::NoMessagingTask);
        }
        if self.access_token.is_none() {
            return Err(Ineligible::NoToken);
        }
        Ok(())
    }
}

#[derive(Deserialize)]
struct AccountsPage {
    #[serde(default)]
    data: Vec<PageAccount>,
    paging: Option<Paging>,
}

#[derive(Deserialize)]
struct Paging {
    next: Option<String>,
    cursors: Option<Cursors>,
}

#[derive(Deserialize)]
struct Cursors {
    after: Option<String>,
}

/// What `GET /debug_token` says about a token (its `data`). Every field but `is_valid` may be
/// absent (an unparseable token gets only `error`, `is_valid` and `scopes`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct TokenInfo {
    /// Whether Meta still accepts the token.
    pub is_valid: bool,
    /// `PAGE`, `USER`, `APP`, …
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
    /// The app it was issued to.
    #[serde(default)]
    pub app_id: Option<String>,
    /// For a Page token, the Page.
    #[serde(default)]
    pub profile_id: Option<String>,
    /// Expiry, epoch seconds; 0 (or absent) for never.
    #[serde(default)]
    pub expires_at: Option<i64>,
    /// When the app's data access ends, epoch seconds.
    #[serde(default)]
    pub data_access_expires_at: Option<i64>,
    /// Granted permissions.
    #[serde(default)]
    pub scopes: Vec<String>,
    /// Why it is invalid.
    #[serde(default)]
    pub error: Option<TokenInfoError>,
}

/// The reason `debug_token` gives for an invalid token (code 190 and a subcode such as 460,
/// "password changed", or 463, "expired").
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct TokenInfoError {
    /// Graph error code.
    #[serde(default)]
    pub code: Option<i64>,
    /// Subcode.
    #[serde(default)]
    pub subcode: Option<i64>,
    /// Meta's words.
    #[serde(default)]
    pub message: Option<String>,
}

/// One app installed on a Page (`GET /{page-id}/subscribed_apps`); only `id` is always there.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct SubscribedApp {
    /// The app id.
    pub id: String,
    /// Its name.
    #[serde(default)]
    pub name: Option<String>,
    /// The Page webhook fields it is subscribed to (absent when none).
    #[serde(default)]
    pub subscribed_fields: Vec<String>,
}

/// The Graph API client.
#[derive(Debug, Clone)]
pub struct GraphClient {
    http: reqwest::Client,
    base: String,
    version: String,
    app_secret: SecretString,
}

fn transport(e: reqwest::Error) -> GraphError {
    GraphError::Transport {
        retryable: is_retryable_error(&e),
        // A connection that never opened carried nothing; anything later may have reached Meta.
        unanswered: !e.is_connect() && !e.is_builder(),
        message: e.without_url().to_string(),
    }
}

/// Turns a Graph response into JSON or a [`GraphError`].
pub async fn parse_response(res: reqwest::Response) -> Result<Value, GraphError> {
    parse_with_usage(res).await.map(|(v, _)| v)
}

/// As [`parse_response`], with the usage Meta reported on the answer.
pub async fn parse_with_usage(res: reqwest::Response) -> Result<(Value, Usage), GraphError> {
    let status = res.status();
    let usage = Usage::from_headers(res.headers());
    let body: Value = match res.bytes().await {
        Ok(b) => serde_json::from_slice(&b).unwrap_or(Value::Null),
        // The status line came, the body did not: for a success, Meta has acted.
        Err(e) => return Err(transport(e)),
    };
    if status.is_success() && body.get("error").is_none() {
        return Ok((body, usage));
    }
    let e = body.get("error").cloned().unwrap_or(Value::Null);
    Err(GraphError::Api {
        status: status.as_u16(),
        code: e.get("code").and_then(Value::as_i64),
        subcode: e.get("error_subcode").and_then(Value::as_i64),
        message: e
            .get("message")
            .and_then(Value::as_str)
            .unwrap_or(status.canonical_reason().unwrap_or("error"))
            .to_string(),
        fbtrace_id: e
            .get("fbtrace_id")
            .and_then(Value::as_str)
            .map(str::to_string),
        retry_after: usage.wait,
    })
}

fn shape<T: serde::de::DeserializeOwned>(v: Value, what: &str) -> Result<T, GraphError> {
    serde_json::from_value(v).map_err(|e| GraphError::Shape(format!("{what}: {e}")))
}

/// The app token (`{app-id}|{app-secret}`), for the calls Meta takes only from the app itself
/// (`debug_token`, revoking a person's grant).
pub fn app_token(app_id: &str, app_secret: &SecretString) -> SecretString {
    SecretString::from(format!("{app_id}|{}", app_secret.expose_secret()))
}

/// `appsecret_proof` for a token: hex HMAC-SHA256 of the token, keyed by the app secret.
pub fn appsecret_proof(app_secret: &SecretString, token: &SecretString) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(app_secret.expose_secret().as_bytes())
        .expect("HMAC takes any key length");
    mac.update(token.expose_secret().as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

impl GraphClient {
    /// A client for `base` (e.g. `https://graph.facebook.com`) and `version` (e.g. `v25.0`),
    /// signing token calls with `app_secret`.
    pub fn new(http: reqwest::Client, base: &str, version: &str, app_secret: SecretString) -> Self {
        Self {
            http,
            base: base.trim_end_matches('/').to_string(),
            version: version.to_string(),
            app_secret,
        }
    }

    /// The URL of a Graph path, e.g. `"{page-id}/messages"`.
    pub fn url(&self, path: &str) -> String {
        format!(
            "{}/{}/{}",
            self.base,
            self.version,
            path.trim_start_matches('/')
        )
    }

    /// A request with the token in the header and its proof in the query.
    fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        token: &SecretString,
    ) -> reqwest::RequestBuilder {
        self.http
            .request(method, self.url(path))
            .query(&[("appsecret_proof", appsecret_proof(&self.app_secret, token))])
            .bearer_auth(token.expose_secret())
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> Result<Value, GraphError> {
        parse_response(req.send().await.map_err(transport)?).await
    }

    /// `GET /{igsid}?fields=name,username,profile_pic` with the Page token.
    pub async fn profile(
        &self,
        igsid: &str,
        page_token: &SecretString,
    ) -> Result<Profile, GraphError> {
        let req = self
            .request(reqwest::Method::GET, igsid, page_token)
            .query(&[("fields", "name,username,profile_pic")]);
        shape(self.send(req).await?, "profile")
    }

    /// `GET /oauth/access_token` with the app's credentials; returns the `access_token`. It
    /// carries the app secret, so it runs server-side only.
    async fn access_token(
        &self,
        app_id: &str,
        grant: &[(&str, &str)],
    ) -> Result<SecretString, GraphError> {
        // In a POST body, so the app secret and the code stay out of URLs (and their logs).
        let mut form = vec![
            ("client_id", app_id),
            ("client_secret", self.app_secret.expose_secret()),
        ];
        form.extend_from_slice(grant);
        let req = self.http.post(self.url("oauth/access_token")).form(&form);
        let v = self.send(req).await?;
        match v.get("access_token").and_then(Value::as_str) {
            Some(t) if !t.is_empty() => Ok(SecretString::from(t.to_string())),
            _ => Err(GraphError::Shape("access_token missing".into())),
        }
    }

    /// A Facebook Login code → a short-lived user token (`redirect_uri` exactly as in the dialog).
    pub async fn exchange_code(
        &self,
        app_id: &str,
        redirect_uri: &str,
        code: &str,
    ) -> Result<SecretString, GraphError> {
        self.access_token(app_id, &[("redirect_uri", redirect_uri), ("code", code)])
            .await
    }

    /// A short-lived user token → a long-lived one (about 60 days).
    pub async fn long_lived_token(
        &self,
        app_id: &str,
        short: &SecretString,
    ) -> Result<SecretString, GraphError> {
        self.access_token(
            app_id,
            &[
                ("grant_type", "fb_exchange_token"),
                ("fb_exchange_token", short.expose_secret()),
            ],
        )
        .await
    }

    /// `GET /me?fields=id`: the app-scoped id of the person a user token belongs to.
    pub async fn me(&self, user_token: &SecretString) -> Result<String, GraphError> {
        let req = self
            .request(reqwest::Method::GET, "me", user_token)
            .query(&[("fields", "id")]);
        let v = self.send(req).await?;
        v.get("id")
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| GraphError::Shape("me without id".into()))
    }

    /// `GET /me/accounts`, every page of it: Meta pages the list (cursor `after`, with
    /// `paging.next` present while more follow).
    pub async fn pages(&self, user_token: &SecretString) -> Result<Vec<PageAccount>, GraphError> {
        let limit = PAGES_PER_REQUEST.to_string();
        let mut out = Vec::new();
        let mut after: Option<String> = None;
        for _ in 0..MAX_PAGE_REQUESTS {
            let mut req = self
                .request(reqwest::Method::GET, "me/accounts", user_token)
                .query(&[
                    (
                        "fields",
                        "id,name,access_token,tasks,instagram_business_account{id,username}",
                    ),
                    ("limit", limit.as_str()),
                ]);
            if let Some(a) = &after {
                req = req.query(&[("after", a.as_str())]);
            }
            let page: AccountsPage = shape(self.send(req).await?, "me/accounts")?;
            out.extend(page.data);
            // The `next` URL repeats the user token in its query; the bridge follows the cursor
            // instead, so the token stays in the header.
            after = page
                .paging
                .filter(|p| p.next.is_some())
                .and_then(|p| p.cursors)
                .and_then(|c| c.after);
            if after.is_none() {
                return Ok(out);
            }
        }
        Err(GraphError::Shape("me/accounts paged past the bound".into()))
    }

    /// `POST /{page-id}/subscribed_apps?subscribed_fields=…` with the Page token (Page field names).
    pub async fn subscribe_page(
        &self,
        page_id: &str,
        page_token: &SecretString,
        fields: &[&str],
    ) -> Result<(), GraphError> {
        let joined = fields.join(",");
        let req = self
            .request(
                reqwest::Method::POST,
                &format!("{page_id}/subscribed_apps"),
                page_token,
            )
            .form(&[("subscribed_fields", joined.as_str())]);
        let v = self.send(req).await?;
        if success(&v) {
            Ok(())
        } else {
            Err(GraphError::Shape("subscription not confirmed".into()))
        }
    }

    /// `GET /debug_token?input_token=…` with the app token: whether a token still works, its
    /// permissions and its expiry. An invalid token is not an error here: Meta answers 200 with
    /// `is_valid: false` and the reason in `data.error`.
    pub async fn debug_token(
        &self,
        input_token: &SecretString,
        app_token: &SecretString,
    ) -> Result<TokenInfo, GraphError> {
        let req = self
            .request(reqwest::Method::GET, "debug_token", app_token)
            .query(&[("input_token", input_token.expose_secret())]);
        let v = self.send(req).await?;
        shape(v.get("data").cloned().unwrap_or(Value::Null), "debug_token")
    }

    /// `GET /{page-id}/subscribed_apps` with the Page token: the apps installed on the Page and
    /// the fields each is subscribed to.
    pub async fn subscribed_apps(
        &self,
        page_id: &str,
        page_token: &SecretString,
    ) -> Result<Vec<SubscribedApp>, GraphError> {
        let req = self.request(
            reqwest::Method::GET,
            &format!("{page_id}/subscribed_apps"),
            page_token,
        );
        let v = self.send(req).await?;
        shape(
            v.get("data").cloned().unwrap_or(Value::Null),
            "subscribed_apps",
        )
    }

    /// `DELETE /{page-id}/subscribed_apps` with the Page token.
    pub async fn unsubscribe_page(
        &self,
        page_id: &str,
        page_token: &SecretString,
    ) -> Result<(), GraphError> {
        let req = self.request(
            reqwest::Method::DELETE,
            &format!("{page_id}/subscribed_apps"),
            page_token,
        );
        self.send(req).await.map(|_| ())
    }

    /// `DELETE /{user-id}/permissions` with the app token: revokes everything that person
    /// granted the app (every Page token they gave, in every installation).
    pub async fn revoke_grant(
        &self,
        facebook_user_id: &str,
        app_token: &SecretString,
    ) -> Result<(), GraphError> {
        let req = self.request(
            reqwest::Method::DELETE,
            &format!("{facebook_user_id}/permissions"),
            app_token,
        );
        self.send(req).await.map(|_| ())
    }

    /// `POST /{page-id}/messages` (Send API) with the Page token.
    pub async fn send_message(
        &self,
        page_id: &str,
        page_token: &SecretString,
        body: &crate::instagram::send::SendRequest,
    ) -> Result<SendResponse, GraphError> {
        let req = self
            .request(
                reqwest::Method::POST,
                &format!("{page_id}/messages"),
                page_token,
            )
            .json(body);
        let (answer, usage) = parse_with_usage(req.send().await.map_err(transport)?).await?;
        Ok(SendResponse {
            message_id: answer
                .get("message_id")
                .and_then(Value::as_str)
                .map(Mid::from),
            usage,
        })
    }
}

/// The Send API's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendResponse {
    /// The sent message's id (its echo carries the same `mid`); none for sender actions.
    pub message_id: Option<Mid>,
    /// The usage Meta reported with it.
    pub usage: Usage,
}

/// The JSON Meta returns for a write (both documented shapes: `true` and `"true"`).
pub fn success(v: &Value) -> bool {
    v.get("success") == Some(&Value::Bool(true))
        || v.get("success") == Some(&Value::String("true".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(status: u16, code: i64, subcode: Option<i64>) -> GraphError {
        GraphError::Api {
            status,
            code: Some(code),
            subcode,
            message: String::new(),
            fbtrace_id: None,
            retry_after: None,
        }
    }

    #[test]
    fn proof_is_hex_hmac_sha256_of_the_token() {
        // HMAC-SHA256(key "key", "The quick brown fox jumps over the lazy dog") from RFC 4231's
        // well-known example.
        let p = appsecret_proof(
            &SecretString::from("key".to_string()),
            &SecretString::from("The quick brown fox jumps over the lazy dog".to_string()),
        );
        assert_eq!(
            p,
            "f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8"
        );
    }

    #[test]
    fn eligibility_needs_instagram_a_messaging_task_and_a_token() {
        let page = |tasks: &[&str], ig: bool, token: bool| PageAccount {
            id: "1".into(),
            name: None,
            access_token: token.then(|| SecretString::from("t".to_string())),
            tasks: tasks.iter().map(|t| t.to_string()).collect(),
            instagram_business_account: ig.then(|| LinkedInstagram {
                id: "17".into(),
                username: None,
            }),
        };
        assert_eq!(page(&["MESSAGING"], true, true).eligibility(), Ok(()));
        assert_eq!(page(&["MODERATE"], true, true).eligibility(), Ok(()));
        assert_eq!(page(&["MANAGE"], true, true).eligibility(), Ok(()));
        assert_eq!(
            page(&["ANALYZE", "ADVERTISE", "CREATE_CONTENT"], true, true).eligibility(),
            Err(Ineligible::NoMessagingTask)
        );
        assert_eq!(
            page(&["MANAGE"], false, true).eligibility(),
            Err(Ineligible::NoInstagram)
        );
        assert_eq!(
            page(&["MANAGE"], true, false).eligibility(),
            Err(Ineligible::NoToken)
        );
    }

    #[test]
    fn classifies_meta_error_codes() {
        assert!(api(400, 4, None).is_transient());
        assert!(api(400, 613, None).is_transient());
        assert!(api(400, 80002, None).is_transient());
        assert!(api(500, 100, None).is_transient());
        assert!(!api(400, 100, None).is_transient());
        assert!(api(400, 190, None).is_token_invalid());
        let wrong_kind = GraphError::Api {
            status: 400,
            code: Some(190),
            subcode: None,
            message: "(#190) This method must be called with a Page Access Token".into(),
            fbtrace_id: None,
            retry_after: None,
        };
        assert!(!wrong_kind.is_token_invalid());
        assert!(api(403, 10, Some(2534022)).is_outside_window());
        assert!(api(400, 10, Some(2018278)).is_outside_window());
        assert!(!api(400, 10, None).is_outside_window());
        assert!(!api(400, 10, Some(2534022)).is_transient());
    }

    /// A server that reads the whole request (so it may have acted on it) and then resets the
    /// connection: the client must treat the send as possibly delivered, not as never sent.
    #[tokio::test]
    async fn a_connection_reset_after_the_request_reached_meta_is_unanswered() {
        use tokio::io::AsyncReadExt;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = vec![0u8; 8192];
            let _ = s.read(&mut buf).await.unwrap();
            s.set_zero_linger().unwrap();
            drop(s); // RST
        });
        let graph = GraphClient::new(
            crate::http::client(),
            &format!("http://{addr}"),
            "v25.0",
            SecretString::from("secret".to_string()),
        );
        let token = SecretString::from("PAGE-TOKEN".to_string());
        let body = crate::instagram::send::message_body(
            "1",
            crate::instagram::send::OutMessage::text("hi"),
            crate::instagram::send::Window::Standard,
        );
        let err = graph.send_message("PAGE", &token, &body).await.unwrap_err();
        assert!(err.may_have_been_accepted(), "{err:?}");
        assert!(err.is_transient());
        // Nobody listening: the request never left, so nothing can have been sent.
        let closed = GraphClient::new(
            crate::http::client(),
            "http://127.0.0.1:9",
            "v25.0",
            SecretString::from("secret".to_string()),
        );
        let err = closed
            .send_message("PAGE", &token, &body)
            .await
            .unwrap_err();
        assert!(!err.may_have_been_accepted(), "{err:?}");
    }

    #[test]
    fn which_failures_may_hide_a_delivered_message() {
        let transport = |unanswered| GraphError::Transport {
            message: String::new(),
            retryable: true,
            unanswered,
        };
        assert!(transport(true).may_have_been_accepted());
        assert!(!transport(false).may_have_been_accepted());
        assert!(api(500, 2, None).may_have_been_accepted());
        assert!(api(503, 1, None).may_have_been_accepted());
        assert!(GraphError::Shape("?".into()).may_have_been_accepted());
        // Refusals Meta explains: nothing was sent.
        assert!(!api(400, 613, None).may_have_been_accepted());
        assert!(!api(429, 4, None).may_have_been_accepted());
        assert!(!api(400, 100, None).may_have_been_accepted());
        assert!(api(400, 80002, None).is_throttled() && api(429, 1, None).is_throttled());
        assert!(!api(500, 2, None).is_throttled());
    }
}
