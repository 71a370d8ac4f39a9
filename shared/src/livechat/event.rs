//! LiveChat chat events, both ways: [`Event`], what the bridge posts as the customer (messages,
//! its notices, cards showing Instagram media), and [`AgentEvent`], what an agent's event in a
//! chat webhook says (platform.text.com/docs/messaging/agent-chat-api/data-structures#events).

use crate::ids::EventId;
use serde::Serialize;
use serde_json::Value;

/// An event the bridge posts into a chat.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    /// A customer message.
    Message {
        /// Its text.
        text: String,
        /// The bridge's id for it (`ig:…`), so a retry finds it and the webhook ignores it.
        #[serde(skip_serializing_if = "Option::is_none")]
        custom_id: Option<String>,
    },
    /// A notice from the bridge, not attributed to the customer.
    SystemMessage {
        /// Always `igbridge.notice`.
        system_message_type: String,
        /// What it says.
        text: String,
        /// The bridge's id for it (empty when it needs none).
        custom_id: String,
    },
    /// Cards (the `cards` template), showing media from its CDN URL.
    RichMessage {
        /// Always `cards`.
        template_id: String,
        /// The cards.
        elements: Vec<Card>,
        /// The bridge's id for it.
        #[serde(skip_serializing_if = "Option::is_none")]
        custom_id: Option<String>,
    },
}

impl Event {
    /// A message without an id.
    pub fn message(text: &str) -> Self {
        Event::Message {
            text: text.to_string(),
            custom_id: None,
        }
    }

    /// A bridge notice.
    pub fn notice(text: &str, custom_id: &str) -> Self {
        Event::SystemMessage {
            system_message_type: "igbridge.notice".into(),
            text: text.to_string(),
            custom_id: custom_id.to_string(),
        }
    }

    /// One card.
    pub fn card(card: Card) -> Self {
        Event::RichMessage {
            template_id: "cards".into(),
            elements: vec![card],
            custom_id: None,
        }
    }

    /// The same event with the bridge's id.
    pub fn with_custom_id(mut self, id: &str) -> Self {
        match &mut self {
            Event::Message { custom_id, .. } | Event::RichMessage { custom_id, .. } => {
                *custom_id = Some(id.to_string())
            }
            Event::SystemMessage { custom_id, .. } => *custom_id = id.to_string(),
        }
        self
    }
}

/// One card of a rich message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Card {
    /// Its title.
    pub title: String,
    /// A line under the title.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subtitle: Option<String>,
    /// A picture shown inline.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image: Option<Image>,
    /// Its buttons.
    pub buttons: Vec<Button>,
}

/// A card's picture.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Image {
    /// Where it is (Meta's CDN: never re-hosted).
    pub url: String,
    /// What it shows.
    pub alternative_text: String,
}

/// A card's button that opens a URL.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Button {
    /// Its label.
    pub text: String,
    /// Always `url`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The URL.
    pub value: String,
    /// The postback id LiveChat requires.
    pub postback_id: String,
}

impl Button {
    /// A button that opens `url`.
    pub fn url(text: &str, url: &str, postback_id: &str) -> Self {
        Self {
            text: text.to_string(),
            kind: "url".into(),
            value: url.to_string(),
            postback_id: postback_id.to_string(),
        }
    }
}

/// An event of a chat webhook (`incoming_event`, or the events of `incoming_chat`'s thread):
/// who wrote it and what it is. Unknown fields are ignored and unknown kinds kept as
/// [`AgentEventKind::Other`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AgentEvent {
    /// The event id.
    pub id: Option<EventId>,
    /// Who wrote it (an agent's e-mail, a bot's id, or the customer's id).
    pub author_id: Option<String>,
    /// The poster's id for it (the bridge's start with `ig:`).
    pub custom_id: Option<String>,
    /// `agents` for internal notes.
    pub visibility: Option<String>,
    /// What it is.
    pub kind: AgentEventKind,
}

