//! oauth-install: LiveChat OAuth, then Facebook Login, then a confirmation showing the LiveChat
//! organization (name, owner) and the Page and Instagram account, and only then the Page is
//! subscribed and connected. Every step is tied to the browser tab that started the flow
//! (`state::FlowState::bound_to`), so a forwarded link cannot bind someone else's Page; nothing is
//! stored before LiveChat authorizes, no cookies are set, and Page tokens reach the browser only
//! sealed inside the 15-minute state.

pub mod state;
pub mod status;

use crate::ids::FlowId;
use rand::Rng;
use secrecy::{ExposeSecret, SecretString};

use crate::cipher::TokenContext;
use crate::domain::*;
use crate::events::{LifecycleEvent, LifecycleKind, publish_logged};
use crate::ids::{FacebookUserId, IgAccountId, OrgId, PageId};
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

/// Why a step of the install flow or the status page stopped; the web edge
/// (`crate::web::oauth_install`) answers each with the page that says so.
#[derive(Debug, thiserror::Error)]
pub enum StepError {
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
    Platform {
        /// What failed, in the person's words.
        what: &'static str,
        /// The platform's error (logged, never shown).
        detail: String,
    },
    /// LiveChat granted fewer scopes than the bridge needs (only an owner or admin can grant them).
    #[error("LiveChat scope {0} not granted")]
    MissingScope(&'static str),
    /// Facebook refused to subscribe the app to the Page.
    #[error("Page subscription refused: {0}")]
    SubscribeRefused(String),
    /// The confirmation named a Page that was not offered.
    #[error("the chosen Page was not offered")]
    NoPageChosen,
    /// Another live installation holds the Instagram account.
    #[error("the Instagram account is connected to another installation")]
    ConnectedElsewhere {
        /// The account's username, when known.
        ig_username: Option<String>,
    },
    /// Uninstalled while the person confirmed: nothing stored, the Page and grant given back.
    #[error("uninstalled while the connection was confirmed")]
    UninstalledMeanwhile,
    /// A configured URL the flow builds on does not parse.
    #[error("misconfigured: {0}")]
    Misconfigured(String),
    /// The status page's sign-in code was refused by LiveChat.
    #[error("status sign-in refused: {0}")]
    SignInRefused(String),
    /// LiveChat did not let the bridge check the signed-in person's role.
    #[error("role not readable: {0}")]
    RoleUnknown(String),
    /// The signed-in person is not an owner or administrator.
    #[error("not an owner or administrator")]
    NotAdmin,
    /// LiveChat did not say (consistently) which organization signed in.
    #[error("organization of the sign-in unknown")]
    OrganizationUnknown,
    /// The signed-in organization has no live installation.
    #[error("not installed")]
    NotInstalled,
    /// The installation changed during the sign-in (it may have been uninstalled).
    #[error("installation changed during the sign-in")]
    ChangedMeanwhile,
    /// The status session ended (or its state is not authentic).
    #[error("status session ended")]
    SignedOut,
    /// Uninstalled during the status session.
    #[error("uninstalled during the status session")]
    NoLongerInstalled,
    /// Our store failed.
    #[error("store: {0}")]
    Store(#[from] StoreError),
}

/// What the browser posts back at each step: the flow's sealed state and the tab's secret.
#[derive(Clone, Copy)]
pub struct Posted<'a> {
    /// The sealed state.
    pub state: &'a str,
    /// The tab's secret (its SHA-256 is the state's binding).
    pub browser: &'a str,
}

/// A Page the person manages that cannot be connected, and why.
pub struct NotEligible {
    /// Page name.
    pub page_name: String,
    /// Why not.
    pub reason: &'static str,
}

/// The confirmation to show: the organization, the Pages that can be connected and those that
/// cannot, and the sealed state the confirmation posts.
pub struct Offer {
    /// The next step's sealed state.
    pub state: String,
    /// The LiveChat organization that authorized.
    pub organization: Organization,
    /// The Pages that can be connected (none: the page explains how to link one).
    pub pages: Vec<OfferedPage>,
    /// The Pages that cannot, with the reason.
    pub not_eligible: Vec<NotEligible>,
}

/// A connection made.
pub struct Connected {
    /// The Instagram account's username, when known.
    pub ig_username: Option<String>,
    /// The Page's name.
    pub page_name: String,
}

fn nonce() -> String {
    let bytes: [u8; 16] = rand::rng().random();
    hex::encode(bytes)
}

impl Install {
    fn redirect_uri(&self, path: &str) -> String {
        format!("{}{path}", self.public_base_url)
    }

