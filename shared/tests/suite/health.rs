//! Connection health against the strict fakes: the hourly check re-subscribes a Page whose
//! subscription vanished, finds a Page token Meta invalidated (the connection turns broken, the
//! admin is told, the next chat gets one notice, replies are parked waiting for the repair),
//! refreshes a LiveChat token ahead of its expiry and marks a refused grant; the status page
//! (LiveChat sign-in, admins only, no cookies) shows it all, and reconnecting replays exactly
//! that installation's parked jobs, in order, once.

use shared::ids::{IgAccountId, OrgId};
use testkit::bridge;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use bridge::*;
use http_body_util::BodyExt;
use serde_json::{Value, json};
use shared::clock::Clock;
use shared::connection::records::{
    Activity, Backlog, ConnectionHealth, SubscriptionState, TokenState,
};
use shared::domain::*;
use shared::events::{LifecycleKind, MemoryPublisher};
use shared::health::check::HealthReport;
use shared::jobs::{Blocked, Wire};
use shared::metrics::Metrics;
use shared::store::keys;
use tower::ServiceExt;

const ORG2: &str = "00000000-0000-4000-8000-00000000a002";
const IG2: &str = "17841400000000002";
const CHAT2: &str = "CHAT000002";
const PAGE: &str = "PAGE-17841400000000001";
const ADMIN: &str = "00000000-0000-4000-8000-00000000b0ad";
const AGENT: &str = "00000000-0000-4000-8000-00000000b0ag";
const SCOPES: &str = "chats--all:rw,customers:own,agents--all:ro";

async fn harness() -> (Harness, Arc<MemoryPublisher>) {
    let mut h = ready(Some(chrono::Duration::hours(1))).await;
    let events = Arc::new(MemoryPublisher::default());
    h.services.events = events.clone();
    h.services.metrics = Metrics::captured("test");
    (h, events)
}

fn soon() -> Instant {
    Instant::now() + Duration::from_secs(60)
}

async fn run(h: &Harness) -> HealthReport {
    h.services.health().run(soon()).await.unwrap()
}

fn kinds(events: &MemoryPublisher) -> Vec<LifecycleKind> {
    events.published().iter().map(|e| e.kind).collect()
}

async fn health_of(h: &Harness, org: &str, ig: &str) -> ConnectionHealth {
    h.services
        .repo
        .get(&keys::connection_health(
            &OrgId::from(org),
            &IgAccountId::from(ig),
        ))
        .await
        .unwrap()
        .expect("a health record")
}

async fn connection(h: &Harness, org: &str, ig: &str) -> InstagramConnection {
    h.services
        .repo
        .get(&InstagramConnection::key_for(
            &OrgId::from(org),
            &IgAccountId::from(ig),
        ))
        .await
        .unwrap()
        .unwrap()
}

async fn backlog(h: &Harness, org: &str) -> Backlog {
    h.services
        .repo
        .get(&keys::backlog(&OrgId::from(org)))
        .await
        .unwrap()
        .unwrap_or_else(|| Backlog::new(&OrgId::from(org)))
}

/// Every body in a dead-letter queue, left in place (received, then made visible again).
async fn parked(q: &dyn shared::queue::Queue) -> Vec<Wire> {
    let mut out = Vec::new();
    let mut receipts = Vec::new();
    loop {
        let got = q.receive(10, Duration::from_millis(20)).await.unwrap();
        if got.is_empty() {
            break;
        }
        for m in got {
            out.push(Wire::decode(&m.body).unwrap());
            receipts.push(m.receipt);
        }
    }
    for r in receipts {
        q.retry_later(&r, Duration::ZERO).await.unwrap();
    }
    out
}

fn org_of(w: &Wire) -> String {
    match w {
        Wire::Sealed(s) => s.organization_id.to_string(),
        Wire::Plain(_) => String::new(),
    }
}

