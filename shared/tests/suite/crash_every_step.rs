//! Crash at every step. For each worker path, one run lists its external calls (table writes,
//! LiveChat calls, Graph calls, queue operations — the event source's delete included); then,
//! for every position k, a fresh bridge runs the path with the process killed right before call
//! k and, separately, right after it (the call took effect, its caller never learnt). The queue
//! redelivers after its visibility timeout, Meta echoes what it sent, and the test asserts one
//! visible effect per platform event and nothing lost. The report line lists paths × crash
//! points.

use shared::ids::OrgId;
use testkit::bridge;

use std::sync::Arc;
use std::time::Duration;

use bridge::*;
use chrono::Duration as Span;
use serde_json::{Value, json};
use shared::clock::Clock;
use shared::domain::*;
use shared::instagram::send::{MAX_TEXT_BYTES, split_for_instagram};
use shared::queue::Queue;
use shared::store::Store;
use shared::worker::{JobHandler, QueuedJob, process_batch};
use testkit::crash::{TrippedQueue, Tripwire, When};
use testkit::store::FaultyStore;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Path {
    InboundText,
    InboundMedia,
    Unsend,
    Read,
    OutboundParts,
    Attachment,
    MarkSeen,
}

const PATHS: [Path; 7] = [
    Path::InboundText,
    Path::InboundMedia,
    Path::Unsend,
    Path::Read,
    Path::OutboundParts,
    Path::Attachment,
    Path::MarkSeen,
];

const IMAGE: &str = "https://lookaside.fbsbx.com/ig_messaging_cdn/?asset_id=IMG1";
const FILE: &str = "https://cdn.livechat-files.com/api/file/lc/att/1/photo.png";

