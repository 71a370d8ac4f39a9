//! AWS SDK setup: one `SdkConfig` per cold start, honouring `AWS_ENDPOINT_URL` (moto, LocalStack).

use aws_config::{BehaviorVersion, Region, SdkConfig};

/// The region used when none is configured; the privacy policy promises us-east-1.
pub const DEFAULT_REGION: &str = "us-east-1";

/// Loads the shared SDK configuration from the usual AWS sources.
pub async fn sdk_config() -> SdkConfig {
    let region = aws_config::meta::region::RegionProviderChain::default_provider()
        .or_else(Region::new(DEFAULT_REGION));
    aws_config::defaults(BehaviorVersion::latest())
        .region(region)
        .load()
        .await
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
    let region = aws_config::meta::region::RegionProviderChain::default_provider()
        .or_else(Region::new(DEFAULT_REGION));
    aws_config::defaults(BehaviorVersion::latest())
        .region(region)
        .endpoint_url(endpoint)
        .load()
        .await
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
        }
        _ => false,
    }
}
