//! An HTTP API (API Gateway v2) front built from template.yaml's routes: each request that
//! matches a route key becomes a payload-format 2.0 event for the function behind the route's
//! integration, and the function's answer becomes the HTTP response; a request no route matches
//! is answered `404 {"message":"Not Found"}` without invoking anything, as API Gateway does.
//!
//! The event follows the documented format
//! (<https://docs.aws.amazon.com/apigateway/latest/developerguide/http-api-develop-integrations-lambda.html>):
//! header names lower-cased and repeated headers comma-joined, cookies moved from `cookie` into
//! `cookies`, `rawQueryString` as sent and `queryStringParameters` decoded (repeats
//! comma-joined), `pathParameters` from `{name}` segments, and a body base64-encoded
//! (`isBase64Encoded`) unless its content type is text (as HTTP APIs deliver form posts).

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::{Value, json};

use super::runtime::{Function, InvokeError};
use super::template::RouteDef;

/// The largest request payload an HTTP API accepts (API Gateway quotas: 10 MB).
pub const MAX_PAYLOAD: usize = 10 * 1024 * 1024;

/// A route with the function that serves it.
pub struct Route {
    /// The route as declared.
    pub def: RouteDef,
    /// The function behind its integration.
    pub function: Arc<Function>,
}

struct Front {
    routes: Vec<Route>,
    domain: String,
}

/// A listening front: bind first (the functions need its URL), serve once they exist.
pub struct HttpApi {
    listener: Option<tokio::net::TcpListener>,
    url: String,
    server: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for HttpApi {
    fn drop(&mut self) {
        if let Some(s) = &self.server {
            s.abort();
        }
    }
}

impl HttpApi {
    /// Binds a loopback port.
    pub async fn bind() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a loopback port");
        let url = format!("http://{}", listener.local_addr().expect("an address"));
        Self {
            listener: Some(listener),
            url,
            server: None,
        }
    }

    /// The API's endpoint (`!GetAtt HttpApi.ApiEndpoint`).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Starts answering with `routes`.
    pub fn serve(&mut self, routes: Vec<Route>) {
        let listener = self.listener.take().expect("serve is called once");
        let domain = self.url.trim_start_matches("http://").to_string();
        let front = Arc::new(Front { routes, domain });
        let app = axum::Router::new().fallback(handle).with_state(front);
        self.server = Some(tokio::spawn(async move {
            let _ = axum::serve(
                listener,
                app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
            )
            .await;
        }));
    }
}

/// `{name}` segments of `pattern` bound to `path`'s, or `None` when it does not match.
fn matches(pattern: &str, path: &str) -> Option<BTreeMap<String, String>> {
    let (p, s): (Vec<&str>, Vec<&str>) = (pattern.split('/').collect(), path.split('/').collect());
    if p.len() != s.len() {
        return None;
    }
    let mut params = BTreeMap::new();
    for (p, s) in p.iter().zip(&s) {
        match p.strip_prefix('{').and_then(|p| p.strip_suffix('}')) {
            Some(name) if !s.is_empty() => {
                params.insert(name.to_string(), s.to_string());
            }
            _ if p == s => {}
            _ => return None,
        }
    }
    Some(params)
}

