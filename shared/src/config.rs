//! Configuration, loaded once per cold start from the environment and, in Lambda, from the
//! Secrets Manager secrets named by `APP_SECRET_IDS` (comma-separated; each a JSON object whose
//! keys are the same names). Each function is given only the settings and secrets it uses
//! ([`crate::function::Function::needs`]; template.yaml follows it and tests/tests/end_to_end/template.rs
//! checks).
//!
//! A value in the secret wins over the same name in the environment: the secret is the source of
//! truth in Lambda, and the environment only supplies what the secret lacks.

use std::collections::HashMap;
use std::fmt;

use reqwest::Url;
use secrecy::{ExposeSecret, SecretString};

use crate::cipher::{CipherError, TokenCipher};

/// Graph API version used unless `GRAPH_API_VERSION` says otherwise.
pub const DEFAULT_GRAPH_API_VERSION: &str = "v25.0";

/// Why configuration could not be loaded; always names the setting, never its value.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A required setting is absent or empty.
    #[error("missing setting {0}")]
    Missing(String),
    /// A setting is present but unusable.
    #[error("invalid setting {name}: {reason}")]
    Invalid {
        /// The setting's name.
        name: String,
        /// What is wrong with it (never the value itself).
        reason: String,
    },
    /// The Secrets Manager secret could not be read or parsed.
    #[error("secret {id}: {reason}")]
    Secret {
        /// The secret id from `APP_SECRET_ID`.
        id: String,
        /// What went wrong.
        reason: String,
    },
}

/// Where settings come from: the environment overlaid by the secret's JSON object.
#[derive(Default, Clone)]
pub struct Settings {
    values: HashMap<String, String>,
}

impl fmt::Debug for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut names: Vec<_> = self.values.keys().collect();
        names.sort();
        f.debug_struct("Settings").field("names", &names).finish()
    }
}

impl Settings {
    /// Settings from the process environment.
    pub fn from_env() -> Self {
        Self::from_pairs(std::env::vars())
    }

    /// Settings from explicit pairs (tests, `.env` files).
    pub fn from_pairs<I, K, V>(pairs: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        Self {
            values: pairs
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        }
    }

    /// Overlays a secret's JSON object; its values win.
    pub fn overlay_secret_json(&mut self, id: &str, json: &str) -> Result<(), ConfigError> {
        let bad = |reason: String| ConfigError::Secret {
            id: id.to_string(),
            reason,
        };
        let value: serde_json::Value = serde_json::from_str(json).map_err(|e| {
            bad(format!(
                "not JSON (line {}, column {})",
                e.line(),
                e.column()
            ))
        })?;
        let object = value
            .as_object()
            .ok_or_else(|| bad("not a JSON object".into()))?;
        for (name, v) in object {
            let v = match v {
                serde_json::Value::String(s) => s.clone(),
                serde_json::Value::Number(n) => n.to_string(),
                _ => return Err(bad(format!("{name} must be a string"))),
            };
            self.values.insert(name.clone(), v);
        }
        Ok(())
    }

    /// Fetches the secrets named by `APP_SECRET_IDS` (comma-separated) and `APP_SECRET_ID` (if
    /// set), all at once (a cold start waits for one round trip, not one per secret), and
    /// overlays them in the order named.
    pub async fn overlay_app_secret(
        &mut self,
        client: &aws_sdk_secretsmanager::Client,
    ) -> Result<(), ConfigError> {
        let ids: Vec<String> = ["APP_SECRET_IDS", "APP_SECRET_ID"]
            .iter()
            .filter_map(|name| self.get(name))
            .flat_map(|v| v.split(','))
            .map(|id| id.trim().to_string())
            .filter(|id| !id.is_empty())
            .collect();
        let values =
            futures_util::future::try_join_all(ids.iter().map(|id| read_secret(client, id)))
                .await?;
        for (id, json) in ids.iter().zip(values) {
            self.overlay_secret_json(id, &json)?;
        }
        Ok(())
    }

