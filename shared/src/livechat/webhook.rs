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

use crate::config::RotatingSecret;
use serde_json::Value;

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

/// Why an event of a chat is not sent to Instagram, if it is not: the bridge's own events
/// (`custom_id` `ig:…`), internal notes, system messages.
fn not_forwarded(event: &Value) -> Option<&'static str> {
    if str_at(event, "/custom_id").is_some_and(|c| c.starts_with("ig:")) {
        return Some("the bridge's own event");
    }
    if str_at(event, "/visibility") == Some("agents") {
        return Some("internal note");
    }
    match str_at(event, "/type") {
        Some("system_message") | Some("system") => Some("system message"),
        _ => None,
    }
}

/// Whether an event of a thread is one an agent (or bot) wrote for the customer to see.
pub fn is_agent_event(event: &Value) -> bool {
    not_forwarded(event).is_none()
}

/// Decides on an authentic body; `Err` means it is not a chat webhook we can read.
pub fn decide(mut body: Value) -> Result<Decision, String> {
    if let Some(obj) = body.as_object_mut() {
        obj.remove("secret_key");
    }
    let action = str_at(&body, "/action").ok_or("no action")?.to_string();
    let org = str_at(&body, "/organization_id")
        .ok_or("no organization_id")?
        .to_string();
    let chat_id = str_at(&body, "/payload/chat_id").map(str::to_string);
    let job = |event_id: String, chat_id: Option<String>, body: Value| {
        Decision::Enqueue(LivechatEventJob {
            organization_id: org.clone(),
            action: action.clone(),
            event_id,
            chat_id,
            webhook: body,
        })
    };
    match action.as_str() {
        "incoming_event" => {
            let chat_id = chat_id.ok_or("incoming_event without chat_id")?;
            let event = body
                .pointer("/payload/event")
                .ok_or("incoming_event without event")?;
            let event_id = str_at(event, "/id").ok_or("event without id")?.to_string();
            match not_forwarded(event) {
                Some(why) => Ok(Decision::Ignore(why)),
                None => Ok(job(format!("{chat_id}:{event_id}"), Some(chat_id), body)),
            }
        }
        "incoming_chat" => {
            // An agent started or reopened a thread: its state, and its opening events.
            let chat_id =
                str_at(&body, "/payload/chat/id").ok_or("incoming_chat without chat.id")?;
            let chat_id = chat_id.to_string();
            let thread = str_at(&body, "/payload/chat/thread/id")
                .ok_or("incoming_chat without thread.id")?
                .to_string();
            Ok(job(
                format!("{chat_id}:incoming_chat:{thread}"),
                Some(chat_id),
                body,
            ))
        }
        "events_marked_as_seen" => {
            let chat_id = chat_id.ok_or("events_marked_as_seen without chat_id")?;
            let seen = str_at(&body, "/payload/seen_up_to")
                .unwrap_or("")
                .to_string();
            let user = str_at(&body, "/payload/user_id").unwrap_or("").to_string();
            Ok(job(
                format!("{chat_id}:seen:{user}:{seen}"),
                Some(chat_id),
                body,
            ))
        }
        "chat_deactivated" => {
            let chat_id = chat_id.ok_or("chat_deactivated without chat_id")?;
            let thread = str_at(&body, "/payload/thread_id")
                .unwrap_or("")
                .to_string();
            Ok(job(
                format!("{chat_id}:deactivated:{thread}"),
                Some(chat_id),
                body,
            ))
        }
        "event_updated" => Ok(Decision::Ignore("Instagram cannot edit a sent message")),
        "incoming_rich_message_postback" => {
            Ok(Decision::Ignore("postbacks come from LiveChat customers"))
        }
        _ => Ok(Decision::Ignore("action not used by the bridge")),
    }
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
        assert!(decide(json!({"organization_id": "ORG"})).is_err());
        assert!(
            decide(json!({"action": "incoming_event", "organization_id": "ORG", "payload": {}}))
                .is_err()
        );
    }
}
