//! The Customer Chat API (v3.6) calls the bridge makes as an Instagram customer: one request
//! struct per action, each naming its action and its response type
//! (platform.text.com/docs/messaging/customer-chat-api). [`super::LivechatClient::customer`]
//! sends any of them; `CustomerSession::act` sends one as the session's customer, renewing the
//! customer token once when LiveChat refuses it.

use crate::ids::{ChatId, EventId, ThreadId};
use chrono::{DateTime, SecondsFormat, Utc};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize, Serializer};

use super::event::Event;

/// One Customer Chat API action: its request body is `Self`, its answer `Response`.
pub trait Action: Serialize + Send + Sync {
    /// The action's name in `/v3.6/customer/action/{name}`.
    const NAME: &'static str;
    /// What LiveChat answers.
    type Response: DeserializeOwned + Send;
}

/// An answer the bridge reads nothing from (LiveChat answers `{}`; whatever it is, it is
/// accepted).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Empty;

impl<'de> Deserialize<'de> for Empty {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        serde::de::IgnoredAny::deserialize(d)?;
        Ok(Empty)
    }
}

/// `start_chat`: a continuous chat whose first thread carries `events`.
#[derive(Debug, Clone, Serialize)]
pub struct StartChat {
    /// The chat to start.
    pub chat: NewChat,
    /// Continuous: the chat stays the customer's after the thread closes.
    pub continuous: bool,
}

/// The chat of a `start_chat` or `resume_chat`.
#[derive(Debug, Clone, Serialize)]
pub struct NewChat {
    /// The chat to resume (absent when starting one).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<ChatId>,
    /// The new thread and its first events.
    pub thread: NewThread,
}

/// A new thread's first events.
#[derive(Debug, Clone, Serialize)]
pub struct NewThread {
    /// The events, in order.
    pub events: Vec<Event>,
}

impl StartChat {
    /// A continuous chat opening with `events`.
    pub fn with(events: Vec<Event>) -> Self {
        Self {
            chat: NewChat {
                id: None,
                thread: NewThread { events },
            },
            continuous: true,
        }
    }
}

impl Action for StartChat {
    const NAME: &'static str = "start_chat";
    type Response = StartedChat;
}

/// What `start_chat` answers.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct StartedChat {
    /// The new chat.
    pub chat_id: ChatId,
    /// Its thread.
    pub thread_id: ThreadId,
    /// Ids of the initial events, in order.
    #[serde(default)]
    pub event_ids: Vec<EventId>,
}

/// `resume_chat`: a new thread in an inactive chat, opening with `events`.
#[derive(Debug, Clone, Serialize)]
pub struct ResumeChat {
    /// The chat and the new thread.
    pub chat: NewChat,
    /// Continuous, as started.
    pub continuous: bool,
}

impl ResumeChat {
    /// Resumes `chat_id` with `events`.
    pub fn with(chat_id: &ChatId, events: Vec<Event>) -> Self {
        Self {
            chat: NewChat {
                id: Some(chat_id.clone()),
                thread: NewThread { events },
            },
            continuous: true,
        }
    }
}

impl Action for ResumeChat {
    const NAME: &'static str = "resume_chat";
    type Response = ResumedChat;
}

/// What `resume_chat` answers.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct ResumedChat {
    /// The new thread.
    pub thread_id: ThreadId,
    /// Ids of the initial events.
    #[serde(default)]
    pub event_ids: Vec<EventId>,
}

/// `send_event` into the chat's active thread (or, with `attach_to_last_thread`, its last one).
#[derive(Debug, Clone, Serialize)]
pub struct SendEvent {
    /// The chat.
    pub chat_id: ChatId,
    /// The event.
    pub event: Event,
    /// Posts into the last thread even when it is inactive (for notices).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub attach_to_last_thread: bool,
}

impl Action for SendEvent {
    const NAME: &'static str = "send_event";
    type Response = SentEvent;
}

/// What `send_event` answers.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct SentEvent {
    /// The posted event's id.
    pub event_id: EventId,
}

/// `get_chat`: a chat with one thread (the given one, or its latest).
#[derive(Debug, Clone, Serialize)]
pub struct GetChat {
    /// The chat.
    pub chat_id: ChatId,
    /// The thread; absent: the latest.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub thread_id: Option<ThreadId>,
}

impl Action for GetChat {
    const NAME: &'static str = "get_chat";
    type Response = Chat;
}

/// A chat as `get_chat` shows it: only what the bridge reads (unknown fields ignored).
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
pub struct Chat {
    /// The chat id.
    #[serde(default)]
    pub id: ChatId,
    /// The thread asked for (absent for a chat without threads).
    #[serde(default)]
    pub thread: Option<Thread>,
}

/// A thread and its events.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
pub struct Thread {
    /// The thread id.
    #[serde(default)]
    pub id: ThreadId,
    /// Whether it is the chat's open thread.
    #[serde(default)]
    pub active: bool,
    /// Its events, in order.
    #[serde(default)]
    pub events: Vec<PostedEvent>,
}

/// An event already in a thread: its ids and text (for recovery and quotes).
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
pub struct PostedEvent {
    /// The event id.
    #[serde(default)]
    pub id: Option<EventId>,
    /// The id the poster gave it (the bridge's `ig:…`).
    #[serde(default)]
    pub custom_id: Option<String>,
    /// Its text, for messages.
    #[serde(default)]
    pub text: Option<String>,
}

