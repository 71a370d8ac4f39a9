//! instagram-to-livechat: delivers each Instagram event into the customer's LiveChat chat,
//! exactly once, acting as the customer through the agent-token customer grant.

use std::collections::HashMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::Value;

use super::claim::Claims;
use super::echo::{EchoOf, Echoes, RECHECK_AFTER};
use super::render::{
    Action, Context, Part, media_event, referral_fields, render, split_for_livechat,
};
use crate::cipher::TokenContext;
use crate::customer::{CustomerSession, Customers};
use crate::domain::*;
use crate::ids::Stream;
use crate::ids::{ChatId, EventId, IgAccountId, Igsid, Mid, OrgId, ThreadId};
use crate::instagram::event::{InboundEvent, ReplyTo, classify, timestamp};
use crate::instagram::graph::GraphError;
use crate::jobs::{Envelope, InstagramEventJob, Job, Source};
use crate::livechat::LivechatError;
use crate::livechat::chat_api::{
    DeleteEvent, GetChat, ListChats, MarkEventsAsSeen, ResumeChat, SendEvent, SessionField,
    SetCustomerSessionFields, StartChat, UpdateCustomer,
};
use crate::livechat::event::Event;
use crate::outcome::Fail;
use crate::outcome::{Attempt, Outcome};
use crate::store::Condition;
use crate::worker::JobHandler;

/// The instagram-to-livechat worker.
pub struct Inbound {
    /// The table, cipher, clock, events and platform clients.
    pub deps: crate::deps::Deps,
    /// Opens the sealed jobs.
    pub keys: crate::datakey::DataKeys,
    /// Metrics, backlog and activity.
    pub observer: crate::health::Observer,
    /// The status page's base URL (the broken-connection notice links it).
    pub public_base_url: String,
}

fn custom_id(key: &str, index: usize) -> String {
    if index == 0 {
        format!("ig:{key}")
    } else {
        format!("ig:{key}:{index}")
    }
}

/// What the claim says of this attempt at an event.
#[derive(Debug, Clone, Copy)]
struct Attempted {
    /// An earlier attempt stopped part-way: look in LiveChat before posting again.
    recovering: bool,
    /// The customer unsent the message meanwhile: post nothing, take back what was posted.
    unsent: bool,
}

/// Event ids paired with the thread they were posted to.
fn in_thread(thread: &ThreadId, event_ids: Vec<EventId>) -> Vec<(ThreadId, EventId)> {
    event_ids
        .into_iter()
        .map(|id| (thread.clone(), id))
        .collect()
}

#[async_trait]
impl JobHandler for Inbound {
    fn source(&self) -> Source {
        Source::Instagram
    }

    fn data_keys(&self) -> Option<&crate::datakey::DataKeys> {
        Some(&self.keys)
    }

    fn observer(&self) -> Option<&crate::health::Observer> {
        Some(&self.observer)
    }

    async fn handle(&self, envelope: &Envelope, _attempt: Attempt) -> Outcome {
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
        let (inst, conn) = match self.connection(job).await? {
            Ok(found) => found,
            Err(outcome) => return Ok(outcome),
        };
        let org = inst.organization_id.clone();
        let event = classify(&job.field, &job.item);
        let at = timestamp(&job.item).unwrap_or(self.deps.clock.now());
        if let InboundEvent::Message(m) = &event {
            if m.is_echo {
                if let Some(outcome) = self.echo(&org, job, &m.mid).await? {
                    return Ok(outcome);
                }
            }
        }
        // Exactly once: a claim left in progress means an earlier attempt may have reached
        // LiveChat, so `act` looks there before sending again.
        let claims = Claims {
            repo: self.deps.repo.clone(),
            clock: self.deps.clock.clone(),
        };
        let idem_id = format!("{}:{}", job.ig_account_id, job.event_id);
        let claimed = claims.claim(&org, Stream::Instagram, &idem_id).await?;
        if matches!(claimed, super::claim::Claimed::Unsent) {
            return Ok(Outcome::Skipped(
                "unsent by the customer before it was delivered",
            ));
        }
        let Some((claim, recovering)) = claimed.into_record() else {
            return Ok(Outcome::Skipped("already delivered"));
        };
        let attempt = Attempted {
            recovering,
            unsent: claim.unsent,
        };
        let outcome = self
            .act(inst.clone(), &conn, job, &event, at, attempt)
            .await?;
        claims.finish(claim).await?;
        if outcome == Outcome::Done {
            let ig = &job.ig_account_id;
            self.observer.active(&org, ig, Direction::Inbound).await;
            if conn.status == ConnectionStatus::Broken {
                self.tell_broken(inst, &conn, &job.igsid).await;
            }
        }
        Ok(outcome)
    }

