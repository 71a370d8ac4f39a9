//! Logging with tracing, in the format Lambda's advanced logging controls expect: JSON lines
//! when `AWS_LAMBDA_LOG_FORMAT=JSON`, plain text otherwise; level from `AWS_LAMBDA_LOG_LEVEL`,
//! then `RUST_LOG`, default `info`. Callers never log tokens, secrets or message text.

use tracing_subscriber::Layer;
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;

/// Installs the global subscriber writing to stdout. Safe to call more than once.
pub fn init() {
    let _ = tracing::subscriber::set_global_default(subscriber(std::io::stdout));
}

/// The level (Lambda's `TRACE`…`FATAL`) or, locally, `RUST_LOG`'s `target=level` directives.
/// `Targets` rather than `EnvFilter`: no regular-expression engine in the binaries.
fn filter() -> Targets {
    let directives = std::env::var("AWS_LAMBDA_LOG_LEVEL")
        .ok()
        .map(|l| l.to_lowercase().replace("fatal", "error"))
        .or_else(|| std::env::var("RUST_LOG").ok())
        .unwrap_or_else(|| "info".into());
    directives
        .parse()
        .unwrap_or_else(|_| Targets::new().with_default(LevelFilter::INFO))
}

fn json_requested() -> bool {
    std::env::var("AWS_LAMBDA_LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json"))
}

type Boxed = Box<dyn Layer<tracing_subscriber::Registry> + Send + Sync>;

/// A subscriber writing to `writer` (tests capture logs through it).
pub fn subscriber<W>(writer: W) -> Box<dyn tracing::Subscriber + Send + Sync>
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    let in_lambda = std::env::var("AWS_LAMBDA_FUNCTION_NAME").is_ok();
    let layer = tracing_subscriber::fmt::layer()
        .with_writer(writer)
        .with_ansi(false);
    let layer: Boxed = if json_requested() {
        Box::new(
            layer
                .json()
                .flatten_event(true)
                .with_current_span(false)
                .with_span_list(false),
        )
    } else if in_lambda {
        // CloudWatch stamps each line already.
        Box::new(layer.without_time())
    } else {
        Box::new(layer)
    };
    Box::new(tracing_subscriber::registry().with(layer.with_filter(filter())))
}