#[tokio::test]
async fn a_page_whose_subscription_vanished_is_resubscribed_by_the_next_run() {
    let (h, events) = harness().await;
    let first = run(&h).await;
    assert_eq!((first.connections, first.resubscribed), (1, 0));
    assert_eq!(
        health_of(&h, ORG, IG).await.subscription,
        SubscriptionState::Subscribed
    );

    h.graph.drop_subscription(PAGE);
    let report = run(&h).await;
    assert_eq!(report.resubscribed, 1, "{report:?}");
    let fields = h.graph.subscription(PAGE).expect("subscribed again");
    assert_eq!(fields, shared::instagram::graph::SUBSCRIBED_FIELDS);
    let health = health_of(&h, ORG, IG).await;
    assert_eq!(health.subscription, SubscriptionState::Resubscribed);
    assert_eq!(health.token, TokenState::Valid);
    assert!(health.repair.unwrap().contains("subscription"));
    assert!(kinds(&events).contains(&LifecycleKind::Repaired));
    // Told once: the next run finds it subscribed.
    assert_eq!(run(&h).await.resubscribed, 0);
    let lines = h.services.metrics.lines().join("\n");
    assert!(lines.contains("\"HealthRepairs\":1.0"), "{lines}");
    h.assert_nothing_refused();
}

