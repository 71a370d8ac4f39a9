//! One contract suite for the queue port, run against the in-memory FIFO queue and against SQS
//! FIFO on moto server over the real AWS wire protocol.

use testkit::moto;

use std::sync::Arc;
use std::time::Duration;

use shared::clock::SystemClock;
use shared::provision::MAX_RECEIVE_COUNT;
use shared::queue::{
    MemoryQueue, MemoryQueueSettings, OutgoingMessage, Queue, QueueError, ReceivedMessage, SqsQueue,
};

/// A work queue and its dead-letter queue.
struct Pair {
    queue: Arc<dyn Queue>,
    dlq: Arc<dyn Queue>,
}

async fn memory() -> Pair {
    let clock = Arc::new(SystemClock);
    let dlq = Arc::new(MemoryQueue::new(
        "dlq",
        clock.clone(),
        MemoryQueueSettings::default(),
    ));
    let queue = Arc::new(MemoryQueue::new(
        "work",
        clock,
        MemoryQueueSettings {
            dead_letter: Some(dlq.clone()),
            ..MemoryQueueSettings::default()
        },
    ));
    Pair { queue, dlq }
}

async fn sqs() -> Pair {
    let sdk = moto::sdk().await;
    let client = aws_sdk_sqs::Client::new(&sdk);
    let name = moto::unique("igbridge-test");
    let urls = shared::provision::create_fifo_queue(&client, &name)
        .await
        .unwrap();
    Pair {
        queue: Arc::new(SqsQueue::new(client.clone(), urls.url)),
        dlq: Arc::new(SqsQueue::new(client, urls.dlq_url)),
    }
}

fn msg(group: &str, dedup: &str, body: &str) -> OutgoingMessage {
    OutgoingMessage::new(group, dedup, body.to_string())
}

const SHORT: Duration = Duration::from_millis(300);

/// Receives until `n` messages arrived or a few empty polls in a row, deleting each.
async fn drain(q: &dyn Queue, n: usize) -> Vec<ReceivedMessage> {
    let mut out = Vec::new();
    let mut empty = 0;
    while out.len() < n && empty < 5 {
        let got = q.receive(10, SHORT).await.unwrap();
        if got.is_empty() {
            empty += 1;
        }
        for m in got {
            q.delete(&m.receipt).await.unwrap();
            out.push(m);
        }
    }
    out
}

