//! An SQS event-source mapping on moto, as Lambda's poller runs one: it receives up to
//! `BatchSize` (≤ 10) messages, invokes the function with an `aws:sqs` event, and deletes what
//! succeeded. With `ReportBatchItemFailures` only the items the answer lists stay on the queue;
//! an answer naming an item that is not in the batch fails the whole batch; an invocation error
//! or timeout leaves every message for redelivery after its visibility timeout. Receive counts,
//! visibility and the redrive to the dead-letter queue after `maxReceiveCount` are the queue's
//! own (moto applies the redrive policy the stack set from the template).
//! Source: <https://docs.aws.amazon.com/lambda/latest/dg/services-sqs-errorhandling.html>.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use aws_sdk_sqs::types::{DeleteMessageBatchRequestEntry, Message, MessageSystemAttributeName};
use serde_json::{Value, json};

use super::runtime::Function;

/// The mapping's configuration.
#[derive(Debug, Clone)]
pub struct Mapping {
    /// The queue's URL.
    pub queue_url: String,
    /// The queue's ARN (`eventSourceARN`).
    pub queue_arn: String,
    /// `BatchSize`.
    pub batch_size: i32,
    /// `FunctionResponseTypes: [ReportBatchItemFailures]`.
    pub report_batch_item_failures: bool,
}

/// What a mapping has done so far.
#[derive(Debug, Default)]
pub struct MappingStats {
    /// Invocations made.
    pub invocations: AtomicU64,
    /// Invocations that failed (error, timeout, killed process).
    pub failed_invocations: AtomicU64,
    /// Messages deleted after success.
    pub deleted: AtomicU64,
    /// Items the function reported as failed.
    pub reported_failures: AtomicU64,
    /// Largest batch seen.
    pub largest_batch: AtomicU64,
    /// Each batch as `sequence number × receive count` per message, for a failing test's
    /// message (FIFO order and redeliveries at a glance).
    pub batches: std::sync::Mutex<Vec<String>>,
}

/// A running poller; dropping it stops polling.
pub struct Poller {
    task: tokio::task::JoinHandle<()>,
    /// Counters.
    pub stats: Arc<MappingStats>,
}

impl Drop for Poller {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A batch as `sequence-number-tail×receive-count` per record.
fn shape(event: &Value) -> String {
    let records = event["Records"].as_array().into_iter().flatten();
    let each: Vec<String> = records
        .map(|r| {
            let a = &r["attributes"];
            let seq = a["SequenceNumber"].as_str().unwrap_or("-");
            let tail = &seq[seq.len().saturating_sub(4)..];
            let count = a["ApproximateReceiveCount"].as_str().unwrap_or("?");
            format!("{tail}×{count}")
        })
        .collect();
    each.join(" ")
}

impl Mapping {
    /// Starts polling for `function`.
    pub fn start(self, sqs: aws_sdk_sqs::Client, function: Arc<Function>) -> Poller {
        let stats = Arc::new(MappingStats::default());
        let counters = stats.clone();
        let task = tokio::spawn(async move {
            loop {
                let received = sqs
                    .receive_message()
                    .queue_url(&self.queue_url)
                    .max_number_of_messages(self.batch_size.clamp(1, 10))
                    .wait_time_seconds(1)
                    .message_system_attribute_names(MessageSystemAttributeName::All)
                    .message_attribute_names("All")
                    .send()
                    .await;
                let messages = match received {
                    Ok(out) => out.messages.unwrap_or_default(),
                    Err(_) => {
                        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                        continue;
                    }
                };
                if messages.is_empty() {
                    continue;
                }
                self.deliver(&sqs, &function, &messages, &counters).await;
            }
        });
        Poller { task, stats }
    }

    async fn deliver(
        &self,
        sqs: &aws_sdk_sqs::Client,
        function: &Function,
        messages: &[Message],
        stats: &MappingStats,
    ) {
        stats.invocations.fetch_add(1, Ordering::Relaxed);
        stats
            .largest_batch
            .fetch_max(messages.len() as u64, Ordering::Relaxed);
        let event =
            json!({ "Records": messages.iter().map(|m| self.record(m)).collect::<Vec<_>>() });
        stats.batches.lock().expect("batches").push(shape(&event));
        let answer = match function.invoke(&event).await {
            Ok(answer) => answer,
            Err(_) => {
                stats.failed_invocations.fetch_add(1, Ordering::Relaxed);
                return;
            }
        };
        let Some(failed) = self.failures(&answer, messages) else {
            stats.failed_invocations.fetch_add(1, Ordering::Relaxed);
            return;
        };
        stats
            .reported_failures
            .fetch_add(failed.len() as u64, Ordering::Relaxed);
        let done: Vec<&Message> = messages
            .iter()
            .filter(|m| !failed.contains(m.message_id().unwrap_or_default()))
            .collect();
        if done.is_empty() {
            return;
        }
        let entries: Vec<DeleteMessageBatchRequestEntry> = done
            .iter()
            .enumerate()
            .map(|(i, m)| {
                DeleteMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .receipt_handle(m.receipt_handle().unwrap_or_default())
                    .build()
                    .expect("an entry")
            })
            .collect();
        let deleted = sqs
            .delete_message_batch()
            .queue_url(&self.queue_url)
            .set_entries(Some(entries))
            .send()
            .await;
        if let Ok(out) = deleted {
            stats
                .deleted
                .fetch_add(out.successful().len() as u64, Ordering::Relaxed);
        }
    }

    /// The ids the answer reports as failed; `None` when the whole batch counts as failed.
    fn failures(&self, answer: &[u8], messages: &[Message]) -> Option<HashSet<String>> {
        if !self.report_batch_item_failures {
            return Some(HashSet::new());
        }
        let v: Value = serde_json::from_slice(answer).unwrap_or(Value::Null);
        let items = match &v["batchItemFailures"] {
            Value::Null => return Some(HashSet::new()),
            Value::Array(items) => items,
            _ => return None,
        };
        let ids: HashSet<&str> = messages.iter().filter_map(|m| m.message_id()).collect();
        let mut failed = HashSet::new();
        for item in items {
            let id = item["itemIdentifier"]
                .as_str()
                .filter(|id| ids.contains(id))?;
            failed.insert(id.to_string());
        }
        Some(failed)
    }

    fn record(&self, m: &Message) -> Value {
        let attributes: serde_json::Map<String, Value> = m
            .attributes()
            .into_iter()
            .flatten()
            .map(|(k, v)| (k.as_str().to_string(), Value::from(v.as_str())))
            .collect();
        let message_attributes: serde_json::Map<String, Value> = m
            .message_attributes()
            .into_iter()
            .flatten()
            .map(|(k, v)| {
                (
                    k.clone(),
                    json!({
                        "stringValue": v.string_value(),
                        "stringListValues": [],
                        "binaryListValues": [],
                        "dataType": v.data_type(),
                    }),
                )
            })
            .collect();
        json!({
            "messageId": m.message_id(),
            "receiptHandle": m.receipt_handle(),
            "body": m.body(),
            "attributes": attributes,
            "messageAttributes": message_attributes,
            "md5OfBody": m.md5_of_body(),
            "eventSource": "aws:sqs",
            "eventSourceARN": self.queue_arn,
            "awsRegion": "us-east-1",
        })
    }
}
