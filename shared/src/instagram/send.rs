//! Sending to Instagram: text split to the Send API's 1000-byte limit, attachment types from MIME
//! types, and the messaging-window rules (24 h standard, `HUMAN_AGENT` up to 7 days).

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;
use serde_json::Value;

/// The Send API's limit on text, in UTF-8 bytes.
pub const MAX_TEXT_BYTES: usize = 1000;

/// Splits text into pieces of at most `max` bytes, at whitespace where possible, otherwise at a
/// character boundary; order kept, nothing lost but the whitespace at the cut.
pub fn split_for_instagram(text: &str, max: usize) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text.trim();
    while rest.len() > max {
        let mut cut = max;
        while !rest.is_char_boundary(cut) {
            cut -= 1;
        }
        // Prefer the last whitespace in the window, unless that leaves a tiny piece.
        if let Some(ws) = rest[..cut].rfind(char::is_whitespace) {
            if ws > max / 2 {
                cut = ws;
            }
        }
        out.push(rest[..cut].trim_end().to_string());
        rest = rest[cut..].trim_start();
    }
    if !rest.is_empty() {
        out.push(rest.to_string());
    }
    out
}

const MB: u64 = 1024 * 1024;

/// What Instagram accepts as an attachment, per type (Send API for Instagram: images PNG, JPEG
/// or GIF up to 8 MB; audio AAC, M4A, WAV or MP4 up to 25 MB; video MP4, OGG, AVI, MOV or WebM up
/// to 25 MB; files PDF up to 25 MB).
const ATTACHMENT_RULES: &[(&str, &[&str], u64)] = &[
    (
        "image",
        &["image/png", "image/jpeg", "image/jpg", "image/gif"],
        8 * MB,
    ),
    (
        "audio",
        &[
            "audio/aac",
            "audio/mp4",
            "audio/x-m4a",
            "audio/m4a",
            "audio/wav",
            "audio/x-wav",
            "audio/wave",
        ],
        25 * MB,
    ),
    (
        "video",
        &[
            "video/mp4",
            "video/ogg",
            "video/x-msvideo",
            "video/avi",
            "video/quicktime",
            "video/webm",
        ],
        25 * MB,
    ),
    ("file", &["application/pdf"], 25 * MB),
];

/// Why Instagram cannot take a file as an attachment (the link is then sent as text and the
/// agent is told this).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotAttachable {
    /// A type Instagram does not accept.
    #[error(
        "Instagram does not accept {0} files as attachments (images: PNG, JPEG, GIF; audio: AAC, M4A, WAV, MP4; video: MP4, OGG, AVI, MOV, WebM; documents: PDF)"
    )]
    Type(String),
    /// Larger than Instagram accepts for its kind.
    #[error("the file is {:.1} MB and Instagram accepts {kind} attachments up to {} MB", *.bytes as f64 / MB as f64, .limit / MB)]
    TooLarge {
        /// Its kind.
        kind: &'static str,
        /// Its size.
        bytes: u64,
        /// The kind's limit.
        limit: u64,
    },
}

/// The Instagram attachment type for a file of `content_type` and `size` bytes, or why Instagram
/// cannot take it as an attachment.
pub fn attachment_type(
    content_type: &str,
    size: Option<u64>,
) -> Result<&'static str, NotAttachable> {
    let ct = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let Some((kind, _, limit)) = ATTACHMENT_RULES
        .iter()
        .find(|(_, types, _)| types.contains(&ct.as_str()))
    else {
        let shown = if ct.is_empty() {
            "unknown".to_string()
        } else {
            ct
        };
        return Err(NotAttachable::Type(shown));
    };
    match size {
        Some(n) if n > *limit => Err(NotAttachable::TooLarge {
            kind,
            bytes: n,
            limit: *limit,
        }),
        _ => Ok(kind),
    }
}

/// Who wrote a LiveChat message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Author {
    /// A human agent.
    Human,
    /// A bot (ChatBot, automations).
    Bot,
}

/// How a message may be sent, given the customer's last message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Window {
    /// Inside 24 hours: a standard response.
    Standard,
    /// 24 hours to 7 days, written by a human: `MESSAGE_TAG` + `HUMAN_AGENT`.
    HumanAgent,
    /// A bot after 24 hours.
    ClosedForBots,
    /// Nobody after 7 days, or the customer never wrote.
    Closed,
}

/// Applies Meta's messaging-window policy.
pub fn window(
    last_customer_message: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
    author: Author,
) -> Window {
    let Some(last) = last_customer_message else {
        return Window::Closed;
    };
    let age = now - last;
    if age < Duration::hours(24) {
        Window::Standard
    } else if age >= Duration::days(7) {
        Window::Closed
    } else if author == Author::Human {
        Window::HumanAgent
    } else {
        Window::ClosedForBots
    }
}

