//! A store wrapper for fault tests: counts every write and lets a test fail (or "crash") any
//! call it chooses, before or after the inner store applied it. One wrapper for the whole repo.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use shared::store::{
    Condition, Item, Key, MemoryStore, Page, PageRequest, SkRange, Store, StoreError, TransactWrite,
};

/// What a call does, as the fault hook sees it.
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    /// A put of an item of this kind (`kind` attribute, if any).
    Put(Option<String>),
    /// A read.
    Get,
    /// A delete.
    Delete,
    /// A query of a partition or of the organization index.
    Query,
    /// An expiry change.
    SetExpiry,
    /// A batch delete of this many keys.
    DeleteMany(usize),
    /// A batch read of this many keys.
    GetMany(usize),
    /// A batch put of this many items.
    PutMany(usize),
    /// A transaction of this many writes and checks.
    Transact(usize),
}

impl Op {
    /// Whether the call writes.
    pub fn is_write(&self) -> bool {
        !matches!(self, Op::Get | Op::Query | Op::GetMany(_))
    }
}

/// When the injected failure happens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultAt {
    /// The call fails without effect.
    Before,
    /// The call takes effect, then the caller sees a failure (a lost answer or a crash).
    After,
    /// No failure: the call takes this long before it starts (a slow backend).
    Slow(std::time::Duration),
}

type Hook = Box<dyn FnMut(&Op) -> Option<FaultAt> + Send>;

/// The wrapper.
pub struct FaultyStore {
    inner: Box<dyn Store>,
    writes: AtomicUsize,
    calls: AtomicUsize,
    hook: Mutex<Option<Hook>>,
    wire: Mutex<Option<Arc<crate::crash::Tripwire>>>,
}

impl Default for FaultyStore {
    fn default() -> Self {
        Self::over(Box::new(MemoryStore::new()))
    }
}

impl FaultyStore {
    /// Wraps a store.
    pub fn over(inner: Box<dyn Store>) -> Self {
        Self {
            inner,
            writes: AtomicUsize::new(0),
            calls: AtomicUsize::new(0),
            hook: Mutex::new(None),
            wire: Mutex::new(None),
        }
    }

    /// Writes so far (puts, deletes, expiry changes, batch deletes and puts).
    pub fn writes(&self) -> usize {
        self.writes.load(Ordering::SeqCst)
    }

    /// Calls so far, reads included.
    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    /// Sets the counters back to zero.
    pub fn reset_counts(&self) {
        self.writes.store(0, Ordering::SeqCst);
        self.calls.store(0, Ordering::SeqCst);
    }

    /// Installs the fault hook: it sees each call and says whether (and when) it fails.
    pub fn fail_when(&self, hook: impl FnMut(&Op) -> Option<FaultAt> + Send + 'static) {
        *self.hook.lock().expect("hook lock") = Some(Box::new(hook));
    }

    /// Fails the `n`-th call (0-based, counted from now) `at` the given moment, once.
    pub fn fail_call(&self, n: usize, at: FaultAt) {
        let mut seen = 0;
        self.fail_when(move |_| {
            seen += 1;
            (seen == n + 1).then_some(at)
        });
    }

    /// Reports every write to `wire`, which may crash the caller at it
    /// ([`crate::crash::Tripwire`]). Reads are not counted: a crash after a read is the crash
    /// before the next write.
    pub fn trip(&self, wire: Arc<crate::crash::Tripwire>) {
        *self.wire.lock().expect("wire lock") = Some(wire);
    }

    /// Removes the hook.
    pub fn heal(&self) {
        *self.hook.lock().expect("hook lock") = None;
    }

    fn fault(&self, op: &Op) -> Option<FaultAt> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if op.is_write() {
            self.writes.fetch_add(1, Ordering::SeqCst);
        }
        self.hook
            .lock()
            .expect("hook lock")
            .as_mut()
            .and_then(|h| h(op))
    }

    async fn run<T>(
        &self,
        op: Op,
        call: impl std::future::Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        let wire = self.wire.lock().expect("wire lock").clone();
        let crash = match &wire {
            Some(w) if op.is_write() => w.step(format!("table {op:?}")),
            _ => None,
        };
        match crash {
            Some(crate::crash::When::Before) => crate::crash::hang().await,
            Some(crate::crash::When::After) => {
                let _ = call.await;
                crate::crash::hang().await
            }
            None => {}
        }
        let fault = self.fault(&op);
        if let Some(FaultAt::Slow(delay)) = fault {
            tokio::time::sleep(delay).await;
        }
        if fault == Some(FaultAt::Before) {
            return Err(injected());
        }
        let out = call.await;
        if fault == Some(FaultAt::After) {
            return Err(injected());
        }
        out
    }
}

fn injected() -> StoreError {
    StoreError::Backend {
        message: "injected fault: connection reset".into(),
        transient: true,
    }
}

