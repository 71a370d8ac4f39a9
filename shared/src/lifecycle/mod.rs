//! Uninstall and the data lifecycle: what makes the privacy policy true. Tokens are revoked and
//! wiped at uninstall, every item of the organization gets a TTL and a purge entry, and the
//! sweeper hard-deletes what is due whatever DynamoDB's TTL lag.

pub mod callbacks;
pub mod retention;
pub mod signed_request;
pub mod sweeper;
pub mod uninstall;

use crate::ids::DeletionCode;
use crate::ids::RevocationId;
use secrecy::SecretString;
use serde_json::json;

use crate::cipher::{EncryptedToken, TokenContext};
use crate::domain::*;
use crate::events::{LifecycleEvent, LifecycleKind, publish_logged};
use crate::ids::{FacebookUserId, IgAccountId, OrgId, PageId};
use crate::store::{Condition, Key, PageRequest, StoreError, keys};

/// Why a revocation did not happen (the sweeper retries it).
#[derive(Debug, thiserror::Error)]
enum RevokeError {
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("token: {0}")]
    Cipher(#[from] crate::cipher::CipherError),
    #[error("LiveChat: {0}")]
    Livechat(#[from] crate::livechat::LivechatError),
    #[error("Graph: {0}")]
    Graph(#[from] crate::instagram::graph::GraphError),
}

/// The table calls the lifecycle makes (uninstall, deauthorize, data deletion, the sweeper):
/// the uninstall and deletion-sweeper roles grant exactly these (the template test checks).
pub const TABLE_ACTIONS: &[&str] = &[
    "dynamodb:GetItem",
    "dynamodb:PutItem",
    "dynamodb:DeleteItem",
    "dynamodb:Query",
    "dynamodb:BatchGetItem",
    "dynamodb:BatchWriteItem",
    // The marking's transactions: each fenced on the installation (a check, no write).
    "dynamodb:ConditionCheckItem",
];

/// What a connect obtained from Facebook for a Page: given back when the connect is refused
/// ([`Lifecycle::give_back`]).
#[derive(Clone, Copy)]
pub struct ObtainedPage<'a> {
    /// The Page subscribed.
    pub page_id: &'a PageId,
    /// Its Instagram account.
    pub ig_account_id: &'a IgAccountId,
    /// Its Page token.
    pub token: &'a SecretString,
    /// Who granted it.
    pub facebook_user_id: &'a FacebookUserId,
}

/// TTL set on every item of an uninstalled organization (the policy's promise).
pub const RETENTION_AFTER_UNINSTALL_SECS: i64 = PURGE_AFTER_SECS;
/// When the sweeper hard-deletes it: a day before the promise, so hourly sweeps and retries
/// always land inside it.
pub const PURGE_DUE_SECS: i64 = PURGE_AFTER_SECS - 24 * 3600;
/// How long a data-deletion status record stays readable after completion.
pub const DELETION_STATUS_TTL_SECS: i64 = 90 * 24 * 3600;

/// The lifecycle service.
#[derive(Clone)]
pub struct Lifecycle {
    /// The table, cipher, clock, events and platform clients.
    pub deps: crate::deps::Deps,
    /// Meta app id (app token for revocations).
    pub meta_app_id: String,
    /// Meta app secret (app token for revocations).
    pub meta_app_secret: SecretString,
}

/// What an uninstall did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct UninstallReport {
    /// False for a replay or an unknown organization.
    pub uninstalled: bool,
    /// Revocations that succeeded now.
    pub revoked: usize,
    /// Revocations left for the sweeper to retry.
    pub deferred: usize,
    /// Items given a TTL by this run.
    pub items: usize,
    /// Everything done: every item marked and every revocation through.
    pub complete: bool,
}

impl Lifecycle {
    fn app_token(&self) -> SecretString {
        crate::instagram::graph::app_token(&self.meta_app_id, &self.meta_app_secret)
    }

