//! Every key format of the single table, in one place. Records (`crate::domain`) and the purge
//! (`crate::lifecycle`) build keys and prefixes only through these functions, so a format cannot
//! drift between the writer and the code that finds or deletes it.
//!
//! Layout: an organization's records live under `ORG#<org>` partitions (and carry
//! `organization_id`, which the organization index finds); lookups that arrive without an
//! organization (an Instagram account's webhook, a Facebook user's callback, a data-deletion
//! status, an OAuth step, a data key) have partitions of their own; the purge schedule and the
//! pending revocations are one partition each, so the sweeper reads them with one query.

use super::Key;
use crate::ids::{
    ChatId, ClaimedEventId, DeletionCode, EventId, FacebookUserId, FlowId, IgAccountId, Igsid, Mid,
    OrgId, RevocationId, Stream,
};

/// An organization's partition root.
pub fn organization(org: &OrgId) -> String {
    format!("ORG#{org}")
}

/// The installation.
pub fn installation(org: &OrgId) -> Key {
    Key::new(organization(org), "INSTALLATION")
}

/// Sort-key prefix of an organization's Instagram connections (in its root partition).
pub const CONNECTION_PREFIX: &str = "IGCONN#";

/// One Instagram connection.
pub fn connection(org: &OrgId, ig: &IgAccountId) -> Key {
    Key::new(organization(org), format!("{CONNECTION_PREFIX}{ig}"))
}

/// The route from an Instagram account to its organization.
pub fn account_route(ig: &IgAccountId) -> Key {
    Key::new(format!("IGACCT#{ig}"), "ROUTE")
}

/// Partition prefix of an account's contacts.
pub fn contacts_of(org: &OrgId, ig: &IgAccountId) -> String {
    format!("{}#CONTACT#{ig}#", organization(org))
}

/// One contact.
pub fn contact(org: &OrgId, ig: &IgAccountId, igsid: &Igsid) -> Key {
    Key::new(format!("{}{igsid}", contacts_of(org, ig)), "CONTACT")
}

/// Partition prefix of an organization's chat routes.
pub fn chat_routes_of(org: &OrgId) -> String {
    format!("{}#CHAT#", organization(org))
}

/// The route from a LiveChat chat to its customer.
pub fn chat_route(org: &OrgId, chat: &ChatId) -> Key {
    Key::new(format!("{}{chat}", chat_routes_of(org)), "ROUTE")
}

/// Partition prefix of an account's message links.
pub fn message_links_of(org: &OrgId, ig: &IgAccountId) -> String {
    format!("{}#MID#{ig}#", organization(org))
}

/// A message link (Instagram mid → LiveChat events).
pub fn message_link(org: &OrgId, ig: &IgAccountId, mid: &Mid) -> Key {
    Key::new(format!("{}{mid}", message_links_of(org, ig)), "LINK")
}

/// Partition prefix of every event link of an organization.
pub fn event_links(org: &OrgId) -> String {
    format!("{}#EVENT#", organization(org))
}

/// Partition prefix of one chat's event links.
pub fn event_links_of(org: &OrgId, chat: &ChatId) -> String {
    format!("{}{chat}#", event_links(org))
}

/// An event link (LiveChat event → Instagram mid).
pub fn event_link(org: &OrgId, chat: &ChatId, event: &EventId) -> Key {
    Key::new(format!("{}{event}", event_links_of(org, chat)), "LINK")
}

/// An idempotency record.
pub fn idempotency(org: &OrgId, stream: Stream, event: &ClaimedEventId) -> Key {
    Key::new(
        format!("{}#IDEM#{}#{event}", organization(org), stream.as_str()),
        "IDEM",
    )
}

/// Partition prefix of an account's pending sends.
pub fn pending_sends_of(org: &OrgId, ig: &IgAccountId) -> String {
    format!("{}#PENDING#{ig}#", organization(org))
}

/// The partition of one conversation's pending sends.
pub fn pending_sends(org: &OrgId, ig: &IgAccountId, igsid: &Igsid) -> String {
    format!("{}{igsid}", pending_sends_of(org, ig))
}

