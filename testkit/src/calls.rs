//! Counts the AWS calls an SDK configuration makes, by operation (`DynamoDB_20120810.PutItem`,
//! `AmazonSQS.SendMessageBatch`: both services speak the JSON protocol, which names the
//! operation in `X-Amz-Target`). For the benchmarks' calls-per-message figures, against moto.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use aws_config::SdkConfig;
use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpClient,
    SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::HttpRequest;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;

/// Calls made so far, by operation.
#[derive(Debug, Clone, Default)]
pub struct Calls(Arc<Mutex<BTreeMap<String, u64>>>);

impl Calls {
    /// The counts so far.
    pub fn snapshot(&self) -> BTreeMap<String, u64> {
        self.0.lock().expect("calls").clone()
    }

    /// Forgets the counts.
    pub fn reset(&self) {
        self.0.lock().expect("calls").clear();
    }

    fn add(&self, operation: &str) {
        *self
            .0
            .lock()
            .expect("calls")
            .entry(operation.to_string())
            .or_default() += 1;
    }
}

/// Whether a DynamoDB operation writes.
pub fn is_dynamodb_write(operation: &str) -> bool {
    operation
        .strip_prefix("DynamoDB_20120810.")
        .is_some_and(|op| {
            matches!(
                op,
                "PutItem" | "UpdateItem" | "DeleteItem" | "BatchWriteItem" | "TransactWriteItems"
            )
        })
}

/// `sdk` with every request counted (plain HTTP: an emulator).
pub fn counting(sdk: &SdkConfig) -> (SdkConfig, Calls) {
    let calls = Calls::default();
    let client = Counting {
        inner: aws_smithy_http_client::Builder::new().build_http(),
        calls: calls.clone(),
    };
    let sdk = sdk
        .to_builder()
        .http_client(SharedHttpClient::new(client))
        .build();
    (sdk, calls)
}

#[derive(Debug)]
struct Counting {
    inner: SharedHttpClient,
    calls: Calls,
}

impl HttpClient for Counting {
    fn http_connector(
        &self,
        settings: &HttpConnectorSettings,
        components: &RuntimeComponents,
    ) -> SharedHttpConnector {
        SharedHttpConnector::new(CountingConnector {
            inner: self.inner.http_connector(settings, components),
            calls: self.calls.clone(),
        })
    }
}

#[derive(Debug)]
struct CountingConnector {
    inner: SharedHttpConnector,
    calls: Calls,
}

impl HttpConnector for CountingConnector {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let target = request.headers().get("x-amz-target").unwrap_or("other");
        self.calls.add(target);
        self.inner.call(request)
    }
}
