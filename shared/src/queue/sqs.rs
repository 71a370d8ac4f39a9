//! The SQS FIFO queue adapter.

use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_sqs::Client;
use aws_sdk_sqs::types::{
    MessageSystemAttributeName, QueueAttributeName, SendMessageBatchRequestEntry,
};

use super::{OutgoingMessage, Queue, QueueError, ReceivedMessage, batches};
use crate::aws::error_summary;
use crate::retry::RetryPolicy;

/// One SQS FIFO queue.
#[derive(Debug, Clone)]
pub struct SqsQueue {
    client: Client,
    url: String,
}

impl SqsQueue {
    /// The adapter for the queue at `url`.
    pub fn new(client: Client, url: impl Into<String>) -> Self {
        Self {
            client,
            url: url.into(),
        }
    }

    /// The queue URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Sends one batch; returns the indexes that failed and the last failure's reason.
    async fn send_batch(
        &self,
        batch: &[&OutgoingMessage],
    ) -> Result<(Vec<usize>, String), QueueError> {
        let entries = batch
            .iter()
            .enumerate()
            .map(|(i, m)| {
                SendMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .message_body(&m.body)
                    .message_group_id(&m.group_id)
                    .message_deduplication_id(&m.dedup_id)
                    .build()
                    .map_err(|e| QueueError::Backend {
                        message: e.to_string(),
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let out = self
            .client
            .send_message_batch()
            .queue_url(&self.url)
            .set_entries(Some(entries))
            .send()
            .await
            .map_err(|e| QueueError::Backend {
                message: error_summary(&e),
            })?;
        let mut reason = String::new();
        let mut failed: Vec<usize> = out
            .failed
            .iter()
            .filter_map(|f| {
                reason = format!("{}: {}", f.code, f.message.as_deref().unwrap_or(""));
                f.id.parse().ok()
            })
            .collect();
        failed.sort_unstable();
        Ok((failed, reason))
    }
}

#[async_trait]
impl Queue for SqsQueue {
    async fn send(&self, messages: &[OutgoingMessage]) -> Result<(), QueueError> {
        for batch in batches(messages)? {
            let mut pending: Vec<&OutgoingMessage> = batch.iter().collect();
            let mut tries = 0;
            loop {
                let (failed, reason) = self.send_batch(&pending).await?;
                if failed.is_empty() {
                    break;
                }
                tries += 1;
                if tries > RetryPolicy::IN_CALL.retries {
                    return Err(QueueError::Rejected {
                        failed: failed.len(),
                        total: messages.len(),
                        reason,
                    });
                }
                // Failed entries are resent in their original order; dedup ids make a resend
                // of an entry that did get through harmless.
                pending = failed.into_iter().map(|i| pending[i]).collect();
                tokio::time::sleep(RetryPolicy::IN_CALL.delay(tries as u32)).await;
            }
        }
        Ok(())
    }

    async fn receive(&self, max: u8, wait: Duration) -> Result<Vec<ReceivedMessage>, QueueError> {
        let out = self
            .client
            .receive_message()
            .queue_url(&self.url)
            .max_number_of_messages(i32::from(max.clamp(1, 10)))
            .wait_time_seconds(wait.as_secs().min(20) as i32)
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .send()
            .await
            .map_err(|e| QueueError::Backend {
                message: error_summary(&e),
            })?;
        Ok(out
            .messages
            .unwrap_or_default()
            .into_iter()
            .map(|m| {
                let attr = |name: MessageSystemAttributeName| {
                    m.attributes
                        .as_ref()
                        .and_then(|a| a.get(&name))
                        .cloned()
                        .unwrap_or_default()
                };
                ReceivedMessage {
                    receive_count: attr(MessageSystemAttributeName::ApproximateReceiveCount)
                        .parse()
                        .unwrap_or(1),
                    group_id: attr(MessageSystemAttributeName::MessageGroupId),
                    dedup_id: attr(MessageSystemAttributeName::MessageDeduplicationId),
                    message_id: m.message_id.clone().unwrap_or_default(),
                    receipt: m.receipt_handle.clone().unwrap_or_default(),
                    body: m.body.clone().unwrap_or_default(),
                }
            })
            .collect())
    }

    async fn delete(&self, receipt: &str) -> Result<(), QueueError> {
        self.client
            .delete_message()
            .queue_url(&self.url)
            .receipt_handle(receipt)
            .send()
            .await
            .map_err(|e| QueueError::Backend {
                message: error_summary(&e),
            })?;
        Ok(())
    }

    async fn retry_later(&self, receipt: &str, delay: Duration) -> Result<(), QueueError> {
        // SQS caps a visibility timeout at 12 hours.
        let secs = delay.as_secs().min(43_200) as i32;
        self.client
            .change_message_visibility()
            .queue_url(&self.url)
            .receipt_handle(receipt)
            .visibility_timeout(secs)
            .send()
            .await
            .map_err(|e| QueueError::Backend {
                message: error_summary(&e),
            })?;
        Ok(())
    }

    async fn depth(&self) -> Result<u64, QueueError> {
        let out = self
            .client
            .get_queue_attributes()
            .queue_url(&self.url)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
            .send()
            .await
            .map_err(|e| QueueError::Backend {
                message: error_summary(&e),
            })?;
        let attrs = out.attributes.unwrap_or_default();
        let n = |k: QueueAttributeName| {
            attrs
                .get(&k)
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
        };
        Ok(n(QueueAttributeName::ApproximateNumberOfMessages)
            + n(QueueAttributeName::ApproximateNumberOfMessagesNotVisible))
    }
}
