//! The LiveChat admin's status page, as the domain sees it. `GET /status` signs in through
//! LiveChat (the same tab-bound flow as the install, so nothing is kept in the browser but this
//! tab's secret in `sessionStorage`, and no cookie); LiveChat's answer opens a session for that
//! organization, and only for its owner or an administrator. The page's buttons post the sealed
//! session (the organization, 15 minutes, bound to the tab): replay the parked messages,
//! reconnect an Instagram account (on to Facebook Login, as an install would), disconnect one.
//! A reload after the session ends signs in again, silently while the LiveChat session lasts.
//! The page itself is drawn by `crate::web::status_page`.

use chrono::{DateTime, Utc};

use super::state::FlowState;
use super::{Install, Posted, StepError, nonce};
use crate::connection::records::{Activity, Backlog, ConnectionHealth};
use crate::domain::*;
use crate::events::{LifecycleEvent, LifecycleKind, publish_logged};
use crate::health::ReplayAsked;
use crate::ids::{IgAccountId, OrgId};
use crate::livechat::Organization;
use crate::routes;
use crate::store::{StoreError, keys};

/// How long a status session lasts.
pub const SESSION_SECS: i64 = 15 * 60;

/// A button of the status page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StatusAction {
    /// Replay the organization's parked messages.
    Replay,
    /// Reconnect an Instagram account (or connect another): on to Facebook Login.
    Reconnect,
    /// Disconnect this Instagram account.
    Disconnect(IgAccountId),
    /// Nothing (an unknown button): the page is shown again.
    Show,
}

/// What a button did.
pub enum Acted {
    /// The page again, with nothing done.
    Shown,
    /// The replay request's answer.
    Replay(ReplayAsked),
    /// The Facebook Login dialog to go on to.
    Reconnect(String),
    /// Whether the account was connected (and is now disconnected).
    Disconnected(bool),
}

/// One connection as the page shows it.
pub struct ConnectionView {
    /// The connection.
    pub conn: InstagramConnection,
    /// Its health record, once checked.
    pub health: Option<ConnectionHealth>,
    /// The last message in from Instagram.
    pub last_in: Option<DateTime<Utc>>,
    /// The last message out to Instagram.
    pub last_out: Option<DateTime<Utc>>,
}

/// Everything the status page shows of one organization.
pub struct StatusView {
    /// The signed-in organization.
    pub organization: Organization,
    /// Its installation.
    pub installation: Option<Installation>,
    /// Its parked and delayed messages.
    pub backlog: Backlog,
    /// Each Instagram connection.
    pub connections: Vec<ConnectionView>,
    /// The session the page's buttons post, sealed.
    pub session: String,
    /// When the page was drawn.
    pub now: DateTime<Utc>,
}

impl Install {
    /// The sign-in state of a status sign-in posted back to the LiveChat callback, if the
    /// posted state is one (the install's LiveChat step shares the callback).
    pub fn status_sign_in(&self, state: &str) -> Option<FlowState> {
        let now = self.deps.clock.now().timestamp();
        self.sealer.open(state, OAuthStep::StatusSignIn, now)
    }

    /// LiveChat's answer to the sign-in (posted back by the tab): a session, for an owner or
    /// administrator of an organization that has igbridge installed.
    pub async fn sign_in(
        &self,
        state: FlowState,
        browser: &str,
        code: &str,
    ) -> Result<FlowState, StepError> {
        if !state.bound_to(browser) {
            return Err(StepError::OtherBrowser);
        }
        let redirect = self.redirect_uri(routes::LIVECHAT_CALLBACK);
        let set = self
            .deps
            .livechat
            .exchange_code(code, &redirect)
            .await
            .map_err(|e| StepError::SignInRefused(e.to_string()))?;
        let org = self.admit(&set).await?;
        Ok(FlowState {
            step: OAuthStep::Status,
            flow: nonce(),
            expires_at: self.deps.clock.now().timestamp() + SESSION_SECS,
            organization: Some(org),
            ..state
        })
    }