/// `list_chats`: the customer's chats, newest first.
#[derive(Debug, Clone, Serialize)]
pub struct ListChats {
    /// How many.
    pub limit: u32,
}

impl Action for ListChats {
    const NAME: &'static str = "list_chats";
    type Response = ChatList;
}

/// What `list_chats` answers.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
pub struct ChatList {
    /// The chats.
    #[serde(default)]
    pub chats_summary: Vec<ChatSummary>,
}

/// One chat of a list.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct ChatSummary {
    /// The chat id.
    pub id: ChatId,
}

/// `mark_events_as_seen`: the customer saw the chat up to a time.
#[derive(Debug, Clone, Serialize)]
pub struct MarkEventsAsSeen {
    /// The chat.
    pub chat_id: ChatId,
    /// Up to when (RFC 3339 with microseconds, as LiveChat writes it).
    #[serde(serialize_with = "rfc3339_micros")]
    pub seen_up_to: DateTime<Utc>,
}

fn rfc3339_micros<S: Serializer>(at: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&at.to_rfc3339_opts(SecondsFormat::Micros, true))
}

impl Action for MarkEventsAsSeen {
    const NAME: &'static str = "mark_events_as_seen";
    type Response = Empty;
}

/// `delete_event`: removes an event the customer posted.
#[derive(Debug, Clone, Serialize)]
pub struct DeleteEvent {
    /// The chat.
    pub chat_id: ChatId,
    /// The event's thread.
    pub thread_id: ThreadId,
    /// The event.
    pub event_id: EventId,
}

impl Action for DeleteEvent {
    const NAME: &'static str = "delete_event";
    type Response = Empty;
}

/// `update_customer`: the customer's name, avatar and session fields.
#[derive(Debug, Clone, Serialize)]
pub struct UpdateCustomer {
    /// Display name.
    pub name: String,
    /// Avatar URL.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub avatar: Option<String>,
    /// Session fields shown in the customer details.
    pub session_fields: Vec<SessionField>,
}

impl Action for UpdateCustomer {
    const NAME: &'static str = "update_customer";
    type Response = Empty;
}

/// `set_customer_session_fields`.
#[derive(Debug, Clone, Serialize)]
pub struct SetCustomerSessionFields {
    /// The fields.
    pub session_fields: Vec<SessionField>,
}

impl Action for SetCustomerSessionFields {
    const NAME: &'static str = "set_customer_session_fields";
    type Response = Empty;
}

/// One session field: LiveChat takes each as an object with one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionField {
    /// Its name.
    pub key: String,
    /// Its value.
    pub value: String,
}

impl SessionField {
    /// `{key: value}`.
    pub fn new(key: &str, value: impl Into<String>) -> Self {
        Self {
            key: key.to_string(),
            value: value.into(),
        }
    }
}

impl Serialize for SessionField {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = s.serialize_map(Some(1))?;
        map.serialize_entry(&self.key, &self.value)?;
        map.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn requests_serialize_as_the_api_documents_them() {
        let seen = DateTime::parse_from_rfc3339("2026-01-02T03:04:05.123456Z").unwrap();
        let cases = [
            (
                serde_json::to_value(StartChat::with(vec![Event::message("Hi")])).unwrap(),
                json!({"chat": {"thread": {"events": [{"type": "message", "text": "Hi"}]}}, "continuous": true}),
            ),
            (
                serde_json::to_value(ResumeChat::with(&ChatId::from("C1"), vec![])).unwrap(),
                json!({"chat": {"id": "C1", "thread": {"events": []}}, "continuous": true}),
            ),
            (
                serde_json::to_value(MarkEventsAsSeen {
                    chat_id: "C1".into(),
                    seen_up_to: seen.with_timezone(&Utc),
                })
                .unwrap(),
                json!({"chat_id": "C1", "seen_up_to": "2026-01-02T03:04:05.123456Z"}),
            ),
            (
                serde_json::to_value(SetCustomerSessionFields {
                    session_fields: vec![SessionField::new("instagram_id", "1")],
                })
                .unwrap(),
                json!({"session_fields": [{"instagram_id": "1"}]}),
            ),
            (
                serde_json::to_value(SendEvent {
                    chat_id: "C1".into(),
                    event: Event::message("x"),
                    attach_to_last_thread: false,
                })
                .unwrap(),
                json!({"chat_id": "C1", "event": {"type": "message", "text": "x"}}),
            ),
        ];
        for (got, want) in cases {
            assert_eq!(got, want);
        }
    }

    #[test]
    fn a_chat_reads_what_the_bridge_needs_and_ignores_the_rest() {
        let chat: Chat = serde_json::from_value(json!({
            "id": "C1", "users": [], "thread": {"id": "T1", "active": true, "events": [
                {"id": "E1", "type": "message", "text": "Hi", "custom_id": "ig:M1#0", "author_id": "x"},
                {"id": "E2", "type": "file", "url": "https://cdn/x"}
            ]}
        }))
        .unwrap();
        let thread = chat.thread.unwrap();
        assert!(thread.active);
        assert_eq!(thread.events[0].custom_id.as_deref(), Some("ig:M1#0"));
        assert_eq!(thread.events[1].text, None);
    }
}
