//! The versioned job envelopes that travel on the queues, from the ingest functions to the
//! workers. Jobs carry the platform's raw item (unknown fields kept) so nothing is lost between
//! parse and delivery. A tenant's job travels sealed under its organization's data key
//! ([`SealedEnvelope`], see `datakey`): only the organization id, the receive time and keyed
//! hashes for the queue's ids are readable, so destroying the key at uninstall makes every queued
//! and parked copy unreadable. Only bodies no tenant can be named for (unparseable ones) travel
//! in the clear, and the queues' 6-day retention bounds them.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::cipher::EncryptedToken;
use crate::datakey::DataKey;
use crate::ids::{ChatId, IgAccountId, Igsid, OrgId};
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
    pub ig_account_id: IgAccountId,
    /// The customer's IGSID (the other party).
    pub igsid: Igsid,
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
    pub organization_id: OrgId,
    /// The webhook action (`incoming_event`, …).
    pub action: String,
    /// The event id used for deduplication.
    pub event_id: String,
    /// The chat, when the action has one.
    pub chat_id: Option<ChatId>,
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
    /// The body as received (or one part of it, see `part`).
    pub raw_body: String,
    /// For a body too large for one queue message: which part this is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub part: Option<BodyPart>,
}

/// One part of a body split across queue messages (1-based).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BodyPart {
    /// This part.
    pub index: u32,
    /// How many parts.
    pub count: u32,
}

/// Why and when a job was parked in a dead-letter queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Parked {
    /// Log-safe reason.
    pub reason: String,
    /// When.
    pub at: DateTime<Utc>,
    /// The work queue's message id.
    pub message_id: String,
    /// Set when the job waits for its installation to be repaired: the repair replays it
    /// (`crate::health::replay`); other parked jobs wait for a human.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blocked: Option<Blocked>,
}

/// What a parked job waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Blocked {
    /// An Instagram connection's Page token was refused: reconnecting it repairs it.
    ConnectionBroken,
    /// LiveChat refused the installation's refresh token: re-authorizing repairs it.
    ReauthorizationNeeded,
}

impl Blocked {
    /// The log-safe reason a job parked for it carries.
    pub fn reason(self) -> &'static str {
        match self {
            Blocked::ConnectionBroken => {
                "the Instagram connection is broken (Page token refused); replayed when it is reconnected"
            }
            Blocked::ReauthorizationNeeded => {
                "the LiveChat installation needs re-authorization; replayed when it is renewed"
            }
        }
    }
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
    /// Set on dead-letter copies; removed by redrive.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parked: Option<Parked>,
    /// When a repair's replay put it back: its retries and its delivery latency count from
    /// then (a job parked for two days is not "held too long" on its first attempt after).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replayed_at: Option<DateTime<Utc>>,
}

impl Envelope {
    /// When the job's current run of attempts started: its replay, or its receipt.
    pub fn attempts_since(&self) -> DateTime<Utc> {
        self.replayed_at.unwrap_or(self.received_at)
    }
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
            parked: None,
            replayed_at: None,
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

    /// The message group: one conversation, so order holds per conversation. Echoes of what
    /// the business sent have a group of their own beside it: an echo may be what completes one
    /// of the bridge's own sends (its answer lost), and must not wait behind the conversation's
    /// customer messages while LiveChat refuses them — past the echo window, the send would be
    /// made again. Echoes keep their order among themselves.
    pub fn group(&self) -> String {
        match &self.job {
            Job::InstagramEvent(j) => instagram_group(
                &j.ig_account_id,
                &j.igsid,
                j.item.pointer("/message/is_echo") == Some(&Value::Bool(true)),
            ),
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
            Job::InstagramEvent(j) => instagram_dedup_id(&j.ig_account_id, &j.event_id),
            Job::LivechatEvent(j) => format!("lc:{}:{}", j.organization_id, j.event_id),
            Job::Unparsed(j) => format!(
                "unparsed:{}:{}",
                hex::encode(Sha256::digest(j.raw_body.as_bytes())),
                j.part.map(|p| p.index).unwrap_or(0)
            ),
        }
    }

    /// The queue message for this envelope.
    pub fn to_message(&self) -> OutgoingMessage {
        let body = serde_json::to_string(self).expect("an envelope always serializes");
        OutgoingMessage::new(&self.group(), &self.dedup_id(), body)
    }
}

