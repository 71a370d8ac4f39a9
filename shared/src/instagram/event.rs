//! What an Instagram messaging item means: a typed view over the raw item, tolerant of unknown
//! fields and kinds (unknown ones are kept as [`InboundEvent::Other`] so they are shown, not lost).

use crate::ids::Mid;
use chrono::{DateTime, TimeZone, Utc};
use serde_json::Value;

use super::webhook::kind_of;

/// An attachment of a customer message.
#[derive(Debug, Clone, PartialEq)]
pub struct Attachment {
    /// Meta's type: image, video, audio, file, share, story_mention, ig_reel, reel, ig_post,
    /// ig_story, ephemeral, fallback, …
    pub kind: String,
    /// CDN or share URL, when present.
    pub url: Option<String>,
    /// Caption or title (reels, shares).
    pub title: Option<String>,
}

/// What an inline reply points at.
#[derive(Debug, Clone, PartialEq)]
pub enum ReplyTo {
    /// An earlier message.
    Message(Mid),
    /// A story of the business.
    Story {
        /// Story CDN URL (expires).
        url: Option<String>,
        /// Story id.
        id: Option<String>,
    },
}

/// Ad, ig.me link or product attribution.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Referral {
    /// `ref` parameter.
    pub reference: Option<String>,
    /// `ADS`, a link, `STORY_MENTION`, …
    pub source: Option<String>,
    /// `OPEN_THREAD`, …
    pub kind: Option<String>,
    /// Ad id.
    pub ad_id: Option<String>,
    /// Ad title.
    pub ad_title: Option<String>,
    /// Shops product id.
    pub product_id: Option<String>,
}

/// A customer (or echoed business) message.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Message {
    /// Meta message id.
    pub mid: Mid,
    /// Text, if any.
    pub text: Option<String>,
    /// Attachments, in order.
    pub attachments: Vec<Attachment>,
    /// Sent by the business (this app, another app or the Instagram app).
    pub is_echo: bool,
    /// Content the API cannot deliver.
    pub is_unsupported: bool,
    /// Quick reply payload, when a quick reply was tapped.
    pub quick_reply: Option<String>,
    /// Inline reply target.
    pub reply_to: Option<ReplyTo>,
    /// Attribution carried by the message.
    pub referral: Option<Referral>,
}

/// Reaction change.
#[derive(Debug, Clone, PartialEq)]
pub struct Reaction {
    /// The message reacted to.
    pub mid: Mid,
    /// `react`, `unreact`, or something new.
    pub action: String,
    /// Named reaction (`love`, …).
    pub reaction: Option<String>,
    /// The emoji.
    pub emoji: Option<String>,
}

/// The meaning of one messaging item.
#[derive(Debug, Clone, PartialEq)]
pub enum InboundEvent {
    /// A message.
    Message(Message),
    /// The customer unsent a message.
    Unsend {
        /// The unsent message.
        mid: Mid,
    },
    /// The customer edited a message.
    Edit {
        /// The edited message.
        mid: Mid,
        /// New text.
        text: Option<String>,
    },
    /// Reaction added or removed.
    Reaction(Reaction),
    /// Read receipt.
    Read {
        /// Last message read.
        mid: Mid,
    },
    /// Icebreaker or template button.
    Postback {
        /// Message id (v11+).
        mid: Option<Mid>,
        /// Button title.
        title: Option<String>,
        /// Payload.
        payload: Option<String>,
    },
    /// ig.me link opened in an existing conversation.
    Referral(Referral),
    /// A `changes[]` item (dashboard test event, comments, …).
    Change {
        /// The change field.
        field: String,
    },
    /// A kind this build does not know; shown as such.
    Other {
        /// The item's kind key.
        kind: String,
    },
}

