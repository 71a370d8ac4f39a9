//! Storms: three conversations, each with customer messages and agent replies in flight, while
//! the platforms misbehave for many calls in a row — LiveChat 429s and 500s, Meta `#613`s and
//! 500s, answers lost after the platform acted (the connection dropped or the answer came after
//! the client's timeout), and SQS delivering every batch twice to two concurrent invocations.
//! Each storm must end with every message delivered exactly once, in order per conversation,
//! and nothing parked. The report line lists the storms tried.

use testkit::bridge;

use std::time::Duration;

use bridge::*;
use chrono::Duration as Span;
use serde_json::{Value, json};
use shared::clock::Clock;
use shared::queue::Queue;
use shared::worker::{JobHandler, QueuedJob, process_batch};
use testkit::fixture;

const CONVERSATIONS: usize = 3;
const MESSAGES: usize = 4;
/// Consecutive failing calls in each storm.
const N: usize = 8;

#[derive(Debug, Clone, Copy)]
enum Storm {
    Livechat429,
    Livechat5xx,
    Meta613,
    Meta5xx,
    AnswersLostAfterAccept,
    BatchesDeliveredTwice,
}

const STORMS: [Storm; 6] = [
    Storm::Livechat429,
    Storm::Livechat5xx,
    Storm::Meta613,
    Storm::Meta5xx,
    Storm::AnswersLostAfterAccept,
    Storm::BatchesDeliveredTwice,
];

fn igsid(c: usize) -> String {
    format!("IGSID_200{c}")
}

fn chat(c: usize) -> String {
    format!("CHAT00020{c}")
}

fn customer_text(c: usize, m: usize) -> String {
    format!("customer {c} says {m}")
}

fn agent_text(c: usize, m: usize) -> String {
    format!("agent answers {c}.{m}")
}

async fn conversations(h: &Harness) {
    for c in 0..CONVERSATIONS {
        h.seed_contact(ORG, IG, &igsid(c), &chat(c), Some(Span::hours(1)))
            .await;
    }
    for m in 0..MESSAGES {
        for c in 0..CONVERSATIONS {
            let ms = h.clock.now().timestamp_millis() + m as i64;
            let item = json!({"sender": {"id": igsid(c)}, "recipient": {"id": IG}, "timestamp": ms,
                "message": {"mid": format!("M{c}_{m}"), "text": customer_text(c, m)}});
            h.deliver(&webhook(vec![item])).await;
            let mut reply = text_event(&format!("E{c}_{m}"), &agent_text(c, m));
            reply["payload"]["chat_id"] = json!(chat(c));
            h.post_livechat(&reply).await;
        }
    }
}

fn unleash(h: &Harness, storm: Storm) {
    match storm {
        Storm::Livechat429 => {
            let f = fixture("livechat/too_many_requests");
            h.livechat.fail_next("/send_event", f, N);
        }
        Storm::Livechat5xx => h
            .livechat
            .fail_next("/send_event", fixture("livechat/internal"), N),
        Storm::Meta613 => {
            let f = fixture("meta/error_613_rate_limit");
            h.graph.fail_next("POST", "/messages", f, N);
        }
        Storm::Meta5xx => {
            let f = fixture("meta/error_2_service");
            h.graph.fail_next("POST", "/messages", f, N);
        }
        Storm::AnswersLostAfterAccept => {
            h.graph.lose_answer_next("/messages", N);
            h.livechat
                .answer_late("/send_event", Duration::from_secs(2), N);
        }
        Storm::BatchesDeliveredTwice => {}
    }
}

/// One event-source poll: a batch to one invocation, or the same batch to two concurrent ones.
async fn poll(
    h: &Harness,
    handler: &dyn JobHandler,
    queue: &dyn Queue,
    dlq: &dyn Queue,
    twice: bool,
) {
    let got = queue.receive(10, Duration::from_millis(20)).await.unwrap();
    let receipts: Vec<_> = got
        .iter()
        .map(|m| (m.message_id.clone(), m.receipt.clone()))
        .collect();
    let jobs: Vec<QueuedJob> = got.into_iter().map(QueuedJob::from).collect();
    let now = h.clock.now();
    let failed = if twice {
        let (a, b) = tokio::join!(
            process_batch(handler, queue, dlq, now, jobs.clone()),
            process_batch(handler, queue, dlq, now, jobs)
        );
        a.into_iter().chain(b).collect::<Vec<_>>()
    } else {
        process_batch(handler, queue, dlq, now, jobs).await
    };
    for (id, receipt) in receipts {
        if !failed.contains(&id) {
            let _ = queue.delete(&receipt).await;
        }
    }
}

