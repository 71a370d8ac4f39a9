//! LiveChat → Instagram inside the core crate: LiveChat chat webhooks through the livechat-webhook
//! router, the in-memory FIFO queue and the livechat-to-instagram worker, against loopback fakes
//! of the Graph API (Send API) and LiveChat.

#[path = "support/bridge.rs"]
mod bridge;
mod support;

use std::time::Duration;

use axum::http::StatusCode;
use bridge::*;
use chrono::Duration as Span;
use serde_json::{Value, json};
use shared::clock::Clock;
use shared::domain::*;
use shared::jobs::Envelope;
use shared::worker::{JobHandler, Outcome};
use wiremock::matchers::{method, path};
use wiremock::{Mock, ResponseTemplate};

const CHAT: &str = "CHAT000001";
const SEND: &str = "/v25.0/PAGE-17841400000000001/messages";

fn agent_event(id: &str, event: Value) -> Value {
    let mut e = event;
    e["id"] = json!(id);
    if e.get("author_id").is_none() {
        e["author_id"] = json!("agent1@example.com");
    }
    if e.get("visibility").is_none() {
        e["visibility"] = json!("all");
    }
    json!({"webhook_id": "WEBHOOK_ID_0001", "secret_key": "lc-webhook-secret", "action": "incoming_event",
           "organization_id": ORG, "payload": {"chat_id": CHAT, "thread_id": "THREAD0002", "event": e}, "additional_data": {}})
}

fn text_event(id: &str, text: &str) -> Value {
    agent_event(
        id,
        json!({"type": "message", "text": text, "created_at": "2026-03-01T12:00:00.000000Z"}),
    )
}

async fn ready(ago: Option<Span>) -> Harness {
    let h = Harness::new().await;
    h.seed_contact(ORG, IG, IGSID, CHAT, ago).await;
    h
}

#[tokio::test]
async fn the_webhook_checks_the_secret_key_and_drops_loops_notes_and_strangers() {
    let h = ready(Some(Span::hours(1))).await;
    let mut wrong = text_event("E1", "hi");
    wrong["secret_key"] = json!("guess");
    assert_eq!(h.post_livechat(&wrong).await, StatusCode::UNAUTHORIZED);
    let mut missing = text_event("E1", "hi");
    missing.as_object_mut().unwrap().remove("secret_key");
    assert_eq!(h.post_livechat(&missing).await, StatusCode::UNAUTHORIZED);
    assert_eq!(h.services.to_instagram.depth().await.unwrap(), 0);

    let own = agent_event(
        "E2",
        json!({"type": "message", "text": "from IG", "custom_id": "ig:MID_TEXT_0001", "author_id": "customer-IGSID_1001"}),
    );
    let note = agent_event(
        "E3",
        json!({"type": "message", "text": "internal", "visibility": "agents"}),
    );
    let mut stranger = text_event("E4", "hi");
    stranger["organization_id"] = json!("00000000-0000-4000-8000-0000000000ff");
    for body in [own, note, stranger] {
        assert_eq!(h.post_livechat(&body).await, StatusCode::OK);
    }
    assert_eq!(h.services.to_instagram.depth().await.unwrap(), 0);

    // Authentic but unreadable: parked, acknowledged.
    let odd = json!({"secret_key": "lc-webhook-secret", "action": "incoming_event", "organization_id": ORG, "payload": {}});
    assert_eq!(h.post_livechat(&odd).await, StatusCode::OK);
    assert_eq!(h.services.to_instagram_dlq.depth().await.unwrap(), 1);
    let parked = h
        .services
        .to_instagram_dlq
        .receive(1, Duration::from_millis(50))
        .await
        .unwrap();
    assert!(
        !parked[0].body.contains("lc-webhook-secret"),
        "the secret is not parked"
    );
}

#[tokio::test]
async fn agent_text_is_sent_and_recorded_before_its_echo() {
    let h = ready(Some(Span::hours(1))).await;
    assert_eq!(
        h.post_livechat(&text_event("THREAD0002_3", "Your order ships tomorrow."))
            .await,
        StatusCode::OK
    );
    assert!(h.work_outbound().await.is_empty());
    let calls = h.graph_calls(SEND).await;
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].0.headers["authorization"], "Bearer PAGE-TOKEN-A");
    assert_eq!(
        calls[0].1,
        json!({"recipient": {"id": IGSID}, "message": {"text": "Your order ships tomorrow."}, "messaging_type": "RESPONSE"})
    );
    let link: MessageLink = h
        .services
        .repo
        .get(&MessageLink::key_for(ORG, IG, "MID_SENT_0001"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (link.direction, link.event_ids.clone()),
        (Direction::Outbound, vec!["THREAD0002_3".to_string()])
    );
    let pending: Vec<PendingSend> = h
        .services
        .repo
        .query_prefix(&PendingSend::partition(ORG, IG, IGSID), "")
        .await
        .unwrap();
    assert!(pending.is_empty(), "pending marker cleared after recording");
    // Its echo is skipped by the other direction.
    h.deliver(&webhook(vec![json!({"sender": {"id": IG}, "recipient": {"id": IGSID}, "timestamp": 1, "message": {"mid": "MID_SENT_0001", "text": "Your order ships tomorrow.", "is_echo": true}})])).await;
    assert!(h.work().await.is_empty());
    assert!(h.calls("send_event").await.is_empty());
}

