//! Running queue workers: a batch of queued jobs in, the ids that failed out, with SQS FIFO
//! semantics (a failure holds back the rest of its message group). The Lambda adapter turns an
//! `SqsEvent` into a batch and the failures into an `SqsBatchResponse`; the local server feeds
//! the same function from the in-memory queue.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent};
use chrono::{DateTime, Utc};
use futures_util::future::join_all;

use crate::datakey::DataKeys;
use crate::jobs::{Blocked, Envelope, Job, Parked, Source, UnparsedJob, Wire};
use crate::metrics::{Metric, Sample};
use crate::outcome::{Attempt, Outcome};
use crate::queue::{OutgoingMessage, Queue, ReceivedMessage};
use crate::retry::{MAX_RETRY_DELAY, RetryPolicy};

/// One queued job as the worker sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedJob {
    /// The queue's message id (reported back on failure).
    pub message_id: String,
    /// Receipt handle (for visibility changes).
    pub receipt: String,
    /// Message group.
    pub group_id: String,
    /// The body.
    pub body: String,
    /// Receives so far, this one included.
    pub receive_count: u32,
}

impl From<ReceivedMessage> for QueuedJob {
    fn from(m: ReceivedMessage) -> Self {
        Self {
            message_id: m.message_id,
            receipt: m.receipt,
            group_id: m.group_id,
            body: m.body,
            receive_count: m.receive_count,
        }
    }
}

/// Handles one decoded job.
#[async_trait]
pub trait JobHandler: Send + Sync {
    /// Which webhook source this worker consumes (labels parked bodies).
    fn source(&self) -> Source;
    /// Processes one envelope.
    async fn handle(&self, envelope: &Envelope, attempt: Attempt) -> Outcome;
    /// The organizations' data keys, to open sealed jobs (a handler without them parks sealed
    /// jobs untouched).
    fn data_keys(&self) -> Option<&DataKeys> {
        None
    }
    /// Who is told what became of each job (metrics, the status page); nobody by default.
    fn observer(&self) -> Option<&crate::health::Observer> {
        None
    }
}

/// Why a purged job was dropped (logged as `skipped`, counted by the log metric filter).
pub const PURGED: &str = "purged: the organization's data key is gone (uninstalled)";

/// Turns a queue body into the outcome of running it. A transient failure on the last attempt
/// parks the job with its reason.
async fn run_body(
    handler: &dyn JobHandler,
    body: &str,
    receive_count: u32,
    now: DateTime<Utc>,
) -> Outcome {
    let run = |env: Envelope| async move {
        let attempt = Attempt::of(receive_count, env.attempts_since(), now);
        match handler.handle(&env, attempt).await {
            Outcome::Retry { reason, .. } if attempt.last => Outcome::Park(format!(
                "gave up after {} attempts over {} min; last failure: {reason}",
                attempt.number,
                attempt.held_for.num_minutes()
            )),
            other => other,
        }
    };
    let sealed = match Wire::decode(body) {
        Ok(Wire::Plain(env)) => return run(env).await,
        Ok(Wire::Sealed(sealed)) => sealed,
        Err(e) => return Outcome::Park(e.to_string()),
    };
    let Some(keys) = handler.data_keys() else {
        return Outcome::Park("sealed job, but this worker holds no data keys".into());
    };
    match keys.to_open(&sealed.organization_id).await {
        Ok(None) => Outcome::Skipped(PURGED),
        Ok(Some(key)) => match sealed.open(&key) {
            Ok(env) => run(env).await,
            Err(e) => Outcome::Park(e.to_string()),
        },
        Err(e) if e.is_transient() => Outcome::Retry {
            reason: e.to_string(),
            after: None,
        },
        Err(e) => Outcome::Park(e.to_string()),
    }
}

/// A job is only started with at least this much of the invocation left: one platform request's
/// timeout plus slack. A job cut off by the Lambda timeout would take the whole batch with it.
pub const DEADLINE_MARGIN: Duration =
    Duration::from_secs(crate::http::REQUEST_TIMEOUT.as_secs() + 2);