    /// The state of a posted step, if authentic, current and posted by the starting browser.
    fn open(&self, posted: Posted<'_>, step: OAuthStep) -> Result<FlowState, StepError> {
        let now = self.deps.clock.now().timestamp();
        let state = self
            .sealer
            .open(posted.state, step, now)
            .ok_or(StepError::BadState)?;
        if !state.bound_to(posted.browser) {
            return Err(StepError::OtherBrowser);
        }
        Ok(state)
    }

    /// `base` with `path` and the query `pairs`, or why the configured base is no URL.
    fn url(base: &str, path: &str, pairs: &[(&str, &str)]) -> Result<String, StepError> {
        let mut url = reqwest::Url::parse(&format!("{base}{path}"))
            .map_err(|e| StepError::Misconfigured(format!("{base}: {e}")))?;
        url.query_pairs_mut().extend_pairs(pairs);
        Ok(url.to_string())
    }

    fn livechat_authorize(&self, state: &str) -> Result<String, StepError> {
        let redirect = self.redirect_uri(routes::LIVECHAT_CALLBACK);
        Self::url(
            &self.livechat_accounts_base_url,
            "/",
            &[
                ("response_type", "code"),
                ("client_id", &self.livechat_client_id),
                ("redirect_uri", &redirect),
                ("state", state),
            ],
        )
    }

    fn facebook_dialog(&self, state: &str) -> Result<String, StepError> {
        let redirect = self.redirect_uri(routes::FACEBOOK_CALLBACK);
        Self::url(
            &self.facebook_dialog_base_url,
            &format!("/{}/dialog/oauth", self.graph_api_version),
            &[
                ("client_id", &self.meta_app_id),
                ("redirect_uri", &redirect),
                ("state", state),
                ("response_type", "code"),
                ("scope", FACEBOOK_SCOPES),
            ],
        )
    }

    /// Where a tab whose secret hashes to `binding` goes to sign in with LiveChat: the install
    /// (`OAuthStep::Livechat`) or the status page (`OAuthStep::StatusSignIn`); `None` for a
    /// binding that is not one (the page that creates it is shown). Nothing is stored:
    /// unauthenticated traffic costs no writes.
    pub fn sign_in_with_livechat(
        &self,
        binding: &str,
        step: OAuthStep,
    ) -> Option<Result<String, StepError>> {
        if !is_binding(binding) {
            return None;
        }
        let state = FlowState {
            step,
            flow: nonce(),
            binding: binding.to_string(),
            expires_at: self.deps.clock.now().timestamp() + OAUTH_STATE_TTL_SECS,
            organization: None,
            facebook_user_id: None,
            pages: vec![],
        };
        Some(self.livechat_authorize(&self.sealer.seal(&state)))
    }

    /// The granted scopes of a LiveChat token set.
    fn granted(set: &crate::livechat::TokenSet) -> Vec<&str> {
        set.scope
            .as_deref()
            .unwrap_or("")
            .split(',')
            .map(str::trim)
            .collect()
    }

    /// The authorization code of the LiveChat step: tokens, the scopes checked, and who the
    /// organization is (shown before anything is connected).
    async fn authorize_livechat(
        &self,
        code: &str,
    ) -> Result<(crate::livechat::TokenSet, Organization), StepError> {
        let platform = |what: &'static str| {
            move |e: crate::livechat::LivechatError| StepError::Platform {
                what,
                detail: e.to_string(),
            }
        };
        let set = self
            .deps
            .livechat
            .exchange_code(code, &self.redirect_uri(routes::LIVECHAT_CALLBACK))
            .await
            .map_err(platform(
                "LiveChat did not accept the authorization code (it may have expired or been used)",
            ))?;
        let granted = Self::granted(&set);
        if let Some(missing) = REQUIRED_SCOPES.iter().find(|s| !granted.contains(s)) {
            return Err(StepError::MissingScope(missing));
        }
        let org = self
            .deps
            .livechat
            .organization(&set.access_token)
            .await
            .map_err(platform(
                "LiveChat did not say which organization authorized igbridge",
            ))?;
        if set.organization_id.as_deref() != Some(org.organization_id.as_str()) {
            return Err(StepError::Platform {
                what: "LiveChat named two different organizations",
                detail: "token and organizations/my disagree".into(),
            });
        }
        Ok((set, org))
    }

