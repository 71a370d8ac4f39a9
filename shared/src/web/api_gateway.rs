//! The HTTP functions' Lambda runner: lambda_http's adapter, behind a check that the event is one
//! it can turn into a request. lambda_http 1.3 panics instead of failing on an event whose URI it
//! cannot build (a raw query or path `http::Uri` refuses, an unparseable host or scheme) or whose
//! base64 body does not decode; with the release profile's `panic = "abort"` (smaller binaries,
//! docs/performance.md) that would end the execution environment. Such a request gets 400 here
//! and the environment lives on. shared/tests/suite/fuzz.rs checks the two stay in step: every event
//! lambda_http panics on is one this refuses.

use std::convert::Infallible;

use aws_lambda_events::apigw::{ApiGatewayV2httpRequest, ApiGatewayV2httpResponse};
use axum::http::StatusCode;
use base64::Engine;
use lambda_http::request::LambdaRequest;
use lambda_http::{Adapter, LambdaEvent, tower::ServiceExt};
use serde::Serialize;

/// Whether lambda_http can turn `event` into a request (it builds the URI as
/// `{x-forwarded-proto or https}://{host}{stage path}` through `Url`, then appends the raw query).
pub fn convertible(event: &ApiGatewayV2httpRequest) -> bool {
    let header = |name: &str| event.headers.get(name).and_then(|v| v.to_str().ok());
    let path = event.raw_path.as_deref().unwrap_or_default();
    let path = match event.request_context.stage.as_deref() {
        Some(stage)
            if stage != "$default"
                && std::env::var_os("AWS_LAMBDA_HTTP_IGNORE_STAGE_IN_PATH").is_none()
                && !path.starts_with(&format!("/{stage}/")) =>
        {
            format!("/{stage}{path}")
        }
        _ => path.to_string(),
    };
    let host = header("host").or(event.request_context.domain_name.as_deref());
    let base = match host {
        None => url::Url::parse(&format!("http://localhost{path}")).map(|u| u.path().to_string()),
        Some(host) => {
            let scheme = header("x-forwarded-proto").unwrap_or("https");
            url::Url::parse(&format!("{scheme}://{host}{path}")).map(|u| u.to_string())
        }
    };
    let Ok(mut uri) = base else {
        return false;
    };
    if let Some(query) = event.raw_query_string.as_deref().filter(|q| !q.is_empty()) {
        uri.push('?');
        uri.push_str(query);
    }
    let body_decodes = !event.is_base64_encoded
        || event
            .body
            .as_deref()
            .is_none_or(|b| base64::engine::general_purpose::STANDARD.decode(b).is_ok());
    uri.parse::<axum::http::Uri>().is_ok() && body_decodes
}

/// What goes back to API Gateway: lambda_http's response, or the refusal.
#[derive(Serialize)]
#[serde(untagged)]
enum Answer<R> {
    Served(R),
    Refused(Box<ApiGatewayV2httpResponse>),
}

/// The answer to a request the function cannot read: 400, with the security headers every page
/// carries.
fn bad_request() -> ApiGatewayV2httpResponse {
    let (parts, _) = super::html::plain(StatusCode::BAD_REQUEST, "").into_parts();
    let mut response = ApiGatewayV2httpResponse::default();
    response.status_code = 400;
    response.headers = parts.headers;
    response.body = Some(lambda_http::Body::Text("bad request".into()));
    response
}

/// Serves `router` under the Lambda runtime, as `lambda_http::run` does, refusing with 400 the
/// events lambda_http cannot convert.
pub async fn run(router: axum::Router) -> Result<(), lambda_runtime::Error> {
    let adapter = Adapter::from(router);
    lambda_runtime::run(lambda_runtime::service_fn(
        move |event: LambdaEvent<LambdaRequest>| {
            let adapter = adapter.clone();
            async move {
                #[allow(irrefutable_let_patterns)]
                if let LambdaRequest::ApiGatewayV2(request) = &event.payload {
                    if !convertible(request) {
                        tracing::warn!("request refused: its path, host or body is malformed");
                        return Ok::<_, Infallible>(Answer::Refused(Box::new(bad_request())));
                    }
                }
                adapter.oneshot(event).await.map(Answer::Served)
            }
        },
    ))
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(query: &str, body: Option<&str>, base64: bool) -> ApiGatewayV2httpRequest {
        serde_json::from_value(serde_json::json!({
            "version": "2.0", "routeKey": "POST /webhooks/instagram", "rawPath": "/webhooks/instagram",
            "rawQueryString": query, "headers": {"host": "abc.execute-api.us-east-1.amazonaws.com"},
            "requestContext": {"stage": "$default", "domainName": "abc.execute-api.us-east-1.amazonaws.com",
                "http": {"method": "POST", "path": "/webhooks/instagram", "protocol": "HTTP/1.1", "sourceIp": "1.2.3.4", "userAgent": "x"}},
            "body": body, "isBase64Encoded": base64,
        }))
        .unwrap()
    }

    /// lambda_http panics on exactly the events refused here (tests unwind, so it shows).
    #[test]
    fn refuses_what_lambda_http_would_panic_on() {
        let cases = [
            (event("hub.mode=subscribe", Some("{}"), false), true),
            (event("a=%22b%22", Some("e30="), true), true),
            (event("a=\"b\"", None, false), false),
            (event("a=b c", None, false), false),
            (event("", Some("not base64!"), true), false),
        ];
        for (e, ok) in cases {
            assert_eq!(convertible(&e), ok, "{:?}", e.raw_query_string);
            let converted = std::panic::catch_unwind(|| {
                lambda_http::Request::from(LambdaRequest::ApiGatewayV2(e.clone()))
            });
            assert_eq!(converted.is_ok(), ok, "{:?}", e.raw_query_string);
        }
        let refusal = bad_request();
        assert_eq!(refusal.status_code, 400);
        assert_eq!(refusal.headers["x-content-type-options"], "nosniff");
    }
}
