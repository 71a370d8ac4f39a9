//! LiveChat chat webhooks: authenticate by the body's `secret_key` (LiveChat signs nothing), then
//! decide which actions the bridge forwards to Instagram.
//!
//! Taken: `incoming_event` (agent messages and files), `incoming_chat` (an agent started or
//! reopened a thread: the bridge follows the new thread, and forwards the agent's opening events),
//! `events_marked_as_seen` (agent read the chat → Instagram `mark_seen`), `chat_deactivated` (the
//! chat's thread closed, so the next Instagram message resumes it directly). Acknowledged and dropped on purpose:
//! `event_updated` (Instagram cannot edit a sent message, and a second "corrected" message would
//! confuse the customer), `incoming_rich_message_postback` (postbacks come from customers clicking
//! LiveChat buttons; the bridge's customers are on Instagram and cannot click them), internal notes
//! (`visibility: agents`), system messages, and the bridge's own events (`custom_id` `ig:…`), so
//! nothing loops back to Instagram.

use crate::ids::{ChatId, ThreadId};
use serde_json::Value;

use super::event::AgentEvent;
use crate::config::RotatingSecret;

use crate::jobs::LivechatEventJob;

/// Why a body was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AuthError {
    /// No JSON object with a string `secret_key`.
    #[error("no secret_key in the body")]
    Missing,
    /// The `secret_key` is not ours.
    #[error("wrong secret_key")]
    Wrong,
}

/// Checks the body's `secret_key` in constant time and returns the parsed body.
pub fn authenticate(secret: &RotatingSecret, body: &[u8]) -> Result<Value, AuthError> {
    let value: Value = serde_json::from_slice(body).map_err(|_| AuthError::Missing)?;
    let candidate = value
        .get("secret_key")
        .and_then(Value::as_str)
        .ok_or(AuthError::Missing)?;
    if secret.matches(candidate) {
        Ok(value)
    } else {
        Err(AuthError::Wrong)
    }
}

/// What to do with an authentic webhook.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Queue this job.
    Enqueue(LivechatEventJob),
    /// Acknowledge and drop, for the reason given.
    Ignore(&'static str),
}

fn str_at<'a>(v: &'a Value, pointer: &str) -> Option<&'a str> {
    v.pointer(pointer)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

/// A chat webhook, read once: the action and its payload, typed. Unknown fields are ignored;
/// actions the bridge does not take are kept by name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChatWebhook {
    /// `incoming_event`: an event posted in a chat.
    IncomingEvent {
        /// The chat.
        chat_id: ChatId,
        /// The thread it was posted in.
        thread_id: Option<ThreadId>,
        /// The event.
        event: AgentEvent,
    },
    /// `incoming_chat`: an agent started or reopened a thread.
    IncomingChat {
        /// The chat.
        chat_id: ChatId,
        /// The new thread, with its opening events.
        thread: WebhookThread,
    },
    /// `events_marked_as_seen`: someone read the chat.
    EventsMarkedAsSeen {
        /// The chat.
        chat_id: ChatId,
        /// Who read it.
        user_id: String,
        /// Up to when (as LiveChat wrote it).
        seen_up_to: String,
    },
    /// `chat_deactivated`: the chat's thread closed.
    ChatDeactivated {
        /// The chat.
        chat_id: ChatId,
        /// The closed thread.
        thread_id: ThreadId,
    },
    /// `event_updated`: an agent edited an event.
    EventUpdated,
    /// `incoming_rich_message_postback`: a customer clicked a LiveChat button.
    IncomingRichMessagePostback,
    /// Any other action.
    Other(String),
}

/// The thread of an `incoming_chat`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookThread {
    /// The thread id.
    pub id: ThreadId,
    /// Whether it is open (LiveChat sends `true` for a new thread; taken as open when odd).
    pub active: bool,
    /// Its opening events (none when odd).
    pub events: Vec<AgentEvent>,
}

/// Why an authentic chat webhook cannot be read (what it lacks); the body is then parked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Unreadable(pub String);

impl From<&str> for Unreadable {
    fn from(what: &str) -> Self {
        Unreadable(what.to_string())
    }
}

impl From<String> for Unreadable {
    fn from(what: String) -> Self {
        Unreadable(what)
    }
}