/// The last moment to start a job in an invocation that must end by `deadline_ms` (epoch ms, as
/// the Lambda context gives it), judged at `now`.
pub fn start_by(deadline_ms: u64, now: DateTime<Utc>) -> Instant {
    let left = deadline_ms.saturating_sub(u64::try_from(now.timestamp_millis()).unwrap_or(0));
    Instant::now() + Duration::from_millis(left).saturating_sub(DEADLINE_MARGIN)
}

/// Runs a batch; returns the message ids to report as failed.
pub async fn process_batch(
    handler: &dyn JobHandler,
    queue: &dyn Queue,
    dead_letter: &dyn Queue,
    now: DateTime<Utc>,
    jobs: Vec<QueuedJob>,
) -> Vec<String> {
    process_batch_until(handler, queue, dead_letter, now, jobs, None).await
}

/// Runs a batch, starting no job after `start_by`: jobs not started by then are reported failed
/// and made visible again at once, so they are retried soon instead of after the visibility
/// timeout, and the jobs that did complete are not redone.
pub async fn process_batch_until(
    handler: &dyn JobHandler,
    queue: &dyn Queue,
    dead_letter: &dyn Queue,
    now: DateTime<Utc>,
    jobs: Vec<QueuedJob>,
    start_by: Option<Instant>,
) -> Vec<String> {
    // Groups run concurrently; within a group, in order.
    let mut groups: BTreeMap<String, Vec<QueuedJob>> = BTreeMap::new();
    let mut order = Vec::new();
    for job in jobs {
        if !groups.contains_key(&job.group_id) {
            order.push(job.group_id.clone());
        }
        groups.entry(job.group_id.clone()).or_default().push(job);
    }
    let runs = order.into_iter().map(|g| {
        let jobs = groups.remove(&g).unwrap_or_default();
        run_group(handler, queue, dead_letter, now, jobs, start_by)
    });
    let mut sample = Sample::default();
    let mut failed = Vec::new();
    for (group_failed, group_sample) in join_all(runs).await {
        failed.extend(group_failed);
        sample.merge(group_sample);
    }
    if let Some(observer) = handler.observer() {
        observer.metrics.write(&sample, observer.now());
    }
    failed
}

/// The clear part of a queued job: whose it is and when the platform handed it over.
#[derive(serde::Deserialize, Default)]
struct Head {
    #[serde(default)]
    organization_id: Option<crate::ids::OrgId>,
    #[serde(default)]
    received_at: Option<DateTime<Utc>>,
    #[serde(default)]
    replayed_at: Option<DateTime<Utc>>,
}

impl Head {
    fn of(body: &str) -> Self {
        serde_json::from_str(body).unwrap_or_default()
    }
}

/// Counts an outcome and tells the observer (the organization's backlog) about it.
async fn observe(
    handler: &dyn JobHandler,
    job: &QueuedJob,
    outcome: &Outcome,
    sample: &mut Sample,
) {
    let Some(observer) = handler.observer() else {
        return;
    };
    let head = Head::of(&job.body);
    let org = head.organization_id.as_ref();
    match outcome {
        Outcome::Done => {
            sample.count(Metric::MessagesBridged);
            // A replayed job's latency counts from its replay: its wait for the repair is the
            // backlog's (the status page), not the pipeline's.
            if let Some(at) = head.replayed_at.or(head.received_at) {
                let ms = (observer.now() - at).num_milliseconds().max(0);
                sample.add(Metric::DeliveryLatency, ms as f64);
            }
        }
        Outcome::Skipped(why) if *why == PURGED => sample.count(Metric::DroppedAsPurged),
        Outcome::Skipped(_) => {}
        Outcome::Retry { reason, .. } => {
            sample.count(Metric::Retries);
            if let Some(org) = org {
                observer.delayed(org, reason).await;
            }
        }
        Outcome::Park(reason) => {
            sample.count(Metric::Parked);
            if let Some(org) = org {
                observer.parked(org, None, reason).await;
            }
        }
        Outcome::Blocked(b) => {
            sample.count(Metric::Parked);
            if let Some(org) = org {
                observer.parked(org, Some(*b), b.reason()).await;
            }
        }
    }
}