    /// The organization of a signed-in owner or administrator whose organization has igbridge
    /// installed. The sign-in's tokens become the installation's when they are the installer's
    /// own (or when the installation needs re-authorization: this is it); others are revoked.
    async fn admit(&self, set: &crate::livechat::TokenSet) -> Result<Organization, StepError> {
        let org = self.signed_in_admin(set).await?;
        let inst = self
            .deps
            .repo
            .get::<Installation>(&Installation::key_for(&org.organization_id))
            .await?;
        let Some(inst) = inst.filter(|i| i.status != InstallationStatus::Uninstalled) else {
            self.revoke_sign_in(set).await;
            return Err(StepError::NotInstalled);
        };
        self.keep_or_revoke(set, &inst).await?;
        Ok(org)
    }

    /// Keeps the sign-in's tokens as the installation's when they are the installer's own with
    /// every required scope (or the installation needs re-authorization); revokes them otherwise.
    async fn keep_or_revoke(
        &self,
        set: &crate::livechat::TokenSet,
        inst: &Installation,
    ) -> Result<(), StepError> {
        let granted = Self::granted(set);
        let complete = crate::livechat::REQUIRED_SCOPES
            .iter()
            .all(|s| granted.contains(s));
        let adopt = complete
            && (inst.status == InstallationStatus::ReauthRequired
                || set.account_id.as_deref() == Some(inst.account_id.as_str()));
        if !adopt {
            self.revoke_sign_in(set).await;
            return Ok(());
        }
        match self
            .save_installation(set, &inst.organization_id, false)
            .await
        {
            Ok(()) => Ok(()),
            Err(StoreError::ConditionFailed) => {
                self.revoke_sign_in(set).await;
                Err(StepError::ChangedMeanwhile)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// The organization the sign-in is for, when the person is one of its owners or
    /// administrators (else the sign-in's tokens are revoked and the error says why).
    async fn signed_in_admin(
        &self,
        set: &crate::livechat::TokenSet,
    ) -> Result<Organization, StepError> {
        let agents = match self.deps.livechat.agents(&set.access_token).await {
            Ok(agents) => agents,
            Err(e) => {
                self.revoke_sign_in(set).await;
                return Err(StepError::RoleUnknown(e.to_string()));
            }
        };
        let me = agents
            .iter()
            .find(|a| a.account_id.is_some() && a.account_id == set.account_id);
        if !me.is_some_and(|a| a.is_admin()) {
            self.revoke_sign_in(set).await;
            return Err(StepError::NotAdmin);
        }
        let org = self.deps.livechat.organization(&set.access_token).await;
        match (org, set.organization_id.as_deref()) {
            (Ok(o), Some(id)) if o.organization_id == id => Ok(o),
            _ => {
                self.revoke_sign_in(set).await;
                Err(StepError::OrganizationUnknown)
            }
        }
    }

    /// Revokes a sign-in's tokens that the installation does not keep (best effort): LiveChat
    /// keeps at most 25 per user, and an unused one should not linger.
    async fn revoke_sign_in(&self, set: &crate::livechat::TokenSet) {
        if let Err(e) = self.deps.livechat.revoke(&set.access_token).await {
            tracing::warn!(error = %e, "could not revoke a status sign-in's token");
        }
    }

    /// The session a button posted, if authentic, current, from the signed-in tab, and its
    /// organization still has igbridge installed.
    async fn session(&self, posted: Posted<'_>) -> Result<(FlowState, OrgId), StepError> {
        let now = self.deps.clock.now().timestamp();
        let session = self
            .sealer
            .open(posted.state, OAuthStep::Status, now)
            .ok_or(StepError::SignedOut)?;
        if !session.bound_to(posted.browser) {
            return Err(StepError::OtherBrowser);
        }
        let org = session.organization.as_ref().ok_or(StepError::BadState)?;
        let org = org.organization_id.clone();
        // Uninstalled during the session: nothing may be done for it any more.
        let installed = self
            .deps
            .repo
            .get::<Installation>(&Installation::key_for(&org))
            .await?;
        if installed.is_none_or(|i| i.status == InstallationStatus::Uninstalled) {
            return Err(StepError::NoLongerInstalled);
        }
        Ok((session, org))
    }

    /// `POST /status`: a button of the page, with the session it carries; the session for the
    /// page shown next.
    pub async fn act(
        &self,
        posted: Posted<'_>,
        action: StatusAction,
    ) -> Result<(FlowState, Acted), StepError> {
        let (session, org) = self.session(posted).await?;
        let acted = match action {
            StatusAction::Replay => Acted::Replay(self.replay(&org).await?),
            StatusAction::Reconnect => Acted::Reconnect(self.reconnect(&session)?),
            StatusAction::Disconnect(ig) if !ig.is_empty() => {
                Acted::Disconnected(self.lifecycle.disconnect_account(&org, &ig).await?)
            }
            StatusAction::Disconnect(_) | StatusAction::Show => Acted::Shown,
        };
        Ok((session, acted))
    }

    /// The Replay button: accepted once (nothing parked, a request pending, or one accepted
    /// under a minute ago is answered instead), and only an accepted request publishes the
    /// event that starts a replay.
    async fn replay(&self, org: &OrgId) -> Result<ReplayAsked, StoreError> {
        let now = self.deps.clock.now();
        let asked = crate::health::ask_replay(&self.deps.repo, org, now).await?;
        if asked == ReplayAsked::Accepted {
            publish_logged(
                self.deps.events.as_ref(),
                &[LifecycleEvent::new(LifecycleKind::ReplayRequested, now).org(org)],
            )
            .await;
        }
        Ok(asked)
    }

    /// The Reconnect button: on to Facebook Login with a fresh state of the session.
    fn reconnect(&self, session: &FlowState) -> Result<String, StepError> {
        let next = FlowState {
            step: OAuthStep::Facebook,
            flow: nonce(),
            expires_at: self.deps.clock.now().timestamp() + OAUTH_STATE_TTL_SECS,
            ..session.clone()
        };
        self.facebook_dialog(&self.sealer.seal(&next))
    }

    /// What the page shows for a session: the installation, the backlog and each connection.
    pub async fn status_view(&self, session: &FlowState) -> Result<StatusView, StepError> {
        let org = session.organization.clone().ok_or(StepError::BadState)?;
        let id = &org.organization_id;
        let repo = &self.deps.repo;
        let installation = repo.get::<Installation>(&Installation::key_for(id)).await?;
        let backlog = repo
            .get::<Backlog>(&keys::backlog(id))
            .await?
            .unwrap_or_else(|| Backlog::new(id));
        Ok(StatusView {
            connections: self.connection_views(id).await?,
            organization: org,
            installation,
            backlog,
            session: self.sealer.seal(session),
            now: self.deps.clock.now(),
        })
    }

    async fn connection_views(&self, org: &OrgId) -> Result<Vec<ConnectionView>, StoreError> {
        let repo = &self.deps.repo;
        let conns: Vec<InstagramConnection> = repo
            .query_prefix(&keys::organization(org), keys::CONNECTION_PREFIX)
            .await?;
        let mut views = Vec::new();
        for conn in conns {
            let ig = conn.ig_account_id.clone();
            let (key_in, key_out) = (
                Activity::key_for(org, &ig, Direction::Inbound),
                Activity::key_for(org, &ig, Direction::Outbound),
            );
            views.push(ConnectionView {
                health: repo
                    .get::<ConnectionHealth>(&keys::connection_health(org, &ig))
                    .await?,
                last_in: repo.get::<Activity>(&key_in).await?.map(|a| a.last_at),
                last_out: repo.get::<Activity>(&key_out).await?.map(|a| a.last_at),
                conn,
            });
        }
        Ok(views)
    }
}
