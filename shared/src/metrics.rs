//! CloudWatch metrics as Embedded Metric Format (EMF) lines: one JSON object per line on
//! stdout, which CloudWatch Logs turns into metrics of the namespace `igbridge` with the one
//! dimension `function`. No tenant id is ever a dimension (or a value): the metrics are the
//! operator's view of the whole deployment, and per-tenant state is on the status page.
//!
//! Workers aggregate a batch into one [`Sample`] and write it once, so the log volume is one line
//! per batch, not one per message. `template.yaml`'s dashboard and alarms name these metrics;
//! `tests/tests/end_to_end/template.rs` checks that every name they use is in [`Metric::ALL`].

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};

/// The namespace of every metric.
pub const NAMESPACE: &str = "igbridge";
/// The one dimension: the function's name (in Lambda `AWS_LAMBDA_FUNCTION_NAME`, which the
/// template makes `<stack>-<crate>`, so two stacks in one account do not mix; else the crate's).
pub const DIMENSION: &str = "function";
/// EMF takes at most 100 values per metric per line.
const MAX_VALUES: usize = 100;

/// What is measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Metric {
    /// Jobs whose effect reached the other platform (the direction is the function).
    MessagesBridged,
    /// Webhook received → the other platform accepted it, in milliseconds (p50/p99 on the
    /// dashboard).
    DeliveryLatency,
    /// Jobs put back for a later attempt.
    Retries,
    /// Jobs parked in a dead-letter queue.
    Parked,
    /// Jobs dropped because their organization was uninstalled (data key destroyed).
    DroppedAsPurged,
    /// Connections the health check repaired (re-subscribed, token working again).
    HealthRepairs,
    /// Connections the health check found broken (Page token refused).
    ConnectionsBroken,
    /// Installations whose LiveChat grant was refused.
    ReauthorizationsNeeded,
    /// Parked jobs replayed after a repair.
    Replayed,
}

impl Metric {
    /// Every metric the code emits.
    pub const ALL: [Metric; 9] = [
        Metric::MessagesBridged,
        Metric::DeliveryLatency,
        Metric::Retries,
        Metric::Parked,
        Metric::DroppedAsPurged,
        Metric::HealthRepairs,
        Metric::ConnectionsBroken,
        Metric::ReauthorizationsNeeded,
        Metric::Replayed,
    ];

    /// The metric's name in CloudWatch.
    pub fn name(self) -> &'static str {
        match self {
            Metric::MessagesBridged => "MessagesBridged",
            Metric::DeliveryLatency => "DeliveryLatency",
            Metric::Retries => "Retries",
            Metric::Parked => "Parked",
            Metric::DroppedAsPurged => "DroppedAsPurged",
            Metric::HealthRepairs => "HealthRepairs",
            Metric::ConnectionsBroken => "ConnectionsBroken",
            Metric::ReauthorizationsNeeded => "ReauthorizationsNeeded",
            Metric::Replayed => "Replayed",
        }
    }

    /// Its CloudWatch unit.
    pub fn unit(self) -> &'static str {
        match self {
            Metric::DeliveryLatency => "Milliseconds",
            _ => "Count",
        }
    }

    /// The functions that emit it.
    pub fn emitters(self) -> &'static [crate::function::Function] {
        use crate::function::Function::*;
        match self {
            Metric::MessagesBridged
            | Metric::DeliveryLatency
            | Metric::Retries
            | Metric::Parked
            | Metric::DroppedAsPurged => &[InstagramToLivechat, LivechatToInstagram],
            Metric::HealthRepairs
            | Metric::ConnectionsBroken
            | Metric::ReauthorizationsNeeded
            | Metric::Replayed => &[ConnectionHealth],
        }
    }

    /// Whether each observation is kept (a distribution) rather than summed (a count).
    fn distribution(self) -> bool {
        matches!(self, Metric::DeliveryLatency)
    }
}

/// Observations gathered over one batch or one run.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Sample {
    values: BTreeMap<Metric, Vec<f64>>,
}

impl Sample {
    /// Counts one occurrence.
    pub fn count(&mut self, metric: Metric) {
        self.add(metric, 1.0);
    }

    /// Adds an observation: summed for counts, kept for distributions.
    pub fn add(&mut self, metric: Metric, value: f64) {
        let values = self.values.entry(metric).or_default();
        match (metric.distribution(), values.first_mut()) {
            (false, Some(sum)) => *sum += value,
            _ => values.push(value),
        }
    }

    /// Adds another sample's observations.
    pub fn merge(&mut self, other: Sample) {
        for (metric, values) in other.values {
            for v in values {
                self.add(metric, v);
            }
        }
    }

    /// The summed count (or the number of observations of a distribution).
    pub fn total(&self, metric: Metric) -> f64 {
        match self.values.get(&metric) {
            Some(v) if metric.distribution() => v.len() as f64,
            Some(v) => v.iter().sum(),
            None => 0.0,
        }
    }

