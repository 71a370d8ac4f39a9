//! A Lambda Runtime API emulator that runs a function's real binary the way Lambda does.
//!
//! Each execution environment is one process started with `AWS_LAMBDA_RUNTIME_API` pointing at
//! an emulator of its own, which serves the runtime interface (API version 2018-06-01):
//! `GET /runtime/invocation/next` (long-polled; answers the event with the
//! `Lambda-Runtime-Aws-Request-Id`, `-Deadline-Ms`, `-Invoked-Function-Arn` and `-Trace-Id`
//! headers), `POST /runtime/invocation/{id}/response`, `POST /runtime/invocation/{id}/error` and
//! `POST /runtime/init/error`. An environment runs one invocation at a time. As in Lambda, an
//! invocation that outlives the function's timeout has its process killed, and the next
//! invocation starts a fresh one (a cold start); so does one whose process died.
//! Source: <https://docs.aws.amazon.com/lambda/latest/dg/runtimes-api.html>.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::{mpsc, oneshot, watch};

/// How long Lambda lets a custom runtime initialise before it counts the init as failed.
pub const INIT_TIMEOUT: Duration = Duration::from_secs(10);

/// One function as Lambda would run it.
#[derive(Debug, Clone)]
pub struct FunctionConfig {
    /// The function's name (its crate name here).
    pub name: String,
    /// The binary (`bootstrap` in the zip).
    pub binary: PathBuf,
    /// The configured timeout.
    pub timeout: Duration,
    /// The configured memory (MB), exposed as `AWS_LAMBDA_FUNCTION_MEMORY_SIZE`.
    pub memory_mb: u32,
    /// The function's environment as configured (template variables and the test's own).
    pub env: Vec<(String, String)>,
}

/// Why an invocation gave no answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvokeError {
    /// The function ran past its timeout; its process was killed.
    #[error("Task timed out after {0:?}")]
    Timeout(Duration),
    /// The process exited (or was killed) before answering.
    #[error("Runtime exited ({0})")]
    Exited(String),
    /// The runtime reported an error for the invocation.
    #[error("{error_type}: {message}")]
    Function {
        /// `errorType` as the runtime posted it.
        error_type: String,
        /// `errorMessage`.
        message: String,
    },
    /// Initialisation failed (`/runtime/init/error`, an exit or the init timeout).
    #[error("init failed: {0}")]
    Init(String),
}

/// Timings of one function (reported, never asserted).
#[derive(Debug, Clone, Default)]
pub struct Timings {
    /// Spawn → first `next` of each cold start.
    pub ready: Vec<Duration>,
    /// Duration of each cold invocation (spawn excluded).
    pub first: Vec<Duration>,
    /// Duration of each warm invocation.
    pub warm: Vec<Duration>,
}

struct Invocation {
    id: String,
    payload: Vec<u8>,
    deadline_ms: u64,
    answer: Answer,
}

/// Where an invocation's outcome goes.
type Answer = oneshot::Sender<Result<Vec<u8>, InvokeError>>;

/// The emulator's side of one execution environment.
struct Api {
    function_arn: String,
    queue: tokio::sync::Mutex<mpsc::Receiver<Invocation>>,
    open: Mutex<HashMap<String, Answer>>,
    ready: watch::Sender<Option<Instant>>,
    init_error: watch::Sender<Option<String>>,
}

/// A running execution environment: the process and its runtime API.
struct Environment {
    child: Child,
    to_runtime: mpsc::Sender<Invocation>,
    server: tokio::task::JoinHandle<()>,
    used: bool,
}

impl Drop for Environment {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
        self.server.abort();
    }
}

/// A function: its configuration, its (at most one) execution environment and what it logged.
pub struct Function {
    config: FunctionConfig,
    environment: tokio::sync::Mutex<Option<Environment>>,
    pid: AtomicU32,
    logs: Arc<Mutex<Vec<String>>>,
    timings: Mutex<Timings>,
    invocations: AtomicU32,
}

impl Function {
    /// A function that starts its first environment on its first invocation.
    pub fn new(config: FunctionConfig) -> Arc<Self> {
        Arc::new(Self {
            config,
            environment: tokio::sync::Mutex::new(None),
            pid: AtomicU32::new(0),
            logs: Arc::default(),
            timings: Mutex::default(),
            invocations: AtomicU32::new(0),
        })
    }

    /// Its configuration.
    pub fn config(&self) -> &FunctionConfig {
        &self.config
    }

    /// Invokes the function with `payload` and waits for its answer, as a synchronous `Invoke`.
    pub async fn invoke(&self, payload: &Value) -> Result<Vec<u8>, InvokeError> {
        let mut slot = self.environment.lock().await;
        if slot
            .as_mut()
            .is_none_or(|e| e.child.try_wait().ok().flatten().is_some())
        {
            *slot = None;
            *slot = Some(self.cold_start().await?);
        }
        let environment = slot.as_mut().expect("an environment");
        let cold = !environment.used;
        environment.used = true;
        let started = Instant::now();
        let outcome = self.run(environment, payload).await;
        if matches!(
            outcome,
            Err(InvokeError::Timeout(_) | InvokeError::Exited(_))
        ) {
            // Lambda discards an environment whose invocation timed out or whose runtime died.
            *slot = None;
        }
        let took = started.elapsed();
        let mut timings = self.timings.lock().expect("timings");
        if cold {
            timings.first.push(took);
        } else {
            timings.warm.push(took);
        }
        outcome
    }

