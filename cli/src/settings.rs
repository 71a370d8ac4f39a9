//! Settings for the tool: the environment, an optional `.env` file, and — for the embedded local
//! run only — fixed development values for whatever is unset, so `igbridge serve` works on a fresh
//! machine and `igbridge send` signs with the same secrets.

use shared::config::Settings;

/// Development values used when a setting is unset (never in `--aws` mode).
pub const LOCAL_DEFAULTS: &[(&str, &str)] = &[
    ("META_APP_ID", "local-meta-app"),
    ("META_APP_SECRET", "local-meta-app-secret"),
    ("META_VERIFY_TOKEN", "local-verify-token"),
    ("LIVECHAT_CLIENT_ID", "local-livechat-client"),
    ("LIVECHAT_CLIENT_SECRET", "local-livechat-client-secret"),
    ("LIVECHAT_WEBHOOK_SECRET", "local-livechat-webhook-secret"),
    ("LIVECHAT_APP_WEBHOOK_TOKEN", "local-livechat-app-token"),
];

/// The environment, after loading `.env` from the working directory if there is one.
pub fn load() -> Settings {
    // A missing .env is normal; a malformed one is reported.
    if let Err(e) = dotenvy::dotenv() {
        if !e.not_found() {
            eprintln!("igbridge: ignoring .env: {e}");
        }
    }
    Settings::from_env()
}

/// Development secrets would be used where others can reach the app.
#[derive(Debug, thiserror::Error)]
#[error(
    "PUBLIC_BASE_URL {url} is not this machine, so igbridge will not use its public development secrets; set {}",
    .missing.join(", ")
)]
pub struct NotLocal {
    url: String,
    missing: Vec<String>,
}

/// Whether a base URL points at this machine (loopback address or `localhost`).
fn is_loopback(url: &str) -> bool {
    let Some(host) = reqwest::Url::parse(url)
        .ok()
        .and_then(|u| u.host_str().map(str::to_string))
    else {
        return false;
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Fills unset settings with local development values; returns the names it filled. The
/// development secrets are public (they are in this file), so they are only used when the app
/// is reached at a loopback address.
pub fn fill_local_defaults(settings: &mut Settings, addr: &str) -> Result<Vec<String>, NotLocal> {
    let mut filled = Vec::new();
    if settings.get("PUBLIC_BASE_URL").is_none() {
        settings.set("PUBLIC_BASE_URL", format!("http://{addr}"));
        filled.push("PUBLIC_BASE_URL".to_string());
    }
    let url = settings
        .get("PUBLIC_BASE_URL")
        .unwrap_or_default()
        .to_string();
    let missing: Vec<String> = LOCAL_DEFAULTS
        .iter()
        .map(|(name, _)| name.to_string())
        .filter(|name| settings.get(name).is_none())
        .collect();
    if !missing.is_empty() && !is_loopback(&url) {
        return Err(NotLocal { url, missing });
    }
    for (name, value) in LOCAL_DEFAULTS {
        if settings.get(name).is_none() {
            settings.set(name, *value);
            filled.push(name.to_string());
        }
    }
    if settings.get("TOKEN_ENCRYPTION_KEY").is_none() {
        // The embedded store lives in memory, so a fresh key per run is right.
        use secrecy::ExposeSecret;
        settings.set(
            "TOKEN_ENCRYPTION_KEY",
            shared::cipher::TokenCipher::generate_setting()
                .expose_secret()
                .to_string(),
        );
        filled.push("TOKEN_ENCRYPTION_KEY".to_string());
    }
    Ok(filled)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn development_secrets_only_for_this_machine() {
        for local in [
            "http://127.0.0.1:3000",
            "http://localhost:8080",
            "http://[::1]:3000",
        ] {
            let mut s = Settings::from_pairs([("PUBLIC_BASE_URL", local)]);
            assert!(
                fill_local_defaults(&mut s, "127.0.0.1:3000").is_ok(),
                "{local}"
            );
        }
        let mut s = Settings::from_pairs([("PUBLIC_BASE_URL", "https://bridge.example.com")]);
        let e = fill_local_defaults(&mut s, "127.0.0.1:3000")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("META_APP_SECRET") && e.contains("LIVECHAT_WEBHOOK_SECRET"),
            "{e}"
        );
        assert!(s.get("META_APP_SECRET").is_none(), "nothing filled");
        // Listening on every interface without a public URL is not this machine either.
        let mut s = Settings::from_pairs([("PUBLIC_BASE_URL", "http://0.0.0.0:3000")]);
        assert!(fill_local_defaults(&mut s, "0.0.0.0:3000").is_err());
        // With real secrets set, a public URL is fine.
        let mut pairs: Vec<(&str, &str)> =
            LOCAL_DEFAULTS.iter().map(|(k, _)| (*k, "real")).collect();
        pairs.push(("PUBLIC_BASE_URL", "https://bridge.example.com"));
        let mut s = Settings::from_pairs(pairs);
        assert!(fill_local_defaults(&mut s, "0.0.0.0:3000").is_ok());
    }
}