async fn send_receive_delete_round_trip(p: Pair) {
    p.queue
        .send(&[msg("conv-1", "evt-1", r#"{"hello":"ä✓"}"#)])
        .await
        .unwrap();
    assert_eq!(p.queue.depth().await.unwrap(), 1);
    let got = p.queue.receive(10, Duration::from_secs(1)).await.unwrap();
    assert_eq!(got.len(), 1);
    let m = &got[0];
    assert_eq!(m.body, r#"{"hello":"ä✓"}"#);
    assert_eq!(m.group_id, "conv-1");
    assert_eq!(m.dedup_id, "evt-1");
    assert_eq!(m.receive_count, 1);
    p.queue.delete(&m.receipt).await.unwrap();
    assert!(p.queue.receive(10, SHORT).await.unwrap().is_empty());
    assert_eq!(p.queue.depth().await.unwrap(), 0);
}

async fn duplicate_dedup_ids_within_the_window_are_delivered_once(p: Pair) {
    for _ in 0..3 {
        p.queue
            .send(&[msg("conv-1", "mid-1", "first")])
            .await
            .unwrap();
    }
    // Same id in one batch too, and a different id that must get through.
    p.queue
        .send(&[
            msg("conv-1", "mid-1", "again"),
            msg("conv-1", "mid-2", "second"),
        ])
        .await
        .unwrap();
    let got = drain(p.queue.as_ref(), 3).await;
    let bodies: Vec<_> = got.iter().map(|m| m.body.as_str()).collect();
    assert_eq!(bodies, vec!["first", "second"]);
}

async fn more_than_ten_jobs_arrive_all_in_order_per_group(p: Pair) {
    let messages: Vec<_> = (0..25)
        .map(|i| {
            let group = if i % 3 == 0 { "a" } else { "b" };
            msg(group, &format!("e{i}"), &format!("{group}:{i}"))
        })
        .collect();
    p.queue.send(&messages).await.unwrap();
    let got = drain(p.queue.as_ref(), 25).await;
    assert_eq!(got.len(), 25);
    for group in ["a", "b"] {
        let seq: Vec<usize> = got
            .iter()
            .filter(|m| m.group_id == group)
            .map(|m| m.body.split(':').nth(1).unwrap().parse().unwrap())
            .collect();
        let mut sorted = seq.clone();
        sorted.sort_unstable();
        assert_eq!(seq, sorted, "group {group} out of order");
    }
}

async fn a_group_in_flight_holds_back_its_later_messages(p: Pair) {
    p.queue
        .send(&[msg("g", "1", "g1"), msg("g", "2", "g2")])
        .await
        .unwrap();
    let first = p.queue.receive(1, Duration::from_secs(1)).await.unwrap();
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].body, "g1");
    // g2 must wait while g1 is in flight, even when asked for more.
    let blocked = p.queue.receive(10, SHORT).await.unwrap();
    assert!(
        blocked.is_empty(),
        "got {:?}",
        blocked.iter().map(|m| &m.body).collect::<Vec<_>>()
    );
    // Another group is not held back.
    p.queue.send(&[msg("other", "3", "o1")]).await.unwrap();
    let other = p.queue.receive(10, Duration::from_secs(1)).await.unwrap();
    assert_eq!(
        other.iter().map(|m| m.body.as_str()).collect::<Vec<_>>(),
        vec!["o1"]
    );
    p.queue.delete(&first[0].receipt).await.unwrap();
    let next = p.queue.receive(10, Duration::from_secs(1)).await.unwrap();
    assert_eq!(
        next.iter().map(|m| m.body.as_str()).collect::<Vec<_>>(),
        vec!["g2"]
    );
}

async fn retry_later_redelivers_with_a_higher_receive_count(p: Pair) {
    p.queue.send(&[msg("g", "1", "job")]).await.unwrap();
    let first = p.queue.receive(1, Duration::from_secs(1)).await.unwrap();
    p.queue
        .retry_later(&first[0].receipt, Duration::ZERO)
        .await
        .unwrap();
    let again = p.queue.receive(1, Duration::from_secs(2)).await.unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].body, "job");
    assert_eq!(again[0].message_id, first[0].message_id);
    assert_eq!(again[0].receive_count, 2);
}

async fn too_many_receives_park_the_message_in_the_dead_letter_queue(p: Pair) {
    p.queue.send(&[msg("g", "1", "poison")]).await.unwrap();
    for n in 1..=MAX_RECEIVE_COUNT {
        let got = p.queue.receive(1, Duration::from_secs(1)).await.unwrap();
        assert_eq!(got.len(), 1, "receive {n}");
        p.queue
            .retry_later(&got[0].receipt, Duration::ZERO)
            .await
            .unwrap();
    }
    assert!(p.queue.receive(10, SHORT).await.unwrap().is_empty());
    let parked = drain(p.dlq.as_ref(), 1).await;
    assert_eq!(parked.len(), 1);
    assert_eq!(parked[0].body, "poison");
}

async fn an_oversized_message_is_refused_before_anything_is_sent(p: Pair) {
    let big = "x".repeat(300 * 1024);
    let err = p
        .queue
        .send(&[msg("g", "ok", "small"), msg("g", "big", &big)])
        .await
        .unwrap_err();
    assert!(matches!(err, QueueError::TooLarge(_)), "{err:?}");
    assert!(p.queue.receive(10, SHORT).await.unwrap().is_empty());
}

