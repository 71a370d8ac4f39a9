//! AWS SDK setup: one `SdkConfig` per cold start, honouring `AWS_ENDPOINT_URL` (moto, LocalStack).

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_smithy_runtime_api::client::http::SharedHttpClient;

/// The region used when none is configured; the privacy policy promises us-east-1.
pub const DEFAULT_REGION: &str = "us-east-1";

/// The HTTP client of every SDK configuration: rustls with ring, the one TLS stack of the
/// binaries (reqwest uses it too, [`crate::http::client`]).
pub fn http_client() -> SharedHttpClient {
    use aws_smithy_http_client::tls::{Provider, rustls_provider::CryptoMode};
    aws_smithy_http_client::Builder::new()
        .tls_provider(Provider::Rustls(CryptoMode::Ring))
        .build_https()
}

/// Loads the shared SDK configuration from the usual AWS sources (the tool, the local server).
pub async fn sdk_config() -> SdkConfig {
    full_chain(None).await
}

/// The default provider chains (environment, profile, web identity, IMDS), all on
/// [`http_client`]; the region falls back to [`DEFAULT_REGION`].
async fn full_chain(endpoint: Option<&str>) -> SdkConfig {
    let mut loader = aws_config::defaults(BehaviorVersion::latest()).http_client(http_client());
    if let Some(endpoint) = endpoint {
        loader = loader.endpoint_url(endpoint);
    }
    let sdk = loader.load().await;
    if sdk.region().is_some() {
        return sdk;
    }
    sdk.to_builder().region(Region::new(DEFAULT_REGION)).build()
}

/// The SDK configuration of a Lambda function, built without the default provider chains: the
/// region from `AWS_REGION` and the credentials from the environment, where Lambda puts both;
/// `AWS_ENDPOINT_URL` (an emulator) when set. Nothing is read from disk or the network, and the
/// profile, SSO, web-identity (STS) and instance-metadata providers are not linked into the
/// functions at all (`igbridge` keeps the full chain, [`sdk_config`]).
pub fn lambda_sdk_config() -> SdkConfig {
    use aws_config::environment::EnvironmentVariableCredentialsProvider;
    use aws_credential_types::provider::SharedCredentialsProvider;
    let env = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
    let region = env("AWS_REGION")
        .or_else(|| env("AWS_DEFAULT_REGION"))
        .unwrap_or_else(|| DEFAULT_REGION.to_string());
    let mut builder = SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .http_client(http_client())
        .region(Region::new(region))
        .credentials_provider(SharedCredentialsProvider::new(
            EnvironmentVariableCredentialsProvider::new(),
        ));
    if let Some(endpoint) = env("AWS_ENDPOINT_URL") {
        builder = builder.endpoint_url(endpoint);
    }
    builder.build()
}

/// The SDK configuration pointed at an explicit endpoint (an emulator).
pub async fn sdk_config_with_endpoint(endpoint: &str) -> SdkConfig {
    full_chain(Some(endpoint)).await
}

/// A short, log-safe description of an SDK error: the service error code and message, or the
/// kind of transport failure. Never includes request bodies.
pub fn error_summary<E>(err: &aws_sdk_dynamodb::error::SdkError<E>) -> String
where
    E: aws_sdk_dynamodb::error::ProvideErrorMetadata,
{
    use aws_sdk_dynamodb::error::SdkError;
    match err {
        SdkError::ServiceError(se) => {
            let e = se.err();
            format!(
                "{}: {}",
                e.code().unwrap_or("ServiceError"),
                e.message().unwrap_or("no message")
            )
        }
        SdkError::TimeoutError(_) => "timeout".into(),
        SdkError::DispatchFailure(d) => {
            if d.is_io() {
                "dispatch failure (io)".into()
            } else if d.is_timeout() {
                "dispatch failure (timeout)".into()
            } else {
                "dispatch failure".into()
            }
        }
        SdkError::ResponseError(_) => "unparseable response".into(),
        SdkError::ConstructionFailure(_) => "request construction failed".into(),
        _ => "unknown SDK error".into(),
    }
}

/// Whether an SDK error is worth retrying (throttling, 5xx, transport).
pub fn is_transient<E>(err: &aws_sdk_dynamodb::error::SdkError<E>) -> bool
where
    E: aws_sdk_dynamodb::error::ProvideErrorMetadata,
{
    use aws_sdk_dynamodb::error::SdkError;
    match err {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            true
        }
        SdkError::ServiceError(se) => {
            let code = se.err().code().unwrap_or_default();
            se.raw().status().is_server_error()
                || code.contains("Throttl")
                || code == "ProvisionedThroughputExceededException"
                || code == "RequestLimitExceeded"
                || code == "InternalServerError"
                || code == "ServiceUnavailable"
                // A write to an item an in-flight transaction holds (the installation fences
                // the uninstall's marking and every connect): worth a retry.
                || code == "TransactionConflictException"
        }
        _ => false,
    }
}
