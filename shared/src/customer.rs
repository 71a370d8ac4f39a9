//! Acting as an Instagram customer in LiveChat: the installation's agent token (refreshed when
//! due, the installation flagged when refresh is refused), the customer grant, the customer
//! token cache, and one retry on a refused token. Both workers use it.

use std::time::{Duration, Instant};

use secrecy::SecretString;

use crate::cipher::TokenContext;
use crate::deps::Deps;
use crate::domain::*;
use crate::ids::{IgAccountId, Igsid, OrgId};
use crate::livechat::CustomerToken;
use crate::livechat::chat_api::{Action, SendEvent};
use crate::livechat::event::Event;
use crate::outcome::Fail;
use crate::store::StoreError;

/// Tokens this close to expiry are renewed before use.
const TOKEN_MARGIN_SECS: i64 = 300;
/// How long a refresh lease lasts: longer than a refresh can take (one 10 s call per client
/// secret, two during a rotation, plus slack), so a worker that dies holding it delays the
/// others by at most this.
const LEASE_SECS: i64 = 30;
/// How long a worker waits for another's refresh before retrying its job later.
const LEASE_WAIT: Duration = Duration::from_secs(12);
/// How often a waiting worker looks for the refreshed token.
const LEASE_POLL: Duration = Duration::from_millis(100);

/// One Instagram customer acting in LiveChat. It owns what acting takes — the installation
/// (whose agent token grants customer tokens, refreshed when due), the contact and a valid
/// customer token — and renews the customer token once when LiveChat refuses it, so handlers
/// pass one value around instead of the installation, contact and token separately.
pub(crate) struct CustomerSession {
    customers: Customers,
    /// The installation (its tokens may be refreshed while acting).
    pub inst: Installation,
    /// The contact record (saved by the caller when changed).
    pub contact: Contact,
    token: SecretString,
}

/// The customer-side toolkit.
#[derive(Clone)]
pub(crate) struct Customers {
    /// The table, cipher, clock, events (a refused grant) and LiveChat.
    pub deps: Deps,
}

fn customer_token_context(c: &Contact) -> TokenContext<'_> {
    TokenContext::Customer {
        org: &c.organization_id,
        ig: &c.ig_account_id,
        igsid: &c.igsid,
    }
}

impl Customers {
    /// The installation's agent token, refreshed when near expiry or when `force`d (after
    /// LiveChat refused it). One worker refreshes at a time: it takes a lease on the
    /// installation (a versioned write); the others wait for the token it stores. LiveChat keeps
    /// at most 25 tokens per user, so a burst of parallel refreshes would revoke some of them.
    pub async fn agent_token(
        &self,
        inst: &mut Installation,
        force: bool,
    ) -> Result<SecretString, Fail> {
        let refused = force.then(|| inst.access_token.clone()).flatten();
        let give_up = Instant::now() + LEASE_WAIT;
        loop {
            if let Some(token) = self.usable_token(inst, refused.as_ref())? {
                return Ok(token);
            }
            if inst.status == InstallationStatus::Uninstalled {
                return Err(Fail::Retry("the installation was uninstalled".into()));
            }
            let now = self.deps.clock.now();
            if inst.refresh_lease_until.is_none_or(|t| t <= now) {
                inst.refresh_lease_until = Some(now + chrono::Duration::seconds(LEASE_SECS));
                match self.deps.repo.save(inst).await {
                    Ok(()) => return self.refresh_holding_lease(inst).await,
                    Err(StoreError::ConditionFailed) => {}
                    Err(e) => return Err(e.into()),
                }
            } else if Instant::now() >= give_up {
                return Err(Fail::Retry(
                    "another worker is still refreshing the LiveChat token".into(),
                ));
            } else {
                tokio::time::sleep(LEASE_POLL).await;
            }
            *inst = self
                .deps
                .repo
                .get::<Installation>(&Installation::key_for(&inst.organization_id))
                .await?
                .ok_or_else(|| Fail::Retry("the installation is gone".into()))?;
        }
    }

    /// The stored access token, if it is fresh and not the one LiveChat just refused.
    fn usable_token(
        &self,
        inst: &Installation,
        refused: Option<&crate::cipher::EncryptedToken>,
    ) -> Result<Option<SecretString>, Fail> {
        let fresh = inst
            .access_token_expires_at
            .is_some_and(|e| (e - self.deps.clock.now()).num_seconds() > TOKEN_MARGIN_SECS);
        match &inst.access_token {
            Some(token) if fresh && Some(token) != refused => Ok(Some(self.deps.cipher.open(
                token,
                &TokenContext::AgentAccess {
                    org: &inst.organization_id,
                },
            )?)),
            _ => Ok(None),
        }
    }

