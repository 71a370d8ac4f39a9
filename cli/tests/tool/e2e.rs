//! End to end: `igbridge serve` as a separate process (embedded, then `--aws` on moto after
//! `igbridge provision`), installed through its own HTTP routes, then signed events posted with
//! `igbridge send`; loopback fakes of Meta and LiveChat see the right calls in both directions.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use igbridge::settings::LOCAL_DEFAULTS;
use serde_json::{Value, json};
use testkit::journey::{AppFakes, body_of, install, wait_for};
use testkit::moto;

/// The tool's development value of a setting.
fn local(name: &str) -> &'static str {
    LOCAL_DEFAULTS
        .iter()
        .find(|(k, _)| *k == name)
        .map(|(_, v)| *v)
        .unwrap_or_else(|| panic!("{name} has no development value"))
}

fn events_file(name: &str) -> String {
    format!("{}/../events/webhooks/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// The strict fakes, set up for the tool's local development app (`LOCAL_DEFAULTS`).
async fn fakes() -> AppFakes {
    AppFakes::start(
        (local("LIVECHAT_CLIENT_ID"), local("LIVECHAT_CLIENT_SECRET")),
        (local("META_APP_ID"), local("META_APP_SECRET")),
    )
    .await
}

fn igbridge(env: &[(String, String)]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_igbridge"));
    c.env_remove("AWS_ENDPOINT_URL");
    for (k, v) in env {
        c.env(k, v);
    }
    c
}

/// Installs through the server's own routes, then carries one message each way.
async fn walk(env: Vec<(String, String)>, serve_args: &[&str], f: &AppFakes) {
    let port = moto::free_port();
    let base = format!("http://127.0.0.1:{port}");
    let mut env = env;
    env.push(("PUBLIC_BASE_URL".into(), base.clone()));
    let mut args = vec!["serve", "--addr"];
    let addr = format!("127.0.0.1:{port}");
    args.push(&addr);
    args.extend_from_slice(serve_args);
    let _server = moto::Guard(
        igbridge(&env)
            .args(&args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "igbridge serve did not start");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    install(&base, f).await;
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();

    // Instagram → LiveChat.
    let sent = igbridge(&env)
        .args([
            "send",
            &events_file("instagram-text.json"),
            "--to",
            &format!("{base}/webhooks/instagram"),
            "--json",
        ])
        .output()
        .unwrap();
    assert!(
        sent.status.success(),
        "{}",
        String::from_utf8_lossy(&sent.stderr)
    );
    let answer: Value = serde_json::from_slice(&sent.stdout).unwrap();
    assert_eq!(answer["status"], 200);
    wait_for(&f.livechat, "start_chat", |rs| {
        rs.iter().any(|r| {
            r.url.path().ends_with("start_chat")
                && body_of(r)["chat"]["thread"]["events"][0]["text"]
                    == "Hi, where is my order #1042?"
        })
    })
    .await;

    // LiveChat → Instagram.
    let sent = igbridge(&env)
        .args([
            "send",
            &events_file("livechat-incoming-event.json"),
            "--to",
            &format!("{base}/webhooks/livechat"),
        ])
        .output()
        .unwrap();
    assert!(
        sent.status.success(),
        "{}",
        String::from_utf8_lossy(&sent.stderr)
    );
    wait_for(&f.graph, "the Send API call", |rs| {
        rs.iter().any(|r| {
            r.url.path().ends_with("/messages")
                && body_of(r) == json!({"recipient": {"id": "IGSID_1001"}, "message": {"text": "Hello, your order ships tomorrow."}, "messaging_type": "RESPONSE"})
                && r.headers["authorization"] == "Bearer PAGE-TOKEN-100000000000001"
        })
    })
    .await;
    // Meta and LiveChat accepted every request the running app made.
    f.assert_nothing_refused();
    assert_eq!(
        f.graph
            .calls()
            .iter()
            .filter(|c| c.path == "me/accounts")
            .count(),
        2,
        "the Page list was followed to its second page"
    );
    assert!(f.graph.subscription("100000000000001").is_some());

    // A forged event is refused by the running server.
    let forged = http
        .post(format!("{base}/webhooks/instagram"))
        .header("x-hub-signature-256", "sha256=00")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 401);
}

fn local_env(f: &AppFakes) -> Vec<(String, String)> {
    vec![
        ("GRAPH_API_BASE_URL".into(), f.graph.uri()),
        ("LIVECHAT_API_BASE_URL".into(), f.livechat.uri()),
        ("LIVECHAT_ACCOUNTS_BASE_URL".into(), f.livechat.uri()),
        ("RUST_LOG".into(), "warn".into()),
    ]
}

#[tokio::test]
async fn serve_embedded_carries_messages_both_ways() {
    let f = fakes().await;
    walk(local_env(&f), &[], &f).await;
}

#[tokio::test]
async fn serve_on_moto_after_provision_carries_messages_both_ways() {
    let f = fakes().await;
    let endpoint = moto::moto_endpoint();
    let mut env = local_env(&f);
    env.extend([
        ("AWS_ENDPOINT_URL".to_string(), endpoint.clone()),
        ("AWS_ACCESS_KEY_ID".into(), "testing".into()),
        ("AWS_SECRET_ACCESS_KEY".into(), "testing".into()),
        ("AWS_REGION".into(), "us-east-1".into()),
        (
            "TOKEN_ENCRYPTION_KEY".into(),
            "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=".into(),
        ),
    ]);
    // --aws mode takes no development defaults: the same values, given explicitly.
    env.extend(
        LOCAL_DEFAULTS
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string())),
    );
    let table = moto::unique("e2e");
    let prefix = moto::unique("e2e");
    let out = igbridge(&env)
        .args([
            "provision",
            "--json",
            "--table",
            &table,
            "--prefix",
            &prefix,
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let provisioned: Value = serde_json::from_slice(&out.stdout).unwrap();
    for (k, v) in provisioned.as_object().unwrap() {
        env.push((k.clone(), v.as_str().unwrap().to_string()));
    }
    walk(env.clone(), &["--aws"], &f).await;

    // The chores run against the same table and queues (a missing setting is named, as above).
    env.push(("PUBLIC_BASE_URL".into(), "http://127.0.0.1:3000".into()));
    let sweep = igbridge(&env)
        .args(["sweep", "--dry-run", "--json"])
        .output()
        .unwrap();
    assert!(
        sweep.status.success(),
        "{}",
        String::from_utf8_lossy(&sweep.stderr)
    );
    let report: Value = serde_json::from_slice(&sweep.stdout).unwrap();
    assert_eq!(
        (report["due"].as_u64(), report["dry_run"].as_bool()),
        (Some(0), Some(true))
    );
    let redrive = igbridge(&env).args(["redrive", "--json"]).output().unwrap();
    assert!(
        redrive.status.success(),
        "{}",
        String::from_utf8_lossy(&redrive.stderr)
    );
    let counts: Value = serde_json::from_slice(&redrive.stdout).unwrap();
    assert_eq!(counts["to-livechat"]["moved"], 0);
}