#[tokio::test]
async fn long_text_is_split_in_order_at_word_boundaries() {
    let h = ready(Some(Span::hours(1))).await;
    let long = (0..400)
        .map(|i| format!("w{i:03}"))
        .collect::<Vec<_>>()
        .join(" ");
    h.post_livechat(&text_event("E1", &long)).await;
    assert!(h.work_outbound().await.is_empty());
    let texts: Vec<String> = h
        .graph_calls(SEND)
        .await
        .iter()
        .map(|(_, b)| b["message"]["text"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(texts.len(), 2);
    assert!(texts.iter().all(|t| t.len() <= 1000 && !t.ends_with(' ')));
    assert_eq!(texts.join(" "), long);
    assert!(texts[0].ends_with(&format!("w{:03}", texts[0].split(' ').count() - 1)));
}

#[tokio::test]
async fn files_become_attachments_by_mime_type() {
    let h = ready(Some(Span::hours(1))).await;
    let file = |id: &str, ct: &str, name: &str| {
        agent_event(
            id,
            json!({"type": "file", "url": format!("https://cdn.livechat-files.com/api/file/lc/att/1/{name}"), "name": name, "content_type": ct, "size": 10}),
        )
    };
    for (i, (ct, name)) in [
        ("image/png", "a.png"),
        ("video/mp4", "b.mp4"),
        ("audio/mpeg", "c.mp3"),
        ("application/pdf", "d.pdf"),
        ("application/zip", "e.zip"),
    ]
    .iter()
    .enumerate()
    {
        h.post_livechat(&file(&format!("E{i}"), ct, name)).await;
    }
    assert!(h.work_outbound().await.is_empty());
    let messages: Vec<Value> = h
        .graph_calls(SEND)
        .await
        .into_iter()
        .map(|(_, b)| b["message"].clone())
        .collect();
    let url = |n: &str| format!("https://cdn.livechat-files.com/api/file/lc/att/1/{n}");
    assert_eq!(
        messages,
        vec![
            json!({"attachment": {"type": "image", "payload": {"url": url("a.png")}}}),
            json!({"attachment": {"type": "video", "payload": {"url": url("b.mp4")}}}),
            json!({"attachment": {"type": "audio", "payload": {"url": url("c.mp3")}}}),
            json!({"attachment": {"type": "file", "payload": {"url": url("d.pdf")}}}),
            json!({"text": format!("📎 e.zip\n{}", url("e.zip"))}),
        ]
    );
}

#[tokio::test]
async fn the_messaging_window_decides_how_or_whether_to_send() {
    // (hours since the customer's last message, author, expected tag or a refusal notice)
    let cases: [(Option<i64>, &str, Result<&str, &str>); 6] = [
        (Some(1), "agent1@example.com", Ok("RESPONSE")),
        (Some(1), "5c9871d5372c824cbf22d860a707a578", Ok("RESPONSE")),
        (Some(30), "agent1@example.com", Ok("HUMAN_AGENT")),
        (
            Some(30),
            "5c9871d5372c824cbf22d860a707a578",
            Err("automated replies are only allowed within 24 hours"),
        ),
        (Some(24 * 8), "agent1@example.com", Err("more than 7 days")),
        (None, "agent1@example.com", Err("more than 7 days")),
    ];
    for (hours, author, expected) in cases {
        let h = ready(hours.map(Span::hours)).await;
        h.post_livechat(&agent_event(
            "E1",
            json!({"type": "message", "text": "hello", "author_id": author}),
        ))
        .await;
        assert!(h.work_outbound().await.is_empty(), "{hours:?} {author}");
        let sent = h.graph_calls(SEND).await;
        let notices = h.calls("send_event").await;
        match expected {
            Ok("RESPONSE") => {
                assert_eq!(sent[0].1["messaging_type"], "RESPONSE");
                assert!(sent[0].1.get("tag").is_none());
                assert!(notices.is_empty());
            }
            Ok(tag) => {
                assert_eq!(
                    (
                        sent[0].1["messaging_type"].as_str(),
                        sent[0].1["tag"].as_str()
                    ),
                    (Some("MESSAGE_TAG"), Some(tag))
                );
                assert!(notices.is_empty());
            }
            Err(why) => {
                assert!(sent.is_empty(), "{hours:?} {author}: nothing may be sent");
                assert_eq!(notices.len(), 1);
                assert_eq!(notices[0]["chat_id"], CHAT);
                assert_eq!(notices[0]["event"]["type"], "system_message");
                assert!(
                    notices[0]["event"]["text"].as_str().unwrap().contains(why),
                    "{notices:?}"
                );
            }
        }
    }
}

async fn send_error(status: u16, code: i64, subcode: Option<i64>) -> Harness {
    let h = ready(Some(Span::hours(1))).await;
    let mut error = json!({"message": "Meta says no", "type": "OAuthException", "code": code, "fbtrace_id": "TRACE"});
    if let Some(s) = subcode {
        error["error_subcode"] = json!(s);
    }
    Mock::given(method("POST"))
        .and(path(SEND))
        .respond_with(ResponseTemplate::new(status).set_body_json(json!({"error": error})))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&h.graph)
        .await;
    h.post_livechat(&text_event("E1", "hello")).await;
    h
}

#[tokio::test]
async fn send_api_errors_become_actions() {
    // Outside the window: explained in the chat, done.
    for sub in [2534022, 2018278] {
        let h = send_error(403, 10, Some(sub)).await;
        assert!(h.work_outbound().await.is_empty());
        let notices = h.calls("send_event").await;
        assert!(
            notices[0]["event"]["text"]
                .as_str()
                .unwrap()
                .contains("messaging window is closed")
        );
        assert_eq!(h.services.to_instagram_dlq.depth().await.unwrap(), 0);
    }
    // 190: connection broken, agent told with the reconnect link, message parked.
    let h = send_error(400, 190, None).await;
    assert!(h.work_outbound().await.is_empty());
    let conn: InstagramConnection = h
        .services
        .repo
        .get(&InstagramConnection::key_for(ORG, IG))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(conn.status, ConnectionStatus::Broken);
    let text = h.calls("send_event").await[0]["event"]["text"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        text.contains("https://bridge.example.com/install"),
        "{text}"
    );
    let parked = h
        .services
        .to_instagram_dlq
        .receive(1, Duration::from_millis(50))
        .await
        .unwrap();
    let env = Envelope::decode(&parked[0].body).unwrap();
    assert!(env.parked.unwrap().reason.contains("190"));
    // Throttling and 5xx: retried through the queue, nothing told, nothing parked.
    for (status, code) in [
        (400, 4),
        (400, 17),
        (400, 32),
        (400, 613),
        (400, 80002),
        (400, 80006),
        (500, 2),
    ] {
        let h = send_error(status, code, None).await;
        let failed = h.work_outbound().await;
        assert_eq!(failed.len(), 1, "code {code}");
        assert!(h.calls("send_event").await.is_empty());
        h.clock.advance(Span::minutes(10));
        assert!(h.work_outbound().await.is_empty(), "code {code} retried");
        assert_eq!(h.graph_calls(SEND).await.len(), 2);
    }
    // Other permanent errors: explained and parked.
    let h = send_error(400, 100, None).await;
    assert!(h.work_outbound().await.is_empty());
    assert!(
        h.calls("send_event").await[0]["event"]["text"]
            .as_str()
            .unwrap()
            .contains("Meta says no (Meta error 100)")
    );
    assert_eq!(h.services.to_instagram_dlq.depth().await.unwrap(), 1);
}

#[tokio::test]
async fn an_echo_racing_the_send_response_waits_and_is_then_skipped() {
    let h = ready(Some(Span::hours(1))).await;
    Mock::given(method("POST"))
        .and(path(SEND))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"recipient_id": IGSID, "message_id": "MID_RACE"}))
                .set_delay(Duration::from_millis(400)),
        )
        .with_priority(1)
        .mount(&h.graph)
        .await;
    h.post_livechat(&text_event("E1", "racing")).await;
    let echo = webhook(vec![
        json!({"sender": {"id": IG}, "recipient": {"id": IGSID}, "timestamp": 1, "message": {"mid": "MID_RACE", "text": "racing", "is_echo": true}}),
    ]);
    h.deliver(&echo).await;
    let echo_job = Envelope::decode(
        &h.services
            .to_livechat
            .receive(1, Duration::from_millis(50))
            .await
            .unwrap()[0]
            .body,
    )
    .unwrap();
    let inbound = h.services.inbound();
    let send = h.work_outbound();
    let early_echo = async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        inbound.handle(&echo_job, 1).await
    };
    let (failed, early) = tokio::join!(send, early_echo);
    assert!(failed.is_empty());
    assert!(
        matches!(early, Outcome::Retry { after: Some(_), .. }),
        "{early:?}"
    );
    assert_eq!(
        inbound.handle(&echo_job, 2).await,
        Outcome::Skipped("echo of a message this app sent")
    );
    assert!(
        h.calls("send_event").await.is_empty(),
        "our own message never comes back as a staff message"
    );
}