    /// A setting, if present and not blank.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.values
            .get(name)
            .map(|v| v.trim())
            .filter(|v| !v.is_empty())
    }

    /// Sets one value (used by local runs to fill embedded defaults).
    pub fn set(&mut self, name: &str, value: impl Into<String>) {
        self.values.insert(name.to_string(), value.into());
    }

    fn required(&self, name: &str) -> Result<String, ConfigError> {
        self.get(name)
            .map(str::to_string)
            .ok_or_else(|| ConfigError::Missing(name.to_string()))
    }

    fn secret(&self, name: &str) -> Result<SecretString, ConfigError> {
        self.required(name).map(SecretString::from)
    }

    /// `NAME`, and `NAME_PREVIOUS` while a rotation is under way.
    fn rotating(&self, name: &str) -> Result<RotatingSecret, ConfigError> {
        Ok(RotatingSecret::new(
            self.secret(name)?,
            self.get(&format!("{name}_PREVIOUS"))
                .map(SecretString::from),
        ))
    }

    fn url(&self, name: &str, default: Option<&str>) -> Result<String, ConfigError> {
        let raw = match (self.get(name), default) {
            (Some(v), _) => v.to_string(),
            (None, Some(d)) => d.to_string(),
            (None, None) => return Err(ConfigError::Missing(name.to_string())),
        };
        let parsed = Url::parse(&raw).map_err(|e| ConfigError::Invalid {
            name: name.to_string(),
            reason: format!("not a URL ({e})"),
        })?;
        if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
            return Err(ConfigError::Invalid {
                name: name.to_string(),
                reason: "must be an http(s) URL with a host".into(),
            });
        }
        Ok(raw.trim_end_matches('/').to_string())
    }
}

/// One secret's JSON.
async fn read_secret(
    client: &aws_sdk_secretsmanager::Client,
    id: &str,
) -> Result<String, ConfigError> {
    let fail = |reason: String| ConfigError::Secret {
        id: id.to_string(),
        reason,
    };
    let out = client
        .get_secret_value()
        .secret_id(id)
        .send()
        .await
        .map_err(|e| fail(crate::aws::error_summary(&e)))?;
    out.secret_string()
        .map(str::to_string)
        .ok_or_else(|| fail("has no SecretString".into()))
}

/// A secret being rotated: the app uses the current value for what it sends, and accepts the
/// current or the previous value (`NAME_PREVIOUS`) for what it receives, so a rotation window in
/// which LiveChat still sends or holds the old value loses nothing.
#[derive(Clone)]
pub struct RotatingSecret {
    current: SecretString,
    previous: Option<SecretString>,
}

impl fmt::Debug for RotatingSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RotatingSecret")
            .field("previous", &self.previous.is_some())
            .finish_non_exhaustive()
    }
}

impl From<SecretString> for RotatingSecret {
    fn from(current: SecretString) -> Self {
        Self::new(current, None)
    }
}

impl RotatingSecret {
    /// The current value and, during a rotation, the previous one.
    pub fn new(current: SecretString, previous: Option<SecretString>) -> Self {
        Self { current, previous }
    }

    /// The value to send.
    pub fn current(&self) -> &SecretString {
        &self.current
    }

    /// The values to try, current first.
    pub fn values(&self) -> impl Iterator<Item = &SecretString> {
        std::iter::once(&self.current).chain(self.previous.as_ref())
    }

    /// Whether `candidate` is the current or the previous value. Both comparisons always run,
    /// each in constant time, so timing tells nothing about which one (if any) matched.
    pub fn matches(&self, candidate: &str) -> bool {
        let current = crate::secret_eq(self.current.expose_secret(), candidate);
        let previous = self
            .previous
            .as_ref()
            .is_some_and(|p| crate::secret_eq(p.expose_secret(), candidate));
        current | previous
    }
}

