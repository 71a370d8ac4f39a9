//! The Instagram webhook's ack path: verify `X-Hub-Signature-256` over the raw bytes, then split
//! the body into one job per `entry[]` × `messaging[]`/`standby[]`/`changes[]` item.

use hmac::{Hmac, Mac};
use std::borrow::Cow;
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
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
    #[serde(borrow)]
    time: Option<&'a RawValue>,
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
        ("message", Some(mid)) => mid.to_owned(),
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

/// One item of a verified body, borrowed from it: what routing and sealing need, and the item
/// exactly as Meta sent it (its raw bytes, never parsed into a tree, cloned or re-encoded).
/// Serializes as [`InstagramEventJob`] does.
#[derive(Debug, Serialize)]
pub struct SplitItem<'a> {
    /// The business's Instagram account (recipient inbound, sender for echoes).
    pub ig_account_id: Cow<'a, str>,
    /// The customer's IGSID.
    pub igsid: Cow<'a, str>,
    /// The natural id ([`natural_id`]).
    pub event_id: String,
    /// `messaging`, `standby` or `changes:<field>`.
    pub field: Cow<'a, str>,
    /// `entry.time`, as sent.
    pub entry_time: Option<&'a RawValue>,
    /// The item, as sent.
    pub item: &'a RawValue,
    /// Whether it is the echo of a message the business sent.
    #[serde(skip)]
    pub echo: bool,
}

impl SplitItem<'_> {
    /// The job it becomes, owned (the item parsed). An error for an item a tree cannot hold
    /// (nested deeper than serde_json's limit, which skipping over raw values does not apply).
    pub fn to_job(&self) -> Result<InstagramEventJob, SplitError> {
        let parse = |raw: &RawValue| {
            serde_json::from_str(raw.get()).map_err(|e| SplitError::Malformed(e.to_string()))
        };
        Ok(InstagramEventJob {
            ig_account_id: self.ig_account_id.as_ref().into(),
            igsid: self.igsid.as_ref().into(),
            event_id: self.event_id.clone(),
            field: self.field.to_string(),
            entry_time: self.entry_time.map(parse).transpose()?,
            item: parse(self.item)?,
        })
    }

    /// The job as JSON (a [`crate::jobs::Job`]), written straight from the raw item.
    pub fn job_json(&self) -> String {
        #[derive(Serialize)]
        #[serde(tag = "kind", rename_all = "snake_case")]
        enum JobRef<'r, 'a> {
            InstagramEvent(&'r SplitItem<'a>),
        }
        serde_json::to_string(&JobRef::InstagramEvent(self)).expect("a job always serializes")
    }

    /// Its message group ([`crate::jobs::Envelope::group`]).
    pub fn group(&self) -> String {
        crate::jobs::instagram_group(&self.ig_account_id, &self.igsid, self.echo)
    }

    /// Its deduplication id ([`crate::jobs::Envelope::dedup_id`]).
    pub fn dedup_id(&self) -> String {
        crate::jobs::instagram_dedup_id(&self.ig_account_id, &self.event_id)
    }
}

/// Splits a verified body into jobs. Every item becomes a job, whatever its kind.
pub fn split(body: &[u8]) -> Result<Vec<SplitItem<'_>>, SplitError> {
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
                jobs.push(messaging_item(raw, field, entry_id.as_deref(), entry.time)?);
            }
        }
        for raw in &entry.changes {
            jobs.push(change_item(raw, entry_id.as_deref(), entry.time)?);
        }
    }
    Ok(jobs)
}

/// An object's members, borrowed: keys as written (unescaped only when they hold escapes), values
/// as raw slices. Sorted as `serde_json::Map` sorts, and the last of a repeated key wins, as
/// there; so kinds and ids come out exactly as from a parsed `Value`.
type Members<'a> = BTreeMap<Key<'a>, &'a RawValue>;

#[derive(Debug, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
struct Key<'a>(#[serde(borrow)] Cow<'a, str>);

fn members(raw: &RawValue) -> Option<Members<'_>> {
    serde_json::from_str(raw.get()).ok()
}

fn member<'a>(m: &Members<'a>, name: &str) -> Option<&'a RawValue> {
    m.get(&Key(Cow::Borrowed(name))).copied()
}

