//! livechat-to-instagram: sends agent messages, files and read marks from LiveChat to the
//! customer on Instagram through the Send API, within Meta's messaging window, and turns every
//! failure into an action the agent can see.

use std::time::Duration;

use async_trait::async_trait;
use secrecy::SecretString;

use super::claim::Claims;
use super::echo::Echoes;
use crate::cipher::TokenContext;
use crate::customer::Customers;
use crate::domain::*;
use crate::events::{LifecycleEvent, LifecycleKind, publish_logged};
use crate::ids::Stream;
use crate::ids::{EventId, Mid, ThreadId};
use crate::instagram::graph::GraphError;
use crate::instagram::send::{
    Author, MAX_TEXT_BYTES, OutMessage, SendRequest, Window, attachment_type, mark_seen,
    message_body, split_for_instagram, window,
};
use crate::jobs::Blocked;
use crate::jobs::{Envelope, Job, LivechatEventJob, Source};
use crate::livechat::event::{AgentEvent, AgentEventKind};
use crate::livechat::webhook::{ChatWebhook, WebhookThread};
use crate::outcome::Fail;
use crate::outcome::{Attempt, Outcome};
use crate::retry::RetryPolicy;
use crate::store::Condition;
use crate::worker::JobHandler;

/// Pending-send records outlive any send by far; the sweeper removes leftovers.
const PENDING_TTL_SECS: i64 = 24 * 3600;
/// How long an attempt whose answer was lost waits for its echo before the part is sent again.
/// Meta echoes a sent message within seconds (peers measured ~1.4 s); two minutes leave room
/// for a slow webhook or a busy inbound queue.
pub const ECHO_WINDOW: chrono::Duration = chrono::Duration::minutes(2);
/// How often a part waiting for its echo looks again.
pub const ECHO_POLL: Duration = Duration::from_secs(20);
/// An agent's message held longer than this gets one notice in the chat.
pub const DELAY_NOTICE_AFTER: chrono::Duration = chrono::Duration::minutes(5);
/// How long sends to an account pause when Meta reports high usage without saying how long.
const DEFAULT_PAUSE: Duration = Duration::from_secs(60);

/// An agent's event as Send API messages, with whom it is for.
struct Outgoing {
    contact: Contact,
    author: Author,
    event_id: EventId,
    messages: Vec<OutMessage>,
    note: Option<String>,
}

/// A part Meta has (its index, pending-send id, mid, and the LiveChat event it came from).
struct SentPart<'a> {
    index: usize,
    part: &'a str,
    mid: Option<Mid>,
    event_id: &'a EventId,
}

/// What became of one part's send.
enum PartSent {
    /// Sent (now or by an earlier attempt), with Meta's message id.
    Sent(Option<Mid>),
    /// An attempt may have sent it; its echo has not been seen yet.
    Unconfirmed,
}

/// The livechat-to-instagram worker.
pub struct Outbound {
    /// The table, cipher, clock, events and platform clients.
    pub deps: crate::deps::Deps,
    /// Where admins reconnect an account.
    pub public_base_url: String,
    /// Opens the sealed jobs.
    pub keys: crate::datakey::DataKeys,
    /// Metrics, backlog and activity.
    pub observer: crate::health::Observer,
}

/// Everything a job needs about its conversation, found strictly within its organization.
struct Conversation {
    inst: Installation,
    conn: InstagramConnection,
    route: ChatRoute,
}

#[async_trait]
impl JobHandler for Outbound {
    fn source(&self) -> Source {
        Source::Livechat
    }

    fn data_keys(&self) -> Option<&crate::datakey::DataKeys> {
        Some(&self.keys)
    }

    fn observer(&self) -> Option<&crate::health::Observer> {
        Some(&self.observer)
    }

    async fn handle(&self, envelope: &Envelope, attempt: Attempt) -> Outcome {
        let Job::LivechatEvent(job) = &envelope.job else {
            return Outcome::Park("not a LiveChat event job".into());
        };
        match self.run(job, attempt).await {
            Ok(outcome) => outcome,
            Err(fail) => fail.outcome(),
        }
    }
}

