//! The DynamoDB store adapter (serde_dynamo for item conversion).

use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{
    AttributeValue, ConditionCheck, DeleteRequest, KeysAndAttributes, Put, PutRequest, ReturnValue,
    TransactWriteItem, WriteRequest,
};
use serde_json::{Map, Value};

use super::{
    Condition, Cursor, EXPIRES_AT, Item, Key, ORGANIZATION, ORGANIZATION_INDEX, PK, Page,
    PageRequest, SK, SkRange, Store, StoreError, TransactWrite,
};
use crate::aws::{error_summary, is_transient};
use crate::retry::RetryPolicy;

/// DynamoDB's BatchWriteItem limit.
const BATCH_WRITE_MAX: usize = 25;
/// DynamoDB's BatchGetItem limit.
const BATCH_GET_MAX: usize = 100;

/// The store on one DynamoDB table.
#[derive(Debug, Clone)]
pub struct DynamoStore {
    client: Client,
    table: String,
}

impl DynamoStore {
    /// The adapter for `table`.
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }

    /// The table name.
    pub fn table(&self) -> &str {
        &self.table
    }

    /// One BatchWriteItem call; returns the requests DynamoDB left unprocessed.
    async fn write_batch(
        &self,
        requests: Vec<WriteRequest>,
    ) -> Result<Vec<WriteRequest>, StoreError> {
        let out = self
            .client
            .batch_write_item()
            .request_items(&self.table, requests)
            .send()
            .await
            .map_err(|e| backend(&e))?;
        Ok(out
            .unprocessed_items
            .and_then(|mut m| m.remove(&self.table))
            .unwrap_or_default())
    }
}

fn backend<E: aws_sdk_dynamodb::error::ProvideErrorMetadata>(
    err: &aws_sdk_dynamodb::error::SdkError<E>,
) -> StoreError {
    StoreError::Backend {
        message: error_summary(err),
        transient: is_transient(err),
    }
}

fn to_attrs(map: &Map<String, Value>) -> Result<HashMap<String, AttributeValue>, StoreError> {
    serde_dynamo::to_item(map).map_err(|e| StoreError::Codec(e.to_string()))
}

fn from_attrs(attrs: HashMap<String, AttributeValue>) -> Result<Map<String, Value>, StoreError> {
    serde_dynamo::from_item(attrs).map_err(|e| StoreError::Codec(e.to_string()))
}

fn key_attrs(key: &Key) -> HashMap<String, AttributeValue> {
    HashMap::from([
        (PK.to_string(), AttributeValue::S(key.pk.clone())),
        (SK.to_string(), AttributeValue::S(key.sk.clone())),
    ])
}

/// A condition expression with its names and values.
#[derive(Default)]
struct Expr {
    expression: Option<String>,
    names: HashMap<String, String>,
    values: HashMap<String, AttributeValue>,
}

fn condition_expr(condition: &Condition) -> Result<Expr, StoreError> {
    let mut e = Expr::default();
    match condition {
        Condition::Always => {}
        Condition::IfAbsent => {
            e.expression = Some("attribute_not_exists(#pk)".into());
            e.names.insert("#pk".into(), PK.into());
        }
        Condition::IfPresent => {
            e.expression = Some("attribute_exists(#pk)".into());
            e.names.insert("#pk".into(), PK.into());
        }
        Condition::IfVersion(v) => {
            e.expression = Some(if *v == 0 {
                "attribute_exists(#pk) AND (attribute_not_exists(#v) OR #v = :v)".into()
            } else {
                "#v = :v".into()
            });
            if *v == 0 {
                e.names.insert("#pk".into(), PK.into());
            }
            e.names.insert("#v".into(), super::VERSION.into());
            e.values
                .insert(":v".into(), AttributeValue::N(v.to_string()));
        }
        Condition::IfEquals { attribute, value } => {
            e.expression = Some("#c = :c".into());
            e.names.insert("#c".into(), attribute.clone());
            e.values.insert(":c".into(), attribute_value(value)?);
        }
        Condition::IfOneOf { attribute, values } => {
            let mut operands = Vec::new();
            for (i, value) in values.iter().enumerate() {
                operands.push(format!(":c{i}"));
                e.values.insert(format!(":c{i}"), attribute_value(value)?);
            }
            e.expression = Some(format!("#c IN ({})", operands.join(", ")));
            e.names.insert("#c".into(), attribute.clone());
        }
    }
    Ok(e)
}

