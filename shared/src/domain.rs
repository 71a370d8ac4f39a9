//! The records the app keeps, one item each in the single table. None of them holds message
//! text; tokens are only ever [`EncryptedToken`]s; every item of an installation carries its
//! `organization_id` so an uninstall finds all of it through the organization index.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::cipher::EncryptedToken;
use crate::ids::{
    AccountId, ChatId, ClaimedEventId, DeletionCode, EventId, FacebookUserId, FlowId, IgAccountId,
    Igsid, Mid, OrgId, PageId, RevocationId, Stream, ThreadId,
};
use crate::store::{Key, Record, Versioned, keys};

/// How long message links are kept (for unsends, replies, reactions).
pub const MESSAGE_LINK_TTL_SECS: i64 = 30 * 24 * 3600;
/// How long an idempotency record outlives its event (Meta retries for up to 36 h).
pub const IDEMPOTENCY_TTL_SECS: i64 = 7 * 24 * 3600;
/// How long an OAuth state is valid.
pub const OAUTH_STATE_TTL_SECS: i64 = 15 * 60;
/// How long after uninstall everything of an organization is gone at the latest.
pub const PURGE_AFTER_SECS: i64 = 7 * 24 * 3600;

/// Lifecycle of an installation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InstallationStatus {
    /// Tokens valid, bridging.
    Active,
    /// The LiveChat refresh was refused; an admin must re-authorize.
    ReauthRequired,
    /// Uninstalled; tokens wiped, data due for purge.
    Uninstalled,
}

/// A LiveChat installation (one per organization).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Installation {
    /// LiveChat organization id.
    pub organization_id: OrgId,
    /// The LiveChat account that installed the app.
    pub account_id: AccountId,
    /// Agent access token (absent once wiped).
    pub access_token: Option<EncryptedToken>,
    /// Refresh token (absent once wiped).
    pub refresh_token: Option<EncryptedToken>,
    /// When the access token expires.
    pub access_token_expires_at: Option<DateTime<Utc>>,
    /// Granted scopes.
    pub scopes: Vec<String>,
    /// Lifecycle.
    pub status: InstallationStatus,
    /// First install.
    pub installed_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
    /// TTL once due for purge.
    pub expires_at: Option<i64>,
    /// Bumped by every write; each write is conditional on the version it read.
    #[serde(default)]
    pub version: u64,
    /// When the uninstall's purge is due (finds its purge entry).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub purge_due_at: Option<i64>,
    /// After uninstall, until its revocation is queued: the LiveChat token sealed for revocation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoke_token: Option<EncryptedToken>,
    /// One worker refreshes the LiveChat token at a time: it holds this lease until then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_lease_until: Option<DateTime<Utc>>,
}

impl Installation {
    /// The key of an organization's installation.
    pub fn key_for(org: &OrgId) -> Key {
        keys::installation(org)
    }
}

impl Versioned for Installation {
    fn version(&self) -> u64 {
        self.version
    }
    fn set_version(&mut self, version: u64) {
        self.version = version;
    }
}

impl Record for Installation {
    const KIND: &'static str = "installation";
    fn key(&self) -> Key {
        Self::key_for(&self.organization_id)
    }
}

/// State of an Instagram connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConnectionStatus {
    /// Bridging.
    Connected,
    /// The Page token was refused (Graph error 190); needs reconnecting.
    Broken,
    /// Disconnected (deauthorized or uninstalled).
    Disconnected,
}

/// A Facebook Page and its Instagram professional account connected to an organization.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InstagramConnection {
    /// Owning organization.
    pub organization_id: OrgId,
    /// Instagram professional account id (webhook `entry.id`).
    pub ig_account_id: IgAccountId,
    /// Instagram username, for pages shown to admins.
    pub ig_username: Option<String>,
    /// Facebook Page id.
    pub page_id: PageId,
    /// Facebook Page name.
    pub page_name: Option<String>,
    /// Page access token (absent once wiped).
    pub page_token: Option<EncryptedToken>,
    /// App-scoped id of the Facebook user who connected it (deauthorize and deletion callbacks).
    pub facebook_user_id: FacebookUserId,
    /// State.
    pub status: ConnectionStatus,
    /// When it was connected.
    pub connected_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
    /// TTL once due for purge.
    pub expires_at: Option<i64>,
}

