//! oauth-install: LiveChat OAuth, then Facebook Login, then the Page (and its Instagram account)
//! is subscribed and connected. Every step is guarded by a signed, single-use, 15-minute state;
//! no cookies are set; Page tokens never reach the browser.

pub mod pages;
pub mod state;

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Form, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use rand::Rng;
use secrecy::SecretString;

use crate::cipher::TokenCipher;
use crate::clock::Clock;
use crate::domain::*;
use crate::instagram::graph::{GraphClient, PageAccount};
use crate::lifecycle::events::{EventPublisher, LifecycleEvent, LifecycleKind, publish_logged};
use crate::livechat::LivechatClient;
use crate::routes;
use crate::store::{Condition, PageRequest, Repo, StoreError};
use state::{StateClaims, StateSigner};

/// Scopes the bridge cannot work without (the agent-token customer grant).
pub const REQUIRED_SCOPES: &[&str] = &["customers:own"];
/// Facebook Login permissions for the Messenger API for Instagram.
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

/// The install flow.
pub struct Install {
    /// Records.
    pub repo: Repo,
    /// Token cipher.
    pub cipher: TokenCipher,
    /// LiveChat (code exchange).
    pub livechat: LivechatClient,
    /// Graph API.
    pub graph: GraphClient,
    /// Time.
    pub clock: Arc<dyn Clock>,
    /// Audit trail.
    pub events: Arc<dyn EventPublisher>,
    /// Signs states.
    pub signer: StateSigner,
    /// External base URL.
    pub public_base_url: String,
    /// LiveChat client id.
    pub livechat_client_id: String,
    /// LiveChat accounts base URL (authorization page).
    pub livechat_accounts_base_url: String,
    /// Facebook dialog base URL.
    pub facebook_dialog_base_url: String,
    /// Graph API version (for the dialog path).
    pub graph_api_version: String,
    /// Meta app id (the Graph client holds the secret for the code exchange).
    pub meta_app_id: String,
}

/// `GET /install`, `GET /oauth/livechat/callback`, `GET /oauth/facebook/callback`,
/// `POST /oauth/facebook/select`.
pub fn install_router(install: Arc<Install>) -> Router {
    Router::new()
        .route(routes::INSTALL, get(start))
        .route(routes::LIVECHAT_CALLBACK, get(livechat_callback))
        .route(routes::FACEBOOK_CALLBACK, get(facebook_callback))
        .route(routes::FACEBOOK_SELECT, post(select))
        .with_state(install)
}

fn nonce() -> String {
    let bytes: [u8; 16] = rand::rng().random();
    hex::encode(bytes)
}

fn internal(e: impl std::fmt::Display) -> Response {
    tracing::error!(error = %e, "install step failed");
    pages::error(
        StatusCode::SERVICE_UNAVAILABLE,
        "Something went wrong",
        "igbridge could not save the installation. Nothing was connected; please try again.",
    )
}

fn bad_state() -> Response {
    tracing::warn!("install request with a forged, expired or reused state");
    pages::error(
        StatusCode::BAD_REQUEST,
        "This link has expired",
        "The installation link is invalid, expired or was already used. Nothing was changed.",
    )
}

impl Install {
    fn redirect_uri(&self, path: &str) -> String {
        format!("{}{path}", self.public_base_url)
    }

    /// Issues a state: the nonce is stored (15 minutes, single use) and signed into the token.
    async fn issue(
        &self,
        step: OAuthStep,
        org: Option<&str>,
        facebook_user_id: Option<String>,
        pages: Vec<PageChoice>,
        n: Option<String>,
    ) -> Result<String, StoreError> {
        let now = self.clock.now();
        let n = n.unwrap_or_else(nonce);
        let record = OAuthState {
            nonce: n.clone(),
            step,
            organization_id: org.map(str::to_string),
            created_at: now,
            expires_at: now.timestamp() + OAUTH_STATE_TTL_SECS,
            facebook_user_id,
            pages,
        };
        self.repo.put(&record, Condition::IfAbsent).await?;
        Ok(self.signer.sign(&StateClaims {
            n,
            s: step,
            o: record.organization_id.clone(),
            e: record.expires_at,
        }))
    }

    /// Verifies and consumes a state: exactly one use, before it expires.
    async fn consume(
        &self,
        token: Option<&String>,
        step: OAuthStep,
    ) -> Result<Option<OAuthState>, StoreError> {
        let now = self.clock.now().timestamp();
        let Some(claims) = token.and_then(|t| self.signer.verify(t, step, now)) else {
            return Ok(None);
        };
        let Some(record) = self
            .repo
            .take::<OAuthState>(&OAuthState::key_for(&claims.n))
            .await?
        else {
            return Ok(None);
        };
        let valid =
            record.step == step && record.expires_at > now && record.organization_id == claims.o;
        Ok(valid.then_some(record))
    }

