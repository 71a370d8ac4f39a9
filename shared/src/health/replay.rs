//! Replays an organization's parked jobs: from each dead-letter queue back to its work queue, in
//! the order they were parked, each once, leaving every other organization's jobs where they are.
//!
//! SQS has no "receive the messages of one tenant", so the replay reads the dead-letter queue and
//! holds what is not the organization's in flight until it is done (so it does not read them again
//! and their groups stay in order), then makes them visible again at once. Sealed jobs move as
//! they are: the replay never opens (or needs) a tenant's data key. A job moved twice (a crash
//! between the send and the delete) carries the same deduplication id both times, and the
//! workers' idempotency records make its effect happen once anyway.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::jobs::{Job, Wire};
use crate::metrics::{Metric, Metrics};
use crate::queue::{OutgoingMessage, Queue, QueueError, ReceivedMessage, queue_id};
use crate::store::Repo;

/// Which parked jobs of the organization go back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Which {
    /// Those parked waiting for a repair (a repair's automatic replay).
    Blocked,
    /// Every parked job (the status page's button, after the admin fixed the cause).
    All,
}

/// What a replay did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ReplayReport {
    /// Jobs moved back to their work queue.
    pub replayed: u64,
    /// Of those, jobs that were waiting for a repair.
    pub blocked: u64,
    /// Other jobs looked at and left parked (other organizations', or not chosen).
    pub left: u64,
    /// False when time ran out first: the rest waits for the next run.
    pub complete: bool,
}

/// A work queue and its dead-letter queue.
#[derive(Clone)]
pub struct QueuePair {
    /// Where replayed jobs go.
    pub work: Arc<dyn Queue>,
    /// Where parked jobs are.
    pub dead_letter: Arc<dyn Queue>,
}

/// How long a replay holds the lease at most: beyond the health function's 300 s timeout and
/// the dead-letter queues' 600 s visibility, so a replay that died holding messages keeps the
/// next one waiting until they are visible again.
pub const REPLAY_LEASE: chrono::Duration = chrono::Duration::minutes(11);
/// The lease record's TTL.
pub const REPLAY_LEASE_TTL_SECS: i64 = 24 * 3600;
/// How often a replay waiting for the lease looks again.
const LEASE_POLL: Duration = Duration::from_millis(500);

/// Takes the replay lease, waiting for it until `deadline`; the holder id, or `None` when
/// another replay kept it all along.
pub async fn take_lease(
    repo: &Repo,
    clock: &dyn crate::clock::Clock,
    deadline: Instant,
) -> Result<Option<String>, crate::store::StoreError> {
    use crate::store::{Condition, StoreError};
    let holder = hex::encode(rand::random::<[u8; 16]>());
    loop {
        let now = clock.now();
        let current = repo
            .get::<super::records::ReplayLease>(&crate::store::keys::replay_lease())
            .await?;
        let condition = match &current {
            Some(l) if l.until > now => None,
            Some(l) => Some(Condition::IfEquals {
                attribute: "holder".into(),
                value: serde_json::json!(l.holder),
            }),
            None => Some(Condition::IfAbsent),
        };
        if let Some(condition) = condition {
            let lease = super::records::ReplayLease {
                holder: holder.clone(),
                until: now + REPLAY_LEASE,
                expires_at: now.timestamp() + REPLAY_LEASE_TTL_SECS,
            };
            match repo.put(&lease, condition).await {
                Ok(()) => return Ok(Some(holder)),
                Err(StoreError::ConditionFailed) => {}
                Err(e) => return Err(e),
            }
        }
        if Instant::now() + LEASE_POLL >= deadline {
            return Ok(None);
        }
        tokio::time::sleep(LEASE_POLL).await;
    }
}

/// Gives the lease back (it also lapses on its own).
pub async fn release_lease(repo: &Repo, clock: &dyn crate::clock::Clock, holder: &str) {
    let now = clock.now();
    let lapsed = super::records::ReplayLease {
        holder: holder.to_string(),
        until: now,
        expires_at: now.timestamp() + REPLAY_LEASE_TTL_SECS,
    };
    let mine = crate::store::Condition::IfEquals {
        attribute: "holder".into(),
        value: serde_json::json!(holder),
    };
    if let Err(e) = repo.put(&lapsed, mine).await {
        tracing::warn!(error = %e, "could not give the replay lease back; it lapses");
    }
}

/// How long a receive waits for the first message: long enough that SQS's long poll has seen
/// every server, short enough that an empty queue ends the replay quickly.
const WAIT: Duration = Duration::from_secs(1);

/// The organization a queued body belongs to (sealed jobs say so in the clear).
fn owner(wire: &Wire) -> Option<&str> {
    match wire {
        Wire::Sealed(s) => Some(&s.organization_id),
        Wire::Plain(e) => match &e.job {
            Job::LivechatEvent(j) => Some(&j.organization_id),
            _ => None,
        },
    }
}