/// What an agent's event is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum AgentEventKind {
    /// A text message.
    Message {
        /// Its text.
        text: String,
    },
    /// A file the agent attached (LiveChat's CDN URL).
    File {
        /// Where it is.
        url: String,
        /// Its MIME type.
        content_type: String,
        /// Its name.
        name: String,
        /// Its size in bytes.
        size: Option<u64>,
    },
    /// Cards or quick replies.
    RichMessage {
        /// The cards.
        elements: Vec<RichElement>,
    },
    /// A system message (LiveChat's own: transfers, closings).
    SystemMessage,
    /// Anything else (forms, custom events, kinds added later).
    #[default]
    Other,
}

/// One card of an agent's rich message.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RichElement {
    /// Its title.
    pub title: Option<String>,
    /// Its subtitle.
    pub subtitle: Option<String>,
    /// Its buttons.
    pub buttons: Vec<RichButton>,
}

/// A button of an agent's card.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RichButton {
    /// Its label.
    pub text: Option<String>,
}

/// A string field, or nothing when absent or of another type.
fn text(value: &Value, field: &str) -> Option<String> {
    value.get(field).and_then(Value::as_str).map(str::to_string)
}

/// The objects of an array field (nothing when absent or of another type).
fn items<'a>(value: &'a Value, field: &str) -> impl Iterator<Item = &'a Value> {
    value
        .get(field)
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
}

impl AgentEventKind {
    /// Reads the kind by its `type`, each field leniently (absent or odd: empty).
    fn read(value: &Value) -> Self {
        let field = |f: &str| text(value, f).unwrap_or_default();
        match value.get("type").and_then(Value::as_str) {
            Some("message") => AgentEventKind::Message {
                text: field("text"),
            },
            Some("file") => AgentEventKind::File {
                url: field("url"),
                content_type: field("content_type"),
                name: field("name"),
                size: value.get("size").and_then(Value::as_u64),
            },
            Some("rich_message") => AgentEventKind::RichMessage {
                elements: items(value, "elements").map(RichElement::read).collect(),
            },
            Some("system_message" | "system") => AgentEventKind::SystemMessage,
            _ => AgentEventKind::Other,
        }
    }
}

impl RichElement {
    fn read(value: &Value) -> Self {
        Self {
            title: text(value, "title"),
            subtitle: text(value, "subtitle"),
            buttons: items(value, "buttons")
                .map(|b| RichButton {
                    text: text(b, "text"),
                })
                .collect(),
        }
    }
}

impl AgentEvent {
    /// Reads an event field by field, each leniently: a field of an unexpected type is left
    /// out on its own (it must not hide the others: a lost `custom_id` or `visibility` would
    /// send an event back to the customer), and a kind that cannot be told is
    /// [`AgentEventKind::Other`].
    pub fn read(value: &Value) -> Self {
        Self {
            id: text(value, "id").map(EventId::from),
            author_id: text(value, "author_id"),
            custom_id: text(value, "custom_id"),
            visibility: text(value, "visibility"),
            kind: AgentEventKind::read(value),
        }
    }