/// A small member parsed (ids, numbers, flags): cheap, and formatted exactly as `Value` does.
fn value(raw: Option<&RawValue>) -> Option<Value> {
    raw.and_then(|r| serde_json::from_str(r.get()).ok())
}

fn id_of(m: &Members<'_>, party: &str) -> Option<String> {
    let party = members(member(m, party)?)?;
    id_str(value(member(&party, "id")).as_ref())
}

fn messaging_item<'a>(
    raw: &'a RawValue,
    field: &'static str,
    entry_id: Option<&str>,
    entry_time: Option<&'a RawValue>,
) -> Result<SplitItem<'a>, SplitError> {
    let m = members(raw).unwrap_or_default();
    let kind = kind_of_members(&m);
    let body = member(&m, &kind).and_then(members).unwrap_or_default();
    let echo = member(&body, "is_echo").is_some_and(|v| v.get() == "true") && kind == "message";
    let (sender, recipient) = (id_of(&m, "sender"), id_of(&m, "recipient"));
    // Route on recipient (inbound) or sender (echo); entry.id is mislabelled in some samples.
    let (account, customer) = if echo {
        (sender.clone(), recipient)
    } else {
        (recipient, sender.clone())
    };
    let account = account
        .or_else(|| entry_id.map(str::to_string))
        .ok_or_else(|| SplitError::Malformed("item without an account id".into()))?;
    let igsid =
        customer.ok_or_else(|| SplitError::Malformed("item without a customer id".into()))?;
    let event_id = natural_id_of(raw, &m, &body, &kind, sender.as_deref().unwrap_or(""));
    Ok(SplitItem {
        ig_account_id: Cow::Owned(account),
        igsid: Cow::Owned(igsid),
        event_id,
        field: Cow::Borrowed(field),
        entry_time,
        item: raw,
        echo,
    })
}

fn kind_of_members(m: &Members<'_>) -> String {
    if let Some(k) = KNOWN_KINDS
        .iter()
        .find(|k| m.contains_key(&Key(Cow::Borrowed(**k))))
    {
        return (*k).to_string();
    }
    m.keys()
        .map(|k| k.0.as_ref())
        .find(|k| !matches!(*k, "sender" | "recipient" | "timestamp"))
        .unwrap_or("unknown")
        .to_string()
}

/// [`natural_id`] over the borrowed members (the same ids; the whole item is parsed only for
/// the kinds whose id is a digest of their content).
fn natural_id_of(
    raw: &RawValue,
    m: &Members<'_>,
    body: &Members<'_>,
    kind: &str,
    sender: &str,
) -> String {
    let text = |name: &str| -> Option<String> {
        match value(member(body, name)) {
            Some(Value::String(s)) => Some(s),
            _ => None,
        }
    };
    let shown = |raw: Option<&RawValue>| value(raw).map(|v| v.to_string()).unwrap_or_default();
    let ts = shown(member(m, "timestamp"));
    match (kind, text("mid")) {
        ("message", Some(mid)) if member(body, "is_deleted").is_some_and(|v| v.get() == "true") => {
            format!("unsend:{mid}")
        }
        ("message", Some(mid)) => mid,
        ("message_edit", Some(mid)) => format!("edit:{mid}:{}", shown(member(body, "num_edit"))),
        ("reaction", Some(mid)) => format!(
            "reaction:{mid}:{}:{}:{ts}",
            text("action").unwrap_or_default(),
            text("reaction").unwrap_or_default()
        ),
        ("read", Some(mid)) => format!("read:{mid}:{sender}"),
        ("postback", Some(mid)) => format!("postback:{mid}"),
        _ => match serde_json::from_str::<Value>(raw.get()) {
            Ok(item) => format!("{kind}:{sender}:{ts}:{}", digest(&item)),
            // Too deep for a tree: its bytes, so two such items never share an id.
            Err(_) => format!(
                "{kind}:{sender}:{ts}:{}",
                hex::encode(&Sha256::digest(raw.get().as_bytes())[..16])
            ),
        },
    }
}