    /// The first chat after a connection broke gets one notice with the status page's link
    /// (replies cannot reach Instagram until it is reconnected); best effort.
    async fn tell_broken(&self, inst: Installation, conn: &InstagramConnection, igsid: &Igsid) {
        let now = self.deps.clock.now();
        match crate::connection::claim_broken_notice(&self.deps.repo, conn, now).await {
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
            conn.ig_account_id,
            conn.updated_at.timestamp()
        );
        let told = match self.session(inst, conn, igsid, false).await {
            Ok(Some(mut session)) => session.notice(&text, &id).await.is_ok(),
            _ => false,
        };
        if !told {
            crate::connection::release_broken_notice(&self.deps.repo, conn).await;
        }
    }

    /// The active installation and live connection the job's account routes to, or what to do
    /// with a job that has none.
    async fn connection(
        &self,
        job: &InstagramEventJob,
    ) -> Result<Result<(Installation, InstagramConnection), Outcome>, Fail> {
        let ig = &job.ig_account_id;
        let skip = |why| Ok(Err(Outcome::Skipped(why)));
        let Some(route) = self
            .deps
            .repo
            .get::<AccountRoute>(&AccountRoute::key_for(ig))
            .await?
        else {
            return skip("no installation for this Instagram account");
        };
        let org = route.organization_id;
        let Some(inst) = self
            .deps
            .repo
            .get::<Installation>(&Installation::key_for(&org))
            .await?
        else {
            return skip("installation not found");
        };
        match inst.status {
            InstallationStatus::Uninstalled => return skip("installation uninstalled"),
            InstallationStatus::ReauthRequired => {
                return Err(Fail::Blocked(crate::jobs::Blocked::ReauthorizationNeeded));
            }
            InstallationStatus::Active => {}
        }
        let key = InstagramConnection::key_for(&org, ig);
        match self.deps.repo.get::<InstagramConnection>(&key).await? {
            None => skip("no Instagram connection"),
            Some(c) if c.status == ConnectionStatus::Disconnected => {
                skip("Instagram connection disconnected")
            }
            Some(conn) => Ok(Ok((inst, conn))),
        }
    }

    /// An echo of this app's own send is skipped; one that may still be is looked at again
    /// later; anything else (`None`) is shown as a staff message.
    async fn echo(
        &self,
        org: &OrgId,
        job: &InstagramEventJob,
        mid: &Mid,
    ) -> Result<Option<Outcome>, Fail> {
        let echoes = Echoes {
            repo: &self.deps.repo,
            keys: &self.keys,
            org,
            ig: &job.ig_account_id,
            igsid: &job.igsid,
        };
        let message = job.item.get("message").cloned().unwrap_or(Value::Null);
        Ok(
            match echoes
                .recognise(mid, &message, self.deps.clock.now())
                .await?
            {
                EchoOf::Ours => Some(Outcome::Skipped("echo of a message this app sent")),
                EchoOf::Undecided => Some(Outcome::Retry {
                    reason: "echo while a send to this customer is in flight".into(),
                    after: Some(RECHECK_AFTER),
                }),
                EchoOf::Staff => None,
            },
        )
    }