    /// Why the bridge does not forward it to Instagram, if it does not: its own events
    /// (`custom_id` `ig:…`), internal notes, system messages.
    pub fn not_forwarded(&self) -> Option<&'static str> {
        if self
            .custom_id
            .as_deref()
            .is_some_and(|c| c.starts_with("ig:"))
        {
            return Some("the bridge's own event");
        }
        if self.visibility.as_deref() == Some("agents") {
            return Some("internal note");
        }
        match self.kind {
            AgentEventKind::SystemMessage => Some("system message"),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn events_serialize_as_livechat_takes_them() {
        let card = Card {
            title: "Photo".into(),
            subtitle: None,
            image: Some(Image {
                url: "https://cdn/x".into(),
                alternative_text: "Photo sent on Instagram".into(),
            }),
            buttons: vec![Button::url("Open photo", "https://cdn/x", "open_media")],
        };
        let cases = [
            (
                Event::message("Hi").with_custom_id("ig:M#0"),
                json!({"type": "message", "text": "Hi", "custom_id": "ig:M#0"}),
            ),
            (
                Event::notice("Note", ""),
                json!({"type": "system_message", "system_message_type": "igbridge.notice", "text": "Note", "custom_id": ""}),
            ),
            (
                Event::card(card).with_custom_id("ig:M#1"),
                json!({"type": "rich_message", "template_id": "cards", "custom_id": "ig:M#1", "elements": [
                    {"title": "Photo", "image": {"url": "https://cdn/x", "alternative_text": "Photo sent on Instagram"},
                     "buttons": [{"text": "Open photo", "type": "url", "value": "https://cdn/x", "postback_id": "open_media"}]}
                ]}),
            ),
        ];
        for (event, want) in cases {
            assert_eq!(serde_json::to_value(event).unwrap(), want);
        }
    }

    #[test]
    fn agent_events_read_every_kind_and_keep_unknown_ones() {
        let file = AgentEvent::read(
            &json!({"id": "E1", "type": "file", "url": "https://cdn/x.png",
            "content_type": "image/png", "name": "x.png", "size": 10, "author_id": "a@b.c", "new_field": 1}),
        );
        assert_eq!(file.id.as_deref(), Some("E1"));
        assert!(matches!(
            file.kind,
            AgentEventKind::File { size: Some(10), .. }
        ));
        let form = AgentEvent::read(&json!({"id": "E2", "type": "filled_form", "fields": []}));
        assert_eq!(form.kind, AgentEventKind::Other);
        assert_eq!(form.not_forwarded(), None);
        let system = AgentEvent::read(&json!({"type": "system_message", "text": "closed"}));
        assert_eq!(system.not_forwarded(), Some("system message"));
        let ours =
            AgentEvent::read(&json!({"type": "message", "text": "x", "custom_id": "ig:M#0"}));
        assert_eq!(ours.not_forwarded(), Some("the bridge's own event"));
        let note =
            AgentEvent::read(&json!({"type": "message", "text": "x", "visibility": "agents"}));
        assert_eq!(note.not_forwarded(), Some("internal note"));
        assert_eq!(AgentEvent::read(&json!(null)).kind, AgentEventKind::Other);
    }

    #[test]
    fn an_odd_field_loses_only_itself() {
        // A field of an unexpected type must not hide the others: the bridge's own id (or an
        // internal note's visibility) missed would send an event back to the customer.
        let ours = AgentEvent::read(&json!({"id": "E1", "type": "message", "text": "x",
            "custom_id": "ig:M#0", "visibility": 3, "author_id": {"odd": true}}));
        assert_eq!(ours.id.as_deref(), Some("E1"));
        assert_eq!(ours.not_forwarded(), Some("the bridge's own event"));
        let note = AgentEvent::read(&json!({"id": "E2", "type": "message", "text": "x",
            "visibility": "agents", "custom_id": 7}));
        assert_eq!(note.not_forwarded(), Some("internal note"));
        // A file whose size is not a number is still a file (sent without the size check).
        let file = AgentEvent::read(
            &json!({"id": "E3", "type": "file", "url": "https://cdn/x.png",
            "content_type": "image/png", "name": null, "size": "12"}),
        );
        assert_eq!(
            file.kind,
            AgentEventKind::File {
                url: "https://cdn/x.png".into(),
                content_type: "image/png".into(),
                name: String::new(),
                size: None,
            }
        );
        let text = AgentEvent::read(&json!({"id": "E4", "type": "message", "text": null}));
        assert_eq!(
            text.kind,
            AgentEventKind::Message {
                text: String::new()
            }
        );
        let card = AgentEvent::read(&json!({"id": "E5", "type": "rich_message", "elements": [
            {"title": 5, "subtitle": "Sub", "buttons": null},
            {"title": "Pick", "buttons": [{"text": "Yes"}, {"text": 1}]}
        ]}));
        let AgentEventKind::RichMessage { elements } = card.kind else {
            panic!("{card:?}")
        };
        assert_eq!(elements[0].subtitle.as_deref(), Some("Sub"));
        assert_eq!(elements[1].title.as_deref(), Some("Pick"));
        assert_eq!(elements[1].buttons[0].text.as_deref(), Some("Yes"));
    }
}
