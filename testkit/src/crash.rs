//! Killing a worker at a chosen step. Every port that reaches outside the process — table
//! writes ([`crate::store::FaultyStore`]), LiveChat and Graph calls (the fakes), queue operations
//! ([`TrippedQueue`]) — reports each call to one [`Tripwire`]. A first run lists the calls of a
//! path; then, for each position `k`, the tripwire is armed to crash right before or right after
//! call `k`: the call is (or is not) carried out, and the caller never gets past it — its future
//! hangs, and the test drops it, as a killed process drops everything it was doing.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use shared::queue::{OutgoingMessage, Queue, QueueError, ReceivedMessage};
use tokio::sync::watch;

/// Where the crash falls relative to the armed call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum When {
    /// The call never happens.
    Before,
    /// The call happens; its caller never learns the result.
    After,
}

#[derive(Default)]
struct State {
    log: Vec<String>,
    armed: Option<(usize, When)>,
}

/// Counts external calls and crashes the process at the armed one.
pub struct Tripwire {
    state: Mutex<State>,
    fired: watch::Sender<bool>,
}

impl Default for Tripwire {
    fn default() -> Self {
        Self {
            state: Mutex::default(),
            fired: watch::channel(false).0,
        }
    }
}

impl Tripwire {
    /// A tripwire that only records.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Crash at call `k` (1-based, counted from now).
    pub fn arm(&self, k: usize, when: When) {
        let mut s = self.state.lock().expect("tripwire lock");
        s.log.clear();
        s.armed = Some((k, when));
        self.fired.send_replace(false);
    }

    /// Stop crashing (the restarted process runs normally); the log starts afresh.
    pub fn disarm(&self) {
        let mut s = self.state.lock().expect("tripwire lock");
        s.armed = None;
        s.log.clear();
        self.fired.send_replace(false);
    }

    /// The calls seen since the last arm or disarm, in order.
    pub fn calls(&self) -> Vec<String> {
        self.state.lock().expect("tripwire lock").log.clone()
    }

    /// Reports one external call; `Some(when)` means the process dies at this call.
    pub fn step(&self, label: impl Into<String>) -> Option<When> {
        let mut s = self.state.lock().expect("tripwire lock");
        if *self.fired.borrow() {
            // Already dead: a call still racing in another task goes nowhere either.
            return Some(When::Before);
        }
        s.log.push(label.into());
        let n = s.log.len();
        match s.armed {
            Some((k, when)) if k == n => {
                self.fired.send_replace(true);
                Some(when)
            }
            _ => None,
        }
    }

    /// Whether the armed crash happened.
    pub fn has_fired(&self) -> bool {
        *self.fired.borrow()
    }

    /// Resolves when the armed crash happens.
    pub async fn crashed(&self) {
        let mut rx = self.fired.subscribe();
        let _ = rx.wait_for(|f| *f).await;
    }

    /// Runs `work` as a process that the armed crash kills: `None` if it was killed.
    pub async fn run<T>(&self, work: impl std::future::Future<Output = T>) -> Option<T> {
        tokio::select! {
            out = work => (!self.has_fired()).then_some(out),
            _ = self.crashed() => None,
        }
    }
}

/// How long a fake holds back the answer of a request a crash cut off: beyond any test.
pub const NEVER: Duration = Duration::from_secs(3600);

/// What a port does at a crash: nothing after it returns, ever.
pub async fn hang() -> ! {
    loop {
        tokio::time::sleep(Duration::from_secs(3600)).await;
    }
}

/// A queue whose operations report to a tripwire (receives are the event source's, not the
/// worker's, and are not counted).
pub struct TrippedQueue {
    inner: Arc<dyn Queue>,
    wire: Arc<Tripwire>,
    name: &'static str,
}

impl TrippedQueue {
    /// Wraps `inner`, labelling its calls with `name`.
    pub fn new(inner: Arc<dyn Queue>, wire: Arc<Tripwire>, name: &'static str) -> Self {
        Self { inner, wire, name }
    }

    async fn guard<T>(
        &self,
        op: &str,
        call: impl std::future::Future<Output = Result<T, QueueError>>,
    ) -> Result<T, QueueError> {
        match self.wire.step(format!("{} {op}", self.name)) {
            Some(When::Before) => hang().await,
            Some(When::After) => {
                let _ = call.await;
                hang().await
            }
            None => call.await,
        }
    }
}

#[async_trait]
impl Queue for TrippedQueue {
    async fn send(&self, messages: &[OutgoingMessage]) -> Result<(), QueueError> {
        self.guard("send", self.inner.send(messages)).await
    }
    async fn receive(&self, max: u8, wait: Duration) -> Result<Vec<ReceivedMessage>, QueueError> {
        self.inner.receive(max, wait).await
    }
    async fn delete(&self, receipt: &str) -> Result<(), QueueError> {
        self.guard("delete", self.inner.delete(receipt)).await
    }
    async fn retry_later(&self, receipt: &str, delay: Duration) -> Result<(), QueueError> {
        self.guard("retry_later", self.inner.retry_later(receipt, delay))
            .await
    }
    async fn depth(&self) -> Result<u64, QueueError> {
        self.inner.depth().await
    }
}
