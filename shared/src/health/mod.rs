//! Connection health: what the workers observe (metrics, each organization's backlog of parked
//! and delayed jobs, when each connection last carried a message), the scheduled health check
//! that repairs what it can, the automatic replay of jobs parked waiting for a repair, and the
//! events and notices that tell the admin.

pub mod check;
pub mod replay;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};

use crate::clock::Clock;
use crate::connection::records::{Activity, Backlog};
use crate::connection::update_backlog;
use crate::domain::Direction;
use crate::ids::{IgAccountId, OrgId};
use crate::jobs::Blocked;
use crate::metrics::Metrics;
use crate::store::{Repo, StoreError};

/// How often a worker writes a connection's activity or an organization's delay at most: the
/// status page shows them to the hour, and a write per message would double the table's writes.
pub const WRITE_EVERY: chrono::Duration = chrono::Duration::hours(1);

/// What a process remembers of its own writes, so it writes activity and delays at most once
/// an hour (shared by every observer the process builds).
#[derive(Default)]
pub struct Written {
    /// When each (organization, account, direction)'s activity was last written.
    active: Mutex<HashMap<(OrgId, IgAccountId, Direction), DateTime<Utc>>>,
    /// When each organization's delay was last written.
    delayed: Mutex<HashMap<OrgId, DateTime<Utc>>>,
}

/// How long after an admin's accepted replay request the status page accepts another.
pub const REPLAY_COOLDOWN: chrono::Duration = chrono::Duration::minutes(1);

/// What became of an admin's replay request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplayAsked {
    /// Recorded: the caller publishes the one event that starts the replay.
    Accepted,
    /// Nothing of the organization is parked.
    NothingParked,
    /// A replay asked for at this time has not run yet.
    AlreadyPending(DateTime<Utc>),
    /// The last request was accepted less than [`REPLAY_COOLDOWN`] ago; another is accepted
    /// from this time.
    TooSoon(DateTime<Utc>),
}

/// Records an admin's request to replay `org`'s parked jobs, only when something is parked, no
/// request is pending and the last one is over [`REPLAY_COOLDOWN`] old: one conditional
/// (versioned) write, so a button pressed many times, or by many tabs at once, is accepted once.
/// Each accepted request starts one run of the health function; nothing else may (docs/security.md).
pub async fn ask_replay(
    repo: &Repo,
    org: &OrgId,
    now: DateTime<Utc>,
) -> Result<ReplayAsked, StoreError> {
    let mut answer = ReplayAsked::NothingParked;
    update_backlog(repo, org, |b| {
        answer = if b.parked_at(now).0 == 0 {
            ReplayAsked::NothingParked
        } else if let Some(at) = b.replay_requested_at {
            ReplayAsked::AlreadyPending(at)
        } else if let Some(at) = b.replay_asked_at.filter(|at| now < *at + REPLAY_COOLDOWN) {
            ReplayAsked::TooSoon(at + REPLAY_COOLDOWN)
        } else {
            ReplayAsked::Accepted
        };
        if answer != ReplayAsked::Accepted {
            return false;
        }
        b.replay_requested_at = Some(now);
        b.replay_asked_at = Some(now);
        true
    })
    .await?;
    Ok(answer)
}

/// What the workers tell about the jobs they run: metrics for the operator, and for the status
/// page each organization's backlog and each connection's last message. Its own failures are
/// logged, never the job's.
#[derive(Clone)]
pub struct Observer {
    /// The function's metric writer.
    pub metrics: Metrics,
    repo: Repo,
    clock: Arc<dyn Clock>,
    written: Arc<Written>,
}

impl Observer {
    /// An observer writing to `repo` and `metrics`, remembering its writes in `written`.
    pub fn new(repo: Repo, clock: Arc<dyn Clock>, metrics: Metrics, written: Arc<Written>) -> Self {
        Self {
            metrics,
            repo,
            clock,
            written,
        }
    }

    /// Now, on the observer's clock.
    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    /// A job of `org` was parked.
    pub async fn parked(&self, org: &OrgId, blocked: Option<Blocked>, reason: &str) {
        let now = self.clock.now();
        let out = update_backlog(&self.repo, org, |b| {
            b.parked += 1;
            b.parked_blocked += u64::from(blocked.is_some());
            b.last_parked_at = Some(now);
            b.last_reason = Some(reason.to_string());
            true
        })
        .await;
        if let Err(e) = out {
            tracing::warn!(error = %e, "could not count a parked job for the status page");
        }
    }

    /// A job of `org` was put back for later (written at most once an hour per process).
    pub async fn delayed(&self, org: &OrgId, reason: &str) {
        let now = self.clock.now();
        if !due(&self.written.delayed, org.to_owned(), now) {
            return;
        }
        let out = update_backlog(&self.repo, org, |b| {
            b.delayed_at = Some(now);
            b.delayed_reason = Some(reason.to_string());
            true
        })
        .await;
        if let Err(e) = out {
            tracing::warn!(error = %e, "could not note a delay for the status page");
        }
    }

    /// A message went through `ig`'s connection (written at most once an hour per process).
    pub async fn active(&self, org: &OrgId, ig: &IgAccountId, direction: Direction) {
        let now = self.clock.now();
        if !due(
            &self.written.active,
            (org.to_owned(), ig.to_owned(), direction),
            now,
        ) {
            return;
        }
        let key = Activity::key_for(org, ig, direction);
        let out = async {
            let mut a = self.repo.get::<Activity>(&key).await?.unwrap_or(Activity {
                organization_id: org.to_owned(),
                ig_account_id: ig.to_owned(),
                direction,
                last_at: now,
                days: vec![],
                expires_at: None,
            });
            a.note(now);
            self.repo.put(&a, crate::store::Condition::Always).await
        };
        if let Err(e) = out.await {
            tracing::warn!(error = %e, "could not note a connection's activity");
        }
    }
}

/// Whether `key` was last written over [`WRITE_EVERY`] ago (or never) by this process; marks it
/// written now if so.
fn due<K: std::hash::Hash + Eq>(
    memo: &Mutex<HashMap<K, DateTime<Utc>>>,
    key: K,
    now: DateTime<Utc>,
) -> bool {
    let mut memo = memo.lock().expect("observer memo");
    match memo.get(&key) {
        Some(at) if now - *at < WRITE_EVERY && *at <= now => false,
        _ => {
            memo.insert(key, now);
            true
        }
    }
}
