//! How each kind of record leaves the table: the one list the purge, its tests and the retention
//! table of docs/privacy.md follow. A record kind that is not listed here fails the coverage test
//! (`store_contract::every_record_kind_has_a_retention`), so a new kind cannot be forgotten by
//! the purge.

use crate::connection::records::{
    Activity, Backlog, BrokenNotice, ConnectionHealth, InstallationEntry, ReplayLease,
};
use crate::domain::*;
use crate::health::replay::REPLAY_LEASE_TTL_SECS;
use crate::store::Record;

/// How records of one kind are removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retention {
    /// Carries `organization_id`: the uninstall marks it with the purge's expiry and the purge
    /// deletes it through the organization index (and a Facebook user's purge, if it belongs to
    /// one of their accounts).
    WithOrganization,
    /// Holds no organization, always carries its own expiry of at most this many seconds.
    Expires(i64),
    /// Bookkeeping of a purge or a deletion request; never personal data beyond an id that the
    /// purge it serves removes when done.
    Bookkeeping,
}

/// Every record kind and its retention.
pub const RECORD_KINDS: &[(&str, Retention)] = &[
    (Installation::KIND, Retention::WithOrganization),
    (InstagramConnection::KIND, Retention::WithOrganization),
    (AccountRoute::KIND, Retention::WithOrganization),
    (Contact::KIND, Retention::WithOrganization),
    (ChatRoute::KIND, Retention::WithOrganization),
    (MessageLink::KIND, Retention::WithOrganization),
    (EventLink::KIND, Retention::WithOrganization),
    (IdempotencyRecord::KIND, Retention::WithOrganization),
    (PendingSend::KIND, Retention::WithOrganization),
    (SendPause::KIND, Retention::WithOrganization),
    (FacebookUserLink::KIND, Retention::WithOrganization),
    (PendingRevocation::KIND, Retention::WithOrganization),
    (OrganizationKey::KIND, Retention::WithOrganization),
    // Connection health: counts, states and times, no token, no content.
    (Backlog::KIND, Retention::WithOrganization),
    (ConnectionHealth::KIND, Retention::WithOrganization),
    (Activity::KIND, Retention::WithOrganization),
    (BrokenNotice::KIND, Retention::WithOrganization),
    // The health check's list of installations: keyed by the organization, which it carries.
    (InstallationEntry::KIND, Retention::WithOrganization),
    // A used install flow: a nonce and, once confirmed, the organization (then also found by
    // the organization index).
    (OAuthState::KIND, Retention::Expires(OAUTH_STATE_TTL_SECS)),
    // The confirmation code and status; the Facebook user id is wiped when it completes, and
    // the status stays readable 90 days (Meta's status URL).
    (DeletionRequest::KIND, Retention::Bookkeeping),
    // The replay lease: a random holder id and a time, nothing of any tenant.
    (ReplayLease::KIND, Retention::Expires(REPLAY_LEASE_TTL_SECS)),
    // Deleted by the sweeper once its purge has run (at most 6 days after it was written).
    (PurgeEntry::KIND, Retention::Bookkeeping),
];

/// The retention of a kind, if listed.
pub fn retention_of(kind: &str) -> Option<Retention> {
    RECORD_KINDS
        .iter()
        .find(|(k, _)| *k == kind)
        .map(|(_, r)| *r)
}
