//! Lost updates and token refresh under concurrency: N workers that meet an expired LiveChat
//! token cause exactly one refresh (LiveChat keeps 25 tokens per user, and the fake revokes the
//! oldest like LiveChat does); a refresh racing an uninstall never brings tokens back; two
//! workers writing one contact keep each other's changes.

use shared::ids::{IgAccountId, Igsid, OrgId};
use testkit::bridge;

use std::sync::Arc;
use std::time::Duration;

use bridge::*;
use serde_json::json;
use shared::clock::Clock;
use shared::domain::*;
use shared::worker::{QueuedJob, process_batch};

const WORKERS: usize = 24;

fn message_from(igsid: &str, mid: &str) -> serde_json::Value {
    json!({"object": "instagram", "entry": [{"id": IG, "time": 1569262486134u64, "messaging": [
        {"sender": {"id": igsid}, "recipient": {"id": IG}, "timestamp": 1569262485349u64,
         "message": {"mid": mid, "text": "hello"}}]}]})
}

/// Every queued job, each run by its own concurrent worker (as separate Lambda invocations).
async fn run_concurrently(h: &Arc<Harness>) -> Vec<String> {
    let mut jobs = Vec::new();
    loop {
        let got = h
            .services
            .to_livechat
            .receive(10, Duration::from_millis(20))
            .await
            .unwrap();
        if got.is_empty() {
            break;
        }
        jobs.extend(got.into_iter().map(QueuedJob::from));
    }
    let tasks: Vec<_> = jobs
        .into_iter()
        .map(|job| {
            let h = h.clone();
            tokio::spawn(async move {
                let inbound = h.services.inbound();
                process_batch(
                    &inbound,
                    h.services.to_livechat.as_ref(),
                    h.services.to_livechat_dlq.as_ref(),
                    h.clock.now(),
                    vec![job],
                )
                .await
            })
        })
        .collect();
    let mut failed = Vec::new();
    for t in tasks {
        failed.extend(t.await.unwrap());
    }
    failed
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_workers_with_an_expired_token_refresh_it_exactly_once() {
    let h = Harness::new().await;
    for i in 0..WORKERS {
        let igsid = format!("IGSID_C{i:02}");
        h.seed_contact(
            ORG,
            IG,
            &igsid,
            &format!("CHAT_C{i:02}"),
            Some(chrono::Duration::hours(1)),
        )
        .await;
        h.graph
            .add_profile(&igsid, json!({"name": format!("Customer {i}")}));
    }
    // Nine hours later every token has expired (agent tokens last 8 h).
    h.clock.advance(chrono::Duration::hours(9));
    for i in 0..WORKERS {
        h.deliver(&message_from(
            &format!("IGSID_C{i:02}"),
            &format!("MID_C{i:02}"),
        ))
        .await;
    }
    let h = Arc::new(h);
    let failed = run_concurrently(&h).await;
    assert!(failed.is_empty(), "{failed:?}");
    assert_eq!(
        h.livechat.refreshes(),
        1,
        "one refresh for {WORKERS} workers"
    );
    assert_eq!(h.livechat.action_calls("send_event").len(), WORKERS);
    let inst = h.installation(ORG).await;
    assert!(inst.refresh_lease_until.is_none(), "the lease is released");
    h.assert_nothing_refused();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_refresh_racing_an_uninstall_never_brings_tokens_back() {
    let h = Harness::new().await;
    h.seed_contact(
        ORG,
        IG,
        IGSID,
        "CHAT000001",
        Some(chrono::Duration::hours(1)),
    )
    .await;
    h.clock.advance(chrono::Duration::hours(9));
    h.deliver(&webhook(vec![text("MID_RACE", "hello")])).await;
    // LiveChat carries out the refresh but answers late; the uninstall lands meanwhile.
    h.livechat
        .answer_late("/v2/token", Duration::from_millis(600), 1);
    let h = Arc::new(h);
    let worker = tokio::spawn({
        let h = h.clone();
        async move { run_concurrently(&h).await }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let report = h
        .services
        .lifecycle()
        .uninstall(&OrgId::from(ORG), None)
        .await
        .unwrap();
    assert!(report.uninstalled);
    worker.await.unwrap();
    assert_eq!(h.livechat.refreshes(), 1, "the refresh did happen");

    let inst = h.installation(ORG).await;
    assert_eq!(inst.status, InstallationStatus::Uninstalled);
    assert!(inst.access_token.is_none() && inst.refresh_token.is_none());
    // Whatever LiveChat issued is dead: the refreshed access token (the fake's first issue) was
    // revoked by the worker that got it, the refresh token by the uninstall.
    assert!(!h.livechat.token_live("refresh-dal:AGENT-A"));
    assert!(
        !h.livechat.token_live("dal:ACCESS-1"),
        "the refreshed token is revoked"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_workers_writing_one_contact_keep_both_changes() {
    let h = Harness::new().await;
    h.seed_contact(
        ORG,
        IG,
        IGSID,
        "CHAT000001",
        Some(chrono::Duration::hours(30)),
    )
    .await;
    let key = Contact::key_for(
        &OrgId::from(ORG),
        &IgAccountId::from(IG),
        &Igsid::from(IGSID),
    );
    let repo = &h.services.repo;
    let mut a: Contact = repo.get(&key).await.unwrap().unwrap();
    let mut b = a.clone();
    let now = h.clock.now();
    // Worker A saw the customer write; worker B saw the agent close the thread.
    repo.update(&mut a, |c| {
        c.last_customer_message_at = Some(now);
        true
    })
    .await
    .unwrap();
    repo.update(&mut b, |c| {
        c.thread_active = Some(false);
        true
    })
    .await
    .unwrap();
    let stored: Contact = repo.get(&key).await.unwrap().unwrap();
    assert_eq!(
        stored.last_customer_message_at,
        Some(now),
        "A's change kept"
    );
    assert_eq!(stored.thread_active, Some(false), "B's change kept");
    assert_eq!(stored.version, 2);
    // A plain save from a stale copy is refused rather than rolling either back.
    let mut stale = a.clone();
    stale.version = 1;
    assert!(matches!(
        repo.save(&mut stale).await,
        Err(shared::store::StoreError::ConditionFailed)
    ));
}

/// DynamoDB writes per bridged message, counted on the store port (each put, delete, expiry
/// change or batch counts one): printed for the performance notes, and held as a ceiling.
#[tokio::test]
async fn writes_per_bridged_message() {
    let store = Arc::new(testkit::store::FaultyStore::default());
    let h = Harness::with_store(store.clone()).await;
    h.seed_contact(
        ORG,
        IG,
        IGSID,
        "CHAT000001",
        Some(chrono::Duration::hours(1)),
    )
    .await;
    // Warm: the first message creates the organization's data key.
    h.deliver(&webhook(vec![text("MID_W0", "warm")])).await;
    assert!(h.work().await.is_empty());
    let n = 10;
    store.reset_counts();
    for i in 0..n {
        h.deliver(&webhook(vec![text(&format!("MID_W{}", i + 1), "hello")]))
            .await;
        assert!(h.work().await.is_empty());
    }
    let inbound = store.writes() as f64 / n as f64;
    // Warm as above: the first message each way also notes the connection's activity for the
    // status page, which a process then writes at most once an hour.
    let warm = json!({"webhook_id": "WHW", "secret_key": "lc-webhook-secret", "action": "incoming_event",
        "organization_id": ORG, "payload": {"chat_id": "CHAT000001", "thread_id": "THREAD0001",
        "event": {"id": "THREAD0001_9", "type": "message", "text": "warm", "author_id": "agent1@example.com", "visibility": "all"}}});
    assert_eq!(h.post_livechat(&warm).await, axum::http::StatusCode::OK);
    assert!(h.work_outbound().await.is_empty());
    store.reset_counts();
    for i in 0..n {
        let reply = json!({"webhook_id": format!("WH{i}"), "secret_key": "lc-webhook-secret", "action": "incoming_event",
            "organization_id": ORG, "payload": {"chat_id": "CHAT000001", "thread_id": "THREAD0001",
            "event": {"id": format!("THREAD0001_{}", i + 10), "type": "message", "text": "hi", "author_id": "agent1@example.com", "visibility": "all"}}});
        assert_eq!(h.post_livechat(&reply).await, axum::http::StatusCode::OK);
        assert!(h.work_outbound().await.is_empty());
    }
    let outbound = store.writes() as f64 / n as f64;
    println!(
        "DynamoDB writes per bridged message: Instagram -> LiveChat {inbound:.1}, LiveChat -> Instagram {outbound:.1}"
    );
    assert!(inbound <= 5.0 && outbound <= 7.0, "{inbound} {outbound}");
}
