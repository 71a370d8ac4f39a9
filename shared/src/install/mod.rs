//! oauth-install: LiveChat OAuth, then Facebook Login, then a confirmation showing the LiveChat
//! organization (name, owner) and the Page and Instagram account, and only then the Page is
//! subscribed and connected. Every step is tied to the browser tab that started the flow
//! (`state::FlowState::bound_to`), so a forwarded link cannot bind someone else's Page; nothing is
//! stored before LiveChat authorizes, no cookies are set, and Page tokens reach the browser only
//! sealed inside the 15-minute state.

pub mod pages;
pub mod state;
pub mod status;

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Form, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use rand::Rng;
use secrecy::{ExposeSecret, SecretString};

use crate::cipher::TokenContext;
use crate::domain::*;
use crate::events::{LifecycleEvent, LifecycleKind, publish_logged};
use crate::instagram::graph::{FACEBOOK_SCOPES, PageAccount, SUBSCRIBED_FIELDS};
use crate::livechat::{Organization, REQUIRED_SCOPES};
use crate::routes;
use crate::store::{Condition, Record, Repo, StoreError};
use state::{FlowSealer, FlowState, OfferedPage, is_binding};

/// The install flow.
pub struct Install {
    /// The table, cipher, clock, events and platform clients.
    pub deps: crate::deps::Deps,
    /// Seals the flow's states.
    pub sealer: FlowSealer,
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
    /// The status page's disconnect.
    pub lifecycle: crate::lifecycle::Lifecycle,
}

/// The install routes: `/install`, both callbacks (GET: the platform's redirect; POST: the same,
/// posted back by the tab with its secret) and the confirmation.
pub fn install_router(install: Arc<Install>) -> Router {
    Router::new()
        .route(routes::INSTALL, get(start))
        .route(
            routes::LIVECHAT_CALLBACK,
            get(livechat_return).post(livechat_callback),
        )
        .route(
            routes::FACEBOOK_CALLBACK,
            get(facebook_return).post(facebook_callback),
        )
        .route(routes::FACEBOOK_SELECT, post(confirm))
        .route(routes::STATUS, get(status::start).post(status::act))
        .route(routes::STATUS_WIDGET, get(status::widget))
        .with_state(install)
}

/// Why an install step stopped; each answers with the page that says so.
#[derive(Debug, thiserror::Error)]
enum StepError {
    /// Forged, expired, wrong-step or already used state.
    #[error("forged, expired or reused state")]
    BadState,
    /// A step of a flow another browser started.
    #[error("state bound to another browser")]
    OtherBrowser,
    /// The person cancelled or refused at the platform.
    #[error("cancelled at {0}")]
    Cancelled(&'static str),
    /// A platform refused a step (`what` is shown; the error is logged).
    #[error("{what}: {detail}")]
    Platform { what: &'static str, detail: String },
    /// Our store failed.
    #[error("store: {0}")]
    Store(#[from] StoreError),
}

impl IntoResponse for StepError {
    fn into_response(self) -> Response {
        match self {
            StepError::BadState => {
                tracing::warn!("install request with a forged, expired or reused state");
                pages::error(
                    StatusCode::BAD_REQUEST,
                    "This link has expired",
                    "The installation link is invalid, expired or was already used. Nothing was changed.",
                )
            }
            StepError::OtherBrowser => {
                tracing::warn!("install step from a browser that did not start the flow");
                pages::other_browser()
            }
            StepError::Cancelled(at) => pages::error(
                StatusCode::BAD_REQUEST,
                "Installation cancelled",
                &format!("{at} did not authorize igbridge, so nothing was connected."),
            ),
            StepError::Platform { what, detail } => {
                tracing::warn!(step = what, error = %detail, "install step refused");
                pages::error(
                    StatusCode::BAD_GATEWAY,
                    "The installation could not continue",
                    &format!("{what}. Nothing was connected; please try again."),
                )
            }
            StepError::Store(e) => {
                tracing::error!(error = %e, "install step failed");
                pages::error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "Something went wrong",
                    "igbridge could not save the installation. Nothing was connected; please try again.",
                )
            }
        }
    }
}

fn nonce() -> String {
    let bytes: [u8; 16] = rand::rng().random();
    hex::encode(bytes)
}

fn field<'a>(form: &'a HashMap<String, String>, name: &str) -> &'a str {
    form.get(name).map(String::as_str).unwrap_or_default()
}