    /// Stores the installation with the tokens of `set`. `revive`: an uninstalled installation
    /// may be installed again (the install flow); the status page's sign-in passes false, so an
    /// uninstall that landed since it looked is never undone.
    async fn save_installation(
        &self,
        set: &crate::livechat::TokenSet,
        org: &OrgId,
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
            organization_id: org.to_owned(),
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
        org: &OrgId,
        installed_at: chrono::DateTime<chrono::Utc>,
    ) -> Installation {
        let now = self.deps.clock.now();
        Installation {
            organization_id: org.to_owned(),
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
            id: format!("livechat-replaced:{}", nonce()).into(),
            revocation: Revocation::Livechat { token },
            attempts: 0,
            expires_at: self.deps.clock.now().timestamp()
                + crate::lifecycle::RETENTION_AFTER_UNINSTALL_SECS,
        })
    }

    /// Spends the flow: a confirmation is carried out once.
    async fn spend(&self, state: &FlowState, org: &OrgId) -> Result<(), StepError> {
        let now = self.deps.clock.now();
        let used = OAuthState {
            nonce: FlowId::from(state.flow.clone()),
            step: OAuthStep::Confirm,
            organization_id: Some(org.to_owned()),
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
        org: &OrgId,
        ig_account_id: &IgAccountId,
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
        org: &OrgId,
        facebook_user_id: &FacebookUserId,
        choice: &OfferedPage,
    ) -> Result<Connected, StepError> {
        let now = self.deps.clock.now();
        let token = SecretString::from(choice.page_token.clone());
        self.deps
            .graph
            .subscribe_page(&choice.page_id, &token, SUBSCRIBED_FIELDS)
            .await
            .map_err(|e| StepError::SubscribeRefused(e.to_string()))?;
        let elsewhere = || StepError::ConnectedElsewhere {
            ig_username: choice.ig_username.clone(),
        };
        let Some(route_condition) = self.route_condition(org, &choice.ig_account_id).await? else {
            return Err(elsewhere());
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
                return Err(self.refused(org, facebook_user_id, choice, &token).await);
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
        Ok(Connected {
            ig_username: choice.ig_username.clone(),
            page_name: choice.page_name.clone(),
        })
    }

    /// The connection a confirmed choice makes, its Page token sealed.
    fn connection_of(
        &self,
        org: &OrgId,
        facebook_user_id: &FacebookUserId,
        choice: &OfferedPage,
        token: &SecretString,
        now: chrono::DateTime<chrono::Utc>,
    ) -> InstagramConnection {
        InstagramConnection {
            organization_id: org.to_owned(),
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
            facebook_user_id: facebook_user_id.to_owned(),
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
        org: &OrgId,
        conn: &InstagramConnection,
        route_condition: Condition,
        facebook_user_id: &FacebookUserId,
    ) -> Result<(), StoreError> {
        let route = AccountRoute {
            ig_account_id: conn.ig_account_id.clone(),
            organization_id: org.to_owned(),
            expires_at: None,
        };
        let link = FacebookUserLink {
            facebook_user_id: facebook_user_id.to_owned(),
            organization_id: org.to_owned(),
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
        org: &OrgId,
        facebook_user_id: &FacebookUserId,
        choice: &OfferedPage,
        token: &SecretString,
    ) -> StepError {
        let inst = self
            .deps
            .repo
            .get::<Installation>(&Installation::key_for(org))
            .await;
        match inst {
            Err(e) => return e.into(),
            Ok(Some(i)) if i.status != InstallationStatus::Uninstalled => {
                return StepError::ConnectedElsewhere {
                    ig_username: choice.ig_username.clone(),
                };
            }
            Ok(_) => {}
        }
        tracing::warn!(organization_id = %org, "a connection confirmed after the uninstall: nothing stored, the Page and the grant given back");
        let page = crate::lifecycle::ObtainedPage {
            page_id: &choice.page_id,
            ig_account_id: &choice.ig_account_id,
            token,
            facebook_user_id,
        };
        match self.lifecycle.give_back(org, page).await {
            Ok(()) => StepError::UninstalledMeanwhile,
            Err(e) => e.into(),
        }
    }
}

impl Install {
    /// A connection made (again) starts with a clean health record; one that was broken is
    /// repaired, and the jobs parked waiting for it are replayed.
    async fn reset_health(
        &self,
        org: &OrgId,
        ig: &IgAccountId,
        before: Option<ConnectionStatus>,
    ) -> Result<(), StoreError> {
        let now = self.deps.clock.now();
        let was_broken = before == Some(ConnectionStatus::Broken);
        let health = crate::connection::records::ConnectionHealth {
            organization_id: org.to_owned(),
            ig_account_id: ig.to_owned(),
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

impl Install {
    /// The LiveChat step of the install (`POST /oauth/livechat/callback` from the starting
    /// tab): the installation stored with LiveChat's tokens, then on to Facebook Login — the
    /// dialog's URL, with the next step's state.
    pub async fn install_livechat(
        &self,
        posted: Posted<'_>,
        code: &str,
    ) -> Result<String, StepError> {
        let state = self.open(posted, OAuthStep::Livechat)?;
        let (set, org) = self.authorize_livechat(code).await?;
        self.save_installation(&set, &org.organization_id, true)
            .await?;
        let installed = LifecycleEvent::new(LifecycleKind::Installed, self.deps.clock.now())
            .org(&org.organization_id);
        publish_logged(self.deps.events.as_ref(), &[installed]).await;
        let next = FlowState {
            organization: Some(org),
            ..state.next(OAuthStep::Facebook)
        };
        self.facebook_dialog(&self.sealer.seal(&next))
    }

    /// The Facebook step (`POST /oauth/facebook/callback` from the starting tab): the Pages
    /// offered for confirmation. Nothing is stored yet.
    pub async fn offer(&self, posted: Posted<'_>, code: &str) -> Result<Offer, StepError> {
        let state = self.open(posted, OAuthStep::Facebook)?;
        let org = state.organization.clone().ok_or(StepError::BadState)?;
        let (me, accounts) = self.facebook_pages(code).await?;
        let (offered, not_eligible) = offered_pages(accounts);
        let next = FlowState {
            facebook_user_id: Some(me),
            pages: offered.clone(),
            ..state.next(OAuthStep::Confirm)
        };
        Ok(Offer {
            state: self.sealer.seal(&next),
            organization: org,
            pages: offered,
            not_eligible,
        })
    }

    /// The confirmation (`POST /oauth/facebook/select`): the flow spent once, the chosen Page
    /// connected.
    pub async fn confirm(
        &self,
        posted: Posted<'_>,
        page_id: &PageId,
    ) -> Result<Connected, StepError> {
        let state = self.open(posted, OAuthStep::Confirm)?;
        let (Some(org), Some(user)) = (state.organization.clone(), state.facebook_user_id.clone())
        else {
            return Err(StepError::BadState);
        };
        let choice = state
            .pages
            .iter()
            .find(|p| p.page_id == page_id)
            .ok_or(StepError::NoPageChosen)?;
        self.spend(&state, &org.organization_id).await?;
        self.connect(&org.organization_id, &user, choice).await
    }

    /// Facebook Login's code → the Facebook user and the Pages they manage.
    async fn facebook_pages(
        &self,
        code: &str,
    ) -> Result<(FacebookUserId, Vec<PageAccount>), StepError> {
        let fail = |what: &'static str| {
            move |e: crate::instagram::graph::GraphError| StepError::Platform {
                what,
                detail: e.to_string(),
            }
        };
        let graph = &self.deps.graph;
        let redirect = self.redirect_uri(routes::FACEBOOK_CALLBACK);
        let short = graph
            .exchange_code(&self.meta_app_id, &redirect, code)
            .await
            .map_err(fail("Facebook did not accept the login code"))?;
        let long = graph
            .long_lived_token(&self.meta_app_id, &short)
            .await
            .map_err(fail("Facebook did not give a long-lived token"))?;
        let me = graph
            .me(&long)
            .await
            .map_err(fail("Facebook did not name the logged-in user"))?;
        let accounts = graph
            .pages(&long)
            .await
            .map_err(fail("Facebook did not list your Pages"))?;
        Ok((me.into(), accounts))
    }
}

/// The Pages of `/me/accounts` the bridge can connect, and those it cannot, with the reason.
fn offered_pages(accounts: Vec<PageAccount>) -> (Vec<OfferedPage>, Vec<NotEligible>) {
    let mut out = Vec::new();
    let mut rest = Vec::new();
    for p in accounts {
        let name = p.name.clone().unwrap_or_else(|| p.id.clone());
        if let Err(why) = p.eligibility() {
            rest.push(NotEligible {
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
            page_id: p.id.into(),
            page_name: name,
            ig_account_id: ig.id.into(),
            ig_username: ig.username,
            page_token: token.expose_secret().to_string(),
        });
    }
    (out, rest)
}