async fn handle(
    State(front): State<Arc<Front>>,
    ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>,
    request: Request,
) -> Response {
    let (parts, body) = request.into_parts();
    let path = parts.uri.path().to_string();
    let method = parts.method.as_str().to_string();
    let Some((route, params)) = front
        .routes
        .iter()
        .filter(|r| r.def.method == method)
        .find_map(|r| matches(&r.def.path, &path).map(|p| (r, p)))
    else {
        return gateway_error(StatusCode::NOT_FOUND, "Not Found");
    };
    // HTTP APIs take payloads up to 10 MB and refuse larger ones before any integration runs.
    let Ok(body) = axum::body::to_bytes(body, MAX_PAYLOAD).await else {
        return gateway_error(StatusCode::PAYLOAD_TOO_LARGE, "Request Entity Too Large");
    };
    let event = event(&front.domain, route, &parts, &params, &body, peer);
    match route.function.invoke(&event).await {
        Ok(answer) => response(&answer),
        Err(InvokeError::Timeout(_)) => {
            gateway_error(StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable")
        }
        Err(_) => gateway_error(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error"),
    }
}

fn gateway_error(status: StatusCode, message: &str) -> Response {
    (status, axum::Json(json!({ "message": message }))).into_response()
}

fn is_text(content_type: &str) -> bool {
    let t = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    t.starts_with("text/")
        || [
            "application/json",
            "application/xml",
            "application/javascript",
        ]
        .contains(&t.as_str())
        || t.ends_with("+json")
        || t.ends_with("+xml")
}

fn headers_of(headers: &HeaderMap) -> (serde_json::Map<String, Value>, Vec<Value>) {
    let mut joined: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut cookies = Vec::new();
    for (name, value) in headers {
        let value = String::from_utf8_lossy(value.as_bytes()).to_string();
        if name.as_str() == "cookie" {
            cookies.extend(value.split(';').map(|c| Value::from(c.trim())));
            continue;
        }
        joined
            .entry(name.as_str().to_string())
            .or_default()
            .push(value);
    }
    let map = joined
        .into_iter()
        .map(|(k, v)| (k, Value::from(v.join(","))))
        .collect();
    (map, cookies)
}

fn query_of(raw: &str) -> Option<Value> {
    if raw.is_empty() {
        return None;
    }
    let mut joined: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (k, v) in url::form_urlencoded::parse(raw.as_bytes()) {
        joined
            .entry(k.into_owned())
            .or_default()
            .push(v.into_owned());
    }
    Some(
        joined
            .into_iter()
            .map(|(k, v)| (k, Value::from(v.join(","))))
            .collect::<serde_json::Map<_, _>>()
            .into(),
    )
}

fn event(
    domain: &str,
    route: &Route,
    parts: &axum::http::request::Parts,
    params: &BTreeMap<String, String>,
    body: &Bytes,
    peer: std::net::SocketAddr,
) -> Value {
    let (headers, cookies) = headers_of(&parts.headers);
    let raw_query = parts.uri.query().unwrap_or("").to_string();
    let text = parts
        .headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(is_text);
    let now = chrono::Utc::now();
    let user_agent = headers
        .get("user-agent")
        .cloned()
        .unwrap_or(Value::from(""));
    let mut event = json!({
        "version": "2.0",
        "routeKey": route.def.key,
        "rawPath": parts.uri.path(),
        "rawQueryString": raw_query,
        "headers": headers,
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "sysapi",
            "domainName": domain,
            "domainPrefix": domain.split('.').next().unwrap_or(domain),
            "http": {
                "method": parts.method.as_str(),
                "path": parts.uri.path(),
                "protocol": "HTTP/1.1",
                "sourceIp": peer.ip().to_string(),
                "userAgent": user_agent,
            },
            "requestId": uuid::Uuid::new_v4().simple().to_string(),
            "routeKey": route.def.key,
            "stage": "$default",
            "time": now.format("%d/%b/%Y:%H:%M:%S %z").to_string(),
            "timeEpoch": now.timestamp_millis(),
        },
        "isBase64Encoded": false,
    });
    if !cookies.is_empty() {
        event["cookies"] = cookies.into();
    }
    if let Some(q) = query_of(&raw_query) {
        event["queryStringParameters"] = q;
    }
    if !params.is_empty() {
        event["pathParameters"] = json!(params);
    }
    if !body.is_empty() {
        if text {
            event["body"] = String::from_utf8_lossy(body).into_owned().into();
        } else {
            event["body"] = BASE64.encode(body).into();
            event["isBase64Encoded"] = true.into();
        }
    }
    event
}

/// The function's payload-2.0 answer as an HTTP response (a malformed one is API Gateway's 500).
fn response(answer: &[u8]) -> Response {
    let Ok(v) = serde_json::from_slice::<Value>(answer) else {
        return gateway_error(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error");
    };
    let Some(status) = v["statusCode"].as_u64() else {
        // A bare JSON value is returned as a 200 JSON body.
        return (StatusCode::OK, axum::Json(v)).into_response();
    };
    let mut builder = Response::builder().status(status as u16);
    let headers = builder.headers_mut().expect("a builder");
    for (k, value) in v["headers"].as_object().into_iter().flatten() {
        if let (Ok(name), Some(Ok(value))) = (
            HeaderName::try_from(k.as_str()),
            value.as_str().map(HeaderValue::from_str),
        ) {
            headers.append(name, value);
        }
    }
    for cookie in v["cookies"].as_array().into_iter().flatten() {
        if let Some(Ok(value)) = cookie.as_str().map(HeaderValue::from_str) {
            headers.append("set-cookie", value);
        }
    }
    let body = v["body"].as_str().unwrap_or("");
    let body = if v["isBase64Encoded"].as_bool() == Some(true) {
        BASE64.decode(body).unwrap_or_default()
    } else {
        body.as_bytes().to_vec()
    };
    builder.body(Body::from(body)).expect("a response")
}
