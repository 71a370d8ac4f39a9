//! The deployed shape under test: template.yaml deployed on moto, the eight function binaries
//! (built from `functions/*`, exactly the code `cargo lambda build` ships) run under the test
//! kit's Lambda Runtime API emulator, reached through an HTTP API front built from the
//! template's routes and fed by SQS event-source mappings with the template's settings; the
//! strict fakes of Meta and LiveChat stand in for the platforms. Secrets reach the functions only
//! through Secrets Manager (the environment holds none, as in the template).

pub mod browser;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use secrecy::ExposeSecret;
use serde_json::{Value, json};
use testkit::journey::AppFakes;
use testkit::lambda::event_source::{Mapping, Poller};
use testkit::lambda::http_api::{HttpApi, Route};
use testkit::lambda::runtime::{Function, FunctionConfig};
use testkit::lambda::stack::{Stack, StackOptions};
use testkit::lambda::template::{self, FunctionDef};

/// The app's public identifiers (template parameters).
pub const META_APP_ID: &str = "1234567890";
/// The LiveChat client id.
pub const LIVECHAT_CLIENT_ID: &str = "system-livechat-client";
/// The secrets the operator fills in after the first deploy.
pub const META_APP_SECRET: &str = "system-meta-app-secret";
/// The webhook verify token.
pub const META_VERIFY_TOKEN: &str = "system-verify-token";
/// The LiveChat client secret.
pub const LIVECHAT_CLIENT_SECRET: &str = "system-livechat-client-secret";
/// The secret LiveChat puts in each chat webhook body (`bridge::agent_event` signs with it).
pub const LIVECHAT_WEBHOOK_SECRET: &str = "lc-webhook-secret";

/// How a system is started.
#[derive(Debug, Clone)]
pub struct Options {
    /// The work queues' visibility timeout (the template's 180 s, compressed so a test sees a
    /// failed batch again in seconds).
    pub visibility_timeout: i32,
    /// Function timeouts that differ from the template's, by binary name.
    pub timeouts: BTreeMap<String, Duration>,
    /// Secrets left unfilled (as an operator who skipped one would).
    pub unfilled: Vec<String>,
    /// Where the function binaries are (default: [`binaries`]; the cold-start bench gives
    /// [`release_binaries`]).
    pub binaries: Option<PathBuf>,
    /// The template's `LogLevel` (default: `IGBRIDGE_SYSTEM_LOG_LEVEL`, else INFO).
    pub log_level: Option<String>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            visibility_timeout: 5,
            timeouts: BTreeMap::new(),
            unfilled: Vec::new(),
            binaries: None,
            log_level: None,
        }
    }
}

/// The whole app, deployed and running.
pub struct System {
    /// The stack on moto.
    pub stack: Stack,
    /// The platforms.
    pub fakes: AppFakes,
    /// Each function by binary name.
    pub functions: BTreeMap<String, Arc<Function>>,
    /// The HTTP API front.
    pub api: HttpApi,
    /// The event-source mappings, by function.
    pub pollers: BTreeMap<String, Poller>,
    defs: Vec<FunctionDef>,
    /// A client that does not follow redirects.
    pub http: reqwest::Client,
}

/// Builds the function binaries once per test process (cargo releases its lock while tests
/// run). The whole workspace with its tests, so features resolve as they did for the test
/// build and nothing is compiled twice.
pub fn binaries() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let exe = std::env::current_exe().expect("the test binary");
        let dir = exe
            .parent()
            .and_then(|deps| deps.parent())
            .expect("target/<profile>/deps")
            .to_path_buf();
        let release = dir.file_name().is_some_and(|n| n == "release");
        let mut cargo = std::process::Command::new(env!("CARGO"));
        cargo.current_dir(template::root()).args([
            "build",
            "--workspace",
            "--bins",
            "--tests",
            "--quiet",
        ]);
        if release {
            cargo.arg("--release");
        }
        let out = cargo.output().expect("cargo to build the functions");
        assert!(
            out.status.success(),
            "building the function binaries failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        dir
    })
}

