//! Replays an organization's parked jobs: from each dead-letter queue back to its work queue, in
//! the order they were parked, each once, leaving every other organization's jobs where they are.
//!
//! A replay takes *every* job the organization had in the dead-letter queue when it started, not
//! only those waiting for a repair: SQS FIFO delivers nothing of a message group behind a message
//! held in flight, so a job left behind (parked for another reason) would hide the rest of its
//! conversation from the replay — which would then call itself complete and leave the jobs that
//! waited for the repair parked until the retention ends. Moving the whole group keeps its order;
//! a job that fails again is simply parked again, after the replay started, and stays.
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

use crate::ids::OrgId;
use crate::jobs::{Job, Wire};
use crate::metrics::{Metric, Metrics};
use crate::queue::{OutgoingMessage, Queue, QueueError, ReceivedMessage, queue_id};
use crate::store::Repo;

/// What a replay did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ReplayReport {
    /// Jobs moved back to their work queue.
    pub replayed: u64,
    /// Of those, jobs the workers had parked (the backlog counts them).
    pub parked: u64,
    /// Of those, jobs that were waiting for a repair.
    pub blocked: u64,
    /// Other jobs looked at and left parked (other organizations', unparsed, or parked after
    /// the replay started).
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

/// Takes the replay lease if nobody holds it: the holder id, or `None` when another replay
/// holds it. Never waits: a run that finds it held leaves its request to the holder (which looks
/// for requests once more after letting go) or to the next hourly run, so a burst of requests
/// cannot pile up executions that wait (docs/security.md).
pub async fn take_lease(
    repo: &Repo,
    clock: &dyn crate::clock::Clock,
) -> Result<Option<String>, crate::store::StoreError> {
    use crate::store::{Condition, StoreError};
    let holder = hex::encode(rand::random::<[u8; 16]>());
    let now = clock.now();
    let current = repo
        .get::<crate::connection::records::ReplayLease>(&crate::store::keys::replay_lease())
        .await?;
    let condition = match &current {
        Some(l) if l.until > now => return Ok(None),
        Some(l) => Condition::IfEquals {
            attribute: "holder".into(),
            value: serde_json::json!(l.holder),
        },
        None => Condition::IfAbsent,
    };
    let lease = crate::connection::records::ReplayLease {
        holder: holder.clone(),
        until: now + REPLAY_LEASE,
        expires_at: now.timestamp() + REPLAY_LEASE_TTL_SECS,
    };
    match repo.put(&lease, condition).await {
        Ok(()) => Ok(Some(holder)),
        Err(StoreError::ConditionFailed) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Gives the lease back (it also lapses on its own).
pub async fn release_lease(repo: &Repo, clock: &dyn crate::clock::Clock, holder: &str) {
    let now = clock.now();
    let lapsed = crate::connection::records::ReplayLease {
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

/// What replaying one dead-letter message takes.
struct Move {
    message: OutgoingMessage,
    /// A worker parked it (the backlog counts it); otherwise SQS dead-lettered it.
    parked: bool,
    /// It was waiting for a repair.
    blocked: bool,
}

/// The work-queue message replaying a dead-letter one of `org`, or `None` when it stays: another
/// organization's, an unparsed body, or a job parked after the replay started (it failed again
/// during this replay, and waits for the next one instead of going round within this one).
fn replay_of(m: &ReceivedMessage, org: &OrgId, started: DateTime<Utc>) -> Option<Move> {
    let mut wire = Wire::decode(&m.body).ok()?;
    if wire.is_unparsed() || owner(&wire) != Some(org) {
        return None;
    }
    let parked = wire.parked().cloned();
    if parked.as_ref().is_some_and(|p| p.at > started) {
        return None;
    }
    wire.set_parked(None);
    wire.set_replayed_at(started);
    let mut message = wire.to_message();
    // A fresh deduplication id (SQS would drop a quick replay as a duplicate of the original),
    // the same for every replay of this parked copy.
    message.dedup_id = queue_id(&format!("{}:replay:{}", message.dedup_id, m.message_id));
    Some(Move {
        message,
        parked: parked.is_some(),
        blocked: parked.is_some_and(|p| p.blocked.is_some()),
    })
}

/// Replays `org`'s parked jobs of one queue pair until done or `deadline`. What moved is in
/// the report even when an error stops it (the error is returned beside it).
pub async fn replay_queue(
    pair: &QueuePair,
    org: &OrgId,
    started: DateTime<Utc>,
    deadline: Instant,
) -> (ReplayReport, Option<QueueError>) {
    let mut report = ReplayReport::default();
    let mut held = Vec::new();
    let mut seen = HashSet::new();
    let mut scan = Scan {
        pair,
        org,
        started,
        deadline,
        report: &mut report,
        held: &mut held,
        seen: &mut seen,
    };
    let result = scan.run().await;
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

/// One pass over a dead-letter queue.
struct Scan<'a> {
    pair: &'a QueuePair,
    org: &'a OrgId,
    started: DateTime<Utc>,
    deadline: Instant,
    report: &'a mut ReplayReport,
    /// Receipts of the messages held in flight until the replay ends.
    held: &'a mut Vec<String>,
    /// Ids of the messages held.
    seen: &'a mut HashSet<String>,
}

impl Scan<'_> {
    /// Reads the dead-letter queue to its end, moving the organization's jobs and holding the
    /// rest. True when it saw every message; false when time ran out, or when a held message
    /// came round again (its hold outlasted by a long scan: the rest is left for the next
    /// replay).
    async fn run(&mut self) -> Result<bool, QueueError> {
        loop {
            if Instant::now() >= self.deadline {
                return Ok(false);
            }
            let batch = self.pair.dead_letter.receive(10, WAIT).await?;
            if batch.is_empty() {
                return Ok(true);
            }
            let mut moving = Vec::new();
            let mut wrapped = false;
            for m in batch {
                match replay_of(&m, self.org, self.started) {
                    Some(mv) => moving.push((m.receipt, mv)),
                    None => {
                        wrapped |= !self.seen.insert(m.message_id);
                        self.held.push(m.receipt);
                    }
                }
            }
            self.move_back(moving).await?;
            if wrapped {
                return Ok(false);
            }
        }
    }

    /// Sends the moved jobs to the work queue, then deletes them from the dead-letter queue.
    async fn move_back(&mut self, moving: Vec<(String, Move)>) -> Result<(), QueueError> {
        if moving.is_empty() {
            return Ok(());
        }
        let msgs: Vec<OutgoingMessage> = moving.iter().map(|(_, m)| m.message.clone()).collect();
        self.pair.work.send(&msgs).await?;
        for (receipt, mv) in moving {
            // Sent: counted even if the delete fails (the copy left behind is replayed again
            // later under the same deduplication id, and takes effect once).
            self.report.replayed += 1;
            self.report.parked += u64::from(mv.parked);
            self.report.blocked += u64::from(mv.blocked);
            self.pair.dead_letter.delete(&receipt).await?;
        }
        Ok(())
    }
}

/// Replays `org`'s parked jobs from every queue pair and settles its backlog: the count goes
/// down by what was replayed, and a complete replay clears the request.
pub async fn replay(
    pairs: &[QueuePair],
    repo: &Repo,
    metrics: &Metrics,
    now: chrono::DateTime<chrono::Utc>,
    org: &OrgId,
    deadline: Instant,
) -> Result<ReplayReport, Box<dyn std::error::Error + Send + Sync>> {
    let mut total = ReplayReport {
        complete: true,
        ..ReplayReport::default()
    };
    let mut failed = None;
    for pair in pairs {
        let (r, error) = replay_queue(pair, org, now, deadline).await;
        total.replayed += r.replayed;
        total.parked += r.parked;
        total.blocked += r.blocked;
        total.left += r.left;
        total.complete &= r.complete && error.is_none();
        if error.is_some() {
            failed = error;
            break;
        }
    }
    // Settled whatever happened: what moved is no longer parked.
    crate::connection::update_backlog(repo, org, |b| {
        b.parked = b.parked.saturating_sub(total.parked);
        b.parked_blocked = b.parked_blocked.saturating_sub(total.blocked);
        if total.replayed > 0 {
            b.replayed_at = Some(now);
            b.replayed = total.replayed;
        }
        // A request made after this replay started is still to do.
        if total.complete && b.replay_requested_at.is_some_and(|at| at <= now) {
            b.replay_requested_at = None;
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
    use crate::clock::ManualClock;
    use crate::jobs::{Blocked, Envelope, LivechatEventJob, Parked};
    use crate::queue::{MemoryQueue, MemoryQueueSettings};
    use crate::store::MemoryStore;

    fn parked_job(org: &OrgId, id: &str, at: DateTime<Utc>, blocked: bool) -> OutgoingMessage {
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

    fn pair(clock: &Arc<ManualClock>) -> (Arc<MemoryQueue>, Arc<MemoryQueue>, QueuePair) {
        let settings = MemoryQueueSettings::default;
        let dlq = Arc::new(MemoryQueue::new("dlq", clock.clone(), settings()));
        let work = Arc::new(MemoryQueue::new("work", clock.clone(), settings()));
        let pair = QueuePair {
            work: work.clone(),
            dead_letter: dlq.clone(),
        };
        (dlq, work, pair)
    }

    #[tokio::test]
    async fn only_this_organizations_jobs_parked_before_the_replay_move_in_order() {
        let t0 = Utc::now();
        let clock = Arc::new(ManualClock::new(t0));
        let (dlq, work, pair) = pair(&clock);
        let later = t0 + chrono::Duration::seconds(10);
        dlq.send(&[
            parked_job(&OrgId::from("X"), "a", t0, true),
            parked_job(&OrgId::from("Y"), "b", t0, true),
            parked_job(&OrgId::from("X"), "c", later, true),
            parked_job(&OrgId::from("X"), "d", t0, false),
            parked_job(&OrgId::from("X"), "e", t0, true),
        ])
        .await
        .unwrap();
        let soon = Instant::now() + Duration::from_secs(30);
        let started = t0 + chrono::Duration::seconds(5);
        // X's jobs parked before the replay started, in order, whatever they were parked for: a,
        // d and e; c was parked after it started (it failed again during it), b is Y's.
        let (r, err) = replay_queue(&pair, &OrgId::from("X"), started, soon).await;
        assert!(err.is_none());
        assert_eq!(
            (r.replayed, r.parked, r.blocked, r.left, r.complete),
            (3, 3, 2, 2, true)
        );
        let moved = work.receive(10, Duration::ZERO).await.unwrap();
        assert_eq!(
            ids(&moved),
            [("a".into(), true), ("d".into(), true), ("e".into(), true)]
        );
        // Everything else is visible again at once, untouched.
        let kept = dlq.receive(10, Duration::ZERO).await.unwrap();
        let kept: Vec<String> = ids(&kept).into_iter().map(|(id, _)| id).collect();
        assert_eq!(kept, ["b", "c"]);
    }

    /// SQS FIFO hides a group behind a message held in flight: a job of the organization that
    /// the replay left parked hid the blocked one behind it (in the next receive), and the
    /// replay called itself complete with the blocked job still parked.
    #[tokio::test]
    async fn a_job_parked_for_another_reason_does_not_hide_its_conversations_blocked_ones() {
        let t0 = Utc::now();
        let clock = Arc::new(ManualClock::new(t0));
        let (dlq, work, pair) = pair(&clock);
        let mut parked: Vec<OutgoingMessage> = (0..9)
            .map(|i| parked_job(&OrgId::from("Y"), &format!("y{i}"), t0, true))
            .collect();
        // The tenth message of the first receive: X's conversation, parked for another reason;
        // its blocked job comes in the next receive.
        parked.push(parked_job(&OrgId::from("X"), "refused", t0, false));
        parked.push(parked_job(&OrgId::from("X"), "waiting", t0, true));
        dlq.send(&parked).await.unwrap();
        let soon = Instant::now() + Duration::from_secs(30);
        let started = t0 + chrono::Duration::seconds(5);
        let (r, err) = replay_queue(&pair, &OrgId::from("X"), started, soon).await;
        assert!(err.is_none());
        let moved = work.receive(10, Duration::ZERO).await.unwrap();
        let moved: Vec<String> = ids(&moved).into_iter().map(|(id, _)| id).collect();
        assert_eq!(
            moved,
            ["refused", "waiting"],
            "the whole conversation, in order"
        );
        assert_eq!((r.replayed, r.blocked, r.complete), (2, 1, true));
    }

    /// A job SQS dead-lettered itself (after `maxReceiveCount` receives: a worker that kept
    /// crashing on it) carries no park mark; it is the organization's, and moves too.
    #[tokio::test]
    async fn a_job_sqs_dead_lettered_moves_with_the_rest() {
        let t0 = Utc::now();
        let clock = Arc::new(ManualClock::new(t0));
        let (dlq, work, pair) = pair(&clock);
        let mut unmarked = parked_job(&OrgId::from("X"), "crashed", t0, false);
        let mut wire = Wire::decode(&unmarked.body).unwrap();
        wire.set_parked(None);
        unmarked.body = wire.to_message().body;
        dlq.send(&[unmarked, parked_job(&OrgId::from("X"), "waiting", t0, true)])
            .await
            .unwrap();
        let soon = Instant::now() + Duration::from_secs(30);
        let (r, _) = replay_queue(
            &pair,
            &OrgId::from("X"),
            t0 + chrono::Duration::seconds(1),
            soon,
        )
        .await;
        assert_eq!((r.replayed, r.parked, r.blocked), (2, 1, 1));
        let moved = work.receive(10, Duration::ZERO).await.unwrap();
        let moved: Vec<String> = ids(&moved).into_iter().map(|(id, _)| id).collect();
        assert_eq!(moved, ["crashed", "waiting"]);
    }

    #[tokio::test]
    async fn one_replay_at_a_time_and_nobody_waits_for_the_lease() {
        let clock = ManualClock::new(Utc::now());
        let repo = Repo::new(Arc::new(MemoryStore::new()));
        let first = take_lease(&repo, &clock).await.unwrap().unwrap();
        assert_eq!(take_lease(&repo, &clock).await.unwrap(), None);
        release_lease(&repo, &clock, &first).await;
        let second = take_lease(&repo, &clock).await.unwrap();
        assert!(second.is_some_and(|h| h != first));
        // A holder that died lets go when its lease lapses.
        clock.advance(REPLAY_LEASE + chrono::Duration::seconds(1));
        assert!(take_lease(&repo, &clock).await.unwrap().is_some());
    }
}
