//! How each Instagram event looks in LiveChat: pure functions from an event to the LiveChat
//! events that show it. Every kind has a visible result; nothing is silently dropped.

use crate::livechat::chat_api::SessionField;
use crate::livechat::event::{Button, Card, Event, Image};

use crate::instagram::event::{Attachment, InboundEvent, Message, Referral, ReplyTo};

/// Longest quote shown for replies and reactions.
const QUOTE_CHARS: usize = 80;
/// LiveChat's limit on message text (16 KB); longer text is split.
pub const MAX_TEXT_BYTES: usize = 16 * 1024;

/// One thing to show in the chat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Part {
    /// A customer message.
    Text(String),
    /// Customer media, shown in LiveChat from its Meta CDN URL (never downloaded or re-hosted:
    /// Meta's platform policy lets an app keep only the CDN URL); `fallback` is its text form.
    Media {
        /// CDN URL.
        url: String,
        /// Meta's attachment type.
        kind: String,
        /// Text with the link (used inside notices).
        fallback: String,
    },
    /// A notice from the bridge (staff echoes, test events), not attributed to the customer.
    Notice(String),
}

/// What to do in LiveChat for an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Post these parts, in order.
    Post(Vec<Part>),
    /// Mark the chat seen up to the event's time.
    MarkSeen,
    /// Delete the events of this message (unsend).
    Delete(crate::ids::Mid),
}

/// The LiveChat event that shows customer media from its CDN URL: a card whose image is the
/// URL for pictures (agents see it inline), a link card for video, audio and files. Nothing is
/// downloaded; LiveChat's agent app loads the image from Meta's CDN.
pub fn media_event(url: &str, kind: &str) -> Event {
    let button = |text: &str| vec![Button::url(text, url, "open_media")];
    let sent = || Some("Sent on Instagram".to_string());
    let card = |title: &str, subtitle, image, label| Card {
        title: title.to_string(),
        subtitle,
        image,
        buttons: button(label),
    };
    Event::card(match kind {
        "image" => {
            let image = Image {
                url: url.to_string(),
                alternative_text: "Photo sent on Instagram".into(),
            };
            card("Photo", None, Some(image), "Open photo")
        }
        "video" => card("Video", sent(), None, "Play video"),
        "audio" => card("Voice message", sent(), None, "Play audio"),
        _ => card("File", sent(), None, "Open file"),
    })
}

/// Context a renderer may use: a quote of the message replied or reacted to.
#[derive(Debug, Clone, Default)]
pub struct Context {
    /// Text of the referenced LiveChat event, when it could be fetched.
    pub quote: Option<String>,
}

fn quoted(ctx: &Context) -> String {
    match &ctx.quote {
        Some(q) => {
            let short: String = q.chars().take(QUOTE_CHARS).collect();
            let ellipsis = if q.chars().count() > QUOTE_CHARS {
                "…"
            } else {
                ""
            };
            format!("\u{201c}{short}{ellipsis}\u{201d}")
        }
        None => "an earlier message".into(),
    }
}

fn attachment_part(a: &Attachment) -> Part {
    let url = a.url.clone().unwrap_or_default();
    let with_url = |label: &str| {
        let title = a
            .title
            .as_deref()
            .map(|t| format!(" {t}"))
            .unwrap_or_default();
        if url.is_empty() {
            format!("[{label}]{title}")
        } else {
            format!("[{label}]{title}\n{url}")
        }
    };
    match a.kind.as_str() {
        "image" | "video" | "audio" | "file" if !url.is_empty() => Part::Media {
            url: url.clone(),
            kind: a.kind.clone(),
            fallback: with_url(&capitalize(&a.kind)),
        },
        "story_mention" => Part::Text(if url.is_empty() {
            "📣 Mentioned you in their story (no longer available)".into()
        } else {
            format!("📣 Mentioned you in their story:\n{url}")
        }),
        "share" => Part::Text(with_url("Shared a post")),
        "ig_post" => Part::Text(with_url("Shared a post")),
        "ig_reel" | "reel" => Part::Text(with_url("Shared a reel")),
        "ig_story" | "story" => Part::Text(with_url("Shared a story")),
        "media" => Part::Text(with_url("Shared media")),
        "ephemeral" => Part::Text("[View-once media: open Instagram to see it]".into()),
        other => Part::Text(with_url(&format!(
            "{} attachment: open Instagram to see it",
            capitalize(other)
        ))),
    }
}