async fn run_group(
    handler: &dyn JobHandler,
    queue: &dyn Queue,
    dead_letter: &dyn Queue,
    now: DateTime<Utc>,
    jobs: Vec<QueuedJob>,
    start_by: Option<Instant>,
) -> (Vec<String>, Sample) {
    let mut failed = Vec::new();
    let mut sample = Sample::default();
    let mut blocked = false;
    for job in jobs {
        if start_by.is_some_and(|t| Instant::now() >= t) {
            if !blocked {
                tracing::warn!(message_id = %job.message_id, "out of time; the rest of the group goes back to the queue");
                blocked = true;
            }
            if let Err(e) = queue.retry_later(&job.receipt, Duration::ZERO).await {
                tracing::warn!(error = %e, "could not release the job; the queue's timeout applies");
            }
            failed.push(job.message_id);
            continue;
        }
        if blocked {
            // FIFO: nothing after a failure in the same group may run before it.
            failed.push(job.message_id);
            continue;
        }
        let outcome = run_body(handler, &job.body, job.receive_count, now).await;
        let held = settle(handler, queue, dead_letter, &job, outcome.clone(), now).await;
        if held {
            failed.push(job.message_id.clone());
            blocked = true;
        }
        // Told once it is settled: a park that failed is retried, not counted twice.
        let parked_failed = held && matches!(outcome, Outcome::Park(_) | Outcome::Blocked(_));
        if !parked_failed {
            observe(handler, &job, &outcome, &mut sample).await;
        }
    }
    (failed, sample)
}

/// Acts on a job's outcome (a retry delay, a park in the dead-letter queue): whether the job
/// failed, holding back the rest of its group.
async fn settle(
    handler: &dyn JobHandler,
    queue: &dyn Queue,
    dead_letter: &dyn Queue,
    job: &QueuedJob,
    outcome: Outcome,
    now: DateTime<Utc>,
) -> bool {
    match outcome {
        Outcome::Done => false,
        Outcome::Skipped(why) => {
            tracing::info!(message_id = %job.message_id, skipped = why, "job skipped");
            false
        }
        Outcome::Retry { reason, after } => {
            let delay = after
                .unwrap_or_else(|| RetryPolicy::REDELIVERY.delay(job.receive_count))
                .min(MAX_RETRY_DELAY);
            tracing::warn!(message_id = %job.message_id, %reason, delay_s = delay.as_secs(), "job will be retried");
            if let Err(e) = queue.retry_later(&job.receipt, delay).await {
                tracing::warn!(error = %e, "could not set the retry delay; the queue's timeout applies");
            }
            true
        }
        Outcome::Park(reason) => {
            tracing::error!(message_id = %job.message_id, %reason, "job parked in the dead-letter queue");
            let parked = park_message(handler.source(), job, &reason, now);
            !park(dead_letter, parked).await
        }
        Outcome::Blocked(cause) => {
            tracing::warn!(message_id = %job.message_id, reason = cause.reason(), "job parked until its installation is repaired");
            let mut parked = park_message(handler.source(), job, cause.reason(), now);
            set_blocked(&mut parked, cause);
            !park(dead_letter, parked).await
        }
    }
}

async fn park(dead_letter: &dyn Queue, message: OutgoingMessage) -> bool {
    match dead_letter.send(&[message]).await {
        Ok(()) => true,
        Err(e) => {
            tracing::error!(error = %e, "could not park the job; it stays queued");
            false
        }
    }
}

/// Marks a dead-letter copy as waiting for a repair.
fn set_blocked(message: &mut OutgoingMessage, cause: Blocked) {
    if let Ok(mut wire) = Wire::decode(&message.body) {
        let mut parked = wire.parked().cloned();
        if let Some(p) = parked.as_mut() {
            p.blocked = Some(cause);
        }
        wire.set_parked(parked);
        message.body = wire.to_message().body;
    }
}

