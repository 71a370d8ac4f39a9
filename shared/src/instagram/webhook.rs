//! The Instagram webhook's ack path: verify `X-Hub-Signature-256` over the raw bytes, then split
//! the body into one job per `entry[]` × `messaging[]`/`standby[]`/`changes[]` item.

use hmac::{Hmac, Mac};
use serde::Deserialize;
use serde_json::Value;
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};

use crate::jobs::InstagramEventJob;

/// Whether `header` (`sha256=<hex>`) is the HMAC-SHA256 of `body` under `app_secret`.
/// Constant time over the raw bytes; never re-serializes the body.
pub fn signature_is_valid(app_secret: &[u8], header: Option<&str>, body: &[u8]) -> bool {
    let Some(hex_sig) = header.and_then(|h| h.trim().strip_prefix("sha256=")) else {
        return false;
    };
    let Ok(expected) = hex::decode(hex_sig) else {
        return false;
    };
    let mut mac = Hmac::<Sha256>::new_from_slice(app_secret).expect("HMAC takes any key length");
    mac.update(body);
    mac.verify_slice(&expected).is_ok()
}

/// Signs a body as Meta does (for tests and `igbridge send`).
pub fn sign(app_secret: &[u8], body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(app_secret).expect("HMAC takes any key length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// Why an authentic body could not be split.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SplitError {
    /// Not JSON, or not the webhook envelope.
    #[error("not an Instagram webhook body: {0}")]
    Malformed(String),
}

#[derive(Deserialize)]
struct Body<'a> {
    object: Option<String>,
    #[serde(borrow)]
    entry: Vec<Entry<'a>>,
}

#[derive(Deserialize)]
struct Entry<'a> {
    id: Option<Value>,
    time: Option<Value>,
    #[serde(borrow, default)]
    messaging: Vec<&'a RawValue>,
    #[serde(borrow, default)]
    standby: Vec<&'a RawValue>,
    #[serde(borrow, default)]
    changes: Vec<&'a RawValue>,
}

