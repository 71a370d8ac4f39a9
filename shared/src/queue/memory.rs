//! The in-memory FIFO queue: groups, deduplication window, visibility timeout, receive counts
//! and a dead-letter queue, behaving like SQS FIFO for one process.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use tokio::sync::Notify;

use super::{DEDUP_WINDOW, MAX_BATCH_BYTES, OutgoingMessage, Queue, QueueError, ReceivedMessage};
use crate::clock::Clock;

/// How the in-memory queue behaves (mirrors the SQS queue attributes in template.yaml).
#[derive(Clone)]
pub struct MemoryQueueSettings {
    /// How long a received message stays hidden.
    pub visibility_timeout: Duration,
    /// Receives after which a message moves to the dead-letter queue.
    pub max_receive_count: u32,
    /// Where messages go after too many receives; without one they stay.
    pub dead_letter: Option<Arc<MemoryQueue>>,
}

impl Default for MemoryQueueSettings {
    fn default() -> Self {
        Self {
            visibility_timeout: Duration::from_secs(
                crate::provision::VISIBILITY_TIMEOUT_SECS as u64,
            ),
            max_receive_count: crate::provision::MAX_RECEIVE_COUNT,
            dead_letter: None,
        }
    }
}

#[derive(Debug)]
struct Stored {
    id: String,
    group: String,
    dedup: String,
    body: String,
    receive_count: u32,
    invisible_until: Option<DateTime<Utc>>,
    receipt: Option<String>,
}

impl Stored {
    /// Delivers it once more: invisible until `until`, with a new receipt.
    fn receive(&mut self, until: DateTime<Utc>) -> ReceivedMessage {
        self.receive_count += 1;
        self.invisible_until = Some(until);
        let receipt = format!("{}#{}", self.id, self.receive_count);
        self.receipt = Some(receipt.clone());
        ReceivedMessage {
            message_id: self.id.clone(),
            receipt,
            body: self.body.clone(),
            group_id: self.group.clone(),
            dedup_id: self.dedup.clone(),
            receive_count: self.receive_count,
        }
    }
}

#[derive(Default)]
struct Inner {
    next_id: u64,
    messages: VecDeque<Stored>,
    seen: HashMap<String, DateTime<Utc>>,
    /// The same ids in the order they were first seen, so expired ones are forgotten from the
    /// front: a send costs what it adds, not what the queue already holds (a million queued
    /// jobs used to make each send scan them all).
    seen_order: VecDeque<(DateTime<Utc>, String)>,
}

/// A FIFO queue in memory.
pub struct MemoryQueue {
    name: String,
    clock: Arc<dyn Clock>,
    settings: MemoryQueueSettings,
    inner: Mutex<Inner>,
    arrived: Notify,
}

impl std::fmt::Debug for MemoryQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryQueue")
            .field("name", &self.name)
            .finish()
    }
}

impl MemoryQueue {
    /// A new empty queue.
    pub fn new(
        name: impl Into<String>,
        clock: Arc<dyn Clock>,
        settings: MemoryQueueSettings,
    ) -> Self {
        Self {
            name: name.into(),
            clock,
            settings,
            inner: Mutex::new(Inner::default()),
            arrived: Notify::new(),
        }
    }

