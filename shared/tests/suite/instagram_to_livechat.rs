//! Instagram → LiveChat end to end inside the core crate: signed webhook bodies through the
//! instagram-webhook router, the in-memory FIFO queue, and the instagram-to-livechat worker,
//! against loopback fakes of the Graph API and LiveChat (wiremock) with documented payloads.

use shared::ids::{ChatId, EventId, IgAccountId, Igsid, Mid, OrgId, ThreadId};
use testkit::bridge;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use bridge::*;
use http_body_util::BodyExt;
use serde_json::{Value, json};
use shared::clock::Clock;
use shared::config::RotatingSecret;
use shared::domain::*;
use shared::instagram::webhook::sign;
use shared::jobs::{Envelope, Job};
use shared::outcome::Outcome;
use shared::queue::{OutgoingMessage, Queue, QueueError, ReceivedMessage};
use shared::store::Condition;
use shared::worker::{QueuedJob, process_batch};
use testkit::fixture;
use testkit::store::{FaultAt, FaultyStore, Op};
use tower::ServiceExt;
use wiremock::matchers::{method, path};
use wiremock::{Mock, ResponseTemplate};

#[tokio::test]
async fn handshake_answers_the_challenge_only_with_the_right_token() {
    let h = Harness::new().await;
    let router = shared::web::instagram_webhook::router(h.services.instagram_ingest());
    let ok = router
        .clone()
        .oneshot(Request::get("/webhooks/instagram?hub.mode=subscribe&hub.verify_token=verify-me&hub.challenge=CHALLENGE_ACCEPTED").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(ok.status(), StatusCode::OK);
    assert!(
        ok.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    assert_eq!(
        ok.into_body().collect().await.unwrap().to_bytes(),
        "CHALLENGE_ACCEPTED"
    );
    for q in [
        "hub.mode=subscribe&hub.verify_token=wrong&hub.challenge=1",
        "hub.mode=unsubscribe&hub.verify_token=verify-me&hub.challenge=1",
        "hub.mode=subscribe&hub.challenge=1",
    ] {
        let res = router
            .clone()
            .oneshot(
                Request::get(format!("/webhooks/instagram?{q}"))
                    .body(Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::FORBIDDEN, "{q}");
    }
}

#[tokio::test]
async fn unsigned_or_wrongly_signed_bodies_are_refused_and_nothing_is_queued() {
    let h = Harness::new().await;
    let body = webhook(vec![text("MID_TEXT_0001", "hi")]).to_string();
    assert_eq!(
        h.post_webhook(&body, None).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        h.post_webhook(&body, Some(sign(b"not-the-secret", body.as_bytes())))
            .await
            .0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        h.post_webhook(&body, Some("sha256=00".into())).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(h.services.to_livechat.depth().await.unwrap(), 0);
    assert_eq!(h.services.to_livechat_dlq.depth().await.unwrap(), 0);
}

#[tokio::test]
async fn authentic_but_unparseable_bodies_are_accepted_and_parked() {
    let h = Harness::new().await;
    let body = r#"{"object":"instagram","entry":[{"messaging":[{"message":"#;
    let (status, _) = h
        .post_webhook(body, Some(sign(APP_SECRET.as_bytes(), body.as_bytes())))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(h.services.to_livechat.depth().await.unwrap(), 0);
    let parked = h.dlq().await;
    let Job::Unparsed(u) = &parked[0].job else {
        panic!()
    };
    assert_eq!(u.raw_body, body);
}

#[tokio::test]
async fn events_for_unknown_accounts_are_acknowledged_not_stored() {
    let h = Harness::new().await;
    let body = json!({"object": "instagram", "entry": [{"id": "999", "time": 1, "messaging": [
        {"sender": {"id": "X"}, "recipient": {"id": "999"}, "timestamp": 1, "message": {"mid": "M", "text": "hi"}}]}]});
    assert_eq!(h.deliver(&body).await, StatusCode::OK);
    assert_eq!(h.services.to_livechat.depth().await.unwrap(), 0);
}

struct RefusingQueue;

#[async_trait]
impl Queue for RefusingQueue {
    async fn send(&self, m: &[OutgoingMessage]) -> Result<(), QueueError> {
        Err(QueueError::Rejected {
            failed: m.len(),
            total: m.len(),
            reason: "throttled".into(),
        })
    }
    async fn receive(&self, _: u8, _: Duration) -> Result<Vec<ReceivedMessage>, QueueError> {
        Ok(vec![])
    }
    async fn delete(&self, _: &str) -> Result<(), QueueError> {
        Ok(())
    }
    async fn retry_later(&self, _: &str, _: Duration) -> Result<(), QueueError> {
        Ok(())
    }
    async fn depth(&self) -> Result<u64, QueueError> {
        Ok(0)
    }
}

#[tokio::test]
async fn a_queue_failure_answers_5xx_so_meta_retries() {
    let mut h = Harness::new().await;
    h.services.to_livechat = Arc::new(RefusingQueue);
    let status = h.deliver(&webhook(vec![text("MID_TEXT_0001", "hi")])).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
}

#[tokio::test]
async fn first_message_creates_the_customer_with_profile_and_starts_a_continuous_chat() {
    let h = Harness::new().await;
    assert_eq!(
        h.deliver(&webhook(vec![text(
            "MID_TEXT_0001",
            "Hi, where is my order #1042?"
        )]))
        .await,
        StatusCode::OK
    );
    assert!(h.work().await.is_empty());

    let grants = h.requests("/v2/customer/token").await;
    assert_eq!(grants.len(), 1);
    assert_eq!(grants[0].headers["authorization"], "Bearer dal:AGENT-A");
    let grant: Value = serde_json::from_slice(&grants[0].body).unwrap();
    assert_eq!(
        grant,
        json!({"grant_type": "agent_token", "client_id": "CLIENT_ID_0001", "response_type": "token"})
    );

    let profile = h.graph.received_requests().await.unwrap();
    assert_eq!(profile[0].url.path(), format!("/v25.0/{IGSID}"));
    assert_eq!(profile[0].headers["authorization"], "Bearer PAGE-TOKEN-A");
    let params = &h.graph.calls()[0].params;
    assert_eq!(params["fields"], "name,username,profile_pic");
    assert_eq!(
        params["appsecret_proof"],
        testkit::meta::appsecret_proof(APP_SECRET, "PAGE-TOKEN-A")
    );

    let update = &h.calls("update_customer").await[0];
    assert_eq!(update["name"], "Example Customer");
    assert_eq!(update["avatar"], "https://cdn.example.com/p.jpg");
    assert_eq!(
        update["session_fields"],
        json!([{"instagram_id": IGSID}, {"instagram_username": "@example_customer"}])
    );

    let starts = h.requests("start_chat").await;
    assert_eq!(starts.len(), 1);
    assert_eq!(
        starts[0].url.query(),
        Some(format!("organization_id={ORG}").as_str())
    );
    assert!(
        starts[0].headers["authorization"]
            .to_str()
            .unwrap()
            .starts_with("Bearer dal:CUSTOMER-TOKEN-")
    );
    let started: Value = serde_json::from_slice(&starts[0].body).unwrap();
    assert_eq!(
        started,
        json!({"chat": {"thread": {"events": [
        {"type": "message", "text": "Hi, where is my order #1042?", "custom_id": "ig:MID_TEXT_0001"}]}}, "continuous": true})
    );

    let contact = h.contact().await.unwrap();
    assert_eq!(contact.chat_id.as_deref(), Some("CHAT000001"));
    assert_eq!(contact.customer_id, "00000000-0000-4000-8000-00000000c001");
    assert_eq!(
        contact.last_customer_message_at.unwrap().timestamp_millis(),
        1569262485349
    );
    let route: ChatRoute = h
        .services
        .repo
        .get(&ChatRoute::key_for(
            &OrgId::from(ORG),
            &ChatId::from("CHAT000001"),
        ))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(route.igsid, IGSID);
    let link: MessageLink = h
        .services
        .repo
        .get(&MessageLink::key_for(
            &OrgId::from(ORG),
            &IgAccountId::from(IG),
            &Mid::from("MID_TEXT_0001"),
        ))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (link.chat_id.as_str(), link.event_ids.clone()),
        ("CHAT000001", vec![EventId::from("THREAD0001_1")])
    );
    assert!(link.expires_at > start().timestamp());
}

#[tokio::test]
async fn later_messages_use_send_event_and_an_inactive_chat_is_resumed_with_the_message() {
    let h = Harness::new().await;
    h.deliver(&webhook(vec![text("M1", "first")])).await;
    h.work().await;
    h.deliver(&webhook(vec![text("M2", "second")])).await;
    assert!(h.work().await.is_empty());
    let sends = h.calls("send_event").await;
    assert_eq!(
        sends,
        vec![
            json!({"chat_id": "CHAT000001", "event": {"type": "message", "text": "second", "custom_id": "ig:M2"}})
        ]
    );

    // The thread closes (idle, or an agent ended it) without the bridge hearing of it.
    h.livechat.deactivate("CHAT000001");
    h.deliver(&webhook(vec![text("M3", "back again")])).await;
    assert!(h.work().await.is_empty());
    let resumes = h.calls("resume_chat").await;
    assert_eq!(
        resumes,
        vec![json!({"chat": {"id": "CHAT000001", "thread": {"events": [
        {"type": "message", "text": "back again", "custom_id": "ig:M3"}]}}, "continuous": true})]
    );
    assert_eq!(
        h.contact().await.unwrap().thread_id.as_deref(),
        Some("THREAD0002")
    );
    let link: MessageLink = h
        .services
        .repo
        .get(&MessageLink::key_for(
            &OrgId::from(ORG),
            &IgAccountId::from(IG),
            &Mid::from("M3"),
        ))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(link.event_ids, vec!["THREAD0002_1"]);
}

#[tokio::test]
async fn media_is_shown_from_its_cdn_url_and_never_downloaded() {
    // Meta's platform policy: store only the CDN URL of media customers send, never a copy.
    let h = Harness::new().await;
    let image = "https://lookaside.fbsbx.com/ig_messaging_cdn/?asset_id=18000000000000001&signature=EXAMPLE1";
    let video = "https://lookaside.fbsbx.com/ig_messaging_cdn/?asset_id=18000000000000002&signature=EXAMPLE2";
    h.deliver(&webhook(vec![inbound(
        "message",
        json!({"mid": "MID_MEDIA_0002", "attachments": [
        {"type": "image", "payload": {"url": image}},
        {"type": "video", "payload": {"url": video}}]}),
    )]))
    .await;
    assert!(h.work().await.is_empty());
    h.assert_nothing_refused();
    assert!(
        h.requests("upload_file").await.is_empty(),
        "nothing re-hosted"
    );
    let fetched: Vec<_> = h
        .graph
        .received_requests()
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.url.path().contains("cdn"))
        .collect();
    assert!(fetched.is_empty(), "nothing downloaded");
    let events = h.livechat.chat("CHAT000001").unwrap().events();
    assert_eq!(events.len(), 2);
    assert_eq!(events[0]["type"], "rich_message");
    assert_eq!(events[0]["elements"][0]["image"]["url"], image);
    assert_eq!(events[0]["custom_id"], "ig:MID_MEDIA_0002");
    assert_eq!(events[1]["elements"][0]["buttons"][0]["value"], video);
    assert_eq!(events[1]["custom_id"], "ig:MID_MEDIA_0002:1");
    let link: MessageLink = h
        .services
        .repo
        .get(&MessageLink::key_for(
            &OrgId::from(ORG),
            &IgAccountId::from(IG),
            &Mid::from("MID_MEDIA_0002"),
        ))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(link.event_ids.len(), 2);
}

#[tokio::test]
async fn the_same_webhook_three_times_plus_a_redelivery_makes_one_livechat_event() {
    let h = Harness::new().await;
    let body = webhook(vec![text("MID_TEXT_0001", "hi")]);
    for _ in 0..3 {
        assert_eq!(h.deliver(&body).await, StatusCode::OK);
    }
    assert_eq!(
        h.services.to_livechat.depth().await.unwrap(),
        1,
        "queue dedup"
    );
    // An SQS redelivery: the same job handled again after it was processed.
    let got = h
        .services
        .to_livechat
        .receive(10, Duration::from_millis(50))
        .await
        .unwrap();
    let job = QueuedJob::from(got[0].clone());
    let inbound = h.services.inbound();
    for _ in 0..2 {
        let failed = process_batch(
            &inbound,
            h.services.to_livechat.as_ref(),
            h.services.to_livechat_dlq.as_ref(),
            h.clock.now(),
            vec![job.clone()],
        )
        .await;
        assert!(failed.is_empty());
    }
    // And a Meta retry after the 5-minute dedup window.
    h.services.to_livechat.delete(&job.receipt).await.unwrap();
    h.clock.advance(chrono::Duration::minutes(10));
    h.deliver(&body).await;
    assert!(h.work().await.is_empty());
    assert_eq!(
        h.requests("start_chat").await.len() + h.requests("send_event").await.len(),
        1
    );
}

#[tokio::test]
async fn a_crash_after_livechat_accepted_does_not_duplicate_on_retry() {
    // Fails the first write of an event link, as if the worker crashed right after LiveChat
    // accepted the event.
    let store = Arc::new(FaultyStore::default());
    let h = Harness::with_store(store.clone()).await;
    h.deliver(&webhook(vec![text("M1", "first")])).await;
    assert!(h.work().await.is_empty());
    let mut armed = true;
    store.fail_when(move |op| {
        let hit = armed && *op == Op::Put(Some("event_link".into()));
        armed &= !hit;
        hit.then_some(FaultAt::Before)
    });
    h.deliver(&webhook(vec![text("M2", "second")])).await;
    let failed = h.work().await;
    assert_eq!(failed.len(), 1, "the crash is retried");
    assert_eq!(h.calls("send_event").await.len(), 1);
    // LiveChat now holds the event with our custom_id (the fake keeps the chat's events).
    h.clock.advance(chrono::Duration::minutes(5));
    assert!(h.work().await.is_empty());
    assert_eq!(h.calls("send_event").await.len(), 1, "no second send");
    let link: MessageLink = h
        .services
        .repo
        .get(&MessageLink::key_for(
            &OrgId::from(ORG),
            &IgAccountId::from(IG),
            &Mid::from("M2"),
        ))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(link.event_ids, vec!["THREAD0001_2"]);
    assert_eq!(h.livechat.chat("CHAT000001").unwrap().events().len(), 2);
}

#[tokio::test]
async fn unsend_deletes_the_bridged_event_and_an_unknown_mid_is_counted() {
    let h = Harness::new().await;
    h.deliver(&webhook(vec![text("MID_TEXT_0001", "oops")]))
        .await;
    h.work().await;
    h.deliver(&webhook(vec![inbound(
        "message",
        json!({"mid": "MID_TEXT_0001", "is_deleted": true}),
    )]))
    .await;
    h.deliver(&webhook(vec![inbound(
        "message",
        json!({"mid": "NEVER_SEEN", "is_deleted": true}),
    )]))
    .await;
    assert!(h.work().await.is_empty());
    assert_eq!(
        h.calls("delete_event").await,
        vec![
            json!({"chat_id": "CHAT000001", "thread_id": "THREAD0001", "event_id": "THREAD0001_1"})
        ]
    );
}

#[tokio::test]
async fn read_receipts_mark_events_seen_and_reactions_quote_the_message() {
    let h = Harness::new().await;
    h.deliver(&webhook(vec![text("MID_TEXT_0001", "Hi there")]))
        .await;
    h.work().await;
    h.deliver(&webhook(vec![
        inbound("read", json!({"mid": "MID_ECHO_0006"})),
        inbound("reaction", json!({"mid": "MID_TEXT_0001", "action": "react", "reaction": "love", "emoji": "\u{2764}\u{fe0f}"})),
    ])).await;
    assert!(h.work().await.is_empty());
    assert_eq!(
        h.calls("mark_events_as_seen").await,
        vec![json!({"chat_id": "CHAT000001", "seen_up_to": "2019-09-23T18:14:45.349000Z"})]
    );
    let sends = h.calls("send_event").await;
    assert_eq!(
        sends[0]["event"]["text"],
        "Reacted \u{2764}\u{fe0f} to \u{201c}Hi there\u{201d}"
    );
}

#[tokio::test]
async fn own_echoes_are_skipped_staff_echoes_shown_and_racing_echoes_wait() {
    let h = Harness::new().await;
    h.deliver(&webhook(vec![text("M1", "hello")])).await;
    h.work().await;
    let repo = &h.services.repo;
    repo.put(
        &MessageLink {
            organization_id: ORG.into(),
            ig_account_id: IG.into(),
            mid: "MID_SENT_0013".into(),
            chat_id: "CHAT000001".into(),
            thread_id: None,
            event_ids: vec!["THREAD0001_5".into()],
            event_threads: vec![],
            direction: Direction::Outbound,
            created_at: start(),
            expires_at: start().timestamp() + 100,
        },
        Condition::Always,
    )
    .await
    .unwrap();
    let echo = |mid: &str, t: &str| json!({"sender": {"id": IG}, "recipient": {"id": IGSID}, "timestamp": 1569262489800u64, "message": {"mid": mid, "text": t, "is_echo": true}});
    h.deliver(&webhook(vec![echo("MID_SENT_0013", "our reply")]))
        .await;
    h.deliver(&webhook(vec![echo("MID_STAFF_0014", "typed in the app")]))
        .await;
    assert!(h.work().await.is_empty());
    let sends = h.calls("send_event").await;
    assert_eq!(sends.len(), 1);
    assert_eq!(
        sends[0]["event"],
        json!({"type": "system_message", "system_message_type": "igbridge.notice",
        "text": "Sent from the Instagram app by your team:\ntyped in the app", "custom_id": "ig:MID_STAFF_0014"})
    );

    // A send in flight: its echo waits instead of being shown as a staff message.
    repo.put(
        &PendingSend {
            organization_id: ORG.into(),
            ig_account_id: IG.into(),
            igsid: IGSID.into(),
            livechat_event_id: "THREAD0001_7".into(),
            started_at: h.clock.now(),
            fingerprint: String::new(),
            attempts: 1,
            mid: None,
            expires_at: start().timestamp() + 3600,
            version: 0,
        },
        Condition::Always,
    )
    .await
    .unwrap();
    h.deliver(&webhook(vec![echo("MID_SENT_0015", "racing")]))
        .await;
    let env = h.next_inbound_job().await;
    let outcome = shared::worker::JobHandler::handle(
        &h.services.inbound(),
        &env,
        shared::outcome::Attempt::first(),
    )
    .await;
    assert!(
        matches!(outcome, Outcome::Retry { after: Some(_), .. }),
        "{outcome:?}"
    );
    assert_eq!(h.calls("send_event").await.len(), 1);
}

#[tokio::test]
async fn a_failed_profile_fetch_never_holds_back_the_message() {
    let h = Harness::new().await;
    Mock::given(method("GET")).and(path(format!("/v25.0/{IGSID}")))
        .respond_with(ResponseTemplate::new(400).set_body_json(json!({"error": {"message": "User consent is required", "type": "OAuthException", "code": 230}})))
        .with_priority(1).mount(&h.graph).await;
    h.deliver(&webhook(vec![text("M1", "hi")])).await;
    assert!(h.work().await.is_empty());
    assert_eq!(
        h.calls("update_customer").await[0]["name"],
        "Instagram user"
    );
    assert_eq!(h.calls("start_chat").await.len(), 1);
    assert!(
        h.contact().await.unwrap().profile_synced_at.is_none(),
        "tried again next time"
    );
}

#[tokio::test]
async fn a_refused_customer_token_is_renewed_once() {
    let h = Harness::new().await;
    h.deliver(&webhook(vec![text("M1", "hi")])).await;
    h.work().await;
    h.livechat
        .fail_next("send_event", fixture("livechat/authentication"), 1);
    h.deliver(&webhook(vec![text("M2", "again")])).await;
    assert!(h.work().await.is_empty());
    assert_eq!(h.calls("send_event").await.len(), 2);
    let grants = h.calls("/v2/customer/token").await;
    assert_eq!(
        grants.last().unwrap()["entity_id"],
        "00000000-0000-4000-8000-00000000c001"
    );
}

#[tokio::test]
async fn throttling_is_retried_and_holds_back_the_rest_of_the_conversation() {
    let h = Harness::new().await;
    h.deliver(&webhook(vec![text("M1", "hi")])).await;
    h.work().await;
    h.livechat
        .fail_next("send_event", fixture("livechat/too_many_requests"), 1);
    h.deliver(&webhook(vec![text("M2", "two"), text("M3", "three")]))
        .await;
    let failed = h.work().await;
    assert_eq!(
        failed.len(),
        2,
        "the failed job and the one after it in its group"
    );
    assert_eq!(h.calls("send_event").await.len(), 1);
    h.clock.advance(chrono::Duration::minutes(10));
    assert!(h.work().await.is_empty());
    let texts: Vec<_> = h
        .calls("send_event")
        .await
        .iter()
        .map(|b| b["event"]["text"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(texts, vec!["two", "two", "three"]);
    assert!(h.dlq().await.is_empty());
}

#[tokio::test]
async fn an_expired_agent_token_is_refreshed_and_a_refused_refresh_parks_the_job() {
    let h = Harness::new().await;
    h.livechat.expire_agent_token("dal:AGENT-A");
    h.clock.advance(chrono::Duration::hours(9));
    h.deliver(&webhook(vec![text("M1", "hi")])).await;
    assert!(h.work().await.is_empty());
    let refresh = h.requests("/v2/token").await;
    let form = String::from_utf8(refresh[0].body.clone()).unwrap();
    assert!(
        form.contains("grant_type=refresh_token")
            && form.contains("refresh_token=refresh-dal%3AAGENT-A"),
        "{form}"
    );
    let renewed = h.requests("/v2/customer/token").await[0].headers["authorization"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(renewed.starts_with("Bearer dal:ACCESS-"), "{renewed}");
    h.assert_nothing_refused();

    // Later the owner revokes the grant: the refresh is refused (`invalid_grant`), the job is
    // parked and the installation flagged.
    h.livechat.revoke("refresh-dal:AGENT-A");
    h.clock.advance(chrono::Duration::hours(9));
    let mut contact = h.contact().await.unwrap();
    contact.customer_token_expires_at = Some(h.clock.now());
    h.services
        .repo
        .put(&contact, Condition::Always)
        .await
        .unwrap();
    h.deliver(&webhook(vec![text("M2", "still there?")])).await;
    assert!(h.work().await.is_empty(), "parked, not failed");
    let parked = h.dlq().await;
    assert_eq!(parked.len(), 1);
    // Parked waiting for the repair: a re-authorization replays it (shared/tests/suite/health.rs).
    let why = parked[0].parked.as_ref().unwrap();
    assert_eq!(
        why.blocked,
        Some(shared::jobs::Blocked::ReauthorizationNeeded)
    );
    assert!(why.reason.contains("re-authorization"), "{}", why.reason);
    let inst = h.installation(ORG).await;
    assert_eq!(inst.status, InstallationStatus::ReauthRequired);
}

#[tokio::test]
async fn a_multi_entry_batch_reaches_each_tenant_with_its_own_tokens_only() {
    let h = Harness::new().await;
    let org_b = "00000000-0000-4000-8000-00000000a002";
    h.install(org_b, "17841400000000002", "dal:AGENT-B", "PAGE-TOKEN-B")
        .await;
    let body = json!({"object": "instagram", "entry": [
        {"id": IG, "time": 1, "messaging": [text("MA", "to A")]},
        {"id": "17841400000000002", "time": 2, "messaging": [
            {"sender": {"id": "IGSID_2002"}, "recipient": {"id": "17841400000000002"}, "timestamp": 2, "message": {"mid": "MB", "text": "to B"}}]}]});
    assert_eq!(h.deliver(&body).await, StatusCode::OK);
    assert!(h.work().await.is_empty());
    let grants: Vec<String> = h
        .requests("/v2/customer/token")
        .await
        .iter()
        .map(|r| r.headers["authorization"].to_str().unwrap().to_string())
        .collect();
    assert_eq!(grants.len(), 2);
    assert!(
        grants.contains(&"Bearer dal:AGENT-A".to_string())
            && grants.contains(&"Bearer dal:AGENT-B".to_string())
    );
    for r in h.requests("start_chat").await {
        let b: Value = serde_json::from_slice(&r.body).unwrap();
        let text = b["chat"]["thread"]["events"][0]["text"]
            .as_str()
            .unwrap()
            .to_string();
        let org = r
            .url
            .query()
            .unwrap()
            .trim_start_matches("organization_id=")
            .to_string();
        assert_eq!(org, if text == "to A" { ORG } else { org_b });
    }
    assert!(
        h.services
            .repo
            .get::<Contact>(&Contact::key_for(
                &OrgId::from(org_b),
                &IgAccountId::from("17841400000000002"),
                &Igsid::from("IGSID_2002")
            ))
            .await
            .unwrap()
            .is_some()
    );
    assert!(
        h.services
            .repo
            .get::<Contact>(&Contact::key_for(
                &OrgId::from(ORG),
                &IgAccountId::from("17841400000000002"),
                &Igsid::from("IGSID_2002")
            ))
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn the_lambda_adapter_reports_partial_batch_failures() {
    use aws_lambda_events::event::sqs::{SqsEvent, SqsMessage};
    let h = Harness::new().await;
    Mock::given(method("POST"))
        .and(path("/v2/customer/token"))
        .respond_with(
            ResponseTemplate::new(503).set_body_json(json!({"error": "temporarily_unavailable"})),
        )
        .with_priority(1)
        .mount(&h.livechat)
        .await;
    let job = |n: u32, group: &str, mid: &str| {
        let env = Envelope::new(
            Job::InstagramEvent(shared::jobs::InstagramEventJob {
                ig_account_id: IG.into(),
                igsid: group.into(),
                event_id: mid.into(),
                field: "messaging".into(),
                entry_time: None,
                item: json!({"sender": {"id": group}, "recipient": {"id": IG}, "timestamp": 1, "message": {"mid": mid, "text": "x"}}),
            }),
            start(),
        );
        let mut m = SqsMessage::default();
        m.message_id = Some(format!("msg-{n}"));
        m.receipt_handle = Some(format!("r-{n}"));
        m.body = Some(env.to_message().body);
        m.attributes.insert("MessageGroupId".into(), group.into());
        m.attributes
            .insert("ApproximateReceiveCount".into(), "1".into());
        m
    };
    let mut event = SqsEvent::default();
    event.records = vec![job(1, "G1", "A"), job(2, "G1", "B"), job(3, "G2", "C")];
    let res = shared::worker::handle_sqs_event(
        &h.services.inbound(),
        h.services.to_livechat.as_ref(),
        h.services.to_livechat_dlq.as_ref(),
        start(),
        event,
        None,
    )
    .await;
    let mut ids: Vec<_> = res
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.clone())
        .collect();
    ids.sort();
    assert_eq!(ids, vec!["msg-1", "msg-2", "msg-3"]);
}

#[tokio::test]
async fn every_documented_inbound_kind_is_posted_to_livechat() {
    let h = Harness::new().await;
    // A unicode-escaped body, signed over the bytes as sent.
    let escaped = format!(
        r#"{{"object":"instagram","entry":[{{"id":"{IG}","time":1569262486134,"messaging":[{{"sender":{{"id":"{IGSID}"}},"recipient":{{"id":"{IG}"}},"timestamp":1569262485349,"message":{{"mid":"MID_UNICODE","text":"\u00e4\u00f6\u00e5 \ud83d\ude00"}}}}]}}]}}"#
    );
    let (status, _) = h
        .post_webhook(
            &escaped,
            Some(sign(APP_SECRET.as_bytes(), escaped.as_bytes())),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let cases = every_inbound_kind();
    for (item, _) in &cases {
        h.deliver(&webhook(vec![item.clone()])).await;
    }
    // Standby items are bridged too.
    h.deliver(&json!({"object": "instagram", "entry": [{"id": IG, "time": 1, "standby": [inbound("message", json!({"mid": "MID_STANDBY_0012", "text": "hello?"}))]}]})).await;
    assert!(h.work().await.is_empty());

    let start = &h.calls("start_chat").await[0];
    assert_eq!(
        start["chat"]["thread"]["events"][0],
        json!({"type": "message", "text": "äöå 😀", "custom_id": "ig:MID_UNICODE"})
    );
    let sent: Vec<Value> = h
        .calls("send_event")
        .await
        .into_iter()
        .map(|b| b["event"].clone())
        .collect();
    assert_eq!(sent.len(), cases.len() + 1);
    for (i, (_, expected)) in cases.iter().enumerate() {
        let mut got = sent[i].clone();
        got.as_object_mut().unwrap().remove("custom_id");
        assert_eq!(&got, expected, "case {i}");
    }
    assert_eq!(sent[cases.len()]["text"], "hello?");
    let fields = h.calls("set_customer_session_fields").await;
    assert_eq!(
        fields[0]["session_fields"],
        json!([{"ig_referral_ref": "ad_ref_1"}, {"ig_referral_source": "ADS"}, {"ig_referral_type": "OPEN_THREAD"}, {"ig_ad_id": "AD_ID_0001"}, {"ig_ad_title": "Spring sale"}])
    );
    assert_eq!(
        fields[1]["session_fields"][0],
        json!({"ig_referral_ref": "campaign_spring"})
    );
}

fn at(ms: i64, kind: &str, body: Value) -> Value {
    json!({"sender": {"id": IGSID}, "recipient": {"id": IG}, "timestamp": ms, kind: body})
}

#[tokio::test]
async fn the_reply_window_counts_from_the_last_message_not_reactions_edits_postbacks_or_referrals()
{
    let h = Harness::new().await;
    let t0: i64 = 1_772_366_400_000; // 2026-03-01T12:00:00Z
    let day = 24 * 3600 * 1000;
    h.deliver(&webhook(vec![at(
        t0,
        "message",
        json!({"mid": "M1", "text": "hello"}),
    )]))
    .await;
    assert!(h.work().await.is_empty());
    h.deliver(&webhook(vec![
        at(
            t0 + 2 * day,
            "reaction",
            json!({"mid": "M1", "action": "react", "reaction": "love"}),
        ),
        at(
            t0 + 3 * day,
            "message_edit",
            json!({"mid": "M1", "text": "hello!", "num_edit": 1}),
        ),
        at(
            t0 + 4 * day,
            "postback",
            json!({"mid": "P1", "title": "Track", "payload": "TRACK"}),
        ),
        at(
            t0 + 5 * day,
            "referral",
            json!({"ref": "spring", "source": "SHORTLINK", "type": "OPEN_THREAD"}),
        ),
    ]))
    .await;
    assert!(h.work().await.is_empty());
    let last = h.contact().await.unwrap().last_customer_message_at.unwrap();
    assert_eq!(
        last.timestamp_millis(),
        t0,
        "only the message opens the window"
    );
    h.deliver(&webhook(vec![at(
        t0 + 6 * day,
        "message",
        json!({"mid": "M2", "text": "anyone?"}),
    )]))
    .await;
    assert!(h.work().await.is_empty());
    let last = h.contact().await.unwrap().last_customer_message_at.unwrap();
    assert_eq!(last.timestamp_millis(), t0 + 6 * day);
}

/// The agent-side `incoming_chat` LiveChat sends when an agent starts a new thread.
fn incoming_chat(chat: &str, thread: &str, events: Vec<Value>) -> Value {
    json!({"webhook_id": "WEBHOOK_ID_0002", "secret_key": "lc-webhook-secret", "action": "incoming_chat",
           "organization_id": ORG, "payload": {"chat": {"id": chat, "users": [], "properties": {},
           "thread": {"id": thread, "active": true, "events": events, "user_ids": [], "properties": {},
                      "access": {"group_ids": [0]}, "created_at": "2026-03-01T12:10:00.000000Z"}}},
           "additional_data": {"chat_properties": {}, "chat_presence_user_ids": []}})
}

#[tokio::test]
async fn a_thread_an_agent_reopened_takes_the_next_message_instead_of_parking_it() {
    let h = Harness::new().await;
    h.deliver(&webhook(vec![text("M1", "first")])).await;
    assert!(h.work().await.is_empty());
    // The thread closed and the bridge heard of it...
    h.livechat.deactivate("CHAT000001");
    let mut contact = h.contact().await.unwrap();
    contact.thread_active = Some(false);
    h.services
        .repo
        .put(&contact, Condition::Always)
        .await
        .unwrap();
    // ...then an agent reopened the chat; the bridge missed the incoming_chat.
    let reopened = h.livechat.agent_starts_thread("CHAT000001");
    h.deliver(&webhook(vec![text("M2", "are you there?")]))
        .await;
    assert!(h.work().await.is_empty(), "delivered, not failed");
    assert!(h.dlq().await.is_empty(), "nothing parked");
    let chat = h.livechat.chat("CHAT000001").unwrap();
    let last = chat.threads.last().unwrap();
    assert_eq!(last.id, reopened);
    assert_eq!(last.events.len(), 1);
    assert_eq!(last.events[0]["custom_id"], "ig:M2");
    let link: MessageLink = h
        .services
        .repo
        .get(&MessageLink::key_for(
            &OrgId::from(ORG),
            &IgAccountId::from(IG),
            &Mid::from("M2"),
        ))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        link.events(),
        vec![(
            ThreadId::from(reopened.clone()),
            EventId::from(last.events[0]["id"].as_str().unwrap())
        )]
    );
    assert_eq!(
        h.contact().await.unwrap().thread_id,
        Some(ThreadId::from(reopened))
    );
}

#[tokio::test]
async fn unsend_deletes_in_the_thread_the_message_was_posted_to() {
    let h = Harness::new().await;
    h.deliver(&webhook(vec![text("M1", "first")])).await;
    assert!(h.work().await.is_empty());
    // An agent starts a new thread; LiveChat tells the bridge with incoming_chat.
    let thread = h.livechat.agent_starts_thread("CHAT000001");
    assert_eq!(
        h.post_livechat(&incoming_chat("CHAT000001", &thread, vec![]))
            .await,
        StatusCode::OK
    );
    assert!(h.work_outbound().await.is_empty());
    h.deliver(&webhook(vec![text("M2", "oops, wrong photo")]))
        .await;
    assert!(h.work().await.is_empty());
    assert_eq!(
        h.livechat
            .chat("CHAT000001")
            .unwrap()
            .threads
            .last()
            .unwrap()
            .events
            .len(),
        1
    );
    h.deliver(&webhook(vec![at(
        1569262499000,
        "message",
        json!({"mid": "M2", "is_deleted": true}),
    )]))
    .await;
    assert!(h.work().await.is_empty());
    h.assert_nothing_refused();
    let chat = h.livechat.chat("CHAT000001").unwrap();
    assert!(
        chat.threads.last().unwrap().events.is_empty(),
        "the event is gone from its thread"
    );
    assert_eq!(chat.deleted.len(), 1);
    assert_eq!(chat.deleted[0]["custom_id"], "ig:M2");
}

#[tokio::test]
async fn an_unsend_livechat_no_longer_has_is_counted_not_taken_as_done() {
    let h = Harness::new().await;
    h.deliver(&webhook(vec![text("M1", "first")])).await;
    assert!(h.work().await.is_empty());
    h.livechat
        .fail_next("delete_event", fixture("livechat/not_found_event"), 1);
    h.deliver(&webhook(vec![at(
        1569262499000,
        "message",
        json!({"mid": "M1", "is_deleted": true}),
    )]))
    .await;
    let got = h
        .services
        .to_livechat
        .receive(10, Duration::from_millis(50))
        .await
        .unwrap();
    assert_eq!(got.len(), 1);
    let envelope = h.open(&got[0].body).await;
    let outcome = shared::worker::JobHandler::handle(
        &h.services.inbound(),
        &envelope,
        shared::outcome::Attempt::first(),
    )
    .await;
    assert_eq!(
        outcome,
        Outcome::Skipped("unsend: events already gone from LiveChat")
    );
}

#[tokio::test]
async fn livechat_refusals_are_parked_with_livechats_reason_and_faults_retried() {
    // Permanent refusals (the customer may not act in the chat; a plan limit) are parked for a
    // human with LiveChat's own words; LiveChat's internal errors are retried.
    for (name, reason) in [
        ("livechat/authorization", "Authorization error"),
        ("livechat/chat_limit_reached", "Limit reached"),
    ] {
        let h = Harness::new().await;
        h.deliver(&webhook(vec![text("M1", "first")])).await;
        assert!(h.work().await.is_empty());
        h.livechat.fail_next("send_event", fixture(name), 1);
        h.deliver(&webhook(vec![text("M2", "second")])).await;
        assert!(h.work().await.is_empty(), "{name}: parked, not failed");
        let parked = h.dlq().await;
        assert_eq!(parked.len(), 1, "{name}");
        assert!(
            parked[0].parked.as_ref().unwrap().reason.contains(reason),
            "{name}: {:?}",
            parked[0].parked
        );
    }
    let h = Harness::new().await;
    h.deliver(&webhook(vec![text("M1", "first")])).await;
    assert!(h.work().await.is_empty());
    h.livechat
        .fail_next("send_event", fixture("livechat/internal"), 1);
    h.deliver(&webhook(vec![text("M2", "second")])).await;
    assert_eq!(h.work().await.len(), 1, "retried through the queue");
    h.clock.advance(chrono::Duration::minutes(10));
    assert!(h.work().await.is_empty());
    assert!(h.dlq().await.is_empty());
    let texts: Vec<_> = h
        .livechat
        .chat("CHAT000001")
        .unwrap()
        .events()
        .iter()
        .map(|e| e["text"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(texts, vec!["first", "second"], "delivered once, in order");
}

#[tokio::test]
async fn a_refused_client_secret_is_retried_without_flagging_the_tenant_and_the_rotation_loses_nothing()
 {
    let mut h = Harness::new().await;
    // The operator regenerated the secret in LiveChat but has not deployed it yet.
    h.livechat.rotate_client_secret("lc-client-secret-2");
    h.livechat.expire_agent_token("dal:AGENT-A");
    h.clock.advance(chrono::Duration::hours(9));
    h.deliver(&webhook(vec![text("M1", "hi")])).await;
    assert_eq!(h.work().await.len(), 1, "retried, not parked");
    assert!(h.dlq().await.is_empty());
    let inst = h.installation(ORG).await;
    assert_eq!(
        inst.status,
        InstallationStatus::Active,
        "the tenant did nothing wrong"
    );

    // Deployed as docs/operations.md says: the new value current, the old one previous.
    h.services.config.livechat_client_secret = RotatingSecret::new(
        "lc-client-secret-2".to_string().into(),
        Some(CLIENT_SECRET.to_string().into()),
    );
    h.clock.advance(chrono::Duration::minutes(5));
    assert!(h.work().await.is_empty());
    let chat = &h.livechat.chats()[0];
    assert_eq!(chat.events().len(), 1, "delivered once");

    // Before LiveChat is rotated, the previous value still works (the current one is tried first).
    h.livechat.rotate_client_secret(CLIENT_SECRET);
    h.clock.advance(chrono::Duration::hours(9));
    let mut contact = h.contact().await.unwrap();
    contact.customer_token_expires_at = Some(h.clock.now());
    h.services
        .repo
        .put(&contact, Condition::Always)
        .await
        .unwrap();
    h.deliver(&webhook(vec![text("M2", "again")])).await;
    assert!(h.work().await.is_empty());
    assert_eq!(h.livechat.chats()[0].events().len(), 2);
}

/// A message LiveChat refused (parked for a human) and then unsent by the customer is never
/// posted: the unsend finds nothing to delete and is remembered on the message's claim, so the
/// replay that later moves the parked job skips it. Privacy policy: "unsend honoured".
#[tokio::test]
async fn a_parked_message_the_customer_unsent_is_not_posted_by_its_replay() {
    let h = Harness::new().await;
    h.deliver(&webhook(vec![text("M1", "first")])).await;
    assert!(h.work().await.is_empty());
    h.livechat
        .fail_next("send_event", fixture("livechat/authorization"), 1);
    h.deliver(&webhook(vec![text("M2", "regretted")])).await;
    assert!(h.work().await.is_empty(), "parked, not failed");
    let unsend = inbound("message", json!({"mid": "M2", "is_deleted": true}));
    h.deliver(&webhook(vec![unsend])).await;
    assert!(h.work().await.is_empty());
    // The admin replays what is parked, once LiveChat accepts again.
    let asked =
        shared::health::ask_replay(&h.services.repo, &OrgId::from(ORG), h.clock.now()).await;
    assert_eq!(asked.unwrap(), shared::health::ReplayAsked::Accepted);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let replayed = h.services.health().serve_replays(None, deadline).await;
    assert_eq!(replayed.unwrap().replayed, 1, "the parked job moved back");
    assert!(h.work().await.is_empty());
    let shown: Vec<String> = h.livechat.chats()[0]
        .events()
        .iter()
        .map(|e| e.to_string())
        .collect();
    assert!(
        !shown.iter().any(|e| e.contains("regretted")),
        "the unsent message was posted: {shown:#?}"
    );
    let deleted = &h.livechat.chats()[0].deleted;
    assert!(deleted.is_empty(), "posted, then deleted: {deleted:?}");
    assert!(shown.iter().any(|e| e.contains("first")));
    assert!(h.dlq().await.is_empty(), "skipped, not parked again");
}