/// The work-queue message replaying a parked one, or `None` when it stays parked. Only jobs
/// parked before the replay started are taken: a job that fails again at once is parked again
/// (a new message) and waits for the next replay instead of going round within this one.
fn replay_of(
    m: &ReceivedMessage,
    org: &str,
    which: Which,
    started: DateTime<Utc>,
) -> Option<(OutgoingMessage, bool)> {
    let mut wire = Wire::decode(&m.body).ok()?;
    if wire.is_unparsed() || owner(&wire) != Some(org) {
        return None;
    }
    let parked = wire.parked()?;
    if parked.at > started {
        return None;
    }
    let blocked = parked.blocked.is_some();
    if which == Which::Blocked && !blocked {
        return None;
    }
    wire.set_parked(None);
    wire.set_replayed_at(started);
    let mut msg = wire.to_message();
    // A fresh deduplication id (SQS would drop a quick replay as a duplicate of the original),
    // the same for every replay of this parked copy.
    msg.dedup_id = queue_id(&format!("{}:replay:{}", msg.dedup_id, m.message_id));
    Some((msg, blocked))
}

/// Replays `org`'s parked jobs of one queue pair until done or `deadline`. What moved is in
/// the report even when an error stops it (the error is returned beside it).
pub async fn replay_queue(
    pair: &QueuePair,
    org: &str,
    which: Which,
    started: DateTime<Utc>,
    deadline: Instant,
) -> (ReplayReport, Option<QueueError>) {
    let mut report = ReplayReport::default();
    let mut held = Vec::new();
    let mut seen = HashSet::new();
    let result = scan(
        pair,
        org,
        which,
        started,
        deadline,
        &mut report,
        &mut held,
        &mut seen,
    )
    .await;
    report.left = seen.len() as u64;
    for receipt in held {
        if let Err(e) = pair.dead_letter.retry_later(&receipt, Duration::ZERO).await {
            tracing::warn!(error = %e, "could not release a parked job; its visibility timeout applies");
        }
    }
    match result {
        Ok(complete) => {
            report.complete = complete;
            (report, None)
        }
        Err(e) => (report, Some(e)),
    }
}

/// Reads the dead-letter queue to its end, moving the organization's jobs and holding the rest.
/// True when it saw every message; false when time ran out, or when a held message came round
/// again (its hold outlasted by a long scan: the rest is left for the next replay).
#[allow(clippy::too_many_arguments)]
async fn scan(
    pair: &QueuePair,
    org: &str,
    which: Which,
    started: DateTime<Utc>,
    deadline: Instant,
    report: &mut ReplayReport,
    held: &mut Vec<String>,
    seen: &mut HashSet<String>,
) -> Result<bool, QueueError> {
    loop {
        if Instant::now() >= deadline {
            return Ok(false);
        }
        let batch = pair.dead_letter.receive(10, WAIT).await?;
        if batch.is_empty() {
            return Ok(true);
        }
        let mut moving = Vec::new();
        let mut wrapped = false;
        for m in batch {
            match replay_of(&m, org, which, started) {
                Some((msg, blocked)) => moving.push((m.receipt, msg, blocked)),
                None => {
                    wrapped |= !seen.insert(m.message_id);
                    held.push(m.receipt);
                }
            }
        }
        if !moving.is_empty() {
            let msgs: Vec<OutgoingMessage> = moving.iter().map(|(_, m, _)| m.clone()).collect();
            pair.work.send(&msgs).await?;
            for (receipt, _, blocked) in moving {
                // Sent: counted even if the delete fails (the copy left behind is replayed
                // again later under the same deduplication id, and takes effect once).
                report.replayed += 1;
                report.blocked += u64::from(blocked);
                pair.dead_letter.delete(&receipt).await?;
            }
        }
        if wrapped {
            return Ok(false);
        }
    }
}

