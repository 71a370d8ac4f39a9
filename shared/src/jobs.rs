//! The versioned job envelopes that travel on the queues, from the ingest functions to the
//! workers. Jobs carry the platform's raw item (unknown fields kept) so nothing is lost between
//! parse and delivery; the queue is transient and encrypted, unlike the table.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::queue::OutgoingMessage;

/// The envelope version this build writes.
pub const ENVELOPE_VERSION: u32 = 1;

/// Where a job came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// Meta's Instagram webhooks.
    Instagram,
    /// LiveChat chat webhooks.
    Livechat,
}

/// One Instagram webhook item (`messaging[]`, `standby[]` or `changes[]`), routed to an account.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InstagramEventJob {
    /// The business's Instagram account (recipient inbound, sender for echoes).
    pub ig_account_id: String,
    /// The customer's IGSID (the other party).
    pub igsid: String,
    /// The event's natural id: the mid, or kind + timestamp + sender.
    pub event_id: String,
    /// Which array it came from: `messaging`, `standby` or `changes`.
    pub field: String,
    /// `entry.time`, as sent.
    pub entry_time: Option<Value>,
    /// The item exactly as Meta sent it.
    pub item: Value,
}

/// One LiveChat chat webhook.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LivechatEventJob {
    /// The organization that sent it.
    pub organization_id: String,
    /// The webhook action (`incoming_event`, …).
    pub action: String,
    /// The event id used for deduplication.
    pub event_id: String,
    /// The chat, when the action has one.
    pub chat_id: Option<String>,
    /// The webhook body without its `secret_key`.
    pub webhook: Value,
}

/// An authentic body that could not be parsed: parked for a human, never dropped.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UnparsedJob {
    /// Which webhook it came to.
    pub source: Source,
    /// Why parsing failed (no body content).
    pub reason: String,
    /// The body as received.
    pub raw_body: String,
}

/// A unit of work.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Job {
    /// Instagram → LiveChat.
    InstagramEvent(InstagramEventJob),
    /// LiveChat → Instagram.
    LivechatEvent(LivechatEventJob),
    /// For the dead-letter queue.
    Unparsed(UnparsedJob),
}

/// A job with its version and receive time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    /// Envelope version.
    pub v: u32,
    /// When the webhook was received.
    pub received_at: DateTime<Utc>,
    /// The job.
    pub job: Job,
}

/// Why a queue body is not a job this build can run.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EnvelopeError {
    /// Written by a newer (or unknown) version.
    #[error("unsupported envelope version {0}")]
    UnsupportedVersion(u64),
    /// Not an envelope at all.
    #[error("malformed envelope: {0}")]
    Malformed(String),
}

impl Envelope {
    /// Wraps a job in the current version.
    pub fn new(job: Job, received_at: DateTime<Utc>) -> Self {
        Self {
            v: ENVELOPE_VERSION,
            received_at,
            job,
        }
    }

    /// Reads a queue body, checking the version before the shape.
    pub fn decode(body: &str) -> Result<Self, EnvelopeError> {
        let value: Value =
            serde_json::from_str(body).map_err(|e| EnvelopeError::Malformed(e.to_string()))?;
        match value.get("v").and_then(Value::as_u64) {
            Some(v) if v == u64::from(ENVELOPE_VERSION) => {}
            Some(v) => return Err(EnvelopeError::UnsupportedVersion(v)),
            None => return Err(EnvelopeError::Malformed("no version".into())),
        }
        serde_json::from_value(value).map_err(|e| EnvelopeError::Malformed(e.to_string()))
    }

    /// The message group: one conversation, so order holds per conversation.
    pub fn group(&self) -> String {
        match &self.job {
            Job::InstagramEvent(j) => format!("ig:{}:{}", j.ig_account_id, j.igsid),
            Job::LivechatEvent(j) => format!(
                "lc:{}:{}",
                j.organization_id,
                j.chat_id.as_deref().unwrap_or("-")
            ),
            Job::Unparsed(j) => format!("unparsed:{}", source_name(j.source)),
        }
    }