    /// An unsend: the link of the message it takes back, or `Err` with the outcome when there is
    /// none — the message was not delivered (its job parked, or the message never came), so
    /// the unsend is remembered on the message's claim and a later delivery (a replay) skips it.
    async fn unsent_link(
        &self,
        conn: &InstagramConnection,
        mid: &Mid,
    ) -> Result<Result<MessageLink, Outcome>, Fail> {
        let (org, ig) = (&conn.organization_id, &conn.ig_account_id);
        if let Some(link) = self
            .deps
            .repo
            .get::<MessageLink>(&MessageLink::key_for(org, ig, mid))
            .await?
        {
            return Ok(Ok(link));
        }
        let claims = Claims {
            repo: self.deps.repo.clone(),
            clock: self.deps.clock.clone(),
        };
        claims
            .unsent(org, Stream::Instagram, &format!("{ig}:{mid}"))
            .await?;
        tracing::info!(
            unsend_unknown = 1,
            "unsend of a message not delivered: remembered, it never will be"
        );
        Ok(Err(Outcome::Skipped("unsend of a message not delivered")))
    }

    /// Carries the event into LiveChat as the customer, then keeps the contact current.
    async fn act(
        &self,
        inst: Installation,
        conn: &InstagramConnection,
        job: &InstagramEventJob,
        event: &InboundEvent,
        at: DateTime<Utc>,
        attempt: Attempted,
    ) -> Result<Outcome, Fail> {
        let action = render(event, &Context::default());
        let unsent = match &action {
            Action::Delete(mid) => match self.unsent_link(conn, mid).await? {
                Ok(link) => Some(link),
                Err(outcome) => return Ok(outcome),
            },
            _ => None,
        };
        let create = matches!(action, Action::Post(_));
        let found = self.session(inst, conn, &job.igsid, create).await?;
        let Some(mut session) = found else {
            tracing::info!("event for a customer who has no chat yet; nothing to do");
            return Ok(Outcome::Skipped("no chat for this customer yet"));
        };
        let ig = &conn.ig_account_id;
        let outcome = match action {
            Action::MarkSeen => self.mark_seen(&mut session, at).await?,
            Action::Delete(_) => match &unsent {
                Some(link) => self.unsend(&mut session, link).await?,
                None => Outcome::Skipped("unsend of an unknown message"),
            },
            Action::Post(_) => {
                self.post_event(&mut session, ig, job, event, attempt)
                    .await?
            }
        };
        if event.opens_window() {
            let last = session.contact.last_customer_message_at;
            if last.is_none_or(|l| l < at) {
                session.contact.last_customer_message_at = Some(at);
            }
        }
        session.contact.updated_at = self.deps.clock.now();
        self.deps.repo.save(&mut session.contact).await?;
        Ok(outcome)
    }

    /// A read receipt: the customer has seen the chat up to `at`.
    async fn mark_seen(
        &self,
        session: &mut CustomerSession,
        at: DateTime<Utc>,
    ) -> Result<Outcome, Fail> {
        if let Some(chat_id) = session.contact.chat_id.clone() {
            let seen = MarkEventsAsSeen {
                chat_id,
                seen_up_to: at,
            };
            session.act(&seen).await?;
        }
        Ok(Outcome::Done)
    }

    /// Posts what the customer sent (with the quote it replies to, and its referral on the
    /// customer), and links the mid to the LiveChat events for unsends and replies.
    async fn post_event(
        &self,
        session: &mut CustomerSession,
        ig: &IgAccountId,
        job: &InstagramEventJob,
        event: &InboundEvent,
        attempt: Attempted,
    ) -> Result<Outcome, Fail> {
        let referenced = match event {
            InboundEvent::Message(m) => match &m.reply_to {
                Some(ReplyTo::Message(mid)) => Some(mid.clone()),
                _ => None,
            },
            InboundEvent::Reaction(r) => Some(r.mid.clone()),
            InboundEvent::Edit { mid, .. } => Some(mid.clone()),
            _ => None,
        };
        let quote = match &referenced {
            Some(mid) => self.quote(session, ig, mid).await,
            None => None,
        };
        let Action::Post(parts) = render(event, &Context { quote }) else {
            unreachable!("the same event renders the same action")
        };
        if attempt.unsent {
            return self.take_back(session, &job.event_id, parts).await;
        }
        let referral = match event {
            InboundEvent::Message(m) => m.referral.as_ref(),
            InboundEvent::Referral(r) => Some(r),
            _ => None,
        };
        if let Some(r) = referral {
            self.set_session_fields(session, referral_fields(r)).await;
        }
        let delivered = self
            .deliver(session, &job.event_id, parts, attempt.recovering)
            .await?;
        let mid = match event {
            InboundEvent::Message(m) => Some(m.mid.clone()),
            InboundEvent::Postback { mid, .. } => mid.clone(),
            _ => None,
        };
        if let (Some(mid), Some(chat_id)) = (mid, session.contact.chat_id.clone()) {
            self.link(&session.org(), ig, mid, chat_id, delivered)
                .await?;
        }
        Ok(Outcome::Done)
    }

