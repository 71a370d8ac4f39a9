//! The queue port: FIFO queues with message groups and deduplication ids. SQS FIFO in AWS, an
//! in-memory twin with the same semantics locally and in tests.

mod memory;
#[cfg(feature = "sqs")]
mod sqs;

use std::time::Duration;

use async_trait::async_trait;
use sha2::{Digest, Sha256};

pub use memory::{MemoryQueue, MemoryQueueSettings};
#[cfg(feature = "sqs")]
pub use sqs::SqsQueue;

/// How long SQS FIFO remembers a deduplication id.
pub const DEDUP_WINDOW: Duration = Duration::from_secs(300);
/// SQS's limit on entries per SendMessageBatch.
pub const BATCH_MAX: usize = 10;
/// Largest message (and batch payload) this app sends; SQS accepts 256 KiB everywhere.
pub const MAX_BATCH_BYTES: usize = 256 * 1024;
/// SQS's limit on group and deduplication id length.
const ID_MAX: usize = 128;

/// A message to enqueue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutgoingMessage {
    /// Messages of one group are delivered in order, one batch at a time.
    pub group_id: String,
    /// Messages with the same id within [`DEDUP_WINDOW`] are delivered once.
    pub dedup_id: String,
    /// The body (a job envelope as JSON).
    pub body: String,
}

impl OutgoingMessage {
    /// A message whose group and dedup ids are made safe for SQS from natural ids.
    pub fn new(group: &str, natural_id: &str, body: String) -> Self {
        Self {
            group_id: queue_id(group),
            dedup_id: queue_id(natural_id),
            body,
        }
    }
}

/// Makes an SQS-safe group or deduplication id: kept as is when it is at most 128 printable
/// ASCII characters, otherwise the SHA-256 of it (Meta mids are often longer than 128).
pub fn queue_id(natural: &str) -> String {
    let safe = !natural.is_empty()
        && natural.len() <= ID_MAX
        && natural.bytes().all(|b| b.is_ascii_graphic());
    if safe {
        natural.to_string()
    } else {
        format!("sha256:{}", hex::encode(Sha256::digest(natural.as_bytes())))
    }
}

/// A received message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedMessage {
    /// The queue's message id.
    pub message_id: String,
    /// Handle for delete and visibility changes.
    pub receipt: String,
    /// The body.
    pub body: String,
    /// The message group.
    pub group_id: String,
    /// The deduplication id it was sent with.
    pub dedup_id: String,
    /// How many times it has been received, this time included.
    pub receive_count: u32,
}

/// What went wrong with the queue.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// A message is larger than the queue accepts.
    #[error("message of {0} bytes exceeds the queue limit")]
    TooLarge(usize),
    /// Some entries of a batch were refused even after retries.
    #[error("{failed} of {total} messages were not enqueued: {reason}")]
    Rejected {
        /// How many failed.
        failed: usize,
        /// How many were sent.
        total: usize,
        /// Log-safe reason.
        reason: String,
    },
    /// The backend failed.
    #[error("queue backend: {message}")]
    Backend {
        /// Log-safe description.
        message: String,
    },
}

/// The queue port; one value per queue.
#[async_trait]
pub trait Queue: Send + Sync {
    /// Enqueues every message, in order, batching as the backend needs. Either all are
    /// accepted or an error says how many were not (the caller answers 5xx and is retried;
    /// deduplication ids make the retry safe).
    async fn send(&self, messages: &[OutgoingMessage]) -> Result<(), QueueError>;
    /// Receives up to `max` (1–10) messages, waiting up to `wait` for the first.
    async fn receive(&self, max: u8, wait: Duration) -> Result<Vec<ReceivedMessage>, QueueError>;
    /// Deletes a processed message.
    async fn delete(&self, receipt: &str) -> Result<(), QueueError>;
    /// Makes a received message visible again after `delay` (retry later).
    async fn retry_later(&self, receipt: &str, delay: Duration) -> Result<(), QueueError>;
    /// Approximate number of messages waiting (visible and in flight).
    async fn depth(&self) -> Result<u64, QueueError>;
}

/// A queue a function does not use (see [`crate::function::Function::needs`]): every call fails,
/// naming the queue, instead of the function holding a client and a URL it has no use for.
#[derive(Debug, Clone, Copy)]
pub struct Unwired(pub &'static str);

impl Unwired {
    fn error(&self) -> QueueError {
        QueueError::Backend {
            message: format!("{} is not wired into this function", self.0),
        }
    }
}

#[async_trait]
impl Queue for Unwired {
    async fn send(&self, _: &[OutgoingMessage]) -> Result<(), QueueError> {
        Err(self.error())
    }
    async fn receive(&self, _: u8, _: Duration) -> Result<Vec<ReceivedMessage>, QueueError> {
        Err(self.error())
    }
    async fn delete(&self, _: &str) -> Result<(), QueueError> {
        Err(self.error())
    }
    async fn retry_later(&self, _: &str, _: Duration) -> Result<(), QueueError> {
        Err(self.error())
    }
    async fn depth(&self) -> Result<u64, QueueError> {
        Err(self.error())
    }
}

/// Splits messages into SQS-sized batches (≤ 10 entries, ≤ 256 KiB), keeping their order.
pub fn batches(messages: &[OutgoingMessage]) -> Result<Vec<&[OutgoingMessage]>, QueueError> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut bytes = 0;
    for (i, m) in messages.iter().enumerate() {
        let size = m.body.len();
        if size > MAX_BATCH_BYTES {
            return Err(QueueError::TooLarge(size));
        }
        if i - start == BATCH_MAX || bytes + size > MAX_BATCH_BYTES {
            out.push(&messages[start..i]);
            start = i;
            bytes = 0;
        }
        bytes += size;
    }
    if start < messages.len() {
        out.push(&messages[start..]);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(n: usize, size: usize) -> OutgoingMessage {
        OutgoingMessage::new("g", &format!("d{n}"), "x".repeat(size))
    }

    #[test]
    fn long_or_odd_ids_are_hashed_short_ones_kept() {
        assert_eq!(
            queue_id("17841400000000001:IGSID_1001"),
            "17841400000000001:IGSID_1001"
        );
        let long = "aWdfZAG1faXRlbToxOklHTWVzc2FnZA".repeat(6);
        let h = queue_id(&long);
        assert!(h.starts_with("sha256:") && h.len() <= ID_MAX);
        assert_eq!(h, queue_id(&long));
        assert!(queue_id("with space").starts_with("sha256:"));
        assert!(queue_id("").starts_with("sha256:"));
    }

    #[test]
    fn batches_respect_count_and_bytes_in_order() {
        let many: Vec<_> = (0..25).map(|n| msg(n, 10)).collect();
        let b = batches(&many).unwrap();
        assert_eq!(
            b.iter().map(|b| b.len()).collect::<Vec<_>>(),
            vec![10, 10, 5]
        );
        let big: Vec<_> = (0..3).map(|n| msg(n, 100 * 1024)).collect();
        let b = batches(&big).unwrap();
        assert_eq!(b.iter().map(|b| b.len()).collect::<Vec<_>>(), vec![2, 1]);
        assert_eq!(b[1][0].dedup_id, "d2");
        assert!(matches!(
            batches(&[msg(0, MAX_BATCH_BYTES + 1)]),
            Err(QueueError::TooLarge(_))
        ));
        assert!(batches(&[]).unwrap().is_empty());
    }
}