/// A tenant's job on the wire: the job sealed under the organization's data key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SealedEnvelope {
    /// Envelope version.
    pub v: u32,
    /// Whose key opens it.
    pub organization_id: OrgId,
    /// When the webhook was received.
    pub received_at: DateTime<Utc>,
    /// The message group, keyed-hashed (one conversation, without naming the customer).
    pub group: String,
    /// The deduplication id, keyed-hashed.
    pub dedup: String,
    /// The [`Job`], JSON, sealed.
    pub sealed: EncryptedToken,
    /// Set on dead-letter copies (log-safe, so outside the seal); removed by redrive.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parked: Option<Parked>,
    /// When a replay put it back ([`Envelope::replayed_at`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replayed_at: Option<DateTime<Utc>>,
}

/// What a queue body holds.
#[derive(Debug, Clone, PartialEq)]
pub enum Wire {
    /// A job in the clear (unparseable bodies; bodies written before sealing).
    Plain(Envelope),
    /// A tenant's sealed job.
    Sealed(SealedEnvelope),
}

impl Envelope {
    /// Seals the envelope under the organization's data key.
    pub fn seal(&self, org: &OrgId, key: &DataKey) -> SealedEnvelope {
        let job = serde_json::to_string(&self.job).expect("a job always serializes");
        let mut sealed = SealedEnvelope::seal_job(
            org,
            key,
            self.received_at,
            (&self.group(), &self.dedup_id()),
            job,
        );
        sealed.parked = self.parked.clone();
        sealed.replayed_at = self.replayed_at;
        sealed
    }
}

/// The message group of an Instagram event (see [`Envelope::group`]).
pub fn instagram_group(account: &str, igsid: &str, echo: bool) -> String {
    if echo {
        format!("ig:{account}:{igsid}:echoes")
    } else {
        format!("ig:{account}:{igsid}")
    }
}

/// The deduplication id of an Instagram event (see [`Envelope::dedup_id`]).
pub fn instagram_dedup_id(account: &str, event_id: &str) -> String {
    format!("ig:{account}:{event_id}")
}

impl SealedEnvelope {
    /// Seals a job already written as JSON (the ack path writes it straight from the raw
    /// item), with its natural group and deduplication ids.
    pub fn seal_job(
        org: &OrgId,
        key: &DataKey,
        received_at: DateTime<Utc>,
        (group, dedup): (&str, &str),
        job_json: String,
    ) -> Self {
        SealedEnvelope {
            v: ENVELOPE_VERSION,
            organization_id: org.to_owned(),
            received_at,
            group: key.queue_id(group),
            dedup: key.queue_id(dedup),
            sealed: key.seal(org, job_json),
            parked: None,
            replayed_at: None,
        }
    }
}

impl SealedEnvelope {
    /// Opens it with the organization's data key.
    pub fn open(&self, key: &DataKey) -> Result<Envelope, EnvelopeError> {
        let job = key
            .open(&self.organization_id, &self.sealed)
            .map_err(|e| EnvelopeError::Malformed(e.to_string()))?;
        Ok(Envelope {
            v: self.v,
            received_at: self.received_at,
            job: serde_json::from_str(&job).map_err(|e| EnvelopeError::Malformed(e.to_string()))?,
            parked: self.parked.clone(),
            replayed_at: self.replayed_at,
        })
    }

    /// The queue message.
    pub fn to_message(&self) -> OutgoingMessage {
        let body = serde_json::to_string(self).expect("an envelope always serializes");
        OutgoingMessage::new(&self.group, &self.dedup, body)
    }
}

impl Wire {
    /// Reads a queue body, checking the version before the shape.
    pub fn decode(body: &str) -> Result<Self, EnvelopeError> {
        let value: Value =
            serde_json::from_str(body).map_err(|e| EnvelopeError::Malformed(e.to_string()))?;
        match value.get("v").and_then(Value::as_u64) {
            Some(v) if v == u64::from(ENVELOPE_VERSION) => {}
            Some(v) => return Err(EnvelopeError::UnsupportedVersion(v)),
            None => return Err(EnvelopeError::Malformed("no version".into())),
        }
        let malformed = |e: serde_json::Error| EnvelopeError::Malformed(e.to_string());
        if value.get("sealed").is_some() {
            serde_json::from_value(value)
                .map(Wire::Sealed)
                .map_err(malformed)
        } else {
            serde_json::from_value(value)
                .map(Wire::Plain)
                .map_err(malformed)
        }
    }