/// Who wrote an event: LiveChat agents have e-mail ids; bots have opaque ids.
fn author_of(author_id: &str) -> Author {
    if author_id.contains('@') {
        Author::Human
    } else {
        Author::Bot
    }
}

/// The Send API messages for a LiveChat event, in order, and a note for the agent when the event
/// could not be sent as it is (a file sent as a link); `None` for events not forwarded.
fn messages_for(event: &AgentEventKind) -> Option<(Vec<OutMessage>, Option<String>)> {
    let texts = |t: &str| -> Vec<OutMessage> {
        split_for_instagram(t, MAX_TEXT_BYTES)
            .iter()
            .map(|t| OutMessage::text(t))
            .collect()
    };
    match event {
        AgentEventKind::Message { text } => Some((texts(text), None)),
        AgentEventKind::File {
            url,
            content_type,
            name,
            size,
        } => Some(match attachment_type(content_type, *size) {
            Ok(kind) => (vec![OutMessage::attachment(kind, url)], None),
            Err(why) => (
                texts(&format!("📎 {name}\n{url}")),
                Some(format!(
                    "Sent to Instagram as a link, not as a file: {why}."
                )),
            ),
        }),
        AgentEventKind::RichMessage { elements } => {
            let mut lines = Vec::new();
            for el in elements {
                lines.extend(el.title.iter().chain(&el.subtitle).cloned());
                let buttons = el.buttons.iter().filter_map(|b| b.text.as_ref());
                lines.extend(buttons.map(|t| format!("• {t}")));
            }
            let text = lines.join("\n");
            (!text.is_empty()).then(|| (texts(&text), None))
        }
        AgentEventKind::SystemMessage | AgentEventKind::Other => None,
    }
}

impl Outbound {
    fn customers(&self) -> Customers {
        Customers {
            deps: self.deps.clone(),
        }
    }

    async fn conversation(&self, job: &LivechatEventJob) -> Result<Option<Conversation>, Fail> {
        let org = &job.organization_id;
        let Some(inst) = self
            .deps
            .repo
            .get::<Installation>(&Installation::key_for(org))
            .await?
        else {
            return Ok(None);
        };
        if inst.status == InstallationStatus::Uninstalled {
            return Ok(None);
        }
        let Some(chat_id) = &job.chat_id else {
            return Ok(None);
        };
        // Keys carry the organization: a chat id from another tenant finds nothing here.
        let Some(route) = self
            .deps
            .repo
            .get::<ChatRoute>(&ChatRoute::key_for(org, chat_id))
            .await?
        else {
            return Ok(None);
        };
        let Some(conn) = self
            .deps
            .repo
            .get::<InstagramConnection>(&InstagramConnection::key_for(org, &route.ig_account_id))
            .await?
        else {
            return Ok(None);
        };
        Ok(Some(Conversation { inst, conn, route }))
    }

    async fn run(&self, job: &LivechatEventJob, attempt: Attempt) -> Result<Outcome, Fail> {
        let Some(mut conv) = self.conversation(job).await? else {
            return Ok(Outcome::Skipped("chat not bridged for this organization"));
        };
        self.act(&mut conv, job, attempt).await
    }

    async fn act(
        &self,
        conv: &mut Conversation,
        job: &LivechatEventJob,
        attempt: Attempt,
    ) -> Result<Outcome, Fail> {
        let webhook = match ChatWebhook::parse(&job.webhook) {
            Ok(webhook) => webhook,
            Err(why) => return Ok(Outcome::Park(format!("unreadable LiveChat webhook: {why}"))),
        };
        match webhook {
            ChatWebhook::IncomingEvent {
                thread_id, event, ..
            } => {
                self.forward(conv, &event, thread_id, &job.event_id, attempt)
                    .await
            }
            ChatWebhook::IncomingChat { thread, .. } => {
                self.incoming_chat(conv, thread, attempt).await
            }
            ChatWebhook::EventsMarkedAsSeen { user_id, .. } => self.mark_seen(conv, &user_id).await,
            ChatWebhook::ChatDeactivated { .. } => self.thread_closed(conv).await,
            _ => Ok(Outcome::Skipped("action not forwarded")),
        }
    }

