//! How much of its rate limits an app or Instagram account has used, as Meta reports it on every
//! Graph answer, and how long Meta asks a throttled caller to wait.
//!
//! Meta's rate-limiting guide (developers.facebook.com/docs/graph-api/overview/rate-limiting,
//! "Headers"): `X-App-Usage` is `{"call_count": 28, "total_time": 25, "total_cputime": 25}` (percent
//! of the app's limit), `X-Business-Use-Case-Usage` maps a business object id to a list of
//! `{"type", "call_count", "total_cputime", "total_time", "estimated_time_to_regain_access"}`,
//! percentages again and the wait in **minutes**. `Retry-After` (seconds) is honoured too, in case
//! a proxy or Meta sends it.

use std::time::Duration;

use reqwest::header::HeaderMap;
use serde_json::Value;

/// Usage at or above this percent holds further sends to the account until Meta's estimate (or a
/// minute): Meta blocks at 100 % and the block lasts far longer than a short pause.
pub const HOLD_AT_PERCENT: u64 = 90;

/// What one Graph answer said about the caller's limits.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// The highest usage reported, in percent of a limit (0 when no header came).
    pub percent: u64,
    /// How long Meta asks to wait before calling again, if it said.
    pub wait: Option<Duration>,
}

impl Usage {
    /// Reads the usage headers of an answer; absent or malformed headers read as no usage.
    pub fn from_headers(headers: &HeaderMap) -> Self {
        let header = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| serde_json::from_str::<Value>(v).ok())
        };
        let mut usage = Usage::default();
        if let Some(app) = header("x-app-usage") {
            usage.note(&app);
        }
        if let Some(Value::Object(objects)) = header("x-business-use-case-usage") {
            for entries in objects.values() {
                for entry in entries.as_array().into_iter().flatten() {
                    usage.note(entry);
                    let minutes = entry
                        .get("estimated_time_to_regain_access")
                        .and_then(Value::as_u64)
                        .unwrap_or(0);
                    if minutes > 0 {
                        usage.wait_at_least(Duration::from_secs(minutes * 60));
                    }
                }
            }
        }
        let retry_after = headers
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        if let Some(secs) = retry_after {
            usage.wait_at_least(Duration::from_secs(secs));
        }
        usage
    }

    fn note(&mut self, counters: &Value) {
        for k in ["call_count", "total_time", "total_cputime"] {
            let pct = counters.get(k).and_then(Value::as_u64).unwrap_or(0);
            self.percent = self.percent.max(pct);
        }
    }

    fn wait_at_least(&mut self, d: Duration) {
        self.wait = Some(self.wait.map_or(d, |w| w.max(d)));
    }

    /// Whether further calls should wait (Meta asked, or the usage is near the limit).
    pub fn should_hold(&self) -> bool {
        self.wait.is_some() || self.percent >= HOLD_AT_PERCENT
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn reads_the_documented_headers() {
        let u = Usage::from_headers(&headers(&[
            (
                "x-app-usage",
                r#"{"call_count": 28, "total_time": 25, "total_cputime": 25}"#,
            ),
            (
                "x-business-use-case-usage",
                r#"{"17841400000000001": [{"type": "instagram", "call_count": 100, "total_cputime": 20, "total_time": 20, "estimated_time_to_regain_access": 30}]}"#,
            ),
        ]));
        assert_eq!(u.percent, 100);
        assert_eq!(u.wait, Some(Duration::from_secs(30 * 60)));
        assert!(u.should_hold());
    }

    #[test]
    fn retry_after_and_missing_or_broken_headers() {
        let u = Usage::from_headers(&headers(&[("retry-after", "120")]));
        assert_eq!(u.wait, Some(Duration::from_secs(120)));
        let none = Usage::from_headers(&headers(&[("x-app-usage", "not json")]));
        assert_eq!(none, Usage::default());
        assert!(!none.should_hold());
        let busy = Usage::from_headers(&headers(&[("x-app-usage", r#"{"call_count": 91}"#)]));
        assert!(busy.should_hold() && busy.wait.is_none());
    }
}
