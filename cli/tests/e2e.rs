//! End to end: `igbridge serve` as a separate process (embedded, then `--aws` on moto after
//! `igbridge provision`), installed through its own HTTP routes, then signed events posted with
//! `igbridge send`; loopback fakes of Meta and LiveChat see the right calls in both directions.

#[path = "../../shared/tests/support/mod.rs"]
mod support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use testkit::livechat::FakeLivechat;
use testkit::meta::{FakeMeta, FbPage};
use wiremock::MockServer;

const ORG: &str = "00000000-0000-4000-8000-00000000a001";

fn events_file(name: &str) -> String {
    format!("{}/../events/webhooks/{name}", env!("CARGO_MANIFEST_DIR"))
}

struct Fakes {
    livechat: FakeLivechat,
    graph: FakeMeta,
}

/// The strict fakes, set up for the tool's local development app (`LOCAL_DEFAULTS`): a LiveChat
/// owner who approves with `dal:CODE`, and a Facebook user with 150 Pages whose only connectable
/// one (with an Instagram account and the Messages task) is on the second page of `/me/accounts`.
async fn fakes() -> Fakes {
    let livechat =
        FakeLivechat::start("local-livechat-client", "local-livechat-client-secret").await;
    let graph = FakeMeta::start("local-meta-app", "local-meta-app-secret").await;
    livechat.add_code(
        "dal:CODE",
        ORG,
        "acc",
        "customers:own,chats--all:rw,agents--all:ro",
    );
    livechat.add_organization(ORG, "Example Support", "owner@example.com");
    let mut pages: Vec<FbPage> = (0..150)
        .map(|i| FbPage::new(&format!("2000000000{i:05}"), &format!("Page {i}"), None))
        .collect();
    pages[120] = FbPage::new(
        "100000000000001",
        "Shop",
        Some(("17841400000000001", "shop")),
    );
    graph.add_user("fbuser", "FBCODE", pages);
    graph.add_profile(
        "IGSID_1001",
        json!({"name": "Example Customer", "username": "example_customer"}),
    );
    Fakes { livechat, graph }
}

fn igbridge(env: &[(String, String)]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_igbridge"));
    c.env_remove("AWS_ENDPOINT_URL");
    for (k, v) in env {
        c.env(k, v);
    }
    c
}

async fn wait_for<F: Fn(&[wiremock::Request]) -> bool>(server: &MockServer, what: &str, check: F) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let got = server.received_requests().await.unwrap();
        if check(&got) {
            return;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn body_of(r: &wiremock::Request) -> Value {
    serde_json::from_slice(&r.body).unwrap_or(Value::Null)
}

/// Installs through the server's own routes, then carries one message each way.
async fn walk(env: Vec<(String, String)>, serve_args: &[&str], f: &Fakes) {
    let port = support::free_port();
    let base = format!("http://127.0.0.1:{port}");
    let mut env = env;
    env.push(("PUBLIC_BASE_URL".into(), base.clone()));
    f.graph
        .expect_redirect_uri(&format!("{base}/oauth/facebook/callback"));
    let mut args = vec!["serve", "--addr"];
    let addr = format!("127.0.0.1:{port}");
    args.push(&addr);
    args.extend_from_slice(serve_args);
    let _server = support::Guard(
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

    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    // A client holding its tab's flow secret, as the install page's script does.
    let secret = "e2e-tab-secret";
    let binding = shared::install::state::binding_of(secret);
    let state_of = |loc: &str| {
        reqwest::Url::parse(loc)
            .unwrap()
            .query_pairs()
            .find(|(k, _)| k == "state")
            .unwrap()
            .1
            .to_string()
    };
    let field = |page: &str, marker: &str| {
        page.split(marker)
            .nth(1)
            .unwrap_or_else(|| panic!("{marker} in {page}"))
            .split('"')
            .next()
            .unwrap()
            .replace("&amp;", "&")
    };
    let start = http
        .get(format!("{base}/install?b={binding}"))
        .send()
        .await
        .unwrap();
    let lc_state = state_of(start.headers()["location"].to_str().unwrap());
    let back = http
        .post(format!("{base}/oauth/livechat/callback"))
        .form(&[
            ("code", "dal:CODE"),
            ("state", &lc_state),
            ("browser", secret),
        ])
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let fb_state = state_of(&field(&back, "data-go href=\""));
    let shown = http
        .post(format!("{base}/oauth/facebook/callback"))
        .form(&[
            ("code", "FBCODE"),
            ("state", &fb_state),
            ("browser", secret),
        ])
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        shown.contains("Example Support") && shown.contains("@shop"),
        "{shown}"
    );
    let done = http
        .post(format!("{base}/oauth/facebook/select"))
        .form(&[
            ("state", field(&shown, "name=\"state\" value=\"").as_str()),
            ("page_id", "100000000000001"),
            ("browser", secret),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(done.status(), 200);
    assert!(
        done.text()
            .await
            .unwrap()
            .contains("Instagram is connected")
    );

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
    assert_eq!(f.graph.refusals(), Vec::<String>::new());
    assert_eq!(f.livechat.refusals(), Vec::<String>::new());
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

fn local_env(f: &Fakes) -> Vec<(String, String)> {
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
    let endpoint = support::moto_endpoint();
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
    for (k, v) in [
        ("META_APP_ID", "local-meta-app"),
        ("META_APP_SECRET", "local-meta-app-secret"),
        ("META_VERIFY_TOKEN", "local-verify-token"),
        ("LIVECHAT_CLIENT_ID", "local-livechat-client"),
        ("LIVECHAT_CLIENT_SECRET", "local-livechat-client-secret"),
        ("LIVECHAT_WEBHOOK_SECRET", "local-livechat-webhook-secret"),
        ("LIVECHAT_APP_WEBHOOK_TOKEN", "local-livechat-app-token"),
    ] {
        env.push((k.into(), v.into()));
    }
    let table = support::unique("e2e");
    let prefix = support::unique("e2e");
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