    /// Stops routing an Instagram account to `org` at once: its webhooks are then acknowledged,
    /// not stored. A route that already points elsewhere is left alone.
    async fn stop_routing(&self, org: &OrgId, ig: &IgAccountId) -> Result<(), StoreError> {
        let only_ours = Condition::IfEquals {
            attribute: "organization_id".into(),
            value: json!(org),
        };
        match self
            .deps
            .repo
            .store()
            .delete(&AccountRoute::key_for(ig), only_ours)
            .await
        {
            Ok(_) | Err(StoreError::ConditionFailed) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Whether a live installation (another, or this one installed again) holds a connection to
    /// `page_id` through the route of its Instagram account: then a deferred unsubscribe must not
    /// run.
    async fn page_connected_live(
        &self,
        page_id: &PageId,
        ig_account_id: Option<&IgAccountId>,
    ) -> Result<bool, StoreError> {
        let Some(ig) = ig_account_id else {
            return Ok(false);
        };
        let Some(route) = self
            .deps
            .repo
            .get::<AccountRoute>(&AccountRoute::key_for(ig))
            .await?
        else {
            return Ok(false);
        };
        // The organization itself counts too once it is installed again and has connected the
        // Page anew: a revocation deferred from its uninstall must not cut off its reinstall.
        let inst = self
            .deps
            .repo
            .get::<Installation>(&Installation::key_for(&route.organization_id))
            .await?;
        let conn = self
            .deps
            .repo
            .get::<InstagramConnection>(&InstagramConnection::key_for(&route.organization_id, ig))
            .await?;
        Ok(
            inst.is_some_and(|i| i.status != InstallationStatus::Uninstalled)
                && conn.is_some_and(|c| {
                    c.status != ConnectionStatus::Disconnected && c.page_id == page_id
                }),
        )
    }

    /// Whether a live installation (another, or this one installed again) holds a connection
    /// this Facebook user made. `DELETE /{user}/permissions` revokes every token the person gave
    /// the app, so the grant may only go when nothing live depends on it.
    async fn grant_in_use(&self, facebook_user_id: &FacebookUserId) -> Result<bool, StoreError> {
        let links: Vec<FacebookUserLink> = self
            .deps
            .repo
            .query_prefix(&FacebookUserLink::partition(facebook_user_id), "")
            .await?;
        // Its own organization too, once installed again (the uninstalled one is not live).
        for link in &links {
            let inst = self
                .deps
                .repo
                .get::<Installation>(&Installation::key_for(&link.organization_id))
                .await?;
            let conn = self
                .deps
                .repo
                .get::<InstagramConnection>(&InstagramConnection::key_for(
                    &link.organization_id,
                    &link.ig_account_id,
                ))
                .await?;
            let live = inst.is_some_and(|i| i.status != InstallationStatus::Uninstalled)
                && conn.is_some_and(|c| {
                    c.status != ConnectionStatus::Disconnected
                        && c.facebook_user_id == facebook_user_id
                });
            if live {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Gives back what a refused connect obtained (it stored nothing, so no purge knows of it):
    /// the Page's webhook subscription, unless a live installation holds the Page, then the
    /// person's grant, unless a live connection uses it — in that order (the grant's revocation
    /// kills the Page token the unsubscribe needs). What fails now is left to the sweeper as a
    /// pending revocation, purged with the organization.
    pub async fn give_back(&self, org: &OrgId, page: ObtainedPage<'_>) -> Result<(), StoreError> {
        let mark = self.deps.clock.now().timestamp() + RETENTION_AFTER_UNINSTALL_SECS;
        let context = TokenContext::PageRevoke {
            org,
            page: page.page_id,
        };
        let unsubscribe = Revocation::PageSubscription {
            page_id: page.page_id.to_owned(),
            ig_account_id: Some(page.ig_account_id.to_owned()),
            token: self.deps.cipher.seal(page.token, &context),
        };
        let grant = Revocation::FacebookGrant {
            facebook_user_id: page.facebook_user_id.to_owned(),
        };
        let page_done = self.revoke(org, &unsubscribe).await;
        let grant_done = page_done && self.revoke(org, &grant).await;
        let left = [
            (format!("page:{}", page.page_id), unsubscribe, page_done),
            (
                format!("fbuser:{}", page.facebook_user_id),
                grant,
                grant_done,
            ),
        ];
        for (id, revocation, done) in left {
            if done {
                continue;
            }
            let pending = PendingRevocation {
                organization_id: org.to_owned(),
                id: RevocationId::from(id),
                revocation,
                attempts: 1,
                expires_at: mark,
            };
            self.deps.repo.put(&pending, Condition::Always).await?;
        }
        Ok(())
    }

    /// Runs one revocation; `false` means "retry later".
    async fn revoke(&self, org: &OrgId, r: &Revocation) -> bool {
        let result = match r {
            Revocation::Livechat { token } => {
                let context = TokenContext::LivechatRevoke { org };
                match self.deps.cipher.open(token, &context) {
                    Ok(t) => self.deps.livechat.revoke(&t).await.map_err(Into::into),
                    Err(e) => Err(e.into()),
                }
            }
            Revocation::PageSubscription {
                page_id,
                ig_account_id,
                token,
            } => {
                self.unsubscribe(org, page_id, ig_account_id.as_ref(), token)
                    .await
            }
            Revocation::FacebookGrant { facebook_user_id } => {
                self.revoke_grant(org, facebook_user_id).await
            }
        };
        match result {
            Ok(()) => true,
            Err(reason) => {
                tracing::warn!(organization_id = %org, %reason, "revocation failed; the sweeper retries it");
                false
            }
        }
    }

    /// Unsubscribes the Page, unless a live installation connected it since.
    async fn unsubscribe(
        &self,
        org: &OrgId,
        page_id: &PageId,
        ig_account_id: Option<&IgAccountId>,
        token: &EncryptedToken,
    ) -> Result<(), RevokeError> {
        // A deferred unsubscribe must not cut off an installation that connected the Page after
        // this one let it go.
        if self.page_connected_live(page_id, ig_account_id).await? {
            tracing::info!(organization_id = %org, "Page subscription kept: another live installation connected the Page");
            return Ok(());
        }
        let context = TokenContext::PageRevoke { org, page: page_id };
        let t = self.deps.cipher.open(token, &context)?;
        Ok(self.deps.graph.unsubscribe_page(page_id, &t).await?)
    }

    /// Revokes a Facebook user's grant, unless a live installation uses it.
    async fn revoke_grant(
        &self,
        org: &OrgId,
        facebook_user_id: &FacebookUserId,
    ) -> Result<(), RevokeError> {
        // Revoking would kill the Page tokens of the other installations too.
        if self.grant_in_use(facebook_user_id).await? {
            tracing::info!(organization_id = %org, "Facebook grant kept: another live installation uses it");
            return Ok(());
        }
        let graph = &self.deps.graph;
        let revoked = graph
            .revoke_grant(facebook_user_id, &self.app_token())
            .await;
        Ok(revoked?)
    }

    async fn schedule(
        &self,
        subject: PurgeSubject,
        due_at: i64,
        deletion_code: Option<String>,
        accounts: Option<Vec<DisconnectedAccount>>,
    ) -> Result<(), StoreError> {
        let entry = PurgeEntry {
            subject,
            due_at,
            scheduled_at: self.deps.clock.now(),
            deletion_code,
            marked: true,
            mark_cursor: None,
            accounts,
        };
        self.deps.repo.put(&entry, Condition::Always).await
    }

    /// Meta deauthorize (or data deletion): disconnect every connection the Facebook user made,
    /// wipe their tokens, tell the affected chats, and schedule their data for purge.
    pub async fn disconnect_facebook_user(
        &self,
        facebook_user_id: &FacebookUserId,
        deletion_code: Option<String>,
    ) -> Result<usize, StoreError> {
        let now = self.deps.clock.now();
        let expires = now.timestamp() + RETENTION_AFTER_UNINSTALL_SECS;
        let links: Vec<FacebookUserLink> = self
            .deps
            .repo
            .query_prefix(&FacebookUserLink::partition(facebook_user_id), "")
            .await?;
        let mut events = Vec::new();
        let mut accounts = Vec::new();
        for link in &links {
            let org = &link.organization_id;
            let Some(mut conn) = self
                .deps
                .repo
                .get::<InstagramConnection>(&InstagramConnection::key_for(org, &link.ig_account_id))
                .await?
            else {
                continue;
            };
            if conn.facebook_user_id != facebook_user_id {
                continue;
            }
            conn.page_token = None;
            conn.status = ConnectionStatus::Disconnected;
            conn.updated_at = now;
            conn.expires_at = Some(expires);
            self.deps.repo.put(&conn, Condition::Always).await?;
            self.stop_routing(org, &conn.ig_account_id).await?;
            self.tell_chats(org, &conn.ig_account_id).await;
            accounts.push(DisconnectedAccount {
                organization_id: org.clone(),
                ig_account_id: conn.ig_account_id.clone(),
            });
            events.push(
                LifecycleEvent::new(LifecycleKind::Disconnected, now)
                    .org(org)
                    .account(&conn.ig_account_id),
            );
        }
        self.schedule(
            PurgeSubject::FacebookUser(facebook_user_id.to_owned()),
            now.timestamp() + PURGE_DUE_SECS,
            deletion_code,
            Some(accounts),
        )
        .await?;
        publish_logged(self.deps.events.as_ref(), &events).await;
        Ok(links.len())
    }

    /// An admin disconnects one Instagram account from the status page: the Page is unsubscribed
    /// (best effort), its token wiped, the connection marked disconnected (its webhooks are then
    /// acknowledged and skipped) and the account's data scheduled for purge as a deauthorize
    /// would. Only gets and puts: the internet-facing function that runs it deletes nothing
    /// itself; the sweeper purges. False when there was nothing connected.
    pub async fn disconnect_account(
        &self,
        org: &OrgId,
        ig: &IgAccountId,
    ) -> Result<bool, StoreError> {
        let now = self.deps.clock.now();
        let key = InstagramConnection::key_for(org, ig);
        let Some(mut conn) = self.deps.repo.get::<InstagramConnection>(&key).await? else {
            return Ok(false);
        };
        if conn.status == ConnectionStatus::Disconnected {
            return Ok(false);
        }
        if let Some(sealed) = &conn.page_token {
            if let Ok(token) = self
                .deps
                .cipher
                .open(sealed, &TokenContext::Page { org, ig })
            {
                if let Err(e) = self
                    .deps
                    .graph
                    .unsubscribe_page(&conn.page_id, &token)
                    .await
                {
                    tracing::warn!(error = %e, "could not unsubscribe the Page; its webhooks are skipped");
                }
            }
        }
        conn.page_token = None;
        conn.status = ConnectionStatus::Disconnected;
        conn.updated_at = now;
        conn.expires_at = Some(now.timestamp() + RETENTION_AFTER_UNINSTALL_SECS);
        self.deps.repo.put(&conn, Condition::Always).await?;
        self.schedule(
            PurgeSubject::FacebookUser(conn.facebook_user_id.clone()),
            now.timestamp() + PURGE_DUE_SECS,
            None,
            Some(vec![DisconnectedAccount {
                organization_id: org.to_owned(),
                ig_account_id: ig.to_owned(),
            }]),
        )
        .await?;
        publish_logged(
            self.deps.events.as_ref(),
            &[LifecycleEvent::new(LifecycleKind::Disconnected, now)
                .org(org)
                .account(ig)
                .detail("disconnected by an admin on the status page")],
        )
        .await;
        Ok(true)
    }

    /// Posts "the Instagram account was disconnected" into each chat of the account; nothing more.
    async fn tell_chats(&self, org: &OrgId, ig: &IgAccountId) {
        let customers = crate::customer::Customers {
            deps: self.deps.clone(),
        };
        let Ok(Some(mut inst)) = self
            .deps
            .repo
            .get::<Installation>(&Installation::key_for(org))
            .await
        else {
            return;
        };
        let keys = match self.keys_of_account(org, ig).await {
            Ok(k) => k,
            Err(_) => return,
        };
        let prefix = keys::contacts_of(org, ig);
        for key in keys.iter().filter(|k| k.pk.starts_with(&prefix)) {
            let Ok(Some(contact)) = self.deps.repo.get::<Contact>(key).await else {
                continue;
            };
            let found = customers.session(inst.clone(), ig, &contact.igsid, false);
            let Ok(Some(mut session)) = found.await else {
                continue;
            };
            let text = "The Instagram account connected to this chat was disconnected. Messages are no longer bridged.";
            let told = session.notice(text, &format!("ig:disconnected:{ig}")).await;
            if told.is_err() {
                tracing::warn!(organization_id = %org, "could not tell a chat about the disconnection");
            }
            // The session may have refreshed the installation's tokens.
            inst = session.inst;
        }
    }

    /// Keys of everything of an organization that belongs to one Instagram account.
    pub async fn keys_of_account(
        &self,
        org: &OrgId,
        ig: &IgAccountId,
    ) -> Result<Vec<Key>, StoreError> {
        let mut out = Vec::new();
        let mut chats = Vec::new();
        let mut maybe = Vec::new();
        let mut page = PageRequest::default();
        loop {
            let got = self
                .deps
                .repo
                .store()
                .query_organization(org, page.clone())
                .await?;
            for key in got.items {
                let own = [
                    keys::contacts_of(org, ig),
                    keys::message_links_of(org, ig),
                    keys::pending_sends_of(org, ig),
                ];
                if own.iter().any(|p| key.pk.starts_with(p.as_str()))
                    || key == InstagramConnection::key_for(org, ig)
                    || key == AccountRoute::key_for(ig)
                    || keys::is_account_health(&key, org, ig)
                {
                    out.push(key);
                } else if key.pk.starts_with(&keys::chat_routes_of(org))
                    || key.pk.starts_with(&keys::event_links(org))
                {
                    maybe.push(key);
                }
            }
            match got.next {
                Some(c) => page.cursor = Some(c),
                None => break,
            }
        }
        // Chat routes name their account; event links belong to those chats.
        for key in &maybe {
            if key.pk.starts_with(&keys::chat_routes_of(org)) {
                if let Some(route) = self.deps.repo.get::<ChatRoute>(key).await? {
                    if route.ig_account_id == ig {
                        chats.push(route.chat_id.clone());
                        out.push(key.clone());
                    }
                }
            }
        }
        for key in maybe {
            if chats
                .iter()
                .any(|c| key.pk.starts_with(&keys::event_links_of(org, c)))
            {
                out.push(key);
            }
        }
        Ok(out)
    }

    /// Meta data deletion: schedules the user's data for deletion and returns the confirmation code.
    pub async fn request_deletion(
        &self,
        facebook_user_id: &FacebookUserId,
    ) -> Result<String, StoreError> {
        let now = self.deps.clock.now();
        let code = uuid_code();
        let request = DeletionRequest {
            confirmation_code: DeletionCode::from(code.clone()),
            facebook_user_id: Some(facebook_user_id.to_owned()),
            status: DeletionStatus::Pending,
            requested_at: now,
            completed_at: None,
            expires_at: None,
        };
        self.deps.repo.put(&request, Condition::IfAbsent).await?;
        self.disconnect_facebook_user(facebook_user_id, Some(code.clone()))
            .await?;
        let mut e = LifecycleEvent::new(LifecycleKind::DeletionRequested, now);
        e.confirmation_code = Some(code.clone());
        publish_logged(self.deps.events.as_ref(), &[e]).await;
        Ok(code)
    }

    /// The status of a data-deletion request.
    pub async fn deletion_status(&self, code: &str) -> Result<Option<DeletionStatus>, StoreError> {
        Ok(self
            .deps
            .repo
            .get::<DeletionRequest>(&DeletionRequest::key_for(&DeletionCode::from(code)))
            .await?
            .map(|r| r.status))
    }
}

/// An alphanumeric confirmation code (Meta requires alphanumeric).
fn uuid_code() -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut rng = rand::rng();
    (0..16)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}
