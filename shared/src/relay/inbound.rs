//! instagram-to-livechat: delivers each Instagram event into the customer's LiveChat chat,
//! exactly once, acting as the customer through the agent-token customer grant.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::customer::{Customers, Fail, Session, notice_event};
use super::render::{Action, Context, Part, referral_fields, render, split_text};
use crate::cipher::TokenCipher;
use crate::clock::Clock;
use crate::domain::*;
use crate::instagram::event::{InboundEvent, ReplyTo, classify, timestamp};
use crate::instagram::graph::{GraphClient, GraphError};
use crate::jobs::{Envelope, InstagramEventJob, Job, Source};
use crate::livechat::{LivechatClient, LivechatError};
use crate::store::{Condition, Repo, StoreError};
use crate::worker::{JobHandler, Outcome};

/// How long after a send starts its echo may still be in flight.
pub const PENDING_SEND_WINDOW_SECS: i64 = 30;
/// How long an echo waits for an in-flight send to be recorded.
const ECHO_RETRY_AFTER: Duration = Duration::from_secs(10);

/// The instagram-to-livechat worker.
pub struct Inbound {
    /// Records.
    pub repo: Repo,
    /// Token cipher.
    pub cipher: TokenCipher,
    /// LiveChat client.
    pub livechat: LivechatClient,
    /// Graph API client.
    pub graph: GraphClient,
    /// Time.
    pub clock: Arc<dyn Clock>,
}

fn custom_id(key: &str, index: usize) -> String {
    if index == 0 {
        format!("ig:{key}")
    } else {
        format!("ig:{key}:{index}")
    }
}

fn file_name(url: &str, kind: &str, content_type: &str) -> String {
    let ext = match content_type.split(';').next().unwrap_or("").trim() {
        "image/jpeg" => "jpg",
        "image/png" => "png",
        "image/gif" => "gif",
        "image/webp" => "webp",
        "video/mp4" => "mp4",
        "audio/mpeg" => "mp3",
        "audio/mp4" | "audio/aac" => "m4a",
        "application/pdf" => "pdf",
        _ => "bin",
    };
    let stem = url
        .split('?')
        .next()
        .and_then(|p| p.rsplit('/').find(|s| !s.is_empty()))
        .filter(|s| {
            s.len() < 64
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        })
        .unwrap_or(kind);
    format!("{stem}.{ext}")
}

#[async_trait]
impl JobHandler for Inbound {
    fn source(&self) -> Source {
        Source::Instagram
    }

    async fn handle(&self, envelope: &Envelope, _receive_count: u32) -> Outcome {
        let Job::InstagramEvent(job) = &envelope.job else {
            return Outcome::Park("not an Instagram event job".into());
        };
        match self.run(job).await {
            Ok(outcome) => outcome,
            Err(fail) => fail.outcome(),
        }
    }
}

