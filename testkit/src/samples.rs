//! The sample events under events/ and the services events/local.env configures (as
//! `cargo lambda watch --env-file` does), for the tests that replay or mutate the samples.

use std::sync::Arc;

use shared::app::Services;
use shared::clock::SystemClock;
use shared::config::{Config, Settings};

pub fn events_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../events")
}

pub fn read(rel: &str) -> String {
    std::fs::read_to_string(events_dir().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// events/local.env, as `cargo lambda watch --env-file` reads it.
pub fn local_settings() -> Settings {
    Settings::from_pairs(read("local.env").lines().filter_map(|line| {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            return None;
        }
        let (k, v) = line.split_once('=')?;
        let v = v.trim();
        let v = v
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .unwrap_or(v);
        Some((k.trim().to_string(), v.to_string()))
    }))
}

pub fn services() -> Services {
    let config = Config::from_settings(&local_settings()).expect("events/local.env is complete");
    Services::memory(config, Arc::new(SystemClock))
}