fn change_item<'a>(
    raw: &'a RawValue,
    entry_id: Option<&str>,
    entry_time: Option<&'a RawValue>,
) -> Result<SplitItem<'a>, SplitError> {
    // Rare (the dashboard's test events): parsed whole.
    let change: Value =
        serde_json::from_str(raw.get()).map_err(|e| SplitError::Malformed(e.to_string()))?;
    let field = change
        .get("field")
        .and_then(Value::as_str)
        .unwrap_or("unknown")
        .to_string();
    let value = change.get("value").unwrap_or(&Value::Null);
    let sender = id_str(value.pointer("/sender/id"));
    let recipient = id_str(value.pointer("/recipient/id"));
    Ok(SplitItem {
        event_id: format!("change:{field}:{}", digest(&change)),
        ig_account_id: Cow::Owned(
            recipient
                .or_else(|| entry_id.map(str::to_string))
                .unwrap_or_else(|| "0".into()),
        ),
        igsid: Cow::Owned(sender.unwrap_or_else(|| "unknown".into())),
        field: Cow::Owned(format!("changes:{field}")),
        entry_time,
        item: raw,
        echo: false,
    })
}

/// The straightforward split, kept as the oracle of the borrowed one.
#[cfg(test)]
mod oracle {
    use super::*;

