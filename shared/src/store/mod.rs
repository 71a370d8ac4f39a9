//! The store port: one single-table key/value store with conditional writes, an index on the
//! organization, and TTL on `expires_at`. DynamoDB in AWS, an in-memory map locally and in tests.
//!
//! The port is deliberately small (put, get, delete, query, set_expiry, delete_many) so both
//! adapters can honour it exactly; typed records sit on top in [`Repo`].

mod dynamo;
pub mod keys;
mod memory;

use std::sync::Arc;

use async_trait::async_trait;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

pub use dynamo::DynamoStore;
pub use memory::MemoryStore;

/// Partition key attribute.
pub const PK: &str = "pk";
/// Sort key attribute.
pub const SK: &str = "sk";
/// Item kind attribute (which record type an item holds).
pub const KIND: &str = "kind";
/// The organization attribute; the organization index is keyed on it.
pub const ORGANIZATION: &str = "organization_id";
/// The TTL attribute, epoch seconds.
pub const EXPIRES_AT: &str = "expires_at";
/// Name of the index that finds every item of an organization.
pub const ORGANIZATION_INDEX: &str = "by-organization";
/// The version attribute of versioned records.
pub const VERSION: &str = "version";

/// A table key.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Key {
    /// Partition key.
    pub pk: String,
    /// Sort key.
    pub sk: String,
}

impl Key {
    /// A key from its two parts.
    pub fn new(pk: impl Into<String>, sk: impl Into<String>) -> Self {
        Self {
            pk: pk.into(),
            sk: sk.into(),
        }
    }
}

/// One stored item: a JSON object holding at least `pk` and `sk` as strings.
#[derive(Debug, Clone, PartialEq)]
pub struct Item(Map<String, Value>);

impl Item {
    /// Wraps an object, checking that it has string `pk` and `sk` and that its top level has no
    /// nulls (DynamoDB index keys cannot be NULL, so absent values are simply left out).
    pub fn new(mut attrs: Map<String, Value>) -> Result<Self, StoreError> {
        attrs.retain(|_, v| !v.is_null());
        for name in [PK, SK] {
            match attrs.get(name) {
                Some(Value::String(s)) if !s.is_empty() => {}
                _ => return Err(StoreError::Invalid(format!("item needs a string {name}"))),
            }
        }
        if let Some(v) = attrs.get(EXPIRES_AT) {
            if !v.is_i64() {
                return Err(StoreError::Invalid(format!(
                    "{EXPIRES_AT} must be whole epoch seconds"
                )));
            }
        }
        if let Some(v) = attrs.get(ORGANIZATION) {
            if !matches!(v, Value::String(s) if !s.is_empty()) {
                return Err(StoreError::Invalid(format!(
                    "{ORGANIZATION} must be a non-empty string"
                )));
            }
        }
        Ok(Self(attrs))
    }

    /// The item's key.
    pub fn key(&self) -> Key {
        Key::new(
            self.str(PK).unwrap_or_default(),
            self.str(SK).unwrap_or_default(),
        )
    }

    /// A string attribute.
    pub fn str(&self, name: &str) -> Option<&str> {
        self.0.get(name).and_then(Value::as_str)
    }

    /// Any attribute.
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.0.get(name)
    }

    /// The TTL, if set.
    pub fn expires_at(&self) -> Option<i64> {
        self.0.get(EXPIRES_AT).and_then(Value::as_i64)
    }

    /// The attributes.
    pub fn attributes(&self) -> &Map<String, Value> {
        &self.0
    }

    /// Consumes the item into its attributes.
    pub fn into_attributes(self) -> Map<String, Value> {
        self.0
    }
}

/// The condition a write or delete must meet.
#[derive(Debug, Clone, PartialEq)]
pub enum Condition {
    /// Unconditional.
    Always,
    /// Only if no item has this key (claim, create-once).
    IfAbsent,
    /// Only if an item has this key.
    IfPresent,
    /// Only if the existing item's `version` is this one (a missing `version` counts as 0):
    /// optimistic concurrency for versioned records. A missing item fails.
    IfVersion(u64),
    /// Only if the existing item's attribute equals the value (optimistic concurrency).
    IfEquals {
        /// The attribute compared.
        attribute: String,
        /// The value it must hold.
        value: Value,
    },
    /// Only if the existing item's attribute equals one of the values.
    IfOneOf {
        /// The attribute compared.
        attribute: String,
        /// The values it may hold (at most 100, as DynamoDB's `IN`).
        values: Vec<Value>,
    },
}