/// Runs both workers, with Meta echoing what it sent, until everything is through.
async fn weather(h: &Harness, twice: bool) -> usize {
    let (inbound, outbound) = (h.services.inbound(), h.services.outbound());
    let s = &h.services;
    let mut echoed = 0;
    for round in 0..400 {
        let sent = h.graph.sent();
        let echoes: Vec<Value> = sent[echoed..]
            .iter()
            .filter_map(|x| h.graph.echo(x))
            .collect();
        echoed = sent.len();
        if !echoes.is_empty() {
            h.deliver(&webhook(echoes)).await;
        }
        poll(
            h,
            &inbound,
            s.to_livechat.as_ref(),
            s.to_livechat_dlq.as_ref(),
            twice,
        )
        .await;
        poll(
            h,
            &outbound,
            s.to_instagram.as_ref(),
            s.to_instagram_dlq.as_ref(),
            twice,
        )
        .await;
        let queued = s.to_livechat.depth().await.unwrap() + s.to_instagram.depth().await.unwrap();
        if queued == 0 && h.graph.sent().len() == echoed {
            return round;
        }
        h.clock.advance(Span::seconds(15));
    }
    panic!("the storm never cleared");
}

async fn check(h: &Harness, storm: Storm) {
    let s = &h.services;
    let parked =
        s.to_livechat_dlq.depth().await.unwrap() + s.to_instagram_dlq.depth().await.unwrap();
    assert_eq!(parked, 0, "{storm:?}: nothing parked");
    for c in 0..CONVERSATIONS {
        let events = h.livechat.chat(&chat(c)).unwrap().events();
        // Bridge notices (a message delayed over 5 minutes) are system messages, not the
        // customer's.
        let texts: Vec<&str> = events
            .iter()
            .filter(|e| e["type"] == "message")
            .filter_map(|e| e["text"].as_str())
            .collect();
        let notices: Vec<&str> = events
            .iter()
            .filter(|e| e["type"] == "system_message")
            .filter_map(|e| e["text"].as_str())
            .collect();
        assert!(
            notices.iter().all(|t| t.starts_with("Delayed:")),
            "{storm:?}: no other notice: {notices:?}"
        );
        let expected: Vec<String> = (0..MESSAGES).map(|m| customer_text(c, m)).collect();
        assert_eq!(
            texts, expected,
            "{storm:?}: conversation {c} in LiveChat, once, in order"
        );
        let sent: Vec<String> = h
            .graph
            .sent()
            .iter()
            .filter(|x| x.body["recipient"]["id"] == json!(igsid(c)))
            .filter_map(|x| x.body.pointer("/message/text").and_then(Value::as_str))
            .map(str::to_string)
            .collect();
        let expected: Vec<String> = (0..MESSAGES).map(|m| agent_text(c, m)).collect();
        assert_eq!(
            sent, expected,
            "{storm:?}: conversation {c} on Instagram, once, in order"
        );
    }
}

#[tokio::test]
async fn storms_lose_nothing_duplicate_nothing_and_keep_each_conversation_in_order() {
    let mut report = Vec::new();
    for storm in STORMS {
        let mut h = Harness::new().await;
        h.services.http = reqwest::Client::builder()
            .timeout(Duration::from_millis(500))
            .build()
            .unwrap()
            .into();
        conversations(&h).await;
        unleash(&h, storm);
        let rounds = weather(&h, matches!(storm, Storm::BatchesDeliveredTwice)).await;
        check(&h, storm).await;
        report.push(format!("{storm:?} ({rounds} rounds)"));
    }
    println!(
        "storms: {} tried, {} messages each, 0 lost, 0 duplicated, order kept: {}",
        STORMS.len(),
        2 * CONVERSATIONS * MESSAGES,
        report.join(", ")
    );
}
