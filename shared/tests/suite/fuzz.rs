//! Fuzzing on stable Rust: a deterministic mutation loop seeded from the sample events and
//! fixtures drives every parser of outside input through the code that ships — API Gateway
//! events into the functions' routers, Meta webhook bodies (signed, so they get past the
//! signature), `signed_request`, LiveChat chat and app webhooks, OAuth callback queries and
//! forms, and job envelopes from the queue into the workers. Every input must be answered (no
//! panic, no 500) with a status docs/security.md documents for that route, and an unauthenticated one
//! must change nothing (queues and dead-letter queues as they were).
//!
//! CI runs a short pass (`IGBRIDGE_FUZZ_INPUTS`, default 2,000 per parser). The long run:
//!
//! ```sh
//! IGBRIDGE_FUZZ_INPUTS=1000000 cargo test -p igbridge-shared --test suite fuzz:: -- --nocapture
//! ```
//!
//! `IGBRIDGE_FUZZ_SEED` picks another deterministic sequence; a failure prints the seed, the
//! input number and the input.

use lambda_http::request::LambdaRequest;
use testkit::samples;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use samples::*;
use serde_json::{Value, json};
use shared::app::Services;
use shared::domain::AccountRoute;
use shared::routes::{HttpFunction, ROUTES};
use shared::store::Condition;
use shared::worker::{QueuedJob, process_batch};
use tower::ServiceExt;

/// Fresh services every this many inputs, so accepted inputs do not pile up in memory.
const REFRESH_EVERY: usize = 2_000;