    /// The chat's thread closed: the next Instagram message resumes the chat directly.
    async fn thread_closed(&self, conv: &Conversation) -> Result<Outcome, Fail> {
        let (ig, igsid) = (&conv.route.ig_account_id, &conv.route.igsid);
        let key = Contact::key_for(&conv.inst.organization_id, ig, igsid);
        if let Some(mut contact) = self.deps.repo.get::<Contact>(&key).await? {
            let now = self.deps.clock.now();
            self.deps
                .repo
                .update(&mut contact, |c| {
                    c.thread_active = Some(false);
                    c.updated_at = now;
                    true
                })
                .await?;
        }
        Ok(Outcome::Done)
    }

    fn page_token(&self, conv: &Conversation) -> Result<SecretString, Fail> {
        let token = conv
            .conn
            .page_token
            .as_ref()
            .ok_or_else(|| Fail::Park("the Instagram connection has no Page token".into()))?;
        Ok(self.deps.cipher.open(
            token,
            &TokenContext::Page {
                org: &conv.inst.organization_id,
                ig: &conv.conn.ig_account_id,
            },
        )?)
    }

    async fn contact(&self, conv: &Conversation) -> Result<Option<Contact>, Fail> {
        Ok(self
            .deps
            .repo
            .get::<Contact>(&Contact::key_for(
                &conv.inst.organization_id,
                &conv.route.ig_account_id,
                &conv.route.igsid,
            ))
            .await?)
    }

    /// The one notice of a broken spell, in this chat if it is the first; best effort.
    async fn tell_broken(&self, conv: &mut Conversation) {
        let now = self.deps.clock.now();
        match crate::connection::claim_broken_notice(&self.deps.repo, &conv.conn, now).await {
            Ok(true) => {}
            Ok(false) => return,
            Err(e) => {
                tracing::warn!(error = %e, "could not claim the broken-connection notice");
                return;
            }
        }
        let text = crate::connection::broken_notice_text(&self.public_base_url);
        let id = format!(
            "ig:broken:{}:{}",
            conv.conn.ig_account_id,
            conv.conn.updated_at.timestamp()
        );
        if self.tell(conv, &text, &id).await.is_err() {
            crate::connection::release_broken_notice(&self.deps.repo, &conv.conn).await;
        }
    }

    /// Tells the agent something in the chat, as a bridge notice.
    async fn tell(&self, conv: &mut Conversation, text: &str, custom_id: &str) -> Result<(), Fail> {
        let (ig, igsid) = (&conv.route.ig_account_id, &conv.route.igsid);
        let found = self
            .customers()
            .session(conv.inst.clone(), ig, igsid, false)
            .await?;
        let Some(mut session) = found else {
            return Ok(());
        };
        let told = session.notice(text, custom_id).await;
        // The session may have refreshed the installation's tokens.
        conv.inst = session.inst;
        told
    }

    async fn mark_seen(&self, conv: &mut Conversation, user: &str) -> Result<Outcome, Fail> {
        let Some(contact) = self.contact(conv).await? else {
            return Ok(Outcome::Skipped("no contact"));
        };
        if user == contact.customer_id || author_of(user) != Author::Human {
            return Ok(Outcome::Skipped("not an agent's read"));
        }
        let token = self.page_token(conv)?;
        let body = mark_seen(&contact.igsid);
        match self
            .deps
            .graph
            .send_message(&conv.conn.page_id, &token, &body)
            .await
        {
            Ok(_) => Ok(Outcome::Done),
            Err(e) if e.is_transient() => Err(Fail::Retry(e.to_string())),
            // A read mark that cannot be shown is not worth bothering anyone about.
            Err(e) => {
                tracing::info!(code = ?graph_code(&e), "mark_seen not accepted by Instagram");
                Ok(Outcome::Done)
            }
        }
    }