impl InstagramConnection {
    /// The key of one connection.
    pub fn key_for(org: &OrgId, ig_account_id: &IgAccountId) -> Key {
        keys::connection(org, ig_account_id)
    }
}

impl Record for InstagramConnection {
    const KIND: &'static str = "instagram_connection";
    fn key(&self) -> Key {
        Self::key_for(&self.organization_id, &self.ig_account_id)
    }
}

/// Routes an Instagram account id (from a webhook) to the one organization that owns it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountRoute {
    /// Instagram professional account id.
    pub ig_account_id: IgAccountId,
    /// The organization it belongs to.
    pub organization_id: OrgId,
    /// TTL once due for purge.
    pub expires_at: Option<i64>,
}

impl AccountRoute {
    /// The key of an account's route.
    pub fn key_for(ig_account_id: &IgAccountId) -> Key {
        keys::account_route(ig_account_id)
    }
}

impl Record for AccountRoute {
    const KIND: &'static str = "account_route";
    fn key(&self) -> Key {
        Self::key_for(&self.ig_account_id)
    }
}

/// An Instagram customer (IGSID) as a LiveChat customer, with their chat.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Contact {
    /// Owning organization.
    pub organization_id: OrgId,
    /// The business's Instagram account.
    pub ig_account_id: IgAccountId,
    /// The customer's Instagram-scoped id.
    pub igsid: Igsid,
    /// LiveChat customer id (`entity_id`).
    pub customer_id: String,
    /// The customer's LiveChat chat, once started.
    pub chat_id: Option<ChatId>,
    /// The latest thread seen.
    pub thread_id: Option<ThreadId>,
    /// Whether that thread is active (`false` after `chat_deactivated`; unknown when absent).
    #[serde(default)]
    pub thread_active: Option<bool>,
    /// Cached customer token and its expiry.
    pub customer_token: Option<EncryptedToken>,
    /// When the cached customer token expires.
    pub customer_token_expires_at: Option<DateTime<Utc>>,
    /// The customer's last message (opens the reply window).
    pub last_customer_message_at: Option<DateTime<Utc>>,
    /// When the profile was last set on the LiveChat customer.
    pub profile_synced_at: Option<DateTime<Utc>>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
    /// TTL once due for purge.
    pub expires_at: Option<i64>,
    /// Bumped by every write; each write is conditional on the version it read.
    #[serde(default)]
    pub version: u64,
}

impl Contact {
    /// The key of a contact.
    pub fn key_for(org: &OrgId, ig_account_id: &IgAccountId, igsid: &Igsid) -> Key {
        keys::contact(org, ig_account_id, igsid)
    }
}

impl Versioned for Contact {
    fn version(&self) -> u64 {
        self.version
    }
    fn set_version(&mut self, version: u64) {
        self.version = version;
    }
}

impl Record for Contact {
    const KIND: &'static str = "contact";
    fn key(&self) -> Key {
        Self::key_for(&self.organization_id, &self.ig_account_id, &self.igsid)
    }
}

/// Routes a LiveChat chat to its contact, within one organization.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatRoute {
    /// Owning organization.
    pub organization_id: OrgId,
    /// LiveChat chat id.
    pub chat_id: ChatId,
    /// The business's Instagram account.
    pub ig_account_id: IgAccountId,
    /// The customer.
    pub igsid: Igsid,
    /// TTL once due for purge.
    pub expires_at: Option<i64>,
}

impl ChatRoute {
    /// The key of a chat's route.
    pub fn key_for(org: &OrgId, chat_id: &ChatId) -> Key {
        keys::chat_route(org, chat_id)
    }
}

impl Record for ChatRoute {
    const KIND: &'static str = "chat_route";
    fn key(&self) -> Key {
        Self::key_for(&self.organization_id, &self.chat_id)
    }
}

/// Which way a bridged message went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// Instagram → LiveChat.
    Inbound,
    /// LiveChat → Instagram.
    Outbound,
}