    /// The queue's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    fn enqueue(&self, inner: &mut Inner, m: &OutgoingMessage, now: DateTime<Utc>) {
        let window = chrono::Duration::from_std(DEDUP_WINDOW).expect("window fits");
        while inner
            .seen_order
            .front()
            .is_some_and(|(at, _)| now - *at >= window)
        {
            let (at, id) = inner.seen_order.pop_front().expect("a front");
            if inner.seen.get(&id) == Some(&at) {
                inner.seen.remove(&id);
            }
        }
        // The age is checked here too: a clock set back leaves expired ids behind younger ones.
        if inner
            .seen
            .get(&m.dedup_id)
            .is_some_and(|at| now - *at < window)
        {
            return; // accepted, like SQS, but delivered only once
        }
        inner.seen.insert(m.dedup_id.clone(), now);
        inner.seen_order.push_back((now, m.dedup_id.clone()));
        inner.next_id += 1;
        let id = format!("{}-{:08}", self.name, inner.next_id);
        inner.messages.push_back(Stored {
            id,
            group: m.group_id.clone(),
            dedup: m.dedup_id.clone(),
            body: m.body.clone(),
            receive_count: 0,
            invisible_until: None,
            receipt: None,
        });
    }

    fn take(&self, max: usize) -> Vec<ReceivedMessage> {
        let now = self.clock.now();
        let visibility =
            chrono::Duration::from_std(self.settings.visibility_timeout).expect("timeout fits");
        let mut inner = self.inner.lock().expect("queue lock");
        let mut blocked: HashSet<String> = HashSet::new();
        let mut out = Vec::new();
        let mut dead = Vec::new();
        let mut i = 0;
        while i < inner.messages.len() && out.len() < max {
            let m = &mut inner.messages[i];
            let in_flight = m.invisible_until.is_some_and(|t| t > now);
            if in_flight {
                // A group with a message in flight delivers nothing after it (FIFO order).
                blocked.insert(m.group.clone());
                i += 1;
                continue;
            }
            if blocked.contains(&m.group) {
                i += 1;
                continue;
            }
            if m.receive_count >= self.settings.max_receive_count
                && self.settings.dead_letter.is_some()
            {
                let m = inner.messages.remove(i).expect("index in range");
                dead.push(OutgoingMessage {
                    group_id: m.group,
                    dedup_id: m.dedup,
                    body: m.body,
                });
                continue;
            }
            out.push(m.receive(now + visibility));
            i += 1;
        }
        drop(inner);
        self.move_to_dead_letter(&dead, now);
        out
    }

    /// What the queue itself moves to its dead-letter queue (`maxReceiveCount` reached).
    fn move_to_dead_letter(&self, dead: &[OutgoingMessage], now: DateTime<Utc>) {
        let Some(dlq) = &self.settings.dead_letter else {
            return;
        };
        if dead.is_empty() {
            return;
        }
        let mut d = dlq.inner.lock().expect("queue lock");
        for m in dead {
            // A dead letter keeps its ids but must not be deduplicated away.
            d.seen.remove(&m.dedup_id);
            dlq.enqueue(&mut d, m, now);
        }
        drop(d);
        dlq.arrived.notify_waiters();
    }
}

#[async_trait]
impl Queue for MemoryQueue {
    async fn send(&self, messages: &[OutgoingMessage]) -> Result<(), QueueError> {
        if let Some(big) = messages.iter().find(|m| m.body.len() > MAX_BATCH_BYTES) {
            return Err(QueueError::TooLarge(big.body.len()));
        }
        let now = self.clock.now();
        {
            let mut inner = self.inner.lock().expect("queue lock");
            for m in messages {
                self.enqueue(&mut inner, m, now);
            }
        }
        self.arrived.notify_waiters();
        Ok(())
    }

    async fn receive(&self, max: u8, wait: Duration) -> Result<Vec<ReceivedMessage>, QueueError> {
        let max = usize::from(max.clamp(1, 10));
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let got = self.take(max);
            if !got.is_empty() || tokio::time::Instant::now() >= deadline {
                return Ok(got);
            }
            // Wake on a new message, or re-check soon for visibility timeouts expiring.
            let nap = (deadline - tokio::time::Instant::now()).min(Duration::from_millis(50));
            let _ = tokio::time::timeout(nap, self.arrived.notified()).await;
        }
    }

    async fn delete(&self, receipt: &str) -> Result<(), QueueError> {
        let mut inner = self.inner.lock().expect("queue lock");
        inner
            .messages
            .retain(|m| m.receipt.as_deref() != Some(receipt));
        Ok(())
    }

    async fn retry_later(&self, receipt: &str, delay: Duration) -> Result<(), QueueError> {
        let now = self.clock.now();
        let mut inner = self.inner.lock().expect("queue lock");
        let m = inner
            .messages
            .iter_mut()
            .find(|m| m.receipt.as_deref() == Some(receipt))
            .ok_or_else(|| QueueError::Backend {
                message: "receipt is no longer valid".into(),
            })?;
        m.invisible_until =
            Some(now + chrono::Duration::from_std(delay).unwrap_or(chrono::Duration::zero()));
        drop(inner);
        self.arrived.notify_waiters();
        Ok(())
    }

    async fn depth(&self) -> Result<u64, QueueError> {
        Ok(self.inner.lock().expect("queue lock").messages.len() as u64)
    }
}