/// A message the Send API takes (`message` of `POST /{page-id}/messages`,
/// developers.facebook.com/docs/messenger-platform/instagram/features/send-message).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum OutMessage {
    /// Text, at most [`MAX_TEXT_BYTES`].
    Text {
        /// The text.
        text: String,
    },
    /// A file Instagram fetches from its URL.
    Attachment {
        /// What and where.
        attachment: OutAttachment,
    },
}

/// An attachment sent by URL.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OutAttachment {
    /// `image`, `audio`, `video` or `file` ([`attachment_type`]).
    #[serde(rename = "type")]
    pub kind: String,
    /// Its URL.
    pub payload: UrlPayload,
}

/// A URL payload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UrlPayload {
    /// The URL.
    pub url: String,
}

impl OutMessage {
    /// A text message.
    pub fn text(text: &str) -> Self {
        OutMessage::Text {
            text: text.to_string(),
        }
    }

    /// An attachment of `kind` at `url`.
    pub fn attachment(kind: &str, url: &str) -> Self {
        OutMessage::Attachment {
            attachment: OutAttachment {
                kind: kind.to_string(),
                payload: UrlPayload {
                    url: url.to_string(),
                },
            },
        }
    }

    /// What it shares with its echo ([`echo_signature`] of the echo).
    pub fn echo_signature(&self) -> String {
        match self {
            OutMessage::Text { text } => format!("text:{text}"),
            OutMessage::Attachment { attachment } => format!("attachment:{}", attachment.kind),
        }
    }
}

/// A Send API request: a message, or a sender action, to one customer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SendRequest {
    /// The customer.
    pub recipient: Recipient,
    /// What is sent.
    #[serde(flatten)]
    pub content: SendContent,
}

/// The customer a request is for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Recipient {
    /// The IGSID.
    pub id: String,
}

/// What a Send API request sends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum SendContent {
    /// A message under the window's messaging type.
    Message {
        /// The message.
        message: OutMessage,
        /// `RESPONSE`, or `MESSAGE_TAG` with a tag.
        messaging_type: &'static str,
        /// `HUMAN_AGENT` between 24 hours and 7 days.
        #[serde(skip_serializing_if = "Option::is_none")]
        tag: Option<&'static str>,
    },
    /// A sender action (`mark_seen`).
    SenderAction {
        /// The action.
        sender_action: &'static str,
    },
}

/// The Send API request for `message` to `igsid` under the window (which must allow sending).
pub fn message_body(igsid: &str, message: OutMessage, window: Window) -> SendRequest {
    let (messaging_type, tag) = match window {
        Window::HumanAgent => ("MESSAGE_TAG", Some("HUMAN_AGENT")),
        _ => ("RESPONSE", None),
    };
    SendRequest {
        recipient: Recipient {
            id: igsid.to_owned(),
        },
        content: SendContent::Message {
            message,
            messaging_type,
            tag,
        },
    }
}

/// The Send API request that marks the customer's messages seen.
pub fn mark_seen(igsid: &str) -> SendRequest {
    SendRequest {
        recipient: Recipient {
            id: igsid.to_owned(),
        },
        content: SendContent::SenderAction {
            sender_action: "mark_seen",
        },
    }
}