/// Links an Instagram message id to its LiveChat event (no text). Kept 30 days.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageLink {
    /// Owning organization.
    pub organization_id: OrgId,
    /// The business's Instagram account.
    pub ig_account_id: IgAccountId,
    /// Meta message id.
    pub mid: Mid,
    /// LiveChat chat id.
    pub chat_id: ChatId,
    /// LiveChat thread id.
    pub thread_id: Option<ThreadId>,
    /// LiveChat event ids (a message with attachments becomes several events).
    #[serde(default)]
    pub event_ids: Vec<EventId>,
    /// The thread of each event in `event_ids` (the parts of one message can land in two threads
    /// when the chat closes between them); empty on links that predate it (then `thread_id`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub event_threads: Vec<ThreadId>,
    /// Which way it went.
    pub direction: Direction,
    /// When it was bridged.
    pub created_at: DateTime<Utc>,
    /// TTL (always set).
    pub expires_at: i64,
}

impl MessageLink {
    /// Each event with the thread it was posted to.
    pub fn events(&self) -> Vec<(ThreadId, EventId)> {
        self.event_ids
            .iter()
            .enumerate()
            .map(|(i, e)| {
                let thread = self
                    .event_threads
                    .get(i)
                    .cloned()
                    .or_else(|| self.thread_id.clone())
                    .unwrap_or_default();
                (thread, e.clone())
            })
            .collect()
    }

    /// The key of the link for a mid.
    pub fn key_for(org: &OrgId, ig_account_id: &IgAccountId, mid: &Mid) -> Key {
        keys::message_link(org, ig_account_id, mid)
    }
}

impl Record for MessageLink {
    const KIND: &'static str = "message_link";
    fn key(&self) -> Key {
        Self::key_for(&self.organization_id, &self.ig_account_id, &self.mid)
    }
}

/// Links a LiveChat event back to the Instagram message id. Kept 30 days.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventLink {
    /// Owning organization.
    pub organization_id: OrgId,
    /// LiveChat chat id.
    pub chat_id: ChatId,
    /// LiveChat event id.
    pub event_id: EventId,
    /// Meta message id.
    pub mid: Mid,
    /// TTL (always set).
    pub expires_at: i64,
}

impl EventLink {
    /// The key of the link for a LiveChat event.
    pub fn key_for(org: &OrgId, chat_id: &ChatId, event_id: &EventId) -> Key {
        keys::event_link(org, chat_id, event_id)
    }
}

impl Record for EventLink {
    const KIND: &'static str = "event_link";
    fn key(&self) -> Key {
        Self::key_for(&self.organization_id, &self.chat_id, &self.event_id)
    }
}

/// Progress of one platform event through a worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IdempotencyState {
    /// Claimed; the effect may or may not have happened (check the platform before redoing).
    InProgress,
    /// The effect happened.
    Done,
}

/// Exactly-once bookkeeping for one platform event id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdempotencyRecord {
    /// Owning organization.
    pub organization_id: OrgId,
    /// Which stream the event id belongs to (stored as `instagram` or `livechat`).
    pub scope: Stream,
    /// The platform event, as its job names it.
    pub event_id: ClaimedEventId,
    /// Progress.
    pub state: IdempotencyState,
    /// When it was claimed.
    pub claimed_at: DateTime<Utc>,
    /// When it was completed.
    pub completed_at: Option<DateTime<Utc>>,
    /// How many parts of a multi-part effect are done (a long text sent as several messages).
    #[serde(default)]
    pub parts_done: u32,
    /// Whether the agent was told the event is delayed (told once).
    #[serde(default)]
    pub delay_told: bool,
    /// The customer unsent the message before the bridge delivered it (its job parked, or not
    /// run yet): a delivery that comes later — a replay — must not post it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub unsent: bool,
    /// TTL (always set).
    pub expires_at: i64,
    /// Version for conditional writes.
    #[serde(default)]
    pub version: u64,
}

impl Versioned for IdempotencyRecord {
    fn version(&self) -> u64 {
        self.version
    }
    fn set_version(&mut self, version: u64) {
        self.version = version;
    }
}

impl IdempotencyRecord {
    /// The key of the record for one event.
    pub fn key_for(org: &OrgId, scope: Stream, event_id: &ClaimedEventId) -> Key {
        keys::idempotency(org, scope, event_id)
    }
}