/// Builds each function in the release profile on its own, as `sam build` and CI's `cargo
/// lambda build` do (each links only the `shared` features its crate enables); returns
/// `target/release`.
pub fn release_binaries() -> PathBuf {
    let root = template::root();
    for function in shared::function::Function::ALL {
        let out = std::process::Command::new(env!("CARGO"))
            .current_dir(&root)
            .args(["build", "--release", "--quiet", "-p", function.crate_name()])
            .output()
            .expect("cargo to build the functions");
        assert!(
            out.status.success(),
            "building {} failed:\n{}",
            function.crate_name(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let dir =
        std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), PathBuf::from);
    dir.join("release")
}

impl System {
    /// Deploys the template on moto and starts every function, the front and the mappings.
    pub async fn start(options: Options) -> Self {
        let bin = options
            .binaries
            .clone()
            .unwrap_or_else(|| binaries().clone());
        let fakes = AppFakes::start(
            (LIVECHAT_CLIENT_ID, LIVECHAT_CLIENT_SECRET),
            (META_APP_ID, META_APP_SECRET),
        )
        .await;
        let mut api = HttpApi::bind().await;
        let sdk = testkit::moto::sdk().await;
        let stack = Stack::deploy(
            sdk,
            StackOptions {
                parameters: BTreeMap::from([
                    ("MetaAppId".into(), META_APP_ID.into()),
                    ("LivechatClientId".into(), LIVECHAT_CLIENT_ID.into()),
                    // The template's LogLevel parameter (IGBRIDGE_SYSTEM_LOG_LEVEL=DEBUG to debug).
                    (
                        "LogLevel".into(),
                        options.log_level.clone().unwrap_or_else(|| {
                            std::env::var("IGBRIDGE_SYSTEM_LOG_LEVEL")
                                .unwrap_or_else(|_| "INFO".into())
                        }),
                    ),
                ]),
                api_endpoint: api.url().to_string(),
                visibility_timeout: Some(options.visibility_timeout),
            },
        )
        .await;
        fill_secrets(&stack, &options.unfilled).await;
        let defs = template::functions(stack.template());
        let functions: BTreeMap<String, Arc<Function>> = defs
            .iter()
            .map(|def| {
                let mut env = stack.function_env(def);
                env.extend(platform_env(&fakes));
                let timeout = options.timeouts.get(&def.binary).copied();
                let config = FunctionConfig {
                    name: def.binary.clone(),
                    binary: bin.join(&def.binary),
                    timeout: timeout.unwrap_or(def.timeout),
                    memory_mb: def.memory_mb,
                    env,
                };
                (def.binary.clone(), Function::new(config))
            })
            .collect();
        api.serve(
            template::routes(stack.template())
                .into_iter()
                .map(|def| Route {
                    function: functions[&def.function].clone(),
                    def,
                })
                .collect(),
        );
        let sqs = aws_sdk_sqs::Client::new(&stack.sdk);
        let pollers = defs
            .iter()
            .flat_map(|def| def.queues.iter().map(move |q| (def, q)))
            .map(|(def, q)| {
                let mapping = Mapping {
                    queue_url: stack.reference(&q.queue).to_string(),
                    queue_arn: stack.attribute(&q.queue, "Arn").to_string(),
                    batch_size: q.batch_size,
                    report_batch_item_failures: q.report_batch_item_failures,
                };
                let poller = mapping.start(sqs.clone(), functions[&def.binary].clone());
                (def.binary.clone(), poller)
            })
            .collect();
        Self {
            stack,
            fakes,
            functions,
            api,
            pollers,
            defs,
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("a client"),
        }
    }

    /// A started system with the app installed through the front.
    pub async fn installed(options: Options) -> Self {
        let s = Self::start(options).await;
        testkit::journey::install(s.api.url(), &s.fakes).await;
        s
    }

    /// The front's URL for `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.api.url())
    }

    /// A function by binary name.
    pub fn function(&self, name: &str) -> &Arc<Function> {
        &self.functions[name]
    }

    /// Posts a Meta webhook body, signed with the app secret, through the front.
    pub async fn post_instagram(&self, body: &Value) -> reqwest::Response {
        let text = body.to_string();
        let signature =
            shared::instagram::webhook::sign(META_APP_SECRET.as_bytes(), text.as_bytes());
        self.http
            .post(self.url("/webhooks/instagram"))
            .header("content-type", "application/json")
            .header("x-hub-signature-256", signature)
            .body(text)
            .send()
            .await
            .expect("the front answers")
    }

    /// Posts a LiveChat chat webhook through the front.
    pub async fn post_livechat(&self, body: &Value) -> reqwest::Response {
        self.http
            .post(self.url("/webhooks/livechat"))
            .json(body)
            .send()
            .await
            .expect("the front answers")
    }

    /// The generated App Webhooks token the operator copies into LiveChat's webhook URL.
    pub async fn app_webhook_token(&self) -> String {
        let secret = secret_json(&self.stack, "LivechatAppWebhookToken").await;
        secret["LIVECHAT_APP_WEBHOOK_TOKEN"]
            .as_str()
            .expect("a generated token")
            .to_string()
    }

    /// Invokes the scheduled function with the scheduler's payload (the template's `Input`),
    /// with `now` moved to `now`; returns the function's answer.
    pub async fn run_schedule(&self, function: &str, now: DateTime<Utc>) -> Value {
        let def = self
            .defs
            .iter()
            .find(|d| d.binary == function)
            .expect("a function");
        let mut input = def
            .schedules
            .first()
            .unwrap_or_else(|| panic!("{function} has no schedule"))
            .input
            .clone();
        input["now"] = json!(now.to_rfc3339());
        let answer = self
            .function(function)
            .invoke(&input)
            .await
            .unwrap_or_else(|e| panic!("{function}: {e}"));
        serde_json::from_slice(&answer).expect("a JSON answer")
    }

    /// Delivers a lifecycle event as the bus's rules would: every function with an
    /// `EventBridgeRule` matching it is invoked with the EventBridge envelope (moto keeps events
    /// but runs no targets). Returns each invoked function's answer.
    pub async fn deliver_event(&self, detail_type: &str, detail: Value) -> Vec<(String, Value)> {
        let event = json!({
            "version": "0", "id": format!("event-{}", Utc::now().timestamp_nanos_opt().unwrap_or_default()), "detail-type": detail_type,
            "source": "igbridge", "account": "123456789012", "time": Utc::now().to_rfc3339(),
            "region": "us-east-1", "resources": [], "detail": detail,
        });
        let mut out = Vec::new();
        for def in self
            .defs
            .iter()
            .filter(|d| d.rules.iter().any(|r| r.matches(&event)))
        {
            let answer = self
                .function(&def.binary)
                .invoke(&event)
                .await
                .unwrap_or_else(|e| panic!("{}: {e}", def.binary));
            out.push((
                def.binary.clone(),
                serde_json::from_slice(&answer).expect("a JSON answer"),
            ));
        }
        out
    }

    /// Starts copying every lifecycle event the functions publish to the stack's bus into a
    /// queue of the test's (a rule with an SQS target, which moto delivers): what the bus's
    /// rules would start, counted.
    pub async fn tap_events(&self) -> EventTap {
        let events = aws_sdk_eventbridge::Client::new(&self.stack.sdk);
        let sqs = aws_sdk_sqs::Client::new(&self.stack.sdk);
        let bus = self.stack.reference("LifecycleBus").to_string();
        let url = sqs
            .create_queue()
            .queue_name(testkit::moto::unique("tap"))
            .send()
            .await
            .expect("create-queue")
            .queue_url
            .expect("a queue url");
        let arn = sqs
            .get_queue_attributes()
            .queue_url(&url)
            .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
            .send()
            .await
            .expect("get-queue-attributes")
            .attributes
            .expect("attributes")[&aws_sdk_sqs::types::QueueAttributeName::QueueArn]
            .clone();
        let rule = testkit::moto::unique("tap");
        events
            .put_rule()
            .name(&rule)
            .event_bus_name(&bus)
            .event_pattern(json!({"source": ["igbridge"]}).to_string())
            .send()
            .await
            .expect("put-rule");
        let target = aws_sdk_eventbridge::types::Target::builder()
            .id("tap")
            .arn(arn)
            .build()
            .expect("a target");
        events
            .put_targets()
            .rule(&rule)
            .event_bus_name(&bus)
            .targets(target)
            .send()
            .await
            .expect("put-targets");
        EventTap { sqs, url }
    }

    /// Waits (up to `limit`) until both work queues are empty with nothing in flight.
    pub async fn settle(&self, limit: Duration) {
        let deadline = Instant::now() + limit;
        loop {
            let mut busy = 0;
            for q in ["ToLivechatQueue", "ToInstagramQueue"] {
                busy += self.depth(q).await;
            }
            if busy == 0 {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "queues did not drain: {busy} left"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Messages in a queue, visible or in flight.
    pub async fn depth(&self, logical_id: &str) -> u64 {
        use aws_sdk_sqs::types::QueueAttributeName as A;
        let out = aws_sdk_sqs::Client::new(&self.stack.sdk)
            .get_queue_attributes()
            .queue_url(self.stack.reference(logical_id))
            .attribute_names(A::ApproximateNumberOfMessages)
            .attribute_names(A::ApproximateNumberOfMessagesNotVisible)
            .attribute_names(A::ApproximateNumberOfMessagesDelayed)
            .send()
            .await
            .expect("get-queue-attributes");
        let attrs = out.attributes.unwrap_or_default();
        [
            A::ApproximateNumberOfMessages,
            A::ApproximateNumberOfMessagesNotVisible,
            A::ApproximateNumberOfMessagesDelayed,
        ]
        .iter()
        .filter_map(|a| attrs.get(a).and_then(|v| v.parse::<u64>().ok()))
        .sum()
    }

    /// Every item of the table, as JSON-ish strings (for leftovers and privacy checks).
    pub async fn table_items(&self) -> Vec<String> {
        let client = aws_sdk_dynamodb::Client::new(&self.stack.sdk);
        let mut items = Vec::new();
        let mut start = None;
        loop {
            let out = client
                .scan()
                .table_name(self.stack.reference("Table"))
                .set_exclusive_start_key(start)
                .send()
                .await
                .expect("scan");
            items.extend(out.items().iter().map(|i| format!("{i:?}")));
            start = out.last_evaluated_key;
            if start.is_none() {
                return items;
            }
        }
    }

    /// What each mapping and function has done, for a failing test's message.
    pub async fn diagnose(&self) -> String {
        use std::sync::atomic::Ordering::Relaxed;
        let mut out = self.cold_starts();
        for (name, p) in &self.pollers {
            let s = &p.stats;
            out.push_str(&format!(
                "{name} mapping: {} invocations ({} failed), {} deleted, {} reported failed, largest batch {}\n",
                s.invocations.load(Relaxed),
                s.failed_invocations.load(Relaxed),
                s.deleted.load(Relaxed),
                s.reported_failures.load(Relaxed),
                s.largest_batch.load(Relaxed),
            ));
            for (i, batch) in s.batches.lock().expect("batches").iter().enumerate() {
                out.push_str(&format!("  batch {i}: {batch}\n"));
            }
        }
        for q in [
            "ToLivechatQueue",
            "ToLivechatDlq",
            "ToInstagramQueue",
            "ToInstagramDlq",
        ] {
            out.push_str(&format!("{q}: {} messages\n", self.depth(q).await));
        }
        for (name, f) in &self.functions {
            let logs = f.logs();
            for line in &logs[logs.len().saturating_sub(8)..] {
                out.push_str(&format!("[{name}] {line}\n"));
            }
        }
        out
    }

    /// Every log line of every function.
    pub fn logs(&self) -> Vec<String> {
        self.functions.values().flat_map(|f| f.logs()).collect()
    }

    /// The cold-start table: per function, spawn → ready, first and warm invocations.
    pub fn cold_starts(&self) -> String {
        let ms = |d: &Duration| d.as_secs_f64() * 1000.0;
        let pct = |v: &[Duration], p: f64| -> String {
            if v.is_empty() {
                return "-".into();
            }
            let mut v = v.to_vec();
            v.sort();
            let i = ((v.len() as f64 - 1.0) * p).round() as usize;
            format!("{:.1}", ms(&v[i]))
        };
        let mut out = format!(
            "{:<24} {:>5} {:>10} {:>10} {:>6} {:>9} {:>9}\n",
            "function", "cold", "ready ms", "first ms", "warm", "warm p50", "warm p99"
        );
        for (name, f) in &self.functions {
            let t = f.timings();
            out.push_str(&format!(
                "{:<24} {:>5} {:>10} {:>10} {:>6} {:>9} {:>9}\n",
                name,
                t.ready.len(),
                pct(&t.ready, 0.5),
                pct(&t.first, 0.5),
                t.warm.len(),
                pct(&t.warm, 0.5),
                pct(&t.warm, 0.99),
            ));
        }
        out
    }
}

/// The value the operator puts in each secret (docs/operations.md "Deploy"), by logical id.
pub fn secret_values(key: &str) -> BTreeMap<&'static str, Value> {
    BTreeMap::from([
        ("MetaAppSecret", json!({"META_APP_SECRET": META_APP_SECRET})),
        (
            "MetaVerifyToken",
            json!({"META_VERIFY_TOKEN": META_VERIFY_TOKEN}),
        ),
        (
            "LivechatClientSecret",
            json!({"LIVECHAT_CLIENT_SECRET": LIVECHAT_CLIENT_SECRET}),
        ),
        (
            "LivechatWebhookSecret",
            json!({"LIVECHAT_WEBHOOK_SECRET": LIVECHAT_WEBHOOK_SECRET}),
        ),
        ("TokenEncryptionKey", json!({"TOKEN_ENCRYPTION_KEY": key})),
    ])
}

async fn fill_secrets(stack: &Stack, unfilled: &[String]) {
    let key = shared::cipher::TokenCipher::generate_setting();
    for (id, value) in secret_values(key.expose_secret()) {
        if !unfilled.iter().any(|u| u == id) {
            stack.fill_secret(id, &value).await;
        }
    }
}

/// A secret's current value.
async fn secret_json(stack: &Stack, id: &str) -> Value {
    let out = aws_sdk_secretsmanager::Client::new(&stack.sdk)
        .get_secret_value()
        .secret_id(stack.reference(id))
        .send()
        .await
        .expect("get-secret-value");
    serde_json::from_str(out.secret_string().unwrap_or("{}")).expect("a JSON secret")
}

/// What Lambda gives every function besides the template's variables: the region and the
/// role's credentials (here moto's), and this test's platform endpoints (the fakes).
fn platform_env(f: &AppFakes) -> Vec<(String, String)> {
    let endpoint = testkit::moto::moto_endpoint();
    [
        ("AWS_ENDPOINT_URL", endpoint.as_str()),
        ("AWS_REGION", "us-east-1"),
        ("AWS_DEFAULT_REGION", "us-east-1"),
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
        ("AWS_SESSION_TOKEN", "testing"),
        ("GRAPH_API_BASE_URL", &f.graph.uri()),
        ("FACEBOOK_DIALOG_BASE_URL", &f.graph.uri()),
        ("LIVECHAT_API_BASE_URL", &f.livechat.uri()),
        ("LIVECHAT_ACCOUNTS_BASE_URL", &f.livechat.uri()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// The lifecycle events the functions published since [`System::tap_events`].
pub struct EventTap {
    sqs: aws_sdk_sqs::Client,
    url: String,
}

impl EventTap {
    /// The events published so far and not read yet, in EventBridge's envelope.
    pub async fn take(&self) -> Vec<Value> {
        let mut out = Vec::new();
        loop {
            let got = self
                .sqs
                .receive_message()
                .queue_url(&self.url)
                .max_number_of_messages(10)
                .wait_time_seconds(1)
                .send()
                .await
                .expect("receive-message");
            let messages = got.messages.unwrap_or_default();
            if messages.is_empty() {
                return out;
            }
            for m in messages {
                out.push(serde_json::from_str(m.body().unwrap_or("null")).expect("an event"));
                if let Some(receipt) = m.receipt_handle() {
                    let _ = self
                        .sqs
                        .delete_message()
                        .queue_url(&self.url)
                        .receipt_handle(receipt)
                        .send()
                        .await;
                }
            }
        }
    }
}
