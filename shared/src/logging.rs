//! Logging with tracing, in the format Lambda's advanced logging controls expect: JSON lines
//! when `AWS_LAMBDA_LOG_FORMAT=JSON`, plain text otherwise; level from `AWS_LAMBDA_LOG_LEVEL`,
//! then `RUST_LOG`, default `info`. Callers never log tokens, secrets or message text.

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

/// Installs the global subscriber writing to stdout. Safe to call more than once.
pub fn init() {
    let _ = tracing::subscriber::set_global_default(subscriber(std::io::stdout));
}

fn filter() -> EnvFilter {
    let level = std::env::var("AWS_LAMBDA_LOG_LEVEL")
        .ok()
        .map(|l| l.to_lowercase())
        .or_else(|| std::env::var("RUST_LOG").ok())
        .unwrap_or_else(|| "info".into());
    EnvFilter::try_new(level).unwrap_or_else(|_| EnvFilter::new("info"))
}

fn json_requested() -> bool {
    std::env::var("AWS_LAMBDA_LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json"))
}

/// A subscriber writing to `writer` (tests capture logs through it).
pub fn subscriber<W>(writer: W) -> Box<dyn tracing::Subscriber + Send + Sync>
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    let in_lambda = std::env::var("AWS_LAMBDA_FUNCTION_NAME").is_ok();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter())
        .with_writer(writer)
        .with_ansi(false);
    if json_requested() {
        Box::new(
            builder
                .json()
                .flatten_event(true)
                .with_current_span(false)
                .with_span_list(false)
                .finish(),
        )
    } else if in_lambda {
        // CloudWatch stamps each line already.
        Box::new(builder.without_time().finish())
    } else {
        Box::new(builder.finish())
    }
}
