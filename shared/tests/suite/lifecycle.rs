//! Uninstall and the data lifecycle against DynamoDB and EventBridge on moto, with loopback fakes
//! of LiveChat and the Graph API: revocations, token wipe, TTLs, the 7-day purge, Meta's
//! deauthorize and data-deletion callbacks, and forged requests.

use shared::ids::DeletionCode;
use shared::ids::FlowId;
use shared::ids::{ChatId, FacebookUserId, IgAccountId, Igsid, Mid, OrgId};
use testkit::bridge;
use testkit::moto;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use bridge::*;
use http_body_util::BodyExt;
use serde_json::{Value, json};
use shared::cipher::TokenContext;
use shared::clock::Clock;
use shared::domain::*;
use shared::events::{EventBridgePublisher, LifecycleEvent, LifecycleKind};
use shared::lifecycle::signed_request::sign as sign_request;
use shared::store::{Condition, DynamoStore, Item, PageRequest, Store};
use tower::ServiceExt;
use wiremock::matchers::{method, path};
use wiremock::{Mock, ResponseTemplate};

const ORG_B: &str = "00000000-0000-4000-8000-00000000a002";
const IG_B: &str = "17841400000000002";

async fn on_moto() -> (Harness, Arc<dyn Store>, aws_sdk_sqs::Client, String) {
    let sdk = moto::sdk().await;
    let dynamo = aws_sdk_dynamodb::Client::new(&sdk);
    let table = moto::unique("igbridge-life");
    shared::provision::create_table(&dynamo, &table)
        .await
        .unwrap();
    let store: Arc<dyn Store> = Arc::new(DynamoStore::new(dynamo, table));
    let mut h = Harness::with_store(store.clone()).await;
    // Lifecycle events go to an EventBridge bus whose rule forwards them to a queue we can read.
    let events = aws_sdk_eventbridge::Client::new(&sdk);
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let bus = moto::unique("igbridge-bus");
    events.create_event_bus().name(&bus).send().await.unwrap();
    let queue_url = sqs
        .create_queue()
        .queue_name(moto::unique("audit"))
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap();
    let arn = sqs
        .get_queue_attributes()
        .queue_url(&queue_url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
        .send()
        .await
        .unwrap()
        .attributes
        .unwrap()[&aws_sdk_sqs::types::QueueAttributeName::QueueArn]
        .clone();
    events
        .put_rule()
        .name("audit")
        .event_bus_name(&bus)
        .event_pattern(json!({"source": ["igbridge"]}).to_string())
        .send()
        .await
        .unwrap();
    events
        .put_targets()
        .rule("audit")
        .event_bus_name(&bus)
        .targets(
            aws_sdk_eventbridge::types::Target::builder()
                .id("q")
                .arn(arn)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    h.services.events = Arc::new(EventBridgePublisher::new(events, &bus));
    (h, store, sqs, queue_url)
}

async fn audit(sqs: &aws_sdk_sqs::Client, url: &str) -> Vec<Value> {
    let mut out = Vec::new();
    for _ in 0..3 {
        let got = sqs
            .receive_message()
            .queue_url(url)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .send()
            .await
            .unwrap();
        for m in got.messages.unwrap_or_default() {
            out.push(serde_json::from_str(m.body.as_deref().unwrap()).unwrap());
        }
    }
    out
}

async fn org_items(store: &dyn Store, org: &str) -> Vec<Item> {
    let keys = store
        .query_organization(org, PageRequest::default())
        .await
        .unwrap()
        .items;
    let mut items = Vec::new();
    for k in keys {
        if let Some(i) = store.get(&k).await.unwrap() {
            items.push(i);
        }
    }
    items
}

async fn app_webhook(h: &Harness, token: Option<&str>, body: Value) -> StatusCode {
    let router = shared::web::uninstall::router(h.services.callbacks());
    let uri = match token {
        Some(t) => format!("/webhooks/livechat/app?token={t}"),
        None => "/webhooks/livechat/app".into(),
    };
    let req = Request::post(uri)
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .unwrap();
    router.oneshot(req).await.unwrap().status()
}

async fn form(h: &Harness, uri: &str, signed: &str) -> (StatusCode, String) {
    let router = shared::web::uninstall::router(h.services.callbacks());
    let body = format!("signed_request={}", signed);
    let req = Request::post(uri)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Body::from(body))
        .unwrap();
    let res = router.oneshot(req).await.unwrap();
    let status = res.status();
    (
        status,
        String::from_utf8_lossy(&res.into_body().collect().await.unwrap().to_bytes()).to_string(),
    )
}

async fn get(h: &Harness, uri: &str) -> (StatusCode, String) {
    let router = shared::web::uninstall::router(h.services.callbacks());
    let res = router
        .oneshot(Request::get(uri).body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = res.status();
    (
        status,
        String::from_utf8_lossy(&res.into_body().collect().await.unwrap().to_bytes()).to_string(),
    )
}

fn uninstalled(org: &str) -> Value {
    json!({"applicationID": "APP_ID_0001", "applicationName": "igbridge", "clientID": "CLIENT_ID_0001", "date": "2026-03-01T12:00:00+00:00",
           "event": "application_uninstalled", "licenseID": 100000001, "organizationID": org, "payload": {"applicationID": "APP_ID_0001"},
           "userID": "00000000-0000-4000-8000-00000000b001"})
}

/// Org A with a real conversation (contact, chat route, links, idempotency) and org B alongside.
async fn two_tenants(h: &Harness) {
    h.deliver(&webhook(vec![text("MID_TEXT_0001", "hello")]))
        .await;
    assert!(h.work().await.is_empty());
    h.install(ORG_B, IG_B, "dal:AGENT-B", "PAGE-TOKEN-B").await;
    h.seed_contact(
        ORG_B,
        IG_B,
        "IGSID_2002",
        "CHAT_B",
        Some(chrono::Duration::hours(1)),
    )
    .await;
}

#[tokio::test]
async fn uninstall_revokes_wipes_and_the_sweep_purges_only_that_organization_after_7_days() {
    let (h, store, sqs, audit_url) = on_moto().await;
    two_tenants(&h).await;
    let before_b = org_items(store.as_ref(), ORG_B).await;
    assert!(before_b.len() >= 5);
    assert!(org_items(store.as_ref(), ORG).await.len() >= 8);

    assert_eq!(
        app_webhook(&h, Some("lc-app-token"), uninstalled(ORG)).await,
        StatusCode::OK
    );

    let graph = h.graph.received_requests().await.unwrap();
    let deletes: Vec<(String, String)> = graph
        .iter()
        .filter(|r| r.method.as_str() == "DELETE")
        .map(|r| {
            (
                r.url.path().to_string(),
                r.headers["authorization"].to_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        deletes,
        vec![
            (
                format!("/v25.0/PAGE-{IG}/subscribed_apps"),
                "Bearer PAGE-TOKEN-A".to_string()
            ),
            (
                "/v25.0/fbuser/permissions".to_string(),
                "Bearer 1234|meta-app-secret".to_string()
            ),
        ]
    );
    let lc = h.requests("/v2/token").await;
    assert_eq!(lc.len(), 1);
    assert_eq!(lc[0].method.as_str(), "DELETE");
    assert_eq!(lc[0].headers["authorization"], "Bearer refresh-dal:AGENT-A");

    // Every token wiped at once, every item of A carries a TTL within 7 days, routing stopped.
    let deadline = h.clock.now().timestamp() + 7 * 24 * 3600;
    let items = org_items(store.as_ref(), ORG).await;
    for item in &items {
        let text = Value::Object(item.attributes().clone()).to_string();
        assert!(!text.contains("\"v1:"), "token left in {:?}", item.key());
        let ttl = item
            .expires_at()
            .unwrap_or_else(|| panic!("{:?} has no TTL", item.key()));
        assert!(ttl <= deadline);
    }
    assert!(
        store
            .get(&AccountRoute::key_for(&IgAccountId::from(IG)))
            .await
            .unwrap()
            .is_none()
    );
    let inst = h.installation(ORG).await;
    assert_eq!(inst.status, InstallationStatus::Uninstalled);

    // A replay changes nothing and revokes nothing again.
    assert_eq!(
        app_webhook(&h, Some("lc-app-token"), uninstalled(ORG)).await,
        StatusCode::OK
    );
    assert_eq!(
        h.graph
            .received_requests()
            .await
            .unwrap()
            .iter()
            .filter(|r| r.method.as_str() == "DELETE")
            .count(),
        2
    );
    assert_eq!(h.requests("/v2/token").await.len(), 1);

    // Not due yet: a sweep deletes nothing.
    let early = h
        .services
        .lifecycle()
        .sweep(h.clock.now(), false)
        .await
        .unwrap();
    assert_eq!(early.due, 0);
    assert_eq!(org_items(store.as_ref(), ORG).await.len(), items.len());

    h.clock.advance(chrono::Duration::days(7));
    let dry = h
        .services
        .lifecycle()
        .sweep(h.clock.now(), true)
        .await
        .unwrap();
    assert_eq!((dry.due, dry.items_deleted), (1, items.len()));
    assert_eq!(
        org_items(store.as_ref(), ORG).await.len(),
        items.len(),
        "a dry run deletes nothing"
    );
    let report = h
        .services
        .lifecycle()
        .sweep(h.clock.now(), false)
        .await
        .unwrap();
    assert_eq!(
        (report.due, report.organizations, report.items_deleted),
        (1, 1, items.len())
    );
    assert!(
        org_items(store.as_ref(), ORG).await.is_empty(),
        "zero items of the organization remain"
    );
    assert!(
        store
            .get(&Installation::key_for(&OrgId::from(ORG)))
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(
        org_items(store.as_ref(), ORG_B).await,
        before_b,
        "the other organization is intact"
    );
    // Idempotent: the next sweep finds nothing.
    assert_eq!(
        h.services
            .lifecycle()
            .sweep(h.clock.now(), false)
            .await
            .unwrap()
            .due,
        0
    );

    let kinds: Vec<String> = audit(&sqs, &audit_url)
        .await
        .iter()
        .map(|e| e["detail-type"].as_str().unwrap().to_string())
        .collect();
    assert!(
        kinds.contains(&"igbridge.uninstalled".to_string())
            && kinds.contains(&"igbridge.purged".to_string()),
        "{kinds:?}"
    );
}

#[tokio::test]
async fn forged_app_webhooks_are_rejected_and_change_nothing() {
    let h = Harness::new().await;
    assert_eq!(
        app_webhook(&h, None, uninstalled(ORG)).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        app_webhook(&h, Some("lc-app-tokeN"), uninstalled(ORG)).await,
        StatusCode::UNAUTHORIZED
    );
    let mut other = uninstalled(ORG);
    other["clientID"] = json!("SOMEONE_ELSE");
    assert_eq!(
        app_webhook(&h, Some("lc-app-token"), other).await,
        StatusCode::FORBIDDEN
    );
    let inst = h.installation(ORG).await;
    assert_eq!(inst.status, InstallationStatus::Active);
    assert!(inst.access_token.is_some());
    assert!(h.graph.received_requests().await.unwrap().is_empty());
    assert!(h.requests("/v2/token").await.is_empty());
    // Other app events are acknowledged.
    let mut installed = uninstalled(ORG);
    installed["event"] = json!("application_installed");
    assert_eq!(
        app_webhook(&h, Some("lc-app-token"), installed).await,
        StatusCode::OK
    );
}

/// LiveChat documents the app webhook's fields as strings; one of another type reads as absent
/// (as it always did), never as an unreadable body: an uninstall with an odd `date` still
/// uninstalls (a 400 would not be retried, and the tokens and data would stay), and a body that
/// is JSON but no object names no client of ours.
#[tokio::test]
async fn an_app_webhook_is_read_field_by_field() {
    let h = Harness::new().await;
    for odd in [json!(null), json!("x"), json!([1])] {
        assert_eq!(
            app_webhook(&h, Some("lc-app-token"), odd).await,
            StatusCode::FORBIDDEN
        );
    }
    let mut other_event = uninstalled(ORG);
    other_event["event"] = json!(7);
    assert_eq!(
        app_webhook(&h, Some("lc-app-token"), other_event).await,
        StatusCode::OK
    );
    assert_eq!(h.installation(ORG).await.status, InstallationStatus::Active);
    let mut odd_date = uninstalled(ORG);
    odd_date["date"] = json!(1772366400);
    assert_eq!(
        app_webhook(&h, Some("lc-app-token"), odd_date).await,
        StatusCode::OK
    );
    assert_eq!(
        h.installation(ORG).await.status,
        InstallationStatus::Uninstalled
    );
}

#[tokio::test]
async fn a_failed_revocation_is_retried_by_the_sweeper_and_the_purge_happens_regardless() {
    let h = Harness::new().await;
    Mock::given(method("DELETE"))
        .and(path("/v2/token"))
        .respond_with(ResponseTemplate::new(503))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&h.livechat)
        .await;
    assert_eq!(
        app_webhook(&h, Some("lc-app-token"), uninstalled(ORG)).await,
        StatusCode::OK
    );
    let pending: Vec<PendingRevocation> = h
        .services
        .repo
        .query_prefix(PendingRevocation::PARTITION, "")
        .await
        .unwrap();
    assert_eq!(pending.len(), 1);
    assert!(matches!(pending[0].revocation, Revocation::Livechat { .. }));
    let report = h
        .services
        .lifecycle()
        .sweep(h.clock.now(), false)
        .await
        .unwrap();
    assert_eq!(
        (report.revocations_done, report.revocations_pending),
        (1, 0)
    );
    assert_eq!(h.requests("/v2/token").await.len(), 2);
    assert!(
        h.services
            .repo
            .query_prefix::<PendingRevocation>(PendingRevocation::PARTITION, "")
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn deauthorize_disconnects_the_users_accounts_tells_the_chats_and_schedules_the_purge() {
    let (h, store, _, _) = on_moto().await;
    two_tenants(&h).await;
    let secret = b"meta-app-secret";
    let forged = sign_request(
        b"wrong-secret",
        &json!({"algorithm": "HMAC-SHA256", "user_id": "fbuser", "issued_at": 1}),
    );
    assert_eq!(
        form(&h, "/meta/deauthorize", &forged).await.0,
        StatusCode::FORBIDDEN
    );
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
    assert_eq!(conn.status, ConnectionStatus::Connected, "nothing changed");

    // A captured request replayed after more than a day: refused, nothing changes.
    let now = h.clock.now().timestamp();
    let stale = sign_request(
        secret,
        &json!({"algorithm": "HMAC-SHA256", "user_id": "fbuser", "issued_at": now - 86_401}),
    );
    assert_eq!(
        form(&h, "/meta/deauthorize", &stale).await.0,
        StatusCode::BAD_REQUEST
    );
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
    assert_eq!(conn.status, ConnectionStatus::Connected, "nothing changed");

    let good = sign_request(
        secret,
        &json!({"algorithm": "HMAC-SHA256", "user_id": "fbuser", "issued_at": now - 5}),
    );
    assert_eq!(form(&h, "/meta/deauthorize", &good).await.0, StatusCode::OK);
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
    assert_eq!(conn.status, ConnectionStatus::Disconnected);
    assert!(conn.page_token.is_none());
    assert!(
        store
            .get(&AccountRoute::key_for(&IgAccountId::from(IG)))
            .await
            .unwrap()
            .is_none()
    );
    let notices = h.calls("send_event").await;
    assert_eq!(notices.len(), 1);
    assert_eq!(
        notices[0]["event"]["text"],
        "The Instagram account connected to this chat was disconnected. Messages are no longer bridged."
    );
    // Organization B (another Facebook user) is untouched.
    assert!(
        store
            .get(&AccountRoute::key_for(&IgAccountId::from(IG_B)))
            .await
            .unwrap()
            .is_some()
    );

    h.clock.advance(chrono::Duration::days(7));
    let report = h
        .services
        .lifecycle()
        .sweep(h.clock.now(), false)
        .await
        .unwrap();
    assert_eq!(report.users, 1);
    assert!(
        store
            .get(&InstagramConnection::key_for(
                &OrgId::from(ORG),
                &IgAccountId::from(IG)
            ))
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        store
            .get(&Contact::key_for(
                &OrgId::from(ORG),
                &IgAccountId::from(IG),
                &Igsid::from(IGSID)
            ))
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        store
            .get(&ChatRoute::key_for(
                &OrgId::from(ORG),
                &ChatId::from("CHAT000001")
            ))
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        store
            .get(&MessageLink::key_for(
                &OrgId::from(ORG),
                &IgAccountId::from(IG),
                &Mid::from("MID_TEXT_0001")
            ))
            .await
            .unwrap()
            .is_none()
    );
    // The LiveChat installation itself stays: only the Facebook user's connection went.
    assert!(
        store
            .get(&Installation::key_for(&OrgId::from(ORG)))
            .await
            .unwrap()
            .is_some()
    );
    assert!(
        store
            .get(&Contact::key_for(
                &OrgId::from(ORG_B),
                &IgAccountId::from(IG_B),
                &Igsid::from("IGSID_2002")
            ))
            .await
            .unwrap()
            .is_some()
    );
}

#[tokio::test]
async fn data_deletion_answers_with_a_status_url_and_completes_after_the_sweep() {
    let h = Harness::new().await;
    let signed = sign_request(
        b"meta-app-secret",
        &json!({"algorithm": "HMAC-SHA256", "expires": h.clock.now().timestamp() + 3600, "issued_at": h.clock.now().timestamp(), "user_id": "fbuser"}),
    );
    let (status, body) = form(&h, "/meta/data-deletion", &signed).await;
    assert_eq!(status, StatusCode::OK);
    let answer: Value = serde_json::from_str(&body).unwrap();
    let code = answer["confirmation_code"].as_str().unwrap().to_string();
    assert!(code.chars().all(|c| c.is_ascii_alphanumeric()) && code.len() >= 12);
    assert_eq!(
        answer["url"],
        format!("https://bridge.example.com/meta/data-deletion/{code}")
    );

    let (status, page) = get(&h, &format!("/meta/data-deletion/{code}")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("Deletion pending") && !page.contains("fbuser"));
    h.clock.advance(chrono::Duration::days(7));
    let report = h
        .services
        .lifecycle()
        .sweep(h.clock.now(), false)
        .await
        .unwrap();
    assert_eq!(report.requests_completed, 1);
    let (_, page) = get(&h, &format!("/meta/data-deletion/{code}")).await;
    assert!(page.contains("Deletion completed") && !page.contains("fbuser"));
    let request: DeletionRequest = h
        .services
        .repo
        .get(&DeletionRequest::key_for(&DeletionCode::from(&code)))
        .await
        .unwrap()
        .unwrap();
    assert!(
        request.facebook_user_id.is_none(),
        "the user id is gone once done"
    );
    assert_eq!(
        get(&h, "/meta/data-deletion/NOPE0000").await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        get(&h, "/meta/data-deletion/%3Cscript%3E").await.0,
        StatusCode::NOT_FOUND
    );

    for bad in ["", "garbage", "a.b"] {
        let (status, _) = form(&h, "/meta/data-deletion", bad).await;
        assert!(
            status == StatusCode::BAD_REQUEST || status == StatusCode::FORBIDDEN,
            "{bad}: {status}"
        );
    }
}

#[tokio::test]
async fn lifecycle_events_reach_eventbridge_with_ids_only() {
    let (h, _, sqs, url) = on_moto().await;
    let mut e = LifecycleEvent::new(LifecycleKind::InstagramConnected, h.clock.now())
        .org(&OrgId::from(ORG))
        .account(&IgAccountId::from(IG));
    e.items = None;
    h.services
        .events
        .publish(&[
            e.clone(),
            LifecycleEvent::new(LifecycleKind::Installed, h.clock.now()).org(&OrgId::from(ORG)),
        ])
        .await
        .unwrap();
    let got = audit(&sqs, &url).await;
    assert_eq!(got.len(), 2);
    let connected = got
        .iter()
        .find(|g| g["detail-type"] == "igbridge.instagram_connected")
        .unwrap();
    assert_eq!(connected["source"], "igbridge");
    assert_eq!(
        connected["detail"],
        json!({"kind": "instagram_connected", "organization_id": ORG, "ig_account_id": IG, "at": "2026-03-01T12:00:00Z"})
    );
    let _ = Duration::from_secs(0);
}

#[tokio::test]
async fn the_facebook_grant_is_kept_while_another_live_installation_uses_it() {
    // One person connected Pages to two LiveChat organizations. `DELETE /{user}/permissions`
    // would kill both; uninstalling one must unsubscribe only its own Page.
    let h = Harness::new().await;
    h.install_as(ORG_B, IG_B, "dal:AGENT-B", "PAGE-TOKEN-B", "fbuser")
        .await;
    assert_eq!(
        app_webhook(&h, Some("lc-app-token"), uninstalled(ORG)).await,
        StatusCode::OK
    );
    h.assert_nothing_refused();
    assert_eq!(
        h.graph.subscription(&format!("PAGE-{IG}")),
        None,
        "A's Page unsubscribed"
    );
    assert!(
        h.graph.subscription(&format!("PAGE-{IG_B}")).is_some(),
        "B's Page still subscribed"
    );
    assert!(
        h.graph.revoked_users().is_empty(),
        "the grant B depends on is kept"
    );
    // B's Page token still works: an agent reply goes out.
    h.seed_contact(
        ORG_B,
        IG_B,
        "IGSID_2002",
        "CHAT_B",
        Some(chrono::Duration::hours(1)),
    )
    .await;
    let reply = json!({"webhook_id": "W", "secret_key": "lc-webhook-secret", "action": "incoming_event",
        "organization_id": ORG_B, "payload": {"chat_id": "CHAT_B", "thread_id": "THREAD0001",
        "event": {"id": "THREAD0001_5", "type": "message", "text": "still here", "author_id": "agent1@example.com", "visibility": "all"}}});
    assert_eq!(h.post_livechat(&reply).await, StatusCode::OK);
    assert!(h.work_outbound().await.is_empty());
    assert_eq!(h.graph.sent().len(), 1);

    // When the last installation using the grant goes, the grant goes too.
    assert_eq!(
        app_webhook(&h, Some("lc-app-token"), uninstalled(ORG_B)).await,
        StatusCode::OK
    );
    assert_eq!(h.graph.revoked_users(), vec!["fbuser".to_string()]);
    assert_eq!(h.graph.subscription(&format!("PAGE-{IG_B}")), None);
    h.assert_nothing_refused();
}

#[tokio::test]
async fn a_deferred_page_unsubscribe_spares_a_page_another_installation_connected_since() {
    let h = Harness::new().await;
    let page_id = format!("PAGE-{IG}");
    h.graph.fail_next(
        "DELETE",
        "subscribed_apps",
        testkit::fixture("meta/error_2_service"),
        1,
    );
    assert_eq!(
        app_webhook(&h, Some("lc-app-token"), uninstalled(ORG)).await,
        StatusCode::OK
    );
    let pending: Vec<PendingRevocation> = h
        .services
        .repo
        .query_prefix(PendingRevocation::PARTITION, "")
        .await
        .unwrap();
    assert!(
        pending
            .iter()
            .any(|p| matches!(p.revocation, Revocation::PageSubscription { .. })),
        "{pending:?}"
    );
    // Before the sweeper retries, another organization connects the same Page.
    let org_b = "00000000-0000-4000-8000-00000000a0b0";
    h.install_as(org_b, IG, "dal:AGENT-B", "PAGE-TOKEN-B", "fbuser-b")
        .await;
    let report = h
        .services
        .lifecycle()
        .sweep(h.clock.now(), false)
        .await
        .unwrap();
    assert_eq!(report.revocations_pending, 0);
    let unsubscribes = h
        .graph
        .calls()
        .into_iter()
        .filter(|c| c.method == "DELETE" && c.path.ends_with("subscribed_apps"))
        .count();
    assert_eq!(unsubscribes, 1, "only the failed attempt; no retry");
    assert!(
        h.graph.subscription(&page_id).is_some(),
        "org B keeps receiving the Page's messages"
    );
}

#[tokio::test]
async fn revocations_failing_in_an_outage_do_not_hold_up_the_purges() {
    let h = Harness::new().await;
    // LiveChat's token endpoint is down for the whole run.
    Mock::given(method("DELETE"))
        .and(path("/v2/token"))
        .respond_with(ResponseTemplate::new(503))
        .with_priority(1)
        .mount(&h.livechat)
        .await;
    let repo = &h.services.repo;
    let cfg = &h.services.config;
    for i in 0..50 {
        repo.put(
            &PendingRevocation {
                organization_id: format!("gone-{i}").into(),
                id: "livechat".into(),
                revocation: Revocation::Livechat {
                    token: seal(
                        cfg,
                        "dal:OLD",
                        TokenContext::LivechatRevoke {
                            org: &format!("gone-{i}"),
                        },
                    ),
                },
                attempts: 1,
                expires_at: h.clock.now().timestamp() + 86_400,
            },
            Condition::Always,
        )
        .await
        .unwrap();
    }
    assert_eq!(
        app_webhook(&h, Some("lc-app-token"), uninstalled(ORG)).await,
        StatusCode::OK
    );
    h.clock
        .advance(chrono::Duration::days(7) + chrono::Duration::minutes(1));
    let deletes = || async {
        h.livechat
            .received_requests()
            .await
            .unwrap()
            .iter()
            .filter(|r| r.method.as_str() == "DELETE")
            .count()
    };
    let before = deletes().await;
    let report = h
        .services
        .lifecycle()
        .sweep(h.clock.now(), false)
        .await
        .unwrap();
    assert_eq!(report.organizations, 1, "the due purge ran");
    assert!(
        org_items(h.services.repo.store().as_ref(), ORG)
            .await
            .is_empty()
    );
    let tried = deletes().await - before;
    assert_eq!(tried, shared::lifecycle::sweeper::MAX_REVOCATIONS_PER_RUN);
    assert_eq!(
        report.revocations_pending, 50,
        "the rest wait for the next run"
    );
}

#[tokio::test]
async fn an_uninstall_dated_before_the_current_installation_leaves_it_alone() {
    let h = Harness::new().await;
    let mut late = uninstalled(ORG);
    // The webhook of an earlier installation's uninstall, delivered (or replayed) late.
    late["date"] = json!("2026-02-28T09:00:00+01:00");
    assert_eq!(
        app_webhook(&h, Some("lc-app-token"), late).await,
        StatusCode::OK
    );
    let inst = h.installation(ORG).await;
    assert_eq!(inst.status, InstallationStatus::Active);
    assert!(h.livechat.token_live("dal:AGENT-A"), "no token revoked");
    // The current one's uninstall still works.
    assert_eq!(
        app_webhook(&h, Some("lc-app-token"), uninstalled(ORG)).await,
        StatusCode::OK
    );
    let inst = h.installation(ORG).await;
    assert_eq!(inst.status, InstallationStatus::Uninstalled);
}

/// A store that writes `between` once, right after the first batch read: what a reinstall
/// writes between the uninstall's marking reading a page and writing it back.
struct Between {
    inner: Arc<shared::store::MemoryStore>,
    between: std::sync::Mutex<Option<Vec<Item>>>,
}

#[async_trait::async_trait]
impl Store for Between {
    async fn put(&self, i: Item, c: Condition) -> Result<(), shared::store::StoreError> {
        self.inner.put(i, c).await
    }
    async fn get(&self, k: &shared::store::Key) -> Result<Option<Item>, shared::store::StoreError> {
        self.inner.get(k).await
    }
    async fn delete(
        &self,
        k: &shared::store::Key,
        c: Condition,
    ) -> Result<Option<Item>, shared::store::StoreError> {
        self.inner.delete(k, c).await
    }
    async fn query(
        &self,
        pk: &str,
        r: &shared::store::SkRange,
        p: PageRequest,
    ) -> Result<shared::store::Page<Item>, shared::store::StoreError> {
        self.inner.query(pk, r, p).await
    }
    async fn query_organization(
        &self,
        o: &str,
        p: PageRequest,
    ) -> Result<shared::store::Page<shared::store::Key>, shared::store::StoreError> {
        self.inner.query_organization(o, p).await
    }
    async fn set_expiry(
        &self,
        k: &shared::store::Key,
        e: i64,
    ) -> Result<bool, shared::store::StoreError> {
        self.inner.set_expiry(k, e).await
    }
    async fn delete_many(&self, k: &[shared::store::Key]) -> Result<(), shared::store::StoreError> {
        self.inner.delete_many(k).await
    }
    async fn get_many(
        &self,
        k: &[shared::store::Key],
    ) -> Result<Vec<Item>, shared::store::StoreError> {
        let read = self.inner.get_many(k).await;
        let writes = self.between.lock().unwrap().take();
        for item in writes.into_iter().flatten() {
            self.inner.put(item, Condition::Always).await.unwrap();
        }
        read
    }
    async fn put_many(&self, i: Vec<Item>) -> Result<(), shared::store::StoreError> {
        self.inner.put_many(i).await
    }
    async fn transact(
        &self,
        w: Vec<shared::store::TransactWrite>,
    ) -> Result<(), shared::store::StoreError> {
        self.inner.transact(w).await
    }
}

/// The uninstall's marking reads a page of the organization's items and writes them back with
/// their expiry; a reinstall landing in between (its installation, its connection with a new
/// Page token, a contact its worker gave a new customer token) used to be overwritten by the
/// stale copies: the contact lost its token and was purged with the old installation's
/// leftovers. Marked items are now written only if unchanged
/// and while the installation is still the uninstalled one.
#[tokio::test]
async fn marking_never_overwrites_what_a_reinstall_wrote_meanwhile() {
    let store = Arc::new(Between {
        inner: Arc::new(shared::store::MemoryStore::new()),
        between: std::sync::Mutex::new(None),
    });
    let h = Harness::with_store(store.clone()).await;
    h.deliver(&webhook(vec![text("MID_TEXT_0001", "hello")]))
        .await;
    assert!(h.work().await.is_empty());
    let repo = &h.services.repo;
    let mut reinstalled = h.installation(ORG).await;
    let mut reconnected: InstagramConnection = repo
        .get(&InstagramConnection::key_for(
            &OrgId::from(ORG),
            &IgAccountId::from(IG),
        ))
        .await
        .unwrap()
        .unwrap();
    let mut contact: Contact = repo
        .get(&Contact::key_for(
            &OrgId::from(ORG),
            &IgAccountId::from(IG),
            &Igsid::from(IGSID),
        ))
        .await
        .unwrap()
        .unwrap();
    assert!(contact.customer_token.is_some());
    h.clock.advance(chrono::Duration::seconds(30));
    reinstalled.version = 100;
    reinstalled.updated_at = h.clock.now();
    reconnected.updated_at = h.clock.now();
    reconnected.connected_at = h.clock.now();
    // The reinstalled installation's worker renews the customer's token on the contact.
    contact.version += 5;
    contact.updated_at = h.clock.now();
    *store.between.lock().unwrap() = Some(vec![
        shared::store::Repo::to_item(&reinstalled).unwrap(),
        shared::store::Repo::to_item(&reconnected).unwrap(),
        shared::store::Repo::to_item(&contact).unwrap(),
    ]);
    let report = h
        .services
        .lifecycle()
        .uninstall_until(
            &OrgId::from(ORG),
            None,
            std::time::Instant::now() + Duration::from_secs(30),
        )
        .await
        .unwrap();
    assert!(report.uninstalled);
    assert!(
        store.between.lock().unwrap().is_none(),
        "the reinstall landed"
    );
    let conn: InstagramConnection = repo
        .get(&InstagramConnection::key_for(
            &OrgId::from(ORG),
            &IgAccountId::from(IG),
        ))
        .await
        .unwrap()
        .unwrap();
    assert!(conn.page_token.is_some(), "the reinstall's token kept");
    assert_eq!(conn.expires_at, None, "not marked for the purge");
    assert_eq!(conn.status, ConnectionStatus::Connected);
    let contact: Contact = repo
        .get(&Contact::key_for(
            &OrgId::from(ORG),
            &IgAccountId::from(IG),
            &Igsid::from(IGSID),
        ))
        .await
        .unwrap()
        .unwrap();
    assert!(
        contact.customer_token.is_some(),
        "the reinstall's customer token kept"
    );
    assert_eq!(
        contact.expires_at, None,
        "the contact not marked for the purge"
    );
    let inst = h.installation(ORG).await;
    assert_eq!(inst.status, InstallationStatus::Active);
    assert_eq!(inst.expires_at, None);
}

/// LiveChat dates app webhooks to the second: an uninstall in the second its installation was
/// made (install and uninstall a moment apart) is this installation's, not an earlier one's.
#[tokio::test]
async fn an_uninstall_dated_in_the_second_of_the_install_applies() {
    let h = Harness::new().await;
    h.install(ORG_B, IG_B, "dal:AGENT-B", "PAGE-TOKEN-B").await;
    // Installed 700 ms into a second (the install flow stamps it with the clock).
    let mut inst = h.installation(ORG_B).await;
    inst.installed_at = h.clock.now() + chrono::Duration::milliseconds(700);
    h.services.repo.put(&inst, Condition::Always).await.unwrap();
    let installed_at = h.installation(ORG_B).await.installed_at;
    assert_ne!(installed_at.timestamp_subsec_millis(), 0, "{installed_at}");
    let mut same_second = uninstalled(ORG_B);
    same_second["date"] = json!(installed_at.format("%Y-%m-%dT%H:%M:%S+00:00").to_string());
    assert_eq!(
        app_webhook(&h, Some("lc-app-token"), same_second).await,
        StatusCode::OK
    );
    let inst = h.installation(ORG_B).await;
    assert_eq!(inst.status, InstallationStatus::Uninstalled);
    assert!(!h.livechat.token_live("dal:AGENT-B"), "its token revoked");
}

#[tokio::test]
async fn a_reinstall_within_the_7_days_survives_the_purge_of_what_the_uninstall_left() {
    let h = Harness::new().await;
    two_tenants(&h).await;
    assert_eq!(
        app_webhook(&h, Some("lc-app-token"), uninstalled(ORG)).await,
        StatusCode::OK
    );
    let left = org_items(h.services.repo.store().as_ref(), ORG).await.len();
    assert!(
        left > 3,
        "the old conversation's items are marked, not gone: {left}"
    );
    // Installed and connected again two days later (the install writes; it deletes nothing).
    h.clock.advance(chrono::Duration::days(2));
    h.install(ORG, IG, "dal:AGENT-A2", "PAGE-TOKEN-A2").await;
    // The customer of the old conversation writes again: the contact and its chat are live
    // again, not leftovers.
    let mut again = text("MID_TEXT_0009", "back again");
    again["timestamp"] = json!(h.clock.now().timestamp_millis());
    h.deliver(&webhook(vec![again])).await;
    assert!(h.work().await.is_empty());
    h.clock
        .advance(chrono::Duration::days(5) + chrono::Duration::minutes(1));
    let report = h
        .services
        .lifecycle()
        .sweep(h.clock.now(), false)
        .await
        .unwrap();
    assert_eq!(report.organizations, 1);
    let kinds: BTreeSet<String> = org_items(h.services.repo.store().as_ref(), ORG)
        .await
        .iter()
        .map(|i| i.str("kind").unwrap().to_string())
        .collect();
    for kept in [
        "account_route",
        "facebook_user_link",
        "installation",
        "instagram_connection",
        "contact",
        "chat_route",
        "message_link",
    ] {
        assert!(kinds.contains(kept), "{kept} kept: {kinds:?}");
    }
    let contact = h.contact().await.expect("the returning customer's contact");
    assert_eq!(contact.expires_at, None);
    let route: ChatRoute = h
        .services
        .repo
        .get(&ChatRoute::key_for(
            &OrgId::from(ORG),
            &ChatId::from(contact.chat_id.as_deref().unwrap()),
        ))
        .await
        .unwrap()
        .expect("its chat still routes agent replies");
    assert_eq!(route.expires_at, None);
    assert!(
        h.services
            .repo
            .get::<MessageLink>(&MessageLink::key_for(
                &OrgId::from(ORG),
                &IgAccountId::from(IG),
                &Mid::from("MID_TEXT_0001")
            ))
            .await
            .unwrap()
            .is_none(),
        "the old conversation's links are gone"
    );
    assert!(
        h.services
            .repo
            .get::<MessageLink>(&MessageLink::key_for(
                &OrgId::from(ORG),
                &IgAccountId::from(IG),
                &Mid::from("MID_TEXT_0009")
            ))
            .await
            .unwrap()
            .is_some(),
        "the new message's link stays"
    );
    let inst = h.installation(ORG).await;
    assert_eq!(inst.status, InstallationStatus::Active);
    assert_eq!(report.due, 1, "the purge entry was spent");
}

#[tokio::test]
async fn a_reinstalled_organization_with_tens_of_thousands_of_leftovers_is_purged_across_runs() {
    let h = Harness::new().await;
    assert_eq!(
        app_webhook(&h, Some("lc-app-token"), uninstalled(ORG)).await,
        StatusCode::OK
    );
    // A month of message links left by the uninstall (carrying its mark).
    let mark = h.clock.now().timestamp() + shared::lifecycle::RETENTION_AFTER_UNINSTALL_SECS;
    for i in 0..60_000 {
        h.services
            .repo
            .put(
                &MessageLink {
                    organization_id: ORG.into(),
                    ig_account_id: IG.into(),
                    mid: format!("MID_OLD_{i:05}").into(),
                    chat_id: "CHAT000001".into(),
                    thread_id: None,
                    event_ids: vec![format!("E{i}").into()],
                    event_threads: vec![],
                    direction: Direction::Inbound,
                    created_at: h.clock.now(),
                    expires_at: mark,
                },
                Condition::Always,
            )
            .await
            .unwrap();
    }
    h.clock.advance(chrono::Duration::days(1));
    h.install(ORG, IG, "dal:AGENT-A2", "PAGE-TOKEN-A2").await;
    h.clock
        .advance(chrono::Duration::days(5) + chrono::Duration::minutes(1));
    let lifecycle = h.services.lifecycle();
    let first = lifecycle.sweep(h.clock.now(), false).await.unwrap();
    assert_eq!(
        first.organizations, 0,
        "one run does not cover 60,000 reads"
    );
    assert!(first.items_deleted > 0);
    let second = lifecycle.sweep(h.clock.now(), false).await.unwrap();
    assert_eq!(second.organizations, 1, "the next run finishes");
    let left = org_items(h.services.repo.store().as_ref(), ORG).await;
    assert!(
        left.iter().all(|i| i.str("kind") != Some("message_link")),
        "every leftover link is gone"
    );
    assert_eq!(h.installation(ORG).await.status, InstallationStatus::Active);
    let third = lifecycle.sweep(h.clock.now(), false).await.unwrap();
    assert_eq!(third.due, 0, "the purge entry was spent");
}

#[tokio::test]
async fn an_account_connected_again_after_a_data_deletion_request_survives_its_purge() {
    let h = Harness::new().await;
    h.deliver(&webhook(vec![text("MID_TEXT_0001", "hello")]))
        .await;
    assert!(h.work().await.is_empty());
    let signed = sign_request(
        b"meta-app-secret",
        &json!({"algorithm": "HMAC-SHA256", "expires": h.clock.now().timestamp() + 3600, "issued_at": h.clock.now().timestamp(), "user_id": "fbuser"}),
    );
    let (status, body) = form(&h, "/meta/data-deletion", &signed).await;
    assert_eq!(status, StatusCode::OK);
    let code = serde_json::from_str::<Value>(&body).unwrap()["confirmation_code"]
        .as_str()
        .unwrap()
        .to_string();
    let repo = &h.services.repo;
    assert!(
        repo.get::<AccountRoute>(&AccountRoute::key_for(&IgAccountId::from(IG)))
            .await
            .unwrap()
            .is_none(),
        "routing stopped at once"
    );
    // Two days later the same person connects the account again: a new consent.
    h.clock.advance(chrono::Duration::days(2));
    h.install_as(ORG, IG, "dal:AGENT-A", "PAGE-TOKEN-A3", "fbuser")
        .await;
    h.clock.advance(chrono::Duration::days(5));
    let report = h
        .services
        .lifecycle()
        .sweep(h.clock.now(), false)
        .await
        .unwrap();
    assert_eq!(report.requests_completed, 1);
    let conn: InstagramConnection = repo
        .get(&InstagramConnection::key_for(
            &OrgId::from(ORG),
            &IgAccountId::from(IG),
        ))
        .await
        .unwrap()
        .expect("the new connection survives the purge");
    assert_eq!(conn.status, ConnectionStatus::Connected);
    assert!(
        repo.get::<AccountRoute>(&AccountRoute::key_for(&IgAccountId::from(IG)))
            .await
            .unwrap()
            .is_some(),
        "and keeps routing"
    );
    // Messages flow again.
    h.deliver(&webhook(vec![text("MID_TEXT_0002", "back again")]))
        .await;
    assert!(h.work().await.is_empty());
    assert_eq!(
        h.livechat.action_calls("send_event").len(),
        2,
        "the message before the request and the one after the reconnection"
    );
    // The status record holds the code and the outcome, no personal data.
    let request: DeletionRequest = repo
        .get(&DeletionRequest::key_for(&DeletionCode::from(&code)))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(request.status, DeletionStatus::Completed);
    let item = shared::store::Repo::to_item(&request).unwrap();
    let text = serde_json::to_string(item.attributes()).unwrap();
    for personal in ["fbuser", IG, ORG, IGSID] {
        assert!(!text.contains(personal), "{personal} in {text}");
    }
}

/// One record of every kind for the organization: after uninstall and the sweep at +7 days,
/// nothing mentioning it is left, whatever the kind (lifecycle::retention lists them all).
#[tokio::test]
async fn every_record_kind_of_an_organization_is_gone_7_days_after_uninstall() {
    use shared::lifecycle::retention::{Retention, retention_of};
    use shared::store::Record;
    let h = Harness::new().await;
    two_tenants(&h).await;
    let store = h.services.repo.store().clone();
    let samples = testkit::records::every_kind(ORG, &h.services.config.cipher, h.clock.now());
    for (item, _) in samples {
        // The samples' installation stands in for the harness's (same key).
        store.put(item, Condition::Always).await.unwrap();
    }
    let report = h
        .services
        .lifecycle()
        .uninstall(&OrgId::from(ORG), None)
        .await
        .unwrap();
    assert!(report.uninstalled);
    h.clock.advance(chrono::Duration::days(7));
    for _ in 0..2 {
        h.services
            .lifecycle()
            .sweep(h.clock.now(), false)
            .await
            .unwrap();
    }
    let now = h.clock.now().timestamp();
    let mut left_for_b = 0;
    for item in org_items(store.as_ref(), ORG_B).await {
        left_for_b += usize::from(item.str("organization_id") == Some(ORG_B));
    }
    assert!(left_for_b > 3, "the other tenant is untouched");
    let mut everything = Vec::new();
    let mut page = PageRequest::default();
    // The whole table, through the partitions the test knows of and the organization index.
    for pk in [PurgeEntry::PARTITION, PendingRevocation::PARTITION] {
        everything.extend(
            store
                .query(pk, &shared::store::SkRange::All, page.clone())
                .await
                .unwrap()
                .items,
        );
    }
    page.cursor = None;
    let keys = store.query_organization(ORG, page).await.unwrap().items;
    assert!(keys.is_empty(), "{keys:?}");
    for item in everything {
        let kind = item.str("kind").unwrap_or_default();
        let text = serde_json::to_string(item.attributes()).unwrap();
        assert!(!text.contains(ORG), "{kind} left: {text}");
        let retention = retention_of(kind).expect("listed");
        if let Retention::Expires(_) = retention {
            assert!(item.expires_at().is_some_and(|e| e <= now), "{kind}");
        }
    }
    // Records outside any partition the organization owns: only what expires on its own.
    for (key, kind) in [
        (
            OAuthState::key_for(&FlowId::from("nonce")),
            OAuthState::KIND,
        ),
        (
            DeletionRequest::key_for(&DeletionCode::from("code")),
            DeletionRequest::KIND,
        ),
    ] {
        if let Some(item) = store.get(&key).await.unwrap() {
            assert!(
                !serde_json::to_string(item.attributes())
                    .unwrap()
                    .contains(ORG)
            );
            assert!(
                item.expires_at().is_some_and(|e| e <= now),
                "{kind} expires"
            );
        }
    }
}

/// Review finding: revocations deferred from an uninstall must not cut off the same
/// organization's reinstall that connected the same Page (by the same Facebook user).
#[tokio::test]
async fn deferred_revocations_spare_the_same_organizations_reinstall() {
    let h = Harness::new().await;
    let page_id = format!("PAGE-{IG}");
    // Meta is down during the uninstall: the unsubscribe (and so the grant) is deferred.
    h.graph.fail_next(
        "DELETE",
        "subscribed_apps",
        testkit::fixture("meta/error_2_service"),
        1,
    );
    assert_eq!(
        app_webhook(&h, Some("lc-app-token"), uninstalled(ORG)).await,
        StatusCode::OK
    );
    h.clock.advance(chrono::Duration::minutes(30));
    h.install(ORG, IG, "dal:AGENT-A2", "PAGE-TOKEN-A2").await;
    h.graph
        .subscribe(&page_id, shared::instagram::graph::SUBSCRIBED_FIELDS);
    h.clock.advance(chrono::Duration::hours(1));
    h.services
        .lifecycle()
        .sweep(h.clock.now(), false)
        .await
        .unwrap();
    assert!(
        h.graph.subscription(&page_id).is_some(),
        "the reinstall's Page stays subscribed"
    );
    assert!(h.graph.revoked_users().is_empty(), "its grant stays");
    let pending: Vec<PendingRevocation> = h
        .services
        .repo
        .query_prefix(PendingRevocation::PARTITION, "")
        .await
        .unwrap();
    assert!(
        pending
            .iter()
            .all(|p| matches!(p.revocation, Revocation::Livechat { .. })),
        "the Page and grant revocations are settled: {pending:?}"
    );
}

/// Review finding: a reinstall while an uninstall is still marking leaves the new
/// installation's records unmarked, and its data key live.
#[tokio::test]
async fn a_reinstall_during_marking_stops_it_and_keeps_the_new_records() {
    let h = Harness::new().await;
    for i in 0..3000 {
        h.services
            .repo
            .put(
                &IdempotencyRecord {
                    organization_id: ORG.into(),
                    scope: shared::ids::Stream::Instagram,
                    event_id: format!("E{i:05}").into(),
                    state: IdempotencyState::Done,
                    claimed_at: h.clock.now(),
                    completed_at: Some(h.clock.now()),
                    parts_done: 1,
                    delay_told: false,
                    unsent: false,
                    version: 0,
                    expires_at: h.clock.now().timestamp() + 30 * 24 * 3600,
                },
                Condition::Always,
            )
            .await
            .unwrap();
    }
    // The webhook's invocation ends right after the unskippable part.
    let lifecycle = h.services.lifecycle();
    lifecycle
        .uninstall_until(&OrgId::from(ORG), None, std::time::Instant::now())
        .await
        .unwrap();
    h.clock.advance(chrono::Duration::minutes(10));
    h.install(ORG, IG, "dal:AGENT-A2", "PAGE-TOKEN-A2").await;
    h.clock.advance(chrono::Duration::hours(1));
    let report = lifecycle.sweep(h.clock.now(), false).await.unwrap();
    assert_eq!(report.items_marked, 0, "nothing marked after the reinstall");
    let repo = &h.services.repo;
    let inst = h.installation(ORG).await;
    assert_eq!(inst.status, InstallationStatus::Active);
    assert!(inst.expires_at.is_none());
    let conn: InstagramConnection = repo
        .get(&InstagramConnection::key_for(
            &OrgId::from(ORG),
            &IgAccountId::from(IG),
        ))
        .await
        .unwrap()
        .unwrap();
    assert!(conn.expires_at.is_none() && conn.status == ConnectionStatus::Connected);
    assert!(
        h.services
            .data_keys()
            .to_open(&OrgId::from(ORG))
            .await
            .unwrap()
            .is_some(),
        "the reinstall's data key is live"
    );
    // At the due date only what the uninstall marked goes; the reinstall keeps working.
    h.clock.advance(chrono::Duration::days(6));
    lifecycle.sweep(h.clock.now(), false).await.unwrap();
    h.deliver(&webhook(vec![text("MID_AFTER", "still here")]))
        .await;
    assert!(h.work().await.is_empty());
    assert!(
        h.livechat.action_calls("start_chat").len() + h.livechat.action_calls("send_event").len()
            >= 1
    );
}

/// Review finding: a Facebook user's purge spares an account another user has connected since.
#[tokio::test]
async fn a_data_deletion_request_spares_an_account_someone_else_connected_since() {
    let h = Harness::new().await;
    // Person B connects the same account (its Page admin changed); A's link stays behind.
    h.clock.advance(chrono::Duration::hours(1));
    h.install_as(ORG, IG, "dal:AGENT-A", "PAGE-TOKEN-B", "fbuser-b")
        .await;
    let signed = sign_request(
        b"meta-app-secret",
        &json!({"algorithm": "HMAC-SHA256", "expires": h.clock.now().timestamp() + 3600, "issued_at": h.clock.now().timestamp(), "user_id": "fbuser"}),
    );
    assert_eq!(
        form(&h, "/meta/data-deletion", &signed).await.0,
        StatusCode::OK
    );
    h.clock.advance(chrono::Duration::days(7));
    h.services
        .lifecycle()
        .sweep(h.clock.now(), false)
        .await
        .unwrap();
    let repo = &h.services.repo;
    let conn: InstagramConnection = repo
        .get(&InstagramConnection::key_for(
            &OrgId::from(ORG),
            &IgAccountId::from(IG),
        ))
        .await
        .unwrap()
        .expect("B's connection survives A's request");
    assert_eq!(conn.facebook_user_id, "fbuser-b");
    assert!(
        repo.get::<AccountRoute>(&AccountRoute::key_for(&IgAccountId::from(IG)))
            .await
            .unwrap()
            .is_some()
    );
    assert!(
        repo.get::<FacebookUserLink>(&FacebookUserLink::key_for(
            &FacebookUserId::from("fbuser"),
            &OrgId::from(ORG),
            &IgAccountId::from(IG)
        ))
        .await
        .unwrap()
        .is_none(),
        "A's stale link is gone"
    );
}

/// Review finding: a reinstall that lands while the sweeper is marking (page by page) stops the
/// marking, and no stale copy of the uninstalled records overwrites the reinstall's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reinstall_while_the_sweeper_is_marking_stops_it_between_pages() {
    let store = Arc::new(testkit::store::FaultyStore::default());
    let h = Arc::new(Harness::with_store(store.clone()).await);
    let links: Vec<Item> = (0..12_000)
        .map(|i| {
            shared::store::Repo::to_item(&IdempotencyRecord {
                organization_id: ORG.into(),
                scope: shared::ids::Stream::Instagram,
                event_id: format!("E{i:05}").into(),
                state: IdempotencyState::Done,
                claimed_at: h.clock.now(),
                completed_at: Some(h.clock.now()),
                parts_done: 1,
                delay_told: false,
                unsent: false,
                version: 0,
                expires_at: h.clock.now().timestamp() + 30 * 24 * 3600,
            })
            .unwrap()
        })
        .collect();
    store.put_many(links).await.unwrap();
    let lifecycle = h.services.lifecycle();
    lifecycle
        .uninstall_until(&OrgId::from(ORG), None, std::time::Instant::now())
        .await
        .unwrap();
    // Each page's batch read takes 100 ms, as a large page does on DynamoDB.
    store.fail_when(|op| {
        matches!(op, testkit::store::Op::GetMany(_))
            .then_some(testkit::store::FaultAt::Slow(Duration::from_millis(100)))
    });
    h.clock.advance(chrono::Duration::hours(1));
    let sweep = tokio::spawn({
        let h = h.clone();
        async move { h.services.lifecycle().sweep(h.clock.now(), false).await }
    });
    tokio::time::sleep(Duration::from_millis(150)).await;
    h.install(ORG, IG, "dal:AGENT-A2", "PAGE-TOKEN-A2").await;
    let report = sweep.await.unwrap().unwrap();
    store.heal();
    assert!(
        report.items_marked < 12_000,
        "marking stopped: {}",
        report.items_marked
    );
    let inst = h.installation(ORG).await;
    assert_eq!(inst.status, InstallationStatus::Active, "not overwritten");
    assert!(inst.expires_at.is_none());
    assert!(
        h.services
            .data_keys()
            .to_open(&OrgId::from(ORG))
            .await
            .unwrap()
            .is_some()
    );
    h.deliver(&webhook(vec![text("MID_AFTER", "still here")]))
        .await;
    assert!(h.work().await.is_empty());
}