fn long_text() -> String {
    (0..400)
        .map(|i| format!("w{i}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// A bridge whose every external call reports to the tripwire.
async fn bridge(wire: &Arc<Tripwire>) -> Harness {
    let store = Arc::new(FaultyStore::default());
    let mut h = Harness::with_store(store.clone() as Arc<dyn Store>).await;
    let trip = |q: &Arc<dyn Queue>, name| -> Arc<dyn Queue> {
        Arc::new(TrippedQueue::new(q.clone(), wire.clone(), name))
    };
    h.services.to_livechat = trip(&h.services.to_livechat, "to-livechat");
    h.services.to_livechat_dlq = trip(&h.services.to_livechat_dlq, "to-livechat-dlq");
    h.services.to_instagram = trip(&h.services.to_instagram, "to-instagram");
    h.services.to_instagram_dlq = trip(&h.services.to_instagram_dlq, "to-instagram-dlq");
    store.trip(wire.clone());
    h.livechat.trip(wire.clone());
    h.graph.trip(wire.clone());
    h
}

fn now_ms(h: &Harness) -> u64 {
    h.clock.now().timestamp_millis() as u64
}

/// Puts the path's platform event in its queue (and what it needs before).
async fn setup(h: &Harness, path: Path, echoed: &mut usize) {
    if path != Path::InboundText {
        h.seed_contact(ORG, IG, IGSID, CHAT, Some(Span::hours(1)))
            .await;
    }
    let item = |kind: &str, body: Value| {
        let mut v = inbound(kind, body);
        v["timestamp"] = json!(now_ms(h));
        v
    };
    match path {
        Path::InboundText => {
            h.deliver(&webhook(vec![item(
                "message",
                json!({"mid": "M1", "text": "hello"}),
            )]))
            .await;
        }
        Path::InboundMedia => {
            let m =
                json!({"mid": "M1", "attachments": [{"type": "image", "payload": {"url": IMAGE}}]});
            h.deliver(&webhook(vec![item("message", m)])).await;
        }
        Path::Unsend => {
            h.deliver(&webhook(vec![item(
                "message",
                json!({"mid": "M1", "text": "oops"}),
            )]))
            .await;
            settle(h, echoed).await;
            let gone = json!({"mid": "M1", "is_deleted": true});
            h.deliver(&webhook(vec![item("message", gone)])).await;
        }
        Path::Read => {
            h.deliver(&webhook(vec![item(
                "read",
                json!({"mid": "MID_ECHO_0006"}),
            )]))
            .await;
        }
        Path::OutboundParts => {
            h.post_livechat(&text_event("E1", &long_text())).await;
        }
        Path::Attachment => {
            let file = json!({"type": "file", "url": FILE, "content_type": "image/png", "name": "photo.png", "size": 2048});
            h.post_livechat(&agent_event("E1", file)).await;
        }
        Path::MarkSeen => {
            h.post_livechat(&json!({"secret_key": "lc-webhook-secret", "action": "events_marked_as_seen", "organization_id": ORG,
                "payload": {"user_id": "agent1@example.com", "chat_id": CHAT, "seen_up_to": "2026-03-01T12:00:00.000000Z"}, "additional_data": {}}))
                .await;
        }
    }
}

fn outbound(path: Path) -> bool {
    matches!(
        path,
        Path::OutboundParts | Path::Attachment | Path::MarkSeen
    )
}

/// One invocation of the path's worker over one batch, as the event source runs it: the
/// handler, then the deletes of what succeeded.
async fn invoke(h: &Harness, path: Path) {
    let (handler, queue, dlq): (Box<dyn JobHandler>, _, _) = if outbound(path) {
        let s = &h.services;
        (Box::new(s.outbound()), &s.to_instagram, &s.to_instagram_dlq)
    } else {
        let s = &h.services;
        (Box::new(s.inbound()), &s.to_livechat, &s.to_livechat_dlq)
    };
    let got = queue.receive(10, Duration::from_millis(20)).await.unwrap();
    let receipts: Vec<_> = got
        .iter()
        .map(|m| (m.message_id.clone(), m.receipt.clone()))
        .collect();
    let jobs = got.into_iter().map(QueuedJob::from).collect();
    let failed = process_batch(
        handler.as_ref(),
        queue.as_ref(),
        dlq.as_ref(),
        h.clock.now(),
        jobs,
    )
    .await;
    for (id, receipt) in receipts {
        if !failed.contains(&id) {
            queue.delete(&receipt).await.unwrap();
        }
    }
}

/// Lets the bridge recover as production would: the queues redeliver, Meta echoes every message
/// the Page sent, time passes; until nothing is queued and every echo is handled.
async fn settle(h: &Harness, echoed: &mut usize) {
    for _ in 0..120 {
        let sent = h.graph.sent();
        let echoes: Vec<Value> = sent[*echoed..]
            .iter()
            .filter_map(|s| h.graph.echo(s))
            .collect();
        *echoed = sent.len();
        if !echoes.is_empty() {
            h.deliver(&webhook(echoes)).await;
        }
        h.work().await;
        h.work_outbound().await;
        let queued = h.services.to_livechat.depth().await.unwrap()
            + h.services.to_instagram.depth().await.unwrap();
        if queued == 0 && h.graph.sent().len() == *echoed {
            return;
        }
        h.clock.advance(Span::seconds(30));
    }
    panic!("the bridge did not settle");
}

fn chat_events(h: &Harness) -> Vec<Value> {
    h.livechat.chats().iter().flat_map(|c| c.events()).collect()
}

/// The path's one visible effect happened exactly once, and nothing else did.
async fn check(h: &Harness, path: Path, label: &str) {
    let dlq = h.services.to_livechat_dlq.depth().await.unwrap()
        + h.services.to_instagram_dlq.depth().await.unwrap();
    assert_eq!(dlq, 0, "{label}: nothing parked");
    let events = chat_events(h);
    let count = |f: &dyn Fn(&Value) -> bool| events.iter().filter(|e| f(e)).count();
    let notices = count(&|e| e["type"] == "system_message");
    assert_eq!(
        notices, 0,
        "{label}: no notice, no staff message: {events:?}"
    );
    let sent = h.graph.sent();
    match path {
        Path::InboundText => {
            assert_eq!(h.livechat.chats().len(), 1, "{label}: one chat");
            assert_eq!(count(&|e| e["text"] == "hello"), 1, "{label}: {events:?}");
            let contact = h.contact().await.unwrap();
            let chat = contact.chat_id.expect("the contact knows its chat");
            let route: Option<ChatRoute> = h
                .services
                .repo
                .get(&ChatRoute::key_for(&OrgId::from(ORG), &chat))
                .await
                .unwrap();
            assert!(
                route.is_some(),
                "{label}: agents' replies find the customer"
            );
        }
        Path::InboundMedia => {
            assert_eq!(count(&|e| e.to_string().contains(IMAGE)), 1, "{label}");
        }
        Path::Unsend => {
            assert_eq!(count(&|e| e["text"] == "oops"), 0, "{label}: deleted");
            let deleted = h.livechat.chat(CHAT).unwrap().deleted.len();
            assert_eq!(deleted, 1, "{label}");
        }
        Path::Read => {
            let seen = h.calls("mark_events_as_seen").await.len();
            // A repeated read mark sets the same seen-up-to: still one visible effect.
            assert!(seen >= 1, "{label}: the read reached LiveChat");
        }
        Path::OutboundParts => {
            let texts: Vec<&str> = sent
                .iter()
                .filter_map(|s| s.body.pointer("/message/text").and_then(Value::as_str))
                .collect();
            assert_eq!(
                texts,
                split_for_instagram(&long_text(), MAX_TEXT_BYTES),
                "{label}: each part once, in order"
            );
        }
        Path::Attachment => {
            let files = sent
                .iter()
                .filter(|s| s.body.pointer("/message/attachment/payload/url") == Some(&json!(FILE)))
                .count();
            assert_eq!((files, sent.len()), (1, 1), "{label}");
        }
        Path::MarkSeen => {
            assert!(!sent.is_empty(), "{label}: the read reached Instagram");
            assert!(sent.iter().all(|s| s.body["sender_action"] == "mark_seen"));
        }
    }
    assert_eq!(
        h.graph.refusals(),
        Vec::<String>::new(),
        "{label}: Graph refused"
    );
    let refused = h.livechat.refusals();
    // Deleting again an event a crashed attempt had deleted: LiveChat answers "Not found",
    // which the unsend counts as already gone.
    let expected = refused
        .iter()
        .all(|r| path == Path::Unsend && r == "Not found");
    assert!(expected, "{label}: LiveChat refused {refused:?}");
}

/// The external calls of one clean run of the path's worker.
async fn calls_of(path: Path) -> Vec<String> {
    let wire = Tripwire::new();
    let h = bridge(&wire).await;
    let mut echoed = 0;
    setup(&h, path, &mut echoed).await;
    wire.disarm();
    invoke(&h, path).await;
    let calls = wire.calls();
    settle(&h, &mut echoed).await;
    check(&h, path, &format!("{path:?} without a crash")).await;
    calls
}

async fn crash_at(path: Path, k: usize, when: When, call: &str) {
    let wire = Tripwire::new();
    let h = bridge(&wire).await;
    let mut echoed = 0;
    setup(&h, path, &mut echoed).await;
    wire.arm(k, when);
    let finished = wire.run(invoke(&h, path)).await;
    let label = format!("{path:?}, crash {when:?} call {k} ({call})");
    assert!(finished.is_none(), "{label}: the crash happened");
    wire.disarm();
    // The crashed invocation's jobs come back after the visibility timeout.
    h.clock.advance(Span::seconds(181));
    settle(&h, &mut echoed).await;
    check(&h, path, &label).await;
}

#[tokio::test]
async fn every_worker_path_survives_a_crash_before_and_after_each_external_call() {
    let mut report = Vec::new();
    let mut tried = 0;
    for path in PATHS {
        let calls = calls_of(path).await;
        assert!(calls.len() >= 2, "{path:?}: {calls:?}");
        println!("{path:?}: {}", calls.join(" → "));
        for (i, call) in calls.iter().enumerate() {
            for when in [When::Before, When::After] {
                crash_at(path, i + 1, when, call).await;
                tried += 1;
            }
        }
        report.push(format!("{path:?}: {} calls", calls.len()));
    }
    println!(
        "crash at every step: {} paths, {tried} crash points, 0 lost, 0 duplicated ({})",
        PATHS.len(),
        report.join(", ")
    );
}