    async fn run(
        &self,
        environment: &mut Environment,
        payload: &Value,
    ) -> Result<Vec<u8>, InvokeError> {
        self.invocations.fetch_add(1, Ordering::Relaxed);
        let id = uuid::Uuid::new_v4().to_string();
        let deadline_ms = u64::try_from(chrono::Utc::now().timestamp_millis()).unwrap_or(0)
            + u64::try_from(self.config.timeout.as_millis()).unwrap_or(u64::MAX);
        let (answer, answered) = oneshot::channel();
        let invocation = Invocation {
            id,
            payload: serde_json::to_vec(payload).expect("a JSON payload"),
            deadline_ms,
            answer,
        };
        if environment.to_runtime.send(invocation).await.is_err() {
            return Err(InvokeError::Exited("runtime API closed".into()));
        }
        tokio::select! {
            answer = answered => answer.unwrap_or_else(|_| Err(InvokeError::Exited("no answer".into()))),
            status = environment.child.wait() => Err(InvokeError::Exited(format!("{status:?}"))),
            () = tokio::time::sleep(self.config.timeout) => {
                let _ = environment.child.start_kill();
                let _ = environment.child.wait().await;
                Err(InvokeError::Timeout(self.config.timeout))
            }
        }
    }

    /// Starts a fresh execution environment and waits for its runtime's first `next`.
    async fn cold_start(&self) -> Result<Environment, InvokeError> {
        let (to_runtime, queue) = mpsc::channel(1);
        let api = Arc::new(Api {
            function_arn: format!(
                "arn:aws:lambda:us-east-1:123456789012:function:{}",
                self.config.name
            ),
            queue: tokio::sync::Mutex::new(queue),
            open: Mutex::default(),
            ready: watch::channel(None).0,
            init_error: watch::channel(None).0,
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a loopback port");
        let addr = listener.local_addr().expect("an address");
        let router = runtime_api(api.clone());
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        let spawned = Instant::now();
        let mut child = self
            .command(&addr.to_string())
            .spawn()
            .map_err(|e| InvokeError::Init(format!("{}: {e}", self.config.binary.display())))?;
        self.pid.store(child.id().unwrap_or(0), Ordering::SeqCst);
        self.capture(&mut child);
        let mut ready = api.ready.subscribe();
        let mut init_error = api.init_error.subscribe();
        let outcome = tokio::select! {
            r = ready.wait_for(Option::is_some) => r.map(|_| ()).map_err(|_| InvokeError::Init("runtime API gone".into())),
            e = init_error.wait_for(Option::is_some) => Err(InvokeError::Init(e.map(|e| e.clone().unwrap_or_default()).unwrap_or_default())),
            status = child.wait() => Err(InvokeError::Init(format!("exited during init: {status:?}"))),
            () = tokio::time::sleep(INIT_TIMEOUT) => Err(InvokeError::Init("init timed out".into())),
        };
        let environment = Environment {
            child,
            to_runtime,
            server,
            used: false,
        };
        outcome?;
        self.timings
            .lock()
            .expect("timings")
            .ready
            .push(spawned.elapsed());
        Ok(environment)
    }

    fn command(&self, runtime_api: &str) -> Command {
        let c = &self.config;
        let mut command = Command::new(&c.binary);
        command
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs(c.env.iter().map(|(k, v)| (k, v)))
            // What Lambda sets for a custom runtime.
            .env("AWS_LAMBDA_RUNTIME_API", runtime_api)
            .env("AWS_LAMBDA_FUNCTION_NAME", &c.name)
            .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", c.memory_mb.to_string())
            .env(
                "AWS_LAMBDA_LOG_GROUP_NAME",
                format!("/aws/lambda/{}", c.name),
            )
            .env(
                "AWS_LAMBDA_LOG_STREAM_NAME",
                "2026/11/30/[$LATEST]system-test",
            )
            .env("AWS_LAMBDA_INITIALIZATION_TYPE", "on-demand")
            .env("_HANDLER", "bootstrap")
            .env("LAMBDA_TASK_ROOT", "/var/task")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        command
    }

    /// Keeps every line the process writes (stdout and stderr, as CloudWatch would).
    fn capture(&self, child: &mut Child) {
        let echo = std::env::var_os("IGBRIDGE_SYSTEM_LOGS").is_some();
        let name = self.config.name.clone();
        let keep = |reader: Box<dyn tokio::io::AsyncRead + Unpin + Send>| {
            let logs = self.logs.clone();
            let name = name.clone();
            tokio::spawn(async move {
                let mut lines = BufReader::new(reader).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    if echo {
                        eprintln!("[{name}] {line}");
                    }
                    logs.lock().expect("logs").push(line);
                }
            });
        };
        if let Some(out) = child.stdout.take() {
            keep(Box::new(out));
        }
        if let Some(err) = child.stderr.take() {
            keep(Box::new(err));
        }
    }

    /// Kills the current process with SIGKILL, as a host failure would; the invocation in flight
    /// fails with [`InvokeError::Exited`].
    pub fn kill(&self) {
        let pid = self.pid.load(Ordering::SeqCst);
        if pid != 0 {
            let pid = i32::try_from(pid).expect("a pid");
            // SAFETY: kill(2) with a pid this function spawned; no memory is involved.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
            }
        }
    }

