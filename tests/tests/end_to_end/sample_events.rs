//! The sample events in events/ (for `cargo lambda invoke --data-file`) are read the way the
//! Lambda runtime reads them and handled by the function they are for, configured as
//! events/local.env configures `cargo lambda watch`: every one is accepted.

use std::collections::BTreeSet;

use aws_lambda_events::event::sqs::SqsEvent;
use axum::http::StatusCode;
use http_body_util::BodyExt;
use shared::health::check::HealthInput;
use shared::jobs::Envelope;
use shared::lifecycle::sweeper::SweepInput;
use shared::routes::ROUTES;
use tower::ServiceExt;

use samples::*;
use testkit::samples;

/// Each API Gateway sample and what its function answers on an empty installation.
const API_EVENTS: &[(&str, u16)] = &[
    // The page that makes the tab's flow secret.
    ("get-install.json", 200),
    // With the secret's hash: on to LiveChat's authorization page.
    ("get-install-bound.json", 303),
    // The platforms' redirects: pages that post the code back with the tab's secret.
    ("get-oauth-livechat-callback.json", 200),
    ("get-oauth-facebook-callback.json", 200),
    // The states in the samples were never issued here: a clear page, no side effect.
    ("post-oauth-livechat-callback.json", 400),
    ("post-oauth-facebook-callback.json", 400),
    ("post-oauth-facebook-select.json", 400),
    ("get-webhooks-instagram.json", 200),
    ("post-webhooks-instagram.json", 200),
    ("post-webhooks-livechat.json", 200),
    ("post-webhooks-livechat-app.json", 200),
    // Captured once, so by now older than a day: refused as a replay (`igbridge send` signs a
    // fresh one from events/webhooks/).
    ("post-meta-deauthorize.json", 400),
    ("post-meta-data-deletion.json", 400),
    // An unknown confirmation code.
    ("get-meta-data-deletion-code.json", 404),
    // The status page that signs in by itself; the frame for LiveChat's app settings.
    ("get-status.json", 200),
    ("get-status-widget.json", 200),
    // A session never issued here: signed out, nothing done.
    ("post-status.json", 401),
];

#[tokio::test]
async fn api_gateway_samples_cover_every_route_and_are_accepted() {
    let services = services();
    let on_disk: BTreeSet<String> = std::fs::read_dir(events_dir().join("apigw"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    let listed: BTreeSet<String> = API_EVENTS.iter().map(|(f, _)| f.to_string()).collect();
    assert_eq!(on_disk, listed, "every sample has an expectation");
    let mut covered = BTreeSet::new();
    for (file, expected) in API_EVENTS {
        let raw = read(&format!("apigw/{file}"));
        let meta: serde_json::Value = serde_json::from_str(&raw).unwrap();
        let route_key = meta["routeKey"].as_str().unwrap();
        let route = ROUTES
            .iter()
            .find(|r| format!("{} {}", r.method, r.path) == route_key)
            .unwrap_or_else(|| panic!("{file}: {route_key} is not a route"));
        covered.insert(route_key.to_string());
        // What lambda_http hands the router under `cargo lambda watch` and in Lambda.
        let request = lambda_http::request::from_str(&raw).unwrap();
        assert_eq!(request.method().as_str(), route.method, "{file}");
        let (parts, body) = request.into_parts();
        let body = axum::body::Body::from(body.to_vec());
        let response = shared::web::router(&services, route.function)
            .oneshot(axum::http::Request::from_parts(parts, body))
            .await
            .unwrap();
        let status = response.status();
        let text = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(
            status,
            StatusCode::from_u16(*expected).unwrap(),
            "{file}: {}",
            String::from_utf8_lossy(&text)
        );
        if *file == "get-webhooks-instagram.json" {
            assert_eq!(
                &text[..],
                b"1158201444",
                "the handshake echoes the challenge"
            );
        }
    }
    let all: BTreeSet<String> = ROUTES
        .iter()
        .map(|r| format!("{} {}", r.method, r.path))
        .collect();
    assert_eq!(covered, all, "one sample per route");
}

#[tokio::test]
async fn sqs_samples_are_jobs_each_worker_completes() {
    let services = services();
    let inbound = services.inbound();
    let outbound = services.outbound();
    let cases: [(&str, &dyn shared::worker::JobHandler, _, _); 2] = [
        (
            "sqs/to-livechat.json",
            &inbound,
            services.to_livechat.clone(),
            services.to_livechat_dlq.clone(),
        ),
        (
            "sqs/to-instagram.json",
            &outbound,
            services.to_instagram.clone(),
            services.to_instagram_dlq.clone(),
        ),
    ];
    for (file, handler, queue, dlq) in cases {
        let event: SqsEvent = serde_json::from_str(&read(file)).unwrap();
        assert_eq!(event.records.len(), 1);
        let record = &event.records[0];
        let envelope = Envelope::decode(record.body.as_deref().unwrap()).expect(file);
        // The FIFO attributes are the ones the ingest function would have set.
        assert_eq!(
            record.attributes.get("MessageGroupId"),
            Some(&envelope.group())
        );
        assert_eq!(
            record.attributes.get("MessageDeduplicationId"),
            Some(&envelope.dedup_id())
        );
        let response = shared::worker::handle_sqs_event(
            handler,
            queue.as_ref(),
            dlq.as_ref(),
            chrono::Utc::now(),
            event,
            None,
        )
        .await;
        // No installation routes these conversations: the job completes (skipped), nothing
        // is retried or parked.
        assert!(response.batch_item_failures.is_empty(), "{file}");
        assert!(
            dlq.receive(10, std::time::Duration::ZERO)
                .await
                .unwrap()
                .is_empty()
        );
    }
}

#[test]
fn scheduler_samples_are_sweep_inputs() {
    let now = chrono::Utc::now();
    let plain: serde_json::Value = serde_json::from_str(&read("scheduler/sweep.json")).unwrap();
    assert_eq!(
        SweepInput::from_event(&plain, now).unwrap(),
        SweepInput {
            now,
            dry_run: false
        }
    );
    let dry: serde_json::Value =
        serde_json::from_str(&read("scheduler/sweep-dry-run.json")).unwrap();
    assert!(SweepInput::from_event(&dry, now).unwrap().dry_run);
}

#[test]
fn health_samples_are_a_run_and_a_replay() {
    let hourly: serde_json::Value = serde_json::from_str(&read("scheduler/health.json")).unwrap();
    assert_eq!(HealthInput::from_event(&hourly), HealthInput::Run);
    let repaired: serde_json::Value =
        serde_json::from_str(&read("eventbridge/repaired.json")).unwrap();
    assert_eq!(
        HealthInput::from_event(&repaired),
        HealthInput::Replay("00000000-0000-4000-8000-00000000a001".into())
    );
}