fn id_str(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// The keys of a messaging item that name its kind, in the order they are checked.
pub const KNOWN_KINDS: &[&str] = &[
    "message",
    "message_edit",
    "reaction",
    "read",
    "postback",
    "referral",
    "optin",
    "pass_thread_control",
    "take_thread_control",
    "request_thread_control",
    "delivery",
];

/// The event kind of a messaging item: the first known key present, else the first key that is
/// not part of the envelope.
pub fn kind_of(item: &Value) -> String {
    let Some(obj) = item.as_object() else {
        return "unknown".into();
    };
    if let Some(k) = KNOWN_KINDS.iter().find(|k| obj.contains_key(**k)) {
        return (*k).to_string();
    }
    obj.keys()
        .find(|k| !matches!(k.as_str(), "sender" | "recipient" | "timestamp"))
        .cloned()
        .unwrap_or_else(|| "unknown".into())
}

fn digest(v: &Value) -> String {
    hex::encode(&Sha256::digest(v.to_string().as_bytes())[..16])
}

/// The event's natural id, used for deduplication and idempotency. An unsend carries the
/// original message's mid, so it gets its own id; so do edits, reactions and reads.
pub fn natural_id(item: &Value, kind: &str) -> String {
    let ts = item
        .get("timestamp")
        .map(|t| t.to_string())
        .unwrap_or_default();
    let sender = id_str(item.pointer("/sender/id")).unwrap_or_default();
    let body = item.get(kind).unwrap_or(&Value::Null);
    let mid = body.get("mid").and_then(Value::as_str);
    match (kind, mid) {
        ("message", Some(mid)) if body.get("is_deleted") == Some(&Value::Bool(true)) => {
            format!("unsend:{mid}")
        }
        ("message", Some(mid)) => mid.to_string(),
        ("message_edit", Some(mid)) => format!(
            "edit:{mid}:{}",
            body.get("num_edit")
                .map(|n| n.to_string())
                .unwrap_or_default()
        ),
        ("reaction", Some(mid)) => format!(
            "reaction:{mid}:{}:{}:{ts}",
            body.get("action").and_then(Value::as_str).unwrap_or(""),
            body.get("reaction").and_then(Value::as_str).unwrap_or("")
        ),
        ("read", Some(mid)) => format!("read:{mid}:{sender}"),
        ("postback", Some(mid)) => format!("postback:{mid}"),
        _ => format!("{kind}:{sender}:{ts}:{}", digest(item)),
    }
}

/// Splits a verified body into jobs. Every item becomes a job, whatever its kind.
pub fn split(body: &[u8]) -> Result<Vec<InstagramEventJob>, SplitError> {
    let parsed: Body<'_> =
        serde_json::from_slice(body).map_err(|e| SplitError::Malformed(e.to_string()))?;
    if let Some(object) = &parsed.object {
        if object != "instagram" {
            return Err(SplitError::Malformed(format!("object is {object:?}")));
        }
    }
    let mut jobs = Vec::new();
    for entry in &parsed.entry {
        let entry_id = id_str(entry.id.as_ref());
        for (field, items) in [("messaging", &entry.messaging), ("standby", &entry.standby)] {
            for raw in items {
                let item: Value = serde_json::from_str(raw.get())
                    .map_err(|e| SplitError::Malformed(e.to_string()))?;
                jobs.push(messaging_job(
                    &item,
                    field,
                    entry_id.as_deref(),
                    entry.time.clone(),
                )?);
            }
        }
        for raw in &entry.changes {
            let change: Value = serde_json::from_str(raw.get())
                .map_err(|e| SplitError::Malformed(e.to_string()))?;
            jobs.push(change_job(change, entry_id.as_deref(), entry.time.clone()));
        }
    }
    Ok(jobs)
}

fn messaging_job(
    item: &Value,
    field: &str,
    entry_id: Option<&str>,
    entry_time: Option<Value>,
) -> Result<InstagramEventJob, SplitError> {
    let kind = kind_of(item);
    let sender = id_str(item.pointer("/sender/id"));
    let recipient = id_str(item.pointer("/recipient/id"));
    let echo = item.pointer("/message/is_echo") == Some(&Value::Bool(true));
    // Route on recipient (inbound) or sender (echo); entry.id is mislabelled in some samples.
    let (account, customer) = if echo {
        (sender, recipient)
    } else {
        (recipient, sender)
    };
    let account = account
        .or_else(|| entry_id.map(str::to_string))
        .ok_or_else(|| SplitError::Malformed("item without an account id".into()))?;
    let igsid =
        customer.ok_or_else(|| SplitError::Malformed("item without a customer id".into()))?;
    Ok(InstagramEventJob {
        event_id: natural_id(item, &kind),
        ig_account_id: account,
        igsid,
        field: field.to_string(),
        entry_time,
        item: item.clone(),
    })
}

fn change_job(
    change: Value,
    entry_id: Option<&str>,
    entry_time: Option<Value>,
) -> InstagramEventJob {
    let field = change
        .get("field")
        .and_then(Value::as_str)
        .unwrap_or("unknown")
        .to_string();
    let value = change.get("value").cloned().unwrap_or(Value::Null);
    let sender = id_str(value.pointer("/sender/id"));
    let recipient = id_str(value.pointer("/recipient/id"));
    InstagramEventJob {
        event_id: format!("change:{field}:{}", digest(&change)),
        ig_account_id: recipient
            .or_else(|| entry_id.map(str::to_string))
            .unwrap_or_else(|| "0".into()),
        igsid: sender.unwrap_or_else(|| "unknown".into()),
        field: format!("changes:{field}"),
        entry_time,
        item: change,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn signature_checks_raw_bytes() {
        let body = br#"{"object":"instagram","entry":[]}"#;
        let sig = sign(b"app-secret", body);
        assert!(signature_is_valid(b"app-secret", Some(&sig), body));
        assert!(!signature_is_valid(b"other", Some(&sig), body));
        assert!(!signature_is_valid(b"app-secret", None, body));
        assert!(!signature_is_valid(b"app-secret", Some("sha1=abc"), body));
        assert!(!signature_is_valid(b"app-secret", Some("sha256=zz"), body));
        let mut tampered = body.to_vec();
        tampered[2] = b'X';
        assert!(!signature_is_valid(b"app-secret", Some(&sig), &tampered));
    }

    #[test]
    fn unicode_escaped_body_verifies_as_sent() {
        // Meta signs the escaped form; re-serializing would change the bytes.
        let body = br#"{"object":"instagram","entry":[{"id":"1","time":1,"messaging":[{"sender":{"id":"S"},"recipient":{"id":"1"},"timestamp":1,"message":{"mid":"m","text":"\u00e4\u00f6\u00e5"}}]}]}"#;
        let sig = sign(b"k", body);
        assert!(signature_is_valid(b"k", Some(&sig), body));
        let jobs = split(body).unwrap();
        assert_eq!(jobs[0].item["message"]["text"], "äöå");
    }

    #[test]
    fn every_entry_and_item_becomes_a_job() {
        let body = json!({"object":"instagram","entry":[
            {"id":"A","time":1,"messaging":[
                {"sender":{"id":"C1"},"recipient":{"id":"A"},"timestamp":1,"message":{"mid":"m1","text":"a"}},
                {"sender":{"id":"C2"},"recipient":{"id":"A"},"timestamp":2,"read":{"mid":"m0"}}]},
            {"id":"B","time":2,"standby":[
                {"sender":{"id":"C3"},"recipient":{"id":"B"},"timestamp":3,"message":{"mid":"m3","text":"b"}}]},
            {"id":"A","time":3,"messaging":[
                {"sender":{"id":"A"},"recipient":{"id":"C1"},"timestamp":4,"message":{"mid":"m4","is_echo":true,"text":"c"}}]}
        ]});
        let jobs = split(body.to_string().as_bytes()).unwrap();
        let summary: Vec<_> = jobs
            .iter()
            .map(|j| {
                (
                    j.ig_account_id.as_str(),
                    j.igsid.as_str(),
                    j.field.as_str(),
                    j.event_id.as_str(),
                )
            })
            .collect();
        assert_eq!(
            summary,
            vec![
                ("A", "C1", "messaging", "m1"),
                ("A", "C2", "messaging", "read:m0:C2"),
                ("B", "C3", "standby", "m3"),
                ("A", "C1", "messaging", "m4"),
            ]
        );
    }

    #[test]
    fn natural_ids_separate_unsend_edit_and_reactions_from_the_message() {
        let base = |kind: &str, body: Value| json!({"sender":{"id":"C"},"recipient":{"id":"A"},"timestamp":5, kind: body});
        let msg = base("message", json!({"mid":"M","text":"x"}));
        let unsend = base("message", json!({"mid":"M","is_deleted":true}));
        let edit = base("message_edit", json!({"mid":"M","text":"y","num_edit":1}));
        let react = base(
            "reaction",
            json!({"mid":"M","action":"react","reaction":"love"}),
        );
        let unreact = base("reaction", json!({"mid":"M","action":"unreact"}));
        let ids: Vec<_> = [&msg, &unsend, &edit, &react, &unreact]
            .iter()
            .map(|i| natural_id(i, &kind_of(i)))
            .collect();
        let unique: std::collections::HashSet<_> = ids.iter().collect();
        assert_eq!(unique.len(), ids.len(), "{ids:?}");
        assert_eq!(ids[0], "M");
        // Unknown kinds get a stable id from their content.
        let odd = base("brand_new_kind", json!({"x":1}));
        assert_eq!(kind_of(&odd), "brand_new_kind");
        assert_eq!(
            natural_id(&odd, "brand_new_kind"),
            natural_id(&odd, "brand_new_kind")
        );
    }

    #[test]
    fn dashboard_test_event_in_changes_form_is_kept() {
        let body = json!({"object":"instagram","entry":[{"id":"0","time":1661141837537u64,"changes":[{"field":"messages","value":{
            "sender":{"id":"12334"},"recipient":{"id":"23245"},"timestamp":"1527459824",
            "message":{"mid":"random_mid","text":"random_text"}}}]}]});
        let jobs = split(body.to_string().as_bytes()).unwrap();
        assert_eq!(jobs.len(), 1);
        assert_eq!(jobs[0].field, "changes:messages");
        assert_eq!(jobs[0].ig_account_id, "23245");
        assert_eq!(jobs[0].igsid, "12334");
    }

    #[test]
    fn malformed_bodies_are_errors_not_panics() {
        for body in [
            &b"not json"[..],
            b"{}",
            b"[]",
            br#"{"object":"page","entry":[]}"#,
            br#"{"entry":[{"messaging":[{"message":{}}]}]}"#,
        ] {
            assert!(split(body).is_err(), "{}", String::from_utf8_lossy(body));
        }
        assert!(
            split(br#"{"object":"instagram","entry":[]}"#)
                .unwrap()
                .is_empty()
        );
    }
}