impl ChatWebhook {
    /// Reads an authentic body; `Err` says what it lacks (the body is then parked).
    pub fn parse(body: &Value) -> Result<Self, Unreadable> {
        let action = str_at(body, "/action").ok_or("no action")?;
        let required = |pointer: &str, what: &str| {
            str_at(body, pointer)
                .map(str::to_string)
                .ok_or_else(|| format!("{action} without {what}"))
        };
        let optional = |pointer: &str| str_at(body, pointer).unwrap_or_default().to_string();
        Ok(match action {
            "incoming_event" => {
                let chat_id: ChatId = required("/payload/chat_id", "chat_id")?.into();
                let event = body
                    .pointer("/payload/event")
                    .ok_or("incoming_event without event")?;
                // An event without an id cannot be deduplicated: it is not one LiveChat sends.
                str_at(event, "/id").ok_or("event without id")?;
                ChatWebhook::IncomingEvent {
                    chat_id,
                    thread_id: str_at(body, "/payload/thread_id").map(ThreadId::from),
                    event: AgentEvent::read(event),
                }
            }
            "incoming_chat" => {
                let chat_id: ChatId = required("/payload/chat/id", "chat.id")?.into();
                let thread = WebhookThread {
                    id: required("/payload/chat/thread/id", "thread.id")?.into(),
                    active: body
                        .pointer("/payload/chat/thread/active")
                        .and_then(Value::as_bool)
                        != Some(false),
                    events: body
                        .pointer("/payload/chat/thread/events")
                        .and_then(Value::as_array)
                        .map(|events| events.iter().map(AgentEvent::read).collect())
                        .unwrap_or_default(),
                };
                ChatWebhook::IncomingChat { chat_id, thread }
            }
            "events_marked_as_seen" => ChatWebhook::EventsMarkedAsSeen {
                chat_id: required("/payload/chat_id", "chat_id")?.into(),
                user_id: optional("/payload/user_id"),
                seen_up_to: optional("/payload/seen_up_to"),
            },
            "chat_deactivated" => ChatWebhook::ChatDeactivated {
                chat_id: required("/payload/chat_id", "chat_id")?.into(),
                thread_id: optional("/payload/thread_id").into(),
            },
            "event_updated" => ChatWebhook::EventUpdated,
            "incoming_rich_message_postback" => ChatWebhook::IncomingRichMessagePostback,
            other => ChatWebhook::Other(other.to_string()),
        })
    }

    /// The job it makes: its event id names the platform event (a redelivered webhook is the
    /// same job) and its chat; or why it makes none.
    fn job_key(&self) -> Result<(String, ChatId), &'static str> {
        match self {
            ChatWebhook::IncomingEvent { chat_id, event, .. } => {
                if let Some(why) = event.not_forwarded() {
                    return Err(why);
                }
                let id = event.id.as_deref().unwrap_or_default();
                Ok((format!("{chat_id}:{id}"), chat_id.clone()))
            }
            ChatWebhook::IncomingChat { chat_id, thread } => Ok((
                format!("{chat_id}:incoming_chat:{}", thread.id),
                chat_id.clone(),
            )),
            ChatWebhook::EventsMarkedAsSeen {
                chat_id,
                user_id,
                seen_up_to,
            } => Ok((
                format!("{chat_id}:seen:{user_id}:{seen_up_to}"),
                chat_id.clone(),
            )),
            ChatWebhook::ChatDeactivated { chat_id, thread_id } => Ok((
                format!("{chat_id}:deactivated:{thread_id}"),
                chat_id.clone(),
            )),
            ChatWebhook::EventUpdated => Err("Instagram cannot edit a sent message"),
            ChatWebhook::IncomingRichMessagePostback => {
                Err("postbacks come from LiveChat customers")
            }
            ChatWebhook::Other(_) => Err("action not used by the bridge"),
        }
    }
}