    fn facebook_dialog(&self, state: &str) -> String {
        let mut url = reqwest::Url::parse(&format!(
            "{}/{}/dialog/oauth",
            self.facebook_dialog_base_url, self.graph_api_version
        ))
        .expect("configured base URL is valid");
        url.query_pairs_mut()
            .append_pair("client_id", &self.meta_app_id)
            .append_pair(
                "redirect_uri",
                &self.redirect_uri(routes::FACEBOOK_CALLBACK),
            )
            .append_pair("state", state)
            .append_pair("response_type", "code")
            .append_pair("scope", FACEBOOK_SCOPES);
        url.to_string()
    }

    /// A reinstall after an uninstall starts clean: what is left of the old one is deleted now.
    async fn clear_uninstalled(&self, org: &str) -> Result<(), StoreError> {
        loop {
            let keys = self
                .repo
                .store()
                .query_organization(
                    org,
                    PageRequest {
                        limit: Some(500),
                        cursor: None,
                    },
                )
                .await?
                .items;
            if keys.is_empty() {
                break;
            }
            self.repo.store().delete_many(&keys).await?;
        }
        let due: Vec<PurgeEntry> = self.repo.query_prefix(PurgeEntry::PARTITION, "").await?;
        for e in due
            .into_iter()
            .filter(|e| e.subject == PurgeSubject::Organization(org.to_string()))
        {
            self.repo
                .take::<PurgeEntry>(&crate::store::Record::key(&e))
                .await?;
        }
        Ok(())
    }

    async fn save_installation(
        &self,
        set: &crate::livechat::TokenSet,
        org: &str,
    ) -> Result<(), StoreError> {
        let now = self.clock.now();
        let existing = self
            .repo
            .get::<Installation>(&Installation::key_for(org))
            .await?;
        if existing
            .as_ref()
            .is_some_and(|i| i.status == InstallationStatus::Uninstalled)
        {
            self.clear_uninstalled(org).await?;
        }
        let installed_at = existing
            .filter(|i| i.status != InstallationStatus::Uninstalled)
            .map_or(now, |i| i.installed_at);
        let inst = Installation {
            organization_id: org.to_string(),
            account_id: set.account_id.clone().unwrap_or_default(),
            access_token: Some(self.cipher.seal(
                &set.access_token,
                &token_context(org, "livechat.access_token"),
            )),
            refresh_token: set.refresh_token.as_ref().map(|t| {
                self.cipher
                    .seal(t, &token_context(org, "livechat.refresh_token"))
            }),
            access_token_expires_at: Some(now + chrono::Duration::seconds(set.expires_in)),
            scopes: set
                .scope
                .as_deref()
                .unwrap_or("")
                .split(',')
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect(),
            status: InstallationStatus::Active,
            installed_at,
            updated_at: now,
            expires_at: None,
        };
        self.repo.put(&inst, Condition::Always).await
    }

    /// Connects a Page: subscribe its webhooks, then store the connection and the routes.
    async fn connect(
        &self,
        org: &str,
        facebook_user_id: &str,
        choice: &PageChoice,
        token: &SecretString,
    ) -> Response {
        let now = self.clock.now();
        // Refuse an account that another live installation holds.
        match self
            .repo
            .get::<AccountRoute>(&AccountRoute::key_for(&choice.ig_account_id))
            .await
        {
            Ok(Some(route)) if route.organization_id != org => {
                let live = self
                    .repo
                    .get::<Installation>(&Installation::key_for(&route.organization_id))
                    .await;
                if matches!(live, Ok(Some(i)) if i.status != InstallationStatus::Uninstalled) {
                    return pages::already_connected(choice.ig_username.as_deref());
                }
            }
            Ok(_) => {}
            Err(e) => return internal(e),
        }
        let subscribed = self
            .graph
            .subscribe_page(&choice.page_id, token, SUBSCRIBED_FIELDS)
            .await;
        if let Err(e) = subscribed {
            tracing::warn!(error = %e, "Page subscription failed");
            return pages::error(
                StatusCode::BAD_GATEWAY,
                "Could not subscribe the Page",
                "Facebook refused to subscribe igbridge to the Page's Instagram messages. Check that you have full control of the Page, then try again. Nothing was connected.",
            );
        }
        let conn = InstagramConnection {
            organization_id: org.to_string(),
            ig_account_id: choice.ig_account_id.clone(),
            ig_username: choice.ig_username.clone(),
            page_id: choice.page_id.clone(),
            page_name: Some(choice.page_name.clone()),
            page_token: Some(self.cipher.seal(
                token,
                &token_context(
                    org,
                    &format!("instagram.page_token:{}", choice.ig_account_id),
                ),
            )),
            facebook_user_id: facebook_user_id.to_string(),
            status: ConnectionStatus::Connected,
            connected_at: now,
            updated_at: now,
            expires_at: None,
        };
        let route = AccountRoute {
            ig_account_id: choice.ig_account_id.clone(),
            organization_id: org.to_string(),
            expires_at: None,
        };
        let link = FacebookUserLink {
            facebook_user_id: facebook_user_id.to_string(),
            organization_id: org.to_string(),
            ig_account_id: choice.ig_account_id.clone(),
            expires_at: None,
        };
        for result in [
            self.repo.put(&conn, Condition::Always).await,
            self.repo.put(&route, Condition::Always).await,
            self.repo.put(&link, Condition::Always).await,
        ] {
            if let Err(e) = result {
                return internal(e);
            }
        }
        publish_logged(
            self.events.as_ref(),
            &[LifecycleEvent::new(LifecycleKind::InstagramConnected, now)
                .org(org)
                .account(&choice.ig_account_id)],
        )
        .await;
        pages::success(choice.ig_username.as_deref(), &choice.page_name)
    }
}