    /// Refreshes with the lease held, storing the result and releasing the lease in one
    /// versioned write. An uninstall that landed meanwhile wins: the new tokens are revoked, not
    /// stored.
    async fn refresh_holding_lease(&self, inst: &mut Installation) -> Result<SecretString, Fail> {
        let org = inst.organization_id.clone();
        let Some(refresh) = &inst.refresh_token else {
            self.release_lease(inst, |_| {}).await?;
            return Err(Fail::Park("installation has no refresh token".into()));
        };
        let refresh = self
            .deps
            .cipher
            .open(refresh, &TokenContext::AgentRefresh { org: &org })?;
        match self.deps.livechat.refresh(&refresh).await {
            Ok(set) => self.store_refreshed(inst, set).await,
            Err(e) if e.is_client_refused() => {
                self.release_lease(inst, |_| {}).await?;
                // The app's own credentials: the operator must fix LIVECHAT_CLIENT_SECRET (the
                // alarm watches this line); the tenant's grant is fine, so keep retrying.
                tracing::error!(
                    alarm = "livechat_client_refused",
                    organization_id = %org,
                    "LiveChat refused the app's client credentials; check LIVECHAT_CLIENT_SECRET"
                );
                Err(Fail::Retry(format!(
                    "LiveChat refused the client credentials: {e}"
                )))
            }
            Err(e) if e.is_grant_refused() || e.is_auth() => {
                let now = self.deps.clock.now();
                self.release_lease(inst, |i| {
                    i.status = InstallationStatus::ReauthRequired;
                    i.updated_at = now;
                })
                .await?;
                tracing::error!(organization_id = %org, "LiveChat refused the refresh token; installation marked for re-authorization");
                use crate::events::{LifecycleEvent, LifecycleKind, publish_logged};
                publish_logged(
                    self.deps.events.as_ref(),
                    &[
                        LifecycleEvent::new(LifecycleKind::ReauthorizationNeeded, now)
                            .org(&org)
                            .detail("LiveChat refused the refresh token"),
                    ],
                )
                .await;
                Err(Fail::Blocked(crate::jobs::Blocked::ReauthorizationNeeded))
            }
            Err(e) => {
                self.release_lease(inst, |_| {}).await?;
                Err(e.into())
            }
        }
    }

    /// Stores refreshed tokens and releases the lease in one versioned write; tokens that
    /// arrive after an uninstall are revoked instead (or queued for the sweeper to revoke).
    async fn store_refreshed(
        &self,
        inst: &mut Installation,
        set: crate::livechat::TokenSet,
    ) -> Result<SecretString, Fail> {
        let org = inst.organization_id.clone();
        let now = self.deps.clock.now();
        let access = self
            .deps
            .cipher
            .seal(&set.access_token, &TokenContext::AgentAccess { org: &org });
        let rotated = set.refresh_token.as_ref().map(|rt| {
            self.deps
                .cipher
                .seal(rt, &TokenContext::AgentRefresh { org: &org })
        });
        let stored = self
            .release_lease(inst, |i| {
                i.access_token = Some(access.clone());
                if let Some(rt) = &rotated {
                    i.refresh_token = Some(rt.clone());
                }
                i.access_token_expires_at = Some(now + chrono::Duration::seconds(set.expires_in));
                i.updated_at = now;
            })
            .await?;
        if !stored {
            // Uninstalled while LiveChat answered: these tokens must not live on.
            let newest = set.refresh_token.as_ref().unwrap_or(&set.access_token);
            self.revoke_unstored(inst, newest).await?;
            return Err(Fail::Retry("the installation was uninstalled".into()));
        }
        Ok(set.access_token)
    }

    /// Revokes a token that must not be kept; if LiveChat cannot be reached, the sweeper
    /// retries it until it succeeds or the purge.
    async fn revoke_unstored(&self, inst: &Installation, token: &SecretString) -> Result<(), Fail> {
        if self.deps.livechat.revoke(token).await.is_ok() {
            return Ok(());
        }
        let org = inst.organization_id.clone();
        let now = self.deps.clock.now();
        let pending = PendingRevocation {
            organization_id: org.clone(),
            id: format!("livechat:{}", now.timestamp_millis()).into(),
            revocation: Revocation::Livechat {
                token: self
                    .deps
                    .cipher
                    .seal(token, &TokenContext::LivechatRevoke { org: &org }),
            },
            attempts: 1,
            expires_at: inst
                .expires_at
                .unwrap_or(now.timestamp() + crate::domain::PURGE_AFTER_SECS),
        };
        self.deps
            .repo
            .put(&pending, crate::store::Condition::Always)
            .await?;
        Ok(())
    }