/// The app's typed configuration. Secrets are `SecretString`s: Debug prints `[REDACTED]`.
#[derive(Debug, Clone)]
pub struct Config {
    /// External base URL; redirect URIs and status links are built from it.
    pub public_base_url: String,
    /// Meta app id.
    pub meta_app_id: String,
    /// Meta app secret: signs webhooks and `signed_request`.
    pub meta_app_secret: SecretString,
    /// The verify token for the webhook handshake.
    pub meta_verify_token: SecretString,
    /// LiveChat OAuth client id.
    pub livechat_client_id: String,
    /// LiveChat OAuth client secret (and the previous one during a rotation).
    pub livechat_client_secret: RotatingSecret,
    /// The `secret_key` LiveChat puts in chat webhook bodies (current or previous).
    pub livechat_webhook_secret: RotatingSecret,
    /// Shared secret in the App Webhooks URL (`?token=`; current or previous).
    pub livechat_app_webhook_token: RotatingSecret,
    /// The token cipher built from `TOKEN_ENCRYPTION_KEY`.
    pub cipher: TokenCipher,
    /// Graph API base URL (tests point it at a fake).
    pub graph_api_base_url: String,
    /// Graph API version path segment, e.g. `v25.0`.
    pub graph_api_version: String,
    /// Facebook Login dialog base URL.
    pub facebook_dialog_base_url: String,
    /// LiveChat API base URL.
    pub livechat_api_base_url: String,
    /// LiveChat accounts (OAuth) base URL.
    pub livechat_accounts_base_url: String,
}

impl Config {
    /// Builds the configuration, naming the first missing or malformed setting.
    pub fn from_settings(s: &Settings) -> Result<Self, ConfigError> {
        let key = s.secret("TOKEN_ENCRYPTION_KEY")?;
        let cipher = TokenCipher::from_setting(&key).map_err(|e| ConfigError::Invalid {
            name: "TOKEN_ENCRYPTION_KEY".into(),
            reason: match e {
                CipherError::BadKey(r) => r,
                other => other.to_string(),
            },
        })?;
        let graph_api_version = s
            .get("GRAPH_API_VERSION")
            .unwrap_or(DEFAULT_GRAPH_API_VERSION)
            .to_string();
        if !graph_api_version.starts_with('v') || graph_api_version[1..].parse::<f32>().is_err() {
            return Err(ConfigError::Invalid {
                name: "GRAPH_API_VERSION".into(),
                reason: "expected a version such as v25.0".into(),
            });
        }
        Ok(Self {
            public_base_url: s.url("PUBLIC_BASE_URL", None)?,
            meta_app_id: s.required("META_APP_ID")?,
            meta_app_secret: s.secret("META_APP_SECRET")?,
            meta_verify_token: s.secret("META_VERIFY_TOKEN")?,
            livechat_client_id: s.required("LIVECHAT_CLIENT_ID")?,
            livechat_client_secret: s.rotating("LIVECHAT_CLIENT_SECRET")?,
            livechat_webhook_secret: s.rotating("LIVECHAT_WEBHOOK_SECRET")?,
            livechat_app_webhook_token: s.rotating("LIVECHAT_APP_WEBHOOK_TOKEN")?,
            cipher,
            graph_api_base_url: s.url("GRAPH_API_BASE_URL", Some("https://graph.facebook.com"))?,
            graph_api_version,
            facebook_dialog_base_url: s
                .url("FACEBOOK_DIALOG_BASE_URL", Some("https://www.facebook.com"))?,
            livechat_api_base_url: s
                .url("LIVECHAT_API_BASE_URL", Some("https://api.livechatinc.com"))?,
            livechat_accounts_base_url: s.url(
                "LIVECHAT_ACCOUNTS_BASE_URL",
                Some("https://accounts.livechat.com"),
            )?,
        })
    }

    /// Loads a function's configuration: `settings` (the environment) plus its Secrets Manager
    /// secrets, read once; see [`Config::for_function`].
    pub async fn load_for(
        sdk: &aws_config::SdkConfig,
        settings: &mut Settings,
        function: Function,
    ) -> Result<Self, ConfigError> {
        let client = aws_sdk_secretsmanager::Client::new(sdk);
        settings.overlay_app_secret(&client).await?;
        Self::for_function(settings, function)
    }

    /// The configuration of `function` from complete settings: only what it uses is required,
    /// so a missing setting is named only by a function that needs it.
    pub fn for_function(settings: &Settings, function: Function) -> Result<Self, ConfigError> {
        let mut settings = settings.clone();
        withhold_unused(&mut settings, function);
        Self::from_settings(&settings)
    }

    /// True when `candidate` equals the configured verify token (constant time).
    pub fn verify_token_matches(&self, candidate: &str) -> bool {
        crate::secret_eq(self.meta_verify_token.expose_secret(), candidate)
    }
}