    /// The deduplication id: the platform's event id.
    pub fn dedup_id(&self) -> String {
        match &self.job {
            Job::InstagramEvent(j) => format!("ig:{}:{}", j.ig_account_id, j.event_id),
            Job::LivechatEvent(j) => format!("lc:{}:{}", j.organization_id, j.event_id),
            Job::Unparsed(j) => format!(
                "unparsed:{}",
                hex::encode(Sha256::digest(j.raw_body.as_bytes()))
            ),
        }
    }

    /// The queue message for this envelope.
    pub fn to_message(&self) -> OutgoingMessage {
        let body = serde_json::to_string(self).expect("an envelope always serializes");
        OutgoingMessage::new(&self.group(), &self.dedup_id(), body)
    }
}

fn source_name(s: Source) -> &'static str {
    match s {
        Source::Instagram => "instagram",
        Source::Livechat => "livechat",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ig_job() -> Envelope {
        Envelope::new(
            Job::InstagramEvent(InstagramEventJob {
                ig_account_id: "17841400000000001".into(),
                igsid: "IGSID_1001".into(),
                event_id: "MID_TEXT_0001".into(),
                field: "messaging".into(),
                entry_time: Some(json!(1569262486134u64)),
                item: json!({"sender":{"id":"IGSID_1001"},"message":{"mid":"MID_TEXT_0001","text":"hi","future_field":[1]}}),
            }),
            "2026-01-01T00:00:00Z".parse().unwrap(),
        )
    }

    #[test]
    fn round_trips_keeping_unknown_item_fields() {
        let env = ig_job();
        let msg = env.to_message();
        assert_eq!(msg.group_id, "ig:17841400000000001:IGSID_1001");
        assert_eq!(msg.dedup_id, "ig:17841400000000001:MID_TEXT_0001");
        let back = Envelope::decode(&msg.body).unwrap();
        assert_eq!(back, env);
        let Job::InstagramEvent(j) = back.job else {
            panic!("kind")
        };
        assert_eq!(j.item["message"]["future_field"], json!([1]));
    }

    #[test]
    fn version_is_checked_before_shape() {
        let mut v: Value = serde_json::from_str(&ig_job().to_message().body).unwrap();
        v["v"] = json!(2);
        v["job"] = json!({"kind":"something_new"});
        assert_eq!(
            Envelope::decode(&v.to_string()).unwrap_err(),
            EnvelopeError::UnsupportedVersion(2)
        );
        assert!(matches!(
            Envelope::decode("{}"),
            Err(EnvelopeError::Malformed(_))
        ));
        assert!(matches!(
            Envelope::decode("nope"),
            Err(EnvelopeError::Malformed(_))
        ));
        let unknown_kind = json!({"v":1,"received_at":"2026-01-01T00:00:00Z","job":{"kind":"x"}});
        assert!(matches!(
            Envelope::decode(&unknown_kind.to_string()),
            Err(EnvelopeError::Malformed(_))
        ));
    }

    #[test]
    fn unparsed_jobs_dedup_on_the_body_and_long_mids_fit_sqs() {
        let env = Envelope::new(
            Job::Unparsed(UnparsedJob {
                source: Source::Instagram,
                reason: "expected value at line 1".into(),
                raw_body: "{not json".into(),
            }),
            Utc::now(),
        );
        let m = env.to_message();
        assert_eq!(m.group_id, "unparsed:instagram");
        assert!(m.dedup_id.len() <= 128);

        let mut long = ig_job();
        if let Job::InstagramEvent(j) = &mut long.job {
            j.event_id = "aWdfZAG1faXRlbToxOklHTWVzc2FnZA".repeat(6);
        }
        assert!(long.to_message().dedup_id.len() <= 128);
    }
}