fn attribute_value(value: &Value) -> Result<AttributeValue, StoreError> {
    serde_dynamo::to_attribute_value(value).map_err(|err| StoreError::Codec(err.to_string()))
}

/// One write of a TransactWriteItems call.
fn transact_item(table: &str, write: TransactWrite) -> Result<TransactWriteItem, StoreError> {
    let invalid = |e: aws_sdk_dynamodb::error::BuildError| StoreError::Invalid(e.to_string());
    Ok(match write {
        TransactWrite::Put { item, condition } => {
            let e = condition_expr(&condition)?;
            let put = Put::builder()
                .table_name(table)
                .set_item(Some(to_attrs(item.attributes())?))
                .set_condition_expression(e.expression)
                .set_expression_attribute_names(opt_map(e.names))
                .set_expression_attribute_values(opt_map(e.values))
                .build()
                .map_err(invalid)?;
            TransactWriteItem::builder().put(put).build()
        }
        TransactWrite::Check { key, condition } => {
            let e = condition_expr(&condition)?;
            let check = ConditionCheck::builder()
                .table_name(table)
                .set_key(Some(key_attrs(&key)))
                .set_condition_expression(e.expression)
                .set_expression_attribute_names(opt_map(e.names))
                .set_expression_attribute_values(opt_map(e.values))
                .build()
                .map_err(invalid)?;
            TransactWriteItem::builder().condition_check(check).build()
        }
    })
}

fn opt_map<K, V>(m: HashMap<K, V>) -> Option<HashMap<K, V>> {
    (!m.is_empty()).then_some(m)
}

fn page_of(last: Option<HashMap<String, AttributeValue>>) -> Result<Option<Cursor>, StoreError> {
    last.filter(|m| !m.is_empty())
        .map(|m| from_attrs(m).map(|a| Cursor::from_attrs(&a)))
        .transpose()
}

fn start_key(page: &PageRequest) -> Result<Option<HashMap<String, AttributeValue>>, StoreError> {
    page.cursor
        .as_ref()
        .map(|c| c.to_attrs().and_then(|m| to_attrs(&m)))
        .transpose()
}

