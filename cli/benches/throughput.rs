//! Throughput: N customers × M messages each way through `igbridge serve` (its router, its
//! workers) on the embedded backends, with the in-process strict fakes of Meta and LiveChat:
//! messages per second each way, webhook → platform latency p50/p99. Then the same traffic on
//! the AWS adapters against moto, with every DynamoDB and SQS call counted per bridged message.
//! Then a burst: 1,000 signed 1000-entry bodies posted at once, each acknowledged within Meta's
//! timeout, every job queued once.
//!
//! `scripts/bench throughput` (or `cargo bench -p igbridge --bench throughput`);
//! `CUSTOMERS`, `MESSAGES`, `BURST_BODIES`, `BURST_ENTRIES` change the sizes. A benchmark: it
//! prints, and fails only if a message is lost, duplicated or refused.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use futures_util::StreamExt;
use igbridge::settings::LOCAL_DEFAULTS;
use serde_json::{Value, json};
use shared::app::Services;
use shared::clock::SystemClock;
use shared::config::{AwsResources, Config, Settings};
use testkit::bridge::{IG, agent_event_in};
use testkit::calls::{Calls, is_dynamodb_write};
use testkit::journey::{AppFakes, install};

/// How long Meta waits for a webhook's answer before it counts a failure and retries.
const META_TIMEOUT: Duration = Duration::from_secs(20);
/// Requests in flight at once (a platform's webhook delivery is concurrent, but not unbounded).
const CONCURRENCY: usize = 64;

fn size(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn local(name: &str) -> &'static str {
    LOCAL_DEFAULTS
        .iter()
        .find(|(k, _)| *k == name)
        .map(|(_, v)| *v)
        .expect("a development value")
}

/// `igbridge serve` in-process: its router and its background workers, on `services`.
struct Rig {
    base: String,
    fakes: AppFakes,
    http: reqwest::Client,
    services: Services,
}

/// `igbridge serve`'s settings: the development defaults, the fakes' URLs, and the chat
/// webhook secret the test kit's LiveChat events carry.
fn settings(fakes: &AppFakes, addr: &str) -> Settings {
    let mut s = Settings::from_pairs([
        ("GRAPH_API_BASE_URL", fakes.graph.uri()),
        ("FACEBOOK_DIALOG_BASE_URL", fakes.graph.uri()),
        ("LIVECHAT_API_BASE_URL", fakes.livechat.uri()),
        ("LIVECHAT_ACCOUNTS_BASE_URL", fakes.livechat.uri()),
        ("LIVECHAT_WEBHOOK_SECRET", "lc-webhook-secret".into()),
    ]);
    igbridge::settings::fill_local_defaults(&mut s, addr).expect("a loopback address");
    s
}

impl Rig {
    /// Starts the server; with `workers`, its queue workers too (without, jobs stay queued).
    async fn start(workers: bool, backend: impl FnOnce(Config) -> Services) -> Self {
        let fakes = AppFakes::start(
            (local("LIVECHAT_CLIENT_ID"), local("LIVECHAT_CLIENT_SECRET")),
            (local("META_APP_ID"), local("META_APP_SECRET")),
        )
        .await;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let base = format!("http://{addr}");
        let config = Config::from_settings(&settings(&fakes, &addr)).unwrap();
        let services = backend(config);
        if workers {
            igbridge::serve::spawn_background(&services, Duration::from_secs(3600));
        }
        let router = igbridge::serve::router(&services);
        tokio::spawn(async move { axum::serve(listener, router).await });
        install(&base, &fakes).await;
        Self {
            base,
            fakes,
            http: reqwest::Client::new(),
            services,
        }
    }

    async fn post_instagram(&self, body: String) -> (reqwest::StatusCode, Duration) {
        let sig =
            shared::instagram::webhook::sign(local("META_APP_SECRET").as_bytes(), body.as_bytes());
        let started = Instant::now();
        let answer = self
            .http
            .post(format!("{}/webhooks/instagram", self.base))
            .header("content-type", "application/json")
            .header("x-hub-signature-256", sig)
            .body(body)
            .send()
            .await
            .expect("serve answers");
        (answer.status(), started.elapsed())
    }
}

