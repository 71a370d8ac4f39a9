//! Configuration from a Secrets Manager secret on moto, as the Lambdas load it at cold start.

use testkit::moto;

use secrecy::ExposeSecret;
use shared::cipher::TokenCipher;
use shared::config::{Config, ConfigError, Settings};
use shared::function::Function;

fn secret_json() -> String {
    serde_json::json!({
        "META_APP_ID": "1234",
        "META_APP_SECRET": "meta-secret-from-sm",
        "META_VERIFY_TOKEN": "verify-from-sm",
        "LIVECHAT_CLIENT_ID": "lc-client",
        "LIVECHAT_CLIENT_SECRET": "lc-secret-from-sm",
        "LIVECHAT_WEBHOOK_SECRET": "lc-webhook-from-sm",
        "LIVECHAT_APP_WEBHOOK_TOKEN": "lc-app-token-from-sm",
        "TOKEN_ENCRYPTION_KEY": TokenCipher::generate_setting().expose_secret(),
    })
    .to_string()
}

#[tokio::test]
async fn secrets_come_from_the_secret_named_by_app_secret_id() {
    let sdk = moto::sdk().await;
    let client = aws_sdk_secretsmanager::Client::new(&sdk);
    let id = moto::unique("igbridge/app");
    client
        .create_secret()
        .name(&id)
        .secret_string(secret_json())
        .send()
        .await
        .unwrap();
    let mut settings = Settings::from_pairs([
        ("APP_SECRET_ID", id.as_str()),
        ("PUBLIC_BASE_URL", "https://bridge.example.com"),
        // The secret wins over a stale value in the environment.
        ("META_APP_SECRET", "stale-env-value"),
    ]);
    settings.overlay_app_secret(&client).await.unwrap();
    let config = Config::from_settings(&settings).unwrap();
    assert_eq!(
        config.meta_app_secret.expose_secret(),
        "meta-secret-from-sm"
    );
    assert_eq!(config.livechat_client_id, "lc-client");
    assert_eq!(config.public_base_url, "https://bridge.example.com");
    assert!(!format!("{config:?}").contains("from-sm"));
}

#[tokio::test]
async fn a_missing_secret_is_named_in_the_error() {
    let sdk = moto::sdk().await;
    let client = aws_sdk_secretsmanager::Client::new(&sdk);
    let mut settings = Settings::from_pairs([("APP_SECRET_ID", "igbridge/does-not-exist")]);
    let err = settings.overlay_app_secret(&client).await.unwrap_err();
    assert!(matches!(err, ConfigError::Secret { .. }));
    let text = err.to_string();
    assert!(text.contains("igbridge/does-not-exist"), "{text}");
    assert!(text.contains("ResourceNotFound"), "{text}");
}

#[tokio::test]
async fn without_app_secret_id_nothing_is_fetched() {
    let sdk = moto::sdk().await;
    let client = aws_sdk_secretsmanager::Client::new(&sdk);
    let mut settings = Settings::from_pairs([("META_APP_ID", "1")]);
    settings.overlay_app_secret(&client).await.unwrap();
    assert_eq!(settings.get("META_APP_ID"), Some("1"));
    let err = Config::from_settings(&settings).unwrap_err();
    assert_eq!(err.to_string(), "missing setting TOKEN_ENCRYPTION_KEY");
}

#[tokio::test]
async fn a_function_reads_only_its_own_secrets_and_holds_nothing_else() {
    let sdk = moto::sdk().await;
    let client = aws_sdk_secretsmanager::Client::new(&sdk);
    let mut ids = Vec::new();
    let key = shared::cipher::TokenCipher::generate_setting();
    for (name, value) in [
        ("META_APP_SECRET", "meta-secret-from-sm"),
        ("META_VERIFY_TOKEN", "verify-from-sm"),
        ("TOKEN_ENCRYPTION_KEY", key.expose_secret()),
    ] {
        let id = moto::unique(&format!("igbridge/{name}"));
        client
            .create_secret()
            .name(&id)
            .secret_string(serde_json::json!({ name: value }).to_string())
            .send()
            .await
            .unwrap();
        ids.push(id);
    }
    // The webhooks need none of the plain settings: they start without them.
    let mut settings = Settings::from_pairs([
        ("APP_SECRET_IDS", ids.join(",")),
        // Present in this environment, but not the webhook's to hold.
        ("LIVECHAT_CLIENT_SECRET", "lc-secret-in-env".into()),
    ]);
    settings.overlay_app_secret(&client).await.unwrap();
    let config = Config::for_function(&settings, Function::InstagramWebhook)
        .expect("starts with its three secrets");
    assert_eq!(
        config.meta_app_secret.expose_secret(),
        "meta-secret-from-sm"
    );
    assert!(config.verify_token_matches("verify-from-sm"));
    assert_ne!(
        config.livechat_client_secret.current().expose_secret(),
        "lc-secret-in-env",
        "withheld"
    );

    // The LiveChat webhook holds neither of Meta's.
    let mut settings = Settings::from_pairs([
        ("APP_SECRET_IDS", ids.join(",")),
        ("LIVECHAT_WEBHOOK_SECRET", "lc-webhook".into()),
    ]);
    settings.overlay_app_secret(&client).await.unwrap();
    let config = Config::for_function(&settings, Function::LivechatWebhook).unwrap();
    assert_ne!(
        config.meta_app_secret.expose_secret(),
        "meta-secret-from-sm"
    );
    assert!(!config.verify_token_matches("verify-from-sm"));
}