    /// A thread an agent started or reopened (`incoming_chat`): the contact follows the chat's
    /// current thread, so the next Instagram message goes into it instead of resuming, and the
    /// agent's opening events of that thread reach Instagram like any other agent event.
    async fn incoming_chat(
        &self,
        conv: &mut Conversation,
        thread: WebhookThread,
        attempt: Attempt,
    ) -> Result<Outcome, Fail> {
        let chat_id = conv.route.chat_id.clone();
        if let Some(mut contact) = self.contact(conv).await? {
            let now = self.deps.clock.now();
            self.deps
                .repo
                .update(&mut contact, |c| {
                    c.thread_id = Some(thread.id.clone());
                    c.thread_active = Some(thread.active);
                    c.updated_at = now;
                    true
                })
                .await?;
        }
        for event in thread.events.iter().filter(|e| e.not_forwarded().is_none()) {
            let Some(id) = &event.id else {
                continue;
            };
            // The same key as this event's own `incoming_event` would get: sent once either way.
            let key = format!("{chat_id}:{id}");
            match self
                .forward(conv, event, Some(thread.id.clone()), &key, attempt)
                .await?
            {
                Outcome::Done | Outcome::Skipped(_) => {}
                other => return Ok(other),
            }
        }
        Ok(Outcome::Done)
    }

    async fn forward(
        &self,
        conv: &mut Conversation,
        event: &AgentEvent,
        thread_id: Option<ThreadId>,
        key: &str,
        attempt: Attempt,
    ) -> Result<Outcome, Fail> {
        let outgoing = match self.outgoing(conv, event).await? {
            Ok(outgoing) => outgoing,
            Err(skipped) => return Ok(skipped),
        };
        let notice_id = format!("ig:notice:{key}");
        let (mut claim, win) = match self
            .ready(conv, &outgoing, key, attempt, &notice_id)
            .await?
        {
            Ok(ready) => ready,
            Err(outcome) => return Ok(outcome),
        };
        let token = self.page_token(conv)?;
        let messages = outgoing.messages.iter().enumerate();
        for (i, message) in messages.skip(claim.parts_done as usize) {
            let part = format!("{key}#{i}");
            let body = message_body(&outgoing.contact.igsid, message.clone(), win);
            match self.send_part(conv, &token, &part, message, &body).await? {
                Ok(PartSent::Sent(mid)) => {
                    let sent = SentPart {
                        index: i,
                        part: &part,
                        mid,
                        event_id: &outgoing.event_id,
                    };
                    self.part_sent(conv, &mut claim, sent, thread_id.clone())
                        .await?;
                }
                Ok(PartSent::Unconfirmed) => {
                    let why = "Instagram has not confirmed an earlier attempt yet";
                    return self
                        .held(conv, &mut claim, attempt, why, ECHO_POLL, &notice_id)
                        .await;
                }
                Err(e) => return self.failed(conv, &mut claim, e, &notice_id, attempt).await,
            }
        }
        if let Some(note) = &outgoing.note {
            self.tell(conv, note, &format!("{notice_id}:link")).await?;
        }
        self.finish(claim).await
    }

    /// Whether an agent's message may go now — the connection works, the message is claimed,
    /// the reply window allows it and the account is not paused — with its claim and window;
    /// else what became of it (told to the agent where they should know).
    async fn ready(
        &self,
        conv: &mut Conversation,
        outgoing: &Outgoing,
        key: &str,
        attempt: Attempt,
        notice_id: &str,
    ) -> Result<Result<(IdempotencyRecord, Window), Outcome>, Fail> {
        if conv.conn.status == ConnectionStatus::Broken {
            // Sending would only be refused again: park it for the repair to replay.
            self.tell_broken(conv).await;
            return Ok(Err(Outcome::Blocked(Blocked::ConnectionBroken)));
        }
        let org = conv.inst.organization_id.clone();
        let claimed = self.claims().claim(&org, Stream::Livechat, key).await?;
        let Some((mut claim, _)) = claimed.into_record() else {
            return Ok(Err(Outcome::Skipped("already sent")));
        };
        let last_message = outgoing.contact.last_customer_message_at;
        let win = window(last_message, self.deps.clock.now(), outgoing.author);
        if let Some(text) = self.cannot_send(conv, win) {
            self.tell(conv, &text, notice_id).await?;
            return self.finish(claim).await.map(Err);
        }
        if let Some((why, wait)) = self.paused(conv).await? {
            let held = self.held(conv, &mut claim, attempt, &why, wait, notice_id);
            return held.await.map(Err);
        }
        Ok(Ok((claim, win)))
    }

