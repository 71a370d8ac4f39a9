//! The in-memory store adapter: the embedded default for local runs, and the fast twin in tests.

use std::collections::BTreeMap;
use std::sync::Mutex;

use async_trait::async_trait;
use serde_json::{Map, Value};

use super::{
    Condition, Cursor, EXPIRES_AT, Item, Key, ORGANIZATION, PK, Page, PageRequest, SK, SkRange,
    Store, StoreError, TransactWrite,
};

/// A store held in a sorted map; every operation is atomic under one lock.
#[derive(Debug, Default)]
pub struct MemoryStore {
    items: Mutex<BTreeMap<Key, Item>>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Every item, in key order (for tests and inspection).
    pub fn dump(&self) -> Vec<Item> {
        self.items
            .lock()
            .expect("store lock")
            .values()
            .cloned()
            .collect()
    }
}

fn holds(existing: Option<&Item>, condition: &Condition) -> bool {
    match condition {
        Condition::Always => true,
        Condition::IfAbsent => existing.is_none(),
        Condition::IfPresent => existing.is_some(),
        Condition::IfVersion(v) => existing
            .is_some_and(|i| i.get(super::VERSION).and_then(Value::as_u64).unwrap_or(0) == *v),
        Condition::IfEquals { attribute, value } => {
            existing.and_then(|i| i.get(attribute)) == Some(value)
        }
        Condition::IfOneOf { attribute, values } => existing
            .and_then(|i| i.get(attribute))
            .is_some_and(|v| values.contains(v)),
    }
}

fn key_cursor(key: &Key) -> Cursor {
    let mut m = Map::new();
    m.insert(PK.into(), Value::String(key.pk.clone()));
    m.insert(SK.into(), Value::String(key.sk.clone()));
    Cursor::from_attrs(&m)
}

fn cursor_key(cursor: &Cursor) -> Result<Key, StoreError> {
    let m = cursor.to_attrs()?;
    match (
        m.get(PK).and_then(Value::as_str),
        m.get(SK).and_then(Value::as_str),
    ) {
        (Some(pk), Some(sk)) => Ok(Key::new(pk, sk)),
        _ => Err(StoreError::Invalid("bad cursor".into())),
    }
}

fn paginate<T>(
    mut matching: impl Iterator<Item = (Key, T)>,
    page: &PageRequest,
) -> Result<Page<T>, StoreError> {
    let after = page.cursor.as_ref().map(cursor_key).transpose()?;
    let limit = page.limit.map(|l| l.max(1) as usize).unwrap_or(usize::MAX);
    let mut items = Vec::new();
    let mut last = None;
    for (key, value) in matching.by_ref() {
        if after.as_ref().is_some_and(|a| &key <= a) {
            continue;
        }
        if items.len() == limit {
            // Like DynamoDB, a full page says "maybe more" with the last key returned.
            return Ok(Page {
                items,
                next: last.as_ref().map(key_cursor),
            });
        }
        last = Some(key);
        items.push(value);
    }
    Ok(Page { items, next: None })
}

#[async_trait]
impl Store for MemoryStore {
    async fn put(&self, item: Item, condition: Condition) -> Result<(), StoreError> {
        let mut items = self.items.lock().expect("store lock");
        let key = item.key();
        if !holds(items.get(&key), &condition) {
            return Err(StoreError::ConditionFailed);
        }
        items.insert(key, item);
        Ok(())
    }

    async fn get(&self, key: &Key) -> Result<Option<Item>, StoreError> {
        Ok(self.items.lock().expect("store lock").get(key).cloned())
    }

    async fn delete(&self, key: &Key, condition: Condition) -> Result<Option<Item>, StoreError> {
        let mut items = self.items.lock().expect("store lock");
        if !holds(items.get(key), &condition) {
            return Err(StoreError::ConditionFailed);
        }
        Ok(items.remove(key))
    }

    async fn query(
        &self,
        pk: &str,
        range: &SkRange,
        page: PageRequest,
    ) -> Result<Page<Item>, StoreError> {
        let items = self.items.lock().expect("store lock");
        let matching = items
            .range(Key::new(pk, "")..)
            .take_while(|(k, _)| k.pk == pk)
            .filter(|(k, _)| match range {
                SkRange::All => true,
                SkRange::Prefix(p) => k.sk.starts_with(p.as_str()),
                SkRange::Between(lo, hi) => {
                    k.sk.as_str() >= lo.as_str() && k.sk.as_str() <= hi.as_str()
                }
            })
            .map(|(k, v)| (k.clone(), v.clone()));
        paginate(matching, &page)
    }

    async fn query_organization(
        &self,
        organization_id: &str,
        page: PageRequest,
    ) -> Result<Page<Key>, StoreError> {
        let items = self.items.lock().expect("store lock");
        let matching = items
            .iter()
            .filter(|(_, v)| v.str(ORGANIZATION) == Some(organization_id))
            .map(|(k, _)| (k.clone(), k.clone()));
        paginate(matching, &page)
    }

    async fn set_expiry(&self, key: &Key, expires_at: i64) -> Result<bool, StoreError> {
        let mut items = self.items.lock().expect("store lock");
        let Some(item) = items.get_mut(key) else {
            return Ok(false);
        };
        item.0.insert(EXPIRES_AT.into(), Value::from(expires_at));
        Ok(true)
    }

    async fn delete_many(&self, keys: &[Key]) -> Result<(), StoreError> {
        let mut items = self.items.lock().expect("store lock");
        for key in keys {
            items.remove(key);
        }
        Ok(())
    }

    async fn get_many(&self, keys: &[Key]) -> Result<Vec<Item>, StoreError> {
        let items = self.items.lock().expect("store lock");
        Ok(keys.iter().filter_map(|k| items.get(k).cloned()).collect())
    }

    async fn put_many(&self, new: Vec<Item>) -> Result<(), StoreError> {
        let mut items = self.items.lock().expect("store lock");
        for item in new {
            items.insert(item.key(), item);
        }
        Ok(())
    }

    async fn transact(&self, writes: Vec<TransactWrite>) -> Result<(), StoreError> {
        super::check_transaction(&writes)?;
        let mut items = self.items.lock().expect("store lock");
        let all_hold = writes.iter().all(|w| match w {
            TransactWrite::Put { item, condition } => holds(items.get(&item.key()), condition),
            TransactWrite::Check { key, condition } => holds(items.get(key), condition),
        });
        if !all_hold {
            return Err(StoreError::ConditionFailed);
        }
        for w in writes {
            if let TransactWrite::Put { item, .. } = w {
                items.insert(item.key(), item);
            }
        }
        Ok(())
    }
}
