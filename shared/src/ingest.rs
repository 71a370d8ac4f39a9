//! Ingest: an authenticated webhook body split into jobs, each sealed under its organization's
//! data key and queued (or parked) before the platform gets its answer. The HTTP routes that
//! authenticate the bodies and answer are in `crate::web::instagram_webhook` and
//! `crate::web::livechat_webhook`.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use secrecy::{ExposeSecret, SecretString};

use crate::clock::Clock;
use crate::datakey::{DataKey, DataKeys};
use crate::domain::{AccountRoute, ChatRoute};
use crate::ids::OrgId;
use crate::instagram::webhook;
use crate::jobs::{Envelope, Job, SealedEnvelope, Source, unparsed_jobs};
use crate::queue::{OutgoingMessage, Queue, QueueError};
use crate::store::{Repo, StoreError};

/// Why a body could not be queued: nothing may be acknowledged, the platform retries.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// The table (routes, data keys) failed.
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// The queue (or its dead-letter queue) refused the messages.
    #[error("queue: {0}")]
    Queue(#[from] QueueError),
}

/// Webhook bodies accepted up to this size (Lambda's own limit is 6 MB; Meta has sent > 300 KB).
pub const MAX_BODY_BYTES: usize = 6 * 1024 * 1024;

/// What the Instagram webhook needs.
pub struct InstagramIngest {
    /// Meta app secret (signs the bodies).
    pub app_secret: SecretString,
    /// The handshake's verify token.
    pub verify_token: SecretString,
    /// Routes accounts to installations.
    pub repo: Repo,
    /// The to-livechat queue.
    pub queue: Arc<dyn Queue>,
    /// Its dead-letter queue (unparseable bodies go straight there).
    pub dead_letter: Arc<dyn Queue>,
    /// Receive times.
    pub clock: Arc<dyn Clock>,
    /// Seals each job under its organization's data key.
    pub keys: DataKeys,
}

impl InstagramIngest {
    /// Meta's subscription handshake: the challenge to echo when the mode is `subscribe` and the
    /// verify token is ours (compared in constant time), else `None`.
    pub fn handshake<'a>(
        &self,
        mode: Option<&str>,
        verify_token: Option<&str>,
        challenge: Option<&'a str>,
    ) -> Option<&'a str> {
        let token_ok =
            verify_token.is_some_and(|t| crate::secret_eq(self.verify_token.expose_secret(), t));
        (mode == Some("subscribe") && token_ok)
            .then_some(challenge)
            .flatten()
    }

    /// Whether `signature` (`X-Hub-Signature-256`) signs `body` with the app secret.
    pub fn authentic(&self, signature: Option<&str>, body: &[u8]) -> bool {
        webhook::signature_is_valid(self.app_secret.expose_secret().as_bytes(), signature, body)
    }
}

/// What the ack path did with a body (also what the benchmark measures).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct IngestReport {
    /// Jobs queued for the worker.
    pub queued: usize,
    /// Items for accounts with no installation (acknowledged, not stored).
    pub unrouted: usize,
    /// Messages parked in the dead-letter queue.
    pub parked: usize,
}

/// Splits a verified body and queues its jobs; an error means nothing may be acknowledged.
pub async fn ingest_instagram(
    state: &InstagramIngest,
    body: &[u8],
) -> Result<IngestReport, IngestError> {
    let now = state.clock.now();
    let dead_letter = state.dead_letter.as_ref();
    let jobs = match webhook::split(body) {
        Ok(jobs) => jobs,
        Err(e) => {
            let (source, reason) = (Source::Instagram, e.to_string());
            let parked = park_unparsed(dead_letter, source, &reason, body, now, None).await?;
            return Ok(IngestReport {
                parked,
                ..IngestReport::default()
            });
        }
    };
    let routed = routes(state, &jobs).await?;
    let sealed = seal_all(&jobs, &routed, now);
    state.queue.send(&sealed.messages).await?;
    let mut report = IngestReport {
        queued: sealed.messages.len(),
        unrouted: sealed.unrouted,
        parked: 0,
    };
    // An item too large for the queue is kept whole (and sealed) in the dead-letter queue.
    for (org, key, body) in sealed.oversized {
        let reason = "item too large for the queue";
        let seal = Some((org, key));
        report.parked += park_unparsed(
            dead_letter,
            Source::Instagram,
            reason,
            body.as_bytes(),
            now,
            seal,
        )
        .await?;
    }
    Ok(report)
}