    /// Whether nothing was observed.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// The EMF lines of this sample for `function` at `at` (none when empty; more than one when
    /// a distribution holds over 100 values).
    pub fn emf_lines(&self, function: &str, at: DateTime<Utc>) -> Vec<String> {
        let mut lines = Vec::new();
        let mut chunk = 0;
        loop {
            let mut members = Map::new();
            let mut defs = Vec::new();
            for (metric, values) in &self.values {
                let part: Vec<f64> = values
                    .iter()
                    .skip(chunk * MAX_VALUES)
                    .take(MAX_VALUES)
                    .copied()
                    .collect();
                if part.is_empty() {
                    continue;
                }
                defs.push(json!({"Name": metric.name(), "Unit": metric.unit()}));
                let value = match part.as_slice() {
                    [one] => json!(one),
                    many => json!(many),
                };
                members.insert(metric.name().into(), value);
            }
            if defs.is_empty() {
                return lines;
            }
            members.insert(DIMENSION.into(), json!(function));
            members.insert(
                "_aws".into(),
                json!({
                    "Timestamp": at.timestamp_millis(),
                    "CloudWatchMetrics": [{
                        "Namespace": NAMESPACE,
                        "Dimensions": [[DIMENSION]],
                        "Metrics": defs,
                    }],
                }),
            );
            lines.push(Value::Object(members).to_string());
            chunk += 1;
        }
    }
}

/// Where metric lines go.
#[derive(Clone)]
enum Output {
    /// Nowhere (the local server, unless asked; tests that do not look).
    Off,
    /// Standard output, where Lambda hands them to CloudWatch Logs.
    Stdout,
    /// Kept in memory (tests read them back).
    Captured(Arc<Mutex<Vec<String>>>),
}

/// The metric writer of one function.
#[derive(Clone)]
pub struct Metrics {
    function: Arc<str>,
    output: Output,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::off()
    }
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics")
            .field("function", &self.function)
            .finish()
    }
}

impl Metrics {
    /// Writes nothing.
    pub fn off() -> Self {
        Self {
            function: Arc::from(""),
            output: Output::Off,
        }
    }

    /// Writes EMF lines to stdout for the function named `function` (in Lambda).
    pub fn stdout(function: &str) -> Self {
        Self {
            function: Arc::from(function),
            output: Output::Stdout,
        }
    }

    /// Keeps the lines in memory, for tests.
    pub fn captured(function: &str) -> Self {
        Self {
            function: Arc::from(function),
            output: Output::Captured(Arc::default()),
        }
    }

    /// The lines written so far (captured writers only).
    pub fn lines(&self) -> Vec<String> {
        match &self.output {
            Output::Captured(lines) => lines.lock().expect("metrics lock").clone(),
            _ => Vec::new(),
        }
    }

    /// Writes a sample (nothing when empty).
    pub fn write(&self, sample: &Sample, at: DateTime<Utc>) {
        if sample.is_empty() || matches!(self.output, Output::Off) {
            return;
        }
        let lines = sample.emf_lines(&self.function, at);
        match &self.output {
            Output::Off => {}
            Output::Stdout => {
                use std::io::Write;
                // One write per line, so concurrent log lines never interleave inside it.
                let mut out = std::io::stdout().lock();
                for line in lines {
                    let _ = writeln!(out, "{line}");
                }
            }
            Output::Captured(kept) => kept.lock().expect("metrics lock").extend(lines),
        }
    }

    /// Writes one count.
    pub fn count(&self, metric: Metric, n: u64, at: DateTime<Utc>) {
        if n == 0 {
            return;
        }
        let mut sample = Sample::default();
        sample.add(metric, n as f64);
        self.write(&sample, at);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sample_is_one_emf_line_with_the_function_dimension_only() {
        let mut s = Sample::default();
        s.count(Metric::MessagesBridged);
        s.count(Metric::MessagesBridged);
        s.add(Metric::DeliveryLatency, 120.0);
        s.add(Metric::DeliveryLatency, 340.0);
        let at = DateTime::from_timestamp(1_764_547_200, 0).unwrap();
        let lines = s.emf_lines("instagram-to-livechat", at);
        assert_eq!(lines.len(), 1);
        let v: Value = serde_json::from_str(&lines[0]).unwrap();
        assert_eq!(v["function"], "instagram-to-livechat");
        assert_eq!(v["MessagesBridged"], 2.0);
        assert_eq!(v["DeliveryLatency"], json!([120.0, 340.0]));
        let directive = &v["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(directive["Namespace"], "igbridge");
        assert_eq!(directive["Dimensions"], json!([["function"]]));
        assert_eq!(v["_aws"]["Timestamp"], 1_764_547_200_000i64);
        let names: Vec<&str> = directive["Metrics"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["Name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["MessagesBridged", "DeliveryLatency"]);
        assert_eq!(directive["Metrics"][1]["Unit"], "Milliseconds");
    }

    #[test]
    fn over_a_hundred_values_split_into_lines_and_empty_samples_write_nothing() {
        let mut s = Sample::default();
        for i in 0..250 {
            s.add(Metric::DeliveryLatency, f64::from(i));
        }
        s.count(Metric::Retries);
        let lines = s.emf_lines("f", Utc::now());
        assert_eq!(lines.len(), 3);
        let lens: Vec<usize> = lines
            .iter()
            .map(|l| {
                let v: Value = serde_json::from_str(l).unwrap();
                v["DeliveryLatency"].as_array().map_or(1, Vec::len)
            })
            .collect();
        assert_eq!(lens, [100, 100, 50]);
        assert_eq!(s.total(Metric::DeliveryLatency), 250.0);
        assert!(Sample::default().emf_lines("f", Utc::now()).is_empty());
        let m = Metrics::captured("f");
        m.write(&Sample::default(), Utc::now());
        assert!(m.lines().is_empty());
    }
}
