//! LiveChat → Instagram inside the core crate: LiveChat chat webhooks through the livechat-webhook
//! router, the in-memory FIFO queue and the livechat-to-instagram worker, against loopback fakes
//! of the Graph API (Send API) and LiveChat.

use shared::ids::{EventId, IgAccountId, Igsid, Mid, OrgId};
use testkit::bridge;

use std::time::Duration;

use axum::http::StatusCode;
use bridge::*;
use chrono::Duration as Span;
use serde_json::{Value, json};
use shared::clock::Clock;
use shared::domain::*;
use shared::outcome::Outcome;
use shared::worker::JobHandler;
use testkit::fixture;
use wiremock::matchers::{method, path};
use wiremock::{Mock, ResponseTemplate};

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
        .get(&MessageLink::key_for(
            &OrgId::from(ORG),
            &IgAccountId::from(IG),
            &Mid::from("MID_SENT_0001"),
        ))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (link.direction, link.event_ids.clone()),
        (Direction::Outbound, vec![EventId::from("THREAD0002_3")])
    );
    let pending: Vec<PendingSend> = h
        .services
        .repo
        .query_prefix(
            &PendingSend::partition(
                &OrgId::from(ORG),
                &IgAccountId::from(IG),
                &Igsid::from(IGSID),
            ),
            "",
        )
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
        ("audio/mp4", "c.m4a"),
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
            json!({"attachment": {"type": "audio", "payload": {"url": url("c.m4a")}}}),
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

/// A conversation whose next Send API call gets Meta's recorded error `fixture`.
async fn send_error(name: &str) -> Harness {
    let h = ready(Some(Span::hours(1))).await;
    h.graph.fail_next("POST", "/messages", fixture(name), 1);
    h.post_livechat(&text_event("E1", "hello")).await;
    h
}