    /// Ends the current execution environment, as Lambda does with an idle one, and returns its
    /// peak resident set (KiB); the next invocation cold-starts.
    pub async fn retire(&self) -> Option<u64> {
        let mut slot = self.environment.lock().await;
        let peak = self.peak_rss_kib();
        if let Some(mut environment) = slot.take() {
            let _ = environment.child.start_kill();
            let _ = environment.child.wait().await;
        }
        peak
    }

    /// The peak resident set (`VmHWM`, KiB) of the current execution environment's process.
    pub fn peak_rss_kib(&self) -> Option<u64> {
        let pid = self.pid.load(Ordering::SeqCst);
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
    }

    /// Every line the function's processes wrote.
    pub fn logs(&self) -> Vec<String> {
        self.logs.lock().expect("logs").clone()
    }

    /// Cold-start and invocation timings so far.
    pub fn timings(&self) -> Timings {
        self.timings.lock().expect("timings").clone()
    }
}

fn runtime_api(api: Arc<Api>) -> Router {
    Router::new()
        .route("/2018-06-01/runtime/invocation/next", get(next))
        .route(
            "/2018-06-01/runtime/invocation/{id}/response",
            post(response),
        )
        .route("/2018-06-01/runtime/invocation/{id}/error", post(error))
        .route("/2018-06-01/runtime/init/error", post(init_error))
        .with_state(api)
}

async fn next(State(api): State<Arc<Api>>) -> Response {
    api.ready.send_if_modified(|r| {
        let first = r.is_none();
        if first {
            *r = Some(Instant::now());
        }
        first
    });
    let Some(invocation) = api.queue.lock().await.recv().await else {
        return StatusCode::GONE.into_response();
    };
    let mut headers = HeaderMap::new();
    let header = |v: &str| HeaderValue::from_str(v).expect("a header value");
    headers.insert("lambda-runtime-aws-request-id", header(&invocation.id));
    headers.insert(
        "lambda-runtime-deadline-ms",
        header(&invocation.deadline_ms.to_string()),
    );
    headers.insert(
        "lambda-runtime-invoked-function-arn",
        header(&api.function_arn),
    );
    headers.insert(
        "lambda-runtime-trace-id",
        header("Root=1-67891233-abcdef012345678912345678;Parent=0123456789abcdef;Sampled=0"),
    );
    headers.insert("content-type", header("application/json"));
    api.open
        .lock()
        .expect("open invocations")
        .insert(invocation.id, invocation.answer);
    (StatusCode::OK, headers, invocation.payload).into_response()
}

fn answer(api: &Api, id: &str, outcome: Result<Vec<u8>, InvokeError>) -> Response {
    match api.open.lock().expect("open invocations").remove(id) {
        Some(to) => {
            let _ = to.send(outcome);
            (StatusCode::ACCEPTED, axum::Json(json!({"status": "OK"}))).into_response()
        }
        None => (
            StatusCode::BAD_REQUEST,
            axum::Json(
                json!({"errorMessage": "Invalid request ID", "errorType": "InvalidRequestID"}),
            ),
        )
            .into_response(),
    }
}

async fn response(State(api): State<Arc<Api>>, Path(id): Path<String>, body: Bytes) -> Response {
    answer(&api, &id, Ok(body.to_vec()))
}

fn error_of(headers: &HeaderMap, body: &[u8]) -> (String, String) {
    let parsed: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let header_type = headers
        .get("lambda-runtime-function-error-type")
        .and_then(|v| v.to_str().ok());
    let error_type = parsed["errorType"]
        .as_str()
        .or(header_type)
        .unwrap_or("Unhandled")
        .to_string();
    let message = parsed["errorMessage"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    (error_type, message)
}

async fn error(
    State(api): State<Arc<Api>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (error_type, message) = error_of(&headers, &body);
    answer(
        &api,
        &id,
        Err(InvokeError::Function {
            error_type,
            message,
        }),
    )
}

async fn init_error(State(api): State<Arc<Api>>, headers: HeaderMap, body: Bytes) -> Response {
    let (error_type, message) = error_of(&headers, &body);
    api.init_error
        .send_replace(Some(format!("{error_type}: {message}")));
    (StatusCode::ACCEPTED, axum::Json(json!({"status": "OK"}))).into_response()
}
