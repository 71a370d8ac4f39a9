//! Exactly once under the faults that make a naive bridge lose or repeat messages: a Send API
//! answer lost after Meta sent the message (the Send API has no idempotency key), a request lost
//! before Meta acted, the message id failing to be recorded, throttles lasting half an hour, and
//! LiveChat refusing for longer than the retry window. Against the test kit's strict fakes, on
//! the in-memory FIFO queues with the worker's own retry delays and a manual clock.

use shared::ids::{IgAccountId, Igsid, Mid, OrgId};
use testkit::bridge;

use std::sync::Arc;
use std::time::Duration;

use bridge::*;
use chrono::Duration as Span;
use serde_json::{Value, json};
use shared::clock::Clock;
use shared::domain::*;
use shared::relay::outbound::{DELAY_NOTICE_AFTER, ECHO_WINDOW};
use shared::store::Store;
use testkit::fixture;
use testkit::store::{FaultAt, FaultyStore, Op};

/// A client that gives up after half a second, so a lost answer costs the test little time.
fn impatient() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_millis(500))
        .build()
        .unwrap()
}

/// Texts the Send API accepted, in order.
fn sent_texts(h: &Harness) -> Vec<String> {
    h.graph
        .sent()
        .iter()
        .filter_map(|s| s.body.pointer("/message/text").and_then(Value::as_str))
        .map(str::to_string)
        .collect()
}

/// Delivers Meta's echo of the `n`-th message the fake sent and runs the inbound worker.
async fn echo_sent(h: &Harness, n: usize) {
    let echo = h
        .graph
        .echo(&h.graph.sent()[n])
        .expect("a message, not an action");
    h.deliver(&webhook(vec![echo])).await;
    assert!(h.work().await.is_empty(), "an echo is handled at once");
}

/// Texts the bridge posted into LiveChat chats (notices, staff messages), in order.
async fn posted(h: &Harness) -> Vec<String> {
    h.calls("send_event")
        .await
        .iter()
        .filter_map(|b| b.pointer("/event/text").and_then(Value::as_str))
        .map(str::to_string)
        .collect()
}

/// Runs the outbound worker every `step` for `span` of simulated time.
async fn run_outbound_for(h: &Harness, span: Span, step: Span) {
    let end = h.clock.now() + span;
    while h.clock.now() < end {
        h.work_outbound().await;
        h.clock.advance(step);
    }
}

async fn outbound_link(h: &Harness, mid: &str) -> Option<MessageLink> {
    h.services
        .repo
        .get(&MessageLink::key_for(
            &OrgId::from(ORG),
            &IgAccountId::from(IG),
            &Mid::from(mid),
        ))
        .await
        .unwrap()
}

#[tokio::test]
async fn an_answer_lost_after_meta_sent_the_message_is_confirmed_by_its_echo_not_sent_again() {
    for echo_before_retry in [true, false] {
        let mut h = ready(Some(Span::hours(1))).await;
        h.services.http = impatient().into();
        h.graph.lose_answer_next("/messages", 1);
        h.post_livechat(&text_event("E1", "Your order ships tomorrow."))
            .await;
        assert_eq!(h.work_outbound().await.len(), 1, "no answer: retried later");
        assert_eq!(h.graph.sent().len(), 1, "Meta did send it");
        if !echo_before_retry {
            // The retry comes first: it waits for the echo instead of sending again.
            h.clock.advance(Span::seconds(21));
            assert_eq!(h.work_outbound().await.len(), 1);
            assert_eq!(h.graph.sent().len(), 1, "no resend inside the echo window");
        }
        echo_sent(&h, 0).await;
        h.clock.advance(Span::seconds(21));
        assert!(h.work_outbound().await.is_empty(), "the echo confirmed it");

        let mid = h.graph.sent()[0].message_id.clone().unwrap();
        assert_eq!(
            sent_texts(&h),
            ["Your order ships tomorrow."],
            "one message"
        );
        assert_eq!(
            posted(&h).await,
            Vec::<String>::new(),
            "no staff message, no notice"
        );
        let link = outbound_link(&h, &mid)
            .await
            .expect("the message is recorded");
        assert_eq!(link.direction, Direction::Outbound);
        // Meta repeats echoes; a repeat is ours too.
        echo_sent(&h, 0).await;
        assert_eq!(posted(&h).await, Vec::<String>::new());
        h.assert_nothing_refused();
    }
}

#[tokio::test]
async fn a_request_lost_before_meta_acted_is_sent_once_the_echo_window_passes() {
    let mut h = ready(Some(Span::hours(1))).await;
    h.services.http = impatient().into();
    h.graph.lose_request_next("/messages", 1);
    h.post_livechat(&text_event("E1", "hello")).await;
    assert_eq!(h.work_outbound().await.len(), 1);
    assert_eq!(h.graph.sent().len(), 0, "nothing reached Meta");
    // Inside the window the bridge cannot know; it waits.
    h.clock.advance(Span::seconds(21));
    assert_eq!(h.work_outbound().await.len(), 1);
    assert_eq!(h.graph.sent().len(), 0);
    h.clock.advance(ECHO_WINDOW);
    assert!(h.work_outbound().await.is_empty());
    assert_eq!(sent_texts(&h), ["hello"]);
    echo_sent(&h, 0).await;
    assert_eq!(posted(&h).await, Vec::<String>::new(), "its echo is ours");
    let pending = h
        .services
        .repo
        .query_prefix::<PendingSend>(
            &PendingSend::partition(
                &OrgId::from(ORG),
                &IgAccountId::from(IG),
                &Igsid::from(IGSID),
            ),
            "",
        )
        .await
        .unwrap();
    assert!(pending.is_empty(), "nothing left pending");
}