    /// What an agent's event becomes on Instagram, or why it is not sent (the customer's own
    /// event, an event kind Instagram does not get, a chat with no contact).
    async fn outgoing(
        &self,
        conv: &Conversation,
        event: &AgentEvent,
    ) -> Result<Result<Outgoing, Outcome>, Fail> {
        let author_id = event.author_id.as_deref().unwrap_or_default();
        let Some(contact) = self.contact(conv).await? else {
            return Ok(Err(Outcome::Skipped("no contact for the chat")));
        };
        if author_id == contact.customer_id {
            return Ok(Err(Outcome::Skipped("the customer's own event")));
        }
        let Some((messages, note)) = messages_for(&event.kind) else {
            return Ok(Err(Outcome::Skipped(
                "event type not forwarded to Instagram",
            )));
        };
        Ok(Ok(Outgoing {
            contact,
            author: author_of(author_id),
            event_id: event.id.clone().unwrap_or_default(),
            messages,
            note,
        }))
    }

    /// A part is out: its mid recorded (for its echo and for unsends), the claim moved past
    /// it, its pending send cleared — in that order, so a crash between leaves the echo able
    /// to confirm it.
    async fn part_sent(
        &self,
        conv: &Conversation,
        claim: &mut IdempotencyRecord,
        sent: SentPart<'_>,
        thread_id: Option<ThreadId>,
    ) -> Result<(), Fail> {
        if let Some(mid) = &sent.mid {
            let first = sent.index == 0;
            self.record(conv, mid, sent.event_id, thread_id, first)
                .await?;
        }
        claim.parts_done = sent.index as u32 + 1;
        self.claims().progress(claim).await?;
        // A message Instagram accepted: the status page's "last message out", and the health
        // check's proof that the connection works.
        let (org, ig) = (&conv.inst.organization_id, &conv.route.ig_account_id);
        self.observer.active(org, ig, Direction::Outbound).await;
        let pending = self.pending_key(conv, sent.part);
        self.deps.repo.remove(&pending, Condition::Always).await?;
        Ok(())
    }

    /// Why a message cannot be sent at all (the agent is told, nothing is parked), if so.
    fn cannot_send(&self, conv: &Conversation, win: Window) -> Option<String> {
        match win {
            Window::ClosedForBots => return Some("Not sent to Instagram: more than 24 hours have passed since the customer's last message, and automated replies are only allowed within 24 hours. A human agent can still reply for up to 7 days.".into()),
            Window::Closed => return Some("Not sent to Instagram: more than 7 days have passed since the customer's last message. Instagram allows a reply only after the customer writes again.".into()),
            _ => {}
        }
        (conv.conn.status == ConnectionStatus::Disconnected || conv.conn.page_token.is_none()).then(|| format!(
            "Not sent to Instagram: this Instagram account is no longer connected to igbridge (the Facebook user removed the app or asked for their data to be deleted). An admin can connect it again at {}/install.",
            self.public_base_url
        ))
    }

    fn pending_key(&self, conv: &Conversation, part: &str) -> crate::store::Key {
        PendingSend::key_for(
            &conv.inst.organization_id,
            &conv.route.ig_account_id,
            &conv.route.igsid,
            &part.into(),
        )
    }

    /// Sends one part at most once. The pending send is written first; an earlier attempt's
    /// pending send means its message may have gone out: its echo (which gives it a `mid`) or,
    /// after [`ECHO_WINDOW`] without one, a new attempt decides. A failure after which Meta
    /// may have sent the message leaves the pending send for its echo.
    async fn send_part(
        &self,
        conv: &Conversation,
        token: &SecretString,
        part: &str,
        message: &OutMessage,
        body: &SendRequest,
    ) -> Result<Result<PartSent, GraphError>, Fail> {
        if let Some(decided) = self.begin_part(conv, part, message).await? {
            return Ok(Ok(decided));
        }
        let sent = self
            .deps
            .graph
            .send_message(&conv.conn.page_id, token, body);
        match sent.await {
            Ok(sent) => {
                if sent.usage.should_hold() {
                    let why = "Instagram reports this account near its rate limit";
                    let wait = sent.usage.wait.unwrap_or(DEFAULT_PAUSE);
                    self.pause(conv, wait, why.into()).await?;
                }
                Ok(Ok(PartSent::Sent(sent.message_id)))
            }
            Err(e) if e.may_have_been_accepted() => {
                tracing::warn!(error = %e, "Send API answer lost; waiting for the echo before any resend");
                Ok(Ok(PartSent::Unconfirmed))
            }
            Err(e) => {
                // Refused: nothing went out, so the next attempt starts afresh.
                let key = self.pending_key(conv, part);
                self.deps.repo.remove(&key, Condition::Always).await?;
                Ok(Err(e))
            }
        }
    }