pub use crate::function::SECRET_SETTINGS;
use crate::function::{Function, REQUIRED_PLAIN_SETTINGS, Resource};

/// What a function is given for a required plain setting it does not use: a value no platform
/// accepts (`.invalid` never resolves, RFC 2606), so using it by mistake fails loudly.
const NOT_GIVEN_URL: &str = "https://not-given.invalid";
const NOT_GIVEN: &str = "not-given";

/// Makes `settings` hold only what `function` uses: every secret it does not hold (and its
/// `_PREVIOUS`) is replaced with a random value of this process, which no platform accepts and
/// no peer knows; every required plain setting it does not use gets an inert value. A function
/// thus starts without the settings it does not use, and cannot use what it was never given.
pub fn withhold_unused(settings: &mut Settings, function: Function) {
    let needs = function.needs();
    for name in SECRET_SETTINGS
        .iter()
        .filter(|n| !needs.secrets.contains(n))
    {
        let value = if *name == "TOKEN_ENCRYPTION_KEY" {
            TokenCipher::generate_setting().expose_secret().to_string()
        } else {
            let bytes: [u8; 32] = rand::random();
            hex::encode(bytes)
        };
        settings.set(name, value);
        settings.set(&format!("{name}_PREVIOUS"), "");
    }
    for name in REQUIRED_PLAIN_SETTINGS
        .iter()
        .filter(|n| !needs.settings.contains(n))
    {
        let inert = if name.ends_with("_URL") {
            NOT_GIVEN_URL
        } else {
            NOT_GIVEN
        };
        settings.set(name, inert);
    }
}

/// The AWS resources a function uses; only needed when running against AWS or an emulator. A
/// queue or bus a function does not use is `None`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwsResources {
    /// The DynamoDB table.
    pub table_name: String,
    /// SQS FIFO queue from the Instagram webhook to the LiveChat worker.
    pub to_livechat_queue_url: Option<String>,
    /// Dead-letter queue of the to-livechat queue.
    pub to_livechat_dlq_url: Option<String>,
    /// SQS FIFO queue from the LiveChat webhook to the Instagram worker.
    pub to_instagram_queue_url: Option<String>,
    /// Dead-letter queue of the to-instagram queue.
    pub to_instagram_dlq_url: Option<String>,
    /// The EventBridge bus for lifecycle events (`EVENT_BUS_NAME`, default `default`).
    pub event_bus_name: Option<String>,
}

impl AwsResources {
    /// Every resource (the local server and the tools): `TABLE_NAME` and the four queue URLs
    /// (`TO_LIVECHAT_QUEUE_URL`, `TO_LIVECHAT_DLQ_URL`, `TO_INSTAGRAM_QUEUE_URL`,
    /// `TO_INSTAGRAM_DLQ_URL`) are required.
    pub fn from_settings(s: &Settings) -> Result<Self, ConfigError> {
        Self::read(s, |_| true)
    }

    /// The resources `function` uses; only their settings are required.
    pub fn for_function(s: &Settings, function: Function) -> Result<Self, ConfigError> {
        Self::read(s, |r| function.uses(r))
    }