#[tokio::test]
async fn a_message_id_that_fails_to_be_recorded_is_recovered_from_the_echo() {
    let store = Arc::new(FaultyStore::default());
    let h = Harness::with_store(store.clone() as Arc<dyn Store>).await;
    h.seed_contact(ORG, IG, IGSID, CHAT, Some(Span::hours(1)))
        .await;
    let mut failed = false;
    store.fail_when(move |op| match op {
        Op::Put(Some(kind)) if kind == "message_link" && !failed => {
            failed = true;
            Some(FaultAt::Before)
        }
        _ => None,
    });
    h.post_livechat(&text_event("E1", "hello")).await;
    assert_eq!(
        h.work_outbound().await.len(),
        1,
        "the failed write is retried"
    );
    echo_sent(&h, 0).await;
    h.clock.advance(Span::seconds(21));
    assert!(h.work_outbound().await.is_empty());
    assert_eq!(sent_texts(&h), ["hello"], "sent once");
    assert_eq!(posted(&h).await, Vec::<String>::new());
    let mid = h.graph.sent()[0].message_id.clone().unwrap();
    assert!(outbound_link(&h, &mid).await.is_some());
}

#[tokio::test]
async fn a_throttle_of_30_minutes_delivers_every_held_message_in_order_with_one_notice() {
    let h = ready(Some(Span::hours(1))).await;
    let throttle = fixture("meta/error_613_rate_limit");
    h.graph.fail_next("POST", "/messages", throttle, usize::MAX);
    for (id, text) in [("E1", "one"), ("E2", "two"), ("E3", "three")] {
        h.post_livechat(&text_event(id, text)).await;
    }
    run_outbound_for(&h, Span::minutes(30), Span::seconds(30)).await;
    let tried = h.graph.calls().len();
    h.graph.clear_faults();
    run_outbound_for(&h, Span::minutes(20), Span::seconds(30)).await;

    assert_eq!(sent_texts(&h), ["one", "two", "three"], "all, in order");
    assert_eq!(h.services.to_instagram.depth().await.unwrap(), 0);
    assert_eq!(h.services.to_instagram_dlq.depth().await.unwrap(), 0);
    let notices = posted(&h).await;
    assert_eq!(notices.len(), 1, "one delay notice: {notices:?}");
    assert!(notices[0].starts_with("Delayed: not delivered to Instagram yet"));
    assert!(notices[0].contains("Meta error 613"), "{}", notices[0]);
    // Backed off, not hammered: the 613s came at growing intervals.
    assert!(
        tried <= 12,
        "{tried} Send API calls in 30 minutes of throttling"
    );
    assert!(DELAY_NOTICE_AFTER < Span::minutes(30));
}

#[tokio::test]
async fn a_throttled_account_pauses_every_conversation_for_as_long_as_meta_asks() {
    let h = ready(Some(Span::hours(1))).await;
    h.seed_contact(ORG, IG, "IGSID_1002", "CHAT000002", Some(Span::hours(1)))
        .await;
    h.graph.fail_next(
        "POST",
        "/messages",
        fixture("meta/error_80002_with_usage"),
        1,
    );
    h.post_livechat(&text_event("E1", "first customer")).await;
    let mut other = text_event("E2", "second customer");
    other["payload"]["chat_id"] = json!("CHAT000002");
    h.post_livechat(&other).await;
    // Meta asked for 30 minutes (estimated_time_to_regain_access). Both conversations may be
    // in the batch that met the refusal; after it, nobody calls Meta before the 30 minutes.
    h.work_outbound().await;
    let refused = h.graph.calls().len();
    assert!((1..=2).contains(&refused));
    h.clock.advance(Span::seconds(30));
    run_outbound_for(&h, Span::minutes(29), Span::seconds(30)).await;
    assert_eq!(h.graph.calls().len(), refused, "silence while paused");
    run_outbound_for(&h, Span::minutes(5), Span::seconds(30)).await;
    let mut texts = sent_texts(&h);
    texts.sort();
    assert_eq!(texts, ["first customer", "second customer"]);
}

#[tokio::test]
async fn livechat_refusing_for_six_hours_is_retried_all_along_then_parked_with_its_reason() {
    let h = Harness::new().await;
    h.seed_contact(ORG, IG, IGSID, CHAT, Some(Span::hours(1)))
        .await;
    h.livechat.fail_next(
        "/send_event",
        fixture("livechat/too_many_requests"),
        usize::MAX,
    );
    let mut hello = text("MID_TEXT_0001", "hello");
    hello["timestamp"] = json!(h.clock.now().timestamp_millis());
    h.deliver(&webhook(vec![hello])).await;
    let start = h.clock.now();
    let mut attempts = 0;
    while h.services.to_livechat_dlq.depth().await.unwrap() == 0 {
        attempts += !h.work().await.is_empty() as u32;
        h.clock.advance(Span::minutes(5));
        assert!(h.clock.now() - start < Span::hours(7), "never parked");
    }
    let held = h.clock.now() - start;
    assert!(held >= Span::hours(6), "parked after only {held}");
    assert!(attempts >= 20, "only {attempts} attempts");
    let parked = h.dlq().await;
    let reason = &parked[0].parked.as_ref().unwrap().reason;
    assert!(reason.starts_with("gave up after"), "{reason}");
    assert!(
        reason.contains("429") || reason.contains("too_many_requests"),
        "{reason}"
    );
}