/// The dead-letter copy of a job: its envelope (still sealed, if it was) with the reason, or the
/// raw body wrapped as an unparsed job when it is not an envelope.
pub fn park_message(
    source: Source,
    job: &QueuedJob,
    reason: &str,
    now: DateTime<Utc>,
) -> OutgoingMessage {
    let mut wire = Wire::decode(&job.body).unwrap_or_else(|_| {
        Wire::Plain(Envelope::new(
            Job::Unparsed(UnparsedJob {
                source,
                reason: "queue body is not a job envelope".into(),
                raw_body: job.body.clone(),
                part: None,
            }),
            now,
        ))
    });
    wire.set_parked(Some(Parked {
        reason: reason.to_string(),
        at: now,
        message_id: job.message_id.clone(),
        blocked: None,
    }));
    let mut msg = wire.to_message();
    msg.dedup_id = crate::queue::queue_id(&format!("{}:parked:{}", msg.dedup_id, job.message_id));
    msg
}

/// The Lambda adapter: an SQS event in, a batch response out.
pub async fn handle_sqs_event(
    handler: &dyn JobHandler,
    queue: &dyn Queue,
    dead_letter: &dyn Queue,
    now: DateTime<Utc>,
    event: SqsEvent,
    start_by: Option<Instant>,
) -> SqsBatchResponse {
    let jobs = event
        .records
        .into_iter()
        .map(|r| {
            let attr = |k: &str| r.attributes.get(k).cloned().unwrap_or_default();
            QueuedJob {
                message_id: r.message_id.clone().unwrap_or_default(),
                receipt: r.receipt_handle.clone().unwrap_or_default(),
                group_id: attr("MessageGroupId"),
                body: r.body.clone().unwrap_or_default(),
                receive_count: attr("ApproximateReceiveCount").parse().unwrap_or(1),
            }
        })
        .collect();
    let failed = process_batch_until(handler, queue, dead_letter, now, jobs, start_by).await;
    let mut response = SqsBatchResponse::default();
    response.batch_item_failures = failed
        .into_iter()
        .map(|id| {
            let mut f = BatchItemFailure::default();
            f.item_identifier = id;
            f
        })
        .collect();
    response
}