/// A body's jobs sealed for the queue, those too large for it, and how many had no route.
struct Sealed<'a> {
    messages: Vec<OutgoingMessage>,
    oversized: Vec<(&'a OrgId, &'a DataKey, String)>,
    unrouted: usize,
}

/// Seals each routed job under its organization's data key.
fn seal_all<'a>(
    jobs: &[webhook::SplitItem<'_>],
    routed: &'a HashMap<String, (OrgId, DataKey)>,
    now: DateTime<Utc>,
) -> Sealed<'a> {
    let mut sealed = Sealed {
        messages: Vec::with_capacity(jobs.len()),
        oversized: Vec::new(),
        unrouted: 0,
    };
    for job in jobs {
        let Some((org, key)) = routed.get(job.ig_account_id.as_ref()) else {
            sealed.unrouted += 1;
            continue;
        };
        let ids = (job.group(), job.dedup_id());
        let envelope = SealedEnvelope::seal_job(org, key, now, (&ids.0, &ids.1), job.job_json());
        let msg = envelope.to_message();
        if msg.body.len() > crate::queue::MAX_BATCH_BYTES {
            // Kept whole: the envelope, or (an item too deep to own) the job as written.
            let body = match job.to_job() {
                Ok(j) => serde_json::to_string(&Envelope::new(Job::InstagramEvent(j), now))
                    .expect("an envelope always serializes"),
                Err(_) => job.job_json(),
            };
            sealed.oversized.push((org, key, body));
        } else {
            sealed.messages.push(msg);
        }
    }
    sealed
}

/// Parks a body the bridge cannot queue in the dead-letter queue, whole, with the reason
/// (sealed when its organization is known): how many messages that took.
async fn park_unparsed(
    dead_letter: &dyn Queue,
    source: Source,
    reason: &str,
    body: &[u8],
    now: DateTime<Utc>,
    seal: Option<(&OrgId, &DataKey)>,
) -> Result<usize, IngestError> {
    let parked = unparsed_jobs(source, reason, body, now);
    let messages: Vec<_> = parked
        .iter()
        .map(|e| match seal {
            Some((org, key)) => e.seal(org, key).to_message(),
            None => e.to_message(),
        })
        .collect();
    dead_letter.send(&messages).await?;
    Ok(messages.len())
}

