//! Creates the table and queues on an emulator (moto, LocalStack) exactly as template.yaml
//! declares them; used by `igbridge provision` and by the tests.

/// Visibility timeout of the work queues: six times the workers' 30 s timeout, as AWS advises.
pub const VISIBILITY_TIMEOUT_SECS: i32 = 180;
/// Receives before the queue itself moves a message to the dead-letter queue (the template's
/// `maxReceiveCount`): the retry policy's [`crate::retry::MAX_RECEIVES`].
pub const MAX_RECEIVE_COUNT: u32 = crate::retry::MAX_RECEIVES;
/// How long a work queue keeps a message (4 days).
pub const RETENTION_SECS: i32 = 4 * 24 * 3600;
/// Visibility timeout of the dead-letter queues: longer than the health function's 300 s, so the
/// messages a replay holds (other organizations') stay held until it releases them and it reads
/// every message once (`crate::health::replay`).
pub const DLQ_VISIBILITY_TIMEOUT_SECS: i32 = 600;
/// How long a dead-letter queue keeps a message: 6 days. SQS counts a dead-letter copy's age
/// from its original enqueue, so no queued copy outlives the 7-day promise even where crypto-
/// shredding cannot reach (bodies no tenant can be named for).
pub const DLQ_RETENTION_SECS: i32 = 6 * 24 * 3600;

#[cfg(feature = "provision")]
pub use create::*;

/// The calls that create them (emulators only: the functions never create resources).
#[cfg(feature = "provision")]
mod create {
    use super::*;
    use aws_sdk_dynamodb::types::{
        AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType,
        Projection, ProjectionType, ScalarAttributeType, TimeToLiveSpecification,
    };
    use aws_sdk_sqs::types::QueueAttributeName;

    use crate::aws::error_summary;
    use crate::store::{EXPIRES_AT, ORGANIZATION, ORGANIZATION_INDEX, PK, SK};

    /// What went wrong while provisioning.
    #[derive(Debug, thiserror::Error)]
    #[error("provisioning {what}: {reason}")]
    pub struct ProvisionError {
        what: String,
        reason: String,
    }

    /// A work queue and its dead-letter queue.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct QueuePair {
        /// The work queue URL.
        pub url: String,
        /// The dead-letter queue URL.
        pub dlq_url: String,
    }

    fn key(name: &str, kind: KeyType) -> KeySchemaElement {
        KeySchemaElement::builder()
            .attribute_name(name)
            .key_type(kind)
            .build()
            .expect("key schema fields are set")
    }

    fn string_attr(name: &str) -> AttributeDefinition {
        AttributeDefinition::builder()
            .attribute_name(name)
            .attribute_type(ScalarAttributeType::S)
            .build()
            .expect("attribute fields are set")
    }

    /// Creates the single table (on-demand, `pk`/`sk`, organization index, TTL). Idempotent.
    pub async fn create_table(
        client: &aws_sdk_dynamodb::Client,
        name: &str,
    ) -> Result<(), ProvisionError> {
        let fail = |reason: String| ProvisionError {
            what: format!("table {name}"),
            reason,
        };
        let index = GlobalSecondaryIndex::builder()
            .index_name(ORGANIZATION_INDEX)
            .key_schema(key(ORGANIZATION, KeyType::Hash))
            .projection(
                Projection::builder()
                    .projection_type(ProjectionType::KeysOnly)
                    .build(),
            )
            .build()
            .map_err(|e| fail(e.to_string()))?;
        let res = client
            .create_table()
            .table_name(name)
            .billing_mode(BillingMode::PayPerRequest)
            .attribute_definitions(string_attr(PK))
            .attribute_definitions(string_attr(SK))
            .attribute_definitions(string_attr(ORGANIZATION))
            .key_schema(key(PK, KeyType::Hash))
            .key_schema(key(SK, KeyType::Range))
            .global_secondary_indexes(index)
            .send()
            .await;
        match res {
            Ok(_) => {}
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_resource_in_use_exception()) => {}
            Err(e) => return Err(fail(error_summary(&e))),
        }
        client
            .update_time_to_live()
            .table_name(name)
            .time_to_live_specification(
                TimeToLiveSpecification::builder()
                    .attribute_name(EXPIRES_AT)
                    .enabled(true)
                    .build()
                    .map_err(|e| fail(e.to_string()))?,
            )
            .send()
            .await
            .map(|_| ())
            .or_else(|e| {
                // Enabling TTL twice is refused; that is the state we want.
                let msg = error_summary(&e);
                if msg.contains("already enabled") {
                    Ok(())
                } else {
                    Err(fail(msg))
                }
            })
    }

    /// A queue's ARN (the redrive policy names its dead-letter queue by ARN).
    async fn queue_arn(client: &aws_sdk_sqs::Client, url: &str) -> Result<String, ProvisionError> {
        let fail = |reason: String| ProvisionError {
            what: format!("the ARN of {url}"),
            reason,
        };
        client
            .get_queue_attributes()
            .queue_url(url)
            .attribute_names(QueueAttributeName::QueueArn)
            .send()
            .await
            .map_err(|e| fail(error_summary(&e)))?
            .attributes
            .and_then(|mut a| a.remove(&QueueAttributeName::QueueArn))
            .ok_or_else(|| fail("no DLQ arn".into()))
    }

    /// Creates a FIFO work queue `<name>.fifo` with its dead-letter queue `<name>-dlq.fifo` and a
    /// redrive policy. Idempotent for identical attributes.
    pub async fn create_fifo_queue(
        client: &aws_sdk_sqs::Client,
        name: &str,
    ) -> Result<QueuePair, ProvisionError> {
        let fail = |reason: String| ProvisionError {
            what: format!("queue {name}"),
            reason,
        };
        let dlq = client
            .create_queue()
            .queue_name(format!("{name}-dlq.fifo"))
            .attributes(QueueAttributeName::FifoQueue, "true")
            .attributes(
                QueueAttributeName::MessageRetentionPeriod,
                DLQ_RETENTION_SECS.to_string(),
            )
            .attributes(
                QueueAttributeName::VisibilityTimeout,
                DLQ_VISIBILITY_TIMEOUT_SECS.to_string(),
            )
            .send()
            .await
            .map_err(|e| fail(error_summary(&e)))?;
        let dlq_url = dlq.queue_url.ok_or_else(|| fail("no DLQ url".into()))?;
        let arn = queue_arn(client, &dlq_url).await?;
        let redrive = serde_json::json!({
            "deadLetterTargetArn": arn,
            "maxReceiveCount": MAX_RECEIVE_COUNT,
        })
        .to_string();
        let queue = client
            .create_queue()
            .queue_name(format!("{name}.fifo"))
            .attributes(QueueAttributeName::FifoQueue, "true")
            .attributes(QueueAttributeName::ContentBasedDeduplication, "false")
            .attributes(
                QueueAttributeName::VisibilityTimeout,
                VISIBILITY_TIMEOUT_SECS.to_string(),
            )
            .attributes(
                QueueAttributeName::MessageRetentionPeriod,
                RETENTION_SECS.to_string(),
            )
            .attributes(QueueAttributeName::RedrivePolicy, redrive)
            .send()
            .await
            .map_err(|e| fail(error_summary(&e)))?;
        Ok(QueuePair {
            url: queue.queue_url.ok_or_else(|| fail("no queue url".into()))?,
            dlq_url,
        })
    }
}
