//! Faults on the deployed shape: a worker process killed with SIGKILL in the middle of a batch,
//! a worker running past its timeout in the middle of a job, a reported batch-item failure, and
//! a secret the operator never filled. In each, every message reaches LiveChat exactly once and in
//! order, or the failure is clear and has no side effect.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use chrono::Utc;
use serde_json::{Value, json};
use system::{Options, System};
use testkit::bridge::{text, webhook};
use testkit::fixture;

const WORKER: &str = "instagram-to-livechat";

/// Customer messages stamped now, in one webhook.
fn messages(ids: &[String]) -> Value {
    let ms = Utc::now().timestamp_millis();
    webhook(
        ids.iter()
            .map(|id| {
                let mut item = text(id, &format!("text of {id}"));
                item["timestamp"] = json!(ms);
                item
            })
            .collect(),
    )
}

fn ids(prefix: &str, n: usize) -> Vec<String> {
    (1..=n).map(|i| format!("MID_{prefix}_{i:02}")).collect()
}

/// The `ig:` custom ids of every event in LiveChat, in order.
fn delivered(s: &System) -> Vec<String> {
    s.fakes
        .livechat
        .chats()
        .iter()
        .flat_map(|c| c.events())
        .filter_map(|e| e["custom_id"].as_str().map(str::to_string))
        .filter_map(|id| id.strip_prefix("ig:").map(str::to_string))
        .collect()
}

async fn wait_delivered(s: &System, n: usize, limit: Duration) -> Vec<String> {
    let deadline = Instant::now() + limit;
    loop {
        let got = delivered(s);
        if got.len() >= n {
            return got;
        }
        if Instant::now() > deadline {
            panic!(
                "{} of {n} delivered: {got:?}\n{}",
                got.len(),
                s.diagnose().await
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Every id once, in the order sent.
async fn exactly_once_in_order(s: &System, expected: &[String]) {
    s.settle(Duration::from_secs(120)).await;
    assert_eq!(delivered(s), expected, "\n{}", s.diagnose().await);
    assert_eq!(s.fakes.livechat.chats().len(), 1, "one chat");
    s.fakes.assert_nothing_refused();
}

fn failed_invocations(s: &System) -> u64 {
    s.pollers[WORKER]
        .stats
        .failed_invocations
        .load(std::sync::atomic::Ordering::Relaxed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_worker_killed_mid_batch_delivers_every_message_exactly_once_in_order() {
    let s = System::installed(Options::default()).await;
    let first = ids("FIRST", 1);
    s.post_instagram(&messages(&first)).await;
    wait_delivered(&s, 1, Duration::from_secs(30)).await;
    // Each event takes LiveChat 1.5 s to answer, so the batch of eight is still running when
    // the process is killed after the third was accepted.
    // Two more arrive while the batch is in flight: SQS holds them behind it, and after the kill
    // returns the whole group in order.
    let batch = ids("KILL", 8);
    s.fakes
        .livechat
        .answer_late("send_event", Duration::from_millis(1500), batch.len());
    assert_eq!(s.post_instagram(&messages(&batch[..6])).await.status(), 200);
    wait_delivered(&s, 1 + 1, Duration::from_secs(30)).await;
    assert_eq!(s.post_instagram(&messages(&batch[6..])).await.status(), 200);
    wait_delivered(&s, 1 + 3, Duration::from_secs(30)).await;
    s.function(WORKER).kill();

    let expected: Vec<String> = first.into_iter().chain(batch).collect();
    wait_delivered(&s, expected.len(), Duration::from_secs(90)).await;
    exactly_once_in_order(&s, &expected).await;
    assert!(failed_invocations(&s) >= 1, "the killed invocation failed");
    assert_eq!(
        s.function(WORKER).timings().ready.len(),
        2,
        "a fresh process took over"
    );
    println!("killed mid-batch:\n{}", s.diagnose().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_worker_timing_out_mid_job_delivers_it_exactly_once() {
    // A 14 s timeout (the template's is 30 s) and a LiveChat that takes 8 s per answer: the first
    // message of a new customer needs two LiveChat calls, so Lambda kills the invocation while
    // the second is with LiveChat. The queue's visibility stays above the timeout, as AWS requires.
    let s = System::installed(Options {
        timeouts: BTreeMap::from([(WORKER.to_string(), Duration::from_secs(14))]),
        visibility_timeout: 15,
        ..Options::default()
    })
    .await;
    s.fakes.livechat.answer_late("", Duration::from_secs(8), 2);
    let message = ids("SLOW", 1);
    s.post_instagram(&messages(&message)).await;
    wait_delivered(&s, 1, Duration::from_secs(90)).await;
    exactly_once_in_order(&s, &message).await;
    assert!(failed_invocations(&s) >= 1, "the invocation timed out");
    assert_eq!(
        s.function(WORKER).timings().ready.len(),
        2,
        "the next invocation started afresh"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_reported_batch_item_failure_is_retried_and_the_rest_of_its_group_waits() {
    let s = System::installed(Options::default()).await;
    let first = ids("FIRST", 1);
    s.post_instagram(&messages(&first)).await;
    wait_delivered(&s, 1, Duration::from_secs(30)).await;
    // LiveChat fails the next event once: the worker reports it, and the two behind it in the
    // same conversation, as batch-item failures; the mapping must leave them on the queue.
    s.fakes
        .livechat
        .fail_next("send_event", fixture("livechat/internal"), 1);
    let batch = ids("RETRY", 3);
    s.post_instagram(&messages(&batch)).await;
    let expected: Vec<String> = first.into_iter().chain(batch).collect();
    wait_delivered(&s, expected.len(), Duration::from_secs(90)).await;
    s.settle(Duration::from_secs(60)).await;
    assert_eq!(delivered(&s), expected, "\n{}", s.diagnose().await);
    let reported = s.pollers[WORKER]
        .stats
        .reported_failures
        .load(std::sync::atomic::Ordering::Relaxed);
    assert!(reported >= 1, "the failure was reported");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_unfilled_secret_fails_that_functions_init_by_name_and_nothing_else() {
    let s = System::start(Options {
        unfilled: vec!["MetaVerifyToken".into()],
        ..Options::default()
    })
    .await;
    let r = s.post_instagram(&messages(&ids("LOST", 1))).await;
    assert_eq!(r.status(), 500);
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        json!({"message": "Internal Server Error"})
    );
    let logs = s.function("instagram-webhook").logs().join("\n");
    assert!(
        logs.contains("META_VERIFY_TOKEN"),
        "the missing setting is named: {logs}"
    );
    assert!(
        !logs.contains(system::META_APP_SECRET),
        "no secret value logged"
    );
    assert_eq!(s.depth("ToLivechatQueue").await, 0, "nothing queued");
    // Functions that do not hold the verify token start and answer.
    let install = s.http.get(s.url("/install")).send().await.unwrap();
    assert_eq!(install.status(), 200);
}