fn igsid(c: usize) -> String {
    format!("IGSID_BENCH_{c:05}")
}

fn customer_message(c: usize, i: usize) -> (String, Value) {
    let text = format!("customer {c} message {i}");
    let item = json!({"sender": {"id": igsid(c)}, "recipient": {"id": IG},
        "timestamp": Utc::now().timestamp_millis(),
        "message": {"mid": format!("m_bench_{c}_{i}"), "text": text}});
    (
        text,
        json!({"object": "instagram", "entry": [{"id": IG, "time": Utc::now().timestamp_millis(), "messaging": [item]}]}),
    )
}

/// What arrived at a platform, in order: each text and when (a duplicate appears twice).
type Arrivals = Vec<(String, Instant)>;

fn livechat_arrivals(f: &AppFakes) -> Arrivals {
    let mut out = Vec::new();
    for call in f
        .livechat
        .calls()
        .into_iter()
        .filter(|c| c.refused.is_none())
    {
        let texts: Vec<Value> = match call.action.as_deref() {
            Some("send_event") => vec![call.body["event"]["text"].clone()],
            Some("start_chat" | "resume_chat") => call.body["chat"]["thread"]["events"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .map(|e| e["text"].clone())
                .collect(),
            _ => continue,
        };
        out.extend(
            texts
                .iter()
                .filter_map(Value::as_str)
                .map(|t| (t.to_string(), call.at)),
        );
    }
    out
}

fn graph_arrivals(f: &AppFakes) -> Arrivals {
    f.graph
        .sent()
        .into_iter()
        .filter_map(|s| Some((s.body["message"]["text"].as_str()?.to_string(), s.at)))
        .collect()
}

/// Throughput and latency of one direction.
struct Run {
    messages: usize,
    elapsed: Duration,
    latencies: Vec<Duration>,
}

impl Run {
    fn line(&self, way: &str) -> String {
        let mut l = self.latencies.clone();
        l.sort();
        let p = |q: f64| l[((l.len() as f64 - 1.0) * q).round() as usize].as_secs_f64() * 1e3;
        format!(
            "| {way} | {} | {:.2} | {:.0} | {:.1} | {:.1} |",
            self.messages,
            self.elapsed.as_secs_f64(),
            self.messages as f64 / self.elapsed.as_secs_f64(),
            p(0.5),
            p(0.99)
        )
    }
}

/// Posts every message, `CONCURRENCY` at a time, and waits until each has arrived; then checks
/// that none arrived twice.
async fn drive(
    posts: Vec<(
        String,
        futures_util::future::BoxFuture<'_, reqwest::StatusCode>,
    )>,
    arrivals: impl Fn() -> Arrivals,
) -> Run {
    let started = Instant::now();
    let sent: Vec<(String, Instant)> = futures_util::stream::iter(posts)
        .map(|(text, post)| async move {
            let at = Instant::now();
            assert_eq!(post.await, 200, "{text}");
            (text, at)
        })
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    let deadline = Instant::now() + Duration::from_secs(600);
    let (first, all) = loop {
        let all = arrivals();
        let mut first: HashMap<String, Instant> = HashMap::new();
        for (t, at) in &all {
            first.entry(t.clone()).or_insert(*at);
        }
        if sent.iter().all(|(t, _)| first.contains_key(t)) {
            break (first, all);
        }
        assert!(
            Instant::now() < deadline,
            "{} of {} arrived",
            first.len(),
            sent.len()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let ours: std::collections::HashSet<&str> = sent.iter().map(|(t, _)| t.as_str()).collect();
    let arrived = all
        .iter()
        .filter(|(t, _)| ours.contains(t.as_str()))
        .count();
    assert_eq!(arrived, sent.len(), "each message arrived exactly once");
    let last = sent.iter().map(|(t, _)| first[t]).max().expect("messages");
    Run {
        messages: sent.len(),
        elapsed: last - started,
        latencies: sent.iter().map(|(t, at)| first[t] - *at).collect(),
    }
}

async fn inbound(rig: &Rig, customers: usize, per: usize) -> Run {
    for c in 0..customers {
        rig.fakes.graph.add_profile(
            &igsid(c),
            json!({"name": format!("Customer {c}"), "username": format!("customer{c}")}),
        );
    }
    // Each customer's messages in order (one conversation), customers interleaved.
    let posts = (0..per)
        .flat_map(|i| (0..customers).map(move |c| (c, i)))
        .map(|(c, i)| {
            let (text, body) = customer_message(c, i);
            let post: futures_util::future::BoxFuture<'_, _> =
                Box::pin(async move { rig.post_instagram(body.to_string()).await.0 });
            (text, post)
        })
        .collect();
    drive(posts, || livechat_arrivals(&rig.fakes)).await
}

async fn outbound(rig: &Rig, per: usize) -> Run {
    let chats = rig.fakes.livechat.chats();
    let posts = (0..per)
        .flat_map(|i| chats.iter().enumerate().map(move |(c, chat)| (c, chat, i)))
        .map(|(c, chat, i)| {
            let text = format!("agent reply {c} {i}");
            let thread = chat.threads.last().expect("a thread").id.clone();
            let event = agent_event_in(&chat.id, &thread, &format!("EV_BENCH_{c}_{i}"),
                json!({"type": "message", "text": text, "created_at": Utc::now().format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()}));
            let post: futures_util::future::BoxFuture<'_, _> = Box::pin(async move {
                rig.http
                    .post(format!("{}/webhooks/livechat", rig.base))
                    .json(&event)
                    .send()
                    .await
                    .expect("serve answers")
                    .status()
            });
            (text, post)
        })
        .collect();
    drive(posts, || graph_arrivals(&rig.fakes)).await
}

/// The calls one direction made per bridged message.
fn per_message(calls: &BTreeMap<String, u64>, messages: usize) -> String {
    let total = |f: &dyn Fn(&str) -> bool| -> f64 {
        calls
            .iter()
            .filter(|(op, _)| f(op))
            .map(|(_, n)| *n)
            .sum::<u64>() as f64
            / messages as f64
    };
    let writes = total(&|op| is_dynamodb_write(op));
    let reads = total(&|op| op.starts_with("DynamoDB") && !is_dynamodb_write(op));
    let sqs = total(&|op| op.starts_with("AmazonSQS") && !op.ends_with("ReceiveMessage"));
    let detail: Vec<String> = calls
        .iter()
        .map(|(op, n)| {
            format!(
                "{} {:.2}",
                op.rsplit('.').next().unwrap_or(op),
                *n as f64 / messages as f64
            )
        })
        .collect();
    format!(
        "| {writes:.2} | {reads:.2} | {sqs:.2} | {} |",
        detail.join(", ")
    )
}

async fn aws_rig() -> (Rig, Calls) {
    let sdk = testkit::moto::sdk().await;
    let (sdk, calls) = testkit::calls::counting(&sdk);
    let table = testkit::moto::unique("bench");
    shared::provision::create_table(&aws_sdk_dynamodb::Client::new(&sdk), &table)
        .await
        .unwrap();
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let to_lc = shared::provision::create_fifo_queue(&sqs, &testkit::moto::unique("bench-lc"))
        .await
        .unwrap();
    let to_ig = shared::provision::create_fifo_queue(&sqs, &testkit::moto::unique("bench-ig"))
        .await
        .unwrap();
    let resources = AwsResources::from_settings(&Settings::from_pairs([
        ("TABLE_NAME", table.as_str()),
        ("TO_LIVECHAT_QUEUE_URL", &to_lc.url),
        ("TO_LIVECHAT_DLQ_URL", &to_lc.dlq_url),
        ("TO_INSTAGRAM_QUEUE_URL", &to_ig.url),
        ("TO_INSTAGRAM_DLQ_URL", &to_ig.dlq_url),
    ]))
    .unwrap();
    let rig = Rig::start(true, |config| {
        Services::aws(&sdk, config, &resources).unwrap()
    })
    .await;
    (rig, calls)
}

/// 1,000 signed bodies of 1,000 entries at once: each answered within Meta's timeout, every
/// job queued exactly once.
async fn burst(rig: &Rig, bodies: usize, entries: usize) -> String {
    let body = |b: usize| -> String {
        let ms = Utc::now().timestamp_millis();
        let entry = |e: usize| {
            json!({"id": IG, "time": ms, "messaging": [{
            "sender": {"id": format!("IGSID_BURST_{e:04}")}, "recipient": {"id": IG}, "timestamp": ms,
            "message": {"mid": format!("m_burst_{b}_{e}"), "text": "Hi, where is my order? It has not arrived yet, could you check please?"}}]})
        };
        json!({"object": "instagram", "entry": (0..entries).map(entry).collect::<Vec<_>>()})
            .to_string()
    };
    let texts: Vec<String> = (0..bodies).map(body).collect();
    let bytes: usize = texts.iter().map(String::len).sum();
    let queue = rig.services.to_livechat.clone();
    let before = queue.depth().await.unwrap();
    let started = Instant::now();
    let answers: Vec<(reqwest::StatusCode, Duration)> = futures_util::stream::iter(texts)
        .map(|t| rig.post_instagram(t))
        .buffer_unordered(bodies)
        .collect()
        .await;
    let all = started.elapsed();
    assert!(
        answers.iter().all(|(s, _)| *s == 200),
        "every body acknowledged"
    );
    let slowest = answers.iter().map(|(_, d)| *d).max().unwrap();
    assert!(
        slowest < META_TIMEOUT,
        "the slowest answer took {slowest:?}"
    );
    let queued = queue.depth().await.unwrap() - before;
    assert_eq!(queued as usize, bodies * entries, "every job queued once");
    format!(
        "burst: {bodies} bodies × {entries} entries ({:.0} MB) posted at once: all acknowledged in {:.2} s, slowest answer {:.2} s (Meta waits {} s); {queued} jobs queued, each once",
        bytes as f64 / 1e6,
        all.as_secs_f64(),
        slowest.as_secs_f64(),
        META_TIMEOUT.as_secs()
    )
}

#[tokio::main]
async fn main() {
    let (customers, per) = (size("CUSTOMERS", 100), size("MESSAGES", 20));
    let memory = |config| Services::memory(config, Arc::new(SystemClock));
    let embedded = Rig::start(true, memory).await;
    let inbound_run = inbound(&embedded, customers, per).await;
    let outbound_run = outbound(&embedded, per).await;
    embedded.fakes.assert_nothing_refused();
    println!(
        "throughput: igbridge serve, embedded store and queues, in-process fakes; {customers} customers × {per} messages each way\n"
    );
    println!(
        "| direction | messages | seconds | messages/s | latency p50 ms | latency p99 ms |\n|---|---|---|---|---|---|"
    );
    println!("{}", inbound_run.line("Instagram → LiveChat"));
    println!("{}\n", outbound_run.line("LiveChat → Instagram"));

    let (aws, calls) = aws_rig().await;
    let (c, m) = (5, 4);
    calls.reset();
    inbound(&aws, c, m).await;
    let inbound_calls = calls.snapshot();
    calls.reset();
    outbound(&aws, m).await;
    let outbound_calls = calls.snapshot();
    aws.fakes.assert_nothing_refused();
    println!(
        "calls per bridged message on the AWS adapters (moto; {c} customers × {m} messages each way; SQS excludes receives, which are per batch)\n"
    );
    println!(
        "| direction | DynamoDB writes | DynamoDB reads | SQS calls | by operation |\n|---|---|---|---|---|"
    );
    println!(
        "| Instagram → LiveChat {}",
        per_message(&inbound_calls, c * m)
    );
    println!(
        "| LiveChat → Instagram {}\n",
        per_message(&outbound_calls, c * m)
    );

    // The ack path alone: the workers would start sending the million jobs to the fakes.
    let ingest_only = Rig::start(false, memory).await;
    let (bodies, entries) = (size("BURST_BODIES", 1000), size("BURST_ENTRIES", 1000));
    println!("{}", burst(&ingest_only, bodies, entries).await);
}