impl Record for IdempotencyRecord {
    const KIND: &'static str = "idempotency";
    fn key(&self) -> Key {
        Self::key_for(&self.organization_id, self.scope, &self.event_id)
    }
}

/// Which step of the install a flow state is good for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OAuthStep {
    /// The LiveChat authorization redirect.
    Livechat,
    /// The Facebook Login redirect.
    Facebook,
    /// The confirmation form (Page chosen, accounts shown).
    Confirm,
    /// The status page's sign-in through LiveChat.
    StatusSignIn,
    /// The status page's session: its buttons post it (15 minutes, bound to the tab).
    Status,
}

/// An install flow that has been confirmed (the sealed state carries its id): written once, so a
/// confirmation cannot be replayed. Holds no token. Kept 15 minutes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OAuthState {
    /// The flow id.
    pub nonce: FlowId,
    /// The step it spent.
    pub step: OAuthStep,
    /// The organization it was for.
    pub organization_id: Option<OrgId>,
    /// When it was spent.
    pub created_at: DateTime<Utc>,
    /// TTL (always set).
    pub expires_at: i64,
}

impl OAuthState {
    /// The key of a flow id.
    pub fn key_for(nonce: &FlowId) -> Key {
        keys::oauth_state(nonce)
    }
}

impl Record for OAuthState {
    const KIND: &'static str = "oauth_state";
    fn key(&self) -> Key {
        Self::key_for(&self.nonce)
    }
}

/// Progress of a Meta data-deletion request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeletionStatus {
    /// Scheduled.
    Pending,
    /// Everything deleted.
    Completed,
}

/// A Meta data-deletion request, looked up by its confirmation code.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeletionRequest {
    /// The confirmation code given to Meta.
    pub confirmation_code: DeletionCode,
    /// The app-scoped Facebook user id whose data is deleted (wiped on completion).
    pub facebook_user_id: Option<FacebookUserId>,
    /// Progress.
    pub status: DeletionStatus,
    /// When Meta asked.
    pub requested_at: DateTime<Utc>,
    /// When it completed.
    pub completed_at: Option<DateTime<Utc>>,
    /// TTL for the status record itself.
    pub expires_at: Option<i64>,
}

impl DeletionRequest {
    /// The key of a request.
    pub fn key_for(code: &DeletionCode) -> Key {
        keys::deletion_request(code)
    }
}

impl Record for DeletionRequest {
    const KIND: &'static str = "deletion_request";
    fn key(&self) -> Key {
        Self::key_for(&self.confirmation_code)
    }
}

/// What a purge deletes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", content = "id", rename_all = "snake_case")]
pub enum PurgeSubject {
    /// Every item of an organization.
    Organization(OrgId),
    /// Every item tied to a Facebook user (deauthorize, data deletion).
    FacebookUser(FacebookUserId),
}

/// Finds the connections a Facebook user made (Meta's deauthorize and data-deletion callbacks
/// name the user by an app-scoped id).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FacebookUserLink {
    /// App-scoped Facebook user id.
    pub facebook_user_id: FacebookUserId,
    /// The organization of the connection.
    pub organization_id: OrgId,
    /// The connected Instagram account.
    pub ig_account_id: IgAccountId,
    /// TTL once due for purge.
    pub expires_at: Option<i64>,
}

impl FacebookUserLink {
    /// The partition of a user's links.
    pub fn partition(facebook_user_id: &FacebookUserId) -> String {
        keys::facebook_user(facebook_user_id)
    }

    /// The key of one link.
    pub fn key_for(
        facebook_user_id: &FacebookUserId,
        org: &OrgId,
        ig_account_id: &IgAccountId,
    ) -> Key {
        keys::facebook_user_link(facebook_user_id, org, ig_account_id)
    }
}

impl Record for FacebookUserLink {
    const KIND: &'static str = "facebook_user_link";
    fn key(&self) -> Key {
        Self::key_for(
            &self.facebook_user_id,
            &self.organization_id,
            &self.ig_account_id,
        )
    }
}