    /// Marks (or, with `None`, unmarks) it as parked.
    pub fn parked(&self) -> Option<&Parked> {
        match self {
            Wire::Plain(e) => e.parked.as_ref(),
            Wire::Sealed(e) => e.parked.as_ref(),
        }
    }

    /// Marks it replayed at `at`.
    pub fn set_replayed_at(&mut self, at: DateTime<Utc>) {
        match self {
            Wire::Plain(e) => e.replayed_at = Some(at),
            Wire::Sealed(e) => e.replayed_at = Some(at),
        }
    }

    /// Sets or clears the dead-letter marking.
    pub fn set_parked(&mut self, parked: Option<Parked>) {
        match self {
            Wire::Plain(e) => e.parked = parked,
            Wire::Sealed(e) => e.parked = parked,
        }
    }

    /// Whether it is an unparsed body (nothing a worker can do with it).
    pub fn is_unparsed(&self) -> bool {
        matches!(
            self,
            Wire::Plain(Envelope {
                job: Job::Unparsed(_),
                ..
            })
        )
    }

    /// The queue message.
    pub fn to_message(&self) -> OutgoingMessage {
        match self {
            Wire::Plain(e) => e.to_message(),
            Wire::Sealed(e) => e.to_message(),
        }
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
        let mut echo = env.clone();
        if let Job::InstagramEvent(j) = &mut echo.job {
            j.item["message"]["is_echo"] = json!(true);
        }
        assert_eq!(echo.group(), "ig:17841400000000001:IGSID_1001:echoes");
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
                part: None,
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

/// Raw bytes per part when an unparseable body is split (JSON escaping can grow text up to six
/// times, and a queue message holds 256 KiB).
const PART_BYTES: usize = 40 * 1024;

/// Wraps an authentic but unparseable body as unparsed jobs for the dead-letter queue, split into
/// parts that each fit a queue message. Invalid UTF-8 is kept losslessly as base64.
pub fn unparsed_jobs(
    source: Source,
    reason: &str,
    raw: &[u8],
    now: DateTime<Utc>,
) -> Vec<Envelope> {
    use base64::Engine;
    let text = match std::str::from_utf8(raw) {
        Ok(s) => s.to_string(),
        Err(_) => format!(
            "base64:{}",
            base64::engine::general_purpose::STANDARD.encode(raw)
        ),
    };
    let mut parts = Vec::new();
    let mut rest = text.as_str();
    while !rest.is_empty() || parts.is_empty() {
        let mut cut = rest.len().min(PART_BYTES);
        while !rest.is_char_boundary(cut) {
            cut -= 1;
        }
        parts.push(&rest[..cut]);
        rest = &rest[cut..];
    }
    let count = parts.len() as u32;
    parts
        .into_iter()
        .enumerate()
        .map(|(i, p)| {
            Envelope::new(
                Job::Unparsed(UnparsedJob {
                    source,
                    reason: reason.to_string(),
                    raw_body: p.to_string(),
                    part: (count > 1).then_some(BodyPart {
                        index: i as u32 + 1,
                        count,
                    }),
                }),
                now,
            )
        })
        .collect()
}

#[cfg(test)]
mod unparsed_tests {
    use super::*;

    #[test]
    fn large_bodies_split_losslessly_into_queue_sized_parts() {
        let body = "ä\u{200a}".repeat(200_000);
        let envs = unparsed_jobs(Source::Instagram, "bad", body.as_bytes(), Utc::now());
        assert!(envs.len() > 1);
        let mut joined = String::new();
        for (i, e) in envs.iter().enumerate() {
            let m = e.to_message();
            assert!(
                m.body.len() <= crate::queue::MAX_BATCH_BYTES,
                "part {i} too big"
            );
            let Job::Unparsed(u) = &e.job else { panic!() };
            assert_eq!(u.part.unwrap().index, i as u32 + 1);
            joined.push_str(&u.raw_body);
        }
        assert_eq!(joined, body);
        let ids: std::collections::HashSet<_> = envs.iter().map(|e| e.dedup_id()).collect();
        assert_eq!(ids.len(), envs.len());
    }

    #[test]
    fn invalid_utf8_is_kept_as_base64() {
        let envs = unparsed_jobs(Source::Livechat, "bad", &[0xff, 0xfe, b'{'], Utc::now());
        let Job::Unparsed(u) = &envs[0].job else {
            panic!()
        };
        assert_eq!(u.raw_body, "base64://57");
        assert!(u.part.is_none());
    }
}
