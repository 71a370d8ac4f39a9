//! Recorded platform answers. Each file under `fixtures/` is
//! `{"source": "...", "status": 400, "body": {...}}`: the documentation page or real error text it
//! reproduces, the HTTP status the platform answers with, and the body. `{name}` placeholders in
//! body strings are filled in by [`Fixture::with`].

use std::collections::VecDeque;
use std::path::PathBuf;

use serde_json::Value;
use wiremock::ResponseTemplate;

/// One recorded answer.
#[derive(Debug, Clone)]
pub struct Fixture {
    /// Where the text comes from (a documentation URL or a public report of the real answer).
    pub source: String,
    /// HTTP status.
    pub status: u16,
    /// JSON body.
    pub body: Value,
    /// Response headers the platform sends with it (e.g. Meta's usage headers).
    pub headers: Vec<(String, String)>,
}

/// The directory holding the fixtures.
pub fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures")
}

/// Loads `fixtures/<name>.json`, e.g. `fixture("meta/error_190_session_invalidated")`.
pub fn fixture(name: &str) -> Fixture {
    let path = dir().join(format!("{name}.json"));
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("fixture {}: {e}", path.display()));
    let v: Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("fixture {} is not JSON: {e}", path.display()));
    let source = v["source"].as_str().unwrap_or_default().to_string();
    assert!(!source.is_empty(), "fixture {name} must cite its source");
    let headers = v["headers"]
        .as_object()
        .map(|h| {
            h.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                .collect()
        })
        .unwrap_or_default();
    Fixture {
        source,
        status: v["status"].as_u64().expect("fixture status") as u16,
        body: v["body"].clone(),
        headers,
    }
}

fn fill(v: &mut Value, vars: &[(&str, &str)]) {
    match v {
        Value::String(s) => {
            for (k, val) in vars {
                *s = s.replace(&format!("{{{k}}}"), val);
            }
        }
        Value::Array(a) => a.iter_mut().for_each(|x| fill(x, vars)),
        Value::Object(o) => o.values_mut().for_each(|x| fill(x, vars)),
        _ => {}
    }
}

impl Fixture {
    /// The fixture with `{name}` placeholders filled.
    pub fn with(mut self, vars: &[(&str, &str)]) -> Self {
        fill(&mut self.body, vars);
        self
    }

    /// As a wiremock response.
    pub fn response(&self) -> ResponseTemplate {
        self.headers.iter().fold(
            ResponseTemplate::new(self.status).set_body_json(self.body.clone()),
            |r, (k, v)| r.insert_header(k.as_str(), v.as_str()),
        )
    }

    /// The platform's message (`error.message`, or the OAuth `error_description`).
    pub fn message(&self) -> String {
        self.body
            .pointer("/error/message")
            .or_else(|| self.body.get("error_description"))
            .or_else(|| self.body.get("exception_description"))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    }
}

/// Faults a test injected: the next `times` requests matching a method (`*` for any) and a path
/// suffix get the fault (a fixture instead of the fake's normal answer, or a delay).
pub struct Faults<T = Fixture>(VecDeque<(String, String, T, usize)>);

impl<T> Default for Faults<T> {
    fn default() -> Self {
        Self(VecDeque::new())
    }
}

impl<T: Clone> Faults<T> {
    /// Queues a fault.
    pub fn push(&mut self, method: &str, suffix: &str, fault: T, times: usize) {
        self.0
            .push_back((method.to_uppercase(), suffix.to_string(), fault, times));
    }

    /// The fault for this request, if one is queued (each use counts down).
    pub fn take(&mut self, method: &str, path: &str) -> Option<T> {
        let i = self.0.iter().position(|(m, suffix, _, _)| {
            (m == "*" || m == method) && path.ends_with(suffix.as_str())
        })?;
        let fault = self.0[i].2.clone();
        self.0[i].3 -= 1;
        if self.0[i].3 == 0 {
            self.0.remove(i);
        }
        Some(fault)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_fixture_parses_and_cites_a_source() {
        let mut n = 0;
        for sub in ["meta", "livechat"] {
            for entry in std::fs::read_dir(super::dir().join(sub)).unwrap() {
                let path = entry.unwrap().path();
                let name = path.file_stem().unwrap().to_str().unwrap();
                let f = super::fixture(&format!("{sub}/{name}"));
                assert!(f.status >= 200 && f.status < 600, "{name}");
                assert!(f.source.len() > 10, "{name} cites no real source");
                n += 1;
            }
        }
        assert!(n >= 20, "only {n} fixtures");
    }
}