fn inputs() -> usize {
    std::env::var("IGBRIDGE_FUZZ_INPUTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2_000)
}

fn seed() -> u64 {
    std::env::var("IGBRIDGE_FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0x1684_2026)
}

fn setting(key: &str) -> String {
    local_settings()
        .get(key)
        .unwrap_or_else(|| panic!("{key} in events/local.env"))
        .to_string()
}

/// Tokens that break parsers in interesting ways.
const TOKENS: &[&str] = &[
    "\"",
    "{",
    "}",
    "[",
    "]",
    ",",
    ":",
    "null",
    "true",
    "-1",
    "0",
    "1e309",
    "-0.0",
    "18446744073709551616",
    "\"\\u0000\"",
    "\"\\ud800\"",
    "\\",
    "%",
    "%00",
    "%ZZ",
    "&",
    "=",
    "+",
    "é",
    "💬",
    "\u{202e}",
    "\"is_echo\":true",
    "\"messaging\":[]",
    "\"entry\":{}",
];

/// A mutation of a seed: half the time of its JSON structure (values changed, replaced by
/// other types, keys dropped or added — valid JSON that reaches deeper code), otherwise of its
/// bytes.
fn mutate(rng: &mut StdRng, seeds: &[Vec<u8>]) -> Vec<u8> {
    let seed = &seeds[rng.random_range(0..seeds.len())];
    if rng.random() {
        if let Ok(mut v) = serde_json::from_slice::<Value>(seed) {
            for _ in 0..rng.random_range(1..=3) {
                mutate_value(rng, &mut v);
            }
            return serde_json::to_vec(&v).unwrap();
        }
    }
    mutate_bytes(rng, seeds)
}

/// Changes one randomly chosen place of a JSON value.
fn mutate_value(rng: &mut StdRng, v: &mut Value) {
    match v {
        Value::Object(o) if !o.is_empty() && rng.random_range(0..4) > 0 => {
            let keys: Vec<String> = o.keys().cloned().collect();
            let k = &keys[rng.random_range(0..keys.len())];
            match rng.random_range(0..8) {
                0 => {
                    o.remove(k);
                }
                1 => {
                    o.insert(format!("unknown_{}", rng.random::<u8>()), json!({"x": [1]}));
                }
                _ => mutate_value(rng, o.get_mut(k).unwrap()),
            }
        }
        Value::Array(a) if !a.is_empty() && rng.random_range(0..4) > 0 => {
            let i = rng.random_range(0..a.len());
            match rng.random_range(0..6) {
                0 => {
                    a.remove(i);
                }
                1 => {
                    let copy = a[i].clone();
                    a.push(copy);
                }
                _ => mutate_value(rng, &mut a[i]),
            }
        }
        Value::String(t) if rng.random() => {
            let bytes = mutate_bytes(rng, &[t.clone().into_bytes()]);
            *t = String::from_utf8_lossy(&bytes).into_owned();
        }
        _ => {
            *v = match rng.random_range(0..8) {
                0 => Value::Null,
                1 => json!(rng.random::<bool>()),
                2 => json!(rng.random::<i64>()),
                3 => json!(rng.random::<f64>() * 1e300),
                4 => json!(""),
                5 => json!([]),
                6 => json!({}),
                _ => json!("x".repeat(rng.random_range(0..70_000))),
            }
        }
    }
}

/// One to four byte-level mutations of a seed (or a splice of two seeds).
fn mutate_bytes(rng: &mut StdRng, seeds: &[Vec<u8>]) -> Vec<u8> {
    let mut data = seeds[rng.random_range(0..seeds.len())].clone();
    for _ in 0..rng.random_range(1..=4) {
        let len = data.len();
        let at = if len == 0 {
            0
        } else {
            rng.random_range(0..len)
        };
        match rng.random_range(0..9) {
            0 if len > 0 => data[at] ^= 1 << rng.random_range(0..8),
            1 if len > 0 => data[at] = rng.random(),
            2 => data.insert(at, rng.random()),
            3 if len > 0 => {
                let end = (at + rng.random_range(1..=16)).min(len);
                data.drain(at..end);
            }
            4 if len > 0 => {
                let end = (at + rng.random_range(1..=64)).min(len);
                let copy = data[at..end].to_vec();
                let to = rng.random_range(0..=data.len());
                data.splice(to..to, copy);
            }
            5 => {
                let t = TOKENS[rng.random_range(0..TOKENS.len())].as_bytes();
                data.splice(at..at, t.iter().copied());
            }
            6 => data.truncate(at),
            7 => {
                let other = &seeds[rng.random_range(0..seeds.len())];
                let from = rng.random_range(0..=other.len());
                data.truncate(at);
                data.extend_from_slice(&other[from..]);
            }
            _ => {
                // Deep nesting and long runs.
                let n = rng.random_range(1..2_000);
                let t = if rng.random() { "[" } else { "a" };
                data.splice(at..at, t.repeat(n).into_bytes());
            }
        }
    }
    data
}

/// What one parser did over its inputs.
struct Tally {
    name: &'static str,
    started: Instant,
    statuses: BTreeMap<u16, usize>,
}

impl Tally {
    fn new(name: &'static str) -> Self {
        Self {
            name,
            started: Instant::now(),
            statuses: BTreeMap::new(),
        }
    }

    fn count(&mut self, status: u16) {
        *self.statuses.entry(status).or_default() += 1;
    }

    fn report(&self) {
        let total: usize = self.statuses.values().sum();
        println!(
            "fuzz {}: {total} inputs, 0 panics, {:.1} s, answers {:?}",
            self.name,
            self.started.elapsed().as_secs_f64(),
            self.statuses
        );
    }
}

/// A parser's random sequence and tally.
fn start(name: &'static str) -> (StdRng, Tally) {
    (StdRng::seed_from_u64(seed()), Tally::new(name))
}

fn json_post(path: impl AsRef<str>, body: &[u8]) -> Request<Body> {
    Request::post(path.as_ref())
        .header("content-type", "application/json")
        .body(Body::from(body.to_vec()))
        .unwrap()
}

fn show(input: &[u8]) -> String {
    String::from_utf8_lossy(&input[..input.len().min(600)]).into_owned()
}

async fn send(services: &Services, f: HttpFunction, req: Request<Body>) -> StatusCode {
    shared::web::router(services, f)
        .oneshot(req)
        .await
        .unwrap()
        .status()
}

/// Messages waiting in all four queues (an unauthenticated input must not change it).
async fn queued(s: &Services) -> u64 {
    let mut n = 0;
    for q in [
        &s.to_livechat,
        &s.to_livechat_dlq,
        &s.to_instagram,
        &s.to_instagram_dlq,
    ] {
        n += q.depth().await.unwrap();
    }
    n
}

/// An unauthenticated input changed nothing: every queue holds what it held before.
async fn unchanged(s: &Services, before: u64, why: &str) {
    assert_eq!(
        queued(s).await,
        before,
        "unauthenticated, yet queued: {why}"
    );
}

/// Services with the sample organization's Instagram account routed, so accepted Meta bodies
/// go all the way into the queue.
async fn routed_services() -> Services {
    let s = services();
    let route = AccountRoute {
        ig_account_id: "17841400000000001".into(),
        organization_id: "00000000-0000-4000-8000-00000000a001".into(),
        expires_at: None,
    };
    s.repo.put(&route, Condition::Always).await.unwrap();
    s
}

fn meta_bodies() -> Vec<Vec<u8>> {
    let item = |kind: &str, body: Value| json!({"sender": {"id": "IGSID_1001"}, "recipient": {"id": "17841400000000001"}, "timestamp": 1569262485349u64, kind: body});
    let wrap = |field: &str, items: Vec<Value>| {
        json!({"object": "instagram", "entry": [{"id": "17841400000000001", "time": 1569262486134u64, field: items}]})
            .to_string()
            .into_bytes()
    };
    vec![
        read("webhooks/instagram-text.json").into_bytes(),
        wrap(
            "messaging",
            vec![item(
                "message",
                json!({"mid": "M2", "attachments": [{"type": "image", "payload": {"url": "https://lookaside.fbsbx.com/x"}}]}),
            )],
        ),
        wrap(
            "messaging",
            vec![item(
                "message",
                json!({"mid": "M3", "text": "echo", "is_echo": true}),
            )],
        ),
        wrap(
            "messaging",
            vec![item(
                "reaction",
                json!({"mid": "M1", "action": "react", "reaction": "love", "emoji": "❤️"}),
            )],
        ),
        wrap(
            "messaging",
            vec![
                item("read", json!({"mid": "M1"})),
                item(
                    "postback",
                    json!({"mid": "M4", "title": "Yes", "payload": "YES"}),
                ),
            ],
        ),
        wrap(
            "standby",
            vec![item("message", json!({"mid": "M5", "is_deleted": true}))],
        ),
        wrap(
            "messaging",
            vec![item(
                "message_edit",
                json!({"mid": "M1", "text": "edited", "num_edit": 1}),
            )],
        ),
    ]
}

#[tokio::test]
async fn meta_webhook_bodies() {
    let secret = setting("META_APP_SECRET");
    let seeds = meta_bodies();
    let (mut rng, mut tally) = start("Meta webhook bodies");
    let mut s = routed_services().await;
    for i in 0..inputs() {
        if i % REFRESH_EVERY == 0 {
            s = routed_services().await;
        }
        let body = mutate(&mut rng, &seeds);
        let signed = i % 2 == 0;
        let signature = if signed {
            shared::instagram::webhook::sign(secret.as_bytes(), &body)
        } else {
            // Signed with the body before it was mutated: authentic-looking, wrong.
            format!("sha256={}", "0".repeat(64))
        };
        let before = queued(&s).await;
        let req = Request::post("/webhooks/instagram")
            .header("content-type", "application/json")
            .header("x-hub-signature-256", signature)
            .body(Body::from(body.clone()))
            .unwrap();
        let status = send(&s, HttpFunction::InstagramWebhook, req).await;
        tally.count(status.as_u16());
        let why = || format!("seed {} input {i}: {}", seed(), show(&body));
        if signed {
            // Authentic: accepted (queued, parked when unparseable, or not ours), never dropped.
            assert_eq!(status, StatusCode::OK, "{}", why());
        } else {
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{}", why());
            unchanged(&s, before, &why()).await;
        }
    }
    tally.report();
}

#[tokio::test]
async fn signed_requests() {
    let secret = setting("META_APP_SECRET");
    let now = chrono::Utc::now().timestamp();
    let seeds: Vec<Vec<u8>> = [
        json!({"algorithm": "HMAC-SHA256", "issued_at": now, "user_id": "APP_SCOPED_USER_2001"}),
        json!({"algorithm": "HMAC-SHA256", "issued_at": now, "user_id": "U", "profile_id": "PAGE-1"}),
    ]
    .iter()
    .map(|p| shared::lifecycle::signed_request::sign(secret.as_bytes(), p).into_bytes())
    .collect();
    let (mut rng, mut tally) = start("signed_request");
    let s = services();
    for i in 0..inputs() {
        let input = mutate(&mut rng, &seeds);
        let text = String::from_utf8_lossy(&input).into_owned();
        let parsed = shared::lifecycle::signed_request::parse(secret.as_bytes(), &text);
        let path = if i % 2 == 0 {
            "/meta/deauthorize"
        } else {
            "/meta/data-deletion"
        };
        let form = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("signed_request", &text)
            .finish();
        let req = Request::post(path)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(Body::from(form))
            .unwrap();
        let status = send(&s, HttpFunction::Uninstall, req).await;
        tally.count(status.as_u16());
        let why = || format!("seed {} input {i}: {}", seed(), show(&input));
        match parsed {
            Ok(_) => assert_eq!(status, StatusCode::OK, "{}", why()),
            // 400 malformed (or a replay), 403 bad signature: nothing recorded.
            Err(_) => assert!(
                [StatusCode::BAD_REQUEST, StatusCode::FORBIDDEN].contains(&status),
                "{status}: {}",
                why()
            ),
        }
    }
    tally.report();
}

#[tokio::test]
async fn livechat_chat_webhooks() {
    let seeds = vec![read("webhooks/livechat-incoming-event.json").into_bytes()];
    let secret = setting("LIVECHAT_WEBHOOK_SECRET");
    let (mut rng, mut tally) = start("LiveChat chat webhooks");
    let mut s = services();
    for i in 0..inputs() {
        if i % REFRESH_EVERY == 0 {
            s = services();
        }
        let mut body = mutate(&mut rng, &seeds);
        // Half carry the right secret (deeper parsing), half whatever the mutation left.
        if i % 2 == 0 {
            if let Ok(Value::Object(mut o)) = serde_json::from_slice::<Value>(&body) {
                o.insert("secret_key".into(), json!(secret));
                body = serde_json::to_vec(&o).unwrap();
            }
        }
        let before = queued(&s).await;
        let req = json_post("/webhooks/livechat", &body);
        let status = send(&s, HttpFunction::LivechatWebhook, req).await;
        tally.count(status.as_u16());
        let why = || format!("seed {} input {i}: {}", seed(), show(&body));
        assert!(
            [StatusCode::OK, StatusCode::UNAUTHORIZED].contains(&status),
            "{status}: {}",
            why()
        );
        if status == StatusCode::UNAUTHORIZED {
            unchanged(&s, before, &why()).await;
        }
    }
    tally.report();
}

#[tokio::test]
async fn livechat_app_webhooks() {
    let seeds = vec![read("webhooks/livechat-app-uninstalled.json").into_bytes()];
    let token = setting("LIVECHAT_APP_WEBHOOK_TOKEN");
    let (mut rng, mut tally) = start("LiveChat app webhooks");
    let s = services();
    for i in 0..inputs() {
        let body = mutate(&mut rng, &seeds);
        let query = if i % 2 == 0 {
            token.clone()
        } else {
            "guess".into()
        };
        let req = json_post(format!("/webhooks/livechat/app?token={query}"), &body);
        let status = send(&s, HttpFunction::Uninstall, req).await;
        tally.count(status.as_u16());
        let why = || format!("seed {} input {i}: {}", seed(), show(&body));
        if i % 2 == 1 {
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{}", why());
        } else {
            // 200 handled or ignored, 400 unreadable, 403 another app's client id.
            let ok = [
                StatusCode::OK,
                StatusCode::BAD_REQUEST,
                StatusCode::FORBIDDEN,
            ];
            assert!(ok.contains(&status), "{status}: {}", why());
        }
    }
    tally.report();
}

#[tokio::test]
async fn oauth_callback_queries_and_forms() {
    let apigw = |f: &str| -> Value { serde_json::from_str(&read(&format!("apigw/{f}"))).unwrap() };
    let queries: Vec<Vec<u8>> = [
        "get-oauth-livechat-callback.json",
        "get-oauth-facebook-callback.json",
        "get-install-bound.json",
    ]
    .iter()
    .map(|f| {
        apigw(f)["rawQueryString"]
            .as_str()
            .unwrap()
            .as_bytes()
            .to_vec()
    })
    .collect();
    let forms: Vec<Vec<u8>> = [
        "post-oauth-livechat-callback.json",
        "post-oauth-facebook-callback.json",
        "post-oauth-facebook-select.json",
    ]
    .iter()
    .map(|f| apigw(f)["body"].as_str().unwrap().as_bytes().to_vec())
    .collect();
    let routes: Vec<_> = ROUTES
        .iter()
        .filter(|r| r.function == HttpFunction::OauthInstall)
        .collect();
    let (mut rng, mut tally) = start("OAuth callback queries and forms");
    let s = services();
    for i in 0..inputs() {
        let route = routes[i % routes.len()];
        let path = route.path;
        let req = if route.method == "GET" {
            let q = mutate(&mut rng, &queries);
            let q: String = url::form_urlencoded::byte_serialize(&q)
                .collect::<String>()
                .replace("%3D", "=")
                .replace("%26", "&");
            Request::get(format!("{path}?{q}"))
                .body(Body::empty())
                .unwrap()
        } else {
            let form = mutate(&mut rng, &forms);
            Request::post(path)
                .header("content-type", "application/x-www-form-urlencoded")
                .body(Body::from(form))
                .unwrap()
        };
        let status = send(&s, HttpFunction::OauthInstall, req).await;
        tally.count(status.as_u16());
        // A page for anything: the flow's steps, a clear refusal, never a server error.
        assert!(status.as_u16() < 500, "input {i}: {status}");
    }
    tally.report();
}

#[tokio::test]
async fn api_gateway_events() {
    let dir = events_dir().join("apigw");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    let seeds: Vec<Vec<u8>> = files.iter().map(|p| std::fs::read(p).unwrap()).collect();
    let (mut rng, mut tally) = start("API Gateway v2 events");
    let mut s = routed_services().await;
    for i in 0..inputs() {
        if i % REFRESH_EVERY == 0 {
            s = routed_services().await;
        }
        let mut raw = mutate(&mut rng, &seeds);
        // API Gateway sets `host` to the API's own domain whatever the client sends (and
        // lambda_http 1.3 panics on a host that is not a valid domain name: `Url::parse(..)
        // .unwrap()` in its request conversion), so a fuzzed event keeps the sample's host.
        if let Ok(Value::Object(mut event)) = serde_json::from_slice::<Value>(&raw) {
            if let Some(Value::Object(headers)) = event.get_mut("headers") {
                headers.insert(
                    "host".into(),
                    json!("abc123.execute-api.us-east-1.amazonaws.com"),
                );
            }
            raw = serde_json::to_vec(&event).unwrap();
        }
        let Ok(text) = std::str::from_utf8(&raw) else {
            tally.count(0);
            continue;
        };
        // What lambda_http does with the invocation payload; an error goes back to Lambda.
        // lambda_http 1.3 panics (`.expect("failed to build request")`) on a path or query it
        // cannot put in a URI, or a base64 body that does not decode. The release profile
        // aborts on a panic, so shared::api_gateway refuses exactly those events with a 400
        // before lambda_http sees them: checked here, both ways. Counted apart (as 1).
        let converted = std::panic::catch_unwind(|| lambda_http::request::from_str(text));
        if let Ok(LambdaRequest::ApiGatewayV2(event)) = serde_json::from_str::<LambdaRequest>(text)
        {
            assert_eq!(
                shared::web::api_gateway::convertible(&event),
                converted.is_ok(),
                "seed {} input {i}: the guard and lambda_http disagree: {}",
                seed(),
                show(&raw)
            );
        }
        let Ok(converted) = converted else {
            tally.count(1);
            continue;
        };
        let Ok(request) = converted else {
            tally.count(0);
            continue;
        };
        // API Gateway sends a route only to its function; a mutated path reaches the function
        // of the route it came from.
        let function = ROUTES
            .iter()
            .find(|r| r.method == request.method().as_str() && r.path == request.uri().path())
            .map_or(HttpFunction::InstagramWebhook, |r| r.function);
        let (parts, body) = request.into_parts();
        let req = Request::from_parts(parts, Body::from(body.to_vec()));
        let status = send(&s, function, req).await;
        tally.count(status.as_u16());
        assert!(
            status.as_u16() < 500
                || status == StatusCode::SERVICE_UNAVAILABLE
                    && function == HttpFunction::OauthInstall,
            "seed {} input {i}: {status}: {}",
            seed(),
            show(&raw)
        );
    }
    tally.report();
}

#[tokio::test]
async fn job_envelopes_from_the_queue() {
    let sqs = |f: &str| -> Vec<u8> {
        let v: Value = serde_json::from_str(&read(&format!("sqs/{f}"))).unwrap();
        v["Records"][0]["body"]
            .as_str()
            .unwrap()
            .as_bytes()
            .to_vec()
    };
    let seeds = vec![sqs("to-livechat.json"), sqs("to-instagram.json")];
    let (mut rng, mut tally) = start("job envelopes");
    let mut s = services();
    let now = chrono::Utc::now();
    for i in 0..inputs() {
        if i % REFRESH_EVERY == 0 {
            s = services();
        }
        let body = String::from_utf8_lossy(&mutate(&mut rng, &seeds)).into_owned();
        let decoded = shared::jobs::Wire::decode(&body).is_ok();
        let job = QueuedJob {
            message_id: format!("m{i}"),
            receipt: format!("r{i}"),
            group_id: "g".into(),
            body: body.clone(),
            receive_count: 1,
        };
        let (handler, queue, dlq): (Box<dyn shared::worker::JobHandler>, _, _) = if i % 2 == 0 {
            (Box::new(s.inbound()), &s.to_livechat, &s.to_livechat_dlq)
        } else {
            (Box::new(s.outbound()), &s.to_instagram, &s.to_instagram_dlq)
        };
        let before = dlq.depth().await.unwrap();
        let failed = tokio::time::timeout(
            Duration::from_secs(10),
            process_batch(
                handler.as_ref(),
                queue.as_ref(),
                dlq.as_ref(),
                now,
                vec![job],
            ),
        )
        .await
        .unwrap_or_else(|_| panic!("input {i} hung: {body}"));
        // Parked with a reason (unreadable), skipped (no such installation), or retried.
        let parked = dlq.depth().await.unwrap() > before;
        tally.count(if parked {
            1
        } else if failed.is_empty() {
            0
        } else {
            2
        });
        if !decoded {
            assert!(
                parked,
                "an unreadable body is parked, never dropped: {body}"
            );
        }
    }
    tally.report();
}
