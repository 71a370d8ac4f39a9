//! The records of connection health: none holds a token or message content, and each carries
//! its `organization_id`, so an uninstall purges them with the rest of the organization.

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use crate::domain::Direction;
use crate::ids::{IgAccountId, OrgId};
use crate::store::{Key, Record, Versioned, keys};

/// An organization's jobs that did not go through at once: what its status page shows as
/// "parked" and "delayed", and the replays done.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Backlog {
    /// Owning organization.
    pub organization_id: OrgId,
    /// Jobs parked since the last replay.
    #[serde(default)]
    pub parked: u64,
    /// Of those, parked waiting for a repair (replayed automatically).
    #[serde(default)]
    pub parked_blocked: u64,
    /// When the last job was parked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_parked_at: Option<DateTime<Utc>>,
    /// Its log-safe reason.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_reason: Option<String>,
    /// When a job was last put back for a later attempt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delayed_at: Option<DateTime<Utc>>,
    /// Why (log-safe).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delayed_reason: Option<String>,
    /// A replay asked for and not yet done (a repair or the status page's button).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replay_requested_at: Option<DateTime<Utc>>,
    /// When the status page last accepted an admin's replay request (its cooldown counts from
    /// here).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replay_asked_at: Option<DateTime<Utc>>,
    /// When the last replay finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replayed_at: Option<DateTime<Utc>>,
    /// How many jobs it put back.
    #[serde(default)]
    pub replayed: u64,
    /// TTL once due for purge.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<i64>,
    /// Versioned: the workers, the health check and the status page all write it.
    #[serde(default)]
    pub version: u64,
}

impl Backlog {
    /// An empty backlog of `org`.
    pub fn new(org: &OrgId) -> Self {
        Self {
            organization_id: org.to_owned(),
            ..Self::default()
        }
    }

    /// The jobs still parked at `now`: none once the last park is older than the dead-letter
    /// queues keep a message (the count only goes down by replays, so expired ones linger).
    pub fn parked_at(&self, now: DateTime<Utc>) -> (u64, u64) {
        let retention = chrono::Duration::seconds(crate::provision::DLQ_RETENTION_SECS.into());
        match self.last_parked_at {
            Some(at) if now - at >= retention => (0, 0),
            _ => (self.parked, self.parked_blocked),
        }
    }
}

impl Versioned for Backlog {
    fn version(&self) -> u64 {
        self.version
    }
    fn set_version(&mut self, version: u64) {
        self.version = version;
    }
}

impl Record for Backlog {
    const KIND: &'static str = "backlog";
    fn key(&self) -> Key {
        keys::backlog(&self.organization_id)
    }
}

/// What the health check found about a Page token.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenState {
    /// Not checked yet.
    #[default]
    Unchecked,
    /// Valid, with the permissions the bridge needs.
    Valid,
    /// Valid, but Meta says it expires soon.
    Expiring,
    /// Valid and replies go out, but it lacks a permission some of the bridge's calls use.
    Limited,
    /// Refused by Meta, or missing a permission: the connection is broken.
    Invalid,
    /// Meta could not be asked (its error was transient); the previous state stands.
    Unknown,
}

/// What the health check found about the Page's webhook subscription.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SubscriptionState {
    /// Not checked yet.
    #[default]
    Unchecked,
    /// This app is subscribed with every field the bridge needs.
    Subscribed,
    /// It was missing (or missing fields) and was subscribed again.
    Resubscribed,
    /// It is missing and could not be restored.
    Missing,
    /// Not checked: the token does not work.
    Unknown,
}

/// What the last health check found on one connection.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ConnectionHealth {
    /// Owning organization.
    pub organization_id: OrgId,
    /// The Instagram account.
    pub ig_account_id: IgAccountId,
    /// The Page token.
    #[serde(default)]
    pub token: TokenState,
    /// When Meta says the token expires (absent: never).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_expires_at: Option<DateTime<Utc>>,
    /// The webhook subscription.
    #[serde(default)]
    pub subscription: SubscriptionState,
    /// The last check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checked_at: Option<DateTime<Utc>>,
    /// What is wrong, in words an admin can act on (log-safe).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
    /// The last repair and what it was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repaired_at: Option<DateTime<Utc>>,
    /// What was repaired.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repair: Option<String>,
    /// When a silence of a usually busy account was last noticed (once per silence).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub silence_noted_at: Option<DateTime<Utc>>,
    /// TTL once due for purge.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<i64>,
}

impl Record for ConnectionHealth {
    const KIND: &'static str = "connection_health";
    fn key(&self) -> Key {
        keys::connection_health(&self.organization_id, &self.ig_account_id)
    }
}