/// What a pending revocation revokes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Revocation {
    /// A LiveChat token (`DELETE /v2/token`), sealed under `livechat.revoke` context.
    Livechat {
        /// The token to revoke.
        token: EncryptedToken,
    },
    /// Unsubscribe a Page from the app's webhooks (needs the Page token).
    PageSubscription {
        /// The Page.
        page_id: PageId,
        /// Its Instagram account (to see, before a retry, whether another installation has
        /// connected the Page since).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ig_account_id: Option<IgAccountId>,
        /// Its token, sealed under `instagram.revoke:<page>` context.
        token: EncryptedToken,
    },
    /// Revoke the app's grant for a Facebook user (with the app token; no user token kept).
    FacebookGrant {
        /// App-scoped user id.
        facebook_user_id: FacebookUserId,
    },
}

impl Revocation {
    /// The order revocations run in: a Page is unsubscribed with its Page token, which dies
    /// with the Facebook grant, so Page subscriptions go first and grants last.
    pub fn order(&self) -> u8 {
        match self {
            Revocation::PageSubscription { .. } => 0,
            Revocation::Livechat { .. } => 1,
            Revocation::FacebookGrant { .. } => 2,
        }
    }
}

/// A revocation that failed at uninstall and is retried by the sweeper until it succeeds or the
/// organization is purged. The only place a token survives an uninstall, for that purpose only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingRevocation {
    /// Owning organization.
    pub organization_id: OrgId,
    /// Unique id within the organization.
    pub id: RevocationId,
    /// What to revoke.
    pub revocation: Revocation,
    /// Attempts so far.
    pub attempts: u32,
    /// TTL (always set: the purge deadline).
    pub expires_at: i64,
}

impl PendingRevocation {
    /// The one partition holding every pending revocation, so the sweeper finds them all.
    pub const PARTITION: &'static str = keys::REVOCATIONS;

    /// The key of one.
    pub fn key_for(org: &OrgId, id: &RevocationId) -> Key {
        keys::pending_revocation(org, id)
    }
}

impl Record for PendingRevocation {
    const KIND: &'static str = "pending_revocation";
    fn key(&self) -> Key {
        Self::key_for(&self.organization_id, &self.id)
    }
}

/// An entry in the purge schedule: due at `due_at`, found by the sweeper with one query.
///
/// It deliberately does not carry `organization_id`, so the purge it schedules cannot delete it
/// before the purge has finished.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PurgeEntry {
    /// What to delete.
    pub subject: PurgeSubject,
    /// Epoch seconds when it is due.
    pub due_at: i64,
    /// When it was scheduled.
    pub scheduled_at: DateTime<Utc>,
    /// The data-deletion request it completes, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deletion_code: Option<String>,
    /// Uninstall: every item of the organization carries its expiry (the mark) and no token.
    #[serde(default)]
    pub marked: bool,
    /// Uninstall: where marking resumes (an organization-index cursor).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mark_cursor: Option<String>,
    /// Facebook user: the connections this request disconnected, and when. Only these are
    /// purged; a connection made again afterwards is the user's new consent and is kept.
    /// (`None` in entries written before this was recorded: every account of the user's links.)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accounts: Option<Vec<DisconnectedAccount>>,
}

/// A connection a Facebook user's request disconnected.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DisconnectedAccount {
    /// The organization.
    pub organization_id: OrgId,
    /// The Instagram account.
    pub ig_account_id: IgAccountId,
}

impl PurgeEntry {
    /// The partition holding the schedule.
    pub const PARTITION: &'static str = keys::PURGES;

    /// The key of an entry: sorted by due time.
    pub fn key_for(due_at: i64, subject: &PurgeSubject) -> Key {
        match subject {
            PurgeSubject::Organization(org) => keys::organization_purge(due_at, org),
            PurgeSubject::FacebookUser(user) => keys::facebook_user_purge(due_at, user),
        }
    }

    /// The inclusive sort-key range of entries due at or before `now`.
    pub fn due_range(now: i64) -> crate::store::SkRange {
        keys::purges_due(now)
    }
}

impl Record for PurgeEntry {
    const KIND: &'static str = "purge_entry";
    fn key(&self) -> Key {
        Self::key_for(self.due_at, &self.subject)
    }
}

