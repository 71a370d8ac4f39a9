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

/// Fills unset settings with local development values; returns the names it filled.
pub fn fill_local_defaults(settings: &mut Settings, addr: &str) -> Vec<String> {
    let mut filled = Vec::new();
    if settings.get("PUBLIC_BASE_URL").is_none() {
        settings.set("PUBLIC_BASE_URL", format!("http://{addr}"));
        filled.push("PUBLIC_BASE_URL".to_string());
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
    filled
}