#[tokio::test]
async fn a_livechat_token_due_to_expire_is_refreshed_ahead_of_time_and_a_refused_one_is_marked() {
    let (h, events) = harness().await;
    // The token lasts 8 h: nothing to do at first.
    assert_eq!(run(&h).await.refreshed, 0);
    assert_eq!(h.livechat.refreshes(), 0);
    h.clock.advance(chrono::Duration::hours(7));
    let report = run(&h).await;
    assert_eq!(report.refreshed, 1, "{report:?}");
    assert_eq!(h.livechat.refreshes(), 1);
    let inst = h.installation(ORG).await;
    assert_eq!(
        inst.access_token_expires_at,
        Some(h.clock.now() + chrono::Duration::hours(8))
    );
    assert_eq!(run(&h).await.refreshed, 0, "fresh again");

    // The refresh token is revoked by the license owner: the next due refresh is refused.
    h.livechat.revoke("refresh-dal:AGENT-A");
    h.clock.advance(chrono::Duration::hours(7));
    let report = run(&h).await;
    assert_eq!(report.reauthorization_needed, 1, "{report:?}");
    assert_eq!(
        h.installation(ORG).await.status,
        InstallationStatus::ReauthRequired
    );
    assert!(kinds(&events).contains(&LifecycleKind::ReauthorizationNeeded));

    // Inbound messages meanwhile wait, parked for the repair.
    let (mid1, mid2) = ("mid.reauth.1", "mid.reauth.2");
    for mid in [mid1, mid2] {
        assert_eq!(
            h.deliver(&webhook(vec![text(mid, "hello")])).await,
            StatusCode::OK
        );
    }
    h.work().await;
    let dlq = parked(h.services.to_livechat_dlq.as_ref()).await;
    assert_eq!(dlq.len(), 2);
    assert!(
        dlq.iter()
            .all(|w| w.parked().unwrap().blocked == Some(Blocked::ReauthorizationNeeded))
    );

    // An administrator signs in to the status page: that renews the grant, and the jobs go.
    let tab = Tab::new();
    let page = sign_in(&h, &tab, ADMIN, "administrator").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert_eq!(h.installation(ORG).await.status, InstallationStatus::Active);
    assert!(kinds(&events).contains(&LifecycleKind::Repaired));
    let replayed = h
        .services
        .health()
        .replay_requested(&OrgId::from(ORG), soon())
        .await
        .unwrap();
    assert_eq!(replayed.unwrap().replayed, 2);
    h.work().await;
    let chat = h.livechat.chat(CHAT).unwrap();
    let texts: Vec<String> = chat
        .events()
        .iter()
        .filter(|e| e["type"] == "message")
        .map(|e| e["custom_id"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(texts.len(), 2, "{texts:?}");
    assert!(
        texts[0].contains(mid1) && texts[1].contains(mid2),
        "in order: {texts:?}"
    );
    assert!(parked(h.services.to_livechat_dlq.as_ref()).await.is_empty());
}

#[tokio::test]
async fn a_broken_token_is_found_shown_and_reconnecting_replays_exactly_its_jobs_in_order() {
    let (h, events) = harness().await;
    // A second organization, broken too, whose parked reply must stay where it is.
    h.install(ORG2, IG2, "dal:AGENT-B", "PAGE-TOKEN-B").await;
    h.seed_contact(
        ORG2,
        IG2,
        "IGSID_2001",
        CHAT2,
        Some(chrono::Duration::hours(1)),
    )
    .await;
    h.graph.invalidate_page_token(PAGE);
    h.graph.invalidate_page_token(&format!("PAGE-{IG2}"));

    let report = run(&h).await;
    assert_eq!(report.broken, 2, "{report:?}");
    assert_eq!(
        connection(&h, ORG, IG).await.status,
        ConnectionStatus::Broken
    );
    let health = health_of(&h, ORG, IG).await;
    assert_eq!(health.token, TokenState::Invalid);
    assert!(health.problem.unwrap().contains("password"));
    assert!(kinds(&events).contains(&LifecycleKind::ConnectionBroken));
    assert_eq!(run(&h).await.broken, 0, "told once");

    // Agents answer meanwhile: the replies wait, and the chat gets one notice, not one per reply.
    for (i, t) in ["first", "second", "third"].iter().enumerate() {
        let status = h.post_livechat(&text_event(&format!("EV{i}"), t)).await;
        assert_eq!(status, StatusCode::OK);
    }
    let other = agent_event_in(
        CHAT2,
        "THREAD0001",
        "EVX",
        json!({"type": "message", "text": "other org"}),
    );
    let mut other = other;
    other["organization_id"] = json!(ORG2);
    h.post_livechat(&other).await;
    h.work_outbound().await;
    assert!(
        h.graph.sent().is_empty(),
        "nothing reaches Instagram while broken"
    );
    let notices: Vec<Value> = h
        .livechat
        .chat(CHAT)
        .unwrap()
        .events()
        .into_iter()
        .filter(|e| e["system_message_type"] == "igbridge.notice")
        .collect();
    assert_eq!(notices.len(), 1, "{notices:?}");
    assert!(
        notices[0]["text"]
            .as_str()
            .unwrap()
            .contains("https://bridge.example.com/status")
    );
    let dlq = parked(h.services.to_instagram_dlq.as_ref()).await;
    assert_eq!(dlq.len(), 4);
    assert_eq!(backlog(&h, ORG).await.parked_blocked, 3);

    // The admin signs in: the page shows the broken connection and the parked replies.
    let tab = Tab::new();
    let page = sign_in(&h, &tab, ADMIN, "administrator").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(
        page.body.contains("Broken") && page.body.contains("refused by Facebook"),
        "{}",
        page.body
    );
    assert!(
        page.body
            .contains("3 messages</span>, 3 of them waiting for a repair"),
        "{}",
        page.body
    );

    // Reconnect: Facebook Login gives the Page its new token; the jobs of ORG alone go, in order.
    let session = hidden(&page.body, "state");
    let done = reconnect(&h, &tab, &session).await;
    assert_eq!(done.status, StatusCode::OK, "{}", done.body);
    assert_eq!(
        connection(&h, ORG, IG).await.status,
        ConnectionStatus::Connected
    );
    assert!(backlog(&h, ORG).await.replay_requested_at.is_some());

    let replayed = h
        .services
        .health()
        .replay_requested(&OrgId::from(ORG), soon())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (replayed.replayed, replayed.complete),
        (3, true),
        "{replayed:?}"
    );
    h.work_outbound().await;
    let sent: Vec<String> = h
        .graph
        .sent()
        .iter()
        .map(|s| {
            s.body["message"]["text"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .collect();
    assert_eq!(sent, ["first", "second", "third"]);
    let left = parked(h.services.to_instagram_dlq.as_ref()).await;
    assert_eq!(left.len(), 1, "the other organization's job stays");
    assert_eq!(org_of(&left[0]), ORG2);
    let b = backlog(&h, ORG).await;
    assert_eq!((b.parked, b.parked_blocked, b.replayed), (0, 0, 3));
    assert!(b.replay_requested_at.is_none());
    // Once: nothing is replayed again.
    assert!(
        h.services
            .health()
            .replay_requested(&OrgId::from(ORG), soon())
            .await
            .unwrap()
            .is_none()
    );
    h.work_outbound().await;
    assert_eq!(h.graph.sent().len(), 3);
    let lines = h.services.metrics.lines().join("\n");
    println!("EMF lines written:\n{lines}");
    for name in [
        "\"Parked\":",
        "\"MessagesBridged\":",
        "\"DeliveryLatency\":",
        "\"Replayed\":3.0",
        "\"ConnectionsBroken\":2.0",
    ] {
        assert!(lines.contains(name), "{name} in {lines}");
    }
}

#[tokio::test]
async fn the_status_page_is_for_admins_of_an_installed_organization_and_its_session_is_bound() {
    let (h, _) = harness().await;
    let tab = Tab::new();
    let page = sign_in(&h, &tab, AGENT, "normal").await;
    assert_eq!(page.status, StatusCode::FORBIDDEN, "{}", page.body);
    assert!(
        !page.body.contains("shop"),
        "nothing of the organization shown"
    );

    let page = sign_in(&h, &tab, ADMIN, "administrator").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("@shop") && page.body.contains("Connected"));
    let session = hidden(&page.body, "state");
    // Another tab (a forwarded page) cannot use the session.
    let thief = Tab::new();
    let refused = post_status(&h, &thief, &session, "disconnect", IG).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert_eq!(
        connection(&h, ORG, IG).await.status,
        ConnectionStatus::Connected
    );
    // After 15 minutes the session is over.
    h.clock.advance(chrono::Duration::minutes(16));
    let late = post_status(&h, &tab, &session, "disconnect", IG).await;
    assert_eq!(late.status, StatusCode::UNAUTHORIZED);
    // A fresh sign-in disconnects: unsubscribed, token wiped, purge scheduled.
    run(&h).await;
    h.deliver(&webhook(vec![text("mid.before.disconnect", "hi")]))
        .await;
    h.work().await;
    let page = sign_in(&h, &tab, ADMIN, "administrator").await;
    let done = post_status(&h, &tab, &hidden(&page.body, "state"), "disconnect", IG).await;
    assert_eq!(done.status, StatusCode::OK);
    assert!(done.body.contains("was disconnected"));
    let conn = connection(&h, ORG, IG).await;
    assert_eq!(conn.status, ConnectionStatus::Disconnected);
    assert!(conn.page_token.is_none());
    assert_eq!(h.graph.subscription(PAGE), None);
    h.assert_nothing_refused();
    // The account's purge takes its health records too (its check, its activity).
    let account_records = |keys: Vec<shared::store::Key>| -> Vec<String> {
        keys.into_iter()
            .filter(|k| keys::is_account_health(k, &OrgId::from(ORG), &IgAccountId::from(IG)))
            .map(|k| k.sk)
            .collect()
    };
    let before = h
        .services
        .repo
        .store()
        .query_organization(ORG, Default::default())
        .await
        .unwrap()
        .items;
    assert_eq!(
        account_records(before).len(),
        2,
        "health and inbound activity"
    );
    let lifecycle = h.services.lifecycle();
    let week = h.clock.now() + chrono::Duration::days(7);
    lifecycle.sweep(week, false).await.unwrap();
    let after = h
        .services
        .repo
        .store()
        .query_organization(ORG, Default::default())
        .await
        .unwrap()
        .items;
    assert_eq!(account_records(after), Vec::<String>::new());
}

#[tokio::test]
async fn a_busy_account_gone_silent_is_noticed_once() {
    let (h, _) = harness().await;
    let now = h.clock.now();
    let mut activity = Activity {
        organization_id: ORG.into(),
        ig_account_id: IG.into(),
        direction: Direction::Inbound,
        last_at: now - chrono::Duration::days(5),
        days: vec![],
        expires_at: None,
    };
    for d in 5..=9 {
        activity.note(now - chrono::Duration::days(d));
    }
    h.services
        .repo
        .put(&activity, shared::store::Condition::Always)
        .await
        .unwrap();
    assert_eq!(run(&h).await.silent, 1);
    assert!(health_of(&h, ORG, IG).await.silence_noted_at.is_some());
    assert_eq!(run(&h).await.silent, 0, "once per silence");
}

/// A Page token lacking `pages_messaging` (no Instagram messaging call needs it) was called
/// broken and replies stopped; now only an invalid token or one lacking
/// `instagram_manage_messages` breaks a connection — and not even that when Instagram accepted
/// a reply in the last day. Other missing permissions show as a warning.
#[tokio::test]
async fn a_token_that_lacks_a_permission_replies_do_not_need_never_breaks_the_connection() {
    let (h, events) = harness().await;
    h.graph.decline(PAGE, &["pages_messaging"]);
    let report = run(&h).await;
    assert_eq!(report.broken, 0, "{report:?}");
    assert_eq!(
        connection(&h, ORG, IG).await.status,
        ConnectionStatus::Connected
    );
    let health = health_of(&h, ORG, IG).await;
    assert_eq!(health.token, TokenState::Limited);
    assert!(
        health
            .problem
            .as_deref()
            .unwrap()
            .contains("pages_messaging"),
        "{health:?}"
    );
    assert!(!kinds(&events).contains(&LifecycleKind::ConnectionBroken));
    h.post_livechat(&text_event("EV-STILL", "still answered"))
        .await;
    h.work_outbound().await;
    assert_eq!(h.graph.sent().len(), 1, "replies go out");

    // Lacking the permission replies need, with a reply accepted within the day: still working.
    h.graph.decline(PAGE, &["instagram_manage_messages"]);
    assert_eq!(run(&h).await.broken, 0);
    let health = health_of(&h, ORG, IG).await;
    assert!(
        health
            .problem
            .as_deref()
            .unwrap()
            .contains("accepted a reply"),
        "{health:?}"
    );
    // A day later with no reply since: broken, told once.
    h.clock.advance(chrono::Duration::hours(25));
    assert_eq!(run(&h).await.broken, 1);
    assert_eq!(
        connection(&h, ORG, IG).await.status,
        ConnectionStatus::Broken
    );
    assert!(kinds(&events).contains(&LifecycleKind::ConnectionBroken));
}

/// Only a message Instagram accepted proves the connection works: a read receipt Meta refused
/// (it also ends as "done" for the worker) is no proof, and writes no outbound activity.
#[tokio::test]
async fn a_refused_send_is_no_proof_that_the_connection_works() {
    let (h, _) = harness().await;
    h.graph.fail_next(
        "POST",
        "messages",
        testkit::fixture("meta/error_100_param_value"),
        1,
    );
    let seen = json!({"secret_key": "lc-webhook-secret", "action": "events_marked_as_seen", "organization_id": ORG,
        "payload": {"user_id": "agent1@example.com", "chat_id": CHAT, "seen_up_to": "2026-03-01T12:00:00.000000Z"}, "additional_data": {}});
    h.post_livechat(&seen).await;
    assert!(h.work_outbound().await.is_empty());
    let key = Activity::key_for(
        &OrgId::from(ORG),
        &IgAccountId::from(IG),
        Direction::Outbound,
    );
    let written: Option<Activity> = h.services.repo.get(&key).await.unwrap();
    assert!(written.is_none(), "{written:?}");
    h.graph.decline(PAGE, &["instagram_manage_messages"]);
    assert_eq!(run(&h).await.broken, 1, "no proof: broken");
}

/// The Replay button cannot be used to run up executions: twenty presses at once (several tabs,
/// a script) are accepted once and publish one event; a run started by an event never waits
/// for the replay lease (it leaves the request to the holder); a minute's cooldown follows.
#[tokio::test]
async fn a_burst_of_replay_requests_is_accepted_once_and_starts_one_run() {
    let (h, events) = harness().await;
    let replays = |events: &MemoryPublisher| {
        kinds(events)
            .into_iter()
            .filter(|k| *k == LifecycleKind::ReplayRequested)
            .count()
    };
    let tab = Tab::new();
    let page = sign_in(&h, &tab, ADMIN, "administrator").await;
    let session = hidden(&page.body, "state");
    // Nothing parked: nothing to replay, no event.
    let answer = post_status(&h, &tab, &session, "replay", "").await;
    assert!(answer.body.contains("nothing to replay"), "{}", answer.body);
    assert_eq!(replays(&events), 0);

    // A reply Meta refuses for good is parked for a human.
    h.graph.fail_next(
        "POST",
        "messages",
        testkit::fixture("meta/error_100_param_value"),
        1,
    );
    h.post_livechat(&text_event("EV-REFUSED", "refused once"))
        .await;
    h.work_outbound().await;
    assert_eq!(backlog(&h, ORG).await.parked, 1);

    let presses = (0..20).map(|_| post_status(&h, &tab, &session, "replay", ""));
    let answers = futures_util::future::join_all(presses).await;
    let accepted = answers
        .iter()
        .filter(|a| a.body.contains("Replay requested"))
        .count();
    let pending = answers
        .iter()
        .filter(|a| a.body.contains("A replay is already pending"))
        .count();
    assert_eq!((accepted, pending), (1, 19));
    assert_eq!(replays(&events), 1, "one event, one run");
    assert!(
        !answers[0].body.contains("Replay parked messages"),
        "no button while a replay is pending"
    );

    // The run the event starts finds the lease held (by the hourly run, say): it does not wait,
    // and leaves the request to the holder, which serves it before it lets go.
    let health = h.services.health();
    let holder = shared::health::replay::take_lease(&h.services.repo, &h.clock)
        .await
        .unwrap()
        .unwrap();
    let input = shared::health::check::HealthInput::Replay(ORG.into());
    let deferred = health.handle(&input, soon()).await.unwrap();
    assert_eq!((deferred.replayed, deferred.replays_left), (0, 1));
    shared::health::replay::release_lease(&h.services.repo, &h.clock, &holder).await;
    let served = health.serve_replays(None, soon()).await.unwrap();
    assert_eq!((served.replayed, served.replays_left), (1, 0));
    assert!(backlog(&h, ORG).await.replay_requested_at.is_none());
    h.work_outbound().await;
    let sent = h.graph.sent();
    assert_eq!(sent.len(), 1, "the replayed reply went");

    // Parked again at once: the next request within a minute of the last is refused.
    h.graph.fail_next(
        "POST",
        "messages",
        testkit::fixture("meta/error_100_param_value"),
        1,
    );
    h.post_livechat(&text_event("EV-REFUSED-2", "refused again"))
        .await;
    h.work_outbound().await;
    let soon_after = post_status(&h, &tab, &session, "replay", "").await;
    assert!(
        soon_after.body.contains("less than a minute ago"),
        "{}",
        soon_after.body
    );
    assert_eq!(replays(&events), 1);
    h.clock.advance(chrono::Duration::seconds(61));
    let later = post_status(&h, &tab, &session, "replay", "").await;
    assert!(later.body.contains("Replay requested"), "{}", later.body);
    assert_eq!(replays(&events), 2);
}

/// The status page runs in oauth-install, the internet-facing function: every table call it
/// makes — sign-in, replay, reconnect through Facebook Login, disconnect — is one the function's
/// role allows (its LeadingKeys list the partitions it may touch; an organization's contacts,
/// chats, links and claims are denied).
#[tokio::test]
async fn the_status_page_touches_only_what_the_install_role_allows() {
    let store = Arc::new(testkit::store::RecordingStore::new(Arc::new(
        shared::store::MemoryStore::new(),
    )));
    let mut h = Harness::with_store(store.clone()).await;
    h.services.events = Arc::new(MemoryPublisher::default());
    h.seed_contact(ORG, IG, IGSID, CHAT, Some(chrono::Duration::hours(1)))
        .await;
    h.graph.fail_next(
        "POST",
        "messages",
        testkit::fixture("meta/error_100_param_value"),
        1,
    );
    h.post_livechat(&text_event("EV-PARKED", "parked")).await;
    h.work_outbound().await;
    assert_eq!(backlog(&h, ORG).await.parked, 1);

    store.record(true);
    let tab = Tab::new();
    let page = sign_in(&h, &tab, ADMIN, "administrator").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    let session = hidden(&page.body, "state");
    let replay = post_status(&h, &tab, &session, "replay", "").await;
    assert!(replay.body.contains("Replay requested"), "{}", replay.body);
    let done = reconnect(&h, &tab, &session).await;
    assert_eq!(done.status, StatusCode::OK, "{}", done.body);
    let page = sign_in(&h, &tab, ADMIN, "administrator").await;
    let gone = post_status(&h, &tab, &hidden(&page.body, "state"), "disconnect", IG).await;
    assert!(gone.body.contains("was disconnected"), "{}", gone.body);
    let seen = store.take();
    assert!(seen.iter().any(|(a, _)| a == "dynamodb:ConditionCheckItem"));
    testkit::lambda::template::assert_role_allows("OAuthInstallRole", &seen);

    // And connection-health's: its hourly run, and the replays it carries out.
    h.graph.drop_subscription(PAGE);
    let report = run(&h).await;
    assert_eq!(report.replayed, 1, "{report:?}");
    let seen = store.take();
    assert!(seen.iter().any(|(a, _)| a == "dynamodb:BatchGetItem"));
    testkit::lambda::template::assert_role_allows("ConnectionHealthRole", &seen);
}

// ---------------------------------------------------------------- a browser tab, as HTTP

/// The status page's Reconnect, then Facebook Login and the confirmation of the Page: the page
/// the confirmation answers.
async fn reconnect(h: &Harness, tab: &Tab, session: &str) -> Answer {
    let go = post_status(h, tab, session, "reconnect", IG).await;
    let state = query(&link(&go.body))["state"].clone();
    h.graph.add_user("fbuser", "FBCODE-RECONNECT", vec![]);
    let confirm = post_form(
        h,
        "/oauth/facebook/callback",
        &[
            ("code", "FBCODE-RECONNECT"),
            ("state", &state),
            ("browser", &tab.secret),
        ],
    )
    .await;
    assert_eq!(confirm.status, StatusCode::OK, "{}", confirm.body);
    post_form(
        h,
        "/oauth/facebook/select",
        &[
            ("state", &hidden(&confirm.body, "state")),
            ("browser", &tab.secret),
            ("page_id", PAGE),
        ],
    )
    .await
}

struct Answer {
    status: StatusCode,
    location: Option<String>,
    body: String,
}

struct Tab {
    secret: String,
}

impl Tab {
    fn new() -> Self {
        Tab {
            secret: format!("tab-{}", uuid::Uuid::new_v4()),
        }
    }
}

async fn call(h: &Harness, req: Request<Body>) -> Answer {
    let res = shared::web::oauth_install::router(h.services.install())
        .oneshot(req)
        .await
        .unwrap();
    assert!(
        !res.headers().contains_key(header::SET_COOKIE),
        "no cookies"
    );
    let status = res.status();
    let location = res
        .headers()
        .get(header::LOCATION)
        .map(|v| v.to_str().unwrap().to_string());
    let body =
        String::from_utf8_lossy(&res.into_body().collect().await.unwrap().to_bytes()).to_string();
    Answer {
        status,
        location,
        body,
    }
}

async fn post_form(h: &Harness, uri: &str, form: &[(&str, &str)]) -> Answer {
    let body: String = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(form)
        .finish();
    call(
        h,
        Request::post(uri)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(Body::from(body))
            .unwrap(),
    )
    .await
}

fn query(url: &str) -> HashMap<String, String> {
    reqwest::Url::parse(url)
        .unwrap()
        .query_pairs()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn hidden(html: &str, name: &str) -> String {
    let needle = format!("name=\"{name}\" value=\"");
    let start = html
        .find(&needle)
        .unwrap_or_else(|| panic!("no {name} in {html}"))
        + needle.len();
    html[start..]
        .split('"')
        .next()
        .unwrap()
        .replace("&amp;", "&")
}

fn link(html: &str) -> String {
    let start = html.find("data-go href=\"").expect("a link to follow") + 14;
    html[start..]
        .split('"')
        .next()
        .unwrap()
        .replace("&amp;", "&")
}

/// Signs in to the status page as `account` with `role`, as the tab's script and LiveChat would.
async fn sign_in(h: &Harness, tab: &Tab, account: &str, role: &str) -> Answer {
    h.livechat
        .add_organization(ORG, "Shop", "owner@shop.example");
    h.livechat
        .add_member(ORG, account, &format!("{account}@shop.example"), role);
    let code = format!("code-{}", uuid::Uuid::new_v4());
    h.livechat.add_code(&code, ORG, account, SCOPES);
    let start = call(h, Request::get("/status").body(Body::empty()).unwrap()).await;
    assert!(
        start.body.contains("data-now"),
        "the page signs in by itself"
    );
    let binding = shared::install::state::binding_of(&tab.secret);
    let to_livechat = call(
        h,
        Request::get(format!("/status?b={binding}"))
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    let state = query(&to_livechat.location.expect("on to LiveChat"))["state"].clone();
    post_form(
        h,
        "/oauth/livechat/callback",
        &[("code", &code), ("state", &state), ("browser", &tab.secret)],
    )
    .await
}

async fn post_status(h: &Harness, tab: &Tab, session: &str, action: &str, ig: &str) -> Answer {
    post_form(
        h,
        "/status",
        &[
            ("state", session),
            ("browser", &tab.secret),
            ("action", action),
            ("ig", ig),
        ],
    )
    .await
}
