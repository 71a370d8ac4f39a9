//! `igbridge send FILE --to URL`: signs a sample event with the configured secret and posts it.
//! The kind is read from the file: a Meta webhook (`object`), a LiveChat chat webhook (`action`),
//! a LiveChat app webhook (`event` + `clientID`), or a Meta `signed_request` payload (`algorithm`).

use clap::Args as ClapArgs;
use secrecy::ExposeSecret;
use serde_json::{Value, json};
use shared::config::Config;

/// Options of `igbridge send`.
#[derive(ClapArgs)]
pub struct Args {
    /// The event file (see events/webhooks/).
    file: std::path::PathBuf,
    /// Where to post it.
    #[arg(long)]
    to: String,
    /// Print `{"status": …, "body": …}`.
    #[arg(long)]
    json: bool,
    /// Keep the file's timestamps (by default Meta events are stamped with the current time, so
    /// the reply window opens as it would for a live message).
    #[arg(long)]
    keep_timestamps: bool,
}

/// Stamps `entry[].time` and every item's `timestamp` with `now_ms`.
fn restamp(body: &mut Value, now_ms: i64) {
    for entry in body
        .get_mut("entry")
        .and_then(Value::as_array_mut)
        .into_iter()
        .flatten()
    {
        if entry.get("time").is_some() {
            entry["time"] = json!(now_ms);
        }
        for field in ["messaging", "standby"] {
            for item in entry
                .get_mut(field)
                .and_then(Value::as_array_mut)
                .into_iter()
                .flatten()
            {
                if item.get("timestamp").is_some() {
                    item["timestamp"] = json!(now_ms);
                }
            }
        }
    }
}

/// How a body is authenticated.
#[derive(Debug, PartialEq, Eq)]
enum Kind {
    Meta,
    LivechatChat,
    LivechatApp,
    SignedRequest,
}

fn kind_of(v: &Value) -> Option<Kind> {
    if v.get("object").is_some() {
        Some(Kind::Meta)
    } else if v.get("action").is_some() {
        Some(Kind::LivechatChat)
    } else if v.get("event").is_some() && v.get("clientID").is_some() {
        Some(Kind::LivechatApp)
    } else if v.get("algorithm").is_some() {
        Some(Kind::SignedRequest)
    } else {
        None
    }
}

/// The request that posts the event as its platform would: signed, stamped and authenticated
/// with the configured secrets.
fn signed_request(
    kind: Kind,
    args: &Args,
    config: &Config,
    raw: &str,
    mut body: Value,
) -> Result<reqwest::RequestBuilder, Box<dyn std::error::Error>> {
    let http = shared::http::client();
    Ok(match kind {
        Kind::Meta => {
            let bytes = if args.keep_timestamps {
                raw.trim().as_bytes().to_vec()
            } else {
                restamp(&mut body, chrono::Utc::now().timestamp_millis());
                body.to_string().into_bytes()
            };
            let sig = shared::instagram::webhook::sign(
                config.meta_app_secret.expose_secret().as_bytes(),
                &bytes,
            );
            http.post(&args.to)
                .header("content-type", "application/json")
                .header("x-hub-signature-256", sig)
                .body(bytes)
        }
        Kind::LivechatChat => {
            body["secret_key"] = json!(config.livechat_webhook_secret.current().expose_secret());
            http.post(&args.to).json(&body)
        }
        Kind::LivechatApp => {
            body["clientID"] = json!(config.livechat_client_id);
            let mut url = reqwest::Url::parse(&args.to)?;
            url.query_pairs_mut().append_pair(
                "token",
                config.livechat_app_webhook_token.current().expose_secret(),
            );
            http.post(url).json(&body)
        }
        Kind::SignedRequest => {
            // Meta signs at the moment it calls; the bridge refuses requests over a day old.
            body["issued_at"] = json!(chrono::Utc::now().timestamp());
            let signed = shared::lifecycle::signed_request::sign(
                config.meta_app_secret.expose_secret().as_bytes(),
                &body,
            );
            http.post(&args.to).form(&[("signed_request", signed)])
        }
    })
}

/// Posts the event; prints the response.
pub async fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    let mut settings = crate::settings::load();
    crate::settings::fill_local_defaults(&mut settings, "127.0.0.1:3000")?;
    let config = Config::from_settings(&settings)?;
    let raw =
        std::fs::read_to_string(&args.file).map_err(|e| format!("{}: {e}", args.file.display()))?;
    let body: Value = serde_json::from_str(&raw)
        .map_err(|e| format!("{}: not JSON ({e})", args.file.display()))?;
    let kind = kind_of(&body).ok_or("cannot tell what kind of event the file holds")?;
    let request = signed_request(kind, &args, &config, &raw, body)?;
    let res = request
        .send()
        .await
        .map_err(|e| format!("posting to {}: {}", args.to, e.without_url()))?;
    let status = res.status().as_u16();
    let text = res.text().await.unwrap_or_default();
    if args.json {
        println!("{}", json!({"status": status, "body": text}));
    } else {
        println!("{status} {text}");
    }
    if status >= 400 {
        return Err(format!("the server answered {status}").into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meta_events_are_restamped() {
        let mut v = json!({"object": "instagram", "entry": [{"time": 1, "messaging": [{"timestamp": 1, "message": {"mid": "m"}}], "standby": [{"timestamp": 2}]}]});
        restamp(&mut v, 99);
        assert_eq!(v["entry"][0]["time"], 99);
        assert_eq!(v["entry"][0]["messaging"][0]["timestamp"], 99);
        assert_eq!(v["entry"][0]["standby"][0]["timestamp"], 99);
        assert_eq!(v["entry"][0]["messaging"][0]["message"]["mid"], "m");
    }

    #[test]
    fn kinds_are_told_apart() {
        assert_eq!(kind_of(&json!({"object": "instagram"})), Some(Kind::Meta));
        assert_eq!(
            kind_of(&json!({"action": "incoming_event"})),
            Some(Kind::LivechatChat)
        );
        assert_eq!(
            kind_of(&json!({"event": "application_uninstalled", "clientID": "x"})),
            Some(Kind::LivechatApp)
        );
        assert_eq!(
            kind_of(&json!({"algorithm": "HMAC-SHA256", "user_id": "u"})),
            Some(Kind::SignedRequest)
        );
        assert_eq!(kind_of(&json!({})), None);
    }
}