/// One write of a transaction ([`Store::transact`]).
#[derive(Debug, Clone, PartialEq)]
pub enum TransactWrite {
    /// Writes the whole item if the condition holds.
    Put {
        /// The item.
        item: Item,
        /// Its condition.
        condition: Condition,
    },
    /// Writes nothing; the item at `key` must meet the condition (a fence on another record:
    /// "only while the installation is still uninstalled").
    Check {
        /// The item checked.
        key: Key,
        /// What it must meet.
        condition: Condition,
    },
}

impl TransactWrite {
    /// The key it writes or checks.
    pub fn key(&self) -> Key {
        match self {
            TransactWrite::Put { item, .. } => item.key(),
            TransactWrite::Check { key, .. } => key.clone(),
        }
    }
}

/// The most writes one transaction takes (DynamoDB's TransactWriteItems).
pub const TRANSACT_MAX: usize = 100;

/// The sort-key range of a query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SkRange {
    /// Every sort key of the partition.
    All,
    /// Sort keys starting with the prefix.
    Prefix(String),
    /// Sort keys between the bounds, inclusive.
    Between(String, String),
}

/// Paging of a query: how many at most and where to resume.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PageRequest {
    /// At most this many items (the store may return fewer).
    pub limit: Option<u32>,
    /// Where the previous page stopped.
    pub cursor: Option<Cursor>,
}

/// An opaque position in a query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor(pub String);

impl Cursor {
    /// Encodes a key object as an opaque cursor.
    pub(crate) fn from_attrs(attrs: &Map<String, Value>) -> Self {
        Cursor(URL_SAFE_NO_PAD.encode(Value::Object(attrs.clone()).to_string()))
    }

    /// Decodes a cursor back into its key object.
    pub(crate) fn to_attrs(&self) -> Result<Map<String, Value>, StoreError> {
        let bytes = URL_SAFE_NO_PAD
            .decode(&self.0)
            .map_err(|_| StoreError::Invalid("bad cursor".into()))?;
        match serde_json::from_slice(&bytes) {
            Ok(Value::Object(m)) => Ok(m),
            _ => Err(StoreError::Invalid("bad cursor".into())),
        }
    }
}

/// One page of results.
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    /// The results, in sort-key order.
    pub items: Vec<T>,
    /// Set when more results may follow.
    pub next: Option<Cursor>,
}

/// What went wrong in the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The write's condition was not met.
    #[error("condition not met")]
    ConditionFailed,
    /// The request was malformed (a bug, not a transient state).
    #[error("invalid store request: {0}")]
    Invalid(String),
    /// An item could not be converted to or from its record type.
    #[error("record codec: {0}")]
    Codec(String),
    /// The backend failed; `transient` says whether a retry may succeed.
    #[error("store backend: {message}")]
    Backend {
        /// Log-safe description.
        message: String,
        /// Throttling, 5xx or transport failure.
        transient: bool,
    },
}

impl StoreError {
    /// Whether retrying later may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            StoreError::Backend {
                transient: true,
                ..
            }
        )
    }
}