    /// Writes the part's pending send before its attempt; `Some` when an earlier attempt
    /// decides the part instead: sent (the echo or answer gave the mid), or not confirmed yet
    /// within the echo window.
    async fn begin_part(
        &self,
        conv: &Conversation,
        part: &str,
        message: &OutMessage,
    ) -> Result<Option<PartSent>, Fail> {
        let now = self.deps.clock.now();
        match self
            .deps
            .repo
            .get::<PendingSend>(&self.pending_key(conv, part))
            .await?
        {
            Some(p) if p.mid.is_some() => Ok(Some(PartSent::Sent(p.mid))),
            Some(p) if now - p.started_at < ECHO_WINDOW => Ok(Some(PartSent::Unconfirmed)),
            Some(mut p) => {
                tracing::warn!(
                    attempts = p.attempts,
                    "no echo within the window; sending again"
                );
                p.started_at = now;
                p.attempts += 1;
                self.deps.repo.save(&mut p).await?;
                Ok(None)
            }
            None => {
                let mut p = PendingSend {
                    organization_id: conv.inst.organization_id.clone(),
                    ig_account_id: conv.route.ig_account_id.clone(),
                    igsid: conv.route.igsid.clone(),
                    livechat_event_id: part.into(),
                    started_at: now,
                    fingerprint: self.echoes(conv).fingerprint(message).await?,
                    attempts: 1,
                    mid: None,
                    expires_at: now.timestamp() + PENDING_TTL_SECS,
                    version: 0,
                };
                self.deps.repo.create(&mut p).await?;
                Ok(None)
            }
        }
    }

    fn echoes<'a>(&'a self, conv: &'a Conversation) -> Echoes<'a> {
        Echoes {
            repo: &self.deps.repo,
            keys: &self.keys,
            org: &conv.inst.organization_id,
            ig: &conv.route.ig_account_id,
            igsid: &conv.route.igsid,
        }
    }

    /// The account's send pause, if one is on: why, and how long is left.
    async fn paused(&self, conv: &Conversation) -> Result<Option<(String, Duration)>, Fail> {
        let key = SendPause::key_for(&conv.inst.organization_id, &conv.route.ig_account_id);
        let now = self.deps.clock.now();
        Ok(self
            .deps
            .repo
            .get::<SendPause>(&key)
            .await?
            .filter(|p| p.until > now)
            .map(|p| (p.reason, (p.until - now).to_std().unwrap_or_default())))
    }

    /// Holds every send to the account for `wait`.
    async fn pause(&self, conv: &Conversation, wait: Duration, reason: String) -> Result<(), Fail> {
        let until = self.deps.clock.now() + chrono::Duration::from_std(wait).unwrap_or_default();
        let pause = SendPause {
            organization_id: conv.inst.organization_id.clone(),
            ig_account_id: conv.route.ig_account_id.clone(),
            until,
            reason,
            expires_at: until.timestamp() + 24 * 3600,
        };
        self.deps.repo.put(&pause, Condition::Always).await?;
        Ok(())
    }