    /// The straightforward split (parse each item into a `Value`, clone it): the oracle the
    /// borrowed split is checked against.
    pub(super) fn split_values(body: &[u8]) -> Result<Vec<InstagramEventJob>, SplitError> {
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
                        entry.time.map(|t| serde_json::from_str(t.get()).unwrap()),
                    )?);
                }
            }
            for raw in &entry.changes {
                let change: Value = serde_json::from_str(raw.get())
                    .map_err(|e| SplitError::Malformed(e.to_string()))?;
                jobs.push(change_job(
                    change,
                    entry_id.as_deref(),
                    entry.time.map(|t| serde_json::from_str(t.get()).unwrap()),
                ));
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
            ig_account_id: crate::ids::IgAccountId::from(account),
            igsid: crate::ids::Igsid::from(igsid),
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
            ig_account_id: crate::ids::IgAccountId::from(
                recipient
                    .or_else(|| entry_id.map(str::to_string))
                    .unwrap_or_else(|| "0".into()),
            ),
            igsid: crate::ids::Igsid::from(sender.unwrap_or_else(|| "unknown".into())),
            field: format!("changes:{field}"),
            entry_time,
            item: change,
        }
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
        assert_eq!(jobs[0].to_job().unwrap().item["message"]["text"], "äöå");
        assert!(jobs[0].item.get().contains(r"\u00e4"), "carried as sent");
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
        let text = body.to_string();
        let jobs = split(text.as_bytes()).unwrap();
        let summary: Vec<_> = jobs
            .iter()
            .map(|j| {
                (
                    j.ig_account_id.as_ref(),
                    j.igsid.as_ref(),
                    j.field.as_ref(),
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

    /// The borrowed split gives exactly the jobs (ids, routes, groups, JSON) of the
    /// straightforward one, for every kind of item and the shapes Meta varies.
    #[test]
    fn the_borrowed_split_equals_the_parsed_one() {
        let item = |kind: &str, body: Value| json!({"sender":{"id":"C"},"recipient":{"id":"A"},"timestamp":1569262485349u64, kind: body});
        let items = vec![
            item(
                "message",
                json!({"mid":"M1","text":"hi \u{e4}","attachments":[{"type":"image","payload":{"url":"https://x"}}]}),
            ),
            item("message", json!({"mid":"M1","is_deleted":true})),
            item(
                "message",
                json!({"mid":"M2","is_echo":true,"text":"from the page"}),
            ),
            item("message", json!({"mid":"M3","is_unsupported":true})),
            item("message", json!({"mid":7})),
            item(
                "message_edit",
                json!({"mid":"M1","text":"edited","num_edit":2}),
            ),
            item(
                "reaction",
                json!({"mid":"M1","action":"react","reaction":"love","emoji":"\u{2764}"}),
            ),
            item("reaction", json!({"mid":"M1","action":"unreact"})),
            item("read", json!({"mid":"M1"})),
            item("read", json!({"watermark":1569262485349u64})),
            item(
                "postback",
                json!({"mid":"M4","title":"Track","payload":"T"}),
            ),
            item("referral", json!({"ref":"ad","source":"ADS"})),
            item("optin", json!({"type":"notification_messages"})),
            item("delivery", json!({"mids":["M1"],"watermark":1})),
            item("brand_new_kind", json!({"x":[1,2,{"y":null}]})),
            json!({"sender":{"id":12345},"recipient":{"id":"A"},"timestamp":"1569262485","message":{"mid":"M5"},"zeta":1}),
            json!({"sender":{"id":"C"},"recipient":{"id":"A"},"timestamp":1.5e12,"a_kind":{},"b_kind":{}}),
            json!({"sender":{"id":"C"},"recipient":{},"message":{"mid":"M6"}}),
        ];
        let body = json!({"object":"instagram","entry":[
            {"id":"A","time":1569262486134u64,"messaging":items.clone()},
            {"id":"A","time":1,"standby":items},
            {"id":"0","time":2,"changes":[{"field":"messages","value":{"sender":{"id":"S"},"recipient":{"id":"R"},"message":{"mid":"C1"}}}]},
        ]});
        let texts = [
            body.to_string(),
            serde_json::to_string_pretty(&body).unwrap(),
            include_str!("../../../events/webhooks/instagram-text.json").to_string(),
            // Escaped keys and a repeated key (the last one wins, as in a parsed Value).
            r#"{"object":"instagram","entry":[{"id":"A","time":1,"messaging":[{"sender":{"id":"C"},"recipient":{"id":"A"},"timestamp":3,"mes\u0073age":{"mid":"E1","text":"x"},"timestamp":4}]}]}"#.to_string(),
        ];
        for text in &texts {
            let borrowed = split(text.as_bytes()).unwrap();
            let parsed = oracle::split_values(text.as_bytes()).unwrap();
            assert_eq!(borrowed.len(), parsed.len());
            for (b, p) in borrowed.iter().zip(&parsed) {
                assert_eq!(&b.to_job().unwrap(), p);
                let envelope = crate::jobs::Envelope::new(
                    crate::jobs::Job::InstagramEvent(p.clone()),
                    chrono::Utc::now(),
                );
                assert_eq!(b.group(), envelope.group(), "{p:?}");
                assert_eq!(b.dedup_id(), envelope.dedup_id());
                let json: Value = serde_json::from_str(&b.job_json()).unwrap();
                assert_eq!(json, serde_json::to_value(&envelope.job).unwrap());
            }
        }
        for bad in [
            &br#"{"object":"instagram","entry":[{"messaging":["text"]}]}"#[..],
            br#"{"object":"instagram","entry":[{"messaging":[{"message":{}}]}]}"#,
        ] {
            assert!(split(bad).is_err());
            assert!(oracle::split_values(bad).is_err());
        }
    }

    /// Items nested deeper than a tree may hold pass the split as raw bytes (skipping has no
    /// depth limit): they get ids of their own, and owning one is an error, never a panic (the
    /// release profile aborts on a panic).
    #[test]
    fn items_too_deep_for_a_tree_are_errors_not_panics_and_keep_their_own_ids() {
        let deep = |inner: &str| format!("{}\"{inner}\"{}", "[".repeat(200), "]".repeat(200));
        let body = format!(
            r#"{{"object":"instagram","entry":[{{"id":"A","time":1,"messaging":[
            {{"sender":{{"id":"C"}},"recipient":{{"id":"A"}},"timestamp":1,"odd":{}}},
            {{"sender":{{"id":"C"}},"recipient":{{"id":"A"}},"timestamp":1,"odd":{}}}]}}]}}"#,
            deep("x"),
            deep("y")
        );
        let items = split(body.as_bytes()).unwrap();
        assert_eq!(items.len(), 2);
        assert_ne!(items[0].event_id, items[1].event_id);
        assert!(items[0].to_job().is_err());
        assert!(
            oracle::split_values(body.as_bytes()).is_err(),
            "a tree refuses it"
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
        let text = body.to_string();
        let jobs = split(text.as_bytes()).unwrap();
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