#[tokio::test]
async fn duplicate_webhooks_make_one_send_api_call() {
    let h = ready(Some(Span::hours(1))).await;
    for _ in 0..3 {
        assert_eq!(
            h.post_livechat(&text_event("THREAD0002_3", "once")).await,
            StatusCode::OK
        );
    }
    assert!(h.work_outbound().await.is_empty());
    // LiveChat's retries after the queue's dedup window.
    h.clock.advance(Span::minutes(6));
    h.post_livechat(&text_event("THREAD0002_3", "once")).await;
    assert!(h.work_outbound().await.is_empty());
    assert_eq!(h.graph_calls(SEND).await.len(), 1);
}

#[tokio::test]
async fn a_webhook_for_one_organization_never_sends_through_another_organizations_page() {
    let h = Harness::new().await;
    let org_b = "00000000-0000-4000-8000-00000000a002";
    let ig_b = "17841400000000002";
    h.install(org_b, ig_b, "dal:AGENT-B", "PAGE-TOKEN-B").await;
    h.seed_contact(org_b, ig_b, "IGSID_2002", "CHAT_B", Some(Span::hours(1)))
        .await;
    // Organization A's webhook names organization B's chat.
    let mut body = text_event("E1", "cross-tenant");
    body["payload"]["chat_id"] = json!("CHAT_B");
    assert_eq!(h.post_livechat(&body).await, StatusCode::OK);
    assert!(h.work_outbound().await.is_empty());
    let all = h.graph.received_requests().await.unwrap();
    assert!(all.iter().all(
        |r| r.headers.get("authorization").map(|v| v.to_str().unwrap())
            != Some("Bearer PAGE-TOKEN-B")
    ));
    assert!(h.graph_calls("/messages").await.is_empty());
    // Organization B's own webhook does go out through B's Page.
    body["organization_id"] = json!(org_b);
    body["payload"]["event"]["id"] = json!("E2");
    h.post_livechat(&body).await;
    assert!(h.work_outbound().await.is_empty());
    let calls = h
        .graph_calls("/v25.0/PAGE-17841400000000002/messages")
        .await;
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].0.headers["authorization"], "Bearer PAGE-TOKEN-B");
}