    /// A message that must wait: retried after `after`; the agent is told once when it has been
    /// held over [`DELAY_NOTICE_AFTER`], and again when it is finally parked.
    async fn held(
        &self,
        conv: &mut Conversation,
        claim: &mut IdempotencyRecord,
        attempt: Attempt,
        why: &str,
        after: Duration,
        notice_id: &str,
    ) -> Result<Outcome, Fail> {
        let minutes = attempt.held_for.num_minutes();
        if attempt.last {
            let text = format!(
                "Not sent to Instagram: {why}, and that did not clear for {minutes} minutes. The message is kept for an operator, who can send it again once Instagram accepts messages."
            );
            self.tell(conv, &text, &format!("{notice_id}:parked"))
                .await?;
            return Ok(Outcome::Park(format!("held {minutes} min: {why}")));
        }
        if attempt.held_for > DELAY_NOTICE_AFTER && !claim.delay_told {
            let text = format!(
                "Delayed: not delivered to Instagram yet ({minutes} minutes so far) because {}. It will be sent automatically, in order, as soon as Instagram accepts it.",
                lowercase_first(why)
            );
            self.tell(conv, &text, &format!("{notice_id}:delayed"))
                .await?;
            claim.delay_told = true;
            self.claims().progress(claim).await?;
        }
        Ok(Outcome::Retry {
            reason: why.to_string(),
            after: Some(after),
        })
    }

    fn claims(&self) -> Claims {
        Claims {
            repo: self.deps.repo.clone(),
            clock: self.deps.clock.clone(),
        }
    }

    async fn finish(&self, claim: IdempotencyRecord) -> Result<Outcome, Fail> {
        self.claims().finish(claim).await?;
        Ok(Outcome::Done)
    }
    /// Records a sent message so its echo is recognised and unsends/reactions can find it.
    async fn record(
        &self,
        conv: &Conversation,
        mid: &Mid,
        event_id: &EventId,
        thread_id: Option<ThreadId>,
        first: bool,
    ) -> Result<(), Fail> {
        let now = self.deps.clock.now();
        let org = conv.inst.organization_id.clone();
        let expires_at = now.timestamp() + MESSAGE_LINK_TTL_SECS;
        self.deps
            .repo
            .put(
                &MessageLink {
                    organization_id: org.clone(),
                    ig_account_id: conv.route.ig_account_id.clone(),
                    mid: mid.to_owned(),
                    chat_id: conv.route.chat_id.clone(),
                    thread_id,
                    event_ids: vec![event_id.clone()],
                    event_threads: vec![],
                    direction: Direction::Outbound,
                    created_at: now,
                    expires_at,
                },
                Condition::Always,
            )
            .await?;
        if first {
            self.deps
                .repo
                .put(
                    &EventLink {
                        organization_id: org,
                        chat_id: conv.route.chat_id.clone(),
                        event_id: event_id.clone(),
                        mid: mid.to_owned(),
                        expires_at,
                    },
                    Condition::Always,
                )
                .await?;
        }
        Ok(())
    }

    /// Turns a Send API error into an action.
    async fn failed(
        &self,
        conv: &mut Conversation,
        claim: &mut IdempotencyRecord,
        e: GraphError,
        notice_id: &str,
        attempt: Attempt,
    ) -> Result<Outcome, Fail> {
        let code = graph_code(&e);
        if e.is_outside_window() {
            let text = "Not sent to Instagram: the messaging window is closed. The customer must write again before you can reply.";
            self.tell(conv, text, notice_id).await?;
            return self.finish(claim.clone()).await;
        }
        if e.is_token_invalid() {
            return self.token_refused(conv).await;
        }
        if e.is_throttled() {
            let why = format!(
                "Instagram is limiting how fast this account may send (Meta error {})",
                code.map_or("429".into(), |c| c.to_string())
            );
            let wait = e
                .retry_after()
                .unwrap_or_else(|| RetryPolicy::REDELIVERY.delay(attempt.number));
            self.pause(conv, wait, why.clone()).await?;
            return self.held(conv, claim, attempt, &why, wait, notice_id).await;
        }
        if e.is_transient() {
            let why = "Instagram is not answering right now";
            tracing::warn!(error = %e, "Send API failed transiently");
            let wait = RetryPolicy::REDELIVERY.delay(attempt.number);
            return self.held(conv, claim, attempt, why, wait, notice_id).await;
        }
        let detail = match &e {
            GraphError::Api { message, .. } => message.clone(),
            other => other.to_string(),
        };
        let text = format!(
            "Not sent to Instagram: {detail} (Meta error {}).",
            code.map_or("?".into(), |c| c.to_string())
        );
        self.tell(conv, &text, notice_id).await?;
        let code = code.map_or("unknown".into(), |c| c.to_string());
        Ok(Outcome::Park(format!(
            "Send API refused the message (Meta error {code})"
        )))
    }