    /// Records which LiveChat events (each with its thread) a mid became, both ways.
    async fn link(
        &self,
        org: &OrgId,
        ig: &IgAccountId,
        mid: Mid,
        chat_id: ChatId,
        delivered: Vec<(ThreadId, EventId)>,
    ) -> Result<(), Fail> {
        let now = self.deps.clock.now();
        let expires_at = now.timestamp() + MESSAGE_LINK_TTL_SECS;
        let (event_threads, event_ids): (Vec<ThreadId>, Vec<EventId>) =
            delivered.into_iter().unzip();
        for event_id in &event_ids {
            let link = EventLink {
                organization_id: org.to_owned(),
                chat_id: chat_id.clone(),
                event_id: event_id.clone(),
                mid: mid.clone(),
                expires_at,
            };
            self.deps.repo.put(&link, Condition::Always).await?;
        }
        let link = MessageLink {
            organization_id: org.to_owned(),
            ig_account_id: ig.to_owned(),
            mid,
            chat_id,
            thread_id: event_threads.first().cloned(),
            event_ids,
            event_threads,
            direction: Direction::Inbound,
            created_at: now,
            expires_at,
        };
        self.deps.repo.put(&link, Condition::Always).await?;
        Ok(())
    }

    /// Deletes every LiveChat event of an unsent message, each in the thread it was posted to.
    /// An event LiveChat no longer has is counted (it was deleted in LiveChat, or the link points
    /// at the wrong thread), not silently taken as deleted.
    async fn unsend(
        &self,
        session: &mut CustomerSession,
        link: &MessageLink,
    ) -> Result<Outcome, Fail> {
        let events = link.events();
        let events = events.iter().map(|(t, e)| (t, e));
        let missing = self.delete_events(session, &link.chat_id, events).await?;
        if missing > 0 {
            tracing::warn!(
                unsend_not_found = missing,
                "unsend: LiveChat no longer has some events of the message"
            );
            return Ok(Outcome::Skipped(
                "unsend: events already gone from LiveChat",
            ));
        }
        Ok(Outcome::Done)
    }

    /// The customer unsent the message while an earlier attempt at it was part-way (its claim
    /// was left in progress, the job parked): nothing more is posted, and what that attempt
    /// posted (found in the chat by its custom ids) is deleted.
    async fn take_back(
        &self,
        session: &mut CustomerSession,
        key: &str,
        parts: Vec<Part>,
    ) -> Result<Outcome, Fail> {
        let already = self.existing(session).await?;
        let posted: Vec<(ThreadId, EventId)> = Self::events_for(key, parts, &already)
            .into_iter()
            .filter_map(Result::err)
            .collect();
        if let Some(chat_id) = session.contact.chat_id.clone() {
            let posted = posted.iter().map(|(t, e)| (t, e));
            self.delete_events(session, &chat_id, posted).await?;
        }
        Ok(Outcome::Skipped(
            "unsent by the customer before it was delivered",
        ))
    }