    fn read(s: &Settings, used: impl Fn(Resource) -> bool) -> Result<Self, ConfigError> {
        let queue = |r: Resource| -> Result<Option<String>, ConfigError> {
            used(r).then(|| s.url(r.setting(), None)).transpose()
        };
        Ok(Self {
            table_name: s.required(Resource::Table.setting())?,
            to_livechat_queue_url: queue(Resource::ToLivechatQueue)?,
            to_livechat_dlq_url: queue(Resource::ToLivechatDlq)?,
            to_instagram_queue_url: queue(Resource::ToInstagramQueue)?,
            to_instagram_dlq_url: queue(Resource::ToInstagramDlq)?,
            event_bus_name: used(Resource::EventBus).then(|| {
                s.get(Resource::EventBus.setting())
                    .unwrap_or("default")
                    .to_string()
            }),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn complete() -> Vec<(&'static str, String)> {
        vec![
            ("PUBLIC_BASE_URL", "https://bridge.example.com/".into()),
            ("META_APP_ID", "1234".into()),
            ("META_APP_SECRET", "meta-app-secret-value".into()),
            ("META_VERIFY_TOKEN", "verify-token-value".into()),
            ("LIVECHAT_CLIENT_ID", "client-id".into()),
            ("LIVECHAT_CLIENT_SECRET", "lc-client-secret-value".into()),
            ("LIVECHAT_WEBHOOK_SECRET", "lc-webhook-secret-value".into()),
            ("LIVECHAT_APP_WEBHOOK_TOKEN", "lc-app-token-value".into()),
            (
                "TOKEN_ENCRYPTION_KEY",
                TokenCipher::generate_setting().expose_secret().to_string(),
            ),
        ]
    }

    #[test]
    fn loads_with_defaults_and_trims_trailing_slash() {
        let c = Config::from_settings(&Settings::from_pairs(complete())).unwrap();
        assert_eq!(c.public_base_url, "https://bridge.example.com");
        assert_eq!(c.graph_api_base_url, "https://graph.facebook.com");
        assert_eq!(c.graph_api_version, DEFAULT_GRAPH_API_VERSION);
        assert_eq!(
            c.livechat_accounts_base_url,
            "https://accounts.livechat.com"
        );
        assert!(c.verify_token_matches("verify-token-value"));
        assert!(!c.verify_token_matches("verify-token-valuX"));
    }

    #[test]
    fn every_required_setting_is_named_when_missing() {
        for (name, _) in complete() {
            let pairs = complete().into_iter().filter(|(n, _)| *n != name);
            let err = Config::from_settings(&Settings::from_pairs(pairs)).unwrap_err();
            assert_eq!(err.to_string(), format!("missing setting {name}"));
        }
    }

    #[test]
    fn malformed_values_are_named_without_their_value() {
        let mut pairs = complete();
        pairs.push(("GRAPH_API_BASE_URL", "not a url".into()));
        let err = Config::from_settings(&Settings::from_pairs(pairs)).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("invalid setting GRAPH_API_BASE_URL")
        );

        let mut pairs = complete();
        pairs.retain(|(n, _)| *n != "TOKEN_ENCRYPTION_KEY");
        pairs.push(("TOKEN_ENCRYPTION_KEY", "c2hvcnQ=".into()));
        let err = Config::from_settings(&Settings::from_pairs(pairs)).unwrap_err();
        assert!(err.to_string().contains("TOKEN_ENCRYPTION_KEY"), "{err}");
        assert!(!err.to_string().contains("c2hvcnQ="));

        let mut pairs = complete();
        pairs.push(("GRAPH_API_VERSION", "25".into()));
        assert!(Config::from_settings(&Settings::from_pairs(pairs)).is_err());
    }

    #[test]
    fn debug_output_never_contains_secret_values() {
        let c = Config::from_settings(&Settings::from_pairs(complete())).unwrap();
        let dbg = format!("{c:?}");
        for (name, value) in complete() {
            if name.contains("SECRET") || name.contains("TOKEN") {
                assert!(!dbg.contains(value.as_str()), "{name} leaked in Debug");
            }
        }
        let settings = Settings::from_pairs(complete());
        assert!(!format!("{settings:?}").contains("meta-app-secret-value"));
    }

    #[test]
    fn secret_json_overrides_environment_and_rejects_non_strings() {
        let mut s = Settings::from_pairs(complete());
        s.overlay_secret_json(
            "id",
            r#"{"META_APP_SECRET":"from-secret","META_APP_ID":42}"#,
        )
        .unwrap();
        let c = Config::from_settings(&s).unwrap();
        assert_eq!(c.meta_app_secret.expose_secret(), "from-secret");
        assert_eq!(c.meta_app_id, "42");
        let err = s
            .overlay_secret_json("id", r#"{"META_APP_SECRET":{"nested":true}}"#)
            .unwrap_err();
        assert!(err.to_string().contains("META_APP_SECRET must be a string"));
        assert!(s.overlay_secret_json("id", "[1]").is_err());
        assert!(s.overlay_secret_json("id", "{oops").is_err());
    }

    #[test]
    fn aws_resources_are_named_when_missing() {
        let s = Settings::from_pairs([("TABLE_NAME", "t")]);
        let err = AwsResources::from_settings(&s).unwrap_err();
        assert_eq!(err.to_string(), "missing setting TO_LIVECHAT_QUEUE_URL");
    }
}