/// What a sent message and its echo have in common, to recognise the echo without keeping the
/// text: the text, or for media the attachment's type (the echo carries Meta's CDN URL, not the
/// URL sent). Reads both shapes: the Send API's `message` (`attachment`) and the echo's
/// (`attachments`). `None` for anything else.
pub fn echo_signature(message: &Value) -> Option<String> {
    if let Some(text) = message.get("text").and_then(Value::as_str) {
        return Some(format!("text:{text}"));
    }
    let kind = message
        .pointer("/attachment/type")
        .or_else(|| message.pointer("/attachments/0/type"))?
        .as_str()?;
    Some(format!("attachment:{kind}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_typed_message_signs_as_its_echo_does() {
        let echo = json!({"mid": "m", "text": "Hi", "is_echo": true});
        assert_eq!(
            Some(OutMessage::text("Hi").echo_signature()),
            echo_signature(&echo)
        );
        let image_echo = json!({"mid": "m", "is_echo": true, "attachments": [{"type": "image", "payload": {"url": "https://cdn/x"}}]});
        let image = OutMessage::attachment("image", "https://example.com/x.png");
        assert_eq!(Some(image.echo_signature()), echo_signature(&image_echo));
        assert_eq!(
            serde_json::to_value(&image).unwrap(),
            json!({"attachment": {"type": "image", "payload": {"url": "https://example.com/x.png"}}})
        );
    }

    #[test]
    fn a_sent_message_and_its_echo_share_a_signature() {
        let sent = json!({"text": "Your order ships tomorrow."});
        let echo =
            json!({"mid": "MID_ECHO_0006", "text": "Your order ships tomorrow.", "is_echo": true});
        assert_eq!(echo_signature(&sent), echo_signature(&echo));
        let image = json!({"attachment": {"type": "image", "payload": {"url": "https://cdn.example.com/x.png"}}});
        let image_echo = json!({"mid": "m", "is_echo": true, "attachments": [{"type": "image", "payload": {"url": "https://lookaside.fbsbx.com/ig_messaging_cdn/?asset_id=1"}}]});
        assert_eq!(echo_signature(&image), Some("attachment:image".into()));
        assert_eq!(echo_signature(&image), echo_signature(&image_echo));
        assert_ne!(echo_signature(&sent), echo_signature(&image));
        assert_eq!(
            echo_signature(&json!({"mid": "m", "is_deleted": true})),
            None
        );
    }

    #[test]
    fn text_is_split_at_words_and_utf8_boundaries() {
        assert_eq!(split_for_instagram("short", MAX_TEXT_BYTES), vec!["short"]);
        let words = "lorem ipsum ".repeat(200);
        let parts = split_for_instagram(&words, MAX_TEXT_BYTES);
        assert!(parts.len() >= 3);
        assert!(
            parts
                .iter()
                .all(|p| p.len() <= MAX_TEXT_BYTES && !p.starts_with(' ') && !p.ends_with(' '))
        );
        assert!(
            parts
                .iter()
                .all(|p| p.ends_with("ipsum") || p.ends_with("lorem")),
            "cut inside a word: {parts:?}"
        );
        assert_eq!(parts.join(" "), words.trim());
        let emoji = "😀".repeat(600); // 2400 bytes, no spaces
        let parts = split_for_instagram(&emoji, MAX_TEXT_BYTES);
        assert!(parts.iter().all(|p| p.len() <= MAX_TEXT_BYTES));
        assert_eq!(parts.concat(), emoji);
    }

    #[test]
    fn window_table() {
        let now = Utc::now();
        let h = |hours: i64| Some(now - Duration::hours(hours));
        let cases = [
            (h(1), Author::Human, Window::Standard),
            (h(1), Author::Bot, Window::Standard),
            (h(25), Author::Human, Window::HumanAgent),
            (h(25), Author::Bot, Window::ClosedForBots),
            (h(24 * 7 - 1), Author::Human, Window::HumanAgent),
            (h(24 * 7), Author::Human, Window::Closed),
            (h(24 * 8), Author::Bot, Window::Closed),
            (None, Author::Human, Window::Closed),
        ];
        for (last, author, expected) in cases {
            assert_eq!(window(last, now, author), expected, "{last:?} {author:?}");
        }
    }

    #[test]
    fn bodies_carry_the_tag_only_for_human_agent() {
        let body = |w| serde_json::to_value(message_body("IGSID", OutMessage::text("hi"), w));
        assert_eq!(
            body(Window::HumanAgent).unwrap(),
            json!({"recipient": {"id": "IGSID"}, "message": {"text": "hi"}, "messaging_type": "MESSAGE_TAG", "tag": "HUMAN_AGENT"})
        );
        let b = body(Window::Standard).unwrap();
        assert_eq!(b["messaging_type"], "RESPONSE");
        assert!(b.get("tag").is_none());
        assert_eq!(
            serde_json::to_value(mark_seen("IGSID")).unwrap(),
            json!({"recipient": {"id": "IGSID"}, "sender_action": "mark_seen"})
        );
    }

    #[test]
    fn attachment_types_follow_instagram_limits() {
        assert_eq!(attachment_type("image/png", Some(1000)), Ok("image"));
        assert_eq!(
            attachment_type("IMAGE/JPEG; charset=binary", None),
            Ok("image")
        );
        assert_eq!(attachment_type("image/gif", Some(8 * MB)), Ok("image"));
        assert!(
            attachment_type("image/png", Some(8 * MB + 1))
                .unwrap_err()
                .to_string()
                .contains("8 MB")
        );
        assert_eq!(attachment_type("video/mp4", Some(25 * MB)), Ok("video"));
        assert!(attachment_type("video/mp4", Some(25 * MB + 1)).is_err());
        assert_eq!(attachment_type("video/quicktime", None), Ok("video"));
        assert_eq!(attachment_type("audio/x-m4a", None), Ok("audio"));
        assert!(
            attachment_type("audio/mpeg", None).is_err(),
            "MP3 is not in Instagram's list"
        );
        assert_eq!(attachment_type("application/pdf", Some(MB)), Ok("file"));
        assert!(
            attachment_type("application/msword", None)
                .unwrap_err()
                .to_string()
                .contains("does not accept")
        );
        assert!(attachment_type("image/webp", None).is_err());
        assert!(
            attachment_type("", None)
                .unwrap_err()
                .to_string()
                .contains("unknown files")
        );
    }
}