impl Install {
    fn redirect_uri(&self, path: &str) -> String {
        format!("{}{path}", self.public_base_url)
    }

    /// The state of a posted step, if authentic, current and posted by the starting browser.
    fn open(
        &self,
        form: &HashMap<String, String>,
        step: OAuthStep,
    ) -> Result<FlowState, StepError> {
        let now = self.deps.clock.now().timestamp();
        let state = self
            .sealer
            .open(field(form, "state"), step, now)
            .ok_or(StepError::BadState)?;
        if !state.bound_to(field(form, "browser")) {
            return Err(StepError::OtherBrowser);
        }
        Ok(state)
    }

    fn livechat_authorize(&self, state: &str) -> String {
        let mut url = reqwest::Url::parse(&format!("{}/", self.livechat_accounts_base_url))
            .expect("configured base URL is valid");
        url.query_pairs_mut()
            .append_pair("response_type", "code")
            .append_pair("client_id", &self.livechat_client_id)
            .append_pair(
                "redirect_uri",
                &self.redirect_uri(routes::LIVECHAT_CALLBACK),
            )
            .append_pair("state", state);
        url.to_string()
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

    /// The authorization code of the LiveChat step: tokens, the scopes checked, and who the
    /// organization is (shown before anything is connected).
    async fn authorize_livechat(
        &self,
        code: &str,
    ) -> Result<(crate::livechat::TokenSet, Organization), Response> {
        let set = self
            .deps.livechat
            .exchange_code(code, &self.redirect_uri(routes::LIVECHAT_CALLBACK))
            .await
            .map_err(|e| {
                StepError::Platform {
                    what: "LiveChat did not accept the authorization code (it may have expired or been used)",
                    detail: e.to_string(),
                }
                .into_response()
            })?;
        let granted: Vec<&str> = set
            .scope
            .as_deref()
            .unwrap_or("")
            .split(',')
            .map(str::trim)
            .collect();
        if let Some(missing) = REQUIRED_SCOPES.iter().find(|s| !granted.contains(s)) {
            return Err(pages::error(
                StatusCode::FORBIDDEN,
                "Missing permission",
                &format!(
                    "igbridge needs the LiveChat permission {missing}, which only an owner or administrator can grant. Ask an administrator to install igbridge. Nothing was installed."
                ),
            ));
        }
        let org = self
            .deps
            .livechat
            .organization(&set.access_token)
            .await
            .map_err(|e| {
                StepError::Platform {
                    what: "LiveChat did not say which organization authorized igbridge",
                    detail: e.to_string(),
                }
                .into_response()
            })?;
        if set.organization_id.as_deref() != Some(org.organization_id.as_str()) {
            return Err(StepError::Platform {
                what: "LiveChat named two different organizations",
                detail: "token and organizations/my disagree".into(),
            }
            .into_response());
        }
        Ok((set, org))
    }

    /// Stores the installation with the tokens of `set`. `revive`: an uninstalled installation
    /// may be installed again (the install flow); the status page's sign-in passes false, so an
    /// uninstall that landed since it looked is never undone.
    async fn save_installation(
        &self,
        set: &crate::livechat::TokenSet,
        org: &str,
        revive: bool,
    ) -> Result<(), StoreError> {
        let now = self.deps.clock.now();
        let existing = self
            .deps
            .repo
            .get::<Installation>(&Installation::key_for(org))
            .await?;
        let uninstalled = existing
            .as_ref()
            .is_none_or(|i| i.status == InstallationStatus::Uninstalled);
        if uninstalled && !revive {
            return Err(StoreError::ConditionFailed);
        }
        // A reinstall within the 7 days deletes nothing here (this internet-facing function has
        // no delete rights): the new records carry no expiry, and the due purge removes only
        // what the uninstall marked (`Lifecycle::sweep`).
        let installed_at = existing
            .as_ref()
            .filter(|i| i.status != InstallationStatus::Uninstalled)
            .map_or(now, |i| i.installed_at);
        let mut inst = self.installation_of(set, org, installed_at);
        let was_refused = existing
            .as_ref()
            .is_some_and(|i| i.status == InstallationStatus::ReauthRequired);
        // Conditional on the version read: an uninstall (or another install) that lands in
        // between makes this fail, and the admin's retry starts from what is stored then.
        self.write_installation(&mut inst, existing.as_ref(), set)
            .await?;
        // Listed for the health check (purged with the organization).
        let entry = crate::connection::records::InstallationEntry {
            organization_id: org.to_string(),
            expires_at: None,
        };
        self.deps.repo.put(&entry, Condition::Always).await?;
        if was_refused {
            crate::connection::repaired(
                &self.deps.repo,
                self.deps.events.as_ref(),
                org,
                None,
                "LiveChat re-authorized",
                true,
                now,
            )
            .await?;
        }
        // A fresh data key for its queued jobs (an uninstall left a destroyed one).
        crate::datakey::DataKeys::new(
            self.deps.repo.clone(),
            self.deps.cipher.clone(),
            self.deps.clock.clone(),
        )
        .renew(org)
        .await
    }

    /// Writes the installation, conditional on the version read (`existing`).
    async fn write_installation(
        &self,
        inst: &mut Installation,
        existing: Option<&Installation>,
        set: &crate::livechat::TokenSet,
    ) -> Result<(), StoreError> {
        let Some(old) = existing else {
            return self.deps.repo.create(inst).await;
        };
        inst.version = old.version;
        // The tokens it replaces are queued for revocation in the same write, so no crash can
        // leave them live and forgotten.
        match self.replaced_tokens(old, set) {
            Some(pending) => {
                let queued = vec![Repo::to_item(&pending)?];
                self.deps.repo.save_with(inst, queued).await
            }
            None => self.deps.repo.save(inst).await,
        }
    }

    /// The installation a LiveChat grant makes: its tokens sealed, active from now.
    fn installation_of(
        &self,
        set: &crate::livechat::TokenSet,
        org: &str,
        installed_at: chrono::DateTime<chrono::Utc>,
    ) -> Installation {
        let now = self.deps.clock.now();
        Installation {
            organization_id: org.to_string(),
            account_id: set.account_id.clone().unwrap_or_default(),
            access_token: Some(
                self.deps
                    .cipher
                    .seal(&set.access_token, &TokenContext::AgentAccess { org }),
            ),
            refresh_token: set.refresh_token.as_ref().map(|t| {
                self.deps
                    .cipher
                    .seal(t, &TokenContext::AgentRefresh { org })
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
            version: 0,
            purge_due_at: None,
            revoke_token: None,
            refresh_lease_until: None,
        }
    }

    /// The revocation of the LiveChat tokens a save replaces (a reinstall, or an admin's status
    /// sign-in adopted as the installation's), so none stays usable after the uninstall revokes
    /// only the current ones: the old refresh token, which LiveChat revokes with its access
    /// tokens ("Access tokens that come in pairs with a refresh token are revoked in pairs",
    /// platform.text.com Global Accounts API). Only when the refresh token changed: server-side
    /// refresh tokens do not rotate, and revoking an unchanged one would cut the installation
    /// off. The sweeper carries it out within the hour (this function cannot delete the record).
    fn replaced_tokens(
        &self,
        old: &Installation,
        set: &crate::livechat::TokenSet,
    ) -> Option<PendingRevocation> {
        if old.status == InstallationStatus::Uninstalled {
            return None; // its tokens were queued by the uninstall
        }
        let org = &old.organization_id;
        let context = TokenContext::AgentRefresh { org };
        let sealed = old.refresh_token.as_ref()?;
        let old_refresh = self.deps.cipher.open(sealed, &context).ok()?;
        let unchanged = set
            .refresh_token
            .as_ref()
            .is_some_and(|new| new.expose_secret() == old_refresh.expose_secret());
        if unchanged {
            return None;
        }
        let token = self
            .deps
            .cipher
            .seal(&old_refresh, &TokenContext::LivechatRevoke { org });
        Some(PendingRevocation {
            organization_id: org.clone(),
            id: format!("livechat-replaced:{}", nonce()),
            revocation: Revocation::Livechat { token },
            attempts: 0,
            expires_at: self.deps.clock.now().timestamp()
                + crate::lifecycle::RETENTION_AFTER_UNINSTALL_SECS,
        })
    }

    /// Spends the flow: a confirmation is carried out once.
    async fn spend(&self, state: &FlowState, org: &str) -> Result<(), StepError> {
        let now = self.deps.clock.now();
        let used = OAuthState {
            nonce: state.flow.clone(),
            step: OAuthStep::Confirm,
            organization_id: Some(org.to_string()),
            created_at: now,
            expires_at: state.expires_at,
        };
        match self.deps.repo.put(&used, Condition::IfAbsent).await {
            Err(StoreError::ConditionFailed) => Err(StepError::BadState),
            other => Ok(other?),
        }
    }

    /// The condition under which `org` may write the Instagram account's route, or `None` when
    /// another live installation holds the account. The write is conditional, so two
    /// organizations connecting the same account at once cannot both win: it succeeds only if
    /// there is no route, the route is already `org`'s, or its installation is gone.
    async fn route_condition(
        &self,
        org: &str,
        ig_account_id: &str,
    ) -> Result<Option<Condition>, StoreError> {
        let current = self
            .deps
            .repo
            .get::<AccountRoute>(&AccountRoute::key_for(ig_account_id))
            .await?;
        let holder_org = match current {
            None => return Ok(Some(Condition::IfAbsent)),
            Some(r) => r.organization_id,
        };
        if holder_org != org {
            let holder = self
                .deps
                .repo
                .get::<Installation>(&Installation::key_for(&holder_org))
                .await?;
            // Its holder's connection may have been disconnected (the status page): the route
            // waits for the purge, but the account is free.
            let held = self
                .deps
                .repo
                .get::<InstagramConnection>(&InstagramConnection::key_for(
                    &holder_org,
                    ig_account_id,
                ))
                .await?
                .is_some_and(|c| c.status != ConnectionStatus::Disconnected);
            if held && holder.is_some_and(|i| i.status != InstallationStatus::Uninstalled) {
                return Ok(None);
            }
        }
        Ok(Some(Condition::IfEquals {
            attribute: "organization_id".into(),
            value: serde_json::json!(holder_org),
        }))
    }

    /// Connects a Page: subscribe its webhooks, then claim the route and store the connection
    /// and its link in one transaction fenced on the installation being installed — a
    /// confirmation (or a status-page reconnect) landing after the uninstall stores nothing.
    async fn connect(
        &self,
        org: &str,
        facebook_user_id: &str,
        choice: &OfferedPage,
    ) -> Result<Response, StepError> {
        let now = self.deps.clock.now();
        let token = SecretString::from(choice.page_token.clone());
        if let Err(e) = self
            .deps
            .graph
            .subscribe_page(&choice.page_id, &token, SUBSCRIBED_FIELDS)
            .await
        {
            tracing::warn!(error = %e, "Page subscription failed");
            return Ok(pages::error(
                StatusCode::BAD_GATEWAY,
                "Could not subscribe the Page",
                "Facebook refused to subscribe igbridge to the Page's Instagram messages. Check that you have full control of the Page, then try again. Nothing was connected.",
            ));
        }
        let Some(route_condition) = self.route_condition(org, &choice.ig_account_id).await? else {
            return Ok(pages::already_connected(choice.ig_username.as_deref()));
        };
        let conn = self.connection_of(org, facebook_user_id, choice, &token, now);
        let before = self
            .deps
            .repo
            .get::<InstagramConnection>(&conn.key())
            .await?
            .map(|c| c.status);
        let stored = self
            .store_connection(org, &conn, route_condition, facebook_user_id)
            .await;
        match stored {
            Ok(()) => {}
            Err(StoreError::ConditionFailed) => {
                return self.refused(org, facebook_user_id, choice, &token).await;
            }
            Err(e) => return Err(e.into()),
        }
        self.reset_health(org, &choice.ig_account_id, before)
            .await?;
        publish_logged(
            self.deps.events.as_ref(),
            &[LifecycleEvent::new(LifecycleKind::InstagramConnected, now)
                .org(org)
                .account(&choice.ig_account_id)],
        )
        .await;
        Ok(pages::success(
            choice.ig_username.as_deref(),
            &choice.page_name,
        ))
    }

    /// The connection a confirmed choice makes, its Page token sealed.
    fn connection_of(
        &self,
        org: &str,
        facebook_user_id: &str,
        choice: &OfferedPage,
        token: &SecretString,
        now: chrono::DateTime<chrono::Utc>,
    ) -> InstagramConnection {
        InstagramConnection {
            organization_id: org.to_string(),
            ig_account_id: choice.ig_account_id.clone(),
            ig_username: choice.ig_username.clone(),
            page_id: choice.page_id.clone(),
            page_name: Some(choice.page_name.clone()),
            page_token: Some(self.deps.cipher.seal(
                token,
                &TokenContext::Page {
                    org,
                    ig: &choice.ig_account_id,
                },
            )),
            facebook_user_id: facebook_user_id.to_string(),
            status: ConnectionStatus::Connected,
            connected_at: now,
            updated_at: now,
            expires_at: None,
        }
    }

    /// The route, the connection and the Facebook user's link, all or nothing, only while the
    /// installation is installed (`ConditionFailed` otherwise, or when the route was taken).
    async fn store_connection(
        &self,
        org: &str,
        conn: &InstagramConnection,
        route_condition: Condition,
        facebook_user_id: &str,
    ) -> Result<(), StoreError> {
        let route = AccountRoute {
            ig_account_id: conn.ig_account_id.clone(),
            organization_id: org.to_string(),
            expires_at: None,
        };
        let link = FacebookUserLink {
            facebook_user_id: facebook_user_id.to_string(),
            organization_id: org.to_string(),
            ig_account_id: conn.ig_account_id.clone(),
            expires_at: None,
        };
        let installed = Condition::IfOneOf {
            attribute: "status".into(),
            values: vec![
                serde_json::json!(InstallationStatus::Active),
                serde_json::json!(InstallationStatus::ReauthRequired),
            ],
        };
        let put = |item, condition| crate::store::TransactWrite::Put { item, condition };
        let writes = vec![
            crate::store::TransactWrite::Check {
                key: Installation::key_for(org),
                condition: installed,
            },
            put(Repo::to_item(&route)?, route_condition),
            put(Repo::to_item(conn)?, Condition::Always),
            put(Repo::to_item(&link)?, Condition::Always),
        ];
        self.deps.repo.store().transact(writes).await
    }

    /// A connect the store refused: another organization took the account meanwhile, or the
    /// installation was uninstalled — then what the flow obtained is given back (the Page's
    /// subscription, the person's grant), since no purge will ever know of it.
    async fn refused(
        &self,
        org: &str,
        facebook_user_id: &str,
        choice: &OfferedPage,
        token: &SecretString,
    ) -> Result<Response, StepError> {
        let inst = self
            .deps
            .repo
            .get::<Installation>(&Installation::key_for(org))
            .await?;
        if inst.is_some_and(|i| i.status != InstallationStatus::Uninstalled) {
            return Ok(pages::already_connected(choice.ig_username.as_deref()));
        }
        tracing::warn!(organization_id = %org, "a connection confirmed after the uninstall: nothing stored, the Page and the grant given back");
        let page = crate::lifecycle::ObtainedPage {
            page_id: &choice.page_id,
            ig_account_id: &choice.ig_account_id,
            token,
            facebook_user_id,
        };
        self.lifecycle.give_back(org, page).await?;
        Ok(pages::error(
            StatusCode::CONFLICT,
            "igbridge was uninstalled",
            "igbridge was uninstalled from this LiveChat organization while you confirmed, so nothing was connected and Facebook's access was given back. Install igbridge again to connect the account.",
        ))
    }
}

impl Install {
    /// A connection made (again) starts with a clean health record; one that was broken is
    /// repaired, and the jobs parked waiting for it are replayed.
    async fn reset_health(
        &self,
        org: &str,
        ig: &str,
        before: Option<ConnectionStatus>,
    ) -> Result<(), StoreError> {
        let now = self.deps.clock.now();
        let was_broken = before == Some(ConnectionStatus::Broken);
        let health = crate::connection::records::ConnectionHealth {
            organization_id: org.to_string(),
            ig_account_id: ig.to_string(),
            repaired_at: was_broken.then_some(now),
            repair: was_broken.then(|| "reconnected by an admin".to_string()),
            ..Default::default()
        };
        self.deps.repo.put(&health, Condition::Always).await?;
        if was_broken {
            crate::connection::repaired(
                &self.deps.repo,
                self.deps.events.as_ref(),
                org,
                Some(ig),
                "reconnected by an admin",
                true,
                now,
            )
            .await?;
        }
        Ok(())
    }
}

/// `GET /install`: the page that creates this tab's flow secret; `GET /install?b=<its hash>`: on
/// to LiveChat with a state bound to the tab. Nothing is stored: unauthenticated traffic costs
/// no writes.
async fn start(
    State(app): State<Arc<Install>>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let Some(binding) = q.get("b").filter(|b| is_binding(b)) else {
        return pages::begin();
    };
    let state = FlowState {
        step: OAuthStep::Livechat,
        flow: nonce(),
        binding: binding.clone(),
        expires_at: app.deps.clock.now().timestamp() + OAUTH_STATE_TTL_SECS,
        organization: None,
        facebook_user_id: None,
        pages: vec![],
    };
    Redirect::to(&app.livechat_authorize(&app.sealer.seal(&state))).into_response()
}

/// `GET /oauth/livechat/callback`: LiveChat's redirect. With our state it is posted back with
/// the tab's secret; without (an install started in the Marketplace) this tab starts its own
/// bound flow, whose LiveChat authorization is immediate for a signed-in administrator.
async fn livechat_return(Query(q): Query<HashMap<String, String>>) -> Response {
    let Some(code) = q.get("code") else {
        return StepError::Cancelled("LiveChat").into_response();
    };
    match q.get("state") {
        Some(state) => pages::post_back(
            routes::LIVECHAT_CALLBACK,
            &[("code", code), ("state", state)],
        ),
        None => pages::begin(),
    }
}

/// `POST /oauth/livechat/callback`: the code, from the browser that started the flow.
async fn livechat_callback(
    State(app): State<Arc<Install>>,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let now = app.deps.clock.now().timestamp();
    if let Some(sign_in) = app
        .sealer
        .open(field(&form, "state"), OAuthStep::StatusSignIn, now)
    {
        return status::signed_in(&app, &form, sign_in).await;
    }
    let state = match app.open(&form, OAuthStep::Livechat) {
        Ok(s) => s,
        Err(e) => return e.into_response(),
    };
    let (set, org) = match app.authorize_livechat(field(&form, "code")).await {
        Ok(v) => v,
        Err(page) => return page,
    };
    if let Err(e) = app
        .save_installation(&set, &org.organization_id, true)
        .await
    {
        return StepError::from(e).into_response();
    }
    publish_logged(
        app.deps.events.as_ref(),
        &[
            LifecycleEvent::new(LifecycleKind::Installed, app.deps.clock.now())
                .org(&org.organization_id),
        ],
    )
    .await;
    let next = FlowState {
        organization: Some(org),
        ..state.next(OAuthStep::Facebook)
    };
    pages::go_on(
        "LiveChat is authorized",
        &app.facebook_dialog(&app.sealer.seal(&next)),
        "Continue with Facebook",
    )
}

/// `GET /oauth/facebook/callback`: Facebook's redirect, posted back with the tab's secret.
async fn facebook_return(Query(q): Query<HashMap<String, String>>) -> Response {
    match (q.get("code"), q.get("state")) {
        (Some(code), Some(state)) => pages::post_back(
            routes::FACEBOOK_CALLBACK,
            &[("code", code), ("state", state)],
        ),
        (None, _) => StepError::Cancelled("Facebook").into_response(),
        (_, None) => StepError::BadState.into_response(),
    }
}

/// The Pages of `/me/accounts` the bridge can connect, and those it cannot, with the reason.
fn offered_pages(accounts: Vec<PageAccount>) -> (Vec<OfferedPage>, Vec<pages::NotEligible>) {
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
        let (Some(token), Some(ig)) = (p.access_token, p.instagram_business_account) else {
            continue;
        };
        out.push(OfferedPage {
            page_id: p.id,
            page_name: name,
            ig_account_id: ig.id,
            ig_username: ig.username,
            page_token: token.expose_secret().to_string(),
        });
    }
    (out, rest)
}

/// Facebook Login's code → the Facebook user and the Pages they manage.
async fn facebook_pages(
    app: &Install,
    code: &str,
) -> Result<(String, Vec<PageAccount>), StepError> {
    let fail = |what: &'static str| {
        move |e: crate::instagram::graph::GraphError| StepError::Platform {
            what,
            detail: e.to_string(),
        }
    };
    let redirect = app.redirect_uri(routes::FACEBOOK_CALLBACK);
    let short = app
        .deps
        .graph
        .exchange_code(&app.meta_app_id, &redirect, code)
        .await
        .map_err(fail("Facebook did not accept the login code"))?;
    let long = app
        .deps
        .graph
        .long_lived_token(&app.meta_app_id, &short)
        .await
        .map_err(fail("Facebook did not give a long-lived token"))?;
    let me = app
        .deps
        .graph
        .me(&long)
        .await
        .map_err(fail("Facebook did not name the logged-in user"))?;
    let accounts = app
        .deps
        .graph
        .pages(&long)
        .await
        .map_err(fail("Facebook did not list your Pages"))?;
    Ok((me, accounts))
}

/// `POST /oauth/facebook/callback`: the code, from the browser that started the flow → the
/// confirmation page (nothing is stored yet).
async fn facebook_callback(
    State(app): State<Arc<Install>>,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let state = match app.open(&form, OAuthStep::Facebook) {
        Ok(s) => s,
        Err(e) => return e.into_response(),
    };
    let Some(org) = state.organization.clone() else {
        return StepError::BadState.into_response();
    };
    let (me, accounts) = match facebook_pages(&app, field(&form, "code")).await {
        Ok(v) => v,
        Err(e) => return e.into_response(),
    };
    let (offered, not_eligible) = offered_pages(accounts);
    if offered.is_empty() {
        return pages::no_pages(&not_eligible);
    }
    let shown: Vec<pages::Choice<'_>> = offered
        .iter()
        .map(|c| pages::Choice {
            page_id: &c.page_id,
            page_name: &c.page_name,
            ig_username: c.ig_username.as_deref(),
        })
        .collect();
    let next = FlowState {
        facebook_user_id: Some(me),
        pages: offered.clone(),
        ..state.next(OAuthStep::Confirm)
    };
    pages::confirm(&app.sealer.seal(&next), &org, &shown, &not_eligible)
}

/// `POST /oauth/facebook/select`: the person confirmed the organization and the Page.
async fn confirm(
    State(app): State<Arc<Install>>,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let state = match app.open(&form, OAuthStep::Confirm) {
        Ok(s) => s,
        Err(e) => return e.into_response(),
    };
    let (Some(org), Some(user)) = (state.organization.clone(), state.facebook_user_id.clone())
    else {
        return StepError::BadState.into_response();
    };
    let Some(choice) = state
        .pages
        .iter()
        .find(|p| p.page_id == field(&form, "page_id"))
    else {
        return pages::error(
            StatusCode::BAD_REQUEST,
            "No Page chosen",
            "The chosen Page was not among those offered. Nothing was connected.",
        );
    };
    let connected = async {
        app.spend(&state, &org.organization_id).await?;
        app.connect(&org.organization_id, &user, choice).await
    };
    match connected.await {
        Ok(page) => page,
        Err(e) => e.into_response(),
    }
}
