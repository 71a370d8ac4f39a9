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

/// The work-queue message replaying a parked one, or `None` when it stays parked.
fn replay_of(m: &ReceivedMessage, org: &str, which: Which) -> Option<(OutgoingMessage, bool)> {
    let mut wire = Wire::decode(&m.body).ok()?;
    if wire.is_unparsed() || owner(&wire) != Some(org) {
        return None;
    }
    let blocked = wire.parked().is_some_and(|p| p.blocked.is_some());
    if which == Which::Blocked && !blocked {
        return None;
    }
    wire.set_parked(None);
    let mut msg = wire.to_message();
    // A fresh deduplication id (SQS would drop a quick replay as a duplicate of the original),
    // the same for every replay of this parked copy.
    msg.dedup_id = queue_id(&format!("{}:replay:{}", msg.dedup_id, m.message_id));
    Some((msg, blocked))
}

/// Replays `org`'s parked jobs of one queue pair until done or `deadline`.
pub async fn replay_queue(
    pair: &QueuePair,
    org: &str,
    which: Which,
    deadline: Instant,
) -> Result<ReplayReport, QueueError> {
    let mut report = ReplayReport::default();
    let mut held = Vec::new();
    let mut seen = HashSet::new();
    let out = async {
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
                match replay_of(&m, org, which) {
                    Some((msg, blocked)) => moving.push((m.receipt, msg, blocked)),
                    None => {
                        // Seen again: its hold ran out, so every message has been looked at.
                        wrapped |= !seen.insert(m.message_id);
                        held.push(m.receipt);
                    }
                }
            }
            if !moving.is_empty() {
                let msgs: Vec<OutgoingMessage> = moving.iter().map(|(_, m, _)| m.clone()).collect();
                pair.work.send(&msgs).await?;
                for (receipt, _, blocked) in moving {
                    pair.dead_letter.delete(&receipt).await?;
                    report.replayed += 1;
                    report.blocked += u64::from(blocked);
                }
            }
            if wrapped {
                return Ok(true);
            }
        }
    };
    let result: Result<bool, QueueError> = out.await;
    report.left = seen.len() as u64;
    for receipt in held {
        if let Err(e) = pair.dead_letter.retry_later(&receipt, Duration::ZERO).await {
            tracing::warn!(error = %e, "could not release a parked job; its visibility timeout applies");
        }
    }
    report.complete = result?;
    Ok(report)
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
    for pair in pairs {
        let r = replay_queue(pair, org, which, deadline).await?;
        total.replayed += r.replayed;
        total.blocked += r.blocked;
        total.left += r.left;
        total.complete &= r.complete;
    }
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
    Ok(total)
}
