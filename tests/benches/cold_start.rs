//! Cold start, as users compare stacks: each release binary (built per function, as shipped)
//! under the Lambda Runtime API emulator against the template deployed on moto — spawn → ready
//! for its first event, the first (cold) invocation, warm invocations p50/p99 and peak RSS —
//! beside a minimal Python/boto3 instagram-webhook (benches/baseline/instagram_webhook.py) run
//! by the same harness on the same stack.
//!
//! `scripts/bench cold-start` (moto started, release binaries built); `COLD=n WARM=n` change
//! the rounds (default 10 cold, 50 warm). A benchmark: it prints, it asserts nothing about time.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use serde_json::{Value, json};
use system::{META_APP_SECRET, Options, System};
use testkit::bridge::{agent_event_in, text, webhook};
use testkit::lambda::http_api::{HttpApi, Route};
use testkit::lambda::runtime::{Function, FunctionConfig, Timings};
use testkit::lambda::template::RouteDef;

const PYTHON: &str = "python-boto3 instagram-webhook";

fn rounds(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A webhook of one text message, stamped now.
fn message(i: usize) -> Value {
    let mut item = text(&format!("m_bench_{i}"), &format!("bench message {i}"));
    item["timestamp"] = json!(Utc::now().timestamp_millis());
    webhook(vec![item])
}

async fn wait(what: &str, check: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// One of everything: a message each way end to end, the install page, a deletion status
/// page, a sweep.
async fn round(s: &System, python: &HttpApi, i: usize) {
    let events = || {
        s.fakes
            .livechat
            .chats()
            .first()
            .map_or(0, |c| c.events().len())
    };
    let before = events();
    assert_eq!(s.post_instagram(&message(i)).await.status(), 200);
    wait("the message in LiveChat", || events() > before).await;

    let chat = s.fakes.livechat.chats()[0].clone();
    let thread = chat.threads.last().expect("a thread").id.clone();
    let sent = s.fakes.graph.sent().len();
    let reply = agent_event_in(
        &chat.id,
        &thread,
        &format!("EV_BENCH_{i}"),
        json!({"type": "message", "text": format!("reply {i}"),
               "created_at": Utc::now().format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()}),
    );
    assert_eq!(s.post_livechat(&reply).await.status(), 200);
    wait("the reply on Instagram", || {
        s.fakes.graph.sent().len() > sent
    })
    .await;

    let install = s.http.get(s.url("/install")).send().await.unwrap();
    assert_eq!(install.status(), 200);
    let status = s
        .http
        .get(s.url("/meta/data-deletion/BENCH0000"))
        .send()
        .await
        .unwrap();
    assert!(status.status().is_client_error() || status.status().is_success());
    s.run_schedule("deletion-sweeper", Utc::now()).await;

    let body = message(i).to_string();
    let signature = shared::instagram::webhook::sign(META_APP_SECRET.as_bytes(), body.as_bytes());
    let answer = s
        .http
        .post(format!("{}/webhooks/instagram", python.url()))
        .header("content-type", "application/json")
        .header("x-hub-signature-256", signature)
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200, "{}", answer.text().await.unwrap());
}

/// The Python baseline with the Rust instagram-webhook's environment, behind a front of its own.
async fn python_function(s: &System) -> (Arc<Function>, HttpApi) {
    let root = testkit::lambda::template::root();
    let venv = root.join(".venv/bin/python3");
    let script = root.join("tests/benches/baseline/instagram_webhook.py");
    let bootstrap = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("python-bootstrap");
    std::fs::write(
        &bootstrap,
        format!("#!/bin/sh\nexec {} {}\n", venv.display(), script.display()),
    )
    .unwrap();
    std::fs::set_permissions(
        &bootstrap,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let rust = s.function("instagram-webhook").config().clone();
    let function = Function::new(FunctionConfig {
        name: PYTHON.into(),
        binary: bootstrap,
        ..rust
    });
    let mut api = HttpApi::bind().await;
    api.serve(vec![Route {
        def: RouteDef {
            method: "POST".into(),
            path: "/webhooks/instagram".into(),
            key: "POST /webhooks/instagram".into(),
            function: PYTHON.into(),
        },
        function: function.clone(),
    }]);
    (function, api)
}

fn pct(v: &[Duration], p: f64) -> String {
    if v.is_empty() {
        return "-".into();
    }
    let mut v = v.to_vec();
    v.sort();
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    format!("{:.1}", v[i].as_secs_f64() * 1000.0)
}

fn row(name: &str, t: &Timings, rss_kib: &[u64], zip: Option<u64>) -> String {
    let peak = rss_kib
        .iter()
        .max()
        .map_or("-".into(), |k| format!("{:.1}", *k as f64 / 1024.0));
    let zip = zip.map_or("-".into(), |b| format!("{:.2}", b as f64 / 1e6));
    format!(
        "| {name} | {} | {} | {} | {} | {} | {peak} | {zip} |\n",
        t.ready.len(),
        pct(&t.ready, 0.5),
        pct(&t.first, 0.5),
        pct(&t.warm, 0.5),
        pct(&t.warm, 0.99),
    )
}

#[tokio::main]
async fn main() {
    let (cold, warm) = (rounds("COLD", 10), rounds("WARM", 50));
    eprintln!("building the release binaries (one function at a time) …");
    let binaries = system::release_binaries();
    let s = System::installed(Options {
        binaries: Some(binaries.clone()),
        ..Options::default()
    })
    .await;
    let (python, python_api) = python_function(&s).await;
    let mut functions: BTreeMap<String, Arc<Function>> = s.functions.clone();
    functions.insert(PYTHON.into(), python);
    let mut rss: BTreeMap<String, Vec<u64>> = BTreeMap::new();

    // The install's own invocations are cold starts of their own; start counting afresh.
    for f in functions.values() {
        f.retire().await;
    }
    let before: BTreeMap<String, Timings> = functions
        .iter()
        .map(|(n, f)| (n.clone(), f.timings()))
        .collect();
    for i in 0..cold {
        round(&s, &python_api, i).await;
        for (name, f) in &functions {
            rss.entry(name.clone())
                .or_default()
                .extend(f.retire().await);
        }
    }
    for i in cold..cold + warm {
        round(&s, &python_api, i).await;
    }
    for (name, f) in &functions {
        rss.entry(name.clone())
            .or_default()
            .extend(f.peak_rss_kib());
    }

    let mut table = String::from(
        "| function | cold starts | ready ms (p50) | first invocation ms (p50) | warm p50 ms | warm p99 ms | peak RSS MiB | arm64 zip MB |\n|---|---|---|---|---|---|---|---|\n",
    );
    for (name, f) in &functions {
        let all = f.timings();
        let was = &before[name];
        let t = Timings {
            ready: all.ready[was.ready.len()..].to_vec(),
            first: all.first[was.first.len()..].to_vec(),
            warm: all.warm[was.warm.len()..].to_vec(),
        };
        let zip = std::fs::metadata(binaries.join("../lambda").join(name).join("bootstrap.zip"))
            .ok()
            .map(|m| m.len());
        table.push_str(&row(name, &t, &rss[name], zip));
    }
    println!(
        "cold start: release binaries ({}), {cold} cold rounds, {warm} warm; this machine, moto\n\n{table}",
        std::env::consts::ARCH
    );
}