impl Inbound {
    async fn run(&self, job: &InstagramEventJob) -> Result<Outcome, Fail> {
        let now = self.clock.now();
        let ig = job.ig_account_id.as_str();
        let Some(route) = self
            .repo
            .get::<AccountRoute>(&AccountRoute::key_for(ig))
            .await?
        else {
            return Ok(Outcome::Skipped(
                "no installation for this Instagram account",
            ));
        };
        let org = route.organization_id;
        let Some(mut inst) = self
            .repo
            .get::<Installation>(&Installation::key_for(&org))
            .await?
        else {
            return Ok(Outcome::Skipped("installation not found"));
        };
        match inst.status {
            InstallationStatus::Uninstalled => {
                return Ok(Outcome::Skipped("installation uninstalled"));
            }
            InstallationStatus::ReauthRequired => {
                return Err(Fail::Park(
                    "the LiveChat installation needs re-authorization; redrive after it is renewed"
                        .into(),
                ));
            }
            InstallationStatus::Active => {}
        }
        let Some(conn) = self
            .repo
            .get::<InstagramConnection>(&InstagramConnection::key_for(&org, ig))
            .await?
        else {
            return Ok(Outcome::Skipped("no Instagram connection"));
        };
        if conn.status == ConnectionStatus::Disconnected {
            return Ok(Outcome::Skipped("Instagram connection disconnected"));
        }
        let event = classify(&job.field, &job.item);
        let at = timestamp(&job.item).unwrap_or(now);

        if let InboundEvent::Message(m) = &event {
            if m.is_echo {
                let link = self
                    .repo
                    .get::<MessageLink>(&MessageLink::key_for(&org, ig, &m.mid))
                    .await?;
                if link.is_some_and(|l| l.direction == Direction::Outbound) {
                    return Ok(Outcome::Skipped("echo of a message this app sent"));
                }
                let pending = self
                    .repo
                    .query_prefix::<PendingSend>(&PendingSend::partition(&org, ig, &job.igsid), "")
                    .await?;
                if pending
                    .iter()
                    .any(|p| (now - p.started_at).num_seconds() < PENDING_SEND_WINDOW_SECS)
                {
                    return Ok(Outcome::Retry {
                        reason: "echo while a send to this customer is in flight".into(),
                        after: Some(ECHO_RETRY_AFTER),
                    });
                }
            }
        }

        // Exactly once: claim the event; a claim left in progress means an earlier attempt may
        // have reached LiveChat, so look there before sending again.
        let idem_id = format!("{ig}:{}", job.event_id);
        let claim = IdempotencyRecord {
            organization_id: org.clone(),
            scope: "instagram".into(),
            event_id: idem_id.clone(),
            state: IdempotencyState::InProgress,
            claimed_at: now,
            completed_at: None,
            parts_done: 0,
            expires_at: now.timestamp() + IDEMPOTENCY_TTL_SECS,
        };
        let recovering = match self.repo.put(&claim, Condition::IfAbsent).await {
            Ok(()) => false,
            Err(StoreError::ConditionFailed) => {
                let prior = self
                    .repo
                    .get::<IdempotencyRecord>(&IdempotencyRecord::key_for(
                        &org,
                        "instagram",
                        &idem_id,
                    ))
                    .await?;
                if prior.is_some_and(|p| p.state == IdempotencyState::Done) {
                    return Ok(Outcome::Skipped("already delivered"));
                }
                true
            }
            Err(e) => return Err(e.into()),
        };

        let outcome = self
            .act(&mut inst, &conn, job, &event, at, recovering)
            .await?;

        let done = IdempotencyRecord {
            state: IdempotencyState::Done,
            completed_at: Some(self.clock.now()),
            ..claim
        };
        self.repo.put(&done, Condition::Always).await?;
        Ok(outcome)
    }