async fn start(State(app): State<Arc<Install>>) -> Response {
    let state = match app
        .issue(OAuthStep::Livechat, None, None, vec![], None)
        .await
    {
        Ok(s) => s,
        Err(e) => return internal(e),
    };
    let mut url = reqwest::Url::parse(&format!("{}/", app.livechat_accounts_base_url))
        .expect("configured base URL is valid");
    url.query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", &app.livechat_client_id)
        .append_pair("redirect_uri", &app.redirect_uri(routes::LIVECHAT_CALLBACK))
        .append_pair("state", &state);
    Redirect::to(url.as_str()).into_response()
}

async fn livechat_callback(
    State(app): State<Arc<Install>>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    // A state we issued must be valid; none at all is a Marketplace install (confirmed below).
    let ours = match q.get("state") {
        Some(_) => match app.consume(q.get("state"), OAuthStep::Livechat).await {
            Ok(Some(_)) => true,
            Ok(None) => return bad_state(),
            Err(e) => return internal(e),
        },
        None => false,
    };
    let Some(code) = q.get("code") else {
        return pages::error(
            StatusCode::BAD_REQUEST,
            "Installation cancelled",
            "LiveChat did not authorize igbridge. Nothing was installed.",
        );
    };
    let set = match app
        .livechat
        .exchange_code(code, &app.redirect_uri(routes::LIVECHAT_CALLBACK))
        .await
    {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "LiveChat code exchange failed");
            return pages::error(
                StatusCode::BAD_GATEWAY,
                "LiveChat authorization failed",
                "LiveChat did not accept the authorization code (it may have expired or been used). Nothing was installed.",
            );
        }
    };
    let granted: Vec<&str> = set
        .scope
        .as_deref()
        .unwrap_or("")
        .split(',')
        .map(str::trim)
        .collect();
    if let Some(missing) = REQUIRED_SCOPES.iter().find(|s| !granted.contains(s)) {
        return pages::error(
            StatusCode::FORBIDDEN,
            "Missing permission",
            &format!(
                "igbridge needs the LiveChat permission {missing}, which only an owner or administrator can grant. Ask an administrator to install igbridge. Nothing was installed."
            ),
        );
    }
    let Some(org) = set.organization_id.clone() else {
        return pages::error(
            StatusCode::BAD_GATEWAY,
            "LiveChat authorization failed",
            "LiveChat did not name the organization. Nothing was installed.",
        );
    };
    if let Err(e) = app.save_installation(&set, &org).await {
        return internal(e);
    }
    publish_logged(
        app.events.as_ref(),
        &[LifecycleEvent::new(LifecycleKind::Installed, app.clock.now()).org(&org)],
    )
    .await;
    let state = match app
        .issue(OAuthStep::Facebook, Some(&org), None, vec![], None)
        .await
    {
        Ok(s) => s,
        Err(e) => return internal(e),
    };
    let dialog = app.facebook_dialog(&state);
    if ours {
        Redirect::to(&dialog).into_response()
    } else {
        pages::confirm(
            &org,
            set.account_id.as_deref().unwrap_or("unknown"),
            &dialog,
        )
    }
}