#[async_trait]
impl Store for DynamoStore {
    async fn put(&self, item: Item, condition: Condition) -> Result<(), StoreError> {
        let e = condition_expr(&condition)?;
        let res = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(to_attrs(item.attributes())?))
            .set_condition_expression(e.expression)
            .set_expression_attribute_names(opt_map(e.names))
            .set_expression_attribute_values(opt_map(e.values))
            .send()
            .await;
        match res {
            Ok(_) => Ok(()),
            Err(err)
                if err
                    .as_service_error()
                    .is_some_and(|s| s.is_conditional_check_failed_exception()) =>
            {
                Err(StoreError::ConditionFailed)
            }
            Err(err) => Err(backend(&err)),
        }
    }

    async fn get(&self, key: &Key) -> Result<Option<Item>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key_attrs(key)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| backend(&e))?;
        out.item
            .map(|attrs| from_attrs(attrs).and_then(Item::new))
            .transpose()
    }

    async fn delete(&self, key: &Key, condition: Condition) -> Result<Option<Item>, StoreError> {
        let e = condition_expr(&condition)?;
        let res = self
            .client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(key_attrs(key)))
            .set_condition_expression(e.expression)
            .set_expression_attribute_names(opt_map(e.names))
            .set_expression_attribute_values(opt_map(e.values))
            .return_values(ReturnValue::AllOld)
            .send()
            .await;
        match res {
            Ok(out) => out
                .attributes
                .filter(|a| !a.is_empty())
                .map(|attrs| from_attrs(attrs).and_then(Item::new))
                .transpose(),
            Err(err)
                if err
                    .as_service_error()
                    .is_some_and(|s| s.is_conditional_check_failed_exception()) =>
            {
                Err(StoreError::ConditionFailed)
            }
            Err(err) => Err(backend(&err)),
        }
    }

    async fn query(
        &self,
        pk: &str,
        range: &SkRange,
        page: PageRequest,
    ) -> Result<Page<Item>, StoreError> {
        let mut names = HashMap::from([("#pk".to_string(), PK.to_string())]);
        let mut values = HashMap::from([(":pk".to_string(), AttributeValue::S(pk.to_string()))]);
        let expression = match range {
            SkRange::All => "#pk = :pk".to_string(),
            // DynamoDB refuses an empty operand on a key attribute; an empty prefix is "all".
            SkRange::Prefix(p) if p.is_empty() => "#pk = :pk".to_string(),
            SkRange::Prefix(p) => {
                names.insert("#sk".into(), SK.into());
                values.insert(":p".into(), AttributeValue::S(p.clone()));
                "#pk = :pk AND begins_with(#sk, :p)".to_string()
            }
            SkRange::Between(lo, hi) => {
                names.insert("#sk".into(), SK.into());
                values.insert(":lo".into(), AttributeValue::S(lo.clone()));
                values.insert(":hi".into(), AttributeValue::S(hi.clone()));
                "#pk = :pk AND #sk BETWEEN :lo AND :hi".to_string()
            }
        };
        let out = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression(expression)
            .set_expression_attribute_names(Some(names))
            .set_expression_attribute_values(Some(values))
            .consistent_read(true)
            .set_limit(page.limit.map(|l| l.max(1) as i32))
            .set_exclusive_start_key(start_key(&page)?)
            .send()
            .await
            .map_err(|e| backend(&e))?;
        let items = out
            .items
            .unwrap_or_default()
            .into_iter()
            .map(|attrs| from_attrs(attrs).and_then(Item::new))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Page {
            items,
            next: page_of(out.last_evaluated_key)?,
        })
    }

    async fn query_organization(
        &self,
        organization_id: &str,
        page: PageRequest,
    ) -> Result<Page<Key>, StoreError> {
        let out = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(ORGANIZATION_INDEX)
            .key_condition_expression("#o = :o")
            .expression_attribute_names("#o", ORGANIZATION)
            .expression_attribute_values(":o", AttributeValue::S(organization_id.to_string()))
            .set_limit(page.limit.map(|l| l.max(1) as i32))
            .set_exclusive_start_key(start_key(&page)?)
            .send()
            .await
            .map_err(|e| backend(&e))?;
        let keys = out
            .items
            .unwrap_or_default()
            .into_iter()
            .map(|attrs| match (attrs.get(PK), attrs.get(SK)) {
                (Some(AttributeValue::S(pk)), Some(AttributeValue::S(sk))) => {
                    Ok(Key::new(pk.clone(), sk.clone()))
                }
                _ => Err(StoreError::Codec("index item without pk/sk".into())),
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Page {
            items: keys,
            next: page_of(out.last_evaluated_key)?,
        })
    }

    async fn set_expiry(&self, key: &Key, expires_at: i64) -> Result<bool, StoreError> {
        let res = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key_attrs(key)))
            .update_expression("SET #e = :e")
            .condition_expression("attribute_exists(#pk)")
            .expression_attribute_names("#e", EXPIRES_AT)
            .expression_attribute_names("#pk", PK)
            .expression_attribute_values(":e", AttributeValue::N(expires_at.to_string()))
            .send()
            .await;
        match res {
            Ok(_) => Ok(true),
            Err(err)
                if err
                    .as_service_error()
                    .is_some_and(|s| s.is_conditional_check_failed_exception()) =>
            {
                Ok(false)
            }
            Err(err) => Err(backend(&err)),
        }
    }

    async fn delete_many(&self, keys: &[Key]) -> Result<(), StoreError> {
        let requests = keys
            .iter()
            .map(|k| {
                let del = DeleteRequest::builder()
                    .set_key(Some(key_attrs(k)))
                    .build()
                    .map_err(|e| StoreError::Invalid(e.to_string()))?;
                Ok(WriteRequest::builder().delete_request(del).build())
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        self.write_all(requests).await
    }

    async fn get_many(&self, keys: &[Key]) -> Result<Vec<Item>, StoreError> {
        let mut out = Vec::with_capacity(keys.len());
        for chunk in keys.chunks(BATCH_GET_MAX) {
            let mut pending: Vec<_> = chunk.iter().map(key_attrs).collect();
            let mut tries = 0;
            while !pending.is_empty() {
                let ask = KeysAndAttributes::builder()
                    .set_keys(Some(std::mem::take(&mut pending)))
                    .consistent_read(true)
                    .build()
                    .map_err(|e| StoreError::Invalid(e.to_string()))?;
                let got = self
                    .client
                    .batch_get_item()
                    .request_items(&self.table, ask)
                    .send()
                    .await
                    .map_err(|e| backend(&e))?;
                for attrs in got
                    .responses
                    .and_then(|mut r| r.remove(&self.table))
                    .unwrap_or_default()
                {
                    out.push(Item::new(from_attrs(attrs)?)?);
                }
                pending = got
                    .unprocessed_keys
                    .and_then(|mut m| m.remove(&self.table))
                    .map(|k| k.keys)
                    .unwrap_or_default();
                if !pending.is_empty() {
                    tries += 1;
                    if tries > RetryPolicy::IN_CALL.retries {
                        return Err(StoreError::Backend {
                            message: format!("{} reads left unprocessed", pending.len()),
                            transient: true,
                        });
                    }
                    tokio::time::sleep(RetryPolicy::IN_CALL.delay(tries as u32)).await;
                }
            }
        }
        Ok(out)
    }

    async fn put_many(&self, items: Vec<Item>) -> Result<(), StoreError> {
        let requests = items
            .iter()
            .map(|item| {
                let put = PutRequest::builder()
                    .set_item(Some(to_attrs(item.attributes())?))
                    .build()
                    .map_err(|e| StoreError::Invalid(e.to_string()))?;
                Ok(WriteRequest::builder().put_request(put).build())
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        self.write_all(requests).await
    }

    async fn transact(&self, writes: Vec<TransactWrite>) -> Result<(), StoreError> {
        super::check_transaction(&writes)?;
        let items = writes
            .into_iter()
            .map(|w| transact_item(&self.table, w))
            .collect::<Result<Vec<_>, _>>()?;
        // Idempotent for 10 minutes: the SDK's own retry of a transaction that committed but
        // whose answer was lost is not refused by the conditions it already met.
        let token = hex::encode(rand::random::<[u8; 16]>());
        let res = self
            .client
            .transact_write_items()
            .set_transact_items(Some(items))
            .client_request_token(token)
            .send()
            .await;
        let Err(err) = res else {
            return Ok(());
        };
        use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
        let cancelled = match err.as_service_error() {
            Some(TransactWriteItemsError::TransactionCanceledException(c)) => Some(c),
            _ => None,
        };
        // Cancelled with a reason per write: a condition that did not hold is the caller's to
        // handle; a conflict with another transaction (or throttling) is worth a retry.
        match cancelled {
            Some(c)
                if c.cancellation_reasons()
                    .iter()
                    .any(|r| r.code() == Some("ConditionalCheckFailed")) =>
            {
                Err(StoreError::ConditionFailed)
            }
            Some(_) => Err(StoreError::Backend {
                message: error_summary(&err),
                transient: true,
            }),
            None => Err(backend(&err)),
        }
    }
}

impl DynamoStore {
    /// BatchWriteItem in chunks, retrying what DynamoDB leaves unprocessed (throttling).
    async fn write_all(&self, requests: Vec<WriteRequest>) -> Result<(), StoreError> {
        for chunk in requests.chunks(BATCH_WRITE_MAX) {
            let mut pending = chunk.to_vec();
            let mut tries = 0;
            loop {
                pending = self.write_batch(pending).await?;
                if pending.is_empty() {
                    break;
                }
                tries += 1;
                if tries > RetryPolicy::IN_CALL.retries {
                    return Err(StoreError::Backend {
                        message: format!("{} writes left unprocessed", pending.len()),
                        transient: true,
                    });
                }
                tokio::time::sleep(RetryPolicy::IN_CALL.delay(tries as u32)).await;
            }
        }
        Ok(())
    }
}