fn s(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn referral(v: &Value) -> Referral {
    Referral {
        reference: s(v.get("ref")),
        source: s(v.get("source")),
        kind: s(v.get("type")),
        ad_id: s(v.get("ad_id")),
        ad_title: s(v.pointer("/ads_context_data/ad_title")),
        product_id: s(v.pointer("/product/id")),
    }
}

fn message(m: &Value) -> InboundEvent {
    let mid = Mid::from(s(m.get("mid")).unwrap_or_default());
    if m.get("is_deleted") == Some(&Value::Bool(true)) {
        return InboundEvent::Unsend { mid };
    }
    let attachments = m
        .get("attachments")
        .and_then(Value::as_array)
        .map(|list| {
            list.iter()
                .map(|a| Attachment {
                    kind: s(a.get("type")).unwrap_or_else(|| "unknown".into()),
                    url: s(a.pointer("/payload/url")),
                    title: s(a.pointer("/payload/title")),
                })
                .collect()
        })
        .unwrap_or_default();
    let reply_to = m.get("reply_to").and_then(|r| {
        if let Some(mid) = s(r.get("mid")) {
            Some(ReplyTo::Message(mid.into()))
        } else {
            r.get("story").map(|st| ReplyTo::Story {
                url: s(st.get("url")),
                id: s(st.get("id")),
            })
        }
    });
    InboundEvent::Message(Message {
        mid,
        text: s(m.get("text")),
        attachments,
        is_echo: m.get("is_echo") == Some(&Value::Bool(true)),
        is_unsupported: m.get("is_unsupported") == Some(&Value::Bool(true)),
        quick_reply: s(m.pointer("/quick_reply/payload")),
        reply_to,
        referral: m.get("referral").map(referral),
    })
}

/// Classifies a job's item (`field` is `messaging`, `standby` or `changes:<field>`).
pub fn classify(field: &str, item: &Value) -> InboundEvent {
    if let Some(change) = field.strip_prefix("changes:") {
        return InboundEvent::Change {
            field: change.to_string(),
        };
    }
    let kind = kind_of(item);
    let body = item.get(&kind).unwrap_or(&Value::Null);
    match kind.as_str() {
        "message" => message(body),
        "message_edit" => InboundEvent::Edit {
            mid: s(body.get("mid")).unwrap_or_default().into(),
            text: s(body.get("text")),
        },
        "reaction" => InboundEvent::Reaction(Reaction {
            mid: s(body.get("mid")).unwrap_or_default().into(),
            action: s(body.get("action")).unwrap_or_else(|| "react".into()),
            reaction: s(body.get("reaction")),
            emoji: s(body.get("emoji")),
        }),
        "read" => InboundEvent::Read {
            mid: s(body.get("mid")).unwrap_or_default().into(),
        },
        "postback" => InboundEvent::Postback {
            mid: s(body.get("mid")).map(Mid::from),
            title: s(body.get("title")),
            payload: s(body.get("payload")),
        },
        "referral" => InboundEvent::Referral(referral(body)),
        _ => InboundEvent::Other { kind },
    }
}

/// The item's `timestamp` (epoch ms, or seconds as in the dashboard test event; number or string).
pub fn timestamp(item: &Value) -> Option<DateTime<Utc>> {
    let raw = match item.get("timestamp")? {
        Value::Number(n) => n.as_i64()?,
        Value::String(s) => s.parse().ok()?,
        _ => return None,
    };
    if raw > 100_000_000_000 {
        Utc.timestamp_millis_opt(raw).single()
    } else {
        Utc.timestamp_opt(raw, 0).single()
    }
}

impl InboundEvent {
    /// Whether this opens (or refreshes) the 24-hour reply window: Meta counts from the
    /// customer's last *message* — not from reactions, edits, postbacks, referrals or reads, and
    /// not from the business's own echoes.
    pub fn opens_window(&self) -> bool {
        matches!(self, InboundEvent::Message(m) if !m.is_echo)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn only_customer_messages_open_the_window() {
        let opens =
            |kind: &str, body: Value| classify("messaging", &item(kind, body)).opens_window();
        assert!(opens("message", json!({"mid": "M", "text": "hi"})));
        assert!(opens(
            "message",
            json!({"mid": "M", "is_unsupported": true})
        ));
        assert!(!opens(
            "message",
            json!({"mid": "M", "text": "x", "is_echo": true})
        ));
        assert!(!opens("message", json!({"mid": "M", "is_deleted": true})));
        assert!(!opens(
            "reaction",
            json!({"mid": "M", "action": "react", "reaction": "love"})
        ));
        assert!(!opens(
            "message_edit",
            json!({"mid": "M", "text": "y", "num_edit": 1})
        ));
        assert!(!opens(
            "postback",
            json!({"mid": "M", "title": "t", "payload": "p"})
        ));
        assert!(!opens(
            "referral",
            json!({"ref": "r", "source": "s", "type": "OPEN_THREAD"})
        ));
        assert!(!opens("read", json!({"mid": "M"})));
    }

    fn item(kind: &str, body: Value) -> Value {
        json!({"sender":{"id":"IGSID_1001"},"recipient":{"id":"17841400000000001"},"timestamp":1569262485349u64, kind: body})
    }

    #[test]
    fn classifies_documented_payloads() {
        let e = classify(
            "messaging",
            &item(
                "message",
                json!({"mid":"M","text":"Hi","reply_to":{"story":{"url":"https://cdn/s","id":"S1"}}}),
            ),
        );
        let InboundEvent::Message(m) = e else {
            panic!()
        };
        assert_eq!(m.text.as_deref(), Some("Hi"));
        assert_eq!(
            m.reply_to,
            Some(ReplyTo::Story {
                url: Some("https://cdn/s".into()),
                id: Some("S1".into())
            })
        );

        let e = classify(
            "messaging",
            &item(
                "message",
                json!({"mid":"M","attachments":[{"type":"ig_reel","payload":{"reel_video_id":"1","title":"T","url":"https://cdn/r"}}]}),
            ),
        );
        let InboundEvent::Message(m) = e else {
            panic!()
        };
        assert_eq!(
            m.attachments[0],
            Attachment {
                kind: "ig_reel".into(),
                url: Some("https://cdn/r".into()),
                title: Some("T".into())
            }
        );

        assert_eq!(
            classify(
                "messaging",
                &item("message", json!({"mid":"M","is_deleted":true}))
            ),
            InboundEvent::Unsend { mid: "M".into() }
        );
        assert!(matches!(
            classify(
                "messaging",
                &item("reaction", json!({"mid":"M","action":"unreact"}))
            ),
            InboundEvent::Reaction(Reaction { reaction: None, .. })
        ));
        assert_eq!(
            classify("messaging", &item("read", json!({"mid":"M"}))),
            InboundEvent::Read { mid: "M".into() }
        );
        assert_eq!(
            classify(
                "messaging",
                &item(
                    "postback",
                    json!({"mid":"P","title":"Track","payload":"TRACK"})
                )
            ),
            InboundEvent::Postback {
                mid: Some("P".into()),
                title: Some("Track".into()),
                payload: Some("TRACK".into())
            }
        );
        let InboundEvent::Referral(r) = classify(
            "messaging",
            &item(
                "referral",
                json!({"ref":"spring","source":"https://ig.me/m/x?ref=spring","type":"OPEN_THREAD"}),
            ),
        ) else {
            panic!()
        };
        assert_eq!(r.reference.as_deref(), Some("spring"));
        assert_eq!(
            classify("messaging", &item("future", json!({}))),
            InboundEvent::Other {
                kind: "future".into()
            }
        );
        assert_eq!(
            classify("changes:messages", &json!({"field":"messages"})),
            InboundEvent::Change {
                field: "messages".into()
            }
        );
    }

    #[test]
    fn ad_referral_inside_a_message_and_quick_reply() {
        let e = classify(
            "messaging",
            &item(
                "message",
                json!({"mid":"M","text":"Is this available?","quick_reply":{"payload":"Q"},
            "referral":{"ref":"ad_ref_1","ad_id":"AD1","source":"ADS","type":"OPEN_THREAD","ads_context_data":{"ad_title":"Spring sale"}}}),
            ),
        );
        let InboundEvent::Message(m) = e else {
            panic!()
        };
        assert_eq!(m.quick_reply.as_deref(), Some("Q"));
        let r = m.referral.unwrap();
        assert_eq!(
            (
                r.ad_id.as_deref(),
                r.ad_title.as_deref(),
                r.source.as_deref()
            ),
            (Some("AD1"), Some("Spring sale"), Some("ADS"))
        );
    }

    #[test]
    fn timestamps_in_ms_seconds_or_strings() {
        assert_eq!(
            timestamp(&json!({"timestamp":1569262485349u64}))
                .unwrap()
                .timestamp_millis(),
            1569262485349
        );
        assert_eq!(
            timestamp(&json!({"timestamp":"1527459824"}))
                .unwrap()
                .timestamp(),
            1527459824
        );
        assert!(timestamp(&json!({})).is_none());
    }
}