    /// Deletes events of a chat, each in its thread; how many LiveChat no longer had.
    async fn delete_events<'a>(
        &self,
        session: &mut CustomerSession,
        chat_id: &ChatId,
        events: impl Iterator<Item = (&'a ThreadId, &'a EventId)>,
    ) -> Result<usize, Fail> {
        let mut missing = 0;
        for (thread_id, event_id) in events {
            let delete = DeleteEvent {
                chat_id: chat_id.to_owned(),
                thread_id: thread_id.clone(),
                event_id: event_id.clone(),
            };
            match session.act(&delete).await {
                Ok(_) => {}
                Err(Fail::Livechat(LivechatError::Api { kind, .. })) if kind == "not_found" => {
                    missing += 1;
                }
                Err(e) => return Err(e),
            }
        }
        Ok(missing)
    }

    fn customers(&self) -> Customers {
        Customers {
            deps: self.deps.clone(),
        }
    }

    /// The customer for an IGSID: found, or created (with its profile) when `create` is set.
    async fn session(
        &self,
        inst: Installation,
        conn: &InstagramConnection,
        igsid: &Igsid,
        create: bool,
    ) -> Result<Option<CustomerSession>, Fail> {
        let ig = &conn.ig_account_id;
        let found = self.customers().session(inst, ig, igsid, create).await?;
        let Some(mut session) = found else {
            return Ok(None);
        };
        if session.contact.expires_at.is_some() {
            // Left by an uninstall and found by the reinstalled installation (its connection is
            // live): it is the customer's again, and so is its chat, so neither expires.
            session.contact.expires_at = None;
            match session.contact.chat_id.clone() {
                Some(chat_id) => self.route_chat(&mut session, &chat_id).await?,
                None => self.deps.repo.save(&mut session.contact).await?,
            }
        }
        if session.contact.profile_synced_at.is_none() {
            self.sync_profile(conn, &mut session).await;
        }
        Ok(Some(session))
    }

    /// The customer's Instagram profile, as the Page may see it; best effort.
    async fn profile(
        &self,
        conn: &InstagramConnection,
        igsid: &Igsid,
    ) -> Option<crate::instagram::graph::Profile> {
        let sealed = conn.page_token.as_ref()?;
        let context = TokenContext::Page {
            org: &conn.organization_id,
            ig: &conn.ig_account_id,
        };
        let token = self.deps.cipher.open(sealed, &context).ok()?;
        match self.deps.graph.profile(igsid, &token).await {
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
        }
    }

    /// Sets name, avatar and Instagram ids on the customer; never fails the message.
    async fn sync_profile(&self, conn: &InstagramConnection, session: &mut CustomerSession) {
        let igsid = session.contact.igsid.clone();
        let profile = self.profile(conn, &igsid).await;
        let mut update = UpdateCustomer {
            name: "Instagram user".into(),
            avatar: None,
            session_fields: vec![SessionField::new("instagram_id", igsid)],
        };
        if let Some(p) = &profile {
            let handle = p.username.as_ref().map(|u| format!("@{u}"));
            if let Some(name) = p.name.clone().or(handle.clone()) {
                update.name = name;
            }
            update.avatar = p.profile_pic.clone();
            if let Some(h) = handle {
                update
                    .session_fields
                    .push(SessionField::new("instagram_username", h));
            }
        }
        match session.act(&update).await {
            Ok(_) if profile.is_some() => {
                session.contact.profile_synced_at = Some(self.deps.clock.now())
            }
            Ok(_) => {}
            Err(_) => tracing::warn!("could not set the customer's profile in LiveChat"),
        }
    }

    async fn set_session_fields(&self, session: &mut CustomerSession, fields: Vec<SessionField>) {
        if fields.is_empty() {
            return;
        }
        let set = SetCustomerSessionFields {
            session_fields: fields,
        };
        let res = session.act(&set).await;
        if res.is_err() {
            tracing::warn!("could not record the referral on the customer");
        }
    }

    /// The text of the LiveChat event a mid was bridged to, for quoting; best effort.
    async fn quote(
        &self,
        session: &mut CustomerSession,
        ig: &IgAccountId,
        mid: &Mid,
    ) -> Option<String> {
        let org = session.inst.organization_id.clone();
        let link = self
            .deps
            .repo
            .get::<MessageLink>(&MessageLink::key_for(&org, ig, mid))
            .await
            .ok()??;
        let event_id = link.event_ids.first()?.clone();
        let get = GetChat {
            chat_id: link.chat_id,
            thread_id: link.thread_id,
        };
        let chat = session.act(&get).await.ok()?;
        chat.thread?
            .events
            .into_iter()
            .find(|e| e.id.as_deref() == Some(event_id.as_str()))?
            .text
    }

    /// Custom ids already in the customer's chat (recovery after a crash), with their event ids.
    async fn existing(
        &self,
        session: &mut CustomerSession,
    ) -> Result<HashMap<String, (ThreadId, EventId)>, Fail> {
        if session.contact.chat_id.is_none() {
            let list = session.act(&ListChats { limit: 1 }).await?;
            let found = list.chats_summary.into_iter().next().map(|c| c.id);
            // An earlier attempt started the chat but never learnt it (LiveChat answered after
            // the timeout, or the route write failed): route it now, or agents' replies in it
            // would be dropped as "chat not bridged".
            if let Some(chat_id) = found {
                self.route_chat(session, &chat_id).await?;
            }
        }
        let Some(chat_id) = session.contact.chat_id.clone() else {
            return Ok(HashMap::new());
        };
        let get = GetChat {
            chat_id,
            thread_id: None,
        };
        let thread = session.act(&get).await?.thread.unwrap_or_default();
        Ok(thread
            .events
            .into_iter()
            .filter_map(|e| Some((e.custom_id?, (thread.id.clone(), e.id?))))
            .collect())
    }

    /// The LiveChat events for the parts, each with its custom id; events an earlier attempt
    /// already delivered come back as (thread, event id) instead.
    fn events_for(
        key: &str,
        parts: Vec<Part>,
        already: &HashMap<String, (ThreadId, EventId)>,
    ) -> Vec<Result<Event, (ThreadId, EventId)>> {
        let mut out = Vec::new();
        let mut index = 0;
        for part in parts {
            let events: Vec<Event> = match part {
                Part::Text(t) => split_for_livechat(&t)
                    .iter()
                    .map(|t| Event::message(t))
                    .collect(),
                Part::Notice(t) => vec![Event::notice(&t, "")],
                Part::Media { url, kind, .. } => vec![media_event(&url, &kind)],
            };
            for ev in events {
                let cid = custom_id(key, index);
                index += 1;
                match already.get(&cid) {
                    // Delivered by an earlier attempt that did not get to record it.
                    Some(done) => out.push(Err(done.clone())),
                    None => out.push(Ok(ev.with_custom_id(&cid))),
                }
            }
        }
        out
    }

    /// Posts the parts into the customer's chat: starts it, continues the active thread, or
    /// resumes it. Returns each LiveChat event with the thread it landed in, in order.
    async fn deliver(
        &self,
        session: &mut CustomerSession,
        key: &str,
        parts: Vec<Part>,
        recovering: bool,
    ) -> Result<Vec<(ThreadId, EventId)>, Fail> {
        let already = if recovering {
            self.existing(session).await?
        } else {
            HashMap::new()
        };
        let mut delivered = Vec::new();
        let mut events = Vec::new();
        for e in Self::events_for(key, parts, &already) {
            match e {
                Ok(ev) => events.push(ev),
                Err(done) => delivered.push(done),
            }
        }
        if events.is_empty() {
            return Ok(delivered);
        }
        let posted = match session.contact.chat_id.clone() {
            None => self.start(session, &events).await?,
            Some(chat_id) => self.post(session, &chat_id, &events).await?,
        };
        delivered.extend(posted);
        Ok(delivered)
    }

    /// `start_chat` with the events; the chat route is written at once.
    async fn start(
        &self,
        session: &mut CustomerSession,
        events: &[Event],
    ) -> Result<Vec<(ThreadId, EventId)>, Fail> {
        let started = session.act(&StartChat::with(events.to_vec())).await?;
        session.contact.thread_id = Some(started.thread_id.clone());
        session.contact.thread_active = Some(true);
        self.route_chat(session, &started.chat_id).await?;
        Ok(in_thread(&started.thread_id, started.event_ids))
    }

    /// The contact gains its chat: the chat route (agent replies find the customer by it) is
    /// written before the contact, so a contact never names a chat that has no route.
    async fn route_chat(
        &self,
        session: &mut CustomerSession,
        chat_id: &ChatId,
    ) -> Result<(), Fail> {
        let org = session.org();
        self.deps
            .repo
            .put(
                &ChatRoute {
                    organization_id: org.to_owned(),
                    chat_id: chat_id.to_owned(),
                    ig_account_id: session.contact.ig_account_id.clone(),
                    igsid: session.contact.igsid.clone(),
                    expires_at: None,
                },
                Condition::Always,
            )
            .await?;
        session.contact.chat_id = Some(chat_id.to_owned());
        self.deps.repo.save(&mut session.contact).await?;
        Ok(())
    }

    /// Posts into an existing chat. The thread the contact last saw is tried first (an agent may
    /// have started a newer one: `incoming_chat` keeps the contact current); `chat_inactive`
    /// resumes the chat with the remaining events, and a resume refused because the chat is
    /// active again (an agent reopened it) sends them into the active thread instead.
    async fn post(
        &self,
        session: &mut CustomerSession,
        chat_id: &ChatId,
        events: &[Event],
    ) -> Result<Vec<(ThreadId, EventId)>, Fail> {
        let mut out = Vec::new();
        let mut rest: &[Event] = events;
        if session.contact.thread_active != Some(false) {
            let sent = self.send_events(session, chat_id, rest).await?;
            rest = &rest[sent.len()..];
            out.extend(sent);
        }
        if rest.is_empty() {
            session.contact.thread_active = Some(true);
            return Ok(out);
        }
        match self.resume(session, chat_id, rest).await {
            Ok(resumed) => out.extend(resumed),
            // LiveChat's wire answer to resuming an active chat is undocumented (the SDK calls
            // it CHAT_ALREADY_ACTIVE): any permanent refusal is checked against the chat itself.
            Err(Fail::Livechat(e)) if !e.is_transient() && !e.is_auth() => {
                tracing::info!(error = %e, "resume_chat refused; sending into the active thread");
                if !self.follow_active_thread(session, chat_id).await? {
                    return Err(Fail::Livechat(e));
                }
                let sent = self.send_events(session, chat_id, rest).await?;
                if sent.len() < rest.len() {
                    return Err(Fail::Livechat(e));
                }
                out.extend(sent);
            }
            Err(e) => return Err(e),
        }
        session.contact.thread_active = Some(true);
        Ok(out)
    }

    /// `send_event` for each event until the chat turns out inactive; returns those sent.
    async fn send_events(
        &self,
        session: &mut CustomerSession,
        chat_id: &ChatId,
        events: &[Event],
    ) -> Result<Vec<(ThreadId, EventId)>, Fail> {
        let mut out = Vec::new();
        for ev in events {
            let thread = session.contact.thread_id.clone().unwrap_or_default();
            let send = SendEvent {
                chat_id: chat_id.to_owned(),
                event: ev.clone(),
                attach_to_last_thread: false,
            };
            match session.act(&send).await {
                Ok(sent) => out.push((thread, sent.event_id)),
                Err(Fail::Livechat(e)) if e.is_chat_inactive() => {
                    session.contact.thread_active = Some(false);
                    break;
                }
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    /// `resume_chat` with the events as the new thread's first events.
    async fn resume(
        &self,
        session: &mut CustomerSession,
        chat_id: &ChatId,
        events: &[Event],
    ) -> Result<Vec<(ThreadId, EventId)>, Fail> {
        let resume = ResumeChat::with(chat_id, events.to_vec());
        let resumed = session.act(&resume).await?;
        session.contact.thread_id = Some(resumed.thread_id.clone());
        Ok(in_thread(&resumed.thread_id, resumed.event_ids))
    }

    /// Reads the chat's current thread; `true` if it is active (the contact then follows it).
    async fn follow_active_thread(
        &self,
        session: &mut CustomerSession,
        chat_id: &ChatId,
    ) -> Result<bool, Fail> {
        let get = GetChat {
            chat_id: chat_id.to_owned(),
            thread_id: None,
        };
        let Some(thread) = session.act(&get).await?.thread.filter(|t| t.active) else {
            return Ok(false);
        };
        session.contact.thread_id = Some(thread.id);
        session.contact.thread_active = Some(true);
        Ok(true)
    }
}