/// When one connection last carried a message one way, and on which recent days it did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Activity {
    /// Owning organization.
    pub organization_id: OrgId,
    /// The Instagram account.
    pub ig_account_id: IgAccountId,
    /// Which way.
    pub direction: Direction,
    /// The last message (to the hour: workers write at most once an hour).
    pub last_at: DateTime<Utc>,
    /// The days (UTC) with messages, newest last, at most [`Activity::DAYS`].
    #[serde(default)]
    pub days: Vec<NaiveDate>,
    /// TTL once due for purge.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<i64>,
}

impl Activity {
    /// How many days are remembered.
    pub const DAYS: usize = 7;

    /// The key of one direction's activity.
    pub fn key_for(org: &OrgId, ig: &IgAccountId, direction: Direction) -> Key {
        keys::activity(org, ig, direction_tag(direction))
    }

    /// Records a message at `at`.
    pub fn note(&mut self, at: DateTime<Utc>) {
        self.last_at = self.last_at.max(at);
        let day = at.date_naive();
        if !self.days.contains(&day) {
            self.days.push(day);
            self.days.sort();
        }
        let excess = self.days.len().saturating_sub(Self::DAYS);
        self.days.drain(..excess);
    }

    /// Whether messages came on each of the `n` days before the last one's day: an account that
    /// "used to receive messages daily".
    pub fn was_daily(&self, n: i64) -> bool {
        let last = self.last_at.date_naive();
        (1..=n).all(|d| self.days.contains(&(last - chrono::Duration::days(d))))
    }
}

fn direction_tag(direction: Direction) -> &'static str {
    match direction {
        Direction::Inbound => "in",
        Direction::Outbound => "out",
    }
}

impl Record for Activity {
    const KIND: &'static str = "activity";
    fn key(&self) -> Key {
        Self::key_for(&self.organization_id, &self.ig_account_id, self.direction)
    }
}

/// The one notice posted into a chat for a connection's broken spell: written once
/// (`IfAbsent`), so only the first chat after the break carries it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokenNotice {
    /// Owning organization.
    pub organization_id: OrgId,
    /// The Instagram account.
    pub ig_account_id: IgAccountId,
    /// When the connection broke (epoch seconds; one notice per spell).
    pub since: i64,
    /// TTL (always set: 30 days).
    pub expires_at: i64,
}

impl Record for BrokenNotice {
    const KIND: &'static str = "broken_notice";
    fn key(&self) -> Key {
        keys::broken_notice(&self.organization_id, &self.ig_account_id, self.since)
    }
}

/// An installation's entry in the list the health check walks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstallationEntry {
    /// The organization.
    pub organization_id: OrgId,
    /// TTL once due for purge.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<i64>,
}

impl Record for InstallationEntry {
    const KIND: &'static str = "installation_entry";
    fn key(&self) -> Key {
        keys::installation_entry(&self.organization_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The parked count only goes down by replays: past the dead-letter retention after the
    /// last park, nothing of it is left (and the Replay button is not offered for it).
    #[test]
    fn parked_jobs_are_gone_once_the_dead_letter_retention_has_passed() {
        let at = chrono::Utc::now();
        let b = Backlog {
            parked: 3,
            parked_blocked: 1,
            last_parked_at: Some(at),
            ..Backlog::new(&OrgId::from("o"))
        };
        assert_eq!(b.parked_at(at + chrono::Duration::days(5)), (3, 1));
        assert_eq!(b.parked_at(at + chrono::Duration::days(6)), (0, 0));
    }

    #[test]
    fn activity_keeps_a_week_of_days_and_knows_a_daily_account() {
        let day = |d: u32| {
            chrono::NaiveDate::from_ymd_opt(2026, 11, d)
                .unwrap()
                .and_hms_opt(12, 0, 0)
                .unwrap()
                .and_utc()
        };
        let mut a = Activity {
            organization_id: "o".into(),
            ig_account_id: "i".into(),
            direction: Direction::Inbound,
            last_at: day(1),
            days: vec![],
            expires_at: None,
        };
        for d in 1..=10 {
            a.note(day(d));
        }
        assert_eq!(a.days.len(), Activity::DAYS);
        assert_eq!(a.days.first().unwrap().to_string(), "2026-11-04");
        assert_eq!(a.last_at, day(10));
        assert!(a.was_daily(3));
        a.days.retain(|d| d.to_string() != "2026-11-08");
        assert!(!a.was_daily(3), "a gap two days before the last message");
        a.note(day(2));
        assert_eq!(
            a.last_at,
            day(10),
            "an older message does not move last_at back"
        );
    }
}

/// One replay at a time reads the dead-letter queues: a replay holds every message that is not
/// its organization's until it is done, so a second one at the same time would find them
/// missing and wrongly call its own replay complete.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplayLease {
    /// Who holds it (a random id per replay).
    pub holder: String,
    /// Until when (longer than the health function's timeout).
    pub until: DateTime<Utc>,
    /// TTL (always set).
    pub expires_at: i64,
}

impl Record for ReplayLease {
    const KIND: &'static str = "replay_lease";
    fn key(&self) -> Key {
        keys::replay_lease()
    }
}