    /// Meta refused the Page token (190): the connection turns broken (once, announced), and
    /// the message waits for the repair.
    async fn token_refused(&self, conv: &mut Conversation) -> Result<Outcome, Fail> {
        let now = self.deps.clock.now();
        let to = ConnectionStatus::Broken;
        if !crate::connection::transition(&self.deps.repo, &mut conv.conn, to, now).await? {
            // Disconnected (or marked) meanwhile: the fresh record decides on the retry.
            return Ok(Outcome::Retry {
                reason: "the connection changed while sending".into(),
                after: None,
            });
        }
        tracing::error!(organization_id = %conv.inst.organization_id, "Page token refused (190); connection marked broken");
        publish_logged(
            self.deps.events.as_ref(),
            &[LifecycleEvent::new(LifecycleKind::ConnectionBroken, now)
                .org(&conv.inst.organization_id)
                .account(&conv.conn.ig_account_id)
                .detail("Facebook refused the Page token when sending")],
        )
        .await;
        self.tell_broken(conv).await;
        Ok(Outcome::Blocked(Blocked::ConnectionBroken))
    }
}

/// "Instagram is …" → "instagram is …" reads wrong; only a leading capital that starts a
/// sentence is lowered, names keep theirs.
fn lowercase_first(s: &str) -> String {
    if s.starts_with("Instagram") || s.starts_with("Meta") {
        return s.to_string();
    }
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_lowercase().chain(c).collect(),
        None => String::new(),
    }
}

fn graph_code(e: &GraphError) -> Option<i64> {
    match e {
        GraphError::Api { code, .. } => *code,
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    /// The messages for an event as LiveChat sends it, as the Send API gets them.
    fn messages_for(event: Value) -> Option<(Vec<Value>, Option<String>)> {
        let (messages, note) = super::messages_for(&AgentEvent::read(&event).kind)?;
        let messages = messages.iter().map(|m| serde_json::to_value(m).unwrap());
        Some((messages.collect(), note))
    }

    #[test]
    fn events_map_to_send_api_messages() {
        let long = "word ".repeat(500);
        let (parts, note) = messages_for(json!({"type": "message", "text": long})).unwrap();
        assert_eq!((parts.len(), note), (3, None));
        assert_eq!(
            messages_for(json!({"type": "file", "url": "https://cdn/x.png", "content_type": "image/png", "name": "x.png", "size": 1000})).unwrap(),
            (vec![json!({"attachment": {"type": "image", "payload": {"url": "https://cdn/x.png"}}})], None)
        );
        let (parts, note) = messages_for(json!({"type": "file", "url": "https://cdn/x.docx", "content_type": "application/msword", "name": "x.docx"})).unwrap();
        assert_eq!(
            parts,
            vec![json!({"text": "📎 x.docx\nhttps://cdn/x.docx"})]
        );
        assert!(note.unwrap().contains("does not accept application/msword"));
        let (parts, note) = messages_for(json!({"type": "file", "url": "https://cdn/big.png", "content_type": "image/png", "name": "big.png", "size": 9_000_000})).unwrap();
        assert_eq!(
            parts,
            vec![json!({"text": "📎 big.png\nhttps://cdn/big.png"})]
        );
        assert!(note.unwrap().contains("up to 8 MB"));
        assert_eq!(
            messages_for(json!({"type": "rich_message", "elements": [{"title": "Pick", "buttons": [{"text": "Yes"}, {"text": "No"}]}]})).unwrap(),
            (vec![json!({"text": "Pick\n• Yes\n• No"})], None)
        );
        assert!(messages_for(json!({"type": "filled_form"})).is_none());
        assert_eq!(author_of("agent1@example.com"), Author::Human);
        assert_eq!(author_of("5c9871d5372c824cbf22d860a707a578"), Author::Bot);
    }
}