#[tokio::test]
async fn send_api_errors_become_actions() {
    // Outside the window: explained in the chat, done.
    for name in [
        "meta/error_10_2534022_outside_window",
        "meta/error_10_2018278_outside_window",
    ] {
        let h = send_error(name).await;
        assert!(h.work_outbound().await.is_empty());
        let notices = h.calls("send_event").await;
        assert!(
            notices[0]["event"]["text"]
                .as_str()
                .unwrap()
                .contains("messaging window is closed"),
            "{name}"
        );
        assert_eq!(h.services.to_instagram_dlq.depth().await.unwrap(), 0);
    }
    // 190: connection broken, agent told once with the status page's link (reconnect there),
    // message parked waiting for the repair, which replays it (shared/tests/suite/health.rs).
    let h = send_error("meta/error_190_session_invalidated").await;
    assert!(h.work_outbound().await.is_empty());
    let conn: InstagramConnection = h
        .services
        .repo
        .get(&InstagramConnection::key_for(
            &OrgId::from(ORG),
            &IgAccountId::from(IG),
        ))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(conn.status, ConnectionStatus::Broken);
    let text = h.calls("send_event").await[0]["event"]["text"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(text.contains("https://bridge.example.com/status"), "{text}");
    let parked = h
        .services
        .to_instagram_dlq
        .receive(1, Duration::from_millis(50))
        .await
        .unwrap();
    let env = h.open(&parked[0].body).await;
    let why = env.parked.unwrap();
    assert_eq!(why.blocked, Some(shared::jobs::Blocked::ConnectionBroken));
    assert!(why.reason.contains("Page token refused"), "{}", why.reason);
    // Throttling and Meta's temporary faults: retried through the queue, nothing told, nothing
    // parked.
    for name in [
        "meta/error_4_app_limit",
        "meta/error_17_user_limit",
        "meta/error_32_page_limit",
        "meta/error_613_rate_limit",
        "meta/error_80002_instagram_limit",
        "meta/error_80006_messenger_limit",
        "meta/error_2_service",
    ] {
        let h = send_error(name).await;
        let failed = h.work_outbound().await;
        assert_eq!(failed.len(), 1, "{name}");
        assert!(h.calls("send_event").await.is_empty());
        h.clock.advance(Span::minutes(10));
        assert!(h.work_outbound().await.is_empty(), "{name} retried");
        assert_eq!(h.graph_calls(SEND).await.len(), 2);
        assert_eq!(h.graph.sent().len(), 1, "{name}: delivered once");
    }
    // Other permanent errors: explained with Meta's words and parked.
    let h = send_error("meta/error_100_fetch_failed").await;
    assert!(h.work_outbound().await.is_empty());
    assert!(
        h.calls("send_event").await[0]["event"]["text"]
            .as_str()
            .unwrap()
            .contains("(#100) Failed to fetch the file from the url (Meta error 100)")
    );
    assert_eq!(h.services.to_instagram_dlq.depth().await.unwrap(), 1);
}

#[tokio::test]
async fn an_echo_racing_the_send_response_is_known_by_its_content_and_skipped() {
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
    let echo_job = h.next_inbound_job().await;
    let inbound = h.services.inbound();
    let send = h.work_outbound();
    let early_echo = async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        inbound
            .handle(&echo_job, shared::outcome::Attempt::first())
            .await
    };
    let (failed, early) = tokio::join!(send, early_echo);
    assert!(failed.is_empty());
    // Before Meta's answer: the pending send's fingerprint matches the echo's text.
    assert_eq!(early, Outcome::Skipped("echo of a message this app sent"));
    assert_eq!(
        inbound
            .handle(&echo_job, shared::outcome::Attempt::first())
            .await,
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
    h.livechat.deactivate(CHAT);
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
        .get(&Contact::key_for(
            &OrgId::from(ORG),
            &IgAccountId::from(IG),
            &Igsid::from(IGSID),
        ))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(contact.thread_active, Some(false));

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

#[tokio::test]
async fn files_instagram_cannot_take_go_as_links_and_the_agent_is_told_why() {
    let h = ready(Some(Span::hours(1))).await;
    let file = |id: &str, ct: &str, name: &str, size: u64| {
        agent_event(
            id,
            json!({"type": "file", "url": format!("https://cdn.livechat-files.com/api/file/lc/att/1/{name}"), "name": name, "content_type": ct, "size": size}),
        )
    };
    h.post_livechat(&file("E1", "image/png", "big.png", 9 * 1024 * 1024))
        .await;
    h.post_livechat(&file("E2", "video/mp4", "long.mp4", 30 * 1024 * 1024))
        .await;
    h.post_livechat(&file("E3", "audio/mpeg", "song.mp3", 1024))
        .await;
    h.post_livechat(&file("E4", "image/jpeg", "ok.jpg", 8 * 1024 * 1024))
        .await;
    assert!(h.work_outbound().await.is_empty());
    h.assert_nothing_refused();
    let sent: Vec<Value> = h
        .graph
        .sent()
        .into_iter()
        .map(|s| s.body["message"].clone())
        .collect();
    assert_eq!(sent.len(), 4);
    assert!(sent[0]["text"].as_str().unwrap().contains("big.png"));
    assert!(sent[1]["text"].as_str().unwrap().contains("long.mp4"));
    assert!(sent[2]["text"].as_str().unwrap().contains("song.mp3"));
    assert_eq!(sent[3]["attachment"]["type"], "image");
    let notices: Vec<String> = h
        .livechat
        .chat(CHAT)
        .unwrap()
        .events()
        .iter()
        .map(|e| e["text"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(notices.len(), 3, "{notices:?}");
    assert!(notices[0].contains("as a link") && notices[0].contains("up to 8 MB"));
    assert!(notices[1].contains("up to 25 MB"));
    assert!(notices[2].contains("does not accept audio/mpeg"));
}

#[tokio::test]
async fn a_thread_an_agent_starts_is_followed_and_its_opening_messages_reach_instagram() {
    let h = ready(Some(Span::hours(1))).await;
    let thread = h.livechat.agent_starts_thread(CHAT);
    let opening = json!({"id": format!("{thread}_1"), "type": "message", "text": "Hi! Following up on your order.",
        "author_id": "agent1@example.com", "visibility": "all", "created_at": "2026-03-01T12:10:00.000000Z"});
    let note = json!({"id": format!("{thread}_2"), "type": "message", "text": "internal", "author_id": "agent1@example.com",
        "visibility": "agents", "created_at": "2026-03-01T12:10:01.000000Z"});
    let body = json!({"webhook_id": "WEBHOOK_ID_0002", "secret_key": "lc-webhook-secret", "action": "incoming_chat",
        "organization_id": ORG, "payload": {"chat": {"id": CHAT, "users": [], "properties": {},
        "thread": {"id": thread, "active": true, "events": [opening, note], "user_ids": ["agent1@example.com"],
                   "properties": {}, "access": {"group_ids": [0]}, "created_at": "2026-03-01T12:10:00.000000Z"}}},
        "additional_data": {}});
    assert_eq!(h.post_livechat(&body).await, StatusCode::OK);
    assert!(h.work_outbound().await.is_empty());
    let sent = h.graph.sent();
    assert_eq!(sent.len(), 1, "the opening message, not the internal note");
    assert_eq!(
        sent[0].body["message"]["text"],
        "Hi! Following up on your order."
    );
    let contact = h.contact().await.unwrap();
    assert_eq!(
        (contact.thread_id.as_deref(), contact.thread_active),
        (Some(thread.as_str()), Some(true))
    );
    // LiveChat's own incoming_event for the same event, if it comes, sends nothing twice.
    let mut again = text_event(&format!("{thread}_1"), "Hi! Following up on your order.");
    again["payload"]["thread_id"] = json!(thread);
    h.post_livechat(&again).await;
    assert!(h.work_outbound().await.is_empty());
    assert_eq!(h.graph.sent().len(), 1);
    // And the customer's next message goes into that thread, no resume.
    h.deliver(&webhook(vec![text("MID_AFTER", "thanks!")]))
        .await;
    assert!(h.work().await.is_empty());
    assert!(h.calls("resume_chat").await.is_empty());
    let last = h
        .livechat
        .chat(CHAT)
        .unwrap()
        .threads
        .last()
        .unwrap()
        .clone();
    assert_eq!((last.id, last.events.len()), (thread, 1));
}

#[tokio::test]
async fn a_chat_started_but_answered_after_the_timeout_is_routed_and_replies_reach_instagram() {
    let mut h = Harness::new().await;
    // The client gives up after 300 ms; LiveChat starts the chat but answers after a second.
    h.services.http = reqwest::Client::builder()
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap()
        .into();
    h.livechat
        .answer_late("/start_chat", Duration::from_secs(1), 1);
    let mut hello = text("MID_TEXT_0001", "hello");
    hello["timestamp"] = json!(h.clock.now().timestamp_millis());
    h.deliver(&webhook(vec![hello])).await;
    assert_eq!(h.work().await.len(), 1, "the timeout is retried");
    assert_eq!(h.livechat.chats().len(), 1, "LiveChat did start the chat");
    h.clock.advance(Span::minutes(5));
    assert!(h.work().await.is_empty());
    assert_eq!(
        h.livechat.chat(CHAT).unwrap().events().len(),
        1,
        "the message is in the chat once"
    );
    assert_eq!(h.calls("start_chat").await.len(), 1, "no second chat");

    h.post_livechat(&text_event("THREAD0001_9", "Hi! How can we help?"))
        .await;
    assert!(h.work_outbound().await.is_empty());
    let sent = h.graph_calls(SEND).await;
    assert_eq!(sent.len(), 1, "the agent's reply is sent once");
    assert_eq!(sent[0].1["message"]["text"], "Hi! How can we help?");
    h.assert_nothing_refused();
}

#[tokio::test]
async fn during_a_webhook_secret_rotation_both_values_are_accepted_and_nothing_else() {
    let mut h = ready(Some(Span::hours(1))).await;
    h.services.config.livechat_webhook_secret = shared::config::RotatingSecret::new(
        "lc-webhook-secret-2".to_string().into(),
        Some("lc-webhook-secret".to_string().into()),
    );
    let old = text_event("E1", "sent with the old secret");
    let mut new = text_event("E2", "sent with the new secret");
    new["secret_key"] = json!("lc-webhook-secret-2");
    let mut other = text_event("E3", "guess");
    other["secret_key"] = json!("lc-webhook-secret-3");
    assert_eq!(h.post_livechat(&old).await, StatusCode::OK);
    assert_eq!(h.post_livechat(&new).await, StatusCode::OK);
    assert_eq!(h.post_livechat(&other).await, StatusCode::UNAUTHORIZED);
    assert_eq!(h.services.to_instagram.depth().await.unwrap(), 2);
}

#[tokio::test]
async fn a_reply_to_a_disconnected_account_tells_the_agent_and_parks_nothing() {
    let h = ready(Some(Span::hours(1))).await;
    // The Facebook user removed the app: the connection is disconnected and its token gone.
    let mut conn: InstagramConnection = h
        .services
        .repo
        .get(&InstagramConnection::key_for(
            &OrgId::from(ORG),
            &IgAccountId::from(IG),
        ))
        .await
        .unwrap()
        .unwrap();
    conn.status = ConnectionStatus::Disconnected;
    conn.page_token = None;
    h.services
        .repo
        .put(&conn, shared::store::Condition::Always)
        .await
        .unwrap();
    h.post_livechat(&text_event("THREAD0002_7", "Are you still there?"))
        .await;
    assert!(h.work_outbound().await.is_empty());
    assert_eq!(
        h.services.to_instagram_dlq.depth().await.unwrap(),
        0,
        "nothing parked"
    );
    assert!(h.graph_calls(SEND).await.is_empty());
    let notices: Vec<String> = h
        .calls("send_event")
        .await
        .iter()
        .filter_map(|b| b["event"]["text"].as_str().map(str::to_string))
        .collect();
    assert!(
        notices
            .iter()
            .any(|t| t.contains("no longer connected") && t.contains("/install")),
        "{notices:?}"
    );
}

#[tokio::test]
async fn a_webhook_too_large_to_queue_is_acknowledged_and_parked_with_ids_only() {
    let h = ready(Some(Span::hours(1))).await;
    let mut big = text_event("THREAD0002_8", "short text");
    // A rich event whose extra data makes it larger than an SQS message (256 KiB).
    big["payload"]["event"]["elements"] = json!([{"title": "x".repeat(300 * 1024)}]);
    assert_eq!(h.post_livechat(&big).await, StatusCode::OK, "acknowledged");
    assert_eq!(h.services.to_instagram.depth().await.unwrap(), 0);
    let parked = h
        .services
        .to_instagram_dlq
        .receive(10, Duration::from_millis(50))
        .await
        .unwrap();
    assert_eq!(parked.len(), 1);
    assert!(parked[0].body.len() < 4096, "ids only");
    assert!(!parked[0].body.contains("short text") && !parked[0].body.contains("xxxx"));
    assert!(!parked[0].body.contains("lc-webhook-secret"));
    assert!(
        !parked[0].body.contains(CHAT),
        "sealed: not even the ids are readable"
    );
    let env = h.open(&parked[0].body).await;
    assert!(env.parked.as_ref().unwrap().reason.contains("too large"));
    let shared::jobs::Job::LivechatEvent(job) = &env.job else {
        panic!("{env:?}")
    };
    let ids = job.webhook.to_string();
    assert!(ids.contains("THREAD0002_8") && ids.contains(CHAT), "{ids}");
    assert!(!ids.contains("short text"));
}