/// Polls a queue forever, as the Lambda event source would (local server).
pub async fn poll_forever(
    handler: Arc<dyn JobHandler>,
    queue: Arc<dyn Queue>,
    dead_letter: Arc<dyn Queue>,
    clock: Arc<dyn crate::clock::Clock>,
) {
    loop {
        match queue.receive(10, Duration::from_secs(1)).await {
            Ok(batch) if batch.is_empty() => {}
            Ok(batch) => {
                let receipts: Vec<(String, String)> = batch
                    .iter()
                    .map(|m| (m.message_id.clone(), m.receipt.clone()))
                    .collect();
                let jobs = batch.into_iter().map(QueuedJob::from).collect();
                let failed: HashSet<String> = process_batch(
                    handler.as_ref(),
                    queue.as_ref(),
                    dead_letter.as_ref(),
                    clock.now(),
                    jobs,
                )
                .await
                .into_iter()
                .collect();
                for (id, receipt) in receipts {
                    if !failed.contains(&id) {
                        if let Err(e) = queue.delete(&receipt).await {
                            tracing::warn!(error = %e, "could not delete a processed message");
                        }
                    }
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "queue receive failed");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::clock::{Clock, ManualClock};
    use crate::jobs::InstagramEventJob;
    use crate::queue::{MemoryQueue, MemoryQueueSettings};

    struct Counting(AtomicUsize);

    #[async_trait]
    impl JobHandler for Counting {
        fn source(&self) -> Source {
            Source::Instagram
        }
        async fn handle(&self, _: &Envelope, _: Attempt) -> Outcome {
            self.0.fetch_add(1, Ordering::SeqCst);
            Outcome::Done
        }
    }

    async fn three_jobs(clock: &Arc<ManualClock>) -> (MemoryQueue, Vec<QueuedJob>) {
        let queue = MemoryQueue::new("q", clock.clone(), MemoryQueueSettings::default());
        let msgs: Vec<_> = [("A", "m1"), ("A", "m2"), ("B", "m3")]
            .into_iter()
            .map(|(igsid, mid)| {
                Envelope::new(
                    Job::InstagramEvent(InstagramEventJob {
                        ig_account_id: "17841400000000001".into(),
                        igsid: igsid.into(),
                        event_id: mid.into(),
                        field: "messaging".into(),
                        entry_time: None,
                        item: serde_json::json!({}),
                    }),
                    clock.now(),
                )
                .to_message()
            })
            .collect();
        queue.send(&msgs).await.unwrap();
        let jobs = queue
            .receive(10, Duration::ZERO)
            .await
            .unwrap()
            .into_iter()
            .map(QueuedJob::from)
            .collect();
        (queue, jobs)
    }

    #[tokio::test]
    async fn out_of_time_jobs_are_not_started_and_go_back_at_once() {
        let clock = Arc::new(ManualClock::new(Utc::now()));
        let (queue, jobs) = three_jobs(&clock).await;
        let dlq = MemoryQueue::new("dlq", clock.clone(), MemoryQueueSettings::default());
        let handler = Counting(AtomicUsize::new(0));
        let past = Some(Instant::now());
        let failed = process_batch_until(&handler, &queue, &dlq, clock.now(), jobs, past).await;
        assert_eq!(handler.0.load(Ordering::SeqCst), 0);
        assert_eq!(failed.len(), 3);
        // Visible again without waiting out the 180 s visibility timeout.
        let again = queue.receive(10, Duration::ZERO).await.unwrap();
        assert_eq!(again.len(), 3);
        assert!(again.iter().all(|m| m.receive_count == 2));
    }

    #[test]
    fn a_replayed_job_gets_its_retries_afresh() {
        let now = Utc::now();
        let mut env = Envelope::new(
            Job::InstagramEvent(InstagramEventJob {
                ig_account_id: "17841400000000001".into(),
                igsid: "A".into(),
                event_id: "m1".into(),
                field: "messaging".into(),
                entry_time: None,
                item: serde_json::json!({}),
            }),
            now - chrono::Duration::days(2),
        );
        // Parked two days waiting for a repair: its first attempt after the replay is not its
        // last (the 6-hour retry window counts from the replay).
        assert!(Attempt::of(1, env.attempts_since(), now).last);
        env.replayed_at = Some(now - chrono::Duration::minutes(1));
        assert!(!Attempt::of(1, env.attempts_since(), now).last);
    }

    #[test]
    fn the_start_deadline_keeps_a_request_timeout_in_hand() {
        let now = Utc::now();
        let ms = |d: chrono::Duration| (now + d).timestamp_millis() as u64;
        let t0 = Instant::now();
        // A 30 s invocation: jobs may start during the first 18 s.
        let by = start_by(ms(chrono::Duration::seconds(30)), now);
        let budget = by.duration_since(t0);
        assert!(
            budget > Duration::from_secs(17) && budget < Duration::from_millis(18_100),
            "{budget:?}"
        );
        // Less left than the margin, or already past: start nothing.
        assert!(start_by(ms(chrono::Duration::seconds(5)), now) <= Instant::now());
        assert!(start_by(ms(chrono::Duration::seconds(-5)), now) <= Instant::now());
    }

    #[tokio::test]
    async fn jobs_run_while_there_is_time() {
        let clock = Arc::new(ManualClock::new(Utc::now()));
        let (queue, jobs) = three_jobs(&clock).await;
        let dlq = MemoryQueue::new("dlq", clock.clone(), MemoryQueueSettings::default());
        let handler = Counting(AtomicUsize::new(0));
        let later = Some(Instant::now() + Duration::from_secs(3600));
        let failed = process_batch_until(&handler, &queue, &dlq, clock.now(), jobs, later).await;
        assert!(failed.is_empty());
        assert_eq!(handler.0.load(Ordering::SeqCst), 3);
    }
}