/// Replays `org`'s parked jobs from every queue pair and settles its backlog: the count goes
/// down by what was replayed, and a complete replay clears the request.
pub async fn replay(
    pairs: &[QueuePair],
    repo: &Repo,
    metrics: &Metrics,
    now: chrono::DateTime<chrono::Utc>,
    org: &str,
    which: Which,
    deadline: Instant,
) -> Result<ReplayReport, Box<dyn std::error::Error + Send + Sync>> {
    let mut total = ReplayReport {
        complete: true,
        ..ReplayReport::default()
    };
    let mut failed = None;
    for pair in pairs {
        let (r, error) = replay_queue(pair, org, which, now, deadline).await;
        total.replayed += r.replayed;
        total.blocked += r.blocked;
        total.left += r.left;
        total.complete &= r.complete && error.is_none();
        if error.is_some() {
            failed = error;
            break;
        }
    }
    // Settled whatever happened: what moved is no longer parked.
    super::update_backlog(repo, org, |b| {
        b.parked = b.parked.saturating_sub(total.replayed);
        b.parked_blocked = b.parked_blocked.saturating_sub(total.blocked);
        if total.replayed > 0 {
            b.replayed_at = Some(now);
            b.replayed = total.replayed;
        }
        if total.complete {
            b.replay_requested_at = None;
            b.replay_all = false;
        }
        true
    })
    .await?;
    metrics.count(Metric::Replayed, total.replayed, now);
    tracing::info!(organization_id = %org, replayed = total.replayed, left = total.left, complete = total.complete, "parked jobs replayed");
    match failed {
        Some(e) => Err(Box::new(e)),
        None => Ok(total),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::clock::{Clock, ManualClock};
    use crate::jobs::{Blocked, Envelope, LivechatEventJob, Parked};
    use crate::queue::{MemoryQueue, MemoryQueueSettings};
    use crate::store::MemoryStore;

    fn parked_job(org: &str, id: &str, at: DateTime<Utc>, blocked: bool) -> OutgoingMessage {
        let mut env = Envelope::new(
            Job::LivechatEvent(LivechatEventJob {
                organization_id: org.into(),
                action: "incoming_event".into(),
                event_id: id.into(),
                chat_id: Some("CHAT".into()),
                webhook: serde_json::json!({}),
            }),
            at - chrono::Duration::days(3),
        );
        env.parked = Some(Parked {
            reason: "r".into(),
            at,
            message_id: format!("m-{id}"),
            blocked: blocked.then_some(Blocked::ConnectionBroken),
        });
        let mut msg = env.to_message();
        msg.dedup_id = format!("parked-{id}");
        msg
    }

    fn ids(bodies: &[ReceivedMessage]) -> Vec<(String, bool)> {
        bodies
            .iter()
            .map(|m| {
                let env = Envelope::decode(&m.body).unwrap();
                let Job::LivechatEvent(j) = &env.job else {
                    panic!("a LiveChat job")
                };
                (j.event_id.clone(), env.replayed_at.is_some())
            })
            .collect()
    }

    #[tokio::test]
    async fn only_this_organizations_jobs_parked_before_the_replay_move_in_order() {
        let t0 = Utc::now();
        let clock = Arc::new(ManualClock::new(t0));
        let settings = MemoryQueueSettings::default;
        let dlq = Arc::new(MemoryQueue::new("dlq", clock.clone(), settings()));
        let work = Arc::new(MemoryQueue::new("work", clock.clone(), settings()));
        let later = t0 + chrono::Duration::seconds(10);
        dlq.send(&[
            parked_job("X", "a", t0, true),
            parked_job("Y", "b", t0, true),
            parked_job("X", "c", later, true),
            parked_job("X", "d", t0, false),
            parked_job("X", "e", t0, true),
        ])
        .await
        .unwrap();
        let pair = QueuePair {
            work: work.clone(),
            dead_letter: dlq.clone(),
        };
        let soon = Instant::now() + Duration::from_secs(30);
        let started = t0 + chrono::Duration::seconds(5);
        // Waiting for a repair, parked before the replay started, of X: a and e, in order; c
        // was parked after it started (it failed again during it), d for another reason.
        let (r, err) = replay_queue(&pair, "X", Which::Blocked, started, soon).await;
        assert!(err.is_none());
        assert_eq!((r.replayed, r.blocked, r.left, r.complete), (2, 2, 3, true));
        let moved = work.receive(10, Duration::ZERO).await.unwrap();
        assert_eq!(ids(&moved), [("a".into(), true), ("e".into(), true)]);
        for m in &moved {
            work.delete(&m.receipt).await.unwrap(); // done, as a worker would
        }
        // Everything else is visible again at once, untouched.
        let kept = dlq.receive(10, Duration::ZERO).await.unwrap();
        assert_eq!(kept.len(), 3);
        for m in &kept {
            dlq.retry_later(&m.receipt, Duration::ZERO).await.unwrap();
        }
        // The status page's "replay all", later: every remaining job of X, none of Y's.
        clock.advance(chrono::Duration::seconds(30));
        let (r, _) = replay_queue(&pair, "X", Which::All, clock.now(), soon).await;
        assert_eq!((r.replayed, r.left), (2, 1));
        let moved = work.receive(10, Duration::ZERO).await.unwrap();
        let names: Vec<String> = ids(&moved).into_iter().map(|(id, _)| id).collect();
        assert_eq!(names, ["c", "d"]);
    }

    #[tokio::test]
    async fn one_replay_at_a_time() {
        let clock = ManualClock::new(Utc::now());
        let repo = Repo::new(Arc::new(MemoryStore::new()));
        let soon = || Instant::now() + Duration::from_millis(700);
        let first = take_lease(&repo, &clock, soon()).await.unwrap().unwrap();
        assert_eq!(take_lease(&repo, &clock, soon()).await.unwrap(), None);
        release_lease(&repo, &clock, &first).await;
        let second = take_lease(&repo, &clock, soon()).await.unwrap();
        assert!(second.is_some_and(|h| h != first));
        // A holder that died lets go when its lease lapses.
        clock.advance(REPLAY_LEASE + chrono::Duration::seconds(1));
        assert!(take_lease(&repo, &clock, soon()).await.unwrap().is_some());
    }
}