/// The store port.
#[async_trait]
pub trait Store: Send + Sync {
    /// Writes the whole item if the condition holds.
    async fn put(&self, item: Item, condition: Condition) -> Result<(), StoreError>;
    /// Reads an item (strongly consistent).
    async fn get(&self, key: &Key) -> Result<Option<Item>, StoreError>;
    /// Deletes an item if the condition holds, returning what was there.
    async fn delete(&self, key: &Key, condition: Condition) -> Result<Option<Item>, StoreError>;
    /// Items of one partition within a sort-key range, in sort-key order.
    async fn query(
        &self,
        pk: &str,
        range: &SkRange,
        page: PageRequest,
    ) -> Result<Page<Item>, StoreError>;
    /// Keys of every item carrying this organization id (the organization index).
    async fn query_organization(
        &self,
        organization_id: &str,
        page: PageRequest,
    ) -> Result<Page<Key>, StoreError>;
    /// Sets `expires_at` on an existing item; false if there is none.
    async fn set_expiry(&self, key: &Key, expires_at: i64) -> Result<bool, StoreError>;
    /// Deletes many items (any number; batched by the adapter). Missing keys are ignored.
    async fn delete_many(&self, keys: &[Key]) -> Result<(), StoreError>;
    /// Reads many items (any number; batched by the adapter, strongly consistent). Missing keys
    /// are left out; the order is not kept.
    async fn get_many(&self, keys: &[Key]) -> Result<Vec<Item>, StoreError>;
    /// Writes many whole items unconditionally (any number; batched by the adapter).
    async fn put_many(&self, items: Vec<Item>) -> Result<(), StoreError>;
    /// All or nothing: every condition holds and every put is written, or nothing is written and
    /// the answer is `ConditionFailed`. At most [`TRANSACT_MAX`] writes, no two on one key
    /// (`Invalid` otherwise). A conflict with another transaction is a transient `Backend`
    /// error. Costs twice a plain write: for the rare writes that must be fenced.
    async fn transact(&self, writes: Vec<TransactWrite>) -> Result<(), StoreError>;
}

/// Refuses a transaction DynamoDB would refuse: empty, too many writes, or two on one key.
pub(crate) fn check_transaction(writes: &[TransactWrite]) -> Result<(), StoreError> {
    if writes.is_empty() || writes.len() > TRANSACT_MAX {
        return Err(StoreError::Invalid(format!(
            "a transaction takes 1 to {TRANSACT_MAX} writes, not {}",
            writes.len()
        )));
    }
    let mut keys = std::collections::HashSet::new();
    if !writes.iter().all(|w| keys.insert(w.key())) {
        return Err(StoreError::Invalid(
            "two writes of one transaction on the same item".into(),
        ));
    }
    Ok(())
}

/// A typed record stored as one item.
pub trait Record: Serialize + DeserializeOwned {
    /// The value of the item's `kind` attribute.
    const KIND: &'static str;
    /// Where the record lives.
    fn key(&self) -> Key;
}

/// A record whose writes are conditional on the version they read (no lost updates).
pub trait Versioned: Record {
    /// The version read (0 for a record never written with one).
    fn version(&self) -> u64;
    /// Sets the version.
    fn set_version(&mut self, version: u64);
}

/// How often a versioned update re-reads and re-applies its change after losing a race.
pub const MAX_CONFLICT_RETRIES: usize = 8;

/// Typed access to the store: records in, records out.
#[derive(Clone)]
pub struct Repo {
    store: Arc<dyn Store>,
}