/// The organization and data key of each account in a body that has a route; the rest are
/// acknowledged without being stored.
async fn routes(
    state: &InstagramIngest,
    jobs: &[webhook::SplitItem<'_>],
) -> Result<HashMap<String, (OrgId, DataKey)>, IngestError> {
    let accounts: BTreeSet<&str> = jobs.iter().map(|j| j.ig_account_id.as_ref()).collect();
    let mut routed = HashMap::new();
    for account in accounts {
        let route = state
            .repo
            .get::<AccountRoute>(&AccountRoute::key_for(&account.into()))
            .await?;
        if let Some(route) = route {
            let key = state.keys.to_seal(&route.organization_id).await?;
            // No key: uninstalled while this body was on its way; acknowledged, not stored.
            if let Some(key) = key {
                routed.insert(account.to_string(), (route.organization_id, key));
            }
        }
    }
    Ok(routed)
}

/// What the LiveChat chat webhook needs.
pub struct LivechatIngest {
    /// The `secret_key` LiveChat puts in chat webhook bodies (current or previous).
    pub webhook_secret: crate::config::RotatingSecret,
    /// Finds installations.
    pub repo: Repo,
    /// The to-instagram queue.
    pub queue: Arc<dyn Queue>,
    /// Its dead-letter queue.
    pub dead_letter: Arc<dyn Queue>,
    /// Receive times.
    pub clock: Arc<dyn Clock>,
    /// Seals each job under its organization's data key.
    pub keys: DataKeys,
}

/// Queues an authentic LiveChat webhook (or parks it); an error means nothing may be acknowledged.
pub async fn ingest_livechat(
    state: &LivechatIngest,
    value: serde_json::Value,
    raw: &[u8],
) -> Result<&'static str, IngestError> {
    use crate::livechat::webhook::{Decision, decide};
    let now = state.clock.now();
    match decide(value) {
        Err(unreadable) => {
            let reason = unreadable.to_string();
            // The raw body holds the secret_key; park it without.
            let mut clean: serde_json::Value = serde_json::from_slice(raw).unwrap_or_default();
            if let Some(o) = clean.as_object_mut() {
                o.remove("secret_key");
            }
            let body = clean.to_string();
            let dead_letter = state.dead_letter.as_ref();
            park_unparsed(
                dead_letter,
                Source::Livechat,
                &reason,
                body.as_bytes(),
                now,
                None,
            )
            .await?;
            Ok("parked")
        }
        Ok(Decision::Ignore(why)) => Ok(why),
        Ok(Decision::Enqueue(job)) => enqueue_livechat(state, job, now).await,
    }
}

/// Queues a LiveChat job of a chat the bridge created, sealed; what became of it.
async fn enqueue_livechat(
    state: &LivechatIngest,
    job: crate::jobs::LivechatEventJob,
    now: DateTime<Utc>,
) -> Result<&'static str, IngestError> {
    // Only chats the bridge created enter the queue: the text of every other chat of
    // the license is acknowledged and never stored.
    let Some(chat) = job.chat_id.as_ref() else {
        return Ok("not bridged: no chat");
    };
    let route = state
        .repo
        .get::<ChatRoute>(&ChatRoute::key_for(&job.organization_id, chat))
        .await?;
    if route.is_none() {
        return Ok("not bridged");
    }
    let org = job.organization_id.clone();
    let Some(key) = state.keys.to_seal(&org).await? else {
        return Ok("uninstalled");
    };
    let envelope = Envelope::new(Job::LivechatEvent(job), now);
    let msg = envelope.seal(&org, &key).to_message();
    if msg.body.len() > crate::queue::MAX_BATCH_BYTES {
        // Too large for a queue message: refusing would make LiveChat retry it forever.
        // Parked with its ids only (no text), for a human to look up in LiveChat.
        let parked = too_large(envelope, msg.body.len(), now);
        state
            .dead_letter
            .send(&[parked.seal(&org, &key).to_message()])
            .await?;
        return Ok("parked: too large to queue");
    }
    state.queue.send(&[msg]).await?;
    Ok("queued")
}

/// The dead-letter copy of a LiveChat job too large to queue: its ids, never its content.
fn too_large(mut env: Envelope, bytes: usize, now: chrono::DateTime<chrono::Utc>) -> Envelope {
    if let Job::LivechatEvent(job) = &mut env.job {
        let w = &job.webhook;
        job.webhook = serde_json::json!({
            "webhook_id": w.get("webhook_id"),
            "action": job.action,
            "organization_id": job.organization_id,
            "payload": {
                "chat_id": w.pointer("/payload/chat_id"),
                "thread_id": w.pointer("/payload/thread_id"),
                "event": {"id": w.pointer("/payload/event/id"), "type": w.pointer("/payload/event/type")},
            },
        });
    }
    env.parked = Some(crate::jobs::Parked {
        reason: format!("LiveChat webhook too large to queue ({bytes} bytes); ids only"),
        at: now,
        message_id: String::new(),
        blocked: None,
    });
    env
}