#[async_trait]
impl Store for FaultyStore {
    async fn put(&self, item: Item, c: Condition) -> Result<(), StoreError> {
        let op = Op::Put(item.str("kind").map(str::to_string));
        self.run(op, self.inner.put(item, c)).await
    }
    async fn get(&self, k: &Key) -> Result<Option<Item>, StoreError> {
        self.run(Op::Get, self.inner.get(k)).await
    }
    async fn delete(&self, k: &Key, c: Condition) -> Result<Option<Item>, StoreError> {
        self.run(Op::Delete, self.inner.delete(k, c)).await
    }
    async fn query(&self, pk: &str, r: &SkRange, p: PageRequest) -> Result<Page<Item>, StoreError> {
        self.run(Op::Query, self.inner.query(pk, r, p)).await
    }
    async fn query_organization(&self, o: &str, p: PageRequest) -> Result<Page<Key>, StoreError> {
        self.run(Op::Query, self.inner.query_organization(o, p))
            .await
    }
    async fn set_expiry(&self, k: &Key, e: i64) -> Result<bool, StoreError> {
        self.run(Op::SetExpiry, self.inner.set_expiry(k, e)).await
    }
    async fn delete_many(&self, k: &[Key]) -> Result<(), StoreError> {
        self.run(Op::DeleteMany(k.len()), self.inner.delete_many(k))
            .await
    }
    async fn get_many(&self, k: &[Key]) -> Result<Vec<Item>, StoreError> {
        self.run(Op::GetMany(k.len()), self.inner.get_many(k)).await
    }
    async fn put_many(&self, i: Vec<Item>) -> Result<(), StoreError> {
        self.run(Op::PutMany(i.len()), self.inner.put_many(i)).await
    }
    async fn transact(&self, w: Vec<TransactWrite>) -> Result<(), StoreError> {
        self.run(Op::Transact(w.len()), self.inner.transact(w))
            .await
    }
}

/// A store that notes every table call as IAM sees it — the action and the partition key its
/// `dynamodb:LeadingKeys` condition compares — while recording is on: to check that a
/// function's calls are all ones its role allows (`lambda::template::table_call_allowed`).
pub struct RecordingStore {
    inner: Arc<dyn Store>,
    on: std::sync::atomic::AtomicBool,
    seen: Mutex<std::collections::BTreeSet<(String, String)>>,
}

impl RecordingStore {
    /// Records the calls to `inner` (off until [`RecordingStore::record`]).
    pub fn new(inner: Arc<dyn Store>) -> Self {
        Self {
            inner,
            on: false.into(),
            seen: Mutex::default(),
        }
    }

    /// Turns recording on or off.
    pub fn record(&self, on: bool) {
        self.on.store(on, Ordering::SeqCst);
    }

    /// Every (action, partition) recorded.
    pub fn seen(&self) -> Vec<(String, String)> {
        self.seen
            .lock()
            .expect("seen lock")
            .iter()
            .cloned()
            .collect()
    }

    /// Every (action, partition) recorded, forgotten afterwards.
    pub fn take(&self) -> Vec<(String, String)> {
        std::mem::take(&mut *self.seen.lock().expect("seen lock"))
            .into_iter()
            .collect()
    }

    fn note<'a>(&self, action: &str, pks: impl IntoIterator<Item = &'a str>) {
        if self.on.load(Ordering::SeqCst) {
            let mut seen = self.seen.lock().expect("seen lock");
            for pk in pks {
                seen.insert((format!("dynamodb:{action}"), pk.to_string()));
            }
        }
    }
}

#[async_trait]
impl Store for RecordingStore {
    async fn put(&self, item: Item, c: Condition) -> Result<(), StoreError> {
        self.note("PutItem", [item.key().pk.as_str()]);
        self.inner.put(item, c).await
    }
    async fn get(&self, k: &Key) -> Result<Option<Item>, StoreError> {
        self.note("GetItem", [k.pk.as_str()]);
        self.inner.get(k).await
    }
    async fn delete(&self, k: &Key, c: Condition) -> Result<Option<Item>, StoreError> {
        self.note("DeleteItem", [k.pk.as_str()]);
        self.inner.delete(k, c).await
    }
    async fn query(&self, pk: &str, r: &SkRange, p: PageRequest) -> Result<Page<Item>, StoreError> {
        self.note("Query", [pk]);
        self.inner.query(pk, r, p).await
    }
    async fn query_organization(&self, o: &str, p: PageRequest) -> Result<Page<Key>, StoreError> {
        self.note("Query(index)", [o]);
        self.inner.query_organization(o, p).await
    }
    async fn set_expiry(&self, k: &Key, e: i64) -> Result<bool, StoreError> {
        self.note("UpdateItem", [k.pk.as_str()]);
        self.inner.set_expiry(k, e).await
    }
    async fn delete_many(&self, k: &[Key]) -> Result<(), StoreError> {
        self.note("BatchWriteItem", k.iter().map(|k| k.pk.as_str()));
        self.inner.delete_many(k).await
    }
    async fn get_many(&self, k: &[Key]) -> Result<Vec<Item>, StoreError> {
        self.note("BatchGetItem", k.iter().map(|k| k.pk.as_str()));
        self.inner.get_many(k).await
    }
    async fn put_many(&self, i: Vec<Item>) -> Result<(), StoreError> {
        let keys: Vec<Key> = i.iter().map(Item::key).collect();
        self.note("BatchWriteItem", keys.iter().map(|k| k.pk.as_str()));
        self.inner.put_many(i).await
    }
    async fn transact(&self, w: Vec<TransactWrite>) -> Result<(), StoreError> {
        for write in &w {
            let action = match write {
                TransactWrite::Put { .. } => "PutItem",
                TransactWrite::Check { .. } => "ConditionCheckItem",
            };
            self.note(action, [write.key().pk.as_str()]);
        }
        self.inner.transact(w).await
    }
}