macro_rules! contract {
    ($adapter:ident) => {
        mod $adapter {
            #[tokio::test]
            async fn send_receive_delete_round_trip() {
                super::send_receive_delete_round_trip(super::$adapter().await).await
            }
            #[tokio::test]
            async fn duplicate_dedup_ids_within_the_window_are_delivered_once() {
                super::duplicate_dedup_ids_within_the_window_are_delivered_once(
                    super::$adapter().await,
                )
                .await
            }
            #[tokio::test]
            async fn more_than_ten_jobs_arrive_all_in_order_per_group() {
                super::more_than_ten_jobs_arrive_all_in_order_per_group(super::$adapter().await)
                    .await
            }
            #[tokio::test]
            async fn a_group_in_flight_holds_back_its_later_messages() {
                super::a_group_in_flight_holds_back_its_later_messages(super::$adapter().await)
                    .await
            }
            #[tokio::test]
            async fn retry_later_redelivers_with_a_higher_receive_count() {
                super::retry_later_redelivers_with_a_higher_receive_count(super::$adapter().await)
                    .await
            }
            #[tokio::test]
            async fn too_many_receives_park_the_message_in_the_dead_letter_queue() {
                super::too_many_receives_park_the_message_in_the_dead_letter_queue(
                    super::$adapter().await,
                )
                .await
            }
            #[tokio::test]
            async fn an_oversized_message_is_refused_before_anything_is_sent() {
                super::an_oversized_message_is_refused_before_anything_is_sent(
                    super::$adapter().await,
                )
                .await
            }
        }
    };
}

contract!(memory);
contract!(sqs);

/// Memory only (moto cannot fast-forward 5 minutes): after the window the same id is new again.
#[tokio::test]
async fn memory_dedup_window_expires_after_five_minutes() {
    let clock = shared::clock::ManualClock::new(chrono::Utc::now());
    let q = MemoryQueue::new("w", Arc::new(clock.clone()), MemoryQueueSettings::default());
    q.send(&[msg("g", "same", "one")]).await.unwrap();
    clock.advance(chrono::Duration::seconds(299));
    q.send(&[msg("g", "same", "dup")]).await.unwrap();
    clock.advance(chrono::Duration::seconds(2));
    q.send(&[msg("g", "same", "two")]).await.unwrap();
    let got = drain(&q, 3).await;
    assert_eq!(
        got.iter().map(|m| m.body.as_str()).collect::<Vec<_>>(),
        vec!["one", "two"]
    );
}

/// Memory only: a clock set back leaves an expired id behind a younger one; re-sent after its
/// window, it is delivered again (as SQS would), not taken for a duplicate.
#[tokio::test]
async fn memory_dedup_window_holds_when_the_clock_goes_back() {
    let start = chrono::Utc::now();
    let clock = shared::clock::ManualClock::new(start + chrono::Duration::seconds(600));
    let q = MemoryQueue::new("w", Arc::new(clock.clone()), MemoryQueueSettings::default());
    q.send(&[msg("g", "later", "b")]).await.unwrap();
    clock.set(start);
    q.send(&[msg("g", "earlier", "a1")]).await.unwrap();
    clock.set(start + chrono::Duration::seconds(360));
    q.send(&[msg("g", "earlier", "a2"), msg("g", "later", "b-dup")])
        .await
        .unwrap();
    let got = drain(&q, 4).await;
    assert_eq!(
        got.iter().map(|m| m.body.as_str()).collect::<Vec<_>>(),
        vec!["b", "a1", "a2"]
    );
}

/// Memory only: an unacknowledged message becomes visible again when its timeout passes.
#[tokio::test]
async fn memory_visibility_timeout_expires_on_the_clock() {
    let clock = shared::clock::ManualClock::new(chrono::Utc::now());
    let q = MemoryQueue::new("w", Arc::new(clock.clone()), MemoryQueueSettings::default());
    q.send(&[msg("g", "1", "job")]).await.unwrap();
    assert_eq!(q.receive(1, SHORT).await.unwrap().len(), 1);
    assert!(q.receive(1, SHORT).await.unwrap().is_empty());
    clock.advance(chrono::Duration::seconds(181));
    let again = q.receive(1, SHORT).await.unwrap();
    assert_eq!(again[0].receive_count, 2);
}