/// An organization's data key: every queued job of the organization is sealed under it
/// (AES-256-GCM), and the key itself is sealed under `TOKEN_ENCRYPTION_KEY`. Uninstall deletes it,
/// which makes every queued or parked copy of the tenant's data unreadable at once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrganizationKey {
    /// Owning organization.
    pub organization_id: OrgId,
    /// The 32-byte key, sealed under `org:<org>:data_key`; absent once destroyed (a tombstone,
    /// so that nothing re-creates a key for an uninstalled organization until it is installed
    /// again).
    pub key: Option<EncryptedToken>,
    /// When it was made.
    pub created_at: DateTime<Utc>,
    /// When uninstall destroyed it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destroyed_at: Option<DateTime<Utc>>,
    /// TTL of the tombstone (the uninstall's mark).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<i64>,
}

impl OrganizationKey {
    /// The key of an organization's data key: its own partition, so the webhooks may read and
    /// create it without access to anything else.
    pub fn key_for(org: &OrgId) -> Key {
        keys::data_key(org)
    }
}

impl Record for OrganizationKey {
    const KIND: &'static str = "organization_key";
    fn key(&self) -> Key {
        Self::key_for(&self.organization_id)
    }
}

/// One message part on its way to Instagram, written before the Send API call and kept until its
/// `mid` is recorded. The Send API has no idempotency key: when an attempt ends without Meta's
/// answer (a timeout, a reset, a crash), this record and the echo decide whether the message went
/// out — an echo whose content matches `fingerprint` gives the `mid`; only when the echo window
/// passes without one is the part sent again. Holds no message text. Kept 1 day.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingSend {
    /// Owning organization.
    pub organization_id: OrgId,
    /// The business's Instagram account.
    pub ig_account_id: IgAccountId,
    /// The customer.
    pub igsid: Igsid,
    /// The LiveChat event and part being sent (`{event key}#{part}`).
    pub livechat_event_id: EventId,
    /// When the latest attempt started.
    pub started_at: DateTime<Utc>,
    /// A keyed hash (the organization's data key) of what was sent, to know its echo.
    #[serde(default)]
    pub fingerprint: String,
    /// Attempts so far.
    #[serde(default)]
    pub attempts: u32,
    /// Meta's message id, once the answer or the echo gave it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mid: Option<Mid>,
    /// TTL (always set).
    pub expires_at: i64,
    /// Version for conditional writes (the echo and a retry may race).
    #[serde(default)]
    pub version: u64,
}

impl Versioned for PendingSend {
    fn version(&self) -> u64 {
        self.version
    }
    fn set_version(&mut self, version: u64) {
        self.version = version;
    }
}

impl PendingSend {
    /// The partition of a conversation's pending sends.
    pub fn partition(org: &OrgId, ig_account_id: &IgAccountId, igsid: &Igsid) -> String {
        keys::pending_sends(org, ig_account_id, igsid)
    }

    /// The key of one pending send.
    pub fn key_for(
        org: &OrgId,
        ig_account_id: &IgAccountId,
        igsid: &Igsid,
        event_id: &EventId,
    ) -> Key {
        Key::new(
            Self::partition(org, ig_account_id, igsid),
            event_id.to_string(),
        )
    }
}

impl Record for PendingSend {
    const KIND: &'static str = "pending_send";
    fn key(&self) -> Key {
        Self::key_for(
            &self.organization_id,
            &self.ig_account_id,
            &self.igsid,
            &self.livechat_event_id,
        )
    }
}

/// Sends to one Instagram account wait until `until`: Meta throttled the account or the app, or
/// reported usage near its limit. Every worker reads it before a Send API call, so a throttled
/// account is not hammered by the conversations waiting on it. Holds no personal data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SendPause {
    /// Owning organization.
    pub organization_id: OrgId,
    /// The business's Instagram account.
    pub ig_account_id: IgAccountId,
    /// No send before this.
    pub until: DateTime<Utc>,
    /// Why, for the agent's notice (e.g. "Instagram's rate limit (Meta error 613)").
    pub reason: String,
    /// TTL (always set): a day after `until`.
    pub expires_at: i64,
}

impl SendPause {
    /// The key of an account's pause.
    pub fn key_for(org: &OrgId, ig_account_id: &IgAccountId) -> Key {
        keys::send_pause(org, ig_account_id)
    }
}

impl Record for SendPause {
    const KIND: &'static str = "send_pause";
    fn key(&self) -> Key {
        Self::key_for(&self.organization_id, &self.ig_account_id)
    }
}