    async fn act(
        &self,
        inst: &mut Installation,
        conn: &InstagramConnection,
        job: &InstagramEventJob,
        event: &InboundEvent,
        at: DateTime<Utc>,
        recovering: bool,
    ) -> Result<Outcome, Fail> {
        let org = inst.organization_id.clone();
        let ig = conn.ig_account_id.as_str();
        let referenced = match event {
            InboundEvent::Message(m) => match &m.reply_to {
                Some(ReplyTo::Message(mid)) => Some(mid.clone()),
                _ => None,
            },
            InboundEvent::Reaction(r) => Some(r.mid.clone()),
            InboundEvent::Edit { mid, .. } => Some(mid.clone()),
            _ => None,
        };
        let action = render(event, &Context::default());
        let create = matches!(action, Action::Post(_));
        let Some(mut session) = self.session(inst, conn, &job.igsid, create).await? else {
            tracing::info!("event for a customer who has no chat yet; nothing to do");
            return Ok(Outcome::Skipped("no chat for this customer yet"));
        };
        let outcome = match action {
            Action::MarkSeen => {
                if let Some(chat_id) = session.contact.chat_id.clone() {
                    let body = json!({"chat_id": chat_id, "seen_up_to": at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)});
                    self.customers()
                        .action(inst, &mut session, "mark_events_as_seen", body)
                        .await?;
                }
                Outcome::Done
            }
            Action::Delete(mid) => {
                let link = self
                    .repo
                    .get::<MessageLink>(&MessageLink::key_for(&org, ig, &mid))
                    .await?;
                match link {
                    None => {
                        tracing::info!(
                            unsend_unknown = 1,
                            "unsend of a message with no link; nothing to delete"
                        );
                        Outcome::Skipped("unsend of an unknown message")
                    }
                    Some(link) => {
                        for event_id in &link.event_ids {
                            let body = json!({"chat_id": link.chat_id, "thread_id": link.thread_id, "event_id": event_id});
                            let res = self
                                .customers()
                                .action(inst, &mut session, "delete_event", body)
                                .await;
                            match res {
                                Ok(_) => {}
                                // Already gone counts as deleted.
                                Err(Fail::Livechat(LivechatError::Api { kind, .. }))
                                    if kind == "not_found" => {}
                                Err(e) => return Err(e),
                            }
                        }
                        Outcome::Done
                    }
                }
            }
            Action::Post(_) => {
                let quote = match &referenced {
                    Some(mid) => self.quote(inst, &mut session, ig, mid).await,
                    None => None,
                };
                let Action::Post(parts) = render(event, &Context { quote }) else {
                    unreachable!("the same event renders the same action")
                };
                if let InboundEvent::Message(m) = event {
                    if let Some(r) = &m.referral {
                        self.set_session_fields(inst, &mut session, referral_fields(r))
                            .await;
                    }
                }
                if let InboundEvent::Referral(r) = event {
                    self.set_session_fields(inst, &mut session, referral_fields(r))
                        .await;
                }
                let (thread_id, event_ids) = self
                    .deliver(inst, &mut session, &job.event_id, parts, recovering)
                    .await?;
                let mid = match event {
                    InboundEvent::Message(m) => Some(m.mid.clone()),
                    InboundEvent::Postback { mid, .. } => mid.clone(),
                    _ => None,
                };
                if let (Some(mid), Some(chat_id)) = (mid, session.contact.chat_id.clone()) {
                    let now = self.clock.now();
                    let expires_at = now.timestamp() + MESSAGE_LINK_TTL_SECS;
                    for event_id in &event_ids {
                        self.repo
                            .put(
                                &EventLink {
                                    organization_id: org.clone(),
                                    chat_id: chat_id.clone(),
                                    event_id: event_id.clone(),
                                    mid: mid.clone(),
                                    expires_at,
                                },
                                Condition::Always,
                            )
                            .await?;
                    }
                    self.repo
                        .put(
                            &MessageLink {
                                organization_id: org.clone(),
                                ig_account_id: ig.to_string(),
                                mid,
                                chat_id,
                                thread_id: Some(thread_id),
                                event_ids,
                                direction: Direction::Inbound,
                                created_at: now,
                                expires_at,
                            },
                            Condition::Always,
                        )
                        .await?;
                }
                Outcome::Done
            }
        };
        if event.is_customer_initiated() {
            let last = session.contact.last_customer_message_at;
            if last.is_none_or(|l| l < at) {
                session.contact.last_customer_message_at = Some(at);
            }
        }
        session.contact.updated_at = self.clock.now();
        self.repo.put(&session.contact, Condition::Always).await?;
        Ok(outcome)
    }

    fn customers(&self) -> Customers {
        Customers {
            repo: self.repo.clone(),
            cipher: self.cipher.clone(),
            livechat: self.livechat.clone(),
            clock: self.clock.clone(),
        }
    }

    /// The customer for an IGSID: found, or created (with its profile) when `create` is set.
    async fn session(
        &self,
        inst: &mut Installation,
        conn: &InstagramConnection,
        igsid: &str,
        create: bool,
    ) -> Result<Option<Session>, Fail> {
        let customers = self.customers();
        let ig = conn.ig_account_id.as_str();
        let mut session = match customers.find(inst, ig, igsid).await? {
            Some(s) => s,
            None if !create => return Ok(None),
            None => customers.create(inst, ig, igsid).await?,
        };
        if session.contact.profile_synced_at.is_none() {
            self.sync_profile(inst, conn, &mut session).await;
        }
        Ok(Some(session))
    }

    /// Sets name, avatar and Instagram ids on the customer; never fails the message.
    async fn sync_profile(
        &self,
        inst: &mut Installation,
        conn: &InstagramConnection,
        session: &mut Session,
    ) {
        let org = inst.organization_id.clone();
        let igsid = session.contact.igsid.clone();
        let page_token = conn.page_token.as_ref().and_then(|t| {
            self.cipher
                .open(
                    t,
                    &token_context(
                        &org,
                        &format!("instagram.page_token:{}", conn.ig_account_id),
                    ),
                )
                .ok()
        });
        let profile = match &page_token {
            Some(token) => match self.graph.profile(&igsid, token).await {
                Ok(p) => Some(p),
                Err(e) => {
                    let code = match &e {
                        GraphError::Api { code, .. } => *code,
                        _ => None,
                    };
                    tracing::warn!(
                        ?code,
                        "Instagram profile fetch failed; the message goes on without it"
                    );
                    None
                }
            },
            None => None,
        };
        let mut fields = vec![json!({"instagram_id": igsid})];
        let mut body = json!({});
        match &profile {
            Some(p) => {
                let handle = p.username.as_ref().map(|u| format!("@{u}"));
                body["name"] = json!(
                    p.name
                        .clone()
                        .or(handle.clone())
                        .unwrap_or_else(|| "Instagram user".into())
                );
                if let Some(pic) = &p.profile_pic {
                    body["avatar"] = json!(pic);
                }
                if let Some(h) = handle {
                    fields.push(json!({"instagram_username": h}));
                }
            }
            None => body["name"] = json!("Instagram user"),
        }
        body["session_fields"] = Value::Array(fields);
        let res = self
            .customers()
            .action(inst, session, "update_customer", body)
            .await;
        match res {
            Ok(_) if profile.is_some() => {
                session.contact.profile_synced_at = Some(self.clock.now())
            }
            Ok(_) => {}
            Err(_) => tracing::warn!("could not set the customer's profile in LiveChat"),
        }
    }

    async fn set_session_fields(
        &self,
        inst: &mut Installation,
        session: &mut Session,
        fields: Vec<Value>,
    ) {
        if fields.is_empty() {
            return;
        }
        let body = json!({"session_fields": fields});
        let res = self
            .customers()
            .action(inst, session, "set_customer_session_fields", body)
            .await;
        if res.is_err() {
            tracing::warn!("could not record the referral on the customer");
        }
    }

    /// The text of the LiveChat event a mid was bridged to, for quoting; best effort.
    async fn quote(
        &self,
        inst: &mut Installation,
        session: &mut Session,
        ig: &str,
        mid: &str,
    ) -> Option<String> {
        let org = inst.organization_id.clone();
        let link = self
            .repo
            .get::<MessageLink>(&MessageLink::key_for(&org, ig, mid))
            .await
            .ok()??;
        let event_id = link.event_ids.first()?.clone();
        let body = json!({"chat_id": link.chat_id, "thread_id": link.thread_id});
        let chat = self
            .customers()
            .action(inst, session, "get_chat", body)
            .await
            .ok()?;
        chat.pointer("/thread/events")?
            .as_array()?
            .iter()
            .find(|e| e.get("id").and_then(Value::as_str) == Some(event_id.as_str()))
            .and_then(|e| e.get("text").and_then(Value::as_str).map(str::to_string))
    }

    /// Custom ids already in the customer's chat (recovery after a crash), with their event ids.
    async fn existing(
        &self,
        inst: &mut Installation,
        session: &mut Session,
    ) -> Result<HashMap<String, (String, String)>, Fail> {
        if session.contact.chat_id.is_none() {
            let list = self
                .customers()
                .action(inst, session, "list_chats", json!({"limit": 1}))
                .await?;
            session.contact.chat_id = list
                .pointer("/chats_summary/0/id")
                .and_then(Value::as_str)
                .map(str::to_string);
        }
        let Some(chat_id) = session.contact.chat_id.clone() else {
            return Ok(HashMap::new());
        };
        let body = json!({"chat_id": chat_id});
        let chat = self
            .customers()
            .action(inst, session, "get_chat", body)
            .await?;
        let thread_id = chat
            .pointer("/thread/id")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        Ok(chat
            .pointer("/thread/events")
            .and_then(Value::as_array)
            .map(|events| {
                events
                    .iter()
                    .filter_map(|e| {
                        Some((
                            e.get("custom_id")?.as_str()?.to_string(),
                            (thread_id.clone(), e.get("id")?.as_str()?.to_string()),
                        ))
                    })
                    .collect()
            })
            .unwrap_or_default())
    }

    /// Builds the LiveChat events for the parts (uploading media), then starts, continues or
    /// resumes the chat. Returns the thread and the event ids, in order.
    async fn deliver(
        &self,
        inst: &mut Installation,
        session: &mut Session,
        key: &str,
        parts: Vec<Part>,
        recovering: bool,
    ) -> Result<(String, Vec<String>), Fail> {
        let org = inst.organization_id.clone();
        let already = if recovering {
            self.existing(inst, session).await?
        } else {
            HashMap::new()
        };
        let mut events = Vec::new();
        let mut ids = Vec::new();
        let mut thread = None;
        let mut index = 0;
        for part in parts {
            let texts: Vec<Value> = match part {
                Part::Text(t) => split_text(&t)
                    .into_iter()
                    .map(|t| json!({"type": "message", "text": t}))
                    .collect(),
                Part::Notice(t) => vec![notice_event(&t, "")],
                Part::File {
                    url,
                    kind,
                    fallback,
                } => {
                    let cid = custom_id(key, index);
                    if already.contains_key(&cid) {
                        vec![json!({"type": "message", "text": fallback})]
                    } else {
                        vec![self.upload(inst, session, &url, &kind).await.map_or_else(
                            || json!({"type": "message", "text": fallback}),
                            |lc_url| json!({"type": "file", "url": lc_url}),
                        )]
                    }
                }
            };
            for mut ev in texts {
                let cid = custom_id(key, index);
                index += 1;
                if let Some((t, id)) = already.get(&cid) {
                    // Delivered by an earlier attempt that did not get to record it.
                    thread.get_or_insert_with(|| t.clone());
                    ids.push(id.clone());
                    continue;
                }
                ev["custom_id"] = json!(cid);
                events.push(ev);
            }
        }
        if events.is_empty() {
            return Ok((thread.unwrap_or_default(), ids));
        }
        let Some(chat_id) = session.contact.chat_id.clone() else {
            let started = self
                .customers()
                .call(inst, session, |lc, tok| {
                    let events = events.clone();
                    let org = org.clone();
                    async move { lc.start_chat(&org, &tok, &events).await }
                })
                .await?;
            session.contact.chat_id = Some(started.chat_id.clone());
            session.contact.thread_id = Some(started.thread_id.clone());
            session.contact.thread_active = Some(true);
            self.repo
                .put(
                    &ChatRoute {
                        organization_id: org.clone(),
                        chat_id: started.chat_id.clone(),
                        ig_account_id: session.contact.ig_account_id.clone(),
                        igsid: session.contact.igsid.clone(),
                        expires_at: None,
                    },
                    Condition::Always,
                )
                .await?;
            self.repo.put(&session.contact, Condition::Always).await?;
            ids.extend(started.event_ids);
            return Ok((started.thread_id, ids));
        };
        let mut thread_id = thread
            .or(session.contact.thread_id.clone())
            .unwrap_or_default();
        // A thread known to be closed is resumed at once; otherwise try it and resume on
        // `chat_inactive`.
        let mut resume_from = (session.contact.thread_active == Some(false)).then_some(0);
        if resume_from.is_none() {
            for (i, ev) in events.iter().enumerate() {
                let sent = self
                    .customers()
                    .call(inst, session, |lc, tok| {
                        let ev = ev.clone();
                        let org = org.clone();
                        let chat_id = chat_id.clone();
                        async move { lc.send_event(&org, &tok, &chat_id, &ev).await }
                    })
                    .await;
                match sent {
                    Ok(id) => ids.push(id),
                    Err(Fail::Livechat(e)) if e.is_chat_inactive() => {
                        resume_from = Some(i);
                        break;
                    }
                    Err(e) => return Err(e),
                }
            }
        }
        if let Some(i) = resume_from {
            let rest = events[i..].to_vec();
            let resumed = self
                .customers()
                .call(inst, session, |lc, tok| {
                    let rest = rest.clone();
                    let org = org.clone();
                    let chat_id = chat_id.clone();
                    async move { lc.resume_chat(&org, &tok, &chat_id, &rest).await }
                })
                .await?;
            thread_id = resumed.thread_id.clone();
            session.contact.thread_id = Some(resumed.thread_id);
            ids.extend(resumed.event_ids);
        }
        session.contact.thread_active = Some(true);
        Ok((thread_id, ids))
    }

    /// Fetches media from Meta's CDN and uploads it to LiveChat; `None` falls back to a link.
    async fn upload(
        &self,
        inst: &mut Installation,
        session: &mut Session,
        url: &str,
        kind: &str,
    ) -> Option<String> {
        let media = match self.graph.download(url).await {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(error = %e, kind, "media download failed; sending the link instead");
                return None;
            }
        };
        let name = file_name(url, kind, &media.content_type);
        let org = inst.organization_id.clone();
        let res = self
            .customers()
            .call(inst, session, |lc, tok| {
                let bytes = media.bytes.clone();
                let ct = media.content_type.clone();
                let name = name.clone();
                let org = org.clone();
                async move { lc.upload_file(&org, &tok, &name, &ct, bytes).await }
            })
            .await;
        match res {
            Ok(url) => Some(url),
            Err(_) => {
                tracing::warn!(
                    kind,
                    "media upload to LiveChat failed; sending the link instead"
                );
                None
            }
        }
    }
}
