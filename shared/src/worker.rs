//! Running queue workers: a batch of queued jobs in, the ids that failed out, with SQS FIFO
//! semantics (a failure holds back the rest of its message group). The Lambda adapter turns an
//! `SqsEvent` into a batch and the failures into an `SqsBatchResponse`; the local server feeds
//! the same function from the in-memory queue.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent};
use chrono::{DateTime, Utc};
use futures_util::future::join_all;

use crate::jobs::{Envelope, Job, Parked, Source, UnparsedJob};
use crate::queue::{OutgoingMessage, Queue, ReceivedMessage};
use crate::retry::RetryPolicy;

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

/// What became of one job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Its effect happened.
    Done,
    /// Nothing to do (duplicate, own echo, unknown account); the reason is logged.
    Skipped(&'static str),
    /// A transient failure: retry after the delay (or the policy's, if none).
    Retry {
        /// Log-safe reason.
        reason: String,
        /// Explicit delay, e.g. a short wait for an echo race.
        after: Option<Duration>,
    },
    /// A permanent failure: park in the dead-letter queue with the reason, for a human.
    Park(String),
}

/// Handles one decoded job.
#[async_trait]
pub trait JobHandler: Send + Sync {
    /// Which webhook source this worker consumes (labels parked bodies).
    fn source(&self) -> Source;
    /// Processes one envelope.
    async fn handle(&self, envelope: &Envelope, receive_count: u32) -> Outcome;
}

/// Runs a batch; returns the message ids to report as failed.
pub async fn process_batch(
    handler: &dyn JobHandler,
    queue: &dyn Queue,
    dead_letter: &dyn Queue,
    now: DateTime<Utc>,
    jobs: Vec<QueuedJob>,
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
        run_group(handler, queue, dead_letter, now, jobs)
    });
    join_all(runs).await.into_iter().flatten().collect()
}

async fn run_group(
    handler: &dyn JobHandler,
    queue: &dyn Queue,
    dead_letter: &dyn Queue,
    now: DateTime<Utc>,
    jobs: Vec<QueuedJob>,
) -> Vec<String> {
    let mut failed = Vec::new();
    let mut blocked = false;
    for job in jobs {
        if blocked {
            // FIFO: nothing after a failure in the same group may run before it.
            failed.push(job.message_id);
            continue;
        }
        let outcome = match Envelope::decode(&job.body) {
            Ok(env) => handler.handle(&env, job.receive_count).await,
            Err(e) => Outcome::Park(e.to_string()),
        };
        match outcome {
            Outcome::Done => {}
            Outcome::Skipped(why) => {
                tracing::info!(message_id = %job.message_id, skipped = why, "job skipped")
            }
            Outcome::Retry { reason, after } => {
                let delay =
                    after.unwrap_or_else(|| RetryPolicy::REDELIVERY.delay(job.receive_count));
                tracing::warn!(message_id = %job.message_id, %reason, delay_s = delay.as_secs(), "job will be retried");
                if let Err(e) = queue.retry_later(&job.receipt, delay).await {
                    tracing::warn!(error = %e, "could not set the retry delay; the queue's timeout applies");
                }
                failed.push(job.message_id);
                blocked = true;
            }
            Outcome::Park(reason) => {
                tracing::error!(message_id = %job.message_id, %reason, "job parked in the dead-letter queue");
                let parked = park_message(handler.source(), &job, &reason, now);
                if let Err(e) = dead_letter.send(&[parked]).await {
                    tracing::error!(error = %e, "could not park the job; it stays queued");
                    failed.push(job.message_id);
                    blocked = true;
                }
            }
        }
    }
    failed
}

/// The dead-letter copy of a job: its envelope with the reason, or the raw body wrapped as an
/// unparsed job when it is not an envelope.
pub fn park_message(
    source: Source,
    job: &QueuedJob,
    reason: &str,
    now: DateTime<Utc>,
) -> OutgoingMessage {
    let mut env = Envelope::decode(&job.body).unwrap_or_else(|_| {
        Envelope::new(
            Job::Unparsed(UnparsedJob {
                source,
                reason: "queue body is not a job envelope".into(),
                raw_body: job.body.clone(),
                part: None,
            }),
            now,
        )
    });
    env.parked = Some(Parked {
        reason: reason.to_string(),
        at: now,
        message_id: job.message_id.clone(),
    });
    let mut msg = env.to_message();
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
    let failed = process_batch(handler, queue, dead_letter, now, jobs).await;
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