/// The Pages of `/me/accounts` the bridge can connect (each with its token, sealed for the
/// chooser's state), and those it cannot, with the reason.
fn page_choices(
    app: &Install,
    accounts: Vec<PageAccount>,
    n: &str,
) -> (Vec<(PageChoice, SecretString)>, Vec<pages::NotEligible>) {
    let mut out = Vec::new();
    let mut rest = Vec::new();
    for p in accounts {
        let name = p.name.clone().unwrap_or_else(|| p.id.clone());
        if let Err(why) = p.eligibility() {
            rest.push(pages::NotEligible {
                page_name: name,
                reason: why.reason(),
            });
            continue;
        }
        // Eligible Pages have both (checked by `eligibility`).
        let (Some(token), Some(ig)) =
            (p.access_token.clone(), p.instagram_business_account.clone())
        else {
            continue;
        };
        out.push((
            PageChoice {
                page_id: p.id.clone(),
                page_name: name,
                ig_account_id: ig.id,
                ig_username: ig.username,
                page_token: app.cipher.seal(
                    &token,
                    &token_context(n, &format!("oauth.page_token:{}", p.id)),
                ),
            },
            token,
        ));
    }
    (out, rest)
}

async fn facebook_callback(
    State(app): State<Arc<Install>>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let record = match app.consume(q.get("state"), OAuthStep::Facebook).await {
        Ok(Some(r)) => r,
        Ok(None) => return bad_state(),
        Err(e) => return internal(e),
    };
    let Some(org) = record.organization_id.clone() else {
        return bad_state();
    };
    let Some(code) = q.get("code") else {
        return pages::error(
            StatusCode::BAD_REQUEST,
            "Facebook Login cancelled",
            "Facebook Login was cancelled or refused, so no Instagram account was connected. LiveChat is installed; start again to connect Instagram.",
        );
    };
    let redirect = app.redirect_uri(routes::FACEBOOK_CALLBACK);
    let fail = |what: &str, e: crate::instagram::graph::GraphError| {
        tracing::warn!(error = %e, step = what, "Facebook step failed");
        pages::error(
            StatusCode::BAD_GATEWAY,
            "Facebook step failed",
            &format!("Facebook did not complete: {what}. Nothing was connected; please try again."),
        )
    };
    let short = match app
        .graph
        .exchange_code(&app.meta_app_id, &redirect, code)
        .await
    {
        Ok(t) => t,
        Err(e) => return fail("exchanging the login code", e),
    };
    let long = match app.graph.long_lived_token(&app.meta_app_id, &short).await {
        Ok(t) => t,
        Err(e) => return fail("getting a long-lived token", e),
    };
    let me = match app.graph.me(&long).await {
        Ok(id) => id,
        Err(e) => return fail("reading your Facebook user", e),
    };
    let accounts = match app.graph.pages(&long).await {
        Ok(v) => v,
        Err(e) => return fail("listing your Pages", e),
    };
    let n = nonce();
    let (mut choices, not_eligible) = page_choices(&app, accounts, &n);
    match choices.len() {
        0 => pages::no_pages(&not_eligible),
        1 => {
            let (choice, token) = choices.remove(0);
            app.connect(&org, &me, &choice, &token).await
        }
        _ => {
            let offered: Vec<PageChoice> = choices.into_iter().map(|(c, _)| c).collect();
            let state = match app
                .issue(
                    OAuthStep::PageSelect,
                    Some(&org),
                    Some(me),
                    offered.clone(),
                    Some(n),
                )
                .await
            {
                Ok(s) => s,
                Err(e) => return internal(e),
            };
            let shown: Vec<pages::Choice<'_>> = offered
                .iter()
                .map(|c| pages::Choice {
                    page_id: &c.page_id,
                    page_name: &c.page_name,
                    ig_username: c.ig_username.as_deref(),
                })
                .collect();
            pages::chooser(&state, &shown, &not_eligible)
        }
    }
}

async fn select(
    State(app): State<Arc<Install>>,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let record = match app.consume(form.get("state"), OAuthStep::PageSelect).await {
        Ok(Some(r)) => r,
        Ok(None) => return bad_state(),
        Err(e) => return internal(e),
    };
    let (Some(org), Some(user)) = (
        record.organization_id.clone(),
        record.facebook_user_id.clone(),
    ) else {
        return bad_state();
    };
    let Some(choice) = form
        .get("page_id")
        .and_then(|id| record.pages.iter().find(|p| &p.page_id == id))
    else {
        return pages::error(
            StatusCode::BAD_REQUEST,
            "No Page chosen",
            "The chosen Page was not among those offered. Nothing was connected.",
        );
    };
    let token = match app.cipher.open(
        &choice.page_token,
        &token_context(
            &record.nonce,
            &format!("oauth.page_token:{}", choice.page_id),
        ),
    ) {
        Ok(t) => t,
        Err(e) => return internal(e),
    };
    app.connect(&org, &user, choice, &token).await
}