/// The send pause of one Instagram account (Meta throttled it or its usage is near the limit).
pub fn send_pause(org: &OrgId, ig: &IgAccountId) -> Key {
    Key::new(format!("{}#PAUSE#{ig}", organization(org)), "PAUSE")
}

/// A used install flow (single use).
pub fn oauth_state(nonce: &FlowId) -> Key {
    Key::new(format!("OAUTHSTATE#{nonce}"), "STATE")
}

/// A data-deletion request's status.
pub fn deletion_request(code: &DeletionCode) -> Key {
    Key::new(format!("DELETION#{code}"), "REQUEST")
}

/// The partition of a Facebook user's links.
pub fn facebook_user(user: &FacebookUserId) -> String {
    format!("FBUSER#{user}")
}

/// One link from a Facebook user to a connection they made.
pub fn facebook_user_link(user: &FacebookUserId, org: &OrgId, ig: &IgAccountId) -> Key {
    Key::new(facebook_user(user), format!("ORG#{org}#IG#{ig}"))
}

/// The partition of every pending revocation.
pub const REVOCATIONS: &str = "REVOKE";

/// Sort-key prefix of one organization's pending revocations.
pub fn revocations_of(org: &OrgId) -> String {
    format!("{org}#")
}

/// One pending revocation.
pub fn pending_revocation(org: &OrgId, id: &RevocationId) -> Key {
    Key::new(REVOCATIONS, format!("{}{id}", revocations_of(org)))
}

/// The partition of the purge schedule.
pub const PURGES: &str = "PURGE";

/// The purge entry of an organization, sorted by due time.
pub fn organization_purge(due_at: i64, org: &OrgId) -> Key {
    Key::new(PURGES, format!("{due_at:012}#ORG#{org}"))
}

/// The purge entry of a Facebook user's data (deauthorize, data deletion), sorted by due time.
pub fn facebook_user_purge(due_at: i64, user: &FacebookUserId) -> Key {
    Key::new(PURGES, format!("{due_at:012}#FBUSER#{user}"))
}

/// The sort-key range of purge entries due at or before `now`.
pub fn purges_due(now: i64) -> super::SkRange {
    super::SkRange::Between("0".into(), format!("{now:012}#~"))
}

/// The backlog of an organization's jobs (parked, delayed, replayed), for its status page.
pub fn backlog(org: &OrgId) -> Key {
    Key::new(organization(org), "BACKLOG")
}

/// What the last health check found on one connection.
pub fn connection_health(org: &OrgId, ig: &IgAccountId) -> Key {
    Key::new(organization(org), format!("IGHEALTH#{ig}"))
}

/// When one connection last carried a message one way (`in` or `out`).
pub fn activity(org: &OrgId, ig: &IgAccountId, direction: &str) -> Key {
    Key::new(organization(org), format!("IGACTIVITY#{ig}#{direction}"))
}

/// The one notice of a connection's broken spell (`since`: when it broke, epoch seconds).
pub fn broken_notice(org: &OrgId, ig: &IgAccountId, since: i64) -> Key {
    Key::new(organization(org), format!("NOTICE#{ig}#{since}"))
}

/// Whether `key` is one of the health records of account `ig` in `org`'s root partition (its
/// health, activity and notices), which an account's purge deletes with the rest of it.
pub fn is_account_health(key: &Key, org: &OrgId, ig: &IgAccountId) -> bool {
    key.pk == organization(org)
        && (key.sk == format!("IGHEALTH#{ig}")
            || key.sk.starts_with(&format!("IGACTIVITY#{ig}#"))
            || key.sk.starts_with(&format!("NOTICE#{ig}#")))
}

/// The replay lease: one replay at a time reads the dead-letter queues (a replay holds the
/// messages that are not its organization's, which another replay would then not see).
pub fn replay_lease() -> Key {
    Key::new("REPLAY", "LEASE")
}

/// The partition listing every installation, which the health check walks.
pub const INSTALLATIONS: &str = "INSTALLATIONS";

/// One installation's entry in that list.
pub fn installation_entry(org: &OrgId) -> Key {
    Key::new(INSTALLATIONS, org)
}

/// An organization's data key.
pub fn data_key(org: &OrgId) -> Key {
    Key::new(format!("DATAKEY#{org}"), "KEY")
}