fn capitalize(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

fn referral_line(r: &Referral) -> String {
    let mut bits = Vec::new();
    if let Some(t) = &r.ad_title {
        bits.push(format!("ad \u{201c}{t}\u{201d}"));
    } else if let Some(id) = &r.ad_id {
        bits.push(format!("ad {id}"));
    }
    if let Some(reference) = &r.reference {
        bits.push(format!("ref {reference}"));
    }
    if let Some(p) = &r.product_id {
        bits.push(format!("product {p}"));
    }
    if bits.is_empty() {
        if let Some(s) = &r.source {
            bits.push(s.clone());
        }
    }
    bits.join(", ")
}

fn message_parts(m: &Message, ctx: &Context) -> Vec<Part> {
    let mut parts = Vec::new();
    let mut text = m.text.clone().unwrap_or_default();
    match &m.reply_to {
        Some(ReplyTo::Message(_)) => text = format!("↩ Replying to {}\n{text}", quoted(ctx)),
        Some(ReplyTo::Story { url, .. }) => {
            let link = url.as_deref().map(|u| format!(" {u}")).unwrap_or_default();
            text = format!("↩ Replied to your story{link}\n{text}");
        }
        None => {}
    }
    if let Some(payload) = &m.quick_reply {
        text = format!("{text}\n[Quick reply: {payload}]");
    }
    if let Some(r) = &m.referral {
        let line = referral_line(r);
        if !line.is_empty() {
            text = format!("{text}\n(via {line})");
        }
    }
    let text = text.trim().to_string();
    if !text.is_empty() {
        parts.push(Part::Text(text));
    }
    parts.extend(m.attachments.iter().map(attachment_part));
    if m.is_unsupported || parts.is_empty() {
        parts.push(Part::Text(
            "[A message Instagram does not let apps show: open Instagram to see it]".into(),
        ));
    }
    parts
}

/// The LiveChat action for an event.
pub fn render(event: &InboundEvent, ctx: &Context) -> Action {
    match event {
        InboundEvent::Message(m) if m.is_echo => {
            let body: Vec<String> = message_parts(m, ctx)
                .into_iter()
                .map(|p| match p {
                    Part::Text(t) | Part::Notice(t) => t,
                    Part::Media { fallback, .. } => fallback,
                })
                .collect();
            Action::Post(vec![Part::Notice(format!(
                "Sent from the Instagram app by your team:\n{}",
                body.join("\n")
            ))])
        }
        InboundEvent::Message(m) => Action::Post(message_parts(m, ctx)),
        InboundEvent::Unsend { mid } => Action::Delete(mid.clone()),
        InboundEvent::Edit { text, .. } => Action::Post(vec![Part::Text(format!(
            "✏️ Edited {}:\n{}",
            quoted(ctx),
            text.as_deref().unwrap_or("")
        ))]),
        InboundEvent::Reaction(r) => {
            let what = r
                .emoji
                .clone()
                .or(r.reaction.clone())
                .unwrap_or_else(|| "a reaction".into());
            Action::Post(vec![Part::Text(if r.action == "unreact" {
                format!("Removed their reaction to {}", quoted(ctx))
            } else {
                format!("Reacted {what} to {}", quoted(ctx))
            })])
        }
        InboundEvent::Read { .. } => Action::MarkSeen,
        InboundEvent::Postback { title, payload, .. } => {
            let mut t = format!("[Tapped: {}]", title.as_deref().unwrap_or("a button"));
            if let Some(p) = payload {
                t.push_str(&format!("\n[Payload: {p}]"));
            }
            Action::Post(vec![Part::Text(t)])
        }
        InboundEvent::Referral(r) => Action::Post(vec![Part::Notice(format!(
            "The customer opened an Instagram link into this conversation ({})",
            referral_line(r)
        ))]),
        InboundEvent::Change { field } => Action::Post(vec![Part::Notice(format!(
            "Instagram webhook test event received (field {field})"
        ))]),
        InboundEvent::Other { kind } => Action::Post(vec![Part::Notice(format!(
            "An Instagram event of kind \u{201c}{kind}\u{201d} arrived that igbridge cannot show yet: open Instagram to see it"
        ))]),
    }
}

/// Session fields to set on the customer for attribution.
pub fn referral_fields(r: &Referral) -> Vec<SessionField> {
    let mut out = Vec::new();
    for (k, v) in [
        ("ig_referral_ref", &r.reference),
        ("ig_referral_source", &r.source),
        ("ig_referral_type", &r.kind),
        ("ig_ad_id", &r.ad_id),
        ("ig_ad_title", &r.ad_title),
        ("ig_product_id", &r.product_id),
    ] {
        if let Some(v) = v {
            out.push(SessionField::new(k, v.as_str()));
        }
    }
    out
}

/// Splits text over LiveChat's limit at character boundaries, keeping order.
pub fn split_for_livechat(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text;
    while rest.len() > MAX_TEXT_BYTES {
        let mut cut = MAX_TEXT_BYTES;
        while !rest.is_char_boundary(cut) {
            cut -= 1;
        }
        out.push(rest[..cut].to_string());
        rest = &rest[cut..];
    }
    out.push(rest.to_string());
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::instagram::event::{Reaction, classify};
    use serde_json::{Value, json};

    fn item(kind: &str, body: Value) -> Value {
        json!({"sender":{"id":"IGSID_1001"},"recipient":{"id":"A"},"timestamp":1, kind: body})
    }

    fn post(v: Value, ctx: &Context) -> Vec<Part> {
        match render(&classify("messaging", &v), ctx) {
            Action::Post(p) => p,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn text_and_media_become_messages_and_files() {
        let p = post(
            item(
                "message",
                json!({"mid":"M","text":"Hi","attachments":[
            {"type":"image","payload":{"url":"https://cdn/i"}},
            {"type":"video","payload":{"url":"https://cdn/v"}}]}),
            ),
            &Context::default(),
        );
        assert_eq!(p[0], Part::Text("Hi".into()));
        assert!(
            matches!(&p[1], Part::Media { kind, url, .. } if kind == "image" && url == "https://cdn/i")
        );
        assert!(matches!(&p[2], Part::Media { kind, .. } if kind == "video"));
    }

    #[test]
    fn every_kind_has_a_visible_result() {
        let ctx = Context {
            quote: Some("Your order ships tomorrow.".into()),
        };
        let cases = [
            (
                item(
                    "message",
                    json!({"mid":"M","attachments":[{"type":"story_mention","payload":{"url":"https://cdn/s"}}]}),
                ),
                "Mentioned you in their story",
            ),
            (
                item(
                    "message",
                    json!({"mid":"M","text":"In stock?","reply_to":{"story":{"url":"https://cdn/st","id":"1"}}}),
                ),
                "Replied to your story https://cdn/st",
            ),
            (
                item(
                    "message",
                    json!({"mid":"M","text":"Yes","reply_to":{"mid":"E"}}),
                ),
                "Replying to \u{201c}Your order ships tomorrow.\u{201d}",
            ),
            (
                item(
                    "message",
                    json!({"mid":"M","attachments":[{"type":"ig_reel","payload":{"title":"Cap","url":"https://cdn/r"}}]}),
                ),
                "[Shared a reel] Cap\nhttps://cdn/r",
            ),
            (
                item(
                    "message",
                    json!({"mid":"M","attachments":[{"type":"share","payload":{"url":"https://cdn/p"}}]}),
                ),
                "[Shared a post]",
            ),
            (
                item(
                    "message",
                    json!({"mid":"M","attachments":[{"type":"ig_post","payload":{"url":"https://cdn/p"}}]}),
                ),
                "[Shared a post]",
            ),
            (
                item(
                    "message",
                    json!({"mid":"M","attachments":[{"type":"ephemeral"}]}),
                ),
                "View-once",
            ),
            (
                item(
                    "message",
                    json!({"mid":"M","attachments":[{"type":"hologram","payload":{"url":"https://cdn/h"}}]}),
                ),
                "Hologram attachment",
            ),
            (
                item("message", json!({"mid":"M","is_unsupported":true})),
                "does not let apps show",
            ),
            (
                item(
                    "message",
                    json!({"mid":"M","text":"Talk to a human","quick_reply":{"payload":"HANDOFF"}}),
                ),
                "[Quick reply: HANDOFF]",
            ),
            (
                item(
                    "message",
                    json!({"mid":"M","text":"Avail?","referral":{"ad_id":"AD1","source":"ADS","ads_context_data":{"ad_title":"Spring"}}}),
                ),
                "(via ad \u{201c}Spring\u{201d})",
            ),
            (
                item(
                    "reaction",
                    json!({"mid":"E","action":"react","reaction":"love","emoji":"❤️"}),
                ),
                "Reacted ❤️ to \u{201c}Your order",
            ),
            (
                item("reaction", json!({"mid":"E","action":"unreact"})),
                "Removed their reaction",
            ),
            (
                item(
                    "postback",
                    json!({"mid":"P","title":"Track my order","payload":"TRACK"}),
                ),
                "[Tapped: Track my order]\n[Payload: TRACK]",
            ),
            (
                item(
                    "referral",
                    json!({"ref":"spring","source":"https://ig.me/m/x","type":"OPEN_THREAD"}),
                ),
                "ref spring",
            ),
            (
                item("message_edit", json!({"mid":"M","text":"new","num_edit":1})),
                "Edited",
            ),
            (item("brand_new", json!({})), "brand_new"),
            (
                item(
                    "message",
                    json!({"mid":"M","text":"From the app","is_echo":true}),
                ),
                "Sent from the Instagram app by your team:\nFrom the app",
            ),
        ];
        for (v, expected) in cases {
            let parts = post(v.clone(), &ctx);
            let shown: Vec<String> = parts
                .iter()
                .map(|p| match p {
                    Part::Text(t) | Part::Notice(t) => t.clone(),
                    Part::Media { fallback, .. } => fallback.clone(),
                })
                .collect();
            assert!(shown.join("\n").contains(expected), "{v}\n→ {shown:?}");
        }
    }

    #[test]
    fn media_is_shown_from_its_cdn_url() {
        let url = "https://lookaside.fbsbx.com/ig_messaging_cdn/?asset_id=1&signature=S";
        let img = serde_json::to_value(media_event(url, "image")).unwrap();
        assert_eq!(img["type"], "rich_message");
        assert_eq!(img["template_id"], "cards");
        assert_eq!(img["elements"][0]["image"]["url"], url);
        let video = serde_json::to_value(media_event(url, "video")).unwrap();
        assert!(video["elements"][0].get("image").is_none());
        assert_eq!(video["elements"][0]["buttons"][0]["value"], url);
        assert_eq!(video["elements"][0]["buttons"][0]["type"], "url");
    }

    #[test]
    fn reads_unsends_and_missing_quotes() {
        assert_eq!(
            render(
                &classify("messaging", &item("read", json!({"mid":"M"}))),
                &Context::default()
            ),
            Action::MarkSeen
        );
        assert_eq!(
            render(
                &classify(
                    "messaging",
                    &item("message", json!({"mid":"M","is_deleted":true}))
                ),
                &Context::default()
            ),
            Action::Delete("M".into())
        );
        let r = InboundEvent::Reaction(Reaction {
            mid: "E".into(),
            action: "react".into(),
            reaction: Some("like".into()),
            emoji: None,
        });
        assert_eq!(
            render(&r, &Context::default()),
            Action::Post(vec![Part::Text(
                "Reacted like to an earlier message".into()
            )])
        );
    }

    #[test]
    fn long_quotes_are_shortened_and_text_is_split_at_char_boundaries() {
        let ctx = Context {
            quote: Some("é".repeat(200)),
        };
        let p = post(
            item(
                "message",
                json!({"mid":"M","text":"x","reply_to":{"mid":"E"}}),
            ),
            &ctx,
        );
        let Part::Text(t) = &p[0] else { panic!() };
        assert!(t.contains('…') && t.chars().filter(|c| *c == 'é').count() == QUOTE_CHARS);
        let long = "ü".repeat(MAX_TEXT_BYTES);
        let pieces = split_for_livechat(&long);
        assert_eq!(pieces.len(), 2);
        assert!(pieces.iter().all(|p| p.len() <= MAX_TEXT_BYTES));
        assert_eq!(pieces.concat(), long);
    }

    #[test]
    fn referral_fields_only_carry_what_is_present() {
        let f = referral_fields(&Referral {
            reference: Some("r".into()),
            ad_id: Some("A".into()),
            ..Referral::default()
        });
        assert_eq!(
            serde_json::to_value(f).unwrap(),
            json!([{"ig_referral_ref":"r"}, {"ig_ad_id":"A"}])
        );
    }
}