    /// Applies `change`, clears the lease, and saves (re-applying on a conflict); false when the
    /// installation was uninstalled meanwhile (nothing written).
    async fn release_lease(
        &self,
        inst: &mut Installation,
        change: impl Fn(&mut Installation),
    ) -> Result<bool, Fail> {
        let saved = self
            .deps
            .repo
            .update(inst, |i| {
                if i.status == InstallationStatus::Uninstalled {
                    return false;
                }
                change(i);
                i.refresh_lease_until = None;
                true
            })
            .await;
        match saved {
            Ok(stored) => Ok(stored),
            Err(StoreError::ConditionFailed) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// A customer grant with the agent token, refreshing the agent token once on 401.
    pub async fn grant(
        &self,
        inst: &mut Installation,
        entity_id: Option<&str>,
    ) -> Result<CustomerToken, Fail> {
        let agent = self.agent_token(inst, false).await?;
        match self.deps.livechat.customer_token(&agent, entity_id).await {
            Err(e) if e.is_auth() => {
                let agent = self.agent_token(inst, true).await?;
                Ok(self.deps.livechat.customer_token(&agent, entity_id).await?)
            }
            other => Ok(other?),
        }
    }

    /// The session of the customer behind an IGSID: the existing one (its customer token
    /// renewed when due), or — when `create` is set — a new LiveChat customer, saved at once so
    /// a retry reuses it. `None` when there is none and none is to be made.
    pub async fn session(
        &self,
        inst: Installation,
        ig: &IgAccountId,
        igsid: &Igsid,
        create: bool,
    ) -> Result<Option<CustomerSession>, Fail> {
        let key = Contact::key_for(&inst.organization_id, ig, igsid);
        let Some(contact) = self.deps.repo.get::<Contact>(&key).await? else {
            return match create {
                true => self.create(inst, ig, igsid).await.map(Some),
                false => Ok(None),
            };
        };
        let now = self.deps.clock.now();
        let cached = match (&contact.customer_token, contact.customer_token_expires_at) {
            (Some(t), Some(exp)) if (exp - now).num_seconds() > TOKEN_MARGIN_SECS => Some(
                self.deps
                    .cipher
                    .open(t, &customer_token_context(&contact))?,
            ),
            _ => None,
        };
        let stale = cached.is_none();
        let mut session = CustomerSession {
            customers: self.clone(),
            inst,
            contact,
            token: cached.unwrap_or_else(|| SecretString::from(String::new())),
        };
        if stale {
            session.regrant().await?;
        }
        Ok(Some(session))
    }

    /// A new LiveChat customer for an IGSID, saved at once so a retry reuses it.
    async fn create(
        &self,
        mut inst: Installation,
        ig: &IgAccountId,
        igsid: &Igsid,
    ) -> Result<CustomerSession, Fail> {
        let granted = self.grant(&mut inst, None).await?;
        let now = self.deps.clock.now();
        let mut contact = Contact {
            organization_id: inst.organization_id.clone(),
            ig_account_id: ig.to_owned(),
            igsid: igsid.to_owned(),
            customer_id: granted.entity_id.clone(),
            chat_id: None,
            thread_id: None,
            thread_active: None,
            customer_token: None,
            customer_token_expires_at: Some(now + chrono::Duration::seconds(granted.expires_in)),
            last_customer_message_at: None,
            profile_synced_at: None,
            updated_at: now,
            expires_at: None,
            version: 0,
        };
        contact.customer_token = Some(
            self.deps
                .cipher
                .seal(&granted.access_token, &customer_token_context(&contact)),
        );
        self.deps.repo.create(&mut contact).await?;
        Ok(CustomerSession {
            customers: self.clone(),
            inst,
            contact,
            token: granted.access_token,
        })
    }
}

impl CustomerSession {
    /// The organization acted in.
    pub fn org(&self) -> OrgId {
        self.inst.organization_id.clone()
    }

    /// Renews the customer token (`entity_id` grant) and caches it on the contact.
    async fn regrant(&mut self) -> Result<(), Fail> {
        let c = &self.customers;
        let entity = self.contact.customer_id.clone();
        let granted = c.grant(&mut self.inst, Some(&entity)).await?;
        self.contact.customer_token = Some(c.deps.cipher.seal(
            &granted.access_token,
            &customer_token_context(&self.contact),
        ));
        self.contact.customer_token_expires_at =
            Some(c.deps.clock.now() + chrono::Duration::seconds(granted.expires_in));
        self.token = granted.access_token;
        c.deps.repo.save(&mut self.contact).await?;
        Ok(())
    }

    /// Sends a Customer Chat API action as this customer, renewing the customer token once if
    /// LiveChat refuses it.
    pub async fn act<A: Action>(&mut self, request: &A) -> Result<A::Response, Fail> {
        let livechat = self.customers.deps.livechat.clone();
        let org = self.org();
        match livechat.customer(&org, &self.token, request).await {
            Err(e) if e.is_auth() => {
                self.regrant().await?;
                Ok(livechat.customer(&org, &self.token, request).await?)
            }
            other => Ok(other?),
        }
    }

    /// Posts a notice from the bridge into the customer's chat (not attributed to the customer).
    pub async fn notice(&mut self, text: &str, custom_id: &str) -> Result<(), Fail> {
        let Some(chat_id) = self.contact.chat_id.clone() else {
            return Ok(());
        };
        let mut request = SendEvent {
            chat_id,
            event: Event::notice(text, custom_id),
            attach_to_last_thread: false,
        };
        match self.act(&request).await {
            Ok(_) => Ok(()),
            Err(Fail::Livechat(e)) if e.is_chat_inactive() => {
                request.attach_to_last_thread = true;
                self.act(&request).await.map(|_| ())
            }
            Err(e) => Err(e),
        }
    }
}