/// Decides on an authentic body; `Err` means it is not a chat webhook we can read.
pub fn decide(mut body: Value) -> Result<Decision, Unreadable> {
    if let Some(obj) = body.as_object_mut() {
        obj.remove("secret_key");
    }
    let webhook = ChatWebhook::parse(&body)?;
    let organization_id = str_at(&body, "/organization_id")
        .ok_or("no organization_id")?
        .to_string();
    let (event_id, chat_id) = match webhook.job_key() {
        Ok(key) => key,
        Err(why) => return Ok(Decision::Ignore(why)),
    };
    let action = str_at(&body, "/action").unwrap_or_default().to_string();
    Ok(Decision::Enqueue(LivechatEventJob {
        organization_id: organization_id.into(),
        action,
        event_id,
        chat_id: Some(chat_id),
        webhook: body,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn secret() -> RotatingSecret {
        secrecy::SecretString::from("EXAMPLE_WEBHOOK_SECRET".to_string()).into()
    }

    fn incoming(event: Value) -> Value {
        json!({"webhook_id": "WEBHOOK_ID_0001", "secret_key": "EXAMPLE_WEBHOOK_SECRET", "action": "incoming_event",
               "organization_id": "ORG", "payload": {"chat_id": "CHAT000001", "thread_id": "THREAD0002", "event": event},
               "additional_data": {}})
    }

    #[test]
    fn authenticates_by_secret_key_only() {
        let body = incoming(json!({"id": "E1", "type": "message", "text": "hi"})).to_string();
        assert!(authenticate(&secret(), body.as_bytes()).is_ok());
        let wrong = body.replace("EXAMPLE_WEBHOOK_SECRET", "EXAMPLE_WEBHOOK_SECREX");
        assert_eq!(
            authenticate(&secret(), wrong.as_bytes()).unwrap_err(),
            AuthError::Wrong
        );
        assert_eq!(
            authenticate(&secret(), b"{}").unwrap_err(),
            AuthError::Missing
        );
        assert_eq!(
            authenticate(&secret(), b"not json").unwrap_err(),
            AuthError::Missing
        );
    }

    #[test]
    fn agent_messages_are_queued_without_the_secret() {
        let d = decide(incoming(json!({"id": "THREAD0002_3", "type": "message", "text": "Hello", "author_id": "agent1@example.com", "visibility": "all"}))).unwrap();
        let Decision::Enqueue(job) = d else {
            panic!("{d:?}")
        };
        assert_eq!(job.event_id, "CHAT000001:THREAD0002_3");
        assert_eq!(job.chat_id.as_deref(), Some("CHAT000001"));
        assert!(job.webhook.get("secret_key").is_none());
    }

    #[test]
    fn loops_notes_and_unused_actions_are_ignored() {
        assert_eq!(
            decide(incoming(
                json!({"id": "E", "type": "message", "text": "x", "custom_id": "ig:MID"})
            ))
            .unwrap(),
            Decision::Ignore("the bridge's own event")
        );
        assert_eq!(
            decide(incoming(
                json!({"id": "E", "type": "message", "text": "x", "visibility": "agents"})
            ))
            .unwrap(),
            Decision::Ignore("internal note")
        );
        assert_eq!(
            decide(incoming(
                json!({"id": "E", "type": "system_message", "text": "x"})
            ))
            .unwrap(),
            Decision::Ignore("system message")
        );
        let mut updated = incoming(json!({"id": "E", "type": "message", "text": "x"}));
        updated["action"] = json!("event_updated");
        assert!(matches!(decide(updated).unwrap(), Decision::Ignore(_)));
        let mut other = incoming(json!({}));
        other["action"] = json!("agent_created");
        assert!(matches!(decide(other).unwrap(), Decision::Ignore(_)));
    }

    #[test]
    fn seen_and_deactivated_are_queued_and_malformed_bodies_are_errors() {
        let seen = json!({"action": "events_marked_as_seen", "organization_id": "ORG", "payload": {"user_id": "agent1@example.com", "chat_id": "C", "seen_up_to": "2026-01-12T15:19:21.010200Z"}});
        assert!(
            matches!(decide(seen).unwrap(), Decision::Enqueue(j) if j.event_id == "C:seen:agent1@example.com:2026-01-12T15:19:21.010200Z")
        );
        let chat = json!({"action": "incoming_chat", "organization_id": "ORG", "payload": {"chat": {"id": "C", "thread": {"id": "T2", "active": true, "events": []}}}});
        assert!(
            matches!(decide(chat).unwrap(), Decision::Enqueue(j) if j.event_id == "C:incoming_chat:T2" && j.chat_id.as_deref() == Some("C"))
        );
        let off = json!({"action": "chat_deactivated", "organization_id": "ORG", "payload": {"chat_id": "C", "thread_id": "T"}});
        assert!(
            matches!(decide(off).unwrap(), Decision::Enqueue(j) if j.event_id == "C:deactivated:T")
        );
        // Odd values in an agent's new thread are read leniently, as the worker always did.
        let odd = json!({"action": "incoming_chat", "organization_id": "ORG", "payload": {"chat": {"id": "C", "thread": {"id": "T3", "active": null, "events": null}}}});
        let webhook = ChatWebhook::parse(&odd).unwrap();
        assert_eq!(
            webhook,
            ChatWebhook::IncomingChat {
                chat_id: "C".into(),
                thread: WebhookThread {
                    id: "T3".into(),
                    active: true,
                    events: vec![],
                },
            }
        );
        assert!(matches!(decide(odd).unwrap(), Decision::Enqueue(_)));
        assert!(decide(json!({"organization_id": "ORG"})).is_err());
        assert!(
            decide(json!({"action": "incoming_event", "organization_id": "ORG", "payload": {}}))
                .is_err()
        );
    }
}