impl Repo {
    /// Wraps a store adapter.
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self { store }
    }

    /// The underlying store: for the purge (which works on every kind at once, through the
    /// organization index) and for tests. Everything else goes through the typed methods.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// Converts a record into its item (`pk`, `sk`, `kind` added; absent values left out).
    pub fn to_item<R: Record>(record: &R) -> Result<Item, StoreError> {
        let key = record.key();
        let Value::Object(mut attrs) =
            serde_json::to_value(record).map_err(|e| StoreError::Codec(e.to_string()))?
        else {
            return Err(StoreError::Codec(format!("{} is not an object", R::KIND)));
        };
        attrs.insert(PK.into(), Value::String(key.pk));
        attrs.insert(SK.into(), Value::String(key.sk));
        attrs.insert(KIND.into(), Value::String(R::KIND.into()));
        Item::new(attrs)
    }

    /// Converts an item back into a record, checking its kind.
    pub fn from_item<R: Record>(item: Item) -> Result<R, StoreError> {
        match item.str(KIND) {
            Some(kind) if kind == R::KIND => {}
            other => {
                return Err(StoreError::Codec(format!(
                    "expected a {} item, found {:?}",
                    R::KIND,
                    other
                )));
            }
        }
        serde_json::from_value(Value::Object(item.into_attributes()))
            .map_err(|e| StoreError::Codec(format!("{}: {e}", R::KIND)))
    }

    /// Writes a record if the condition holds.
    pub async fn put<R: Record>(&self, record: &R, condition: Condition) -> Result<(), StoreError> {
        self.store.put(Self::to_item(record)?, condition).await
    }

    /// Creates a versioned record at version 1 if none exists (`ConditionFailed` otherwise).
    pub async fn create<R: Versioned>(&self, record: &mut R) -> Result<(), StoreError> {
        record.set_version(1);
        self.put(record, Condition::IfAbsent).await
    }

    /// Writes a versioned record if it still holds the version it was read at, bumping it.
    /// `ConditionFailed` when another writer came first (or the record is gone).
    pub async fn save<R: Versioned>(&self, record: &mut R) -> Result<(), StoreError> {
        let read = record.version();
        record.set_version(read + 1);
        let out = self.put(record, Condition::IfVersion(read)).await;
        if out.is_err() {
            record.set_version(read);
        }
        out
    }

    /// [`Repo::save`] together with `others` (items written whole, unconditionally), all or
    /// nothing.
    pub async fn save_with<R: Versioned>(
        &self,
        record: &mut R,
        others: Vec<Item>,
    ) -> Result<(), StoreError> {
        let read = record.version();
        record.set_version(read + 1);
        let mut writes = vec![TransactWrite::Put {
            item: Self::to_item(record)?,
            condition: Condition::IfVersion(read),
        }];
        for item in others {
            writes.push(TransactWrite::Put {
                item,
                condition: Condition::Always,
            });
        }
        let out = self.store.transact(writes).await;
        if out.is_err() {
            record.set_version(read);
        }
        out
    }

    /// Applies `change` and saves; after losing a race, re-reads the record into `current` and
    /// applies `change` again, so concurrent changes to other fields are kept. `change` returns
    /// false to write nothing (e.g. the fresh record no longer wants it): the result is then
    /// `Ok(false)`. A record deleted meanwhile is `ConditionFailed`.
    pub async fn update<R: Versioned>(
        &self,
        current: &mut R,
        mut change: impl FnMut(&mut R) -> bool,
    ) -> Result<bool, StoreError> {
        for _ in 0..MAX_CONFLICT_RETRIES {
            if !change(current) {
                return Ok(false);
            }
            match self.save(current).await {
                Ok(()) => return Ok(true),
                Err(StoreError::ConditionFailed) => match self.get::<R>(&current.key()).await? {
                    Some(fresh) => *current = fresh,
                    None => return Err(StoreError::ConditionFailed),
                },
                Err(e) => return Err(e),
            }
        }
        Err(StoreError::Backend {
            message: format!("{} kept changing under a versioned update", R::KIND),
            transient: true,
        })
    }

    /// Opens the store's connection during a cold start (one read of a key no record has: the
    /// data key of no organization, which every function's role may read), so the first
    /// request does not pay the TLS handshake. A failure is left to that first request.
    pub async fn warm_up(&self) {
        let _ = self.store.get(&keys::data_key(&"-".into())).await;
    }

    /// Reads a record.
    pub async fn get<R: Record>(&self, key: &Key) -> Result<Option<R>, StoreError> {
        self.store.get(key).await?.map(Self::from_item).transpose()
    }

    /// Deletes whatever is at `key` if the condition holds.
    pub async fn remove(&self, key: &Key, condition: Condition) -> Result<(), StoreError> {
        self.store.delete(key, condition).await.map(|_| ())
    }

    /// Deletes a record if present and returns it: exactly one caller gets `Some` (single use).
    pub async fn take<R: Record>(&self, key: &Key) -> Result<Option<R>, StoreError> {
        match self.store.delete(key, Condition::IfPresent).await {
            Ok(old) => old.map(Self::from_item).transpose(),
            Err(StoreError::ConditionFailed) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Every record of one partition whose sort key starts with `prefix`, following pages.
    pub async fn query_prefix<R: Record>(
        &self,
        pk: &str,
        prefix: &str,
    ) -> Result<Vec<R>, StoreError> {
        let mut out = Vec::new();
        let mut page = PageRequest::default();
        loop {
            let got = self
                .store
                .query(pk, &SkRange::Prefix(prefix.to_string()), page)
                .await?;
            for item in got.items {
                out.push(Self::from_item(item)?);
            }
            match got.next {
                Some(cursor) => {
                    page = PageRequest {
                        limit: None,
                        cursor: Some(cursor),
                    }
                }
                None => return Ok(out),
            }
        }
    }
}
