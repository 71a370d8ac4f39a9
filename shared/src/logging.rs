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

/// The crates of this workspace (tracing targets are module paths): logged at the level asked
/// for. Everything else is a dependency, capped at [`DEPENDENCY_CAP`].
const OWN_TARGETS: &[&str] = &[
    "shared",
    "igbridge",
    "connection_health",
    "deletion_sweeper",
    "instagram_to_livechat",
    "instagram_webhook",
    "livechat_to_instagram",
    "livechat_webhook",
    "oauth_install",
    "uninstall",
];

/// The most a dependency may log, whatever the level: at DEBUG and TRACE they log what they
/// carry — lambda_runtime the raw event ("raw JSON event received from Lambda": webhook
/// `secret_key`s, the app webhook's `?token=`, message text, OAuth codes), the SDK's
/// orchestrator and hyper/h2/reqwest/rustls the requests they send. None of that may reach a
/// log (docs/security.md), so `LogLevel=TRACE` raises only this workspace's own logging.
pub const DEPENDENCY_CAP: LevelFilter = LevelFilter::INFO;

/// The level (Lambda's `TRACE`…`FATAL`) or, locally, `RUST_LOG`'s `target=level` directives,
/// with every dependency capped at [`DEPENDENCY_CAP`]. `Targets` rather than `EnvFilter`: no
/// regular-expression engine in the binaries.
fn filter() -> Targets {
    let directives = std::env::var("AWS_LAMBDA_LOG_LEVEL")
        .ok()
        .map(|l| l.to_lowercase().replace("fatal", "error"))
        .or_else(|| std::env::var("RUST_LOG").ok())
        .unwrap_or_else(|| "info".into());
    capped(
        directives
            .parse()
            .unwrap_or_else(|_| Targets::new().with_default(LevelFilter::INFO)),
    )
}

fn is_own(target: &str) -> bool {
    OWN_TARGETS
        .iter()
        .any(|own| target == *own || target.starts_with(&format!("{own}::")))
}

/// `requested` with this workspace's targets at their requested level and every other target
/// (the default included) at most [`DEPENDENCY_CAP`].
fn capped(requested: Targets) -> Targets {
    let default = requested.default_level().unwrap_or(LevelFilter::OFF);
    let mut out = Targets::new().with_default(default.min(DEPENDENCY_CAP));
    for (target, level) in requested.iter() {
        let level = if is_own(target) {
            level
        } else {
            level.min(DEPENDENCY_CAP)
        };
        out = out.with_target(target, level);
    }
    for own in OWN_TARGETS {
        if !requested.iter().any(|(t, _)| t == *own) {
            out = out.with_target(*own, default);
        }
    }
    out
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

#[cfg(test)]
mod tests {
    use super::*;
    use tracing::Level;

    fn enabled(filter: &Targets, target: &str, level: Level) -> bool {
        filter.would_enable(target, &level)
    }

    #[test]
    fn dependencies_never_log_below_info_whatever_is_asked() {
        for asked in [
            "trace",
            "debug",
            "lambda_runtime=trace,trace",
            "hyper::proto=trace",
            "aws_smithy_runtime=debug,info",
        ] {
            let f = capped(asked.parse().unwrap());
            for dep in [
                "lambda_runtime::layers::api_response",
                "lambda_http",
                "aws_smithy_runtime::client::orchestrator",
                "aws_sdk_sqs",
                "hyper::proto",
                "h2",
                "reqwest",
                "rustls",
                "tower",
            ] {
                assert!(
                    !enabled(&f, dep, Level::DEBUG),
                    "{dep} at DEBUG with {asked}"
                );
                assert!(
                    !enabled(&f, dep, Level::TRACE),
                    "{dep} at TRACE with {asked}"
                );
            }
        }
        let f = capped("trace".parse().unwrap());
        assert!(
            enabled(&f, "lambda_runtime", Level::INFO),
            "dependencies still warn and inform"
        );
        assert!(
            enabled(&f, "shared::relay::inbound", Level::TRACE),
            "our own code at the level asked"
        );
        assert!(enabled(&f, "oauth_install", Level::TRACE));
        let f = capped("warn,shared::health=debug".parse().unwrap());
        assert!(enabled(&f, "shared::health::check", Level::DEBUG));
        assert!(!enabled(&f, "shared::relay", Level::INFO));
        assert!(!enabled(&f, "lambda_runtime", Level::INFO));
    }
}
