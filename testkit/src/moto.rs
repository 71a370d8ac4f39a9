//! Test harness: moto server over the real AWS wire protocol.
//!
//! Uses `AWS_ENDPOINT_URL` when it is set (scripts/test starts one moto for the whole run);
//! otherwise starts scripts/moto_server.py on a free loopback port once per test binary, under a shell that kills
//! it when this process exits (its stdin closes). A missing moto is a test failure, not a skip.

use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};

use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::Credentials;

static ENDPOINT: OnceLock<String> = OnceLock::new();
static GUARD: Mutex<Option<Child>> = Mutex::new(None);

/// The moto endpoint for this test run.
pub fn moto_endpoint() -> String {
    ENDPOINT
        .get_or_init(|| match std::env::var("AWS_ENDPOINT_URL") {
            Ok(url) if !url.is_empty() => url,
            _ => start_moto(),
        })
        .clone()
}

fn start_moto() -> String {
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port();
    // scripts/moto_server.py: moto with its FIFO redelivery order corrected; the project's
    // virtual environment's Python when scripts/test made one.
    let root = crate::lambda::template::root();
    let venv = root.join(".venv/bin/python3");
    let python = if venv.exists() {
        venv.display().to_string()
    } else {
        "python3".to_string()
    };
    let launcher = root.join("scripts/moto_server.py");
    let script = format!(
        "{python} {} -H 127.0.0.1 -p {port} >/dev/null 2>&1 & pid=$!; \
         trap 'kill $pid 2>/dev/null' EXIT; read _; kill $pid 2>/dev/null",
        launcher.display()
    );
    let child = Command::new("sh")
        .arg("-c")
        .arg(script)
        .stdin(Stdio::piped())
        .spawn()
        .expect("sh to start moto_server");
    *GUARD.lock().unwrap() = Some(child);
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return format!("http://127.0.0.1:{port}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    // Keep the guard's stdin open until here; dropping it stops the shell.
    let _ = GUARD
        .lock()
        .unwrap()
        .as_mut()
        .and_then(|c| c.stdin.as_mut())
        .map(|s| s.flush());
    panic!(
        "moto did not start on port {port}: run the tests with scripts/test (it installs moto \
         into .venv), or `pip install 'moto[server]'`, or set AWS_ENDPOINT_URL"
    );
}

/// An SDK configuration pointed at moto with dummy credentials.
pub async fn sdk() -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .http_client(shared::aws::http_client())
        .endpoint_url(moto_endpoint())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("testing", "testing", None, None, "moto"))
        .load()
        .await
}

/// A name no other test uses.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4().simple())
}

/// Kills a child process (a server under test) when dropped.
pub struct Guard(pub Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A loopback port free right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