#[tokio::test]
async fn agent_reads_mark_seen_and_deactivation_makes_the_next_message_resume() {
    let h = ready(Some(Span::hours(1))).await;
    let seen = |user: &str| {
        json!({"secret_key": "lc-webhook-secret", "action": "events_marked_as_seen", "organization_id": ORG,
        "payload": {"user_id": user, "chat_id": CHAT, "seen_up_to": "2026-03-01T12:00:00.000000Z"}, "additional_data": {}})
    };
    h.post_livechat(&seen("agent1@example.com")).await;
    h.post_livechat(&seen("customer-IGSID_1001")).await;
    let off = json!({"secret_key": "lc-webhook-secret", "action": "chat_deactivated", "organization_id": ORG,
        "payload": {"chat_id": CHAT, "thread_id": "THREAD0001", "user_id": "agent1@example.com"}, "additional_data": {}});
    h.post_livechat(&off).await;
    assert!(h.work_outbound().await.is_empty());
    let calls = h.graph_calls(SEND).await;
    assert_eq!(calls.len(), 1);
    assert_eq!(
        calls[0].1,
        json!({"recipient": {"id": IGSID}, "sender_action": "mark_seen"})
    );
    let contact: Contact = h
        .services
        .repo
        .get(&Contact::key_for(ORG, IG, IGSID))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(contact.thread_active, Some(false));

    Mock::given(method("POST"))
        .and(path("/v3.6/customer/action/resume_chat"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"thread_id": "THREAD0003", "event_ids": ["THREAD0003_1"]})),
        )
        .mount(&h.livechat)
        .await;
    h.deliver(&webhook(vec![text("MID_NEXT", "me again")]))
        .await;
    assert!(h.work().await.is_empty());
    assert!(
        h.calls("send_event").await.is_empty(),
        "no doomed send_event first"
    );
    assert_eq!(h.calls("resume_chat").await.len(), 1);
    let _ = h.clock.now();
}
